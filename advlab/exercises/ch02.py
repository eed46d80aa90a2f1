"""Checkers of Chapter 2's exercises (MC-dropout uncertainty and five-crop agreement)."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import given, ok, returned


def ch02_ex1(my_uncertainty: Callable) -> None:
    """``my_uncertainty(probs)``: (passes, batch, classes) softmax outputs -> (batch,)
    uncertainties, the mean over classes of the population standard deviation over passes."""
    given(my_uncertainty, "def my_uncertainty(probs) and answer = my_uncertainty")
    assert callable(my_uncertainty), "answer must be the function itself: answer = my_uncertainty"
    from ..defences.mc_dropout import mc_statistics
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(7, 3, 10, generator=g).softmax(-1)
    got = returned(my_uncertainty(probs), "my_uncertainty").float()
    want = mc_statistics(probs)[2]
    assert got.shape == want.shape, \
        f"Return one uncertainty per image, shape {tuple(want.shape)}; got {tuple(got.shape)}."
    sample_std = probs.std(0, correction=1).mean(1)
    assert not torch.allclose(got, sample_std), \
        ("Close: that is the sample standard deviation (divides by passes - 1); the source "
         "study's is the population one.")
    assert torch.allclose(got, want, atol=1e-6), (
        f"Not yet: got {[round(v, 5) for v in got.tolist()]}, want {[round(v, 5) for v in want.tolist()]}"
        " (standard deviation over the passes, then the mean over the classes).")
    ok("Exercise 1", "my_uncertainty equals mc_statistics' uncertainty.")


def ch02_ex2(my_flag: Callable) -> None:
    """``my_flag(u, agreement, low, high, count)``: True where Algorithm 1 declares an image
    adversarial."""
    given(my_flag, "def my_flag(u, agreement, low, high, count) and answer = my_flag")
    assert callable(my_flag), "answer must be the function itself: answer = my_flag"
    from ..defences import mc_dropout as md
    g = torch.Generator().manual_seed(1)
    u, a = torch.rand(1000, generator=g), torch.randint(0, 6, (1000,), generator=g)
    for low, high, count in [(0.2, 0.7, 5), (0.5, 0.5, 3), (0.0, 1.0, 1), (0.3, 0.6, 4)]:
        got = returned(my_flag(u, a, low, high, count), "my_flag").bool()
        want = md.flag_adversarial(u, a, md.Thresholds(low, high, count))
        if not torch.equal(got, want):
            i = int((got != want).nonzero()[0])
            raise AssertionError(
                f"Not yet: with L={low}, H={high}, C={count}, an image with uncertainty "
                f"{float(u[i]):.3f} and {int(a[i])} agreeing crops should be "
                f"{'adversarial' if want[i] else 'clean'}. Mind the source study's text: C = 5 "
                "means all five crops agree.")
    ok("Exercise 2", "my_flag agrees with flag_adversarial on four threshold settings.")


def crop_shares(model, x: torch.Tensor, passes: int, batch_size: int = 1000, seed: int = 0,
                sizes=(20, 24, 26, 28)) -> tuple[torch.Tensor, dict]:
    """Exercise 3's measurement: the MC-dropout class of ``x`` (``passes`` passes after
    ``torch.manual_seed(seed)``) and, per crop size, the share of digits whose five crops all
    agree with it."""
    from ..defences import mc_dropout as md
    torch.manual_seed(seed)
    pred = md.mc_dropout(model, x, n=passes, batch_size=batch_size).pred
    return pred, {size: float((md.crop_agreement(model, x, pred, size, batch_size) == md.N_CROPS)
                              .float().mean()) for size in sizes}


def ch02_ex3(shares: dict, model, x: torch.Tensor, passes: int = 50, batch_size: int = 1000) -> None:
    """``shares = {size: share of the digits whose five crops all agree with their MC-dropout
    class}`` for crop sizes 20, 24, 26 and 28 (``x``: the clean validation digits; the class
    from ``passes`` dropout passes after ``torch.manual_seed(0)``)."""
    from ..inference import predict
    given(shares, "shares = {20: ..., 24: ..., 26: ..., 28: ...}")
    got = sorted(shares) if isinstance(shares, dict) else shares
    assert isinstance(shares, dict) and set(shares) == {20, 24, 26, 28}, \
        f"Give a share for each crop size 20, 24, 26, 28; got {got!r}."
    pred, want = crop_shares(model, x, passes, batch_size)
    for size in sorted(shares):
        assert math.isclose(float(shares[size]), want[size], abs_tol=1e-6), (
            f"Not yet for {size}-pixel crops: {float(shares[size]):.4f}, measured {want[size]:.4f}; "
            "count the digits whose agreement is 5, divided by all digits (MC-dropout class "
            "after torch.manual_seed(0)).")
    same = float((predict(model.eval(), x, batch_size, amp=False) == pred).float().mean())
    assert math.isclose(float(shares[28]), same, abs_tol=1e-6)  # 28-pixel crops are the digit itself
    # the confirmation must not give the measured shares away
    ok("Exercise 3", "The four shares match the measurement, and at 28 pixels, where every crop "
       "is the digit itself, the agreement is that of the deterministic LeNet.")


CHECKERS: dict[str, Callable] = {"ch02-ex1": ch02_ex1, "ch02-ex2": ch02_ex2, "ch02-ex3": ch02_ex3}
