"""The public repository's CI workflow (.github/workflows/book.yml) passes actionlint, runs
README's test command, and on a release tag builds and publishes the book and the notebooks
for Colab where the badges point."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def _actionlint() -> str:
    found = shutil.which("actionlint") or str(Path(sys.executable).with_name("actionlint"))
    if not Path(found).exists():
        pytest.fail("actionlint is not installed (requirements-dev.txt installs it)")
    return found


def test_actionlint_finds_nothing():
    done = subprocess.run([_actionlint(), str(WORKFLOW.relative_to(ROOT))], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_runs_readmes_command_and_publishes_on_a_release_tag():
    flow = yaml.safe_load(WORKFLOW.read_text())
    on = flow[True] if True in flow else flow["on"]      # YAML 1.1 reads "on" as true
    assert "v*" in on["push"]["tags"]
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"ADVLAB_PROFILE=smoke python -m pytest[^\n`]*", readme).group(0)
    steps = "\n".join(s.get("run", "") for s in flow["jobs"]["test"]["steps"])
    assert re.sub(r"\s*\\\n\s*", " ", steps).count("python -m pytest --nbmake --nbmake-timeout=900 tests notebooks")
    assert command.split("python", 1)[1] in re.sub(r"\s*\\\n\s*", " ", steps)
    publish = flow["jobs"]["publish"]
    assert publish["if"].startswith("startsWith(github.ref, 'refs/tags/v')") and publish["needs"] == "test"
    runs = "\n".join(s.get("run", "") + s.get("uses", "") for s in publish["steps"])
    for needed in ("jupyter-book build . -W -n", "scripts/colab_notebooks.py --out", "book_links.py --check",
                   "deploy-pages", 'cp -r colab-out/notebooks colab-out/student "publish/$TAG/"'):
        assert needed in runs, needed
    branch = next(s["env"]["BRANCH"] for s in publish["steps"] if "BRANCH" in s.get("env", {}))
    assert yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["branch"] == branch
