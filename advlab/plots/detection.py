"""Detectors: score distributions of clean and attacked inputs, and ROC curves."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from .curves import ATTACK_NAMES


def _panels(n: int, width: float, height: float, **kwargs):
    """A figure with ``n`` panels, in one row up to 3 and two columns beyond; unused ones hidden."""
    cols = n if n <= 3 else 2
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, **kwargs)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return fig, axes


def plot_uncertainty_histograms(uncertainty: dict, thresholds: dict | None = None,
                                bins: int = 100) -> plt.Figure:
    """The source study's Figure 1: MC-dropout uncertainty of clean and attacked digits, one panel per
    attack (100 bins, log counts), with the fitted L and H as dashed lines."""
    fig, axes = _panels(len(uncertainty), 5.2, 3.5, sharey=True)
    clean_c, adv_c = sns.color_palette("colorblind", 2)
    for ax, (name, (clean, adv)) in zip(axes.flat, uncertainty.items()):
        top = float(max(clean.max(), adv.max()))
        edges = torch.linspace(0, top * 1.001, bins + 1).numpy()
        ax.hist(clean, edges, color=clean_c, alpha=0.6, label=f"clean ({len(clean)})")
        ax.hist(adv, edges, color=adv_c, alpha=0.6, label=f"attacked ({len(adv)})")
        if thresholds and name in thresholds:
            for value, tag in zip(thresholds[name], ("L", "H")):
                if 0 <= value <= top:
                    ax.axvline(value, color="k", ls="--", lw=1)
                    ax.text(value, 1.02, tag, transform=ax.get_xaxis_transform(), ha="center")
        ax.set_yscale("log")
        ax.set_title(ATTACK_NAMES.get(name, name), pad=14)
        ax.set_xlabel("uncertainty (mean std of softmax)")
        ax.legend(fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("images")
    fig.tight_layout()
    return fig


def plot_roc(curves: dict, auroc: pd.DataFrame | None = None) -> plt.Figure:
    """ROC curves (adversarial = positive) of each detector, one panel per attack; the
    hybrid's is the convex hull of its (L, H, C) operating points (dashed)."""
    fig, axes = _panels(len(curves), 4.6, 4.0)
    colours = dict(zip(("uncertainty", "crops", "hybrid"), sns.color_palette("colorblind", 3)))
    for ax, (name, by_detector) in zip(axes.flat, curves.items()):
        row = auroc[auroc.attack == name].iloc[0] if auroc is not None else None
        for det, (fpr, tpr) in by_detector.items():
            label = det if row is None else f"{det} (AUROC {row[det]:.3f})"
            ax.plot(fpr, tpr, color=colours.get(det), label=label, ls="--" if det == "hybrid" else "-")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.set_title(ATTACK_NAMES.get(name, name))
        ax.set_xlabel("false positive rate (clean flagged)")
        ax.set_ylabel("true positive rate (attacks flagged)")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
