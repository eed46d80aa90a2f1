import pandas as pd
import pytest
import torch

from advlab.defences.blur_vote import noise_seeds
from advlab.experiments import ch01


def test_score_on_hand_made_predictions():
    y = torch.tensor([0, 1, 2, 3])
    ns = torch.tensor([0, 1, 9, 7])
    ss = torch.tensor([0, 5, 2, 8])
    ds = torch.tensor([4, 1, 2, 9])      # votes: 0 ok, 1 ok, 2 ok, reject
    s = ch01.score(y, ns, ss, ds)
    assert s == {"acc_ns": 0.5, "acc_ss": 0.5, "acc_ds": 0.5, "acc_maj": 0.75, "reject": 0.25}


def test_settings_and_profiles():
    from advlab.chapter import SettingsError
    settings = ch01.CHAPTER.settings
    assert settings("smoke").draws >= 2          # spread needs at least two draws
    assert settings("full").n_images is None     # all 975 colour images
    assert settings("smoke", draws=5).draws == 5
    assert settings("smoke", model="resnet50").model == "resnet50"
    with pytest.raises(SettingsError, match="unknown setting"):
        settings("smoke", drawz=5)
    with pytest.raises(SettingsError, match="unknown profile"):
        settings("medium")
    with pytest.raises(SettingsError, match="model must be one of"):
        settings("smoke", model="vgg11")
    with pytest.raises(SettingsError, match="odd window"):
        settings("smoke", kernels=(4,))


def test_source_comparison_layout():
    # a table unlike the source study's, with a 7x7 kernel to leave out and rows out of sigma order
    rng = torch.Generator().manual_seed(0)
    table = pd.DataFrame([{"kernel": k, "noise_sigma": s, **{m: float(torch.rand(1, generator=rng))
                                                       for m in ch01.METRICS}}
                          for k in ("7x7", "5x5") for s in reversed(ch01.NOISE_SIGMAS)])
    both = ch01.source_comparison(table)
    assert list(both.columns) == [(m, w) for m in ch01.METRICS for w in ("advlab", ch01.SOURCE_LABEL)]
    assert sorted(both.index) == list(ch01.NOISE_SIGMAS)
    ours = table[table.kernel == "5x5"].set_index("noise_sigma")
    theirs = ch01.SOURCE_TABLE.set_index("noise_sigma")
    for sigma in ch01.NOISE_SIGMAS:
        for m in ch01.METRICS:
            assert both.loc[sigma, (m, "advlab")] == ours.loc[sigma, m]
            assert both.loc[sigma, (m, ch01.SOURCE_LABEL)] == theirs.loc[sigma, m]


def test_kernel_check_rejects_the_source_study_claim():
    k = ch01.kernel_check().set_index("candidate")
    assert k.max_abs_kernel_error.iloc[0] > 10 * k.max_abs_kernel_error.iloc[1]
    assert k.index[1].startswith("one 9×9")
    x = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    px = ch01.kernel_check(x=x).max_pixel_error_255
    assert px.iloc[1] < 3.0 and px.iloc[0] > 5 * px.iloc[1]   # ~2 grey levels vs. ~25


def test_noise_seeds_do_not_depend_on_the_subset():
    from advlab.data import ImageSet
    s = ImageSet(torch.zeros(3, 3, 2, 2), torch.tensor([4, 8, 15]), ("c",) * 16, "t", ["a", "b", "c"])
    assert noise_seeds(s.y, 1, 0)[1] == noise_seeds(s.subset([1]).y, 1, 0)[0]
    assert len(set(noise_seeds(s.y, 0, 0).tolist() + noise_seeds(s.y, 1, 0).tolist())) == 6


def test_cli_smoke_run_writes_tables_and_figures(mirror, tmp_path):
    """In the session's cache: the notebook's smoke run reuses what this one computes."""
    from advlab.cli import main
    assert main(["run", "ch01", "--profile", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    out = tmp_path / "ch01"
    table = pd.read_csv(out / "ch01_table.csv")
    assert len(table) == 8 and set(table.kernel) == {"5x5", "7x7"}
    assert (table.acc_ns_lo <= table.acc_ns).all() and (table.acc_ns <= table.acc_ns_hi).all()
    attacks = pd.read_csv(out / "ch01_attacks.csv")
    assert set(attacks.attack) == {"none", "FGSM", "PGD"}
    assert (out / "ch01_noise_curves.png").stat().st_size > 10_000
    assert '"profile": "smoke"' in (out / "ch01_run.json").read_text()


def test_pieces_depend_on_what_they_compute_from(tmp_path):
    """The noise pieces of another draw count are read back; a change of images, model or
    kernels computes them again (the keys come from the objects: advlab.chapter.identity)."""
    from advlab.chapter import RunContext
    from advlab.data import ImageSet
    g = torch.Generator().manual_seed(0)
    images = ImageSet(torch.rand(4, 3, 16, 16, generator=g), torch.arange(4), tuple("abcd"), "t",
                      [f"n{i}.JPEG" for i in range(4)])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4)).eval()
    ctx = RunContext.create("ch01-test", "smoke", "cpu", progress=False, cache_root=tmp_path)
    s = ch01.CHAPTER.settings("smoke", kernels=(5,), batch_size=4)
    with ctx.stage("a"):
        ch01.run_noise(ctx, s, model, images)
    with ctx.stage("b"):
        ch01.run_noise(ctx, s.replace(draws=3), model, images)        # one more draw per sigma
    assert ctx.stages["a"].computed == 1 + 3 * s.draws
    assert (ctx.stages["b"].read, ctx.stages["b"].computed) == (1 + 3 * s.draws, 3)
    with ctx.stage("c"):
        ch01.run_noise(ctx, s, model, images.subset([0, 1, 2]))
        ch01.run_noise(ctx, s.replace(kernels=(7,)), model, images)
    assert ctx.stages["c"].read == 0


def test_tables_for_readers():
    from advlab.metrics import summarise_draws
    from advlab.report import make_table
    per_draw = pd.concat([ch01.SOURCE_TABLE.assign(kernel=k, draw=0) for k in ("5x5", "7x7")])
    table = summarise_draws(per_draw, ["kernel", "noise_sigma"], ch01.METRICS, 975)
    md = make_table(ch01.noise_table(table, "5x5"), "tab-ch01-noise-5x5", "c")._repr_markdown_()
    assert "65.2%<br>[62.2,\u00a068.2]" in md   # too wide for the page: each interval under its value
    md = md.replace("\u00a0", " ").replace("<br>", " ")
    assert "| Noise σ | No smoothing | Single blur | Double blur | 2-of-3 vote | Reject rate |" in md
    assert any(line.startswith("| 0.125 | 65.2% [62.2, 68.2] | 71.5% [68.6, 74.2] |") for line in md.splitlines())
    comparison = make_table(ch01.comparison_table(ch01.source_comparison(table), "efficientnet_lite0"),
                            "tab-ch01-source", "c")
    assert list(comparison.cells.columns) == ["Rate", "Source", "σ = 0", "σ = 0.125", "σ = 0.25", "σ = 0.375"]
    assert comparison.cells.iloc[1].tolist() == ["", "Source study",
                                                 "88.2%", "65.2%", "34.2%", "9.0%"]
    assert "draws" in ch01.draw_spread(table)
    attacks = pd.DataFrame([{"attack": "none", "attacker": "-", "eps_255": 0.0, **dict.fromkeys(ch01.METRICS, 0.5)},
                            {"attack": "PGD", "attacker": "ignores defence", "eps_255": 2.0,
                             **dict.fromkeys(ch01.METRICS, 0.25)}])
    t = make_table(ch01.attack_table(attacks), "tab-ch01-attacks", "c")
    assert t.cells.iloc[1].tolist()[:4] == ["PGD", "ignores the defence", "2", "25.0%"]
    one = make_table(ch01.attack_table(attacks, "ignores defence"), "tab-ch01-attacks-plain", "c")
    assert list(one.cells.columns[:3]) == ["Attack", "ε (× 1/255)", "Undefended"]
    assert one.cells.iloc[1].tolist()[:3] == ["PGD", "2", "25.0%"] and len(one.cells) == 2
    assert len(ch01.attack_table(attacks, "adaptive (through blur+vote)")) == 1   # the clean row
    k = make_table(ch01.kernel_table(ch01.kernel_check()), "tab-ch01-kernels", "c")
    assert k.cells.shape == (2, 3) and k.cells.iloc[0, 2].endswith("%")
