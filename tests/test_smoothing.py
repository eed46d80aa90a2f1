"""Randomized smoothing: CERTIFY and PREDICT against a per-image reference written from Cohen et
al.'s pseudo-code, a linear classifier whose smoothed radius has a closed form, batch-size and
subset independence, abstentions, certified accuracy."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, norm
from statsmodels.stats.proportion import proportion_confint
from torch import nn

from advlab.defences.base import ABSTAIN
from advlab.defences.smoothing import (
    NOISE_BLOCK,
    PREDICT,
    Certificates,
    Smooth,
    certified_accuracy,
    max_certifiable_radius,
    radius,
)


# --------------------------------------------------------------------------- the reference
def reference_counts(smooth: Smooth, x: torch.Tensor, image_id: int, num: int, phase: int):
    """Cohen et al.'s ``_sample_noise`` for one image, one block at a time, counted in numpy,
    with the same noise blocks as the library (same seeds)."""
    counts = np.zeros(smooth.num_classes, dtype=int)
    for b in range(math.ceil(num / NOISE_BLOCK)):
        k = min(NOISE_BLOCK, num - b * NOISE_BLOCK)
        eps = smooth.noise_block(image_id, phase, b, x.shape, torch.device("cpu"))[:k]
        with torch.no_grad():
            labels = smooth.base(x[None] + smooth.sigma * eps).argmax(1).numpy()
        for c in labels:
            counts[c] += 1
    return counts


def reference_certify(smooth, x, image_id, n0, n, alpha):
    """CERTIFY of Cohen et al. (Algorithm in Section 3.2), one image."""
    c_hat = reference_counts(smooth, x, image_id, n0, 0).argmax()
    n_a = reference_counts(smooth, x, image_id, n, 1)[c_hat]
    p_a = proportion_confint(n_a, n, alpha=2 * alpha, method="beta")[0]
    if p_a < 0.5:
        return ABSTAIN, 0.0
    return int(c_hat), smooth.sigma * norm.ppf(p_a)


def reference_predict(smooth, x, image_id, n, alpha):
    """PREDICT of Cohen et al., one image (binomtest replaces the removed binom_test)."""
    counts = reference_counts(smooth, x, image_id, n, PREDICT)
    top2 = counts.argsort()[::-1][:2]
    if binomtest(int(counts[top2[0]]), int(counts[top2[0]] + counts[top2[1]]), 0.5).pvalue > alpha:
        return ABSTAIN
    return int(top2[0])


class TinyNet(nn.Module):
    """A small random conv net: 4 classes, 3 x 8 x 8 inputs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1)) * 3


def linear_binary(w: torch.Tensor, b: float) -> nn.Module:
    """Logits (0, w.x + b): class 1 exactly where the hyperplane's score is positive."""
    lin = nn.Linear(w.numel(), 2)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[1] = w.flatten()
        lin.bias.copy_(torch.tensor([0.0, b]))
    return nn.Sequential(nn.Flatten(), lin).eval()


@pytest.fixture(scope="module")
def tiny():
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    return TinyNet().eval(), x


# --------------------------------------------------------------------------- tests
def test_certify_matches_the_per_image_reference(tiny):
    net, x = tiny
    smooth = Smooth(net, 4, sigma=0.5, forward_batch=64, backend="torch")
    ids = torch.tensor([7, 3, 11, 0, 5])
    certs = smooth.certify(x, n0=50, n=250, alpha=0.01, ids=ids)
    for i in range(len(x)):
        pred, rad = reference_certify(smooth, x[i], int(ids[i]), 50, 250, 0.01)
        assert int(certs.prediction[i]) == pred
        assert float(certs.radius[i]) == pytest.approx(rad, abs=1e-12)
    # the counts themselves, for every class
    counts = smooth.sample_counts(x, 250, 1, ids)
    for i in range(len(x)):
        assert counts[i].tolist() == reference_counts(smooth, x[i], int(ids[i]), 250, 1).tolist()
    assert (certs.prediction != ABSTAIN).sum() >= 2 and (certs.radius > 0).sum() >= 2


def test_predict_matches_the_per_image_reference(tiny):
    net, x = tiny
    smooth = Smooth(net, 4, sigma=0.5, forward_batch=100, backend="torch")
    got = smooth.predict(x, n=300, alpha=0.01)
    want = [reference_predict(smooth, x[i], i, 300, 0.01) for i in range(len(x))]
    assert got.tolist() == want


def test_onnx_fast_path_gives_the_same_counts(tiny):
    net, x = tiny
    onnx = Smooth(net, 4, sigma=0.5, forward_batch=128).sample_counts(x, 300, 1)
    eager = Smooth(net, 4, sigma=0.5, forward_batch=128, backend="torch").sample_counts(x, 300, 1)
    assert torch.equal(onnx, eager) and int(onnx.sum()) == 5 * 300


def test_counts_on_two_threads_equal_one_thread(tiny):
    """On 2 threads ONNX Runtime runs a batch as parts on single-threaded sessions side by side:
    the counts are those of one thread, bit for bit."""
    net, x = tiny
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = Smooth(net, 4, sigma=0.5, forward_batch=200).sample_counts(x, 300, 1)
        torch.set_num_threads(2)
        two = Smooth(net, 4, sigma=0.5, forward_batch=200).sample_counts(x, 300, 1)
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(one, two) and int(one.sum()) == 5 * 300


def test_results_do_not_depend_on_batch_size_or_the_other_images(tiny):
    net, x = tiny
    ids = torch.tensor([4, 9, 2, 6, 1])
    a = Smooth(net, 4, 0.25, forward_batch=37).certify(x, 30, 230, ids=ids)
    b = Smooth(net, 4, 0.25, forward_batch=1000).certify(x, 30, 230, ids=ids)
    alone = Smooth(net, 4, 0.25, forward_batch=7).certify(x[2:3], 30, 230, ids=ids[2:3])
    for k in Certificates.TENSORS:
        assert torch.equal(getattr(a, k), getattr(b, k))
        assert torch.equal(getattr(a, k)[2:3], getattr(alone, k))
    # the first samples of a larger n are the samples of a smaller n
    few = Smooth(net, 4, 0.25).sample_counts(x, 100, 1, ids)
    assert torch.equal(few, Smooth(net, 4, 0.25).sample_counts(x, 100, 1, ids))
    other_seed = Smooth(net, 4, 0.25, seed=1).certify(x, 30, 230, ids=ids)
    assert not torch.equal(a.count, other_seed.count)


def test_linear_classifier_radius_never_above_the_truth_and_close_for_large_n():
    """For f(x) = 1[w.x + b > 0], P(f(x + delta) = f(x)) = Phi(d / sigma) with d the distance
    to the hyperplane, so the smoothed classifier's exact radius is d."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, 4, 4, generator=g)
    unit = w / w.norm()
    # images at signed distances d from the hyperplane along its normal, which passes through
    # the grey image (so that every image stays in [0, 1], as Smooth requires)
    distances = torch.tensor([0.15, 0.4, 0.75, -0.6])
    x0 = torch.full((1, 4, 4), 0.5)
    sigma, b = 0.5, -float(x0.flatten() @ w.flatten())
    x = torch.stack([x0 + d * unit for d in distances])
    smooth = Smooth(linear_binary(w, b), 2, sigma, forward_batch=20_000)
    certs = smooth.certify(x, n0=100, n=100_000, alpha=0.001)
    truth = distances.abs().double()
    assert certs.prediction.tolist() == [1, 1, 1, 0]
    assert (certs.radius <= truth).all()
    # the Clopper-Pearson margin at n = 100,000 costs less than 3% of sigma
    assert ((truth - certs.radius) < 0.03 * sigma).all(), (certs.radius, truth)
    # with n = 1,000 the bound is looser but still below the truth
    coarse = smooth.certify(x, n0=100, n=1000, alpha=0.001)
    assert (coarse.radius <= truth).all() and (coarse.radius < certs.radius).all()


def test_abstains_on_the_boundary_and_caps_at_the_largest_radius():
    w = torch.ones(1, 2, 2)
    x = torch.stack([torch.full((1, 2, 2), 0.25), torch.full((1, 2, 2), 1.0)])
    smooth = Smooth(linear_binary(w, -1.0), 2, 0.25, forward_batch=500)  # x[0] on the boundary
    certs = smooth.certify(x, 100, 2000, alpha=0.001)
    assert int(certs.prediction[0]) == ABSTAIN and float(certs.radius[0]) == 0.0
    assert 0.4 < float(certs.p_lower[0]) < 0.5
    # x[1] is 1.5 (6 sigma) from the boundary: every sample agrees, so the radius is the cap
    assert int(certs.prediction[1]) == 1 and int(certs.count[1]) == 2000
    assert float(certs.radius[1]) == pytest.approx(max_certifiable_radius(0.25, 2000, 0.001))
    pred = smooth.predict(x, n=1000, alpha=0.001)
    assert pred.tolist() == [ABSTAIN, 1]


def test_max_radius_and_radius_formulas():
    # all n agree: the lower bound is alpha^(1/n)
    assert max_certifiable_radius(0.5, 10_000) == pytest.approx(0.5 * norm.ppf(0.001 ** 1e-4))
    assert max_certifiable_radius(0.25, 10_000) == pytest.approx(0.7996, abs=1e-4)
    assert max_certifiable_radius(0.5, 1000) == pytest.approx(1.2316, abs=1e-4)
    assert radius([0.3, 0.5, 0.8413447460685429], 1.0).tolist() == pytest.approx([0, 0, 1.0])


def test_certified_accuracy_counts_abstentions_as_wrong():
    certs = Certificates(ids=torch.arange(5), prediction=torch.tensor([0, 1, ABSTAIN, 3, 4]),
                         radius=torch.tensor([0.3, 0.6, 0.0, 1.2, 0.5], dtype=torch.float64),
                         p_lower=torch.zeros(5, dtype=torch.float64), count=torch.zeros(5, dtype=torch.long),
                         select_count=torch.zeros(5, dtype=torch.long))
    labels = torch.tensor([0, 1, 2, 3, 0])  # the last one is certified but wrong
    table = certified_accuracy(certs, labels, [0.0, 0.25, 0.5, 1.0, 1.5])
    assert table.certified_acc.tolist() == [0.6, 0.6, 0.4, 0.2, 0.0]
    assert (table.lo <= table.certified_acc).all() and (table.certified_acc <= table.hi).all()
    lo, hi = proportion_confint(3, 5, alpha=0.05, method="beta")
    assert table.lo[0] == pytest.approx(lo) and table.hi[0] == pytest.approx(hi)


def test_bad_input_is_a_clear_error(tiny):
    net, x = tiny
    for sigma in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="sigma must be a positive finite number"):
            Smooth(net, 4, sigma)
    smooth = Smooth(net, 4, 0.25)
    with pytest.raises(ValueError, match="one id per image"):
        smooth.certify(x, 10, 10, ids=[0, 1])
    with pytest.raises(ValueError, match="distinct"):
        smooth.certify(x, 10, 10, ids=[0, 0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        smooth.certify(x[0], 10, 10)
    with pytest.raises(ValueError, match="outside 0..2"):
        Smooth(net, 3, 0.25).certify(x, 10, 50)   # the net has 4 classes
    with pytest.raises(RuntimeError, match="torchrun"):
        smooth.certify(x, 10, 10, distributed=True)


def test_forward_is_the_smoothed_soft_classifier(tiny):
    net, x = tiny
    smooth = Smooth(net, 4, 0.25, attack_samples=4000)
    torch.manual_seed(0)
    logp = smooth(x)
    assert logp.shape == (5, 4) and torch.allclose(logp.exp().sum(1), torch.ones(5), atol=1e-5)
    # agrees with the Monte Carlo vote frequencies' arg-max where the vote is clear
    counts = smooth.sample_counts(x, 2000, 1)
    clear = counts.max(1).values > 1500
    assert clear.any()
    assert torch.equal(logp.argmax(1)[clear], counts.argmax(1)[clear])
    x = x.clone().requires_grad_(True)
    smooth(x)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_predict_follows_the_defence_protocol(tiny):
    """``predict(x, batch_size, seed)``: batch_size is images per step and changes nothing;
    seed is the call's noise seed and leaves the defence as it was."""
    net, x = tiny
    smooth = Smooth(net, 4, sigma=0.5, forward_batch=64, seed=3)
    whole = smooth.predict(x, n=200, alpha=0.01)
    assert torch.equal(smooth.predict(x, 2, n=200, alpha=0.01), whole)
    other = smooth.predict(x, seed=11, n=200, alpha=0.01)
    assert smooth.seed == 3
    assert torch.equal(other, Smooth(net, 4, sigma=0.5, seed=11).predict(x, n=200, alpha=0.01))
