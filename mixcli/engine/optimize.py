"""The one optimiser: NLopt driven from one settings record, and lme4's care at the boundary.

BOBYQA (Powell's bounded quadratic-model method, via NLopt's C implementation)
is what lme4's default ``nloptwrap`` and MixedModels.jl use. Every
minimisation in mixcli — a fit, the warm start of a large fit, bootstrap
refits, the inner problems of profiles — is described by an ``OptSummary``
(algorithm, bounds, start, steps, tolerances, evaluation limit) and run by
``run``, which records in the same summary what was done and found.

``minimize_theta`` is the fit's strategy on top: a derivative-free optimiser
can stop a hair inside the boundary when the optimum is on it (lme4's default
stops at θ = 2.5e-4 for a classroom model whose optimum is θ = 0), so after
convergence every diagonal θ close to zero is tried at zero, with the other
parameters re-optimised, and the lower criterion is kept; then the optimiser
is restarted from the edge in case leaving it helps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..control import DEFAULT, Control

ALGORITHM = "LN_BOBYQA"
_NAMES = {"LN_BOBYQA": "bobyqa", "LD_LBFGS": "l-bfgs"}
NONFINITE = 1e300  # what the optimiser sees where the criterion is NaN or infinite
# (every tolerance, limit and boundary rule is a setting of the fit's ``control.Control``)


@dataclass
class OptSummary:
    """Everything about one minimisation: what it was asked, what it did, what it found.

    Settings (``None`` takes the ``control``'s at construction time):

    * ``start``, ``lower``, ``upper`` — the first point and the bounds (``upper``
      defaults to +∞ everywhere);
    * ``algorithm`` — NLopt's name of the algorithm (``LN_BOBYQA``);
    * ``initial_step`` — per parameter, the first trust region (BOBYQA's rhobeg);
      default MixedModels.jl's: 0.75 of a non-zero start value, 1 otherwise;
    * ``ftol_abs``, ``ftol_rel``, ``xtol_abs``, ``xtol_rel`` — NLopt's stopping rules
      (0 turns one off);
    * ``max_eval`` — the most evaluations allowed, over all of ``run``'s calls;
    * ``control`` — the fit's settings (``control.Control``), whose boundary rules
      ``minimize_theta`` applies;
    * ``stop_below`` — stop as soon as the criterion is at or below this (NLopt's
      stopval; the fit's second start uses it to learn early which minimum it is heading for).

    Results:

    * ``theta``, ``fmin`` — the best point and criterion found;
    * ``evaluations`` — criterion evaluations, every stage included;
      ``nonfinite`` — how many of them were not finite;
    * ``status`` — NLopt's ending of the last run (``ok``, ``maxeval``, ``roundoff``,
      ``failure: ...``); ``converged`` — False after an evaluation limit, a failure or
      a criterion that was never finite;
    * ``stages`` — one line per stage of the strategy (start, boundary checks,
      restarts), with the criterion after it; ``warnings`` — what the user must know;
    * ``unbounded`` — the criterion still decreases when every parameter grows (see
      ``decreases_along_ray``): no start reached a minimum;
    * ``curvature`` — the criterion's derivatives at ``theta`` when the strategy computed them
      there (Newton's method on a heavy crossed model): the convergence check reuses them.
    """

    start: np.ndarray
    lower: np.ndarray
    upper: np.ndarray | None = None
    algorithm: str = ALGORITHM
    initial_step: np.ndarray | None = None
    ftol_abs: float | None = None
    ftol_rel: float | None = None
    xtol_abs: float | None = None
    xtol_rel: float = 0.0
    max_eval: int | None = None
    stop_below: float = -math.inf
    control: Control = DEFAULT
    theta: np.ndarray | None = None
    fmin: float = math.inf
    evaluations: int = 0
    nonfinite: int = 0
    status: str = ""
    converged: bool = True
    stages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unbounded: bool = False
    curvature: object = None  # the check's derivatives (engine.curvature) where a stage computed them at θ

    def __post_init__(self):
        self.start = np.array(self.start, dtype=float)
        self.lower = np.array(self.lower, dtype=float)
        self.upper = np.full(len(self.start), np.inf) if self.upper is None else np.array(self.upper, dtype=float)
        if self.initial_step is None:
            self.initial_step = default_step(self.start)
        c = self.control
        self.ftol_abs = c.ftol_abs if self.ftol_abs is None else self.ftol_abs
        self.ftol_rel = c.ftol_rel if self.ftol_rel is None else self.ftol_rel
        self.xtol_abs = c.xtol_abs if self.xtol_abs is None else self.xtol_abs
        self.max_eval = c.max_eval if self.max_eval is None else self.max_eval


def default_step(start: np.ndarray) -> np.ndarray:
    """MixedModels.jl's first trust region: 0.75 of a non-zero start value, 1 otherwise."""
    start = np.asarray(start, dtype=float)
    return np.where(start != 0, 0.75 * np.abs(start), 1.0)


class _Objective:
    """Wraps the criterion for NLopt: counts calls, keeps the best point of the current run,
    reports progress. A gradient-based algorithm asks for the gradient too: ``fdf(x)``
    returns (f, ∇f)."""

    def __init__(self, fn: Callable[[np.ndarray], float], summary: OptSummary, progress=None, fdf=None):
        self.fn = fn
        self.fdf = fdf
        self.summary = summary
        self.progress = progress
        self.best_x = None
        self.best_f = math.inf

    def __call__(self, x, grad=None):
        x = np.asarray(x, dtype=float)
        if grad is not None and grad.size:
            f, g = self.fdf(x)
            grad[:] = g if math.isfinite(f) and np.all(np.isfinite(g)) else 0.0
        else:
            f = self.fn(x)
        self.summary.evaluations += 1
        if not math.isfinite(f):
            self.summary.nonfinite += 1
            f = NONFINITE  # BOBYQA cannot handle inf or NaN; a huge value steers it away
        if f < self.best_f:
            self.best_f, self.best_x = f, np.array(x, dtype=float)
        if self.progress is not None:
            self.progress(self.summary.evaluations, self.best_f)
        return f


def run(summary: OptSummary, fn, progress=None, *, x0=None, lower=None, upper=None, step=None,
        objective: _Objective | None = None, fdf=None) -> tuple[np.ndarray, float, str]:
    """Minimise ``fn`` with NLopt as ``summary`` says; returns (x, f, status) and records it.

    ``x0``, ``lower``, ``upper`` and ``step`` override the summary's start, bounds and
    initial step for this run only (the fit's strategy re-runs from nearby points
    with some parameters fixed). Evaluations count against ``summary.max_eval``
    over all runs on the same summary. The best point ever evaluated is returned,
    also when NLopt stops on a round-off or a failure.
    """
    import nlopt

    obj = objective if objective is not None else _Objective(fn, summary, progress, fdf)
    # the best point of this run only: a run with some parameters fixed must not return a
    # point of an earlier run where they were free
    obj.best_x, obj.best_f = None, math.inf
    x0 = summary.start if x0 is None else np.asarray(x0, dtype=float)
    lower = summary.lower if lower is None else lower
    upper = summary.upper if upper is None else upper
    step = summary.initial_step if step is None else step
    x0 = np.clip(x0, lower, upper)
    # (BOBYQA refuses a first trust region wider than half a parameter's range, as a correlation's
    # [−1/(k − 1), 1] with the default step of 1: a quarter of the range instead)
    width = np.asarray(upper, dtype=float) - np.asarray(lower, dtype=float)
    too_wide = np.isfinite(width) & (width > 0) & (np.asarray(step, dtype=float) > 0.5 * width)
    if np.any(too_wide):
        step = np.where(too_wide, 0.25 * width, step)
    n = len(x0)
    if n == 0:
        f = obj(x0)
        return x0, f, "ok"
    opt = nlopt.opt(getattr(nlopt, summary.algorithm), n)
    opt.set_min_objective(obj)
    opt.set_lower_bounds(lower)
    opt.set_upper_bounds(upper)
    opt.set_ftol_abs(summary.ftol_abs)
    opt.set_ftol_rel(summary.ftol_rel)
    opt.set_xtol_abs(summary.xtol_abs)
    opt.set_xtol_rel(summary.xtol_rel)
    opt.set_maxeval(max(summary.max_eval - summary.evaluations, 1))
    opt.set_initial_step(step)
    opt.set_stopval(summary.stop_below)
    status = "ok"
    try:
        x = opt.optimize(x0)
        f = opt.last_optimum_value()
        if opt.last_optimize_result() == nlopt.MAXEVAL_REACHED:
            status = "maxeval"
        elif opt.last_optimize_result() == nlopt.STOPVAL_REACHED:
            status = "stopval"
    except nlopt.RoundoffLimited:
        x, f, status = obj.best_x, obj.best_f, "roundoff"
    except _failures(nlopt) as err:  # NLopt's "generic failure" and friends
        x, f, status = obj.best_x, obj.best_f, f"failure: {err or type(err).__name__}"
    if x is None:  # failed before any evaluation
        x, f = x0, obj(x0)
    if obj.best_x is not None and obj.best_f < f:
        x, f = obj.best_x, obj.best_f
    summary.status = status
    return np.asarray(x, dtype=float), float(f), status


def _failures(nlopt) -> tuple:
    """NLopt's exceptions for a failed run (its own classes, not Python's RuntimeError); an
    exception raised by the criterion itself (Ctrl-C, out of memory) is not among them."""
    names = ("runtime_error", "logic_error", "domain_error", "range_error", "overflow_error",
             "underflow_error", "length_error")
    return (ValueError, RuntimeError) + tuple(getattr(nlopt, n) for n in names if hasattr(nlopt, n))


def minimize_theta(fn, summary: OptSummary, progress=None, stage: str = "from start",
                   start: np.ndarray | None = None, step: np.ndarray | None = None, fdf=None,
                   fold=None) -> OptSummary:
    """Minimise the profiled criterion ``fn`` over θ as ``summary`` says, with lme4's
    boundary checks, and return the summary filled in.

    ``start`` (with ``step``, by default ``default_step(start)``) replaces the
    summary's for a further start on the same summary: its evaluations, stages and
    limit carry on, and ``theta``/``fmin`` become this start's result (the caller
    chooses among its starts).

    A gradient-based algorithm (``fdf`` gives the criterion and its gradient) runs
    without bounds and ``fold`` maps its point to an equivalent one within them
    (θ with a negative diagonal entry describes the same covariance as θ with that
    column of Λ negated). With bounds, a gradient method would stop wherever a step
    lands on θ = 0, where the criterion of a one-effect term is even in θ and so
    stationary.
    """
    if start is not None and step is None:
        step = default_step(start)
    obj = _Objective(fn, summary, progress, fdf)
    c = summary.control
    lower, upper = summary.lower, summary.upper
    diag = np.isfinite(lower)
    free = np.full(len(lower), -np.inf) if fdf is not None else lower

    def solve(x0, step, fixed=None):
        lo = free if fixed is None else np.where(fixed, lower, free)
        hi = upper if fixed is None else np.where(fixed, lower, upper)
        x, f, status = run(summary, fn, objective=obj, x0=x0, lower=lo, upper=hi, step=step)
        return (fold(x) if fold is not None else x), f, status

    x, f, status = solve(start, step)
    summary.stages.append(f"{_NAMES.get(summary.algorithm, summary.algorithm)} {stage}: {f:.10f} ({status})")
    _note_status(summary, status)
    if status == "stopval":  # (the caller only wanted to know where the run was heading)
        summary.theta, summary.fmin = x, f
        return summary

    # lme4's check.boundary, with a wider net: a diagonal θ near zero is tried
    # at zero, and kept there unless that raises the criterion beyond noise.
    near = np.flatnonzero(diag & (x - lower < c.near_boundary) & (x != lower))
    pinned = []
    for i in near[np.argsort(x[near])]:
        trial = x.copy()
        trial[i] = lower[i]
        ft = obj(trial)
        if ft <= f + c.boundary_slack:
            x, f = trial, ft
            pinned.append(i)
    if pinned:
        summary.stages.append(f"{len(pinned)} parameter(s) set to their bound: {f:.10f}")
        # re-optimise the others with those fixed (a short run from nearby)
        fixed = np.zeros(len(x), bool)
        fixed[pinned] = True
        small = np.where(fixed, 1e-3, np.maximum(0.05 * np.abs(x), 1e-3))
        xb, fb, _ = solve(x, small, fixed)
        summary.stages.append(f"re-optimised with them fixed: {fb:.10f}")
        if fb <= f:
            x, f = xb, fb
    # lme4's restart_edge: restart only if moving off the boundary lowers the criterion.
    at_bound = np.flatnonzero(diag & (x == lower))
    if len(at_bound):
        leaving = []
        for i in at_bound:
            trial = x.copy()
            trial[i] = lower[i] + c.edge_step
            leaving.append(obj(trial) < f)
        if any(leaving):
            edge = diag & (x == lower)
            small = np.where(edge, 1e-3, np.maximum(0.05 * np.abs(x), 1e-3))
            # (off the edge: there the gradient of a one-effect term's θ is not zero)
            xr, fr, _ = solve(np.where(edge, lower + c.edge_step, x) if fdf is not None else x, small)
            summary.stages.append(f"restart from the boundary: {fr:.10f}")
            if fr < f - c.boundary_slack:
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


def decreases_along_ray(fn, x: np.ndarray, f: float, slack: float = DEFAULT.ray_slack) -> bool:
    """Whether the criterion is lower at 2x than at x (beyond rounding): then x is no minimum.

    The profiled criteria of a mixed model can decrease without end as every
    relative variance grows together — the random effects then reproduce the
    response and σ → 0 (a term with about one level per observation, or p + q ≥ n)
    — and an optimiser stops wherever the decrease flattens out. At a minimum,
    doubling every parameter cannot help; there, it does.
    """
    if x is None or not math.isfinite(f) or not np.any(x != 0):
        return False
    return fn(2.0 * np.asarray(x, dtype=float)) < f - slack * max(1.0, abs(f))
