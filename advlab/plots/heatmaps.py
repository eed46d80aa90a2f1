"""Heat maps: per-pixel quantities of an image grid (input-gradient maps of Chapter 5)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch


def plot_heatmaps(maps: dict[str, torch.Tensor], title: str, cols: int = 4,
                  size: float = 2.6) -> plt.Figure:
    """One panel per named (H, W) map, each on its own colour scale (maxima differ by orders
    of magnitude between models), with a colour bar."""
    if not maps:
        raise ValueError("no maps to draw")
    cols = min(cols, len(maps))
    rows = math.ceil(len(maps) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols + 0.6, size * rows + 0.5),
                             squeeze=False)
    for ax in axes.flat[len(maps):]:
        ax.axis("off")
    for ax, (name, m) in zip(axes.flat, maps.items()):
        im = ax.imshow(m.float().numpy(), cmap="inferno")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
