"""The θ-free sums of a mixed model gathered from parts of its rows, and added together.

``ModelStructure`` (``structure.py``) reduces the rows of a model to per-level sums once.
When the rows do not fit in one process (a Parquet dataset on a Dask cluster, see
``mixcli.distributed``) each part of the rows is reduced on its own, in the dataset's
global level coding, and the parts' records are added (in any order: a tree of
``add``); ``ModelStructure.from_sums`` then builds the same structure from the total, so
that the criterion, optimiser, Satterthwaite df, profiles and conditional modes run
unchanged on arrays of the size of the number of levels.

Two records, for two passes over the rows:

* ``ColumnMoments`` — per column of a term: count, mean, sum of squared deviations
  (merged as Chan et al.'s pairwise update, as accurate as the two-pass formula), the
  largest absolute value and whether it is all ones: what ``TermBasis`` needs;
* ``LevelSums`` — per term ZᵀZ and ZᵀXy per level, [X y]ᵀ[X y], and for every pair of
  terms the level pairs that occur with Z_aᵀZ_b summed per pair: the nesting maps and the
  cross blocks of nested terms, and the pair lists and dense blocks of crossed ones.

Every sum is made by ``linalg.grouped_cross``, the kernel the in-memory structure uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linalg import grouped_cross


@dataclass
class ColumnMoments:
    """Summaries of an (n, k) block of columns; ``add`` merges two blocks' summaries."""

    n: int
    mean: np.ndarray  # (k,)
    m2: np.ndarray  # (k,) Σ (x − mean)²
    peak: np.ndarray  # (k,) max |x|
    ones: np.ndarray  # (k,) bool: every value is 1

    @classmethod
    def of(cls, z: np.ndarray) -> "ColumnMoments":
        n, k = z.shape
        if n == 0:
            return cls(0, np.zeros(k), np.zeros(k), np.zeros(k), np.ones(k, dtype=bool))
        mean = z.mean(axis=0)
        return cls(n, mean, ((z - mean) ** 2).sum(axis=0), np.abs(z).max(axis=0), np.all(z == 1.0, axis=0))

    def add(self, other: "ColumnMoments") -> "ColumnMoments":
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        return ColumnMoments(n, mean, m2, np.maximum(self.peak, other.peak), self.ones & other.ones)


def _ones_as_none(z: np.ndarray) -> list:
    """Columns with each all-ones column as None (no products are formed for it)."""
    return [None if bool(np.all(z[:, j] == 1.0)) else z[:, j] for j in range(z.shape[1])]


@dataclass
class LevelSums:
    """The θ-free sums of some rows, over the dataset's global level codes.

    ``gram[t]`` (k_t, k_t, q_t), ``zxy[t]`` (k_t, p+1, q_t) and ``xtx`` (p+1, p+1) as in
    ``ModelStructure``; ``pairs[(a, b)]`` for terms a < b: the level pairs that occur, as
    sorted keys level_a·q_b + level_b, and Z_aᵀZ_b summed per pair (k_a, k_b, pairs);
    ``same[(a, b)]``: the two terms' columns are equal in every row; ``intercept_only[t]``:
    term t is one column of ones; ``n`` rows.
    """

    n: int
    n_levels: list[int]
    gram: list[np.ndarray]
    zxy: list[np.ndarray]
    xtx: np.ndarray
    pairs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]
    same: dict[tuple[int, int], bool]
    intercept_only: list[bool]

    @classmethod
    def of(cls, codes: list[np.ndarray], n_levels: list[int], zs: list[np.ndarray], xy: np.ndarray) -> "LevelSums":
        """The sums of these rows: per term its level codes (global) and columns (already in the
        structure's basis and weighted), and [X, centred y] (weighted)."""
        cols = [_ones_as_none(z) for z in zs]
        xy_cols = _ones_as_none(xy)
        gram = [grouped_cross(c, q, zc, zc) for c, q, zc in zip(codes, n_levels, cols)]
        zxy = [grouped_cross(c, q, zc, xy_cols) for c, q, zc in zip(codes, n_levels, cols)]
        pairs, same = {}, {}
        for b in range(len(zs)):
            for a in range(b):
                key = codes[a].astype(np.int64) * n_levels[b] + codes[b]
                uniq, inv = np.unique(key, return_inverse=True)
                pairs[(a, b)] = (uniq, grouped_cross(inv.ravel(), len(uniq), cols[a], cols[b]))
                same[(a, b)] = zs[a].shape[1] == zs[b].shape[1] and bool(np.array_equal(zs[a], zs[b]))
        return cls(len(xy), list(n_levels), gram, zxy, xy.T @ xy, pairs, same,
                   [z.shape[1] == 1 and all(c is None for c in zc) for z, zc in zip(zs, cols)])

    def add(self, other: "LevelSums") -> "LevelSums":
        pairs = {}
        for key, (ka, sa) in self.pairs.items():
            kb, sb = other.pairs[key]
            keys, inv = np.unique(np.concatenate([ka, kb]), return_inverse=True)
            both = np.concatenate([sa, sb], axis=2)
            merged = np.zeros(both.shape[:2] + (len(keys),))
            for i in range(both.shape[0]):
                for j in range(both.shape[1]):
                    merged[i, j] = np.bincount(inv.ravel(), weights=both[i, j], minlength=len(keys))
            pairs[key] = (keys, merged)
        return LevelSums(
            self.n + other.n, self.n_levels,
            [a + b for a, b in zip(self.gram, other.gram)],
            [a + b for a, b in zip(self.zxy, other.zxy)],
            self.xtx + other.xtx, pairs,
            {key: self.same[key] and other.same[key] for key in self.same},
            [a and b for a, b in zip(self.intercept_only, other.intercept_only)],
        )
