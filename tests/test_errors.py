"""Bad input never crashes mixcli and never loses data: every catalogued case through the real CLI.

The cases live in ``tests/catalogue.py``; each runs once (as a subprocess, in
parallel) and is checked here: the exit code, stdout empty on error, exactly
one stderr line with the expected wording, no traceback, no partial output
file. The README's table is rendered from the same runs and must match.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from mixcli.errors import DataError, FormulaError, MixcliError
from mixcli.frame import model_frame
from mixcli.table import Table, TextColumn

import catalogue
from catalogue import CASES, STUDY, STUDY_FILES, Case, run_case
from conftest import ROOT


@pytest.fixture(scope="session")
def outcomes():
    return catalogue.run_all()


def stderr_lines(out) -> list[str]:
    return out.stderr.splitlines()


CSV_HEADERS = ("formula,method,term,estimate,se,t", "formula,method,family,link,term,estimate,se,z,p",
               "formula,method,type,ddf,term,sumsq",
               "x,g,predicted", "f,emmean,SE,df")  # predict: the --newdata columns (x,g in the catalogue), then its own


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_catalogued_case(case: Case, outcomes):
    out = outcomes[case.id]
    lines = stderr_lines(out)
    assert "Traceback" not in out.stderr
    assert out.code == case.code, out.stderr
    if case.kind == "ok":
        assert lines == []
        assert out.stdout.startswith(CSV_HEADERS)
        return
    if case.more_warnings:  # a fit stopped early may also draw warnings about what it found
        assert lines and all(line.startswith("mixcli: warning: ") for line in lines), out.stderr
    else:
        assert len(lines) == 1, out.stderr
    if case.kind == "warning":
        assert lines[0].startswith("mixcli: warning: ")
        assert out.stdout.startswith(CSV_HEADERS)  # the fit went ahead
    elif case.code == 130:
        assert lines[0] == "mixcli: interrupted"
        assert out.stdout == ""
    else:
        assert lines[0].startswith("mixcli: error: ")
        assert out.stdout == ""
    assert case.expect in lines[0]
    assert out.left == [], f"partial output left behind: {out.left}"


def test_every_bullet_of_the_issue_is_catalogued():
    names = " / ".join(c.id for c in CASES)
    for needle in ("does not exist", "cannot be read", "empty", "only a header", "too few fields", "binary",
                   "semicolons", "same name", "byte-order mark", "no '~'", "nothing after '~'", "never closed",
                   "outside parentheses", "'/'", "unknown function", "misspelt column", "non-integer values",
                   "random slope for a column not in the data", "repeated fixed term", "repeated random term",
                   "non-numeric value in the response", "no variance", "every row has a missing value",
                   "one level", "a level per observation", "more random effects than observations",
                   "aliased fixed effects", "infinite value", "very different scales", "too large",
                   "text column in '||'", "evaluation limit", "never finite", "Ctrl-C during a fit",
                   "Ctrl-C while nest"):
        assert needle in names, needle


def test_readme_table_is_generated_from_these_runs(outcomes):
    """The README's 'What mixcli says when…' table is exactly what the cases produce now
    (regenerate with: make errors-table)."""
    current = catalogue.readme_table()
    assert current is not None, "README.md lacks the <!-- errors:start --> ... <!-- errors:end --> block"
    assert current == catalogue.render_table(outcomes), "README table is stale: run `make errors-table`"


def test_readme_table_shows_each_case_and_escapes_bars(outcomes):
    table = catalogue.render_table(outcomes)
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| When")]
    assert len(rows) == len(CASES)
    for row in rows:  # four cells: a '|' inside a formula must not open a fifth
        assert len([p for p in row.replace("\\|", "").split("|")]) == 6, row


# ---------------------------------------------------------------- what the successful cases fit


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def fit_cli(formula: str, files=STUDY_FILES, *extra: str, data: str = "study.csv", setup: str = ""):
    case = Case("test", formula, ["fit", data, formula, *extra], 0, "", files, setup=setup)
    return run_case(case)


def test_bom_file_fits_exactly_as_without_bom(outcomes):
    bom = outcomes["File: a UTF-8 byte-order mark (Excel's CSV UTF-8)"]
    plain = fit_cli("y ~ x + (1 | g)", STUDY_FILES, "--format", "csv")
    assert plain.code == 0
    with_bom, without = csv_rows(bom.stdout), csv_rows(plain.stdout)
    assert [r["term"] for r in with_bom] == ["(Intercept)", "x"]  # the first column, y, was found
    key = ("term", "estimate", "se", "t")
    assert [tuple(r[k] for k in key) for r in with_bom] == [tuple(r[k] for k in key) for r in without]


def test_repeated_fixed_term_is_dropped_like_r(outcomes):
    twice = csv_rows(outcomes["Formula: a repeated fixed term"].stdout)
    once = csv_rows(fit_cli("y ~ x + (1 | g)", STUDY_FILES, "--format", "csv").stdout)
    assert [r["term"] for r in twice] == ["(Intercept)", "x"]
    assert [(r["estimate"], r["se"]) for r in twice] == [(r["estimate"], r["se"]) for r in once]


def test_repeated_random_term_is_fitted_twice_like_lme4():
    out = fit_cli("y ~ x + (1 | g) + (1 | g)", STUDY_FILES, "--format", "json")
    assert out.code == 0, out.stderr
    rec = json.loads(out.stdout)
    assert [(v["group"], v["term"]) for v in rec["varcorr"]] == [
        ("g", "(Intercept)"), ("g.1", "(Intercept)"), ("Residual", None)]
    assert any("appears twice" in w for w in rec["warnings"])
    single = json.loads(fit_cli("y ~ x + (1 | g)", STUDY_FILES, "--format", "json").stdout)
    # only the sum of the two variances is identified: it equals the single term's variance
    total = rec["varcorr"][0]["variance"] + rec["varcorr"][1]["variance"]
    assert total == pytest.approx(single["varcorr"][0]["variance"], rel=1e-4)
    assert rec["criterion"] == pytest.approx(single["criterion"], abs=1e-6)


def test_fixed_effect_dropped_for_aliasing_is_named_and_absent():
    out = fit_cli("y ~ x + x100 + (1 | g)", STUDY_FILES, "--format", "json")
    rec = json.loads(out.stdout)
    assert [f["term"] for f in rec["fixef"]] == ["(Intercept)", "x"]
    assert rec["warnings"] == ["fixed-effect model matrix is rank deficient so dropping 1 column / coefficient (x100)"]


# ---------------------------------------------------------------- fitting problems


def test_evaluation_limit_marks_the_json_result_not_converged():
    out = fit_cli("y ~ x + (x | g)", STUDY_FILES, "--format", "json", "--control", "max_eval=5")
    assert out.code == 0 and out.stderr == ""
    rec = json.loads(out.stdout)
    assert rec["converged"] is False
    assert any("stopped after 5 evaluations without converging" in w for w in rec["warnings"])
    free = json.loads(fit_cli("y ~ x + (x | g)", STUDY_FILES, "--format", "json").stdout)
    assert free["converged"] is True and free["criterion"] < rec["criterion"]


NAN_CRITERION = catalogue._NAN_CRITERION


def test_non_finite_criterion_never_crashes():
    out = fit_cli("y ~ x + (x | g)", STUDY_FILES, "--format", "json", setup=NAN_CRITERION)
    assert "Traceback" not in out.stderr
    assert out.code in (0, 1)
    if out.code == 1:
        assert out.stdout == "" and len(stderr_lines(out)) == 1
    else:
        json.loads(out.stdout)


def test_non_finite_criterion_is_reported_as_not_converged():
    out = fit_cli("y ~ x + (x | g)", STUDY_FILES, "--format", "json", setup=NAN_CRITERION)
    rec = json.loads(out.stdout)
    assert rec["converged"] is False
    assert rec["warnings"] and "criterion" in rec["warnings"][-1]


# ---------------------------------------------------------------- the wrapper


def test_a_bug_is_one_line_not_a_traceback():
    setup = "import mixcli.frame as _f\ndef _boom(*a, **k): raise ZeroDivisionError('division by zero')\n" \
            "_f.model_frame = _boom"
    out = fit_cli("y ~ x + (1 | g)", STUDY_FILES, setup=setup)
    assert out.code == 1 and out.stdout == ""
    assert stderr_lines(out) == [
        "mixcli: error: internal error (ZeroDivisionError: division by zero); this is a bug in mixcli, please "
        "report it with the command that caused it (MIXCLI_DEBUG=1 shows the traceback)"]
    os.environ["MIXCLI_DEBUG"] = "1"
    try:
        proc = subprocess.run(catalogue.command(Case("t", "t", ["fit", str(ROOT / "mixcli/data/classroom_sim.csv"),
                                                                 "mathscore ~ ses + (1 | schoolid)"], 1, "",
                                                                setup=setup)),
                              capture_output=True, text=True, cwd=ROOT)
    finally:
        del os.environ["MIXCLI_DEBUG"]
    assert "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr


def test_python_warnings_become_one_line():
    setup = ("import warnings, mixcli.frame as _f\n_mf = _f.model_frame\n"
             "def _warning(*a, **k):\n    warnings.warn('overflow encountered in multiply', RuntimeWarning)\n"
             "    return _mf(*a, **k)\n_f.model_frame = _warning")
    out = fit_cli("y ~ x + (1 | g)", STUDY_FILES, "--format", "csv", setup=setup)
    assert out.code == 0
    assert stderr_lines(out) == ["mixcli: warning: overflow encountered in multiply"]


def test_closed_output_pipe_ends_quietly():
    # (with PYTHONUNBUFFERED, stdout is a raw file whose write() stops short at the closed pipe
    # without raising: the command then ends with 0 instead, see simulate.write_csv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen([sys.executable, "-m", "mixcli", "simulate", "--schools", "3000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    assert proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert err == ""


# ---------------------------------------------------------------- Ctrl-C


# Every evaluation after the first takes a second, and progress is shown from the first: the
# fit is still running, whatever the machine's speed, when the first progress line arrives.
_SLOW_FIT = """
import time
import mixcli.model as _model, mixcli.progress as _progress
_progress.FitProgress.DELAY = 0.0
_criterion, _calls = _model.Model.criterion, [0]
def _slow(self, theta, reml):
    _calls[0] += 1
    if _calls[0] > 1:
        time.sleep(1.0)
    return _criterion(self, theta, reml)
_model.Model.criterion = _slow
"""


def test_ctrl_c_from_outside_during_a_long_fit(tmp_path):
    """A real SIGINT sent to `mixcli fit` by another process while it reports fitting progress."""
    (tmp_path / "study.csv").write_text(STUDY)
    case = Case("t", "t", FIT_ARGS, 130, "", setup=_SLOW_FIT)
    proc = subprocess.Popen(
        catalogue.command(case), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    first = proc.stderr.readline()  # the first progress line: the optimiser is running
    assert first.startswith("fitting: "), first
    proc.send_signal(signal.SIGINT)
    out, rest = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert out == ""
    tail = [line for line in rest.splitlines() if not line.startswith("fitting: ")]
    assert tail == ["mixcli: interrupted"]


FIT_ARGS = ["fit", "study.csv", "y ~ x + (x | g)", "--format", "json", "--progress"]


def test_ctrl_c_while_nest_overwrites_its_input_keeps_the_input(tmp_path):
    setup = catalogue._INTERRUPT_NEST
    case = Case("t", "t", ["nest", "study.csv", "g:f", "-o", "study.csv"], 130, "", STUDY_FILES, setup=setup)
    out = run_case(case, workdir=tmp_path)
    assert out.code == 130 and stderr_lines(out) == ["mixcli: interrupted"]
    assert (tmp_path / "study.csv").read_text() == STUDY  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.csv"]  # no temporary file left


# ---------------------------------------------------------------- the model frame's checks, in the library


def table(**columns) -> Table:
    cols = {k: (TextColumn.from_values(v) if isinstance(v[0], str) else np.asarray(v, dtype=float))
            for k, v in columns.items()}
    return Table(cols)


def grouped(n_groups=6, per=5, seed=1, **extra):
    rng = np.random.default_rng(seed)
    g = [f"g{i}" for i in range(n_groups) for _ in range(per)]
    x = rng.normal(size=n_groups * per)
    y = 1 + x + np.repeat(rng.normal(size=n_groups), per) + 0.5 * rng.normal(size=n_groups * per)
    return dict(y=list(y), x=list(x), g=g, **{k: list(v) for k, v in extra.items()})


def error(data, formula) -> MixcliError:
    with pytest.raises(MixcliError) as info:
        model_frame(table(**data), formula)
    assert "\n" not in str(info.value)
    return info.value


def test_in_memory_tables_are_located_by_row_not_line():
    data = grouped()
    data["x"][3] = math.inf
    err = error(data, "y ~ x + (1 | g)")
    assert isinstance(err, DataError) and "the fixed-effect column 'x' has the value Inf on row 4;" in str(err)


def test_inf_times_zero_in_an_interaction_is_reported_not_dropped():
    data = grouped(f=["a", "b"] * 15)
    data["x"][3] = -math.inf  # row 4 has f = 'b': x:fa is -Inf * 0 = NaN there
    err = error(data, "y ~ x:f + (1 | g)")
    assert "the fixed-effect column 'x:fa' has the value NaN (Inf times 0) on row 4" in str(err)


def test_infinite_slope_and_response_name_their_column():
    data = grouped(z=list(np.arange(30.0)))
    data["z"][5] = math.inf
    assert "in the random-effects term (0 + z | g), the column 'z' has the value Inf on row 6" in str(
        error(data, "y ~ x + (0 + z | g)"))
    data = grouped()
    data["y"][0] = -math.inf
    assert "the response 'y' has the value -Inf on row 1" in str(error(data, "y ~ x + (1 | g)"))


def test_tiny_values_are_refused_rather_than_underflowing():
    data = grouped()
    data["x"] = [v * 1e-160 for v in data["x"]]
    err = error(data, "y ~ x + (1 | g)")
    assert "has values too small to fit in double precision" in str(err) and "I(x * 1e160)" in str(err)


def test_more_fixed_effects_than_observations():
    rng = np.random.default_rng(3)
    data = dict(y=list(rng.normal(size=6)), g=["a", "a", "b", "b", "c", "c"],
                **{f"x{i}": list(rng.normal(size=6)) for i in range(6)})
    err = error(data, "y ~ x0 + x1 + x2 + x3 + x4 + x5 + (1 | g)")
    assert "6 fixed effects for 6 observations" in str(err)


def test_exact_fit_through_interactions_is_an_error():
    data = grouped()
    data["y"] = [2 * a - 3 for a in data["x"]]
    err = error(data, "y ~ x + (1 | g)")
    assert "fit the response 'y' exactly" in str(err)


def test_near_exact_but_real_variation_still_fits():
    data = grouped()
    data["y"] = [2 * a - 3 + 1e-6 * math.sin(i) for i, a in enumerate(data["x"])]
    frame = model_frame(table(**data), "y ~ x + (1 | g)")
    assert frame.n == 30


def test_scale_warning_follows_lme4s_check_scale_x():
    data = grouped()
    ok = model_frame(table(**dict(data, w=[500 * v for v in data["x"]])), "y ~ x + w + (1 | g)")
    assert not any("different scales" in m for m in ok.messages)  # SDs within 1e3 of each other and of 1
    wide = model_frame(table(**dict(data, w=[5000 * v for v in data["x"]][::-1])), "y ~ w + (1 | g)")
    assert any(m.startswith("some predictor variables are on very different scales: consider rescaling (SD of w")
               for m in wide.messages)  # a single predictor with SD > 1e3 warns, as in lme4
    dummies = model_frame(table(**dict(data, d=[0.0, 1.0] * 15)), "y ~ d + (1 | g)")
    assert not any("different scales" in m for m in dummies.messages)  # 0/1 columns are not checked


def test_double_bar_with_a_factor_warns_once_per_term():
    data = grouped(f=["a", "b", "c"] * 10)
    frame = model_frame(table(**data), "y ~ x + (f || g)")
    warned = [m for m in frame.messages if "'||' does not make its effects uncorrelated" in m]
    assert len(warned) == 1 and warned[0].startswith("(f || g): f is a factor")
    plain = model_frame(table(**data), "y ~ x + (x || g)")
    assert not any("'||'" in m for m in plain.messages)


def test_nested_term_plus_its_outer_term_warns():
    data = grouped(c=[f"c{i % 2}" for i in range(30)])
    frame = model_frame(table(**data), "y ~ x + (1 | g/c) + (1 | g)")
    assert [m for m in frame.messages if "random effect" in m] == [
        "the random effect (Intercept) for g is in both (1 | g/c) and (1 | g): as in lme4 both are fitted, "
        "but only the sum of their variances is identified; remove one"]
    distinct = model_frame(table(**data), "y ~ x + (1 | g) + (0 + x | g)")
    assert not any("random effect" in m for m in distinct.messages)


def test_no_rows_left_names_an_entirely_missing_column():
    data = grouped()
    data["x"] = [math.nan] * 30
    assert str(error(data, "y ~ x + (1 | g)")) == (
        "no rows left: x is missing in all 30 rows (empty fields and NA are missing values)")


def test_formula_errors_are_usage_errors_and_data_errors_are_not():
    assert isinstance(error(grouped(), "y ~ xx + (1 | g)"), FormulaError)
    data = grouped()
    data["y"] = [str(v) for v in data["y"]]
    data["y"][7] = "12,5"
    err = error(data, "y ~ x + (1 | g)")
    assert isinstance(err, DataError) and not isinstance(err, FormulaError) and err.exit_code == 1
    assert "row 8 has '12,5'" in str(err) and "use '.' as the decimal mark" in str(err)
