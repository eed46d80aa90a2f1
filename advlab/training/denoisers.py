"""Training the DnCNN denoisers of denoised smoothing (Salman et al. 2020) and committing them.

All through :func:`advlab.train.fit`, so seeded, resumable and cached by recipe:

* ``mse``: ``|D(x + delta) - x|^2`` (the paper's MSE objective);
* ``stab``: the stability objective, cross-entropy between ``F(D(x + delta))`` and the frozen
  classifier's own label ``f(x).argmax()`` on the clean image.  ``classifiers`` names the
  classifier(s) it is trained through: the classifier being certified (white-box), or
  surrogates that are never the target (black-box; one surrogate drawn per batch, the paper
  alternated them batch by batch).  Stab fine-tunes a trained MSE denoiser (the paper's
  "Stab+MSE").

``delta ~ N(0, sigma^2 I)`` is added to [0, 1] images without clipping, as in certification.
The committed CIFAR-10 recipes have one sigma each, as in the paper.  With several ``sigmas``
each image draws its own sigma from them: one blind denoiser for every noise level (Zhang et
al.'s DnCNN-B; the ImageNet recipes).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import with_overrides
from ..models.committed import as_committed, commit
from ..models.dncnn import Denoised, DnCNN, load_committed, manifest, resource_dir
from ..train import fit, flip_crop_batches

# --------------------------------------------------------------------------- recipes
CIFAR_SIGMAS = (0.12, 0.25, 0.5, 1.0)
IMAGENET_SIGMAS = (0.25, 0.5)
#: ImageNet sample images a denoiser may train on: positions 0, 2, 4 ... of the 975 colour
#: images (sorted by wnid); Chapter 4 certifies only odd positions (see ``imagenet_split``).
IMAGENET_TRAIN_PARITY = 0

_CIFAR_ARCH = dict(depth=17, width=32)
_IMAGENET_ARCH = dict(depth=6, width=16)

#: The CIFAR-10 target (white-box denoisers train through it) and the black-box surrogate
#: (another architecture, trained by the book: :mod:`advlab.training.surrogate`).
CIFAR_TARGET, CIFAR_SURROGATE = "resnet56", "vgg-cifar10"
#: Stab+MSE of the black-box denoisers (through the VGG surrogate, trained on the CPU):
#: epochs and Adam learning rate (cosine schedule).
CIFAR_BB_EPOCHS, CIFAR_BB_LR = 3, 1e-4
#: The sigmas with a black-box denoiser: 0.25 only (CPU time: its 3 epochs took about 22
#: minutes on the shared 2-core machine, other jobs running; the other sigmas are not trained).
CIFAR_BB_SIGMAS = (0.25,)

#: The book's denoisers.  Changing a recipe retrains (the cache key covers every entry).
#: ``init``: the recipe whose trained weights start this one (Stab+MSE; the committed file when
#: it is committed for its recipe, else trained here and rounded through float16 the same way).
#: ``n_train``: training images (CIFAR-10: the first ``n_train`` of the training split, None:
#: all of it, the offline mirror's 20,000; ImageNet: the even-position sample images).
#: ``pad`` (default 0): random horizontal flips and random crops of the image zero-padded by
#: ``pad`` (0: neither).  ``crop``: MSE training on random square crops of that size
#: (ImageNet).  ``schedule`` (default ``step``): the learning rate divided by 10 every
#: ``lr_step`` epochs (the paper's StepLR 30), or ``cosine`` (to 0 over the epochs).
#: CIFAR-10: one denoiser per sigma, ``cifar10-<objective>-<sigma>``, all on the first 10,000
#: training images (the offline mirror's first file): MSE 32 epochs (Adam 1e-3, divided by 10
#: after epochs 11 and 22; trained on a GPU); Stab+MSE white-box through the certified ResNet-56,
#: 10 epochs at a constant 1e-5 (the paper's rate; GPU); Stab+MSE black-box through the VGG
#: surrogate only (never a ResNet: same family, author and data as the target), 3 epochs, Adam
#: 1e-4, cosine (trained on the CPU; sigmas CIFAR_BB_SIGMAS only).  Times and devices in
#: PROVENANCE.md.  A retraining of the MSE denoisers on all 20,000 images with flips and
#: zero-padded crops (12 epochs, cosine) was tried on the CPU and rebuilt worse (sigma 0.25:
#: MSE 0.0121 against 0.0054 on 200 test images), so the first recipe stays.  The ImageNet
#: recipes (blind, over two sigmas) are defined but not committed (see Chapter 4).
RECIPES: dict[str, dict] = {}
for _s in CIFAR_SIGMAS:
    RECIPES[f"cifar10-mse-{_s:g}"] = dict(
        dataset="cifar10", arch=_CIFAR_ARCH, objective="mse", sigmas=(_s,), classifiers=(),
        init=None, epochs=32, batch_size=128, lr=1e-3, lr_step=11, weight_decay=0.0,
        n_train=10_000, crop=None, seed=0)
    RECIPES[f"cifar10-stab-wb-{_s:g}"] = dict(
        dataset="cifar10", arch=_CIFAR_ARCH, objective="stab", sigmas=(_s,),
        classifiers=(CIFAR_TARGET,), init=f"cifar10-mse-{_s:g}", epochs=10, batch_size=128,
        lr=1e-5, lr_step=30, weight_decay=0.0, n_train=10_000, crop=None, seed=0)
for _s in CIFAR_BB_SIGMAS:
    RECIPES[f"cifar10-stab-bb-{_s:g}"] = dict(
        dataset="cifar10", arch=_CIFAR_ARCH, objective="stab", sigmas=(_s,),
        classifiers=(CIFAR_SURROGATE,), init=f"cifar10-mse-{_s:g}", epochs=CIFAR_BB_EPOCHS,
        batch_size=128, lr=CIFAR_BB_LR, lr_step=None, weight_decay=0.0, n_train=10_000,
        crop=None, schedule="cosine", seed=0)
RECIPES.update({
    "imagenet-mse": dict(dataset="imagenet", arch=_IMAGENET_ARCH, objective="mse",
                         sigmas=IMAGENET_SIGMAS, classifiers=(), init=None, epochs=8,
                         batch_size=32, lr=1e-3, lr_step=2, weight_decay=1e-4, n_train=None,
                         crop=48, pad=0, schedule="step", seed=0),
    "imagenet-stab-wb": dict(dataset="imagenet", arch=_IMAGENET_ARCH, objective="stab",
                             sigmas=IMAGENET_SIGMAS, classifiers=("efficientnet_lite0",),
                             init="imagenet-mse", epochs=1, batch_size=16, lr=1e-4, lr_step=1,
                             weight_decay=1e-4, n_train=None, crop=None, pad=0,
                             schedule="step", seed=0),
    "imagenet-stab-bb": dict(dataset="imagenet", arch=_IMAGENET_ARCH, objective="stab",
                             sigmas=IMAGENET_SIGMAS, classifiers=("efficientnet_lite1",),
                             init="imagenet-mse", epochs=1, batch_size=16, lr=1e-4, lr_step=1,
                             weight_decay=1e-4, n_train=None, crop=None, pad=0,
                             schedule="step", seed=0),
})
#: The classifier each dataset's white-box denoiser is for (black-box ones never train on it).
TARGETS = {"cifar10": CIFAR_TARGET, "imagenet": "efficientnet_lite0"}
#: The paper's denoiser recipe (GPU): DnCNN 17 x 64, MSE 90 epochs (Adam 1e-3, StepLR 30),
#: then Stab 20 epochs, one denoiser per sigma on all 50,000 CIFAR-10 training images.
PAPER_ARCH = dict(depth=17, width=64)


def recipe(name: str, **overrides) -> dict:
    """The recipe called ``name`` with overrides (unknown keys or names are a ValueError)."""
    if name not in RECIPES:
        raise ValueError(f"unknown denoiser {name!r}; choose one of {sorted(RECIPES)}")
    cfg = with_overrides(RECIPES[name], overrides, "denoiser recipe keys")
    if cfg["objective"] == "stab" and cfg["dataset"] in TARGETS and not cfg["classifiers"]:
        raise ValueError("the stability objective needs at least one classifier")
    check_recipe(name, cfg)
    if "-stab-bb" in name and TARGETS.get(cfg["dataset"]) in cfg["classifiers"]:
        raise ValueError(f"a black-box denoiser never trains through the target "
                         f"{TARGETS[cfg['dataset']]}, got classifiers {cfg['classifiers']}")
    return cfg


def check_recipe(name: str, cfg: dict) -> None:
    """Raise a one-line ValueError naming the first entry of recipe ``cfg`` that no training
    can use (``epochs=-1`` would otherwise cache an untrained network as trained)."""
    import math

    def whole(key: str, low: int, none_ok: bool = False) -> None:
        v = cfg[key]
        if v is None and none_ok:
            return
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"denoiser {name}: {key} must be a whole number >= {low}"
                             f"{' or null' if none_ok else ''}, got {v!r}")

    def number(key: str, low: float, strict: bool) -> None:
        v = cfg[key]
        ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
              and (v > low if strict else v >= low))
        if not ok:
            raise ValueError(f"denoiser {name}: {key} must be a finite number "
                             f"{'>' if strict else '>='} {low}, got {v!r}")

    for key in ("epochs", "batch_size"):
        whole(key, 1)
    if cfg.get("schedule", "step") not in ("step", "cosine"):
        raise ValueError(f"denoiser {name}: schedule must be step or cosine, got "
                         f"{cfg.get('schedule')!r}")
    whole("lr_step", 1, none_ok=cfg.get("schedule", "step") == "cosine")
    if "pad" in cfg:
        whole("pad", 0)
    whole("n_train", 1, none_ok=True)
    whole("crop", 1, none_ok=True)
    whole("seed", 0)
    number("lr", 0, strict=True)
    number("weight_decay", 0, strict=False)
    sigmas = cfg["sigmas"]
    if (not isinstance(sigmas, (list, tuple)) or not sigmas
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       and math.isfinite(v) and v > 0 for v in sigmas)):
        raise ValueError(f"denoiser {name}: sigmas must be a non-empty list of finite numbers "
                         f"> 0, got {sigmas!r}")
    arch = cfg["arch"]
    if (not isinstance(arch, dict) or set(arch) - {"depth", "width", "channels", "batch_norm"}
            or not isinstance(arch.get("depth"), int) or arch["depth"] < 2
            or not isinstance(arch.get("width"), int) or arch["width"] < 1):
        raise ValueError(f"denoiser {name}: arch must be {{\"depth\": >= 2, \"width\": >= 1}}, "
                         f"got {arch!r}")
    if cfg["objective"] not in ("mse", "stab"):
        raise ValueError(f"denoiser {name}: objective must be mse or stab, got {cfg['objective']!r}")
    if cfg["dataset"] not in ("cifar10", "imagenet"):
        raise ValueError(f"denoiser {name}: dataset must be cifar10 or imagenet, got "
                         f"{cfg['dataset']!r}")


def load_classifier(dataset: str, name: str) -> nn.Module:
    """A frozen classifier by name: a surrogate the book trains itself (``vgg-cifar10``,
    :func:`advlab.training.surrogate.load_surrogate`: the committed one, else trained and
    cached) or a pretrained one (:func:`advlab.models.load_pretrained`)."""
    from .surrogate import RECIPES as SURROGATES
    from .surrogate import load_surrogate
    if name in SURROGATES:
        return load_surrogate(name, allow_training=True)
    from ..models import load_pretrained
    return load_pretrained(name)


# --------------------------------------------------------------------------- losses
def noisy(sigmas: tuple[float, ...]):
    """``augment(x, generator)`` for :func:`fit`: ``x + sigma * N(0, I)``, sigma drawn per image
    from ``sigmas`` (no clipping)."""
    levels = torch.tensor(sigmas, dtype=torch.float32)

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        pick = torch.randint(len(levels), (len(x),), generator=generator, device=generator.device)
        s = levels.to(x.device)[pick.to(x.device)].view(-1, *[1] * (x.dim() - 1))
        eps = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
        return x + s * eps.to(x.device)
    return augment


def mse_loss(denoiser: nn.Module, noisy_x: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The paper's MSE objective: mean squared error between ``D(x + delta)`` and ``x``."""
    return F.mse_loss(denoiser(noisy_x), clean)


def stability_loss(classifiers: list[nn.Module]):
    """The paper's stability objective through frozen ``classifiers`` (in eval mode):
    cross-entropy between ``F(D(x + delta))`` and ``F``'s own label on the clean image ``x``
    (the batch's targets: the clean images, augmented as the inputs were), computed without
    gradients.  With several classifiers, one is drawn per batch (global RNG)."""
    def loss(denoiser: nn.Module, noisy_x: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(len(classifiers), ())) if len(classifiers) > 1 else 0
        with torch.no_grad():
            labels = classifiers[k](clean).argmax(1)
        return F.cross_entropy(classifiers[k](denoiser(noisy_x)), labels)
    return loss


# --------------------------------------------------------------------------- data
def imagenet_split(n_images: int, parity: int) -> torch.Tensor:
    """Positions among the colour sample images with the given parity: even ones (0) train
    denoisers, odd ones (1) are certified, so no certified image was trained on."""
    return torch.arange(parity, n_images, 2)


def training_images(cfg: dict, progress: bool = True):
    """The recipe's training images as an :class:`~advlab.data.ImageSet` and a data id."""
    from ..cache import fingerprint
    from ..data import load_cifar10, load_imagenet_samples
    if cfg["dataset"] == "cifar10":  # the mirror's first file holds the first 10,000
        train = load_cifar10("train", first=cfg["n_train"])
        train = train.subset(torch.arange(min(cfg["n_train"] or len(train), len(train))))
    elif cfg["dataset"] == "imagenet":
        samples = load_imagenet_samples(progress=progress)
        train = samples.subset(imagenet_split(len(samples), IMAGENET_TRAIN_PARITY))
        if cfg["n_train"]:
            train = train.subset(torch.arange(min(cfg["n_train"], len(train))))
    else:
        raise ValueError(f"unknown dataset {cfg['dataset']!r}; choose cifar10 or imagenet")
    return train, fingerprint(train)


def random_crops(x: torch.Tensor, size: int, batch_size: int):
    """Batch source: every epoch, each image once in a random order, as a random
    ``size`` x ``size`` crop (the same crop for input and target)."""
    n, _, h, w = x.shape
    if size > min(h, w):
        raise ValueError(f"crop {size} is larger than the images ({h} x {w})")

    def source(epoch: int, generator: torch.Generator):
        order = torch.randperm(n, generator=generator)
        top = torch.randint(h - size + 1, (n,), generator=generator)
        left = torch.randint(w - size + 1, (n,), generator=generator)
        rows = top[:, None] + torch.arange(size)          # (n, size)
        cols = left[:, None] + torch.arange(size)

        def crops(idx: torch.Tensor) -> torch.Tensor:
            sel = x[idx]                                   # (b, C, H, W)
            sel = sel.gather(2, rows[idx][:, None, :, None].expand(-1, sel.shape[1], -1, w))
            return sel.gather(3, cols[idx][:, None, None, :].expand(-1, sel.shape[1], size, -1))
        return [(c, c) for c in map(crops, order.split(batch_size))]
    return source


# --------------------------------------------------------------------------- training
def train_denoiser(name: str, device=None, progress: bool = True, retrain: bool = False,
                   init_overrides: dict | None = None, **overrides) -> DnCNN:
    """Train the denoiser of recipe ``name`` (see :data:`RECIPES`) with :func:`advlab.train.fit`
    and return it in eval mode; cached under ``$ADVLAB_CACHE/models`` by recipe.  When ``init``
    names a recipe, this one starts from its weights as committed (float16): the committed
    file when it was committed for that recipe and nothing is overridden, else that recipe
    trained here first (with this one's ``arch`` and ``sigmas``, and ``init_overrides``) and
    rounded through float16, so both ways give the same start."""
    from ..config import get_device
    cfg = recipe(name, **overrides)
    device = get_device(device)
    train, data_id = training_images(cfg, progress)
    if cfg["init"]:  # Stab+MSE: start from the trained MSE denoiser (same arch and sigmas)
        inherited = {k: overrides[k] for k in ("arch", "sigmas") if k in overrides}
        init_over = {**inherited, **(init_overrides or {})}
        model = (load_committed(cfg["init"]) if not init_over and committed_for_recipe(cfg["init"])
                 else as_committed(train_denoiser(cfg["init"], device, progress, False,
                                                  **init_over).cpu()))
    else:
        model = lambda: DnCNN(**cfg["arch"])  # noqa: E731
    optim = lambda params: torch.optim.Adam(params, lr=cfg["lr"],  # noqa: E731
                                            weight_decay=cfg["weight_decay"])
    pad = cfg.get("pad", 0)  # recipes without a pad or schedule use none and StepLR
    if cfg["objective"] == "mse":
        data = (random_crops(train.x, cfg["crop"], cfg["batch_size"]) if cfg["crop"]
                else flip_crop_batches(train.x, None, cfg["batch_size"], pad) if pad
                else (train.x, train.x))
        loss = mse_loss
    elif cfg["objective"] == "stab":
        if cfg["crop"]:
            raise ValueError("the stability objective trains on whole images (crop=None)")
        clfs = [load_classifier(cfg["dataset"], c).eval().to(device) for c in cfg["classifiers"]]
        for c in clfs:
            c.requires_grad_(False)
        data = (flip_crop_batches(train.x, None, cfg["batch_size"], pad) if pad
                else (train.x, train.x))
        loss = stability_loss(clfs)
    else:
        raise ValueError(f"unknown objective {cfg['objective']!r}; choose mse or stab")
    return fit(model, data, loss, optim, _schedule(cfg), epochs=cfg["epochs"],
               batch_size=cfg["batch_size"], seed=cfg["seed"], device=device,
               augment=noisy(tuple(cfg["sigmas"])), amp=False, name=f"denoiser-{name}",
               recipe={**cfg, "name": name}, data_id=f"{data_id}:{cfg.get('crop')}:{pad}",
               retrain=retrain, flush_denormal=True, progress=progress)


def _schedule(cfg: dict):
    """The recipe's learning-rate schedule (stepped once per epoch by :func:`fit`)."""
    schedule = cfg.get("schedule", "step")
    if schedule == "step":  # the paper: divided by 10 every 30 epochs
        return lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg["lr_step"]),
                                                           gamma=0.1)
    if schedule == "cosine":
        return lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg["epochs"]))
    raise ValueError(f"unknown schedule {schedule!r}; choose step or cosine")


def committed_for_recipe(name: str) -> bool:
    """Whether denoiser ``name`` is committed, for its current recipe."""
    record = manifest().get(name)
    return record is not None and record.recipe == json.loads(json.dumps(recipe(name)))


def load_denoiser(name: str, device=None, allow_training: bool = False,
                  progress: bool = True) -> DnCNN:
    """The committed denoiser ``name`` (:func:`advlab.models.dncnn.load_committed`) when it was
    committed for the current recipe.  Otherwise: trained (and cached) if ``allow_training``,
    else a FileNotFoundError naming the command that trains it."""
    from ..config import get_device
    if not committed_for_recipe(name):
        if allow_training:
            return train_denoiser(name, device, progress)
        why = "is not committed" if name not in manifest() else "was committed for another recipe"
        raise FileNotFoundError(f"denoiser {name!r} {why}; train it with `advlab train-denoiser "
                                f"{name}` (writes it to {resource_dir()})")
    return load_committed(name).to(get_device(device))


def commit_denoiser(name: str, model: DnCNN, command: str, notes: dict | None = None) -> Path:
    """Write ``model``'s weights as float16 into :func:`resource_dir` and record them in the
    manifest (sha256, recipe, command) and in ``PROVENANCE.md``
    (:func:`advlab.models.committed.commit`)."""
    cfg = recipe(name)
    if cfg["dataset"] == "cifar10":
        data = "CIFAR-10 training split, " + (
            f"first {cfg['n_train']:,} images" if cfg["n_train"]
            else "all images the loader gives (offline mirror `cifar10_train_part{0,1}.npz`: 20,000)")
    else:
        data = ("ImageNet sample images (offline mirror `imagenet-samples/`), the 488 colour "
                "images at even positions (sorted by wnid), Resize 256 + CenterCrop 224"
                + (f", random {cfg['crop']} px crops" if cfg["crop"] else ""))
    if cfg.get("pad", 0):
        data += f", random horizontal flips and random crops with zero padding {cfg['pad']}"
    header = ("# Committed denoisers\n\nSelf-trained DnCNN weights (float16), each reproduced by "
              "its command (`advlab train-denoiser NAME`, seeded; the recipe is "
              "`advlab.training.denoisers.RECIPES` and in `manifest.json`). Loaded with "
              "`weights_only=True` after a sha256 check.\n")
    return commit(resource_dir(), name, model, cfg, command, data, notes, header)


# --------------------------------------------------------------------------- evaluation
def evaluation_images(dataset: str, n_images: int, progress: bool = True):
    """Held-out images to score a denoiser on: ``n_images`` CIFAR-10 test images evenly spread
    over the test set (the mirror's is grouped by class), or the first ``n_images``
    odd-position ImageNet sample images (never trained on)."""
    from ..data import load_cifar10, load_imagenet_samples
    if dataset == "cifar10":
        test = load_cifar10("test")
        step = max(1, len(test) // n_images)
        return test.subset(torch.arange(0, len(test), step)[:n_images])
    samples = load_imagenet_samples(progress=progress)
    return samples.subset(imagenet_split(len(samples), 1 - IMAGENET_TRAIN_PARITY)[:n_images])


@torch.no_grad()
def noisy_accuracy(classifier: nn.Module, denoiser: nn.Module | None, x: torch.Tensor,
                   y: torch.Tensor, sigma: float, seed: int = 0, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``classifier(denoiser(x + sigma * eps))`` (one draw per image, noise
    seeded per image by its position), through the fast inference path."""
    from ..config import per_image_normal
    from ..inference import predict
    model = classifier if denoiser is None else Denoised(denoiser, classifier).eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        eps = per_image_normal(range(seed + i, seed + i + len(xb)), xb.shape[1:])
        correct += int((predict(model, xb + sigma * eps, batch_size, unit_range=False)
                        == y[i:i + batch_size]).sum())
    return correct / max(len(x), 1)


def denoiser_report(name: str, denoiser: nn.Module, n_images: int | None = None,
                    progress: bool = True, device=None) -> dict:
    """Accuracy of the dataset's target classifier under noise at each of the recipe's
    sigmas, without and with ``denoiser``, on held-out images: ``{"sigma=0.25": "12.0% -> 56.0%"}``."""
    cfg = recipe(name)
    n_images = n_images or (500 if cfg["dataset"] == "cifar10" else 100)
    images = evaluation_images(cfg["dataset"], n_images, progress)
    from ..config import get_device
    dev = get_device(device) if device is not None else torch.device("cpu")
    clf = load_classifier(cfg["dataset"], TARGETS[cfg["dataset"]]).eval().to(dev)
    denoiser = denoiser.to(dev).eval()
    bs = 256 if cfg["dataset"] == "cifar10" else 16
    out = {}
    for s in cfg["sigmas"]:
        bare = noisy_accuracy(clf, None, images.x, images.y, s, batch_size=bs)
        den = noisy_accuracy(clf, denoiser, images.x, images.y, s, batch_size=bs)
        out[f"sigma={s}"] = f"{100 * bare:.1f}% -> {100 * den:.1f}%"
    target = TARGETS[cfg["dataset"]]
    return {f"{target} accuracy under noise without -> with this denoiser, one draw on "
            f"{len(images)} held-out images": ", ".join(f"{k}: {v}" for k, v in out.items())}
