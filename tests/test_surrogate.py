"""The VGG surrogate (another architecture than the ResNet target) and what Chapter 4's
denoisers take from it: the CIFAR augmentation against torchvision, the committed surrogate's
sha256 check, black-box recipes that never name a ResNet, a Stab step that moves the weights."""
import json

import pytest
import torch
import torchvision.transforms.functional as TF

from advlab.models.cifar import CIFAR_RESNETS
from advlab.train import fit, flip_crop, flip_crop_batches
from advlab.training import denoisers as dncnn
from advlab.training import surrogate


def test_flip_crop_equals_torchvision():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 10, 12, generator=g)
    flip = torch.tensor([True, False, True, False, True, False])
    top, left = torch.tensor([0, 8, 3, 4, 8, 1]), torch.tensor([8, 0, 5, 2, 7, 4])
    ours = flip_crop(x, flip, top, left, pad=4)
    for i in range(len(x)):
        img = TF.hflip(x[i]) if flip[i] else x[i]
        ref = TF.crop(TF.pad(img, [4]), int(top[i]), int(left[i]), 10, 12)  # zero padding
        assert torch.equal(ours[i], ref), i


def test_flip_crop_batches_are_seeded_and_cover_every_image_once():
    x = torch.arange(10 * 3 * 8 * 8, dtype=torch.float32).view(10, 3, 8, 8)
    y = torch.arange(10)
    source = flip_crop_batches(x, y, 4, pad=2)
    a = list(source(0, torch.Generator().manual_seed(3)))
    b = list(source(0, torch.Generator().manual_seed(3)))
    assert [len(yb) for _, yb in a] == [4, 4, 2]
    assert sorted(torch.cat([yb for _, yb in a]).tolist()) == list(range(10))
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))
    img, _ = next(iter(flip_crop_batches(x, None, 10, pad=2)(0, torch.Generator())))
    assert img.shape == x.shape
    same = list(source(0, torch.Generator().manual_seed(3)))[0]  # targets follow the images
    assert torch.equal(list(flip_crop_batches(x, None, 4, pad=2)(
        0, torch.Generator().manual_seed(3)))[0][1], same[0])


def test_black_box_recipes_never_name_the_target_or_a_resnet():
    bb = [n for n in dncnn.RECIPES if "-stab-bb" in n and n.startswith("cifar10-")]
    assert len(bb) == len(dncnn.CIFAR_BB_SIGMAS) >= 1
    for name in bb:
        clfs = dncnn.recipe(name)["classifiers"]
        assert clfs == ("vgg-cifar10",), name
        assert not set(clfs) & {*CIFAR_RESNETS, dncnn.TARGETS["cifar10"]}, name
        assert all("resnet" not in c for c in clfs)
    for name in (n for n in dncnn.RECIPES if "-stab-wb" in n and n.startswith("cifar10-")):
        assert dncnn.recipe(name)["classifiers"] == ("resnet56",)
    with pytest.raises(ValueError, match="never trains through the target"):
        dncnn.recipe("cifar10-stab-bb-0.25", classifiers=("vgg-cifar10", "resnet56"))
    assert "vgg-cifar10" in surrogate.RECIPES and "resnet" not in json.dumps(
        surrogate.RECIPES["vgg-cifar10"])


def test_committed_surrogate_is_checked_and_a_tampered_file_is_refused(tmp_path, monkeypatch):
    from advlab.models import vgg
    from advlab.models.vgg import VGG
    assert surrogate.committed_for_recipe("vgg-cifar10")  # committed for the code's recipe
    record = vgg.manifest()["vgg-cifar10"]
    path = vgg.resource_dir() / record.file
    assert path.stat().st_size <= 2_000_000
    model = surrogate.load_surrogate("vgg-cifar10", device="cpu")
    assert not model.training and isinstance(model.model, VGG)
    out = model(torch.rand(2, 3, 32, 32))  # [0, 1] inputs, normalisation inside
    assert out.shape == (2, 10)
    folder = tmp_path / "surrogates"
    folder.mkdir()
    for f in vgg.resource_dir().iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    data = bytearray((folder / record.file).read_bytes())
    data[len(data) // 2] ^= 1
    (folder / record.file).write_bytes(bytes(data))
    monkeypatch.setattr(vgg, "resource_dir", lambda: folder)
    with pytest.raises(ValueError, match="sha256"):
        surrogate.load_surrogate("vgg-cifar10")
    (folder / "manifest.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="advlab train-surrogate vgg-cifar10 --commit"):
        surrogate.load_surrogate("vgg-cifar10")


def test_zoo_loads_the_surrogate_ready_for_inference():
    from advlab import zoo
    assert "vgg-cifar10" in zoo.model_names() and zoo.dataset_of("vgg-cifar10") == "cifar10"
    model = zoo.load_model("vgg-cifar10", "cpu")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="takes no options"):
        zoo.load_model("vgg-cifar10", "cpu", lam=1)


def test_a_stab_step_at_the_recipe_rate_moves_the_weights():
    """One Adam step of the stability objective at the black-box recipe's rate changes the
    DnCNN weights by about the rate, beyond what float16 storage rounds away; the white-box
    recipe's 1e-5 (the paper's) moves them 10x less per step."""
    from advlab.models.committed import as_committed
    from advlab.models.vgg import vgg_cifar10
    torch.manual_seed(0)
    clf = vgg_cifar10(widths=(4, 8), convs=1).eval().requires_grad_(False)
    x = torch.rand(16, 3, 32, 32)
    lr = dncnn.recipe("cifar10-stab-bb-0.25")["lr"]
    assert lr >= 1e-4 and dncnn.recipe("cifar10-stab-wb-0.25")["lr"] == 1e-5
    moved = {}
    for rate in (lr, 1e-5):
        torch.manual_seed(1)
        den = as_committed(dncnn.DnCNN(depth=5, width=8))
        for p in den.parameters():  # a trained denoiser's last layer is not zero
            p.data.add_(0.01 * torch.randn_like(p))
        before = {k: v.clone() for k, v in den.state_dict().items()}
        fit(den, (x, x), dncnn.stability_loss([clf]), lambda p: torch.optim.Adam(p, lr=rate),
            epochs=1, batch_size=16, device="cpu", augment=dncnn.noisy((0.25,)),
            progress=False)
        after = as_committed(den).state_dict()
        w = den.net[2].weight.detach()
        moved[rate] = float((w - before["net.2.weight"]).abs().mean())
        changed = float((after["net.2.weight"] != before["net.2.weight"]).float().mean())
        if rate == lr:
            assert changed > 0.9  # survives the float16 rounding of the committed file
    assert moved[lr] == pytest.approx(lr, rel=0.3)
    assert moved[lr] > 5 * moved[1e-5]


def test_train_surrogate_cli_writes_the_resources_only_with_commit(tmp_path, monkeypatch, capsys):
    from advlab import cli
    from advlab.models import vgg
    small = vgg.vgg_cifar10(widths=(4, 8), convs=1).eval()
    monkeypatch.setattr(surrogate, "train_surrogate", lambda *a, **k: small)
    monkeypatch.setattr(surrogate, "accuracy_on_test_set", lambda *a, **k: 0.5)
    folder = tmp_path / "surrogates"
    monkeypatch.setattr(vgg, "resource_dir", lambda: folder)
    monkeypatch.setattr(surrogate, "resource_dir", lambda: folder)
    assert cli.main(["train-surrogate", "--quiet"]) == 0
    assert "not committed" in capsys.readouterr().out and not folder.exists()
    assert cli.main(["train-surrogate", "vgg-cifar10", "--commit", "--quiet"]) == 0
    record = vgg.manifest()["vgg-cifar10"]
    assert record.command == "advlab train-surrogate vgg-cifar10 --commit"
    assert record.recipe == json.loads(json.dumps(surrogate.RECIPES["vgg-cifar10"]))
    text = (folder / "PROVENANCE.md").read_text()
    assert record.sha256 in text and "50.00% on the 10,000 CIFAR-10 test images" in text
    # the bytes depend only on the weights: committing again gives the same file
    assert cli.main(["train-surrogate", "--commit", "--quiet"]) == 0
    assert vgg.manifest()["vgg-cifar10"].sha256 == record.sha256
    assert (folder / "PROVENANCE.md").read_text().count("## vgg-cifar10") == 1
