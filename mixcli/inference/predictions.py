"""Fitted values, residuals and predictions of a linear mixed model, as lme4 computes them.

* ``augment(m)`` — per row used, broom.mixed's ``augment()`` columns: ``.fitted`` (lme4's
  ``fitted()``: Xβ̂ + Zb̂ + offset, conditional on the random effects), ``.fixed``
  (``predict(m, re.form = NA)``: Xβ̂ + offset), ``.resid`` (``residuals()``: y − .fitted) and
  ``.resid_pearson`` (``residuals(m, type = "pearson", scaled = TRUE)``: √w (y − .fitted) / σ̂).
  For a GLMM, glmer's: ``.fitted`` μ̂ = g⁻¹(η̂) (``fitted()``, the response scale), ``.fixed``
  g⁻¹(Xβ̂ + offset) (``predict(m, re.form = NA, type = "response")``), ``.eta`` η̂
  (``predict(m)``, the link scale), ``.resid`` the deviance residuals sign(y − μ̂)·√devresid
  (``residuals()``'s default for GLMMs) and ``.resid_pearson`` √w (y − μ̂) / √V(μ̂).
* ``predict(m, new, population=False, se=False)`` — ``predict(m, newdata)`` for new rows:
  conditional on the fitted random effects, a level the fit has never seen getting 0 (lme4's
  ``allow.new.levels = TRUE``), or with ``population`` the fixed part only (``re.form = NA``);
  ``se`` adds the standard error of the fixed part, √(x Var(β̂) xᵀ) — all of a population
  prediction's, but without the random effects' uncertainty next to a conditional one;
  ``interval="prediction"`` adds a prediction interval for a new observation (below).

The prediction interval of a linear mixed model is the recipe lme4 users compute by hand
(Bolker's GLMM FAQ; merTools' ``predictInterval`` approximates the same by simulation):
predicted ± q √v, q the standard normal quantile at (1 + level)/2 and

    v = x Var(β̂) xᵀ + σ̂² + Σ_terms z V zᵀ,

V the conditional covariance of the row's level given the data and β̂ (lme4's
``ranef(condVar = TRUE)`` "postVar", σ̂² Λ S Λᵀ) for a level the fit has seen, and the term's
covariance σ̂² Λ Λᵀ (``VarCorr``) for a level it has not seen — and for every term of a
population prediction. It is an approximation: it ignores the covariance between β̂ and b̂, the
covariances between the conditional modes of different terms, and the uncertainty in θ̂ (and
so σ̂), and treats the whole as normal; a fit with prior weights (whose new rows' residual
variances σ̂²/w are unknown) and a GLMM (no residual variance) have none.

New rows are coded exactly as the fitted rows: their design matrix is built on the fitted
table with the new rows appended, so factor levels keep the fit's order and reference level.
Functions whose values depend on all rows (``scale``, ``poly``, ``ns``, ``bs``) are evaluated
with what they remember of the fitted data (``fitted_state``: centre and SD, polynomial
coefficients, knots), as R's ``makepredictcall`` makes ``predict`` do; beyond the boundary knots
a spline is extrapolated as R's ``predict.bs``/``predict.ns`` do. Numbers in a
column that is text in the data (labels that happen to be digits) are the labels R's
as.character() writes for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..design import model_matrix
from ..errors import DataError, UsageError, option
from ..formula.evaluate import evaluate, non_numeric_labels, number_labels
from ..formula.exprs import Var
from ..frame import ROW_ID
from ..table import Table, TextColumn, is_missing
from .distributions import norm_ppf

# functions of all rows (R keeps their state in the terms object for predict())


def augment(m) -> dict[str, np.ndarray]:
    """The broom.mixed ``augment()`` columns of the rows used, in their order."""
    if m.is_glmm:
        return _glmm_augment(m)
    frame = m.frame
    beta = np.array([f.estimate for f in m.fixef])
    fixed = frame.X @ beta
    if frame.offset is not None:
        fixed = fixed + frame.offset
    fitted = fixed + _random_part(m)
    resid = frame.y - fitted
    w = np.ones_like(resid) if frame.weights is None else np.asarray(frame.weights, dtype=float)
    return {".fitted": fitted, ".fixed": fixed, ".resid": resid, ".resid_pearson": np.sqrt(w) * resid / m.sigma}


def _glmm_augment(m) -> dict[str, np.ndarray]:
    data, modes = m.data, m.modes
    fam = data.family
    beta = np.array([f.estimate for f in m.fixef])
    fixed_eta = data.x @ beta + data.offset
    mu = modes.mu
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.maximum(fam.dev_resids(data.y, mu, data.wt), 0.0)
        return {".fitted": mu, ".fixed": fam.link.linkinv(fixed_eta), ".eta": modes.eta,
                ".resid": np.sign(data.y - mu) * np.sqrt(dev),
                ".resid_pearson": np.sqrt(data.wt) * (data.y - mu) / np.sqrt(fam.variance(mu))}


def _random_part(m) -> np.ndarray:
    """Zb̂ on the rows used: each term's columns times its conditional modes at the row's level."""
    out = np.zeros(m.nobs)
    for term, b in zip(m.frame.terms, m.conditional_modes()):
        out += np.einsum("ij,ij->i", term.z, b[term.codes])
    return out


@dataclass
class Prediction:
    predicted: np.ndarray  # one value per new row (NaN where a predictor is missing)
    se: np.ndarray | None  # standard error of the fixed part, when asked for
    new_levels: dict[str, int]  # grouping factor -> rows whose level the fit has not seen (or missing)
    missing: int  # rows left NaN for a missing predictor
    lower: np.ndarray | None = None  # the prediction interval's ends, when asked for
    upper: np.ndarray | None = None


def predict(m, new: Table, population: bool = False, se: bool = False, type: str = "link",
            interval: str | None = None, level: float = 0.95) -> Prediction:
    """lme4's ``predict(m, newdata, allow.new.levels = TRUE)`` (``re.form = NA`` with
    ``population``) for the rows of ``new``; ``se`` adds the fixed part's standard error. For a
    GLMM, ``type`` is lme4's: ``link`` (η, the default) or ``response`` (μ = g⁻¹(η)); the
    standard error is the link scale's only. ``interval="prediction"`` adds the ends of a
    prediction interval of coverage ``level`` for a new observation of a linear mixed model,
    predicted ± q √(x Var(β̂) xᵀ + σ̂² + the random part's variance), q the normal quantile:
    see the module's docstring for the recipe and what it leaves out."""
    check_type(type, se, m.is_glmm)
    check_interval(interval, level, m.is_glmm, m.frame.weights is not None)
    frame = m.frame
    f = frame.formula
    _check_rebuildable(frame, "predict")
    fixed_vars = _names([e for t in f.terms for e in t] + list(f.offsets))
    # a population interval needs the random effects' columns z (not their levels): z Σ zᵀ
    random_vars = ([] if population and interval is None
                   else _names([e for rt in f.random for t in rt.terms for e in t]))
    groups = [] if population else sorted({g for rt in f.random for g in rt.group})
    needed = list(dict.fromkeys(fixed_vars + random_vars + groups))
    if ROW_ID in needed and ROW_ID not in new.columns:
        # (1 | .row) in the formula: each new row is a new observation, a level the fit never saw
        # (numbered −1, −2, … so as not to meet the fitted rows' 1, 2, …): its effect is 0
        new = Table({**new.columns, ROW_ID: -np.arange(1, new.nrows + 1, dtype=float)}, source=new.source,
                    nrows=new.nrows)
    for name in needed:
        if name not in new.columns:
            what = ("fixed effects" if name in fixed_vars else "random effects (their variance in the interval)"
                    if population else f"random effects (or use {option('population', True)})")
            raise DataError(f"{option('newdata')} has no column '{name}', which the formula's {what} need")
    n_old = int(frame.rows.sum())
    combined = _append(frame.table, frame.rows, new, needed, labels=set(groups) - set(fixed_vars + random_vars))
    missing = np.zeros(new.nrows, dtype=bool)
    for name in fixed_vars + random_vars:
        missing |= is_missing(combined.columns[name])[n_old:]
    ok = np.zeros(combined.nrows, dtype=bool)
    ok[n_old:] = ~missing
    old = np.zeros(combined.nrows, dtype=bool)
    old[:n_old] = True
    X = _fixed_design(f, combined, old, ok, frame)
    beta = np.array([fe.estimate for fe in m.fixef])
    out = np.full(new.nrows, np.nan)
    out[~missing] = X @ beta
    for o in f.offsets:
        out = out + evaluate(o, combined, fitted_state(frame))[n_old:]
    se_out = None
    if se:
        se_out = np.full(new.nrows, np.nan)
        se_out[~missing] = np.sqrt(np.einsum("ij,jk,ik->i", X, np.asarray(m.vcov), X))
    new_levels: dict[str, int] = {}
    random_var = None if interval is None else np.zeros(new.nrows)
    if not population or interval is not None:
        random = _new_random_part(m, combined, n_old, ok, new_levels, population, random_var)
        if not population:
            out = out + random
    if m.is_glmm and type == "response":
        with np.errstate(invalid="ignore"):
            out = m.data.family.link.linkinv(out)
    lower = upper = None
    if interval is not None:
        var = np.full(new.nrows, np.nan)
        var[~missing] = np.einsum("ij,jk,ik->i", X, np.asarray(m.vcov), X) + m.sigma**2 + random_var[~missing]
        half = norm_ppf((1.0 + level) / 2.0) * np.sqrt(var)
        lower, upper = out - half, out + half
    return Prediction(out, se_out, new_levels, int(missing.sum()), lower, upper)


def _check_rebuildable(frame, who: str):
    """Whether new rows can be coded as the fitted ones were: the frame holds the fit's data (or a
    saved fit's prototype of it)."""
    if frame.table is None:
        raise UsageError(f"{who} needs the fit's data, which its model frame was made without "
                         f"({option('keep_data', False)}): make the frame with {option('keep_data', True)}")


def fitted_state(frame) -> dict:
    """What the stateful calls of the formula (``scale()``, ``poly()``, ``ns()``, ``bs()``)
    remember of the fitted data, by label (``formula.evaluate.stateful_parameters``), so that new
    rows are evaluated as R's predict evaluates them (``makepredictcall``); a saved fit keeps it.
    Computed once per frame (a pass over the data's columns) and kept on it: predict asks for it
    for the fixed part, the offsets and each random term."""
    from ..formula.evaluate import stateful_parameters

    if frame.stateful is None:
        f = frame.formula
        exprs = [e for t in f.terms for e in t] + list(f.offsets) + [e for rt in f.random for t in rt.terms for e in t]
        frame.stateful = stateful_parameters(exprs, frame.table)
    return frame.stateful


def fixed_design(frame, new: Table, who: str = "predict", aliased: bool = False):
    """The fixed-effect columns of the rows of ``new`` (every fixed-effect variable present, none
    missing), coded exactly as the fitted rows: the same machinery as ``predict``'s, for callers
    that make their own rows (emmeans's reference grid). ``who`` names the caller in messages.

    With ``aliased``, every column of the model matrix, the ones a rank-deficient fit dropped
    too: ``(names, X_new)`` (emmeans checks estimability against the whole model matrix)."""
    f = frame.formula
    _check_rebuildable(frame, who)
    needed = _names([e for t in f.terms for e in t])
    n_old = int(frame.rows.sum())
    combined = _append(frame.table, frame.rows, new, needed)
    ok = np.zeros(combined.nrows, dtype=bool)
    ok[n_old:] = True
    old = ~ok
    return _fixed_design(f, combined, old, ok, frame, aliased)


def fixed_variables(formula) -> list[str]:
    """The data columns the fixed-effect terms use, in the order they first appear."""
    return variables([e for t in formula.terms for e in t])


def variables(exprs) -> list[str]:
    """The data columns the expressions use, in the order they first appear."""
    return _names(exprs)


def check_interval(interval: str | None, level: float, glmm: bool, weighted: bool) -> None:
    """An interval this module computes: a prediction interval of a linear mixed model fitted
    without prior weights, at a level strictly between 0 and 1."""
    if interval is None:
        return
    if interval != "prediction":
        raise UsageError(f"unknown interval '{interval}'; use 'prediction' (or None for none)")
    if not 0.0 < level < 1.0:
        raise UsageError(f"the interval's level must be between 0 and 1, not {level:g}")
    if glmm:
        raise UsageError("a prediction interval needs a residual variance, which a GLMM does not have; the fixed "
                         "part's standard error (se=True) is on the link scale")
    if weighted:
        raise UsageError("no prediction interval for a fit with prior weights: a new row's residual variance "
                         "would be sigma^2/weight, and the new rows have no weights")


RESPONSE = "'response'"  # the prediction type, as a message names it


def check_type(type: str, se: bool, glmm: bool) -> None:
    """A prediction type lme4 knows; the standard error only on the link scale of a GLMM."""
    if type not in ("link", "response"):
        raise UsageError(f"unknown prediction type '{type}'; use link or response")
    if se and type == "response" and glmm:
        raise UsageError(f"{option('se', True)} gives the standard error on the link scale: leave out "
                         f"{option('type', RESPONSE)} "
                         "and transform the interval's ends with the inverse link")


def _fixed_design(f, combined: Table, old: np.ndarray, ok: np.ndarray, frame, aliased: bool = False):
    """The new rows' fixed-effect columns, coded as the fit's; a level of a fixed-effect factor
    the fit has not seen is an error naming it. ``aliased``: see ``fixed_design``."""
    both = old | ok
    design = model_matrix(f.intercept, f.terms, combined, both, frame.contrasts, fitted_state(frame))
    fitted_names = list(frame.fixef_names)
    extra = [n for n in design.names if n not in fitted_names and n not in frame.dropped_columns]
    n_old = int(old.sum())
    index = {n: j for j, n in enumerate(design.names)}
    new_rows = design.X[n_old:]
    for name in extra:
        hits = np.flatnonzero(new_rows[:, index[name]] != 0)
        if hits.size:
            raise DataError(f"{option('newdata')} row {int(np.flatnonzero(ok)[hits[0]] - n_old) + 1}: '{name}' is a factor "
                            "level the model was not fitted with; its effect is unknown")
    if aliased:
        cols = [j for j, n in enumerate(design.names) if n in fitted_names or n in frame.dropped_columns]
        return [design.names[j] for j in cols], new_rows[:, cols]
    return new_rows[:, [index[n] for n in fitted_names]]


def _new_random_part(m, combined: Table, n_old: int, ok: np.ndarray, new_levels: dict[str, int],
                     population: bool = False, variance: np.ndarray | None = None) -> np.ndarray:
    """Zb̂ for the new rows: a fitted level's conditional modes, 0 for a level never seen (and
    for every row with ``population``). With ``variance`` (one entry per new row), adds each
    row's Σ_terms z V zᵀ to it: V the level's conditional covariance σ̂² Λ S Λᵀ (lme4's
    ``ranef(condVar = TRUE)``) for a level the fit has seen, the term's σ̂² Λ Λᵀ otherwise."""
    from ..frame import grouping_factor

    frame = m.frame
    n_new = combined.nrows - n_old
    total = np.zeros(n_new)
    both = np.zeros(combined.nrows, dtype=bool)
    both[:n_old] = True
    both |= ok
    modes = [None] * len(frame.terms) if population else m.conditional_modes()
    conditional = (m.full_factorization().conditional_covariances()
                   if variance is not None and not population else None)
    lams = m.structure.lambdas(m.theta)  # lme4's Λ of each term, for the user's columns
    for i, (rt_term, b) in enumerate(zip(frame.terms, modes)):
        rt = frame.formula.random[frame.term_sources[i]]
        level = np.full(n_new, -1, dtype=np.int64)
        if not population:
            # the grouping factor on the fitted rows and the new ones: fitted rows keep their levels
            present = both & ~np.any([is_missing(combined.columns[g]) for g in rt.group], axis=0)
            gf = grouping_factor(combined, rt.group, rt_term.factor, present)
            codes = np.full(combined.nrows, -1, dtype=np.int64)
            codes[present] = gf.codes
            engine = np.full(gf.n_levels, -1, dtype=np.int64)
            # combined level -> the fit's level (a saved fit's prototype rows may have none: −1)
            seen = (codes[:n_old] >= 0) & (rt_term.codes >= 0)
            engine[codes[:n_old][seen]] = rt_term.codes[seen]
            level = np.where(codes[n_old:] >= 0, engine[np.maximum(codes[n_old:], 0)], -1)
            unseen = ok[n_old:] & (level < 0)
            if unseen.any():
                new_levels[rt_term.factor] = new_levels.get(rt_term.factor, 0) + int(unseen.sum())
        z = np.zeros((combined.nrows, rt_term.k))
        z[both] = model_matrix(rt.intercept, rt.terms, combined, both, frame.contrasts, fitted_state(frame)).X
        zn = z[n_old:]
        use = ok[n_old:] & (level >= 0)
        if b is not None:
            total[use] += np.einsum("ij,ij->i", zn[use], b[level[use]])
        if variance is not None:
            # z V zᵀ = σ̂² w S wᵀ (seen) or σ̂² w wᵀ (unseen), with w = zΛ
            w = zn @ lams[i]
            v = np.einsum("ia,ia->i", w, w)
            if conditional is not None:
                v[use] = np.einsum("ia,abi,ib->i", w[use], conditional[i][:, :, level[use]], w[use])
            variance += m.sigma**2 * v
    return total


def _append(table: Table, rows: np.ndarray, new: Table, names: list[str], labels=frozenset()) -> Table:
    """The fitted rows of ``table`` followed by all rows of ``new``, for the columns ``names``.

    A column that is text in the fit's data may hold numbers in ``new`` (a reader guessed
    numbers for labels that happen to be digits): they become labels as R's as.character()
    writes them, so that 2 is level "2" and a number that is no fitted level is an unseen
    level like any other (R's predict() refuses them: "variable is not a factor"). The reverse (numbers in
    the data, text in the new rows) is a real mismatch and an error — except in the grouping
    columns of ``labels``, which only name levels (a level written as text in one file and as
    a number in the other is the same label)."""
    cols = {}
    for name in names:
        a, b = table.columns[name], new.columns[name]
        if not isinstance(a, TextColumn) and isinstance(b, TextColumn) and name not in labels:
            present = np.flatnonzero(b.codes >= 0)
            if present.size:
                # show the first value that is not a number (one makes the whole column text)
                words = np.append(non_numeric_labels(b.labels), False)
                shown = np.flatnonzero(words[b.codes[present]])
                i = int(present[shown[0] if shown.size else 0])
                raise DataError(f"column '{name}' holds numbers in the fitted data but text in the new rows "
                                f"('{b.labels[b.codes[i]]}' in new row {i + 1}); the new rows must be coded as "
                                "the fitted ones")
        if isinstance(a, TextColumn) or isinstance(b, TextColumn):
            cols[name] = TextColumn.from_values(list(_text_values(a)[rows]) + list(_text_values(b)))
        else:
            cols[name] = np.concatenate([np.asarray(a, dtype=float)[rows], np.asarray(b, dtype=float)])
    return Table(cols)


def _text_values(col) -> np.ndarray:
    """A column's values as labels (None where missing): numbers as R's as.character() writes them."""
    return (col if isinstance(col, TextColumn) else number_labels(col)).values()


def _names(exprs) -> list[str]:
    out: list[str] = []

    def walk(e):
        if isinstance(e, Var):
            out.append(e.name)
        for a in getattr(e, "args", ()):
            walk(a)

    for e in exprs:
        walk(e)
    return list(dict.fromkeys(out))
