#!/usr/bin/env python3
"""Write the launch path into every notebook: an "Open in Colab" badge at the top and the
install cell, both pinned to the release the stored outputs were made with.

The project's public home is one setting, ``repository.url`` in ``_config.yml`` (the book's
launch buttons read it too); the release is ``v<advlab.__version__>``.  For each
``notebooks/*.ipynb`` this script

* puts the badge cell first (a markdown cell, tagged ``remove-cell`` so that the book, which
  has its own launch buttons, does not show it; Jupyter, GitHub and Colab do);
* rewrites the install cell (the code cell with metadata ``{"advlab": {"cell": "install"}}``, or
  else the first code cell that runs ``%pip install``; one is added after the title when there is
  none) to install ``advlab`` from that tag, only when it is not importable (Colab keeps its own
  torch: the package's requirements are lower bounds that Colab's satisfy);
* sets ``repository.branch`` in ``_config.yml`` to the tag.

Run it after changing the home or the version (``--check`` only reports, exit status 1 when a
file would change; ``tests/test_links.py`` runs that).  It edits sources only, never outputs.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def home_and_tag(root: Path = ROOT) -> tuple[str, str]:
    """The public home (``repository.url`` of ``_config.yml``) and the release tag."""
    config = (root / "_config.yml").read_text()
    m = re.search(r"^repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+url:\s*(\S+)", config, re.M)
    if not m:
        raise SystemExit("_config.yml has no repository.url: the project's public home")
    version = re.search(r'^__version__ = "([^"]+)"', (root / "advlab" / "__init__.py").read_text(), re.M)
    return m.group(1).rstrip("/"), f"v{version.group(1)}"


def github_path(home: str) -> str:
    m = re.match(r"https://github\.com/([^/]+/[^/]+?)(?:\.git)?$", home)
    if not m:
        raise SystemExit(f"the public home must be a GitHub repository (Colab opens those), got {home}")
    return m.group(1)


def badge_source(home: str, tag: str, notebook: str) -> str:
    url = f"https://colab.research.google.com/github/{github_path(home)}/blob/{tag}/notebooks/{notebook}"
    return f"[![Open In Colab]({BADGE_IMAGE})]({url})"


def install_source(home: str, tag: str) -> str:
    return ("# Colab or Binder: install advlab, the release these pages were made with\n"
            "try:\n"
            "    import advlab  # noqa: F401\n"
            "except ImportError:\n"
            f'    %pip install -q "advlab @ git+{home}.git@{tag}"')


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + [parts[-1]]


def _role(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("advlab", {}).get("cell")


def rewrite(nb: dict, notebook: str, home: str, tag: str) -> dict:
    """``nb`` with its badge and install cells written (a new dict; outputs untouched)."""
    nb = json.loads(json.dumps(nb))
    cells = nb["cells"]
    badge = next((c for c in cells if _role(c) == "badge"), None)
    if badge is None:
        badge = next((c for c in cells if c["cell_type"] == "markdown"
                      and "colab-badge.svg" in "".join(c["source"])), None)
    if badge is None:
        badge = {"cell_type": "markdown", "metadata": {}, "source": []}
    else:
        cells.remove(badge)
    badge["source"] = _lines(badge_source(home, tag, notebook))
    badge["metadata"].setdefault("advlab", {})["cell"] = "badge"
    tags = badge["metadata"].setdefault("tags", [])
    if "remove-cell" not in tags:
        tags.append("remove-cell")
    cells.insert(0, badge)

    install = next((c for c in cells if _role(c) == "install"), None)
    if install is None:
        install = next((c for c in cells if c["cell_type"] == "code"
                        and "%pip install" in "".join(c["source"])), None)
    if install is None:
        install = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                   "source": []}
        title = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                      and "".join(c["source"]).lstrip().startswith("# ")), 0)
        cells.insert(title + 1, install)
    install["source"] = _lines(install_source(home, tag))
    install["metadata"].setdefault("advlab", {})["cell"] = "install"
    for cell in cells:   # every solution cell is folded in the book
        if "solution" in cell.get("metadata", {}).get("tags", []):
            if "hide-input" not in cell["metadata"]["tags"]:
                cell["metadata"]["tags"].append("hide-input")
    for cell in cells:   # nbformat 4.5 wants an id on every cell
        if "id" not in cell and nb.get("nbformat_minor", 0) >= 5:
            cell["id"] = f"advlab-{_role(cell) or 'cell'}-{cells.index(cell)}"
    return nb


def dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def set_branch(config: str, tag: str) -> str:
    return re.sub(r"^(repository:\s*\n(?:[ \t]+.*\n)*?[ \t]+branch:)[ \t]*\S+", rf"\g<1> {tag}",
                  config, count=1, flags=re.M)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report files that would change; write nothing")
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    home, tag = home_and_tag(args.root)
    stale = []
    for path in sorted((args.root / "notebooks").glob("*.ipynb")):
        old = path.read_text()
        new = dump(rewrite(json.loads(old), path.name, home, tag))
        if json.loads(new) != json.loads(old):
            stale.append(path)
            if not args.check:
                path.write_text(new)
    config_path = args.root / "_config.yml"
    config = config_path.read_text()
    if set_branch(config, tag) != config:
        stale.append(config_path)
        if not args.check:
            config_path.write_text(set_branch(config, tag))
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(args.root)}")
    print(f"home {home}, release {tag}: {len(stale)} file(s) {'to update' if args.check else 'updated'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
