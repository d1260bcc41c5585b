"""Parametric bootstrap of the likelihood-ratio statistic between two nested mixed models.

Under the null hypothesis the smaller model is true, so its fit is used to
simulate new responses,

    y* = Xβ̂ + Σₜ Zₜ bₜ* + ε*,   bₜ* = σ̂ Λ̂ₜ u,  u ~ N(0, I) per level,  ε* ~ N(0, σ̂² I),

both models are refitted to each y*, and the statistic T* = 2·max(0, ΔlogLik)
is recorded. The bootstrap p-value is

    p_boot = (1 + #{T* ≥ T}) / (N + 1),

the usual Monte Carlo p-value that counts the observed data as one of the
draws (Davison & Hinkley 1997, §4.2; never 0, exact-level for finite N). It
is valid where the χ² reference is not, notably for variance components on
the boundary.

Refits are cheap: only y changes, so each model's θ-free structure is reused
with its y-dependent sums recomputed (``ModelStructure.with_response``), and the
optimiser (BOBYQA) starts from the model's own estimate, as lme4's
``refit`` does, with a small trust region and a tolerance of 1e-8 on the
criterion: T* is then within ~1e-6 of a fit to the engine's full precision
(checked on the classroom models), far below what moves a p-value, at half
the evaluations. The boundary polishing of a full fit is not needed either:
a variance parameter that stops at 1e-4 instead of 0 changes the criterion
by ~1e-8.

For GLMMs the simulation is the family's (lme4's ``simulate``): η* = o + Xβ̂ + Σₜ Zₜ Λ̂ₜ u,
y* ~ binomial(trials, μ*)/trials or Poisson(μ*); each refit is the second stage of a
fit (θ and β, PIRLS inside, nAGQ as fitted) from the model's own estimate, with β measured
in its standard errors, and T* is the difference of the −2 logLik.

Replicate i draws from its own generator, seeded with the i-th child of
``numpy.random.SeedSequence(seed)`` (``SeedSequence(seed, spawn_key=(i,))``),
so the result depends only on the seed and N — not on the number of worker
processes or on the order in which replicates finish.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..control import DEFAULT, Control
from ..engine.factor import criterion, criterion_working
from ..engine.linalg import whitening
from ..engine.optimize import OptSummary, run
from ..errors import UsageError
from .pool import replicate_rng, run_pool

CHUNK = 8  # replicates per task sent to a worker
# (each refit's tolerances and limit are the fitted model's ``Control``: refit_ftol and friends)


@dataclass
class LmmRefit:
    """What a worker needs to refit one LMM: its structure and start, nothing tied to a frame."""

    structure: object
    theta: np.ndarray
    reml: bool
    control: Control = DEFAULT
    working: bool = False  # theta (the start, and the θ̂* returned) is the working θ̃, not lme4's θ
    # stopping rules instead of the control's refit_ftol/refit_xtol (the power simulation's tests
    # want θ̂* as precise as a full fit's)
    ftol: float | None = None
    xtol: float | None = None

    def refit(self, y: np.ndarray) -> float:
        """The minimum criterion for response ``y``: BOBYQA from the model's own estimate."""
        return self.fit(y)[1]

    def fit(self, y: np.ndarray):
        """(θ̂*, criterion, structure) for response ``y`` (θ̂* in the parameterisation of ``theta``)."""
        st = self.structure.with_response(y)
        start = np.maximum(self.theta, st.theta_lower)
        c = self.control
        summary = OptSummary(start=start, lower=st.theta_lower, upper=st.theta_upper, initial_step=np.maximum(0.2 * np.abs(start), 0.02),
                             ftol_abs=c.refit_ftol if self.ftol is None else self.ftol, ftol_rel=0.0,
                             xtol_abs=c.refit_xtol if self.xtol is None else self.xtol, max_eval=c.refit_max_eval,
                             control=c)
        crit = criterion_working if self.working else criterion
        theta, f, _ = run(summary, lambda th: crit(st, th, self.reml))
        return np.asarray(theta, dtype=float), (f if f < 1e300 else math.nan), st

    def parameters(self, y: np.ndarray) -> np.ndarray:
        """The refitted model's SDs and correlations (term by term, lower triangle column by
        column), σ and β, in the order of lme4's ``confint()`` (and ``profile_parameters``)."""
        from ..engine.factor import evaluate

        theta, f, st = self.fit(y)
        if not math.isfinite(f):
            return np.full(self.width, np.nan)
        fac = evaluate(st, theta, full=False)
        sigma = math.sqrt(fac.pwrss / (st.n - st.p if self.reml else st.n))
        return np.concatenate([_sd_cor(st, theta, sigma), [sigma], fac.fixef()])

    @property
    def width(self) -> int:
        return self.structure.n_sdcor + 1 + self.structure.p


def _sd_cor(st, theta: np.ndarray, sigma: float) -> np.ndarray:
    """Each term's SDs and correlations (lower triangle, column by column) of σ²ΛΛᵀ, lme4's θ."""
    from ..engine.structure import lower_indices, sd_cor

    out = []
    for term, lam in zip(st.terms, st.lambdas(theta)):
        sd, cor = sd_cor(lam, sigma)  # (an undefined correlation is NaN: the replicate counts as failed)
        rows, cols = lower_indices(term.k)
        out.extend(np.where(rows == cols, sd[rows], cor[rows, cols]))
    return np.array(out, dtype=float)


@dataclass
class GlmmRefit:
    """The same for a GLMM: its data (y replaced per replicate), working θ̃, β̂, nAGQ, and a
    Cholesky factor of Var(β̂): β is searched as β̂ + basis·δ (uncorrelated, unit-free δ, as in
    ``GlmmModel.fit``)."""

    data: object  # engine.pirls.GlmmData
    theta_w: np.ndarray
    beta: np.ndarray
    basis: np.ndarray
    nagq: int

    def refit(self, y: np.ndarray) -> float:
        """The minimum −2 logLik for response ``y``: (θ̃, β) from the estimate, PIRLS inside."""
        return self.fit(y)[1]

    def parameters(self, y: np.ndarray) -> np.ndarray:
        """The refitted model's SDs and correlations (the random effects' own scale: no σ) and β,
        in the order of lme4's ``confint()`` for a glmer fit."""
        par, f = self.fit(y)
        if not math.isfinite(f):
            return np.full(self.width, np.nan)
        st = self.data.st
        k = st.n_theta
        theta = st.to_user(par[:k])
        return np.concatenate([_sd_cor(st, theta, 1.0), self.beta + self.basis @ par[k:k + len(self.beta)]])

    @property
    def width(self) -> int:
        return self.data.st.n_theta + len(self.beta)

    def fit(self, y: np.ndarray):
        """((θ̃, δ) at the optimum, −2 logLik) for response ``y``; β = β̂ + basis·δ. An nbinom1 fit's
        refits estimate φ too (log φ a last coordinate, from the estimate: the criterion is
        glmmTMB's, whose φ is one of its parameters); nbinom2's hold k, as lme4's bootMer does."""
        from ..engine.glmm_criterion import GlmmCriterion, with_log_dispersion
        from ..engine.pirls import GlmmData
        from ..family import DISPERSION_STEP

        d = self.data
        criterion = GlmmCriterion(GlmmData(d.st, d.x, y, d.wt, d.offset, d.family, control=d.control))
        k, p = len(self.theta_w), len(self.beta)
        with_phi = d.family.observed_information

        def fn(par):
            value, m = criterion.value(par[:k], self.beta + self.basis @ par[k:k + p], self.nagq)
            return value if m.converged else math.inf  # (a refit does not stand on modes PIRLS did not reach)

        if with_phi:
            fn = with_log_dispersion(fn, criterion.set_dispersion)

        extra = [math.log(d.family.k)] if with_phi else []
        start = np.concatenate([self.theta_w, np.zeros(p), extra])
        lower = np.concatenate([d.st.theta_lower, np.full(p, -np.inf), [-np.inf] * len(extra)])
        step = np.concatenate([np.maximum(0.2 * np.abs(self.theta_w), 0.02), np.full(p, 0.5),
                               [DISPERSION_STEP] * len(extra)])
        c = d.control
        summary = OptSummary(start=np.maximum(start, lower), lower=lower, initial_step=step, ftol_abs=c.refit_ftol,
                             ftol_rel=0.0, xtol_abs=c.refit_xtol, max_eval=c.refit_max_eval, control=c)
        par, f, _ = run(summary, fn)
        return np.asarray(par, dtype=float), (f if f < 1e300 else math.nan)


@dataclass
class SimulationJob:
    small: object  # LmmRefit or GlmmRefit
    big: object
    mean: np.ndarray  # o + Xβ̂ of the smaller model
    sigma: float  # (1 for a GLMM)
    lambdas: list  # the smaller model's Λ̂ₜ for the structure's standardised columns (engine_lambdas)
    seed: int
    family: object = None  # a GLMM's family (None: gaussian)
    trials: np.ndarray | None = None  # a binomial GLMM's prior weights
    parameters: bool = False  # replicate the smaller model's parameters (intervals), not T*
    scale: float | None = None  # a Gamma GLMM's scale (lme4's sigma(): shape 1/σ²)


@dataclass
class BootstrapResult:
    statistic: float  # the observed T
    replicates: np.ndarray  # T* of every replicate (NaN if a refit failed)
    seed: int
    reml: bool
    seconds: float = 0.0
    workers: int = 1
    failed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.replicates)

    @property
    def exceed(self) -> int:
        """#{T* ≥ T}, with a tolerance of the optimiser's precision."""
        t = self.replicates[np.isfinite(self.replicates)]
        return int(np.sum(t >= self.statistic - 1e-6))

    @property
    def p_value(self) -> float:
        valid = int(np.isfinite(self.replicates).sum())
        return (1.0 + self.exceed) / (valid + 1.0)


def simulate_response(job: SimulationJob, rng: np.random.Generator) -> np.ndarray:
    """One y* from the smaller model's fit (terms in order, then the residuals or the family's draw)."""
    st = job.small.structure if job.family is None else job.small.data.st
    eta = job.mean.copy()
    for term, lam in zip(st.terms, job.lambdas):
        u = rng.standard_normal((term.n_levels, term.k))
        b = job.sigma * (u @ lam.T)  # (levels, k): rows are σΛu
        eta += np.einsum("nk,nk->n", term.z, b[term.codes])
    if job.family is None:
        return eta + job.sigma * rng.standard_normal(len(eta))
    with np.errstate(over="ignore"):
        mu = job.family.link.linkinv(eta)
    if job.family.name == "binomial":
        trials = np.round(job.trials).astype(np.int64)
        return np.divide(rng.binomial(trials, np.clip(mu, 0.0, 1.0)), trials, out=np.zeros(len(mu)),
                         where=trials > 0)
    if job.family.name == "nbinom2":  # (size k, mean μ: lme4's and MASS's rnegbin)
        k = job.family.k
        return rng.negative_binomial(k, k / (k + np.minimum(mu, 1e15))).astype(float)
    if job.family.name == "nbinom1":  # (glmmTMB's: size μ/φ, probability 1/(1 + φ); mean μ, variance μ(1 + φ))
        phi = job.family.k
        return rng.negative_binomial(np.minimum(mu, 1e15) / phi, 1.0 / (1.0 + phi)).astype(float)
    if job.family.name == "Gamma":  # (lme4's simulate(): shape 1/σ², mean μ)
        shape = 1.0 / job.scale**2
        return rng.gamma(shape, np.maximum(mu, 0.0) / shape)
    return rng.poisson(np.minimum(mu, 1e15)).astype(float)


def replicate(job: SimulationJob, i: int):
    """T* of replicate i (or, for intervals, the refitted parameters)."""
    rng = replicate_rng(job.seed, i)
    y = simulate_response(job, rng)
    if job.parameters:
        try:
            with np.errstate(all="ignore"):
                return job.small.parameters(y)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            return np.full(job.small.width, np.nan)
    try:
        with np.errstate(all="ignore"):
            d_small = job.small.refit(y)
            d_big = job.big.refit(y)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
        return math.nan
    if not (math.isfinite(d_small) and math.isfinite(d_big)):
        return math.nan
    return max(0.0, d_small - d_big)


def make_job(small, big, reml: bool, seed: int, parameters: bool = False) -> SimulationJob:
    """The simulation and refit specification for two fitted models (``LmmResult`` or
    ``GlmmResult``), simulating from ``small``; with ``parameters`` (and ``big`` None), for
    replicating ``small``'s parameters (bootstrap intervals) instead of T*."""
    if small.is_glmm:
        if small.family == "Gamma":
            # (lme4's simulate(), the only reference, draws a Gamma GLMM's random effects without the σ
            # its VarCorr includes, and 1.1-31 uses shape σw (lme4 #782): bootMer's intervals of an
            # SD lie above the estimate, and σ-scaled draws miss it too (see the README))
            raise UsageError("the parametric bootstrap simulates binomial, Poisson, nbinom2 and nbinom1 GLMMs; not Gamma, "
                             "whose only reference (lme4's simulate) draws the random effects without the σ of the fit; "
                             "for a Gamma fit use Wald intervals, or the likelihood-ratio test without the bootstrap")
        return _glmm_job(small, big, seed, parameters)
    st = small.structure
    beta = np.array([f.estimate for f in small.fixef])
    mean = st.xy[:, : st.p] @ beta if st.p else np.zeros(st.n)
    return SimulationJob(
        small=LmmRefit(st, np.asarray(small.theta, float), reml, small.control),
        big=None if big is None else LmmRefit(big.structure, np.asarray(big.theta, float), reml, big.control),
        mean=mean,
        sigma=float(small.sigma),
        lambdas=[np.array(l) for l in st.engine_lambdas(np.asarray(small.theta, float))],
        seed=int(seed),
        parameters=parameters,
    )


def _glmm_spec(m) -> GlmmRefit:
    beta = np.array([f.estimate for f in m.fixef])
    basis = whitening(np.asarray(m.vcov, float)) if len(beta) else np.zeros((0, 0))
    return GlmmRefit(m.data, m.structure.to_working(np.asarray(m.theta, float)), beta, basis, m.nagq)


def _glmm_job(small, big, seed: int, parameters: bool) -> SimulationJob:
    data = small.data
    beta = np.array([f.estimate for f in small.fixef])
    mean = data.offset + (data.x @ beta if len(beta) else 0.0)
    theta = np.asarray(small.theta, float)
    return SimulationJob(small=_glmm_spec(small), big=None if big is None else _glmm_spec(big), mean=mean, sigma=1.0,
                lambdas=[np.array(l) for l in data.st.engine_lambdas(theta)], seed=int(seed),
                family=data.family, trials=data.wt, parameters=parameters,
                scale=small.dispersion if data.family.has_scale else None)


def bootstrap_lrt(small, big, n: int, seed: int, reml: bool = False, statistic: float | None = None,
                  workers: int | None = None, progress=None) -> BootstrapResult:
    """Parametric bootstrap of T = 2·max(0, ΔlogLik) between fitted models ``small`` ⊂ ``big``.

    ``progress(done, total)`` is called as replicates complete. ``workers``
    processes (default: the CPUs this process may use) share the replicates.
    """
    import time

    if n < 1:
        raise ValueError("the number of bootstrap replicates must be at least 1")
    t0 = time.perf_counter()
    if statistic is None:
        statistic = max(0.0, 2.0 * (big.loglik - small.loglik))
    job = make_job(small, big, reml, seed)
    out, workers = run_replicates(job, n, workers, progress)
    failed = int(np.isnan(out).sum())
    notes = []
    if failed:
        notes.append(f"{failed} of {n} bootstrap refits failed and were left out")
    return BootstrapResult(float(statistic), out, int(seed), reml, time.perf_counter() - t0, workers, failed, notes)


def run_replicates(job: SimulationJob, n: int, workers: int | None = None, progress=None):
    """Replicates 0..n−1 of ``job`` on ``workers`` processes (``pool.run_pool``): (results, workers
    used); results are (n,) for T*, (n, width) for parameters, NaN where a refit failed."""
    return run_pool(replicate, job, n, job.small.width if job.parameters else None, workers, progress)
