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
    # load afresh under this test's cache root (an earlier test may have built the library
    # under a temporary cache and left it loaded)
    monkeypatch.setattr(native, "_STATE", {})
    path = native.library_path(compiler)
    assert native.library() is not None and path.exists()
    monkeypatch.setattr(native, "FLAGS", (*native.FLAGS, "-DADVLAB_OTHER"))
    assert native.library_path(compiler) != path


def _needs_kernels(x):
    if not native.usable(x):
        pytest.skip("no native kernels here")


@pytest.mark.parametrize("masked", [False, True])
def test_tv_planes_on_several_threads_are_bit_identical(masked):
    """The planes are split between threads, each runs the same loop: 1, 2 or 5 threads (more
    threads than some parts have planes) give the same bits."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 3, 19, 23, generator=g)
    _needs_kernels(x)
    mask = (torch.rand(3, 3, 19, 23, generator=g) < 0.3).float() if masked else None
    args = (40, 0.35, 0.35, T.TV_WEIGHT, True, T.FILL_WINDOW)
    one = native.tv_minimize(x, mask, *args, threads=1)
    for threads in (2, 5):
        assert torch.equal(native.tv_minimize(x, mask, *args, threads=threads), one)


def test_jsma_pairs_on_several_threads_are_identical():
    g = torch.Generator().manual_seed(4)
    alpha, beta = torch.randn(11, 50, generator=g), torch.randn(11, 50, generator=g)
    _needs_kernels(alpha)
    domain = torch.rand(11, 50, generator=g) < 0.6
    for increase in (True, False):
        one = native.jsma_pairs(alpha, beta, domain, increase, threads=1)
        for threads in (2, 4):
            assert all(torch.equal(a, b) for a, b in
                       zip(one, native.jsma_pairs(alpha, beta, domain, increase, threads=threads)))
        assert int(one[2].sum()) > 5
