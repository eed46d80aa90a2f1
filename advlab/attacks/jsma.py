"""Jacobian-based Saliency Map Attack (JSMA) of Papernot et al. 2016, "The limitations of deep
learning in adversarial settings" (IEEE EuroS&P), in the pair variant of cleverhans v3
(``jsma_symbolic``) on logits, batched.

What is batched: all images of a chunk iterate together.  Each iteration is one forward pass
and two backward passes over the images still running (``d Z_target / dx`` and
``d sum(Z) / dx``; the sum over the other classes is their difference, no full Jacobian), then
one search over all feature pairs of all those images: on the CPU a native loop
(:func:`advlab.native.jsma_pairs`) that scans each image's pairs once without storing their
scores, elsewhere a broadcasted (B, n, n) torch search (split into sub-batches that keep
B * n * n under a memory budget).  Images that reach their target, run out
of valid pairs or out of features leave the running set, so the work shrinks as the attack
progresses.  There are no Python loops over images or pixels.  On a CPU with several threads
the images are split between single-threaded workers that run side by side (the results are
those of one thread: an image's attack does not depend on the other images); torch's own
two-thread kernels were up to 8x slower than one thread on a shared 2-core machine.

Differences from cleverhans v3, all deliberate:

* an image with no valid pair left stops (cleverhans's argmax then falls on the all-zero score
  map and perturbs feature 0);
* with ``theta < 0`` pixels move down, ``x <- clip(x + theta)`` (cleverhans computes
  ``max(clip_min, x - theta)``, which moves them up);
* a valid pair whose score underflows to exactly 0 counts as invalid (only possible when the
  product of the two gradient sums is below the smallest subnormal of the dtype).
"""
from __future__ import annotations

import math
import numbers
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn
from tqdm import tqdm

from .. import native

# Largest number of pair scores (B * n * n) held at once in the pair search, per device type
# (two buffers of that many elements are allocated).  On the CPU small blocks that stay near the
# caches are fastest (2**21: 3 MNIST images at a time); on a GPU big blocks are.
MAX_PAIR_ELEMENTS = {"cpu": 2**21, "cuda": 2**28}
_DEFAULT_PAIR_ELEMENTS = 2**26
# One image's pair scores must fit in a buffer (2**32 fp32 scores: 16 GiB, twice).
MAX_PAIRS_PER_IMAGE = 2**32


def max_iterations(n_features: int, gamma: float) -> int:
    """cleverhans's iteration budget: ``floor(gamma * n_features / 2)`` pair changes."""
    return int(math.floor(n_features * gamma / 2))


def jsma(model: nn.Module, x: torch.Tensor, target: torch.Tensor, theta: float = 1.0,
         gamma: float = 0.1, clip: tuple[float, float] = (0.0, 1.0), batch_size: int = 256,
         progress: bool = True) -> torch.Tensor:
    """Targeted JSMA adversarial examples of ``x`` (CPU tensor, same shape and dtype as ``x``).

    ``model`` returns logits and runs on the device of its parameters (put it in eval mode);
    ``x`` holds a batch of inputs in ``clip``; ``target`` one class per input.  Each iteration
    raises (``theta > 0``) or lowers (``theta < 0``) the pair of features ``p != q`` of the
    search domain that maximises ``-A * B`` among the pairs with ``A > 0, B < 0``
    (resp. ``A < 0, B > 0``), where ``A`` and ``B`` are the sums over the pair of the gradients of
    the target logit and of the other logits; both are set to ``clip(x + theta)`` and leave the
    domain.  The domain starts as the features that can still move.  An image stops when the
    model predicts the target, when no valid pair or fewer than two features are left, or after
    ``floor(gamma * n_features / 2)`` iterations.  Ties go to the first pair in row-major order.
    """
    return jsma_with_stats(model, x, target, theta=theta, gamma=gamma, clip=clip,
                           batch_size=batch_size, progress=progress)[0]


def jsma_with_stats(model: nn.Module, x: torch.Tensor, target: torch.Tensor, theta: float = 1.0,
                    gamma: float = 0.1, clip: tuple[float, float] = (0.0, 1.0),
                    batch_size: int = 256, progress: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`jsma`, also returning the number of iterations (pair changes) of every image
    (CPU ``LongTensor``); an image changes at most twice that many features."""
    lo, hi = _check_args(x, target, theta, gamma, clip, batch_size)
    device = _model_device(model)
    if getattr(model, "training", False):
        warnings.warn("model is in training mode; JSMA assumes a deterministic model "
                      "(call model.eval())", stacklevel=2)
    xs = x.detach()
    target = torch.as_tensor(target).detach().cpu().long()
    n_images = len(xs)
    adv = torch.empty_like(xs, device="cpu")
    iters = torch.zeros(n_images, dtype=torch.long)
    if n_images == 0:
        return adv, iters
    n_features = xs[0].numel()
    steps = max_iterations(n_features, gamma)
    budget = MAX_PAIR_ELEMENTS.get(device.type, _DEFAULT_PAIR_ELEMENTS)
    _check_classes(model, xs[:1].to(device), target)
    # On a multi-core CPU the chunks are split between single-threaded workers, side by side
    # (an image's attack does not depend on the other images of its chunk).
    workers = min(torch.get_num_threads(), n_images) if device.type == "cpu" else 1
    size = min(batch_size, math.ceil(n_images / workers))
    bar = tqdm(total=n_images, desc="JSMA", unit="img", disable=not progress)

    def attack(start: int) -> None:
        xb = xs[start:start + size].to(device)
        tb = target[start:start + size].to(device)
        out, it = _attack_chunk(model, xb, tb, float(theta), lo, hi, steps, budget)
        adv[start:start + len(xb)] = out.cpu()
        iters[start:start + len(xb)] = it.cpu()
        bar.update(len(xb))

    starts = range(0, n_images, size)
    if workers > 1:
        def one_thread(start: int) -> None:
            torch.set_num_threads(1)   # this worker thread's own OpenMP pool
            attack(start)
        saved = torch.get_num_threads()
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="advlab-jsma") as pool:
                list(pool.map(one_thread, starts))
        finally:
            torch.set_num_threads(saved)  # the process-wide default the workers changed
    else:
        for start in starts:
            attack(start)
    bar.close()
    return adv, iters


def _check_args(x, target, theta, gamma, clip, batch_size) -> tuple[float, float]:
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise TypeError("x must be a floating-point tensor (a batch of inputs)")
    if x.dim() < 2:
        raise ValueError(f"x must be a batch (B, ...) with at least 2 dims, got {tuple(x.shape)}")
    target = torch.as_tensor(target)
    if target.dtype.is_floating_point or target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"target must be an integer tensor, got {target.dtype}")
    if target.dim() != 1 or len(target) != len(x):
        raise ValueError(f"target must be 1-D with one label per input: got shape "
                         f"{tuple(target.shape)} for {len(x)} inputs")
    if len(clip) != 2:
        raise ValueError(f"clip must be (clip_min, clip_max), got {clip!r}")
    lo, hi = float(clip[0]), float(clip[1])
    if not lo < hi:
        raise ValueError(f"clip_min must be below clip_max, got {clip!r}")
    if not (_is_real(theta) and math.isfinite(theta) and theta != 0):
        raise ValueError(f"theta must be a finite non-zero number, got {theta!r}")
    if not (_is_real(gamma) and 0 < gamma <= 1):
        raise ValueError(f"gamma (largest fraction of features changed) must be in (0, 1], "
                         f"got {gamma!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if x.numel():
        if bool(torch.isnan(x).any()):
            raise ValueError("x contains NaN")
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo or xmax > hi:
            raise ValueError(f"x must lie in the clip range [{lo}, {hi}], "
                             f"got values in [{xmin}, {xmax}]")
    n = x[0].numel() if len(x) else 0
    if len(x) and n < 2:
        raise ValueError("inputs need at least 2 features (JSMA changes pairs of them)")
    if n * n > MAX_PAIRS_PER_IMAGE:
        raise ValueError(f"inputs with {n} features need {n * n:,} pair scores per image, more "
                         f"than the pair search supports ({MAX_PAIRS_PER_IMAGE:,})")
    return lo, hi


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_classes(model: nn.Module, probe: torch.Tensor, target: torch.Tensor) -> None:
    with torch.no_grad():
        logits = model(probe)
    if logits.dim() != 2:
        raise ValueError(f"model must return logits of shape (B, n_classes), "
                         f"got {tuple(logits.shape)}")
    n_classes = logits.shape[1]
    if int(target.min()) < 0 or int(target.max()) >= n_classes:
        raise ValueError(f"targets must lie in [0, {n_classes}) for this model, got values in "
                         f"[{int(target.min())}, {int(target.max())}]")


def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _attack_chunk(model, x, target, theta, lo, hi, steps, budget):
    """JSMA on one chunk, all on the model's device; returns (adversarial x, iterations)."""
    shape = x.shape[1:]
    n_img, n = len(x), x[0].numel()
    adv = x.reshape(n_img, n).clone()
    increase = theta > 0
    domain = adv < hi if increase else adv > lo
    iters = torch.zeros(n_img, dtype=torch.long, device=x.device)
    active = torch.arange(n_img, device=x.device)
    if steps == 0:
        return adv.view_as(x), iters
    if native.usable(adv):   # the CPU: one scan of the pairs, no (B, n, n) scores
        buffers = None
    else:                    # reused pair-score buffers: fresh (B, n, n) allocations per
        rows = max(1, min(n_img, budget // (n * n)))   # iteration cost more than the math
        buffers = torch.empty(2, rows, n, n, dtype=adv.dtype, device=adv.device)
    for _ in range(steps):
        xa = adv[active].requires_grad_(True)
        with torch.enable_grad():
            logits = model(xa.view(-1, *shape))
            ta = target[active]
            go = (logits.detach().argmax(1) != ta) & (domain[active].sum(1) >= 2)
            if not bool(go.any()):
                break
            picked = go.nonzero().squeeze(1)
            z_target = logits.gather(1, ta[:, None]).squeeze(1)
            alpha, = torch.autograd.grad(z_target[picked].sum(), xa, retain_graph=True)
            total, = torch.autograd.grad(logits[picked].sum(), xa)
        active = active[picked]
        alpha = alpha[picked]
        beta = total[picked] - alpha
        if buffers is None:
            p, q, ok = native.jsma_pairs(alpha, beta, domain[active], increase)
        else:
            p, q, ok = _best_pairs(alpha, beta, domain[active], increase, *buffers)
        active, p, q = active[ok], p[ok], q[ok]
        if len(active) == 0:
            break
        adv[active, p] = (adv[active, p] + theta).clamp(lo, hi)
        adv[active, q] = (adv[active, q] + theta).clamp(lo, hi)
        domain[active, p] = False
        domain[active, q] = False
        iters[active] += 1
    return adv.view_as(x), iters


@torch.no_grad()
def _best_pairs(alpha, beta, domain, increase, buf_a, buf_b):
    """Best pair (p, q) of every row and whether it is valid, in sub-batches of the buffers
    (torch: the GPU's path; on the CPU :func:`advlab.native.jsma_pairs` computes the same
    scores with the same float operations and returns the same pairs without the buffers).

    Score of a pair: ``-A * B`` if valid (``A > 0, B < 0`` when increasing, ``A < 0, B > 0``
    when decreasing), invalid otherwise.  Computed as the product ``A' * B`` with ``A'`` the
    part of ``A`` of the valid sign (``A`` clamped at 0): it is < 0 exactly for the valid
    pairs (barring underflow to 0) and equals minus the score, so the best pair is the first
    argmin, provided that it is < 0.  Features outside the domain get ``alpha = -inf``
    (resp. ``+inf``), which clamps to 0 in every pair they are part of; the diagonal is zeroed.
    The matrix is symmetric, so the first argmin over (p, q) lies at p < q and is the first
    maximum in row-major order over the pairs p < q.
    """
    n_img, n = alpha.shape
    a = alpha.masked_fill(~domain, float("-inf") if increase else float("inf"))
    best = torch.empty(n_img, dtype=torch.long, device=alpha.device)
    ok = torch.empty(n_img, dtype=torch.bool, device=alpha.device)
    step = len(buf_a)
    for s in range(0, n_img, step):
        a_s, b_s = a[s:s + step], beta[s:s + step]
        m = len(a_s)
        pa = torch.add(a_s[:, :, None], a_s[:, None, :], out=buf_a[:m])
        if increase:
            pa.clamp_(min=0)
        else:
            pa.clamp_(max=0)
        pb = torch.add(b_s[:, :, None], b_s[:, None, :], out=buf_b[:m])
        pa.mul_(pb)
        pa.diagonal(dim1=1, dim2=2).zero_()
        # First argmin in row-major order, in two steps (a full-length argmin is several times
        # slower than amin on the CPU): the first row p holding the minimum, then its first
        # column q holding it.
        row_min = pa.amin(2)                                        # (m, n)
        p = row_min.argmin(1)
        rows = torch.arange(m, device=pa.device)
        q = pa[rows, p].argmin(1)
        best[s:s + m] = p * n + q
        ok[s:s + m] = row_min[rows, p] < 0
    return best // n, best % n, ok
