"""The library API: ``fit`` and ``compare`` on a data frame or a table.

    >>> import pandas as pd, mixcli
    >>> m = mixcli.fit(pd.read_csv("classroom.csv"), "mathscore ~ ses + (1 | schoolid)")
    >>> m.coef, m.sigma, m.singular
    >>> g = mixcli.fit(d, "pass ~ ses + (1 | schoolid)", family="binomial")   # glmer

The work is done by ``mixcli.model`` (frame → structure → criterion →
optimiser → result), ``mixcli.glmm`` (the same stages with PIRLS inside) and
``mixcli.compare``; this module only names the entry points.
"""

from __future__ import annotations

from .compare import compare
from .glmm import fit_glmm
from .model import fit as fit_lmm

__all__ = ["fit", "compare"]


def fit(data, formula, reml: bool = True, family=None, link: str | None = None, nagq: int = 1,
        weights=None, progress=None):
    """``lmer`` (no family, or ``"gaussian"``) or ``glmer`` (``family="binomial"`` or ``"poisson"``,
    with ``link``, ``nagq`` and prior ``weights``: a column name or an array)."""
    name = getattr(family, "name", family)
    if name is None or name == "gaussian":
        if weights is not None:
            from .errors import UsageError
            raise UsageError("weights are not yet supported for linear mixed models; drop them, or fit a GLMM")
        return fit_lmm(data, formula, reml=reml, progress=progress)
    return fit_glmm(data, formula, family, link=link, nagq=nagq, weights=weights, progress=progress)
