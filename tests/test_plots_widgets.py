import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from advlab import plots  # noqa: E402
from advlab.cli import build_parser  # noqa: E402
from advlab.data import ImageSet  # noqa: E402
from advlab.experiments import ch01  # noqa: E402
from advlab.metrics import summarise_draws  # noqa: E402


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


@pytest.fixture
def tiny_set():
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.rand(3, 3, 16, 16, generator=g), torch.tensor([0, 1, 2]),
                    ("zero", "one", "two", "three"), "made", ["n0_zero.JPEG", "n1_one.JPEG", "n2_two.JPEG"])


def test_example_views_shapes_and_vote(tiny_set):
    v = ch01.example_views(Tiny().eval(), tiny_set, [0, 2], noise_sigmas=(0.0, 0.25))
    assert v["x"].shape == (2, 2, 3, 16, 16) and v["preds"].shape == (2, 2, 4)
    assert torch.equal(v["x"][:, 0], tiny_set.x[[0, 2]])          # sigma 0 leaves the input alone
    fig = plots.plot_examples(v, tiny_set.classes)
    assert len(fig.axes) == 4
    _book_style(fig)


def _book_style(fig) -> dict:
    """The figure follows the book's style (advlab.plots.style): page-wide, at most two chart
    panels a row, no text under 9 points, no legend over a chart."""
    m = plots.style.measure(fig)
    assert m["width_in"] == plots.style.PAGE_WIDTH_IN
    assert m["min_font_pt"] >= plots.style.MIN_FONT_PT, m
    assert m["panels_per_row"] <= 2 and m["legends_over_data"] == 0, m
    return m


def test_summary_figures_from_tables():
    per_draw = ch01.SOURCE_TABLE.assign(kernel="5x5", draw=0)
    table = summarise_draws(per_draw, ["kernel", "noise_sigma"], ch01.METRICS, 975)
    fig = plots.plot_noise_curves(table, ch01.SOURCE_TABLE)
    assert len(fig.axes) == 2
    assert "source study (5×5 only)" in _book_style(fig)["texts"]
    import pandas as pd
    attacks = pd.DataFrame([
        {"attack": "none", "attacker": "-", "eps_255": 0.0, "acc_ns": .9, "acc_maj": .9, "reject": 0.0},
        {"attack": "PGD", "attacker": "a", "eps_255": 2.0, "acc_ns": .1, "acc_maj": .3, "reject": .2},
        {"attack": "PGD", "attacker": "b", "eps_255": 2.0, "acc_ns": .2, "acc_maj": .0, "reject": .1}])
    fig = plots.plot_attack_curves(attacks)
    m = _book_style(fig)
    assert {"PGD (L∞)", "reject rate of the vote", "ε (× 1/255)"} <= set(m["texts"])


def test_style_measures_what_the_book_checks():
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3, figsize=(12, 3))
    ax[0].plot([0, 1], [0, 1], label="a line")
    ax[0].legend(loc="center")                 # over the data
    ax[1].set_title("small", fontsize=6)
    m = plots.style.measure(fig)
    assert m["panels_per_row"] == 3 and m["legends_over_data"] == 1 and m["min_font_pt"] == 6
    assert plots.style.human("resnet20") == "ResNet-20" and plots.style.human("L-inf") == "L∞"
    assert plots.style.human("something else") == "something else"
    img = plots.style.image(fig)
    record = img.metadata["advlab"]
    assert record["dpi"] == plots.style.DPI and record["display_width_px"] == plots.style.PAGE_WIDTH_PX


def test_explorer_builds_and_redraws(tiny_set):
    from advlab.widgets import smoothing_explorer
    box = smoothing_explorer(Tiny().eval(), tiny_set)
    choose, sigma = box.children[0].children
    assert choose.options == (("zero", 0), ("one", 1), ("two", 2))

    def shown() -> bytes:
        outputs = box.children[1].outputs
        assert len(outputs) == 1
        return outputs[0]["data"]["image/jpeg"]

    first = shown()
    sigma.value = 0.1          # moving the slider redraws with the new noise
    after_slider = shown()
    assert after_slider != first
    choose.value = 2           # so does picking another image
    assert shown() not in (first, after_slider)
    choose.value, sigma.value = 0, 0.25   # back where it started: the first picture again
    assert shown() == first


def test_cli_rejects_unknown_chapter_and_profile():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "ch09"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "ch01", "--profile", "medium"])
    args = build_parser().parse_args(["run", "ch01", "--profile", "full"])
    assert args.profile == "full" and args.model is None  # each chapter's own default model
    assert build_parser().parse_args(["run", "ch02", "--model", "lenet"]).model == "lenet"


def test_as_jpeg_is_small_and_valid(tiny_set):
    fig = plots.plot_examples(ch01.example_views(Tiny().eval(), tiny_set, [0], noise_sigmas=(0.25,)),
                              tiny_set.classes)
    img = plots.as_jpeg(fig)
    assert img.data[:2] == b"\xff\xd8" and len(img.data) < 200_000


def _ipywidgets7_folders() -> list:
    """Folders holding ipywidgets 7.x (scripts/setup.sh installs 7.5.0, the lowest release the
    package admits, and 7.7.1, Colab's, beside the venv); $ADVLAB_IPYWIDGETS_DIRS adds more."""
    import os
    import sys
    from pathlib import Path
    found = sorted(Path(sys.prefix).glob("ipywidgets-7*"))
    found += [Path(p) for p in os.environ.get("ADVLAB_IPYWIDGETS_DIRS", "").split(os.pathsep) if p]
    return found


@pytest.mark.skipif(__import__("os").environ.get("ADVLAB_IPYWIDGETS_UNDER_TEST") is not None,
                    reason="already running under the old ipywidgets")
def test_explorer_works_with_ipywidgets_7():
    """Colab ships ipywidgets 7.x: the explorer must build and redraw there too (the test above,
    run in a subprocess with ipywidgets 7 first on the path)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    folders = _ipywidgets7_folders()
    if not folders:
        if os.environ.get("CI"):
            pytest.fail("scripts/setup.sh installs ipywidgets 7 beside the venv; none found")
        pytest.skip("no ipywidgets 7 folder (scripts/setup.sh makes them)")
    root = Path(__file__).resolve().parents[1]
    for folder in folders:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(root)]),
               "ADVLAB_IPYWIDGETS_UNDER_TEST": folder.name}
        code = ("import ipywidgets, sys, pytest; assert ipywidgets.__version__.startswith('7'), "
                "ipywidgets.__version__; sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', "
                f"'{__file__}', '-k', 'explorer_builds']))")   # every explorer's test
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, cwd=root, timeout=300)
        assert proc.returncode == 0, f"{folder.name}: " + proc.stdout[-3000:] + proc.stderr[-3000:]
        assert " passed" in proc.stdout and "failed" not in proc.stdout


def test_pixel_explorer_builds_and_redraws(tiny_set):
    from advlab.widgets import pixel_explorer
    models = {"tiny": Tiny().eval(), "other": nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))}
    maps = {name: torch.rand(16, 16, generator=torch.Generator().manual_seed(k))
            for k, name in enumerate(models)}
    box = pixel_explorer(models, tiny_set, maps, eps=0.1, steps=2)
    (choose, model), (kind, p) = box.children[0].children, box.children[1].children
    assert choose.options[1] == ("1: one", 1) and kind.options == ("top", "bottom", "random")

    def shown() -> bytes:
        outputs = box.children[2].outputs
        assert len(outputs) == 1
        return outputs[0]["data"]["image/jpeg"]

    first = shown()
    p.value = 0.5
    assert shown() != first
    kind.value = "bottom"
    model.value = "other"
    choose.value = 2
    p.value, kind.value, model.value, choose.value = 0.1, "top", "tiny", 0
    assert shown() == first            # the same settings draw the same picture
