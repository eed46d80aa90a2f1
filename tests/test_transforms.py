"""Chapter 3's input transformations against their references: numpy bit arithmetic, scipy's
median filter, scikit-image's TV denoising, an exact solver of the masked TV problem on a tiny
image, scikit-learn's KMeans and PIL's JPEG; BPDA gradients through each; the L2 measure."""
import io

import numpy as np
import pytest
import torch
from scipy import ndimage, optimize

from advlab.defences import transforms as T
from advlab.defences.base import Preprocessed
from advlab.metrics import normalised_l2


def images(n=2, c=3, h=20, w=24, seed=0, dtype=torch.float32):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def smooth_images(n=2, h=24, w=28, seed=0):
    """Piecewise-smooth test images (blobs plus noise), closer to photographs than noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([(xx > 0.4).float() * 0.6 + 0.2, torch.sin(6 * yy) * 0.3 + 0.5, 0.3 + 0.4 * xx * yy])
    return (base + 0.08 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1).double()


# --------------------------------------------------------------------------- bit depth
@pytest.mark.parametrize("bits", range(1, 9))
def test_bit_depth_truncate_is_the_source_studys_formula(bits):
    x = images()
    v = np.round(x.numpy().astype(np.float64) * 255).astype(np.int64)
    k = 8 - bits
    expected = (v - v % 2 ** k) / 255
    out = T.bit_depth(x, bits, "truncate")
    assert torch.equal(out, torch.from_numpy(expected).float())
    assert len(torch.unique(out)) <= 2 ** bits


def test_bit_depth_conventions_and_levels():
    x = torch.linspace(0, 1, 1001).view(1, 1, 1, -1)
    assert torch.equal(T.bit_depth(x, 8), torch.round(x * 255) / 255)
    assert torch.unique(T.bit_depth(x, 2, "truncate")).mul(255).round().tolist() == [0, 64, 128, 192]
    assert torch.unique(T.bit_depth(x, 2, "xu")).mul(3).round().tolist() == [0, 1, 2, 3]   # rint(3x)/3
    assert torch.unique(T.bit_depth(x, 2, "guo")).mul(4).round().tolist() == [0, 1, 2, 3, 4]  # round(4x)/4
    xu = T.bit_depth(images(), 3, "xu")
    assert torch.equal(xu, torch.from_numpy(np.rint(images().numpy() * 7) / 7).float())
    with pytest.raises(ValueError, match="bits"):
        T.bit_depth(x, 0)
    with pytest.raises(ValueError, match="convention"):
        T.bit_depth(x, 4, "floor")
    with pytest.raises(ValueError, match="float tensor"):
        T.bit_depth(torch.zeros(3, 4), 4)


# --------------------------------------------------------------------------- median
@pytest.mark.parametrize("size", [(1, 3), (3, 1), (3, 3), (5, 5), (5, 3), (1, 7)])
@pytest.mark.parametrize("mode", sorted(T.MEDIAN_MODES))
def test_median_equals_scipy(size, mode):
    x = images(h=17, w=19)
    out = T.median_filter(x, size, mode).numpy()
    ref = ndimage.median_filter(x.numpy(), size=(1, 1, *size), mode=T.MEDIAN_MODES[mode], cval=0.0)
    np.testing.assert_array_equal(out, ref)   # a median picks one of the values: exact


@pytest.mark.parametrize("size", [(1, 3), (3, 1), (3, 3)])
def test_min_max_medians_equal_scipy_with_ties_in_any_layout(size):
    """The min/max networks (1x3, 3x1, 3x3) pick the same value as scipy with many ties (8-bit
    levels), in float64, on channels_last input and on images two pixels wide or high."""
    g = torch.Generator().manual_seed(5)
    for shape in ((2, 3, 9, 11), (1, 2, 2, 7), (1, 1, 6, 2)):
        x = (torch.randint(0, 4, shape, generator=g) / 3).double()
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            for mode in sorted(T.MEDIAN_MODES):
                ref = ndimage.median_filter(x.numpy(), size=(1, 1, *size), mode=T.MEDIAN_MODES[mode])
                np.testing.assert_array_equal(T.median_filter(inp, size, mode).numpy(), ref)


def test_median_rejects_even_windows_and_unknown_modes():
    x = images()
    assert torch.equal(T.median_filter(x, 1), x)
    with pytest.raises(ValueError, match="odd"):
        T.median_filter(x, (2, 3))
    with pytest.raises(ValueError, match="mode"):
        T.MedianFilter(3, mode="mirror")


# --------------------------------------------------------------------------- TV minimisation
def test_gradient_and_divergence_are_adjoint():
    z, py, px = images(seed=1).double(), images(seed=2).double(), images(seed=3).double()
    dy, dx = T.image_gradient(z)
    assert torch.allclose((dy * py + dx * px).sum(), -(z * T.divergence(py, px)).sum(), rtol=1e-12)
    assert float(dy[..., -1, :].abs().max()) == 0 and float(dx[..., :, -1].abs().max()) == 0


def test_tv_all_pixels_equals_scikit_image_chambolle():
    """Every pixel kept: Rudin-Osher-Fatemi; scikit-image's weight is the same lambda."""
    from skimage.restoration import denoise_tv_chambolle
    x = smooth_images()
    ours = T.tv_minimize(x, None, weight=T.TV_WEIGHT)                       # default budget
    converged = T.tv_minimize(x, None, weight=T.TV_WEIGHT, steps=2000)
    ref = np.stack([denoise_tv_chambolle(im, weight=T.TV_WEIGHT, eps=1e-12, max_num_iter=5000,
                                         channel_axis=0) for im in x.numpy()])
    ref = torch.from_numpy(ref)
    assert float((converged - ref).abs().max()) < 2e-4          # the same minimiser
    f_ref = T.tv_objective(ref, x)
    assert float(((T.tv_objective(converged, x) - f_ref) / f_ref).abs().max()) < 1e-6
    gap = (T.tv_objective(ours, x) - f_ref) / f_ref             # the fixed budget's tolerance
    assert float(gap.max()) < 1e-3
    assert float((ours - ref).abs().max()) < 0.01


def difference_matrices(c: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward differences down the rows and along the columns as dense matrices (zero rows
    at the last row / column), built independently of the solver's image_gradient."""
    n = c * h * w
    idx = np.arange(n).reshape(c, h, w)
    dy, dx = np.zeros((n, n)), np.zeros((n, n))
    for k in range(c):
        for i in range(h):
            for j in range(w):
                r = idx[k, i, j]
                if i < h - 1:
                    dy[r, idx[k, i + 1, j]], dy[r, r] = 1, -1
                if j < w - 1:
                    dx[r, idx[k, i, j + 1]], dx[r, r] = 1, -1
    return dy, dx


SMOOTHING = 1e-7


def exact_masked_tv(x: np.ndarray, m: np.ndarray, weight: float, isotropic: bool) -> float:
    """The optimum of ``0.5 sum m (z - x)^2 + weight TV(z)`` for one tiny image (C, H, W), by
    Newton's method (scipy's trust-exact, exact Hessian) on the smooth objective with
    ``|g|`` replaced by ``sqrt(g^2 + mu^2)``, mu lowered from 1e-2 to :data:`SMOOTHING`
    (warm starts).  The smoothing moves the objective by at most ``weight * n * mu``, so the
    value returned (the true objective at the smooth minimiser) is within that of the optimum."""
    dy, dx = difference_matrices(*x.shape)
    xf, mf = x.ravel(), m.ravel().astype(float)
    mu = 1.0

    def tv_terms(z):
        gy, gx = dy @ z, dx @ z
        if isotropic:
            return gy, gx, np.sqrt(gy ** 2 + gx ** 2 + mu ** 2), None
        return gy, gx, np.sqrt(gy ** 2 + mu ** 2), np.sqrt(gx ** 2 + mu ** 2)

    def f(z):
        gy, gx, s, t = tv_terms(z)
        tv = s.sum() if isotropic else s.sum() + t.sum()
        return 0.5 * np.sum(mf * (z - xf) ** 2) + weight * tv

    def grad(z):
        gy, gx, s, t = tv_terms(z)
        return mf * (z - xf) + weight * (dy.T @ (gy / s) + dx.T @ (gx / (s if isotropic else t)))

    def hess(z):
        gy, gx, s, t = tv_terms(z)
        if isotropic:
            hyy, hxx, hxy = (gx ** 2 + mu ** 2) / s ** 3, (gy ** 2 + mu ** 2) / s ** 3, -gx * gy / s ** 3
        else:
            hyy, hxx, hxy = mu ** 2 / s ** 3, mu ** 2 / t ** 3, np.zeros_like(s)
        h = (dy.T @ (hyy[:, None] * dy) + dx.T @ (hxx[:, None] * dx)
             + dy.T @ (hxy[:, None] * dx) + dx.T @ (hxy[:, None] * dy))
        return np.diag(mf) + weight * h

    z = xf.copy()
    for mu in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, SMOOTHING):  # noqa: B007 (the closures read mu)
        z = optimize.minimize(f, z, jac=grad, hess=hess, method="trust-exact",
                              options={"gtol": 1e-12, "maxiter": 500}).x
    gy, gx = dy @ z, dx @ z
    tv = np.sqrt(gy ** 2 + gx ** 2).sum() if isotropic else np.abs(gy).sum() + np.abs(gx).sum()
    return float(0.5 * np.sum(mf * (z - xf) ** 2) + weight * tv)


@pytest.mark.parametrize("keep", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("isotropic", [True, False])
def test_masked_tv_reaches_the_exact_optimum(keep, isotropic):
    x = smooth_images(n=1, h=6, w=7, seed=3)[:, :2]           # 84 unknowns, two channels
    mask = T.bernoulli_mask(x, keep, generator=torch.Generator().manual_seed(4))
    exact = exact_masked_tv(x[0].numpy(), mask[0].numpy(), T.TV_WEIGHT, isotropic)
    ours = float(T.tv_objective(T.tv_minimize(x, mask, steps=5000, isotropic=isotropic), x, mask,
                                isotropic=isotropic))
    slack = T.TV_WEIGHT * x.numel() * SMOOTHING * (1 if isotropic else 2)
    assert exact - slack - 1e-9 <= ours <= exact + 1e-6 * exact   # the optimum, to 1e-6


def test_tv_all_pixels_reaches_a_lower_objective_than_scikit_image(mirror):
    """Every pixel kept, default budget: on each of 8 photographs (64-pixel crops) the objective
    is below the one scikit-image's denoise_tv_chambolle reaches with its own stopping rule
    (its default eps and iteration cap), by at least 0.05%."""
    from skimage.restoration import denoise_tv_chambolle

    from advlab.zoo import load_imagenet_for
    x = load_imagenet_for("efficientnet_lite0", limit=8, progress=False).x[:, :, 80:144, 80:144].double()
    ours = T.tv_objective(T.tv_minimize(x), x)
    ref = np.stack([denoise_tv_chambolle(im, weight=T.TV_WEIGHT, channel_axis=0) for im in x.numpy()])
    theirs = T.tv_objective(torch.from_numpy(ref), x)
    assert bool((ours < theirs * (1 - 5e-4)).all()), (ours / theirs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("keep", [0.1, 0.5, 1.0])
@pytest.mark.parametrize("isotropic", [True, False])
def test_native_tv_equals_the_torch_solver(monkeypatch, dtype, keep, isotropic):
    """The native kernel (CPU) and the torch code (GPU, ADVLAB_COMPILE=0) run the same
    iterations: the same result up to float rounding, with per-pixel or per-image masks,
    channels_last input and odd sizes."""
    from advlab import native
    x = smooth_images(n=2, h=13, w=17).to(dtype)
    if not native.usable(x):
        pytest.skip("no native kernels here")
    g = torch.Generator().manual_seed(2)
    masks = [None] if keep == 1 else [T.bernoulli_mask(x, keep, generator=g),
                                      T.bernoulli_mask(x, keep, per_channel=False, generator=g)]
    for mask in masks:
        inp = x.contiguous(memory_format=torch.channels_last)
        fast = T.tv_minimize(inp, mask, steps=60, isotropic=isotropic)
        monkeypatch.setenv("ADVLAB_COMPILE", "0")
        slow = T.tv_minimize(x, mask, steps=60, isotropic=isotropic)
        monkeypatch.delenv("ADVLAB_COMPILE")
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert fast.dtype == dtype and fast.shape == x.shape
        assert float((fast - slow).abs().max()) < tol
        if mask is not None:   # the starting point too (one step from it)
            assert float((T.tv_minimize(x, mask, steps=1) - _torch_tv(monkeypatch, x, mask, 1)).abs().max()) < tol


def _torch_tv(monkeypatch, x, mask, steps):
    monkeypatch.setenv("ADVLAB_COMPILE", "0")
    try:
        return T.tv_minimize(x, mask, steps=steps)
    finally:
        monkeypatch.delenv("ADVLAB_COMPILE")


def test_tv_default_budget_tolerance(mirror):
    """The fixed budget's stated tolerance on a photograph (a 64-pixel crop of a sample image),
    against 1,000 iterations."""
    from advlab.zoo import load_imagenet_for
    x = load_imagenet_for("efficientnet_lite0", limit=1, progress=False).x[:, :, 80:144, 80:144]
    for keep, tol in ((0.1, 0.015), (0.25, 0.006), (1.0, 2e-4)):
        mask = None if keep == 1 else T.bernoulli_mask(x, keep, generator=torch.Generator().manual_seed(1))
        ref = T.tv_objective(T.tv_minimize(x, mask, steps=1000), x, mask)
        gap = (T.tv_objective(T.tv_minimize(x, mask), x, mask) - ref) / ref
        assert 0 <= float(gap.max()) < tol, (keep, gap)


def test_tv_result_depends_on_the_kept_pixels_only():
    x = smooth_images(n=2)
    mask = T.bernoulli_mask(x, 0.25, generator=torch.Generator().manual_seed(0))
    other = torch.where(mask > 0, x, torch.rand_like(x))
    assert torch.equal(T.tv_minimize(x, mask, steps=30), T.tv_minimize(other, mask, steps=30))


def test_tvm_module_draws_a_mask_per_image_and_call():
    x = smooth_images(n=1).float().repeat(3, 1, 1, 1)
    tvm = T.TVM(keep=0.25, steps=20)
    assert tvm.randomized and not T.TVM(keep=1.0).randomized
    torch.manual_seed(0)
    a = tvm(x)
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[1], a[2])   # per image
    torch.manual_seed(0)
    assert torch.equal(tvm(x), a)                                        # seeded: repeatable
    mask = T.bernoulli_mask(torch.zeros(4, 3, 100, 100), 0.1, generator=torch.Generator().manual_seed(0))
    assert abs(float(mask.mean()) - 0.1) < 0.01
    one = T.bernoulli_mask(torch.zeros(2, 3, 8, 8), 0.5, per_channel=False)
    assert torch.equal(one[:, 0], one[:, 2])
    with pytest.raises(ValueError, match="keep"):
        T.TVM(keep=0.0)


# --------------------------------------------------------------------------- K-means
def test_kmeans_lloyd_equals_scikit_learn_from_the_same_start():
    from sklearn.cluster import KMeans
    x = smooth_images(n=3, h=16, w=16).float()
    points = x.flatten(2).transpose(1, 2).double()
    g = torch.Generator().manual_seed(0)
    init = T.kmeans_plus_plus(points, 6, g)
    c, labels, inertia = T.kmeans(points, 6, iters=300, init=init)
    for i in range(3):
        km = KMeans(6, init=init[i].numpy(), n_init=1, max_iter=300, tol=0, algorithm="lloyd")
        km.fit(points[i].numpy())
        assert float(inertia[i]) == pytest.approx(km.inertia_, rel=1e-9)
        assert np.array_equal(labels[i].numpy(), km.labels_)


def test_kmeans_plus_plus_is_as_good_as_scikit_learns():
    """Same seeding (greedy k-means++), so the same quality of local optimum: mean inertia of
    five seeds within 3% of scikit-learn's five single runs."""
    from sklearn.cluster import KMeans
    x = smooth_images(n=2, h=24, w=24).float()
    points = x.flatten(2).transpose(1, 2)
    ours = torch.stack([T.kmeans(points, 8, iters=100, generator=torch.Generator().manual_seed(s))[2]
                        for s in range(5)]).mean(0)
    for i in range(2):
        theirs = np.mean([KMeans(8, n_init=1, random_state=s).fit(points[i].numpy()).inertia_
                          for s in range(5)])
        assert float(ours[i]) <= 1.03 * theirs


def test_kmeans_quantize_uses_k_colours_per_image_and_is_seeded():
    x = smooth_images(n=2).float()
    q = T.kmeans_quantize(x, 4)
    for i in range(2):
        assert len(torch.unique(q[i].flatten(1).T, dim=0)) <= 4
    assert torch.equal(q, T.KMeansQuantize(4)(x))
    flat = torch.full((1, 3, 5, 5), 0.5)                       # fewer colours than k
    assert torch.equal(T.kmeans_quantize(flat, 3), flat)
    with pytest.raises(ValueError, match="k"):
        T.kmeans(torch.rand(1, 5, 3), 6)


# --------------------------------------------------------------------------- JPEG
def test_jpeg_equals_pil_at_the_same_quality():
    from PIL import Image
    x = smooth_images(n=2, h=32, w=40).float()
    ours = T.jpeg(x, 75)
    for i in range(2):
        u8 = (x[i] * 255).round().byte().permute(1, 2, 0).numpy()
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, "JPEG", quality=75)
        ref = torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1).float() / 255
        assert torch.equal(ours[i], ref)          # the same libjpeg-turbo settings: same bytes
    assert float((T.jpeg(x, 100) - x).abs().mean()) < float((T.jpeg(x, 10) - x).abs().mean())
    with pytest.raises(ValueError, match="quality"):
        T.JPEG(0)


# --------------------------------------------------------------------------- BPDA and the L2 measure
@pytest.mark.parametrize("transform", [T.BitDepth(4), T.MedianFilter((3, 1)), T.TVM(0.25, steps=5),
                                       T.KMeansQuantize(4, iters=3), T.JPEG(75)],
                         ids=lambda t: type(t).__name__)
def test_bpda_passes_the_identity_gradient_through_every_transform(transform):
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 5))
    defence = Preprocessed(head, transform)
    x = smooth_images(n=2, h=12, w=12).float().requires_grad_(True)
    torch.manual_seed(1)
    out = defence(x)
    torch.manual_seed(1)
    assert torch.allclose(out, head(transform(x.detach())), atol=1e-6)   # value: the real transform
    g, = torch.autograd.grad(out[:, 0].sum(), x)
    expected = head[1].weight[0].detach().view(1, 3, 12, 12).expand(2, -1, -1, -1)
    assert torch.allclose(g, expected)                                  # gradient: the identity's


def test_normalised_l2():
    x = torch.full((2, 3, 4, 4), 0.5)
    adv = x.clone()
    adv[0, 0, 0, 0] += 0.3
    adv[1] += 0.05
    d = normalised_l2(x, adv)
    assert d[0] == pytest.approx(0.3 / (0.5 * 48 ** 0.5))
    assert d[1] == pytest.approx(0.1)
    mean, std = (0.25, 0.25, 0.25), (0.5, 0.5, 0.5)         # Guo et al.'s code: normalised tensors
    dn = normalised_l2(x, adv, mean, std)
    assert dn[1] == pytest.approx((0.05 / 0.5) / (0.25 / 0.5))
    with pytest.raises(ValueError, match="same shape"):
        normalised_l2(x, adv[:1])
    with pytest.raises(ValueError, match="norm 0"):
        normalised_l2(torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2))


def test_kmeans_fitted_on_a_pixel_sample_is_nearly_as_good():
    x = smooth_images(n=2, h=96, w=96).float()
    points = x.flatten(2).transpose(1, 2)
    inertia = lambda q: (points - q.flatten(2).transpose(1, 2)).pow(2).sum((1, 2))  # noqa: E731
    sampled = inertia(T.kmeans_quantize(x, 8, fit_pixels=2048))
    full = inertia(T.kmeans_quantize(x, 8, fit_pixels=None))
    assert bool((sampled <= 1.05 * full).all())


def test_tvm_module_returns_images_in_the_unit_range():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 3, 24, 24, generator=g) > 0.5).float()    # only 0s and 1s: overshoots
    for keep in (0.1, 1.0):
        torch.manual_seed(0)
        out = T.TVM(keep=keep, steps=5)(x)
        assert 0 <= float(out.min()) and float(out.max()) <= 1
        torch.manual_seed(0)
        mask = None if keep == 1 else T.bernoulli_mask(x, keep)
        assert torch.equal(out, T.tv_minimize(x, mask, steps=5).clamp(0, 1))
