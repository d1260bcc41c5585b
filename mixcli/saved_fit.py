"""Reading a saved fit (the file's layout: ``mixcli.saved``): ``load(path)`` → ``SavedFit``.

A ``SavedFit`` answers what predictions, emmeans, the ranef plot and ``comparison.compare_fits``
ask of a fitted model, from the file alone: its frame is the fit's ``ModelFrame`` rebuilt on a
prototype table (every level of every column the formula uses, no rows of the data), so that the
same code codes new rows for it as for a live fit.
"""

from __future__ import annotations

import json
import math

import numpy as np

from .errors import DataError, UsageError, option
from .results import FitStatistics, FixedEffect
from .saved import CURVATURE_FIELDS, FORMAT, SCHEMA, formula_columns


def load(path: str) -> "SavedFit":
    """Read a fit written by ``save`` (never running code from the file: no pickle)."""
    import zipfile

    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory; give a saved fit's file") from None
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
    return DataError(f"{path}: not a mixcli saved fit; write one by saving a fit ({option('save')})")


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
            parts = {key: arrays[f"curv_{key}"] for key in CURVATURE_FIELDS}
            parts["r2"], parts["m"], parts["reml"] = c["r2"], c["m"], c["reml"]
            self.curvature = Curvature(**parts)
        if self.is_glmm:
            self.family = h["family"]
            self.link = h["link"]
            self.dispersion = h.get("dispersion")  # (files of earlier versions have none: binomial, Poisson)
            self.family_label = self.frame.family.display_name
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
        raise UsageError("this fit was loaded from a file, which holds all it has: copy the file, or save the fit "
                         "it came from")

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
            parts.append((lev.astype(float) if lev.dtype.kind in "fi" else [str(v) for v in lev],
                          arrays[f"gidx{j}_{c}"]))
        # (levels in R's order: see save)
        factors[f["name"]] = GroupingFactor(f["name"], np.zeros(0, dtype=np.int64), f["n_levels"], parts,
                                            np.arange(f["n_levels"]))
        blocks.append((f["name"], f["columns"], parts))
    # the rows: each grouping factor's levels in a block of their own (R's order); elsewhere a
    # grouping column is missing (or, if the effects use it too, cycles through its levels, as
    # every other factor column does); numeric columns are 0
    sizes = [len(parts[0][1]) for _, _, parts in blocks]
    nrows = max([1, sum(sizes)] + [len(c.get("levels", [])) for c in h["columns"].values()])
    used, _ = formula_columns(formula)
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
        to_engine = np.arange(gf.n_levels)  # (a saved fit's levels are in R's order: see save)
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
                            np.arange(t["n_levels"]), structure=t.get("structure", "")))
        sources.append(t["source"])
    family = None
    if h["family"] is not None:
        from .family import family as make_family

        family = make_family(h["family"], h["link"])
        if family.free_dispersion and h.get("dispersion") is not None:
            family = family.with_dispersion(h["dispersion"])
    p = len(h["fixef_names"])
    return ModelFrame(formula=formula, y=np.zeros(0), X=None, fixef_names=list(h["fixef_names"]), terms=terms,
                      factors=factors, rows=np.ones(nrows, dtype=bool), n_dropped=h["n_dropped"],
                      term_sources=sources, family=family, weights=np.ones(0) if h["weights"] else None,
                      dropped_columns=list(h["dropped_columns"]), messages=list(h["messages"]), table=table,
                      contrasts=h["contrasts"], fixef_assign=[0] * p, covariates=h["covariates"],
                      cells=h["cells"], stateful=h["stateful"], null_basis=arrays["null_basis"] if h["dropped_columns"] else None)


def _as_key(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v) if isinstance(v, (int, float, np.floating, np.integer)) else str(v)
