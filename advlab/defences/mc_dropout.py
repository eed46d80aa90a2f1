"""The hybrid adversarial-image detector of Alshemali, Graham & Kalita 2019, "Toward robust
image classification" (Algorithm 1), in the defence shape, with the objective of an attacker
who knows it.

1. ``n`` Monte-Carlo dropout passes (one batched forward): provisional class = arg-max of the
   mean softmax; uncertainty = the mean over classes of the standard deviation of the softmax
   over the passes.
2. uncertainty > H: adversarial; uncertainty < L: clean; in between, the four corner crops and
   the centre crop are resized back and reclassified (dropout off), and the image is clean when
   at least C of the five agree with the provisional class.

The source study's pseudo-code says "counter > C" but its text sets C = 5 and means "all five agree",
so here an image is clean when ``agreement >= C``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2.functional import five_crop
from tqdm import tqdm

from ..inference import predict
from .base import ABSTAIN, Defence

N_CROPS = 5


# --------------------------------------------------------------------------- MC dropout
@dataclass
class MCStats:
    """Per-image results of MC dropout (CPU tensors)."""

    mean: torch.Tensor         # (B, K) mean softmax over the passes
    pred: torch.Tensor         # (B,) provisional class
    uncertainty: torch.Tensor  # (B,) mean over classes of the std over passes


def mc_statistics(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, arg-max and uncertainty from softmax outputs of shape (passes, B, K).

    The standard deviation is the population one (divide by the number of passes).
    """
    if probs.dim() != 3:
        raise ValueError(f"expected (passes, batch, classes), got {tuple(probs.shape)}")
    mean = probs.mean(0)
    return mean, mean.argmax(1), probs.std(0, correction=0).mean(1)


def mc_probs(model: nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
    """Softmax of ``n`` dropout samples, (n, B, K), differentiable.

    Uses ``model.mc_logits(x, n)`` when the model has it (dropout only in the head, so the
    features are computed once), else runs the repeated batch with the dropout modules on.
    """
    if hasattr(model, "mc_logits"):
        logits = model.mc_logits(x, n)
    else:
        drops = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
        if not drops:
            raise ValueError("the model has no dropout layer; MC dropout needs one")
        states = [m.training for m in drops]
        for m in drops:
            m.train()
        try:
            logits = model(x.repeat(n, *([1] * (x.dim() - 1)))).view(n, len(x), -1)
        finally:
            for m, s in zip(drops, states):
                m.train(s)
    return logits.float().softmax(-1)


@torch.no_grad()
def mc_dropout(model: nn.Module, x: torch.Tensor, n: int = 50, batch_size: int = 1000,
               seed: int = 0, progress: bool = False) -> MCStats:
    """MC-dropout statistics for every image of ``x`` (CPU in, CPU out).

    The dropout masks are drawn from a generator seeded with ``seed`` (the global RNG is
    restored afterwards), so a call is repeatable for the same ``seed`` and ``batch_size``.
    """
    if n < 2:
        raise ValueError("MC dropout needs n >= 2 passes to measure a spread")
    device = next(model.parameters()).device
    means, preds, uncs = [], [], []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in tqdm(range(0, len(x), batch_size), desc="MC dropout", disable=not progress,
                      leave=False):
            mean, pred, unc = mc_statistics(mc_probs(model, x[i:i + batch_size].to(device), n))
            means.append(mean.cpu()), preds.append(pred.cpu()), uncs.append(unc.cpu())
    return MCStats(torch.cat(means), torch.cat(preds), torch.cat(uncs))


# --------------------------------------------------------------------------- five crops
def crop_views(x: torch.Tensor, size: int) -> torch.Tensor:
    """The four corner crops and the centre crop of side ``size``, resized back (bilinear)
    to the input size: shape (5, B, C, H, W), order top-left, top-right, bottom-left,
    bottom-right, centre (torchvision's ``five_crop``)."""
    h, w = x.shape[-2:]
    if not 0 < size <= min(h, w):
        raise ValueError(f"crop size must be in 1..{min(h, w)}, got {size}")
    crops = torch.stack(five_crop(x, [size, size]))  # (5, B, C, size, size)
    flat = crops.flatten(0, 1)
    if size != h or size != w:
        flat = F.interpolate(flat, size=(h, w), mode="bilinear", align_corners=False)
    return flat.view(N_CROPS, *x.shape)


@torch.no_grad()
def crop_agreement(model: nn.Module, x: torch.Tensor, pred: torch.Tensor, size: int,
                   batch_size: int = 1000) -> torch.Tensor:
    """How many of the five resized crops (classified with dropout off, through the fast
    inference path) agree with ``pred``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(x), batch_size):
            views = crop_views(x[i:i + batch_size].to(device), size)
            labels = predict(model, views.flatten(0, 1), len(views) * views.shape[1], device,
                             amp=False).view(N_CROPS, -1)
            out.append((labels == pred[i:i + batch_size]).sum(0))
    finally:
        model.train(was_training)
    return torch.cat(out)


# --------------------------------------------------------------------------- the decision
@dataclass(frozen=True)
class Thresholds:
    low: float   # L: below it, clean
    high: float  # H: above it, adversarial
    count: int   # C: in between, clean when at least C crops agree

    def __post_init__(self):
        if self.low > self.high:
            raise ValueError(f"need L <= H, got L={self.low} > H={self.high}")
        if not 0 <= self.count <= N_CROPS:
            raise ValueError(f"C must be in 0..{N_CROPS}, got {self.count}")


def flag_adversarial(uncertainty: torch.Tensor, agreement: torch.Tensor, th: Thresholds) -> torch.Tensor:
    """Algorithm 1: True where the image is declared adversarial."""
    middle = (uncertainty >= th.low) & (uncertainty <= th.high)
    return (uncertainty > th.high) | (middle & (agreement < th.count))


def _candidate_thresholds(uncertainty: torch.Tensor, grid: int) -> torch.Tensor:
    qs = torch.quantile(uncertainty.double(), torch.linspace(0, 1, grid, dtype=torch.float64))
    edges = torch.tensor([-np.inf, np.inf], dtype=torch.float64)
    return torch.unique(torch.cat([edges, qs]))


def grid_accuracy(uncertainty: torch.Tensor, agreement: torch.Tensor, is_adv: torch.Tensor,
                  grid: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Detection accuracy of every (L, H, C) on a grid: returns (candidates, acc[L, H, C]).

    Candidates are quantiles of the uncertainty plus -inf and +inf; pairs with L > H get -1.
    """
    cand = _candidate_thresholds(uncertainty, grid)
    u = uncertainty.double()
    below = (u[None, :] < cand[:, None])       # (T, n): u < L for candidate L
    above = (u[None, :] > cand[:, None])       # (T, n): u > H for candidate H
    adv = is_adv.bool()
    acc = torch.full((len(cand), len(cand), N_CROPS + 1), -1.0, dtype=torch.float64)
    for c in range(N_CROPS + 1):
        disagree = agreement < c
        # flagged = above[H] | (~below[L] & ~above[H] & disagree)
        flagged = above[None, :, :] | (~below[:, None, :] & ~above[None, :, :] & disagree)
        acc[:, :, c] = (flagged == adv).double().mean(-1)
    valid = cand[:, None] <= cand[None, :]
    acc[~valid] = -1.0
    return cand, acc


def fit_thresholds(uncertainty: torch.Tensor, agreement: torch.Tensor, is_adv: torch.Tensor,
                   grid: int = 64, min_count: int = 1) -> tuple[Thresholds, float]:
    """(L, H, C) with the highest detection accuracy on the given labelled set.

    Ties go to the first maximum in (L, H, C) order.  ``min_count`` excludes C below it
    (C = 0 would make the crops pointless).
    """
    if not (len(uncertainty) == len(agreement) == len(is_adv)):
        raise ValueError("uncertainty, agreement and is_adv must have the same length")
    cand, acc = grid_accuracy(uncertainty, agreement, is_adv, grid)
    acc[:, :, :min_count] = -1.0
    best = int(acc.flatten().argmax())
    i, j, c = np.unravel_index(best, acc.shape)
    return Thresholds(float(cand[i]), float(cand[j]), int(c)), float(acc[i, j, c])


def operating_points(uncertainty: torch.Tensor, agreement: torch.Tensor, is_adv: torch.Tensor,
                     grid: int = 64) -> np.ndarray:
    """(FPR, TPR) of every (L, H, C) on the grid, shape (M, 2)."""
    cand = _candidate_thresholds(uncertainty, grid)
    u, adv = uncertainty.double(), is_adv.bool()
    pts = []
    for c in range(N_CROPS + 1):
        for i, lo in enumerate(cand):
            hi = cand[i:]
            above = u[None, :] > hi[:, None]
            flagged = above | ((u[None, :] >= lo) & ~above & (agreement < c)[None, :])
            tpr = (flagged & adv).sum(1) / max(int(adv.sum()), 1)
            fpr = (flagged & ~adv).sum(1) / max(int((~adv).sum()), 1)
            pts.append(torch.stack([fpr, tpr], 1))
    return torch.cat(pts).numpy()


# --------------------------------------------------------------------------- adaptive attack
def detector_loss(model: nn.Module, x: torch.Tensor, target: torch.Tensor, n_eot: int,
                  crop_size: int, unc_weight: float) -> torch.Tensor:
    """Per-image loss an attacker who knows the detector minimises.

    Cross-entropy towards ``target`` averaged over ``n_eot`` dropout masks (expectation over
    transformation, Athalye et al. 2018) and over the five resized crops, plus ``unc_weight``
    times the MC-dropout uncertainty of the detector, so the image is misclassified, lands
    below L and makes the crops agree.
    """
    probs = mc_probs(model, x, n_eot)                                   # (n, B, K)
    ce_mc = -torch.log(probs.gather(2, target.view(1, -1, 1).expand(n_eot, -1, 1)).clamp_min(1e-12))
    unc = probs.std(0, correction=0).mean(1)
    views = crop_views(x, crop_size).flatten(0, 1)
    ce_crops = F.cross_entropy(model(views), target.repeat(N_CROPS), reduction="none")
    return ce_mc.mean(0).squeeze(-1) + ce_crops.view(N_CROPS, -1).mean(0) + unc_weight * unc


class MCDropoutDetector(Defence):
    """Algorithm 1 in the defence shape: ``predict`` gives the MC-dropout class, and
    :data:`~advlab.defences.base.ABSTAIN` where the detector flags the image.

    ``score(x)`` computes what the decision needs (plain prediction with dropout off, MC class,
    uncertainty, crop agreement) once, and ``decide(scores, thresholds)`` applies any (L, H, C),
    so fitting thresholds never recomputes the passes.  ``forward`` (for attackers): the mean
    log-softmax over ``n_eot`` dropout masks; ``attack_loss`` (for attackers who know the
    detector): :func:`detector_loss`, which also makes the crops agree and the uncertainty low.
    """

    randomized = True

    def __init__(self, model: nn.Module, thresholds: Thresholds | None = None, passes: int = 50,
                 crop_size: int = 24, n_eot: int = 16, unc_weight: float = 10.0):
        super().__init__()
        self.model, self.thresholds, self.passes, self.crop_size = model, thresholds, passes, crop_size
        self.n_eot, self.unc_weight = n_eot, unc_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mc_probs(self.model, x, self.n_eot).mean(0).clamp_min(1e-12).log()

    def attack_loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-image :func:`detector_loss` towards ``labels`` (the attack's targets)."""
        return detector_loss(self.model, x, labels, self.n_eot, self.crop_size, self.unc_weight)

    @torch.no_grad()
    def score(self, x: torch.Tensor, batch_size: int = 1000, seed: int = 0) -> dict:
        """Plain prediction (dropout off), MC class, uncertainty and crop agreement (CPU)."""
        self.check_input(x)
        was_training = self.model.training
        try:
            mc = mc_dropout(self.model, x, n=self.passes, batch_size=batch_size, seed=seed)
            plain = predict(self.model.eval(), x, batch_size, amp=False)
        finally:
            self.model.train(was_training)
        return {"pred_plain": plain, "pred": mc.pred, "uncertainty": mc.uncertainty,
                "agreement": crop_agreement(self.model, x, mc.pred, self.crop_size, batch_size)}

    def decide(self, scores: dict, thresholds: Thresholds | None = None) -> torch.Tensor:
        """The MC class, :data:`ABSTAIN` where Algorithm 1 flags the image."""
        th = thresholds or self.thresholds
        if th is None:
            raise ValueError("the detector has no thresholds yet: pass thresholds (fit_thresholds)")
        flagged = flag_adversarial(scores["uncertainty"], scores["agreement"], th)
        return torch.where(flagged, torch.full_like(scores["pred"], ABSTAIN), scores["pred"])

    def predict(self, x: torch.Tensor, batch_size: int = 1000, seed: int | None = None) -> torch.Tensor:
        return self.decide(self.score(x, batch_size, 0 if seed is None else seed))
