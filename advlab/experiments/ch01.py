"""Chapter 1: Gaussian noise, Gaussian smoothing and the 2-of-3 vote.

Reproduces the source study's table (Acc_NS, Acc_SS, Acc_DS, Acc_Maj, reject rate for noise
sigma in {0, 0.125, 0.25, 0.375}, 5x5 and 7x7 kernels with blur sigma 1) on the colour ImageNet
sample images, over several noise draws, then attacks the vote with FGSM and PGD, both
ignoring the defence and through it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm import tqdm

from .. import attacks as atk
from ..cache import ResultCache, fingerprint
from ..config import RunInfo, device_name, get_device, profile_settings, resolve_profile, seed_everything
from ..data import ImageSet
from ..defences.base import ABSTAIN
from ..defences.blur_vote import BLUR_SIGMA_DEFAULT as BLUR_SIGMA
from ..defences.blur_vote import (
    BlurVote,
    add_noise,
    compose_kernels,
    equivalent_gaussian,
    gaussian_blur,
    gaussian_kernel,
    kernel_distance,
    majority_vote,
    noise_seeds,
    three_views,
)
from ..inference import backend_name
from ..metrics import summarise_draws
from ..models import load_imagenet_model, predict, prepare_for_inference
from ..models.wrappers import conv_layout
from ..zoo import load_imagenet_for
from .common import ChapterResults, cache_note

CHAPTER = "ch01"
NOISE_SIGMAS = (0.0, 0.125, 0.25, 0.375)
METRICS = ["acc_ns", "acc_ss", "acc_ds", "acc_maj", "reject"]
SOURCE_LABEL = "source study (ResNet-50)"

# The source study's table (ResNet-50, 975 colour sample images, one noise draw, 5x5 kernel).
SOURCE_TABLE = pd.DataFrame({
    "noise_sigma": NOISE_SIGMAS,
    "acc_ns": [0.8820, 0.6523, 0.3425, 0.0902],
    "acc_ss": [0.8605, 0.7148, 0.5005, 0.3097],
    "acc_ds": [0.8153, 0.6912, 0.4923, 0.3220],
    "acc_maj": [0.8697, 0.7541, 0.5682, 0.4118],
    "reject": [0.0153, 0.0656, 0.1589, 0.3076],
})

PROFILES = {
    "smoke": dict(n_images=10, draws=2, kernels=(5, 7), batch_size=16, attack_images=6,
                  epsilons=(2 / 255, 8 / 255), pgd_steps=3, seed=0),
    "full": dict(n_images=None, draws=3, kernels=(5, 7), batch_size=64, attack_images=48,
                 epsilons=(1 / 255, 2 / 255, 4 / 255, 8 / 255), pgd_steps=7, seed=0),
}


def settings(profile: str | None = None, **overrides) -> dict:
    """The profile's settings, with keyword overrides (unknown keys are an error)."""
    return profile_settings(PROFILES, "ch01", profile, **overrides)


def load_images(model_name: str, n_images: int | None = None, progress: bool = True) -> ImageSet:
    """The colour sample images, preprocessed for ``model_name`` (e.g. Resize 256, CenterCrop 224)."""
    return load_imagenet_for(model_name, limit=n_images, progress=progress)


def noise_predictions(model, images: ImageSet, noise_sigma: float, draw: int, kernels=(5, 7),
                      seed: int = 0, batch_size: int = 64, progress: bool = True) -> dict:
    """Labels for the noisy input and its single and double blur for each kernel size.

    Returns ``{"ns": (N,), "ss5": (N,), "ds5": (N,), "ss7": ...}`` as CPU long tensors.
    """
    blurs = {k: gaussian_blur(k, BLUR_SIGMA) for k in kernels}
    seeds = noise_seeds(images.y, draw, seed)
    out = {"ns": []} | {f"{v}{k}": [] for k in kernels for v in ("ss", "ds")}
    for i in tqdm(range(0, len(images), batch_size), desc=f"noise sigma={noise_sigma} draw={draw}",
                  disable=not progress, leave=False):
        x = conv_layout(add_noise(images.x[i:i + batch_size], noise_sigma, seeds[i:i + batch_size]))
        out["ns"].append(predict(model, x, batch_size))
        for k, blur in blurs.items():
            _, single, double = three_views(x, blur)
            out[f"ss{k}"].append(predict(model, single, batch_size))
            out[f"ds{k}"].append(predict(model, double, batch_size))
    return {k: torch.cat(v) for k, v in out.items()}


def score(y: torch.Tensor, ns: torch.Tensor, ss: torch.Tensor, ds: torch.Tensor) -> dict:
    """The source study's five numbers for one set of three predictions."""
    vote = majority_vote(ns, ss, ds)
    acc = lambda p: float((p == y).float().mean())  # noqa: E731
    return {"acc_ns": acc(ns), "acc_ss": acc(ss), "acc_ds": acc(ds), "acc_maj": acc(vote),
            "reject": float((vote == ABSTAIN).float().mean())}


def noise_key(model_name: str, images: ImageSet, cfg: dict, noise_sigma: float, draw: int) -> dict:
    """Everything a cached (noise sigma, draw) piece of the noise table depends on."""
    return dict(model=model_name, sigma=noise_sigma, draw=draw, seed=cfg["seed"], n=len(images),
                kernels=list(cfg["kernels"]), blur_sigma=BLUR_SIGMA, images=fingerprint(images),
                batch=cfg["batch_size"])


def run_noise(model, images: ImageSet, cfg: dict, cache: ResultCache, model_name: str,
              progress: bool = True) -> pd.DataFrame:
    """Every (noise sigma, draw) pass, cached one at a time; a row per kernel, sigma and draw."""
    rows = []
    jobs = [(s, d) for s in NOISE_SIGMAS for d in range(cfg["draws"] if s > 0 else 1)]
    for noise_sigma, draw in tqdm(jobs, desc="noise x smoothing", disable=not progress):
        key = noise_key(model_name, images, cfg, noise_sigma, draw)
        preds = cache.get_or_compute(
            "noise", key, lambda: noise_predictions(model, images, noise_sigma, draw, cfg["kernels"],
                                                    cfg["seed"], cfg["batch_size"], progress))
        for k in cfg["kernels"]:
            rows.append({"kernel": f"{k}x{k}", "noise_sigma": noise_sigma, "draw": draw,
                         **score(images.y, preds["ns"], preds[f"ss{k}"], preds[f"ds{k}"])})
    return pd.DataFrame(rows)


def source_comparison(table: pd.DataFrame, kernel: str = "5x5") -> pd.DataFrame:
    """This run's means beside the source study's (which reported the 5x5 kernel)."""
    ours = table[table.kernel == kernel].set_index("noise_sigma")[METRICS]
    theirs = SOURCE_TABLE.set_index("noise_sigma")[METRICS]
    both = pd.concat({"advlab": ours, SOURCE_LABEL: theirs}, axis=1).swaplevel(axis=1)
    return both[[(m, w) for m in METRICS for w in ("advlab", SOURCE_LABEL)]]


def example_views(model, images: ImageSet, index, noise_sigmas=NOISE_SIGMAS, kernel: int = 5,
                  draw: int = 0, seed: int = 0) -> dict:
    """Noisy inputs and their four labels (NS, SS, DS, vote) for a few images and every sigma."""
    sub = images.subset(index)
    defence = BlurVote(model, kernel, BLUR_SIGMA)
    xs, preds = [], []
    for noise_sigma in noise_sigmas:
        x = add_noise(sub.x, noise_sigma, noise_seeds(sub.y, draw, seed))
        p = defence.predict_views(x)
        xs.append(x)
        preds.append(torch.stack([p["ns"], p["ss"], p["ds"], p["vote"]], 1))
    return {"x": torch.stack(xs, 1), "preds": torch.stack(preds, 1), "sigmas": list(noise_sigmas),
            "y": sub.y, "names": sub.names}


# --------------------------------------------------------------------------- attacks
def attack_subset(images: ImageSet, n: int, seed: int) -> ImageSet:
    """A fixed random subset of ``n`` images for the (expensive) attack experiments."""
    return images.sample(n, seed)


def chapter_attacks(steps: int) -> dict[str, atk.Attack]:
    """FGSM (foolbox) and L-inf PGD (the book's PGD core, random start, step 2.5 eps / steps)."""
    return {"fgsm": atk.make("fgsm"), "pgd": atk.PGD("linf", steps, random_start=True)}


def attack_key(model_name: str, images: ImageSet, cfg: dict, attack: str, attacker: str,
               kernel: int) -> dict:
    """Everything a cached attack piece depends on (``images``: the attacked ones)."""
    return dict(model=model_name, attack=attack, attacker=attacker, eps=list(cfg["epsilons"]),
                steps=cfg["pgd_steps"], n=len(images), seed=cfg["seed"], kernel=kernel,
                images=fingerprint(images), batch=cfg["batch_size"])


def run_attacks(model, images: ImageSet, cfg: dict, cache: ResultCache, model_name: str,
                kernel: int = 5, progress: bool = True) -> pd.DataFrame:
    """FGSM and PGD against the bare model (the attacker ignores the defence) and against the
    defence's differentiable forward (mean log-softmax of the three views: the attacker knows
    the blur and the vote)."""
    sub = attack_subset(images, cfg["attack_images"], cfg["seed"])
    defence = BlurVote(model, kernel, BLUR_SIGMA)
    targets = {"ignores defence": model, "adaptive (through blur+vote)": defence}
    methods = chapter_attacks(cfg["pgd_steps"])
    rows = []
    clean = defence.predict_views(sub.x)
    rows.append({"attack": "none", "attacker": "-", "eps_255": 0.0,
                 **score(sub.y, clean["ns"], clean["ss"], clean["ds"])})
    jobs = [(a, t) for a in methods for t in targets]
    for name, who in tqdm(jobs, desc="attacks", disable=not progress):
        key = attack_key(model_name, sub, cfg, name, who, kernel)

        def compute():
            advs = atk.run(targets[who], sub.x, sub.y, methods[name], list(cfg["epsilons"]),
                           batch_size=cfg["batch_size"] // 2, seed=cfg["seed"], progress=progress)
            preds = {}
            for i, e in enumerate(advs):
                p = defence.predict_views(advs[e])
                preds.update({f"{v}_{i}": p[v] for v in ("ns", "ss", "ds")})
            return preds

        preds = cache.get_or_compute("attack", key, compute)
        for i, e in enumerate(cfg["epsilons"]):
            rows.append({"attack": name.upper(), "attacker": who, "eps_255": round(e * 255, 3),
                         **score(sub.y, preds[f"ns_{i}"], preds[f"ss_{i}"], preds[f"ds_{i}"])})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- blur composition
def kernel_check(kernel_size: int = 5, blur_sigma: float = BLUR_SIGMA,
                 x: torch.Tensor | None = None) -> pd.DataFrame:
    """How far two k x k blurs are from the source study's 7x7 claim and from the correct equivalent.

    Kernel errors compare the exact composed kernel with each candidate; with images ``x`` the
    table also gives the largest pixel difference (0-255 scale) between blurring twice and
    blurring once with the candidate, away from the borders where padding differs.
    """
    k = gaussian_kernel(kernel_size, blur_sigma)
    twice = compose_kernels(k, k)
    size, s2 = equivalent_gaussian(kernel_size, blur_sigma)
    rows = []
    for label, ks, s in [("source study: one 7x7, sigma=1", 7, blur_sigma),
                         (f"one {size}x{size}, sigma=sqrt(2)={s2:.4f}", size, s2)]:
        cand = gaussian_kernel(ks, s)
        row = {"candidate": label, "max_abs_kernel_error": kernel_distance(twice, cand),
               "relative_error": kernel_distance(twice, cand) / float(twice.max())}
        if x is not None:
            blur, once = gaussian_blur(kernel_size, blur_sigma), gaussian_blur(ks, s)
            m = size  # margin beyond every kernel's reach
            diff = (blur(blur(x)) - once(x))[..., m:-m, m:-m].abs()
            row["max_pixel_error_255"] = float(diff.max()) * 255
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- everything
@dataclass
class Ch01Results(ChapterResults):
    per_draw: pd.DataFrame
    table: pd.DataFrame
    source_comparison: pd.DataFrame
    attacks: pd.DataFrame
    kernels: pd.DataFrame
    info: RunInfo
    settings: dict = field(default_factory=dict)

    CHAPTER = CHAPTER
    TABLES = ("per_draw", "table", "source_comparison", "attacks", "kernels")
    INDEXED = ("source_comparison",)


def make_figures(results: Ch01Results) -> dict:
    """The chapter's summary figures, by file stem."""
    from .. import plots
    return {"ch01_noise_curves": plots.plot_noise_curves(results.table, SOURCE_TABLE),
            "ch01_attack_curves": plots.plot_attack_curves(results.attacks)}


def setup(profile: str | None = None, model_name: str = "efficientnet_lite0", device=None,
          progress: bool = True, **overrides):
    """Settings, device, model (eval, channels_last) and the colour images for a run."""
    cfg = settings(profile, **overrides)
    dev = get_device(device)
    seed_everything(cfg["seed"])
    model = prepare_for_inference(load_imagenet_model(model_name), dev)
    return cfg, dev, model, load_images(model_name, cfg["n_images"], progress)


def run(profile: str | None = None, model_name: str = "efficientnet_lite0", device=None,
        use_cache: bool = True, progress: bool = True, prepared=None, **overrides) -> Ch01Results:
    """The whole chapter: noise table over draws, source-study comparison, attacks, kernel check.

    ``prepared`` takes the tuple ``setup`` returned (so a notebook loads the model once).
    """
    t0 = time.time()
    profile = resolve_profile(profile)
    cfg, dev, model, images = prepared or setup(profile, model_name, device, progress, **overrides)
    cache = ResultCache(CHAPTER, enabled=use_cache)
    per_draw = run_noise(model, images, cfg, cache, model_name, progress)
    table = summarise_draws(per_draw, ["kernel", "noise_sigma"], METRICS, len(images))
    attacks = run_attacks(model, images, cfg, cache, model_name, progress=progress)
    info = RunInfo(CHAPTER, profile, device_name(dev), model_name, time.time() - t0, cache_note(cache),
                   backend_name(dev, model=model))
    return Ch01Results(per_draw, table, source_comparison(table), attacks,
                       kernel_check(x=images.x[:16]), info, {**cfg, "n_images": len(images)})


# --------------------------------------------------------------------------- tables for readers
MODEL_TITLES = {"efficientnet_lite0": "EfficientNet-Lite0", "resnet50": "ResNet-50",
                "inception_v3": "Inception v3"}
ATTACKER_LABELS = {"ignores defence": "ignores the defence",
                   "adaptive (through blur+vote)": "attacks through blur and vote"}


def _metric_labels() -> dict[str, str]:
    from ..plots import LABELS
    return {m: LABELS[m][0].upper() + LABELS[m][1:] for m in METRICS}


def noise_table(table: pd.DataFrame, kernel: str = "5x5") -> pd.DataFrame:
    """One kernel's rows of :func:`run_noise`'s summary for readers: per noise sigma, each
    rate as (mean over draws, 95% Wilson interval)."""
    t = table[table.kernel == kernel]
    labels = _metric_labels()
    out = pd.DataFrame({"Noise σ": t.noise_sigma.to_numpy()})
    for m in METRICS:
        out[labels[m]] = list(zip(t[m], t[f"{m}_lo"], t[f"{m}_hi"]))
    out.attrs = {"percent": list(labels.values()), "labels": 1}
    return out


def draw_spread(table: pd.DataFrame) -> str:
    """A sentence on how much the rates move from one noise draw to the next."""
    acc = table[[f"{m}_std" for m in METRICS if m != "reject"]].to_numpy().max()
    rej = table["reject_std"].max()
    return (f"Standard deviation over the {int(table.draws.max())} noise draws: at most "
            f"{100 * acc:.1f} points for an accuracy and {100 * rej:.1f} for the reject rate.")


def comparison_table(comparison: pd.DataFrame, model_name: str) -> pd.DataFrame:
    """:func:`source_comparison` turned on its side: a row per rate and source, a column per
    noise sigma (the models belong in the caption: this book's ``model_name``, the source
    study's ResNet-50)."""
    rows = []
    for m, label in _metric_labels().items():
        for who, name in (("advlab", "This book"), (SOURCE_LABEL, "Source study")):
            rows.append({"Rate": label, "Source": name,
                         **{f"σ = {s:g}": comparison.loc[s, (m, who)] for s in comparison.index}})
    out = pd.DataFrame(rows)
    out.attrs = {"percent": [c for c in out.columns if c.startswith("σ")], "labels": 2}
    return out


def attack_table(attacks: pd.DataFrame, attacker: str | None = None) -> pd.DataFrame:
    """:func:`run_attacks`' rows for readers; with ``attacker`` (a key of
    :data:`ATTACKER_LABELS`) only that attacker's rows and the clean row, without the
    attacker column."""
    labels = _metric_labels()
    if attacker is not None:
        if attacker not in ATTACKER_LABELS:
            raise KeyError(f"attacker must be one of {sorted(ATTACKER_LABELS)}, got {attacker!r}")
        attacks = attacks[(attacks.attack == "none") | (attacks.attacker == attacker)]
    out = attacks.assign(attack=attacks.attack.replace({"none": "None (clean)"}),
                         attacker=attacks.attacker.map(ATTACKER_LABELS).fillna("–"))
    out = out.rename(columns={"attack": "Attack", "attacker": "Attacker", "eps_255": "ε (× 1/255)",
                              **{m: ("Undefended" if m == "acc_ns" else labels[m]) for m in METRICS}})
    keep = ["Attack", *([] if attacker else ["Attacker"]), "ε (× 1/255)", "Undefended",
            *[labels[m] for m in METRICS[1:]]]
    out = out[keep]
    out.attrs = {"percent": ["Undefended", *[labels[m] for m in METRICS[1:]]], "labels": len(keep) - 6}
    return out.reset_index(drop=True)


def kernel_table(kernels: pd.DataFrame) -> pd.DataFrame:
    """:func:`kernel_check` for readers."""
    from ..report import for_readers
    columns = {"candidate": "One blur instead of two 5x5 passes",
               "max_abs_kernel_error": "Largest kernel difference",
               "relative_error": "Relative to the kernel's peak"}
    if "max_pixel_error_255" in kernels:
        columns["max_pixel_error_255"] = "Largest pixel difference (grey levels)"
    return for_readers(kernels, columns, percent=["relative_error"])
