"""Numerical kernels on stacks of small blocks, and grouped sums.

A random-effects term with k effects per level contributes one k×k block per
level; a model with 150,000 classes has 150,000 such blocks. Stacks are stored
*entry-major*, shape ``(k, k, m)``: entry (i, j) of every block is one
contiguous vector of length m. The kernels loop in Python over the block
entries (k is 1–3 in practice) and do contiguous vector arithmetic over the m
levels, which is memory-bound and several times faster than stacked
``np.matmul``/``np.linalg`` on tiny matrices, whose per-matrix dispatch
dominates (measured: 7 ms against 44 ms for ΛᵀBΛ on 150,000 2×2 blocks).
Where one Λ applies to every block (not a batch's), the stack is a (k·c, m)
matrix and Λ's action one small matrix times it (``left_lambda``; ``sandwich``
with a Kronecker product): one BLAS call instead of one numpy call per entry,
which on small models is most of an evaluation (0.17 ms against 3.1 ms for
ΛᵀBΛ on 100,000 2×2 blocks; 3.6 µs against 8.1 on 107).

A stack may carry more axes after its two block axes, ``(k, k, B, m)``: a batch of B
parameter values evaluated at once (``Factorization`` of a 2-D θ), where Λ's
entries are (B, 1) columns and θ-free stacks are broadcast as (k, c, 1, m). The
kernels only index the two block axes and broadcast the rest.
"""

from __future__ import annotations

import math

import numpy as np


def chol_blocks(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a stack of symmetric positive-definite blocks (k, k, m).

    Only the lower triangle of ``a`` is read. A non-positive pivot gives NaN,
    not an exception: the caller turns a NaN log-determinant into an
    infinite criterion, which the optimiser steers away from. (Callers run
    the kernels under ``np.errstate(all="ignore")``: entering it per kernel
    would cost more than the arithmetic on small models.)
    """
    k = a.shape[0]
    if k == 1:
        return np.sqrt(a)
    out = np.zeros_like(a)
    for j in range(k):
        s = a[j, j]
        for p in range(j):
            s = s - out[j, p] * out[j, p]
        d = np.sqrt(s)
        out[j, j] = d
        for i in range(j + 1, k):
            v = a[i, j]
            for p in range(j):
                v = v - out[i, p] * out[j, p]
            out[i, j] = v / d
    return out


def solve_lower(l: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve L X = B blockwise: L (k, k, m) lower triangular, B (k, c, m)."""
    k = l.shape[0]
    if k == 1:
        return b / l[0, 0]
    x = np.empty(b.shape, dtype=np.result_type(l, b))
    for i in range(k):
        acc = b[i]
        for p in range(i):
            acc = acc - l[i, p] * x[p]
        x[i] = acc / l[i, i]
    return x


def solve_lower_t(l: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve Lᵀ X = B blockwise: L (k, k, m) lower triangular, B (k, c, m)."""
    k = l.shape[0]
    if k == 1:
        return b / l[0, 0]
    x = np.empty(b.shape, dtype=np.result_type(l, b))
    for i in range(k - 1, -1, -1):
        acc = b[i]
        for p in range(i + 1, k):
            acc = acc - l[p, i] * x[p]
        x[i] = acc / l[i, i]
    return x


def right_solve_lower_t(y: np.ndarray, l: np.ndarray) -> np.ndarray:
    """Y L⁻ᵀ blockwise: Y (r, k, m), L (k, k, m) lower triangular; solves X Lᵀ = Y."""
    k = l.shape[0]
    if k == 1:
        return y / l[0, 0]
    x = np.empty(y.shape, dtype=np.result_type(l, y))
    for j in range(k):
        acc = y[:, j]
        for p in range(j):
            acc = acc - x[:, p] * l[j, p]
        x[:, j] = acc / l[j, j]
    return x


def inv_lower(l: np.ndarray) -> np.ndarray:
    """Blockwise inverses of lower-triangular blocks (k, k, m)."""
    k, _, m = l.shape
    eye = np.zeros_like(l)
    for i in range(k):
        eye[i, i] = 1.0
    return solve_lower(l, eye)


def logdet_blocks(l: np.ndarray) -> float:
    """log det(L Lᵀ) summed over a stack of Cholesky factors (k, k, m)."""
    k = l.shape[0]
    if k == 1:
        return 2.0 * float(np.log(l[0, 0]).sum())
    return 2.0 * float(np.log(np.diagonal(l)).sum())


def logdet_blocks_batch(l: np.ndarray) -> np.ndarray:
    """log det(L Lᵀ) summed over the levels, per member of a batch (k, k, B, m) → (B,)."""
    if l.shape[0] == 1:
        return 2.0 * np.log(l[0, 0]).sum(axis=-1)
    return 2.0 * np.log(np.diagonal(l, axis1=0, axis2=1)).sum(axis=(-2, -1))


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Blockwise A B: A (r, s, m), B (s, c, m) → (r, c, m)."""
    r, s = a.shape[:2]
    if r == 1 and s == 1:
        return a[0, 0] * b
    out = None
    for i in range(r):
        acc = a[i, 0] * b[0]
        for p in range(1, s):
            acc += a[i, p] * b[p]
        if out is None:
            out = np.empty((r,) + acc.shape, dtype=acc.dtype)
        out[i] = acc
    return out


def matmul_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Blockwise A Bᵀ: A (r, s, m), B (c, s, m) → (r, c, m)."""
    r, s = a.shape[:2]
    c = b.shape[0]
    out = None
    for i in range(r):
        for j in range(c):
            acc = a[i, 0] * b[j, 0]
            for p in range(1, s):
                acc += a[i, p] * b[j, p]
            if out is None:
                out = np.empty((r, c) + acc.shape, dtype=acc.dtype)
            out[i, j] = acc
    return out


def left_lambda(lam: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Λᵀ B for every block B (k, c, m), with Λ (k, k) any matrix (zeros are skipped: a
    lower-triangular Λ costs half a full one)."""
    k = lam.shape[0]
    if k == 1:
        return blocks * lam[0, 0]
    if lam.ndim == 2:  # one product for every entry: Λᵀ (k × k) times the stack as (k, c·levels)
        return (lam.T @ blocks.reshape(k, -1)).reshape(blocks.shape)
    used = np.any(lam != 0.0, axis=tuple(range(2, lam.ndim)))
    out = None
    for a in range(k):
        acc = lam[a, a] * blocks[a]
        for b in range(k):
            if b != a and used[b, a]:
                acc += lam[b, a] * blocks[b]
        if out is None:
            out = np.empty((k,) + acc.shape, dtype=acc.dtype)
        out[a] = acc
    return out


def right_lambda(blocks: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """B Λ for every block B (r, k, m), with Λ (k, k) any matrix (zeros are skipped)."""
    k = lam.shape[0]
    if k == 1:
        return blocks * lam[0, 0]
    used = lam != 0.0 if lam.ndim == 2 else np.any(lam != 0.0, axis=tuple(range(2, lam.ndim)))
    out = None
    for d in range(k):
        acc = blocks[:, d] * lam[d, d]
        for c in range(k):
            if c != d and used[c, d]:
                acc += blocks[:, c] * lam[c, d]
        if out is None:
            out = np.empty((acc.shape[0], k) + acc.shape[1:], dtype=acc.dtype)
        out[:, d] = acc
    return out


def sandwich(lam: np.ndarray, blocks: np.ndarray, lam_right: np.ndarray | None = None) -> np.ndarray:
    """Λᵀ B Λ' for every block B of a stack (Λ' defaults to Λ).

    For one Λ (not a batch's) with blocks wider than 1×1, one product for every entry and
    level: out[a, d] = Σ_bc Λ[b, a] Λ'[c, d] B[b, c] is a (r·c × r·c) matrix (a Kronecker
    product) times the stack as (r·c, levels): three numpy calls where the entry loops of
    ``left_lambda`` and ``right_lambda`` took ~16 on a 2×2 term."""
    if lam_right is None:
        lam_right = lam
    r, c = blocks.shape[:2]
    if lam.ndim == 2 and lam_right.ndim == 2 and r * c > 1:
        kron = lam.T[:, None, :, None] * lam_right.T[None, :, None, :]  # [a, d, b, c]
        return (kron.reshape(r * c, r * c) @ blocks.reshape(r * c, -1)).reshape(blocks.shape)
    return right_lambda(left_lambda(lam, blocks), lam_right)


def add_identity(blocks: np.ndarray) -> np.ndarray:
    """B + I for every square block, in place."""
    for i in range(blocks.shape[0]):
        blocks[i, i] += 1.0
    return blocks


class Segments:
    """Sums over groups of levels defined once by an integer map, reused every evaluation.

    ``Segments(target, n_targets).sum(values)`` adds the entries of any array
    (last axis indexed like ``target``) into ``n_targets`` groups, one weighted
    ``np.bincount`` per leading entry: 3-4x faster than ``np.add.reduceat``
    along the last axis, and groups that receive nothing get zeros. The
    identity map (several terms on one factor) costs nothing.
    """

    def __init__(self, target: np.ndarray, n_targets: int):
        self.target = np.asarray(target, dtype=np.intp)
        self.n_targets = n_targets
        self.identity = len(self.target) == n_targets and bool(np.all(self.target == np.arange(n_targets)))
        self._offsets: dict[int, np.ndarray] = {}  # sum's flat index for a number of leading rows

    # Above this many source levels a weighted sum goes through a sparse
    # indicator matrix (one CSR product for all entries, ~3x faster than a
    # bincount per entry; ``csr_matvecs``); below it, bincounts spare loading it.
    SPARSE_FROM = 20_000

    def weighted(self, w: np.ndarray, products: np.ndarray) -> np.ndarray:
        """Σ_{i → j} w_i · products[i, e] for every group j and entry e, as (E, n_targets).

        ``products`` is a θ-free (n_source, E) C-contiguous array; ``w`` the
        per-source weights of this evaluation, or (B, n_source) for a batch of them
        (the result is then (E, B, n_targets)), or None for weights of 1 (products
        weighted already).
        """
        if w is None:
            if self.identity:
                return products.T
            if len(self.target) < self.SPARSE_FROM:
                return self.sum(products.T)
            # a transposed view: callers subtract it from entry-major stacks, which
            # reads it once; an explicit transposed copy cost as much as the product
            return self._indicator_product(None, products).T
        if w.ndim == 2:
            if self.identity:
                return products.T[:, None, :] * w[None, :, :]
            e, b = products.shape[1], len(w)
            if self._by_product(e * b):  # (weighted straight into the product's (source, entry·member) layout)
                columns = (products[:, :, None] * w.T[:, None, :]).reshape(len(self.target), e * b)
                return self._indicator_product(None, columns).T.reshape(e, b, self.n_targets)
            return self.sum(products.T[:, None, :] * w[None, :, :])
        if self.identity:
            return (products * w[:, None]).T
        if len(self.target) >= self.SPARSE_FROM:
            return self._indicator_product(w, products).T
        return self.sum((products * w[:, None]).T)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Σ_{i → j} values[..., i] for every group j, over the last axis: one bincount for all
        the leading entries (each row's targets offset by its row number), or, for many (a
        batch's), one sparse product: the bincount's index of every entry cost ~4 ms the first
        time on the classroom M16's check (61 points), the product 0.3 ms. The same sums, in the
        same order."""
        if self.identity:
            return values
        lead = values.shape[:-1]
        rows = math.prod(lead)
        if self._by_product(rows):
            columns = np.ascontiguousarray(values.reshape(rows, -1).T)  # (n_source, rows)
            return self._indicator_product(None, columns).T.reshape(lead + (self.n_targets,))
        index = self._offsets.get(rows)
        if index is None:
            index = (self.target[None, :] + self.n_targets * np.arange(rows)[:, None]).ravel()
            self._offsets[rows] = index
        out = np.bincount(index, weights=values.reshape(-1), minlength=rows * self.n_targets)
        return out.reshape(lead + (self.n_targets,))

    def _by_product(self, rows: int) -> bool:
        """Whether a sum of ``rows`` rows goes through the sparse product (see ``sum``)."""
        return rows > 1 and rows * len(self.target) >= self.SPARSE_FROM and csr_matvecs() is not None

    def indicator(self) -> tuple[np.ndarray, np.ndarray]:
        """The CSR row pointers and column indices of the (n_targets × n_source) indicator of the
        map, each row's sources in their order (``_indicator_csr``), built once."""
        if not hasattr(self, "_csr"):
            indptr, order = _indicator_csr(self.target, self.n_targets)
            self._csr = (indptr, order)
            self._order = None if np.array_equal(order, np.arange(len(order))) else order
        return self._csr

    def _indicator_product(self, w: np.ndarray | None, x: np.ndarray) -> np.ndarray:
        """A X, A the (n_targets × n_source) indicator of the map with entries ``w`` (one per
        source; None: ones) and X (n_source, c) C-contiguous: (n_targets, c)."""
        self.indicator()
        if w is None:  # (kept: a sum's unit weights are the same every time)
            if getattr(self, "_unit", None) is None:
                self._unit = np.ones(len(self.target))
            data = self._unit
        else:
            data = np.ascontiguousarray(w if self._order is None else w[self._order], dtype=float)
        kernel = csr_matvecs()
        if kernel is None:
            import scipy.sparse as sp

            return sp.csr_matrix((data, self._csr[1], self._csr[0]), shape=(self.n_targets, len(data))) @ x
        out = np.zeros((self.n_targets, x.shape[1]))
        kernel(self.n_targets, len(data), x.shape[1], *self._csr, data, x.ravel(), out.ravel())
        return out


def _indicator_csr(target: np.ndarray, n_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """The CSR row pointers and column indices of the (n_targets × n) indicator of ``target``: each
    row's sources in their order (a stable sort), so data in that order are the weights."""
    order = np.argsort(target, kind="stable")
    index = np.int32 if len(target) < 2**31 - 1 else np.int64
    indptr = np.concatenate([[0], np.cumsum(np.bincount(target, minlength=n_targets))]).astype(index)
    return indptr, order.astype(index)


_MATVECS: list = []  # scipy's CSR kernels once looked for, (matvecs, matvec) (None where not usable)


def csr_matvecs():
    """scipy's CSR-times-dense kernel (``scipy.sparse._sparsetools.csr_matvecs``, Y += A X), loaded
    from its extension module without importing ``scipy.sparse``, whose array-API layer imports
    numpy.f2py and numpy.testing: 70 ms of a 0.4 s fit of 89k rows, for one kernel. A private
    function: used only where it reproduces a product computed with bincounts on a small
    matrix, else None (the public product is used)."""
    if not _MATVECS:
        _MATVECS.extend(_load_matvecs())
    return _MATVECS[0]


def csr_matvec():
    """The same module's CSR-times-vector kernel (``csr_matvec``, y += A x): for one vector 2.5x
    faster than ``csr_matvecs`` with one column (4.8 µs against 12 on 9,360 entries). Checked and
    loaded as ``csr_matvecs``; None where not usable."""
    csr_matvecs()
    return _MATVECS[1]


def _load_matvecs():
    import sys

    try:
        tools = sys.modules.get("scipy.sparse._sparsetools")
        if tools is None:
            import importlib.machinery
            import importlib.util
            import os

            scipy_spec = importlib.util.find_spec("scipy")  # (a top-level name: found, not imported)
            folder = os.path.join(os.path.dirname(scipy_spec.origin), "sparse")
            path = next(os.path.join(folder, "_sparsetools" + sfx) for sfx in importlib.machinery.EXTENSION_SUFFIXES
                        if os.path.exists(os.path.join(folder, "_sparsetools" + sfx)))
            loader = importlib.machinery.ExtensionFileLoader("scipy.sparse._sparsetools", path)
            tools = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
            loader.exec_module(tools)
        kernel = tools.csr_matvecs
        # a 3 × 5 indicator (one empty row, rows out of order) times a 5 × 2 matrix, against bincounts
        target, w = np.array([2, 0, 2, 0, 2]), np.array([0.5, 1.5, 2.0, -1.0, 3.0])
        x = np.arange(10.0).reshape(5, 2) + 1.0
        indptr, order = _indicator_csr(target, 3)
        out = np.zeros((3, 2))
        kernel(3, 5, 2, indptr, order, w[order], x.ravel(), out.ravel())
        expected = np.stack([np.bincount(target, weights=w * x[:, e], minlength=3) for e in range(2)], axis=1)
        if not np.array_equal(out, expected):
            return None, None
        single, out1 = tools.csr_matvec, np.zeros(3)
        single(3, 5, indptr, order, w[order], np.ascontiguousarray(x[:, 0]), out1)
        return kernel, (single if np.array_equal(out1, expected[:, 0]) else None)
    except Exception:  # noqa: BLE001 (a private function: any failure means "use the public product")
        return None, None


def grouped_cross(codes: np.ndarray, n_levels: int, left, right, w: np.ndarray | None = None) -> np.ndarray:
    """Per-level sums of outer products of rows: out[a, b, j] = Σ_{i: codes[i]=j} wᵢ·left[i, a]·right[i, b].

    ``left`` (n, a) and ``right`` (n, b) → (a, b, n_levels), one weighted
    ``np.bincount`` per entry: O(n·a·b) time and no (n × levels) matrix. Either may
    also be a list of columns in which None stands for a column of ones (an
    intercept: no product is formed for it); ``w``, if given, weights the rows
    (PIRLS's working weights), which spares a weighted copy of every column.
    """
    lcols, rcols = columns(left), columns(right)
    out = np.empty((len(lcols), len(rcols), n_levels))
    for i, a in enumerate(lcols):
        for j, b in enumerate(rcols):
            out[i, j] = np.bincount(codes, weights=product(w, a, b), minlength=n_levels)
    return out


def columns(m) -> list:
    """The columns of an (n, k) array, or a list of columns (None: a column of ones) as it is."""
    if m is None:
        return [None]
    if isinstance(m, np.ndarray):
        return [m[:, i] for i in range(m.shape[1])]
    return list(m)


def product(*factors):
    """The elementwise product of the factors that are not None (None: all are ones)."""
    present = [f for f in factors if f is not None]
    if not present:
        return None
    out = present[0]
    for f in present[1:]:
        out = out * f
    return out


class Scratch:
    """Large work arrays handed from one evaluation to the next.

    A crossed design's dense tail and CᵀWC are ~100 MB each on the MovieLens shape; freshly
    allocated every evaluation, each was a new mmap() whose pages the kernel zeroes on first touch
    (2.4 s of system time in a 16 s fit). An array is handed out again only when nothing else
    refers to it — no Factorization keeps it as its tail, no view of it lives (a view holds its
    base) — so reuse can never overwrite a value still in use: ``sys.getrefcount`` is then 3 (this
    list, the loop's name, the call's argument). Without CPython's reference counts an array would
    merely look in use, and a new one be made."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._arrays: list[np.ndarray] = []

    def empty(self, shape: tuple) -> np.ndarray:
        import sys

        for a in self._arrays:
            if a.shape == shape and sys.getrefcount(a) == 3:
                return a
        a = np.empty(shape)
        self._arrays.append(a)
        if len(self._arrays) > self.keep:
            self._arrays.pop(0)  # (if still in use, it stays alive with its user)
        return a


# Dense matrices at least this wide are factored in place (scipy's LAPACK): a copy of the
# crossed designs' dense tail is 110 MB on the MovieLens-1M shape.
IN_PLACE_FROM = 1000


def cholesky_in_place(a: np.ndarray) -> bool:
    """Overwrite the C-contiguous symmetric ``a`` with its lower Cholesky factor (zeros above
    the diagonal), as ``np.linalg.cholesky`` would return it; False if ``a`` is not positive
    definite. (aᵀ is Fortran-ordered: LAPACK's upper factor U of aᵀ, in a's row-major
    memory, is L = Uᵀ.)"""
    from scipy.linalg import lapack

    c, info = lapack.dpotrf(a.T, lower=0, clean=1, overwrite_a=1)
    if not np.shares_memory(c, a):  # (LAPACK copied after all: keep its result)
        a[...] = c.T
    return info == 0


def whitening(v: np.ndarray) -> np.ndarray:
    """B with BBᵀ = v (lower Cholesky factor), or the diagonal of standard deviations if v is not
    numerically positive definite."""
    try:
        return np.linalg.cholesky(0.5 * (v + v.T))
    except np.linalg.LinAlgError:
        sd = np.sqrt(np.maximum(np.diag(v), 0.0))
        return np.diag(np.where(sd > 0, sd, 1.0))
