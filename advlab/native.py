"""Native CPU kernels: ``native.cpp`` built on first use and called through ctypes.

Two loops that torch (eager or ``torch.compile``) runs several times slower on the CPU because
each of their iterations is a pass over memory: the Chambolle-Pock iterations of masked TV
minimisation (:func:`advlab.defences.transforms.tv_minimize`; the native loop keeps one image
plane in the L2 cache for all its iterations: 5-7x the compiled torch step) and JSMA's search
of the best pair of features (:mod:`advlab.attacks.jsma`; the native loop scans the pairs once,
without materialising the (n, n) score matrix).  Each has a torch twin that runs where the
native kernel does not (a GPU, no C++ compiler, ``ADVLAB_COMPILE=0``), and the tests check that
both give the same results.

The library is compiled with the system's C++ compiler (``$CXX``, else ``c++``, ``g++`` or
``clang++``; ``-O3 -march=native``) into ``$ADVLAB_CACHE/native/``, keyed by the source, the
compiler, its flags and the CPU, and written atomically; building takes a few seconds, once.
A build that fails warns once and the torch code runs from then on.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from .config import cache_root

SOURCE = Path(__file__).with_name("native.cpp")
FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-std=c++17", "-shared", "-fPIC")
DTYPES = {torch.float32: "f32", torch.float64: "f64"}

_LOCK = threading.Lock()
_STATE: dict = {}


class NativeWarning(RuntimeWarning):
    """The native kernels could not be built or loaded; the torch code runs instead."""


def enabled() -> bool:
    """False when ``ADVLAB_COMPILE=0`` (no compiled code: torch eager everywhere)."""
    return os.environ.get("ADVLAB_COMPILE", "1") != "0"


def _cpu_id() -> str:
    """The CPU model and its feature flags (``-march=native`` code runs only where built)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keep = [line for line in lines if line.startswith(("model name", "flags", "Features"))]
        return "\n".join(dict.fromkeys(keep)) or platform.processor()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def library_path(compiler: str) -> Path:
    """Where the build for this source, compiler, flags and CPU is cached."""
    key = hashlib.sha256("\0".join([SOURCE.read_text(), compiler, " ".join(FLAGS), _cpu_id(),
                                    platform.machine()]).encode()).hexdigest()[:16]
    return cache_root() / "native" / f"advlab-native-{key}.so"


def _build(compiler: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".so.tmp", dir=path.parent)
    os.close(fd)
    try:
        proc = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True,
                              text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(compiler).name} failed: "
                               f"{(proc.stderr or proc.stdout).strip()[-500:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i64, i32, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    for suffix in DTYPES.values():
        tv = getattr(lib, f"tv_minimize_{suffix}")
        tv.argtypes = [p, p, p, i64, i32, i32, i32, f64, f64, f64, i32, i32]
        tv.restype = None
        pairs = getattr(lib, f"jsma_pairs_{suffix}")
        pairs.argtypes = [p, p, p, i64, i64, i32, p, p, p]
        pairs.restype = None
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernels, built first if needed; None when disabled or unavailable (warned
    once, with the reason)."""
    if not enabled():
        return None
    if "lib" in _STATE:
        return _STATE["lib"]
    with _LOCK:
        if "lib" not in _STATE:
            lib, reason = None, None
            compiler = _compiler()
            if compiler is None:
                reason = "no C++ compiler found (set CXX, or install g++ or clang++)"
            else:
                path = library_path(compiler)
                try:
                    if not path.exists():
                        _build(compiler, path)
                    lib = _declare(ctypes.CDLL(str(path)))
                except Exception as err:
                    reason = f"{type(err).__name__}: {str(err).strip() or 'no message'}"
            if reason:
                warnings.warn(f"advlab's native CPU kernels are not available ({reason}); TV "
                              "minimisation and JSMA's pair search run on torch (several times "
                              "slower on the CPU)", NativeWarning, stacklevel=3)
            _STATE["lib"] = lib
    return _STATE["lib"]


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can take these tensors: CPU, float32 or float64, and built."""
    return (all(t.device.type == "cpu" and t.dtype in DTYPES for t in tensors)
            and library() is not None)


def _parallel(count: int, threads: int | None, run) -> None:
    """``run(start, stop)`` over ``range(count)`` split into ``threads`` contiguous parts (the
    kernels release the GIL), default torch's thread count."""
    threads = max(1, min(count, threads or torch.get_num_threads()))
    if threads == 1:
        run(0, count)
        return
    with _LOCK:
        pool = _STATE.get("pool")
        if pool is None or pool._max_workers < threads:
            pool = _STATE["pool"] = ThreadPoolExecutor(threads, thread_name_prefix="advlab-native")
    bounds = [count * k // threads for k in range(threads + 1)]
    list(pool.map(run, bounds[:-1], bounds[1:]))


def tv_minimize(x: torch.Tensor, mask: torch.Tensor | None, steps: int, tau: float,
                sigma: float, weight: float, isotropic: bool, window: int,
                threads: int | None = None) -> torch.Tensor:
    """Masked TV minimisation of (N, C, H, W) ``x``, each (H, W) plane on its own: the start
    (dropped pixels filled by a ``window``-wide local mean of kept ones) and ``steps``
    Chambolle-Pock iterations, ``mask`` None when every pixel is kept (then Algorithm 2's
    acceleration).  The arithmetic of :func:`advlab.defences.transforms.tv_minimize`'s torch
    code; planes are spread over ``threads`` threads."""
    lib = library()
    x = x.contiguous()
    if mask is not None:
        mask = mask.to(x.dtype).expand_as(x).contiguous()
    z = torch.empty_like(x)
    h, w = x.shape[-2:]
    planes = x.numel() // (h * w)
    fn = getattr(lib, f"tv_minimize_{DTYPES[x.dtype]}")
    size = x.element_size() * h * w

    def run(start: int, stop: int) -> None:
        fn(x.data_ptr() + start * size,
           None if mask is None else mask.data_ptr() + start * size,
           z.data_ptr() + start * size, stop - start, h, w, int(steps), float(tau),
           float(sigma), float(weight), int(isotropic), int(window))
    _parallel(planes, threads, run)
    return z


def jsma_pairs(alpha: torch.Tensor, beta: torch.Tensor, domain: torch.Tensor, increase: bool,
               threads: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """JSMA's best pair of every row of (B, n) ``alpha`` and ``beta`` over the features where
    ``domain`` is True: (p, q, ok), as :func:`advlab.attacks.jsma._best_pairs`."""
    lib = library()
    alpha, beta = alpha.detach().contiguous(), beta.detach().to(alpha.dtype).contiguous()
    dom = domain.to(torch.uint8).contiguous()
    rows, n = alpha.shape
    p = torch.zeros(rows, dtype=torch.long)
    q = torch.zeros(rows, dtype=torch.long)
    ok = torch.zeros(rows, dtype=torch.uint8)
    fn = getattr(lib, f"jsma_pairs_{DTYPES[alpha.dtype]}")
    item = alpha.element_size() * n

    def run(start: int, stop: int) -> None:
        fn(alpha.data_ptr() + start * item, beta.data_ptr() + start * item,
           dom.data_ptr() + start * n, stop - start, n, int(increase),
           p.data_ptr() + 8 * start, q.data_ptr() + 8 * start, ok.data_ptr() + start)
    _parallel(rows, threads, run)
    return p, q, ok.bool()
