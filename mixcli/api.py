"""The library API: ``fit`` and ``compare`` on a data frame or a table.

    >>> import pandas as pd, mixcli
    >>> m = mixcli.fit(pd.read_csv("classroom.csv"), "mathscore ~ ses + (1 | schoolid)")
    >>> m.coef, m.sigma, m.singular
    >>> g = mixcli.fit(d, "pass ~ ses + (1 | schoolid)", family="binomial")   # glmer

``data`` may also be a path to a CSV/TSV/Parquet file, read as the command line reads it.

The work is done by ``mixcli.fitting`` (the one entry point: ``mixcli.model``'s stages, frame →
structure → criterion → optimiser → result, or ``mixcli.glmm``'s with PIRLS inside) and
``mixcli.comparison``; this module only names the entry points.
"""

from __future__ import annotations

import os

from .comparison import compare as _compare_data
from .io import read_table

__all__ = ["fit", "compare"]


def fit(data, formula, reml: bool = True, family=None, link: str | None = None, nagq: int = 1,
        weights=None, contrasts: str = "treatment", progress=None, control=None, dispformula: str | None = None):
    """``lmer`` (no family, or ``"gaussian"``) or ``glmer`` (``family="binomial"``, ``"poisson"``,
    ``"nbinom2"`` (glmer.nb), ``"nbinom1"`` (glmmTMB's NB1) or ``"Gamma"``,
    with ``link`` and ``nagq``); prior ``weights`` (a column name or an array) and the
    ``contrasts`` of unordered factors (treatment, sum or helmert) for both; ``control`` (a
    ``mixcli.control.Control``) changes the fit's tolerances, limits and restart rules;
    ``dispformula="~ f"`` a residual SD per level of f (glmmTMB's, nlme's varIdent; LMMs)."""
    from .fitting import fit as fit_model

    return fit_model(_data(data), formula, reml=reml, family=family, link=link, nagq=nagq, weights=weights,
                     contrasts=contrasts, progress=progress, control=control, dispformula=dispformula)


def compare(data, formulas, names=None, refit: bool = True, **options):
    """``anova(m1, m2, ...)`` of lme4: fit the models and test each against the one before."""
    return _compare_data(_data(data), formulas, names=names, refit=refit, **options)


def _data(data):
    """A path is read as ``mixcli fit`` reads its file; anything else goes to the model as it is."""
    if isinstance(data, (str, os.PathLike)):
        return read_table(os.fspath(data))
    return data
