import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("jupyter-book") is None, reason="jupyter-book not installed")
def test_book_builds_without_warnings(tmp_path):
    """The book builds from the stored notebooks with warnings treated as errors."""
    proc = subprocess.run(["jupyter-book", "build", str(ROOT), "--path-output", str(tmp_path),
                           "-W", "-n", "--keep-going"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    html = tmp_path / "_build" / "html"
    assert (html / "notebooks" / "01_noise_and_smoothing.html").exists()
    assert (html / "book" / "references.html").exists()


BIB = ROOT / "book" / "references.bib"


def _bib_keys() -> list[str]:
    import re
    return re.findall(r"^@\w+\{([^,\s]+),", BIB.read_text(), re.M)


def test_bibliography_has_no_duplicate_keys():
    """Chapters append their entries to one file: a key added twice breaks the build."""
    keys = _bib_keys()
    assert len(keys) == len(set(keys)), sorted(k for k in set(keys) if keys.count(k) > 1)


def test_chapters_cite_known_keys_and_end_with_their_bibliography():
    import json
    import re
    keys = set(_bib_keys())
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        cited = set(re.findall(r"\{cite:[pt]\}`([^`]+)`", text))
        cited = {k.strip() for group in cited for k in group.split(",")}
        assert cited and cited <= keys, f"{path.name}: unknown keys {sorted(cited - keys)}"
        assert "the seed" not in text.lower() and "seed 00" not in text.lower(), path.name
        assert re.search(r"## References\s*\n```\{bibliography\}\s*\n:filter: docname in docnames", text), path.name


# --------------------------------------------------------------------------- the chapters' shape
import json  # noqa: E402
import re  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _markdown(path) -> str:
    return "\n".join("".join(c["source"]) for c in _cells(path) if c["cell_type"] == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_ends_with_summary_exercises_references(path):
    """Every chapter ends: Summary, then Exercises (three or more), then References."""
    heads = re.findall(r"^## (?:\d+\.\s+)?(.+?)\s*$", _markdown(path), re.M)
    assert heads[-3:] == ["Summary", "Exercises", "References"], heads[-4:]
    exercises = sum(1 for c in _cells(path) if c.get("metadata", {}).get("advlab", {}).get("exercise"))
    assert exercises >= 3, f"{exercises} exercises: a chapter has three or more"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_provenance_box_and_no_run_info_lines(path):
    """Where and how long the results took is said once, in a folded box at the chapter's end;
    no table or cell prints a run-info line (whose wall time is only the cache's re-reading)."""
    cells = _cells(path)
    boxes = [c for c in cells if c.get("metadata", {}).get("advlab", {}).get("cell") == "provenance"]
    assert len(boxes) == 1 and cells.index(boxes[0]) > len(cells) - 4, "one provenance cell, at the end"
    assert "remove-input" in boxes[0]["metadata"].get("tags", [])
    shown = "".join("".join(o.get("data", {}).get("text/markdown", "")) for o in boxes[0].get("outputs", []))
    assert shown.startswith(":::{dropdown}") and "from an empty cache" in shown, shown[:200]
    for cell in cells:
        for out in cell.get("outputs", []):
            text = "".join(out.get("text", "")) + json.dumps(out.get("data", {}), ensure_ascii=False)
            assert "run-info" not in text, "".join(cell["source"])[:80]


#: Words of the project's workshop that readers should not meet.
INTERNAL = re.compile(r"offline mirror|stored full run|\bpieces?\b|seed_table|run-info|\bthe seed\b|"
                      r"(?<![\w/])(?:tests|scripts|advlab)/[\w./]+\.(?:py|json|md)")


def _reader_text(path) -> str:
    if path.suffix == ".md":
        return path.read_text()
    parts = []
    for c in _cells(path):
        if c["cell_type"] == "markdown":
            parts.append("".join(c["source"]))
        for out in c.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            parts.append("".join(out.get("data", {}).get("text/markdown", "")))
    return "\n".join(parts)


READER_PAGES = NOTEBOOKS + [p for p in sorted((ROOT / "book").glob("*.md"))
                            if p.stem not in ("contributing", "timings")]   # the appendix's workshop pages


@pytest.mark.parametrize("path", READER_PAGES, ids=lambda p: p.name)
def test_reader_facing_text_has_no_internal_words(path):
    found = sorted({m.group(0) for m in INTERNAL.finditer(_reader_text(path))})
    assert not found, found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notation_linked_and_other_chapters_named(path):
    """The first section links the notation page; a link into another chapter says which."""
    cells = _cells(path)
    title = next(i for i, c in enumerate(cells) if "".join(c["source"]).lstrip().startswith("# "))
    first = "\n".join("".join(c["source"]) for c in cells[title:] if c["cell_type"] == "markdown"
                      ).split("\n## ")[0]
    assert "{doc}`../book/notation`" in first, "link the notation page from the chapter's opening"
    me = int(path.name[:2])
    for m in re.finditer(r"\{ref\}`([^`]*)`", _markdown(path)):
        target = re.search(r"sec-ch(\d\d)-", m.group(1))
        if target and int(target.group(1)) != me:
            assert re.match(rf"Chapter {int(target.group(1))}\b[^<]*<", m.group(1)), m.group(0)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_discussion_parts_are_marked(path):
    """A question the check does not check is a "Discuss" block, never plain task text."""
    for c in _cells(path):
        text = "".join(c["source"])
        if c["cell_type"] == "markdown" and text.startswith("**Exercise"):
            task = re.split(r"```\{admonition\} Discuss", text)[0]
            assert "predict" not in task.lower() and "why?" not in task.lower(), task[:120]


def test_landing_page_names_chapters_as_the_sidebar_does():
    """The intro lists every chapter by its own title (a {doc} link without other text), and
    says who the book is for, what to know, how to install, with a preview figure."""
    intro = (ROOT / "book" / "intro.md").read_text()
    for path in NOTEBOOKS:
        assert f"{{doc}}`../notebooks/{path.stem}`" in intro, path.stem
    for heading in ("## Who it is for", "## What you need to know", "## Install", "## The chapters"):
        assert heading in intro
    m = re.search(r"```\{(?:image|figure)\} (\S+)", intro)
    assert m and (ROOT / "book" / m.group(1)).exists()


def test_source_studies_are_in_the_bibliography():
    keys = set(_bib_keys())
    assert {"dealingblog", "wangzhangreproducing", "liu2019imageprocessing", "salman2020denoised",
            "hwang2019where"} <= keys


def _stored_tables(path):
    for cell in _cells(path):
        for out in cell.get("outputs", []):
            md = "".join(out.get("data", {}).get("text/markdown", ""))
            if md.startswith(":::{table}"):
                yield md


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_tables_fit_the_page(path):
    """No stored table is wider than the page (numbers never wrap, so a wide table puts each
    interval under its value), and no cell reads like code: no scientific notation, no
    percentages with two decimals, no "|" inside a cell."""
    from advlab.report import PAGE_WIDTH_PX, table_width_px
    for md in _stored_tables(path):
        name = re.search(r":name: (\S+)", md).group(1)
        rows = [re.split(r"(?<!\\)\|", line)[1:-1] for line in md.splitlines() if line.startswith("|")]
        rows = [[c.strip() for c in r] for r in rows]
        left = [a.startswith(":") and not a.endswith(":") for a in rows[1]]
        assert table_width_px(rows[0], rows[2:], left) <= PAGE_WIDTH_PX, f"{name} is wider than the page"
        cells = [c for r in rows[2:] for c in r]
        bad = [c for c in cells if re.search(r"\de[+-]\d|\d\.\d\d%|\\\|", c)]
        assert not bad, f"{name}: {bad[:3]}"
