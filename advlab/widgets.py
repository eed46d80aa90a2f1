"""Interactive explorers for the notebooks (ipywidgets; they need a live kernel)."""
from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt

from .data import ImageSet
from .defenses.blur_vote import BLUR_SIGMA_DEFAULT, BlurVote, add_noise, three_views
from .experiments.ch01 import noise_seeds
from .plots import as_jpeg


def smoothing_explorer(model, images: ImageSet, kernel: int = 5, seed: int = 0) -> W.VBox:
    """Pick an image and a noise sigma; see the three views, their labels and the vote."""
    vote = BlurVote(model, kernel, BLUR_SIGMA_DEFAULT)
    choose = W.Dropdown(options=[(n.split("_", 1)[1].rsplit(".", 1)[0], i)
                                 for i, n in enumerate(images.names)], description="image")
    sigma = W.FloatSlider(value=0.25, min=0.0, max=0.5, step=0.025, description="noise sigma",
                          continuous_update=False)
    out = W.Output()

    def name(i: int) -> str:
        return "REJECT" if i < 0 else images.classes[i]

    def redraw(*_):
        i = choose.value
        x = add_noise(images.x[i:i + 1], sigma.value, noise_seeds(images.subset([i]), 0, seed))
        p = vote.predict_views(x)
        views = three_views(x, vote.blur)
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.8))
        for ax, v, key, title in zip(axes, views, ("ns", "ss", "ds"),
                                     ("noisy input", "single blur", "double blur")):
            ax.imshow(v[0].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_title(f"{title}\n{name(int(p[key][0]))}", fontsize=9)
            ax.axis("off")
        verdict = "correct" if int(p["vote"][0]) == int(images.y[i]) else "wrong"
        fig.suptitle(f"true: {images.classes[int(images.y[i])]}  |  vote: "
                     f"{name(int(p['vote'][0]))} ({verdict})", fontsize=10)
        # Set the Output's content directly instead of capturing with `with out:`, which can
        # stall headless runners (nbclient) waiting on the capture's messages.
        out.outputs = ()
        out.append_display_data(as_jpeg(fig))

    choose.observe(redraw, "value")
    sigma.observe(redraw, "value")
    redraw()
    return W.VBox([W.HBox([choose, sigma]), out])


def certify_explorer(classifier, denoisers: dict, images: ImageSet, ids=None, n0: int = 50,
                     n: int = 300, alpha: float = 0.001, seed: int = 0) -> W.VBox:
    """Chapter 4: pick an image, a configuration (``denoisers``: name -> denoiser or None) and
    sigma; see one noisy and one denoised sample, the vote counts of CERTIFY's estimation
    (``n`` samples), the lower bound p_A and the certified radius."""
    import torch

    from .defenses.randomized import Smooth, max_certifiable_radius
    ids = torch.arange(len(images)) if ids is None else ids
    choose = W.Dropdown(options=[(f"{i}: {images.classes[int(images.y[i])]}", i)
                                 for i in range(len(images))], description="image")
    config = W.Dropdown(options=list(denoisers), description="denoiser")
    sigma = W.FloatSlider(value=0.25, min=0.05, max=1.0, step=0.05, description="sigma",
                          continuous_update=False)
    out = W.Output()

    def redraw(*_):
        i, s, den = choose.value, sigma.value, denoisers[config.value]
        smooth = Smooth(classifier, len(images.classes), s, den, alpha=alpha, seed=seed)
        x = images.x[i:i + 1]
        cert = smooth.certify(x, n0, n, alpha, ids[i:i + 1])
        counts = smooth.sample_counts(x, n, 1, ids[i:i + 1])[0]
        noisy = x + s * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            shown = den(noisy).clamp(0, 1) if den is not None else noisy.clamp(0, 1)
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), width_ratios=[1, 1, 2.2])
        for ax, img, title in ((axes[0], noisy.clamp(0, 1), f"noisy, sigma={s:.2f}"),
                               (axes[1], shown, "denoised" if den is not None else "(no denoiser)")):
            ax.imshow(img[0].permute(1, 2, 0).numpy())
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        axes[2].bar(range(len(counts)), counts.numpy())
        axes[2].set_xticks(range(len(counts)), images.classes, rotation=60, fontsize=7)
        axes[2].set_title(f"votes over {n} noise samples", fontsize=9)
        pred = int(cert.prediction[0])
        what = "abstain" if pred < 0 else images.classes[pred]
        fig.suptitle(f"true: {images.classes[int(images.y[i])]} | certified class: {what} | "
                     f"p_A >= {float(cert.p_lower[0]):.3f} | radius {float(cert.radius[0]):.3f} "
                     f"(at most {max_certifiable_radius(s, n, alpha):.3f} with N={n})", fontsize=9)
        fig.tight_layout()
        out.outputs = ()
        out.append_display_data(as_jpeg(fig))

    for w in (choose, config, sigma):
        w.observe(redraw, "value")
    redraw()
    return W.VBox([W.HBox([choose, config, sigma]), out])
