"""Compute formula expressions over a ``Table``.

``evaluate(expr, table)`` gives a float64 array over all rows of the table, as
R's ``model.frame`` evaluates variables before dropping incomplete rows: NaN
propagates, ``log`` of non-positive values gives NaN / -inf like numpy (the
caller reports them), and ``scale(x)`` centres and divides by the sample SD
computed over every row where x is present.

``check_variables(formula, table)`` checks a formula against the table's columns
up front, so that errors point at the place in the formula.
"""

from __future__ import annotations

import difflib
import math
import re

import numpy as np

from ..errors import DataError, FormulaError
from ..table import Table, TextColumn
from .collation import r_sort_key
from .exprs import CATEGORICAL, MATRIX, BinOp, Call, Expr, Num, Paren, UnaryOp, Var

_UNARY = {
    "abs": np.abs,
    "exp": np.exp,
    "log": np.log,
    "log10": np.log10,
    "log2": np.log2,
    "sqrt": np.sqrt,
}


def _scale_parameters(x: np.ndarray) -> list[float]:
    ok = ~np.isnan(x)
    n = int(ok.sum())
    centre = x[ok].mean() if n else np.nan
    sd = x[ok].std(ddof=1) if n > 1 else np.nan
    return [float(centre), float(sd)]


def evaluate(expr: Expr, table: Table, state: dict | None = None) -> np.ndarray:
    """The values of ``expr`` on every row of ``table`` (float64, NaN where missing). ``state``:
    the parameters of the stateful calls (``stateful_parameters`` of the fitted data, by label),
    to evaluate new rows as the fitted ones were (R's ``makepredictcall``)."""
    with np.errstate(all="ignore"):
        return full_length(_eval(expr, table, expr, state or {}), table.nrows)


def stateful_parameters(exprs, table: Table) -> dict:
    """R's remembered parameters of every stateful call among ``exprs`` (and inside them),
    computed on every row of ``table`` where its argument is present, as the fit computed them:
    ``scale()``'s centre and SD, ``poly()``'s coefficients, ``ns()``/``bs()``'s knots. Plain
    JSON values (a saved fit keeps them)."""
    from . import splines

    state: dict = {}

    def visit(e):
        for a in getattr(e, "args", ()):
            visit(a)
        for attr in ("operand", "left", "right"):
            if hasattr(e, attr):
                visit(getattr(e, attr))
        if not isinstance(e, Call) or e.label in state:
            return
        if e.func == "scale" or (e.func in MATRIX and not (e.func == "poly" and e.option("raw", False))):
            with np.errstate(all="ignore"):
                x = full_length(_eval(e.args[0], table, e, state), table.nrows)
            x = x[~np.isnan(x)]
            if not x.size:
                return
            try:
                if e.func == "scale":
                    state[e.label] = _scale_parameters(x)
                elif e.func == "poly":
                    state[e.label] = list(splines.poly_coefs(x, e.option("degree")))
                else:
                    state[e.label] = splines.spline_knots(e.func, x, df=e.option("df"),
                                                          degree=e.option("degree", 3),
                                                          intercept=e.option("intercept", False))
            except ValueError as err:
                raise DataError(f"{e.label}: {err}") from None

    for e in exprs:
        visit(e)
    return state


def _eval(expr: Expr, table: Table, whole: Expr, state: dict):
    if isinstance(expr, Var):
        if expr.name not in table:
            raise FormulaError(f"unknown column '{expr.name}'")
        col = table[expr.name]
        if isinstance(col, TextColumn):
            where = "" if whole is expr else f" in {whole.label}"
            raise FormulaError(f"column '{expr.name}' is text, not numbers; it cannot be used{where}")
        return np.asarray(col, dtype=np.float64)
    if isinstance(expr, Num):
        return np.float64(expr.value)
    if isinstance(expr, Paren):
        return _eval(expr.operand, table, whole, state)
    if isinstance(expr, UnaryOp):
        value = _eval(expr.operand, table, whole, state)
        return -value if expr.op == "-" else +value
    if isinstance(expr, BinOp):
        a = _eval(expr.left, table, whole, state)
        b = _eval(expr.right, table, whole, state)
        if expr.op == "+":
            return a + b
        if expr.op == "-":
            return a - b
        if expr.op == "*":
            return a * b
        if expr.op == "/":
            return np.true_divide(a, b)
        if expr.op == "^":
            return np.power(np.asarray(a, dtype=np.float64), b)
        raise FormulaError(f"unsupported operator '{expr.op}' in {whole.label}")
    if isinstance(expr, Call):
        if expr.func in MATRIX:
            basis = evaluate_matrix(expr, table, state)
            if basis.shape[1] == 1 and whole is expr:
                return basis[:, 0]
            raise FormulaError(f"{expr.label} gives {basis.shape[1]} columns (a basis), so it cannot be used"
                               + ("" if whole is expr else f" in {whole.label}") + "; use it as a model term")
        if expr.func in CATEGORICAL:
            raise FormulaError(f"{expr.label} is categorical (a factor), not numbers; it cannot be used"
                               + ("" if whole is expr else f" in {whole.label}"))
        if expr.func == "cbind":
            raise FormulaError("cbind() belongs in the response")
        arg = np.asarray(_eval(expr.args[0], table, whole, state), dtype=np.float64)
        if expr.func in ("I", "as.numeric", "offset"):
            return arg
        if expr.func == "scale":
            x = np.broadcast_to(arg, (table.nrows,)).astype(np.float64)
            centre, sd = state.get(expr.label) or _scale_parameters(x)
            return (x - centre) / sd
        if expr.func in _UNARY:
            return _UNARY[expr.func](arg)
        raise FormulaError(f"unknown function '{expr.func}'")
    raise TypeError(f"not an expression: {expr!r}")


def evaluate_matrix(expr: Call, table: Table, state: dict | None = None) -> np.ndarray:
    """The basis of poly(), ns() or bs() on every row of ``table`` (rows × columns; NaN rows
    where the variable is missing). As R's model.frame, the basis is computed on every row
    of the data before incomplete rows are dropped, so the knots and polynomial coefficients
    are R's; unlike R's poly(), missing values give missing rows, not an error. With the
    fitted data's ``state`` (``stateful_parameters``), the fitted basis at these rows."""
    from . import splines

    x = evaluate(expr.args[0], table, state)
    ok = ~np.isnan(x)
    out = np.full((len(x), _basis_width(expr)), np.nan)
    if not ok.any():
        return out
    fitted = (state or {}).get(expr.label)
    try:
        if expr.func == "poly":
            basis = splines.poly(x[ok], expr.option("degree"), raw=expr.option("raw", False), coefs=fitted)
        elif expr.func == "ns":
            basis = splines.ns(x[ok], df=expr.option("df"), intercept=expr.option("intercept", False),
                               **(fitted or {}))
        else:
            basis = splines.bs(x[ok], df=expr.option("df"), degree=expr.option("degree", 3),
                               intercept=expr.option("intercept", False), **(fitted or {}))
    except ValueError as err:
        raise DataError(f"{expr.label}: {err}") from None
    out[ok] = basis
    return out


def _basis_width(expr: Call) -> int:
    if expr.func == "poly":
        return expr.option("degree")
    return expr.option("df")


def matrix_suffixes(expr: Call) -> list[str]:
    """R's model-matrix names of a basis's columns: the label, then 1, 2, … (just the label
    for a single column)."""
    k = _basis_width(expr)
    return [""] if k == 1 else [str(j) for j in range(1, k + 1)]


def full_length(values, nrows: int) -> np.ndarray:
    """Broadcast a constant (an expression of numbers only) to ``nrows`` rows."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0:
        return np.full(nrows, float(values))
    return values


def is_factor(expr: Expr, table: Table) -> bool:
    """Whether ``expr`` is categorical: a text column, or factor(...) / as.factor(...)."""
    if isinstance(expr, Call) and expr.func in CATEGORICAL:
        return True
    return isinstance(expr, Var) and isinstance(table.columns.get(expr.name), TextColumn)


def categorical(expr: Expr, table: Table, rows: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
    """The levels of a categorical expression on the kept ``rows`` (all rows if None), as R's
    factor() orders them — text sorted by R's collation, numbers numerically, labelled as
    as.character() writes them — and each kept row's level index (-1 where missing)."""
    if rows is None:
        rows = np.ones(table.nrows, dtype=bool)
    inner = expr.args[0] if isinstance(expr, Call) and expr.func in CATEGORICAL else expr
    while isinstance(inner, Paren):
        inner = inner.operand
    if isinstance(inner, Var) and isinstance(table.columns.get(inner.name), TextColumn):
        return factor_levels(table[inner.name], rows)
    if isinstance(inner, Call) and inner.func in CATEGORICAL:
        return categorical(inner, table, rows)
    values = evaluate(inner, table)[rows]
    ok = ~np.isnan(values)
    uniq, index = np.unique(values[ok], return_inverse=True)
    codes = np.full(len(values), -1, dtype=np.int64)
    codes[ok] = index.ravel()
    return [r_number(float(v)) for v in uniq], codes


def factor_levels(column: TextColumn, rows: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
    """The levels of a text column in the kept ``rows`` (sorted like R), and each kept
    row's level index (-1 where missing)."""
    codes = column.codes if rows is None else column.codes[rows]
    # (the codes present, in order: a bincount, where np.unique would import numpy.ma, 6 ms of start-up)
    present = (np.arange(len(column.labels)) if column.levels_fixed else
               np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(column.labels))))
    labels = [str(column.labels[c]) for c in present]
    order = sorted(range(len(labels)), key=lambda i: r_sort_key(labels[i]))
    levels = [labels[i] for i in order]
    lookup = np.full(len(column.labels) + 1, -1, dtype=np.int64)  # last slot: missing (-1)
    lookup[present[order]] = np.arange(len(levels))
    return levels, lookup[codes]


def r_number(v: float) -> str:
    """A number as R's as.character() writes it (15 significant digits; Inf, -Inf)."""
    if math.isinf(v):  # int(v) would raise
        return "Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.15g}"


def number_labels(values) -> TextColumn:
    """Numbers as text labels, as R's as.character() writes them (NaN missing): what a factor
    of them calls its levels. Numbers that print alike (15 significant digits) share a label."""
    arr = np.asarray(values, dtype=float)
    ok = ~np.isnan(arr)
    # format each distinct number once: a column of many rows has few distinct values
    uniq, inverse = np.unique(arr[ok], return_inverse=True)
    labels, merged = np.unique(np.array([r_number(float(v)) for v in uniq], dtype=object).astype(str),
                               return_inverse=True)
    codes = np.full(arr.shape, -1, dtype=np.int64)
    codes[ok] = merged.ravel()[inverse.ravel()]
    return TextColumn(codes=codes, labels=labels.astype(object))


def missing_values(expr: Expr, table: Table) -> np.ndarray:
    """Rows where ``expr`` is missing (R's model.frame: NA, or NaN from evaluating it)."""
    if is_factor(expr, table):
        inner = expr.args[0] if isinstance(expr, Call) else expr
        if isinstance(inner, Var) and isinstance(table.columns.get(inner.name), TextColumn):
            return table[inner.name].codes < 0
        return missing_values(inner, table)
    if isinstance(expr, Call) and expr.func == "cbind":
        return missing_values(expr.args[0], table) | missing_values(expr.args[1], table)
    if isinstance(expr, Call) and expr.func in MATRIX:
        return missing_values(expr.args[0], table)
    return np.isnan(evaluate(expr, table))


def check_variables(formula, table: Table, text_response: bool = False) -> None:
    """Raise FormulaError, with the position in the formula, for a column the table
    lacks or a text column used where numbers are needed (the response — unless
    ``text_response``, a binomial model's yes/no column —, inside a function or
    arithmetic)."""
    for occ in formula.occurrences:
        if occ.name not in table:
            close = difflib.get_close_matches(occ.name, table.names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise FormulaError(f"no column '{occ.name}' in the data{hint}", formula.text, occ.position)
        if occ.role == "response" and isinstance(table[occ.name], TextColumn) and not text_response:
            raise DataError(_text_response_message(occ.name, table))
        if occ.role == "value" and isinstance(table[occ.name], TextColumn):
            what = "arithmetic or a function"
            raise FormulaError(
                f"column '{occ.name}' is text, not numbers, so it cannot be used in {what}",
                formula.text,
                occ.position,
            )


# What pyarrow's CSV reader (and pandas) accept as a number; anything else makes a column text.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|Inf|INF|nan|NaN|NAN)")
# Spellings of "missing" that mixcli reads as text (only empty fields and NA are missing).
_MISSING_LOOKALIKES = {"n/a", "na", "nan", "null", "none", ".", "-", "--", "?", "missing", "#n/a", "nil"}


def non_numeric_labels(labels) -> np.ndarray:
    """For each label of a text column, whether it is not a number as the readers parse one."""
    return np.array([_NUMBER.fullmatch(str(lab)) is None for lab in labels], dtype=bool)


def where_in_data(table: Table, index: int) -> str:
    """Where row ``index`` (0-based) of ``table`` is, for a message: ``line 7`` of a file
    (counting the header as line 1), ``row 6`` of an in-memory table."""
    if table.source == "<data>":
        return f"row {index + 1}"
    return f"line {index + 2}"


def _text_response_message(name: str, table: Table) -> str:
    """Why a text column cannot be the response: its first value that is not a number, and where."""
    column = table[name]
    labels = column.labels
    bad_label = non_numeric_labels(labels)
    codes = column.codes
    bad_rows = np.flatnonzero((codes >= 0) & bad_label[np.maximum(codes, 0)])
    if len(bad_rows) == 0:  # every value looks like a number (cannot happen with mixcli's readers)
        return f"the response '{name}' is a text column; a linear mixed model needs a numeric response"
    row = int(bad_rows[0])
    value = str(labels[codes[row]])
    shown = value if len(value) <= 40 else value[:37] + "..."
    numeric = int(((codes >= 0) & ~bad_label[np.maximum(codes, 0)]).sum())
    if value.strip().lower() in _MISSING_LOOKALIKES:
        hint = "; missing values must be empty fields or NA"
    elif value != value.strip() and _NUMBER.fullmatch(value.strip()):
        hint = "; remove the spaces around the number"
    elif "," in value and _NUMBER.fullmatch(value.replace(",", ".", 1)):
        hint = "; use '.' as the decimal mark"
    elif numeric == 0:
        hint = "; a linear mixed model needs a numeric response (a text column is a factor)"
    else:
        hint = "; fix the value or make it an empty field (missing)"
    return (f"the response '{name}' is not numeric: {where_in_data(table, row)} has {shown!r} "
            f"({len(bad_rows)} non-numeric value{'s' if len(bad_rows) != 1 else ''}){hint}")
