"""Explaining a singular fit, and the simpler model the data support.

lme4 says only ``boundary (singular) fit: see help('isSingular')``. mixcli
names what sits on the boundary and proposes the next simpler model, one step
at a time as an analyst would (Barr et al.'s "keep it maximal", then simplify):

* a correlation of ±1 in a vector-valued term → drop the correlation:
  ``(ses | classid)`` becomes ``(ses || classid)``;
* a standard deviation of 0 → drop that effect: ``(ses || classid)`` becomes
  ``(1 | classid)``, and a scalar term with SD 0 is dropped entirely.

The proposal is the user's formula with only the offending parenthesised
term rewritten, so it can be pasted back into ``mixcli fit``.
"""

from __future__ import annotations

import numpy as np

from .control import DEFAULT
from .formula import RandomTerm, term_label

# lme4's isSingular() tolerance is ``Control.singular_tol``: a diagonal θ (an SD relative to σ, or
# to 1 in a GLMM) below it is on the boundary. The one tolerance for the singular flag and for
# what the diagnosis names; a fit passes its control's.


def is_singular(theta, theta_is_diag, tol: float = DEFAULT.singular_tol) -> bool:
    """lme4's ``isSingular(m)``: some diagonal θ below ``tol``."""
    return bool(np.any(np.asarray(theta)[theta_is_diag] < tol))


def singular_fit_warnings(frame, lams: list[np.ndarray], varcorr, correlations, tol: float = DEFAULT.singular_tol) -> list[str]:
    """One line per boundary component, then the suggested simpler model."""
    problems, simpler = diagnose(frame, lams, tol)
    if not problems:
        return []
    lines = [f"boundary (singular) fit: {p}" for p in problems]
    if simpler and simpler != frame.formula.text:
        lines.append(f"the data support a simpler model: {simpler}")
    return lines


def simpler_model(m) -> str | None:
    """The simpler formula proposed for a singular fit (``LmmResult``), or None."""
    problems, simpler = diagnose(m.frame, m.factorization.user_lam, m.control.singular_tol)
    if not problems or simpler == m.frame.formula.text:
        return None
    return simpler


def diagnose(frame, lams: list[np.ndarray], tol: float = DEFAULT.singular_tol) -> tuple[list[str], str | None]:
    """What sits on the boundary (one phrase per component) and the simpler formula."""
    problems: list[str] = []
    drop: dict[int, set[str]] = {}  # formula.random index -> effect names to drop
    decorrelate: set[int] = set()
    rewrite: dict[int, str] = {}  # formula.random index -> the term that replaces it ("" to drop it)
    for term, source, lam in zip(frame.terms, frame.term_sources, lams):
        if getattr(term, "structure", ""):
            _diagnose_structured(frame.formula.random[source], term, lam, tol, problems, rewrite, source)
            continue
        rel_sd = np.sqrt(np.diag(lam @ lam.T))
        zero = [name for name, s in zip(term.names, rel_sd) if s < tol]
        for name in zero:
            problems.append(f"the {term.factor} ({name}) standard deviation is estimated at 0")
        if zero and term.factor in getattr(frame, "nested_labels", {}):
            # Not a term to drop: it groups the wrong rows (see frame._nesting_mistakes).
            problems.append(f"{term.factor} may be numbered within {frame.nested_labels[term.factor]}: "
                            "see the note above before simplifying")
            continue
        if zero:
            drop[source] = set(zero)
            continue
        if term.k > 1 and np.any(np.abs(np.diag(lam)) < tol):
            cov = lam @ lam.T
            sd = np.sqrt(np.diag(cov))
            corr = cov / np.outer(sd, sd)
            pairs = [
                (term.names[j], term.names[i], corr[i, j])
                for j in range(term.k)
                for i in range(j + 1, term.k)
                if abs(abs(corr[i, j]) - 1.0) < 1e-6
            ]
            if pairs:
                for a, b, c in pairs:
                    problems.append(f"the {term.factor} correlation between {a} and {b} is estimated at {c:+.0f}")
            else:
                problems.append(
                    f"the {term.factor} covariance matrix of ({', '.join(term.names)}) is singular"
                )
            decorrelate.add(source)
    if not problems:
        return [], None
    return problems, simpler_formula(frame.formula, drop, decorrelate, rewrite)


def _diagnose_structured(rt: RandomTerm, term, lam: np.ndarray, tol: float, problems: list[str],
                         rewrite: dict[int, str], source: int) -> None:
    """A structured term on its boundary: an SD of 0 (diag: that effect goes, the rest stays
    diag; ar1 and cs: the whole term goes when every SD is 0), or the correlation at a bound
    (ar1's ρ = 1 is a random intercept, (1 | g); other bounds have no simpler lme4 term)."""
    cov = lam @ lam.T
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    zero = [name for name, v in zip(term.names, sd) if v < tol]
    group = rt.group_label or rt.group_name
    if term.structure == "ar1":
        if zero:
            problems.append(f"the {term.factor} ar1 standard deviation is estimated at 0")
            rewrite[source] = ""
            return
        rho = cov[1, 0] / (sd[0] * sd[1])
        if abs(abs(rho) - 1.0) < tol:
            problems.append(f"the {term.factor} ar1 correlation is estimated at {rho:+.0f}")
            if rho > 0:
                rewrite[source] = f"(1 | {group})"
        return
    for name in zero:
        problems.append(f"the {term.factor} ({name}) standard deviation is estimated at 0")
    if zero:
        if len(zero) == term.k:
            rewrite[source] = ""
        elif term.structure == "diag":
            kept = _without(rt, set(zero))
            if kept:
                rewrite[source] = "diag" + kept
        return
    if term.structure == "cs":
        rho = cov[1, 0] / (sd[0] * sd[1])
        if rho > 1.0 - tol or rho < -1.0 / (term.k - 1) + tol:
            problems.append(f"the {term.factor} cs correlation is estimated at its bound ({rho:.3g})")


def simpler_formula(formula, drop: dict[int, set[str]], decorrelate: set[int],
                    rewrite: dict[int, str] | None = None) -> str | None:
    """The formula text with the parenthesised random terms rewritten as proposed.

    Dropped effects take precedence: a term with a zero SD is simplified
    first, its correlations are moot once the effect is gone.
    """
    rewrite = rewrite or {}
    spans: dict[tuple[int, int], list[int]] = {}
    for i, rt in enumerate(formula.random):
        spans.setdefault(rt.span, []).append(i)
    pieces: dict[tuple[int, int], str] = {}
    for span, members in spans.items():
        if not any(i in drop or i in decorrelate or i in rewrite for i in members):
            continue
        rendered = []
        for i in members:
            rt = formula.random[i]
            if i in rewrite:
                if rewrite[i]:
                    rendered.append(rewrite[i])
            elif i in drop:
                new = _without(rt, drop[i])
                if new is None:
                    return None  # an effect we cannot express as a formula term (a factor level)
                if new != "":
                    rendered.append(new)
            elif i in decorrelate:
                rendered.append(f"({rt.lhs_text} || {rt.group_label or rt.group_name})")
            else:
                rendered.append(rt.written)
        pieces[span] = " + ".join(rendered)
    return formula.with_random_rewritten(pieces)


def _without(rt: RandomTerm, effects: set[str]) -> str | None:
    """Render ``rt`` without the named effects ('' if nothing is left, None if impossible)."""
    intercept = rt.intercept and "(Intercept)" not in effects
    labels = {term_label(t): t for t in rt.terms}
    unknown = effects - set(labels) - {"(Intercept)"}
    if unknown:
        return None
    terms = tuple(t for lab, t in labels.items() if lab not in effects)
    if not intercept and not terms:
        return ""
    return f"({RandomTerm(intercept, terms, rt.group, group_label=rt.group_label).label})"
