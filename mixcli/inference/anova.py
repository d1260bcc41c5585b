"""F tests of the fixed-effect terms of a linear mixed model, as lmerTest's ``anova(m, type, ddf)``.

``anova_table(m, type=3, ddf="satterthwaite")`` gives lmerTest 3.1-3's table: per term
Sum Sq, Mean Sq, NumDF, DenDF, F value and Pr(>F). It has two parts.

The hypothesis matrix of each term (``single_anova``), a matrix L whose rows are
contrasts of β:

* type I (``get_contrasts_type1``): sequential. Doolittle's LU factorisation of XᵀX
  (XᵀX = L U, L unit lower triangular) gives the unit upper triangular Lᵀ, whose rows
  for a term's columns test that term adjusted for the columns before it;
* type II (``get_contrasts_type2_unfolded``): a term contained in no other term (R's
  marginality, lmerTest's ``containment``/``term_contain``) tests its own coefficients
  (``get_contrasts_marginal``: rows of the identity); any other term is tested as in
  type I after moving its columns, and those of the terms containing it, to the end of
  X (``get_contrasts_type2``);
* type III (``get_contrasts_type3``, ``extract_contrasts_type3``): every term is
  written in the cell coding ``~ 0 + term`` (``get_rdX``) and expressed in the
  treatment-coded X (``ginv(X_treatment) rdX``); the contrasts of a term contained in
  others are made orthogonal to theirs (least-squares residuals, highest-order
  terms first), and the result is mapped to the coding the model uses (sum, Helmert,
  ``C()``) by ``ginv(X_treatment) X_used``. lmerTest rounds with ``zapsmall`` along the way
  (7 significant digits of the largest entry); so does this module, so that
  hypotheses with structural zeros keep them exactly.

A single-df and multi-df test of L β = 0 (``contestMD``, ``contest1D``, ``get_Fstat_ddf``):
the eigen-decomposition L V Lᵀ = P D Pᵀ, V = Var(β̂), turns the q rows of L into
independent contrasts Pᵀ L (eigenvalues below √ε·d₁ dropped), with t²ₘ = (pₘᵀLβ̂)²/dₘ and
Satterthwaite's df νₘ = 2dₘ²/(gₘᵀ A gₘ) each (gₘ the gradient of the contrast's variance
in the variance parameters, A their covariance: ``satterthwaite``). Then

    F = Σ t²ₘ / q,   DenDF = 2E/(E − q),   E = Σ νₘ/(νₘ − 2),

DenDF = 2 if any νₘ ≤ 2 and mean(ν) if all νₘ agree to 1e-8; Mean Sq = F σ̂² and
Sum Sq = q · Mean Sq; Pr(>F) from the F distribution's upper tail. A one-row L (or a
single positive eigenvalue) is the t test: F = t², DenDF = its Satterthwaite df.

``ddf="lme4"`` gives what lmerTest gives for it, lme4's own ``anova(<merMod>)``: the
sequential table from R_X β̂ (R_XᵀR_X = σ̂² V⁻¹; Sum Sq of a term the squared norm of its
block, F = Mean Sq / σ̂²), with npar as NumDF and no DenDF or p-value.

Terms that have no testable contrast left (every column aliased and dropped, as
``y ~ x1 + x2`` with x2 = 2 x1) get an all-missing row after the others, as in lmerTest
(its ``single_anova`` appends them). Type III with empty cells of an interaction is
computed as lmerTest does (the cell coding has all-zero columns; the affected
hypotheses lose rows) and noted, with lmerTest's "interpret type III hypotheses with
care".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..design import model_matrix, term_codings
from ..formula import term_label
from ..formula.evaluate import is_factor
from ..formula.exprs import MATRIX, Call
from ..frame import drop_aliased
from .distributions import f_sf
from .satterthwaite import satterthwaite

# contestMD's default eps: eigenvalues of L V Lᵀ at or below eps · (the largest) are dropped
EIGEN_TOL = math.sqrt(np.finfo(float).eps)
DDF_TOL = 1e-8  # get_Fstat_ddf: df that agree to this are averaged
DOOLITTLE_EPS = 1e-6  # lmerTest's doolittle(): entries (and pivots) below this are zero
GINV_TOL = math.sqrt(np.finfo(float).eps)  # MASS::ginv's tolerance for singular values
ROW_TOL = 1e-8  # extract_contrasts_type3 drops hypothesis rows with Σ|l| at or below this
ZAP_DIGITS = 7  # R's zapsmall(): getOption("digits")

TYPES = {1: 1, 2: 2, 3: 3, "1": 1, "2": 2, "3": 3, "i": 1, "ii": 2, "iii": 3}
DDFS = {"satterthwaite": "satterthwaite", "lme4": "lme4", "none": "lme4"}


@dataclass
class AnovaRow:
    """One term's row: lmerTest's Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F).

    All None for a term with nothing left to test; ``dendf`` and ``p`` None for ddf="lme4"."""

    term: str
    sumsq: float | None
    meansq: float | None
    numdf: int | None
    dendf: float | None
    F: float | None
    p: float | None


@dataclass
class AnovaTable:
    type: int
    ddf: str  # "satterthwaite" or "lme4"
    rows: list[AnovaRow]
    hypotheses: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # term -> L (rows × p)
    notes: list[str] = field(default_factory=list)

    @property
    def heading(self) -> str:
        if self.ddf == "lme4":
            return "Analysis of Variance Table"
        return f"Type {'I' * self.type} Analysis of Variance Table with Satterthwaite's method"


def anova_table(m, type: int | str = 3, ddf: str = "satterthwaite") -> AnovaTable:
    """lmerTest's ``anova(m, type = type, ddf = ddf)`` for a linear mixed model fit ``m``
    (``LmmResult``): type 1, 2 or 3 (or "I", "II", "III"); ddf "satterthwaite" or "lme4"."""
    key = type.strip().lower() if isinstance(type, str) else type
    if isinstance(key, bool) or key not in TYPES:
        raise ValueError(f"unknown anova type {type!r}: use 1, 2 or 3 (or 'I', 'II', 'III')")
    kind = TYPES[key]
    method = DDFS.get(ddf.strip().lower() if isinstance(ddf, str) else ddf)
    if method is None:
        raise ValueError(f"unknown ddf {ddf!r}: use 'satterthwaite' or 'lme4'")
    frame = m.frame
    if getattr(frame, "family", None) is not None:
        raise ValueError("anova F tests are for linear mixed models: this is a GLMM; compare models "
                         "with likelihood-ratio tests (mixcli.compare) instead")
    terms = tuple(frame.formula.terms)
    if not terms:
        raise ValueError(f"nothing to test: {frame.formula.text!r} has no fixed-effect terms beyond the "
                         "intercept; add the terms to test to the formula")
    labels = [term_label(t) for t in terms]
    beta = np.array([f.estimate for f in m.fixef], dtype=float)
    vcov = np.asarray(m.vcov, dtype=float)
    sigma = float(m.sigma)
    assign = np.asarray(frame.fixef_assign, dtype=int)

    if method == "lme4":
        # lmerTest's anova(ddf = "lme4") is lme4's anova(), which ignores the type
        table = AnovaTable(1, "lme4", _lme4_rows(labels, assign, beta, vcov, sigma))
        if kind != 1:
            table.notes.append(f"ddf='lme4' gives lme4's sequential (type I) table, as lmerTest does; "
                               f"type {kind} was not used")
        return table

    notes: list[str] = []
    hyps = _hypotheses(frame, kind, notes)
    sat = satterthwaite(m)
    rows, missing = [], []
    for label, L in zip(labels, hyps):
        row = None if L.shape[0] == 0 else _contest(L, beta, sat, sigma, label)
        if row is None:
            missing.append(AnovaRow(label, None, None, None, None, None, None))
        else:
            rows.append(row)
    # single_anova appends the terms with no rows (nothing testable) after the others
    if missing:
        names = ", ".join(r.term for r in missing)
        notes.append(f"no F test for {names}: its columns are aliased with other terms' (dropped from the "
                     "fit), so there is nothing left to test; remove it or check the predictors")
    return AnovaTable(kind, "satterthwaite", rows + missing, dict(zip(labels, hyps)), notes)


def _hypotheses(frame, kind: int, notes: list[str]) -> list[np.ndarray]:
    """The hypothesis matrix L of each fixed-effect term for a type 1, 2 or 3 table: from the
    frame alone (X and the formula), not from a fit."""
    terms = tuple(frame.formula.terms)
    X = np.asarray(frame.X, dtype=float)
    assign = np.asarray(frame.fixef_assign, dtype=int)
    if kind == 1:
        return _type1(X, assign, len(terms), frame.formula.intercept)
    if kind == 2:
        return _type2(X, assign, terms, frame)
    return _type3(X, assign, terms, frame, notes)


def term_hypothesis(frame, label: str, type: int = 3) -> np.ndarray:
    """The hypothesis matrix (rows × p) that ``anova_table(m, type)`` tests for the term ``label``
    of the frame's model (KeyError if it has no such term)."""
    labels = [term_label(t) for t in frame.formula.terms]
    if label not in labels:
        raise KeyError(label)
    return _hypotheses(frame, TYPES[type], [])[labels.index(label)]


def contest(L: np.ndarray, beta: np.ndarray, sat, sigma: float) -> AnovaRow | None:
    """lmerTest's test of L β = 0 (``contest1D`` for one row, ``contestMD`` for several) with the
    Satterthwaite machinery ``sat`` (``satterthwaite.from_curvature``): the row the anova table has."""
    return _contest(L, beta, sat, sigma, "")


# ---------------------------------------------------------------------------- F tests


def _fstat_ddf(nu: np.ndarray) -> float:
    """lmerTest's ``get_Fstat_ddf``: the denominator df of the F statistic from the df of its
    q independent t statistics (matching the F's moments: E[F] = E/q, ν = 2E/(E − q))."""
    if len(nu) == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < DDF_TOL):
        return float(np.mean(nu))
    if np.any(nu <= 2):  # a t with ν ≤ 2 has no variance: the moment match breaks down
        return 2.0
    e = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * e / (e - len(nu))


def _contest(L: np.ndarray, beta: np.ndarray, sat, sigma: float, label: str) -> AnovaRow | None:
    """``contestMD`` of L β = 0; None when L has no direction left (all eigenvalues ≈ 0)."""
    if np.isnan(L).any():
        return AnovaRow(label, None, None, None, None, None, None)  # lmerTest: an all-NA row
    V = sat.vcov
    if L.shape[0] == 1:
        return _row_1d(L[0], beta, sat, sigma, label)
    vals, vecs = np.linalg.eigh(L @ V @ L.T)
    vals, vecs = vals[::-1], vecs[:, ::-1]  # R's eigen(): decreasing
    pos = vals > max(EIGEN_TOL * vals[0], 0.0)
    q = int(pos.sum())
    if q == 0:
        return None
    PtL = vecs[:, :q].T @ L
    if q == 1:
        return _row_1d(PtL[0], beta, sat, sigma, label)
    d = vals[:q]
    t2 = (PtL @ beta) ** 2 / d
    F = float(t2.mean())
    # gradient of each eigen-contrast's variance in the variance parameters: g_mk = p_mᵀ J_k p_m
    g = np.einsum("mi,kij,mj->mk", PtL, sat.jacobian, PtL)
    denom = np.einsum("mk,kl,ml->m", g, sat.vcov_varpar, g)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = 2.0 * d * d / denom
    return _f_row(label, F, q, _fstat_ddf(nu), sigma)


def _row_1d(ell: np.ndarray, beta: np.ndarray, sat, sigma: float, label: str) -> AnovaRow:
    """``contest1D``: F = t² of one contrast, DenDF its Satterthwaite df."""
    var = float(ell @ sat.vcov @ ell)
    t = float(ell @ beta) / math.sqrt(var) if var > 0 else math.nan
    return _f_row(label, t * t, 1, sat.df(ell), sigma)


def _f_row(label: str, F: float, q: int, ddf: float, sigma: float) -> AnovaRow:
    ms = F * sigma * sigma  # mk_Ftable: the F statistic on the scale of the response
    return AnovaRow(label, ms * q, ms, q, ddf, F, f_sf(F, q, ddf))


def _lme4_rows(labels, assign, beta, vcov, sigma) -> list[AnovaRow]:
    """lme4's ``anova(<merMod>)``: squared R_X β̂ summed within each term (sequential sums of squares)."""
    # R_X (upper, R_XᵀR_X = σ² V⁻¹) is the Cholesky factor, unique up to signs that the squares drop
    prec = sigma * sigma * np.linalg.inv(vcov)
    rx = np.linalg.cholesky((prec + prec.T) / 2.0).T
    ss = (rx @ beta) ** 2
    rows = []
    for j in np.unique(assign[assign > 0]):  # terms with no columns left have no row in lme4
        block = assign == j
        q = int(block.sum())
        sumsq = float(ss[block].sum())
        rows.append(AnovaRow(labels[j - 1], sumsq, sumsq / q, q, None, sumsq / q / (sigma * sigma), None))
    return rows


# ---------------------------------------------------------------------------- hypotheses


def _term_columns(assign: np.ndarray, k: int) -> list[np.ndarray]:
    """Column indices of X of each term 1..k (empty where every column was dropped)."""
    return [np.flatnonzero(assign == j) for j in range(1, k + 1)]


def _doolittle_upper(a: np.ndarray) -> np.ndarray:
    """tᵀ of lmerTest's ``doolittle(a)$L``: the unit upper triangular factor of a = L U, with
    its entries below 1e-6 in magnitude set to 0 (and columns with a pivot below 1e-6 zero)."""
    n = a.shape[0]
    lower = np.eye(n)
    upper = np.zeros((n, n))
    for i in range(n):  # one row of U, then one column of L, per step
        upper[i, i:] = a[i, i:] - lower[i, :i] @ upper[:i, i:]
        if i + 1 < n:
            col = a[i + 1:, i] - lower[i + 1:, :i] @ upper[:i, i]
            lower[i + 1:, i] = 0.0 if abs(upper[i, i]) < DOOLITTLE_EPS else col / upper[i, i]
    lower[np.abs(lower) < DOOLITTLE_EPS] = 0.0
    return lower.T


def _type1(X: np.ndarray, assign: np.ndarray, k: int, intercept: bool) -> list[np.ndarray]:
    """``get_contrasts_type1``: rows of the unit upper factor of XᵀX for each term's columns."""
    p = X.shape[1]
    if p == 0 or (p == 1 and intercept):  # only the intercept is left: nothing to test
        return [np.zeros((0, p)) for _ in range(k)]
    upper = np.ones((1, 1)) if p == 1 else _doolittle_upper(X.T @ X)
    return [upper[cols] for cols in _term_columns(assign, k)]


def _is_numeric(expr, table) -> bool:
    """R's dataClasses "numeric": not a factor, and a vector (poly(), ns(), bs() and scale()
    give matrices, "nmatrix.k")."""
    if is_factor(expr, table):
        return False
    return not (isinstance(expr, Call) and (expr.func in MATRIX or expr.func == "scale"))


def _containment(terms, table) -> list[list[int]]:
    """lmerTest's ``containment``: for each term, the terms that contain it — every one of its
    variables, and more, with the same numeric variables. As lmerTest, a term's variables are
    those R's ``attr(terms, "factors")`` marks 1 (coded by contrasts), not 2: ``temp`` is not
    contained in ``temp:recipe`` in ``y ~ temp + temp:recipe`` (recipe's main effect absent)."""
    codes = term_codings(True, terms, lambda e: True)  # R's symbolic coding: 1 contrasts, 2 indicators
    vars_ = [frozenset(v for v, c in zip(t, cs) if c == 1) for t, cs in zip(terms, codes)]
    nums = [frozenset(v for v in vs if _is_numeric(v, table)) for vs in vars_]
    return [
        [j for j in range(len(terms)) if vars_[i] < vars_[j] and nums[i] == nums[j]]
        for i in range(len(terms))
    ]


def _type2(X: np.ndarray, assign: np.ndarray, terms, frame) -> list[np.ndarray]:
    """``get_contrasts_type2_unfolded``."""
    k, p = len(terms), X.shape[1]
    if p <= 1 or k <= 1:
        return _type1(X, assign, k, frame.formula.intercept)
    cols = _term_columns(assign, k)
    contained = _containment(terms, frame.table)
    eye = np.eye(p)
    out = []
    for j in range(k):
        if not contained[j]:  # marginal: the term's own coefficients
            out.append(eye[cols[j]])
            continue
        # the term, then the terms containing it, last: type I for the term then adjusts for
        # everything else but those
        last = np.concatenate([cols[j]] + [cols[i] for i in contained[j]]).astype(int)
        perm = np.concatenate([np.setdiff1d(np.arange(p), last), last]).astype(int)
        Xp = X[:, perm]
        upper = _doolittle_upper(Xp.T @ Xp)
        start = p - len(last)
        rows = upper[start:start + len(cols[j])]
        L = np.empty_like(rows)
        L[:, perm] = rows  # back to X's column order
        out.append(L)
    return out


def _zapsmall(x: np.ndarray, digits: int = ZAP_DIGITS) -> np.ndarray:
    """R's ``zapsmall``: round to ``digits`` significant digits of the largest entry."""
    mx = float(np.max(np.abs(x))) if x.size else 0.0
    if not mx > 0:
        return x
    return np.round(x, max(0, digits - math.ceil(math.log10(mx))))


def _ginv(A: np.ndarray) -> np.ndarray:
    """MASS::ginv: the Moore–Penrose inverse, singular values below √ε · (the largest) dropped."""
    u, s, vt = np.linalg.svd(A, full_matrices=False)
    keep = s > max(GINV_TOL * s[0], 0.0) if s.size else s > 0
    return (vt[keep].T / s[keep]) @ u[:, keep].T


def _treatment(term):
    """The term with C()'s own contrasts replaced by treatment (lmerTest remakes X with
    contr.treatment for every factor); the labels, so the column names, are kept."""
    return tuple(replace(v, options=tuple((k, "treatment" if k == "contr" else o) for k, o in v.options))
                 if isinstance(v, Call) and v.func == "C" else v for v in term)


def _type3(X: np.ndarray, assign: np.ndarray, terms, frame, notes: list[str]) -> list[np.ndarray]:
    """``get_contrasts_type3`` / ``extract_contrasts_type3``."""
    k, p = len(terms), X.shape[1]
    intercept = frame.formula.intercept
    if p <= 1 or k <= 1:
        return _type1(X, assign, k, intercept)
    table, rows = frame.table, frame.rows
    # X with treatment contrasts, aliased columns dropped as lme4 (and ensure_full_rank) drop them
    full = model_matrix(intercept, tuple(_treatment(t) for t in terms), table, rows, "treatment")
    Xt, names_t, _, _ = drop_aliased(full.X, full.names)
    keep = set(names_t)
    assign_t = np.array([a for a, nm in zip(full.assign, full.names) if nm in keep], dtype=int)
    cols_t = _term_columns(assign_t, k)

    # the cell coding of every term (~ 0 + term), and the intercept
    blocks = [model_matrix(False, (t,), table, rows) for t in terms]
    rd_names = (["(Intercept)"] if intercept else []) + [nm for b in blocks for nm in b.names]
    rd = np.column_stack(([np.ones(Xt.shape[0])] if intercept else []) + [b.X for b in blocks])
    empty = [nm for nm, col in zip(rd_names, rd.T) if not np.any(col)]
    if empty:
        notes.append(f"Missing cells for: {', '.join(empty)}. Interpret type III hypotheses with care.")

    ginv_t = _ginv(Xt)
    L = _zapsmall((ginv_t @ rd).T)  # each cell-coded column in terms of the treatment-coded X
    contained = _containment(terms, table)
    # highest-order terms first (a stable sort, as R's order()); a contained term's contrasts are
    # made orthogonal, over the cells, to those of the terms containing it
    for j in sorted(range(k), key=lambda j: -len(terms[j])):
        if not contained[j]:
            continue
        other = np.concatenate([cols_t[i] for i in contained[j]]).astype(int)
        Y, Z = L[:, cols_t[j]], L[:, other]
        coef = np.linalg.lstsq(Z, Y, rcond=None)[0]
        L[:, cols_t[j]] = _zapsmall(Y - Z @ coef)
    # square: the rows of the cells that are columns of the treatment-coded X
    first = {}
    for i, nm in enumerate(rd_names):
        first.setdefault(nm, i)
    missing = [nm for nm in names_t if nm not in first]
    if missing:
        raise ValueError(f"type III hypotheses: no cell for column(s) {', '.join(missing)}; use type=2 or 1")
    L = L[[first[nm] for nm in names_t]]
    hyps = []
    for j in range(k):
        Lj = L[:, cols_t[j]].T
        hyps.append(Lj[np.abs(Lj).sum(axis=1) > ROW_TOL])
    if Xt.shape == X.shape and np.array_equal(Xt, X):
        return hyps  # the model's own coding is treatment: lmerTest uses these directly
    # from the treatment coding to the model's (sum, Helmert, C()): β_treatment = map β_used
    mapping = _zapsmall(ginv_t @ X)
    return [h @ mapping for h in hyps]


# ---------------------------------------------------------------------------- the command's result


@dataclass
class AnovaResult:
    """What ``mixcli anova`` reports: the fit, its F-test table and the ddf method asked for
    ("satterthwaite", "kr" or "none")."""

    model: object
    table: AnovaTable
    ddf: str

    @property
    def heading(self) -> str:
        if self.ddf == "kr":
            return f"Type {'I' * self.table.type} Analysis of Variance Table with Kenward-Roger's method"
        return self.table.heading


def anova_result(m, type: int = 3, ddf: str = "satterthwaite") -> AnovaResult:
    """``anova_table`` for the command line: ddf "none" is lme4's table, "kr" Kenward–Roger's
    tests of the same hypotheses; problems become one-line ``UsageError``s."""
    from ..errors import UsageError

    try:
        if ddf == "kr":
            return AnovaResult(m, kenward_roger_anova(m, type), "kr")
        # lme4's table is sequential whatever the type (--help says so)
        table = anova_table(m, 1, "lme4") if ddf == "none" else anova_table(m, type, "satterthwaite")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return AnovaResult(m, table, ddf)


def kenward_roger_anova(m, type: int = 3) -> AnovaTable:
    """lmerTest's ``anova(m, type, ddf = "Kenward-Roger")``: the same hypotheses, each tested by
    pbkrtest's KRmodcomp (scaled F, its DenDF); Mean Sq = F σ̂² and Sum Sq = NumDF · Mean Sq
    as for Satterthwaite's table."""
    from .kenward_roger import kenward_roger

    base = anova_table(m, type, "satterthwaite")
    kr = kenward_roger(m)
    s2 = float(m.sigma) ** 2
    rows = []
    for row in base.rows:
        if row.F is None:
            rows.append(row)
            continue
        t = kr.f_test(base.hypotheses[row.term])
        rows.append(AnovaRow(row.term, t.numdf * t.F * s2, t.F * s2, t.numdf, t.dendf, t.F, t.p))
    return AnovaTable(base.type, "kenward-roger", rows, base.hypotheses, list(base.notes))
