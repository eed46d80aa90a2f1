"""Images: grids of inputs with their labels, kernels, and compact inline output."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .style import PAGE_WIDTH_IN, bare, human
from .style import image as _image


def plot_examples(views: dict, classes, max_chars: int = 14) -> plt.Figure:
    """Grid of noisy inputs (rows: images, columns: noise sigma) titled with the three labels.

    ``views`` comes from ``advlab.experiments.ch01.example_views``.
    """
    x, preds, sigmas, y = views["x"], views["preds"], views["sigmas"], views["y"]
    n, s = x.shape[0], x.shape[1]
    panel = PAGE_WIDTH_IN / s
    fig, axes = plt.subplots(n, s, figsize=(PAGE_WIDTH_IN, (panel + 0.75) * n + 0.2), squeeze=False,
                             layout="constrained")
    short = lambda i: "REJECT" if i < 0 else classes[i][:max_chars]  # noqa: E731
    for i in range(n):
        for j in range(s):
            ax = axes[i, j]
            ax.imshow(x[i, j].permute(1, 2, 0).clamp(0, 1).numpy())
            bare(ax)
            p = preds[i, j].tolist()
            ok = lambda v: "✓" if v == int(y[i]) else "✗"  # noqa: E731
            head = f"noise σ = {sigmas[j]:g}\n" if i == 0 else ""
            ax.set_title(f"{head}NS {short(p[0])} {ok(p[0])}\nSS {short(p[1])} {ok(p[1])}\n"
                         f"DS {short(p[2])} {ok(p[2])}\nvote {short(p[3])} {ok(p[3])}", fontsize=9,
                         loc="left")
            if j == 0:
                ax.set_ylabel(classes[int(y[i])][:max_chars], fontsize=10)
    return fig


def show_kernels(kernels: dict[str, torch.Tensor]) -> plt.Figure:
    """Heat maps of named 2-D kernels on one colour scale."""
    fig, axes = plt.subplots(1, len(kernels), figsize=(PAGE_WIDTH_IN, PAGE_WIDTH_IN / len(kernels) + 0.35),
                             squeeze=False, layout="constrained")
    vmax = max(float(k.max()) for k in kernels.values())
    for ax, (name, k) in zip(axes[0], kernels.items()):
        ax.imshow(k.numpy(), cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(name, fontsize=10)
        bare(ax)
    return fig


def plot_digits(rows: dict, labels=None, max_cols: int = 8, size: float = 1.15) -> plt.Figure:
    """A grid of greyscale digits: one row per entry of ``rows`` (name -> (B, 1, H, W)).
    The figure is page-wide (``size`` is kept for callers; it no longer sets the width)."""
    names = list(rows)
    cols = min(max_cols, min(len(v) for v in rows.values()))
    panel = (PAGE_WIDTH_IN - 0.6) / cols
    fig, axes = plt.subplots(len(names), cols, figsize=(PAGE_WIDTH_IN, (panel + 0.3) * len(names)),
                             squeeze=False, layout="constrained")
    for i, name in enumerate(names):
        for j in range(cols):
            ax = axes[i, j]
            ax.imshow(rows[name][j, 0].cpu(), cmap="gray", vmin=0, vmax=1)
            bare(ax)
            if labels is not None and name in labels:
                ax.set_title(str(labels[name][j]), fontsize=9.5, pad=2)
        axes[i, 0].set_ylabel(human(name), fontsize=10)
    return fig


def as_jpeg(fig: plt.Figure, quality: int = 85, dpi: int = 100):
    """The figure as an inline JPEG (closed afterwards): noisy images compress badly as PNG.
    ``dpi`` is kept for callers; the book's resolution is used (:mod:`advlab.plots.style`)."""
    return _image(fig, "jpeg", quality=quality)


def plot_processed(examples: dict, classes, max_chars: int = 12, per_row: int = 3) -> plt.Figure:
    """Chapter 3 (the source study's Figure 2): the clean and adversarial image, then each
    transform's output beside its delta (output - adversarial input, mid-grey = 0, stretched
    by the factor in the title), ``per_row`` transforms a row in the order given (families
    together); labels with a tick when correct."""
    outputs, labels = examples["outputs"], examples["labels"]
    y = examples["y"]
    names = list(outputs)
    cols = 2 * per_row
    rows = 1 + -(-len(names) // per_row)
    panel = PAGE_WIDTH_IN / cols
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH_IN, (panel + 0.45) * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    label = lambda i: f"{classes[i][:max_chars] if classes else i} {'✓' if i == y else '✗'}"  # noqa: E731
    show = lambda ax, im, title: (ax.imshow(im.permute(1, 2, 0).clamp(0, 1).numpy()),  # noqa: E731
                                  ax.set_title(title, fontsize=9))
    strength = examples.get("strength")
    show(axes[0, 0], examples["x"], f"clean\n{label(y)}")
    show(axes[0, 1], examples["x_adv"],
         f"{human(examples['attack'])} ε = {strength:g}/255\n{label(examples['adv_label'])}")
    for i, name in enumerate(names):
        r, j = 1 + i // per_row, 2 * (i % per_row)
        out = outputs[name]
        delta = out - examples["x_adv"]
        gain = 0.5 / max(float(delta.abs().max()), 1e-6)
        show(axes[r, j], out, f"{human(name)}\n{label(labels[name])}")
        show(axes[r, j + 1], 0.5 + gain * delta, f"change ×{gain:.0f}")
    return fig
