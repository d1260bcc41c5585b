"""The control record: one place for every setting of a fit, passed in and reported back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import mixcli
from mixcli.control import DEFAULT, Control
from mixcli.simulate import example_path

DATA = str(example_path())
M16 = "mathscore ~ ses + (ses | schoolid) + (ses || classid)"


def test_defaults_are_the_documented_values_each_with_a_source():
    # lme4's isSingular tolerance, and the optimiser's tolerances the reference fits were made with
    assert DEFAULT.singular_tol == 1e-4
    assert (DEFAULT.ftol_abs, DEFAULT.ftol_rel, DEFAULT.xtol_abs, DEFAULT.max_eval) == (1e-10, 1e-15, 1e-10, 100_000)
    assert DEFAULT.seed == 20261130 and DEFAULT.second_start == 10.0
    sources = Control.sources()
    assert set(sources) == set(DEFAULT.as_dict())
    assert "isSingular" in sources["singular_tol"]
    json.dumps(DEFAULT.as_dict())  # plain JSON values


def test_replace_refuses_unknown_settings_and_text_is_converted_to_the_settings_type():
    with pytest.raises(TypeError, match="no setting maxeval"):
        DEFAULT.replace(maxeval=5)
    c = DEFAULT.with_text("max_eval", "500").with_text("ftol_abs", "1e-8").with_text("segment_probes", "0.5")
    assert (c.max_eval, c.ftol_abs, c.segment_probes) == (500, 1e-8, (0.5,))
    assert c.changes() == {"max_eval": 500, "ftol_abs": 1e-8, "segment_probes": [0.5]}
    for name, text, message in [("max_eval", "1e3", "whole number"), ("ftol_abs", "tight", "a number"),
                                ("max_eval", "-1", "negative"), ("maxeval", "5", "did you mean max_eval")]:
        with pytest.raises(ValueError, match=message):
            DEFAULT.with_text(name, text)


def test_the_fit_uses_the_control_it_is_given_and_keeps_it():
    default = mixcli.fit(DATA, M16, reml=False)
    assert default.control is DEFAULT
    assert any("10 × the start" in s for s in default.optsummary.stages)
    one_start = mixcli.fit(DATA, M16, reml=False, control=DEFAULT.replace(second_start=0))
    assert one_start.control.second_start == 0
    assert not any("× the start" in s for s in one_start.optsummary.stages)
    assert one_start.optsummary.evaluations < default.optsummary.evaluations
    assert one_start.criterion == pytest.approx(default.criterion, rel=1e-12)  # (the same minimum here)
    limited = mixcli.fit(DATA, M16, reml=False, control=DEFAULT.replace(max_eval=5))
    assert not limited.converged and limited.optsummary.evaluations <= 6


def test_a_glmm_passes_its_control_to_pirls_and_both_stages():
    # (newton_iterations=0: the second stage by BOBYQA, whose tolerances these are, without Newton's steps first)
    bobyqa = DEFAULT.replace(newton_iterations=0)
    loose = bobyqa.replace(stage1_ftol_abs=1e-2, stage1_ftol_rel=0.0, stage1_xtol_abs=1e-2, singular_tol=0.5)
    g = mixcli.fit(DATA, "pass ~ ses + (1 | schoolid)", family="binomial", control=bobyqa)
    h = mixcli.fit(DATA, "pass ~ ses + (1 | schoolid)", family="binomial", control=loose)
    assert h.control is loose and h.data.control is loose
    assert h.optsummary.ftol_abs == 1e-2 and h.optsummary.evaluations < g.optsummary.evaluations
    assert h.criterion == pytest.approx(g.criterion, abs=0.05) and h.criterion >= g.criterion - 1e-9
    # the singular flag takes the control's tolerance: a school SD (θ) below 0.5 counts as singular
    assert h.singular == (h.theta[0] < 0.5) and g.singular == (g.theta[0] < 1e-4)
    # Newton's second stage (the default here: a logit link) stops at its own tolerance: looser (and the first
    # Hessian the standard errors'), one step fewer
    n = mixcli.fit(DATA, "pass ~ ses + (1 | schoolid)", family="binomial")
    m = mixcli.fit(DATA, "pass ~ ses + (1 | schoolid)", family="binomial",
                   control=DEFAULT.replace(glmm_newton_tol=1.0, glmm_newton_precise=10.0))
    assert m.optsummary.evaluations < n.optsummary.evaluations
    assert m.criterion == pytest.approx(n.criterion, abs=0.05) and n.criterion <= g.criterion + 1e-9


def test_compare_fits_every_model_with_the_control():
    c = DEFAULT.replace(second_start=0)
    comp = mixcli.compare(DATA, ["mathscore ~ ses + (1 | schoolid)", M16], control=c)
    assert all(row.model.control is c for row in comp.rows)


def test_the_command_line_takes_settings_and_the_json_reports_them():
    cmd = [sys.executable, "-m", "mixcli", "fit", DATA, M16, "--ml", "--format", "json",
           "--control", "second_start=0", "--control", "max_eval=400"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["control"]["second_start"] == 0 and rec["control"]["max_eval"] == 400
    assert {k: v for k, v in rec["control"].items() if v != DEFAULT.as_dict()[k]} == {"second_start": 0,
                                                                                       "max_eval": 400}
