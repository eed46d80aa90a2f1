"""Building blocks of adaptive attacks (Athalye, Carlini & Wagner 2018, "Obfuscated gradients
give a false sense of security"): wrap a defence so that gradient attacks see through it.

``BPDA``  Backward Pass Differentiable Approximation: the forward pass runs the real
          (possibly non-differentiable) transform; the backward pass is that of the identity
          or of a given differentiable approximation.
``EOT``   Expectation over Transformation: the mean, over ``n`` draws of a randomised model,
          of its log-probabilities.  Cross-entropy on it is the mean cross-entropy over the
          draws, so its gradient is the mean gradient; all draws run as one batch.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class BPDA(nn.Module):
    """``transform`` forward, ``approx``'s gradient backward (identity when ``approx`` is None).

    Written as ``a(x) + (t(x) - a(x)).detach()``: the value is exactly ``t(x)``, the gradient
    exactly that of ``a``.  ``transform`` runs without building a graph.
    """

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor],
                 approx: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.transform, self.approx = transform, approx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = self.transform(x)
        if out.shape != x.shape:
            raise ValueError(f"BPDA needs a transform that keeps the shape: {tuple(x.shape)} -> "
                             f"{tuple(out.shape)}; give a differentiable approximation instead")
        a = x if self.approx is None else self.approx(x)
        return a + (out - a).detach()


class EOT(nn.Module):
    """Mean log-softmax of ``model`` over ``n`` random draws (Athalye et al. 2018's EOT).

    The batch is repeated ``n`` times and run at once (``chunk`` draws at a time when memory
    is short), so a randomised model must draw its randomness per batch element.
    """

    def __init__(self, model: nn.Module, n: int, chunk: int | None = None):
        super().__init__()
        if n < 1:
            raise ValueError(f"EOT needs n >= 1 draws, got {n}")
        self.model, self.n, self.chunk = model, n, chunk or n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for start in range(0, self.n, self.chunk):
            k = min(self.chunk, self.n - start)
            logits = self.model(x.repeat(k, *[1] * (x.dim() - 1)))
            total = total + F.log_softmax(logits.float(), dim=1).view(k, len(x), -1).sum(0)
        return total / self.n


def defence_aware_pgd(defence: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
                      steps: int = 40, step: float | None = None, batch_size: int = 500,
                      seed: int = 0, progress: bool = True) -> torch.Tensor:
    """L-inf PGD (no random start) descending the defence's own ``attack_loss`` towards each
    image's most likely wrong class under ``defence.model`` (:func:`~advlab.attacks.runner_up`):
    the adaptive attack on a defence that publishes its objective (e.g. the MC-dropout
    detector).  Returns CPU images within ``eps`` of ``x`` and in [0, 1]."""
    from .base import run
    from .pgd import PGD
    from .targets import runner_up
    if len(x) != len(y):
        raise ValueError("x and y must have the same length")
    if eps <= 0:
        raise ValueError("eps must be positive")
    if not hasattr(defence, "attack_loss"):
        raise TypeError(f"{type(defence).__name__} has no attack_loss(x, labels) to descend")
    model = defence.model
    was_training = model.training
    model.eval()
    try:
        targets = runner_up(model, x, y, batch_size)
        attack = PGD("linf", steps, step=step, random_start=False, name="adaptive PGD",
                     loss=lambda d, v, t: d.attack_loss(v, t))
        return run(defence, x, y, attack, [eps], targets=targets, batch_size=batch_size,
                   seed=seed, progress=progress)[float(eps)]
    finally:
        model.train(was_training)
