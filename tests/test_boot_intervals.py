"""Parametric bootstrap intervals against lme4's confint(method = "boot") (fixtures/boot_reference.R, and
for glmer fits fixtures/glmm_boot_reference.R).

mixcli's draws are not R's, so the endpoints can only agree within Monte Carlo error: the SE of
a 2.5% percentile from N draws is about s·√(α(1−α)/N)/φ(z_α) ≈ 0.12·s for N = 500 (s the SD of
the parameter's bootstrap distribution, from R's replicates), √2 of that for the difference of
two independent runs; the test allows four such SEs."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mixcli
from mixcli.inference.boot_intervals import _norm_inter, bootstrap_intervals

from conftest import FIXTURES, cached_table, load_json

REF = {k: v for k, v in load_json(FIXTURES / "boot_reference.json").items() if not k.startswith("_")}


@pytest.mark.parametrize("case", sorted(REF))
def test_within_monte_carlo_error_of_lme4(case):
    ref = REF[case]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"])
    _assert_within_monte_carlo_error(m, ref)


def _assert_within_monte_carlo_error(m, ref):
    ivs, failed = bootstrap_intervals(m, ref["nsim"], seed=1, level=ref["level"])
    assert failed == 0
    assert [iv.parameter for iv in ivs] == ref["parameters"]
    se_q = math.sqrt(0.025 * 0.975 / ref["nsim"]) / 0.05844
    for iv, lo, hi, s in zip(ivs, ref["lower"], ref["upper"], ref["replicate_sd"]):
        tol = 4 * math.sqrt(2) * se_q * s
        assert abs(iv.lower - lo) <= tol, (iv.parameter, iv.lower, lo, tol)
        assert abs(iv.upper - hi) <= tol, (iv.parameter, iv.upper, hi, tol)


def test_reproducible_per_seed_and_independent_of_workers():
    m = mixcli.fit(cached_table("slopes.csv"), "y ~ x + (1 | g)")
    a, _ = bootstrap_intervals(m, 40, seed=7, workers=1)
    b, _ = bootstrap_intervals(m, 40, seed=7, workers=2)
    c, _ = bootstrap_intervals(m, 40, seed=8, workers=1)
    assert [(i.lower, i.upper) for i in a] == [(i.lower, i.upper) for i in b]
    assert [(i.lower, i.upper) for i in a] != [(i.lower, i.upper) for i in c]


def test_norm_inter_is_boots_percentile_rule():
    t = np.arange(1.0, 20.0)  # R = 19: (R + 1)·0.05 = 1 is a whole order statistic
    assert _norm_inter(t, 0.05) == 1.0 and _norm_inter(t, 0.95) == 19.0
    # (R + 1)·0.025 = 0.5 < 1: the smallest value (boot warns "extreme order statistics")
    assert _norm_inter(t, 0.025) == 1.0
    # between order statistics: interpolated on the normal scale, as boot's norm.inter
    t = np.arange(1.0, 100.0)  # R = 99, (R + 1)·0.025 = 2.5
    from mixcli.inference.distributions import norm_ppf

    z, z2, z3 = norm_ppf(0.025), norm_ppf(0.02), norm_ppf(0.03)
    assert _norm_inter(t, 0.025) == pytest.approx(2 + (z - z2) / (z3 - z2), rel=1e-12)


GLMM_REF = {k: v for k, v in load_json(FIXTURES / "glmm_boot_reference.json").items() if not k.startswith("_")}


@pytest.mark.parametrize("case", sorted(GLMM_REF))
def test_glmm_within_monte_carlo_error_of_glmer(case):
    """The same for glmer fits: the family's draws around simulated random effects, refitted in
    (θ, β); no σ. (glmer's estimates differ from mixcli's by ~1e-3 of an SE: far inside.)"""
    ref = GLMM_REF[case]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family=ref["family"])
    _assert_within_monte_carlo_error(m, ref)


def test_glmm_boot_from_the_command_line_and_json(tmp_path):
    import json

    from conftest import run_cli

    data = str(FIXTURES / "data" / "glmm_binary.csv")
    out = run_cli("fit", data, "pass ~ ses + (1 | schoolid)", "--family", "binomial", "--ci", "boot", "--nsim", "20",
                  "--seed", "3", "--format", "json")
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["ci"]["method"] == "bootstrap" and rec["ci"]["bootstrap"] == {"nsim": 20, "seed": 3, "failed": 0}
    assert [iv["parameter"] for iv in rec["ci"]["intervals"]] == ["sd_(Intercept)|schoolid"]
    assert all(f["lower"] < f["estimate"] < f["upper"] for f in rec["fixef"])
    out = run_cli("fit", data, "pass ~ ses + (1 | schoolid)", "--family", "binomial", "--nagq", "0", "--ci", "profile")
    assert out.returncode == 2 and "a --nagq 0 fit does not maximise" in out.stderr
