"""Experiment tracking: a run's numbers in TensorBoard, MLflow or Weights & Biases, chosen by `tracking.backend`.

Everything is logged from the stage results once a run (or a tuning trial) is done, in the parent process, so cached
stages are tracked like fresh ones and nothing here imports torch: each train stage's loss curve and dev-select
scores by step, each generate stage's throughput, the ensemble's fitted choice, every report row's dev-select and
dev-report score with its interval, and the paired comparisons. TensorBoard is written with tensorboard's own event
writer; MLflow and W&B are imported only when chosen (W&B runs offline unless WANDB_MODE says otherwise).
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from dialsum.config import TrackingSpec
from dialsum.errors import DialsumError


def _tag(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_./-]+", "_", text).strip("_")


class Tracker:
    """One tracked run: scalars (name, value, step) and parameters."""

    def __init__(self, spec: TrackingSpec, name: str, folder: Path, output_dir: Path):
        self.backend, self.name = spec.backend, name
        if self.backend == "tensorboard":
            from tensorboard.summary.writer.event_file_writer import EventFileWriter

            logdir = Path(folder) / "tensorboard" / "dialsum"
            for old in logdir.glob("events.out.tfevents.*"):  # a re-run replaces the run's numbers, not repeats them
                old.unlink()
            self._tb = EventFileWriter(str(logdir))
        elif self.backend == "mlflow":
            try:
                import mlflow
            except ImportError:
                raise DialsumError("tracking.backend mlflow: pip install mlflow-skinny (see requirements-dev.txt)") \
                    from None
            mlflow.set_tracking_uri(spec.uri or f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}")
            mlflow.set_experiment(spec.experiment)
            self._ml = mlflow
            self._run = mlflow.start_run(run_name=name)
        elif self.backend == "wandb":
            try:
                import wandb
            except ImportError:
                raise DialsumError("tracking.backend wandb: pip install wandb (it runs offline unless you log in)") \
                    from None
            os.environ.setdefault("WANDB_MODE", "offline")
            self._wb = wandb.init(project=spec.experiment, name=name, dir=spec.uri or str(folder), reinit=True)

    def scalar(self, tag: str, value: float, step: int = 0) -> None:
        tag = _tag(tag)
        if self.backend == "tensorboard":
            from tensorboard.compat.proto.event_pb2 import Event
            from tensorboard.compat.proto.summary_pb2 import Summary

            self._tb.add_event(Event(wall_time=time.time(), step=step,
                                     summary=Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])))
        elif self.backend == "mlflow":
            self._ml.log_metric(tag.replace("/", "."), float(value), step=step)
        elif self.backend == "wandb":
            self._wb.log({tag: float(value)}, step=step)

    def params(self, values: dict) -> None:
        flat = {_tag(k): (v if isinstance(v, (int, float, str, bool)) else json.dumps(v, ensure_ascii=False)[:500])
                for k, v in values.items()}
        if self.backend == "tensorboard":
            from tensorboard.compat.proto.event_pb2 import Event
            from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
            from tensorboard.compat.proto.tensor_pb2 import TensorProto

            text = "\n".join(f"{k}: {v}" for k, v in flat.items()).encode()
            meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
            value = Summary.Value(tag="params", metadata=meta, tensor=TensorProto(dtype=7, string_val=[text]))
            self._tb.add_event(Event(wall_time=time.time(), step=0, summary=Summary(value=[value])))
        elif self.backend == "mlflow":
            self._ml.log_params(flat)
        elif self.backend == "wandb":
            self._wb.config.update(flat, allow_val_change=True)

    def close(self) -> None:
        if self.backend == "tensorboard":
            self._tb.close()
        elif self.backend == "mlflow":
            self._ml.end_run()
        elif self.backend == "wandb":
            self._wb.finish()


def track_run(spec: TrackingSpec, run_id: str, run_dir: Path, output_dir: Path, stages: dict[str, dict],
              rows: list[dict], comparisons: list[dict]) -> None:
    """Log a finished run: `stages` maps stage name -> manifest record (key, dir, result)."""
    if spec.backend == "none":
        return
    t = Tracker(spec, run_id, run_dir, output_dir)
    try:
        for name, rec in stages.items():
            kind, _, model = name.partition(":")
            out, res = Path(rec.get("dir", "")), rec.get("result") or {}
            if kind == "train":
                result_file = out / "train_result.json"
                losses = json.loads(result_file.read_text(encoding="utf-8")).get("losses", []) \
                    if result_file.is_file() else []
                for i, loss in enumerate(losses):
                    t.scalar(f"train/{model}/loss", loss, i)
                for h in res.get("dev_history", []):
                    t.scalar(f"train/{model}/dev_select_final", h["eval_dev_final"], h.get("step", 0))
            elif kind == "align":
                result_file = out / "align_result.json"
                curve = json.loads(result_file.read_text(encoding="utf-8")).get("curve", []) \
                    if result_file.is_file() else []
                for row in curve:
                    for key, value in row.items():
                        if key != "step" and isinstance(value, (int, float)):
                            t.scalar(f"align/{model}/{key}", value, row.get("step") or 0)
            elif kind == "generate":
                meta = out / "meta.json"
                seconds = json.loads(meta.read_text(encoding="utf-8")).get("seconds") if meta.is_file() else None
                n = sum(max(0, sum(1 for _ in open(p, encoding="utf-8")) - 1) for p in res.get("parts", [])
                        if Path(p).is_file())
                if seconds:
                    t.scalar(f"generate/{model}/candidates_per_second", n / seconds)
        ens = stages.get("ensemble", {}).get("result") or {}
        if ens:
            t.params({"ensemble.method": ens.get("method"), "ensemble.chosen": ens.get("chosen"),
                      "ensemble.best_source": ens.get("best_source"),
                      "ensemble.members": (ens.get("fit") or {}).get("members", {})})
        for r in rows:
            for part in ("select", "report"):
                if r.get(part):
                    t.scalar(f"dev_{part}/{r['stage']}/{r['detail'][:60]}", r[part]["final"])
        for c in comparisons:
            t.scalar(f"compare/{c['a_name']}_vs_{c['b_name'][:40]}/diff", c["diff"])
    finally:
        t.close()


def trial_logger(spec: TrackingSpec, study: str, folder: Path, output_dir: Path):
    """An Optuna callback logging each finished trial (value, state, parameters) as its own tracked run."""
    def log_trial(study_obj, trial) -> None:
        if spec.backend == "none":
            return
        t = Tracker(spec, f"{study}-trial-{trial.number:04d}", Path(folder) / "trials" / f"{trial.number:04d}",
                    output_dir)
        try:
            t.params({**trial.params, "state": trial.state.name, "study": study})
            if trial.value is not None:
                t.scalar("trial/value", trial.value, trial.number)
            for step, v in sorted(trial.intermediate_values.items()):
                t.scalar("trial/dev_select_final", v, step)
        finally:
            t.close()

    return log_trial
