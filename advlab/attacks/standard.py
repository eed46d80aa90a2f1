"""The standard attacks, run through foolbox 3 (Rauber et al. 2017/2020), in the book's shape.

``fgsm``      Goodfellow et al. 2015: one signed-gradient step of size epsilon (L-inf); ours,
              because it reuses one gradient for every epsilon (tested against foolbox's).
``fgm``       its L2 twin: one step of L2 length epsilon along the gradient.
``bim``       Kurakin et al. 2017 (I-FGSM): iterated FGSM, no random start (L-inf).
``l2_bim``    the same in L2.
``linf_pgd``  Madry et al. 2018: iterated FGSM from a random start in the L-inf ball.
``l2_pgd``    the same in L2.
``deepfool``  Moosavi-Dezfooli et al. 2016, L2, minimal: no epsilon; ours (foolbox's steps,
              one forward pass per iteration for every candidate class; tested against it).
``cw``        Carlini & Wagner 2017, L2, minimal: no epsilon.
"""
from __future__ import annotations

import foolbox as fb
import torch

from .base import Attack
from .pgd import step_size


class FoolboxAttack(Attack):
    """A foolbox attack object in the book's attack shape."""

    def __init__(self, name: str, norm: str, attack, uses_epsilon: bool = True):
        self.name, self.norm, self.fb, self.uses_epsilon = name, norm, attack, uses_epsilon

    def __call__(self, model, x, y, epsilon=None, target=None, tick=None):
        fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=x.device)
        criterion = (fb.criteria.Misclassification(y) if target is None
                     else fb.criteria.TargetedMisclassification(target))
        _, advs, _ = self.fb(fmodel, x, criterion, epsilons=[epsilon])
        if tick:
            tick(len(x))
        return advs[0]


def _rel(steps: int, rel_stepsize: float | None) -> float:
    """foolbox's relative step for the book's one rule (:func:`advlab.attacks.pgd.step_size`)."""
    return step_size(1.0, steps, rel_stepsize)


class FGSM(Attack):
    """FGSM (Goodfellow et al. 2015): ``clip(x + eps * sign(grad), 0, 1)`` with the gradient of
    the cross-entropy at ``x``.  The same steps as foolbox's ``FGSM`` (tested against it), but
    one gradient serves every epsilon, so a sweep over k epsilons costs one backward pass
    instead of k."""

    name, norm = "FGSM", "linf"

    def __call__(self, model, x, y, epsilon=None, target=None, tick=None):
        return self.at_epsilons(model, x, y, [epsilon], target, tick)[0]

    def at_epsilons(self, model, x, y, epsilons, target=None, tick=None):
        from .pgd import cross_entropy
        xg = x.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = cross_entropy(model(xg), y if target is None else target).sum()
            grad, = torch.autograd.grad(loss, xg)
        direction = (-1.0 if target is not None else 1.0) * grad.sign()
        if tick:
            tick(len(x) * len(epsilons))
        return [(x + e * direction).clamp(0, 1).detach() for e in epsilons]


def fgsm() -> Attack:
    return FGSM()


def fgm() -> Attack:
    return FoolboxAttack("FGM (L2)", "l2", fb.attacks.FGM())


def bim(steps: int = 10, rel_stepsize: float | None = None) -> Attack:
    """Kurakin et al.'s L-inf BIM (foolbox); step :func:`~advlab.attacks.pgd.step_size`."""
    return FoolboxAttack("BIM", "linf", fb.attacks.LinfBasicIterativeAttack(
        rel_stepsize=_rel(steps, rel_stepsize), steps=steps))


def l2_bim(steps: int = 10, rel_stepsize: float | None = None) -> Attack:
    return FoolboxAttack("L2 BIM", "l2", fb.attacks.L2BasicIterativeAttack(
        rel_stepsize=_rel(steps, rel_stepsize), steps=steps))


def linf_pgd(steps: int = 10, rel_stepsize: float | None = None) -> Attack:
    """Madry et al.'s L-inf PGD with a random start (foolbox)."""
    return FoolboxAttack("L∞ PGD", "linf", fb.attacks.LinfPGD(
        rel_stepsize=_rel(steps, rel_stepsize), steps=steps, random_start=True))


def l2_pgd(steps: int = 10, rel_stepsize: float | None = None) -> Attack:
    """Madry et al.'s L2 PGD with a random start (foolbox)."""
    return FoolboxAttack("L2 PGD", "l2", fb.attacks.L2PGD(
        rel_stepsize=_rel(steps, rel_stepsize), steps=steps, random_start=True))


def deepfool(steps: int = 50, candidates: int | None = 10, overshoot: float = 0.02) -> Attack:
    """L2 DeepFool (:mod:`advlab.attacks.deepfool`: foolbox's steps, one forward pass per
    iteration); ``candidates``: how many top classes it considers (None: all)."""
    from .deepfool import DeepFool
    return DeepFool(steps, candidates, overshoot)


def cw(steps: int = 100, binary_search_steps: int = 5, stepsize: float = 0.01,
       confidence: float = 0.0, initial_const: float = 1e-3) -> Attack:
    """L2 Carlini-Wagner with a binary search over its constant."""
    return FoolboxAttack("C&W", "l2", fb.attacks.L2CarliniWagnerAttack(
        binary_search_steps=binary_search_steps, steps=steps, stepsize=stepsize,
        confidence=confidence, initial_const=initial_const), uses_epsilon=False)


class JSMA(Attack):
    """The book's batched JSMA (:mod:`advlab.attacks.jsma`, Papernot et al. 2016): targeted,
    changes at most a fraction ``gamma`` of the features; no epsilon."""

    name, norm, uses_epsilon, needs_target = "JSMA", "l0", False, True

    def __init__(self, theta: float = 1.0, gamma: float = 0.1):
        self.theta, self.gamma = theta, gamma

    def __call__(self, model, x, y, epsilon=None, target=None, tick=None):
        from .jsma import jsma
        adv = jsma(model, x, target, theta=self.theta, gamma=self.gamma, batch_size=len(x),
                   progress=False)
        if tick:
            tick(len(x))
        return adv.to(x.device)


def bim_a(steps: int = 10, rel_stepsize: float | None = None) -> Attack:
    """BIM that leaves an image alone once it is misclassified: "BIM-A" of Feinman et al. 2017
    (foolbox's fixed-step BIM is their "BIM-B"); the PGD core with ``early_stop``."""
    from .pgd import PGD
    return PGD("linf", steps, rel_stepsize=_rel(steps, rel_stepsize), random_start=False,
               early_stop=True, name="BIM-A")

