"""Chapter 5: pixel robustness from input gradients, masked PGD and the Pixel Robustness
Manipulator (Hwang et al. 2019, code niffler92/where-adversarial-added).

1. Gradient maps (:func:`run_gradient_maps`): the mean absolute input gradient per pixel of each
   CIFAR-10 ResNet and of the ImageNet model, and how much a map depends on the architecture
   rather than the image (correlations of per-image maps within and across models, and of
   split-half mean maps).
2. Masked PGD (:func:`run_masked_pgd`): PGD L-inf 0.031 on every image, then the perturbation
   kept on the top-, bottom- or random-p% pixels of the map (the study's post-hoc blend
   ``M*x_adv + (1-M)*x``), and, as the authors' code does it, PGD restricted to those pixels
   during the optimisation; top-1 accuracy against p.
3. The PRM (:func:`run_prm_lambda`): for each lambda a PRM trained at that lambda in front of
   the frozen ResNet-20 (the shipped ones in ``smoke`` and ``full``, trained by ``advlab
   train-prm``; trained by the run in ``paper``); IoU of the top-25% gradient pixels with the
   stride-2 lattice, accuracy and mean gradient map against lambda.
4. The gray-box table (:func:`run_graybox`): One Pixel, JSMA, DeepFool, C&W and PGD crafted on
   the bare classifier, evaluated without defence, with Region-based classification,
   Randomization, Pixel Deflection and the PRM with the random one-pixel shift; and the
   white-box row, the same attacks through EOT over the shift with the PRM known.

Accuracies come with 95% Wilson intervals; the defence rate is the authors' code's
``1 - (clean - defended) / (clean - attacked)``, each accuracy measured on the deployed model
(the PRM at lambda for ours, the bare classifier for the baselines), "attacked" without the
defence's transform and "defended" with it.

CIFAR-100 is left out: the mirror holds its test set only and no CIFAR-100 classifier can be had
offline or trained in the budget.  The ImageNet PRM is left out too: the 1,000 sample images
are the only ImageNet data here, too few to train and test it; ImageNet appears in parts 1-2.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .. import attacks as atk
from ..cache import ResultCache, fingerprint, tensor_digest
from ..config import RunInfo, device_name, get_device, profile_settings, resolve_profile, seed_everything
from ..data import ImageSet, load_cifar10
from ..defences.pixel_deflection import pixel_deflection_defence
from ..defences.pixel_shift import PADDINGS, shift_defence
from ..defences.region_based import RegionBased
from ..defences.resize_pad import randomization_defence
from ..inference import backend_name
from ..metrics import wilson_ci
from ..models import load_cifar_resnet, load_imagenet_model, predict, prepare_for_inference
from ..models.prm import PRM, load_prm
from ..pixel_maps import blend, gradient_map, lattice_mask, map_correlations, pixel_mask, top_fraction_iou
from ..training.prm import PRM_LAMBDAS, PRM_RECIPE, recipe_prm
from ..zoo import load_imagenet_for
from .common import ChapterResults, cache_note

CHAPTER = "ch05"
EPS = 0.031                      # the authors' L-inf budget on [0, 1] images
MASK_KINDS = ("top", "bottom", "random")
DEFENCES = ("none", "region-based", "randomization", "pixel deflection", "PRM + shift")

#: PRMs classify with torch: one ONNX export per PRM and lambda costs more than it saves.
PRM_BACKEND = "torch"
#: The lambda of the PRM in the gray-box table (the study's "high lambda").
TABLE_LAMBDA = 0.9

_ATTACKS_SMOKE = dict(one_pixel=dict(popsize=10, generations=3), jsma=dict(gamma=0.005),
                      deepfool=dict(steps=5), cw=dict(steps=10, binary_search_steps=2),
                      pgd=dict(steps=5))
PROFILES = {
    "smoke": dict(cifar_models=("resnet20", "resnet32"), n_grad=60, imagenet_grad=4,
                  n_pgd=40, n_restricted=10, imagenet_pgd=0, imagenet_restricted=0, pgd_steps=5,
                  pgd_step_size=None, ps=(0.05, 0.25, 0.5), restricted_ps=(0.25,),
                  lambdas=(0.0, 0.6, 0.9, 1.0), n_lambda=60, train_prm=False, n_table=10,
                  graybox=_ATTACKS_SMOKE, whitebox=("pgd",), n_white=10, eot=4,
                  region_samples=20, batch_size=64, seed=0),
    "full": dict(cifar_models=("resnet20", "resnet32", "resnet44", "resnet56"), n_grad=500,
                 imagenet_grad=48, n_pgd=500, n_restricted=200, imagenet_pgd=32, imagenet_restricted=0, pgd_steps=20,
                 pgd_step_size=None,
                 ps=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
                 restricted_ps=(0.05, 0.1, 0.3), lambdas=(0.0,) + PRM_LAMBDAS,
                 n_lambda=500, train_prm=False, n_table=200,
                 graybox=dict(one_pixel=dict(popsize=100, generations=10), jsma=dict(gamma=0.1),
                              deepfool=dict(steps=50), cw=dict(steps=50, binary_search_steps=3),
                              pgd=dict(steps=20)),
                 whitebox=("pgd", "deepfool"), n_white=100, eot=8, region_samples=100,
                 batch_size=100, seed=0),
    # The study's protocol at full size, for a GPU: every CIFAR-10 test image, 1,000 PGD steps
    # of 0.1 std (0.0225 on [0, 1]), One Pixel with 400 x 100, 1,000 region samples.
    "paper": dict(cifar_models=("resnet20", "resnet32", "resnet44", "resnet56"), n_grad=10_000,
                  imagenet_grad=975, n_pgd=10_000, n_restricted=10_000, imagenet_pgd=975,
                  imagenet_restricted=975,
                  pgd_steps=1000,
                  pgd_step_size=0.0225, ps=tuple(np.round(np.linspace(0.05, 1, 20), 2)),
                  restricted_ps=(0.05, 0.1, 0.2, 0.3, 0.5),
                  lambdas=tuple(np.round(np.linspace(0, 1, 21), 2)), n_lambda=10_000,
                  train_prm=True, n_table=10_000,
                  graybox=dict(one_pixel=dict(popsize=400, generations=100), jsma=dict(gamma=0.1),
                               deepfool=dict(steps=50), cw=dict(steps=100, binary_search_steps=10),
                               pgd=dict(steps=1000, step_size=0.0225)),
                  whitebox=("one_pixel", "jsma", "deepfool", "cw", "pgd"), n_white=10_000, eot=8,
                  region_samples=1000, batch_size=256, seed=0),
}

def settings(profile: str | None = None, **overrides) -> dict:
    """The profile's settings, with keyword overrides (unknown keys are an error)."""
    return profile_settings(PROFILES, CHAPTER, profile, **overrides)


# --------------------------------------------------------------------------- data and models
def cifar_subset(images: ImageSet, n: int) -> ImageSet:
    """The first ``n // 10`` images of every class, in class order (the mirror keeps the
    official order within each class, so this is reproducible with the official files too)."""
    classes = int(images.y.max()) + 1
    if n % classes:
        raise ValueError(f"n must be a multiple of the {classes} classes, got {n}")
    order = torch.sort(images.y, stable=True).indices
    counts = torch.bincount(images.y, minlength=classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(order)) - starts[images.y[order]]
    return images.subset(order[rank < n // classes].sort().values)


def cifar_model(name: str, device) -> torch.nn.Module:
    return prepare_for_inference(load_cifar_resnet(name), device)


def chapter_prm(cfg: dict, device, lam: float = TABLE_LAMBDA, progress: bool = True) -> PRM:
    """The run's PRM at ``lam``: the shipped one (trained at ``lam``, or the nearest trained
    lambda) unless ``cfg["train_prm"]``, then trained here with :data:`PRM_RECIPE` (cached under
    ``$ADVLAB_CACHE/models``, resumable; at ``lam = 0`` the one trained at the smallest of
    :data:`PRM_LAMBDAS`, since the autoencoder is then out of the output and the gradient)."""
    r = PRM_RECIPE
    clf = cifar_model(r["classifier"], device)
    if not cfg["train_prm"]:
        return load_prm(clf, r["classifier"], lam).to(device)
    train = load_cifar10("train")
    prm = recipe_prm(clf, train, lam if lam > 0 else min(PRM_LAMBDAS), device, progress)
    return prm.at(lam).eval()


def accuracy_row(correct: torch.Tensor) -> dict:
    """Accuracy of a boolean vector with its 95% Wilson interval."""
    n, k = len(correct), int(correct.sum())
    lo, hi = wilson_ci(k, n)
    return {"n": n, "correct": k, "acc": k / n, "acc_lo": float(lo), "acc_hi": float(hi)}


# --------------------------------------------------------------------------- 1. gradient maps
def gradient_key(model_name: str, images: ImageSet, cfg: dict) -> dict:
    return dict(model=model_name, images=fingerprint(images), batch=cfg["batch_size"])


def per_image_maps(model, model_name: str, images: ImageSet, cfg: dict, cache: ResultCache,
                   progress: bool = True) -> torch.Tensor:
    """Per-image gradient maps (N, H, W) of ``model`` on ``images`` (cached)."""
    key = gradient_key(model_name, images, cfg)
    bs = cfg["batch_size"] if images.x.shape[-1] <= 64 else max(1, cfg["batch_size"] // 8)
    return cache.get_or_compute("gradmap", key, lambda: {"maps": gradient_map(
        model, images.x, images.y, bs, per_image=True, progress=progress)[1]})["maps"]


def map_agreement(maps: dict[str, torch.Tensor]) -> pd.DataFrame:
    """How much a gradient map is the model's rather than the image's.

    Per model: the mean correlation between per-image maps of different images
    (``within_model``) and between split-half mean maps (even vs odd images,
    ``split_half``); per pair of models: the mean correlation of the same image's maps
    (``same_image``) and of their mean maps (``mean_maps``)."""
    names = list(maps)
    n = len(next(iter(maps.values())))
    corr = map_correlations(maps)
    rows = []
    off = ~torch.eye(n, dtype=torch.bool)
    for i, a in enumerate(names):
        block = corr[i * n:(i + 1) * n, i * n:(i + 1) * n]
        halves = map_correlations({"even": maps[a][0::2].mean(0, keepdim=True),
                                   "odd": maps[a][1::2].mean(0, keepdim=True)})
        rows.append({"model": a, "other": a, "within_model": float(block[off].mean()),
                     "split_half": float(halves[0, 1])})
        for j, b in enumerate(names[i + 1:], start=i + 1):
            cross = corr[i * n:(i + 1) * n, j * n:(j + 1) * n]
            means = map_correlations({a: maps[a].mean(0, keepdim=True),
                                      b: maps[b].mean(0, keepdim=True)})
            rows.append({"model": a, "other": b, "same_image": float(cross.diagonal().mean()),
                         "different_images": float(cross[off].mean()),
                         "mean_maps": float(means[0, 1])})
    return pd.DataFrame(rows)


def run_gradient_maps(cfg: dict, device, cache: ResultCache, imagenet_model: str,
                      progress: bool = True) -> tuple[dict, pd.DataFrame]:
    """Mean maps ``{model: (H, W)}`` and the agreement table (CIFAR models and ImageNet)."""
    cifar = cifar_subset(load_cifar10("test"), cfg["n_grad"])
    maps = {name: per_image_maps(cifar_model(name, device), name, cifar, cfg, cache, progress)
            for name in tqdm(cfg["cifar_models"], desc="gradient maps", disable=not progress)}
    table = map_agreement(maps).assign(dataset="CIFAR-10")
    means = {name: m.mean(0) for name, m in maps.items()}
    if cfg["imagenet_grad"]:
        net = prepare_for_inference(load_imagenet_model(imagenet_model), device)
        imgs = load_imagenet_for(imagenet_model, cfg["imagenet_grad"], progress=progress)
        m = per_image_maps(net, imagenet_model, imgs, cfg, cache, progress)
        means[imagenet_model] = m.mean(0)
        table = pd.concat([table, map_agreement({imagenet_model: m}).assign(dataset="ImageNet")])
    return means, table.reset_index(drop=True)


# --------------------------------------------------------------------------- 2. masked PGD
def pgd_attack(cfg: dict, mask: torch.Tensor | None = None) -> atk.PGD:
    """The chapter's L-inf PGD: no random start (the authors' FGM loop), ``pgd_steps`` steps of
    ``pgd_step_size`` (default ``2.5 * eps / steps``), optionally restricted to ``mask``."""
    return atk.PGD("linf", cfg["pgd_steps"], step=cfg["pgd_step_size"], random_start=False,
                   mask=None if mask is None else mask.float())


def run_masked_pgd(model, model_name: str, images: ImageSet, gmap: torch.Tensor, cfg: dict,
                   cache: ResultCache, dataset: str, n_restricted: int,
                   progress: bool = True) -> pd.DataFrame:
    """Accuracy against p for top-, bottom- and random-p% masks: the post-hoc blend of one PGD
    run on ``images``, and PGD restricted to the mask during the optimisation for
    ``restricted_ps`` on the first ``n_restricted`` of them (one PGD run per mask)."""
    base = dict(model=model_name, images=fingerprint(images), eps=EPS, steps=cfg["pgd_steps"],
                step=cfg["pgd_step_size"], batch=cfg["batch_size"], seed=cfg["seed"],
                gmap=tensor_digest(gmap.float()), ps=list(cfg["ps"]))
    bs = cfg["batch_size"] if images.x.shape[-1] <= 64 else max(1, cfg["batch_size"] // 8)

    def full_attack():
        adv = atk.run(model, images.x, images.y, pgd_attack(cfg), [EPS], batch_size=bs,
                      seed=cfg["seed"], progress=progress)[EPS]
        preds = {f"{k}_{p}": predict(model, blend(images.x, adv, pixel_mask(gmap, p, k, cfg["seed"])), bs)
                 for k in MASK_KINDS for p in cfg["ps"]}
        return {"clean": predict(model, images.x, bs), **preds}

    preds = cache.get_or_compute("masked_pgd", base, full_attack)
    rows = [{"dataset": dataset, "model": model_name, "method": "clean", "kind": "-", "p": 0.0,
             **accuracy_row(preds["clean"] == images.y)}]
    rows += [{"dataset": dataset, "model": model_name, "method": "post-hoc blend", "kind": k,
              "p": p, **accuracy_row(preds[f"{k}_{p}"] == images.y)}
             for k in MASK_KINDS for p in cfg["ps"]]
    sub = images if n_restricted >= len(images) else cifar_subset(images, n_restricted)
    jobs = [(k, p) for k in MASK_KINDS for p in cfg["restricted_ps"]] if n_restricted else []
    for k, p in tqdm(jobs, desc=f"restricted PGD {model_name}", disable=not progress):
        mask = pixel_mask(gmap, p, k, cfg["seed"])
        key = {**base, "images": fingerprint(sub), "kind": k, "p": p}
        pred = cache.get_or_compute("restricted_pgd", key, lambda: {
            "pred": predict(model, atk.run(model, sub.x, sub.y, pgd_attack(cfg, mask), [EPS],
                                           batch_size=bs, seed=cfg["seed"],
                                           progress=progress)[EPS], bs)})["pred"]
        rows.append({"dataset": dataset, "model": model_name, "method": "restricted PGD",
                     "kind": k, "p": p, **accuracy_row(pred == sub.y)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- 3. PRM and lambda
def run_prm_lambda(cfg: dict, device, images: ImageSet, cache: ResultCache,
                   progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """For every lambda, the PRM trained at that lambda: IoU of its top-25% gradient pixels with
    the lattice, the share of the gradient on the lattice, accuracy, and its mean gradient map."""
    lattice = lattice_mask(*images.x.shape[-2:])
    rows, maps = [], {}
    for lam in tqdm(cfg["lambdas"], desc="PRM lambda", disable=not progress):
        prm = chapter_prm(cfg, device, float(lam), progress)
        key = dict(classifier=PRM_RECIPE["classifier"], prm=prm_id(prm), lam=float(lam),
                   images=fingerprint(images), batch=cfg["batch_size"])

        def compute(prm=prm):
            return {"map": gradient_map(prm, images.x, images.y, cfg["batch_size"],
                                        progress=progress),
                    "pred": predict(prm, images.x, cfg["batch_size"], backend=PRM_BACKEND)}
        piece = cache.get_or_compute("prm_lambda", key, compute)
        maps[float(lam)] = piece["map"]
        rows.append({"lambda": float(lam), "iou": top_fraction_iou(piece["map"], lattice),
                     "gradient_on_lattice": float(piece["map"][lattice].sum() / piece["map"].sum()),
                     **accuracy_row(piece["pred"] == images.y)})
    return pd.DataFrame(rows), maps


# --------------------------------------------------------------------------- 4. gray-box table
def make_attack(name: str, params: dict) -> atk.Attack:
    if name == "pgd":
        p = dict(params)
        return atk.PGD("linf", p.pop("steps"), step=p.pop("step_size", None),
                       random_start=False, **p)
    return atk.make(name, **params)


def baseline_defences(clf, cfg: dict) -> dict:
    """The three baselines in front of the bare classifier (CIFAR settings)."""
    return {"region-based": RegionBased(clf, 0.02, cfg["region_samples"], chunk=min(50, cfg["region_samples"])),
            "randomization": randomization_defence(clf, (28, 31), 32),
            "pixel deflection": pixel_deflection_defence(clf, 200, 10, 0.04)}


def defended_predictions(defence_name: str, clf, prm: PRM, defences: dict, x: torch.Tensor,
                         cfg: dict, padding: str) -> dict:
    """Labels of the deployed model without (``plain``) and with (``defended``) the defence's
    transform; for ``none`` both are the bare classifier's."""
    bs, seed = cfg["batch_size"], cfg["seed"]
    if defence_name == "none":
        p = predict(clf, x, bs)
        return {"plain": p, "defended": p}
    if defence_name == "PRM + shift":
        return {"plain": predict(prm, x, bs, backend=PRM_BACKEND),
                "defended": shift_defence(prm, padding).predict(x, bs, seed=seed)}
    return {"plain": predict(clf, x, bs), "defended": defences[defence_name].predict(x, bs, seed=seed)}


def run_graybox(clf, prm: PRM, images: ImageSet, cfg: dict, cache: ResultCache,
                padding: str = "replicate", progress: bool = True) -> pd.DataFrame:
    """Accuracy of every defence on clean images and on each attack's examples: gray-box
    (crafted on the bare classifier) and white-box (through EOT over the shift, PRM known)."""
    bs, seed = cfg["batch_size"], cfg["seed"]
    defences = baseline_defences(clf, cfg)
    ids = dict(images=fingerprint(images), batch=bs, seed=seed, prm=prm_id(prm),
               lam=float(prm.lam))
    adversarial = {"clean": ("-", images.x, images.y)}
    for name, params in tqdm(cfg["graybox"].items(), desc="gray-box attacks", disable=not progress):
        adversarial[name] = ("gray-box", attack_images(clf, name, params, images, cfg, cache,
                                                       {**ids, "attacker": "gray-box"}, progress),
                             images.y)
    eot = atk.EOT(shift_defence(prm, padding), cfg["eot"])
    white = images if cfg["n_white"] >= len(images) else cifar_subset(images, cfg["n_white"])
    white_ids = {**ids, "images": fingerprint(white), "attacker": "white-box", "eot": cfg["eot"],
                 "padding": padding}
    for name in tqdm(cfg["whitebox"], desc="white-box attacks", disable=not progress):
        params = cfg["graybox"][name]
        if name == "one_pixel":      # queries of a randomized model: torch, never an ONNX export
            params = {**params, "backend": "torch"}
        adversarial[f"{name} (white-box)"] = ("white-box", attack_images(
            eot, name, params, white, cfg, cache, white_ids, progress, target_model=prm), white.y)
    rows = []
    for label, (attacker, x, y) in tqdm(adversarial.items(), desc="defences", disable=not progress):
        for d in DEFENCES if attacker != "white-box" else ("none", "PRM + shift"):
            key = {**ids, "examples": label, "n_white": cfg["n_white"], "defence": d, "padding": padding,
                   "region": cfg["region_samples"], "graybox": cfg["graybox"], "eot": cfg["eot"]}
            preds = cache.get_or_compute("defended", key, lambda d=d, x=x: defended_predictions(
                d, clf, prm, defences, x, cfg, padding))
            rows.append({"attack": label.replace(" (white-box)", ""), "attacker": attacker,
                         "defence": d, **accuracy_row(preds["defended"] == y),
                         "acc_plain": float((preds["plain"] == y).float().mean())})
    table = pd.DataFrame(rows)
    return add_defence_rate(table)


def prm_id(prm: PRM) -> str:
    """Identity of a PRM's autoencoder weights (the classifier is PRM_RECIPE's)."""
    return tensor_digest(*prm.autoencoder.state_dict().values())


def attack_images(model, name: str, params: dict, images: ImageSet, cfg: dict,
                  cache: ResultCache, ids: dict, progress: bool, target_model=None) -> torch.Tensor:
    """Adversarial examples of ``images`` by attack ``name`` against ``model`` (cached).  JSMA
    aims at each image's least likely class (of ``target_model``, default ``model``)."""
    key = {**ids, "attack": name, "params": params, "eps": EPS}

    def compute():
        attack = make_attack(name, params)
        targets = atk.least_likely(target_model or model, images.x) if name == "jsma" else None
        eps = [EPS] if attack.uses_epsilon else None
        out = atk.run(model, images.x, images.y, attack, eps, targets=targets,
                      batch_size=cfg["batch_size"], seed=cfg["seed"], progress=progress)
        return {"x": next(iter(out.values())).clamp(0, 1)}
    return cache.get_or_compute("attack", key, compute)["x"]


def add_defence_rate(table: pd.DataFrame) -> pd.DataFrame:
    """The authors' defence rate ``1 - (clean - defended) / (clean - attacked)``, with clean
    the deployed model's clean accuracy (on all the table's images, also for the white-box
    rows, which use a per-class subset) and attacked its accuracy on the examples without the
    defence's transform (NaN where the attack did not lower it)."""
    clean = table[table.attack == "clean"].set_index("defence")["acc_plain"]
    c = table.defence.map(clean)
    drop = c - table.acc_plain
    rate = 1 - (c - table.acc) / drop.where(drop > 0)
    return table.assign(defence_rate=rate.where((table.attack != "clean") & (table.defence != "none")))


def padding_check(prm: PRM, images: ImageSet, cfg: dict, cache: ResultCache) -> pd.DataFrame:
    """Clean accuracy of the PRM with a random shift, replicated or zero border, and without."""
    rows = []
    for padding in ("none", "replicate", "zeros"):
        key = dict(prm=prm_id(prm), lam=float(prm.lam), images=fingerprint(images),
                   padding=padding, seed=cfg["seed"], batch=cfg["batch_size"])
        pred = cache.get_or_compute("padding", key, lambda padding=padding: {"pred": (
            predict(prm, images.x, cfg["batch_size"], backend=PRM_BACKEND) if padding == "none" else
            shift_defence(prm, padding).predict(images.x, cfg["batch_size"], seed=cfg["seed"]))})
        rows.append({"padding": padding, **accuracy_row(pred["pred"] == images.y)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- everything
@dataclass
class Ch05Results(ChapterResults):
    map_agreement: pd.DataFrame
    masked_pgd: pd.DataFrame
    prm_lambda: pd.DataFrame
    graybox: pd.DataFrame
    padding: pd.DataFrame
    gradient_maps: dict
    lambda_maps: dict
    info: RunInfo
    settings: dict = field(default_factory=dict)

    CHAPTER = CHAPTER
    TABLES = ("map_agreement", "masked_pgd", "prm_lambda", "graybox", "padding")

    def save(self, out) -> list:
        """The tables and JSON (see ChapterResults), and the mean maps as a torch file."""
        written = super().save(out)
        path = Path(out) / f"{CHAPTER}_maps.pt"
        torch.save({"gradient_maps": self.gradient_maps, "lambda_maps": self.lambda_maps}, path)
        return written + [path]


def graybox_pivot(table: pd.DataFrame) -> pd.DataFrame:
    """The study's table layout: attacks down, defences across, accuracy with its interval."""
    t = table.assign(cell=[f"{a:.1%} [{lo:.0%}, {hi:.0%}]" for a, lo, hi in
                           zip(table.acc, table.acc_lo, table.acc_hi)])
    return t.pivot_table(index=["attacker", "attack"], columns="defence", values="cell",
                         aggfunc="first", sort=False)[[d for d in DEFENCES if d in set(t.defence)]]


def make_figures(results: Ch05Results) -> dict:
    """The chapter's figures, by file stem."""
    from .. import plots
    return {"ch05_gradient_maps": plots.plot_heatmaps(results.gradient_maps, "mean |input gradient|"),
            "ch05_masked_pgd": plots.plot_masked_pgd(results.masked_pgd),
            "ch05_prm_lambda": plots.plot_prm_lambda(results.prm_lambda),
            "ch05_lambda_maps": plots.plot_heatmaps({f"lambda = {k:g}": v for k, v in
                                                     results.lambda_maps.items()},
                                                    "mean |input gradient| of the PRM"),
            "ch05_graybox": plots.plot_defence_table(results.graybox)}


def run(profile: str | None = None, model_name: str = "efficientnet_lite0", device=None,
        use_cache: bool = True, progress: bool = True, padding: str = "replicate",
        **overrides) -> Ch05Results:
    """The whole chapter (see the module docstring); ``model_name``: the ImageNet model."""
    t0 = time.time()
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    profile = resolve_profile(profile)
    cfg = settings(profile, **overrides)
    dev = get_device(device)
    seed_everything(cfg["seed"])
    cache = ResultCache(CHAPTER, enabled=use_cache)
    gmaps, agreement = run_gradient_maps(cfg, dev, cache, model_name, progress)

    cifar = load_cifar10("test")
    clf_name = PRM_RECIPE["classifier"]
    clf = cifar_model(clf_name, dev)
    pgd_images = cifar_subset(cifar, cfg["n_pgd"])
    grad_images = cifar_subset(cifar, cfg["n_grad"])
    clf_map = gmaps.get(clf_name)
    if clf_map is None:
        clf_map = per_image_maps(clf, clf_name, grad_images, cfg, cache, progress).mean(0)
    masked = [run_masked_pgd(clf, clf_name, pgd_images, clf_map, cfg, cache, "CIFAR-10",
                             cfg["n_restricted"], progress)]
    if cfg["imagenet_pgd"]:
        net = prepare_for_inference(load_imagenet_model(model_name), dev)
        imgs = load_imagenet_for(model_name, cfg["imagenet_pgd"], progress=progress)
        masked.append(run_masked_pgd(net, model_name, imgs, gmaps[model_name], cfg, cache,
                                     "ImageNet", cfg["imagenet_restricted"], progress))
    masked = pd.concat(masked, ignore_index=True)

    lam_table, lam_maps = run_prm_lambda(cfg, dev, cifar_subset(cifar, cfg["n_lambda"]), cache,
                                         progress)
    prm = chapter_prm(cfg, dev, TABLE_LAMBDA, progress)
    table_images = cifar_subset(cifar, cfg["n_table"])
    pad = padding_check(prm, table_images, cfg, cache)
    graybox = run_graybox(clf, prm, table_images, cfg, cache, padding, progress)
    info = RunInfo(CHAPTER, profile, device_name(dev), f"{clf_name} + PRM; {model_name}",
                   time.time() - t0, cache_note(cache), backend_name(dev, model=clf))
    return Ch05Results(agreement, masked, lam_table, graybox, pad, gmaps, lam_maps, info,
                       {**cfg, "prm_recipe": PRM_RECIPE, "table_lambda": TABLE_LAMBDA, "padding": padding, "eps": EPS,
                        "imagenet_model": model_name})


# --------------------------------------------------------------------------- tables for readers
ATTACK_NAMES = {"clean": "clean images", "one_pixel": "One Pixel", "jsma": "JSMA",
                "deepfool": "DeepFool", "cw": "C&W", "pgd": "PGD"}


def _interval(t: pd.DataFrame) -> list:
    return list(zip(t.acc, t.acc_lo, t.acc_hi))


def agreement_tables(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Correlations of gradient maps: within each model, and across pairs of models."""
    from ..report import for_readers
    within = table[table.model == table.other]
    across = table[table.model != table.other]
    a = for_readers(within, {"dataset": "data set", "model": "model",
                             "within_model": "two images, same model",
                             "split_half": "mean maps of two halves of the images"}, labels=2)
    b = for_readers(across, {"model": "model", "other": "other model",
                             "same_image": "same image, two models",
                             "different_images": "two images, two models",
                             "mean_maps": "mean maps of the two models"}, labels=2)
    return a, b


def masked_table(table: pd.DataFrame, dataset: str = "CIFAR-10",
                 method: str = "post-hoc blend") -> pd.DataFrame:
    """Top-1 accuracy [95% Wilson interval] against p for the top, bottom and random masks."""
    t = table[(table.dataset == dataset) & (table.method == method)]
    out = pd.DataFrame({"pixels perturbed": [f"{p:.0%}" for p in sorted(t.p.unique())]})
    for kind in MASK_KINDS:
        s = t[t.kind == kind].sort_values("p")
        out[f"{kind} p%"] = _interval(s)
    out.attrs = {"percent": [f"{k} p%" for k in MASK_KINDS], "labels": 1}
    return out


def lambda_table(table: pd.DataFrame) -> pd.DataFrame:
    """IoU with the lattice, share of the gradient on it and accuracy against lambda."""
    t = table.sort_values("lambda")
    out = pd.DataFrame({"lambda": [f"{v:g}" for v in t["lambda"]],
                        "IoU of the top 25% with the lattice": t.iou.round(3).tolist(),
                        "share of the gradient on the lattice": t.gradient_on_lattice.tolist(),
                        "top-1 accuracy": _interval(t)})
    out.attrs = {"percent": ["share of the gradient on the lattice", "top-1 accuracy"],
                 "labels": 1}
    return out


def defence_table(table: pd.DataFrame, value: str = "acc") -> pd.DataFrame:
    """Attacks down, defences across: accuracy [95% Wilson interval] (``value="acc"``) or the
    authors' defence rate (``"defence_rate"``); gray-box rows, then white-box ones."""
    t = table.assign(row=[ATTACK_NAMES.get(a, a) + ("" if w == "-" else f" ({w})")
                          for a, w in zip(table.attack, table.attacker)])
    if value == "defence_rate":
        t = t[(t.attacker == "gray-box") & (t.defence != "none")]
    rows = list(dict.fromkeys(t.row))
    defences = [d for d in DEFENCES if d in set(t.defence)]
    out = pd.DataFrame({"examples": rows})
    for d in defences:
        s = t[t.defence == d].set_index("row").reindex(rows)
        out[d] = (list(zip(s.acc, s.acc_lo, s.acc_hi)) if value == "acc" else s[value].tolist())
        if value == "acc":
            out[d] = [None if isinstance(v, tuple) and np.isnan(v[0]) else v for v in out[d]]
    out.attrs = {"percent": defences, "labels": 1}
    return out


def padding_table(table: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({"one-pixel shift": [{"none": "no shift", "replicate": "replicated border",
                                             "zeros": "zero border"}[p] for p in table.padding],
                        "clean top-1 accuracy": _interval(table)})
    out.attrs = {"percent": ["clean top-1 accuracy"], "labels": 1}
    return out


def cfg_order(attacks) -> list:
    """Attacks in the table's order."""
    return [a for a in ATTACK_NAMES if a in set(attacks)]


def claims_table(results: Ch05Results) -> pd.DataFrame:
    """Each claim of the source study, what this run measured, and whether it shows the claim's
    shape (the study's own numbers exist only in its figures)."""
    ag, m, lam, g = results.map_agreement, results.masked_pgd, results.prm_lambda, results.graybox
    cifar = ag[ag.dataset == "CIFAR-10"]
    split = cifar.split_half.dropna()
    means, same = cifar.mean_maps.dropna(), cifar.same_image.dropna()
    rows = [("The mean gradient map belongs to the model more than to the image",
             f"same image, two ResNets: r = {same.mean():.2f}; mean maps of two ResNets: "
             f"r = {means.min():.2f} to {means.max():.2f}; mean maps of two halves of the "
             f"images, one ResNet: r = {split.min():.2f} to {split.max():.2f}",
             "yes" if means.min() > same.mean() else "no")]
    for ds in dict.fromkeys(m.dataset):
        b = m[(m.dataset == ds) & (m.method == "post-hoc blend")]
        acc = {k: b[b.kind == k].set_index("p").acc for k in MASK_KINDS}
        ps = [p for p in acc["top"].index if 0 < p < 1]
        below = sum(acc["top"][p] <= acc["bottom"][p] for p in ps)
        strict = [p for p in ps if max(acc["top"][p], acc["bottom"][p]) > 0]
        gap = max(acc["bottom"][p] - acc["top"][p] for p in ps)
        between = sum(acc["top"][p] <= acc["random"][p] <= acc["bottom"][p] for p in ps)
        rows.append((f"Masked PGD ({ds}): top-p% accuracy below bottom-p% at every p",
                     f"top <= bottom at {below} of {len(ps)} p; strictly below at "
                     f"{sum(acc['top'][p] < acc['bottom'][p] for p in strict)} of {len(strict)} "
                     f"where either is above 0; largest gap {gap:.1%} (n = {int(b.n.iloc[0])}); "
                     f"random-p% between the two at {between} of {len(ps)}",
                     "yes" if below == len(ps) else "partly"))
    lam = lam.sort_values("lambda")
    first = lam[lam.iou >= 0.5]
    rows.append(("The PRM's gradient moves onto its lattice (IoU up to 1) already at small lambda",
                 f"IoU {lam.iou.iloc[0]:.2f} at lambda 0, "
                 + ", ".join(f"{i:.2f} at {v:g}" for v, i in zip(lam['lambda'], lam.iou) if v > 0)
                 + (f"; above 0.5 from lambda {first['lambda'].iloc[0]:g}" if len(first) else ""),
                 "partly: IoU reaches 1, but only at high lambda"
                 if len(first) and first["lambda"].iloc[0] > 0.5 else "yes"))
    rows.append(("Accuracy falls as lambda grows",
                 f"{lam.acc.iloc[0]:.1%} at lambda 0, {lam.acc.iloc[-1]:.1%} at lambda 1",
                 "yes" if lam.acc.iloc[-1] < lam.acc.iloc[0] - 0.02 else "no"))
    gray = g[(g.attacker == "gray-box") & (g.defence == "PRM + shift")]
    clean = float(g[(g.attack == "clean") & (g.defence == "PRM + shift")].acc.iloc[0])
    rows.append(("Gray-box: the attacks barely move the PRM + shift; it loses only its clean "
                 "accuracy",
                 f"clean {clean:.1%}; under the five attacks {gray.acc.min():.1%} to "
                 f"{gray.acc.max():.1%}",
                 "yes" if (clean - gray.acc).max() < 0.05 else "no"))
    base = g[(g.attacker == "gray-box") & ~g.defence.isin(["none", "PRM + shift"])]
    best = base.groupby("attack").acc.max()
    ours = gray.set_index("attack").acc
    wins = [a for a in best.index if ours[a] > best[a]]
    rows.append(("Gray-box: ours beats the three baselines",
                 "; ".join(f"{ATTACK_NAMES[a]}: best baseline {best[a]:.1%}, ours {ours[a]:.1%}"
                           for a in cfg_order(best.index)),
                 "yes" if len(wins) == len(best) else
                 ("no" if not wins else "only against " + ", ".join(ATTACK_NAMES[a] for a in
                                                                    cfg_order(wins)))))
    white = g[(g.attacker == "white-box") & (g.defence == "PRM + shift")]
    rows.append(("(Not claimed) an attacker who knows the PRM and averages over the shift",
                 ", ".join(f"{ATTACK_NAMES[a]} {v:.1%}" for a, v in zip(white.attack, white.acc)),
                 "the defence fails white-box"))
    return pd.DataFrame(rows, columns=["claim of the source study", "measured here", "shown?"])


def explorer(results: Ch05Results, n_images: int = 20, device=None):
    """The chapter's explorer (:func:`advlab.widgets.pixel_explorer`) on the first ``n_images``
    CIFAR-10 test images (two of every class by default), with the run's CIFAR models and
    their mean gradient maps; PGD as in the run (L-inf 0.031, its number of steps)."""
    from ..widgets import pixel_explorer
    dev = get_device(device)
    names = [n for n in results.settings["cifar_models"] if n in results.gradient_maps]
    models = {n: cifar_model(n, dev) for n in names}
    images = cifar_subset(load_cifar10("test"), n_images)
    return pixel_explorer(models, images, {n: results.gradient_maps[n] for n in names}, EPS,
                          results.settings["pgd_steps"], results.settings["seed"])
