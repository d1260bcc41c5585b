"""The catalogue of bad input: every case run through the real command line.

Each ``Case`` is a command a user might type on a file they might have, with
what mixcli must answer: the exit code, and the one line it prints on stderr
(``mixcli: error: ...``, or ``mixcli: warning: ...`` next to a successful
fit). ``tests/test_errors.py`` runs every case as a subprocess and checks it;
the README's "What mixcli says when…" table is rendered from the same runs,
and a test fails when the README differs, so the table cannot drift.

Regenerate the README table after changing a message:

    .venv/bin/python tests/catalogue.py --write      (or: make errors-table)

A few cases need a condition a test cannot create with a file alone (the
optimiser's evaluation limit, a permission error when running as root, a
Ctrl-C at a known moment): they run ``mixcli`` in a Python process that sets
the condition up first (``Case.setup``), and the table says so.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START = "<!-- errors:start -->"
END = "<!-- errors:end -->"

# ---------------------------------------------------------------- data


def _normal(rng: random.Random) -> float:
    """A standard normal from ``random()`` only (its stream is the one Python guarantees across versions)."""
    u1, u2 = 1.0 - rng.random(), rng.random()
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def study_rows(groups: int = 30, per_group: int = 8, seed: int = 7) -> list[dict[str, object]]:
    """A small, well-behaved study: y depends on x, with school (g) intercepts and slopes and
    school-by-f effects, so that the models the cases fit are not singular."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for gi in range(groups):
        b0, bx = 2.0 * _normal(rng), 0.5 * _normal(rng)
        bf = {"a": 1.5 * _normal(rng), "b": 1.5 * _normal(rng)}
        for k in range(per_group):
            x = round(_normal(rng), 2)
            z = round(_normal(rng), 2)
            f = "ab"[k % 2]
            y = 10 + 2 * x + 0.5 * z + b0 + bx * x + bf[f] + 0.7 * _normal(rng)
            rows.append({
                "y": f"{y:.3f}", "x": f"{x:.2f}", "z": f"{z:.2f}", "g": f"s{gi + 1:02d}", "f": f,
                "site": f"{gi + 1.5}", "id": str(len(rows) + 1), "x100": f"{100 * x:.0f}",
                "income": f"{round(4e11 + 1e11 * _normal(rng), -6):.0f}", "dose": f"{0.002 + 0.0005 * _normal(rng):.6f}",
                "one": "1",
            })
    return rows


def csv_text(rows, columns=None, sep=",", transform=None) -> str:
    columns = columns or list(rows[0])
    lines = [sep.join(columns)]
    for i, row in enumerate(rows):
        row = dict(row)
        if transform is not None:
            transform(i, row)
        lines.append(sep.join(str(row[c]) for c in columns))
    return "\n".join(lines) + "\n"


ROWS = study_rows()
STUDY = csv_text(ROWS)


def trial_rows(seed: int = 11) -> list[dict[str, object]]:
    """The study as a pass/fail and count outcome: pass (0/1), passed (yes/no), count (a Poisson
    count), days (exposure), sep (a predictor that separates pass completely), h (crossed with g)."""
    rng = random.Random(seed)
    rows = []
    for row in ROWS:
        x = float(row["x"])
        b = 0.8 * _normal(rng)
        eta = -0.2 + 0.9 * x + b
        passed = rng.random() < 1.0 / (1.0 + math.exp(-eta))
        lam = math.exp(0.5 + 0.4 * x + 0.3 * b)
        count, p, limit = 0, 1.0, math.exp(-lam)  # Knuth's Poisson sampler
        while True:
            p *= rng.random()
            if p <= limit:
                break
            count += 1
        rows.append({"pass": int(passed), "passed": "yes" if passed else "no", "count": count,
                     "half": f"{count + 0.5:.1f}", "days": str(1 + len(rows) % 7), "x": row["x"], "g": row["g"],
                     "h": f"h{len(rows) % 5}", "sep": f"{(1 if passed else -1) * (1 + rng.random()):.3f}"})
    return rows


TRIALS = csv_text(trial_rows())
# 33 rows in two groups where the group and x together predict some outcomes with certainty
_QUASI = "b,x,g\n" + "".join(
    f"{b},{x},g{g}\n" for b, x, g in zip(
        [0, 1, 1, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1],
        [-0.3, -0.8, -0.3, 0.0, -0.3, 1.3, 1.0, -2.7, -1.9, -0.2, -0.4, 0.2, 0.2, 2.1, -1.1, -0.4, 2.0, 0.6,
         0.7, -0.5, -1.6, 0.2, 0.1, -1.2, -0.7, -0.1, -0.9, -0.1, 0.1, 0.0, -0.5, 0.6, 0.9],
        [0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1]))
TRIAL_FILES = {"trials.csv": TRIALS}
GLMM = ["fit", "trials.csv"]


def _set(index: int, column: str, value: str):
    def transform(i, row):
        if i == index:
            row[column] = value
    return transform


def _every_other_missing(i, row):
    row["y" if i % 2 else "x"] = "NA"


def _saved(*steps) -> str:
    """A case's setup that saves fits of study.csv: each step a line of Python (``_s`` is
    mixcli.saved) or (file, formula, reml[, first n rows])."""
    lines = ["import mixcli, mixcli.saved as _s", "from mixcli.io import read_table", "_t = read_table('study.csv')"]
    for step in steps:
        if isinstance(step, str):
            lines.append(step)
            continue
        path, formula, reml, *rows = step
        data = "_t" if not rows else f"{{k: _t.columns[k].values()[:{rows[0]}] if hasattr(_t.columns[k], 'codes') " \
            f"else _t.columns[k][:{rows[0]}] for k in _t.names}}"
        lines.append(f"mixcli.fit({data}, {formula!r}, reml={reml}).save({path!r})")
    return "\n".join(lines)


# ---------------------------------------------------------------- cases


@dataclass
class Case:
    section: str  # Usage, File, Formula, Data, Fit, Interrupt
    name: str  # what the user did, for the table
    args: list[str]  # mixcli's arguments
    code: int  # expected exit code
    expect: str  # text the stderr line must contain ("" = no stderr at all)
    files: dict[str, bytes | str] = field(default_factory=dict)
    kind: str = "error"  # error | warning | ok
    setup: str = ""  # Python run before mixcli's main() in the same process
    shown: str = ""  # the command as the table shows it (default: from args)
    note: str = ""  # condition the table adds after the command
    leaves_no: tuple[str, ...] = ()  # files that must not exist afterwards (no partial output)
    more_warnings: bool = False  # other warnings may follow the expected one (consequences of it)

    @property
    def id(self) -> str:
        return f"{self.section}: {self.name}"


STUDY_FILES = {"study.csv": STUDY}
# clinic nested in region (each clinic in one region): a rank-deficient fit, emmeans's nesting
NESTED = csv_text([{"y": r["y"], "g": r["g"], "region": "north" if r["g"] <= "s15" else "south",
                    "clinic": ("north-" if r["g"] <= "s15" else "south-") + r["f"]} for r in study_rows()])
FIT = ["fit", "study.csv"]


def FIT_DASK(data: str) -> list[str]:
    return ["fit", data, "y ~ x + (1 | g)", "--engine", "dask"]


def _parquet_bytes(columns: dict) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue().to_pybytes()


# Two parts of one study: g as text in one file and as numbers in the other; a file without x.
_PARQUET_CLASH = {
    "p1.parquet": _parquet_bytes({"y": [1.0, 2.5, 3.0, 4.5], "x": [0.1, 0.2, 0.3, 0.4], "g": ["a", "a", "b", "b"]}),
    "p2.parquet": _parquet_bytes({"y": [1.0, 2.5, 3.0, 4.5], "x": [0.1, 0.2, 0.3, 0.4], "g": [1, 1, 2, 2]}),
    "q1.parquet": _parquet_bytes({"y": [1.0, 2.5], "x": [0.1, 0.2], "g": ["a", "b"]}),
    "q2.parquet": _parquet_bytes({"y": [1.0, 2.5], "g": ["a", "b"]}),
}

# Sends Ctrl-C (a real SIGINT) to mixcli itself at a known point: during the fit (the 3rd evaluation
# of the criterion) or while an output file is half written.
_SIGINT_SELF = "import os, signal; os.kill(os.getpid(), signal.SIGINT)"
_INTERRUPT_FIT = f"""
import mixcli.model as _model
_criterion, _calls = _model.Model.criterion, [0]
def _interrupting(self, theta, reml):
    _calls[0] += 1
    if _calls[0] == 3:
        {_SIGINT_SELF}
    return _criterion(self, theta, reml)
_model.Model.criterion = _interrupting
"""
_INTERRUPT_SIMULATE = f"""
import mixcli.simulate as _sim
_write = _sim.write_csv
def _interrupting(columns, dest, **kw):
    dest.write(b"mathscore,ses,classid,schoolid,classid2\\n481,-0.77,1,1,1\\n")
    dest.flush()
    {_SIGINT_SELF}
    _write(columns, dest, **kw)
_sim.write_csv = _interrupting
"""
_INTERRUPT_NEST = f"""
import mixcli.output as _output
_write = _output.AtomicOutput.write
def _interrupting(self, data):
    _write(self, data)
    if self.output is not None:
        self.handle.flush()
        {_SIGINT_SELF}
_output.AtomicOutput.write = _interrupting
"""
_NAN_CRITERION = """
import mixcli.model as _model
_model.Model.criterion = lambda self, theta, reml: float("nan")
"""
_NO_PERMISSION = """
import builtins, mixcli.io as _io
def _open(path, *a, **kw):
    if str(path).endswith("study.csv"):
        raise PermissionError(13, "Permission denied", str(path))
    return builtins.open(path, *a, **kw)
_io.open = _open
"""

CASES: list[Case] = [
    # -- the command line ---------------------------------------------------------------------
    Case("Usage", "a misspelt command", ["fitt", "study.csv", "y ~ x + (1 | g)"], 2,
         "no such command 'fitt'. Did you mean 'fit'? (see 'mixcli --help')", STUDY_FILES),
    Case("Usage", "no formula", ["fit", "study.csv"], 2, "missing argument 'FORMULA...' (see 'mixcli fit --help')",
         STUDY_FILES),
    Case("Usage", "an unknown output format", FIT + ["y ~ x + (1 | g)", "--format", "xml"], 2,
         "invalid value for '--format': 'xml' is not one of 'table', 'json', 'csv', 'tsv' (see 'mixcli fit --help')",
         STUDY_FILES),
    Case("Usage", "a misspelt setting of the fit", FIT + ["y ~ x + (1 | g)", "--control", "maxeval=500"], 2,
         "invalid value for '--control': there is no setting 'maxeval': did you mean max_eval? (see 'mixcli fit "
         "--help')", STUDY_FILES),
    Case("Usage", "a setting that does not exist", FIT + ["y ~ x + (1 | g)", "--control", "quickly=1"], 2,
         "invalid value for '--control': there is no setting 'quickly'; the settings are ftol_abs, ftol_rel",
         STUDY_FILES),
    Case("Usage", "a setting given a value of the wrong kind", FIT + ["y ~ x + (1 | g)", "--control", "max_eval=1e3"],
         2, "invalid value for '--control': max_eval takes a whole number, not '1e3' (see 'mixcli fit --help')",
         STUDY_FILES),
    Case("Usage", "a setting without a value", FIT + ["y ~ x + (1 | g)", "--control", "max_eval"], 2,
         "invalid value for '--control': 'max_eval' is not NAME=VALUE (e.g. max_eval=500) (see 'mixcli fit --help')",
         STUDY_FILES),
    Case("Usage", "a separator of two characters", FIT + ["y ~ x + (1 | g)", "--sep", ";;"], 2,
         "--sep must be a single character, got ';;'", STUDY_FILES),
    # -- files ------------------------------------------------------------------------------
    Case("File", "the file does not exist (a typo)", ["fit", "studdy.csv", "y ~ x + (1 | g)"], 1,
         "studdy.csv: no such file; did you mean study.csv?", STUDY_FILES),
    Case("File", "the file cannot be read (no permission)", FIT + ["y ~ x + (1 | g)"], 1,
         "study.csv: permission denied (the file is not readable)", STUDY_FILES, setup=_NO_PERMISSION,
         shown='chmod 000 study.csv; mixcli fit study.csv "y ~ x + (1 | g)"'),
    Case("File", "DATA is a directory", ["fit", "data", "y ~ x + (1 | g)"], 1,
         "data: is a directory, not a data file", {"data/study.csv": STUDY}),
    Case("File", "the file is empty", FIT + ["y ~ x + (1 | g)"], 1, "study.csv: the file is empty",
         {"study.csv": ""}),
    Case("File", "only a header line", FIT + ["y ~ x + (1 | g)"], 1, "study.csv: has a header but no data rows",
         {"study.csv": "y,x,g\n"}),
    Case("File", "a row with too few fields", FIT + ["y ~ x + (1 | g)"], 1,
         "study.csv: line 4 has 2 fields but the header has 3",
         {"study.csv": "y,x,g\n1,2,a\n2,3,b\n4,5\n"}),
    Case("File", "a binary file", ["fit", "study.rds", "y ~ x + (1 | g)"], 1,
         "study.rds: does not look like a text file (it contains binary data)",
         {"study.rds": b"X\n\x00\x00\x00\x03\x00\x04\x02\x01\x00\x03\x05\x00\x00\x00\x00\x05UTF-8"}),
    Case("File", "an Excel workbook", ["fit", "study.xlsx", "y ~ x + (1 | g)"], 1,
         "study.xlsx: this is a ZIP archive (an Excel .xlsx workbook?), not a CSV file; export it as CSV",
         {"study.xlsx": b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00"}),
    Case("File", "semicolons, not commas (one column found)", FIT + ["y ~ x + (1 | g)"], 1,
         "study.csv: found a single column 'y;x;z;g;f;site;id;x100;income;dose;one' using separator ',', "
         "but the header contains ';'; try --sep ';'",
         {"study.csv": csv_text(ROWS, sep=";")}),
    Case("File", "two columns with the same name", FIT + ["y ~ x + (1 | g)"], 1,
         "study.csv: duplicate column name 'x' in the header", {"study.csv": "y,x,x,g\n1,2,3,a\n"}),
    Case("File", "a quote that is never closed", FIT + ["y ~ x + (1 | g)"], 1,
         "study.csv: a quoted field in column 'g' starting on line 3 is never closed",
         {"study.csv": 'y,x,g\n1,2,a\n2,3,"b\n4,5,c\n'}),
    Case("File", "saved as UTF-16", FIT + ["y ~ x + (1 | g)"], 1,
         "study.csv: the file is UTF-16 encoded; save it as UTF-8 (CSV UTF-8 in Excel)",
         {"study.csv": STUDY.encode("utf-16")}),
    Case("File", "a UTF-8 byte-order mark (Excel's CSV UTF-8)", FIT + ["y ~ x + (1 | g)", "--format", "csv"], 0, "",
         {"study.csv": b"\xef\xbb\xbf" + STUDY.encode()}, kind="ok"),
    Case("File", "Windows-1252 text (not UTF-8)", FIT + ["y ~ x + (1 | g)", "--format", "csv"], 0,
         "study.csv: not valid UTF-8; read as Windows-1252 (Latin-1)",
         {"study.csv": csv_text(ROWS, transform=lambda i, r: r.update(g=f"\u00e9cole{r['g']}")).encode("cp1252")},
         kind="warning"),
    # -- formulas ---------------------------------------------------------------------------
    Case("Formula", "no '~'", FIT + ["y x + (1 | g)"], 2,
         "no '~' in formula: y x + (1 | g); write the response, then '~', then the terms, as in y ~ x + (1 | g)",
         STUDY_FILES),
    Case("Formula", "nothing after '~'", FIT + ["y ~ "], 2, "empty right-hand side: nothing after '~'", STUDY_FILES),
    Case("Formula", "nothing before '~'", FIT + ["~ x + (1 | g)"], 2, "missing response before '~'", STUDY_FILES),
    Case("Formula", "a '(' never closed", FIT + ["y ~ x + (1 | g"], 2,
         "unclosed '(' at column 9 in formula: y ~ x + (1 | g", STUDY_FILES),
    Case("Formula", "one ')' too many", FIT + ["y ~ x + (1 | g))"], 2,
         "unexpected ')' at column 16 in formula: y ~ x + (1 | g))", STUDY_FILES),
    Case("Formula", "a quote never closed", FIT + ['y ~ x + (1 | g) + "z'], 2,
         "unclosed string: no closing \" at column 19", STUDY_FILES),
    Case("Formula", "a bar term outside parentheses", FIT + ["y ~ x + 1 | g"], 2,
         "'|' must be inside parentheses, as in (1 | group) at column 11", STUDY_FILES),
    Case("Formula", "'||' outside parentheses", FIT + ["y ~ x || g"], 2,
         "'||' must be inside parentheses, as in (1 || group) at column 7", STUDY_FILES),
    Case("Formula", "a bar inside a bar", FIT + ["y ~ x + (1 | g || f)"], 2,
         "random-effects term inside another random-effects term at column 12", STUDY_FILES),
    Case("Formula", "ar1() on a term that is not a factor of occasions", FIT + ["y ~ x + ar1(x | g)"], 2,
         "ar1(x | g): ar1 needs the occasions as one factor without an intercept, as in ar1(0 + factor(time) | id) "
         "(its levels in time order) at column 9", STUDY_FILES),
    Case("Formula", "cs() with one effect", FIT + ["y ~ x + cs(1 | g)"], 2,
         "cs(1 | g) has one effect, so no correlation: write (... | g) for its variance, or give cs() several "
         "effects, as in cs(0 + factor(time) | id) at column 9", STUDY_FILES),
    Case("Formula", "a structured covariance in a GLMM", FIT + ["y ~ x + ar1(0 + f | g)", "--family", "poisson"], 2,
         "ar1(0 + f | g): structured covariances (diag, cs, ar1) are fitted in linear mixed models only, not yet "
         "with a family at column 9", STUDY_FILES),
    Case("Formula", "'/' with nothing after it", FIT + ["y ~ x + (1 | g/)"], 2,
         "unexpected ')': '/' needs a term after it at column 16", STUDY_FILES),
    Case("Formula", "a random term combined with '/'", FIT + ["y ~ x / (1 | g)"], 2,
         "a random-effects term can only be added to the model with '+' at column 9", STUDY_FILES),
    Case("Formula", "an unknown function", FIT + ["y ~ lag(x) + (1 | g)"], 2,
         "unknown function 'lag'; supported: abs, as.factor, as.numeric, bs, C, cbind, exp, factor, I, log, log10, "
         "log2, ns, offset, poly, scale, sqrt at column 5", STUDY_FILES),
    Case("Formula", "poly() without a degree", FIT + ["y ~ poly(x) + (1 | g)"], 2,
         "poly() needs a degree, as in poly(x, 2) or poly(x, 2, raw = TRUE) at column 5", STUDY_FILES),
    Case("Formula", "a polynomial of degree 0", FIT + ["y ~ poly(x, 0) + (1 | g)"], 2,
         "poly(): degree must be a whole number of at least 1, not 0; as in poly(x, 2) or poly(x, 2, raw = TRUE) "
         "at column 13", STUDY_FILES),
    Case("Formula", "a text column in poly()", FIT + ["y ~ poly(f, 2) + (1 | g)"], 2,
         "column 'f' is text, not numbers, so it cannot be used in arithmetic or a function at column 10",
         STUDY_FILES),
    Case("Data", "a degree beyond the distinct values", FIT + ["y ~ poly(one, 2) + (1 | g)"], 1,
         "poly(one, 2): 'degree' must be less than number of unique points", STUDY_FILES),
    Case("Formula", "a natural spline with no degrees of freedom", FIT + ["y ~ ns(x, df = 0) + (1 | g)"], 2,
         "ns(): df must be a whole number of at least 1, not 0; as in ns(x, df = 3) at column 16", STUDY_FILES),
    Case("Formula", "unknown contrasts", FIT + ["y ~ C(f, nonsense) + (1 | g)"], 2,
         "C(): unknown contrasts 'nonsense'; use sum, helmert or treatment, as in C(f, sum) at column 10",
         STUDY_FILES),
    Case("Data", "a response that does not vary within the groups", FIT + ["site ~ x + (1 | g)"], 1,
         "the response 'site' does not vary within the levels of g: the g effects reproduce it exactly and no "
         "residual variation is left; model the group values instead (one row per g)", STUDY_FILES),
    Case("Data", "factor() of a column with one value", FIT + ["y ~ factor(one) + (1 | g)"], 1,
         "factor(one) has one value ('1') in the rows used; a factor needs at least two levels; remove it from "
         "the formula (a factor of one level has no contrasts)", STUDY_FILES),
    Case("Data", "a dispformula factor with a level of one observation",
         FIT + ["y ~ x + (1 | g)", "--dispformula", "~ f"], 1,
         "the dispformula's factor 'f' has the level 'c' with one observation: a residual SD cannot be estimated "
         "from one residual; merge it with another level or drop the row",
         {"study.csv": csv_text(ROWS, transform=_set(0, "f", "c"))}),
    Case("Usage", "a dispformula that is not one factor", FIT + ["y ~ x + (1 | g)", "--dispformula", "~ f + x"], 2,
         "--dispformula '~ f + x': write one factor, as in \"~ group\" (a residual SD for each of its levels)",
         STUDY_FILES),
    Case("Data", "weights from a column not in the data", FIT + ["y ~ x + (1 | g)", "--weights", "wt"], 1,
         "--weights: no column 'wt' in the data", STUDY_FILES),
    Case("Data", "a negative weight", FIT + ["y ~ x + (1 | g)", "--weights", "z"], 1,
         "the weights 'z' have a negative value", STUDY_FILES),
    Case("Data", "F tests of a model with nothing to test", ["anova", "study.csv", "y ~ 1 + (1 | g)"], 2,
         "nothing to test: 'y ~ 1 + (1 | g)' has no fixed-effect terms beyond the intercept", STUDY_FILES),
    Case("Data", "an F test of a term aliased with another",
         ["anova", "study.csv", "y ~ x + x100 + (1 | g)", "--format", "csv"], 0,
         "fixed-effect model matrix is rank deficient so dropping 1 column / coefficient (x100)", STUDY_FILES,
         kind="warning", more_warnings=True),
    Case("Data", "Kenward-Roger on a model too big for it", FIT + ["y ~ x + (x | g)", "--ddf", "kr"], 2,
         "--ddf kr: Kenward-Roger would need about", STUDY_FILES,
         setup="import mixcli.inference.kenward_roger as _kr\n_kr.kenward_roger.__defaults__ = (2e4, 300)",
         note="here with its memory limit lowered to 20 kB, to show the message without a huge file"),
    Case("Data", "--newdata without a column the formula needs",
         ["predict", "study.csv", "y ~ x + z + (1 | g)", "--newdata", "new.csv"], 1,
         "--newdata has no column 'z', which the formula's fixed effects need",
         {**STUDY_FILES, "new.csv": "x,g\n0.5,s01\n"}),
    Case("Data", "--newdata with a level the fixed effects never saw",
         ["predict", "study.csv", "y ~ x + f + (1 | g)", "--newdata", "new.csv"], 1,
         "--newdata row 2: 'fc' is a factor level the model was not fitted with",
         {**STUDY_FILES, "new.csv": "x,f,g\n0.5,a,s01\n0.1,c,s02\n"}),
    Case("Data", "--newdata with text where the data had numbers",
         ["predict", "study.csv", "y ~ x + (1 | g)", "--newdata", "new.csv"], 1,
         "column 'x' holds numbers in the fitted data but text in the new rows ('high' in new row 2); the new rows "
         "must be coded as the fitted ones", {**STUDY_FILES, "new.csv": "x,g\n0.5,s01\nhigh,s02\n"}),
    Case("Usage", "--level without --interval in predict",
         ["predict", "study.csv", "y ~ x + (1 | g)", "--newdata", "study.csv", "--level", "0.9"], 2,
         "--level sets the coverage of a prediction interval: add --interval prediction (see 'mixcli predict --help')",
         STUDY_FILES),
    Case("Usage", "a prediction interval of a weighted fit",
         ["predict", "study.csv", "y ~ x + (1 | g)", "--newdata", "new.csv", "--weights", "site", "--interval",
          "prediction"], 2,
         "no prediction interval for a fit with prior weights: a new row's residual variance would be "
         "sigma^2/weight, and the new rows have no weights", {**STUDY_FILES, "new.csv": "x,g\n0.5,s01\n"}),
    Case("Data", "--se next to a conditional prediction",
         ["predict", "study.csv", "y ~ x + (1 | g)", "--newdata", "new.csv", "--se"], 0,
         "se is the standard error of the fixed part X*beta only", {**STUDY_FILES, "new.csv": "x,g\n0.5,s01\n"},
         kind="warning"),
    Case("Data", "emmeans --specs of a term not in the model",
         ["emmeans", "study.csv", "y ~ x + f + (1 | g)", "--specs", "z"], 1,
         "--specs 'z' is not a variable of the model's fixed effects (they are: x, f)", STUDY_FILES),
    Case("Data", "emmeans --at for a column the model does not use",
         ["emmeans", "study.csv", "y ~ x + f + (1 | g)", "--specs", "f", "--at", "dose=1"], 1,
         "--at names 'dose', which is not a variable of the model's fixed effects (they are: x, f)", STUDY_FILES),
    Case("Data", "emmeans --at with a level the factor does not have",
         ["emmeans", "study.csv", "y ~ x + f + (1 | g)", "--specs", "f", "--at", "f=c"], 1,
         "--at f=c: 'c' is not a level of f (its levels: a, b)", STUDY_FILES),
    Case("Usage", "emmeans --type response for a linear mixed model",
         ["emmeans", "study.csv", "y ~ x + f + (1 | g)", "--specs", "f", "--type", "response"], 2,
         "--type response back-transforms a GLMM's means from its link scale; a linear mixed model's means are "
         "already on the response scale: leave it out", STUDY_FILES),
    Case("Usage", "emmeans --adjust without contrasts",
         ["emmeans", "study.csv", "y ~ x + f + (1 | g)", "--specs", "f", "--adjust", "holm"], 2,
         "--adjust adjusts the p-values of contrasts: add --contrast pairwise", STUDY_FILES),
    Case("Usage", "emmeans joint tests with a nested factor",
         ["emmeans", "nested.csv", "y ~ region + clinic + (1 | g)", "--specs", "region", "--joint"], 2,
         "joint tests with nested factors (clinic %in% region) are not supported yet: leave out the joint tests",
         {"nested.csv": NESTED}),
    Case("Data", "emmeans of a factor that interacts with another variable",
         ["emmeans", "study.csv", "y ~ x * f + (1 | g)", "--specs", "f", "--format", "csv"], 0,
         "results may be misleading: f interacts with x in the model", STUDY_FILES, kind="warning"),
    # saved fits (fit --save, --model): the files are written by the library in the case's setup
    Case("File", "--model of a file that is not a saved fit",
         ["predict", "--model", "study.csv", "--newdata", "study.csv"], 1,
         "study.csv: not a mixcli saved fit; write one by saving a fit (--save)", STUDY_FILES),
    Case("File", "--model of a saved fit from another schema version",
         ["predict", "--model", "old.mixfit", "--newdata", "study.csv"], 1,
         "old.mixfit: a saved fit of schema version 1; this mixcli reads version 2: fit the model again from its "
         "data and save it with this mixcli", STUDY_FILES,
         setup=_saved("_s.SCHEMA -= 1", ("old.mixfit", "y ~ x + (1 | g)", True), "_s.SCHEMA += 1"),
         note="a file saved by a mixcli of schema version 1"),
    Case("File", "--model of an archive holding Python objects",
         ["predict", "--model", "evil.mixfit", "--newdata", "study.csv"], 1,
         "evil.mixfit: holds Python objects, which a mixcli saved fit never does; refusing to load it",
         STUDY_FILES, setup="import numpy as _np\n_np.savez(open('evil.mixfit', 'wb'), header=_np.array([{}]))",
         note="an .npz with a pickled object array"),
    Case("Usage", "--model next to DATA and FORMULA",
         ["predict", "study.csv", "y ~ x + (1 | g)", "--model", "m.mixfit", "--newdata", "study.csv"], 2,
         "--model replaces DATA and FORMULA: give either a saved fit or the data and formula", STUDY_FILES),
    Case("Usage", "fit --save with several formulas",
         FIT + ["y ~ x + (1 | g)", "y ~ x + (x | g)", "--save", "m.mixfit"], 2,
         "--save writes one fit: give one formula", STUDY_FILES, leaves_no=("m.mixfit",)),
    Case("Data", "compare of saved fits of different data",
         ["compare", "--model", "a.mixfit", "--model", "b.mixfit"], 1,
         "b.mixfit (m2) is a fit of other data than a.mixfit (m1): compare fits of one data set", STUDY_FILES,
         setup=_saved(("a.mixfit", "y ~ x + (1 | g)", False), ("b.mixfit", "y ~ x + (x | g)", False, 200)),
         note="b.mixfit fitted to the first 200 rows"),
    Case("Usage", "compare of saved REML fits",
         ["compare", "--model", "a.mixfit", "--model", "b.mixfit"], 2,
         "a.mixfit (m1) is a REML fit; a comparison refits by ML, which a saved fit cannot: save ML fits (--ml), or "
         "compare REML fits of the same fixed effects with --no-refit", STUDY_FILES,
         setup=_saved(("a.mixfit", "y ~ x + (1 | g)", True), ("b.mixfit", "y ~ x + (x | g)", True)),
         note="both saved by fit --save (REML)"),
    Case("Usage", "emmeans --ddf kr of a saved fit",
         ["emmeans", "--model", "m.mixfit", "--specs", "f", "--ddf", "kr"], 2,
         "Kenward-Roger df need the fit's rows, which a saved fit does not keep: use satterthwaite, or fit the "
         "model from its data", STUDY_FILES, setup=_saved(("m.mixfit", "y ~ x + f + (1 | g)", True)),
         note="m.mixfit saved by fit --save"),
    Case("Usage", "a prediction interval from a fit saved without conditional variances",
         ["predict", "--model", "m.mixfit", "--newdata", "study.csv", "--interval", "prediction"], 2,
         "m.mixfit was saved without the random effects' conditional variances, which this needs: save the fit "
         "again with --cond-var", STUDY_FILES, setup=_saved(("m.mixfit", "y ~ x + (1 | g)", True)),
         note="m.mixfit saved by fit --save, without --cond-var"),
    Case("Usage", "a residual plot of a saved fit",
         ["plot", "--model", "m.mixfit", "--kind", "resid", "-o", "resid.png"], 2,
         "--kind resid needs the fit's rows, which a saved fit (--model) does not keep: give DATA FORMULA instead, "
         "or use --kind ranef", STUDY_FILES, leaves_no=("resid.png",)),
    Case("Usage", "an emmeans plot without --specs",
         ["plot", "study.csv", "y ~ x + f + (1 | g)", "--kind", "emmeans", "-o", "emm.png"], 2,
         "--kind emmeans draws the means of --specs: add --specs FACTOR", STUDY_FILES, leaves_no=("emm.png",)),
    Case("Usage", "--specs on a plot of another kind",
         ["plot", "study.csv", "y ~ x + f + (1 | g)", "--kind", "ranef", "--specs", "f", "-o", "ranef.png"], 2,
         "--specs, --by and --at are options of --kind emmeans", STUDY_FILES, leaves_no=("ranef.png",)),
    Case("Usage", "a plot into a folder that does not exist",
         ["plot", "study.csv", "y ~ x + (1 | g)", "--kind", "resid", "-o", "plots/resid.png"], 2,
         "plot: folder plots does not exist for plots/resid.png; create it first", STUDY_FILES,
         leaves_no=("plots",)),
    Case("Usage", "bootstrap intervals from no refits", FIT + ["y ~ x + (1 | g)", "--ci", "boot", "--nsim", "0"], 2,
         "invalid value for '--nsim': 0 is not in the range x>=1", STUDY_FILES),
    Case("Usage", "an unknown kind of plot", ["plot", "study.csv", "y ~ x + (1 | g)", "--kind", "pie", "-o", "p.png"],
         2, "invalid value for '--kind': 'pie' is not one of 'ranef', 'resid', 'qq', 'profile', 'emmeans'", STUDY_FILES,
         leaves_no=("p.png",)),
    Case("Data", "reduce from a model that cannot be fitted", ["reduce", "study.csv", "one ~ x + (1 | g)"], 1,
         "the response 'one' has the same value (1) in all 240 rows used", STUDY_FILES),
    Case("Formula", "a misspelt column", FIT + ["y ~ xx + (1 | g)"], 2,
         "no column 'xx' in the data (did you mean 'x'?) at column 5", STUDY_FILES),
    Case("Formula", "a random slope for a column not in the data", FIT + ["y ~ x + (zz | g)"], 2,
         "no column 'zz' in the data (did you mean 'z'?) at column 10", STUDY_FILES),
    Case("Formula", "no random-effects term", FIT + ["y ~ x"], 2,
         "no random-effects terms; add one such as (1 | group)", STUDY_FILES),
    Case("Formula", "a text column inside a function", FIT + ["y ~ log(f) + (1 | g)"], 2,
         "column 'f' is text, not numbers, so it cannot be used in arithmetic or a function at column 9",
         STUDY_FILES),
    Case("Formula", "a numeric grouping column with non-integer values", FIT + ["y ~ x + (1 | site)", "--format", "csv"],
         0, "grouping factor 'site' has non-integer values; it is treated as categorical with 30 levels",
         STUDY_FILES, kind="warning"),
    Case("Formula", "a repeated fixed term", FIT + ["y ~ x + x + (1 | g)", "--format", "csv"], 0, "", STUDY_FILES,
         kind="ok", note="fits y ~ x + (1 | g): R's terms() drops the repeat"),
    Case("Formula", "a repeated random term", FIT + ["y ~ x + (1 | g) + (1 | g)", "--format", "csv"], 0,
         "the random effect (Intercept) for g appears twice ((1 | g) is repeated): as in lme4 both are fitted, "
         "but only the sum of their variances is identified; remove one", STUDY_FILES, kind="warning"),
    Case("Formula", "an effect in two terms", FIT + ["y ~ x + (x || g) + (1 | g)", "--format", "csv"], 0,
         "the random effect (Intercept) for g is in both (x || g) and (1 | g)", STUDY_FILES, kind="warning"),
    # -- data -------------------------------------------------------------------------------
    Case("Data", "a non-numeric value in the response", FIT + ["y ~ x + (1 | g)"], 1,
         "the response 'y' is not numeric: line 6 has 'n/a' (1 non-numeric value); "
         "missing values must be empty fields or NA",
         {"study.csv": csv_text(ROWS, transform=_set(4, "y", "n/a"))}),
    Case("Data", "a text column as the response", FIT + ["f ~ x + (1 | g)"], 1,
         "the response 'f' is not numeric: line 2 has 'a'", STUDY_FILES),
    Case("Data", "a response with no variance", FIT + ["one ~ x + (1 | g)"], 1,
         "the response 'one' has the same value (1) in all 240 rows used, so there is no variation to model",
         STUDY_FILES),
    Case("Data", "a response that is a predictor in disguise", FIT + ["x100 ~ x + (1 | g)"], 1,
         "the fixed effects ((Intercept), x) fit the response 'x100' exactly", STUDY_FILES),
    Case("Data", "every row has a missing value", FIT + ["y ~ x + (1 | g)"], 1,
         "no rows left: each of the 240 rows has a missing value in a variable of the formula "
         "(y: 120 missing, x: 120 missing)",
         {"study.csv": csv_text(ROWS, transform=_every_other_missing)}),
    Case("Data", "a grouping factor with one level", FIT + ["y ~ x + (1 | one)"], 1,
         "grouping factors must have > 1 sampled level (problems: one): one has the single value '1'", STUDY_FILES),
    Case("Data", "a grouping factor with a level per observation", FIT + ["y ~ x + (1 | id)"], 1,
         "number of levels of each grouping factor must be < number of observations (problems: id)", STUDY_FILES),
    Case("Data", "more random effects than observations", ["fit", "small.csv", "y ~ x + (x + z | g)"], 1,
         "number of observations (=12) <= number of random effects (=12) for term ((Intercept) + x + z | g)",
         {"small.csv": csv_text(ROWS[:12], columns=["y", "x", "z", "g"],
                                transform=lambda i, r: r.update(g=f"s{i // 3}"))}),
    Case("Data", "aliased fixed effects (x in m and in cm)", FIT + ["y ~ x + x100 + (1 | g)", "--format", "csv"], 0,
         "fixed-effect model matrix is rank deficient so dropping 1 column / coefficient (x100)", STUDY_FILES,
         kind="warning"),
    Case("Data", "an infinite value", FIT + ["y ~ x + (1 | g)"], 1,
         "the fixed-effect column 'x' has the value Inf on line 9; infinite values cannot be fitted",
         {"study.csv": csv_text(ROWS, transform=_set(7, "x", "inf"))}),
    Case("Data", "predictors on very different scales", FIT + ["y ~ x + income + dose + (1 | g)", "--format", "csv"],
         0, "some predictor variables are on very different scales: consider rescaling (SD of income 9.69e+10, "
         "of dose 0.000447)", STUDY_FILES,
         kind="warning"),
    Case("Data", "values too large for double precision", FIT + ["y ~ x + (1 | g)"], 1,
         "the fixed-effect column 'x' has values too large to fit in double precision (largest 1e+300)",
         {"study.csv": csv_text(ROWS, transform=_set(0, "x", "1e300"))}),
    Case("Data", "a typo in a number column", FIT + ["y ~ x + z + (1 | g)", "--format", "csv"], 0,
         "column 'z' is numbers except for 1 cell ('five' on line 8), so it is read as text and fitted as a factor, "
         "one coefficient per value: if it is missing, leave the cell empty or write NA; if a typo, correct it; "
         "if z is categorical, write factor(z) to say so",
         {"study.csv": csv_text(ROWS, transform=_set(6, "z", "five"))}, kind="warning", more_warnings=True),
    Case("Data", "a typo in a random slope's number column", FIT + ["y ~ x + (1 + z | g)"], 1,
         "number of observations (=240) <= number of random effects (=5370) for term ((Intercept) + z-0.03 + "
         "z-0.04 + z-0.05 + z-0.06 + … (179 columns) | g); the random-effects parameters and the residual "
         "variance are probably unidentifiable; column 'z' is numbers except for 1 cell ('five' on line 8)",
         {"study.csv": csv_text(ROWS, transform=_set(6, "z", "five"))}),
    Case("Data", "a text column in '||'", FIT + ["y ~ x + (f || g)", "--format", "csv"], 0,
         "(f || g): f is a factor (text column), so '||' does not make its effects uncorrelated", STUDY_FILES,
         kind="warning"),
    # -- fitting ----------------------------------------------------------------------------
    Case("Fit", "the optimiser reaches its evaluation limit", FIT + ["y ~ x + (x | g)", "--format", "csv",
                                                                 "--control", "max_eval=5"], 0,
         "the optimiser stopped after 5 evaluations without converging; try a simpler random-effects structure "
         "or rescaling predictors", STUDY_FILES, kind="warning",
         more_warnings=True),
    Case("Fit", "the criterion is never finite", FIT + ["y ~ x + (x | g)", "--format", "csv"], 0,
         "the criterion was not finite at any of the", STUDY_FILES, kind="warning",
         setup=_NAN_CRITERION, note="with a criterion that is always NaN", more_warnings=True),
    Case("Fit", "a response the random effects reproduce exactly (no likelihood maximum)",
         ["fit", "exact.csv", "y ~ x + (x | g)", "--format", "csv"], 0,
         "the criterion decreases without end as the random-effect variances grow and the residual variance shrinks "
         "to 0: the random effects can reproduce the response (2 fixed and 4 random effects for 16 observations), so "
         "the likelihood has no maximum; the estimates are where the optimiser stopped, not an optimum: simplify the "
         "random effects", {"exact.csv": "y,x,g\n" + "".join(
             f"{a + b * x:g},{x:g},{g}\n" for a, b, g, xs in ((1, 2, "g0", (-2, -1, 0, 1, 2, 3, -1.5, 0.5)),
                                                             (-1, 0.5, "g1", (-1, 0, 1, 2, -2, 2.5, 0.5, 1.5)))
             for x in xs)},
         kind="warning", more_warnings=True),
    # -- generalized linear mixed models ----------------------------------------------------------
    Case("GLMM", "a binomial response that is not 0/1", GLMM + ["count ~ x + (1 | g)", "--family", "binomial"], 1,
         "the response 'count' has the value 3, but a binomial response is 0/1, cbind(successes, failures), or "
         "a proportion with the number of trials as --weights", TRIAL_FILES),
    Case("GLMM", "a negative count", GLMM + ["count ~ x + (1 | g)", "--family", "poisson"], 1,
         "the response 'count' has a negative value (-1); poisson counts must be non-negative",
         {"trials.csv": csv_text(trial_rows(), transform=_set(4, "count", "-1"))}),
    Case("GLMM", "non-integer counts", GLMM + ["half ~ x + (1 | g)", "--family", "poisson", "--format", "csv"], 0,
         "the response 'half' has non-integer values: a poisson model is for counts (fitted anyway, as glmer does)",
         TRIAL_FILES, kind="warning", more_warnings=True),
    Case("GLMM", "cbind() with a negative part",
         GLMM + ["cbind(pass, count - 3) ~ x + (1 | g)", "--family", "binomial"], 1,
         "cbind(): count - 3 has a negative value (-2); cbind(successes, failures) needs non-negative counts",
         TRIAL_FILES),
    Case("GLMM", "a link of another family", GLMM + ["pass ~ x + (1 | g)", "--family", "poisson", "--link", "logit"],
         2, "--link logit does not belong to the poisson family; use one of: log, sqrt, identity", TRIAL_FILES),
    Case("GLMM", "a negative count for the negative binomial", GLMM + ["count ~ x + (1 | g)", "--family", "nbinom2"], 1,
         "the response 'count' has a negative value (-1); nbinom2 counts must be non-negative",
         {"trials.csv": csv_text(trial_rows(), transform=_set(4, "count", "-1"))}),
    Case("GLMM", "a categorical response for the negative binomial",
         GLMM + ["factor(passed) ~ x + (1 | g)", "--family", "negbin"], 1,
         "the response 'factor(passed)' is categorical; an nbinom2 model needs counts", TRIAL_FILES),
    Case("GLMM", "non-integer counts for the negative binomial",
         GLMM + ["half ~ x + (1 | g)", "--family", "nbinom2", "--format", "csv"], 0,
         "the response 'half' has non-integer values: an nbinom2 model is for counts (fitted anyway, as glmer does)",
         TRIAL_FILES, kind="warning", more_warnings=True),
    Case("GLMM", "a Gamma response with zeros", GLMM + ["count ~ x + (1 | g)", "--family", "Gamma"], 1,
         "the response 'count' has the value 0; a Gamma model needs positive values (for counts with zeros use "
         "the poisson or nbinom2 family)", TRIAL_FILES),
    Case("GLMM", "a Gamma response with a negative value", GLMM + ["days ~ x + (1 | g)", "--family", "Gamma"], 1,
         "the response 'days' has the value -2.5; a Gamma model needs positive values (for counts with zeros use "
         "the poisson or nbinom2 family)",
         {"trials.csv": csv_text(trial_rows(), transform=_set(3, "days", "-2.5"))}),
    Case("GLMM", "a link the Gamma family does not have",
         GLMM + ["days ~ x + (1 | g)", "--family", "Gamma", "--link", "logit"], 2,
         "--link logit does not belong to the Gamma family; use one of: inverse, log, identity", TRIAL_FILES),
    Case("GLMM", "the ICC and R² of a count GLMM with the identity link",
         GLMM + ["count ~ x + (1 | g)", "--family", "poisson", "--link", "identity", "--r2", "--format", "csv"], 0,
         "no ICC or R² for a poisson GLMM with the identity link: its distribution-specific variance is defined for "
         "the log and sqrt links only (performance and insight give NA)", TRIAL_FILES, kind="warning",
         more_warnings=True),
    Case("GLMM", "the ICC and R² of an nbinom1 GLMM with the sqrt link",
         GLMM + ["count ~ x + (1 | g)", "--family", "nbinom1", "--link", "sqrt", "--r2", "--format", "csv"], 0,
         "no ICC or R² for an nbinom1 GLMM with the sqrt link: mixcli computes them with the log link, where they are "
         "checked against performance's", TRIAL_FILES, kind="warning", more_warnings=True),
    Case("GLMM", "quadrature for the negative binomial",
         GLMM + ["count ~ x + (1 | g)", "--family", "nbinom2", "--nagq", "9"], 2,
         "--nagq 9: the nbinom2 family is fitted by the Laplace approximation only; use --nagq 1", TRIAL_FILES),
    Case("GLMM", "the first stage alone for the negative binomial",
         GLMM + ["count ~ x + (1 | g)", "--family", "nbinom2", "--nagq", "0"], 2,
         "--nagq 0: the nbinom2 family's dispersion k is estimated with the Laplace approximation; use --nagq 1",
         TRIAL_FILES),
    Case("GLMM", "a negative count for NB1", GLMM + ["count ~ x + (1 | g)", "--family", "nbinom1"], 1,
         "the response 'count' has a negative value (-1); nbinom1 counts must be non-negative",
         {"trials.csv": csv_text(trial_rows(), transform=_set(4, "count", "-1"))}),
    Case("GLMM", "non-integer counts for NB1",
         GLMM + ["half ~ x + (1 | g)", "--family", "nbinom1", "--format", "csv"], 0,
         "the response 'half' has non-integer values: an nbinom1 model is for counts (fitted anyway, as glmmTMB "
         "does)",
         TRIAL_FILES, kind="warning", more_warnings=True),
    Case("GLMM", "quadrature for NB1",
         GLMM + ["count ~ x + (1 | g)", "--family", "nbinom1", "--nagq", "9"], 2,
         "--nagq 9: the nbinom1 family is fitted by the Laplace approximation only; use --nagq 1", TRIAL_FILES),
    Case("GLMM", "the first stage alone for NB1",
         GLMM + ["count ~ x + (1 | g)", "--family", "nbinom1", "--nagq", "0"], 2,
         "--nagq 0: the nbinom1 family's dispersion φ is estimated with the Laplace approximation; use --nagq 1",
         TRIAL_FILES),
    Case("GLMM", "profile intervals of a Gamma GLMM",
         GLMM + ["days ~ x + (1 | g)", "--family", "Gamma", "--ci", "profile"], 2,
         "profile intervals of a Gamma GLMM: its scale σ is not a parameter of glmer's criterion, which lme4 refuses "
         "to profile, and the random effects' profiles would miss the σ of their SDs; use Wald intervals (--ci 0.95) "
         "for the fixed effects", TRIAL_FILES),
    Case("GLMM", "bootstrap intervals of a Gamma GLMM",
         GLMM + ["days ~ x + (1 | g)", "--family", "Gamma", "--ci", "boot", "--nsim", "5"], 2,
         "the parametric bootstrap simulates binomial, Poisson, nbinom2 and nbinom1 GLMMs; not Gamma, whose only "
         "reference (lme4's simulate) draws the random effects without the σ of the fit; for a Gamma fit use Wald "
         "intervals, or the likelihood-ratio test without the bootstrap", TRIAL_FILES),
    Case("GLMM", "an outcome that never happens", GLMM + ["pass ~ x + (1 | g)", "--family", "binomial"], 1,
         "the response 'pass' is 0 (failure) in every row used; a binomial model needs both outcomes",
         {"trials.csv": csv_text(trial_rows(), transform=lambda i, row: row.update({"pass": 0}))}),
    Case("GLMM", "complete separation", GLMM + ["pass ~ x + sep + (1 | g)", "--family", "binomial", "--format",
                                                "csv"], 0,
         "fitted probabilities numerically 0 or 1: the estimate for sep runs away (it moves η by more than 15 on "
         "the link scale across the data, with a standard error as large), a sign of complete separation; drop or "
         "recode it", TRIAL_FILES, kind="warning", more_warnings=True),
    Case("GLMM", "a likelihood that is flat or saddle-shaped at the estimate",
         GLMM + ["pass ~ x + (1 | g)", "--family", "binomial", "--format", "csv"], 0,
         "the Hessian of the deviance in (θ, β) has 1 negative eigenvalue(s) (-1): the estimate is not a minimum "
         "(a saddle or a flat likelihood); the estimates and standard errors are unreliable: simplify the model",
         TRIAL_FILES, kind="warning", more_warnings=True,
         setup="import mixcli.glmm as _g; _g.negative_curvature = lambda h, tol: [-1.0]",
         note="with a Hessian made to have a negative eigenvalue"),
    Case("GLMM", "an optimiser that stopped short of the maximum likelihood",
         GLMM + ["pass ~ x + (1 | g)", "--family", "binomial", "--format", "csv"], 0,
         "the gradient of the deviance is not zero at the estimate (a Newton step would lower it by about 0.5): the "
         "optimiser stopped short of the maximum likelihood; the estimates and standard errors may be off",
         TRIAL_FILES, kind="warning",
         setup="import mixcli.glmm as _g; _g._decrement = lambda hb, free: 1.0\n"
               "_g.GlmmModel._newton_step = lambda self, *a: None",
         note="with Newton's steps made to fail where the gradient says the optimum is farther"),
    Case("GLMM", "standard errors from R_X (the Hessian cannot be inverted)",
         GLMM + ["pass ~ x + (1 | g)", "--family", "binomial", "--format", "csv"], 0,
         "the Hessian of the deviance in (θ, β) is not positive definite at the estimate (a flat or degenerate "
         "likelihood: a variance at or near its bound, or separation): the standard errors come from R_X, β's "
         "curvature with θ held fixed, and may be too small", TRIAL_FILES, kind="warning",
         setup="import mixcli.glmm as _g; _g.vcov_from_hessian = lambda hb, k: None",
         note="with a Hessian made singular"),
    Case("GLMM", "groups whose outcomes are all alike (the group SD runs away)",
         GLMM + ["pass ~ x + (1 | g)", "--family", "binomial", "--format", "csv"], 0,
         "fitted probabilities numerically 0 or 1 within groups: the random effects reach |η| > 15 on the link "
         "scale, or their SD does (the SD of g runs away: groups whose outcomes are all alike); the estimates and "
         "standard errors are unreliable: simplify the random effects or pool the groups", TRIAL_FILES, kind="warning",
         more_warnings=True,
         setup="import numpy as _np, mixcli.glmm as _g; _g._random_parts = lambda st, m, scale=1.0: [_np.full(3, 20.0)]",
         note="with the random part of η made 20"),
    Case("GLMM", "outcomes predicted with certainty (quasi-separation)",
         ["fit", "quasi.csv", "b ~ x + (1 | g)", "--family", "binomial", "--format", "csv",
          "--control", "separation=1e9"], 0,
         "fitted probabilities numerically 0 or 1 occurred (as glm() warns): some outcomes are predicted with "
         "certainty, a sign of quasi-separation by a combination of predictors; the estimates and standard "
         "errors are unreliable", {"quasi.csv": _QUASI}, kind="warning", more_warnings=True,
         note="with the measures of η (x runs away there, and is named) turned off: glm.fit's rule is their backstop"),
    Case("GLMM", "a likelihood that cannot be computed past the first stage",
         ["fit", "sep4.csv", "b ~ x:f + offset(x) + (x | g)", "--family", "binomial"], 1,
         "the likelihood with --nagq 1 could not be computed at any of the 54 parameter values tried from the first "
         "stage's estimate (PIRLS failed at every one; the first stage predicted every outcome exactly: "
         "separation): simplify the model, or check the data for separation and extreme values", {"sep4.csv": "x,b,g,f\n1,1,g0,a\n0,0,g1,a\n-1,0,g1,b\n1,1,g1,a\n"}),
    Case("GLMM", "a random effect per observation of a 0/1 response",
         ["fit", "olre.csv", "b ~ x + (1 | g)", "--family", "binomial", "--format", "csv"], 0,
         "every level of g has a single observation: with a 0/1 response a random effect per observation only "
         "rescales η (exactly under probit, nearly under logit and cloglog), so its variance and the fixed effects "
         "are not identified (a ridge of equal likelihood); their estimates and standard errors are arbitrary: drop "
         "the term on g", {"olre.csv": "b,x,g\n" + "".join(
             f"{b},{x},o{i}\n" for i, (b, x) in enumerate(zip([0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1],
                                                             [1.0, 0.62, -0.23, -0.9, -0.9, -0.21, 0.63, 1.0, 0.61,
                                                              -0.24, -0.91, -0.89])))},
         kind="warning", more_warnings=True),
    Case("GLMM", "quadrature with two random-effects terms",
         GLMM + ["pass ~ x + (1 | g) + (1 | h)", "--family", "binomial", "--nagq", "9"], 2,
         "--nagq 9: adaptive Gauss-Hermite quadrature needs a single random-effects term (this model has 2)",
         TRIAL_FILES),
    Case("GLMM", "quadrature with a random slope", GLMM + ["pass ~ x + (x | g)", "--family", "binomial", "--nagq", "9"],
         2, "--nagq 9: adaptive Gauss-Hermite quadrature needs a scalar random-effects term", TRIAL_FILES),
    Case("GLMM", "too many quadrature points", GLMM + ["pass ~ x + (1 | g)", "--family", "binomial", "--nagq", "30"],
         2, "--nagq must be between 0 and 25 (as glmer allows), not 30", TRIAL_FILES),
    Case("GLMM", "--ml with a GLMM", GLMM + ["pass ~ x + (1 | g)", "--family", "binomial", "--ml"], 2,
         "--ml: a generalized linear mixed model is always fitted by maximum likelihood; leave it out", TRIAL_FILES),
    Case("GLMM", "weights that do not exist", GLMM + ["pass ~ x + (1 | g)", "--family", "binomial", "--weights",
                                                     "trials"], 1,
         "--weights: no column 'trials' in the data", TRIAL_FILES),
    Case("GLMM", "a response-scale prediction's standard error",
         ["predict", "trials.csv", "pass ~ x + (1 | g)", "--family", "binomial", "--newdata", "trials.csv", "--se",
          "--type", "response"], 2,
         "--se gives the standard error on the link scale: leave out --type response and transform the interval's "
         "ends with the inverse link", TRIAL_FILES),
    Case("GLMM", "a prediction interval of a GLMM",
         ["predict", "trials.csv", "pass ~ x + (1 | g)", "--family", "binomial", "--newdata", "trials.csv",
          "--interval", "prediction"], 2,
         "--interval prediction is for linear mixed models: a GLMM has no residual variance; --se gives the "
         "standard error of the fixed part on the link scale", TRIAL_FILES),
    Case("GLMM", "profile intervals of a nAGQ = 0 fit",
         GLMM + ["pass ~ x + (1 | g)", "--family", "binomial", "--nagq", "0", "--ci", "profile"], 2,
         "profile intervals of a GLMM need its likelihood in β, which a --nagq 0 fit does not maximise (β comes "
         "from PIRLS, not the likelihood); fit with --nagq 1 (the Laplace approximation, which glmer profiles) or "
         "use bootstrap intervals", TRIAL_FILES),
    Case("GLMM", "F tests of a GLMM", ["anova", "trials.csv", "pass ~ x + (1 | g)", "--family", "binomial"], 2,
         "anova is for linear mixed models (its F tests need a residual variance); for a GLMM, test terms by "
         "comparing nested fits, as lme4's anova() of glmer fits does: mixcli compare DATA SMALLER LARGER --family "
         "binomial (or poisson)", TRIAL_FILES),
    Case("GLMM", "degrees of freedom for a GLMM",
         GLMM + ["pass ~ x + (1 | g)", "--family", "binomial", "--ddf", "kr"], 2,
         "--ddf kr: a GLMM's fixed effects get Wald z tests (no degrees of freedom), as in glmer's summary; leave "
         "it out", TRIAL_FILES),
    # -- power ------------------------------------------------------------------------------
    Case("Power", "a family power does not simulate",
         ["power", "trials.csv", "count ~ x + (1 | g)", "--family", "nbinom2", "--test", "x"], 2,
         "--family nbinom2: power analysis simulates gaussian, binomial and poisson models; for overdispersed "
         "counts use poisson with an observation-level random effect, + (1 | .row)", TRIAL_FILES),
    Case("Power", "a test term not in the model", ["power", "study.csv", "y ~ x + (1 | g)", "--test", "z"], 2,
         "--test z: not a term of the model; test one of 'x', '(1 | g)'", STUDY_FILES),
    Case("Power", "an --sd group that does not exist",
         ["power", "study.csv", "y ~ x + (1 | g)", "--test", "x", "--sd", "school=1"], 2,
         "--sd school=1: no random-effects group 'school' in the model; its groups are g (as lme4 names them)",
         STUDY_FILES),
    Case("Power", "sizes that cannot be built",
         ["power", "study.csv", "y ~ x + (1 | g)", "--test", "x", "--along", "g", "--sizes", "1,10"], 1,
         "--sizes 1: the model cannot be fitted with 1 level of g: grouping factors must have > 1 sampled level",
         STUDY_FILES),
    Case("Power", "a design that does not parse",
         ["power", "y ~ x + (1 | g)", "--design", "g=30; n=8", "--test", "x", "--sd", "g=1", "--sigma", "1"], 2,
         "--design 'g=30; n=8': cannot read 'g=30; n=8'; each item is NAME=K, NAME=K/OUTER, n=K, "
         "NAME=half[/GROUP] or NAME=normal[/GROUP]", {}),
    Case("Power", "--nsim 0", ["power", "study.csv", "y ~ x + (1 | g)", "--test", "x", "--nsim", "0"], 2,
         "invalid value for '--nsim': 0 is not in the range x>=1 (see 'mixcli power --help')", STUDY_FILES),
    Case("Power", "alpha outside (0, 1)", ["power", "study.csv", "y ~ x + (1 | g)", "--test", "x", "--alpha", "1.5"],
         2, "invalid value for '--alpha': 1.5 is not in the range 0<x<1 (see 'mixcli power --help')", STUDY_FILES),
    # -- --engine dask (data larger than memory) ---------------------------------------------
    Case("Dask", "compare --engine dask with --bootstrap",
         ["compare", "study.csv", "y ~ x + (1 | g)", "y ~ x + (x | g)", "--engine", "dask", "--bootstrap", "10"], 2,
         "--bootstrap refits simulated responses, which needs the rows; with --engine dask compare without it",
         STUDY_FILES),
    Case("Dask", "--save with --engine dask", FIT + ["y ~ x + (1 | g)", "--engine", "dask", "--save", "m.mixfit"], 2,
         "--save needs the fit's levels from the rows, which --engine dask does not bring to this machine: fit in "
         "memory to save, or leave out --save", STUDY_FILES),
    Case("Dask", "a glob that matches nothing", FIT_DASK("pupils/*.parquet"), 1,
         "'pupils/*.parquet' matches no files; check the path and quote the pattern so that the shell leaves it "
         "to mixcli", {}),
    Case("Dask", "Parquet files whose column types disagree", FIT_DASK("p*.parquet"), 1,
         "the files of 'p*.parquet' disagree on column 'g': text in 'p1.parquet' (string), number in 'p2.parquet' "
         "(int64); give every file the same types", _PARQUET_CLASH),
    Case("Dask", "a Parquet file without a column the others have", FIT_DASK("q*.parquet"), 1,
         "the files of 'q*.parquet' disagree: 'q2.parquet' has no column 'x' (which 'q1.parquet' has); give every "
         "file the formula's columns", _PARQUET_CLASH),
    Case("Dask", "a scheduler that cannot be reached", FIT_DASK("p1.parquet") + ["--scheduler", "tcp://127.0.0.1:9"],
         1, "cannot reach the Dask scheduler at tcp://127.0.0.1:9", _PARQUET_CLASH),
    Case("Dask", "a CSV on standard input", ["fit", "-", "y ~ x + (1 | g)", "--engine", "dask"], 2,
         "--engine dask reads files that every worker opens; standard input cannot be shared: save it as a file "
         "(Parquet or CSV) and give its path", {}),
    Case("Dask", "a GLMM", FIT_DASK("p1.parquet") + ["--family", "binomial"], 2,
         "--engine dask fits linear mixed models only: a GLMM's PIRLS needs a pass over the rows at every "
         "iteration; fit it in memory (without --engine dask)", _PARQUET_CLASH),
    Case("Dask", "--augment with --engine dask without -o", FIT_DASK("p1.parquet") + ["--augment"], 2,
         "--augment with --engine dask writes the rows as a Parquet dataset, one part per part of DATA: give its new "
         "directory with -o DIR", _PARQUET_CLASH),
    Case("Dask", "--augment -o naming a file, not a directory",
         FIT_DASK("p1.parquet") + ["--augment", "-o", "q1.parquet"], 1,
         "q1.parquet: not a directory; the augmented rows are a Parquet dataset: give a new directory",
         _PARQUET_CLASH),
    Case("Usage", "-o without --augment", FIT + ["y ~ x + (1 | g)", "-o", "rows.csv"], 2,
         "-o writes the rows of --augment: add --augment (the summary goes to standard output)", STUDY_FILES,
         leaves_no=("rows.csv",)),
    Case("Dask", "--workers without --engine dask", FIT + ["y ~ x + (1 | g)", "--workers", "2"], 2,
         "--scheduler and --workers choose the cluster of --engine dask: add --engine dask", STUDY_FILES),
    Case("Dask", "simulate --format parquet without -o", ["simulate", "--format", "parquet"], 2,
         "--format parquet writes a directory of files: give it with -o DIR", {}),
    # -- Ctrl-C -----------------------------------------------------------------------------
    Case("Interrupt", "Ctrl-C during a fit", FIT + ["y ~ x + (x | g)"], 130, "mixcli: interrupted", STUDY_FILES,
         setup=_INTERRUPT_FIT, note="Ctrl-C at the 3rd evaluation"),
    Case("Interrupt", "Ctrl-C while nest writes -o FILE", ["nest", "study.csv", "g:f", "-o", "out.csv"], 130,
         "mixcli: interrupted", STUDY_FILES, setup=_INTERRUPT_NEST, note="Ctrl-C after the first write",
         leaves_no=("out.csv", ".out.csv.*")),
    Case("Interrupt", "Ctrl-C while simulate writes -o FILE", ["simulate", "-o", "sim.csv"], 130,
         "mixcli: interrupted", {}, setup=_INTERRUPT_SIMULATE, note="Ctrl-C after the first write",
         leaves_no=("sim.csv", ".sim.csv.*")),
]

# ---------------------------------------------------------------- running


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    left: list[str]  # files matching the case's leaves_no patterns after the run


_PRELUDE = "import sys\n{setup}\nfrom mixcli.cli import entry\nentry(prog_name='mixcli')\n"


def command(case: Case) -> list[str]:
    """The installed ``mixcli`` script; with a setup, the same ``main`` after the setup code."""
    script = Path(sys.executable).with_name("mixcli")
    if case.setup or not script.exists():
        return [sys.executable, "-c", _PRELUDE.format(setup=case.setup), *case.args]
    return [str(script), *case.args]


def run_case(case: Case, workdir: Path | None = None) -> Outcome:
    """Run ``case`` in a fresh directory holding its files; SIGINT is restored to its default
    so that Ctrl-C cases work even under a shell that ignores it."""
    import glob
    import signal

    with tempfile.TemporaryDirectory(prefix="mixcli-case-") as tmp:
        where = Path(workdir or tmp)
        for name, content in case.files.items():
            path = where / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        env = dict(os.environ, NO_COLOR="1", PYTHONWARNINGS="")
        env.pop("MIXCLI_DEBUG", None)
        proc = subprocess.run(
            command(case), cwd=where, capture_output=True, text=True, env=env, timeout=300,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        left = sorted(os.path.basename(p) for pattern in case.leaves_no for p in glob.glob(str(where / pattern)))
        return Outcome(proc.returncode, proc.stdout, proc.stderr, left)


def run_all(cases=None, workers: int | None = None) -> dict[str, Outcome]:
    cases = CASES if cases is None else cases
    workers = workers or min(8, (os.cpu_count() or 2) + 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(run_case, cases))
    return {case.id: out for case, out in zip(cases, outcomes)}


# ---------------------------------------------------------------- the README table


def shown_command(case: Case) -> str:
    if case.shown:
        return case.shown
    parts = ["mixcli"]
    for arg in case.args:
        if arg and all(ch.isalnum() or ch in "-_./:=," for ch in arg):
            parts.append(arg)
        elif '"' not in arg:
            parts.append(f'"{arg}"')
        else:
            parts.append(f"'{arg}'")
    return " ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def message_of(case: Case, out: Outcome) -> str:
    lines = out.stderr.splitlines()
    if not lines:
        return "(fits; nothing on stderr)" if out.code == 0 else "(nothing)"
    if case.more_warnings:  # the case's own warning comes first; what follows depends on the fit's state
        return lines[0]
    return " / ".join(lines)


def render_table(outcomes: dict[str, Outcome]) -> str:
    blocks = [START, "<!-- generated by tests/catalogue.py from the runs that tests/test_errors.py checks; "
                     "regenerate with: make errors-table -->"]
    for section in dict.fromkeys(c.section for c in CASES):
        blocks.append("")
        blocks.append(f"**{section}**")
        blocks.append("")
        blocks.append("| When | Command | Exit | What mixcli says |")
        blocks.append("|---|---|---|---|")
        for case in (c for c in CASES if c.section == section):
            out = outcomes[case.id]
            cmd = f"`{_cell(shown_command(case))}`" + (f" ({_cell(case.note)})" if case.note else "")
            blocks.append(f"| {_cell(case.name)} | {cmd} | {out.code} | `{_cell(message_of(case, out))}` |"
                          if out.stderr else f"| {_cell(case.name)} | {cmd} | {out.code} | "
                          f"{_cell(message_of(case, out))} |")
    blocks.append("")
    blocks.append(END)
    return "\n".join(blocks)


def readme_table(text: str | None = None) -> str | None:
    """The generated block currently in the README (markers included), or None if absent."""
    text = README.read_text(encoding="utf-8") if text is None else text
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0:
        return None
    return text[start:end + len(END)]


def write_readme(table: str) -> bool:
    text = README.read_text(encoding="utf-8")
    current = readme_table(text)
    if current is None:
        raise SystemExit(f"{README}: no {START} ... {END} markers")
    if current == table:
        return False
    README.write_text(text.replace(current, table), encoding="utf-8")
    return True


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update the table in README.md")
    args = parser.parse_args(argv)
    table = render_table(run_all())
    if args.write:
        print("README.md updated" if write_readme(table) else "README.md already up to date")
        return 0
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
