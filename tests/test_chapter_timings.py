"""scripts/chapter_timings.py turns chapters' run records into the timings page's table."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("chapter_timings", ROOT / "scripts" / "chapter_timings.py")
timings = importlib.util.module_from_spec(spec)
spec.loader.exec_module(timings)


def record(chapter, wall, stages):
    return {"info": {"chapter": chapter, "profile": "full", "wall_time_s": wall, "device": "cpu (2 threads)",
                     "backend": "onnxruntime 1.x", "stages": stages}}


def test_table_and_page_block(tmp_path):
    for ch, wall in (("ch00", 95.4), ("ch03", 2521.0)):
        (tmp_path / ch).mkdir()
        stages = {"models": {"seconds": 3.2, "computed": 0, "read": 0},
                  "attacks": {"seconds": wall - 3.2, "computed": 8, "read": 0}}
        (tmp_path / ch / f"{ch}_run.json").write_text(json.dumps(record(ch, wall, stages)))
    page = tmp_path / "timings.md"
    page.write_text(f"# T\n\n{timings.START}\nold\n{timings.END}\n\nafter\n")
    assert timings.main([str(tmp_path), "--page", str(page)]) == 0
    text = page.read_text()
    assert "| ch00 | full | 1 min 35 s | models: 3; attacks: 92 | 8 |" in text
    assert "| ch03 | full | 42 min 01 s |" in text and "old" not in text and text.endswith("after\n")
    assert timings.main([str(tmp_path), "--page", str(page), "--check"]) == 0


def test_record_merges_the_runs_the_provenance_boxes_read(tmp_path):
    stages = {"attacks": {"seconds": 40.0, "computed": 8, "read": 0}}
    (tmp_path / "ch00").mkdir()
    (tmp_path / "ch00" / "ch00_run.json").write_text(json.dumps(record("ch00", 166.7, stages)))
    out = tmp_path / "full_runs.json"
    out.write_text(json.dumps({"ch03": {"info": {"chapter": "ch03"}}}))
    page = tmp_path / "timings.md"
    page.write_text("# no block\n")
    assert timings.main([str(tmp_path), "--page", str(page), "--record", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert sorted(merged) == ["ch00", "ch03"] and merged["ch00"]["info"]["wall_time_s"] == 166.7
    assert merged["ch00"]["advlab"] == timings.advlab_version()
    from advlab.config import RunInfo
    from advlab.report import provenance
    box = provenance(RunInfo("ch00", "full", "cpu (2 threads)", "LeNet", 1.3, computed_on={"cpu (2 threads)": 8},
                             stages={"attacks": {"seconds": 1.0, "computed": 0, "read": 8}}), merged["ch00"])
    text = repr(box)
    assert "2 min 47 s" in text and "from an empty cache" in text and "8 cached results read back" in text
    assert box._repr_markdown_().startswith(":::{dropdown}") and "<details" in box._repr_html_()
