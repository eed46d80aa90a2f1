"""advlab.native: the build is cached by source, compiler, flags and CPU; without a compiler or
with ADVLAB_COMPILE=0 the library says so (once) and the torch code runs instead."""
import warnings

import pytest
import torch

from advlab import native
from advlab.defences import transforms as T


@pytest.fixture
def fresh_state(monkeypatch):
    """An empty in-process state (the loaded library is put back afterwards)."""
    saved = dict(native._STATE)
    native._STATE.clear()
    yield
    native._STATE.clear()
    native._STATE.update(saved)


def test_without_a_compiler_it_warns_once_and_torch_runs(fresh_state, monkeypatch):
    monkeypatch.setattr(native, "_compiler", lambda: None)
    x = torch.rand(1, 2, 6, 7, generator=torch.Generator().manual_seed(0))
    with pytest.warns(native.NativeWarning, match="no C.. compiler"):
        assert native.library() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # not again
        assert not native.usable(x)
        z = T.tv_minimize(x, steps=5)
    assert z.shape == x.shape and torch.isfinite(z).all()


def test_a_failed_build_warns_with_the_compiler_error(fresh_state, monkeypatch, tmp_path):
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(native, "FLAGS", (*native.FLAGS, "-fno-such-flag-advlab"))
    with pytest.warns(native.NativeWarning, match="failed"):
        assert native.library() is None
    assert not list((tmp_path / "native").glob("*.so"))      # nothing half-written is left


def test_disabled_by_advlab_compile_0(fresh_state, monkeypatch):
    monkeypatch.setenv("ADVLAB_COMPILE", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.library() is None and not native.usable(torch.zeros(1))


def test_built_library_is_cached_and_keyed_by_the_flags(monkeypatch):
    if native._compiler() is None:
        pytest.skip("no C++ compiler")
    compiler = native._compiler()
    path = native.library_path(compiler)
    assert native.library() is not None and path.exists()
    monkeypatch.setattr(native, "FLAGS", (*native.FLAGS, "-DADVLAB_OTHER"))
    assert native.library_path(compiler) != path
