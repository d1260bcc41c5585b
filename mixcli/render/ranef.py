"""Conditional modes of the random effects with their conditional SDs: table, tidy CSV, JSON."""

from __future__ import annotations

import csv
import io
import json

from .numbers import json_number as num


def render_json(models) -> str:
    lines = []
    for m in models:
        rows = [
            {"group": g, "level": lvl, "term": term, "estimate": num(est), "sd": num(sd)}
            for rt in m.ranef()
            for g, lvl, term, est, sd in rt.records()
        ]
        lines.append(json.dumps({"formula": m.formula, "ranef": rows}, allow_nan=False))
    return "".join(line + "\n" for line in lines)


def render_csv(models) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["formula", "group", "level", "term", "estimate", "sd"])
    for m in models:
        for rt in m.ranef():
            for g, lvl, term, est, sd in rt.records():
                w.writerow([m.formula, g, lvl, term, repr(est), "" if sd is None else repr(sd)])
    return buf.getvalue()


def table_renderables(m):
    from rich.table import Table
    from rich.text import Text

    out = [Text(f"Conditional modes of the random effects: {m.formula}", style="bold")]
    t = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    for col, justify in (("Group", "left"), ("Level", "left"), ("Term", "left"), ("Estimate", "right"),
                         ("Cond. SD", "right")):
        t.add_column(col, justify=justify, header_style="bold")
    for rt in m.ranef():
        for g, lvl, term, est, sd in rt.records():
            t.add_row(g, lvl, term, f"{est:.6g}", "" if sd is None else f"{sd:.6g}")
    out.append(t)
    return out
