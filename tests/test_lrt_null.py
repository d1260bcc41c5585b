"""Pr(mix) appears exactly where its null distribution is right (``inference.lrt_null``).

The oracle for each number is the closed form of the chi-bar-square: one random effect added to a
block, ½χ²(Df−1) + ½χ²(Df) (Stram & Lee 1994); one added to each of two blocks,
¼χ²(Df−2) + ½χ²(Df−1) + ¼χ²(Df) (the issue's classroom value, 0.00831 for Chisq 7.6461 on 2 df,
is this formula); none for a correlation (an interior parameter) or for two effects added to one
block at once; and a note, not a χ² claim, for models that are not nested.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixcli.comparison import compare
from mixcli.inference.distributions import chi2_sf
from mixcli.render.compare import notes

from conftest import ROOT, cached_table, run_cli

SIM = ROOT / "mixcli" / "data" / "classroom_sim.csv"


def _test(small, big, **kw):
    comp = compare(cached_table(SIM), [small, big], **kw)
    return comp, comp.rows[1]


def test_one_added_intercept_is_the_50_50_mixture_of_chi2_0_and_1():
    comp, row = _test("mathscore ~ ses + (1 | schoolid)", "mathscore ~ ses + (1 | schoolid) + (1 | classid)")
    assert row.df == 1 and row.chisq > 1
    assert row.p_mixture == pytest.approx(0.5 * chi2_sf(row.chisq, 1), rel=1e-12)
    assert any("m2 vs m1: one random effect added" in n and "50:50" in n for n in notes(comp))


def test_a_slope_added_to_a_correlated_term_is_the_mixture_of_chi2_q_and_q_plus_1():
    _, row = _test("mathscore ~ ses + (1 | schoolid)", "mathscore ~ ses + (ses | schoolid)")
    assert row.df == 2
    assert row.p_mixture == pytest.approx(0.5 * chi2_sf(row.chisq, 1) + 0.5 * chi2_sf(row.chisq, 2), rel=1e-12)


def test_a_slope_added_to_a_correlated_term_of_two_is_chi2_2_and_3():
    _, row = _test("mathscore ~ ses + (ses | schoolid)", "mathscore ~ ses + (ses + absences | schoolid)")
    assert row.df == 3
    assert row.p_mixture == pytest.approx(0.5 * chi2_sf(row.chisq, 2) + 0.5 * chi2_sf(row.chisq, 3), rel=1e-12)


def test_a_correlation_alone_has_no_mixture():
    comp, row = _test("mathscore ~ ses + (ses || schoolid)", "mathscore ~ ses + (ses | schoolid)")
    assert row.df == 1 and row.null.nested and row.null.boundary_pieces == 0
    assert row.p_mixture is None and not comp.boundary_tests
    assert row.p == pytest.approx(chi2_sf(row.chisq, 1), rel=1e-12)
    assert not any("mixture" in n for n in notes(comp))


def test_two_added_terms_give_the_chi_bar_square_with_binomial_weights():
    _, row = _test("mathscore ~ ses + (1 | schoolid)",
                   "mathscore ~ ses + (1 | schoolid) + (1 | classid) + (0 + ses | schoolid)")
    c = row.chisq
    assert row.df == 2
    assert row.p_mixture == pytest.approx(0.5 * chi2_sf(c, 1) + 0.25 * chi2_sf(c, 2), rel=1e-12)


def test_the_issue_numbers_for_two_added_terms():
    # classroom.csv: Chisq 7.6461 on 2 df; the 50:50 rule gave 0.01378, the chi-bar-square 0.00831
    from mixcli.inference.lrt_null import LrtNull

    null = LrtNull(True, boundary_pieces=2)
    assert null.p_mixture(7.6461, 2) == pytest.approx(0.00831, abs=5e-6)
    assert LrtNull(True, boundary_pieces=1).p_mixture(7.6461, 2) == pytest.approx(0.01378, abs=5e-6)


def test_two_effects_added_to_one_block_get_no_mixture_but_a_note():
    comp, row = _test("mathscore ~ ses + (1 | schoolid)", "mathscore ~ ses + (1 + ses + absences | schoolid)")
    assert row.df == 5 and row.p_mixture is None and row.null.crowded == ["(1 + absences + ses | schoolid)"]
    assert any("gains two or more random effects at once" in n and "bootstrap" in n for n in notes(comp))


def test_an_added_fixed_effect_and_intercept_keeps_the_mixture_with_the_fixed_df():
    # the fixed effect is an interior parameter: it adds one df to both components
    _, row = _test("mathscore ~ 1 + (1 | schoolid)", "mathscore ~ ses + (1 | schoolid) + (1 | classid)")
    assert row.df == 2
    assert row.p_mixture == pytest.approx(0.5 * chi2_sf(row.chisq, 1) + 0.5 * chi2_sf(row.chisq, 2), rel=1e-12)


@pytest.mark.parametrize("small,big,why", [
    ("mathscore ~ ses + (1 | classid)", "mathscore ~ ses + (1 | schoolid)", "(1 | classid) is not part"),
    ("mathscore ~ ses + (1 | classid)", "mathscore ~ absences + (ses | classid)", "fixed effects are not among"),
])
def test_models_that_are_not_nested_get_a_note_and_no_mixture(small, big, why):
    comp, row = _test(small, big)
    assert not row.null.nested and row.p_mixture is None
    line = next(n for n in notes(comp) if "not nested" in n)
    assert why in line and "AIC and BIC" in line


def test_glmm_comparisons_use_the_same_rule():
    from mixcli.family import family

    comp, row = _test("pass ~ ses + (1 | schoolid)", "pass ~ ses + (1 | schoolid) + (1 | classid)",
                      family=family("binomial"))
    assert row.df == 1
    expected = 0.5 * chi2_sf(row.chisq, 1) if row.chisq > 0 else 1.0
    assert row.p_mixture == pytest.approx(expected, rel=1e-12)


def test_the_json_carries_p_mixture_only_where_it_applies():
    import json

    out = run_cli("compare", str(SIM), "mathscore ~ ses + (ses || schoolid)", "mathscore ~ ses + (ses | schoolid)",
                  "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["models"]
    assert rows[1]["p_mixture"] is None and np.isfinite(rows[1]["p"])
