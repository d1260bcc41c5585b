"""The GLMM model stage: lme4's glmer in its named steps, on the same structure and optimiser as lmer.

    frame      ``frame.model_frame(table, formula, family, weights)``   glFormula
    structure  ``model.build_structure(frame)``                         mkReTrms + the θ-free layout
    criterion  ``GlmmModel.devfun0`` / ``devfun``                        mkGlmerDevfun (PIRLS + Laplace/AGQ)
    optimiser  ``GlmmModel.optimize``                                   optimizeGlmer, two stages
    result     ``GlmmModel.result``                                      mkMerMod

lme4's two stages: first θ alone, with β updated inside PIRLS (nAGQ = 0);
then (θ, β) jointly with only u in PIRLS (nAGQ ≥ 1), from the first stage's
estimates. Both stages use mixcli's optimiser (BOBYQA with lme4's boundary
care) in unit-free parameters: θ̃ for the standardised random-effect columns,
and β measured from the first stage's estimate in units of its standard
error. The standard errors reported are lme4's: from the Hessian of the
deviance in (θ, β) at the optimum (``vcov(m)``, ``use.hessian = TRUE``).

Where the Laplace deviance's gradient in β is analytic (the canonical links, logit and log:
``engine.laplace_gradient``) that Hessian takes β's rows from the gradient's differences, and
the second stage is Newton's method with it (``_newton_stage``): from the first stage's
optimum two or three steps reach the optimum that BOBYQA approaches in ~80 evaluations, and
the last step's Hessian is the standard errors'. BOBYQA takes over wherever a step fails
(a variance reaching its bound, a Hessian that is not positive definite).

Families with a dispersion. mixcli's criterion for every family is glmer's Laplace deviance:
the family's −2 log f at the conditional modes of PIRLS's penalised deviance, plus ‖û‖² and
log|L|² with L the factor at the expected-information weights w (dμ/dη)²/V(μ). For the
negative binomial (NB2, V = μ + μ²/k) that is the criterion glmer.nb minimises, by
alternating glmer fits at fixed k with a 1-D search over k; mixcli minimises it in
(θ, β, log k) jointly (the second stage, from k's best value at the first stage's
estimate), so its optimum is glmer.nb's or lower by glmer.nb's own criterion. glmmTMB
maximises another approximation (the exact log-density and its observed Hessian in u),
whose optimum differs: 0.002–0.75 in −2 logLik on real data, worse by either package's
criterion at the other's optimum. mixcli follows glmer.nb because the criterion is the one
its engine computes for binomial and Poisson (one implementation, PIRLS unchanged: a family
is a variance, a deviance and an aic), because glmer.nb's users compare against it, and
because its objective agrees with the same family's fits at fixed k (``glmer(family =
negative.binomial(k))``), so a likelihood-ratio test against a Poisson fit, which is the
k → ∞ limit, compares one criterion. The standard errors are glmer.nb's: the Hessian in
(θ, β) with k held at its estimate. For Gamma, glmer's criterion has no free dispersion (R's
``Gamma()$aic`` takes it as deviance / n), and its scale is lme4's sigma(); mixcli matches
glmer there too (glmmTMB's maximum-likelihood Gamma differs by 26–50 in −2 logLik on the
reference data: see the README).

NB1 (``nbinom1``, glmmTMB's: size μ/φ, V = μ(1 + φ)) has no glmer counterpart, so mixcli computes
glmmTMB's criterion for it: the exact −2 log f at the conditional modes of the exact penalised
−2 log f, plus ‖û‖² and log|L|² with L the factor at the observed information of −log f in η
(``Family.observed_information``; PIRLS takes Newton's steps). glmer's expected-information
criterion applied to NB1 (not an exponential family in μ: its deviance is not PIRLS's quadratic
model) would be a third approximation that no package reports, and nothing to check against;
glmmTMB's also agrees with mixcli's Poisson fits in the limit φ → 0 (the log link is canonical:
the observed and expected information are equal), so a comparison with a Poisson fit compares
one criterion. φ joins the second stage as log φ, on NB2's path; the standard errors are
glmmTMB's, from the Hessian in (θ, β, log φ) (``hessian``), where NB2's hold k as glmer.nb's do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar, NamedTuple

import numpy as np

from .control import DEFAULT, Control
from .engine import laplace_gradient
from .engine.agq import MAX_NODES, agq_deviance
from .engine.derivatives import gradient_hessian, jacobian
from .engine.glmm_criterion import GlmmCriterion, with_log_dispersion
from .engine.linalg import whitening
from .engine.optimize import OptSummary, minimize_theta
from .engine.pirls import SHORTCUT_FAMILIES, GlmmData, Modes, glm_start, laplace, pirls
from .errors import FitError, UsageError, option
from .family import DISPERSION_STEP
from .frame import ModelFrame
from .inference.distributions import norm_cdf
from .model import another_start, build_structure, candidate, prone_to_local_minima
from .results import Correlation, FitStatistics, FixedEffect, VarComp, theta_names, variance_components
from .singular import is_singular, singular_fit_warnings

Progress = Callable[[int, float], None]
# (the stages' tolerances, steps and the separation limit are settings of ``control.Control``)


def check_nagq(frame: ModelFrame, nagq: int):
    """lme4's rules for nAGQ: 0, 1, or up to 25 for a single scalar random-effects term; the
    Laplace approximation (and nAGQ = 0 for Gamma) for the families with a dispersion."""
    if nagq < 0 or nagq > MAX_NODES:
        raise UsageError(f"{option('nagq')} must be between 0 and {MAX_NODES} (as glmer allows), not {nagq}")
    fam = frame.family
    if nagq > 1 and fam.name in ("nbinom2", "nbinom1", "Gamma"):
        # (the quadrature's deviance leaves out the saturated log-likelihood, as lme4's glmerAGQ
        # does: for these families it depends on the dispersion, so the criteria of different
        # dispersions would not be comparable)
        raise UsageError(f"{option('nagq', nagq)}: the {fam.name} family is fitted by the Laplace approximation "
                         f"only; use {option('nagq', 1)}")
    if nagq == 0 and fam.free_dispersion:
        raise UsageError(f"{option('nagq', 0)}: the {fam.name} family's dispersion {fam.dispersion_symbol} is "
                         f"estimated with the Laplace approximation; use {option('nagq', 1)}")
    if nagq > 1:
        if len(frame.terms) != 1:
            raise UsageError(
                f"{option('nagq', nagq)}: adaptive Gauss-Hermite quadrature needs a single random-effects term "
                f"(this model has {len(frame.terms)}): the integral only factorises over the groups of one "
                f"factor; use {option('nagq', 1)} (the Laplace approximation)")
        if frame.terms[0].k != 1:
            raise UsageError(
                f"{option('nagq', nagq)}: adaptive Gauss-Hermite quadrature needs a scalar random-effects term, one "
                f"effect per group; ({' + '.join(frame.terms[0].names)} | {frame.terms[0].factor}) has "
                f"{frame.terms[0].k}; use {option('nagq', 1)} (the Laplace approximation)")


DISPERSION_HESSIAN_STEP = 0.01  # log φ's step in the Hessian's differences (NB1)


def initial_dispersion(st, x, y, wt, offset, fam, control: Control) -> float:
    """A start for NB2's k: the moment estimate Σ w μ² / Σ w ((y − μ)² − μ) at the Poisson GLM
    of the fixed effects (which leaves the groups' variation in the residuals, so k is small:
    the fit's first stages correct it); 1 where the data look no more dispersed than Poisson.
    NB1's φ likewise: Σ w ((y − μ)² − μ) / Σ w μ, 1 where that is not positive."""
    from .family import Family

    poisson = GlmmData(st, x, y, wt, offset, Family("poisson", fam.link), control=control)
    with np.errstate(all="ignore"):
        mu = fam.link.linkinv(offset + x @ glm_start(poisson))
        excess = float(np.sum(wt * ((y - mu) ** 2 - mu)))
        if fam.name == "nbinom1":
            k = excess / float(np.sum(wt * mu)) if excess > 0 else 1.0
        else:
            k = float(np.sum(wt * mu * mu)) / excess if excess > 0 else 1.0
    return min(max(k, 1e-3), 1e6) if math.isfinite(k) else 1.0


class GlmmModel:
    """A GLMM's frame, structure and data, ready to be fitted (``fit``) with the settings of
    ``control`` (``control.Control``; the result's ``optsummary.control``)."""

    def __init__(self, frame: ModelFrame, control: Control = DEFAULT):
        self.frame = frame
        self.control = control
        self.structure = build_structure(frame, response=False)
        n = frame.n
        fam = frame.family
        wt = frame.weights if frame.weights is not None else np.ones(n)
        offset = frame.offset if frame.offset is not None else np.zeros(n)
        if fam.free_dispersion and fam.k is None:
            fam = fam.with_dispersion(initial_dispersion(self.structure, frame.X, frame.y, wt, offset, fam, control))
        self.data = GlmmData(self.structure, frame.X, frame.y, wt, offset, fam, control=control)
        # PIRLS's warm starts and its failures over the optimisers' and the Hessian's evaluations
        self.criterion = GlmmCriterion(self.data)

    # ------------------------------------------------------------------ the dispersion
    @property
    def free_dispersion(self) -> bool:
        """Whether k (NB2) or φ (NB1) is estimated with θ and β."""
        return self.data.family.free_dispersion

    def set_dispersion(self, k: float):
        """Evaluate the criteria at the dispersion k (NB2) or φ (NB1) from now on (PIRLS's warm starts
        are kept)."""
        self.criterion.set_dispersion(k)
        self.data = self.criterion.data

    # ------------------------------------------------------------------ criteria
    def devfun0(self) -> Callable[[np.ndarray], float]:
        """The nAGQ = 0 criterion: θ̃ alone, β updated in PIRLS."""
        def fn(theta_w):
            return self.criterion.value(theta_w, None, 0)[0]
        return fn

    def devfun(self, nagq: int, beta0: np.ndarray, basis: np.ndarray) -> Callable[[np.ndarray], float]:
        """The nAGQ ≥ 1 criterion of (θ̃, δ), β = beta0 + basis·δ, u in PIRLS."""
        k = self.structure.n_theta

        def fn(par):
            return self.criterion.value(par[:k], beta0 + basis @ par[k:], nagq)[0]
        return fn

    # ------------------------------------------------------------------ optimiser
    def fit(self, nagq: int = 1, progress: Progress | None = None) -> "GlmmResult":
        check_nagq(self.frame, nagq)
        st, c = self.structure, self.control
        tol0 = dict(ftol_rel=c.stage0_ftol_rel, ftol_abs=c.stage0_ftol_abs, xtol_abs=c.stage0_xtol_abs) if nagq else {}
        theta_start = st.theta_start * self._theta_scale()
        stage0 = OptSummary(start=theta_start, lower=st.theta_lower, control=c, **tol0)
        fn0 = self.devfun0()
        minimize_theta(fn0, stage0, progress, stage="from start (nAGQ = 0: β in PIRLS)")
        if self._worth_more_starts(stage0):
            # Criteria on the boundary or with few groups often have several local minima (as
            # for LMMs, model.optimize); a GLMM's first stage is cheap: try a small and a large
            # start, each abandoned when it heads for the first's minimum (model.another_start).
            first = candidate(fn0, stage0)
            best = first[:2]
            for factor in (c.small_start, c.second_start):
                other = another_start(fn0, stage0, first, factor * theta_start, progress,
                                      stage=f"from {factor:g} × the start (nAGQ = 0)")
                if other is not None and other[1] < best[1]:
                    best = other[:2]
            stage0.theta, stage0.fmin = best
            stage0.stages.append(f"chosen: {best[1]:.10f}")
        if not math.isfinite(stage0.fmin):
            raise FitError(
                f"the likelihood could not be computed at any of the {stage0.evaluations} parameter values "
                f"tried (PIRLS failed at every one; largest response {float(np.max(np.abs(self.frame.y))):.6g}): "
                "check the response and predictors for extreme values, or simplify the model")
        theta0 = stage0.theta
        m0 = self.criterion.modes(theta0, None)
        beta0 = m0.beta
        rx_vcov = m0.factor.rx_inverse() if len(beta0) else None
        if nagq == 0:
            return self.result(theta0, beta0, stage0, nagq, rx_vcov)
        k = st.n_theta
        # β is searched as β₀ + Bδ, B a Cholesky factor of the first stage's Var(β̂): δ is uncorrelated
        # and unit-free, so an uncentred predictor (whose slope and the intercept are correlated
        # 0.99999) gives the optimiser the same round problem as a centred one
        basis = whitening(rx_vcov) if len(beta0) else np.zeros((0, 0))
        fn = self.devfun(nagq, beta0, basis)
        lower = np.concatenate([st.theta_lower, np.full(len(beta0), -np.inf)])
        start = np.concatenate([theta0, np.zeros(len(beta0))])
        step = np.concatenate([np.maximum(0.1 * np.abs(theta0), 0.05 * theta_scale(theta0)), np.full(len(beta0), c.step_beta)])
        what = "θ and β"
        if self.free_dispersion:
            # NB2's k (NB1's φ) joins the second stage as log k (unbounded), from its best value at the first
            # stage's (θ, β): the Laplace deviance is then minimised in (θ, β, k) jointly, the
            # criterion glmer.nb minimises by alternating (see ``fit_dispersion``)
            logk = self._best_log_dispersion(theta0, beta0, nagq, stage0)
            fn = self._with_log_dispersion(fn)
            lower = np.append(lower, -np.inf)
            start = np.append(start, logk)
            step = np.append(step, DISPERSION_STEP)
            what = "θ, β and log k"
        stage1 = OptSummary(start=start, lower=lower, initial_step=step, ftol_rel=c.stage1_ftol_rel,
                            ftol_abs=c.stage1_ftol_abs, xtol_abs=c.stage1_xtol_abs, control=c)
        stage1.evaluations = stage0.evaluations
        stage1.stages = list(stage0.stages)
        if (len(beta0) and c.newton_iterations and laplace_gradient.available(self.data, nagq)
                and not self._on_bound(theta0).any()):
            theta_n, beta_n, curv = self._newton_stage(theta0, beta0, stage1, progress)
            if curv is not None:
                return self.result(theta_n, beta_n, stage1, nagq, rx_vcov, curvature=curv)
            # (BOBYQA from the best point Newton's steps reached, in the first stage's coordinates)
            fn = self.devfun(nagq, beta_n, basis)
            stage1.start = np.concatenate([theta_n, np.zeros(len(beta0))])
            beta0 = beta_n
        minimize_theta(fn, stage1, progress, stage=f"from the first stage (nAGQ = {nagq}: {what})")
        if not math.isfinite(stage1.fmin):
            # (a table of NaN estimates under an infinite −2 log L, printed with exit 0, told the user
            # less than this line: 4 rows whose outcomes the first stage predicted exactly)
            first = ("the first stage predicted every outcome exactly: separation" if stage0.fmin < 1e-8 else
                     f"the first stage's deviance was {stage0.fmin:.6g}")
            raise FitError(
                f"the likelihood with {option('nagq', nagq)} could not be computed at any of the "
                f"{stage1.evaluations - stage0.evaluations} parameter values tried from the first stage's estimate "
                f"(PIRLS failed at every one; {first}): simplify the model, or check the data for separation and "
                "extreme values")
        par = stage1.theta
        if self.free_dispersion:
            self.set_dispersion(math.exp(par[-1]))
            par = par[:-1]
        return self.result(par[:k], beta0 + basis @ par[k:], stage1, nagq, rx_vcov)

    def _on_bound(self, theta_w: np.ndarray) -> np.ndarray:
        """Which θ̃ are a variance on its bound, 0 (the deviance is even there, flat to second order)."""
        return self.structure.theta_is_diag & (np.abs(theta_w) < self.control.on_bound)

    def _newton_stage(self, theta_w: np.ndarray, beta: np.ndarray, summary: OptSummary, progress=None):
        """The second stage by Newton's method from the first's optimum, where the Laplace deviance's
        gradient in β is analytic (``engine.laplace_gradient``): each step takes the Hessian the
        standard errors need anyway (``hessian``, ~25 evaluations on VerbAgg), and from nAGQ = 0's
        optimum two steps reach the Laplace optimum (quadratic convergence: gᵀH⁻¹g 0.37, 1e-3,
        5e-8 on VerbAgg), where BOBYQA takes 78 evaluations and the Hessian 25 more.

        Returns (θ̃, β, curvature): the curvature where gᵀH⁻¹g ≤ ``glmm_newton_tol`` there (the
        result reuses it, and its Newton step finishes the estimate); else None with the best point
        reached, where BOBYQA takes over — after a step that does not lower the deviance, a
        Hessian that is not positive definite, or a variance at or stepping across its bound."""
        c, st = self.control, self.structure
        k = st.n_theta
        best = (theta_w, beta, math.inf)
        decrement = math.inf
        for _ in range(c.newton_iterations):
            if self._on_bound(theta_w).any():
                break
            runs = self.criterion.runs
            # (a rough Hessian for a step far from the optimum; the standard errors' where quadratic
            # convergence from the last decrement makes this point the last, and where a rough one says so)
            curv = self.hessian(theta_w, beta, 1, rough=decrement >= c.glmm_newton_precise)
            summary.evaluations += self.criterion.runs - runs
            if curv is None or not curv.value < best[2] or not np.all(np.isfinite(curv.h)):
                break
            best = (theta_w, beta, curv.value)
            if progress is not None:
                progress(summary.evaluations, curv.value)
            rough = decrement >= c.glmm_newton_precise
            step = newton_direction(curv.h, curv.grad)
            if step is None:
                break
            decrement = -float(curv.grad @ step)
            if decrement <= c.glmm_newton_tol and rough:
                runs = self.criterion.runs
                curv = self.hessian(theta_w, beta, 1)
                summary.evaluations += self.criterion.runs - runs
                step = newton_direction(curv.h, curv.grad)
                if step is None:
                    break
                decrement = -float(curv.grad @ step)
            if not math.isfinite(decrement):
                break
            if decrement <= c.glmm_newton_tol:
                summary.theta = np.concatenate([theta_w, np.zeros(len(beta))])
                summary.fmin = curv.value
                summary.converged = True
                summary.stages.append(f"newton from the first stage (nAGQ = 1: θ and β): {curv.value:.10f} "
                                      f"(gᵀH⁻¹g {decrement:.2g})")
                return theta_w, beta, curv
            theta_new = theta_w + step[:k]
            if np.any(st.theta_is_diag & (theta_new <= 0.0)) or np.any(theta_new < st.theta_lower):
                break
            theta_w, beta = theta_new, beta + curv.basis @ step[k:]
        summary.stages.append(f"newton from the first stage stopped at {best[2]:.10f}: bobyqa from there"
                              if math.isfinite(best[2]) else "newton from the first stage: no Hessian, bobyqa")
        return best[0], best[1], None

    def _gamma_scale(self, m: Modes) -> float:
        """lme4's sigma() of a Gamma fit: √((Σ Pearson residuals² + ‖û‖²) / n) (mkMerMod's
        pwrss / n, its weighted residuals being Pearson's)."""
        data = self.data
        with np.errstate(over="ignore", divide="ignore"):
            pearson = float(np.sum(data.wt * (data.y - m.mu) ** 2 / data.family.variance(m.mu)))
        return math.sqrt((pearson + m.usq) / self.frame.n)

    def _theta_scale(self) -> float:
        """The scale of the first start of θ: 1 (glmer's) for binomial, Poisson and NB2, whose
        links put η on a scale of units; for Gamma the spread of y on the link's scale,
        |g′(ȳ)| SD(y): with the inverse link η ≈ 1/y is ~0.004 for reaction times in ms, and a
        start of θ = 1 (random effects of ±1 on that scale) leaves μ = 1/η no valid value
        (sleepstudy: glmer's start ends 41 above the optimum)."""
        data = self.data
        if data.family.name != "Gamma":
            return 1.0
        ybar = float(np.sum(data.wt * data.y) / np.sum(data.wt))
        spread = float(np.sqrt(np.sum(data.wt * (data.y - ybar) ** 2) / np.sum(data.wt)))
        link = data.family.link
        slope = 1.0 / abs(float(link.mu_eta(link.linkfun(np.array([ybar])))[0]))  # |dη/dμ| at ȳ
        scale = slope * spread
        return scale if math.isfinite(scale) and scale > 0 else 1.0

    def _with_log_dispersion(self, fn: Callable[[np.ndarray], float]) -> Callable[[np.ndarray], float]:
        """``fn`` of (θ̃, δ) as a function of (θ̃, δ, log k)."""
        return with_log_dispersion(fn, self.set_dispersion)

    def _best_log_dispersion(self, theta_w: np.ndarray, beta: np.ndarray, nagq: int, summary: OptSummary) -> float:
        """log k (NB1: log φ) minimising the Laplace deviance at (θ̃, β), from the current value (a 1-D
        BOBYQA)."""
        c = self.control

        def fn(x):
            return self._with_log_dispersion(lambda _: self.criterion.value(theta_w, beta, nagq)[0])(x)

        search = OptSummary(start=np.array([math.log(self.data.family.k)]), lower=np.array([-np.inf]),
                            initial_step=np.array([1.0]), ftol_abs=c.stage1_ftol_abs, ftol_rel=c.stage1_ftol_rel,
                            xtol_abs=1e-6, control=c)
        minimize_theta(fn, search, None, stage="log k at the first stage's θ and β")
        summary.evaluations += search.evaluations
        summary.stages.extend(search.stages)
        logk = float(search.theta[0]) if math.isfinite(search.fmin) else math.log(self.data.family.k)
        self.set_dispersion(math.exp(logk))
        return logk

    def hessian(self, theta_w: np.ndarray, beta: np.ndarray, nagq: int = 1, rough: bool = False) -> "Curvature | None":
        """(H, B, g, f): the Hessian of the deviance in (θ̃, ζ), β = β + Bζ, at (θ̃, β), its gradient
        and its value there (None without β).

        H is taken by central differences with one Richardson extrapolation (which matters where the
        likelihood is flat: a large group SD on few rows) in coordinates where it is well
        conditioned: the unit-free θ̃, and ζ, B a Cholesky factor of PIRLS's Var(β̂) given θ (from
        R_X). There the β block of H is ≈ 2I, so steps of a twentieth of a unit change the deviance
        by ~0.0025 whatever the predictors' units or origins. Where the Laplace term moves with β
        (a large variance, near-separation), the β block is far from 2I: B is then refined with
        that block and H taken again. Differences in β itself, or in β scaled by its marginal
        standard errors, break down when a predictor is far from zero: a step of one marginal SE
        then runs along the intercept-slope ridge for thousands of conditional SEs.

        For NB1 (glmmTMB's criterion, whose standard errors come from the Hessian in all its
        parameters) log φ is a last coordinate of H, from the current φ: glmer.nb's k is held.

        ``rough``: a Hessian for a Newton step that is not the last (``_newton_stage``; the canonical
        links), with forward differences of the gradient in ζ."""
        beta = np.asarray(beta, dtype=float)
        p, k = len(beta), self.structure.n_theta
        if not p:
            return None
        m0 = pirls(self.data, theta_w, None, beta0=beta)
        basis = whitening(m0.factor.rx_inverse())
        with_phi = self.data.family.observed_information
        phi = self.data.family.k
        par = np.concatenate([theta_w, np.zeros(p)] + ([[math.log(phi)]] if with_phi else []))
        steps = np.concatenate([np.maximum(1e-2 * np.abs(theta_w), 1e-3 * theta_scale(theta_w)), np.full(p, self.control.hessian_step)]
                               + ([[DISPERSION_HESSIAN_STEP]] if with_phi else []))
        pair_tol = self.control.hessian_pair_tol if self.data.family.name in SHORTCUT_FAMILIES else None
        analytic = laplace_gradient.available(self.data, nagq)
        for refine in (True, False):
            if analytic:
                h, g, f0 = self._hessian_from_gradient(theta_w, beta, basis, steps[:k], pair_tol, rough)
            else:
                fn = self.devfun(nagq, beta, basis)
                if with_phi:
                    fn = self._with_log_dispersion(fn)
                try:
                    with np.errstate(invalid="ignore"):  # (PIRLS failing at a step gives inf: H is then not finite)
                        f0, g, h = gradient_hessian(lambda x: np.array([fn(x)]), par, levels=2, steps=steps,
                                                    pair_tol=pair_tol)
                finally:
                    if with_phi:
                        self.set_dispersion(phi)
                h, g, f0 = h[0], g[0], float(f0[0])
            h = 0.5 * (h + h.T)
            block = 0.5 * h[k:k + p, k:k + p]  # ≈ I when B whitens β
            if not refine or not np.all(np.isfinite(block)):
                break
            vals = np.linalg.eigvalsh(block)
            if vals[0] <= 0 or (vals[0] > 0.5 and vals[-1] < 2.0):
                break
            # (only when H is taken again with it: H and B are returned as a pair)
            basis = basis @ whitening(np.linalg.inv(block))
        return Curvature(h, basis, g, f0)

    def _hessian_from_gradient(self, theta_w, beta, basis, theta_steps, pair_tol, rough: bool = False):
        """(H, g, f) in (θ̃, ζ) as ``hessian`` defines them, with ζ's rows from differences of the
        Laplace deviance's analytic gradient (``engine.laplace_gradient``): the θ̃θ̃ block from the
        deviance's differences in θ̃ alone, the θ̃ζ block from the gradient's along θ̃ (at the same
        points), the ζζ block from the gradient's along ζ (one level: the gradient's differences carry
        no rounding noise to amplify). On VerbAgg's 2 θ and 6 β, 23 PIRLS runs instead of 115;
        ``rough`` (see ``hessian``), 17."""
        p = len(beta)

        def value_and_gradient(theta, zeta):
            value, m = self.criterion.value(theta, beta + basis @ zeta, 1)
            if not (math.isfinite(value) and m.converged):
                return np.full(p + 1, math.nan)
            return np.concatenate([[value], basis.T @ laplace_gradient.beta_gradient(self.data, m)])

        zero = np.zeros(p)
        with np.errstate(invalid="ignore"):  # (PIRLS failing at a step gives NaN: H is then not finite)
            # (two levels in θ̃ even for a rough Hessian: the step needs θ̃'s gradient, whose one-level
            # truncation error left VerbAgg's second step at gᵀH⁻¹g 3e-6 instead of 5e-8)
            f0, gt, ht = gradient_hessian(lambda t: value_and_gradient(t, zero), theta_w, levels=2,
                                          steps=theta_steps, pair_tol=pair_tol)
            step = self.control.hessian_gradient_step
            if rough:  # (forward differences from the centre's gradient)
                gz = np.column_stack([(value_and_gradient(theta_w, step * e)[1:] - f0[1:]) / step
                                      for e in np.eye(p)])
            else:
                gz = jacobian(lambda z: value_and_gradient(theta_w, z)[1:], zero, levels=1, steps=np.full(p, step))
        cross = gt[1:]  # ∂g_ζ/∂θ̃, (p, k)
        h = np.block([[ht[0], cross.T], [cross, gz]])
        return h, np.concatenate([gt[0], f0[1:]]), float(f0[0])

    def _newton_step(self, theta_w, beta, value: float, hb, free: np.ndarray, nagq: int):
        """(θ̃, β, modes, criterion) one Newton step from the optimiser's estimate, with the
        gradient and Hessian the standard errors are computed from anyway, where that lowers the
        criterion; else None. BOBYQA stops on its tolerances with the gradient not quite zero
        (a shifted predictor's slope moved by 6e-5 SE with PIRLS's rounding); the step takes the
        estimate to the optimum's precision for one evaluation. Parameters on their bound and
        a Hessian that is not positive definite on the rest are left alone."""
        h, basis, grad = hb[:3]
        k, p = self.structure.n_theta, basis.shape[1]
        if not (np.all(np.isfinite(h)) and np.all(np.isfinite(grad))):
            return None
        step = newton_direction(h[np.ix_(free, free)], grad[free])
        if step is None:
            return None
        delta = np.zeros(len(free))
        delta[free] = step
        theta_new = theta_w + delta[:k]
        if np.any(theta_new < self.structure.theta_lower):
            return None
        beta_new = beta + basis @ delta[k:k + p]
        phi = self.data.family.k
        if len(delta) > k + p:  # (NB1's log φ)
            self.set_dispersion(phi * math.exp(delta[-1]))
        new_value, m = self.criterion.value(theta_new, beta_new, nagq)
        if not (m.converged and new_value < value):
            self.set_dispersion(phi)
            return None
        return theta_new, beta_new, m, new_value

    def _free(self, theta_w: np.ndarray, hb) -> np.ndarray:
        """The Hessian's coordinates a Newton step moves: θ̃ off its bound (a variance of 0 is left
        out: the deviance is even there, flat to second order), β and NB1's log φ."""
        return np.concatenate([~self._on_bound(theta_w), np.ones(len(hb[0]) - self.structure.n_theta, dtype=bool)])

    def vcov(self, theta_w: np.ndarray, beta: np.ndarray, nagq: int = 1) -> np.ndarray | None:
        """lme4's vcov(m) at (θ̃, β): the β block of 2H⁻¹, H the Hessian of the deviance in (θ, β)
        (glmer's ``use.hessian = TRUE``); None where that block is not positive definite."""
        return vcov_from_hessian(self.hessian(theta_w, beta, nagq), self.structure.n_theta)

    def _worth_more_starts(self, stage0: OptSummary) -> bool:
        if stage0.theta is None or not math.isfinite(stage0.fmin):
            return False
        return prone_to_local_minima(self.structure, stage0.theta, self.control)

    # ------------------------------------------------------------------ result
    def result(self, theta_w: np.ndarray, beta: np.ndarray, opt: OptSummary, nagq: int,
               rx_vcov: np.ndarray | None, curvature: Curvature | None = None) -> "GlmmResult":
        """The fitted GLMM at (θ̃, β); standard errors from the Hessian in (θ, β) (lme4's: ``curvature``
        where the optimiser took it there already), or without one (nAGQ = 0, or a Hessian that
        cannot be inverted) from R_X of the weighted system of the first stage (lme4's too)."""
        st, frame, data = self.structure, self.frame, self.data
        m = self.criterion.modes(theta_w, beta)
        if data.family.link.name == "sqrt" and not np.any(data.offset) and np.sum(m.eta) < 0:
            # μ = η²: (β, u) and (−β, −u) give the same μ and likelihood; report the one with
            # η mostly positive (η = √μ, glmer's convention). The β block of the vcov is unchanged.
            beta = -np.asarray(beta)
            m = pirls(data, theta_w, beta, u0=[-v for v in m.u])
        value = agq_deviance(data, m, nagq) if nagq > 1 else laplace(data, m)
        p = len(beta)
        vcov = None
        negative: list[float] = []
        fallback = False
        stopped_short = False
        warnings = list(opt.warnings)
        if nagq and p:
            hb = curvature if curvature is not None else self.hessian(theta_w, beta, nagq)
            # glmer's checkConv: "degenerate Hessian with N negative eigenvalues" (θ on its bound,
            # a variance of 0, is left out: the deviance is even there, flat to second order)
            free = self._free(theta_w, hb)
            decrement = _decrement(hb, free)
            # Newton's steps with the standard errors' Hessian: one finishes a fit that the optimiser
            # took close (gᵀH⁻¹g ≤ glmm_newton_precise: quadratic convergence from there); from
            # farther, each step takes the Hessian again where it lands. BOBYQA can stop far short on
            # an ill-conditioned second stage (sleepstudy's Gamma(inverse) with θ̃'s steps not yet
            # scaled: 1.25e-2 above the optimum, gᵀH⁻¹g 0.037), and its "converged" is not believed
            for _ in range(max(1, opt.control.newton_iterations)):
                polished = self._newton_step(theta_w, beta, value, hb, free, nagq)
                if polished is None:
                    break
                theta_w, beta, m, value = polished
                data = self.data  # (NB1's step moves φ too: the data at the new φ)
                opt.evaluations += 1
                opt.stages.append(f"a Newton step with the Hessian's gradient: {value:.10f} (gᵀH⁻¹g was "
                                  f"{decrement:.2g})")
                if decrement <= opt.control.glmm_newton_precise:
                    decrement = 0.0  # (the step finished it)
                    break
                runs = self.criterion.runs
                hb = self.hessian(theta_w, beta, nagq)
                opt.evaluations += self.criterion.runs - runs
                free = self._free(theta_w, hb)
                decrement = _decrement(hb, free)
            if 0.5 * decrement > opt.control.newton_tol + opt.control.newton_rel * abs(value):
                warnings.append(
                    f"the gradient of the deviance is not zero at the estimate (a Newton step would lower it by "
                    f"about {0.5 * decrement:.2g}): the optimiser stopped short of the maximum likelihood; the "
                    "estimates and standard errors may be off")
                stopped_short = True
            vcov = vcov_from_hessian(hb, st.n_theta)
            negative = negative_curvature(hb[0][np.ix_(free, free)], opt.control.negative_eigen)
            fallback = vcov is None
        opt.fmin = value
        theta = st.to_user(theta_w)
        user_lam = st.lambdas(theta)
        if vcov is None and p:
            vcov = rx_vcov
        se = np.sqrt(np.maximum(np.diag(vcov), 0.0)) if p else np.zeros(0)
        fixef = []
        for name, b, s in zip(frame.fixef_names, beta, se):
            z = float(b / s) if s > 0 else math.nan
            pval = 2.0 * norm_cdf(-abs(z)) if math.isfinite(z) else math.nan
            fixef.append(FixedEffect(name, float(b), float(s), z, p=pval))
        fam = data.family
        # Gamma: glmer's penalised deviance leaves the dispersion out of its deviance residuals,
        # so u is N(0, σ²I) on their scale, as in a linear mixed model: the random effects'
        # covariance is σ²ΛΛᵀ and σ is a Residual row (lme4's VarCorr); no residual otherwise
        scale = self._gamma_scale(m) if fam.has_scale else 1.0
        varcorr, correlations = variance_components(frame, user_lam, scale)
        if not fam.has_scale:
            varcorr = varcorr[:-1]
        singular = is_singular(theta, st.theta_is_diag, opt.control.singular_tol)
        degenerate = _degenerate_fit(frame, st, fixef, m, opt.control.separation, scale)
        warnings.extend(degenerate)
        warnings.extend(_per_observation_terms(st, data))
        if not degenerate:  # (its consequences for the Hessian need no second warning)
            if negative:
                warnings.append(
                    f"the Hessian of the deviance in (θ, β) has {len(negative)} negative eigenvalue(s) "
                    f"({', '.join(f'{v:.2g}' for v in negative)}): the estimate is not a minimum (a saddle or a "
                    "flat likelihood); the estimates and standard errors are unreliable: simplify the model")
            if fallback:
                # (lme4 falls back the same way, and warns too)
                warnings.append(
                    "the Hessian of the deviance in (θ, β) is not positive definite at the estimate (a flat "
                    "or degenerate likelihood: a variance at or near its bound, or separation): the standard "
                    "errors come from R_X, β's curvature with θ held fixed, and may be too small")
        converged = opt.converged and not (negative and not degenerate) and not stopped_short
        if singular:
            warnings.extend(singular_fit_warnings(frame, user_lam, varcorr, correlations, opt.control.singular_tol))
        if self.criterion.failures:
            warnings.append(f"PIRLS did not converge at {self.criterion.failures} of the {self.criterion.runs} parameter "
                            "values tried (the optimiser moved on from them)")
        if not m.converged:
            converged = False
            warnings.append("PIRLS did not converge at the estimate: the conditional modes, and so the "
                            "likelihood, are approximate; simplify the model or check the data")
        messages = list(frame.messages)
        with np.errstate(over="ignore", divide="ignore"):  # (μ at the links' ε: an infinite χ²)
            dev = float(np.sum(data.dev_resids(m.mu)))
            pearson_chisq = float(np.sum(data.wt * (data.y - m.mu) ** 2 / data.family.variance(m.mu)))
        dispersion = float(fam.k) if fam.free_dispersion else scale if fam.has_scale else None
        return GlmmResult(
            formula=frame.formula.text, family=fam.name, link=fam.link.name, nagq=nagq, dispersion=dispersion,
            family_label=fam.display_name,
            nobs=frame.n, n_dropped=frame.n_dropped, ngroups=frame.ngroups, fixef=fixef,
            vcov=vcov if vcov is not None else np.zeros((0, 0)), theta=theta, theta_names=theta_names(frame),
            varcorr=varcorr, correlations=correlations, criterion=float(value),
            npar=p + st.n_theta + (fam.free_dispersion or fam.has_scale),
            deviance=dev, pearson_chisq=pearson_chisq, singular=singular, converged=converged,
            warnings=warnings, messages=messages, optsummary=opt, frame=frame, structure=st, modes=m, data=data,
        )


# Links whose η is unit-free (log-odds, probits, log rates): there a spread of 15 in η means fitted
# values of 0 or 1 (or rates e¹⁵ apart) whatever the data's units. Under sqrt, identity and inverse
# links η is on the response's own scale, where 15 is no sign of anything.
UNIT_FREE_LINKS = frozenset({"logit", "probit", "cloglog", "log"})


def _degenerate_fit(frame, st, fixef, m: Modes, limit: float, scale: float = 1.0) -> list[str]:
    """The first sign, if any, that the likelihood has no proper maximum (one warning). Under a
    unit-free link (``UNIT_FREE_LINKS``): a coefficient that moves η by more than ``limit`` (15)
    across its column's values with a standard error that does too (the likelihood flat over
    that range: complete separation; a strong but determined effect has a small one), or a
    term's random part of η — at the modes, or its SD on some row — past it (a group SD running
    away with groups whose outcomes are all alike). For a binomial model, fitted probabilities
    within glm.fit's 10ε of 0 or 1 (quasi-separation by a combination).

    Each measure is of η, not of a coefficient: a slope's size follows its predictor's units
    (x in metres rather than centimetres: a slope 100 times larger), so |β| > 15 warned of
    separation on a well-determined slope of 101 (SE 15) in units of 0.01."""
    binomial = frame.family.name == "binomial"
    if frame.family.link.name in UNIT_FREE_LINKS:
        x = frame.X  # (the columns β multiplies: GlmmData's)
        spread = np.ptp(x, axis=0) if x.shape[0] else np.zeros(x.shape[1])
        separated = [f.term for f, r in zip(fixef, spread)
                     if f.term != "(Intercept)" and abs(f.estimate) * r > limit and not (f.se * r <= limit)]
        if separated:
            these = ", ".join(separated)
            if binomial:
                return [f"fitted probabilities numerically 0 or 1: the estimate for {these} runs away (it moves η by "
                        f"more than {limit:g} on the link scale across the data, with a standard error as large), a "
                        f"sign of complete separation; drop or recode {'it' if len(separated) == 1 else 'them'}"]
            return [f"the estimate for {these} is extreme (it moves η by more than {limit:g} on the link scale across "
                    "the data, with a standard error as large): a sign that some groups of rows have no events; "
                    f"drop or recode {'it' if len(separated) == 1 else 'them'}"]
        runaway = list(dict.fromkeys(t.factor for t, part in zip(st.terms, _random_parts(st, m, scale))
                                     if np.max(np.abs(part)) > limit))
        if runaway:
            what = "fitted probabilities numerically 0 or 1 within groups" if binomial else "extreme fitted values within groups"
            return [f"{what}: the random effects reach |η| > {limit:g} on the link scale, or their SD does (the SD of "
                    f"{', '.join(runaway)} runs away: groups whose outcomes are all alike); the estimates and "
                    "standard errors are unreliable: simplify the random effects or pool the groups"]
    eps = 10 * np.finfo(float).eps  # glm.fit's rule
    if binomial and (np.any(m.mu > 1 - eps) or np.any(m.mu < eps)):
        return ["fitted probabilities numerically 0 or 1 occurred (as glm() warns): some outcomes are predicted "
                "with certainty, a sign of quasi-separation by a combination of predictors; the estimates and "
                "standard errors are unreliable"]
    return []


def _per_observation_terms(st, data: GlmmData) -> list[str]:
    """A term with one observation per level on a 0/1 response: a random effect per observation only
    rescales η (probit: P(y = 1) = Φ(η/√(1 + σ²)) exactly), so its variance and the fixed effects
    lie on a ridge of equal likelihood and are not identified. (With counts, or trials per row, the
    same term models overdispersion, and is identified.) A fuzz case, b ~ x + (1 | g) on 3 rows:
    the slope's SE moved 0.2% with I(x + 100), and nothing was said."""
    if not (data.binary and data.unit_weights):
        return []
    alone = [t.factor for t in st.terms if t.n_levels == st.n]
    return [f"every level of {name} has a single observation: with a 0/1 response a random effect per "
            "observation only rescales η (exactly under probit, nearly under logit and cloglog), so its variance "
            "and the fixed effects are not identified (a ridge of "
            f"equal likelihood); their estimates and standard errors are arbitrary: drop the term on {name}"
            for name in dict.fromkeys(alone)]


def _random_parts(st, m: Modes, scale: float = 1.0) -> list[np.ndarray]:
    """Each term's share of η on every row at the modes, Z̃ₜ Λ̃ₜ uₜ (PIRLS runs in the working θ̃),
    or its SD there, scale·‖z̃ᵢΛ̃ₜ‖ (scale: Gamma's σ, by which u's are spread), whichever is larger:
    with few rows a group SD of 63 on the logit scale left every mode below 15."""
    out = []
    for term, lam, u in zip(st.terms, st.lambdas(m.theta), m.u):
        b = (lam @ u).T  # (levels, k)
        part = np.abs(np.einsum("ik,ik->i", term.z, b[term.codes]))
        sd = scale * np.sqrt(np.einsum("ij,ij->i", zl := term.z @ lam, zl))
        out.append(np.maximum(part, sd))
    return out


def newton_direction(h: np.ndarray, g: np.ndarray) -> np.ndarray | None:
    """−H⁻¹g by H's Cholesky factor; None where H is not finite or not positive definite."""
    if not (np.all(np.isfinite(h)) and np.all(np.isfinite(g))):
        return None
    try:
        chol = np.linalg.cholesky(h)
    except np.linalg.LinAlgError:
        return None
    return -np.linalg.solve(chol.T, np.linalg.solve(chol, g))


def theta_scale(theta_w: np.ndarray) -> float:
    """The size of a GLMM's θ̃, for the floors of its steps, where those assume θ̃ ~ 1 (the unit-free
    columns of a Gaussian model, θ relative to σ): 1 unless its largest entry is below 0.1, then 10×
    that. A GLMM's θ is on the scale of η, which the link sets: sleepstudy's Gamma(inverse) has
    η ~ 1/300 and θ̃ ~ 0.003, where steps of 1e-3 (the Hessian's) and 0.05 (BOBYQA's first trust
    region) are 30% and 17× of θ̃: the deviance's derivatives came out wrong, BOBYQA stopped
    1.25e-2 short of the optimum, and Newton's steps from there another 5e-3 short."""
    largest = float(np.max(np.abs(theta_w), initial=0.0))
    return 1.0 if largest >= 0.1 or largest == 0.0 else 10.0 * largest


def _decrement(hb, free: np.ndarray) -> float:
    """gᵀH⁻¹g in the free coordinates of a ``Curvature``: twice what a Newton step would lower the
    deviance by; 0 where H is not positive definite there (the Hessian's own warnings speak then)."""
    h, grad = hb[0][np.ix_(free, free)], hb[2][free]
    step = newton_direction(h, grad)
    return 0.0 if step is None else max(-float(grad @ step), 0.0)


class Curvature(NamedTuple):
    """``GlmmModel.hessian``'s answer at (θ̃, β): the deviance's Hessian ``h`` and gradient ``grad`` in
    (θ̃, ζ) (β moved by ``basis`` ζ; NB1's log φ last), and its ``value`` there."""

    h: np.ndarray
    basis: np.ndarray
    grad: np.ndarray
    value: float


def vcov_from_hessian(hb, k: int) -> np.ndarray | None:
    """Var(β̂) = B (2H⁻¹)_ζζ Bᵀ from ``GlmmModel.hessian``'s (H, B), mapped back without inverting
    an ill-conditioned matrix; None where the block is not positive definite (lme4's test)."""
    if hb is None:
        return None
    h, basis = hb[:2]
    p = basis.shape[1]
    try:
        inv = np.linalg.inv(h)
    except np.linalg.LinAlgError:
        return None
    v_zeta = 2.0 * inv[k:k + p, k:k + p]  # (NB1's log φ, after β, is integrated over as glmmTMB's sdreport does)
    v_zeta = 0.5 * (v_zeta + v_zeta.T)
    if not (np.all(np.isfinite(v_zeta)) and np.all(np.linalg.eigvalsh(v_zeta) > 0)):
        return None
    v = basis @ v_zeta @ basis.T
    return 0.5 * (v + v.T)


def negative_curvature(h: np.ndarray, tol: float = DEFAULT.negative_eigen) -> list[float]:
    """The Hessian's clearly negative eigenvalues (below −``tol`` × the largest: the LMM
    check's rule, ``engine.curvature``); H is in unit-free coordinates, so the ratio means the
    same for every model."""
    if not np.all(np.isfinite(h)):
        return []
    vals = np.linalg.eigvalsh(h)
    top = float(np.max(np.abs(vals))) if len(vals) else 0.0
    return [float(v) for v in vals if v < -tol * max(top, 1e-300)]


@dataclass
class GlmmResult(FitStatistics):
    """A fitted GLMM, as ``summary(glmer(...))`` reports it.

    * ``family``, ``link``, ``nagq`` (0: PQL-like first stage only, 1: Laplace, > 1: AGQ);
    * ``dispersion``: NB2's k (estimated with θ and β; glmer.nb's ``getME(m, "glmer.nb.theta")``,
      glmmTMB's ``sigma()``), NB1's φ (glmmTMB's ``sigma()``), Gamma's scale as lme4's ``sigma()`` reports it, None otherwise;
      ``family_label`` the family as lme4 prints it (``Negative Binomial(7.4169)``);
    * ``fixef`` (estimate, se, z in ``t``, p), ``vcov`` (lme4's, from the Hessian);
    * ``theta`` (lme4's), ``varcorr`` and ``correlations`` (no residual row);
    * ``criterion`` = −2 logLik (the Laplace or AGQ approximation lme4 minimises),
      ``deviance`` = lme4's ``deviance(m)`` (Σ deviance residuals at the modes, a
      different number), ``pearson_chisq`` (Σ Pearson residuals²), ``npar`` = p + len(θ);
    * ``modes`` (PIRLS at the estimate: u, η, μ) and ``data``, for ranef and residuals.
    """

    formula: str
    family: str
    link: str
    nagq: int
    nobs: int
    n_dropped: int
    ngroups: dict
    fixef: list
    vcov: np.ndarray
    theta: np.ndarray
    theta_names: list
    varcorr: list[VarComp]
    correlations: list[Correlation]
    criterion: float
    npar: int
    deviance: float
    pearson_chisq: float
    singular: bool
    converged: bool
    warnings: list
    messages: list
    optsummary: OptSummary
    frame: ModelFrame = field(repr=False)
    structure: object = field(repr=False)
    modes: Modes = field(repr=False)
    data: GlmmData = field(repr=False)
    ddf: str | None = None
    ci_method: str | None = None
    ci_level: float | None = None
    intervals: list = field(default_factory=list, repr=False)
    bootstrap: dict | None = None  # nsim, seed, failed of bootstrap intervals (ci_method "bootstrap")
    dispersion: float | None = None
    family_label: str | None = None
    # fitting.fit_frame, which set it: how another frame of the same data is fitted (the null model
    # of a Poisson ICC) by code below the fitting layer, which cannot import it
    fitter: Callable | None = field(default=None, repr=False, compare=False)

    reml = False
    is_glmm: ClassVar[bool] = True

    @property
    def sigma(self) -> float:
        """1, but a Gamma fit's scale (lme4's sigma(), which scales its random effects' covariance)."""
        return self.dispersion if self.family == "Gamma" and self.dispersion is not None else 1.0

    @property
    def method(self) -> str:
        return {0: "ML (nAGQ = 0)", 1: "Laplace"}.get(self.nagq, f"AGQ (nAGQ = {self.nagq})")

    @property
    def df_resid(self) -> int:
        return self.nobs - self.npar

    @property
    def coef(self) -> dict:
        return {f.term: f.estimate for f in self.fixef}

    @property
    def overdispersion(self) -> float | None:
        """Pearson χ² / residual df, for Poisson fits (above 1: more variance than Poisson)."""
        if self.family != "poisson" or self.df_resid <= 0:
            return None
        return self.pearson_chisq / self.df_resid

    def add_confint(self, level: float = 0.95, method: str = "wald", progress=None, nsim: int = 500,
                    seed: int | None = None) -> "GlmmResult":
        """Wald intervals for the fixed effects (lme4's confint(method = "Wald")), or profile-likelihood
        (``profile``: glmer's confint(), ``inference.profile.GlmmProfiler``) or parametric bootstrap
        intervals (``boot``: lme4's confint(method = "boot")) of the fixed effects and the random
        effects' SDs and correlations."""
        from .inference import add_confint

        return add_confint(self, level, method, progress, nsim=nsim, seed=seed)

    def notes(self) -> list[str]:
        out = self.data_notes()
        ratio = self.overdispersion
        if ratio is not None and ratio > 1.5:
            out.append(f"overdispersion: Pearson χ² / residual df = {ratio:.2f} (1 for Poisson data); the "
                       "standard errors are too small: consider an observation-level random effect, + (1 | .row) "
                       "(.row numbers the rows)")
        return out + list(self.warnings)

    def _user_lambdas(self) -> list[np.ndarray]:
        # the modes are spherical for the working Λ̃ (PIRLS runs in θ̃): b = M⁻¹Λ̃u in the user's columns
        return self.structure.user_lambdas(self.modes.theta)

    def conditional_modes(self) -> list[np.ndarray]:
        """b̂ = Λû per term in the user's columns, as (levels in the engine's order, k) arrays."""
        return [(lam @ u).T for u, lam in zip(self.modes.u, self._user_lambdas())]

    def _conditional_covariances(self) -> list[np.ndarray]:
        return self.modes.factor.conditional_covariances()

