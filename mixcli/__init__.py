"""mixcli: linear mixed-effects models with lme4's formulas, from the shell or Python.

    >>> import mixcli
    >>> m = mixcli.fit(data, "mathscore ~ ses + (ses | schoolid) + (1 | classid)")
    >>> m.fixef, m.varcorr, m.singular

Heavy modules are imported on first use so that ``mixcli --help`` stays instant.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["fit", "compare", "__version__"]


def fit(data, formula, reml=True, **options):
    """Fit ``formula`` to ``data`` (a pandas DataFrame or a mapping of columns)."""
    from .api import fit as _fit

    return _fit(data, formula, reml=reml, **options)


def compare(data, formulas, **options):
    """Likelihood-ratio comparison of nested models, like lme4's ``anova()``."""
    from .api import compare as _compare

    return _compare(data, formulas, **options)
