import pandas as pd
import pytest
import torch

from advlab.experiments import ch02


def test_source_tables_are_transcribed_consistently():
    t2 = ch02.SOURCE_TABLE2
    total = t2[["FN", "FP", "TN", "TP"]].sum(axis=1)
    # printed to three decimals; the paper truncates 0.98395 (JSMA) to 0.983
    assert ((t2.TN + t2.TP) / total - t2.detection_acc).abs().max() < 0.001
    t3 = ch02.SOURCE_TABLE3
    # Table 3's accuracy is the share of correctly classified images among those kept
    assert ((t3.clean_correct + t3.adv_correct) - t3.classification_acc).abs().max() < 0.0011
    assert set(ch02.SOURCE_TABLE1.attack) == {ch02.source_attack(a) for a in ch02.ATTACKS}


def test_choose_strengths_picks_the_closest_and_then_the_weakest():
    cal = pd.DataFrame(dict(attack=["a"] * 4 + ["b"] * 3,
                            strength=[0.1, 0.2, 0.3, 0.4, 0.1, 0.2, 0.3],
                            mixed_acc=[0.9, 0.62, 0.57, 0.5, 0.7, 0.5, 0.5],
                            target=[0.59] * 4 + [0.5] * 3))
    assert ch02.choose_strengths(cal) == {"a": 0.3, "b": 0.2}


def test_settings_validate():
    from advlab.chapter import SettingsError
    settings = ch02.CHAPTER.settings
    assert settings("full").n_half == ch02.HALF
    assert settings("smoke", mc_passes=7).mc_passes == 7
    assert settings("full").strengths("bim_a") == settings("full").bim_eps
    with pytest.raises(SettingsError, match="unknown setting"):
        settings("smoke", passes=7)
    with pytest.raises(SettingsError, match="mc_passes must be >= 2"):
        settings("smoke", mc_passes=1)
    with pytest.raises(SettingsError, match="no model to choose"):
        settings("smoke", model="resnet50")


def test_mixed_set_and_evaluation():
    y = torch.tensor([1, 2])
    clean = dict(pred_plain=y, pred=y, uncertainty=torch.tensor([0.01, 0.02]),
                 agreement=torch.tensor([5, 5]))
    adv = dict(pred_plain=torch.tensor([3, 2]), pred=torch.tensor([3, 2]),
               uncertainty=torch.tensor([0.5, 0.03]), agreement=torch.tensor([1, 5]))
    s = ch02.mixed(clean, adv, y)
    assert s.is_adv.tolist() == [False, False, True, True]
    ev = ch02.evaluate(s, ch02.md.Thresholds(0.015, 0.1, 5))
    # clean 1: clean (below L); clean 2 and adv 2: middle, all crops agree: clean; adv 1: above H
    assert (ev["TP"], ev["FN"], ev["TN"], ev["FP"]) == (1, 1, 2, 0)
    assert ev["classification_acc"] == 1.0 and ev["kept"] == 3
    assert ev["crops_used"] == pytest.approx(0.5)


def test_halves_are_disjoint_and_correctly_classified(mirror):
    from advlab.models.mnist import LeNet
    torch.manual_seed(0)
    model = LeNet().eval()
    h = ch02.split_halves(model, 300)
    assert h.val_index.max() < ch02.HALF <= h.test_index.min()
    assert (h.val_index < 300).all() and (h.test_index < ch02.HALF + 300).all()
    assert torch.equal(ch02._predict(model, h.val.x), h.val.y)
    with pytest.raises(ValueError):
        ch02.split_halves(model, 6000)


def test_cli_smoke_run_writes_tables_and_figures(mirror, tmp_path):
    """In the session's cache: the notebook's smoke run reuses what this one computes."""
    from advlab.cli import main
    assert main(["run", "ch02", "--profile", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    out = tmp_path / "ch02"
    t1 = pd.read_csv(out / "ch02_table1.csv")
    assert list(t1.attack) == list(ch02.ATTACKS)
    assert ((1 + t1.adv_acc) / 2 - t1.mixed_acc).abs().max() < 1e-6  # clean half all correct
    t2 = pd.read_csv(out / "ch02_table2.csv")
    ours = t2[t2.source.str.startswith("advlab")]
    assert len(ours) == 2 * len(ch02.ATTACKS)
    assert (ours[["FN", "FP", "TN", "TP"]].sum(axis=1) == t1.n_mixed.iloc[0]).all()
    th = pd.read_csv(out / "ch02_thresholds.csv")
    assert (th.low <= th.high).all() and th["count"].between(1, 5).all()
    auroc = pd.read_csv(out / "ch02_auroc.csv")
    assert auroc[["uncertainty", "crops", "hybrid"]].stack().between(0, 1).all()
    adaptive = pd.read_csv(out / "ch02_adaptive.csv")
    assert adaptive.attack.str.startswith("Adaptive PGD").sum() == 2 and adaptive.detected.between(0, 1).all()
    for stem in ("ch02_uncertainty", "ch02_roc", "ch02_calibration"):
        assert (out / f"{stem}.png").stat().st_size > 10_000
    assert '"profile": "smoke"' in (out / "ch02_run.json").read_text()


def test_detector_score_pieces_follow_the_detector_and_the_images():
    """Score pieces are keyed by the detector itself (weights, passes, crop size) and the
    images: another crop size or other digits compute anew; the same read back."""
    from advlab.chapter import identity
    from advlab.models.mnist import LeNet
    torch.manual_seed(0)
    s = ch02.CHAPTER.settings("smoke")
    model = LeNet().eval()
    base = identity(s.detector(model))
    assert identity(s.detector(model)) == base
    assert identity(s.replace(crop_size=20).detector(model)) != base
    assert identity(s.replace(mc_passes=7).detector(model)) != base
    assert identity(s.detector(LeNet().eval())) != base          # other weights


def test_tables_for_readers_put_the_headline_first():
    from advlab.report import make_table
    ours = ch02.SOURCE_TABLE2.assign(source=ch02.SOURCE_TABLE2.source.replace(
        {"source study": "advlab, fit on validation", "paper": "advlab, fit on test (as the source study)"}))
    t2 = make_table(ch02.table2_view(ch02._beside_source(ours, ch02.SOURCE_TABLE2)), "tab-ch02-table2", "c")
    assert list(t2.cells.columns[:3]) == ["Attack", "Source", "Detection accuracy"]
    assert t2.cells.iloc[0].tolist() == ["FGSM", "This book, validation fit", "92.9%",
                                         "4,445", "515", "4,766", "194"]
    assert t2.cells.iloc[2, 0] == "" and t2.cells.iloc[4, 0] == "BIM"   # grouped by attack
    adaptive = pd.DataFrame([{"attack": "Adaptive PGD + EOT", "eps": 0.25, "n": 1000, "undefended_acc": 0.01,
                              "median_uncertainty": 0.0075, "detected": 0.176, "evaded_and_wrong": 0.824,
                              "mixed_detection_acc": 0.566, "classification_acc": 0.537}])
    t = make_table(ch02.adaptive_view(adaptive), "tab-ch02-adaptive", "c", transpose=True)
    assert t.cells.iloc[0].tolist() == ["Accuracy on accepted images (mixed set)", "53.7%"]
    assert t.cells.iloc[-1].tolist() == ["Median uncertainty of attacked digits", "0.0075"]
