"""The analytic gradient of the profiled criteria, on the blocked factor.

With A = ΛᵀGΛ + I (G = ZᵀZ, Λ block-diagonal with one block Λₜ per level of
term t; Λₜ may be any k×k matrix, see ``ModelStructure.engine_lambdas``):

* log|A|: d log|A| = 2 tr(A⁻¹ΛᵀG dΛ) = 2 Σⱼ tr(Hⱼ dΛⱼ), Hⱼ = (A⁻¹ΛᵀG)ⱼⱼ. The sum
  defining Hⱼ runs over the levels l with Gⱼₗ ≠ 0 (the level itself, the levels
  containing it and contained in it along the nesting chain, the crossed levels
  it meets), and needs A⁻¹ only on those blocks: the selected inverse that also
  gives the conditional variances (``Factorization.selected_inverse``).
* REML adds log|R_X|²: log|A| + log|R_X|² = log det M, M the system with X
  appended; the same formula holds with Hⱼ replaced by
  Hⱼ − K_{X,j} C W_{X,j}ᵀ, where K = A⁻¹ΛᵀZᵀX, C = (R_XᵀR_X)⁻¹ and
  W_X = Zᵀ(X − ZΛK) (from the blocks of M⁻¹ = [[A⁻¹ + KCKᵀ, −KC], [−CKᵀ, C]]).
* r² = min over (u, β) of ‖y − Xβ − ZΛu‖² + ‖u‖², so by the envelope theorem
  dr² = −2 rᵀZ dΛ û = −2 Σⱼ (Zᵀr)ⱼᵀ dΛⱼ ûⱼ with r the residual at (û, β̂). Zᵀr is
  ZᵀXy − GΛK_{Xy} at (β̂, 1): one back-substitution with p + 1 right-hand sides
  (K_{Xy} = A⁻¹ΛᵀZᵀ[X y]) and one product with G.

So the whole gradient costs one selected inversion, one multi-column solve and
one product with G on the pattern of the factor: linear in the number of
levels for nested designs, like the criterion. ``Gradient`` holds it as a k×k
matrix per term (∂/∂Λₜ summed over levels); ``working`` and ``user`` give it
for the optimiser's θ̃ (Λ̃ₜ) and for lme4's θ (MₜΛₜ) by the chain rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import covstruct, linalg
from .factor import Factorization, _lambda_d, profiled_criterion
from .structure import ModelStructure, lower_indices


def worth_gradient(st: ModelStructure, gradient_from: int) -> bool:
    """Whether the analytic gradient pays (``Control.gradient_from``): L-BFGS replaces BOBYQA in
    the fit, and Satterthwaite's Hessian comes from differences of gradients."""
    return st.n_theta >= gradient_from


@dataclass
class Gradient:
    """∂/∂Λₜ (k_t × k_t, summed over the levels of term t) of the pieces of the criterion:
    ``logdet`` (log|L_Z|², plus log|R_X|² for REML), ``pwrss`` (r²), and ``criterion``
    (the REML criterion or ML deviance, ``value``), for the engine's blocks Λₜ."""

    logdet: list[np.ndarray]
    pwrss: list[np.ndarray]
    criterion: list[np.ndarray]
    value: float
    r2: float
    logdet_value: float
    theta: np.ndarray | None = None  # where it was taken (θ̃; the user's θ is the same for a structured term)

    def working(self, st: ModelStructure, which: str = "criterion") -> np.ndarray:
        """The gradient with respect to the working θ̃ (Λ̃ₜ are the engine's blocks)."""
        return _to_theta(st, getattr(self, which), None, self.theta)

    def user(self, st: ModelStructure, which: str = "criterion") -> np.ndarray:
        """The gradient with respect to lme4's θ (the engine's blocks are MₜΛₜ)."""
        return _to_theta(st, getattr(self, which), st.basis_matrices, self.theta)


def _to_theta(st: ModelStructure, mats: list[np.ndarray], left: list[np.ndarray] | None,
              theta: np.ndarray | None = None) -> np.ndarray:
    """∂/∂θ from ∂/∂Λₜ: the entries of Λₜ's lower triangle, or for a structured term (whose
    basis is the identity) the chain rule through ∂Λₜ/∂φ at ``theta``."""
    out = np.empty(st.n_theta)
    for t, d in enumerate(mats):
        term, sl = st.terms[t], st.theta_slices[t]
        if term.structure:
            out[sl] = np.einsum("ab,abj->j", d, covstruct.jacobian(term.structure, term.k, theta[sl]))
            continue
        if left is not None:
            d = left[t].T @ d
        rows, cols = lower_indices(term.k)
        out[sl] = d[rows, cols]
    return out


def gradient(fac: Factorization, reml: bool) -> Gradient:
    """The gradient at the factor's θ (a full factor: ``evaluate(st, θ, full=True)``)."""
    st, lam = fac.st, fac.lam
    p = st.p
    n_terms = len(st.terms)
    k_xy = fac.solve_xy()  # per term (k, p+1, q)
    beta = fac._fixef_centred()
    u_hat = [k[:, p, :] - np.einsum("kpm,p->km", k[:, :p, :], beta) for k in k_xy]
    g_lk = gmul(st, [_lam_times(l, k) for l, k in zip(lam, k_xy)])
    w_xy = [st.zxy[t] - g_lk[t] for t in range(n_terms)]  # Zᵀ([X y] − ZΛK)
    zr = [w[:, p, :] - np.einsum("kpm,p->km", w[:, :p, :], beta) for w in w_xy]  # Zᵀr
    h = pattern_products(fac, fac.selected_inverse())
    if reml and p:
        c = fac.rx_inverse()
        h = [ht - np.einsum("apm,pq,bqm->abm", k[:, :p, :], c, w[:, :p, :]) for ht, k, w in zip(h, k_xy, w_xy)]
    logdet = [2.0 * ht.sum(axis=2).T for ht in h]
    pwrss = [-2.0 * np.einsum("am,bm->ab", z, u) for z, u in zip(zr, u_hat)]
    r2 = fac.pwrss
    m = st.n - p if reml else st.n
    crit = [ld + (m / r2) * pr for ld, pr in zip(logdet, pwrss)]
    logdet_value = fac.logdet_z + (fac.logdet_x if reml else 0.0)
    value = profiled_criterion(logdet_value, r2, m, st.weights_term)
    return Gradient(logdet, pwrss, crit, value, r2, logdet_value, np.asarray(fac.theta, dtype=float))


def _lam_times(lam: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Λ B for every block B (k, c, m)."""
    return linalg.left_lambda(np.ascontiguousarray(lam.T), blocks)


# ------------------------------------------------------------------ G on the pattern


def _dense_matrix(st: ModelStructure, per_term: list[np.ndarray]) -> np.ndarray:
    """The dense terms' (k_d, c, q_d) stacks as one (q_dense, c) matrix (rows level·k + entry)."""
    parts = []
    for d in st.dense:
        b = per_term[d]
        parts.append(b.transpose(2, 0, 1).reshape(-1, b.shape[1]))
    return np.concatenate(parts)


def _dense_stacks(st: ModelStructure, mat: np.ndarray, out: list):
    for d in st.dense:
        t, off = st.terms[d], st.dense_offsets[d]
        out[d] = mat[off: off + t.n_levels * t.k].reshape(t.n_levels, t.k, -1).transpose(1, 2, 0)


def gmul(st: ModelStructure, u: list[np.ndarray]) -> list[np.ndarray]:
    """G U = ZᵀZ U for per-level blocks U (per term (k_t, c, q_t)), by the θ-free sums:
    each level meets itself, the levels containing it and contained in it along the
    chain, and the crossed levels it co-occurs with."""
    nc = st.n_chain
    out: list[np.ndarray | None] = [None] * len(st.terms)
    ud = _dense_matrix(st, u) if st.dense else None
    for s in range(nc):
        acc = linalg.matmul(st.gram[s], u[s])
        for t in range(s + 1, nc):
            acc = acc + np.einsum("tsm,tcm->scm", st.cross[(s, t)], u[t][:, :, st.maps[(s, t)]])
        for r in range(s):
            acc = acc + st.segments[(r, s)].sum(np.einsum("srm,rcm->scm", st.cross[(r, s)], u[r]))
        if st.dense:
            if st.wide:
                acc = acc + np.einsum("kdm,dc->kcm", st.zd_wide[s], ud)
            else:
                for d in st.dense:
                    rows, cols, sums = st.chain_dense_pairs[(s, d)]
                    vals = np.einsum("abp,bcp->acp", sums, u[d][:, :, cols])
                    acc = acc + _scatter(vals, rows, st.terms[s].n_levels)
        out[s] = acc
    if st.dense:
        gd = st.dense_gram @ ud
        for s in range(nc):
            if st.wide:
                gd = gd + np.einsum("kdm,kcm->dc", st.zd_wide[s], u[s])
            else:
                extra: list = [None] * len(st.terms)
                for d in st.dense:
                    rows, cols, sums = st.chain_dense_pairs[(s, d)]
                    vals = np.einsum("abp,acp->bcp", sums, u[s][:, :, rows])
                    extra[d] = _scatter(vals, cols, st.terms[d].n_levels)
                gd = gd + _dense_matrix(st, extra)
        _dense_stacks(st, gd, out)
    return out


def _scatter(vals: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    """Sum (a, b, pairs) values into (a, b, n) by the pairs' ``index``."""
    a, b, _ = vals.shape
    out = np.empty((a, b, n))
    for i in range(a):
        for j in range(b):
            out[i, j] = np.bincount(index, weights=vals[i, j], minlength=n)
    return out


# ------------------------------------------------------------------ Hⱼ = (A⁻¹ΛᵀG)ⱼⱼ


def pattern_products(fac: Factorization, sel) -> list[np.ndarray]:
    """Hⱼ = Σₗ Sⱼₗ Λₗᵀ Gₗⱼ for every level j of every term, as (k_t, k_t, q_t) stacks, from the
    selected inverse S (whose pattern contains G's)."""
    st, lam = fac.st, fac.lam
    nc = st.n_chain
    out: list[np.ndarray | None] = [None] * len(st.terms)
    for s in range(nc):
        acc = linalg.matmul(sel.diag[s], linalg.left_lambda(lam[s], st.gram[s]))
        for t in range(s + 1, nc):  # the level of t containing each level of s
            lg = linalg.left_lambda(lam[t], st.cross[(s, t)])  # Λₜᵀ G_{a(i), i}: (k_t, k_s, q_s)
            acc = acc + np.einsum("tam,tbm->abm", sel.cross[(t, s)], lg)
        for r in range(s):  # the levels of r inside each level of s
            lg = linalg.left_lambda(lam[r], st.cross[(r, s)].transpose(1, 0, 2))  # (k_r, k_s, q_r)
            acc = acc + st.segments[(r, s)].sum(np.einsum("arm,rbm->abm", sel.cross[(s, r)], lg))
        if st.dense:
            dc = sel.dense_chain[s]  # (qd, k_s, q_s): S between the dense effects and each level of s
            if st.wide:
                lz = _lambda_d(st, st.zd_wide[s], lam, 1)  # (k_s, qd, q_s): G_{i,D} Λ_D
                acc = acc + np.einsum("eam,bem->abm", dc, lz)
            else:
                for d in st.dense:
                    rows, cols, sums = st.chain_dense_pairs[(s, d)]
                    kd, off = st.terms[d].k, st.dense_offsets[d]
                    q = linalg.right_lambda(sums, lam[d])  # (k_s, k_d, pairs)
                    gs = dc[off + cols[None, :] * kd + np.arange(kd)[:, None], :, rows[None, :]]  # (k_d, pairs, k_s)
                    vals = np.einsum("cpa,bcp->abp", gs, q)
                    acc = acc + _scatter(vals, rows, st.terms[s].n_levels)
        out[s] = acc
    if st.dense:
        sdd = sel.dense
        pdd = _lambda_d(st, st.dense_gram, lam, 0)  # Λ_DᵀG_DD
        lz = {s: linalg.left_lambda(lam[s], st.zd_wide[s]) for s in range(nc)} if st.wide else {}
        for d in st.dense:
            t, off = st.terms[d], st.dense_offsets[d]
            k, q = t.k, t.n_levels
            acc = np.zeros((k, k, q))
            for x in range(k):
                rows_x = off + np.arange(q) * k + x
                for y in range(k):
                    rows_y = off + np.arange(q) * k + y
                    acc[x, y] = np.einsum("le,el->l", sdd[rows_x], pdd[:, rows_y])
                    for s in range(nc):
                        dc = sel.dense_chain[s]
                        if st.wide:
                            acc[x, y] += np.einsum("lam,alm->l", dc[rows_x], lz[s][:, rows_y])
            if not st.wide:
                for s in range(nc):
                    rows, cols, sums = st.chain_dense_pairs[(s, d)]
                    ls = linalg.left_lambda(lam[s], sums)  # Λₛᵀ G_{i,d} per pair: (k_s, k_d, pairs)
                    gs = sel.dense_chain[s][off + cols[None, :] * k + np.arange(k)[:, None], :, rows[None, :]]
                    vals = np.einsum("xpa,ayp->xyp", gs, ls)
                    acc = acc + _scatter(vals, cols, q)
            out[d] = acc
    return out
