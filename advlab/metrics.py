"""Every metric of the book: accuracy with honest uncertainty (Wilson and Clopper-Pearson
intervals, spread over repeated draws), the exact McNemar test that compares two classifiers on
the same images, the Clopper-Pearson lower bound that certification needs, and detection
metrics (confusion counts, the source study's Table 3 breakdown, ROC hull)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint


def _check_counts(successes, n: int) -> np.ndarray:
    if n <= 0:
        raise ValueError("n must be positive")
    k = np.asarray(successes, dtype=float)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError(f"successes must lie in 0..{n}")
    return k


def wilson_ci(successes, n: int, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Wilson score interval (statsmodels) for ``successes`` out of ``n``."""
    lo, hi = proportion_confint(_check_counts(successes, n), n, alpha=alpha, method="wilson")
    return np.asarray(lo), np.asarray(hi)


def clopper_pearson_ci(successes, n: int, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided exact (Clopper & Pearson 1934) interval for a proportion over ``n`` images:
    covers the true rate with probability at least ``1 - alpha``."""
    lo, hi = proportion_confint(_check_counts(successes, n), n, alpha=alpha, method="beta")
    return np.asarray(lo), np.asarray(hi)


def clopper_pearson_lower(successes, n: int, alpha: float = 0.001) -> np.ndarray:
    """One-sided ``1 - alpha`` lower confidence bound on a binomial proportion: Cohen, Rosenfeld
    & Kolter 2019's ``lowerConfidenceBound`` (the lower end of the two-sided ``1 - 2 alpha``
    Clopper-Pearson interval), as randomized-smoothing certification uses it."""
    return np.asarray(proportion_confint(_check_counts(successes, n), n, alpha=2 * alpha,
                                         method="beta")[0])


@dataclass(frozen=True)
class PairedTest:
    """The exact McNemar test of two classifiers on the same images (:func:`mcnemar`):
    ``n`` images, ``a_only`` right only for A, ``b_only`` right only for B, two-sided ``p``."""

    n: int
    a_only: int
    b_only: int
    p: float

    @property
    def difference(self) -> float:
        """A's accuracy minus B's on the ``n`` images (0 when there are none)."""
        return (self.a_only - self.b_only) / self.n if self.n else 0.0

    def winner(self, alpha: float = 0.05) -> int:
        """+1 when A is right significantly more often (``p < alpha``), -1 when B is, else 0."""
        if self.p >= alpha or self.a_only == self.b_only:
            return 0
        return 1 if self.a_only > self.b_only else -1


def _as_bools(v) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    return np.asarray(v).astype(bool).ravel()


def mcnemar(a_correct, b_correct) -> PairedTest:
    """McNemar's exact test (McNemar 1947) of two classifiers judged on the same images:
    ``a_correct`` and ``b_correct`` say, image by image, whether each is right.  Only the
    discordant images count: under the hypothesis that A and B are equally accurate, the
    images right for A alone are Binomial(discordant, 1/2); the two-sided p-value is
    ``scipy.stats.binomtest``'s (1 when no image is discordant)."""
    a = _as_bools(a_correct)
    b = _as_bools(b_correct)
    if a.shape != b.shape:
        raise ValueError(f"a_correct and b_correct must judge the same images, got {len(a)} and {len(b)}")
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    return PairedTest(len(a), a_only, b_only, float(p))


def summarise_draws(per_draw: pd.DataFrame, by: list[str], metrics: list[str], n: int) -> pd.DataFrame:
    """Mean and standard deviation over draws, and a 95% Wilson interval for each metric.

    The interval treats the mean rate as a proportion of the ``n`` images: it measures how much
    the number could change on another sample of images, which is the larger uncertainty here;
    the standard deviation (ddof=1) measures how much it changes from one noise draw to the next.
    """
    g = per_draw.groupby(by, sort=True)[metrics]
    mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
    out = pd.DataFrame(index=mean.index)
    for m in metrics:
        lo, hi = wilson_ci(mean[m].to_numpy() * n, n)
        out[m] = mean[m]
        out[f"{m}_std"] = std[m]
        out[f"{m}_lo"], out[f"{m}_hi"] = lo, hi
    out["draws"] = g.size()
    return out.reset_index()


def normalised_l2(x: torch.Tensor, x_adv: torch.Tensor, mean=None, std=None) -> torch.Tensor:
    """Guo et al. 2018's normalised L2 dissimilarity ``||x - x_adv||_2 / ||x||_2`` of each image
    (a CPU float64 tensor, one value per image).

    On the [0, 1] pixels by default, the space the attacks, the transforms and a person see,
    and the same for every model.  With ``mean`` and ``std`` (per channel) both images are
    first normalised ``(x - mean) / std``, as Guo et al.'s code measured it on the classifier's
    input (which makes the number depend on the model's normalisation).
    """
    if x.shape != x_adv.shape or x.dim() < 2:
        raise ValueError(f"x and x_adv must be batches of the same shape, got {tuple(x.shape)} "
                         f"and {tuple(x_adv.shape)}")
    a, b = x.detach().double().cpu(), x_adv.detach().double().cpu()
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    if mean is not None:
        shape = (1, -1) + (1,) * (a.dim() - 2)
        m = torch.as_tensor(mean, dtype=torch.float64).reshape(shape)
        s = torch.as_tensor(std, dtype=torch.float64).reshape(shape)
        a, b = (a - m) / s, (b - m) / s
    den = a.flatten(1).norm(dim=1)
    if bool((den == 0).any()):
        raise ValueError("an image of norm 0 has no normalised L2 dissimilarity")
    return (a - b).flatten(1).norm(dim=1) / den


# --------------------------------------------------------------------------- detection
def detection_counts(flagged: torch.Tensor, is_adv: torch.Tensor) -> dict:
    """Confusion counts with 'adversarial' as the positive class, and detection accuracy."""
    flagged, adv = flagged.bool(), is_adv.bool()
    tp, fn = int((flagged & adv).sum()), int((~flagged & adv).sum())
    fp, tn = int((flagged & ~adv).sum()), int((~flagged & ~adv).sum())
    return dict(FN=fn, FP=fp, TN=tn, TP=tp, detection_acc=(tp + tn) / max(len(adv), 1))


def labelled_clean_breakdown(flagged: torch.Tensor, is_adv: torch.Tensor, pred: torch.Tensor,
                             y: torch.Tensor) -> dict:
    """The source study's Table 3 (Chapter 2): among the images declared clean, the share of
    clean/adversarial images classified correctly/incorrectly, and the classification
    accuracy on them."""
    kept = ~flagged.bool()
    n = max(int(kept.sum()), 1)
    adv, right = is_adv.bool(), pred == y
    share = lambda m: float((kept & m).sum()) / n  # noqa: E731
    return dict(clean_correct=share(~adv & right), clean_incorrect=share(~adv & ~right),
                adv_correct=share(adv & right), adv_incorrect=share(adv & ~right),
                classification_acc=share(right), kept=int(kept.sum()))


def roc_hull(points: np.ndarray) -> np.ndarray:
    """The ROC convex hull (Provost & Fawcett 2001) of a set of (FPR, TPR) operating points,
    from (0, 0) to (1, 1).

    Every point on it is reachable by choosing at random between two operating points, so
    the area under it is achievable, but only with thresholds picked knowing the labels: an
    optimistic summary of a detector that has several thresholds rather than one score.
    """
    pts = np.vstack([[0.0, 0.0], points, [1.0, 1.0]])
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
    hull: list[np.ndarray] = []
    for p in pts:
        while len(hull) >= 2:
            (ox, oy), (ax, ay) = hull[-2], hull[-1]
            if (ax - ox) * (p[1] - oy) - (ay - oy) * (p[0] - ox) >= 0:
                hull.pop()  # not a clockwise turn: the middle point lies under the hull
            else:
                break
        hull.append(p)
    return np.array(hull)
