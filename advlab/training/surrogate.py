"""Training the book's own CIFAR-10 classifier of another architecture than the pretrained
ResNets (:class:`advlab.models.vgg.VGG`) and committing it: the black-box surrogate of
Chapter 4's denoisers (Salman et al. 2020 train black-box denoisers through surrogates only)
and a second architecture for Chapter 5.

On :func:`advlab.train.fit` (seeded, resumable, cached by recipe): cross-entropy with SGD
(Nesterov momentum 0.9, weight decay 5e-4) and a cosine learning-rate schedule, on all the
CIFAR-10 training images the loader gives (the offline mirror's 20,000) with random flips and
random crops of the image zero-padded by 4 (:func:`advlab.train.flip_crop_batches`).
``advlab train-surrogate`` trains it; it writes the package's resources only with ``--commit``.
"""
from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from ..config import get_device, with_overrides
from ..models.committed import as_committed, commit
from ..models.vgg import load_committed, manifest, resource_dir, vgg_cifar10
from ..train import fit, flip_crop_batches, on_outputs

#: The surrogates, by name (the name :func:`advlab.zoo.load_model` knows).  Changing a recipe
#: retrains (the cache key covers every entry).  ``n_train``: the first ``n_train`` training
#: images (None: all the loader gives); ``pad``: random crops of the image zero-padded by
#: ``pad`` pixels, with random horizontal flips (0: neither).
RECIPES: dict[str, dict] = {
    "vgg-cifar10": dict(dataset="cifar10", arch=dict(widths=(32, 64, 128), convs=2),
                        n_train=None, pad=4, epochs=30, batch_size=128, lr=0.05, momentum=0.9,
                        nesterov=True, weight_decay=5e-4, schedule="cosine", seed=0),
}
COMMAND = "advlab train-surrogate {name} --commit"


def recipe(name: str, **overrides) -> dict:
    """The recipe called ``name`` with overrides (unknown keys or names are a ValueError)."""
    if name not in RECIPES:
        raise ValueError(f"unknown surrogate {name!r}; choose one of {sorted(RECIPES)}")
    return with_overrides(RECIPES[name], overrides, "surrogate recipe keys")


def training_set(cfg: dict):
    """The recipe's CIFAR-10 training images (:class:`~advlab.data.ImageSet`)."""
    from ..data import load_cifar10
    train = load_cifar10("train", first=cfg["n_train"])
    return train.subset(torch.arange(min(cfg["n_train"] or len(train), len(train))))


def train_surrogate(name: str = "vgg-cifar10", device=None, progress: bool = True,
                    retrain: bool = False, **overrides) -> nn.Module:
    """Train the surrogate of recipe ``name`` (see :data:`RECIPES`) with :func:`fit` and
    return it in eval mode (cached under ``$ADVLAB_CACHE/models`` by recipe and data)."""
    from ..cache import fingerprint
    cfg = recipe(name, **overrides)
    if cfg["dataset"] != "cifar10":
        raise ValueError(f"surrogates are CIFAR-10 classifiers, got dataset {cfg['dataset']!r}")
    device = get_device(device)
    train = training_set(cfg)
    data = (flip_crop_batches(train.x, train.y, cfg["batch_size"], cfg["pad"]) if cfg["pad"]
            else (train.x, train.y))
    return fit(lambda: vgg_cifar10(**cfg["arch"]), data, on_outputs(F.cross_entropy),
               lambda p: torch.optim.SGD(p, lr=cfg["lr"], momentum=cfg["momentum"],
                                         nesterov=cfg["nesterov"],
                                         weight_decay=cfg["weight_decay"]),
               _schedule(cfg), epochs=cfg["epochs"], batch_size=cfg["batch_size"],
               seed=cfg["seed"], device=device, amp=False, name=f"surrogate-{name}",
               recipe={**cfg, "name": name}, data_id=f"{fingerprint(train)}:pad{cfg['pad']}",
               retrain=retrain, flush_denormal=True, progress=progress)


def _schedule(cfg: dict):
    if cfg["schedule"] == "cosine":
        return lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cfg["epochs"], 1))
    raise ValueError(f"unknown schedule {cfg['schedule']!r}; choose cosine")


def committed_for_recipe(name: str) -> bool:
    """Whether ``name`` is committed, for its current recipe."""
    record = manifest().get(name)
    return record is not None and record.recipe == json.loads(json.dumps(recipe(name)))


def load_surrogate(name: str = "vgg-cifar10", device=None, allow_training: bool = False,
                   progress: bool = True) -> nn.Module:
    """The committed surrogate ``name`` (sha256-checked, see
    :func:`advlab.models.vgg.load_committed`) when it was committed for the current recipe.
    Otherwise: trained here and cached if ``allow_training`` (then rounded through float16, as
    a committed one would be), else a FileNotFoundError naming the command that trains it."""
    if committed_for_recipe(name):
        return load_committed(name).to(get_device(device))
    if allow_training:
        return as_committed(train_surrogate(name, device, progress))
    why = "is not committed" if name not in manifest() else "was committed for another recipe"
    raise FileNotFoundError(f"surrogate {name!r} {why}; train it with `"
                            f"{COMMAND.format(name=name)}` (writes it to {resource_dir()})")


def accuracy_on_test_set(model: nn.Module, device=None, n_images: int | None = None) -> float:
    """Top-1 accuracy of ``model`` on the CIFAR-10 test images (all 10,000 by default, else
    ``n_images`` evenly spread)."""
    from ..data import load_cifar10
    from ..inference import predict
    test = load_cifar10("test")
    if n_images:
        test = test.subset(torch.arange(0, len(test), max(1, len(test) // n_images))[:n_images])
    dev = get_device(device)
    return float((predict(model.to(dev).eval(), test.x, 500, dev) == test.y).float().mean())



def commit_surrogate(name: str, model: nn.Module, command: str, notes: dict | None = None):
    """Write ``model`` (float16) into :func:`advlab.models.vgg.resource_dir` with its manifest
    entry (sha256, recipe, command) and ``PROVENANCE.md`` section."""
    from ..data import CIFAR10_MIRROR_SHA256
    cfg = recipe(name)
    data = ("CIFAR-10 training split, " + (f"first {cfg['n_train']:,} images" if cfg["n_train"]
                                           else "all the images the loader gives") +
            " (offline mirror: the 20,000 of `cifar10_train_part0.npz`, sha256 "
            f"`{CIFAR10_MIRROR_SHA256['cifar10_train_part0.npz']}`, and "
            "`cifar10_train_part1.npz`, sha256 "
            f"`{CIFAR10_MIRROR_SHA256['cifar10_train_part1.npz']}`)"
            + (f", random horizontal flips and random crops with zero padding {cfg['pad']}"
               if cfg["pad"] else ""))
    header = ("# Committed surrogate classifiers\n\nSelf-trained CIFAR-10 classifiers of another "
              "architecture than the pretrained ResNets (float16 state dicts of "
              "`advlab.models.vgg.vgg_cifar10`, CIFAR-10 normalisation inside, [0, 1] inputs), "
              "each reproduced by its command (`advlab train-surrogate NAME --commit`, seeded; "
              "the recipe is `advlab.training.surrogate.RECIPES` and in `manifest.json`). "
              "Loaded with `weights_only=True` after a sha256 check.\n")
    return commit(resource_dir(), name, model, cfg, command, data, notes, header)
