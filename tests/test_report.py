import math
import re

import pandas as pd
import pytest

from advlab import report
from advlab.config import resolve_progress


@pytest.mark.parametrize("value, percent, text", [
    (0.525, True, "52.5%"),
    ((0.4911, 0.5589), True, "[49.1, 55.9]"),
    ((0.525, 0.4911, 0.5589), True, "52.5% [49.1, 55.9]"),
    (4865, False, "4,865"),
    (4865.0, False, "4,865"),           # counts that went through a float column
    (0.010384, False, "0.0104"),
    (1823.4, False, "1,823"),           # never 1.82e+03
    (0.0000123456, False, "0.0000123"),
    ("resnet20", False, "ResNet-20"),   # a code name the book knows
    (-math.inf, False, "−∞"),
    (float("nan"), False, "–"),
    (None, True, "–"),
    (True, False, "yes"),
    ("FGSM", False, "FGSM"),
])
def test_cells_are_formatted_by_what_they_hold(value, percent, text):
    assert report.format_cell(value, percent) == text


@pytest.fixture
def detection():
    df = pd.DataFrame({"attack": ["fgsm", "fgsm", "jsma"], "source": ["ours", "paper", "ours"],
                       "detection_acc": [0.9348, 0.961, 0.9728], "TP": [4723.0, 4725.0, 4809.0]})
    return report.for_readers(df, {"attack": "Attack", "source": "Source",
                                   "detection_acc": "Detection accuracy", "TP": "Attacks caught"},
                              percent=["detection_acc"], labels=2)


def test_markdown_is_a_numbered_myst_table(detection):
    md = report.make_table(detection, "tab-ch02-detection", "Detection on the mixed\ntest set.",
                           note="run-info: x")._repr_markdown_()
    lines = md.splitlines()
    assert lines[0] == ":::{table} Detection on the mixed test set."
    assert lines[1] == ":name: tab-ch02-detection"
    assert "| Attack | Source | Detection accuracy | Attacks caught |" in lines
    assert "|:--|:--|--:|--:|" in lines
    assert "| FGSM | ours | 93.5% | 4,723 |" in lines       # a code name the book knows, for readers
    assert "|  | paper | 96.1% | 4,725 |" in lines          # the repeated group label is blanked
    assert lines[lines.index(":::", 2) + 2] == "run-info: x"
    assert "4725.0" not in md and "detection_acc" not in md


def test_html_has_caption_no_index_and_the_same_cells(detection):
    html = report.make_table(detection, "tab-ch02-detection", "Detection.", note="n")._repr_html_()
    assert re.search(r"<caption>Detection.</caption>", html)
    assert "row_heading" not in html                           # no 0..n index
    for text in ("93.5%", "97.3%", "4,809", "Attacks caught"):
        assert text in html
    assert html.rstrip().endswith("n</p>")


def test_headers_must_be_for_readers_and_names_follow_the_convention():
    df = pd.DataFrame({"acc_ns": [0.5]})
    with pytest.raises(ValueError, match="code names"):
        report.make_table(df, "tab-ch01-x", "c")
    with pytest.raises(ValueError, match="tab-"):
        report.make_table(df.rename(columns={"acc_ns": "Accuracy"}), "Table 1", "c")
    with pytest.raises(ValueError, match="caption"):
        report.make_table(df.rename(columns={"acc_ns": "Accuracy"}), "tab-ch01-x", " ")
    with pytest.raises(KeyError, match="percent"):
        report.make_table(df.rename(columns={"acc_ns": "Accuracy"}), "tab-ch01-x", "c",
                          percent=["acc_ns"])


def test_transpose_turns_rows_into_columns():
    df = pd.DataFrame({"Attack": ["BIM", "PGD"], "Detected": [0.974, 0.135], "Images": [1000, 1000]})
    t = report.make_table(df, "tab-ch02-adaptive", "c", percent=["Detected"], transpose=True)
    assert list(t.cells.columns) == ["Attack", "BIM", "PGD"]   # the corner keeps its header
    assert t.cells.iloc[0].tolist() == ["Detected", "97.4%", "13.5%"]
    assert t.cells.iloc[1].tolist() == ["Images", "1,000", "1,000"]


def test_show_table_displays_one_output_with_both_representations(detection, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    report.show_table(detection, "tab-ch02-detection", "Detection.")
    assert len(shown) == 1
    from IPython.core.formatters import DisplayFormatter
    data, _ = DisplayFormatter().format(shown[0])
    assert {"text/html", "text/markdown", "text/plain"} <= set(data)


def test_progress_follows_tqdm_disable_unless_asked(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert resolve_progress() is True
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert resolve_progress() is False
    assert resolve_progress(True) is True
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert resolve_progress() is True


def test_prose_columns_are_left_aligned_and_values_never_wrap():
    df = pd.DataFrame({"Claim": ["a claim", "another"], "Verdict": ["holds", "partly"],
                       "Evidence": ["FGSM: 1/3 | I-FGSM: 2/4", "none"],
                       "Images": [(0.1, 0.05, 0.18), (0.2, 0.1, 0.3)], "Count": [10, 12]})
    t = report.make_table(df, "tab-ch03-claims", "Claims.", percent=["Images"])
    md = t._repr_markdown_()
    assert "|:--|:--|:--|--:|--:|" in md
    assert "|" not in md.split("FGSM: 1/3")[1].split(" |")[0] and "FGSM: 1/3; I-FGSM: 2/4" in md
    assert "10.0%\u00a0[5.0,\u00a018.0]" in md
    html = t._repr_html_()
    assert "white-space: nowrap" in html
