"""The library API: ``fit`` and ``compare`` on a data frame or a table.

    >>> import pandas as pd, mixcli
    >>> m = mixcli.fit(pd.read_csv("classroom.csv"), "mathscore ~ ses + (1 | schoolid)")
    >>> m.coef, m.sigma, m.singular

Pipeline: table → model frame (formula, missing rows, X, grouping factors) →
θ-free structure → BOBYQA over the blocked-Cholesky criterion → result.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .engine.factor import criterion, evaluate
from .engine.optimize import minimize_theta
from .engine.structure import ModelStructure
from .frame import ModelFrame, model_frame
from .results import LmmResult, build_result
from .table import Table

Progress = Callable[[int, float], None]


def fit(data, formula, reml: bool = True, progress: Progress | None = None) -> LmmResult:
    """Fit ``formula`` (lme4 syntax) to ``data`` (DataFrame, mapping of columns, or Table)."""
    table = Table.from_mapping(data)
    return fit_frame(model_frame(table, formula), reml=reml, progress=progress)


class Model:
    """A model frame with its θ-free structure, ready to be fitted by REML or ML (and refitted)."""

    def __init__(self, frame: ModelFrame):
        from .engine.memory import keep_freed_memory

        keep_freed_memory()
        self.frame = frame
        self.structure = ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))

    def criterion(self, theta: np.ndarray, reml: bool) -> float:
        return criterion(self.structure, theta, reml)

    def fit(self, reml: bool = True, start: np.ndarray | None = None, progress: Progress | None = None) -> LmmResult:
        st = self.structure
        x0 = st.theta_start if start is None else np.maximum(np.asarray(start, float), st.theta_lower)
        opt = minimize_theta(lambda th: self.criterion(th, reml), x0, st.theta_lower, progress)
        fac = evaluate(st, opt.theta)
        return build_result(self.frame, st, fac, opt, reml)


    def result_at(self, theta: np.ndarray, reml: bool = True) -> LmmResult:
        """The fitted-model quantities at a given θ, without optimising (for references and profiles)."""
        from .engine.optimize import OptSummary

        st = self.structure
        theta = np.asarray(theta, dtype=float)
        fac = evaluate(st, theta)
        opt = OptSummary(start=theta, lower=st.theta_lower, theta=theta, fmin=fac.criterion(reml))
        opt.stages.append("evaluated at a given theta, not optimised")
        return build_result(self.frame, st, fac, opt, reml)


def fit_frame(frame: ModelFrame, reml: bool = True, progress: Progress | None = None) -> LmmResult:
    return Model(frame).fit(reml=reml, progress=progress)


def compare(data, formulas, names=None, refit: bool = True, **options):
    from .compare import compare_models

    table = Table.from_mapping(data)
    return compare_models(table, formulas, names=names, refit=refit, **options)
