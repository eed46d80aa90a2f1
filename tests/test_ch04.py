"""Chapter 4: certification sharded over two processes with torchrun equals one process;
tables and settings; the committed denoisers; the CLI smoke run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from advlab.experiments import ch04

ROOT = Path(__file__).resolve().parents[1]


def _certify(tmp_path: Path, name: str, nproc: int) -> pd.DataFrame:
    out = tmp_path / f"{name}.csv"
    args = ["-m", "advlab.cli", "certify", "--dataset", "cifar10", "--model", "resnet20",
            "--sigma", "0.25", "--N0", "20", "--N", "120", "--images", "5", "--batch-size", "64",
            "--out", str(out), "--quiet", "--device", "cpu"]
    cmd = [sys.executable] + (["-m", "torch.distributed.run", "--standalone",
                               f"--nproc_per_node={nproc}"] + args if nproc > 1 else args)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"on {nproc} process(es)" in proc.stdout
    return pd.read_csv(out)


def test_torchrun_two_processes_equal_one(mirror, models_mirror, tmp_path):
    one = _certify(tmp_path, "one", 1)
    two = _certify(tmp_path, "two", 2)
    assert one.id.tolist() == [0, 2000, 4000, 6000, 8000]
    pd.testing.assert_frame_equal(one, two)
    assert (one.radius >= 0).all() and set(one.predict) <= set(range(-1, 10))
    assert (one.radius[one.predict == -1] == 0).all()


def test_settings_profiles_and_seed_tables():
    assert ch04.settings("paper")["cifar_n"] == 10_000 and ch04.settings("paper")["cifar_images"] == 500
    assert ch04.settings("full")["cifar_n"] < ch04.settings("paper")["cifar_n"]
    with pytest.raises(ValueError, match="unknown ch04 settings"):
        ch04.settings("smoke", sigmaz=1)
    assert ch04.SOURCE_TABLES["cifar10"].loc["white-box"].tolist() == [56, 41, 28, 19, 16, 13]
    assert ch04.SOURCE_TABLES["imagenet"].loc["black-box"].tolist() == [48, 31, 19, 12, 7, 4]


def test_best_over_sigma_and_caps():
    # two sigmas, three images; sigma 0.5 wins at large radii, sigma 0.25 at small ones
    rows = []
    for sigma, radii, preds in ((0.25, [0.6, 0.3, 0.1], [0, 1, 2]), (0.5, [1.2, 0.0, 0.9], [0, -1, 5])):
        for i in range(3):
            rows.append(dict(dataset="cifar10", config="white-box", sigma=sigma, id=i, label=[0, 1, 2][i],
                             predict=preds[i], radius=radii[i], p_lower=0.9, count=0,
                             correct=int(preds[i] == [0, 1, 2][i])))
    per_image = pd.DataFrame(rows)
    cfg = dict(ch04.settings("smoke"), cifar_n=100)
    best = ch04.best_over_sigma(per_image, cfg).set_index("radius")
    assert best.loc[0.25, "certified_acc"] == pytest.approx(2 / 3) and best.loc[0.25, "sigma"] == 0.25
    assert best.loc[0.75, "certified_acc"] == pytest.approx(1 / 3) and best.loc[0.75, "sigma"] == 0.5
    assert best.loc[0.25, "clean_acc"] == pytest.approx(1.0)
    # N = 100 caps sigma 0.5 at 0.5 * Phi^-1(0.001^(1/100)) = 0.75
    assert not best.loc[0.75, "capped"] and best.loc[1.0, "capped"]
    table = ch04.seed_comparison(best.reset_index(), "cifar10")
    assert table.loc["advlab: white-box", "0.25"].startswith("67 [")
    assert table.loc["paper (ResNet-110): white-box", "0.25"] == "56"


def test_exercise_checkers_accept_the_solution_and_reject_wrong_answers():
    from scipy.stats import beta, norm

    from advlab import exercises
    from advlab.defences.smoothing import max_certifiable_radius, radius
    from advlab.exercises import ch04 as ex
    from advlab.metrics import clopper_pearson_lower
    # the solutions, as the notebook computes them
    p_a = beta.ppf(ex.EX1["alpha"], ex.EX1["n_a"], ex.EX1["n"] - ex.EX1["n_a"] + 1)
    exercises.check("ch04-ex1", ex.EX1["sigma"] * norm.ppf(p_a))
    # the package agrees with the by-hand answers
    lower = float(clopper_pearson_lower(ex.EX1["n_a"], ex.EX1["n"], ex.EX1["alpha"]))
    assert float(radius(lower, ex.EX1["sigma"])) == pytest.approx(ex.ex1_truth(), abs=1e-9)
    exercises.check("ch04-ex2", max_certifiable_radius(ex.EX2["sigma"], ex.EX2["n"], ex.EX2["alpha"]))
    for wrong, hint in ((ex.EX1["sigma"] * norm.ppf(0.97), "point estimate"), (0.1, "Not yet"),
                        (None, "No answer")):
        with pytest.raises(AssertionError, match=hint):
            exercises.check("ch04-ex1", wrong)
    with pytest.raises(AssertionError, match="infinite"):
        exercises.check("ch04-ex2", float("inf"))
    with pytest.raises(AssertionError, match="Not yet"):
        exercises.check("ch04-ex2", 1.0)


def test_committed_denoisers_load_checked_and_within_size_limits(tmp_path, monkeypatch):
    from advlab.models import dncnn as stored
    from advlab.training import denoisers as dncnn
    records = dncnn.manifest()
    names = {f"cifar10-{k}-{s:g}" for k in ("mse", "stab-wb") for s in dncnn.CIFAR_SIGMAS}
    names |= {f"cifar10-stab-bb-{s:g}" for s in dncnn.CIFAR_BB_SIGMAS}
    assert names == set(n for n in records if n.startswith("cifar10-"))  # nothing stale
    sizes = [(dncnn.resource_dir() / r.file).stat().st_size for r in records.values()]
    from advlab.models import vgg  # denoisers and surrogate: at most 6 MB (the PRMs need the rest)
    sizes += [(vgg.resource_dir() / r.file).stat().st_size for r in vgg.manifest().values()]
    assert max(sizes) <= 2_000_000 and sum(sizes) <= 6_000_000
    assert len(list(dncnn.resource_dir().glob("*.pt"))) == len(records)  # no file beside them
    for name, rec in records.items():  # `advlab train-denoiser NAME` reproduces what is committed
        assert rec.recipe == json.loads(json.dumps(dncnn.recipe(name))), name
    den = dncnn.load_denoiser("cifar10-stab-wb-0.25")
    assert not den.training and den.depth == dncnn.RECIPES["cifar10-stab-wb-0.25"]["arch"]["depth"]
    x = torch.rand(2, 3, 32, 32)
    assert den(x).shape == x.shape
    # a tampered file is refused
    folder = tmp_path / "denoisers"
    folder.mkdir()
    for f in dncnn.resource_dir().iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    rec = records["cifar10-mse-0.25"]
    data = bytearray((folder / rec.file).read_bytes())
    data[-1] ^= 1
    (folder / rec.file).write_bytes(bytes(data))
    monkeypatch.setattr(stored, "resource_dir", lambda: folder)
    with pytest.raises(ValueError, match="sha256"):
        dncnn.load_denoiser("cifar10-mse-0.25")
    with pytest.raises(FileNotFoundError, match="train-denoiser"):
        dncnn.load_denoiser("imagenet-mse")


def test_dncnn_starts_as_identity_and_recipes_are_per_sigma():
    from advlab.training import denoisers as dncnn
    net = dncnn.DnCNN(depth=5, width=8)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(net.eval()(x), x)  # last convolution initialised at zero
    with pytest.raises(ValueError, match="DnCNN needs"):
        dncnn.DnCNN(depth=1)
    for s in dncnn.CIFAR_SIGMAS:
        wb = dncnn.recipe(f"cifar10-stab-wb-{s:g}")
        assert wb["sigmas"] == (s,) and wb["init"] == f"cifar10-mse-{s:g}"
        assert wb["classifiers"] == ("resnet56",)
    for s in dncnn.CIFAR_BB_SIGMAS:
        bb = dncnn.recipe(f"cifar10-stab-bb-{s:g}")
        assert bb["sigmas"] == (s,) and bb["init"] == f"cifar10-mse-{s:g}"
        assert "resnet56" not in bb["classifiers"]  # black-box: never the target
    with pytest.raises(ValueError, match="unknown denoiser recipe keys"):
        dncnn.recipe("cifar10-mse-0.25", epoch=3)
    gen = torch.Generator().manual_seed(0)
    noisy = dncnn.noisy((0.5,))(torch.zeros(64, 3, 8, 8), gen)
    assert abs(float(noisy.std()) - 0.5) < 0.02
