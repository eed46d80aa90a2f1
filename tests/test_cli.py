"""``advlab run``: errors a user can fix are one line on stderr and exit status 2."""
import urllib.error

import pytest
import torch

from advlab.cli import main
from advlab.config import DeviceUnavailableError
from advlab.data import DataUnavailableError


def refuse(*args, **kwargs):
    raise urllib.error.URLError("no network")


@pytest.fixture
def offline(empty_env, no_network, monkeypatch):
    """No mirror, an empty cache, and every download fails."""
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", refuse)
    return empty_env


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith("advlab: error: ") and "Traceback" not in err and out == ""
    return err


def test_missing_data_is_one_line_and_debug_shows_the_traceback(offline, capsys):
    argv = ["run", "ch02", "--quiet", "--out", str(offline / "out")]
    err = one_line_error(capsys, argv)
    assert "MNIST not found" in err and "ADVLAB_DATA" in err and "no network" in err
    with pytest.raises(DataUnavailableError, match="MNIST not found"):
        main(argv + ["--debug"])
    assert not (offline / "out").exists()


def test_missing_images_offline_weights_and_bad_settings(offline, capsys):
    out = ["--quiet", "--out", str(offline / "out")]
    err = one_line_error(capsys, ["run", "ch01", *out])
    assert "ImageNet sample images not found" in err
    err = one_line_error(capsys, ["run", "ch01", "--model", "resnet50", *out])
    assert "could not get the pretrained resnet50 weights" in err
    err = one_line_error(capsys, ["run", "ch01", "--model", "vgg11", *out])
    assert "model must be one of" in err and "'vgg11'" in err
    err = one_line_error(capsys, ["run", "ch02", "--model", "resnet50", *out])
    assert "ch02 has no model to choose" in err
    if not torch.cuda.is_available():
        err = one_line_error(capsys, ["run", "ch02", "--device", "cuda", *out])
        assert "CUDA is not available" in err
        with pytest.raises(DeviceUnavailableError):
            main(["run", "ch02", "--device", "cuda", "--debug", *out])
