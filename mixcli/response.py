"""The response of a generalized linear mixed model, read as R's glm() reads it, and prior weights.

Binomial, as ``binomial()$initialize`` takes it:

* ``cbind(successes, failures)``: y = successes / trials, prior weight = trials;
* a 0/1 column (or any two-valued numbers 0 and 1);
* a categorical column — text such as yes/no or TRUE/FALSE, or ``factor(x)``:
  the first level (in R's order) is a failure, every other level a success;
* a proportion in [0, 1] with the trials as ``--weights``.

Poisson, nbinom2 and nbinom1: non-negative counts (non-integer ones fit, with a warning, as glmer).
Gamma: positive values.
Prior weights (``--weights COLUMN``) must be finite and non-negative, not all 0.

Each problem is one ``DataError`` naming the column and the fix.
"""

from __future__ import annotations

import numpy as np

from .errors import DataError, option
from .formula import Call, Formula
from .formula.evaluate import categorical, evaluate, is_factor, where_in_data
from .table import Table

INTEGER_TOL = 1e-3  # R's binomial() warns about non-integer successes beyond this
MAX_COUNT = 2.0**53  # beyond, counts are not exact integers in double precision


def prior_weights(weights, table: Table, rows: np.ndarray) -> np.ndarray | None:
    """The prior weights on the kept rows: a column name, or an array over the table's rows."""
    if weights is None:
        return None
    values = weight_values(weights, table)
    w = values[rows]
    name = weights if isinstance(weights, str) else "weights"
    if np.any(w < 0):
        i = int(np.flatnonzero(rows)[np.flatnonzero(w < 0)[0]])
        raise DataError(f"the weights '{name}' have a negative value ({values[i]:g}) on {where_in_data(table, i)}; "
                        "prior weights must be non-negative (the number of trials, or a precision)")
    if not np.any(w > 0):
        raise DataError(f"the weights '{name}' are 0 in every row used; give at least one positive weight")
    return w


def weight_values(weights, table: Table) -> np.ndarray:
    """The weights over every row of the table (NaN where missing)."""
    from .table import TextColumn

    if isinstance(weights, str):
        if weights not in table:
            import difflib

            close = difflib.get_close_matches(weights, table.names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise DataError(f"{option('weights')}: no column '{weights}' in the data{hint}")
        column = table[weights]
        if isinstance(column, TextColumn):
            raise DataError(f"{option('weights')}: the column '{weights}' is text, not numbers; weights must be numeric")
        values = np.asarray(column, dtype=float)
    else:
        values = np.asarray(weights, dtype=float)
        if values.shape != (table.nrows,):
            raise DataError(f"weights of length {len(values)} for {table.nrows} rows of data")
    if np.any(np.isinf(values)):
        raise DataError("the weights have an infinite value; weights must be finite")
    return values


def weight_missing(weights, table: Table) -> np.ndarray:
    """Rows whose weight is missing (dropped, as R's model.frame drops them)."""
    if weights is None:
        return np.zeros(table.nrows, dtype=bool)
    return np.isnan(weight_values(weights, table))


def glm_response(formula: Formula, table: Table, rows: np.ndarray, family, wt: np.ndarray | None):
    """(y, prior weights, warnings) for ``family`` on the kept ``rows``."""
    response = formula.response
    label = response.label
    n = int(rows.sum())
    user_wt = np.ones(n) if wt is None else wt
    notes: list[str] = []
    if family.name == "binomial":
        if isinstance(response, Call) and response.func == "cbind":
            s = evaluate(response.args[0], table)[rows]
            f = evaluate(response.args[1], table)[rows]
            for part, values in ((response.args[0].label, s), (response.args[1].label, f)):
                if np.any(~np.isfinite(values)):
                    raise DataError(f"cbind(): {part} has an infinite value; counts must be finite")
                if np.any(values > MAX_COUNT):
                    raise DataError(f"cbind(): {part} has the count {float(values[values > MAX_COUNT][0]):g}, "
                                    "beyond 2^53 (not exact in double precision); check the data")
                if np.any(values < 0):
                    raise DataError(f"cbind(): {part} has a negative value ({values[values < 0][0]:g}); "
                                    "cbind(successes, failures) needs non-negative counts")
            trials = s + f
            y = np.divide(s, trials, out=np.zeros(n), where=trials > 0)
            prior = trials * user_wt
            if np.any(np.abs(s - np.round(s)) > INTEGER_TOL) or np.any(np.abs(f - np.round(f)) > INTEGER_TOL):
                notes.append("non-integer counts of successes or failures in a binomial model")
        elif is_factor(response, table):
            levels, index = categorical(response, table, rows)
            if len(levels) < 2:
                raise DataError(f"the response '{label}' has one value ('{levels[0]}') in all {n} rows used; "
                                "a binomial model needs both outcomes")
            y = (index > 0).astype(float)
            prior = user_wt
            if len(levels) > 2:
                notes.append(f"the response '{label}' has {len(levels)} levels: as in R, the first "
                             f"('{levels[0]}') counts as failure and all others as success")
        else:
            y = evaluate(response, table)[rows]
            prior = user_wt
            if wt is None and np.any((y != 0) & (y != 1)):
                bad = float(y[(y != 0) & (y != 1)][0])
                raise DataError(
                    f"the response '{label}' has the value {bad:g}, but a binomial response is 0/1, "
                    f"cbind(successes, failures), or a proportion with the number of trials as {option('weights')}")
            if np.any((y < 0) | (y > 1)):
                bad = float(y[(y < 0) | (y > 1)][0])
                raise DataError(f"the response '{label}' has the value {bad:g}; a proportion must be between 0 and 1")
            if np.any(np.abs(y * prior - np.round(y * prior)) > INTEGER_TOL):
                notes.append("non-integer #successes in a binomial glm!")
        used = prior > 0
        if np.all(y[used] == 0) or np.all(y[used] == 1):
            which = "0 (failure)" if np.all(y[used] == 0) else "1 (success)"
            raise DataError(f"the response '{label}' is {which} in every row used; a binomial model needs both "
                            "outcomes")
        return y, prior, notes
    if family.name == "Gamma":
        return _positive_response(response, label, table, rows), user_wt, notes
    # counts: poisson, nbinom2, nbinom1
    name = family.name
    a = "an" if name.startswith("nbinom") else "a"
    if is_factor(response, table):
        raise DataError(f"the response '{label}' is categorical; {a} {name} model needs counts")
    y = evaluate(response, table)[rows]
    if np.any(~np.isfinite(y)):
        raise DataError(f"the response '{label}' has an infinite value; counts must be finite")
    if np.any(y < 0):
        raise DataError(f"the response '{label}' has a negative value ({float(y[y < 0][0]):g}); {name} counts "
                        "must be non-negative")
    if np.any(y > MAX_COUNT):
        raise DataError(f"the response '{label}' has the count {float(y[y > MAX_COUNT][0]):g}, beyond 2^53 "
                        "(counts so large are not exact in double precision, and their likelihood loses all "
                        "its digits): rescale them and fit a linear mixed model, or check the data")
    if np.all(y == 0):
        raise DataError(f"the response '{label}' is 0 in every row used; {a} {name} model needs some counts")
    if np.any(y != np.round(y)):
        notes.append(f"the response '{label}' has non-integer values: {a} {name} model is for counts "
                     f"(fitted anyway, as {'glmmTMB' if name == 'nbinom1' else 'glmer'} does)")
    return y, user_wt, notes


def _positive_response(response, label: str, table: Table, rows: np.ndarray) -> np.ndarray:
    """A Gamma response: finite and positive (R's Gamma()$initialize refuses y ≤ 0)."""
    if is_factor(response, table):
        raise DataError(f"the response '{label}' is categorical; a Gamma model needs positive numbers")
    y = evaluate(response, table)[rows]
    if np.any(~np.isfinite(y)):
        raise DataError(f"the response '{label}' has an infinite value; a Gamma response must be finite")
    if np.any(y <= 0):
        raise DataError(f"the response '{label}' has the value {float(y[y <= 0][0]):g}; a Gamma model needs "
                        "positive values (for counts with zeros use the poisson or nbinom2 family)")
    return y
