import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("jupyter-book") is None, reason="jupyter-book not installed")
def test_book_builds_without_warnings(tmp_path):
    """The book builds from the stored notebooks with warnings treated as errors."""
    proc = subprocess.run(["jupyter-book", "build", str(ROOT), "--path-output", str(tmp_path),
                           "-W", "-n", "--keep-going"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    html = tmp_path / "_build" / "html"
    assert (html / "notebooks" / "01_noise_and_smoothing.html").exists()
    assert (html / "book" / "references.html").exists()
