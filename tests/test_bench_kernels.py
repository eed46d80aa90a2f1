"""scripts/bench_kernels.py: the ratio table of the timings page, and the page and CSV it wrote
agree."""
import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_kernels", ROOT / "scripts" / "bench_kernels.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_table_marks_kernels_below_their_target_and_replaces_only_the_block():
    table = pd.DataFrame([
        dict(kernel="median 1x3", reference="scipy", ours_ms=1.0, reference_ms=4.0, speedup=4.0,
             target=1.0, inputs="8 images", agreement="identical"),
        dict(kernel="JSMA", reference="torchattacks", ours_ms=10.0, reference_ms=300.0,
             speedup=30.0, target=50.0, inputs="32 digits", agreement="success 100% vs 100%")])
    text = bench.markdown(table, "note")
    assert "| median 1x3 | scipy | 1.0 | 4.0 | **4.00x** | 1x |" in text
    assert "**30.00x** (below) | 50x" in text
    page = f"# T\n\nbefore\n{bench.START}\nold\n{bench.END}\nafter\n"
    new = bench.replace_block(page, text)
    assert "old" not in new and new.startswith("# T\n\nbefore\n") and new.endswith("after\n")
    assert bench.replace_block(new, text) == new
    with pytest.raises(SystemExit):
        bench.replace_block("# no block", text)


def test_timings_page_shows_the_committed_csv():
    page = (ROOT / "book" / "timings.md").read_text()
    block = page.split(bench.START, 1)[1].split(bench.END, 1)[0]
    table = pd.read_csv(ROOT / "book" / "kernel_ratios.csv")
    assert list(table.columns) == bench.COLUMNS and len(table) >= 10
    for r in table.itertuples():
        assert f"| {r.kernel} | {r.reference} |" in block
        assert any(f"**{v:.2f}x**" in block for v in (r.speedup - 5e-3, r.speedup, r.speedup + 5e-3))
    assert set(bench.TARGETS) >= {"median", "TVM", "TVM masked", "JPEG", "JSMA", "certification"}
