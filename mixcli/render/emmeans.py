"""Renderings of marginal means, contrasts and joint tests (R emmeans's printout): table, JSON, CSV.

JSON is one object: ``{"formula", "ddf", "level", "type", "grid", "emmeans": [...], "contrasts":
[...], "joint_tests": [...], "notes": {...}, "warnings": [...]}`` with emmeans's column names as
keys (infinite df as null). CSV is one section per table, each with its own header, separated
by an empty line (means, then contrasts, then joint tests).
"""

from __future__ import annotations

import csv
import io
import json

from .numbers import aligned, json_number


def _json_rows(rows):
    return [{k: (json_number(v) if isinstance(v, float) else v) for k, v in row.items()} for row in rows]


def render_json(res) -> str:
    out = {"formula": res.formula, "ddf": res.ddf, "level": res.level, "type": res.type, "grid": res.grid,
           "emmeans": _json_rows(res.means)}
    if res.contrasts is not None:
        out["contrasts"] = _json_rows(res.contrasts)
    if res.joint is not None:
        out["joint_tests"] = _json_rows(res.joint)
    out["notes"] = {"emmeans": res.mean_notes, "contrasts": res.contrast_notes, "joint_tests": res.joint_notes}
    out["warnings"] = res.warnings
    return json.dumps(out, allow_nan=False) + "\n"


def _csv(rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("Inf" if isinstance(v, float) and v == float("inf") else
                        repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def render_csv(res) -> str:
    parts = [_csv(res.means)]
    for rows in (res.contrasts, res.joint):
        if rows:
            parts.append(_csv(rows))
    return "\n".join(parts)


def notes(res) -> list[str]:
    return list(res.warnings)


def _cell(name: str, v) -> str:
    if isinstance(v, str):
        return v
    if v is None:
        return "NA"
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if v == float("inf"):
        return "Inf"
    if name == "p.value":
        return "<.0001" if v < 1e-4 else f"{v:.4f}"
    if name in ("df", "df2"):
        return f"{v:.1f}" if v < 1e4 else f"{v:.0f}"
    if name in ("t.ratio", "z.ratio", "F.ratio"):
        return f"{v:.3f}"
    return f"{v:.4g}" if abs(v) < 1e-3 or abs(v) >= 1e5 else f"{v:.{max(0, 3 - _digits(v))}f}"


SPECIAL = ("p.value", "df", "df2", "t.ratio", "z.ratio", "F.ratio", "df1", "null")


ESTIMATES = ("emmean", "prob", "rate", "response", "estimate", "odds.ratio", "ratio")


def _column_cells(name: str, values: list) -> list[str]:
    """A column as R prints it: 4 significant digits of its smallest entry, the same decimals for all;
    a mean or contrast that is not estimable is nonEst, with NA beside it."""
    if name in SPECIAL or any(isinstance(v, str) for v in values):
        return [_cell(name, v) for v in values]
    known = [float(v) for v in values if v is not None]
    cells = iter(aligned(known, 4) if known else [])
    missing = "nonEst" if name in ESTIMATES else "NA"
    return [missing if v is None else next(cells) for v in values]


def _digits(v: float) -> int:
    import math

    return int(math.floor(math.log10(abs(v)))) if v else 0


def _table(rows, by: list[str]):
    """One rich table per by group (emmeans prints ``sex = F:`` above each), as a list."""
    from rich.table import Table
    from rich.text import Text

    out = []
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(b) for b in by), []).append(row)
    for key, grp in groups.items():
        if by:
            out.append(Text(", ".join(f"{b} = {k}" for b, k in zip(by, key)) + ":"))
        cols = [c for c in grp[0] if c not in by]
        t = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
        for c in cols:
            numeric = not isinstance(grp[0][c], str)
            t.add_column(c, justify="right" if numeric else "left", header_style="bold")
        cells = {c: _column_cells(c, [row[c] for row in grp]) for c in cols}
        for i in range(len(grp)):
            t.add_row(*[cells[c][i] for c in cols])
        out.append(t)
        out.append(Text(""))
    return out


def table_renderables(res, source: str | None = None):
    from rich.text import Text

    out = []
    if source:
        out.append(Text(f"Data: {source}"))
    out.append(Text(f"Model: {res.formula}"))
    out.append(Text(""))
    if res.contrasts is not None or res.joint is not None:
        out.append(Text("$emmeans", style="bold"))
    out.extend(_table(res.means, res.by))
    out.extend(Text(n, style="yellow") for n in res.mean_notes)
    if res.contrasts is not None:
        out += [Text(""), Text("$contrasts", style="bold")]
        out.extend(_table(res.contrasts, res.by))
        out.extend(Text(n, style="yellow") for n in res.contrast_notes)
    if res.joint is not None:
        out += [Text(""), Text("$joint_tests", style="bold")]
        out.extend(_table(res.joint, res.by))
        out.extend(Text(n, style="yellow") for n in res.joint_notes)
    return out  # (the warnings go to stderr, whatever the format: see ``notes``)
