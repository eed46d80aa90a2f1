"""Chapter 4: randomized smoothing certification (Cohen et al. 2019) and denoised smoothing
(Salman et al. 2020), on CIFAR-10 and on the ImageNet sample images.

For each classifier configuration (no denoiser; the MSE denoiser; a black-box denoiser trained
through a surrogate of another architecture only, at the sigmas it was trained for; a
white-box denoiser trained through the certified classifier) and noise sigma with a committed
denoiser (:func:`not_trained` lists the pairs left out: no row, never a zero), Cohen et al.'s
CERTIFY runs on the same CIFAR-10 test
images (:func:`advlab.data.first_per_class`: the first images of every class, the same from the
offline mirror and from the official download), one cached piece per image.  The tables give
the certified accuracy per sigma at the source study's radii with Clopper-Pearson intervals over
the images, flag every smoothed classifier that answers one class for most images (a
*collapse*: it "certifies" that class's share of the images out to the radius cap), and take
the source study's best over sigma only over the rows that did not collapse.  Beside them: the
one-draw accuracy through each denoiser (``advlab.training.denoisers.noisy_accuracy``); the
adaptive check (SmoothAdv's L2 PGD on the smoothed classifier, Salman et al. 2019) on every
certified image; an ImageNet demonstration; the figures' data; the throughput of the batched
certification against the reference code's per-image loop.

Deviations from the source study's protocol (details in :data:`PROTOCOL_NOTES`): ResNet-56
instead of ResNet-110 as the CIFAR-10 target; EfficientNet-Lite0 offline instead of ResNet-50
on ImageNet, on the sample images; the book's own DnCNN denoisers (their recipes in
:mod:`advlab.training.denoisers`); fewer images and noise samples in the ``full`` profile, which
must run on two CPU cores (the ``paper`` profile has the source study's).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from kornia.filters import GaussianBlur2d
from torch import nn
from tqdm import tqdm

from .. import attacks as atk
from .. import plots
from ..chapter import Chapter, ChapterResults, RunContext, Settings, stage
from ..config import RunInfo, per_image_normal
from ..data import CIFAR10_CLASSES, ImageSet, first_per_class, load_cifar10
from ..defences.base import ABSTAIN, Undefended
from ..defences.smoothing import (
    Certificates,
    Smooth,
    certified_accuracy,
    max_certifiable_radius,
    reference_sample_noise,
)
from ..inference import backend_name, predict
from ..metrics import clopper_pearson_ci
from ..models import IMAGENET_SPECS
from ..report import human, make_table
from ..training.denoisers import IMAGENET_TRAIN_PARITY, imagenet_split, noisy_accuracy, recipe
from ..zoo import DEFAULT_TARGETS, check_model_name, load_imagenet_for, model_names

#: The certified CIFAR-10 classifier (the white-box denoisers are trained through it).
TARGET = DEFAULT_TARGETS["cifar10"]
#: The black-box denoisers' surrogate: a classifier of another architecture, trained by the
#: book on other data than the target's checkpoints (``advlab.zoo``).
SURROGATE = "vgg-cifar10"
RADII = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
#: The one-draw table's baseline that needs no training: a Gaussian blur of the noisy image,
#: the best of these widths (pixels) on the same images (a choice that favours the baseline).
BLUR, BLUR_WIDTHS = "Gaussian blur (no training)", (0.5, 1.0, 1.5)
#: Configurations and the denoiser each uses at sigma ``s`` (``None``: no denoiser).
CONFIGS = {"no denoiser": None, "mse": "cifar10-mse-{s:g}", "black-box": "cifar10-stab-bb-{s:g}",
           "white-box": "cifar10-stab-wb-{s:g}"}
NUM_CLASSES = {"cifar10": 10, "imagenet": 1000}
#: A smoothed classifier that returns one class for more than this share of the images is
#: flagged as collapsed (and left out of the best-over-sigma table).
COLLAPSE_SHARE = 0.5
#: ImageNet: the colour sample images certified (odd positions; even ones may train denoisers).
IMAGENET_POOL = 487

# The source study's tables (certified accuracy, %, best over sigma), quoted.  CIFAR-10 from the
# paper's full table, whose brackets give the clean accuracy of the sigma that won; Cohen et
# al.'s noise-trained ResNet-110 row as the paper quotes it.
_R = [f"{r:g}" for r in RADII]
SOURCE_TABLES = {
    "cifar10": pd.DataFrame([
        ("no denoiser", 7, 3, 0, 0, 0, 0), ("black-box", 45, 20, 15, 13, 11, 10),
        ("white-box", 56, 41, 28, 19, 16, 13),
        ("Cohen et al. noise-trained (quoted)", 59, 45, 31, 21, 18, 13),
    ], columns=["config", *_R]).set_index("config"),
    "imagenet": pd.DataFrame([
        ("no denoiser", 32, 4, 2, 0, 0, 0), ("black-box", 48, 31, 19, 12, 7, 4),
        ("white-box", 50, 33, 20, 14, 11, 6),
    ], columns=["config", *_R]).set_index("config"),
}
SOURCE_CLEAN_CIFAR = pd.DataFrame([
    ("no denoiser", 10, 9, 9, 16, 16, 16), ("black-box", 81, 68, 21, 21, 16, 16),
    ("white-box", 72, 62, 62, 44, 42, 44),
    ("Cohen et al. noise-trained (quoted)", 77, 77, 65, 65, 45, 45),
], columns=["config", *_R]).set_index("config")
SOURCE_MODELS = {"cifar10": "ResNet-110", "imagenet": "ResNet-50"}

PROTOCOL_NOTES = (
    "CIFAR-10 target: ResNet-56 (the largest pretrained CIFAR ResNet in the mirror; the source "
    "study's ResNet-110 checkpoint is not obtainable offline). Denoisers: the committed DnCNNs, "
    "one per sigma (recipes, data and training in advlab/resources/denoisers/PROVENANCE.md); the "
    "black-box ones are trained through the surrogate(s) their recipe names, never the target. "
    "Images: the first k test images of every class (advlab.data.first_per_class, ids "
    "class*100000 + rank; the source study: every 20th image, 500). CERTIFY: alpha = 0.001 as "
    "in the source study; N0, N, sigmas and images per profile in the settings (the source "
    "study and the paper profile: N0 = 100, N = 10,000). ImageNet: "
    "EfficientNet-Lite0 offline on sample images at odd positions of the 975 colour images, no "
    "denoiser, a demonstration only.")


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Ch04Settings(Settings):
    """CIFAR-10 certification: ``per_class`` test images of every class, each configuration of
    ``configs`` at each of ``sigmas``, CERTIFY with ``n0``, ``n``, ``alpha``; ``batch_size``
    noise samples per forward pass.  ``onedraw_per_class``, ``onedraw_sigmas``: the one-draw
    accuracy through every denoiser.  ``imagenet_*``: the ImageNet demonstration (0 images:
    none).  ``attack_*``: SmoothAdv (L2 PGD with ``attack_steps`` steps and ``attack_samples``
    noise draws per step) on ``attack_config`` at ``attack_sigma``, then PREDICT with
    ``attack_predict_n`` samples.  ``example_images``, ``hist_n``: the figures.
    ``throughput_n``: N of the throughput comparison (0: none)."""

    per_class: int = stage(10, "cifar", "attack", "figures")
    sigmas: tuple[float, ...] = stage((0.25, 0.5, 1.0), "cifar")
    configs: tuple[str, ...] = stage(("no denoiser", "black-box", "white-box"), "cifar")
    n0: int = stage(100, "cifar")
    n: int = stage(500, "cifar")
    alpha: float = 0.001
    batch_size: int = 1000
    onedraw_per_class: int = stage(50, "onedraw")
    onedraw_sigmas: tuple[float, ...] = stage((0.12, 0.25, 0.5, 1.0), "onedraw")
    imagenet_model: str = stage("efficientnet_lite0", "imagenet")
    imagenet_images: int = stage(50, "imagenet")
    imagenet_sigmas: tuple[float, ...] = stage((0.25,), "imagenet")
    imagenet_n0: int = stage(20, "imagenet")
    imagenet_n: int = stage(100, "imagenet")
    imagenet_batch_size: int = stage(100, "imagenet")
    attack_config: str = stage("white-box", "attack")
    attack_sigma: float = stage(0.25, "attack")
    attack_eps: tuple[float, ...] = stage((0.25,), "attack")
    attack_steps: int = stage(20, "attack")
    attack_samples: int = stage(2, "attack")
    attack_predict_n: int = stage(200, "attack")
    example_images: int = stage(4, "figures")
    hist_n: int = stage(500, "figures")
    throughput_n: int = stage(500, "throughput")

    def check(self) -> None:
        req = self.require
        req(1 <= self.per_class <= 1000, "per_class must be in 1..1000 (CIFAR-10 test images "
                                         "of each class)")
        req(len(self.sigmas) > 0 and min(self.sigmas) > 0, "sigmas must be positive noise levels")
        req(len(set(self.sigmas)) == len(self.sigmas), "sigmas must be distinct")
        req(len(self.configs) > 0 and set(self.configs) <= set(CONFIGS)
            and len(set(self.configs)) == len(self.configs),
            f"configs must be distinct names of {list(CONFIGS)}")
        req(1 <= self.n0 <= self.n, "need 1 <= n0 <= n (selection, then estimation samples)")
        req(0 < self.alpha < 1, "alpha must lie in (0, 1)")
        req(self.batch_size >= 1 and self.imagenet_batch_size >= 1, "batch sizes must be >= 1")
        req(0 <= self.onedraw_per_class <= 1000, "onedraw_per_class must be in 0..1000")
        req(all(s > 0 for s in self.onedraw_sigmas), "onedraw_sigmas must be positive")
        _require_model(self, self.imagenet_model, "imagenet")
        req(self.imagenet_model in IMAGENET_SPECS,
            f"imagenet_model must be one of {sorted(IMAGENET_SPECS)} (the ImageNet models "
            "with a known preprocessing)")
        req(0 <= self.imagenet_images <= IMAGENET_POOL,
            f"imagenet_images must be in 0..{IMAGENET_POOL} (odd-position colour sample images)")
        req(len(self.imagenet_sigmas) > 0 and min(self.imagenet_sigmas) > 0,
            "imagenet_sigmas must be positive")
        req(1 <= self.imagenet_n0 <= self.imagenet_n, "need 1 <= imagenet_n0 <= imagenet_n")
        req(self.attack_config in self.configs, "attack_config must be one of configs")
        req(self.attack_sigma in self.sigmas, "attack_sigma must be one of sigmas (the attacked "
                                              "images are split by their certificate)")
        req(has_denoiser(self.attack_config, self.attack_sigma),
            f"attack_config {self.attack_config!r} has no denoiser at attack_sigma "
            f"{self.attack_sigma:g} (not trained)")
        req(len(self.attack_eps) > 0 and min(self.attack_eps) > 0, "attack_eps must be positive")
        req(self.attack_steps >= 1 and self.attack_samples >= 1 and self.attack_predict_n >= 1,
            "attack_steps, attack_samples and attack_predict_n must be >= 1")
        req(1 <= self.example_images <= 10 * self.per_class,
            "example_images must be in 1..10 * per_class")
        req(self.hist_n >= 1 and self.throughput_n >= 0, "hist_n >= 1 and throughput_n >= 0")

    @property
    def n_images(self) -> int:
        return 10 * self.per_class

    @property
    def pairs(self) -> list[tuple[str, float]]:
        """The (configuration, sigma) pairs certified: those with a committed denoiser."""
        return [(c, sg) for c in self.configs for sg in self.sigmas if has_denoiser(c, sg)]


def _require_model(settings: Settings, name: str, dataset: str) -> None:
    """``advlab.zoo.check_model_name`` (a classifier of ``dataset``) as a settings error, so a
    mistyped model fails in validation, before any work."""
    try:
        check_model_name(name, dataset, classifier=True)
    except ValueError as e:
        settings.require(False, str(e))


# --------------------------------------------------------------------------- data and models
def cifar_images(per_class: int) -> tuple[ImageSet, torch.Tensor]:
    """The first ``per_class`` CIFAR-10 test images of every class and their ids
    (:func:`advlab.data.first_per_class`: the same images from the mirror and the download)."""
    return first_per_class(load_cifar10("test"), per_class)


def imagenet_images(model: str, n: int, progress: bool = True) -> tuple[ImageSet, torch.Tensor]:
    """The first ``n`` colour sample images at odd positions (no denoiser trains on them),
    preprocessed for ``model``, and their positions among the colour images (the ids)."""
    if not 1 <= n <= IMAGENET_POOL:
        raise ValueError(f"n must be in 1..{IMAGENET_POOL}, got {n}")
    samples = load_imagenet_for(model, progress=progress)
    ids = imagenet_split(len(samples), 1 - IMAGENET_TRAIN_PARITY)[:n]
    return samples.subset(ids), ids


def denoiser_name(config: str, sigma: float) -> str | None:
    """The committed denoiser of a configuration at ``sigma`` (``None``: no denoiser)."""
    if config not in CONFIGS:
        raise ValueError(f"unknown configuration {config!r}; choose one of {list(CONFIGS)}")
    pattern = CONFIGS[config]
    return None if pattern is None else pattern.format(s=sigma)


def has_denoiser(config: str, sigma: float) -> bool:
    """Whether the configuration can run at ``sigma``: no denoiser, or its denoiser for that
    sigma is committed (the black-box one exists at ``CIFAR_BB_SIGMAS`` only: CPU time)."""
    name = denoiser_name(config, sigma)
    return name is None or name in model_names()


def not_trained(configs, sigmas) -> list[tuple[str, float]]:
    """The (configuration, sigma) pairs of ``configs`` x ``sigmas`` without a committed denoiser:
    not certified, absent from the tables (never a zero or a collapse)."""
    return [(c, sg) for c in configs for sg in sigmas if not has_denoiser(c, sg)]


def not_trained_note(configs, sigmas) -> str:
    """A caption sentence naming the configurations without a denoiser at some sigmas, or ""."""
    missing: dict[str, list[str]] = {}
    for c, sg in not_trained(configs, sigmas):
        missing.setdefault(c, []).append(f"{sg:g}")
    return "".join(f" The {human(c)} at σ = {', '.join(v)}: not trained (CPU time), "
                   f"so no row." for c, v in missing.items())


def denoiser_sigma(name: str) -> float:
    """The one noise level the committed denoiser ``name`` was trained for (a ValueError for a
    blind denoiser trained over several)."""
    sigmas = recipe(name)["sigmas"]
    if len(sigmas) != 1:
        raise ValueError(f"denoiser {name!r} was trained over several sigmas {list(sigmas)}")
    return float(sigmas[0])


def trained_through(name: str | None) -> tuple[str, ...]:
    """The classifiers a denoiser's stability stage was trained through (none for MSE)."""
    return () if name is None else tuple(recipe(name)["classifiers"])


class Models:
    """The run's models, loaded once each through ``ctx.load_model``; ``denoiser(config,
    sigma)`` is ``None`` for no denoiser and raises when the denoiser is not committed."""

    def __init__(self, ctx: RunContext):
        self.ctx, self._loaded = ctx, {}

    def get(self, name: str) -> nn.Module:
        if name not in self._loaded:
            self._loaded[name] = self.ctx.load_model(name)
        return self._loaded[name]

    def denoiser(self, config: str, sigma: float) -> nn.Module | None:
        name = denoiser_name(config, sigma)
        return None if name is None else self.get(name)


# --------------------------------------------------------------------------- certification
def certify_each(ctx: RunContext, smooth: Smooth, x: torch.Tensor, ids: torch.Tensor, n0: int,
                 n: int, alpha: float, desc: str = "CERTIFY") -> tuple[Certificates, list[str]]:
    """Cohen et al.'s CERTIFY on every image of ``x``, one cached piece per image: the key is
    the smoothed classifier (its weights, sigma and noise seed), the image's pixels, its id,
    ``n0``, ``n`` and ``alpha``; so a run with more images, or ``advlab certify`` with the same
    settings, reads the images it shares with an earlier run.  Returns the certificates and the
    device that computed each."""
    parts, where = [], []
    for i in tqdm(range(len(x)), desc=desc, unit="img", disable=not ctx.progress, leave=False):
        xi, idi = x[i:i + 1], ids[i:i + 1]
        piece = ctx.piece("certify", lambda xi=xi, idi=idi: smooth.certify(
            xi, n0, n, alpha, idi, distributed=False).to_dict(), smooth=smooth, image=xi, id=int(ids[i]), n0=n0,
            n=n, alpha=alpha)
        parts.append(Certificates.from_dict({k: v for k, v in piece.items() if k != "computed_on"}))
        where.append(piece["computed_on"])
    if not parts:
        raise ValueError("no images to certify")
    return Certificates(
        **{k: torch.cat([getattr(p, k) for p in parts]) for k in Certificates.TENSORS},
        n0=n0, n=n, alpha=alpha, sigma=smooth.sigma), where


def certificate_rows(certs: Certificates, where: list[str], labels: torch.Tensor,
                     **columns) -> pd.DataFrame:
    """One row per image (Cohen et al.'s log columns), with ``columns`` in front and the device
    that computed each certificate."""
    frame = certs.frame(labels)
    for i, (k, v) in enumerate(columns.items()):
        frame.insert(i, k, v)
    frame["computed_on"] = where
    return frame


def _certs_of(per_image: pd.DataFrame) -> tuple[Certificates, torch.Tensor]:
    zeros = torch.zeros(len(per_image), dtype=torch.long)
    return Certificates(ids=torch.tensor(per_image.id.to_numpy()),
                        prediction=torch.tensor(per_image.predict.to_numpy()),
                        radius=torch.tensor(per_image.radius.to_numpy(), dtype=torch.float64),
                        p_lower=torch.tensor(per_image.p_lower.to_numpy(), dtype=torch.float64),
                        count=zeros, select_count=zeros), torch.tensor(per_image.label.to_numpy())


def curves(per_image: pd.DataFrame, radii=None) -> pd.DataFrame:
    """Certified accuracy over a grid of radii for every (data set, configuration, sigma), with
    Clopper-Pearson 95% intervals over the images and the radius N caps at."""
    out = []
    grid = radii if radii is not None else [round(0.05 * i, 2) for i in range(0, 51)]
    for (ds, config, sigma), g in per_image.groupby(["dataset", "config", "sigma"], sort=False):
        certs, labels = _certs_of(g)
        t = certified_accuracy(certs, labels, grid)
        t.insert(0, "sigma", sigma)
        t.insert(0, "config", config)
        t.insert(0, "dataset", ds)
        t["max_radius"] = max_certifiable_radius(sigma, int(g.n.iloc[0]), float(g.alpha.iloc[0]))
        out.append(t)
    return pd.concat(out, ignore_index=True)


def answer_shares(per_image: pd.DataFrame, classes: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """For every (data set, configuration, sigma): how many images CERTIFY answered (did not
    abstain on), the class it returned most often and that class's share of all the images;
    ``collapsed`` when the share exceeds :data:`COLLAPSE_SHARE` (the smoothed classifier returns
    one class for most images, whatever they show)."""
    rows = []
    for (ds, config, sigma), g in per_image.groupby(["dataset", "config", "sigma"], sort=False):
        answered = g.predict[g.predict != ABSTAIN]
        counts = answered.value_counts()
        top = int(counts.index[0]) if len(counts) else ABSTAIN
        share = float(counts.iloc[0]) / len(g) if len(counts) else 0.0
        rows.append(dict(dataset=ds, config=config, sigma=sigma, n_images=len(g),
                         answered=len(answered), top_class=top,
                         top_name=classes[ds][top] if top != ABSTAIN else "–",
                         top_share=share, collapsed=share > COLLAPSE_SHARE))
    return pd.DataFrame(rows)


def per_sigma(per_image: pd.DataFrame, shares: pd.DataFrame) -> pd.DataFrame:
    """Certified accuracy at radius 0 and at the source study's radii for every (data set,
    configuration, sigma), with intervals, the radius cap and the collapse flag."""
    table = curves(per_image, (0.0, *RADII))
    return table.merge(shares.drop(columns="n_images"), on=["dataset", "config", "sigma"],
                       how="left")


def best_over_sigma(table: pd.DataFrame) -> pd.DataFrame:
    """The source study's table: at each radius the best certified accuracy over the sigmas
    whose smoothed classifier did not collapse (with that sigma, its interval and its accuracy
    at radius 0; ties go to the larger cap); ``capped`` when the winner's N cannot certify the
    radius (no such sigma reaches it); a configuration whose every sigma collapsed has no entry
    (NaN)."""
    rows = []
    for (ds, config), g in table.groupby(["dataset", "config"], sort=False):
        ok = g[~g.collapsed.astype(bool)]
        collapsed = sorted(set(g.sigma[g.collapsed.astype(bool)]))
        for r in RADII:
            at = ok[np.isclose(ok.radius, r)]
            row = dict(dataset=ds, config=config, radius=r, collapsed_sigmas=collapsed,
                       sigmas=tuple(sorted(set(g.sigma))), n_images=int(g.n_images.iloc[0]))
            if len(at):   # ties go to the sigma whose cap reaches furthest
                best = at.sort_values(["certified_acc", "max_radius"], ascending=False).iloc[0]
                clean = ok[(ok.radius == 0.0) & (ok.sigma == best.sigma)].certified_acc.iloc[0]
                row.update(certified_acc=best.certified_acc, lo=best.lo, hi=best.hi,
                           sigma=best.sigma, clean_acc=clean,
                           capped=bool(r > best.max_radius + 1e-9))
            else:
                row.update(certified_acc=np.nan, lo=np.nan, hi=np.nan, sigma=np.nan,
                           clean_acc=np.nan, capped=False)
            rows.append(row)
    return pd.DataFrame(rows)


def _pct(v: float, lo: float, hi: float) -> str:
    """A rate and its interval in whole percent, "56% [45, 66]" (with 100 images every image is
    one point, so the rate is exact)."""
    return f"{100 * v:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"


def source_comparison(best: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Certified accuracy (%) at the source study's radii, best over the sigmas that did not
    collapse [95% interval] (sigma): this run's rows above the source study's."""
    ours = best[best.dataset == dataset]
    every = sorted({x for t in ours.sigmas for x in t})
    rows = []
    for config, g in ours.groupby("config", sort=False):
        only = [x for x in every if has_denoiser(config, x)]   # its denoiser's sigmas
        where = (f" (σ = {', '.join(f'{x:g}' for x in only)} only)" if len(only) < len(every)
                 else "")
        cells = {}
        for r in g.itertuples():
            cells[f"r = {r.radius:g}"] = ("no σ without collapse" if np.isnan(r.certified_acc) else
                                          _pct(r.certified_acc, r.lo, r.hi)
                                          + f" ({100 * r.clean_acc:.0f}) σ = {r.sigma:g}"
                                          + ("*" if r.capped else ""))
        rows.append({"configuration": f"ours: {human(config)}{where}", **cells})
    source = SOURCE_TABLES[dataset]
    clean = SOURCE_CLEAN_CIFAR if dataset == "cifar10" else None
    for config in source.index:
        rows.append({"configuration": f"source study ({SOURCE_MODELS[dataset]}): {human(config)}",
                     **{f"r = {k}": f"{v}%" + (f" ({clean.loc[config, k]})" if clean is not None
                                               else "")
                        for k, v in source.loc[config].items()}})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- one draw
def onedraw(ctx: RunContext, s: Ch04Settings, models: Models) -> pd.DataFrame:
    """Top-1 accuracy of the target on the first ``onedraw_per_class`` test images of every
    class: clean, and under one noise draw at each of ``onedraw_sigmas`` without and with each
    committed denoiser (``training.denoisers.noisy_accuracy``), one piece per (denoiser,
    sigma); the clean accuracy of the surrogates the black-box denoisers were trained through.
    Exact Clopper-Pearson intervals over the images."""
    images, _ = cifar_images(s.onedraw_per_class)
    target = models.get(TARGET)
    rows = []

    def clean_row(name: str, model: nn.Module, role: str) -> dict:
        piece = ctx.piece("clean", lambda: {"correct": int(
            (Undefended(model).predict(images.x, s.batch_size) == images.y).sum())},
            model=model, images=images)
        return dict(config=role, denoiser=name, sigma=0.0, correct=piece["correct"],
                    computed_on=piece["computed_on"])

    rows.append(clean_row(TARGET, target, "clean target"))
    surrogates = {c for cfg in CONFIGS for sg in s.onedraw_sigmas
                  for c in _through(cfg, sg)} - {TARGET}
    for name in sorted(surrogates & set(model_names())):
        rows.append(clean_row(name, models.get(name), "clean surrogate"))
    for config in CONFIGS:
        for sigma in s.onedraw_sigmas:
            name = denoiser_name(config, sigma)
            if name is not None and name not in model_names():
                continue   # no committed denoiser for this sigma
            den = models.denoiser(config, sigma)
            piece = ctx.piece("one-draw", lambda den=den, sigma=sigma: {"correct": int(round(
                len(images) * noisy_accuracy(target, den, images.x, images.y, sigma, s.seed,
                                             s.batch_size)))},
                classifier=target, denoiser=den, images=images, sigma=sigma, seed=s.seed)
            rows.append(dict(config=config, denoiser=name or "–", sigma=sigma,
                             correct=piece["correct"], computed_on=piece["computed_on"]))
    for sigma in s.onedraw_sigmas:   # the filter that needs no training, at its best width here
        best = None
        for width in BLUR_WIDTHS:
            size = 2 * int(np.ceil(2 * width)) + 1
            blur = GaussianBlur2d((size, size), (width, width), border_type="reflect")
            piece = ctx.piece("one-draw blur", lambda blur=blur, sigma=sigma: {
                "correct": int(round(len(images) * noisy_accuracy(
                    target, blur, images.x, images.y, sigma, s.seed, s.batch_size)))},
                classifier=target, blur_width=width, images=images, sigma=sigma, seed=s.seed)
            if best is None or piece["correct"] > best[1]["correct"]:
                best = (width, piece)
        rows.append(dict(config=BLUR, denoiser=f"Gaussian blur, {best[0]:g} px", sigma=sigma,
                         correct=best[1]["correct"], computed_on=best[1]["computed_on"]))
    out = pd.DataFrame(rows)
    out["n_images"] = len(images)
    out["accuracy"] = out.correct / len(images)
    out["lo"], out["hi"] = clopper_pearson_ci(out.correct.to_numpy(), len(images))
    out["through"] = [", ".join(_through(c, sg)) if c in CONFIGS else "–"
                      for c, sg in zip(out.config, out.sigma)]
    return out


def _through(config: str, sigma: float) -> tuple[str, ...]:
    name = denoiser_name(config, sigma)
    if name is None or name not in model_names():
        return ()
    return trained_through(name)


# --------------------------------------------------------------------------- adaptive attack
def run_adaptive(ctx: RunContext, s: Ch04Settings, models: Models, images: ImageSet,
                 ids: torch.Tensor, per_image: pd.DataFrame) -> pd.DataFrame:
    """SmoothAdv (Salman et al. 2019): L2 PGD (no random start) on the smoothed soft classifier
    (``Smooth.forward``: ``attack_samples`` fresh noise draws per step), at each radius of
    ``attack_eps``, on every certified image with ``attack_config`` at ``attack_sigma``; the
    adversarial images are then classified by PREDICT (``attack_predict_n`` samples).  One
    piece per class of images.  Images are grouped by their certificate: correct with radius
    >= eps (the attack stays inside the certified ball: PREDICT may abstain, but returning
    another class would contradict the certificate), or not."""
    sigma, config = s.attack_sigma, s.attack_config
    smooth = Smooth(models.get(TARGET), 10, sigma, models.denoiser(config, sigma), alpha=s.alpha,
                    forward_batch=s.batch_size, seed=s.seed + 1, attack_samples=s.attack_samples)
    pgd = atk.PGD("l2", steps=s.attack_steps, random_start=False)
    mine = per_image[(per_image.dataset == "cifar10") & (per_image.config == config)
                     & (per_image.sigma == sigma)].set_index("id").loc[ids.tolist()]
    preds = {e: [] for e in s.attack_eps}
    norms = {e: [] for e in s.attack_eps}
    where = []
    for c in range(10):
        idx = (images.y == c).nonzero().flatten()
        x, y, i = images.x[idx], images.y[idx], ids[idx]

        def compute(x=x, y=y, i=i):
            advs = atk.run(smooth, x, y, pgd, list(s.attack_eps), batch_size=len(x),
                           seed=s.seed, progress=False)
            return {"pred": [smooth.predict(advs[e], n=s.attack_predict_n, ids=i)
                             for e in s.attack_eps],
                    "l2": [(advs[e] - x).flatten(1).norm(dim=1) for e in s.attack_eps]}

        piece = ctx.piece("smoothadv", compute, smooth=smooth, attack=pgd, eps=s.attack_eps,
                          images=x, labels=y, ids=i, predict_n=s.attack_predict_n, seed=s.seed)
        for e, p, d in zip(s.attack_eps, piece["pred"], piece["l2"]):
            preds[e].append(p)
            norms[e].append(d)
        where.append(piece["computed_on"])
    rows = []
    for e in s.attack_eps:
        adv = torch.cat(preds[e])
        certified = torch.tensor(((mine.correct == 1) & (mine.radius >= e)).to_numpy())
        for group, mask in (("certified at ε", certified), ("not certified at ε", ~certified)):
            a, y = adv[mask], images.y[mask]
            rows.append(dict(config=config, sigma=sigma, eps=e, group=group, images=int(mask.sum()),
                             certified_correct=int(torch.tensor(mine.correct.to_numpy())[mask].sum()),
                             adv_correct=int((a == y).sum()), adv_abstain=int((a == ABSTAIN).sum()),
                             adv_other_class=int(((a != y) & (a != ABSTAIN)).sum()),
                             max_l2=float(torch.cat(norms[e]).max()),
                             computed_on=", ".join(sorted(set(where)))))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- figure data
def example_views(ctx: RunContext, s: Ch04Settings, models: Models, images: ImageSet,
                  ids: torch.Tensor, config: str = "white-box") -> dict:
    """For ``example_images`` images (one per class, in class order) and each sigma: one noisy
    draw, the denoised draw, and the target's labels on the noisy, denoised and clean image."""
    k = s.example_images
    pick = torch.arange(0, len(images), s.per_class)[:k] if k <= 10 else torch.arange(k)
    x, y, i = images.x[pick], images.y[pick], ids[pick]
    target = models.get(TARGET)
    label = lambda v: predict(target, v, 64, unit_range=False)  # noqa: E731  noisy: unclipped
    out = {"clean": x, "y": y, "sigmas": list(s.sigmas), "noisy": [], "denoised": [],
           "pred_noisy": [], "pred_denoised": [], "pred_clean": Undefended(target).predict(x)}
    for sigma in s.sigmas:
        den = models.denoiser(config, sigma)
        noisy = x + sigma * per_image_normal((s.seed * 100_003 + i).tolist(), x.shape[1:])
        with torch.no_grad():
            shown = den(noisy.to(ctx.device)).cpu() if den is not None else noisy
        out["noisy"].append(noisy)
        out["denoised"].append(shown)
        out["pred_noisy"].append(label(noisy))
        out["pred_denoised"].append(label(shown))
    return out


def vote_histograms(ctx: RunContext, s: Ch04Settings, models: Models, images: ImageSet,
                    ids: torch.Tensor, index: int = 0) -> pd.DataFrame:
    """Vote counts over the classes for one image at the first sigma: ``hist_n`` noise samples
    through each configuration (the same noise for all; one piece each)."""
    sigma = s.sigmas[0]
    x, i = images.x[index:index + 1], ids[index:index + 1]
    rows = {}
    for config in [c for c in s.configs if has_denoiser(c, sigma)]:
        smooth = Smooth(models.get(TARGET), 10, sigma, models.denoiser(config, sigma),
                        forward_batch=s.batch_size, seed=s.seed)
        piece = ctx.piece("votes", lambda smooth=smooth: {
            "counts": smooth.sample_counts(x, s.hist_n, 1, i)[0]},
            smooth=smooth, image=x, id=int(i[0]), n=s.hist_n)
        rows[config] = piece["counts"].numpy()
    votes = pd.DataFrame(rows, index=list(images.classes)).rename_axis("class")
    votes.attrs = {"label": images.classes[int(images.y[index])], "sigma": sigma}
    return votes


# --------------------------------------------------------------------------- throughput
def throughput(s: Ch04Settings, models: Models, images: ImageSet, ids: torch.Tensor,
               device, config: str = "white-box", sigma: float = 0.25) -> pd.DataFrame:
    """Noise samples per second and seconds per certified image (``throughput_n`` samples of
    CERTIFY's estimation phase plus ``n0`` of selection, two images), for the batched path and
    for the reference code's per-image loop (eager torch), same model, same machine."""
    n, n0 = s.throughput_n, s.n0
    smooth = Smooth(models.get(TARGET), 10, sigma, models.denoiser(config, sigma),
                    forward_batch=s.batch_size, seed=s.seed)
    x, i = images.x[:2], ids[:2]
    smooth.sample_counts(x[:1], min(n, s.batch_size), 1, i[:1])  # warm-up (export, session)
    t0 = time.perf_counter()
    smooth.certify(x, n0, n, s.alpha, i)
    ours = time.perf_counter() - t0
    reference_sample_noise(smooth.base, x[0].to(device), n0, sigma, 10, s.batch_size)
    t0 = time.perf_counter()
    for img in x:
        reference_sample_noise(smooth.base, img.to(device), n0, sigma, 10, s.batch_size)
        reference_sample_noise(smooth.base, img.to(device), n, sigma, 10, s.batch_size)
    ref = time.perf_counter() - t0
    total = len(x) * (n + n0)
    rows = [dict(path="advlab (batched, fast inference path)",
                 backend=backend_name(device, model=smooth.base),
                 samples_per_s=total / ours, s_per_image=ours / len(x)),
            dict(path="reference loop (per image, eager torch)", backend="torch",
                 samples_per_s=total / ref, s_per_image=ref / len(x))]
    df = pd.DataFrame(rows)
    df["config"], df["sigma"], df["n0"], df["n"], df["batch_size"] = config, sigma, n0, n, s.batch_size
    df["speedup"] = df.samples_per_s / df.samples_per_s.iloc[1]
    return df


# --------------------------------------------------------------------------- results
@dataclass
class Ch04Results(ChapterResults):
    per_image: pd.DataFrame
    curves: pd.DataFrame
    per_sigma: pd.DataFrame
    best: pd.DataFrame
    comparison: pd.DataFrame
    onedraw: pd.DataFrame
    imagenet: pd.DataFrame
    adaptive: pd.DataFrame
    votes: pd.DataFrame
    throughput: pd.DataFrame
    info: RunInfo
    settings: Ch04Settings
    examples: dict = field(default_factory=dict, repr=False)

    CHAPTER = "ch04"
    TABLES = ("per_image", "curves", "per_sigma", "best", "comparison", "onedraw", "imagenet",
              "adaptive", "votes", "throughput")
    INDEXED = ("votes",)

    def extras(self) -> dict:
        s = self.settings
        return {"protocol_notes": PROTOCOL_NOTES, "collapse_share": COLLAPSE_SHARE,
                "not_trained": [f"{c} sigma={sg:g}" for c, sg in not_trained(s.configs, s.sigmas)],
                "max_radius": {f"cifar10 sigma={sg:g}": max_certifiable_radius(sg, s.n, s.alpha)
                               for sg in s.sigmas}}


# --------------------------------------------------------------------------- readers' tables
def caps_frame(n_values=(100, 1_000, 10_000, 100_000), sigmas=(0.12, 0.25, 0.5, 1.0),
               alpha: float = 0.001) -> pd.DataFrame:
    """The largest radius CERTIFY can return, ``sigma * Phi^-1(alpha^(1/N))``, per sigma and N."""
    return pd.DataFrame([{"noise σ": sg, **{f"N = {n:,}": max_certifiable_radius(sg, n, alpha)
                                            for n in n_values}} for sg in sigmas])


def _caps_table(r: Ch04Results):
    s = r.settings
    ns = sorted({100, s.n, 10_000, 100_000})
    return make_table(caps_frame(ns, tuple(sorted({0.12, 0.25, 0.5, 1.0, *s.sigmas})), s.alpha),
                      "tab-ch04-caps",
                      f"The largest L2 radius CERTIFY can return with N samples (α = "
                      f"{s.alpha:g}): σ Φ⁻¹(α^(1/N)), reached when all N samples agree. This "
                      f"chapter's CIFAR-10 runs: N = {s.n:,}.", digits=3)


#: The per-sigma table's radii: the source study's up to 1 (the page is not wide enough for all;
#: the larger ones are in the best-over-sigma table and the curves).
VIEW_RADII = tuple(r for r in RADII if r <= 1.0)


def per_sigma_view(table: pd.DataFrame, dataset: str = "cifar10") -> pd.DataFrame:
    """The per-sigma table for readers: one row per (sigma, configuration), the certified
    accuracy (%) [95% interval] at radius 0 and at the source study's radii up to 1
    (:data:`VIEW_RADII`; ``–`` beyond the cap), and the class returned most often with its
    share, "collapsed" when it is the answer for more than :data:`COLLAPSE_SHARE` of the
    images."""
    t = table[table.dataset == dataset]
    order = {c: i for i, c in enumerate(CONFIGS)}
    rows = []
    for (sigma, _), g in t.groupby(["sigma", t.config.map(order)], sort=True):
        g = g.set_index("radius")
        first = g.iloc[0]
        row = {"σ": f"{sigma:g}", "configuration": human(first.config)}
        for r in (0.0, *VIEW_RADII):
            v = g.loc[r]
            row[f"r = {r:g}"] = (
                "–" if r > v.max_radius + 1e-9 else _pct(v.certified_acc, v.lo, v.hi))
        row["most frequent answer"] = (f"{first.top_name} {100 * first.top_share:.0f}%"
                                       + (": collapsed" if first.collapsed else ""))
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs = {"labels": 2}
    return out


def _per_sigma_table(r: Ch04Results):
    s = r.settings
    return make_table(per_sigma_view(r.per_sigma), "tab-ch04-per-sigma",
                      f"Certified accuracy [95% Clopper-Pearson interval] of the smoothed "
                      f"ResNet-56 on {s.n_images} CIFAR-10 test images ({s.per_class} per class) "
                      f"per noise σ and configuration, at radius 0 (the smoothed classifier's "
                      f"accuracy) and at the source study's L2 radii up to 1 (the larger ones "
                      f"in the best-over-σ table and the curves); N0 = {s.n0}, N = {s.n:,}, "
                      f"α = {s.alpha:g}; – : beyond the radius N allows at that σ. Most frequent "
                      f"answer: the class CERTIFY returned most often and its share of all the "
                      f"images; collapsed: more than {100 * COLLAPSE_SHARE:.0f}% (such a row "
                      "certifies one class, not the images)."
                      + not_trained_note(s.configs, s.sigmas), labels=2)


def _cifar_table(r: Ch04Results):
    s = r.settings
    sigmas = ", ".join(f"{sg:g}" for sg in s.sigmas)
    return make_table(r.comparison, "tab-ch04-cifar",
                      f"Certified accuracy on CIFAR-10 at the source study's L2 radii, best "
                      f"over the σ that did not collapse [95% interval], then (in brackets) the "
                      f"accuracy at radius 0 of the σ that won, as the source study prints it, "
                      f"and that σ. Ours: ResNet-56, {s.n_images} test images ({s.per_class} per "
                      f"class), σ of {sigmas}, N0 = {s.n0}, N = {s.n:,}, α = {s.alpha:g}; * : "
                      f"beyond the radius that σ allows with this N."
                      + not_trained_note(s.configs, s.sigmas).replace("so no row", "so its best "
                                                                      "is over the other σ")
                      + " Source study: ResNet-110, 500 images, N = 10,000.")


def _onedraw_table(r: Ch04Results):
    t = onedraw_view(r.onedraw)
    n = int(r.onedraw.n_images.iloc[0])
    return make_table(t, "tab-ch04-onedraw",
                      f"Top-1 accuracy [95% Clopper-Pearson interval] on the first {n // 10} test "
                      f"images of every class ({n:,} images): ResNet-56 and the surrogate on the "
                      "clean images, then ResNet-56 under one noise draw per image, without and "
                      "with each denoiser (the one trained for that σ) and with a Gaussian blur "
                      "that needs no training (the best of widths 0.5, 1 and 1.5 px on these "
                      "images); the last column names the classifiers the denoiser's stability "
                      "stage was trained through."
                      + not_trained_note(tuple(CONFIGS), r.settings.onedraw_sigmas), labels=2)


def onedraw_view(one: pd.DataFrame) -> pd.DataFrame:
    """The one-draw table for readers: clean rows first, then one row per (σ, configuration)."""
    order = ["clean target", "clean surrogate", *CONFIGS]
    rank = {c: i for i, c in enumerate(order[:3] + [BLUR] + order[3:])}
    one = one.assign(_rank=one.config.map(rank)).sort_values(["sigma", "_rank"], kind="stable")
    rows = []
    for o in one.itertuples():
        acc = (o.accuracy, o.lo, o.hi)
        if o.config.startswith("clean"):
            who = human(o.denoiser)
            if o.config == "clean surrogate" and "surrogate" not in who:
                who += " (surrogate)"
            rows.append({"σ": "clean", "configuration": who, "trained through": "–",
                         "accuracy [95% CI]": acc})
        else:
            rows.append({"σ": f"{o.sigma:g}",
                         "configuration": (f"{o.denoiser} (no training)" if o.config == BLUR
                                           else human(o.config)),
                         "trained through": (", ".join(human(c) for c in o.through.split(", "))
                                             if o.through and o.through != "–" else "–"),
                         "accuracy [95% CI]": acc})
    out = pd.DataFrame(rows)
    out.attrs = {"percent": ["accuracy [95% CI]"], "labels": 2}
    return out


def _imagenet_table(r: Ch04Results):
    s = r.settings
    if r.imagenet.empty:
        frame = pd.DataFrame({"note": ["this profile certifies no ImageNet images"]})
        return make_table(frame, "tab-ch04-imagenet", "ImageNet: not run in this profile.")
    from ..data import imagenet_classes
    t = r.imagenet
    shares = answer_shares(t, {"imagenet": imagenet_classes()}).set_index("sigma")
    rows = []
    for sigma, g in t.groupby("sigma"):
        certs, labels = _certs_of(g)
        acc = certified_accuracy(certs, labels, (0.0, *RADII))
        cap = max_certifiable_radius(sigma, s.imagenet_n, s.alpha)
        row = {"σ": f"{sigma:g}"}
        for a in acc.itertuples():
            row["r = 0" if a.radius == 0 else f"r = {a.radius:g}"] = (
                "–" if a.radius > cap + 1e-9 else f"{int(a.hits)} of {int(a.n_images)}")
        share = shares.loc[sigma]
        row["most frequent answer"] = (f"{share.top_name} {100 * share.top_share:.0f}%"
                                       + (" COLLAPSED" if share.collapsed else ""))
        rows.append(row)
    src = SOURCE_TABLES["imagenet"].loc["no denoiser"]
    rows.append({"σ": "source study, best σ (%)", "r = 0": "–",
                 **{f"r = {k}": f"{v}%" for k, v in src.items()}, "most frequent answer": "–"})
    cap = max_certifiable_radius(max(s.imagenet_sigmas), s.imagenet_n, s.alpha)
    return make_table(pd.DataFrame(rows), "tab-ch04-imagenet",
                      f"A demonstration, not a measurement: CERTIFY on {len(t.id.unique())} "
                      f"ImageNet sample images with {human(s.imagenet_model)} and no denoiser, N0 = "
                      f"{s.imagenet_n0}, N = {s.imagenet_n} (cap {cap:.2f} at the largest σ; – : "
                      "beyond it): images certified correct at each radius. The source study: "
                      "ResNet-50, validation images, N = 10,000.")


def _adaptive_table(r: Ch04Results):
    s = r.settings
    a = r.adaptive.rename(columns={"eps": "attack radius ε", "group": "images",
                                   "images": "count", "certified_correct": "certified correct (clean)",
                                   "adv_correct": "PREDICT correct (attacked)",
                                   "adv_abstain": "abstains (attacked)",
                                   "adv_other_class": "another class (attacked)"})
    a = a[["attack radius ε", "images", "count", "certified correct (clean)",
           "PREDICT correct (attacked)", "abstains (attacked)", "another class (attacked)"]]
    a.attrs = {"labels": 2}
    return make_table(a, "tab-ch04-adaptive",
                      f"SmoothAdv ({s.attack_steps} L2 PGD steps, {s.attack_samples} noise draws "
                      f"per step) on ResNet-56 with the {human(s.attack_config)} at σ = "
                      f"{s.attack_sigma:g}, on all {s.n_images} certified test images; the "
                      f"attacked images classified by PREDICT (n = {s.attack_predict_n:,}, "
                      f"α = {s.alpha:g}).", labels=2)


def _throughput_table(r: Ch04Results):
    tp = r.throughput
    if tp.empty:
        return make_table(pd.DataFrame({"note": ["not measured in this profile"]}),
                          "tab-ch04-throughput", "Throughput: not measured in this profile.")
    t = tp.rename(columns={"path": "implementation", "backend": "backend",
                           "samples_per_s": "noise samples per second",
                           "s_per_image": "seconds per certified image", "speedup": "speed-up"})
    t = t[["implementation", "backend", "noise samples per second",
           "seconds per certified image", "speed-up"]]
    return make_table(t, "tab-ch04-throughput",
                      f"CERTIFY throughput (N0 = {int(tp.n0.iloc[0])}, N = {int(tp.n.iloc[0]):,}, "
                      f"batch {int(tp.batch_size.iloc[0])}, ResNet-56 with the "
                      f"{human(tp.config.iloc[0])} at σ = {tp.sigma.iloc[0]:g}, two images) on "
                      f"{tp.computed_on.iloc[0]}.")


# --------------------------------------------------------------------------- the chapter
class Chapter04(Chapter):
    id = "ch04"
    title = "Randomized smoothing and denoised smoothing"
    Settings = Ch04Settings
    model_setting = "imagenet_model"
    profiles = {
        "smoke": Ch04Settings(per_class=1, sigmas=(0.25,), configs=("no denoiser", "white-box"),
                              n0=10, n=50, batch_size=100, onedraw_per_class=2,
                              onedraw_sigmas=(0.25,), imagenet_images=0, attack_steps=2,
                              attack_samples=2, attack_predict_n=20, example_images=2,
                              hist_n=50, throughput_n=50),
        "full": Ch04Settings(),
        "paper": Ch04Settings(per_class=50, sigmas=(0.12, 0.25, 0.5, 1.0),
                              configs=tuple(CONFIGS), n0=100, n=10_000, batch_size=2000,
                              onedraw_per_class=100, imagenet_images=IMAGENET_POOL,
                              imagenet_sigmas=(0.25, 0.5, 1.0), imagenet_n0=100,
                              imagenet_n=10_000, imagenet_batch_size=400,
                              attack_eps=(0.25, 0.5), attack_steps=20, attack_samples=8,
                              attack_predict_n=10_000, hist_n=10_000, throughput_n=10_000),
    }
    tables = {"tab-ch04-caps": _caps_table, "tab-ch04-per-sigma": _per_sigma_table,
              "tab-ch04-cifar": _cifar_table, "tab-ch04-onedraw": _onedraw_table,
              "tab-ch04-imagenet": _imagenet_table, "tab-ch04-adaptive": _adaptive_table,
              "tab-ch04-throughput": _throughput_table}
    figures = {"ch04_certified_curves": lambda r: plots.plot_certified_curves(
                   r.curves[r.curves.dataset == "cifar10"], r.per_sigma[r.per_sigma.dataset == "cifar10"]),
               "ch04_denoising_examples": lambda r: plots.plot_denoising_examples(
                   r.examples, CIFAR10_CLASSES),
               "ch04_votes": lambda r: plots.plot_vote_histogram(r.votes)}

    def run(self, ctx: RunContext, s: Ch04Settings) -> Ch04Results:
        with ctx.stage("models and images"):
            models = Models(ctx)
            target = models.get(TARGET)
            images, ids = cifar_images(s.per_class)
            for config, sigma in s.pairs:
                models.denoiser(config, sigma)
        with ctx.stage("one-draw accuracy"):
            one = onedraw(ctx, s, models) if s.onedraw_per_class else pd.DataFrame()
        frames = []
        with ctx.stage("certification (CIFAR-10)"):
            for config, sigma in s.pairs:   # a configuration without a denoiser at sigma: none
                smooth = Smooth(target, 10, sigma, models.denoiser(config, sigma),
                                alpha=s.alpha, forward_batch=s.batch_size, seed=s.seed)
                certs, where = certify_each(ctx, smooth, images.x, ids, s.n0, s.n, s.alpha,
                                            f"CERTIFY {config}, σ={sigma:g}")
                frames.append(certificate_rows(certs, where, images.y, dataset="cifar10",
                                               config=config, sigma=sigma, n=s.n,
                                               alpha=s.alpha))
        with ctx.stage("SmoothAdv"):
            per_image = pd.concat(frames, ignore_index=True)
            adaptive = run_adaptive(ctx, s, models, images, ids, per_image)
        with ctx.stage("certification (ImageNet)"):
            imagenet = certify_imagenet(ctx, s, models) if s.imagenet_images else pd.DataFrame()
        with ctx.stage("figures"):
            examples = example_views(ctx, s, models, images, ids)
            votes = vote_histograms(ctx, s, models, images, ids)
        with ctx.stage("throughput"):
            speed = pd.DataFrame()
            if s.throughput_n:
                piece = ctx.piece("throughput", lambda: {"table": throughput(
                    s, models, images, ids, ctx.device).to_dict(orient="list")},
                    settings=s.part("throughput"), n0=s.n0, classifier=target,
                    denoiser=models.denoiser("white-box", 0.25))
                speed = pd.DataFrame(piece["table"]).assign(computed_on=piece["computed_on"])
        shares = answer_shares(per_image, {"cifar10": CIFAR10_CLASSES})
        table = per_sigma(per_image, shares)
        best = best_over_sigma(table)
        info = ctx.info(f"{TARGET} + {s.imagenet_model}", target)
        return Ch04Results(per_image, curves(per_image), table, best,
                           source_comparison(best, "cifar10"), one, imagenet, adaptive, votes,
                           speed, info, s, examples)


def certify_imagenet(ctx: RunContext, s: Ch04Settings, models: Models) -> pd.DataFrame:
    """The ImageNet demonstration: CERTIFY on ``imagenet_images`` sample images with
    ``imagenet_model`` and no denoiser at each of ``imagenet_sigmas``."""
    clf = models.get(s.imagenet_model)
    images, ids = imagenet_images(s.imagenet_model, s.imagenet_images, ctx.progress)
    frames = []
    for sigma in s.imagenet_sigmas:
        smooth = Smooth(clf, 1000, sigma, None, alpha=s.alpha,
                        forward_batch=s.imagenet_batch_size, seed=s.seed)
        certs, where = certify_each(ctx, smooth, images.x, ids, s.imagenet_n0, s.imagenet_n,
                                    s.alpha, f"CERTIFY ImageNet, σ={sigma:g}")
        frames.append(certificate_rows(certs, where, images.y, dataset="imagenet",
                                       config="no denoiser",
                                       sigma=sigma, n=s.imagenet_n, alpha=s.alpha))
    return pd.concat(frames, ignore_index=True)


CHAPTER = Chapter04()


# --------------------------------------------------------------------------- advlab certify
@dataclass(frozen=True)
class CertifySettings(Settings):
    """``advlab certify``: one (classifier, denoiser, sigma) over test images, every argument
    checked before any work.  CIFAR-10 takes ``images`` = 10 k (the first k of every class);
    ImageNet the first ``images`` odd-position sample images."""

    dataset: str = "cifar10"
    model: str | None = None
    denoiser: str | None = None
    sigma: float = 0.25
    n0: int = 100
    n: int = 10_000
    alpha: float = 0.001
    images: int = 500
    batch_size: int = 400

    def check(self) -> None:
        req = self.require
        req(self.dataset in NUM_CLASSES, f"dataset must be one of {sorted(NUM_CLASSES)}")
        req(self.sigma > 0, f"sigma must be a positive noise level, got {self.sigma}")
        req(self.n0 >= 1, f"N0 (selection samples) must be >= 1, got {self.n0}")
        req(self.n >= 1, f"N (estimation samples) must be >= 1, got {self.n}")
        req(self.n0 <= self.n, f"N0 = {self.n0} exceeds N = {self.n}: CERTIFY selects the class "
                               "with a few samples and estimates its probability with many")
        req(0 < self.alpha < 1, f"alpha must lie in (0, 1), got {self.alpha}")
        req(self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}")
        req(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        if self.dataset == "cifar10":
            req(10 <= self.images <= 10_000 and self.images % 10 == 0,
                f"CIFAR-10 takes --images 10, 20, ... 10000 (the first images/10 test images of "
                f"every class), got {self.images}")
        else:
            req(1 <= self.images <= IMAGENET_POOL,
                f"ImageNet takes --images 1 ... {IMAGENET_POOL} (odd-position colour sample "
                f"images), got {self.images}")
        model = self.classifier
        _require_model(self, model, self.dataset)
        if self.dataset == "imagenet":
            req(model in IMAGENET_SPECS, f"--model {model!r}: ImageNet certification takes one "
                                         f"of {sorted(IMAGENET_SPECS)}")
        if self.denoiser is not None:
            req(self.denoiser in model_names() and self.denoiser.startswith(f"{self.dataset}-"),
                f"--denoiser {self.denoiser!r} is not a committed {self.dataset} denoiser; "
                f"committed: {[m for m in model_names() if m.startswith(self.dataset + '-')]}")
            trained = recipe(self.denoiser)["sigmas"]
            req(any(abs(t - self.sigma) < 1e-9 for t in trained),
                f"denoiser {self.denoiser!r} was trained for sigma {list(trained)}, not for "
                f"--sigma {self.sigma:g}")

    @property
    def classifier(self) -> str:
        return self.model or DEFAULT_TARGETS[self.dataset]


def certify_images(ctx: RunContext, cs: CertifySettings, rank: int = 0,
                   world: int = 1) -> pd.DataFrame:
    """``advlab certify``'s work: CERTIFY on the chosen images, one cached piece per image
    (:func:`certify_each`: the chapter's pieces, so its cache serves both).  With ``world``
    processes (an initialised ``torch.distributed`` group) process ``rank`` certifies images
    ``rank, rank + world, ...`` and every process returns all rows, in image order."""
    clf = ctx.load_model(cs.classifier)
    den = ctx.load_model(cs.denoiser) if cs.denoiser else None
    if cs.dataset == "cifar10":
        images, ids = cifar_images(cs.images // 10)
    else:
        images, ids = imagenet_images(cs.classifier, cs.images, ctx.progress)
    smooth = Smooth(clf, NUM_CLASSES[cs.dataset], cs.sigma, den, alpha=cs.alpha,
                    forward_batch=cs.batch_size, seed=cs.seed)
    mine = torch.arange(rank, len(images), world)
    certs, _ = certify_each(ctx, smooth, images.x[mine], ids[mine], cs.n0, cs.n, cs.alpha)
    frame = certs.frame(images.y[mine])
    if world > 1:
        import torch.distributed as dist
        parts: list = [None] * world
        dist.all_gather_object(parts, frame)
        frame = pd.concat(parts).set_index("id").loc[ids.tolist()].reset_index()
    return frame


def explorer(device=None, per_class: int = 1, seed: int = 0):
    """The notebook's explorer: every committed configuration at every sigma it has a
    denoiser for, on the first ``per_class`` test images of every class (ids as in the
    chapter)."""
    from ..widgets import certify_explorer
    from ..zoo import load_model
    target = load_model(TARGET, device, progress=False)
    sigmas = sorted({denoiser_sigma(m) for m in model_names()
                     if m.startswith("cifar10-stab-wb-")})
    denoisers = {c: {sg: (None if denoiser_name(c, sg) is None
                          else load_model(denoiser_name(c, sg), device, progress=False))
                      for sg in sigmas if denoiser_name(c, sg) is None
                      or denoiser_name(c, sg) in model_names()}
                 for c in CONFIGS}
    images, ids = cifar_images(per_class)
    return certify_explorer(target, denoisers, images, ids, n0=20, n=100, seed=seed)

