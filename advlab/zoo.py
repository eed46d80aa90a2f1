"""Every model the book uses, by name: :func:`load_model`.

* classifiers others trained (``advlab.models.load_pretrained``): the CIFAR-10 ResNets
  ``resnet20`` ... ``resnet110``, the ImageNet models ``efficientnet_lite0``, ``resnet50``,
  ``inception_v3`` and the surrogate ``efficientnet_lite1``;
* models the book trains itself: ``lenet`` (MNIST, trained on first use and cached), the
  committed CIFAR-10 surrogate ``vgg-cifar10`` (a small VGG with batch norm, another
  architecture than the ResNets: :mod:`advlab.training.surrogate`), the committed denoisers
  (``cifar10-mse-0.25``, ``cifar10-stab-wb-0.5`` ..., see
  :data:`advlab.training.denoisers.RECIPES`) and the PRMs (``prm-resnet20-0.9``: the
  shipped autoencoder trained at lambda 0.9 in front of ResNet-20).

``load_model(name, device)`` returns the model in eval mode on ``device`` with frozen weights
(channels_last where that is the fast layout); an unknown name is a ValueError that lists the
known ones.  :func:`load_imagenet_for` gives the sample images as an ImageNet model expects them.
"""
from __future__ import annotations

from torch import nn

from .config import get_device
from .data import ImageSet, load_imagenet_samples
from .models import CIFAR_RESNETS, IMAGENET_SPECS, load_pretrained, prepare_for_inference
from .models.prm import load_prm, shipped_prms, trained_lambdas

#: Where each data set's certified target and white-box denoisers come from.
DEFAULT_TARGETS = {"mnist": "lenet", "cifar10": "resnet56", "imagenet": "efficientnet_lite0"}
PRETRAINED = (*CIFAR_RESNETS, *IMAGENET_SPECS, "efficientnet_lite1")


def _prm_names() -> list[str]:
    return [f"prm-{clf}-{lam:g}" for clf in shipped_prms() for lam in trained_lambdas(clf)]


def _surrogate_names() -> list[str]:
    from .training.surrogate import RECIPES
    return sorted(RECIPES)


def _denoiser_names() -> list[str]:
    from .training.denoisers import RECIPES
    return sorted(RECIPES)


def model_names(dataset: str | None = None) -> list[str]:
    """Every name :func:`load_model` knows; with ``dataset`` (mnist, cifar10, imagenet), only
    the models that take that data set's images."""
    names = [*PRETRAINED, "lenet", *_surrogate_names(), *_denoiser_names(), *_prm_names()]
    return names if dataset is None else [n for n in names if dataset_of(n) == dataset]


def check_model_name(name: str, dataset: str | None = None, classifier: bool = False) -> str:
    """``name`` when :func:`load_model` knows it (and, with ``dataset``, it takes that data
    set's images; with ``classifier``, it is no denoiser); else a one-line ValueError naming
    the models that would do.  Settings validation calls it, so a mistyped model fails before
    any work."""
    if dataset is not None and dataset not in DEFAULT_TARGETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(DEFAULT_TARGETS)}")
    known = model_names(dataset)
    if classifier:
        known = [n for n in known if n not in _denoiser_names()]
    if name not in known:
        what = " ".join(w for w in (dataset, "classifier" if classifier else "model") if w)
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(known)}")
    return name


def dataset_of(name: str) -> str:
    """The data set a model of :func:`model_names` takes: mnist, cifar10 or imagenet."""
    if name == "lenet":
        return "mnist"
    if name in CIFAR_RESNETS or name in _surrogate_names() or name.startswith(("cifar10-", "prm-")):
        return "cifar10"
    if name in IMAGENET_SPECS or name == "efficientnet_lite1" or name.startswith("imagenet-"):
        return "imagenet"
    raise ValueError(_unknown(name))


def _unknown(name: str) -> str:
    return f"unknown model {name!r}; known: {', '.join(model_names())}"


def load_model(name: str, device=None, *, progress: bool = True, **options) -> nn.Module:
    """The model called ``name`` in eval mode on ``device`` (default: CUDA when available).

    ``options``: ``lenet`` takes recipe overrides (``epochs=1``, ``seed=1``: another LeNet,
    trained and cached on first use); a PRM takes ``lam`` (the mixing weight, default the
    lambda it was trained at).  Pretrained classifiers, surrogates, denoisers and PRMs take none.
    """
    dev = get_device(device)
    if name == "lenet":
        from .training.lenet import trained_lenet
        return trained_lenet(dev, progress=progress, **options)
    if name in PRETRAINED:
        _no_options(name, options)
        return prepare_for_inference(load_pretrained(name), dev)
    if name in _surrogate_names():
        _no_options(name, options)
        from .training.surrogate import load_surrogate
        return prepare_for_inference(load_surrogate(name), dev)
    if name in _denoiser_names():
        _no_options(name, options)
        from .training.denoisers import load_denoiser
        return prepare_for_inference(load_denoiser(name), dev)
    if name.startswith("prm-"):
        _, clf, trained_at = name.split("-", 2)
        if name not in _prm_names():
            raise ValueError(f"no shipped PRM {name!r}; shipped: {', '.join(_prm_names())}")
        lam = options.pop("lam", float(trained_at))
        _no_options(name, options)
        classifier = load_pretrained(clf)
        return prepare_for_inference(load_prm(classifier, clf, lam, float(trained_at)), dev)
    raise ValueError(_unknown(name))


def _no_options(name: str, options: dict) -> None:
    if options:
        raise ValueError(f"model {name!r} takes no options, got {sorted(options)}")


def load_imagenet_for(model_name: str, limit: int | None = None, colour_only: bool = True,
                      progress: bool = True) -> ImageSet:
    """The sample images preprocessed as ImageNet model ``model_name`` expects (its resize and
    centre crop)."""
    if model_name not in IMAGENET_SPECS:
        raise ValueError(f"unknown ImageNet model {model_name!r}; choose one of "
                         f"{sorted(IMAGENET_SPECS)}")
    spec = IMAGENET_SPECS[model_name]
    return load_imagenet_samples(colour_only=colour_only, limit=limit, resize=spec.resize,
                                 crop=spec.crop, progress=progress)
