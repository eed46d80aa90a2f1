"""Every figure stored in a chapter notebook reads well at the page's width: it was shown with
``advlab.plots.show`` (its output records how it was drawn), it fills the page's width, its
smallest text is at least 9 points as rendered there, it has at most two chart panels a row, no
legend covers a chart's data, and its labels are for people (no code names)."""
import base64
import io
import json
import re
import struct
from pathlib import Path

import pytest

from advlab.plots import style

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: Names from the code that must not reach a reader, and words the notation page replaces.
CODE_WORDS = re.compile(r"\b[a-z]+[0-9]*_[a-z0-9_]+\b|\bresnet\d+\b|\bcifar10\b|\befficientnet\b|L-inf|"
                        r"\bepsilon\b|\bsigma\b|\blambda\b|x/255")


def image_width(data: bytes, mime: str) -> int:
    if mime == "image/png":
        return struct.unpack(">I", data[16:20])[0]
    from PIL import Image
    return Image.open(io.BytesIO(data)).size[0]


def stored_figures():
    """(notebook, cell index, mime type, image bytes, the output's metadata) of every image."""
    for path in NOTEBOOKS:
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            for out in cell.get("outputs", []):
                for mime in ("image/png", "image/jpeg"):
                    if mime in out.get("data", {}):
                        yield pytest.param(path.name, i, mime, base64.b64decode(out["data"][mime]),
                                           out.get("metadata", {}), id=f"{path.stem[:2]}-cell{i}")


def rendered_points(font_pt: float, png_px: int, dpi: float, display_px: float) -> float:
    """A font of ``font_pt`` points in a figure saved ``png_px`` wide at ``dpi``, shown
    ``display_px`` CSS pixels wide (96 an inch), in points as read on the page."""
    return font_pt * dpi / 72 * (display_px / png_px) * 72 / 96


def test_rendered_points():
    # the book's own case: 9 pt at 144 dpi, a 990-pixel image shown 660 pixels wide: 9 pt
    assert rendered_points(9, 990, 144, 660) == pytest.approx(9)
    # the issue's: a 10-inch figure at 100 dpi squeezed into the page: about 6 points
    assert rendered_points(9, 1000, 100, 660) < 6.5


@pytest.mark.parametrize("name, cell, mime, data, metadata", list(stored_figures()))
def test_stored_figure_reads_well_at_page_width(name, cell, mime, data, metadata):
    record = metadata.get(mime, {}).get("advlab") or metadata.get("advlab")
    assert record, (f"{name} cell {cell}: no figure record; display figures with "
                    "advlab.plots.show(fig) (or plots.image) so the book can check them")
    width_px = image_width(data, mime)
    display = float(metadata.get(mime, {}).get("width") or min(width_px, style.PAGE_WIDTH_PX))
    assert display == pytest.approx(style.PAGE_WIDTH_PX, abs=1), f"shown {display} px wide, not the page's width"
    assert width_px / record["dpi"] == pytest.approx(style.PAGE_WIDTH_IN, abs=0.05), \
        f"{width_px / record['dpi']:.2f} in wide: figures are drawn at the page's width"
    smallest = rendered_points(record["min_font_pt"], width_px, record["dpi"], display)
    assert smallest >= style.MIN_FONT_PT - 0.01, f"smallest text {smallest:.1f} pt at page width"
    assert record["panels_per_row"] <= style.MAX_PANELS_PER_ROW, f"{record['panels_per_row']} chart panels a row"
    assert record["legends_over_data"] == 0, "a legend covers a chart's data: put it below or beside"
    code = sorted({m.group(0) for t in record["texts"] for m in CODE_WORDS.finditer(t)})
    assert not code, f"code names or spelled-out symbols on the figure: {code}"
