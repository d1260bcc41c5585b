"""Notes drawn from the data, not the formula: the nesting mistake and a 0/1 response fitted as Gaussian."""

from __future__ import annotations

import mixcli

from conftest import FIXTURES, SHARED, cached_table, need

NESTED3 = FIXTURES / "data" / "nested3.csv"  # schools numbered 1..6 within each of 15 districts


def _nesting_notes(m):
    return [msg for msg in m.messages if "labels shared across" in msg]


def test_labels_numbered_within_another_factor_are_pointed_out_with_the_fix():
    m = mixcli.fit(cached_table(NESTED3), "y ~ x + (1 | district) + (1 | school)")
    (note,) = _nesting_notes(m)
    assert note.startswith("school has 6 labels shared across the 15 levels of district "
                           "(59 district:school combinations)")
    assert "(1 | district/school)" in note and "mixcli nest" in note


def test_no_note_when_the_nesting_is_written_or_the_design_is_crossed():
    assert not _nesting_notes(mixcli.fit(cached_table(NESTED3), "y ~ x + (1 | district/school)"))
    assert not _nesting_notes(mixcli.fit(cached_table(NESTED3), "y ~ x + (1 | district) + (1 | district:school)"))
    # subjects × items, one row per pair: crossed by design
    assert not _nesting_notes(mixcli.fit(cached_table("crossed.csv"), "rt ~ cond + (1 | subj) + (1 | item)"))


def test_classroom_classid2_is_flagged_and_not_proposed_for_dropping():
    data = cached_table(need(SHARED / "data" / "classroom.csv"))
    m = mixcli.fit(data, "mathscore ~ ses + (1 | schoolid) + (1 | classid2)")
    (note,) = _nesting_notes(m)
    assert note.startswith("classid2 has 9 labels shared across the 107 levels of schoolid "
                           "(312 schoolid:classid2 combinations)")
    # lme4's fit of this formula is singular; the advice must not be "drop classid2"
    assert m.singular
    assert not any("simpler model" in w for w in m.warnings)
    assert any("classid2 may be numbered within schoolid" in w for w in m.warnings)


def test_a_zero_one_response_fitted_as_gaussian_points_at_binomial():
    m = mixcli.fit(cached_table("glmm_binary.csv"), "pass ~ ses + (1 | schoolid)")
    # (the library names the argument, family='binomial'; the command line its flag, --family binomial)
    assert any("only takes the values 0 and 1" in msg and "family='binomial'" in msg for msg in m.notes())
    g = mixcli.fit(cached_table("glmm_binary.csv"), "pass ~ ses + (1 | schoolid)", family="binomial")
    assert not any("only takes the values 0 and 1" in msg for msg in g.messages)


def test_a_few_whole_number_codes_fitted_as_a_number_point_at_factor():
    m = mixcli.fit(cached_table("slopes.csv"), "y ~ x + b + (1 | g)")
    (note,) = [msg for msg in m.messages if "codes for groups" in msg]
    assert note.startswith("b takes only the values 1, 2, 3, 4, 5, 6: it is fitted as a number (one slope)")
    assert "factor(b)" in note
    # written as a factor, or a measurement with many values: no note
    assert not any("codes for groups" in msg
                   for msg in mixcli.fit(cached_table("slopes.csv"), "y ~ x + factor(b) + (1 | g)").messages)
    assert not any("codes for groups" in msg
                   for msg in mixcli.fit(cached_table("categorical.csv"), "y ~ temp + (1 | batch)").messages)


# ---------------------------------------------------------------------------------------------
# a number column with a typo: read as text, it would silently become a factor


def _typo_data(cells: dict[int, str]):
    import pandas as pd

    data = pd.read_csv(FIXTURES / "data" / "slopes.csv")
    x = [f"{v:.3f}" for v in data["x"]]
    for i, value in cells.items():
        x[i] = value
    data["x"] = x  # an object column of strings, as a CSV column with text in it is read
    return data


def _typo_notes(m):
    return [msg for msg in m.messages if "is numbers except for" in msg]


def test_a_number_column_with_a_typo_is_named_with_its_cells_and_the_fixes():
    m = mixcli.fit(_typo_data({16: "five"}), "y ~ x + (1 | g)")
    (note,) = _typo_notes(m)
    assert note.startswith("column 'x' is numbers except for 1 cell ('five' on row 17), so it is read as text "
                           "and fitted as a factor")
    assert "leave the cell empty or write NA" in note and "write factor(x)" in note
    assert len(m.fixef) > 100  # what the note warns of: a coefficient per distinct value


def test_typos_that_make_the_model_impossible_are_named_in_its_error():
    import pytest

    from mixcli.errors import DataError

    # as a random slope, the text column has a random effect per value and group: too many to fit
    data = _typo_data({i: v for i, v in zip(range(3, 30, 4), ["n/a", ".", "?", "-", "x", "NaN?", "o"])})
    with pytest.raises(DataError) as err:
        mixcli.fit(data, "y ~ z + (1 | g) + (0 + x | a)")
    msg = str(err.value)
    assert msg.startswith("number of observations (=450) <= number of random effects")
    assert "… (420 columns) | a)" in msg  # the term's 420 columns are not all listed
    assert ("column 'x' is numbers except for 7 cells ('n/a' on row 4; '.' on row 8; '?' on row 12; '-' on row 16; "
            "'x' on row 20 and 2 more)") in msg


def test_no_note_for_factor_x_or_for_a_text_column():
    assert not _typo_notes(mixcli.fit(_typo_data({16: "five"}), "y ~ factor(x) + (1 | g)"))
    # 11 text cells: more than a few typos, a column that is text on purpose
    assert not _typo_notes(mixcli.fit(_typo_data({i: f"t{i}" for i in range(11)}), "y ~ x + (1 | g)"))
    assert not _typo_notes(mixcli.fit(cached_table("slopes.csv"), "y ~ a + (1 | g)"))


def test_a_response_constant_within_every_group_is_refused_whatever_the_row_order():
    """The check looks at each group's rows wherever they are in the file: a response constant within
    every group is refused, one group that varies (or groups of one row each) is fitted."""
    import numpy as np
    import pytest

    from mixcli.errors import DataError

    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(12), 4)
    order = rng.permutation(len(g))
    g = g[order]
    x = rng.normal(size=len(g))
    y = 10.0 + g  # the group's number: constant within each group
    with pytest.raises(DataError, match="does not vary within the levels of g"):
        mixcli.fit({"y": y, "x": x, "g": g}, "y ~ x + (1 | g)")
    varied = y.copy()
    varied[np.flatnonzero(g == 7)[2]] += 0.5  # one row of one group differs
    assert mixcli.fit({"y": varied, "x": x, "g": g}, "y ~ x + (1 | g)").sigma > 0
