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


BIB = ROOT / "book" / "references.bib"


def _bib_keys() -> list[str]:
    import re
    return re.findall(r"^@\w+\{([^,\s]+),", BIB.read_text(), re.M)


def test_bibliography_has_no_duplicate_keys():
    """Chapters append their entries to one file: a key added twice breaks the build."""
    keys = _bib_keys()
    assert len(keys) == len(set(keys)), sorted(k for k in set(keys) if keys.count(k) > 1)


def test_chapters_cite_known_keys_and_end_with_their_bibliography():
    import json
    import re
    keys = set(_bib_keys())
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        cited = set(re.findall(r"\{cite:[pt]\}`([^`]+)`", text))
        cited = {k.strip() for group in cited for k in group.split(",")}
        assert cited and cited <= keys, f"{path.name}: unknown keys {sorted(cited - keys)}"
        assert "the seed" not in text.lower() and "seed 00" not in text.lower(), path.name
        assert re.search(r"## References\s*\n```\{bibliography\}\s*\n:filter: docname in docnames", text), path.name
