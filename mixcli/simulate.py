"""A seeded simulator of children in classes in schools, shaped like the classroom data.

The classroom study behind lme4's and West, Welch & Galecki's examples has
1,190 children in 312 classes in 107 schools: one to nine classes per school
(mostly two to four), one to ten children per class (mostly two to six). Its
columns are ``mathscore`` (an integer), ``ses`` (socio-economic status, two
decimals, right-skewed), ``classid`` (unique across schools), ``schoolid``
and ``classid2`` (classes numbered 1..k within each school).

:func:`simulate_classroom` draws data of that shape from a model close to
lme4's fit ``mathscore ~ ses + (ses | schoolid) + (1 | classid)``::

    mathscore = round(523 + 11.2 ses + a_s + b_s ses + c_k + e)
    (a_s, b_s) ~ N(0, [15.4^2, .47 * 15.4 * 7.3; ., 7.3^2])   per school
    c_k ~ N(0, 8.4^2)                                         per class
    e ~ N(0, 32.9^2)                                          per child

Everything is vectorised: 50,000 schools (about 550,000 children) take a few
tens of milliseconds. :func:`write_csv` writes the columns as plain CSV
(integers without ``.0``, floats with fixed decimals) just as fast.

The same seed gives the same data for a given numpy version (numpy keeps the
``PCG64`` bit stream and the normal/uniform draws stable across releases, but
does not promise it).
"""

from __future__ import annotations

import io
import os
from importlib import resources
from pathlib import Path
from typing import Mapping

import numpy as np

__all__ = ["DEFAULTS", "simulate_classroom", "write_csv", "example_path"]

#: Parameters of the generating model; any of them can be passed to
#: :func:`simulate_classroom` as a keyword argument.
DEFAULTS: dict[str, float] = {
    "intercept": 523.0,  # fixed intercept
    "slope": 11.2,  # fixed ses slope
    "sd_school": 15.4,  # SD of the school intercepts
    "sd_school_ses": 7.3,  # SD of the school ses slopes
    "cor_school": 0.47,  # correlation of school intercept and slope
    "sd_class": 8.4,  # SD of the class intercepts
    "sd_resid": 32.9,  # residual SD
}

# Shape of the design, smoothed from the real data's counts.
# P(k classes in a school), k = 1..9
_CLASSES_PER_SCHOOL = np.array([0.12, 0.31, 0.25, 0.19, 0.10, 0.02, 0.005, 0.003, 0.002])
# P(n children in a class), n = 1..10
_CHILDREN_PER_CLASS = np.array([0.135, 0.17, 0.17, 0.195, 0.125, 0.10, 0.045, 0.04, 0.013, 0.007])

# ses = school mean + class deviation + skewed child deviation (overall SD about
# 0.74, skewness about 0.6, range about -1.7 to 3, as in the real data).
_SES_SD_SCHOOL = 0.30
_SES_SD_CLASS = 0.20
_SES_SD_CHILD = 0.65
_SES_SKEW_SIGMA = 0.30  # log-scale SD of the lognormal child component

COLUMNS = ("mathscore", "ses", "classid", "schoolid", "classid2", "pass", "absences")

_EXAMPLE = "classroom_sim.csv"


def _categorical(rng: np.random.Generator, pmf: np.ndarray, n: int) -> np.ndarray:
    """n draws of 1..len(pmf) with probabilities pmf."""
    cdf = np.cumsum(pmf)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, rng.random(n), side="right") + 1


# Repeated measures (``waves``): each child's scores over the waves grow by WAVE_GROWTH per wave
# and keep the one-score model's residual variance, split into a child's AR(1) deviation
# (WAVE_CHILD_SHARE of it, lag-1 correlation WAVE_RHO) and a fresh error per wave.
WAVE_GROWTH = 8.0
WAVE_RHO = 0.6
WAVE_CHILD_SHARE = 0.64


def simulate_classroom(n_schools: int = 107, seed: int = 1, class_size: float | None = None,
                       waves: int | None = None, **params: float) -> dict[str, np.ndarray]:
    """Simulate children in classes in schools.

    Returns a dict of equal-length numpy arrays, in this order:
    ``mathscore`` (int64), ``ses`` (float64, two decimals), ``classid``
    (int64, 1..C, a random permutation so it does not reveal the school),
    ``schoolid`` (int64, 1..n_schools) and ``classid2`` (int64, 1..k within
    each school), then ``pass`` (int64, 0/1: a pass/fail outcome for a logistic GLMM) and
    ``absences`` (int64, a count for a Poisson GLMM). Rows are sorted by school, then class
    within school.

    ``class_size``: the mean number of children per class, drawn as 1 + Poisson(class_size − 1)
    (e.g. 25 for register data of whole classes); by default the classroom study's 1-10
    (mean 3.8). The classes per school keep the study's 1-9.

    ``waves``: each child tested that many times (repeated measures): the columns are then
    ``mathscore`` (one per wave), ``ses``, ``classid``, ``schoolid``, ``classid2``, ``pupil``
    (1..N, unique) and ``wave`` (1..waves), one row per child and wave, and the score is
    ``523 + 11.2 ses + school and class effects + WAVE_GROWTH (wave − 1) + u + e``, u an AR(1)
    series per child over the waves (SD √WAVE_CHILD_SHARE · sd_resid, lag-1 correlation
    WAVE_RHO), e a fresh error per wave (the rest of sd_resid²): the model of
    ``mathscore ~ ses + wave + (ses | schoolid) + (1 | classid) + ar1(0 + factor(wave) | pupil)``.
    The draws of the one-score columns come first, so they are the same with or without waves.

    ``params`` override the generating model's :data:`DEFAULTS`
    (``intercept``, ``slope``, ``sd_school``, ``sd_school_ses``,
    ``cor_school``, ``sd_class``, ``sd_resid``).
    """
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise TypeError(
            f"simulate_classroom() got unknown parameter(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(DEFAULTS)}"
        )
    p = {**DEFAULTS, **params}
    n_schools = int(n_schools)
    if n_schools < 1:
        raise ValueError("n_schools must be at least 1")
    if class_size is not None and not class_size >= 1:
        raise ValueError("class_size must be at least 1")
    if not -1.0 <= p["cor_school"] <= 1.0:
        raise ValueError("cor_school must be between -1 and 1")
    for name in ("sd_school", "sd_school_ses", "sd_class", "sd_resid"):
        if p[name] < 0:
            raise ValueError(f"{name} must be non-negative")

    rng = np.random.default_rng(seed)

    # Design: classes per school, children per class.
    k = _categorical(rng, _CLASSES_PER_SCHOOL, n_schools)
    n_classes = int(k.sum())
    class_school = np.repeat(np.arange(n_schools), k)  # school index of each class
    first_class = np.cumsum(k) - k  # index of each school's first class
    class_num = np.arange(n_classes) - first_class[class_school] + 1  # 1..k within school
    class_id = rng.permutation(n_classes) + 1

    if class_size is None:
        m = _categorical(rng, _CHILDREN_PER_CLASS, n_classes)
    else:
        m = 1 + rng.poisson(class_size - 1.0, n_classes)
    row_class = np.repeat(np.arange(n_classes), m)
    row_school = class_school[row_class]
    n = row_class.size

    # ses: school mean + class deviation + right-skewed child deviation.
    s = _SES_SKEW_SIGMA
    lognorm_mean = np.exp(s * s / 2)
    lognorm_sd = np.sqrt((np.exp(s * s) - 1) * np.exp(s * s))
    child = (np.exp(s * rng.standard_normal(n)) - lognorm_mean) / lognorm_sd
    ses = (
        _SES_SD_SCHOOL * rng.standard_normal(n_schools)[row_school]
        + _SES_SD_CLASS * rng.standard_normal(n_classes)[row_class]
        + _SES_SD_CHILD * child
    )
    ses = np.round(ses, 2) + 0.0  # + 0.0 turns -0.0 into 0.0

    # Random effects and response.
    z = rng.standard_normal((2, n_schools))
    rho = p["cor_school"]
    a = p["sd_school"] * z[0]
    b = p["sd_school_ses"] * (rho * z[0] + np.sqrt(1.0 - rho * rho) * z[1])
    c = p["sd_class"] * rng.standard_normal(n_classes)
    e = p["sd_resid"] * rng.standard_normal(n)
    y = p["intercept"] + (p["slope"] + b[row_school]) * ses + a[row_school] + c[row_class] + e

    # A pass/fail outcome and a count, drawn after everything above (so the columns above do
    # not depend on them): logit P(pass) = -0.4 + 0.8 ses + school + class effects (SDs 0.7, 0.5);
    # log E(absences) = 1.1 - 0.25 ses + school + class effects (SDs 0.35, 0.2).
    eta = (-0.4 + 0.8 * ses + 0.7 * rng.standard_normal(n_schools)[row_school]
           + 0.5 * rng.standard_normal(n_classes)[row_class])
    passed = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    log_rate = (1.1 - 0.25 * ses + 0.35 * rng.standard_normal(n_schools)[row_school]
                + 0.2 * rng.standard_normal(n_classes)[row_class])
    absences = rng.poisson(np.exp(log_rate)).astype(np.int64)

    if waves is not None:
        return _waves(rng, int(waves), p, y - e, ses, class_id[row_class], row_school, class_num[row_class])
    return {
        "mathscore": np.rint(y).astype(np.int64),
        "ses": ses,
        "classid": class_id[row_class].astype(np.int64),
        "schoolid": (row_school + 1).astype(np.int64),
        "classid2": class_num[row_class].astype(np.int64),
        "pass": passed,
        "absences": absences,
    }


def _waves(rng: np.random.Generator, waves: int, p: Mapping[str, float], mean: np.ndarray, ses: np.ndarray,
           class_id: np.ndarray, row_school: np.ndarray, class_num: np.ndarray) -> dict[str, np.ndarray]:
    """The repeated-measures columns (see ``simulate_classroom``): ``mean`` is each child's expected
    score at the first wave given the school and class effects."""
    if waves < 1:
        raise ValueError("waves must be at least 1")
    n = len(mean)
    sd_child = np.sqrt(WAVE_CHILD_SHARE) * p["sd_resid"]
    sd_error = np.sqrt(1.0 - WAVE_CHILD_SHARE) * p["sd_resid"]
    # a stationary AR(1) over the waves: u = sd · C z, C the Cholesky factor of ρ^|i − j| (the
    # ar1 structure's own Λ)
    from .engine.covstruct import lam

    u = lam("ar1", waves, np.array([sd_child, WAVE_RHO])) @ rng.standard_normal((waves, n))
    e = sd_error * rng.standard_normal((waves, n))
    wave = np.arange(waves)[:, None]
    score = mean[None, :] + WAVE_GROWTH * wave + u + e
    rep = lambda col: np.repeat(col, waves)  # (rows: child by child, waves within child)
    return {
        "mathscore": np.rint(score.T.ravel()).astype(np.int64),
        "ses": rep(ses),
        "classid": rep(class_id).astype(np.int64),
        "schoolid": rep(row_school + 1).astype(np.int64),
        "classid2": rep(class_num).astype(np.int64),
        "pupil": rep(np.arange(1, n + 1)).astype(np.int64),
        "wave": np.tile(np.arange(1, waves + 1), n).astype(np.int64),
    }


# ---------------------------------------------------------------------------
# CSV output


def _fixed_decimals(x: np.ndarray, decimals: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-decimal text of floats as (labels, codes): row i reads ``labels[codes[i]]``, code -1 = missing.

    Values are rounded half to even on ``x * 10**decimals`` (values already
    rounded to ``decimals`` come out exactly), and ``-0.00`` is never written.
    Only the distinct rounded values are formatted, so a million rows of
    two-decimal data cost a few hundred string formats and a gather.
    """
    x = np.asarray(x, dtype=np.float64)
    bad = ~np.isfinite(x)
    scale = 10**decimals
    scaled = np.rint(np.where(bad, 0.0, x) * scale).astype(np.int64)
    lo, hi = (int(scaled.min()), int(scaled.max())) if scaled.size else (0, 0)
    if hi - lo <= max(4 * scaled.size, 1024):  # dense range: index by value, no sort
        values = np.arange(lo, hi + 1, dtype=np.int64)
        codes = scaled - lo
    else:
        values, codes = np.unique(scaled, return_inverse=True)
    codes = np.where(bad, -1, codes)
    labels = np.empty(values.size, dtype=object)
    for i, v in enumerate(values.tolist()):
        whole, frac = divmod(abs(v), scale)
        sign = "-" if v < 0 else ""
        labels[i] = f"{sign}{whole}.{frac:0{decimals}d}" if decimals > 0 else f"{sign}{whole}"
    return labels, codes


def _formatted(columns: Mapping[str, np.ndarray], decimals: int) -> dict[str, object]:
    """Columns ready to write: int64 arrays, or (labels, codes) pairs for floats and text."""
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError("all columns must have the same length")
    out: dict[str, object] = {}
    for name, col in columns.items():
        col = np.asarray(col)
        if col.dtype.kind in "iub":
            out[name] = col.astype(np.int64)
        elif col.dtype.kind == "f":
            out[name] = _fixed_decimals(col, decimals)
        else:  # text: None / NaN missing
            values = col.astype(object)
            missing = np.array([v is None or (isinstance(v, float) and v != v) for v in values], dtype=bool)
            labels, inverse = np.unique(values[~missing].astype(str), return_inverse=True)
            codes = np.full(values.size, -1, dtype=np.int64)
            codes[~missing] = inverse
            out[name] = (labels.astype(object), codes)
    return out


def _csv_bytes_pyarrow(cols: dict[str, object]) -> bytes:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # Arrays are built from buffers: pa.array() would import pandas (half a second).
    def int64(values: np.ndarray, missing: np.ndarray | None = None):
        values = np.ascontiguousarray(values, dtype=np.int64)
        validity = None
        if missing is not None and missing.any():
            validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
        return pa.Array.from_buffers(pa.int64(), values.size, [validity, pa.py_buffer(values)])

    def strings(labels: np.ndarray):
        encoded = [str(v).encode() for v in labels]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        data = pa.py_buffer(b"".join(encoded))
        return pa.Array.from_buffers(pa.large_string(), len(encoded), [None, pa.py_buffer(offsets), data])

    arrays = []
    for col in cols.values():
        if isinstance(col, tuple):
            labels, codes = col
            missing = codes < 0
            indices = int64(np.where(missing, 0, codes), missing)
            arrays.append(pa.DictionaryArray.from_arrays(indices, strings(labels)))
        else:
            arrays.append(int64(col))
    table = pa.Table.from_arrays(arrays, names=list(cols))
    buf = io.BytesIO()
    buf.write((",".join(cols) + "\n").encode())
    # quoting_style="none" keeps text plain (and refuses values that would need quotes).
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return buf.getvalue()


def write_csv(columns: Mapping[str, np.ndarray], dest, *, decimals: int = 2) -> None:
    """Write equal-length columns as CSV to ``dest``: a path, or a binary or text file object.

    Integer columns are written as integers, float columns with exactly
    ``decimals`` decimals (missing as an empty field), anything else as text.
    Uses pyarrow's CSV writer (``\\n`` line ends, a header row, no index, no quotes).
    """
    data = _csv_bytes_pyarrow(_formatted(columns, decimals))
    if isinstance(dest, (str, os.PathLike)):
        with open(dest, "wb") as fh:
            fh.write(data)
    elif isinstance(dest, io.TextIOBase):
        dest.write(data.decode())
    else:
        try:
            _write_all(dest, data)
        except TypeError:  # a text stream that is not an io.TextIOBase
            dest.write(data.decode())


def _write_all(dest, data: bytes) -> None:
    """Write every byte: a raw stream (stdout under PYTHONUNBUFFERED) may take only part
    of a large write, and silently dropping the rest would truncate the CSV."""
    view = memoryview(data)
    while view:
        written = dest.write(view)
        if written is None:  # a buffered stream took it all (or a non-blocking one took nothing)
            return
        view = view[written:]


def example_path() -> Path:
    """Path of the bundled example data: ``simulate_classroom()`` with its defaults, as CSV."""
    return Path(str(resources.files("mixcli").joinpath("data", _EXAMPLE)))


# ---------------------------------------------------------------------------
# A partitioned Parquet dataset (data larger than memory: ``fit --engine dask``)


def write_parquet_dataset(n_schools: int, seed: int, directory, partitions: int, progress=None,
                          class_size: float | None = None) -> int:
    """Write ``n_schools`` schools as a Parquet dataset of ``partitions`` files in ``directory``,
    one partition at a time, so that the memory used is that of one partition whatever the
    total. Partition k holds ``simulate_classroom`` of its share of the schools with the seed
    sequence (seed, k), its ``schoolid`` and ``classid`` shifted past the earlier partitions'
    (unique across the dataset; the schools of a partition are consecutive). The files are
    written into a temporary directory beside ``directory``, renamed into place at the end:
    nothing half-written is left if the run is interrupted. Returns the number of rows."""
    import shutil
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"'{directory}' exists and is not an empty directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    shares = np.diff(np.linspace(0, n_schools, partitions + 1).round().astype(np.int64))
    rows = schools = classes = 0
    try:
        for k, share in enumerate(shares):
            if share == 0:
                continue
            cols = simulate_classroom(n_schools=int(share), seed=[seed, k], class_size=class_size)
            cols["schoolid"] = cols["schoolid"] + schools
            n_classes = int(cols["classid"].max())
            cols["classid"] = cols["classid"] + classes
            pq.write_table(pa.table(cols), tmp / f"part-{k:05d}.parquet")
            rows += len(cols["mathscore"])
            schools += int(share)
            classes += n_classes
            if progress:
                progress(k + 1, len(shares), rows)
        if target.exists():
            target.rmdir()
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rows
