"""Structured covariances of one random-effects term: a few parameters φ to the term's block Λ.

glmmTMB's structures, for a term with k effects and Σ = σ²ΛΛᵀ its covariance:

* ``diag`` — independent effects, φ = (s₁ … s_k), Λ = diag(s) (sᵢ = SDᵢ/σ, ≥ 0);
* ``cs`` — heterogeneous compound symmetry, one correlation ρ between every pair, φ = (s₁ … s_k, ρ),
  Λ = diag(s) F with F the symmetric root of R = (1 − ρ)I + ρJ,
  F = √(1 − ρ)(I − J/k) + √(1 + (k − 1)ρ) J/k; ρ ∈ [−1/(k − 1), 1] (R positive semi-definite);
* ``ar1`` — one SD, correlation ρ^|i − j| between the i-th and j-th effects (occasions), φ = (s, ρ),
  Λ = s C with C the Cholesky factor of R, which for an AR(1) process is closed-form
  (x₀ = e₀, xᵢ = ρxᵢ₋₁ + √(1 − ρ²)eᵢ): C[i, 0] = ρⁱ, C[i, j] = ρ^(i−j)√(1 − ρ²) for 1 ≤ j ≤ i;
  ρ ∈ [−1, 1].

Both closed forms hold on the whole closed range, so the bounds are the parameters' own (at
ρ = 1 the term is singular, as lme4's θ = 0) and the optimiser needs no transformation.
glmmTMB optimises log SDs and a transformed ρ instead (ar1: ρ = x/√(1 + x²); cs: a scaled
logit); the model, and so the optimum, are the same.

``jacobian`` gives ∂Λ/∂φ (k × k × len(φ)) for the analytic gradient's chain rule
(``engine.gradient``). A term without a structure (lme4's, glmmTMB's ``us``) is not handled
here: its parameters are the entries of Λ itself (``structure.ModelStructure``).
"""

from __future__ import annotations

import numpy as np

KINDS = ("diag", "cs", "ar1")


def n_params(kind: str, k: int) -> int:
    return {"diag": k, "cs": k + 1, "ar1": 2}[kind]


def is_sd(kind: str, k: int) -> np.ndarray:
    """Which parameters are relative SDs (bounded below by 0, their zero a singular fit)."""
    out = np.ones(n_params(kind, k), dtype=bool)
    if kind != "diag":
        out[-1] = False
    return out


def bounds(kind: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    lower = np.zeros(n_params(kind, k))
    upper = np.full(n_params(kind, k), np.inf)
    if kind == "ar1":
        lower[-1], upper[-1] = -1.0, 1.0
    elif kind == "cs":
        lower[-1], upper[-1] = -1.0 / (k - 1), 1.0
    return lower, upper


def start(kind: str, k: int) -> np.ndarray:
    """SDs 1 and ρ 0 (lme4's start: Λ = I)."""
    out = np.ones(n_params(kind, k))
    if kind != "diag":
        out[-1] = 0.0
    return out


def correlation_at_bound(kind: str, k: int, phi: np.ndarray, tol: float) -> bool:
    """Whether the structure's correlation is within ``tol`` of a bound that makes R singular."""
    if kind == "diag":
        return False
    lo, hi = bounds(kind, k)
    rho = float(phi[-1])
    return rho > hi[-1] - tol or rho < lo[-1] + tol


def _cs_root(k: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """F and ∂F/∂ρ for compound symmetry."""
    j = np.full((k, k), 1.0 / k)
    centred = np.eye(k) - j
    a, b = np.sqrt(max(1.0 - rho, 0.0)), np.sqrt(max(1.0 + (k - 1) * rho, 0.0))
    f = a * centred + b * j
    da = -0.5 / a if a > 0 else 0.0
    db = 0.5 * (k - 1) / b if b > 0 else 0.0
    return f, da * centred + db * j


def _ar1_factor(k: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """C and ∂C/∂ρ for AR(1)."""
    i, j = np.indices((k, k))
    lag = i - j
    lower = lag >= 0
    power = np.where(lower, np.power(rho, np.maximum(lag, 0)), 0.0)
    dpower = np.where(lower & (lag > 0), lag * np.power(rho, np.maximum(lag - 1, 0)), 0.0)
    c = np.sqrt(max(1.0 - rho * rho, 0.0))
    dc = -rho / c if c > 0 else 0.0
    scale = np.where(j == 0, 1.0, c)
    dscale = np.where(j == 0, 0.0, dc)
    return power * scale, dpower * scale + power * dscale


def lam(kind: str, k: int, phi: np.ndarray) -> np.ndarray:
    """The term's Λ (k × k) for parameters φ."""
    phi = np.asarray(phi, dtype=float)
    if kind == "diag":
        return np.diag(phi)
    if kind == "cs":
        return phi[:k, None] * _cs_root(k, float(phi[k]))[0]
    return phi[0] * _ar1_factor(k, float(phi[1]))[0]


def jacobian(kind: str, k: int, phi: np.ndarray) -> np.ndarray:
    """∂Λ/∂φ: (k, k, len(φ))."""
    phi = np.asarray(phi, dtype=float)
    out = np.zeros((k, k, len(phi)))
    if kind == "diag":
        out[np.arange(k), np.arange(k), np.arange(k)] = 1.0
    elif kind == "cs":
        f, df = _cs_root(k, float(phi[k]))
        out[np.arange(k), :, np.arange(k)] = f  # ∂Λ/∂sₐ: row a of F
        out[:, :, k] = phi[:k, None] * df
    else:
        c, dc = _ar1_factor(k, float(phi[1]))
        out[:, :, 0] = c
        out[:, :, 1] = phi[0] * dc
    return out


def param_names(kind: str, group: str, names: list[str]) -> list[str]:
    """Names of the parameters, in the style of lme4's θ names (``Subject.(Intercept)``)."""
    if kind == "diag":
        return [f"{group}.{n}" for n in names]
    if kind == "cs":
        return [f"{group}.{n}" for n in names] + [f"{group}.rho(cs)"]
    return [f"{group}.sd(ar1)", f"{group}.rho(ar1)"]
