"""The fitting engine: θ-free structure, the blocked Cholesky per θ, and the optimiser.

* ``structure`` — terms, θ layout, nesting chain, per-level sums (once per model);
* ``linalg`` — kernels on stacks of small blocks and grouped sums;
* ``factor`` — the factorisation and the REML/ML criteria for one θ;
* ``optimize`` — BOBYQA and the boundary checks.
"""
