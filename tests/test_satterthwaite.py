"""Satterthwaite df and p-values against lmerTest 3.1-3 (fixtures/lme4_reference.R), and the t tail."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mixcli
from mixcli.inference.distributions import norm_ppf, t_sf, t_two_sided

from conftest import CLASSROOM, FIXTURES, cached_table, load_json

DF_RTOL = 1e-3  # the issue's tolerances
P_ATOL = 1e-4



def _cases():
    out = []
    for name, data_dir in (("lme4_inference.json", FIXTURES / "data"), ("classroom_inference.json", CLASSROOM.parent)):
        path = FIXTURES / name
        if not path.exists():
            continue
        for mid, ref in load_json(path)["models"].items():
            if ref.get("satterthwaite"):
                out.append(pytest.param(data_dir / ref["csv"], ref, id=mid))
    return out


@pytest.mark.parametrize("csv,ref", _cases())
def test_df_and_p_match_lmertest(csv, ref):
    m = mixcli.fit(cached_table(csv), ref["formula"]).add_satterthwaite()
    assert m.ddf == "Satterthwaite"
    assert [f.term for f in m.fixef] == list(ref["satterthwaite"])
    for f in m.fixef:
        r = ref["satterthwaite"][f.term]
        assert abs(f.df - r["df"]) <= DF_RTOL * r["df"], (f.term, f.df, r["df"])
        assert abs(f.p - r["Pr(>|t|)"]) <= P_ATOL, (f.term, f.p, r["Pr(>|t|)"])
        # and in fact much closer than the issue asks, away from ill-conditioned fits
        if "temp + (temp" not in ref["formula"]:  # categorical_6: uncentred, lme4 does not converge
            assert abs(f.df - r["df"]) <= 3e-4 * r["df"], (f.term, f.df, r["df"])


@pytest.mark.parametrize("csv,ref", _cases())
def test_gradient_based_df_equal_criterion_based(csv, ref):
    """The Hessian from differences of the analytic gradient (used for models with many
    covariance parameters) gives the df that differences of the criterion give."""
    import mixcli.engine.curvature as curvature
    import mixcli.inference.satterthwaite as sat
    from mixcli.control import DEFAULT

    m = mixcli.fit(cached_table(csv), ref["formula"])
    df = {}
    for by_gradient in (False, True):
        control = DEFAULT.replace(gradient_from=0 if by_gradient else 10**6)
        m.curvature = curvature.curvature(m.structure, m.structure.to_working(m.theta), m.reml, control)
        df[by_gradient] = sat.fixef_tests(m)[0]
    ill = "temp + (temp" in ref["formula"]  # categorical_6: uncentred, lme4 does not converge
    np.testing.assert_allclose(df[True], df[False], rtol=1e-4 if ill else 2e-5)


def test_classroom_m17_issue_values():
    m = mixcli.fit(cached_table(CLASSROOM), "mathscore ~ ses + (ses | schoolid) + (1 | classid)").add_satterthwaite()
    df = {f.term: f.df for f in m.fixef}
    assert round(df["(Intercept)"], 1) == 101.0
    assert round(df["ses"], 1) == 71.3


def test_boundary_fit_gives_residual_df():
    """A random intercept estimated at zero: Var(β̂) does not move with θ there (the criterion
    is even in θ, as lmerTest's symmetric differences see it), so df = n − p exactly."""
    m = mixcli.fit(cached_table(FIXTURES / "data" / "singular.csv"), "y ~ x + (1 | g)").add_satterthwaite()
    assert m.singular
    for f in m.fixef:
        assert f.df == pytest.approx(m.nobs - len(m.fixef), rel=1e-9)


def test_ml_fit_uses_the_ml_deviance():
    """For an ML fit the Hessian is that of the deviance (no log|R_X|², m = n): the df differ
    from the REML fit's, and the σ–σ curvature is 4n/σ̂² at the optimum."""
    from mixcli.inference.satterthwaite import satterthwaite

    t = cached_table(FIXTURES / "data" / "categorical.csv")
    ml = mixcli.fit(t, "y ~ recipe + (1 | batch)", reml=False)
    s = satterthwaite(ml)
    assert s.hessian[-1, -1] == pytest.approx(4 * ml.nobs / ml.sigma**2, rel=1e-6)
    reml = mixcli.fit(t, "y ~ recipe + (1 | batch)")
    assert satterthwaite(reml).hessian[-1, -1] == pytest.approx(4 * (reml.nobs - 3) / reml.sigma**2, rel=1e-6)


def test_contrast_df_reduces_to_coefficient_df():
    from mixcli.inference.satterthwaite import satterthwaite

    m = mixcli.fit(cached_table(FIXTURES / "data" / "categorical.csv"), "y ~ recipe + (1 | batch)")
    s = satterthwaite(m)
    assert s.df([0, 1, 0]) == pytest.approx(s.fixef_df()[1], rel=1e-12)
    # the df of a scaled contrast do not depend on the scale
    assert s.df([0, 3, -3]) == pytest.approx(s.df([0, 1, -1]), rel=1e-10)


def test_t_tail_against_scipy():
    from scipy.special import stdtr

    rng = np.random.default_rng(7)
    for _ in range(3000):
        df = float(np.exp(rng.uniform(np.log(0.5), np.log(1e5))))
        t = float(rng.normal() * np.exp(rng.uniform(-5, 6)))
        ref = stdtr(df, -abs(t))
        if ref > 1e-290:
            assert t_sf(abs(t), df) == pytest.approx(ref, rel=1e-9, abs=0)
    assert t_two_sided(0.0, 10.0) == 1.0
    assert math.isnan(t_two_sided(math.nan, 10.0))
    assert t_sf(3.0, 1e12) == pytest.approx(0.5 * math.erfc(3 / math.sqrt(2)), rel=1e-9)


def test_normal_quantile():
    assert norm_ppf(0.975) == pytest.approx(1.959963984540054, rel=1e-14)
    assert norm_ppf(0.5) == 0.0
    assert norm_ppf(0.0) == -math.inf


def _cli(*args):
    from click.testing import CliRunner

    from mixcli.cli import main

    return CliRunner().invoke(main, list(args))


def test_cli_reports_df_and_p_and_ddf_none_turns_them_off():
    import json

    data = str(FIXTURES / "data" / "categorical.csv")
    formula = "y ~ recipe + (1 | batch)"
    ref = load_json(FIXTURES / "lme4_inference.json")["models"]["categorical_5"]["satterthwaite"]
    out = _cli("fit", data, formula, "--format", "json")
    assert out.exit_code == 0, out.stderr
    rec = json.loads(out.stdout)
    for f in rec["fixef"]:
        assert f["df"] == pytest.approx(ref[f["term"]]["df"], rel=DF_RTOL)
        assert f["p"] == pytest.approx(ref[f["term"]]["Pr(>|t|)"], abs=P_ATOL)
    table = _cli("fit", data, formula).stdout
    assert "df  t value  Pr(>|t|)" in table and "Signif. codes" in table

    out = _cli("fit", data, formula, "--ddf", "none", "--format", "json")
    rec = json.loads(out.stdout)
    assert all(f["df"] is None and f["p"] is None for f in rec["fixef"])
    assert "Pr(>|t|)" not in _cli("fit", data, formula, "--ddf", "none").stdout
    csv_out = _cli("fit", data, formula, "--ddf", "none", "--format", "csv").stdout
    assert csv_out.splitlines()[1].endswith(",,")  # df and p empty


def test_a_df_that_cannot_be_computed_gives_no_p_value():
    """min(1, NaN) is 1 in Python: a Satterthwaite df that could not be computed (NaN) printed
    Pr(>|t|) = 1. It is NaN, as lmerTest's would be; an infinite df is the normal tail."""
    from mixcli.inference.distributions import norm_cdf, t_two_sided

    assert math.isnan(t_two_sided(6.23, math.nan)) and math.isnan(t_two_sided(math.nan, 10.0))
    assert t_two_sided(2.0, math.inf) == pytest.approx(2.0 * norm_cdf(-2.0), rel=1e-12)
    assert t_two_sided(0.0, 5.0) == 1.0


def test_an_unbounded_likelihood_gets_no_df_and_no_internal_error():
    """y = a_g + b_g x exactly in two groups, y ~ x + (x | g): the likelihood has no maximum, θ runs
    to where the criterion's second differences are not finite, and eigh raised "Eigenvalues did not
    converge" (an internal error on the command line). The fit says the likelihood is unbounded, and
    the df and p-values are NaN with a note."""
    from mixcli import fit

    xs0, xs1 = [-2, -1, 0, 1, 2, 3, -1.5, 0.5], [-1, 0, 1, 2, -2, 2.5, 0.5, 1.5]
    data = {"y": [1 + 2 * x for x in xs0] + [-1 + 0.5 * x for x in xs1], "x": xs0 + xs1, "g": ["g0"] * 8 + ["g1"] * 8}
    m = fit(data, "y ~ x + (x | g)")
    assert any("so the likelihood has no maximum" in w for w in m.warnings)
    m.add_satterthwaite()
    assert all(math.isnan(f.df) and math.isnan(f.p) for f in m.fixef)
    assert any("Satterthwaite df cannot be computed" in n for n in m.notes())
