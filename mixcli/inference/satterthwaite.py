"""Satterthwaite's denominator degrees of freedom for fixed-effect t tests, as lmerTest computes them.

For a contrast L β̂ with variance v(φ) = L C(φ) Lᵀ, where C = Var(β̂) is a
function of the variance parameters φ = (θ, σ),

    df = 2 v² / (gᵀ A g),    g = ∂v/∂φ,    A = 2 H⁻¹ = the asymptotic covariance of φ̂,

with H the Hessian of the deviance in φ, *not* profiled over σ (σ not σ², as lmerTest). θ is
the optimiser's unit-free θ̃, not lme4's θ as in lmerTest: the df do not depend on the
parameterisation, but lme4's θ is hopelessly conditioned when a random slope's predictor is far
from zero (``engine.curvature``):

    d(θ, σ) = a(θ) + m·log(2πσ²) + r²(θ)/σ²,   a = log|L_Z|² [+ log|R_X|²],   m = n [− p],

the REML criterion for REML fits (bracketed terms) and the ML deviance for ML
fits, and C(θ, σ) = σ² V(θ) with V = (R_XᵀR_X)⁻¹.

Only a(θ), r²(θ) and V(θ) depend on θ: the fit has differentiated them once
already, to check its optimum (``engine.curvature``: differences of analytic
gradients for models with many covariance parameters, of the criterion's
pieces for the others), and the σ parts are exact:

    ∂²d/∂θᵢ∂θⱼ = aᵢⱼ + r²ᵢⱼ/σ²,   ∂²d/∂θᵢ∂σ = −2 r²ᵢ/σ³,   ∂²d/∂σ² = −2m/σ² + 6r²/σ⁴,
    ∂C/∂θᵢ = σ² Vᵢ,               ∂C/∂σ = 2σ V.

H is inverted as lmerTest does: through its eigen-decomposition, keeping
eigenvalues above 1e-8 (a Moore–Penrose inverse). Eigenvalues near zero (a
flat direction, as in an over-parameterised or singular fit) are left out of
the inverse silently: lme4's singular-fit warning already covers them; clearly
negative ones are the fit's convergence check's to report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..engine.curvature import curvature
from .distributions import t_two_sided

EIGEN_TOL = 1e-8  # lmerTest's tolerance for zero eigenvalues of H


@dataclass
class Satterthwaite:
    """Derivatives of Var(β̂) and the covariance of the variance parameters at the estimate."""

    varpar: np.ndarray  # (θ̃..., σ): the working θ̃ (see the module docstring)
    hessian: np.ndarray  # H, (k+1) × (k+1)
    vcov_varpar: np.ndarray  # A = 2 H⁺
    jacobian: np.ndarray  # ∂C/∂φᵢ, shape (k+1, p, p)
    vcov: np.ndarray  # C = Var(β̂)
    notes: list[str] = field(default_factory=list)

    def df(self, contrast) -> float:
        """Denominator df of the t test of L β̂ for one contrast vector L (length p)."""
        ell = np.asarray(contrast, dtype=float)
        v = float(ell @ self.vcov @ ell)
        g = np.einsum("i,kij,j->k", ell, self.jacobian, ell)
        denom = float(g @ self.vcov_varpar @ g)
        if not denom > 0.0:
            return math.inf if denom == 0.0 and v > 0 else math.nan
        return 2.0 * v * v / denom

    def fixef_df(self) -> np.ndarray:
        """df of each coefficient's t test (L = eᵢ)."""
        p = self.vcov.shape[0]
        return np.array([self.df(np.eye(p)[i]) for i in range(p)])


def satterthwaite(m) -> Satterthwaite:
    """The Satterthwaite machinery for a fitted model (``LmmResult``), from the derivatives
    its fit computed to check its optimum (``m.curvature``; computed here if absent)."""
    st, reml = m.structure, m.reml
    curv = m.curvature if getattr(m, "curvature", None) is not None else curvature(
        st, st.to_working(np.asarray(m.theta, dtype=float)), reml, m.control)
    return from_curvature(curv, float(m.sigma), np.asarray(m.vcov), st.p)


def from_curvature(curv, sigma: float, vcov: np.ndarray, p: int) -> Satterthwaite:
    """The Satterthwaite machinery from the criterion's derivatives at the estimate (``curv``,
    ``engine.curvature``), σ̂ and Var(β̂): what ``satterthwaite(m)`` computes for a fitted model,
    for callers that refit without building a result (the power simulation)."""
    theta = curv.theta
    k = len(theta)
    s2 = sigma * sigma
    h = np.empty((k + 1, k + 1))
    h[:k, :k] = curv.a_hess + curv.r2_hess / s2
    h[:k, k] = h[k, :k] = -2.0 * curv.r2_grad / (s2 * sigma)
    h[k, k] = -2.0 * curv.m / s2 + 6.0 * curv.r2 / (s2 * s2)

    notes = []
    if np.all(np.isfinite(h)):
        vals, vecs = np.linalg.eigh(h)
        # the Moore–Penrose inverse, as lmerTest; flat directions (singular fits) are left out,
        # and a Hessian that is not positive there is the fit's convergence check's to report
        pos = vals > EIGEN_TOL
        a_cov = 2.0 * (vecs[:, pos] / vals[pos]) @ vecs[:, pos].T
    else:
        # (an unbounded likelihood's variances at 1e7, where differences of the criterion overflow:
        # eigh raised "did not converge", an internal error)
        a_cov = np.full((k + 1, k + 1), np.nan)
        notes.append("the Satterthwaite df cannot be computed: the criterion's second derivatives are not finite "
                     "at the estimate (see the warnings)")

    jac = np.zeros((k + 1, p, p))
    for i in range(k):
        jac[i] = s2 * _unpack(curv.v_grad[:, i], p)
    jac[k] = 2.0 * sigma * _unpack(curv.v, p)
    return Satterthwaite(varpar=np.append(theta, sigma), hessian=h, vcov_varpar=a_cov, jacobian=jac, vcov=vcov,
                         notes=notes)


def _unpack(upper: np.ndarray, p: int) -> np.ndarray:
    out = np.zeros((p, p))
    out[np.triu_indices(p)] = upper
    return out + np.triu(out, 1).T


def fixef_tests(m) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Satterthwaite df and two-sided p-values ``Pr(>|t|)`` of every coefficient, and notes."""
    if not m.fixef:
        return np.zeros(0), np.zeros(0), []
    sat = satterthwaite(m)
    df = sat.fixef_df()
    pvals = np.array([t_two_sided(f.t, d) for f, d in zip(m.fixef, df)])
    return df, pvals, sat.notes
