"""Minimising the profiled criterion over θ: BOBYQA, then lme4's care at the boundary.

BOBYQA (Powell's bounded quadratic-model method, via NLopt's C implementation)
is what lme4's default ``nloptwrap`` and MixedModels.jl use. A derivative-free
optimiser can stop a hair inside the boundary when the optimum is on it (lme4's
default stops at θ = 2.5e-4 for a classroom model whose optimum is θ = 0), so
after convergence every diagonal θ close to zero is tried at zero, with the
other parameters re-optimised, and the lower criterion is kept; then the
optimiser is restarted from the edge in case leaving it helps. ``OptSummary``
records the settings, the start, every stage and the result, so a fit can be
explained afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# Stopping rules: far tighter than lme4's nloptwrap (1e-8), because the
# criterion must reach the best of lme4's optimisers to 1e-6 even on flat,
# near-singular surfaces.
FTOL_ABS = 1e-10
# ... and relative: on a million rows the criterion is ~1e7, where 1e-10 is
# below double-precision noise (1e-9) and BOBYQA wanders on noise (129
# evaluations instead of 95 on 900k rows, for the same optimum). Not larger:
# at 1e-14 a classroom-size fit (criterion 1.2e4) stopped 3e-7 short, with
# Satterthwaite's df, which depend on θ̂, off by 0.15%.
FTOL_REL = 1e-15
XTOL_ABS = 1e-10
MAX_EVAL = 100_000
# Diagonal θ below this are tried at their bound of zero after convergence
# (lme4 uses 1e-5, which misses optima on the boundary like the classroom M15).
NEAR_BOUNDARY = 1e-3
# A criterion change this small is optimiser noise (the criterion is ~1e4 and
# reached to ~1e-10): within it, the boundary (a singular fit) is preferred.
BOUNDARY_SLACK = 1e-9
EDGE_STEP = 1e-5  # lme4's step off the boundary in restart_edge
NONFINITE = 1e300  # what the optimiser sees where the criterion is NaN or infinite


@dataclass
class OptSummary:
    """What the optimiser was asked, what it did and what it found."""

    start: np.ndarray
    lower: np.ndarray
    optimizer: str = "LN_BOBYQA (NLopt)"
    ftol_abs: float = FTOL_ABS
    ftol_rel: float = FTOL_REL
    xtol_abs: float = XTOL_ABS
    max_eval: int = MAX_EVAL
    theta: np.ndarray | None = None
    fmin: float = math.inf
    evaluations: int = 0
    converged: bool = True
    nonfinite: int = 0  # evaluations where the criterion was not finite
    stages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Objective:
    """Wraps the criterion for NLopt: counts calls, keeps the best point, reports progress."""

    def __init__(self, fn: Callable[[np.ndarray], float], summary: OptSummary, progress=None):
        self.fn = fn
        self.summary = summary
        self.progress = progress
        self.best_x = None
        self.best_f = math.inf

    def __call__(self, x, grad=None):
        f = self.fn(np.asarray(x, dtype=float))
        self.summary.evaluations += 1
        if not math.isfinite(f):
            self.summary.nonfinite += 1
            f = NONFINITE  # BOBYQA cannot handle inf or NaN; a huge value steers it away
        if f < self.best_f:
            self.best_f, self.best_x = f, np.array(x, dtype=float)
        if self.progress is not None:
            self.progress(self.summary.evaluations, self.best_f)
        return f


def _bobyqa(obj: _Objective, x0: np.ndarray, lower: np.ndarray, upper: np.ndarray, step: np.ndarray):
    import nlopt

    n = len(x0)
    opt = nlopt.opt(nlopt.LN_BOBYQA, n)
    opt.set_min_objective(obj)
    opt.set_lower_bounds(lower)
    opt.set_upper_bounds(upper)
    opt.set_ftol_abs(FTOL_ABS)
    opt.set_ftol_rel(FTOL_REL)
    opt.set_xtol_abs(XTOL_ABS)
    opt.set_maxeval(max(MAX_EVAL - obj.summary.evaluations, 1))
    opt.set_initial_step(step)
    x0 = np.clip(x0, lower, upper)
    status = "ok"
    try:
        x = opt.optimize(x0)
        f = opt.last_optimum_value()
        if opt.last_optimize_result() == nlopt.MAXEVAL_REACHED:
            status = "maxeval"
    except nlopt.RoundoffLimited:
        x, f, status = obj.best_x, obj.best_f, "roundoff"
    except (ValueError, RuntimeError) as err:  # NLopt's "generic failure" and friends
        x, f, status = obj.best_x, obj.best_f, f"failure: {err}"
    if obj.best_x is not None and obj.best_f < f:
        x, f = obj.best_x, obj.best_f
    return np.asarray(x, dtype=float), float(f), status


def minimize_theta(fn, start: np.ndarray, lower: np.ndarray, progress=None, step: np.ndarray | None = None,
                   stage: str = "bobyqa from start") -> OptSummary:
    """Minimise ``fn`` over θ ≥ ``lower`` from ``start`` and return the summary.

    ``step`` is BOBYQA's initial step per parameter (its first trust region);
    by default MixedModels.jl's: 0.75 of a non-zero start value, 1 otherwise.
    A start known to be close (a warm start) wants smaller steps.
    """
    summary = OptSummary(start=np.array(start, float), lower=np.array(lower, float))
    obj = _Objective(fn, summary, progress)
    upper = np.full(len(start), np.inf)
    diag = np.isfinite(lower)
    if step is None:
        step = np.where(start != 0, 0.75 * np.abs(start), 1.0)

    x, f, status = _bobyqa(obj, start, lower, upper, step)
    summary.stages.append(f"{stage}: {f:.10f} ({status})")
    _note_status(summary, status)

    # lme4's check.boundary, with a wider net: a diagonal θ near zero is tried
    # at zero, and kept there unless that raises the criterion beyond noise.
    near = np.flatnonzero(diag & (x - lower < NEAR_BOUNDARY) & (x != lower))
    pinned = []
    for i in near[np.argsort(x[near])]:
        trial = x.copy()
        trial[i] = lower[i]
        ft = obj(trial)
        if ft <= f + BOUNDARY_SLACK:
            x, f = trial, min(f, ft) if ft <= f else ft
            pinned.append(i)
    if pinned:
        summary.stages.append(f"{len(pinned)} parameter(s) set to their bound: {f:.10f}")
        # re-optimise the others with those fixed (a short run from nearby)
        fixed = np.zeros(len(x), bool)
        fixed[pinned] = True
        lo = np.where(fixed, lower, lower)
        hi = np.where(fixed, lower, upper)
        small = np.where(fixed, 1e-3, np.maximum(0.05 * np.abs(x), 1e-3))
        xb, fb, _ = _bobyqa(obj, x, lo, hi, small)
        summary.stages.append(f"re-optimised with them fixed: {fb:.10f}")
        if fb <= f:
            x, f = xb, fb
    # lme4's restart_edge: restart only if moving off the boundary lowers the criterion.
    at_bound = np.flatnonzero(diag & (x == lower))
    if len(at_bound):
        leaving = []
        for i in at_bound:
            trial = x.copy()
            trial[i] = lower[i] + EDGE_STEP
            leaving.append(obj(trial) < f)
        if any(leaving):
            small = np.where(diag & (x == lower), 1e-3, np.maximum(0.05 * np.abs(x), 1e-3))
            xr, fr, _ = _bobyqa(obj, x, lower, upper, small)
            summary.stages.append(f"restart from the boundary: {fr:.10f}")
            if fr < f - BOUNDARY_SLACK:
                x, f = xr, fr
    summary.theta = x
    summary.fmin = f
    if f >= NONFINITE:
        summary.fmin = math.nan
        summary.converged = False
        summary.warnings.append(
            f"the criterion was not finite at any of the {summary.evaluations} parameter values tried, so "
            "nothing was fitted; check the data for extreme values, rescale predictors, or simplify the "
            "random effects"
        )
    return summary


def _note_status(summary: OptSummary, status: str):
    if status == "maxeval":
        summary.converged = False
        summary.warnings.append(
            f"the optimiser stopped after {summary.evaluations} evaluations without converging; "
            "try a simpler random-effects structure or rescaling predictors"
        )
    elif status.startswith("failure"):
        summary.converged = False
        summary.warnings.append(f"the optimiser failed ({status[9:]}); the estimates may not be optimal")
