"""Figures shared by the notebooks and the CLI, grouped by what they draw; each function returns
a matplotlib Figure in the book's style (:mod:`advlab.plots.style`: page-wide, at most two chart
panels a row, text of at least 9 points, legends off the data, labels for people).
:func:`show` displays one in a notebook with what ``tests/test_figures.py`` checks; ``as_jpeg``
returns an inline image."""
from . import style
from .certify import plot_certified_curves, plot_denoising_examples, plot_vote_histogram
from .curves import (
                     ATTACK_NAMES,
                     LABELS,
                     plot_adaptive_curves,
                     plot_attack_curves,
                     plot_budget_curves,
                     plot_calibration,
                     plot_defence_table,
                     plot_masked_pgd,
                     plot_noise_curves,
                     plot_prm_lambda,
                     plot_rate_curves,
                     plot_steepest_ascent,
)
from .detection import plot_mc_dropout, plot_roc, plot_uncertainty_histograms
from .heatmaps import plot_heatmaps
from .images import as_jpeg, plot_digits, plot_examples, plot_processed, show_kernels
from .style import human, image, show

style.apply()

__all__ = ["ATTACK_NAMES", "LABELS", "as_jpeg", "human", "image", "plot_adaptive_curves",
           "plot_attack_curves", "plot_budget_curves", "plot_calibration", "plot_certified_curves",
           "plot_defence_table", "plot_denoising_examples", "plot_digits", "plot_examples",
           "plot_heatmaps", "plot_masked_pgd", "plot_mc_dropout", "plot_noise_curves",
           "plot_prm_lambda", "plot_processed", "plot_rate_curves", "plot_roc", "plot_steepest_ascent",
           "plot_uncertainty_histograms", "plot_vote_histogram", "show", "show_kernels", "style"]
