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


@pytest.fixture
def mirror() -> Path:
    """The offline data mirror; skipped without one, except in CI, where it must be present."""
    root = os.environ.get("ADVLAB_DATA")
    if not root or not Path(root).is_dir():
        if os.environ.get("CI"):
            pytest.fail("CI must set ADVLAB_DATA to the offline mirror (../shared/data)")
        pytest.skip("ADVLAB_DATA not set: no offline mirror")
    return Path(root)


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    """No mirror and an empty download cache."""
    monkeypatch.setenv("ADVLAB_DATA", str(tmp_path / "no-mirror"))
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path
