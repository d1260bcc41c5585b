"""A model's θ-free structure with a different response, for the cost of the y-dependent sums only.

``ModelStructure`` reduces the rows to per-level sums once; of those, only
the sums involving y (the last column of ``xy``: Zₜᵀy per level and the last
row of XyᵀXy) change with the response. Building a new structure would
recompute everything (nesting maps, segment sorts, dense pair lists: tens of
milliseconds on the classroom data); this module copies the structure and
recomputes only those sums, O(n·k) with one ``bincount`` per effect.

Used by the parametric bootstrap (a new simulated y per replicate) and by
Satterthwaite's derivatives (the response centred at Xβ̂, which leaves every
criterion unchanged — r² depends on y only modulo the column space of X —
but removes the cancellation in r² = yᵀy − …, making second differences
far less noisy).

This relies on the attribute names of ``engine.structure.ModelStructure``
(``xy``, ``zxy``, ``xtx``, ``terms``), and drops the private attributes the
engine caches on a structure (``_elimination`` holds y-dependent sums), so
they are rebuilt for the new response; an engine method ``with_response(y)``
would make this official. tests/test_bootstrap.py checks the result against
a structure built from scratch.
"""


from __future__ import annotations

import copy

import numpy as np

from ..engine.structure import ModelStructure

# private attributes set by ModelStructure.__init__ itself (θ layout), kept; any other private
# attribute is a lazily built cache that may depend on y, and is dropped from the copy
_KEEP_PRIVATE = {"_lower_idx"}


def with_response(st: ModelStructure, y: np.ndarray) -> ModelStructure:
    """A shallow copy of ``st`` whose response is ``y`` (same rows, same X, same terms)."""
    y = np.asarray(y, dtype=float)
    if y.shape != (st.n,):
        raise ValueError(f"response of length {len(y)} for a model with {st.n} rows")
    p = st.p
    new = copy.copy(st)
    for name in list(vars(new)):
        if name.startswith("_") and name not in _KEEP_PRIVATE:
            delattr(new, name)
    xy = np.array(st.xy, dtype=float, copy=True)
    xy[:, p] = y
    new.xy = xy
    zxy = []
    for t, old in zip(st.terms, st.zxy):
        blk = old.copy()
        for a in range(t.k):
            blk[a, p] = np.bincount(t.codes, weights=t.z[:, a] * y, minlength=t.n_levels)
        zxy.append(blk)
    new.zxy = zxy
    xtx = st.xtx.copy()
    xty = xy[:, :p].T @ y
    xtx[:p, p] = xty
    xtx[p, :p] = xty
    xtx[p, p] = y @ y
    new.xtx = xtx
    return new
