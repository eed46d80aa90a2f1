"""Tables for people: one output that reads well in Jupyter or Colab and is a numbered table in
the book.

:func:`show_table` displays a single output with two representations:

* ``text/html``, a pandas Styler: caption, the table, a note under it (Jupyter, Colab, VS Code);
* ``text/markdown``, a MyST ``{table}`` directive with ``:name:`` and the caption, which the book
  (myst-nb with ``nb_render_markdown_format: myst`` and ``text/markdown`` preferred to
  ``text/html``, see ``_config.yml``) turns into a numbered table that ``{numref}`` links to.

Cells are formatted by what they hold: shares in ``percent`` columns as ``52.5%``, a
``(low, high)`` interval there as ``[49.1, 55.9]`` and ``(value, low, high)`` as
``52.5% [49.1, 55.9]``; whole numbers as counts with thousands separators (``4,865``); other
numbers to ``digits`` significant digits; a missing value as an en dash.  Column headers must be
for people: a code name such as ``acc_ns`` is an error.
"""
from __future__ import annotations

import html
import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

#: Names of tables (``{numref}`` targets): ``tab-`` then lowercase words joined by hyphens.
NAME = re.compile(r"^tab-[a-z0-9]+(-[a-z0-9]+)*$")
#: A header that looks like a variable name (``acc_ns``, ``fit_detection_acc``): not for readers.
CODE_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")
MISSING = "–"
#: An interval "[49.1, 55.9]" is shown with a no-break space, so a narrow column wraps a cell
#: between the value and its interval, never inside the interval.
_INTERVAL = re.compile(r"\[([^\[\],]*), ([^\[\],]*)\]")


def _percent(v: float, decimals: int) -> str:
    return f"{100 * v:.{decimals}f}"


def format_cell(value, percent: bool = False, decimals: int = 1, digits: int = 3) -> str:
    """One cell as text (see the module's docstring for the rules)."""
    if isinstance(value, (tuple, list)):
        if not percent or len(value) not in (2, 3):
            inner = ", ".join(format_cell(v, False, decimals, digits) for v in value)
            return f"[{inner}]"
        if len(value) == 2:
            return f"[{_percent(value[0], decimals)}, {_percent(value[1], decimals)}]"
        v, lo, hi = value
        return f"{_percent(v, decimals)}% [{_percent(lo, decimals)}, {_percent(hi, decimals)}]"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Number):
        if percent:
            return f"{_percent(value, decimals)}%"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if float(value).is_integer():
            return f"{int(value):,}"
        return f"{value:.{digits}g}"
    return str(value)


def format_frame(df: pd.DataFrame, percent: Sequence[str] = (), decimals: int = 1,
                 digits: int = 3) -> pd.DataFrame:
    """``df`` with every cell formatted by :func:`format_cell` (strings, same shape)."""
    unknown = set(percent) - set(df.columns)
    if unknown:
        raise KeyError(f"percent names columns the table does not have: {sorted(unknown)}")
    return pd.DataFrame({c: [format_cell(v, c in percent, decimals, digits) for v in df[c]]
                         for c in df.columns}, index=range(len(df)))


@dataclass
class Table:
    """A formatted table with its name, caption and note; displays as HTML and as MyST."""

    cells: pd.DataFrame   # strings; the first ``labels`` columns are row labels
    name: str
    caption: str
    note: str = ""
    labels: int = 1

    def _label_columns(self) -> list:
        return list(self.cells.columns[:self.labels])

    def _shown(self) -> pd.DataFrame:
        """The cells as displayed: intervals kept on one line."""
        return self.cells.map(lambda v: _INTERVAL.sub("[\\1,\u00a0\\2]", str(v)))

    def _repr_html_(self) -> str:
        shown = self._shown()
        styler = (shown.style.hide(axis="index")
                  .set_caption(html.escape(self.caption))
                  .set_properties(subset=self._label_columns(), **{"text-align": "left"})
                  .set_properties(subset=list(shown.columns[self.labels:]), **{"text-align": "right"})
                  .set_table_styles([{"selector": "caption",
                                      "props": "caption-side: top; text-align: left; font-weight: bold;"},
                                     {"selector": "th", "props": "text-align: center;"}]))
        note = f'<p style="font-size: smaller; margin-top: 0.3em">{html.escape(self.note)}</p>' if self.note else ""
        return styler.to_html() + note

    def _repr_markdown_(self) -> str:
        shown = self._shown()
        esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        head = "| " + " | ".join(esc(c) for c in shown.columns) + " |"
        align = "|" + "|".join(":--" if i < self.labels else "--:" for i in range(shown.shape[1])) + "|"
        rows = ["| " + " | ".join(esc(v) for v in row) + " |" for row in shown.itertuples(index=False)]
        caption = " ".join(self.caption.split())
        out = [f":::{{table}} {caption}", f":name: {self.name}", ":align: center", "",
               head, align, *rows, ":::"]
        if self.note:
            out += ["", self.note]
        return "\n".join(out) + "\n"

    def __repr__(self) -> str:
        text = self.cells.to_string(index=False)
        return "\n".join(filter(None, [self.caption, text, self.note]))


def make_table(df: pd.DataFrame, name: str, caption: str, *, percent: Sequence[str] | None = None,
               labels: int | None = None, transpose: bool = False, note: str = "",
               decimals: int = 1, digits: int = 3) -> Table:
    """The :class:`Table` :func:`show_table` displays (see there)."""
    if not NAME.match(name):
        raise ValueError(f"table names are 'tab-' then lowercase words joined by hyphens "
                         f"(e.g. 'tab-ch01-noise-5x5'), got {name!r}")
    if not caption.strip():
        raise ValueError("every table needs a caption")
    percent = tuple(df.attrs.get("percent", ()) if percent is None else percent)
    labels = int(df.attrs.get("labels", 1) if labels is None else labels)
    cells = format_frame(df, percent, decimals, digits)
    if transpose:
        # the first column's values become the headers; the old headers the row labels
        cells = cells.set_index(cells.columns[0]).T.reset_index()
        cells.columns = ["", *cells.columns[1:]]
        labels = 1
    if labels > 1 and len(cells):   # rows grouped by the first label: show it once per group
        first = cells.columns[0]
        cells.loc[cells[first].eq(cells[first].shift()), first] = ""
    code_like = [str(c) for c in cells.columns if CODE_NAME.match(str(c))]
    if code_like:
        raise ValueError(f"column headers are for readers, not code names: {code_like}")
    return Table(cells, name, caption, note, labels)


def show_table(df: pd.DataFrame, name: str, caption: str, *, percent: Sequence[str] | None = None,
               labels: int | None = None, transpose: bool = False, note: str = "",
               decimals: int = 1, digits: int = 3) -> None:
    """Display ``df`` as one numbered, captioned table (HTML in Jupyter, MyST in the book).

    ``name``: the ``{numref}`` target, ``tab-<chapter>-<what>``.  ``percent``: columns of shares
    (or intervals) shown as percentages; default ``df.attrs["percent"]``, which the chapters'
    table functions set.  ``labels``: how many leading columns are row labels (default
    ``df.attrs["labels"]`` or 1); repeated values of the first are blanked.  ``transpose``:
    turn a wide table with few rows on its side (after formatting; the first column's values
    become the headers).  ``note``: a line under the table, e.g. the run-info line.
    """
    from IPython.display import display
    display(make_table(df, name, caption, percent=percent, labels=labels, transpose=transpose,
                       note=note, decimals=decimals, digits=digits))


def for_readers(df: pd.DataFrame, columns: dict[str, str], *, percent: Sequence[str] = (),
                labels: int = 1) -> pd.DataFrame:
    """``df``'s ``columns`` (code name -> header), in that order, renamed for readers, with the
    formatting hints :func:`show_table` reads (``percent``: code names)."""
    out = df[list(columns)].rename(columns=columns).reset_index(drop=True)
    out.attrs = {"percent": [columns[c] for c in percent], "labels": labels}
    return out
