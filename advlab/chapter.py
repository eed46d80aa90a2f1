"""The chapter contract: what every chapter of the book is, in one place.

A chapter is a module ``advlab/experiments/chNN.py`` that defines ``CHAPTER``, an instance of a
:class:`Chapter` subclass.  The CLI (``advlab run chNN``), the tests and the notebooks find
chapters the same way (:func:`advlab.experiments.chapters`).  A chapter has:

* ``Settings``: one frozen dataclass (a subclass of :class:`Settings`) holding every setting of a
  run, validated when it is built; ``profiles`` maps ``smoke``, ``full`` (and optionally
  ``cpu``, ``paper``) to instances.  :meth:`Chapter.settings` applies overrides; an unknown or
  mistyped setting is a one-line :class:`SettingsError` before any work.
* ``run(ctx, settings) -> Results``: the experiment.  Every expensive step is a *piece*,
  ``ctx.piece(name, compute, **inputs)``, cached on disk under a key derived from the inputs
  themselves (:func:`identity`: images by fingerprint, models by weights digest, attacks and
  defences by their full settings, settings by their fields), never written by hand; the piece
  records the device it was computed on.  ``ctx.stage(name)`` times a stage of the run.
* ``tables`` and ``figures``: ``{name: function(results)}`` building the readers' tables
  (:class:`advlab.report.Table`) and the figures; the notebook shows them, the CLI saves them.

:meth:`Chapter.__call__` runs a chapter: settings first (validated), then a :class:`RunContext`
(device, inference backend, cache, progress bars), then ``run``; the results carry a
:class:`~advlab.config.RunInfo` saying where each piece was computed and where the time went.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
import types
import typing
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from .cache import ResultCache, atomic_path, fingerprint, tensor_digest
from .config import PROFILES, RunInfo, device_name, get_device, resolve_progress, seed_everything, tune_allocator
from .data import ImageSet
from .inference import BACKEND_ENV, backend_name, resolve_backend, weights_digest


class SettingsError(ValueError):
    """A chapter setting that does not exist or has a value it cannot take."""


# --------------------------------------------------------------------------- settings
def stage(default: Any, *stages: str) -> Any:
    """A settings field that only the pieces of ``stages`` depend on (so changing it keeps the
    other stages' cached pieces).  A field declared without it belongs to every stage."""
    return field(default=default, metadata={"stages": stages})


@dataclass(frozen=True)
class Settings:
    """Base of every chapter's settings: a frozen dataclass, validated when it is built.

    Subclasses add fields (plain, or :func:`stage` fields) and override :meth:`check`, which
    raises :class:`SettingsError` through :meth:`require`.  Lists are stored as tuples, so
    settings hash and compare by value.
    """

    seed: int = 0

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = _coerce(getattr(self, f.name), hints.get(f.name, Any),
                            f"{type(self).__name__}.{f.name}")
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Raise :class:`SettingsError` (via :meth:`require`) where a value is out of range."""

    def require(self, ok: bool, message: str) -> None:
        if not ok:
            raise SettingsError(f"{type(self).__name__}: {message}")

    def replace(self, **changes) -> Settings:
        """A validated copy with ``changes``; an unknown name is a :class:`SettingsError`."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s) {unknown} for {type(self).__name__}; "
                                f"known: {sorted(known)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def stages(cls) -> set[str]:
        """Every stage some field is declared for."""
        return {s for f in fields(cls) for s in f.metadata.get("stages", ())}

    def part(self, *stages: str) -> dict:
        """The fields the pieces of ``stages`` depend on: every field declared for one of them
        and every field declared for no stage (shared).  No argument: every field."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not stages or not f.metadata.get("stages")
                or set(f.metadata["stages"]) & set(stages)}

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the annotation ``hint`` (int, float, bool, str, ``X | None``,
    ``tuple[X, ...]``, dict, Any): lists become tuples, ints become floats where a float is
    due (so 1 and 1.0 give one cache key); anything else is a :class:`SettingsError`."""
    if hint is Any:
        return tuple(value) if isinstance(value, list) else value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except SettingsError as err:
                errors.append(str(err))
        raise SettingsError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none "
                            f"of {hint}")
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise SettingsError(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(args) != len(value):
            raise SettingsError(f"{where} must have {len(args)} entries, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise SettingsError(f"{where} must be a mapping, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise SettingsError(f"{where} must be a whole number, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise SettingsError(f"{where} must be a number, got {value!r}")
        if not np.isfinite(value):
            raise SettingsError(f"{where} must be finite, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where} must be a string, got {value!r}")
        return value
    return value


# --------------------------------------------------------------------------- cache identities
def identity(obj: Any, _depth: int = 0) -> Any:
    """What a cache key holds for ``obj``: a JSON-able value that changes whenever ``obj``
    would compute something else, and not when only the device differs.

    Images: their fingerprint (file names, else pixel and label bytes).  Modules: class,
    structure (``repr``), weights digest and every public attribute.  Settings: their fields.
    Functions: qualified name, defaults and closure values.  Tensors: a digest of their bytes.
    Other objects: class and public attributes.  An object with ``cache_identity()`` gives its own.
    """
    if _depth > 12:
        raise TypeError(f"cannot derive a cache identity: {type(obj).__name__} nests too deeply")
    rec = functools.partial(identity, _depth=_depth + 1)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else str(obj)
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return rec(obj.item())
    if isinstance(obj, torch.device):
        return "device"           # never part of a key: a piece computed on a GPU serves a CPU
    if isinstance(obj, torch.dtype):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [rec(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): rec(v) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        return sorted(map(str, obj))
    if isinstance(obj, torch.Tensor):
        return f"tensor:{tensor_digest(obj)}"
    if isinstance(obj, np.ndarray):
        return f"array:{tensor_digest(torch.from_numpy(np.ascontiguousarray(obj)))}"
    if hasattr(obj, "cache_identity"):
        return rec(obj.cache_identity())
    if isinstance(obj, Settings):
        return rec(obj.as_dict())
    if isinstance(obj, ImageSet):
        return fingerprint(obj)
    if isinstance(obj, nn.Module):
        return {"module": _qualname(type(obj)),
                "structure": hashlib.sha256(repr(obj).encode()).hexdigest()[:16],
                "weights": weights_digest(obj)[:16],
                "attributes": rec(_public(obj, skip=("training",)))}
    if isinstance(obj, functools.partial):
        return {"partial": rec(obj.func), "args": rec(obj.args), "kwargs": rec(obj.keywords)}
    if isinstance(obj, (types.FunctionType, types.MethodType)):
        fn = obj.__func__ if isinstance(obj, types.MethodType) else obj
        out = {"function": f"{fn.__module__}.{fn.__qualname__}",
               "defaults": rec(fn.__defaults__ or ()),
               "kwdefaults": rec(fn.__kwdefaults__ or {}),
               "closure": rec([c.cell_contents for c in fn.__closure__ or ()])}
        if isinstance(obj, types.MethodType):
            out["self"] = rec(obj.__self__)
        return out
    if isinstance(obj, (types.BuiltinFunctionType, type)):
        return _qualname(obj)
    if dataclasses.is_dataclass(obj):
        return {"class": _qualname(type(obj)),
                **{f.name: rec(getattr(obj, f.name)) for f in fields(obj)}}
    if hasattr(obj, "__dict__"):
        return {"class": _qualname(type(obj)), **rec(_public(obj))}
    raise TypeError(f"cannot derive a cache identity for a {type(obj).__name__}; give it a "
                    "cache_identity() method")


def _qualname(t: type) -> str:
    return f"{getattr(t, '__module__', '')}.{getattr(t, '__qualname__', repr(t))}"


def _public(obj: Any, skip: tuple[str, ...] = ()) -> dict:
    return {k: v for k, v in sorted(vars(obj).items())
            if not k.startswith("_") and k not in skip}


def piece_key(name: str, inputs: dict) -> dict:
    """The cache key of a piece: its name and the identity of every input."""
    return {"piece": name, **{k: identity(v) for k, v in sorted(inputs.items())}}


# --------------------------------------------------------------------------- the run context
@dataclass
class StageTime:
    seconds: float = 0.0
    computed: int = 0
    read: int = 0


@dataclass
class RunContext:
    """Where and how a chapter runs: device, inference backend, cache, progress bars; and what
    it records: which device computed each piece and how long each stage took."""

    chapter: str
    profile: str
    device: torch.device
    cache: ResultCache
    progress: bool = True
    computed_on: Counter = field(default_factory=Counter)
    stages: dict[str, StageTime] = field(default_factory=dict)
    _current: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    @classmethod
    def create(cls, chapter: str, profile: str, device=None, use_cache: bool = True,
               progress: bool | None = None, cache_root: Path | None = None) -> RunContext:
        tune_allocator()
        return cls(chapter, profile, get_device(device),
                   ResultCache(chapter, root=cache_root, enabled=use_cache),
                   resolve_progress(progress))

    # ------------------------------------------------------------------ pieces
    def piece(self, name: str, compute: Callable[[], dict], **inputs) -> dict:
        """``compute()`` (a dict of tensors, numbers, strings and lists), cached under a key
        derived from ``name`` and ``inputs`` (see :func:`identity`).  The returned dict also
        holds ``computed_on``: the device that computed it, here or in an earlier run."""
        key = piece_key(name, inputs)
        here = device_name(self.device)

        def tagged() -> dict:
            value = compute()
            if not isinstance(value, dict):
                raise TypeError(f"piece {name!r} must compute a dict, got {type(value).__name__}")
            return {**value, "computed_on": here}

        before = self.cache.misses
        value = self.cache.get_or_compute(name, key, tagged)
        computed = self.cache.misses > before
        where = value.get("computed_on", "unrecorded")
        self.computed_on[where] += 1
        st = self.stages.setdefault(self._current[-1] if self._current else "other", StageTime())
        if computed:
            st.computed += 1
        else:
            st.read += 1
        return value

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage of the run (nested stages count towards themselves only)."""
        st = self.stages.setdefault(name, StageTime())
        self._current.append(name)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            took = time.perf_counter() - t0
            self._current.pop()
            st.seconds += took
            if self._current:   # the enclosing stage does not count this time twice
                self.stages[self._current[-1]].seconds -= took

    # ------------------------------------------------------------------ helpers
    def load_model(self, name: str, **options) -> nn.Module:
        """:func:`advlab.zoo.load_model` on this run's device."""
        from .zoo import load_model
        return load_model(name, self.device, progress=self.progress, **options)

    def info(self, model: str, inference_model: nn.Module | None = None) -> RunInfo:
        """The run-info record: profile, device, model, backend, wall time, pieces and stages."""
        pieces = sum(self.computed_on.values())
        read = sum(s.read for s in self.stages.values())
        return RunInfo(self.chapter, self.profile, device_name(self.device), model,
                       time.time() - self.started,
                       f"{read} of {pieces} pieces read from the cache" if read else "",
                       backend_name(self.device, model=inference_model),
                       computed_on=dict(self.computed_on),
                       stages={k: dataclasses.asdict(v) for k, v in self.stages.items()})


# --------------------------------------------------------------------------- results
@dataclass
class ChapterResults:
    """Base of every chapter's results: a dataclass with one data frame per name in ``TABLES``
    (saved as CSV), ``info`` and ``settings``; ``extras()`` adds values to the JSON record."""

    CHAPTER: ClassVar[str] = ""
    TABLES: ClassVar[tuple[str, ...]] = ()
    INDEXED: ClassVar[tuple[str, ...]] = ()   # tables whose index is part of the data

    def extras(self) -> dict:
        return {}

    def save(self, out: Path) -> list[Path]:
        """Every table as CSV, and the settings, run-info and extras as JSON."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in self.TABLES:
            table: pd.DataFrame = getattr(self, name)
            path = out / f"{self.CHAPTER}_{name}.csv"
            with atomic_path(path) as tmp:
                table.to_csv(tmp, index=name in self.INDEXED)
            written.append(path)
        path = out / f"{self.CHAPTER}_run.json"
        settings = self.settings.as_dict() if isinstance(self.settings, Settings) else self.settings
        record = {"info": dataclasses.asdict(self.info), "settings": settings, **self.extras()}
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(record, indent=2, default=str))
        return written + [path]


# --------------------------------------------------------------------------- the chapter
class Chapter:
    """Base of every chapter (see the module's docstring).

    Subclasses set ``id``, ``title``, ``Settings``, ``profiles``, ``tables``, ``figures`` and,
    when readers may pick the model, ``model_setting`` (the settings field ``--model`` sets),
    and implement :meth:`run`.
    """

    id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    Settings: ClassVar[type[Settings]] = Settings
    profiles: ClassVar[dict[str, Settings]] = {}
    model_setting: ClassVar[str | None] = None
    tables: ClassVar[dict[str, Callable]] = {}
    figures: ClassVar[dict[str, Callable]] = {}

    def run(self, ctx: RunContext, s: Settings) -> ChapterResults:
        raise NotImplementedError

    # ------------------------------------------------------------------ provided
    def settings(self, profile: str | None = None, **overrides) -> Settings:
        """The profile's settings (default ``$ADVLAB_PROFILE``, else smoke) with ``overrides``;
        ``model=`` sets :attr:`model_setting`.  Errors are :class:`SettingsError`."""
        name = self.resolve_profile(profile)
        if "model" in overrides:
            model = overrides.pop("model")
            if model is not None:
                if self.model_setting is None:
                    raise SettingsError(f"{self.id} has no model to choose (got {model!r})")
                overrides[self.model_setting] = model
        return self.profiles[name].replace(**overrides)

    def resolve_profile(self, profile: str | None = None) -> str:
        name = profile or os.environ.get("ADVLAB_PROFILE") or "smoke"
        if name not in PROFILES:
            raise SettingsError(f"unknown profile {name!r}; choose one of {PROFILES}")
        if name not in self.profiles:
            raise SettingsError(f"{self.id} has no profile {name!r}; choose one of "
                                f"{sorted(self.profiles)}")
        return name

    def __call__(self, profile: str | None = None, *, device=None, backend: str | None = None,
                 use_cache: bool = True, progress: bool | None = None,
                 settings: Settings | None = None, **overrides) -> ChapterResults:
        """Run the chapter: validate the settings, make the run context, run, return results.

        ``backend``: the CPU inference backend for this run (see :mod:`advlab.inference`).
        ``settings``: run these instead of a profile's (``profile`` then only names them).
        """
        s = settings if settings is not None else self.settings(profile, **overrides)
        profile = self.resolve_profile(profile)
        choice = resolve_backend(backend)
        old = os.environ.get(BACKEND_ENV)
        os.environ[BACKEND_ENV] = choice
        try:
            ctx = RunContext.create(self.id, profile, device, use_cache, progress)
            seed_everything(s.seed)
            return self.run(ctx, s)
        finally:
            if old is None:
                os.environ.pop(BACKEND_ENV, None)
            else:
                os.environ[BACKEND_ENV] = old

    def table(self, results: ChapterResults, name: str):
        """One readers' table by name (an :class:`advlab.report.Table`)."""
        if name not in self.tables:
            raise KeyError(f"{self.id} has no table {name!r}; it has {sorted(self.tables)}")
        return self.tables[name](results)

    def figure(self, results: ChapterResults, stem: str):
        """One figure by file stem."""
        if stem not in self.figures:
            raise KeyError(f"{self.id} has no figure {stem!r}; it has {sorted(self.figures)}")
        return self.figures[stem](results)

    def provenance(self, results: ChapterResults):
        """The folded box saying where and how long the chapter's stored results took to
        compute (its full run from an empty cache, :func:`advlab.report.full_run_record`) and
        how this run got them; a notebook shows it once, at the chapter's end."""
        from . import __version__
        from .report import full_run_record, provenance
        return provenance(results.info, full_run_record(self.id), __version__)

    def save(self, results: ChapterResults, out: Path, dpi: int = 120) -> list[Path]:
        """The results' data tables (CSV) and record (JSON), the readers' tables (Markdown)
        and every figure (PNG), in ``out``."""
        import matplotlib.pyplot as plt
        out = Path(out)
        written = results.save(out)
        for name, make in self.tables.items():
            path = out / f"{name}.md"
            with atomic_path(path) as tmp:
                Path(tmp).write_text(make(results)._repr_markdown_())
            written.append(path)
        for stem, make in self.figures.items():
            fig = make(results)
            path = out / f"{stem}.png"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, dpi=dpi, format="png")
            plt.close(fig)
            written.append(path)
        return written
