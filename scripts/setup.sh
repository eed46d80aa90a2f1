#!/usr/bin/env bash
# Create .venv and install advlab with everything the book and the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e ".[book,dev]"
python -m ipykernel install --sys-prefix --name python3 >/dev/null
