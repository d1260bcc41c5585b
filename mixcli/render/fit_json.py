"""JSON lines for fitted models: one object per model, with a fixed set of keys scripts rely on."""

from __future__ import annotations

import json

from .numbers import json_number as num


def fit_record(m) -> dict:
    """The JSON object of one fit (keys and their order are part of mixcli's interface).

    Each fixed effect has ``df`` and ``p`` (Satterthwaite; null with ``--ddf none``) and, when
    intervals were asked for, ``lower``/``upper``; the object then also has ``ci`` with the
    method, level and (profile) the intervals of the variance parameters."""
    rec = {
        "formula": m.formula,
        "method": m.method,
        "nobs": m.nobs,
        "ngroups": dict(m.ngroups),
        "fixef": [_fixef_record(f, m.ci_method is not None) for f in m.fixef],
        "varcorr": [
            {"group": v.group, "term": v.term, "variance": num(v.variance), "sd": num(v.sd)} for v in m.varcorr
        ],
        "correlations": [
            {"group": c.group, "term1": c.term1, "term2": c.term2, "corr": num(c.corr)} for c in m.correlations
        ],
        "theta": [num(t) for t in m.theta],
        "sigma": num(m.sigma),
        "criterion": num(m.criterion),
        "loglik": num(m.loglik),
        "aic": num(m.aic),
        "bic": num(m.bic),
        "npar": m.npar,
        "singular": m.singular,
        "converged": m.converged,
        "warnings": m.notes(),
    }
    if m.ci_method is not None:
        rec["ci"] = {
            "method": m.ci_method,
            "level": m.ci_level,
            "intervals": [
                {"parameter": iv.parameter, "kind": iv.kind, "group": iv.group, "term": iv.term1, "term2": iv.term2,
                 "lower": num(iv.lower), "upper": num(iv.upper)}
                for iv in m.intervals
            ],
        }
    return rec


def _fixef_record(f, ci: bool) -> dict:
    rec = {"term": f.term, "estimate": num(f.estimate), "se": num(f.se), "t": num(f.t), "df": num(f.df), "p": num(f.p)}
    if ci:
        rec["lower"], rec["upper"] = num(f.lower), num(f.upper)
    return rec


def render_fits(models) -> str:
    return "".join(json.dumps(fit_record(m), allow_nan=False) + "\n" for m in models)
