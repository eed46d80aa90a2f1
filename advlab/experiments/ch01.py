"""Chapter 1: Gaussian noise, Gaussian smoothing and the 2-of-3 vote.

Reproduces the source study's table (Acc_NS, Acc_SS, Acc_DS, Acc_Maj, reject rate for noise
sigma in {0, 0.125, 0.25, 0.375}, 5x5 and 7x7 kernels with blur sigma 1) on the colour ImageNet
sample images, over several noise draws, then attacks the vote with FGSM and PGD, both
ignoring the defence and through it.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from tqdm import tqdm

from .. import attacks as atk
from .. import plots
from ..chapter import Chapter, ChapterResults, RunContext, Settings, stage
from ..config import RunInfo
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
from ..metrics import summarise_draws
from ..models import IMAGENET_SPECS, predict
from ..models.wrappers import conv_layout
from ..report import make_table
from ..zoo import load_imagenet_for

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

@dataclass(frozen=True)
class Ch01Settings(Settings):
    """``model``: the ImageNet classifier (``efficientnet_lite0`` offline; ``resnet50``, the
    source study's, and ``inception_v3`` download their weights); ``n_images``: the first
    colour sample images (None: all 975); ``draws``: noise draws per sigma; ``kernels``: blur
    windows (blur sigma 1); ``batch_size``: images per forward pass; the attacks: FGSM and PGD
    (``pgd_steps``, random start) at ``epsilons`` on ``attack_images`` images drawn at random."""

    model: str = "efficientnet_lite0"
    n_images: int | None = None
    draws: int = stage(3, "sweep")
    kernels: tuple[int, ...] = (5, 7)
    batch_size: int = 64
    attack_images: int = stage(48, "attacks")
    epsilons: tuple[float, ...] = stage((1 / 255, 2 / 255, 4 / 255, 8 / 255), "attacks")
    pgd_steps: int = stage(7, "attacks")

    def check(self) -> None:
        self.require(self.model in IMAGENET_SPECS,
                     f"model must be one of {sorted(IMAGENET_SPECS)}, got {self.model!r}")
        self.require(self.n_images is None or 1 <= self.n_images <= 975,
                     "n_images must be None (all 975) or in 1..975")
        self.require(self.draws >= 1, "draws must be >= 1")
        self.require(len(self.kernels) > 0 and all(k >= 3 and k % 2 for k in self.kernels),
                     "kernels must be odd window sizes >= 3")
        self.require(self.batch_size >= 1 and self.attack_images >= 1 and self.pgd_steps >= 1,
                     "batch_size, attack_images and pgd_steps must be >= 1")
        self.require(len(self.epsilons) > 0 and all(0 < e <= 1 for e in self.epsilons),
                     "epsilons must be budgets in (0, 1]")


def load_images(s: Ch01Settings, progress: bool = True) -> ImageSet:
    """The colour sample images, preprocessed for the settings' model (e.g. Resize 256,
    CenterCrop 224)."""
    return load_imagenet_for(s.model, limit=s.n_images, progress=progress)


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


def run_noise(ctx: RunContext, s: Ch01Settings, model, images: ImageSet) -> pd.DataFrame:
    """Every (noise sigma, draw) pass, one piece each; a row per kernel, sigma and draw."""
    rows = []
    jobs = [(sig, d) for sig in NOISE_SIGMAS for d in range(s.draws if sig > 0 else 1)]
    for noise_sigma, draw in tqdm(jobs, desc="noise x smoothing", disable=not ctx.progress):
        preds = ctx.piece(
            "noise", lambda: noise_predictions(model, images, noise_sigma, draw, s.kernels, s.seed,
                                               s.batch_size, ctx.progress),
            settings=s.part("noise"), model=model, images=images, noise_sigma=noise_sigma,
            draw=draw, blur_sigma=BLUR_SIGMA)
        for k in s.kernels:
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


#: The attacks and their names for readers: FGSM (the book's, one gradient for every epsilon)
#: and L-inf PGD from a random start (the book's PGD core, step 2.5 eps / steps).
ATTACK_LABELS = {"fgsm": "FGSM", "linf_pgd": "PGD"}


def chapter_attacks(steps: int) -> dict[str, atk.Attack]:
    return {"fgsm": atk.make("fgsm"), "linf_pgd": atk.PGD("linf", steps, random_start=True)}


def run_attacks(ctx: RunContext, s: Ch01Settings, model, images: ImageSet,
                kernel: int = 5) -> pd.DataFrame:
    """FGSM and PGD against the bare model (the attacker ignores the defence) and against the
    defence's differentiable forward (mean log-softmax of the three views: the attacker knows
    the blur and the vote); every adversarial set then goes through the defence."""
    sub = attack_subset(images, s.attack_images, s.seed)
    defence = BlurVote(model, kernel, BLUR_SIGMA)
    targets = {"ignores defence": model, "adaptive (through blur+vote)": defence}
    methods = chapter_attacks(s.pgd_steps)
    rows = []
    clean = defence.predict_views(sub.x)
    rows.append({"attack": "none", "attacker": "-", "eps_255": 0.0,
                 **score(sub.y, clean["ns"], clean["ss"], clean["ds"])})
    jobs = [(a, t) for a in methods for t in targets]
    for name, who in tqdm(jobs, desc="attacks", disable=not ctx.progress):
        def compute():
            advs = atk.run(targets[who], sub.x, sub.y, methods[name], list(s.epsilons),
                           batch_size=s.batch_size // 2, seed=s.seed, progress=ctx.progress)
            preds = {}
            for i, e in enumerate(advs):
                p = defence.predict_views(advs[e])
                preds.update({f"{v}_{i}": p[v] for v in ("ns", "ss", "ds")})
            return preds

        preds = ctx.piece("attack", compute, settings=s.part("attacks"), attack=methods[name],
                          crafted_on=targets[who], defence=defence, images=sub)
        for i, e in enumerate(s.epsilons):
            rows.append({"attack": ATTACK_LABELS[name], "attacker": who, "eps_255": round(e * 255, 3),
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
    for label, ks, s in [("source study: one 7×7 blur, σ = 1", 7, blur_sigma),
                         (f"one {size}×{size} blur, σ = √2 = {s2:.4f}", size, s2)]:
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
    settings: Ch01Settings
    n_images: int = 0

    CHAPTER = "ch01"
    TABLES = ("per_draw", "table", "source_comparison", "attacks", "kernels")
    INDEXED = ("source_comparison",)

    def extras(self) -> dict:
        return {"n_images": self.n_images}


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
    columns = {"candidate": "One blur instead of two 5×5 passes",
               "max_abs_kernel_error": "Largest kernel difference",
               "relative_error": "Relative to the kernel's peak"}
    if "max_pixel_error_255" in kernels:
        columns["max_pixel_error_255"] = "Largest pixel difference (grey levels)"
    return for_readers(kernels, columns, percent=["relative_error"])


def _model_title(r: Ch01Results) -> str:
    return MODEL_TITLES.get(r.settings.model, r.settings.model)


TABLES = {
    "tab-ch01-kernels": lambda r: make_table(
        kernel_table(r.kernels), "tab-ch01-kernels",
        "How far one blur is from two 5×5, σ = 1 passes: on the kernels, and on the first 16 "
        "images (grey levels of 255)."),
    "tab-ch01-noise-5x5": lambda r: make_table(
        noise_table(r.table, "5x5"), "tab-ch01-noise-5x5",
        "5×5 kernel: accuracy of each view and of the vote, and the vote's reject rate, by noise "
        f"σ (mean over the noise draws [95% Wilson interval], {r.n_images:,} images).",
        note=draw_spread(r.table)),
    "tab-ch01-noise-7x7": lambda r: make_table(
        noise_table(r.table, "7x7"), "tab-ch01-noise-7x7",
        "7×7 kernel: the same rates as the 5×5 table (mean over the noise draws [95% Wilson "
        "interval])."),
    "tab-ch01-source": lambda r: make_table(
        comparison_table(r.source_comparison, r.settings.model), "tab-ch01-source",
        f"5×5 kernel: this book's rates ({_model_title(r)}, mean over the noise draws) beside "
        "the source study's (ResNet-50, one noise draw), by noise σ."),
    "tab-ch01-attacks-plain": lambda r: make_table(
        attack_table(r.attacks, "ignores defence"), "tab-ch01-attacks-plain",
        "An attacker who ignores the defence: FGSM and PGD (L∞) on the bare model, "
        f"{r.settings.attack_images} images. Accuracy of the undefended model, of each view and "
        "of the vote, and the vote's reject rate."),
    "tab-ch01-attacks-adaptive": lambda r: make_table(
        attack_table(r.attacks, "adaptive (through blur+vote)"), "tab-ch01-attacks-adaptive",
        "An attacker who attacks through the blur and the vote (PGD on the surrogate), "
        f"{r.settings.attack_images} images: the same rates as for the attacker who ignores the "
        "defence."),
}


class Chapter01(Chapter):
    id = "ch01"
    title = "Noise, Gaussian smoothing and the 2-of-3 vote"
    Settings = Ch01Settings
    profiles = {
        "smoke": Ch01Settings(n_images=10, draws=2, batch_size=16, attack_images=6,
                              epsilons=(2 / 255, 8 / 255), pgd_steps=3),
        "full": Ch01Settings(),
    }
    model_setting = "model"
    tables = TABLES
    figures = {"ch01_noise_curves": lambda r: plots.plot_noise_curves(r.table, SOURCE_TABLE),
               "ch01_attack_curves": lambda r: plots.plot_attack_curves(r.attacks)}

    def run(self, ctx: RunContext, s: Ch01Settings) -> Ch01Results:
        """Noise table over draws, source-study comparison, attacks, kernel check."""
        with ctx.stage("model and images"):
            model = ctx.load_model(s.model)
            images = load_images(s, ctx.progress)
        with ctx.stage("noise x smoothing"):
            per_draw = run_noise(ctx, s, model, images)
            table = summarise_draws(per_draw, ["kernel", "noise_sigma"], METRICS, len(images))
        with ctx.stage("attacks"):
            attacks = run_attacks(ctx, s, model, images)
        with ctx.stage("kernel check"):
            kernels = kernel_check(x=images.x[:16])
        return Ch01Results(per_draw, table, source_comparison(table), attacks, kernels,
                           ctx.info(s.model, model), s, len(images))


CHAPTER = Chapter01()
