"""One entry point for the gradient attacks of the book, run through foolbox 3.

``fgsm``  Goodfellow et al. 2015, one signed-gradient step of size epsilon.
``bim``   Kurakin et al. 2017, iterated FGSM without random start.
``pgd``   Madry et al. 2018, iterated FGSM from a random start in the L-inf ball.
"""
from __future__ import annotations

import foolbox as fb
import torch
from torch import nn
from tqdm import tqdm

ATTACKS = ("fgsm", "bim", "pgd")


def make_attack(name: str, steps: int = 10, rel_stepsize: float | None = None):
    """A foolbox L-inf attack; iterative ones use step ``rel_stepsize * eps`` (default 2.5/steps)."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of {ATTACKS}")
    if name == "fgsm":
        return fb.attacks.FGSM()
    if steps < 1:
        raise ValueError("iterative attacks need steps >= 1")
    rel = rel_stepsize if rel_stepsize is not None else 2.5 / steps
    if name == "bim":
        return fb.attacks.LinfBasicIterativeAttack(rel_stepsize=rel, steps=steps)
    return fb.attacks.LinfPGD(rel_stepsize=rel, steps=steps, random_start=True)


def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, name: str, epsilons: list[float],
           steps: int = 10, rel_stepsize: float | None = None, batch_size: int = 32,
           seed: int = 0, progress: bool = True) -> dict[float, torch.Tensor]:
    """Adversarial versions of ``x`` (in [0, 1]) for every epsilon; returns CPU tensors.

    ``model`` may be any differentiable module returning logits (or log-probabilities), e.g. a
    classifier or a defence written as one, which is how adaptive attacks are built.
    """
    if len(x) != len(y):
        raise ValueError("x and y must have the same length")
    device = next(model.parameters()).device
    fmodel = fb.PyTorchModel(model.eval(), bounds=(0, 1), device=device)
    atk = make_attack(name, steps, rel_stepsize)
    torch.manual_seed(seed)  # PGD's random start uses torch's global generator
    out: dict[float, list[torch.Tensor]] = {float(e): [] for e in epsilons}
    batches = range(0, len(x), batch_size)
    for i in tqdm(batches, desc=f"{name} attack", disable=not progress, leave=False):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        _, advs, _ = atk(fmodel, xb, yb, epsilons=[float(e) for e in epsilons])
        for e, adv in zip(out, advs):
            out[e].append(adv.detach().cpu())
    return {e: torch.cat(v) for e, v in out.items()}


def bim_early_stop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
                   rel_stepsize: float | None = None, batch_size: int = 256,
                   progress: bool = True) -> torch.Tensor:
    """BIM that leaves an image alone as soon as it is misclassified: "BIM-A" of Feinman et al.
    2017 (the fixed-step BIM above is their "BIM-B").  Same step (``rel_stepsize * eps``,
    default 2.5/steps), projection and clipping as foolbox's BIM; written here because foolbox
    has no per-image early stop.  Returns CPU tensors.
    """
    if len(x) != len(y):
        raise ValueError("x and y must have the same length")
    if eps <= 0 or steps < 1:
        raise ValueError("need eps > 0 and steps >= 1")
    step = (rel_stepsize if rel_stepsize is not None else 2.5 / steps) * eps
    device = next(model.parameters()).device
    out = []
    for i in tqdm(range(0, len(x), batch_size), desc="BIM-A attack", disable=not progress, leave=False):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        adv = xb.clone()
        for _ in range(steps):
            adv.requires_grad_(True)
            logits = model(adv)
            still = logits.argmax(1) == yb
            if not bool(still.any()):
                adv = adv.detach()
                break
            grad, = torch.autograd.grad(nn.functional.cross_entropy(logits, yb, reduction="sum"), adv)
            with torch.no_grad():
                moved = (xb + (adv + step * grad.sign() - xb).clamp(-eps, eps)).clamp(0, 1)
                adv = torch.where(still.view(-1, *[1] * (xb.dim() - 1)), moved, adv)
        out.append(adv.detach().cpu())
    return torch.cat(out) if out else x.clone()
