#!/usr/bin/env python3
"""The chapters as notebooks that read well outside the book: in Colab, Binder or plain Jupyter.

The chapter notebooks are written in MyST for the book: ``{cite:p}`` citations, ``{numref}`` and
``{ref}`` cross-references, ``(sec-...)=`` labels, ``{bibliography}`` and other directives,
figure captions in the cells' ``mystnb`` metadata. Outside the book all of that is raw text.
For every ``notebooks/*.ipynb`` this script writes two copies in plain Markdown:

* ``OUT/notebooks/``: the chapter as a reader runs it. Labels removed; cross-references turned
  into links to the book's pages (``html.baseurl`` of ``_config.yml``) with the book's own
  words and numbers, "Figure 3.2", "Chapter 1, 4. Going further: ..."; citations into
  author-year text and the ``{bibliography}`` block into the chapter's reference list
  (``book/references.bib``, the book's own labels: ``_ext/advlab_book.py``); admonitions and
  dropdowns into quotations; each figure's caption into a line under it, each table's number
  into its caption; the Markdown copy of each table and box dropped where an HTML one exists;
  the solutions folded (a Colab form, collapsed in JupyterLab);
* ``OUT/student/``: the same with every solution replaced by its stub
  (``scripts/student_notebooks.py``), its badge opening the student copy.

The release workflow publishes ``OUT`` on the branch ``repository.branch`` under the release
tag, where the badges and the book's launch buttons point (``scripts/book_links.py``). A
cross-reference to a label or a citation of a key that does not exist is an error.

    python scripts/colab_notebooks.py --out colab/
"""
from __future__ import annotations

import argparse
import copy
import html
import importlib.util
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


links = _load("book_links", ROOT / "scripts" / "book_links.py")
student = _load("student_notebooks", ROOT / "scripts" / "student_notebooks.py")
bookext = _load("advlab_book", ROOT / "_ext" / "advlab_book.py")

#: What no notebook for Colab may contain: MyST roles, directives and labels.
ROLE = re.compile(r"\{[a-z][a-z0-9:_-]*\}`")
DIRECTIVE = re.compile(r"^\s*(```+|:::+)\s*\{[a-z]", re.M)
LABEL = re.compile(r"^\s*\([A-Za-z0-9_.:-]+\)=\s*$", re.M)


class ConversionError(ValueError):
    """A cross-reference or a citation the book does not define."""


# --------------------------------------------------------------------------- what the book defines
@dataclass
class Target:
    docname: str            # "notebooks/01_noise_and_smoothing", "book/notation"
    kind: str               # "section", "figure", "table"
    text: str               # the section's title or the figure's / table's caption
    number: str = ""        # "3.2" for figures and tables


def chapter_of(docname: str) -> int | None:
    return bookext.chapter_number(docname)


def _title(text: str) -> str | None:
    m = re.search(r"^# (.+)$", text, re.M)
    return m.group(1).strip() if m else None


def _sections(docname: str, text: str, targets: dict) -> None:
    """``(label)=`` lines followed by a heading."""
    for m in re.finditer(r"^\(([^)\s]+)\)=\s*\n+#+\s+(.+)$", text, re.M):
        targets[m.group(1)] = Target(docname, "section", m.group(2).strip())


def index(root: Path) -> tuple[dict[str, Target], dict[str, str]]:
    """Every label of the book's pages (sections, figures, tables, with the book's numbers) and
    every page's title."""
    targets: dict[str, Target] = {}
    titles: dict[str, str] = {}
    for path in sorted((root / "book").glob("*.md")):
        text = path.read_text()
        docname = f"book/{path.stem}"
        titles[docname] = _title(text) or path.stem
        _sections(docname, text, targets)
        m = re.search(r"^\(([^)\s]+)\)=\s*\n+# ", text, re.M)
        if m:
            targets[m.group(1)] = Target(docname, "section", titles[docname])
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        docname = f"notebooks/{path.stem}"
        chapter = chapter_of(docname)
        nb = json.loads(path.read_text())
        counts = {"figure": 0, "table": 0}
        for cell in nb["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "markdown":
                if _title(source):
                    titles.setdefault(docname, _title(source))
                _sections(docname, source, targets)
                continue
            figure = cell.get("metadata", {}).get("mystnb", {}).get("figure")
            if figure and figure.get("name"):
                counts["figure"] += 1
                targets[figure["name"]] = Target(docname, "figure", figure.get("caption", ""),
                                                 f"{chapter}.{counts['figure']}")
            for out in cell.get("outputs", []):
                md = "".join(out.get("data", {}).get("text/markdown", ""))
                for m in re.finditer(r"^:::\{table\}\s*(.*)\n:name:\s*(\S+)", md, re.M):
                    counts["table"] += 1
                    targets[m.group(2)] = Target(docname, "table", m.group(1).strip(),
                                                 f"{chapter}.{counts['table']}")
    return targets, titles


# --------------------------------------------------------------------------- citations
class Bibliography:
    def __init__(self, path: Path):
        from pybtex.database import parse_file
        self.data = parse_file(str(path))
        self.entries = self.data.entries

    def cite(self, keys: list[str], textual: bool, cited: set) -> str:
        parts = []
        for key in keys:
            if key not in self.entries:
                raise ConversionError(f"unknown citation key {key!r}")
            cited.add(key)
            who, year = bookext.author_year(self.entries[key])
            parts.append(f"{who} ({year})" if textual else f"{who}, {year}")
        return "; ".join(parts) if textual else f"({'; '.join(parts)})"

    def reference_list(self, keys: set) -> str:
        entries = [self.entries[k] for k in keys]
        order = sorted(range(len(entries)), key=lambda i: (bookext.author_year(entries[i]),
                                                           bookext.plain(entries[i].fields.get("title", ""))))
        return "\n".join(f"* {bookext.reference(entries[i])}" for i in order)


# --------------------------------------------------------------------------- Markdown
class Converter:
    """MyST -> plain Markdown for one chapter (``docname``)."""

    def __init__(self, docname: str, targets: dict, titles: dict, bib: Bibliography, pub: dict):
        self.docname, self.targets, self.titles, self.bib, self.pub = docname, targets, titles, bib, pub
        self.chapter = chapter_of(docname)
        self.cited: set[str] = set()

    # ---------------------------------------------------------------- roles
    def _link(self, text: str, docname: str, anchor: str | None = None) -> str:
        return f"[{text}]({links.page_url(self.pub, docname, anchor)})"

    def _resolve_doc(self, target: str) -> str:
        base = Path(self.docname).parent
        parts = []
        for part in (base / target).as_posix().split("/"):
            if part == "..":
                parts.pop()
            elif part and part != ".":
                parts.append(part)
        docname = "/".join(parts)
        if docname not in self.titles:
            raise ConversionError(f"{self.docname}: unknown page {target!r}")
        return docname

    @staticmethod
    def _explicit(content: str) -> tuple[str | None, str]:
        m = re.fullmatch(r"\s*(.*?)\s*<([^>]+)>\s*", content, re.S)
        return (m.group(1), m.group(2).strip()) if m else (None, content.strip())

    def _ref_text(self, target: Target) -> str:
        if target.kind in ("figure", "table"):
            return f"{target.kind.capitalize()} {target.number}"
        chapter = chapter_of(target.docname)
        if target.docname == self.docname:
            return target.text
        if chapter is not None:
            return f"Chapter {chapter}, {target.text}"
        return target.text

    def role(self, m: re.Match) -> str:
        name, content = m.group(1), m.group(2)
        if name.startswith("cite"):
            keys = [k.strip() for k in content.split(",") if k.strip()]
            return self.bib.cite(keys, textual=name in ("cite:t", "cite:ts"), cited=self.cited)
        if name in ("ref", "numref"):
            text, label = self._explicit(content)
            if label not in self.targets:
                raise ConversionError(f"{self.docname}: unknown label {label!r}")
            target = self.targets[label]
            if text is None:
                text = self._ref_text(target)
            elif name == "numref" and target.number:
                text = text.replace("{number}", target.number).replace("%s", target.number)
            return self._link(text, target.docname, label)
        if name == "doc":
            text, target = self._explicit(content)
            docname = self._resolve_doc(target)
            return self._link(text or self.titles[docname], docname)
        if name == "math":
            return f"${content}$"
        if name in ("sub", "sup"):
            return f"<{name}>{content}</{name}>"
        return content   # any other role: its text

    def inline(self, text: str) -> str:
        return re.sub(r"\{([a-z][a-z0-9:_-]*)\}`([^`]*)`", self.role, text)

    # ---------------------------------------------------------------- blocks
    def directive(self, name: str, argument: str, body: str) -> str:
        lines = body.split("\n")
        while lines and re.match(r"^:[a-z-]+:", lines[0]):
            lines.pop(0)
        content = self.markdown("\n".join(lines)).strip()
        if name == "bibliography":
            return self.bibliography()
        if name == "math":
            return f"$$\n{content}\n$$"
        if name in ("code", "code-block", "code-cell"):
            return f"```{argument}\n{content}\n```"
        if name in ("figure", "image"):
            return f"*Figure: {self.inline(content or argument)}* (on the book's page)"
        if name == "table":
            return f"**{self.inline(argument)}**\n\n{content}"
        title = self.inline(argument) if argument else name.capitalize()
        if name in ("note", "tip", "warning", "important", "hint", "caution", "attention", "seealso"):
            title = f"{name.capitalize()}" + (f": {self.inline(argument)}" if argument else "")
        quoted = "\n".join(f"> {line}" if line else ">" for line in content.split("\n"))
        return f"> **{title}.**\n>\n{quoted}"

    def bibliography(self) -> str:
        self.bib_seen = True
        return "@@REFERENCES@@"

    def markdown(self, text: str) -> str:
        """One Markdown cell's source, MyST removed (the reference list is filled in later)."""
        text = LABEL.sub("", text)
        out, lines, i = [], text.split("\n"), 0
        while i < len(lines):
            m = re.match(r"^\s*(```+|:::+)\s*\{([a-z][a-z0-9-]*)\}\s*(.*)$", lines[i])
            if not m:
                out.append(self.inline(lines[i]))
                i += 1
                continue
            fence, name, argument = m.group(1), m.group(2), m.group(3).strip()
            depth, j, body = 1, i + 1, []
            while j < len(lines):
                if re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*\{{", lines[j]):
                    depth += 1
                elif re.match(rf"^\s*{re.escape(fence)}\s*$", lines[j]):
                    depth -= 1
                    if depth == 0:
                        break
                body.append(lines[j])
                j += 1
            out.append(self.directive(name, argument, "\n".join(body)))
            i = j + 1
        return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")


# --------------------------------------------------------------------------- notebooks
def _form(cell: dict, title: str) -> None:
    """Fold a code cell: a Colab form with ``title``, collapsed in JupyterLab."""
    source = "".join(cell["source"])
    if not source.startswith("# @title"):
        cell["source"] = links.lines(f"# @title {title}\n{source}")
    cell["metadata"]["cellView"] = "form"
    cell["metadata"].setdefault("jupyter", {})["source_hidden"] = True


def _caption_table(output: dict, targets: dict) -> None:
    """The table's number into its HTML caption; the MyST copy of the output dropped."""
    data = output.get("data", {})
    md = "".join(data.get("text/markdown", ""))
    if "text/html" in data:
        m = re.search(r":name:\s*(\S+)", md)
        if m and m.group(1) in targets and targets[m.group(1)].number:
            number = f"Table {targets[m.group(1)].number}. "
            page = "".join(data["text/html"])
            data["text/html"] = re.sub(r"(<caption[^>]*>)", lambda c: c.group(1) + html.escape(number), page,
                                       count=1)
        data.pop("text/markdown", None)


def convert(nb: dict, name: str, targets: dict, titles: dict, bib: Bibliography, pub: dict,
            folder: str = "notebooks") -> dict:
    """The notebook ``name`` (a file of ``notebooks/``) for Colab: see the module's docstring."""
    nb = copy.deepcopy(nb)
    docname = f"notebooks/{Path(name).stem}"
    conv = Converter(docname, targets, titles, bib, pub)
    cells = []
    for cell in nb["cells"]:
        meta = cell.setdefault("metadata", {})
        tags = meta.get("tags", [])
        if links.role(cell) == "badge":
            page = links.page_url(pub, docname)
            note = "".join(cell["source"]).split("\n\n", 1)[1] if folder == "student" else ""
            text = links.badge_source(links.colab_url(pub, name, folder), note)
            cell["source"] = links.lines(f"{text}\n\nThis notebook is a chapter of the book *advlab: adversarial "
                                         f"robustness, measured*; its page in the book is [{titles[docname]}]({page}).")
            cells.append(cell)
            continue
        if cell["cell_type"] == "markdown":
            if links.role(cell) == "exercises-intro" and folder != "student":
                links.write_intro(cell, links.EXERCISES_INTRO["colab"] + links.student_link(pub, name))
            cell["source"] = links.lines(conv.markdown("".join(cell["source"])))
            cells.append(cell)
            continue
        for out in cell.get("outputs", []):
            _caption_table(out, targets)
            if "text/markdown" in out.get("data", {}) and "text/html" not in out["data"]:
                md = "".join(out["data"]["text/markdown"])
                out["data"]["text/markdown"] = links.lines(conv.markdown(md))
        if links.exercise_of(cell) and "solution" in tags:
            _form(cell, "Solution (double-click to show the code)")
        elif "remove-input" in tags or "hide-input" in tags:
            _form(cell, "Code of the output below (double-click to show)")
        meta["tags"] = [t for t in tags if t not in ("remove-output", "hide-input", "remove-input")]
        figure = meta.get("mystnb", {}).pop("figure", None)
        if not meta.get("mystnb"):
            meta.pop("mystnb", None)
        cells.append(cell)
        if figure:
            target = targets.get(figure.get("name", ""))
            number = f"**Figure {target.number}.** " if target else ""
            cells.append({"cell_type": "markdown", "metadata": {"advlab": {"cell": "caption"}},
                          "source": links.lines(f"{number}{conv.markdown(figure.get('caption', ''))}")})
    references = conv.bib.reference_list(conv.cited)
    for cell in cells:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            if "@@REFERENCES@@" in text:
                cell["source"] = links.lines(text.replace("@@REFERENCES@@", references))
    nb["cells"] = cells
    for i, cell in enumerate(cells):
        if "id" not in cell and nb.get("nbformat_minor", 0) >= 5:
            cell["id"] = f"advlab-colab-{i}"
    return nb


def leftovers(nb: dict) -> list[str]:
    """MyST that survived in ``nb``'s Markdown (cells and outputs shown as Markdown)."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        texts = ["".join(cell["source"])] if cell["cell_type"] == "markdown" else []
        for out in cell.get("outputs", []):
            if "text/markdown" in out.get("data", {}):
                texts.append("".join(out["data"]["text/markdown"]))
        for text in texts:
            for pattern in (ROLE, DIRECTIVE, LABEL):
                for m in pattern.finditer(text):
                    found.append(f"cell {i}: {text[max(0, m.start() - 30):m.end() + 30]!r}")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for notebooks/ and student/")
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    import nbformat
    pub = links.publishing(args.root)
    targets, titles = index(args.root)
    bib = Bibliography(args.root / "book" / "references.bib")
    errors = []
    for path in sorted((args.root / "notebooks").glob("*.ipynb")):
        source = json.loads(path.read_text())
        versions = {"notebooks": source, "student": student.student_version(source, path.name, pub)}
        for folder, nb in versions.items():
            try:
                out = convert(nb, path.name, targets, titles, bib, pub, folder)
            except ConversionError as err:
                errors.append(f"{path.name}: {err}")
                break
            left = leftovers(out)
            if left:
                errors.append(f"{path.name} ({folder}): MyST left: {left[:3]}")
            nbformat.validate(nbformat.from_dict(out))
            target = args.out / folder / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
        print(f"{path.name}: notebooks/ and student/ written")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
