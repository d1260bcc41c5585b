"""From a table and a formula to the arrays the engine needs, with lme4's checks and conventions.

``model_frame(table, formula)`` does what lme4's ``lFormula`` does:

* keeps the rows complete in every variable the formula uses (``na.omit``);
* builds the fixed-effects matrix X (R's ``model.matrix``) and drops aliased
  columns, as lme4 does, with a message naming them;
* builds each random-effects term: the grouping factor (an interaction for
  ``a:b``; any column, numeric or text, is treated as categorical) and the
  term's model matrix;
* orders the terms as lme4's ``mkReTrms`` does (by number of levels, largest
  first, only if they are not already in that order), which fixes the order
  of θ and of the printed variance components;
* applies lme4's sanity checks on levels and observations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .design import CONTRASTS, complete_rows, model_matrix
from .engine.structure import ReTerm, nested_map
from .errors import DataError, FormulaError, UsageError, option
from .formula import Formula, Var, parse_formula, r_sort_key
from .formula.evaluate import check_variables, evaluate, missing_values, r_number, where_in_data
from .response import glm_response, prior_weights, weight_missing, weight_values
from .table import Table, TextColumn

# lme4's tolerance for aliased columns (base R's qr(), LINPACK dqrdc2).
RANK_TOL = 1e-7
# A residual norm below this fraction of the response's norm is an exact fit (rounding only).
EXACT_FIT_TOL = 1e-12
# lme4's check.scaleX: warn when a predictor's SD, or the ratio of two, is beyond this factor.
SCALE_TOL = 1e3
# Columns whose norm is outside this range would overflow or underflow in the
# engine's sums of squares and cross-products (float64 ends near 1.8e308 and 2.2e-308).
NORM_RANGE = (1e-150, 1e150)


@dataclass
class GroupingFactor:
    """Integer codes of a (possibly interaction) grouping factor over the kept rows.

    Levels are ordered as R orders ``factor(a:b)``: by the first column's
    level, then the next; only combinations that occur are levels. The codes,
    however, number the levels by first appearance in the data, which is the
    order the engine works in: two codings of the same partition of the rows
    (``classid`` and ``schoolid:classid2``) then give bit-identical arithmetic
    and identical fits, and data sorted by group make the nesting maps
    monotone. ``to_r[c]`` is R's index of level ``c``. Labels are built on
    demand (a million Python strings is not free).
    """

    name: str
    codes: np.ndarray
    n_levels: int
    # per column: its sorted levels (a list of labels, or the distinct numbers of a
    # numeric column, formatted only when labels are asked for) and each R-ordered
    # level of this factor's index into them
    parts: list[tuple[object, np.ndarray]]
    to_r: np.ndarray

    @classmethod
    def from_r_codes(cls, name: str, r_codes: np.ndarray, n_levels: int, parts) -> "GroupingFactor":
        """Renumber R-ordered codes by first appearance (O(n): one scatter, one sort of the levels)."""
        n = len(r_codes)
        first = np.empty(n_levels, dtype=np.int64)
        first[r_codes[::-1]] = np.arange(n - 1, -1, -1)  # the last write, the earliest row, wins
        to_r = np.argsort(first, kind="stable")
        rank = np.empty(n_levels, dtype=np.int64)
        rank[to_r] = np.arange(n_levels)
        return cls(name, rank[r_codes], n_levels, parts, to_r)

    def labels(self) -> list[str]:
        cols = [np.asarray(_level_labels(levels), dtype=object)[idx] for levels, idx in self.parts]
        if len(cols) == 1:
            return list(cols[0])
        return [":".join(items) for items in zip(*cols)]


@dataclass
class ModelFrame:
    """Everything the engine and the results need about one model on one data set."""

    formula: Formula
    y: np.ndarray
    X: np.ndarray
    fixef_names: list[str]
    terms: list[ReTerm]
    factors: dict[str, GroupingFactor]
    rows: np.ndarray  # boolean mask over the table's rows: the rows used
    n_dropped: int
    term_sources: list[int] = field(default_factory=list)  # index in formula.random of each sorted term
    family: object = None  # a mixcli.family.Family for a GLMM; None for a linear mixed model
    weights: np.ndarray | None = None  # prior weights on the rows used (binomial: trials × the user's)
    offset: np.ndarray | None = None  # the formula's offset() terms, summed, on the rows used
    dropped_columns: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    # grouping factor -> the factor its labels are probably numbered within (_nesting_mistakes)
    nested_labels: dict[str, str] = field(default_factory=dict)
    # the data and the coding the frame was built from, for inference that rebuilds design
    # matrices (type III F tests recode the factors; predictions evaluate new rows)
    table: Table | None = field(default=None, repr=False)
    contrasts: str = "treatment"
    fixef_assign: list[int] = field(default_factory=list)  # R's attr(X, "assign") of the kept columns
    dispersion: GroupingFactor | None = None  # a dispformula's factor: a residual SD per level
    # a saved fit's frame (``mixcli.saved``) has a prototype table, not the rows: what emmeans's
    # reference grid takes from the numeric variables' values (``emmeans.covariate_summary``)
    covariates: dict | None = field(default=None, repr=False)
    # ... and the combinations of the fixed-effect factors' levels that occur in the rows (labels
    # per factor, ``emmeans.occurring_cells``): emmeans's nesting and which cells hold data
    cells: dict | None = field(default=None, repr=False)
    null_basis: np.ndarray | None = field(default=None, repr=False)  # (``emmeans.null_basis``)
    stateful: dict | None = field(default=None, repr=False)  # (``predictions.fitted_state``)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def ngroups(self) -> dict[str, int]:
        """Levels per grouping factor, in the order of the sorted terms (lme4's ``ngrps``)."""
        return {name: f.n_levels for name, f in self.factors.items()}


BINOMIAL = "'binomial'"  # the family, as a message names it


# A column every table has unless it names one itself: the row's number, 1 to n, so that an
# observation-level random effect, (1 | .row), can be written for overdispersed counts without
# adding an ID column to the data first.
ROW_ID = ".row"


def with_row_id(table: Table, formula: Formula) -> Table:
    """``table`` with the ``.row`` column (1, 2, …, n) if the formula uses it and the data lack it."""
    if ROW_ID in table or not any(o.name == ROW_ID for o in formula.occurrences):
        return table
    columns = dict(table.columns)
    columns[ROW_ID] = np.arange(1, table.nrows + 1, dtype=float)
    return Table(columns=columns, source=table.source, nrows=table.nrows)


def dispersion_factor(dispformula: str) -> str:
    """The column of a dispformula: ``"~ group"`` (a residual SD per level of one factor) → "group"."""
    import re

    match = re.fullmatch(r"\s*~\s*([A-Za-z._][A-Za-z0-9._]*)\s*", dispformula or "")
    if match is None or match.group(1) == "1":
        raise UsageError(f"{option('dispformula', repr(dispformula))}: write one factor, as in \"~ group\" (a residual "
                         "SD for each of its levels)")
    return match.group(1)


def _dispersion_codes(table: Table, name: str, rows: np.ndarray, messages) -> GroupingFactor:
    """The dispformula's factor on the rows used; each level needs two observations (with one, its
    residual SD would be fitted to that one residual, and the likelihood has no maximum)."""
    gf = _grouping_factor(table, (name,), name, rows, messages)
    counts = np.bincount(gf.codes, minlength=gf.n_levels)
    if gf.n_levels < 2:
        raise DataError(f"the dispformula's factor '{name}' has one level in the rows used: its residual SD is "
                        "the model's own; leave the dispformula out")
    if counts.min() < 2:
        level = gf.labels()[int(gf.to_r[int(np.argmin(counts))])]
        raise DataError(f"the dispformula's factor '{name}' has the level {level!r} with one observation: a residual "
                        "SD cannot be estimated from one residual; merge it with another level or drop the row")
    return gf


def model_frame(table: Table, formula: Formula | str, family=None, weights=None,
                contrasts: str = "treatment", keep_data: bool = True, dispersion: str | None = None) -> ModelFrame:
    """The model frame of ``formula`` on ``table``: for a linear mixed model, or for a GLMM of
    ``family`` (``mixcli.family.Family``); ``weights`` are prior weights (a column name, or an
    array over the table's rows), rows where they are missing being dropped; unordered
    factors are coded by ``contrasts`` (treatment, sum or helmert) unless C() says otherwise.

    The frame keeps ``table`` (``ModelFrame.table``) for what rebuilds design matrices after the
    fit (predictions, augment, type III F tests); with ``keep_data=False`` it does not, and
    the fit holds only its matrices (a large file's other columns are freed)."""
    if contrasts not in CONTRASTS:
        raise UsageError(f"{option('contrasts', contrasts)}: use one of {', '.join(CONTRASTS)}")
    if isinstance(formula, str):
        formula = parse_formula(formula)
    table = with_row_id(table, formula)
    if not formula.random:
        raise FormulaError(
            "no random-effects terms; add one such as (1 | group) (for a model without them use ordinary regression)",
            formula.text,
        )
    glmm = family is not None
    check_variables(formula, table, text_response=glmm and family.name == "binomial")
    rows = complete_rows(formula, table) & ~weight_missing(weights, table)
    if dispersion is not None:
        if family is not None or weights is not None:
            raise UsageError(f"{option('dispformula')} is for linear mixed models without prior weights "
                             f"({option('weights')}), for now")
        if dispersion not in table.columns:
            raise DataError(f"the dispformula's factor '{dispersion}' is not a column of the data")
        rows &= ~missing_values(Var(dispersion), table)
    zero_weight = 0
    if weights is not None and not glmm:
        # (lmer's criterion is infinite with a zero weight; such a row carries no information)
        zero = rows & (np.nan_to_num(weight_values(weights, table), nan=1.0) == 0.0)
        zero_weight = int(zero.sum())
        if zero_weight < rows.sum():
            rows &= ~zero
    n = int(rows.sum())
    n_dropped = table.nrows - n
    if n == 0:
        raise DataError(_no_rows_message(formula, table))
    messages: list[str] = []
    if zero_weight:
        messages.append(f"{zero_weight} row{'s' if zero_weight > 1 else ''} with weight 0 left out: "
                        "they carry no information about the model")

    # (a number column with a typo is read as text: when that makes the model impossible, the
    # error below is a consequence, and the note names the cause)
    typos = _near_numeric_messages(formula, table, rows)
    try:
        label = formula.response.label
        wt = prior_weights(weights, table, rows)
        offset = _offset(formula, table, rows)
        if glmm:
            y, wt, notes = glm_response(formula, table, rows, family, wt)
            messages.extend(notes)
        else:
            y = evaluate(formula.response, table)[rows]
            _check_finite(y[:, None], [label], rows, table, "the response")
            _check_magnitude(y[:, None], [label], "the response")
            if np.all(y == y[0]):
                raise DataError(
                    f"the response '{label}' has the same value ({r_number(float(y[0]))}) in all {n} rows used, "
                    "so there is no variation to model"
                )

        design = model_matrix(formula.intercept, formula.terms, table, rows, contrasts)
        _check_finite(design.X, design.names, rows, table, "the fixed-effect column")
        _check_magnitude(design.X, design.names, "the fixed-effect column")
        # (an LMM's offset is part of the linear predictor: the checks look at y − offset)
        y_fit = y - offset if offset is not None and not glmm else y
        X, names, dropped, residual = drop_aliased(design.X, design.names, y_fit)
        assign = [a for a, name in zip(design.assign, design.names) if name in set(names)]
        if dropped:
            k = len(dropped)
            messages.append(
                f"fixed-effect model matrix is rank deficient so dropping {k} column{'s' if k > 1 else ''} / "
                f"coefficient{'s' if k > 1 else ''} ({', '.join(dropped)})"
            )
        if X.shape[1] >= n:
            raise DataError(
                f"{X.shape[1]} fixed effects for {n} observations: the model needs fewer fixed effects "
                "than observations (drop terms, or check the data)"
            )
        if not glmm and residual <= EXACT_FIT_TOL * _safe_norm(y_fit):
            raise DataError(
                f"the fixed effects ({', '.join(names)}) fit the response '{label}' exactly (every residual is 0), "
                "so no variance is left for the random effects or the residual; is the response also a predictor?"
            )

        factors: dict[str, GroupingFactor] = {}
        terms: list[ReTerm] = []
        for rt in formula.random:
            key = rt.lme4_group_name
            if key not in factors:
                factors[key] = _grouping_factor(table, rt.group, key, rows, messages)
            gf = factors[key]
            zm = model_matrix(rt.intercept, rt.terms, table, rows, contrasts)
            if zm.X.shape[1] == 0:
                raise FormulaError(f"the random-effects term ({rt.label}) has no effects", formula.text, rt.span[0])
            _check_finite(zm.X, zm.names, rows, table, f"in the random-effects term ({rt.label}), the column")
            _check_magnitude(zm.X, zm.names, f"in the random-effects term ({rt.label}), the column")
            if rt.structure:
                _check_structure(rt, zm, formula, glmm)
            terms.append(
                ReTerm(
                    codes=gf.codes, n_levels=gf.n_levels, z=zm.X, group=key, names=zm.names, factor=key,
                    structure=rt.structure,
                )
            )
        terms, order, ordered_factors = order_terms(terms, factors, n, glmm)
        if not glmm:
            _check_residual_left(X, y_fit, terms, label)
        predictors = {name: X[:, j] for j, name in enumerate(names)}
        for t in terms:  # lme4 checks X only; a random slope on a wild scale hurts the optimiser as much
            for a, name in enumerate(t.names):
                predictors.setdefault(name, t.z[:, a])
        scale = _scale_message(predictors)
        if scale:
            messages.append(scale)
        messages.extend(_double_bar_factor_messages(formula, table))
        messages.extend(_repeated_effect_messages(formula, terms, term_sources=order))
        mistakes = _nesting_mistakes(formula, ordered_factors)
        messages.extend(_nesting_mistake_message(inner, outer, pairs, ordered_factors)
                        for inner, (outer, pairs) in mistakes.items())
        nested_labels = {inner: outer for inner, (outer, _) in mistakes.items()}
        messages.extend(_integer_code_messages(formula, table, rows))
        messages.extend(typos)
        if not glmm and (weights is None) and _only_zero_one(y):
            messages.append(f"the response '{label}' only takes the values 0 and 1: this is a linear (Gaussian) "
                            f"model of it; for a pass/fail outcome use {option('family', BINOMIAL)} (glmer's logistic model)")
        disp = None if dispersion is None else _dispersion_codes(table, dispersion, rows, messages)
        return ModelFrame(
            dispersion=disp,
            formula=formula, y=y, X=X, fixef_names=names, terms=terms, factors=ordered_factors,
            rows=rows, n_dropped=n_dropped, term_sources=order, dropped_columns=dropped, messages=messages,
            family=family, weights=wt, offset=offset, nested_labels=nested_labels,
            table=table if keep_data else None, contrasts=contrasts, fixef_assign=assign,
        )
    except DataError as err:
        if typos:
            raise DataError(f"{err}; {typos[0]}") from None
        raise


# Mean rows per combination of two grouping factors above which labels that repeat across the
# levels of another factor look like units numbered within it rather than crossed levels: a
# crossed design (subjects × items) has about one row per combination.
NESTED_LABELS_ROWS = 2.0


def _nesting_mistakes(formula: Formula, factors: dict[str, GroupingFactor]) -> dict[str, tuple[str, int]]:
    """Grouping factors whose labels are probably numbered within another factor of the model:
    inner → (outer, the number of outer:inner combinations).

    ``(1 | schoolid) + (1 | classid2)`` with classid2 = 1, 2, ... within each school makes
    classid2 a crossed factor of 9 'classes', each spread over many schools: the classic
    nesting mistake. Flagged when neither factor is nested in the other, the model has no
    term grouped by both, the pairs outnumber inner's labels at least twice, and the pairs
    have NESTED_LABELS_ROWS rows on average.
    """
    single = {rt.lme4_group_name: rt.group[0] for rt in formula.random if len(rt.group) == 1}
    together = {frozenset(rt.group) for rt in formula.random}
    out: dict[str, tuple[str, int]] = {}
    for inner, inner_col in single.items():
        for outer, outer_col in single.items():
            if inner == outer or inner in out or frozenset((inner_col, outer_col)) <= set().union(
                    *(g for g in together if len(g) > 1)):
                continue
            a, b = factors[outer], factors[inner]
            # The data cannot tell which is numbered within which; the usual case is a few unit
            # numbers (classes 1..9) reused in many groups (schools): inner has fewer levels.
            if b.n_levels > a.n_levels or (b.n_levels == a.n_levels and outer in out):
                continue
            if a.n_levels < 2 or nested_map(b.codes, b.n_levels, a.codes) is not None \
                    or nested_map(a.codes, a.n_levels, b.codes) is not None:
                continue
            pairs = _dense_codes(a.codes.astype(np.int64) * b.n_levels + b.codes)[0].size
            if pairs >= 2 * b.n_levels and len(a.codes) >= NESTED_LABELS_ROWS * pairs:
                out[inner] = (outer, int(pairs))
    return out


def _nesting_mistake_message(inner: str, outer: str, pairs: int, factors) -> str:
    return (f"{inner} has {factors[inner].n_levels} labels shared across the {factors[outer].n_levels} levels of "
            f"{outer} ({pairs} {outer}:{inner} combinations): as written, rows with the same {inner} in different "
            f"{outer} are one group (crossed factors). If {inner} numbers units within each {outer}, write "
            f"(1 | {outer}/{inner}), i.e. (1 | {outer}) + (1 | {outer}:{inner}), or give each its own label "
            f"with mixcli nest")


# A numeric predictor with this few distinct whole-number values looks like codes (treatments,
# sites, waves) more than like a measurement; it gets one slope unless written factor(x).
CODES_MAX_LEVELS = 6


def _integer_code_messages(formula: Formula, table: Table, rows: np.ndarray) -> list[str]:
    out = []
    seen = set()
    for term in formula.terms:
        for expr in term:
            if not isinstance(expr, Var) or expr.name in seen or isinstance(table.columns.get(expr.name), TextColumn):
                continue
            seen.add(expr.name)
            x = np.asarray(table.columns[expr.name], dtype=float)[rows]
            x = x[np.isfinite(x)]
            if not np.array_equal(x, np.round(x)):  # (a measurement: no sort of its values, 21 ms on 898k rows)
                continue
            x = np.sort(x)
            values = x[np.concatenate(([True], x[1:] != x[:-1]))]  # (np.unique, which would import numpy.ma)
            if 3 <= values.size <= CODES_MAX_LEVELS:
                shown = ", ".join(r_number(float(v)) for v in values)
                out.append(f"{expr.name} takes only the values {shown}: it is fitted as a number (one slope); "
                           f"if these are codes for groups, write factor({expr.name})")
    return out


# A text column whose cells are numbers but for a few (at most this many, and this share of its
# cells) is most likely a number column with typos or home-made missing-value codes ("five", "n/a",
# "."): read as text it becomes a factor, one coefficient per distinct number, without a word.
NEAR_NUMERIC_CELLS = 10
NEAR_NUMERIC_SHARE = 0.05


def _near_numeric_messages(formula: Formula, table: Table, rows: np.ndarray) -> list[str]:
    """A warning for each predictor written bare (not factor(x)) whose text column is numbers but
    for a few cells: the cells, where they are, and the two ways to say what was meant."""
    from .formula.evaluate import non_numeric_labels

    out = []
    seen = set()
    exprs = [e for t in formula.terms for e in t] + [e for rt in formula.random for t in rt.terms for e in t]
    for expr in exprs:
        if not isinstance(expr, Var) or expr.name in seen or not isinstance(table.columns.get(expr.name), TextColumn):
            continue
        seen.add(expr.name)
        column = table[expr.name]
        codes = column.codes[rows]
        present = codes >= 0
        if not present.any():
            continue
        bad_label = non_numeric_labels(column.labels)
        bad = present & bad_label[np.maximum(codes, 0)]
        n_bad = int(bad.sum())
        if n_bad == 0 or n_bad > NEAR_NUMERIC_CELLS or n_bad > NEAR_NUMERIC_SHARE * int(present.sum()):
            continue
        where = np.flatnonzero(rows)[np.flatnonzero(bad)]
        shown = [f"{str(column.labels[column.codes[i]])!r} on {where_in_data(table, int(i))}" for i in where[:5]]
        more = f" and {n_bad - 5} more" if n_bad > 5 else ""
        cells = f"{n_bad} cell{'s' if n_bad > 1 else ''}"
        out.append(f"column '{expr.name}' is numbers except for {cells} ({'; '.join(shown)}{more}), so it is read "
                   f"as text and fitted as a factor, one coefficient per value: if {'these are' if n_bad > 1 else 'it is'}"
                   f" missing, leave the cell{'s' if n_bad > 1 else ''} empty or write NA; if a typo, correct it; if "
                   f"{expr.name} is categorical, write factor({expr.name}) to say so")
    return out


def _effects_label(names: list[str], most: int = 6) -> str:
    """A term's effects for a message, the first few of a long list (a factor's many levels)."""
    if len(names) <= most:
        return " + ".join(names)
    return f"{' + '.join(names[:most - 1])} + … ({len(names)} columns)"


def _only_zero_one(y: np.ndarray) -> bool:
    return bool(np.all((y == 0.0) | (y == 1.0))) and bool(np.any(y == 0.0)) and bool(np.any(y == 1.0))


def _offset(formula: Formula, table: Table, rows: np.ndarray) -> np.ndarray | None:
    """The sum of the formula's offset() terms on the rows used (R adds them all)."""
    if not formula.offsets:
        return None
    total = np.zeros(int(rows.sum()))
    for expr in formula.offsets:
        values = evaluate(expr, table)[rows]
        _check_finite(values[:, None], [f"offset({expr.label})"], rows, table, "the offset")
        total += values
    return total


def order_terms(terms: list[ReTerm], factors: dict[str, GroupingFactor], n: int, glmm: bool = False):
    """The random-effects terms in lme4's order with lme4's group names, each knowing its factor's
    level order, checked as lme4 checks them (``_check_levels``): (terms, the order taken from the
    formula's, the grouping factors in the terms' order). The in-memory frame and the Dask
    engine's rowless one both come here."""
    order = lme4_term_order([t.n_levels for t in terms])
    terms = [terms[i] for i in order]
    for name, t in zip(_unique_names([t.group for t in terms]), terms):
        t.group = name
    ordered = {}
    for t in terms:
        ordered.setdefault(t.factor, factors[t.factor])
        t.levels_to_r = factors[t.factor].to_r
    _check_levels(terms, ordered, n, glmm)
    return terms, order, ordered


def lme4_term_order(n_levels: list[int]) -> list[int]:
    """lme4's ``mkReTrms``: if any term has more levels than the one before it, reorder by
    ``rev(order(nl))`` — decreasing levels, ties in reverse formula order."""
    if not any(b > a for a, b in zip(n_levels, n_levels[1:])):
        return list(range(len(n_levels)))
    ascending = sorted(range(len(n_levels)), key=lambda i: n_levels[i])  # stable, like R's order()
    return ascending[::-1]


def _unique_names(names: list[str]) -> list[str]:
    """R's ``make.unique``: the second ``g`` becomes ``g.1``, the third ``g.2``."""
    seen: dict[str, int] = {}
    out = []
    used = set(names)
    for name in names:
        if name not in seen:
            seen[name] = 0
            out.append(name)
            continue
        while True:
            seen[name] += 1
            candidate = f"{name}.{seen[name]}"
            if candidate not in used:
                break
        used.add(candidate)
        out.append(candidate)
    return out


def drop_aliased(
    X: np.ndarray, names: list[str], y: np.ndarray | None = None
) -> tuple[np.ndarray, list[str], list[str], float]:
    """Drop columns that are linear combinations of earlier ones (lme4's check.rankX).

    |R_jj| of an unpivoted QR is the norm of column j's part orthogonal to the
    columns before it; relative to the column's own norm, below 1e-7 means
    aliased. This matches base R's limited-pivoting QR, which moves exactly
    those columns to the end and so drops the later of two collinear columns.

    Also returns the norm of the residual of ``y`` regressed on the kept
    columns (the norm of ``y`` when there are none; NaN without ``y``).
    Columns are scaled to unit maximum first: the test is scale-free, and
    huge values cannot overflow.
    """
    # the columns as contiguous rows (one copy, scaled in place): a column's peak and norm are then
    # contiguous reductions (73 ms became 32 ms on 898k rows), and rows.T is the (n, p) matrix
    rows = np.empty((X.shape[1] + (y is not None), X.shape[0]))
    rows[: X.shape[1]] = X.T
    if y is not None:
        rows[-1] = y
    peaks = np.array([max(-float(r.min()), float(r.max())) for r in rows]) if rows.shape[1] else np.zeros(len(rows))
    rows /= np.where(peaks > 0, peaks, 1.0)[:, None]
    norms = np.linalg.norm(rows, axis=1)
    # One O(n p²) QR; thereafter X[:, cols] = Q R[:, cols], so each test is a QR
    # of the small matrix R[:, cols].
    r_full = np.linalg.qr(rows.T, mode="r") if len(rows) else np.empty((0, 0))
    keep: list[int] = []
    rank_max = r_full.shape[0]  # min(n, columns): once that many are kept, every further column is aliased
    for j in range(X.shape[1]):
        if norms[j] == 0.0 or len(keep) >= rank_max:
            continue
        r = np.linalg.qr(r_full[:, keep + [j]], mode="r")
        if abs(r[-1, -1]) > RANK_TOL * norms[j]:
            keep.append(j)
    residual = math.nan
    if y is not None:
        p = X.shape[1]
        if len(keep) >= rank_max:
            residual = 0.0
        else:
            r = np.linalg.qr(r_full[:, keep + [p]], mode="r")
            residual = abs(r[-1, -1]) * peaks[p]
    dropped = [names[j] for j in range(X.shape[1]) if j not in keep]
    return X[:, keep], [names[j] for j in keep], dropped, residual


def _check_residual_left(X: np.ndarray, y: np.ndarray, terms: list[ReTerm], label: str) -> None:
    """Refuse a response that does not vary within the levels of a random intercept's factor.

    Then that term reproduces it exactly and no residual variation is left: the
    criterion decreases without end as the term's variance grows, and any 'fit'
    is an artefact of where the optimiser stopped. The usual cause is a
    group-level variable used as the response. (That the fixed and random
    effects together *could* reproduce the response, as whenever p + q ≥ n, is
    no reason to refuse: the penalised residual is not zero, and lme4 fits such
    models, checking only each term's q against n, as ``_check_levels`` does.)
    """
    for t in terms:
        if "(Intercept)" not in t.names:
            continue
        # one value of each level (whichever row's: if the level is constant, all are that value), and
        # every row against its level's: O(n), where sorting the codes took 0.1 s on 898k rows
        one = np.empty(t.n_levels)
        one[t.codes] = y
        if np.bincount(t.codes, minlength=t.n_levels).max() >= 2 and np.array_equal(y, one[t.codes]):
            raise DataError(
                f"the response '{label}' does not vary within the levels of {t.factor}: the {t.factor} effects "
                "reproduce it exactly and no residual variation is left; model the group values instead "
                f"(one row per {t.factor})"
            )


def _safe_norm(v: np.ndarray) -> float:
    """Euclidean norm without overflow or underflow in the squares."""
    peak = float(np.max(np.abs(v))) if v.size else 0.0
    if peak == 0.0 or not math.isfinite(peak):
        return peak
    return peak * float(np.linalg.norm(v / peak))


def _check_finite(M: np.ndarray, names: list[str], rows: np.ndarray, table: Table, what: str) -> None:
    """R's model.frame keeps ±Inf (only NA/NaN are missing) and lm() then stops: so does mixcli,
    naming the column and where the value is."""
    bad = ~np.isfinite(M)
    if not bad.any():
        return
    i, j = (int(k[0]) for k in np.nonzero(bad))  # row-major: the first row with a bad value
    row = int(np.flatnonzero(rows)[i])
    value = M[i, j]
    shown = "NaN (Inf times 0)" if np.isnan(value) else ("Inf" if value > 0 else "-Inf")
    raise DataError(
        f"{what} '{names[j]}' has the value {shown} on {where_in_data(table, row)}; infinite values cannot be fitted: "
        "correct the value, or make it missing (an empty field or NA)"
    )


def _check_magnitude(M: np.ndarray, names: list[str], what: str) -> None:
    """Refuse columns so large (or so small) that their squares overflow (underflow) in float64."""
    low, high = NORM_RANGE
    for j, name in enumerate(names):
        norm = _safe_norm(M[:, j])
        if norm == 0.0 or low <= norm <= high:
            continue
        peak = float(np.max(np.abs(M[:, j])))
        size = "large" if norm > high else "small"
        raise DataError(
            f"{what} '{name}' has values too {size} to fit in double precision (largest {peak:.3g}); "
            f"rescale it, e.g. I({name} {'/' if size == 'large' else '*'} 1e{abs(math.floor(math.log10(peak)))}) "
            "or scale(...)"
        )


def _scale_message(columns: dict[str, np.ndarray]) -> str | None:
    """lme4's check.scaleX: SDs of the non-0/1 columns beyond 1e3 or 1e-3, or 1e3 apart."""
    sds = {}
    for name, col in columns.items():
        if np.all((col == 0) | (col == 1)) or len(col) < 2:
            continue
        peak = float(np.max(np.abs(col)))
        sd = peak * float(np.std(col / peak, ddof=1))
        if sd > 0:
            sds[name] = sd
    if not sds:
        return None
    logs = {k: math.log(v) for k, v in sds.items()}
    spread = max(logs.values()) - min(logs.values())
    if spread <= math.log(SCALE_TOL) and all(abs(v) <= math.log(SCALE_TOL) for v in logs.values()):
        return None
    big = max(sds, key=sds.get)
    small = min(sds, key=sds.get)
    shown = f"SD of {big} {sds[big]:.3g}" + (f", of {small} {sds[small]:.3g}" if small != big else "")
    return (f"some predictor variables are on very different scales: consider rescaling ({shown}); "
            "scale() or a change of units keeps the optimiser accurate")


def grouping_factor(table: Table, columns: tuple[str, ...], name: str, rows: np.ndarray) -> GroupingFactor:
    """The grouping factor of ``columns`` on the ``rows`` of ``table``, coded as a fit codes it
    (for predictions on new rows)."""
    return _grouping_factor(table, columns, name, rows, [])


def _grouping_factor(table: Table, columns: tuple[str, ...], name: str, rows: np.ndarray, messages) -> GroupingFactor:
    parts = []
    combined = None
    for col in columns:
        levels, index = _factor_codes(table, col, rows, messages)
        parts.append((levels, index))
        combined = index.astype(np.int64) if combined is None else combined * len(levels) + index
    if len(columns) == 1:
        levels, index = parts[0]
        return GroupingFactor.from_r_codes(name, index.astype(np.int64), len(levels), [(levels, np.arange(len(levels)))])
    used, codes = _dense_codes(combined)
    # decode each used combination into its per-column level indices
    idx_parts = []
    rem = used
    sizes = [len(levels) for levels, _ in parts]
    for size in reversed(sizes):
        idx_parts.append(rem % size)
        rem = rem // size
    idx_parts.reverse()
    return GroupingFactor.from_r_codes(
        name, codes.ravel().astype(np.int64), len(used), [(levels, idx) for (levels, _), idx in zip(parts, idx_parts)]
    )


def _factor_codes(table: Table, col: str, rows: np.ndarray, messages) -> tuple[list[str], np.ndarray]:
    """Levels (sorted as R's factor() sorts them) and per-row level index of one grouping column."""
    column = table[col]
    if isinstance(column, TextColumn):
        present, index = _dense_codes(column.codes[rows].astype(np.int64))
        labels = [str(column.labels[c]) for c in present]
        order = sorted(range(len(labels)), key=lambda i: r_sort_key(labels[i]))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return [labels[i] for i in order], rank[index]
    values = column[rows]
    if not np.all(np.isfinite(values)):
        raise DataError(f"the grouping column '{col}' has infinite values")
    if len(values) and np.abs(values).max() < 2.0**62:  # beyond, the cast to int64 is undefined
        as_int = values.astype(np.int64)
        if np.array_equal(as_int, values):
            uniq, index = _dense_codes(as_int)
            return uniq.astype(np.float64), index
    uniq, index = np.unique(values, return_inverse=True)
    if np.any(uniq != np.round(uniq)):
        messages.append(
            f"grouping factor '{col}' has non-integer values; it is treated as categorical with "
            f"{len(uniq)} levels (is it really a grouping variable?)"
        )
    return uniq, index.ravel()


def _dense_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of an int64 array and each value's rank among them.

    O(n) through a presence table when the values span a range comparable to
    their number (IDs usually do); np.unique's O(n log n) sort otherwise.
    """
    if len(values) == 0:
        return values, values
    lo, hi = int(values.min()), int(values.max())
    span = hi - lo + 1
    if span <= 4 * len(values) + 1024:
        shifted = values - lo
        present = np.zeros(span, dtype=bool)
        present[shifted] = True
        rank = np.cumsum(present) - 1
        return np.flatnonzero(present) + lo, rank[shifted]
    uniq, index = np.unique(values, return_inverse=True)
    return uniq, index.ravel()


def _level_labels(levels) -> list[str]:
    """Level labels: text levels as they are, numeric levels as R's as.character() writes them."""
    if isinstance(levels, np.ndarray) and levels.dtype.kind == "f":
        return [r_number(v) for v in levels]
    return list(levels)


def _check_levels(terms: list[ReTerm], factors: dict[str, GroupingFactor], n: int, glmm: bool = False):
    """lme4's checkNlevels and checkZdims (both 'stop' by default for lmer; glmer allows a level per
    observation, as an observation-level random effect for overdispersion)."""
    few = [name for name, f in factors.items() if f.n_levels < 2]
    if few:
        only = factors[few[0]].labels()[:1]
        value = f": {few[0]} has the single value {only[0]!r} in the rows used" if only else ""
        raise DataError(
            f"grouping factors must have > 1 sampled level (problems: {', '.join(few)}){value}"
        )
    if glmm:
        return
    many = [name for name, f in factors.items() if f.n_levels >= n]
    if many:
        raise DataError(
            "number of levels of each grouping factor must be < number of observations "
            f"(problems: {', '.join(many)}): every observation would be its own group"
        )
    for t in terms:
        q = t.n_levels * t.k
        if n <= q and not t.structure:  # (a structure's few parameters identify it, as in glmmTMB)
            raise DataError(
                f"number of observations (={n}) <= number of random effects (={q}) for term "
                f"({_effects_label(t.names)} | {t.factor}); the random-effects parameters and the "
                "residual variance are probably unidentifiable"
            )


def _check_structure(rt, zm, formula: Formula, glmm: bool) -> None:
    """What glmmTMB's structures need of their term: ar1 the indicators of one factor's ordered
    levels (occasions), no intercept; cs at least two effects (with one it is a variance); and,
    for now, a linear mixed model."""
    text = f"{rt.structure}({rt.label})"
    if glmm:
        raise FormulaError(f"{text}: structured covariances (diag, cs, ar1) are fitted in linear mixed models only, "
                           "not yet with a family", formula.text, rt.span[0])
    if rt.structure == "ar1":
        factor = len(rt.terms) == 1 and len(rt.terms[0]) == 1 and not rt.intercept and len(zm.assign) > 1
        if not factor or not np.all((zm.X == 0.0) | (zm.X == 1.0)) or not np.all(zm.X.sum(axis=1) == 1.0):
            raise FormulaError(f"{text}: ar1 needs the occasions as one factor without an intercept, as in "
                               "ar1(0 + factor(time) | id) (its levels in time order)", formula.text, rt.span[0])
    if rt.structure == "cs" and zm.X.shape[1] < 2:
        raise FormulaError(f"{text} has one effect, so no correlation: write (... | g) for its variance, or give cs() "
                           "several effects, as in cs(0 + factor(time) | id)", formula.text, rt.span[0])


def _no_rows_message(formula: Formula, table: Table) -> str:
    """Why no row is complete: the variables with missing values, the emptiest first."""
    counts = []
    for expr in dict.fromkeys(formula.frame_variables):
        if isinstance(expr, Var) and isinstance(table.columns.get(expr.name), TextColumn):
            missing = int((table[expr.name].codes < 0).sum())
        else:
            missing = int(np.isnan(evaluate(expr, table)).sum())
        if missing:
            counts.append((missing, expr.label))
    counts.sort(key=lambda c: -c[0])
    total = table.nrows
    if counts and counts[0][0] == total:
        return (f"no rows left: {counts[0][1]} is missing in all {total} rows "
                "(empty fields and NA are missing values)")
    listed = ", ".join(f"{name}: {k} missing" for k, name in counts[:4])
    return f"no rows left: each of the {total} rows has a missing value in a variable of the formula ({listed})"


def _bar_text(formula: Formula, span: tuple[int, int]) -> str:
    return formula.text[span[0]:span[1]] if span != (0, 0) else ""


def _double_bar_factor_messages(formula: Formula, table: Table) -> list[str]:
    """lme4's (f || g) with a factor f does not give uncorrelated per-level effects: say so."""
    out = []
    seen = set()
    for rt in formula.random:
        if not rt.double_bar or rt.span in seen:
            continue
        factors = [v.name for t in rt.terms for v in t
                   if isinstance(v, Var) and isinstance(table.columns.get(v.name), TextColumn)]
        if not factors:
            continue
        seen.add(rt.span)
        f = factors[0]
        group = rt.group_label or rt.lme4_group_name
        out.append(
            f"{_bar_text(formula, rt.span) or rt.label}: {f} is a factor (text column), so '||' does not make its "
            f"effects uncorrelated: as in lme4, (0 + {f} | {group}) estimates correlations among {f}'s levels; "
            f"for independent effects use (1 | {group}) + (1 | {group}:{f})"
        )
    return out


def _repeated_effect_messages(formula: Formula, terms: list[ReTerm], term_sources: list[int]) -> list[str]:
    """The same effect (column) of the same grouping factor in two terms: lme4 fits both, but only the
    sum of their variances is identified; warn (R's terms() would not drop it: lme4 keeps it too)."""
    out = []
    first: dict[tuple[str, str], int] = {}
    reported = set()
    for t, source in sorted(zip(terms, term_sources), key=lambda pair: pair[1]):
        for name in t.names:
            key = (t.factor, name)
            if key not in first:
                first[key] = source
                continue
            if (key, first[key], source) in reported:
                continue
            reported.add((key, first[key], source))
            a, b = formula.random[first[key]], formula.random[source]
            text_a = _bar_text(formula, a.span) or f"({a.label})"
            text_b = _bar_text(formula, b.span) or f"({b.label})"
            where = f"appears twice, in {text_a}" if a.span == b.span else f"is in both {text_a} and {text_b}"
            if text_a == text_b and a.span != b.span:
                where = f"appears twice ({text_a} is repeated)"
            out.append(
                f"the random effect {name} for {t.factor} {where}: as in lme4 both are fitted, "
                "but only the sum of their variances is identified; remove one"
            )
    return out
