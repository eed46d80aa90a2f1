"""A small VGG-style CIFAR-10 classifier (Simonyan & Zisserman 2015, with the batch norm of
Ioffe & Szegedy 2015) that the book trains itself: a classifier of another architecture than
the pretrained CIFAR ResNets, so it can serve as a black-box surrogate (Chapter 4: the
black-box denoisers of denoised smoothing, Salman et al. 2020, are trained through it and never
through a ResNet) and as a second architecture for Chapter 5's maps.

The network: stages of ``convs`` 3x3 convolutions (no bias) with BatchNorm and ReLU, each
stage ending in a 2x2 max-pool (widths 32, 64, 128 by default: 32 -> 16 -> 8 -> 4 pixels), then
the flattened 4x4 feature maps into one linear layer.  It takes [0, 1] images; the CIFAR-10
mean and std normalisation is inside (:class:`~advlab.models.wrappers.Normalized`).  Its
training is :mod:`advlab.training.surrogate`; the committed weights live in
``advlab/resources/surrogates`` (:func:`load_committed`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .committed import Record, load_model, read_manifest, resource_folder
from .wrappers import Normalized

#: Per-channel mean and std of the CIFAR-10 training images (the usual values).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class VGG(nn.Module):
    """``len(widths)`` stages of ``convs`` x (conv3x3-BN-ReLU) then max-pool 2, and a linear
    layer on the flattened maps; takes normalised (N, 3, size, size) images."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128), convs: int = 2,
                 num_classes: int = 10, size: int = 32):
        super().__init__()
        if not widths or min(widths) < 1 or convs < 1 or size % 2 ** len(widths):
            raise ValueError(f"VGG needs widths >= 1, convs >= 1 and a size divisible by "
                             f"2^stages, got widths={widths}, convs={convs}, size={size}")
        layers: list[nn.Module] = []
        cin = 3
        for w in widths:
            for _ in range(convs):
                layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                           nn.ReLU(inplace=True)]
                cin = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.size = size
        self.classifier = nn.Linear(cin * (size // 2 ** len(widths)) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.size, self.size):
            raise ValueError(f"expected a batch (N, 3, {self.size}, {self.size}), got "
                             f"{tuple(x.shape)}")
        return self.classifier(self.features(x).flatten(1))


def vgg_cifar10(**arch) -> Normalized:
    """An untrained :class:`VGG` (``arch``: its keyword arguments) behind the CIFAR-10
    normalisation, so it takes [0, 1] images."""
    return Normalized(VGG(**arch), CIFAR10_MEAN, CIFAR10_STD)


# --------------------------------------------------------------------------- committed weights
RESOURCE_DIR = "surrogates"


def resource_dir() -> Path:
    """``advlab/resources/surrogates`` (where the committed surrogate classifiers live)."""
    return resource_folder(RESOURCE_DIR)


def manifest() -> dict[str, Record]:
    """The committed surrogates, by name (empty when none is committed)."""
    return read_manifest(resource_dir())


def load_committed(name: str = "vgg-cifar10") -> Normalized:
    """The committed surrogate ``name`` (float16 on disk, float32 in eval mode on the CPU,
    taking [0, 1] images), its file checked against the manifest's sha256 and read with
    ``weights_only=True``; a name that is not committed is a ValueError naming those that are."""
    return load_model(resource_dir(), manifest(), name, vgg_cifar10, "surrogate")
