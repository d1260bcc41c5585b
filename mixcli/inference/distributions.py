"""The few distribution functions inference needs, without scipy.special's import time (~0.7 s).

* ``t_sf(t, df)``: upper tail of Student's t for real df > 0, through the
  regularised incomplete beta function, evaluated by its continued fraction
  (modified Lentz), accurate to ~1e-14 relative, also far in the tail
  (p ~ 1e-150 for the classroom intercepts);
* ``norm_ppf`` / ``norm_cdf``: the normal quantile and distribution function
  from the standard library (``statistics.NormalDist`` implements Wichura's
  AS 241, as R's ``qnorm``);
* ``chi2_sf(x, df)``: the upper tail of χ² for integer df, in closed form
  (likelihood-ratio tests only need integer df: even df give a Poisson sum,
  odd df erfc plus a sum).
"""

from __future__ import annotations

import math
from statistics import NormalDist

_STD = NormalDist()
_TINY = 1e-300
_EPS = 1e-16


def norm_ppf(p: float) -> float:
    """Standard normal quantile (R's ``qnorm``)."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return _STD.inv_cdf(p)


def norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _betacf(a: float, b: float, x: float, max_iter: int) -> float:
    """The continued fraction of I_x(a, b) (without its prefactor), by the modified Lentz method."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    return h  # not converged: only for astronomically large a, b (df > ~1e9 is sent to the normal)


def _log_beta(a: float, b: float) -> float:
    if b == 0.5 and a > 50:
        # log Γ(a + ½) − log Γ(a) from Stirling's series: the difference of two lgamma values
        # would lose ~|lgamma(a)|·1e-16 (1e-9 relative for the t tail at df ~ 1e7)
        def s(z):
            z2 = z * z
            return (1 / 12 - (1 / 360 - (1 / 1260 - 1 / (1680 * z2)) / z2) / z2) / z

        diff = 0.5 * math.log(a) + (a * math.log1p(0.5 / a) - 0.5) + s(a + 0.5) - s(a)
        return math.lgamma(0.5) - diff
    if a == 0.5 and b > 50:
        return _log_beta(b, a)
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def betainc(a: float, b: float, x: float, log_x: float | None = None, log_1mx: float | None = None) -> float:
    """Regularised incomplete beta I_x(a, b).

    ``log_x`` and ``log_1mx`` may be given when x or 1 − x is better known in
    logarithms (the t tail passes both, computed without cancellation).
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lx = math.log(x) if log_x is None else log_x
    l1x = math.log1p(-x) if log_1mx is None else log_1mx
    iters = 200 + int(20 * math.sqrt(max(a, b)))
    if x < (a + 1.0) / (a + b + 2.0):
        front = math.exp(a * lx + b * l1x - _log_beta(a, b)) / a
        return front * _betacf(a, b, x, iters)
    front = math.exp(b * l1x + a * lx - _log_beta(a, b)) / b
    return 1.0 - front * _betacf(b, a, 1.0 - x, iters)


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` (real, > 0) degrees of freedom."""
    if math.isnan(t) or math.isnan(df) or df <= 0:
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    if df > 1e9:
        return norm_cdf(-t)
    if t == 0:
        return 0.5
    at = abs(t)
    # tail = ½ I_x(df/2, ½) with x = df/(df + t²), 1 − x = t²/(df + t²)
    ratio = at / math.sqrt(df)  # x = 1/(1 + ratio²); logs formed without cancellation
    if ratio < 1e150:
        log_x = -math.log1p(ratio * ratio)
    else:
        log_x = -2.0 * math.log(ratio)
    log_1mx = 2.0 * math.log(ratio) + log_x
    x = math.exp(log_x)
    a, b = 0.5 * df, 0.5
    if x < (a + 1.0) / (a + b + 2.0):
        tail = 0.5 * betainc(a, b, x, log_x, log_1mx)
    else:
        # far from the tail: compute the complement I_{1−x}(½, df/2) directly, without cancellation
        tail = 0.5 * (1.0 - betainc(b, a, math.exp(log_1mx), log_1mx, log_x))
    return tail if t > 0 else 1.0 - tail


def t_two_sided(t: float, df: float) -> float:
    """Two-sided p-value 2 P(T > |t|), as lmerTest's ``Pr(>|t|)``."""
    if math.isnan(t) or math.isnan(df):
        return math.nan  # (min(1, NaN) is 1: a df that could not be computed printed Pr(>|t|) = 1)
    p = 2.0 * t_sf(abs(t), df)
    return p if math.isnan(p) else min(1.0, p)


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


def f_sf(f: float, d1: float, d2: float) -> float:
    """P(F > f) for the F distribution with d1, d2 degrees of freedom (R's ``pf(lower = FALSE)``; the
    one F tail of anova and Kenward–Roger):
    I_x(d2/2, d1/2) with x = d2/(d2 + d1 f), its logarithms formed without cancellation."""
    if any(math.isnan(v) for v in (f, d1, d2)) or d1 <= 0 or d2 <= 0:
        return math.nan
    if f <= 0:
        return 1.0
    if math.isinf(f):
        return 0.0
    if math.isinf(d2):  # q F ~ χ²_q
        return chi2_sf(d1 * f, int(d1)) if float(d1).is_integer() else math.nan
    log_den = math.log(d2 + d1 * f)
    log_x = math.log(d2) - log_den
    log_1mx = math.log(d1 * f) - log_den
    return betainc(d2 / 2.0, d1 / 2.0, math.exp(log_x), log_x, log_1mx)
