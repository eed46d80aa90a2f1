import pytest
import torch
import torch.nn.functional as F

from advlab import exercises


def mean_gradient_map(model, x, y):
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    g, = torch.autograd.grad(loss, x)
    return g.abs().mean((0, 1))


def test_ex1_accepts_the_solution_and_rejects_wrong_answers():
    exercises.check("ch05-ex1", mean_gradient_map)
    with pytest.raises(AssertionError, match="3x too large"):
        exercises.check("ch05-ex1", lambda m, x, y: 3 * mean_gradient_map(m, x, y))
    with pytest.raises(AssertionError, match="each image's own loss"):
        exercises.check("ch05-ex1", lambda m, x, y: mean_gradient_map(m, x, y) / len(x))
    with pytest.raises(AssertionError, match="No answer"):
        exercises.check("ch05-ex1", ...)


def test_ex2_accepts_the_solution_and_rejects_wrong_answers():
    exercises.check("ch05-ex2", (1.0, 1 / 7))
    with pytest.raises(AssertionError, match="union"):
        exercises.check("ch05-ex2", (1.0, 1 / 16))
    with pytest.raises(AssertionError, match="lambda = 1"):
        exercises.check("ch05-ex2", (0.25, 1 / 7))
