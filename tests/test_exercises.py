"""The book's exercises: every solution cell has a checker and a check cell; each checker accepts
the notebook's own solution and raises on wrong or missing answers."""
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from advlab import exercises

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def solution_cells() -> dict[str, tuple[str, str]]:
    """exercise id -> (source of its solution cell, source of the check cell after it)."""
    found = {}
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        for i, cell in enumerate(cells):
            ex = cell.get("metadata", {}).get("advlab", {}).get("exercise")
            if ex:
                assert "solution" in cell["metadata"].get("tags", []), f"{path.name}: {ex} not tagged solution"
                assert ex not in found, f"{ex} has two solution cells"
                found[ex] = ("".join(cell["source"]), "".join(cells[i + 1]["source"]))
    return found


SOLUTIONS = solution_cells()


def test_every_exercise_has_a_checker_a_solution_and_a_check_cell():
    table = exercises.checkers()
    assert set(SOLUTIONS) == set(table), "solution cells and CHECKERS must name the same exercises"
    for ex, (_, check) in SOLUTIONS.items():
        assert f'exercises.check("{ex}", answer' in check, f"{ex}: the cell after the solution must check it"


def run_solution(ex: str, **context) -> None:
    """Execute the notebook's solution cell, then its check cell (which must not raise)."""
    solution, check = SOLUTIONS[ex]
    ns = {"exercises": exercises, "torch": torch, "math": math, **context}
    exec(compile(solution, f"<{ex} solution>", "exec"), ns)
    exec(compile(check, f"<{ex} check>", "exec"), ns)


@pytest.mark.parametrize("ex", ["ch00-ex1", "ch00-ex2", "ch00-ex3", "ch01-ex1", "ch01-ex2", "ch01-ex3",
                                "ch02-ex1", "ch02-ex2", "ch03-ex1", "ch03-ex2", "ch03-ex4",
                                "ch03-ex5"])
def test_checker_accepts_the_solution(ex, capsys):
    run_solution(ex)
    out = capsys.readouterr().out
    assert "correct" in out
    assert ex not in out and f"Exercise {int(ex[-1])}: correct." in out   # no internal id


@pytest.mark.parametrize("ex", sorted(SOLUTIONS))
def test_stubs_are_reported_as_missing(ex):
    with pytest.raises(AssertionError):
        exercises.check(ex, ..., *([None] * 3 if ex == "ch02-ex3" else []))


def test_ch00_wrong_answers_raise():
    with pytest.raises(AssertionError, match="whole batch"):        # one norm for the batch
        exercises.check("ch00-ex1", lambda g, eps, norm: eps * (g.sign() if norm == "linf" else g / g.norm()))
    with pytest.raises(AssertionError, match="linf"):               # the gradient, not its sign
        exercises.check("ch00-ex1", lambda g, eps, norm: eps * g)
    with pytest.raises(AssertionError, match="inside the ball"):    # always onto the sphere
        exercises.check("ch00-ex2", lambda d, eps: eps * d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    with pytest.raises(AssertionError, match="Not yet"):            # clipping pixels is not projecting
        exercises.check("ch00-ex2", lambda d, eps: d.clamp(-eps, eps))
    for wrong in ("a", "c", "d", "(A)"):                            # multiple choice: one right letter
        with pytest.raises(AssertionError, match="Not yet"):
            exercises.check("ch00-ex3", wrong)
    with pytest.raises(AssertionError, match="one letter"):
        exercises.check("ch00-ex3", "e")


def test_confirmations_name_the_exercise_not_its_id(capsys):
    exercises.ok("ch04-ex2", "fine.")
    assert capsys.readouterr().out.strip() == "\u2713 Exercise 2: correct. fine."


def test_ch01_wrong_answers_raise():
    with pytest.raises(AssertionError, match="window"):
        exercises.check("ch01-ex1", (9, math.sqrt(3)))
    # sigma of two passes, or a value only near sqrt(3): rejected (was: anything in 1.65..1.78)
    for sigma in (math.sqrt(2), 1.7, 1.74):
        with pytest.raises(AssertionError):
            exercises.check("ch01-ex1", (13, sigma))
    with pytest.raises(AssertionError, match="labels"):   # -1 never returned
        exercises.check("ch01-ex2", lambda p0, p1, p2: torch.where(p1 == p2, p1, p0))
    with pytest.raises(AssertionError):                   # the 2-of-3 vote is not unanimous
        from advlab.defences.blur_vote import majority_vote
        exercises.check("ch01-ex3", majority_vote)


def test_ch02_wrong_answers_raise():
    with pytest.raises(AssertionError, match="sample standard deviation"):
        exercises.check("ch02-ex1", lambda p: p.std(0).mean(-1))
    with pytest.raises(AssertionError, match="C = 5"):    # the pseudo-code's "more than C"
        exercises.check("ch02-ex2", lambda u, a, lo, hi, c: (u > hi) | ((u >= lo) & (u <= hi) & (a <= c)))


def test_ch02_crop_exercise_with_a_small_model(capsys):
    from advlab.defences import mc_dropout as md
    from advlab.models.mnist import LeNet
    torch.manual_seed(0)
    model = LeNet().eval()
    x = torch.rand(40, 1, 28, 28)
    context = {"model": model, "md": md, "s": SimpleNamespace(mc_passes=8, batch_size=40),
               "halves": SimpleNamespace(val=SimpleNamespace(x=x))}
    run_solution("ch02-ex3", **context)
    assert "correct" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="Give a share"):
        exercises.check("ch02-ex3", {24: 0.5}, model, x, 8)
    with pytest.raises(AssertionError, match="Not yet"):
        exercises.check("ch02-ex3", dict.fromkeys((20, 24, 26, 28), 1.5), model, x, 8)
    # the MC-dropout class without the seed the task names: another answer, rejected
    torch.manual_seed(123)
    pred = md.mc_dropout(model, x, n=8, batch_size=40).pred
    other = {k: float((md.crop_agreement(model, x, pred, k) == 5).float().mean()) for k in (20, 24, 26, 28)}
    from advlab.exercises.ch02 import crop_shares
    _, right = crop_shares(model, x, 8, 40)
    if other != right:
        with pytest.raises(AssertionError):
            exercises.check("ch02-ex3", other, model, x, 8)


def test_ch03_wrong_answers_raise():
    with pytest.raises(AssertionError, match="rounds down"):       # rounding to nearest
        exercises.check("ch03-ex1",
                        lambda x, k: (torch.round(torch.round(x * 255) / 2 ** k) * 2 ** k / 255).clamp(max=1))
    with pytest.raises(AssertionError, match=r"\[0, 1\]"):        # 8-bit values returned
        exercises.check("ch03-ex1", lambda x, k: (v := torch.round(x * 255)) - v % 2 ** k)
    with pytest.raises(AssertionError, match="divided by all images"):
        exercises.check("ch03-ex2", lambda y, u, d: float(((u != y) & (d == y)).float().mean()))
    from scipy.stats import binomtest
    with pytest.raises(AssertionError, match="disagree"):          # unpaired counts
        exercises.check("ch03-ex4", lambda a, b: binomtest(int(a.sum()), int(a.sum() + b.sum()), 0.5).pvalue)
    with pytest.raises(AssertionError, match="one-sided"):
        exercises.check("ch03-ex4", lambda a, b: binomtest(int((a & ~b).sum()), int((a ^ b).sum()), 0.5,
                                                           alternative="greater").pvalue)
    with pytest.raises(AssertionError, match="return 1"):          # no discordant image
        exercises.check("ch03-ex4", lambda a, b: binomtest(int((a & ~b).sum()), max(int((a ^ b).sum()), 1),
                                                           0.5).pvalue if (a ^ b).any() else 0.0)
    for wrong in ("a", "b", "d"):
        with pytest.raises(AssertionError, match="Not yet"):
            exercises.check("ch03-ex5", wrong)


def test_ch03_window_exercise_reads_the_curves(capsys):
    import pandas as pd

    from advlab.experiments.ch03 import DEEPFOOL_SCALED, FGSM
    rows = [(DEEPFOOL_SCALED, w, r) for w, r in (("1x3", 0.2), ("3x1", 0.25), ("3x3", 0.3), ("5x5", 0.4))]
    rows += [(FGSM, "3x3", 0.9)]    # another attack: not counted
    curves = pd.DataFrame(rows * 2, columns=["attack", "defence", "rate"]).assign(family="median")
    run_solution("ch03-ex3", results=SimpleNamespace(curves=curves),
                 ch03=__import__("advlab.experiments.ch03", fromlist=["ch03"]))
    out = capsys.readouterr().out
    assert "Exercise 3: correct." in out and "5x5" not in out and "40" not in out   # no answer shown
    for wrong in ("3x3", "1x3"):
        with pytest.raises(AssertionError, match="another window"):
            exercises.check("ch03-ex3", wrong, curves)
    with pytest.raises(AssertionError, match="not one of"):
        exercises.check("ch03-ex3", "7x7", curves)
    with pytest.raises(AssertionError, match="Pass the chapter's results"):
        exercises.check("ch03-ex3", "5x5")
