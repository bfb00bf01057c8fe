"""Shared fixtures: the real competition data (must exist under CI) and one tiny model built per session."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# before anything imports torch (dialsum/__init__.py says why): two test workers and their stage children share 2 cores
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
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
def sample_data():
    from dialsum.io.data import load_competition

    return load_competition(SAMPLE)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, sample_data) -> Path:
    """One tiny Llama + tokenizer for the whole session (built, saved with save_pretrained, loaded by path)."""
    from dialsum.config import TinyModelSpec
    from dialsum.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny") / "model"
    build_tiny_model(out, sample_data.train, TinyModelSpec(pretrain_steps=60))
    return out


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
def tiny_bart_dir(tmp_path_factory, sample_data) -> Path:
    """One tiny BART (same byte-level tokenizer), denoising-pretrained briefly, for the whole session."""
    from dialsum.config import TinyModelSpec
    from dialsum.models.tiny import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-bart") / "model"
    build_tiny_model(out, sample_data.train, TinyModelSpec(pretrain_steps=60), family="seq2seq")
    return out


@pytest.fixture(scope="session")
def tiny_bart_cfg(tiny_bart_dir):
    from dialsum.config import load_model_config

    cfg = load_model_config(ROOT / "configs" / "models" / "tiny-bart.yaml")
    return cfg.model_copy(update={"path": str(tiny_bart_dir), "tiny": None})
