"""The fitting engine: θ-free structure, the blocked Cholesky per θ, and the optimiser.

* ``structure`` — terms, θ layout, nesting chain, per-level sums (once per model);
* ``linalg`` — kernels on stacks of small blocks and grouped sums;
* ``factor`` — the factorisation for one θ: the REML/ML criteria, β̂, conditional
  modes and variances;
* ``eliminate`` — the first factor's effects (one or two per level) eliminated in closed form (criterion only);
* ``optimize`` — the one NLopt driver (``OptSummary``, ``run``) and the fit's
  strategy with lme4's boundary checks (``minimize_theta``);
* ``memory`` — glibc settings that keep freed memory for reuse between evaluations.

Nothing here knows about data files, formulas or output; ``mixcli.model`` puts
the stages together.
"""
