"""Derivatives of the criterion's pieces at a fitted θ, and the convergence check built on them.

The profiled criteria are d(θ) = a(θ) + m·log r²(θ) + const, with
a = log|L_Z|² (+ log|R_X|² for REML), m = n (− p for REML), and Var(β̂) =
σ² V(θ), V = (R_XᵀR_X)⁻¹. ``curvature`` differentiates a, r² and V at the
optimiser's working θ̃ once per fit (unit-free: the covariances of the centred and
scaled random-effect columns, ``engine.structure``). lme4's θ would do in exact
arithmetic — a minimum, a Newton decrement and Satterthwaite's df do not depend on
the parameterisation — but not in floating point: with a random slope whose
predictor is far from zero (Days + 150) the intercept's θ is 150 times the slope's
and their correlation −0.9999, so differences in θ mix scales, the Hessian's
small eigenvalues fall below the pseudo-inverse's cut-off, and the df moved from
17 to 5.5. The fit checks its optimum with these derivatives (``check``) and
Satterthwaite's df reuse them (``inference.satterthwaite``):

* models with many covariance parameters (``gradient.worth_gradient``): central
  differences of the analytic gradients of a and r² (2n gradients);
* the others: central differences of a, r² and V themselves (2n(n+1) criterion
  evaluations, fewer there);

both with Richardson extrapolation (``derivatives``), one level of it for a
crossed block of 2,000+ random effects (seconds per evaluation there; the
second derivatives then carry ~1e-4 relative truncation error).

``check`` is lme4's checkConv, and stricter: at a minimum the gradient of d
vanishes, except for θ on its bound (a variance of 0), where it may only point
inwards; and the Hessian of d over the other parameters is positive
semi-definite. It reports the criterion decrease that a Newton step predicts
from the gradient (½ gᵀH⁻¹g) and clearly negative eigenvalues.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..control import DEFAULT, Control
from .derivatives import LEVELS, _steps, gradient_hessian, jacobian
from .factor import evaluate_working, profiled_criterion
from .gradient import gradient, worth_gradient
from .structure import ModelStructure

# (the check's tolerances and the batching of its points are settings of ``control.Control``)


@dataclass
class Curvature:
    """a, r², vech V at the working θ̃ with their first and second derivatives in θ̃."""

    theta: np.ndarray  # the working θ̃
    reml: bool
    m: int  # n, or n − p for REML
    a_grad: np.ndarray  # (k,)
    a_hess: np.ndarray  # (k, k)
    r2: float
    r2_grad: np.ndarray
    r2_hess: np.ndarray
    v: np.ndarray  # vech of V = (R_XᵀR_X)⁻¹ (upper triangle, row by row)
    v_grad: np.ndarray  # (len(v), k)
    value: float = float("nan")  # the criterion at θ̃ (its centre point)
    points: int = 0  # the parameter values evaluated (criteria, or gradients on the analytic path)

    def criterion_gradient(self) -> np.ndarray:
        return self.a_grad + (self.m / self.r2) * self.r2_grad

    def criterion_hessian(self) -> np.ndarray:
        g = self.r2_grad
        return self.a_hess + (self.m / self.r2) * self.r2_hess - (self.m / self.r2**2) * np.outer(g, g)


def curvature(st: ModelStructure, theta: np.ndarray, reml: bool, control: Control = DEFAULT) -> Curvature:
    """Derivatives of the criterion's pieces at the working θ̃ (see the module docstring). Points
    where the system is numerically indefinite give NaNs, not warnings (as ``evaluate``)."""
    with np.errstate(all="ignore"):
        return _curvature(st, theta, reml, control)


def _curvature(st: ModelStructure, theta: np.ndarray, reml: bool, control: Control) -> Curvature:
    theta = np.asarray(theta, dtype=float)
    k, p = len(theta), st.p
    iu = np.triu_indices(p)
    levels, scale = check_differences(st, control)
    # (the structure's sums use a least-squares-centred response, so r² has no cancellation
    # of yᵀy to amplify in second differences)
    steps = _steps_within_bounds(st, theta)
    if scale != 1.0:
        steps = scale * (_steps(theta) if steps is None else steps)
    if worth_gradient(st, control.gradient_from):
        def pieces(th: np.ndarray) -> np.ndarray:
            fac = evaluate_working(st, th)
            g = gradient(fac, reml)
            v = fac.rx_inverse()[iu] if p else np.zeros(0)
            return np.concatenate([g.working(st, "logdet"), g.working(st, "pwrss"), v])

        f0 = pieces(theta)
        jac = jacobian(pieces, theta, levels, steps=steps)
        centre = evaluate_working(st, theta, full=False)
        r2, value = centre.pwrss, centre.criterion(reml)
        a_grad, r2_grad, v = f0[:k], f0[k: 2 * k], f0[2 * k:]
        a_hess, r2_hess, v_grad = _symmetric(jac[:k]), _symmetric(jac[k: 2 * k]), jac[2 * k:]
        points = 1 + 2 * levels * k
    else:
        def pieces(th: np.ndarray) -> np.ndarray:
            fac = evaluate_working(st, th, full=False)
            a = fac.logdet_z + (fac.logdet_x if reml else 0.0)
            v = fac.rx_inverse()[iu] if p else np.zeros(0)
            return np.concatenate([[a, fac.pwrss], v])

        def in_order(points: np.ndarray) -> np.ndarray:
            # One point at a time (a large model: its evaluations are arithmetic, not overhead,
            # and this keeps the sparse paths and one evaluation's memory), those sharing the
            # first term's θ one after the other: an eliminated first term's reduction depends on
            # it alone and is kept for the next point (eliminate.FirstBlockElimination.reduce):
            # 5 reductions for M17's 41 points; on the MovieLens shape (CᵀWC, most of an
            # evaluation) 3 for 7.
            out = np.empty((len(points), 2 + len(iu[0])))
            for i in np.argsort(points[:, 0], kind="stable"):
                out[i] = pieces(points[i])
            return out

        def many(points: np.ndarray) -> np.ndarray:
            if st.dense or len(points) * st.batch_size_unit > control.batch_entries:
                return in_order(points)
            fac = evaluate_working(st, points, full=False)
            a = fac.logdet_z + (fac.logdet_x if reml else 0.0)
            v = fac.rx_inverse()[:, iu[0], iu[1]] if p else np.zeros((len(points), 0))
            return np.column_stack([a, fac.pwrss, v])

        f0, grad, hess = gradient_hessian(pieces, theta, levels, steps=steps, many=many)
        r2, v = float(f0[1]), f0[2:]
        a_grad, r2_grad, v_grad = grad[0], grad[1], grad[2:]
        a_hess, r2_hess = hess[0], hess[1]
        value = profiled_criterion(f0[0], r2, st.n - p if reml else st.n, st.weights_term) if r2 > 0 else math.inf
        points = 1 + 2 * levels * (k + k * (k - 1) // 2)
    return Curvature(theta, reml, st.n - p if reml else st.n, a_grad, a_hess, float(r2), r2_grad, r2_hess, v, v_grad,
                     float(value) if math.isfinite(value) else math.inf, points)


def heavy(st: ModelStructure, control: Control = DEFAULT) -> bool:
    """Whether every evaluation of the model is expensive: ``heavy_rows`` rows, or a crossed block of
    ``heavy_dense`` effects (the check's differences then take one level, ``check_differences``, and
    a warm-started fit Newton's steps, ``model.newton_descent``)."""
    return st.n >= control.heavy_rows or st.q_dense >= control.heavy_dense


def check_differences(st: ModelStructure, control: Control = DEFAULT) -> tuple[int, float]:
    """(Richardson levels, scale of the first steps) of the check's differences: two levels of the
    default steps; on a heavy model (``heavy``), where every point is a full evaluation, one level
    at a tenth of the steps, as accurate at half the points (898k rows: the Hessian within 6e-7 of
    three levels', V's derivatives within 3e-8; one level at the default steps: 6e-5)."""
    if heavy(st, control):
        return 1, 0.1
    return LEVELS, 1.0


def _steps_within_bounds(st: ModelStructure, theta: np.ndarray) -> np.ndarray | None:
    """The differences' first steps, at most a twentieth of the way to a structured term's bound on its
    correlation (beyond ρ = 1 there is no covariance); None (the default steps) for a model
    without one."""
    if not st.structured:
        return None
    steps = _steps(theta)
    bounded = np.isfinite(st.theta_upper)
    room = np.minimum(st.theta_upper - theta, theta - st.theta_lower)
    shrink = bounded & (room > 0)
    steps[shrink] = np.minimum(steps[shrink], 0.05 * room[shrink])
    return steps


def _at_bound(st: ModelStructure, theta: np.ndarray, g: np.ndarray, on_bound: float) -> np.ndarray:
    """Parameters the check leaves out: a variance on its bound whose derivative points inwards,
    a structured term's correlation on either of its bounds."""
    bound = st.theta_is_diag & (np.abs(theta) < on_bound) & ~(g < 0)
    if st.structured:
        rho = np.isfinite(st.theta_upper)
        bound |= rho & ((st.theta_upper - theta < on_bound) | (theta - st.theta_lower < on_bound))
    return bound


def _symmetric(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + a.T)


def newton_step(curv: Curvature, st: ModelStructure, on_bound: float = DEFAULT.on_bound) -> np.ndarray | None:
    """θ after one Newton step on the criterion over the parameters the check calls free
    (those not on their bound, or leaving it), kept within the bounds; None if the Hessian
    there is not positive definite."""
    g, h = curv.criterion_gradient(), curv.criterion_hessian()
    free = ~_at_bound(st, curv.theta, g, on_bound)
    if not free.any() or not (np.all(np.isfinite(g)) and np.all(np.isfinite(h))):
        return None
    hf = h[np.ix_(free, free)]
    try:
        step = np.linalg.solve(hf, g[free]) if np.all(np.linalg.eigvalsh(hf) > 0) else None
    except np.linalg.LinAlgError:
        step = None
    if step is None:
        return None
    theta = curv.theta.copy()
    theta[free] -= step
    return np.clip(theta, st.theta_lower, st.theta_upper)


def newton_decrement(curv: Curvature, st: ModelStructure, control: Control = DEFAULT):
    """(½ gᵀH⁻¹g over the free parameters and H's clearly positive eigen-directions: the decrease a
    Newton step predicts; H's clearly negative eigenvalues; which parameters are free). On the
    bound, a negative derivative means the criterion falls as the variance grows: such a
    parameter is as free as any other."""
    g, h = curv.criterion_gradient(), curv.criterion_hessian()
    free = ~_at_bound(st, curv.theta, g, control.on_bound)
    if not free.any():
        return 0.0, np.zeros(0), free
    vals, vecs = np.linalg.eigh(h[np.ix_(free, free)])
    top = max(float(np.max(np.abs(vals))), 1e-300)
    pos = vals > control.negative_eigen * top
    proj = vecs[:, pos].T @ g[free]
    return 0.5 * float(np.sum(proj**2 / vals[pos])), vals[vals < -control.negative_eigen * top], free


def stopped_short(problems: list[str]) -> bool:
    return any("stopped short" in p for p in problems)


def check(curv: Curvature, st: ModelStructure, fmin: float, control: Control = DEFAULT) -> list[str]:
    """What makes θ no minimum of the criterion (empty if it is one): see the module docstring."""
    with np.errstate(all="ignore"):
        g = curv.criterion_gradient()
        h = curv.criterion_hessian()
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(h))):
        return ["the criterion's derivatives at the estimate are not finite, so it cannot be checked to be a minimum"]
    problems = []
    decrease, negative, free = newton_decrement(curv, st, control)
    if len(negative):
        problems.append(
            f"the Hessian of the criterion has {len(negative)} negative eigenvalue(s) "
            f"({', '.join(f'{v:.2g}' for v in negative)}): the estimate is a saddle point, not a minimum"
        )
    if decrease > control.newton_tol + control.newton_rel * abs(fmin):
        worst = float(np.max(np.abs(g[free])))
        problems.append(
            f"the gradient of the criterion is not zero at the estimate (largest {worst:.2g}; a Newton step "
            f"would lower the criterion by about {decrease:.2g}): the optimiser stopped short of the minimum"
        )
    return problems
