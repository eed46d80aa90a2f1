import re

import pytest
import torch

from advlab.cache import ResultCache, atomic_save, config_hash, fingerprint, load_or_discard, tensor_digest


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


@pytest.mark.parametrize("damage", [lambda b: b[:100], lambda b: b"\x00garbage" * 50, lambda b: b""])
def test_unreadable_piece_is_deleted_with_a_warning_and_recomputed(tmp_path, damage):
    cache, calls = ResultCache("t", root=tmp_path), []

    def work():
        calls.append(1)
        return {"v": torch.arange(1000)}

    cache.get_or_compute("x", {"k": 1}, work)
    path = cache.path("x", {"k": 1})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(RuntimeWarning, match=f"unreadable cache file {re.escape(str(path))} "):
        value = cache.get_or_compute("x", {"k": 1}, work)
    assert len(calls) == 2 and torch.equal(value["v"], torch.arange(1000))
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.arange(1000))  # rewritten
    assert (cache.hits, cache.misses) == (0, 2)


def test_load_or_discard_reads_and_reports_absence(tmp_path):
    assert load_or_discard(tmp_path / "none.pt") is None
    atomic_save({"a": [1, 2]}, tmp_path / "ok.pt")
    assert load_or_discard(tmp_path / "ok.pt") == {"a": [1, 2]}


def test_fingerprint_uses_names_else_bytes():
    from advlab.data import ImageSet
    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 2])
    named = ImageSet(x, y, ("a", "b", "c"), "s", ["n1", "n2", "n3"])
    assert fingerprint(named) == fingerprint(ImageSet(x + 1, y, ("a",), "t", ["n1", "n2", "n3"]))
    assert fingerprint(named) != fingerprint(named.subset([0, 2]))
    assert fingerprint(named).startswith("3:") and fingerprint(named.subset([0])).startswith("1:")
    bare = ImageSet(x, y, ("a",), "s")
    assert fingerprint(bare) == fingerprint(ImageSet(x.clone(), y.clone(), ("b",), "t"))
    x2 = x.clone()
    x2[2, 0, 1, 1] += 1e-6                      # one pixel of one image
    assert fingerprint(bare) != fingerprint(ImageSet(x2, y, ("a",), "s"))
    assert fingerprint(bare) != fingerprint(ImageSet(x, y.flip(0), ("a",), "s"))
    assert fingerprint(x) == fingerprint(x.clone()) != fingerprint(x.double())
    assert tensor_digest(x) != tensor_digest(x.view(3, 4))  # the shape counts
