"""The hybrid detector of Chapter 2: MC-dropout statistics, crop geometry, threshold fitting."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import auc
from torch import nn

from advlab.attacks import defence_aware_pgd
from advlab.defences import mc_dropout as md
from advlab.metrics import roc_hull
from advlab.models.mnist import LeNet


class CoinLogit(nn.Module):
    """logits = (a * dropout(1), 0): with p = 0.5 the first logit is 0 or 2a, each half the time."""

    def __init__(self, a: float):
        super().__init__()
        self.a = a
        self.drop = nn.Dropout(0.5)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        z = self.a * self.drop(torch.ones(len(x), 1)) + self.dummy
        return torch.cat([z, torch.zeros_like(z)], 1)


class MeanIntensity(nn.Module):
    """Class = the mean intensity in tenths (0..9): fixed under crop-and-resize of a flat image."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        k = (x.mean((1, 2, 3)) * 10).clamp(0, 9.999).floor().long()
        return F.one_hot(k, 10).float() * 10 + self.dummy


def test_mc_statistics_known_values():
    probs = torch.tensor([[[0.2, 0.8]], [[0.6, 0.4]]])  # 2 passes, 1 image, 2 classes
    mean, pred, unc = md.mc_statistics(probs)
    assert torch.allclose(mean, torch.tensor([[0.4, 0.6]]))
    assert pred.tolist() == [1]
    assert torch.allclose(unc, torch.tensor([0.2]))  # population std of (0.2, 0.6) is 0.2
    with pytest.raises(ValueError):
        md.mc_statistics(torch.rand(3, 4))


def test_mc_dropout_matches_the_analytic_coin_model():
    a, n = 2.0, 4000
    s = md.mc_dropout(CoinLogit(a).eval(), torch.zeros(3, 1, 2, 2), n=n, seed=1)
    hi = 1 / (1 + math.exp(-2 * a))  # softmax of (2a, 0)
    mean, std = (0.5 + hi) / 2, (hi - 0.5) / 2
    tol = 4 * std / math.sqrt(n)  # four standard errors of the mean
    assert torch.allclose(s.mean[:, 0], torch.full((3,), mean), atol=tol)
    assert torch.allclose(s.uncertainty, torch.full((3,), std), rtol=0.05)
    assert s.pred.tolist() == [0, 0, 0]


def test_mc_dropout_is_seeded_and_leaves_the_model_and_rng_alone():
    torch.manual_seed(0)
    model = LeNet().eval()
    x = torch.rand(16, 1, 28, 28)
    state = torch.get_rng_state()
    a = md.mc_dropout(model, x, n=10, seed=3)
    b = md.mc_dropout(model, x, n=10, seed=3)
    c = md.mc_dropout(model, x, n=10, seed=4)
    assert torch.equal(a.uncertainty, b.uncertainty) and torch.equal(a.pred, b.pred)
    assert not torch.equal(a.uncertainty, c.uncertainty)
    assert not model.training
    assert torch.equal(state, torch.get_rng_state())
    assert (a.uncertainty > 0).all()
    with pytest.raises(ValueError):
        md.mc_dropout(model, x, n=1)


def test_lenet_mc_logits_sample_the_head_only():
    torch.manual_seed(0)
    x = torch.rand(4, 1, 28, 28)
    model = LeNet(p=0.0).eval()
    assert torch.allclose(model.mc_logits(x, 3), model(x).expand(3, -1, -1), atol=1e-6)
    model = LeNet(p=0.5).eval()
    samples = model.mc_logits(x, 6)
    assert samples.shape == (6, 4, 10)
    assert not torch.allclose(samples[0], samples[1])
    assert torch.equal(model(x), model(x))  # eval forward stays deterministic


def test_generic_mc_path_needs_dropout():
    with pytest.raises(ValueError, match="no dropout"):
        md.mc_probs(nn.Linear(4, 2), torch.zeros(2, 4), 3)


def test_crop_views_geometry():
    x = torch.rand(2, 1, 28, 28)
    s = 24
    c = (28 - s) // 2
    manual = [x[..., :s, :s], x[..., :s, -s:], x[..., -s:, :s], x[..., -s:, -s:],
              x[..., c:c + s, c:c + s]]
    views = md.crop_views(x, s)
    assert views.shape == (5, 2, 1, 28, 28)
    for view, crop in zip(views, manual):
        assert torch.allclose(view, F.interpolate(crop, size=(28, 28), mode="bilinear",
                                                  align_corners=False))
    assert torch.equal(md.crop_views(x, 28), x.expand(5, -1, -1, -1, -1))
    for bad in (0, 29):
        with pytest.raises(ValueError):
            md.crop_views(x, bad)


def test_crop_agreement_counts_matching_crops():
    model = MeanIntensity()
    x = torch.tensor([0.05, 0.55, 0.95]).view(3, 1, 1, 1).expand(3, 1, 28, 28).contiguous()
    truth = torch.tensor([0, 5, 9])
    assert md.crop_agreement(model, x, truth, 20).tolist() == [5, 5, 5]
    assert md.crop_agreement(model, x, (truth + 1) % 10, 20).tolist() == [0, 0, 0]
    half = torch.zeros(1, 1, 28, 28)
    half[..., :, 14:] = 1.0  # right half white: left crops darker than right crops
    got = md.crop_agreement(model, half, torch.tensor([5]), 20)
    assert 0 < int(got) < 5


def test_flag_adversarial_follows_algorithm_1():
    u = torch.tensor([0.1, 0.5, 0.5, 0.9, 0.3, 0.7])
    agree = torch.tensor([0, 5, 2, 5, 3, 3])
    th = md.Thresholds(0.3, 0.7, 3)
    # below L: clean whatever the crops; above H: adversarial; between: agreement >= C is clean
    assert md.flag_adversarial(u, agree, th).tolist() == [False, False, True, True, False, False]
    with pytest.raises(ValueError):
        md.Thresholds(0.8, 0.2, 3)
    with pytest.raises(ValueError):
        md.Thresholds(0.1, 0.2, 6)


def test_grid_accuracy_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    u, agree = torch.rand(200, generator=g), torch.randint(0, 6, (200,), generator=g)
    adv = torch.rand(200, generator=g) < 0.5
    cand, acc = md.grid_accuracy(u, agree, adv, grid=12)
    for i, j, c in [(0, 3, 2), (2, 9, 5), (4, 4, 1), (1, len(cand) - 1, 0), (5, 7, 3)]:
        th = md.Thresholds(float(cand[i]), float(cand[j]), c)
        want = (md.flag_adversarial(u, agree, th) == adv).double().mean()
        assert acc[i, j, c] == pytest.approx(float(want))
    assert (acc[3, 1] == -1).all()  # L > H is not a candidate


def test_fit_thresholds_finds_the_separating_solution():
    n = 300
    clean_u, adv_u = torch.linspace(0.0, 2.0, n), torch.linspace(1.0, 3.0, n)
    u = torch.cat([clean_u, adv_u])
    agree = torch.cat([torch.full((n,), 5), torch.full((n,), 2)])
    is_adv = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    th, acc = md.fit_thresholds(u, agree, is_adv, grid=41)
    assert acc == 1.0
    assert th.low <= 1.0 and th.high >= 2.0 and 3 <= th.count <= 5
    assert torch.equal(md.flag_adversarial(u, agree, th), is_adv)
    # without the crops (every crop agrees) uncertainty alone cannot separate the overlap
    _, acc_u = md.fit_thresholds(u, torch.full_like(agree, 5), is_adv, grid=41)
    assert 0.7 < acc_u < 0.9


def test_operating_points_and_envelope():
    u = torch.tensor([0.1, 0.2, 0.8, 0.9])
    agree = torch.tensor([5, 5, 0, 0])
    adv = torch.tensor([False, False, True, True])
    env = roc_hull(md.operating_points(u, agree, adv, grid=5))
    assert env[0].tolist() == [0.0, 0.0] and env[-1].tolist() == [1.0, 1.0]
    assert (np.diff(env[:, 0]) >= 0).all() and (np.diff(env[:, 1]) >= 0).all()
    assert (np.diff(env[:, 1]) / np.maximum(np.diff(env[:, 0]), 1e-12) >= 0).all()
    assert [0.0, 1.0] in env.tolist()  # a perfect operating point exists
    assert auc(env[:, 0], env[:, 1]) == 1.0
    flipped = roc_hull(md.operating_points(u, agree, ~adv, grid=5))
    assert auc(flipped[:, 0], flipped[:, 1]) == pytest.approx(0.5)  # only the diagonal is reachable


def test_adaptive_pgd_stays_in_the_ball_and_lowers_its_loss():
    torch.manual_seed(0)
    model = LeNet().eval()
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    eps = 0.1
    adv = defence_aware_pgd(md.MCDropoutDetector(model, n_eot=4), x, y, eps, steps=5, progress=False)
    assert (adv - x).abs().max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        logits = model(x)
        logits[torch.arange(6), y] = -torch.inf
        target = logits.argmax(1)
        torch.manual_seed(1)
        before = md.detector_loss(model, x, target, 64, 24, 10.0).mean()
        torch.manual_seed(1)
        after = md.detector_loss(model, adv, target, 64, 24, 10.0).mean()
    assert after < before
    with pytest.raises(ValueError):
        defence_aware_pgd(md.MCDropoutDetector(model), x, y, 0.0)


def old_adaptive_pgd(model, x, y, eps, steps, n_eot, crop_size, unc_weight, batch_size, seed):
    """The adaptive-PGD loop Chapter 2's stored tables were made with (before the PGD core)."""
    step = 2.5 * eps / steps
    out = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            with torch.no_grad():
                logits = model(xb)
                logits[torch.arange(len(yb)), yb] = -torch.inf
                target = logits.argmax(1)
            adv = xb.clone()
            for _ in range(steps):
                adv.requires_grad_(True)
                loss = md.detector_loss(model, adv, target, n_eot, crop_size, unc_weight).sum()
                grad, = torch.autograd.grad(loss, adv)
                with torch.no_grad():
                    adv = adv - step * grad.sign()
                    adv = (xb + (adv - xb).clamp(-eps, eps)).clamp(0, 1)
            out.append(adv.detach())
    return torch.cat(out)


def test_adaptive_pgd_is_bit_for_bit_the_loop_chapter_2_used():
    torch.manual_seed(0)
    model = LeNet().eval()
    x, y = torch.rand(10, 1, 28, 28), torch.randint(0, 10, (10,))
    detector = md.MCDropoutDetector(model, n_eot=3, crop_size=24, unc_weight=10.0)
    ours = defence_aware_pgd(detector, x, y, 0.1, steps=4, batch_size=4, seed=2, progress=False)
    ref = old_adaptive_pgd(model, x, y, 0.1, 4, 3, 24, 10.0, 4, 2)
    assert torch.equal(ours, ref)
