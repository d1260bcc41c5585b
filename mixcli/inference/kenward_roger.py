"""Kenward–Roger: the adjusted Var(β̂) and the F/t approximations of pbkrtest, as lmerTest uses them.

For a REML fit of y ~ N(Xβ, Σ) the variance parameters are pbkrtest's (``.get_SigmaG``): every
entry of each term's covariance (the lower triangle, per term) and the residual variance, so that

    Σ = Σᵢ φᵢ Gᵢ,   Gᵢ = Z Eᵢ Zᵀ  (Eᵢ = I_levels ⊗ (e_a e_bᵀ + e_b e_aᵀ), or e_a e_aᵀ),   G_res = I.

With Φ = Var(β̂) = (XᵀΣ⁻¹X)⁻¹ (``vcov``), ``vcovAdj_internal`` forms

    Pᵢ  = −Xᵀ Σ⁻¹ Gᵢ Σ⁻¹ X,
    Qᵢⱼ =  Xᵀ Σ⁻¹ Gᵢ Σ⁻¹ Gⱼ Σ⁻¹ X,
    Kᵢⱼ =  tr(Σ⁻¹ Gᵢ Σ⁻¹ Gⱼ),
    Iᵢⱼ =  Kᵢⱼ − 2 tr(Φ Qᵢⱼ) + tr(Φ Pᵢ Φ Pⱼ)     (twice the REML expected information),
    W   =  2 I⁻¹   (MASS::ginv when min |eigenvalue| ≤ 1e-10),
    U   =  Σᵢⱼ Wᵢⱼ (Qᵢⱼ − Pᵢ Φ Pⱼ),
    Φ_A =  Φ + 2 Φ U Φ                               (``vcovAdj``; Gᵢ linear in φ, so no Rᵢⱼ).

For a hypothesis L β = 0 with L of rank q (``.KR_adjust``, and ``Lb_ddf`` for lmerTest's t tests),
with Θ = Lᵀ(LΦLᵀ)⁻¹L and uᵢ = Θ Φ Pᵢ Φ,

    A₁ = Σᵢⱼ Wᵢⱼ tr(uᵢ) tr(uⱼ),   A₂ = Σᵢⱼ Wᵢⱼ tr(uᵢ uⱼ),   B = (A₁ + 6A₂)/(2q),
    g = ((q+1)A₁ − (q+4)A₂)/((q+2)A₂),   c₁ = g/(3q + 2(1−g)),  c₂ = (q−g)/(…),  c₃ = (q+2−g)/(…),
    ρ = (1/q) ((1 − A₂/q)/(1 − c₂B))² (1 + c₁B)/(1 − c₃B),
    df = 4 + (q+2)/(qρ − 1),   λ = df (1 − A₂/q)/(df − 2)   (1 when |df − 2| < 0.01),
    F = λ · (Lβ̂)ᵀ(L Φ_A Lᵀ)⁻¹(Lβ̂)/q  on (q, df) degrees of freedom.

lmerTest's ``summary(m, ddf = "Kenward-Roger")`` reports, per coefficient (L = eⱼ), the SE
√(Φ_A)ⱼⱼ, the df above (``get_KR1D`` → ``pbkrtest::Lb_ddf``) and t = β̂ⱼ/SE; its
``anova(m, ddf = "Kenward-Roger")`` the F, q and df of ``pbkrtest::KRmodcomp(m, L)``.

**Cost.** pbkrtest builds Σ⁻¹ and every Gᵢ Σ⁻¹ as n × n matrices (``Matrix``: sparse when
Σ is block diagonal, dense for a crossed design): O(n³) time and (#φ + 1)·n² numbers for a
crossed design (1,914 rows, 5 parameters: 18 s and ~0.8 GB). Nothing here is n × n. With Σ = σ²V, V = I + BBᵀ, B = ZΛ (Λ lme4's relative
covariance factor, θ) and K = BᵀB + I = ΛᵀZᵀZΛ + I,

    V⁻¹ = I − B K⁻¹ Bᵀ              (Woodbury),
    ZᵀV⁻¹Z = C − Rᵀ K⁻¹ R,          C = ZᵀZ, R = ΛᵀC,
    ZᵀV⁻²Z = ZᵀV⁻¹Z − YᵀY,          Y = K⁻¹R   (V⁻¹B = BK⁻¹),
    tr V⁻² = n − q + ‖K⁻¹‖²_F,

so every trace and product above is a sum over blocks of M = ZᵀΣ⁻¹Z and of
F = ZᵀΣ⁻¹X: with Gᵢ = Σ_(α,β) Z_α Z_βᵀ (α, β blocks of Z's columns: one effect of one term),

    Kᵢⱼ = Σ sum(M_δα ∘ M_γβ),   Pᵢ = −Σ F_αᵀF_β,   Qᵢⱼ = Σ F_αᵀ M_βγ F_δ,

and the residual's entries use S = Σ⁻¹X (n × p), H = ZᵀΣ⁻²X and the block traces of ZᵀΣ⁻²Z.
Z is never formed: products with it are ``np.bincount`` over each term's level codes.

Moreover Σ is block diagonal over the connected components of the random-effects levels (levels
linked by sharing a row: schools with their classes; a crossed design is one component), and so
is every Gᵢ: the computation runs component by component, small components packed into blocks of
about ``BLOCK_Q`` random effects. The work is O(Σ_blocks q_b³) plus O(n·(Σk)²): a nested design
costs about as much as its rows, a crossed one about q³ for its q random effects (see
``kr_cost``, which estimates time and memory before anything is computed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..engine.structure import lower_indices
from .distributions import f_sf, t_two_sided

GINV_TOL = 1e-10  # pbkrtest: solve(IE2) unless min |eigenvalue| ≤ this, then MASS::ginv
BLOCK_Q = 256  # small components are packed into blocks of about this many random effects
MAX_BYTES = 2e9  # default limits of ``kenward_roger`` (see ``KRCost.refusal``)
MAX_SECONDS = 300.0
# Rough machine constants for the estimate: numpy's BLAS ran the q³ products at ~30 GFLOP/s on
# two cores (a crossed design with q = 4,000: 12 s); half that, to err on the slow side. Each
# block also costs some Python overhead (a few hundred small numpy calls).
FLOPS_PER_SECOND = 1.5e10
SECONDS_PER_BLOCK = 2e-3


# ---------------------------------------------------------------------------------------------
# the parameters and the block layout


def _parameters(terms) -> list[list[tuple[tuple[int, int], tuple[int, int]]]]:
    """Each variance parameter of pbkrtest (per term, the lower triangle column by column, as θ)
    as the pairs of blocks (α, β), α = (term, effect), with Gᵢ = Σ Z_α Z_βᵀ. The residual is not
    listed."""
    out = []
    for t, term in enumerate(terms):
        rows, cols = lower_indices(term.k)
        for r, c in zip(rows, cols):
            r, c = int(r), int(c)
            out.append([((t, r), (t, c))] if r == c else [((t, r), (t, c)), ((t, c), (t, r))])
    return out


def _level_graph(st):
    """The levels of all terms as one graph (term t's level l is node ``offsets[t] + l``), linked
    where two levels share a row, read from the structure's sums (never the rows): the nesting
    maps of the chain, the chain's level pairs with the crossed terms, and the crossed terms'
    nonzero blocks of ZᵀZ."""
    from scipy import sparse

    terms = st.terms
    offsets = np.concatenate([[0], np.cumsum([t.n_levels for t in terms])]).astype(np.int64)
    src, dst = [], []
    for (r, t), parent in st.maps.items():
        src.append(offsets[r] + np.arange(terms[r].n_levels))
        dst.append(offsets[t] + np.asarray(parent, dtype=np.int64))
    for (s_, d), (rows, cols, _) in st.chain_dense_pairs.items():
        src.append(offsets[s_] + np.asarray(rows, dtype=np.int64))
        dst.append(offsets[d] + np.asarray(cols, dtype=np.int64))
    for i, d in enumerate(st.dense):
        for e in st.dense[i + 1:]:
            td, te = terms[d], terms[e]
            od, oe = st.dense_offsets[d], st.dense_offsets[e]
            block = st.dense_gram[od:od + td.n_levels * td.k, oe:oe + te.n_levels * te.k]
            linked = np.any(block.reshape(td.n_levels, td.k, te.n_levels, te.k) != 0, axis=(1, 3))
            li, lj = np.nonzero(linked)
            src.append(offsets[d] + li)
            dst.append(offsets[e] + lj)
    n = int(offsets[-1])
    if src:
        i, j = np.concatenate(src), np.concatenate(dst)
    else:
        i = j = np.zeros(0, dtype=np.int64)
    return sparse.coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)).tocsr(), offsets


@dataclass
class _Block:
    levels: list[np.ndarray]  # per term, its levels in this block (ascending)
    pairs: dict = field(default_factory=dict)  # (chain s, crossed d): its entries of st.chain_dense_pairs
    largest_component: int = 0  # random effects in its largest connected component

    @property
    def n_levels(self) -> list[int]:
        return [len(lv) for lv in self.levels]

    def q(self, ks) -> int:
        return int(sum(k * n for k, n in zip(ks, self.n_levels)))


def _blocks(st) -> list[_Block]:
    """The connected components of the random-effects levels (``_level_graph``), packed into
    blocks of about ``BLOCK_Q`` random effects (a larger component is a block of its own, sharing
    it at most with a few small ones)."""
    from scipy.sparse.csgraph import connected_components

    terms = st.terms
    graph, offsets = _level_graph(st)
    n_comp, comp = connected_components(graph, directed=False)
    level_comp = [comp[offsets[t]:offsets[t + 1]] for t in range(len(terms))]
    size = np.zeros(n_comp)
    for term, lc in zip(terms, level_comp):
        size += term.k * np.bincount(lc, minlength=n_comp)
    start = np.cumsum(size) - size
    _, comp_block = np.unique((start // BLOCK_Q).astype(np.int64), return_inverse=True)
    comp_block = np.asarray(comp_block).ravel()
    n_blocks = int(comp_block.max()) + 1 if n_comp else 0
    def by_block(block_of):  # the indices of each block's entries, ascending
        order = np.argsort(block_of, kind="stable")
        bounds = np.searchsorted(block_of[order], np.arange(n_blocks + 1))
        return [order[bounds[b]:bounds[b + 1]] for b in range(n_blocks)]

    per_term = [by_block(comp_block[lc]) for lc in level_comp]
    pairs = {key: by_block(comp_block[level_comp[key[0]][rows]])
             for key, (rows, _, _) in st.chain_dense_pairs.items()}
    largest = np.zeros(n_blocks)
    np.maximum.at(largest, comp_block, size)
    return [_Block([lv[b] for lv in per_term], {key: idx[b] for key, idx in pairs.items()}, int(largest[b]))
            for b in range(n_blocks)]


def _block_arrays(st, blk: _Block, p: int):
    """C = ZᵀZ and ZᵀX of one block, in its layout (term by term, effect by effect, level by level),
    from the structure's sums: the per-level blocks, the chain's nesting blocks, the chain's
    pairs with the crossed terms and the crossed terms' ZᵀZ."""
    terms = st.terms
    ks = [t.k for t in terms]
    nl = blk.n_levels
    base = np.concatenate([[0], np.cumsum([k * L for k, L in zip(ks, nl)])]).astype(np.int64)
    qb = int(base[-1])
    local = []
    for t, lv in enumerate(blk.levels):
        m = np.full(terms[t].n_levels, -1, dtype=np.int64)
        m[lv] = np.arange(len(lv))
        local.append(m)

    def index(t, a, levels):  # positions in the block of term t's effect a at these levels
        return base[t] + a * nl[t] + local[t][levels]

    C = np.zeros((qb, qb))
    ztx = np.empty((qb, p))
    dense = set(st.dense)
    for t, lv in enumerate(blk.levels):
        if not len(lv):
            continue
        for a in range(ks[t]):
            ztx[index(t, a, lv)] = st.zxy[t][a, :p, lv].reshape(len(lv), p)
            if t in dense:
                continue
            for b in range(ks[t]):
                C[index(t, a, lv), index(t, b, lv)] = st.gram[t][a, b, lv]
    for (r, t), parent in st.maps.items():
        lv = blk.levels[r]
        if not len(lv):
            continue
        up = np.asarray(parent)[lv]
        cross = st.cross[(r, t)]  # (k_t, k_r, q_r): Z_tᵀZ_r at (parent(i), i)
        for a in range(ks[t]):
            for b in range(ks[r]):
                C[index(t, a, up), index(r, b, lv)] = cross[a, b, lv]
                C[index(r, b, lv), index(t, a, up)] = cross[a, b, lv]
    for (s_, d), (rows, cols, sums) in st.chain_dense_pairs.items():
        inside = blk.pairs[(s_, d)]
        if not inside.size:
            continue
        rr, cc, vv = rows[inside], cols[inside], sums[:, :, inside]
        for a in range(ks[s_]):
            for b in range(ks[d]):
                C[index(s_, a, rr), index(d, b, cc)] = vv[a, b]
                C[index(d, b, cc), index(s_, a, rr)] = vv[a, b]
    for d in st.dense:
        for e in st.dense:
            ld, le = blk.levels[d], blk.levels[e]
            if not (len(ld) and len(le)):
                continue
            od, oe = st.dense_offsets[d], st.dense_offsets[e]
            for a in range(ks[d]):
                for b in range(ks[e]):
                    C[np.ix_(index(d, a, ld), index(e, b, le))] = st.dense_gram[
                        np.ix_(od + ld * ks[d] + a, oe + le * ks[e] + b)]
    return C, ztx


# ---------------------------------------------------------------------------------------------
# cost


@dataclass
class KRCost:
    """What ``kenward_roger`` will cost (estimated from the block layout, before any arithmetic)."""

    n: int  # rows
    p: int  # fixed effects
    q: int  # random effects
    n_varpar: int  # pbkrtest's variance parameters (with the residual)
    n_blocks: int
    largest_block: int  # random effects in the largest block (q of a crossed design)
    flops: float
    bytes: float  # peak memory of the arrays, estimated
    seconds: float  # estimated wall time
    pbkrtest_bytes: float  # at least what pbkrtest's Σ⁻¹ and GᵢΣ⁻¹ take (n_c² entries per component)
    largest_component: int = 0  # random effects in the largest connected component

    def describe(self) -> str:
        pbkrtest = ("" if math.isnan(self.pbkrtest_bytes) else
                    f" (pbkrtest's Sigma^-1 and G_i Sigma^-1 alone: {_fmt_bytes(self.pbkrtest_bytes)})")
        return (f"Kenward-Roger: {self.n} rows, {self.q} random effects in {self.n_blocks} independent "
                f"block(s), the largest {self.largest_block}; about {_fmt_bytes(self.bytes)} of memory "
                f"and {_fmt_seconds(self.seconds)}{pbkrtest}")

    def refusal(self, max_bytes: float = MAX_BYTES, max_seconds: float = MAX_SECONDS) -> str | None:
        """A message saying why not, if the estimate exceeds the limits; else None."""
        over = []
        if self.bytes > max_bytes:
            over.append(f"about {_fmt_bytes(self.bytes)} of memory (limit {_fmt_bytes(max_bytes)})")
        if self.seconds > max_seconds:
            over.append(f"about {_fmt_seconds(self.seconds)} (limit {_fmt_seconds(max_seconds)})")
        if not over:
            return None
        if self.largest_component == self.largest_block:
            why = (f"its random effects form a block of {self.largest_block} that are all linked through the "
                   "data (crossed factors), and the work grows as the cube of that")
        else:
            why = (f"its random effects come in independent groups of at most {self.largest_component}, worked "
                   f"on in blocks of up to {self.largest_block}, and the work grows as the cube of a block's size")
        return (f"Kenward-Roger would need {' and '.join(over)}: {why}. Use Satterthwaite's df instead "
                "(--ddf satterthwaite), which costs about as much as the fit.")


def _fmt_bytes(b: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= size:
            return f"{b / size:.1f} {unit}"
    return f"{b:.0f} bytes"


def _fmt_seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} hours"
    if s >= 60:
        return f"{s / 60:.1f} minutes"
    return f"{s:.1f} s" if s >= 1 else "under a second"


def _cost(terms, n: int, p: int, blocks: list[_Block]) -> KRCost:
    ks = [t.k for t in terms]
    kk = sum(ks)
    n_g = sum(t.n_theta for t in terms) + 1
    qs = np.array([b.q(ks) for b in blocks], dtype=float)
    # per block: inverse of K (~2q³), K⁻¹R and RᵀY (2q³ each), the traces and the Q products
    # (#φ²·(q² + q·p²)); C and ZᵀX come from the structure's sums (q·(Σk)² each)
    flops = float(np.sum(6 * qs**3 + 2 * qs * kk * kk + 4 * n_g * n_g * (qs * qs + qs * p * p)))
    qmax = float(qs.max()) if len(qs) else 0.0
    # peak: C, R, K⁻¹, Y and a product's temporary (q² each, measured 5.1 q²)
    nbytes = 8.0 * (5.2 * qmax * qmax + n_g * n_g * p * p + 4 * qmax * p * kk)
    seconds = flops / FLOPS_PER_SECOND + SECONDS_PER_BLOCK * len(blocks)
    return KRCost(n=n, p=p, q=int(qs.sum()), n_varpar=n_g, n_blocks=len(blocks), largest_block=int(qmax),
                  flops=flops, bytes=nbytes, seconds=seconds, pbkrtest_bytes=_pbkrtest_bytes(terms, blocks, n_g),
                  largest_component=max((b.largest_component for b in blocks), default=0))


def _pbkrtest_bytes(terms, blocks: list[_Block], n_g: int) -> float:
    """What pbkrtest's Σ⁻¹ and GᵢΣ⁻¹ take at least (n_c² entries per component of n_c rows), from
    the first term's level of each row; NaN for a fit without its rows (``--engine dask``)."""
    codes = np.asarray(terms[0].codes)
    if not codes.size:
        return math.nan
    block_of = np.empty(terms[0].n_levels, dtype=np.int64)
    for b, blk in enumerate(blocks):
        block_of[blk.levels[0]] = b
    rows = np.bincount(block_of[codes], minlength=len(blocks)).astype(float)
    return 8.0 * float(np.sum(rows**2)) * (n_g + 1)


def _check_model(m):
    if getattr(m.frame, "family", None) is not None:
        raise ValueError("Kenward-Roger is for linear mixed models, not GLMMs")
    if getattr(m.structure, "structured", False):  # (pbkrtest's parameters are Σ's entries, not a structure's)
        raise ValueError("Kenward-Roger is not yet available with a structured covariance (diag, cs, ar1); "
                         "use Satterthwaite's df")
    if not m.reml:
        raise ValueError("Kenward-Roger needs a REML fit; refit with REML (the default), or use "
                         "Satterthwaite's df, which are defined for ML fits too")
    w = m.frame.weights
    if getattr(m.frame, "weighted", False) or (w is not None and not np.all(np.asarray(w) == 1.0)):
        # pbkrtest's residual covariance is σ²I whatever the weights: there is nothing to agree with
        raise ValueError("Kenward-Roger is not available with prior weights (pbkrtest ignores them); "
                         "use Satterthwaite's df")


def kr_cost(m) -> KRCost:
    """Estimated time and memory of ``kenward_roger(m)`` (cheap: one pass over the level codes)."""
    _check_model(m)
    st = m.structure
    return _cost(st.terms, st.n, st.p, _blocks(st))


# ---------------------------------------------------------------------------------------------
# results


@dataclass
class KRTTest:
    term: str
    estimate: float
    se: float  # √(Φ_A)ⱼⱼ
    df: float
    t: float
    p: float


@dataclass
class KRFTest:
    F: float  # scale · Wald/q, as pbkrtest's Ftest and lmerTest's anova
    numdf: int
    dendf: float
    scale: float  # pbkrtest's F.scaling
    p: float
    F_unscaled: float  # Wald/q with Φ_A (pbkrtest's FtestU)


@dataclass
class KenwardRoger:
    """pbkrtest's pieces at the REML estimate; parameters ordered term by term (each term's lower
    triangle column by column, as θ), then the residual variance. ``P`` and ``W`` are for the
    covariance entries of the unit-free random-effect columns (see ``kenward_roger``),
    ``information`` and ``condition`` for pbkrtest's own (the covariances of the user's columns)."""

    names: list[str]
    beta: np.ndarray
    vcov: np.ndarray  # Φ (the fit's Var(β̂))
    vcov_adj: np.ndarray  # Φ_A (pbkrtest::vcovAdj)
    P: np.ndarray  # (g, p, p), pbkrtest's Pᵢ = −XᵀΣ⁻¹GᵢΣ⁻¹X (unit-free parameters)
    W: np.ndarray  # (g, g) = 2 × inverse of the information (unit-free parameters)
    information: np.ndarray  # (g, g), pbkrtest's IE2
    condition: float  # min |eigenvalue| of the information (pbkrtest's attribute "condi")
    xtvx: np.ndarray  # XᵀΣ⁻¹X computed here (its inverse should be Φ: a check of the fit)
    cost: KRCost | None = None
    notes: list[str] = field(default_factory=list)

    def _a12(self, L: np.ndarray) -> tuple[float, float]:
        phi = self.vcov
        theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
        u = np.einsum("ab,gbc,cd->gad", theta @ phi, self.P, phi)  # uᵢ = ΘΦPᵢΦ
        tr = np.einsum("gaa->g", u)
        a1 = float(tr @ self.W @ tr)
        a2 = float(np.einsum("ij,iab,jba->", self.W, u, u))
        return a1, a2

    def ddf(self, L) -> tuple[float, float]:
        """(df, F.scaling) of the test of L β = 0 (L: q × p of full row rank), pbkrtest's
        ``Lb_ddf`` / ``.KR_adjust`` (including their guards)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        q = L.shape[0]
        a1, a2 = self._a12(L)
        with np.errstate(divide="ignore", invalid="ignore"):
            a1, a2 = np.float64(a1), np.float64(a2)  # R's arithmetic: x/0 is ±Inf or NaN, not an error
            b = (a1 + 6 * a2) / (2 * q)
            g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
            d = 3 * q + 2 * (1 - g)
            c1, c2, c3 = g / d, (q - g) / d, (q + 2 - g) / d
            v0 = 1 + c1 * b
            v1 = 1 - c2 * b
            v2 = 1 - c3 * b
            if abs(v0) < 1e-10:
                v0 = np.float64(0.0)
            num = 1 - a2 / q
            ratio = np.float64(1.0) if abs(num) < 1e-14 and abs(v1) < 1e-14 else num / v1  # .divZero
            rho = ratio**2 * v0 / v2 / q
            df = 4 + (q + 2) / (q * rho - 1)
            scale = np.float64(1.0) if abs(df - 2) < 0.01 else df * (1 - a2 / q) / (df - 2)
        return float(df), float(scale)

    def t_tests(self) -> list[KRTTest]:
        """lmerTest's ``summary(m, ddf = "Kenward-Roger")$coefficients``."""
        out = []
        p = len(self.beta)
        for j in range(p):
            se = math.sqrt(self.vcov_adj[j, j])
            df, _ = self.ddf(np.eye(p)[j])
            t = float(self.beta[j]) / se
            out.append(KRTTest(self.names[j], float(self.beta[j]), se, df, t, t_two_sided(t, df)))
        return out

    def f_test(self, L) -> KRFTest:
        """pbkrtest's ``KRmodcomp(m, L)`` (lmerTest's ``anova(m, ddf = "Kenward-Roger")`` row) for
        L β = 0. A rank-deficient L is replaced by a basis of its rows (the test is the same)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        if L.shape[1] != len(self.beta):
            raise ValueError(f"L has {L.shape[1]} columns for {len(self.beta)} fixed effects")
        _, s, vt = np.linalg.svd(L, full_matrices=False)
        q = int(np.sum(s > max(L.shape) * np.finfo(float).eps * (s[0] if len(s) else 0.0)))
        if q == 0:
            raise ValueError("L is zero: nothing to test")
        if q < L.shape[0]:
            L = vt[:q]
        df, scale = self.ddf(L)
        lb = L @ self.beta
        wald = float(lb @ np.linalg.solve(L @ self.vcov_adj @ L.T, lb))
        f_u = wald / q
        f = scale * f_u
        return KRFTest(F=f, numdf=q, dendf=df, scale=scale, p=f_sf(f, q, df), F_unscaled=f_u)


# ---------------------------------------------------------------------------------------------
# the computation


def kenward_roger(m, max_bytes: float | None = MAX_BYTES, max_seconds: float | None = MAX_SECONDS) -> KenwardRoger:
    """pbkrtest's Kenward–Roger pieces for a REML ``LmmResult``. Refuses (ValueError, with the
    estimate and the alternative) when ``kr_cost`` exceeds ``max_bytes`` or ``max_seconds``
    (None: no limit)."""
    _check_model(m)
    st = m.structure
    n, p = st.n, st.p
    blocks = _blocks(st)
    cost = _cost(st.terms, n, p, blocks)
    why = cost.refusal(max_bytes if max_bytes is not None else math.inf,
                       max_seconds if max_seconds is not None else math.inf)
    if why:
        raise ValueError(why)

    s2 = float(m.sigma) ** 2
    # Everything is computed for the structure's unit-free columns z̃ = z M⁻¹ (centred and scaled,
    # ``engine.structure.TermBasis``) with their Λ̃ (the working θ̃): their covariance entries φ̃ are
    # a linear map φ̃ = Tφ of pbkrtest's, and Kenward–Roger's df and Φ_A do not depend on a linear
    # reparameterisation of φ. The information in pbkrtest's φ is hopelessly conditioned when a
    # random slope's predictor is far from zero (Days + 100: the intercept's variance is 10⁴ times
    # the slope's and their correlation −0.9999; its inverse, or pbkrtest's ginv, gave df 2,024
    # for an exact 17); in φ̃ it is not.
    terms = st.terms
    lams = st.lambdas(st.to_working(np.asarray(m.theta, dtype=float)))
    params = _parameters(terms)
    g = len(params) + 1  # and the residual
    res = g - 1
    ktrace = np.zeros((g, g))
    P = np.zeros((g, p, p))
    Q = np.zeros((g, g, p, p))
    xtvx = np.zeros((p, p))
    ss = np.zeros((p, p))  # XᵀΣ⁻²X
    svs = np.zeros((p, p))  # XᵀΣ⁻³X

    for blk in blocks:
        C, ztx = _block_arrays(st, blk, p)
        _block_sums(C, ztx, blk.n_levels, terms, lams, s2, params, ktrace, P, Q, xtvx, ss, svs)
    # the parts of XᵀΣ⁻¹X, XᵀΣ⁻²X, XᵀΣ⁻³X and tr Σ⁻² that are not per block: Σ⁻¹ = (I − ZΛK⁻¹ΛᵀZᵀ)/σ²
    xtx = st.xtx[:p, :p]
    xtvx += xtx / s2
    ss += xtx / (s2 * s2)
    svs += xtx / (s2 * s2 * s2)
    ktrace[res, res] += n / (s2 * s2)

    P[res] = -ss
    Q[res, res] = svs
    # symmetric parts pbkrtest computes once (i ≤ j): K and the information are symmetric
    iu = np.triu_indices(g, 1)
    ktrace[iu[1], iu[0]] = ktrace[iu]

    phi = np.asarray(m.vcov, dtype=float)
    # pbkrtest's IE2: K − 2 tr(ΦQ) + tr(ΦPᵢΦPⱼ), over i ≤ j, mirrored
    phip = np.einsum("ab,gbc->gac", phi, P)
    info = np.empty((g, g))
    for i in range(g):
        for j in range(i, g):
            info[i, j] = info[j, i] = (ktrace[i, j] - 2.0 * np.sum(phi * Q[i, j])
                                       + np.sum(phip[i] * np.swapaxes(phip[j], 0, 1)))
    if float(np.min(np.abs(np.linalg.eigvalsh(info)))) > GINV_TOL:
        W = 2.0 * np.linalg.inv(info)
    else:
        # MASS::ginv: singular values above sqrt(eps) × the largest
        W = 2.0 * np.linalg.pinv(info, rcond=math.sqrt(np.finfo(float).eps))
    to_std = _standardising_map(st.bases, params)
    info_user = to_std.T @ info @ to_std  # the information in pbkrtest's parameters
    condi = float(np.min(np.abs(np.linalg.eigvalsh(info_user))))
    W = (W + W.T) / 2.0  # forceSymmetric
    # U = Σ_{i<j} Wᵢⱼ(Qᵢⱼ − PᵢΦPⱼ), plus its transpose, plus the diagonal terms (pbkrtest's order)
    U = np.zeros((p, p))
    for i in range(g - 1):
        for j in range(i + 1, g):
            U += W[i, j] * (Q[i, j] - P[i] @ phi @ P[j])
    U = U + U.T
    for i in range(g):
        U += W[i, i] * (Q[i, i] - P[i] @ phi @ P[i])
    phi_a = phi + 2.0 * (phi @ U @ phi)

    return KenwardRoger(
        names=[f.term for f in m.fixef], beta=np.array([f.estimate for f in m.fixef]), vcov=phi, vcov_adj=phi_a,
        P=P, W=W, information=info_user, condition=condi, xtvx=xtvx, cost=cost,
    )


def _standardising_map(bases, params) -> np.ndarray:
    """T with φ̃ = Tφ: the covariance entries of the unit-free columns z̃ (Σ̃ₜ = MₜΣₜMₜᵀ, as
    z = z̃Mₜ) from pbkrtest's φ (Σₜ = Σᵢ φᵢEᵢ, Eᵢ = e_a e_bᵀ + e_b e_aᵀ or e_a e_aᵀ); the residual
    variance maps to itself."""
    g = len(params) + 1
    T = np.zeros((g, g))
    T[-1, -1] = 1.0
    for i, pairs in enumerate(params):
        (t, a), (_, b) = pairs[0]
        mt = bases[t].matrix
        e = np.zeros_like(mt)
        e[a, b] = e[b, a] = 1.0
        image = mt @ e @ mt.T
        for j, pairs_j in enumerate(params):
            (tj, aj), (_, bj) = pairs_j[0]
            if tj == t:
                T[j, i] = image[aj, bj]
    return T


def _block_sums(C, ztx, nl, terms, lams, s2, params, ktrace, P, Q, xtvx, ss, svs):
    """Add one block's share of every trace and product (see the module docstring), from its
    C = ZᵀZ and ZᵀX (``_block_arrays``); the parts made of XᵀX alone are added once by the caller.
    With A = ΛᵀZᵀX and F = ZᵀΣ⁻¹X: XᵀΣ⁻¹X = (XᵀX − AᵀK⁻¹A)/σ², XᵀΣ⁻²X = (XᵀX − AᵀK⁻¹A −
    AᵀK⁻²A)/σ⁴ (ΛᵀCΛ = K − I) and XᵀΣ⁻³X = (XᵀΣ⁻²X − FᵀΛK⁻¹ΛᵀF)/σ²."""
    ks = [t.k for t in terms]
    # the columns of Z in this block: term by term, effect by effect, level by level, so that each
    # block α = (term, effect) of Z's columns is a contiguous slice
    base = np.concatenate([[0], np.cumsum([k * L for k, L in zip(ks, nl)])]).astype(int)
    qb = int(base[-1])
    sl = {(t, a): slice(base[t] + a * nl[t], base[t] + (a + 1) * nl[t]) for t in range(len(terms)) for a in range(ks[t])}

    def lam_t(A):  # Λᵀ A: within term t, (ΛᵀA)_(b,l) = Σ_a Λₜ[a, b] A_(a,l)
        out = np.empty_like(A)
        for t, lam in enumerate(lams):
            blkA = A[base[t]:base[t + 1]].reshape(ks[t], nl[t], -1)
            out[base[t]:base[t + 1]] = np.einsum("ab,alm->blm", lam, blkA).reshape(ks[t] * nl[t], -1)
        return out

    def right_lam(A):  # A Λ, column blocks: (AΛ)_{·,(b,l)} = Σ_a A_{·,(a,l)} Λₜ[a, b]
        out = np.empty_like(A)
        for t, lm in enumerate(lams):
            blkA = A[:, base[t]:base[t + 1]].reshape(-1, ks[t], nl[t])
            out[:, base[t]:base[t + 1]] = np.einsum("mal,ab->mbl", blkA, lm).reshape(-1, ks[t] * nl[t])
        return out

    # the q × q arrays are the memory: at most five of them live at once (C, R, K⁻¹, Y and the
    # product's temporary), and M0 takes C's place
    R = lam_t(C)  # ΛᵀC
    K = right_lam(R)  # ΛᵀCΛ
    K[np.diag_indices(qb)] += 1.0
    Kinv = np.linalg.inv(K)  # K ≥ I: well conditioned
    del K
    Kinv += Kinv.T
    Kinv *= 0.5
    Y = Kinv @ R
    C -= R.T @ Y  # σ² ZᵀΣ⁻¹Z (symmetric up to rounding; only blocks of it are read)
    del R
    M0 = C

    def vinv_z(A):  # Zᵀ V⁻¹ (rows) from Zᵀ (rows): (I − RᵀK⁻¹Λᵀ) applied to Zᵀ(rows)
        return A - Y.T @ lam_t(A)

    F = vinv_z(ztx) / s2  # ZᵀΣ⁻¹X
    H = vinv_z(F) / s2  # ZᵀΣ⁻²X
    A = lam_t(ztx)
    KA = Kinv @ A
    B = lam_t(F)
    xtvx -= A.T @ KA / s2
    ss_b = -(A.T @ KA + KA.T @ KA) / (s2 * s2)
    ss += ss_b
    svs += (ss_b - B.T @ (Kinv @ B)) / s2

    # ZᵀΣ⁻²Z only through its block traces: tr(N_δγ) = (tr M0_δγ − Σ_l Y[:, δ_l]·Y[:, γ_l]) / σ⁴
    def n_trace(d, c):
        return (np.trace(M0[sl[d], sl[c]]) - np.sum(Y[:, sl[d]] * Y[:, sl[c]])) / (s2 * s2)

    res = len(params)
    ktrace[res, res] += (np.sum(Kinv * Kinv) - qb) / (s2 * s2)  # tr Σ⁻² = (n − q + ‖K⁻¹‖²)/σ⁴ (n: the caller's)
    # M_{·γ} F_δ for the pairs (γ, δ) of one term that the Q products use
    mf = {}
    for t in range(len(terms)):
        for c in range(ks[t]):
            for d in range(ks[t]):
                mf[(t, c), (t, d)] = (M0[:, sl[(t, c)]] @ F[sl[(t, d)]]) / s2
    for i, pairs_i in enumerate(params):
        for (al, be) in pairs_i:
            P[i] -= F[sl[al]].T @ F[sl[be]]
        for j in range(i, res):
            kt = 0.0
            qij = np.zeros_like(P[i])
            for (al, be) in pairs_i:
                for (ga, de) in params[j]:
                    kt += np.sum(M0[sl[de], sl[al]] * M0[sl[ga], sl[be]])  # σ⁴ tr(M_δα M_βγ)
                    qij += F[sl[al]].T @ mf[ga, de][sl[be]]  # F_αᵀ M_βγ F_δ
            ktrace[i, j] += kt / (s2 * s2)
            Q[i, j] += qij
            if j != i:
                Q[j, i] += qij.T
        # with the residual (G = I): tr(Σ⁻¹Σ⁻¹Gᵢ) and Xᵀ Σ⁻¹ Gᵢ Σ⁻² X
        kt = 0.0
        qir = np.zeros_like(P[i])
        for (al, be) in pairs_i:
            kt += n_trace(be, al)
            qir += F[sl[al]].T @ H[sl[be]]
        ktrace[i, res] += kt
        Q[i, res] += qir
        Q[res, i] += qir.T
