"""The book's own Sphinx extension (``sphinx.local_extensions`` in ``_config.yml``).

* **Numbers per chapter.** Figures and tables are numbered within their chapter, "Figure 3.2",
  the chapter's number being the one in its file name (``notebooks/03_...``: Chapter 3, so
  Chapter 0 exists too); other pages number their own from 1. (Sphinx's section numbering would
  start at 1 and add a number to every title of the sidebar.)
* **Author-year citations** in round brackets (``bibtex_reference_style: author_year_round``),
  and **author-year bibliographies**, the pybtex style ``authoryear``: entries sorted by author,
  year and title and labelled "Goodfellow et al., 2015" (two entries with one label get "a",
  "b"), so the lists match the author-year citations of the text.

:func:`author_year` and :func:`reference` are also what ``scripts/colab_notebooks.py`` writes
for the notebooks that leave the book, so both read alike.
"""
from __future__ import annotations

import re
from collections import Counter

CHAPTER_DOC = re.compile(r"(?:^|/)notebooks/(\d+)_")


def chapter_number(docname: str) -> int | None:
    """The chapter a page is (``notebooks/03_input_transformations`` -> 3), or None."""
    m = CHAPTER_DOC.search(docname)
    return int(m.group(1)) if m else None


def renumber(app, env) -> list[str]:
    """Sphinx has numbered figures and tables through the whole book; number them per page,
    with the chapter's number first on chapter pages (runs after Sphinx's own numbering)."""
    for docname, by_type in env.toc_fignumbers.items():
        chapter = chapter_number(docname)
        for ids in by_type.values():
            for k, fid in enumerate(sorted(ids, key=lambda i: ids[i]), start=1):
                ids[fid] = (chapter, k) if chapter is not None else (k,)
    return list(env.toc_fignumbers)


# --------------------------------------------------------------------------- bibliography
def plain(latex: str) -> str:
    """A BibTeX field as plain text: accents decoded, braces and double spaces gone."""
    import codecs

    import latexcodec  # noqa: F401  (registers the "ulatex" codec; a dependency of pybtex)
    text = codecs.decode(latex, "ulatex") if "\\" in latex else latex
    return re.sub(r"\s+", " ", text.replace("{", "").replace("}", "")).strip()


def _last_names(entry) -> list[str]:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    return [plain(" ".join(p.prelast_names + p.last_names)) for p in people]


def author_year(entry) -> tuple[str, str]:
    """("Goodfellow et al.", "2015"): the authors as cited, and the year ("n.d." if none)."""
    names = _last_names(entry)
    if not names:
        who = plain(entry.fields.get("organization", entry.fields.get("title", "Anonymous")))
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return who, plain(entry.fields.get("year", "n.d."))


def labels(entries) -> list[str]:
    """Author-year labels of ``entries`` in their order; equal ones get "a", "b", ..."""
    base = [", ".join(author_year(e)) for e in entries]
    count, seen = Counter(base), Counter()
    out = []
    for label in base:
        if count[label] > 1:
            seen[label] += 1
            label += "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
        out.append(label)
    return out


def reference(entry) -> str:
    """One entry of a reference list in Markdown: authors (year). Title. Venue. Address."""
    people = entry.persons.get("author") or []

    def person(p) -> str:
        first = " ".join(f"{plain(n)[0]}." for n in p.first_names + p.middle_names if plain(n))
        last = plain(" ".join(p.prelast_names + p.last_names))
        return f"{last}, {first}" if first else last

    names = [person(p) for p in people]
    who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + ", and " + names[-1] if names else "Anonymous"
    f = entry.fields
    venue = f.get("booktitle") or f.get("journal") or f.get("howpublished") or f.get("publisher") or ""
    parts = [f"{who} ({plain(f.get('year', 'n.d.'))}).", f"{plain(f.get('title', ''))}."]
    if venue:
        parts.append(f"*{plain(venue)}*.")
    if f.get("note"):
        parts.append(f"{plain(f['note'])}.")
    link = f.get("url") or (f"https://doi.org/{f['doi']}" if f.get("doi") else "")
    if link:
        parts.append(f"<{link}>")
    return " ".join(parts)


def _register_style() -> None:
    from pybtex.plugin import register_plugin
    from pybtex.style.formatting.plain import Style as Plain
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            return iter(labels(list(sorted_entries)))

    class AuthorYearStyle(Plain):
        default_label_style = "authoryear"
        default_sorting_style = "author_year_title"

    register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels, force=True)
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle, force=True)


def _register_reference_style() -> None:
    """``author_year_round``: author-year citations in round brackets, "Madry et al. (2018)"
    and "(Madry et al., 2018)", as the Colab copies write them."""
    import dataclasses

    from sphinxcontrib.bibtex.plugin import register_plugin
    from sphinxcontrib.bibtex.style.referencing import BracketStyle
    from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle

    def round_brackets():
        return BracketStyle(left="(", right=")", sep="; ", sep2="; ", last_sep="; ")

    @dataclasses.dataclass
    class AuthorYearRound(AuthorYearReferenceStyle):
        bracket_parenthetical: BracketStyle = dataclasses.field(default_factory=round_brackets)
        bracket_textual: BracketStyle = dataclasses.field(default_factory=round_brackets)
        bracket_author: BracketStyle = dataclasses.field(default_factory=round_brackets)
        bracket_label: BracketStyle = dataclasses.field(default_factory=round_brackets)
        bracket_year: BracketStyle = dataclasses.field(default_factory=round_brackets)

    register_plugin("sphinxcontrib.bibtex.style.referencing", "author_year_round", AuthorYearRound,
                    force=True)


def setup(app):
    _register_style()
    _register_reference_style()
    app.connect("env-get-updated", renumber, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
