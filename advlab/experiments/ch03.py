"""Chapter 3: input transformations against FGSM, I-FGSM and DeepFool, then BPDA and EOT.

The source study (Liu & Cai, after Xu et al. 2018's feature squeezing and Guo et al. 2018):
ImageNet images the classifier gets right are attacked by FGSM, I-FGSM and DeepFool with the
classifier alone in view (the attacker ignores the defence); each transform (colour-depth
reduction removing 2, 4 or 6 bits; median windows 1x3, 3x1, 3x3, 5x5; TV minimisation on
10%, 25% or 100% of the pixels; K-means colour quantisation; and Guo et al.'s JPEG) is then
put in front of the classifier, and its *defence success rate* is plotted against the
attack's normalised L2 size.

Definitions used throughout:

* normalised L2 (Guo et al.): ``||x_adv - x||_2 / ||x||_2`` on the [0, 1] pixels, averaged
  over the attacked images (:func:`advlab.metrics.normalised_l2`); the value on the
  classifier's normalised input, as Guo et al.'s code measured it, is kept beside it.
* defence success rate: of the adversarial images that fool the undefended classifier, the
  fraction the defended classifier labels correctly (:func:`defence_success`), with a 95%
  Wilson interval over those images.
* "10%, 25%, 100% of the pixels" for TV minimisation: the fraction of pixels *kept* in the
  data term (ART's ``TotalVarMin`` convention; 100% is plain TV denoising).  Read as pixels
  dropped, 100% would leave no data term and a constant image.

Then the attack the source study left out: L2 PGD through each defence (BPDA with the
identity's gradient, and EOT over TV minimisation's random pixel mask), beside the same PGD
against the bare classifier, at the same L2 budgets (Athalye et al. 2018).
"""
from __future__ import annotations

import hashlib
import platform
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from .. import attacks as atk
from ..cache import ResultCache
from ..config import RunInfo, device_name, get_device, profile_settings, resolve_profile, seed_everything
from ..data import ImageSet, imagenet_classes
from ..defences import transforms as T
from ..defences.base import Preprocessed
from ..inference import backend_name
from ..metrics import normalised_l2, wilson_ci
from ..models import load_imagenet_model, predict, prepare_for_inference
from ..zoo import load_imagenet_for
from .common import ChapterResults, cache_note

CHAPTER = "ch03"
ATTACKS = ("FGSM", "I-FGSM", "DeepFool")
FAMILIES = ("bit depth", "median", "TVM", "K-means", "JPEG")
MEDIAN_WINDOWS = ((1, 3), (3, 1), (3, 3), (5, 5))

_COMMON = dict(bits_removed=(2, 4, 6), median_windows=MEDIAN_WINDOWS, tv_weight=T.TV_WEIGHT,
               seed=0)
PROFILES = {
    # the notebook under nbmake: minutes matter more than numbers
    "smoke": dict(_COMMON, n_images=2, pool=8, fgsm_eps=(8,), ifgsm_eps=(8,), ifgsm_steps=2,
                  deepfool_l2=(0.05,), deepfool_steps=4, deepfool_candidates=2,
                  tvm_keep=(0.1, 0.25, 1.0), tvm_steps=10, kmeans_k=(8,), jpeg_quality=(75,),
                  adaptive_images=2, adaptive_l2=(0.05,), adaptive_steps=1, eot_draws=2, adaptive_batch=8,
                  batch_size=8, throughput_images=1, cost_budget_s=0.0, tv_check_images=1),
    # the stored outputs, computed on a GPU (about 3 minutes on an H100; see the notebook for
    # the CPU estimate): 100 of a random 300 sample images, the source study's axis to L2 ~0.1
    "full": dict(_COMMON, n_images=100, pool=300, fgsm_eps=(1, 2, 3, 5, 8, 12, 16),
                 ifgsm_eps=(1, 2, 3, 5, 8, 12, 16, 20), ifgsm_steps=10,
                 deepfool_l2=(0.01, 0.02, 0.04, 0.06, 0.08, 0.1), deepfool_steps=50,
                 deepfool_candidates=10, tvm_keep=(0.1, 0.25, 1.0), tvm_steps=T.TV_STEPS,
                 kmeans_k=(8,), jpeg_quality=(75,), adaptive_images=100,
                 adaptive_l2=(0.01, 0.02, 0.05), adaptive_steps=10, eot_draws=8, adaptive_batch=400, batch_size=50,
                 throughput_images=8, cost_budget_s=2.0, tv_check_images=4),
    # the source study's protocol at its size, for a GPU (with --model inception_v3)
    "paper": dict(_COMMON, n_images=None, pool=None,
                  fgsm_eps=(0.5, 1, 2, 3, 4, 5, 6, 8, 10, 12, 14),
                  ifgsm_eps=(0.5, 1, 2, 3, 4, 5, 6, 8, 10, 12, 14), ifgsm_steps=10,
                  deepfool_l2=(0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1),
                  deepfool_steps=50, deepfool_candidates=10, tvm_keep=(0.1, 0.25, 0.5, 1.0),
                  tvm_steps=T.TV_STEPS, kmeans_k=(4, 8, 16), jpeg_quality=(75,),
                  adaptive_images=500, adaptive_l2=(0.01, 0.02, 0.03, 0.05, 0.08),
                  adaptive_steps=40, eot_draws=16, adaptive_batch=512, batch_size=64,
                  throughput_images=64, cost_budget_s=2.0,
                  tv_check_images=8),
}


def settings(profile: str | None = None, **overrides) -> dict:
    """The profile's settings, with keyword overrides (unknown keys are an error).

    Strengths: ``fgsm_eps`` and ``ifgsm_eps`` are L-inf budgets in grey levels (x/255);
    ``deepfool_l2`` and ``adaptive_l2`` are normalised L2 budgets.
    """
    cfg = profile_settings(PROFILES, CHAPTER, profile, **overrides)
    for key in ("n_images", "pool"):
        if cfg[key] is not None and cfg[key] < 1:
            raise ValueError(f"{key} must be None (all) or >= 1, got {cfg[key]}")
    if cfg["pool"] is not None and cfg["n_images"] is not None and cfg["pool"] < cfg["n_images"]:
        raise ValueError(f"pool ({cfg['pool']}) must hold at least n_images ({cfg['n_images']})")
    for key in ("fgsm_eps", "ifgsm_eps", "deepfool_l2", "adaptive_l2"):
        if not cfg[key] or min(cfg[key]) <= 0:
            raise ValueError(f"{key} must be a non-empty list of positive strengths, got {cfg[key]}")
    for key in ("ifgsm_steps", "deepfool_steps", "tvm_steps", "adaptive_steps", "eot_draws",
                "batch_size", "adaptive_batch", "adaptive_images", "throughput_images"):
        if cfg[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {cfg[key]}")
    if any(not 0 < k <= 1 for k in cfg["tvm_keep"]):
        raise ValueError(f"tvm_keep fractions must be in (0, 1], got {cfg['tvm_keep']}")
    return cfg


# --------------------------------------------------------------------------- the defences
@dataclass(frozen=True)
class Setting:
    """One transform with its setting: the family it belongs to and the module."""

    family: str
    name: str
    transform: nn.Module

    @property
    def randomized(self) -> bool:
        return bool(getattr(self.transform, "randomized", False))

    def key(self) -> str:
        """What identifies its results in the cache: the module with all its parameters."""
        return repr(self.transform)


def defence_settings(cfg: dict) -> dict[str, Setting]:
    """Every transform the chapter evaluates, by name, in the order of the source study."""
    out = [Setting("bit depth", f"remove {k} bits", T.BitDepth(8 - k, "truncate"))
           for k in cfg["bits_removed"]]
    out += [Setting("median", f"{h}x{w}", T.MedianFilter((h, w))) for h, w in cfg["median_windows"]]
    out += [Setting("TVM", f"TVM {round(100 * k)}%", T.TVM(k, cfg["tv_weight"], cfg["tvm_steps"]))
            for k in cfg["tvm_keep"]]
    out += [Setting("K-means", f"K-means k={k}", T.KMeansQuantize(k, seed=cfg["seed"]))
            for k in cfg["kmeans_k"]]
    out += [Setting("JPEG", f"JPEG {q}", T.JPEG(q)) for q in cfg["jpeg_quality"]]
    return {s.name: s for s in out}


def defended(model: nn.Module, setting: Setting) -> Preprocessed:
    """The setting's transform in front of ``model``; attackers go through it with BPDA
    (the identity's gradient)."""
    return Preprocessed(model, setting.transform, randomized=setting.randomized, name=setting.name)


# --------------------------------------------------------------------------- measures
def defence_success(y: torch.Tensor, undefended: torch.Tensor, defended_pred: torch.Tensor) -> tuple[int, int]:
    """The defence success rate's numerator and denominator: how many of the adversarial
    images that fool the undefended classifier (``undefended != y``) the defended classifier
    labels correctly, and how many fool it."""
    if not (y.shape == undefended.shape == defended_pred.shape):
        raise ValueError("y and both predictions must have the same shape")
    fooled = undefended != y
    return int((fooled & (defended_pred == y)).sum()), int(fooled.sum())


def rate_row(successes: int, n: int, prefix: str) -> dict:
    """``{prefix: k/n, prefix_lo, prefix_hi}`` with a 95% Wilson interval (NaN when n = 0)."""
    if n == 0:
        return {prefix: np.nan, f"{prefix}_lo": np.nan, f"{prefix}_hi": np.nan}
    lo, hi = wilson_ci(successes, n)
    return {prefix: successes / n, f"{prefix}_lo": float(lo), f"{prefix}_hi": float(hi)}


def model_normalisation(model: nn.Module) -> tuple:
    """The classifier's input mean and std (the :class:`~advlab.models.Normalized` wrapper's)."""
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    if mean is None or std is None:
        return None, None
    return mean.flatten().tolist(), std.flatten().tolist()


def images_id(images: ImageSet) -> str:
    """Identity of an image set for cache keys: its size and a hash of its file names."""
    return f"{len(images)}:{hashlib.sha256(chr(10).join(images.names).encode()).hexdigest()[:12]}"


# --------------------------------------------------------------------------- cache pieces
class Pieces:
    """The chapter's result cache, recording in each piece the device it was computed on (the
    keys do not name the device, so pieces computed on a GPU serve a run on the CPU)."""

    def __init__(self, cache: ResultCache, device: torch.device):
        self.cache, self.device, self.devices = cache, device_name(device), Counter()

    def get(self, name: str, key: dict, compute) -> dict:
        def tagged() -> dict:
            return {**compute(), "device": self.device}
        value = self.cache.get_or_compute(name, key, tagged)
        self.devices[value.get("device", "unrecorded")] += 1
        return value

    def note(self) -> str:
        """Run-info note: cache hits and where the pieces were computed."""
        where = ", ".join(f"{d}: {n}" for d, n in self.devices.most_common())
        parts = [cache_note(self.cache), f"pieces computed on {where}" if where else ""]
        return "; ".join(p for p in parts if p)


# --------------------------------------------------------------------------- images
def choose_images(model, model_name: str, cfg: dict, pieces: Pieces, device: torch.device,
                  progress: bool = False) -> tuple[ImageSet, dict]:
    """``n_images`` images drawn at random (seeded) among those of a random ``pool`` of the
    colour sample images that the undefended classifier labels correctly, and the pool's
    counts.  The chosen images are a cache piece (8-bit, as decoded), so a resumed run, or
    one on another machine, needs neither the JPEGs nor the pool's predictions."""
    from ..data import imagenet_manifest
    manifest = hashlib.sha256("".join(r["sha256"] for r in imagenet_manifest()).encode()).hexdigest()[:12]
    key = dict(model=model_name, pool=cfg["pool"], n=cfg["n_images"], seed=cfg["seed"],
               manifest=manifest)

    def compute() -> dict:
        every = load_imagenet_for(model_name, progress=progress)
        pool = every if cfg["pool"] is None else every.sample(cfg["pool"], cfg["seed"])
        preds = predict(model, pool.x, cfg["batch_size"], device, amp=False)
        correct = pool.subset(preds == pool.y)
        n = len(correct) if cfg["n_images"] is None else cfg["n_images"]
        if len(correct) < n:
            raise ValueError(f"only {len(correct)} of the {len(pool)} pool images are classified "
                             f"correctly, fewer than n_images={n}; raise pool")
        chosen = correct.sample(n, cfg["seed"])
        return {"x": torch.round(chosen.x * 255).to(torch.uint8), "y": chosen.y,
                "names": chosen.names, "pool": len(pool), "pool_correct": len(correct)}

    v = pieces.get("images", key, compute)
    images = ImageSet(v["x"].float().div_(255), v["y"], imagenet_classes(), "cache", list(v["names"]))
    return images, {"pool": int(v["pool"]), "pool_correct": int(v["pool_correct"])}


# --------------------------------------------------------------------------- evaluation
def defended_predict(model, setting: Setting, x: torch.Tensor, cfg: dict,
                     device: torch.device) -> torch.Tensor:
    """Labels of ``model(transform(x))`` in batches, float32 throughout (no autocast on
    CUDA: attacked images sit near a decision boundary); a randomised transform draws from
    the global RNG seeded with ``cfg["seed"]``, so the labels repeat."""
    cuda = [device] if device.type == "cuda" else []
    out = []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(cfg["seed"])
        for i in range(0, len(x), cfg["batch_size"]):
            z = setting.transform(x[i:i + cfg["batch_size"]].to(device))
            out.append(predict(model, z, cfg["batch_size"], device, amp=False))
    return torch.cat(out)


def evaluate(model, settings_: dict[str, Setting], x: torch.Tensor, cfg: dict,
             device: torch.device) -> dict[str, torch.Tensor]:
    """Labels of the undefended classifier and of every defence on ``x`` (CPU tensors)."""
    out = {"undefended": predict(model, x, cfg["batch_size"], device, amp=False)}
    for name, s in settings_.items():
        out[name] = defended_predict(model, s, x, cfg, device)
    return out


def _key(base: dict, settings_: dict[str, Setting], **more) -> dict:
    return {**base, "defences": [s.key() for s in settings_.values()], **more}


def run_clean(model, images: ImageSet, settings_, cfg, pieces, base, device) -> pd.DataFrame:
    """Clean accuracy of each defence on the chosen images (all of which the undefended
    classifier gets right): what each transform costs before any attack."""
    preds = pieces.get("clean", _key(base, settings_),
                                 lambda: evaluate(model, settings_, images.x, cfg, device))
    rows = []
    for name in ["undefended", *settings_]:
        fam = "none" if name == "undefended" else settings_[name].family
        ok = int((preds[name] == images.y).sum())
        rows.append({"family": fam, "defence": name, "n": len(images), "correct": ok,
                     **rate_row(ok, len(images), "acc")})
    return pd.DataFrame(rows)


def deepfool_delta(model, images: ImageSet, cfg, pieces, base, progress) -> torch.Tensor:
    """DeepFool's minimal perturbations (float16 in the cache, 2 bytes a value)."""
    key = dict(base, steps=cfg["deepfool_steps"], candidates=cfg["deepfool_candidates"])

    def compute():
        adv = atk.run(model, images.x, images.y, "deepfool", None, batch_size=cfg["batch_size"],
                      seed=cfg["seed"], progress=progress, steps=cfg["deepfool_steps"],
                      candidates=cfg["deepfool_candidates"])[None]
        return {"delta": (adv - images.x).half()}
    return pieces.get("deepfool", key, compute)["delta"].float()


def scale_to_l2(x: torch.Tensor, delta: torch.Tensor, budget: float) -> torch.Tensor:
    """``x + delta`` with each image's ``delta`` stretched along itself to the normalised L2
    ``budget`` (DeepFool's overshoot, chosen per image), clipped to [0, 1]."""
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    factor = budget * x.flatten(1).norm(dim=1) / norms
    return (x + delta * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def attack_jobs(cfg: dict) -> list[tuple[str, float | None]]:
    """(attack, strength) pairs: FGSM and I-FGSM at L-inf budgets (x/255); DeepFool's
    minimal perturbation (strength None) and the same stretched to L2 budgets."""
    return ([("FGSM", e) for e in cfg["fgsm_eps"]] + [("I-FGSM", e) for e in cfg["ifgsm_eps"]]
            + [("DeepFool", None)] + [("DeepFool", b) for b in cfg["deepfool_l2"]])


def adversarial(model, images: ImageSet, attack: str, strength, cfg, pieces, base,
                progress) -> torch.Tensor:
    """Adversarial versions of ``images`` for one (attack, strength), against the bare
    classifier."""
    if attack == "DeepFool":
        delta = deepfool_delta(model, images, cfg, pieces, base, progress)
        if strength is None:
            return (images.x + delta).clamp(0, 1)
        return scale_to_l2(images.x, delta, strength)
    name, params = ("fgsm", {}) if attack == "FGSM" else ("bim", {"steps": cfg["ifgsm_steps"]})
    return atk.run(model, images.x, images.y, name, [strength / 255], batch_size=cfg["batch_size"],
                   seed=cfg["seed"], progress=progress, **params)[strength / 255]


def _oblivious_key(base, settings_, cfg, attack, strength) -> dict:
    return _key(base, settings_, attack=attack, strength=strength,
                steps=cfg["ifgsm_steps"] if attack == "I-FGSM" else None,
                deepfool=(cfg["deepfool_steps"], cfg["deepfool_candidates"])
                if attack == "DeepFool" else None)


def run_oblivious(model, images, settings_, cfg, pieces, base, device, progress) -> pd.DataFrame:
    """The source study's experiment: every (attack, strength) against the bare classifier,
    then every defence on the result.  One cache piece per (attack, strength)."""
    mean, std = model_normalisation(model)
    rows = []
    for attack, strength in tqdm(attack_jobs(cfg), desc="oblivious attacks", disable=not progress):
        key = _oblivious_key(base, settings_, cfg, attack, strength)

        def compute():
            x_adv = adversarial(model, images, attack, strength, cfg, pieces, base, progress)
            out = evaluate(model, settings_, x_adv, cfg, device)
            out["l2"] = normalised_l2(images.x, x_adv)
            if mean is not None:
                out["l2_model"] = normalised_l2(images.x, x_adv, mean, std)
            return out

        piece = pieces.get("oblivious", key, compute)
        rows += curve_rows(images.y, piece, settings_, attack=attack,
                           strength=np.nan if strength is None else strength)
    return pd.DataFrame(rows)


def curve_rows(y, piece: dict, settings_, **labels) -> list[dict]:
    """One row per defence: mean normalised L2, how many images fool the undefended
    classifier, the defence success rate and the defended accuracy (both with Wilson
    intervals)."""
    und = piece["undefended"]
    common = {**labels, "l2": float(piece["l2"].mean()),
              "l2_model": float(piece["l2_model"].mean()) if "l2_model" in piece else np.nan,
              "n": len(y), "fooled": int((und != y).sum())}
    rows = [{**common, "family": "none", "defence": "undefended",
             **rate_row(int((und == y).sum()), len(y), "acc"), "success": 0,
             **rate_row(0, common["fooled"], "rate")}]
    for name, s in settings_.items():
        k, n = defence_success(y, und, piece[name])
        rows.append({**common, "family": s.family, "defence": name, "success": k,
                     **rate_row(k, n, "rate"),
                     **rate_row(int((piece[name] == y).sum()), len(y), "acc")})
    return rows


# --------------------------------------------------------------------------- adaptive attack
def adaptive_target(model, setting: Setting, eot_draws: int) -> nn.Module:
    """What the adaptive attacker differentiates: the defence through BPDA, averaged over
    ``eot_draws`` random masks (EOT) when the transform is randomised."""
    d = defended(model, setting)
    return atk.EOT(d, eot_draws) if setting.randomized else d


def run_adaptive(model, images: ImageSet, settings_, cfg, pieces, base, device,
                 progress) -> pd.DataFrame:
    """L2 PGD (the book's PGD core, random start, ``adaptive_steps`` steps of 2.5 eps / steps)
    at each budget, once against the bare classifier (then every defence on the result, as in
    the source study) and once through each defence (BPDA, EOT).  The L2 budget is
    ``b * mean ||x||_2`` over the attacked images, so the mean normalised L2 is close to b;
    rows report the measured value."""
    sub = images.sample(cfg["adaptive_images"], cfg["seed"])
    norm = float(sub.x.flatten(1).norm(dim=1).mean())
    pgd = atk.PGD("l2", cfg["adaptive_steps"], random_start=True)
    sbase = dict(base, images=images_id(sub), steps=cfg["adaptive_steps"])
    rows = []
    jobs = [(b, None) for b in cfg["adaptive_l2"]] + [(b, n) for b in cfg["adaptive_l2"] for n in settings_]
    for budget, name in tqdm(jobs, desc="L2 PGD, oblivious and adaptive", disable=not progress):
        eps = budget * norm
        if name is None:     # one attack on the bare classifier serves every defence
            def compute():
                x_adv = atk.run(model, sub.x, sub.y, pgd, [eps], batch_size=cfg["batch_size"],
                                seed=cfg["seed"], progress=progress)[eps]
                return {**evaluate(model, settings_, x_adv, cfg, device),
                        "l2": normalised_l2(sub.x, x_adv)}
            piece = pieces.get("pgd_oblivious", _key(sbase, settings_, budget=budget), compute)
            rows += curve_rows(sub.y, piece, settings_, attacker="oblivious", budget=budget)
            continue
        s = settings_[name]
        draws = cfg["eot_draws"] if s.randomized else 1
        key = dict(sbase, budget=budget, defence=s.key(), eot=draws,
                   pass_size=max(1, cfg["adaptive_batch"] // draws))

        def compute():
            target = adaptive_target(model, s, draws)
            batch = max(1, cfg["adaptive_batch"] // draws)   # images x draws per pass
            x_adv = atk.run(target, sub.x, sub.y, pgd, [eps], batch_size=batch, seed=cfg["seed"],
                            progress=progress)[eps]
            return {"undefended": predict(model, x_adv, cfg["batch_size"], device, amp=False),
                    name: defended_predict(model, s, x_adv, cfg, device),
                    "l2": normalised_l2(sub.x, x_adv)}
        piece = pieces.get("pgd_adaptive", key, compute)
        rows += [r for r in curve_rows(sub.y, piece, {name: s}, attacker="adaptive", budget=budget)
                 if r["defence"] == name]
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the claims
def _points(curves: pd.DataFrame, attacks, lo: float = -np.inf, hi: float = np.inf) -> pd.DataFrame:
    """The defence success rates at the (attack, strength) points of ``attacks`` whose mean
    normalised L2 lies in [lo, hi), one column per defence."""
    c = curves[curves.attack.isin(attacks) & (curves.l2 >= lo) & (curves.l2 < hi)
               & (curves.defence != "undefended")]
    return c.pivot_table(index=["attack", "l2"], columns="defence", values="rate")


def _beats(points: pd.DataFrame, winner: str, losers: list[str]) -> tuple[int, int, float]:
    """At how many points ``winner``'s rate exceeds every loser's, of how many, and the mean
    margin over the best loser."""
    if points.empty or winner not in points or any(loser not in points for loser in losers):
        return 0, 0, np.nan
    margin = points[winner] - points[losers].max(axis=1)
    return int((margin > 0).sum()), len(margin), float(margin.mean())


def _drop(curves: pd.DataFrame, attack: str, defence: str) -> float:
    """Success rate at the weakest minus at the strongest point of ``attack`` (by L2)."""
    c = curves[(curves.attack == attack) & (curves.defence == defence)].sort_values("l2")
    return float(c.rate.iloc[0] - c.rate.iloc[-1]) if len(c) > 1 else np.nan


def _verdict(hits: int, total: int) -> str:
    if total == 0:
        return "not tested"
    return "holds" if hits == total else "does not hold" if hits == 0 else "partly"


def _combine(*verdicts: str) -> str:
    tested = [v for v in verdicts if v != "not tested"]
    if not tested:
        return "not tested"
    if all(v == "holds" for v in tested) and len(tested) == len(verdicts):
        return "holds"
    return "does not hold" if all(v == "does not hold" for v in tested) else "partly"


def _fmt(attack: str, hits: int, total: int, margin: float) -> str:
    return f"{attack}: {hits}/{total} points" + ("" if total == 0 else f" (mean margin {margin:+.2f})")


STABLE = 0.10   # "stable" / "holds": the rate falls by at most 10 points from weakest to strongest


def claims_table(curves: pd.DataFrame, clean: pd.DataFrame) -> pd.DataFrame:
    """The source study's claims, one row each, with the verdict (holds / partly / does not
    hold / not tested) and the numbers behind it.  A comparison claim holds when it is true at
    every (attack, strength) point it covers, does not hold at none, partly otherwise;
    "stable" means a fall of at most :data:`STABLE` from the weakest to the strongest attack."""
    rows = []

    def comparison(attacks, winner, losers, lo=-np.inf, hi=np.inf):
        parts, verdicts = [], []
        for a in attacks:
            h, t, m = _beats(_points(curves, [a], lo, hi), winner, losers)
            parts.append(_fmt(a, h, t, m))
            verdicts.append(_verdict(h, t))
        return parts, verdicts

    p, v = comparison(["FGSM", "I-FGSM"], "remove 2 bits", ["remove 4 bits", "remove 6 bits"], hi=0.04)
    rows.append(("2-bit removal beats 4 and 6 bits while L2 < 0.04 (FGSM, I-FGSM)", _combine(*v), "; ".join(p)))

    p, v = comparison(["FGSM"], "remove 4 bits", ["remove 2 bits", "remove 6 bits"], lo=0.04)
    rows.append(("4-bit removal is the best against FGSM as the attack grows (L2 >= 0.04)",
                 _combine(*v), "; ".join(p)))

    d6, d4 = _drop(curves, "DeepFool", "remove 6 bits"), _drop(curves, "DeepFool", "remove 4 bits")
    parts = ["not tested"] * 2 if np.isnan(d6) or np.isnan(d4) else [
        "holds" if d6 <= STABLE else "does not hold",
        "holds" if d4 > STABLE and d4 > d6 else "does not hold"]
    rows.append(("Against DeepFool, 6-bit removal holds and 4-bit removal deteriorates",
                 _combine(*parts), f"fall from weakest to strongest DeepFool: 6 bits {d6:+.2f}, "
                 f"4 bits {d4:+.2f} (stable: at most {STABLE:.2f})"))

    p1, v1 = comparison(["FGSM", "I-FGSM"], "1x3", ["3x3"], hi=0.06)
    p2, v2 = comparison(["FGSM", "I-FGSM"], "3x1", ["3x3"], hi=0.06)
    p3, v3 = comparison(["FGSM", "I-FGSM"], "3x3", ["1x3", "3x1"], lo=0.06)
    rows.append(("1x3 and 3x1 beat 3x3 below L2 0.06, 3x3 wins above (FGSM, I-FGSM)",
                 _combine(*v1, *v2, *v3),
                 "below 0.06, 1x3 > 3x3: " + "; ".join(p1) + " | 3x1 > 3x3: " + "; ".join(p2)
                 + " | above 0.06, 3x3 > both: " + "; ".join(p3)))

    windows = [f"{h}x{w}" for h, w in MEDIAN_WINDOWS]
    p, v = comparison(["DeepFool"], "3x3", [w for w in windows if w != "3x3"])
    d55 = _drop(curves, "DeepFool", "5x5")
    acc = clean.set_index("defence").acc
    blurs = bool(all(w in acc for w in windows)) and acc["5x5"] == min(acc[w] for w in windows)
    stable = "not tested" if np.isnan(d55) else "holds" if d55 <= STABLE else "does not hold"
    rows.append(("Against DeepFool, 3x3 is the best window at every strength; 5x5 is stable but "
                 "blurs too much", _combine(*v, stable, "holds" if blurs else "does not hold"),
                 "3x3 best: " + "; ".join(p) + f" | 5x5 fall {d55:+.2f} | clean accuracy "
                 + ", ".join(f"{w} {acc[w]:.2f}" for w in windows if w in acc)))

    tvm = sorted(curves[curves.family == "TVM"].defence.unique())
    km = sorted(curves[curves.family == "K-means"].defence.unique())
    parts, verdicts = [], []
    for t in tvm:
        h, n, m = _beats(_points(curves, ATTACKS), t, km)
        parts.append(_fmt(f"{t} > {', '.join(km)}", h, n, m))
        verdicts.append(_verdict(h, n))
    rows.append(("TVM beats K-means (every attack and strength)", _combine(*verdicts) if verdicts
                 else "not tested", "; ".join(parts)))

    others = [t for t in tvm if t != "TVM 10%"]
    p, v = comparison(list(ATTACKS), "TVM 10%", others)
    rows.append(("TVM on 10% of the pixels beats 25% and 100%", _combine(*v), "; ".join(p)))
    return pd.DataFrame(rows, columns=["claim", "verdict", "evidence"])


# --------------------------------------------------------------------------- cost and examples
def _best_rate(fn, n: int, repeats: int, budget_s: float = 1.0) -> float:
    """Images per second of the fastest call after a warm-up call (which also compiles TV
    minimisation's step): at least ``repeats`` timed calls, more while they take under
    ``budget_s`` in all.  On a shared machine the fastest call is the one least slowed by
    other jobs."""
    with torch.no_grad():
        fn()
        best, spent, calls = np.inf, 0.0, 0
        while calls < repeats or spent < budget_s:
            t0 = time.perf_counter()
            fn()
            took = time.perf_counter() - t0
            best, spent, calls = min(best, took), spent + took, calls + 1
    return n / best


def _references(x: torch.Tensor, cfg: dict) -> dict:
    """The per-image code a user would otherwise reach for, by defence name: numpy, scipy's
    median filter, scikit-image's TV denoising per image, scikit-learn's KMeans, PIL's JPEG."""
    import io

    from PIL import Image
    from scipy import ndimage
    from skimage.restoration import denoise_tv_chambolle
    from sklearn.cluster import KMeans

    arrays = [im.permute(1, 2, 0).numpy().astype(np.float64) for im in x.cpu()]
    each = lambda f: (lambda: [f(a) for a in arrays])  # noqa: E731

    def pil_jpeg(a, q):
        buf = io.BytesIO()
        Image.fromarray((a * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=q)
        return np.asarray(Image.open(buf))

    def sk_kmeans(a, k):
        km = KMeans(k, n_init=1, random_state=0).fit(a.reshape(-1, 3))
        return km.cluster_centers_[km.labels_]

    refs = {}
    for k in cfg["bits_removed"]:
        refs[f"remove {k} bits"] = ("numpy, per image", each(lambda a, k=k: (v := np.round(a * 255)) - v % 2 ** k))
    for h, w in cfg["median_windows"]:
        refs[f"{h}x{w}"] = ("scipy.ndimage.median_filter, per image",
                            each(lambda a, h=h, w=w: ndimage.median_filter(a, size=(h, w, 1), mode="mirror")))
    refs["TVM 100%"] = ("skimage denoise_tv_chambolle, per image (its own stopping rule)",
                        each(lambda a: denoise_tv_chambolle(a, weight=cfg["tv_weight"], channel_axis=-1)))
    art = art_total_var_min()
    if art is not None:
        xa = x.cpu().permute(0, 2, 3, 1).numpy()
        for keep in cfg["tvm_keep"]:
            if keep < 1:
                tvm = art(prob=keep, norm=2, lamb=cfg["tv_weight"], max_iter=10, verbose=False)
                refs[f"TVM {round(100 * keep)}%"] = (
                    "ART TotalVarMin (its default 10 L-BFGS-B iterations), per image",
                    lambda tvm=tvm: [tvm(xa[i:i + 1]) for i in range(len(xa))])
    for k in cfg["kmeans_k"]:
        refs[f"K-means k={k}"] = ("sklearn KMeans(n_init=1) on all pixels, per image",
                                  each(lambda a, k=k: sk_kmeans(a, k)))
    for q in cfg["jpeg_quality"]:
        refs[f"JPEG {q}"] = ("PIL, per image", each(lambda a, q=q: pil_jpeg(a, q)))
    return refs


def art_total_var_min():
    """The Adversarial Robustness Toolbox's ``TotalVarMin`` class when ART is importable (it is
    not a dependency; install it for the cost table only, e.g. ``pip install --no-deps
    --target /tmp/art adversarial-robustness-toolbox`` and add that folder to PYTHONPATH)."""
    try:
        from art.defences.preprocessor import TotalVarMin
    except Exception:   # not installed, or an ART that does not import here
        return None
    return TotalVarMin


def throughput(settings_: dict[str, Setting], x: torch.Tensor, cfg: dict, repeats: int = 2) -> pd.DataFrame:
    """Images per second of each transform alone on the CPU (the batched torch code, the whole
    batch in one call) and of the per-image reference beside it, with the ratio.  Everything
    runs on one thread (torch, and the references' OpenMP/BLAS pools): the references are
    single-threaded, and on a machine shared with other jobs two-thread torch calls stall
    (bit-depth reduction ran at about 100 images/s on 2 threads and 2,500 on 1)."""
    from threadpoolctl import threadpool_limits
    x = x.cpu()
    refs = _references(x, cfg)
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            for name, s in settings_.items():
                ours = _best_rate(lambda: s.transform(x), len(x), repeats, cfg["cost_budget_s"])
                ref_name, ref = refs.get(name, ("", None))
                theirs = _best_rate(ref, len(x), repeats, cfg["cost_budget_s"]) if ref is not None else np.nan
                rows.append({"family": s.family, "defence": name, "images": len(x), "img_per_s": ours,
                             "reference": ref_name, "ref_img_per_s": theirs, "speedup": ours / theirs})
    finally:
        torch.set_num_threads(threads)
    return pd.DataFrame(rows)


def cpu_name() -> str:
    """The CPU model the cost table was measured on (part of its cache key)."""
    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return model


def tv_tolerance(x: torch.Tensor, cfg: dict, factor: int = 10) -> pd.DataFrame:
    """How far the fixed budget of ``tvm_steps`` iterations is from the optimum on these
    images: the relative objective gap to ``factor`` times as many iterations, and the mean
    pixel difference in grey levels, per kept fraction."""
    rows = []
    g = torch.Generator(device=x.device).manual_seed(cfg["seed"])
    for keep in cfg["tvm_keep"]:
        mask = None if keep == 1 else T.bernoulli_mask(x, keep, generator=g)
        z = T.tv_minimize(x, mask, cfg["tv_weight"], cfg["tvm_steps"])
        ref = T.tv_minimize(x, mask, cfg["tv_weight"], factor * cfg["tvm_steps"])
        f, f_ref = T.tv_objective(z, x, mask, cfg["tv_weight"]), T.tv_objective(ref, x, mask, cfg["tv_weight"])
        rows.append({"keep": keep, "steps": cfg["tvm_steps"], "reference_steps": factor * cfg["tvm_steps"],
                     "objective_gap": float(((f - f_ref) / f_ref).max()),
                     "mean_pixel_diff_255": float((z - ref).abs().mean()) * 255})
    return pd.DataFrame(rows)


def cached_table(pieces: Pieces, name: str, key: dict, compute) -> pd.DataFrame:
    """A table through the cache (numeric columns as float64 tensors, text as lists)."""
    def store() -> dict:
        t = compute()
        return {c: (torch.tensor(t[c].to_numpy(dtype=np.float64))
                    if pd.api.types.is_numeric_dtype(t[c]) else t[c].astype(str).tolist())
                for c in t.columns}
    stored = pieces.get(name, key, store)
    return pd.DataFrame({c: (v.numpy() if isinstance(v, torch.Tensor) else v)
                         for c, v in stored.items() if c != "device"})


def example_index(images: ImageSet, settings_, cfg, pieces: Pieces, base: dict) -> int:
    """The first image that FGSM at the middle strength fools (read from that attack's cache
    piece, which :func:`run_oblivious` has filled), else 0."""
    strength = cfg["fgsm_eps"][len(cfg["fgsm_eps"]) // 2]
    piece = pieces.get("oblivious", _oblivious_key(base, settings_, cfg, "FGSM", strength),
                       lambda: {"undefended": images.y})     # not reached after run_oblivious
    fooled = (piece["undefended"] != images.y).nonzero().flatten()
    return int(fooled[0]) if len(fooled) else 0


def example_views(model, images: ImageSet, settings_, cfg, pieces: Pieces, base: dict,
                  index: int = 0, device=None) -> dict:
    """The source study's Figure 2 for one image: FGSM at the middle strength, each
    transform's output and its delta (output - adversarial input), with the labels."""
    sub = images.subset([index])
    strength = cfg["fgsm_eps"][len(cfg["fgsm_eps"]) // 2]

    def compute() -> dict:
        x_adv = atk.run(model, sub.x, sub.y, "fgsm", [strength / 255], seed=cfg["seed"],
                        progress=False)[strength / 255]
        out = {name: defended_input(s, x_adv, cfg, device) for name, s in settings_.items()}
        labels = [int(predict(model, z, 1, device, amp=False)[0]) for z in out.values()]
        return {"x_adv": x_adv[0], "outputs": torch.stack([v[0] for v in out.values()]).half(),
                "labels": torch.tensor(labels),
                "adv_label": int(predict(model, x_adv, 1, device, amp=False)[0])}

    v = pieces.get("example", dict(base, index=index, strength=strength,
                                   defences=[s.key() for s in settings_.values()]), compute)
    names = list(settings_)
    return {"x": sub.x[0], "x_adv": v["x_adv"], "y": int(sub.y[0]), "attack": "FGSM",
            "strength": strength, "adv_label": int(v["adv_label"]),
            "outputs": {k: v["outputs"][i].float() for i, k in enumerate(names)},
            "labels": {k: int(v["labels"][i]) for i, k in enumerate(names)},
            "families": {k: s.family for k, s in settings_.items()}}


def defended_input(setting: Setting, x: torch.Tensor, cfg: dict, device) -> torch.Tensor:
    """The transform's output on ``x`` (CPU), its random draws seeded with ``cfg["seed"]``."""
    device = device or torch.device("cpu")
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(cfg["seed"])
        return setting.transform(x.to(device)).cpu()


# --------------------------------------------------------------------------- everything
@dataclass
class Ch03Results(ChapterResults):
    clean: pd.DataFrame
    curves: pd.DataFrame
    adaptive: pd.DataFrame
    claims: pd.DataFrame
    throughput: pd.DataFrame
    tv_tolerance: pd.DataFrame
    info: RunInfo
    settings: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)
    classes: tuple = ()

    CHAPTER = CHAPTER
    TABLES = ("clean", "curves", "adaptive", "claims", "throughput", "tv_tolerance")

    def extras(self) -> dict:
        c = self.curves[self.curves.defence == "undefended"]
        ratio = float((c.l2_model / c.l2).mean()) if c.l2_model.notna().any() else None
        return {"l2_model_over_l2": ratio}


FIGURE_GROUPS = {
    "ch03_bit_depth": ("bit depth", ["bit depth"]),
    "ch03_median": ("median filter", ["median"]),
    "ch03_tvm_kmeans": ("TV minimisation against K-means (and JPEG)", ["TVM", "K-means", "JPEG"]),
    "ch03_tvm_pixels": ("TV minimisation: fraction of pixels kept", ["TVM"]),
}


FIGURES = ("ch03_examples", *FIGURE_GROUPS, "ch03_adaptive")


def make_figure(results: Ch03Results, stem: str):
    """One of the chapter's figures by file stem (see :data:`FIGURES`)."""
    from .. import plots
    if stem == "ch03_examples":
        return plots.plot_processed(results.examples, results.classes)
    if stem == "ch03_adaptive":
        return plots.plot_adaptive_curves(results.adaptive)
    if stem not in FIGURE_GROUPS:
        raise ValueError(f"unknown figure {stem!r}; choose one of {FIGURES}")
    title, families = FIGURE_GROUPS[stem]
    sub = results.curves[results.curves.family.isin(families)]
    return plots.plot_rate_curves(sub, title=f"Defence success rate: {title}")


def make_figures(results: Ch03Results) -> dict:
    """The source study's Figures 2-6 (processed images and deltas; success rate against
    normalised L2 per family and attack) and the adaptive comparison, by file stem."""
    return {stem: make_figure(results, stem) for stem in FIGURES
            if stem != "ch03_examples" or results.examples}


def setup(profile: str | None = None, model_name: str = "efficientnet_lite0", device=None,
          progress: bool = True, use_cache: bool = True, **overrides):
    """Settings, device, model (eval, channels_last), the cache and the chosen images with the
    pool's counts (the tuple ``run`` takes as ``prepared``)."""
    cfg = settings(profile, **overrides)
    dev = get_device(device)
    seed_everything(cfg["seed"])
    model = prepare_for_inference(load_imagenet_model(model_name), dev)
    pieces = Pieces(ResultCache(CHAPTER, enabled=use_cache), dev)
    images, pool = choose_images(model, model_name, cfg, pieces, dev, progress)
    return cfg, dev, model, pieces, images, pool


def run(profile: str | None = None, model_name: str = "efficientnet_lite0", device=None,
        use_cache: bool = True, progress: bool = True, prepared=None, cost: bool = True,
        **overrides) -> Ch03Results:
    """The whole chapter: image choice, clean cost, the source study's (oblivious) attacks,
    the claims, L2 PGD oblivious and adaptive, transform throughput and TV tolerance.

    ``prepared`` takes the tuple ``setup`` returned (so a notebook loads the model once).
    ``cost=False`` skips the CPU timing table (a GPU run, whose CPU is not the reader's).
    """
    t0 = time.time()
    profile = resolve_profile(profile)
    cfg, dev, model, pieces, images, pool = prepared or setup(profile, model_name, device, progress,
                                                               use_cache, **overrides)
    settings_ = defence_settings(cfg)
    base = dict(model=model_name, images=images_id(images), seed=cfg["seed"], batch=cfg["batch_size"])
    clean = run_clean(model, images, settings_, cfg, pieces, base, dev)
    curves = run_oblivious(model, images, settings_, cfg, pieces, base, dev, progress)
    adaptive = run_adaptive(model, images, settings_, cfg, pieces, base, dev, progress)
    n_cost = min(cfg["throughput_images"], len(images))
    if cost:
        cost_t = cached_table(pieces, "throughput", dict(base, n=n_cost, cpu=cpu_name(), threads=1,
                                                        budget=cfg["cost_budget_s"],
                                                        art=art_total_var_min() is not None,
                                                        defences=[s.key() for s in settings_.values()]),
                              lambda: throughput(settings_, images.x[:n_cost], cfg))
    else:
        cost_t = pd.DataFrame(columns=["family", "defence", "images", "img_per_s", "reference",
                                       "ref_img_per_s", "speedup"])
    tol = cached_table(pieces, "tv_tolerance", dict(base, keep=list(cfg["tvm_keep"]), steps=cfg["tvm_steps"],
                                                    n=cfg["tv_check_images"], weight=cfg["tv_weight"]),
                       lambda: tv_tolerance(images.x[:cfg["tv_check_images"]].to(dev), cfg))
    examples = example_views(model, images, settings_, cfg, pieces, base,
                             index=example_index(images, settings_, cfg, pieces, base), device=dev)
    info = RunInfo(CHAPTER, profile, device_name(dev), model_name, time.time() - t0, pieces.note(),
                   backend_name(dev, model=model))
    return Ch03Results(clean, curves, adaptive, claims_table(curves, clean), cost_t, tol, info,
                       {**cfg, "n_images": len(images), "pool_size": pool["pool"],
                        "pool_correct": pool["pool_correct"]},
                       examples, imagenet_classes())
