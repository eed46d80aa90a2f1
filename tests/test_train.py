"""The training loop: LeNet weights as before the port, caching, bit-for-bit resumption."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab.models.mnist import LeNet
from advlab.train import fit, model_path, on_outputs
from advlab.training.lenet import RECIPE, train_lenet


def reference_train_lenet(x, y, **recipe):
    """``training.lenet.train_lenet`` as it was before ``advlab.train`` existed."""
    cfg = {**RECIPE, **recipe}
    gen = torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    model = LeNet(cfg["p"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=cfg["lr_decay"])
    bs = cfg["batch_size"]
    for _epoch in range(cfg["epochs"]):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), bs):
            idx = order[i:i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def assert_same_weights(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_lenet_weights_are_those_of_the_loop_before_the_port(mirror):
    from advlab.data import load_mnist
    train = load_mnist("train", download=False)
    x, y = train.x[:1200], train.y[:1200]
    # three epochs so that StepLR (step 2) changes the learning rate once; 1200 is not a
    # multiple of 128, so the last batch of each epoch is short
    recipe = dict(epochs=3, seed=5)
    ref = reference_train_lenet(x, y, **recipe)
    ours = train_lenet(x, y, device="cpu", progress=False, **recipe)
    assert_same_weights(ref, ours)
    assert not ours.training


class Tiny(nn.Module):
    """A small MLP with dropout, so the global generator matters."""

    def __init__(self, d_in=12, d_out=3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, d_out))

    def forward(self, x):
        return self.net(x)


def jitter(x, g):
    """An augmentation drawing from its generator."""
    return x + 0.1 * torch.randn(x.shape, generator=g)


CLEAN = torch.rand(90, 12, generator=torch.Generator().manual_seed(9))


def noisy_images(epoch, g):
    """A batch source for a denoiser: noisy inputs, clean targets, noise drawn from ``g``."""
    order = torch.randperm(len(CLEAN), generator=g)
    for idx in order.split(16):  # lazy: draws from g while being iterated
        yield CLEAN[idx] + 0.2 * torch.randn(len(idx), 12, generator=g), CLEAN[idx]


def recipe_for(kind):
    g = torch.Generator().manual_seed(1)
    if kind == "tensors":
        data = (torch.randn(90, 12, generator=g), torch.randint(0, 3, (90,), generator=g))
        return dict(model=Tiny, data=data, loss=on_outputs(F.cross_entropy), augment=jitter,
                    data_id=None)
    return dict(model=lambda: Tiny(12, 12), data=noisy_images, loss=on_outputs(F.mse_loss),
                augment=None, data_id="noisy-90")


def train(kind, **kwargs):
    r = recipe_for(kind)
    args = dict(optimizer=lambda p: torch.optim.AdamW(p, lr=0.01),
                scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1, 0.7), epochs=3,
                batch_size=16, seed=4, device="cpu", recipe={"kind": kind}, progress=False)
    return fit(**{**r, **args, **kwargs})


class Interrupt(Exception):
    pass


def stop_after(k, counter):
    def on_batch(epoch, batch, loss):
        counter.append((epoch, batch))
        assert math.isfinite(float(loss))
        if len(counter) == k:
            raise Interrupt
    return on_batch


@pytest.mark.parametrize("kind", ["tensors", "source"])
@pytest.mark.parametrize("every,k", [(0.0, 8), (0.0, 6), (math.inf, 9)])
def test_resumed_training_ends_with_the_same_weights(kind, every, k, tmp_path, monkeypatch):
    """6 batches an epoch (90 examples in batches of 16, the last one short)."""
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path))
    whole = train(kind)                        # no name: not cached, no checkpoint
    seen = []
    with pytest.raises(Interrupt):
        train(kind, name="tiny", checkpoint_every=every, on_batch=stop_after(k, seen))
    partial = list((tmp_path / "models").glob("tiny-*.partial.pt"))
    assert len(partial) == 1 and not list((tmp_path / "models").glob("tiny-*[0-9a-f].pt"))
    rest = []
    resumed = train(kind, name="tiny", checkpoint_every=every, on_batch=lambda *a: rest.append(a[:2]))
    # every=0 resumes right after batch k; every=inf from the last epoch end (batch 6)
    done = k if every == 0 else 6 * (k // 6)
    assert rest[0] == divmod(done, 6) and len(rest) == 18 - done
    assert_same_weights(whole, resumed)
    assert not partial[0].exists()
    # the finished model is now read from the cache, not trained again
    again = []
    assert_same_weights(resumed, train(kind, name="tiny", on_batch=lambda *a: again.append(a)))
    assert again == []


def test_cache_key_covers_the_recipe_data_and_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path))
    calls = []
    count = lambda *a: calls.append(a)  # noqa: E731
    train("tensors", name="tiny", on_batch=count)
    assert len(calls) == 18
    train("tensors", name="tiny", on_batch=count)
    assert len(calls) == 18                      # cached
    x, y = recipe_for("tensors")["data"]
    variants = [dict(recipe={"kind": "other"}), dict(seed=5), dict(epochs=2), dict(batch_size=8),
                dict(data=(x + 1e-3, y)), dict(data=(x, (y + 1) % 3)), dict(data_id="named")]
    for v in variants:
        before = len(calls)
        train("tensors", name="tiny", on_batch=count, **v)
        assert len(calls) > before, v                # trained: a different key
    assert len(list((tmp_path / "models").glob("tiny-*.pt"))) == 1 + len(variants)
    # a module instead of a builder: its initial weights are part of the key
    keys = set()
    for seed in (0, 1):
        torch.manual_seed(seed)
        fit(Tiny(), (x, y), on_outputs(F.cross_entropy), lambda p: torch.optim.SGD(p, lr=0.1),
            epochs=1, batch_size=30, name="inst", device="cpu", progress=False,
            on_batch=lambda *a, s=seed: keys.add(s))
    assert keys == {0, 1}
    assert model_path("a", {"k": 1}) != model_path("a", {"k": 2})


def test_unreadable_checkpoints_are_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path))
    whole = train("tensors")
    with pytest.raises(Interrupt):
        train("tensors", name="tiny", checkpoint_every=0.0, on_batch=stop_after(4, []))
    partial, = (tmp_path / "models").glob("tiny-*.partial.pt")
    partial.write_bytes(partial.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="unreadable cache file .*partial"):
        resumed = train("tensors", name="tiny")     # starts again from scratch
    assert_same_weights(whole, resumed)
    final, = (tmp_path / "models").glob("tiny-*.pt")
    final.write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert_same_weights(whole, train("tensors", name="tiny"))


def test_a_batch_source_needs_a_data_id():
    with pytest.raises(ValueError, match="data_id"):
        fit(Tiny, noisy_images, on_outputs(F.mse_loss), lambda p: torch.optim.SGD(p, lr=0.1),
            epochs=1, batch_size=16, name="x", device="cpu")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_resume_under_autocast_and_grad_scaler(dtype, tmp_path, monkeypatch):
    """The CUDA path (autocast; float16 with a GradScaler whose state is checkpointed), forced
    onto the CPU, which supports both."""
    import advlab.train
    assert advlab.train.amp_dtype(torch.device("cpu")) is None
    fp32 = train("tensors")
    monkeypatch.setattr(advlab.train, "amp_dtype", lambda device, amp=True: dtype)
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path))
    whole = train("tensors")
    assert not torch.equal(whole.state_dict()["net.0.weight"], fp32.state_dict()["net.0.weight"])
    with pytest.raises(Interrupt):
        train("tensors", name="tiny", checkpoint_every=0.0, on_batch=stop_after(8, []))
    assert_same_weights(whole, train("tensors", name="tiny"))
