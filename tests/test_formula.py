"""The formula parser against R and lme4 (expectations in fixtures/formula_cases.json,
written by fixtures/formula_cases.R), plus every error with its message and position."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mixcli.errors import FormulaError, UsageError
from mixcli.formula import (
    BinOp,
    Call,
    Num,
    Paren,
    RandomTerm,
    UnaryOp,
    Var,
    parse_formula,
    r_sort_key,
    term_label,
)
from mixcli.formula.exprs import format_number, is_syntactic

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
R = json.loads((FIXTURES / "formula_cases.json").read_text(encoding="utf-8"))
CASES = R["cases"]


def ids(case):
    return case["formula"]


# -- agreement with R ----------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_fixed_terms_match_r(case):
    f = parse_formula(case["formula"])
    assert f.term_labels == case["term_labels"]
    assert [term_label(t) for t in f.terms] == case["term_labels"]
    assert f.intercept is case["intercept"]
    assert f.response.label == case["response"]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_random_terms_match_findbars(case):
    f = parse_formula(case["formula"])
    assert [r.label for r in f.random] == case["findbars"]
    assert [r.lme4_group_name for r in f.random] == case["group_names"]


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_variables_match_all_vars(case):
    f = parse_formula(case["formula"])
    expected = case["all_vars"]
    if "C(" in case["formula"]:
        # all.vars() also lists C()'s contrasts argument (a symbol to R); it names no column.
        expected = [v for v in expected if v not in ("sum", "helmert", "treatment")]
    assert f.variables() == expected


def test_fixture_was_made_with_icu_collation():
    assert R["icu"] is True
    assert R["lme4_version"].startswith("1.1")


def test_r_sort_key_matches_r_sort():
    expected = R["sorted"]
    shuffled = sorted(expected, key=lambda s: (len(s), s[::-1]))
    assert sorted(shuffled, key=r_sort_key) == expected


def test_r_sort_key_examples():
    assert sorted(["South", "north", "east"], key=r_sort_key) == ["east", "north", "South"]
    assert sorted(["B", "b", "a", "A"], key=r_sort_key) == ["a", "A", "b", "B"]
    assert sorted(["10", "9", "x"], key=r_sort_key) == ["10", "9", "x"]


# -- the public objects --------------------------------------------------------------


def test_example_from_the_readme():
    text = "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
    f = parse_formula(text)
    assert f.text == text
    assert f.response == Var("mathscore")
    assert f.intercept is True
    assert f.terms == ((Var("ses"),),)
    assert f.random == (
        RandomTerm(True, ((Var("ses"),),), ("schoolid",)),
        RandomTerm(True, (), ("classid",)),
    )
    assert [r.label for r in f.random] == ["ses | schoolid", "1 | classid"]
    assert f.random[0].span == (text.index("(ses"), text.index("schoolid)") + len("schoolid)"))
    assert f.variables() == ["mathscore", "ses", "schoolid", "classid"]
    assert f.position_of("classid") == text.index("classid")


def test_nested_grouping_names():
    f = parse_formula("y ~ (1 | schoolid/classid2)")
    assert [r.group for r in f.random] == [("classid2", "schoolid"), ("schoolid",)]
    assert [r.group_name for r in f.random] == ["classid2:schoolid", "schoolid"]
    f = parse_formula("y ~ (1 | a/b/c)")
    assert [r.group_name for r in f.random] == ["c:b:a", "b:a", "a"]
    assert [r.lme4_group_name for r in f.random] == ["c:(b:a)", "b:a", "a"]


def test_double_bar_terms():
    f = parse_formula("y ~ (x + z || g)")
    assert [(r.intercept, r.terms) for r in f.random] == [
        (True, ()),
        (False, ((Var("x"),),)),
        (False, ((Var("z"),),)),
    ]
    # lme4 1.1-31 fails on (1 || g); we read it as (1 | g)
    assert parse_formula("y ~ (1 || g)").random == (RandomTerm(True, (), ("g",)),)


def test_random_term_label_without_source():
    assert RandomTerm(False, ((Var("x"),), (Var("z"),)), ("g",)).label == "0 + x + z | g"
    assert RandomTerm(True, ((Var("x"),),), ("b", "a")).label == "x | b:a"
    assert RandomTerm(True, (), ("math score",)).label == "1 | `math score`"
    assert RandomTerm(True, (), ("math score",)).lme4_group_name == "math score"


def test_expressions_are_frozen_and_hashable():
    f = parse_formula("y ~ I(ses^2) + log(x) + scale(z) + `math score` + I(-x * 2.5)")
    labels = [term_label(t) for t in f.terms]
    assert labels == ["I(ses^2)", "log(x)", "scale(z)", "`math score`", "I(-x * 2.5)"]
    (i_ses,), (log_x,), _, (math,), (neg,) = f.terms
    assert i_ses == Call("I", (BinOp("^", Var("ses"), Num(2.0)),))
    assert log_x == Call("log", (Var("x"),), "log(x)")
    assert math == Var("math score") and math.label == "`math score`"
    assert neg == Call("I", (BinOp("*", UnaryOp("-", Var("x")), Num(2.5)),))
    assert len({i_ses, log_x, math, neg, Var("math score")}) == 4
    with pytest.raises(AttributeError):
        math.name = "other"  # type: ignore[misc]


def test_same_variable_whatever_the_spacing_but_parentheses_count():
    f = parse_formula("y ~ log(x) + log( x ) + log((x)) + `x` + x")
    assert f.term_labels == ["log(x)", "log((x))", "x"]
    assert parse_formula("y ~ log((x))").terms[0][0] == Call("log", (Paren(Var("x")),))


def test_interaction_order_is_first_appearance():
    f = parse_formula("y ~ b:a + a:b + a")
    assert f.term_labels == ["a", "b:a"]
    assert f.terms[1] == (Var("b"), Var("a"))


def test_response_can_be_a_function():
    f = parse_formula("log(y) ~ x")
    assert f.response == Call("log", (Var("y"),))
    assert parse_formula("I(y / 10) ~ x").response.label == "I(y/10)"


@pytest.mark.parametrize(
    "value, text",
    [
        (1000.0, "1000"),
        (1e5, "1e+05"),
        (1e4, "10000"),
        (0.0001, "1e-04"),
        (0.001, "0.001"),
        (123456.0, "123456"),
        (1e15, "1e+15"),
        (0.1234567890123456789, "0.123456789012346"),
        (0.5, "0.5"),
        (2.5e-7, "2.5e-07"),
        (1234567890123456.0, "1234567890123456"),
        (1.5e6, "1500000"),
        (0.00001234, "1.234e-05"),
        (1e300, "1e+300"),
    ],
)
def test_numbers_print_like_r_deparse(value, text):
    assert format_number(value) == text


def test_syntactic_names():
    assert is_syntactic("my.var") and is_syntactic(".x") and is_syntactic("x_2")
    assert not is_syntactic("math score")
    assert not is_syntactic("_a") and not is_syntactic(".2x") and not is_syntactic("if")
    assert not is_syntactic("2x") and not is_syntactic("a-b")


def test_supported_syntax_without_r_cases():
    assert parse_formula("y ~ x**2").term_labels == ["x"]
    assert parse_formula("y ~ I(x**2)").term_labels == ["I(x^2)"]
    assert parse_formula("y ~ (a + b)^2.5").term_labels == ["a", "b", "a:b"]  # R truncates
    assert parse_formula("y ~ a + b %in% c").term_labels == ["a", "b:c"]
    assert parse_formula("y ~ (a + b) %in% c").term_labels == ["a:c", "b:c"]
    assert parse_formula("y ~ (a+b:c+d)^3").term_labels == [
        "a", "d", "a:d", "b:c", "a:b:c", "b:c:d", "a:b:c:d"
    ]
    assert parse_formula("y ~ x + z - x + x").term_labels == ["z", "x"]
    f = parse_formula("y ~ 1 - 1 + x")
    assert f.intercept is False and f.term_labels == ["x"]
    assert parse_formula("y ~ x - 0").intercept is True
    assert parse_formula("y ~ -0").intercept is True
    assert parse_formula("y ~ .x + x.1 + \n\tx_y").term_labels == [".x", "x.1", "x_y"]


def test_random_term_spans_and_positions():
    text = "y ~ x + (x || g) + (1 | a/b)"
    f = parse_formula(text)
    first = (text.index("(x"), text.index("g)") + 2)
    second = (text.index("(1"), len(text))
    assert [r.span for r in f.random] == [first, first, second, second]
    assert f.position_of("b") == text.rindex("b")
    assert f.position_of("nothing") is None


# -- errors: message and position ----------------------------------------------------

ERRORS = [
    ("y x", "no '~' in formula", None),
    ("", "empty formula", None),
    ("   ", "empty formula", None),
    ("~ x", "missing response before '~'", None),
    ("y ~", "empty right-hand side: nothing after '~'", None),
    ("y ~ (x + z", "unclosed '('", 4),
    ("y ~ x + (1|g", "unclosed '('", 8),
    ("y ~ log(x", "unclosed '('", 7),
    ("y ~ x + z)", "unexpected ')'", 9),
    ("y ~ ()", "unexpected ')'", 5),
    ("y ~ (x | )", "unexpected ')'", 9),
    ("y ~ ( | g)", "unexpected '|'", 6),
    ("y ~ x z", "unexpected 'z'", 6),
    ("y ~ x, z", "unexpected ','", 5),
    ("y ~ x $ z", "unexpected '$'", 6),
    ("y ~ x + (1|g)(2)", "unexpected '('", 13),
    ("y ~ `math score + x", "unclosed '`'", 4),
    ("y ~ `` + x", "empty name", 4),
    ('y ~ x + "a"', 'unexpected string "a"', 8),
    ("y ~ x + 'a", "unclosed string", 8),
    ("y ~ x +", "missing term after '+'", 6),
    ("y ~ x ~ z", "unexpected '~'", 6),
    ("y ~ I(x ~ z)", "unexpected '~'", 8),
    ("(y ~ x)", "'~' must separate the response from the terms", 3),
    ("y ~ x | g", "'|' must be inside parentheses", 6),
    ("y ~ x + 1 | g", "'|' must be inside parentheses", 10),
    ("y ~ x || g", "'||' must be inside parentheses", 6),
    ("y ~ x * (1 | g)", "a random-effects term can only be added to the model with '+'", 8),
    ("y ~ x - (1 | g)", "a random-effects term can only be added to the model with '+'", 8),
    ("y ~ x + -(1|g)", "a random-effects term can only be added to the model with '+'", 9),
    ("y ~ x + (1 | (0 + x | g))", "random-effects term inside another random-effects term", 20),
    ("y ~ ((1 | g) | h)", "random-effects term inside another random-effects term", 8),
    ("y ~ x + (1 + (x | g) | h)", "random-effects term inside another random-effects term", 16),
    ("y ~ (1 | g || h)", "random-effects term inside another random-effects term", 7),
    ("y ~ (1 | g + h)", "the grouping factor must be column names joined by ':' or '/'", 9),
    ("y ~ (1 | 2)", "the grouping factor must be column names joined by ':' or '/'", 9),
    ("y ~ (1 | log(g))", "the grouping factor must be column names joined by ':' or '/'", 9),
    ("y ~ x + (1 | g/(h))", "the grouping factor must be column names joined by ':' or '/'", 15),
    ("y ~ (1 | a:b/c)", "lme4 misreads nesting within an interaction", 12),
    ("y ~ (0 | g)", "random-effects term (0 | g) has no intercept and no slopes", 4),
    ("y ~ foo(x)", "unknown function 'foo'; supported: abs, as.factor, as.numeric, bs, C, cbind, exp, factor, I, log, log10, log2, ns, offset, poly, scale, sqrt", 4),
    ("y ~ x + lag(x, 2)", "unknown function 'lag'", 8),
    ("y ~ factor(x > 1) + (1 | g)", "comparisons ('>') are not supported in a formula", 13),
    ("y ~ I(x != 1) + (1 | g)", "comparisons ('!=') are not supported in a formula", 8),
    ("y ~ log(x, 2)", "log() takes one argument, got 2", 4),
    ("y ~ log()", "log() takes one argument, got 0", 4),
    ("y ~ .", "'.' (all other columns) is not supported", 4),
    ("y ~ x + 2", "number 2 cannot be a model term; write arithmetic inside I()", 8),
    ("y ~ x:1", "1 can only be added or removed", 6),
    ("y ~ (x + z)^x", "the power in (a + b)^n must be a whole number of at least 2", 12),
    ("y ~ (x + z)^1", "the power in (a + b)^n must be a whole number of at least 2", 12),
    ("y ~ I(x:z)", "':' cannot be used inside I()", 7),
    ("y ~ log(x | g)", "'|' cannot be used inside log()", 10),
    ("a:b ~ x", "':' cannot be used inside the response", 1),
    ("1 ~ x", "the response must be a column of the data", 0),
    ("y ~ y + x", "the response y also appears on the right-hand side", 4),
    ("y ~ x %% z", "operator '%%' is not supported", 6),
    ("y ~ if + x", "'if' is a reserved word in R", 4),
    ("y ~ 1e", "malformed number", 4),
]


@pytest.mark.parametrize("text, message, position", ERRORS, ids=[e[0] or "<empty>" for e in ERRORS])
def test_errors(text, message, position):
    with pytest.raises(FormulaError) as info:
        parse_formula(text)
    err = info.value
    assert err.reason.startswith(message), err.reason
    assert err.position == position
    assert err.formula == text
    assert isinstance(err, UsageError) and err.exit_code == 2
    if position is not None:
        assert f"at column {position + 1} in formula: {text}" in str(err)


def test_error_message_reads_like_the_spec():
    text = "y ~ x + (1 | g) + z + w)"
    with pytest.raises(FormulaError) as info:
        parse_formula(text)
    assert str(info.value) == f"unexpected ')' at column 24 in formula: {text}"


def test_not_a_string():
    with pytest.raises(FormulaError):
        parse_formula(None)  # type: ignore[arg-type]


def test_parser_imports_nothing_heavy():
    code = (
        "import sys, mixcli.formula as m; m.parse_formula('y ~ x + (1|g)');"
        "heavy = {'numpy', 'pandas', 'scipy', 'pyarrow'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- robustness ----------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ALPHABET = "yxzg~~+-*/^:|||()()01 2.5e`'\"%,$I "
_WORDS = ["log(", "scale(", "I(", "(1 | g)", "(x || g)", "a/b", "%in%", "`a b`", " ~ "]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(list(_ALPHABET)), st.sampled_from(_WORDS)), max_size=25))
def test_any_text_parses_or_raises_formula_error(pieces):
    text = "".join(pieces)
    try:
        f = parse_formula(text)
    except FormulaError as err:
        assert err.position is None or 0 <= err.position <= len(text)
        assert err.reason
        return
    assert f.text == text
    assert all(isinstance(label, str) for label in f.term_labels)
    assert all(r.intercept or r.terms for r in f.random)
    assert set(f.variables()) >= set(f.response.columns())


def test_frame_variables_are_those_of_the_model_frame():
    f = parse_formula("log(y) ~ x - z + I(x^2) + (w + x | g/h) + (1 | g)")
    assert [e.label for e in f.frame_variables] == ["log(y)", "x", "z", "I(x^2)", "w", "g", "h"]
    assert f.term_labels == ["x", "I(x^2)"]


def test_a_formula_edits_itself_as_r_update_writes_it():
    """Formula.rewrite / without_fixed (R's update(), as ranova and reduce use it) and
    with_random_rewritten (the user's own text, as the singular-fit advice uses it)."""
    from mixcli.formula import parse_formula

    f = parse_formula("log(y) ~ x*z + offset(log(t)) + (x || g) + (1 | g/h)")
    assert f.response_text == "log(y)"
    assert f.fixed_text() == "x + z + x:z + offset(log(t))"
    # (one copy of the repeated (1 | g), as R keeps)
    assert f.rewrite() == "log(y) ~ x + z + x:z + offset(log(t)) + (1 | g) + (0 + x | g) + (1 | h:g)"
    assert f.without_fixed("x:z") == f"log(y) ~ x + z + offset(log(t)) + {' + '.join(dict.fromkeys(f.random_texts()))}"
    g = parse_formula("y ~ 0 + x + (x | g)")
    assert g.fixed_text() == "0 + x" and g.without_fixed("x") == "y ~ 0 + (x | g)"
    h = parse_formula("y ~ x + (x | g) + z + (1 | h)")
    spans = [rt.span for rt in h.random]
    assert h.with_random_rewritten({spans[1]: ""}) == "y ~ x + (x | g) + z"
    assert h.with_random_rewritten({spans[0]: ""}) == "y ~ x + z + (1 | h)"
    assert h.with_random_rewritten({spans[0]: "(x || g)"}) == "y ~ x + (x || g) + z + (1 | h)"
    first = parse_formula("y ~ (1 | g) + x")
    assert first.with_random_rewritten({first.random[0].span: ""}) == "y ~ x"
