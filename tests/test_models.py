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
