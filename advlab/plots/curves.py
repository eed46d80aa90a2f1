"""Curves: accuracy (or another rate) against a strength parameter: noise sigma, epsilon, gamma.

Every figure is page-wide with at most two panels a row, legends below the panels and rates on
a percent axis (:mod:`advlab.plots.style`)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from .style import PAGE_WIDTH_IN, figure, human, legend_below, legend_beside, legend_slot, panels, percent_axis

LABELS = {"acc_ns": "no smoothing", "acc_ss": "single blur", "acc_ds": "double blur",
          "acc_maj": "2-of-3 vote", "reject": "reject rate"}


ATTACK_NAMES = {"fgsm": "FGSM", "bim": "BIM", "bim_a": "BIM-A", "jsma": "JSMA"}

#: Chapter 1's attackers, as the run records them -> as readers read them.
ATTACKERS = {"ignores defence": "attacker ignores the defence",
             "adaptive (through blur+vote)": "attacker goes through blur and vote"}


def _proxy(style: str = "-", color: str = "0.3", marker: str | None = None, **kw) -> Line2D:
    return Line2D([], [], ls=style, color=color, marker=marker, **kw)


def plot_noise_curves(table: pd.DataFrame, source: pd.DataFrame | None = None) -> plt.Figure:
    """Accuracy and reject rate against noise sigma, one column per kernel, with 95% intervals.

    Solid lines: this run (mean over draws, Wilson interval as a band); crosses: the source study.
    """
    kernels = list(dict.fromkeys(table.kernel))
    fig, axes = plt.subplots(2, len(kernels), figsize=(PAGE_WIDTH_IN, 5.6), squeeze=False, sharex=True,
                             layout="constrained", gridspec_kw={"height_ratios": [2.2, 1]})
    colours = dict(zip(LABELS, sns.color_palette("colorblind", len(LABELS))))
    for j, k in enumerate(kernels):
        t = table[table.kernel == k]
        for row, metrics in ((0, ["acc_ns", "acc_ss", "acc_ds", "acc_maj"]), (1, ["reject"])):
            ax = axes[row, j]
            for m in metrics:
                ax.plot(t.noise_sigma, t[m], "-o", color=colours[m], label=LABELS[m])
                ax.fill_between(t.noise_sigma, t[f"{m}_lo"], t[f"{m}_hi"], color=colours[m], alpha=0.2)
                if source is not None and k == "5x5":
                    ax.plot(source.noise_sigma, source[m], "x", color=colours[m], ms=8, mew=2)
            percent_axis(ax, limits=False)
            ax.set_ylim(0, 1 if row == 0 else max(0.05, float(t["reject_hi"].max()) * 1.15))
        axes[0, j].set_title(f"{k.replace('x', '×')} Gaussian blur, blur σ = 1 px")
        axes[1, j].set_xlabel("noise σ")
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("reject rate")
    handles = [_proxy("-", colours[m], "o") for m in LABELS]
    labels = list(LABELS.values())
    if source is not None:
        handles.append(_proxy("none", "0.2", "x", ms=8, mew=2))
        labels.append("source study (5×5 only)")
    legend_below(fig, handles=handles, labels=labels, ncols=3,
                 title="lines: this book, with 95% intervals")
    return fig


def plot_attack_curves(attacks: pd.DataFrame) -> plt.Figure:
    """Accuracy of the bare model and of the vote, and the reject rate, against epsilon."""
    clean = attacks[attacks.attack == "none"].iloc[0]
    atk = attacks[attacks.attack != "none"]
    names = list(dict.fromkeys(atk.attack))
    fig, axes = panels(len(names) + 2, 2.7)
    who_style = {a: s for a, s in zip(dict.fromkeys(atk.attacker), ["--", "-", ":"])}
    metric_colour = {"acc_ns": "C0", "acc_maj": "C3"}
    for ax, name in zip(axes, names):
        for who, t in atk[atk.attack == name].groupby("attacker", sort=False):
            for m, c in metric_colour.items():
                ax.plot([0, *t.eps_255], [clean[m], *t[m]], who_style[who], color=c, marker="o")
        ax.set(title=f"{human(name)} (L∞)", xlabel="ε (× 1/255)", ylabel="accuracy")
        percent_axis(ax)
    rej = axes[len(names)]
    markers = dict(zip(names, ("o", "s", "^")))
    for who, t in atk.groupby("attacker", sort=False):
        for name, marker in markers.items():
            r = t[t.attack == name]
            rej.plot([0, *r.eps_255], [clean.reject, *r.reject], who_style[who], color="C7", marker=marker)
    rej.set(title="reject rate of the vote", xlabel="ε (× 1/255)", ylabel="images rejected")
    percent_axis(rej, limits=False)
    rej.set_ylim(0, max(0.3, float(atk.reject.max()) * 1.2))
    handles = [_proxy("-", "C0"), _proxy("-", "C3")]
    labels = ["undefended model", "2-of-3 vote"]
    for who, style in who_style.items():
        handles.append(_proxy(style, "0.3"))
        labels.append(ATTACKERS.get(who, who))
    for name, marker in markers.items():
        handles.append(_proxy("none", "C7", marker))
        labels.append(f"rejected under {human(name)}")
    legend_slot(axes[-1], handles, labels)
    return fig


def plot_calibration(calibration: pd.DataFrame, chosen: dict) -> plt.Figure:
    """Undefended accuracy on the 50/50 mixed set against attack strength, with the paper's
    Table 1 value as a dashed line and the chosen strength circled."""
    attacks = list(dict.fromkeys(calibration.attack))
    fig, axes = panels(len(attacks), 2.5, sharey=True)
    for ax, name in zip(axes, attacks):
        t = calibration[calibration.attack == name]
        ax.plot(t.strength, t.mixed_acc, "-o")
        ax.axhline(float(t.target.iloc[0]), color="k", ls="--", lw=1)
        pick = t[t.strength == chosen[name]]
        ax.plot(pick.strength, pick.mixed_acc, "o", ms=12, mfc="none", mec="C3", mew=2)
        symbol = "γ" if name == "jsma" else "ε"
        ax.set_xlabel("γ, the largest share of pixels changed" if name == "jsma" else "ε (L∞ budget)")
        ax.set_xlim(min(t.strength) * 0.9, max(t.strength) * 1.05)
        ax.set_title(f"{ATTACK_NAMES.get(name, human(name))}: {symbol} = {chosen[name]:g} chosen")
        percent_axis(ax, limits=False)
        ax.tick_params(labelleft=True)
    for ax in axes[::2]:
        ax.set_ylabel("undefended accuracy,\nmixed set")
    legend_below(fig, handles=[_proxy("-", "C0", "o"), _proxy("--", "k"),
                               _proxy("none", "C3", "o", ms=12, mfc="none", mew=2)],
                 labels=["this book (500 validation digits)", "the paper's Table 1", "chosen strength"],
                 ncols=3)
    return fig


def plot_budget_curves(attacks: pd.DataFrame, titles: dict[str, str] | None = None) -> plt.Figure:
    """Chapter 0: the target's accuracy against the budget, one panel per norm; solid lines for
    the white-box attacks, dashed for the same attacks transferred from the surrogate.
    ``titles``: the attacks' names for readers (default: :func:`~advlab.plots.style.human`)."""
    titles = titles or {}
    clean = float(attacks[attacks.attack == "none"].accuracy.iloc[0])
    norms = [n for n in ("linf", "l2") if (attacks.norm == n).any()]
    fig, axes = panels(len(norms), 3.2, sharey=True)
    handles, labels = {}, {}
    for ax, norm in zip(axes, norms):
        t = attacks[attacks.norm == norm]
        for i, name in enumerate(dict.fromkeys(t.attack)):
            for knowledge, style in (("white box", "-o"), ("black box (transfer)", "--s")):
                r = t[(t.attack == name) & (t.knowledge == knowledge)].sort_values("eps")
                ax.plot([0, *r.eps], [clean, *r.accuracy], style, color=f"C{i}")
            handles.setdefault(i, []).append(_proxy("-", f"C{i}"))
            labels.setdefault(i, []).append(titles.get(name, human(name)))
        ax.set_xlabel("ε, " + ("L∞: largest pixel change" if norm == "linf" else "L2: Euclidean length"))
        ax.set_title(f"{human(norm)} budget")
        percent_axis(ax)
        ax.tick_params(labelleft=True)
    axes[0].set_ylabel("accuracy of the target LeNet")
    legend_below(fig, handles=[_proxy("-", "C0"), _proxy("-", "C1"), _proxy("-", "0.3", "o"), _proxy("--", "0.3", "s")],
                 labels=[_joined(labels[0]), _joined(labels[1]), "white box (the target's gradients)",
                         "black box (crafted on the surrogate)"], ncols=2)
    return fig


def _joined(names: list[str]) -> str:
    """Names of one attack under both norms, e.g. "FGSM / FGM (one step)"."""
    tails = {n[n.index(" ("):] for n in names if " (" in n}
    if len(tails) == 1 and all(" (" in n for n in names):
        tail = tails.pop()
        return " / ".join(n[:-len(tail)] for n in names) + tail
    return " / ".join(dict.fromkeys(names))


def plot_steepest_ascent(example: dict) -> plt.Figure:
    """Chapter 0: the unit L∞ and L2 balls in two dimensions, a gradient, and the step of
    steepest ascent each norm allows (a corner of the square, a point of the circle)."""
    g, linf, l2 = (example[k].numpy() for k in ("gradient", "linf", "l2"))
    fig = figure(4.0)
    ax = fig.add_subplot()
    ax.add_patch(plt.Rectangle((-1, -1), 2, 2, fill=False, lw=1.5, color="C0", label="L∞ ball, ε = 1"))
    t = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(t), np.sin(t), color="C1", lw=1.5, label="L2 ball, ε = 1")
    ax.annotate("", g, (0, 0), arrowprops=dict(arrowstyle="->", color="k", lw=1.5))
    ax.text(g[0] * 0.45 - 0.15, g[1] * 0.45 + 0.12, "gradient g", fontsize=10, rotation=20)
    for vec, color, text in ((linf, "C0", "L∞ step: ε·sign(g)"), (l2, "C1", "L2 step: ε·g/‖g‖")):
        ax.plot(*vec, "o", color=color, ms=8)
        ax.annotate("", vec, (0, 0), arrowprops=dict(arrowstyle="->", color=color, lw=1.2, ls="--"))
        ax.text(vec[0] + (0.05 if color == "C0" else 0.12), vec[1] + (0.08 if color == "C0" else -0.2), text,
                fontsize=10, color=color)
    ax.set_xlim(-1.4, 1.7), ax.set_ylim(-1.4, 1.6)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.8", lw=0.8), ax.axvline(0, color="0.8", lw=0.8)
    ax.set_xlabel("δ₁ (change of pixel 1)"), ax.set_ylabel("δ₂ (change of pixel 2)")
    legend_beside(fig, [ax])
    return fig


MASK_COLOURS = {"top": "C0", "bottom": "C3", "random": "C7"}


def plot_masked_pgd(table: pd.DataFrame) -> plt.Figure:
    """Top-1 accuracy against the fraction p of pixels that keep the PGD perturbation, for the
    top-, bottom- and random-p% masks of the gradient map (Chapter 5): the post-hoc blend as
    lines with Wilson bands, PGD restricted to the mask as open markers."""
    groups = list(dict.fromkeys(zip(table.dataset, table.model)))
    fig, axes = panels(len(groups), 3.0)
    for ax, (dataset, model) in zip(axes, groups):
        t = table[(table.dataset == dataset) & (table.model == model)]
        clean = t[t.method == "clean"].acc.iloc[0]
        for kind, colour in MASK_COLOURS.items():
            b = t[(t.method == "post-hoc blend") & (t.kind == kind)].sort_values("p")
            ax.plot([0, *b.p], [clean, *b.acc], "-o", color=colour, ms=3,
                    label=f"{kind} p% of the gradient map, blended")
            ax.fill_between(b.p, b.acc_lo, b.acc_hi, color=colour, alpha=0.15)
            r = t[(t.method == "restricted PGD") & (t.kind == kind)]
            if len(r):
                ax.errorbar(r.p, r.acc, [r.acc - r.acc_lo, r.acc_hi - r.acc], fmt="s", mfc="none",
                            color=colour, ms=6, capsize=2, label=f"{kind} p%, PGD restricted to it")
        ax.set(title=f"{human(dataset)}, {human(model)}", xlabel="p, share of pixels perturbed")
        percent_axis(ax)
        percent_axis(ax, "x", limits=False)
    axes[0].set_ylabel("accuracy")
    legend_below(fig, axes, ncols=2)
    return fig


def plot_prm_lambda(table: pd.DataFrame) -> plt.Figure:
    """The PRM's IoU of the top gradient pixels with its designated pixels, and its accuracy
    (with Wilson bands), against lambda (Chapter 5); with the accuracy of the parameter-free
    upsamplings of the lattice mixed at the same lambda where the table has them
    (``acc_bicubic``, ``acc_bilinear``, ``acc_nearest``)."""
    fig = figure(3.2)
    ax = fig.add_subplot()
    ax.plot(table["lambda"], table.iou, "-o", color="C1", label="IoU: top 25% of the gradient\nmap vs the lattice")
    ax.plot(table["lambda"], table.acc, "-s", color="C0", label="accuracy of the PRM")
    ax.fill_between(table["lambda"], table.acc_lo, table.acc_hi, color="C0", alpha=0.2)
    for mode, style in (("bicubic", "--"), ("bilinear", ":"), ("nearest", "-.")):
        if f"acc_{mode}" in table:
            ax.plot(table["lambda"], table[f"acc_{mode}"], style, color="C2", lw=1.2,
                    label=f"accuracy of {mode} upsampling\nof the lattice")
    ax.set(xlabel="λ")
    percent_axis(ax)
    legend_beside(fig, [ax])
    return fig


def plot_defence_table(table: pd.DataFrame) -> plt.Figure:
    """Accuracy of each defence (colours) under each attack (rows), gray-box and white-box,
    with 95% Wilson intervals (Chapter 5's version of the study's table)."""
    t = table.assign(label=[f"{human(a)} ({w})" if w != "-" else human(a)
                            for a, w in zip(table.attack, table.attacker)])
    labels = list(dict.fromkeys(t.label))
    defences = list(dict.fromkeys(t.defence))
    fig = figure(0.45 * len(labels) * 1.4 + 1.4)
    ax = fig.add_subplot()
    height = 0.8 / len(defences)
    for j, d in enumerate(defences):
        s = t[t.defence == d].set_index("label").reindex(labels)
        pos = [i + (j - (len(defences) - 1) / 2) * height for i in range(len(labels))]
        ax.errorbar(s.acc, pos, xerr=[(s.acc - s.acc_lo).clip(lower=0), (s.acc_hi - s.acc).clip(lower=0)],
                    fmt="o", capsize=2, color=f"C{j}", label=human(d))
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set(xlabel="accuracy (95% Wilson interval)")
    percent_axis(ax, "x")
    ax.grid(alpha=0.3, axis="x")
    legend_below(fig, [ax], ncols=2)
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
    star of its defence's colour.  ``rows``: groups of defences, ``{group title: defences}``, at
    most two: then one row per attack and one column per group (default: every defence in
    one group, the attacks' panels two a row)."""
    curves = curves[curves.defence != "undefended"]
    if "panel" not in curves:
        curves = curves.assign(panel=curves.attack)
    names = list(dict.fromkeys(curves.panel))
    rows = rows or {"": list(dict.fromkeys(curves.defence))}
    everyone = list(dict.fromkeys(d for ds in rows.values() for d in ds))
    colours = dict(zip(everyone, sns.color_palette("colorblind", len(everyone))))
    # one panel per attack; with several groups of defences, one row per attack and one
    # column per group (at most two panels a row)
    cols = len(rows)
    if cols > 2:
        raise ValueError("at most two groups of defences (one column each)")
    fig, axes = panels(len(names) * cols, 2.7, cols=cols if cols > 1 else None, sharey=True)
    grid = [(panel, title, defences) for panel in names for title, defences in rows.items()]
    for ax, (panel, group, defences) in zip(axes, grid):
        t = curves[curves.panel == panel]
        for d in defences:
            for _, line in t[t.defence == d].groupby("attack", sort=False):
                if line.l2.nunique() > 1:
                    _rate_panel(ax, line, y, colours[d], human(d))
                else:       # a single point (DeepFool's minimal perturbation): a star
                    ax.plot(line.l2, line[y], "*", color=colours[d], ms=9, label=human(d))
        lone = [a for a, g in t.groupby("attack", sort=False)
                if g.l2.nunique() == 1 and t.attack.nunique() > 1]
        lines = [a for a in dict.fromkeys(t.attack) if a not in lone]
        name = human(panel)
        if lone:        # e.g. "DeepFool, scaled; ★ minimal"
            if len(lines) == 1 and lines[0] != panel:
                name += f", {human(lines[0])}"
            name += f"; ★ {', '.join(map(human, lone))}"
        ax.set(title=f"{name}\n{group}" if group else name,
               xlabel="normalised L2 of the perturbation")
        percent_axis(ax)
        ax.tick_params(labelleft=True)
    for ax in axes[::2]:
        ax.set_ylabel("defence success rate" if y == "rate" else "defended accuracy")
    longest = max((len(human(d)) for d in everyone), default=0)
    legend_below(fig, axes, ncols=3 if longest <= 20 else 2)
    if title:
        fig.suptitle(title)
    return fig


def _adaptive_one_budget(adaptive: pd.DataFrame) -> plt.Figure:
    names = list(dict.fromkeys(adaptive.defence))
    fig = figure(0.3 * len(names) + 1.6)
    ax = fig.add_subplot()
    for who, marker, colour, dy in (("oblivious", "o", "#0072B2", -0.15), ("adaptive", "s", "#D55E00", 0.15)):
        t = adaptive[adaptive.attacker == who].set_index("defence").reindex(names)
        y = np.arange(len(names)) + dy
        ax.errorbar(t.acc, y, xerr=[t.acc - t.acc_lo, t.acc_hi - t.acc], fmt=marker, color=colour,
                    capsize=2, label={"oblivious": "L2 PGD ignoring the defence",
                                      "adaptive": "L2 PGD through it (BPDA + EOT)"}[who])
    ax.set_yticks(np.arange(len(names)), [("no defence" if d == "undefended" else human(d)) for d in names])
    ax.invert_yaxis()
    percent_axis(ax, "x")
    n, budget = int(adaptive.n.iloc[0]), float(adaptive.budget.iloc[0])
    ax.set(xlabel=f"accuracy on {n} images at normalised L2 {budget:g} (95% intervals)")
    legend_below(fig, [ax])
    return fig


def plot_adaptive_curves(adaptive: pd.DataFrame) -> plt.Figure:
    """Chapter 3: accuracy of each defence under L2 PGD that ignores it (dashed) and that
    goes through it with BPDA and EOT (solid), one panel per family; the undefended
    classifier under the same PGD in grey.  With one budget there are no curves: one panel
    with a row per defence and the two attackers' accuracies side by side (95% intervals)."""
    if adaptive.budget.nunique() == 1:
        return _adaptive_one_budget(adaptive)
    fams = [f for f in dict.fromkeys(adaptive.family) if f != "none"]
    fig, axes = panels(len(fams), 3.2, sharey=True)
    bare = adaptive[(adaptive.defence == "undefended") & (adaptive.attacker == "oblivious")]
    for ax, fam in zip(axes, fams):
        t = adaptive[adaptive.family == fam]
        names = list(dict.fromkeys(t.defence))
        colours = dict(zip(names, sns.color_palette("colorblind", len(names))))
        for d in names:
            for who, style in (("oblivious", "--"), ("adaptive", "-")):
                _rate_panel(ax, t[(t.defence == d) & (t.attacker == who)], "acc", colours[d],
                            human(d) if who == "adaptive" else "_", style)
        _rate_panel(ax, bare, "acc", "grey", "no defence", ":")
        ax.set(title=human(fam), xlabel="normalised L2 of the perturbation")
        percent_axis(ax)
        ax.tick_params(labelleft=True)
        # this family's defences, under the panel (off the data)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncols=2)
    for ax in axes[::2]:
        ax.set_ylabel("accuracy under L2 PGD")
    fig.suptitle("L2 PGD ignoring the defence (dashed) and through it with BPDA + EOT (solid)")
    return fig
