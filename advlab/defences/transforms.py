"""Input transformations that squeeze adversarial perturbations out of an image (Chapter 3).

Xu, Evans & Qi 2018, "Feature squeezing: detecting adversarial examples in deep neural
networks": bit-depth reduction and median smoothing.  Guo, Rana, Cisse & van der Maaten 2018,
"Countering adversarial images using input transformations": total-variation minimisation on a
random subset of the pixels, bit-depth reduction and JPEG compression.  The chapter's source
study (Liu & Cai, "Image processing defense on adversarial attack") compares colour-depth
reduction, median windows, TV minimisation and K-means colour quantisation.

Every transform is a batched torch function on images in [0, 1] (N, C, H, W) that runs on the
input's device, with an ``nn.Module`` twin to put in front of a classifier:
``Preprocessed(model, TVM(keep=0.1), randomized=True)``.  None of them is differentiable in a
useful way; attackers go through them with BPDA (``Preprocessed`` does it).

==================  =========================================================================
``bit_depth``       keep ``bits`` bits per channel (three conventions, see its docstring)
``median_filter``   median over a rectangular window (min/max networks; kornia beyond 3x3)
``tv_minimize``     masked TV minimisation, batched Chambolle-Pock primal-dual
``kmeans_quantize`` each image's colours replaced by the nearest of its own ``k`` centroids
``jpeg``            JPEG encode/decode at a quality (torchvision's libjpeg-turbo)
==================  =========================================================================
"""
from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from .. import native


def _check_images(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor (N, C, H, W), got "
                         f"{type(x).__name__}{tuple(x.shape) if isinstance(x, torch.Tensor) else ''}")


# --------------------------------------------------------------------------- bit depth
BIT_DEPTH_CONVENTIONS = ("truncate", "xu", "guo")


def bit_depth(x: torch.Tensor, bits: int, convention: str = "truncate") -> torch.Tensor:
    """Colour-depth reduction to ``bits`` bits per channel (1 to 8).

    ``"truncate"`` (the source study's "remove k bits", k = 8 - bits): the 8-bit value
    ``v = round(255 x)`` loses its k low bits, ``v - v mod 2^k``, and comes back as ``v / 255``.
    It rounds down, so removing 6 bits leaves the levels 0, 64, 128, 192 (of 255).
    ``"xu"`` (Xu et al. 2018): ``rint(x (2^b - 1)) / (2^b - 1)``, levels spread over [0, 1].
    ``"guo"`` (Guo et al. 2018's code): ``round(x 2^b) / 2^b``, clipped to [0, 1].
    """
    _check_images(x)
    if not 1 <= int(bits) <= 8 or int(bits) != bits:
        raise ValueError(f"bits must be an integer from 1 to 8, got {bits!r}")
    if convention == "truncate":
        v = torch.round(x.clamp(0, 1) * 255)
        step = 2 ** (8 - int(bits))
        return (v - torch.remainder(v, step)) / 255
    if convention == "xu":
        levels = 2 ** int(bits) - 1
        return torch.round(x.clamp(0, 1) * levels) / levels
    if convention == "guo":
        levels = 2 ** int(bits)
        return (torch.round(x * levels) / levels).clamp(0, 1)
    raise ValueError(f"convention must be one of {BIT_DEPTH_CONVENTIONS}, got {convention!r}")


class BitDepth(nn.Module):
    """:func:`bit_depth` as a module."""

    def __init__(self, bits: int, convention: str = "truncate"):
        super().__init__()
        bit_depth(torch.zeros(1, 1, 1, 1), bits, convention)  # validate early
        self.bits, self.convention = int(bits), convention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bit_depth(x, self.bits, self.convention)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, convention={self.convention!r}"


# --------------------------------------------------------------------------- median
# scipy.ndimage's name for each border mode kornia offers (kornia's "reflect" leaves the edge
# pixel out, which scipy calls "mirror"; scipy's "reflect" repeats it and has no kornia twin).
MEDIAN_MODES = {"reflect": "mirror", "replicate": "nearest", "constant": "constant",
                "circular": "wrap"}


def _window(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if min(h, w) < 1 or h % 2 == 0 or w % 2 == 0:
        raise ValueError(f"the median window must be odd and positive in both directions (it "
                         f"needs a middle pixel), got {size!r}")
    return int(h), int(w)


def _sort3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Elementwise (min, median, max) of three tensors: a sorting network of three
    compare-exchanges (six min/max ops)."""
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    low, t = torch.minimum(lo, c), torch.maximum(lo, c)
    return low, torch.minimum(hi, t), torch.maximum(hi, t)


def _median3(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Elementwise median of three tensors, ``max(min(a, b), min(max(a, b), c))``."""
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    return torch.maximum(lo, torch.minimum(hi, c, out=hi), out=lo)


def _median_min_max(x: torch.Tensor, h: int, w: int, mode: str) -> torch.Tensor:
    """1x3, 3x1 and 3x3 medians by min/max networks on shifted views of the padded image (exact:
    a median is one of the values).  3x3: each column of three is sorted once (and shared by
    the three windows it belongs to); the median of the nine is the median of the largest of
    the three column minima, the median of the column medians and the smallest of the column
    maxima (the classic median-of-9 decomposition, e.g. Smith 1996, Waltz et al.)."""
    p = F.pad(x, (w // 2, w // 2, h // 2, h // 2), mode=mode)
    rows, cols = x.shape[-2:]
    if h == 1:
        return _median3(p[..., :, :-2], p[..., :, 1:-1], p[..., :, 2:])
    if w == 1:
        return _median3(p[..., :-2, :], p[..., 1:-1, :], p[..., 2:, :])
    low, mid, high = _sort3(p[..., :-2, :], p[..., 1:-1, :], p[..., 2:, :])   # (rows, cols + 2)
    shifted = lambda t: (t[..., :cols], t[..., 1:cols + 1], t[..., 2:])  # noqa: E731
    a, b, c = shifted(low)
    lows = torch.maximum(torch.maximum(a, b), c)
    a, b, c = shifted(high)
    highs = torch.minimum(torch.minimum(a, b), c)
    return _median3(lows, _median3(*shifted(mid)), highs)


def median_filter(x: torch.Tensor, size: int | tuple[int, int], mode: str = "reflect") -> torch.Tensor:
    """Median of each channel over a ``size = (height, width)`` window (Xu et al. 2018's
    spatial smoothing; the source study's 1x3, 3x1, 3x3, 5x5 windows).

    1x3, 3x1 and 3x3 windows go through min/max networks (:func:`_median_min_max`, 4 to 18
    elementwise ops), larger ones through kornia's ``median_blur``; both equal
    ``scipy.ndimage.median_filter`` exactly.  ``mode``: the padding beyond the border, kornia's
    name (see :data:`MEDIAN_MODES` for scipy's); the default leaves the edge pixel out of the
    mirror image (scipy's "mirror").
    """
    _check_images(x)
    if mode not in MEDIAN_MODES:
        raise ValueError(f"mode must be one of {sorted(MEDIAN_MODES)}, got {mode!r}")
    h, w = _window(size)
    if h == w == 1:
        return x.clone()
    if max(h, w) == 3:
        return _median_min_max(x, h, w, mode)
    return kornia.filters.median_blur(x, (h, w), border_type=mode)


class MedianFilter(nn.Module):
    """:func:`median_filter` as a module."""

    def __init__(self, size: int | tuple[int, int], mode: str = "reflect"):
        super().__init__()
        self.size, self.mode = _window(size), mode
        if mode not in MEDIAN_MODES:
            raise ValueError(f"mode must be one of {sorted(MEDIAN_MODES)}, got {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return median_filter(x, self.size, self.mode)

    def extra_repr(self) -> str:
        return f"size={self.size[0]}x{self.size[1]}, mode={self.mode!r}"


# --------------------------------------------------------------------------- TV minimisation
TV_WEIGHT = 0.03   # Guo et al.'s lambda_TV (their code's TVM_WEIGHT)
TV_KEEP = 0.5      # Guo et al.'s default: pixel drop rate 0.5, so half the pixels are kept
TV_STEPS = 100     # the fixed iteration budget of tv_minimize (see its docstring)
TV_STEP_RATIO = 2.0  # primal/dual step ratio tau/sigma = 4: the fastest of 1/20..16 measured


def image_gradient(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along rows (``dy``) and columns (``dx``), zero in the last row and
    column (Neumann boundary, as scikit-image's Chambolle solver)."""
    dy = F.pad(z[..., 1:, :] - z[..., :-1, :], (0, 0, 0, 1))
    dx = F.pad(z[..., :, 1:] - z[..., :, :-1], (0, 1))
    return dy, dx


def divergence(py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """``-`` the adjoint of :func:`image_gradient`: backward differences of the dual field."""
    py, px = py[..., :-1, :], px[..., :, :-1]
    return (F.pad(py, (0, 0, 0, 1)) - F.pad(py, (0, 0, 1, 0))
            + F.pad(px, (0, 1)) - F.pad(px, (1, 0)))


def tv_norm(z: torch.Tensor, isotropic: bool = True) -> torch.Tensor:
    """Total variation of each image, summed over channels: ``sum |grad z|`` per pixel and
    channel, the Euclidean length of (dy, dx) when ``isotropic`` (Rudin-Osher-Fatemi, scikit-
    image, Guo et al.'s split-Bregman code), else ``|dy| + |dx|`` (the source study's TV_p for
    p = 1)."""
    dy, dx = image_gradient(z)
    per = torch.sqrt(dy * dy + dx * dx) if isotropic else dy.abs() + dx.abs()
    return per.flatten(1).sum(1)


def tv_objective(z: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None,
                 weight: float = TV_WEIGHT, isotropic: bool = True) -> torch.Tensor:
    """``0.5 ||mask * (z - x)||^2 + weight * TV(z)`` for each image (what :func:`tv_minimize`
    minimises); ``mask`` 1 where a pixel is kept, ``None`` for all pixels."""
    r = z - x if mask is None else mask * (z - x)
    return 0.5 * r.flatten(1).pow(2).sum(1) + weight * tv_norm(z, isotropic)


def bernoulli_mask(x: torch.Tensor, keep: float, per_channel: bool = True,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A 0/1 mask like ``x`` with each entry 1 (kept) with probability ``keep``, drawn
    independently per image (and per channel unless ``per_channel=False``), as Guo et al.'s
    code (and ART's ``TotalVarMin``) draw it."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep!r}")
    shape = x.shape if per_channel else (x.shape[0], 1, *x.shape[2:])
    if keep == 1:
        return torch.ones(shape, dtype=x.dtype, device=x.device).expand_as(x)
    u = torch.rand(shape, generator=generator, device=x.device, dtype=x.dtype)
    return (u < keep).to(x.dtype).expand_as(x)


def _box_sum(t: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over a ``window`` x ``window`` box around each pixel, zero beyond the border
    (separable: ``window`` shifted adds down the rows, then along the columns)."""
    r, (h, w) = window // 2, t.shape[-2:]
    p = F.pad(t, (r, r, r, r))
    rows = p[..., 0:h, :].clone()
    for i in range(1, window):
        rows += p[..., i:i + h, :]
    out = rows[..., 0:w].clone()
    for j in range(1, window):
        out += rows[..., j:j + w]
    return out


FILL_WINDOW = 7   # the box of kept neighbours whose mean fills a dropped pixel at the start


def _fill_dropped(x: torch.Tensor, mask: torch.Tensor, window: int = FILL_WINDOW) -> torch.Tensor:
    """A starting image that depends on the kept pixels only: each dropped pixel gets the mean
    of the kept ones in a ``window``-wide box around it (normalised convolution), or its
    channel's mean of kept pixels where the box holds none."""
    mx = mask * x
    num, den = _box_sum(torch.stack([mx, mask]), window).unbind(0)
    kept = mask.flatten(2).sum(2).clamp_min(1)
    channel_mean = (mx.flatten(2).sum(2) / kept)[..., None, None]
    local = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), channel_mean)
    return torch.where(mask > 0, x, local)


def _primal_dual_step(z, z_bar, py, px, m, mx, tau, sigma, weight, theta, isotropic: bool):
    """One Chambolle-Pock iteration for :func:`tv_minimize` in torch (the GPU path, and the CPU
    path without the native kernel, :func:`advlab.native.tv_minimize`, which runs the same
    arithmetic)."""
    dy, dx = image_gradient(z_bar)
    py, px = py + sigma * dy, px + sigma * dx
    if isotropic:   # project each (py, px) onto the disc of radius weight
        scale = torch.clamp(torch.sqrt(py * py + px * px) / weight, min=1)
        py, px = py / scale, px / scale
    else:           # ... or onto the square
        py, px = py.clamp(-weight, weight), px.clamp(-weight, weight)
    z_new = (z + tau * (divergence(py, px) + mx)) / (1 + tau * m)
    return z_new, z_new + theta * (z_new - z), py, px


@torch.no_grad()
def tv_minimize(x: torch.Tensor, mask: torch.Tensor | None = None, weight: float = TV_WEIGHT,
                steps: int = TV_STEPS, isotropic: bool = True) -> torch.Tensor:
    """Guo et al. 2018's total-variation minimisation, batched on ``x``'s device:

        ``argmin_z 0.5 ||mask * (z - x)||_2^2 + weight * TV(z)``,

    each channel on its own, ``mask`` 1 on the kept pixels (``None`` or all ones: all of them,
    which is Rudin-Osher-Fatemi denoising, scikit-image's ``denoise_tv_chambolle(x, weight)``).
    This is the objective Guo et al.'s code solves with its default split-Bregman solver
    (weight 0.03, isotropic TV); their paper, and the source study after it, write the data
    term without the square and TV_p row by row, which changes the scale of the weight.

    Solver: Chambolle & Pock 2011's primal-dual algorithm, steps tau = 2/sqrt(8) and
    sigma = 1/(2 sqrt(8)) (Algorithm 1; Algorithm 2's acceleration when every pixel is kept,
    where the data term is 1-strongly convex), started from the kept pixels with the dropped
    ones filled by a local mean of kept neighbours, so that the result depends on the kept
    pixels only.  A fixed budget of ``steps`` iterations, no stopping test.  Tolerance at the
    default 100 steps, measured on 128-pixel crops of ImageNet images against 3,000
    iterations: objective within 1.2% (10% of the pixels kept), 0.5% (25%) and 0.013% (all),
    mean pixel difference 0.8, 0.3 and 0.05 grey levels; with every pixel kept this is a lower
    objective than scikit-image's ``denoise_tv_chambolle`` reaches with its own stopping rule
    (0.1% to 4% above the optimum on 224-pixel photographs).  ``tests/test_transforms.py``
    checks it against scikit-image and an exact solver.  Not differentiable: attack it with
    BPDA.

    On the CPU (float32 or float64) it runs in :func:`advlab.native.tv_minimize`, one image
    plane at a time in the L2 cache, planes spread over torch's threads; elsewhere (a GPU,
    ``ADVLAB_COMPILE=0``, no C++ compiler) in torch (:func:`_fill_dropped`,
    :func:`_primal_dual_step`).  Both give the same iterates up to float rounding.
    """
    _check_images(x)
    if weight <= 0 or steps < 1:
        raise ValueError(f"need weight > 0 and steps >= 1, got weight={weight}, steps={steps}")
    if mask is not None:
        mask = mask.to(dtype=x.dtype, device=x.device).expand_as(x)
        if bool((mask == 1).all()):
            mask = None
    unit = mask is None
    tau, sigma = TV_STEP_RATIO / math.sqrt(8), 1 / (TV_STEP_RATIO * math.sqrt(8))
    if native.usable(x):
        return native.tv_minimize(x, mask, steps, tau, sigma, weight, isotropic, FILL_WINDOW)
    mx = x if unit else mask * x
    z = x.clone() if unit else _fill_dropped(x, mask)
    m = torch.ones_like(x) if unit else mask
    z_bar = z
    py, px = torch.zeros_like(x), torch.zeros_like(x)
    scalar = lambda v: torch.tensor(v, dtype=x.dtype, device=x.device)  # noqa: E731
    w = scalar(weight)
    for _ in range(steps):
        theta = 1 / math.sqrt(1 + 2 * tau) if unit else 1.0   # Algorithm 2 with gamma = 1
        z, z_bar, py, px = _primal_dual_step(z, z_bar, py, px, m, mx, scalar(tau), scalar(sigma),
                                             w, scalar(theta), isotropic)
        if unit:
            tau, sigma = theta * tau, sigma / theta
    return z


class TVM(nn.Module):
    """Guo et al.'s TV minimisation as a randomised transform: each call draws a fresh
    Bernoulli mask keeping a fraction ``keep`` of the pixels, independently per image (from
    the global RNG, so EOT's repeated copies of an image get different masks and a seeded
    ``predict`` is repeatable), then runs :func:`tv_minimize` and clips the result to [0, 1].
    ``keep=1``: plain TV denoising, deterministic."""

    def __init__(self, keep: float = TV_KEEP, weight: float = TV_WEIGHT, steps: int = TV_STEPS,
                 isotropic: bool = True, per_channel: bool = True):
        super().__init__()
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep!r}")
        if weight <= 0 or steps < 1:
            raise ValueError(f"need weight > 0 and steps >= 1, got weight={weight}, steps={steps}")
        self.keep, self.weight, self.steps = float(keep), float(weight), int(steps)
        self.isotropic, self.per_channel = isotropic, per_channel

    @property
    def randomized(self) -> bool:
        return self.keep < 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = None if self.keep == 1 else bernoulli_mask(x, self.keep, self.per_channel)
        # an image for the classifier: the fixed iteration budget stops a little off the optimum,
        # up to about 0.006 outside [0, 1] (seen on the ImageNet samples), which classifiers'
        # input checks refuse
        return tv_minimize(x, mask, self.weight, self.steps, self.isotropic).clamp_(0, 1)

    def extra_repr(self) -> str:
        return f"keep={self.keep}, weight={self.weight}, steps={self.steps}, isotropic={self.isotropic}"


# --------------------------------------------------------------------------- K-means
def _sq_distances(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (B, N, k) between (B, N, D) points and (B, k, D) centroids."""
    d = (points.pow(2).sum(-1, keepdim=True) - 2 * points @ centroids.transpose(1, 2)
         + centroids.pow(2).sum(-1)[:, None, :])
    return d.clamp_min_(0)


def kmeans_plus_plus(points: torch.Tensor, k: int, generator: torch.Generator | None = None,
                     trials: int | None = None) -> torch.Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's default) for B
    point sets (B, N, D) at once: the first centroid uniformly; then, ``trials`` times (default
    ``2 + log k``, scikit-learn's), a candidate drawn with probability proportional to the
    squared distance to the nearest centroid so far, keeping the one that lowers the sum of
    those distances most.  Returns (B, k, D)."""
    b, n, _ = points.shape
    trials = trials or 2 + int(math.log(k))
    rows = torch.arange(b, device=points.device)
    first = torch.randint(n, (b,), generator=generator, device=points.device)
    centroids = [points[rows, first]]
    nearest = (points - centroids[0][:, None]).pow(2).sum(-1)
    for _ in range(1, k):
        # a set with fewer than k distinct points has nearest == 0 everywhere: pick uniformly
        weights = nearest + 1e-12 * (nearest.sum(1, keepdim=True) == 0)
        pick = torch.multinomial(weights, trials, replacement=True, generator=generator)
        candidates = torch.gather(points, 1, pick[..., None].expand(-1, -1, points.shape[-1]))
        new = torch.minimum(nearest[:, None], _sq_distances(points, candidates).transpose(1, 2))
        best = new.sum(-1).argmin(1)
        centroids.append(candidates[rows, best])
        nearest = new[rows, best]
    return torch.stack(centroids, 1)


def kmeans(points: torch.Tensor, k: int, iters: int = 30, init: torch.Tensor | None = None,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm on B point sets (B, N, D) at once, from k-means++ (or ``init``,
    (B, k, D)); stops after ``iters`` iterations or when no assignment changes.  An empty
    cluster keeps its centroid.  Returns centroids (B, k, D), labels (B, N) and inertia (B,),
    the sum of squared distances to the assigned centroids (scikit-learn's ``inertia_``)."""
    if points.dim() != 3:
        raise ValueError(f"points must be (B, N, D), got {tuple(points.shape)}")
    b, n, d = points.shape
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= number of points ({n}), got k={k}")
    c = kmeans_plus_plus(points, k, generator) if init is None else init.to(points).clone()
    labels = _sq_distances(points, c).argmin(-1)
    for _ in range(iters):
        sums = torch.zeros_like(c).scatter_add_(1, labels[..., None].expand(-1, -1, d), points)
        counts = torch.zeros(b, k, device=points.device, dtype=points.dtype).scatter_add_(
            1, labels, torch.ones_like(labels, dtype=points.dtype))
        c = torch.where(counts[..., None] > 0, sums / counts.clamp_min(1)[..., None], c)
        new = _sq_distances(points, c).argmin(-1)
        if torch.equal(new, labels):
            break
        labels = new
    inertia = (points - torch.gather(c, 1, labels[..., None].expand(-1, -1, d))).pow(2).sum((1, 2))
    return c, labels, inertia


KMEANS_FIT_PIXELS = 4096   # pixels per image the centroids are fitted on


def kmeans_quantize(x: torch.Tensor, k: int, iters: int = 30, seed: int = 0,
                    fit_pixels: int | None = KMEANS_FIT_PIXELS) -> torch.Tensor:
    """The source study's K-means colour quantisation: each image's colours clustered into
    ``k`` by :func:`kmeans` (all images at once, greedy k-means++ seeded with ``seed``, so the
    transform is deterministic for a given batch), then every pixel replaced by its nearest
    centroid.  The centroids are fitted on ``fit_pixels`` pixels drawn at random from each
    image (None: all of them), as scikit-learn's colour-quantisation example does: 12 times
    less work at 224 pixels for nearly the same palette."""
    _check_images(x)
    b, ch, h, w = x.shape
    points = x.flatten(2).transpose(1, 2)
    g = torch.Generator(device=x.device).manual_seed(seed)
    fit = points
    if fit_pixels is not None and fit_pixels < h * w:
        pick = torch.randint(h * w, (b, fit_pixels), generator=g, device=x.device)
        fit = torch.gather(points, 1, pick[..., None].expand(-1, -1, ch))
    c, _, _ = kmeans(fit, k, iters, generator=g)
    labels = _sq_distances(points, c).argmin(-1)
    out = torch.gather(c, 1, labels[..., None].expand(-1, -1, ch))
    return out.transpose(1, 2).reshape(b, ch, h, w)


class KMeansQuantize(nn.Module):
    """:func:`kmeans_quantize` as a module."""

    def __init__(self, k: int, iters: int = 30, seed: int = 0,
                 fit_pixels: int | None = KMEANS_FIT_PIXELS):
        super().__init__()
        if k < 1 or iters < 0:
            raise ValueError(f"need k >= 1 and iters >= 0, got k={k}, iters={iters}")
        self.k, self.iters, self.seed, self.fit_pixels = int(k), int(iters), int(seed), fit_pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kmeans_quantize(x, self.k, self.iters, self.seed, self.fit_pixels)

    def extra_repr(self) -> str:
        return f"k={self.k}, iters={self.iters}, seed={self.seed}, fit_pixels={self.fit_pixels}"


# --------------------------------------------------------------------------- JPEG
JPEG_QUALITY = 75   # Guo et al.'s


def jpeg(x: torch.Tensor, quality: int = JPEG_QUALITY) -> torch.Tensor:
    """JPEG compression and decompression at ``quality`` (1-100; Guo et al. 2018 used 75)
    through torchvision's libjpeg-turbo, all images of the batch in one call; 8-bit in between
    (``round(255 x)``, clipped), the same bytes as PIL's encoder at that quality.  The
    conversions run in place (no temporary float copies of the batch) and each decoded image
    is written straight into the output."""
    _check_images(x)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be from 1 to 100, got {quality!r}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"JPEG needs 1 or 3 channels, got {x.shape[1]}")
    from torchvision.io import decode_jpeg, encode_jpeg
    u8 = x.detach().cpu().mul(255).clamp_(0, 255).round_().to(torch.uint8)
    coded = encode_jpeg(list(u8), quality=int(quality))
    out = torch.empty(x.shape, dtype=x.dtype)
    for i, image in enumerate(decode_jpeg(coded)):
        out[i].copy_(image).div_(255)
    return out.to(x.device)


class JPEG(nn.Module):
    """:func:`jpeg` as a module."""

    def __init__(self, quality: int = JPEG_QUALITY):
        super().__init__()
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"quality must be from 1 to 100, got {quality!r}")
        self.quality = int(quality)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return jpeg(x, self.quality)

    def extra_repr(self) -> str:
        return f"quality={self.quality}"
