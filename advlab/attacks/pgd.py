"""The book's one PGD core: projected gradient descent of Madry et al. 2018 (and its special
cases, FGSM of Goodfellow et al. 2015 and BIM of Kurakin et al. 2017), with what the adaptive
attacks of later chapters need and foolbox does not offer:

* any loss to ascend (cross-entropy, the C&W margin, or a callable such as a detector's score);
* L-inf or L2 balls; a random start; targeted or untargeted;
* a pixel ``mask``: only masked pixels move (Hwang et al. 2019's masked PGD);
* ``early_stop``: an image is left alone once it is misclassified (Feinman et al. 2017's
  "BIM-A").

With none of those options it takes the same steps as foolbox's ``LinfPGD``/``L2PGD``
(same random start from the global RNG, same sign/normalised step, projection and clipping);
``tests/test_attacks.py`` checks it against foolbox.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .base import Attack, Tick

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
NORMS = ("linf", "l2")


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-image cross-entropy: how far the logits are from ``labels``."""
    return F.cross_entropy(logits, labels, reduction="none")


def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-image C&W margin ``max_{j != label} z_j - z_label`` (Carlini & Wagner 2017):
    positive once the image leaves ``labels``."""
    z = logits.float()
    own = z.gather(1, labels[:, None]).squeeze(1)
    other = z.scatter(1, labels[:, None], float("-inf")).amax(1)
    return other - own


LOSSES = {"ce": cross_entropy, "margin": margin}
#: Madry et al.'s step: a fraction 2.5 / steps of epsilon, so the steps can cross the ball and back.
DEFAULT_REL_STEP = 2.5


def step_size(eps: float, steps: int, rel_stepsize: float | None = None) -> float:
    """The book's one step-size rule: ``rel_stepsize * eps``, by default ``2.5 * eps / steps``."""
    if steps < 1:
        raise ValueError(f"iterative attacks need steps >= 1, got {steps}")
    return (rel_stepsize if rel_stepsize is not None else DEFAULT_REL_STEP / steps) * eps


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(p=2, dim=1).view(-1, *[1] * (t.dim() - 1))


def project(delta: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """The perturbation ``delta`` projected onto the ``norm`` ball of radius ``eps``."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    factor = torch.clamp(eps / _flat_norm(delta).clamp_min(1e-12), max=1.0)
    return delta * factor


def uniform_in_ball(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """A uniform draw from the ``norm`` ball of radius ``eps`` (global RNG, foolbox's recipe:
    uniform per coordinate for L-inf; Voelker et al. 2017's n-ball sampling for L2)."""
    if norm == "linf":
        return torch.rand(x.shape, dtype=x.dtype, device=x.device) * (2 * eps) - eps
    n = x[0].numel()
    g = torch.randn((len(x), n + 2), dtype=x.dtype, device=x.device)
    s = g / g.norm(p=2, dim=-1, keepdim=True)
    return eps * s[:, :n].reshape(x.shape)


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "linf",
        steps: int = 10, step: float | None = None, random_start: bool = False,
        targeted: bool = False, loss: str | LossFn = "ce", mask: torch.Tensor | None = None,
        early_stop: bool = False, bounds: tuple[float, float] = (0.0, 1.0),
        tick: Tick | None = None) -> torch.Tensor:
    """PGD on one batch (on the model's device); returns the adversarial batch, detached.

    ``y``: the true labels (untargeted: ascend the loss away from them) or the targets
    (``targeted=True``: descend the loss towards them).  ``loss``: ``"ce"``, ``"margin"`` or
    a callable ``loss(model, x, labels) -> per-image loss``.  ``step``: default
    :func:`step_size` (``2.5 * eps / steps``, Madry et al.).  ``mask``: broadcastable to ``x``; pixels where it is
    0 never move (the gradient, the random start and the projection are all masked).
    ``early_stop``: stop moving an image once the model's arg-max leaves ``y`` (untargeted) or
    reaches it (targeted); needs a built-in loss.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if eps < 0 or steps < 1:
        raise ValueError(f"need eps >= 0 and steps >= 1, got eps={eps}, steps={steps}")
    if callable(loss):
        if early_stop:
            raise ValueError("early_stop needs a built-in loss ('ce' or 'margin') to read logits")
        loss_fn = loss
    elif loss in LOSSES:
        loss_fn = (lambda m, v, lab, f=LOSSES[loss]: f(m(v), lab))  # noqa: E731
    else:
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
    lo, hi = bounds
    step = step if step is not None else step_size(eps, steps)
    x0 = x.detach()
    m = None if mask is None else mask.to(device=x0.device, dtype=x0.dtype).expand_as(x0)
    adv = x0
    if random_start:
        start = uniform_in_ball(x0, eps, norm)
        adv = (x0 + (start if m is None else start * m)).clamp(lo, hi)
    direction = -1.0 if targeted else 1.0
    for _ in range(steps):
        adv = adv.detach().requires_grad_(True)
        with torch.enable_grad():
            if early_stop:
                logits = model(adv)
                hit = logits.argmax(1) == y
                moving = hit if not targeted else ~hit
                if not bool(moving.any()):
                    adv = adv.detach()
                    if tick:
                        tick(len(x0) * (steps - _) / steps)
                    break
                value = LOSSES[loss](logits, y)
            else:
                value = loss_fn(model, adv, y)
            grad, = torch.autograd.grad(value.sum(), adv)
        with torch.no_grad():
            if m is not None:
                grad = grad * m
            g = grad.sign() if norm == "linf" else grad / _flat_norm(grad).clamp_min(1e-12)
            moved = adv + direction * step * g
            delta = project(moved - x0, eps, norm)
            moved = (x0 + (delta if m is None else delta * m)).clamp(lo, hi)
            if early_stop:
                moved = torch.where(moving.view(-1, *[1] * (x0.dim() - 1)), moved, adv)
        adv = moved
        if tick:
            tick(len(x0) / steps)
    return adv.detach()


class PGD(Attack):
    """:func:`pgd` in the attack shape.  ``random_start``: start from a uniform draw in the
    ball (Madry et al.'s PGD) or from the image itself (Kurakin et al.'s BIM with projection);
    the name says which.  The step is :func:`step_size` (``rel_stepsize`` times epsilon,
    default ``2.5 / steps``) unless ``step`` fixes it."""

    uses_epsilon = True

    def __init__(self, norm: str = "linf", steps: int = 10, rel_stepsize: float | None = None,
                 step: float | None = None, random_start: bool = True, loss: str | LossFn = "ce",
                 mask: torch.Tensor | None = None, early_stop: bool = False, name: str | None = None):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if rel_stepsize is not None and step is not None:
            raise ValueError("give rel_stepsize or step, not both")
        self.norm, self.steps, self.rel_stepsize, self.step = norm, steps, rel_stepsize, step
        self.random_start, self.loss, self.mask, self.early_stop = random_start, loss, mask, early_stop
        ball = {"linf": "L∞", "l2": "L2"}[norm]
        self.name = name or (f"{'masked ' if mask is not None else ''}{ball} PGD"
                             f"{'' if random_start else ', no random start'}")

    def __call__(self, model, x, y, epsilon=None, target=None, tick=None):
        step = self.step if self.step is not None else step_size(epsilon, self.steps, self.rel_stepsize)
        return pgd(model, x, y if target is None else target, epsilon, norm=self.norm,
                   steps=self.steps, step=step, random_start=self.random_start,
                   targeted=target is not None, loss=self.loss, mask=self.mask,
                   early_stop=self.early_stop, tick=tick)
