"""Checksums of files the book reads: every data file and every set of weights is verified
against its published digest before it is used."""
from __future__ import annotations

import hashlib
from pathlib import Path


class ChecksumError(ValueError):
    """A data or weights file does not match its published checksum."""


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, expected: str, algorithm: str = "sha256") -> None:
    """Raise :class:`ChecksumError` unless the file's digest is ``expected``."""
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ChecksumError(f"{path}: {algorithm} {actual} does not match the published {expected}; "
                            "the file is corrupt or not the official one (delete it to re-download)")
