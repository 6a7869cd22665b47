#!/usr/bin/env bash
# One command for everything, from a fresh clone (needs Python 3.11; npm for the offline plots page).
#   bash run.sh          install pinned dependencies into .venv, then `dvc repro` (the whole study)
#   bash run.sh test     install, then run the test suite (extra args go to pytest: test -m "not slow")
#   bash run.sh setup    install only
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}

setup() {
  if [ ! -x .venv/bin/python ]; then
    command -v "$PYTHON" >/dev/null || { echo "error: $PYTHON not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2; exit 1; }
    "$PYTHON" -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    # an NVIDIA GPU with a working driver: TensorFlow's CUDA libraries, at the pinned TensorFlow version
    tf_pin=$(grep -E '^tensorflow==' requirements.txt)
    echo "NVIDIA GPU found ($(nvidia-smi -L | head -n 1)); installing ${tf_pin/tensorflow/tensorflow[and-cuda]}"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "${tf_pin/tensorflow/tensorflow[and-cuda]}"
  fi
  if [ -f package-lock.json ]; then
    if command -v npm >/dev/null; then
      npm ci --silent --no-audit --no-fund
      .venv/bin/python -m study.plots_page  # offline template for `dvc plots show` (vega from node_modules)
    else
      echo "warning: npm not found: the offline plots page (vega from node_modules) is not installed" >&2
    fi
  fi
}

case "${1:-study}" in
  setup) setup ;;
  study) setup; PATH="$PWD/.venv/bin:$PATH" dvc repro ;;  # dvc.yaml's stages call `python`: the venv's
  test)  shift; setup; .venv/bin/python -m pytest "$@" ;;
  *) echo "error: unknown command '$1'; allowed: study (default), test, setup" >&2; exit 2 ;;
esac
