"""Renderings of a model reduction (``mixcli reduce``): the path step by step, then the final model."""

from __future__ import annotations

import csv
import io
import json

from . import fit as render_fit
from .numbers import format_p
from .numbers import json_number as num


def _test_record(t: dict) -> dict:
    return {k: (num(v) if isinstance(v, float) else v) for k, v in t.items()}


def render_json(red) -> str:
    out = {
        "formula": red.start,
        "method": red.method,
        "steps": [{"step": i, "formula": s.formula, "action": s.action, "reason": s.reason, "result": s.result,
                   "tests": [_test_record(t) for t in s.tests]} for i, s in enumerate(red.steps, start=1)],
        "final": red.final,
        "model": None if red.model is None else render_fit.fit_record(red.model),
    }
    return json.dumps(out, allow_nan=False) + "\n"


def render_csv(red) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "method", "formula", "action", "reason", "result"])
    for i, s in enumerate(red.steps, start=1):
        w.writerow([i, red.method, s.formula, s.action, s.reason, s.result])
    return buf.getvalue()


def notes(red) -> list[str]:
    if red.model is None:
        return ["no random-effects term is left: the data support an ordinary linear model of the fixed part"]
    return list(red.model.notes())


def table_renderables(red, source: str | None = None):
    from rich.text import Text

    out = [Text(f"Model reduction ({red.method} fits)", style="bold")]
    if source:
        out.append(Text(f"Data: {source}"))
    out.append(Text(""))
    for i, s in enumerate(red.steps, start=1):
        out.append(Text(f"Step {i}: {s.formula}", style="bold"))
        for t in s.tests:
            if "lrt" in t:  # a ranova row
                out.append(Text(f"  {t['term']}: LRT {t['lrt']:.4f}, Df {t['df']}, Pr(>Chisq) {format_p(t['p'])}"))
            elif t["F"] is not None:  # an F test (a term with nothing left to test has none)
                out.append(Text(f"  {t['term']}: F {t['F']:.4f} on {t['numdf']} and {t['dendf']:.2f} df, "
                                f"Pr(>F) {format_p(t['p'])}"))
        if s.action == "keep":
            out.append(Text(f"  keep: {s.reason}"))
        else:
            out.append(Text(f"  {s.action}: {s.reason}"))
            out.append(Text(f"  → {s.result}"))
    out.append(Text(""))
    out.append(Text(f"Final model: {red.final}", style="bold"))
    if red.model is not None:
        out.append(Text(""))
        out.extend(render_fit.table_renderables(red.model, source))
    else:
        out.extend(Text(line, style="yellow") for line in notes(red))
    return out
