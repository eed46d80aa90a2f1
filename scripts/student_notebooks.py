#!/usr/bin/env python3
"""Student and instructor versions of the chapters.

The notebooks in ``notebooks/`` are the instructor version: every exercise has a solution cell
(tagged ``solution``, metadata ``{"advlab": {"exercise": "chNN-exK"}}``) followed by its check
cell, ``exercises.check("chNN-exK", answer)``.  The book folds the solution cells away
(``hide-input``).  The student version, written by this script, replaces each solution cell by
its stub (``advlab.stub`` in the cell's metadata, else ``answer = ...``) and clears the outputs
of the solution and check cells, so neither the solution nor the check's confirmation, which can
quote the answer, is left in the file.  The rest of each notebook, stored outputs included, is
kept.

    python scripts/student_notebooks.py --out student/            # student versions
    python scripts/student_notebooks.py --out instructor/ --instructor

A student runs the stub's check cell and gets "No answer yet ..." until the answer is filled in.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STUB = "answer = ...  # your answer here"


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + [parts[-1]]


def exercise_of(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("advlab", {}).get("exercise")


def is_check_of(cell: dict, exercise: str) -> bool:
    return cell["cell_type"] == "code" and f'exercises.check("{exercise}"' in "".join(cell["source"])


def student_version(nb: dict) -> dict:
    """``nb`` with every solution replaced by its stub (a new dict)."""
    nb = copy.deepcopy(nb)
    cells = nb["cells"]
    for i, cell in enumerate(cells):
        exercise = exercise_of(cell)
        if not exercise:
            continue
        meta = cell["metadata"]
        stub = meta["advlab"].pop("stub", None) or DEFAULT_STUB
        cell["source"] = _lines(stub)
        cell["outputs"], cell["execution_count"] = [], None
        meta["tags"] = [t for t in meta.get("tags", []) if t not in ("solution", "hide-input")] + ["exercise"]
        meta.pop("execution", None)
        for check in cells[i + 1:i + 2]:
            if is_check_of(check, exercise):
                check["outputs"], check["execution_count"] = [], None
                check["metadata"].pop("execution", None)
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
    make = instructor_version if args.instructor else student_version
    args.out.mkdir(parents=True, exist_ok=True)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        nb = make(json.loads(path.read_text()))
        n = sum(1 for c in json.loads(path.read_text())["cells"] if exercise_of(c))
        (args.out / path.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"{args.out / path.name}: {n} exercise(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
