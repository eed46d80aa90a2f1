"""The test-time defence of Hwang et al. 2019: a random one-pixel shift (one of the 8
neighbours) of every image in front of a model (their PRM at high lambda)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Preprocessed

PADDINGS = ("replicate", "zeros")
# The 8 one-pixel shifts (dx, dy) of the authors' PixelShift (the null shift left out).
SHIFTS = ((1, 0), (0, 1), (1, 1), (-1, 0), (0, -1), (1, -1), (-1, 1), (-1, -1))


def pixel_shift(x: torch.Tensor, shifts: torch.Tensor | None = None,
                padding: str = "replicate") -> torch.Tensor:
    """Every image moved by one pixel: ``shifts`` (N, 2) integer (dx, dy) in {-1, 0, 1}
    (+dx: right, +dy: down), default one of the 8 neighbours at random per image (global torch
    RNG); the uncovered border is replicated (the authors' default) or zero."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    if shifts is None:
        table = torch.tensor(SHIFTS, device=x.device)
        shifts = table[torch.randint(len(SHIFTS), (n,), device=x.device)]
    shifts = torch.as_tensor(shifts, device=x.device).long()
    if shifts.shape != (n, 2) or shifts.abs().max() > 1:
        raise ValueError(f"shifts must be (N, 2) in {{-1, 0, 1}}, got shape {tuple(shifts.shape)}")
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate" if padding == "replicate" else "constant")
    rows = torch.arange(h, device=x.device) + 1 - shifts[:, 1:2]            # (N, H)
    cols = torch.arange(w, device=x.device) + 1 - shifts[:, 0:1]            # (N, W)
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def shift_defence(model: nn.Module, padding: str = "replicate") -> Preprocessed:
    """The study's gray-box defence: a random one-pixel shift, then ``model`` (a PRM at high
    lambda).  Differentiable, randomized: attack it white-box with ``EOT``."""
    return Preprocessed(model, lambda x: pixel_shift(x, padding=padding), differentiable=True,
                        randomized=True, name=f"one-pixel shift ({padding})")
