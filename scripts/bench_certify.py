"""Throughput of certification: noise samples/s and seconds per certified image, the batched
``advlab`` path (``Smooth.certify`` on the fast inference path) against the reference code's
per-image loop (Cohen et al.'s ``_sample_noise``: eager torch, one image at a time).

    python scripts/bench_certify.py [--n 1000] [--batch-size 1000] [--configs "no denoiser,white-box"]

Both certify the same two CIFAR-10 test images (the first of classes 0 and 1) with N0 = 100 and
``--n`` samples at sigma 0.25, with ResNet-56 and, for a denoised configuration, the committed
denoiser in front of it (``advlab.experiments.ch04.throughput``).  Threads: torch's (2 on this
project's machines).
"""
from __future__ import annotations

import argparse

import pandas as pd
import torch

from advlab.chapter import RunContext
from advlab.config import device_name
from advlab.experiments import ch04


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--configs", default="no denoiser,white-box")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    s = ch04.CHAPTER.settings("full", throughput_n=args.n, batch_size=args.batch_size, n0=100)
    ctx = RunContext.create("ch04", "full", args.device, use_cache=False, progress=False)
    models = ch04.Models(ctx)
    images, ids = ch04.cifar_images(1)
    tables = [ch04.throughput(s, models, images, ids, ctx.device, config=c)
              for c in args.configs.split(",")]
    table = pd.concat(tables, ignore_index=True)
    print(f"device: {device_name(ctx.device)}, torch {torch.__version__}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
