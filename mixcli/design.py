"""Design matrices: R's ``model.matrix``, with treatment, sum or Helmert contrasts.

``model_matrix(intercept, terms, table, rows)`` builds the fixed-effects matrix of
a formula (``f.intercept, f.terms``) or the model matrix of a random-effects
term's left-hand side (``r.intercept, r.terms``), on the kept ``rows``.

* Numeric expressions are columns, named by their label (``I(ses^2)``).
* Text columns are factors whose levels are the labels present in the kept rows,
  sorted as R sorts them (``r_sort_key``); the first level is the baseline.
* A factor in a term is coded by contrasts (one column per non-baseline level)
  when the term without that factor is in the model before it (as a subset of
  an earlier term; the empty term counts as present), and by indicators (one
  column per level) otherwise; without an intercept, the first factor of the
  first term that has one gets indicators (R's rule, from "Statistical Models in
  S", p. 38). So ``y ~ 0 + recipe`` gives recipeA, recipeB, recipeC and
  ``y ~ recipe:temp`` gives recipeA:temp, recipeB:temp, recipeC:temp.
* Interaction columns are named ``a1:b2``, the first variable varying fastest.
* A basis (``poly(x, 2)``, ``ns(x, df = 3)``, ``bs(x, df = 4)``) gives one column per
  function, named ``poly(x, 2)1``, ``poly(x, 2)2`` (one column: just the label).
* Contrasts are R's ``contr.treatment`` (columns named by level), ``contr.sum`` and
  ``contr.helmert`` (columns numbered 1…k−1): ``C(f, sum)`` in the formula sets them for
  one factor, ``contrasts="sum"`` for every other (R's ``options(contrasts = ...)`` for
  unordered factors). Indicator coding (no intercept) ignores them, as R does.

Rank deficiency is left to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import DataError
from .formula.collation import r_sort_key
from .formula.evaluate import (
    categorical,
    evaluate,
    evaluate_matrix,
    factor_levels,
    is_factor,
    matrix_suffixes,
    missing_values,
)
from .formula.exprs import MATRIX, Call, Expr, Term, Var
from .table import Table

__all__ = ["DesignMatrix", "model_matrix", "complete_rows", "factor_levels", "term_codings", "r_sort_key"]


@dataclass
class DesignMatrix:
    """``X`` (kept rows x columns), R's column ``names``, and ``assign``: for each
    column the term it comes from (0 = intercept, j = ``terms[j-1]``), as R's
    ``attr(X, "assign")``. ``levels`` gives each factor's levels, baseline first."""

    X: np.ndarray
    names: list[str]
    assign: list[int]
    levels: dict[str, list[str]] = field(default_factory=dict)


def term_codings(intercept: bool, terms: tuple[Term, ...], is_factor) -> list[list[int]]:
    """For each term and each of its variables: 0 numeric, 1 contrasts, 2 indicators.

    ``is_factor(expr)`` tells factors from numeric variables.
    """
    sets = [frozenset(t) for t in terms]
    codings: list[list[int]] = []
    for j, term in enumerate(terms):
        row = []
        for v in term:
            if not is_factor(v):
                row.append(0)
                continue
            rest = sets[j] - {v}
            if not rest or any(rest <= earlier for earlier in sets[:j]):
                row.append(1)
            else:
                row.append(2)
        codings.append(row)
    if not intercept:
        for row in codings:
            k = next((k for k, c in enumerate(row) if c), None)
            if k is not None:
                row[k] = 2
                break
    return codings


CONTRASTS = ("treatment", "sum", "helmert")


def contrast_columns(kind: str, k: int, index: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    """The k − 1 contrast columns of a factor with k levels for each row's level ``index``,
    and their name suffixes: R's contr.sum (level j: +1 in column j, the last level −1 in
    all) and contr.helmert (column j: −1 for the levels before j + 1, j for level j + 1)."""
    if kind == "sum":
        last = (index == k - 1).astype(np.float64)
        return [str(j + 1) for j in range(k - 1)], [(index == j) - last for j in range(k - 1)]
    cols = []
    for j in range(1, k):
        cols.append(np.where(index < j, -1.0, np.where(index == j, float(j), 0.0)))
    return [str(j) for j in range(1, k)], cols


def model_matrix(
    intercept: bool,
    terms: tuple[Term, ...],
    table: Table,
    rows: np.ndarray | None = None,
    contrasts: str = "treatment",
    state: dict | None = None,
) -> DesignMatrix:
    """R's ``model.matrix`` of ``intercept`` + ``terms`` on the kept ``rows`` (a boolean
    mask over the table's rows; all rows if None), unordered factors coded by ``contrasts``
    unless C() says otherwise; ``state``: the fitted data's stateful parameters (new rows)."""
    if rows is None:
        rows = np.ones(table.nrows, dtype=bool)
    rows = np.asarray(rows, dtype=bool)
    n = int(rows.sum())

    def factor_term(expr: Expr) -> bool:
        return is_factor(expr, table)

    numeric_cache: dict[Expr, np.ndarray] = {}
    factor_cache: dict[Expr, tuple[list[str], np.ndarray]] = {}

    def numeric(expr: Expr) -> np.ndarray:
        if expr not in numeric_cache:
            numeric_cache[expr] = evaluate(expr, table, state)[rows]
        return numeric_cache[expr]

    def factor(expr: Expr) -> tuple[list[str], np.ndarray]:
        if expr not in factor_cache:
            levels, index = categorical(expr, table, rows)
            what = f"column '{expr.name}'" if isinstance(expr, Var) else expr.label
            if (index < 0).any():
                raise DataError(f"{what} has missing values in the rows used")
            if len(levels) < 2:
                which = f"one value ('{levels[0]}')" if levels else "no values"
                fix = ("" if isinstance(expr, Var) else "; remove it from the formula (a factor of one level "
                       "has no contrasts)")
                raise DataError(f"{what} has {which} in the rows used; a factor needs at least two levels{fix}")
            factor_cache[expr] = (levels, index)
        return factor_cache[expr]

    names: list[str] = []
    columns: list[np.ndarray] = []
    assign: list[int] = []
    if intercept:
        names.append("(Intercept)")
        columns.append(np.ones(n))
        assign.append(0)
    codings = term_codings(intercept, terms, factor_term)
    for j, (term, coding) in enumerate(zip(terms, codings), start=1):
        block: list[tuple[str, np.ndarray]] = [("", None)]
        for v, code in zip(term, coding):
            if code == 0 and isinstance(v, Call) and v.func in MATRIX:
                basis = evaluate_matrix(v, table, state)[rows]
                parts = [(v.label + suffix, basis[:, j]) for j, suffix in enumerate(matrix_suffixes(v))]
            elif code == 0:
                parts = [(v.label, numeric(v))]
            else:
                levels, index = factor(v)
                kind = v.option("contr") if isinstance(v, Call) and v.func == "C" else contrasts
                if code == 1 and kind != "treatment":
                    suffixes, cols = contrast_columns(kind, len(levels), index)
                    parts = [(v.label + sfx, col) for sfx, col in zip(suffixes, cols)]
                else:
                    first = 1 if code == 1 else 0
                    parts = [(v.label + levels[i], (index == i).astype(np.float64))
                             for i in range(first, len(levels))]
            # the earlier variables vary fastest; Inf * 0 gives NaN quietly (the caller reports it)
            with np.errstate(invalid="ignore", over="ignore"):
                block = [
                    (f"{n1}:{n2}" if n1 else n2, v2 if v1 is None else v1 * v2)
                    for n2, v2 in parts
                    for n1, v1 in block
                ]
        for name, values in block:
            names.append(name)
            columns.append(values)
            assign.append(j)
    X = np.column_stack(columns) if columns else np.empty((n, 0))
    levels = {e.label: lv for e, (lv, _) in factor_cache.items()}
    return DesignMatrix(X=np.ascontiguousarray(X, dtype=np.float64), names=names, assign=assign, levels=levels)


def complete_rows(formula, table: Table) -> np.ndarray:
    """The rows R's ``model.frame`` keeps for an lme4 formula: ``na.omit`` on every
    variable of ``formula.frame_variables`` (response, fixed and random-effects
    variables, even those of removed terms as in ``y ~ x - z``, grouping columns).

    As in R, a value that evaluates to NaN (``log(-1)``) counts as missing; ±inf
    does not. Callers that want to report such rows can compare with the raw
    columns' missing values.
    """
    keep = np.ones(table.nrows, dtype=bool)
    exprs: list[Expr] = list(formula.frame_variables)
    seen: set[Expr] = set()
    for expr in exprs:
        if expr in seen:
            continue
        seen.add(expr)
        keep &= ~missing_values(expr, table)
    return keep
