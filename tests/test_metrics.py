import numpy as np
import pandas as pd
import pytest

from advlab.metrics import summarise_draws, wilson_ci


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
