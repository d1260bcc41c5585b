"""Eliminating the first factor's random effects in closed form (the criterion only).

The leading chain terms on term 0's grouping factor — one term, or the two halves of
``(x || g)`` — have K effects per level, and for K ≤ 2 their diagonal block is
block-diagonal with K×K blocks Dᵢ = Λ₀ᵀGᵢΛ₀ + I that are factored in closed form. The
Schur complement of D in the rest of the system is

    A_rest − A_r0 D⁻¹ A_0r = Λᵀ [ S − Σᵢ Rᵢᵀ Wᵢ Rᵢ ] Λ,   Wᵢ = Λ₀ Dᵢ⁻¹ Λ₀ᵀ,

with S and Rᵢ (K rows) the θ-free sums of the other terms and of Xy against level i.
So the first factor only contributes per-level weights Wᵢ (K = 1: wᵢ = λ² / (λ² gᵢ + 1);
K = 2: three, the entries of a symmetric 2×2) to weighted sums of θ-free products
computed once, and log|D| = Σ log det Dᵢ. This takes the largest factor — often most
of the levels — out of the per-evaluation linear algebra: for ``(x | g)`` or ``(x || g)``
first (classroom M16: 312 classes, then 107 schools) one chain step fewer, each of
which costs dozens of small numpy calls. Used for the criterion only; estimates come
from the full factor.
"""

from __future__ import annotations

import numpy as np

from .linalg import Scratch, Segments, csr_matvec, csr_matvecs
from .structure import WIDE_LIMIT, ModelStructure

# The widest first block eliminated: Dᵢ is factored in closed form (K = 1, 2).
MAX_BLOCK = 2


def first_block(st: ModelStructure) -> tuple[int, int]:
    """(m, K): the leading chain terms on term 0's levels (the same grouping, an identity map
    between them), as many as keep K, their effects per level, within ``MAX_BLOCK`` (or term 0)."""
    m, k = 1, st.terms[0].k
    while m < st.n_chain and st.segments[(0, m)].identity and k + st.terms[m].k <= MAX_BLOCK:
        k += st.terms[m].k
        m += 1
    return m, k


def eliminable(st: ModelStructure) -> bool:
    """A scalar first term, followed by a pure chain or (chain of one) by dense terms only; or a
    first block of two effects per level ahead of a pure chain (or alone)."""
    _, k = first_block(st)
    if k == 1:
        return len(st.terms) > 1 and (not st.dense or st.n_chain == 1)
    return k <= MAX_BLOCK and not st.dense


def _pair_products(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Per-level products of two entry-major stacks (K, a, q) and (K, b, q), one set per pair
    of the block's rows c ≤ d (the entries of a symmetric Wᵢ, vech order): with
    Σ_cd Wᵢ[c, d] left[c]·right[d] = Σ_{c≤d} Wᵢ[c, d] out[pair], out is (pairs, q, a·b)."""
    k, a, q = left.shape
    b = right.shape[1]
    out = []
    for c in range(k):
        for d in range(c, k):
            prod = left[c][:, None, :] * right[d][None, :, :]
            if c != d:
                prod = prod + left[d][:, None, :] * right[c][None, :, :]
            out.append(prod.reshape(a * b, q).T)
    return np.ascontiguousarray(np.stack(out))


def _sandwich_map(lam) -> np.ndarray:
    """S with vech(Λ₀ᵀGΛ₀) = S vech(G) for a 2×2 Λ₀ (nested floats; (B, 1) arrays per entry for a
    batch, S then (B, 3, 3)): every level's Dᵢ in one product."""
    (a, b), (c, d) = lam
    s = np.array([[a * a, 2 * a * c, c * c], [a * b, a * d + b * c, c * d], [b * b, 2 * b * d, d * d]])
    return s[..., 0].transpose(2, 0, 1) if s.ndim > 2 else s


# From this many levels of the eliminated term, its per-level quantities go by distinct g₀.
GROUPED_FROM = 20_000


class FirstBlockElimination:
    """θ-free products for eliminating the first block (``first_block``), built once per model."""

    def __init__(self, st: ModelStructure):
        self.st = st
        t0 = st.terms[0]
        self.m, self.k = first_block(st)
        block = range(self.m)
        if self.k == 1:
            self.g0 = st.gram[0][0, 0]  # (q0,)
        else:  # vech of each level's Gᵢ, from the block's Gram and cross sums
            g = np.concatenate([np.concatenate([st.gram[r] if r == c else
                                                (st.cross[(c, r)] if c < r else st.cross[(r, c)].transpose(1, 0, 2))
                                                for c in block], axis=1) for r in block], axis=0)
            self.g_vech = np.ascontiguousarray(np.stack([g[0, 0], g[1, 0], g[1, 1]]))
        # A random intercept's g₀ is each level's row count: on a large model a few distinct
        # values (1-10 children per class), so log|D₀| and the weights are computed once per
        # value (the logs of 240,000 levels were a sixth of an evaluation on 898k rows). Small
        # models keep the per-level sums, whose rounding their reference fits were made with.
        self.distinct = None
        if self.k == 1 and len(self.g0) >= GROUPED_FROM:
            values, index = np.unique(self.g0, return_inverse=True)
            if len(values) * 8 <= len(self.g0):
                self.distinct = (values, index, np.bincount(index, minlength=len(values)).astype(float))
        # For each later chain term s, side by side so that one weighted sum per term
        # serves them all: R_t R_sᵀ for t ≥ s (its Gram and cross blocks), then
        # R_s zxy₀ᵀ (its Xy block), with R_s[i] = Z_sᵀZ₀ over level i of the block
        # (cross[(r, s)] is (k_s, k_r, q0)), per pair of the block's rows. The Xy columns
        # come last, to be replaced for a new response.
        self.rows = {s: np.concatenate([st.cross[(r, s)].transpose(1, 0, 2) for r in block])
                     for s in range(self.m, st.n_chain)}
        self.combined = {}
        # the sums over the block's levels go to the levels of s once per pair: the segment map
        # repeated, so that one weighted sum adds them all (the flat (pairs·q0, entries) products)
        pairs = self.k * (self.k + 1) // 2
        self.segments = {s: st.segments[(0, s)] if pairs == 1 else
                         Segments(np.tile(st.segments[(0, s)].target, pairs), st.terms[s].n_levels)
                         for s in range(self.m, st.n_chain)}
        # where each block of s's sums is among its entries: (t, start, stop, shape), t None for Xy
        self.layout = {}
        for s in range(self.m, st.n_chain):
            ks, at, blocks = st.terms[s].k, 0, []
            for t, rows in [(t, st.terms[t].k) for t in range(s, st.n_chain)] + [(None, st.p + 1)]:
                blocks.append((t, at, at + rows * ks, (rows, ks) if t is not None else (ks, rows)))
                at += rows * ks
            self.layout[s] = blocks
        for s in range(self.m, st.n_chain):
            parts = [_pair_products(self.rows[t], self.rows[s]) for t in range(s, st.n_chain)]
            parts.append(np.zeros(parts[0].shape[:2] + (st.terms[s].k * (st.p + 1),)))
            self.combined[s] = np.ascontiguousarray(np.concatenate(parts, axis=2))
        self._response_products()
        self.dense_c = None
        # the dense tail's and CᵀWC's memory, reused from one evaluation to the next (linalg.Scratch)
        self.scratch = Scratch(keep=4)
        if st.dense:
            self.dense_c = self._dense_cross(t0)

    def _response_products(self):
        """The products that involve Xy: zxy₀, zz₀ and the last columns of ``combined``."""
        st = self.st
        zxy = np.concatenate([st.zxy[r] for r in range(self.m)])  # (K, p+1, q0)
        self.zxy0 = np.ascontiguousarray(zxy[0].T)  # (q0, p+1): a scalar block's, for the dense terms
        # zxy₀ zxy₀ᵀ per level, so that Σ wᵢ zxy₀ᵢ zxy₀ᵢᵀ is one matrix-vector product
        # (a weighted copy and a (p+1) × q0 × (p+1) product took 10x longer)
        self.zz0 = _pair_products(zxy, zxy)
        for s, comb in self.combined.items():
            width = st.terms[s].k * (st.p + 1)
            comb[..., -width:] = _pair_products(self.rows[s], zxy)
        # (built when first used, from these products: ``_weighted``)
        self._products, self._transposed = {}, {}

    def with_response(self, st: ModelStructure) -> "FirstBlockElimination":
        """This elimination for ``st``, the same model with another response."""
        import copy

        new = copy.copy(self)
        new._last = None
        new.st = st
        new.combined = {s: comb.copy() for s, comb in self.combined.items()}
        new._response_products()
        return new

    def _weighted(self, s: int, wflat: np.ndarray) -> np.ndarray:
        """Σ over the block's levels i → j and pairs of w · combined[s] for every level j of term s,
        as (entries, [B,] q_s). Few levels, or a batch: one sparse product (``_product``); many levels:
        ``Segments.weighted`` (no second copy of the products)."""
        comb = self.combined[s]
        few = comb.shape[0] * comb.shape[1] < Segments.SPARSE_FROM
        if few or wflat.ndim == 2:
            product = self._product(s)
            if product is not None:
                return product(wflat)
            if few and wflat.ndim == 1:  # (without scipy's kernel: the transposed products, weighted)
                if s not in self._transposed:
                    self._transposed[s] = np.ascontiguousarray(comb.reshape(-1, comb.shape[-1]).T)
                return self.segments[s].sum(self._transposed[s] * wflat)
        return self.segments[s].weighted(wflat, comb.reshape(-1, comb.shape[-1]))

    def _product(self, s: int):
        """The weighted sums as one θ-free sparse matrix S times the weights (a vector, or a batch's
        (B, sources) transposed), S with a row per (entry e, level j of s) holding combined[s]'s
        entries e of the sources i → j, in the indicator's order: the same sums in the same order as
        weighting the products first and adding them up, without that weighted copy (the curvature
        check's 61 points on M16 weighted 936 × 10 products 61 times, 0.6 ms; one evaluation's
        weighting and bincount took 17 µs, this 8). None without scipy's kernels."""
        if s in self._products:
            return self._products[s]
        kernel, single = csr_matvecs(), csr_matvec()
        if kernel is None or single is None:
            self._products[s] = None
            return None
        seg, comb = self.segments[s], self.combined[s]
        flat = comb.reshape(-1, comb.shape[-1])  # (sources, entries)
        n_src, e = flat.shape
        q = seg.n_targets
        indptr, order = seg.indicator()
        index = indptr.dtype
        rows_ptr = np.concatenate([[0], (indptr[1:][None, :] + n_src * np.arange(e)[:, None]).ravel()]).astype(index)
        cols = np.tile(order, e).astype(index)
        data = np.ascontiguousarray(flat[order].T).ravel()  # entry-major: row (e, j) holds flat[i, e], i → j

        def product(wflat: np.ndarray) -> np.ndarray:
            if wflat.ndim == 1:
                out = np.zeros(e * q)
                single(e * q, n_src, rows_ptr, cols, data, np.ascontiguousarray(wflat, dtype=float), out)
                return out.reshape(e, q)
            b = wflat.shape[0]
            out = np.zeros((e * q, b))
            kernel(e * q, n_src, b, rows_ptr, cols, data, np.ascontiguousarray(wflat.T).ravel(), out.ravel())
            return out.reshape(e, q, b).transpose(0, 2, 1)

        self._products[s] = product
        return product

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

    def reduce(self, lams: list):
        """The first block's effect for the terms' Λ (``Factorization.lam``): log|D| and the
        reduced θ-free sums (read-only). For a batch (Λ's as (k, k, B, 1) stacks) the results
        carry a batch axis (``linalg``); crossed (dense) terms are not batched."""
        if lams[0].ndim > 2:
            return self._reduce(self._block(lams, batch=True), batch=True)
        # The last reduction is kept: it depends on the block's Λ only, so steps in the other
        # parameters (an optimiser's coordinate steps, the convergence check's differences,
        # which go in λ₀'s order) reuse it; on crossed designs CᵀWC is most of an evaluation's work.
        key = self._block(lams, batch=False)
        cached = getattr(self, "_last", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        out = self._reduce(key, batch=False)
        self._last = (key, out)
        return out

    def _block(self, lams: list, batch: bool):
        """The block's Λ: λ₀ for K = 1 (a float; a (B, 1) column for a batch), else its 2×2 as
        nested floats (entries (B, 1) for a batch): Λ of one term, or diag(λ₀, λ₁) of two."""
        if self.k == 1:
            return lams[0][0, 0] if batch else float(lams[0][0, 0])
        if self.m == 1:
            lam = lams[0]
            return ((lam[0, 0], lam[0, 1]), (lam[1, 0], lam[1, 1])) if batch else tuple(map(tuple, lam.tolist()))
        a, d = lams[0][0, 0], lams[1][0, 0]
        if batch:
            return ((a, np.zeros_like(a)), (np.zeros_like(a), d))
        return ((float(a), 0.0), (0.0, float(d)))

    def _reduce(self, lam0, batch: bool):
        st = self.st
        # a batch's θ-free stacks broadcast along its axis: (k, c, 1, m)
        free = (lambda a: a[:, :, None, :]) if batch else (lambda a: a)
        if self.k == 1:
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
        else:
            dv = _sandwich_map(lam0) @ self.g_vech  # vech(Dᵢ), (3, q0) or (B, 3, q0)
            # Wᵢ = MᵀM with M = Lᵢ⁻¹Λ₀ᵀ, Lᵢ Dᵢ's Cholesky factor: as backward stable as the chain's
            # step. (Dᵢ's adjugate over its determinant squared the condition number: with θ at 1e4,
            # where an unbounded likelihood takes it, the criterion came out 1.07 too low.)
            l00 = np.sqrt(dv[..., 0, :] + 1.0)
            l10 = dv[..., 1, :] / l00
            l11 = np.sqrt(dv[..., 2, :] + 1.0 - l10 * l10)
            logdet0 = 2.0 * np.log(l00 * l11).sum(axis=-1)
            if not batch:
                logdet0 = float(logdet0)
            (a, b), (c, d) = lam0
            r0, r1 = 1.0 / l00, 1.0 / l11
            m00, m01 = a * r0, c * r0
            m10, m11 = (b - l10 * m00) * r1, (d - l10 * m01) * r1
            w = np.empty(dv.shape)  # vech(Wᵢ) = (M₀₀² + M₁₀², M₀₀M₀₁ + M₁₀M₁₁, M₀₁² + M₁₁²)
            for row, (x, y, u, v) in enumerate(((m00, m00, m10, m10), (m00, m01, m10, m11), (m01, m01, m11, m11))):
                out = w[..., row, :]
                np.multiply(x, y, out=out)
                out += u * v
        # the weights of every (pair, level), flat: (pairs·q0,) or (B, pairs·q0)
        wflat = w if self.k == 1 else w.reshape(*w.shape[:-2], -1)
        gram, cross, zxy = {}, {}, {}
        for s, blocks in self.layout.items():
            sums = self._weighted(s, wflat)  # (entries, [B,] q_s)
            rest = sums.shape[1:]
            for t, start, stop, shape in blocks:
                block = sums[start:stop].reshape(shape + rest)
                if t == s:
                    gram[s] = free(st.gram[s]) - block
                elif t is not None:
                    cross[(s, t)] = free(st.cross[(s, t)]) - block
                else:
                    zxy[s] = free(st.zxy[s]) - block
        p1 = st.p + 1
        # Σᵢ Σ_pairs wᵢ zz₀ᵢ: one matrix-vector product over levels and pairs
        xtx = st.xtx - (wflat @ self.zz0.reshape(-1, p1 * p1)).reshape(wflat.shape[:-1] + (p1, p1))
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
