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

import math
from dataclasses import replace
from typing import Callable

import numpy as np

from .control import DEFAULT, Control
from .engine.curvature import check, curvature, heavy, newton_decrement, newton_step, stopped_short
from .engine.factor import criterion_working, evaluate, evaluate_working
from .engine.gradient import gradient, worth_gradient
from .engine.memory import keep_freed_memory
from .engine.optimize import OptSummary, decreases_along_ray, default_step, minimize_theta, run
from .engine.structure import ModelStructure, TermBasis
from .frame import ModelFrame
from .results import LmmResult, build_result

Progress = Callable[[int, float], None]

def build_structure(frame: ModelFrame, response: bool = True) -> ModelStructure:
    """The θ-free structure of a frame's model: terms, θ layout, nesting, per-level sums (of
    X and y; without ``response`` of X and zeros, for a GLMM, whose PIRLS supplies its own)."""
    keep_freed_memory()
    if not response:
        y = np.zeros(frame.n)
    elif frame.offset is not None and frame.family is None:
        y = frame.y - frame.offset  # an LMM's offset is part of Xβ with a known coefficient
    else:
        y = frame.y
    if frame.family is None and frame.weights is not None:
        # lmer's weights: Var(εᵢ) = σ²/wᵢ. Every row (X, y and Z, in the unit-free basis of the
        # unweighted columns) is scaled by √wᵢ, and the criterion gains −Σ log wᵢ.
        sw = np.sqrt(frame.weights)
        bases = [TermBasis.for_term(t) for t in frame.terms]
        terms = [replace(t, z=b.standardise(t.z) * sw[:, None]) for t, b in zip(frame.terms, bases)]
        return ModelStructure(terms, np.column_stack([frame.X, y]) * sw[:, None], bases=bases,
                              weights_term=-float(np.sum(np.log(frame.weights))))
    return ModelStructure(frame.terms, np.column_stack([frame.X, y]))


def devfun(st: ModelStructure, reml: bool) -> Callable[[np.ndarray], float]:
    """The profiled criterion (REML criterion or ML deviance) as a function of the working θ̃ alone."""
    return lambda theta_w: criterion_working(st, theta_w, reml)


def batch_devfun(st: ModelStructure, reml: bool, control: Control = DEFAULT):
    """The criterion at many working θ̃ (rows) factored at once (``engine.factor``'s batches: a
    dozen points cost ~6 evaluations on small models), or None where batches are not available
    (crossed terms, structured covariances) or hold too much memory (``control.batch_entries``)."""
    if st.dense or st.structured:
        return None

    def many(points: np.ndarray) -> np.ndarray:
        if len(points) * st.batch_size_unit > control.batch_entries:
            return np.array([criterion_working(st, x, reml) for x in points])
        return evaluate_working(st, points, full=False).criteria(reml)
    return many


def gradfun(st: ModelStructure, reml: bool) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """The criterion and its analytic gradient (``engine.gradient``) as functions of θ̃."""
    def fdf(theta_w):
        fac = evaluate_working(st, theta_w)
        if not fac.ok:
            return math.inf, np.zeros(len(theta_w))
        g = gradient(fac, reml)
        return g.value, g.working(st)
    return fdf


def choose_algorithm(st: ModelStructure, control: Control = DEFAULT) -> str:
    """L-BFGS with the analytic gradient for models with many covariance parameters, BOBYQA
    (derivative-free) for the others (``engine.gradient.worth_gradient``) and for structured
    covariances (L-BFGS's unbounded steps rely on ``fold``, which cannot mirror a correlation
    back inside its bounds)."""
    return "LD_LBFGS" if worth_gradient(st, control.gradient_from) and not st.structured else "LN_BOBYQA"


def optimize(fn: Callable[[np.ndarray], float], st: ModelStructure, reml: bool, start: np.ndarray | None = None,
             progress: Progress | None = None, algorithm: str | None = None, control: Control = DEFAULT) -> OptSummary:
    """Minimise ``fn`` (the model's criterion of θ̃) from ``start`` (a working θ̃; default the
    identity, lme4's start in unit-free columns), or, for large models without a start, from
    the optimum on a subsample (``warm_start``), with the settings of ``control``. The
    summary's θ is a working θ̃."""
    c = control
    step, stage = None, "from start"
    warm = None
    if start is None and (st.n >= c.warm_start_rows or st.q_dense >= c.warm_start_dense):
        warm = warm_start(st, reml, c)
    if warm is not None:
        start, evaluations = warm
        # close to the optimum already: a first trust region of 10% (at least 0.02)
        step = np.maximum(0.1 * np.abs(start), 0.02)
        stage = f"from a subsample's optimum ({evaluations} evaluations there)"
    x0 = st.theta_start if start is None else np.maximum(np.asarray(start, float), st.theta_lower)
    algorithm = algorithm or choose_algorithm(st, c)
    fdf = gradfun(st, reml) if algorithm.startswith("LD_") else None
    summary = OptSummary(start=x0, lower=st.theta_lower, upper=st.theta_upper, initial_step=step, algorithm=algorithm,
                         xtol_abs=c.warm_xtol if warm is not None else None, control=c)
    fold = st.fold if fdf is not None else None
    newton = warm is not None and heavy(st, c) and not st.structured
    if newton:
        x0 = newton_descent(st, reml, summary, x0, stage, progress)
    if summary.curvature is None:
        minimize_theta(fn, summary, progress, stage=stage, fdf=fdf, fold=fold,
                       start=x0 if newton else None, step=step if newton else None)
    candidates = [candidate(fn, summary)]
    if warm is None and start is None and c.second_start and _worth_another_start(st, summary, candidates[0]):
        second = another_start(fn, summary, candidates[0], c.second_start * x0, progress, fdf, fold,
                               many=batch_devfun(st, reml, c))
        if second is not None:
            candidates.append(second)
    if not any(cand[2] for cand in candidates):
        minimize_theta(fn, summary, progress, stage=f"from {c.small_start:g} × the start",
                       start=c.small_start * x0, fdf=fdf, fold=fold)
        candidates.append(candidate(fn, summary))
    minima = [cand for cand in candidates if cand[2]]
    theta, fmin, _ = min(minima or candidates, key=lambda cand: cand[1])
    summary.theta, summary.fmin = theta, fmin
    if minima:
        theta, fmin = _leave_boundary(fn, st, summary, progress, fdf, fold)
        if st.structured:
            theta, fmin = _restart_structured(fn, summary, progress)
    if not minima:
        summary.unbounded, summary.converged = True, False
        summary.warnings.append(_unbounded_message(st, local=False))
    elif any(not cand[2] and cand[1] < fmin for cand in candidates):
        summary.warnings.append(_unbounded_message(st, local=True))
    summary.stages.append(f"chosen: {fmin:.10f}" + ("" if minima else " (no start reached a minimum)"))
    return summary


def newton_descent(st: ModelStructure, reml: bool, summary: OptSummary, x: np.ndarray, stage: str,
                   progress=None) -> np.ndarray:
    """Newton's method from a warm start, for heavy models (crossed ones whose evaluations cost
    seconds, and 200k rows or more); the best point reached (where BOBYQA takes over when it
    returns without ``summary.curvature``).

    Each step takes the convergence check's own derivatives (``engine.curvature``: one level at a
    tenth of the usual steps there), whose points share the first term's θ in threes: on the
    MovieLens shape one such step costs ~4 evaluations, and from a tenth of the items' optimum two
    steps reach the minimum that 24 BOBYQA evaluations reach (to 3e-8 of a criterion of 2.6e6),
    the third point's derivatives then serving as the check. On nested models the points are
    evaluated in one batch: the 898k-row classroom model's three steps took 0.95 s of the fit where
    BOBYQA's 42 evaluations and the check took 1.18 s (the criterion within 8e-16 relative). A step that does
    not lower the criterion, a Hessian that is not positive definite, or a parameter reaching its
    bound hands over to BOBYQA from the best point."""
    c = summary.control
    best, fbest = np.array(x, dtype=float), math.inf
    for _ in range(c.newton_iterations):
        curv = curvature(st, x, reml, c)
        summary.evaluations += curv.points
        if not curv.value < fbest:
            break
        best, fbest = np.array(x, dtype=float), curv.value
        if progress is not None:
            progress(summary.evaluations, fbest)
        with np.errstate(all="ignore"):
            decrease, negative, free = newton_decrement(curv, st, c)
        if not np.isfinite(decrease) or len(negative) or not free.all():
            break
        if decrease <= c.newton_descent_tol * max(1.0, abs(fbest)):
            summary.theta, summary.fmin, summary.curvature = best, fbest, curv
            summary.stages.append(f"newton {stage}: {fbest:.10f} (a step would lower it by {decrease:.2g})")
            return best
        step = newton_step(curv, st, c.on_bound)
        if step is None or np.any(step[st.theta_is_diag] <= 0.0):
            break
        x = step
    summary.stages.append(f"newton {stage} stopped at {fbest:.10f}: bobyqa from there")
    return best


def polish(fn, st: ModelStructure, summary: OptSummary, curv, progress=None) -> OptSummary:
    """After the convergence check found the optimiser stopped short: a Newton step from the
    check's derivatives, then the optimiser again from the better point, with small steps."""
    x, f = summary.theta, summary.fmin
    step = newton_step(curv, st, summary.control.on_bound)
    if step is not None:
        fnew = fn(step)  # (the check's derivatives are in the working θ̃, as the optimiser's)
        summary.evaluations += 1
        if fnew < f:
            x, f = step, fnew
        summary.stages.append(f"newton step from the convergence check: {fnew:.10f}")
    before = (x, f)
    minimize_theta(fn, summary, progress, stage="polish", start=x,
                   step=np.maximum(1e-3 * np.abs(x), 1e-4))
    if not summary.fmin < before[1]:
        summary.theta, summary.fmin = before
    return summary


def _restart_structured(fn, summary: OptSummary, progress, rounds: int = 4):
    """BOBYQA again from its optimum, with a fresh small trust region, while that lowers the
    criterion: a correlation near 1 (ar1 over many occasions) puts the optimum at the end of a
    long curved ridge in (SD, ρ), where one run stops ~1e-5 short (BodyWeight's ar1 model:
    1168.18589 against nlme's 1168.18587, the SDs 2e-4 apart)."""
    theta, fmin = summary.theta, summary.fmin
    for _ in range(rounds):
        minimize_theta(fn, summary, progress, stage="again from the optimum (a structured covariance)",
                       start=theta, step=np.maximum(1e-2 * np.abs(theta), 1e-4))
        if not (np.isfinite(summary.fmin) and summary.fmin < fmin - 1e-10 * max(1.0, abs(fmin))):
            break
        theta, fmin = np.array(summary.theta, dtype=float), float(summary.fmin)
    summary.theta, summary.fmin = theta, fmin
    return theta, fmin


def _leave_boundary(fn, st: ModelStructure, summary: OptSummary, progress, fdf, fold):
    """Restart from the boundary's mirror images (``ModelStructure.boundary_mirrors``) of the
    chosen θ̃, which have the same criterion, where stepping off the boundary there lowers it.

    On the mirror the criterion's slope in Λ[j, j] is minus the slope at the chosen point, so
    a chosen point that is a minimum only because of the bound (slope > 0) has a descent
    direction on the other side; one evaluation a step into the interior tells, and only then
    is the optimiser restarted (a genuine boundary optimum has slope 0 and costs nothing more)."""
    theta, fmin = summary.theta, summary.fmin
    c = summary.control
    for mirror, diag in st.boundary_mirrors(theta):
        probe = mirror.copy()
        probe[diag] = c.mirror_probe
        value = fn(probe)
        summary.evaluations += 1
        if not value < fmin - 1e-10 * max(1.0, abs(fmin)):
            continue
        # (a first trust region of at least mirror_step: the probed entry's own, 0.75 × 1e-4,
        # had BOBYQA crawl for 12,000 evaluations on the classroom M15)
        minimize_theta(fn, summary, progress, stage="from the optimum's mirror image across the boundary",
                       start=probe, step=np.maximum(default_step(probe), c.mirror_step), fdf=fdf, fold=fold)
        if np.isfinite(summary.fmin) and summary.fmin < fmin - 1e-10 * max(1.0, abs(fmin)):
            theta, fmin = np.array(summary.theta, dtype=float), float(summary.fmin)
    summary.theta, summary.fmin = theta, fmin
    return theta, fmin


def another_start(fn, summary: OptSummary, first, x0: np.ndarray, progress, fdf=None, fold=None,
                  stage: str | None = None, many=None):
    """The candidate of another start from ``x0``, or None when it is heading for the first's minimum
    (LMMs and a GLMM's first stage alike; ``first`` is the first run's ``candidate``).

    With ``many`` (the criterion at a batch of points, ``batch_devfun``), the straight path
    from ``x0`` to the first minimum is looked at first, at ``descent_path`` fractions of the
    way, in one batch: if the criterion falls at every step along it, nothing separates the
    start from the first minimum and the start is not run (classroom M16 ML: 8 points in one
    batch, ~4 evaluations' time, instead of a run of 90 evaluations).

    The run stops as soon as it comes within ``same_basin`` of the first minimum's criterion
    (most of a run from afar is spent there on digits). If the criterion along the segment
    from that point to the first minimum never rises above its ends, nothing separates the
    two: the run would have descended to the same minimum (classroom M16: 43 evaluations
    instead of 138), and it is abandoned. Otherwise (a ridge between them, or a start whose
    first run found no minimum) it is run to its end as a candidate of its own."""
    c = summary.control
    stage = stage or f"from {c.second_start:g} × the start"
    if not first[2]:
        minimize_theta(fn, summary, progress, stage=stage, start=x0, fdf=fdf, fold=fold)
        return candidate(fn, summary)
    if many is not None and len(c.descent_path) and _descends_to(many, summary, x0, first):
        summary.stages.append(f"{stage}: the criterion falls at every step of the straight path from there "
                              "to the first minimum: the same minimum (not run)")
        return None
    summary.stop_below = first[1] + c.same_basin
    try:
        minimize_theta(fn, summary, progress, stage=stage, start=x0, fdf=fdf, fold=fold)
    finally:
        summary.stop_below = -math.inf
    if summary.status != "stopval":
        return candidate(fn, summary)
    x, f = np.array(summary.theta, dtype=float), float(summary.fmin)
    ends = max(f, first[1]) + 1e-10 * max(1.0, abs(f))
    between = [fn(first[0] + w * (x - first[0])) for w in c.segment_probes]
    summary.evaluations += len(between)
    if all(v <= ends for v in between):
        summary.stages.append(f"that run came within {c.same_basin:g} of the first minimum with nothing between "
                              "them: the same minimum")
        return None
    summary.stages.append("a ridge separates that point from the first minimum: run on")
    minimize_theta(fn, summary, progress, stage="on from there", start=x, fdf=fdf, fold=fold)
    return candidate(fn, summary)


def _descends_to(many, summary: OptSummary, x0: np.ndarray, first) -> bool:
    """Does the criterion fall at every step from ``x0`` along the straight path to the first
    minimum (``control.descent_path``), the last step into the minimum included?"""
    fractions = np.asarray(summary.control.descent_path, dtype=float)
    values = many(x0[None, :] + fractions[:, None] * (first[0] - x0)[None, :])
    summary.evaluations += len(fractions)
    path = np.append(values, first[1])
    slack = 1e-10 * max(1.0, abs(first[1]))
    return bool(np.all(np.isfinite(values)) and np.all(np.diff(path) <= slack))


def candidate(fn, summary: OptSummary):
    """(θ̃, criterion, is a minimum) of the summary's last start (see decreases_along_ray)."""
    is_minimum = not decreases_along_ray(fn, summary.theta, summary.fmin, summary.control.ray_slack)
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
    return prone_to_local_minima(st, summary.theta, summary.control)


def prone_to_local_minima(st: ModelStructure, theta_w: np.ndarray, control: Control = DEFAULT) -> bool:
    """The restart rule of LMMs and GLMMs alike: a first run that ended on the boundary, or a
    grouping factor with fewer than ``few_levels`` levels, often has a better minimum elsewhere."""
    on_boundary = bool(np.any(np.asarray(theta_w)[st.theta_is_diag] == 0.0))
    return on_boundary or min(t.n_levels for t in st.terms) < control.few_levels


def reproduces_response(frame: ModelFrame, max_entries: int) -> bool:
    """Whether the fixed and random effects together reproduce y exactly (y in the span of [X, Z],
    by least squares, fewer independent columns than rows): then as every variance grows r² → 0
    faster than log|L|² grows, and the likelihood has no maximum. False where n × (p + q) is
    beyond ``max_entries`` (not checked)."""
    n, p = frame.X.shape
    widths = [t.n_levels * t.k for t in frame.terms]
    if n * (p + sum(widths)) > max_entries:
        return False
    a = np.zeros((n, p + sum(widths)))
    a[:, :p] = frame.X
    rows, at = np.arange(n), p
    for t, width in zip(frame.terms, widths):
        for j in range(t.k):
            a[rows, at + t.codes * t.k + j] = t.z[:, j]
        at += width
    y = np.asarray(frame.y, dtype=float)
    solution, _, rank, _ = np.linalg.lstsq(a, y, rcond=None)
    residual = float(np.linalg.norm(y - a @ solution))
    return rank < n and residual <= 1e-9 * max(float(np.linalg.norm(y)), 1e-300)


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


def warm_start(st: ModelStructure, reml: bool, control: Control = DEFAULT):
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
    if outer.n_levels < 50 or st.xy is None:  # (a structure from sums has no rows to subsample)
        return None
    rng = np.random.default_rng(control.seed)  # fixed: the same data always give the same fit
    chosen = rng.random(outer.n_levels) < control.warm_start_fraction
    rows = chosen[outer.codes]
    if rows.sum() < 1000:
        return None
    sub = st.subset(rows)
    opt = minimize_theta(devfun(sub, reml), OptSummary(start=sub.theta_start, lower=sub.theta_lower, upper=sub.theta_upper, control=control))
    if not (opt.converged and np.all(np.isfinite(opt.theta))):
        return None
    return opt.theta, opt.evaluations


class Model:
    """A model frame with its θ-free structure, ready to be fitted by REML or ML (and refitted).

    ``frame`` (``ModelFrame``) and ``structure`` (``ModelStructure``) are built once;
    ``fit`` runs the criterion, the optimiser and the result stages with the settings of
    ``control`` (``control.Control``; the result's ``optsummary.control``).
    """

    def __init__(self, frame: ModelFrame, control: Control = DEFAULT, structure: ModelStructure | None = None):
        """``structure``: one already built (from a dataset's sums, ``distributed.py``), else the frame's."""
        self.frame = frame
        self.control = control
        self.structure = structure if structure is not None else build_structure(frame)

    def criterion(self, theta_w: np.ndarray, reml: bool) -> float:
        """The criterion at a working θ̃ (what the optimiser sees)."""
        return criterion_working(self.structure, theta_w, reml)

    def fit(self, reml: bool = True, start: np.ndarray | None = None, progress: Progress | None = None) -> LmmResult:
        """Fit by REML or ML, from lme4's θ ``start`` if given."""
        st = self.structure
        start_w = None if start is None else st.to_working(np.maximum(np.asarray(start, float), st.theta_lower))
        fn = lambda th: self.criterion(th, reml)
        opt = optimize(fn, st, reml, start_w, progress, control=self.control)
        result = self.result(opt, reml)
        for _ in range(self.control.polish_rounds):
            if result.curvature is None or not stopped_short(result.warnings):
                break
            polish(fn, st, opt, result.curvature, progress)
            # (the result is computed by the optimiser's own path at its θ̃: a polished point it found
            # finite is one the fit can report; at the user's θ an unbounded likelihood's variances
            # past 1e7 once gave σ = NaN there)
            result = self.result(opt, reml)
        return result

    def result(self, opt: OptSummary, reml: bool) -> LmmResult:
        """The fitted model at the optimiser's θ̃, reported in lme4's θ, with its optimum checked
        (``engine.curvature``)."""
        st = self.structure
        # (at the optimiser's θ̃, by its own path: the criterion reported is the one it minimised —
        # at the user's θ the same numbers differ by rounding, which where a variance runs away to
        # 1e5 on a response the random effects reproduce exactly was 115 in the criterion)
        fac = evaluate_working(st, opt.theta, full=False)
        c = opt.control
        if (not opt.unbounded and fac.ok and fac.pwrss < c.exact_fit * float(st.xtx[-1, -1])
                and reproduces_response(self.frame, c.exact_fit_entries)):
            # (the optimiser stopped where the criterion is at the limit of double precision, believing
            # it a minimum or stopped short of one: it has none)
            opt.unbounded, opt.converged = True, False
            opt.warnings.append(_unbounded_message(st, local=False))
        curv, problems = None, []
        if opt.converged and np.isfinite(opt.fmin) and fac.ok:
            done = opt.curvature
            curv = done if done is not None and np.array_equal(done.theta, opt.theta) else curvature(
                st, opt.theta, reml, opt.control)
            problems = check(curv, st, opt.fmin, opt.control)
        return build_result(self.frame, st, fac, opt, reml, curv, problems)

    def result_at(self, theta: np.ndarray, reml: bool = True) -> LmmResult:
        """The fitted-model quantities at a given θ, without optimising (for references and profiles)."""
        st = self.structure
        theta = np.asarray(theta, dtype=float)
        fac = evaluate(st, theta)
        theta_w = st.to_working(theta)
        opt = OptSummary(start=theta_w, lower=st.theta_lower, upper=st.theta_upper, theta=theta_w, fmin=fac.criterion(reml),
                         control=self.control)
        opt.stages.append("evaluated at a given theta, not optimised")
        return build_result(self.frame, st, fac, opt, reml)


def fit_dispersion(frame: ModelFrame, reml: bool = True, control: Control = DEFAULT, progress: Progress | None = None):
    """A linear mixed model with a residual SD per level of ``frame.dispersion`` (nlme's
    ``varIdent``, glmmTMB's ``dispformula = ~ f``): Var(εᵢ) = (σ δ_f(i))², δ of the first level 1.

    The δ's enter as prior weights wᵢ = 1/δ_f(i)² (lmer's weights: the criterion of the weighted
    model is the model's, −Σ log wᵢ included), so the criterion profiled over θ, β and σ is a
    function of log δ alone: BOBYQA minimises it over log δ (one per level but the first), each
    evaluation the fit's own optimiser over θ̃ warm-started from the last (the working θ̃ is in the
    basis of the unweighted columns, the same for every δ). The result is the weighted fit at the
    best δ, its npar counting the δ's; its SEs and Satterthwaite df are given the δ's, as nlme's
    Var(β̂) is given the variance parameters."""
    from .results import Dispersion

    gf = frame.dispersion
    r_code = gf.to_r[gf.codes]  # each row's level in R's order: the first is the reference
    k = gf.n_levels - 1
    state = {"theta_w": None}

    def weighted(log_delta: np.ndarray) -> ModelFrame:
        full = np.concatenate([[0.0], log_delta])
        return replace(frame, weights=np.exp(-2.0 * full[r_code]))

    def profiled(log_delta: np.ndarray) -> float:
        st = build_structure(weighted(log_delta))
        opt = optimize(devfun(st, reml), st, reml, state["theta_w"], control=control)
        if np.isfinite(opt.fmin) and opt.converged:
            state["theta_w"] = np.array(opt.theta, dtype=float)
        return float(opt.fmin)

    outer = OptSummary(start=np.zeros(k), lower=np.full(k, -np.inf), initial_step=np.full(k, 0.5), control=control)
    log_delta, _, _ = run(outer, profiled)
    best = weighted(np.asarray(log_delta, dtype=float))
    model = Model(best, control)
    start = None if state["theta_w"] is None else model.structure.to_user(state["theta_w"])
    result = model.fit(reml=reml, start=start, progress=progress)
    ratio = np.exp(np.concatenate([[0.0], log_delta]))
    result.npar += k
    result.dispformula = Dispersion(f"~ {gf.name}", gf.name, gf.labels(), ratio, float(result.sigma) * ratio)
    if not outer.converged:
        result.converged = False
        result.warnings.append(f"the residual SDs by {gf.name} did not converge ({outer.status})")
    return result
