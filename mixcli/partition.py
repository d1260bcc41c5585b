"""One part of a dataset, coded as the whole dataset is: what each distributed pass does to it.

``--engine dask`` (``distributed.py``) reads a Parquet dataset part by part on the
workers and never gathers the rows. Each part becomes a ``Table`` whose text columns
carry the dataset's levels (``TextColumn.levels_fixed``), so that R's ``model.matrix``
(``design.py``) gives every part the same columns and a part without some level still
codes the others as the whole data would; grouping factors are coded by their global
levels in R's order. The passes, each returning a small record that ``add`` merges:

1. ``scan``: the columns' kinds, and the levels that occur in the complete rows
   (text labels; distinct combinations of each grouping factor's columns);
2. ``moments``: the model's columns summarised (``ColumnMoments`` for each term's unit-free
   basis; XᵀX for aliased columns; the weighted XᵀX and Xᵀy the response is centred by);
3. ``level_sums``: ``engine.partial_sums.LevelSums`` in the structure's basis.

The rows kept, X, y, Z and the prior weights are made as ``frame.model_frame`` makes them
(the same ``complete_rows``, ``model_matrix``, ``prior_weights`` and offset); the checks
that need the whole data are the driver's (``distributed.py``). Nothing here imports Dask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .design import complete_rows, model_matrix
from .engine.partial_sums import ColumnMoments, LevelSums
from .engine.structure import TermBasis
from .formula import parse_formula
from .formula.evaluate import evaluate
from .response import prior_weights, weight_missing, weight_values
from .table import Table, TextColumn


@dataclass(frozen=True)
class Plan:
    """What every pass is told: the model (formula text, weights column, contrasts) and the
    columns read (the formula's and the weights')."""

    formula: str
    weights: str | None
    contrasts: str
    columns: tuple[str, ...]


@dataclass
class Coding:
    """The dataset's levels: per text column its labels in R's order; per grouping factor (lme4's
    name) its columns, each column's levels, and the combinations that occur as sorted keys
    (mixed radix over the columns' levels) — a level's position there is its code."""

    text_levels: dict[str, list[str]]
    groups: dict[str, tuple[tuple[str, ...], list[np.ndarray], np.ndarray]]


def to_table(pdf, coding: Coding | None = None, source: str = "<partition>") -> Table:
    """A pandas part as a ``Table``: numbers as float64, anything else as text, coded by the
    dataset's levels when ``coding`` is given (then a part lacking a level still has it)."""
    import pandas as pd

    cols: dict[str, object] = {}
    for name in pdf.columns:
        s = pdf[name]
        if s.dtype.kind in "biuf":
            cols[str(name)] = s.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        ok = s.notna().to_numpy()
        values = s.astype(object).where(ok, None)
        if coding is not None and name in coding.text_levels:
            labels = coding.text_levels[name]
            codes = pd.Categorical(values.where(~ok, values.astype(str)), categories=labels).codes
            cols[str(name)] = TextColumn(np.asarray(codes, dtype=np.int64), np.asarray(labels, dtype=object),
                                         levels_fixed=True)
        else:
            codes, uniques = pd.factorize(values.where(~ok, values.astype(str)), use_na_sentinel=True)
            cols[str(name)] = TextColumn(np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object))
    return Table(columns=cols, source=source, nrows=len(pdf))


def kept_rows(table: Table, formula, weights: str | None, glmm: bool = False) -> np.ndarray:
    """The rows ``model_frame`` keeps: complete in every variable, a weight present (and not 0,
    for a linear mixed model: such a row carries no information)."""
    rows = complete_rows(formula, table) & ~weight_missing(weights, table)
    if weights is not None and not glmm:
        rows &= np.nan_to_num(weight_values(weights, table), nan=1.0) != 0.0
    return rows


def column_kinds(pdf) -> dict[str, str]:
    """Each column's kind as the model sees it: 'number' or 'text'."""
    return {str(name): "number" if pdf[name].dtype.kind in "biuf" else "text" for name in pdf.columns}


# -- pass 1 -------------------------------------------------------------------------------------
@dataclass
class Scan:
    """Rows read and kept, the columns' kinds, the text labels and grouping combinations that
    occur in the kept rows (as pandas frames of distinct rows)."""

    rows: int
    kept: int
    kinds: dict[str, str]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    combos: dict[str, object] = field(default_factory=dict)
    kind_clash: tuple[str, str, str] | None = None  # (column, one kind, the other)

    def add(self, other: "Scan") -> "Scan":
        import pandas as pd

        clash = self.kind_clash or other.kind_clash
        for name, kind in other.kinds.items():
            if clash is None and self.kinds.get(name, kind) != kind:
                clash = (name, self.kinds[name], kind)
        if clash is not None:  # (the driver reports it; the labels of such parts do not merge)
            return Scan(self.rows + other.rows, self.kept + other.kept, self.kinds, self.labels, self.combos, clash)
        return Scan(
            self.rows + other.rows, self.kept + other.kept, self.kinds,
            {k: np.union1d(v, other.labels[k]) for k, v in self.labels.items()},
            {k: pd.concat([v, other.combos[k]], ignore_index=True).drop_duplicates() for k, v in self.combos.items()},
            clash,
        )


def scan(pdf, plan: Plan) -> Scan:
    formula = parse_formula(plan.formula)
    table = to_table(pdf)
    rows = kept_rows(table, formula, plan.weights)
    labels = {}
    for name, column in table.columns.items():
        if isinstance(column, TextColumn):
            codes = np.unique(column.codes[rows & (column.codes >= 0)])
            labels[name] = np.asarray(column.labels[codes], dtype=str)
    combos = {}
    for rt in formula.random:
        key = rt.lme4_group_name
        if key not in combos:
            combos[key] = pdf.loc[rows, list(rt.group)].astype(
                {c: str for c in rt.group if c in labels}).drop_duplicates().reset_index(drop=True)
    return Scan(len(pdf), int(rows.sum()), column_kinds(pdf), labels, combos)


# -- the rows of one part, in the dataset's coding ------------------------------------------------
@dataclass
class PartRows:
    """The model's arrays on one part's kept rows (``formula.random``'s order for the terms)."""

    X: np.ndarray
    names: list[str]
    y: np.ndarray  # the response minus any offset
    zs: list[np.ndarray]
    z_names: list[list[str]]
    codes: list[np.ndarray]
    weights: np.ndarray | None
    rows: np.ndarray | None = None  # the part's rows kept (a mask over the part)
    offset: np.ndarray | None = None  # the offset on them (subtracted from y)


def part_rows(pdf, plan: Plan, coding: Coding) -> PartRows:
    from .frame import _offset

    formula = parse_formula(plan.formula)
    table = to_table(pdf, coding)
    rows = kept_rows(table, formula, plan.weights)
    n = int(rows.sum())
    y = evaluate(formula.response, table)[rows]
    offset = _offset(formula, table, rows)
    if offset is not None:
        y = y - offset
    design = model_matrix(formula.intercept, formula.terms, table, rows, plan.contrasts) if n else None
    zs, z_names, codes = [], [], []
    for rt in formula.random:
        zm = model_matrix(rt.intercept, rt.terms, table, rows, plan.contrasts) if n else None
        zs.append(zm.X if zm is not None else None)
        z_names.append(zm.names if zm is not None else [])
        codes.append(group_codes(table, rows, coding.groups[rt.lme4_group_name]))
    return PartRows(design.X if design else None, design.names if design else [], y, zs, z_names, codes,
                    prior_weights(plan.weights, table, rows), rows, offset)


def group_codes(table: Table, rows: np.ndarray, group) -> np.ndarray:
    """Each kept row's level of a grouping factor, by its position among the dataset's sorted
    combinations (R's order)."""
    columns, levels, keys = group
    combined = np.zeros(int(rows.sum()), dtype=np.int64)
    for col, lv in zip(columns, levels):
        column = table[col]
        index = column.codes[rows] if isinstance(column, TextColumn) else np.searchsorted(lv, column[rows])
        combined = combined * len(lv) + index
    return np.searchsorted(keys, combined)


# -- pass 2 -------------------------------------------------------------------------------------
@dataclass
class Moments:
    """Column summaries of the terms (raw columns), X's cross-products (raw, for aliased columns)
    and the weighted XᵀX, Xᵀy; the response's range; Σ log w; the design's column names."""

    n: int
    terms: list[ColumnMoments | None]
    x_sums: np.ndarray | None
    xtx: np.ndarray | None
    wxtx: np.ndarray | None
    wxty: np.ndarray | None
    y_range: tuple[float, float]
    sum_log_w: float
    names: list[str] | None
    z_names: list[list[str]] | None

    def add(self, other: "Moments") -> "Moments":
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        return Moments(self.n + other.n, [a.add(b) for a, b in zip(self.terms, other.terms)],
                       self.x_sums + other.x_sums, self.xtx + other.xtx, self.wxtx + other.wxtx, self.wxty + other.wxty,
                       (min(self.y_range[0], other.y_range[0]), max(self.y_range[1], other.y_range[1])),
                       self.sum_log_w + other.sum_log_w, self.names, self.z_names)


def moments(pdf, plan: Plan, coding: Coding) -> Moments:
    r = part_rows(pdf, plan, coding)
    n = len(r.y)
    if n == 0:
        return Moments(0, [], None, None, None, None, (np.inf, -np.inf), 0.0, None, None)
    sw = np.ones(n) if r.weights is None else np.sqrt(r.weights)
    xw, yw = r.X * sw[:, None], r.y * sw
    return Moments(n, [ColumnMoments.of(z) for z in r.zs], r.X.sum(axis=0), r.X.T @ r.X, xw.T @ xw, xw.T @ yw,
                   (float(r.y.min()), float(r.y.max())),
                   0.0 if r.weights is None else float(np.sum(np.log(r.weights))), r.names, r.z_names)


# -- pass 3 -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """What the sums need from the first two passes: the terms in lme4's order (indices into
    ``formula.random``) with their levels and bases, the X columns kept, the β the response
    is centred by."""

    order: tuple[int, ...]
    n_levels: tuple[int, ...]
    bases: tuple[TermBasis, ...]
    kept: tuple[int, ...]
    beta_shift: np.ndarray


def level_sums(pdf, plan: Plan, coding: Coding, layout: Layout) -> LevelSums:
    r = part_rows(pdf, plan, coding)
    n = len(r.y)
    p = len(layout.kept)
    sw = np.ones(n) if r.weights is None else np.sqrt(r.weights)
    if n == 0:
        x = np.zeros((0, p))
        zs = [np.zeros((0, b.scale.shape[0])) for b in layout.bases]
        codes = [np.zeros(0, dtype=np.int64) for _ in layout.order]
    else:
        x = r.X[:, list(layout.kept)]
        zs = [layout.bases[i].standardise(r.zs[t]) * (sw[:, None] if r.weights is not None else 1.0)
              for i, t in enumerate(layout.order)]
        codes = [r.codes[t] for t in layout.order]
    yc = r.y - x @ layout.beta_shift if p else r.y
    xy = np.column_stack([x, yc])
    if r.weights is not None:
        xy = xy * sw[:, None]
    return LevelSums.of(codes, list(layout.n_levels), zs, xy)


# -- pass 4 (fit --augment) ---------------------------------------------------------------------
@dataclass(frozen=True)
class Fitted:
    """What the augment pass needs of a fit: β̂ (the kept columns), each term's conditional modes
    (lme4's b, levels × effects, in the dataset's level order; terms in ``Layout.order``) and σ̂."""

    beta: np.ndarray
    modes: tuple[np.ndarray, ...]
    sigma: float


AUGMENT_COLUMNS = (".fitted", ".fixed", ".resid", ".resid_pearson")


def augment_part(pdf, index: int, plan: Plan, coding: Coding, layout: Layout, fitted: Fitted,
                 directory: str) -> int:
    """The part's kept rows, every column, with ``fit --augment``'s columns (``predictions.augment``:
    .fitted = Xβ̂ + Zb̂, .fixed = Xβ̂, .resid, .resid_pearson) written to
    ``directory/part.NNNNN.parquet``; returns the number of rows written."""
    import os

    r = part_rows(pdf, plan, coding)
    n = len(r.y)
    out = pdf.loc[r.rows].reset_index(drop=True) if n else pdf.iloc[0:0].reset_index(drop=True)
    if n:
        fixed = r.X[:, list(layout.kept)] @ fitted.beta if layout.kept else np.zeros(n)
        random = np.zeros(n)
        for i, t in enumerate(layout.order):
            random += np.einsum("ij,ij->i", r.zs[t], fitted.modes[i][r.codes[t]])
        resid = r.y - fixed - random
        offset = 0.0 if r.offset is None else r.offset
        w = np.ones(n) if r.weights is None else r.weights
        values = (fixed + random + offset, fixed + offset, resid, np.sqrt(w) * resid / fitted.sigma)
    else:
        values = (np.zeros(0),) * 4
    for name, v in zip(AUGMENT_COLUMNS, values):
        out[name] = v
    out.to_parquet(os.path.join(directory, f"part.{index:05d}.parquet"), index=False)
    return n
