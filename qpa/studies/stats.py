"""Small statistics for comparisons over seeds: mean ± std and Welch's t-interval of a difference.

Pure Python (no scipy): Student's t quantile is found by bisection on its distribution function,
integrated with Simpson's rule, which is exact to about 1e-9 for the degrees of freedom that a
few seeds give.

>>> round(t_quantile(0.975, 2), 3), round(t_quantile(0.975, 30), 3)
(4.303, 2.042)
>>> welch_interval([3.0, 3.2, 3.1], [3.0, 3.2, 3.1])
(0.0, -0.2266..., 0.2266...)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _t_cdf(x: float, df: float, steps: int = 2000) -> float:
    """P(T ≤ x) for x ≥ 0: 1/2 plus Simpson's rule over the density on [0, x]."""
    c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def pdf(t: float) -> float:
        return math.exp(c - (df + 1) / 2 * math.log1p(t * t / df))

    h = x / steps
    inner = sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return 0.5 + h / 3 * (pdf(0) + inner + pdf(x))


def t_quantile(p: float, df: float) -> float:
    """The `p` quantile (0.5 ≤ p < 1) of Student's t with `df` > 0 degrees of freedom."""
    if not 0.5 <= p < 1 or df <= 0:
        raise ValueError(f"`p` = {p} must be in [0.5, 1) and `df` = {df} > 0.")
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, df) < p:
        lo, hi = hi, 2 * hi
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def welch_interval(
    a: Sequence[float], b: Sequence[float], level: float = 0.95
) -> tuple[float, float, float] | None:
    """mean(a) − mean(b) and its Welch t-interval (unequal variances); None with < 2 of either."""
    if len(a) < 2 or len(b) < 2:
        return None
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    va, vb = sa * sa / len(a), sb * sb / len(b)
    diff, se = ma - mb, math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    half = t_quantile(0.5 + level / 2, df) * se
    return diff, diff - half, diff + half
