import numpy as np
import pandas as pd
import pytest
import torch

from advlab.chapter import SettingsError
from advlab.experiments import ch03
from advlab.experiments.ch03 import CHAPTER, DEEPFOOL_SCALED, FGSM, IFGSM


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


def test_curves_and_per_image_outcomes_of_a_point():
    y = torch.tensor([0, 1, 2, 3])
    labels = {"undefended": torch.tensor([0, 9, 9, 9]), "remove 4 bits": torch.tensor([0, 1, 9, 3]),
              "5x5": torch.tensor([ch03.NOT_EVALUATED, 1, 2, 9])}     # image 0 does not fool: not run
    point = ch03.Point(FGSM, 4, labels, torch.tensor([0.01, 0.02, 0.03, 0.02], dtype=torch.float64), None)
    families = {"undefended": "none", "remove 4 bits": "bit depth", "5x5": "median"}
    curves, outcomes = ch03.tables_of([point], y, families)
    rows = curves.set_index("defence")
    assert rows.loc["undefended", "acc"] == 0.25 and rows.loc["undefended", "fooled"] == 3
    assert rows.loc["remove 4 bits", "rate"] == pytest.approx(2 / 3)     # 1 and 3 recovered
    assert rows.loc["remove 4 bits", "acc"] == 0.75 and rows.loc["remove 4 bits", "panel"] == "FGSM"
    assert rows.loc["5x5", "rate"] == pytest.approx(2 / 3) and np.isnan(rows.loc["5x5", "acc"])
    assert rows.loc["remove 4 bits", "l2"] == pytest.approx(0.02)
    assert list(outcomes.image) == [1, 2, 3]                      # the images that fool the model
    assert list(outcomes["remove 4 bits"]) == [True, False, True] and list(outcomes["5x5"]) == [True, True, False]
    assert "undefended" not in outcomes


def test_settings_profiles_and_defences():
    smoke, full, paper = (CHAPTER.settings(p) for p in ("smoke", "full", "paper"))
    assert smoke.n_images < full.n_images and paper.n_images is None
    assert max(full.deepfool_l2) >= 0.1 and max(paper.deepfool_l2) >= 0.1   # the source study's axis
    assert CHAPTER.settings("smoke", eot_draws=8).eot_draws == 8
    with pytest.raises(SettingsError, match="unknown setting"):
        CHAPTER.settings("smoke", eot=8)
    for bad, match in ((dict(tvm_keep=(0.0,)), "tvm_keep"), (dict(tvm_processed=(1.0,)), "no data term"),
                       (dict(pool=2, n_images=4), "pool"), (dict(fgsm_eps=()), "fgsm_eps"),
                       (dict(model="lenet"), "ImageNet model")):
        with pytest.raises(SettingsError, match=match):
            CHAPTER.settings("smoke", **bad)
    assert full.keeps() == (0.1, 0.25, 1.0, 0.9, 0.75) and full.keeps(oblivious=False) == (0.1, 0.25, 1.0)
    assert ch03.tvm_readings(full) == {"pixels kept": ["TVM keep 10%", "TVM keep 25%", "TVM keep 100%"],
                                       "pixels processed": ["TVM keep 90%", "TVM keep 75%"]}
    model = torch.nn.Linear(2, 2)
    d = ch03.make_defences(model, full)
    assert list(d) == ["undefended", "remove 2 bits", "remove 4 bits", "remove 6 bits", "1x3", "3x1",
                       "3x3", "5x5", "TVM keep 10%", "TVM keep 25%", "TVM keep 100%", "TVM keep 90%",
                       "TVM keep 75%", "K-means k=8", "JPEG 75"]
    assert list(ch03.make_defences(model, full, oblivious=False))[8:11] == [
        "TVM keep 10%", "TVM keep 25%", "TVM keep 100%"]
    assert d["remove 6 bits"].transform.bits == 2 and d["TVM keep 10%"].randomized
    assert not d["TVM keep 100%"].randomized and d["TVM keep 90%"].transform.keep == 0.9
    assert ch03.family(d["5x5"]) == "median" and ch03.family(d["undefended"]) == "none"


def test_deepfool_direction_is_stretched_to_the_budget():
    from advlab.metrics import normalised_l2
    g = torch.Generator().manual_seed(0)
    x = 0.25 + 0.5 * torch.rand(3, 3, 8, 8, generator=g)
    delta = 1e-3 * torch.randn(3, 3, 8, 8, generator=g)
    adv = ch03.scale_to_l2(x, delta, 0.05)
    assert torch.allclose(normalised_l2(x, adv), torch.full((3,), 0.05, dtype=torch.float64), rtol=1e-5)
    cos = torch.nn.functional.cosine_similarity((adv - x).flatten(1), delta.flatten(1))
    assert bool((cos > 0.9999).all())


L2S = {FGSM: [0.01, 0.03, 0.05, 0.08], IFGSM: [0.01, 0.03, 0.05, 0.08], DEEPFOOL_SCALED: [0.01, 0.05, 0.1]}


def rates_where_every_claim_holds(attack, i, l2):
    strong = l2 >= 0.04
    rates = {"remove 2 bits": 0.2 if strong else 0.9, "remove 4 bits": 0.7 if strong else 0.6,
             "remove 6 bits": 0.5, "1x3": 0.3 if l2 >= 0.06 else 0.8, "3x1": 0.3 if l2 >= 0.06 else 0.8,
             "3x3": 0.6, "5x5": 0.4, "TVM keep 10%": 0.9, "TVM keep 25%": 0.7, "TVM keep 100%": 0.6,
             "TVM keep 90%": 0.9, "TVM keep 75%": 0.7, "K-means k=8": 0.1}
    if attack == DEEPFOOL_SCALED:
        rates.update({"remove 4 bits": 0.6 - 0.2 * i, "remove 6 bits": 0.5, "3x3": 0.9, "1x3": 0.2,
                      "3x1": 0.2, "5x5": 0.4})
    return rates


def fake_outcomes(rates=rates_where_every_claim_holds, n=100):
    """Per-image outcomes with exactly round(rate * n) successes, on the first images (so that
    every discordant pair favours the higher rate)."""
    parts = []
    for attack, points in L2S.items():
        for i, l2 in enumerate(points):
            o = pd.DataFrame({d: np.arange(n) < round(r * n) for d, r in rates(attack, i, l2).items()})
            o.insert(0, "image", np.arange(n))
            parts.append(o.assign(attack=attack, strength=float(i), l2=l2))
    clean = pd.DataFrame({w: np.arange(n) < round(a * n) for w, a in
                          {"remove 2 bits": 0.98, "remove 4 bits": 0.96, "remove 6 bits": 0.86, "1x3": 0.9,
                           "3x1": 0.9, "3x3": 0.8, "5x5": 0.6, "TVM keep 10%": 0.23, "TVM keep 25%": 0.5,
                           "TVM keep 100%": 0.77, "TVM keep 90%": 0.75, "TVM keep 75%": 0.7,
                           "K-means k=8": 0.71}.items()})
    return pd.concat(parts, ignore_index=True), clean


def claims(outcomes, clean):
    s = CHAPTER.settings("full")
    return ch03.claims_table(outcomes, clean, ch03.tvm_readings(s), ["1x3", "3x1", "3x3", "5x5"]).set_index("claim")


def test_claims_count_only_significant_points():
    outcomes, clean = fake_outcomes()
    c = claims(outcomes, clean)
    assert len(c) == 8
    assert (c.verdict == "holds").all(), c[["verdict", "evidence"]].to_string()
    first = c.iloc[0]
    assert (first.points, first.significant_for) == (4, 4)       # L2 0.01 and 0.03, two attacks
    assert "FGSM: 2 of 2 points for, 0 against (fooled 100; mean margin +30 points)" in first.evidence
    note = c.loc["TVM on 10% of the pixels beats 25% and 100% (pixels kept)", "clean_accuracy"]
    assert note.startswith("TVM keep 10% 23%, TVM keep 25% 50%") and "decided by" not in note
    assert "decided by" not in c.loc["TVM beats K-means (every attack and strength)", "clean_accuracy"]
    # 2 bits ahead by 3 images of 100 at one point: not significant, so that point does not count
    o = outcomes.copy()
    weak = (o.attack == IFGSM) & (o.l2 == 0.03)
    o.loc[weak, "remove 2 bits"] = o.loc[weak, "image"] < 63
    row = claims(o, clean).iloc[0]
    assert (row.verdict, row.significant_for, row.significant_against) == ("partly", 3, 0)
    # small differences everywhere: not shown; reversed: does not hold
    o = outcomes.copy()
    o["TVM keep 10%"] = o["image"] < 71
    v = claims(o, clean).verdict
    assert v["TVM on 10% of the pixels beats 25% and 100% (pixels kept)"] == "not shown"
    o["TVM keep 10%"] = o["image"] < 20          # below its clean accuracy and TVM keep 25%'s rate
    c2 = claims(o, clean)
    v = c2.verdict
    assert v["TVM on 10% of the pixels beats 25% and 100% (pixels kept)"] == "does not hold"
    assert v["TVM beats K-means (every attack and strength)"] == "holds"        # 20% > 10%
    assert ("decided by clean accuracy: TVM keep 10% keeps 23% of the clean images, below TVM keep "
            "25%'s mean success rate (70%)") in c2.loc["TVM on 10% of the pixels beats 25% and 100% "
                                                       "(pixels kept)", "clean_accuracy"]
    assert claims(outcomes[outcomes.l2 > 0.04], clean).verdict.iloc[0] == "not tested"


def test_falls_are_judged_on_the_images_fooled_at_both_points():
    outcomes, clean = fake_outcomes()
    ev = ch03.fall(outcomes, DEEPFOOL_SCALED, "remove 4 bits", "falls")
    assert (ev.total, ev.for_, ev.against) == (1, 1, 0) and "60% at L2 0.010 to 20% at L2 0.100" in ev.text[0]
    assert "(a fall of 40 points, p < 0.001)" in ev.text[0]       # for readers: no 1e-12
    assert ch03.p_text(0.0123) == "p = 0.012" and ch03.p_text(1.0) == "p = 1"
    assert ch03.fall(outcomes, DEEPFOOL_SCALED, "remove 6 bits", "stable").verdict == "holds"
    assert ch03.fall(outcomes, DEEPFOOL_SCALED, "remove 4 bits", "stable").verdict == "does not hold"
    strongest = (outcomes.attack == DEEPFOOL_SCALED) & (outcomes.l2 == 0.1)
    o = outcomes[~strongest | (outcomes.image < 30)]    # the strongest point fools only 30 images
    assert "on the 30 images fooled at both" in ch03.fall(o, DEEPFOOL_SCALED, "remove 4 bits", "falls").text[0]


def test_cli_smoke_run_writes_tables_and_figures(mirror, tmp_path, monkeypatch):
    from advlab.cli import main
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path / "cache"))
    assert main(["run", "ch03", "--profile", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    out = tmp_path / "ch03"
    s = CHAPTER.settings("smoke")
    n_def = len(ch03.make_defences(torch.nn.Identity(), s)) - 1
    clean = pd.read_csv(out / "ch03_clean.csv")
    assert len(clean) == n_def + 1 and clean.acc[clean.defence == "undefended"].item() == 1.0
    curves = pd.read_csv(out / "ch03_curves.csv")
    points = len(s.fgsm_eps) + len(s.ifgsm_eps) + 1 + len(s.deepfool_l2)
    assert len(curves) == points * (n_def + 1)
    assert set(curves.attack) == {FGSM, IFGSM, ch03.DEEPFOOL, DEEPFOOL_SCALED}
    assert ((curves.l2 > 0) & (curves.l2 < 0.2)).all()
    df = curves[curves.attack == DEEPFOOL_SCALED]
    assert np.allclose(df.l2, s.deepfool_l2[0], rtol=0.05)     # stretched to the budget
    ok = curves.rate.notna()
    assert ((curves.rate_lo[ok] <= curves.rate[ok]) & (curves.rate[ok] <= curves.rate_hi[ok])).all()
    outcomes = pd.read_csv(out / "ch03_outcomes.csv")
    assert len(outcomes) == curves[curves.defence == "undefended"].fooled.sum() and "TVM keep 90%" in outcomes
    adaptive = pd.read_csv(out / "ch03_adaptive.csv")
    assert set(adaptive.attacker) == {"oblivious", "adaptive"}
    assert len(adaptive[adaptive.attacker == "adaptive"]) == (n_def - len(s.tvm_processed)) * len(s.adaptive_l2)
    claims_ = pd.read_csv(out / "ch03_claims.csv")
    assert len(claims_) == 8
    assert set(claims_.verdict) <= {"holds", "partly", "does not hold", "not shown", "not tested"}
    tol = pd.read_csv(out / "ch03_tv_tolerance.csv")
    assert list(tol.keep) == list(s.tvm_keep) and (tol.objective_gap >= -1e-6).all()
    for stem in CHAPTER.figures:
        assert (out / f"{stem}.png").stat().st_size > 10_000
    for name in CHAPTER.tables:
        assert (out / f"{name}.md").read_text().startswith(":::{table}")
    assert '"profile": "smoke"' in (out / "ch03_run.json").read_text()


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

    outcomes, _ = fake_outcomes()
    curves = (outcomes[outcomes.attack == DEEPFOOL_SCALED]
              .melt(id_vars=["attack", "l2"], value_vars=["1x3", "3x1", "3x3", "5x5"],
                    var_name="defence", value_name="ok")
              .groupby(["attack", "l2", "defence"], as_index=False).ok.mean()
              .rename(columns={"ok": "rate"}).assign(family="median"))
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
    model = Tiny().eval()
    defences = ch03.make_defences(model, CHAPTER.settings("smoke"), oblivious=False)
    box = transform_explorer(model, images, {k: d for k, d in defences.items() if k != "undefended"})
    controls, out = box.children
    assert len(out.outputs) == 1
    choose, eps, which = controls.children
    which.value = "TVM keep 10%"
    eps.value = 0
    choose.value = 1
    assert len(out.outputs) == 1 and "image/jpeg" in out.outputs[0]["data"]


def test_adaptive_figure_with_one_budget_is_one_panel_of_rows():
    from advlab import plots
    from advlab.plots import style
    rows = [dict(attacker=who, budget=0.05, defence=d, family=f, n=20, acc=a, acc_lo=max(a - 0.1, 0),
                 acc_hi=min(a + 0.1, 1), l2=0.05)
            for d, f in (("undefended", "none"), ("5x5", "median"), ("TVM keep 25%", "TVM"))
            for who, a in (("oblivious", 0.4), ("adaptive", 0.05)) if not (d == "undefended" and who == "adaptive")]
    m = style.measure(plots.plot_adaptive_curves(pd.DataFrame(rows)))
    assert m["panels_per_row"] == 1 and m["legends_over_data"] == 0 and m["min_font_pt"] >= 9
    assert {"no defence", "5x5", "TVM keep 25%"} <= set(m["texts"])
