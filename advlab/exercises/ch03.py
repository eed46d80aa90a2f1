"""Chapter 3's exercises: colour-depth reduction, the defence success rate, and reading the
median-window curves."""
from __future__ import annotations

import pandas as pd
import torch

from . import given, ok, returned


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
    ok("ch03-ex1", "Removing 6 bits leaves only the levels 0, 64, 128 and 192.")


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
    ok("ch03-ex2", "3 of the 5 fooling images are recovered: 60%.")


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
    ok("ch03-ex3", f"{best} averages {means[best]:.1%} over the scaled DeepFool budgets "
       f"({', '.join(f'{k} {v:.1%}' for k, v in means.items())}).")


CHECKERS = {"ch03-ex1": check_remove_bits, "ch03-ex2": check_success_rate,
            "ch03-ex3": check_best_window}
