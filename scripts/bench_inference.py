"""Images per second of each CPU inference backend on the book's models (no gradients).

    python scripts/bench_inference.py [--quick] [--threads N] [--models lite0,resnet20,...]

Backends: eager torch (NCHW), eager torch with channels_last input and weights,
``torch.compile`` (inductor) with channels_last, and ONNX Runtime through
``advlab.inference.logits(backend="onnx")`` (intra-op threads = torch threads).  Every backend
runs under ``torch.inference_mode`` on the same random batch; after ``--warmup`` untimed batches
(which include the export or the compilation, reported as "setup"), ``--batches`` batches are
timed.  The last columns compare each backend's outputs with eager torch.  Models: EfficientNet-
Lite0 (224 px, batch 32), CIFAR ResNet-20/56 (pretrained when the weights are found, batch 512),
ResNet-110 (untrained: its weights are not in the offline mirror) and a DnCNN-like stack of 17
3x3 convolutions with 64 channels on 32 px inputs (untrained, batch 256).
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import torch
from torch import nn

from advlab.inference import logits
from advlab.models import WeightsUnavailableError, load_cifar_resnet, load_imagenet_model
from advlab.models.cifar import cifar_resnet


class DnCNN(nn.Module):
    """Zhang et al. 2017's denoiser shape: conv-ReLU, (depth - 2) x conv-BN-ReLU, conv; it
    predicts the noise and returns the input minus it."""

    def __init__(self, depth: int = 17, width: int = 64, channels: int = 3):
        super().__init__()
        layers = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.body(x)


def cifar(name: str) -> tuple[nn.Module, str]:
    try:
        return load_cifar_resnet(name, download=False), "pretrained"
    except WeightsUnavailableError:
        torch.manual_seed(0)
        return cifar_resnet(name).eval(), "untrained"


def dncnn() -> tuple[nn.Module, str]:
    torch.manual_seed(0)
    return DnCNN().eval(), "untrained"


MODELS = {  # name -> (builder returning (model, note), batch size, input (C, H, W))
    "lite0": (lambda: (load_imagenet_model("efficientnet_lite0"), "pretrained"), 32, (3, 224, 224)),
    "resnet20": (lambda: cifar("resnet20"), 512, (3, 32, 32)),
    "resnet56": (lambda: cifar("resnet56"), 512, (3, 32, 32)),
    "resnet110": (lambda: cifar("resnet110"), 512, (3, 32, 32)),
    "dncnn": (dncnn, 256, (3, 32, 32)),
}


def backends(model: nn.Module) -> dict:
    """name -> (setup, forward): setup prepares the model once, forward runs one batch."""
    def eager(_):
        return model
    def channels_last(_):
        return model.to(memory_format=torch.channels_last)
    def compiled(_):
        return torch.compile(model.to(memory_format=torch.channels_last))
    return {
        "eager": (eager, lambda m, x: m(x)),
        "eager channels_last": (channels_last, lambda m, x: m(x.contiguous(memory_format=torch.channels_last))),
        "compile channels_last": (compiled, lambda m, x: m(x.contiguous(memory_format=torch.channels_last))),
        "onnxruntime": (eager, lambda m, x: logits(m, x, len(x), backend="onnx")),
    }


def bench(name: str, args) -> list[dict]:
    build, batch, shape = MODELS[name]
    model, note = build()
    x = torch.rand((batch, *shape), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(x).float()
    rows = []
    for backend, (setup, forward) in backends(model).items():
        if backend not in args.backends:
            continue
        model.to(memory_format=torch.contiguous_format)
        t0 = time.perf_counter()
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = setup(model)
            for _ in range(args.warmup):
                out = forward(m, x)
            setup_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(args.batches):
                forward(m, x)
            dt = time.perf_counter() - t0
        out = out.float()
        agree = float((out.argmax(1) == ref.argmax(1)).float().mean()) if out.dim() == 2 else float("nan")
        rows.append(dict(model=f"{name} ({note})", batch=batch, backend=backend,
                         ips=args.batches * batch / dt, setup_s=setup_s,
                         max_diff=float((out - ref).abs().max()), agree=agree))
        print(f"  {rows[-1]['model']:24s} {backend:22s} {rows[-1]['ips']:8.1f} img/s  "
              f"setup {setup_s:6.1f} s  max|diff| {rows[-1]['max_diff']:.1e}", flush=True)
        torch._dynamo.reset()
    eager = next((r["ips"] for r in rows if r["backend"] == "eager"), None)
    for r in rows:
        r["ratio"] = r["ips"] / eager if eager else float("nan")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 warm-up and 3 timed batches")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches (default 2)")
    parser.add_argument("--batches", type=int, default=10, help="timed batches (default 10)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch and ONNX Runtime intra-op threads (default: torch's)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    parser.add_argument("--backends", default="eager,eager channels_last,compile channels_last,onnxruntime",
                        help="comma-separated subset of the backends")
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.batches = 1, 3
    args.backends = args.backends.split(",")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {args.threads} threads, load average {load:.2f}; "
          f"{args.warmup} warm-up + {args.batches} timed batches", flush=True)
    rows = [r for name in args.models.split(",") for r in bench(name, args)]
    print("\n| model | batch | backend | images/s | x eager | setup (s) | max abs diff vs eager | same arg-max |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ips = f"{r['ips']:,.0f}" if r["ips"] >= 100 else f"{r['ips']:.1f}"
        print(f"| {r['model']} | {r['batch']} | {r['backend']} | {ips} | {r['ratio']:.2f} | "
              f"{r['setup_s']:.1f} | {r['max_diff']:.1e} | "
              f"{'-' if r['agree'] != r['agree'] else format(r['agree'], '.1%')} |")
    print(f"\nload average after the run: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
