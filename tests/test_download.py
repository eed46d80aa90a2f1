"""The download path a reader without the offline mirrors takes (Colab), end to end against a
real HTTP server on 127.0.0.1 that serves copies of the mirror's files, with every URL
redirected to it by ``ADVLAB_DOWNLOAD_BASE``: download, verify, retry after server errors and
broken transfers, resume of a partial file, a 404, a corrupted body, mirrors in turn."""
import hashlib
import http.server
import shutil
import threading
import urllib.parse
import zipfile
from pathlib import Path

import pytest
import torch

import advlab.download
from advlab import data
from advlab.download import ChecksumError, DownloadError, download, resolve_url
from advlab.models import CIFAR_RESNETS, cifar, load_cifar_resnet

RESNET20 = CIFAR_RESNETS["resnet20"]


class Server:
    """A threaded HTTP server over a folder laid out as ``host/path``, with Range support and
    faults to inject: ``fail`` (the next n requests get 503), ``cut`` (the next n bodies stop
    halfway), ``corrupt`` (every body has one byte flipped), ``ignore_range``."""

    def __init__(self, root: Path):
        self.root, self.requests = root, []
        self.fail = self.cut = 0
        self.corrupt = self.ignore_range = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                if server.fail:
                    server.fail -= 1
                    self.send_error(503, "Busy")
                    return
                path = server.root / urllib.parse.unquote(self.path.lstrip("/"))
                if not path.is_file():
                    self.send_error(404, "Not Found")
                    return
                body = path.read_bytes()
                if server.corrupt:
                    body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
                start = 0
                if self.headers.get("Range") and not server.ignore_range:
                    start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if server.cut:
                    server.cut -= 1
                    self.wfile.write(body[start:start + (len(body) - start) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def put(self, url: str, source: Path) -> Path:
        """Serve a copy of ``source`` where ``url`` is redirected to."""
        parts = urllib.parse.urlsplit(url)
        path = self.root / parts.netloc / parts.path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, path)
        return path


@pytest.fixture
def mirrors(mirror, models_mirror):
    """The offline data and model mirrors (read before ``empty_env`` hides them)."""
    return mirror, models_mirror


@pytest.fixture
def server(mirrors, tmp_path, empty_env, monkeypatch):
    srv = Server(tmp_path / "www")
    monkeypatch.setenv("ADVLAB_DOWNLOAD_BASE", srv.base)
    monkeypatch.setattr(advlab.download, "_sleep", lambda seconds: None)
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def resnet20_url(server, mirrors):
    url = cifar.WEIGHTS_URL.format(RESNET20.file)
    server.put(url, mirrors[1] / "cifar10" / RESNET20.file)
    return url


def test_one_setting_redirects_every_url(monkeypatch):
    url = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/abc/pretrained_models/x.th"
    monkeypatch.delenv("ADVLAB_DOWNLOAD_BASE", raising=False)
    assert resolve_url(url) == url
    monkeypatch.setenv("ADVLAB_DOWNLOAD_BASE", "http://127.0.0.1:8/mirror/")
    assert resolve_url(url) == ("http://127.0.0.1:8/mirror/github.com/akamaster/"
                                "pytorch_resnet_cifar10/raw/abc/pretrained_models/x.th")


def test_weights_urls_are_pinned_to_a_commit():
    url = cifar.WEIGHTS_URL.format(RESNET20.file)
    assert "/master/" not in url and f"/raw/{cifar.WEIGHTS_COMMIT}/" in url
    assert len(cifar.WEIGHTS_COMMIT) == 40


def test_weights_download_verify_and_load(server, resnet20_url, empty_env):
    model = load_cifar_resnet("resnet20")          # no mirror, empty cache: downloaded
    cached = empty_env / "cache" / "models" / RESNET20.file
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == RESNET20.sha256
    assert [p for p, _ in server.requests] == [urllib.parse.urlsplit(
        resolve_url(resnet20_url)).path]
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    load_cifar_resnet("resnet20")                  # from the cache: no second request
    assert len(server.requests) == 1
    assert not list(cached.parent.glob("*.part"))


def test_retry_after_server_errors_and_a_broken_transfer(server, resnet20_url, empty_env):
    server.fail, server.cut = 2, 1                 # 503, 503, half a body, then the rest
    load_cifar_resnet("resnet20")
    ranges = [r for _, r in server.requests]
    assert ranges[:3] == [None, None, None]
    assert ranges[3] is not None and ranges[3].startswith("bytes=")      # resumed, not restarted
    assert int(ranges[3][6:-1]) == (1099231 // 2)
    assert len(server.requests) == 4


def test_resume_of_a_partial_file(server, resnet20_url, empty_env, mirrors):
    dest = empty_env / "cache" / "models" / RESNET20.file
    dest.parent.mkdir(parents=True)
    whole = (mirrors[1] / "cifar10" / RESNET20.file).read_bytes()
    dest.with_name(dest.name + ".part").write_bytes(whole[:300_000])     # a killed download
    download(cifar.WEIGHTS_URL.format(RESNET20.file), dest, sha256=RESNET20.sha256)
    assert server.requests[0][1] == "bytes=300000-" and dest.read_bytes() == whole
    # a server that ignores Range sends everything again: the part is rewritten, not appended
    dest.unlink()
    dest.with_name(dest.name + ".part").write_bytes(whole[:300_000])
    server.ignore_range = True
    download(cifar.WEIGHTS_URL.format(RESNET20.file), dest, sha256=RESNET20.sha256)
    assert dest.read_bytes() == whole


def test_a_404_is_one_line_naming_the_url_and_is_not_retried(server, empty_env):
    url = cifar.WEIGHTS_URL.format("resnet110-1d1ed7c2.th")      # not on the server
    with pytest.raises(DownloadError, match=r"HTTP 404 Not Found for http://127\.0\.0\.1") as err:
        download(url, empty_env / "x.th", sha256_prefix="1d1ed7c2")
    assert "\n" not in str(err.value) and "resnet110-1d1ed7c2.th" in str(err.value)
    assert len(server.requests) == 1
    with pytest.raises(Exception, match="HTTP 404") as err:      # through the loader
        load_cifar_resnet("resnet110")
    assert "ADVLAB_MODELS" in str(err.value)


def test_a_corrupted_body_is_refused_and_deleted(server, resnet20_url, empty_env):
    server.corrupt = True
    dest = empty_env / "cache" / "models" / RESNET20.file
    with pytest.raises(ChecksumError, match="does not match the published") as err:
        download(resnet20_url, dest, sha256=RESNET20.sha256)
    assert resolve_url(resnet20_url) in str(err.value)
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()
    # a corrupt partial file is caught after the resume and fetched again from the start
    server.corrupt = False
    dest.with_name(dest.name + ".part").write_bytes(b"\0" * 1000)
    download(resnet20_url, dest, sha256=RESNET20.sha256)
    assert [r for _, r in server.requests][-2:] == ["bytes=1000-", None]
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == RESNET20.sha256


def test_a_network_that_stays_down(server, empty_env, monkeypatch):
    server.fail = 100
    with pytest.raises(DownloadError, match="after 3 attempts: HTTP 503"):
        download(server.base + "/x", empty_env / "x", sha256="0" * 64, retries=2)
    assert len(server.requests) == 3


def test_no_download_without_a_checksum(empty_env):
    with pytest.raises(ValueError, match="without a checksum"):
        download("https://example.org/x", empty_env / "x")


def test_mnist_files_from_the_second_mirror(server, mirrors, empty_env):
    """The first mirror lacks the files (404), the second has them; md5 and sha256 checked."""
    names = ["t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    for name in names:
        server.put(data.MNIST_MIRRORS[1] + name, mirrors[0] / "MNIST" / "raw" / name)
        dest = download([m + name for m in data.MNIST_MIRRORS], empty_env / "cache" / name,
                        sha256=data.MNIST_SHA256[name], md5=data.MNIST_MD5[name])
        assert hashlib.md5(dest.read_bytes()).hexdigest() == data.MNIST_MD5[name]
    assert [p.split("/")[1] for p, _ in server.requests] == [
        "ossci-datasets.s3.amazonaws.com", "yann.lecun.com"] * 2


def test_imagenet_archive_is_checked_member_by_member(server, mirrors, empty_env, monkeypatch):
    """GitHub's archive has no published digest: every JPEG in it is checked against the
    manifest (here cut to three files), and only those files are extracted."""
    rows = data.imagenet_manifest()[:3]
    monkeypatch.setattr(data, "imagenet_manifest", lambda: rows)
    archive = empty_env / "archive.zip"
    prefix = f"imagenet-sample-images-{data.IMAGENET_SAMPLES_COMMIT}/"
    with zipfile.ZipFile(archive, "w") as z:
        for row in rows:
            z.write(mirrors[0] / "imagenet-samples" / row["file"], prefix + row["file"])
        z.writestr(prefix + "README.md", "not extracted")
        z.writestr("../escape.JPEG", "never written")
    served = server.put(data.IMAGENET_SAMPLES_URL, archive)
    folder = data._find_imagenet_samples(True, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == sorted(r["file"] for r in rows)
    assert not (empty_env / "escape.JPEG").exists()
    assert not list((empty_env / "cache" / "downloads").glob("*.zip"))    # removed after use

    shutil.rmtree(folder)                          # a member that does not match the manifest
    with zipfile.ZipFile(served, "w") as z:
        for row in rows:
            z.writestr(prefix + row["file"], b"tampered")
    with pytest.raises(data.DataUnavailableError, match=f"{rows[0]['file']} in the archive"):
        data._find_imagenet_samples(True, progress=False)
    assert not (empty_env / "cache" / "imagenet-samples").exists() or \
        not any((empty_env / "cache" / "imagenet-samples").iterdir())


def test_cifar10_archive_has_a_full_sha256(monkeypatch, empty_env):
    """The official archive is fetched with its full sha256 and md5 (not run end to end here:
    it is 170 MB)."""
    calls = []

    def fake(url, dest, **checks):
        calls.append((url, checks))
        raise DownloadError("stop here")
    monkeypatch.setattr(data, "download", fake)
    with pytest.raises(data.DataUnavailableError, match="stop here"):
        data.load_cifar10("test")
    (url, checks), = calls
    assert url == data.CIFAR10_URL and checks["md5"] == "c58f30108f718f92721af3b95e74349a"
    assert len(checks["sha256"]) == 64
