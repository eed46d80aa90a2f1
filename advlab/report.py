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
numbers to ``digits`` significant digits, never in scientific notation (``1,820``, ``0.000202``);
a missing value as an en dash; a code name the book knows as its name for readers
(:func:`human`: ``resnet20`` is ``ResNet-20``).  Column headers must be for people: a code name
such as ``acc_ns`` is an error.  Numeric columns are right-aligned and never wrap inside a value
and its interval; columns of words (claims, verdicts, evidence) are left-aligned, and a ``|``
inside such a cell is shown as ``;`` (it would read as a column rule).
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
NBSP = "\u00a0"
#: The width the book gives a table, in CSS pixels (a cell output in a 1280-pixel window).
PAGE_WIDTH_PX = 660
#: A cell that holds a number, a percentage, an interval, a count or a missing value.
_NUMERIC = re.compile(r"^[\s\u00a0]*([−+-]?[\d.,]+%?|[−+-]?∞|–|yes|no)([\s\u00a0]*\[[^\]]*\])?[\s\u00a0]*$")

#: Names in the code and the data -> names for readers; tables and figures use them.
HUMAN = {
    "linf": "L∞", "l-inf": "L∞", "l_inf": "L∞", "l2": "L2",
    "fgsm": "FGSM", "fgm": "FGM", "bim": "BIM", "bim_a": "BIM-A", "jsma": "JSMA", "pgd": "PGD",
    "linf_pgd": "PGD", "l2_pgd": "L2 PGD", "i_fgsm": "I-FGSM", "ifgsm": "I-FGSM",
    "deepfool": "DeepFool", "cw": "Carlini–Wagner", "one_pixel": "one-pixel attack",
    "random_start": "PGD with random start",
    "lenet": "LeNet", "resnet20": "ResNet-20", "resnet32": "ResNet-32", "resnet44": "ResNet-44",
    "resnet56": "ResNet-56", "resnet110": "ResNet-110", "resnet50": "ResNet-50",
    "efficientnet_lite0": "EfficientNet-Lite0", "efficientnet_lite1": "EfficientNet-Lite1",
    "inception_v3": "Inception v3",
    "mnist": "MNIST", "cifar10": "CIFAR-10", "cifar-10": "CIFAR-10", "imagenet": "ImageNet samples",
    "mse": "MSE denoiser", "black-box": "black-box denoiser", "white-box": "white-box denoiser",
    "stab_mse": "Stab+MSE denoiser", "vgg-cifar10": "VGG surrogate",
    "ignores defence": "attacker ignores the defence",
    "adaptive (through blur+vote)": "attacker goes through blur and vote",
}


def human(name) -> str:
    """A name from the code or the data as readers should see it (unknown names unchanged)."""
    text = str(name)
    return HUMAN.get(text, HUMAN.get(text.lower(), text))


def _positional(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits, never in scientific notation; thousands
    separated when it has that many whole digits."""
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    text = f"{value:.{digits}g}"
    if "e" in text:
        import numpy as np
        text = np.format_float_positional(value, precision=digits, unique=False, fractional=False,
                                          trim="-")
    return text
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
        return _positional(float(value), digits)
    if isinstance(value, str) and value in HUMAN:
        return HUMAN[value]
    return str(value)


def format_frame(df: pd.DataFrame, percent: Sequence[str] = (), decimals: int = 1,
                 digits: int = 3) -> pd.DataFrame:
    """``df`` with every cell formatted by :func:`format_cell` (strings, same shape)."""
    unknown = set(percent) - set(df.columns)
    if unknown:
        raise KeyError(f"percent names columns the table does not have: {sorted(unknown)}")
    return pd.DataFrame({c: [format_cell(v, c in percent, decimals, digits) for v in df[c]]
                         for c in df.columns}, index=range(len(df)))


def table_width_px(header: list[str], rows: list[list[str]], left: list[bool]) -> int:
    """About how wide a table is on a page, in CSS pixels, at 7.3 pixels a character: a
    left-aligned column (words) and every header wrap at spaces, so count their longest word;
    a right-aligned one (numbers) is as wide as its widest line (``<br>`` breaks a line)."""
    width = 0.0
    for i, head in enumerate(header):
        cells = [r[i] for r in rows if i < len(r)]
        lines = [line for c in cells for line in c.split("<br>")]
        if left[i]:
            longest = max((len(w) for line in lines for w in line.split()), default=0)
        else:
            longest = max((len(line) for line in lines), default=0)
        width += 7.3 * max(longest, max((len(w) for w in head.split()), default=0)) + 18
    return int(width)


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

    def _left(self) -> list[bool]:
        """Which columns are left-aligned: the row labels and the columns of words."""
        return [i < self.labels or not all(_NUMERIC.match(str(v)) or not str(v).strip()
                                           for v in self.cells.iloc[:, i])
                for i in range(self.cells.shape[1])]

    def width_px(self) -> int:
        """About how wide the table is on a page, in CSS pixels (:func:`table_width_px`)."""
        return table_width_px([str(c) for c in self.cells.columns],
                              [[str(v) for v in row] for row in self.cells.itertuples(index=False)],
                              self._left())

    def _shown(self) -> pd.DataFrame:
        """The cells as displayed: an interval never broken; a value and its interval on one
        line, or, when the table would be wider than the page, the interval on a line of its
        own under the value; "|" as ";"."""
        under = self.width_px() > PAGE_WIDTH_PX

        def cell(v) -> str:
            text = _INTERVAL.sub(f"[\\1,{NBSP}\\2]", str(v)).replace(" | ", "; ").replace("|", ";")
            return re.sub(r"(\S) \[", "\\1<br>[" if under else f"\\1{NBSP}[", text)
        return self.cells.map(cell)

    def _repr_html_(self) -> str:
        shown = self._shown()
        left = self._left()
        cols = list(shown.columns)
        styler = (shown.style.hide(axis="index")
                  .set_caption(html.escape(self.caption))
                  .set_properties(subset=[c for c, lf in zip(cols, left) if lf], **{"text-align": "left"})
                  .set_properties(subset=[c for c, lf in zip(cols, left) if not lf],
                                  **{"text-align": "right", "white-space": "nowrap"})
                  .set_table_styles([{"selector": "caption",
                                      "props": "caption-side: top; text-align: left; font-weight: bold;"},
                                     {"selector": "th", "props": "text-align: center;"}]))
        note = f'<p style="font-size: smaller; margin-top: 0.3em">{html.escape(self.note)}</p>' if self.note else ""
        return styler.to_html() + note

    def _repr_markdown_(self) -> str:
        shown = self._shown()
        esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        head = "| " + " | ".join(esc(c) for c in shown.columns) + " |"
        align = "|" + "|".join(":--" if lf else "--:" for lf in self._left()) + "|"
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
        corner = str(cells.columns[0])   # the first column's header names the new header row
        cells = cells.set_index(cells.columns[0]).T.reset_index()
        cells.columns = [corner, *cells.columns[1:]]
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


# --------------------------------------------------------------------------- provenance
FULL_RUNS = "full_runs.json"


def full_run_record(chapter: str) -> dict | None:
    """The record of ``chapter``'s full-profile run from an empty cache, the run behind the
    book's stored outputs (``advlab/resources/full_runs.json``, written by
    ``scripts/chapter_timings.py --record``), or None when none is recorded."""
    import json
    from importlib import resources
    path = resources.files("advlab.resources").joinpath(FULL_RUNS)
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get(chapter)


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{s} s"


def _device(name: str) -> str:
    """``cpu (2 threads)`` as "the CPU (2 threads)"; a GPU's name as it is."""
    return f"the CPU{name[3:]}" if name.startswith("cpu") else name


def _devices(computed_on: dict) -> str:
    return ", ".join(f"{_device(d)} ({n} results)" if len(computed_on) > 1 else _device(d)
                     for d, n in computed_on.items()) or "not recorded"


@dataclass
class Provenance:
    """Where and how a chapter's results were computed, as one folded box: the full run
    from an empty cache behind the stored pages (device, compute time, versions) and the run
    that produced this page's outputs. In the book a ``{dropdown}``, in Jupyter a
    ``<details>`` block."""

    lines: list[str]
    title: str = "How these results were computed"

    def _repr_markdown_(self) -> str:
        body = "\n".join(f"* {line}" for line in self.lines)
        return f":::{{dropdown}} {self.title}\n:icon: info\n\n{body}\n:::\n"

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(line).replace('**', '')}</li>" for line in self.lines)
        return (f'<details style="margin: 0.5em 0"><summary><b>{html.escape(self.title)}</b>'
                f"</summary><ul>{items}</ul></details>")

    def __repr__(self) -> str:
        return "\n".join([self.title, *(f"- {line.replace('**', '')}" for line in self.lines)])


def provenance(info, record: dict | None = None, advlab_version: str | None = None) -> Provenance:
    """The :class:`Provenance` box of a chapter run: ``info`` (its :class:`~advlab.config.RunInfo`)
    and ``record``, the chapter's full run from an empty cache (:func:`full_run_record`)."""
    lines = []
    if record:
        full = record["info"]
        stages = "; ".join(f"{name} {_duration(st['seconds'])}" for name, st in full.get("stages", {}).items()
                           if st["seconds"] >= 0.5)
        lines.append(f"**The stored outputs**: the {full['profile']} profile, computed from an empty cache in "
                     f"**{_duration(full['wall_time_s'])}** on {_devices(full.get('computed_on', {}))}"
                     + (f"; where the time went: {stages}." if stages else "."))
        lines.append(f"**Versions**: advlab {record.get('advlab', '?')}, torch {full.get('torch', '?')}, "
                     f"inference on the CPU with {full.get('backend', '?')}.")
    else:
        lines.append("**The stored outputs**: no record of this chapter's run from an empty cache yet.")
    read = sum(st.get("read", 0) for st in info.stages.values())
    computed = sum(st.get("computed", 0) for st in info.stages.values())
    same = record is not None and record["info"]["profile"] == info.profile
    if same and computed == 0:
        lines.append(f"**This page** was executed from that run's cache ({read} cached results read "
                     f"back in {_duration(info.wall_time_s)}, on {_device(info.device)}).")
    else:
        lines.append(f"**This run**: the {info.profile} profile on {_device(info.device)}, "
                     f"{computed} results computed and {read} read from the cache, "
                     f"{_duration(info.wall_time_s)}"
                     + (f"; computed on {_devices(info.computed_on)}" if info.computed_on else "") + ".")
    if advlab_version and record and record.get("advlab") != advlab_version:
        lines.append(f"This copy of advlab is {advlab_version}.")
    return Provenance(lines)
