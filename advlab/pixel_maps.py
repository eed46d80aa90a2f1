"""Pixel robustness from input gradients (Hwang, Kim, Chun, Yoo, Kim, Han & Ha 2019, "Where to
be adversarial perturbations added? Investigating and manipulating pixel robustness using input
gradients", ICLR 2019 DebugML workshop; code: niffler92/where-adversarial-added).

* :func:`gradient_map`: the mean absolute input gradient of the loss per pixel over a data set,
  averaged over channels (the study's formula divides the channel sum by C; ranks, masks and
  IoU are those of the sum); batched, any model, any image size;
* :func:`pixel_mask` (top-p, bottom-p or random-p pixels of a map, exactly
  ``round(p * H * W)`` of them), :func:`iou`, :func:`lattice_mask` (the stride-2 lattice a
  1x1 stride-2 convolution reads), :func:`blend` (the study's post-hoc ``M*x_adv + (1-M)*x``);
  masked PGD during the optimisation is :class:`advlab.attacks.PGD` with ``mask``;
* :func:`lattice_upsample` (the parameter-free reconstructions of the stride-2 lattice a PRM
  reads: nearest, bilinear, bicubic), :func:`psnr`, and :func:`prm_lambda_table` (per lambda:
  the PRM's gradient IoU with the lattice, its accuracy next to the parameter-free
  reconstructions mixed at the same lambda, and its autoencoder's PSNR).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .attacks.base import model_device
from .models.prm import PRM, UPSAMPLE_MODES, lattice_upsample  # noqa: F401 (re-exported)
from .models.wrappers import conv_layout

MASK_KINDS = ("top", "bottom", "random")


# --------------------------------------------------------------------------- gradient maps
def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``d CE(model(x_i), y_i) / d x_i`` for every image of the batch (each image's own loss,
    not the batch mean), on the model's device."""
    xg = conv_layout(x.detach().to(model_device(model))).requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(xg).float(), y.to(xg.device), reduction="sum")
        grad, = torch.autograd.grad(loss, xg)
    return grad


def gradient_map(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64,
                 per_image: bool = False, progress: bool = True):
    """Hwang et al.'s pixel vulnerability map: ``mean_n mean_c |dL/dx_{n,c,i,j}|``, (H, W), CPU.

    ``L`` is the cross-entropy of each image with its label ``y``.  With ``per_image`` also
    returns the per-image maps ``mean_c |dL/dx|`` (N, H, W), whose mean is the map.
    """
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as images (and at least one), got {len(x)} "
                         f"images and {len(y)} labels")
    maps = []
    for i in tqdm(range(0, len(x), batch_size), desc="gradient map", disable=not progress,
                  leave=False):
        g = input_gradients(model, x[i:i + batch_size], y[i:i + batch_size])
        maps.append(g.abs().mean(1).float().cpu())
    maps = torch.cat(maps)
    return (maps.mean(0), maps) if per_image else maps.mean(0)


def map_correlations(maps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Pearson correlation between every pair of per-image maps of every model.

    ``maps``: ``{model: (N, H, W)}`` over the same N images.  Returns (M*N, M*N), models in
    the order given, so blocks on the diagonal compare images within a model and the other
    blocks the same or other images across models.
    """
    flat = torch.cat([m.flatten(1) for m in maps.values()]).double()
    flat = flat - flat.mean(1, keepdim=True)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return (flat @ flat.T).float()


# --------------------------------------------------------------------------- masks
def pixel_mask(gmap: torch.Tensor, p: float, kind: str = "top", seed: int = 0) -> torch.Tensor:
    """Boolean (H, W) mask of exactly ``round(p * H * W)`` pixels: the largest (``top``) or the
    smallest (``bottom``) values of ``gmap``, or a uniform random choice (``random``, seeded).
    Ties go to the pixel that comes first in row-major order."""
    if kind not in MASK_KINDS:
        raise ValueError(f"kind must be one of {MASK_KINDS}, got {kind!r}")
    if not 0 <= p <= 1:
        raise ValueError(f"p is a fraction of the pixels in [0, 1], got {p}")
    if gmap.dim() != 2:
        raise ValueError(f"expected a map (H, W), got shape {tuple(gmap.shape)}")
    n = gmap.numel()
    k = int(round(p * n))
    if kind == "random":
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.sort(gmap.flatten().float(), descending=kind == "top", stable=True).indices
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[:k]] = True
    return mask.view_as(gmap)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two boolean masks of the same shape (1.0 if both empty)."""
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.bool(), b.bool()
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def lattice_mask(height: int, width: int, stride: int = 2, offset: int = 0) -> torch.Tensor:
    """The pixels a ``stride`` x ``stride`` lattice starting at (offset, offset) reads, (H, W)
    bool: what a 1x1 convolution of that stride without padding is connected to."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[offset::stride, offset::stride] = True
    return mask


def blend(x: torch.Tensor, x_adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The study's masked adversarial image ``M * x_adv + (1 - M) * x``: the perturbation kept
    only on the pixels of ``mask`` ((H, W), broadcast over images and channels)."""
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv differ in shape: {tuple(x.shape)}, {tuple(x_adv.shape)}")
    if mask.shape != x.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match the images' {tuple(x.shape[-2:])}")
    return torch.where(mask.to(x.device), x_adv, x)


def top_fraction_iou(gmap: torch.Tensor, connected: torch.Tensor) -> float:
    """IoU of the top pixels of ``gmap`` (as many as ``connected`` holds) with ``connected``:
    the study's alignment of the gradient with the PRM's designated pixels."""
    return iou(pixel_mask(gmap, float(connected.float().mean()), "top"), connected)


# --------------------------------------------------------------------------- PRM baselines
def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio of each image of ``a`` against ``b`` (values in [0, 1]),
    ``10 log10(1 / MSE)`` in dB, one per image (inf where they are equal)."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse)


def prm_lambda_table(prms: dict[float, PRM], x: torch.Tensor, y: torch.Tensor,
                     baselines=("bicubic", "bilinear"), aligned: bool = True,
                     resized: bool = False, batch_size: int = 100, progress: bool = True):
    """Hwang et al.'s lambda table (their Table 1: accuracy and IoU per lambda) with the
    parameter-free reference a PRM has to beat.

    ``prms``: ``{lambda: PRM}`` (the PRM trained at that lambda, used at it; all in front of
    the same classifier).  One row per lambda: ``iou`` (top-25% pixels of the mean absolute
    input gradient of the PRM, :func:`gradient_map`, against :func:`lattice_mask`), ``acc``
    (top-1 of the PRM on ``x``), ``acc_<mode>`` (the classifier on ``(1 - lambda) x + lambda
    lattice_upsample(x, mode, aligned)`` for each of ``baselines``), ``psnr`` (mean over the
    images of :func:`psnr` of ``AE(x)`` against ``x``) and ``psnr_<mode>`` (the same for the
    reconstruction alone), and ``n`` (images).  ``resized``: also ``acc_<mode>_resized`` and
    ``psnr_<mode>_resized``, the same with ``aligned=False`` (the lattice resized as a
    half-size image).  Returns a pandas DataFrame.
    """
    import pandas as pd

    from .inference import predict
    lattice = lattice_mask(*x.shape[-2:])
    ups = {m: lattice_upsample(x, m, aligned) for m in baselines}
    if resized:
        ups.update({f"{m}_resized": lattice_upsample(x, m, False) for m in baselines})
    rows = []
    for lam, prm in tqdm(sorted(prms.items()), desc="PRM lambda table", disable=not progress,
                         leave=False):
        prm = prm.at(float(lam)).eval()
        dev = model_device(prm)
        with torch.no_grad():
            rec = torch.cat([prm.autoencoder(conv_layout(x[i:i + batch_size].to(dev))).float()
                             .cpu() for i in range(0, len(x), batch_size)])
        gmap = gradient_map(prm, x, y, batch_size, progress=False)
        row = {"lambda": float(lam), "iou": top_fraction_iou(gmap, lattice),
               "acc": float((predict(prm, x, batch_size, backend="torch") == y).float().mean())}
        for m, up in ups.items():
            mixed = (1 - float(lam)) * x + float(lam) * up
            pred = predict(prm.classifier, mixed, batch_size, backend="torch")
            row[f"acc_{m}"] = float((pred == y).float().mean())
        row["psnr"] = float(psnr(rec, x).mean())
        for m, up in ups.items():
            row[f"psnr_{m}"] = float(psnr(up, x).mean())
        row["n"] = len(x)
        rows.append(row)
    return pd.DataFrame(rows)
