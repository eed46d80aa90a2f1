"""Models of the book. Every model takes [0, 1] inputs; normalisation lives inside the wrapper."""
from ..inference import logits, predict
from .imagenet import SPECS as IMAGENET_SPECS, WeightsUnavailableError, load_imagenet_model
from .wrappers import Normalized, prepare_for_inference

__all__ = ["IMAGENET_SPECS", "Normalized", "WeightsUnavailableError", "load_imagenet_model",
           "logits", "predict", "prepare_for_inference"]
