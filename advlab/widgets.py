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


def pixel_explorer(models: dict, images: ImageSet, maps: dict, eps: float = 0.031,
                   steps: int = 10, seed: int = 0) -> W.VBox:
    """Chapter 5: pick an image, a model, a mask kind and p; see the image's own input-gradient
    map, the p% mask taken from the model's mean map ``maps[name]`` (top, bottom or random),
    and the PGD perturbation kept on that mask, with the labels.  PGD runs once per image and
    model (L-inf ``eps``, ``steps`` steps) and is kept for later redraws."""
    import torch

    from . import attacks as atk
    from .defenses.pixel_robustness import MASK_KINDS, blend, input_gradients, pixel_mask
    from .inference import predict
    choose = W.Dropdown(options=[(f"{i}: {images.classes[int(images.y[i])]}", i)
                                 for i in range(len(images))], description="image")
    model_name = W.Dropdown(options=list(models), description="model")
    kind = W.Dropdown(options=list(MASK_KINDS), description="mask")
    p = W.FloatSlider(value=0.1, min=0.0, max=1.0, step=0.05, description="p",
                      continuous_update=False)
    out = W.Output()
    adversarial: dict = {}

    def redraw(*_):
        i, name = choose.value, model_name.value
        model, x, y = models[name], images.x[i:i + 1], images.y[i:i + 1]
        if (name, i) not in adversarial:
            attack = atk.PGD("linf", steps, random_init=False)
            adversarial[name, i] = atk.run(model, x, y, attack, [eps], batch_size=1, seed=seed,
                                           progress=False)[eps]
        own = input_gradients(model, x, y).abs().mean(1)[0].float().cpu()
        mask = pixel_mask(maps[name], p.value, kind.value, seed)
        x_adv = blend(x, adversarial[name, i], mask)
        labels = predict(model, torch.cat([x, x_adv]), 2, backend="torch")
        fig, axes = plt.subplots(1, 4, figsize=(11, 3.2))
        panels = ((x[0].permute(1, 2, 0), f"input: {images.classes[int(labels[0])]}"),
                  (own, "its |input gradient|"),
                  (mask.float(), f"{kind.value}-{p.value:.0%} of the mean map"),
                  (x_adv[0].permute(1, 2, 0).clamp(0, 1),
                   f"masked PGD: {images.classes[int(labels[1])]}"))
        for ax, (img, title) in zip(axes, panels):
            ax.imshow(img.numpy(), cmap=None if img.dim() == 3 else "inferno",
                      interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        verdict = "still correct" if int(labels[1]) == int(y[0]) else "fooled"
        fig.suptitle(f"{name}, true: {images.classes[int(y[0])]}; masked PGD "
                     f"(eps {eps:g}, {int(mask.sum())} pixels): {verdict}", fontsize=10)
        out.outputs = ()
        out.append_display_data(as_jpeg(fig))

    for w in (choose, model_name, kind, p):
        w.observe(redraw, "value")
    redraw()
    return W.VBox([W.HBox([choose, model_name]), W.HBox([kind, p]), out])
