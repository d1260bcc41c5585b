"""Tidy CSV of fixed effects: one row per model and coefficient.

Columns: formula, method, term, estimate, se, t, df, p (Satterthwaite; empty with
``--ddf none``), and lower, upper when confidence intervals were asked for.
"""

from __future__ import annotations

import csv
import io


def render_fits(models) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    ci = any(m.ci_method is not None for m in models)
    w.writerow(["formula", "method", "term", "estimate", "se", "t", "df", "p"] + (["lower", "upper"] if ci else []))
    for m in models:
        for f in m.fixef:
            row = [m.formula, m.method, f.term, repr(f.estimate), repr(f.se), repr(f.t), _cell(f.df), _cell(f.p)]
            if ci:
                row += [_cell(f.lower), _cell(f.upper)]
            w.writerow(row)
    return buf.getvalue()


def _cell(x) -> str:
    return "" if x is None else repr(float(x))
