"""uv flags that make `uv pip install` use what this machine's pip is configured to use (pip.conf and PIP_*
variables: index, extra indexes, find-links, constraints), printed shell-quoted for run_all.sh. uv reads none of
pip's configuration itself; pip considers every index for every package, hence `unsafe-best-match`."""
from __future__ import annotations

import shlex
import subprocess
import sys


def pip_config() -> dict[str, list[str]]:
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        name = key.rpartition(".")[2]
        found.setdefault(name, []).extend(shlex.split(value.strip("'\"")) if value else [])
    return found


def uv_args(cfg: dict[str, list[str]]) -> list[str]:
    args = ["--index-strategy", "unsafe-best-match"]
    flags = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
             "constraint": "--constraint"}
    for name, flag in flags.items():
        for value in dict.fromkeys(cfg.get(name, [])):  # pip.conf and PIP_* often repeat a value
            args += [flag, value]
    return args


if __name__ == "__main__":
    print(" ".join(shlex.quote(a) for a in uv_args(pip_config())))
