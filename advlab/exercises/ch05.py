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


CHECKERS = {"ch05-ex1": check_ex1, "ch05-ex2": check_ex2}
