"""`mixcli compare` against lme4's anova(M14, M17, M16) on the classroom data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mixcli.comparison import compare_models
from mixcli.errors import DataError, UsageError
from mixcli.inference.distributions import chi2_sf
from mixcli.table import Table, TextColumn

from conftest import CLASSROOM, CLASSROOM_ANOVA, load_json, need
from conftest import run_cli as run

M14 = "mathscore ~ ses + (ses | schoolid)"
M17 = "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
M16 = "mathscore ~ ses + (ses | schoolid) + (ses || classid)"


def test_reproduces_lme4_anova():
    ref = load_json(CLASSROOM_ANOVA)
    # given out of order on purpose: rows are sorted by npar
    out = run("compare", str(need(CLASSROOM)), M16, M14, M17, "--names", "M16,M14,M17", "--format", "json")
    assert out.returncode == 0, out.stderr
    assert "refitting models with ML (instead of REML)" in out.stderr
    got = json.loads(out.stdout)
    assert got["refit"] is True
    assert [m["name"] for m in got["models"]] == [r["model"] for r in ref] == ["M14", "M17", "M16"]
    for ours, theirs in zip(got["models"], ref):
        assert set(ours) >= {"name", "formula", "npar", "aic", "bic", "loglik", "deviance", "chisq", "df", "p"}
        assert ours["npar"] == theirs["npar"]
        for key, rkey in (("aic", "AIC"), ("bic", "BIC"), ("loglik", "logLik"), ("deviance", "deviance")):
            assert ours[key] == pytest.approx(theirs[rkey], abs=1e-3)
        if theirs["Chisq"] is None:
            assert ours["chisq"] is None and ours["df"] is None and ours["p"] is None
        else:
            assert ours["chisq"] == pytest.approx(theirs["Chisq"], abs=1e-3)
            assert ours["df"] == theirs["Df"]
            assert ours["p"] == pytest.approx(theirs["Pr(>Chisq)"], abs=1e-4)
    m17 = got["models"][1]
    assert m17["p_mixture"] == pytest.approx(0.5 * m17["p"], rel=1e-9)  # one variance on the boundary


def test_table_has_stars_and_boundary_note():
    out = run("compare", str(need(CLASSROOM)), M14, M17, "--names", "M14,M17")
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("M17 "))
    assert line.rstrip().endswith("*") and "4.6584" in line
    assert "Pr(mix)" in out.stdout and "50:50 mixture" in out.stdout


def test_csv_output():
    out = run("compare", str(need(CLASSROOM)), M14, M17, "--format", "csv")
    assert out.returncode == 0, out.stderr
    header, first, second = out.stdout.splitlines()
    assert header.startswith("name,formula,npar,aic,bic,loglik,deviance,chisq,df,p")
    assert first.startswith("m1,") and second.startswith("m2,")


def test_refuses_models_on_different_rows():
    rng = np.random.default_rng(0)
    n = 200
    g = rng.integers(0, 20, n)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    z[:7] = np.nan
    y = 1 + x + rng.normal(size=20)[g] + rng.normal(size=n)
    t = Table({"y": y, "x": x, "z": z, "g": TextColumn.from_values([f"g{i}" for i in g])})
    with pytest.raises(DataError, match="same size of dataset.*200 rows.*193.*7 rows differ"):
        compare_models(t, ["y ~ x + (1 | g)", "y ~ x + z + (1 | g)"])


def test_no_refit_needs_identical_fixed_effects(classroom_table):
    with pytest.raises(UsageError, match="different fixed effects"):
        compare_models(classroom_table, ["mathscore ~ 1 + (1 | schoolid)", M14], refit=False)
    comp = compare_models(classroom_table, [M14, M17], refit=False)
    assert not comp.refit
    assert all(r.model.reml for r in comp.rows)


@pytest.mark.parametrize("x,df", [(0.5, 1), (4.658, 1), (3.0, 2), (10.0, 3), (30.0, 7), (200.0, 12)])
def test_chi2_tail_closed_forms(x, df):
    from scipy.stats import chi2

    assert chi2_sf(x, df) == pytest.approx(chi2.sf(x, df), rel=1e-12)
    assert chi2_sf(0.0, df) == 1.0 and chi2_sf(1.0, 0) == 0.0
    assert math.isnan(chi2_sf(float("nan"), df))
