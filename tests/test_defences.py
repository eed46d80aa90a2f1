import pytest
import torch
from torch import nn

from advlab.defences.base import ABSTAIN, Defence, Preprocessed


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def quantise(x):
    return torch.round(x * 3) / 3


def random_dim(x):
    """Darkens each image by a random factor (one draw per batch element)."""
    return x * torch.rand(len(x), 1, 1, 1)


def test_preprocessed_predicts_on_the_exact_transform():
    model = Tiny().eval()
    x = torch.rand(7, 3, 10, 10)
    d = Preprocessed(model, quantise)
    with torch.no_grad():
        expected = model(quantise(x)).argmax(1)
    assert torch.equal(d.predict(x, batch_size=3), expected)
    assert torch.equal(d(x).argmax(1), expected)


def test_preprocessed_forward_passes_gradients_by_bpda_or_exactly():
    model = Tiny().eval()
    x = torch.rand(2, 3, 10, 10, requires_grad=True)
    Preprocessed(model, quantise)(x).sum().backward()
    xq = quantise(x.detach()).requires_grad_(True)
    model(xq).sum().backward()
    assert torch.allclose(x.grad, xq.grad)          # BPDA: the model's gradient at t(x)
    blur = nn.AvgPool2d(3, 1, 1)
    x2 = x.detach().clone().requires_grad_(True)
    Preprocessed(model, blur, differentiable=True)(x2).sum().backward()
    x3 = x.detach().clone().requires_grad_(True)
    model(blur(x3)).sum().backward()
    assert torch.allclose(x2.grad, x3.grad)         # exact gradient through a differentiable one


def test_randomised_predict_is_seeded_and_restores_the_rng():
    model = Tiny().eval()
    x = torch.rand(50, 3, 10, 10)
    d = Preprocessed(model, random_dim, randomized=True)
    torch.manual_seed(1)
    state = torch.random.get_rng_state()
    a, b = d.predict(x, seed=5), d.predict(x, seed=5)
    assert torch.equal(a, b) and torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(5)
    with torch.no_grad():
        assert torch.equal(a, model(random_dim(x)).argmax(1))


class Refuser(Defence):
    """Abstains on images whose mean is above 0.5."""

    def __init__(self):
        super().__init__()
        self.model = Tiny().eval()

    def forward(self, x):
        return self.model(x)

    def predict(self, x, batch_size=128, seed=None):
        labels = super().predict(x, batch_size, seed)
        return torch.where(x.mean((1, 2, 3)) > 0.5, torch.full_like(labels, ABSTAIN), labels)


def test_default_predict_and_abstain():
    x = torch.cat([torch.full((2, 3, 10, 10), 0.9), torch.full((2, 3, 10, 10), 0.1)])
    d = Refuser()
    p = d.predict(x, batch_size=3)
    assert p[:2].tolist() == [ABSTAIN, ABSTAIN]
    with torch.no_grad():
        assert torch.equal(p[2:], d.model(x[2:]).argmax(1))
    with pytest.raises(NotImplementedError):
        Defence()(x)


def test_predict_all_equals_one_call_at_a_time():
    from advlab.defences.base import Undefended, predict_all
    model = Tiny().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(20, 3, 10, 10)
    defences = {"bare": Undefended(model), "quantise": Preprocessed(model, quantise),
                "dim": Preprocessed(model, random_dim, randomized=True),
                "blur": Preprocessed(model, nn.AvgPool2d(3, 1, 1))}
    one_by_one = {k: d.predict(x, batch_size=8, seed=3) for k, d in defences.items()}
    together = predict_all(defences, x, batch_size=8, seed=3, threads=2)
    assert list(together) == list(defences)
    assert all(torch.equal(together[k], one_by_one[k]) for k in defences)
    assert torch.get_num_threads() >= 1 and predict_all({}, x) == {}
