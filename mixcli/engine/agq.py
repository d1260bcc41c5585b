"""Adaptive Gauss–Hermite quadrature for a GLMM with one scalar random-effects term.

With a single scalar term the integral over the random effects factorises
over the groups: for group j, with mode ûⱼ and conditional SD sⱼ = 1/Lⱼⱼ (L the
Cholesky factor at the modes, diagonal here), the N-point rule for the
standard normal density, nodes zₖ and weights wₖ (Σwₖ = 1), gives

    −2 log Lⱼ = Dⱼ(ûⱼ) + 2 log Lⱼⱼ − 2 log Σₖ wₖ exp(zₖ²/2 − (Dⱼ(ûⱼ + sⱼzₖ) − Dⱼ(ûⱼ))/2),

Dⱼ(u) = Σ_{i∈j} devresid(yᵢ, μᵢ(u)) + u². N = 1 (z = 0) is the Laplace
approximation. As lme4's glmerAGQ, the deviance residuals are taken relative
to the saturated model, so for binomial counts and Poisson data −2 log L at
N > 1 omits the saturated log-likelihood that the Laplace value (N = 1, from
the family's aic) includes; for 0/1 data they agree.
"""

from __future__ import annotations

import math

import numpy as np

from .pirls import GlmmData, Modes, random_part

MAX_NODES = 25


def normal_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point Gauss–Hermite rule for the standard normal density."""
    from numpy.polynomial.hermite_e import hermegauss

    z, w = hermegauss(n)
    return z, w / math.sqrt(2.0 * math.pi)


def agq_deviance(data: GlmmData, modes: Modes, n_nodes: int) -> float:
    """−2 log L by adaptive Gauss–Hermite quadrature at the modes of one scalar term."""
    st = data.st
    term = st.terms[0]
    lam = st.lambdas(modes.theta)  # (the working θ̃'s own blocks)
    fac = modes.factor
    if fac is None or not fac.ok:
        return math.inf
    diag_l = fac.lss[0][0, 0] if fac.lss[0] is not None else None
    if diag_l is None or not np.all(np.isfinite(diag_l)):
        return math.inf
    z, w = normal_rule(n_nodes)
    u0 = modes.u[0][0]  # (q,)
    sd = 1.0 / diag_l
    fixed_part = modes.eta - random_part(st, lam, modes.u)  # o + Xβ
    scale = term.z[:, 0] * lam[0][0, 0]
    codes = term.codes
    q = term.n_levels

    def devc(u):
        eta = fixed_part + scale * u[codes]
        mu = data.family.link.linkinv(eta)
        dev = data.dev_resids(mu)
        return np.bincount(codes, weights=dev, minlength=q) + u * u

    with np.errstate(all="ignore"):
        d0 = devc(u0)
        mult = np.zeros(q)
        for zk, wk in zip(z, w):
            if zk == 0.0:
                mult += wk
            else:
                mult += wk * np.exp(0.5 * zk * zk - 0.5 * (devc(u0 + zk * sd) - d0))
        value = float(np.sum(d0) + fac.logdet_z - 2.0 * np.sum(np.log(mult)))
    return value if math.isfinite(value) else math.inf
