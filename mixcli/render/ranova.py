"""Renderings of lmerTest's ranova table: R-like table, JSON object, CSV."""

from __future__ import annotations

import csv
import io
import json

from .numbers import footer, format_p, stars
from .numbers import json_number as num


def records(res) -> list[dict]:
    return [{"term": r.term, "formula": r.formula, "npar": r.npar, "loglik": num(r.loglik), "aic": num(r.aic),
             "lrt": num(r.lrt), "df": r.df, "p": num(r.p)} for r in res.rows]


def render_json(res) -> str:
    out = {"formula": res.formula, "method": res.method, "rows": records(res), "warnings": notes(res)}
    return json.dumps(out, allow_nan=False) + "\n"


def render_csv(res) -> str:
    buf = io.StringIO()
    rows = records(res)
    w = csv.DictWriter(buf, fieldnames=["method"] + list(rows[0]), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({"method": res.method,
                    **{k: ("" if v is None else (repr(v) if isinstance(v, float) else v)) for k, v in row.items()}})
    return buf.getvalue()


def notes(res) -> list[str]:
    out = list(res.model.notes()) + list(res.warnings)
    if any(r.p is not None for r in res.rows):
        # (lmerTest's table; the null of each test puts a variance at its bound)
        out.append("each test sets a variance to its bound, 0: the χ² p-values (lmerTest's) are conservative; "
                   "mixcli compare gives the boundary mixture, Pr(mix), for a pair of models")
    return out


def table_renderables(res, source: str | None = None):
    from rich.table import Table
    from rich.text import Text

    out = [Text("ANOVA-like table for random-effects: Single term deletions", style="bold"), Text("")]
    if source:
        out.append(Text(f"Data: {source}"))
    out.append(Text(f"Model ({res.method}): {res.formula}"))
    t = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    t.add_column("", header_style="bold")
    for h in ("npar", "logLik", "AIC", "LRT", "Df", "Pr(>Chisq)"):
        t.add_column(h, justify="right", header_style="bold")
    t.add_column("", justify="left")
    for r in res.rows:
        t.add_row(r.term, str(r.npar), f"{r.loglik:.2f}", f"{r.aic:.2f}",
                  "" if r.lrt is None else f"{r.lrt:.4f}", "" if r.df is None else str(r.df),
                  "" if r.p is None else format_p(r.p), "" if r.p is None else stars(r.p))
    out.append(t)
    out.extend(footer(notes(res), legend=True))
    return out
