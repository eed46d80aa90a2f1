"""Accuracy with honest uncertainty: Wilson intervals and spread over repeated draws."""
from __future__ import annotations

import numpy as np
import pandas as pd
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
