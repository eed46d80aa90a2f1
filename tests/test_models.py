import urllib.error

import pytest
import torch
from torch import nn

from advlab.models import Normalized, WeightsUnavailableError, load_imagenet_model, predict
from advlab.models import imagenet as imnet


class Echo(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x


def test_normalized_wrapper_applies_mean_and_std():
    m = Normalized(Echo(), (0.5, 0.25, 0.0), (0.5, 0.25, 2.0))
    x = torch.rand(2, 3, 4, 4)
    out = m(x)
    assert torch.allclose(out[:, 0], (x[:, 0] - 0.5) / 0.5)
    assert torch.allclose(out[:, 1], (x[:, 1] - 0.25) / 0.25)
    assert torch.allclose(out[:, 2], x[:, 2] / 2)
    with pytest.raises(ValueError):
        m(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError):
        Normalized(Echo(), (0.5,), (0.0,))


def test_unknown_model_name():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        load_imagenet_model("vgg11")


def test_torchvision_weights_offline_give_a_clear_error(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", refuse)
    with pytest.raises(WeightsUnavailableError, match="efficientnet_lite0"):
        load_imagenet_model("resnet50")


def test_efficientnet_lite0_top1_on_the_sample_images(imagenet_samples):
    """Preprocessing check: with the TF-Lite normalisation (x*255-127)/128 the offline model
    gets 88.2% top-1 on all 1,000 sample images; with ImageNet's mean/std it drops to 77.3%."""
    s = imagenet_samples
    model = load_imagenet_model("efficientnet_lite0")
    right = predict(model, s.x, 100) == s.y
    acc = float(right.float().mean())
    assert 0.87 <= acc <= 0.895, acc
    wrong = Normalized(model.model, imnet.IMAGENET_MEAN, imnet.IMAGENET_STD).eval()
    wrong_acc = float((predict(wrong, s.x[:300], 100) == s.y[:300]).float().mean())
    right_acc = float(right[:300].float().mean())
    assert wrong_acc < right_acc - 0.05, (wrong_acc, right_acc)


def test_thread_split_gives_the_one_thread_outputs_and_gradient_in_parts():
    from advlab.models.wrappers import ThreadSplit
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 5)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(9, 3, 6, 6)
    w = torch.randn(9, 5)
    threads = torch.get_num_threads()

    def grad(f, twice=False):
        xg = x.clone().requires_grad_(True)
        out = f(xg)
        g = torch.autograd.grad((out * w).sum(), xg, retain_graph=twice)[0]
        if twice:                          # a second backward pass through the same graph
            g2 = torch.autograd.grad((out * w).sum(), xg)[0]
            assert torch.equal(g, g2)
        return out.detach(), g
    torch.set_num_threads(1)
    try:
        ref_out, ref_grad = grad(model)
    finally:
        torch.set_num_threads(threads)
    for chunk in (4, 2):                   # 3 chunks on 2 threads: the forward is run again
        split = ThreadSplit(model, threads=2, chunk=chunk)
        assert len(split.chunks(x)) == (3 if chunk == 4 else 5)
        out, g = grad(split, twice=chunk == 4)
        assert torch.allclose(out, ref_out, atol=1e-6) and torch.allclose(g, ref_grad, atol=1e-6)
    assert torch.get_num_threads() == threads          # the caller's thread is left alone
    with pytest.raises(ValueError, match="freeze"):
        ThreadSplit(nn.Linear(2, 2))
