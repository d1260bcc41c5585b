"""The model stage: from a model frame to a fitted model, in lme4's named steps.

    frame      ``frame.model_frame(table, formula)``        lme4's lFormula
    structure  ``build_structure(frame)``                    mkReTrms + the θ-free sums
    criterion  ``devfun(structure, reml)``                   mkLmerDevfun: a pure function of θ̃
    optimiser  ``optimize(fn, structure, reml, ...)``        optimizeLmer (BOBYQA + boundary care)
    result     ``Model.result(opt, reml)``                   mkMerMod

The criterion and the optimiser work in the structure's unit-free θ̃ (see
``engine.structure``); the result, and everything after it, in lme4's θ.

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
from .engine.optimize import OptSummary, decreases_along_ray, minimize_theta
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
# A second start, from this multiple of the first, when the first run ends on the boundary
# or a grouping factor has fewer than FEW_LEVELS levels: such criteria often have several
# local minima, and one with larger variances is reached from larger starting values (on
# random models, lme4's Nelder-Mead found the better one where BOBYQA from 1 did not).
SECOND_START = 10.0
FEW_LEVELS = 10
# A start this fraction of the first looks for a local minimum near zero when the criterion
# has none in the direction the first run took (decreases_along_ray).
SMALL_START = 0.1


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
    """The profiled criterion (REML criterion or ML deviance) as a function of the working θ̃ alone."""
    return lambda theta_w: criterion(st, theta_w, reml, working=True)


def optimize(fn: Callable[[np.ndarray], float], st: ModelStructure, reml: bool, start: np.ndarray | None = None,
             progress: Progress | None = None) -> OptSummary:
    """Minimise ``fn`` (the model's criterion of θ̃) from ``start`` (a working θ̃; default the
    identity, lme4's start in unit-free columns), or, for large models without a start, from
    the optimum on a subsample (``warm_start``). The summary's θ is a working θ̃."""
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
    minimize_theta(fn, summary, progress, stage=stage)
    candidates = [_candidate(fn, summary)]
    if warm is None and start is None and _worth_another_start(st, summary, candidates[0]):
        minimize_theta(fn, summary, progress, stage=f"bobyqa from {SECOND_START:g} × the start",
                       start=SECOND_START * x0)
        candidates.append(_candidate(fn, summary))
    if not any(c[2] for c in candidates):
        minimize_theta(fn, summary, progress, stage=f"bobyqa from {SMALL_START:g} × the start",
                       start=SMALL_START * x0)
        candidates.append(_candidate(fn, summary))
    minima = [c for c in candidates if c[2]]
    theta, fmin, _ = min(minima or candidates, key=lambda c: c[1])
    summary.theta, summary.fmin = theta, fmin
    if not minima:
        summary.unbounded, summary.converged = True, False
        summary.warnings.append(_unbounded_message(st, local=False))
    elif any(not c[2] and c[1] < fmin for c in candidates):
        summary.warnings.append(_unbounded_message(st, local=True))
    summary.stages.append(f"chosen: {fmin:.10f}" + ("" if minima else " (no start reached a minimum)"))
    return summary


def _candidate(fn, summary: OptSummary):
    """(θ̃, criterion, is a minimum) of the summary's last start (see decreases_along_ray)."""
    is_minimum = not decreases_along_ray(fn, summary.theta, summary.fmin)
    if not is_minimum:
        summary.stages.append("that point is no minimum: the criterion still decreases when every variance "
                              "parameter is doubled")
    return np.array(summary.theta, dtype=float), float(summary.fmin), is_minimum


def _worth_another_start(st: ModelStructure, summary: OptSummary, first) -> bool:
    """A second start for criteria prone to several local minima: the first run ended on the
    boundary, or some grouping factor has few levels (or it found no minimum)."""
    if summary.theta is None or not np.isfinite(summary.fmin):
        return False
    if not first[2]:
        return True
    on_boundary = bool(np.any(summary.theta[st.theta_is_diag] == 0.0))
    return on_boundary or min(t.n_levels for t in st.terms) < FEW_LEVELS


def _unbounded_message(st: ModelStructure, local: bool) -> str:
    """Why the criterion has no minimum as the variances grow, and what the estimates are."""
    crowded = [f"{t.group} has {t.n_levels} levels" for t in st.terms if t.n_levels * t.k >= 0.5 * st.n]
    why = (f" ({', '.join(crowded)} for {st.n} observations)" if crowded else
           f" ({st.p} fixed and {sum(t.n_levels * t.k for t in st.terms)} random effects for {st.n} observations)")
    head = ("the criterion decreases without end as the random-effect variances grow and the residual variance "
            f"shrinks to 0: the random effects can reproduce the response{why}, so the likelihood has no maximum")
    if local:
        return head + "; the estimates are a local optimum (the one lme4 reports from its start)"
    return head + "; the estimates are where the optimiser stopped, not an optimum: simplify the random effects"


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

    def criterion(self, theta_w: np.ndarray, reml: bool) -> float:
        """The criterion at a working θ̃ (what the optimiser sees)."""
        return criterion(self.structure, theta_w, reml, working=True)

    def fit(self, reml: bool = True, start: np.ndarray | None = None, progress: Progress | None = None) -> LmmResult:
        """Fit by REML or ML, from lme4's θ ``start`` if given."""
        st = self.structure
        start_w = None if start is None else st.to_working(np.maximum(np.asarray(start, float), st.theta_lower))
        opt = optimize(lambda th: self.criterion(th, reml), st, reml, start_w, progress)
        return self.result(opt, reml)

    def result(self, opt: OptSummary, reml: bool) -> LmmResult:
        """The fitted model at the optimiser's θ̃, reported in lme4's θ."""
        st = self.structure
        fac = evaluate(st, st.to_user(opt.theta))
        return build_result(self.frame, st, fac, opt, reml)

    def result_at(self, theta: np.ndarray, reml: bool = True) -> LmmResult:
        """The fitted-model quantities at a given θ, without optimising (for references and profiles)."""
        st = self.structure
        theta = np.asarray(theta, dtype=float)
        fac = evaluate(st, theta)
        theta_w = st.to_working(theta)
        opt = OptSummary(start=theta_w, lower=st.theta_lower, theta=theta_w, fmin=fac.criterion(reml))
        opt.stages.append("evaluated at a given theta, not optimised")
        return build_result(self.frame, st, fac, opt, reml)
