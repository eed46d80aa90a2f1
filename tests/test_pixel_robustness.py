"""Chapter 5's library: gradient maps, masks, IoU, masked PGD, the PRM and the one-pixel shift."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advlab import attacks
from advlab.attacks import EOT, PGD
from advlab.defences.pixel_shift import SHIFTS, pixel_shift, shift_defence
from advlab.models.prm import PRM, SparseUNet
from advlab.pixel_maps import (
    blend,
    gradient_map,
    iou,
    lattice_mask,
    lattice_upsample,
    map_correlations,
    pixel_mask,
    prm_lambda_table,
    psnr,
    top_fraction_iou,
)


def linear_model(c=3, h=4, w=4, classes=5, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, classes)).eval()


def images(n=7, c=3, h=4, w=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g), torch.randint(5, (n,), generator=g)


def test_gradient_map_equals_the_closed_form_of_a_linear_model():
    """For logits W x + b, d CE / dx = (softmax(Wx + b) - onehot(y)) W, per image."""
    model = linear_model()
    x, y = images(7)
    lin = model[1]
    with torch.no_grad():
        p = F.softmax(lin(x.flatten(1)), 1)
        grad = ((p - F.one_hot(y, 5).float()) @ lin.weight).view_as(x)
    expected = grad.abs().mean(1)                       # (N, H, W)
    gmap, per_image = gradient_map(model, x, y, batch_size=3, per_image=True, progress=False)
    assert torch.allclose(per_image, expected, atol=1e-6)
    assert torch.allclose(gmap, expected.mean(0), atol=1e-6)
    assert torch.allclose(gradient_map(model, x, y, batch_size=7, progress=False), gmap, atol=1e-7)


def test_gradient_map_rejects_bad_input():
    model = linear_model()
    x, y = images(3)
    with pytest.raises(ValueError, match="as many labels"):
        gradient_map(model, x, y[:2], progress=False)
    with pytest.raises(ValueError, match="N, C, H, W"):
        gradient_map(model, x[0], y, progress=False)


def test_map_correlations_blocks():
    a = torch.rand(3, 4, 4)
    corr = map_correlations({"m1": a, "m2": 2 * a + 1, "m3": -a})
    assert corr.shape == (9, 9)
    assert torch.allclose(corr.diagonal(), torch.ones(9), atol=1e-6)
    assert torch.allclose(corr[:3, 3:6].diagonal(), torch.ones(3), atol=1e-6)   # affine copy
    assert torch.allclose(corr[:3, 6:9].diagonal(), -torch.ones(3), atol=1e-6)  # negated


@pytest.mark.parametrize("p", [0.0, 0.013, 0.1, 0.25, 0.5, 0.999, 1.0])
@pytest.mark.parametrize("kind", ["top", "bottom", "random"])
def test_pixel_mask_selects_exactly_p(p, kind):
    g = torch.Generator().manual_seed(3)
    gmap = torch.randint(0, 20, (32, 32), generator=g).float()   # many ties
    mask = pixel_mask(gmap, p, kind, seed=5)
    assert mask.dtype == torch.bool and mask.shape == gmap.shape
    assert int(mask.sum()) == round(p * 1024)
    if kind != "random" and 0 < mask.sum() < 1024:
        inside, outside = gmap[mask], gmap[~mask]
        if kind == "top":
            assert inside.min() >= outside.max()
        else:
            assert inside.max() <= outside.min()


def test_pixel_mask_top_bottom_and_random():
    gmap = torch.arange(16.0).view(4, 4)
    assert pixel_mask(gmap, 0.25, "top").flatten().nonzero().flatten().tolist() == [12, 13, 14, 15]
    assert pixel_mask(gmap, 0.25, "bottom").flatten().nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert torch.equal(pixel_mask(gmap, 0.5, "top"), ~pixel_mask(gmap, 0.5, "bottom"))
    ties = torch.zeros(2, 2)
    assert pixel_mask(ties, 0.5, "top").flatten().tolist() == [True, True, False, False]
    r1, r2 = pixel_mask(gmap, 0.5, "random", 1), pixel_mask(gmap, 0.5, "random", 2)
    assert torch.equal(r1, pixel_mask(gmap, 0.5, "random", 1)) and not torch.equal(r1, r2)
    with pytest.raises(ValueError, match="kind"):
        pixel_mask(gmap, 0.5, "middle")
    with pytest.raises(ValueError, match="fraction"):
        pixel_mask(gmap, 25, "top")


def test_iou_by_hand():
    a = torch.tensor([[1, 1], [0, 0]], dtype=torch.bool)
    b = torch.tensor([[1, 0], [1, 0]], dtype=torch.bool)
    assert iou(a, b) == pytest.approx(1 / 3)
    assert iou(a, a) == 1.0 and iou(a, ~a) == 0.0
    assert iou(torch.zeros(2, 2, dtype=torch.bool), torch.zeros(2, 2, dtype=torch.bool)) == 1.0
    with pytest.raises(ValueError, match="shape"):
        iou(a, torch.zeros(3, 3, dtype=torch.bool))


def test_lattice_mask_is_a_quarter_of_the_pixels():
    m = lattice_mask(32, 32)
    assert int(m.sum()) == 256 and m[0, 0] and m[2, 4] and not m[1, 0] and not m[0, 1]
    assert top_fraction_iou(m.float(), m) == 1.0
    assert top_fraction_iou((~m).float(), m) == 0.0


def test_lattice_upsample_by_hand():
    x = torch.rand(1, 1, 4, 4)
    a, b, c, d = x[0, 0, 0, 0], x[0, 0, 0, 2], x[0, 0, 2, 0], x[0, 0, 2, 2]
    near = torch.stack([torch.stack(r) for r in
                        [[a, a, b, b], [a, a, b, b], [c, c, d, d], [c, c, d, d]]])
    assert torch.equal(lattice_upsample(x, "nearest")[0, 0], near)
    row0, row2 = [a, (a + b) / 2, b, b], [c, (c + d) / 2, d, d]
    row1 = [(a + c) / 2, (a + b + c + d) / 4, (b + d) / 2, (b + d) / 2]
    lin = torch.stack([torch.stack(r) for r in [row0, row1, row2, row2]])
    assert torch.allclose(lattice_upsample(x, "bilinear")[0, 0], lin, atol=1e-6)
    # bicubic (a = -0.75): half-way weights -3/32, 19/32, 19/32, -3/32; borders replicated
    v = torch.tensor([0.2, 0.6, 0.4, 0.8])
    row = torch.zeros(1, 1, 2, 8)
    row[..., ::2] = v
    w, m = 3 / 32, 19 / 32
    expected = torch.tensor([v[0], (m - w) * v[0] + m * v[1] - w * v[2], v[1],
                             -w * v[0] + m * v[1] + m * v[2] - w * v[3], v[2],
                             -w * v[1] + m * v[2] + (m - w) * v[3], v[3], v[3]])
    up = lattice_upsample(row, "bicubic")
    assert torch.allclose(up[0, 0, 0], expected, atol=1e-6)
    assert torch.equal(up[0, 0, 1], up[0, 0, 0])
    # every mode keeps the lattice pixels, stays in [0, 1] and reads nothing else
    x = torch.rand(3, 3, 8, 8)
    for mode in ("nearest", "bilinear", "bicubic"):
        up = lattice_upsample(x, mode)
        assert torch.equal(up[..., ::2, ::2], x[..., ::2, ::2])
        assert float(up.min()) >= 0 and float(up.max()) <= 1
        moved = torch.where(lattice_mask(8, 8), x, torch.rand_like(x))
        assert torch.equal(lattice_upsample(moved, mode), up)
    with pytest.raises(ValueError, match="mode"):
        lattice_upsample(x, "area")
    with pytest.raises(ValueError, match="even"):
        lattice_upsample(torch.rand(1, 3, 7, 8))


def test_psnr_by_hand():
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[0] += 0.1                                   # MSE 0.01: 20 dB
    y[1, 0, 0, 0] = 1.0                           # MSE 1/48: 10 log10(48) dB
    assert psnr(y, x).tolist() == pytest.approx([20.0, 10 * math.log10(48)], rel=1e-5)


def test_prm_lambda_table_matches_its_definition():
    x, y = torch.rand(6, 3, 16, 16), torch.arange(6) % 3
    prms = {1.0: tiny_prm(1.0, seed=0), 0.5: tiny_prm(0.5, seed=1)}
    for p in prms.values():
        p.eval()
    table = prm_lambda_table(prms, x, y, batch_size=4, progress=False).set_index("lambda")
    assert list(table.index) == [0.5, 1.0]
    assert list(table.columns) == ["iou", "acc", "acc_bicubic", "acc_bilinear", "psnr",
                                   "psnr_bicubic", "psnr_bilinear", "n"]
    assert table.loc[1.0, "iou"] == 1.0 and (table.n == 6).all()
    with torch.no_grad():
        for lam, prm in prms.items():
            rec = prm.autoencoder(x)
            acc = float((prm.classifier((1 - lam) * x + lam * rec).argmax(1) == y).float().mean())
            assert table.loc[lam, "acc"] == pytest.approx(acc)
            lin = (1 - lam) * x + lam * lattice_upsample(x, "bilinear")
            assert table.loc[lam, "acc_bilinear"] == pytest.approx(
                float((prm.classifier(lin).argmax(1) == y).float().mean()))
            assert table.loc[lam, "psnr"] == pytest.approx(float(psnr(rec, x).mean()), rel=1e-5)
    assert table.loc[0.5, "psnr_bicubic"] == pytest.approx(
        float(psnr(lattice_upsample(x, "bicubic"), x).mean()), rel=1e-5)
    both = prm_lambda_table(prms, x, y, batch_size=4, resized=True,
                            progress=False).set_index("lambda")
    assert list(both.columns) == ["iou", "acc", "acc_bicubic", "acc_bilinear",
                                  "acc_bicubic_resized", "acc_bilinear_resized", "psnr",
                                  "psnr_bicubic", "psnr_bilinear", "psnr_bicubic_resized",
                                  "psnr_bilinear_resized", "n"]
    assert both[table.columns].equals(table)
    with torch.no_grad():
        mixed = 0.5 * x + 0.5 * lattice_upsample(x, "bicubic", aligned=False)
        assert both.loc[0.5, "acc_bicubic_resized"] == pytest.approx(
            float((prms[0.5].classifier(mixed).argmax(1) == y).float().mean()))


def conv_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 8 * 8, 4)).eval()


def test_masked_pgd_leaves_unmasked_pixels_untouched():
    model = conv_model()
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(6, 3, 8, 8, generator=g), torch.arange(6) % 4
    mask = pixel_mask(torch.rand(8, 8, generator=g), 0.25, "top")
    eps = 0.05
    adv = attacks.run(model, x, y, PGD("linf", 5, mask=mask.float()), [eps], seed=0,
                      progress=False)[eps]
    off = ~mask.expand_as(x)
    assert torch.equal(adv[off], x[off])
    moved = (adv - x).abs()[mask.expand_as(x)]
    assert float(moved.max()) <= eps + 1e-6 and float((moved > 0).float().mean()) > 0.5
    full = attacks.run(model, x, y, PGD("linf", 5), [eps], seed=0, progress=False)[eps]
    post = blend(x, full, mask)
    assert torch.equal(post[off], x[off]) and torch.equal(post[~off], full[~off])
    with pytest.raises(ValueError, match="mask"):
        blend(x, full, mask[:4])


def tiny_prm(lam=1.0, seed=0, base=None):
    torch.manual_seed(seed)
    clf = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 16 * 16, 3))
    ae = SparseUNet(3, width=4, depth=2, base=base)
    if base is not None:                # as if trained: the correction is no longer zero
        nn.init.normal_(ae.last.weight, std=0.1)
    return PRM(clf, ae, lam)


@pytest.mark.parametrize("base", [None, "bilinear", "bicubic"])
def test_prm_first_layer_touches_exactly_the_lattice(base):
    prm = tiny_prm(1.0, base=base).eval()
    x = torch.rand(5, 3, 16, 16)
    y = torch.arange(5) % 3
    lattice = lattice_mask(16, 16)
    gmap, per_image = gradient_map(prm, x, y, per_image=True, progress=False)
    assert float(per_image[:, ~lattice].abs().max()) == 0.0          # closed skip: exactly zero
    assert bool((per_image[:, lattice] > 0).all())                    # every lattice pixel reads
    assert top_fraction_iou(gmap, lattice) == 1.0
    open_map = gradient_map(prm.at(0.5), x, y, progress=False)
    assert bool((open_map > 0).all())
    assert top_fraction_iou(gradient_map(prm.at(0.0), x, y, progress=False), lattice) < 0.6


@pytest.mark.parametrize("base", ["nearest", "bilinear", "bicubic"])
def test_residual_autoencoder_starts_as_the_parameter_free_baseline(base):
    """With ``base``, an untrained SparseUNet is the lattice's interpolation itself (clamped to
    [eps, 1 - eps] by the logit of the sigmoid output; exactly it with the clamp output), and a
    correction moves it while the output stays in [0, 1]."""
    x = torch.rand(4, 3, 16, 16)
    x[0, :, :4] = 0.0
    x[1, :, :4] = 1.0                   # saturated pixels: where the logit clamps
    up = lattice_upsample(x, base)
    torch.manual_seed(0)
    ae = SparseUNet(3, width=4, depth=2, base=base)
    with torch.no_grad():
        eps = SparseUNet.EPS
        assert torch.allclose(ae(x), up.clamp(eps, 1 - eps), atol=1e-6)
        torch.manual_seed(0)
        clamped = SparseUNet(3, width=4, depth=2, output="clamp", base=base)
        assert torch.equal(clamped(x), up)
        nn.init.normal_(ae.last.weight, std=1.0)
        out = ae(x)
        assert not torch.allclose(out, up, atol=1e-2)
        assert float(out.min()) >= 0 and float(out.max()) <= 1
    with pytest.raises(ValueError, match="base"):
        SparseUNet(3, 4, 1, base="area")


def test_prm_mixes_by_lambda_and_keeps_the_classifier_in_eval():
    prm = tiny_prm(0.3)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        ae = prm.autoencoder(x)
        assert torch.allclose(prm.mix(x), 0.7 * x + 0.3 * ae, atol=1e-6)
        assert torch.allclose(prm(x, lam=0.0), prm.classifier(x), atol=1e-6)
        assert torch.allclose(prm.at(1.0)(x), prm.classifier(ae), atol=1e-6)
    prm.train()
    assert prm.autoencoder.training and not prm.classifier.training
    with pytest.raises(ValueError, match="lambda"):
        prm.at(1.5)
    with pytest.raises(ValueError, match="divisible"):
        prm.autoencoder(torch.rand(1, 3, 18, 18))


def test_pixel_shift_by_hand():
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    right = pixel_shift(x, torch.tensor([[1, 0]]), "replicate")
    assert right[0, 0].tolist() == [[1, 1, 2], [4, 4, 5], [7, 7, 8]]
    assert pixel_shift(x, torch.tensor([[1, 0]]), "zeros")[0, 0].tolist() == [[0, 1, 2], [0, 4, 5], [0, 7, 8]]
    down = pixel_shift(x, torch.tensor([[0, 1]]), "zeros")
    assert down[0, 0].tolist() == [[0, 0, 0], [1, 2, 3], [4, 5, 6]]
    up_left = pixel_shift(x, torch.tensor([[-1, -1]]), "replicate")
    assert up_left[0, 0].tolist() == [[5, 6, 6], [8, 9, 9], [8, 9, 9]]
    assert torch.equal(pixel_shift(x, torch.tensor([[0, 0]])), x)
    with pytest.raises(ValueError, match="padding"):
        pixel_shift(x, padding="reflect")
    with pytest.raises(ValueError, match="shifts"):
        pixel_shift(x, torch.tensor([[2, 0]]))


def test_random_shift_draws_the_eight_neighbours_per_image():
    n = 4000
    x = torch.arange(25.0).view(1, 1, 5, 5).repeat(n, 1, 1, 1)
    torch.manual_seed(0)
    out = pixel_shift(x, padding="zeros")
    centre = out[:, 0, 2, 2]                      # shifted by (dx, dy), it reads 12 - dx - 5 dy
    offsets = torch.tensor(sorted({int(12 - v) for v in centre}))
    expected = torch.tensor(sorted(dx + 5 * dy for dx, dy in SHIFTS))
    assert torch.equal(offsets, expected)         # all 8 neighbours, never the null shift
    counts = torch.stack([(12 - centre == e).sum() for e in expected]).float()
    assert float(counts.min()) > n / 8 * 0.8


def test_shift_defence_is_differentiable_and_randomized():
    prm = tiny_prm(0.9).eval()
    defence = shift_defence(prm, "zeros")
    assert defence.randomized and defence.differentiable
    x = torch.rand(3, 3, 16, 16, requires_grad=True)
    EOT(defence, 8)(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    a = defence.predict(x.detach(), seed=1)
    assert torch.equal(a, defence.predict(x.detach(), seed=1))


def test_shipped_prms_load_with_their_sha256_checked(monkeypatch):
    from advlab.models import prm as pr
    lams = pr.trained_lambdas("resnet20")
    assert lams == [0.2, 0.4, 0.6, 0.8, 0.9, 1.0]
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    prm = pr.load_prm(clf, "resnet20", 0.9)
    assert float(prm.lam) == pytest.approx(0.9) and not prm.training
    assert all(p.dtype == torch.float32 for p in prm.autoencoder.parameters())
    # lambda 0 takes the nearest trained autoencoder (it is out of the output anyway)
    assert float(pr.load_prm(clf, "resnet20", 0.0).lam) == 0.0
    with pytest.raises(ValueError, match="no shipped PRM for 'resnet56'"):
        pr.load_prm(clf, "resnet56")
    with pytest.raises(ValueError, match="trained at lambda 0.5"):
        pr.load_autoencoder("resnet20", 0.5)
    # a manifest whose sha256 does not match is refused
    bad = pr.shipped_prms()
    bad["resnet20"]["weights"]["0.9"]["sha256"] = "0" * 64
    monkeypatch.setattr(pr, "shipped_prms", lambda root=None: bad)
    with pytest.raises(ValueError, match="does not match"):
        pr.load_autoencoder("resnet20", 0.9)
    # a manifest of the old format (no output layer named) is refused, not misread
    del bad["resnet20"]["output"]
    with pytest.raises(ValueError, match="names no output layer"):
        pr.load_autoencoder("resnet20", 1.0)


def test_zoo_loads_the_shipped_prms(models_mirror):
    from advlab.zoo import load_model, model_names
    assert {"prm-resnet20-0.9", "prm-resnet20-1"} <= set(model_names())
    prm = load_model("prm-resnet20-0.9", "cpu")
    assert isinstance(prm, PRM) and float(prm.lam) == pytest.approx(0.9)
    assert prm.autoencoder.output == "sigmoid"
    assert float(load_model("prm-resnet20-0.9", "cpu", lam=0.5).lam) == 0.5
    shipped = ", ".join(f"prm-resnet20-{lam}" for lam in ("0.2", "0.4", "0.6", "0.8", "0.9", "1"))
    with pytest.raises(ValueError, match=f"no shipped PRM 'prm-resnet20-0.5'; shipped: {shipped}$"):
        load_model("prm-resnet20-0.5", "cpu")


def test_shipped_prms_beat_the_parameter_free_baselines(mirror, models_mirror, cifar10_test):
    """On the chapter's 500 test images (the first 50 of every class) every shipped PRM, at its
    lambda, is at least as accurate as the lattice's bicubic and bilinear upsampling mixed at
    the same lambda, as recorded by train-prm; at the extreme lambdas the float16 PRMs and the
    baselines (both placements of the lattice) are measured again here."""
    from advlab.data import first_per_class
    from advlab.inference import predict
    from advlab.models import load_cifar_resnet
    from advlab.models import prm as pr
    from advlab.training.prm import PRM_LAMBDAS, PRM_RECIPE
    spec = pr.shipped_prms()["resnet20"]
    assert sorted(map(float, spec["weights"])) == list(PRM_LAMBDAS)
    for lam, entry in spec["weights"].items():
        assert entry["recipe"] == PRM_RECIPE  # the code says how they were trained
        row = entry["eval"]
        assert row["n"] == 500 and row["acc"] >= max(row["acc_bicubic"], row["acc_bilinear"]), lam
    images, _ = first_per_class(cifar10_test, 50)
    x, y = images.x, images.y
    clf = load_cifar_resnet("resnet20", download=False)
    for lam in (0.2, 1.0):
        prm = pr.load_prm(clf, "resnet20", lam)
        acc = float((predict(prm, x, 250, backend="torch") == y).float().mean())
        assert acc == pytest.approx(spec["weights"][f"{lam:g}"]["eval"]["acc"], abs=0.0021)
        for mode in ("bicubic", "bilinear"):
            for aligned in (True, False):
                mixed = (1 - lam) * x + lam * lattice_upsample(x, mode, aligned)
                base = float((predict(clf, mixed, 250, backend="torch") == y).float().mean())
                assert acc >= base, (lam, mode, aligned)
