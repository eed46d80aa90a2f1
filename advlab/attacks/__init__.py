"""Attacks of the book, one call shape for all (:func:`run`), standard or ours, with or without
an epsilon, targeted or not; and the building blocks of adaptive attacks.

>>> advs = attacks.run(model, x, y, "linf_pgd", epsilons=[2/255, 8/255], steps=10)
>>> advs[8/255]                      # adversarial images at that epsilon, on the CPU
>>> attacks.run(model, x, y, "deepfool")[None]                  # minimal attacks: no epsilon
>>> attacks.run(EOT(defence, 16), x, y, PGD("l2", steps=40), epsilons=[1.0])   # adaptive
"""
from __future__ import annotations

from . import standard
from .adaptive import BPDA, EOT, defence_aware_pgd
from .base import Attack, model_device, run
from .one_pixel import OnePixel
from .pgd import PGD, pgd
from .targets import least_likely, random_targets, runner_up

# name -> factory; keyword arguments of ``run`` go to the factory.
ATTACKS = {
    "fgsm": standard.fgsm, "fgm": standard.fgm, "bim": standard.bim, "l2_bim": standard.l2_bim,
    "linf_pgd": standard.linf_pgd, "l2_pgd": standard.l2_pgd, "bim_a": standard.bim_a,
    "deepfool": standard.deepfool, "cw": standard.cw, "jsma": standard.JSMA,
    "one_pixel": OnePixel,
}


def make(name: str, **params) -> Attack:
    """The attack called ``name`` (see :data:`ATTACKS`) with its parameters."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; choose one of {sorted(ATTACKS)}")
    return ATTACKS[name](**params)


__all__ = ["ATTACKS", "Attack", "BPDA", "EOT", "defence_aware_pgd", "OnePixel", "PGD", "make", "model_device", "pgd",
           "least_likely", "random_targets", "run", "runner_up"]
