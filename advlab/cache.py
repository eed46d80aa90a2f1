"""A small on-disk results cache so long experiments resume where they stopped.

Each entry is a dict of tensors (saved with ``torch.save`` and read back with
``weights_only=True``) under ``<cache_root>/results/<namespace>/<name>-<hash>.pt``, where the hash
covers every setting that changes the result.  Writes go to a temporary file that is renamed
into place, so a run killed mid-write leaves no half-written entry behind; an entry that cannot
be read (cut short, overwritten) is deleted with a warning and computed again.  A full disk
while writing is one :class:`DiskFullError`, "no space left on device writing <path>".
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .config import cache_root


def config_hash(config: dict) -> str:
    """Stable 12-hex-digit hash of a JSON-serialisable settings dict."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def tensor_digest(*tensors: torch.Tensor) -> str:
    """12-hex-digit sha256 of the tensors' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:12]


def fingerprint(images) -> str:
    """Identity of an image set, ``"<count>:<hash>"``: a hash of its file names when it has
    them (``ImageSet.names``), else of its image and label bytes."""
    names = getattr(images, "names", None)
    if names:
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    else:
        x = getattr(images, "x", images)
        y = getattr(images, "y", None)
        digest = tensor_digest(x) if y is None else tensor_digest(x, y)
    return f"{len(images)}:{digest}"


class DiskFullError(OSError):
    """No space left on the device (or over the quota) while writing ``path``."""

    def __init__(self, path: Path | str):
        super().__init__(errno.ENOSPC, "No space left on device", str(path))

    def __str__(self) -> str:
        return f"no space left on device writing {self.filename}"


def is_disk_full(err: BaseException | None) -> bool:
    """True for the OSErrors of a full disk or an exhausted quota, also where another error
    hides one (``torch.save`` raises a RuntimeError while it handles the OSError)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


@contextmanager
def atomic_path(path: Path) -> Iterator[str]:
    """Yield a temporary file name beside ``path``; rename it into place if the block succeeds.
    A full disk, in the block or on creating the file, is a :class:`DiskFullError` naming
    ``path``; the temporary file is removed either way."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        if is_disk_full(err) and not isinstance(err, DiskFullError):
            raise DiskFullError(path) from None
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename it into place.

    It writes through a Python file object: a full disk then raises an OSError (which
    :func:`atomic_path` reports in one line), where ``torch.save`` to a file name fails deep in
    its C++ writer with an unrelated message."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def atomic_write_bytes(data: bytes, path: Path) -> None:
    """Write ``data`` to a temporary file in the same folder, then rename it into place."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def load_or_discard(path: Path, map_location: str | torch.device | None = None) -> Any | None:
    """``torch.load(path, weights_only=True)``; ``None`` when the file is absent, and also when it
    cannot be read, in which case it is deleted with a warning naming it and the reason."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True, map_location=map_location)
    except Exception as err:  # truncated zip, garbage bytes, foreign pickle: all mean "rebuild"
        first = str(err).strip().split(". ")[0].splitlines()[0] if str(err).strip() else "no data"
        reason = f"{type(err).__name__}: {first}"
        warnings.warn(f"unreadable cache file {path} ({reason}); deleting it and recomputing",
                      RuntimeWarning, stacklevel=2)
        path.unlink(missing_ok=True)
        return None


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
        """Return the stored entry for ``(name, config)``; compute and store it if absent or
        unreadable (an unreadable entry is deleted with a warning first)."""
        path = self.path(name, config)
        if self.enabled:
            value = load_or_discard(path)
            if value is not None:
                self.hits += 1
                return value
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
