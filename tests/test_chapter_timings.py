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
