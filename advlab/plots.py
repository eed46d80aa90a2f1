"""Figures shared by the notebooks and the CLI (each returns a matplotlib Figure)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

LABELS = {"acc_ns": "no smoothing", "acc_ss": "single blur", "acc_ds": "double blur",
          "acc_maj": "2-of-3 vote", "reject": "reject rate"}


def plot_noise_curves(table: pd.DataFrame, seed: pd.DataFrame | None = None) -> plt.Figure:
    """Accuracy and reject rate against noise sigma, one column per kernel, with 95% intervals.

    Solid lines: this run (mean over draws, Wilson interval as a band); crosses: the seed.
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
                ax.plot(t.sigma, t[m], "-o", color=colours[m], label=LABELS[m], ms=4)
                ax.fill_between(t.sigma, t[f"{m}_lo"], t[f"{m}_hi"], color=colours[m], alpha=0.2)
                if seed is not None and k == "5x5":
                    ax.plot(seed.sigma, seed[m], "x", color=colours[m], ms=8, mew=2)
            ax.set_ylim(0, 1 if row == 0 else max(0.05, float(t["reject_hi"].max()) * 1.15))
            ax.grid(alpha=0.3)
        axes[0, j].set_title(f"Gaussian blur {k}, blur sigma 1")
        axes[0, j].set_ylabel("top-1 accuracy")
        axes[1, j].set_ylabel("reject rate")
        axes[1, j].set_xlabel("noise sigma")
    axes[0, 0].legend(loc="lower left", fontsize=8,
                      title="lines: this run; x: seed (5x5)" if seed is not None else None,
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


def plot_examples(views: dict, classes, max_chars: int = 18) -> plt.Figure:
    """Grid of noisy inputs (rows: images, columns: noise sigma) titled with the three labels.

    ``views`` comes from ``advlab.experiments.ch01.example_views``.
    """
    x, preds, sigmas, y = views["x"], views["preds"], views["sigmas"], views["y"]
    n, s = x.shape[0], x.shape[1]
    fig, axes = plt.subplots(n, s, figsize=(2.6 * s, 3.3 * n + 0.3), squeeze=False)
    short = lambda i: "REJECT" if i < 0 else classes[i][:max_chars]  # noqa: E731
    for i in range(n):
        for j in range(s):
            ax = axes[i, j]
            ax.imshow(x[i, j].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([]), ax.set_yticks([])
            p = preds[i, j].tolist()
            ok = lambda v: "✓" if v == int(y[i]) else "✗"  # noqa: E731
            head = f"noise sigma = {sigmas[j]}\n" if i == 0 else ""
            ax.set_title(f"{head}NS {short(p[0])} {ok(p[0])}\nSS {short(p[1])} {ok(p[1])}\n"
                         f"DS {short(p[2])} {ok(p[2])}\nvote {short(p[3])} {ok(p[3])}", fontsize=7,
                         loc="left")
            if j == 0:
                ax.set_ylabel(classes[int(y[i])][:max_chars], fontsize=9)
    fig.tight_layout()
    return fig


def show_kernels(kernels: dict[str, torch.Tensor]) -> plt.Figure:
    """Heat maps of named 2-D kernels on one colour scale."""
    fig, axes = plt.subplots(1, len(kernels), figsize=(3.2 * len(kernels), 3.2), squeeze=False)
    vmax = max(float(k.max()) for k in kernels.values())
    for ax, (name, k) in zip(axes[0], kernels.items()):
        ax.imshow(k.numpy(), cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


def as_jpeg(fig: plt.Figure, quality: int = 85, dpi: int = 100):
    """The figure as an inline JPEG (closed afterwards): noisy images compress badly as PNG."""
    import io

    from IPython.display import Image
    buf = io.BytesIO()
    fig.savefig(buf, format="jpeg", dpi=dpi, pil_kwargs={"quality": quality})
    plt.close(fig)
    return Image(data=buf.getvalue(), format="jpeg")


# --------------------------------------------------------------------------- chapter 2
ATTACK_NAMES = {"fgsm": "FGSM", "bim": "BIM", "bim_a": "BIM-A", "jsma": "JSMA"}


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
    """The seed's Figure 1: MC-dropout uncertainty of clean and attacked digits, one panel per
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


def plot_calibration(calibration: pd.DataFrame, chosen: dict) -> plt.Figure:
    """Undefended accuracy on the 50/50 mixed set against attack strength, with the paper's
    Table 1 value as a dashed line and the chosen strength circled."""
    attacks = list(dict.fromkeys(calibration.attack))
    fig, axes = plt.subplots(1, len(attacks), figsize=(4.2 * len(attacks), 3.2), squeeze=False,
                             sharey=True)
    for ax, name in zip(axes[0], attacks):
        t = calibration[calibration.attack == name]
        ax.plot(t.strength, t.mixed_acc, "-o", ms=4)
        ax.axhline(float(t.target.iloc[0]), color="k", ls="--", lw=1, label="paper's Table 1")
        pick = t[t.strength == chosen[name]]
        ax.plot(pick.strength, pick.mixed_acc, "o", ms=12, mfc="none", mec="C3", mew=2,
                label=f"chosen: {chosen[name]:g}")
        ax.set_xlabel("gamma (max. share of pixels)" if name == "jsma" else "epsilon (L-inf)")
        ax.set_xlim(min(t.strength) * 0.9, max(t.strength) * 1.05)
        ax.set_title(ATTACK_NAMES.get(name, name))
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("undefended accuracy, mixed set")
    fig.tight_layout()
    return fig


def plot_digits(rows: dict, labels=None, max_cols: int = 8, size: float = 1.15) -> plt.Figure:
    """A grid of greyscale digits: one row per entry of ``rows`` (name -> (B, 1, H, W))."""
    names = list(rows)
    cols = min(max_cols, min(len(v) for v in rows.values()))
    fig, axes = plt.subplots(len(names), cols, figsize=(size * cols, (size + 0.1) * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for j in range(cols):
            ax = axes[i, j]
            ax.imshow(rows[name][j, 0].cpu(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if labels is not None and name in labels:
                ax.set_title(str(labels[name][j]), fontsize=8, pad=2)
        axes[i, 0].set_ylabel(name, fontsize=9)
    fig.tight_layout()
    return fig
