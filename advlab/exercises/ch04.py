"""Chapter 4 exercises: a certified radius by hand, the largest radius N samples allow, and
spotting a collapsed smoothed classifier."""
from __future__ import annotations

import math

import torch
from scipy.stats import beta, norm

from . import given, ok

#: Exercise 1's setting: CERTIFY's estimation counted N_A = 9,700 of N = 10,000 noise samples for
#: the selected class, alpha = 0.001, sigma = 0.25.
EX1 = dict(n_a=9_700, n=10_000, alpha=0.001, sigma=0.25)
#: Exercise 2's setting: N = 2,000 (a column the chapter's table of caps does not show),
#: alpha = 0.001, sigma = 0.5.
EX2 = dict(n=2_000, alpha=0.001, sigma=0.5)


def ex1_truth() -> float:
    """sigma * Phi^-1(p_A), p_A the one-sided Clopper-Pearson lower bound at level 1 - alpha."""
    p_lower = beta.ppf(EX1["alpha"], EX1["n_a"], EX1["n"] - EX1["n_a"] + 1)
    return float(EX1["sigma"] * norm.ppf(p_lower)) if p_lower > 0.5 else 0.0


def check_ex1(answer) -> None:
    given(answer, "`answer` (the certified radius, a number)")
    r = float(answer)
    truth = ex1_truth()
    naive = EX1["sigma"] * norm.ppf(EX1["n_a"] / EX1["n"])
    if math.isclose(r, naive, abs_tol=2e-3) and not math.isclose(r, truth, abs_tol=2e-3):
        raise AssertionError("That is sigma * Phi^-1(N_A / N): the radius of the point estimate. "
                             "CERTIFY uses the lower confidence bound p_A (Clopper-Pearson, "
                             "one-sided, level 1 - alpha) instead.")
    if not math.isclose(r, truth, abs_tol=2e-3):
        raise AssertionError("Not yet: compute p_A = the alpha-quantile of Beta(N_A, N - N_A + 1) "
                             "(scipy.stats.beta.ppf), then sigma * Phi^-1(p_A) (norm.ppf).")
    ok("ch04-ex1", f"radius {truth:.4f} (the point estimate would claim "
                   f"{naive:.4f}; the bound pays for the finite sample).")


def ex2_truth() -> float:
    """sigma * Phi^-1(alpha^(1/N)): the radius when all N samples agree."""
    return float(EX2["sigma"] * norm.ppf(EX2["alpha"] ** (1 / EX2["n"])))


def check_ex2(answer) -> None:
    given(answer, "`answer` (the largest radius CERTIFY can return, a number)")
    r = float(answer)
    truth = ex2_truth()
    if math.isinf(r) or r > 10:
        raise AssertionError("With N_A = N the point estimate is 1 and Phi^-1(1) is infinite; but "
                             "p_A is a lower bound: solve p_A^N = alpha for N out of N.")
    if not math.isclose(r, truth, abs_tol=2e-3):
        raise AssertionError("Not yet: when all N samples agree, the one-sided Clopper-Pearson "
                             "lower bound is alpha^(1/N); the radius is sigma * Phi^-1 of it.")
    ok("ch04-ex2", f"{truth:.3f}: no image can be certified beyond it with N = {EX2['n']:,}, "
                   "however robust the classifier is.")


#: Exercise 3's made-up CERTIFY answers (-1: abstained) and what ``my_collapse`` returns; a tie
#: accepts any of the tied classes.
EX3_CASES = (
    ([2, 2, 2, -1, 5], {2}, 0.6),
    ([9, 9, 9, 9, 9, 9, -1, -1, -1, -1], {9}, 0.6),
    ([3, -1, -1, -1, 3, 1], {3}, 2 / 6),            # the share of ALL images, abstentions included
    ([-1, -1, -1], {-1}, 0.0),                      # abstained everywhere
    (list(range(10)), set(range(10)), 0.1),         # a tie: any class will do
)


def _top(pred: torch.Tensor) -> tuple[set[int], float]:
    """The classes returned most often (ties: all of them) and their share of all the images."""
    answered = pred[pred >= 0]
    if len(answered) == 0:
        return {-1}, 0.0
    counts = torch.bincount(answered)
    best = int(counts.max())
    return {int(c) for c in (counts == best).nonzero().flatten()}, best / len(pred)


def _call(fn, pred: torch.Tensor) -> tuple[int, float]:
    out = fn(pred.clone())
    if out is None or out is Ellipsis:
        raise AssertionError("my_collapse returned nothing: write its body in the cell above.")
    try:
        cls, share = out
        return int(cls), float(share)
    except (TypeError, ValueError):
        raise AssertionError(f"my_collapse must return two numbers, (class, share); got {out!r}.") from None


def check_ex3(answer, per_image=None) -> None:
    """``answer(pred) -> (class, share)`` on made-up answers and, given the chapter's
    ``results.per_image``, on every (data set, configuration, sigma) of the run."""
    given(answer, "`answer = my_collapse` (a function)")
    for pred, classes, share in EX3_CASES:
        cls, got = _call(answer, torch.tensor(pred))
        if math.isclose(got, share * len(pred) / max(1, sum(p >= 0 for p in pred))) and \
                not math.isclose(got, share):
            raise AssertionError(f"For {pred} you return the share of the answered images "
                                 f"({got:.2f}); the chapter's share is over all the images, "
                                 f"abstentions included ({share:.2f}).")
        if cls not in classes or not math.isclose(got, share, abs_tol=1e-6):
            raise AssertionError(f"Not yet: for CERTIFY's answers {pred} expected class "
                                 f"{sorted(classes) if len(classes) > 1 else min(classes)} with "
                                 f"share {share:.2f}, got ({cls}, {got:.2f}).")
    rows, collapsed = 0, 0
    if per_image is not None:
        for (ds, config, sigma), g in per_image.groupby(["dataset", "config", "sigma"], sort=False):
            pred = torch.tensor(g.predict.to_numpy())
            classes, share = _top(pred)
            cls, got = _call(answer, pred)
            if cls not in classes or not math.isclose(got, share, abs_tol=1e-6):
                raise AssertionError(f"Not yet: on this run's {config} at σ = {sigma:g} ({ds}) "
                                     f"expected class {min(classes)} with share {share:.2f}, got "
                                     f"({cls}, {got:.2f}).")
            rows += 1
            collapsed += share > 0.5
    on_run = (f" and on the run's {rows} smoothed classifiers, {collapsed} of them collapsed"
              if per_image is not None else "")
    ok("ch04-ex3", f"my_collapse agrees on the made-up answers{on_run}.")


CHECKERS = {"ch04-ex1": check_ex1, "ch04-ex2": check_ex2, "ch04-ex3": check_ex3}
