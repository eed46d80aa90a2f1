"""Checkers of Chapter 5's exercises (pixel robustness and the PRM)."""
from __future__ import annotations

import torch
from torch import nn

from . import given, ok, returned


def _toy_model(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A linear classifier on 3x6x6 images, a batch of images and labels."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    x = torch.rand(8, 3, 6, 6, generator=gen)
    y = torch.randint(0, 4, (8,), generator=gen)
    return model, x, y


def check_ex1(answer) -> None:
    """``answer(model, x, y)``: the mean over images and channels of |d CE / d x|, (H, W)."""
    given(answer, "mean_gradient_map")
    from ..pixel_maps import gradient_map
    for seed in (0, 1):
        model, x, y = _toy_model(seed)
        out = returned(answer(model, x.clone(), y.clone()), "mean_gradient_map").detach().float()
        ref = gradient_map(model, x, y, progress=False)
        assert out.shape == ref.shape, (
            f"expected a map of shape {tuple(ref.shape)} (H, W), got {tuple(out.shape)}: "
            "average over the images (dim 0) and the channels (dim 1)")
        if torch.allclose(out, 3 * ref, rtol=1e-4, atol=1e-6):
            raise AssertionError("the map is 3x too large: average over the channels, do not sum")
        if not torch.allclose(out, ref, rtol=1e-4, atol=1e-6):
            raise AssertionError(
                "the values differ from the mean |gradient|: take each image's own loss "
                "(cross-entropy with reduction='sum' over the batch, not 'mean', or divide by N "
                "once), the absolute value before averaging, and the gradient with respect to x")
    ok("ch05-ex1", "This is advlab.pixel_maps.gradient_map.")


def check_ex2(answer) -> None:
    """``answer = (iou_closed, iou_unrelated)`` on a 32x32 image: the IoU of the top-25% gradient
    pixels with the stride-2 lattice at lambda = 1, and its expected value for a map that
    ignores the lattice (its top 25% a uniform random quarter of the pixels)."""
    given(answer, "answer = (iou_closed, iou_unrelated)")
    try:
        closed, unrelated = (float(a) for a in answer)
    except (TypeError, ValueError) as err:
        raise AssertionError("answer must be a pair of numbers (iou_closed, iou_unrelated)") from err
    assert abs(closed - 1.0) < 1e-3, (
        "at lambda = 1 the gradient reaches only the lattice pixels (25%), so the top 25% of "
        "the map is exactly the lattice (the off-lattice gradient is exactly 0)")
    if abs(unrelated - 0.25) < 1e-3 or abs(unrelated - 1 / 16) < 1e-3:
        raise AssertionError("that is the intersection's share; IoU divides it by the union's "
                             "share, 1/4 + 1/4 - 1/16")
    assert abs(unrelated - 1 / 7) < 2e-3, (
        "a random quarter meets the lattice on about 1/4 of its pixels: intersection 1/16 of "
        "the image, union 1/4 + 1/4 - 1/16 = 7/16")
    ok("ch05-ex2", "1 and 1/7 = 0.143: the PRM's IoU runs between these two.")


#: (clean, attacked, defended) accuracies and the defence rate they give (NaN: undefined).
EX3_CASES = [((0.9, 0.1, 0.5), 0.5), ((0.8, 0.2, 0.8), 1.0), ((0.8, 0.2, 0.2), 0.0),
             ((0.9, 0.3, 0.1), -1 / 3), ((0.36, 0.36, 0.35), float("nan")),
             ((0.36, 0.40, 0.35), float("nan"))]


def _rates(answer, clean, attacked, defended) -> torch.Tensor:
    out = answer(*(torch.as_tensor(v, dtype=torch.float64) for v in (clean, attacked, defended)))
    return returned(out, "defence_rate").double()


def check_ex3(answer, defences=None) -> None:
    """``answer(clean, attacked, defended)``: the authors' defence rate
    ``1 - (clean - defended) / (clean - attacked)`` of tensors of accuracies, NaN where the
    attack did not lower the accuracy (``attacked >= clean``); with ``defences`` (the run's
    defence table), it must give the table's ``defence_rate`` column too."""
    given(answer, "def defence_rate(clean, attacked, defended) and answer = defence_rate")
    assert callable(answer), "answer must be the function itself: answer = defence_rate"
    inputs = [torch.tensor(c, dtype=torch.float64) for c in zip(*(case for case, _ in EX3_CASES))]
    want = torch.tensor([r for _, r in EX3_CASES], dtype=torch.float64)
    got = _rates(answer, *inputs)
    assert got.shape == want.shape, f"return one rate per defence: shape {tuple(want.shape)}, got {tuple(got.shape)}"
    defined = ~want.isnan()
    if torch.allclose(got[defined], 1 - want[defined], atol=1e-6):
        raise AssertionError("that is the share of the attack's damage that remains; the rate is 1 minus it")
    assert torch.allclose(got[defined], want[defined], atol=1e-6), (
        "not yet where the rate is defined: the attack costs clean - attacked, the defence "
        "leaves clean - defended of it, and the rate is 1 - (clean - defended) / (clean - attacked)")
    assert got[~defined].isnan().all(), (
        "where the attack did not lower the accuracy (attacked >= clean) there is no damage to "
        "undo: return NaN there (torch.where(..., rate, torch.nan)), not a number")
    if defences is not None:
        t = defences[defences.defence_rate.notna()]
        clean = defences[defences.attack == "clean"].set_index("defence")["acc_plain"]
        got = _rates(answer, *(v.to_numpy(dtype="float64", copy=True) for v in
                               (t.defence.map(clean), t.acc_plain, t.acc)))
        assert torch.allclose(got, torch.tensor(t.defence_rate.to_numpy(), dtype=torch.float64),
                              atol=1e-6), "your rates differ from the defence-rate table's"
    ok("ch05-ex3", "A rate near 1 needs an attack that hurt the model without the transform; "
       "where it did not, the rate says nothing.")


CHECKERS = {"ch05-ex1": check_ex1, "ch05-ex2": check_ex2, "ch05-ex3": check_ex3}
