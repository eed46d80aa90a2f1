"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019, "Certified adversarial robustness via
randomized smoothing") and denoised smoothing (Salman, Sun, Yang, Kapoor & Kolter 2020,
"Denoised Smoothing: A Provable Defense for Pretrained Classifiers").

The smoothed classifier ``g(x) = argmax_c P(f(x + delta) = c)``, ``delta ~ N(0, sigma^2 I)``,
is robust within the L2 radius ``sigma * Phi^-1(p_A)`` around ``x``.  :class:`Smooth` runs
Cohen et al.'s Monte Carlo algorithms on a base classifier ``f`` (with a denoiser in front
of it for denoised smoothing, ``f = F o D``):

* CERTIFY: ``n0`` noise samples choose the top class; ``n`` fresh samples give a one-sided
  Clopper-Pearson lower bound ``p_A`` on its probability (level ``1 - alpha``); abstain when
  ``p_A < 1/2``, else certify the radius ``sigma * Phi^-1(p_A)``.
* PREDICT: ``n`` samples; the top class unless a two-sided binomial test of the top two
  counts (``scipy.stats.binomtest``) has a p-value above ``alpha``, then abstain.

The noise is added to [0, 1] images without clipping, as in the reference code.  All samples
of all images run batched on the model's device through :mod:`advlab.inference` (ONNX Runtime
on the CPU).  Noise comes in blocks of :data:`NOISE_BLOCK` samples, each from its own
generator seeded with a hash of (seed, image id, phase, block), so a certificate depends only
on the image, its id and the settings: not on the batch size, on the other images of the call
or on how the images are shared between processes (the same device type is assumed: CPU and
CUDA generators draw different numbers).  Under ``torchrun`` (an initialised
``torch.distributed``), :meth:`Smooth.certify` shards the images across processes and merges the
results by image id.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import binomtest, norm
from torch import nn
from tqdm import tqdm

from ..attacks.base import model_device
from ..inference import predict as fast_predict
from ..metrics import clopper_pearson_ci, clopper_pearson_lower
from ..models.dncnn import Denoised
from .base import ABSTAIN, Defence

#: Noise samples drawn from one seeded generator (a block): sample j of an image is the same
#: whatever ``n`` and the batch size are.
NOISE_BLOCK = 100
#: Phases of the sampling, so that CERTIFY's selection and estimation and PREDICT draw
#: independent noise.
SELECT, ESTIMATE, PREDICT = 0, 1, 2


def block_seed(seed: int, image_id: int, phase: int, block: int) -> int:
    """The generator seed of one noise block: a 63-bit hash of its four coordinates."""
    digest = hashlib.blake2b(f"{seed}:{image_id}:{phase}:{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def radius(p_lower, sigma: float) -> np.ndarray:
    """Cohen et al.'s certified L2 radius ``sigma * Phi^-1(p_lower)`` (0 where ``p_lower <= 1/2``)."""
    p = np.asarray(p_lower, dtype=float)
    return np.where(p > 0.5, sigma * norm.ppf(np.clip(p, 0.5, 1.0)), 0.0)


def max_certifiable_radius(sigma: float, n: int, alpha: float = 0.001) -> float:
    """The largest radius CERTIFY can return with ``n`` samples, reached when all ``n`` agree:
    ``sigma * Phi^-1(alpha^(1/n))`` (the Clopper-Pearson bound of ``n`` out of ``n``)."""
    return float(sigma * norm.ppf(alpha ** (1.0 / n)))


@dataclass
class Certificates:
    """CERTIFY's output for a set of images (CPU tensors, one entry per image)."""

    ids: torch.Tensor         # image ids (long)
    prediction: torch.Tensor  # the certified class, ABSTAIN where it abstains (long)
    radius: torch.Tensor      # certified L2 radius, 0 where it abstains (float64)
    p_lower: torch.Tensor     # Clopper-Pearson lower bound on p_A (float64)
    count: torch.Tensor       # n_A: estimation samples of the selected class (long)
    select_count: torch.Tensor  # selection samples of the selected class (long)
    n0: int = 0
    n: int = 0
    alpha: float = 0.001
    sigma: float = 0.0

    TENSORS = ("ids", "prediction", "radius", "p_lower", "count", "select_count")

    def __len__(self) -> int:
        return len(self.ids)

    def to_dict(self) -> dict:
        """Tensors and settings, for the results cache (``torch.load(weights_only=True)``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Certificates:
        return cls(**d)

    def correct(self, labels: torch.Tensor) -> torch.Tensor:
        """True where the certified class is the label (abstentions are wrong)."""
        return self.prediction == labels

    def frame(self, labels: torch.Tensor | None = None) -> pd.DataFrame:
        """One row per image (Cohen et al.'s log: idx, label, predict, radius, correct)."""
        df = pd.DataFrame({"id": self.ids.numpy(), "predict": self.prediction.numpy(),
                           "radius": self.radius.numpy(), "p_lower": self.p_lower.numpy(),
                           "count": self.count.numpy()})
        if labels is not None:
            df.insert(1, "label", labels.numpy())
            df["correct"] = self.correct(labels).numpy().astype(int)
        return df

    @staticmethod
    def cat(parts: list[Certificates]) -> Certificates:
        """Concatenate, sorted by image id."""
        first = parts[0]
        merged = {k: torch.cat([getattr(p, k) for p in parts]) for k in Certificates.TENSORS}
        order = merged["ids"].argsort()
        return Certificates(**{k: v[order] for k, v in merged.items()}, n0=first.n0, n=first.n,
                            alpha=first.alpha, sigma=first.sigma)


class Smooth(Defence):
    """A smoothed classifier ``g`` around ``classifier`` (or ``classifier(denoiser(.))``).

    ``num_classes``: of the classifier.  ``sigma``: the noise level.  ``n``, ``alpha``:
    PREDICT's defaults.  ``forward_batch``: noise samples per forward pass (samples of several
    images share a pass).  ``seed``: the base of every noise block's seed.  ``attack_samples``:
    noise draws per image in :meth:`forward`.  ``backend``: see :mod:`advlab.inference`.
    """

    randomized = True

    def __init__(self, classifier: nn.Module, num_classes: int, sigma: float,
                 denoiser: nn.Module | None = None, *, n: int = 1000, alpha: float = 0.001,
                 forward_batch: int = 400, seed: int = 0, attack_samples: int = 8,
                 backend: str | None = None):
        super().__init__()
        if not 0 < sigma < float("inf"):
            raise ValueError(f"sigma must be a positive finite number, got {sigma}")
        if forward_batch < 1:
            raise ValueError(f"forward_batch must be >= 1, got {forward_batch}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
        self.classifier, self.denoiser = classifier, denoiser
        self.base = classifier if denoiser is None else Denoised(denoiser, classifier).eval()
        self.num_classes, self.sigma, self.n, self.alpha = num_classes, float(sigma), n, alpha
        self.forward_batch, self.seed, self.attack_samples = forward_batch, seed, attack_samples
        self.backend = backend

    # ------------------------------------------------------------------ sampling
    def noise_block(self, image_id: int, phase: int, block: int, shape: torch.Size,
                    device: torch.device, seed: int | None = None) -> torch.Tensor:
        """``NOISE_BLOCK`` standard-normal draws of ``shape`` for one block (on ``device``);
        ``seed`` replaces the instance's for this block."""
        base = self.seed if seed is None else seed
        g = torch.Generator(device).manual_seed(block_seed(base, image_id, phase, block))
        return torch.randn((NOISE_BLOCK, *shape), generator=g, device=device)

    @torch.no_grad()
    def sample_counts(self, x: torch.Tensor, n: int, phase: int, ids: torch.Tensor | None = None,
                      forward_batch: int | None = None, progress: bool = False,
                      seed: int | None = None) -> torch.Tensor:
        """How often ``f(x_i + delta)`` returns each class over ``n`` noise draws per image:
        a (len(x), num_classes) long tensor.  Samples of several images share forward passes
        of ``forward_batch`` samples (default the instance's); ``seed`` replaces the instance's
        noise seed for this call."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.check_input(x)
        ids = _ids(x, ids)
        bs = min(forward_batch or self.forward_batch, len(x) * n)
        device = model_device(self.base)
        counts = torch.zeros(len(x) * self.num_classes, dtype=torch.long)
        blocks = math.ceil(n / NOISE_BLOCK)
        # one buffer of noisy samples, filled in place block by block and classified whenever
        # it is full; owner[j]: the image of sample j
        dtype = torch.promote_types(x.dtype, torch.get_default_dtype())
        batch = torch.empty((bs, *x.shape[1:]), dtype=dtype, device=device)
        owner = torch.empty(bs, dtype=torch.long)
        with tqdm(total=len(x) * n, desc=f"noise samples (sigma={self.sigma})", unit="sample",
                  disable=not progress, leave=False) as bar:
            def flush(m: int) -> None:
                labels = fast_predict(self.base, batch[:m], bs, device, backend=self.backend,
                                      unit_range=False)  # x + noise, unclipped
                if len(labels) and (int(labels.max()) >= self.num_classes or int(labels.min()) < 0):
                    raise ValueError(f"the classifier returned a class outside 0..{self.num_classes - 1}")
                counts.index_add_(0, owner[:m] * self.num_classes + labels,
                                  torch.ones(m, dtype=torch.long))
                bar.update(m)

            held = 0
            for i in range(len(x)):
                xi = x[i].to(device)
                for b in range(blocks):
                    k = min(NOISE_BLOCK, n - b * NOISE_BLOCK)
                    eps = self.noise_block(int(ids[i]), phase, b, xi.shape, device, seed)[:k]
                    eps.mul_(self.sigma)
                    done = 0
                    while done < k:  # the block, cut where the buffer fills
                        take = min(k - done, bs - held)
                        torch.add(xi, eps[done:done + take], out=batch[held:held + take])
                        owner[held:held + take] = i
                        held, done = held + take, done + take
                        if held == bs:
                            flush(held)
                            held = 0
            if held:
                flush(held)
        return counts.view(len(x), self.num_classes)

    # ------------------------------------------------------------------ Cohen et al.
    def certify(self, x: torch.Tensor, n0: int = 100, n: int = 10_000, alpha: float | None = None,
                ids: torch.Tensor | None = None, forward_batch: int | None = None,
                progress: bool = False, distributed: bool | None = None) -> Certificates:
        """Cohen et al.'s CERTIFY for every image of ``x`` (N, C, H, W).

        ``ids``: one id per image (default ``0 .. N-1``); the noise of an image depends on its
        id, not on its position.  ``distributed``: shard the images across the processes of an
        initialised ``torch.distributed`` group and merge by id (default: when one is
        initialised with more than one process); every process returns the merged result.
        """
        alpha = self.alpha if alpha is None else alpha
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
        if n0 < 1 or n < 1:
            raise ValueError(f"need n0 >= 1 and n >= 1, got n0={n0}, n={n}")
        self.check_input(x)
        ids = _ids(x, ids)
        if _use_distributed(distributed):
            return _certify_sharded(self, x, ids, n0, n, alpha, forward_batch, progress)
        select = self.sample_counts(x, n0, SELECT, ids, forward_batch, progress)
        top = select.argmax(1)
        estimate = self.sample_counts(x, n, ESTIMATE, ids, forward_batch, progress)
        n_a = estimate.gather(1, top[:, None]).squeeze(1)
        p_lower = torch.from_numpy(clopper_pearson_lower(n_a.numpy(), n, alpha)).double()
        certified = p_lower >= 0.5
        return Certificates(
            ids=ids.clone(), prediction=torch.where(certified, top, torch.full_like(top, ABSTAIN)),
            radius=torch.from_numpy(radius(p_lower.numpy(), self.sigma)).double() * certified,
            p_lower=p_lower, count=n_a, select_count=select.gather(1, top[:, None]).squeeze(1),
            n0=n0, n=n, alpha=alpha, sigma=self.sigma)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int | None = None, seed: int | None = None, *,
                n: int | None = None, alpha: float | None = None, ids: torch.Tensor | None = None,
                progress: bool = False) -> torch.Tensor:
        """Cohen et al.'s PREDICT: labels, :data:`ABSTAIN` where the top two counts do not
        differ significantly (two-sided binomial test at ``alpha``).  ``batch_size``: images
        per step (default all; their noise samples share forward passes of ``forward_batch``);
        ``seed``: the noise seed of this call (default the instance's; the instance is not
        changed)."""
        n = self.n if n is None else n
        alpha = self.alpha if alpha is None else alpha
        self.check_input(x)
        ids = _ids(x, ids)
        step = batch_size or max(len(x), 1)
        counts = torch.cat([self.sample_counts(x[i:i + step], n, PREDICT, ids[i:i + step],
                                               progress=progress, seed=seed)
                            for i in range(0, len(x), step)]) if len(x) else \
            torch.zeros(0, self.num_classes, dtype=torch.long)
        top2 = counts.topk(2, dim=1)
        c1, c2 = top2.values[:, 0].tolist(), top2.values[:, 1].tolist()
        pvalues = torch.tensor([binomtest(a, a + b, 0.5).pvalue for a, b in zip(c1, c2)])
        return torch.where(pvalues > alpha, torch.full_like(top2.indices[:, 0], ABSTAIN),
                           top2.indices[:, 0])

    # ------------------------------------------------------------------ attacks
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the smoothed soft classifier, ``log mean_j softmax(f(x + delta_j))`` over
        ``attack_samples`` fresh draws (global RNG): the objective of Salman et al. 2019's
        SmoothAdv attack (cross-entropy on it is ``-log`` of the smoothed probability)."""
        m = self.attack_samples
        noisy = x.repeat(m, *[1] * (x.dim() - 1))
        noisy = noisy + self.sigma * torch.randn_like(noisy)
        probs = F.softmax(self.base(noisy).float(), dim=1).view(m, len(x), -1).mean(0)
        return probs.clamp_min(1e-12).log()

    def cache_identity(self) -> dict:
        """What a cached result of this smoothed classifier depends on (``advlab.chapter.
        identity``): the classifier and denoiser (weights and structure), sigma, the noise seed
        and the defaults of PREDICT and of the attack objective; not ``forward_batch`` nor the
        backend, which change how fast the samples run, not which samples run."""
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}",
                "classifier": self.classifier, "denoiser": self.denoiser, "sigma": self.sigma,
                "num_classes": self.num_classes, "seed": self.seed, "n": self.n,
                "alpha": self.alpha, "attack_samples": self.attack_samples}

    def extra_repr(self) -> str:
        return (f"sigma={self.sigma}, num_classes={self.num_classes}, denoised="
                f"{self.denoiser is not None}, n={self.n}, alpha={self.alpha}, seed={self.seed}")


def _ids(x: torch.Tensor, ids) -> torch.Tensor:
    if x.dim() != 4:
        raise ValueError(f"expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    if ids is None:
        return torch.arange(len(x))
    ids = torch.as_tensor(ids, dtype=torch.long).flatten()
    if len(ids) != len(x):
        raise ValueError(f"need one id per image, got {len(ids)} for {len(x)}")
    if len(ids.unique()) != len(ids):
        raise ValueError("image ids must be distinct")
    return ids


# --------------------------------------------------------------------------- distributed
def _use_distributed(flag: bool | None) -> bool:
    import torch.distributed as dist
    active = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if flag and not active:
        raise RuntimeError("distributed=True needs an initialised torch.distributed group with "
                           "more than one process (launch with torchrun)")
    return active if flag is None else flag


def _certify_sharded(smooth: Smooth, x, ids, n0, n, alpha, forward_batch, progress) -> Certificates:
    """Each process certifies images ``rank, rank + world, ...``; all gather and merge by id."""
    import torch.distributed as dist
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = torch.arange(rank, len(x), world)
    part = smooth.certify(x[mine], n0, n, alpha, ids[mine], forward_batch, progress and rank == 0,
                          distributed=False)
    parts: list = [None] * world
    dist.all_gather_object(parts, part.to_dict())
    merged = Certificates.cat([Certificates.from_dict(p) for p in parts if len(p["ids"])])
    order = torch.searchsorted(merged.ids, ids)  # back to the caller's order
    return Certificates(**{k: getattr(merged, k)[order] for k in Certificates.TENSORS},
                        n0=n0, n=n, alpha=alpha, sigma=smooth.sigma)


def init_distributed() -> tuple[int, int]:
    """Initialise ``torch.distributed`` from torchrun's environment (gloo on the CPU, NCCL on
    CUDA; each process takes GPU ``LOCAL_RANK``); return (rank, world size).  Without torchrun:
    (0, 1) and nothing is initialised."""
    import os

    import torch.distributed as dist
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and os.environ.get("ADVLAB_DEVICE", "cuda") != "cpu"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


# --------------------------------------------------------------------------- reference loop
@torch.no_grad()
def reference_sample_noise(base: nn.Module, x: torch.Tensor, num: int, sigma: float,
                           num_classes: int, batch_size: int) -> torch.Tensor:
    """The reference code's sampling loop (Cohen et al.'s ``Smooth._sample_noise``): one image
    at a time, ``batch_size`` copies of it plus ``torch.randn`` noise per eager-torch forward.
    Kept only to measure how much faster :meth:`Smooth.sample_counts` is."""
    counts = torch.zeros(num_classes, dtype=torch.long)
    remaining = num
    while remaining > 0:
        b = min(batch_size, remaining)
        remaining -= b
        batch = x.repeat((b, 1, 1, 1))
        labels = base(batch + torch.randn_like(batch) * sigma).argmax(1).cpu()
        counts += torch.bincount(labels, minlength=num_classes)
    return counts


# --------------------------------------------------------------------------- evaluation
def certified_accuracy(certs: Certificates, labels: torch.Tensor, radii,
                       ci_alpha: float = 0.05) -> pd.DataFrame:
    """Certified accuracy at each radius ``r``: the share of images whose certified class is
    the label and whose radius is at least ``r`` (abstentions count as wrong), with a
    two-sided Clopper-Pearson interval over the images (level ``1 - ci_alpha``)."""
    if len(labels) != len(certs):
        raise ValueError(f"need one label per certificate, got {len(labels)} for {len(certs)}")
    correct = certs.correct(labels).numpy()
    rad = certs.radius.numpy()
    r = np.asarray(radii, dtype=float)
    hits = (correct[None, :] & (rad[None, :] >= r[:, None] - 1e-12)).sum(1)
    lo, hi = clopper_pearson_ci(hits, len(certs), ci_alpha)
    return pd.DataFrame({"radius": r, "certified_acc": hits / len(certs), "lo": lo, "hi": hi,
                         "hits": hits, "n_images": len(certs)})
