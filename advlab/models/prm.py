"""The Pixel Robustness Manipulator of Hwang et al. 2019 (the authors' ``AENet``): an
autoencoder whose first layer reads only the stride-2 lattice, mixed with the input in front of a
classifier; and the self-trained autoencoders shipped with the package.

* :class:`SparseUNet` and :class:`PRM`: ``out = (1 - lam) * x + lam * AE(x)`` then the
  classifier, where the AE's first layer is a 1x1 convolution of stride 2, so at ``lam = 1``
  only the stride-2 lattice (25% of the pixels) receives any gradient;
* :func:`load_prm` / :func:`load_autoencoder`: the shipped weights (``resources/prm_weights.json``),
  sha256-checked; training is :mod:`advlab.training.prm`.
"""
from __future__ import annotations

import hashlib
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn


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
        from ..download import ChecksumError, resource_hint
        raise ChecksumError(f"shipped PRM weights {ref}: sha256 {digest} does not match the "
                            f"{entry['sha256']} of {MANIFEST}; the file is damaged or was "
                            f"replaced: {resource_hint(entry['file'])}")
    with resources.as_file(ref) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    ae = SparseUNet(spec.get("channels", 3), spec["width"], spec["depth"])
    ae.load_state_dict({k: v.float() for k, v in state.items()})
    return ae.eval()


def load_prm(classifier: nn.Module, classifier_name: str = "resnet20", lam: float = 0.9,
             trained_at: float | None = None) -> PRM:
    """The shipped PRM in front of ``classifier`` at ``lam`` (eval mode, float32), with the
    autoencoder trained at ``trained_at`` (default: ``lam``).  A lambda no autoencoder was
    trained at is a ValueError naming those that were; only at ``lam = 0``, where the
    autoencoder is out of the output and of the gradient, any shipped one serves."""
    if trained_at is None:
        lams = trained_lambdas(classifier_name)
        trained_at = min(lams) if float(lam) == 0 and lams else lam
    ae = load_autoencoder(classifier_name, trained_at)
    for p in classifier.parameters():
        p.requires_grad_(False)
    return PRM(classifier.eval(), ae, lam).eval()
