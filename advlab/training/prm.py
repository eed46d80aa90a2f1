"""Training the Pixel Robustness Manipulator (Hwang et al. 2019): the autoencoder alone with
MSE, then the PRM in front of a frozen classifier (the authors' two stages), on
:func:`advlab.train.fit`."""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import device_name, get_device
from ..data import ImageSet, load_cifar10
from ..models import load_cifar_resnet, prepare_for_inference
from ..models.prm import PRM, SparseUNet

#: The recipe of the shipped PRMs (advlab/resources/prm_resnet20_lam*.pt, ``advlab train-prm``):
#: the authors' two stages, reduced (a 0.12M-weight U-Net, 10 + 5 epochs on the mirror's 20,000
#: training images); one autoencoder per lambda of :data:`PRM_LAMBDAS`, all from one stage 1.
PRM_RECIPE = dict(classifier="resnet20", width=16, depth=3, epochs_mse=10, epochs_ce=4,
                  n_ce=None, batch_size=128, lr_mse=1e-3, lr_ce=1e-3, seed=0)
PRM_LAMBDAS = (0.2, 0.4, 0.6, 0.8, 0.9, 1.0)


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
    float32 on the CPU and under float16 autocast on CUDA; this U-Net has no batch norm).
    Both stages run on :func:`advlab.train.fit`, so they are seeded, cached
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


def recipe_prm(clf, train: ImageSet, lam: float, device, progress: bool = True) -> PRM:
    """:func:`train_prm` with :data:`PRM_RECIPE` at ``lam`` on ``train``."""
    r = PRM_RECIPE
    return train_prm(clf, train.x, train.y, classifier_name=r["classifier"], lam=lam,
                     width=r["width"], depth=r["depth"], epochs_mse=r["epochs_mse"],
                     epochs_ce=r["epochs_ce"], n_ce=r["n_ce"], batch_size=r["batch_size"],
                     lr_mse=r["lr_mse"], lr_ce=r["lr_ce"], seed=r["seed"], device=device,
                     progress=progress)


TRAIN_COMMAND = "advlab train-prm --device cuda --out advlab/resources"


def train_shipped_prms(out: Path, lambdas=PRM_LAMBDAS, device=None,
                       progress: bool = True) -> list[Path]:
    """``advlab train-prm``: train a PRM per lambda with :data:`PRM_RECIPE` in front of the
    pretrained ResNet-20 on the mirror's CIFAR-10 training images, and write each autoencoder
    as a float16 state dict into ``out`` with the manifest (``prm_weights.json``: files and
    sha256) and ``PRM_PROVENANCE.md`` (command, recipe, data, seed, sha256, time, device).
    Resumable: each stage is cached by :func:`advlab.train.fit`."""
    import hashlib
    import json
    import platform

    from ..data import CIFAR10_MIRROR_SHA256
    from ..models.prm import MANIFEST
    r = PRM_RECIPE
    dev = get_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_cifar10("train")
    manifest = {r["classifier"]: dict(width=r["width"], depth=r["depth"], channels=3, weights={})}
    rows, written = [], []
    t0 = time.time()
    for lam in lambdas:
        t1 = time.time()
        clf = prepare_for_inference(load_cifar_resnet(r["classifier"]), dev)
        prm = recipe_prm(clf, train, float(lam), dev, progress)
        state = {k: v.detach().cpu().half() for k, v in prm.autoencoder.state_dict().items()}
        path = out / f"prm_{r['classifier']}_lam{float(lam):g}.pt"
        torch.save(state, path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        manifest[r["classifier"]]["weights"][f"{float(lam):g}"] = {"file": path.name,
                                                                   "sha256": digest}
        rows.append(f"| {float(lam):g} | `{path.name}` | {path.stat().st_size:,} | `{digest}` | "
                    f"{time.time() - t1:.0f} |")
        written.append(path)
        print(rows[-1], flush=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    dname = device_name(dev)
    text = f"""# Provenance of the shipped PRM autoencoders (Chapter 5)

Float16 state dicts of `advlab.models.prm.SparseUNet(3, width={r['width']},
depth={r['depth']})`, one per lambda, listed with their sha256 in `{MANIFEST}`; loaded by
`load_prm` / `load_autoencoder` with `weights_only=True` after the sha256 check.

* command: `{TRAIN_COMMAND}` (`advlab.training.prm.train_shipped_prms`; resumable)
* recipe (`advlab.training.prm.PRM_RECIPE`): `{json.dumps(r)}`, lambdas
  `{[float(v) for v in lambdas]}`. Stage 1 (once, shared by every lambda): the autoencoder
  alone, MSE to the input, Adam, cosine schedule, all the training images. Stage 2 (per
  lambda): cross-entropy of `classifier((1 - lambda) x + lambda AE(x))` in front of the frozen
  pretrained CIFAR-10 {r['classifier']} (akamaster's checkpoint, sha256 in `advlab.models`), Adam
  ({r['lr_ce']}) on the autoencoder only (the authors' SGD 0.01 diverged, see `train_prm`),
  cosine schedule, all the training images. Random horizontal flips; seed {r['seed']} (stage 2:
  seed + 1); float16 autocast on CUDA (`advlab.train.fit`)
* data: the 20,000 CIFAR-10 training images of the offline mirror,
  `cifar10_train_part0.npz` (sha256 `{CIFAR10_MIRROR_SHA256['cifar10_train_part0.npz']}`) and
  `cifar10_train_part1.npz` (sha256 `{CIFAR10_MIRROR_SHA256['cifar10_train_part1.npz']}`)
* trained on: {dname} ({platform.machine()}), torch {torch.__version__}, {time.time() - t0:.0f} s
  in all. A rerun on other hardware gives close but not bit-identical weights (cuDNN and
  autocast are not deterministic across devices).

| lambda | file | bytes | sha256 | seconds |
|---|---|---:|---|---:|
""" + "\n".join(rows) + "\n"
    (out / "PRM_PROVENANCE.md").write_text(text)
    return written + [out / MANIFEST, out / "PRM_PROVENANCE.md"]
