"""Fitting a linear mixed model to a dataset larger than memory, on a Dask cluster.

``fit_dataset(source, formula, ...)`` reads a Parquet file, a directory of Parquet
files or a glob of Parquet or CSV files with ``dask.dataframe`` (only the formula's
columns), and runs three passes over the parts on the cluster's workers
(``partition.py``): the levels, the column summaries, the per-level sums. Each pass
reduces the parts' records in a tree (``add``), so the driver receives arrays of the size
of the number of levels, never the rows; ``ModelStructure.from_sums`` turns the sums into
the structure the optimiser, Satterthwaite's df, profiles and conditional modes work on
unchanged (``model.Model`` with that structure).

Residuals and fitted values (``fit --augment``) take a fourth pass: the workers write each
part's rows with them as a Parquet dataset (``augment_dataset``). Kenward–Roger's df need
only the sums (``inference.kenward_roger`` works on the structure's ZᵀZ, ZᵀX and XᵀX). What
needs the rows at every step is refused in one line: the parametric bootstrap, and GLMMs (PIRLS
would need a pass over the rows per iteration).

The cluster: ``workers`` starts a ``LocalCluster`` of that many processes (one thread
each); ``scheduler`` joins a running one (``dask scheduler`` + ``dask worker``, or
dask-jobqueue, Kubernetes...). Dask is imported here only, and only by ``--engine dask``.
"""

from __future__ import annotations

import glob
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np

from .engine.memory import release_freed_memory
from .errors import DataError, FormulaError, UsageError, option
from .frame import RANK_TOL, GroupingFactor, ModelFrame, order_terms
from .partition import Coding, Layout, Plan, level_sums, moments, scan, to_table

# R's functions whose value on a row depends on the whole column (centring, knots,
# orthogonal polynomials): on one part they would differ from the whole data's.
DATA_DEPENDENT = re.compile(r"\b(scale|poly|ns|bs)\s*\(")
# factor() of a column: the levels of a numeric column would be each part's own.
FACTOR_CALL = re.compile(r"\b(?:factor|as\.factor|C)\s*\(\s*([A-Za-z._][A-Za-z0-9._]*)")
# Records are added in a tree of this fan-in (depth log_8 of the parts).
FAN_IN = 8


@dataclass
class DatasetFrame(ModelFrame):
    """A model frame without the rows: what the results need (names, levels, terms), with
    the number of rows used (``n``) from the passes."""

    nobs: int = 0
    x_moments: tuple | None = None  # (n, Σx, XᵀX) of the kept columns: R² without the rows
    dataset: tuple | None = field(default=None, repr=False)  # (plan, coding, layout): ``keep_coding``
    weighted: bool = False  # fitted with prior weights (which the frame cannot hold: one per row)

    @property
    def n(self) -> int:
        return self.nobs


@dataclass
class Dataset:
    """The files of DATA and how they are read."""

    source: str
    files: list[str]
    kind: str  # "parquet" or "csv"
    columns: list[str] = field(default_factory=list)


def dataset_files(source: str) -> Dataset:
    """The files DATA names: a Parquet file, a directory of Parquet files, or a glob."""
    if source == "-":
        raise UsageError(f"{option('engine', 'dask')} reads files that every worker opens; standard input "
                         "cannot be shared: save it as a file (Parquet or CSV) and give its path")
    if os.path.isdir(source):
        files = sorted(glob.glob(os.path.join(source, "**", "*.parquet"), recursive=True))
        if not files:
            raise DataError(f"the directory '{source}' has no .parquet files; give a Parquet dataset directory, "
                            "a Parquet file or a glob such as 'data/*.csv'")
    elif any(ch in source for ch in "*?["):
        files = sorted(glob.glob(source, recursive=True))
        if not files:
            raise DataError(f"'{source}' matches no files; check the path and quote the pattern so that the "
                            "shell leaves it to mixcli")
    elif os.path.isfile(source):
        files = [source]
    else:
        raise DataError(f"cannot read '{source}': no such file or directory")
    kinds = {"parquet" if f.endswith((".parquet", ".parq", ".pq")) else "csv" if f.endswith(
        (".csv", ".tsv", ".txt")) else "other" for f in files}
    if kinds - {"parquet", "csv"} or len(kinds) > 1:
        raise DataError(f"'{source}' names {len(files)} files that are not all Parquet or all CSV "
                        f"(e.g. '{files[0]}'); {option('engine', 'dask')} reads one kind")
    return Dataset(source, files, kinds.pop())


def connect(scheduler: str | None = None, workers: int | None = None):
    """A ``distributed.Client``: to the scheduler at ``scheduler``, or to a new LocalCluster of
    ``workers`` processes (default 2)."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="5s")
        except (OSError, TimeoutError) as err:
            raise DataError(f"cannot reach the Dask scheduler at {scheduler} ({_reason(err)}); start one "
                            f"(dask scheduler, then dask worker {scheduler}) or use {option('workers', '2')} "
                            "for a cluster on this machine") from None
    import logging

    # (a worker's failure reaches the user as one line from tree_reduce, not as Dask's log)
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.CRITICAL)
    return Client(cluster)


def _reason(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text[:160] or type(err).__name__


def close(client) -> None:
    cluster = client.cluster if hasattr(client, "cluster") else None
    client.close()
    if cluster is not None:
        cluster.close()


def read_parts(ds: Dataset, columns: list[str]):
    """The dataset as a list of delayed pandas parts with only ``columns`` (projection)."""
    import dask.dataframe as dd

    if ds.kind == "csv":  # a file per part, read by mixcli's one reader of delimited text (io.py)
        import dask

        return [dask.delayed(_csv_part)(f, tuple(columns)) for f in ds.files]
    try:
        frame = dd.read_parquet(ds.files, columns=columns)
    except Exception as err:  # (pyarrow's errors for files that disagree)
        raise DataError(f"cannot read '{ds.source}' as one dataset: {_reason(err)}; every file must have the "
                        "formula's columns, of the same types") from None
    return frame.to_delayed()


def _csv_part(path: str, columns: tuple[str, ...]):
    """One CSV file's ``columns`` as a pandas frame, read as ``mixcli fit FILE`` reads it."""
    import pandas as pd

    from .io import read_table
    from .table import TextColumn

    table = read_table(path)
    return pd.DataFrame({c: table[c].values() if isinstance(table[c], TextColumn) else table[c] for c in columns})


def meta_columns(ds: Dataset, columns: list[str] | None = None) -> list[str]:
    """The column names of the first file (cheap: its schema or header); for Parquet, every file's
    schema is read and files that lack one of ``columns`` or disagree on its type end here."""
    if ds.kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        first = pq.read_schema(ds.files[0])
        # (pandas writes its index as a column, e.g. __index_level_0__: not the data's)
        index = {c for c in (first.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
        names = [c for c in first.names if c not in index]
        kind = lambda t: "number" if (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                                      or pa.types.is_null(t)) else "text"
        wanted = [c for c in (columns or []) if c in names]
        for f in ds.files[1:]:
            schema = pq.read_schema(f)
            for c in wanted:
                if c not in schema.names:
                    raise DataError(f"the files of '{ds.source}' disagree: '{f}' has no column '{c}' (which "
                                    f"'{ds.files[0]}' has); give every file the formula's columns")
                a, b = kind(first.field(c).type), kind(schema.field(c).type)
                if a != b:
                    raise DataError(f"the files of '{ds.source}' disagree on column '{c}': {a} in '{ds.files[0]}' "
                                    f"({first.field(c).type}), {b} in '{f}' ({schema.field(c).type}); give "
                                    "every file the same types")
        return names
    from .io import read_header, resolve_sep

    with open(ds.files[0], "rb") as fh:
        head = fh.read(1 << 20)
    return list(read_header(head, resolve_sep(ds.files[0]), ds.files[0]).columns)


def tree_reduce(client, parts, fn, *args):
    """``fn(part, *args)`` on every part on the workers, the records added in a tree; the total."""
    import dask

    level = [dask.delayed(fn)(p, *args) for p in parts]
    while len(level) > 1:
        level = [dask.delayed(_add_all)(*level[i:i + FAN_IN]) for i in range(0, len(level), FAN_IN)]
    try:
        return client.compute(level[0]).result()
    except Exception as err:
        from .errors import MixcliError

        if isinstance(err, MixcliError):
            raise
        raise DataError(f"the Dask cluster failed during the pass ({type(err).__name__}: {_reason(err)}); "
                        "nothing was written") from None


def _add_all(*records):
    total = records[0]
    for r in records[1:]:
        total = total.add(r)
    return total


def fit_dataset(source: str, formula: str, reml: bool = True, weights: str | None = None,
                contrasts: str = "treatment", scheduler: str | None = None, workers: int | None = None,
                client=None, progress=None, fit_progress=None, control=None, checked=None,
                augment: str | None = None):
    """lmer's fit of ``formula`` to the dataset at ``source`` on a Dask cluster (see the module
    docstring); ``progress(message)`` gets a line per pass; ``checked``, ``check_dataset``'s result
    when the caller checked before starting a cluster. ``augment``: a directory (new, or empty)
    that a fourth pass fills with the rows used and their fitted values and residuals
    (``augment_dataset``). Returns an ``LmmResult``."""
    checked = checked or check_dataset(source, formula, weights)
    if augment is not None:
        check_augment_target(augment)
    own = client is None
    client = connect(scheduler, workers) if own else client
    try:
        frame, st = dataset_structure(source, formula, weights, contrasts, client=client, progress=progress,
                                      checked=checked, keep_coding=augment is not None)
        from .control import DEFAULT
        from .fitting import fit_frame

        say = progress or (lambda message: None)
        started = time.monotonic()
        result = fit_frame(frame, reml=reml, progress=fit_progress, control=control or DEFAULT, structure=st)
        say(f"fitted in {time.monotonic() - started:.1f} s on the driver ({st.n} rows reduced to "
            f"{sum(t.n_levels for t in st.terms)} levels)")
        if augment is not None:
            augment_dataset(result, checked[1], frame.dataset, augment, client, say)
            frame.dataset = None  # (the dataset's levels: as large as the factors)
    finally:
        if own:
            close(client)
    return result


def check_augment_target(directory: str) -> None:
    """The augmented dataset's directory: new (its parent a writable directory), or empty."""
    path = os.path.abspath(directory)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise DataError(f"{directory}: not a directory; the augmented rows are a Parquet dataset: give a new "
                            "directory")
        if os.listdir(path):
            raise DataError(f"{directory}: the directory is not empty; give a new (or empty) directory for the "
                            "augmented rows")
    parent = os.path.dirname(path)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise DataError(f"{directory}: cannot write there ({parent} is not a writable directory)")


def augment_dataset(m, ds: Dataset, coded, directory: str, client, say) -> None:
    """Pass 4: every part's rows used, with .fitted, .fixed, .resid and .resid_pearson, written by
    the workers as ``directory/part.NNNNN.parquet`` (one per part, in the dataset's order). The
    parts go to a hidden sibling directory renamed to ``directory`` at the end: nothing half-written
    is left under that name. The workers must see ``directory`` (a shared file system)."""
    import shutil
    import tempfile

    import dask

    from .partition import Fitted, augment_part

    plan, coding, layout = coded
    modes = []
    for term, b in zip(m.frame.terms, m.conditional_modes()):
        in_r = np.empty_like(b)
        in_r[np.asarray(term.levels_to_r, dtype=np.int64)] = b
        modes.append(in_r)
    fitted = Fitted(np.array([f.estimate for f in m.fixef]), tuple(modes), float(m.sigma))
    path = os.path.abspath(directory)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=os.path.dirname(path))
    started = time.monotonic()
    try:
        parts = read_parts(ds, meta_columns(ds))
        shared = client.scatter(coding, broadcast=True, hash=False)
        tasks = [dask.delayed(augment_part)(p, i, plan, shared, layout, fitted, tmp) for i, p in enumerate(parts)]
        try:
            futures = client.compute(tasks)
            # every part finished or failed before anything is judged: a part still being written
            # when the partial directory is removed would leave it behind
            from distributed import wait

            wait(futures)
            written = sum(f.result() for f in futures)
        except Exception as err:
            from .errors import MixcliError

            if isinstance(err, MixcliError):
                raise
            raise DataError(f"the Dask cluster failed while writing the augmented rows ({type(err).__name__}: "
                            f"{_reason(err)}); nothing was written to {directory}") from None
        if written != m.nobs:  # (the dataset changed under the fit)
            raise DataError(f"{written} rows were augmented, but the fit used {m.nobs}: did the files change "
                            f"during the fit? Nothing was written to {directory}")
        if os.path.isdir(path):
            os.rmdir(path)  # (checked empty)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"pass 4/4: {written} augmented rows in {len(parts)} parts written to {directory} "
        f"({time.monotonic() - started:.1f} s)")


def compare_dataset(source: str, formulas, names=None, refit: bool = True, weights: str | None = None,
                    contrasts: str = "treatment", scheduler: str | None = None, workers: int | None = None,
                    client=None, progress=None, fit_progress=None, control=None, announce=None):
    """lme4's ``anova(m1, m2, ...)`` of ``formulas`` fitted to the dataset at ``source`` on one
    cluster (``client``, or one started as ``connect(scheduler, workers)`` once every formula is
    checked) by ML, or REML with ``refit=False``: ``comparison.compare_fitted`` of ``fit_dataset``
    fits. ``announce(message)`` hears the ML refit note after the checks; ``fit_progress(i, n)``,
    if given, returns the started progress line of fit i of n (its ``done()`` is called after it)."""
    from .comparison import compare_fitted

    formulas = list(formulas)
    checked = [check_dataset(source, f, weights) for f in formulas]  # (bad input ends here, before a cluster)
    if refit and announce is not None:  # (as compare_models: not before an error)
        announce("refitting models with ML (instead of REML)")
    own = client is None
    client = connect(scheduler, workers) if own else client
    models = []
    try:
        for i, (f, c) in enumerate(zip(formulas, checked), start=1):
            meter = fit_progress(i, len(formulas)) if fit_progress is not None else None
            models.append(fit_dataset(source, f, reml=not refit, weights=weights, contrasts=contrasts, client=client,
                                      progress=progress, fit_progress=meter, control=control, checked=c))
            if meter is not None:
                meter.done()
    finally:
        if own:
            close(client)
    return compare_fitted(models, names, refit)


def check_dataset(source: str, formula_text: str, weights: str | None = None):
    """The checks that need no cluster: the formula suits the engine, DATA names files, and they
    have the formula's columns, of the same kinds (Parquet). Returns (formula, dataset, columns)."""
    from .formula import parse_formula

    formula = parse_formula(formula_text)
    if not formula.random:
        raise FormulaError("no random-effects terms; add one such as (1 | group) (for a model without them use "
                           "ordinary regression)", formula.text)
    structured = next((rt for rt in formula.random if rt.structure), None)
    if structured is not None:
        raise FormulaError(f"{structured.written}: structured covariances are not yet fitted by "
                           f"{option('engine', 'dask')}; fit in memory", formula.text, structured.span[0])
    bad = DATA_DEPENDENT.search(formula.text)
    if bad:
        raise FormulaError(f"{bad.group(1)}() depends on the whole column, which {option('engine', 'dask')} never "
                           "holds in one place; compute that column before fitting, or fit in memory",
                           formula.text, bad.start())
    ds = dataset_files(source)
    columns = [c for c in formula.variables() + ([weights] if weights else []) if c is not None]
    names = meta_columns(ds, columns)
    if any(c not in names for c in columns):
        # the in-memory messages (with the position in the formula, or the --weights option)
        import pandas as pd

        from .formula.evaluate import check_variables
        from .response import weight_values

        empty = to_table(pd.DataFrame({c: pd.Series([], dtype=float) for c in names}))
        check_variables(formula, empty)
        weight_values(weights, empty)
    return formula, ds, list(dict.fromkeys(columns))


def dataset_structure(source, formula_text, weights=None, contrasts="treatment", scheduler=None, workers=None,
                      client=None, progress=None, checked=None, keep_coding=False):
    """The driver's frame and the model's structure from three passes over the dataset (``checked``:
    ``check_dataset``'s result, if the caller has it). ``keep_coding``: the frame keeps the plan,
    the dataset's levels and the sums' layout (``frame.dataset``) for a later pass over the rows."""
    say = progress or (lambda message: None)
    formula, ds, columns = checked or check_dataset(source, formula_text, weights)
    plan = Plan(formula.text, weights, contrasts, tuple(columns))
    own = client is None
    if own:
        say(f"starting the cluster ({'scheduler ' + scheduler if scheduler else f'{workers or 2} local workers'})")
        client = connect(scheduler, workers)
    try:
        parts = read_parts(ds, columns)
        total = len(parts)
        started = time.monotonic()
        first = tree_reduce(client, parts, scan, plan)
        say(f"pass 1/3: levels of {first.rows} rows in {total} parts ({time.monotonic() - started:.1f} s)")
        coding = _coding(first, formula, ds)
        # The coding (a sorted key per level) goes to the workers once, not inside every task
        # of the graph (a copy per part, pickled on the driver).
        shared = client.scatter(coding, broadcast=True, hash=False)
        started = time.monotonic()
        second = tree_reduce(client, parts, moments, plan, shared)
        say(f"pass 2/3: column summaries ({time.monotonic() - started:.1f} s)")
        frame, layout = _driver_frame(formula, plan, coding, first, second)
        weights_term = -second.sum_log_w if weights else 0.0
        if keep_coding:
            frame.dataset = (plan, coding, layout)
        del first, second, coding  # (the frame holds what the results need)
        release_freed_memory()
        started = time.monotonic()
        sums = tree_reduce(client, parts, level_sums, plan, shared, client.scatter(layout, broadcast=True, hash=False))
        del shared
        say(f"pass 3/3: per-level sums ({time.monotonic() - started:.1f} s)")
    finally:
        if own:
            close(client)
    from .engine.structure import ModelStructure

    st = ModelStructure.from_sums(frame.terms, list(layout.bases), sums, layout.beta_shift, weights_term=weights_term)
    del sums
    release_freed_memory()
    return frame, st


def _coding(first, formula, ds: Dataset) -> Coding:
    """The dataset's levels from the first pass (R's order), after its checks."""
    from .formula import r_sort_key

    if first.kind_clash:
        name, a, b = first.kind_clash
        raise DataError(f"the files of '{ds.source}' disagree on column '{name}': {a} in some, {b} in others; "
                        "give every file the same columns and types")
    if first.kept == 0:
        raise DataError(f"no complete rows: every row of '{ds.source}' has a missing value in a variable of the "
                        "formula")
    for m in FACTOR_CALL.finditer(formula.text):
        if first.kinds.get(m.group(1)) == "number":
            raise FormulaError(f"factor() of the numeric column '{m.group(1)}' would take each part's levels with "
                               f"{option('engine', 'dask')}; store the column as text", formula.text, m.start())
    text_levels = {name: sorted((str(v) for v in labels), key=r_sort_key) for name, labels in first.labels.items()}
    groups = {}
    for key, combos in first.combos.items():
        cols = tuple(combos.columns)
        levels, index = [], []
        for c in cols:
            if first.kinds[c] == "text":
                lv = text_levels[c]
                idx = np.asarray(__import__("pandas").Categorical(combos[c], categories=lv).codes, dtype=np.int64)
                levels.append(np.asarray(lv, dtype=object))
            else:
                values = combos[c].to_numpy(dtype=np.float64)
                lv = np.unique(values)
                idx = np.searchsorted(lv, values)
                levels.append(lv)
            index.append(idx)
        combined = np.zeros(len(combos), dtype=np.int64)
        for lv, idx in zip(levels, index):
            combined = combined * len(lv) + idx
        groups[key] = (cols, levels, np.unique(combined))
    return Coding(text_levels, groups)


def _aliased(xtx: np.ndarray) -> list[int]:
    """The columns of X that are (numerically) combinations of earlier ones, from XᵀX: R's
    pivoting QR (dqrdc2) keeps a column when its residual on the kept columns has a norm
    above ``RANK_TOL`` times its own; here that residual's square is the Schur complement."""
    kept, dropped = [], []
    for j in range(xtx.shape[0]):
        norm2 = xtx[j, j]
        if kept:
            a = xtx[np.ix_(kept, kept)]
            b = xtx[kept, j]
            resid = norm2 - b @ np.linalg.solve(a, b)
        else:
            resid = norm2
        if norm2 > 0 and resid > (RANK_TOL**2) * norm2:
            kept.append(j)
        else:
            dropped.append(j)
    return dropped


def _driver_frame(formula, plan: Plan, coding: Coding, first, second):
    """The frame the results need (no rows) and the layout of the sums pass."""
    from .engine.structure import ReTerm, TermBasis
    from .formula.evaluate import r_number

    n = second.n
    lo, hi = second.y_range
    label = formula.response.label
    if lo == hi:
        raise DataError(f"the response '{label}' has the same value ({r_number(float(lo))}) in all {n} rows used, "
                        "so there is no variation to model")
    dropped = _aliased(second.xtx)
    kept = [j for j in range(len(second.names)) if j not in dropped]
    names = [second.names[j] for j in kept]
    messages = []
    if dropped:
        k = len(dropped)
        messages.append(f"fixed-effect model matrix is rank deficient so dropping {k} column{'s' if k > 1 else ''} / "
                        f"coefficient{'s' if k > 1 else ''} ({', '.join(second.names[j] for j in dropped)})")
    if len(kept) >= n:
        raise DataError(f"{len(kept)} fixed effects for {n} observations: the model needs fewer fixed effects than "
                        "observations (drop terms, or check the data)")
    factors, terms = {}, []
    for i, rt in enumerate(formula.random):
        key = rt.lme4_group_name
        cols, levels, keys = coding.groups[key]
        if key not in factors:
            # (each column's index of a level in the smallest integer type that holds it: they
            # only name the levels; the one identity order is shared by the factor and its terms)
            parts, rem = [], keys.copy()
            for lv in reversed(levels):
                parts.append((lv, (rem % len(lv)).astype(np.int32 if len(lv) < 2**31 else np.int64)))
                rem //= len(lv)
            del rem
            parts = [(list(lv) if lv.dtype == object else lv, idx) for lv, idx in reversed(parts)]
            factors[key] = GroupingFactor(key, np.empty(0, dtype=np.int64), len(keys), parts,
                                          np.arange(len(keys)))
        k = second.terms[i].mean.shape[0]
        terms.append(ReTerm(codes=np.empty(0, dtype=np.int64), n_levels=len(keys), z=np.empty((0, k)), group=key,
                            names=list(second.z_names[i]), factor=key, levels_to_r=factors[key].to_r))
    terms, order, ordered = order_terms(terms, factors, n)
    moments_sorted = [second.terms[i] for i in order]
    bases = tuple(TermBasis.from_moments(m.ones, m.peak, m.mean, m.m2, m.n) for m in moments_sorted)
    p = len(kept)
    if p:
        a = second.wxtx[np.ix_(kept, kept)]
        beta_shift = np.linalg.lstsq(a, second.wxty[kept], rcond=None)[0]
    else:
        beta_shift = np.zeros(0)
    frame = DatasetFrame(
        formula=formula, y=np.empty(0), X=np.empty((0, p)), fixef_names=names, terms=terms, factors=ordered,
        rows=None, n_dropped=first.rows - n, term_sources=order, dropped_columns=[second.names[j] for j in dropped],
        messages=messages, contrasts=plan.contrasts, nobs=n, weighted=plan.weights is not None,
        x_moments=(n, second.x_sums[kept], second.xtx[np.ix_(kept, kept)]),
        fixef_assign=[],
    )
    layout = Layout(tuple(order), tuple(t.n_levels for t in terms), bases, tuple(kept), beta_shift)
    return frame, layout
