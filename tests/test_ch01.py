import pandas as pd
import pytest
import torch

from advlab.experiments import ch01


def test_score_on_hand_made_predictions():
    y = torch.tensor([0, 1, 2, 3])
    ns = torch.tensor([0, 1, 9, 7])
    ss = torch.tensor([0, 5, 2, 8])
    ds = torch.tensor([4, 1, 2, 9])      # votes: 0 ok, 1 ok, 2 ok, reject
    s = ch01.score(y, ns, ss, ds)
    assert s == {"acc_ns": 0.5, "acc_ss": 0.5, "acc_ds": 0.5, "acc_maj": 0.75, "reject": 0.25}


def test_settings_and_profiles():
    assert ch01.settings("smoke")["draws"] >= 2          # spread needs at least two draws
    assert ch01.settings("full")["n_images"] is None     # all 975 colour images
    assert ch01.settings("smoke", draws=5)["draws"] == 5
    with pytest.raises(ValueError, match="unknown ch01 settings"):
        ch01.settings("smoke", drawz=5)
    with pytest.raises(ValueError, match="unknown profile"):
        ch01.settings("medium")


def test_seed_comparison_layout():
    table = ch01.SEED_TABLE.assign(kernel="5x5")
    both = ch01.seed_comparison(table)
    assert list(both.index) == list(ch01.NOISE_SIGMAS)
    assert both[("acc_ns", "advlab")].tolist() == both[("acc_ns", ch01.SOURCE_LABEL)].tolist()


def test_kernel_check_rejects_the_seed_claim():
    k = ch01.kernel_check().set_index("candidate")
    assert k.max_abs_kernel_error.iloc[0] > 10 * k.max_abs_kernel_error.iloc[1]
    assert k.index[1].startswith("one 9x9")
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    px = ch01.kernel_check(x=x).max_pixel_error_255
    assert px.iloc[1] < 3.0 and px.iloc[0] > 5 * px.iloc[1]   # ~2 grey levels vs. ~25


def test_noise_seeds_do_not_depend_on_the_subset():
    from advlab.data import ImageSet
    s = ImageSet(torch.zeros(3, 3, 2, 2), torch.tensor([4, 8, 15]), ("c",) * 16, "t", ["a", "b", "c"])
    assert ch01.noise_seeds(s, 1, 0)[1] == ch01.noise_seeds(s.subset([1]), 1, 0)[0]
    assert len(set(ch01.noise_seeds(s, 0, 0).tolist() + ch01.noise_seeds(s, 1, 0).tolist())) == 6


def test_cli_smoke_run_writes_tables_and_figures(mirror, tmp_path, monkeypatch):
    from advlab.cli import main
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path / "cache"))
    assert main(["run", "ch01", "--profile", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    out = tmp_path / "ch01"
    table = pd.read_csv(out / "ch01_table.csv")
    assert len(table) == 8 and set(table.kernel) == {"5x5", "7x7"}
    assert (table.acc_ns_lo <= table.acc_ns).all() and (table.acc_ns <= table.acc_ns_hi).all()
    attacks = pd.read_csv(out / "ch01_attacks.csv")
    assert set(attacks.attack) == {"none", "FGSM", "PGD"}
    assert (out / "ch01_noise_curves.png").stat().st_size > 10_000
    assert '"profile": "smoke"' in (out / "ch01_run.json").read_text()
