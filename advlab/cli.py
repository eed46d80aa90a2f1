"""Command line: ``advlab run <chapter> --profile smoke|full`` runs a chapter headless;
``advlab train-denoiser <name>`` trains one of Chapter 4's denoisers; ``advlab train-surrogate``
trains the VGG surrogate (Chapters 4 and 5); ``advlab train-prm`` trains the PRMs Chapter 5
ships; ``advlab certify`` runs CERTIFY alone (sharded under ``torchrun``).

It calls the same experiment functions as the chapter's notebook and writes the tables (CSV),
the settings and run-info (JSON) and the figures (PNG) to ``--out``.  Errors the user can fix
(missing data, weights that cannot be downloaded, bad settings, an unwritable folder, a full
disk) print ``advlab: error: <message>`` and exit with status 2; ``--debug`` shows the traceback
instead.  Before any work every command checks the device, the inference backend and that the
cache (and the command's output) can be written to with room to spare.  Ctrl-C prints one line
and exits with status 130: run the same command again and it resumes from the cache.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .cache import atomic_path
from .config import PROFILES
from .experiments import chapter_ids
from .inference import BACKENDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="advlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one chapter's experiment")
    run.add_argument("chapter", choices=chapter_ids())
    run.add_argument("--profile", choices=PROFILES, default=None,
                     help="default: $ADVLAB_PROFILE, else smoke (paper: chapters that define it)")
    run.add_argument("--model", default=None,
                     help="the chapter's model (default: its own); ImageNet chapters: "
                          "efficientnet_lite0 (offline), resnet50, inception_v3")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if present)")
    run.add_argument("--backend", choices=BACKENDS, default=None,
                     help="inference backend on the CPU (default: $ADVLAB_BACKEND, else auto: "
                          "ONNX Runtime); CUDA always runs torch")
    run.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                     help="override a setting of the profile, e.g. --set n_images=50 "
                          "--set 'epsilons=[0.01, 0.03]' (unknown keys are an error)")
    run.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    run.add_argument("--timings", action="store_true",
                     help="print where the run's time went, stage by stage (always in the JSON)")
    run.add_argument("--no-cache", action="store_true",
                     help="recompute every result piece and store none; trained models, ONNX "
                          "exports, downloads and decoded images are still read from (and "
                          "written to) the cache, which must be writable")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--debug", action="store_true", help="show the traceback of an error")
    prm = sub.add_parser("train-prm", help="train the PRMs Chapter 5 ships (one per lambda)")
    where = prm.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=Path("prm-weights"),
                       help="folder for the weights, prm_weights.json and PRM_PROVENANCE.md "
                            "(default: prm-weights/; a manifest already there is merged into)")
    where.add_argument("--ship", action="store_true",
                       help="write into the package's own advlab/resources (the shipped PRMs), "
                            "merging into its manifest")
    prm.add_argument("--no-eval", action="store_true",
                     help="skip the lambda table on the chapter's 500 test images")
    prm.add_argument("--lambdas", type=float, nargs="+", default=None,
                       help="default: advlab.training.prm.PRM_LAMBDAS")
    prm.add_argument("--device", default=None, help="cpu, cuda ... (default: CUDA if present)")
    prm.add_argument("--quiet", action="store_true", help="no progress bars")
    prm.add_argument("--debug", action="store_true", help="show the traceback of an error")
    from .training.denoisers import RECIPES
    train = sub.add_parser("train-denoiser", help="train a Chapter 4 denoiser (advlab.training.denoisers)")
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
    from .training.surrogate import RECIPES as SURROGATES
    sur = sub.add_parser("train-surrogate",
                         help="train the CIFAR-10 surrogate classifier (advlab.training.surrogate)")
    sur.add_argument("name", nargs="?", default="vgg-cifar10", choices=sorted(SURROGATES))
    sur.add_argument("--device", default=None, help="cpu, cuda ... (default: CUDA if present)")
    sur.add_argument("--retrain", action="store_true", help="ignore the cached weights")
    sur.add_argument("--commit", action="store_true",
                     help="write the weights into the package's advlab/resources/surrogates "
                          "(default: train or read the cache and report the test accuracy only)")
    sur.add_argument("--quiet", action="store_true", help="no progress bars")
    sur.add_argument("--debug", action="store_true", help="show the traceback of an error")
    cert = sub.add_parser("certify", help="Cohen et al.'s CERTIFY on test images; shards across "
                                          "processes under torchrun")
    cert.add_argument("--dataset", choices=("cifar10", "imagenet"), default="cifar10")
    cert.add_argument("--model", default=None,
                      help="classifier (default: resnet56 / efficientnet_lite0)")
    cert.add_argument("--denoiser", default=None,
                      help="a committed denoiser trained for --sigma, e.g. cifar10-stab-wb-0.25")
    cert.add_argument("--sigma", type=float, default=0.25)
    # Cohen et al.'s names; lower-case --n would clash with torchrun's own options
    cert.add_argument("--N0", type=int, default=100, help="selection samples (<= N)")
    cert.add_argument("--N", type=int, default=10_000, help="estimation samples")
    cert.add_argument("--alpha", type=float, default=0.001)
    cert.add_argument("--images", type=int, default=500,
                      help="how many test images: CIFAR-10 10, 20 ... 10000 (the first images/10 "
                           "of every class, ids class*100000 + rank, as Chapter 4); ImageNet "
                           "1 ... 487 (odd-position colour sample images)")
    cert.add_argument("--batch-size", type=int, default=400, help="noise samples per forward pass")
    cert.add_argument("--seed", type=int, default=0)
    cert.add_argument("--device", default=None)
    cert.add_argument("--out", type=Path, required=True, help="CSV file (written by rank 0)")
    cert.add_argument("--no-cache", action="store_true",
                      help="recompute every image (default: one cached piece per image, shared "
                           "with `advlab run ch04`)")
    cert.add_argument("--quiet", action="store_true", help="no progress bars")
    cert.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def user_errors() -> tuple[type[Exception], ...]:
    """Errors a user causes and can fix: reported in one line, without a traceback."""
    from .config import DeviceUnavailableError
    from .models.imagenet import WeightsUnavailableError
    # OSError covers data.DataUnavailableError; ValueError bad settings and data.ChecksumError
    return (OSError, ValueError, WeightsUnavailableError, DeviceUnavailableError)


#: What Ctrl-C prints (exit status 130): every command caches what it finished.
INTERRUPTED = "advlab: interrupted; run the same command again to resume from the cache"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"run": run_chapter, "train-denoiser": train_denoiser, "train-prm": train_prm,
                    "train-surrogate": train_surrogate, "certify": certify}
        preflight(args)
        return commands[args.command](args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except user_errors() as err:
        if args.debug:
            raise
        print(f"advlab: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _one_line(err: Exception) -> str:
    """The message of a user error; a full disk anywhere names the file it was writing."""
    from .cache import DiskFullError, is_disk_full
    if is_disk_full(err) and not isinstance(err, DiskFullError):
        return str(DiskFullError(getattr(err, "filename", None) or "a file"))
    return str(err)


# --------------------------------------------------------------------------- before any work
#: The least free space the cache (and an output folder) must have before a command starts.
MIN_FREE_BYTES = 64 * 2**20


def preflight(args: argparse.Namespace) -> None:
    """What every command checks before it computes anything: the device (``--device`` or
    ``$ADVLAB_DEVICE``), the inference backend (``--backend`` or ``$ADVLAB_BACKEND``), that the
    cache folder can be written to and has room, and that ``certify``'s output file can be
    written.  Each problem is one ``OSError``/``ValueError``/``DeviceUnavailableError`` line."""
    from .config import cache_location, get_device
    from .inference import resolve_backend
    get_device(args.device)
    resolve_backend(getattr(args, "backend", None))
    check_writable(cache_location(), "the cache (ADVLAB_CACHE)")
    if args.command == "certify":
        check_file_writable(args.out)


def check_writable(folder: Path, what: str = "results") -> list[Path]:
    """Create ``folder``, write a probe file in it and check that its disk has at least
    :data:`MIN_FREE_BYTES` free, or raise OSError naming the folder (a
    :class:`~advlab.cache.DiskFullError` for a full disk).  Returns the folders it created,
    deepest first (the caller removes them if the command fails)."""
    import shutil
    import tempfile

    from .cache import DiskFullError, is_disk_full
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".advlab-probe-"):
            pass
        free = shutil.disk_usage(folder).free
    except OSError as err:
        if is_disk_full(err):
            raise DiskFullError(folder) from None
        raise OSError(f"cannot write {what} to {folder}: {err.strerror or err}") from None
    if free < MIN_FREE_BYTES:
        raise DiskFullError(f"{folder} ({free / 2**20:.1f} MiB free; {what} needs at least "
                            f"{MIN_FREE_BYTES // 2**20} MiB)")
    return made


def check_file_writable(path: Path, what: str = "results") -> None:
    """``path`` can be written as a file: not a folder, in a folder :func:`check_writable`
    accepts.  Folders it had to create are removed again, so a check leaves nothing behind."""
    path = Path(path)
    if path.is_dir():
        raise OSError(f"cannot write {what} to {path}: it is a folder; name a file")
    made = check_writable(path.parent, what)
    for folder in made:
        if folder.exists() and not any(folder.iterdir()):
            folder.rmdir()


def parse_overrides(items: list[str]) -> dict:
    """``KEY=JSON`` items as a dict (a value that is not JSON is kept as a string; lists become
    tuples)."""
    import json
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=JSON, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out[key] = tuple(parsed) if isinstance(parsed, list) else parsed
    return out


def run_chapter(args: argparse.Namespace) -> int:
    """``advlab run``: the chapter's experiment; its tables, record and figures written to
    ``args.out/<chapter>``.  Settings and the output folder are checked before any work."""
    from .experiments import chapter as find_chapter
    chapter = find_chapter(args.chapter)
    overrides = parse_overrides(args.set)
    if args.model is not None:
        overrides["model"] = args.model
    chapter.settings(args.profile, **overrides)          # a bad setting fails here, not later
    out = args.out / args.chapter
    made = check_writable(out)
    try:
        results = chapter(args.profile, device=args.device, backend=args.backend,
                          use_cache=not args.no_cache, progress=not args.quiet, **overrides)
    except BaseException:
        for folder in made:                                  # leave no empty folders behind
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    import matplotlib
    matplotlib.use("Agg")
    written = chapter.save(results, out)
    print(results.info.line())
    if args.timings:
        print(results.info.timings())
    for path in written:
        print(f"wrote {path}")
    return 0


def train_prm(args: argparse.Namespace) -> int:
    """``advlab train-prm``: Chapter 5's PRMs, written with their manifest and provenance into
    ``--out`` (default ``prm-weights/``), or into the package's resources with ``--ship``; then
    (unless ``--no-eval``) the lambda table of the float16 weights on the chapter's 500 test
    images, recorded in the manifest and the provenance."""
    import shlex

    from .training import prm
    lambdas = prm.PRM_LAMBDAS if args.lambdas is None else tuple(args.lambdas)
    out = prm.resources_folder() if args.ship else args.out
    argv = ["advlab", "train-prm"] + (["--ship"] if args.ship else ["--out", str(args.out)])
    argv += ["--lambdas", *map(str, args.lambdas)] if args.lambdas is not None else []
    argv += ["--device", args.device] if args.device else []
    evaluate = None if args.no_eval else (lambda prms: _prm_table(prms, args.quiet))
    for path in prm.train_shipped_prms(out, lambdas, args.device, progress=not args.quiet,
                                       command=shlex.join(argv), evaluate=evaluate,
                                       eval_set=PRM_EVAL_SET):
        print(f"wrote {path}")
    return 0


PRM_EVAL_SET = ("the first 50 test images of every CIFAR-10 class, n = 500, as in Chapter 5; "
                "iou: top-25% mean |input gradient| pixels against the stride-2 lattice; acc: "
                "the PRM at its lambda; acc_<mode>: the classifier on (1 - lambda) x + lambda "
                "lattice_upsample(x, mode) (_resized: the lattice resized as a half-size "
                "image, aligned=False); psnr: mean dB of AE(x) against x")


def _prm_table(prms: dict, quiet: bool) -> dict:
    """The lambda table (:func:`advlab.pixel_maps.prm_lambda_table`) of ``prms`` on the chapter's
    500 test images, as ``{lambda: row}``."""
    from .data import first_per_class
    from .pixel_maps import prm_lambda_table
    from .training import prm
    test, _ = first_per_class(prm.load_cifar10("test"), 50)
    table = prm_lambda_table(prms, test.x, test.y, resized=True, progress=not quiet)
    print(table.round(3).to_string(index=False))
    rows = [{k: v.item() if hasattr(v, "item") else v for k, v in row.items()}
            for row in table.to_dict("records")]
    return {row.pop("lambda"): row for row in rows}


def train_denoiser(args: argparse.Namespace) -> int:
    """``advlab train-denoiser``: train (or read from the cache) one recipe of
    ``advlab.training.denoisers.RECIPES``; without overrides, commit it with its provenance."""
    import shlex
    import time

    from .training import denoisers as dncnn
    overrides = parse_overrides(args.set)
    dncnn.recipe(args.name, **overrides)                # a bad recipe fails here, not later
    if not (overrides or args.no_commit):               # where the weights go, checked first
        check_writable(dncnn.resource_dir(), "the committed denoiser")
    started = time.perf_counter()
    model = dncnn.train_denoiser(args.name, args.device, progress=not args.quiet,
                                 retrain=args.retrain, **overrides)
    seconds = time.perf_counter() - started
    print(f"denoiser {args.name}: ready in {seconds:.0f} s")
    report = dncnn.denoiser_report(args.name, model, progress=not args.quiet, device=args.device)
    for k, v in report.items():
        print(f"{k}: {v}")
    if overrides or args.no_commit:
        return 0
    command = "advlab train-denoiser " + shlex.quote(args.name) + (
        f" --device {shlex.quote(args.device)}" if args.device else "")
    path = dncnn.commit_denoiser(args.name, model, command, {
        **report, "training time": f"{seconds:.0f} s (this run; cached parts excluded) on "
                                   f"{_device_line(args.device)}"})
    print(f"wrote {path}")
    return 0


def train_surrogate(args: argparse.Namespace) -> int:
    """``advlab train-surrogate``: train (or read from the cache) the surrogate, report its
    accuracy on the 10,000 CIFAR-10 test images, and with ``--commit`` only write it into the
    package's resources with its provenance."""
    import time

    from .models.committed import as_committed
    from .training import surrogate
    started = time.perf_counter()
    model = surrogate.train_surrogate(args.name, args.device, progress=not args.quiet,
                                      retrain=args.retrain)
    seconds = time.perf_counter() - started
    accuracy = surrogate.accuracy_on_test_set(as_committed(model.cpu()), "cpu")
    print(f"surrogate {args.name}: ready in {seconds:.0f} s; accuracy on the 10,000 CIFAR-10 "
          f"test images (float16 weights): {100 * accuracy:.2f}%")
    if not args.commit:
        print("not committed (pass --commit to write it into the package's resources)")
        return 0
    import shlex
    command = surrogate.COMMAND.format(name=shlex.quote(args.name)) + (
        f" --device {shlex.quote(args.device)}" if args.device else "")
    path = surrogate.commit_surrogate(args.name, model, command, {
        "test accuracy": f"{100 * accuracy:.2f}% on the 10,000 CIFAR-10 test images (float16 "
                         "weights as committed)",
        "training time": f"{seconds:.0f} s (this run; cached parts excluded) on "
                         f"{_device_line(args.device)}"})
    print(f"wrote {path}")
    return 0


def certify(args: argparse.Namespace) -> int:
    """``advlab certify``: one (classifier, denoiser, sigma) over the chosen test images, one
    CSV row per image (Cohen et al.'s log columns).  Every argument is checked first
    (``ch04.CertifySettings``); each image's certificate is a cached piece (the chapter's).
    Under ``torchrun --nproc_per_node K`` the images are shared between the K processes (gloo
    on the CPU, NCCL on GPUs) and merged by image id: the same file as one process writes."""
    from .chapter import RunContext
    from .config import get_device
    from .defences.smoothing import init_distributed
    from .experiments import ch04
    settings = ch04.CertifySettings(dataset=args.dataset, model=args.model,
                                    denoiser=args.denoiser, sigma=args.sigma, n0=args.N0,
                                    n=args.N, alpha=args.alpha, images=args.images,
                                    batch_size=args.batch_size, seed=args.seed)
    device = get_device(args.device)      # checked (with the cache and --out) by preflight
    rank, world = init_distributed()
    if device.type == "cuda" and world > 1:
        device = torch_device_of_rank()
    ctx = RunContext.create("ch04", "certify", device, use_cache=not args.no_cache,
                            progress=not args.quiet and rank == 0)
    frame = ch04.certify_images(ctx, settings, rank, world)
    if rank == 0:
        with atomic_path(args.out) as tmp:
            frame.to_csv(tmp, index=False)
        print(f"certified {len(frame)} images on {world} process(es); wrote {args.out}")
    return 0


def torch_device_of_rank():
    import torch
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def _device_line(device) -> str:
    from .config import device_name, get_device
    return device_name(get_device(device))


if __name__ == "__main__":
    sys.exit(main())
