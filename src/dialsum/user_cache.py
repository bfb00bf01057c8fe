"""dialsum's per-user cache folder: what repeated commands reuse across runs (Mecab's morphemes, vLLM's and
torch-inductor's compiled kernels). `DIALSUM_CACHE_DIR` moves it (default `$XDG_CACHE_HOME/dialsum` or
`~/.cache/dialsum`); `DIALSUM_CACHE_DIR=off` turns every such cache off."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path | None:
    """The cache folder, or None when DIALSUM_CACHE_DIR=off."""
    env = os.environ.get("DIALSUM_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("off", "0", "none", "") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dialsum"
