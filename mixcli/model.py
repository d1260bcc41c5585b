"""The model stage: from a model frame to a fitted model, in lme4's named steps.

    frame      ``frame.model_frame(table, formula)``        lme4's lFormula
    structure  ``build_structure(frame)``                    mkReTrms + the θ-free sums
    criterion  ``devfun(structure, reml)``                   mkLmerDevfun: a pure function of θ
    optimiser  ``optimize(structure, reml, ...)``            optimizeLmer (BOBYQA + boundary care)
    result     ``results.build_result(...)``                 mkMerMod

``Model`` strings them together for one frame and can be refitted (REML or
ML, from another start). Each stage is usable on its own: bootstrap refits
and profiles call ``devfun`` on a structure with another response, and a
GLMM will put its own criterion (PIRLS + Laplace) between the same
structure and the same optimiser.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .engine.factor import criterion, evaluate
from .engine.memory import keep_freed_memory
from .engine.optimize import OptSummary, minimize_theta
from .engine.structure import ModelStructure
from .frame import ModelFrame, model_frame
from .results import LmmResult, build_result
from .table import Table

Progress = Callable[[int, float], None]

# Fits of at least this many rows start from the optimum on a tenth of the
# outermost groups (see warm_start).
WARM_START_ROWS = 200_000
WARM_START_DENSE = 500  # ... or a crossed (dense) block at least this wide
WARM_START_FRACTION = 0.1


def fit(data, formula, reml: bool = True, progress: Progress | None = None) -> LmmResult:
    """Fit ``formula`` (lme4 syntax) to ``data`` (DataFrame, mapping of columns, or Table)."""
    table = Table.from_mapping(data)
    return fit_frame(model_frame(table, formula), reml=reml, progress=progress)


def fit_frame(frame: ModelFrame, reml: bool = True, progress: Progress | None = None) -> LmmResult:
    return Model(frame).fit(reml=reml, progress=progress)


def build_structure(frame: ModelFrame) -> ModelStructure:
    """The θ-free structure of a frame's model: terms, θ layout, nesting, per-level sums."""
    keep_freed_memory()
    return ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))


def devfun(st: ModelStructure, reml: bool) -> Callable[[np.ndarray], float]:
    """The profiled criterion as a function of θ alone (REML criterion or ML deviance)."""
    return lambda theta: criterion(st, theta, reml)


def optimize(fn: Callable[[np.ndarray], float], st: ModelStructure, reml: bool, start: np.ndarray | None = None,
             progress: Progress | None = None) -> OptSummary:
    """Minimise ``fn`` (the model's criterion) over θ from ``start`` (default lme4's), or, for
    large models without a start, from the optimum on a subsample (``warm_start``)."""
    step, stage = None, "bobyqa from start"
    warm = None
    if start is None and (st.n >= WARM_START_ROWS or st.q_dense >= WARM_START_DENSE):
        warm = warm_start(st, reml)
    if warm is not None:
        start, evaluations = warm
        # close to the optimum already: a first trust region of 10% (at least 0.02)
        step = np.maximum(0.1 * np.abs(start), 0.02)
        stage = f"bobyqa from a subsample's optimum ({evaluations} evaluations there)"
    x0 = st.theta_start if start is None else np.maximum(np.asarray(start, float), st.theta_lower)
    summary = OptSummary(start=x0, lower=st.theta_lower, initial_step=step)
    return minimize_theta(fn, summary, progress, stage=stage)


def warm_start(st: ModelStructure, reml: bool):
    """θ̂ of the same model on a random tenth of the levels of one factor, and the
    evaluations spent there; None when the model is too small for it to pay.

    On large models most of BOBYQA's evaluations are spent far from the
    optimum; there they are ten times cheaper, and the full fit then starts
    close to it (900k rows: 124 full evaluations became 40 and 101 tenth-size
    ones). The factor sampled is the one that makes evaluations expensive:
    the largest crossed (dense) term, whose dense block shrinks with the
    cube of its levels, or else the outermost nested term, which keeps the
    nesting intact.
    """
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
    opt = minimize_theta(devfun(sub, reml), OptSummary(start=sub.theta_start, lower=sub.theta_lower))
    if not (opt.converged and np.all(np.isfinite(opt.theta))):
        return None
    return opt.theta, opt.evaluations


class Model:
    """A model frame with its θ-free structure, ready to be fitted by REML or ML (and refitted).

    ``frame`` (``ModelFrame``) and ``structure`` (``ModelStructure``) are built once;
    ``fit`` runs the criterion, the optimiser and the result stages.
    """

    def __init__(self, frame: ModelFrame):
        self.frame = frame
        self.structure = build_structure(frame)

    def criterion(self, theta: np.ndarray, reml: bool) -> float:
        return criterion(self.structure, theta, reml)

    def fit(self, reml: bool = True, start: np.ndarray | None = None, progress: Progress | None = None) -> LmmResult:
        opt = optimize(lambda th: self.criterion(th, reml), self.structure, reml, start, progress)
        return self.result(opt, reml)

    def result(self, opt: OptSummary, reml: bool) -> LmmResult:
        """The fitted model at the optimiser's θ."""
        return build_result(self.frame, self.structure, evaluate(self.structure, opt.theta), opt, reml)

    def result_at(self, theta: np.ndarray, reml: bool = True) -> LmmResult:
        """The fitted-model quantities at a given θ, without optimising (for references and profiles)."""
        st = self.structure
        theta = np.asarray(theta, dtype=float)
        fac = evaluate(st, theta)
        opt = OptSummary(start=theta, lower=st.theta_lower, theta=theta, fmin=fac.criterion(reml))
        opt.stages.append("evaluated at a given theta, not optimised")
        return build_result(self.frame, st, fac, opt, reml)
