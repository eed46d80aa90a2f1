"""Every kernel against the reference it is compared with, in one run: the ratio table of the
timings page (book/timings.md, between ``<!-- kernel-ratios:start -->`` and
``<!-- kernel-ratios:end -->``) and a CSV next to it (book/kernel_ratios.csv).

    PYTHONPATH=/tmp/art:/tmp/ta python scripts/bench_kernels.py [--quick] [--page book/timings.md]
                                                                [--csv book/kernel_ratios.csv]

Runs the three benchmarks, each of which also runs on its own and prints its rows side by side:

* ``bench_transforms.py``: Chapter 3's transforms on ``--images`` sample images of 224 pixels
  (one batched call) against the per-image reference loop (scipy's median filter, scikit-image's
  ``denoise_tv_chambolle``, ART's ``TotalVarMin``, PIL's JPEG, numpy, scikit-learn's K-means),
  one thread on both sides, the fastest of at least ``--repeats`` calls;
* ``bench_jsma.py``: JSMA on the book's MNIST LeNet against torchattacks' JSMA, same digits and
  targets, one thread on both sides, fastest of ``--repeats`` runs;
* ``bench_certify.py``: Cohen et al.'s CERTIFY (N0 = 100, N = ``--certify-n``) of CIFAR-10 test
  images with ResNet-56 against the reference code's per-image sampling loop (eager torch), on
  torch's threads (both), fastest of ``--repeats`` runs.

ART (``TotalVarMin``) and torchattacks are not dependencies of advlab; install them for the
benchmark only (``pip install --no-deps --target /tmp/art adversarial-robustness-toolbox``,
``pip install --no-deps --target /tmp/ta torchattacks``); a row whose reference is missing is
left out, and said.  The "target" column is the speed-up issue 17 asks for.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

START, END = "<!-- kernel-ratios:start -->", "<!-- kernel-ratios:end -->"
# The speed-up over each reference the issue asks for (at the same accuracy).
TARGETS = {"bit depth": 1.0, "median": 1.0, "TVM": 1.0, "TVM masked": 5.0, "K-means": 1.0,
           "JPEG": 1.0, "JSMA": 50.0, "certification": 3.0}
THREADS = torch.get_num_threads()   # torch's threads at the start (bench_jsma sets one)
COLUMNS = ["kernel", "reference", "ours_ms", "reference_ms", "speedup", "target", "inputs",
           "agreement"]


def transform_rows(images: int, repeats: int, budget: float) -> list[dict]:
    import bench_transforms as bt
    x = bt.load(images)
    table = bt.measure(x, threads=1, repeats=repeats, budget_s=budget)
    rows = []
    for r in table.itertuples():
        if pd.isna(r.reference_img_per_s):
            print(f"left out: {r.transform} ({r.reference})")
            continue
        family = "TVM masked" if r.family == "TVM" and not r.transform.endswith("100%") else r.family
        rows.append(dict(kernel=r.transform, reference=r.reference,
                         ours_ms=1000 * len(x) / r.advlab_img_per_s,
                         reference_ms=1000 * len(x) / r.reference_img_per_s,
                         target=TARGETS[family],
                         inputs=f"{len(x)} images 3x224x224, 1 thread", agreement=r.agreement))
    return rows


def jsma_rows(n: int, gamma: float, repeats: int) -> list[dict]:
    try:
        import bench_jsma
    except SystemExit as err:    # torchattacks not installed
        print(f"left out: JSMA ({err})")
        return []
    with tempfile.TemporaryDirectory() as tmp:
        res = bench_jsma.main(["--n", str(n), "--gamma", str(gamma), "--threads", "1",
                               "--repeats", str(repeats), "--out", f"{tmp}/jsma.json"])
    torch.set_num_threads(THREADS)
    ours, theirs = res["advlab"], res["torchattacks_jsma"]
    return [dict(kernel=f"JSMA, gamma {gamma}, theta {res['theta']:g}",
                 reference=f"torchattacks {res['torchattacks']} JSMA (one image at a time)",
                 ours_ms=1000 * ours["seconds"], reference_ms=1000 * theirs["seconds"],
                 target=TARGETS["JSMA"],
                 inputs=f"{res['n_images']} MNIST digits, LeNet, 1 thread",
                 agreement=f"success {ours['success_rate']:.0%} vs {theirs['success_rate']:.0%}; "
                           f"mean L0 {ours['mean_changed_pixels']:.0f} vs "
                           f"{theirs['mean_changed_pixels']:.0f} (cleverhans's rules vs "
                           "torchattacks' own)")]


def certify_rows(n: int, images: int, repeats: int, configs: list[str]) -> list[dict]:
    import bench_certify

    from advlab.config import get_device
    from advlab.experiments import ch04
    device = get_device("cpu")
    clf = ch04.load_target("cifar10", "resnet56", device)
    data, ids = ch04.cifar_images(100)
    x, ids = data.x[:images], ids[:images]
    rows = []
    for config in configs:
        r = bench_certify.measure(clf, x, ids, config, n, 1000, repeats, device)
        rows.append(dict(kernel=f"certification, {config}", reference="the reference code's "
                         "per-image loop (Cohen et al.'s `_sample_noise`, eager torch)",
                         ours_ms=r["advlab_ms"], reference_ms=r["reference_ms"],
                         target=TARGETS["certification"],
                         inputs=f"{images} CIFAR-10 image{'s' if images > 1 else ''} x (100 + {n}) "
                                f"samples, ResNet-56{model_note(config)}, sigma 0.25, "
                                f"{torch.get_num_threads()} threads",
                         agreement=f"same protocol; ours on {r['backend']} (counts equal to "
                                   "eager torch's: tests)"))
    return rows


def rows_names(rows: list[dict]) -> list[str]:
    return [f"'{r['kernel']}'" for r in rows]


def model_note(config: str) -> str:
    return "" if config == "no denoiser" else f" behind Chapter 4's {config} DnCNN denoiser"


def markdown(table: pd.DataFrame, note: str) -> str:
    lines = [note, "",
             "| kernel | reference | ours (ms) | reference (ms) | speed-up | target | inputs | agreement |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in table.itertuples():
        mark = "" if r.speedup >= r.target else " (below)"
        lines.append(f"| {r.kernel} | {r.reference} | {r.ours_ms:,.1f} | {r.reference_ms:,.1f} | "
                     f"**{r.speedup:.2f}x**{mark} | {r.target:g}x | {r.inputs} | {r.agreement} |")
    return "\n".join(lines)


def replace_block(page: str, block: str) -> str:
    """``page`` with the ratio table's block replaced by ``block``."""
    from chapter_timings import replace_block as replace
    return replace(page, block, START, END)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="transforms: sample images")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side at least")
    parser.add_argument("--budget", type=float, default=1.0, help="transforms: timed seconds at least")
    parser.add_argument("--jsma-n", type=int, default=32)
    parser.add_argument("--jsma-gamma", type=float, default=0.3)
    parser.add_argument("--jsma-repeats", type=int, default=2)
    parser.add_argument("--certify-n", type=int, default=1000)
    parser.add_argument("--certify-images", type=int, default=2)
    parser.add_argument("--certify-configs", default="no denoiser",
                        help="comma-separated: no denoiser, white-box (ch04's denoiser in front)")
    parser.add_argument("--only", default="transforms,jsma,certify")
    parser.add_argument("--quick", action="store_true", help="tiny inputs: checks the script runs")
    parser.add_argument("--page", type=Path, default=None, help="timings page to write the table into")
    parser.add_argument("--csv", type=Path, default=None, help="CSV file for the table")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of --csv (and the page's note) that this run does not "
                             "measure again: adds rows from a second, smaller run")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeats, args.budget = 2, 1, 0.0
        args.jsma_n, args.jsma_repeats, args.certify_n, args.certify_images = 2, 1, 100, 1
    only = args.only.split(",")
    load0 = os.getloadavg()[0]
    rows = []
    if "transforms" in only:
        rows += transform_rows(args.images, args.repeats, args.budget)
    if "jsma" in only:
        rows += jsma_rows(args.jsma_n, args.jsma_gamma, args.jsma_repeats)
    if "certify" in only:
        rows += certify_rows(args.certify_n, args.certify_images, args.repeats,
                             args.certify_configs.split(","))
    table = pd.DataFrame(rows)
    table["speedup"] = table.reference_ms / table.ours_ms
    table = table[COLUMNS]
    import bench_transforms
    note = (f"Measured by `scripts/bench_kernels.py` on the shared 2-core CPU "
            f"({bench_transforms.cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}); "
            f"fastest of {args.repeats} or more calls of each side ({args.jsma_repeats} for JSMA), "
            f"load average {load0:.1f} at the start and {os.getloadavg()[0]:.1f} at the end "
            "(other helpers' light jobs ran beside it; heavy jobs waited for the shared lock).")
    if args.merge and args.csv and args.csv.exists():
        old = pd.read_csv(args.csv)
        table = pd.concat([old[~old.kernel.isin(table.kernel)], table], ignore_index=True)
        if args.page:
            block = args.page.read_text().split(START, 1)[1].split(END, 1)[0].strip()
            note = (f"{block.splitlines()[0]} {'Rows' if len(rows) > 1 else 'Row'} "
                    f"{', '.join(rows_names(rows))}: a second "
                    f"run, fastest of {args.repeats} calls of each side, load average "
                    f"{load0:.1f} at the start and {os.getloadavg()[0]:.1f} at the end.")
    text = markdown(table, note)
    print(f"\n{text}")
    if args.csv:
        table.to_csv(args.csv, index=False, float_format="%.6g")
    if args.page:
        args.page.write_text(replace_block(args.page.read_text(), text))
    return table


if __name__ == "__main__":
    main()
