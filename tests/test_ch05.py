import pandas as pd
import pytest
import torch

from advlab.data import ImageSet
from advlab.experiments import ch05


def test_settings_and_profiles():
    assert ch05.settings("smoke")["train_prm"] is False          # smoke uses the committed PRM
    assert ch05.settings("full")["train_prm"] is False           # full too (advlab train-prm)
    assert ch05.settings("paper")["train_prm"] is True
    assert ch05.settings("paper")["graybox"]["one_pixel"] == {"popsize": 400, "generations": 100}
    assert ch05.settings("paper")["pgd_steps"] == 1000
    assert ch05.settings("smoke", n_table=30)["n_table"] == 30
    with pytest.raises(ValueError, match="unknown ch05 settings"):
        ch05.settings("smoke", n_tabel=30)
    from advlab.experiments import ch01
    with pytest.raises(ValueError, match="ch01 has no profile 'paper'"):
        ch01.settings("paper")


def test_cifar_subset_takes_the_first_images_of_every_class():
    y = torch.tensor([2, 0, 1, 0, 2, 1, 1, 0, 2])
    s = ImageSet(torch.arange(9.0).view(9, 1, 1, 1), y, ("a", "b", "c"), "t")
    sub = ch05.cifar_subset(s, 6)
    assert sub.x.flatten().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert sorted(sub.y.tolist()) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="multiple"):
        ch05.cifar_subset(s, 4)


def test_map_agreement_separates_model_pattern_from_image():
    g = torch.Generator().manual_seed(0)
    pattern_a, pattern_b = torch.rand(8, 8, generator=g), torch.rand(8, 8, generator=g)
    noise = torch.rand(6, 8, 8, generator=g)
    maps = {"a": pattern_a + 0.1 * noise, "b": pattern_b + 0.1 * noise}
    t = ch05.map_agreement(maps).set_index(["model", "other"])
    within, same_image = t.loc[("a", "a"), "within_model"], t.loc[("a", "b"), "same_image"]
    assert within > 0.9 and t.loc[("a", "a"), "split_half"] > 0.95
    assert same_image < within                            # the model's pattern dominates
    assert t.loc[("a", "b"), "mean_maps"] == pytest.approx(
        float(torch.corrcoef(torch.stack([maps["a"].mean(0).flatten(),
                                          maps["b"].mean(0).flatten()]))[0, 1]), abs=1e-5)


def test_defence_rate_is_the_authors_formula():
    t = pd.DataFrame([
        {"attack": "clean", "defence": "none", "acc": 0.9, "acc_plain": 0.9},
        {"attack": "clean", "defence": "d", "acc": 0.85, "acc_plain": 0.8},
        {"attack": "pgd", "defence": "none", "acc": 0.1, "acc_plain": 0.1},
        {"attack": "pgd", "defence": "d", "acc": 0.6, "acc_plain": 0.2},
        {"attack": "op", "defence": "d", "acc": 0.7, "acc_plain": 0.9},   # attack did not hurt
    ])
    rate = ch05.add_defence_rate(t).defence_rate
    assert rate.iloc[3] == pytest.approx(1 - (0.8 - 0.6) / (0.8 - 0.2))
    assert rate.iloc[[0, 1, 2, 4]].isna().all()


def test_graybox_pivot_layout():
    rows = [{"attacker": w, "attack": a, "defence": d, "acc": 0.5, "acc_lo": 0.4, "acc_hi": 0.6}
            for w, a in (("-", "clean"), ("gray-box", "pgd")) for d in reversed(ch05.DEFENCES)]
    p = ch05.graybox_pivot(pd.DataFrame(rows))
    assert list(p.columns) == list(ch05.DEFENCES)
    assert p.loc[("gray-box", "pgd"), "none"] == "50.0% [40%, 60%]"


def test_cli_smoke_run_writes_tables_and_figures(mirror, models_mirror, tmp_path):
    """The smoke profile end to end with the committed PRM (in the session's cache, which
    the notebook's smoke run then reuses)."""
    from advlab.cli import main
    assert main(["run", "ch05", "--profile", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    out = tmp_path / "ch05"
    lam = pd.read_csv(out / "ch05_prm_lambda.csv").set_index("lambda")
    assert lam.loc[1.0, "iou"] == 1.0                      # closed skip: only the lattice
    assert lam.loc[1.0, "gradient_on_lattice"] == pytest.approx(1.0)
    assert lam.loc[0.0, "iou"] < 0.5 and lam.loc[0.0, "gradient_on_lattice"] < 0.5
    masked = pd.read_csv(out / "ch05_masked_pgd.csv")
    assert set(masked.method) == {"clean", "post-hoc blend", "restricted PGD"}
    assert (masked.acc_lo <= masked.acc).all() and (masked.acc <= masked.acc_hi).all()
    gray = pd.read_csv(out / "ch05_graybox.csv")
    assert set(gray.defence) == set(ch05.DEFENCES)
    assert set(gray[gray.attacker == "gray-box"].attack) == {"one_pixel", "jsma", "deepfool",
                                                              "cw", "pgd"}
    assert set(gray[gray.attacker == "white-box"].defence) == {"none", "PRM + shift"}
    none = gray[(gray.defence == "none") & (gray.attacker == "gray-box")].set_index("attack")
    assert none.loc["pgd", "acc"] < 0.2                    # PGD breaks the bare ResNet-20
    for stem in ("gradient_maps", "masked_pgd", "prm_lambda", "lambda_maps", "graybox"):
        assert (out / f"ch05_{stem}.png").stat().st_size > 10_000
    assert '"profile": "smoke"' in (out / "ch05_run.json").read_text()
