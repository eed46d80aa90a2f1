#!/usr/bin/env python3
"""Write the launch path and the book's conventions into every chapter notebook.

Where things are published is set in one place, ``_config.yml``:

* ``repository.url``: the project's public home (a GitHub repository); the install cell installs
  ``advlab`` from it at the release tag ``v<advlab.__version__>``;
* ``repository.branch``: the branch the release workflow (``.github/workflows/book.yml``)
  publishes the notebooks for Colab and Binder to, one folder per release:
  ``<tag>/notebooks/`` (the chapters made to read well outside the book,
  ``scripts/colab_notebooks.py``) and ``<tag>/student/`` (the same with every solution replaced
  by a stub); ``repository.path_to_book`` is that folder, ``<tag>``, so the book's own Colab and
  Binder buttons open the chapter's copy there;
* ``html.baseurl``: the address of the book's pages (GitHub Pages), which the Colab copies link
  to for cross-references.

For each ``notebooks/*.ipynb`` this script

* puts the "Open in Colab" badge cell first (tagged ``remove-cell``: the book has its own
  launch buttons; Jupyter, GitHub and Colab show it), pointing at the chapter's Colab copy;
* rewrites the install cell (metadata ``{"advlab": {"cell": "install"}}``, else the first code
  cell that runs ``%pip install``; one is added after the title when there is none) to install
  ``advlab`` from the release tag only when it is not importable (Colab keeps its own torch);
* folds every solution cell (``hide-input``) and gives every check cell ``remove-output`` with
  its stored output cleared: confirmations and hints stay out of the public pages;
* writes the exercises' introduction (the cell ``{"advlab": {"cell": "exercises-intro"}}``, made
  from the ``## Exercises`` heading's cell when missing: exercise 1's text moves to a cell of
  its own) in the book's words (:data:`EXERCISES_INTRO`);
* sets ``repository.path_to_book`` in ``_config.yml`` to the tag, and writes the install
  command of the book's landing page (``book/intro.md``, between ``<!-- install:start -->``
  and ``<!-- install:end -->``) and its preview figure (``book/images/preview.png``, the stored
  figure :data:`PREVIEW`).

``--check`` only reports (exit status 1 when a file would change; ``tests/test_links.py``).
Naming notebooks limits the rewrite to them. It edits sources, never outputs other than the
check cells'.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"

#: The exercises' introduction, in each version's words.
EXERCISES_INTRO = {
    "book": ("Each exercise has a cell for your answer and, below it, a check cell that says "
             "whether the answer is right and gives a hint when it is not. On these pages the "
             "worked solutions are folded away (open one with the \u201cShow code cell source\u201d "
             "toggle) and the checks are not run: open the chapter in Colab (the rocket button at "
             "the top) to try the exercises yourself."),
    "colab": ("Each exercise has a cell for your answer and, below it, a check cell that says "
              "whether the answer is right and gives a hint when it is not. The worked solutions "
              "are folded away: double-click a solution cell to see it."),
    "student": ("Each exercise has an answer cell holding `...` or a function to complete: write "
                "your answer there and run the cell, then run the check cell below it, which says "
                "whether the answer is right and gives a hint when it is not."),
}


# --------------------------------------------------------------------------- where things are
def _config(root: Path) -> dict:
    import yaml
    return yaml.safe_load((root / "_config.yml").read_text())


def publishing(root: Path = ROOT) -> dict:
    """``home`` (the repository), ``branch`` (where the Colab notebooks are published), ``tag``
    (the release, ``v<version>``) and ``baseurl`` (the book's pages), from ``_config.yml``."""
    config = _config(root)
    repo = config.get("repository") or {}
    if not repo.get("url"):
        raise SystemExit("_config.yml has no repository.url: the project's public home")
    home = repo["url"].rstrip("/")
    owner, name = github_path(home).split("/")
    baseurl = ((config.get("html") or {}).get("baseurl") or f"https://{owner}.github.io/{name}/")
    version = re.search(r'^__version__ = "([^"]+)"', (root / "advlab" / "__init__.py").read_text(), re.M)
    return {"home": home, "branch": repo.get("branch") or "colab", "tag": f"v{version.group(1)}",
            "baseurl": baseurl.rstrip("/") + "/"}


def home_and_tag(root: Path = ROOT) -> tuple[str, str]:
    """The public home (``repository.url`` of ``_config.yml``) and the release tag."""
    pub = publishing(root)
    return pub["home"], pub["tag"]


def github_path(home: str) -> str:
    m = re.match(r"https://github\.com/([^/]+/[^/]+?)(?:\.git)?$", home)
    if not m:
        raise SystemExit(f"the public home must be a GitHub repository (Colab opens those), got {home}")
    return m.group(1)


def colab_url(pub: dict, notebook: str, folder: str = "notebooks") -> str:
    """Where Colab opens ``notebook``'s published copy (``folder``: notebooks or student)."""
    return (f"https://colab.research.google.com/github/{github_path(pub['home'])}/blob/"
            f"{pub['branch']}/{pub['tag']}/{folder}/{notebook}")


def page_url(pub: dict, docname: str, anchor: str | None = None) -> str:
    """The book's page of ``docname`` (e.g. ``notebooks/01_noise_and_smoothing``)."""
    return f"{pub['baseurl']}{docname}.html" + (f"#{anchor}" if anchor else "")


def student_link(pub: dict, notebook: str) -> str:
    """The sentence that points at a chapter's student version in Colab."""
    return (f" The [student version]({colab_url(pub, notebook, 'student')}) of this chapter has "
            "the solutions taken out.")


def badge_source(url: str, note: str = "") -> str:
    return f"[![Open In Colab]({BADGE_IMAGE})]({url})" + (f"\n\n{note}" if note else "")


def install_source(home: str, tag: str) -> str:
    return ("# Colab or Binder: install advlab, the release these pages were made with\n"
            "try:\n"
            "    import advlab  # noqa: F401\n"
            "except ImportError:\n"
            f'    %pip install -q "advlab @ git+{home}.git@{tag}"')


# --------------------------------------------------------------------------- cells
def lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + [parts[-1]]


def role(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("advlab", {}).get("cell")


def set_role(cell: dict, name: str) -> None:
    cell.setdefault("metadata", {}).setdefault("advlab", {})["cell"] = name


def exercise_of(cell: dict) -> str | None:
    """The exercise id of a solution cell (``{"advlab": {"exercise": "chNN-exK"}}``)."""
    return cell.get("metadata", {}).get("advlab", {}).get("exercise")


def is_check_of(cell: dict, exercise: str) -> bool:
    return cell["cell_type"] == "code" and f'exercises.check("{exercise}"' in "".join(cell["source"])


def check_cells(cells: list[dict]) -> list[dict]:
    """Every check cell: the code cell right after a solution cell that checks it."""
    return [cells[i + 1] for i, c in enumerate(cells[:-1])
            if exercise_of(c) and is_check_of(cells[i + 1], exercise_of(c))]


def add_tag(cell: dict, tag: str) -> None:
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


EXERCISES_HEADING = re.compile(r"^##\s+(\d+\.\s+)?Exercises\s*$", re.M)


def exercises_intro(cells: list[dict], make: bool = True) -> int | None:
    """The index of the exercises' introduction cell; with ``make``, made from the heading's
    cell when none has the role yet (the text after the introduction, from "**Exercise",
    moves to a new cell)."""
    for i, c in enumerate(cells):
        if role(c) == "exercises-intro":
            return i
    if not make:
        return None
    for i, c in enumerate(cells):
        text = "".join(c["source"])
        if c["cell_type"] == "markdown" and EXERCISES_HEADING.search(text):
            rest = re.search(r"^\*\*Exercise", text, re.M)
            if rest:
                c["source"] = lines(text[:rest.start()].rstrip())
                cells.insert(i + 1, {"cell_type": "markdown", "metadata": {},
                                     "source": lines(text[rest.start():])})
            set_role(c, "exercises-intro")
            return i
    return None


def write_intro(cell: dict, words: str) -> None:
    """The introduction cell's heading (and label) kept, its text set to ``words``."""
    text = "".join(cell["source"])
    m = EXERCISES_HEADING.search(text)
    head = text[:m.end()] if m else "## Exercises"
    cell["source"] = lines(f"{head}\n{words}")


def rewrite(nb: dict, notebook: str, pub: dict) -> dict:
    """``nb`` with its badge, install, solution, check and exercises-intro cells written
    (a new dict)."""
    nb = json.loads(json.dumps(nb))
    cells = nb["cells"]
    badge = next((c for c in cells if role(c) == "badge"), None)
    if badge is None:
        badge = next((c for c in cells if c["cell_type"] == "markdown"
                      and "colab-badge.svg" in "".join(c["source"])), None)
    if badge is None:
        badge = {"cell_type": "markdown", "metadata": {}, "source": []}
    else:
        cells.remove(badge)
    badge["source"] = lines(badge_source(colab_url(pub, notebook)))
    set_role(badge, "badge")
    add_tag(badge, "remove-cell")
    cells.insert(0, badge)

    install = next((c for c in cells if role(c) == "install"), None)
    if install is None:
        install = next((c for c in cells if c["cell_type"] == "code"
                        and "%pip install" in "".join(c["source"])), None)
    if install is None:
        install = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                   "source": []}
        title = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                      and "".join(c["source"]).lstrip().startswith("# ")), 0)
        cells.insert(title + 1, install)
    install["source"] = lines(install_source(pub["home"], pub["tag"]))
    set_role(install, "install")

    for cell in cells:   # every solution cell is folded in the book
        if exercise_of(cell):
            add_tag(cell, "hide-input")
    for check in check_cells(cells):   # a check's answer or hint never reaches the pages
        add_tag(check, "remove-output")
        check["outputs"], check["execution_count"] = [], None
        check["metadata"].pop("execution", None)
    intro = exercises_intro(cells)
    if intro is not None:
        write_intro(cells[intro], EXERCISES_INTRO["book"] + student_link(pub, notebook))
    for i, cell in enumerate(cells):   # nbformat 4.5 wants an id on every cell
        if "id" not in cell and nb.get("nbformat_minor", 0) >= 5:
            cell["id"] = f"advlab-{role(cell) or 'cell'}-{i}"
    return nb


def dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def set_path_to_book(config: str, tag: str) -> str:
    """``repository.path_to_book`` set to ``tag`` (added under ``repository:`` if missing)."""
    block = re.search(r"^repository:\s*\n((?:[ \t]+.*\n)*)", config, re.M)
    if block is None:
        raise SystemExit("_config.yml has no repository block")
    body = block.group(1)
    if re.search(r"^[ \t]+path_to_book:", body, re.M):
        body = re.sub(r"^([ \t]+path_to_book:)[ \t]*[^#\n]*?([ \t]*#.*)?$", rf"\g<1> {tag}\g<2>", body,
                      count=1, flags=re.M)
    else:
        body += f"  path_to_book: {tag}\n"
    return config[:block.start(1)] + body + config[block.end(1):]


INSTALL_START, INSTALL_END = "<!-- install:start -->", "<!-- install:end -->"
#: The landing page's preview: a figure stored in a chapter, copied to book/images/preview.png.
PREVIEW = ("01_noise_and_smoothing.ipynb", "fig-ch01-attack-curves")


def preview_png(root: Path) -> bytes | None:
    """The stored image of the :data:`PREVIEW` figure (None if the chapter has none)."""
    import base64
    notebook, name = PREVIEW
    path = root / "notebooks" / notebook
    if not path.exists():
        return None
    for cell in json.loads(path.read_text())["cells"]:
        if cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("name") == name:
            for out in cell.get("outputs", []):
                if "image/png" in out.get("data", {}):
                    return base64.b64decode(out["data"]["image/png"])
    return None


def install_block(page: str, pub: dict) -> str:
    """``page`` with its install block pinned to the release (unchanged without the markers)."""
    if INSTALL_START not in page:
        return page
    head, rest = page.split(INSTALL_START, 1)
    tail = rest.split(INSTALL_END, 1)[1]
    block = ("```bash\n"
             f'pip install "advlab @ git+{pub["home"]}.git@{pub["tag"]}"\n'
             "advlab run ch00 --profile smoke   # about a minute on a CPU\n"
             "```")
    return f"{head}{INSTALL_START}\n{block}\n{INSTALL_END}{tail}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report files that would change; write nothing")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    args = parser.parse_args(argv)
    args.root = args.root.resolve()
    pub = publishing(args.root)
    stale = []
    paths = [p.resolve() for p in args.notebooks] or sorted((args.root / "notebooks").glob("*.ipynb"))
    for path in paths:
        old = path.read_text()
        new = dump(rewrite(json.loads(old), path.name, pub))
        if json.loads(new) != json.loads(old):
            stale.append(path)
            if not args.check:
                path.write_text(new)
    config_path = args.root / "_config.yml"
    config = config_path.read_text()
    if set_path_to_book(config, pub["tag"]) != config:
        stale.append(config_path)
        if not args.check:
            config_path.write_text(set_path_to_book(config, pub["tag"]))
    intro = args.root / "book" / "intro.md"
    if intro.exists() and install_block(intro.read_text(), pub) != intro.read_text():
        stale.append(intro)
        if not args.check:
            intro.write_text(install_block(intro.read_text(), pub))
    preview, png = args.root / "book" / "images" / "preview.png", preview_png(args.root)
    if png is not None and (not preview.exists() or preview.read_bytes() != png):
        stale.append(preview)
        if not args.check:
            preview.parent.mkdir(parents=True, exist_ok=True)
            preview.write_bytes(png)
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(args.root)}")
    print(f"home {pub['home']}, release {pub['tag']}, Colab notebooks on branch {pub['branch']}: "
          f"{len(stale)} file(s) {'to update' if args.check else 'updated'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
