"""One Pixel attack of Su, Vargas & Sakurai 2019 ("One pixel attack for fooling deep neural
networks", IEEE TEVC): differential evolution (Storn & Price 1997) over ``pixels`` candidate
pixels ``(column, row, value per channel)``, minimising the probability of the true class
(untargeted) or maximising that of the target, without gradients.

The search is scipy's ``differential_evolution`` with ``strategy="rand1bin"``,
``updating="deferred"``, ``polish=False`` (as in the authors of Chapter 5's code: mutation 0.5,
recombination 1, a population of 400 and 100 generations; positions drawn uniformly and
channel values from N(128, 127) clipped to [0, 255] at the start), batched: every image
still running and every member of its population are evaluated in one pass per generation
(through the fast inference path), and an image stops as soon as one of its candidates fools
the model.  Parameters live in the unit cube as in scipy: a mutant coordinate that leaves
[0, 1] is redrawn uniformly; a position ``u`` is pixel ``min(floor(u * H), H - 1)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..inference import logits as fast_logits
from .base import Attack, Tick


def _distinct(own: torch.Tensor, u: torch.Tensor, size: int) -> torch.Tensor:
    """Three population indices per member, distinct and different from its own index ``own``
    (..., ) from uniforms ``u`` (..., 3): the k-th is drawn from the ``size - 1 - k`` indices
    left, counting past the ones already taken in ascending order."""
    taken = own[..., None]
    picks = []
    for k in range(3):
        r = (u[..., k] * (size - 1 - k)).long().clamp_max(size - 2 - k)
        for e in taken.sort(-1).values.unbind(-1):
            r = r + (r >= e).long()
        picks.append(r)
        taken = torch.cat([taken, r[..., None]], -1)
    return torch.stack(picks, -1)


def draws(n: int, popsize: int, dims: int, device=None) -> dict:
    """The random numbers of one generation, from the global RNG in a fixed order:
    parent choice ``(n, P, 3)``, crossover ``(n, P, D)``, the forced coordinate ``(n, P)``
    and replacements for out-of-bounds coordinates ``(n, P, D)``."""
    return {"parents": torch.rand(n, popsize, 3, device=device),
            "cross": torch.rand(n, popsize, dims, device=device),
            "fill": torch.randint(dims, (n, popsize), device=device),
            "redraw": torch.rand(n, popsize, dims, device=device)}


def trial_population(pop: torch.Tensor, d: dict, mutation: float, crossover: float) -> torch.Tensor:
    """rand/1/bin trials (N, P, D) of the populations ``pop`` (N, P, D) in the unit cube."""
    n, p, dims = pop.shape
    own = torch.arange(p, device=pop.device).expand(n, p)
    r = _distinct(own, d["parents"], p)
    take = lambda k: pop.gather(1, r[..., k:k + 1].expand(n, p, dims))  # noqa: E731
    mutant = take(0) + mutation * (take(1) - take(2))
    cross = d["cross"] < crossover
    cross.scatter_(2, d["fill"][..., None], True)
    trial = torch.where(cross, mutant, pop)
    outside = (trial < 0) | (trial > 1)
    return torch.where(outside, d["redraw"], trial)


def apply_pixels(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Images ``x`` (M, C, H, W) with the candidate pixels of ``params`` (M, k * (2 + C)),
    each ``(column, row, values...)`` in the unit cube, written in."""
    m, c, h, w = x.shape
    cand = params.view(m, -1, 2 + c)
    col = (cand[..., 0] * w).long().clamp(0, w - 1)
    row = (cand[..., 1] * h).long().clamp(0, h - 1)
    flat = (row * w + col)[:, None, :].expand(m, c, cand.shape[1])
    out = x.reshape(m, c, h * w).clone()
    out.scatter_(2, flat, cand[..., 2:].transpose(1, 2).to(out.dtype))
    return out.view(m, c, h, w)


def initial_population(n: int, popsize: int, pixels: int, channels: int, device=None) -> torch.Tensor:
    """Positions uniform, channel values N(128, 127)/255 clipped to [0, 1] (Su et al.)."""
    pos = torch.rand(n, popsize, pixels, 2, device=device)
    val = (torch.randn(n, popsize, pixels, channels, device=device) * (127 / 255) + 128 / 255)
    return torch.cat([pos, val.clamp(0, 1)], -1).view(n, popsize, pixels * (2 + channels))


def one_pixel(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, *, targeted: bool = False,
              pixels: int = 1, popsize: int = 400, generations: int = 100,
              mutation: float = 0.5, crossover: float = 1.0, early_stop: bool = True,
              eval_batch: int = 2048, backend: str | None = None,
              tick: Tick | None = None) -> torch.Tensor:
    """One Pixel adversarial examples of the batch ``x`` (same device), see the module docstring.

    ``labels``: true labels (untargeted: minimise their probability) or targets
    (``targeted``: maximise theirs).  ``early_stop``: an image stops once a candidate succeeds
    and returns it (the successful candidate with the best energy); the others return their
    best candidate after ``generations``.  Random numbers come from the global RNG.
    ``backend``: the inference backend of the queries (``advlab.inference``; use ``"torch"``
    for a randomized model, whose ONNX export would freeze its randomness).
    """
    if pixels < 1 or popsize < 4 or generations < 0:
        raise ValueError(f"need pixels >= 1, popsize >= 4 (rand/1 picks three others) and "
                         f"generations >= 0, got {pixels}, {popsize}, {generations}")
    if not 0 <= crossover <= 1 or not 0 <= mutation <= 2:
        raise ValueError(f"need crossover in [0, 1] and mutation in [0, 2], got {crossover}, {mutation}")
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    n, c = x.shape[:2]
    dev = x.device
    labels = labels.to(dev)

    def evaluate(params: torch.Tensor, who: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Energies and success flags of ``params`` (k, P, D) for the images ``who`` (k,)."""
        k, p, dims = params.shape
        flat = params.reshape(k * p, dims)
        base = who.repeat_interleave(p)
        out = []
        for i in range(0, len(flat), eval_batch):
            imgs = apply_pixels(x[base[i:i + eval_batch]], flat[i:i + eval_batch])
            out.append(fast_logits(model, imgs, eval_batch, backend=backend))
        z = torch.cat(out).to(dev).view(k, p, -1)
        prob = F.softmax(z, -1).gather(2, labels[who][:, None, None].expand(k, p, 1)).squeeze(2)
        pred = z.argmax(-1)
        own = pred == labels[who][:, None]
        return (1 - prob if targeted else prob), (own if targeted else ~own)

    pop = initial_population(n, popsize, pixels, c, dev)
    everyone = torch.arange(n, device=dev)
    energy, success = evaluate(pop, everyone)
    best = torch.empty(n, pop.shape[-1], device=dev)
    running = torch.ones(n, dtype=torch.bool, device=dev)

    def settle(who: torch.Tensor, e: torch.Tensor, ok: torch.Tensor, params: torch.Tensor) -> None:
        """Record, for the images ``who`` that succeeded, their best successful candidate."""
        hit = ok.any(1)
        if early_stop and bool(hit.any()):
            masked = torch.where(ok, e, torch.full_like(e, float("inf")))
            pick = masked.argmin(1)
            best[who[hit]] = params[hit, pick[hit]]
            running[who[hit]] = False
            if tick:
                tick(int(hit.sum()))

    settle(everyone, energy, success, pop)
    for _ in range(generations):
        d = draws(n, popsize, pop.shape[-1], dev)  # drawn for every image, running or not
        who = running.nonzero().flatten()
        if len(who) == 0:
            break
        trial = trial_population(pop[who], {k: v[who] for k, v in d.items()}, mutation, crossover)
        e_trial, ok_trial = evaluate(trial, who)
        better = e_trial <= energy[who]
        pop[who] = torch.where(better[..., None], trial, pop[who])
        energy[who] = torch.where(better, e_trial, energy[who])
        settle(who, e_trial, ok_trial, trial)
    left = running.nonzero().flatten()
    if len(left):
        best[left] = pop[left, energy[left].argmin(1)]
        if tick:
            tick(len(left))
    return apply_pixels(x, best)


class OnePixel(Attack):
    """:func:`one_pixel` in the attack shape (no epsilon: the budget is ``pixels`` pixels)."""

    name, norm, uses_epsilon = "One Pixel", "l0", False

    def __init__(self, pixels: int = 1, popsize: int = 400, generations: int = 100,
                 mutation: float = 0.5, crossover: float = 1.0, early_stop: bool = True,
                 eval_batch: int = 2048, backend: str | None = None):
        if pixels < 1 or popsize < 4 or generations < 0:
            raise ValueError(f"need pixels >= 1, popsize >= 4 and generations >= 0, got "
                             f"{pixels}, {popsize}, {generations}")
        self.pixels, self.popsize, self.generations = pixels, popsize, generations
        self.mutation, self.crossover, self.early_stop = mutation, crossover, early_stop
        self.eval_batch, self.backend = eval_batch, backend

    def __call__(self, model, x, y, epsilon=None, target=None, tick=None):
        return one_pixel(model, x, y if target is None else target, targeted=target is not None,
                         pixels=self.pixels, popsize=self.popsize, generations=self.generations,
                         mutation=self.mutation, crossover=self.crossover,
                         early_stop=self.early_stop, eval_batch=self.eval_batch,
                         backend=self.backend, tick=tick)
