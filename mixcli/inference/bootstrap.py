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

Replicate i draws from its own generator, seeded with the i-th child of
``numpy.random.SeedSequence(seed)`` (``SeedSequence(seed, spawn_key=(i,))``),
so the result depends only on the seed and N — not on the number of worker
processes or on the order in which replicates finish.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..engine.factor import criterion
from ..engine.optimize import OptSummary, run

CHUNK = 8  # replicates per task sent to a worker
FTOL = 1e-8  # on the criterion, per refit
XTOL = 1e-8
MAX_EVAL = 20_000


@dataclass
class _Spec:
    """What a worker needs for one model: its structure and start, nothing tied to a frame."""

    structure: object
    theta: np.ndarray


@dataclass
class _Job:
    small: _Spec
    big: _Spec
    mean: np.ndarray  # Xβ̂ of the smaller model
    sigma: float
    lambdas: list  # the smaller model's Λ̂ₜ for the structure's standardised columns (engine_lambdas)
    reml: bool
    seed: int


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


def simulate_response(job: _Job, rng: np.random.Generator) -> np.ndarray:
    """One y* from the smaller model's fit (terms in order, then the residuals)."""
    y = job.mean.copy()
    for term, lam in zip(job.small.structure.terms, job.lambdas):
        u = rng.standard_normal((term.n_levels, term.k))
        b = job.sigma * (u @ lam.T)  # (levels, k): rows are σΛu
        y += np.einsum("nk,nk->n", term.z, b[term.codes])
    y += job.sigma * rng.standard_normal(len(y))
    return y


def _refit(spec: _Spec, y: np.ndarray, reml: bool) -> float:
    """The minimum criterion for response ``y``: BOBYQA from the model's own estimate."""
    st = spec.structure.with_response(y)
    start = np.maximum(spec.theta, st.theta_lower)
    summary = OptSummary(start=start, lower=st.theta_lower, initial_step=np.maximum(0.2 * np.abs(start), 0.02),
                         ftol_abs=FTOL, ftol_rel=0.0, xtol_abs=XTOL, max_eval=MAX_EVAL)
    _, f, _ = run(summary, lambda th: criterion(st, th, reml))
    return f if f < 1e300 else math.nan


def replicate(job: _Job, i: int) -> float:
    """T* of replicate i."""
    rng = np.random.default_rng(np.random.SeedSequence(job.seed, spawn_key=(i,)))
    y = simulate_response(job, rng)
    try:
        d_small = _refit(job.small, y, job.reml)
        d_big = _refit(job.big, y, job.reml)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
        return math.nan
    if not (math.isfinite(d_small) and math.isfinite(d_big)):
        return math.nan
    return max(0.0, d_small - d_big)


_JOB: _Job | None = None  # the job in a worker process


def _init_worker(job: _Job):
    import signal

    global _JOB
    _JOB = job
    # Ctrl-C goes to the whole process group: the parent stops the pool, workers stay quiet
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # one BLAS thread per process: the work is split across processes already
        from threadpoolctl import threadpool_limits  # type: ignore

        threadpool_limits(1)
    except Exception:  # noqa: BLE001 (optional)
        pass


def _run_chunk(indices):
    return [(i, replicate(_JOB, i)) for i in indices]


def make_job(small, big, reml: bool, seed: int) -> _Job:
    """The simulation and refit specification for two fitted models (``LmmResult``)."""
    st = small.structure
    beta = np.array([f.estimate for f in small.fixef])
    mean = st.xy[:, : st.p] @ beta if st.p else np.zeros(st.n)
    return _Job(
        small=_Spec(st, np.asarray(small.theta, float)),
        big=_Spec(big.structure, np.asarray(big.theta, float)),
        mean=mean,
        sigma=float(small.sigma),
        lambdas=[np.array(l) for l in st.engine_lambdas(np.asarray(small.theta, float))],
        reml=reml,
        seed=int(seed),
    )


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


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
    workers = default_workers() if workers is None else max(1, int(workers))
    workers = min(workers, max(1, n // CHUNK))
    out = np.full(n, np.nan)
    chunks = [range(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
    done = 0
    if workers == 1:
        for idx in chunks:
            for i in idx:
                out[i] = replicate(job, i)
            done += len(idx)
            if progress is not None:
                progress(done, n)
    else:
        import multiprocessing as mp

        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(job,)) as pool:
            for res in pool.imap_unordered(_run_chunk, chunks):
                for i, t in res:
                    out[i] = t
                done += len(res)
                if progress is not None:
                    progress(done, n)
    failed = int(np.isnan(out).sum())
    notes = []
    if failed:
        notes.append(f"{failed} of {n} bootstrap refits failed and were left out")
    return BootstrapResult(float(statistic), out, int(seed), reml, time.perf_counter() - t0, workers, failed, notes)
