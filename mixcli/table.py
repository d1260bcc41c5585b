"""The in-memory data table every command works on.

A ``Table`` is an ordered mapping of column name to column, all of one length:

* numeric columns are ``float64`` numpy arrays, ``NaN`` marking a missing value;
* text columns are ``TextColumn``: integer codes into a list of distinct labels,
  ``-1`` marking a missing value. Codes are what models need (grouping factors,
  treatment contrasts), and building them once at read time avoids sorting
  millions of Python strings later.

Readers (``mixcli.io``) and the library API (``Table.from_mapping``) produce
tables; the model frame consumes them. Nothing here imports pandas.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TextColumn:
    """A text column: ``labels[codes[i]]`` is row i's value, or missing if ``codes[i] < 0``.

    ``labels`` holds distinct strings in no particular order (the model frame
    sorts the ones it uses, the way R sorts factor levels).
    """

    codes: np.ndarray  # int32 or int64, -1 = missing
    labels: np.ndarray  # object array of distinct str
    # The labels are a factor's levels, in R's order, whether or not the rows hold each: one
    # part of a dataset coded as the whole is (``--engine dask``), not R's drop.unused.levels
    levels_fixed: bool = False

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def missing(self) -> np.ndarray:
        return self.codes < 0

    def values(self) -> np.ndarray:
        """Row values as an object array (None where missing). O(n) Python objects: not for hot paths."""
        out = np.empty(len(self.codes), dtype=object)
        ok = self.codes >= 0
        out[ok] = self.labels[self.codes[ok]]
        return out

    @classmethod
    def from_values(cls, values) -> "TextColumn":
        """Encode a sequence of str (None or NaN = missing)."""
        arr = np.asarray(values, dtype=object)
        missing = np.array([v is None or (isinstance(v, float) and v != v) for v in arr], dtype=bool)
        present = arr[~missing].astype(str)
        labels, inverse = np.unique(present, return_inverse=True)
        codes = np.full(len(arr), -1, dtype=np.int64)
        codes[~missing] = inverse
        return cls(codes=codes, labels=labels.astype(object))


Column = "np.ndarray | TextColumn"


def is_missing(column) -> np.ndarray:
    """Boolean mask of missing values in either kind of column."""
    if isinstance(column, TextColumn):
        return column.codes < 0
    return np.isnan(column)


@dataclass
class Table:
    """Named columns of equal length, in file order."""

    columns: dict[str, object]
    source: str = "<data>"
    nrows: int = field(default=-1)

    def __post_init__(self):
        lengths = {len(c) for c in self.columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of unequal length: {sorted(lengths)}")
        if self.nrows < 0:
            self.nrows = lengths.pop() if lengths else 0

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def __getitem__(self, name: str):
        return self.columns[name]

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    @classmethod
    def from_mapping(cls, data, source: str = "<data>") -> "Table":
        """Build a table from a pandas DataFrame or a mapping of name -> sequence.

        Numeric (and boolean) sequences become float64 columns; anything else
        (strings, pandas categoricals, objects) becomes a ``TextColumn``.
        """
        if isinstance(data, Table):
            return data
        names = list(data.columns) if hasattr(data, "columns") else list(data.keys())
        cols: dict[str, object] = {}
        for name in names:
            raw = data[name]
            if isinstance(raw, TextColumn):
                cols[str(name)] = raw
                continue
            if hasattr(raw, "dtype") and str(raw.dtype) == "category":
                raw = raw.astype(object).where(raw.notna(), None)
            if hasattr(raw, "to_numpy"):
                raw = raw.to_numpy()
            arr = np.asarray(raw)
            if arr.dtype.kind in "biuf":
                cols[str(name)] = arr.astype(np.float64)
            else:
                cols[str(name)] = TextColumn.from_values(arr)
        return cls(columns=cols, source=source)
