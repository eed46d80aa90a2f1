"""The Pixel Robustness Manipulator of Hwang et al. 2019 (the authors' ``AENet``): an
autoencoder whose first layer reads only the stride-2 lattice, mixed with the input in front of a
classifier; and the self-trained autoencoders shipped with the package.

* :class:`SparseUNet` and :class:`PRM`: ``out = (1 - lam) * x + lam * AE(x)`` then the
  classifier, where the AE's first layer is a 1x1 convolution of stride 2, so at ``lam = 1``
  only the stride-2 lattice (25% of the pixels) receives any gradient;
* :func:`lattice_upsample`: the parameter-free reconstructions of that lattice (nearest,
  bilinear, bicubic), the baselines a PRM has to beat and the base a residual
  :class:`SparseUNet` (``base=...``) corrects;
* :func:`load_prm` / :func:`load_autoencoder`: the shipped weights (``resources/prm_weights.json``,
  or a folder written by ``advlab train-prm``), sha256-checked; training is
  :mod:`advlab.training.prm`.
"""
from __future__ import annotations

import hashlib
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

UPSAMPLE_MODES = ("nearest", "bilinear", "bicubic")


def lattice_upsample(x: torch.Tensor, mode: str = "bicubic",
                     aligned: bool = True) -> torch.Tensor:
    """The image rebuilt from its stride-2 lattice ``x[..., ::2, ::2]`` (the 25% of the pixels
    a PRM's first layer reads) without parameters, clamped to [0, 1].

    The lattice pixels keep their place and value: pixel ``(2i, 2j)`` is ``x[2i, 2j]`` and the
    others are interpolated between lattice neighbours (``nearest``: the lattice pixel up and
    to the left; ``bilinear``: the mean of the two or four around it; ``bicubic``: PyTorch's
    cubic convolution, a = -0.75, over four lattice pixels per axis); the last row and column,
    which have no lattice pixel after them, copy the one before.  With ``aligned=False`` it is
    ``F.interpolate(x[..., ::2, ::2], scale_factor=2, mode=mode)``, the lattice resized as a
    half-size image, which puts lattice pixel ``i`` at ``2i + 0.5``: half a pixel off and
    smoother (for ``nearest`` both are the same).  H and W must be even.
    """
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"mode must be one of {UPSAMPLE_MODES}, got {mode!r}")
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"lattice_upsample needs even H and W, got {h}x{w}")
    lattice = x[..., ::2, ::2]
    if mode == "nearest":
        return lattice.repeat_interleave(2, -2).repeat_interleave(2, -1)
    if not aligned:
        return F.interpolate(lattice, scale_factor=2, mode=mode, align_corners=False).clamp(0, 1)
    up = F.interpolate(lattice, size=(h - 1, w - 1), mode=mode, align_corners=True)
    return F.pad(up, (0, 1, 0, 1), mode="replicate").clamp(0, 1)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class SparseUNet(nn.Module):
    """The PRM's autoencoder: a 1x1 convolution of stride 2 (no padding) reads the stride-2
    lattice, a small U-Net (Ronneberger et al. 2015; ``depth`` levels, ``width`` filters at the
    top, doubling at each level, ReLU, no normalisation, concatenated skips) works at half
    resolution, and a 3x3 transposed convolution of stride 2 returns to full size.

    ``output`` keeps the image in [0, 1]: ``"sigmoid"`` (a logistic last step: smooth, every
    pixel keeps a gradient) or ``"clamp"`` (clipped; no gradient where it clips).  The authors'
    U-Net has depth 5 and 64 filters (about 31M weights); the defaults here (depth 3, 32
    filters: 0.47M) train on a CPU.  Input height and width must be even and divisible by
    ``2 ** depth`` after the first halving.

    ``base`` (a change from the authors' ``AENet``, which is ``base=None``): ``"bilinear"``,
    ``"bicubic"`` or ``"nearest"`` makes the U-Net a correction ``r(x)`` of the parameter-free
    :func:`lattice_upsample` ``b(x)`` of the same lattice: ``AE(x) = sigmoid(logit(clamp(b(x),
    eps, 1 - eps)) + r(x))`` (``"clamp"``: ``clamp(b(x) + r(x), 0, 1)``), with ``eps =``
    :attr:`EPS` and the U-Net's last layer initialised to zero, so an untrained AE *is* the
    interpolation (clamped to [eps, 1 - eps]) and training starts from the baseline instead of
    from noise.  Both ``b`` and ``r`` read only the lattice, so the PRM's defining property
    (at ``lam = 1`` no other pixel gets a gradient) holds.  Why: on the 2-core CPU the plain
    U-Net (width 16, depth 3, 15 MSE epochs, 23 min) only reached the bicubic baseline (PSNR
    25.3 dB against 25.9; accuracy at lambda 1 57.0% against 57.6%).
    """

    OUTPUTS = ("sigmoid", "clamp")
    EPS = 1e-3

    def __init__(self, channels: int = 3, width: int = 32, depth: int = 3,
                 output: str = "sigmoid", base: str | None = None):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"need depth >= 1 and width >= 1, got {depth}, {width}")
        if output not in self.OUTPUTS:
            raise ValueError(f"output must be one of {self.OUTPUTS}, got {output!r}")
        if base is not None and base not in UPSAMPLE_MODES:
            raise ValueError(f"base must be None or one of {UPSAMPLE_MODES}, got {base!r}")
        self.channels, self.width, self.depth, self.output = channels, width, depth, output
        self.base = base
        self.first = nn.Conv2d(channels, channels, 1, stride=2)
        widths = [width * 2 ** i for i in range(depth)]
        self.down = nn.ModuleList(_double_conv(cin, cout)
                                  for cin, cout in zip([channels] + widths[:-1], widths))
        self.up = nn.ModuleList(nn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in widths[:0:-1])
        self.merge = nn.ModuleList(_double_conv(w, w // 2) for w in widths[:0:-1])
        self.last = nn.ConvTranspose2d(width, channels, 3, stride=2, padding=1, output_padding=1)
        if base is not None:                    # start as the interpolation itself
            nn.init.zeros_(self.last.weight)
            nn.init.zeros_(self.last.bias)

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
        out = self.last(out)
        if self.base is not None:
            b = lattice_upsample(x, self.base).to(out.dtype)
            if self.output == "sigmoid":
                return torch.sigmoid(torch.logit(b, eps=self.EPS) + out)
            return (b + out).clamp(0, 1)
        return torch.sigmoid(out) if self.output == "sigmoid" else out.clamp(0, 1)

    def extra_repr(self) -> str:
        return f"output={self.output!r}, base={self.base!r}"


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

    def at(self, lam: float) -> PRM:
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

    def train(self, mode: bool = True) -> PRM:
        super().train(mode)
        self.classifier.eval()
        return self

    def extra_repr(self) -> str:
        return f"lam={float(self.lam):g}"


# --------------------------------------------------------------------------- committed weights
#: The manifest of the self-trained PRM autoencoders shipped with the package (float16 state
#: dicts, one per lambda they were trained at): ``resources/prm_weights.json``, written by
#: ``advlab train-prm --ship`` with ``resources/PRM_PROVENANCE.md`` (command, data, seed,
#: sha256); ``advlab train-prm`` alone writes the same files into ``prm-weights/``.
MANIFEST = "prm_weights.json"


def _folder(root):
    """Where the weights are: the package's resources (``root`` None) or the folder ``root``."""
    if root is None:
        return resources.files("advlab.resources")
    from pathlib import Path
    return Path(root)


def shipped_prms(root=None) -> dict:
    """The manifest: ``{classifier: {"width", "depth", "channels", "output", "weights": {lam:
    {"file", "sha256", ...}}}}`` (lambda keys as strings, e.g. ``"0.9"``); empty if there is
    none.  ``root``: a folder written by ``advlab train-prm --out`` (default: the package's own
    resources)."""
    import json
    ref = _folder(root).joinpath(MANIFEST)
    return json.loads(ref.read_text()) if ref.is_file() else {}


def trained_lambdas(classifier_name: str = "resnet20", root=None) -> list[float]:
    """The lambdas a PRM is shipped for in front of ``classifier_name``."""
    spec = shipped_prms(root).get(classifier_name, {})
    return sorted(float(k) for k in spec.get("weights", {}))


def load_autoencoder(classifier_name: str, trained_at: float, root=None) -> SparseUNet:
    """The shipped autoencoder trained at lambda ``trained_at`` in front of ``classifier_name``
    (float32, eval), its file's sha256 checked first, read with ``weights_only=True``.  A
    lambda that is not in the manifest is a ValueError naming those that are."""
    import io
    manifest = shipped_prms(root)
    spec = manifest.get(classifier_name)
    if spec is None:
        raise ValueError(f"no shipped PRM for {classifier_name!r}; there is one for "
                         f"{sorted(manifest)} (train one with train_prm)")
    entry = spec["weights"].get(f"{float(trained_at):g}")
    if entry is None:
        raise ValueError(f"no shipped PRM for {classifier_name!r} trained at lambda "
                         f"{trained_at:g}; there are {trained_lambdas(classifier_name, root)}")
    if "output" not in spec:
        raise ValueError(f"the PRM manifest for {classifier_name!r} names no output layer "
                         "(written by an older advlab); train the PRMs again")
    ref = _folder(root).joinpath(entry["file"])
    blob = ref.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != entry["sha256"]:
        from ..download import ChecksumError, resource_hint
        where = f"shipped PRM weights {ref}" if root is None else f"PRM weights {ref}"
        fix = (resource_hint(entry["file"]) if root is None
               else f"train them again (advlab train-prm --out {root})")
        raise ChecksumError(f"{where}: sha256 {digest} does not match the {entry['sha256']} "
                            f"of {MANIFEST}; the file is damaged or was replaced: {fix}")
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    ae = SparseUNet(spec.get("channels", 3), spec["width"], spec["depth"], spec["output"],
                    spec.get("base"))
    ae.load_state_dict({k: v.float() for k, v in state.items()})
    return ae.eval()


def load_prm(classifier: nn.Module, classifier_name: str = "resnet20", lam: float = 0.9,
             trained_at: float | None = None, root=None) -> PRM:
    """The shipped PRM in front of ``classifier`` at ``lam`` (eval mode, float32), with the
    autoencoder trained at ``trained_at`` (default: ``lam``).  A lambda no autoencoder was
    trained at is a ValueError naming those that were; only at ``lam = 0``, where the
    autoencoder is out of the output and of the gradient, any shipped one serves.  ``root``:
    as in :func:`shipped_prms`."""
    if trained_at is None:
        lams = trained_lambdas(classifier_name, root)
        trained_at = min(lams) if float(lam) == 0 and lams else lam
    ae = load_autoencoder(classifier_name, trained_at, root)
    for p in classifier.parameters():
        p.requires_grad_(False)
    return PRM(classifier.eval(), ae, lam).eval()
