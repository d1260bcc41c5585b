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

from dataclasses import dataclass, field

import numpy as np

from .design import complete_rows, model_matrix
from .engine.structure import ReTerm
from .errors import DataError, FormulaError
from .formula import Formula, parse_formula, r_sort_key
from .formula.evaluate import check_variables, evaluate
from .table import Table, TextColumn

# lme4's tolerance for aliased columns (base R's qr(), LINPACK dqrdc2).
RANK_TOL = 1e-7


@dataclass
class GroupingFactor:
    """Integer codes of a (possibly interaction) grouping factor over the kept rows.

    Levels are ordered as R orders ``factor(a:b)``: by the first column's
    level, then the next; only combinations that occur are levels. Labels
    are built on demand (a million Python strings is not free).
    """

    name: str
    codes: np.ndarray
    n_levels: int
    parts: list[tuple[list[str], np.ndarray]]  # per column: sorted level labels, level index per level of this factor

    def engine_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Codes numbered by first appearance in the data, and each such level's R index.

        The engine works in this order: two codings of the same partition of the
        rows (``classid`` and ``schoolid:classid2``) then give bit-identical
        arithmetic and identical fits, and data sorted by group make the
        nesting maps monotone.
        """
        _, first = np.unique(self.codes, return_index=True)
        to_r = np.argsort(first, kind="stable")
        rank = np.empty(self.n_levels, dtype=np.int64)
        rank[to_r] = np.arange(self.n_levels)
        return rank[self.codes], to_r

    def labels(self) -> list[str]:
        cols = [np.asarray(labels, dtype=object)[idx] for labels, idx in self.parts]
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
    dropped_columns: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def ngroups(self) -> dict[str, int]:
        """Levels per grouping factor, in the order of the sorted terms (lme4's ``ngrps``)."""
        return {name: f.n_levels for name, f in self.factors.items()}


def model_frame(table: Table, formula: Formula | str) -> ModelFrame:
    if isinstance(formula, str):
        formula = parse_formula(formula)
    if not formula.random:
        raise FormulaError(
            "no random-effects terms; add one such as (1 | group) (for a model without them use ordinary regression)",
            formula.text,
        )
    check_variables(formula, table)
    rows = complete_rows(formula, table)
    n = int(rows.sum())
    n_dropped = table.nrows - n
    if n == 0:
        raise DataError(
            f"no rows left: all {table.nrows} rows have a missing value in a column the formula uses"
        )
    messages: list[str] = []

    y = evaluate(formula.response, table)[rows]
    if not np.all(np.isfinite(y)):
        bad = int(np.flatnonzero(~np.isfinite(y))[0])
        row = int(np.flatnonzero(rows)[bad]) + 2  # 1-based, after the header line
        raise DataError(f"the response {formula.response.label} is infinite on line {row} of the data")

    design = model_matrix(formula.intercept, formula.terms, table, rows)
    X, names, dropped = _drop_aliased(design.X, design.names)
    if dropped:
        k = len(dropped)
        messages.append(
            f"fixed-effect model matrix is rank deficient so dropping {k} column{'s' if k > 1 else ''} / "
            f"coefficient{'s' if k > 1 else ''} ({', '.join(dropped)})"
        )
    if not np.all(np.isfinite(X)):
        col = names[int(np.flatnonzero(~np.all(np.isfinite(X), axis=0))[0])]
        raise DataError(f"the fixed-effect column {col} has infinite values")

    factors: dict[str, GroupingFactor] = {}
    engine_codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    terms: list[ReTerm] = []
    for rt in formula.random:
        key = rt.lme4_group_name
        if key not in factors:
            factors[key] = _grouping_factor(table, rt.group, key, rows, messages)
        gf = factors[key]
        if key not in engine_codes:
            engine_codes[key] = gf.engine_codes()
        zm = model_matrix(rt.intercept, rt.terms, table, rows)
        if zm.X.shape[1] == 0:
            raise FormulaError(f"the random-effects term ({rt.label}) has no effects", formula.text, rt.span[0])
        if not np.all(np.isfinite(zm.X)):
            raise DataError(f"the random-effects term ({rt.label}) has infinite values")
        terms.append(
            ReTerm(
                codes=engine_codes[key][0], n_levels=gf.n_levels, z=zm.X, group=key, names=zm.names, factor=key,
            )
        )
    order = lme4_term_order([t.n_levels for t in terms])
    terms = [terms[i] for i in order]
    for name, t in zip(_unique_names([t.group for t in terms]), terms):
        t.group = name
    ordered_factors = {}
    for t in terms:
        ordered_factors.setdefault(t.factor, factors[t.factor])
        t.levels_to_r = engine_codes[t.factor][1]
    _check_levels(terms, ordered_factors, n)
    return ModelFrame(
        formula=formula, y=y, X=X, fixef_names=names, terms=terms, factors=ordered_factors,
        rows=rows, n_dropped=n_dropped, term_sources=order, dropped_columns=dropped, messages=messages,
    )


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


def _drop_aliased(X: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop columns that are linear combinations of earlier ones (lme4's check.rankX).

    |R_jj| of an unpivoted QR is the norm of column j's part orthogonal to the
    columns before it; relative to the column's own norm, below 1e-7 means
    aliased. This matches base R's limited-pivoting QR, which moves exactly
    those columns to the end and so drops the later of two collinear columns.
    """
    if X.shape[1] == 0:
        return X, names, []
    norms = np.linalg.norm(X, axis=0)
    # One O(n p²) QR of X; thereafter X[:, cols] = Q R[:, cols], so each test
    # is a QR of the small p × |cols| matrix R[:, cols].
    r_full = np.linalg.qr(X, mode="r")
    keep: list[int] = []
    for j in range(X.shape[1]):
        if norms[j] == 0.0:
            continue
        r = np.linalg.qr(r_full[:, keep + [j]], mode="r")
        if abs(r[-1, -1]) > RANK_TOL * norms[j]:
            keep.append(j)
    dropped = [names[j] for j in range(X.shape[1]) if j not in keep]
    return X[:, keep], [names[j] for j in keep], dropped


def _grouping_factor(table: Table, columns: tuple[str, ...], name: str, rows: np.ndarray, messages) -> GroupingFactor:
    parts = []
    combined = None
    for col in columns:
        levels, index = _factor_codes(table, col, rows, messages)
        parts.append((levels, index))
        combined = index.astype(np.int64) if combined is None else combined * len(levels) + index
    if len(columns) == 1:
        levels, index = parts[0]
        used = np.unique(index)
        if len(used) == len(levels):
            return GroupingFactor(name, index.astype(np.int64), len(levels), [(levels, np.arange(len(levels)))])
        codes = np.searchsorted(used, index)
        return GroupingFactor(name, codes, len(used), [(levels, used)])
    used, codes = np.unique(combined, return_inverse=True)
    # decode each used combination into its per-column level indices
    idx_parts = []
    rem = used
    sizes = [len(levels) for levels, _ in parts]
    for size in reversed(sizes):
        idx_parts.append(rem % size)
        rem = rem // size
    idx_parts.reverse()
    return GroupingFactor(
        name, codes.ravel().astype(np.int64), len(used), [(levels, idx) for (levels, _), idx in zip(parts, idx_parts)]
    )


def _factor_codes(table: Table, col: str, rows: np.ndarray, messages) -> tuple[list[str], np.ndarray]:
    """Levels (sorted as R's factor() sorts them) and per-row level index of one grouping column."""
    column = table[col]
    if isinstance(column, TextColumn):
        codes = column.codes[rows]
        present = np.unique(codes)
        labels = [str(column.labels[c]) for c in present]
        order = sorted(range(len(labels)), key=lambda i: r_sort_key(labels[i]))
        lookup = np.empty(len(column.labels), dtype=np.int64)
        lookup[present[order]] = np.arange(len(order))
        return [labels[i] for i in order], lookup[codes]
    values = column[rows]
    uniq, index = np.unique(values, return_inverse=True)
    if len(uniq) and not np.all(np.isfinite(uniq)):
        raise DataError(f"the grouping column '{col}' has infinite values")
    if np.any(uniq != np.round(uniq)):
        messages.append(
            f"grouping factor '{col}' has non-integer values; it is treated as categorical with "
            f"{len(uniq)} levels (is it really a grouping variable?)"
        )
    return [_r_number(v) for v in uniq], index.ravel()


def _r_number(v: float) -> str:
    """A number as R's as.character() writes it (15 significant digits)."""
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.15g}"


def _check_levels(terms: list[ReTerm], factors: dict[str, GroupingFactor], n: int):
    """lme4's checkNlevels and checkZdims (both 'stop' by default)."""
    few = [name for name, f in factors.items() if f.n_levels < 2]
    if few:
        raise DataError(
            f"grouping factors must have > 1 sampled level (problems: {', '.join(few)})"
        )
    many = [name for name, f in factors.items() if f.n_levels >= n]
    if many:
        raise DataError(
            "number of levels of each grouping factor must be < number of observations "
            f"(problems: {', '.join(many)}): every observation would be its own group"
        )
    for t in terms:
        q = t.n_levels * t.k
        if n <= q:
            raise DataError(
                f"number of observations (={n}) <= number of random effects (={q}) for term "
                f"({' + '.join(t.names)} | {t.factor}); the random-effects parameters and the "
                "residual variance are probably unidentifiable"
            )
