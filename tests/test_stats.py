"""Student's t quantile and Welch's interval against scipy's, which the project does not need."""

import pytest

from qpa.studies.stats import mean_std, t_quantile, welch_interval

stats = pytest.importorskip("scipy.stats")  # installed with pennylane (requirements-dev)


@pytest.mark.parametrize("df", [1, 1.7, 2, 4, 9.3, 40])
def test_t_quantile_matches_scipy(df):
    assert t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-8)
    assert t_quantile(0.9, df) == pytest.approx(stats.t.ppf(0.9, df), rel=1e-8)


def test_welch_interval_matches_scipy():
    a, b = [3.61, 3.66, 3.70], [3.64, 3.65, 3.69, 3.71]
    diff, lo, hi = welch_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(sum(a) / 3 - sum(b) / 4)
    assert (lo, hi) == pytest.approx((ci.low, ci.high), rel=1e-7)
    assert welch_interval([1.0], b) is None and mean_std([2.0]) == (2.0, 0.0)
    with pytest.raises(ValueError, match="`p` = 0.2"):
        t_quantile(0.2, 3)
