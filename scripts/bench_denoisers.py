"""CPU training throughput of Chapter 4's denoisers and of the VGG surrogate (images/s).

    python scripts/bench_denoisers.py [--steps 8] [--warmup 3] [--batch 128] [--threads 2]

Times optimizer steps exactly as ``advlab.training`` runs them (float32, denormals flushed as
``fit(flush_denormal=True)`` does, batch 128 of 32 px images, Adam): the MSE step of a DnCNN
17x32 (the committed width) and 17x64 (the paper's), the Stab step through the target
ResNet-56 (the classifier's clean labels computed in the step) and through the VGG surrogate,
and an SGD step of the VGG surrogate itself.  Each line gives the median, min and max step time
of ``--steps`` timed steps after ``--warmup`` untimed ones, and the load average before and
after, since the CPU may be shared.  The last lines extrapolate epochs of 20,000 images and the
paper-size run (17x64; MSE 90 epochs + Stab 20 epochs on 50,000 images per sigma).
"""
from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from advlab.models import load_cifar_resnet
from advlab.models.dncnn import DnCNN
from advlab.models.vgg import vgg_cifar10
from advlab.training.denoisers import mse_loss, noisy, stability_loss
from advlab.training.surrogate import RECIPES as SURROGATES


def time_steps(step, steps: int, warmup: int) -> tuple[float, float, float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2], times[0], times[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    b = args.batch
    x = torch.rand(b, 3, 32, 32)
    gen = torch.Generator().manual_seed(0)
    add_noise = noisy((0.5,))
    resnet56 = load_cifar_resnet("resnet56").eval().requires_grad_(False)
    vgg = vgg_cifar10(**SURROGATES["vgg-cifar10"]["arch"]).eval().requires_grad_(False)
    rates: dict[str, float] = {}

    def denoiser_step(width: int, loss):
        den = DnCNN(17, width).train()
        opt = torch.optim.Adam(den.parameters(), 1e-3)

        def step():
            value = loss(den, add_noise(x, gen), x)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
        return step

    def vgg_step():
        net = vgg_cifar10(**SURROGATES["vgg-cifar10"]["arch"]).train()
        opt = torch.optim.SGD(net.parameters(), 0.05, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)
        y = torch.randint(10, (b,), generator=gen)

        def step():
            value = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
        return step

    cases = {"mse-17x32": lambda: denoiser_step(32, mse_loss),
             "stab-17x32-resnet56": lambda: denoiser_step(32, stability_loss([resnet56])),
             "stab-17x32-vgg": lambda: denoiser_step(32, stability_loss([vgg])),
             "vgg-train": vgg_step,
             "mse-17x64": lambda: denoiser_step(64, mse_loss),
             "stab-17x64-resnet56": lambda: denoiser_step(64, stability_loss([resnet56]))}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {b}")
    for name, make in cases.items():
        load0 = os.getloadavg()[0]
        med, lo, hi = time_steps(make(), args.steps, args.warmup)
        rates[name] = b / med
        print(f"{name:22s} median {med:6.3f} s/step (min {lo:.3f}, max {hi:.3f}) "
              f"{b / med:6.0f} img/s  load {load0:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
    minutes = {k: 20_000 / v / 60 for k, v in rates.items()}
    print("minutes per epoch of 20,000 images: "
          + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items()))
    paper = (90 * 50_000 / rates["mse-17x64"] + 20 * 50_000 / rates["stab-17x64-resnet56"]) / 3600
    print(f"paper-size run per sigma (17x64, MSE 90 + Stab 20 epochs of 50,000, Stab through "
          f"ResNet-56): {paper:.1f} h; one MSE and two Stab denoisers per sigma, 4 sigmas: "
          f"{4 * (paper + 20 * 50_000 / rates['stab-17x64-resnet56'] / 3600):.0f} h")


if __name__ == "__main__":
    main()
