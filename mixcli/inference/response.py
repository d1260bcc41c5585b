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

The work is the engine's ``ModelStructure.with_response``, which also carries
over the closed-form elimination of a scalar first term with only its
y-dependent products recomputed. tests/test_bootstrap.py checks the result
against a structure built from scratch.
"""


from __future__ import annotations

import numpy as np

from ..engine.structure import ModelStructure


def with_response(st: ModelStructure, y: np.ndarray) -> ModelStructure:
    """``st`` with response ``y`` (same rows, X and terms); see ModelStructure.with_response."""
    return st.with_response(y)
