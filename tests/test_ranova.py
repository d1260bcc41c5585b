"""ranova against lmerTest's (fixtures/ranova_reference.R)."""

from __future__ import annotations

import math

import pytest

from mixcli.ranova import ranova

from conftest import FIXTURES, cached_table, load_json

REF = {k: v for k, v in load_json(FIXTURES / "ranova_reference.json").items() if not k.startswith("_")}


@pytest.mark.parametrize("case", sorted(REF))
def test_matches_lmertest(case):
    ref = REF[case]
    out = ranova(cached_table(ref["csv"]), ref["formula"], reml=ref["reml"])
    assert [r.term for r in out.rows] == [r["term"] for r in ref["rows"]]
    full = out.rows[0]
    # the full model at least as good as lme4's best
    assert -2 * full.loglik <= ref["best_criterion"] + 1e-6
    for ours, theirs in zip(out.rows, ref["rows"]):
        assert ours.npar == theirs["npar"], ours.term
        # lmerTest refits with lme4's default optimizer, which can stop short on a reduced model:
        # ours is never worse, and equal where lme4 reached the optimum
        assert ours.loglik >= theirs["loglik"] - 1e-6, (ours.term, ours.loglik, theirs["loglik"])
        if ours.loglik - theirs["loglik"] < 1e-5 and full.loglik - ref["rows"][0]["loglik"] < 1e-5:
            if theirs["lrt"] is not None:
                assert ours.lrt == pytest.approx(theirs["lrt"], abs=2e-5)
                assert ours.df == theirs["df"]
                if theirs["p"] is None:  # Df 0: R's pchisq with NA df
                    assert math.isnan(ours.p)
                elif theirs["p"] > 1e-10:
                    assert ours.p == pytest.approx(theirs["p"], rel=1e-3, abs=1e-6)
        assert ours.aic == pytest.approx(-2 * ours.loglik + 2 * ours.npar)


def test_one_random_term_is_tested_against_the_linear_model():
    ref = REF["one_term_REML"]
    out = ranova(cached_table(ref["csv"]), ref["formula"], reml=True)
    (row,) = out.rows[1:]
    assert row.term == "(1 | g)" and row.formula == "y ~ x"
    # R's logLik(lm(y ~ x), REML = TRUE), closed form through lmerTest
    assert row.loglik == pytest.approx(ref["rows"][1]["loglik"], rel=1e-12)
    assert math.isfinite(row.p)


def test_reductions_of_a_three_level_nesting_read_back_as_lme4_writes_them():
    from mixcli.formula import parse_formula
    from mixcli.ranova import reductions

    f = parse_formula("y ~ x + (1 | district/school/class)")
    names = [name for name, _ in reductions(f)]
    assert names == ["(1 | class:(school:district))", "(1 | school:district)", "(1 | district)"]
    # each reduced formula keeps the other two terms, with lme4's grouping names
    kept = parse_formula(reductions(f)[1][1])
    assert [rt.lme4_group_name for rt in kept.random] == ["class:(school:district)", "district"]


def test_the_table_says_its_chi2_p_values_are_conservative():
    """Every ranova test puts a variance at its bound: lmerTest prints plain χ² p-values, which
    mixcli keeps (the numbers users compare) with a note saying what they are."""
    from conftest import ROOT, run_cli

    out = run_cli("ranova", str(ROOT / "mixcli" / "data" / "classroom_sim.csv"),
                  "mathscore ~ ses + (ses | schoolid) + (1 | classid)")
    assert out.returncode == 0, out.stderr
    assert "each test sets a variance to its bound, 0: the χ² p-values (lmerTest's) are conservative" in out.stdout
