"""Upper tail of the χ² distribution for integer degrees of freedom, in closed form.

Likelihood-ratio tests only need integer df, where Q(x; k) has elementary
forms (even k: a Poisson sum; odd k: erfc plus a sum), so ``compare`` does not
pay scipy.special's import time.
"""

from __future__ import annotations

import math


def chi2_sf(x: float, df: int) -> float:
    """P(χ²_df ≥ x); df = 0 is the point mass at 0."""
    if df < 0 or int(df) != df:
        raise ValueError("df must be a non-negative integer")
    if math.isnan(x):
        return math.nan
    if x <= 0:
        return 1.0
    if df == 0:
        return 0.0
    half = x / 2.0
    if df % 2 == 0:
        # Q = e^{-x/2} Σ_{j<k/2} (x/2)^j / j!, summed in logs to avoid overflow
        terms = [j * math.log(half) - math.lgamma(j + 1) for j in range(df // 2)]
        top = max(terms)
        return min(1.0, math.exp(-half + top) * sum(math.exp(t - top) for t in terms))
    # odd: Q = erfc(√(x/2)) + e^{-x/2} Σ_{j=1}^{(k-1)/2} (x/2)^{j-1/2} / Γ(j+1/2)
    base = math.erfc(math.sqrt(half))
    if df == 1:
        return base
    terms = [(j - 0.5) * math.log(half) - math.lgamma(j + 0.5) for j in range(1, (df - 1) // 2 + 1)]
    top = max(terms)
    return min(1.0, base + math.exp(-half + top) * sum(math.exp(t - top) for t in terms))
