"""The blocked Cholesky factor of lme4's penalised least-squares system, for one θ.

For θ, with Λ block-diagonal and Xy = [X y], we factor

    [ ΛᵀZᵀZΛ + I   ΛᵀZᵀXy ]
    [ XyᵀZΛ        XyᵀXy  ]  =  L Lᵀ

with L lower triangular, blocked by term. Writing ``lss[s]`` for a chain
term's diagonal blocks, ``l[(t, s)]`` for the blocks between chain terms,
``w[s]`` for the transposed blocks between chain term s and Xy, ``wd[s]`` the
same towards the dense (crossed) terms, and ``tail`` for the dense Cholesky
factor of what remains (dense terms, then Xy):

    lss[s]    = chol(ΛₛᵀGₛΛₛ + I − Σ_{r<s} l[s,r] l[s,r]ᵀ)          block-diagonal
    l[(t,s)]  = (ΛₜᵀCₛₜΛₛ − Σ_{r<s} l[t,r] l[s,r]ᵀ) lss[s]⁻ᵀ        one block per level of s
    w[s]      = lss[s]⁻¹ (ΛₛᵀZₛᵀXy − Σ_{r<s} l[s,r] w[r])
    tail      = chol(A_tail − Σₛ w[s]ᵀ w[s])

Each chain term is nested in all later ones, so every sum over r only moves
blocks to the single level of s that contains them (a grouped sum): the work
is linear in the number of levels. The last diagonal entry of ``tail`` is the
square root of the penalised residual sum of squares r², and its X rows and
columns are R_Xᵀ.

All block stacks are entry-major, ``(rows, cols, levels)``; see ``linalg``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import linalg
from .eliminate import FirstBlockElimination, eliminable
from .structure import ModelStructure


@dataclass
class SelectedInverse:
    """Blocks of S = (ΛᵀZᵀZΛ + I)⁻¹ on the pattern of L (``Factorization.selected_inverse``):

    * ``diag[t]`` — the diagonal block of every level of term t, (k_t, k_t, q_t);
    * ``cross[(t, s)]`` — for chain terms s < t, the block between level i of s and the
      level of t containing it, (k_t, k_s, q_s);
    * ``dense_chain[s]`` — for chain term s, the blocks between the dense terms' random
      effects and each level of s, (q_dense, k_s, q_s);
    * ``dense`` — the dense terms' whole block (q_dense × q_dense), or None.
    """

    diag: list
    cross: dict
    dense_chain: dict
    dense: np.ndarray | None


class Factorization:
    """L for one θ, and the quantities the criteria and estimates are made of.

    Fields (blocks of L, see the module docstring):

    * ``st`` the structure, ``theta`` (the θ it was made for: the user's from ``evaluate``,
      the optimiser's θ̃ from ``evaluate_working``), ``lam`` (the blocks the engine uses for
      the standardised columns: MₜΛₜ or Λ̃ₜ), ``user_lam`` (lme4's Λₜ);
    * ``full`` — False when the criterion-only path eliminated the first factor's
      terms (``logdet0`` is then their log|D₀|, and their blocks are absent);
    * ``lss[s]`` chain term s's diagonal blocks (k_s, k_s, q_s); ``l[(t, s)]`` the
      blocks below them for a later chain term t (k_t, k_s, q_s); ``w[s]`` the
      transposed blocks towards Xy (k_s, p+1, q_s);
    * ``wd`` / ``wdd`` (crossed designs) the blocks towards the dense terms,
      sparse or as dense stacks (``wide``);
    * ``tail`` — the dense Cholesky factor of [dense terms, X, y] after the chain:
      its X part is R_Xᵀ, its last diagonal entry √r²;
    * ``ok`` — False when a Cholesky failed (the criterion is then +∞).

    Run under ``np.errstate(all="ignore")`` (``evaluate`` does): a θ at which
    the system is numerically indefinite yields NaNs and an infinite
    criterion, not warnings or exceptions.
    """

    def __init__(self, st: ModelStructure, theta: np.ndarray, lam: list[np.ndarray], user_theta, full: bool = True):
        """Made by ``evaluate`` (the user's θ) and ``evaluate_working`` (θ̃), which give the engine's
        blocks ``lam`` and ``user_theta()``, the user's θ when asked for (``user_lam``)."""
        self.st = st
        self.theta = np.array(theta, dtype=float)
        self._user_theta = user_theta
        # A 2-D θ is a batch of B parameter values factored at once, for the criterion and
        # R_X only (``criteria``): small models spend most of an evaluation in numpy's
        # per-call overhead, which a batch pays once (``linalg``). Not for crossed terms.
        self.batch = self.theta.ndim == 2
        if self.batch and st.dense:
            raise ValueError("crossed (dense) terms are not factored in batches")
        self.lam = lam
        self.ok = True
        self.full = full
        self.logdet0 = 0.0  # log|D₀| of an eliminated first block
        elim = st.elimination(_build_elimination) if not full else None
        if elim is not None:
            self.logdet0, gram, cross, zxy, xtx, dense = elim.reduce(self.lam)
            self._factor_chain(elim.m, gram, cross, zxy)
            self._factor_tail(xtx, dense, elim.scratch)
            if elim.k == 1 or self._well_reduced():
                return
            self.logdet0, self.ok = 0.0, True  # (factored again below, block by block)
        if self.batch:  # (θ-free stacks broadcast along the batch axis)
            self._factor_chain(0, [g[:, :, None, :] for g in st.gram],
                               {key: c[:, :, None, :] for key, c in st.cross.items()},
                               [z[:, :, None, :] for z in st.zxy])
        else:
            self._factor_chain(0, st.gram, st.cross, st.zxy)
        self._factor_tail(st.xtx)

    def _well_reduced(self) -> bool:
        """Whether a two-effect block's elimination left r² to its digits: the factor succeeded and
        r² is not below 1e-6 of the centred response's sum of squares. Below that the random effects
        take up nearly all of y (an unbounded likelihood, θ ~ 1e4 and up), r² is the difference of
        nearly equal sums, and the block's weights Wᵢ — whose rounding grows with (λ²gᵢ) where the
        chain's step divides it out — leave it with a few digits or none (fuzz cases: 0.29 off in
        the criterion, a NaN r²); the factor is then taken block by block, as the chain does."""
        floor = 1e-6 * float(self.st.xtx[-1, -1])
        if not self.batch:  # (Python floats: two np.all on scalars cost 5 µs of a 50 µs evaluation)
            r = float(self.tail[-1, -1])
            return bool(self.ok) and r * r > floor
        return bool(np.all(self.ok) and np.all(self.tail[..., -1, -1] ** 2 > floor))

    # ---------------------------------------------------------------- factor
    def _factor_chain(self, first: int, gram, cross, zxy):
        """Chain terms first..n_chain−1 from the given θ-free sums (reduced ones after elimination)."""
        st, lam = self.st, self.lam
        nc = st.n_chain
        self.lss: list[np.ndarray | None] = [None] * nc
        self.l: dict[tuple[int, int], np.ndarray] = {}
        self.w: list[np.ndarray | None] = [None] * nc
        for s in range(first, nc):
            d = linalg.add_identity(linalg.sandwich(lam[s], gram[s]))
            for r in range(first, s):
                lsr = self.l[(s, r)]
                d -= st.segments[(r, s)].sum(linalg.matmul_t(lsr, lsr))
            lss = linalg.chol_blocks(d)
            self.lss[s] = lss
            for t in range(s + 1, nc):
                y = linalg.sandwich(lam[t], cross[(s, t)], lam[s])
                for r in range(first, s):
                    y -= st.segments[(r, s)].sum(linalg.matmul_t(self.l[(t, r)], self.l[(s, r)]))
                self.l[(t, s)] = linalg.right_solve_lower_t(y, lss)
            wx = linalg.left_lambda(lam[s], zxy[s])
            for r in range(first, s):
                wx = wx - st.segments[(r, s)].sum(linalg.matmul(self.l[(s, r)], self.w[r]))
            self.w[s] = linalg.solve_lower(lss, wx)

    def _factor_tail(self, xtx: np.ndarray, reduced_dense=None, scratch=None):
        if self.batch:
            return self._factor_tail_batch(xtx)
        st = self.st
        sxx = xtx.copy()
        for w in self.w:
            if w is None:
                continue
            for wa in w:
                sxx -= wa @ wa.T
        if not st.dense:
            tail = sxx
        elif reduced_dense is not None:
            tail = self._reduced_dense_tail(sxx, *reduced_dense, scratch=scratch)
        else:
            tail = self._dense_schur(sxx)
        if len(tail) >= linalg.IN_PLACE_FROM and tail.flags.c_contiguous:
            self.ok = linalg.cholesky_in_place(tail)  # (a 3,706-wide tail: 110 MB not copied)
            self.tail = tail if self.ok else np.full_like(tail, np.nan)
            return
        try:
            self.tail = np.linalg.cholesky(tail)
        except np.linalg.LinAlgError:
            self.ok = False
            self.tail = np.full_like(tail, np.nan)

    def _factor_tail_batch(self, xtx: np.ndarray):
        """The tail of every member of a batch: (B, p+1, p+1) factors, NaN where one failed."""
        b = len(self.theta)
        sxx = np.array(np.broadcast_to(xtx, (b,) + xtx.shape[-2:]))
        for w in self.w:
            if w is None:
                continue
            for wa in w:  # (p+1, B, m)
                wt = wa.transpose(1, 0, 2)
                sxx -= wt @ wt.transpose(0, 2, 1)
        try:
            self.tail = np.linalg.cholesky(sxx)
            self.ok = np.ones(b, bool)
        except np.linalg.LinAlgError:
            self.tail = np.full_like(sxx, np.nan)
            self.ok = np.zeros(b, bool)
            for i in range(b):
                try:
                    self.tail[i] = np.linalg.cholesky(sxx[i])
                    self.ok[i] = True
                except np.linalg.LinAlgError:
                    pass

    def criteria(self, reml: bool) -> np.ndarray:
        """The criterion of every member of a batch (+∞ where the factor failed)."""
        n, p = self.st.n, self.st.p
        r2 = self.pwrss
        with np.errstate(all="ignore"):
            val = profiled_criterion(self.logdet_z + (self.logdet_x if reml else 0.0), r2, n - p if reml else n,
                                     self.st.weights_term)
        return np.where(self.ok & (r2 > 0.0) & np.isfinite(val), val, np.inf)

    def _dense_blocks(self, gram_dd: np.ndarray, zx_correction=None):
        """Λ_DᵀG_DDΛ_D + I and Λ_DᵀZ_DᵀXy, before the chain's contribution is subtracted."""
        st, lam = self.st, self.lam
        add = _lambda_d(st, _lambda_d(st, gram_dd, lam, 1), lam, 0)
        add[np.diag_indices(st.q_dense)] += 1.0
        zx = np.concatenate([_rows(st.zxy[d]) for d in st.dense])
        if zx_correction is not None:
            zx = zx + zx_correction
        return add, _lambda_d(st, zx, lam, 0)

    def _reduced_dense_tail(self, sxx, gram_dd, zx_correction, scratch=None):
        """[dense terms, Xy] after eliminating the only chain term (see eliminate)."""
        st = self.st
        if all(st.terms[d].k == 1 for d in st.dense):
            # Λ_D diagonal: Λ_DᵀGΛ_D + I written straight into the tail (no q_dense² temporaries)
            q, m = st.q_dense, sxx.shape[0]
            scale = np.concatenate([np.full(st.terms[d].n_levels, self.lam[d][0, 0]) for d in st.dense])
            # (a wide tail in memory of an earlier evaluation's that nothing holds: linalg.Scratch)
            wide = scratch is not None and q + m >= linalg.IN_PLACE_FROM
            tail = scratch.empty((q + m, q + m)) if wide else np.empty((q + m, q + m))
            top = tail[:q, :q]
            np.multiply(gram_dd, scale[:, None], out=top)
            top *= scale[None, :]
            top[np.diag_indices(q)] += 1.0
            zx = np.concatenate([_rows(st.zxy[d]) for d in st.dense])
            if zx_correction is not None:
                zx = zx + zx_correction
            sdx = zx * scale[:, None]
            tail[:q, q:] = sdx
            tail[q:, :q] = sdx.T
            tail[q:, q:] = sxx
            return tail
        add, sdx = self._dense_blocks(gram_dd, zx_correction)
        return np.block([[add, sdx], [sdx.T, sxx]])

    def _dense_schur(self, sxx: np.ndarray) -> np.ndarray:
        """Schur complement of the chain in [dense terms, Xy], dense terms first.

        The blocks between the chain and the crossed terms are sparse (one
        entry per co-occurring pair of levels), so they go through scipy.sparse;
        the crossed terms' own block is dense.
        """
        st, lam = self.st, self.lam
        add, sdx = self._dense_blocks(st.dense_gram)
        if st.wide:
            return self._dense_schur_wide(add, sdx, sxx)
        import scipy.sparse as sp

        self.wd = []
        for s in range(st.n_chain):
            rhs = _chain_dense_matrix(st, s, lam)
            for r in range(s):
                rhs = rhs - _nested_block_matrix(st, self.l[(s, r)], r, s) @ self.wd[r]
            wd = sp.csr_matrix(_block_diag_matrix(linalg.inv_lower(self.lss[s])) @ rhs)
            self.wd.append(wd)
            add -= (wd.T @ wd).toarray()
            sdx -= wd.T @ _rows(self.w[s])
        return np.block([[add, sdx], [sdx.T, sxx]])

    def _dense_schur_wide(self, add, sdx, sxx):
        """As _dense_schur, with the chain-to-dense blocks as dense (k_s, q_dense, q_s) stacks."""
        st, lam = self.st, self.lam
        self.wdd = []
        for s in range(st.n_chain):
            rhs = linalg.left_lambda(lam[s], _lambda_d(st, st.zd_wide[s], lam, 1))
            for r in range(s):
                rhs = rhs - st.segments[(r, s)].sum(linalg.matmul(self.l[(s, r)], self.wdd[r]))
            wd = linalg.solve_lower(self.lss[s], rhs)
            self.wdd.append(wd)
            for wa, xa in zip(wd, self.w[s]):
                add -= wa @ wa.T
                sdx -= wa @ xa.T
        return np.block([[add, sdx], [sdx.T, sxx]])

    def _dense_rows(self, s: int) -> np.ndarray:
        """L's rows for the dense terms in the columns of chain term s, as (q_dense, k_s, q_s)."""
        st = self.st
        if st.wide:
            return self.wdd[s].transpose(1, 0, 2)
        qs, ks = st.terms[s].n_levels, st.terms[s].k
        return np.asarray(self.wd[s].todense()).reshape(qs, ks, st.q_dense).transpose(2, 1, 0)

    # ------------------------------------------------------------- criteria
    @property
    def logdet_z(self) -> float:
        """log |L_Z|² = log det(ΛᵀZᵀZΛ + I) (per member of a batch: an array)."""
        if self.batch:
            return self.logdet0 + sum(linalg.logdet_blocks_batch(l) for l in self.lss if l is not None)
        ld = self.logdet0 + sum(linalg.logdet_blocks(l) for l in self.lss if l is not None)
        qd = self.st.q_dense
        if qd:
            ld += 2.0 * float(np.sum(np.log(np.diag(self.tail)[:qd])))
        return ld

    @property
    def logdet_x(self) -> float:
        """log |R_X|²."""
        qd, p = self.st.q_dense, self.st.p
        if self.batch:
            return 2.0 * np.sum(np.log(np.diagonal(self.tail, axis1=-2, axis2=-1)[:, qd: qd + p]), axis=-1)
        return 2.0 * float(np.sum(np.log(np.diag(self.tail)[qd : qd + p])))

    @property
    def pwrss(self) -> float:
        """Penalised residual sum of squares r²."""
        if self.batch:
            return self.tail[:, -1, -1] ** 2
        return float(self.tail[-1, -1]) ** 2

    def criterion(self, reml: bool) -> float:
        """REML criterion d_R(θ) or ML deviance d(θ) (Bates et al. 2015, eqs. 34 and 41)."""
        if not self.ok:
            return math.inf
        n, p = self.st.n, self.st.p
        r2 = self.pwrss
        if not r2 > 0.0:  # also catches NaN
            return math.inf
        val = profiled_criterion(self.logdet_z + (self.logdet_x if reml else 0.0), r2, n - p if reml else n,
                                 self.st.weights_term)
        return val if math.isfinite(val) else math.inf

    # ------------------------------------------------------------ estimates
    def _rx_lower(self) -> np.ndarray:
        qd, p = self.st.q_dense, self.st.p
        return self.tail[..., qd : qd + p, qd : qd + p]  # R_Xᵀ

    def _fixef_centred(self) -> np.ndarray:
        qd, p = self.st.q_dense, self.st.p
        return _solve_upper(self._rx_lower().T, self.tail[-1, qd : qd + p])

    def fixef(self) -> np.ndarray:
        """β̂ from R_X β̂ = c_β (back-substitution in the tail factor), for the original y.

        Available from the fast (``full=False``) factor too: the tail holds R_X.
        """
        return self._fixef_centred() + self.st.beta_shift

    def rx_inverse(self) -> np.ndarray:
        """(R_XᵀR_X)⁻¹, the unscaled covariance of β̂ (for a batch, (B, p, p))."""
        inv_l = _solve_lower(self._rx_lower(), np.eye(self.st.p))
        return np.swapaxes(inv_l, -1, -2) @ inv_l

    def spherical_modes(self, beta: np.ndarray | None = None) -> list[np.ndarray]:
        """Conditional modes of the spherical random effects u, per term as (k_t, q_t) arrays,
        at β (default β̂).

        Back-substitution Lᵀ [u; β] = c, from the bottom of L: the dense
        terms first, then the chain in reverse. Needs the full factor.
        """
        self._need_full("conditional modes")
        st, p = self.st, self.st.p
        beta = self._fixef_centred() if beta is None else np.asarray(beta, float) - st.beta_shift
        chain = [w[:, p:, :] - np.einsum("kpm,p->km", w[:, :p, :], beta)[:, None, :] for w in self.w]
        dense = None
        if st.dense:
            qd = st.q_dense
            dense = (self.tail[-1, :qd] - self.tail[qd: qd + p, :qd].T @ beta)[:, None]
        return [u[:, 0, :] for u in self.back_substitute(chain, dense)]

    def solve_xy(self) -> list[np.ndarray]:
        """A⁻¹ΛᵀZᵀ[X y] per term, as (k_t, p+1, q_t) stacks (A = ΛᵀZᵀZΛ + I): the spherical
        random effects' response to each column of X and to y (the structure's centred y), so
        that û = K_y − K_X β. One back-substitution with p + 1 right-hand sides."""
        self._need_full("solves with A")
        dense = self.tail[self.st.q_dense:, :self.st.q_dense].T if self.st.dense else None
        return self.back_substitute(list(self.w), dense)

    def solve(self, rhs: list[np.ndarray]) -> list[np.ndarray]:
        """A⁻¹ V for A = ΛᵀZᵀZΛ + I (the structure's weights inside Z), V per term as (k_t, c, q_t)
        stacks: L_Z's forward substitution, as the factor made ``w`` from ΛᵀZᵀXy, then
        ``back_substitute``."""
        self._need_full("solves with A")
        st, nc = self.st, self.st.n_chain
        y: list[np.ndarray | None] = [None] * nc
        for s in range(nc):
            v = rhs[s]
            for r in range(s):
                v = v - st.segments[(r, s)].sum(linalg.matmul(self.l[(s, r)], y[r]))
            y[s] = linalg.solve_lower(self.lss[s], v)
        dense = None
        if st.dense:
            qd = st.q_dense
            dense = np.concatenate([_rows(rhs[d]) for d in st.dense])
            for s in range(nc):
                if st.wide:
                    for wa, ya in zip(self.wdd[s], y[s]):
                        dense = dense - wa @ ya.T
                else:
                    dense = dense - self.wd[s].T @ _rows(y[s])
            dense = _solve_lower(self.tail[:qd, :qd], dense)
        return self.back_substitute(y, dense)

    def back_substitute(self, chain: list[np.ndarray], dense: np.ndarray | None) -> list[np.ndarray]:
        """Solve L_Zᵀ U = V for the random-effects part of L, V given per chain term as
        (k_s, c, q_s) stacks and for the dense terms as a (q_dense, c) matrix; U per term as
        (k_t, c, q_t) stacks. From the bottom of L up: the dense terms, then the chain in reverse."""
        st, nc = self.st, self.st.n_chain
        u: list[np.ndarray | None] = [None] * len(st.terms)
        ud = None
        if st.dense:
            qd = st.q_dense
            ud = _solve_upper(self.tail[:qd, :qd].T, dense)  # (qd, c)
            for d in st.dense:
                t, off = st.terms[d], st.dense_offsets[d]
                u[d] = ud[off: off + t.n_levels * t.k].reshape(t.n_levels, t.k, -1).transpose(1, 2, 0)
        for s in range(nc - 1, -1, -1):
            v = chain[s]
            for t in range(s + 1, nc):
                ut = u[t][:, :, st.maps[(s, t)]]  # (k_t, c, q_s)
                v = v - np.einsum("tsm,tcm->scm", self.l[(t, s)], ut)
            if ud is not None:
                v = v - np.einsum("dkm,dc->kcm", self._dense_rows(s), ud)
            u[s] = linalg.solve_lower_t(self.lss[s], v)
        return u

    def _need_full(self, what: str):
        if not self.full:
            raise ValueError(f"{what} need the full factorisation (evaluate(..., full=True))")

    def conditional_covariances(self) -> list[np.ndarray]:
        """Diagonal blocks of S = (ΛᵀZᵀZΛ + I)⁻¹ per term and level, as (k_t, k_t, q_t) stacks.

        σ² Λ S Λᵀ is then the conditional covariance of a level's random effects
        given the data and β̂ (lme4's ``ranef(condVar = TRUE)``)."""
        return self.selected_inverse().diag

    def selected_inverse(self) -> "SelectedInverse":
        """The blocks of S = (ΛᵀZᵀZΛ + I)⁻¹ where L has blocks: the diagonal blocks of every
        level, the blocks between a chain level and the levels containing it, and those
        between the chain and the dense terms (see ``SelectedInverse``).

        Computed by selected inversion (Takahashi's recurrences) from the bottom of L up:
        for a chain level j with ancestors A (the level containing it in each
        later chain term, and the dense terms),

            Σ_{A,j} = −Σ_{A,A} L_{A,j} L_jj⁻¹,   Σ_jj = L_jj⁻ᵀ (I + L_{A,j}ᵀ Σ_{A,A} L_{A,j}) L_jj⁻¹,

        and Σ_{A,A} only involves blocks already computed for the ancestors, so
        the work stays linear in the number of levels for nested designs.
        """
        self._need_full("conditional covariances")
        st = self.st
        nc, qd = st.n_chain, st.q_dense
        out: list[np.ndarray | None] = [None] * len(st.terms)
        sigma_dd = None
        if qd:
            inv_l = _solve_lower(self.tail[:qd, :qd], np.eye(qd))
            sigma_dd = inv_l.T @ inv_l
            for d in st.dense:
                t, off = st.terms[d], st.dense_offsets[d]
                block = sigma_dd[off : off + t.n_levels * t.k, off : off + t.n_levels * t.k]
                blocks = block.reshape(t.n_levels, t.k, t.n_levels, t.k)
                out[d] = np.einsum("iaib->abi", blocks).copy()
        cross: dict[tuple[int, int], np.ndarray] = {}  # (u, t): Σ between level map_tu(i) of u and level i of t
        ydense: dict[int, np.ndarray] = {}  # t: Σ between the dense columns and level i of t, (qd, k_t, q_t)
        for s in range(nc - 1, -1, -1):
            ks, qs = st.terms[s].k, st.terms[s].n_levels
            linv = linalg.inv_lower(self.lss[s])
            anc = list(range(s + 1, nc))
            at = {t: st.maps[(s, t)] for t in anc}
            ld = None
            if qd:
                # L_{D,j} for every level j: the dense rows of column j of L, (qd, k_s, q_s)
                ld = self._dense_rows(s)
            g_chain = {}
            for t in anc:
                acc = None
                for u in anc:
                    if t == u:
                        sig = out[t][:, :, at[t]]
                    elif t < u:
                        sig = cross[(u, t)][:, :, at[t]].transpose(1, 0, 2)
                    else:
                        sig = cross[(t, u)][:, :, at[u]]
                    term = linalg.matmul(sig, self.l[(u, s)])
                    acc = term if acc is None else acc + term
                if qd:
                    acc = acc + np.einsum("dam,dbm->abm", ydense[t][:, :, at[t]], ld)
                g_chain[t] = acc
            g_dense = None
            if qd:
                g_dense = (sigma_dd @ ld.reshape(qd, -1)).reshape(qd, ks, qs)
                for u in anc:
                    g_dense = g_dense + np.einsum("dum,usm->dsm", ydense[u][:, :, at[u]], self.l[(u, s)])
            quad = None
            for t in anc:
                term = linalg.matmul(self.l[(t, s)].transpose(1, 0, 2), g_chain[t])
                quad = term if quad is None else quad + term
            if qd:
                term = np.einsum("dam,dbm->abm", ld, g_dense)
                quad = term if quad is None else quad + term
            inner = linalg.add_identity(np.zeros((ks, ks, qs)) if quad is None else quad.copy())
            out[s] = linalg.matmul(linalg.matmul(linv.transpose(1, 0, 2), inner), linv)
            for t in anc:
                cross[(t, s)] = -linalg.matmul(g_chain[t], linv)
            if qd:
                ydense[s] = -np.einsum("dbm,bcm->dcm", g_dense, linv)
        return SelectedInverse(diag=out, cross=cross, dense_chain=ydense, dense=sigma_dd)

    @property
    def user_theta(self) -> np.ndarray:
        """lme4's θ of this factor (``theta`` is the optimiser's θ̃ when made by ``evaluate_working``)."""
        return np.array(self._user_theta(), dtype=float)

    @property
    def user_lam(self) -> list[np.ndarray]:
        """lme4's Λₜ (for the user's columns) of every term."""
        return self.st.lambdas(self._user_theta())

    def modes(self, beta: np.ndarray | None = None) -> list[np.ndarray]:
        """Conditional modes b = Λu per term (the user's columns), as (q_t, k_t) arrays, at β
        (default β̂)."""
        return [(lam @ u).T for u, lam in zip(self.spherical_modes(beta), self.user_lam)]


def profiled_criterion(logdet, r2, dof, weights_term: float = 0.0):
    """The profiled criterion, written once: a + m(1 + log(2πr²/m)) − Σ log wᵢ, with a = log|L_Z|²
    (+ log|R_X|² and m = n − p for the REML criterion; m = n for the ML deviance) and r² the
    penalised residual sum of squares (Bates et al. 2015, eqs. 34 and 41; ``weights_term`` is
    lmer's prior weights' −Σ log wᵢ). Elementwise on arrays (a batch)."""
    if np.ndim(r2):
        return logdet + dof * (1.0 + np.log(2.0 * np.pi * r2 / dof)) + weights_term
    return logdet + dof * (1.0 + math.log(2.0 * math.pi * r2 / dof)) + weights_term


def evaluate(st: ModelStructure, theta: np.ndarray, full: bool = True) -> Factorization:
    """Factor for the user's θ (lme4's) with floating-point warnings silenced (see Factorization).

    ``full=False`` is for the criterion only: the first factor's terms may then be
    eliminated in closed form (``eliminate``), and the estimates (β, modes,
    conditional variances) are not available.
    """
    theta = np.asarray(theta, dtype=float)
    with np.errstate(all="ignore"):
        return Factorization(st, theta, st.engine_lambdas(theta), lambda: theta, full=full)


def evaluate_working(st: ModelStructure, theta_w: np.ndarray, full: bool = True) -> Factorization:
    """``evaluate`` for the optimiser's unit-free θ̃ (``engine.structure``): the engine multiplies
    the standardised columns by Λ̃ₜ itself. A 2-D θ̃ is a batch (criteria and R_X only)."""
    theta_w = np.asarray(theta_w, dtype=float)
    with np.errstate(all="ignore"):
        return Factorization(st, theta_w, st.lambdas(theta_w), lambda: st.to_user(theta_w), full=full)


def criterion(st: ModelStructure, theta: np.ndarray, reml: bool) -> float:
    """The profiled criterion at the user's θ, by the fastest path."""
    return evaluate(st, theta, full=False).criterion(reml)


def criterion_working(st: ModelStructure, theta_w: np.ndarray, reml: bool) -> float:
    """The profiled criterion at the optimiser's θ̃ (what the optimiser sees), by the fastest path."""
    return evaluate_working(st, theta_w, full=False).criterion(reml)


def _build_elimination(st: ModelStructure):
    return FirstBlockElimination(st) if eliminable(st) else None


# Triangular solves of the small dense blocks, done once per fit: np.linalg.solve
# costs O(p³) instead of O(p²) but spares importing scipy.linalg on the nested path.
def _solve_lower(l: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.solve(l, b)


def _solve_upper(u: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.solve(u, b)


def _rows(blocks: np.ndarray) -> np.ndarray:
    """Entry-major (k, c, q) stack → (q·k, c) matrix with row index level·k + entry."""
    k, c, q = blocks.shape
    return blocks.transpose(2, 0, 1).reshape(q * k, c)


def _lambda_d(st: ModelStructure, m: np.ndarray, lam: list[np.ndarray], axis: int) -> np.ndarray:
    """Λ_D applied along ``axis`` of ``m``, which runs over the dense terms' random effects:
    out[…, j, …] = Σᵢ m[…, i, …] Λ_D[i, j] (M Λ_D for columns, Λ_Dᵀ M for rows).

    Λ_D is block-diagonal (one k×k Λ per level), so this is a per-term scaling
    of index groups: O(size of m), never a dense q_dense² product. When every
    dense term has one effect, Λ_D is diagonal: one broadcast multiplication in
    m's own memory order (writing through a moved axis of a 3,500² matrix was
    15x slower).
    """
    if all(st.terms[d].k == 1 for d in st.dense):
        scale = np.concatenate([np.full(st.terms[d].n_levels, lam[d][0, 0]) for d in st.dense])
        shape = [1] * m.ndim
        shape[axis] = len(scale)
        return m * scale.reshape(shape)
    src = np.moveaxis(m, axis, -1)
    out = np.empty_like(src)
    lead = src.shape[:-1]
    for d in st.dense:
        t, off = st.terms[d], st.dense_offsets[d]
        size = t.n_levels * t.k
        block = src[..., off : off + size]
        if t.k == 1:
            out[..., off : off + size] = block * lam[d][0, 0]
        else:
            out[..., off : off + size] = (block.reshape(*lead, t.n_levels, t.k) @ lam[d]).reshape(*lead, size)
    return np.moveaxis(out, -1, axis)


def _block_diag_matrix(blocks: np.ndarray):
    """Sparse block-diagonal matrix from an entry-major (k, k, m) stack."""
    import scipy.sparse as sp

    k, _, m = blocks.shape
    return sp.bsr_matrix((blocks.transpose(2, 0, 1), np.arange(m), np.arange(m + 1)), shape=(m * k, m * k)).tocsr()


def _nested_block_matrix(st: ModelStructure, blocks: np.ndarray, r: int, s: int):
    """Sparse (q_s k_s × q_r k_r) matrix with block i of ``blocks`` (k_s, k_r, q_r) at (map_rs(i), i)."""
    import scipy.sparse as sp

    ks, kr, m = blocks.shape
    rows = st.maps[(r, s)]
    ri = rows[None, None, :] * ks + np.arange(ks)[:, None, None] + np.zeros((1, kr, 1), int)
    ci = np.arange(m)[None, None, :] * kr + np.arange(kr)[None, :, None] + np.zeros((ks, 1, 1), int)
    shape = (st.terms[s].n_levels * ks, m * kr)
    return sp.csr_matrix((blocks.ravel(), (ri.ravel(), ci.ravel())), shape=shape)


def _chain_dense_matrix(st: ModelStructure, s: int, lam: list[np.ndarray]):
    """Sparse ΛₛᵀZₛᵀZ_DΛ_D: chain term s against all dense terms (q_s k_s × q_dense)."""
    import scipy.sparse as sp

    ks = st.terms[s].k
    rows_all, cols_all, vals_all = [], [], []
    for d in st.dense:
        kd = st.terms[d].k
        rows, cols, sums = st.chain_dense_pairs[(s, d)]  # sums: (k_s, k_d, pairs)
        vals = linalg.sandwich(lam[s], sums, lam[d])
        ri = rows[None, None, :] * ks + np.arange(ks)[:, None, None] + np.zeros((1, kd, 1), int)
        ci = st.dense_offsets[d] + cols[None, None, :] * kd + np.arange(kd)[None, :, None] + np.zeros((ks, 1, 1), int)
        rows_all.append(ri.ravel())
        cols_all.append(ci.ravel())
        vals_all.append(vals.ravel())
    shape = (st.terms[s].n_levels * ks, st.q_dense)
    return sp.csr_matrix(
        (np.concatenate(vals_all), (np.concatenate(rows_all), np.concatenate(cols_all))), shape=shape
    )
