"""Data rows with computed columns appended (``fit --augment``, ``predict``): CSV or JSON lines.

The data columns are written back as they were read (numbers as R's as.character() writes them,
missing values as NA); the computed columns at full precision (``repr``), NA where undefined.
"""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np

from .numbers import json_number


def _data_cell(col, i: int):
    from ..formula.evaluate import r_number
    from ..table import TextColumn

    if isinstance(col, TextColumn):
        code = col.codes[i]
        return None if code < 0 else str(col.labels[code])
    v = float(col[i])
    return None if math.isnan(v) else r_number(v)


def records(table, rows: np.ndarray, extra: dict[str, np.ndarray]):
    """(header, one list of cells per row): the table's columns on ``rows``, then ``extra``."""
    names = table.names
    index = np.flatnonzero(rows)
    header = names + list(extra)
    out = []
    for k, i in enumerate(index):
        cells = [_data_cell(table.columns[n], i) for n in names]
        cells += [json_number(float(v[k])) for v in extra.values()]
        out.append(cells)
    return header, out


def render_csv(table, rows, extra, sep: str = ",") -> str:
    header, body = records(table, rows, extra)
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=sep, lineterminator="\n")
    w.writerow(header)
    n_data = len(header) - len(extra)
    for cells in body:
        w.writerow(["NA" if c is None else (repr(c) if j >= n_data and isinstance(c, float) else c)
                    for j, c in enumerate(cells)])
    return buf.getvalue()


def render_json(table, rows, extra) -> str:
    """One JSON object per row (JSON lines); data numbers as numbers, missing as null."""
    header, body = records(table, rows, extra)
    n_data = len(header) - len(extra)
    numeric = [not _is_text(table.columns[n]) for n in header[:n_data]]
    lines = []
    for cells in body:
        obj = {}
        for j, (name, c) in enumerate(zip(header, cells)):
            if j < n_data and numeric[j] and c is not None:
                v = float(c)
                c = int(v) if v.is_integer() and abs(v) < 2**53 else v  # 480, not 480.0
            obj[name] = c
        lines.append(json.dumps(obj, allow_nan=False))
    return "\n".join(lines) + "\n"


def _is_text(col) -> bool:
    from ..table import TextColumn

    return isinstance(col, TextColumn)
