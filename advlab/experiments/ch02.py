"""Chapter 2: detecting adversarial MNIST digits with MC-dropout uncertainty and five-crop
agreement (the source study: a reproduction of Alshemali et al. 2019).

Protocol.  The 10,000 MNIST test digits are split in two halves: images 0-4999 are the
validation half (strength calibration and threshold fitting), images 5000-9999 the test half.
In each half the digits the undefended LeNet misclassifies are dropped; every remaining digit
enters the mixed set once clean and once attacked (FGSM, BIM, JSMA), about 4,960 + 4,960
images, the size of the source study's Table 2.  The detector's L, H and C are fitted on the
validation half and applied to the test half; fitting them on the test half itself (what the
source study did) is reported beside.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch
from sklearn.metrics import auc, roc_curve

from .. import attacks as atk
from ..cache import ResultCache, config_hash, fingerprint
from ..config import RunInfo, device_name, get_device, profile_settings, resolve_profile, seed_everything
from ..data import ImageSet, load_mnist
from ..defences import mc_dropout as md
from ..inference import backend_name
from ..metrics import detection_counts, labelled_clean_breakdown, roc_hull
from ..models import predict
from ..training.lenet import RECIPE, trained_lenet
from .common import cache_note

CHAPTER = "ch02"
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

PROFILES = {
    "smoke": dict(epochs=1, n_half=150, calib_images=60, mc_passes=20, crop_size=24,
                  fgsm_eps=(0.1, 0.2, 0.3), bim_eps=(0.1, 0.2), bim_steps=10,
                  jsma_gamma=(0.1, 0.2), grid=24, adaptive_images=40, adaptive_steps=10,
                  n_eot=8, unc_weight=10.0, batch_size=500, seed=0),
    "full": dict(epochs=RECIPE["epochs"], n_half=HALF, calib_images=500, mc_passes=50,
                 crop_size=24, fgsm_eps=(0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.3),
                 bim_eps=(0.1, 0.15, 0.2, 0.225, 0.25, 0.275, 0.3), bim_steps=10,
                 jsma_gamma=(0.1, 0.15, 0.2, 0.25, 0.3), grid=64, adaptive_images=1000,
                 adaptive_steps=40, n_eot=16, unc_weight=10.0, batch_size=1000, seed=0),
}


def settings(profile: str | None = None, **overrides) -> dict:
    """The profile's settings, with keyword overrides (unknown keys are an error)."""
    return profile_settings(PROFILES, "ch02", profile, **overrides)


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
def run_attack(model, images: ImageSet, name: str, strength: float, cfg: dict,
               progress: bool = True) -> torch.Tensor:
    """Adversarial versions of ``images`` under one attack at one strength (CPU tensor).

    FGSM and BIM (foolbox, ``bim_steps`` steps of eps/4) and BIM-A (the PGD core: the same
    BIM, stopping each image once it is misclassified): ``strength`` is the L-inf epsilon.
    JSMA (the book's batched JSMA, targets drawn uniformly among the wrong classes):
    ``strength`` is gamma, the largest fraction of pixels it may change.
    """
    if name == "jsma":
        targets = atk.random_targets(images.y, 10, seed=cfg["seed"])
        return atk.run(model, images.x, images.y, "jsma", targets=targets, gamma=strength,
                       batch_size=min(cfg["batch_size"], 256), seed=cfg["seed"],
                       progress=progress)[None]
    params = {} if name == "fgsm" else {"steps": cfg["bim_steps"]}
    return atk.run(model, images.x, images.y, name, [strength], batch_size=cfg["batch_size"],
                   seed=cfg["seed"], progress=progress, **params)[float(strength)]


def attack_name(name: str) -> str:
    """The attack's name for readers ("BIM-A"), from the attack itself."""
    return atk.make(name).name


def strengths(cfg: dict, name: str) -> tuple[float, ...]:
    return tuple(cfg["jsma_gamma"] if name == "jsma" else cfg["bim_eps" if name == "bim_a" else f"{name}_eps"])


def source_attack(name: str) -> str:
    """The source study's attack a row is compared with: it does not say which BIM it ran."""
    return "bim" if name == "bim_a" else name


def cache_key(cfg: dict, scoring: bool = False) -> dict:
    """What every cached piece depends on: the model, the seed, BIM's steps and the batch size
    (the dropout masks depend on it too); with ``scoring``, the detector's settings too."""
    key = {"model": config_hash({**RECIPE, "epochs": cfg["epochs"]}), "seed": cfg["seed"],
           "bim_steps": cfg["bim_steps"], "batch": cfg["batch_size"]}
    return {**key, "mc": cfg["mc_passes"], "crop": cfg["crop_size"]} if scoring else key


def piece_key(key: dict, images: ImageSet, **settings) -> dict:
    """``key`` plus the images a piece is computed on and the piece's own settings."""
    return {**key, "images": fingerprint(images), "n": len(images), **settings}


def calibrate(model, images: ImageSet, cfg: dict, cache: ResultCache, key: dict,
              progress: bool = True) -> pd.DataFrame:
    """Undefended accuracy on the 50/50 mixed set for every candidate strength.

    Run on the first ``calib_images`` validation digits.  All of them are classified
    correctly, so mixed accuracy = (1 + accuracy on the attacked copies) / 2.
    """
    sub = images.subset(torch.arange(min(cfg["calib_images"], len(images))))
    rows = []
    for name in ATTACKS:
        for s in strengths(cfg, name):
            def compute(name=name, s=s):
                adv = run_attack(model, sub, name, s, cfg, progress)
                return {"pred": _predict(model, adv)}
            pred = cache.get_or_compute(f"calib-{name}-{s}", piece_key(key, sub), compute)["pred"]
            adv_acc = float((pred == sub.y).float().mean())
            rows.append(dict(attack=name, strength=s, adv_acc=adv_acc, mixed_acc=(1 + adv_acc) / 2))
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


def score_images(model, x: torch.Tensor, cfg: dict) -> dict:
    """Plain prediction, MC-dropout statistics and crop agreement for a batch of images."""
    mc = md.mc_dropout(model, x, n=cfg["mc_passes"], batch_size=cfg["batch_size"], seed=cfg["seed"])
    return {"pred_plain": _predict(model, x, cfg["batch_size"]), "pred": mc.pred,
            "uncertainty": mc.uncertainty,
            "agreement": md.crop_agreement(model, x, mc.pred, cfg["crop_size"], cfg["batch_size"])}


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
def run_adaptive(model, images: ImageSet, th: md.Thresholds, eps: float, cfg: dict,
                 clean: dict, plain: dict[str, dict], cache: ResultCache, key: dict,
                 progress: bool = True) -> pd.DataFrame:
    """The detector, thresholds fixed, against attacks that ignore it (``plain``: attack name
    -> scores) and against adaptive PGD with and without the uncertainty penalty, on the first
    ``adaptive_images`` test digits."""
    n = min(cfg["adaptive_images"], len(images))
    sub = images.subset(torch.arange(n))
    take = lambda d: {k: v[:n] for k, v in d.items()}  # noqa: E731
    variants = [(f"{attack_name(name)}, ignores the detector", name) for name in plain]
    variants += [("Adaptive PGD + EOT", 0.0), ("Adaptive PGD + EOT + uncertainty penalty", cfg["unc_weight"])]
    rows = []
    for label, which in variants:
        if isinstance(which, str):
            scored = take(plain[which])
        else:
            def compute(weight=which):
                adv = md.adaptive_pgd(model, sub.x, sub.y, eps, steps=cfg["adaptive_steps"],
                                      n_eot=cfg["n_eot"], crop_size=cfg["crop_size"],
                                      unc_weight=weight, batch_size=cfg["batch_size"],
                                      seed=cfg["seed"], progress=progress)
                return {"adv": adv, **score_images(model, adv, cfg)}
            scored = cache.get_or_compute(f"adaptive-{which}", piece_key(key, sub, eps=eps,
                                          steps=cfg["adaptive_steps"], n_eot=cfg["n_eot"]),
                                          compute)
            scored = {k: v for k, v in scored.items() if k != "adv"}
        s = mixed(take(clean), scored, sub.y)
        adv_only = s.subset(s.is_adv)
        flagged = md.flag_adversarial(adv_only.uncertainty, adv_only.agreement, th)
        ev = evaluate(s, th)
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
class Ch02Results:
    clean_acc: float
    calibration: pd.DataFrame
    chosen: dict
    table1: pd.DataFrame
    thresholds: pd.DataFrame
    table2: pd.DataFrame
    table3: pd.DataFrame
    auroc: pd.DataFrame
    adaptive: pd.DataFrame
    info: RunInfo
    curves: dict = field(default_factory=dict)        # attack -> {detector: (fpr, tpr)}
    uncertainty: dict = field(default_factory=dict)   # attack -> (clean u, adv u) on the test half
    examples: dict = field(default_factory=dict)      # clean and attacked test digits
    settings: dict = field(default_factory=dict)

    TABLES = ("calibration", "table1", "thresholds", "table2", "table3", "auroc", "adaptive")

    def save(self, out: Path) -> list[Path]:
        """Write every table as CSV and the settings, choices and run-info as JSON."""
        import json
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in self.TABLES:
            path = out / f"{CHAPTER}_{name}.csv"
            getattr(self, name).to_csv(path, index=False)
            written.append(path)
        path = out / f"{CHAPTER}_run.json"
        path.write_text(json.dumps({"info": asdict(self.info), "settings": self.settings,
                                    "strengths": self.chosen, "clean_acc": self.clean_acc},
                                   indent=2, default=str))
        return written + [path]


def _beside_source(ours: pd.DataFrame, source: pd.DataFrame) -> pd.DataFrame:
    """Our rows of each attack followed by the source study's rows for the attack it compares with."""
    parts = []
    for name in ATTACKS:
        parts += [ours[ours.attack == name],
                  source[source.attack == source_attack(name)].assign(attack=name)]
    return pd.concat(parts)


def make_figures(results: Ch02Results) -> dict:
    """The chapter's summary figures, by file stem."""
    from .. import plots
    th = {r.attack: (r.low, r.high) for r in results.thresholds.itertuples() if r.fit_on == "validation"}
    return {"ch02_uncertainty": plots.plot_uncertainty_histograms(results.uncertainty, th),
            "ch02_roc": plots.plot_roc(results.curves, results.auroc),
            "ch02_calibration": plots.plot_calibration(results.calibration, results.chosen)}


def setup(profile: str | None = None, device=None, progress: bool = True, **overrides):
    """Settings, device, the trained LeNet and the two halves of the test set."""
    cfg = settings(profile, **overrides)
    dev = get_device(device)
    seed_everything(cfg["seed"])
    model = trained_lenet(dev, progress=progress, epochs=cfg["epochs"])
    return cfg, dev, model, split_halves(model, cfg["n_half"], cfg["batch_size"])


def run(profile: str | None = None, model_name: str = "lenet", device=None, use_cache: bool = True,
        progress: bool = True, prepared=None, **overrides) -> Ch02Results:
    """The whole chapter: calibration, attacks, detector on both halves, ROC, adaptive attack.

    ``model_name`` is accepted for the CLI's sake; this chapter has one model, the LeNet.
    """
    if model_name != "lenet":
        raise ValueError(f"chapter 2 has one model, 'lenet' (got {model_name!r})")
    t0 = time.time()
    profile = resolve_profile(profile)
    cfg, dev, model, halves = prepared or setup(profile, device, progress, **overrides)
    cache = ResultCache(CHAPTER, enabled=use_cache)
    key = cache_key(cfg)
    calibration = calibrate(model, halves.val, cfg, cache, key, progress)
    chosen = choose_strengths(calibration)

    score_key = cache_key(cfg, scoring=True)
    scored, advs = {}, {}
    for half in ("val", "test"):
        images = getattr(halves, half)
        hkey = piece_key(score_key, images, half=half)
        scored[half, "clean"] = cache.get_or_compute(
            f"{half}-clean", hkey, lambda: score_images(model, images.x, cfg))
        for name in ATTACKS:
            def compute(name=name):
                adv = run_attack(model, images, name, chosen[name], cfg, progress)
                return {"adv": adv, **score_images(model, adv, cfg)}
            entry = cache.get_or_compute(f"{half}-{name}-{chosen[name]}", hkey, compute)
            advs[half, name] = entry.pop("adv")
            scored[half, name] = entry

    t1, th_rows, t2, t3, aurocs, curves, unc = [], [], [], [], [], {}, {}
    for name in ATTACKS:
        val = mixed(scored["val", "clean"], scored["val", name], halves.val.y)
        test = mixed(scored["test", "clean"], scored["test", name], halves.test.y)
        adv_acc = float((scored["test", name]["pred_plain"] == halves.test.y).float().mean())
        t1.append(dict(attack=name, strength=chosen[name], n_mixed=len(test.y),
                       mixed_acc=float((test.pred_plain == test.y).float().mean()),
                       adv_acc=adv_acc, attack_success=1 - adv_acc))
        for fit_on, fit_set in (("validation", val), ("test (as the source study)", test)):
            th, fit_acc = md.fit_thresholds(fit_set.uncertainty, fit_set.agreement, fit_set.is_adv,
                                            cfg["grid"])
            th_rows.append(dict(attack=name, fit_on=fit_on, low=th.low, high=th.high,
                                count=th.count, fit_detection_acc=fit_acc))
            ev = evaluate(test, th)
            t2.append(dict(attack=name, source=f"advlab, fit on {fit_on}",
                           **{k: ev[k] for k in ("FN", "FP", "TN", "TP", "detection_acc")}))
            t3.append(dict(attack=name, source=f"advlab, fit on {fit_on}",
                           **{k: ev[k] for k in ("clean_correct", "clean_incorrect", "adv_correct",
                                                 "adv_incorrect", "classification_acc", "kept",
                                                 "crops_used")}))
        table, curves[name] = roc_table(test, cfg["grid"])
        aurocs.append(table.assign(attack=name))
        clean_u = scored["test", "clean"]["uncertainty"]
        unc[name] = (clean_u.numpy(), scored["test", name]["uncertainty"].numpy())

    thresholds = pd.DataFrame(th_rows)
    # The adaptive attacker faces the detector at its best against an L-inf attack of the
    # same budget: the thresholds fitted on validation against BIM-A.
    ref = thresholds[(thresholds.attack == "bim_a") & (thresholds.fit_on == "validation")].iloc[0]
    adaptive = run_adaptive(model, halves.test, md.Thresholds(ref.low, ref.high, int(ref["count"])),
                            chosen["bim_a"], cfg, scored["test", "clean"],
                            {a: scored["test", a] for a in ("bim_a", "bim") if chosen[a] == chosen["bim_a"]},
                            cache, score_key, progress)

    table1 = pd.DataFrame(t1)
    for col in ("source_study", "paper"):
        table1[col] = table1.attack.map(source_attack).map(dict(zip(SOURCE_TABLE1.attack, SOURCE_TABLE1[col])))
    table2 = _beside_source(pd.DataFrame(t2), SOURCE_TABLE2)
    table3 = _beside_source(pd.DataFrame(t3), SOURCE_TABLE3)
    auroc = pd.concat(aurocs)[["attack", "uncertainty", "crops", "hybrid"]]
    examples = {"clean": halves.test.x[:8], "y": halves.test.y[:8],
                **{name: advs["test", name][:8] for name in ATTACKS}}
    info = RunInfo(CHAPTER, profile, device_name(dev), f"LeNet ({cfg['epochs']} epochs)",
                   time.time() - t0, cache_note(cache), backend_name(dev, model=model))
    return Ch02Results(halves.clean_acc, calibration, chosen, table1, thresholds,
                       table2.reset_index(drop=True), table3.reset_index(drop=True),
                       auroc.reset_index(drop=True), adaptive, info, curves, unc, examples,
                       {**cfg, "n_val": len(halves.val), "n_test": len(halves.test)})


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
