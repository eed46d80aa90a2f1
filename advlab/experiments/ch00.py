"""Chapter 0: the ideas the other chapters use, on one small model.

Threat models and budgets (the L-inf and L2 balls), FGSM and FGM as one step of steepest ascent
under each norm, PGD as many projected steps, and what the attacker knows: white box (the
model's gradients), black box (a surrogate model trained by the attacker, whose adversarial
images are transferred).  The model is Chapter 2's MNIST LeNet (cached after its first
training); the surrogate is a second LeNet with another seed and fewer epochs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd
import torch

from .. import attacks as atk
from ..cache import ResultCache, config_hash, fingerprint
from ..config import RunInfo, device_name, get_device, profile_settings, resolve_profile, seed_everything
from ..data import ImageSet, load_mnist
from ..inference import backend_name
from ..models import predict
from ..training.lenet import RECIPE, trained_lenet
from .common import ChapterResults, cache_note

CHAPTER = "ch00"
#: Attacks by norm: (one step, many steps), names of :data:`advlab.attacks.ATTACKS`.
ATTACKS = {"linf": ("fgsm", "pgd"), "l2": ("fgm", "l2_pgd")}
NORM_TITLES = {"linf": "L∞", "l2": "L2"}
ATTACK_TITLES = {"fgsm": "FGSM (one step)", "pgd": "PGD", "fgm": "FGM (one step)", "l2_pgd": "L2 PGD"}

PROFILES = {
    "smoke": dict(epochs=1, surrogate_epochs=1, surrogate_seed=1, n_images=100,
                  linf_eps=(0.05, 0.1, 0.2), l2_eps=(0.5, 1.0, 2.0), steps=10, batch_size=100,
                  seed=0),
    "full": dict(epochs=RECIPE["epochs"], surrogate_epochs=1, surrogate_seed=1, n_images=500,
                 linf_eps=(0.05, 0.1, 0.2, 0.3), l2_eps=(0.5, 1.0, 2.0, 3.0), steps=20,
                 batch_size=500, seed=0),
}


def settings(profile: str | None = None, **overrides) -> dict:
    return profile_settings(PROFILES, CHAPTER, profile, **overrides)


def setup(profile: str | None = None, device=None, progress: bool = True, **overrides):
    """Settings, device, the target LeNet, the attacker's surrogate and the test digits."""
    cfg = settings(profile, **overrides)
    dev = get_device(device)
    seed_everything(cfg["seed"])
    model = trained_lenet(dev, progress=progress, epochs=cfg["epochs"])
    surrogate = trained_lenet(dev, progress=progress, epochs=cfg["surrogate_epochs"],
                              seed=cfg["surrogate_seed"])
    test = load_mnist("test")
    images = test.subset(torch.arange(min(cfg["n_images"], len(test))))
    return cfg, dev, model, surrogate, images


def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    return float((predict(model, x, batch_size, amp=False) == y).float().mean())


def perturbation_norms(x: torch.Tensor, adv: torch.Tensor) -> tuple[float, float]:
    """Median L-inf and L2 norm of ``adv - x`` over the images."""
    d = (adv - x).flatten(1)
    return float(d.abs().amax(1).median()), float(d.norm(dim=1).median())


def cache_key(cfg: dict, images: ImageSet) -> dict:
    return {"model": config_hash({**RECIPE, "epochs": cfg["epochs"]}),
            "surrogate": config_hash({**RECIPE, "epochs": cfg["surrogate_epochs"],
                                      "seed": cfg["surrogate_seed"]}),
            "images": fingerprint(images), "n": len(images), "steps": cfg["steps"],
            "batch": cfg["batch_size"], "seed": cfg["seed"]}


def run_attacks(model, surrogate, images: ImageSet, cfg: dict, cache: ResultCache, dev,
                progress: bool = True) -> pd.DataFrame:
    """Accuracy of the target under every attack and budget, crafted on the target itself
    (white box) and on the surrogate and transferred (black box).  One cached piece per attack
    and knowledge; each piece records the device it was computed on."""
    key = cache_key(cfg, images)
    rows = [dict(norm="none", attack="none", knowledge="–", eps=0.0,
                 accuracy=accuracy(model, images.x, images.y, cfg["batch_size"]),
                 linf=0.0, l2=0.0, device="–")]
    for norm, names in ATTACKS.items():
        eps = tuple(cfg[f"{norm}_eps"])
        for name in names:
            params = {} if name in ("fgsm", "fgm") else {"steps": cfg["steps"]}
            for knowledge, crafted_on in (("white box", model), ("black box (transfer)", surrogate)):
                def compute(name=name, params=params, crafted_on=crafted_on, eps=eps):
                    advs = atk.run(crafted_on, images.x, images.y, name, list(eps),
                                   batch_size=cfg["batch_size"], seed=cfg["seed"],
                                   progress=progress, **params)
                    out = []
                    for e in eps:
                        linf, l2 = perturbation_norms(images.x, advs[e])
                        out.append(dict(eps=e, accuracy=accuracy(model, advs[e], images.y,
                                                                 cfg["batch_size"]),
                                        linf=linf, l2=l2))
                    return {"rows": out, "device": device_name(dev)}
                piece = cache.get_or_compute(f"{name}-{knowledge.split()[0]}",
                                             {**key, "attack": name, "eps": eps,
                                              "knowledge": knowledge}, compute)
                for r in piece["rows"]:
                    rows.append(dict(norm=norm, attack=name, knowledge=knowledge, **r,
                                     device=piece["device"]))
    return pd.DataFrame(rows)


def steepest_ascent_example(seed: int = 0) -> dict:
    """A 2-D picture of one step of steepest ascent: a gradient ``g``, and the point of each
    unit ball that raises a linear loss ``g . delta`` most (sign(g) for L-inf, g/|g| for L2)."""
    g = torch.tensor([0.9, 0.35])
    return {"gradient": g, "linf": torch.sign(g), "l2": g / g.norm()}


@dataclass
class Ch00Results(ChapterResults):
    attacks: pd.DataFrame
    info: RunInfo
    clean_acc: float = 0.0
    surrogate_acc: float = 0.0
    settings: dict = field(default_factory=dict)

    CHAPTER = CHAPTER
    TABLES = ("attacks",)

    def extras(self) -> dict:
        return {"clean_acc": self.clean_acc, "surrogate_acc": self.surrogate_acc}


def make_figures(results: Ch00Results) -> dict:
    from .. import plots
    return {"ch00_attack_curves": plots.plot_budget_curves(results.attacks)}


def run(profile: str | None = None, model_name: str = "lenet", device=None, use_cache: bool = True,
        progress: bool = True, prepared=None, **overrides) -> Ch00Results:
    """The whole chapter: white-box and black-box FGSM/FGM and PGD under both norms."""
    if model_name != "lenet":
        raise ValueError(f"chapter 0 has one model, 'lenet' (got {model_name!r})")
    t0 = time.time()
    profile = resolve_profile(profile)
    cfg, dev, model, surrogate, images = prepared or setup(profile, device, progress, **overrides)
    cache = ResultCache(CHAPTER, enabled=use_cache)
    table = run_attacks(model, surrogate, images, cfg, cache, dev, progress)
    computed_on = sorted(set(table.device) - {"–"})
    note = cache_note(cache)
    if cache.hits and computed_on:
        note += f"; computed on {', '.join(computed_on)}"
    info = RunInfo(CHAPTER, profile, device_name(dev), f"LeNet ({cfg['epochs']} epochs)",
                   time.time() - t0, note, backend_name(dev, model=model))
    return Ch00Results(table, info, accuracy(model, images.x, images.y),
                       accuracy(surrogate, images.x, images.y), {**cfg, "n_images": len(images)})


# --------------------------------------------------------------------------- tables for readers
def attack_table(attacks: pd.DataFrame, norm: str) -> pd.DataFrame:
    """One norm's rows for readers: a row per budget, a column per attack and knowledge."""
    t = attacks[attacks.norm == norm]
    wide = t.pivot_table(index="eps", columns=["attack", "knowledge"], values="accuracy")
    out = pd.DataFrame({f"ε ({NORM_TITLES[norm]})": wide.index.to_numpy()})
    for name in ATTACKS[norm]:
        for knowledge in ("white box", "black box (transfer)"):
            out[f"{ATTACK_TITLES[name]}, {knowledge}"] = wide[(name, knowledge)].to_numpy()
    out.attrs = {"percent": list(out.columns[1:]), "labels": 1}
    return out
