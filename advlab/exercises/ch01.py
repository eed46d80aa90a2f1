"""Checkers of Chapter 1's exercises (noise, Gaussian smoothing and the 2-of-3 vote)."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import given, ok, returned


def _random_labels(n: int = 10_000, classes: int = 3, seed: int = 0) -> torch.Tensor:
    """Three label tensors drawn from ``classes`` classes: with 3 classes every case occurs."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, (3, n), generator=g)


def _first_difference(got: torch.Tensor, want: torch.Tensor, triples: torch.Tensor) -> str:
    i = int((got != want).nonzero()[0])
    return (f"for the labels {tuple(triples[:, i].tolist())} it returned {int(got[i])}, "
            f"the rule gives {int(want[i])}")


def ch01_ex1(answer) -> None:
    """Three passes of the 5x5, sigma = 1 blur as one Gaussian: ``answer = (size, sigma)``."""
    from ..defences.blur_vote import equivalent_gaussian
    given(answer, "answer = (size, sigma)")
    assert isinstance(answer, (tuple, list)) and len(answer) == 2, \
        "Give a pair: answer = (size, sigma), e.g. (11, 1.5)."
    size, sigma = answer
    want_size, want_sigma = equivalent_gaussian(5, 1.0, times=3)
    assert size == want_size, (
        f"The window is not {size}: each pass widens the support by the kernel's reach "
        "(2 pixels on each side for a 5x5 kernel), so count how far three passes reach.")
    assert math.isclose(float(sigma), want_sigma, rel_tol=1e-4), (
        f"The window is right, sigma = {sigma} is not: variances add over passes, so sigma "
        "grows as the square root of the number of passes"
        + (" (close: give four significant digits or the exact expression)."
           if math.isclose(float(sigma), want_sigma, rel_tol=0.02) else "."))
    # the confirmation is shown in the book: it must not give the answer away
    ok("Exercise 1", "Window and sigma are both right: supports grow by the kernel's reach and "
       "variances add over passes (up to the truncation of the 5x5 window).")


def ch01_ex2(my_vote: Callable) -> None:
    """``my_vote(p0, p1, p2)``: the 2-of-3 vote, -1 where all three labels differ."""
    given(my_vote, "def my_vote(p0, p1, p2) and answer = my_vote")
    assert callable(my_vote), "answer must be the function itself: answer = my_vote"
    from ..defences.blur_vote import majority_vote
    p = _random_labels()
    got = returned(my_vote(*p), "my_vote")
    want = majority_vote(*p)
    assert got.shape == want.shape, \
        f"my_vote must return one label per image {tuple(want.shape)}, got {tuple(got.shape)}"
    assert torch.equal(got.long(), want), "Not yet: " + _first_difference(got, want, p)
    ok("Exercise 2", "my_vote agrees with majority_vote on 10,000 random label triples.")


def unanimous_vote(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """The stricter rule of Chapter 1's Exercise 3: the label when all three agree, else -1."""
    return torch.where((p0 == p1) & (p1 == p2), p0, torch.full_like(p0, -1))


def ch01_ex3(my_unanimous: Callable) -> None:
    """``my_unanimous(p0, p1, p2)``: the label when all three agree, -1 otherwise."""
    given(my_unanimous, "def my_unanimous(p0, p1, p2) and answer = my_unanimous")
    assert callable(my_unanimous), "answer must be the function itself: answer = my_unanimous"
    from ..defences.blur_vote import majority_vote
    p = _random_labels(seed=1)
    got = returned(my_unanimous(*p), "my_unanimous").long()
    want = unanimous_vote(*p)
    assert torch.equal(got, want), "Not yet: " + _first_difference(got, want, p)
    two = majority_vote(*p)
    # what the exercise asks the reader to see: stricter never rejects less, never relabels
    assert ((got == -1) | (got == two)).all() and (got == -1).sum() >= (two == -1).sum()
    ok("Exercise 3", f"On these random triples the unanimous rule rejects "
        f"{float((got == -1).float().mean()):.0%}, the 2-of-3 vote {float((two == -1).float().mean()):.0%}.")


CHECKERS: dict[str, Callable] = {"ch01-ex1": ch01_ex1, "ch01-ex2": ch01_ex2, "ch01-ex3": ch01_ex3}
