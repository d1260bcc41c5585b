"""R's polynomial and spline bases, ``poly``, ``bs`` and ``ns``, in numpy.

Each function returns the float64 model-matrix columns that R's function puts
into a design matrix, in R's column order, equal to R's numbers to rounding
(checked against R 4.2.2 by ``fixtures/splines_reference.R`` and
``tests/test_splines.py``):

``poly(x, degree)``
    stats::poly's orthogonal polynomials. As R does: centre x at its mean, take
    the Householder QR of ``outer(x - mean, 0:degree, "^")``, and keep
    ``Q[:, j] * R[j, j]`` scaled to unit length, dropping the constant column.
    Column j is the part of ``x^j`` orthogonal to the lower powers, with the
    sign of ``x^j``, so it does not depend on the QR's sign conventions.
    ``raw=True`` gives the plain powers ``x, x^2, ...``.
``bs(x, df=, knots=, degree=3, intercept=False)``
    splines::bs's B-spline basis on the knots ``c(rep(min, degree + 1),
    knots, rep(max, degree + 1))``, evaluated as splines::splineDesign does
    (the Cox-de Boor recursion of R's ``spline_basis`` C routine, with its
    convention for x on a knot and at the right boundary). With ``df`` the
    interior knots are R's ``quantile(x, i / (k + 1))`` (type 7) for
    ``k = df - degree - intercept``. The first column is dropped unless
    ``intercept``.
``ns(x, df=, knots=, intercept=False)``
    splines::ns's natural cubic splines: the cubic B-spline basis (interior
    knots at the quantiles for ``k = df - 1 - intercept``) projected onto the
    splines whose second derivative is zero at both boundary knots. R does this
    with ``qr(t(const))`` where ``const`` is splineDesign's second derivatives
    at the boundaries, and keeps columns 3.. of ``t(qr.qty(qr, t(basis)))``;
    those columns depend on the exact Householder vectors, so the QR here is
    LINPACK's dqrdc2 (R's default ``qr``) step by step, not numpy's LAPACK QR.

Missing values (NaN): ``poly`` refuses them as R does (``raw=True`` passes
them through, as R's does); ``bs``/``ns`` take the boundary and the quantile
knots from the non-missing values and return NaN rows for the missing ones.
The boundary knots are always the range of x (R's default), so no x lies
outside them and R's linear extrapolation beyond the boundary is not needed.
"""

from __future__ import annotations

import math
import operator

import numpy as np

# R's qr() default tolerance for declaring a column linearly dependent (dqrdc2's tol).
_QR_TOL = 1e-7


def poly(x: np.ndarray, degree: int, raw: bool = False, coefs=None) -> np.ndarray:
    """stats::poly(x, degree, raw = raw): an (n, degree) matrix. With ``coefs`` (``poly_coefs`` of
    the fitted x: R's ``attr(, "coefs")``), the fitted polynomials at new x, as R's predict does."""
    x = _as_vector(x, "poly")
    degree = _as_int(degree, "degree")
    if degree < 1:
        raise ValueError("'degree' must be at least 1")
    powers = np.arange(1, degree + 1)
    if raw:
        # R's raw branch neither checks for NA nor for enough unique points.
        return x[:, None] ** powers
    if coefs is not None:
        # R's three-term recurrence: Z₀ = 1, Z₁ = x − α₀, Zᵢ₊₁ = (x − αᵢ)Zᵢ − (n²ᵢ₊₁/n²ᵢ)Zᵢ₋₁
        alpha, norm2 = (np.asarray(c, dtype=float) for c in coefs)
        z = np.ones((x.size, degree + 1))
        z[:, 1] = x - alpha[0]
        for i in range(1, degree):
            z[:, i + 1] = (x - alpha[i]) * z[:, i] - (norm2[i + 1] / norm2[i]) * z[:, i - 1]
        return np.ascontiguousarray(z[:, 1:] / np.sqrt(norm2[2:]))
    z, _ = _poly_z(x, degree)
    norm2 = (z**2).sum(axis=0)
    return np.ascontiguousarray(z[:, 1:] / np.sqrt(norm2[1:]))


def poly_coefs(x: np.ndarray, degree: int) -> tuple[list[float], list[float]]:
    """R's ``attr(poly(x, degree), "coefs")``: (alpha, norm2), what predicting at new x needs."""
    x = _as_vector(x, "poly")
    z, xc = _poly_z(x, _as_int(degree, "degree"))
    norm2 = (z**2).sum(axis=0)
    alpha = (np.sum(xc[:, None] * z**2, axis=0) / norm2 + x.mean())[:degree]
    return [float(a) for a in alpha], [1.0] + [float(v) for v in norm2]


def _poly_z(x: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """The unnormalised orthogonal polynomials of x (constant column first), and x centred."""
    if np.isnan(x).any():
        raise ValueError("missing values are not allowed in 'poly'")
    if degree >= np.unique(x).size:
        raise ValueError("'degree' must be less than number of unique points")
    # Centring changes nothing mathematically (the span of 1, x, .., x^d is shift-invariant) but keeps
    # the powers well conditioned for data far from zero.
    xc = x - x.mean()
    qr, qraux, rank = _dqrdc2(xc[:, None] ** np.arange(degree + 1))
    # R stops only when rank < degree; a rank of exactly `degree` would leave R with a pivoted,
    # meaningless last column, so that is refused here too.
    if rank <= degree:
        raise ValueError("'degree' must be less than number of unique points")
    # Z = qr.qy(QR, diag(R)): column j is Q[:, j] * R[j, j], the residual of x^j on the lower
    # powers; scaling by its norm leaves Q[:, j] * sign(R[j, j]), independent of QR conventions.
    z = np.zeros_like(qr)
    diag = np.arange(degree + 1)
    z[diag, diag] = qr[diag, diag]
    return _apply_q(qr, qraux, rank, z, transpose=False), xc


def bs(x: np.ndarray, *, df: int | None = None, knots=None, degree: int = 3, intercept: bool = False,
       boundary=None) -> np.ndarray:
    """splines::bs(x, df, knots, degree, intercept): an (n, degree + len(knots) + intercept) matrix.
    ``boundary``: the fitted basis's boundary knots (``spline_knots``), for new x inside them."""
    x = _as_vector(x, "bs")
    degree = _as_int(degree, "degree")
    if degree < 1:
        raise ValueError("'degree' must be integer >= 1")
    order = degree + 1
    intercept = bool(intercept)
    observed = ~np.isnan(x)
    xs = x[observed]
    boundary = _boundary(xs, "bs") if boundary is None else (float(boundary[0]), float(boundary[1]))
    if knots is None and df is not None:
        df = _as_int(df, "df")
        n_interior = df - order + (1 - intercept)
        if n_interior < 0:
            # R warns and uses the smallest df; a formula asking for fewer columns is a mistake.
            raise ValueError(f"'df' was too small: bs() of degree {degree}{' with intercept' if intercept else ''} "
                             f"needs df >= {order - (1 - intercept)}")
        knots = _quantile7(xs, _interior_probs(n_interior))
    else:
        knots = _explicit_knots(knots, boundary, "bs")
    aknots = np.sort(np.concatenate([np.repeat(boundary[0], order), knots, np.repeat(boundary[1], order)]))
    basis = np.full((x.size, aknots.size - order), np.nan)
    basis[observed] = _extrapolated_design(aknots, xs, order, boundary, degree)
    if not intercept:
        basis = basis[:, 1:]
    return np.ascontiguousarray(basis)


def ns(x: np.ndarray, *, df: int | None = None, knots=None, intercept: bool = False, boundary=None) -> np.ndarray:
    """splines::ns(x, df, knots, intercept): an (n, len(knots) + 1 + intercept) matrix.
    ``boundary``: the fitted basis's boundary knots (``spline_knots``), for new x inside them."""
    x = _as_vector(x, "ns")
    intercept = bool(intercept)
    observed = ~np.isnan(x)
    xs = x[observed]
    if boundary is not None:
        boundary = (float(boundary[0]), float(boundary[1]))
    elif xs.size == 1 and xs[0] != 0:
        # R's ns() widens a single point to c(7, 9)/8 of it (unsorted, so reversed for x < 0; the
        # order matters below because it orders the rows of the constraint matrix).
        boundary = (xs[0] * 7 / 8, xs[0] * 9 / 8)
    else:
        boundary = _boundary(xs, "ns")
    if knots is None and df is not None:
        df = _as_int(df, "df")
        n_interior = df - 1 - intercept
        if n_interior < 0:
            raise ValueError(f"'df' was too small: ns(){' with intercept' if intercept else ''} "
                             f"needs df >= {1 + intercept}")
        knots = _quantile7(xs, _interior_probs(n_interior))
    else:
        knots = _explicit_knots(knots, (min(boundary), max(boundary)), "ns")
    aknots = np.sort(np.concatenate([np.repeat(boundary, 4), knots]))
    basis = _extrapolated_design(aknots, xs, 4, (min(boundary), max(boundary)), 1)
    const = _spline_derivs(aknots, np.asarray(boundary, dtype=float), 4, 2)
    if not np.isfinite(const).all():
        # An interior knot on the upper boundary (e.g. a quantile knot when many x tie at the
        # maximum) leaves the second derivative there undefined; R's ns() fails in qr() too.
        raise ValueError("ns() cannot place a knot at the largest value of x (too many ties there?); "
                         "use fewer df or explicit knots")
    if not intercept:
        basis = basis[:, 1:]
        const = const[:, 1:]
    # Rotate the basis by Q' of qr(t(const)); the first two rotated coordinates carry the boundary
    # second derivatives, the remaining ones span the natural splines.
    qr, qraux, rank = _dqrdc2(const.T)
    rotated = _apply_q(qr, qraux, rank, basis.T.copy(), transpose=True).T
    out = np.full((x.size, rotated.shape[1] - 2), np.nan)
    out[observed] = rotated[:, 2:]
    return out


def spline_knots(func: str, x: np.ndarray, *, df: int | None = None, degree: int = 3,
                 intercept: bool = False) -> dict:
    """The knots of ``bs``/``ns`` with ``df`` on x (R's ``attr(, "knots")`` and ``"Boundary.knots"``):
    what evaluating the same basis at new x needs."""
    x = _as_vector(x, func)
    xs = x[~np.isnan(x)]
    if func == "ns" and xs.size == 1 and xs[0] != 0:
        boundary = (xs[0] * 7 / 8, xs[0] * 9 / 8)
    else:
        boundary = _boundary(xs, func)
    order = _as_int(degree, "degree") + 1 if func == "bs" else 4
    n_interior = _as_int(df, "df") - (order - 1 if func == "bs" else 1) - bool(intercept)
    knots = _quantile7(xs, _interior_probs(n_interior)) if n_interior > 0 else np.zeros(0)
    return {"knots": [float(k) for k in knots], "boundary": [float(b) for b in boundary]}


def _extrapolated_design(aknots: np.ndarray, x: np.ndarray, order: int, boundary, terms: int) -> np.ndarray:
    """splineDesign at x between the boundary knots; beyond them, as R's bs()/ns() predict: the
    Taylor polynomial of the basis at a pivot, to the ``terms``-th derivative. ns (terms = 1): a
    straight line from the boundary knot; bs (terms = its degree): the end piece's polynomial,
    expanded at a quarter of the way into the end interval (R ≥ 3.2.3: at the knot itself the
    highest derivative is R's 0 of a step)."""
    lo, hi = boundary
    inside = (x >= lo) & (x <= hi)
    if inside.all():
        return _spline_design(aknots, x, order)
    out = np.empty((x.size, aknots.size - order))
    out[inside] = _spline_design(aknots, x[inside], order)
    e = 0.25 if terms > 1 else 0.0
    pivots = ((1 - e) * lo + e * aknots[order], (1 - e) * hi + e * aknots[aknots.size - order - 1])
    for side, pivot in ((x < lo, pivots[0]), (x > hi, pivots[1])):
        if side.any():
            at = np.array([pivot])
            rows = [_spline_design(aknots, at, order)[0]] + [_spline_derivs(aknots, at, order, k)[0]
                                                              for k in range(1, terms + 1)]
            d = x[side] - pivot
            out[side] = sum(np.outer(d**k / math.factorial(k), row) for k, row in enumerate(rows))
    return out


# --- helpers -------------------------------------------------------------------------------------


def _as_vector(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name}() needs a vector, got an array of shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError(f"{name}() needs finite values, x has infinite ones")
    return arr.copy()


def _as_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"'{name}' must be a whole number, got {value!r}")
    if isinstance(value, (float, np.floating)):
        if not float(value).is_integer():
            raise ValueError(f"'{name}' must be a whole number, got {value!r}")
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"'{name}' must be a whole number, got {value!r}") from None


def _boundary(xs: np.ndarray, name: str) -> tuple[float, float]:
    """range(x) of the non-missing values, which must span an interval."""
    if xs.size == 0:
        raise ValueError(f"{name}() needs at least one non-missing value")
    lo, hi = float(xs.min()), float(xs.max())
    if lo == hi:
        # R's basis would be all NaN (every knot interval is empty).
        raise ValueError(f"{name}() needs at least two distinct non-missing values")
    return lo, hi


def _explicit_knots(knots, boundary: tuple[float, float], name: str) -> np.ndarray:
    if knots is None:
        return np.empty(0)
    k = np.atleast_1d(np.asarray(knots, dtype=float))
    if k.ndim != 1 or not np.isfinite(k).all():
        raise ValueError(f"{name}() knots must be a vector of finite numbers")
    if ((k < boundary[0]) | (k > boundary[1])).any():
        # R would build a basis on a knot sequence out of order with its boundary; never wanted.
        raise ValueError(f"{name}() knots must lie within the range of x [{boundary[0]:g}, {boundary[1]:g}]")
    return k


def _interior_probs(n_interior: int) -> np.ndarray:
    """seq.int(0, 1, length.out = k + 2)[-c(1, k + 2)], computed as R's C code does (i * by)."""
    by = 1.0 / (n_interior + 1)
    return np.arange(1, n_interior + 1) * by


def _quantile7(xs: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """stats::quantile(x, probs) with R's default type 7, following quantile.default's arithmetic."""
    s = np.sort(xs)
    index = 1 + (s.size - 1) * probs  # 1-based position
    lo = np.floor(index).astype(int)
    hi = np.ceil(index).astype(int)
    qs = s[lo - 1]
    h = index - lo
    x_hi = s[hi - 1]
    return np.where((index > lo) & (x_hi != qs), (1 - h) * qs + h * x_hi, qs)


def _cursor(aknots: np.ndarray, x: np.ndarray, order: int):
    """set_cursor() of R's splines.c: the knot index closing the interval of each x.

    The interval is [aknots[c - 1], aknots[c]) with c the first knot > x (right-continuous at
    interior knots); x equal to the right boundary knot uses the last proper interval instead,
    flagged as ``boundary``. Also returns which x have a valid interval.
    """
    nk = aknots.size
    curs = np.searchsorted(aknots, x, side="right")
    curs[curs == nk] = nk - 1  # no knot > x: R keeps the last knot >= x
    boundary = (curs > nk - order) & (x == aknots[nk - order])
    curs[boundary] = nk - order
    valid = (curs >= order) & (curs <= nk - order)
    return np.where(valid, curs, order), boundary, valid


def _spline_design(aknots: np.ndarray, x: np.ndarray, order: int) -> np.ndarray:
    """splineDesign(aknots, x, order): the (len(x), len(aknots) - order) B-spline values.

    basis_funcs() of R's splines.c, vectorised over x: the order nonzero B-splines at x by the
    Cox-de Boor recursion on the distances to the knots left (ldel) and right (rdel) of x.
    """
    curs, _, valid = _cursor(aknots, x, order)
    rdel = [aknots[curs + i] - x for i in range(order - 1)]
    ldel = [x - aknots[curs - (i + 1)] for i in range(order - 1)]
    b = [np.ones_like(x)] + [np.zeros_like(x) for _ in range(order - 1)]
    for j in range(1, order):
        saved = np.zeros_like(x)
        for r in range(j):
            den = rdel[r] + ldel[j - 1 - r]
            # A zero denominator comes from coincident knots (a knot at the boundary, from ties): R
            # skips the division and keeps b[r] (first term, x on the right knot) or the carry.
            proper = den != 0
            term = b[r] / np.where(proper, den, 1.0)
            keep = (r == 0) & (rdel[r] == 0)
            b[r] = np.where(proper, saved + rdel[r] * term, np.where(keep, b[r], saved))
            saved = np.where(proper, ldel[j - 1 - r] * term, 0.0)
        b[j] = saved
    out = np.zeros((x.size, aknots.size - order))
    rows = np.arange(x.size)
    for k in range(order):
        out[rows, curs - order + k] = b[k]
    out[~valid] = np.nan
    return out


def _spline_derivs(aknots: np.ndarray, x: np.ndarray, order: int, nder: int) -> np.ndarray:
    """splineDesign(aknots, x, order, derivs = nder): derivatives of the B-splines at x.

    evaluate() of R's splines.c for each of the order B-splines nonzero at x (coefficient vector
    e_i): nder differencing steps on the coefficients, then de Boor's recursion on what is left.
    Vectorised over x (axis 0) and over the unit coefficient vectors (axis 1).
    """
    if not 0 < nder < order:
        raise ValueError(f"derivative order must be between 1 and {order - 1}")
    curs, boundary, valid = _cursor(aknots, x, order)
    a = np.broadcast_to(np.eye(order), (x.size, order, order)).copy()  # a[point, i, :] = e_i
    outer = order - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(nder):
            for k in range(outer):
                span = aknots[curs + k] - aknots[curs - outer + k]
                a[:, :, k] = outer * (a[:, :, k + 1] - a[:, :, k]) / span[:, None]
            outer -= 1
        rdel = [(aknots[curs + i] - x)[:, None] for i in range(outer)]
        ldel = [(x - aknots[curs - (i + 1)])[:, None] for i in range(outer)]
        for o in range(outer - 1, -1, -1):
            for k in range(o + 1):
                a[:, :, k] = (a[:, :, k + 1] * ldel[o - k] + a[:, :, k] * rdel[k]) / (rdel[k] + ldel[o - k])
    values = a[:, :, 0]
    if nder == order - 1:
        values[boundary] = 0.0  # R: the (order-1)th derivative is a step; at the boundary it returns 0
    out = np.zeros((x.size, aknots.size - order))
    rows = np.arange(x.size)
    for k in range(order):
        out[rows, curs - order + k] = values[:, k]
    out[~valid] = np.nan
    return out


def _dqrdc2(a: np.ndarray, tol: float = _QR_TOL):
    """R's default QR (LINPACK dqrdc2, as in qr()): returns (qr, qraux, rank) in R's storage.

    Householder reflections H_l = I - u u' / u[0] with u = x / s + e_1, s = sign(x_1) * |x|
    (so R[l, l] = -s), stored in qr's lower part with u[0] in qraux. Columns whose norm falls below
    tol times their original norm are moved to the end (R's limited pivoting); with the full-rank
    matrices used here this never happens, and the pivot is not returned.
    """
    x = np.array(a, dtype=float)
    n, p = x.shape
    qraux = np.linalg.norm(x, axis=0)
    work1 = qraux.copy()
    work2 = np.where(qraux == 0, 1.0, qraux)
    k = p + 1  # 1-based, as in the Fortran: columns k.. have been judged negligible
    for l in range(min(n, p)):
        while not (l + 1 >= k or qraux[l] >= work2[l] * tol):
            for arr in (qraux, work1, work2):
                arr[l:] = np.roll(arr[l:], -1)
            x[:, l:] = np.roll(x[:, l:], -1, axis=1)
            k -= 1
        if l == n - 1:
            continue
        nrmxl = float(np.linalg.norm(x[l:, l]))
        if nrmxl == 0.0:
            continue
        if x[l, l] != 0.0:
            nrmxl = math.copysign(nrmxl, x[l, l])
        x[l:, l] *= 1.0 / nrmxl
        x[l, l] += 1.0
        if l + 1 < p:
            u = x[l:, l]
            t = -(u @ x[l:, l + 1:]) / u[0]
            x[l:, l + 1:] += np.outer(u, t)
            # Downdate the remaining columns' norms, recomputing them when most of the norm is gone.
            for j in range(l + 1, p):
                if qraux[j] == 0.0:
                    continue
                tt = max(1.0 - (abs(x[l, j]) / qraux[j]) ** 2, 0.0)
                if abs(tt) >= 1e-6:
                    qraux[j] *= math.sqrt(tt)
                else:
                    qraux[j] = np.linalg.norm(x[l + 1:, j])
                    work1[j] = qraux[j]
        qraux[l] = x[l, l]
        x[l, l] = -nrmxl
    return x, qraux, min(k - 1, n)


def _apply_q(qr: np.ndarray, qraux: np.ndarray, rank: int, y: np.ndarray, *, transpose: bool) -> np.ndarray:
    """qr.qy (Q y) or qr.qty (Q' y) of R (LINPACK dqrsl), for y with qr's row count; y is overwritten."""
    n = qr.shape[0]
    steps = range(min(rank, n - 1))
    for j in (steps if transpose else reversed(steps)):
        if qraux[j] == 0.0:
            continue
        u = qr[j:, j].copy()
        u[0] = qraux[j]
        t = -(u @ y[j:]) / u[0]
        y[j:] += np.outer(u, t)
    return y
