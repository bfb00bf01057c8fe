#!/usr/bin/env bash
# dialsum in one command: set up .venv on first run, then run every stage with the embedded default config
# (or the arguments you give, e.g. `bash run_all.sh --config configs/competition.yaml --data-dir /path/to/data`).
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

if [ ! -x "$VENV/bin/dialsum" ] || [ ! -f "$VENV/.dialsum-installed" ]; then
  echo "[run_all] creating $VENV (first run)"
  start=$(date +%s)
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$VENV/bin/pip" install -q -r requirements-gpu.txt      # CUDA torch + vLLM
  else
    "$VENV/bin/pip" install -q -r requirements-cpu.txt      # torch CPU wheel first: no CUDA download
  fi
  "$VENV/bin/pip" install -q -r requirements.txt
  "$VENV/bin/pip" install -q --no-deps -e .
  # bytecode for every installed module: pip skips it when PYTHONDONTWRITEBYTECODE is set, and then every stage child
  # recompiles torch's sources on import (bitsandbytes' import took 14 s instead of 6 s here)
  "$VENV/bin/python" -m compileall -q -j 0 "$VENV/lib" >/dev/null 2>&1 || true
  touch "$VENV/.dialsum-installed"
  echo "[run_all] installed in $(( $(date +%s) - start )) s"
fi

ARGS=("$@")
has_config=0
for a in "${ARGS[@]+"${ARGS[@]}"}"; do [ "$a" = "--config" ] && has_config=1; done
[ $has_config -eq 1 ] || ARGS=(--config configs/default.yaml "${ARGS[@]+"${ARGS[@]}"}")

start=$(date +%s)
"$VENV/bin/dialsum" run "${ARGS[@]}"
echo "[run_all] pipeline took $(( $(date +%s) - start )) s"
