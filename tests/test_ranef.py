"""Conditional modes and conditional SDs against lme4's ranef(condVar = TRUE).

At lme4's own θ the computation must agree to 1e-6 (it is the same formula);
at mixcli's optimum, to the precision with which two optimisers locate θ.
"""

from __future__ import annotations

import json

import pytest

from mixcli.frame import model_frame
from mixcli.io import read_table
from mixcli.model import Model

from conftest import FIXTURES, load_json
from conftest import run_cli as run

INF = load_json(FIXTURES / "lme4_inference.json")["models"]
REF = load_json(FIXTURES / "lme4_reference.json")
CASES = sorted(m for m in INF if INF[m].get("ranef") and m in REF)


def by_key(records):
    return {(r["grpvar"], r["term"], str(r["grp"])): (r["condval"], r["condsd"]) for r in records}


@pytest.mark.parametrize("mid", CASES)
def test_ranef_at_lme4_theta(mid):
    ref = REF[mid]
    model = Model(model_frame(read_table(str(FIXTURES / "data" / ref["csv"])), ref["formula"]))
    m = model.result_at(ref["REML"]["theta"], reml=True)
    expected = by_key(INF[mid]["ranef"])
    got = {(g, term, lvl): (est, sd) for rt in m.ranef() for g, lvl, term, est, sd in rt.records()}
    assert set(got) == set(expected)
    scale = max(abs(v) for v, _ in expected.values()) or 1.0
    for key, (val, sd) in expected.items():
        assert got[key][0] == pytest.approx(val, abs=1e-6 * scale), key
        assert got[key][1] == pytest.approx(sd, rel=1e-6, abs=1e-9 * scale), key


def test_cli_ranef_formats():
    ref = REF["crossed_2"]
    path = str(FIXTURES / "data" / ref["csv"])
    out = run("fit", path, ref["formula"], "--ranef", "--format", "json")
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert list(rec) == ["formula", "method", "ranef"]
    rows = rec["ranef"]
    assert set(rows[0]) == {"group", "level", "term", "estimate", "sd"}
    expected = by_key(INF["crossed_2"]["ranef"])
    assert len(rows) == len(expected)
    for r in rows:
        val, sd = expected[(r["group"], r["term"], r["level"])]
        assert r["estimate"] == pytest.approx(val, rel=1e-4, abs=1e-3)
        assert r["sd"] == pytest.approx(sd, rel=1e-4)
    csv_out = run("fit", path, ref["formula"], "--ranef", "--format", "csv")
    assert csv_out.stdout.splitlines()[0] == "formula,method,group,level,term,estimate,sd"
    assert len(csv_out.stdout.splitlines()) == len(expected) + 1
    # --ci adds lme4's condVar bars: mode ± z · conditional SD
    ci_rows = json.loads(run("fit", path, ref["formula"], "--ranef", "--ci", "0.9", "--format", "json").stdout)["ranef"]
    for r in ci_rows:
        assert r["lower"] == pytest.approx(r["estimate"] - 1.6448536269514722 * r["sd"], rel=1e-12, abs=1e-12)
        assert r["upper"] == pytest.approx(r["estimate"] + 1.6448536269514722 * r["sd"], rel=1e-12, abs=1e-12)
