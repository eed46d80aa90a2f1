"""Randomization of Xie, Wang, Zhang, Ren & Yuille 2018 ("Mitigating adversarial effects through
randomization", ICLR): resize the image to a random size (nearest neighbour) and zero-pad it
at a random place to a fixed size, then classify.

Xie et al. (ImageNet, 299 px): a size drawn from [299, 331), padded to 331.  Chapter 5's
source code on CIFAR: a scale in (0.9, 1], i.e. sizes 28 to 31 px, padded back to 32.
Batched: every image gets its own size and offset in one gather (no loop over sizes); the
transform is piecewise linear, so attackers differentiate it exactly.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Preprocessed


def random_resize_pad(x: torch.Tensor, sizes: tuple[int, int], out_size: int) -> torch.Tensor:
    """Each image resized (nearest) to ``s x s`` with ``s`` uniform in ``sizes`` (inclusive)
    and zero-padded to ``out_size`` with a uniform random top-left corner.  Global torch RNG."""
    lo, hi = sizes
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    if not 1 <= lo <= hi <= out_size:
        raise ValueError(f"need 1 <= sizes[0] <= sizes[1] <= out_size, got {sizes}, {out_size}")
    n, c, h, w = x.shape
    dev = x.device
    size = torch.randint(lo, hi + 1, (n, 1), device=dev)
    top = (torch.rand(n, 1, device=dev) * (out_size - size + 1)).long()
    left = (torch.rand(n, 1, device=dev) * (out_size - size + 1)).long()
    grid = torch.arange(out_size, device=dev)[None]

    def source(start: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = grid - start
        inside = (i >= 0) & (i < size)
        return (i.clamp(0) * length // size).clamp_max(length - 1), inside

    rows, in_r = source(top, h)
    cols, in_c = source(left, w)
    idx = torch.arange(n, device=dev)[:, None, None]
    out = x.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]]       # (N, O, O, C)
    keep = (in_r[:, :, None] & in_c[:, None, :])[..., None]
    return (out * keep).permute(0, 3, 1, 2).contiguous()


def randomization_defence(model: nn.Module, sizes: tuple[int, int] = (28, 31),
                          out_size: int = 32) -> Preprocessed:
    """Randomization in front of ``model`` (defaults: the CIFAR setting of the source code);
    randomized and differentiable."""
    return Preprocessed(model, lambda x: random_resize_pad(x, sizes, out_size),
                        differentiable=True, randomized=True,
                        name=f"randomization ({sizes[0]}-{sizes[1]} px, pad {out_size})")
