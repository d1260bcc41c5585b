"""Estimated marginal means, their contrasts and joint tests, as R's emmeans 1.8 computes them.

``emmeans(m, specs, by=(), at=None, contrast=None, adjust=None, ddf="satterthwaite",
level=0.95, type="link", joint=False)`` for a fitted ``LmmResult`` or ``GlmmResult``.

**The reference grid** (emmeans's ``ref_grid``): every combination of the values of the
variables of the fixed-effect terms — a factor's levels (in the fit's order), a numeric
variable's mean over the rows used, or both of its values when it has at most two distinct
ones (emmeans's ``cov.keep = "2"``), or the values ``at`` gives (which also restricts a factor
to the levels listed). The design matrix of the grid's rows is built exactly as ``predict``
builds new rows (``predictions.fixed_design``: the fit's levels, reference levels and
contrasts), so a factor × covariate interaction is evaluated at the covariate's mean.

**The means**: the rows of the grid averaged with equal weights (emmeans's default
``weights = "equal"``) over every variable not in ``specs`` or ``by``, giving for each mean a
linear function ℓ of β̂: estimate ℓβ̂, SE √(ℓVℓᵀ), with V = Var(β̂) (lme4's ``vcov``) or, for
Kenward–Roger, pbkrtest's adjusted Φ_A (``vcovAdj``); df by lmerTest's Satterthwaite
(``calcSatterth``: ``satterthwaite.df(ℓ)``), pbkrtest's ``Lb_ddf`` (``KenwardRoger.ddf``), or ∞
(``asymptotic``; always for a GLMM); intervals estimate ± t_(df) SE.

**Contrasts** (within each ``by`` group): ``pairwise``, ``revpairwise``, ``trt.vs.ctrl`` (each
level against the first), ``poly`` (emmeans's integer-scaled orthogonal polynomials), each a
linear function of the means, with emmeans's p-value adjustments (``.adj.p.value``): ``tukey``
(studentized range of √2|t| over the family of means; only for pairwise families — otherwise
changed to ``sidak``, with emmeans's note), ``dunnettx`` (emmeans's approximation to Dunnett,
the default of ``trt.vs.ctrl``), ``sidak``, ``bonferroni``, ``holm``, ``none``; a single
contrast is never adjusted.

**Response scale** (GLMM, ``type="response"``): means back-transformed by the inverse link
(``prob`` for binomial, ``rate`` for poisson), SE by the delta method |dμ/dη| SE, intervals the
back-transformed ends of the link scale's; contrasts of a logit (log) link become odds ratios
(ratios) exp(estimate), tested on the link scale, as emmeans's ``regrid``-free ``type =
"response"`` does.

**Joint tests** (emmeans's ``joint_tests``): for every set of the grid's factors (not ``by``),
in emmeans's order, the F test that all their interaction contrasts (consecutive differences)
are zero, averaged over the other factors: F = zᵀ(QVQᵀ)⁻¹z / r with Q an orthonormal basis of
the contrasts' row space (r its rank, df1), df2 the smallest single-row df over Q's rows (as
emmeans does); sets with df1 = 0 are left out. For joint tests numeric covariates take their
minimum and maximum (emmeans's ``cov.reduce = range``), so a covariate's slope is tested too.

**Nested factors** (emmeans's ``.find_nests`` and ``.nested_emm``): a factor whose every level
occurs with one level of another (drug within route), or that enters the formula only inside
an interaction with it (``route/drug``), is nested in it. Its means carry its parents as columns
and show only the combinations that occur; averaging over it happens within each parent level,
over the levels that occur there (route's mean is the mean of its own drugs). Contrasts of
nested means compare the shown ones, by group.

**Rank-deficient fits** (estimability's ``is.estble``): a mean or contrast ℓ is estimated only
when it lies in the row space of the whole model matrix (the aliased columns included), i.e.
‖Nᵀℓ‖² < 10⁻⁸‖ℓ‖² for an orthonormal basis N of its null space; otherwise it is emmeans's
nonEst (no number). An estimable ℓ uses the kept columns only.

Stateful terms (``scale()``, ``poly()``, ``ns()``, ``bs()``) are evaluated at the grid's values
with what they remember of the fitted data (``predictions.fitted_state``), as emmeans does.

Not yet: joint tests with nested factors or of a rank-deficient fit, and offsets — each refused
with one line.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError, UsageError, option
from ..formula.evaluate import categorical, r_number
from ..formula.exprs import CATEGORICAL, Call, Var
from ..table import Table, TextColumn

METHODS = ("pairwise", "revpairwise", "trt.vs.ctrl", "poly")
ADJUSTS = ("tukey", "holm", "bonferroni", "sidak", "dunnettx", "none")
DDFS = {"satterthwaite": "satterthwaite", "kr": "kenward-roger", "kenward-roger": "kenward-roger",
        "asymptotic": "asymptotic"}
DEFAULT_ADJUST = {"pairwise": "tukey", "revpairwise": "tukey", "trt.vs.ctrl": "dunnettx", "poly": "none"}
PAIRS = ("pairwise", "revpairwise")  # emmeans's contrast type "pairs": the only Tukey families
POLY_NAMES = ["linear", "quadratic", "cubic", "quartic"] + [f"degree {d}" for d in range(5, 21)]
ZAP = 1e-7  # emmeans's zapsm() in joint tests: entries below this are 0


@dataclass
class GridVariable:
    name: str
    factor: bool  # a factor (levels) or a numeric variable (values)
    labels: list[str]  # as emmeans prints them
    values: list  # what the grid's column holds (labels for text columns, numbers otherwise)
    # a factor's level (index into labels, -1 where excluded by ``at``) on each row used, or on
    # each combination of the factors that occurs (a saved fit): which cells of the grid hold data
    codes: np.ndarray | None = field(default=None, repr=False)


@dataclass
class EmmeansResult:
    """The means (``means``: one dict per mean, in emmeans's column order), the contrasts (or
    None), the joint tests (or None) and the notes emmeans prints under each."""

    formula: str
    specs: list[str]
    by: list[str]
    ddf: str  # satterthwaite, kenward-roger or asymptotic
    level: float
    type: str  # link or response
    means: list[dict]
    mean_notes: list[str]
    contrasts: list[dict] | None = None
    contrast_notes: list[str] = field(default_factory=list)
    joint: list[dict] | None = None
    joint_notes: list[str] = field(default_factory=list)
    grid: dict[str, list] = field(default_factory=dict)  # the reference grid's values per variable
    linfct: np.ndarray | None = field(default=None, repr=False)  # ℓ of each mean (rows × p)
    warnings: list[str] = field(default_factory=list)  # what could mislead (stderr)


# ------------------------------------------------------------------------------ the grid


def _is_text(table: Table, name: str) -> bool:
    return isinstance(table.columns.get(name), TextColumn)


def _factor_exprs(formula) -> dict[str, object]:
    """Variables that enter a fixed-effect term only inside factor()/C() (numbers used as levels)."""
    inside, outside = {}, set()

    def walk(e, wrapped):
        if isinstance(e, Var):
            (inside.setdefault(e.name, wrapped) if wrapped is not None else outside.add(e.name))
        if isinstance(e, Call) and e.func in CATEGORICAL and wrapped is None:
            for a in e.args[:1]:
                walk(a, e)
            return
        for a in getattr(e, "args", ()):
            walk(a, wrapped)
        if hasattr(e, "operand"):
            walk(e.operand, wrapped)
        for side in ("left", "right"):
            if hasattr(e, side):
                walk(getattr(e, side), wrapped)

    for t in formula.terms:
        for e in t:
            walk(e, None)
    return {k: v for k, v in inside.items() if k not in outside}


def _grid_factors(frame) -> dict[str, object]:
    """The fixed-effect variables that are factors — a text column, or numbers inside factor()/C()
    — each with the expression that codes it, in the order the formula uses them."""
    from .predictions import fixed_variables

    table, wrapped = frame.table, _factor_exprs(frame.formula)
    return {n: Var(n) if _is_text(table, n) else wrapped[n] for n in fixed_variables(frame.formula)
            if _is_text(table, n) or n in wrapped}


def reference_grid(m, at: dict | None = None, reduce_range: bool = False) -> list[GridVariable]:
    """emmeans's ``ref_grid(m, at)``: the grid's variables in the order the formula uses them."""
    from .predictions import fixed_variables

    frame = m.frame
    if frame.table is None:
        raise UsageError(f"emmeans needs the fit's data, which its model frame was made without "
                         f"({option('keep_data', False)}): make the frame with {option('keep_data', True)}")
    table, rows = frame.table, frame.rows
    names = fixed_variables(frame.formula)
    factors = _grid_factors(frame)
    at = dict(at or {})
    for name in at:
        if name not in names:
            known = ", ".join(names) if names else "none"
            raise DataError(f"{option('at')} names '{name}', which is not a variable of the model's fixed effects "
                            f"(they are: {known})")
    out = []
    for name in names:
        if name in factors:
            labels, codes = categorical(factors[name], table, rows)
            codes = _cell_codes(frame, name, labels, codes)
            values = list(labels) if _is_text(table, name) else [float(x) for x in labels]
            if name in at:
                want = [str(v) for v in _as_list(at[name])]
                bad = [w for w in want if w not in labels]
                if bad:
                    raise DataError(f"{option('at')} {name}={bad[0]}: '{bad[0]}' is not a level of {name} "
                                    f"(its levels: {', '.join(labels)})")
                keep = [labels.index(w) for w in want]
                recode = np.full(len(labels) + 1, -1, dtype=np.int64)  # last slot: missing (-1)
                recode[keep] = np.arange(len(keep))
                codes = recode[codes]
                labels, values = [labels[i] for i in keep], [values[i] for i in keep]
            out.append(GridVariable(name, True, list(labels), values, codes))
            continue
        summary = covariate_summary(frame, name)
        if name in at:
            try:
                vals = [float(v) for v in _as_list(at[name])]
            except (TypeError, ValueError):
                raise DataError(f"{option('at')} {name}={at[name]}: {name} is numeric; give numbers "
                                "(e.g. 1.5, or 1,2,3 for several)") from None
        elif reduce_range:
            vals = [summary["min"], summary["max"]]
        else:
            vals = summary["values"] if summary["values"] is not None else [summary["mean"]]
        # cov.keep's two values are levels to average over, as a factor's
        out.append(GridVariable(name, len(vals) > 1, [r_number(v) for v in vals], vals))
    return out


def _cell_codes(frame, name: str, labels: list[str], codes: np.ndarray) -> np.ndarray:
    """A factor's level on each row used; for a saved fit (no rows), on each combination of the
    fixed-effect factors that occurred in them (``frame.cells``, labels per variable)."""
    cells = getattr(frame, "cells", None)
    if cells is None:
        return codes
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index.get(str(v), -1) for v in cells[name]], dtype=np.int64)


def occurring_cells(frame) -> dict[str, list[str]]:
    """The combinations of the fixed-effect factors' levels that occur in the rows used, as one
    list of labels per factor: what a saved fit keeps of its rows for emmeans's nesting."""
    factors = _grid_factors(frame)
    if not factors:
        return {}
    names = list(factors)
    labels, codes = zip(*[categorical(expr, frame.table, frame.rows) for expr in factors.values()])
    combos = np.unique(np.column_stack(codes), axis=0)
    combos = combos[np.all(combos >= 0, axis=1)]
    return {n: [lab[c] for c in combos[:, j]] for j, (n, lab) in enumerate(zip(names, labels))}


def covariate_summary(frame, name: str) -> dict:
    """What the reference grid takes from a numeric variable's values on the rows used: mean,
    min, max and, when it has at most two distinct values, those (else None). A saved fit
    (``mixcli.saved``) keeps these instead of the rows."""
    saved = getattr(frame, "covariates", None)
    if saved is not None:
        return saved[name]
    x = np.asarray(frame.table.columns[name], dtype=float)[frame.rows]
    x = x[~np.isnan(x)]
    uniq = np.unique(x)
    return {"mean": float(np.mean(x)), "min": float(x.min()), "max": float(x.max()),
            "values": [float(v) for v in uniq] if len(uniq) <= 2 else None}


def _as_list(v):
    if isinstance(v, (list, tuple, np.ndarray)):
        return list(v)
    return [v]


def grid_rows(grid: list[GridVariable]) -> tuple[np.ndarray, Table]:
    """Every combination of the grid's values (the first variable varying fastest, as R's
    expand.grid): their indices (rows × variables) and a Table of the values."""
    sizes = [len(g.values) for g in grid]
    if not grid:
        return np.zeros((1, 0), dtype=np.int64), Table({})
    idx = np.array(list(itertools.product(*[range(s) for s in reversed(sizes)])), dtype=np.int64)[:, ::-1]
    cols = {}
    for j, g in enumerate(grid):
        vals = [g.values[i] for i in idx[:, j]]
        cols[g.name] = TextColumn.from_values(vals) if isinstance(g.values[0], str) else np.array(vals, dtype=float)
    return idx, Table(cols)


# ------------------------------------------------------------------------------ nesting and estimability


def find_nesting(grid: list[GridVariable], formula) -> dict[str, list[str]]:
    """emmeans's ``.find_nests``: which factors of the grid are nested in which. From the data, a
    factor is nested in another when each of its levels occurs with one level of the other (a
    factor already found nested in it excepted); from the formula, a factor that enters only
    through interactions is nested in the factors it interacts with whose own margin is absent
    (``route/drug``). Then transitively, in emmeans's order."""
    from .predictions import variables

    names = [g.name for g in grid if g.codes is not None and len(g.values) > 1]
    if len(names) < 2:
        return {}
    codes = {g.name: g.codes for g in grid if g.name in names}
    present = np.all(np.column_stack([codes[n] for n in names]) >= 0, axis=1)
    result: dict[str, list[str]] = {}
    for nm in names:
        excluded = {k for k, v in result.items() if nm in v}
        parents = []
        for other in names:
            if other == nm or other in excluded:
                continue
            pairs = np.unique(np.column_stack([codes[nm][present], codes[other][present]]), axis=0)
            if pairs.size and np.bincount(pairs[:, 0]).max() == 1:
                parents.append(other)
        if parents:
            result[nm] = parents
    terms = [frozenset(variables(list(t))) for t in formula.terms]

    def coded(v, term):  # R's terms(): 1 where the term's margin without v is in the model, else 2
        rest = term - {v}
        return 1 if not rest or rest in terms else 2

    for nm in names:
        if frozenset([nm]) in terms:
            continue
        inside = [t for t in terms if nm in t]
        with_contrasts = [t for t in inside if coded(nm, t) == 1] or inside
        sets = [[n for n in names if n in t and n != nm and coded(n, t) == 2] for t in with_contrasts]
        sets.sort(key=len)
        kept = [s_ for i, s_ in enumerate(sets) if not any(set(o) <= set(s_) for o in sets[:i])]
        parents = _union(*kept) if kept else []
        if parents:
            result[nm] = _union(result.get(nm, []), parents)
    for nm in list(result):
        result[nm] = _union([p for q in result[nm] for p in result.get(q, [])], result[nm])
    return {k: v for k, v in result.items() if k not in v}


def nesting_text(nesting: dict[str, list[str]]) -> str:
    """As emmeans prints it: ``drug %in% route``, ``b %in% (a*c)``."""
    return ", ".join(f"{k} %in% {v[0] if len(v) == 1 else '(' + '*'.join(v) + ')'}" for k, v in nesting.items())


def _union(*lists) -> list:
    out = []
    for lst in lists:
        out.extend(x for x in lst if x not in out)
    return out


@dataclass
class _Cells:
    """A grid of means: per row the level of each variable (``idx``), the linear function ℓ of
    every model-matrix column (the aliased ones too) and how many data rows it stands for (emmeans's
    ``.wgt.``: only whether it is 0 matters); ``levels``, each variable's levels in play."""

    names: list[str]
    idx: np.ndarray
    L: np.ndarray
    w: np.ndarray
    levels: list[np.ndarray]


def _cell_weights(grid: list[GridVariable], idx: np.ndarray) -> np.ndarray:
    """The number of data rows (saved fit: occurring combinations) at each grid row's factor levels."""
    fpos = [j for j, g in enumerate(grid) if g.codes is not None]
    if not fpos:
        return np.ones(len(idx))
    data = np.column_stack([grid[j].codes for j in fpos])
    data = data[np.all(data >= 0, axis=1)]
    sizes = np.array([len(grid[j].values) for j in fpos])
    key = np.ravel_multi_index(data.T, sizes) if len(data) else np.zeros(0, dtype=np.int64)
    counts = np.bincount(key, minlength=int(np.prod(sizes)))
    return counts[np.ravel_multi_index(idx[:, fpos].T, sizes)].astype(float)


def _average(c: _Cells, keep: list[str]) -> _Cells:
    """emmeans() on a grid without nesting: for every combination of ``keep``'s levels (the first
    varying fastest), the equal-weight mean of its rows' ℓ."""
    pos = [c.names.index(k) for k in keep]
    levels = [c.levels[p] for p in pos]
    combos = np.array(list(itertools.product(*reversed(levels))), dtype=np.int64).reshape(-1, len(pos))[:, ::-1]
    out_idx, L, w = [], [], []
    for combo in combos:
        sel = np.all(c.idx[:, pos] == combo, axis=1)
        if sel.any():
            out_idx.append(combo)
            L.append(c.L[sel].mean(axis=0))
            w.append(c.w[sel].sum())
    return _Cells(list(keep), np.array(out_idx, dtype=np.int64).reshape(-1, len(pos)), np.array(L), np.array(w),
                  levels)


def _nested_average(c: _Cells, specs: list[str], by: list[str], nesting: dict[str, list[str]]) -> _Cells:
    """emmeans's ``.nested_emm``: a nested factor averaged over is averaged within each level of
    its parents, over the levels that occur there, before the parents are averaged over."""
    keep = _union(specs, by)
    afacs = [n for n in nesting if n in c.names and n not in keep]
    if not afacs:
        return _average(c, keep)
    sizes = [len(nesting[a]) for a in afacs]
    afac = afacs[max(range(len(afacs)), key=lambda i: (sizes[i], i))]  # the most parents; the last of equals
    grpfacs = _union(nesting[afac], [a for a in afacs if a != afac])
    gspecs = _union(specs, by, grpfacs)
    gpos = [c.names.index(g) for g in grpfacs]
    apos = c.names.index(afac)
    parts = []
    for combo in itertools.product(*reversed([c.levels[p] for p in gpos])):
        combo = np.array(combo[::-1], dtype=np.int64)
        rows = np.all(c.idx[:, gpos] == combo, axis=1)
        levs = np.unique(c.idx[rows & (c.w > 0), apos])
        if not levs.size:
            continue
        sub = rows & np.isin(c.idx[:, apos], levs)
        levels = list(c.levels)
        levels[apos] = levs
        for p, level in zip(gpos, combo):
            levels[p] = np.array([level])
        parts.append(_average(_Cells(c.names, c.idx[sub], c.L[sub], c.w[sub], levels), gspecs))
    gpos_all = [c.names.index(g) for g in gspecs]
    merged = _Cells(gspecs, np.vstack([q.idx for q in parts]), np.vstack([q.L for q in parts]),
                    np.concatenate([q.w for q in parts]), [c.levels[p] for p in gpos_all])
    return _nested_average(merged, specs, by, {k: v for k, v in nesting.items() if k in gspecs})


def marginal_cells(c: _Cells, specs: list[str], by: list[str], nesting: dict[str, list[str]]):
    """The means' cells for ``specs`` and ``by``, and the specs and by they are labelled with: a
    nested factor in either brings its parents into the specs, and only its levels that occur
    within them are shown (emmeans's ``.nested_emm`` and ``.find.nonempty.nests``)."""
    if not nesting:
        return _average(c, _union(specs, by)), specs, by
    orig_by = list(by)
    xspecs = [s for s in _union(specs, by) if s in nesting]
    if xspecs:
        specs = _union(xspecs, [p for x in xspecs for p in nesting[x]], specs)
        by = [b for b in by if b not in xspecs]
    out = _nested_average(c, specs, by, nesting)
    shown = np.ones(len(out.idx), dtype=bool)
    for x in xspecs:
        pos = [out.names.index(f) for f in _union([x], nesting[x])]
        _, group = np.unique(out.idx[:, pos], axis=0, return_inverse=True)
        shown &= np.bincount(group.ravel(), weights=out.w)[group.ravel()] > 0
    out = _Cells(out.names, out.idx[shown], out.L[shown], out.w[shown], out.levels)
    by_vars = _union([p for b in orig_by if b in nesting for p in nesting[b]], orig_by)
    spec_vars = [n for n in out.names if n not in by_vars]
    order = spec_vars + by_vars
    pos = [out.names.index(n) for n in order]
    return _Cells(order, out.idx[:, pos], out.L, out.w, [out.levels[p] for p in pos]), spec_vars, by_vars


def null_basis(frame) -> np.ndarray | None:
    """An orthonormal basis of the null space of the model matrix on the rows used, every column
    (the aliased ones too; p × the number of aliased columns), or None at full rank:
    estimability's ``nonest.basis``. A saved fit keeps it (``frame.null_basis``)."""
    if not frame.dropped_columns:
        return None
    if frame.X is None:  # a saved fit: no rows
        return frame.null_basis
    from ..design import model_matrix

    f = frame.formula
    design = model_matrix(f.intercept, f.terms, frame.table, frame.rows, frame.contrasts)
    cols = [j for j, n in enumerate(design.names) if n in frame.fixef_names or n in frame.dropped_columns]
    r = np.linalg.qr(design.X[:, cols], mode="r")
    return np.linalg.svd(r)[2][-len(frame.dropped_columns):].T


def is_estimable(L: np.ndarray, basis: np.ndarray | None, tol: float = 1e-8) -> np.ndarray:
    """estimability's ``is.estble``: ℓ is estimable when ‖Nᵀℓ‖² < tol·‖ℓ‖² (‖ℓ‖² below tol taken as 1)."""
    if basis is None:
        return np.ones(len(L), dtype=bool)
    chk = L @ basis
    ssq = np.sum(L * L, axis=1)
    ssq[ssq < tol] = 1.0
    return np.sum(chk * chk, axis=1) < tol * ssq


def _design(m, table: Table) -> np.ndarray:
    from .predictions import fixed_design

    return fixed_design(m.frame, table, who="emmeans")


# ------------------------------------------------------------------------------ inference


class _Inference:
    """V and the df of a linear function ℓ of β̂, by the method asked for."""

    def __init__(self, m, ddf: str):
        self.ddf = ddf
        self.beta = np.array([f.estimate for f in m.fixef], dtype=float)
        self.vcov = np.asarray(m.vcov, dtype=float)
        self._df = None
        if ddf == "satterthwaite":
            from .satterthwaite import satterthwaite

            sat = satterthwaite(m)
            self._df = sat.df
        elif ddf == "kenward-roger":
            from .kenward_roger import kenward_roger

            try:
                kr = kenward_roger(m)
            except ValueError as err:
                raise DataError(f"Kenward-Roger df: {err}") from None
            self.vcov = np.asarray(kr.vcov_adj, dtype=float)
            self._df = lambda ell: kr.ddf(ell)[0]

    def df(self, ell: np.ndarray) -> float:
        return math.inf if self._df is None else float(self._df(ell))

    def estimates(self, L: np.ndarray):
        est = L @ self.beta
        se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", L, self.vcov, L), 0.0))
        df = np.array([self.df(ell) for ell in L])
        return est, se, df


def _t_quantile(p: float, df: np.ndarray) -> np.ndarray:
    from scipy.stats import t

    return t.ppf(p, df)


def _t_two_sided(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    from .distributions import t_two_sided

    return np.array([t_two_sided(float(a), float(d)) for a, d in zip(t, df)])


# ------------------------------------------------------------------------------ contrasts


def contrast_matrix(method: str, labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """emmeans's ``<method>.emmc(levs)``: coefficients (levels × contrasts) and their labels."""
    k = len(labels)
    cols, names = [], []
    if method == "pairwise":
        for i in range(k - 1):
            for j in range(i + 1, k):
                c = np.zeros(k)
                c[i], c[j] = 1.0, -1.0
                cols.append(c)
                names.append(f"{labels[i]} - {labels[j]}")
    elif method == "revpairwise":  # later level minus earlier, by the later level
        for j in range(1, k):
            for i in range(j):
                c = np.zeros(k)
                c[i], c[j] = -1.0, 1.0
                cols.append(c)
                names.append(f"{labels[j]} - {labels[i]}")
    elif method == "trt.vs.ctrl":
        for i in range(1, k):
            c = np.zeros(k)
            c[0], c[i] = -1.0, 1.0
            cols.append(c)
            names.append(f"{labels[i]} - {labels[0]}")
    elif method == "poly":
        P = _poly_integers(k)
        return P, POLY_NAMES[:P.shape[1]]
    elif method == "consec":
        for i in range(k - 1):
            c = np.zeros(k)
            c[i], c[i + 1] = -1.0, 1.0
            cols.append(c)
            names.append(f"{labels[i + 1]} - {labels[i]}")
    else:
        raise UsageError(f"unknown contrast '{method}'; use one of {', '.join(METHODS)}")
    return (np.array(cols).T if cols else np.zeros((k, 0))), names


def _poly_integers(k: int) -> np.ndarray:
    """emmeans's ``poly.emmc``: R's orthogonal polynomials on 1..k (``poly()``, highest power's
    coefficient positive), each column scaled to small integers as emmeans scales them."""
    degree = min(6, k - 1)
    x = np.arange(1, k + 1, dtype=float)
    x -= x.mean()
    basis = np.vander(x, degree + 1, increasing=True)
    q, r = np.linalg.qr(basis)
    q = q * np.sign(np.diag(r))  # Gram–Schmidt's signs: each power enters positively
    out = np.zeros((k, degree))
    for j in range(1, degree + 1):
        con = q[:, j]
        con = con / np.min(con[con > 0.01])
        z = np.max(np.abs(con - np.round(con)))
        while z > 0.05:
            con = con / z
            z = np.max(np.abs(con - np.round(con)))
        out[:, j - 1] = np.round(con)
    return out


def _zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    finite = x[np.isfinite(x)]
    mx = float(np.max(np.abs(finite))) if finite.size else 0.0
    if not mx > 0:
        return x
    return np.round(x, max(0, digits - math.ceil(math.log10(mx))))


def _adjust(t: np.ndarray, df: np.ndarray, adjust: str, fam_size: int, n_contr: int) -> np.ndarray:
    """emmeans's ``.adj.p.value`` for one family (a by group): two-sided p-values."""
    unadj = _t_two_sided(t, df)
    at = np.abs(t)
    if adjust == "none":
        return unadj
    if adjust == "bonferroni":
        return np.minimum(1.0, unadj * n_contr)
    if adjust == "holm":
        order = np.argsort(unadj, kind="stable")
        scaled = np.maximum.accumulate((n_contr - np.arange(len(unadj))) * unadj[order])
        out = np.empty_like(unadj)
        out[order] = np.minimum(1.0, scaled)
        return out
    if adjust == "sidak":
        return 1.0 - (1.0 - unadj) ** n_contr
    from scipy.stats import f as f_dist
    from scipy.stats import studentized_range

    if adjust == "tukey":
        return studentized_range.sf(math.sqrt(2.0) * at, fam_size, _zapsmall(df))
    if adjust == "dunnettx":  # emmeans's .pdunnx: a weighted mean of Tukey's and Šidák's
        k = n_contr
        twt = (k - 1) / k
        tukey = studentized_range.cdf(math.sqrt(2.0) * at, (1.0 + math.sqrt(1.0 + 8.0 * k)) / 2.0, df)
        sidak = f_dist.cdf(at * at, 1, df) ** k
        return 1.0 - (twt * tukey + (1.0 - twt) * sidak)
    raise UsageError(f"unknown adjustment '{adjust}'; use one of {', '.join(ADJUSTS)}")


def _adjust_note(adjust: str, fam_size: int, n_contr: int) -> str | None:
    """emmeans's "P value adjustment: ..." line (none for an unadjusted or a two-mean Tukey family)."""
    chk = {"none": 1, "tukey": 2}.get(adjust, 99)
    fs = fam_size if adjust == "tukey" else (1 + math.sqrt(1 + 8 * n_contr)) / 2
    if chk == 1 or (fs < 3 and chk < 10):
        return None
    if adjust == "tukey":
        return f"P value adjustment: tukey method for comparing a family of {fam_size} estimates"
    return f"P value adjustment: {adjust} method for {n_contr} tests"


# ------------------------------------------------------------------------------ the entry point


RESPONSE_NAMES = {"binomial": "prob", "poisson": "rate"}
RATIO_NAMES = {"logit": ("odds.ratio", "log odds ratio"), "log": ("ratio", "log")}


def parse_specs(specs) -> tuple[list[str], list[str]]:
    """``"A"``, ``"A:B"``, ``"A*B"``, ``"A + B"``, ``"A | C"`` or a list → (specs, by)."""
    if isinstance(specs, (list, tuple)):
        return [str(s).strip() for s in specs], []
    text = str(specs).strip().lstrip("~").strip()
    main, _, by = text.partition("|")

    def split(s):
        return [p for p in (x.strip() for x in s.replace("*", ",").replace(":", ",").replace("+", ",").split(","))
                if p]
    return split(main), split(by)


def emmeans(m, specs, by=(), at: dict | None = None, contrast: str | None = None, adjust: str | None = None,
            ddf: str = "satterthwaite", level: float = 0.95, type: str = "link",
            joint: bool = False) -> EmmeansResult:
    """R's ``emmeans(m, specs, by, at, type)`` with ``contrast(…, method = contrast, adjust)`` and
    ``joint_tests(m, by)``: see the module docstring."""
    spec_list, by_extra = parse_specs(specs)
    by_list = list(by_extra) + ([b for b in ([by] if isinstance(by, str) else by) if b] if by else [])
    glmm = bool(getattr(m, "is_glmm", False))
    if type not in ("link", "response"):
        raise UsageError(f"unknown type '{type}'; use link or response")
    if type == "response" and not glmm:
        raise UsageError(f"{option('type', RESPONSE)} back-transforms a GLMM's means from its link scale; a linear "
                         "mixed model's means are already on the response scale: leave it out")
    if contrast is not None and contrast not in METHODS:
        raise UsageError(f"unknown contrast '{contrast}'; use one of {', '.join(METHODS)}")
    if adjust is not None and adjust not in ADJUSTS:
        raise UsageError(f"unknown adjustment '{adjust}'; use one of {', '.join(ADJUSTS)}")
    if adjust is not None and contrast is None:
        raise UsageError(f"{option('adjust')} adjusts the p-values of contrasts: add {option('contrast', 'pairwise')}")
    if not 0.0 < level < 1.0:
        raise UsageError(f"the confidence level must be between 0 and 1, not {level:g}")
    key = DDFS.get(str(ddf).lower())
    if key is None:
        raise UsageError(f"unknown ddf '{ddf}'; use satterthwaite, kr or asymptotic")
    ddf = "asymptotic" if glmm else key
    if ddf == "kenward-roger" and not m.reml:
        raise UsageError("Kenward-Roger df are for REML fits (pbkrtest); refit without ML, or use satterthwaite")
    frame = m.frame
    if ddf == "kenward-roger" and frame.X is None:  # a saved fit (mixcli.saved) keeps no rows
        raise UsageError("Kenward-Roger df need the fit's rows, which a saved fit does not keep: use satterthwaite, "
                         "or fit the model from its data")
    if frame.formula.offsets:
        raise UsageError("emmeans of a model with an offset is not supported yet; fit it without offset()")
    if not spec_list:
        raise UsageError(f"{option('specs')} names no variable; give a factor of the model, e.g. 'condition'")

    grid = reference_grid(m, at)
    gnames = [g.name for g in grid]
    for name in spec_list + by_list:
        if name not in gnames:
            known = ", ".join(gnames) if gnames else "none"
            what = option("by") if name in by_list and name not in spec_list else option("specs")
            raise DataError(f"{what} '{name}' is not a variable of the model's fixed effects (they are: {known})")
    if set(spec_list) & set(by_list):
        raise UsageError(f"'{sorted(set(spec_list) & set(by_list))[0]}' is in both {option('specs')} and {option('by')}")

    from .predictions import fixed_design

    idx, table = grid_rows(grid)
    names, Xfull = fixed_design(frame, table, who="emmeans", aliased=True)
    fitted = [names.index(n) for n in frame.fixef_names]
    inf = _Inference(m, ddf)

    nesting = find_nesting(grid, frame.formula)
    if joint and (nesting or frame.dropped_columns):
        why = (f"nested factors ({nesting_text(nesting)})" if nesting else
               f"a rank-deficient fit (columns {', '.join(frame.dropped_columns)} were dropped)")
        raise UsageError(f"joint tests with {why} are not supported yet: leave out the joint tests")
    cells = _Cells(gnames, idx, Xfull, _cell_weights(grid, idx), [np.arange(len(g.values)) for g in grid])
    cells, spec_list, by_list = marginal_cells(cells, spec_list, by_list, nesting)
    keep = spec_list + by_list
    kpos = [gnames.index(n) for n in keep]
    combos = cells.idx[:, [cells.names.index(n) for n in keep]]
    nbasis = null_basis(frame)  # (a model matrix over the rows: once, for the means and the contrasts)
    estimable = is_estimable(cells.L, nbasis)
    L = cells.L[:, fitted]
    est, se, df = inf.estimates(L)
    est[~estimable] = se[~estimable] = df[~estimable] = math.nan
    asym = bool(np.all(np.isinf(df[estimable])))

    fam = frame.family if glmm else None
    link = fam.link if fam is not None else None
    means, mean_notes, warnings = [], [], []
    averaged = [g.name for g in grid if g.name not in keep and len(g.values) > 1]
    if averaged:
        mean_notes.append(f"Results are averaged over the levels of: {', '.join(averaged)}")
    if nesting:
        mean_notes.insert(0, "Nesting structure detected in the fitted model: " + nesting_text(nesting))
    if not estimable.all():
        mean_notes.append("nonEst: a mean that is not estimable from this rank-deficient fit (NA)")
    involved = _interaction_warning(frame.formula, keep, gnames)
    if involved:
        warnings.append("results may be misleading: " + involved + " (emmeans's NOTE)")
    q = _t_quantile(1.0 - (1.0 - level) / 2.0, df)
    lo, hi = est - q * se, est + q * se
    response = type == "response"
    if ddf != "asymptotic" or not asym:
        mean_notes.append(f"Degrees-of-freedom method: {ddf}")
    mean_notes.append(f"Confidence level used: {level:g}")
    if response:
        mean_notes.append(f"Intervals are back-transformed from the {link.name} scale")
    elif glmm:
        mean_notes.insert(0, f"Results are given on the {link.name} (not the response) scale.")
    lo_name, hi_name = ("asymp.LCL", "asymp.UCL") if asym else ("lower.CL", "upper.CL")
    est_name = RESPONSE_NAMES.get(fam.name, "response") if response else "emmean"
    for r, combo in enumerate(combos):
        row = {n: grid[j].labels[c] for n, j, c in zip(keep, kpos, combo)}
        if not estimable[r]:  # emmeans's nonEst: no number
            row.update(dict.fromkeys([est_name, "SE", "df", lo_name, hi_name]))
        elif response:
            mu = float(link.linkinv(np.array([est[r]]))[0])
            dmu = abs(float(link.mu_eta(np.array([est[r]]))[0]))
            ends = link.linkinv(np.array([lo[r], hi[r]]))
            row.update({est_name: mu, "SE": se[r] * dmu, "df": float(df[r]), lo_name: float(ends[0]),
                        hi_name: float(ends[1])})
        else:
            row.update({est_name: float(est[r]), "SE": float(se[r]), "df": float(df[r]), lo_name: float(lo[r]),
                        hi_name: float(hi[r])})
        means.append(row)

    result = EmmeansResult(formula=frame.formula.text, specs=spec_list, by=by_list, ddf=ddf, level=level, type=type,
                           means=means, mean_notes=mean_notes, grid={g.name: g.labels for g in grid}, linfct=L,
                           warnings=warnings)
    if contrast is not None:
        _contrasts(result, contrast, adjust, L, est, inf, grid, spec_list, by_list, combos, kpos, link, response,
                   averaged, nested=bool(nesting), full=(cells.L, nbasis))
    if joint:
        _joint(result, m, at, by_list, inf, averaged)
    return result


RESPONSE = "'response'"


def _interaction_warning(formula, keep: list[str], names: list[str]) -> str:
    """emmeans's "Results may be misleading due to involvement in interactions": a term with a
    variable of ``specs``/``by`` and one averaged over (or held at its mean)."""
    from .predictions import variables

    for t in formula.terms:
        vars_ = set(variables(list(t)))
        if len(vars_) > 1 and vars_ & set(keep) and vars_ - set(keep):
            inside = ", ".join(sorted(vars_ & set(keep)))
            other = ", ".join(sorted(vars_ - set(keep)))
            return (f"{inside} interacts with {other} in the model, so these means are at a single value (or "
                    f"an average) of {other}")
    return ""


def _label(grid, kpos, combo, spec_n: int) -> str:
    """A mean's name in a contrast, as emmeans writes it: numeric levels prefixed by their
    variable's name (P-1, P1), and in parentheses when they hold an operator ((P-1) - P1)."""
    parts = []
    for j, c in zip(kpos[:spec_n], combo[:spec_n]):
        g = grid[j]
        parts.append(g.labels[c] if isinstance(g.values[0], str) else f"{g.name}{g.labels[c]}")
    label = " ".join(parts)
    return f"({label})" if any(op in label for op in "-+*/") else label


def _contrasts(result, method, adjust, L, est, inf, grid, spec_list, by_list, combos, kpos, link, response, averaged,
               nested: bool = False, full=None):
    """The contrasts of the means within each by group; ``full``: the means' ℓ over every column of
    the model matrix and its null basis, to leave out (NA) a contrast that is not estimable."""
    n_spec = len(spec_list)
    # the means of each by group (consecutive rows: the by variables vary slowest); with nested
    # factors the groups may differ in size
    _, first, group_of = np.unique(combos[:, n_spec:], axis=0, return_index=True, return_inverse=True)
    group_of = np.asarray(group_of).ravel()
    groups = [np.flatnonzero(group_of == g) for g in np.argsort(first)]
    n_levels = max(len(g) for g in groups)
    n_contr = max(contrast_matrix(method, [str(i) for i in range(len(g))])[0].shape[1] for g in groups)
    chosen = adjust if adjust is not None else DEFAULT_ADJUST[method]
    notes = []
    if averaged:
        notes.append(f"Results are averaged over the levels of: {', '.join(averaged)}")
    if n_contr <= 1:
        chosen = "none"
    elif chosen == "tukey" and method not in PAIRS:
        chosen = "sidak"
        result.warnings.append("adjust tukey was changed to sidak: tukey is only appropriate for one set of "
                               "pairwise comparisons (as emmeans does)")
    ratio = RATIO_NAMES.get(link.name) if (response and link is not None) else None
    rows = []
    for grp in groups:
        C, names = contrast_matrix(method, [_label(grid, kpos, combos[i], n_spec) for i in grp])
        Lc = C.T @ L[grp]
        e, s, d = inf.estimates(Lc)
        ok = is_estimable(C.T @ full[0][grp], full[1]) if full is not None else np.ones(len(e), dtype=bool)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = e / s
        p = _adjust(t, d, chosen, len(grp), C.shape[1])
        by_cells = {n: grid[j].labels[c] for n, j, c in zip(by_list, kpos[n_spec:], combos[grp[0]][n_spec:])}
        asym = bool(np.all(np.isinf(d)))
        for i in range(C.shape[1]):
            name = names[i].replace(" - ", " / ") if ratio else names[i]
            # emmeans's contrasts of nested means, by group, are rbind-ed: the by variables first
            row = {**by_cells, "contrast": name} if nested and len(groups) > 1 else {"contrast": name, **by_cells}
            if not ok[i]:  # emmeans's nonEst
                row.update(dict.fromkeys([ratio[0] if ratio else "estimate", "SE", "df"]))
                row.update({"null": 1.0} if ratio else {})
                row["z.ratio" if asym else "t.ratio"] = None
                row["p.value"] = None
                rows.append(row)
                continue
            if ratio:
                r = math.exp(e[i])
                row.update({ratio[0]: r, "SE": r * float(s[i]), "df": float(d[i]), "null": 1.0})
            else:
                row.update({"estimate": float(e[i]), "SE": float(s[i]), "df": float(d[i])})
            row["z.ratio" if asym else "t.ratio"] = float(t[i])
            row["p.value"] = float(p[i])
            rows.append(row)
    if result.ddf != "asymptotic":
        notes.append(f"Degrees-of-freedom method: {result.ddf}")
    note = _adjust_note(chosen, n_levels, n_contr)
    if note:
        notes.append(note)
    if ratio:
        notes.append(f"Tests are performed on the {ratio[1]} scale")
    elif link is not None:
        scale = RATIO_NAMES[link.name][1] if link.name in RATIO_NAMES else link.name
        notes.insert(0, f"Results are given on the {scale} (not the response) scale.")
    result.contrasts = rows
    result.contrast_notes = notes


def _orthonormal_rows(L: np.ndarray) -> np.ndarray:
    """An orthonormal basis of L's row space, Gram–Schmidt in the rows' order, dependent rows
    left out: the rows of tQ of R's qr(t(L)) (up to sign), as emmeans's joint test takes them."""
    basis = []
    for row in L:
        v = row.astype(float).copy()
        norm0 = np.linalg.norm(v)
        if norm0 == 0:
            continue
        for _ in range(2):  # twice is enough (Kahan)
            for b in basis:
                v -= (b @ v) * b
        if np.linalg.norm(v) > 1e-7 * norm0:
            basis.append(v / np.linalg.norm(v))
    return np.array(basis) if basis else np.zeros((0, L.shape[1]))


def _joint(result, m, at, by_list, inf, averaged):
    """emmeans's ``joint_tests``: see the module docstring."""
    from .distributions import f_sf

    grid = reference_grid(m, at, reduce_range=True)
    gnames = [g.name for g in grid]
    facs = [g.name for g in grid if g.name not in by_list and len(g.values) > 1]
    idx, table = grid_rows(grid)
    X = _design(m, table)
    bpos = [gnames.index(b) for b in by_list]
    by_sizes = [len(grid[j].values) for j in bpos]
    by_combos = (np.array(list(itertools.product(*[range(s) for s in reversed(by_sizes)])), dtype=np.int64)[:, ::-1]
                 if bpos else np.zeros((1, 0), dtype=np.int64))

    # emmeans's do.test: sets of factors depth-first in the grid's order, then sorted by size
    sets = []

    def walk(these, last):
        if these:
            sets.append(these)
        for i in range(last, len(facs)):
            walk(these + [facs[i]], i + 1)
    walk([], 0)
    sets.sort(key=len)

    rows = []
    for these in sets:
        tpos = [gnames.index(n) for n in these]
        sizes = [len(grid[j].values) for j in tpos]
        combos = np.array(list(itertools.product(*[range(s) for s in reversed(sizes)])), dtype=np.int64)[:, ::-1]
        # interaction contrasts: the Kronecker product of consecutive differences, first factor fastest
        C = np.ones((1, 1))
        for s in sizes:
            D = np.zeros((s, s - 1))
            D[np.arange(s - 1), np.arange(s - 1)] = -1.0
            D[np.arange(1, s), np.arange(s - 1)] = 1.0
            C = np.kron(D, C)
        for bc in by_combos:
            Lm = np.zeros((len(combos), X.shape[1]))
            for r, combo in enumerate(combos):
                sel = np.all(idx[:, tpos] == combo, axis=1)
                if bpos:
                    sel &= np.all(idx[:, bpos] == bc, axis=1)
                Lm[r] = X[sel].mean(axis=0)
            Lc = C.T @ Lm
            Lc[np.abs(Lc) < ZAP] = 0.0
            Lc = Lc[~np.all(Lc == 0, axis=1)]
            Q = _orthonormal_rows(Lc)
            r = Q.shape[0]
            if r == 0:
                continue
            z = Q @ inf.beta
            F = float(z @ np.linalg.solve(Q @ inf.vcov @ Q.T, z)) / r
            df2 = min(inf.df(q) for q in Q)
            row = {"model term": ":".join(these)}
            row.update({b: grid[j].labels[c] for b, j, c in zip(by_list, bpos, bc)})
            row.update({"df1": r, "df2": df2, "F.ratio": F, "p.value": f_sf(F, r, df2)})
            rows.append(row)
    result.joint = rows
    notes = []
    if result.ddf != "asymptotic":
        notes.append(f"Degrees-of-freedom method: {result.ddf}")
    result.joint_notes = notes
