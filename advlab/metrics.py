"""Accuracy with honest uncertainty: Wilson intervals and spread over repeated draws."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from statsmodels.stats.proportion import proportion_confint


def wilson_ci(successes, n: int, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Wilson score interval (statsmodels) for ``successes`` out of ``n``."""
    if n <= 0:
        raise ValueError("n must be positive")
    lo, hi = proportion_confint(np.asarray(successes, dtype=float), n, alpha=alpha, method="wilson")
    return np.asarray(lo), np.asarray(hi)


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


def normalized_l2(x: torch.Tensor, x_adv: torch.Tensor, mean=None, std=None) -> torch.Tensor:
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
