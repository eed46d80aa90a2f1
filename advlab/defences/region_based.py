"""Region-based classification of Cao & Gong 2017 ("Mitigating evasion attacks to deep neural
networks via region-based classification", ACSAC): the label most of ``samples`` points drawn
uniformly from the L-inf hypercube of radius ``radius`` around the input receive (their CIFAR-10
setting: r = 0.02 on [0, 1] images, 10,000 samples; the vote needs at least about 1,000 to be
stable).  Samples are clipped to [0, 1]."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attacks.base import model_device
from ..inference import predict as fast_predict
from .base import Defence


def hypercube_samples(x: torch.Tensor, radius: float, k: int) -> torch.Tensor:
    """``k`` uniform draws from the hypercube around every image, (k * N, ...), draw-major,
    clipped to [0, 1].  Global torch RNG."""
    rep = x.repeat(k, *[1] * (x.dim() - 1))
    return (rep + (torch.rand_like(rep) * 2 - 1) * radius).clamp_(0, 1)


class RegionBased(Defence):
    """Cao & Gong's region-based classifier in the defence shape.

    ``predict``: the majority label over ``samples`` draws (ties to the smaller label), run in
    chunks of ``chunk`` draws per image through the fast inference path (``chunk`` times
    ``batch_size`` noisy images are held at once: keep that product small for large images).  ``forward`` (what a
    white-box attacker differentiates): the mean log-softmax over ``attack_samples`` draws.
    """

    randomized = True

    def __init__(self, model: nn.Module, radius: float = 0.02, samples: int = 1000,
                 chunk: int = 50, attack_samples: int = 16):
        super().__init__()
        if radius < 0 or samples < 1 or chunk < 1 or attack_samples < 1:
            raise ValueError(f"need radius >= 0 and positive counts, got radius={radius}, "
                             f"samples={samples}, chunk={chunk}, attack_samples={attack_samples}")
        self.model, self.radius, self.samples = model, radius, samples
        self.chunk, self.attack_samples = chunk, attack_samples
        self.name = f"region-based (r={radius}, {samples} samples)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.attack_samples
        z = self.model(hypercube_samples(x, self.radius, k))
        return F.log_softmax(z.float(), 1).view(k, len(x), -1).mean(0)

    def votes(self, x: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
        """Votes per class (N, classes seen) over ``samples`` draws (global RNG), CPU."""
        x = x.to(model_device(self.model))
        labels = torch.cat([
            fast_predict(self.model, hypercube_samples(x, self.radius, k), batch_size).view(k, -1)
            for k in (min(self.chunk, self.samples - s) for s in range(0, self.samples, self.chunk))])
        counts = torch.zeros(len(x), int(labels.max()) + 1, dtype=torch.long)
        return counts.scatter_add_(1, labels.T, torch.ones_like(labels.T))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 128, seed: int | None = None) -> torch.Tensor:
        return self.batched_labels(x, lambda b: self.votes(b, batch_size).argmax(1), batch_size, seed)

    def extra_repr(self) -> str:
        return f"radius={self.radius}, samples={self.samples}"
