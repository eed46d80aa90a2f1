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


def plot_budget_curves(attacks: pd.DataFrame, titles: dict[str, str] | None = None) -> plt.Figure:
    """Chapter 0: the target's accuracy against the budget, one panel per norm; solid lines for
    the white-box attacks, dashed for the same attacks transferred from the surrogate.
    ``titles``: the attacks' names for readers (default: their code names)."""
    titles = titles or {}
    clean = float(attacks[attacks.attack == "none"].accuracy.iloc[0])
    norms = [n for n in ("linf", "l2") if (attacks.norm == n).any()]
    fig, axes = plt.subplots(1, len(norms), figsize=(5.2 * len(norms), 3.8), squeeze=False,
                             sharey=True)
    for ax, norm in zip(axes[0], norms):
        t = attacks[attacks.norm == norm]
        for i, name in enumerate(dict.fromkeys(t.attack)):
            for knowledge, style in (("white box", "-o"), ("black box (transfer)", "--s")):
                r = t[(t.attack == name) & (t.knowledge == knowledge)].sort_values("eps")
                ax.plot([0, *r.eps], [clean, *r.accuracy], style, ms=4, color=f"C{i}",
                        label=f"{titles.get(name, name)}, {knowledge}")
        ax.set_xlabel("ε, " + ("L∞ (largest pixel change)" if norm == "linf" else "L2 (Euclidean)"))
        ax.set_title("L∞ budget" if norm == "linf" else "L2 budget")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel("accuracy of the target LeNet")
    fig.tight_layout()
    return fig


def plot_steepest_ascent(example: dict) -> plt.Figure:
    """Chapter 0: the unit L∞ and L2 balls in two dimensions, a gradient, and the step of
    steepest ascent each norm allows (a corner of the square, a point of the circle)."""
    import numpy as np
    g, linf, l2 = (example[k].numpy() for k in ("gradient", "linf", "l2"))
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    ax.add_patch(plt.Rectangle((-1, -1), 2, 2, fill=False, lw=1.5, color="C0", label="L∞ ball, ε = 1"))
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(t), np.sin(t), color="C1", lw=1.5, label="L2 ball, ε = 1")
    ax.annotate("", g, (0, 0), arrowprops=dict(arrowstyle="->", color="k", lw=1.5))
    ax.text(g[0] * 0.45 - 0.15, g[1] * 0.45 + 0.12, "gradient g", fontsize=9, rotation=20)
    for vec, color, text in ((linf, "C0", "L∞ step: ε·sign(g)"), (l2, "C1", "L2 step: ε·g/‖g‖")):
        ax.plot(*vec, "o", color=color, ms=8)
        ax.annotate("", vec, (0, 0), arrowprops=dict(arrowstyle="->", color=color, lw=1.2, ls="--"))
        ax.text(vec[0] + 0.05, vec[1] + (0.08 if color == "C0" else -0.16), text, fontsize=9, color=color)
    ax.set_xlim(-1.4, 1.6), ax.set_ylim(-1.4, 1.6)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.8", lw=0.8), ax.axvline(0, color="0.8", lw=0.8)
    ax.set_xlabel("δ₁ (change of pixel 1)"), ax.set_ylabel("δ₂ (change of pixel 2)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


MASK_COLOURS = {"top": "C0", "bottom": "C3", "random": "C7"}


def plot_masked_pgd(table: pd.DataFrame) -> plt.Figure:
    """Top-1 accuracy against the fraction p of pixels that keep the PGD perturbation, for the
    top-, bottom- and random-p% masks of the gradient map (Chapter 5): the post-hoc blend as
    lines with Wilson bands, PGD restricted to the mask as open markers."""
    groups = list(dict.fromkeys(zip(table.dataset, table.model)))
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.8), squeeze=False)
    for ax, (dataset, model) in zip(axes[0], groups):
        t = table[(table.dataset == dataset) & (table.model == model)]
        clean = t[t.method == "clean"].acc.iloc[0]
        for kind, colour in MASK_COLOURS.items():
            b = t[(t.method == "post-hoc blend") & (t.kind == kind)].sort_values("p")
            ax.plot([0, *b.p], [clean, *b.acc], "-o", color=colour, ms=3, label=f"{kind}-p% (blend)")
            ax.fill_between(b.p, b.acc_lo, b.acc_hi, color=colour, alpha=0.15)
            r = t[(t.method == "restricted PGD") & (t.kind == kind)]
            if len(r):
                ax.errorbar(r.p, r.acc, [r.acc - r.acc_lo, r.acc_hi - r.acc], fmt="s", mfc="none",
                            color=colour, ms=6, capsize=2, label=f"{kind}-p% (restricted)")
        ax.set(title=f"{dataset}, {model}", xlabel="p (fraction of pixels perturbed)",
               ylabel="top-1 accuracy", ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_prm_lambda(table: pd.DataFrame) -> plt.Figure:
    """The PRM's IoU of the top gradient pixels with its designated pixels, and its accuracy
    (with Wilson bands), against lambda (Chapter 5)."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(table["lambda"], table.iou, "-o", color="C1", ms=4, label="IoU (top-25% vs lattice)")
    ax.plot(table["lambda"], table.acc, "-s", color="C0", ms=4, label="top-1 accuracy")
    ax.fill_between(table["lambda"], table.acc_lo, table.acc_hi, color="C0", alpha=0.2)
    ax.axhline(0.25 / 1.75, color="grey", ls=":", lw=1, label="IoU of a random 25% mask")
    ax.set(xlabel="lambda", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_defence_table(table: pd.DataFrame) -> plt.Figure:
    """Accuracy of each defence (colours) under each attack (rows), gray-box and white-box,
    with 95% Wilson intervals (Chapter 5's version of the study's table)."""
    t = table.assign(label=[f"{a} ({w})" if w != "-" else a for a, w in zip(table.attack, table.attacker)])
    labels = list(dict.fromkeys(t.label))
    defences = list(dict.fromkeys(t.defence))
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(labels) * 1.6 + 1))
    height = 0.8 / len(defences)
    for j, d in enumerate(defences):
        s = t[t.defence == d].set_index("label").reindex(labels)
        pos = [i + (j - (len(defences) - 1) / 2) * height for i in range(len(labels))]
        ax.errorbar(s.acc, pos, xerr=[(s.acc - s.acc_lo).clip(lower=0), (s.acc_hi - s.acc).clip(lower=0)],
                    fmt="o", ms=4,
                    capsize=2, color=f"C{j}", label=d)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="top-1 accuracy (95% Wilson interval)", xlim=(0, 1))
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _rate_panel(ax, t: pd.DataFrame, y: str, colour, label: str, style: str = "-") -> None:
    """One curve of ``y`` against mean normalised L2 with its 95% interval as a band."""
    t = t.sort_values("l2")
    ax.plot(t.l2, t[y], style, color=colour, marker="o", ms=3.5, label=label)
    ax.fill_between(t.l2, t[f"{y}_lo"], t[f"{y}_hi"], color=colour, alpha=0.15, lw=0)


def plot_rate_curves(curves: pd.DataFrame, y: str = "rate", title: str | None = None,
                     rows: dict[str, list[str]] | None = None) -> plt.Figure:
    """Chapter 3 (the source study's Figures 3-6): ``y`` (the defence success rate, or
    ``"acc"``) of each defence in ``curves`` against the attack's mean normalised L2, one
    panel per attack (``curves.panel`` when present), with 95% Wilson bands.  An attack with a
    single point in a panel (DeepFool's minimal perturbation beside its scaled direction) is a
    star of its defence's colour.  ``rows``: one row of panels per entry, ``{row title:
    defences}`` (default: one row with every defence)."""
    curves = curves[curves.defence != "undefended"]
    if "panel" not in curves:
        curves = curves.assign(panel=curves.attack)
    panels = list(dict.fromkeys(curves.panel))
    rows = rows or {"": list(dict.fromkeys(curves.defence))}
    fig, axes = plt.subplots(len(rows), len(panels), figsize=(4.4 * len(panels), 3.6 * len(rows)),
                             squeeze=False, sharey=True)
    for r, (row_title, defences) in enumerate(rows.items()):
        colours = dict(zip(defences, sns.color_palette("colorblind", len(defences))))
        for ax, panel in zip(axes[r], panels):
            t = curves[curves.panel == panel]
            for d in defences:
                for _, line in t[t.defence == d].groupby("attack", sort=False):
                    if len(line) > 1:
                        _rate_panel(ax, line, y, colours[d], d)
                    else:
                        ax.plot(line.l2, line[y], "*", color=colours[d], ms=9)
            lone = [a for a, g in t.groupby("attack", sort=False) if g.l2.nunique() == 1]
            ax.set(title=panel + (f" (★ {', '.join(lone)})" if lone else ""),
                   xlabel="normalised L2 of the perturbation", ylim=(0, 1))
            ax.grid(alpha=0.3)
        axes[r, 0].set_ylabel(("defence success rate" if y == "rate" else "defended accuracy")
                              + (f"\n{row_title}" if row_title else ""))
        if axes[r, -1].get_legend_handles_labels()[0]:
            axes[r, -1].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_adaptive_curves(adaptive: pd.DataFrame) -> plt.Figure:
    """Chapter 3: accuracy of each defence under L2 PGD that ignores it (dashed) and that
    goes through it with BPDA and EOT (solid), one panel per family; the undefended
    classifier under the same PGD in grey."""
    fams = [f for f in dict.fromkeys(adaptive.family) if f != "none"]
    cols = min(3, len(fams))
    rows = -(-len(fams) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.4 * rows), squeeze=False, sharey=True)
    bare = adaptive[(adaptive.defence == "undefended") & (adaptive.attacker == "oblivious")]
    for ax, fam in zip(axes.flat, fams):
        t = adaptive[adaptive.family == fam]
        names = list(dict.fromkeys(t.defence))
        colours = dict(zip(names, sns.color_palette("colorblind", len(names))))
        for d in names:
            for who, style in (("oblivious", "--"), ("adaptive", "-")):
                _rate_panel(ax, t[(t.defence == d) & (t.attacker == who)], "acc", colours[d],
                            f"{d}, {who}", style)
        _rate_panel(ax, bare, "acc", "grey", "no defence", ":")
        ax.set(title=fam, xlabel="normalised L2 of the perturbation", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(fams):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy under L2 PGD")
    fig.suptitle("L2 PGD ignoring the defence (dashed) and through it with BPDA + EOT (solid)",
                 fontsize=11)
    fig.tight_layout()
    return fig
