"""Shared fixtures: the real competition data (must exist under CI) and one tiny model built per session."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

# before anything imports torch (dialsum/__init__.py says why): two test workers and their stage children share 2 cores
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
# one torch thread per process: two test workers on 2 cores otherwise run 4 busy threads (16:05 -> 13:44 for the
# suite), and the tiny models' numbers no longer depend on how many cores the machine running the tests has
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
# Mecab's morpheme cache (dialsum.morpheme_cache): one per test session, inherited by every command the tests run,
# so the suite neither reads nor fills the user's ~/.cache
os.environ.setdefault("DIALSUM_CACHE_DIR", tempfile.mkdtemp(prefix="dialsum-test-cache-"))
SHARED = ROOT.parent / "shared" / "data"
SAMPLE = ROOT / "data" / "sample"


def shared_file(rel: str) -> Path:
    """A file under ../shared/data; missing means skip locally but FAIL under CI=true."""
    path = SHARED / rel
    if not path.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing under CI: the real data must be laid beside the clone")
        pytest.skip(f"{path} not present")
    return path


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dialsum", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory, request) -> Path:
    """A folder every pytest-xdist worker of this session sees (the parent of the workers' own temp folders)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(request.config, "workerinput") else base  # an xdist worker, or the only process


def built_once(shared: Path, name: str, make) -> Path:
    """`shared/name`, made by `make(folder)` once for every worker of the session: the first to ask makes it, the
    others wait on its lock; a failed attempt leaves nothing that looks done."""
    out = shared / name
    with open(shared / f"{name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / f"{name}.done").is_file():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            make(out)
            (shared / f"{name}.done").touch()
    return out


@pytest.fixture(scope="session")
def pipeline_seed(shared_tmp) -> SimpleNamespace:
    """The embedded default `dialsum run` (3 tiny models, every stage), computed once per test session for all
    workers: tests about that run read it; tests about something else copy the stage folders they need from its
    cache (tests/pipelines.py: seed_stages) instead of training the same models again. `folder/runs` and
    `folder/subs` are its output and submissions folders; stdout/stderr those of its first run."""
    def run(folder: Path) -> None:
        r = run_cli("run", "--config", "configs/default.yaml", "--output-dir", str(folder / "runs"),
                    "--submissions-dir", str(folder / "subs"),
                    env={"DIALSUM_PROBE_IMPORTS": str(folder / "parent_imports.json")})
        seed = {"returncode": r.returncode, "stdout": r.stdout, "stderr": r.stderr, "manifest": None}
        if r.returncode == 0:  # the manifest as this first run left it (later runs in the folder add to it)
            run_dir = next(ln for ln in r.stdout.splitlines() if ln.startswith("run: "))[len("run: "):]
            seed["manifest"] = json.loads((Path(run_dir) / "manifest.json").read_text())
        (folder / "seed.json").write_text(json.dumps(seed))

    folder = built_once(shared_tmp, "pipeline-seed", run)
    first = json.loads((folder / "seed.json").read_text())
    assert first["returncode"] == 0, first["stderr"][-3000:]
    run_dir = Path(next(ln for ln in first["stdout"].splitlines() if ln.startswith("run: "))[len("run: "):])
    return SimpleNamespace(folder=folder, stdout=first["stdout"], stderr=first["stderr"], run_dir=run_dir,
                           manifest=first["manifest"])


@pytest.fixture(scope="session")
def sample_data():
    from dialsum.io.data import load_competition

    return load_competition(SAMPLE)


@pytest.fixture(scope="session")
def tiny_model_dir(shared_tmp, sample_data) -> Path:
    """One tiny Llama + tokenizer for the whole session, all workers (built, saved with save_pretrained, loaded by
    path). Built like the real checkpoints: the competition's tags are not in its vocabulary (dialsum adds them and
    trains their rows) and its LM head is untied (so the tags have trained output rows too). Tests read it, never
    write into it."""
    from dialsum.config import TinyModelSpec
    from dialsum.models.tiny import build_tiny_model

    spec = TinyModelSpec(pretrain_steps=60, with_tags=False, tie_word_embeddings=False)
    make = lambda out: build_tiny_model(out / "model", sample_data.train, spec)  # noqa: E731
    return built_once(shared_tmp, "tiny", make) / "model"


@pytest.fixture(scope="session")
def pretagged_tiny_dir(shared_tmp, sample_data) -> Path:
    """A tiny Llama whose vocabulary already holds the competition's tags (no real checkpoint's does), for the tests
    about that case: vLLM serving a LoRA adapter by LoRARequest, which it can only when the base knows every token
    and the adapter trains no token rows."""
    from dialsum.config import TinyModelSpec
    from dialsum.models.tiny import build_tiny_model

    make = lambda out: build_tiny_model(out / "model", sample_data.train, TinyModelSpec(pretrain_steps=60, with_tags=True))  # noqa: E731
    return built_once(shared_tmp, "tiny-pretagged", make) / "model"


@pytest.fixture(scope="session")
def pretagged_tiny_cfg(pretagged_tiny_dir):
    from dialsum.config import load_model_config

    cfg = load_model_config(ROOT / "configs" / "models" / "tiny.yaml")
    return cfg.model_copy(update={"path": str(pretagged_tiny_dir), "tiny": None})


@pytest.fixture(scope="session")
def tiny_cfg(tiny_model_dir):
    from dialsum.config import load_model_config

    cfg = load_model_config(ROOT / "configs" / "models" / "tiny.yaml")
    return cfg.model_copy(update={"path": str(tiny_model_dir), "tiny": None})


@pytest.fixture
def copy_sample(tmp_path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(SAMPLE, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_bart_dir(shared_tmp, sample_data) -> Path:
    """One tiny BART (same byte-level tokenizer, the tags new to it as to KoBART), denoising-pretrained briefly, for
    the whole session, all workers."""
    from dialsum.config import TinyModelSpec
    from dialsum.models.tiny import build_tiny_model

    def make(out: Path) -> None:  # without the tags as tokens, 60 denoising steps leave it repeating one word
        build_tiny_model(out / "model", sample_data.train, TinyModelSpec(pretrain_steps=150, with_tags=False),
                         family="seq2seq")
    return built_once(shared_tmp, "tiny-bart", make) / "model"


@pytest.fixture(scope="session")
def tiny_bart_cfg(tiny_bart_dir):
    from dialsum.config import load_model_config

    cfg = load_model_config(ROOT / "configs" / "models" / "tiny-bart.yaml")
    return cfg.model_copy(update={"path": str(tiny_bart_dir), "tiny": None})


# Whole files go to one xdist worker each (`--dist loadfile`), handed out in collection order
# (`--no-loadscope-reorder`): the longest first, so neither worker is left alone with a long file at the end, and the
# file that builds the seed run first, so tests that copy from it (the rest of this list) rarely wait for it.
FILE_ORDER = ["test_pipeline_e2e.py", "test_real_checkpoints.py", "test_align.py", "test_competitor_path.py",
              "test_gpu_rehearsal.py",
              "test_tune.py", "test_pipeline_faults.py", "test_align_cli.py", "test_vllm_tagless.py",
              "test_vllm_backend.py", "test_train.py", "test_torchrun.py", "test_seq2seq.py", "test_ensemble_fit.py",
              "test_malformed_inputs.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(FILE_ORDER)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FILE_ORDER)))  # stable: each file keeps its order
