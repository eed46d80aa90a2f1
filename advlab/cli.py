"""Command line: ``advlab run <chapter> --profile smoke|full`` runs a chapter headless;
``advlab train-denoiser <name>`` trains one of Chapter 4's denoisers.

It calls the same experiment functions as the chapter's notebook and writes the tables (CSV),
the settings and run-info (JSON) and the figures (PNG) to ``--out``.  Errors the user can fix
(missing data, weights that cannot be downloaded, bad settings, an unwritable folder) print
``advlab: error: <message>`` and exit with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .config import PROFILES
from .inference import BACKEND_ENV, BACKENDS

CHAPTERS = {"ch01": "advlab.experiments.ch01", "ch02": "advlab.experiments.ch02",
            "ch04": "advlab.experiments.ch04"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one chapter's experiment")
    run.add_argument("chapter", choices=sorted(CHAPTERS))
    run.add_argument("--profile", choices=PROFILES, default=None,
                     help="default: $ADVLAB_PROFILE, else smoke (paper: ch04 only, for a GPU)")
    run.add_argument("--model", default=None,
                     help="the chapter's model (default: its own); ImageNet chapters: "
                          "efficientnet_lite0 (offline), resnet50, inception_v3")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if present)")
    run.add_argument("--backend", choices=BACKENDS, default=None,
                     help="inference backend on the CPU (default: $ADVLAB_BACKEND, else auto: "
                          "ONNX Runtime); CUDA always runs torch")
    run.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    run.add_argument("--no-cache", action="store_true", help="recompute everything")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--debug", action="store_true", help="show the traceback of an error")
    from .models.dncnn import RECIPES
    train = sub.add_parser("train-denoiser", help="train a Chapter 4 denoiser (advlab.models.dncnn)")
    train.add_argument("name", choices=sorted(RECIPES))
    train.add_argument("--device", default=None, help="cpu, cuda ... (default: CUDA if present)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                       help="override a recipe entry, e.g. --set epochs=90 --set sigmas=[0.25] "
                            "--set 'arch={\"depth\": 17, \"width\": 64}' (then not committed)")
    train.add_argument("--retrain", action="store_true", help="ignore the cached weights")
    train.add_argument("--no-commit", action="store_true",
                       help="do not write the weights into advlab/resources/denoisers")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


@contextmanager
def _env(var: str, value: str | None) -> Iterator[None]:
    """Set ``$var`` to ``value`` (unless None) for the block, then restore it."""
    old = os.environ.get(var)
    if value is not None:
        os.environ[var] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old


def user_errors() -> tuple[type[Exception], ...]:
    """Errors a user causes and can fix: reported in one line, without a traceback."""
    from .config import DeviceUnavailableError
    from .models.imagenet import WeightsUnavailableError
    # OSError covers data.DataUnavailableError; ValueError bad settings and data.ChecksumError
    return (OSError, ValueError, WeightsUnavailableError, DeviceUnavailableError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"run": run_chapter, "train-denoiser": train_denoiser}[args.command](args)
    except user_errors() as err:
        if args.debug:
            raise
        print(f"advlab: error: {err}", file=sys.stderr)
        return 2


def run_chapter(args: argparse.Namespace) -> int:
    """``advlab run``: the chapter's experiment, tables and figures written to ``args.out``."""
    module = importlib.import_module(CHAPTERS[args.chapter])
    model = {} if args.model is None else {"model_name": args.model}
    with _env(BACKEND_ENV, args.backend):
        results = module.run(profile=args.profile, device=args.device, use_cache=not args.no_cache,
                             progress=not args.quiet, **model)
    out = args.out / args.chapter
    written = results.save(out)
    import matplotlib
    matplotlib.use("Agg")
    from .experiments.common import save_figures
    written += save_figures(module.make_figures(results), out)
    print(results.info.line())
    for path in written:
        print(f"wrote {path}")
    return 0


def train_denoiser(args: argparse.Namespace) -> int:
    """``advlab train-denoiser``: train (or read from the cache) one recipe of
    ``advlab.models.dncnn.RECIPES``; without overrides, commit it with its provenance."""
    import json
    import shlex
    import time

    from .models import dncnn
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set takes KEY=JSON, got {item!r}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    started = time.perf_counter()
    model = dncnn.train_denoiser(args.name, args.device, progress=not args.quiet,
                                 retrain=args.retrain, **overrides)
    seconds = time.perf_counter() - started
    print(f"denoiser {args.name}: ready in {seconds:.0f} s")
    report = dncnn.denoiser_report(args.name, model, progress=not args.quiet)
    for k, v in report.items():
        print(f"{k}: {v}")
    if overrides or args.no_commit:
        return 0
    command = "advlab train-denoiser " + shlex.quote(args.name)
    path = dncnn.commit_denoiser(args.name, model, command, {
        **report, "training time": f"{seconds:.0f} s (this run; cached parts excluded) on "
                                   f"{_device_line(args.device)}"})
    print(f"wrote {path}")
    return 0


def _device_line(device) -> str:
    from .config import device_name, get_device
    return device_name(get_device(device))


if __name__ == "__main__":
    sys.exit(main())
