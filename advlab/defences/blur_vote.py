"""Gaussian smoothing with a 2-of-3 majority vote (Chapter 1).

The scheme of the chapter's source study ("Dealing with adversarial inputs for image
classification", a blog study motivated by Salman et al. 2020, *Denoised Smoothing*): classify
the input, its Gaussian blur and its double blur; output the label at least two of the three
agree on, and abstain (the study's "reject") when all three differ.  The blur is kornia's
``GaussianBlur2d`` (reflect padding).
"""
from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from ..config import per_image_normal
from ..models import predict
from ..models.wrappers import conv_layout
from .base import ABSTAIN, Defence

BLUR_SIGMA_DEFAULT = 1.0


def gaussian_blur(kernel_size: int = 5, blur_sigma: float = 1.0) -> nn.Module:
    """kornia's separable Gaussian blur with a square ``kernel_size`` window (sigma in pixels)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if blur_sigma <= 0:
        raise ValueError(f"blur_sigma must be positive, got {blur_sigma}")
    return kornia.filters.GaussianBlur2d((kernel_size, kernel_size), (blur_sigma, blur_sigma))


def noise_seeds(labels: torch.Tensor, draw: int, seed: int) -> torch.Tensor:
    """One noise seed per image: fixed by (seed, draw, the image's label), independent of the
    other images of the set (Chapter 1's sample images have one image per class)."""
    return seed * 1_000_000 + draw * 1_000 + labels


def add_noise(x: torch.Tensor, noise_sigma: float, seeds: torch.Tensor | list[int]) -> torch.Tensor:
    """``clamp(x + noise_sigma * eps, 0, 1)`` with one standard-normal ``eps`` per image.

    ``eps`` for image ``i`` comes from a generator seeded with ``seeds[i]``
    (:func:`advlab.config.per_image_normal`), so the noise does not depend on the batch size
    or the device, and the same ``eps`` is scaled for every ``noise_sigma`` (common random
    numbers make the curves over sigma smoother).
    """
    if noise_sigma < 0:
        raise ValueError(f"noise_sigma must be >= 0, got {noise_sigma}")
    if noise_sigma == 0:
        return x
    if len(seeds) != len(x):
        raise ValueError("need one seed per image")
    eps = per_image_normal(seeds, x.shape[1:])
    return (x + noise_sigma * eps.to(x.device)).clamp_(0, 1)


def three_views(x: torch.Tensor, blur: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The input, its single blur and its double blur."""
    single = blur(x)
    return x, single, blur(single)


def majority_vote(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """2-of-3 vote over three label tensors; :data:`ABSTAIN` (-1) where all three differ."""
    if not (p0.shape == p1.shape == p2.shape):
        raise ValueError("the three predictions must have the same shape")
    return torch.where((p0 == p1) | (p0 == p2), p0,
                       torch.where(p1 == p2, p1, torch.full_like(p0, ABSTAIN)))


class BlurVote(Defence):
    """Classifier + blur + 2-of-3 vote in the defence shape.

    ``predict``: the vote, :data:`ABSTAIN` where the three views all differ;
    ``predict_views``: the three labels and the vote.  ``forward`` (for attackers who know the
    defence): the mean over the three views of the log-softmax outputs, a differentiable
    stand-in for the vote: cross-entropy on it is the mean of the three branches'
    cross-entropies, so a gradient attack pushes all three views at once.
    """

    def __init__(self, model: nn.Module, kernel_size: int = 5, blur_sigma: float = BLUR_SIGMA_DEFAULT):
        super().__init__()
        self.model = model
        self.blur = gaussian_blur(kernel_size, blur_sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = torch.cat(three_views(x, self.blur))
        logp = F.log_softmax(self.model(views).float(), dim=1)
        return logp.view(3, len(x), -1).mean(0)

    @torch.no_grad()
    def predict_views(self, x: torch.Tensor, batch_size: int = 128) -> dict[str, torch.Tensor]:
        """Labels of the input, its single and double blur, and the vote (CPU tensors)."""
        self.check_input(x)
        device = next(self.model.parameters()).device
        views = three_views(conv_layout(x.to(device)), self.blur)
        labels = [predict(self.model, v, batch_size, device) for v in views]
        return {"ns": labels[0], "ss": labels[1], "ds": labels[2], "vote": majority_vote(*labels)}

    def predict(self, x: torch.Tensor, batch_size: int = 128, seed: int | None = None) -> torch.Tensor:
        """The 2-of-3 vote, :data:`ABSTAIN` where the three views all differ.  The defence
        draws nothing at random, so ``seed`` changes nothing."""
        self.check_input(x)
        return torch.cat([self.predict_views(x[i:i + batch_size], batch_size)["vote"]
                          for i in range(0, len(x), batch_size)]) if len(x) else \
            torch.empty(0, dtype=torch.long)


# --------------------------------------------------------------------------- blur composition
def gaussian_kernel(kernel_size: int, blur_sigma: float) -> torch.Tensor:
    """kornia's normalised 2-D Gaussian kernel (``kernel_size`` x ``kernel_size``), float64."""
    k = kornia.filters.get_gaussian_kernel2d((kernel_size, kernel_size), (blur_sigma, blur_sigma))
    return k.squeeze(0).double()


def compose_kernels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The single kernel equal to filtering with ``a`` then ``b`` (full 2-D convolution)."""
    ka, kb = a.shape[-1], b.shape[-1]
    out = F.conv2d(F.pad(a[None, None], (kb - 1,) * 4), b.flip(-1, -2)[None, None])
    assert out.shape[-1] == ka + kb - 1
    return out[0, 0]


def equivalent_gaussian(kernel_size: int, blur_sigma: float, times: int = 2) -> tuple[int, float]:
    """Window and sigma of one Gaussian equal to ``times`` passes: sigma adds in quadrature."""
    return times * (kernel_size - 1) + 1, blur_sigma * math.sqrt(times)


def kernel_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max absolute difference between two kernels, the smaller zero-padded to the larger."""
    n = max(a.shape[-1], b.shape[-1])
    pad = lambda k: F.pad(k, ((n - k.shape[-1]) // 2,) * 4)  # noqa: E731
    return float((pad(a) - pad(b)).abs().max())
