"""The MNIST classifier of Chapters 0 and 2: a LeNet-style CNN with dropout (LeCun et al. 1998;
dropout of Srivastava et al. 2014); its training is :mod:`advlab.training.lenet`.

Dropout sits only in the fully connected head, so Monte-Carlo dropout (Gal & Ghahramani 2016)
runs the convolutional features once and the head ``n`` times on a repeated batch: one batched
forward instead of ``n``, exact because the features are deterministic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

class LeNet(nn.Module):
    """conv5x5(20) - pool - conv5x5(50) - pool - dropout - fc500 - dropout - fc10.

    Takes (B, 1, 28, 28) images in [0, 1] (normalisation inside) and returns logits.
    Dropout is active in ``train()`` mode only; :meth:`mc_logits` samples it explicitly.
    """

    #: The input it takes (checked by :func:`advlab.inputs.check_images`).
    input_shape = (1, 28, 28)

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"expected a batch (B, 1, 28, 28), got {tuple(x.shape)}")
        x = (x - MNIST_MEAN) / MNIST_STD
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return x.flatten(1)

    def head(self, f: torch.Tensor, stochastic: bool | None = None) -> torch.Tensor:
        active = self.training if stochastic is None else stochastic
        f = F.dropout(f, self.p, training=active)
        f = F.dropout(F.relu(self.fc1(f)), self.p, training=active)
        return self.fc2(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def mc_logits(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Logits of ``n`` dropout samples, shape (n, B, 10), from one batched head pass."""
        if n < 1:
            raise ValueError("n must be >= 1")
        f = self.features(x)
        return self.head(f.repeat(n, 1), stochastic=True).view(n, len(x), -1)
