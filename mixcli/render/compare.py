"""Renderings of a likelihood-ratio comparison: R-like table, JSON object, CSV."""

from __future__ import annotations

import csv
import io
import json

from .numbers import footer, format_p, stars
from .numbers import json_number as num


def records(comp) -> list[dict]:
    out = []
    for r in comp.rows:
        m = r.model
        out.append({
            "name": r.name,
            "formula": r.formula,
            "npar": m.npar,
            "aic": num(m.aic),
            "bic": num(m.bic),
            "loglik": num(m.loglik),
            "deviance": num(-2.0 * m.loglik),
            "chisq": num(r.chisq),
            "df": r.df,
            "p": num(r.p),
            "p_mixture": num(r.p_mixture),
            "p_boot": num(r.p_boot),
        })
    return out


def render_json(comp) -> str:
    boot = getattr(comp, "bootstrap", None)
    meta = None if boot is None else {"n": boot["n"], "seed": boot["seed"], "failed": boot["failed"]}
    out = {"refit": comp.refit, "models": records(comp), "bootstrap": meta, "warnings": notes(comp)}
    if comp.family is not None:
        out["family"] = comp.family
    return json.dumps(out, allow_nan=False) + "\n"


def render_csv(comp) -> str:
    buf = io.StringIO()
    rows = records(comp)
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else v)) for k, v in row.items()})
    return buf.getvalue()


def notes(comp) -> list[str]:
    """Lines to show under the table (and on stderr for the machine formats)."""
    out = []
    for r in comp.rows:
        for line in r.model.notes():
            out.append(f"{r.name}: {line}")
    for r in comp.rows:
        out.extend(_null_notes(r))
    boot = getattr(comp, "bootstrap", None)
    if boot is not None:
        if comp.family is not None:
            fit = {0: "ML (nAGQ = 0)", 1: "ML (Laplace)"}.get(comp.rows[0].model.nagq,
                                                                 f"ML (nAGQ = {comp.rows[0].model.nagq})")
        else:
            fit = "ML" if comp.refit else "REML"
        out.append(
            f"Pr(boot): parametric bootstrap, {boot['n']} responses simulated from the smaller model of each "
            f"test and both refitted by {fit} (seed {boot['seed']}); Pr(boot) = (1 + #{{T* ≥ Chisq}}) / (N + 1)"
        )
        if boot["failed"]:
            out.append(f"Pr(boot): {boot['failed']} bootstrap refits failed and were left out")
    return out


def _null_notes(r) -> list[str]:
    """What the row's test may be compared with (``inference.lrt_null``), when it is not plain χ²."""
    null = r.null
    if null is None:
        return []
    pair = f"{r.name} vs {r.against}"
    if not null.nested:
        return [f"{pair}: the models are not nested ({null.why_not_nested}): the χ² test does not apply; "
                "compare such models by AIC and BIC"]
    if null.crowded:
        blocks = ", ".join(null.crowded)
        return [f"{pair}: {blocks} gains two or more random effects at once, so a covariance matrix is tested at "
                "its boundary and no simple mixture is the null distribution: the χ² p-value is conservative; "
                "the parametric bootstrap (--bootstrap N) gives a p-value"]
    if r.p_mixture is not None:
        return [f"{pair}: {null.describe()}; the χ² p-value is conservative"]
    return []


def table_renderables(comp, source: str | None = None):
    from rich.table import Table
    from rich.text import Text

    out = []
    if source:
        out.append(Text(f"Data: {source}"))
    out.append(Text("Models:", style="bold"))
    for r in comp.rows:
        out.append(Text(f"{r.name}: {r.formula}"))
    t = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    t.add_column("", header_style="bold")
    headers = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    mix = comp.boundary_tests
    if mix:
        headers.append("Pr(mix)")
    boot = getattr(comp, "bootstrap", None) is not None
    if boot:
        headers.append("Pr(boot)")
    for h in headers:
        t.add_column(h, justify="right", header_style="bold")
    t.add_column("", justify="left")
    for r in comp.rows:
        m = r.model
        cells = [
            r.name, str(m.npar), f"{m.aic:.2f}", f"{m.bic:.2f}", f"{m.loglik:.2f}", f"{-2.0 * m.loglik:.2f}",
            "" if r.chisq is None else f"{r.chisq:.4f}",
            "" if r.df is None else str(r.df),
            format_p(r.p),
        ]
        if mix:
            cells.append(format_p(r.p_mixture))
        if boot:
            cells.append(format_p(r.p_boot))
        cells.append(stars(r.p))
        t.add_row(*cells)
    out.append(t)
    out.extend(footer(notes(comp)))
    return out
