"""Chapter 0: settings, the readers' tables and the figures, on synthetic results (the attacks
themselves are tested in tests/test_attacks.py; the smoke notebook runs the chapter)."""
import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from advlab import plots  # noqa: E402
from advlab.experiments import ch00  # noqa: E402
from advlab.report import make_table  # noqa: E402


def synthetic_results() -> pd.DataFrame:
    rows = [dict(norm="none", attack="none", knowledge="–", eps=0.0, accuracy=0.99, linf=0.0,
                 l2=0.0, device="–")]
    for norm, names in ch00.ATTACKS.items():
        for name in names:
            for k, knowledge in enumerate(("white box", "black box (transfer)")):
                for e in getattr(ch00.CHAPTER.settings("full"), f"{norm}_eps"):
                    rows.append(dict(norm=norm, attack=name, knowledge=knowledge, eps=e,
                                     accuracy=max(0.0, 0.9 - e * (2 - k)), linf=e, l2=e,
                                     device="cpu"))
    return pd.DataFrame(rows)


def test_settings():
    from advlab.chapter import SettingsError
    settings = ch00.CHAPTER.settings
    assert settings("smoke").n_images < settings("full").n_images
    with pytest.raises(SettingsError, match="unknown setting"):
        settings("smoke", n_imgs=3)
    with pytest.raises(SettingsError, match="n_images must be in"):
        settings("smoke", n_images=0)
    with pytest.raises(SettingsError, match="positive budgets"):
        settings("smoke", linf_eps=())


def test_attack_table_for_readers():
    t = make_table(ch00.attack_table(synthetic_results(), "linf"), "tab-ch00-linf", "c")
    assert list(t.cells.columns) == ["ε (L∞)", "FGSM (one step), white box",
                                     "FGSM (one step), black box (transfer)", "PGD, white box",
                                     "PGD, black box (transfer)"]
    assert t.cells.iloc[0].tolist() == ["0.05", "80.0%", "85.0%", "80.0%", "85.0%"]
    assert len(ch00.attack_table(synthetic_results(), "l2")) == len(ch00.CHAPTER.settings("full").l2_eps)


def test_steepest_ascent_and_figures():
    ex = ch00.steepest_ascent_example()
    assert torch.equal(ex["linf"], ex["gradient"].sign())
    assert torch.isclose(ex["l2"].norm(), torch.tensor(1.0))
    assert len(plots.plot_budget_curves(synthetic_results(), ch00.ATTACK_TITLES).axes) == 2
    assert len(plots.plot_steepest_ascent(ex).axes) == 1


def test_perturbation_norms():
    x = torch.zeros(3, 1, 2, 2)
    adv = x.clone()
    adv[0, 0, 0, 0], adv[1, 0, :, :], adv[2, 0, 1, 1] = 0.3, 0.1, 0.2
    linf, l2 = ch00.perturbation_norms(x, adv)   # medians of (0.3, 0.1, 0.2) and (0.3, 0.2, 0.2)
    assert linf == pytest.approx(0.2) and l2 == pytest.approx(0.2)
