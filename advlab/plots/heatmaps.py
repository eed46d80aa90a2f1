"""Heat maps: per-pixel quantities of an image grid (input-gradient maps of Chapter 5)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch

from .style import PAGE_WIDTH_IN, bare, human


def plot_heatmaps(maps: dict[str, torch.Tensor], title: str, cols: int = 4,
                  size: float = 2.6) -> plt.Figure:
    """One panel per named (H, W) map, each on its own colour scale (maxima differ by orders
    of magnitude between models), with a colour bar. The figure is page-wide: ``size`` (the
    panel's height in inches, before) no longer sets it."""
    if not maps:
        raise ValueError("no maps to draw")
    cols = min(cols, len(maps))
    rows = math.ceil(len(maps) / cols)
    panel = PAGE_WIDTH_IN / cols
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE_WIDTH_IN, panel * rows + 0.5),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[len(maps):]:
        ax.axis("off")
    for ax, (name, m) in zip(axes.flat, maps.items()):
        im = ax.imshow(m.float().numpy(), cmap="inferno")
        ax.set_title(human(name), fontsize=9.5)
        bare(ax)
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.ax.tick_params(labelsize=9)
        cb.ax.yaxis.get_offset_text().set_fontsize(9)
    fig.suptitle(title)
    return fig
