"""Wrong-range, wrong-type and wrong-shape images are refused at every public entry point with
one clear error, instead of a wrong answer (issue 22, item 4)."""
import json

import pytest
import torch

from advlab import attacks
from advlab.chapter import identity
from advlab.defences.base import Undefended
from advlab.defences.blur_vote import BlurVote
from advlab.defences.region_based import RegionBased
from advlab.defences.resize_pad import randomization_defence
from advlab.defences.smoothing import Smooth
from advlab.inference import logits, predict
from advlab.inputs import InputError, check_images, expected_shape
from advlab.models import Normalized
from advlab.models.cifar import IMAGENET_MEAN, IMAGENET_STD, cifar_resnet
from advlab.models.mnist import LeNet


@pytest.fixture(scope="module")
def cifar_model():
    torch.manual_seed(0)
    return Normalized(cifar_resnet("resnet20"), IMAGENET_MEAN, IMAGENET_STD).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def bad_inputs(x):
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    return {"0..255 floats": (x * 255, "divide by 255"),
            "uint8": ((x * 255).to(torch.uint8), "torch.uint8"),
            "normalised": ((x - 0.5) / 0.25, "normalised already"),
            "NaN pixel": (nan, "NaN"),
            "64x64": (torch.rand(2, 3, 64, 64), r"takes images \(N, 3, 32, 32\)"),
            "one image, no batch": (x[0], "add a batch dimension")}


def entry_points(model):
    smooth = Smooth(model, 10, 0.25, n=20, forward_batch=40)
    return {
        "attacks.run": lambda x: attacks.run(model, x, torch.zeros(len(x), dtype=torch.long),
                                             "fgsm", [0.03], progress=False),
        "inference.predict": lambda x: predict(model, x),
        "inference.logits": lambda x: logits(model, x, backend="torch"),
        "Undefended.predict": lambda x: Undefended(model).predict(x),
        "Smooth.predict": lambda x: smooth.predict(x),
        "Smooth.certify": lambda x: smooth.certify(x, 10, 20),
        "Smooth.sample_counts": lambda x: smooth.sample_counts(x, 10, 0),
        "BlurVote.predict": lambda x: BlurVote(model).predict(x),
        "RegionBased.predict": lambda x: RegionBased(model, samples=5, chunk=5).predict(x),
        "randomization.predict": lambda x: randomization_defence(model).predict(x, seed=0),
    }


@pytest.mark.parametrize("entry", list(entry_points(torch.nn.Identity())))
def test_every_entry_point_refuses_bad_images(entry, cifar_model, images):
    call = entry_points(cifar_model)[entry]
    for what, (x, message) in bad_inputs(images).items():
        with pytest.raises(InputError, match=message):
            call(x)
        assert issubclass(InputError, ValueError), what      # the CLI's one-line errors


def test_good_images_still_pass(cifar_model, images):
    labels = predict(cifar_model, images)
    assert labels.shape == (4,)
    assert torch.equal(predict(cifar_model, images.half().float()), predict(cifar_model, images.half().float()))
    edge = images.clone()
    edge[0, 0, 0, 0], edge[0, 0, 0, 1] = 1 + 5e-4, -5e-4      # float rounding is tolerated
    check_images(edge, cifar_model)
    check_images(images[:0], cifar_model)                       # an empty batch
    assert BlurVote(cifar_model).predict(images).shape == (4,)


def test_smoothing_noise_is_not_refused(cifar_model, images):
    """Randomized smoothing adds unclipped noise; its own samples pass (unit_range=False),
    only the images it is given are checked."""
    noisy = images + 0.5 * torch.randn_like(images)
    with pytest.raises(InputError):
        predict(cifar_model, noisy)
    assert predict(cifar_model, noisy, unit_range=False).shape == (4,)
    with pytest.raises(InputError, match="NaN"):
        predict(cifar_model, noisy * float("nan"), unit_range=False)
    counts = Smooth(cifar_model, 10, 1.0, forward_batch=40).sample_counts(images, 20, 0)
    assert counts.sum(1).tolist() == [20] * 4


@pytest.mark.parametrize("eps", [float("nan"), float("inf"), -0.1])
def test_attack_epsilons_must_be_finite_and_non_negative(eps, cifar_model, images):
    with pytest.raises(ValueError, match="epsilons"):
        attacks.run(cifar_model, images, torch.zeros(4, dtype=torch.long), "fgsm", [0.03, eps],
                    progress=False)


def test_attack_on_0_255_floats_used_to_return_254():
    """The issue's case: an attack on 0..255 floats clipped them to [0, 1]."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)).eval()
    x = torch.rand(3, 3, 2, 2) * 255
    with pytest.raises(InputError, match="must lie in"):
        attacks.run(model, x, torch.zeros(3, dtype=torch.long), "fgsm", [8 / 255], progress=False)


def test_models_declare_their_input_without_changing_cache_keys(cifar_model):
    assert expected_shape(cifar_model) == (3, 32, 32)
    assert expected_shape(LeNet()) == (1, 28, 28)
    assert expected_shape(Smooth(cifar_model, 10, 0.25)) == (3, 32, 32)
    assert expected_shape(torch.nn.Linear(2, 2)) is None
    # the declaration is a class attribute: no piece's key (identity) changes with it
    assert "input_shape" not in json.dumps(identity(cifar_model))
    with pytest.raises(InputError, match=r"LeNet takes images \(N, 1, 28, 28\)"):
        predict(LeNet().eval(), torch.rand(2, 1, 32, 32))


def test_imagenet_models_take_any_size_from_32(monkeypatch):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten())
    net.input_shape = (3, None, None)
    model = Normalized(net, IMAGENET_MEAN, IMAGENET_STD).eval()
    check_images(torch.rand(1, 3, 224, 224), model)
    check_images(torch.rand(1, 3, 299, 320), model)
    with pytest.raises(InputError, match="H>=32"):
        check_images(torch.rand(1, 3, 16, 224), model)
    with pytest.raises(InputError, match=r"\(N, 3, H>=32, W>=32\)"):
        check_images(torch.rand(1, 1, 224, 224), model)
