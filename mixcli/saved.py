"""Saved fits: a fitted model written to a file without its rows, and read back.

``save(m, path, cond_var=False)`` writes what predictions, marginal means, the ranef plot and
likelihood-ratio tests need; ``load(path)`` returns a ``SavedFit``, which those code paths take
in place of the live fit (``inference.predictions``, ``inference.emmeans``, ``plot`` kind
``ranef``, ``comparison.compare_fits``): nothing is recomputed differently, so a saved fit
gives the live fit's numbers to the last digit.

**The file** is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays) holding only numbers and
fixed-width strings, read with ``allow_pickle=False``: loading a file cannot run code,
whoever wrote it. Its members:

* ``header`` — UTF-8 JSON (uint8 array): ``{"format": "mixcli-fit", "schema": SCHEMA, ...}``
  with the formula, family, REML/ML, contrasts, the fixed-effect names, σ, criterion, npar,
  nobs, the notes and warnings, the data's fingerprint (below), and the encoding of the
  columns (below);
* ``beta``, ``se``, ``vcov``, ``theta`` — β̂, their SEs, Var(β̂), lme4's θ;
* per random-effects term ``i``: ``lam{i}`` (Λ of the user's columns), ``modes{i}`` (the
  conditional modes, levels in the engine's order × k), ``to_r{i}`` (R's index of each of
  them) and, with ``cond_var``, ``condcov{i}`` (k × k × levels, S of lme4's ``condVar``:
  prediction intervals at fitted levels and the ranef plot's intervals need them; they are
  off by default because they are the largest part of a big model's file);
* per grouping factor ``j``, per column ``c``: ``glev{j}_{c}`` (the column's sorted levels,
  numbers or strings) and ``gidx{j}_{c}`` (each R-ordered level's index into them);
* ``curv_*`` — Satterthwaite's pieces (``engine.curvature.Curvature``), LMMs only.

**The encoding** (header ``columns``): for every column the formula uses, whether it is text
and, for text columns and numbers used as factor levels (inside ``factor()``/``C()``), its
levels on the rows used; and ``covariates``, emmeans's summaries of each numeric fixed-effect
variable (``emmeans.covariate_summary``). On loading, a small *prototype table* is built from
it — every level of every column present, the grouping factors' levels in blocks of rows, the
other numbers 0 — and the fit's frame is rebuilt on it, so that new rows are coded by the
same code (``predictions``) as for a live fit. Stateful terms (``scale()``, ``poly()``,
splines) depend on the rows themselves: a saved fit of such a formula serves ``compare``, and
predictions and emmeans refuse it as they refuse it for a live fit.

**The fingerprint** (header ``data``): the table's row count, SHA-256 of the rows used (a
bit mask) and of the response on them, and of X: ``compare`` tells saved fits of different
data apart, and REML fits with different fixed effects.

**Compare** takes fits as saved: maximum-likelihood fits (``fit --ml``; ML is what lme4's
``anova`` refits REML fits to, and without the data there is nothing to refit) or, with
``refit=False``, REML fits of the same fixed effects; a REML fit in a default comparison is
refused with the fix. Kenward–Roger needs the rows and is refused (refit from the data).
"""

from __future__ import annotations

import hashlib
import io
import json
import math

import numpy as np

from .errors import DataError, UsageError, option
from .results import FitStatistics, FixedEffect

SCHEMA = 1
FORMAT = "mixcli-fit"
_CURVATURE = ("theta", "a_grad", "a_hess", "r2_grad", "r2_hess", "v", "v_grad")


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


def _formula_columns(formula) -> tuple[list[str], list[str]]:
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
    from .inference.emmeans import covariate_summary
    from .inference.predictions import fixed_variables
    from .output import AtomicOutput
    from .table import TextColumn

    frame = m.frame
    if isinstance(m, SavedFit):
        raise UsageError("this fit was loaded from a file; save the fit it came from (or copy the file)")
    if frame.table is None:
        raise UsageError(f"saving a fit needs its data's coding, which its model frame was made without "
                         f"({option('keep_data', False)}): make the frame with {option('keep_data', True)}")
    table, rows = frame.table, frame.rows
    used, groups = _formula_columns(frame.formula)
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
    modes = m.conditional_modes()
    lams = m.structure.lambdas(np.asarray(m.theta, dtype=float))
    user_lams = m._user_lambdas()
    covs = m._conditional_covariances() if cond_var else None
    terms = []
    for i, term in enumerate(frame.terms):
        arrays[f"lam{i}"] = np.asarray(lams[i], dtype=float)
        arrays[f"ulam{i}"] = np.asarray(user_lams[i], dtype=float)
        arrays[f"modes{i}"] = np.asarray(modes[i], dtype=float)
        arrays[f"to_r{i}"] = np.asarray(term.levels_to_r, dtype=np.int64)
        if covs is not None:
            arrays[f"condcov{i}"] = np.asarray(covs[i], dtype=float)
        terms.append({"group": term.group, "names": list(term.names), "factor": term.factor,
                      "source": int(frame.term_sources[i]), "n_levels": int(term.n_levels)})
    factors = []
    for j, (name, gf) in enumerate(frame.factors.items()):
        cols = list(frame.formula.random[frame.term_sources[[t.factor for t in frame.terms].index(name)]].group)
        for c, (levels, idx) in enumerate(gf.parts):
            lev = np.asarray(levels)
            arrays[f"glev{j}_{c}"] = lev.astype(float) if lev.dtype.kind == "f" else lev.astype(str)
            arrays[f"gidx{j}_{c}"] = np.asarray(idx, dtype=np.int64)
        arrays[f"gto_r{j}"] = np.asarray(gf.to_r, dtype=np.int64)
        factors.append({"name": name, "columns": cols, "n_levels": int(gf.n_levels)})
    curv = getattr(m, "curvature", None)
    if curv is not None:
        for key in _CURVATURE:
            arrays[f"curv_{key}"] = np.asarray(getattr(curv, key), dtype=float)
    header = {
        "format": FORMAT, "schema": SCHEMA, "formula": frame.formula.text, "reml": bool(getattr(m, "reml", False)),
        "glmm": bool(m.is_glmm), "family": None if frame.family is None else frame.family.name,
        "link": None if frame.family is None else frame.family.link.name, "nagq": getattr(m, "nagq", None),
        "contrasts": frame.contrasts, "fixef_names": list(frame.fixef_names),
        "dropped_columns": list(frame.dropped_columns), "weights": frame.weights is not None,
        "sigma": float(m.sigma), "criterion": float(m.criterion), "npar": int(m.npar), "nobs": int(m.nobs),
        "n_dropped": int(m.n_dropped), "deviance": float(m.deviance), "messages": list(m.messages),
        "warnings": list(m.warnings), "singular": bool(m.singular), "converged": bool(m.converged),
        "theta_names": list(m.theta_names), "ngroups": dict(m.ngroups),
        "curvature": None if curv is None else {"reml": bool(curv.reml), "m": int(curv.m), "r2": float(curv.r2)},
        "cond_var": bool(cond_var), "data": fingerprint(frame), "columns": columns, "covariates": covariates,
        "terms": terms, "factors": factors,
    }
    arrays["header"] = np.frombuffer(json.dumps(header, allow_nan=True).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with AtomicOutput(path) as out:
        out.write(buf.getvalue())
        out.commit()


# ----------------------------------------------------------------------------- reading


def load(path: str) -> "SavedFit":
    """Read a fit written by ``save`` (never running code from the file: no pickle)."""
    import zipfile

    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory; give a file written by fit --save") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read it: {err.strerror or err}") from None
    if magic != b"PK\x03\x04":  # (np.load would take anything else for a pickle)
        raise _not_a_fit(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise DataError(f"{path}: holds Python objects, which a mixcli saved fit never does; "
                            "refusing to load it (save the fit again with mixcli)") from None
        raise _not_a_fit(path) from None
    except (OSError, zipfile.BadZipFile, EOFError):
        raise _not_a_fit(path) from None
    try:
        header = json.loads(bytes(arrays["header"]).decode("utf-8"))
        fmt, schema = header.get("format"), header.get("schema")
    except (KeyError, ValueError, AttributeError, UnicodeDecodeError):
        raise _not_a_fit(path) from None
    if fmt != FORMAT:
        raise _not_a_fit(path)
    if schema != SCHEMA:
        raise DataError(f"{path}: a saved fit of schema version {schema}; this mixcli reads version {SCHEMA}: "
                        "fit the model again from its data and save it with this mixcli")
    return SavedFit(header, arrays, path)


def _not_a_fit(path: str) -> DataError:
    return DataError(f"{path}: not a mixcli saved fit; write one with mixcli fit DATA FORMULA --save FILE "
                     "(m.save(path) in Python)")


class _Structure:
    """What the inference asks of a fit's structure: p, Λ per term at θ̂."""

    def __init__(self, p: int, lams):
        self.p = p
        self._lams = lams
        self.n_theta = sum(lam.shape[0] * (lam.shape[0] + 1) // 2 for lam in lams)

    def lambdas(self, theta):
        return [lam.copy() for lam in self._lams]


class _Factorization:
    """The factor's answers a saved fit keeps: Λ of the user's columns and, if saved, S."""

    full = True

    def __init__(self, user_lam, covs, path):
        self.user_lam = user_lam
        self._covs = covs
        self._path = path

    def conditional_covariances(self):
        if self._covs is None:
            raise UsageError(f"{self._path} was saved without the random effects' conditional variances, which "
                             f"this needs: save the fit again with {option('cond_var', True)}")
        return self._covs


class SavedFit(FitStatistics):
    """A fit read back from a file: what ``LmmResult``/``GlmmResult`` give predictions,
    emmeans, the ranef plot and compare, with a frame rebuilt on a prototype table (see the
    module docstring). ``path`` is the file it came from; ``fingerprint`` its data's."""

    ci_method = None
    intervals: list = []
    ddf = None

    def __init__(self, header: dict, arrays: dict, path: str):
        from .table import Table  # noqa: F401  (the prototype table's class)

        self.path = path
        self.header = header
        h = header
        self.formula = h["formula"]
        self.reml = h["reml"]
        self.is_glmm = h["glmm"]
        self.nagq = h["nagq"]
        self.nobs, self.npar, self.n_dropped = h["nobs"], h["npar"], h["n_dropped"]
        self.criterion, self.sigma = h["criterion"], h["sigma"]
        self._deviance = h["deviance"]
        self.messages, self.warnings = list(h["messages"]), list(h["warnings"])
        self.singular, self.converged = h["singular"], h["converged"]
        self.theta_names, self.ngroups = list(h["theta_names"]), dict(h["ngroups"])
        self.fingerprint = h["data"]
        beta, se = arrays["beta"], arrays["se"]
        self.fixef = [FixedEffect(n, float(b), float(s), float(b / s) if s > 0 else math.nan)
                      for n, b, s in zip(h["fixef_names"], beta, se)]
        self.vcov = arrays["vcov"]
        self.theta = arrays["theta"]
        nterms = len(h["terms"])
        self._modes = [arrays[f"modes{i}"] for i in range(nterms)]
        covs = [arrays[f"condcov{i}"] for i in range(nterms)] if h["cond_var"] else None
        self.structure = _Structure(len(beta), [arrays[f"lam{i}"] for i in range(nterms)])
        self.factorization = _Factorization([arrays[f"ulam{i}"] for i in range(nterms)], covs, path)
        self.frame = _frame(h, arrays)
        self.curvature = None
        if h["curvature"] is not None:
            from .engine.curvature import Curvature

            c = h["curvature"]
            parts = {key: arrays[f"curv_{key}"] for key in _CURVATURE}
            parts["r2"], parts["m"], parts["reml"] = c["r2"], c["m"], c["reml"]
            self.curvature = Curvature(**parts)
        if self.is_glmm:
            self.family = h["family"]
            self.link = h["link"]
            self.data = _GlmmData(self.frame.family)

    @property
    def method(self) -> str:
        if self.is_glmm:
            return {0: "ML (nAGQ = 0)", 1: "Laplace"}.get(self.nagq, f"AGQ (nAGQ = {self.nagq})")
        return "REML" if self.reml else "ML"

    @property
    def deviance(self) -> float:
        return self._deviance

    @property
    def coef(self) -> dict[str, float]:
        return {f.term: f.estimate for f in self.fixef}

    def notes(self) -> list[str]:
        return self.data_notes() + list(self.warnings)

    def conditional_modes(self):
        return [b.copy() for b in self._modes]

    def full_factorization(self):
        return self.factorization

    def _user_lambdas(self):
        return self.factorization.user_lam

    def _conditional_covariances(self):
        return self.factorization.conditional_covariances()

    def save(self, path: str, cond_var: bool = False) -> None:
        save(self, path, cond_var)

    def augment(self):
        raise UsageError("augment needs the fit's rows, which a saved fit does not keep: fit the model from its data")


class _GlmmData:
    """predict's ``m.data.family`` for a saved GLMM."""

    def __init__(self, family):
        self.family = family


def _frame(h: dict, arrays: dict):
    """The fit's model frame on a prototype table (see the module docstring): the same
    ``ModelFrame`` a fit has, its rows standing for the fitted ones' coding only."""
    from .engine.structure import ReTerm
    from .formula.formula import parse_formula
    from .frame import GroupingFactor, ModelFrame
    from .table import Table, TextColumn

    formula = parse_formula(h["formula"])
    factors, blocks = {}, []
    for j, f in enumerate(h["factors"]):
        parts = []
        for c in range(len(f["columns"])):
            lev = arrays[f"glev{j}_{c}"]
            parts.append((lev if lev.dtype.kind == "f" else [str(v) for v in lev], arrays[f"gidx{j}_{c}"]))
        factors[f["name"]] = GroupingFactor(f["name"], np.zeros(0, dtype=np.int64), f["n_levels"], parts,
                                            arrays[f"gto_r{j}"])
        blocks.append((f["name"], f["columns"], parts))
    # the rows: each grouping factor's levels in a block of their own (R's order); elsewhere a
    # grouping column is missing (or, if the effects use it too, cycles through its levels, as
    # every other factor column does); numeric columns are 0
    sizes = [len(parts[0][1]) for _, _, parts in blocks]
    nrows = max([1, sum(sizes)] + [len(c.get("levels", [])) for c in h["columns"].values()])
    used, _ = _formula_columns(formula)
    values: dict[str, np.ndarray] = {}
    for name, spec in h["columns"].items():
        if "levels" in spec and (name in used or not any(name in cols for _, cols, _ in blocks)):
            lev = np.asarray(spec["levels"], dtype=object if spec["text"] else float)
            values[name] = lev[np.arange(nrows) % len(lev)]
        else:
            values[name] = np.full(nrows, None, dtype=object) if spec["text"] else np.zeros(nrows)
            if name not in used:
                values[name][:] = None if spec["text"] else np.nan
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    for (_, cols, parts), start, k in zip(blocks, starts, sizes):
        for col, (lev, idx) in zip(cols, parts):
            values[col][start:start + k] = np.asarray(lev, dtype=object if values[col].dtype == object else float)[idx]
    cols = {name: TextColumn.from_values(values[name]) if spec["text"] else values[name]
            for name, spec in h["columns"].items()}
    table = Table(cols)
    # each term's code of each prototype row: its fitted level (in its factor's own block by
    # construction, elsewhere looked up), −1 where the row's combination is no fitted level
    names = [f["name"] for f in h["factors"]]
    terms, sources = [], []
    for i, t in enumerate(h["terms"]):
        j = names.index(t["factor"])
        _, gcols, parts = blocks[j]
        gf = factors[t["factor"]]
        to_engine = np.empty(gf.n_levels, dtype=np.int64)
        to_engine[gf.to_r] = np.arange(gf.n_levels)
        codes = np.full(nrows, -1, dtype=np.int64)
        codes[starts[j]:starts[j] + sizes[j]] = to_engine
        other = np.ones(nrows, dtype=bool)
        other[starts[j]:starts[j] + sizes[j]] = False
        for c in gcols:
            other &= np.array([_as_key(v) is not None for v in values[c]]) if values[c].dtype == object \
                else ~np.isnan(values[c])
        if other.any():
            key_of = {tuple(_as_key(lev[idx[r]]) for lev, idx in parts): to_engine[r] for r in range(gf.n_levels)}
            for r in np.flatnonzero(other):
                codes[r] = key_of.get(tuple(_as_key(values[c][r]) for c in gcols), -1)
        k = len(t["names"])
        terms.append(ReTerm(codes, t["n_levels"], np.zeros((0, k)), t["group"], list(t["names"]), t["factor"],
                            arrays[f"to_r{i}"]))
        sources.append(t["source"])
    family = None
    if h["family"] is not None:
        from .family import family as make_family

        family = make_family(h["family"], h["link"])
    p = len(h["fixef_names"])
    return ModelFrame(formula=formula, y=np.zeros(0), X=None, fixef_names=list(h["fixef_names"]), terms=terms,
                      factors=factors, rows=np.ones(nrows, dtype=bool), n_dropped=h["n_dropped"],
                      term_sources=sources, family=family, weights=np.ones(0) if h["weights"] else None,
                      dropped_columns=list(h["dropped_columns"]), messages=list(h["messages"]), table=table,
                      contrasts=h["contrasts"], fixef_assign=[0] * p, covariates=h["covariates"])


def _as_key(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v) if isinstance(v, (int, float, np.floating, np.integer)) else str(v)
