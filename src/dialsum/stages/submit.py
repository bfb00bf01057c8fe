"""submit: the test rows of the post-processed picks, validated against sample_submission.csv (every fname once,
in its order, nothing empty) and written atomically as submissions/<run-id>.csv."""
from __future__ import annotations

from pathlib import Path

from dialsum.engine.core import Stage
from dialsum.engine.run_folder import RunContext
from dialsum.io.candidates import read_split_table
from dialsum.stages.common import load_data
from dialsum.stages.keys import data_context

KIND, VERSION, CHILD = "submit", 1, False


def plan(ctx: RunContext, post: Stage) -> Stage:
    """A smoke run (`data.limit`) writes <run-id>-smoke.csv over its test rows only: never a real submission."""
    name = f"{ctx.run_id}-smoke" if ctx.cfg.data.limit else ctx.run_id
    return ctx.add(Stage(
        "submit", KIND, VERSION, "dialsum.stages.submit:run",
        {"postprocess": post.key, "run_id": name, "submissions_dir": str(Path(ctx.cfg.submissions_dir).resolve()),
         "sample": ctx.hashes["sample"]},
        {**data_context(ctx), "final": str(post.out_dir(ctx.cache) / "final.csv")}, deps=(post.name,)))


def run(inputs: dict, context: dict, out: Path) -> dict:
    from dialsum.io.submission import write_submission

    final = read_split_table(Path(context["final"]))
    path = write_submission(Path(inputs["submissions_dir"]), inputs["run_id"],
                            Path(context["data_dir"]) / "sample_submission.csv",
                            {f: t for f, (t, _) in final["test"].items()}, load_data(context).submission_fnames)
    return {"path": str(path)}
