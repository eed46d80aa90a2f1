"""Certification figures (Chapter 4): certified accuracy curves, noisy / denoised / clean
images with their labels, and the vote histogram of a smoothed classifier."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .style import PAGE_WIDTH_IN, bare, figure, human, legend_below, legend_beside, panels, percent_axis


def plot_certified_curves(curves: pd.DataFrame, flags: pd.DataFrame | None = None) -> plt.Figure:
    """Certified accuracy against the L2 radius, one panel per noise σ (two a row), one line
    per configuration with its Clopper-Pearson band; ``curves`` from ``ch04.curves``.
    ``flags`` (``ch04.per_sigma``: ``config``, ``sigma``, ``collapsed``, ``top_name``,
    ``top_share``) draws collapsed classifiers grey and dotted, with the class they return and
    its share in the legend.  A vertical line marks the largest radius N allows."""
    sigmas = sorted(set(curves.sigma))
    fig, axes = panels(len(sigmas), 2.9, sharey=True)
    styles = {"no denoiser": ":", "mse": "-.", "black-box": "--", "white-box": "-"}
    colors = {c: f"C{i}" for i, c in enumerate(dict.fromkeys(curves.config))}
    collapsed = {}
    if flags is not None:
        for f in flags.drop_duplicates(["config", "sigma"]).itertuples():
            if f.collapsed:
                collapsed[(f.config, f.sigma)] = f"{f.top_name} {100 * f.top_share:.0f}%"
    for ax, sigma in zip(axes, sigmas):
        d = curves[curves.sigma == sigma]
        cap = float(d.max_radius.iloc[0])
        for config, g in d.groupby("config", sort=False):
            g = g[g.radius <= cap + 1e-9]   # no certificate reaches beyond the cap
            flag = collapsed.get((config, sigma))
            label = (human(config) if flag is None
                     else f"{human(config)}, σ = {sigma:g}: collapsed ({flag})")
            kw = (dict(color="0.55", linestyle=":") if flag
                  else dict(color=colors[config], linestyle=styles.get(config, "-")))
            ax.plot(g.radius, 100 * g.certified_acc, label=label, **kw)
            if not flag:
                ax.fill_between(g.radius, 100 * g.lo, 100 * g.hi, color=colors[config], alpha=0.12)
        ax.axvline(cap, color="0.3", linewidth=0.8)
        ax.set_xlim(0, max(1.6, cap + 0.1))
        ax.set_xlabel("L2 radius")
        ax.set_title(f"σ = {sigma:g} ({int(d.n_images.iloc[0])} images; largest radius {cap:.2f})")
        percent_axis(ax, xmax=100)
    for ax in axes[::2]:
        ax.set_ylabel("certified accuracy")
    legend_below(fig, axes, ncols=2)
    return fig


def plot_denoising_examples(views: dict, classes, max_chars: int = 10) -> plt.Figure:
    """Rows: images; columns: clean, then noisy and denoised for each sigma; titles: the
    classifier's label (check mark when right).  ``views`` from ``ch04.example_views``."""
    x, y, sigmas = views["clean"], views["y"], views["sigmas"]
    n, cols = len(x), 1 + 2 * len(sigmas)
    fig, axes = plt.subplots(n, cols, figsize=(PAGE_WIDTH_IN, (PAGE_WIDTH_IN / cols + 0.45) * n + 0.35),
                             squeeze=False, layout="constrained")
    name = lambda i: classes[int(i)][:max_chars]  # noqa: E731
    mark = lambda p, t: f"{name(p)} {'✓' if int(p) == int(t) else '✗'}"  # noqa: E731
    for i in range(n):
        panels_ = [("clean\n", x[i], views["pred_clean"][i])]
        for j, s in enumerate(sigmas):
            panels_ += [(f"noisy\nσ = {s:g}", views["noisy"][j][i], views["pred_noisy"][j][i]),
                        (f"denoised\nσ = {s:g}", views["denoised"][j][i], views["pred_denoised"][j][i])]
        for ax, (what, img, p) in zip(axes[i], panels_):
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
            bare(ax)
            ax.set_title(f"{what}\n{mark(p, y[i])}" if i == 0 else mark(p, y[i]), fontsize=9)
        axes[i, 0].set_ylabel(name(y[i]), fontsize=9.5)
    return fig


def plot_vote_histogram(votes: pd.DataFrame) -> plt.Figure:
    """Vote counts per class (rows of ``votes``) for each configuration (columns); the image's
    label and σ from ``votes.attrs`` when present."""
    fig = figure(3.2)
    ax = fig.add_subplot()
    votes.rename(columns=human).plot.bar(ax=ax, width=0.8, legend=False)
    ax.set_ylabel("noise samples")
    ax.set_xlabel("class")
    label = votes.attrs.get("label")
    what = (f": {'an' if label[0] in 'aeiou' else 'a'} {label}, σ = {votes.attrs['sigma']:g}"
            if label else "")
    ax.set_title(f"votes over {int(votes.iloc[:, 0].sum())} noise samples{what}")
    legend_beside(fig, [ax])
    return fig
