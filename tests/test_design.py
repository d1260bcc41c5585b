"""model_matrix and evaluate against R's model.matrix (fixtures/formula_cases.json,
written by fixtures/formula_cases.R on fixtures/formula_data.csv)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mixcli.design import DesignMatrix, complete_rows, factor_levels, model_matrix, r_sort_key, term_codings
from mixcli.errors import DataError, FormulaError
from mixcli.formula import Call, Var, parse_formula
from mixcli.formula.evaluate import check_variables, evaluate, is_factor
from mixcli.table import Table, TextColumn

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
_JSON = json.loads((FIXTURES / "formula_cases.json").read_text(encoding="utf-8"))
CASES = _JSON["cases"]
CONTRAST_CASES = _JSON["contrast_cases"]  # the same kind of case under options(contrasts = ...)


def read_fixture_table() -> Table:
    """formula_data.csv as a Table: all-number columns numeric, others text; "" missing."""
    with open(FIXTURES / "formula_data.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    columns = {}
    for j, name in enumerate(header):
        raw = [r[j] for r in body]
        try:
            columns[name] = np.array([float(v) if v != "" else math.nan for v in raw])
        except ValueError:
            columns[name] = TextColumn.from_values([v if v != "" else None for v in raw])
    return Table(columns)


TABLE = read_fixture_table()


def ids(case):
    return case["formula"]


def assert_matrix(dm: DesignMatrix, expected: dict, nrows: int):
    assert dm.names == expected["colnames"]
    assert dm.assign == expected["assign"]
    X = np.array(expected["X"], dtype=float).reshape(nrows, len(expected["colnames"]))
    assert dm.X.shape == X.shape
    assert dm.X.dtype == np.float64
    np.testing.assert_allclose(dm.X, X, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_complete_rows_match_model_frame(case):
    f = parse_formula(case["formula"])
    rows = complete_rows(f, TABLE)
    assert np.flatnonzero(rows).tolist() == case["kept"]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_fixed_design_matches_model_matrix(case):
    f = parse_formula(case["formula"])
    rows = np.zeros(TABLE.nrows, dtype=bool)
    rows[case["kept"]] = True
    dm = model_matrix(f.intercept, f.terms, TABLE, rows)
    assert_matrix(dm, case["fixed"], len(case["kept"]))


@pytest.mark.parametrize("case", CONTRAST_CASES, ids=lambda c: f"{c['contrasts']}:{c['formula']}")
def test_contrasts_option_matches_r_options_contrasts(case):
    f = parse_formula(case["formula"])
    rows = np.zeros(TABLE.nrows, dtype=bool)
    rows[case["kept"]] = True
    assert_matrix(model_matrix(f.intercept, f.terms, TABLE, rows, contrasts=case["contrasts"]),
                  case["fixed"], len(case["kept"]))
    for r, expected in zip(f.random, case["random"], strict=True):
        assert_matrix(model_matrix(r.intercept, r.terms, TABLE, rows, contrasts=case["contrasts"]),
                      expected, len(case["kept"]))


@pytest.mark.parametrize("case", [c for c in CASES if c["random"]], ids=ids)
def test_random_design_matches_lme4(case):
    f = parse_formula(case["formula"])
    rows = np.zeros(TABLE.nrows, dtype=bool)
    rows[case["kept"]] = True
    assert len(f.random) == len(case["random"])
    for r, expected in zip(f.random, case["random"]):
        dm = model_matrix(r.intercept, r.terms, TABLE, rows)
        assert_matrix(dm, expected, len(case["kept"]))


def test_levels_are_sorted_like_r_and_only_those_present():
    f = parse_formula("y ~ 0 + region")
    dm = model_matrix(f.intercept, f.terms, TABLE, complete_rows(f, TABLE))
    assert dm.levels == {"region": ["central", "east", "north", "south", "South", "West"]}
    f = parse_formula("y ~ region + z")  # the row with "central" has z missing
    dm = model_matrix(f.intercept, f.terms, TABLE, complete_rows(f, TABLE))
    assert dm.levels["region"] == ["east", "north", "south", "South", "West"]
    assert dm.names[:3] == ["(Intercept)", "regionnorth", "regionsouth"]


def test_factor_levels_helper():
    col = TextColumn.from_values(["South", "north", None, "east", "north"])
    levels, index = factor_levels(col)
    assert levels == ["east", "north", "South"]
    assert index.tolist() == [2, 1, -1, 0, 1]
    levels, index = factor_levels(col, np.array([True, True, False, False, True]))
    assert levels == ["north", "South"]
    assert index.tolist() == [1, 0, 0]
    assert r_sort_key("a") < r_sort_key("B")


def test_term_codings_rule():
    a, b, x = Var("a"), Var("b"), Var("x")
    factor = {a, b}.__contains__
    assert term_codings(True, ((a,), (a, b)), factor) == [[1], [2, 1]]  # a + a:b: b by contrasts
    assert term_codings(False, ((a,), (b,)), factor) == [[2], [1]]
    assert term_codings(True, ((x, a),), factor) == [[0, 2]]
    assert term_codings(False, ((x,), (a, b)), factor) == [[0], [2, 2]]
    # a in x:a is coded by contrasts when x is part of an earlier term (x:z here)
    z = Var("z")
    assert term_codings(True, ((x, z), (x, a)), factor) == [[0, 0], [0, 1]]


def test_no_rows_kept_and_no_columns():
    f = parse_formula("y ~ 0")
    dm = model_matrix(f.intercept, f.terms, TABLE)
    assert dm.X.shape == (TABLE.nrows, 0) and dm.names == [] and dm.assign == []


def test_one_level_factor_is_an_error():
    rows = np.array(TABLE["sex"].values() == "F")
    f = parse_formula("y ~ x + sex")
    with pytest.raises(DataError, match="column 'sex' has one value \\('F'\\)"):
        model_matrix(f.intercept, f.terms, TABLE, rows)


def test_missing_factor_value_in_kept_rows_is_an_error():
    f = parse_formula("y ~ region")
    with pytest.raises(DataError, match="missing values"):
        model_matrix(f.intercept, f.terms, TABLE)


# -- evaluate ------------------------------------------------------------------------


def test_evaluate_arithmetic_and_functions():
    x = TABLE["x"]
    w = TABLE["w"]
    (t,) = parse_formula("y ~ I((x - 1)^2 / 2 + -w * 3)").terms
    np.testing.assert_allclose(evaluate(t[0], TABLE), (x - 1) ** 2 / 2 + -w * 3)
    for func, ref in [("log", np.log), ("exp", np.exp), ("sqrt", np.sqrt), ("abs", np.abs), ("log10", np.log10), ("log2", np.log2)]:
        np.testing.assert_allclose(evaluate(Call(func, (Var("x"),)), TABLE), ref(x))
    const = parse_formula("y ~ I(2 * 3)").terms[0][0]
    assert evaluate(const, TABLE).tolist() == [6.0] * TABLE.nrows


def test_scale_uses_all_rows_ignoring_missing():
    z = TABLE["z"]
    out = evaluate(Call("scale", (Var("z"),)), TABLE)
    ok = ~np.isnan(z)
    np.testing.assert_allclose(out[ok], (z[ok] - z[ok].mean()) / z[ok].std(ddof=1))
    assert np.isnan(out[~ok]).all()


def test_log_of_non_positive_values_gives_nan_and_inf_quietly():
    t = Table({"v": np.array([1.0, 0.0, -1.0, np.nan])})
    with np.errstate(all="raise"):
        out = evaluate(Call("log", (Var("v"),)), t)
    assert out[0] == 0 and out[1] == -np.inf and np.isnan(out[2]) and np.isnan(out[3])
    # R's na.omit drops NaN rows but keeps -inf
    f = parse_formula("v ~ log(v)")
    assert complete_rows(f, t).tolist() == [True, True, False, False]


def test_text_column_where_numbers_are_needed():
    with pytest.raises(FormulaError, match="column 'sex' is text"):
        evaluate(Call("log", (Var("sex"),)), TABLE)
    text = "y ~ x + log(sex) + (1 | g)"
    with pytest.raises(FormulaError) as info:
        check_variables(parse_formula(text), TABLE)
    assert info.value.position == text.index("sex")
    assert "column 'sex' is text" in info.value.reason
    with pytest.raises(DataError) as info:  # a text response is a data problem (exit 1): name its first value
        check_variables(parse_formula("sex ~ x"), TABLE)
    assert str(info.value).startswith("the response 'sex' is not numeric: row 1 has 'F'")
    check_variables(parse_formula("y ~ sex + (sex | g) + (1 | x)"), TABLE)  # factors are fine


def test_unknown_column_is_reported_with_position_and_suggestion():
    text = "y ~ x + tmp + (1 | g)"
    with pytest.raises(FormulaError) as info:
        check_variables(parse_formula(text), TABLE)
    assert info.value.reason == "no column 'tmp' in the data (did you mean 'temp'?)"
    assert info.value.position == text.index("tmp")
    with pytest.raises(FormulaError, match="unknown column 'nope'"):
        evaluate(Var("nope"), TABLE)


def test_is_factor():
    assert is_factor(Var("sex"), TABLE) and not is_factor(Var("x"), TABLE)
    assert not is_factor(Call("log", (Var("x"),)), TABLE)


def test_design_and_evaluate_on_a_large_table_is_vectorised():
    n = 200_000
    rng = np.random.default_rng(1)
    t = Table(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "f": TextColumn(codes=rng.integers(0, 50, size=n), labels=np.array([f"L{i}" for i in range(50)], dtype=object)),
        }
    )
    f = parse_formula("y ~ x * f")
    dm = model_matrix(f.intercept, f.terms, t, complete_rows(f, t))
    assert dm.X.shape == (n, 100)
    assert dm.names[:3] == ["(Intercept)", "x", "fL1"] and dm.names[-1] == "x:fL9"
