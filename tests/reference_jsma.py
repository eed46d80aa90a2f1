"""A plain reference JSMA (cleverhans v3 pair algorithm on logits), one image at a time:
the full Jacobian from ``torch.autograd.functional.jacobian`` and a Python double loop over the
pairs p < q of the search domain.  Slow and obviously correct; it is what ``advlab.jsma`` is
tested against.
"""
from __future__ import annotations

import math

import torch
from torch.autograd.functional import jacobian


def reference_jsma_one(model, x, target, theta=1.0, gamma=0.1, clip=(0.0, 1.0)):
    """Attack one input ``x`` (no batch dim) towards class ``target``; returns (adv, iterations)."""
    lo, hi = clip
    shape = x.shape
    adv = x.detach().clone().reshape(-1)
    n = adv.numel()
    max_iters = math.floor(gamma * n / 2)
    if theta > 0:
        domain = {i for i in range(n) if adv[i] < hi}
    else:
        domain = {i for i in range(n) if adv[i] > lo}

    def logits_of(v):
        return model(v.reshape(1, *shape))[0]

    iterations = 0
    for _ in range(max_iters):
        with torch.no_grad():
            if int(logits_of(adv).argmax()) == target:
                break
        if len(domain) < 2:
            break
        jac = jacobian(logits_of, adv)                  # (n_classes, n)
        n_classes = jac.shape[0]
        alpha = [float(v) for v in jac[target]]
        beta = [sum(float(jac[j, i]) for j in range(n_classes) if j != target)
                for i in range(n)]
        best, best_pair = None, None
        for p in range(n):
            for q in range(p + 1, n):
                if p not in domain or q not in domain:
                    continue
                a = alpha[p] + alpha[q]
                b = beta[p] + beta[q]
                valid = (a > 0 and b < 0) if theta > 0 else (a < 0 and b > 0)
                if not valid:
                    continue
                score = -a * b
                if best is None or score > best:        # strict: first maximum wins
                    best, best_pair = score, (p, q)
        if best_pair is None:
            break
        for i in best_pair:
            adv[i] = min(max(float(adv[i]) + theta, lo), hi)
            domain.discard(i)
        iterations += 1
    return adv.reshape(shape), iterations


def reference_jsma(model, x, target, theta=1.0, gamma=0.1, clip=(0.0, 1.0)):
    """:func:`reference_jsma_one` on every input of the batch ``x``."""
    results = [reference_jsma_one(model, xi, int(ti), theta, gamma, clip)
               for xi, ti in zip(x, target)]
    return (torch.stack([r[0] for r in results]),
            torch.tensor([r[1] for r in results], dtype=torch.long))
