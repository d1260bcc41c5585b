"""First and second derivatives by central differences with Richardson extrapolation.

For a (vector-valued) function F of a few parameters, each partial derivative
is estimated from central differences with steps h, h/2, … and the
estimates are combined by Richardson extrapolation (each round cancels the
next even power of h). That is what lets
the steps be large: h = 1e-2·|x|, or 1e-3 where |x| is tiny, leaves a
truncation error below 1e-12 relative, while rounding noise δ in F costs
δ/h² in a second derivative. (numDeriv, which lmerTest uses, starts at
h = 1e-4·|x|: fine for lme4, whose r² is summed from residuals, but 100×
noisier on a criterion whose r² is a Cholesky downdate of yᵀy; the
steps here were chosen by comparing both against lmerTest on the fixtures,
where h from 1e-2 to 3e-2·|x| agree to 1e-6.) Mixed second derivatives use
the diagonal ones:

    F(x + hᵢeᵢ + hⱼeⱼ) + F(x − hᵢeᵢ − hⱼeⱼ) − 2F(x) = hᵢ²Fᵢᵢ + hⱼ²Fⱼⱼ + 2hᵢhⱼFᵢⱼ + O(h⁴),

so n parameters cost 2·LEVELS·(n + n(n−1)/2) evaluations.

Parameters on a boundary are stepped across it (θ = 0 is evaluated at
±h): the criteria are even in a diagonal θ of a one-effect term, so this
gives the one-sided curvature lmerTest also uses.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

REL_STEP = 1e-2
ABS_STEP = 1e-3
ZERO_TOL = float(np.sqrt(np.finfo(float).eps / 7e-7))
# Two Richardson levels (h, h/2) are enough: on all reference models the df agree
# with lmerTest to 2.6e-5 relative, as with four levels, at half the evaluations.
LEVELS = 2
SHRINK = 2.0


def _steps(x: np.ndarray) -> np.ndarray:
    return np.abs(REL_STEP * x) + ABS_STEP * (np.abs(x) < ZERO_TOL)


def _extrapolate(approx: list[np.ndarray]) -> np.ndarray:
    """Richardson: combine estimates at h, h/2, h/4, ... whose errors are even powers of h."""
    a = list(approx)
    for m in range(1, len(a)):
        f = 4.0**m
        a = [(a[k + 1] * f - a[k]) / (f - 1.0) for k in range(len(a) - 1)]
    return a[0]


def jacobian(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, levels: int = LEVELS,
             steps: np.ndarray | None = None) -> np.ndarray:
    """The Jacobian (m, n) of F: Rⁿ → Rᵐ by central differences with Richardson extrapolation
    (2·levels·n evaluations), with the first steps ``steps`` (default ``_steps(x)``); for F an
    analytic gradient, a Hessian."""
    x = np.asarray(x, dtype=float)
    cols = []
    for i, h0 in enumerate(_steps(x) if steps is None else steps):
        est, h = [], h0
        for _ in range(levels):
            e = np.zeros(len(x))
            e[i] = h
            est.append((np.asarray(fn(x + e), dtype=float) - np.asarray(fn(x - e), dtype=float)) / (2.0 * h))
            h /= SHRINK
        cols.append(_extrapolate(est))
    return np.column_stack(cols)


def gradient_hessian(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, levels: int = LEVELS,
                     steps: np.ndarray | None = None, many: Callable[[np.ndarray], np.ndarray] | None = None):
    """F(x), its gradient and its Hessian for F: Rⁿ → Rᵐ, with the first steps ``steps``
    (default: 1e-2·|x|, or 1e-3 where x is 0).

    Every point is known before any is evaluated, so ``many`` (points (N, n) → values (N, m)),
    if given, evaluates them all in one call (``Factorization`` of a batch of θ); otherwise
    ``fn`` is called on each.

    Returns ``(f0, grad, hess)`` with shapes (m,), (m, n), (m, n, n).
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    h0 = _steps(x) if steps is None else np.asarray(steps, dtype=float)
    shrink = SHRINK ** -np.arange(levels)  # h, h/2, ... per level
    # the points: x; x ± hᵢeᵢ per i and level; x ± (hᵢeᵢ + hⱼeⱼ) per pair j < i and level
    diag = [(i, l) for i in range(n) for l in range(levels)]
    pairs = [(i, j, l) for i in range(n) for j in range(i) for l in range(levels)]
    offsets = np.zeros((len(diag) + len(pairs), n))
    for r, (i, l) in enumerate(diag):
        offsets[r, i] = h0[i] * shrink[l]
    for r, (i, j, l) in enumerate(pairs, start=len(diag)):
        offsets[r, i], offsets[r, j] = h0[i] * shrink[l], h0[j] * shrink[l]
    points = np.concatenate([x[None, :], x + offsets, x - offsets])
    if many is not None:
        values = np.asarray(many(points), dtype=float).reshape(len(points), -1)
    else:
        values = np.array([np.atleast_1d(np.asarray(fn(pt), dtype=float)) for pt in points])
    f0 = values[0]
    m, k = len(f0), len(offsets)
    plus, minus = values[1: 1 + k], values[1 + k:]
    grad = np.zeros((m, n))
    hess = np.zeros((m, n, n))
    for i in range(n):
        rows = [r for r, (ii, _) in enumerate(diag) if ii == i]
        hs = h0[i] * shrink
        grad[:, i] = _extrapolate([(plus[r] - minus[r]) / (2.0 * h) for r, h in zip(rows, hs)])
        hess[:, i, i] = _extrapolate([(plus[r] - 2.0 * f0 + minus[r]) / (h * h) for r, h in zip(rows, hs)])
    for r0 in range(0, len(pairs), levels):
        i, j, _ = pairs[r0]
        est = []
        for l in range(levels):
            r = len(diag) + r0 + l
            hi, hj = h0[i] * shrink[l], h0[j] * shrink[l]
            est.append((plus[r] - 2.0 * f0 + minus[r] - hess[:, i, i] * hi * hi - hess[:, j, j] * hj * hj)
                       / (2.0 * hi * hj))
        hess[:, i, j] = hess[:, j, i] = _extrapolate(est)
    return f0, grad, hess
