#!/usr/bin/env python3
"""Student and instructor versions of the chapters.

The notebooks in ``notebooks/`` are the instructor version: every exercise has a solution cell
(tagged ``solution``, metadata ``{"advlab": {"exercise": "chNN-exK"}}``) followed by its check
cell, ``exercises.check("chNN-exK", answer)``.  The book folds the solution cells away
(``hide-input``).  The student version, written by this script, replaces each solution cell by
its stub (``advlab.stub`` in the cell's metadata, else ``answer = ...``) and clears the outputs
of the solution and check cells, so neither the solution nor the check's confirmation, which can
quote the answer, is left in the file.  Its badge opens the student copy in Colab and says what
to do; its exercises' introduction speaks to a student.  The rest of each notebook, stored
outputs included, is kept.

    python scripts/student_notebooks.py --out student/            # student versions
    python scripts/student_notebooks.py --out instructor/ --instructor

A student runs the stub's check cell and gets "No answer yet ..." until the answer is filled in.
``scripts/colab_notebooks.py`` publishes the student versions for Colab (in plain Markdown).
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STUB = "answer = ...  # your answer here"
STUDENT_NOTE = ("**Student version.** The worked solutions of this chapter's exercises are "
                "replaced by stubs: read the chapter, then at its end fill in each answer cell, run "
                "it, and run the check cell below it to see whether your answer is right.")


def _links():
    spec = importlib.util.spec_from_file_location("book_links", Path(__file__).with_name("book_links.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


links = _links()
exercise_of, is_check_of, lines = links.exercise_of, links.is_check_of, links.lines


def student_version(nb: dict, notebook: str | None = None, pub: dict | None = None) -> dict:
    """``nb`` with every solution replaced by its stub (a new dict).  With ``notebook`` (its
    file name), the badge opens the student copy in Colab (``pub``: where it is published,
    default from ``_config.yml``) and says what to do."""
    nb = copy.deepcopy(nb)
    cells = nb["cells"]
    for i, cell in enumerate(cells):
        exercise = exercise_of(cell)
        if not exercise:
            continue
        meta = cell["metadata"]
        stub = meta["advlab"].pop("stub", None) or DEFAULT_STUB
        cell["source"] = lines(stub)
        cell["outputs"], cell["execution_count"] = [], None
        meta["tags"] = [t for t in meta.get("tags", []) if t not in ("solution", "hide-input")] + ["exercise"]
        meta.pop("execution", None)
        for check in cells[i + 1:i + 2]:
            if is_check_of(check, exercise):
                check["outputs"], check["execution_count"] = [], None
                check["metadata"].pop("execution", None)
                check["metadata"]["tags"] = [t for t in check["metadata"].get("tags", [])
                                             if t != "remove-output"]
    intro = links.exercises_intro(cells, make=False)   # a notebook book_links.py has written
    if intro is not None:
        links.write_intro(cells[intro], links.EXERCISES_INTRO["student"])
    if notebook is not None:
        pub = pub or links.publishing()
        for cell in cells:
            if links.role(cell) == "badge":
                cell["source"] = lines(links.badge_source(links.colab_url(pub, notebook, "student"),
                                                          STUDENT_NOTE))
    return nb


def instructor_version(nb: dict) -> dict:
    """``nb`` as stored, with the solution cells unfolded (no ``hide-input``)."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        if exercise_of(cell):
            cell["metadata"]["tags"] = [t for t in cell["metadata"].get("tags", []) if t != "hide-input"]
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write the student (default) or instructor "
                                                 "version of every chapter notebook.")
    parser.add_argument("--out", type=Path, required=True, help="folder for the notebooks")
    parser.add_argument("--instructor", action="store_true", help="keep the solutions")
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="default: every notebooks/*.ipynb")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        source = json.loads(path.read_text())
        nb = instructor_version(source) if args.instructor else student_version(source, path.name)
        n = sum(1 for c in source["cells"] if exercise_of(c))
        (args.out / path.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"{args.out / path.name}: {n} exercise(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
