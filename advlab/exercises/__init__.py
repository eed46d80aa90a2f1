"""The book's exercises: one checker per exercise, one module per chapter (``ch01.py`` ...).

A checker takes the reader's answer (a value or a function) and raises ``AssertionError`` with a
hint when the answer is missing or wrong; when it is right it prints a confirmation.  In a
notebook the exercise is two cells::

    answer = ...                 # tagged "solution", metadata {"advlab": {"exercise": "ch03-ex1"}}
    exercises.check("ch03-ex1", answer)

Each chapter module defines ``CHECKERS = {"chNN-exK": function}``; :func:`checkers` gathers them.
Answers left as ``...`` or ``None`` (the stubs of the student version) count as missing.
A confirmation names the exercise as readers know it ("Exercise 2: correct."), never by its id.
:func:`multiple_choice` checks a question whose answer is one of a few options (a prediction or
an interpretation), so that no part of an exercise is left unchecked; a part meant for
discussion goes in a ``{admonition} Discuss`` block of the task instead.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable

import torch

__all__ = ["check", "checkers", "given", "multiple_choice", "ok", "returned"]


def given(answer, what: str) -> None:
    """Raise when ``answer`` is still the student stub (``...`` or ``None``)."""
    if answer is None or answer is Ellipsis:
        raise AssertionError(f"No answer yet: fill in {what} in the cell above and run it.")


def returned(out, name: str) -> torch.Tensor:
    """The tensor a reader's function returned; raise when it returned nothing."""
    if out is None or out is Ellipsis:
        raise AssertionError(f"{name} returned nothing: write its body in the cell above.")
    return torch.as_tensor(out)


def readers_name(exercise: str) -> str:
    """``"ch03-ex2"`` as readers know it, ``"Exercise 2"`` (other names unchanged)."""
    m = re.fullmatch(r"ch\d+-ex(\d+)", exercise.strip())
    return f"Exercise {int(m.group(1))}" if m else exercise


def ok(exercise: str, message: str) -> None:
    """Print the confirmation of a right answer ("✓ Exercise 2: correct. ...")."""
    print(f"\u2713 {readers_name(exercise)}: correct. {message}")


def multiple_choice(exercise: str, answer, options: dict[str, str], correct: str, why: str,
                    hints: dict[str, str] | None = None) -> None:
    """Check a multiple-choice ``answer`` (one letter of ``options``, e.g. ``"b"``): a hint
    (``hints[letter]``, else a generic one) when it is wrong, ``why`` when it is right."""
    letters = ", ".join(f'"{k}"' for k in options)
    given(answer, f"answer = one of {letters}")
    key = str(answer).strip().strip("()").lower()
    assert key in options, f"Answer with one letter, {letters}; got {answer!r}."
    if key != correct:
        raise AssertionError(f"Not yet: ({key}) {options[key]}: "
                             + (hints or {}).get(key, "reread the question and try another option."))
    ok(exercise, why)


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
