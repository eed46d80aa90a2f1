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
#: the authors' two stages, reduced to fit 25 minutes of the 2-core CPU: a 0.12M-weight U-Net,
#: residual on the aligned bilinear upsampling of the lattice (the better of the two baselines
#: on the chapter's images, see :class:`advlab.models.prm.SparseUNet`); stage 1 2 epochs of
#: MSE on the mirror's 20,000 training images, shared by every lambda; stage 2 1 epoch of
#: CE + 50 MSE on the first 10,000 per lambda of :data:`PRM_LAMBDAS`.
PRM_RECIPE = dict(classifier="resnet20", width=16, depth=3, output="sigmoid", base="bilinear",
                  epochs_mse=2, epochs_ce=1, n_ce=10_000, batch_size=128, lr_mse=1e-3,
                  lr_ce=1e-3, rec_weight=50.0, seed=0)
PRM_LAMBDAS = (0.2, 0.4, 0.6, 0.8, 0.9, 1.0)


def prm_recipes(width: int, depth: int, lam: float, lr_mse: float, lr_ce: float,
                classifier: str, n_ce: int | None, output: str = "sigmoid",
                rec_weight: float = 0.0, base: str | None = None) -> tuple[dict, dict]:
    """What :func:`train_prm`'s two stages depend on besides epochs, batch size, seed and data:
    stage 1 (the AE alone) and stage 2 (the PRM in front of the classifier)."""
    arch = f"SparseUNet(width={width}, depth={depth}, output={output}), first 1x1 stride-2 conv"
    if base is not None:
        arch += f", residual on the {base} lattice upsampling, last layer zero-initialised"
    stage1 = dict(arch=arch, loss="MSE(AE(x), x) on the augmented x",
                  optimizer=f"Adam(lr={lr_mse})", schedule="cosine",
                  augment="random horizontal flip")
    stage2 = dict(arch=arch, classifier=classifier, lam=lam, n_images=n_ce,
                  loss=f"CE(classifier((1-lam)x + lam AE(x)), y) + {rec_weight:g} MSE(AE(x), x), "
                       "classifier frozen",
                  optimizer=f"Adam(lr={lr_ce}) on the AE only",
                  schedule="cosine", augment="random horizontal flip")
    return stage1, stage2


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip per image (seeded): the only augmentation of :func:`train_prm`.
    (A flip keeps the stride-2 lattice on even columns only for even widths, which CIFAR has.)"""
    flip = torch.rand(len(x), generator=gen, device=gen.device).to(x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def reconstruction_loss(ae: nn.Module, x: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
    """Stage 1's loss of :func:`train_prm`: ``MSE(AE(x), x)`` against the batch as the model
    sees it (:func:`advlab.train.fit` augments the inputs only: a target taken from the data
    would stay unflipped where the input was flipped)."""
    return F.mse_loss(ae(x).float(), x.float())


def prm_loss(rec_weight: float):
    """Stage 2's loss of :func:`train_prm` (a :data:`advlab.train.LossFn` of a :class:`PRM`):
    ``CE(classifier((1 - lam) x + lam AE(x)), y) + rec_weight * MSE(AE(x), x)``.

    The reconstruction term keeps the autoencoder an autoencoder: with cross-entropy alone it
    drifts, within a few epochs, to whatever images the frozen classifier labels right
    (7 dB from its input), which is no longer the study's PRM.  It is on ``AE(x)``, not on the
    mixture, so it holds at every lambda."""
    def loss(prm: PRM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ae = prm.autoencoder(x)
        ce = F.cross_entropy(prm.classifier((1 - prm.lam) * x + prm.lam * ae), y)
        return ce + rec_weight * F.mse_loss(ae.float(), x.float()) if rec_weight else ce
    return loss


def train_prm(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor, *, classifier_name: str,
              lam: float = 0.9, width: int = 16, depth: int = 3, output: str = "sigmoid",
              base: str | None = None,
              epochs_mse: int = 3, epochs_ce: int = 1, n_ce: int | None = None,
              batch_size: int = 128, lr_mse: float = 1e-3, lr_ce: float = 1e-3,
              rec_weight: float = 0.0, seed: int = 0, device=None,
              progress: bool = True) -> PRM:
    """Train a PRM in front of the frozen ``classifier`` on images ``x`` (labels ``y``).

    Stage 1 (the authors' ``train_ae``): the AE alone, MSE to the input, Adam, on all of ``x``.
    Stage 2 (their ``train`` of ``unet_*`` at ``--lambd``): :func:`prm_loss` (cross-entropy of
    the PRM at ``lam`` plus ``rec_weight`` times stage 1's MSE) on the first ``n_ce`` images
    (all by default), on the AE's weights only (their optimizer also moved the classifier's),
    with Adam: their SGD 0.01 with momentum 0.9 and weight decay 5e-4 diverged here (NaN
    weights within a few batches at lambda >= 0.3, in float32 on the CPU and under float16
    autocast on CUDA; this U-Net has no batch norm).  Both stages run on
    :func:`advlab.train.fit`, so they are seeded, cached under ``$ADVLAB_CACHE/models``
    (stage 1's key does not depend on stage 2's settings) and resumable mid-epoch.  ``base``:
    the :class:`SparseUNet` is a residual on that parameter-free upsampling of the lattice
    (None: the authors' plain U-Net).
    """
    from ..cache import tensor_digest
    from ..train import fit
    if n_ce is not None and not 0 < n_ce <= len(x):
        raise ValueError(f"n_ce must be in 1..{len(x)}, got {n_ce}")
    if rec_weight < 0:
        raise ValueError(f"rec_weight must be >= 0, got {rec_weight}")
    stage1, stage2 = prm_recipes(width, depth, lam, lr_mse, lr_ce, classifier_name, n_ce,
                                 output, rec_weight, base)
    ae = fit(lambda: SparseUNet(x.shape[1], width, depth, output, base), (x, x),
             reconstruction_loss, lambda p: torch.optim.Adam(p, lr=lr_mse),
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
    return fit(prm, (xc, yc), prm_loss(rec_weight),
               lambda p: torch.optim.Adam([q for q in p if q.requires_grad], lr=lr_ce),
               lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, max(epochs_ce, 1)),
               epochs=epochs_ce, batch_size=batch_size, seed=seed + 1, device=device,
               augment=_flip, name="prm", recipe=stage2, progress=progress)


def recipe_prm(clf, train: ImageSet, lam: float, device, progress: bool = True) -> PRM:
    """:func:`train_prm` with :data:`PRM_RECIPE` at ``lam`` on ``train``."""
    r = PRM_RECIPE
    return train_prm(clf, train.x, train.y, classifier_name=r["classifier"], lam=lam,
                     width=r["width"], depth=r["depth"], output=r["output"], base=r["base"],
                     epochs_mse=r["epochs_mse"], epochs_ce=r["epochs_ce"], n_ce=r["n_ce"],
                     batch_size=r["batch_size"], lr_mse=r["lr_mse"], lr_ce=r["lr_ce"],
                     rec_weight=r["rec_weight"], seed=r["seed"], device=device,
                     progress=progress)


def merge_manifest(out: Path, classifier: str, arch: dict, entries: dict) -> dict:
    """The manifest of ``out`` (``prm_weights.json``, see :func:`advlab.models.prm.shipped_prms`)
    with ``entries`` (``{lambda key: entry}``) added for ``classifier`` of architecture ``arch``
    (``width``, ``depth``, ``channels``, ``output``); every other entry is kept.  Entries of
    another architecture that would stay are a ValueError (their weights would no longer
    load).  Returns the merged manifest; writes nothing."""
    import json

    from ..models.prm import MANIFEST
    path = Path(out) / MANIFEST
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    spec = manifest.get(classifier, {})
    kept = sorted(set(spec.get("weights", {})) - set(entries), key=float)
    old_arch = {k: spec.get(k) for k in arch}
    if kept and old_arch != arch:
        raise ValueError(f"{path} lists PRMs for {classifier!r} at lambdas {kept} of another "
                         f"architecture ({old_arch}, not {arch}); train those lambdas too, or "
                         "write into another folder")
    weights = {**{k: v for k, v in spec.get("weights", {}).items() if k in kept}, **entries}
    manifest[classifier] = {**arch, "weights": dict(sorted(weights.items(),
                                                           key=lambda kv: float(kv[0])))}
    return manifest


def provenance_text(manifest: dict) -> str:
    """``PRM_PROVENANCE.md`` for a manifest written by :func:`train_shipped_prms`: for each
    classifier, its architecture, the recipes with the lambdas trained with each (command,
    data, device, torch), every file with its size and sha256, and the evaluation rows that
    were recorded."""
    import json

    from ..models.prm import MANIFEST
    parts = [f"""# Provenance of the PRM autoencoders (Chapter 5)

Float16 state dicts of `advlab.models.prm.SparseUNet`, one per lambda, listed with their sha256
in `{MANIFEST}` (written by `advlab train-prm`, `advlab.training.prm.train_shipped_prms`;
resumable, each stage cached by `advlab.train.fit`); loaded by `load_prm` / `load_autoencoder`
with `weights_only=True` after the sha256 check. Stage 1 (the autoencoder alone, MSE to the
input, Adam, cosine schedule) is shared by every lambda and cached. Stage 2 (per lambda):
`advlab.training.prm.prm_loss`, cross-entropy of `classifier((1 - lambda) x + lambda AE(x))`
in front of the frozen pretrained classifier plus `rec_weight` times the autoencoder's MSE,
Adam on the autoencoder only, cosine schedule. Random horizontal flips; seed `seed` (stage 2:
seed + 1). Seconds: wall time of each lambda in its call (CPU seconds: the process's CPU time,
all threads), stage 1 included in the first lambda of the call unless it was read from the
cache. A rerun on other hardware gives close but not
bit-identical weights.
"""]
    for clf, spec in manifest.items():
        arch = {k: v for k, v in spec.items() if k != "weights"}
        parts.append(f"\n## {clf}\n\nArchitecture: `SparseUNet({arch.get('channels', 3)}, "
                     f"width={arch.get('width')}, depth={arch.get('depth')}, "
                     f"output={arch.get('output')!r}, base={arch.get('base')!r})`.\n")
        groups: dict[str, list[str]] = {}
        for lam, e in spec["weights"].items():
            key = json.dumps({k: e.get(k) for k in ("command", "recipe", "data", "device",
                                                     "torch", "threads")}, sort_keys=True)
            groups.setdefault(key, []).append(lam)
        for key, lams in groups.items():
            g = json.loads(key)
            parts.append(f"""
Lambdas {', '.join(lams)}:

* command: `{g['command']}`
* recipe (`advlab.training.prm.PRM_RECIPE`): `{json.dumps(g['recipe'])}`
* data: {g['data']}
* trained on: {g['device']}, torch {g['torch']}, {g['threads'] or '?'} torch thread(s)
""")
        parts.append("\n| lambda | file | bytes | sha256 | seconds | CPU seconds | date |\n"
                     "|---|---|---:|---|---:|---:|---|\n")
        parts += [f"| {lam} | `{e['file']}` | {e.get('bytes', 0):,} | `{e['sha256']}` | "
                  f"{e.get('seconds', 0):.0f} | {e.get('cpu_seconds', 0):.0f} | "
                  f"{e.get('date', '')} |\n"
                  for lam, e in spec["weights"].items()]
        evals: dict[str, dict] = {}
        for lam, e in spec["weights"].items():
            if e.get("eval"):
                evals.setdefault(e.get("eval_set", ""), {})[lam] = e["eval"]
        for eval_set, rows in evals.items():
            cols = list(dict.fromkeys(c for row in rows.values() for c in row))
            parts.append(f"\nEvaluation of the float16 weights ({eval_set}):\n\n"
                         f"| lambda | {' | '.join(cols)} |\n|---|{'---:|' * len(cols)}\n")
            parts += [f"| {lam} | {' | '.join(_fmt(row.get(c)) for c in cols)} |\n"
                      for lam, row in rows.items()]
    return "".join(parts)


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def resources_folder() -> Path:
    """The package's own ``advlab/resources`` folder (``advlab train-prm --ship`` writes there)."""
    from importlib import resources
    return Path(str(resources.files("advlab.resources")))


def train_shipped_prms(out: Path, lambdas=PRM_LAMBDAS, device=None, progress: bool = True,
                       command: str = "advlab train-prm", evaluate=None,
                       eval_set: str = "") -> list[Path]:
    """``advlab train-prm``: train a PRM per lambda with :data:`PRM_RECIPE` in front of the
    pretrained classifier on the CIFAR-10 training images (the mirror's 20,000), write each
    autoencoder as a float16 state dict into ``out``, merge them into ``out``'s manifest
    (``prm_weights.json``: other lambdas already there are kept, see :func:`merge_manifest`)
    and write ``PRM_PROVENANCE.md`` for the whole manifest (:func:`provenance_text`).

    ``evaluate(prms)``: optional, given ``{lambda: PRM}`` (the float16 weights, as loaded)
    returns ``{lambda: {metric: value}}``, recorded in the manifest and the provenance with
    ``eval_set`` (what it was measured on).
    Resumable: each stage is cached by :func:`advlab.train.fit`."""
    import datetime
    import hashlib
    import json
    import platform

    from ..cache import tensor_digest
    from ..data import CIFAR10_MIRROR_SHA256
    from ..models.prm import MANIFEST
    r = PRM_RECIPE
    dev = get_device(device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train = load_cifar10("train")
    data = f"{len(train.x):,} CIFAR-10 training images (tensor digest `{tensor_digest(train.x)}`)"
    if len(train.x) == 20_000:
        data += (", the offline mirror's `cifar10_train_part0.npz` (sha256 `"
                 f"{CIFAR10_MIRROR_SHA256['cifar10_train_part0.npz']}`) and "
                 "`cifar10_train_part1.npz` (sha256 `"
                 f"{CIFAR10_MIRROR_SHA256['cifar10_train_part1.npz']}`)")
    arch = dict(width=r["width"], depth=r["depth"], channels=3, output=r["output"],
                base=r["base"])
    # refuse early, before any training (the lambdas trained here replace their entries)
    merge_manifest(out, r["classifier"], arch, {f"{float(lam):g}": {} for lam in lambdas})
    trained = {}
    for lam in lambdas:                 # every lambda first: an interrupted run writes nothing
        t1, c1 = time.time(), time.process_time()
        clf = prepare_for_inference(load_cifar_resnet(r["classifier"]), dev)
        prm = recipe_prm(clf, train, float(lam), dev, progress)
        state = {k: v.detach().cpu().half() for k, v in prm.autoencoder.state_dict().items()}
        trained[float(lam)] = (clf, state, time.time() - t1, time.process_time() - c1)
        if progress:
            print(f"lambda {float(lam):g} trained in {time.time() - t1:.0f} s", flush=True)
    entries, prms, written = {}, {}, []
    for lam, (clf, state, seconds, cpu) in trained.items():
        path = out / f"prm_{r['classifier']}_lam{lam:g}.pt"
        torch.save(state, path)
        blob = path.read_bytes()
        entries[f"{lam:g}"] = dict(
            file=path.name, sha256=hashlib.sha256(blob).hexdigest(), bytes=len(blob),
            seconds=round(seconds, 1), cpu_seconds=round(cpu, 1),
            date=datetime.date.today().isoformat(), command=command, recipe=dict(r), data=data,
            torch=torch.__version__, threads=torch.get_num_threads(),
            device=f"{device_name(dev)} ({platform.machine()})")
        half = SparseUNet(3, r["width"], r["depth"], r["output"], r["base"])
        half.load_state_dict({k: v.float() for k, v in state.items()})
        prms[lam] = PRM(clf, half.to(dev).eval(), lam).eval()
        written.append(path)
    if evaluate is not None:
        for lam, row in evaluate(prms).items():
            entries[f"{float(lam):g}"].update(eval=row, eval_set=eval_set)
    manifest = merge_manifest(out, r["classifier"], arch, entries)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    (out / "PRM_PROVENANCE.md").write_text(provenance_text(manifest))
    return written + [out / MANIFEST, out / "PRM_PROVENANCE.md"]
