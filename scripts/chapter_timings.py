"""Write the table of every chapter's full-profile run into book/timings.md.

Reads the run records ``<results>/chNN/chNN_run.json`` that ``advlab run chNN --profile full
--out <results>`` writes (from an empty cache: every piece computed), and replaces the block
between ``<!-- chapter-timings:start -->`` and ``<!-- chapter-timings:end -->`` of the timings
page with a table: wall time, where it went stage by stage, pieces computed, device, backend.

    python scripts/chapter_timings.py results/ [--page book/timings.md] [--check]
    python scripts/chapter_timings.py results/ --record advlab/resources/full_runs.json

``--record`` also merges the records (run-info, settings, the advlab version) into the JSON file
the chapters' provenance boxes read (:func:`advlab.report.full_run_record`): the compute time a
chapter's page reports is that of its run from an empty cache, not of re-reading the cache.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

START, END = "<!-- chapter-timings:start -->", "<!-- chapter-timings:end -->"


def minutes(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def table(records: list[dict]) -> str:
    """Markdown table of run records (the JSON ``info`` of each chapter's run)."""
    rows = ["| chapter | profile | wall time, empty cache | where the time went (stage: seconds) "
            "| pieces computed | device, backend |", "|---|---|---:|---|---:|---|"]
    for r in records:
        info = r["info"]
        stages = info.get("stages", {})
        where = "; ".join(f"{name}: {st['seconds']:.0f}" for name, st in stages.items()
                          if st["seconds"] >= 0.5)
        computed = sum(st.get("computed", 0) for st in stages.values())
        read = sum(st.get("read", 0) for st in stages.values())
        note = f"{computed}" + (f" ({read} read: not an empty cache)" if read else "")
        rows.append(f"| {info['chapter']} | {info['profile']} | {minutes(info['wall_time_s'])} | "
                    f"{where} | {note} | {info['device']}, {info['backend']} |")
    return "\n".join(rows)


def collect(results: Path) -> list[dict]:
    found = sorted(results.glob("ch??/ch??_run.json"))
    if not found:
        raise SystemExit(f"no chNN/chNN_run.json under {results}")
    return [json.loads(p.read_text()) for p in found]


def merge_record(path: Path, records: list[dict], version: str) -> dict:
    """``path``'s records with ``records`` (one per chapter) merged in, keyed by chapter."""
    merged = json.loads(path.read_text()) if path.exists() else {}
    for r in records:
        info = r["info"]
        merged[info["chapter"]] = {"info": info, "settings": r.get("settings", {}), "advlab": version}
    return dict(sorted(merged.items()))


def advlab_version() -> str:
    import re
    init = Path(__file__).resolve().parents[1] / "advlab" / "__init__.py"
    return re.search(r'^__version__ = "([^"]+)"', init.read_text(), re.M).group(1)


def replace_block(page: str, block: str, start: str = START, end: str = END) -> str:
    """``page`` with the text between the markers ``start`` and ``end`` replaced by ``block``
    (scripts/bench_kernels.py uses it for its own markers)."""
    if start not in page or end not in page:
        raise SystemExit(f"the page has no {start} ... {end} block")
    head, rest = page.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}\n{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--page", type=Path, default=Path("book/timings.md"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the page would change")
    parser.add_argument("--record", type=Path, help="also merge the records into this JSON file")
    args = parser.parse_args(argv)
    if args.record:
        merged = merge_record(args.record, collect(args.results), advlab_version())
        args.record.write_text(json.dumps(merged, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {args.record}")
        if START not in args.page.read_text():
            return 0
    page = args.page.read_text()
    new = replace_block(page, table(collect(args.results)))
    if args.check:
        return int(new != page)
    args.page.write_text(new)
    print(f"wrote {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
