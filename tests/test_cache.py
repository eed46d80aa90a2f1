import pytest
import torch

from advlab.cache import ResultCache, atomic_save, config_hash


def test_hash_is_order_independent_and_sensitive():
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_get_or_compute_computes_once(tmp_path):
    cache, calls = ResultCache("t", root=tmp_path), []

    def work():
        calls.append(1)
        return {"v": torch.arange(3)}

    a = cache.get_or_compute("x", {"k": 1}, work)
    b = ResultCache("t", root=tmp_path).get_or_compute("x", {"k": 1}, work)   # a new process
    assert len(calls) == 1 and torch.equal(a["v"], b["v"])
    cache.get_or_compute("x", {"k": 2}, work)
    assert len(calls) == 2 and cache.clear() == 2


def test_interrupted_compute_leaves_nothing(tmp_path):
    cache = ResultCache("t", root=tmp_path)

    def crash():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_compute("x", {}, crash)
    assert not cache.path("x", {}).exists() and not list(tmp_path.rglob("*.tmp"))


def test_atomic_save_leaves_no_temporary_on_failure(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        atomic_save({"bad": Unpicklable()}, tmp_path / "entry.pt")
    assert list(tmp_path.iterdir()) == []


def test_disabled_cache_writes_nothing(tmp_path):
    cache = ResultCache("t", root=tmp_path, enabled=False)
    cache.get_or_compute("x", {}, lambda: {"v": torch.ones(1)})
    assert not (tmp_path / "t").exists()


def test_hit_and_miss_counts(tmp_path):
    cache = ResultCache("t", root=tmp_path)
    for _ in range(3):
        cache.get_or_compute("x", {}, lambda: {"v": torch.ones(1)})
    assert (cache.hits, cache.misses) == (2, 1)
