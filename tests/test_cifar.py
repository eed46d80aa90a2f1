import shutil

import pytest
import torch

from advlab.download import ChecksumError
from advlab.models import CIFAR_RESNETS, Normalized, WeightsUnavailableError, cifar, load_cifar_resnet


def test_depths_and_parameter_counts_match_he_et_al():
    # akamaster's table (and He et al. 2016, Table 6): 0.27M, 0.46M, 0.66M, 0.85M, 1.7M
    expected = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.73}
    for name, millions in expected.items():
        net = cifar.cifar_resnet(name)
        n_params = sum(p.numel() for p in net.parameters())
        assert round(n_params / 1e6, 2) == millions, (name, n_params)
        weighted = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert len(weighted) == int(name[6:]), name  # depth = conv layers + the linear layer


def test_zero_pad_shortcut_subsamples_and_pads_channels():
    x = torch.randn(2, 16, 8, 8)
    out = cifar.ZeroPadShortcut(8)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0
    block = cifar.BasicBlock(16, 32, stride=2)
    assert isinstance(block.shortcut, cifar.ZeroPadShortcut) and block(x).shape == (2, 32, 4, 4)


def test_unknown_cifar_model():
    with pytest.raises(ValueError, match="resnet56"):
        load_cifar_resnet("resnet18")


def test_resnet110_offline_names_the_variable_and_the_url(empty_env, no_network):
    with pytest.raises(WeightsUnavailableError) as err:
        load_cifar_resnet("resnet110")
    msg = str(err.value)
    assert "ADVLAB_MODELS" in msg and "cifar10/resnet110-1d1ed7c2.th" in msg
    assert cifar.WEIGHTS_URL.format("resnet110-1d1ed7c2.th") in msg and "no network" in msg
    with pytest.raises(WeightsUnavailableError, match="download=True fetches https://"):
        load_cifar_resnet("resnet110", download=False)


def test_wrong_file_in_the_download_cache_fails_its_checksum(empty_env):
    target = empty_env / "cache" / "models" / "resnet110-1d1ed7c2.th"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not the checkpoint")
    with pytest.raises(ChecksumError, match="1d1ed7c2"):
        load_cifar_resnet("resnet110", download=False)


def test_weights_from_the_cache_and_from_a_download(models_mirror, empty_env, monkeypatch):
    source = models_mirror / "cifar10" / "resnet20-12fca82f.th"
    calls = []

    def fake_download(url, dst, sha256=None, sha256_prefix=None, progress=True):
        calls.append((url, sha256, sha256_prefix))
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, dst)
    monkeypatch.setattr("advlab.download.download", fake_download)
    model = load_cifar_resnet("resnet20")          # nothing in the mirror or the cache: download
    assert calls == [(cifar.WEIGHTS_URL.format("resnet20-12fca82f.th"),
                      CIFAR_RESNETS["resnet20"].sha256, "12fca82f")]
    assert "/master/" not in calls[0][0] and cifar.WEIGHTS_COMMIT in calls[0][0]
    assert isinstance(model, Normalized) and not model.training
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    load_cifar_resnet("resnet20")                  # now from the download cache
    assert len(calls) == 1
    cached = empty_env / "cache" / "models" / "resnet20-12fca82f.th"
    cached.write_bytes(cached.read_bytes()[:-10])  # truncated
    with pytest.raises(ChecksumError, match="12fca82f"):
        load_cifar_resnet("resnet20")


def test_checkpoint_keys_are_the_model_keys(models_mirror):
    for name, spec in CIFAR_RESNETS.items():
        path = models_mirror / "cifar10" / spec.file
        if not path.exists():
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        keys = {k.removeprefix("module.") for k in state}
        model_keys = {k for k in cifar.cifar_resnet(name).state_dict() if "num_batches" not in k}
        assert keys == model_keys, name


@pytest.mark.parametrize("name", ["resnet20", "resnet56"])
def test_top1_on_the_cifar10_test_set(name, mirror, models_mirror, cifar10_test, cifar_fast_logits):
    """Measured: 91.73% and 93.39%, the repository's reported 100 - 8.27 and 100 - 6.61."""
    acc = 100 * float((cifar_fast_logits(name).argmax(1) == cifar10_test.y).float().mean())
    assert abs(acc - CIFAR_RESNETS[name].reported_top1) <= 0.05, acc
