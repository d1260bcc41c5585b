"""Conditional modes of the random effects with their conditional SDs: table, tidy CSV, JSON."""

from __future__ import annotations

import csv
import io
import json

from .numbers import json_number as num


def _z(level):
    from ..inference.distributions import norm_ppf

    return None if level is None else norm_ppf(0.5 + level / 2.0)


def render_json(models, level: float | None = None) -> str:
    """One object per model; with ``level``, each mode's interval mode ± z·(conditional SD), the
    bars of lattice's dotplot(ranef(m, condVar = TRUE))."""
    z = _z(level)
    lines = []
    for m in models:
        rows = []
        for rt in m.ranef():
            for g, lvl, term, est, sd in rt.records():
                row = {"group": g, "level": lvl, "term": term, "estimate": num(est), "sd": num(sd)}
                if z is not None:
                    row["lower"], row["upper"] = num(est - z * sd), num(est + z * sd)
                rows.append(row)
        rec = {"formula": m.formula, "method": m.method, "ranef": rows}
        if level is not None:
            rec["level"] = level
        lines.append(json.dumps(rec, allow_nan=False))
    return "".join(line + "\n" for line in lines)


def render_csv(models, level: float | None = None) -> str:
    z = _z(level)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["formula", "method", "group", "level", "term", "estimate", "sd"]
               + ([] if z is None else ["lower", "upper"]))
    for m in models:
        for rt in m.ranef():
            for g, lvl, term, est, sd in rt.records():
                row = [m.formula, m.method, g, lvl, term, repr(est), "" if sd is None else repr(sd)]
                if z is not None:
                    row += [repr(est - z * sd), repr(est + z * sd)]
                w.writerow(row)
    return buf.getvalue()


def table_renderables(m, level: float | None = None):
    from rich.table import Table
    from rich.text import Text

    z = _z(level)
    out = [Text(f"Conditional modes of the random effects: {m.formula}", style="bold")]
    t = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    cols = [("Group", "left"), ("Level", "left"), ("Term", "left"), ("Estimate", "right"), ("Cond. SD", "right")]
    if z is not None:
        cols += [(f"{100 * (1 - level) / 2:.3g} %", "right"), (f"{100 * (1 + level) / 2:.3g} %", "right")]
    for col, justify in cols:
        t.add_column(col, justify=justify, header_style="bold")
    for rt in m.ranef():
        for g, lvl, term, est, sd in rt.records():
            row = [g, lvl, term, f"{est:.6g}", "" if sd is None else f"{sd:.6g}"]
            if z is not None:
                row += [f"{est - z * sd:.6g}", f"{est + z * sd:.6g}"]
            t.add_row(*row)
    out.append(t)
    if z is not None:
        out.append(Text(f"intervals: mode ± {z:.4g} × conditional SD (lattice's dotplot(ranef(m, condVar = TRUE)))"))
    return out
