import pytest
import torch
from reference_jsma import reference_jsma
from torch import nn

from advlab.attacks import jsma as jsma_mod
from advlab.attacks.jsma import jsma, jsma_with_stats, max_iterations
from advlab.attacks.targets import random_targets

N_CLASSES = 4
SHAPE = (1, 5, 5)
N_FEATURES = 25


def tiny_model():
    """25 -> 12 (tanh) -> 4 in float64, weights scaled up and the first layer centred on the
    middle of [0, 1] so that predictions vary and targets are reachable."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(N_FEATURES, 12), nn.Tanh(),
                          nn.Linear(12, N_CLASSES)).double().eval()
    with torch.no_grad():
        model[1].weight.mul_(2.0)
        model[1].bias.copy_(-0.5 * model[1].weight.sum(1))
        model[3].weight.mul_(2.0)
    return model


def images(n=8, seed=1, saturated=0.15):
    """Inputs in [0, 1] with some features exactly at 0 and at 1 (outside one of the domains)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *SHAPE, generator=gen, dtype=torch.float64)
    u = torch.rand(n, *SHAPE, generator=gen, dtype=torch.float64)
    x[u < saturated] = 0.0
    x[u > 1 - saturated] = 1.0
    return x


def predicted(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


@pytest.mark.parametrize("theta", [1.0, -1.0, 0.3, -0.4])
@pytest.mark.parametrize("batch_size", [256, 3])
def test_batched_jsma_equals_the_reference(theta, batch_size):
    model = tiny_model()
    x = images()
    target = random_targets(predicted(model, x), N_CLASSES, seed=2)
    gamma = 0.8
    adv, iters = jsma_with_stats(model, x, target, theta=theta, gamma=gamma,
                                 batch_size=batch_size, progress=False)
    ref, ref_iters = reference_jsma(model, x, target, theta=theta, gamma=gamma)
    assert adv.dtype == x.dtype and adv.shape == x.shape and adv.device.type == "cpu"
    assert torch.equal(adv, ref)
    assert torch.equal(iters, ref_iters)
    # the comparison is not vacuous: images were changed and some reached their target
    assert int(iters.sum()) > 0
    assert bool((predicted(model, adv) == target).any())


def test_pair_search_split_into_sub_batches_gives_the_same_result(monkeypatch):
    model = tiny_model()
    x = images(n=10, seed=3)
    target = random_targets(predicted(model, x), N_CLASSES, seed=4)
    whole = jsma(model, x, target, gamma=0.8, progress=False)
    monkeypatch.setitem(jsma_mod.MAX_PAIR_ELEMENTS, "cpu", 2 * N_FEATURES ** 2)  # 2 rows at a time
    split = jsma(model, x, target, gamma=0.8, progress=False)
    assert torch.equal(whole, split)
    assert not torch.equal(whole, x)


def test_all_stopping_rules_are_exercised_and_agree_with_the_reference():
    """Small theta and gamma = 1: images stop on success, on no valid pair and on the budget."""
    model = tiny_model()
    x = images(n=12, seed=5)
    target = random_targets(predicted(model, x), N_CLASSES, seed=6)
    adv, iters = jsma_with_stats(model, x, target, theta=0.05, gamma=1.0, progress=False)
    ref, ref_iters = reference_jsma(model, x, target, theta=0.05, gamma=1.0)
    assert torch.equal(adv, ref) and torch.equal(iters, ref_iters)
    success = predicted(model, adv) == target
    steps = max_iterations(N_FEATURES, 1.0)
    assert success.any()
    assert (~success & (iters < steps)).any()   # stopped early without success: no valid pair


@pytest.mark.parametrize("theta", [1.0, -1.0])
def test_ties_go_to_the_first_pair_in_row_major_order(theta):
    """Integer weights of a linear model: many pairs share the best score."""
    torch.manual_seed(15)
    model = nn.Sequential(nn.Flatten(), nn.Linear(N_FEATURES, N_CLASSES)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.randint(0, 2, (N_CLASSES, N_FEATURES)).double() * 2 - 1)
        model[1].bias.zero_()
    x = images(n=8, seed=16)
    target = random_targets(predicted(model, x), N_CLASSES, seed=17)
    adv, iters = jsma_with_stats(model, x, target, theta=theta, gamma=1.0, progress=False)
    ref, ref_iters = reference_jsma(model, x, target, theta=theta, gamma=1.0)
    assert torch.equal(adv, ref) and torch.equal(iters, ref_iters)
    assert int(iters.sum()) > 0
    w = model[1].weight
    a = w[target]
    b = w.sum(0) - a
    # there are ties: most images have more than one best pair of their domain at the start
    pair_a = a[:, :, None] + a[:, None, :]
    pair_b = b[:, :, None] + b[:, None, :]
    domain = (x < 1 if theta > 0 else x > 0).flatten(1)
    ok = (pair_a > 0) & (pair_b < 0) if theta > 0 else (pair_a < 0) & (pair_b > 0)
    ok &= domain[:, :, None] & domain[:, None, :]
    score = torch.where(ok, -pair_a * pair_b, torch.zeros(())).triu(1).flatten(1)
    n_best = (score == score.max(1, keepdim=True).values).sum(1)
    assert (n_best > 1).sum() >= len(x) // 2


def test_image_stops_when_fewer_than_two_domain_features_remain():
    model = tiny_model()
    x = images(n=6, seed=13)
    x.view(6, -1)[:, 3:] = 1.0               # only features 0, 1, 2 can still increase
    target = random_targets(predicted(model, x), N_CLASSES, seed=14)
    adv, iters = jsma_with_stats(model, x, target, gamma=1.0, progress=False)
    ref, ref_iters = reference_jsma(model, x, target, gamma=1.0)
    assert torch.equal(adv, ref) and torch.equal(iters, ref_iters)
    assert (iters <= 1).all() and (iters == 1).any()
    assert torch.equal(adv.view(6, -1)[:, 3:], x.view(6, -1)[:, 3:])


def test_random_targets_differ_from_labels_and_are_deterministic():
    y = torch.arange(1000) % 10
    t = random_targets(y, 10, seed=7)
    assert t.dtype == torch.long and t.shape == y.shape
    assert not (t == y).any()
    assert t.min() >= 0 and t.max() < 10
    assert torch.equal(t, random_targets(y, 10, seed=7))
    assert not torch.equal(t, random_targets(y, 10, seed=8))
    # every other class is drawn, roughly uniformly
    counts = torch.bincount((t - y) % 10, minlength=10)
    assert counts[0] == 0 and (counts[1:] > 60).all()
    # independent of the global RNG
    torch.manual_seed(123)
    a = random_targets(y, 10, seed=7)
    torch.manual_seed(456)
    assert torch.equal(a, random_targets(y, 10, seed=7))


def test_random_targets_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels must lie"):
        random_targets(torch.tensor([0, 10]), 10)
    with pytest.raises(ValueError, match="at least 2 classes"):
        random_targets(torch.tensor([0]), 1)
    with pytest.raises(TypeError, match="integer"):
        random_targets(torch.tensor([0.5]), 10)


def test_bad_inputs_raise_clear_errors():
    model = tiny_model()
    x = images(n=4)
    t = torch.tensor([0, 1, 2, 3])
    with pytest.raises(ValueError, match="clip range"):
        jsma(model, x * 2, t, progress=False)
    with pytest.raises(ValueError, match="clip range"):
        jsma(model, x - 0.5, t, progress=False)
    with pytest.raises(ValueError, match="one label per input"):
        jsma(model, x, t[:3], progress=False)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\)"):
        jsma(model, x, torch.tensor([0, 1, 2, 4]), progress=False)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\)"):
        jsma(model, x, torch.tensor([0, -1, 2, 3]), progress=False)
    for gamma in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="gamma"):
            jsma(model, x, t, gamma=gamma, progress=False)
    with pytest.raises(ValueError, match="theta"):
        jsma(model, x, t, theta=0.0, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        jsma(model, x, t, batch_size=0, progress=False)
    with pytest.raises(TypeError, match="integer"):
        jsma(model, x, t.double(), progress=False)
    with pytest.raises(ValueError, match="pair scores per image"):
        jsma(model, torch.zeros(1, 3, 224, 224), t[:1], progress=False)


def test_image_already_predicted_as_target_is_returned_unchanged():
    model = tiny_model()
    x = images(n=6)
    pred = predicted(model, x)
    target = random_targets(pred, N_CLASSES, seed=0)
    target[::2] = pred[::2]                  # half of them: the target is already predicted
    adv, iters = jsma_with_stats(model, x, target, gamma=0.8, progress=False)
    assert torch.equal(adv[::2], x[::2])
    assert (iters[::2] == 0).all()
    assert (iters[1::2] > 0).all()


@pytest.mark.parametrize("theta", [1.0, -1.0])
def test_only_domain_features_change_and_at_most_two_per_iteration(theta):
    model = tiny_model()
    x = images(n=8, seed=9, saturated=0.25)
    target = random_targets(predicted(model, x), N_CLASSES, seed=10)
    gamma = 0.5
    adv, iters = jsma_with_stats(model, x, target, theta=theta, gamma=gamma, progress=False)
    domain = x < 1 if theta > 0 else x > 0
    changed = adv != x
    assert changed.any()
    assert not (changed & ~domain).any()
    steps = max_iterations(N_FEATURES, gamma)
    n_changed = changed.flatten(1).sum(1)
    assert (iters <= steps).all()
    assert (n_changed <= 2 * iters).all()
    # changed features moved the right way, to clip(x + theta)
    assert torch.equal(adv[changed], (x[changed] + theta).clamp(0, 1))


def test_iteration_budget_is_respected():
    model = tiny_model()
    x = images(n=8, seed=11)
    target = random_targets(predicted(model, x), N_CLASSES, seed=12)
    adv, iters = jsma_with_stats(model, x, target, theta=0.01, gamma=0.2, progress=False)
    assert max_iterations(N_FEATURES, 0.2) == 2
    assert iters.max() == 2
    assert ((adv != x).flatten(1).sum(1) <= 4).all()


def test_jsma_is_deterministic_and_leaves_inputs_alone():
    model = tiny_model()
    x = images(n=5)
    x_before = x.clone()
    target = random_targets(predicted(model, x), N_CLASSES, seed=3)
    a = jsma(model, x, target, gamma=0.8, progress=False)
    b = jsma(model, x, target, gamma=0.8, batch_size=2, progress=False)
    assert torch.equal(a, b)
    assert torch.equal(x, x_before)


def test_empty_batch():
    model = tiny_model()
    x = torch.empty(0, *SHAPE, dtype=torch.float64)
    adv = jsma(model, x, torch.empty(0, dtype=torch.long), progress=False)
    assert adv.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("increase", [True, False])
def test_native_pair_search_equals_the_torch_search(dtype, increase):
    """The native scan (CPU) returns the pair and validity the broadcasted torch search (GPU)
    returns: the same float operations, ties to the first pair in row-major order (many ties:
    gradients on a coarse grid), features outside the domain ignored, rows without a valid
    pair reported."""
    from advlab import native
    g = torch.Generator().manual_seed(7)
    n = 37                                    # not a multiple of the vector width
    alpha = (torch.randint(-4, 5, (40, n), generator=g) / 4).to(dtype)
    beta = (torch.randint(-4, 5, (40, n), generator=g) / 4).to(dtype)
    if not native.usable(alpha):
        pytest.skip("no native kernels here")
    domain = torch.rand(40, n, generator=g) < 0.7
    domain[0] = False                         # no feature left
    domain[1, 2:] = False                     # one pair only
    alpha[2] = -1.0 if increase else 1.0      # no valid pair
    buffers = torch.empty(2, 6, n, n, dtype=dtype)
    p, q, ok = jsma_mod._best_pairs(alpha, beta, domain, increase, *buffers)
    p2, q2, ok2 = native.jsma_pairs(alpha, beta, domain, increase)
    assert torch.equal(ok, ok2) and not ok[0] and not ok[2] and ok.sum() > 30
    assert torch.equal(p[ok], p2[ok2]) and torch.equal(q[ok], q2[ok2])
    assert bool((p2[ok2] < q2[ok2]).all())


def test_attack_without_native_kernels_is_the_same(monkeypatch):
    model = tiny_model()
    x = images(n=10, seed=8)
    target = random_targets(predicted(model, x), N_CLASSES, seed=9)
    fast = jsma_with_stats(model, x, target, gamma=0.8, progress=False)
    monkeypatch.setenv("ADVLAB_COMPILE", "0")
    slow = jsma_with_stats(model, x, target, gamma=0.8, progress=False)
    assert torch.equal(fast[0], slow[0]) and torch.equal(fast[1], slow[1])
    assert int(fast[1].sum()) > 0


def test_single_threaded_workers_give_the_same_attack():
    """On 2 threads the images are split between single-threaded workers: same results as
    one thread, and torch's thread count is restored."""
    model = tiny_model()
    x = images(n=9, seed=10)
    target = random_targets(predicted(model, x), N_CLASSES, seed=11)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = jsma_with_stats(model, x, target, gamma=0.8, progress=False)
        torch.set_num_threads(2)
        two = jsma_with_stats(model, x, target, gamma=0.8, batch_size=4, progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
