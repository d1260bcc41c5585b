"""The gradient in β of the Laplace deviance, analytically, for the canonical links.

At fixed θ the Laplace deviance is L(β) = −2 log f(y | û) + ‖û‖² + log|M| + C, with û(β) PIRLS's
conditional modes and M = ΛᵀZᵀWZΛ + I at them (W the working weights). Write η = o + Xβ + ZΛû.

* û minimises the penalised deviance, so û's own movement does not change its first two terms
  (the envelope theorem): their gradient is −2 Xᵀr, r = w (y − μ) (the score's working
  residuals: under a canonical link dμ/dη = V(μ)).
* log|M| moves with every η_i through W: ∂ log|M| / ∂η_i = (∂W_i/∂η_i) h_i, h_i = z̃_iᵀ M⁻¹ z̃_i
  (z̃_i the row of ZΛ; h_i is a leverage, from the blocks of M⁻¹ on L's pattern, the selected
  inverse). η moves with β directly (X) and through û: differentiating the modes' equation
  ΛᵀZᵀr(η) = û gives dû/dβ = −M⁻¹ΛᵀZᵀWX (the observed information is W for a canonical link).

So with v_i = (∂W_i/∂η_i) h_i,

    ∂L/∂β = Xᵀ (−2r + v − W ∘ ZΛ M⁻¹ ΛᵀZᵀ v),

one solve with the factor PIRLS already made. For a canonical link W = w V(μ), so
∂W/∂η = w V′(μ) V(μ): w μ(1 − μ)(1 − 2μ) for the logit, w μ for the log link.

Used by ``GlmmModel.hessian``: the standard errors' Hessian in (θ, β) then takes the β rows
from differences of this gradient (2 evaluations a direction and level) instead of the
deviance's differences in every pair of parameters. Other links (whose observed and expected
information differ), NB1's observed-information Laplace term, dispersion families and
adaptive quadrature keep the deviance's differences.
"""

from __future__ import annotations

import numpy as np

from .linalg import grouped_cross
from .pirls import GlmmData, Modes


def available(data: GlmmData, nagq: int) -> bool:
    """Whether ``beta_gradient`` is the gradient of the criterion the fit evaluates at ``nagq``."""
    return nagq == 1 and data.canonical and not data.family.free_dispersion


def beta_gradient(data: GlmmData, m: Modes) -> np.ndarray:
    """∂L/∂β at the modes ``m`` (PIRLS converged at fixed β), L the Laplace deviance."""
    st, fam = data.st, data.family
    lam = st.lambdas(m.theta)
    rows = _rows_of_z_lambda(st, lam)
    fac = m.factor
    lev = _leverages(st, fac.selected_inverse(), rows)
    mu, wt = m.mu, data.wt
    var = fam.variance(mu)
    if fam.name == "binomial":
        dw = wt * var * (1.0 - 2.0 * mu)
    else:  # Poisson, log link
        dw = wt * mu
    v = dw * lev
    # ΛᵀZᵀv per term, (k, 1, q), then M⁻¹ of it, back to the rows as ZΛ M⁻¹ΛᵀZᵀv
    rhs = [grouped_cross(t.codes, t.n_levels, a, v[:, None])[:, :, :] for t, a in zip(st.terms, rows)]
    sol = fac.solve(rhs)
    back = np.zeros(st.n)
    for t, a, s in zip(st.terms, rows, sol):
        back += np.einsum("nk,kn->n", a, s[:, 0, t.codes])
    r = wt * (data.y - mu)
    return data.x.T @ (-2.0 * r + v - m.weights * back)


def _rows_of_z_lambda(st, lam: list[np.ndarray]) -> list[np.ndarray]:
    """Each term's block of the rows of ZΛ, (n, k_t): z_t,i Λ_t."""
    out = []
    for i, (t, l) in enumerate(zip(st.terms, lam)):
        cols = st.term_columns(i)
        if cols is None:
            out.append(np.full((st.n, 1), float(l[0, 0])))
        else:
            out.append(cols @ l)
    return out


def _leverages(st, sel, rows: list[np.ndarray]) -> np.ndarray:
    """h_i = z̃_iᵀ M⁻¹ z̃_i from the selected inverse's blocks: each term's own block at the row's
    level, and each pair of terms' block between the row's two levels (on L's pattern: nested
    chain levels, chain and dense, dense and dense)."""
    terms = st.terms
    nc = st.n_chain
    lev = np.zeros(st.n)

    def dense_index(d):
        t = terms[d]
        return st.dense_offsets[d] + t.codes[:, None] * t.k + np.arange(t.k)[None, :]

    for t in range(len(terms)):
        a = rows[t]
        g = sel.diag[t][:, :, terms[t].codes]  # (k, k, n)
        lev += np.einsum("ia,abi,ib->i", a, g, a)
        for s in range(t):
            b = rows[s]
            if t < nc:  # both chain: the block between s's level and the level of t containing it
                g = sel.cross[(t, s)][:, :, terms[s].codes]  # (k_t, k_s, n)
                lev += 2.0 * np.einsum("ia,abi,ib->i", a, g, b)
            elif s < nc:  # t dense, s chain
                g = sel.dense_chain[s][dense_index(t), :, terms[s].codes[:, None]]  # (n, k_t, k_s)
                lev += 2.0 * np.einsum("ia,iab,ib->i", a, g, b)
            else:  # both dense
                g = sel.dense[dense_index(t)[:, :, None], dense_index(s)[:, None, :]]  # (n, k_t, k_s)
                lev += 2.0 * np.einsum("ia,iab,ib->i", a, g, b)
    return lev
