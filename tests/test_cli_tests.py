"""The commands for tests and model building: anova, ranova, reduce (JSON keys and R's numbers)."""

from __future__ import annotations

import json

import pytest

from conftest import CLASSROOM, FIXTURES, load_json, need
from conftest import run_cli as run

ANOVA = load_json(FIXTURES / "anova_reference.json")["cases"]
RANOVA = load_json(FIXTURES / "ranova_reference.json")


@pytest.mark.parametrize("key", ["cat_temp__type3__Satterthwaite", "cat_temp__type1__Satterthwaite"])
def test_anova_json_has_lmertests_numbers(key):
    ref = ANOVA[key]
    out = run("anova", str(FIXTURES / "data" / ref["csv"]), ref["formula"], "--type", str(ref["type"]),
              "--format", "json")
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert list(rec) == ["formula", "method", "type", "ddf", "terms", "warnings"]
    assert (rec["type"], rec["ddf"], rec["method"]) == (ref["type"], "satterthwaite", "REML")
    assert [t["term"] for t in rec["terms"]] == [r["term"] for r in ref["rows"]]
    for ours, theirs in zip(rec["terms"], ref["rows"]):
        assert ours["numdf"] == theirs["numdf"]
        assert ours["F"] == pytest.approx(theirs["F"], rel=1e-4)
        assert ours["dendf"] == pytest.approx(theirs["dendf"], rel=1e-4)
        assert ours["p"] == pytest.approx(theirs["p"], rel=1e-3)


def test_ranova_json_has_lmertests_numbers():
    ref = RANOVA["slopes_corr_REML"]
    out = run("ranova", str(FIXTURES / "data" / ref["csv"]), ref["formula"], "--format", "json")
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert list(rec) == ["formula", "method", "rows", "warnings"]
    assert [r["term"] for r in rec["rows"]] == [r["term"] for r in ref["rows"]]
    for ours, theirs in zip(rec["rows"], ref["rows"]):
        assert ours["npar"] == theirs["npar"]
        assert ours["loglik"] == pytest.approx(theirs["loglik"], abs=1e-5)


def test_reduce_json_lists_the_steps_and_the_final_model():
    out = run("reduce", str(need(CLASSROOM)), "mathscore ~ ses + (ses | schoolid) + (ses | classid)", "--format", "json")
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert list(rec) == ["formula", "method", "steps", "final", "model"]
    assert [s["action"] for s in rec["steps"]] == ["simplify", "simplify", "keep"]
    assert rec["final"] == "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
    assert rec["model"]["formula"] == rec["final"] and rec["model"]["singular"] is False


def test_anova_of_a_ml_fit_and_lme4s_table():
    data = str(FIXTURES / "data" / "categorical.csv")
    ref = ANOVA["cat_temp__type1__lme4"]
    rec = json.loads(run("anova", data, ref["formula"], "--ddf", "none", "--format", "json").stdout)
    assert rec["ddf"] == "none" and rec["type"] == 1
    assert all(t["dendf"] is None and t["p"] is None for t in rec["terms"])
    assert [t["F"] for t in rec["terms"]] == pytest.approx([r["F"] for r in ref["rows"]], rel=1e-4)
    ref = ANOVA["cat_temp_ml__type3__Satterthwaite"]
    rec = json.loads(run("anova", data, ref["formula"], "--ml", "--format", "json").stdout)
    assert rec["method"] == "ML"
    assert [t["F"] for t in rec["terms"]] == pytest.approx([r["F"] for r in ref["rows"]], rel=1e-4)


KR = load_json(FIXTURES / "kr_reference.json")


def test_kenward_roger_from_the_command_line_equals_pbkrtest():
    ref = KR["categorical"]
    data = str(FIXTURES / "data" / ref["csv"])
    rec = json.loads(run("fit", data, ref["formula"], "--ddf", "kr", "--format", "json").stdout)
    for f in rec["fixef"]:
        theirs = ref["coefficients"][f["term"]]
        assert f["se"] == pytest.approx(theirs["Std. Error"], rel=1e-5)
        assert f["df"] == pytest.approx(theirs["df"], rel=1e-4)
        assert f["p"] == pytest.approx(theirs["Pr(>|t|)"], rel=1e-3)
    rec = json.loads(run("anova", data, ref["formula"], "--ddf", "kr", "--format", "json").stdout)
    assert rec["ddf"] == "kr"
    assert [t["term"] for t in rec["terms"]] == list(ref["anova"])
    for t in rec["terms"]:
        theirs = ref["anova"][t["term"]]
        assert t["numdf"] == theirs["NumDF"]
        assert t["dendf"] == pytest.approx(theirs["DenDF"], rel=1e-4)
        assert t["F"] == pytest.approx(theirs["F value"], rel=1e-4)
        assert t["p"] == pytest.approx(theirs["Pr(>F)"], rel=1e-3)


def test_kenward_roger_of_an_ml_fit_is_one_line():
    out = run("anova", str(FIXTURES / "data" / "categorical.csv"), "y ~ recipe + (1 | batch)", "--ddf", "kr", "--ml")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("mixcli: error: Kenward-Roger needs a REML fit") and out.stderr.count("\n") == 1
