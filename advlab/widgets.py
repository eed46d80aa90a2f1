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
