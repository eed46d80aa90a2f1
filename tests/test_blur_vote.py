import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.defences.base import ABSTAIN, Defence
from advlab.defences.blur_vote import (
    BlurVote,
    add_noise,
    compose_kernels,
    equivalent_gaussian,
    gaussian_blur,
    gaussian_kernel,
    kernel_distance,
    majority_vote,
    three_views,
)


def t(*v):
    return torch.tensor(v)


@pytest.mark.parametrize("p0,p1,p2,expected", [
    ((1,), (1,), (1,), 1),        # unanimous
    ((1,), (1,), (2,), 1),        # input and single blur agree
    ((1,), (2,), (1,), 1),        # input and double blur agree
    ((3,), (2,), (2,), 2),        # the two blurs outvote the input
    ((1,), (2,), (3,), ABSTAIN),   # all differ: reject
    ((0,), (0,), (5,), 0),        # class 0 is a label, not a reject
])
def test_majority_vote_cases(p0, p1, p2, expected):
    assert majority_vote(t(*p0), t(*p1), t(*p2)).item() == expected


def test_majority_vote_batch_and_shape_check():
    v = majority_vote(t(1, 1, 3, 1), t(1, 2, 2, 2), t(2, 1, 2, 3))
    assert v.tolist() == [1, 1, 2, ABSTAIN]
    with pytest.raises(ValueError):
        majority_vote(t(1, 2), t(1), t(1))


def test_add_noise_is_seeded_per_image_and_clamped():
    x = torch.full((4, 3, 8, 8), 0.5)
    seeds = [10, 11, 12, 13]
    a = add_noise(x, 0.25, seeds)
    b = torch.cat([add_noise(x[:1], 0.25, seeds[:1]), add_noise(x[1:], 0.25, seeds[1:])])
    assert torch.equal(a, b)                       # independent of batching
    assert a.min() >= 0 and a.max() <= 1           # clamped
    assert not torch.equal(a[0], a[1])             # different images, different noise
    small = add_noise(x, 0.05, seeds)              # common random numbers across sigma
    assert torch.allclose(((small - 0.5) * 5).clamp(-0.5, 0.5), add_noise(x, 0.25, seeds) - 0.5, atol=1e-5)
    assert add_noise(x, 0.0, seeds) is x
    with pytest.raises(ValueError):
        add_noise(x, -0.1, seeds)
    with pytest.raises(ValueError):
        add_noise(x, 0.1, seeds[:2])


def test_noise_has_the_requested_standard_deviation():
    x = torch.full((2, 3, 64, 64), 0.5)
    n = add_noise(x, 0.1, [1, 2]) - 0.5   # 0.1 * 5 sd stays inside [0,1]: almost no clamping
    assert abs(float(n.std()) - 0.1) < 0.003


def test_blur_rejects_bad_arguments():
    with pytest.raises(ValueError):
        gaussian_blur(4)
    with pytest.raises(ValueError):
        gaussian_blur(5, 0.0)


def test_kernel_is_normalised_gaussian():
    k = gaussian_kernel(5, 1.0)
    assert k.shape == (5, 5) and abs(float(k.sum()) - 1) < 1e-6
    assert torch.allclose(k, k.T) and k.argmax() == 12
    g = torch.exp(-torch.arange(-2, 3, dtype=torch.float64) ** 2 / 2)
    ref = torch.outer(g, g) / torch.outer(g, g).sum()
    assert torch.allclose(k, ref, atol=1e-6)


def test_two_blurs_equal_their_composed_kernel_in_the_interior():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 40, 40, dtype=torch.float64)
    k = gaussian_kernel(5, 1.0)
    twice = F.conv2d(F.conv2d(x, k[None, None]), k[None, None])          # valid convolutions
    once = F.conv2d(x, compose_kernels(k, k)[None, None])
    assert compose_kernels(k, k).shape == (9, 9)
    assert torch.allclose(twice, once, atol=1e-10)
    blur = gaussian_blur(5, 1.0)                                          # kornia, reflect padding
    kornia_twice = blur(blur(x.float())).double()[..., 4:-4, 4:-4]
    assert torch.allclose(kornia_twice, once, atol=1e-5)


def test_variance_adds_in_quadrature():
    assert equivalent_gaussian(5, 1.0) == (9, math.sqrt(2))
    assert equivalent_gaussian(3, 0.5, times=3) == (7, 0.5 * math.sqrt(3))
    k = gaussian_kernel(5, 1.0)
    twice = compose_kernels(k, k)
    right = kernel_distance(twice, gaussian_kernel(9, math.sqrt(2)))
    seed_claim = kernel_distance(twice, gaussian_kernel(7, 1.0))
    assert right < 0.003 < 0.05 < seed_claim
    # second moment of the composed kernel = sum of the two (truncated) kernels' moments
    r = torch.arange(-4, 5, dtype=torch.float64)
    var = float((twice.sum(0) * r ** 2).sum())
    var5 = float((k.sum(0) * torch.arange(-2, 3, dtype=torch.float64) ** 2).sum())
    assert abs(var - 2 * var5) < 1e-5


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def test_three_views_and_vote_object():
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.rand(5, 3, 16, 16)
    defence = BlurVote(model, 5, 1.0)
    assert isinstance(defence, Defence)
    views = three_views(x, defence.blur)
    assert torch.equal(views[0], x)
    assert torch.allclose(views[2], defence.blur(defence.blur(x)))
    p = defence.predict_views(x)
    for key, v in zip(("ns", "ss", "ds"), views):
        assert torch.equal(p[key], model(v).argmax(1))
    assert torch.equal(p["vote"], majority_vote(p["ns"], p["ss"], p["ds"]))
    assert torch.equal(defence.predict(x, batch_size=2), p["vote"])


def test_forward_is_mean_log_softmax_and_differentiable():
    torch.manual_seed(0)
    model = Tiny().eval()
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    defence = BlurVote(model, 5, 1.0)
    out = defence(x)
    ref = torch.stack([F.log_softmax(model(v), 1) for v in three_views(x, defence.blur)]).mean(0)
    assert torch.allclose(out, ref, atol=1e-6)
    out[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("size", [3, 5, 7, 9])
def test_truncated_window_variance(size):
    """A sigma=1 Gaussian cut to a size x size window has the variance of the truncated
    density, sum r^2 exp(-r^2/2) / sum exp(-r^2/2) over the window (0.924 px^2 for 5x5)."""
    import numpy as np
    r = np.arange(size) - size // 2
    w = np.exp(-r ** 2 / 2)
    expected = float((r ** 2 * w).sum() / w.sum())
    k = gaussian_kernel(size, 1.0).sum(0)
    got = float((k.double() * torch.as_tensor(r, dtype=torch.float64) ** 2).sum())
    assert got == pytest.approx(expected, abs=1e-6)
