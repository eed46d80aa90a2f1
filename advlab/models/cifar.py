"""CIFAR-10 ResNets of He et al. 2016 (Section 4.2) with the pretrained weights of
akamaster/pytorch_resnet_cifar10.

The network: a 3x3 convolution to 16 channels, three stages of ``n`` basic blocks with 16, 32
and 64 channels (the first block of stages 2 and 3 halves the resolution), global average
pooling and a linear layer; depth ``6n + 2``.  Shortcuts that change the shape are "option A":
subsample by 2 and zero-pad the new channels, so they have no parameters.  Module names match
that repository's checkpoints (after stripping DataParallel's ``module.`` prefix).  Those
checkpoints were trained on inputs normalised with the ImageNet mean and std, so the loader
wraps the network in :class:`Normalized` with those values and it takes [0, 1] images.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import cache_root, models_root
from .imagenet import IMAGENET_MEAN, IMAGENET_STD, WeightsUnavailableError
from .wrappers import Normalized

#: The repository's checkpoints at a fixed commit (the one the offline mirror was taken from),
#: so that a later push cannot change what a reader downloads.
WEIGHTS_COMMIT = "d5489e8995e81e91ce6b1d69dcc98ad579b0b153"
WEIGHTS_URL = ("https://github.com/akamaster/pytorch_resnet_cifar10/raw/" + WEIGHTS_COMMIT
               + "/pretrained_models/{}")


@dataclass(frozen=True)
class CifarResNetSpec:
    blocks: int              # basic blocks per stage: depth = 6 * blocks + 2
    file: str                # checkpoint name; its suffix is the first 8 hex digits of the sha256
    sha256: str | None       # full sha256, where a copy was at hand to compute it
    reported_top1: float     # the repository's test accuracy (100 - its reported error), percent

    @property
    def sha256_prefix(self) -> str:
        return self.file.rsplit("-", 1)[1].removesuffix(".th")


CIFAR_RESNETS = {
    "resnet20": CifarResNetSpec(3, "resnet20-12fca82f.th",
                                "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8", 91.73),
    "resnet32": CifarResNetSpec(5, "resnet32-d509ac18.th",
                                "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850", 92.63),
    "resnet44": CifarResNetSpec(7, "resnet44-014dd654.th",
                                "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4", 93.10),
    "resnet56": CifarResNetSpec(9, "resnet56-4bfd9763.th",
                                "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367", 93.39),
    # No copy of this file was at hand offline, so its full sha256 is unknown: only the prefix
    # its name carries is checked (said in the error when it does not match).
    "resnet110": CifarResNetSpec(18, "resnet110-1d1ed7c2.th", None, 93.68),
}


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: keep every second pixel and zero-pad ``pad`` channels on each side."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a ReLU between them, plus the shortcut, then a ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes_shape = stride != 1 or in_planes != planes
        self.shortcut = ZeroPadShortcut((planes - in_planes) // 2) if changes_shape else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs, taking normalised images; see the module docstring."""

    #: The input it was trained on (checked by :func:`advlab.inputs.check_images`).
    input_shape = (3, 32, 32)

    def __init__(self, blocks: int, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            layers = [BasicBlock(in_planes, planes, stride)]
            layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_planes = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def cifar_resnet(name: str = "resnet56") -> CifarResNet:
    """An untrained CIFAR ResNet (``resnet20`` ... ``resnet110``), without normalisation."""
    return CifarResNet(_spec(name).blocks)


def _spec(name: str) -> CifarResNetSpec:
    if name not in CIFAR_RESNETS:
        raise ValueError(f"unknown CIFAR ResNet {name!r}; choose one of {sorted(CIFAR_RESNETS)}")
    return CIFAR_RESNETS[name]


def _verify(path: Path, spec: CifarResNetSpec) -> None:
    """The full sha256 where it is known, else the prefix that the file name carries."""
    from ..download import ChecksumError, file_digest, verify
    if spec.sha256 is not None:
        verify(path, spec.sha256)
    elif not (digest := file_digest(path)).startswith(spec.sha256_prefix):
        raise ChecksumError(f"{path}: sha256 {digest} does not start with {spec.sha256_prefix}, "
                            "the only part of its digest that is published (its file name); "
                            "the file is corrupt or not the official one (delete it to download "
                            "it again)")


def cifar_weights_path(name: str = "resnet56", download: bool = True) -> Path:
    """The verified checkpoint of ``name``: ``$ADVLAB_MODELS/cifar10/``, then
    ``$ADVLAB_CACHE/models/``, then a download of the official file into the latter."""
    spec = _spec(name)
    candidates = ([models_root() / "cifar10" / spec.file] if models_root() is not None else [])
    candidates.append(cache_root() / "models" / spec.file)
    for path in candidates:
        if path.exists():
            _verify(path, spec)
            return path
    url = WEIGHTS_URL.format(spec.file)
    tried = [str(p) for p in candidates]
    if download:
        from ..download import download as fetch
        target = candidates[-1]
        tried.append(url)
        try:  # retried, resumed, verified (full sha256, else the name's prefix), then renamed
            fetch(url, target, sha256=spec.sha256, sha256_prefix=spec.sha256_prefix,
                  progress=False)
        except (OSError, ValueError) as err:
            raise WeightsUnavailableError(_not_found(name, spec, tried, f"download failed: {err}")) from err
        return target
    raise WeightsUnavailableError(_not_found(name, spec, tried, f"download=True fetches {url}"))


def _not_found(name: str, spec: CifarResNetSpec, tried: list[str], hint: str) -> str:
    return "\n".join([f"pretrained CIFAR-10 {name} weights not found. Looked in:"]
                     + [f"  - {t}" for t in tried]
                     + [f"Set ADVLAB_MODELS to a folder holding 'cifar10/{spec.file}', or allow "
                        f"the download ({hint})."])


def load_cifar_resnet(name: str = "resnet56", download: bool = True) -> nn.Module:
    """A pretrained CIFAR-10 ResNet in eval mode that takes [0, 1] RGB input (N, 3, 32, 32)."""
    spec = _spec(name)
    path = cifar_weights_path(name, download)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = CifarResNet(spec.blocks)
    net.load_state_dict(state)
    return Normalized(net, IMAGENET_MEAN, IMAGENET_STD).eval()
