"""DnCNN denoisers (Zhang et al. 2017) for denoised smoothing (Salman, Sun, Yang, Kapoor &
Kolter 2020, "Denoised Smoothing: A Provable Defense for Pretrained Classifiers"), and the
committed weights the book ships (``advlab/resources/denoisers``).

The network is the one of the paper's code (microsoft/denoised-smoothing, ``archs/dncnn.py``):
a 3x3 convolution with bias and a ReLU, ``depth - 2`` blocks of 3x3 convolution (no bias),
BatchNorm (eps 1e-4) and ReLU, a last 3x3 convolution to the image channels (no bias), and the
residual output ``x - net(x)``: the network predicts the noise.  Convolutions are initialised
orthogonally and the last one at zero, so an untrained DnCNN is the identity.  The paper uses
depth 17 and width 64 (0.56 M parameters).  One deviation: BatchNorm's running-average momentum
is PyTorch's 0.1, not the code's 0.95 (which keeps almost only the last batch's statistics for
evaluation).  Training is :mod:`advlab.training.denoisers`.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import init

from .committed import MANIFEST, Record, load_model, read_manifest, resource_folder  # noqa: F401


class DnCNN(nn.Module):
    """``x - net(x)`` with ``net`` = conv-ReLU, (depth - 2) x conv-BN-ReLU, conv (see the
    module docstring).  Takes and returns images of ``channels`` channels, any size."""

    def __init__(self, depth: int = 17, width: int = 64, channels: int = 3,
                 batch_norm: bool = True):
        super().__init__()
        if depth < 2 or width < 1 or channels < 1:
            raise ValueError(f"DnCNN needs depth >= 2, width >= 1 and channels >= 1, got "
                             f"depth={depth}, width={width}, channels={channels}")
        self.depth, self.width, self.channels = depth, width, channels
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(width, eps=1e-4)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, channels, 3, padding=1, bias=False))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init.orthogonal_(m.weight)
                if m.bias is not None:
                    init.zeros_(m.bias)
        init.zeros_(self.net[-1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected a batch (N, {self.channels}, H, W), got {tuple(x.shape)}")
        return x - self.net(x)


class Denoised(nn.Module):
    """``classifier(denoiser(x))``: the base classifier of denoised smoothing (one graph, so
    the fast inference path exports and runs both at once)."""

    def __init__(self, denoiser: nn.Module, classifier: nn.Module):
        super().__init__()
        self.denoiser, self.classifier = denoiser, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.denoiser(x))


# --------------------------------------------------------------------------- committed weights
RESOURCE_DIR = "denoisers"
DenoiserRecord = Record  # a committed denoiser: file, sha256, recipe, command


def resource_dir() -> Path:
    """``advlab/resources/denoisers`` (where committed denoisers live)."""
    return resource_folder(RESOURCE_DIR)


def manifest() -> dict[str, Record]:
    """The committed denoisers, by recipe name (empty when none is committed)."""
    return read_manifest(resource_dir())


def load_committed(name: str) -> DnCNN:
    """The committed denoiser ``name`` (float16 on disk, float32 in eval mode on the CPU), its
    file checked against the manifest's sha256 and read with ``weights_only=True``; a name that
    is not committed is a ValueError naming the committed ones."""
    return load_model(resource_dir(), manifest(), name, DnCNN, "denoiser")
