"""One figure style for the book: sizes, fonts, legends, labels, and how a figure is shown.

The book shows a cell's output at most :data:`PAGE_WIDTH_PX` CSS pixels wide (sphinx-book-theme
in a 1280-pixel window; 774 from 1440 pixels on). Every figure is drawn exactly that wide
(:data:`PAGE_WIDTH_IN` inches at 96 CSS pixels an inch), saved at :data:`DPI` (sharp on
high-density screens) and displayed at :data:`PAGE_WIDTH_PX`, so a font of ``s`` points in the
figure reads as ``s`` points on the page. The rules every plot function follows:

* at most :data:`MAX_PANELS_PER_ROW` chart panels a row (:func:`panels`); image grids may have
  more panels, with the same font sizes;
* text of at least :data:`MIN_FONT_PT` points (:data:`RC`);
* legends off the data: below the panels or beside a single one (:func:`legend_below`);
* labels for people (:func:`human`: ``resnet20`` is "ResNet-20", ``linf`` "L∞");
* rates on a percent axis, as in the tables (:func:`percent_axis`).

:func:`show` displays a figure (or :func:`image` returns it) with what
``tests/test_figures.py`` checks in the output's metadata: dpi, width, the smallest font, the
panels a row, legends over data and every text.
"""
from __future__ import annotations

import io

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.ticker import PercentFormatter

# one map of names for tables and figures; the page's width (CSS pixels of a cell output in a
# 1280-pixel window, sphinx-book-theme 1.3) for both
from ..report import HUMAN, PAGE_WIDTH_PX, human  # noqa: F401

#: The width of every figure, in inches (96 CSS pixels an inch).
PAGE_WIDTH_IN = PAGE_WIDTH_PX / 96
#: Resolution of the stored images: 1.5 image pixels for every CSS pixel.
DPI = 144
#: The smallest text on a figure, in points, as read on the page.
MIN_FONT_PT = 9.0
MAX_PANELS_PER_ROW = 2

RC = {
    "figure.figsize": (PAGE_WIDTH_IN, 3.6),
    "savefig.dpi": DPI,
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9.5,
    "ytick.labelsize": 9.5,
    "legend.fontsize": 9.5,
    "legend.title_fontsize": 9.5,
    "figure.titlesize": 11,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "lines.markersize": 4.5,
}

def apply() -> None:
    """Make :data:`RC` matplotlib's defaults (``import advlab.plots`` does it)."""
    matplotlib.rcParams.update(RC)


def figure(height: float, **kwargs) -> plt.Figure:
    """An empty figure of the page's width, with constrained layout."""
    return plt.figure(figsize=(PAGE_WIDTH_IN, height), layout="constrained", **kwargs)


def panels(n: int, height: float, cols: int | None = None, **kwargs):
    """A page-wide figure with ``n`` chart panels, at most two a row, each ``height`` inches
    high; unused slots are hidden. Returns the figure and the ``n`` axes (a list)."""
    cols = min(cols or MAX_PANELS_PER_ROW, MAX_PANELS_PER_ROW, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH_IN, height * rows), squeeze=False,
                             layout="constrained", **kwargs)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def legend_below(fig: plt.Figure, axes=None, ncols: int = 2, title: str | None = None,
                 handles=None, labels=None):
    """One legend for the figure, below its panels (off the data); entries from ``axes``
    (default: every axes), each label once, unless ``handles`` and ``labels`` are given."""
    if handles is None:
        seen: dict = {}
        for ax in axes if axes is not None else fig.axes:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if not lab.startswith("_"):
                    seen.setdefault(lab, h)
        labels, handles = list(seen), list(seen.values())
    if not handles:
        return None
    return fig.legend(handles, labels, loc="outside lower center", ncols=max(1, min(ncols, len(handles))),
                      title=title)


def legend_beside(fig: plt.Figure, axes=None, title: str | None = None):
    """One legend for the figure, to the right of its panels (for a single panel)."""
    seen: dict = {}
    for ax in axes if axes is not None else fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_"):
                seen.setdefault(lab, h)
    if not seen:
        return None
    return fig.legend(list(seen.values()), list(seen), loc="outside right upper", title=title)


def legend_slot(ax, handles, labels, title: str | None = None):
    """Turn an unused panel ``ax`` into the figure's legend (off the data, no wasted row)."""
    ax.set_visible(True)
    ax.set_axis_off()
    return ax.legend(handles, labels, loc="center left", title=title)


def bare(ax) -> None:
    """An image panel: no ticks, no frame (a label beside it still shows)."""
    ax.set_xticks([]), ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def percent_axis(ax, axis: str = "y", xmax: float = 1.0, limits: bool = True) -> None:
    """Show a rate (0 to ``xmax``) as a percentage, like the tables; ``limits``: 0 to 100%."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_formatter(PercentFormatter(xmax=xmax, decimals=0))
    if limits:
        (ax.set_ylim if axis == "y" else ax.set_xlim)(-0.02 * xmax, 1.02 * xmax)


# --------------------------------------------------------------------------- measuring
def _is_image_panel(ax) -> bool:
    """A panel that shows a picture (an image, no lines, no tick labels), not a chart."""
    labelled = ax.axison and any(t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels())
    return bool(ax.images) and not ax.lines and not labelled


def _is_colorbar(ax) -> bool:
    return hasattr(ax, "_colorbar") or ax.get_label() == "<colorbar>"


def _rows(boxes) -> list[list]:
    """Group bounding boxes into rows (vertical extents overlapping by more than half)."""
    rows: list[list] = []
    for box in sorted(boxes, key=lambda b: -b.y1):
        for row in rows:
            ref = row[0]
            overlap = min(ref.y1, box.y1) - max(ref.y0, box.y0)
            if overlap > 0.5 * min(ref.height, box.height):
                row.append(box)
                break
        else:
            rows.append([box])
    return rows


def measure(fig: plt.Figure) -> dict:
    """What the book checks on a figure: width (inches), the smallest visible font (points),
    chart and image panels per row, legends that cover a chart's data area, every text."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts, sizes = [], []
    for t in fig.findobj(matplotlib.text.Text):
        text = t.get_text().strip()
        if not text or not t.get_visible() or (t.axes is not None and not t.axes.get_visible()):
            continue
        sizes.append(float(t.get_fontsize()))
        texts.append(text)
    visible = [ax for ax in fig.axes if ax.get_visible() and not _is_colorbar(ax)]
    # a panel with its axis off and no picture holds a legend (legend_slot), not data
    charts = [ax for ax in visible if not _is_image_panel(ax) and ax.axison]
    images = [ax for ax in visible if _is_image_panel(ax)]
    chart_boxes = [ax.get_window_extent(renderer) for ax in charts]
    per_row = max((len(r) for r in _rows(chart_boxes)), default=0)
    images_per_row = max((len(r) for r in _rows([ax.get_window_extent(renderer) for ax in images])),
                         default=0)
    legends = [ax.get_legend() for ax in visible if ax.get_legend() is not None] + list(fig.legends)
    covering = 0
    for leg in legends:
        if not leg.get_visible():
            continue
        box = leg.get_window_extent(renderer)
        if any(box.overlaps(c) for c in chart_boxes):
            covering += 1
    width, height = fig.get_size_inches()
    return {"width_in": round(float(width), 3), "height_in": round(float(height), 3),
            "min_font_pt": min(sizes, default=0.0), "panels_per_row": per_row,
            "images_per_row": images_per_row, "legends_over_data": covering,
            "texts": sorted(set(texts))[:200]}


def image(fig: plt.Figure, fmt: str = "png", quality: int = 85):
    """The figure as an inline image at the book's resolution, shown :data:`PAGE_WIDTH_PX`
    wide, with :func:`measure`'s record in its metadata; the figure is closed."""
    from IPython.display import Image
    record = {**measure(fig), "dpi": DPI, "display_width_px": PAGE_WIDTH_PX}
    buf = io.BytesIO()
    extra = {"pil_kwargs": {"quality": quality}} if fmt in ("jpeg", "jpg") else {}
    fig.savefig(buf, format=fmt, dpi=DPI, **extra)
    plt.close(fig)
    return Image(data=buf.getvalue(), format="jpeg" if fmt == "jpg" else fmt, width=PAGE_WIDTH_PX,
                 metadata={"advlab": record})


def show(fig: plt.Figure, fmt: str = "png") -> None:
    """Display ``fig`` in a notebook as the book shows figures (see :func:`image`)."""
    from IPython.display import display
    display(image(fig, fmt))
