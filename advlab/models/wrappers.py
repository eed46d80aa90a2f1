"""Model wrappers shared by every chapter: every advlab model takes inputs in [0, 1]."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..inference import predict  # moved to advlab.inference; re-exported for old imports

__all__ = ["Normalized", "predict", "prepare_for_inference"]


class Normalized(nn.Module):
    """Apply per-channel ``(x - mean) / std`` and then ``model``, so callers pass [0, 1] images.

    Keeping the normalisation inside the model means attacks, noise and blur all act in the
    image space a person sees, and an epsilon of 8/255 means 8 grey levels.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(mean) != len(std):
            raise ValueError("mean and std must have one entry per channel")
        if min(std) <= 0:
            raise ValueError("std entries must be positive")
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"expected a batch (N, {self.mean.shape[1]}, H, W), got {tuple(x.shape)}")
        return self.model((x - self.mean) / self.std)


def prepare_for_inference(model: nn.Module, device: torch.device) -> nn.Module:
    """eval mode, no parameter gradients, channels_last on the target device."""
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(memory_format=torch.channels_last)


def conv_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory layout convolutions run fastest in on CPU and GPU: channels_last for
    batches of multi-channel images (on 2 CPU cores, 1.5x faster forward and backward for
    EfficientNet-Lite0, 2.9x for a 5x5 Gaussian blur), unchanged otherwise."""
    if x.dim() == 4 and x.shape[1] > 1:
        return x.contiguous(memory_format=torch.channels_last)
    return x


_POOL: dict = {}


def _pool(threads: int):
    from concurrent.futures import ThreadPoolExecutor
    if threads not in _POOL:
        _POOL[threads] = ThreadPoolExecutor(threads, thread_name_prefix="advlab-split")
    return _POOL[threads]


def _one_thread(fn):
    """``fn`` run with one intra-op thread (in a worker thread: it changes that thread only)."""
    def run(*args):
        torch.set_num_threads(1)
        return fn(*args)
    return run


class _SplitGrad(torch.autograd.Function):
    """:class:`ThreadSplit` with gradients.  Few chunks: each chunk's forward keeps its graph
    for the backward.  More chunks than threads (a large batch): the forward keeps no graph
    and the backward runs each chunk's forward again with one (memory for ``threads`` chunks
    at a time, for one more forward pass)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, split: ThreadSplit) -> torch.Tensor:
        chunks = split.chunks(x)
        ctx.split, ctx.recompute = split, len(chunks) > split.threads

        def part(chunk):
            if ctx.recompute:
                with torch.no_grad():
                    return chunk, split.model(chunk)
            chunk = chunk.detach().requires_grad_(True)
            with torch.enable_grad():
                return chunk, split.model(chunk)
        ctx.parts = list(_pool(split.threads).map(_one_thread(part), chunks))
        return torch.cat([out.detach() for _, out in ctx.parts])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        parts = ctx.parts      # kept for another backward pass (retain_graph), freed with ctx
        grads = grad.split([out.shape[0] for _, out in parts])
        model = ctx.split.model

        def back(item):
            (chunk, out), g = item
            if ctx.recompute:
                chunk = chunk.detach().requires_grad_(True)
                with torch.enable_grad():
                    out = model(chunk)
                return torch.autograd.grad(out, chunk, g)[0]
            return torch.autograd.grad(out, chunk, g, retain_graph=True)[0]
        return torch.cat(list(_pool(ctx.split.threads).map(_one_thread(back), zip(parts, grads)))), None


class ThreadSplit(nn.Module):
    """``model`` on the CPU with each batch cut into chunks of at most ``chunk`` images that
    ``threads`` Python threads run at once, each with one intra-op thread, forward and
    backward (the input's gradient; the model's parameters must be frozen).  For attacks on a
    shared 2-core CPU: torch's own intra-op threads wait for each other at every layer, and a
    core taken by another job stalls them all; independent chunks do not wait (BIM on
    EfficientNet-Lite0 ran 2.5 times as fast, measured with other jobs on both cores).  A batch
    of more than ``threads`` chunks keeps no graph in the forward pass and runs each chunk's
    forward again in the backward (an EfficientNet-Lite0 graph holds about 80 MB an image).

    The outputs and gradients are those of ``model`` with one intra-op thread, bit for bit for
    EfficientNet-Lite0 (for other models a batch size may change a kernel's summation order);
    with two intra-op threads they differ in the last bits (1e-5 in Lite0's logits), which is
    enough to send an iterative attack along another path.
    On other devices, or for a single image, it is ``model`` itself."""

    def __init__(self, model: nn.Module, threads: int = 2, chunk: int = 25):
        super().__init__()
        if chunk < 1 or threads < 1:
            raise ValueError(f"need chunk >= 1 and threads >= 1, got {chunk} and {threads}")
        if any(p.requires_grad for p in model.parameters()):
            raise ValueError("ThreadSplit computes input gradients only: freeze the model's "
                             "parameters (prepare_for_inference)")
        self.model, self.threads, self.chunk = model, int(threads), int(chunk)
        self.eval()

    def chunks(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``x`` cut into at least ``threads`` chunks (when it has as many images) of at most
        ``chunk`` images each."""
        n = max(min(self.threads, len(x)), -(-len(x) // self.chunk))
        return x.tensor_split(n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or len(x) < 2 or self.threads == 1:
            return self.model(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _SplitGrad.apply(x, self)
        return torch.cat(list(_pool(self.threads).map(_one_thread(self.model), self.chunks(x))))
