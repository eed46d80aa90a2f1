"""Training the book's MNIST LeNet (:class:`advlab.models.mnist.LeNet`) on the 60,000 training
digits with Adam, once, cached under ``$ADVLAB_CACHE/models``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.mnist import LeNet
from ..train import fit, on_outputs

# Training recipe of the book's model (Adam, no augmentation).  Changing it retrains.
RECIPE = dict(arch="lenet-20-50-500", p=0.5, epochs=6, batch_size=128, lr=1e-3,
              lr_decay=0.5, seed=0)


def train_lenet(x: torch.Tensor, y: torch.Tensor, device=None, progress: bool = True,
                name: str | None = None, retrain: bool = False, **recipe) -> LeNet:
    """Train a :class:`LeNet` on ``x, y`` with Adam (recipe keys as in :data:`RECIPE`), with
    :func:`advlab.train.fit`; with a ``name`` the weights are cached (see there)."""
    cfg = {**RECIPE, **recipe}
    return fit(lambda: LeNet(cfg["p"]), (x, y), on_outputs(F.cross_entropy),
               lambda params: torch.optim.Adam(params, lr=cfg["lr"]),
               lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=cfg["lr_decay"]),
               epochs=cfg["epochs"], batch_size=cfg["batch_size"], seed=cfg["seed"], device=device,
               amp=False,  # float32 everywhere: a small model, and its decision boundaries matter
               name=name, recipe=cfg, retrain=retrain, progress=progress)


def trained_lenet(device=None, progress: bool = True, retrain: bool = False, **recipe) -> LeNet:
    """The book's LeNet, trained on the 60,000 MNIST training digits the first time and then
    read from ``$ADVLAB_CACHE/models`` (loaded with ``weights_only=True``).

    Returned in eval mode on ``device`` with gradients enabled (attacks need them).
    """
    from ..data import load_mnist

    train = load_mnist("train")
    return train_lenet(train.x, train.y, device, progress, name="lenet", retrain=retrain, **recipe)
