"""Throughput of certification: noise samples/s and seconds per certified image, the batched
``advlab`` path (``Smooth.certify`` on the fast inference path) against the reference code's
per-image loop (Cohen et al.'s ``_sample_noise``: eager torch, one image at a time).

    python scripts/bench_certify.py [--n 1000] [--batch-size 400] [--configs "no denoiser,white-box"]

Both certify the same two CIFAR-10 test images with N0 = 100 and ``--n`` samples at sigma 0.25,
with ResNet-56 and, for ``white-box``, the committed denoiser in front of it
(``advlab.experiments.ch04.throughput``).  Threads: torch's (2 on this project's machines).
"""
from __future__ import annotations

import argparse
import os

import pandas as pd
import torch

from advlab.config import device_name, get_device
from advlab.experiments import ch04


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--configs", default="no denoiser,white-box")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="CSV file for the table")
    args = parser.parse_args()
    device = get_device(args.device)
    cfg = ch04.settings("full", throughput_n=args.n, batch_size=args.batch_size)
    clf = ch04.load_target("cifar10", "resnet56", device)
    images, ids = ch04.cifar_images(100)
    tables = [ch04.throughput(clf, images, ids, cfg, "resnet56", device, config=c)
              for c in args.configs.split(",")]
    table = pd.concat(tables, ignore_index=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device: {device_name(device)}, torch {torch.__version__}, load average {load:.1f}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
