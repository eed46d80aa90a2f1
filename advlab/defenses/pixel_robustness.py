"""Pixel robustness from input gradients and the Pixel Robustness Manipulator (Chapter 5).

Hwang, Kim, Chun, Yoo, Kim, Han & Ha 2019, "Where to be adversarial perturbations added?
Investigating and manipulating pixel robustness using input gradients" (ICLR 2019 DebugML
workshop; code: niffler92/where-adversarial-added).  What is here:

* :func:`gradient_map`: the mean absolute input gradient of the loss per pixel over a data set,
  averaged over channels (the study's formula divides the channel sum by C; ranks, masks and
  IoU are those of the sum); batched, any model, any image size;
* :func:`pixel_mask` (top-p, bottom-p or random-p pixels of a map, exactly
  ``round(p * H * W)`` of them), :func:`iou`, :func:`lattice_mask` (the stride-2 lattice a
  1x1 stride-2 convolution reads), :func:`blend` (the study's post-hoc ``M*x_adv + (1-M)*x``);
  masked PGD during the optimisation is :class:`advlab.attacks.PGD` with ``mask``;
* :class:`SparseUNet` and :class:`PRM`: ``out = (1 - lam) * x + lam * AE(x)`` then the
  classifier, where the AE's first layer is a 1x1 convolution of stride 2, so at ``lam = 1``
  only the stride-2 lattice (25% of the pixels) receives any gradient;
* :func:`train_prm`: the AE trained with MSE to reconstruct the image, then fine-tuned with
  cross-entropy through the frozen classifier (the authors' two stages), on :func:`advlab.train.fit`;
* :func:`pixel_shift` and :func:`shift_defence`: the test-time defence, a random one-pixel
  shift (one of the 8 neighbours) of every image in front of the PRM.
"""
from __future__ import annotations

import hashlib
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..attacks.base import model_device
from ..models.wrappers import conv_layout
from .base import Preprocessed

MASK_KINDS = ("top", "bottom", "random")
PADDINGS = ("replicate", "zeros")
# The 8 one-pixel shifts (dx, dy) of the authors' PixelShift (the null shift left out).
SHIFTS = ((1, 0), (0, 1), (1, 1), (-1, 0), (0, -1), (1, -1), (-1, 1), (-1, -1))


# --------------------------------------------------------------------------- gradient maps
def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``d CE(model(x_i), y_i) / d x_i`` for every image of the batch (each image's own loss,
    not the batch mean), on the model's device."""
    xg = conv_layout(x.detach().to(model_device(model))).requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(xg).float(), y.to(xg.device), reduction="sum")
        grad, = torch.autograd.grad(loss, xg)
    return grad


def gradient_map(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64,
                 per_image: bool = False, progress: bool = True):
    """Hwang et al.'s pixel vulnerability map: ``mean_n mean_c |dL/dx_{n,c,i,j}|``, (H, W), CPU.

    ``L`` is the cross-entropy of each image with its label ``y``.  With ``per_image`` also
    returns the per-image maps ``mean_c |dL/dx|`` (N, H, W), whose mean is the map.
    """
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as images (and at least one), got {len(x)} "
                         f"images and {len(y)} labels")
    maps = []
    for i in tqdm(range(0, len(x), batch_size), desc="gradient map", disable=not progress,
                  leave=False):
        g = input_gradients(model, x[i:i + batch_size], y[i:i + batch_size])
        maps.append(g.abs().mean(1).float().cpu())
    maps = torch.cat(maps)
    return (maps.mean(0), maps) if per_image else maps.mean(0)


def map_correlations(maps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Pearson correlation between every pair of per-image maps of every model.

    ``maps``: ``{model: (N, H, W)}`` over the same N images.  Returns (M*N, M*N), models in
    the order given, so blocks on the diagonal compare images within a model and the other
    blocks the same or other images across models.
    """
    flat = torch.cat([m.flatten(1) for m in maps.values()]).double()
    flat = flat - flat.mean(1, keepdim=True)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return (flat @ flat.T).float()


# --------------------------------------------------------------------------- masks
def pixel_mask(gmap: torch.Tensor, p: float, kind: str = "top", seed: int = 0) -> torch.Tensor:
    """Boolean (H, W) mask of exactly ``round(p * H * W)`` pixels: the largest (``top``) or the
    smallest (``bottom``) values of ``gmap``, or a uniform random choice (``random``, seeded).
    Ties go to the pixel that comes first in row-major order."""
    if kind not in MASK_KINDS:
        raise ValueError(f"kind must be one of {MASK_KINDS}, got {kind!r}")
    if not 0 <= p <= 1:
        raise ValueError(f"p is a fraction of the pixels in [0, 1], got {p}")
    if gmap.dim() != 2:
        raise ValueError(f"expected a map (H, W), got shape {tuple(gmap.shape)}")
    n = gmap.numel()
    k = int(round(p * n))
    if kind == "random":
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.sort(gmap.flatten().float(), descending=kind == "top", stable=True).indices
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[:k]] = True
    return mask.view_as(gmap)


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two boolean masks of the same shape (1.0 if both empty)."""
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.bool(), b.bool()
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def lattice_mask(height: int, width: int, stride: int = 2, offset: int = 0) -> torch.Tensor:
    """The pixels a ``stride`` x ``stride`` lattice starting at (offset, offset) reads, (H, W)
    bool: what a 1x1 convolution of that stride without padding is connected to."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[offset::stride, offset::stride] = True
    return mask


def blend(x: torch.Tensor, x_adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The study's masked adversarial image ``M * x_adv + (1 - M) * x``: the perturbation kept
    only on the pixels of ``mask`` ((H, W), broadcast over images and channels)."""
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv differ in shape: {tuple(x.shape)}, {tuple(x_adv.shape)}")
    if mask.shape != x.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match the images' {tuple(x.shape[-2:])}")
    return torch.where(mask.to(x.device), x_adv, x)


def top_fraction_iou(gmap: torch.Tensor, connected: torch.Tensor) -> float:
    """IoU of the top pixels of ``gmap`` (as many as ``connected`` holds) with ``connected``:
    the study's alignment of the gradient with the PRM's designated pixels."""
    return iou(pixel_mask(gmap, float(connected.float().mean()), "top"), connected)


# --------------------------------------------------------------------------- the PRM
def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class SparseUNet(nn.Module):
    """The PRM's autoencoder: a 1x1 convolution of stride 2 (no padding) reads the stride-2
    lattice, a small U-Net (Ronneberger et al. 2015; ``depth`` levels, ``width`` filters at the
    top, doubling at each level, ReLU, no normalisation, concatenated skips) works at half
    resolution, and a 3x3 transposed convolution of stride 2 returns to full size.

    The authors' U-Net has depth 5 and 64 filters (about 31M weights); the defaults here
    (depth 3, 32 filters: 0.47M) train on a CPU.  Input height and width must be even and
    divisible by ``2 ** depth`` after the first halving.
    """

    def __init__(self, channels: int = 3, width: int = 32, depth: int = 3):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"need depth >= 1 and width >= 1, got {depth}, {width}")
        self.channels, self.width, self.depth = channels, width, depth
        self.first = nn.Conv2d(channels, channels, 1, stride=2)
        widths = [width * 2 ** i for i in range(depth)]
        self.down = nn.ModuleList(_double_conv(cin, cout)
                                  for cin, cout in zip([channels] + widths[:-1], widths))
        self.up = nn.ModuleList(nn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in widths[:0:-1])
        self.merge = nn.ModuleList(_double_conv(w, w // 2) for w in widths[:0:-1])
        self.last = nn.ConvTranspose2d(width, channels, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        unit = 2 ** self.depth
        if h % unit or w % unit:
            raise ValueError(f"SparseUNet of depth {self.depth} needs H and W divisible by "
                             f"{unit}, got {h}x{w}")
        out = self.first(x)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                out = F.max_pool2d(out, 2)
            out = block(out)
            skips.append(out)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            out = merge(torch.cat([up(out), skip], 1))
        return self.last(out)


class PRM(nn.Module):
    """Pixel Robustness Manipulator in front of a classifier (the authors' ``AENet``):
    ``classifier((1 - lam) * x + lam * autoencoder(x))``.

    ``lam`` is a buffer of the module (set it with :meth:`at`, or pass ``lam`` to ``forward``).
    The classifier stays in eval mode even when the module trains (its batch-norm statistics
    never move), and :func:`train_prm` freezes its weights.
    """

    def __init__(self, classifier: nn.Module, autoencoder: nn.Module, lam: float = 1.0):
        super().__init__()
        self.classifier, self.autoencoder = classifier, autoencoder
        self.register_buffer("lam", torch.tensor(float(lam)))
        self._check(lam)

    @staticmethod
    def _check(lam: float) -> None:
        if not 0 <= float(lam) <= 1:
            raise ValueError(f"lambda weighs the autoencoder in [0, 1], got {lam}")

    def at(self, lam: float) -> "PRM":
        """Set lambda (in place) and return the module."""
        self._check(lam)
        self.lam.fill_(float(lam))
        return self

    def mix(self, x: torch.Tensor, lam: float | None = None) -> torch.Tensor:
        """What the classifier sees: ``(1 - lam) * x + lam * AE(x)``."""
        lam = self.lam if lam is None else torch.as_tensor(float(lam), device=x.device)
        return (1 - lam) * x + lam * self.autoencoder(x)

    def forward(self, x: torch.Tensor, lam: float | None = None) -> torch.Tensor:
        if lam is not None:
            self._check(lam)
        return self.classifier(self.mix(x, lam))

    def train(self, mode: bool = True) -> "PRM":
        super().train(mode)
        self.classifier.eval()
        return self

    def extra_repr(self) -> str:
        return f"lam={float(self.lam):g}"


# --------------------------------------------------------------------------- training
def prm_recipes(width: int, depth: int, lam: float, lr_mse: float, lr_ce: float,
                classifier: str, n_ce: int | None) -> tuple[dict, dict]:
    """What :func:`train_prm`'s two stages depend on besides epochs, batch size, seed and data:
    stage 1 (the AE alone) and stage 2 (the PRM in front of the classifier)."""
    arch = f"SparseUNet(width={width}, depth={depth}), first 1x1 stride-2 conv"
    stage1 = dict(arch=arch, loss="MSE(AE(x), x)", optimizer=f"Adam(lr={lr_mse})",
                  schedule="cosine", augment="random horizontal flip")
    stage2 = dict(arch=arch, classifier=classifier, lam=lam, n_images=n_ce,
                  loss="CE(classifier((1-lam)x + lam AE(x)), y), classifier frozen",
                  optimizer=f"Adam(lr={lr_ce}) on the AE only",
                  schedule="cosine", augment="random horizontal flip")
    return stage1, stage2


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip per image (seeded): the only augmentation of :func:`train_prm`.
    (A flip keeps the stride-2 lattice on even columns only for even widths, which CIFAR has.)"""
    flip = torch.rand(len(x), generator=gen, device=gen.device).to(x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def train_prm(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor, *, classifier_name: str,
              lam: float = 0.9, width: int = 16, depth: int = 3, epochs_mse: int = 3,
              epochs_ce: int = 1, n_ce: int | None = None, batch_size: int = 128,
              lr_mse: float = 1e-3, lr_ce: float = 1e-3, seed: int = 0, device=None,
              progress: bool = True) -> PRM:
    """Train a PRM in front of the frozen ``classifier`` on images ``x`` (labels ``y``).

    Stage 1 (the authors' ``train_ae``): the AE alone, MSE to the input, Adam, on all of ``x``.
    Stage 2 (their ``train`` of ``unet_*`` at ``--lambd``): cross-entropy of the PRM at
    ``lam`` on the first ``n_ce`` images (all by default), on the AE's weights only (their
    optimizer also moved the classifier's), with Adam: their SGD 0.01 with momentum 0.9 and
    weight decay 5e-4 diverged here (NaN weights within a few batches at lambda >= 0.3, in
    float32 on the CPU and under float16 autocast on CUDA; this U-Net has no batch norm).  Both stages run on :func:`advlab.train.fit`, so they are seeded, cached
    under ``$ADVLAB_CACHE/models`` (stage 1's key does not depend on stage 2's settings) and
    resumable mid-epoch.
    """
    from ..cache import tensor_digest
    from ..train import fit, on_outputs
    if n_ce is not None and not 0 < n_ce <= len(x):
        raise ValueError(f"n_ce must be in 1..{len(x)}, got {n_ce}")
    stage1, stage2 = prm_recipes(width, depth, lam, lr_mse, lr_ce, classifier_name, n_ce)
    ae = fit(lambda: SparseUNet(x.shape[1], width, depth), (x, x), on_outputs(F.mse_loss),
             lambda p: torch.optim.Adam(p, lr=lr_mse),
             lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, max(epochs_mse, 1)),
             epochs=epochs_mse, batch_size=batch_size, seed=seed, device=device,
             augment=_flip, name="prm-ae", recipe=stage1, data_id=tensor_digest(x),
             progress=progress)
    for p in classifier.parameters():
        p.requires_grad_(False)
    prm = PRM(classifier.eval(), ae, lam)
    if epochs_ce == 0:
        return prm.eval()
    xc, yc = (x, y) if n_ce is None else (x[:n_ce], y[:n_ce])
    return fit(prm, (xc, yc), on_outputs(F.cross_entropy),
               lambda p: torch.optim.Adam([q for q in p if q.requires_grad], lr=lr_ce),
               lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, max(epochs_ce, 1)),
               epochs=epochs_ce, batch_size=batch_size, seed=seed + 1, device=device,
               augment=_flip, name="prm", recipe=stage2, progress=progress)


# --------------------------------------------------------------------------- committed weights
#: The manifest of the self-trained PRM autoencoders shipped with the package (float16 state
#: dicts, one per lambda they were trained at): ``resources/prm_weights.json``, written by
#: ``advlab train-prm`` with ``resources/PRM_PROVENANCE.md`` (command, data, seed, sha256).
MANIFEST = "prm_weights.json"


def shipped_prms() -> dict:
    """The manifest: ``{classifier: {"width", "depth", "channels", "weights": {lam: {"file",
    "sha256"}}}}`` (lambda keys as strings, e.g. ``"0.9"``); empty if none is shipped."""
    import json
    ref = resources.files("advlab.resources").joinpath(MANIFEST)
    return json.loads(ref.read_text()) if ref.is_file() else {}


def trained_lambdas(classifier_name: str = "resnet20") -> list[float]:
    """The lambdas a PRM is shipped for in front of ``classifier_name``."""
    spec = shipped_prms().get(classifier_name, {})
    return sorted(float(k) for k in spec.get("weights", {}))


def load_autoencoder(classifier_name: str, trained_at: float) -> SparseUNet:
    """The shipped autoencoder trained at lambda ``trained_at`` in front of ``classifier_name``
    (float32, eval), its file's sha256 checked first, read with ``weights_only=True``."""
    spec = shipped_prms().get(classifier_name)
    if spec is None:
        raise ValueError(f"no shipped PRM for {classifier_name!r}; there is one for "
                         f"{sorted(shipped_prms())} (train one with train_prm)")
    entry = spec["weights"].get(f"{float(trained_at):g}")
    if entry is None:
        raise ValueError(f"no shipped PRM for {classifier_name!r} trained at lambda "
                         f"{trained_at:g}; there are {trained_lambdas(classifier_name)}")
    ref = resources.files("advlab.resources").joinpath(entry["file"])
    blob = ref.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != entry["sha256"]:
        raise ValueError(f"{entry['file']}: sha256 {digest} does not match {entry['sha256']}")
    with resources.as_file(ref) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    ae = SparseUNet(spec.get("channels", 3), spec["width"], spec["depth"])
    ae.load_state_dict({k: v.float() for k, v in state.items()})
    return ae.eval()


def load_prm(classifier: nn.Module, classifier_name: str = "resnet20", lam: float = 0.9,
             trained_at: float | None = None) -> PRM:
    """The shipped PRM in front of ``classifier`` at ``lam`` (eval mode, float32): the
    autoencoder trained at ``trained_at`` (default: ``lam`` if one was trained there, else the
    nearest trained lambda, which at ``lam = 0`` does not matter: the autoencoder is then out
    of the output and of the gradient)."""
    if trained_at is None:
        lams = trained_lambdas(classifier_name)
        trained_at = min(lams, key=lambda t: (abs(t - lam), t)) if lams else lam
    ae = load_autoencoder(classifier_name, trained_at)
    for p in classifier.parameters():
        p.requires_grad_(False)
    return PRM(classifier.eval(), ae, lam).eval()


# --------------------------------------------------------------------------- the shift
def pixel_shift(x: torch.Tensor, shifts: torch.Tensor | None = None,
                padding: str = "replicate") -> torch.Tensor:
    """Every image moved by one pixel: ``shifts`` (N, 2) integer (dx, dy) in {-1, 0, 1}
    (+dx: right, +dy: down), default one of the 8 neighbours at random per image (global torch
    RNG); the uncovered border is replicated (the authors' default) or zero."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if x.dim() != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    if shifts is None:
        table = torch.tensor(SHIFTS, device=x.device)
        shifts = table[torch.randint(len(SHIFTS), (n,), device=x.device)]
    shifts = torch.as_tensor(shifts, device=x.device).long()
    if shifts.shape != (n, 2) or shifts.abs().max() > 1:
        raise ValueError(f"shifts must be (N, 2) in {{-1, 0, 1}}, got shape {tuple(shifts.shape)}")
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate" if padding == "replicate" else "constant")
    rows = torch.arange(h, device=x.device) + 1 - shifts[:, 1:2]            # (N, H)
    cols = torch.arange(w, device=x.device) + 1 - shifts[:, 0:1]            # (N, W)
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def shift_defence(model: nn.Module, padding: str = "replicate") -> Preprocessed:
    """The study's gray-box defence: a random one-pixel shift, then ``model`` (a PRM at high
    lambda).  Differentiable, randomized: attack it white-box with ``EOT``."""
    return Preprocessed(model, lambda x: pixel_shift(x, padding=padding), differentiable=True,
                        randomized=True, name=f"one-pixel shift ({padding})")


__all__ = ["MASK_KINDS", "PADDINGS", "MANIFEST", "PRM", "SHIFTS", "SparseUNet", "blend",
           "gradient_map", "input_gradients", "iou", "lattice_mask", "load_autoencoder", "load_prm",
           "map_correlations", "pixel_mask", "pixel_shift", "prm_recipes", "shift_defence",
           "shipped_prms", "top_fraction_iou", "train_prm", "trained_lambdas"]
