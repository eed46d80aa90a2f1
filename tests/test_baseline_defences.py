"""Chapter 5's baselines on hand-made inputs: region-based classification, randomization and
pixel deflection (its denoiser against scikit-image)."""
import numpy as np
import pytest
import torch
from torch import nn

from advlab.defences.pixel_deflection import deflect, pixel_deflection, pixel_deflection_defence, wavelet_denoise
from advlab.defences.region_based import RegionBased, hypercube_samples
from advlab.defences.resize_pad import random_resize_pad, randomization_defence


class FirstPixel(nn.Module):
    """Class 1 when the first value exceeds 0.5, else class 0 (steep logits)."""

    def forward(self, x):
        s = (x.flatten(1)[:, :1] - 0.5) * 1000
        return torch.cat([-s, s], 1)


def test_hypercube_samples_stay_in_the_cube():
    x = torch.full((2, 3, 4, 4), 0.5)
    torch.manual_seed(0)
    s = hypercube_samples(x, 0.02, 500)
    assert s.shape == (1000, 3, 4, 4)
    assert float((s - 0.5).abs().max()) <= 0.02
    assert float((s - 0.5).abs().max()) > 0.0199          # the corners are reached
    assert abs(float((s - 0.5).mean())) < 1e-3            # uniform, centred
    edge = hypercube_samples(torch.zeros(1, 1, 2, 2), 0.02, 10)
    assert float(edge.min()) == 0.0                        # clipped to [0, 1]


def test_region_based_vote_by_hand(monkeypatch):
    monkeypatch.setenv("ADVLAB_BACKEND", "torch")
    x = torch.full((2, 1, 2, 2), 0.3)
    x[0, 0, 0, 0] = 0.51      # noise in [0.49, 0.53]: class 1 on 3/4 of the cube
    x[1, 0, 0, 0] = 0.495     # noise in [0.475, 0.515]: class 1 on 3/8 of it
    defence = RegionBased(FirstPixel(), radius=0.02, samples=1000, chunk=64)
    torch.manual_seed(0)
    votes = defence.votes(x)
    assert votes.sum(1).tolist() == [1000, 1000]
    assert 700 < int(votes[0, 1]) < 800 and 330 < int(votes[1, 1]) < 420
    assert defence.predict(x, seed=0).tolist() == [1, 0]
    exact = RegionBased(FirstPixel(), radius=0.0, samples=3)
    assert exact.predict(x).tolist() == [1, 0]
    logp = defence(x)
    assert logp.shape == (2, 2) and bool((logp <= 0).all())     # mean log-probabilities
    assert logp.argmax(1).tolist() == [1, 0]
    with pytest.raises(ValueError, match="positive counts"):
        RegionBased(FirstPixel(), samples=0)


def test_random_resize_pad_by_hand():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(200, 1, 1, 1)
    torch.manual_seed(0)
    out = random_resize_pad(x, (2, 2), 4)
    # nearest 4 -> 2 keeps rows and columns 0 and 2
    block = torch.tensor([[0.0, 2.0], [8.0, 10.0]])
    corners = set()
    for img in out[:, 0]:
        row, col = torch.nonzero(img == 2.0).flatten().tolist()   # the block's (0, 1)
        top, left = row, col - 1
        corners.add((top, left))
        assert torch.equal(img[top:top + 2, left:left + 2], block)
        assert float(img.sum()) == float(block.sum())
    assert corners == {(r, c) for r in range(3) for c in range(3)}   # every offset occurs
    assert torch.equal(random_resize_pad(x[:3], (4, 4), 4), x[:3])     # full size: identity
    big = random_resize_pad(x[:5], (5, 6), 7)
    assert big.shape == (5, 1, 7, 7)
    with pytest.raises(ValueError, match="sizes"):
        random_resize_pad(x, (5, 4), 8)


def test_randomization_defence_is_differentiable():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    d = randomization_defence(model, (6, 7), 8)
    x = torch.rand(3, 3, 8, 8, requires_grad=True)
    d(x).sum().backward()
    assert d.randomized and float(x.grad.abs().sum()) > 0


def test_deflect_moves_values_within_the_window():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16, generator=g)
    torch.manual_seed(1)
    out = deflect(x, deflections=30, window=2)
    changed = (out != x).nonzero().tolist()
    assert 0 < len(changed) <= 4 * 30
    per_image = torch.bincount(torch.tensor([c[0] for c in changed]), minlength=4)
    assert bool((per_image <= 30).all())
    for n, c, r, col in changed:      # each new value is the same channel's value nearby
        near = x[n, c, max(r - 2, 0):r + 3, max(col - 2, 0):col + 3]
        assert bool((near == out[n, c, r, col]).any())
    flat = torch.full((2, 3, 8, 8), 0.25)
    assert torch.equal(deflect(flat, 200, 10), flat)
    assert torch.equal(deflect(x, 0, 10), x)


@pytest.mark.parametrize("shape", [(3, 3, 32, 32), (2, 3, 24, 40)])
def test_wavelet_denoise_equals_skimage(shape):
    skimage = pytest.importorskip("skimage.restoration")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(*shape, generator=g, dtype=torch.float64) * 0.8
         + torch.linspace(0, 0.2, shape[-1], dtype=torch.float64))
    ours = wavelet_denoise(x, sigma=0.04)
    for i in range(len(x)):
        ref = skimage.denoise_wavelet(x[i].permute(1, 2, 0).numpy(), sigma=0.04, mode="soft",
                                      method="BayesShrink", convert2ycbcr=True, channel_axis=-1)
        assert np.abs(ours[i].permute(1, 2, 0).numpy() - ref).max() < 1e-9
    assert float((ours - x).abs().mean()) > 1e-3                  # it does denoise


def test_pixel_deflection_defence_shape():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    d = pixel_deflection_defence(model, 50, 5, 0.04)
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    d(x).sum().backward()                                        # BPDA: identity's gradient
    assert d.randomized and not d.differentiable and x.grad is not None
    out = pixel_deflection(x.detach(), 50, 5, 0.04)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    with pytest.raises(ValueError, match="sigma"):
        pixel_deflection_defence(model, 10, 5, 0.0)


def test_pixel_deflection_setting_scales_with_the_image():
    from advlab.defences.pixel_deflection import scaled_deflection
    assert scaled_deflection(224, 224) == (200, 10)          # the study's own size
    assert scaled_deflection(112, 112) == (50, 5)            # a quarter of the area, half the side
    assert scaled_deflection(32, 32) == (4, 1)               # CIFAR: 200 * 1024 / 224^2 = 4.08
    assert scaled_deflection(8, 8) == (1, 1)                 # never below one
    with pytest.raises(ValueError):
        scaled_deflection(0, 32)
