"""Profiles, device choice, seeding and paths shared by every chapter.

Environment variables (all optional):

``ADVLAB_PROFILE``  ``smoke`` (seconds to a minute on a laptop CPU; what CI runs), ``full``
                    (the stored outputs) or ``paper`` (a chapter's protocol at the source
                    study's size where ``full`` cannot reach it on a CPU; meant for a GPU;
                    only chapters that define it).  Default: ``smoke``.
``ADVLAB_DEVICE``   ``cpu``, ``cuda``, ``cuda:1``, ``mps``.  Default: CUDA when available.
``ADVLAB_DATA``     folder holding offline mirrors (``MNIST/raw``, ``imagenet-samples`` ...).
``ADVLAB_MODELS``   folder holding offline model weights.
``ADVLAB_CACHE``    where downloads and cached results go.  Default: ``~/.cache/advlab``.
``ADVLAB_DOWNLOAD_BASE``  fetch every download ``https://site/path`` from
                    ``$ADVLAB_DOWNLOAD_BASE/site/path`` instead (see ``advlab.download``).
``ADVLAB_BACKEND``  inference backend on the CPU: ``auto`` (ONNX Runtime), ``onnx`` or ``torch``
                    (see ``advlab.inference``).  Default: ``auto``.
``TQDM_DISABLE``    set (``1``) to hide the progress bars of a notebook whose ``PROGRESS``
                    parameter is ``None``: how the stored notebooks are executed.
"""
from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

#: Profile names a chapter may define: ``smoke`` (seconds to a minute on a CPU; CI), ``full`` (the
#: stored pages), ``cpu`` (where the full protocol cannot fit on two CPU cores: what matters, cut
#: to fit, said by the chapter) and ``paper`` (the source study's size, for a GPU).
PROFILES = ("smoke", "full", "cpu", "paper")


def resolve_profile(profile: str | None = None) -> str:
    """Return the profile name: the argument, else ``$ADVLAB_PROFILE``, else ``smoke``."""
    name = profile or os.environ.get("ADVLAB_PROFILE") or "smoke"
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {PROFILES}")
    return name


def profile_settings(profiles: dict[str, dict], chapter: str, profile: str | None = None,
                     **overrides) -> dict:
    """A chapter's settings for ``profile`` with keyword overrides (unknown keys are an error)."""
    name = resolve_profile(profile)
    if name not in profiles:
        raise ValueError(f"{chapter} has no profile {name!r}; choose one of {sorted(profiles)}")
    return with_overrides(profiles[name], overrides, f"{chapter} settings")


def with_overrides(settings: dict, overrides: dict, what: str) -> dict:
    """A copy of ``settings`` updated by ``overrides``; a key it lacks is a ValueError."""
    unknown = set(overrides) - set(settings)
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; known: {sorted(settings)}")
    return {**settings, **overrides}


def resolve_progress(progress: bool | None = None) -> bool:
    """Whether to show progress bars: the argument, else on unless ``$TQDM_DISABLE`` is set.

    tqdm reads ``TQDM_DISABLE`` only for bars whose ``disable`` is not passed, and the package
    passes it (``progress=...``), so the notebooks resolve their ``PROGRESS`` parameter here.
    """
    if progress is not None:
        return bool(progress)
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in ("", "0", "false", "no")


class DeviceUnavailableError(RuntimeError):
    """The requested device does not exist on this machine."""


#: The device types advlab runs on.
DEVICE_TYPES = ("cpu", "cuda", "mps")


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The argument, else ``$ADVLAB_DEVICE``, else CUDA when available, else the CPU.

    A name torch does not know (``tpu``, ``banana``), a type advlab does not run on, or a
    device this machine lacks (CUDA, ``cuda:3`` on a machine with fewer GPUs, MPS) is a
    one-line :class:`DeviceUnavailableError` saying where the name came from."""
    choice = device or os.environ.get("ADVLAB_DEVICE")
    if choice is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = "" if device else " (from $ADVLAB_DEVICE)"
    try:
        dev = torch.device(choice)
    except (RuntimeError, ValueError, TypeError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise DeviceUnavailableError(f"unknown device {str(choice)!r}{where}; use cpu, cuda, "
                                     "cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"device {str(choice)!r}{where} requested but CUDA is not "
                                     "available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceUnavailableError(f"device {str(choice)!r}{where} requested but this machine "
                                     f"has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(f"device {str(choice)!r}{where} requested but MPS is not "
                                     "available on this machine")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def tune_allocator() -> bool:
    """Keep memory that PyTorch frees inside the process (glibc only).

    glibc returns freed heap memory to the system once more than 128 KiB sit free at the top,
    so every batch of a forward and backward pass faults its multi-megabyte buffers in again:
    on 2 CPU cores EfficientNet-Lite0 spent 40% of a run in the kernel doing that.  A large
    ``M_TRIM_THRESHOLD`` (and the largest ``M_MMAP_THRESHOLD`` glibc allows, 32 MiB) stops it,
    at the cost of a process that keeps its peak memory.  Off with ``ADVLAB_MALLOC_TUNING=0``;
    a no-op where glibc is not the allocator.  Returns whether the settings were applied.
    """
    if os.environ.get("ADVLAB_MALLOC_TUNING", "1") == "0" or platform.system() != "Linux":
        return False
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_trim_threshold, 2**31 - 1)) and bool(mallopt(m_mmap_threshold, 32 * 2**20))


def per_image_normal(seeds, shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard-normal draws of ``shape`` for each seed, stacked: (len(seeds), *shape), CPU.

    Each image's draw comes from its own generator, so it does not depend on which other
    images share the batch, on the batch size or on the device.
    """
    g = torch.Generator()
    return torch.stack([torch.randn(tuple(shape), generator=g.manual_seed(int(s)), dtype=dtype)
                        for s in seeds]) if len(seeds) else torch.empty(0, *shape, dtype=dtype)


def _env_path(var: str) -> Path | None:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else None


def data_root() -> Path | None:
    """Folder of offline data mirrors (``$ADVLAB_DATA``), or ``None`` when unset."""
    return _env_path("ADVLAB_DATA")


def models_root() -> Path | None:
    """Folder of offline model weights (``$ADVLAB_MODELS``), or ``None`` when unset."""
    return _env_path("ADVLAB_MODELS")


def cache_location() -> Path:
    """Where the cache is (``$ADVLAB_CACHE`` or ``~/.cache/advlab``), without creating it."""
    return _env_path("ADVLAB_CACHE") or Path.home() / ".cache" / "advlab"


def cache_root() -> Path:
    """Writable folder for downloads and cached results (``$ADVLAB_CACHE`` or ``~/.cache/advlab``)."""
    root = cache_location()
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass(frozen=True)
class RunInfo:
    """What every result records about how it was produced: profile, device, model, inference
    backend, wall time; which device computed each cached piece, and where the time went."""

    chapter: str
    profile: str
    device: str
    model: str
    wall_time_s: float
    note: str = ""
    backend: str = "unrecorded"  # what ran the inference passes (advlab.inference.backend_name)
    torch: str = torch.__version__
    host: str = platform.machine()
    computed_on: dict = field(default_factory=dict)   # device -> pieces it computed
    stages: dict = field(default_factory=dict)        # stage -> seconds, pieces computed / read

    def line(self) -> str:
        where = ", ".join(f"{n} on {d}" for d, n in self.computed_on.items())
        return (f"run-info: chapter={self.chapter} profile={self.profile} device={self.device} "
                f"backend={self.backend} model={self.model} wall={self.wall_time_s:.1f}s "
                f"torch={self.torch}" + (f" ({self.note})" if self.note else "")
                + (f"; pieces computed: {where}" if where else ""))

    def timings(self) -> str:
        """Where the run's time went, stage by stage, as a text table."""
        rows = [f"{'stage':<28} {'seconds':>9} {'computed':>9} {'read':>6}"]
        for name, st in self.stages.items():
            rows.append(f"{name:<28} {st['seconds']:>9.1f} {st['computed']:>9} {st['read']:>6}")
        rows.append(f"{'total (wall)':<28} {self.wall_time_s:>9.1f}")
        return "\n".join(rows)


def device_name(device: torch.device) -> str:
    """Human-readable device name (GPU model or CPU with its thread count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
