"""Profile-likelihood confidence intervals, as lme4's ``confint(method = "profile")``.

What lme4 does, and so what this module does:

* The deviance profiled is the **ML** deviance, also for REML fits (lme4's
  ``profile()`` starts with ``refitML``); intervals for a REML fit are those
  of its ML refit.
* Variance parameters are profiled on the standard-deviation/correlation
  scale: for each term, ``sd_<effect>|<group>`` and ``cor_<e2>.<e1>|<group>``
  in θ's order, then ``sigma``; then every fixed effect, by name.
* For each parameter ψ, ζ(ψ) = sign(ψ − ψ̂)·√(d̃(ψ) − d̂), where d̃(ψ) is the
  deviance minimised over all other parameters with ψ held fixed, and d̂ the
  minimum. The interval is {ψ : |ζ(ψ)| ≤ z₁₋α/₂}; when ζ does not reach the
  cut-off before the parameter's bound (an SD of zero, a correlation of ±1),
  the bound is the end of the interval, as lme4 reports it.

lme4 tabulates ζ on a grid and interpolates with splines; here each end is
found by a secant search on ζ itself (ζ is nearly linear in ψ) finished by
Brent's method once bracketed, so the ends are exact up to the inner
optimiser's tolerance: 4–6 profiled deviances per end. Where the two differ
by more than ~1e-5 it is lme4 that is off (tests/test_profile.py checks
mixcli's ζ at lme4's own profile points): its spline is coarse where a
profile bends (an SD near zero: 3.5% on the classroom M17's class SD), its
inner optimiser sometimes stops short, and at a correlation of exactly ±1
whose second SD is the larger, its pivoted Cholesky (``safe_chol``) builds a
different covariance, which is how its profile of the M17 school slope SD
turns non-monotonic.

Limitation: for a term with three or more effects (correlations that
constrain each other), the inner problem can have several local minima; one
warm start and one cold start per end are used, so such profiles — of
correlations, and of SDs near zero — can come out slightly too high and the
intervals slightly too narrow (lme4 warns about the same profiles).

A GLMM (``GlmmProfiler``) is profiled as glmer's ``profile()`` does it: the SDs and
correlations (no σ) and the fixed effects, on the Laplace or AGQ deviance the fit
minimised, every other parameter (θ and β) re-optimised through the fit's own criterion.

The inner minimisations of an LMM, with ψ fixed:

* fixed effect βⱼ = b: for given θ, minimising r² over the other coefficients
  gives r²(θ) + (b − β̂ⱼ(θ))² / Vⱼⱼ(θ) with V = (R_XᵀR_X)⁻¹, and σ̂² = that / n;
  so the profiled deviance is a function of θ alone, minimised by BOBYQA;
* σ = s: the deviance log|L_Z|² + n·log(2πs²) + r²(θ)/s² over θ;
* an SD or correlation of term t: the deviance over σ, the θ of the other
  terms (whose SDs scale with σ, a one-to-one change of variables) and the
  SDs and correlations of term t other than ψ, from which Λₜ = chol(DRD)/σ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..control import Control
from ..engine.factor import criterion, evaluate, profiled_criterion
from ..engine.optimize import OptSummary, minimize_theta, run
from ..engine.structure import lower_indices, sd_cor
from ..errors import UsageError, option
from .distributions import norm_ppf

# (the inner fits' tolerances, ζ's tolerance and the steps per end are the fitted model's
# ``Control``: profile_ftol and friends)


@dataclass
class ProfileParameter:
    """One profiled parameter, with lme4's name."""

    name: str  # sd_(Intercept)|g, cor_x.(Intercept)|g, sigma, or a coefficient name
    kind: str  # "sd", "cor", "sigma" or "fixef"
    group: str | None  # grouping factor (sd, cor)
    term1: str | None  # effect (sd), first effect (cor), coefficient (fixef)
    term2: str | None  # second effect (cor)
    estimate: float  # at the ML optimum
    lower_bound: float  # of the parameter space
    upper_bound: float
    term_index: int = -1  # random-effects term (sd, cor)
    entry: int = -1  # position in that term's θ slice (sd, cor)
    fixef_index: int = -1


@dataclass
class ProfileInterval:
    parameter: str
    kind: str
    group: str | None
    term1: str | None
    term2: str | None
    estimate: float  # ML estimate (lme4 profiles the ML deviance, also for REML fits)
    lower: float
    upper: float
    level: float
    lower_at_bound: bool = False  # ζ did not reach the cut-off before the parameter's bound
    upper_at_bound: bool = False


def model_parameters(terms, lams, sigma: float, fixef_names, beta, thetas=None) -> list[ProfileParameter]:
    """lme4's parameters in ``confint()``'s order and names (oldNames = FALSE): per term the SDs
    and correlations (lower triangle, column by column), σ, then the fixed effects; at the
    estimates given by the terms' Λ (lme4's θ), σ and β. A structured term (``thetas``: each
    term's θ) has its own parameters instead: its SDs and its ρ (``structured_parameters``)."""
    out = []
    for ti, (term, lam) in enumerate(zip(terms, lams)):
        if term.structure and thetas is not None:
            out.extend(structured_parameters(term, ti, thetas[ti], sigma))
            continue
        sd, cor = sd_cor(lam, sigma)
        rows, cols = lower_indices(term.k)
        for e, (i, j) in enumerate(zip(rows, cols)):
            if i == j:
                out.append(ProfileParameter(f"sd_{term.names[i]}|{term.factor}", "sd", term.factor, term.names[i],
                                            None, float(sd[i]), 0.0, math.inf, ti, e))
            else:
                # (a profile starts from a number: an undefined correlation, with an SD of 0, from 0)
                c = float(np.nan_to_num(cor[i, j], nan=0.0))
                out.append(ProfileParameter(f"cor_{term.names[i]}.{term.names[j]}|{term.factor}", "cor",
                                            term.factor, term.names[j], term.names[i], c, -1.0, 1.0, ti, e))
    out.append(ProfileParameter("sigma", "sigma", None, None, None, sigma, 0.0, math.inf))
    for j, name in enumerate(fixef_names):
        out.append(ProfileParameter(name, "fixef", None, name, None, float(beta[j]), -math.inf, math.inf,
                                    fixef_index=j))
    return out


def structured_parameters(term, ti: int, phi: np.ndarray, sigma: float) -> list[ProfileParameter]:
    """A diag, cs or ar1 term's own parameters (``engine.covstruct``): the SD of each effect (ar1:
    the one SD of every occasion), then the correlation ρ (cs, ar1) within its range."""
    from ..engine import covstruct

    kind = term.structure
    lo, hi = covstruct.bounds(kind, term.k)
    sd_names = [f"({kind})"] if kind == "ar1" else list(term.names)
    out = []
    for e, is_sd in enumerate(covstruct.is_sd(kind, term.k)):
        if is_sd:
            out.append(ProfileParameter(f"sd_{sd_names[e]}|{term.factor}", "sd", term.factor, sd_names[e], None,
                                        float(sigma * phi[e]), 0.0, math.inf, ti, e))
        else:
            out.append(ProfileParameter(f"rho({kind})|{term.factor}", "cor", term.factor, f"rho({kind})", None,
                                        float(phi[e]), float(lo[e]), float(hi[e]), ti, e))
    return out


class Profiler:
    """ML profiles of every parameter of a fitted model."""

    def __init__(self, m):
        self.m = m
        self.control = c = m.control
        st = self.st = m.structure
        self.n, self.p = st.n, st.p
        if m.reml:
            opt = minimize_theta(lambda th: criterion(st, th, False),
                                 OptSummary(start=np.asarray(m.theta, float), lower=st.theta_lower,
                                            upper=st.theta_upper, control=c))
            theta, base = np.asarray(opt.theta, float), float(opt.fmin)
        else:
            theta, base = np.asarray(m.theta, float), float(m.criterion)
        fac = evaluate(st, theta, full=False)
        self.theta = theta
        self.base = min(base, fac.criterion(False))
        self.sigma = math.sqrt(fac.pwrss / self.n)
        self.beta = fac.fixef()
        self.se = self.sigma * np.sqrt(np.diag(fac.rx_inverse())) if self.p else np.zeros(0)
        self.params = self._parameters()

    # ------------------------------------------------------------ parameters
    def _parameters(self) -> list[ProfileParameter]:
        return model_parameters(self.m.frame.terms, self.st.lambdas(self.theta), self.sigma,
                                [f.term for f in self.m.fixef], self.beta,
                                [self.theta[sl] for sl in self.st.theta_slices])

    # ------------------------------------------------------- profiled deviance
    def _ml_deviance(self, theta: np.ndarray, sigma: float) -> float:
        fac = evaluate(self.st, theta, full=False)
        if not fac.ok or not sigma > 0:
            return math.inf
        val = (fac.logdet_z + self.n * math.log(2.0 * math.pi * sigma * sigma) + fac.pwrss / (sigma * sigma)
               + self.st.weights_term)
        return val if math.isfinite(val) else math.inf

    def objective(self, par: ProfileParameter, value: float):
        """(f, x0, lower, upper, step, unpack): the inner problem with ``par`` fixed at ``value``."""
        st, theta0 = self.st, self.theta
        if par.kind == "fixef":
            j, n = par.fixef_index, self.n

            def f(th):
                fac = evaluate(st, th, full=False)
                if not fac.ok:
                    return math.inf
                v = fac.rx_inverse()[j, j]
                r2 = fac.pwrss + (value - fac.fixef()[j]) ** 2 / v
                val = profiled_criterion(fac.logdet_z, r2, n, st.weights_term)
                return val if math.isfinite(val) else math.inf

            return f, theta0.copy(), st.theta_lower.copy(), st.theta_upper.copy(), _theta_steps(theta0)
        if par.kind == "sigma":
            return (lambda th: self._ml_deviance(th, value)), theta0.copy(), st.theta_lower.copy(), \
                st.theta_upper.copy(), _theta_steps(theta0)
        if self.m.frame.terms[par.term_index].structure:
            return self._structured_objective(par, value)
        return self._variance_objective(par, value)

    def _structured_objective(self, par: ProfileParameter, value: float):
        """A structured term's parameter (``engine.covstruct``: relative SDs sᵢ = SDᵢ/σ and a ρ) held
        at ``value``: free are σ and every other θ; an SD fixes its s at value/σ."""
        st = self.st
        pos = st.theta_slices[par.term_index].start + par.entry
        other = np.ones(st.n_theta, bool)
        other[pos] = False
        x0 = np.concatenate([[self.sigma], self.theta[other]])
        lo = np.concatenate([[0.0], st.theta_lower[other]])
        hi = np.concatenate([[math.inf], st.theta_upper[other]])
        step = np.concatenate([[0.05 * self.sigma], _theta_steps(self.theta[other])])

        def f(x):
            sigma = x[0]
            if not sigma > 0:
                return math.inf
            theta = np.empty(st.n_theta)
            theta[other] = x[1:]
            theta[pos] = value / sigma if par.kind == "sd" else value
            return self._ml_deviance(theta, sigma)

        return f, x0, lo, hi, step

    def _variance_objective(self, par: ProfileParameter, value: float):
        """Free: σ, the θ of the other terms, the SDs/correlations of ``par``'s term other than ``par``."""
        st = self.st
        t = par.term_index
        sl = st.theta_slices[t]
        term = self.m.frame.terms[t]
        k = term.k
        rows, cols = lower_indices(k)
        # the term's SDs and correlations at the ML estimate, in θ order
        lam_t = st.lambdas(self.theta)[t]
        sdcor0 = _sdcor(self.sigma**2 * (lam_t @ lam_t.T), rows, cols)
        other = np.ones(st.n_theta, bool)
        other[sl] = False
        free_t = np.ones(len(sdcor0), bool)
        free_t[par.entry] = False
        diag_t = rows == cols
        x0 = np.concatenate([[self.sigma], self.theta[other], sdcor0[free_t]])
        lo = np.concatenate([[0.0], st.theta_lower[other], np.where(diag_t, 0.0, -1.0)[free_t]])
        hi = np.concatenate([[math.inf], np.full(int(other.sum()), math.inf), np.where(diag_t, math.inf, 1.0)[free_t]])
        step = np.concatenate([[0.05 * self.sigma], _theta_steps(self.theta[other]),
                               np.where(diag_t, np.maximum(0.05 * np.abs(sdcor0), 0.01 * self.sigma), 0.05)[free_t]])
        n_other = int(other.sum())

        def unpack(x):
            sigma = x[0]
            theta = np.empty(st.n_theta)
            theta[other] = x[1 : 1 + n_other]
            sdcor = np.empty(len(sdcor0))
            sdcor[free_t] = x[1 + n_other :]
            sdcor[par.entry] = value
            chol = _sdcor_chol(sdcor, k, rows, cols)
            if chol is None or not sigma > 0:
                return None, sigma
            theta[sl] = (chol / sigma)[rows, cols]
            return theta, sigma

        def f(x):
            theta, sigma = unpack(x)
            return math.inf if theta is None else self._ml_deviance(theta, sigma)

        # positions in x of the term's free correlations: shrunk towards 0 when a start would
        # make the term's correlation matrix indefinite (k ≥ 3 and ψ a correlation near ±1)
        f.cor_index = 1 + n_other + np.flatnonzero(~diag_t[free_t])
        return f, x0, lo, hi, step

    def deviance(self, par: ProfileParameter, value: float, start: np.ndarray | None = None):
        """The profiled deviance at ψ = value, and the minimiser (for warm starts).

        A warm start (the solution at a nearby ψ, extrapolated) is close, so
        BOBYQA starts with a trust region a fifth of the cold one.
        """
        f, x0, lo, hi, step = self.objective(par, value)
        if start is not None:
            x0, step = start, 0.2 * step
        x0 = np.clip(np.asarray(x0, float), lo, hi)
        cors = getattr(f, "cor_index", ())
        if len(cors) and not math.isfinite(f(x0)):
            x0 = x0.copy()
            for _ in range(60):
                x0[cors] *= 0.5
                if math.isfinite(f(x0)):
                    break
        x, fval = _bobyqa(f, x0, lo, hi, step, self.control)
        return fval, x

    # -------------------------------------------------------------- intervals
    def interval(self, par: ProfileParameter, level: float = 0.95) -> ProfileInterval:
        z = norm_ppf(0.5 + level / 2.0)
        lower, lo_bound = self._end(par, -1.0, z)
        upper, up_bound = self._end(par, +1.0, z)
        return ProfileInterval(par.name, par.kind, par.group, par.term1, par.term2, float(par.estimate), float(lower),
                               float(upper), level, lo_bound, up_bound)

    def _end(self, par: ProfileParameter, side: float, z: float) -> tuple[float, bool]:
        """Where ζ = side·z on one side of the estimate, or the parameter's bound if ζ stays inside.

        The search warm-starts each inner optimisation from the solutions at
        points between the estimate and the new point (a continuation outwards,
        as lme4 steps). A warm start can leave BOBYQA stuck where an SD is
        pinned at zero; so the end found is checked with a cold start (from the
        ML estimate), and if that reaches a lower deviance the search is redone
        with cold starts only.
        """
        est = par.estimate
        bound = par.upper_bound if side > 0 else par.lower_bound
        if est == bound:
            return bound, True
        x, at_bound, dev = self._search(par, side, z, cold=False)
        if math.isfinite(x):
            cold_dev, _ = self.deviance(par, x, None)
            if cold_dev < dev - 1e-6:
                x, at_bound, dev = self._search(par, side, z, cold=True)
        return x, at_bound

    def _search(self, par: ProfileParameter, side: float, z: float, cold: bool):
        est = par.estimate
        bound = par.upper_bound if side > 0 else par.lower_bound
        target = side * z
        solutions: dict[float, np.ndarray] = {}
        devs: dict[float, float] = {}

        def zeta(x):
            dev, sol = self.deviance(par, x, None if cold else _warm_start(solutions, x, est))
            solutions[x], devs[x] = sol, dev
            d = max(dev - self.base, 0.0)
            return math.copysign(math.sqrt(d), x - est)

        # first step: about the end for a fixed effect (z standard errors), else a probe
        if par.kind == "fixef":
            step = z * self.se[par.fixef_index]
        elif par.kind == "cor":
            step = 0.05
        else:
            step = 0.1 * (est if est > 0 else self.sigma)
        xs, zs = [est], [0.0]
        x = est + side * step
        c = self.control
        for _ in range(c.profile_max_steps):
            if side * (x - bound) >= 0:
                x = bound
            zx = zeta(x)
            xs.append(x)
            zs.append(zx)
            if abs(zx - target) < c.profile_zeta_tol:
                return x, False, devs[x]
            if side * (zx - target) > 0:  # crossed: the end is between the last two points
                root = _brent(lambda v: zeta(v) - target, xs[-2], zs[-2] - target, x, zx - target,
                              c.profile_zeta_tol, c.profile_max_steps)
                return root, False, devs[root]
            if x == bound:
                return bound, True, devs[x]
            # secant step towards the target (ζ is nearly linear in ψ), 2% past it so that the
            # next point brackets the end; at most twice the last step, and a doubling if ζ is flat
            prev = abs(xs[-1] - xs[-2])
            slope = (zs[-1] - zs[-2]) / (xs[-1] - xs[-2])
            if slope > 0:  # ζ increases with ψ
                dist = min(max(abs(target - zx) / slope * 1.02, 0.01 * prev), 2.0 * prev)
            else:
                dist = 2.0 * prev
            x = x + side * dist
        return math.nan, False, math.nan


def check_profile(nagq: int, family: str | None = None):
    """A GLMM is profiled on its likelihood in β, as glmer's profile(): a nAGQ = 0 fit has none.
    Nor a Gamma fit: glmer's criterion takes its scale as deviance / n rather than as a parameter,
    lme4 refuses to profile it ("can't (yet) profile GLMMs with non-fixed scale parameters"), and
    its random effects' SDs would be profiled without σ, on another scale than the fit reports."""
    if family is not None and family.lower() == "gamma":
        raise UsageError(
            "profile intervals of a Gamma GLMM: its scale σ is not a parameter of glmer's criterion, which lme4 "
            "refuses to profile, and the random effects' profiles would miss the σ of their SDs; use Wald intervals "
            f"({option('ci', '0.95')}) for the fixed effects")
    if not nagq:
        raise UsageError(
            f"profile intervals of a GLMM need its likelihood in β, which a {option('nagq', 0)} fit does not "
            f"maximise (β comes from PIRLS, not the likelihood); fit with {option('nagq', 1)} (the Laplace "
            "approximation, which glmer profiles) or use bootstrap intervals")


class GlmmProfiler(Profiler):
    """Profiles of a GLMM's parameters, as glmer's ``profile()``: the SDs and correlations of the
    random effects (no σ: binomial and Poisson have none) and the fixed effects, on the deviance
    the fit minimised (Laplace, or adaptive quadrature at the fit's nAGQ).

    With ψ held at a value, the deviance is minimised over every other parameter — θ and β
    together — through the fit's own criterion (``GlmmCriterion``: PIRLS for the modes, then the
    Laplace or AGQ deviance), so whatever family or link the fit handles is profiled the same
    way. lme4 does the same for a glmer fit (``devfun2`` wraps the fit's ``devfun``; the fixed
    effects are profiled in that loop too, not by an offset as for lmer). The inner problems are
    posed in unit-free coordinates, as the fit's second stage: the working θ̃ of the other terms,
    and β = β̂ + Bδ with BBᵀ = Var(β̂); for a fixed effect βⱼ = b, the others start from their
    regression on βⱼ under Var(β̂) (β̂₋ⱼ + V₋ⱼ,ⱼ/Vⱼⱼ·(b − β̂ⱼ)) and move in the Cholesky
    coordinates of the conditional covariance, so that start is the Wald approximation of the
    profile trace.

    An nbinom1 fit's φ is a parameter of the likelihood the fit maximised (glmmTMB's criterion), so
    each inner problem minimises over log φ too, as glmmTMB's profiles do; nbinom2's k is held at
    its estimate, as in glmer's profile() of a glmer.nb fit.
    """

    def __init__(self, m):
        from ..engine.glmm_criterion import GlmmCriterion
        from ..engine.linalg import whitening
        check_profile(m.nagq, m.family)
        self.m = m
        self.control = m.control
        st = self.st = m.structure
        self.criterion = GlmmCriterion(m.data)
        self.theta = np.asarray(m.theta, float)  # the user's θ (Λ of the user's columns)
        self.theta_w = np.asarray(m.modes.theta, float)  # the working θ̃ the criterion takes
        self.beta = np.array([f.estimate for f in m.fixef])
        self.p = len(self.beta)
        self.sigma = 1.0  # (the scale of the first steps: SDs on the link scale)
        self.se = np.array([f.se for f in m.fixef])
        v = np.asarray(m.vcov, float)
        self.vcov = v if v.shape == (self.p, self.p) and self.p else np.diag(np.maximum(self.se, 1e-8) ** 2)
        self.basis = whitening(self.vcov) if self.p else np.zeros((0, 0))
        self.base = min(float(m.criterion), self._deviance(self.theta_w, self.beta))
        self.params = [par for par in model_parameters(m.frame.terms, st.lambdas(self.theta), 1.0,
                                                       [f.term for f in m.fixef], self.beta)
                       if par.kind != "sigma"]

    def _deviance(self, theta_w: np.ndarray, beta: np.ndarray) -> float:
        """−2 log L at (θ̃, β); +∞ where PIRLS does not converge (as a bootstrap refit counts it)."""
        value, modes = self.criterion.value(theta_w, beta, self.m.nagq)
        return value if modes.converged and math.isfinite(value) else math.inf

    def objective(self, par: ProfileParameter, value: float):
        f, x0, lo, hi, step = self._objective(par, value)
        if not self.m.data.family.observed_information:
            return f, x0, lo, hi, step
        from ..engine.glmm_criterion import with_log_dispersion
        from ..family import DISPERSION_STEP

        g = with_log_dispersion(f, self.criterion.set_dispersion)  # (NB1: log φ the last coordinate)
        if hasattr(f, "cor_index"):
            g.cor_index = f.cor_index
        return (g, np.append(x0, math.log(self.m.dispersion)), np.append(lo, -math.inf), np.append(hi, math.inf),
                np.append(step, DISPERSION_STEP))

    def _objective(self, par: ProfileParameter, value: float):
        st, k, p, c = self.st, self.st.n_theta, self.p, self.control
        if par.kind != "fixef":
            return self._variance_objective(par, value)
        j, v = par.fixef_index, self.vcov
        others = np.arange(p) != j
        cond = v - np.outer(v[:, j], v[j, :]) / v[j, j]
        directions = np.zeros((p, p - 1))
        if p > 1:
            from ..engine.linalg import whitening

            directions[others] = whitening(cond[np.ix_(others, others)])
        centre = self.beta + v[:, j] / v[j, j] * (value - self.beta[j])
        centre[j] = value

        def f(x):
            return self._deviance(x[:k], centre + directions @ x[k:])

        x0 = np.concatenate([self.theta_w, np.zeros(p - 1)])
        lo = np.concatenate([st.theta_lower, np.full(p - 1, -math.inf)])
        step = np.concatenate([_theta_steps(self.theta_w), np.full(p - 1, c.step_beta)])
        return f, x0, lo, np.full(len(x0), math.inf), step

    def _variance_objective(self, par: ProfileParameter, value: float):
        """Free: the θ̃ of the other terms, the SDs/correlations of ``par``'s term other than ``par``, δ."""
        st, p, c = self.st, self.p, self.control
        t = par.term_index
        sl = st.theta_slices[t]
        k = self.m.frame.terms[t].k
        rows, cols = lower_indices(k)
        lam_t = st.lambdas(self.theta)[t]
        sdcor0 = _sdcor(lam_t @ lam_t.T, rows, cols)
        other = np.ones(st.n_theta, bool)
        other[sl] = False
        n_other = int(other.sum())
        free_t = np.ones(len(sdcor0), bool)
        free_t[par.entry] = False
        n_free = int(free_t.sum())
        diag_t = rows == cols
        x0 = np.concatenate([self.theta_w[other], sdcor0[free_t], np.zeros(p)])
        lo = np.concatenate([st.theta_lower[other], np.where(diag_t, 0.0, -1.0)[free_t], np.full(p, -math.inf)])
        hi = np.concatenate([np.full(n_other, math.inf), np.where(diag_t, math.inf, 1.0)[free_t], np.full(p, math.inf)])
        step = np.concatenate([_theta_steps(self.theta_w[other]),
                               np.where(diag_t, np.maximum(0.05 * np.abs(sdcor0), 0.01), 0.05)[free_t],
                               np.full(p, c.step_beta)])

        def f(x):
            sdcor = np.empty(len(sdcor0))
            sdcor[free_t] = x[n_other : n_other + n_free]
            sdcor[par.entry] = value
            chol = _sdcor_chol(sdcor, k, rows, cols)
            if chol is None:
                return math.inf
            theta_user = self.theta.copy()
            theta_user[sl] = chol[rows, cols]
            theta_w = self.theta_w.copy()
            theta_w[other] = x[:n_other]
            theta_w[sl] = st.to_working(theta_user)[sl]
            return self._deviance(theta_w, self.beta + self.basis @ x[n_other + n_free :])

        f.cor_index = n_other + np.flatnonzero(~diag_t[free_t])
        return f, x0, lo, hi, step


def profiler(m) -> Profiler:
    """The profiler of a fitted LMM (``Profiler``) or GLMM (``GlmmProfiler``)."""
    return GlmmProfiler(m) if getattr(m, "is_glmm", False) else Profiler(m)


def _brent(f, a: float, fa: float, b: float, fb: float, ftol: float, max_steps: int) -> float:
    """A root of f in the bracket [a, b] (fa, fb of opposite signs) by Brent's method.

    Stops when |f| < ``ftol`` or the bracket is below 1e-12 relative (or after ``max_steps``).
    """
    if abs(fa) < abs(fb):
        a, b, fa, fb = b, a, fb, fa
    c, fc = a, fa
    d = e = b - a
    for _ in range(max_steps):
        if abs(fb) < ftol:
            return b
        if (fb > 0) == (fc > 0):
            c, fc = a, fa
            d = e = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol = 1e-12 * max(1.0, abs(b))
        m = 0.5 * (c - b)
        if abs(m) <= tol:
            return b
        if abs(e) >= tol and abs(fa) > abs(fb):
            s = fb / fa
            if a == c:  # secant
                p, q = 2.0 * m * s, 1.0 - s
            else:  # inverse quadratic interpolation
                q, r = fa / fc, fb / fc
                p = s * (2.0 * m * q * (q - r) - (b - a) * (r - 1.0))
                q = (q - 1.0) * (r - 1.0) * (s - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if 2.0 * p < min(3.0 * m * q - abs(tol * q), abs(e * q)):
                e, d = d, p / q
            else:
                d = e = m
        else:
            d = e = m
        a, fa = b, fb
        b = b + (d if abs(d) > tol else math.copysign(tol, m))
        fb = f(b)
    return b


def profile_intervals(m, level: float = 0.95, which=None, progress: Callable | None = None) -> list[ProfileInterval]:
    """Profile confidence intervals of every parameter (or those named in ``which``), lme4's order.

    ``progress(done, total, name)`` is called before each parameter and once at the end.
    """
    prof = profiler(m)
    params = [par for par in prof.params if which is None or par.name in which]
    out = []
    for i, par in enumerate(params):
        if progress is not None:
            progress(i, len(params), par.name)
        out.append(prof.interval(par, level))
    if progress is not None:
        progress(len(params), len(params), "")
    return out


# ----------------------------------------------------------------- helpers
def _warm_start(solutions: dict, x: float, est: float):
    """A start for the inner problem at ψ = x: the solutions at the two solved points nearest to x
    between the estimate and x, extrapolated linearly (None, a cold start, if there are none)."""
    inner = sorted((v for v in solutions if (v - est) * (x - est) >= 0 and abs(v - est) < abs(x - est)),
                   key=lambda v: abs(x - v))
    if not inner:
        return None
    a = inner[0]
    if len(inner) == 1:
        return solutions[a]
    b = inner[1]
    w = (x - a) / (a - b)
    if abs(w) > 2.0:
        return solutions[a]
    return solutions[a] + w * (solutions[a] - solutions[b])


def _theta_steps(theta: np.ndarray) -> np.ndarray:
    return np.maximum(0.1 * np.abs(theta), 0.02)


def _sdcor(cov: np.ndarray, rows, cols) -> np.ndarray:
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    out = np.empty(len(rows))
    for e, (i, j) in enumerate(zip(rows, cols)):
        if i == j:
            out[e] = sd[i]
        else:
            den = sd[i] * sd[j]
            out[e] = cov[i, j] / den if den > 0 else 0.0
    return out


def _sdcor_chol(sdcor: np.ndarray, k: int, rows, cols) -> np.ndarray | None:
    """Lower Cholesky factor of the covariance D R D given SDs and correlations (θ order).

    Positive semi-definite matrices (a correlation of ±1, an SD of 0) get the
    factor with zero columns where the pivots vanish; an indefinite matrix
    (correlations inconsistent with each other, k ≥ 3) gives None.
    """
    sd = np.zeros(k)
    cor = np.eye(k)
    for e, (i, j) in enumerate(zip(rows, cols)):
        if i == j:
            sd[i] = sdcor[e]
        else:
            cor[i, j] = cor[j, i] = sdcor[e]
    cov = cor * np.outer(sd, sd)
    if k == 1:
        return np.array([[sd[0]]])
    L = np.zeros((k, k))
    scale = max(float(np.max(np.abs(np.diag(cov)))), 1e-300)
    for j in range(k):
        d = cov[j, j] - L[j, :j] @ L[j, :j]
        if d < -1e-10 * scale:
            return None
        if d <= 1e-14 * scale:
            L[j, j] = 0.0
            for i in range(j + 1, k):
                if abs(cov[i, j] - L[i, :j] @ L[j, :j]) > 1e-7 * math.sqrt(scale * max(cov[i, i], 0.0) + 1e-300):
                    return None
            continue
        L[j, j] = math.sqrt(d)
        for i in range(j + 1, k):
            L[i, j] = (cov[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    return L


def _bobyqa(f, x0, lower, upper, step, control: Control):
    """Minimise f from x0 within [lower, upper] (the inner problem); returns (x, f(x))."""
    x0 = np.clip(np.asarray(x0, float), lower, upper)
    # steps must fit between the bounds
    room = np.minimum(x0 - lower, upper - x0)
    st = np.where(np.isfinite(room) & (room > 0), np.minimum(step, np.maximum(room, 1e-8)), step)
    summary = OptSummary(start=x0, lower=lower, upper=upper, initial_step=np.maximum(st, 1e-6),
                         ftol_abs=control.profile_ftol, ftol_rel=0.0, xtol_abs=0.0, xtol_rel=control.profile_xtol,
                         max_eval=control.profile_max_eval, control=control)
    x, fx, _ = run(summary, f)
    return x, (fx if fx < 1e300 else math.inf)
