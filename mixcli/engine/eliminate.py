"""Eliminating the first term in closed form when it is a scalar term (k = 1).

When the largest term is a random intercept (or any single effect) — children's
classes, subjects — its diagonal block is the diagonal D₀ = λ²G₀ + I, and the
Schur complement of D₀ in the rest of the system is

    A_rest − A_r0 D₀⁻¹ A_0r = Λᵀ [ S − Σᵢ wᵢ cᵢ cᵢᵀ ] Λ,   wᵢ = λ² / (λ² gᵢ + 1),

with S and cᵢ the θ-free sums of the other terms and of Xy against level i.
So the first term only contributes per-level weights to weighted sums of
θ-free products computed once, and log|D₀| = Σ log(λ² gᵢ + 1). This takes the
largest term — often most of the levels — out of the per-evaluation linear
algebra. Used for the criterion only; estimates come from the full factor.
"""

from __future__ import annotations

import numpy as np

from .linalg import Scratch
from .structure import WIDE_LIMIT, ModelStructure


def eliminable(st: ModelStructure) -> bool:
    """A scalar first term, followed by a pure chain or (chain of one) by dense terms only."""
    return st.terms[0].k == 1 and len(st.terms) > 1 and (not st.dense or st.n_chain == 1)


def _products(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Per-level outer products of two entry-major stacks (a, 1, q) and (b, 1, q) → (q, a·b)."""
    a, b = left[:, 0, :], right[:, 0, :]
    return np.ascontiguousarray((a[:, None, :] * b[None, :, :]).reshape(a.shape[0] * b.shape[0], -1).T)


# From this many levels of the eliminated term, its per-level quantities go by distinct g₀.
GROUPED_FROM = 20_000


class FirstTermElimination:
    """θ-free products for eliminating term 0, built once per model."""

    def __init__(self, st: ModelStructure):
        self.st = st
        t0 = st.terms[0]
        self.g0 = st.gram[0][0, 0]  # (q0,)
        # A random intercept's g₀ is each level's row count: on a large model a few distinct
        # values (1-10 children per class), so log|D₀| and the weights are computed once per
        # value (the logs of 240,000 levels were a sixth of an evaluation on 898k rows). Small
        # models keep the per-level sums, whose rounding their reference fits were made with.
        self.distinct = None
        if len(self.g0) >= GROUPED_FROM:
            values, index = np.unique(self.g0, return_inverse=True)
            if len(values) * 8 <= len(self.g0):
                self.distinct = (values, index, np.bincount(index, minlength=len(values)).astype(float))
        # For each later chain term s, side by side so that one weighted sum per term
        # serves them all: c_t c_sᵀ for t ≥ s (its Gram and cross blocks), then
        # c_s zxy₀ᵀ (its Xy block), with c_s[i] = Z_sᵀz₀ over level i of term 0
        # (cross[(0, s)] is (k_s, 1, q0)). The Xy columns come last, to be
        # replaced for a new response.
        self.combined = {}
        for s in range(1, st.n_chain):
            parts = [_products(st.cross[(0, t)], st.cross[(0, s)]) for t in range(s, st.n_chain)]
            parts.append(np.zeros((t0.n_levels, st.terms[s].k * (st.p + 1))))
            self.combined[s] = np.ascontiguousarray(np.hstack(parts))
        self._response_products()
        self.dense_c = None
        # the dense tail's and CᵀWC's memory, reused from one evaluation to the next (linalg.Scratch)
        self.scratch = Scratch(keep=4)
        if st.dense:
            self.dense_c = self._dense_cross(t0)

    def _response_products(self):
        """The products that involve Xy: zxy₀ and the last columns of ``combined``."""
        st = self.st
        self.zxy0 = np.ascontiguousarray(st.zxy[0][0].T)  # (q0, p+1)
        # zxy₀ zxy₀ᵀ per level, so that Σ wᵢ zxy₀ᵢ zxy₀ᵢᵀ is one matrix-vector product
        # (a weighted copy and a (p+1) × q0 × (p+1) product took 10x longer)
        self.zz0 = _products(self.zxy0.T[:, None, :], self.zxy0.T[:, None, :])
        for s, comb in self.combined.items():
            width = st.terms[s].k * (st.p + 1)
            comb[:, -width:] = _products(st.cross[(0, s)], self.zxy0.T[:, None, :])

    def with_response(self, st: ModelStructure) -> "FirstTermElimination":
        """This elimination for ``st``, the same model with another response."""
        import copy

        new = copy.copy(self)
        new._last = None
        new.st = st
        new.combined = {s: comb.copy() for s, comb in self.combined.items()}
        new._response_products()
        return new

    def _dense_cross(self, t0):
        """θ-free Z₀ᵀZ_D (q0 × q_dense): a dense array when small (BLAS, and no scipy
        import), else sparse (one entry per co-occurring pair of levels)."""
        st = self.st
        if t0.n_levels * st.q_dense <= WIDE_LIMIT:
            c = np.zeros((t0.n_levels, st.q_dense))
            for d in st.dense:
                kd = st.terms[d].k
                rows, cols, sums = st.chain_dense_pairs[(0, d)]
                for b in range(kd):
                    c[rows, st.dense_offsets[d] + cols * kd + b] = sums[0, b]
            return c
        import scipy.sparse as sp

        self._pairs = None

        rows_all, cols_all, vals_all = [], [], []
        for d in st.dense:
            kd = st.terms[d].k
            rows, cols, sums = st.chain_dense_pairs[(0, d)]  # sums: (1, k_d, pairs)
            for b in range(kd):
                rows_all.append(rows)
                cols_all.append(st.dense_offsets[d] + cols * kd + b)
                vals_all.append(sums[0, b])
        c = sp.csr_matrix(
            (np.concatenate(vals_all), (np.concatenate(rows_all), np.concatenate(cols_all))),
            shape=(t0.n_levels, st.q_dense),
        )
        self._pairs = _row_pairs(c, st.q_dense)
        if self._pairs is None:
            self._weighted_gram = _SparseGram(c)
        return c

    def reduce(self, lam0):
        """Per-level weights' effect for λ₀: log|D₀| and the reduced θ-free sums (read-only).
        For a batch, λ₀ is a (B, 1) column and the results carry a batch axis (``linalg``);
        crossed (dense) terms are not batched."""
        if np.ndim(lam0):
            return self._reduce(lam0)
        # The last reduction is kept: it depends on λ₀ only, so steps in the other parameters (an
        # optimiser's coordinate steps, the convergence check's differences, which go in λ₀'s
        # order) reuse it; on crossed designs CᵀWC is most of an evaluation's work.
        cached = getattr(self, "_last", None)
        if cached is not None and cached[0] == lam0:
            return cached[1]
        out = self._reduce(lam0)
        self._last = (lam0, out)
        return out

    def _reduce(self, lam0):
        st = self.st
        batch = np.ndim(lam0) > 0
        # a batch's θ-free stacks broadcast along its axis: (k, c, 1, m)
        free = (lambda a: a[:, :, None, :]) if batch else (lambda a: a)
        l2 = lam0 * lam0
        if self.distinct is not None and not batch:
            values, index, counts = self.distinct
            d_values = l2 * values + 1.0
            logdet0 = float(counts @ np.log(d_values))
            w = (l2 / d_values)[index]
        else:
            d0 = l2 * self.g0 + 1.0
            logdet0 = np.log(d0).sum(axis=-1) if batch else float(np.log(d0).sum())
            w = l2 / d0
        gram, cross, zxy = {}, {}, {}
        for s in range(1, st.n_chain):
            ks = st.terms[s].k
            sums = st.segments[(0, s)].weighted(w, self.combined[s])  # (entries, [B,] q_s)
            at = 0
            for t in range(s, st.n_chain):
                kt = st.terms[t].k
                block = sums[at : at + kt * ks].reshape(kt, ks, *sums.shape[1:])
                at += kt * ks
                if t == s:
                    gram[s] = free(st.gram[s]) - block
                else:
                    cross[(s, t)] = free(st.cross[(s, t)]) - block
            zxy[s] = free(st.zxy[s]) - sums[at:].reshape(ks, st.p + 1, *sums.shape[1:])
        p1 = st.p + 1
        xtx = st.xtx - (w @ self.zz0).reshape(w.shape[:-1] + (p1, p1))
        dense = None
        if batch:
            if self.dense_c is not None:
                raise ValueError("crossed (dense) terms are not evaluated in batches")
            return logdet0, gram, cross, zxy, xtx, dense
        c = self.dense_c
        wz = self.zxy0 * w[:, None] if c is not None else None
        if isinstance(c, np.ndarray):
            dense = (st.dense_gram - c.T @ (c * w[:, None]), -(c.T @ wz))
        elif c is not None:
            if self._pairs is not None:
                index, row, prod = self._pairs
                qd = st.q_dense
                upper = np.bincount(index, weights=prod * w[row], minlength=qd * qd).reshape(qd, qd)
                ctwc = upper + upper.T
                ctwc[np.diag_indices(qd)] *= 0.5
            else:
                ctwc = self._weighted_gram(w)
            np.subtract(st.dense_gram, ctwc, out=ctwc)  # (in place: q_dense² floats each)
            dense = (ctwc, -(c.T @ wz))
        return logdet0, gram, cross, zxy, xtx, dense


class _SparseGram:
    """CᵀWC for a sparse C whose pattern never changes, only the weights W.

    scipy's sparse product finds the result's pattern (a symbolic pass) and then
    its values, every time; here the pattern is found once and each evaluation
    runs only the numeric pass into a dense result. On the MovieLens-1M shape
    (1M entries, 3,547 columns) the symbolic pass was a third of the product.
    The numeric kernel is scipy's own (``csr_matmat``, not part of its public
    API): where it is missing or its signature changed, the public product is
    used instead.
    """

    def __init__(self, c, scratch: Scratch | None = None):
        self.scratch = scratch or Scratch()
        self.c = c.tocsr()
        self.ct = self.c.T.tocsr()
        self.shape = (c.shape[1], c.shape[1])
        self.kernel = None
        try:
            from scipy.sparse import _sparsetools as tools

            m, n = self.shape
            small = max(m, n, self.c.nnz) < 2**31 - 1
            index = np.int32 if small else np.int64
            nnz = int(tools.csr_matmat_maxnnz(m, n, self.ct.indptr.astype(index), self.ct.indices.astype(index),
                                              self.c.indptr.astype(index), self.c.indices.astype(index)))
            if nnz >= 2**31 - 1:
                index = np.int64
            self.args = (m, n, self.ct.indptr.astype(index), self.ct.indices.astype(index),
                         self.c.indptr.astype(index), self.c.indices.astype(index))
            self.nnz = nnz
            self.rows_of = np.repeat(np.arange(self.c.shape[0]), np.diff(self.c.indptr))
            # the numeric pass's output (its pattern is the same every time: only the values change)
            self.buffers = (np.empty(m + 1, dtype=index), np.empty(nnz, dtype=index), np.empty(nnz))
            # the kernel is scipy's private one: used only where it reproduces the public product on a
            # small matrix (the symbolic pass of the public product on the real one cost 0.9 s of the
            # MovieLens shape's set-up, for a check)
            if _kernel_agrees(tools.csr_matmat):
                self.kernel = tools.csr_matmat
        except Exception:  # noqa: BLE001 (a private function: any failure means "use the public product")
            self.kernel = None

    def __call__(self, w: np.ndarray) -> np.ndarray:
        if self.kernel is None:
            return (self.ct @ self.c.multiply(w[:, None]).tocsr()).toarray()
        import scipy.sparse as sp

        out_p, out_j, out_x = self.buffers
        weighted = self.c.data * w[self.rows_of]
        self.kernel(*self.args[:4], self.ct.data, *self.args[4:], weighted, out_p, out_j, out_x)
        # to dense through scipy's own loop: no flat index of the nnz entries kept (8 bytes each)
        end = out_p[-1]
        product = sp.csr_matrix((out_x[:end], out_j[:end], out_p), shape=self.shape, copy=False)
        return product.toarray(out=self.scratch.empty(self.shape))


def _kernel_agrees(kernel) -> bool:
    """Whether scipy's private ``csr_matmat`` (its signature varies between versions) computes the
    public product CᵀC, pattern and values, on a small sparse C with repeated and empty rows."""
    import scipy.sparse as sp

    c = sp.csr_matrix(np.array([[1.0, 0, 2], [0, 0, 0], [3, 4, 0], [0, 5, 6]]))
    ct = c.T.tocsr()
    want = (ct @ c).tocsr()
    want.sort_indices()
    m = n = c.shape[1]
    out_p, out_j, out_x = np.empty(m + 1, np.int32), np.empty(9, np.int32), np.empty(9)
    kernel(m, n, ct.indptr.astype(np.int32), ct.indices.astype(np.int32), ct.data, c.indptr.astype(np.int32),
           c.indices.astype(np.int32), c.data, out_p, out_j, out_x)
    got = sp.csr_matrix((out_x[: out_p[-1]], out_j[: out_p[-1]], out_p), shape=(m, n))
    return np.allclose(got.toarray(), want.toarray())


# Most pairs of entries precomputed for CᵀWC (8 bytes of product, 8 of index, 4 of row each).
MAX_ROW_PAIRS = 10_000_000


def _row_pairs(c, q: int):
    """For CᵀWC = Σᵢ wᵢ cᵢcᵢᵀ with sparse rows cᵢ: every pair a ≤ b of one row's entries,
    as (flat index a·q+b, row i, c_ia·c_ib), so that each evaluation is one weighted
    bincount into a dense q×q upper triangle. scipy's sparse product rebuilds the
    nearly dense q×q result's structure every time and was 5-10x slower on an
    InstEval-size design. None when the pairs would take too much memory."""
    counts = np.diff(c.indptr)
    if int(np.sum(counts * (counts + 1) // 2)) > MAX_ROW_PAIRS:
        return None
    index, rows, prods = [], [], []
    for k in np.unique(counts):
        if k == 0:
            continue
        sel = np.flatnonzero(counts == k)  # rows with k entries, handled together
        starts = c.indptr[sel]
        cols = c.indices[starts[:, None] + np.arange(k)]  # (rows, k)
        vals = c.data[starts[:, None] + np.arange(k)]
        a, b = np.triu_indices(k)
        ca, cb = cols[:, a], cols[:, b]
        lo, hi = np.minimum(ca, cb), np.maximum(ca, cb)
        index.append((lo * q + hi).ravel())
        rows.append(np.repeat(sel, len(a)))
        prods.append((vals[:, a] * vals[:, b]).ravel())
    return np.concatenate(index), np.concatenate(rows), np.concatenate(prods)
