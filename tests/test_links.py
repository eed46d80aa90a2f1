"""The launch path: where the book is published is one block of ``_config.yml`` (the home,
``repository.url``; the branch with the Colab notebooks, ``repository.branch``; the pages,
``html.baseurl``); every notebook's Colab badge and install cell, and the launch buttons' folder,
point there and at the release the stored outputs were made with (``scripts/book_links.py``);
the check cells keep no output for the pages."""
import importlib.util
import json
from pathlib import Path

import pytest

import advlab

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("book_links", ROOT / "scripts" / "book_links.py")
links = importlib.util.module_from_spec(spec)
spec.loader.exec_module(links)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_home_and_release_come_from_one_place():
    home, tag = links.home_and_tag()
    assert tag == f"v{advlab.__version__}"
    assert home.startswith("https://github.com/")
    assert f"path_to_book: {tag}" in (ROOT / "_config.yml").read_text()
    pub = links.publishing()
    assert pub["baseurl"].startswith("https://") and pub["baseurl"].endswith("/")
    # README's "Read it" points at the published pages
    assert pub["baseurl"] in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_badge_and_pinned_install_cell(path):
    home, tag = links.home_and_tag()
    cells = json.loads(path.read_text())["cells"]
    badge = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and "remove-cell" in cells[0]["metadata"]["tags"]
    branch = links.publishing()["branch"]
    assert (f"colab.research.google.com/github/{links.github_path(home)}/blob/{branch}/{tag}/notebooks/"
            f"{path.name}") in badge
    installs = [c for c in cells if c["cell_type"] == "code" and "%pip install" in "".join(c["source"])]
    assert len(installs) == 1, "one install cell"
    source = "".join(installs[0]["source"])
    assert f'"advlab @ git+{home}.git@{tag}"' in source
    assert "import advlab" in source and "torch" not in source.split("%pip")[1]  # never reinstall Colab's torch
    first_code = next(c for c in cells if c["cell_type"] == "code")
    assert first_code is installs[0], "the install cell is the first code cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_check_cells_store_no_output_for_the_pages(path):
    """A check's confirmation or hint can give an answer away: the book shows none."""
    cells = json.loads(path.read_text())["cells"]
    checks = links.check_cells(cells)
    assert checks, "every chapter has exercises with check cells"
    for cell in checks:
        assert cell["outputs"] == [], "".join(cell["source"])
        assert "remove-output" in cell["metadata"].get("tags", [])


def test_script_reports_nothing_stale():
    assert links.main(["--check"]) == 0


def test_script_rewrites_a_stale_notebook(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "advlab").mkdir()
    (tmp_path / "advlab" / "__init__.py").write_text('__version__ = "9.8.7"\n')
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://github.com/someone/book\n  branch: colab\n")
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# 9. A chapter"]},
                    {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                     "source": ['%pip install -q "advlab @ git+https://example.org/old.git"']}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "notebooks" / "09_x.ipynb").write_text(json.dumps(nb))
    assert links.main(["--check", "--root", str(tmp_path)]) == 1
    assert links.main(["--root", str(tmp_path)]) == 0
    assert links.main(["--check", "--root", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "notebooks" / "09_x.ipynb").read_text())
    assert "book/blob/colab/v9.8.7/notebooks/09_x.ipynb" in "".join(out["cells"][0]["source"])
    assert "git+https://github.com/someone/book.git@v9.8.7" in "".join(out["cells"][2]["source"])
    assert len(out["cells"]) == 3 and all("id" in c for c in out["cells"])
    assert "path_to_book: v9.8.7" in (tmp_path / "_config.yml").read_text()
