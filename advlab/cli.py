"""Command line: ``advlab run <chapter> --profile smoke|full`` runs a chapter headless;
``advlab train-prm`` trains the PRMs Chapter 5 ships.

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

from .inference import BACKEND_ENV, BACKENDS

CHAPTERS = {"ch00": "advlab.experiments.ch00", "ch01": "advlab.experiments.ch01",
            "ch02": "advlab.experiments.ch02", "ch03": "advlab.experiments.ch03",
            "ch05": "advlab.experiments.ch05"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one chapter's experiment")
    run.add_argument("chapter", choices=sorted(CHAPTERS))
    run.add_argument("--profile", choices=("smoke", "full", "paper"), default=None,
                     help="default: $ADVLAB_PROFILE, else smoke (paper: chapters that define it)")
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
    train = sub.add_parser("train-prm", help="train the PRMs Chapter 5 ships (one per lambda)")
    train.add_argument("--out", type=Path, default=Path("advlab/resources"),
                       help="folder for the weights, prm_weights.json and PRM_PROVENANCE.md")
    train.add_argument("--lambdas", type=float, nargs="+", default=None,
                       help="default: advlab.experiments.ch05.PRM_LAMBDAS")
    train.add_argument("--device", default=None, help="cpu, cuda ... (default: CUDA if present)")
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
        return train_prm(args) if args.command == "train-prm" else run_chapter(args)
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


def train_prm(args: argparse.Namespace) -> int:
    """``advlab train-prm``: Chapter 5's PRMs, written with their manifest and provenance."""
    from .experiments import ch05
    lambdas = ch05.PRM_LAMBDAS if args.lambdas is None else tuple(args.lambdas)
    for path in ch05.train_shipped_prms(args.out, lambdas, args.device, progress=not args.quiet):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
