import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("ADVLAB_PROFILE", "smoke")
if not os.environ.get("ADVLAB_CACHE"):
    # One cache for the whole session unless the caller set one: the LeNet is trained and the
    # ImageNet samples decoded once, and the notebooks' kernels (nbmake) inherit it.  Tests
    # that need an empty cache point ADVLAB_CACHE at their own tmp_path.
    _SESSION_CACHE = tempfile.TemporaryDirectory(prefix="advlab-test-cache-")
    os.environ["ADVLAB_CACHE"] = _SESSION_CACHE.name


def _offline_folder(var: str, sub: str, what: str) -> Path:
    """``$var`` when it names a folder holding ``sub``; skipped otherwise, except in CI, where
    it must be present."""
    root = os.environ.get(var)
    if not root or not (Path(root) / sub).exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must set {var} to the {what} (../shared/{var[7:].lower()})")
        pytest.skip(f"{var} does not hold {sub or 'a folder'}: no {what}")
    return Path(root)


@pytest.fixture
def mirror() -> Path:
    """The offline data mirror; skipped without one, except in CI, where it must be present."""
    return _offline_folder("ADVLAB_DATA", "", "offline data mirror")


@pytest.fixture
def models_mirror() -> Path:
    """The offline model weights (``$ADVLAB_MODELS`` with ``cifar10/``); skipped like ``mirror``."""
    return _offline_folder("ADVLAB_MODELS", "cifar10", "offline model weights")


@pytest.fixture(scope="session")
def imagenet_samples():
    """All 1,000 sample images (224 px, greyscale included), decoded once per test session."""
    from advlab.data import load_imagenet_samples
    _offline_folder("ADVLAB_DATA", "imagenet-samples", "offline data mirror")
    return load_imagenet_samples(colour_only=False, progress=False, download=False)


@pytest.fixture(scope="session")
def cifar10_test():
    """The 10,000 CIFAR-10 test images, loaded once per test session."""
    from advlab.data import load_cifar10
    _offline_folder("ADVLAB_DATA", "cifar10_test.npz", "offline data mirror")
    return load_cifar10("test", download=False)


@pytest.fixture(scope="session")
def cifar_fast_logits(cifar10_test):
    """``name -> logits`` of the pretrained CIFAR ResNet on the test set, on the fast path
    (ONNX Runtime), computed once per test session."""
    from advlab.models import load_cifar_resnet, logits
    _offline_folder("ADVLAB_MODELS", "cifar10", "offline model weights")
    done = {}

    def get(name: str):
        if name not in done:
            done[name] = logits(load_cifar_resnet(name, download=False), cifar10_test.x, 500,
                                backend="onnx")
        return done[name]
    return get


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    """No mirror and an empty download cache."""
    monkeypatch.setenv("ADVLAB_DATA", str(tmp_path / "no-mirror"))
    monkeypatch.setenv("ADVLAB_MODELS", str(tmp_path / "no-models"))
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    """Every download fails at once, as without internet (no backoff waits)."""
    import urllib.error

    import advlab.download

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(advlab.download.urllib.request, "urlopen", refuse)
    monkeypatch.setattr(advlab.download, "_sleep", lambda seconds: None)
