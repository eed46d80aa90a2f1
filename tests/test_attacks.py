import foolbox as fb
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab import attacks
from advlab.attacks import BPDA, EOT, PGD
from advlab.attacks.pgd import margin, project, uniform_in_ball


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()


def conv_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 8 * 8, 4)).eval()


def data(n=8, shape=(3, 4, 4), classes=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g), torch.arange(n) % classes


def test_fgsm_matches_the_closed_form():
    model = tiny_model()
    x, y = data(6)
    eps = 0.03
    adv = attacks.run(model, x, y, "fgsm", [eps], progress=False)[eps]
    xg = x.clone().requires_grad_(True)
    F.cross_entropy(model(xg), y).backward()
    assert torch.allclose(adv, (x + eps * xg.grad.sign()).clamp(0, 1), atol=1e-6)


def test_fgsm_is_foolboxs_and_takes_one_gradient_for_all_epsilons():
    model = conv_model()
    x, y = data(10, (3, 8, 8), 4)
    eps = [0.01, 0.03, 0.1]
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    ours = attacks.run(model, x, y, "fgsm", eps, batch_size=len(x), progress=False)
    assert len(calls) == 1
    _, ref, _ = fb.attacks.FGSM()(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=eps)
    for e, r in zip(eps, ref):
        assert torch.allclose(ours[e], r, atol=1e-6)
    target = (y + 1) % 4              # foolbox's FGSM is untargeted only: the closed form
    ours_t = attacks.run(model, x, y, "fgsm", eps, targets=target, progress=False)
    xg = x.clone().requires_grad_(True)
    F.cross_entropy(model(xg), target).backward()
    for e in eps:
        assert torch.allclose(ours_t[e], (x - e * xg.grad.sign()).clamp(0, 1), atol=1e-6)


@pytest.mark.parametrize("name,norm", [("bim", "linf"), ("linf_pgd", "linf"), ("l2_bim", "l2"),
                                       ("l2_pgd", "l2"), ("fgm", "l2")])
def test_standard_attacks_stay_in_the_ball_and_raise_the_loss(name, norm):
    model = tiny_model()
    x, y = data(8)
    params = {} if name == "fgm" else {"steps": 10}
    advs = attacks.run(model, x, y, name, [0.05, 0.5], batch_size=3, progress=False, **params)
    for eps, adv in advs.items():
        size = eps if norm == "linf" else eps * 2.5 / 10 * 10
        d = (adv - x).flatten(1)
        dist = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
        assert float(dist.max()) <= min(eps, size) + 1e-5
        assert adv.min() >= 0 and adv.max() <= 1
        with torch.no_grad():
            assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)


@pytest.mark.parametrize("norm,fb_attack", [
    ("linf", lambda: fb.attacks.LinfPGD(rel_stepsize=0.25, steps=7, random_start=True)),
    ("l2", lambda: fb.attacks.L2PGD(rel_stepsize=0.25, steps=7, random_start=True)),
    ("linf", lambda: fb.attacks.LinfBasicIterativeAttack(rel_stepsize=0.25, steps=7)),
])
def test_pgd_core_takes_foolboxs_steps(norm, fb_attack):
    """Without mask, early stop or a custom loss the core is foolbox's PGD/BIM, random start
    included (same global-RNG draws)."""
    model = conv_model()
    x, y = data(10, (3, 8, 8), 4)
    eps = 0.05 if norm == "linf" else 0.5
    atk = fb_attack()
    random_start = getattr(atk, "random_start", False)
    torch.manual_seed(7)
    _, ref, _ = atk(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=[eps])
    ours = attacks.run(model, x, y, PGD(norm, 7, rel_stepsize=0.25, random_start=random_start),
                       [eps], seed=7, batch_size=len(x), progress=False)[eps]
    assert torch.allclose(ours, ref[0], atol=1e-6), float((ours - ref[0]).abs().max())


def test_run_is_seeded_and_leaves_the_global_rng_alone():
    model = tiny_model()
    x, y = data(4)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = attacks.run(model, x, y, "linf_pgd", [0.05], steps=2, seed=3, progress=False)[0.05]
    assert torch.equal(torch.random.get_rng_state(), before)
    small = PGD("linf", 2, rel_stepsize=0.1)      # small steps: the random start still shows
    b = attacks.run(model, x, y, small, [0.05], seed=3, progress=False)[0.05]
    c = attacks.run(model, x, y, small, [0.05], seed=3, progress=False)[0.05]
    d = attacks.run(model, x, y, small, [0.05], seed=4, progress=False)[0.05]
    assert torch.equal(b, c) and not torch.equal(b, d)
    e = attacks.run(model, x, y, PGD("linf", 2), [0.05], seed=3, progress=False)[0.05]
    assert torch.allclose(a, e, atol=1e-6)  # foolbox's PGD and the core, same seed


def test_bim_a_follows_bim_until_each_image_flips():
    model = tiny_model()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 3, 4, 4, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)  # all correct at the start
    eps = 0.06
    a = attacks.run(model, x, y, "bim_a", [eps], steps=10, batch_size=16, progress=False)[eps]
    b = attacks.run(model, x, y, "bim", [eps], steps=10, batch_size=16, progress=False)[eps]
    assert (a - x).abs().max() <= eps + 1e-6 and a.min() >= 0 and a.max() <= 1
    with torch.no_grad():
        flipped = model(a).argmax(1) != y
    assert 0 < int(flipped.sum()) < len(x)  # the test covers both cases
    assert torch.allclose(a[~flipped], b[~flipped], atol=1e-6)   # never flipped: every step taken
    moved = lambda v: (v - x).abs().sum((1, 2, 3))  # noqa: E731
    assert (moved(a) <= moved(b) + 1e-5)[flipped].all()         # flipped: stopped early


def old_bim_a(model, x, y, eps, steps, batch_size):
    """The BIM-A loop Chapter 2's stored tables were made with (before the PGD core)."""
    step = 2.5 / steps * eps
    out = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        adv = xb.clone()
        for _ in range(steps):
            adv.requires_grad_(True)
            logits = model(adv)
            still = logits.argmax(1) == yb
            if not bool(still.any()):
                adv = adv.detach()
                break
            grad, = torch.autograd.grad(F.cross_entropy(logits, yb, reduction="sum"), adv)
            with torch.no_grad():
                moved = (xb + (adv + step * grad.sign() - xb).clamp(-eps, eps)).clamp(0, 1)
                adv = torch.where(still.view(-1, 1, 1, 1), moved, adv)
        out.append(adv.detach())
    return torch.cat(out)


def test_bim_a_is_bit_for_bit_the_loop_chapter_2_used():
    model = conv_model()
    x, _ = data(30, (3, 8, 8), 4, seed=5)
    with torch.no_grad():
        y = model(x).argmax(1)
    ours = attacks.run(model, x, y, "bim_a", [0.04], steps=10, batch_size=8, progress=False)[0.04]
    assert torch.equal(ours, old_bim_a(model, x, y, 0.04, 10, 8))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_masked_pgd_leaves_unmasked_pixels_untouched(norm):
    model = conv_model()
    x, y = data(6, (3, 8, 8), 4)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 1:7] = 1
    eps = 0.1 if norm == "linf" else 1.0
    adv = attacks.run(model, x, y, PGD(norm, 5, mask=mask), [eps], progress=False)[eps]
    changed = (adv - x).abs() > 0
    assert not changed[mask.expand_as(x) == 0].any()
    assert changed[mask.expand_as(x) == 1].float().mean() > 0.5


def test_targeted_pgd_moves_towards_the_target():
    model = conv_model()
    x, y = data(16, (3, 8, 8), 4)
    target = (y + 1) % 4
    adv = attacks.run(model, x, y, PGD("linf", 20), [0.3], targets=target, progress=False)[0.3]
    with torch.no_grad():
        assert F.cross_entropy(model(adv), target) < F.cross_entropy(model(x), target)
        assert float((model(adv).argmax(1) == target).float().mean()) > 0.8


def test_margin_loss_and_projection():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]])
    assert margin(logits, torch.tensor([0, 2])).tolist() == [-1.0, 6.0]
    d = torch.tensor([[3.0, 4.0]])
    assert torch.allclose(project(d, 1.0, "l2"), torch.tensor([[0.6, 0.8]]))
    assert torch.equal(project(d, 1.0, "linf"), torch.tensor([[1.0, 1.0]]))
    torch.manual_seed(0)
    r = uniform_in_ball(torch.zeros(500, 3, 2, 2), 0.5, "l2")
    norms = r.flatten(1).norm(dim=1)
    assert float(norms.max()) <= 0.5 + 1e-6 and float(norms.mean()) > 0.4  # mass near the shell


def test_run_checks_its_arguments():
    model, (x, y) = tiny_model(), data(4)
    with pytest.raises(ValueError, match="unknown attack"):
        attacks.make("one_pixel_typo")
    with pytest.raises(ValueError, match="steps"):
        attacks.make("linf_pgd", steps=0)
    with pytest.raises(ValueError, match="same length"):
        attacks.run(model, x, y[:3], "fgsm", [0.1])
    with pytest.raises(ValueError, match="needs epsilons"):
        attacks.run(model, x, y, "fgsm")
    with pytest.raises(ValueError, match="takes no epsilon"):
        attacks.run(model, x, y, "deepfool", [0.1])
    with pytest.raises(ValueError, match="targeted attack"):
        attacks.run(model, x, y, "jsma")
    with pytest.raises(TypeError):
        attacks.run(model, x, y, PGD(), [0.1], steps=3)


def test_minimal_attacks_have_no_epsilon():
    model = conv_model()
    x, y = data(6, (3, 8, 8), 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    out = attacks.run(model, x, y, "deepfool", steps=30, progress=False)
    assert list(out) == [None]
    with torch.no_grad():
        assert float((model(out[None]).argmax(1) != y).float().mean()) >= 0.8


@pytest.mark.parametrize("candidates,steps", [(4, 50), (3, 2), (None, 50)])
def test_deepfool_takes_foolboxs_steps_with_fewer_passes(candidates, steps):
    from advlab.attacks.deepfool import DeepFool
    model = conv_model()
    x, y = data(24, (3, 8, 8), 4, seed=3)
    with torch.no_grad():
        y = model(x).argmax(1)
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    ours = attacks.run(model, x, y, DeepFool(steps, candidates), None, batch_size=len(x),
                       progress=False)[None]
    ours_images = sum(calls)
    calls.clear()
    attack = fb.attacks.L2DeepFoolAttack(steps=steps, candidates=candidates)
    _, ref, _ = attack(fb.PyTorchModel(model, bounds=(0, 1)), x, y, epsilons=[None])
    assert torch.allclose(ours, ref[0], atol=1e-6), float((ours - ref[0]).abs().max())
    with torch.no_grad():
        assert torch.equal(model(ours).argmax(1) != y, model(ref[0]).argmax(1) != y)
    assert ours_images < sum(calls) / 2          # one forward pass serves every candidate class
    with pytest.raises(ValueError, match="untargeted"):
        DeepFool()(model, x, y, target=y)


class Quantise(nn.Module):
    """A non-differentiable transform: rounding to 4 levels (zero gradient almost everywhere)."""

    def forward(self, x):
        return torch.round(x * 3) / 3


def test_bpda_value_is_the_transform_and_gradient_the_identity():
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    w = torch.randn(2, 3, 4, 4)
    out = BPDA(Quantise())(x)
    assert torch.equal(out, Quantise()(x.detach()))
    (out * w).sum().backward()
    assert torch.equal(x.grad, w)          # d/dx sum(w * x) of the identity
    x.grad = None
    (Quantise()(x) * w).sum().backward()
    assert x.grad.abs().sum() == 0         # why BPDA is needed


def test_bpda_with_an_approximation_uses_its_gradient():
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    BPDA(Quantise(), approx=lambda v: 2 * v)(x).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 2.0))


def test_eot_over_a_deterministic_model_is_the_plain_gradient():
    model, (x, y) = conv_model(), data(5, (3, 8, 8), 4)
    xa = x.clone().requires_grad_(True)
    F.cross_entropy(EOT(model, 6)(xa), y).backward()
    xb = x.clone().requires_grad_(True)
    F.cross_entropy(model(xb), y).backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-6)


class RandomFlip(nn.Module):
    """Flips each image left-right with probability 1/2, drawn per batch element."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        flip = torch.rand(len(x)) < 0.5
        return self.model(torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x))


def test_eot_averages_the_draws():
    model, (x, _) = conv_model(), data(3, (3, 8, 8), 4)
    both = torch.stack([F.log_softmax(model(v), 1) for v in (x, x.flip(-1))]).mean(0)
    torch.manual_seed(0)
    many = EOT(RandomFlip(model), 4000, chunk=1000)(x)
    assert torch.allclose(many, both, atol=0.02)   # the mean over draws converges to the expectation
    with pytest.raises(ValueError):
        EOT(model, 0)
