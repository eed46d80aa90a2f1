"""Chapter 5: settings, the analysis helpers, the readers' tables on synthetic results, and
the smoke profile end to end (the algorithms themselves are tested in test_pixel_robustness,
test_attacks, test_one_pixel and test_baseline_defences)."""
import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from advlab.chapter import SettingsError  # noqa: E402
from advlab.experiments import ch05  # noqa: E402

CHAPTER = ch05.CHAPTER


def test_settings_and_profiles():
    smoke, full, paper = (CHAPTER.settings(p) for p in ("smoke", "full", "paper"))
    assert not smoke.train_prm and not full.train_prm and paper.train_prm
    assert (paper.one_pixel_popsize, paper.one_pixel_generations) == (400, 100)
    assert paper.pgd_steps == 1000 and paper.region_samples == 10_000
    from advlab.zoo import model_names
    # the maps compare the ResNets with another family wherever the zoo has one
    assert (ch05.OTHER_ARCHITECTURE in full.cifar_models) == (ch05.OTHER_ARCHITECTURE in model_names())
    assert set(ch05.RESNETS) <= set(full.cifar_models)
    assert CHAPTER.settings("smoke", table_per_class=3).table_per_class == 3
    assert CHAPTER.settings("smoke", model="resnet50").imagenet_model == "resnet50"
    with pytest.raises(SettingsError, match="unknown setting"):
        CHAPTER.settings("smoke", n_tabel=30)
    with pytest.raises(SettingsError, match="padding must be one of"):
        CHAPTER.settings("smoke", padding="reflect")
    with pytest.raises(SettingsError, match="restricted_per_class"):
        CHAPTER.settings("smoke", restricted_per_class=100)
    with pytest.raises(SettingsError, match="graybox attacks"):
        CHAPTER.settings("smoke", graybox=("fgsm",))
    with pytest.raises(SettingsError, match="cifar_models: unknown cifar10 classifier 'resnet21'"):
        CHAPTER.settings("smoke", cifar_models=("resnet20", "resnet21"))
    with pytest.raises(SettingsError, match="must include resnet20"):
        CHAPTER.settings("smoke", cifar_models=("resnet32",))


def test_pixel_deflection_is_scaled_to_the_image():
    s = CHAPTER.settings("full")
    assert ch05.deflection_settings(s.replace(deflections=None, deflection_window=None), 32, 32) == (4, 1)
    assert ch05.deflection_settings(s.replace(deflections=7, deflection_window=None), 32, 32) == (7, 1)


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


def test_family_gap_tells_a_shared_map_from_a_family_map():
    g = torch.Generator().manual_seed(0)
    common, own = torch.rand(8, 8, generator=g), torch.rand(8, 8, generator=g)
    noise = lambda: 0.3 * torch.rand(200, 8, 8, generator=g)  # noqa: E731
    family = {"a", "b"}
    apart = ch05.family_gap({"a": common + noise(), "b": common + noise(), "c": own + noise()},
                            family, boots=200)
    assert apart["within"] > 0.9 and apart["across"] < 0.5 and apart["gap_lo"] > 0.3
    shared = ch05.family_gap({"a": common + noise(), "b": common + noise(), "c": common + noise()},
                             family, boots=200)
    assert shared["gap_lo"] < 0 < shared["gap_hi"]
    assert shared["gap_lo"] <= shared["gap"] <= shared["gap_hi"]
    alone = ch05.family_gap({"a": common + noise(), "b": common + noise()}, family, boots=20)
    assert alone["across"] != alone["across"]                 # NaN: nothing to compare across


def test_paired_test_is_the_exact_mcnemar_test():
    a = torch.tensor([True] * 12 + [False] * 3 + [True] * 5)
    b = torch.tensor([False] * 12 + [False] * 3 + [True] * 5)
    assert ch05.paired_test(a, b) == pytest.approx(2 * 0.5 ** 12)     # 12 discordant, all one way
    assert ch05.paired_test(a, a) == 1.0
    c = torch.tensor([True, False] * 10)
    d = torch.tensor([False, True] * 10)
    assert ch05.paired_test(c, d) == pytest.approx(1.0)


def test_defence_rate_is_the_authors_formula():
    t = pd.DataFrame([
        {"attack": "clean", "defence": "undefended", "acc": 0.9, "acc_plain": 0.9},
        {"attack": "clean", "defence": "d", "acc": 0.85, "acc_plain": 0.8},
        {"attack": "pgd", "defence": "undefended", "acc": 0.1, "acc_plain": 0.1},
        {"attack": "pgd", "defence": "d", "acc": 0.6, "acc_plain": 0.2},
        {"attack": "op", "defence": "d", "acc": 0.7, "acc_plain": 0.9},   # attack did not hurt
    ])
    rate = ch05.add_defence_rate(t).defence_rate
    assert rate.iloc[3] == pytest.approx(1 - (0.8 - 0.6) / (0.8 - 0.2))
    assert rate.iloc[[0, 1, 2, 4]].isna().all()


def synthetic_defences() -> pd.DataFrame:
    rows = []
    for attack, attacker in (("clean", "-"), ("pgd", "gray-box"), ("jsma", "gray-box"),
                             ("pgd", "white-box")):
        for d in ch05.DEFENCES if attacker != "white-box" else ("PRM + shift",):
            acc = 0.2 * ch05.DEFENCES.index(d) + (0.1 if attack == "clean" else 0.0)
            rows.append({"attack": attack, "attacker": attacker, "defence": d, "n": 100,
                         "correct": round(100 * acc), "acc": acc, "acc_lo": acc - 0.05,
                         "acc_hi": acc + 0.05, "acc_plain": acc})
    return ch05.add_defence_rate(pd.DataFrame(rows))


def test_defence_table_layout():
    s = CHAPTER.settings("full")
    t = ch05.defence_table(synthetic_defences(), s)
    titles = ch05.defence_titles(s)
    assert list(t.columns) == ["examples", *(titles[d] for d in ch05.DEFENCES)]
    assert titles["undefended"] == "ResNet-20, no defence"       # never "none"
    assert t.examples.tolist() == ["clean images", "PGD (gray-box)", "JSMA (gray-box)",
                                   "PGD (white-box: PRM and shift known, EOT)"]
    white = t.iloc[-1]
    assert white[titles["undefended"]] is None and white[titles["PRM + shift"]][0] == pytest.approx(
        0.2 * ch05.DEFENCES.index("PRM + shift"))
    halves = [ch05.defence_table(synthetic_defences(), s, defences=g) for g in ch05.DEFENCE_GROUPS.values()]
    assert [len(h) for h in halves] == [3, 4]              # the white-box row only with the PRM
    assert sorted(c for h in halves for c in h.columns[1:]) == sorted(titles.values())
    rate = ch05.defence_table(synthetic_defences(), s, "defence_rate")
    assert titles["undefended"] not in rate.columns and titles["PRM"] not in rate.columns
    assert len(rate) == 2


def test_rate_shown_only_where_the_attack_hurt_the_model_significantly():
    s = CHAPTER.settings("full")
    t = synthetic_defences().assign(p_drop=1.0)
    t.loc[t.defence == "region-based", "p_drop"] = 0.001
    titles = ch05.defence_titles(s)
    rate = ch05.defence_table(t, s, "defence_rate")
    assert list(rate.columns) == ["examples", titles["region-based"]]     # no column of dashes
    assert rate[titles["region-based"]].notna().all()
    assert t.defence_rate.notna().sum() > len(rate)   # the data keep the authors' formula


def test_separation_of_wilson_intervals():
    row = lambda lo, hi: pd.Series({"acc_lo": lo, "acc_hi": hi})  # noqa: E731
    assert ch05.separated(row(0.5, 0.7), row(0.2, 0.4)) == "above"
    assert ch05.separated(row(0.1, 0.3), row(0.2, 0.4)) == "overlap"
    assert ch05.separated(row(0.0, 0.1), row(0.2, 0.4)) == "below"


def test_cli_smoke_run_writes_tables_and_figures(mirror, models_mirror, tmp_path):
    """The smoke profile end to end with the shipped PRMs (in the session's cache, which the
    notebook's smoke run then reuses)."""
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
    gray = pd.read_csv(out / "ch05_defences.csv")
    assert set(gray.defence) == set(ch05.DEFENCES)
    assert set(gray[gray.attacker == "gray-box"].attack) == set(ch05.GRAYBOX)
    assert set(gray[gray.attacker == "white-box"].defence) == {"PRM + shift"}
    assert set(gray.n) == {10}                              # gray-box and white-box: same images
    assert gray[gray.defence == "PRM + shift"].p_shift.notna().sum() == len(ch05.GRAYBOX) + 1
    assert (gray[gray.attack == "clean"].p_drop == 1).all() and gray.p_drop.between(0, 1).all()
    none = gray[(gray.defence == "undefended") & (gray.attacker == "gray-box")].set_index("attack")
    assert none.loc["pgd", "acc"] < 0.2                    # PGD breaks the bare ResNet-20
    for stem in CHAPTER.figures:
        assert (out / f"{stem}.png").stat().st_size > 10_000
    for name in CHAPTER.tables:
        assert (out / f"{name}.md").read_text().startswith(":::{table}")
    assert '"profile": "smoke"' in (out / "ch05_run.json").read_text()


def synthetic_lambda_table() -> pd.DataFrame:
    return pd.DataFrame({"lambda": [0.0, 0.5, 0.9, 1.0], "iou": [0.14, 0.2, 0.6, 1.0],
                         "gradient_on_lattice": [0.25, 0.3, 0.7, 1.0],
                         "n": [500] * 4, "acc": [0.92, 0.90, 0.60, 0.30],
                         "acc_lo": [0.89, 0.87, 0.56, 0.26], "acc_hi": [0.94, 0.92, 0.64, 0.34],
                         "acc_bicubic": [0.92, 0.70, 0.61, 0.50],
                         "acc_bilinear": [0.92, 0.72, 0.55, 0.45],
                         "psnr": [30.0, 28.0, 27.0, 25.0]})


def test_lambda_table_gives_the_baselines_with_intervals():
    from advlab.metrics import wilson_ci
    t = ch05.lambda_table(synthetic_lambda_table())
    assert list(t.columns) == ["λ", "IoU of the top 25% with the lattice", "PRM top-1",
                               "bicubic top-1", "bilinear top-1", "PSNR of AE(x) against x (dB)"]
    acc, lo, hi = t["bicubic top-1"][1]
    assert acc == 0.70 and (lo, hi) == pytest.approx(tuple(float(v) for v in wilson_ci(350, 500)))


def test_baseline_claim_needs_separated_intervals():
    claim, measured, shown = ch05.baseline_claim(synthetic_lambda_table())
    assert "λ 0:" not in measured and "λ 0.5: PRM 90.0%, bilinear 72.0%" in measured
    # 0.5: far above; 0.9: 60% vs bicubic 61% overlaps; 1: 30% vs 50%, below
    assert shown == "better (Wilson intervals separate) at λ 0.5; worse at λ 1; intervals overlap at the other λ"
    assert ch05.baseline_claim(synthetic_lambda_table().drop(columns=["acc_bicubic", "acc_bilinear"])) is None


def test_baseline_claim_uses_the_paired_test_where_it_has_one():
    t = synthetic_lambda_table().assign(p_bicubic=[1, 0.001, 0.2, 0.001],
                                        p_bilinear=[1, 0.001, 0.2, 0.001])
    claim, measured, shown = ch05.baseline_claim(t)
    assert "λ 0.5: PRM 90.0%, bilinear 72.0% (paired p = 0.001)" in measured
    assert shown == ("better (paired exact test, p < 0.05) at λ 0.5; worse at λ 1; "
                     "no significant difference at the other λ")


def test_rebuild_is_a_prm_without_parameters():
    clf = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    x = torch.rand(2, 3, 8, 8)
    base = ch05.rebuild_prm(clf, "bilinear", 0.9)
    assert sum(p.numel() for p in base.autoencoder.parameters()) == 0
    from advlab.pixel_maps import lattice_upsample
    assert torch.allclose(base.mix(x), 0.1 * x + 0.9 * lattice_upsample(x, "bilinear"))


def test_exercises_accept_the_solutions_and_reject_wrong_answers(capsys):
    from advlab import exercises
    from advlab.pixel_maps import gradient_map
    exercises.check("ch05-ex1", lambda m, x, y: gradient_map(m, x, y, progress=False))
    with pytest.raises(AssertionError, match="3x too large"):
        exercises.check("ch05-ex1", lambda m, x, y: 3 * gradient_map(m, x, y, progress=False))
    exercises.check("ch05-ex2", (1.0, 1 / 7))
    with pytest.raises(AssertionError, match="union"):
        exercises.check("ch05-ex2", (1.0, 1 / 16))

    def defence_rate(clean, attacked, defended):
        damage = clean - attacked
        return torch.where(damage > 0, 1 - (clean - defended) / damage, torch.nan)
    table = ch05.add_defence_rate(synthetic_defences().assign(
        acc_plain=lambda t: t.acc_plain.where(t.attack == "clean", t.acc_plain / 2)))
    assert table.defence_rate.notna().any()
    exercises.check("ch05-ex3", defence_rate, table)
    assert capsys.readouterr().out.count("correct") == 3
    with pytest.raises(AssertionError, match="NaN"):
        exercises.check("ch05-ex3", lambda c, a, d: 1 - (c - d) / (c - a))
    with pytest.raises(AssertionError, match="1 minus"):
        exercises.check("ch05-ex3", lambda c, a, d: torch.where(c > a, (c - d) / (c - a), torch.nan))
    with pytest.raises(AssertionError, match="No answer"):
        exercises.check("ch05-ex3", ...)


def test_p_values_for_readers():
    assert [ch05.p_value(v) for v in (1.0, 0.5, 0.0123, 0.001, 1.5e-5)] == ["1", "0.5", "0.012", "0.001", "< 0.001"]
    assert ch05.p_value(0.25, "= ") == "= 0.25" and ch05.p_value(1e-9, "= ") == "< 0.001"
