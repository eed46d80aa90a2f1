"""Checkers of Chapter 0's exercises (steepest ascent under a norm, projection onto a ball,
reading an evaluation)."""
from __future__ import annotations

from collections.abc import Callable

import torch

from . import given, multiple_choice, ok, returned


def _gradients(seed: int = 0) -> torch.Tensor:
    g = torch.randn(6, 1, 5, 5, generator=torch.Generator().manual_seed(seed))
    g[0] *= 100   # one image with a much larger gradient: a per-batch norm gets it wrong
    return g


def ch00_ex1(my_step: Callable) -> None:
    """``my_step(g, eps, norm)``: the step of steepest ascent of a linearised loss, per image,
    for ``norm`` "linf" (eps * sign(g)) and "l2" (eps * g / |g|_2 of each image)."""
    given(my_step, "def my_step(g, eps, norm) and answer = my_step")
    assert callable(my_step), "answer must be the function itself: answer = my_step"
    g, eps = _gradients(), 0.3
    want = {"linf": eps * g.sign(), "l2": eps * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)}
    for norm in ("linf", "l2"):
        got = returned(my_step(g, eps, norm), "my_step").float()
        assert got.shape == g.shape, f"Return a step of the gradient's shape {tuple(g.shape)}, got {tuple(got.shape)}."
        if norm == "l2":
            whole = eps * g / g.norm()
            assert not torch.allclose(got, whole, atol=1e-6), (
                "Close: that divides by the norm of the whole batch; each image has its own "
                "budget, so divide each image's gradient by its own L2 norm.")
        assert torch.allclose(got, want[norm], atol=1e-6), (
            f"Not yet for norm={norm!r}: maximise g·δ over the ball |δ| <= eps of that norm "
            + ("(every pixel may move by eps: which sign?)." if norm == "linf"
               else "(the best direction is g itself: how long may it be?)."))
    ok("Exercise 1", "my_step is the step of steepest ascent under both norms, image by image.")


def ch00_ex2(my_project: Callable) -> None:
    """``my_project(delta, eps)``: each image's perturbation projected onto the L2 ball of
    radius eps (unchanged inside, scaled back onto the sphere outside)."""
    given(my_project, "def my_project(delta, eps) and answer = my_project")
    assert callable(my_project), "answer must be the function itself: answer = my_project"
    delta, eps = _gradients(1) * 0.2, 1.0
    norms = delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    want = delta * torch.clamp(eps / norms, max=1.0)
    got = returned(my_project(delta.clone(), eps), "my_project").float()
    assert got.shape == delta.shape, f"Return a perturbation of shape {tuple(delta.shape)}."
    inside = (norms.flatten() <= eps)
    assert torch.allclose(got[inside], delta[inside], atol=1e-6), \
        "A perturbation already inside the ball must stay as it is."
    assert torch.allclose(got, want, atol=1e-6), (
        "Not yet: outside the ball, scale each image's perturbation by eps / its own L2 norm "
        "(the nearest point of the sphere lies on the same ray).")
    ok("Exercise 2", "my_project keeps perturbations inside the ball and scales the others onto it.")


EX3_OPTIONS = {
    "a": "the defence is robust at this budget",
    "b": "the white-box attack is failing; 85% does not measure robustness",
    "c": "the surrogate is the better model",
    "d": "transferred attacks are usually the stronger ones",
}


def ch00_ex3(answer) -> None:
    """White-box PGD leaves 85%, transferred PGD 60%: which reading? (multiple choice)"""
    multiple_choice("Exercise 3", answer, EX3_OPTIONS, "b",
                    "An attacker who knows more and does worse is a sign that the attack, not the "
                    "model, failed: section 4's sanity checks exist for this case.",
                    hints={"a": "the white-box attacker knows more than the transfer attacker; "
                                "can knowing more make a correct attack weaker?",
                           "c": "a better surrogate would explain a strong transfer attack, not a "
                                "weak white-box one on the model itself.",
                           "d": "look again at the LeNet's tables: which knowledge gave the "
                                "stronger attack at every budget?"})


CHECKERS: dict[str, Callable] = {"ch00-ex1": ch00_ex1, "ch00-ex2": ch00_ex2, "ch00-ex3": ch00_ex3}
