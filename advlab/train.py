"""One training loop for every model of the book: classifiers, denoisers, autoencoders.

:func:`fit` trains a model on in-memory tensors or on any batch source with a given loss,
optimizer and scheduler.  It is seeded (its own generator for the data order, torch's global
generator for the initialisation and dropout), uses autocast on CUDA (bfloat16 where supported,
else float16 with a gradient scaler), and with a ``name`` it caches the trained weights under
``$ADVLAB_CACHE/models/<name>-<key>.pt``, where the key covers every setting that changes
them and the data's identity.  While it trains it writes a resumable checkpoint (model,
optimizer, scheduler, scaler, random states, epoch and batch) every ``checkpoint_every``
seconds and at each epoch end; a run started again after an interruption resumes from it and
ends with exactly the weights an uninterrupted run would have.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .cache import atomic_save, config_hash, load_or_discard, tensor_digest
from .config import cache_root, get_device

Batch = tuple[torch.Tensor, torch.Tensor]
#: ``source(epoch, generator)``: the epoch's batches, drawing any randomness from ``generator``.
BatchSource = Callable[[int, torch.Generator], Iterable[Batch]]
#: ``loss(model, inputs, targets)``: a scalar to minimise.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
#: ``augment(inputs, generator)``: the batch's inputs transformed (on the training device).
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def on_outputs(criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> LossFn:
    """The usual loss, ``criterion(model(inputs), targets)`` (cross-entropy, MSE ...)."""
    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return criterion(model(x), y)
    return loss


def shuffled_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> BatchSource:
    """Batch source over tensors: a fresh permutation of ``x, y`` every epoch."""
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")

    def source(epoch: int, generator: torch.Generator) -> _Batches:
        return _Batches(x, y, torch.randperm(len(x), generator=generator).split(batch_size))
    return source


def flip_crop(x: torch.Tensor, flip: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
              pad: int) -> torch.Tensor:
    """The standard CIFAR augmentation for given draws: image ``i`` flipped left-right where
    ``flip[i]``, then cropped at ``(top[i], left[i])`` (in ``0 .. 2 pad``) to its own size from
    the image zero-padded by ``pad`` on each side (torchvision's ``RandomHorizontalFlip`` and
    ``RandomCrop(size, padding=pad)``).  One gather per axis, no loop over images."""
    n, c, h, w = x.shape
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    x = F.pad(x, (pad, pad, pad, pad))
    rows = (top[:, None] + torch.arange(h))[:, None, :, None].expand(n, c, h, w + 2 * pad)
    x = x.gather(2, rows)
    cols = (left[:, None] + torch.arange(w))[:, None, None, :].expand(n, c, h, w)
    return x.gather(3, cols)


def flip_crop_batches(x: torch.Tensor, y: torch.Tensor | None, batch_size: int,
                      pad: int = 4) -> BatchSource:
    """Batch source with the standard CIFAR augmentation (:func:`flip_crop`): every epoch a
    fresh permutation, and per image a random flip (probability 1/2) and a random crop from the
    zero-padded image, all drawn from the epoch's generator when the epoch starts (so a resumed
    run draws them again identically).  Targets are ``y``, or with ``y=None`` the augmented
    images themselves (denoisers: noise is added to the inputs later, by ``augment``)."""
    if y is not None and len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")

    def source(epoch: int, generator: torch.Generator) -> _FlipCropBatches:
        n = len(x)
        order = torch.randperm(n, generator=generator)
        flip = torch.rand(n, generator=generator) < 0.5
        top = torch.randint(2 * pad + 1, (n,), generator=generator)
        left = torch.randint(2 * pad + 1, (n,), generator=generator)
        return _FlipCropBatches(x, y, order.split(batch_size), flip, top, left, pad)
    return source


@dataclass
class _FlipCropBatches:
    """The batches of :func:`flip_crop_batches`, augmented as they are iterated."""

    x: torch.Tensor
    y: torch.Tensor | None
    chunks: tuple[torch.Tensor, ...]
    flip: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    pad: int

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self) -> Iterator[Batch]:
        for i in self.chunks:
            xb = flip_crop(self.x[i], self.flip[i], self.top[i], self.left[i], self.pad)
            yield xb, (xb if self.y is None else self.y[i])


@dataclass
class _Batches:
    """``(x[i], y[i])`` for each chunk ``i`` of indices, gathered as they are iterated."""

    x: torch.Tensor
    y: torch.Tensor
    chunks: tuple[torch.Tensor, ...]

    def __len__(self) -> int:
        return len(self.chunks)

    def __iter__(self) -> Iterator[Batch]:
        return ((self.x[i], self.y[i]) for i in self.chunks)


def amp_dtype(device: torch.device, amp: bool = True) -> torch.dtype | None:
    """The autocast dtype :func:`fit` trains in: bfloat16 or float16 on CUDA, none elsewhere."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def model_path(name: str, key: dict) -> Path:
    """Where :func:`fit` caches the weights trained under ``key``."""
    return cache_root() / "models" / f"{name}-{config_hash(key)}.pt"


@dataclass
class _Progress:
    """Everything a resumed run restores besides the data: weights, optimizer, scheduler,
    scaler and every random generator."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler | None
    data_gen: torch.Generator
    aug_gen: torch.Generator
    device: torch.device

    def save(self, path: Path, epoch: int, batch: int, data_gen_state: torch.Tensor) -> None:
        """Checkpoint after ``batch`` batches of ``epoch``; ``data_gen_state``: the data
        generator as the epoch began (its batches are drawn again on resuming)."""
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        atomic_save({"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                     "scheduler": self.sched.state_dict() if self.sched is not None else None,
                     "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                     "data_gen": data_gen_state, "aug_gen": self.aug_gen.get_state(),
                     "rng": rng, "epoch": epoch, "batch": batch}, path)

    def load(self, state: dict) -> tuple[int, int]:
        """Restore a checkpoint; return its (epoch, batch)."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None:
            self.sched.load_state_dict(state["scheduler"])
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.data_gen.set_state(state["data_gen"])
        self.aug_gen.set_state(state["aug_gen"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        return state["epoch"], state["batch"]


@contextmanager
def _denormals_flushed(on: bool) -> Iterator[None]:
    """Flush denormal floats to zero on the CPU inside the block (see :func:`fit`)."""
    if not on or not torch.set_flush_denormal(True):  # False: the CPU cannot
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def fit(model: nn.Module | Callable[[], nn.Module],
        data: tuple[torch.Tensor, torch.Tensor] | BatchSource,
        loss: LossFn,
        optimizer: Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer],
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None, *,
        epochs: int, batch_size: int, seed: int = 0, device=None,
        augment: Augment | None = None, amp: bool = True,
        name: str | None = None, recipe: dict | None = None, data_id: str | None = None,
        checkpoint_every: float = 60.0, retrain: bool = False,
        on_batch: Callable[[int, int, torch.Tensor], None] | None = None,
        flush_denormal: bool = False, progress: bool = True) -> nn.Module:
    """Train ``model`` and return it in eval mode on ``device``.

    ``model``: a module, or a function building one; a function is called after torch's global
    generator is seeded with ``seed``, so the initialisation is seeded too (then dropout goes on
    from the same generator).  ``data``: tensors ``(inputs, targets)``, shuffled every epoch
    with a generator seeded with ``seed`` and cut into ``batch_size`` batches; or a
    :data:`BatchSource` (given that generator, which it must draw all its randomness from).
    Targets may be labels or images.  ``loss(model, inputs, targets)`` (see :func:`on_outputs`);
    ``optimizer(params)`` and ``scheduler(optimizer)`` build them (the scheduler steps once per
    epoch).  ``augment(inputs, generator)`` transforms each batch with its own seeded generator.
    ``amp``: autocast on CUDA (see :func:`amp_dtype`); ignored elsewhere.

    Caching (when ``name`` is given): the weights are stored under a key made of ``name``,
    ``recipe`` (what the callables cannot say: architecture, loss, optimizer, schedule,
    augmentation ...; the caller must list every such setting), epochs, batch size, seed, the
    autocast dtype, the initial weights when ``model`` is a module, and ``data_id`` (default: a
    hash of the data tensors; required for a batch source).  A stored model is loaded instead
    of trained unless ``retrain``.  ``on_batch(epoch, batch, loss)`` is called after every
    optimizer step (and after the checkpoint, if one is due).

    ``flush_denormal``: on the CPU, treat denormal floats as zero while training (then switch
    it off again; torch cannot read the previous setting).  Adam's second moments of tiny
    gradients (e.g. a DnCNN's zero-initialised last layer) become denormal, and x86 arithmetic on
    those made DnCNN steps up to 4x slower on 2 cores.  Part of the cache key when on.
    """
    device = get_device(device)
    dtype = amp_dtype(device, amp)
    source = shuffled_batches(*data, batch_size) if isinstance(data, tuple) else data
    path = ckpt = None
    if name is not None:
        if data_id is None and not isinstance(data, tuple):
            raise ValueError("a batch source needs a data_id to cache the model it trains")
        data_id = data_id or tensor_digest(*data)
        key = {"recipe": recipe or {}, "epochs": epochs, "batch_size": batch_size, "seed": seed,
               "amp": str(dtype), "data": data_id}
        if isinstance(model, nn.Module):
            key["init"] = tensor_digest(*model.state_dict().values())
        if flush_denormal and device.type == "cpu":
            key["flush_denormal"] = True
        path = model_path(name, key)
        ckpt = path.with_suffix(".partial.pt")

    torch.manual_seed(seed)  # initialisation (when model builds it) and dropout masks
    if not isinstance(model, nn.Module):
        model = model()
    model = model.to(device)
    if path is not None and not retrain:
        weights = load_or_discard(path, map_location="cpu")
        if weights is not None:
            model.load_state_dict(weights)
            return model.eval()

    started = time.perf_counter()
    opt = optimizer(model.parameters())
    run = _Progress(model, opt, scheduler(opt) if scheduler is not None else None,
                    torch.amp.GradScaler(device.type) if dtype == torch.float16 else None,
                    torch.Generator().manual_seed(seed),
                    torch.Generator(device).manual_seed(seed + 1), device)
    state = load_or_discard(ckpt, map_location="cpu") if ckpt is not None and not retrain else None
    start_epoch, start_batch = run.load(state) if state is not None else (0, 0)
    if state is not None and progress:
        print(f"resuming {name} at epoch {start_epoch + 1}, batch {start_batch}")

    last_save = time.monotonic()
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext
    with _denormals_flushed(flush_denormal and device.type == "cpu"):
        for epoch in range(start_epoch, epochs):
            model.train()
            epoch_gen_state = run.data_gen.get_state()
            batches = source(epoch, run.data_gen)
            skip = start_batch if epoch == start_epoch else 0
            bar = tqdm(islice(batches, skip, None), initial=skip,
                       total=len(batches) if hasattr(batches, "__len__") else None,
                       desc=f"{name or 'training'} epoch {epoch + 1}/{epochs}", disable=not progress,
                       leave=False)
            running, seen = torch.zeros((), device=device), 0
            for b, (xb, yb) in enumerate(bar, start=skip):
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                if augment is not None:
                    xb = augment(xb, run.aug_gen)
                with autocast():
                    value = loss(model, xb, yb)
                opt.zero_grad(set_to_none=True)
                if run.scaler is not None:
                    run.scaler.scale(value).backward()
                    run.scaler.step(opt)
                    run.scaler.update()
                else:
                    value.backward()
                    opt.step()
                running += value.detach().float()
                seen += 1
                if progress and seen % 20 == 0:
                    bar.set_postfix(loss=f"{float(running) / seen:.4f}", refresh=False)
                if ckpt is not None and time.monotonic() - last_save >= checkpoint_every:
                    run.save(ckpt, epoch, b + 1, epoch_gen_state)
                    last_save = time.monotonic()
                if on_batch is not None:
                    on_batch(epoch, b, value.detach())
            bar.close()
            if run.sched is not None:
                with warnings.catch_warnings():
                    if not seen:  # resumed after the epoch's last batch: no step in this process yet
                        warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step",
                                                UserWarning)
                    run.sched.step()
            if ckpt is not None:
                run.save(ckpt, epoch + 1, 0, run.data_gen.get_state())
                last_save = time.monotonic()

    if path is not None:
        atomic_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
        ckpt.unlink(missing_ok=True)
        if progress:
            print(f"trained {name} in {time.perf_counter() - started:.0f} s; cached at {path}")
    return model.eval()
