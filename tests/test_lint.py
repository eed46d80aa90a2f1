"""The linter the project is configured with (ruff, ``[tool.ruff]`` in pyproject.toml) finds
nothing in the package, the tests and the scripts."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed (requirements-dev.txt installs it)")
    done = subprocess.run([ruff, "check", "advlab", "tests", "scripts", "_ext"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
