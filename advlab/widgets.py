"""Interactive explorers for the notebooks (ipywidgets; they need a live kernel)."""
from __future__ import annotations

import ipywidgets as W
import matplotlib.pyplot as plt
import torch

from .data import ImageSet
from .defences.blur_vote import BLUR_SIGMA_DEFAULT, BlurVote, add_noise, noise_seeds, three_views
from .plots import as_jpeg
from .plots.style import PAGE_WIDTH_IN


def _show(out: W.Output, fig) -> None:
    """Replace ``out``'s content by ``fig``.  Set directly instead of capturing with
    ``with out:``, which can stall headless runners (nbclient) waiting on the capture's
    messages."""
    out.outputs = ()
    out.append_display_data(as_jpeg(fig))


def _wire(controls: tuple, redraw) -> None:
    """Redraw whenever a control changes, and once now."""
    for w in controls:
        w.observe(redraw, "value")
    redraw()


def smoothing_explorer(model, images: ImageSet, kernel: int = 5, seed: int = 0) -> W.VBox:
    """Pick an image and a noise sigma; see the three views, their labels and the vote."""
    vote = BlurVote(model, kernel, BLUR_SIGMA_DEFAULT)
    choose = W.Dropdown(options=[(n.split("_", 1)[1].rsplit(".", 1)[0], i)
                                 for i, n in enumerate(images.names)], description="image")
    sigma = W.FloatSlider(value=0.25, min=0.0, max=0.5, step=0.025, description="noise σ",
                          continuous_update=False)
    out = W.Output()

    def name(i: int) -> str:
        return "REJECT" if i < 0 else images.classes[i]

    def redraw(*_):
        i = choose.value
        x = add_noise(images.x[i:i + 1], sigma.value, noise_seeds(images.y[i:i + 1], 0, seed))
        p = vote.predict_views(x)
        views = three_views(x, vote.blur)
        fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 3.2), layout="constrained")
        for ax, v, key, title in zip(axes, views, ("ns", "ss", "ds"),
                                     ("noisy input", "single blur", "double blur")):
            ax.imshow(v[0].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_title(f"{title}\n{name(int(p[key][0]))}", fontsize=9)
            ax.axis("off")
        verdict = "correct" if int(p["vote"][0]) == int(images.y[i]) else "wrong"
        fig.suptitle(f"true: {images.classes[int(images.y[i])]}  |  vote: "
                     f"{name(int(p['vote'][0]))} ({verdict})", fontsize=10)
        _show(out, fig)

    _wire((choose, sigma), redraw)
    return W.VBox([W.HBox([choose, sigma]), out])


def transform_explorer(model, images: ImageSet, settings_: dict, seed: int = 0) -> W.VBox:
    """Chapter 3: pick an image, an FGSM strength and a transform with its setting; see the
    adversarial image, the transformed image and their difference, with the three labels
    (clean, attacked, attacked then transformed)."""
    from . import attacks
    from .inference import predict
    choose = W.Dropdown(options=[(n.split("_", 1)[1].rsplit(".", 1)[0] if "_" in n else n, i)
                                 for i, n in enumerate(images.names)], description="image")
    eps = W.IntSlider(value=4, min=0, max=16, step=1, description="FGSM (x/255)",
                      continuous_update=False)
    which = W.Dropdown(options=list(settings_), description="transform")
    out = W.Output()

    def label(i: int) -> str:
        return images.classes[i] if images.classes else str(i)

    def redraw(*_):
        i, s = choose.value, settings_[which.value]
        x, y = images.x[i:i + 1], images.y[i:i + 1]
        adv = x if eps.value == 0 else attacks.run(model, x, y, "fgsm", [eps.value / 255], seed=seed,
                                                   progress=False)[eps.value / 255]
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            with torch.no_grad():
                z = s.transform(adv)
        p_clean, p_adv, p_def = (int(predict(model, t, 1, amp=False)[0]) for t in (x, adv, z))
        delta = z - adv
        gain = 0.5 / max(float(delta.abs().max()), 1e-6)
        fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 3.2), layout="constrained")
        for ax, im, title in zip(axes, (adv, z, 0.5 + gain * delta),
                                 (f"FGSM {eps.value}/255\n{label(p_adv)}", f"{which.value}\n{label(p_def)}",
                                  f"transformed - adversarial (x{gain:.0f})")):
            ax.imshow(im[0].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        mark = lambda p: "correct" if p == int(y[0]) else "wrong"  # noqa: E731
        fig.suptitle(f"true: {label(int(y[0]))}  |  clean: {mark(p_clean)}, attacked: {mark(p_adv)}, "
                     f"transformed: {mark(p_def)}", fontsize=10)
        _show(out, fig)

    _wire((choose, eps, which), redraw)
    return W.VBox([W.HBox([choose, eps, which]), out])


def pixel_explorer(models: dict, images: ImageSet, maps: dict, eps: float = 0.031,
                   steps: int = 10, seed: int = 0) -> W.VBox:
    """Chapter 5: pick an image, a model, a mask kind and p; see the image's own input-gradient
    map, the p% mask taken from the model's mean map ``maps[name]`` (top, bottom or random),
    and the PGD perturbation kept on that mask, with the labels.  PGD runs once per image and
    model (L-inf ``eps``, ``steps`` steps) and is kept for later redraws."""
    import torch

    from . import attacks as atk
    from .inference import predict
    from .pixel_maps import MASK_KINDS, blend, input_gradients, pixel_mask
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
            attack = atk.PGD("linf", steps, random_start=False)
            adversarial[name, i] = atk.run(model, x, y, attack, [eps], batch_size=1, seed=seed,
                                           progress=False)[eps]
        own = input_gradients(model, x, y).abs().mean(1)[0].float().cpu()
        mask = pixel_mask(maps[name], p.value, kind.value, seed)
        x_adv = blend(x, adversarial[name, i], mask)
        labels = predict(model, torch.cat([x, x_adv]), 2, backend="torch")
        fig, axes = plt.subplots(2, 2, figsize=(PAGE_WIDTH_IN, 6.4), layout="constrained")
        axes = axes.flat
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
        _show(out, fig)

    _wire((choose, model_name, kind, p), redraw)
    return W.VBox([W.HBox([choose, model_name]), W.HBox([kind, p]), out])


def certify_explorer(classifier, denoisers: dict, images: ImageSet, ids=None, n0: int = 50,
                     n: int = 300, alpha: float = 0.001, seed: int = 0) -> W.VBox:
    """Chapter 4: pick an image, a configuration and sigma (``denoisers``: configuration ->
    {sigma: denoiser or None}, the denoiser trained for that sigma); see one noisy and one
    denoised sample, the vote counts of CERTIFY's estimation (``n`` samples), the lower bound
    p_A and the certified radius.  ``ids``: the images' ids (the noise depends on them, as in
    the chapter's certification)."""
    import torch

    from .defences.smoothing import Smooth, max_certifiable_radius
    ids = torch.arange(len(images)) if ids is None else torch.as_tensor(ids)
    choose = W.Dropdown(options=[(f"id {int(ids[i])}: {images.classes[int(images.y[i])]}", i)
                                 for i in range(len(images))], description="image")
    config = W.Dropdown(options=list(denoisers), description="denoiser")
    sigmas = sorted({s for per in denoisers.values() for s in per})
    sigma = W.SelectionSlider(options=sigmas, value=0.25 if 0.25 in sigmas else sigmas[0],
                              description="σ", continuous_update=False)
    out = W.Output()

    def redraw(*_):
        i, s = choose.value, sigma.value
        if s not in denoisers[config.value]:
            out.outputs = ()
            out.append_stdout(f"no {config.value} denoiser for σ = {s:g}\n")
            return
        den = denoisers[config.value][s]
        smooth = Smooth(classifier, len(images.classes), s, den, alpha=alpha, seed=seed)
        x = images.x[i:i + 1]
        cert = smooth.certify(x, n0, n, alpha, ids[i:i + 1])
        counts = smooth.sample_counts(x, n, 1, ids[i:i + 1])[0]
        noisy = x + s * smooth.noise_block(int(ids[i]), 1, 0, x.shape[1:], torch.device("cpu"))[:1]
        with torch.no_grad():
            shown = den(noisy).clamp(0, 1) if den is not None else noisy.clamp(0, 1)
        fig, axes = plt.subplots(1, 3, figsize=(PAGE_WIDTH_IN, 3.4), width_ratios=[1, 1, 2.2],
                                 layout="constrained")
        for ax, img, title in ((axes[0], noisy.clamp(0, 1), f"noisy, σ = {s:g}"),
                               (axes[1], shown, "denoised" if den is not None else "(no denoiser)")):
            ax.imshow(img[0].permute(1, 2, 0).numpy())
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        axes[2].bar(range(len(counts)), counts.numpy())
        axes[2].set_xticks(range(len(counts)), images.classes, rotation=60, fontsize=9)
        axes[2].set_title(f"votes over {n} noise samples", fontsize=9)
        pred = int(cert.prediction[0])
        what = "abstain" if pred < 0 else images.classes[pred]
        fig.suptitle(f"true: {images.classes[int(images.y[i])]} | certified class: {what} | "
                     f"p_A >= {float(cert.p_lower[0]):.3f}\nradius {float(cert.radius[0]):.3f} "
                     f"(at most {max_certifiable_radius(s, n, alpha):.3f} with N={n})", fontsize=9)
        _show(out, fig)

    _wire((choose, config, sigma), redraw)
    return W.VBox([W.HBox([choose, config, sigma]), out])
