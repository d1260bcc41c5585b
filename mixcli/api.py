"""The library API: ``fit`` and ``compare`` on a data frame or a table.

    >>> import pandas as pd, mixcli
    >>> m = mixcli.fit(pd.read_csv("classroom.csv"), "mathscore ~ ses + (1 | schoolid)")
    >>> m.coef, m.sigma, m.singular

The work is done by ``mixcli.model`` (frame → structure → criterion →
optimiser → result) and ``mixcli.compare``; this module only names the
entry points.
"""

from __future__ import annotations

from .compare import compare
from .model import fit

__all__ = ["fit", "compare"]
