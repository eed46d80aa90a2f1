"""Interactive explorers for the notebooks (ipywidgets; they need a live kernel)."""
from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt

from .data import ImageSet
from .defenses.smoothing import BLUR_SIGMA_DEFAULT, SmoothingVote, add_noise, three_views


def smoothing_explorer(model, images: ImageSet, kernel: int = 5, seed: int = 0) -> W.VBox:
    """Pick an image and a noise sigma; see the three views, their labels and the vote."""
    vote = SmoothingVote(model, kernel, BLUR_SIGMA_DEFAULT)
    choose = W.Dropdown(options=[(n.split("_", 1)[1].rsplit(".", 1)[0], i)
                                 for i, n in enumerate(images.names)], description="image")
    sigma = W.FloatSlider(value=0.25, min=0.0, max=0.5, step=0.025, description="noise sigma",
                          continuous_update=False)
    out = W.Output()

    def name(i: int) -> str:
        return "REJECT" if i < 0 else images.classes[i]

    def redraw(*_):
        i = choose.value
        x = add_noise(images.x[i:i + 1], sigma.value, [seed * 1_000_000 + int(images.y[i])])
        p = vote.predict(x)
        views = three_views(x, vote.blur)
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 3, figsize=(10, 3.8))
            for ax, v, key, title in zip(axes, views, ("ns", "ss", "ds"),
                                         ("noisy input", "single blur", "double blur")):
                ax.imshow(v[0].permute(1, 2, 0).clamp(0, 1).numpy())
                ax.set_title(f"{title}\n{name(int(p[key][0]))}", fontsize=9)
                ax.axis("off")
            verdict = "correct" if int(p["vote"][0]) == int(images.y[i]) else "wrong"
            fig.suptitle(f"true: {images.classes[int(images.y[i])]}  |  vote: "
                         f"{name(int(p['vote'][0]))} ({verdict})", fontsize=10)
            plt.show()

    choose.observe(redraw, "value")
    sigma.observe(redraw, "value")
    redraw()
    return W.VBox([W.HBox([choose, sigma]), out])
