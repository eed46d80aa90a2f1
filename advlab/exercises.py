"""One checker per exercise of the book.

A checker takes the reader's answer (a value or a function, and what it needs to recompute the
right answer), raises ``AssertionError`` with a hint when the answer is missing or wrong, and
prints a confirmation when it is right.  In a notebook::

    answer = ...                     # the cell tagged "solution" (a stub in the student version)
    exercises.ch01_ex1(answer)       # the check cell

:data:`CHECKERS` maps each exercise's id (``"ch01-ex1"``, also the ``advlab.exercise`` key of
its solution cell's metadata) to its checker.  Answers left as ``...`` or ``None`` (the student
stubs) are reported as missing.
"""
from __future__ import annotations

import math
from typing import Callable

import torch


def _given(answer, what: str) -> None:
    if answer is None or answer is Ellipsis:
        raise AssertionError(f"No answer yet: fill in {what} in the cell above and run it.")


def _returned(out, name: str):
    if out is None or out is Ellipsis:
        raise AssertionError(f"{name} returned nothing: write its body in the cell above.")
    return torch.as_tensor(out)


def _ok(exercise: str, message: str) -> None:
    print(f"✓ {exercise}: correct. {message}")


def _random_labels(n: int = 10_000, classes: int = 3, seed: int = 0) -> torch.Tensor:
    """Three label tensors drawn from ``classes`` classes: with 3 classes every case occurs."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, (3, n), generator=g)


def _first_difference(got: torch.Tensor, want: torch.Tensor, triples: torch.Tensor) -> str:
    i = int((got != want).nonzero()[0])
    return (f"for the labels {tuple(triples[:, i].tolist())} it returned {int(got[i])}, "
            f"the rule gives {int(want[i])}")


# --------------------------------------------------------------------------- Chapter 1
def ch01_ex1(answer) -> None:
    """Three passes of the 5x5, sigma = 1 blur as one Gaussian: ``answer = (size, sigma)``."""
    from .defenses.blur_vote import equivalent_gaussian
    _given(answer, "answer = (size, sigma)")
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
    _ok("Exercise 1", f"Three passes equal one {want_size}x{want_size} blur with sigma = "
        f"sqrt(3) = {want_sigma:.4f} (up to the truncation of the 5x5 window).")


def ch01_ex2(my_vote: Callable) -> None:
    """``my_vote(p0, p1, p2)``: the 2-of-3 vote, -1 where all three labels differ."""
    from .defenses.blur_vote import majority_vote
    p = _random_labels()
    got = _returned(my_vote(*p), "my_vote")
    want = majority_vote(*p)
    assert got.shape == want.shape, f"my_vote must return one label per image {tuple(want.shape)}, got {tuple(got.shape)}"
    assert torch.equal(got.long(), want), "Not yet: " + _first_difference(got, want, p)
    _ok("Exercise 2", "my_vote agrees with majority_vote on 10,000 random label triples.")


def unanimous_vote(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """The stricter rule of Chapter 1's Exercise 3: the label when all three agree, else -1."""
    return torch.where((p0 == p1) & (p1 == p2), p0, torch.full_like(p0, -1))


def ch01_ex3(my_unanimous: Callable) -> None:
    """``my_unanimous(p0, p1, p2)``: the label when all three agree, -1 otherwise."""
    from .defenses.blur_vote import majority_vote
    p = _random_labels(seed=1)
    got = _returned(my_unanimous(*p), "my_unanimous").long()
    want = unanimous_vote(*p)
    assert torch.equal(got, want), "Not yet: " + _first_difference(got, want, p)
    two = majority_vote(*p)
    # what the exercise asks the reader to see: stricter never rejects less, never relabels
    assert ((got == -1) | (got == two)).all() and (got == -1).sum() >= (two == -1).sum()
    _ok("Exercise 3", f"On these random triples the unanimous rule rejects "
        f"{float((got == -1).float().mean()):.0%}, the 2-of-3 vote {float((two == -1).float().mean()):.0%}.")


# --------------------------------------------------------------------------- Chapter 2
def ch02_ex1(my_uncertainty: Callable) -> None:
    """``my_uncertainty(probs)``: (passes, batch, classes) softmax outputs -> (batch,)
    uncertainties, the mean over classes of the population standard deviation over passes."""
    from .defenses.mc_dropout import mc_statistics
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(7, 3, 10, generator=g).softmax(-1)
    got = _returned(my_uncertainty(probs), "my_uncertainty").float()
    want = mc_statistics(probs)[2]
    assert got.shape == want.shape, \
        f"Return one uncertainty per image, shape {tuple(want.shape)}; got {tuple(got.shape)}."
    sample_std = probs.std(0, correction=1).mean(1)
    assert not torch.allclose(got, sample_std), \
        "Close: that is the sample standard deviation (divides by passes - 1); the source study's is the population one."
    assert torch.allclose(got, want, atol=1e-6), (
        f"Not yet: got {[round(v, 5) for v in got.tolist()]}, want {[round(v, 5) for v in want.tolist()]}"
        " (standard deviation over the passes, then the mean over the classes).")
    _ok("Exercise 1", "my_uncertainty equals mc_statistics' uncertainty.")


def ch02_ex2(my_flag: Callable) -> None:
    """``my_flag(u, agreement, low, high, count)``: True where Algorithm 1 declares an image
    adversarial."""
    from .defenses import mc_dropout as md
    g = torch.Generator().manual_seed(1)
    u, a = torch.rand(1000, generator=g), torch.randint(0, 6, (1000,), generator=g)
    for low, high, count in [(0.2, 0.7, 5), (0.5, 0.5, 3), (0.0, 1.0, 1), (0.3, 0.6, 4)]:
        got = _returned(my_flag(u, a, low, high, count), "my_flag").bool()
        want = md.flag_adversarial(u, a, md.Thresholds(low, high, count))
        if not torch.equal(got, want):
            i = int((got != want).nonzero()[0])
            raise AssertionError(
                f"Not yet: with L={low}, H={high}, C={count}, an image with uncertainty "
                f"{float(u[i]):.3f} and {int(a[i])} agreeing crops should be "
                f"{'adversarial' if want[i] else 'clean'}. Mind the source study's text: C = 5 "
                "means all five crops agree.")
    _ok("Exercise 2", "my_flag agrees with flag_adversarial on four threshold settings.")


def ch02_ex3(shares: dict, model, x: torch.Tensor, pred: torch.Tensor, batch_size: int = 1000) -> None:
    """``shares = {size: share of the digits whose five crops all agree with pred}`` for crop
    sizes 20, 24, 26 and 28 (``x``: the clean validation digits, ``pred``: their MC-dropout
    class)."""
    from .defenses.mc_dropout import N_CROPS, crop_agreement
    from .inference import predict
    _given(shares, "shares = {20: ..., 24: ..., 26: ..., 28: ...}")
    assert set(shares) == {20, 24, 26, 28}, f"Give a share for each crop size 20, 24, 26, 28; got {sorted(shares)}."
    for size in sorted(shares):
        want = float((crop_agreement(model, x, pred, size, batch_size) == N_CROPS).float().mean())
        assert math.isclose(float(shares[size]), want, abs_tol=1e-6), (
            f"Not yet for {size}-pixel crops: {float(shares[size]):.4f}, measured {want:.4f}; "
            "count the digits whose agreement is 5, divided by all digits.")
    same = float((predict(model.eval(), x, batch_size, amp=False) == pred).float().mean())
    assert math.isclose(float(shares[28]), same, abs_tol=1e-6)  # 28-pixel crops are the digit itself
    _ok("Exercise 3", f"All five crops agree on {shares[24]:.1%} of the digits at 24 pixels "
        f"and {shares[28]:.1%} at 28, where every crop is the digit itself.")


CHECKERS: dict[str, Callable] = {
    "ch01-ex1": ch01_ex1, "ch01-ex2": ch01_ex2, "ch01-ex3": ch01_ex3,
    "ch02-ex1": ch02_ex1, "ch02-ex2": ch02_ex2, "ch02-ex3": ch02_ex3,
}
