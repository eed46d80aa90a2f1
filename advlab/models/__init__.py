"""Models of the book. Every model takes [0, 1] inputs; normalisation lives inside the wrapper."""
from ..inference import logits, predict
from .cifar import CIFAR_RESNETS, load_cifar_resnet
from .imagenet import SPECS as IMAGENET_SPECS
from .imagenet import WeightsUnavailableError, load_imagenet_model
from .wrappers import Normalized, prepare_for_inference

__all__ = ["CIFAR_RESNETS", "IMAGENET_SPECS", "Normalized", "WeightsUnavailableError",
           "load_cifar_resnet", "load_imagenet_model", "load_pretrained", "logits", "predict",
           "prepare_for_inference"]


def load_pretrained(name: str):
    """A pretrained classifier that someone else trained, by name, in eval mode, taking [0, 1]
    images: the CIFAR-10 ResNets (``resnet20`` ... ``resnet110``), the ImageNet models
    (``efficientnet_lite0``, ``resnet50``, ``inception_v3``) and ``efficientnet_lite1`` (only a
    black-box surrogate).  Models the book trains itself are in :mod:`advlab.zoo`."""
    from .imagenet import _efficientnet_lite
    if name in CIFAR_RESNETS:
        return load_cifar_resnet(name)
    if name in IMAGENET_SPECS:
        return load_imagenet_model(name)
    if name == "efficientnet_lite1":
        return _efficientnet_lite("lite1")
    raise ValueError(f"unknown pretrained model {name!r}; choose one of "
                     f"{sorted([*CIFAR_RESNETS, *IMAGENET_SPECS, 'efficientnet_lite1'])}")
