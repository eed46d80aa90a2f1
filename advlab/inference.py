"""The one inference path: every forward pass without gradients goes through here.

``predict`` (arg-max labels) and ``logits`` run a model over a batch of inputs in chunks and
return CPU tensors.  Attacks and training keep torch autograd; this module is inference only.

* On CUDA: torch, ``inference_mode``, channels_last input, float16 autocast unless ``amp=False``.
* On the CPU: ONNX Runtime (CPUExecutionProvider) by default, on ``torch.get_num_threads()``
  threads: a batch is cut into parts (:data:`PART_SIZE`) that single-threaded sessions run side
  by side, and a batch smaller than the thread count runs on one session's intra-op threads
  (the same outputs either way: a part's outputs do not depend on the other parts).  Measured
  on 2-core CPUs (``scripts/bench_inference.py``, README) it was several times faster than
  eager torch and than ``torch.compile``, with the same labels.
  ``torch`` is eager torch with channels_last input.

Backend choice: the ``backend`` argument, else ``$ADVLAB_BACKEND``, else ``auto``
(``auto``: ONNX Runtime on the CPU, torch on CUDA).  A model that cannot run on ONNX Runtime
(export fails, ONNX Runtime missing, outputs that differ from torch, training mode) raises with
``backend="onnx"``; with ``auto`` it warns once, naming the model class and the reason, and
runs on torch.  Models in training mode (MC dropout) are never exported.

Exports are cached in ``$ADVLAB_CACHE/onnx/``, keyed by the sha256 of the weights, the model's
class and structure, the input's (C, H, W) and dtype, and the torch and opset versions; the
batch dimension is dynamic.  Files are written atomically with a sha256 sidecar; a cached file
that fails its checksum or does not load is reported, deleted and rebuilt.  In memory, one
ONNX Runtime session is kept per (model, weights, input shape); the weights' hash is recomputed
only when a tensor of the state dict is replaced or modified in place (its ``data_ptr`` or
version counter changes).  Writes through ``.data`` bypass the version counter and are not seen.
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .cache import atomic_write_bytes, config_hash
from .config import cache_root
from .inputs import check_images

BACKENDS = ("auto", "onnx", "torch")
BACKEND_ENV = "ADVLAB_BACKEND"
OPSET = 17
# An export is used only if it reproduces torch on a random batch within this (relative to
# the largest logit, plus 1): ONNX Runtime differs by about 1e-5, a mis-traced graph by far more.
EXPORT_CHECK_TOLERANCE = 1e-3
#: On ``t`` > 1 threads a batch is cut into at least ``t`` parts of at most this many inputs,
#: run side by side on single-threaded sessions (parts of one batch share no work, so no thread
#: waits for another inside a layer, and each part's activations stay in the core's cache).
PART_SIZE = 32


class InferenceWarning(UserWarning):
    """A model runs on torch although ONNX Runtime was wanted, or a cached export was discarded."""


class BackendUnavailableError(RuntimeError):
    """``backend="onnx"`` was asked for a model that cannot run on ONNX Runtime."""


def resolve_backend(backend: str | None = None) -> str:
    """The argument, else ``$ADVLAB_BACKEND``, else ``auto``; unknown names are a ValueError."""
    name = backend or os.environ.get(BACKEND_ENV) or "auto"
    if name not in BACKENDS:
        raise ValueError(f"unknown inference backend {name!r} (from "
                         f"{'the backend argument' if backend else '$' + BACKEND_ENV}); "
                         f"choose one of {BACKENDS}")
    return name


def _ort_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def backend_name(device: torch.device | str | None = None, backend: str | None = None,
                 model: nn.Module | None = None) -> str:
    """The backend that runs inference, for run-info lines: ``onnxruntime 1.x`` or ``torch``.

    With ``model``: what its latest ``predict``/``logits`` call ran on, naming the reason when
    ONNX Runtime was wanted but torch was used.  Without, what a call would use.
    """
    state = _STATES.get(model) if model is not None else None
    if state is not None and state.used is not None:
        return state.used
    choice = resolve_backend(backend)
    if choice == "torch" or torch.device(device or "cpu").type != "cpu":
        return "torch"
    version = _ort_version()
    return f"onnxruntime {version}" if version else "torch (onnxruntime is not installed)"


# --------------------------------------------------------------------------- public API
def logits(model: nn.Module, x: torch.Tensor, batch_size: int = 128,
           device: torch.device | str | None = None, amp: bool = True,
           backend: str | None = None, *, unit_range: bool = True) -> torch.Tensor:
    """Outputs of ``model`` on ``x`` in batches of ``batch_size``, as a CPU float32 tensor.

    ``amp``: float16 autocast on CUDA.  Turn it off for images that sit on a decision
    boundary (attacks that stop as soon as the label flips), where float16 may flip it back.
    ``x`` is checked first (:func:`advlab.inputs.check_images`: floats in [0, 1], (N, C, H, W),
    the shape the model declares); ``unit_range=False`` accepts any finite values (noisy
    inputs that are not clipped, as randomized smoothing makes them).
    """
    return _run(model, x, batch_size, device, amp, backend, lambda out: out.float(), unit_range)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 128,
            device: torch.device | str | None = None, amp: bool = True,
            backend: str | None = None, *, unit_range: bool = True) -> torch.Tensor:
    """Arg-max labels of ``model`` on ``x`` in batches, as a CPU long tensor (see ``logits``)."""
    return _run(model, x, batch_size, device, amp, backend, lambda out: out.argmax(1), unit_range)


# --------------------------------------------------------------------------- the batch loop
def _model_device(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _run(model: nn.Module, x: torch.Tensor, batch_size: int, device, amp: bool,
         backend: str | None, reduce: Callable[[torch.Tensor], torch.Tensor],
         unit_range: bool = True) -> torch.Tensor:
    choice = resolve_backend(backend)
    check_images(x, model, unit_range=unit_range)
    device = torch.device(device) if device is not None else _model_device(model)
    if len(x) == 0:
        return reduce(torch.empty(0, 1))
    forward = None
    if device.type == "cpu" and choice != "torch":
        forward = _onnx_forward(model, x, strict=choice == "onnx")
    if forward is None:
        forward = _torch_forward(model, device, amp)
        if choice == "torch" or device.type != "cpu":
            _state(model).used = "torch"
    with torch.inference_mode():
        out = [reduce(forward(x[i:i + batch_size])).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def _torch_forward(model: nn.Module, device: torch.device, amp: bool):
    def forward(xb: torch.Tensor) -> torch.Tensor:
        xb = xb.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            return model(xb)
    return forward


# --------------------------------------------------------------------------- ONNX Runtime
@dataclass
class _ModelState:
    """Per-model memory: the weights' hash and its fingerprint, sessions, the backend used."""

    fingerprint: tuple = ()
    digest: str = ""
    sessions: dict = field(default_factory=dict)  # (digest, shape, dtype, threads) -> session | reason
    used: str | None = None


_STATES: weakref.WeakKeyDictionary[nn.Module, _ModelState] = weakref.WeakKeyDictionary()


def _state(model: nn.Module) -> _ModelState:
    if model not in _STATES:
        _STATES[model] = _ModelState()
    return _STATES[model]


def weights_digest(model: nn.Module) -> str:
    """sha256 of the state dict: every tensor's name, dtype, shape and bytes, in order.

    Cached against the tensors' identity, ``data_ptr()`` and version counter, so it is
    recomputed only after the weights were replaced or changed in place.
    """
    state = _state(model)
    tensors = model.state_dict(keep_vars=True)
    # Tensors made under inference_mode have no version counter: such weights are hashed anew.
    fingerprint = tuple((name, id(t), t.data_ptr(), None if t.is_inference() else t._version)
                        for name, t in tensors.items())
    if fingerprint != state.fingerprint or any(f[-1] is None for f in fingerprint):
        state.fingerprint, state.digest = fingerprint, _hash_state_dict(tensors)
        state.sessions = {k: v for k, v in state.sessions.items() if k[0] == state.digest}
    return state.digest


def _hash_state_dict(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _onnx_forward(model: nn.Module, x: torch.Tensor, strict: bool):
    """A batch function running ``model`` on ONNX Runtime, or ``None`` (after a warning) when
    it cannot and ``strict`` is False.  With ``strict``, raise instead."""
    state = _state(model)
    cls = type(model).__name__
    reason = None
    if _ort_version() is None:
        reason = "onnxruntime is not installed (pip install onnxruntime)"
    elif any(m.training for m in model.modules()):
        reason = ("the model is in training mode; ONNX export is for eval-mode models only "
                  "(call model.eval(), or use backend='torch' for stochastic passes)")
    if reason is not None:
        return _refuse(state, cls, reason, strict, once=False)
    threads = torch.get_num_threads()
    key = (weights_digest(model), tuple(x.shape[1:]), x.dtype, 1)
    fresh = key not in state.sessions
    single = _session(state, model, key)
    if isinstance(single, str):  # failed: warned the first time
        return _refuse(state, cls, single, strict, once=not fresh)
    state.used = f"onnxruntime {_ort_version()}"

    def run(arr: np.ndarray) -> np.ndarray:
        return single.run(None, {"x": arr})[0]

    def forward(xb: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(xb.detach().cpu().numpy())
        if threads == 1:
            return torch.from_numpy(run(arr))
        if len(arr) < threads:  # too few inputs to share out: one run on all threads
            many = _session(state, model, key[:3] + (threads,))
            return torch.from_numpy(run(arr) if isinstance(many, str) else
                                    many.run(None, {"x": arr})[0])
        parts = max(threads, -(-len(arr) // PART_SIZE))
        bounds = [len(arr) * k // parts for k in range(parts + 1)]
        outs = _pool(threads).map(run, [arr[a:b] for a, b in zip(bounds[:-1], bounds[1:])])
        return torch.from_numpy(np.concatenate(list(outs)))
    return forward


def _session(state: _ModelState, model: nn.Module, key: tuple):
    """The session for ``key`` (weights, shape, dtype, intra-op threads), made on first use,
    or why it cannot be made."""
    if key not in state.sessions:
        try:
            state.sessions[key] = _load_or_export(model, key)
        except Exception as err:
            state.sessions[key] = f"{type(err).__name__}: {err}"
    return state.sessions[key]


_POOLS: dict = {}
_POOL_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """``threads`` threads that run parts of a batch side by side (ONNX Runtime releases the
    GIL); made again in a forked child, which has none of its parent's threads."""
    key = (os.getpid(), threads)
    with _POOL_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(threads, thread_name_prefix="advlab-onnx")
    return _POOLS[key]


def _refuse(state: _ModelState, cls: str, reason: str, strict: bool, once: bool):
    if strict:
        raise BackendUnavailableError(f"backend='onnx': {cls} cannot run on ONNX Runtime: {reason}")
    if not once:
        warnings.warn(f"{cls} runs on torch, not ONNX Runtime: {reason}", InferenceWarning,
                      stacklevel=5)
    state.used = f"torch ({cls} not on ONNX Runtime: {reason.split(';')[0]})"
    return None


def _new_session(data: bytes, threads: int):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def export_path(model: nn.Module, shape: tuple[int, ...], dtype: torch.dtype):
    """Where the ONNX export of ``model`` for inputs (N, *shape) of ``dtype`` is cached."""
    key = {"weights": weights_digest(model), "class": f"{type(model).__module__}.{type(model).__qualname__}",
           "structure": hashlib.sha256(repr(model).encode()).hexdigest(), "shape": list(shape),
           "dtype": str(dtype), "torch": torch.__version__, "opset": OPSET}
    return cache_root() / "onnx" / f"{type(model).__name__}-{config_hash(key)}.onnx"


def _load_or_export(model: nn.Module, key: tuple):
    """An ONNX Runtime session from the cached export, or from a new one (then cached)."""
    _, shape, dtype, threads = key
    path = export_path(model, shape, dtype)
    sidecar = path.with_name(path.name + ".sha256")
    if path.exists():
        data = path.read_bytes()
        expected = sidecar.read_text().strip() if sidecar.exists() else None
        problem = None
        if expected is None:
            problem = f"its checksum file {sidecar.name} is missing"
        elif hashlib.sha256(data).hexdigest() != expected:
            problem = "its sha256 does not match its checksum file (truncated or corrupt)"
        else:
            try:
                session = _new_session(data, threads)
                _check_export(model, session, shape, dtype)
                return session
            except Exception as err:
                problem = f"it does not load or run ({type(err).__name__}: {err})"
        warnings.warn(f"discarding the cached ONNX export {path}: {problem}; exporting again",
                      InferenceWarning, stacklevel=5)
        path.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
    data = _export(model, shape, dtype)
    session = _new_session(data, threads)
    _check_export(model, session, shape, dtype)
    try:
        atomic_write_bytes(hashlib.sha256(data).hexdigest().encode(), sidecar)
        atomic_write_bytes(data, path)
    except OSError as err:  # a full or read-only disk: run the export, uncached
        sidecar.unlink(missing_ok=True)
        warnings.warn(f"could not cache the ONNX export ({err}); it runs uncached and is "
                      "exported again next time", InferenceWarning, stacklevel=5)
    return session


def _export(model: nn.Module, shape: tuple[int, ...], dtype: torch.dtype) -> bytes:
    """The ONNX graph of ``model`` (TorchScript exporter), with a dynamic batch dimension."""
    dummy = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0)).to(dtype)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The exporter's own deprecation notice and TracerWarnings about shape checks; a graph
        # that traced wrongly is caught by _check_export instead.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), buf, dynamo=False, opset_version=OPSET,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    return buf.getvalue()


def _check_export(model: nn.Module, session, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Raise unless the session reproduces torch on a random batch of 3 (a batch size the
    export never saw)."""
    x = torch.rand((3, *shape), generator=torch.Generator().manual_seed(1)).to(dtype)
    with torch.inference_mode():
        ref = model(x).float()
    out = torch.from_numpy(session.run(None, {"x": x.numpy()})[0]).float()
    if out.shape != ref.shape:
        raise ValueError(f"the export returns shape {tuple(out.shape)}, torch {tuple(ref.shape)}")
    diff = float((out - ref).abs().max())
    if not diff <= EXPORT_CHECK_TOLERANCE * (1 + float(ref.abs().max())):
        raise ValueError(f"the export does not reproduce torch (max |output diff| {diff:.3g}); "
                         "the forward pass probably branches on data")
