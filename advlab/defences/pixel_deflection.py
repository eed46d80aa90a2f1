"""Pixel Deflection of Prakash, Moran, Garber, DiLillo & Storer 2018 ("Deflecting adversarial
attacks with pixel deflection", CVPR): replace randomly chosen pixels by a random neighbour
within a window, then soften the result with BayesShrink soft wavelet denoising (Chang, Yu &
Vetterli 2000) in YCbCr.  Settings of Chapter 5's source code: 200 deflections, window 10,
sigma 0.04.

Batched over images, and deterministic given the global RNG.  Differences from the reference
code, all deliberate: the class-activation map that spares salient pixels is not used (every
drawn pixel is deflected: the reference's R-CAM needs a pass over the training set and
applies only to its own ResNet); all deflections of an image read the input image at once
(the reference deflects one value after another, so a value moved early can be moved again:
rare when 200 values of 3x32x32 move); the result is clipped to [0, 1].  The denoiser equals
``skimage.restoration.denoise_wavelet(img, sigma, mode="soft", method="BayesShrink",
convert2ycbcr=True, channel_axis=-1)`` (tested).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .base import Preprocessed

# ITU-R BT.601 RGB -> YCbCr on [0, 1] inputs (Y in [16, 235]): skimage's ycbcr_from_rgb.
YCBCR_FROM_RGB = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0],
                           [112.0, -93.786, -18.214]])
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def deflect(x: torch.Tensor, deflections: int = 200, window: int = 10) -> torch.Tensor:
    """``deflections`` values of every image replaced by the same channel's value at a random
    pixel within ``window`` pixels (each axis, uniform over the part inside the image);
    channels take turns as in the reference.  Global torch RNG."""
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    if deflections < 0 or window < 1:
        raise ValueError(f"need deflections >= 0 and window >= 1, got {deflections}, {window}")
    n, c, h, w = x.shape
    dev = x.device
    shape = (n, deflections)
    row = torch.randint(h, shape, device=dev)
    col = torch.randint(w, shape, device=dev)

    def neighbour(pos: torch.Tensor, size: int) -> torch.Tensor:
        lo, hi = (pos - window).clamp_min(0), (pos + window).clamp_max(size - 1)
        return lo + (torch.rand(shape, device=dev) * (hi - lo + 1)).long().clamp_max(hi - lo)

    src_row, src_col = neighbour(row, h), neighbour(col, w)
    chan = (torch.arange(deflections, device=dev) % c).expand(n, deflections)
    flat = x.reshape(n, -1)
    target = (chan * h + row) * w + col
    source = (chan * h + src_row) * w + src_col
    out = flat.clone()
    out.scatter_(1, target, flat.gather(1, source))
    return out.view_as(x)


def _soft(d: np.ndarray, thresh: np.ndarray) -> np.ndarray:
    return np.sign(d) * np.maximum(np.abs(d) - thresh, 0)


def wavelet_denoise(x: torch.Tensor, sigma: float = 0.04, wavelet: str = "db1",
                    levels: int | None = None) -> torch.Tensor:
    """BayesShrink soft wavelet denoising of RGB images ``x`` (N, 3, H, W) in YCbCr, batched:
    skimage's ``denoise_wavelet(..., convert2ycbcr=True, method="BayesShrink", mode="soft")``.

    Each YCbCr channel of each image is rescaled to [0, 1] (sigma with it), decomposed over
    ``levels`` (default: the largest possible minus 3, at least 1), every detail sub-band
    soft-thresholded at ``sigma**2 / sqrt(max(mean(d**2) - sigma**2, eps))``, and rebuilt.
    """
    import pywt
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected RGB images (N, 3, H, W), got shape {tuple(x.shape)}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    h, w = x.shape[-2:]
    img = x.detach().cpu().double().numpy()
    ycc = np.einsum("ij,njhw->nihw", YCBCR_FROM_RGB, img) + YCBCR_OFFSET[:, None, None]
    lo = ycc.min(axis=(2, 3), keepdims=True)
    scale = ycc.max(axis=(2, 3), keepdims=True) - lo
    flat_channel = scale == 0
    scale = np.where(flat_channel, 1.0, scale)
    chan = (ycc - lo) / scale
    sig = sigma * np.linalg.norm(YCBCR_FROM_RGB, axis=1)[None, :, None, None] / scale  # (N,3,1,1)
    var = sig ** 2
    if levels is None:
        levels = max(pywt.dwtn_max_level((h, w), wavelet) - 3, 1)
    coeffs = pywt.wavedec2(chan, wavelet, level=levels, axes=(-2, -1))
    eps = np.finfo(np.float64).eps
    out = [coeffs[0]]
    for bands in coeffs[1:]:
        kept = []
        for d in bands:
            dvar = (d * d).mean(axis=(2, 3), keepdims=True)
            kept.append(_soft(d, var / np.sqrt(np.maximum(dvar - var, eps))))
        out.append(tuple(kept))
    rec = pywt.waverec2(out, wavelet, axes=(-2, -1))[..., :h, :w]
    rec = np.where(flat_channel, chan, rec) * scale + lo
    rgb = np.einsum("ij,njhw->nihw", np.linalg.inv(YCBCR_FROM_RGB),
                    rec - YCBCR_OFFSET[:, None, None])
    return torch.from_numpy(rgb).to(dtype=x.dtype, device=x.device)


def pixel_deflection(x: torch.Tensor, deflections: int = 200, window: int = 10,
                     sigma: float = 0.04) -> torch.Tensor:
    """:func:`deflect` then :func:`wavelet_denoise`, clipped to [0, 1]."""
    return wavelet_denoise(deflect(x, deflections, window), sigma).clamp_(0, 1)


#: The setting of Prakash et al. and of Chapter 5's source code, made for 224-px ImageNet images:
#: 200 deflections, each within 10 pixels.
REFERENCE_SIZE, REFERENCE_DEFLECTIONS, REFERENCE_WINDOW = 224, 200, 10


def scaled_deflection(height: int, width: int, deflections: int = REFERENCE_DEFLECTIONS,
                      window: int = REFERENCE_WINDOW, size: int = REFERENCE_SIZE) -> tuple[int, int]:
    """A Pixel Deflection setting made for ``size`` x ``size`` images carried to ``height`` x
    ``width`` ones: the number of deflections scales with the image's area (the same share of
    the pixels moves) and the window with its side (the window covers the same share of the
    image), each rounded and at least 1.  For 32 x 32 images the study's 200 in 10 becomes
    4 deflections in a window of 1 (200 at 224 px deflects 0.4% of the pixels, 200 at 32 px 20%)."""
    if min(height, width, size) < 1 or deflections < 0 or window < 1:
        raise ValueError(f"need positive sizes, deflections >= 0 and window >= 1, got "
                         f"{height}x{width}, {deflections}, {window}, {size}")
    area = height * width / size ** 2
    return max(1, round(deflections * area)), max(1, round(window * math.sqrt(area)))


def pixel_deflection_defence(model: nn.Module, deflections: int = 200, window: int = 10,
                             sigma: float = 0.04) -> Preprocessed:
    """Pixel Deflection in front of ``model`` in the defence shape: randomized, not
    differentiable (attackers see it through BPDA with the identity's gradient)."""
    if deflections < 0 or window < 1 or sigma <= 0:
        raise ValueError(f"need deflections >= 0, window >= 1, sigma > 0; got {deflections}, "
                         f"{window}, {sigma}")
    return Preprocessed(model, lambda x: pixel_deflection(x, deflections, window, sigma),
                        randomized=True, name=f"pixel deflection ({deflections}, {window}, {sigma})")
