"""scripts/colab_notebooks.py: the notebooks published for Colab read well outside the book: no
MyST role, directive or label is left, every cross-reference is a link to the book's pages with
the book's own numbers, every citation is author-year text with the chapter's reference list,
and the student copies hold no solution and open themselves."""
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("colab_notebooks", ROOT / "scripts" / "colab_notebooks.py")
colab = importlib.util.module_from_spec(spec)
sys.modules["colab_notebooks"] = colab   # its dataclasses look their module up
spec.loader.exec_module(colab)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("colab")
    assert colab.main(["--out", str(out)]) == 0
    return out


def markdown_of(nb: dict) -> str:
    texts = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            texts.append("".join(cell["source"]))
        for out in cell.get("outputs", []):
            if "text/markdown" in out.get("data", {}):
                texts.append("".join(out["data"]["text/markdown"]))
    return "\n".join(texts)


@pytest.mark.parametrize("folder", ["notebooks", "student"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_myst_is_left(written, folder, path):
    nb = json.loads((written / folder / path.name).read_text())
    text = markdown_of(nb)
    assert not colab.ROLE.search(text), colab.ROLE.search(text)
    assert not re.search(r"^\s*(```+|:::+)\s*\{", text, re.M), "a MyST directive is left"
    assert not re.search(r"^\s*\([\w.:-]+\)=\s*$", text, re.M), "a label line is left"
    assert "@@REFERENCES@@" not in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_references_become_links_and_citations_author_year(written, path):
    pub = colab.links.publishing()
    source = json.loads(path.read_text())
    myst = "\n".join("".join(c["source"]) for c in source["cells"] if c["cell_type"] == "markdown")
    nb = json.loads((written / "notebooks" / path.name).read_text())
    text = markdown_of(nb)
    refs = re.findall(r"\{(?:num)?ref\}`(?:[^`<]*<)?([^`>]+)>?`", myst)
    for label in refs:
        assert re.search(rf"\]\({re.escape(pub['baseurl'])}[\w/]+\.html#{re.escape(label)}\)", text), label
    cited = {k.strip() for g in re.findall(r"\{cite:[pt]\}`([^`]+)`", myst) for k in g.split(",")}
    assert cited, "every chapter cites its sources"
    bib = colab.Bibliography(ROOT / "book" / "references.bib")
    references = text.split("## References", 1)[1]
    for key in cited:
        who, year = colab.bookext.author_year(bib.entries[key])
        assert f"{who}, {year}" in text or f"{who} ({year})" in text, key
        assert colab.bookext.plain(bib.entries[key].fields["title"]) in references, key
    # numbers as in the book: "Figure 3.2", "Table 3.2"; cross-chapter links name the chapter
    chapter = int(path.name[:2])
    for m in re.finditer(r"\[(Figure|Table) (\d+)\.(\d+)\]\([^)]*/notebooks/(\d\d)_", text):
        assert int(m.group(2)) == int(m.group(4)), m.group(0)   # numbered within its chapter
    for m in re.finditer(r"\[([^\]]+)\]\([^)]*/notebooks/(\d\d)_[^)]*#sec-", text):
        if int(m.group(2)) != chapter:
            assert m.group(1).startswith(f"Chapter {int(m.group(2))}"), m.group(0)


def test_unknown_labels_and_keys_are_errors():
    targets, titles = colab.index(ROOT)
    bib = colab.Bibliography(ROOT / "book" / "references.bib")
    conv = colab.Converter("notebooks/00_threat_models_and_attacks", targets, titles, bib,
                           colab.links.publishing())
    with pytest.raises(colab.ConversionError, match="label"):
        conv.markdown("see {numref}`fig-ch09-nothing`")
    with pytest.raises(colab.ConversionError, match="key"):
        conv.markdown("as shown {cite:p}`nobody2099`")
    out = conv.markdown("(sec-x)=\n## A\n```{admonition} Discuss\nWhy {cite:t}`madry2018towards`?\n```")
    assert out.startswith("## A") and "> **Discuss.**" in out and "Madry et al. (2018)" in out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_captioned_tables_numbered_solutions_folded(written, path):
    nb = json.loads((written / "notebooks" / path.name).read_text())
    source = json.loads(path.read_text())
    figures = sum(1 for c in source["cells"] if c.get("metadata", {}).get("mystnb", {}).get("figure"))
    captions = [c for c in nb["cells"] if c.get("metadata", {}).get("advlab", {}).get("cell") == "caption"]
    assert len(captions) == figures
    assert all(re.match(r"\*\*Figure \d+\.\d+\.\*\* \S", "".join(c["source"])) for c in captions)
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            html = "".join(out.get("data", {}).get("text/html", ""))
            if "<caption>" in html and "<table" in html:
                assert re.search(r"<caption>Table \d+\.\d+\. ", html)
        if colab.links.exercise_of(cell):
            assert cell["metadata"]["cellView"] == "form" and cell["metadata"]["jupyter"]["source_hidden"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_student_copy_opens_itself_and_says_what_to_do(written, path):
    nb = json.loads((written / "student" / path.name).read_text())
    badge = "".join(nb["cells"][0]["source"])
    assert f"/student/{path.name})" in badge and "Student version" in badge
    assert not any(colab.links.exercise_of(c) and "solution" in c["metadata"].get("tags", [])
                   for c in nb["cells"])
