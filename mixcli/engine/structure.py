"""Everything about a mixed model that does not depend on θ, computed once.

Given the random-effects terms (grouping codes and their model matrices, in
lme4's order) and the fixed-effects matrix with the response as its last
column, this module

* lays out θ (each term's lower-triangular Λ, column by column, like lme4);
* decides the block structure of the Cholesky factor: a *chain* of leading
  terms, each nested in every later one of the chain (classes in schools, or
  several terms on one factor as ``(x || g)`` makes), whose diagonal blocks stay
  block-diagonal, followed by *dense* terms (crossed factors) whose blocks are
  dense;
* reduces the rows to per-level sums (ZᵀZ, ZᵀX, Zᵀy, XᵀX) with weighted
  ``np.bincount``, so that each evaluation of the criterion touches arrays of
  the size of the number of levels, never of the number of rows;
* works in a unit-free basis (``TermBasis``): each term's columns are centred
  (when the term has an intercept) and scaled, so that the optimiser's θ does
  not depend on the units of a random slope.

Two parameterisations of the same covariances are therefore in use. The
*user's* θ is lme4's: Λₜ lower triangular for the columns as the user gave
them. The *working* θ̃ gives Λ̃ₜ, lower triangular for the standardised
columns Z̃ₜ = Zₜ Mₜ⁻¹; the optimiser works in θ̃ (its start, steps, bounds and
tolerances then mean the same thing for any units). The engine evaluates
either: the user's Λₜ enters as the (full) matrix MₜΛₜ, the working one as
Λ̃ₜ itself; only ΛΛᵀ matters, so the criteria agree exactly. ``to_user`` and
``to_working`` convert between the two (a QR factorisation per term).

Nesting is read off the integer codes: factor s is nested in factor t when
each level of s occurs with exactly one level of t.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from . import covstruct
from .linalg import Segments, columns, grouped_cross, product


@dataclass
class ReTerm:
    """One random-effects term ``(z₁ + … + z_k | g)`` after expansion.

    * ``codes`` — each row's level of the grouping factor, 0-based, numbered by
      first appearance (the engine's order);
    * ``n_levels`` — the number of levels;
    * ``z`` — the term's model matrix (n × k);
    * ``group`` — the name lme4 prints for the term (``classid``, ``g.1`` for the
      second term on ``g``); ``names`` — its effects (``["(Intercept)", "ses"]``);
    * ``factor`` — the grouping factor's name (the same for both halves of ``x || g``);
    * ``levels_to_r`` — R's index of each engine level (levels sorted as R sorts
      them), for output in lme4's order;
    * ``structure`` — "" for lme4's unstructured covariance, else glmmTMB's ``diag``, ``cs`` or
      ``ar1`` (``covstruct``): its parameters are then φ, not the entries of Λ.
    """

    codes: np.ndarray
    n_levels: int
    z: np.ndarray
    group: str = ""
    names: list[str] = field(default_factory=list)
    factor: str = ""
    levels_to_r: np.ndarray | None = None
    structure: str = ""

    @property
    def k(self) -> int:
        return self.z.shape[1]

    @property
    def n_theta(self) -> int:
        if self.structure:
            return covstruct.n_params(self.structure, self.k)
        return self.k * (self.k + 1) // 2


# Largest chain-levels × dense-columns product kept as dense arrays. Dense
# products cost q_chain·q_dense² per evaluation against roughly the number of
# co-occurring pairs for sparse ones, so dense pays only while small: a 60 × 40
# crossed design is 100x faster dense, an InstEval-size one (3,000 × 1,100)
# 1000x faster sparse.
WIDE_LIMIT = 250_000


@dataclass
class TermBasis:
    """The unit-free basis of one term: z̃ = (z − shift) / scale column by column, so
    z = z̃ M with M = diag(scale) plus, in the intercept's row, the shifts.

    Columns of a term with an intercept are centred and divided by their SD; in a
    term without one, only divided by their root mean square (centring would change
    the model). The intercept column and constant columns are left as they are.
    """

    shift: np.ndarray  # (k,)
    scale: np.ndarray  # (k,)
    intercept: int | None  # index of the intercept column, if any

    @classmethod
    def of(cls, z: np.ndarray) -> "TermBasis":
        k = z.shape[1]
        ones = [a for a in range(k) if np.all(z[:, a] == 1.0)]
        intercept = ones[0] if ones else None
        shift, scale = np.zeros(k), np.ones(k)
        for a in range(k):
            if a == intercept:
                continue
            col = z[:, a]
            peak = float(np.max(np.abs(col))) if len(col) else 0.0
            if not (peak > 0 and np.isfinite(peak)):
                continue
            c = float(np.mean(col)) if intercept is not None else 0.0
            spread = peak * float(np.sqrt(np.mean(((col - c) / peak) ** 2)))
            if spread > 1e-12 * peak:
                shift[a], scale[a] = c, spread
        return cls(shift, scale, intercept)

    @classmethod
    def from_moments(cls, ones: np.ndarray, peak: np.ndarray, mean: np.ndarray, m2: np.ndarray, n: int) -> "TermBasis":
        """The same basis from column summaries instead of the columns (data held in parts):
        whether each column is all ones, its largest absolute value, its mean and its sum of
        squared deviations from the mean over ``n`` rows (``partial_sums.ColumnMoments``)."""
        k = len(peak)
        intercept = next((a for a in range(k) if ones[a]), None)
        shift, scale = np.zeros(k), np.ones(k)
        for a in range(k):
            if a == intercept or not (peak[a] > 0 and np.isfinite(peak[a])):
                continue
            c = float(mean[a]) if intercept is not None else 0.0
            # (without an intercept the root mean square: the deviations plus the mean's square)
            spread = float(np.sqrt(m2[a] / n + (0.0 if intercept is not None else mean[a] ** 2)))
            if spread > 1e-12 * peak[a]:
                shift[a], scale[a] = c, spread
        return cls(shift, scale, intercept)

    @classmethod
    def for_term(cls, term: "ReTerm") -> "TermBasis":
        """A term's basis: ``of`` its columns; for a structured term the columns as they are
        (centring or scaling them would change the structure, and its parameters, SDs and a
        correlation, are unit-free enough)."""
        if term.structure:
            return cls(np.zeros(term.k), np.ones(term.k), None)
        return cls.of(term.z)

    @property
    def identity(self) -> bool:
        return bool(np.all(self.scale == 1.0) and np.all(self.shift == 0.0))

    @property
    def matrix(self) -> np.ndarray:
        """M with z = z̃ M (k × k: upper triangular when the intercept comes first)."""
        m = np.diag(self.scale)
        if self.intercept is not None:
            m[self.intercept] += self.shift
        return m

    def standardise(self, z: np.ndarray) -> np.ndarray:
        if self.identity:
            return z
        return (z - self.shift) / self.scale


def _ones_as_none(m: np.ndarray) -> list:
    """The columns of ``m`` with each column of ones as None (see ``linalg.grouped_cross``)."""
    out = []
    for j in range(m.shape[1]):
        col = m[:, j]
        out.append(None if col[0] == 1.0 and bool(np.all(col == 1.0)) else col)
    return out


def lower_factor(p: np.ndarray) -> np.ndarray:
    """The lower-triangular L with non-negative diagonal and L Lᵀ = P Pᵀ (QR of Pᵀ; exact
    for rank-deficient P too)."""
    r = np.linalg.qr(p.T, mode="r")
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    return (r.T * signs)


def lower_indices(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a k×k lower triangle, column by column (lme4's θ order)."""
    cols, rows = np.triu_indices(k)
    return rows, cols


def sd_cor(lam: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The SDs and the correlation matrix of one term's covariance σ²ΛΛᵀ (R's VarCorr and
    cov2cor): the one place they are computed. A correlation with an effect whose SD is 0 is
    undefined and NaN, as in R; callers that need a number there say what they use instead."""
    cov = sigma**2 * (lam @ lam.T)
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    den = np.outer(sd, sd)
    with np.errstate(invalid="ignore", divide="ignore"):
        cor = np.where(den > 0, cov / np.where(den > 0, den, 1.0), np.nan)
    np.fill_diagonal(cor, 1.0)
    return sd, cor


def nested_map(inner: np.ndarray, n_inner: int, outer: np.ndarray) -> np.ndarray | None:
    """The outer level of each inner level if ``inner`` is nested in ``outer``, else None. O(n)."""
    mapping = np.full(n_inner, -1, dtype=np.int64)
    mapping[inner] = outer
    if np.array_equal(mapping[inner], outer):
        return mapping
    return None


class ModelStructure:
    """θ layout, block structure and the θ-free sums of one model.

    Built once per model from its terms (in lme4's order) and ``xy`` (X with the
    response as last column); read-only afterwards. Fields:

    * ``terms`` (list of ``ReTerm``), ``xy``, ``n`` rows, ``p`` fixed effects;
    * θ: ``n_theta``, ``theta_slices[t]`` (term t's part of θ), ``theta_lower``
      (0 for diagonal entries, −∞ otherwise), ``theta_start`` (lme4's: 1 on the
      diagonal, 0 elsewhere), ``theta_is_diag``;
    * the chain: ``n_chain`` leading terms, each nested in every later one;
      ``maps[(r, s)]`` the level of chain term s containing each level of r, and
      ``segments[(r, s)]`` the grouped sums along that map;
    * chain sums (entry-major stacks, see ``linalg``): ``gram[t]`` ZₜᵀZₜ per level
      (k_t, k_t, q_t), ``zxy[t]`` ZₜᵀXy per level (k_t, p+1, q_t), ``cross[(r, s)]``
      Z_sᵀZ_r per level of r (k_s, k_r, q_r);
    * the dense tail: ``dense`` (indices of the crossed terms), ``dense_offsets``,
      ``q_dense`` (their total width), ``dense_gram`` (Z_DᵀZ_D, q_dense²),
      ``chain_dense_pairs[(s, d)]`` (co-occurring level pairs and their sums), and
      for small designs (``wide``) ``zd_wide[s]`` the same as dense stacks;
    * ``xtx`` the cross-products of [X, y − X·beta_shift]; ``beta_shift`` the
      least-squares β the response is centred by, ``y_centred`` (see
      ``_centre_response``).
    """

    def __init__(self, terms: list[ReTerm], xy: np.ndarray, bases: list[TermBasis] | None = None,
                 weights_term: float = 0.0):
        """``terms`` with the user's columns; or, with ``bases`` given, columns already in
        those bases (a subset of a structure's own terms)."""
        if not terms:
            raise ValueError("a mixed model needs at least one random-effects term")
        if bases is None:
            bases = [TermBasis.for_term(t) for t in terms]
            terms = [t if b.identity else replace(t, z=b.standardise(t.z)) for t, b in zip(terms, bases)]
        self.bases = bases
        # −Σ log wᵢ for prior weights (rows and columns then carry √wᵢ): the criterion of
        # y ~ N(Xβ + Zb, σ²W⁻¹) is the unweighted one of the scaled rows plus this (lme4's ldW)
        self.weights_term = weights_term
        self._m = [b.matrix for b in bases]
        self._m_inv = [np.linalg.inv(m) for m in self._m]
        self.terms = terms
        # Terms that are one column of ones (random intercepts): their sums need no products
        self.intercept_only = [t.k == 1 and bool(np.all(t.z == 1.0)) for t in terms]
        self.row_weights = None  # PIRLS's working weights, in its reweighted copies
        self.xy = xy
        self.n = xy.shape[0]
        self.p = xy.shape[1] - 1
        self._layout_theta()
        self._find_chain()
        self._centre_response()
        self._chain_sums()
        self._dense_sums()
        del self._sums_xy  # only needed for the sums (a copy of X and y)

    @classmethod
    def from_sums(cls, terms: list[ReTerm], bases: list[TermBasis], sums, beta_shift: np.ndarray,
                  weights_term: float = 0.0) -> "ModelStructure":
        """The structure of a model whose rows were reduced in parts (``partial_sums.LevelSums``,
        added over the parts): the same layout, chain and sums as the constructor makes from
        the rows, which this structure does not hold (``xy`` is None: what needs the rows —
        ``subset``, ``with_response``, a GLMM's ``reweighted`` — is not available).

        ``terms`` give each term's levels, names and width (their ``codes`` and ``z`` may be
        empty); ``bases`` the unit-free bases the sums were made in; ``beta_shift`` the β the
        response was centred by before the sums (``_centre_response``)."""
        st = cls.__new__(cls)
        st.bases = bases
        st.weights_term = weights_term
        st._m = [b.matrix for b in bases]
        st._m_inv = [np.linalg.inv(m) for m in st._m]
        st.terms = terms
        st.intercept_only = list(sums.intercept_only)
        st.row_weights = None
        st.xy = None
        st.y_centred = None
        st.n = sums.n
        st.p = sums.xtx.shape[0] - 1
        st._layout_theta()

        def nested(r, s):  # each level of r in exactly one pair: r is nested in s
            keys = sums.pairs[(r, s)][0]
            return keys % terms[s].n_levels if len(keys) == terms[r].n_levels else None

        st._find_chain(nested, lambda r, s: sums.same[(r, s)])
        st.beta_shift = np.asarray(beta_shift, dtype=float)
        st.xtx = sums.xtx
        st.gram = list(sums.gram)
        st.zxy = list(sums.zxy)
        # (a nested pair's keys are sorted by the finer level, one pair each: indexed by it)
        st.cross = {(r, t): np.ascontiguousarray(sums.pairs[(r, t)][1].transpose(1, 0, 2)) for (r, t) in st.maps}
        st._dense_layout(pairs=False)
        if st.dense:
            for s in range(st.n_chain):
                for d in st.dense:
                    keys, values = sums.pairs[(s, d)]
                    qd = terms[d].n_levels
                    st.chain_dense_pairs[(s, d)] = (keys // qd, keys % qd, values)
            st._wide_blocks()
            gram = np.zeros((st.q_dense, st.q_dense))
            for d in st.dense:
                od, kd = st.dense_offsets[d], terms[d].k
                for a in range(kd):
                    for b in range(kd):
                        idx = od + np.arange(terms[d].n_levels) * kd
                        gram[idx + a, idx + b] = st.gram[d][a, b]
                for e in st.dense:
                    if e <= d:
                        continue
                    keys, values = sums.pairs[(d, e)]
                    oe, ke, qe = st.dense_offsets[e], terms[e].k, terms[e].n_levels
                    rows, cols = od + (keys // qe) * kd, oe + (keys % qe) * ke
                    for a in range(kd):
                        for b in range(ke):
                            gram[rows + a, cols + b] = values[a, b]
                            gram[cols + b, rows + a] = values[a, b]
            st.dense_gram = gram
        return st

    def _centre_response(self, centre: bool = True):
        """Sums are made with y − X b (b: least squares), not y.

        Every criterion is unchanged (β is profiled out: r² depends on y only
        modulo the column space of X), but r² is then a Cholesky downdate of
        a far smaller yᵀy, which loses ε·yᵀy/r² of precision instead of
        ~1e-13 (mathscore ~ 520 ± 35). β̂ is reported as b + the solution.
        """
        x, y = self.xy[:, : self.p], self.xy[:, self.p]
        if not centre:  # (PIRLS's weighted copies: no copy of the columns, no least squares)
            self.beta_shift = np.zeros(self.p)
            self.y_centred = y
            self._sums_xy = self.xy
            w = self.row_weights
            self.xtx = self.xy.T @ (self.xy if w is None else self.xy * w[:, None])
            return
        if self.row_weights is not None:
            raise ValueError("only unweighted structures centre their response")
        self.beta_shift = np.linalg.lstsq(x, y, rcond=None)[0] if self.p else np.zeros(self.p)
        self.y_centred = y - x @ self.beta_shift if self.p else y.copy()
        self._sums_xy = np.column_stack([x, self.y_centred])
        self.xtx = self._sums_xy.T @ self._sums_xy

    def subset(self, rows: np.ndarray) -> "ModelStructure":
        """The same model on a subset of the rows (levels renumbered densely)."""
        terms = []
        for t in self.terms:
            codes = t.codes[rows]
            present = np.zeros(t.n_levels, dtype=bool)
            present[codes] = True
            rank = np.cumsum(present) - 1
            terms.append(ReTerm(codes=rank[codes], n_levels=int(present.sum()), z=t.z[rows], group=t.group,
                                names=t.names, factor=t.factor))
        return ModelStructure(terms, self.xy[rows], bases=self.bases)

    def with_response(self, y: np.ndarray) -> "ModelStructure":
        """The same model with another response (same rows, X and terms), for the cost
        of the y-dependent sums only: one bincount per effect. For the parametric
        bootstrap and for derivatives at a shifted response."""
        import copy

        y = np.asarray(y, dtype=float)
        if y.shape != (self.n,):
            raise ValueError(f"response of length {len(y)} for a model with {self.n} rows")
        new = copy.copy(self)
        new.xy = self.xy.copy()
        new.xy[:, self.p] = y
        new._centre_response()
        del new._sums_xy
        yc = new.y_centred
        new.zxy = []
        for t, old in zip(self.terms, self.zxy):
            blk = old.copy()
            for a in range(t.k):
                blk[a, self.p] = np.bincount(t.codes, weights=t.z[:, a] * yc, minlength=t.n_levels)
            new.zxy.append(blk)
        elim = getattr(self, "_elimination", None)
        if elim is not None:
            new._elimination = elim.with_response(new)
        elif hasattr(new, "_elimination"):
            del new._elimination
        return new

    # -- θ ---------------------------------------------------------------
    def _layout_theta(self):
        self.theta_slices = []
        lower, upper, start, sd, offset = [], [], [], [], 0
        for t in self.terms:
            self.theta_slices.append(slice(offset, offset + t.n_theta))
            if t.structure:
                lo, hi = covstruct.bounds(t.structure, t.k)
                lower.append(lo)
                upper.append(hi)
                start.append(covstruct.start(t.structure, t.k))
                sd.append(covstruct.is_sd(t.structure, t.k))
            else:
                rows, cols = lower_indices(t.k)
                diag = rows == cols
                lower.append(np.where(diag, 0.0, -np.inf))
                upper.append(np.full(t.n_theta, np.inf))
                start.append(diag.astype(float))
                sd.append(diag)
            offset += t.n_theta
        self.n_theta = offset
        self._lower_idx = [lower_indices(t.k) for t in self.terms]
        self.theta_lower = np.concatenate(lower)
        self.theta_upper = np.concatenate(upper)
        self.theta_start = np.concatenate(start)
        # the parameters whose zero is a singular fit: Λ's diagonal, a structure's SDs
        self.theta_is_diag = np.concatenate(sd)
        self.structured = any(t.structure for t in self.terms)
        # every unstructured Λ in one buffer: θ's place in it, and each term's span (an optimiser's
        # evaluation builds them with one scatter instead of one per term)
        spans, index, at = [], [], 0
        for t, (rows, cols) in zip(self.terms, self._lower_idx):
            spans.append((at, at + t.k * t.k, t.k))
            index.append(at + rows * t.k + cols)
            at += t.k * t.k
        self._lambda_layout = None if self.structured else (at, np.concatenate(index), spans)

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Λ_t (k×k; lower triangular unless structured) of every term for a given θ (either
        parameterisation); for a batch of θ (B, n_theta), (k, k, B, 1) stacks (see ``linalg``)."""
        batch = theta.ndim == 2
        if not batch and self._lambda_layout is not None:
            size, index, spans = self._lambda_layout
            flat = np.zeros(size)
            flat[index] = theta
            return [flat[a:b].reshape(k, k) for a, b, k in spans]
        out = []
        for t, sl, idx in zip(self.terms, self.theta_slices, self._lower_idx):
            if t.structure:
                if batch:
                    lam = np.stack([covstruct.lam(t.structure, t.k, row[sl]) for row in theta], axis=2)[..., None]
                else:
                    lam = covstruct.lam(t.structure, t.k, theta[sl])
            elif batch:
                lam = np.zeros((t.k, t.k, len(theta), 1))
                lam[idx[0], idx[1], :, 0] = theta[:, sl].T
            else:
                lam = np.zeros((t.k, t.k))
                lam[idx] = theta[sl]
            out.append(lam)
        return out

    def structure_at_bound(self, theta: np.ndarray, tol: float) -> bool:
        """Whether a structured term's correlation is at a bound where its covariance is singular
        (ρ = ±1 for ar1; 1 or −1/(k − 1) for cs): a singular fit, as an SD of 0 is."""
        return any(covstruct.correlation_at_bound(t.structure, t.k, np.asarray(theta)[sl], tol)
                   for t, sl in zip(self.terms, self.theta_slices) if t.structure)

    def engine_lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """The blocks the engine multiplies the standardised columns by for the user's θ: MₜΛₜ
        (for a working θ̃ they are its own Λ̃ₜ, ``lambdas``)."""
        lams = self.lambdas(theta)
        if theta.ndim == 2:
            return [lam if b.identity else np.einsum("ij,jk...->ik...", m, lam)
                    for lam, b, m in zip(lams, self.bases, self._m)]
        return [lam if b.identity else m @ lam for lam, b, m in zip(lams, self.bases, self._m)]

    def fold(self, theta: np.ndarray) -> np.ndarray:
        """The θ within the bounds that describes the same covariances: each column of Λₜ
        whose diagonal entry is negative negated (ΛΛᵀ does not change)."""
        out = np.array(theta, dtype=float)
        for t, sl, idx in zip(self.terms, self.theta_slices, self._lower_idx):
            if t.structure:  # (an SD's sign does not matter; ρ is kept within its bounds)
                part = out[sl]
                sd = covstruct.is_sd(t.structure, t.k)
                part[sd] = np.abs(part[sd])
                lo, hi = covstruct.bounds(t.structure, t.k)
                out[sl] = np.clip(part, lo, hi)
                continue
            rows, cols = idx
            part = out[sl]
            negative = {c for r, c, v in zip(rows, cols, part) if r == c and v < 0}
            if negative:
                part[np.isin(cols, list(negative))] *= -1.0
                out[sl] = part
        return out

    def boundary_mirrors(self, theta: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """θ's with the same covariances on the other side of the boundary: each column of Λₜ
        whose diagonal entry is 0 and that has nonzero entries below it, negated.

        With Λₜ[j, j] = 0 the sign of column j is free (ΛΛᵀ keeps it), but the bound
        Λₜ[j, j] ≥ 0 lets the optimiser leave the boundary only on one side: from
        (0, b) it can reach correlations of b's sign, not the other. A fit can so stop
        at a point that is a minimum within the bounds but not of the criterion
        (``(poly(x, 2) || g)`` on transforms.csv: −0.08 in the REML criterion).
        Either parameterisation (the working Λ̃ is Λ multiplied on the left). Returns
        (mirror, index in θ of the diagonal entry Λₜ[j, j]).
        """
        out = []
        theta = np.asarray(theta, dtype=float)
        for t, sl, (rows, cols) in zip(self.terms, self.theta_slices, self._lower_idx):
            if t.structure:  # (its Λ's columns are not free parameters)
                continue
            part = theta[sl]
            diag = np.flatnonzero(rows == cols)
            for j in range(len(diag)):
                if part[diag[j]] != 0.0:
                    continue
                below = (cols == j) & (rows > j)
                if np.any(part[below] != 0.0):
                    mirror = theta.copy()
                    mirror[np.flatnonzero(below) + sl.start] *= -1.0
                    out.append((mirror, sl.start + int(diag[j])))
        return out

    @property
    def n_sdcor(self) -> int:
        """How many SDs and correlations the terms' covariances have (each term's lower triangle;
        ``n_theta`` unless a term is structured)."""
        return sum(t.k * (t.k + 1) // 2 for t in self.terms)

    @property
    def batch_size_unit(self) -> int:
        """About how many block entries one θ adds to a batch factored at once (``linalg``):
        each level's k×k diagonal block and its k×(p+1) block towards Xy."""
        return sum(t.k * (t.k + self.p + 1) * t.n_levels for t in self.terms) + (self.p + 1) ** 2

    @property
    def basis_matrices(self) -> list[np.ndarray]:
        """Mₜ of each term (z = z̃ Mₜ): the user's columns from the unit-free ones."""
        return list(self._m)

    def user_lambdas(self, theta_w: np.ndarray) -> list[np.ndarray]:
        """Mₜ⁻¹Λ̃ₜ for a working θ̃: the blocks that map spherical effects to the user's columns
        (full, not lower triangular; ΛΛᵀ is the user's covariance)."""
        return [minv @ lam for minv, lam in zip(self._m_inv, self.lambdas(theta_w))]

    def elimination(self, build):
        """The first block's closed-form elimination, ``build(self)`` on first use (the engine's
        ``eliminate.FirstBlockElimination``, or None where it does not apply), then kept with the
        structure: a cache the structure owns (``with_response`` carries it to a new response)."""
        if not hasattr(self, "_elimination"):
            self._elimination = build(self)
        return self._elimination

    def to_user(self, theta_w: np.ndarray) -> np.ndarray:
        """The user's θ of the covariances a working θ̃ describes."""
        return self._convert(theta_w, self._m_inv)

    def to_working(self, theta: np.ndarray) -> np.ndarray:
        """The working θ̃ of the covariances a user's θ describes."""
        return self._convert(theta, self._m)

    def _convert(self, theta: np.ndarray, mats: list[np.ndarray]) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        out = theta.copy()
        for lam, b, m, sl, idx in zip(self.lambdas(theta), self.bases, mats, self.theta_slices, self._lower_idx):
            if b.identity:
                continue
            out[sl] = lower_factor(m @ lam)[idx]
        return out

    # -- block structure ------------------------------------------------------
    def _find_chain(self, nested=None, same_columns=None):
        """Longest prefix of terms in which every term is nested in all later ones.

        ``maps[(r, s)]`` maps each level of chain term r to the level of chain
        term s (r < s) that contains it. ``nested(r, s)`` and ``same_columns(r, s)`` answer
        from something other than the rows (``from_sums``: the level pairs that occur).
        """
        if nested is None:
            nested = lambda r, s: nested_map(self.terms[r].codes, self.terms[r].n_levels, self.terms[s].codes)
        if same_columns is None:
            same_columns = lambda r, s: (self.terms[r].k == self.terms[s].k
                                         and np.array_equal(self.terms[r].z, self.terms[s].z))
        self.maps: dict[tuple[int, int], np.ndarray] = {}
        chain = 1
        for s in range(1, len(self.terms)):
            found = {}
            for r in range(s):
                m = nested(r, s)
                if m is None:
                    break
                found[(r, s)] = m
            else:
                self.maps.update(found)
                chain = s + 1
                continue
            break
        self.n_chain = chain
        self.segments = {key: Segments(m, self.terms[key[1]].n_levels) for key, m in self.maps.items()}
        # A chain term with the same columns as a finer one ((1 | school) over (1 | class), or
        # (1 | school/class)): its sums are the finer term's summed over the map, q_r values
        # instead of n rows. (Weights, as in PIRLS's copies, keep the columns equal.)
        self.same_columns = {key: bool(same_columns(*key)) for key in self.maps}

    def _chain_sums(self):
        """Per-level sums for the chain: ZₛᵀZₛ blocks, Z_tᵀZ_r per level of r, ZₛᵀXy."""
        # Stacks are entry-major (see linalg): gram[s] is (k_s, k_s, q_s), zxy[s] is (k_s, p+1, q_s).
        self.gram = []
        self.zxy = []
        w = self.row_weights
        xy_cols = _ones_as_none(self._sums_xy)
        intercept = next((j for j, c in enumerate(xy_cols) if c is None), None)
        for i, t in enumerate(self.terms):
            finer = next((r for r in range(i) if self.same_columns.get((r, i))), None)
            if finer is not None:
                seg = self.segments[(finer, i)]
                self.gram.append(seg.sum(self.gram[finer]))
                self.zxy.append(seg.sum(self.zxy[finer]))
                continue
            z = self.term_columns(i)
            zxy = grouped_cross(t.codes, t.n_levels, z, xy_cols, w)
            if z is None and intercept is not None:  # ZᵀZ of a random intercept is its Zᵀ1
                self.gram.append(zxy[:, intercept : intercept + 1].copy())
            else:
                self.gram.append(grouped_cross(t.codes, t.n_levels, z, z, w))
            self.zxy.append(zxy)
        # cross[(r, t)] for chain r < t: (k_t, k_r, q_r), the block at (map_rt(i), i)
        self.cross = {}
        for (r, t) in self.maps:
            tr = self.terms[r]
            self.cross[(r, t)] = (self.gram[r] if self.same_columns[(r, t)] else
                                  grouped_cross(tr.codes, tr.n_levels, self.term_columns(t), self.term_columns(r), w))

    def term_columns(self, i: int):
        """Term i's columns for the sums: None for a random intercept (a column of ones)."""
        return None if self.intercept_only[i] else self.terms[i].z

    def _dense_sums(self):
        """Sums for the dense (crossed) tail: pair lists to the chain, dense ZᵀZ among themselves."""
        self._dense_layout()
        if self.dense:
            self._dense_values()

    def _dense_layout(self, pairs: bool = True):
        """Which terms are dense, their offsets, and (``pairs``: from the rows) the co-occurring level
        pairs (θ- and weight-free)."""
        terms = self.terms
        self.dense = list(range(self.n_chain, len(terms)))
        self.dense_offsets = {}
        off = 0
        for d in self.dense:
            self.dense_offsets[d] = off
            off += terms[d].n_levels * terms[d].k
        self.q_dense = off
        self.chain_dense_pairs = {}
        self.dense_gram = None
        self._pairs = {}  # (s, d): rows (level of s), cols (level of d), each row's pair index
        self.wide = False
        self.zd_wide = {}
        if not self.dense:
            return
        for s in range(self.n_chain if pairs else 0):
            for d in self.dense:
                ts, td = terms[s], terms[d]
                key = ts.codes.astype(np.int64) * td.n_levels + td.codes
                uniq, inv = np.unique(key, return_inverse=True)
                self._pairs[(s, d)] = (uniq // td.n_levels, uniq % td.n_levels, inv.ravel())
        # Small enough crossed designs keep the chain-to-dense blocks as dense
        # (k_s, q_dense, q_s) stacks: then the dense columns ride along with Xy
        # through the same blocked kernels, with no sparse matrices per evaluation.
        self.wide = sum(terms[s].k * terms[s].n_levels for s in range(self.n_chain)) * self.q_dense <= WIDE_LIMIT

    def _dense_values(self):
        """The dense tail's sums from the terms' current columns (see ``reweighted``)."""
        terms, w = self.terms, self.row_weights
        for (s, d), (rows, cols, inv) in self._pairs.items():
            sums = grouped_cross(inv, len(rows), self.term_columns(s), self.term_columns(d), w)
            self.chain_dense_pairs[(s, d)] = (rows, cols, sums)
        self._wide_blocks()
        q = self.q_dense
        gram = np.zeros((q, q))
        for d in self.dense:
            for e in self.dense:
                td, te = terms[d], terms[e]
                if e < d:
                    continue
                key = td.codes.astype(np.int64) * te.n_levels + te.codes
                size = td.n_levels * te.n_levels
                block = np.empty((td.n_levels, td.k, te.n_levels, te.k))
                zd, ze = columns(self.term_columns(d)), columns(self.term_columns(e))
                for a in range(td.k):
                    for b in range(te.k):
                        block[:, a, :, b] = np.bincount(key, weights=product(w, zd[a], ze[b]), minlength=size).reshape(
                            td.n_levels, te.n_levels
                        )
                flat = block.reshape(td.n_levels * td.k, te.n_levels * te.k)
                od, oe = self.dense_offsets[d], self.dense_offsets[e]
                gram[od : od + flat.shape[0], oe : oe + flat.shape[1]] = flat
                gram[oe : oe + flat.shape[1], od : od + flat.shape[0]] = flat.T
        self.dense_gram = gram

    def _wide_blocks(self):
        """For small crossed designs (``wide``), the chain-to-dense sums as dense stacks."""
        if not self.wide:
            return
        terms = self.terms
        for s in range(self.n_chain):
            ts = terms[s]
            zd = np.zeros((ts.k, self.q_dense, ts.n_levels))
            for d in self.dense:
                rows, cols, sums = self.chain_dense_pairs[(s, d)]
                kd = terms[d].k
                for b in range(kd):
                    zd[:, self.dense_offsets[d] + cols * kd + b, rows] = sums[:, b, :]
            self.zd_wide[s] = zd

    def reweighted(self, w: np.ndarray, xy: np.ndarray) -> "ModelStructure":
        """The same terms and layout with row weights ``w`` and new columns ``xy`` ([X,
        response], any number of X columns): the sums of a penalised weighted least-squares
        problem, as each iteration of PIRLS needs (``engine.pirls``). Only the sums are
        recomputed — O(n) bincounts of weighted products of the unweighted columns — never
        the nesting, pairs or θ layout. The response is not centred by least squares first
        (r² then carries the rounding of yᵀy: fine for the modes and β PIRLS needs, not for
        a criterion)."""
        import copy

        new = copy.copy(self)
        new.row_weights = w
        new.xy = xy
        new.n, new.p = new.xy.shape[0], new.xy.shape[1] - 1
        new.__dict__.pop("_elimination", None)
        new.chain_dense_pairs = {}
        new.zd_wide = {}
        new._centre_response(centre=False)
        new._chain_sums()
        if new.dense:
            new._dense_values()
        del new._sums_xy
        return new
