import numpy as np
import pandas as pd
import pytest
import torch

from advlab.experiments import ch03


def test_defence_success_on_hand_made_predictions():
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    undefended = torch.tensor([0, 9, 9, 9, 9, 5])     # images 1-4 fool the bare classifier
    defended = torch.tensor([7, 1, 2, 8, 9, 5])       # the defence recovers 1 and 2, not 3, 4
    assert ch03.defence_success(y, undefended, defended) == (2, 4)   # image 0's miss not counted
    assert ch03.defence_success(y, y, defended) == (0, 0)
    with pytest.raises(ValueError, match="same shape"):
        ch03.defence_success(y, undefended[:3], defended)
    row = ch03.rate_row(2, 4, "rate")
    assert row["rate"] == 0.5 and row["rate_lo"] < 0.5 < row["rate_hi"]
    assert np.isnan(ch03.rate_row(0, 0, "rate")["rate"])


def test_curve_rows_and_the_undefended_baseline():
    y = torch.tensor([0, 1, 2, 3])
    s = {"remove 4 bits": ch03.Setting("bit depth", "remove 4 bits", torch.nn.Identity())}
    piece = {"undefended": torch.tensor([0, 9, 9, 9]), "remove 4 bits": torch.tensor([0, 1, 9, 3]),
             "l2": torch.tensor([0.01, 0.02, 0.03, 0.02], dtype=torch.float64)}
    rows = pd.DataFrame(ch03.curve_rows(y, piece, s, attack="FGSM", strength=4)).set_index("defence")
    assert rows.loc["undefended", "acc"] == 0.25 and rows.loc["undefended", "fooled"] == 3
    assert rows.loc["remove 4 bits", "rate"] == pytest.approx(2 / 3)     # 1 and 3 recovered
    assert rows.loc["remove 4 bits", "acc"] == 0.75
    assert rows.loc["remove 4 bits", "l2"] == pytest.approx(0.02)


def test_settings_profiles_and_defences():
    smoke, full, paper = (ch03.settings(p) for p in ("smoke", "full", "paper"))
    assert smoke["n_images"] < full["n_images"] and paper["n_images"] is None
    assert max(full["deepfool_l2"]) >= 0.1 and max(paper["deepfool_l2"]) >= 0.1   # the source study's axis
    assert ch03.settings("smoke", eot_draws=8)["eot_draws"] == 8
    with pytest.raises(ValueError, match="unknown ch03 settings"):
        ch03.settings("smoke", eot=8)
    with pytest.raises(ValueError, match="tvm_keep"):
        ch03.settings("smoke", tvm_keep=(0.0,))
    with pytest.raises(ValueError, match="pool"):
        ch03.settings("smoke", pool=2, n_images=4)
    with pytest.raises(ValueError, match="fgsm_eps"):
        ch03.settings("smoke", fgsm_eps=())
    names = list(ch03.defence_settings(full))
    assert names == ["remove 2 bits", "remove 4 bits", "remove 6 bits", "1x3", "3x1", "3x3", "5x5",
                     "TVM 10%", "TVM 25%", "TVM 100%", "K-means k=8", "JPEG 75"]
    d = ch03.defence_settings(full)
    assert d["remove 6 bits"].transform.bits == 2 and d["TVM 10%"].randomized
    assert not d["TVM 100%"].randomized and d["TVM 10%"].key() != d["TVM 25%"].key()


def test_deepfool_is_stretched_to_the_budget():
    from advlab.metrics import normalised_l2
    g = torch.Generator().manual_seed(0)
    x = 0.25 + 0.5 * torch.rand(3, 3, 8, 8, generator=g)
    delta = 1e-3 * torch.randn(3, 3, 8, 8, generator=g)
    adv = ch03.scale_to_l2(x, delta, 0.05)
    assert torch.allclose(normalised_l2(x, adv), torch.full((3,), 0.05, dtype=torch.float64), rtol=1e-5)
    cos = torch.nn.functional.cosine_similarity((adv - x).flatten(1), delta.flatten(1))
    assert bool((cos > 0.9999).all())


def fake_curves():
    """Success-rate curves made so that every claim of the source study holds."""
    rows = []
    l2s = {"FGSM": [0.01, 0.03, 0.05, 0.08], "I-FGSM": [0.01, 0.03, 0.05, 0.08],
           "DeepFool": [0.002, 0.02, 0.1]}
    for attack, points in l2s.items():
        for i, l2 in enumerate(points):
            strong = l2 >= 0.04
            rates = {"remove 2 bits": 0.2 if strong else 0.9, "remove 4 bits": 0.7 if strong else 0.6,
                     "remove 6 bits": 0.5, "1x3": 0.3 if l2 >= 0.06 else 0.8,
                     "3x1": 0.3 if l2 >= 0.06 else 0.8, "3x3": 0.6, "5x5": 0.4,
                     "TVM 10%": 0.9, "TVM 25%": 0.8, "TVM 100%": 0.7, "K-means k=8": 0.1}
            if attack == "DeepFool":
                rates.update({"remove 4 bits": 0.6 - 0.2 * i, "remove 6 bits": 0.5,
                              "3x3": 0.9, "1x3": 0.2, "3x1": 0.2, "5x5": 0.4})
            fam = lambda d: ("bit depth" if "bits" in d else "TVM" if "TVM" in d  # noqa: E731
                             else "K-means" if "K-means" in d else "median")
            rows += [{"attack": attack, "l2": l2, "defence": d, "family": fam(d), "rate": r}
                     for d, r in rates.items()]
    clean = pd.DataFrame({"defence": ["1x3", "3x1", "3x3", "5x5"], "acc": [0.9, 0.9, 0.8, 0.6]})
    return pd.DataFrame(rows), clean


def test_claims_table_verdicts():
    curves, clean = fake_curves()
    claims = ch03.claims_table(curves, clean)
    assert len(claims) == 7
    assert (claims.verdict == "holds").all(), claims[["claim", "verdict", "evidence"]].to_string()
    assert "FGSM: 2/2 points" in claims.evidence[0]           # L2 0.01 and 0.03 lie below 0.04
    # break one claim in one place: 2 bits loses at L2 0.03 against I-FGSM -> partly
    c = curves.copy()
    c.loc[(c.attack == "I-FGSM") & (c.l2 == 0.03) & (c.defence == "remove 2 bits"), "rate"] = 0.1
    assert ch03.claims_table(c, clean).verdict[0] == "partly"
    # and reverse TVM 10% everywhere -> does not hold
    c = curves.copy()
    c.loc[c.defence == "TVM 10%", "rate"] = 0.0
    v = ch03.claims_table(c, clean).set_index("claim").verdict
    assert v["TVM on 10% of the pixels beats 25% and 100%"] == "does not hold"
    assert v["TVM beats K-means (every attack and strength)"] == "partly"
    # no point below 0.04: not tested
    assert ch03.claims_table(curves[curves.l2 > 0.04], clean).verdict[0] == "not tested"


def test_cli_smoke_run_writes_tables_and_figures(mirror, tmp_path, monkeypatch):
    from advlab.cli import main
    assert main(["run", "ch03", "--profile", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    out = tmp_path / "ch03"
    cfg = ch03.settings("smoke")
    n_def = len(ch03.defence_settings(cfg))
    clean = pd.read_csv(out / "ch03_clean.csv")
    assert len(clean) == n_def + 1 and clean.acc[clean.defence == "undefended"].item() == 1.0
    curves = pd.read_csv(out / "ch03_curves.csv")
    assert len(curves) == len(ch03.attack_jobs(cfg)) * (n_def + 1)
    assert set(curves.attack) == set(ch03.ATTACKS)
    assert ((curves.l2 > 0) & (curves.l2 < 0.2)).all()
    df = curves[(curves.attack == "DeepFool") & curves.strength.notna()]
    assert np.allclose(df.l2, cfg["deepfool_l2"][0], rtol=0.05)     # stretched to the budget
    ok = curves.rate.notna()
    assert ((curves.rate_lo[ok] <= curves.rate[ok]) & (curves.rate[ok] <= curves.rate_hi[ok])).all()
    adaptive = pd.read_csv(out / "ch03_adaptive.csv")
    assert set(adaptive.attacker) == {"oblivious", "adaptive"}
    assert len(adaptive[adaptive.attacker == "adaptive"]) == n_def * len(cfg["adaptive_l2"])
    claims = pd.read_csv(out / "ch03_claims.csv")
    assert len(claims) == 7 and set(claims.verdict) <= {"holds", "partly", "does not hold", "not tested"}
    cost = pd.read_csv(out / "ch03_throughput.csv")
    assert len(cost) == n_def and (cost.img_per_s > 0).all()
    tol = pd.read_csv(out / "ch03_tv_tolerance.csv")
    assert list(tol.keep) == list(cfg["tvm_keep"]) and (tol.objective_gap >= -1e-6).all()
    for stem in ("examples", "bit_depth", "median", "tvm_kmeans", "tvm_pixels", "adaptive"):
        assert (out / f"ch03_{stem}.png").stat().st_size > 10_000
    assert '"profile": "smoke"' in (out / "ch03_run.json").read_text()


def test_pieces_record_the_device_they_were_computed_on(tmp_path):
    from advlab.cache import ResultCache
    cache = ResultCache("ch03", root=tmp_path)
    gpu = ch03.Pieces(cache, torch.device("cpu"))
    gpu.device = "NVIDIA H100"                      # as if computed on a GPU
    assert gpu.get("p", {"a": 1}, lambda: {"v": torch.ones(2)})["device"] == "NVIDIA H100"
    here = ch03.Pieces(ResultCache("ch03", root=tmp_path), torch.device("cpu"))
    value = here.get("p", {"a": 1}, lambda: pytest.fail("must be a cache hit"))
    assert value["device"] == "NVIDIA H100" and torch.equal(value["v"], torch.ones(2))
    here.get("q", {"a": 2}, lambda: {"v": torch.zeros(1)})
    note = here.note()
    assert "1 of 2 pieces read from the cache" in note and "NVIDIA H100: 1" in note and "cpu" in note


def test_exercise_checkers_accept_the_solutions_and_reject_wrong_answers():
    from advlab import exercises

    def remove_bits(x, k):
        v = torch.round(x * 255)
        return (v - v % 2 ** k) / 255

    exercises.check("ch03-ex1", remove_bits)
    with pytest.raises(AssertionError, match="rounds down"):
        exercises.check("ch03-ex1", lambda x, k: (torch.round(x * 255 / 2 ** k) * 2 ** k).clamp(max=255) / 255)
    with pytest.raises(AssertionError, match="No answer"):
        exercises.check("ch03-ex1", ...)

    def success_rate(y, undefended, defended):
        fooled = undefended != y
        return float((fooled & (defended == y)).sum() / fooled.sum())

    exercises.check("ch03-ex2", success_rate)
    with pytest.raises(AssertionError, match="divided by all images"):
        exercises.check("ch03-ex2", lambda y, u, d: float(((u != y) & (d == y)).float().mean()))

    curves, _ = fake_curves()
    exercises.check("ch03-ex3", "3x3", curves)
    with pytest.raises(AssertionError, match="another window"):
        exercises.check("ch03-ex3", "5x5", curves)
    with pytest.raises(AssertionError, match="not one of"):
        exercises.check("ch03-ex3", "7x7", curves)


def test_transform_explorer_builds_and_redraws():
    from advlab.data import ImageSet
    from advlab.widgets import transform_explorer

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    g = torch.Generator().manual_seed(0)
    images = ImageSet(torch.rand(2, 3, 16, 16, generator=g), torch.tensor([0, 1]),
                      ("zero", "one", "two", "three"), "made", ["n0_zero.JPEG", "n1_one.JPEG"])
    cfg = ch03.settings("smoke")
    box = transform_explorer(Tiny().eval(), images, ch03.defence_settings(cfg))
    controls, out = box.children
    assert len(out.outputs) == 1
    choose, eps, which = controls.children
    which.value = "TVM 10%"
    eps.value = 0
    choose.value = 1
    assert len(out.outputs) == 1 and "image/jpeg" in out.outputs[0]["data"]
