"""One shape for every defence of the book, after Cohen et al. 2019's ``Smooth``:

* ``forward(x)``: what an attacker differentiates: logits or log-probabilities, exact where the
  defence is differentiable, through :class:`~advlab.attacks.BPDA` where it is not.  A defence
  whose attack objective is more than a loss on ``forward`` (a detector an attacker must also
  slip past) gives it as ``attack_loss(x, labels)``; attacks use it through
  :class:`~advlab.attacks.PGD`'s ``loss``.
* ``predict(x, batch_size=128, seed=None)``: the defence's decision for evaluation, CPU long
  labels, with :data:`ABSTAIN` where it refuses to answer (a detector's flag, a vote without a
  majority, a smoothed classifier whose top two classes do not differ significantly).
  ``batch_size``: how many of the images are processed at once (a defence that draws several
  samples per image holds ``batch_size`` times that many inputs).  ``seed``: seeds the call's
  random draws (the global RNG is restored afterwards and the defence is not changed);
  ``None`` draws from the global RNG.  Deterministic defences accept and ignore it.
  Decisions run in float32 (attacked images sit near a decision boundary).
* ``model``: the classifier the defence deploys, without the defence's transform: an
  evaluation compares ``predict`` with :func:`advlab.inference.predict` on ``model``.

:class:`Preprocessed` covers the common case of an input transformation in front of a
classifier (bit depth, median, TV minimisation, JPEG, random shift, pixel deflection...);
:class:`Undefended` is the bare classifier in the same shape.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..attacks.adaptive import BPDA
from ..attacks.base import model_device
from ..inputs import check_images
from ..models import predict as model_predict

ABSTAIN = -1

Transform = Callable[[torch.Tensor], torch.Tensor]


class Defence(nn.Module):
    """Base class: subclasses implement ``forward`` and may override ``predict``.

    ``randomized``: True when ``forward``/``predict`` draw random numbers (attack it with
    :class:`~advlab.attacks.EOT`; seed ``predict`` for repeatable results).
    """

    randomized: bool = False

    def __init__(self):
        super().__init__()
        self.training = False  # a defence is evaluated, not trained (its parts keep their modes)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 128, seed: int | None = None) -> torch.Tensor:
        """Labels (CPU long tensor), :data:`ABSTAIN` where the defence refuses.

        Default: the arg-max of ``forward`` in batches.  ``seed``: seed the global RNG for
        the call (restored afterwards).
        """
        return self.batched_labels(x, lambda b: self(b).argmax(1), batch_size, seed)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`advlab.inputs.InputError` unless ``x`` is a float batch in [0, 1] of the
        shape the defended classifier declares (every ``predict`` calls it first)."""
        check_images(x, self, what="x")

    def batched_labels(self, x: torch.Tensor, labels: Callable[[torch.Tensor], torch.Tensor],
                       batch_size: int, seed: int | None = None) -> torch.Tensor:
        """``labels(batch)`` over ``x`` in batches on the defence's device, concatenated on the
        CPU; ``seed`` seeds the global RNG for the call (restored afterwards).  ``x`` is
        checked first (:meth:`check_input`)."""
        self.check_input(x)
        device = model_device(self)
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            out = [labels(x[i:i + batch_size].to(device)).cpu()
                   for i in range(0, len(x), batch_size)]
        return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


class Undefended(Defence):
    """The bare classifier in the defence shape: ``forward`` is the model, ``predict`` its
    arg-max through the fast inference path (float32)."""

    def __init__(self, model: nn.Module, name: str = "undefended"):
        super().__init__()
        self.model, self.name = model, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 128, seed: int | None = None) -> torch.Tensor:
        return model_predict(self.model, x, batch_size, model_device(self.model), amp=False)


class Preprocessed(Defence):
    """``model(transform(x))``: an input transformation in front of a classifier.

    ``predict`` applies the exact transform (batched, on the model's device) and classifies
    the result through the fast inference path in float32.  ``forward`` is what attackers see: the exact
    transform when ``differentiable``, else BPDA with the identity's gradient or that of
    ``approx`` (Athalye et al. 2018).
    """

    def __init__(self, model: nn.Module, transform: Transform, *, approx: Transform | None = None,
                 differentiable: bool = False, randomized: bool = False, name: str | None = None):
        super().__init__()
        self.model = model
        self.transform = transform
        self.differentiable = differentiable
        self.randomized = randomized
        self.name = name or getattr(transform, "__name__", type(transform).__name__)
        self.bpda = None if differentiable else BPDA(transform, approx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.transform(x) if self.differentiable else self.bpda(x))

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 128, seed: int | None = None) -> torch.Tensor:
        device = model_device(self.model)
        return self.batched_labels(
            x, lambda b: model_predict(self.model, self.transform(b), batch_size, device, amp=False),
            batch_size, seed)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, differentiable={self.differentiable}, randomized={self.randomized}"


def predict_all(defences: dict[str, Defence], x: torch.Tensor, batch_size: int = 128,
                seed: int | None = None, threads: int | None = None) -> dict[str, torch.Tensor]:
    """Every defence's :meth:`Defence.predict` on the same images, by name.  The randomised
    defences run in turn (their draws come from the global RNG, seeded per call); on the CPU the
    others then run ``threads`` at a time (default: one per core), each on one intra-op thread
    (and its ONNX Runtime session on one thread), which a CPU shared with other jobs stalls far
    less than two-thread calls.  The labels are those of one call at a time."""
    out: dict[str, torch.Tensor] = {}
    rest = {}
    for name, d in defences.items():
        if d.randomized or model_device(d).type != "cpu":
            out[name] = d.predict(x, batch_size=batch_size, seed=seed)
        else:
            rest[name] = d
    threads = threads or torch.get_num_threads()
    if threads > 1 and len(rest) > 1:
        from concurrent.futures import ThreadPoolExecutor

        def one(item):
            torch.set_num_threads(1)
            return item[0], item[1].predict(x, batch_size=batch_size, seed=seed)
        with ThreadPoolExecutor(threads) as pool:
            out.update(pool.map(one, rest.items()))
    else:
        out.update({name: d.predict(x, batch_size=batch_size, seed=seed) for name, d in rest.items()})
    return {name: out[name] for name in defences}
