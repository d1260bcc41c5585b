"""Model building, automated: from a maximal model to the one the data support.

The path an analyst walks by hand (the seed's M15 → M16 → M17), one explained step at a time:

1. While the fit is singular, take the simpler model mixcli proposes for it
   (``singular.simpler_model``): a correlation at ±1 → ``||``; a standard deviation at 0 → drop
   that effect. (Barr et al.'s "keep it maximal", then simplify what the data cannot support.)
2. Backward elimination of random effects as lmerTest's ``step`` (``reduce_random``): run
   ``ranova``; if some reduction has p > α (0.1), make the one with the largest p and repeat.
3. With ``fixed``: backward elimination of fixed-effect terms as lmerTest's ``step``
   (``reduce_fixed``): the type III F test (Satterthwaite) of each term that no other term
   contains; drop the one with the largest p > α (0.05) and repeat.

Every step records the model it started from, what was done and why (the boundary found, or
the test), so that the printed path can be checked and each model refitted by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .control import DEFAULT, Control
from .errors import FitError
from .fitting import fit_frame
from .formula import parse_formula
from .frame import model_frame
from .ranova import ranova
from .results import LmmResult
from .singular import diagnose, simpler_model

ALPHA_RANDOM = 0.1  # lmerTest's step(alpha.random = 0.1)
ALPHA_FIXED = 0.05  # lmerTest's step(alpha.fixed = 0.05)
MAX_STEPS = 50


@dataclass
class Step:
    formula: str  # the model this step started from
    action: str  # "simplify" (singular fit), "drop random", "drop fixed", "keep"
    reason: str  # why, in words
    result: str  # the formula after the step (the same for "keep")
    tests: list[dict] = field(default_factory=list)  # the ranova / anova rows consulted


@dataclass
class Reduction:
    start: str
    steps: list[Step]
    final: str
    model: LmmResult | None  # the final fit (None when no random-effects term is left)
    method: str


def reduce_model(table, formula: str, reml: bool = True, fixed: bool = False, alpha_random: float = ALPHA_RANDOM,
                 alpha_fixed: float = ALPHA_FIXED, weights=None, contrasts: str = "treatment",
                 progress=None, control: Control = DEFAULT) -> Reduction:
    options = dict(weights=weights, contrasts=contrasts)
    current = parse_formula(formula).text
    steps: list[Step] = []

    def fit(text: str) -> LmmResult:
        if progress is not None:
            progress.start(f"fitting {text}")
        try:
            m = fit_frame(model_frame(table, text, **options), reml=reml, progress=progress, control=control)
        except FitError as exc:
            raise FitError(f"reduce: the model {text} could not be fitted: {exc}") from None
        if progress is not None:
            progress.done()
        return m

    m = fit(current)
    # 1. singular fits → the proposed simpler model
    while m.singular and len(steps) < MAX_STEPS:
        simpler = simpler_model(m)
        if simpler is None:
            break
        problems, _ = diagnose(m.frame, m.factorization.user_lam, m.control.singular_tol)
        steps.append(Step(current, "simplify", "singular fit: " + "; ".join(problems), simpler))
        current = simpler
        if not parse_formula(current).random:  # every random effect was at zero
            return Reduction(formula, steps, current, None, "REML" if reml else "ML")
        m = fit(current)

    # 2. random effects by ranova
    while len(steps) < MAX_STEPS:
        table_r = ranova(table, current, reml=reml, progress=progress, **options)
        tests = [_ranova_record(r) for r in table_r.rows[1:]]
        candidates = [r for r in table_r.rows[1:] if r.p is not None and r.p == r.p and r.p > alpha_random]
        if not candidates:
            steps.append(Step(current, "keep", f"every random-effects reduction has p ≤ {alpha_random:g} (ranova)",
                              current, tests))
            m = table_r.model
            break
        worst = max(candidates, key=lambda r: r.p)
        steps.append(Step(current, "drop random",
                          f"{worst.term}: LRT {worst.lrt:.4f} on {worst.df} df, p = {worst.p:.4g} > {alpha_random:g}",
                          worst.formula, tests))
        current = worst.formula
        if not parse_formula(current).random:
            return Reduction(formula, steps, current, None, "REML" if reml else "ML")

    # 3. fixed effects by type III F tests
    if fixed:
        from .inference.anova import anova_table

        while len(steps) < MAX_STEPS:
            m = fit(current) if m.formula != current else m
            f = m.frame.formula
            if not f.terms:
                steps.append(Step(current, "keep", "no fixed-effect term is left beyond the intercept", current))
                break
            rows = anova_table(m, type=3, ddf="satterthwaite").rows
            labels = f.term_labels
            # marginality: a term contained in a higher-order term is not tested for removal
            removable = {label for t, label in zip(f.terms, labels)
                         if not any(set(t) < set(u) for u in f.terms)}
            tests = [{"term": r.term, "numdf": r.numdf, "dendf": r.dendf, "F": r.F, "p": r.p} for r in rows]
            candidates = [r for r in rows if r.term in removable and r.p is not None and r.p > alpha_fixed]
            if not candidates:
                steps.append(Step(current, "keep", f"every removable fixed term has p ≤ {alpha_fixed:g} "
                                  "(type III F test, Satterthwaite)", current, tests))
                break
            worst = max(candidates, key=lambda r: r.p)
            new = _without_fixed(current, worst.term)
            steps.append(Step(current, "drop fixed",
                              f"{worst.term}: F = {worst.F:.4f} on {worst.numdf} and {worst.dendf:.2f} df, "
                              f"p = {worst.p:.4g} > {alpha_fixed:g}", new, tests))
            current = new
    if m.formula != current:
        m = fit(current)
    # the final model is printed as ``fit`` prints one: with lmerTest's df and p-values
    return Reduction(formula, steps, current, m.add_satterthwaite(), "REML" if reml else "ML")


def _ranova_record(r) -> dict:
    return {"term": r.term, "npar": r.npar, "loglik": r.loglik, "lrt": r.lrt, "df": r.df, "p": r.p}


def _without_fixed(text: str, term: str) -> str:
    """The formula without one fixed-effect term, written as R's update(f, . ~ . - term) would
    leave it: the remaining fixed terms, then the random-effects terms as written."""
    return parse_formula(text).without_fixed(term)
