"""Renderings of F tests of the fixed-effect terms (lmerTest's ``anova(m)``): table, JSON, CSV."""

from __future__ import annotations

import csv
import io
import json

from .numbers import footer, format_p, signif, stars
from .numbers import json_number as num


def records(res) -> list[dict]:
    return [{"term": r.term, "sumsq": num(r.sumsq), "meansq": num(r.meansq), "numdf": r.numdf,
             "dendf": num(r.dendf), "F": num(r.F), "p": num(r.p)} for r in res.table.rows]


def render_json(res) -> str:
    out = {"formula": res.model.formula, "method": res.model.method, "type": res.table.type, "ddf": res.ddf,
           "terms": records(res), "warnings": notes(res)}
    return json.dumps(out, allow_nan=False) + "\n"


def render_csv(res) -> str:
    buf = io.StringIO()
    rows = records(res)
    w = csv.DictWriter(buf, fieldnames=["formula", "method", "type", "ddf"] + list(rows[0]), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({"formula": res.model.formula, "method": res.model.method, "type": res.table.type,
                    "ddf": res.ddf, **{k: ("" if v is None else (repr(v) if isinstance(v, float) else v))
                                      for k, v in row.items()}})
    return buf.getvalue()


def notes(res) -> list[str]:
    return list(res.model.notes()) + list(res.table.notes)


def table_renderables(res, source: str | None = None):
    from rich.table import Table
    from rich.text import Text

    out = [Text(res.heading, style="bold")]
    if source:
        out.append(Text(f"Data: {source}"))
    out.append(Text(f"Model ({res.model.method}): {res.model.formula}"))
    out.append(Text(""))
    t = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    t.add_column("", header_style="bold")
    lme4 = res.table.ddf == "lme4"
    headers = ["Sum Sq", "Mean Sq", "npar" if lme4 else "NumDF"] + ([] if lme4 else ["DenDF"]) + ["F value"]
    if not lme4:
        headers.append("Pr(>F)")
    for h in headers:
        t.add_column(h, justify="right", header_style="bold")
    if not lme4:
        t.add_column("", justify="left")
    for r in res.table.rows:
        cells = [r.term, _n(r.sumsq), _n(r.meansq), "" if r.numdf is None else str(r.numdf)]
        if not lme4:
            cells.append("" if r.dendf is None else f"{r.dendf:.2f}")
        cells.append(_n(r.F))
        if not lme4:
            cells += [format_p(r.p) if r.p is not None else "", stars(r.p) if r.p is not None else ""]
        t.add_row(*cells)
    out.append(t)
    out.extend(footer(notes(res), legend=not lme4))
    return out


def _n(x) -> str:
    return "" if x is None else signif(x, 5)
