"""``pip install advlab`` from a built wheel: metadata, version, package data, entry point; and
requirements that never make Colab reinstall its own torch."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import advlab

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # build from a copy of what the wheel is made of, so no build/ is left in the checkout
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(ROOT / "advlab", src / "advlab", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE", "requirements-book.txt",
                 "requirements-notebook.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (found,) = out.glob("advlab-*.whl")
    return found


def test_wheel_metadata(wheel):
    assert wheel.name.startswith(f"advlab-{advlab.__version__}-py3-none-any")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(f"advlab-{advlab.__version__}.dist-info/METADATA").decode()
        entry = z.read(f"advlab-{advlab.__version__}.dist-info/entry_points.txt").decode()
    assert "advlab/resources/imagenet_samples.csv" in names        # package data
    assert "advlab/native.cpp" in names                           # built on first use
    assert any(n.startswith("advlab/exercises/ch01") for n in names)
    assert not any(n.startswith(("tests/", "notebooks/", "scripts/")) for n in names)
    assert "advlab = advlab.cli:main" in entry
    assert "License-Expression: MIT" in meta
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    for req in requires:
        if req.startswith(("torch", "torchvision")) and "extra" not in req:
            assert "==" not in req and "<" not in req, f"{req}: would reinstall Colab's torch"
    assert any(r.startswith("ipywidgets>=7.5") for r in requires)


def _install(wheel, target):
    """The wheel installed (without dependencies) into the folder ``target``."""
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                           str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return target


def test_wheel_installs_and_imports(wheel, tmp_path):
    target = _install(wheel, tmp_path / "site")
    code = ("import advlab, advlab.exercises, advlab.report, advlab.cli; "
            "from importlib.resources import files; "
            "print(advlab.__version__, advlab.__file__, "
            "files('advlab.resources').joinpath('imagenet_samples.csv').is_file(), "
            "'ch01-ex1' in advlab.exercises.checkers())")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    version, path, has_data, first = out.stdout.split(" ", 3)
    assert version == advlab.__version__ and path.startswith(str(target)) and has_data == "True"
    assert first.strip() == "True"


def test_installed_copy_builds_its_native_kernels_or_warns_once(wheel, tmp_path):
    """The wheel ships native.cpp: an installed copy compiles it on first use (into its
    ADVLAB_CACHE); where compilation fails (here a 'compiler' that always fails) it warns once,
    with the reason, and TV minimisation runs on torch with the same result."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    target = _install(wheel, tmp_path / "site")
    code = ("import warnings, torch\n"
            "from advlab import native\n"
            "from advlab.defences import transforms as T\n"
            "x = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0))\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    z = [T.tv_minimize(x, steps=7) for _ in range(2)]\n"
            "warned = [str(w.message) for w in caught if w.category is native.NativeWarning]\n"
            "torch.save(z[0], 'z.pt')\n"
            "print(native.SOURCE.parent == __import__('pathlib').Path(T.__file__).parents[1],\n"
            "      native.library() is not None, len(warned), warned[:1])\n")
    results = {}
    for name, extra in [("built", {}), ("no compiler", {"CXX": "false", "PATH": "/nonexistent"})]:
        run_dir = tmp_path / name.replace(" ", "_")
        run_dir.mkdir()
        env = {**os.environ, "PYTHONPATH": str(target), "ADVLAB_CACHE": str(run_dir / "cache"),
               "ADVLAB_COMPILE": "1", **extra}
        if "PATH" in extra:     # no c++/g++/clang++ on PATH; CXX names one that always fails
            env["CXX"] = shutil.which("false")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             cwd=run_dir, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        results[name] = (out.stdout, torch_load(run_dir / "z.pt"))
    built, fallback = results["built"][0], results["no compiler"][0]
    assert built.startswith("True True 0 []"), built
    assert fallback.startswith("True False 1 ["), fallback          # warned once, not silent
    assert "native CPU kernels are not available" in fallback and "false failed" in fallback
    assert (results["built"][1] - results["no compiler"][1]).abs().max() < 1e-5


def torch_load(path):
    import torch
    return torch.load(path, weights_only=True)
