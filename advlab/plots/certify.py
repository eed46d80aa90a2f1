"""Certification figures (Chapter 4): certified accuracy curves, noisy / denoised / clean
images with their labels, and the vote histogram of a smoothed classifier."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .style import PAGE_WIDTH_IN, bare, figure, human, legend_below, legend_beside, panels, percent_axis


def plot_certified_curves(curves: pd.DataFrame) -> plt.Figure:
    """Certified accuracy against the L2 radius, one panel per data set, one line per
    (configuration, sigma), with the Clopper-Pearson band; ``curves`` from ``ch04.curves``."""
    sets = list(dict.fromkeys(curves.dataset))
    fig, axes = panels(len(sets), 3.2)
    styles = {"no denoiser": ":", "mse": "-.", "black-box": "--", "white-box": "-"}
    for ax, ds in zip(axes, sets):
        d = curves[curves.dataset == ds]
        for (config, sigma), g in d.groupby(["config", "sigma"], sort=False):
            line, = ax.plot(g.radius, 100 * g.certified_acc, styles.get(config, "-"),
                            label=f"{human(config)}, σ = {sigma:g}")
            ax.fill_between(g.radius, 100 * g.lo, 100 * g.hi, color=line.get_color(), alpha=0.12)
        ax.set_xlabel("L2 radius")
        ax.set_title(f"{human(ds)} ({int(d.n_images.iloc[0])} images)")
        percent_axis(ax, xmax=100)
    axes[0].set_ylabel("certified accuracy")
    legend_below(fig, axes, ncols=2)
    return fig


def plot_denoising_examples(views: dict, classes, max_chars: int = 10) -> plt.Figure:
    """Rows: images; columns: clean, then noisy and denoised for each sigma; titles: the
    classifier's label (check mark when right).  ``views`` from ``ch04.example_views``."""
    x, y, sigmas = views["clean"], views["y"], views["sigmas"]
    n, cols = len(x), 1 + 2 * len(sigmas)
    fig, axes = plt.subplots(n, cols, figsize=(PAGE_WIDTH_IN, (PAGE_WIDTH_IN / cols + 0.45) * n),
                             squeeze=False, layout="constrained")
    name = lambda i: classes[int(i)][:max_chars]  # noqa: E731
    mark = lambda p, t: f"{name(p)} {'✓' if int(p) == int(t) else '✗'}"  # noqa: E731
    for i in range(n):
        panels_ = [("clean", x[i], views["pred_clean"][i])]
        for j, s in enumerate(sigmas):
            panels_ += [(f"noisy σ={s:g}", views["noisy"][j][i], views["pred_noisy"][j][i]),
                        (f"denoised σ={s:g}", views["denoised"][j][i], views["pred_denoised"][j][i])]
        for ax, (what, img, p) in zip(axes[i], panels_):
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
            bare(ax)
            ax.set_title(f"{what}\n{mark(p, y[i])}" if i == 0 else mark(p, y[i]), fontsize=9)
        axes[i, 0].set_ylabel(name(y[i]), fontsize=9.5)
    return fig


def plot_vote_histogram(votes: pd.DataFrame) -> plt.Figure:
    """Vote counts per class (rows of ``votes``) for each configuration (columns)."""
    fig = figure(3.2)
    ax = fig.add_subplot()
    votes.rename(columns=human).plot.bar(ax=ax, width=0.8, legend=False)
    ax.set_ylabel("noise samples")
    ax.set_title(f"votes of f(x + δ) over {int(votes.iloc[:, 0].sum())} noise samples")
    legend_beside(fig, [ax])
    return fig
