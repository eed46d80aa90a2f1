"""Checksums of the files the book reads, and the one function that downloads them.

Every data file and every set of weights is verified against its published digest before it
is used.  :func:`download` is the only way the package fetches anything (urllib, no other
dependency): retries with exponential backoff after network errors and server errors, resume
of a partial ``<file>.part`` with an HTTP ``Range`` request, the full sha256 (and md5, where
that is the published one) of the result checked before it is renamed into place, and one-line
errors that name the URL (a 404, a checksum mismatch, a network that stays down).

``$ADVLAB_DOWNLOAD_BASE`` redirects every download: ``https://host/path`` is fetched from
``$ADVLAB_DOWNLOAD_BASE/host/path`` instead (a local mirror of the official files, or the
test server of ``tests/test_download.py``).
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

#: The setting that redirects every download (see the module docstring).
DOWNLOAD_BASE_ENV = "ADVLAB_DOWNLOAD_BASE"
#: HTTP statuses worth another try (the server or a proxy was busy or failing).
RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)


class ChecksumError(ValueError):
    """A data or weights file does not match its published checksum."""


class DownloadError(OSError):
    """A file could not be downloaded (one line naming the URL and why)."""


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    return file_digests(path, (algorithm,))[algorithm]


def file_digests(path: Path, algorithms: Sequence[str]) -> dict[str, str]:
    """Hex digests of a file for several algorithms, in one read."""
    hashes = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for h in hashes.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashes.items()}


def verify(path: Path, expected: str, algorithm: str = "sha256", hint: str | None = None) -> None:
    """Raise :class:`ChecksumError` unless the file's digest is ``expected``.  ``hint``: how to
    get a good copy (default: delete the file so that it is downloaded again)."""
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ChecksumError(f"{path}: {algorithm} {actual} does not match the published {expected}; "
                            "the file is corrupt or not the official one "
                            f"({hint or 'delete it to download it again'})")


def resource_hint(relative: str) -> str:
    """What to do about a file shipped in ``advlab/resources`` (``relative`` to that folder)
    that fails its checksum."""
    return (f"reinstall advlab (pip install --force-reinstall advlab), or in a git checkout "
            f"restore it with `git checkout -- advlab/resources/{relative}`")


def resolve_url(url: str) -> str:
    """``url``, or its copy under ``$ADVLAB_DOWNLOAD_BASE`` when that is set."""
    base = os.environ.get(DOWNLOAD_BASE_ENV, "").strip()
    if not base:
        return url
    parts = urllib.parse.urlsplit(url)
    return f"{base.rstrip('/')}/{parts.netloc}{parts.path}"


_sleep = time.sleep   # tests replace it


class _Retry(Exception):
    """An attempt failed in a way another attempt may not."""


def download(urls: str | Sequence[str], dest: Path, *, sha256: str | None = None,
             md5: str | None = None, sha256_prefix: str | None = None,
             check: Callable[[Path], None] | None = None, retries: int = 4,
             backoff: float = 1.0, timeout: float = 60.0, progress: bool = True) -> Path:
    """Download ``urls`` (one URL, or mirrors tried in order) to ``dest`` and return ``dest``.

    The file is verified before it is renamed into place: its full ``sha256``, its ``md5``
    (where that is what the publisher gives), only a ``sha256_prefix`` (where no full digest
    is known: said in the error), and ``check(path)`` (raises :class:`ChecksumError`; e.g.
    every member of an archive against a manifest).  At least one of them is required.  An
    existing ``dest`` is verified and returned.

    Network errors, timeouts, bodies cut short and the statuses of :data:`RETRY_STATUSES` are
    tried again ``retries`` times, after ``backoff * 2**k`` seconds, resuming the partial file
    ``dest.part`` with an HTTP Range request (a server that ignores it sends the whole file
    again).  Another 4xx status (404 ...) moves on to the next mirror at once.  A body that
    fails its checksum is deleted; after a resumed transfer the file is fetched once more from
    the start.  Errors: :class:`DownloadError` (an OSError) or :class:`ChecksumError` (a
    ValueError), one line naming the URL.  Concurrent downloads of one file take turns (a
    lock file beside it).
    """
    if sha256 is None and md5 is None and sha256_prefix is None and check is None:
        raise ValueError(f"refusing to download {dest.name} without a checksum to verify")
    urls = [urls] if isinstance(urls, str) else list(urls)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        if dest.exists():
            _verify_download(dest, str(dest), sha256, md5, sha256_prefix, check,
                             "delete it to download it again")
            return dest
        part = dest.with_name(dest.name + ".part")
        errors = []
        for url in map(resolve_url, urls):
            try:
                _download_one(url, part, retries, backoff, timeout, progress,
                              lambda p, u=url: _verify_download(p, u, sha256, md5, sha256_prefix,
                                                                check))
            except (DownloadError, ChecksumError) as err:   # the next mirror, if any
                errors.append(err)
                continue
            os.replace(part, dest)
            return dest
    if len(errors) == 1:
        raise errors[0]
    raise DownloadError("; ".join(map(str, errors)))


def _download_one(url: str, part: Path, retries: int, backoff: float, timeout: float,
                  progress: bool, verify_part: Callable[[Path], None]) -> None:
    """Fetch ``url`` into ``part`` (resuming it) and verify it; see :func:`download`."""
    restarted = False
    for attempt in range(retries + 1):
        resumed = part.exists() and part.stat().st_size > 0
        try:
            _fetch(url, part, timeout, progress)
        except _Retry as err:
            if attempt == retries:
                raise DownloadError(f"could not download {url} after {retries + 1} attempts: "
                                    f"{err}") from None
            _sleep(backoff * 2 ** attempt)
            continue
        try:
            verify_part(part)
            return
        except ChecksumError:
            part.unlink(missing_ok=True)
            if resumed and not restarted:   # the kept part may be what was wrong: once more
                restarted = True
                continue
            raise
    raise DownloadError(f"could not download {url}: the body failed its checksum again")


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """One HTTP request: the rest of ``part`` (Range) or all of it.  Raises :class:`_Retry`
    for what another attempt may cure and :class:`DownloadError` for what it cannot."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "advlab"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:        # nothing left to send: the part is complete
            return
        if err.code in RETRY_STATUSES:
            raise _Retry(f"HTTP {err.code} {err.reason}") from None
        raise DownloadError(f"HTTP {err.code} {err.reason} for {url}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _Retry(getattr(err, "reason", None) or err) from None
    with response:
        if have and response.status != 206:   # the server ignored the Range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, "ab" if have else "wb") as f, \
                tqdm(total=total, initial=have, unit="B", unit_scale=True, leave=False,
                     desc=Path(urllib.parse.urlsplit(url).path).name, disable=not progress) as bar:
            while True:
                try:
                    block = response.read(1 << 20)
                except (OSError, http.client.HTTPException) as err:   # the network, not the disk
                    raise _Retry(f"the transfer broke off ({type(err).__name__})") from None
                if not block:
                    break
                f.write(block)            # a local error (a full disk) is not worth a retry
                bar.update(len(block))
    if total is not None and part.stat().st_size < total:
        raise _Retry(f"the body was cut short ({part.stat().st_size} of {total} bytes)")


def _verify_download(path: Path, source: str, sha256: str | None, md5: str | None,
                     sha256_prefix: str | None, check: Callable[[Path], None] | None,
                     fix: str = "it was deleted: try again") -> None:
    algorithms = [a for a, v in (("sha256", sha256 or sha256_prefix), ("md5", md5)) if v]
    digests = file_digests(path, algorithms) if algorithms else {}
    if sha256 and digests["sha256"] != sha256:
        raise ChecksumError(f"{source}: sha256 {digests['sha256']} does not match the published "
                            f"{sha256}; the file is corrupt or not the official one ({fix})")
    if md5 and digests["md5"] != md5:
        raise ChecksumError(f"{source}: md5 {digests['md5']} does not match the published {md5}; "
                            f"the file is corrupt or not the official one ({fix})")
    if sha256_prefix and not sha256 and not digests["sha256"].startswith(sha256_prefix):
        raise ChecksumError(f"{source}: sha256 {digests['sha256']} does not start with "
                            f"{sha256_prefix}, the only part of its digest that is published "
                            f"(its file name); the file is corrupt or not the official one ({fix})")
    if check is not None:
        check(path)


@contextlib.contextmanager
def _locked(dest: Path):
    """Hold an exclusive lock on ``dest.lock`` (where ``fcntl`` exists), so that two processes
    sharing a cache never write one partial file at once."""
    try:
        import fcntl
    except ImportError:      # Windows: no lock
        yield
        return
    with open(dest.with_name(dest.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
