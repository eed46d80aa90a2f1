"""Images per second of Chapter 3's batched transforms on the CPU, against the per-image
reference a user would otherwise reach for (numpy, scipy, scikit-image, scikit-learn, PIL, and
the Adversarial Robustness Toolbox's ``TotalVarMin`` when it is importable).

    python scripts/bench_transforms.py --images 16 [--out bench.csv]

ART is not a dependency of advlab; for the TotalVarMin row install it for the benchmark only,
e.g. ``pip install --no-deps --target /tmp/art adversarial-robustness-toolbox`` and run with
``PYTHONPATH=/tmp/art``.  Each row times one call on the whole batch (advlab) or a loop over
the images (reference), the fastest of three calls after a warm-up call (which also compiles
the TV solver's step).
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from advlab.defences import transforms as T


def load(n: int) -> torch.Tensor:
    """``n`` sample images at 224 pixels (the offline mirror), else uniform noise."""
    try:
        from advlab.zoo import load_imagenet_for
        return load_imagenet_for("efficientnet_lite0", limit=n, progress=False).x
    except Exception as err:  # no mirror: time on noise, which is as costly
        print(f"no sample images ({type(err).__name__}); timing on noise")
        return torch.rand(n, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def rate(fn: Callable[[], object], n: int, repeats: int = 3) -> float:
    """Images per second of the fastest of ``repeats`` calls (the machine is shared: the
    fastest call is the one least slowed by others), after a warm-up call."""
    fn()                                     # warm-up (and torch.compile)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def per_image(x: torch.Tensor, f: Callable[[np.ndarray], np.ndarray]) -> Callable[[], list]:
    """A loop over the images as (H, W, C) float arrays, the layout the references take."""
    arrays = [im.permute(1, 2, 0).numpy().astype(np.float64) for im in x]
    return lambda: [f(a) for a in arrays]


def references(x: torch.Tensor) -> dict[str, tuple[str, Callable[[], object]]]:
    import io

    from PIL import Image
    from scipy import ndimage
    from skimage.restoration import denoise_tv_chambolle
    from sklearn.cluster import KMeans

    def pil_jpeg(a):
        buf = io.BytesIO()
        Image.fromarray((a * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=75)
        return np.asarray(Image.open(buf))

    def sk_kmeans(a):
        pts = a.reshape(-1, 3)
        km = KMeans(8, n_init=1, random_state=0).fit(pts)
        return km.cluster_centers_[km.labels_]

    refs = {
        "bit depth, remove 4 bits": ("numpy per image",
                                     per_image(x, lambda a: (v := np.round(a * 255)) - v % 16)),
        "median 3x3": ("scipy.ndimage.median_filter per image",
                       per_image(x, lambda a: ndimage.median_filter(a, size=(3, 3, 1), mode="mirror"))),
        "median 5x5": ("scipy.ndimage.median_filter per image",
                       per_image(x, lambda a: ndimage.median_filter(a, size=(5, 5, 1), mode="mirror"))),
        "TV, all pixels (100 steps)": ("skimage denoise_tv_chambolle per image (its default stop)",
                                       per_image(x, lambda a: denoise_tv_chambolle(
                                           a, weight=T.TV_WEIGHT, channel_axis=-1))),
        "K-means, k=8": ("sklearn KMeans(n_init=1) per image", per_image(x, sk_kmeans)),
        "JPEG 75": ("PIL per image", per_image(x, pil_jpeg)),
    }
    try:
        from art.defences.preprocessor import TotalVarMin
        art = TotalVarMin(prob=0.1, norm=2, lamb=T.TV_WEIGHT, max_iter=10)
        xa = x.permute(0, 2, 3, 1).numpy()
        refs["TV, 10% kept (100 steps)"] = (
            "ART TotalVarMin per image (10 L-BFGS-B iterations per channel)",
            lambda: [art(xa[i:i + 1]) for i in range(len(xa))])
    except ImportError:
        print("ART not importable: no TotalVarMin row (see the module docstring)")
    return refs


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--out", default=None, help="CSV file for the table")
    args = parser.parse_args(argv)
    x = load(args.images)
    n = len(x)
    ours = {
        "bit depth, remove 4 bits": lambda: T.bit_depth(x, 4),
        "median 3x3": lambda: T.median_filter(x, 3),
        "median 5x5": lambda: T.median_filter(x, 5),
        "TV, all pixels (100 steps)": lambda: T.tv_minimize(x),
        "TV, 10% kept (100 steps)": lambda: T.TVM(keep=0.1)(x),
        "K-means, k=8": lambda: T.kmeans_quantize(x, 8),
        "JPEG 75": lambda: T.jpeg(x, 75),
    }
    refs = references(x)
    rows = []
    for name, fn in ours.items():
        ours_rate = rate(fn, n)
        ref_name, ref_fn = refs.get(name, ("-", None))
        ref_rate = rate(ref_fn, n) if ref_fn is not None else float("nan")
        rows.append({"transform": name, "advlab img/s": ours_rate, "reference": ref_name,
                     "reference img/s": ref_rate, "speed-up": ours_rate / ref_rate})
        print(f"{name:28s} {ours_rate:9.1f} img/s   {ref_name}: {ref_rate:9.2f} img/s", flush=True)
    table = pd.DataFrame(rows)
    print(f"\n{n} images of 3x224x224, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(table.to_markdown(index=False, floatfmt=".3g") if _has_tabulate() else table)
    if args.out:
        table.to_csv(args.out, index=False)
    return table


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    main()
