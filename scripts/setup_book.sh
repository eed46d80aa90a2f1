#!/usr/bin/env bash
# Create .venv-book with the book tools only (no torch, no advlab): the book is built from the
# stored executed notebooks, which are not run again (README: "Build the book").
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-book
.venv-book/bin/python -m pip install -q --upgrade pip
.venv-book/bin/python -m pip install -q -r requirements-book.txt
