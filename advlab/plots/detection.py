"""Detectors: MC-dropout outputs of single digits, score distributions of clean and attacked
inputs, and ROC curves."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from .curves import ATTACK_NAMES
from .style import PAGE_WIDTH_IN, human, legend_below, panels, percent_axis


def plot_mc_dropout(x: torch.Tensor, x_adv: torch.Tensor, probs: dict, y: torch.Tensor) -> plt.Figure:
    """Chapter 2: digits (rows), clean beside attacked, and for each version the softmax
    probability of every class in every dropout pass (dots) with the mean over the passes
    (bars). ``probs``: {name: (passes, digits, classes)}, the first clean, the second attacked."""
    from ..defences.mc_dropout import mc_statistics
    n = len(x)
    fig, axes = plt.subplots(n, 1 + len(probs), figsize=(PAGE_WIDTH_IN, 2.5 * n), squeeze=False,
                             layout="constrained", gridspec_kw={"width_ratios": [1.5] + [3] * len(probs)})
    for i in range(n):
        axes[i, 0].imshow(torch.cat([x[i, 0], x_adv[i, 0]], 1), cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_axis_off()
        axes[i, 0].set_title(f"digit {int(y[i])}\n(clean, attacked)", fontsize=9.5)
        for j, (name, p) in enumerate(probs.items()):
            ax = axes[i, j + 1]
            passes = p.shape[0]
            for k in range(p.shape[-1]):
                ax.plot([k] * passes, p[:, i, k], "o", ms=3, alpha=0.35, color="C0")
            mean, pred, unc = mc_statistics(p[:, i:i + 1])
            ax.plot(range(p.shape[-1]), mean[0], "k_", ms=14, mew=2)
            ax.set_xticks(range(p.shape[-1]))
            percent_axis(ax, limits=False)
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(f"{name}: MC class {int(pred)}\nuncertainty {float(unc):.4f}")
            if i == n - 1:
                ax.set_xlabel("class")
        axes[i, 1].set_ylabel("softmax probability")
    return fig


def plot_uncertainty_histograms(uncertainty: dict, thresholds: dict | None = None,
                                bins: int = 100) -> plt.Figure:
    """The source study's Figure 1: MC-dropout uncertainty of clean and attacked digits, one panel per
    attack (100 bins, log counts), with the fitted L and H as dashed lines."""
    fig, axes = panels(len(uncertainty), 2.6, sharey=True)
    clean_c, adv_c = sns.color_palette("colorblind", 2)
    n_clean = n_adv = 0
    for ax, (name, (clean, adv)) in zip(axes, uncertainty.items()):
        top = float(max(clean.max(), adv.max()))
        edges = torch.linspace(0, top * 1.001, bins + 1).numpy()
        ax.hist(clean, edges, color=clean_c, alpha=0.6, label="clean digits")
        ax.hist(adv, edges, color=adv_c, alpha=0.6, label="attacked digits")
        n_clean, n_adv = len(clean), len(adv)
        if thresholds and name in thresholds:
            for value, tag in zip(thresholds[name], ("L", "H")):
                if 0 <= value <= top:
                    ax.axvline(value, color="k", ls="--", lw=1)
                    ax.text(value, 1.02, tag, transform=ax.get_xaxis_transform(), ha="center")
        ax.set_yscale("log")
        ax.set_title(ATTACK_NAMES.get(name, human(name)), pad=14)
        ax.set_xlabel("uncertainty (mean std of softmax)")
        ax.tick_params(labelleft=True)
    for ax in axes[::2]:
        ax.set_ylabel("digits")
    legend_below(fig, axes[:1], ncols=2,
                 title=f"{n_clean:,} clean and {n_adv:,} attacked test digits a panel; dashed: L and H")
    return fig


def plot_roc(curves: dict, auroc: pd.DataFrame | None = None) -> plt.Figure:
    """ROC curves (adversarial = positive) of each detector, one panel per attack; the
    hybrid's is the convex hull of its (L, H, C) operating points (dashed). ``auroc``: the
    hybrid's area goes in each panel's title."""
    fig, axes = panels(len(curves), 3.0)
    colours = dict(zip(("uncertainty", "crops", "hybrid"), sns.color_palette("colorblind", 3)))
    names = {"uncertainty": "uncertainty alone", "crops": "crops alone",
             "hybrid": "hybrid (hull of its operating points)"}
    for ax, (name, by_detector) in zip(axes, curves.items()):
        row = auroc[auroc.attack == name].iloc[0] if auroc is not None else None
        for det, (fpr, tpr) in by_detector.items():
            ax.plot(fpr, tpr, color=colours.get(det), label=names.get(det, det),
                    ls="--" if det == "hybrid" else "-")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        title = ATTACK_NAMES.get(name, human(name))
        if row is not None and "hybrid" in row:
            title += f" (hybrid's AUROC {row['hybrid']:.3f})"
        ax.set_title(title)
        percent_axis(ax)
        percent_axis(ax, "x")
        ax.set_xlabel("clean digits flagged")
    for ax in axes[::2]:
        ax.set_ylabel("attacked digits flagged")
    legend_below(fig, axes, ncols=3)
    return fig
