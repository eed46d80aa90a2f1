"""Curves: accuracy (or another rate) against a strength parameter: noise sigma, epsilon, gamma."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


LABELS = {"acc_ns": "no smoothing", "acc_ss": "single blur", "acc_ds": "double blur",
          "acc_maj": "2-of-3 vote", "reject": "reject rate"}


ATTACK_NAMES = {"fgsm": "FGSM", "bim": "BIM", "bim_a": "BIM-A", "jsma": "JSMA"}


def plot_noise_curves(table: pd.DataFrame, source: pd.DataFrame | None = None) -> plt.Figure:
    """Accuracy and reject rate against noise sigma, one column per kernel, with 95% intervals.

    Solid lines: this run (mean over draws, Wilson interval as a band); crosses: the source study.
    """
    kernels = list(dict.fromkeys(table.kernel))
    fig, axes = plt.subplots(2, len(kernels), figsize=(5.2 * len(kernels), 6.5), squeeze=False,
                             sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    colours = dict(zip(LABELS, sns.color_palette("colorblind", len(LABELS))))
    for j, k in enumerate(kernels):
        t = table[table.kernel == k]
        for row, metrics in ((0, ["acc_ns", "acc_ss", "acc_ds", "acc_maj"]), (1, ["reject"])):
            ax = axes[row, j]
            for m in metrics:
                ax.plot(t.noise_sigma, t[m], "-o", color=colours[m], label=LABELS[m], ms=4)
                ax.fill_between(t.noise_sigma, t[f"{m}_lo"], t[f"{m}_hi"], color=colours[m], alpha=0.2)
                if source is not None and k == "5x5":
                    ax.plot(source.noise_sigma, source[m], "x", color=colours[m], ms=8, mew=2)
            ax.set_ylim(0, 1 if row == 0 else max(0.05, float(t["reject_hi"].max()) * 1.15))
            ax.grid(alpha=0.3)
        axes[0, j].set_title(f"Gaussian blur {k}, blur sigma 1")
        axes[0, j].set_ylabel("top-1 accuracy")
        axes[1, j].set_ylabel("reject rate")
        axes[1, j].set_xlabel("noise sigma")
    axes[0, 0].legend(loc="lower left", fontsize=8,
                      title="lines: this run; x: source study (5x5)" if source is not None else None,
                      title_fontsize=8)
    fig.tight_layout()
    return fig


def plot_attack_curves(attacks: pd.DataFrame) -> plt.Figure:
    """Accuracy of the bare model and of the vote, and the reject rate, against epsilon."""
    clean = attacks[attacks.attack == "none"].iloc[0]
    atk = attacks[attacks.attack != "none"]
    names = list(dict.fromkeys(atk.attack))
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.6 * (len(names) + 1), 3.8), squeeze=False)
    styles = {a: s for a, s in zip(dict.fromkeys(atk.attacker), ["-", "--", ":"])}
    for j, name in enumerate(names):
        ax = axes[0, j]
        for who, t in atk[atk.attack == name].groupby("attacker", sort=False):
            for m, c in (("acc_ns", "C0"), ("acc_maj", "C3")):
                ax.plot([0, *t.eps_255], [clean[m], *t[m]], styles[who], color=c, marker="o", ms=4,
                        label=f"{LABELS[m]}, attacker {who}")
            axes[0, -1].plot([0, *t.eps_255], [clean.reject, *t.reject], styles[who], marker="o",
                             ms=4, label=f"{name}, {who}")
        ax.set(title=f"{name} (L-inf)", xlabel="epsilon (x/255)", ylabel="top-1 accuracy", ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    axes[0, -1].set(title="reject rate of the vote", xlabel="epsilon (x/255)", ylim=(0, 1))
    axes[0, -1].legend(fontsize=7)
    axes[0, -1].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_calibration(calibration: pd.DataFrame, chosen: dict) -> plt.Figure:
    """Undefended accuracy on the 50/50 mixed set against attack strength, with the paper's
    Table 1 value as a dashed line and the chosen strength circled."""
    attacks = list(dict.fromkeys(calibration.attack))
    # two panels a row (four attacks: a 2x2 grid) so that each panel stays readable on a page
    cols = min(2, len(attacks))
    rows = -(-len(attacks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows), squeeze=False,
                             sharey=True)
    for ax, name in zip(axes.flat, attacks):
        t = calibration[calibration.attack == name]
        ax.plot(t.strength, t.mixed_acc, "-o", ms=4)
        ax.axhline(float(t.target.iloc[0]), color="k", ls="--", lw=1, label="paper's Table 1")
        pick = t[t.strength == chosen[name]]
        ax.plot(pick.strength, pick.mixed_acc, "o", ms=12, mfc="none", mec="C3", mew=2,
                label=f"chosen: {chosen[name]:g}")
        ax.set_xlabel("γ (largest share of changed pixels)" if name == "jsma" else "ε (L∞ budget)")
        ax.set_xlim(min(t.strength) * 0.9, max(t.strength) * 1.05)
        ax.set_title(ATTACK_NAMES.get(name, name))
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(attacks):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("undefended accuracy,\nmixed set")
    fig.tight_layout()
    return fig
