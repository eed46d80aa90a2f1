import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import beta

from advlab.metrics import (
    clopper_pearson_ci,
    clopper_pearson_lower,
    detection_counts,
    labelled_clean_breakdown,
    roc_hull,
    summarise_draws,
    wilson_ci,
)


def test_wilson_interval_known_values():
    lo, hi = wilson_ci(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    lo, hi = wilson_ci(0, 20)            # Wilson stays inside [0, 1] and is not degenerate at 0
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.1611, abs=1e-4)
    with pytest.raises(ValueError):
        wilson_ci(1, 0)


def test_summarise_draws_mean_std_interval():
    df = pd.DataFrame({"g": ["a", "a", "a", "b"], "m": [0.5, 0.6, 0.7, 0.2]})
    s = summarise_draws(df, ["g"], ["m"], n=100).set_index("g")
    assert s.loc["a", "m"] == pytest.approx(0.6) and s.loc["a", "m_std"] == pytest.approx(0.1)
    assert s.loc["a", "draws"] == 3 and s.loc["b", "m_std"] == 0.0
    lo, hi = wilson_ci(60, 100)
    assert s.loc["a", "m_lo"] == pytest.approx(float(lo)) and s.loc["a", "m_hi"] == pytest.approx(float(hi))
    assert np.all(s.m_lo <= s.m) and np.all(s.m <= s.m_hi)


@pytest.mark.parametrize("n", [1, 10, 100, 1000])
@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_clopper_pearson_closed_forms(n, alpha):
    # all n successes: P(X = n | p) = p^n = alpha at the one-sided lower bound
    assert clopper_pearson_lower(n, n, alpha) == pytest.approx(alpha ** (1 / n), rel=1e-9)
    assert clopper_pearson_lower(0, n, alpha) == 0.0
    lo, hi = clopper_pearson_ci([0, n], n, alpha)
    assert lo[0] == 0.0 and hi[0] == pytest.approx(1 - (alpha / 2) ** (1 / n), rel=1e-9)
    assert hi[1] == 1.0 and lo[1] == pytest.approx((alpha / 2) ** (1 / n), rel=1e-9)


def test_clopper_pearson_matches_beta_quantiles():
    n, k = 500, np.array([1, 37, 250, 499])
    alpha = 0.001
    want = beta.ppf(alpha, k, n - k + 1)             # one-sided: the alpha quantile
    assert np.allclose(clopper_pearson_lower(k, n, alpha), want, rtol=1e-9, atol=0)
    lo, hi = clopper_pearson_ci(k, n, 0.05)
    assert np.allclose(lo, beta.ppf(0.025, k, n - k + 1), rtol=1e-9, atol=0)
    assert np.allclose(hi, beta.ppf(0.975, k + 1, n - k), rtol=1e-9, atol=0)
    # the one-sided bound at alpha is the two-sided interval's lower end at 2 alpha, so above
    # the two-sided one of the same alpha
    assert clopper_pearson_lower(k, n, 0.025) == pytest.approx(lo, rel=1e-9)
    assert (clopper_pearson_lower(k, n, 0.05) > lo).all()
    for bad in [(-1, 10), (11, 10), (1, 0)]:
        with pytest.raises(ValueError):
            clopper_pearson_lower(*bad)


def test_detection_counts_and_table3_breakdown():
    flagged = torch.tensor([True, False, False, True, False])
    is_adv = torch.tensor([True, True, False, False, False])
    assert detection_counts(flagged, is_adv) == dict(FN=1, FP=1, TN=2, TP=1, detection_acc=0.6)
    pred, y = torch.tensor([0, 1, 2, 3, 9]), torch.tensor([0, 0, 2, 3, 4])
    b = labelled_clean_breakdown(flagged, is_adv, pred, y)
    # kept: images 1 (adv, wrong), 2 (clean, right), 4 (clean, wrong)
    assert b["kept"] == 3
    assert b["clean_correct"] == pytest.approx(1 / 3) and b["clean_incorrect"] == pytest.approx(1 / 3)
    assert b["adv_correct"] == 0 and b["adv_incorrect"] == pytest.approx(1 / 3)
    assert b["classification_acc"] == pytest.approx(1 / 3)


def test_roc_hull_of_hand_made_points():
    # (0.2, 0.4) and (0.6, 0.7) lie under the hull; (0.3, 0.7) on a hull segment
    pts = np.array([[0.5, 0.9], [0.2, 0.4], [0.1, 0.5], [0.6, 0.7], [0.3, 0.7]])
    hull = roc_hull(pts)
    assert hull.tolist() == [[0.0, 0.0], [0.1, 0.5], [0.5, 0.9], [1.0, 1.0]]
    area = 0.1 * 0.5 / 2 + 0.4 * (0.5 + 0.9) / 2 + 0.5 * (0.9 + 1.0) / 2
    assert np.trapezoid(hull[:, 1], hull[:, 0]) == pytest.approx(area)
    assert roc_hull(np.empty((0, 2))).tolist() == [[0.0, 0.0], [1.0, 1.0]]  # chance only


def test_exact_mcnemar_known_value_and_direction():
    from advlab.metrics import mcnemar
    # 12 discordant images, 10 right for A only, 2 for B only, 30 right for both, 8 for neither:
    # two-sided exact p = 2 * P(Binomial(12, 1/2) <= 2) = 2 * (1 + 12 + 66) / 4096
    a = torch.tensor([1] * 10 + [0] * 2 + [1] * 30 + [0] * 8)
    b = torch.tensor([0] * 10 + [1] * 2 + [1] * 30 + [0] * 8)
    t = mcnemar(a, b)
    assert (t.n, t.a_only, t.b_only) == (50, 10, 2)
    assert t.p == pytest.approx(158 / 4096, rel=1e-12)
    assert t.winner() == 1 and t.winner(alpha=0.01) == 0 and t.difference == pytest.approx(0.16)
    assert mcnemar(b, a).winner() == -1 and mcnemar(b, a).p == pytest.approx(t.p)
    same = mcnemar(a, a)
    assert same.p == 1.0 and same.winner() == 0 and mcnemar([], []).n == 0
    with pytest.raises(ValueError, match="same images"):
        mcnemar(a, b[:3])
