"""Renderings of a power simulation (``power_analysis.PowerResult``): a table as simr prints its
power (percent, with the 95% Clopper–Pearson interval), JSON lines and CSV with one record per size."""

from __future__ import annotations

import csv
import io
import json

from .numbers import footer
from .numbers import json_number as num

METHOD_NAMES = {
    ("satterthwaite", "t"): "lmerTest's t test, Satterthwaite's df",
    ("satterthwaite", "F"): "lmerTest's F test (type III), Satterthwaite's df",
    ("kr", "t"): "t test, Kenward-Roger's df (pbkrtest)",
    ("kr", "F"): "F test (type III), Kenward-Roger's df (pbkrtest)",
    ("lrt", "chisq"): "likelihood ratio of ML fits with and without it (chi-square)",
    ("lrt", "chibar"): "likelihood ratio of REML fits with and without it (boundary mixture of chi-squares)",
    ("wald", "z"): "Wald z test",
    ("wald", "chisq"): "Wald chi-square test",
}

FIELDS = ["size", "power", "lower", "upper", "nsim", "rejected", "failed", "singular", "rows", "test", "method",
          "alpha", "seed", "size_of"]


def describe_method(res) -> str:
    return METHOD_NAMES.get((res.method, res.statistic), f"{res.method} ({res.statistic})")


def records(res) -> list[dict]:
    out = []
    for r in res.records():
        out.append({**{k: num(v) if isinstance(v, float) else v for k, v in r.items()}, "test": res.test,
                    "method": res.method, "alpha": res.alpha, "seed": res.seed, "size_of": res.size_of})
    return out


def render_json(res) -> str:
    lines = [json.dumps({**r, "formula": res.formula, "parameters": res.parameters}, allow_nan=False)
             for r in records(res)]
    return "\n".join(lines) + "\n"


def render_csv(res) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for row in records(res):
        w.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else v)) for k, v in row.items()})
    return buf.getvalue()


def notes(res) -> list[str]:
    return list(res.notes)


def _percent(x: float) -> str:
    return f"{100.0 * x:.2f}"


def parameter_lines(res) -> list[str]:
    p = res.parameters
    out = ["Fixed effects: " + ", ".join(f"{k} = {v:.6g}" for k, v in p["fixef"].items())]
    out.append("Random-effect SDs: " + ", ".join(f"{k} = {v:.6g}" for k, v in p["sd"].items())
               + (f"; residual SD (sigma) = {p['sigma']:.6g}" if "sigma" in p else ""))
    if p["cor"]:
        out.append("Correlations: " + ", ".join(f"{k} = {v:.4g}" for k, v in p["cor"].items()))
    return out


def table_renderables(res, source: str | None = None):
    from rich.table import Table
    from rich.text import Text

    out = [Text(f"Power for the test of {res.test}, with 95% confidence intervals", style="bold"), Text("")]
    if source:
        out.append(Text(f"Data: {source}"))
    out.append(Text(f"Model: {res.formula}" + ("" if res.family == "gaussian" else f" ({res.family})")))
    out.append(Text(f"Test: {describe_method(res)}, alpha = {res.alpha:g}"))
    out.extend(Text(line) for line in parameter_lines(res))
    out.append(Text(f"Simulations: {res.rows[0].nsim} per size, seed {res.seed}"))
    out.append(Text(""))
    t = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    size_header = {"rows": "rows"}.get(res.size_of, res.size_of)
    for h in (size_header, "power %", "95% CI", "nsim", "failed", "singular"):
        t.add_column(h, justify="right", header_style="bold")
    for r in res.records():
        t.add_row(str(r["size"]), _percent(r["power"]), f"({_percent(r['lower'])}, {_percent(r['upper'])})",
                  str(r["nsim"]), str(r["failed"]), str(r["singular"]))
    out.append(t)
    out.extend(footer(notes(res), legend=False))
    return out
