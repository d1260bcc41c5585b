"""mixcli reduce: the seed's path on the classroom data, and backward elimination by ranova."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mixcli.ranova import ranova
from mixcli.reduce import reduce_model
from mixcli.table import Table

from conftest import SHARED, cached_table, need

M15 = "mathscore ~ ses + (ses | schoolid) + (ses | classid)"
M16 = "mathscore ~ ses + (ses | schoolid) + (ses || classid)"
M17 = "mathscore ~ ses + (ses | schoolid) + (1 | classid)"


def test_classroom_from_m15_by_way_of_m16_to_m17():
    table = cached_table(need(SHARED / "data" / "classroom.csv"))
    red = reduce_model(table, M15)
    assert [(s.formula, s.action, s.result) for s in red.steps] == [
        (M15, "simplify", M16),
        (M16, "simplify", M17),
        (M17, "keep", M17),
    ]
    assert "correlation between (Intercept) and ses is estimated at +1" in red.steps[0].reason
    assert "(ses) standard deviation is estimated at 0" in red.steps[1].reason
    assert red.final == M17 and not red.model.singular
    # the tests consulted at the last step are ranova's of M17
    expected = ranova(table, M17)
    assert [t["term"] for t in red.steps[2].tests] == [r.term for r in expected.rows[1:]]
    assert [t["p"] for t in red.steps[2].tests] == pytest.approx([r.p for r in expected.rows[1:]], rel=1e-6)


def _weak_second_factor(seed: int = 0) -> Table:
    """30 groups with a clear effect, crossed with 12 whose effect (SD 0.12 against a residual SD
    of 1) the data cannot tell from zero."""
    rng = np.random.default_rng(seed)
    g, h = np.repeat(np.arange(30), 8), np.tile(np.arange(12), 20)
    x = rng.normal(size=240)
    y = 1 + 0.5 * x + rng.normal(size=30)[g] + 0.12 * rng.normal(size=12)[h] + rng.normal(size=240)
    return Table.from_mapping(pd.DataFrame({"y": y, "x": x, "g": g, "h": h}))


def test_a_random_term_with_p_above_alpha_is_dropped_and_the_rest_kept():
    table = _weak_second_factor()
    first = ranova(table, "y ~ x + (1 | g) + (1 | h)")
    p = {r.term: r.p for r in first.rows[1:]}
    assert p["(1 | h)"] > 0.1 > p["(1 | g)"]
    red = reduce_model(table, "y ~ x + (1 | g) + (1 | h)")
    assert [(s.action, s.result) for s in red.steps] == [("drop random", "y ~ x + (1 | g)"),
                                                           ("keep", "y ~ x + (1 | g)")]
    assert f"p = {p['(1 | h)']:.4g} > 0.1" in red.steps[0].reason
    # a stricter alpha keeps it
    kept = reduce_model(table, "y ~ x + (1 | g) + (1 | h)", alpha_random=0.5)
    assert kept.final == "y ~ x + (1 | g) + (1 | h)"


def test_fixed_terms_are_eliminated_by_type_iii_f_tests_respecting_marginality():
    from mixcli import fit
    from mixcli.inference.anova import anova_table

    table = cached_table("categorical.csv")
    start = "y ~ recipe * temp + sex + (1 | batch)"
    red = reduce_model(table, start, fixed=True)
    assert [(s.action, s.result) for s in red.steps] == [
        ("keep", start),
        ("drop fixed", "y ~ recipe + temp + sex + (1 | batch)"),
        ("keep", "y ~ recipe + temp + sex + (1 | batch)"),
    ]
    # recipe (p = 0.29) is not tested for removal while recipe:temp (p = 0.06) contains it
    p = {r.term: r.p for r in anova_table(fit(table, start)).rows}
    assert p["recipe"] > p["recipe:temp"] > 0.05
    assert red.steps[1].reason.startswith("recipe:temp: F = ")
    assert all(t["p"] <= 0.05 for t in red.steps[2].tests)


def test_fixed_elimination_can_end_at_the_intercept():
    table = _weak_second_factor()
    # z is noise: dropped; then nothing but the intercept is left to test
    import numpy as np

    from mixcli.table import Table

    cols = {name: table.columns[name] for name in table.names}
    cols["z"] = np.random.default_rng(5).normal(size=table.nrows)
    red = reduce_model(Table(cols), "y ~ z + (1 | g)", fixed=True)
    assert [s.action for s in red.steps] == ["keep", "drop fixed", "keep"]
    assert red.final == "y ~ 1 + (1 | g)"
    assert red.steps[-1].reason.startswith("no fixed-effect term is left")


def test_a_model_whose_every_random_effect_is_zero_reduces_to_the_linear_model():
    red = reduce_model(cached_table("singular.csv"), "y ~ x + (1 | g)")
    assert [(s.action, s.result) for s in red.steps] == [("simplify", "y ~ x")]
    assert red.final == "y ~ x" and red.model is None


def test_the_final_model_has_lmertests_df_and_p_values_as_fit_prints_them():
    import mixcli

    table = _weak_second_factor()
    red = reduce_model(table, "y ~ x + (1 | g) + (1 | h)")
    direct = mixcli.fit(table, red.final).add_satterthwaite()
    for got, want in zip(red.model.fixef, direct.fixef):
        assert got.df is not None and got.df == pytest.approx(want.df, rel=1e-10)
        assert got.p == pytest.approx(want.p, rel=1e-10)
