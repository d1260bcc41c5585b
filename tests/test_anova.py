"""lmerTest's anova() F tests (mixcli.inference.anova) against fixtures/anova_reference.json
(written by fixtures/anova_reference.R), and their closed forms."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import mixcli
from mixcli.inference.anova import anova_table, f_sf
from mixcli.inference.distributions import chi2_sf, t_two_sided
from mixcli.inference.satterthwaite import satterthwaite

from conftest import FIXTURES, load_json

REF = load_json(FIXTURES / "anova_reference.json")["cases"]

_fits: dict = {}


def _fit(csv: str, formula: str, reml: bool = True, contrasts: str = "treatment", drop_rows=None):
    """A fit shared by every test that asks for it (a module of ~40 tables from 13 fits)."""
    key = (csv, formula, reml, contrasts, tuple(sorted((drop_rows or {}).items())))
    if key not in _fits:
        data = pd.read_csv(FIXTURES / "data" / csv)
        if drop_rows:  # leave out the rows matching every column = value, as the R script does
            hit = np.logical_and.reduce([data[col] == value for col, value in drop_rows.items()])
            data = data[~hit]
        _fits[key] = mixcli.fit(data, formula, reml=reml, contrasts=contrasts)
    return _fits[key]


def _close(ours, theirs, rel, what):
    assert ours is not None and math.isfinite(ours), f"{what}: {ours}"
    assert abs(ours - theirs) <= rel * abs(theirs), f"{what}: {ours} vs lmerTest {theirs}"


@pytest.mark.parametrize("case", sorted(REF))
def test_matches_lmertest(case):
    ref = REF[case]
    m = _fit(ref["csv"], ref["formula"], ref["reml"], ref["contrasts"], ref.get("drop_rows"))
    table = anova_table(m, type=ref["type"], ddf=ref["ddf"])
    assert table.ddf == ref["ddf"].lower()
    assert [r.term for r in table.rows] == [r["term"] for r in ref["rows"]]
    for ours, theirs in zip(table.rows, ref["rows"]):
        what = f"{case} {theirs['term']}"
        if theirs["numdf"] is None:  # nothing testable (aliased): lmerTest's all-NA row
            assert (ours.sumsq, ours.meansq, ours.numdf, ours.dendf, ours.F, ours.p) == (None,) * 6, what
            continue
        assert ours.numdf == theirs["numdf"], what
        _close(ours.F, theirs["F"], 1e-4, f"{what} F")
        _close(ours.sumsq, theirs["sumsq"], 1e-4, f"{what} Sum Sq")
        _close(ours.meansq, theirs["meansq"], 1e-4, f"{what} Mean Sq")
        if theirs["dendf"] is None:  # ddf = "lme4": lme4's table has neither
            assert ours.dendf is None and ours.p is None, what
            continue
        _close(ours.dendf, theirs["dendf"], 1e-4, f"{what} DenDF")
        if theirs["p"] < 1e-12:
            assert abs(ours.p - theirs["p"]) <= 1e-12, f"{what} p: {ours.p} vs {theirs['p']}"
        else:
            _close(ours.p, theirs["p"], 1e-3, f"{what} p")
    if any("Missing cells" in msg for msg in ref["messages"]):
        assert any(note.startswith("Missing cells for: ") for note in table.notes)


def test_single_df_term_is_the_t_test():
    """A term with one column and contained in no other is tested by its coefficient alone
    (type II, marginal; type III, highest order): F = t², DenDF = the coefficient's df."""
    m = _fit("crossed.csv", "rt ~ cond * freq + (1 | subj) + (1 | item)")
    s = satterthwaite(m)
    names = m.frame.fixef_names
    j = names.index("condb:freq")
    e = np.eye(len(names))[j]
    t = m.fixef[j].estimate / m.fixef[j].se
    for kind in (2, 3):
        row = anova_table(m, type=kind).rows[-1]
        assert row.term == "cond:freq" and row.numdf == 1
        assert row.F == pytest.approx(t * t, rel=1e-10)
        assert row.dendf == pytest.approx(s.df(e), rel=1e-10)
        assert row.p == pytest.approx(t_two_sided(t, s.df(e)), rel=1e-10)
        assert row.meansq == pytest.approx(row.F * m.sigma**2, rel=1e-12)
        assert row.sumsq == row.meansq


def test_f_is_invariant_to_the_coding():
    """Type III F values test the same hypotheses in every coding (only the DenDF of a
    multi-df term may move, with the eigen-contrasts)."""
    formula = "y ~ recipe * sex + region + (1 | batch)"
    tables = [anova_table(_fit("categorical.csv", formula, contrasts=c), type=3) for c in ("treatment", "sum")]
    for a, b in zip(*(t.rows for t in tables)):
        assert a.term == b.term and a.numdf == b.numdf
        assert a.F == pytest.approx(b.F, rel=1e-6)


def test_f_tail():
    # F(1, d) is t²; d2 = ∞ is χ²/q; P(F > 0) = 1
    for t, d in ((2.1, 7.5), (0.3, 40.0), (9.0, 3.2)):
        assert f_sf(t * t, 1, d) == pytest.approx(t_two_sided(t, d), rel=1e-12)
    assert f_sf(2.5, 3, math.inf) == pytest.approx(chi2_sf(7.5, 3), rel=1e-14)
    assert f_sf(0.0, 2, 10) == 1.0
    # R: pf(4, 3, 12, lower.tail = FALSE) and pf(200, 2, 430, lower.tail = FALSE)
    assert f_sf(4.0, 3, 12) == pytest.approx(0.0345903571556469, rel=1e-12)
    assert f_sf(200.0, 2, 430) == pytest.approx(3.92579925942374e-62, rel=1e-10)


def test_lme4_ignores_the_type():
    m = _fit("categorical.csv", "y ~ recipe * temp + (1 | batch)")
    table = anova_table(m, type=3, ddf="lme4")
    assert table.type == 1 and table.ddf == "lme4" and table.notes
    assert [r.F for r in table.rows] == [r.F for r in anova_table(m, type=1, ddf="lme4").rows]


@pytest.mark.parametrize("kind,ddf,message", [
    (4, "satterthwaite", "unknown anova type"),
    ("IV", "satterthwaite", "unknown anova type"),
    (3, "kenward-roger", "unknown ddf"),
])
def test_bad_arguments(kind, ddf, message):
    m = _fit("categorical.csv", "y ~ recipe * temp + (1 | batch)")
    with pytest.raises(ValueError, match=message):
        anova_table(m, type=kind, ddf=ddf)


def test_nothing_to_test():
    m = _fit("slopes.csv", "y ~ 1 + (1 | g)")
    with pytest.raises(ValueError, match="^nothing to test: "):
        anova_table(m)
