"""Chapter 4 exercises: a certified radius by hand, and the largest radius N samples allow."""
from __future__ import annotations

import math

from scipy.stats import beta, norm

from . import given, ok

#: Exercise 1's setting: CERTIFY's estimation counted N_A = 9,700 of N = 10,000 noise samples for
#: the selected class, alpha = 0.001, sigma = 0.25.
EX1 = dict(n_a=9_700, n=10_000, alpha=0.001, sigma=0.25)
#: Exercise 2's setting: the full profile's N = 500 and alpha = 0.001, sigma = 0.5.
EX2 = dict(n=500, alpha=0.001, sigma=0.5)


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


CHECKERS = {"ch04-ex1": check_ex1, "ch04-ex2": check_ex2}
