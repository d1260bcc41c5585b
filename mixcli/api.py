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

# Fits of at least this many rows start from the optimum on a tenth of the
# outermost groups (see Model._warm_start).
WARM_START_ROWS = 200_000
WARM_START_DENSE = 500  # ... or a crossed (dense) block at least this wide
WARM_START_FRACTION = 0.1


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
        step, stage, warm = None, "bobyqa from start", None
        if start is None and (st.n >= WARM_START_ROWS or st.q_dense >= WARM_START_DENSE):
            warm = self._warm_start(reml)
        if warm is not None:
            start, evaluations = warm
            # close to the optimum already: a first trust region of 10% (at least 0.02)
            step = np.maximum(0.1 * np.abs(start), 0.02)
            stage = f"bobyqa from a subsample's optimum ({evaluations} evaluations there)"
        x0 = st.theta_start if start is None else np.maximum(np.asarray(start, float), st.theta_lower)
        opt = minimize_theta(lambda th: self.criterion(th, reml), x0, st.theta_lower, progress, step=step, stage=stage)
        fac = evaluate(st, opt.theta)
        return build_result(self.frame, st, fac, opt, reml)

    def _warm_start(self, reml: bool):
        """θ̂ of the same model on a random tenth of the levels of one factor, or None.

        On large models most of BOBYQA's evaluations are spent far from the
        optimum; there they are ten times cheaper, and the full fit then starts
        close to it (900k rows: 124 full evaluations became 40 and 101 tenth-size
        ones). The factor sampled is the one that makes evaluations expensive:
        the largest crossed (dense) term, whose dense block shrinks with the
        cube of its levels, or else the outermost nested term, which keeps the
        nesting intact.
        """
        st = self.structure
        if st.dense:
            outer = max((st.terms[d] for d in st.dense), key=lambda t: t.n_levels)
        else:
            outer = min(st.terms, key=lambda t: t.n_levels)
        if outer.n_levels < 50:
            return None
        rng = np.random.default_rng(20261130)  # fixed: the same data always give the same fit
        chosen = rng.random(outer.n_levels) < WARM_START_FRACTION
        rows = chosen[outer.codes]
        if rows.sum() < 1000:
            return None
        sub = st.subset(rows)
        opt = minimize_theta(lambda th: criterion(sub, th, reml), sub.theta_start, sub.theta_lower)
        if not (opt.converged and np.all(np.isfinite(opt.theta))):
            return None
        return opt.theta, opt.evaluations

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
