"""Tidy CSV of fixed effects: one row per model and coefficient."""

from __future__ import annotations

import csv
import io


def render_fits(models) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["formula", "method", "term", "estimate", "se", "t"])
    for m in models:
        for f in m.fixef:
            w.writerow([m.formula, m.method, f.term, repr(f.estimate), repr(f.se), repr(f.t)])
    return buf.getvalue()
