"""Images per second of Chapter 3's batched transforms on the CPU against the per-image code a
user would otherwise reach for, side by side with the ratio and a check that both compute the
same thing.

    python scripts/bench_transforms.py [--images 8] [--threads 1] [--out table.csv] [--markdown table.md]

References: numpy (bit depth), ``scipy.ndimage.median_filter``, scikit-image's
``denoise_tv_chambolle`` (its own stopping rule), scikit-learn's ``KMeans(n_init=1)``, PIL's
JPEG, and the Adversarial Robustness Toolbox's ``TotalVarMin`` for TV minimisation on a
fraction of the pixels.  ART is not a dependency of advlab; install it for this script only::

    pip install --no-deps --target /tmp/art adversarial-robustness-toolbox
    PYTHONPATH=/tmp/art python scripts/bench_transforms.py

Timing: each row times one call on the whole batch (advlab) or a loop over the images
(reference), after a warm-up call (which also builds advlab's native kernels the first time);
the fastest of at least ``--repeats`` calls, more while they take under ``--budget`` seconds in
all (on a shared machine the fastest call is the one least slowed by other jobs).  Both sides
run on ``--threads`` threads (torch, and the references' OpenMP/BLAS pools; default one: the
references are single-threaded).

Agreement column: bit depth, medians and JPEG must give identical outputs; K-means compares
the inertia (sum of squared distances to the centroids) of both palettes; TV minimisation on all
pixels compares how far above the optimum (the same problem solved to convergence) each
objective lands; ART's TotalVarMin solves its own objective (L-BFGS-B on a differently scaled
problem), so only advlab's distance to its optimum is given.
"""
from __future__ import annotations

import argparse
import io
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from advlab.defences import transforms as T

BITS_REMOVED = (2, 4, 6)
MEDIAN_WINDOWS = ((1, 3), (3, 1), (3, 3), (5, 5))
TVM_KEEP = (0.1, 0.25, 1.0)
KMEANS_K = (8,)
JPEG_QUALITY = (75,)


@dataclass
class Row:
    family: str
    name: str
    ours: Callable[[], object]
    reference: str = ""
    theirs: Callable[[], object] | None = None
    agreement: Callable[[], str] | None = None


# --------------------------------------------------------------------------- the harness
def best_rate(fn: Callable[[], object], n: int, repeats: int, budget_s: float = 1.0) -> float:
    """Images per second of the fastest call after a warm-up call: at least ``repeats`` timed
    calls, more while they take under ``budget_s`` in all."""
    with torch.no_grad():
        fn()
        best, spent, calls = np.inf, 0.0, 0
        while calls < repeats or spent < budget_s:
            t0 = time.perf_counter()
            fn()
            took = time.perf_counter() - t0
            best, spent, calls = min(best, took), spent + took, calls + 1
    return n / best


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``'s model name where there is one)."""
    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model


def art_total_var_min():
    """ART's ``TotalVarMin`` class when ART is importable, else None."""
    try:
        from art.defences.preprocessor import TotalVarMin
    except Exception:   # not installed, or an ART that does not import here
        return None
    return TotalVarMin


def load(n: int) -> torch.Tensor:
    """``n`` colour sample images at 224 pixels (the offline mirror), else uniform noise."""
    try:
        from advlab.zoo import load_imagenet_for
        return load_imagenet_for("efficientnet_lite0", limit=n, progress=False).x
    except Exception as err:  # no mirror: time on noise
        print(f"no sample images ({type(err).__name__}: {err}); timing on noise")
        return torch.rand(n, 3, 224, 224, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------- the rows
def _same(ours: Callable, theirs: Callable, levels: bool = False) -> Callable[[], str]:
    """Whether both give the same images: the same values, or with ``levels`` the same 8-bit
    levels (outputs that are float32 on one side and float64 on the other)."""
    def check() -> str:
        a = np.stack([np.asarray(v, dtype=np.float64) for v in theirs()])
        b = ours().permute(0, 2, 3, 1).double().numpy()
        if levels:
            a, b = np.round(a * 255), np.round(b * 255)
        diff = float(np.abs(a - b).max())
        return "identical" if diff == 0 else f"max |diff| {diff * (1 if levels else 255):.3g} grey levels"
    return check


def rows(x: torch.Tensor, weight: float = T.TV_WEIGHT, steps: int = T.TV_STEPS) -> list[Row]:
    from PIL import Image
    from scipy import ndimage
    from skimage.restoration import denoise_tv_chambolle
    from sklearn.cluster import KMeans

    arrays = [im.permute(1, 2, 0).numpy().astype(np.float64) for im in x]
    each = lambda f: (lambda: [f(a) for a in arrays])  # noqa: E731
    out: list[Row] = []

    for k in BITS_REMOVED:
        ref = each(lambda a, k=k: ((v := np.round(a * 255)) - v % 2 ** k) / 255)
        ours = lambda k=k: T.bit_depth(x, 8 - k, "truncate")  # noqa: E731
        out.append(Row("bit depth", f"remove {k} bits", ours, "numpy", ref,
                       _same(ours, ref, levels=True)))

    for h, w in MEDIAN_WINDOWS:
        ref = each(lambda a, h=h, w=w: ndimage.median_filter(a, size=(h, w, 1), mode="mirror"))
        ours = lambda h=h, w=w: T.median_filter(x, (h, w))  # noqa: E731
        out.append(Row("median", f"median {h}x{w}", ours, "scipy.ndimage.median_filter", ref,
                       _same(ours, ref)))

    art = art_total_var_min()
    xa = x.permute(0, 2, 3, 1).numpy()
    for keep in TVM_KEEP:
        name = f"TVM {round(100 * keep)}%"
        if keep == 1:
            sk = each(lambda a: denoise_tv_chambolle(a, weight=weight, channel_axis=-1))
            out.append(Row("TVM", name, lambda: T.tv_minimize(x, None, weight, steps),
                           "skimage denoise_tv_chambolle (its own stopping rule)", sk,
                           lambda sk=sk: _tv_gaps(x, None, weight, steps, sk)))
            continue
        mask = T.bernoulli_mask(x, keep, generator=torch.Generator().manual_seed(0))
        theirs, ref_name = None, "ART TotalVarMin: not installed"
        if art is not None:
            tvm = art(prob=keep, norm=2, lamb=weight, max_iter=10, verbose=False)
            theirs = lambda tvm=tvm: [tvm(xa[i:i + 1]) for i in range(len(xa))]  # noqa: E731
            ref_name = "ART TotalVarMin (10 L-BFGS-B iterations, its own objective)"
        out.append(Row("TVM", name, lambda keep=keep: T.TVM(keep, weight, steps)(x), ref_name,
                       theirs, lambda mask=mask: _tv_gaps(x, mask, weight, steps, None)))

    def sk_kmeans(a, k):
        km = KMeans(k, n_init=1, random_state=0).fit(a.reshape(-1, 3))
        return km.cluster_centers_[km.labels_].reshape(a.shape)

    for k in KMEANS_K:
        ref = each(lambda a, k=k: sk_kmeans(a, k))
        ours = lambda k=k: T.kmeans_quantize(x, k)  # noqa: E731
        out.append(Row("K-means", f"K-means k={k}", ours, "sklearn KMeans(n_init=1), all pixels",
                       ref, lambda ours=ours, ref=ref: _inertia(x, ours, ref)))

    def pil_jpeg(a, q):
        buf = io.BytesIO()
        Image.fromarray((a * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=q)
        return np.asarray(Image.open(buf)) / 255

    for q in JPEG_QUALITY:
        ref = each(lambda a, q=q: pil_jpeg(a, q))
        ours = lambda q=q: T.jpeg(x, q)  # noqa: E731
        out.append(Row("JPEG", f"JPEG {q}", ours, "PIL", ref, _same(ours, ref, levels=True)))
    return out


def _tv_gaps(x, mask, weight, steps, reference) -> str:
    """How far above the optimum (the problem solved in float64 with 20x the iterations) the
    objective lands, worst image: advlab's, and the reference's when it solves the same
    problem."""
    xd = x.double()
    optimum = T.tv_objective(T.tv_minimize(xd, mask, weight, 20 * steps), xd, mask, weight)
    gap = lambda z: ((T.tv_objective(z.double(), xd, mask, weight) - optimum) / optimum)  # noqa: E731
    ours = gap(T.tv_minimize(x, mask, weight, steps))
    text = f"objective above the optimum: advlab {100 * float(ours.max()):.3g}%"
    if reference is not None:
        theirs = gap(torch.from_numpy(np.stack(reference())).permute(0, 3, 1, 2))
        lower = int((ours <= theirs).sum())
        text += (f", reference {100 * float(theirs.min()):.3g}-{100 * float(theirs.max()):.3g}%; "
                 f"advlab lower on {lower}/{len(x)} images")
    return text


def _inertia(x, ours, reference) -> str:
    points = x.permute(0, 2, 3, 1).double().numpy()
    a = ((ours().permute(0, 2, 3, 1).double().numpy() - points) ** 2).sum((1, 2, 3))
    b = ((np.stack(reference()) - points) ** 2).sum((1, 2, 3))
    return f"inertia advlab / reference: {np.mean(a / b):.3f} (mean over images)"


# --------------------------------------------------------------------------- main
def measure(x: torch.Tensor, threads: int = 1, repeats: int = 3, budget_s: float = 2.0,
            only: str | None = None) -> pd.DataFrame:
    """The table: one row per transform, advlab's and the reference's images/s, the ratio and
    the agreement check."""
    from threadpoolctl import threadpool_limits
    table = []
    todo = [row for row in rows(x) if not only or only.lower() in row.name.lower()]
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # after the references' imports: threadpoolctl limits the pools loaded when it starts
        with threadpool_limits(threads):
            for row in todo:
                ours = best_rate(row.ours, len(x), repeats, budget_s)
                theirs = (best_rate(row.theirs, len(x), repeats, budget_s)
                          if row.theirs is not None else np.nan)
                agree = row.agreement() if row.agreement is not None else ""
                table.append({"family": row.family, "transform": row.name, "advlab_img_per_s": ours,
                              "reference": row.reference, "reference_img_per_s": theirs,
                              "ratio": ours / theirs, "agreement": agree})
                print(f"{row.name:16s} advlab {ours:9.1f} img/s   {row.reference}: {theirs:9.2f} "
                      f"img/s   ratio {ours / theirs:6.2f}   {agree}", flush=True)
    finally:
        torch.set_num_threads(saved)
    return pd.DataFrame(table)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="sample images (224 pixels)")
    parser.add_argument("--threads", type=int, default=1, help="threads for both sides")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls at least")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls at least")
    parser.add_argument("--only", default=None, help="rows whose name contains this")
    parser.add_argument("--out", default=None, help="CSV file for the table")
    parser.add_argument("--markdown", default=None, help="markdown file for the table")
    args = parser.parse_args(argv)
    x = load(args.images)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table = measure(x, args.threads, args.repeats, args.budget, args.only)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    note = (f"{len(x)} images of {tuple(x.shape[1:])}, {args.threads} thread(s), {cpu_name()} "
            f"({os.cpu_count()} CPUs), torch {torch.__version__}, load average "
            f"{load_before:.1f} before / {load_after:.1f} after")
    text = table.to_markdown(index=False, floatfmt=".3g")
    print(f"\n{note}\n\n{text}")
    if args.out:
        table.to_csv(args.out, index=False)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"{note}\n\n{text}\n")
    return table


if __name__ == "__main__":
    main()
