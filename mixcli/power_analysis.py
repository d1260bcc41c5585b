"""Power analysis by simulation, as R's simr does it (``powerSim``, ``powerCurve``, ``extend``,
``makeLmer``).

For each design size, N responses are simulated from the model with the chosen parameters
(the bootstrap's ``simulate_response``, lme4's ``simulate``: new random effects and residuals
every time), the model is refitted to each, the term is tested, and the rejections at ``alpha``
are counted. Power is reported with its 95% Clopper–Pearson interval, as simr prints it.

* **Parameters** are the pilot fit's (lme4's fixef, VarCorr and sigma), with any of them
  replaced (``fixef``, ``sd``, ``cor``, ``sigma``: simr's ``fixef(m)["x"] <- v`` and
  ``VarCorr<-``); without pilot data, a ``design`` is built from a short description
  (``design_table``) and every variance parameter must be given (simr's ``makeLmer``).
* **Sizes**: ``along=GROUP`` sets the number of levels of a grouping column (new levels copy
  existing ones in turn, with their rows, under new labels, as do the levels of every grouping
  column nested in GROUP; fewer levels keep the first ones), ``within=GROUP`` the rows per
  level (rows copied in turn, or the first ones kept); simr's ``extend`` and ``powerCurve``.
* **Tests**: for a fixed-effect term of a linear mixed model lmerTest's t test (F for a term
  of several columns: the type III hypothesis of ``mixcli anova``) with Satterthwaite's df
  (``method="satterthwaite"``) or Kenward–Roger's (``"kr"``), or the likelihood ratio of ML
  fits with and without the term (``"lrt"``, χ²); for a GLMM the Wald z (χ² for several
  columns) or the likelihood ratio; for a random-effects term (``"(1 | classid)"``, or
  ``"ses in (ses | schoolid)"`` as ranova names its rows) the REML likelihood ratio against the
  boundary mixture (``inference.lrt_null``).

Every refit reuses the design's θ-free structure (``ModelStructure.with_response``: only y
changes) and starts at the true parameters; a t or F test computes the criterion's derivatives
at the optimum and the Satterthwaite df of the one hypothesis, nothing else of a fit's result
(the numbers are those ``mixcli fit``/``anova`` print for that data set, to the optimiser's
tolerance). Kenward–Roger and the GLMM's Wald test, which need the fit's full result, refit
through ``fitting.fit_frame``. A refit that fails counts as not rejected and is reported.

Replicate i of size k draws from ``SeedSequence(seed, spawn_key=(k, i))`` (``inference.pool``):
the result depends only on the seed, not on the number of worker processes.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import DataError, FormulaError, MixcliError, UsageError, option
from .table import Table, TextColumn

METHODS = ("satterthwaite", "kr", "lrt", "wald")
# The refits' stopping rules: θ̂ within ~1e-7 of a full fit's, so that t, df and p agree with what
# mixcli fit prints to ~1e-6 (the bootstrap's 1e-8 on the criterion left the df 3e-5 off), for
# a third more evaluations
REFIT_TOL = {"ftol": 1e-10, "xtol": 1e-10}
CONFIDENCE = 0.95  # of the interval around each power (simr's binom.test)


# ---------------------------------------------------------------------------- the result


@dataclass
class PowerRow:
    """One design size: ``rejected`` of ``nsim`` simulations rejected the null."""

    size: int
    rejected: int
    nsim: int
    failed: int  # refits that failed (counted as not rejected)
    singular: int  # refits that ended singular (lme4's isSingular)
    rows: int  # observations in the design

    @property
    def power(self) -> float:
        return self.rejected / self.nsim

    @property
    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.rejected, self.nsim, CONFIDENCE)


@dataclass
class PowerResult:
    formula: str
    test: str  # the term tested, as the model names it
    method: str  # satterthwaite, kr, lrt, wald
    statistic: str  # what is tested: "t", "F", "chisq", "z", "chibar" (boundary mixture)
    alpha: float
    seed: int
    size_of: str  # what size counts: "rows", "levels of schoolid", "rows per level of classid"
    rows: list[PowerRow]
    parameters: dict  # the true parameters simulated from (fixef, sd/cor per group, sigma)
    family: str = "gaussian"
    seconds: float = 0.0
    workers: int = 1
    notes: list[str] = field(default_factory=list)

    def records(self) -> list[dict]:
        out = []
        for r in self.rows:
            lo, hi = r.interval
            out.append({"size": r.size, "power": r.power, "lower": lo, "upper": hi, "nsim": r.nsim,
                        "rejected": r.rejected, "failed": r.failed, "singular": r.singular, "rows": r.rows})
        return out

    def to_frame(self):
        """One row per size: size, power, lower, upper, nsim, rejected, failed, singular, rows
        (pandas DataFrame; the test, method, alpha and seed in ``attrs``)."""
        import pandas as pd

        df = pd.DataFrame.from_records(self.records())
        df.attrs.update(test=self.test, method=self.method, alpha=self.alpha, seed=self.seed, size_of=self.size_of,
                        formula=self.formula, notes=list(self.notes))
        return df


def clopper_pearson(x: int, n: int, level: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper–Pearson) interval for a binomial proportion x/n (R's binom.test): the
    quantiles of Beta(x, n − x + 1) and Beta(x + 1, n − x), by bisection on the incomplete beta
    (scipy.special would add a tenth of a second to every command's start)."""
    a = (1.0 - level) / 2.0
    lower = 0.0 if x == 0 else _beta_quantile(x, n - x + 1, a)
    upper = 1.0 if x == n else _beta_quantile(x + 1, n - x, 1.0 - a)
    return lower, upper


def _beta_quantile(a: float, b: float, q: float) -> float:
    from .inference.distributions import betainc

    lo, hi = 0.0, 1.0
    for _ in range(64):  # (to the last bit of the interval's ends)
        mid = 0.5 * (lo + hi)
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------- parameters


@dataclass
class Parameters:
    """The model's parameters in lme4's terms: β (by fixed-effect name), each random-effects
    term's covariance matrix Σₜ (its effects' SDs and correlations), σ (1 for a GLMM)."""

    beta: dict[str, float]
    covs: dict[str, np.ndarray]  # term name (lme4's group name) -> Σₜ
    effects: dict[str, list[str]]  # term name -> its effects
    sigma: float
    factors: dict[str, str] = field(default_factory=dict)  # term name -> its grouping factor

    def describe(self) -> dict:
        out = {"fixef": dict(self.beta), "sd": {}, "cor": {}}
        for g, cov in self.covs.items():
            sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
            for a, e in enumerate(self.effects[g]):
                out["sd"][g if e == "(Intercept)" else f"{g}|{e}"] = float(sd[a])
                for b in range(a):
                    den = sd[a] * sd[b]
                    out["cor"][f"{g}|{self.effects[g][b]},{e}"] = float(cov[a, b] / den) if den > 0 else 0.0
        if self.sigma is not None:
            out["sigma"] = float(self.sigma)
        return out


def pilot_parameters(m) -> Parameters:
    """The parameters of a fitted model (``LmmResult`` or ``GlmmResult``)."""
    st = m.structure
    sigma = 1.0 if m.is_glmm else float(m.sigma)
    lams = st.lambdas(np.asarray(m.theta, float))
    return Parameters(
        beta={f.term: float(f.estimate) for f in m.fixef},
        covs={t.group: sigma**2 * (lam @ lam.T) for t, lam in zip(st.terms, lams)},
        effects={t.group: list(t.names) for t in st.terms},
        sigma=None if m.is_glmm else sigma,
        factors={t.group: t.factor for t in st.terms},
    )


def _groups_text(params: Parameters) -> str:
    return ", ".join(params.covs)


def _resolve_effect(params: Parameters, key: str, what: str, value) -> tuple[str, list[str]]:
    """(group, effects) named by ``GROUP`` or ``GROUP|E1[,E2]`` in a ``sd``/``cor`` key."""
    group, bar, rest = key.partition("|")
    group = group.strip()
    if group not in params.covs:
        raise UsageError(f"{option(what, f'{key}={value}')}: no random-effects group '{group}' in the model; "
                         f"its groups are {_groups_text(params)} (as lme4 names them)")
    effects = params.effects[group]
    if not bar:
        names = ["(Intercept)"] if "(Intercept)" in effects else effects[:1] if len(effects) == 1 else []
        if not names:
            raise UsageError(f"{option(what, f'{key}={value}')}: {group} has no intercept; name the effect, "
                             f"e.g. {group}|{effects[0]}")
        return group, names
    names = [e.strip() for e in rest.split(",")]
    for e in names:
        if e not in effects:
            raise UsageError(f"{option(what, f'{key}={value}')}: {group} has no effect '{e}'; its effects are "
                             f"{', '.join(effects)}")
    return group, names


def _number(what: str, key: str, value) -> float:
    """``value`` as a finite number, or the one-line error naming the option (``key=value``)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x):
        raise UsageError(f"{option(what, f'{key}={value}' if key else value)}: the value must be a finite number")
    return x


def change_parameters(params: Parameters, fixef=None, sd=None, cor=None, sigma=None) -> Parameters:
    """``params`` with the given fixed effects (name -> value), SDs (``GROUP`` or ``GROUP|EFFECT``
    -> value), correlations (``GROUP|E1,E2`` -> value) and σ replaced."""
    beta = dict(params.beta)
    for name, value in (fixef or {}).items():
        if name not in beta:
            raise UsageError(f"{option('fixef', f'{name}={value}')}: no fixed effect '{name}' in the model; its "
                             f"fixed effects are {', '.join(beta) or 'none'}")
        beta[name] = _number("fixef", name, value)
    covs = {g: c.copy() for g, c in params.covs.items()}
    sds = {g: np.sqrt(np.maximum(np.diag(c), 0.0)) for g, c in covs.items()}
    cors = {}
    for g, c in covs.items():
        den = np.outer(sds[g], sds[g])
        cors[g] = np.where(den > 0, c / np.where(den > 0, den, 1.0), 0.0)
        np.fill_diagonal(cors[g], 1.0)
    for key, value in (sd or {}).items():
        group, names = _resolve_effect(params, key, "sd", value)
        x = _number("sd", key, value)
        if len(names) != 1 or x < 0:
            raise UsageError(f"{option('sd', f'{key}={value}')}: give one effect and an SD of 0 or more")
        sds[group][params.effects[group].index(names[0])] = x
    for key, value in (cor or {}).items():
        group, names = _resolve_effect(params, key, "cor", value)
        x = _number("cor", key, value)
        if len(names) != 2 or names[0] == names[1] or not -1.0 <= x <= 1.0:
            raise UsageError(f"{option('cor', f'{key}={value}')}: give two effects of one group, "
                             f"GROUP|E1,E2=VALUE, with VALUE between -1 and 1")
        a, b = (params.effects[group].index(e) for e in names)
        cors[group][a, b] = cors[group][b, a] = x
    for g in covs:
        covs[g] = cors[g] * np.outer(sds[g], sds[g])
        if np.linalg.eigvalsh(cors[g]).min() < -1e-10:
            raise UsageError(f"{option('cor')}: the correlations of {g} are not a valid correlation matrix "
                             "(not positive semi-definite); change them")
    if sigma is not None:
        if params.sigma is None:
            raise UsageError(f"{option('sigma', sigma)}: a GLMM has no residual SD; leave it out")
        if not _number("sigma", "", sigma) > 0:
            raise UsageError(f"{option('sigma', sigma)}: the residual SD must be positive")
    return Parameters(beta, covs, dict(params.effects), params.sigma if sigma is None else float(sigma),
                      dict(params.factors))


def _lower(cov: np.ndarray) -> np.ndarray:
    """A lower-triangular Λ with ΛΛᵀ = cov (also for a singular cov)."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        from .engine.structure import lower_factor

        w, v = np.linalg.eigh(cov)
        return lower_factor(v * np.sqrt(np.maximum(w, 0.0)))


def true_theta(st, params: Parameters) -> np.ndarray:
    """lme4's θ of a structure's terms for ``params`` (a term with some of a parameter group's
    effects, as in a reduced model, takes that part of Σₜ)."""
    sigma = 1.0 if params.sigma is None else params.sigma
    from .engine.structure import lower_indices

    out = []
    for t in st.terms:
        cov = _term_cov(params, t)
        lam = _lower(cov) / sigma
        out.append(lam[lower_indices(t.k)])
    return np.concatenate(out)


def _term_cov(params: Parameters, term) -> np.ndarray:
    """Σ of a structure's term from the parameters: the group of the same name, or of the same
    grouping factor holding all the term's effects."""
    for g, effects in params.effects.items():
        if g == term.group and effects == list(term.names):
            return params.covs[g]
    for g, effects in params.effects.items():
        if params.factors.get(g) == term.factor and set(term.names) <= set(effects):
            idx = [effects.index(e) for e in term.names]
            return params.covs[g][np.ix_(idx, idx)]
    raise DataError(f"no parameters for the random effects ({' + '.join(term.names)} | {term.factor})")


# ---------------------------------------------------------------------------- designs


_ITEM = re.compile(r"^\s*([A-Za-z_.][A-Za-z0-9_.]*)\s*=\s*([^/\s]+)\s*(?:/\s*([A-Za-z_.][A-Za-z0-9_.]*))?\s*$")


def design_table(spec: str, response: str, family_name: str = "gaussian", seed: int = 0) -> Table:
    """The data of a design written as comma-separated items (simr's ``makeLmer`` needs them as a
    data frame):

    * ``NAME=K``: a grouping column with K levels, crossed with the others (``subject=30, item=20``);
    * ``NAME=K/OUTER``: K levels within each level of OUTER, labelled uniquely (``class=4/school``);
    * ``n=K``: K rows for every combination of the levels (default 1);
    * ``NAME=half/GROUP``: a 0/1 column, 1 for every other level of GROUP (treatment on half the
      schools; ``NAME=half`` alternates rows);
    * ``NAME=normal`` or ``NAME=normal/GROUP``: a standard normal column, one value per row or per
      level of GROUP.

    The response column is a placeholder (every power simulation replaces it)."""
    items = [s for s in spec.split(",")] if spec.strip() else []
    if not items:
        raise UsageError(f"{option('design', repr(spec))}: empty design; write e.g. "
                         "'school=40, class=4/school, n=25, treat=half/school'")
    cols: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    covariates = []
    n_per = 1
    for item in items:
        m = _ITEM.match(item)
        if not m:
            raise UsageError(f"{option('design', repr(spec))}: cannot read '{item.strip()}'; each item is NAME=K, "
                             "NAME=K/OUTER, n=K, NAME=half[/GROUP] or NAME=normal[/GROUP]")
        name, value, outer = m.groups()
        if name in sizes or name in cols or any(c[0] == name for c in covariates):
            raise UsageError(f"{option('design', repr(spec))}: '{name}' is defined twice")
        if value in ("half", "normal"):
            covariates.append((name, value, outer))
            continue
        if not value.isdigit() or int(value) < 1:
            raise UsageError(f"{option('design', repr(spec))}: '{item.strip()}': the number of levels or rows must "
                             "be a whole number of at least 1 (or half, normal for a covariate)")
        k = int(value)
        if name == "n":
            if outer:
                raise UsageError(f"{option('design', repr(spec))}: n=K is the rows per combination of levels, "
                                 "without /GROUP")
            n_per = k
            continue
        cells = len(next(iter(cols.values()))) if cols else 1
        if outer is None:
            for c in cols:
                cols[c] = np.repeat(cols[c], k)
            cols[name] = np.tile(np.arange(k), cells)
            sizes[name] = k
        else:
            if outer not in cols:
                raise UsageError(f"{option('design', repr(spec))}: '{item.strip()}' is nested in '{outer}', which is "
                                 "not defined before it")
            for c in cols:
                cols[c] = np.repeat(cols[c], k)
            cols[name] = cols[outer] * k + np.tile(np.arange(k), cells)
            sizes[name] = sizes[outer] * k
    if not cols:
        raise UsageError(f"{option('design', repr(spec))}: no grouping column; add one such as school=40")
    for c in cols:
        cols[c] = np.repeat(cols[c], n_per)
    rows = len(next(iter(cols.values())))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**20,)))
    out = {c: v.astype(float) + 1.0 for c, v in cols.items()}
    for name, kind, group in covariates:
        if group is not None and group not in cols:
            raise UsageError(f"{option('design', repr(spec))}: '{name}={kind}/{group}': no grouping column "
                             f"'{group}' in the design")
        codes = cols[group] if group is not None else np.arange(rows)
        levels = sizes[group] if group is not None else rows
        out[name] = (codes % 2).astype(float) if kind == "half" else rng.standard_normal(levels)[codes]
    if response in out:
        raise UsageError(f"{option('design', repr(spec))}: the response '{response}' is also a design column")
    if family_name == "binomial":
        out[response] = rng.integers(0, 2, rows).astype(float)
    elif family_name in ("poisson", "nbinom2", "nbinom1"):
        out[response] = rng.poisson(2.0, rows).astype(float)
    elif family_name == "Gamma":
        out[response] = rng.gamma(2.0, 1.0, rows)
    else:
        out[response] = rng.standard_normal(rows)
    return Table(columns=out, source="<design>")


def _grouping_columns(frame) -> list[str]:
    out = []
    for rt in frame.formula.random:
        for c in rt.group:
            if c not in out:
                out.append(c)
    return out


def _codes(column) -> tuple[np.ndarray, np.ndarray]:
    """(codes numbered by first appearance, labels as text) of a grouping column."""
    if isinstance(column, TextColumn):
        raw, labels = column.codes, np.asarray(column.labels, dtype=object)
    else:
        values, raw = np.unique(column, return_inverse=True)
        labels = np.array([format(float(v), "g") for v in values], dtype=object)
    first = np.full(len(labels), len(raw), dtype=np.int64)
    np.minimum.at(first, raw, np.arange(len(raw)))
    used = np.flatnonzero(first < len(raw))
    used = used[np.argsort(first[used], kind="stable")]
    rank = np.full(len(labels), -1, dtype=np.int64)
    rank[used] = np.arange(len(used))
    return rank[raw], labels[used]


def _take(table: Table, idx: np.ndarray) -> dict:
    cols = {}
    for name, col in table.columns.items():
        if isinstance(col, TextColumn):
            cols[name] = TextColumn(codes=col.codes[idx], labels=col.labels)
        else:
            cols[name] = col[idx]
    return cols


def resize_along(table: Table, group: str, size: int, grouping: list[str]) -> Table:
    """``table`` with ``size`` levels of ``group``: the first ones, or all of them copied in turn
    (each copy under new labels, as the levels of the grouping columns nested in ``group``)."""
    codes, labels = _codes(table[group])
    n_levels = len(labels)
    if size <= n_levels:
        return Table(columns=_take(table, np.flatnonzero(codes < size)), source=table.source)
    copies = -(-size // n_levels)
    parts, copy = [], []
    for c in range(copies):
        rows = np.flatnonzero(codes < min(n_levels, size - c * n_levels))
        parts.append(rows)
        copy.append(np.full(len(rows), c))
    idx, copy = np.concatenate(parts), np.concatenate(copy)
    cols = _take(table, idx)
    from .engine.structure import nested_map

    for name in grouping:
        inner, inner_labels = _codes(table[name])
        if name != group and nested_map(inner, len(inner_labels), codes) is None:
            continue  # crossed with group, or group nested in it: the copies share its levels
        new_labels = np.concatenate([inner_labels] + [np.array([f"{lab}#{c + 1}" for lab in inner_labels], dtype=object)
                                                      for c in range(1, copies)])
        cols[name] = TextColumn(codes=inner[idx] + copy * len(inner_labels), labels=new_labels)
    return Table(columns=cols, source=table.source)


def resize_within(table: Table, group: str, size: int) -> Table:
    """``table`` with ``size`` rows in every level of ``group``: the first ones, or its rows copied in turn."""
    codes, labels = _codes(table[group])
    n_levels = len(labels)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=n_levels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    level = np.repeat(np.arange(n_levels), size)
    j = np.tile(np.arange(size), n_levels)
    idx = order[starts[level] + j % counts[level]]
    return Table(columns=_take(table, idx), source=table.source)


# ---------------------------------------------------------------------------- tests


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text)


@dataclass
class _Target:
    """What is tested: a fixed-effect term (``label``) or a random-effects reduction (``reduced``)."""

    label: str
    random: bool
    reduced: str | None = None  # the formula without it (random terms)


def find_target(frame, test: str) -> _Target:
    from .formula import term_label
    from .ranova import reductions

    fixed = [term_label(t) for t in frame.formula.terms]
    for label in fixed:
        if _norm(label) == _norm(test):
            return _Target(label, False)
    steps = reductions(frame.formula)
    for name, text in steps:
        if _norm(name) == _norm(test):
            return _Target(name, True, text)
    choices = fixed + [name for name, _ in steps]
    raise UsageError(f"{option('test', repr(test))}: not a term of the model; test one of "
                     f"{', '.join(repr(c) for c in choices)}")


@dataclass
class _LmmTTest:
    """lmerTest's t or F test of L β = 0 with Satterthwaite's df, on a refit from the true θ̃.

    Only what the decision needs is computed: a t test whose |t| is below the normal's critical
    value cannot be significant whatever its df (a t's tails are heavier than the normal's: p ≥
    2Φ(−|t|) ≥ alpha), so its df — the criterion's second derivatives, most of the work — are
    computed only when |t| is above it (``exact`` always computes them, for the tests that compare
    p with a full fit's)."""

    spec: object  # bootstrap.LmmRefit (working θ̃)
    L: np.ndarray
    alpha: float = 0.05

    def __call__(self, y: np.ndarray, exact: bool = False) -> tuple[float, bool]:
        from .engine.curvature import curvature
        from .engine.factor import evaluate_working
        from .inference.anova import contest
        from .inference.distributions import norm_cdf
        from .inference.satterthwaite import from_curvature
        from .singular import is_singular

        theta_w, f, st = self.spec.fit(y)
        if not math.isfinite(f):
            return math.nan, False
        singular = is_singular(st.to_user(theta_w), st.theta_is_diag)
        fac = evaluate_working(st, theta_w, full=False)
        sigma = math.sqrt(fac.pwrss / (st.n - st.p))
        vcov = sigma**2 * fac.rx_inverse()
        beta = fac.fixef()
        if not exact and self.L.shape[0] == 1:
            var = float(self.L[0] @ vcov @ self.L[0])
            if var > 0:
                bound = 2.0 * norm_cdf(-abs(float(self.L[0] @ beta)) / math.sqrt(var))
                if bound >= self.alpha:
                    return bound, singular  # (a lower bound of p: not rejected whatever the df)
        sat = from_curvature(curvature(st, theta_w, True), sigma, vcov, st.p)
        row = contest(self.L, beta, sat, sigma)
        return (math.nan if row is None or row.p is None else row.p), singular


@dataclass
class _FullFitTest:
    """Tests that need a fit's whole result (Kenward–Roger; a GLMM's Wald test): the frame with
    the simulated response through ``fitting.fit_frame``."""

    frame: object
    L: np.ndarray
    kr: bool
    nagq: int = 1

    def __call__(self, y: np.ndarray) -> tuple[float, bool]:
        from .fitting import fit_frame
        from .inference.distributions import chi2_sf

        m = fit_frame(replace(self.frame, y=y), reml=True, nagq=self.nagq)
        beta = np.array([f.estimate for f in m.fixef])
        if self.kr:
            from .inference.kenward_roger import kenward_roger

            return float(kenward_roger(m).f_test(self.L).p), bool(m.singular)
        est = self.L @ beta
        cov = self.L @ np.asarray(m.vcov, float) @ self.L.T
        w = float(est @ np.linalg.solve(cov, est))
        return chi2_sf(w, self.L.shape[0]), bool(m.singular)


@dataclass
class _LrtTest:
    """The likelihood ratio of refits with and without the term (LMM: ``bootstrap.LmmRefit``, GLMM:
    ``bootstrap.GlmmRefit``; ``small`` None: the linear model of ``lm_frame``); p from χ²(df), or
    from the boundary mixture ``null`` (``inference.lrt_null``)."""

    big: object
    small: object
    df: int
    null: object = None
    lm_frame: object = None
    reml: bool = False

    def __call__(self, y: np.ndarray) -> tuple[float, bool]:
        from .inference.distributions import chi2_sf
        from .singular import is_singular

        if hasattr(self.big, "structure"):
            theta_w, f_big, st = self.big.fit(y)
            singular = is_singular(st.to_user(theta_w), st.theta_is_diag)
        else:
            par, f_big = self.big.fit(y)
            st = self.big.data.st
            singular = is_singular(st.to_user(par[: st.n_theta]), st.theta_is_diag)
        if self.small is None:
            from .ranova import linear_model_loglik

            f_small = -2.0 * linear_model_loglik(replace(self.lm_frame, y=y), self.reml)
        else:
            f_small = self.small.refit(y)
        if not (math.isfinite(f_big) and math.isfinite(f_small)):
            return math.nan, singular
        stat = max(0.0, f_small - f_big)
        if self.null is not None and self.null.mixture:
            p = self.null.p_mixture(stat, self.df)
            if p is not None:
                return p, singular
        return chi2_sf(stat, self.df), singular


@dataclass
class PowerJob:
    """What a worker needs for one size's replicates: the simulation, the test, alpha, the seed."""

    sim: object  # bootstrap.SimulationJob: what simulate_response needs
    test: object  # a callable y -> (p, singular)
    alpha: float
    seed: int
    key: int  # the size's index


def _replicate(job: PowerJob, i: int) -> np.ndarray:
    """[rejected, p, failed, singular] of replicate i."""
    from .inference.bootstrap import simulate_response
    from .inference.pool import replicate_rng

    rng = replicate_rng(job.seed, job.key, i)
    y = simulate_response(job.sim, rng)
    try:
        with np.errstate(all="ignore"):
            p, singular = job.test(y)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError, ZeroDivisionError, MixcliError):
        return np.array([0.0, math.nan, 1.0, 0.0])
    if not math.isfinite(p):
        return np.array([0.0, math.nan, 1.0, float(singular)])
    return np.array([float(p < job.alpha), p, 0.0, float(singular)])


# ---------------------------------------------------------------------------- setting up one size


def _kept_columns(frame, label: str) -> np.ndarray:
    """Which columns of X remain without fixed-effect term ``label``."""
    from .formula import term_label

    labels = [term_label(t) for t in frame.formula.terms]
    return np.asarray(frame.fixef_assign, dtype=int) != labels.index(label) + 1


def _setup(frame, params: Parameters, target: _Target, method: str, nagq: int, alpha: float, seed: int, key: int,
           table: Table, contrasts: str):
    """The simulation and the test of one design (a model frame)."""
    from .inference.bootstrap import LmmRefit, SimulationJob
    from .model import build_structure

    glmm = frame.family is not None
    names = frame.fixef_names
    missing = [n for n in names if n not in params.beta]
    if missing:
        raise DataError(f"no value for the fixed effect(s) {', '.join(missing)} in this design; give "
                        f"{option('fixef')} for them")
    beta = np.array([params.beta[n] for n in names])
    if glmm:
        from .glmm import GlmmModel

        gm = GlmmModel(frame)
        st, data = gm.structure, gm.data
        mean = data.offset + (frame.X @ beta if len(beta) else 0.0)
        sigma = 1.0
    else:
        st = build_structure(frame)
        mean = frame.X @ beta if len(beta) else np.zeros(frame.n)
        if frame.offset is not None:
            mean = mean + frame.offset
        sigma = params.sigma
    theta = true_theta(st, params)
    sim = SimulationJob(small=LmmRefit(st, theta, True) if not glmm else None, big=None, mean=mean, sigma=sigma,
                 lambdas=[np.array(lam) for lam in st.engine_lambdas(theta)], seed=seed,
                 family=frame.family, trials=frame.weights if glmm else None)
    if glmm:
        sim.small = _glmm_spec(gm, theta, beta, nagq)
    if target.random:
        test = _random_test(frame, st, params, target, table, contrasts, glmm, nagq, gm if glmm else None)
    elif method == "lrt":
        keep = _kept_columns(frame, target.label)
        small_frame, dropped = replace(frame, X=frame.X[:, keep]), int((~keep).sum())
        if glmm:
            from .glmm import GlmmModel

            small_gm = GlmmModel(small_frame)
            beta_small = beta[keep]
            test = _LrtTest(_glmm_spec(gm, theta, beta, nagq), _glmm_spec(small_gm, theta, beta_small, nagq), dropped)
        else:
            theta_w = st.to_working(theta)
            small_st = build_structure(small_frame)
            test = _LrtTest(LmmRefit(st, theta_w, False, working=True, **REFIT_TOL),
                            LmmRefit(small_st, small_st.to_working(true_theta(small_st, params)), False, working=True,
                                  **REFIT_TOL),
                            dropped)
    else:
        from .inference.anova import term_hypothesis

        L = term_hypothesis(frame, target.label)
        if L.shape[0] == 0:
            raise DataError(f"{option('test', repr(target.label))}: the term's columns are aliased with others' in "
                            "this design, so there is nothing to test")
        if glmm or method == "kr":
            test = _FullFitTest(replace(frame, table=None) if glmm else frame, L, method == "kr", nagq)
        else:
            test = _LmmTTest(LmmRefit(st, st.to_working(theta), True, working=True, **REFIT_TOL), L, alpha)
    return PowerJob(sim=sim, test=test, alpha=alpha, seed=seed, key=key)


def _glmm_spec(gm, theta: np.ndarray, beta: np.ndarray, nagq: int):
    """A GLMM refit specification started at the true (θ, β), β measured in the SEs of β̂ given θ."""
    from .engine.linalg import whitening
    from .inference.bootstrap import GlmmRefit

    theta_w = gm.structure.to_working(theta)
    if len(beta):
        modes = gm.criterion.modes(theta_w, None)
        basis = whitening(modes.factor.rx_inverse())
    else:
        basis = np.zeros((0, 0))
    return GlmmRefit(gm.data, theta_w, beta, basis, nagq)


def _random_test(frame, st, params, target, table, contrasts, glmm, nagq, gm):
    """The likelihood ratio of the model against the one without a random-effects term (REML for
    an LMM, as ranova; ML for a GLMM), with the boundary mixture as its null."""
    from .formula import parse_formula
    from .frame import model_frame
    from .inference.bootstrap import LmmRefit
    from .inference.lrt_null import lrt_null
    from .model import build_structure

    reduced = parse_formula(target.reduced)
    if glmm:
        from .glmm import GlmmModel

        if not reduced.random:
            raise UsageError(f"{option('test', repr(target.label))}: the model without it has no random effects "
                             "left (a GLM); mixcli tests a GLMM's random term against a smaller GLMM only")
        small_frame = model_frame(table, reduced, family=frame.family, contrasts=contrasts)
        small_gm = GlmmModel(small_frame)
        beta = np.array([params.beta[n] for n in frame.fixef_names])
        big = _glmm_spec(gm, true_theta(st, params), beta, nagq)
        small = _glmm_spec(small_gm, true_theta(small_gm.structure, params), beta, nagq)
        return _LrtTest(big, small, st.n_theta - small_gm.structure.n_theta, lrt_null(small_frame, frame))
    big = LmmRefit(st, st.to_working(true_theta(st, params)), True, working=True, **REFIT_TOL)
    if not reduced.random:
        return _LrtTest(big, None, st.n_theta, None, lm_frame=replace(frame, table=None), reml=True)
    small_frame = model_frame(table, reduced, contrasts=contrasts)
    small_st = build_structure(small_frame)
    small = LmmRefit(small_st, small_st.to_working(true_theta(small_st, params)), True, working=True, **REFIT_TOL)
    return _LrtTest(big, small, st.n_theta - small_st.n_theta, lrt_null(small_frame, frame), reml=True)


# ---------------------------------------------------------------------------- the entry point


def _check_options(nsim, alpha, method, sizes, along, within):
    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise UsageError(f"{option('nsim', nsim)}: the number of simulations must be a whole number of at least 1")
    if not (isinstance(alpha, (int, float)) and 0.0 < float(alpha) < 1.0):
        raise UsageError(f"{option('alpha', alpha)}: the significance level must be between 0 and 1, e.g. 0.05")
    if method is not None and method not in METHODS:
        raise UsageError(f"{option('method', method)}: use one of {', '.join(METHODS)}")
    if along is not None and within is not None:
        raise UsageError(f"{option('along')} and {option('within')}: vary one design size at a time")
    if (along is not None or within is not None) and not sizes:
        raise UsageError(f"{option('along' if along is not None else 'within')} needs {option('sizes')}, "
                         "e.g. 10,20,40")
    if sizes and along is None and within is None:
        raise UsageError(f"{option('sizes')} needs {option('along')} GROUP (levels of GROUP) or {option('within')} "
                         "GROUP (rows per level)")
    for s in sizes or ():
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
            raise UsageError(f"{option('sizes', s)}: each size must be a whole number of at least 1")


def power(data, formula: str, test: str, *, fixef=None, sd=None, cor=None, sigma=None, along: str | None = None,
          within: str | None = None, sizes=None, design: str | None = None, method: str | None = None,
          family=None, link: str | None = None, nagq: int = 1, nsim: int = 1000, seed: int | None = None,
          alpha: float = 0.05, contrasts: str = "treatment", workers: int | None = None, progress=None,
          announce=None) -> PowerResult:
    """Power to detect ``test`` in ``formula`` by simulation (see the module docstring).

    ``data`` is the pilot data (a ``Table``, DataFrame or mapping), or None with ``design``;
    ``fixef``, ``sd``, ``cor`` map names to new values, ``sigma`` replaces σ; ``along`` or
    ``within`` with ``sizes`` gives a power curve; ``progress(done, total)`` hears replicates
    complete; ``announce(text)`` hears what is being done (the pilot fit)."""
    from .family import family as make_family
    from .formula import parse_formula
    from .frame import model_frame

    _check_options(nsim, alpha, method, sizes, along, within)
    if seed is None:
        import secrets

        seed = secrets.randbelow(2**31)
    t0 = time.perf_counter()
    name = getattr(family, "name", family)
    fam = None if name is None or name == "gaussian" else (make_family(family, link) if isinstance(family, str)
                                                           else family)
    if fam is not None and fam.name not in ("binomial", "poisson"):
        # (a simulation from these needs the dispersion as a parameter of the design, which
        # power's options do not have yet)
        raise UsageError(f"{option('family', fam.name)}: power analysis simulates gaussian, binomial and poisson "
                         "models; for overdispersed counts use poisson with an observation-level random effect, "
                         "+ (1 | .row)")
    parsed = parse_formula(formula)
    structured = next((rt for rt in parsed.random if rt.structure), None)
    if structured is not None:  # (its simulation and refits speak lme4's θ, not a structure's parameters)
        raise FormulaError(f"{structured.written}: the power simulation does not take structured covariances yet",
                           parsed.text, structured.span[0])
    if design is not None:
        if data is not None:
            raise UsageError(f"{option('design')} builds the data: give no pilot data with it")
        table = design_table(design, parsed.response.label, fam.name if fam else "gaussian", seed)
    else:
        table = Table.from_mapping(data)
    frame = model_frame(table, parsed, family=fam, contrasts=contrasts)
    target = find_target(frame, test)
    glmm = fam is not None
    if method is None:
        method = "lrt" if target.random else ("wald" if glmm else "satterthwaite")
    if target.random and method != "lrt":
        raise UsageError(f"{option('method', method)}: a random-effects term is tested by the likelihood "
                         f"ratio; use {option('method', 'lrt')} or leave it out")
    if glmm and method in ("satterthwaite", "kr"):
        raise UsageError(f"{option('method', method)}: a GLMM's fixed effects get Wald z tests or "
                         f"likelihood ratios; use {option('method', 'wald')} or {option('method', 'lrt')}")
    if not glmm and method == "wald":
        raise UsageError(f"{option('method', 'wald')} is for GLMMs; a linear mixed model's t test is "
                         f"{option('method', 'satterthwaite')} or {option('method', 'kr')}")
    grouping = _grouping_columns(frame)
    for what, group in (("along", along), ("within", within)):
        if group is not None and group not in grouping:
            raise UsageError(f"{option(what, group)}: not a grouping column of the model; use one of "
                             f"{', '.join(grouping)}")
    if design is not None:
        params = _design_parameters(frame, fixef, sd, cor, sigma)
    else:
        if announce is not None:
            announce("fitting the pilot model")
        from .fitting import fit_frame

        pilot = fit_frame(frame, reml=True, nagq=nagq)
        params = change_parameters(pilot_parameters(pilot), fixef, sd, cor, sigma)
    used = Table(columns=_take(table, np.flatnonzero(frame.rows)), source=table.source)
    designs = []  # (size, table, frame)
    for k, size in enumerate(sizes or [None]):
        if size is None:
            designs.append((frame.n, used, frame))
            continue
        t = resize_along(used, along, size, grouping) if along is not None else resize_within(used, within, size)
        try:
            f = model_frame(t, parsed, family=fam, contrasts=contrasts)
        except MixcliError as err:
            what = (f"{size} level{'s' * (size != 1)} of {along}" if along is not None else
                    f"{size} row{'s' * (size != 1)} per level of {within}")
            raise DataError(f"{option('sizes', size)}: the model cannot be fitted with {what}: {err}") from None
        designs.append((size, t, f))
    total = nsim * len(designs)
    rows = []
    workers_used = 1
    from .inference.pool import run_pool

    for k, (size, t, f) in enumerate(designs):
        job = _setup(f, params, target, method, nagq, float(alpha), int(seed), k, t, contrasts)
        offset = k * nsim
        report = None if progress is None else (lambda done, n, offset=offset: progress(offset + done, total))
        out, workers_used = run_pool(_replicate, job, nsim, 4, workers, report)
        rows.append(PowerRow(int(size), int(out[:, 0].sum()), nsim, int(out[:, 2].sum()), int(out[:, 3].sum()), f.n))
    statistic = ("chibar" if target.random else "chisq" if method == "lrt" else
                 "z" if method == "wald" else "t")
    if statistic in ("t", "z") and not target.random:
        from .inference.anova import term_hypothesis

        if term_hypothesis(frame, target.label).shape[0] > 1:
            statistic = "F" if statistic == "t" else "chisq"
    size_of = ("rows" if not sizes else f"levels of {along}" if along is not None else f"rows per level of {within}")
    notes = []
    failed = sum(r.failed for r in rows)
    if failed:
        notes.append(f"{failed} of {total} refits failed; each counts as not rejected")
    return PowerResult(formula=parsed.text, test=target.label, method=method, statistic=statistic, alpha=float(alpha),
                       seed=int(seed), size_of=size_of, rows=rows, parameters=params.describe(),
                       family=fam.name if fam else "gaussian", seconds=time.perf_counter() - t0,
                       workers=workers_used, notes=notes)


def _design_parameters(frame, fixef, sd, cor, sigma) -> Parameters:
    """The parameters of a design without pilot data: fixed effects not given are 0; every SD of
    a random effect (and σ for a linear mixed model) must be given; correlations default to 0."""
    glmm = frame.family is not None
    base = Parameters(beta={n: 0.0 for n in frame.fixef_names},
                      covs={t.group: np.zeros((t.k, t.k)) for t in frame.terms},
                      effects={t.group: list(t.names) for t in frame.terms}, sigma=None if glmm else 1.0,
                      factors={t.group: t.factor for t in frame.terms})
    given = set()
    for key, value in (sd or {}).items():
        group, names = _resolve_effect(base, key, "sd", value)
        given.update((group, e) for e in names)
    missing = [g if e == "(Intercept)" else f"{g}|{e}" for g, effects in base.effects.items() for e in effects
               if (g, e) not in given]
    if missing:
        raise UsageError(f"{option('design')}: give the SD of every random effect ({option('sd')} "
                         f"{', '.join(f'{m}=VALUE' for m in missing)})")
    if not glmm and sigma is None:
        raise UsageError(f"{option('design')}: give the residual SD ({option('sigma')} VALUE)")
    return change_parameters(base, fixef, sd, cor, sigma)
