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
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    REQS=(-r requirements-gpu.txt -r requirements.txt)   # CUDA torch + vLLM
  else
    REQS=(-r requirements-cpu.txt -r requirements.txt)   # the torch CPU wheel: no CUDA download
  fi
  # uv installs the same pinned requirements from the same indexes as pip (pip's own configuration is passed on),
  # several times faster; pip is the fallback wherever uv cannot be had or fails
  if "$VENV/bin/python" -m pip install -q "uv==0.13.9" >/dev/null 2>&1 \
     && UV_ARGS=$("$VENV/bin/python" scripts/uv_args.py) \
     && eval "\"$VENV/bin/uv\" pip install -q --python \"$VENV/bin/python\" $UV_ARGS ${REQS[*]}" \
     && "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps -e .; then
    echo "[run_all] installed with uv"
  else
    echo "[run_all] installing with pip"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/pip" install -q "${REQS[@]}"
    "$VENV/bin/pip" install -q --no-deps -e .
  fi
  touch "$VENV/.dialsum-installed"
  echo "[run_all] installed in $(( $(date +%s) - start )) s"
fi
# Python writes each module's bytecode the first time it is imported, so later stage processes load it instead of
# recompiling torch's sources (only what is imported gets compiled, not every installed file)
unset PYTHONDONTWRITEBYTECODE

ARGS=("$@")
has_config=0
for a in "${ARGS[@]+"${ARGS[@]}"}"; do [ "$a" = "--config" ] && has_config=1; done
[ $has_config -eq 1 ] || ARGS=(--config configs/default.yaml "${ARGS[@]+"${ARGS[@]}"}")

start=$(date +%s)
"$VENV/bin/dialsum" run "${ARGS[@]}"
echo "[run_all] pipeline took $(( $(date +%s) - start )) s"
