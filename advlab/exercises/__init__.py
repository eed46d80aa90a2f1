"""The book's exercises: one checker per exercise, one module per chapter (``ch01.py`` ...).

A checker takes the reader's answer (a value or a function) and raises ``AssertionError`` with a
hint when the answer is missing or wrong; when it is right it prints a confirmation.  In a
notebook the exercise is two cells::

    answer = ...                 # tagged "solution", metadata {"advlab": {"exercise": "ch03-ex1"}}
    exercises.check("ch03-ex1", answer)

Each chapter module defines ``CHECKERS = {"chNN-exK": function}``; :func:`checkers` gathers them.
Answers left as ``...`` or ``None`` (the stubs of the student version) count as missing.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

import torch

__all__ = ["check", "checkers", "given", "returned", "ok"]


def given(answer, what: str) -> None:
    """Raise when ``answer`` is still the student stub (``...`` or ``None``)."""
    if answer is None or answer is Ellipsis:
        raise AssertionError(f"No answer yet: fill in {what} in the cell above and run it.")


def returned(out, name: str) -> torch.Tensor:
    """The tensor a reader's function returned; raise when it returned nothing."""
    if out is None or out is Ellipsis:
        raise AssertionError(f"{name} returned nothing: write its body in the cell above.")
    return torch.as_tensor(out)


def ok(exercise: str, message: str) -> None:
    """Print the confirmation of a right answer."""
    print(f"\u2713 {exercise}: correct. {message}")


def checkers() -> dict[str, Callable]:
    """Every exercise id of the book mapped to its checker, gathered from the chapter modules."""
    found: dict[str, Callable] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("ch"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.update(getattr(module, "CHECKERS", {}))
    return found


def check(exercise: str, answer, *args, **kwargs) -> None:
    """Check ``answer`` to the exercise with id ``exercise`` (e.g. ``"ch03-ex1"``)."""
    table = checkers()
    if exercise not in table:
        raise KeyError(f"unknown exercise {exercise!r}; known: {', '.join(sorted(table))}")
    table[exercise](answer, *args, **kwargs)
