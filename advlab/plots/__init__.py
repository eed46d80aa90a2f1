"""Figures shared by the notebooks and the CLI, grouped by what they draw; each function returns
a matplotlib Figure (``as_jpeg`` an inline image)."""
from .certify import plot_certified_curves, plot_denoising_examples, plot_vote_histogram
from .curves import (ATTACK_NAMES, LABELS, plot_attack_curves, plot_calibration,
                     plot_noise_curves)
from .detection import plot_roc, plot_uncertainty_histograms
from .images import as_jpeg, plot_digits, plot_examples, show_kernels

__all__ = ["ATTACK_NAMES", "LABELS", "as_jpeg", "plot_attack_curves", "plot_calibration",
           "plot_certified_curves", "plot_denoising_examples", "plot_vote_histogram",
           "plot_digits", "plot_examples", "plot_noise_curves", "plot_roc",
           "plot_uncertainty_histograms", "show_kernels"]
