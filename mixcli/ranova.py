"""lmerTest's ``ranova``: a likelihood-ratio test of reducing each random-effects term.

For every random-effects term of the formula as lme4's ``findbars`` splits it (``(x || g)``
is ``(1 | g)`` and ``(0 + x | g)``, ``(1 | a/b)`` is ``(1 | b:a)`` and ``(1 | a)``):

* a term with effects beyond the intercept loses, in turn, each effect that no other
  effect of the term contains (R's ``drop.scope``): ``(ses | schoolid)`` becomes
  ``(1 | schoolid)``, a row named ``ses in (ses | schoolid)``; a term with a single effect
  and no intercept, ``(0 + x | g)``, becomes ``(1 | g)``;
* a term with the intercept only is removed: a row named ``(1 | classid)``.

Each reduced model is refitted by the full model's criterion (REML or ML): when no random
term is left it is the linear model, whose (REML) log-likelihood is R's ``logLik.lm``.
The table has lmerTest's columns: npar, logLik, AIC, and against the full model LRT, Df,
Pr(>Chisq) (χ² with Df degrees of freedom, not the boundary mixture, as lmerTest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .control import DEFAULT, Control
from .design import complete_rows
from .errors import DataError, FormulaError
from .fitting import fit_frame
from .formula import RandomTerm, parse_formula, term_label
from .frame import model_frame
from .inference.distributions import chi2_sf
from .results import LmmResult
from .table import Table


@dataclass
class RanovaRow:
    term: str  # "<none>", "ses in (ses | schoolid)", "(1 | classid)"
    formula: str  # the model of this row
    npar: int
    loglik: float
    lrt: float | None = None
    df: int | None = None
    p: float | None = None

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.npar


@dataclass
class Ranova:
    formula: str  # the full model, written as lmerTest prints it: fixed part + each findbars term
    method: str  # "REML" or "ML"
    rows: list[RanovaRow]
    model: LmmResult  # the full model's fit
    warnings: list[str] = field(default_factory=list)


def reductions(formula) -> list[tuple[str, str]]:
    """(row name, reduced formula text) of each reduction, in lmerTest's order."""
    structured = next((rt for rt in formula.random if rt.structure), None)
    if structured is not None:  # (lmerTest's reductions assume lme4's terms: which reduced model is nested
        # in a structured one depends on the structure; compare the models you mean instead)
        raise FormulaError(f"{structured.written}: random-effects terms with a structure are not reduced term by "
                           "term; compare the models you mean (mixcli compare)", formula.text, structured.span[0])
    bars = formula.random_texts()
    out = []
    for i, rt in enumerate(formula.random):
        others = bars[:i] + bars[i + 1:]
        labels = [term_label(t) for t in rt.terms]
        if not labels:
            out.append((bars[i], formula.rewrite(random=others)))
            continue
        for t in rt.terms:
            if any(set(t) < set(u) for u in rt.terms):
                continue  # contained in a higher-order effect: not droppable on its own
            rest = tuple(u for u in rt.terms if u != t)
            # (nothing left but the intercept, or not even that: lmerTest's reduction is (1 | g))
            reduced = RandomTerm(rt.intercept or not rest, rest, rt.group, group_label=rt.group_label)
            out.append((f"{term_label(t)} in ({rt.label})", formula.rewrite(random=others + [f"({reduced.label})"])))
    return out


def ranova(table: Table, formula, reml: bool = True, weights=None, contrasts: str = "treatment",
           progress=None, control: Control = DEFAULT) -> Ranova:
    """Fit the model and each reduction (all with the settings of ``control``); ``progress`` (a
    ``cli`` progress line) hears each refit."""
    frame = model_frame(table, formula, weights=weights, contrasts=contrasts)
    f = frame.formula
    full_text = f.rewrite()
    steps = reductions(f)
    total = len(steps) + 1
    if progress is not None:
        progress.start(f"fitting the model (1/{total})")
    full = fit_frame(frame, reml=reml, progress=progress, control=control)
    if progress is not None:
        progress.done()
    rows = [RanovaRow("<none>", full_text, full.npar, full.loglik)]
    warnings = []
    for i, (name, text) in enumerate(steps, start=2):
        if progress is not None:
            progress.start(f"fitting without {name} ({i}/{total})")
        parsed = parse_formula(text)
        if parsed.random:
            reduced_frame = model_frame(table, parsed, weights=weights, contrasts=contrasts)
            _check_rows(frame.rows, reduced_frame.rows, name)
            m = fit_frame(reduced_frame, reml=reml, progress=progress, control=control)
            npar, loglik = m.npar, m.loglik
            if not m.converged:
                warnings.append(f"the model without {name} did not converge: {'; '.join(m.warnings)}")
        else:
            _check_rows(frame.rows, complete_rows(parsed, table), name)
            npar, loglik = frame.X.shape[1] + 1, linear_model_loglik(frame, reml)
        if progress is not None:
            progress.done()
        row = RanovaRow(name, text, npar, loglik)
        row.lrt = 2.0 * (full.loglik - loglik)
        row.df = full.npar - npar
        row.p = chi2_sf(max(row.lrt, 0.0), row.df) if row.df > 0 else math.nan
        rows.append(row)
    return Ranova(formula=full_text, method="REML" if reml else "ML", rows=rows, model=full, warnings=warnings)


def linear_model_loglik(frame, reml: bool) -> float:
    """R's ``logLik(lm(...), REML = reml)`` of the frame's fixed part (with its prior weights
    and offset): the model with every random-effects term removed."""
    X = np.asarray(frame.X, dtype=float)
    y = np.asarray(frame.y, dtype=float)
    if frame.offset is not None:
        y = y - frame.offset
    w = np.ones_like(y) if frame.weights is None else np.asarray(frame.weights, dtype=float)
    sw = np.sqrt(w)
    q, r = np.linalg.qr(X * sw[:, None])
    beta = np.linalg.solve(r, q.T @ (y * sw))
    rss = float(np.sum(w * (y - X @ beta) ** 2))
    n, p = X.shape
    m = n - p if reml else n
    value = 0.5 * (float(np.sum(np.log(w))) - m * (math.log(2 * math.pi) + 1.0 - math.log(m) + math.log(rss)))
    if reml:
        value -= float(np.sum(np.log(np.abs(np.diag(r)))))
    return value


def _check_rows(full_rows, reduced_rows, name: str):
    if not np.array_equal(full_rows, reduced_rows):
        differ = int(np.sum(full_rows != reduced_rows))
        raise DataError(f"ranova: without {name} the model would use {int(reduced_rows.sum())} rows instead of "
                        f"{int(full_rows.sum())} ({differ} differ because of missing values in the grouping "
                        "columns); drop the rows with missing values first")

