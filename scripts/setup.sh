#!/usr/bin/env bash
# Create .venv with advlab and everything the chapters and the tests need (README: "Run the tests").
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e ".[notebook,dev]"
python -m ipykernel install --sys-prefix --name python3 >/dev/null
# The explorers must work under ipywidgets 7 too (Colab's): the lowest release the package
# admits, and Colab's, each in its own folder that tests/test_plots_widgets.py puts first on
# sys.path of a subprocess.
for v in 7.5.0 7.7.1; do
    python -m pip install -q --no-deps --target ".venv/ipywidgets-$v" "ipywidgets==$v" "ipython_genutils==0.2.0"
done
