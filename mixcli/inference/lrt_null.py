"""What a likelihood-ratio test of two mixed models may be compared with: χ², a boundary mixture, or
nothing (the models are not nested).

A test of the smaller model against the larger is a χ² test only when the smaller is the larger
with some parameters fixed at interior values. Random effects make two other cases:

* **not nested**: ``(1 | student)`` against ``(1 | school)``, or fixed effects that are not a
  subset: the likelihood ratio has no χ² null at all (lme4 prints one anyway); AIC and BIC compare
  such models.
* **variances on their boundary**: the smaller model sets a variance to 0. When the larger adds
  exactly one random effect to one covariance block (its variance and its covariances with the
  effects already in the block: ``(1 | g)`` → ``(1 + x | g)``, or a new ``(1 | h)``), the null is
  the 50:50 mixture of χ²(d−1) and χ²(d) (Self & Liang 1987, Stram & Lee 1994). Where the larger
  model adds one effect to each of m blocks, the pieces are taken as independent, and the null is
  the sum: Σₖ C(m, k)/2ᵐ χ²(Df − k) (the chi-bar-square with binomial weights; two added
  intercepts give ¼χ²(0) + ½χ²(1) + ¼χ²(2)). Parameters that only join blocks (correlations)
  are interior and add to every component's df.

  Two or more effects added to one block at once (``(1 | g)`` → ``(1 + x + z | g)``) put a
  covariance matrix on the boundary of the positive semi-definite cone: the mixture weights then
  depend on the information matrix, and no mixture is given (the parametric bootstrap is the
  answer). A test that adds only correlations (``(x || g)`` → ``(x | g)``) has no boundary: its
  χ² p-value stands as it is.

A Poisson GLMM against a negative binomial one (nbinom1 or nbinom2, the same link) is the same
kind of test: Poisson is the negative binomial at its dispersion's boundary (NB1's φ = 0, NB2's
k = ∞), one more boundary piece of the mixture. Other pairs of families are not nested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .distributions import chi2_sf


@dataclass
class LrtNull:
    """The null distribution of one likelihood-ratio test (the larger model against the smaller)."""

    nested: bool
    boundary_pieces: int = 0  # blocks that gain exactly one random effect (m above)
    crowded: list[str] | None = None  # blocks gaining two or more effects at once: no mixture
    why_not_nested: str = ""
    dispersion: str | None = None  # the negative binomial against Poisson: its family, one of the pieces

    @property
    def mixture(self) -> bool:
        """Whether the chi-bar-square mixture is the null distribution (see the module docstring)."""
        return self.nested and self.boundary_pieces > 0 and not self.crowded

    def p_mixture(self, chisq: float, df: int) -> float | None:
        m = self.boundary_pieces
        if not self.mixture or df < m:
            return None
        return float(sum(math.comb(m, k) / 2.0**m * chi2_sf(chisq, df - k) for k in range(m + 1)))

    def describe(self) -> str:
        """The mixture in words, for the table's note."""
        m = self.boundary_pieces
        if self.dispersion is not None:
            at = "φ = 0" if self.dispersion == "nbinom1" else "k = ∞"
            what = f"Poisson is {self.dispersion} at its dispersion's boundary ({at})"
            if m == 1:
                return f"{what}: Pr(mix) uses the 50:50 mixture of χ²(Df−1) and χ²(Df) as the null distribution"
            weights = " + ".join(f"{_fraction(math.comb(m, k), 2**m)}χ²(Df−{k})" if k else
                                 f"{_fraction(1, 2**m)}χ²(Df)" for k in range(m + 1))
            return (f"{what}, and {m - 1} covariance block(s) gain one random effect each: Pr(mix) uses {weights} "
                    "as the null distribution, taking the pieces as independent")
        if m == 1:
            return ("one random effect added (a variance at its boundary, 0, with its covariances): Pr(mix) uses "
                    "the 50:50 mixture of χ²(Df−1) and χ²(Df) as the null distribution")
        weights = " + ".join(f"{_fraction(math.comb(m, k), 2**m)}χ²(Df−{k})" if k else
                             f"{_fraction(1, 2**m)}χ²(Df)" for k in range(m + 1))
        return (f"one random effect added to each of {m} covariance blocks (each a variance at its boundary, 0): "
                f"Pr(mix) uses {weights} as the null distribution, taking the blocks as independent")


def _fraction(a: int, b: int) -> str:
    g = math.gcd(a, b)
    a, b = a // g, b // g
    return {(1, 2): "½", (1, 4): "¼", (3, 4): "¾", (1, 8): "⅛", (3, 8): "⅜"}.get((a, b), f"{a}/{b} ")


def _blocks(frame) -> list[tuple[str, frozenset, str]]:
    """Each covariance block of the random effects: (grouping factor, its effects' names, its
    structure: "" for lme4's unstructured one, else diag, cs or ar1)."""
    return [(t.factor, frozenset(t.names), getattr(t, "structure", "")) for t in frame.terms]


def _within(small: tuple, big: tuple) -> bool:
    """Whether covariance block ``small`` is ``big`` with some parameters fixed: its effects among
    big's and its structure a special case of big's (diag ⊂ cs ⊂ unstructured, ar1 ⊂ unstructured;
    a single variance is any of them but ar1 with its other occasions' SD set to 0, which ar1's one
    SD cannot do; ar1 is only itself, over the same occasions)."""
    (f_small, e_small, s_small), (f_big, e_big, s_big) = small, big
    if f_small != f_big or not e_small <= e_big:
        return False
    if not s_big:
        return True
    if s_big == "ar1":
        return s_small == "ar1" and e_small == e_big
    plain = (not s_small and len(e_small) == 1) or s_small == "diag"
    return plain or (s_big == "cs" and s_small == "cs")


def _block_text(factor: str, effects, structure: str = "") -> str:
    names = sorted(effects, key=lambda e: (e != "(Intercept)", e))
    lhs = " + ".join("1" if e == "(Intercept)" else e for e in names)
    return f"{structure}({lhs if '(Intercept)' in effects else '0 + ' + lhs} | {factor})"


def _fixed_nested(small, big) -> bool:
    """Whether the smaller model's fixed-effect columns lie in the span of the larger's (for
    saved fits, which keep no X: whether its columns are among the larger's, by name)."""
    if small.X is None or big.X is None:
        return set(small.fixef_names) <= set(big.fixef_names)
    xs, xb = np.asarray(small.X, dtype=float), np.asarray(big.X, dtype=float)
    if xs.shape[1] == 0:
        return True
    if xs.shape[0] != xb.shape[0] or xs.shape[1] > xb.shape[1]:
        return False
    if xb.shape[1] == 0:
        return False
    coef, *_ = np.linalg.lstsq(xb, xs, rcond=None)
    resid = xs - xb @ coef
    return bool(np.all(np.linalg.norm(resid, axis=0) <= 1e-8 * np.maximum(np.linalg.norm(xs, axis=0), 1.0)))


def lrt_null(small, big) -> LrtNull:
    """The null of the test of frame ``small`` against frame ``big`` (both ``ModelFrame``s)."""
    fs, fb = getattr(small, "family", None), getattr(big, "family", None)
    dispersion = None
    if fs is not None and fb is not None and fs.name != fb.name:
        if not (fs.name == "poisson" and fb.name in ("nbinom1", "nbinom2") and fs.link.name == fb.link.name):
            return LrtNull(False, why_not_nested=f"a {fs.name} ({fs.link.name}) model is not a special case of a "
                                                 f"{fb.name} ({fb.link.name}) one")
        dispersion = fb.name
    if not _fixed_nested(small, big):
        return LrtNull(False, why_not_nested="the smaller model's fixed effects are not among the larger's")
    big_blocks = _blocks(big)
    gained = {i: set(effects) for i, (_, effects, _) in enumerate(big_blocks)}
    for block in _blocks(small):
        home = [i for i, b in enumerate(big_blocks) if _within(block, b)]
        if not home:
            return LrtNull(False, why_not_nested=f"{_block_text(*block)} is not part of the larger model")
        gained[home[0]] -= block[1]
    pieces = [i for i, e in gained.items() if len(e) == 1]
    crowded = [_block_text(*big_blocks[i]) for i, e in gained.items() if len(e) > 1]
    return LrtNull(True, boundary_pieces=len(pieces) + (dispersion is not None), crowded=crowded or None,
                   dispersion=dispersion)
