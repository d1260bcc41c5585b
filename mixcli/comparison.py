"""Likelihood-ratio comparison of mixed models, as lme4's ``anova(m1, m2, ...)``.

REML likelihoods are only comparable between models with the same fixed
effects, so by default every model is fitted by maximum likelihood (lme4
refits REML fits; fitting by ML directly reaches the same optimum). Models
are sorted by their number of parameters; each row is tested against the row
above: Chisq = 2·max(0, ΔlogLik), Df = Δnpar, p from the χ² upper tail.

When the larger model adds random effects, the null hypothesis puts variances on
the boundary of the parameter space and the χ² p-value is conservative;
``p_mixture`` gives the chi-bar-square mixture where it is the null distribution
(one random effect added per covariance block), and nothing where it is not; a
pair of models that are not nested gets a note instead (``inference.lrt_null``).
``add_bootstrap`` adds a parametric-bootstrap p-value, which needs no such
approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .control import DEFAULT, Control
from .errors import DataError, UsageError, option
from .fitting import fit_frame
from .frame import model_frame
from .inference.distributions import chi2_sf
from .inference.lrt_null import LrtNull, lrt_null
from .results import LmmResult
from .table import Table

# Criteria are minimised to ~1e-9; a likelihood-ratio statistic below this is
# optimiser noise between two fits of equivalent models (M16 vs M17 on the
# classroom data), and is reported as 0 as lme4 effectively does.
CHISQ_NOISE = 1e-6


@dataclass
class AnovaRow:
    name: str
    model: LmmResult
    chisq: float | None = None
    df: int | None = None
    p: float | None = None
    p_mixture: float | None = None
    p_boot: float | None = None  # parametric bootstrap p-value (add_bootstrap)
    null: LrtNull | None = None  # the test's null distribution against the row above
    against: str | None = None  # the row above's name

    @property
    def formula(self) -> str:
        return self.model.formula

    @property
    def npar(self) -> int:
        return self.model.npar


@dataclass
class Comparison:
    rows: list[AnovaRow]
    refit: bool
    bootstrap: dict | None = None  # n, seed, seconds, workers, failed once add_bootstrap has run
    family: str | None = None  # GLMMs: their family (maximum likelihood fits, nothing refitted)

    @property
    def boundary_tests(self) -> bool:
        return any(r.p_mixture is not None for r in self.rows)


def compare(data, formulas, names=None, refit: bool = True, **options) -> Comparison:
    """``compare_models`` on a DataFrame, a mapping of columns or a Table (the library entry point)."""
    return compare_models(Table.from_mapping(data), formulas, names=names, refit=refit, **options)


def compare_models(table, formulas, names=None, refit: bool = True, progress=None, announce=None,
                   family=None, nagq: int = 1, weights=None, contrasts: str = "treatment",
                   control: Control = DEFAULT) -> Comparison:
    """Fit and test the models; ``announce(message)``, if given, hears what is about to be
    done once every formula has been checked against the data (lme4's "refitting models
    with ML" note, which should not precede an error). With a ``family`` the models are
    GLMMs (maximum likelihood already: nothing is refitted), fitted with ``nagq``; all with
    the settings of ``control``. ``family`` may be one family per formula where they are poisson
    and a negative binomial of one link (Poisson is its boundary: ``inference.lrt_null``)."""
    formulas = list(formulas)
    names = _names(names, len(formulas), "formulas")
    families = list(family) if isinstance(family, (list, tuple)) else [family] * len(formulas)
    if len(families) != len(formulas):
        raise UsageError(f"{len(families)} families for {len(formulas)} formulas")
    if len({f is None for f in families}) > 1 or (
            families[0] is not None and len({f.name for f in families}) > 1
            and not _poisson_and_negative_binomial(list(dict.fromkeys(f.name for f in families)),
                                                   [f.link.name for f in families])):
        raise UsageError("models of different families cannot be compared, but for poisson against nbinom1 or "
                         "nbinom2 of the same link")
    family = families[0]
    frames = [model_frame(table, f, family=fam, weights=weights, contrasts=contrasts)
              for f, fam in zip(formulas, families)]
    _check_same_rows(frames, names)
    if family is not None:
        refit = False
        for frame in frames:
            from .glmm import check_nagq  # (imported for GLMMs only: PIRLS and quadrature)

            check_nagq(frame, nagq)
    elif not refit:
        _check_same_fixed(frames, names)
    if refit and announce is not None:
        announce("refitting models with ML (instead of REML)")
    models = []
    for i, (name, frame) in enumerate(zip(names, frames), start=1):
        if progress is not None:
            progress.start(f"fitting {name} ({i}/{len(frames)})")
        models.append(fit_frame(frame, reml=not refit, nagq=nagq, progress=progress, control=control))
        if progress is not None:
            progress.done()
    return _tests(models, names, refit, None if family is None else ", ".join(dict.fromkeys(f.name for f in families)))


def compare_fitted(models, names=None, refit: bool = True) -> Comparison:
    """``compare_models`` of linear mixed models already fitted (ML, or REML for ``refit=False``)
    elsewhere — the Dask engine fits them where the rows are, and their frames hold no rows. The
    same table; the models must have used the same rows: the same number, and where any dropped
    rows for missing values, variables of which one model's are among the other's (without the
    rows, that is the proof: the larger set drops every row the smaller does)."""
    models = list(models)
    names = _names(names, len(models), "models")
    base = models[0]
    used = [set(m.frame.formula.variables()) for m in models]
    for name, m, variables in zip(names[1:], models[1:], used[1:]):
        if m.nobs != base.nobs:
            raise DataError("models were not all fitted to the same size of dataset: "
                            f"{names[0]} uses {base.nobs} rows, {name} uses {m.nobs}; drop the rows with missing "
                            "values from the data first")
        # (one model's variables among the other's and the same count: the larger set drops every
        # row the smaller one does, so the same count means the same rows)
        if (m.n_dropped or base.n_dropped) and not (variables <= used[0] or used[0] <= variables):
            raise DataError(f"{names[0]} and {name} use different variables (neither's are among the other's) and "
                            "rows were dropped for missing values, so they may not use the same rows (which the "
                            "Dask engine cannot check); drop the rows with missing values from the data first")
        if not refit and m.frame.fixef_names != base.frame.fixef_names:
            raise UsageError(
                f"{option('refit', False)}: {names[0]} and {name} have different fixed effects, and REML "
                f"likelihoods of such models are not comparable; compare them by ML ({option('refit', True)})")
        if m.reml == refit:
            raise UsageError(f"{name} is {'a REML' if m.reml else 'an ML'} fit; compare_fitted takes "
                             f"{'ML' if refit else 'REML'} fits with {option('refit', refit)}")
    return _tests(models, names, refit, None)


def _names(names, n: int, what: str) -> list[str]:
    """The rows' labels (m1, m2, ... by default) for ``n`` formulas, models or saved fits."""
    if n < 2:
        raise UsageError(f"compare needs at least two {what}")
    names = list(names) if names else [f"m{i}" for i in range(1, n + 1)]
    if len(names) != n:
        raise UsageError(f"{len(names)} names for {n} {what}")
    if len(set(names)) != len(names):
        raise UsageError("model names must be distinct")
    return names


def _tests(models, names, refit: bool, family: str | None) -> Comparison:
    """The table: models sorted by npar, each tested against the row above."""
    order = sorted(range(len(models)), key=lambda i: models[i].npar)  # stable, like R's order()
    rows = [AnovaRow(names[i], models[i]) for i in order]
    for prev, row in zip(rows, rows[1:]):
        df = row.npar - prev.npar
        chisq = 2.0 * max(0.0, row.model.loglik - prev.model.loglik)
        if chisq < CHISQ_NOISE:
            chisq = 0.0
        row.chisq, row.df = chisq, df
        row.p = chi2_sf(chisq, df) if df > 0 else float("nan")
        row.null, row.against = lrt_null(prev.model.frame, row.model.frame), prev.name
        if df > 0:
            row.p_mixture = row.null.p_mixture(chisq, df)
    return Comparison(rows=rows, refit=refit, family=family)


def compare_fits(fits, names=None, refit: bool = True) -> Comparison:
    """``compare_models`` of saved fits (``mixcli.saved.load``): the same table, from the fits
    as they were saved. Nothing can be refitted without the data, so a default comparison
    (``refit``) takes maximum-likelihood fits and ``refit=False`` REML fits of the same fixed
    effects; GLMMs (maximum likelihood already) of one family. All must be fits of the same
    data (their fingerprints: ``saved.fingerprint``)."""
    fits = list(fits)
    names = _names(names, len(fits), "saved fits")
    base = fits[0]
    for name, m in zip(names[1:], fits[1:]):
        a, b = base.fingerprint, m.fingerprint
        if a["nrows"] != b["nrows"] or a["y"] != b["y"] and a["rows"] == b["rows"]:
            raise DataError(f"{m.path} ({name}) is a fit of other data than {base.path} ({names[0]}): "
                            "compare fits of one data set (fit them again from the same file)")
        if a["rows"] != b["rows"]:
            raise DataError(
                "models were not all fitted to the same size of dataset: "
                f"{names[0]} uses {a['nobs']} rows, {name} uses {b['nobs']}; drop the rows with missing "
                "values from the data first and fit both again")
    families = list(dict.fromkeys(m.header["family"] for m in fits))
    if len(families) > 1 and not _poisson_and_negative_binomial(families, [m.header["link"] for m in fits]):
        raise UsageError("saved fits of different families (or LMMs and GLMMs) cannot be compared, but for a "
                         "poisson fit against nbinom1 or nbinom2 fits of the same link")
    family = ", ".join(families) if families[0] is not None else None
    if family is not None:
        return _tests(fits, names, False, family)
    if refit:
        reml = [n for n, m in zip(names, fits) if m.reml]
        if reml:
            m = fits[names.index(reml[0])]
            raise UsageError(f"{m.path} ({reml[0]}) is a REML fit; a comparison refits by ML, which a saved fit "
                             f"cannot: save ML fits ({option('reml', False)}), or compare REML fits of the same "
                             f"fixed effects with {option('refit', False)}")
    else:
        for name, m in zip(names, fits):
            if not m.reml:
                raise UsageError(f"{m.path} ({name}) is an ML fit; {option('refit', False)} compares REML fits: "
                                 f"leave out {option('refit', False)}")
            if m.header["fixef_names"] != base.header["fixef_names"] or m.fingerprint["X"] != base.fingerprint["X"]:
                raise UsageError(
                    f"{option('refit', False)}: {names[0]} and {name} have different fixed effects, and REML "
                    f"likelihoods of such models are not comparable; compare ML fits ({option('refit', True)})")
    return _tests(fits, names, refit, None)


def _poisson_and_negative_binomial(families: list, links: list) -> bool:
    """Whether the families are poisson and one negative binomial with one link: Poisson is the
    negative binomial at its dispersion's boundary, so its fits are nested in that family's
    (``inference.lrt_null``)."""
    return (len(families) == 2 and "poisson" in families and len(set(links)) == 1
            and bool({"nbinom1", "nbinom2"} & set(families)))


def add_bootstrap(comp: Comparison, n: int, seed: int | None = None, workers: int | None = None,
                  progress=None) -> Comparison:
    """Parametric-bootstrap p-values of every likelihood-ratio test in ``comp`` (``AnovaRow.p_boot``).

    Each row is tested against the row above: ``n`` responses are simulated from the smaller
    model's fit and both models are refitted with the comparison's criterion (ML, or REML for
    ``--no-refit``); see ``mixcli.inference.bootstrap``. Without a ``seed`` one is drawn, and
    recorded in ``comp.bootstrap`` so that the run can be repeated. ``progress(done, total,
    label)`` is called as replicates complete.
    """
    if n < 1:
        raise UsageError(f"{option('n', n)}: the bootstrap needs at least 1 replicate")
    if seed is None:
        import secrets

        seed = secrets.randbelow(2**31)
    info = {"n": int(n), "seed": int(seed), "seconds": 0.0, "workers": 1, "failed": 0}
    for prev, row in zip(comp.rows, comp.rows[1:]):
        if row.df is None or row.df <= 0:
            continue
        label = f"bootstrap {prev.name} vs {row.name}"
        cb = None if progress is None else (lambda done, total, label=label: progress(done, total, label))
        from .inference.bootstrap import bootstrap_lrt

        res = bootstrap_lrt(prev.model, row.model, n, seed, reml=not comp.refit, statistic=row.chisq,
                            workers=workers, progress=cb)
        row.p_boot = res.p_value
        info["seconds"] += res.seconds
        info["workers"] = res.workers
        info["failed"] += res.failed
    comp.bootstrap = info
    return comp


def _check_same_rows(frames, names):
    base = frames[0].rows
    for name, frame in zip(names[1:], frames[1:]):
        if frame.rows.shape != base.shape or not np.array_equal(frame.rows, base):
            differ = int(np.sum(frame.rows != base))
            raise DataError(
                "models were not all fitted to the same size of dataset: "
                f"{names[0]} uses {int(base.sum())} rows, {name} uses {int(frame.rows.sum())} "
                f"({differ} rows differ because of missing values); drop those rows from the data first"
            )


def _check_same_fixed(frames, names):
    base = frames[0]
    for name, frame in zip(names[1:], frames[1:]):
        if frame.fixef_names != base.fixef_names or not np.allclose(frame.X, base.X):
            raise UsageError(
                f"{option('refit', False)}: {names[0]} and {name} have different fixed effects, and REML "
                f"likelihoods of such models are not comparable; compare them by ML ({option('refit', True)})"
            )
