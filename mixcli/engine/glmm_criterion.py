"""The GLMM criterion at (θ̃, β): PIRLS for the conditional modes, then the Laplace (or adaptive
Gauss–Hermite) deviance — one implementation for the fit's optimiser, its Hessian and the
bootstrap's refits.

PIRLS starts from the modes of the last evaluation that converged (neighbouring parameters have
neighbouring modes); where the warm start does not converge, a fresh start from u = 0 is tried
and the better run kept. Modes from a run that did not converge are never reused: PIRLS stopped
on the links' clamps (μ = ε) would hold every later evaluation there. What a caller does with a
run that still did not converge is the caller's rule: the fit counts it and moves on, a bootstrap
refit treats it as +∞.
"""

from __future__ import annotations

import math

import numpy as np

from ..family import MAX_LOG_DISPERSION
from .agq import agq_deviance
from .pirls import GlmmData, Modes, laplace, pirls


class GlmmCriterion:
    """−2 log L of ``data`` at (θ̃, β), with PIRLS's warm starts and the count of its failures."""

    def __init__(self, data: GlmmData):
        self.data = data
        self.last: Modes | None = None  # the last converged modes (warm starts)
        self.runs = 0
        self.failures = 0

    def modes(self, theta_w: np.ndarray, beta: np.ndarray | None) -> Modes:
        """PIRLS at θ̃ and β (None: β updated inside PIRLS too, glmer's nAGQ = 0 stage)."""
        last = self.last
        # (β's warm start only where PIRLS updates β)
        beta0 = last.beta if last is not None and beta is None else None
        m = pirls(self.data, theta_w, beta, u0=last.u if last else None, beta0=beta0)
        if not m.converged and last is not None:
            m = better(m, pirls(self.data, theta_w, beta))
        return m

    def set_dispersion(self, k: float):
        """Evaluate at the family's dispersion k (NB2) or φ (NB1) from now on (warm starts kept)."""
        if k != self.data.family.k:
            self.data = self.data.with_family(self.data.family.with_dispersion(k))

    def value(self, theta_w: np.ndarray, beta: np.ndarray | None, nagq: int) -> tuple[float, Modes]:
        """(−2 log L, the modes): Laplace for nAGQ ≤ 1, adaptive quadrature above."""
        m = self.modes(theta_w, beta)
        self.runs += 1
        if not m.converged:
            self.failures += 1
        value = agq_deviance(self.data, m, nagq) if nagq > 1 else laplace(self.data, m)
        if math.isfinite(value) and m.converged:
            self.last = m
        return value, m


def with_log_dispersion(fn, set_dispersion):
    """``fn`` of the other parameters as a function of them and log k (or log φ) last, the family's
    dispersion set through ``set_dispersion`` before each call (+∞ beyond ``MAX_LOG_DISPERSION``):
    the fit's second stage, the profiles' and the bootstrap's refits of a negative binomial."""
    def at(par):
        if not abs(par[-1]) < MAX_LOG_DISPERSION:
            return math.inf
        set_dispersion(math.exp(par[-1]))
        return fn(par[:-1])
    return at


def better(a: Modes, b: Modes) -> Modes:
    """Of two PIRLS runs at the same parameters (a warm and a fresh start): a converged one,
    else the lower penalised deviance."""
    if a.converged != b.converged:
        return a if a.converged else b
    return a if a.pdev <= b.pdev else b
