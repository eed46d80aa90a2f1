"""A small on-disk results cache so long experiments resume where they stopped.

Each entry is a dict of tensors (saved with ``torch.save`` and read back with
``weights_only=True``) under ``<cache_root>/results/<namespace>/<name>-<hash>.pt``, where the hash
covers every setting that changes the result.  Writes go to a temporary file that is renamed
into place, so a run killed mid-write leaves no half-written entry behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

from .config import cache_root


def config_hash(config: dict) -> str:
    """Stable 12-hex-digit hash of a JSON-serialisable settings dict."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@contextmanager
def atomic_path(path: Path) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; rename it into place if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it into place."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` to a temporary file in the same folder, then rename it into place."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


class ResultCache:
    """Get-or-compute store for intermediate results of one experiment.

    ``enabled=False`` turns it into a pass-through (nothing read, nothing written).
    """

    def __init__(self, namespace: str, root: Path | None = None, enabled: bool = True):
        self.dir = Path(root or cache_root() / "results") / namespace
        self.enabled = enabled
        self.hits = self.misses = 0

    def path(self, name: str, config: dict) -> Path:
        return self.dir / f"{name}-{config_hash(config)}.pt"

    def get_or_compute(self, name: str, config: dict, compute: Callable[[], dict]) -> dict:
        """Return the stored entry for ``(name, config)``; compute and store it if absent."""
        path = self.path(name, config)
        if self.enabled and path.exists():
            self.hits += 1
            return torch.load(path, weights_only=True)
        self.misses += 1
        value = compute()
        if self.enabled:
            atomic_save(value, path)
        return value

    def clear(self) -> int:
        """Delete every entry of this namespace; return how many were removed."""
        if not self.dir.exists():
            return 0
        files = list(self.dir.glob("*.pt"))
        for f in files:
            f.unlink()
        return len(files)
