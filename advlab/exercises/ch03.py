"""Chapter 3's exercises: colour-depth reduction, the defence success rate, reading the
median-window curves, the paired test that compares two transforms, and what two success rates
alone can tell (multiple choice).  Confirmations never state an answer: the book shows them."""
from __future__ import annotations

import pandas as pd
import torch

from . import given, multiple_choice, ok, returned


def _images(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (2, 3, 8, 8), generator=g).float() / 255


def check_remove_bits(fn) -> None:
    """ch03-ex1: ``fn(x, k)`` removes the ``k`` low bits of each 8-bit value (the source
    study's colour-depth reduction) and returns images in [0, 1]."""
    given(fn, "remove_bits(x, k)")
    from ..defences.transforms import bit_depth
    x = _images()
    for k in (2, 4, 6):
        out = returned(fn(x.clone(), k), "remove_bits").float()
        if out.shape != x.shape:
            raise AssertionError(f"remove_bits(x, {k}) has shape {tuple(out.shape)}, not {tuple(x.shape)}")
        want = bit_depth(x, 8 - k, "truncate")
        if out.max() > 1.0 + 1e-6:
            raise AssertionError("Return images in [0, 1]: divide the 8-bit values by 255 at the end.")
        if not torch.allclose(out, want, atol=1e-6):
            levels = sorted({round(v * 255) for v in out.flatten().tolist()})[:6]
            raise AssertionError(
                f"remove_bits(x, {k}) differs from the expected result; first levels you produce: "
                f"{levels}. Hint: v = round(255 x); v - v mod 2**k; then / 255 (it rounds down).")
    ok("ch03-ex1", "remove_bits rounds down to the multiples of 2**k for k = 2, 4 and 6.")


def check_success_rate(fn) -> None:
    """ch03-ex2: ``fn(y, undefended, defended)`` is the defence success rate: of the images
    that fool the undefended classifier, the fraction the defended one labels correctly."""
    given(fn, "success_rate(y, undefended, defended)")
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    undefended = torch.tensor([0, 9, 9, 9, 9, 5, 9, 7])      # images 1, 2, 3, 4, 6 fooled
    defended = torch.tensor([8, 1, 2, 8, 9, 5, 6, 8])        # recovers 1, 2 and 6
    got = float(returned(fn(y, undefended, defended), "success_rate"))
    if abs(got - 0.6) > 1e-6:
        hint = ("you divided by all images: count only those the undefended classifier gets wrong"
                if abs(got - 3 / 8) < 1e-6 else
                "you counted images the defence gets right that never fooled the classifier"
                if abs(got - 5 / 8) < 1e-6 or abs(got - 1.0) < 1e-6 else
                "numerator: fooled and defended-correct; denominator: fooled")
        raise AssertionError(f"success_rate gave {got:.3f} on the test case, expected 0.600: {hint}.")
    ok("ch03-ex2", "success_rate counts only the images that fool the undefended classifier.")


def check_best_window(answer: str, curves: pd.DataFrame | None = None) -> None:
    """ch03-ex3: the median window with the highest defence success rate against DeepFool's
    direction scaled to the source study's L2 budgets, averaged over those budgets, in
    ``curves`` (the chapter's results)."""
    from ..experiments.ch03 import DEEPFOOL_SCALED
    given(answer, "answer (a window such as '3x3')")
    if curves is None:
        raise AssertionError("Pass the chapter's results: exercises.check('ch03-ex3', answer, results.curves).")
    d = curves[(curves.attack == DEEPFOOL_SCALED) & (curves.family == "median")]
    means = d.groupby("defence").rate.mean()
    best = means.idxmax()
    if str(answer).strip() not in means.index:
        raise AssertionError(f"{answer!r} is not one of the windows {sorted(means.index)}.")
    if str(answer).strip() != best:
        raise AssertionError(f"{answer} averages {means[str(answer).strip()]:.1%} against DeepFool; "
                             f"another window does better. Group the rows of {DEEPFOOL_SCALED!r} by defence.")
    ok("ch03-ex3", "That window has the highest mean success rate over the scaled DeepFool "
       "budgets; compare it with the source study's claim in the claims table.")


def _paired(seed: int, n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """Two defences' right/wrong outcomes on the same ``n`` images, correlated as real ones are."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g) < 0.5
    flip = torch.rand(n, generator=g) < 0.3
    return a, a ^ flip


def check_mcnemar(fn) -> None:
    """ch03-ex4: ``fn(a, b)`` is the two-sided p-value of McNemar's exact test of two defences
    judged on the same images (``a``, ``b``: boolean tensors, True where each is right)."""
    given(fn, "def mcnemar_p(a, b) and answer = mcnemar_p")
    assert callable(fn), "answer must be the function itself: answer = mcnemar_p"
    from scipy.stats import binomtest

    from ..metrics import mcnemar
    cases = [_paired(seed) for seed in range(6)]
    cases.append((torch.ones(10, dtype=torch.bool), torch.ones(10, dtype=torch.bool)))  # no discordant
    cases.append((torch.tensor([True] * 9 + [False] * 3), torch.tensor([False] * 9 + [True] * 3)))
    for a, b in cases:
        got = float(returned(fn(a.clone(), b.clone()), "mcnemar_p"))
        want = mcnemar(a, b).p
        if abs(got - want) < 1e-9:
            continue
        a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
        if a_only + b_only == 0:
            raise AssertionError(f"When no image is right for one defence alone the two are "
                                 f"indistinguishable: return 1, not {got:.3g}.")
        unpaired = binomtest(int(a.sum()), int(a.sum() + b.sum()), 0.5).pvalue
        one_sided = binomtest(a_only, a_only + b_only, 0.5, alternative="greater").pvalue
        if abs(got - unpaired) < 1e-9:
            hint = ("you counted every image each defence gets right; only the images where the "
                    "two disagree carry information about which is better")
        elif abs(got - one_sided) < 1e-9 or abs(got - want / 2) < 1e-9:
            hint = "that is a one-sided p-value: the test asks whether either defence is better"
        else:
            hint = ("under the hypothesis of equal accuracy, the images right for A alone are "
                    "Binomial(discordant, 1/2)")
        raise AssertionError(f"mcnemar_p gave {got:.4g} where A alone is right on {a_only} images "
                             f"and B alone on {b_only}; not yet: {hint}.")
    ok("ch03-ex4", "mcnemar_p agrees with the exact McNemar test the chapter uses on every case.")


EX5_OPTIONS = {
    "a": "yes: 30 of 60 against 22 of 60 is a difference of 13 percentage points",
    "b": "no: their 95% Wilson intervals overlap, so the difference is not significant",
    "c": "not from these two numbers: it depends on how many images each recovers that the "
         "other does not",
    "d": "no: two transforms can never be compared on the same images",
}


def check_two_rates(answer) -> None:
    """ch03-ex5: two transforms recover 30 and 22 of the same 60 fooling images; is the first
    significantly better? (multiple choice)"""
    multiple_choice("ch03-ex5", answer, EX5_OPTIONS, "c",
                    "On the same images the two counts are paired; only the discordant images "
                    "(right for one transform alone) decide the test, and 30 against 22 is "
                    "compatible with a discordance of 8 against 0 as well as of 20 against 12.",
                    hints={"a": "a difference in points says nothing about its significance "
                                "without knowing what varies from image to image.",
                           "b": "overlapping intervals of two rates on the same images do not "
                                "settle it: the images the two share cancel out.",
                           "d": "the chapter compares transforms on the same images at every "
                                "point: how?"})


CHECKERS = {"ch03-ex1": check_remove_bits, "ch03-ex2": check_success_rate,
            "ch03-ex3": check_best_window, "ch03-ex4": check_mcnemar, "ch03-ex5": check_two_rates}
