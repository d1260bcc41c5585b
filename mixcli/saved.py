"""Saved fits: a fitted model written to a file without its rows, and read back.

``save(m, path, cond_var=False)`` writes what predictions, marginal means, the ranef plot and
likelihood-ratio tests need; ``saved_fit.load(path)`` returns a ``SavedFit``, which those code paths take
in place of the live fit (``inference.predictions``, ``inference.emmeans``, ``plot`` kinds
``ranef`` and ``emmeans``, ``comparison.compare_fits``): nothing is recomputed differently, so
a saved fit gives the live fit's numbers to the last digit.

**The file** is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays) holding only numbers and
fixed-width strings, read with ``allow_pickle=False``: loading a file cannot run code,
whoever wrote it. Its members:

* ``header`` — UTF-8 JSON (uint8 array): ``{"format": "mixcli-fit", "schema": SCHEMA, ...}``
  with the formula, family, REML/ML, contrasts, the fixed-effect names, σ, criterion, npar,
  nobs, the notes and warnings, the data's fingerprint (below), and the encoding of the
  columns (below);
* ``beta``, ``se``, ``vcov``, ``theta`` — β̂, their SEs, Var(β̂), lme4's θ;
* per random-effects term ``i``: ``lam{i}`` (Λ at θ̂), ``ulam{i}`` (Λ of the user's columns),
  ``modes{i}`` (the conditional modes, levels × k, levels in R's order — the order a saved
  fit works in) and, with ``cond_var``, ``condcov{i}`` (k × k × levels, S of lme4's ``condVar``:
  prediction intervals at fitted levels and the ranef plot's intervals need them; they are
  off by default because they are the largest part of a big model's file);
* per grouping factor ``j``, per column ``c``: ``glev{j}_{c}`` (the column's sorted levels:
  integers, other numbers or strings) and ``gidx{j}_{c}`` (each R-ordered level's index into them);
* ``curv_*`` — Satterthwaite's pieces (``engine.curvature.Curvature``), LMMs only.

**The encoding** (header ``columns``): for every column the formula uses, whether it is text
and, for text columns and numbers used as factor levels (inside ``factor()``/``C()``), its
levels on the rows used; and ``covariates``, emmeans's summaries of each numeric fixed-effect
variable (``emmeans.covariate_summary``), and ``cells``, the combinations of the fixed-effect
factors' levels that occur in the rows (``emmeans.occurring_cells``: emmeans finds nested factors
and the cells that hold data from them). On loading, a small *prototype table* is built from
it — every level of every column present, the grouping factors' levels in blocks of rows, the
other numbers 0 — and the fit's frame is rebuilt on it, so that new rows are coded by the
same code (``predictions``) as for a live fit. What stateful terms (``scale()``, ``poly()``,
``ns()``, ``bs()``) remember of the rows — centre and SD, polynomial coefficients, knots — is
kept too (header ``stateful``, ``predictions.fitted_state``), so that new rows are evaluated as
for a live fit.

**The fingerprint** (header ``data``): the table's row count, SHA-256 of the rows used (a
bit mask) and of the response on them, and of X: ``compare`` tells saved fits of different
data apart, and REML fits with different fixed effects.

**Compare** takes fits as saved: maximum-likelihood fits (``fit --ml``; ML is what lme4's
``anova`` refits REML fits to, and without the data there is nothing to refit) or, with
``refit=False``, REML fits of the same fixed effects; a REML fit in a default comparison is
refused with the fix. Without X, whether one model's fixed effects are among the other's (the
boundary p-value's condition, ``inference.lrt_null``) is judged by their column names.
Kenward–Roger needs the rows and is refused (refit from the data).
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np

from .errors import UsageError, option

SCHEMA = 2  # 2: the occurring combinations of the fixed-effect factors (``cells``)
FORMAT = "mixcli-fit"
CURVATURE_FIELDS = ("theta", "a_grad", "a_hess", "r2_grad", "r2_hess", "v", "v_grad")


# ----------------------------------------------------------------------------- writing


def _sha(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def fingerprint(frame) -> dict:
    """What tells two fits' data apart without keeping them: see the module docstring."""
    return {"nrows": int(len(frame.rows)), "nobs": int(frame.rows.sum()),
            "rows": _sha(np.packbits(np.asarray(frame.rows, dtype=bool))),
            "y": _sha(np.asarray(frame.y, dtype=float)), "X": _sha(np.asarray(frame.X, dtype=float))}


def _categorical_vars(formula) -> set[str]:
    """Columns used inside factor()/C() anywhere in the formula: their values are levels."""
    from .formula.exprs import CATEGORICAL, Call
    from .inference.predictions import variables

    out: set[str] = set()

    def walk(e):
        if isinstance(e, Call) and e.func in CATEGORICAL:
            out.update(variables([e]))
        for a in getattr(e, "args", ()):
            walk(a)

    for e in [e for t in formula.terms for e in t] + [e for rt in formula.random for t in rt.terms for e in t]:
        walk(e)
    return out


def formula_columns(formula) -> tuple[list[str], list[str]]:
    """The columns of the fixed and random effects' expressions, and the grouping columns."""
    from .inference.predictions import variables

    exprs = [e for t in formula.terms for e in t] + list(formula.offsets)
    exprs += [e for rt in formula.random for t in rt.terms for e in t]
    groups = list(dict.fromkeys(g for rt in formula.random for g in rt.group))
    return variables(exprs), groups


def save(m, path: str, cond_var: bool = False) -> None:
    """Write the fitted model ``m`` to ``path`` (see the module docstring); ``cond_var`` also
    keeps the conditional covariances of the random effects."""
    from .formula.evaluate import factor_levels
    from .inference.emmeans import covariate_summary, null_basis, occurring_cells
    from .inference.predictions import fitted_state, fixed_variables
    from .output import AtomicOutput
    from .table import TextColumn

    frame = m.frame
    if frame.table is None:
        raise UsageError(f"saving a fit needs its data's coding, which its model frame was made without "
                         f"({option('keep_data', False)}): make the frame with {option('keep_data', True)}")
    table, rows = frame.table, frame.rows
    used, groups = formula_columns(frame.formula)
    as_levels = _categorical_vars(frame.formula)
    columns = {}
    for name in dict.fromkeys(used + groups):
        if name not in table.columns:
            continue  # (the .row column of (1 | .row) is made anew: see predictions)
        col = table.columns[name]
        if isinstance(col, TextColumn):
            columns[name] = {"text": True, "levels": factor_levels(col, rows)[0]}
        elif name in as_levels:
            x = np.asarray(col, dtype=float)[rows]
            columns[name] = {"text": False, "levels": [float(v) for v in np.unique(x[~np.isnan(x)])]}
        else:
            columns[name] = {"text": False}
    wrapped = _categorical_vars(frame.formula)
    covariates = {name: covariate_summary(frame, name) for name in fixed_variables(frame.formula)
                  if name in columns and not columns[name]["text"] and name not in wrapped}
    arrays = {"beta": np.array([f.estimate for f in m.fixef]), "se": np.array([f.se for f in m.fixef]),
              "vcov": np.asarray(m.vcov, dtype=float), "theta": np.asarray(m.theta, dtype=float)}
    if frame.dropped_columns:
        arrays["null_basis"] = null_basis(frame)
    modes = m.conditional_modes()
    lams = m.structure.lambdas(np.asarray(m.theta, dtype=float))
    user_lams = m._user_lambdas()
    covs = m._conditional_covariances() if cond_var else None
    terms = []
    for i, term in enumerate(frame.terms):
        arrays[f"lam{i}"] = np.asarray(lams[i], dtype=float)
        arrays[f"ulam{i}"] = np.asarray(user_lams[i], dtype=float)
        # levels in R's order: a saved fit's engine order is R's (no permutation to store)
        to_r = np.asarray(term.levels_to_r, dtype=np.int64)
        arrays[f"modes{i}"] = np.empty_like(np.asarray(modes[i], dtype=float))
        arrays[f"modes{i}"][to_r] = modes[i]
        if covs is not None:
            arrays[f"condcov{i}"] = np.empty_like(np.asarray(covs[i], dtype=float))
            arrays[f"condcov{i}"][:, :, to_r] = covs[i]
        terms.append({"group": term.group, "names": list(term.names), "factor": term.factor,
                      "source": int(frame.term_sources[i]), "n_levels": int(term.n_levels),
                      "structure": term.structure})
    factors = []
    for j, (name, gf) in enumerate(frame.factors.items()):
        cols = list(frame.formula.random[frame.term_sources[[t.factor for t in frame.terms].index(name)]].group)
        for c, (levels, idx) in enumerate(gf.parts):
            lev = np.asarray(levels)
            if lev.dtype.kind == "f" and np.array_equal(lev, np.round(lev)) and np.abs(lev).max() < 2.0**53:
                lev = lev.astype(np.int64)  # (integer IDs compress far better as integers; exact either way)
            arrays[f"glev{j}_{c}"] = lev if lev.dtype.kind in "fi" else lev.astype(str)
            arrays[f"gidx{j}_{c}"] = np.asarray(idx, dtype=np.int64)
        factors.append({"name": name, "columns": cols, "n_levels": int(gf.n_levels)})
    curv = getattr(m, "curvature", None)
    if curv is not None:
        for key in CURVATURE_FIELDS:
            arrays[f"curv_{key}"] = np.asarray(getattr(curv, key), dtype=float)
    header = {
        "format": FORMAT, "schema": SCHEMA, "formula": frame.formula.text, "reml": bool(getattr(m, "reml", False)),
        "glmm": bool(m.is_glmm), "family": None if frame.family is None else frame.family.name,
        "link": None if frame.family is None else frame.family.link.name, "nagq": getattr(m, "nagq", None),
        "dispersion": getattr(m, "dispersion", None),
        "contrasts": frame.contrasts, "fixef_names": list(frame.fixef_names),
        "dropped_columns": list(frame.dropped_columns), "weights": frame.weights is not None,
        "sigma": float(m.sigma), "criterion": float(m.criterion), "npar": int(m.npar), "nobs": int(m.nobs),
        "n_dropped": int(m.n_dropped), "deviance": float(m.deviance), "messages": list(m.messages),
        "warnings": list(m.warnings), "singular": bool(m.singular), "converged": bool(m.converged),
        "theta_names": list(m.theta_names), "ngroups": dict(m.ngroups),
        "curvature": None if curv is None else {"reml": bool(curv.reml), "m": int(curv.m), "r2": float(curv.r2)},
        "cond_var": bool(cond_var), "data": fingerprint(frame), "columns": columns, "covariates": covariates,
        "cells": occurring_cells(frame), "stateful": fitted_state(frame), "terms": terms, "factors": factors,
    }
    arrays["header"] = np.frombuffer(json.dumps(header, allow_nan=True).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with AtomicOutput(path) as out:
        out.write(buf.getvalue())
        out.commit()
