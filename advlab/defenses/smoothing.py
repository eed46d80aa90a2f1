"""Gaussian smoothing with a 2-of-3 majority vote (Chapter 1, seed 000).

The scheme of the seed ("Dealing with adversarial inputs for image classification", a blog
study motivated by Salman et al. 2020, *Denoised Smoothing*): classify the input, its Gaussian
blur and its double blur; output the label at least two of the three agree on, and reject the
input when all three differ.  The blur is kornia's ``GaussianBlur2d`` (reflect padding).
"""
from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from ..models.wrappers import predict

REJECT = -1
BLUR_SIGMA_DEFAULT = 1.0


def gaussian_blur(kernel_size: int = 5, sigma: float = 1.0) -> nn.Module:
    """kornia's separable Gaussian blur with a square ``kernel_size`` window."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return kornia.filters.GaussianBlur2d((kernel_size, kernel_size), (sigma, sigma))


def add_noise(x: torch.Tensor, sigma: float, seeds: torch.Tensor | list[int]) -> torch.Tensor:
    """``clamp(x + sigma * eps, 0, 1)`` with one standard-normal ``eps`` per image.

    ``eps`` for image ``i`` is drawn from a CPU generator seeded with ``seeds[i]``, so the noise
    does not depend on the batch size or the device, and the same ``eps`` is scaled for every
    ``sigma`` (common random numbers make the curves over sigma smoother).
    """
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return x
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(x):
        raise ValueError("need one seed per image")
    g = torch.Generator()
    eps = torch.stack([torch.randn(x.shape[1:], generator=g.manual_seed(s)) for s in seeds])
    return (x + sigma * eps.to(x.device)).clamp_(0, 1)


def three_views(x: torch.Tensor, blur: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The input, its single blur and its double blur."""
    single = blur(x)
    return x, single, blur(single)


def majority_vote(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """2-of-3 vote over three label tensors; ``REJECT`` (-1) where all three differ."""
    if not (p0.shape == p1.shape == p2.shape):
        raise ValueError("the three predictions must have the same shape")
    return torch.where((p0 == p1) | (p0 == p2), p0,
                       torch.where(p1 == p2, p1, torch.full_like(p0, REJECT)))


class SmoothingVote(nn.Module):
    """Classifier + blur as one object: ``predict`` returns the three labels and the vote."""

    def __init__(self, model: nn.Module, kernel_size: int = 5, sigma: float = 1.0):
        super().__init__()
        self.model = model
        self.blur = gaussian_blur(kernel_size, sigma)

    @torch.inference_mode()
    def predict(self, x: torch.Tensor, batch_size: int = 128) -> dict[str, torch.Tensor]:
        """Labels of the input, its single and double blur, and the vote (CPU tensors)."""
        device = next(self.model.parameters()).device
        views = three_views(x.to(device), self.blur)
        labels = [predict(self.model, v, batch_size, device) for v in views]
        return {"ns": labels[0], "ss": labels[1], "ds": labels[2], "vote": majority_vote(*labels)}


class VoteSurrogate(nn.Module):
    """A differentiable stand-in for the vote, for adaptive attacks.

    Returns the mean over the three views of the log-softmax outputs (a product of experts).
    Cross-entropy on it equals the mean of the three branches' cross-entropies up to a
    normalising term, so a gradient attack on it pushes all three branches at once.
    """

    def __init__(self, model: nn.Module, kernel_size: int = 5, sigma: float = 1.0):
        super().__init__()
        self.model = model
        self.blur = gaussian_blur(kernel_size, sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = torch.cat(three_views(x, self.blur))
        logp = F.log_softmax(self.model(views).float(), dim=1)
        return logp.view(3, len(x), -1).mean(0)


# --------------------------------------------------------------------------- blur composition
def gaussian_kernel(kernel_size: int, sigma: float) -> torch.Tensor:
    """kornia's normalised 2-D Gaussian kernel (``kernel_size`` x ``kernel_size``), float64."""
    k = kornia.filters.get_gaussian_kernel2d((kernel_size, kernel_size), (sigma, sigma))
    return k.squeeze(0).double()


def compose_kernels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The single kernel equal to filtering with ``a`` then ``b`` (full 2-D convolution)."""
    ka, kb = a.shape[-1], b.shape[-1]
    out = F.conv2d(F.pad(a[None, None], (kb - 1,) * 4), b.flip(-1, -2)[None, None])
    assert out.shape[-1] == ka + kb - 1
    return out[0, 0]


def equivalent_gaussian(kernel_size: int, sigma: float, times: int = 2) -> tuple[int, float]:
    """Window and sigma of one Gaussian equal to ``times`` passes: sigma adds in quadrature."""
    return times * (kernel_size - 1) + 1, sigma * math.sqrt(times)


def kernel_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max absolute difference between two kernels, the smaller zero-padded to the larger."""
    n = max(a.shape[-1], b.shape[-1])
    pad = lambda k: F.pad(k, ((n - k.shape[-1]) // 2,) * 4)  # noqa: E731
    return float((pad(a) - pad(b)).abs().max())
