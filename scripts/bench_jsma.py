"""Benchmark advlab's batched JSMA against torchattacks' JSMA on the book's MNIST LeNet.

Same model, same images, same targets, same theta and gamma, same machine.  torchattacks is not
a dependency of advlab; install it for this script only::

    pip install --no-deps --target /tmp/ta torchattacks    # then PYTHONPATH=/tmp/ta

Usage::

    ADVLAB_DATA=/work/shared/data python scripts/bench_jsma.py --n 100 --gamma 0.3 --out bench_jsma.json

``--threads`` sets torch's threads for both (default: torch's own).  ``--repeats``: both are
timed that many times, in turn, and the fastest run of each is kept.  ``--check`` also runs
advlab's attack on its torch code path (``ADVLAB_COMPILE=0``: no native pair search), untimed,
and reports whether the adversarial examples are identical.

The images are the first ``n`` MNIST test digits that the model classifies correctly; every
target is drawn uniformly from the nine other classes (``advlab.attacks.targets.random_targets``) and handed
to torchattacks through ``set_mode_targeted_by_label`` so that both attack the same targets.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import torch

try:
    import torchattacks
except ImportError:
    sys.exit("bench_jsma.py needs torchattacks, which advlab does not depend on; install it for "
             "the benchmark only with:  pip install --no-deps --target /tmp/ta torchattacks  "
             "(and PYTHONPATH=/tmp/ta)")

from advlab.attacks.jsma import jsma_with_stats, max_iterations
from advlab.attacks.targets import random_targets
from advlab.config import get_device
from advlab.data import load_mnist
from advlab.models import predict
from advlab.training.lenet import trained_lenet

TORCHATTACKS_NOTES = [
    "iteration budget ceil(gamma*n/2) (cleverhans and advlab: floor)",
    "search domain x < 0.99 for theta > 0, x > 0.01 for theta < 0 (cleverhans and advlab: "
    "x < clip_max, x > clip_min)",
    "continues while the domain is not empty and, when no valid pair exists, perturbs feature 0 "
    "(advlab stops the image)",
    "score alpha*|beta|: equals -alpha*beta for theta > 0, but is negative on the valid pairs "
    "for theta < 0, so argmax then picks an invalid pair",
    "one image at a time, full 10-row Jacobian (10 backward passes) per iteration",
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summarise(model, x, adv, target, seconds, device) -> dict:
    pred = predict(model, adv, 1000, device, amp=False)
    success = pred == target
    changed = (adv != x).flatten(1).sum(1).float()
    return {
        "seconds": seconds,
        "images_per_s": len(x) / seconds,
        "ms_per_image": 1000 * seconds / len(x),
        "success_rate": float(success.float().mean()),
        "mean_changed_pixels": float(changed.mean()),
        "mean_changed_pixels_successful": float(changed[success].mean()) if success.any() else None,
        "max_changed_pixels": int(changed.max()),
        "in_range": bool(adv.min() >= 0 and adv.max() <= 1),
    }


def run_advlab(model, x, target, theta, gamma, batch_size, device):
    sync(device)
    start = time.perf_counter()
    adv, iters = jsma_with_stats(model, x, target, theta=theta, gamma=gamma,
                                 batch_size=batch_size, progress=False)
    sync(device)
    return adv, iters, time.perf_counter() - start


def run_torchattacks(model, x, target, theta, gamma, device):
    attack = torchattacks.JSMA(model, theta=theta, gamma=gamma)
    attack.set_mode_targeted_by_label(quiet=True)
    sync(device)
    start = time.perf_counter()
    adv = attack(x.to(device), target.to(device)).detach().cpu()
    sync(device)
    return adv, time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="number of MNIST test images")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: advlab's choice)")
    parser.add_argument("--gamma", type=float, default=0.1,
                        help="largest fraction of pixels changed (default 0.1)")
    parser.add_argument("--theta", type=float, default=1.0, help="change per pixel (default 1)")
    parser.add_argument("--batch-size", type=int, default=256, help="advlab's chunk size")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random targets")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (both)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs of each, in turn; the fastest is kept (default 1)")
    parser.add_argument("--check", action="store_true",
                        help="compare with advlab's torch code path (ADVLAB_COMPILE=0)")
    parser.add_argument("--out", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = get_device(args.device)
    model = trained_lenet(device=device, progress=True)
    model.eval()
    test = load_mnist("test")
    # first n correctly classified test digits
    correct = (predict(model, test.x, 1000, device, amp=False) == test.y).nonzero().squeeze(1)[:args.n]
    x, y = test.x[correct].contiguous(), test.y[correct]
    target = random_targets(y, 10, seed=args.seed)
    print(f"{len(x)} correctly classified MNIST test images, theta={args.theta}, "
          f"gamma={args.gamma}, device={device}")

    # warm-up on two images (lazy init, kernels, caches); not timed
    run_advlab(model, x[:2], target[:2], args.theta, args.gamma, args.batch_size, device)
    run_torchattacks(model, x[:2], target[:2], args.theta, args.gamma, device)

    t_a = t_t = math.inf
    for _ in range(args.repeats):   # in turn; the fastest of each (the least slowed by others)
        adv_a, iters, took = run_advlab(model, x, target, args.theta, args.gamma,
                                        args.batch_size, device)
        t_a = min(t_a, took)
        print(f"advlab.jsma:       {took:8.2f} s")
        adv_t, took = run_torchattacks(model, x, target, args.theta, args.gamma, device)
        t_t = min(t_t, took)
        print(f"torchattacks.JSMA: {took:8.2f} s")

    same_as_torch_path = None
    if args.check:
        saved = os.environ.get("ADVLAB_COMPILE")
        os.environ["ADVLAB_COMPILE"] = "0"
        try:
            adv_c, iters_c, t_c = run_advlab(model, x, target, args.theta, args.gamma,
                                             args.batch_size, device)
        finally:
            if saved is None:
                del os.environ["ADVLAB_COMPILE"]
            else:
                os.environ["ADVLAB_COMPILE"] = saved
        same_as_torch_path = bool(torch.equal(adv_c, adv_a) and torch.equal(iters_c, iters))
        print(f"advlab.jsma, torch code path (no native kernels): {t_c:8.2f} s; identical "
              f"adversarial examples and iteration counts: {same_as_torch_path}")

    n_features = x[0].numel()
    res_a = summarise(model, x, adv_a, target, t_a, device)
    res_a["mean_iterations"] = float(iters.float().mean())
    res_t = summarise(model, x, adv_t, target, t_t, device)
    result = {
        "n_images": len(x),
        "theta": args.theta,
        "gamma": args.gamma,
        "max_iters_advlab": max_iterations(n_features, args.gamma),
        "max_iters_torchattacks": int(math.ceil(n_features * args.gamma / 2)),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "targets": "same for both: uniform over the 9 other classes, seed "
                   f"{args.seed} (torchattacks via set_mode_targeted_by_label)",
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"cpu ({platform.processor() or platform.machine()})"),
        "torch": torch.__version__,
        "torchattacks": torchattacks.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "advlab": res_a,
        "torchattacks_jsma": res_t,
        "speedup_advlab_over_torchattacks": t_t / t_a,
        "identical_adversarials": float((adv_a == adv_t).flatten(1).all(1).float().mean()),
        "identical_to_advlab_torch_path": same_as_torch_path,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torchattacks_differences": TORCHATTACKS_NOTES,
    }

    print(f"\n{'':20s}{'img/s':>10s}{'ms/img':>10s}{'success':>10s}{'L0 mean':>10s}")
    for name, r in (("advlab.jsma", res_a), ("torchattacks.JSMA", res_t)):
        print(f"{name:20s}{r['images_per_s']:10.2f}{r['ms_per_image']:10.1f}"
              f"{r['success_rate']:10.1%}{r['mean_changed_pixels']:10.1f}")
    print(f"speed-up of advlab over torchattacks: {result['speedup_advlab_over_torchattacks']:.1f}x"
          f"; identical adversarials: {result['identical_adversarials']:.0%}")
    print(f"{result['device']}, torch {result['torch']}, torchattacks {result['torchattacks']}, "
          f"{result['cpu_threads']} CPU threads")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
