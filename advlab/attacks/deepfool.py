"""DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016), L2, batched: the minimal perturbation
that carries each image across the nearest linearised decision boundary among its
``candidates`` most likely classes, iterated until the label changes.

The same steps as foolbox 3's ``L2DeepFoolAttack`` with its ``"logits"`` loss (the candidate
classes fixed from the clean image's logits, distances ``|f_k - f_0| / ||grad||``, a step of
``(distance + 1e-4) / ||grad||`` along the best class's gradient, ``x0 + (1 + overshoot) *
total`` clipped to [0, 1], an image frozen once misclassified); ``tests/test_attacks.py``
checks it against foolbox.  It computes less: one forward pass per iteration serves the
gradients of every candidate class (foolbox runs one forward pass per class), and only the
images not yet misclassified are carried to the next iteration (foolbox carries the whole
batch until every image is misclassified).
"""
from __future__ import annotations

import torch

from .base import Attack


class DeepFool(Attack):
    """L2 DeepFool, untargeted and minimal (no epsilon).  ``steps``: the most iterations;
    ``candidates``: how many of the most likely classes are considered (None: all);
    ``overshoot``: how far past the boundary the total perturbation is stretched."""

    name, norm, uses_epsilon = "DeepFool", "l2", False

    def __init__(self, steps: int = 50, candidates: int | None = 10, overshoot: float = 0.02):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if candidates is not None and candidates < 2:
            raise ValueError(f"DeepFool needs at least 2 candidate classes, got {candidates}")
        self.steps, self.candidates, self.overshoot = steps, candidates, overshoot

    def __call__(self, model, x, y, epsilon=None, target=None, tick=None):
        if target is not None:
            raise ValueError("DeepFool is untargeted: it takes no target")
        x0 = x.detach()
        with torch.no_grad():
            logits = model(x0)
        k = logits.shape[-1] if self.candidates is None else min(self.candidates, logits.shape[-1])
        classes = logits.argsort(dim=-1).flip(-1)[:, :k]
        p_total = torch.zeros_like(x0)
        current = x0.clone()
        active = torch.arange(len(x0), device=x0.device)
        for _ in range(self.steps):
            xa = current[active].detach().requires_grad_(True)
            with torch.enable_grad():
                out = model(xa)
            is_adv = out.detach().argmax(-1) != y[active]
            if bool(is_adv.all()):
                break
            rows = torch.arange(len(active), device=x0.device)
            cls = classes[active]
            losses, grads = [], []
            with torch.enable_grad():
                l0 = out[rows, cls[:, 0]]
                for j in range(1, k):
                    loss = out[rows, cls[:, j]] - l0
                    grads.append(torch.autograd.grad(loss.sum(), xa, retain_graph=j < k - 1)[0])
                    losses.append(loss.detach())
            with torch.no_grad():
                losses_t, grads_t = torch.stack(losses, 1), torch.stack(grads, 1)
                distances = losses_t.abs() / (grads_t.flatten(2).square().sum(-1).sqrt() + 1e-8)
                best = distances.argmin(1)
                distances = distances[rows, best] + 1e-4
                g = grads_t[rows, best]
                step = (distances / (g.flatten(1).square().sum(-1).sqrt() + 1e-8)).view(-1, *[1] * (g.dim() - 1)) * g
                p_total[active] += step
                moved = (x0[active] + (1.0 + self.overshoot) * p_total[active]).clamp(0, 1)
                keep = is_adv.view(-1, *[1] * (g.dim() - 1))
                current[active] = torch.where(keep, xa.detach(), moved)
                active = active[~is_adv]
        if tick:
            tick(len(x0))
        return current.detach()
