"""Chapter 4: the image-selection rule; certification sharded over two processes with torchrun
equals one process; `advlab certify` checks every argument before any work and caches per
image; collapse flags and the best-over-sigma table; settings; the committed denoisers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from advlab.chapter import SettingsError
from advlab.cli import main
from advlab.data import ImageSet, first_per_class
from advlab.experiments import ch04

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- image selection
def _grouped_and_interleaved(per_class: int = 7, classes: int = 10, seed: int = 0):
    """A toy test set as the offline mirror stores it (grouped by class, official order within
    each class) and as the official files order it (classes interleaved)."""
    g = torch.Generator().manual_seed(seed)
    y_official = torch.arange(classes).repeat(per_class)[torch.randperm(classes * per_class,
                                                                        generator=g)]
    x_official = torch.rand(len(y_official), 3, 4, 4, generator=g)
    official = ImageSet(x_official, y_official, tuple(map(str, range(classes))), "official")
    grouped_order = torch.sort(y_official, stable=True).indices
    return official, official.subset(grouped_order)


def test_first_per_class_picks_the_same_images_from_mirror_and_download():
    official, mirror = _grouped_and_interleaved()
    a, ids_a = first_per_class(official, 3)
    b, ids_b = first_per_class(mirror, 3)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(ids_a, ids_b)
    assert a.y.tolist() == [c for c in range(10) for _ in range(3)]
    assert ids_a[:4].tolist() == [0, 1, 2, 100_000]
    # the first image of class c in the official order is the one with id c * 100000
    for c in range(10):
        first = int((official.y == c).nonzero()[0])
        assert torch.equal(official.x[first], a.x[3 * c])
    with pytest.raises(ValueError, match="per_class"):
        first_per_class(official, 0)
    with pytest.raises(ValueError, match="smallest class"):
        first_per_class(official, 8)


def test_chapter_images_do_not_depend_on_the_file_order(mirror, monkeypatch):
    ours, ids = ch04.cifar_images(2)
    test = ch04.load_cifar10("test")
    # the official order interleaves the classes: shuffle them, keeping each class's order
    order = torch.argsort(torch.rand(len(test), generator=torch.Generator().manual_seed(1)))
    ranks = torch.empty(len(test), dtype=torch.long)
    for c in range(10):
        members = (test.y == c).nonzero().flatten()
        ranks[members] = torch.arange(len(members))
    interleaved = order[torch.argsort(ranks[order] * 10 + test.y[order], stable=True)]
    monkeypatch.setattr(ch04, "load_cifar10", lambda split: test.subset(interleaved))
    theirs, their_ids = ch04.cifar_images(2)
    assert torch.equal(ours.x, theirs.x) and torch.equal(ids, their_ids)
    assert ids.tolist()[:3] == [0, 1, 100_000] and len(ids) == 20


# --------------------------------------------------------------------------- advlab certify
def _certify(tmp_path: Path, name: str, nproc: int) -> pd.DataFrame:
    out = tmp_path / f"{name}.csv"
    args = ["-m", "advlab.cli", "certify", "--dataset", "cifar10", "--model", "resnet20",
            "--sigma", "0.25", "--N0", "20", "--N", "120", "--images", "10", "--batch-size", "64",
            "--out", str(out), "--quiet", "--device", "cpu", "--no-cache"]
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
    assert one.id.tolist() == [c * 100_000 for c in range(10)]   # first_per_class ids
    assert one.label.tolist() == list(range(10))
    pd.testing.assert_frame_equal(one, two)
    assert (one.radius >= 0).all() and set(one.predict) <= set(range(-1, 10))
    assert (one.radius[one.predict == -1] == 0).all()


BASE = ["certify", "--dataset", "cifar10", "--model", "resnet20", "--sigma", "0.25", "--N0", "5",
        "--N", "20", "--images", "10", "--batch-size", "32", "--device", "cpu", "--quiet"]


def _with(**changes) -> list[str]:
    argv = list(BASE)
    for flag, value in changes.items():
        flag = "--" + flag.replace("_", "-")
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


@pytest.mark.parametrize("changes, message", [
    (dict(sigma="inf"), "sigma must be finite"),
    (dict(sigma="nan"), "sigma must be finite"),
    (dict(sigma="0"), "sigma must be a positive noise level"),
    (dict(sigma="-0.5"), "sigma must be a positive noise level"),
    (dict(images="-3"), "CIFAR-10 takes --images 10, 20"),
    (dict(images="20000"), "CIFAR-10 takes --images 10, 20"),
    (dict(images="0"), "CIFAR-10 takes --images 10, 20"),
    (dict(images="15"), "CIFAR-10 takes --images 10, 20"),
    (dict(batch_size="0"), "batch size must be >= 1"),
    (dict(N0="0"), "N0 \\(selection samples\\) must be >= 1"),
    (dict(N="0"), "N \\(estimation samples\\) must be >= 1"),
    (dict(N0="500"), "N0 = 500 exceeds N = 20"),
    (dict(alpha="1.5"), "alpha must lie in"),
    (dict(alpha="nan"), "alpha must be finite"),
    (dict(denoiser="cifar10-stab-wb-0.5"), "was trained for sigma \\[0.5\\], not for --sigma 0.25"),
    (dict(denoiser="cifar10-nonsense"), "is not a committed cifar10 denoiser"),
    (dict(model="efficientnet_lite0"), "unknown cifar10 classifier 'efficientnet_lite0'; known: "
                                       "resnet20"),
    (dict(model="cifar10-mse-0.25"), "unknown cifar10 classifier 'cifar10-mse-0.25'"),
    (dict(model="resnet999"), "unknown cifar10 classifier 'resnet999'"),
    (dict(dataset="imagenet", model="resnet56", images="5"), "unknown imagenet classifier 'resnet56'"),
    (dict(dataset="imagenet", model="efficientnet_lite1", images="5"),
     "ImageNet certification takes one of"),
    (dict(seed="-1"), "seed must be >= 0"),
    (dict(dataset="imagenet", model="efficientnet_lite0", images="488"), "ImageNet takes --images 1"),
])
def test_certify_checks_every_argument_before_any_work(changes, message, tmp_path, capsys,
                                                       monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("certification started before the arguments were checked")
    monkeypatch.setattr(ch04, "certify_images", no_work)
    monkeypatch.setattr("advlab.defences.smoothing.init_distributed", no_work)
    out = tmp_path / "out.csv"
    assert main(_with(**changes) + ["--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("advlab: error: ") and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    import re
    assert re.search(message, captured.err), captured.err
    assert not out.exists()


def test_certify_caches_per_image(mirror, models_mirror, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path / "cache"))
    calls = []
    real = ch04.Smooth.certify

    def counting(self, x, *args, **kwargs):
        calls.append(len(x))
        return real(self, x, *args, **kwargs)
    monkeypatch.setattr(ch04.Smooth, "certify", counting)
    first = tmp_path / "first.csv"
    assert main(BASE + ["--out", str(first)]) == 0
    assert calls == [1] * 10                        # one piece per image
    calls.clear()
    again = tmp_path / "again.csv"
    assert main(BASE + ["--out", str(again), "--batch-size", "7"]) == 0
    assert calls == []                              # every image read back (batch is no key)
    pd.testing.assert_frame_equal(pd.read_csv(first), pd.read_csv(again))
    more = tmp_path / "more.csv"
    assert main(_with(images="20") + ["--out", str(more)]) == 0
    assert calls == [1] * 10                        # only the ten new images
    twenty = pd.read_csv(more)
    assert twenty.id.tolist()[:2] == [0, 1] and len(twenty) == 20
    merged = twenty.set_index("id").loc[pd.read_csv(first).id]
    assert merged.radius.tolist() == pd.read_csv(first).radius.tolist()
    capsys.readouterr()


# --------------------------------------------------------------------------- collapse and tables
def _per_image(rows) -> pd.DataFrame:
    out = []
    for config, sigma, preds, radii in rows:
        for i, (p, r) in enumerate(zip(preds, radii)):
            label = i % 10
            out.append(dict(dataset="cifar10", config=config, sigma=sigma, id=i, label=label,
                            predict=p, radius=r if p >= 0 else 0.0, p_lower=0.9, count=0,
                            correct=int(p == label), n=100, alpha=0.001))
    return pd.DataFrame(out)


def test_collapsed_rows_are_flagged_and_left_out_of_the_best_over_sigma():
    labels = [i % 10 for i in range(20)]
    healthy_025 = ([*labels[:12], *[-1] * 8], [0.3] * 12 + [0] * 8)      # 12 of 20 certified
    healthy_05 = ([*labels[:6], *[-1] * 14], [0.6] * 6 + [0] * 14)
    bird = ([2] * 19 + [-1], [1.4] * 19 + [0])                          # "bird" for 19 of 20
    per_image = _per_image([("white-box", 0.25, *healthy_025), ("white-box", 0.5, *healthy_05),
                            ("white-box", 1.0, *bird), ("no denoiser", 0.25, *bird),
                            ("no denoiser", 1.0, *bird)])
    shares = ch04.answer_shares(per_image, {"cifar10": ch04.CIFAR10_CLASSES}).set_index(
        ["config", "sigma"])
    assert shares.loc[("white-box", 1.0), "collapsed"] and not shares.loc[("white-box", 0.25), "collapsed"]
    assert shares.loc[("white-box", 1.0), "top_name"] == "bird"
    assert shares.loc[("white-box", 1.0), "top_share"] == pytest.approx(0.95)
    assert shares.loc[("white-box", 0.25), "top_share"] == pytest.approx(0.1)
    assert shares.loc[("white-box", 0.25), "answered"] == 12
    table = ch04.per_sigma(per_image, shares.reset_index())
    best = ch04.best_over_sigma(table).set_index(["config", "radius"])
    # the collapsed sigma 1 would "win" at r >= 0.75 with the 2 bird images (10%); it is left out
    assert best.loc[("white-box", 0.25), "certified_acc"] == pytest.approx(12 / 20)
    assert best.loc[("white-box", 0.25), "sigma"] == 0.25
    assert best.loc[("white-box", 0.5), "certified_acc"] == pytest.approx(6 / 20)
    assert best.loc[("white-box", 0.5), "sigma"] == 0.5
    assert best.loc[("white-box", 1.0), "certified_acc"] == 0.0
    assert best.loc[("white-box", 1.0), "collapsed_sigmas"] == [1.0]
    # N = 100 caps sigma 0.5 at 0.5 * Phi^-1(0.001^(1/100)) = 0.75
    assert not best.loc[("white-box", 0.75), "capped"] and best.loc[("white-box", 1.0), "capped"]
    assert np.isnan(best.loc[("no denoiser", 0.25), "certified_acc"])
    view = ch04.source_comparison(best.reset_index(), "cifar10").set_index("configuration")
    assert view.loc["ours: white-box denoiser", "r = 0.25"] == "60% [36, 81] (60) σ = 0.25"
    assert view.loc["ours: no denoiser", "r = 0.25"] == "no σ without collapse"
    assert view.loc["source study (ResNet-110): white-box denoiser", "r = 0.25"] == "56% (72)"
    # the black-box denoiser exists at sigma 0.25 only: its other sigmas are absent, not zeros
    assert ch04.not_trained(("no denoiser", "black-box", "white-box"), (0.25, 0.5, 1.0)) == [
        ("black-box", 0.5), ("black-box", 1.0)]
    assert "not trained (CPU time)" in ch04.not_trained_note(("black-box",), (0.25, 0.5))
    assert ch04.not_trained_note(("white-box",), (0.25, 0.5)) == ""
    with_bb = _per_image([("white-box", 0.25, *healthy_025), ("white-box", 0.5, *healthy_05),
                          ("black-box", 0.25, *healthy_05)])
    t2 = ch04.per_sigma(with_bb, ch04.answer_shares(with_bb, {"cifar10": ch04.CIFAR10_CLASSES}))
    v2 = ch04.source_comparison(ch04.best_over_sigma(t2), "cifar10").set_index("configuration")
    assert v2.loc["ours: black-box denoiser (σ = 0.25 only)", "r = 0.25"] == "30% [12, 54] (30) σ = 0.25"
    assert "ours: white-box denoiser" in v2.index
    assert len(ch04.per_sigma_view(t2)) == 3   # no black-box row at sigma 0.5
    readers = ch04.per_sigma_view(table)
    assert readers.configuration.tolist()[:2] == ["no denoiser", "white-box denoiser"]
    readers = readers.set_index(["σ", "configuration"])
    assert readers.loc[("1", "white-box denoiser"), "most frequent answer"] == "bird 95%: collapsed"
    assert readers.loc[("0.25", "white-box denoiser"), "most frequent answer"] == "airplane 10%"
    assert readers.loc[("0.25", "white-box denoiser"), "r = 0"] == "60% [36, 81]"
    assert readers.loc[("0.25", "white-box denoiser"), "r = 0.5"] == "–"   # beyond the cap 0.375


def test_run_with_an_unknown_model_fails_in_settings_validation(capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("the chapter started before its settings were checked")
    monkeypatch.setattr(ch04.Chapter04, "run", no_work)
    for model, message in (("resnet999", "unknown imagenet classifier 'resnet999'; known: "
                                         "efficientnet_lite0"),
                           ("imagenet-mse", "unknown imagenet classifier 'imagenet-mse'"),
                           ("resnet56", "unknown imagenet classifier 'resnet56'")):
        assert main(["run", "ch04", "--profile", "smoke", "--model", model, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("advlab: error: Ch04Settings: ") and message in err, err
        assert len(err.strip().splitlines()) == 1
        with pytest.raises(SettingsError, match=message):
            ch04.CHAPTER.settings("full", model=model)


def test_settings_profiles_and_source_tables():
    full, paper = ch04.CHAPTER.settings("full"), ch04.CHAPTER.settings("paper")
    assert paper.n == 10_000 and paper.n_images == 500 and paper.configs == tuple(ch04.CONFIGS)
    assert full.n < paper.n and full.n_images >= 100 and full.alpha == paper.alpha == 0.001
    assert set(full.configs) >= {"no denoiser", "black-box", "white-box"}
    for bad, message in ((dict(configs=("white-box", "grey-box")), "configs"),
                         (dict(n0=2000), "n0 <= n"), (dict(attack_sigma=0.3), "attack_sigma"),
                         (dict(per_class=0), "per_class"), (dict(sigmas=(0.25, 0.25)), "distinct"),
                         (dict(sigmas=(float("inf"),)), "finite")):
        with pytest.raises(SettingsError, match=message):
            ch04.CHAPTER.settings("full", **bad)
    assert ch04.CHAPTER.settings("full", model="resnet50").imagenet_model == "resnet50"
    assert ch04.SOURCE_TABLES["cifar10"].loc["white-box"].tolist() == [56, 41, 28, 19, 16, 13]
    assert ch04.SOURCE_TABLES["imagenet"].loc["black-box"].tolist() == [48, 31, 19, 12, 7, 4]
    assert ch04.denoiser_name("black-box", 0.5) == "cifar10-stab-bb-0.5"
    assert ch04.denoiser_name("no denoiser", 0.5) is None


def test_smooth_cache_identity_ignores_the_batch_not_the_noise():
    from advlab.chapter import identity
    from advlab.defences.smoothing import Smooth
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    a = Smooth(net, 3, 0.25, forward_batch=10)
    assert identity(a) == identity(Smooth(net, 3, 0.25, forward_batch=999))
    assert identity(a) != identity(Smooth(net, 3, 0.5))
    assert identity(a) != identity(Smooth(net, 3, 0.25, seed=1))
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    assert identity(a) != identity(Smooth(other, 3, 0.25))


# --------------------------------------------------------------------------- exercises, denoisers
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
    with pytest.raises(AssertionError, match="Not yet"):     # the full profile's N = 500: no
        exercises.check("ch04-ex2", max_certifiable_radius(0.5, 500, 0.001))   # reading off


def _my_collapse(pred):
    answered = pred[pred >= 0]
    if len(answered) == 0:
        return -1, 0.0
    counts = torch.bincount(answered)
    return int(counts.argmax()), float(counts.max()) / len(pred)


def test_collapse_exercise_accepts_the_solution_on_a_run_and_rejects_wrong_answers(capsys):
    from advlab import exercises
    labels = [i % 10 for i in range(20)]
    per_image = _per_image([("white-box", 0.25, labels[:12] + [-1] * 8, [0.3] * 20),
                            ("no denoiser", 1.0, [2] * 19 + [-1], [1.4] * 20),
                            ("mse", 0.5, [-1] * 20, [0.0] * 20)])
    exercises.check("ch04-ex3", _my_collapse, per_image)
    out = capsys.readouterr().out
    assert "Exercise 3: correct." in out and "3 smoothed classifiers, 1 of them collapsed" in out
    shares = ch04.answer_shares(per_image, {"cifar10": ch04.CIFAR10_CLASSES})
    assert shares.collapsed.tolist() == [False, True, False]     # the chapter's own rule agrees
    over_answered = lambda p: (_my_collapse(p)[0], _my_collapse(p)[1] * len(p) / max(1, int((p >= 0).sum())))  # noqa: E731
    wrong = {"abstentions included": over_answered,
             "Not yet": lambda p: (int(torch.mode(p).values), 0.5),        # counts -1 as a class
             "two numbers": lambda p: _my_collapse(p)[1],
             "returned nothing": lambda p: None,
             "No answer": None}
    for hint, fn in wrong.items():
        with pytest.raises(AssertionError, match=hint):
            exercises.check("ch04-ex3", fn)
    with pytest.raises(AssertionError, match="white-box at σ = 0.25"):     # wrong on the run only
        exercises.check("ch04-ex3", lambda p: _my_collapse(p) if len(p) < 11 else (0, 0.05), per_image)


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
    assert not den.training
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


def test_black_box_denoisers_never_see_the_target():
    from advlab.training import denoisers as dncnn
    for s in dncnn.CIFAR_SIGMAS:
        assert dncnn.recipe(f"cifar10-stab-wb-{s:g}")["classifiers"] == (ch04.TARGET,)
        assert ch04.has_denoiser("white-box", s) and ch04.has_denoiser("no denoiser", s)
        assert ch04.has_denoiser("black-box", s) == (s in dncnn.CIFAR_BB_SIGMAS)
    for s in dncnn.CIFAR_BB_SIGMAS:
        bb = dncnn.recipe(f"cifar10-stab-bb-{s:g}")
        assert bb["classifiers"] == (ch04.SURROGATE,) and ch04.TARGET not in bb["classifiers"]
        assert ch04.denoiser_sigma(f"cifar10-stab-bb-{s:g}") == s
    with pytest.raises(ValueError, match="no denoiser at attack_sigma"):
        ch04.Ch04Settings(attack_config="black-box", attack_sigma=0.5).check()


def test_dncnn_starts_as_identity_and_recipes_check_their_keys():
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


def test_certify_explorer_uses_the_denoiser_of_each_sigma():
    import matplotlib
    matplotlib.use("Agg")
    from advlab.widgets import certify_explorer

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 10, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    used = []

    class Spy(torch.nn.Module):
        def __init__(self, sigma):
            super().__init__()
            self.sigma = sigma

        def forward(self, x):
            used.append(self.sigma)
            return x

    g = torch.Generator().manual_seed(0)
    images = ImageSet(torch.rand(2, 3, 8, 8, generator=g), torch.tensor([0, 1]),
                      ch04.CIFAR10_CLASSES, "made")
    denoisers = {"no denoiser": {0.25: None, 0.5: None},
                 "white-box": {0.25: Spy(0.25), 0.5: Spy(0.5)}}
    box = certify_explorer(Tiny().eval(), denoisers, images, torch.tensor([0, 100_000]), n0=5, n=20)
    choose, config, sigma = box.children[0].children
    assert [label for label, _ in choose.options] == ["id 0: airplane", "id 100000: automobile"]
    assert sigma.options == (0.25, 0.5) and used == []
    config.value = "white-box"
    sigma.value = 0.5
    assert used and set(used) == {0.25, 0.5} and used[-1] == 0.5
    assert box.children[1].outputs[0]["output_type"] == "display_data"
