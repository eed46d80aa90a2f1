"""Models of the book. Every model takes [0, 1] inputs; normalisation lives inside the wrapper."""
from ..inference import logits, predict
from .cifar import CIFAR_RESNETS, load_cifar_resnet
from .imagenet import SPECS as IMAGENET_SPECS, WeightsUnavailableError, load_imagenet_model
from .wrappers import Normalized, prepare_for_inference

__all__ = ["CIFAR_RESNETS", "IMAGENET_SPECS", "Normalized", "WeightsUnavailableError",
           "load_cifar_resnet", "load_imagenet_model", "logits", "predict", "prepare_for_inference"]
