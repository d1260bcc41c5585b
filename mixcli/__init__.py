"""mixcli: linear mixed-effects models with lme4's formulas, from the shell or Python.

    >>> import mixcli
    >>> m = mixcli.fit(data, "mathscore ~ ses + (ses | schoolid) + (1 | classid)")
    >>> m.fixef, m.varcorr, m.singular

Heavy modules are imported on first use so that ``mixcli --help`` stays instant.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["fit", "compare", "power", "load", "__version__"]


def fit(data, formula, reml=True, **options):
    """Fit ``formula`` to ``data`` (a pandas DataFrame or a mapping of columns)."""
    from .api import fit as _fit

    return _fit(data, formula, reml=reml, **options)


def compare(data, formulas, **options):
    """Likelihood-ratio comparison of nested models, like lme4's ``anova()``."""
    from .api import compare as _compare

    return _compare(data, formulas, **options)


def load(path):
    """A fit saved with ``m.save(path)`` (or ``mixcli fit --save``): a ``mixcli.saved.SavedFit``
    for predict, emmeans, the ranef plot and ``mixcli.comparison.compare_fits``."""
    from .saved_fit import load as _load

    return _load(path)


def power(data, formula, test, **options):
    """Power to detect ``test`` by simulation, like R's simr: a DataFrame with one row per design
    size (size, power, lower, upper, nsim, rejected, failed, singular, rows). ``data`` may be a
    path; see ``mixcli.power_analysis.power`` for the options (fixef, sd, cor, sigma, along,
    within, sizes, design, method, family, nsim, seed, alpha, workers)."""
    import os

    from .power_analysis import power as _power

    if isinstance(data, (str, os.PathLike)):
        from .io import read_table

        data = read_table(os.fspath(data))
    return _power(data, formula, test, **options).to_frame()
