import gzip
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from advlab import data
from advlab.download import ChecksumError


def test_manifest_labels_come_from_sorted_wnids():
    rows = data.imagenet_manifest()
    wnids = [r["wnid"] for r in rows]
    assert len(rows) == 1000 and len(set(wnids)) == 1000
    assert wnids == sorted(wnids)
    assert rows[0]["file"] == "n01440764_tench.JPEG"        # class 0 is tench
    assert wnids.index("n04487394") == 875                 # trombone, torchvision's index
    assert data.imagenet_classes()[0] == "tench" and data.imagenet_classes()[875] == "trombone"


def test_is_greyscale_on_made_images():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (8, 8), dtype=np.uint8)
    assert data.is_greyscale(Image.fromarray(grey, "L"))
    assert data.is_greyscale(Image.fromarray(np.stack([grey] * 3, -1), "RGB"))
    nearly = np.stack([grey, grey, np.clip(grey.astype(int) + 3, 0, 255).astype(np.uint8)], -1)
    assert data.is_greyscale(Image.fromarray(nearly, "RGB"))
    colour = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    assert not data.is_greyscale(Image.fromarray(colour, "RGB"))


def test_imagenet_samples_from_mirror(mirror):
    s = data.load_imagenet_samples(colour_only=False, limit=None, progress=False, download=False)
    assert s.x.shape == (1000, 3, 224, 224) and s.x.dtype == torch.float32
    assert 0 <= float(s.x.min()) and float(s.x.max()) <= 1
    assert torch.equal(s.y, torch.arange(1000))
    assert int(s.grey.sum()) == 25                          # 23 single-channel + 2 equal-channel
    assert bool(s.grey[875]) and bool(s.grey[600])         # trombone, hook: RGB files, grey content
    colour = data.load_imagenet_samples(colour_only=True, progress=False, download=False)
    assert len(colour) == 975 and not colour.grey.any()


def test_decoded_samples_are_cached_and_rebuilt_when_unreadable(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path))
    first = data.load_imagenet_samples(limit=5, progress=False, download=False)
    stored, = (tmp_path / "decoded").glob("imagenet-samples-*.pt")
    direct = data._decode_imagenet_samples(data.imagenet_manifest(), True, 5, 256, 224, False, False)
    assert torch.equal(first.x, direct["x"].float() / 255) and first.names == direct["names"]

    def no_decoding(*args):
        raise AssertionError("decoded again")
    monkeypatch.setattr(data, "_decode_imagenet_samples", no_decoding)
    again = data.load_imagenet_samples(limit=5, progress=False, download=False)
    assert torch.equal(again.x, first.x) and torch.equal(again.y, first.y)
    assert again.names == first.names and torch.equal(again.grey, first.grey)
    assert again.source == first.source and again.classes == first.classes
    with pytest.raises(AssertionError, match="decoded again"):   # other settings, other entry
        data.load_imagenet_samples(limit=4, progress=False, download=False)
    with pytest.raises(AssertionError, match="decoded again"):
        data.load_imagenet_samples(limit=5, crop=200, progress=False, download=False)

    monkeypatch.undo()
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path))
    stored.write_bytes(stored.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="unreadable cache file"):
        rebuilt = data.load_imagenet_samples(limit=5, progress=False, download=False)
    assert torch.equal(rebuilt.x, first.x) and stored.stat().st_size > 100_000


def test_missing_mirror_is_a_clear_error(empty_env):
    for load in (lambda: data.load_imagenet_samples(download=False, progress=False),
                 lambda: data.load_mnist("test", download=False),
                 lambda: data.load_cifar10("test", download=False)):
        with pytest.raises(data.DataUnavailableError, match="ADVLAB_DATA"):
            load()


def test_corrupt_file_fails_its_checksum(mirror, empty_env, monkeypatch):
    raw = empty_env / "mirror" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.MNIST_MD5:
        shutil.copy(mirror / "MNIST" / "raw" / name, raw / name)
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes([1, 2, 3]))
    monkeypatch.setenv("ADVLAB_DATA", str(empty_env / "mirror"))
    assert len(data.load_mnist("train", download=False)) == 60000
    with pytest.raises(ChecksumError, match="md5"):
        data.load_mnist("test", download=False)


def test_mnist_from_mirror(mirror):
    test = data.load_mnist("test", download=False)
    assert test.x.shape == (10000, 1, 28, 28) and 0 <= float(test.x.min()) <= float(test.x.max()) <= 1
    assert test.y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    train = data.load_mnist("train", download=False)
    assert torch.bincount(train.y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    with pytest.raises(ValueError):
        data.load_mnist("validation")


def test_cifar10_from_mirror(mirror):
    test = data.load_cifar10("test", download=False)
    assert test.x.shape == (10000, 3, 32, 32) and torch.bincount(test.y).tolist() == [1000] * 10
    assert test.classes[3] == "cat"
    train = data.load_cifar10("train", download=False)
    assert len(train) == 20000 and torch.bincount(train.y).tolist() == [2000] * 10


def test_imageset_subset_keeps_metadata():
    s = data.ImageSet(torch.zeros(4, 3, 2, 2), torch.arange(4), ("a",) * 4, "here",
                      ["w", "x", "y", "z"], torch.tensor([False, True, False, True]))
    sub = s.subset(torch.tensor([3, 1]))
    assert sub.names == ["z", "x"] and sub.y.tolist() == [3, 1] and sub.grey.all()
    assert s.subset(s.grey).names == ["x", "z"]
