"""What every chapter's results share: tables, settings, run-info; saving them and the figures."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import pandas as pd


@dataclass
class ChapterResults:
    """Base of every chapter's results.  Subclasses are dataclasses with one field per table
    (named in ``TABLES``), an ``info: RunInfo`` and a ``settings: dict``; ``extras()`` adds
    scalars to the JSON record."""

    CHAPTER: ClassVar[str] = ""
    TABLES: ClassVar[tuple[str, ...]] = ()
    INDEXED: ClassVar[tuple[str, ...]] = ()   # tables whose index is part of the data

    def extras(self) -> dict:
        return {}

    def save(self, out: Path) -> list[Path]:
        """Write every table as CSV and the settings, run-info and extras as JSON."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in self.TABLES:
            table: pd.DataFrame = getattr(self, name)
            path = out / f"{self.CHAPTER}_{name}.csv"
            table.to_csv(path, index=name in self.INDEXED)
            written.append(path)
        path = out / f"{self.CHAPTER}_run.json"
        record = {"info": asdict(self.info), "settings": self.settings, **self.extras()}
        path.write_text(json.dumps(record, indent=2, default=str))
        return written + [path]


def save_figures(figures: dict, out: Path, dpi: int = 120) -> list[Path]:
    """Save ``{stem: matplotlib Figure}`` as PNG files in ``out``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in figures.items():
        path = out / f"{stem}.png"
        fig.savefig(path, dpi=dpi)
        paths.append(path)
    return paths


def cache_note(cache) -> str:
    """The run-info note saying how much of a run came from the cache."""
    total = cache.hits + cache.misses
    return f"{cache.hits} of {total} pieces read from the cache" if cache.hits else ""
