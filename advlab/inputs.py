"""The one check of the images that enter the book's models, attacks and defences.

Every model of the book takes float images in [0, 1], a batch (N, C, H, W), and normalises
inside itself.  Images in 0..255, uint8 images, images normalised already, NaN pixels or a
64 x 64 image sent to a 32 x 32 CIFAR-10 network all run without complaint and give wrong
answers (an attack clips 0..255 images to [0, 1]; a defence labels them all one class), so
the public entry points (:func:`advlab.inference.predict` and ``logits``,
:func:`advlab.attacks.run`, every defence's ``predict``, ``Smooth.certify``) call
:func:`check_images` first: one pass over the tensor (its minimum and maximum), no copy.

A model declares the input it expects with an ``input_shape`` attribute, ``(C, H, W)``, on
itself or on a submodule (the CIFAR-10 ResNets ``(3, 32, 32)``, the LeNet ``(1, 28, 28)``,
the ImageNet models ``(3, None, None)``: any height and width of at least :data:`MIN_SIDE`);
wrappers (normalisation, a denoiser or a PRM in front, a defence) inherit it from the first
submodule that declares one.
"""
from __future__ import annotations

import math

import torch
from torch import nn

#: How far outside [0, 1] a pixel may lie (float rounding of transforms, float16 inputs).
TOLERANCE = 1e-3
#: The least height and width for a model that declares ``None`` (any size).
MIN_SIDE = 32


class InputError(ValueError):
    """Images that the model, attack or defence cannot take: wrong dtype, range or shape."""


def expected_shape(model: nn.Module | None) -> tuple | None:
    """The ``(C, H, W)`` ``model`` declares (``input_shape`` on it or on its first submodule
    that has one; ``None`` entries: any size), or ``None`` when nothing declares one."""
    found = _declaring(model)
    return None if found is None else tuple(found.input_shape)


def _declaring(model: nn.Module | None) -> nn.Module | None:
    if not isinstance(model, nn.Module):
        return None
    return next((m for m in model.modules() if getattr(m, "input_shape", None) is not None), None)


def check_images(x, model: nn.Module | None = None, *, what: str = "images",
                 unit_range: bool = True) -> None:
    """Raise :class:`InputError` (a ValueError, one line) unless ``x`` is a floating-point
    batch (N, C, H, W) of finite values in [0, 1] (within :data:`TOLERANCE`) with the
    channels and size ``model`` declares (:func:`expected_shape`).

    ``unit_range=False``: finite values of any range (noisy inputs of randomized smoothing,
    which adds Gaussian noise without clipping).  ``what`` names ``x`` in the message.
    """
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{what} must be a torch.Tensor (N, C, H, W) of floats in [0, 1], got "
                         f"a {type(x).__name__}")
    if not x.is_floating_point():
        hint = " (divide uint8 images by 255: x.float() / 255)" if x.dtype == torch.uint8 else ""
        raise InputError(f"{what} must be floating-point images in [0, 1], got {x.dtype}{hint}")
    if x.dim() != 4:
        raise InputError(f"{what} must be a batch (N, C, H, W), got shape {tuple(x.shape)}"
                         + (" (add a batch dimension: x[None])" if x.dim() == 3 else ""))
    declaring = _declaring(model)
    if declaring is not None:
        shape = tuple(declaring.input_shape)
        c, h, w = shape
        got = tuple(x.shape[1:])
        size_ok = all((want is None and have >= MIN_SIDE) or want == have
                      for want, have in ((h, got[1]), (w, got[2])))
        if got[0] != c or not size_ok:
            want = ", ".join(str(v) if v is not None else f"H>={MIN_SIDE}" if i == 1 else
                             f"W>={MIN_SIDE}" for i, v in enumerate(shape))
            raise InputError(f"{type(declaring).__name__} takes images (N, {want}), got {what} of shape "
                             f"{tuple(x.shape)}")
    if x.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"NaN or infinite values in {what}")
    if unit_range and (lo < -TOLERANCE or hi > 1 + TOLERANCE):
        hint = (" (0..255 images? divide by 255)" if hi > 2 and lo >= -TOLERANCE else
                " (normalised already? every model of the book normalises inside itself)"
                if lo < 0 else "")
        raise InputError(f"{what} must lie in [0, 1], got values from {lo:.4g} to {hi:.4g}{hint}")


def check_epsilons(epsilons) -> None:
    """Raise :class:`InputError` unless every epsilon is a finite number >= 0."""
    bad = [e for e in epsilons if not (math.isfinite(e) and e >= 0)]
    if bad:
        raise InputError(f"epsilons must be finite numbers >= 0, got {bad}")
