"""Parametric bootstrap confidence intervals, as lme4's ``confint(m, method = "boot")``.

lme4 (``bootMer`` with ``use.u = FALSE``, ``type = "parametric"``) simulates N responses from
the fitted model — new random effects and new residuals around Xβ̂ — refits the model to
each (REML or ML, as fitted) and takes percentile intervals of every parameter (SDs,
correlations, σ, β) with ``boot.ci(type = "perc")``: the (N + 1)·α-th order statistic,
interpolated on the normal scale between neighbours when (N + 1)·α is not a whole number
(``boot``'s ``norm.inter``). The simulation and the refits are the bootstrap LRT's
(``inference.bootstrap``: replicate i seeded by SeedSequence(seed, spawn_key=(i,)), every
core, results independent of the number of workers). For a GLMM the responses are the
family's draws around the simulated random effects (lme4's ``simulate``), each refitted in
(θ, β) from the estimate, and there is no σ.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError, option
from .bootstrap import make_job, run_replicates
from .distributions import norm_ppf
from .profile import ProfileInterval, model_parameters


def bootstrap_intervals(m, nsim: int, seed: int, level: float = 0.95, workers: int | None = None,
                        progress=None) -> tuple[list[ProfileInterval], int]:
    """Percentile intervals of every parameter of the fitted LMM or GLMM ``m`` from ``nsim``
    parametric bootstrap refits; returns the intervals (lme4's order and names) and the failed
    refits."""
    if nsim < 1:
        raise UsageError(f"{option('nsim', nsim)}: the bootstrap needs at least 1 replicate")
    st = m.structure
    theta = np.asarray(m.theta, dtype=float)
    beta = np.array([f.estimate for f in m.fixef])
    job = make_job(m, None, m.reml, seed, parameters=True)
    out, _ = run_replicates(job, nsim, workers, progress)
    params = model_parameters(m.frame.terms, st.lambdas(theta), float(m.sigma), [f.term for f in m.fixef], beta)
    if m.is_glmm:  # (no residual SD: the replicates have none either)
        params = [par for par in params if par.kind != "sigma"]
    alpha = (1.0 - level) / 2.0
    intervals = []
    for j, par in enumerate(params):
        lo, hi = percentile_interval(out[:, j], alpha)
        intervals.append(ProfileInterval(par.name, par.kind, par.group, par.term1, par.term2, par.estimate,
                                         lo, hi, level))
    failed = int(np.isnan(out).any(axis=1).sum())
    return intervals, failed


def percentile_interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    """``boot.ci(type = "perc")`` bounds at α and 1 − α of the finite ``values``."""
    t = np.sort(values[np.isfinite(values)])
    if t.size == 0:
        return math.nan, math.nan
    return _norm_inter(t, alpha), _norm_inter(t, 1.0 - alpha)


def _norm_inter(t: np.ndarray, a: float) -> float:
    """The (R + 1)·a-th order statistic of the sorted ``t``, interpolated between neighbours on
    the normal quantile scale; the extremes when (R + 1)·a falls outside 1..R."""
    r = t.size
    rk = (r + 1) * a
    k = int(math.floor(rk + 1e-12))
    if k <= 0:
        return float(t[0])
    if k >= r:
        return float(t[-1])
    if abs(rk - k) < 1e-12:
        return float(t[k - 1])
    z, zk, zk1 = norm_ppf(a), norm_ppf(k / (r + 1)), norm_ppf((k + 1) / (r + 1))
    return float(t[k - 1] + (z - zk) / (zk1 - zk) * (t[k] - t[k - 1]))
