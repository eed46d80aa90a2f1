"""Chapter 0: the ideas the other chapters use, on one small model.

Threat models and budgets (the L-inf and L2 balls), FGSM and FGM as one step of steepest ascent
under each norm (Goodfellow et al. 2015), PGD as many projected steps (Madry et al. 2018), and
what the attacker knows: white box (the model's gradients), black box (a surrogate model
trained by the attacker, whose adversarial images are transferred; Papernot et al. 2017).  The
model is Chapter 2's MNIST LeNet (trained once and cached); the surrogate is a second LeNet
with another seed and fewer epochs.

This module is also the smallest complete example of the chapter contract
(:mod:`advlab.chapter`): settings, one cached piece per (attack, knowledge), tables, figures.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from .. import attacks as atk
from ..chapter import Chapter, ChapterResults, RunContext, Settings
from ..config import RunInfo
from ..data import ImageSet, load_mnist
from ..inference import predict
from ..report import make_table
from ..training.lenet import RECIPE

#: Attacks by norm: (one step, many steps), names of :data:`advlab.attacks.ATTACKS`.
ATTACKS = {"linf": ("fgsm", "linf_pgd"), "l2": ("fgm", "l2_pgd")}
NORM_TITLES = {"linf": "L∞", "l2": "L2"}
ATTACK_TITLES = {"fgsm": "FGSM (one step)", "linf_pgd": "PGD", "fgm": "FGM (one step)",
                 "l2_pgd": "L2 PGD"}
KNOWLEDGE = ("white box", "black box (transfer)")


@dataclass(frozen=True)
class Ch00Settings(Settings):
    """``epochs``: the target LeNet's training; ``surrogate_epochs``, ``surrogate_seed``: the
    attacker's own LeNet; ``n_images``: the first test digits attacked; ``linf_eps``,
    ``l2_eps``: budgets; ``steps``: PGD's iterations (step 2.5 eps / steps)."""

    epochs: int = RECIPE["epochs"]
    surrogate_epochs: int = 1
    surrogate_seed: int = 1
    n_images: int = 500
    linf_eps: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
    l2_eps: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)
    steps: int = 20
    batch_size: int = 500

    def check(self) -> None:
        self.require(self.epochs >= 1 and self.surrogate_epochs >= 1, "epochs must be >= 1")
        self.require(1 <= self.n_images <= 10_000, "n_images must be in 1..10000 (MNIST test)")
        for name in ("linf_eps", "l2_eps"):
            eps = getattr(self, name)
            self.require(len(eps) > 0 and min(eps) > 0, f"{name} must be positive budgets")
        self.require(max(self.linf_eps) <= 1, "linf_eps are pixel changes in [0, 1]")
        self.require(self.steps >= 1 and self.batch_size >= 1, "steps and batch_size must be >= 1")


def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    return float((predict(model, x, batch_size, amp=False) == y).float().mean())


def perturbation_norms(x: torch.Tensor, adv: torch.Tensor) -> tuple[float, float]:
    """Median L-inf and L2 norm of ``adv - x`` over the images."""
    d = (adv - x).flatten(1)
    return float(d.abs().amax(1).median()), float(d.norm(dim=1).median())


def steepest_ascent_example() -> dict:
    """A 2-D picture of one step of steepest ascent: a gradient ``g``, and the point of each
    unit ball that raises a linear loss ``g . delta`` most (sign(g) for L-inf, g/|g| for L2)."""
    g = torch.tensor([0.9, 0.35])
    return {"gradient": g, "linf": torch.sign(g), "l2": g / g.norm()}


def test_digits(n: int) -> ImageSet:
    """The first ``n`` MNIST test digits."""
    test = load_mnist("test")
    return test.subset(torch.arange(min(n, len(test))))


def run_attacks(ctx: RunContext, s: Ch00Settings, model, surrogate, images: ImageSet) -> pd.DataFrame:
    """Accuracy of the target under every attack and budget, crafted on the target itself
    (white box) and on the surrogate and transferred (black box): one piece per attack and
    knowledge."""
    rows = [dict(norm="none", attack="none", knowledge="–", eps=0.0,
                 accuracy=accuracy(model, images.x, images.y, s.batch_size),
                 linf=0.0, l2=0.0, device="–")]
    for norm, names in ATTACKS.items():
        eps = tuple(getattr(s, f"{norm}_eps"))
        for name in names:
            attack = atk.make(name) if name in ("fgsm", "fgm") else atk.make(name, steps=s.steps)
            for knowledge, crafted_on in zip(KNOWLEDGE, (model, surrogate)):
                def compute(attack=attack, crafted_on=crafted_on, eps=eps):
                    advs = atk.run(crafted_on, images.x, images.y, attack, list(eps),
                                   batch_size=s.batch_size, seed=s.seed, progress=ctx.progress)
                    out = []
                    for e in eps:
                        linf, l2 = perturbation_norms(images.x, advs[e])
                        out.append(dict(eps=e, accuracy=accuracy(model, advs[e], images.y,
                                                                 s.batch_size), linf=linf, l2=l2))
                    return {"rows": out}
                piece = ctx.piece("attack", compute, settings=s.part(), attack=attack, eps=eps,
                                  target=model, crafted_on=crafted_on, images=images)
                rows += [dict(norm=norm, attack=name, knowledge=knowledge, **r,
                              device=piece["computed_on"]) for r in piece["rows"]]
    return pd.DataFrame(rows)


@dataclass
class Ch00Results(ChapterResults):
    attacks: pd.DataFrame
    info: RunInfo
    settings: Ch00Settings
    clean_acc: float = 0.0
    surrogate_acc: float = 0.0
    n_images: int = 0

    CHAPTER = "ch00"
    TABLES = ("attacks",)

    def extras(self) -> dict:
        return {"clean_acc": self.clean_acc, "surrogate_acc": self.surrogate_acc,
                "n_images": self.n_images}


# --------------------------------------------------------------------------- tables for readers
def attack_table(attacks: pd.DataFrame, norm: str) -> pd.DataFrame:
    """One norm's rows for readers: a row per budget, a column per attack and knowledge."""
    t = attacks[attacks.norm == norm]
    wide = t.pivot_table(index="eps", columns=["attack", "knowledge"], values="accuracy")
    out = pd.DataFrame({f"ε ({NORM_TITLES[norm]})": wide.index.to_numpy()})
    for name in ATTACKS[norm]:
        for knowledge in KNOWLEDGE:
            out[f"{ATTACK_TITLES[name]}, {knowledge}"] = wide[(name, knowledge)].to_numpy()
    out.attrs = {"percent": list(out.columns[1:]), "labels": 1}
    return out


def _linf_table(r: Ch00Results):
    return make_table(attack_table(r.attacks, "linf"), "tab-ch00-linf",
                      f"L∞ budget: accuracy of the target LeNet on {r.n_images:,} test digits "
                      "under FGSM and PGD, crafted on its own gradients (white box) or on the "
                      "attacker's surrogate (black box).")


def _l2_table(r: Ch00Results):
    return make_table(attack_table(r.attacks, "l2"), "tab-ch00-l2",
                      f"L2 budget: accuracy of the target LeNet on {r.n_images:,} test digits "
                      "under FGM and L2 PGD, white box and black box.")


def _budget_figure(r: Ch00Results):
    from .. import plots
    return plots.plot_budget_curves(r.attacks, ATTACK_TITLES)


class Chapter00(Chapter):
    id = "ch00"
    title = "Threat models, budgets and attacks"
    Settings = Ch00Settings
    profiles = {
        "smoke": Ch00Settings(epochs=1, surrogate_epochs=1, n_images=100,
                              linf_eps=(0.05, 0.1, 0.2), l2_eps=(0.5, 1.0, 2.0), steps=10,
                              batch_size=100),
        "full": Ch00Settings(),
    }
    tables = {"tab-ch00-linf": _linf_table, "tab-ch00-l2": _l2_table}
    figures = {"ch00_attack_curves": _budget_figure}

    def run(self, ctx: RunContext, s: Ch00Settings) -> Ch00Results:
        with ctx.stage("models"):
            model = ctx.load_model("lenet", epochs=s.epochs)
            surrogate = ctx.load_model("lenet", epochs=s.surrogate_epochs, seed=s.surrogate_seed)
            images = test_digits(s.n_images)
        with ctx.stage("attacks"):
            table = run_attacks(ctx, s, model, surrogate, images)
        return Ch00Results(table, ctx.info(f"LeNet ({s.epochs} epochs)", model), s,
                           accuracy(model, images.x, images.y), accuracy(surrogate, images.x, images.y),
                           len(images))


CHAPTER = Chapter00()
