"""Target classes for targeted attacks, in one place: the most likely wrong class
(:func:`runner_up`, the easiest way out), the least likely class (:func:`least_likely`, the
hardest; JSMA's target in Hwang et al.'s code) and a uniformly random wrong class
(:func:`random_targets`, Papernot et al.'s JSMA protocol)."""
from __future__ import annotations

import torch
from torch import nn

from ..inference import logits as fast_logits
from .base import model_device


def random_targets(y: torch.Tensor, n_classes: int = 10, seed: int = 0) -> torch.Tensor:
    """A target label drawn uniformly from the ``n_classes - 1`` classes other than ``y``, for
    every label; seeded with a private generator (independent of the global torch RNG)."""
    y = torch.as_tensor(y)
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"labels must be an integer tensor, got {y.dtype}")
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes to pick a different target, got {n_classes}")
    y = y.detach().cpu().long()
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got values in "
                         f"[{int(y.min())}, {int(y.max())}]")
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, n_classes, y.shape, generator=gen)
    return (y + shift) % n_classes


@torch.no_grad()
def runner_up(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Each image's most likely wrong class (the arg-max of the logits once ``y`` is removed):
    the usual target of a targeted attack that wants the easiest way out.  CPU long tensor."""
    device = model_device(model)
    out = []
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size].to(device)).float()
        logits[torch.arange(len(logits)), y[i:i + batch_size].to(device)] = float("-inf")
        out.append(logits.argmax(1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


def least_likely(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Each image's least likely class (the arg-min of the logits), through the fast inference
    path.  CPU long tensor."""
    return fast_logits(model, x, batch_size).argmin(1)
