"""The batched One Pixel attack against a per-image, per-member loop that uses the same random
numbers, and against scipy's differential evolution and brute force on a tiny model."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import differential_evolution
from torch import nn

from advlab import attacks
from advlab.attacks.one_pixel import apply_pixels, draws, initial_population, one_pixel

C, H, W, K = 3, 4, 4, 3


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, K)).double().eval()


def tiny_images(n=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, C, H, W, generator=g, dtype=torch.float64)
    return x


def energy_of(model, x, params, label):
    """Probability of ``label`` for one image with one candidate (plain, one at a time)."""
    img = x.clone()
    col = min(int(params[0] * W), W - 1)
    row = min(int(params[1] * H), H - 1)
    img[:, row, col] = torch.as_tensor(params[2:], dtype=img.dtype)
    with torch.no_grad():
        z = model(img[None])[0]
    return float(F.softmax(z.float(), 0)[label]), int(z.argmax())


def reference_de(model, x, y, popsize, generations, mutation=0.5, crossover=1.0, seed=0):
    """Plain differential evolution, one image and one member at a time, reading the random
    numbers the batched attack draws (same generator, same layout)."""
    torch.manual_seed(seed)
    n, dims = len(x), 2 + C
    pop = initial_population(n, popsize, 1, C).numpy().copy()
    energy = np.zeros((n, popsize), dtype=np.float32)
    running, result = [True] * n, [None] * n
    for i in range(n):
        hits = []
        for m in range(popsize):
            energy[i, m], pred = energy_of(model, x[i], pop[i, m], int(y[i]))
            if pred != int(y[i]):
                hits.append((energy[i, m], m))
        if hits:
            result[i], running[i] = pop[i, min(hits)[1]].copy(), False
    for _ in range(generations):
        d = {k: v.numpy() for k, v in draws(n, popsize, dims).items()}
        if not any(running):
            break
        for i in range(n):
            if not running[i]:
                continue
            trials, hits = [], []
            for m in range(popsize):
                left = [j for j in range(popsize) if j != m]
                parents = []
                for k in range(3):
                    pick = left[min(int(d["parents"][i, m, k] * len(left)), len(left) - 1)]
                    parents.append(pick)
                    left.remove(pick)
                a, b, c = (pop[i, j] for j in parents)
                trial = pop[i, m].copy()
                for j in range(dims):
                    if d["cross"][i, m, j] < crossover or j == d["fill"][i, m]:
                        trial[j] = a[j] + mutation * (b[j] - c[j])
                    if not 0 <= trial[j] <= 1:
                        trial[j] = d["redraw"][i, m, j]
                trials.append(trial)
            for m, trial in enumerate(trials):       # deferred: all trials judged together
                e, pred = energy_of(model, x[i], trial, int(y[i]))
                if pred != int(y[i]):
                    hits.append((e, m))
                if e <= energy[i, m]:
                    pop[i, m], energy[i, m] = trial, e
            if hits:
                result[i], running[i] = trials[min(hits)[1]], False
    for i in range(n):
        if running[i]:
            result[i] = pop[i, int(np.argmin(energy[i]))]
    return torch.stack([torch.as_tensor(apply_pixels(x[i:i + 1], torch.as_tensor(r)[None])[0])
                        for i, r in enumerate(result)])


def test_batched_one_pixel_equals_the_per_image_loop(monkeypatch):
    monkeypatch.setenv("ADVLAB_BACKEND", "torch")
    model, x = tiny_model(), tiny_images(6)
    with torch.no_grad():
        y = model(x).argmax(1)
    torch.manual_seed(0)
    ours = one_pixel(model, x, y, popsize=10, generations=12)
    ref = reference_de(model, x, y, popsize=10, generations=12)
    assert torch.equal(ours, ref)
    changed = (ours != x).any(1).flatten(1).sum(1)
    assert bool((changed <= 1).all())
    with torch.no_grad():
        fooled = model(ours).argmax(1) != y
    assert int(fooled.sum()) == 3                 # 3 of the 6 images fooled in 12 generations


def brute_force_minimum(model, x, label):
    """The smallest probability of ``label`` over every pixel and every corner of the colour
    cube: for a linear model the probability of one class is smallest at a corner."""
    best = 1.0
    for row, col in itertools.product(range(H), range(W)):
        for v in itertools.product((0.0, 1.0), repeat=C):
            img = x.clone()
            img[:, row, col] = torch.tensor(v, dtype=x.dtype)
            with torch.no_grad():
                best = min(best, float(F.softmax(model(img[None])[0], 0)[label]))
    return best


def test_one_pixel_reaches_the_brute_force_optimum_like_scipy(monkeypatch):
    monkeypatch.setenv("ADVLAB_BACKEND", "torch")
    model, x = tiny_model(3), tiny_images(2, seed=4)
    with torch.no_grad():
        y = model(x).argmax(1)
    torch.manual_seed(0)
    ours = one_pixel(model, x, y, popsize=30, generations=40, early_stop=False)
    with torch.no_grad():
        ours_p = F.softmax(model(ours), 1).gather(1, y[:, None]).flatten()
    for i in range(len(x)):
        target = brute_force_minimum(model, x[i], int(y[i]))
        f = lambda p, i=i: energy_of(model, x[i], p, int(y[i]))[0]  # noqa: E731
        init = initial_population(1, 30, 1, C)[0].double().numpy()
        ref = differential_evolution(f, [(0, 1)] * (2 + C), strategy="rand1bin", maxiter=40,
                                     init=init, mutation=0.5, recombination=1.0, polish=False,
                                     tol=0, updating="deferred", rng=0)
        assert float(ours_p[i]) == pytest.approx(target, rel=0.05, abs=1e-3)
        assert ref.fun == pytest.approx(target, rel=0.05, abs=1e-3)


def test_one_pixel_in_the_attack_shape():
    model = tiny_model().float()
    x = tiny_images(4).float()
    with torch.no_grad():
        y = model(x).argmax(1)
    out = attacks.run(model, x, y, "one_pixel", popsize=8, generations=3, batch_size=3, seed=2,
                      progress=False)[None]
    again = attacks.run(model, x, y, "one_pixel", popsize=8, generations=3, batch_size=3, seed=2,
                        progress=False)[None]
    assert torch.equal(out, again) and out.shape == x.shape
    assert bool(((out != x).any(1).flatten(1).sum(1) <= 1).all())
    two = attacks.run(model, x, y, "one_pixel", pixels=2, popsize=8, generations=3,
                      progress=False)[None]
    assert bool(((two != x).any(1).flatten(1).sum(1) <= 2).all())
    with pytest.raises(ValueError, match="popsize"):
        attacks.make("one_pixel", popsize=3)
    with pytest.raises(ValueError, match="no epsilon|takes no epsilon"):
        attacks.run(model, x, y, "one_pixel", [0.1], progress=False)
