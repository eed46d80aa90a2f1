import os
from pathlib import Path

import pytest

os.environ.setdefault("ADVLAB_PROFILE", "smoke")


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
