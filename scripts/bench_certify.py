"""Throughput of certification on one machine: noise samples/s of the batched ``advlab`` path
(``Smooth.certify`` on the fast inference path: ONNX Runtime on the CPU) against the reference
code's per-image loop (Cohen et al.'s ``_sample_noise``: eager torch, one image at a time,
``--batch-size`` copies per forward pass), side by side with the ratio.

    python scripts/bench_certify.py [--n 1000] [--images 2] [--repeats 3] [--threads 2]
                                    [--configs "no denoiser,white-box"] [--out table.csv]

Both certify the same CIFAR-10 test images with N0 = 100 and ``--n`` samples at sigma 0.25,
with ResNet-56 and, for ``white-box``, the committed denoiser in front of it.  After a warm-up
(export, sessions), the two are timed in turn ``--repeats`` times and the fastest of each is
kept (on a shared machine the fastest call is the one least slowed by other jobs).
``--threads``: torch's threads for both (default torch's own; ONNX Runtime follows it).
"""
from __future__ import annotations

import argparse
import os
import time

import pandas as pd
import torch

from advlab.config import device_name, get_device
from advlab.defences.smoothing import Smooth, reference_sample_noise
from advlab.experiments import ch04
from advlab.inference import backend_name
from advlab.zoo import load_model


def measure(clf, x, ids, config: str, n: int, batch_size: int, repeats: int, device,
            sigma: float = 0.25) -> dict:
    name = ch04.denoiser_name(config, sigma)
    den = None if name is None else load_model(name, device, progress=False)
    smooth = Smooth(clf, 10, sigma, den, forward_batch=batch_size, seed=0)
    smooth.sample_counts(x[:1], 200, 1, ids[:1])                       # warm-up: export, sessions
    reference_sample_noise(smooth.base, x[0].to(device), 100, sigma, 10, batch_size)

    def ours() -> None:
        smooth.certify(x, 100, n, 0.001, ids)

    def reference() -> None:
        for img in x:   # Cohen et al.'s certify: n0 then n samples, one image at a time
            reference_sample_noise(smooth.base, img.to(device), 100, sigma, 10, batch_size)
            reference_sample_noise(smooth.base, img.to(device), n, sigma, 10, batch_size)

    best = {"ours": float("inf"), "reference": float("inf")}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("reference", reference)):
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    total = len(x) * (n + 100)
    return dict(config=config, n=n, images=len(x), batch_size=batch_size,
                backend=backend_name(device, model=smooth.base),
                advlab_ms=1000 * best["ours"], reference_ms=1000 * best["reference"],
                advlab_samples_per_s=total / best["ours"],
                reference_samples_per_s=total / best["reference"],
                ratio=best["reference"] / best["ours"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--configs", default="no denoiser,white-box")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="CSV file for the table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    clf = load_model(ch04.TARGET, device, progress=False)
    images, ids = ch04.cifar_images(100)
    x, ids = images.x[:args.images], ids[:args.images]
    load0 = os.getloadavg()[0]
    table = pd.DataFrame([measure(clf, x, ids, c, args.n, args.batch_size, args.repeats, device)
                          for c in args.configs.split(",")])
    print(f"device: {device_name(device)}, {torch.get_num_threads()} thread(s), torch "
          f"{torch.__version__}, load average {load0:.1f} before / {os.getloadavg()[0]:.1f} after")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
