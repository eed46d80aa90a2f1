"""Model wrappers shared by every chapter: every advlab model takes inputs in [0, 1]."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class Normalized(nn.Module):
    """Apply per-channel ``(x - mean) / std`` and then ``model``, so callers pass [0, 1] images.

    Keeping the normalisation inside the model means attacks, noise and blur all act in the
    image space a person sees, and an epsilon of 8/255 means 8 grey levels.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std):
            raise ValueError("mean and std must have one entry per channel")
        if min(std) <= 0:
            raise ValueError("std entries must be positive")
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"expected a batch (N, {self.mean.shape[1]}, H, W), got {tuple(x.shape)}")
        return self.model((x - self.mean) / self.std)


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """eval mode, no parameter gradients, channels_last on the target device."""
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(memory_format=torch.channels_last)


@torch.inference_mode()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 128,
            device: torch.device | None = None, amp: bool = True) -> torch.Tensor:
    """Arg-max labels of ``model`` on ``x`` in batches; returns a CPU long tensor.

    ``amp``: float16 autocast on CUDA.  Turn it off for images that sit on a decision
    boundary (attacks that stop as soon as the label flips), where float16 may flip it back.
    """
    device = device or next(model.parameters()).device
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            out.append(model(xb).argmax(1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)
