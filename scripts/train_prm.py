"""Train the PRM that advlab ships (Chapter 5) and write it to advlab/resources/.

    ADVLAB_DATA=../shared/data ADVLAB_MODELS=../shared/models python scripts/train_prm.py

Runs :func:`advlab.defenses.pixel_robustness.train_prm` with ``ch05.PRM_RECIPE`` on the
20,000 CIFAR-10 training images of the offline mirror, in front of the pretrained ResNet-20,
on the CPU; stores the autoencoder's weights as float16 (``--out``), and writes the
provenance file beside them: command, data, seed, sha256, training time, and the accuracy and
IoU the stored (float16) weights reach on 1,000 test images (the first 100 of every class).
Interrupted, it resumes from ``$ADVLAB_CACHE/models`` (train.fit's checkpoints).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import torch

from advlab.data import CIFAR10_MIRROR_SHA256, load_cifar10
from advlab.defenses.pixel_robustness import gradient_map, lattice_mask, top_fraction_iou, train_prm
from advlab.experiments.ch05 import PRM_RECIPE, cifar_subset
from advlab.models import load_cifar_resnet, predict

COMMAND = "ADVLAB_DATA=../shared/data ADVLAB_MODELS=../shared/models python scripts/train_prm.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("advlab/resources/prm_resnet20_cifar10.pt"))
    args = parser.parse_args()
    r = PRM_RECIPE
    train = load_cifar10("train", download=False)
    clf = load_cifar_resnet(r["classifier"], download=False)
    t0 = time.time()
    prm = train_prm(clf, train.x, train.y, classifier_name=r["classifier"], lam=r["lam"],
                    width=r["width"], depth=r["depth"], epochs_mse=r["epochs_mse"],
                    epochs_ce=r["epochs_ce"], n_ce=r["n_ce"], batch_size=r["batch_size"],
                    lr_mse=r["lr_mse"], lr_ce=r["lr_ce"], seed=r["seed"], device="cpu")
    seconds = time.time() - t0
    state = {k: v.detach().half() for k, v in prm.autoencoder.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out}: {args.out.stat().st_size} bytes, sha256 {digest}")

    test = cifar_subset(load_cifar10("test", download=False), 1000)
    prm.autoencoder.load_state_dict({k: v.float() for k, v in state.items()})
    lattice = lattice_mask(32, 32)
    rows = []
    for lam in (0.0, 0.5, 0.9, 1.0):
        prm.at(lam)
        acc = float((predict(prm, test.x, 250) == test.y).float().mean())
        gmap = gradient_map(prm, test.x, test.y, 100, progress=False)
        rows.append(f"| {lam} | {acc:.4f} | {top_fraction_iou(gmap, lattice):.3f} |")
        print(rows[-1])
    base = float((predict(clf, test.x, 250) == test.y).float().mean())
    text = f"""# Provenance of `{args.out.name}`

The Pixel Robustness Manipulator's autoencoder (Chapter 5), trained here; float16 state dict
of `advlab.defenses.pixel_robustness.SparseUNet(3, width={r['width']}, depth={r['depth']})`,
loaded by `load_prm` with `weights_only=True` after checking the sha256.

* command: `{COMMAND}` (the script: `scripts/train_prm.py`; it resumes if interrupted)
* recipe (`advlab.experiments.ch05.PRM_RECIPE`): `{json.dumps(r)}`; stage 1: MSE to the input,
  Adam, cosine schedule, all 20,000 images; stage 2: cross-entropy of the PRM at lambda
  {r['lam']} on the first {r['n_ce']} of them (the mirror's order) in front of the
  frozen pretrained CIFAR-10 {r['classifier']} (akamaster's checkpoint, sha256 in
  `advlab.models.cifar`), SGD with momentum 0.9 (Nesterov) and weight decay 5e-4 on the
  autoencoder only, cosine schedule; random horizontal flips; seed {r['seed']} (stage 2: seed + 1)
* data: the 20,000 CIFAR-10 training images of the offline mirror,
  `cifar10_train_part0.npz` (sha256 `{CIFAR10_MIRROR_SHA256['cifar10_train_part0.npz']}`) and
  `cifar10_train_part1.npz` (sha256 `{CIFAR10_MIRROR_SHA256['cifar10_train_part1.npz']}`)
* trained on: CPU ({torch.get_num_threads()} threads, {platform.machine()}), torch {torch.__version__},
  {seconds:.0f} s (on a machine shared with other jobs)
* file: {args.out.stat().st_size} bytes, sha256 `{digest}`

On the first 100 test images of every class (1,000), with these float16 weights
(ResNet-20 alone: top-1 {base:.4f}):

| lambda | top-1 | IoU of the top-25% gradient pixels with the stride-2 lattice |
|---|---|---|
""" + "\n".join(rows) + "\n"
    (args.out.parent / "PRM_PROVENANCE.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
