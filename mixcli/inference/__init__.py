"""Inference on fitted models: t tests with Satterthwaite df, confidence intervals, bootstrap LRTs.

* ``satterthwaite``: lmerTest's denominator degrees of freedom and p-values;
* ``kenward_roger``: pbkrtest's adjusted covariance and df (``add_kenward_roger``);
* ``anova``: lmerTest's F tests of the fixed-effect terms;
* ``profile``: lme4's profile-likelihood intervals (``confint(method = "profile")``);
* ``bootstrap``: parametric bootstrap of the likelihood-ratio statistic;
* ``wald_intervals`` here: β̂ ± z·SE (``confint(method = "Wald")``).

The ``add_*`` functions fill in the optional fields of an ``LmmResult``
(``FixedEffect.df/p/lower/upper``, ``LmmResult.ddf/ci_*/intervals``) and
return it; ``LmmResult.add_satterthwaite`` and ``LmmResult.add_confint`` call them.
"""

from __future__ import annotations

import math

from .distributions import norm_ppf

# (satterthwaite and profile are imported where used: a command that only compares models or
# predicts need not load them)

CI_METHODS = ("wald", "profile", "boot")


def add_satterthwaite(m):
    """Satterthwaite df and Pr(>|t|) for every fixed effect of ``m``."""
    from .satterthwaite import fixef_tests

    df, pvals, notes = fixef_tests(m)
    for f, d, p in zip(m.fixef, df, pvals):
        f.df, f.p = float(d), float(p)
    m.ddf = "Satterthwaite"
    for note in notes:
        if note not in m.warnings:
            m.warnings.append(note)
    return m


def add_kenward_roger(m):
    """Kenward–Roger's adjusted standard errors, df and Pr(>|t|) for every fixed effect of ``m``
    (lmerTest's ``summary(m, ddf = "Kenward-Roger")``, through pbkrtest); ``m.vcov`` becomes the
    adjusted covariance. ValueError for an ML fit, prior weights or a model too big for it."""
    from .kenward_roger import kenward_roger

    if getattr(m.structure, "structured", False):
        raise ValueError("not yet available with a structured covariance (diag, cs, ar1); Satterthwaite's df are")
    kr = kenward_roger(m)
    for f, t in zip(m.fixef, kr.t_tests()):
        f.se, f.t, f.df, f.p = float(t.se), float(t.t), float(t.df), float(t.p)
    m.vcov = kr.vcov_adj
    m.ddf = "Kenward-Roger"
    return m


def wald_bounds(estimate: float, se: float, level: float) -> tuple[float, float]:
    z = norm_ppf(0.5 + level / 2.0)
    return estimate - z * se, estimate + z * se


def add_confint(m, level: float = 0.95, method: str = "wald", progress=None, nsim: int = 500,
                seed: int | None = None, workers: int | None = None):
    """Confidence intervals at ``level``: Wald for the fixed effects, or profile likelihood or a
    parametric bootstrap (``nsim`` refits, ``seed``; lme4's ``confint(method = "boot")``) for the
    fixed effects and every variance parameter (SDs, correlations, σ)."""
    method = method.lower()
    if method not in CI_METHODS:
        raise ValueError(f"unknown confidence-interval method {method!r} (use wald, profile or boot)")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be between 0 and 1, not {level}")
    if method == "wald":
        for f in m.fixef:
            lo, hi = wald_bounds(f.estimate, f.se, level) if math.isfinite(f.se) else (math.nan, math.nan)
            f.lower, f.upper, f.ci_estimate = float(lo), float(hi), f.estimate
        m.intervals = []
    else:
        if method == "boot":
            from .boot_intervals import bootstrap_intervals

            if seed is None:
                import secrets

                seed = secrets.randbelow(2**31)
            ivs, failed = bootstrap_intervals(m, nsim, seed, level, workers=workers, progress=progress)
            m.bootstrap = {"nsim": int(nsim), "seed": int(seed), "failed": failed}
        else:
            from .profile import profile_intervals

            ivs = profile_intervals(m, level, progress=progress)
        fixed = {iv.parameter: iv for iv in ivs if iv.kind == "fixef"}
        for f in m.fixef:
            iv = fixed.get(f.term)
            f.lower, f.upper = (float(iv.lower), float(iv.upper)) if iv else (math.nan, math.nan)
            f.ci_estimate = float(iv.estimate) if iv else None
        m.intervals = [iv for iv in ivs if iv.kind != "fixef"]
    m.ci_method, m.ci_level = {"wald": "Wald", "profile": "profile", "boot": "bootstrap"}[method], level
    return m
