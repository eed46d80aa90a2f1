"""Chapter 2: detecting adversarial MNIST digits with MC-dropout uncertainty and five-crop
agreement (the source study: a reproduction of Alshemali, Graham & Kalita 2019, "Toward robust
image classification").

Protocol.  The 10,000 MNIST test digits are split in two halves: images 0-4999 are the
validation half (strength calibration and threshold fitting), images 5000-9999 the test half.
In each half the digits the undefended LeNet misclassifies are dropped; every remaining digit
enters the mixed set once clean and once attacked (FGSM, BIM, JSMA), about 4,960 + 4,960
images, the size of the source study's Table 2.  The detector's L, H and C are fitted on the
validation half and applied to the test half; fitting them on the test half itself (what the
source study did) is reported beside.  The detector is
:class:`advlab.defences.mc_dropout.MCDropoutDetector`; the adaptive attacker descends its
published objective (:func:`advlab.attacks.defence_aware_pgd`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch
from sklearn.metrics import auc, roc_curve

from .. import attacks as atk
from .. import plots
from ..chapter import Chapter, ChapterResults, RunContext, Settings, stage
from ..config import RunInfo
from ..data import ImageSet, load_mnist
from ..defences import mc_dropout as md
from ..inference import predict
from ..metrics import detection_counts, labelled_clean_breakdown, roc_hull
from ..report import make_table
from ..training.lenet import RECIPE

ATTACKS = ("fgsm", "bim", "bim_a", "jsma")
HALF = 5000  # the test set is split into two halves of this size

# The source study's tables: its own reproduction ("source study") and the original paper ("paper").
SOURCE_TABLE1 = pd.DataFrame({"attack": ["fgsm", "bim", "jsma"], "source_study": [0.585, 0.496, 0.511],
                            "paper": [0.590, 0.500, 0.520]})
SOURCE_TABLE2 = pd.DataFrame([
    ("fgsm", "source study", 515, 194, 4766, 4445, 0.929), ("fgsm", "paper", 252, 134, 4796, 4725, 0.961),
    ("bim", "source study", 323, 28, 4928, 4633, 0.965), ("bim", "paper", 249, 104, 4826, 4728, 0.964),
    ("jsma", "source study", 116, 66, 4893, 4843, 0.982), ("jsma", "paper", 85, 74, 4856, 4892, 0.983),
], columns=["attack", "source", "FN", "FP", "TN", "TP", "detection_acc"])
SOURCE_TABLE3 = pd.DataFrame([
    ("fgsm", "source study", 0.958, 0.0, 0.002, 0.039, 0.961), ("fgsm", "paper", 0.973, 0.0, 0.017, 0.010, 0.990),
    ("bim", "source study", 0.993, 0.0, 0.000, 0.006, 0.994), ("bim", "paper", 0.978, 0.0, 0.012, 0.001, 0.990),
    ("jsma", "source study", 0.986, 0.0, 0.011, 0.002, 0.998), ("jsma", "paper", 0.985, 0.0, 0.014, 0.001, 0.999),
], columns=["attack", "source", "clean_correct", "clean_incorrect", "adv_correct",
            "adv_incorrect", "classification_acc"])


@dataclass(frozen=True)
class Ch02Settings(Settings):
    """``epochs``: the LeNet's training; ``n_half``: digits of each half considered; the
    strengths tried for calibration (``fgsm_eps``, ``bim_eps`` (BIM and BIM-A), ``jsma_gamma``)
    on the first ``calib_images`` validation digits; ``bim_steps``: BIM's iterations; the
    detector's ``mc_passes`` and ``crop_size``; ``grid``: quantiles of the uncertainty tried for
    L and H; the adaptive attack: ``adaptive_steps`` of PGD on ``adaptive_images`` test digits,
    EOT over ``n_eot`` dropout masks, ``unc_weight`` times the uncertainty in its loss."""

    epochs: int = RECIPE["epochs"]
    n_half: int = HALF
    calib_images: int = stage(500, "calibration")
    mc_passes: int = stage(50, "detector")
    crop_size: int = stage(24, "detector")
    fgsm_eps: tuple[float, ...] = stage((0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.3), "sweep")
    bim_eps: tuple[float, ...] = stage((0.1, 0.15, 0.2, 0.225, 0.25, 0.275, 0.3), "sweep")
    bim_steps: int = 10
    jsma_gamma: tuple[float, ...] = stage((0.1, 0.15, 0.2, 0.25, 0.3), "sweep")
    grid: int = stage(64, "fit")
    adaptive_images: int = stage(1000, "adaptive")
    adaptive_steps: int = stage(40, "adaptive")
    n_eot: int = stage(16, "adaptive")
    unc_weight: float = stage(10.0, "adaptive")
    batch_size: int = 1000

    def check(self) -> None:
        self.require(0 < self.n_half <= HALF, f"n_half must be in 1..{HALF}")
        for name in ("epochs", "calib_images", "bim_steps", "adaptive_images", "adaptive_steps",
                     "batch_size"):
            self.require(getattr(self, name) >= 1, f"{name} must be >= 1")
        self.require(self.mc_passes >= 2, "mc_passes must be >= 2 (a spread needs two passes)")
        self.require(self.n_eot >= 1, "n_eot must be >= 1")
        self.require(1 <= self.crop_size <= 28, "crop_size must be in 1..28 (MNIST is 28 px)")
        self.require(self.grid >= 2, "grid must be >= 2")
        for name in ("fgsm_eps", "bim_eps", "jsma_gamma"):
            values = getattr(self, name)
            self.require(len(values) > 0 and all(0 < v <= 1 for v in values),
                         f"{name} must be strengths in (0, 1]")
        self.require(self.unc_weight >= 0, "unc_weight must be >= 0")

    def strengths(self, attack: str) -> tuple[float, ...]:
        """The calibration strengths of ``attack`` (BIM-A shares BIM's)."""
        return {"fgsm": self.fgsm_eps, "bim": self.bim_eps, "bim_a": self.bim_eps,
                "jsma": self.jsma_gamma}[attack]

    def detector(self, model) -> md.MCDropoutDetector:
        """The detector these settings describe, in front of ``model``."""
        return md.MCDropoutDetector(model, passes=self.mc_passes, crop_size=self.crop_size,
                                    n_eot=self.n_eot, unc_weight=self.unc_weight)


# --------------------------------------------------------------------------- data
@dataclass
class Halves:
    """Correctly classified test digits of the validation and the test half."""

    val: ImageSet
    test: ImageSet
    clean_acc: float          # deterministic accuracy on the whole test set (both halves)
    val_index: torch.Tensor   # positions in the MNIST test set
    test_index: torch.Tensor


def split_halves(model, n_half: int, batch_size: int = 1000) -> Halves:
    """Images ``[0, n_half)`` and ``[5000, 5000 + n_half)`` of the MNIST test set, keeping
    the ones the model (dropout off) classifies correctly."""
    if not 0 < n_half <= HALF:
        raise ValueError(f"n_half must be in 1..{HALF}")
    test = load_mnist("test")
    pred = _predict(model, test.x, batch_size)
    right = pred == test.y
    idx = torch.arange(len(test))
    val = idx[(idx < n_half) & right]
    tst = idx[(idx >= HALF) & (idx < HALF + n_half) & right]
    return Halves(test.subset(val), test.subset(tst), float(right.float().mean()), val, tst)


def _predict(model, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Labels with dropout off, in float32: BIM-A and JSMA stop right at the boundary."""
    return predict(model.eval(), x, batch_size, amp=False)


# --------------------------------------------------------------------------- attacks
def make_attack(name: str, s: Ch02Settings) -> atk.Attack:
    """FGSM; BIM (foolbox, ``bim_steps`` steps of 2.5 eps / steps); BIM-A (the same BIM,
    stopping each image once it is misclassified); JSMA (targets drawn uniformly among the
    wrong classes; the strength is gamma, the largest fraction of pixels it may change)."""
    if name == "jsma":
        return atk.make("jsma")
    return atk.make(name) if name == "fgsm" else atk.make(name, steps=s.bim_steps)


def run_attack(model, images: ImageSet, name: str, strength: float, s: Ch02Settings,
               progress: bool = True) -> torch.Tensor:
    """Adversarial versions of ``images`` under one attack at one strength (CPU tensor)."""
    if name == "jsma":
        targets = atk.random_targets(images.y, 10, seed=s.seed)
        jsma = atk.make("jsma", gamma=strength)
        return atk.run(model, images.x, images.y, jsma, targets=targets,
                       batch_size=min(s.batch_size, 256), seed=s.seed, progress=progress)[None]
    return atk.run(model, images.x, images.y, make_attack(name, s), [strength],
                   batch_size=s.batch_size, seed=s.seed, progress=progress)[float(strength)]


def attack_name(name: str) -> str:
    """The attack's name for readers ("BIM-A"), from the attack itself."""
    return atk.make(name).name


def source_attack(name: str) -> str:
    """The source study's attack a row is compared with: it does not say which BIM it ran."""
    return "bim" if name == "bim_a" else name


def calibrate(ctx: RunContext, s: Ch02Settings, model, images: ImageSet) -> pd.DataFrame:
    """Undefended accuracy on the 50/50 mixed set for every candidate strength, on the first
    ``calib_images`` validation digits.  All of them are classified correctly, so mixed
    accuracy = (1 + accuracy on the attacked copies) / 2."""
    sub = images.subset(torch.arange(min(s.calib_images, len(images))))
    rows = []
    for name in ATTACKS:
        for strength in s.strengths(name):
            def compute(name=name, strength=strength):
                adv = run_attack(model, sub, name, strength, s, ctx.progress)
                return {"pred": _predict(model, adv)}
            pred = ctx.piece("calibration", compute, settings=s.part("calibration"), model=model,
                             images=sub, attack=name, strength=strength)["pred"]
            adv_acc = float((pred == sub.y).float().mean())
            rows.append(dict(attack=name, strength=strength, adv_acc=adv_acc,
                             mixed_acc=(1 + adv_acc) / 2))
    table = pd.DataFrame(rows)
    table["target"] = table.attack.map(source_attack).map(dict(zip(SOURCE_TABLE1.attack, SOURCE_TABLE1.paper)))
    return table


def choose_strengths(calibration: pd.DataFrame) -> dict[str, float]:
    """Per attack, the strength whose mixed accuracy is closest to the paper's Table 1
    (ties: the weaker attack)."""
    out = {}
    for name, t in calibration.groupby("attack", sort=False):
        gap = (t.mixed_acc - t.target).abs().round(6)
        out[name] = float(t.loc[gap[gap == gap.min()].index, "strength"].min())
    return out


# --------------------------------------------------------------------------- the detector
@dataclass
class Scored:
    """Everything the detector needs for one mixed set (clean then attacked), CPU tensors."""

    y: torch.Tensor            # true labels
    is_adv: torch.Tensor       # bool
    pred_plain: torch.Tensor   # undefended prediction (dropout off)
    pred: torch.Tensor         # MC-dropout provisional class
    uncertainty: torch.Tensor
    agreement: torch.Tensor    # crops agreeing with ``pred``

    def subset(self, mask: torch.Tensor) -> Scored:
        return Scored(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def mixed(clean: dict, adv: dict, y: torch.Tensor) -> Scored:
    cat = lambda k: torch.cat([clean[k], adv[k]])  # noqa: E731
    return Scored(torch.cat([y, y]), torch.cat([torch.zeros(len(y), dtype=torch.bool),
                                                torch.ones(len(y), dtype=torch.bool)]),
                  cat("pred_plain"), cat("pred"), cat("uncertainty"), cat("agreement"))


def evaluate(s: Scored, th: md.Thresholds) -> dict:
    """Table 2 counts and Table 3 shares of one mixed set under thresholds ``th``."""
    flagged = md.flag_adversarial(s.uncertainty, s.agreement, th)
    middle = (s.uncertainty >= th.low) & (s.uncertainty <= th.high)
    return {**detection_counts(flagged, s.is_adv),
            **labelled_clean_breakdown(flagged, s.is_adv, s.pred, s.y),
            "crops_used": float(middle.float().mean())}


def roc_table(s: Scored, grid: int) -> tuple[pd.DataFrame, dict]:
    """AUROC of uncertainty alone, crops alone (5 - agreement) and the hybrid (ROC convex hull
    of its (L, H, C) grid)."""
    adv = s.is_adv.numpy()
    curves = {"uncertainty": roc_curve(adv, s.uncertainty.numpy())[:2],
              "crops": roc_curve(adv, (md.N_CROPS - s.agreement).numpy())[:2]}
    env = roc_hull(md.operating_points(s.uncertainty, s.agreement, s.is_adv, grid))
    curves["hybrid"] = (env[:, 0], env[:, 1])
    return pd.DataFrame([{name: auc(fpr, tpr) for name, (fpr, tpr) in curves.items()}]), curves


# --------------------------------------------------------------------------- adaptive attack
def run_adaptive(ctx: RunContext, s: Ch02Settings, model, images: ImageSet, th: md.Thresholds,
                 eps: float, clean: dict, plain: dict[str, dict]) -> pd.DataFrame:
    """The detector, thresholds fixed, against attacks that ignore it (``plain``: attack name
    -> scores) and against adaptive PGD with and without the uncertainty penalty, on the first
    ``adaptive_images`` test digits."""
    n = min(s.adaptive_images, len(images))
    sub = images.subset(torch.arange(n))
    take = lambda d: {k: v[:n] for k, v in d.items()}  # noqa: E731
    variants = [(f"{attack_name(name)}, ignores the detector", name) for name in plain]
    variants += [("Adaptive PGD + EOT", 0.0), ("Adaptive PGD + EOT + uncertainty penalty", s.unc_weight)]
    rows = []
    for label, which in variants:
        if isinstance(which, str):
            scored = take(plain[which])
        else:
            detector = s.replace(unc_weight=which).detector(model)

            def compute(detector=detector):
                adv = atk.defence_aware_pgd(detector, sub.x, sub.y, eps, steps=s.adaptive_steps,
                                            batch_size=s.batch_size, seed=s.seed,
                                            progress=ctx.progress)
                return {"adv": adv, **detector.score(adv, s.batch_size, s.seed)}
            scored = ctx.piece("adaptive", compute, settings=s.part("detector", "adaptive"),
                               detector=detector, images=sub, eps=eps)
            scored = {k: v for k, v in scored.items() if k not in ("adv", "computed_on")}
        mix = mixed(take(clean), scored, sub.y)
        adv_only = mix.subset(mix.is_adv)
        flagged = md.flag_adversarial(adv_only.uncertainty, adv_only.agreement, th)
        ev = evaluate(mix, th)
        rows.append(dict(attack=label, eps=eps, n=n,
                         undefended_acc=float((adv_only.pred_plain == adv_only.y).float().mean()),
                         median_uncertainty=float(adv_only.uncertainty.median()),
                         detected=float(flagged.float().mean()),
                         evaded_and_wrong=float((~flagged & (adv_only.pred != adv_only.y)).float().mean()),
                         mixed_detection_acc=ev["detection_acc"],
                         classification_acc=ev["classification_acc"]))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- everything
@dataclass
class Ch02Results(ChapterResults):
    calibration: pd.DataFrame
    table1: pd.DataFrame
    thresholds: pd.DataFrame
    table2: pd.DataFrame
    table3: pd.DataFrame
    auroc: pd.DataFrame
    adaptive: pd.DataFrame
    crop_agreement: pd.DataFrame
    info: RunInfo
    settings: Ch02Settings
    clean_acc: float = 0.0
    chosen: dict = field(default_factory=dict)        # attack -> chosen strength
    n_val: int = 0
    n_test: int = 0
    curves: dict = field(default_factory=dict)        # attack -> {detector: (fpr, tpr)}
    uncertainty: dict = field(default_factory=dict)   # attack -> (clean u, adv u) on the test half
    examples: dict = field(default_factory=dict)      # clean and attacked test digits

    CHAPTER = "ch02"
    TABLES = ("calibration", "table1", "thresholds", "table2", "table3", "auroc", "adaptive",
              "crop_agreement")

    def extras(self) -> dict:
        return {"strengths": self.chosen, "clean_acc": self.clean_acc, "n_val": self.n_val,
                "n_test": self.n_test}


def _beside_source(ours: pd.DataFrame, source: pd.DataFrame) -> pd.DataFrame:
    """Our rows of each attack followed by the source study's rows for the attack it compares with."""
    parts = []
    for name in ATTACKS:
        parts += [ours[ours.attack == name],
                  source[source.attack == source_attack(name)].assign(attack=name)]
    return pd.concat(parts)


def run_chapter(ctx: RunContext, s: Ch02Settings) -> Ch02Results:
    """Calibration, attacks, the detector on both halves, ROC, adaptive attack."""
    with ctx.stage("model and halves"):
        model = ctx.load_model("lenet", epochs=s.epochs)
        halves = split_halves(model, s.n_half, s.batch_size)
    with ctx.stage("calibration"):
        calibration = calibrate(ctx, s, model, halves.val)
        chosen = choose_strengths(calibration)

    detector = s.detector(model)
    scored, advs = {}, {}
    with ctx.stage("attacks and scores"):
        for half in ("val", "test"):
            images = getattr(halves, half)
            entry = ctx.piece("scores", lambda: detector.score(images.x, s.batch_size, s.seed),
                              settings=s.part("detector"), detector=detector, images=images)
            scored[half, "clean"] = {k: v for k, v in entry.items() if k != "computed_on"}
            for name in ATTACKS:
                def compute(name=name):
                    adv = run_attack(model, images, name, chosen[name], s, ctx.progress)
                    return {"adv": adv, **detector.score(adv, s.batch_size, s.seed)}
                entry = ctx.piece("attacked scores", compute, settings=s.part("detector"),
                                  detector=detector, images=images, attack=name,
                                  strength=chosen[name])
                advs[half, name] = entry["adv"]
                scored[half, name] = {k: v for k, v in entry.items() if k not in ("adv", "computed_on")}

    t1, th_rows, t2, t3, aurocs, curves, unc = [], [], [], [], [], {}, {}
    with ctx.stage("thresholds and tables"):
        for name in ATTACKS:
            val = mixed(scored["val", "clean"], scored["val", name], halves.val.y)
            test = mixed(scored["test", "clean"], scored["test", name], halves.test.y)
            adv_acc = float((scored["test", name]["pred_plain"] == halves.test.y).float().mean())
            t1.append(dict(attack=name, strength=chosen[name], n_mixed=len(test.y),
                           mixed_acc=float((test.pred_plain == test.y).float().mean()),
                           adv_acc=adv_acc, attack_success=1 - adv_acc))
            for fit_on, fit_set in (("validation", val), ("test (as the source study)", test)):
                th, fit_acc = md.fit_thresholds(fit_set.uncertainty, fit_set.agreement,
                                                fit_set.is_adv, s.grid)
                th_rows.append(dict(attack=name, fit_on=fit_on, low=th.low, high=th.high,
                                    count=th.count, fit_detection_acc=fit_acc))
                ev = evaluate(test, th)
                t2.append(dict(attack=name, source=f"advlab, fit on {fit_on}",
                               **{k: ev[k] for k in ("FN", "FP", "TN", "TP", "detection_acc")}))
                t3.append(dict(attack=name, source=f"advlab, fit on {fit_on}",
                               **{k: ev[k] for k in ("clean_correct", "clean_incorrect", "adv_correct",
                                                     "adv_incorrect", "classification_acc", "kept",
                                                     "crops_used")}))
            table, curves[name] = roc_table(test, s.grid)
            aurocs.append(table.assign(attack=name))
            clean_u = scored["test", "clean"]["uncertainty"]
            unc[name] = (clean_u.numpy(), scored["test", name]["uncertainty"].numpy())
    thresholds = pd.DataFrame(th_rows)

    # The adaptive attacker faces the detector at its best against an L-inf attack of the
    # same budget: the thresholds fitted on validation against BIM-A.
    ref = thresholds[(thresholds.attack == "bim_a") & (thresholds.fit_on == "validation")].iloc[0]
    with ctx.stage("adaptive attack"):
        adaptive = run_adaptive(ctx, s, model, halves.test,
                                md.Thresholds(ref.low, ref.high, int(ref["count"])),
                                chosen["bim_a"], scored["test", "clean"],
                                {a: scored["test", a] for a in ("bim_a", "bim")
                                 if chosen[a] == chosen["bim_a"]})

    table1 = pd.DataFrame(t1)
    for col in ("source_study", "paper"):
        table1[col] = table1.attack.map(source_attack).map(dict(zip(SOURCE_TABLE1.attack, SOURCE_TABLE1[col])))
    table2 = _beside_source(pd.DataFrame(t2), SOURCE_TABLE2)
    table3 = _beside_source(pd.DataFrame(t3), SOURCE_TABLE3)
    auroc = pd.concat(aurocs)[["attack", "uncertainty", "crops", "hybrid"]]
    examples = {"clean": halves.test.x[:8], "y": halves.test.y[:8],
                **{name: advs["test", name][:8] for name in ATTACKS}}
    agree = scored["test", "clean"]["agreement"]
    crops = pd.DataFrame({"agreeing": range(md.N_CROPS + 1),
                          "share": [float((agree == k).float().mean()) for k in range(md.N_CROPS + 1)]})
    return Ch02Results(calibration, table1, thresholds, table2.reset_index(drop=True),
                       table3.reset_index(drop=True), auroc.reset_index(drop=True), adaptive, crops,
                       ctx.info(f"LeNet ({s.epochs} epochs)", model), s, halves.clean_acc, chosen,
                       len(halves.val), len(halves.test), curves, unc, examples)


# --------------------------------------------------------------------------- tables for readers
SOURCE_LABELS = {"advlab, fit on validation": "This book, validation fit",
                 "advlab, fit on test (as the source study)": "This book, test fit",
                 "source study": "Source study", "paper": "Paper"}


def _attack_names(t: pd.DataFrame) -> pd.DataFrame:
    return t.assign(attack=t.attack.map(attack_name))


def _by_source(t: pd.DataFrame) -> pd.DataFrame:
    return _attack_names(t).assign(source=t.source.map(SOURCE_LABELS))


def table1_view(table1: pd.DataFrame) -> pd.DataFrame:
    """Table 1 (the calibrated strengths and the undefended accuracy) for readers."""
    from ..report import for_readers
    return for_readers(_attack_names(table1), {
        "attack": "Attack", "strength": "Strength (ε or γ)", "n_mixed": "Mixed images",
        "mixed_acc": "Accuracy, this book", "source_study": "Accuracy, source study",
        "paper": "Accuracy, paper", "attack_success": "Attack success"},
        percent=["mixed_acc", "source_study", "paper", "attack_success"])


def thresholds_view(thresholds: pd.DataFrame) -> pd.DataFrame:
    """The fitted L, H and C for readers."""
    from ..report import for_readers
    t = _attack_names(thresholds).assign(fit_on=thresholds.fit_on.str.replace(" (as the source study)", ""))
    return for_readers(t, {"attack": "Attack", "fit_on": "Fitted on", "low": "L", "high": "H",
                           "count": "C", "fit_detection_acc": "Detection accuracy where fitted"},
                       percent=["fit_detection_acc"], labels=2)


def table2_view(table2: pd.DataFrame) -> pd.DataFrame:
    """Table 2 (detection on the mixed test set, adversarial = positive), headline first."""
    from ..report import for_readers
    return for_readers(_by_source(table2), {
        "attack": "Attack", "source": "Source", "detection_acc": "Detection accuracy",
        "TP": "Attacks flagged (TP)", "FN": "Attacks missed (FN)", "TN": "Clean passed (TN)",
        "FP": "Clean flagged (FP)"}, percent=["detection_acc"], labels=2)


def table3_view(table3: pd.DataFrame) -> pd.DataFrame:
    """Table 3's headline: accuracy on the images the detector lets through."""
    from ..report import for_readers
    return for_readers(_by_source(table3), {
        "attack": "Attack", "source": "Source", "classification_acc": "Accuracy on accepted images",
        "kept": "Accepted images", "crops_used": "Sent to the crops"},
        percent=["classification_acc", "crops_used"], labels=2)


def table3_breakdown_view(table3: pd.DataFrame) -> pd.DataFrame:
    """Table 3's breakdown of the accepted images (shares of all accepted images)."""
    from ..report import for_readers
    return for_readers(_by_source(table3), {
        "attack": "Attack", "source": "Source", "clean_correct": "Clean, right",
        "clean_incorrect": "Clean, wrong", "adv_correct": "Attacked, right",
        "adv_incorrect": "Attacked, wrong"},
        percent=["clean_correct", "clean_incorrect", "adv_correct", "adv_incorrect"], labels=2)


def auroc_view(auroc: pd.DataFrame) -> pd.DataFrame:
    """Area under each detector's ROC curve."""
    from ..report import for_readers
    return for_readers(_attack_names(auroc), {"attack": "Attack", "uncertainty": "Uncertainty alone",
                                              "crops": "Crops alone", "hybrid": "Hybrid (hull)"})


def adaptive_view(adaptive: pd.DataFrame) -> pd.DataFrame:
    """The detector against attacks that ignore it and against adaptive PGD, one column per
    attack (show it transposed), the accuracy on accepted images first."""
    from ..report import for_readers
    return for_readers(adaptive, {
        "attack": "Attack", "classification_acc": "Accuracy on accepted images (mixed set)",
        "evaded_and_wrong": "Attacked digits let through and misclassified",
        "detected": "Attacked digits flagged", "mixed_detection_acc": "Detection accuracy (mixed set)",
        "undefended_acc": "Undefended accuracy on attacked digits",
        "median_uncertainty": "Median uncertainty of attacked digits"},
        percent=["classification_acc", "evaded_and_wrong", "detected", "mixed_detection_acc",
                 "undefended_acc"])


def crop_table(crops: pd.DataFrame) -> pd.DataFrame:
    """How many of the five crops agree with the MC-dropout class on the clean test digits."""
    out = pd.DataFrame({"Crops agreeing": [str(k) for k in crops.agreeing],
                        "Share of the clean test digits": crops.share.tolist()})
    out.attrs = {"percent": ["Share of the clean test digits"], "labels": 1}
    return out


TABLES = {
    "tab-ch02-crop-agreement": lambda r: make_table(
        crop_table(r.crop_agreement), "tab-ch02-crop-agreement",
        f"How many of the five {r.settings.crop_size}-pixel crops agree with the MC-dropout "
        f"class, on the {r.n_test:,} clean test digits.", transpose=True),
    "tab-ch02-table1": lambda r: make_table(
        table1_view(r.table1), "tab-ch02-table1",
        "The source study's Table 1: the chosen strengths and the undefended LeNet's accuracy on "
        "the mixed test set, beside the source study's and the paper's."),
    "tab-ch02-thresholds": lambda r: make_table(
        thresholds_view(r.thresholds), "tab-ch02-thresholds",
        "The thresholds L, H and C fitted on the validation half and, as the source study did, "
        "on the test half, with the detection accuracy on the half they were fitted on."),
    "tab-ch02-table2": lambda r: make_table(
        table2_view(r.table2), "tab-ch02-table2",
        "The source study's Table 2: detection on the mixed test set (attacked digits are the "
        "positives); this book with L, H, C fitted on the validation half and on the test half, "
        "beside the source study and the paper."),
    "tab-ch02-table3": lambda r: make_table(
        table3_view(r.table3), "tab-ch02-table3",
        "The source study's Table 3: accuracy on the images the detector accepts, this book "
        "beside the source study and the paper."),
    "tab-ch02-table3-breakdown": lambda r: make_table(
        table3_breakdown_view(r.table3), "tab-ch02-table3-breakdown",
        "The accepted images of the source study's Table 3 by kind: clean or attacked, "
        "classified right or wrong (shares of all accepted images)."),
    "tab-ch02-auroc": lambda r: make_table(
        auroc_view(r.auroc), "tab-ch02-auroc",
        "Area under the ROC curve of each detector on the mixed test set."),
    "tab-ch02-adaptive": lambda r: make_table(
        adaptive_view(r.adaptive), "tab-ch02-adaptive",
        "The detector (thresholds fitted on validation against BIM-A) against attacks that "
        f"ignore it and against adaptive PGD, on {int(r.adaptive.n.iloc[0]):,} test digits "
        f"(ε = {r.adaptive.eps.iloc[0]:g}).", transpose=True),
}


def _uncertainty_figure(r: Ch02Results):
    th = {t.attack: (t.low, t.high) for t in r.thresholds.itertuples() if t.fit_on == "validation"}
    return plots.plot_uncertainty_histograms(r.uncertainty, th)


class Chapter02(Chapter):
    id = "ch02"
    title = "MC-dropout and five-crop detection"
    Settings = Ch02Settings
    profiles = {
        "smoke": Ch02Settings(epochs=1, n_half=150, calib_images=60, mc_passes=20,
                              fgsm_eps=(0.1, 0.2, 0.3), bim_eps=(0.1, 0.2), jsma_gamma=(0.1, 0.2),
                              grid=24, adaptive_images=40, adaptive_steps=10, n_eot=8,
                              batch_size=500),
        "full": Ch02Settings(),
    }
    tables = TABLES
    figures = {"ch02_uncertainty": _uncertainty_figure,
               "ch02_roc": lambda r: plots.plot_roc(r.curves, r.auroc),
               "ch02_calibration": lambda r: plots.plot_calibration(r.calibration, r.chosen)}

    def run(self, ctx: RunContext, s: Ch02Settings) -> Ch02Results:
        return run_chapter(ctx, s)


CHAPTER = Chapter02()
