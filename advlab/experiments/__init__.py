"""The book's chapters, one module each (``ch00.py`` ... ``ch05.py``), each defining ``CHAPTER``
(see :mod:`advlab.chapter`); :func:`chapters` finds them, as the CLI and the tests do."""
from __future__ import annotations

import importlib
import pkgutil
import re


def chapter(chapter_id: str):
    """The ``CHAPTER`` object of module ``chapter_id`` (e.g. ``"ch03"``)."""
    from ..chapter import Chapter
    if chapter_id not in chapter_ids():
        raise ValueError(f"unknown chapter {chapter_id!r}; choose one of {chapter_ids()}")
    module = importlib.import_module(f"{__name__}.{chapter_id}")
    found = getattr(module, "CHAPTER", None)
    if not isinstance(found, Chapter) or found.id != chapter_id:
        raise AttributeError(f"{module.__name__} must define CHAPTER, an advlab.chapter.Chapter "
                             f"with id {chapter_id!r}")
    return found


def chapters() -> dict:
    """Every chapter of the book by id (``"ch03"``), in order: the ``CHAPTER`` object of each
    module named ``chNN`` in this package."""
    return {i: chapter(i) for i in chapter_ids()}


def chapter_ids() -> list[str]:
    """The chapters' ids without importing them (for argument parsers)."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__)
                  if re.fullmatch(r"ch\d\d", info.name))
