"""One call shape for every attack of the book, in the spirit of foolbox's
``attack(model, inputs, criterion, epsilons)``.

An :class:`Attack` turns one batch into adversarial examples on the model's device:
``attack(model, x, y, epsilon, target)``.  :func:`run` is the one batch loop around it: it
checks the arguments, seeds the RNG (and restores it afterwards), runs every batch at every
epsilon, shows a progress bar and returns CPU tensors keyed by epsilon.  Attacks that look for
a minimal perturbation (DeepFool, C&W, JSMA) have no epsilon: call them with
``epsilons=None`` and read the result under the key ``None``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from ..inputs import check_epsilons, check_images
from ..models.wrappers import conv_layout

Tick = Callable[[float], None]


class Attack:
    """Base class.  Subclasses set the class attributes and implement :meth:`__call__`.

    ``norm``: the distance ``epsilon`` bounds (``"linf"``, ``"l2"``) or ``None``.
    ``uses_epsilon``: False for attacks that search for a minimal perturbation.
    ``needs_target``: True for attacks that are targeted by construction (JSMA).
    """

    name: str = "attack"
    norm: str | None = None
    uses_epsilon: bool = True
    needs_target: bool = False

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 epsilon: float | None = None, target: torch.Tensor | None = None,
                 tick: Tick | None = None) -> torch.Tensor:
        """Adversarial versions of the batch ``x`` (on the model's device, in [0, 1]).

        ``target``: one target class per image for a targeted attack, else ``None``
        (untargeted: move away from ``y``).  ``tick(n)``: report progress of ``n`` images.
        """
        raise NotImplementedError

    def at_epsilons(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                    epsilons: list[float | None], target: torch.Tensor | None = None,
                    tick: Tick | None = None) -> list[torch.Tensor]:
        """The batch at every epsilon; attacks that can share work across epsilons override it."""
        return [self(model, x, y, e, target, tick) for e in epsilons]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _epsilon_list(attack: Attack, epsilons) -> list[float | None]:
    if epsilons is None:
        if attack.uses_epsilon:
            raise ValueError(f"{attack.name} needs epsilons (the largest perturbation, "
                             f"{attack.norm} norm)")
        return [None]
    if not attack.uses_epsilon:
        raise ValueError(f"{attack.name} searches for a minimal perturbation and takes no epsilon; "
                         "call it with epsilons=None")
    eps = [float(e) for e in (epsilons if isinstance(epsilons, Iterable) else [epsilons])]
    if not eps:
        raise ValueError(f"epsilons must be a non-empty list of values >= 0, got {epsilons!r}")
    check_epsilons(eps)
    return eps


def run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack | str,
        epsilons: float | Sequence[float] | None = None, *, targets: torch.Tensor | None = None,
        batch_size: int = 64, seed: int = 0, progress: bool = True,
        **params) -> dict[float | None, torch.Tensor]:
    """Attack every image of ``x`` (labels ``y``) at every epsilon; return CPU tensors.

    ``attack``: an :class:`Attack` or the name of one in :data:`advlab.attacks.ATTACKS`
    (``params`` then go to its constructor, e.g. ``steps=10``).  ``targets``: one target class
    per image for a targeted attack.  The global RNG is seeded with ``seed`` for the run and
    restored afterwards, so a call is repeatable for the same ``seed`` and ``batch_size``.
    """
    from . import make  # the registry lives in the package
    atk = make(attack, **params) if isinstance(attack, str) else attack
    if params and not isinstance(attack, str):
        raise TypeError(f"parameters {sorted(params)} only go with an attack name")
    check_images(x, model, what="x")                 # floats in [0, 1], the model's shape
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if targets is not None and len(targets) != len(x):
        raise ValueError(f"need one target per image, got {len(targets)} for {len(x)}")
    if atk.needs_target and targets is None:
        raise ValueError(f"{atk.name} is a targeted attack: pass targets")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    eps_list = _epsilon_list(atk, epsilons)
    device = model_device(model)
    out: dict[float | None, list[torch.Tensor]] = {e: [] for e in eps_list}
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), \
            tqdm(total=len(x) * len(eps_list), desc=atk.name, unit="img", disable=not progress,
                 leave=False) as bar:
        torch.manual_seed(seed)
        tick = bar.update
        for i in range(0, len(x), batch_size):
            xb, yb = conv_layout(x[i:i + batch_size].to(device)), y[i:i + batch_size].to(device)
            tb = None if targets is None else targets[i:i + batch_size].to(device)
            for e, adv in zip(eps_list, atk.at_epsilons(model, xb, yb, eps_list, tb, tick)):
                out[e].append(adv.detach().cpu().contiguous())
    return {e: torch.cat(v) if v else x[:0].clone() for e, v in out.items()}
