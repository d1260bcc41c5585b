"""Every seed model M14–M20, REML and ML, against lme4 1.1-31's best of three optimizers."""

from __future__ import annotations

import pytest

import mixcli

from conftest import CLASSROOM_REF, load_json
from lme4_checks import assert_matches_lme4

REF = load_json(CLASSROOM_REF) if CLASSROOM_REF.exists() else {}
CASES = [(name, method) for name in sorted(REF) for method in ("REML", "ML")]


@pytest.fixture(scope="module")
def fits(classroom_table):
    return {
        (name, method): mixcli.fit(classroom_table, REF[name]["formula"], reml=method == "REML")
        for name, method in CASES
    }


@pytest.mark.parametrize("name,method", CASES)
def test_matches_lme4(fits, name, method):
    assert_matches_lme4(fits[(name, method)], REF[name][method], name)


def test_m15_reaches_the_boundary_optimum_lme4s_default_misses(fits):
    ref = REF["M15"]["REML"]
    m = fits[("M15", "REML")]
    assert ref["default_criterion"] > ref["criterion"]  # the premise: nloptwrap stops short
    assert m.criterion < ref["default_criterion"] - 1e-7
    assert m.singular and min(m.theta[m.structure.theta_is_diag]) < 1e-4


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_nested_ids_m18_m19_m20_identical(fits, method):
    """(1|schoolid/classid2), (1|schoolid)+(1|schoolid:classid2) and (1|schoolid)+(1|classid).

    The three are the same model, so the same numbers to well below printed
    precision (the optimiser's stopping point differs by ~1e-6 relative,
    since the sums are accumulated in a different level order), and the same
    printed summary apart from the group names.
    """
    from rich.console import Console

    from mixcli.render.fit import table_renderables as fit_renderables

    m18, m19, m20 = (fits[(n, method)] for n in ("M18", "M19", "M20"))
    for other in (m18, m19):
        assert abs(other.criterion - m20.criterion) < 1e-8
        for a, b in zip(other.fixef, m20.fixef):
            assert abs(a.estimate - b.estimate) < 1e-5 * b.se
        for a, b in zip(other.varcorr, m20.varcorr):
            assert abs(a.sd - b.sd) < 1e-5 * b.sd
    assert [v.group for v in m18.varcorr] == ["classid2:schoolid", "schoolid", "Residual"]
    assert [v.group for v in m19.varcorr] == ["schoolid:classid2", "schoolid", "Residual"]

    def printed(m, group):
        console = Console(width=200, record=True, file=open("/dev/null", "w"))
        for r in fit_renderables(m):
            console.print(r)
        lines = console.export_text().replace(group, "CLASS").splitlines()
        return [line.replace(" ", "") for line in lines if not line.startswith("Formula")]

    assert printed(m18, "classid2:schoolid") == printed(m20, "classid") == printed(m19, "schoolid:classid2")


def test_singular_messages_follow_the_seed_analysis(fits):
    m15, m16 = fits[("M15", "REML")], fits[("M16", "REML")]
    assert any("correlation between (Intercept) and ses is estimated at +1" in w for w in m15.warnings)
    assert m15.warnings[-1].endswith("mathscore ~ ses + (ses | schoolid) + (ses || classid)")
    assert any("classid (ses) standard deviation is estimated at 0" in w for w in m16.warnings)
    assert m16.warnings[-1].endswith(REF["M17"]["formula"])
    assert not fits[("M17", "REML")].warnings
