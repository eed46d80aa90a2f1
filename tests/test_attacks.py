import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab import attacks


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()


def test_fgsm_matches_the_closed_form():
    model = tiny_model()
    x, y = torch.rand(6, 3, 4, 4), torch.arange(6) % 5
    eps = 0.03
    adv = attacks.attack(model, x, y, "fgsm", [eps], progress=False)[eps]
    xg = x.clone().requires_grad_(True)
    F.cross_entropy(model(xg), y).backward()
    ref = (x + eps * xg.grad.sign()).clamp(0, 1)
    assert torch.allclose(adv, ref, atol=1e-6)


@pytest.mark.parametrize("name", ["bim", "pgd"])
def test_iterative_attacks_stay_in_the_ball_and_raise_the_loss(name):
    model = tiny_model()
    x, y = torch.rand(8, 3, 4, 4), torch.arange(8) % 5
    advs = attacks.attack(model, x, y, name, [0.01, 0.05], steps=10, batch_size=3, progress=False)
    for eps, adv in advs.items():
        assert adv.shape == x.shape
        assert float((adv - x).abs().max()) <= eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1
        with torch.no_grad():
            assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)


def test_pgd_is_seeded():
    model = tiny_model()
    x, y = torch.rand(4, 3, 4, 4), torch.arange(4)
    a = attacks.attack(model, x, y, "pgd", [0.05], steps=2, seed=3, progress=False)[0.05]
    b = attacks.attack(model, x, y, "pgd", [0.05], steps=2, seed=3, progress=False)[0.05]
    assert torch.equal(a, b)


def test_bad_arguments():
    with pytest.raises(ValueError):
        attacks.make_attack("jsma")
    with pytest.raises(ValueError):
        attacks.make_attack("pgd", steps=0)
    with pytest.raises(ValueError):
        attacks.attack(tiny_model(), torch.rand(2, 3, 4, 4), torch.zeros(3, dtype=torch.long), "fgsm", [0.1])


def test_bim_early_stop_follows_bim_until_each_image_flips():
    model = tiny_model()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 3, 4, 4, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)  # all correct at the start
    eps = 0.06
    a = attacks.bim_early_stop(model, x, y, eps, steps=10, batch_size=16, progress=False)
    b = attacks.attack(model, x, y, "bim", [eps], steps=10, batch_size=16, progress=False)[eps]
    assert (a - x).abs().max() <= eps + 1e-6 and a.min() >= 0 and a.max() <= 1
    with torch.no_grad():
        flipped = model(a).argmax(1) != y
    assert 0 < int(flipped.sum()) < len(x)  # the test covers both cases
    # never flipped: every step was taken, exactly as foolbox's BIM
    assert torch.allclose(a[~flipped], b[~flipped], atol=1e-6)
    # flipped: it stopped early, so it moved no further than the full BIM
    assert ((a - x).abs().sum((1, 2, 3)) <= (b - x).abs().sum((1, 2, 3)) + 1e-5)[flipped].all()
    with pytest.raises(ValueError):
        attacks.bim_early_stop(model, x, y, 0.0)
