"""Data sets used by the book: the ImageNet sample images, MNIST and CIFAR-10.

Every loader looks first in the offline mirror named by ``$ADVLAB_DATA``, then in the download
cache (``$ADVLAB_CACHE``), and only then downloads the official files (through
:func:`advlab.download.download`: retried, resumed, verified; ``$ADVLAB_DOWNLOAD_BASE``
redirects it).  Files are verified by checksum wherever they come from; when nothing can be
found or fetched the error says which variable to set and what to download.  Images come back
as float tensors in [0, 1], NCHW.
"""
from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF
from tqdm import tqdm

from .cache import atomic_save, atomic_write_bytes, config_hash, load_or_discard
from .config import cache_root, data_root
from .download import ChecksumError, download, verify

IMAGENET_SAMPLES_REPO = "https://github.com/EliSchwartz/imagenet-sample-images"
IMAGENET_SAMPLES_COMMIT = "bc69043"
# GitHub makes this archive on request, so it has no published digest; the download is
# verified member by member instead: every one of the 1,000 JPEGs against the sha256 of the
# package's manifest (resources/imagenet_samples.csv).
IMAGENET_SAMPLES_URL = f"{IMAGENET_SAMPLES_REPO}/archive/{IMAGENET_SAMPLES_COMMIT}.zip"

# Official MNIST md5 sums (the ones torchvision checks).
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# sha256 of the same official files (computed on the offline mirror, whose md5s are the
# official ones: see its PROVENANCE.md).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
# torchvision's mirrors of the official files, tried in order.
MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "http://yann.lecun.com/exdb/mnist/")

# The official CIFAR-10 archive: its md5 is the one its publisher gives (and torchvision
# checks); its sha256 and size are those recorded for the same URL by Hugging Face
# ``datasets`` (``download_checksums`` of the cifar10 dataset card).
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"

# sha256 of the offline CIFAR-10 mirror files (see the mirror's PROVENANCE.md).
CIFAR10_MIRROR_SHA256 = {
    "cifar10_test.npz": "5d61ae8309107c7539a2421f5f72063c38b8b755e2088e6e97e2e4ebd3dca97b",
    "cifar10_train_part0.npz": "3f50a2f1f9f075a7601369ec165641dc456c6ab8e2aa229fa84f8d329422f093",
    "cifar10_train_part1.npz": "c0420bd1091285222c5d9b00fc6079dd20421fe29879d131ecd8a1fac5658d9a",
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

# An RGB file whose channels never differ by more than this (out of 255) is greyscale content.
GREY_TOLERANCE = 8


class DataUnavailableError(FileNotFoundError):
    """No verified copy of a data set could be found or downloaded."""


@dataclass
class ImageSet:
    """Images in [0, 1] (N, C, H, W) with integer labels and per-image metadata."""

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    source: str
    names: list[str] = field(default_factory=list)
    grey: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def sample(self, n: int, seed: int) -> ImageSet:
        """A fixed random subset of ``n`` images (all of them when ``n >= len``), in their
        original order; the same for the same ``seed``."""
        g = torch.Generator().manual_seed(seed)
        return self.subset(torch.randperm(len(self), generator=g)[:n].sort().values)

    def subset(self, index) -> ImageSet:
        index = torch.as_tensor(index)
        pick = index.tolist() if index.dtype != torch.bool else index.nonzero().flatten().tolist()
        return ImageSet(self.x[index], self.y[index], self.classes, self.source,
                        [self.names[i] for i in pick] if self.names else [],
                        None if self.grey is None else self.grey[index])


def _missing(what: str, mirror_sub: str, tried: list[str], download_hint: str) -> DataUnavailableError:
    lines = [f"{what} not found. Looked in:"] + [f"  - {t}" for t in tried]
    lines.append(f"Set ADVLAB_DATA to a folder that holds '{mirror_sub}', or allow the download "
                 f"({download_hint}).")
    return DataUnavailableError("\n".join(lines))


def class_ranks(y: torch.Tensor) -> torch.Tensor:
    """Each image's place among the images of its class, in the order of the set (the official
    order for CIFAR-10, whose offline mirror keeps it within each class)."""
    y = torch.as_tensor(y).long()
    order = torch.sort(y, stable=True).indices
    counts = torch.bincount(y, minlength=int(y.max()) + 1 if len(y) else 0)
    starts = torch.cumsum(counts, 0) - counts
    ranks = torch.empty_like(y)
    ranks[order] = torch.arange(len(y)) - starts[y[order]]
    return ranks


def first_per_class(images: ImageSet, per_class: int) -> tuple[ImageSet, torch.Tensor]:
    """The first ``per_class`` images of every class in the set's order, sorted by (class,
    rank), and their ids ``class * 100_000 + rank``.

    The one image-selection rule of the book for CIFAR-10: the official test files interleave
    the classes and the offline mirror groups them, but both keep the official order within a
    class, so the same ``per_class`` picks the same images, in the same order, with the same ids,
    from either.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    ranks = class_ranks(images.y)
    counts = torch.bincount(images.y)
    if per_class > int(counts.min()):
        raise ValueError(f"per_class={per_class} but the smallest class has {int(counts.min())} images")
    chosen = (ranks < per_class).nonzero().flatten()
    chosen = chosen[torch.argsort(images.y[chosen] * len(images) + ranks[chosen])]
    return images.subset(chosen), images.y[chosen] * 100_000 + ranks[chosen]


# --------------------------------------------------------------------------- ImageNet samples
def imagenet_manifest() -> list[dict]:
    """The 1,000 sample files with their wnid and sha256, sorted by wnid."""
    text = resources.files("advlab.resources").joinpath("imagenet_samples.csv").read_text()
    return list(csv.DictReader(text.splitlines()))


def imagenet_classes() -> tuple[str, ...]:
    """Human-readable names of the 1,000 ImageNet classes, in torchvision's (sorted-wnid) order."""
    from torchvision.models import ResNet50_Weights
    return tuple(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def _missing_files(folder: Path, names: list[str]) -> str:
    """``folder``, and which of ``names`` it lacks when it exists but lacks some."""
    if not folder.is_dir():
        return str(folder)
    lacking = [n for n in names if not (folder / n).exists()]
    if not lacking:
        return str(folder)
    more = f" and {len(lacking) - 1} more" if len(lacking) > 1 else ""
    return f"{folder} (it lacks {lacking[0]}{more})"


def _find_imagenet_samples(allow_download: bool, progress: bool = True) -> Path:
    manifest = imagenet_manifest()
    names = [row["file"] for row in manifest]
    tried, candidates = [], []
    if data_root() is not None:
        candidates.append(data_root() / "imagenet-samples")
    candidates.append(cache_root() / "imagenet-samples")
    for folder in candidates:
        if all((folder / n).exists() for n in names):
            return folder
        tried.append(_missing_files(folder, names))
    if allow_download:
        tried.append(IMAGENET_SAMPLES_URL)
        try:
            return _download_imagenet_samples(manifest, progress)
        except (OSError, ValueError) as err:
            raise _missing("ImageNet sample images", "imagenet-samples", tried,
                           f"download failed: {err}") from err
    raise _missing("ImageNet sample images", "imagenet-samples", tried,
                   f"download=True fetches {IMAGENET_SAMPLES_URL}")


def _download_imagenet_samples(manifest: list[dict], progress: bool) -> Path:
    """The sample archive, downloaded and checked member by member against the manifest
    (see :data:`IMAGENET_SAMPLES_URL`); only the manifest's files are extracted, each
    checked again, into ``$ADVLAB_CACHE/imagenet-samples``."""
    import hashlib
    import zipfile
    expected = {row["file"]: row["sha256"] for row in manifest}

    def members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
        found = {Path(info.filename).name: info for info in archive.infolist()
                 if not info.is_dir() and Path(info.filename).name in expected}
        missing = sorted(set(expected) - set(found))
        if missing:
            raise ChecksumError(f"{IMAGENET_SAMPLES_URL}: the archive lacks {missing[0]}"
                                + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        return found

    def check(path: Path) -> None:
        try:
            with zipfile.ZipFile(path) as archive:
                for name, info in members(archive).items():
                    if hashlib.sha256(archive.read(info)).hexdigest() != expected[name]:
                        raise ChecksumError(f"{IMAGENET_SAMPLES_URL}: {name} in the archive does "
                                            "not match its sha256 in the manifest")
        except zipfile.BadZipFile as err:
            raise ChecksumError(f"{IMAGENET_SAMPLES_URL}: not a zip archive ({err})") from None

    archive_path = download(IMAGENET_SAMPLES_URL, cache_root() / "downloads" /
                            f"imagenet-sample-images-{IMAGENET_SAMPLES_COMMIT}.zip",
                            check=check, progress=progress)
    target = cache_root() / "imagenet-samples"
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive_path) as archive:
        for name, info in members(archive).items():
            data = archive.read(info)
            if hashlib.sha256(data).hexdigest() != expected[name]:
                raise ChecksumError(f"{archive_path}: {name} does not match its sha256 in the "
                                    "manifest (delete the archive to download it again)")
            atomic_write_bytes(data, target / name)
    archive_path.unlink()
    return target


def is_greyscale(img: Image.Image, tolerance: int = GREY_TOLERANCE) -> bool:
    """True for single-channel files and for RGB files whose channels (nearly) coincide."""
    if img.mode not in ("RGB", "RGBA"):
        return True
    a = np.asarray(img.convert("RGB"), dtype=np.int16)
    return int(max(np.abs(a[..., 0] - a[..., 1]).max(), np.abs(a[..., 1] - a[..., 2]).max())) <= tolerance


def load_imagenet_samples(colour_only: bool = True, limit: int | None = None, resize: int = 256,
                          crop: int = 224, download: bool = True, progress: bool = True) -> ImageSet:
    """The 1,000 one-per-class ImageNet sample images (the test set of Chapter 1's source study).

    Each image is resized (shorter side ``resize``) and centre-cropped to ``crop`` x ``crop``.
    Labels are the positions of the wnids in the sorted list of all 1,000 wnids.  25 images are
    greyscale (23 single-channel files, 2 RGB files with equal channels); ``colour_only`` drops
    them, leaving the source study's 975.  ``limit`` keeps the first ``limit`` images after filtering.

    The decoded uint8 images are cached under ``$ADVLAB_CACHE/decoded``, keyed by the manifest
    (every file's sha256) and these arguments, so the JPEGs are decoded once per cache.
    """
    manifest = imagenet_manifest()
    key = dict(manifest=[row["sha256"] for row in manifest], colour_only=colour_only, limit=limit,
               resize=resize, crop=crop)
    path = cache_root() / "decoded" / f"imagenet-samples-{config_hash(key)}.pt"
    entry = load_or_discard(path)
    if entry is None:
        entry = _decode_imagenet_samples(manifest, colour_only, limit, resize, crop, download,
                                         progress)
        atomic_save(entry, path)
    return ImageSet(entry["x"].float().div_(255), entry["y"], imagenet_classes(), entry["source"],
                    entry["names"], entry["grey"])


def _decode_imagenet_samples(manifest: list[dict], colour_only: bool, limit: int | None,
                             resize: int, crop: int, download: bool, progress: bool) -> dict:
    """Verify, decode, resize and crop the sample JPEGs: uint8 images and their metadata."""
    folder = _find_imagenet_samples(download, progress)
    wnids = sorted(row["wnid"] for row in manifest)
    index = {w: i for i, w in enumerate(wnids)}
    xs, ys, names, greys = [], [], [], []
    for row in tqdm(manifest, desc="ImageNet samples", disable=not progress, leave=False):
        path = folder / row["file"]
        verify(path, row["sha256"])
        with Image.open(path) as img:
            grey = is_greyscale(img)
            if colour_only and grey:
                continue
            img = TF.center_crop(TF.resize(img.convert("RGB"), resize), crop)
            xs.append(TF.pil_to_tensor(img))
        ys.append(index[row["wnid"]])
        names.append(row["file"])
        greys.append(grey)
        if limit is not None and len(ys) >= limit:
            break
    return {"x": torch.stack(xs), "y": torch.tensor(ys), "grey": torch.tensor(greys),
            "names": names, "source": str(folder)}


# --------------------------------------------------------------------------- MNIST
def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_mnist(allow_download: bool) -> Path:
    tried, candidates = [], []
    if data_root() is not None:
        candidates.append(data_root() / "MNIST" / "raw")
    candidates.append(cache_root() / "MNIST" / "raw")
    for folder in candidates:
        if all((folder / name).exists() for name in MNIST_MD5):
            return folder
        tried.append(_missing_files(folder, list(MNIST_MD5)))
    if allow_download:
        folder = cache_root() / "MNIST" / "raw"
        tried.append(MNIST_MIRRORS[0])
        try:
            for name in MNIST_MD5:
                download([m + name for m in MNIST_MIRRORS], folder / name,
                         sha256=MNIST_SHA256[name], md5=MNIST_MD5[name], progress=False)
        except (OSError, ValueError) as err:
            raise _missing("MNIST", "MNIST/raw", tried, f"download failed: {err}") from err
        return folder
    raise _missing("MNIST", "MNIST/raw", tried, f"download=True fetches {MNIST_MIRRORS[0]}")


def load_mnist(split: str = "train", download: bool = True) -> ImageSet:
    """MNIST ``train`` (60,000) or ``test`` (10,000) as (N, 1, 28, 28) floats in [0, 1]."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    folder = _find_mnist(download)
    prefix = "train" if split == "train" else "t10k"
    files = {kind: folder / f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"
             for kind in ("images", "labels")}
    for path in files.values():
        verify(path, MNIST_MD5[path.name], "md5")
    x = torch.from_numpy(_read_idx(files["images"]).copy()).unsqueeze(1).float().div_(255)
    y = torch.from_numpy(_read_idx(files["labels"]).astype(np.int64))
    return ImageSet(x, y, tuple(str(d) for d in range(10)), str(folder))


# --------------------------------------------------------------------------- CIFAR-10
#: Training images in each of the mirror's ``cifar10_train_part*.npz`` files.
CIFAR10_MIRROR_PART_SIZE = 10_000


def load_cifar10(split: str = "test", download: bool = True, first: int | None = None) -> ImageSet:
    """CIFAR-10 ``train`` or ``test`` as (N, 3, 32, 32) floats in [0, 1].

    The offline mirror holds the full test set (grouped by class, official order within each
    class) and 20,000 of the 50,000 training images; with internet the official files are used.
    ``first``: a hint that only the first ``first`` training images are needed; when they lie
    in the mirror's first file (10,000 images), only that file is read (and needs to exist).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    tried = []
    if data_root() is not None:
        names = ["cifar10_test.npz"] if split == "test" else ["cifar10_train_part0.npz",
                                                               "cifar10_train_part1.npz"]
        if split == "train" and first is not None and first <= CIFAR10_MIRROR_PART_SIZE:
            names = names[:1]
        paths = [data_root() / n for n in names]
        tried += [str(p) for p in paths]
        if all(p.exists() for p in paths):
            xs, ys = [], []
            for p in paths:
                verify(p, CIFAR10_MIRROR_SHA256[p.name])
                with np.load(p) as z:
                    xs.append(z["x"])
                    ys.append(z["y"])
            x = torch.from_numpy(np.concatenate(xs)).permute(0, 3, 1, 2).float().div_(255)
            y = torch.from_numpy(np.concatenate(ys).astype(np.int64))
            return ImageSet(x.contiguous(), y, CIFAR10_CLASSES, str(data_root()))
    from torchvision.datasets import CIFAR10
    root = cache_root()
    tried.append(f"{root}/cifar-10-batches-py")
    try:
        if download and not (root / "cifar-10-batches-py").is_dir():
            _download_cifar10(root)
        # torchvision checks the md5 of every batch file before it reads them
        ds = CIFAR10(str(root), train=(split == "train"), download=False)
    except Exception as err:
        raise _missing("CIFAR-10", "cifar10_test.npz", tried,
                       f"download={download}: {err}") from err
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255)
    return ImageSet(x.contiguous(), torch.tensor(ds.targets), CIFAR10_CLASSES, str(root))


def _download_cifar10(root: Path) -> None:
    """The official archive (:data:`CIFAR10_URL`, full sha256 and md5 checked), extracted into
    ``root/cifar-10-batches-py`` (tarfile's ``data`` filter: no links, nothing outside)."""
    import tarfile
    archive = download(CIFAR10_URL, root / "downloads" / "cifar-10-python.tar.gz",
                       sha256=CIFAR10_SHA256, md5=CIFAR10_MD5)
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    archive.unlink()
