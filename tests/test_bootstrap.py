"""Parametric bootstrap of the likelihood-ratio statistic (mixcli compare --bootstrap)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mixcli
from mixcli.engine.factor import evaluate
from mixcli.engine.structure import ModelStructure
from mixcli.frame import model_frame
from mixcli.inference.bootstrap import bootstrap_lrt, make_job, simulate_response
from mixcli.model import Model

from conftest import CLASSROOM, FIXTURES, cached_table

SLOPES = FIXTURES / "data" / "slopes.csv"


def _ml(path, formula):
    return Model(model_frame(cached_table(path), formula)).fit(reml=False)


@pytest.mark.parametrize("path,formula", [
    (SLOPES, "y ~ x + (x | g)"),  # one vector term
    (SLOPES, "y ~ x + (1 | a) + (1 | b) + (1 | a:b)"),  # a nested chain, then a crossed (dense) term
    (FIXTURES / "data" / "crossed.csv", "rt ~ cond + (1 + cond | subj) + (1 | item)"),
    (FIXTURES / "data" / "nested3.csv", "y ~ x + (1 | district/school/class)"),  # scalar first term: eliminated
])
def test_new_response_gives_the_criteria_of_a_fresh_structure(path, formula):
    from mixcli.engine import factor

    m = mixcli.fit(cached_table(path), formula)
    st = m.structure
    if hasattr(factor, "criterion"):
        factor.criterion(st, m.theta, True)  # let the engine build whatever it caches on st
    rng = np.random.default_rng(3)
    y = st.xy[:, -1] + rng.normal(scale=st.xy[:, -1].std(), size=st.n)
    cheap = st.with_response(y)
    fresh = ModelStructure(m.frame.terms, np.column_stack([st.xy[:, :-1], y]))
    for _ in range(3):
        th = m.theta * rng.uniform(0.5, 1.5, size=len(m.theta))
        for reml in (True, False):
            want = evaluate(fresh, th).criterion(reml)
            assert evaluate(cheap, th).criterion(reml) == pytest.approx(want, rel=1e-11)
            if hasattr(factor, "criterion"):
                assert factor.criterion(cheap, th, reml) == pytest.approx(want, rel=1e-11)
    assert evaluate(st, m.theta).criterion(True) == pytest.approx(m.criterion, rel=1e-12)  # original untouched


def test_replicate_seeds_are_the_children_of_the_seed():
    kids = np.random.SeedSequence(42).spawn(5)
    for i, kid in enumerate(kids):
        a = np.random.default_rng(kid).standard_normal(4)
        b = np.random.default_rng(np.random.SeedSequence(42, spawn_key=(i,))).standard_normal(4)
        assert np.array_equal(a, b)


def test_simulated_responses_have_the_models_moments():
    """y* = Xβ̂ + Zb* + ε*: mean Xβ̂; for (1 | g), Var = σ_g² + σ² and within-group Cov = σ_g²."""
    small = _ml(SLOPES, "y ~ x + (1 | g)")
    job = make_job(small, small, reml=False, seed=0)
    rng = np.random.default_rng(1)
    ys = np.array([simulate_response(job, rng) for _ in range(4000)])
    sg2 = small.varcorr[0].variance
    s2 = small.sigma**2
    assert np.abs(ys.mean(axis=0) - job.mean).max() < 5 * np.sqrt((sg2 + s2) / 4000)
    assert ys.var(axis=0).mean() == pytest.approx(sg2 + s2, rel=0.03)
    codes = small.frame.terms[0].codes
    i, j = np.flatnonzero(codes == codes[0])[:2]
    assert np.cov(ys[:, i], ys[:, j])[0, 1] == pytest.approx(sg2, rel=0.15)


def test_reproducible_and_independent_of_the_number_of_processes():
    small = _ml(SLOPES, "y ~ x + (1 | g)")
    big = _ml(SLOPES, "y ~ x + (x || g)")
    one = bootstrap_lrt(small, big, 48, seed=11, workers=1)
    two = bootstrap_lrt(small, big, 48, seed=11, workers=2)
    assert np.array_equal(one.replicates, two.replicates)
    assert two.workers == 2 and one.failed == 0
    other = bootstrap_lrt(small, big, 48, seed=12, workers=1)
    assert not np.array_equal(one.replicates, other.replicates)
    t = one.statistic
    assert t == pytest.approx(2 * (big.loglik - small.loglik))
    assert one.p_value == (1 + np.sum(one.replicates >= t - 1e-6)) / (48 + 1)
    assert np.all(one.replicates >= 0)


def test_classroom_m14_m17():
    """The seed analysis' test of the class variance: the χ² p-value (0.031) is conservative;
    under the null about half of the statistics are 0 and the bootstrap p-value is near the
    50:50 mixture's 0.015."""
    m14 = _ml(CLASSROOM, "mathscore ~ ses + (ses | schoolid)")
    m17 = _ml(CLASSROOM, "mathscore ~ ses + (ses | schoolid) + (1 | classid)")
    res = bootstrap_lrt(m14, m17, 120, seed=2024)
    assert res.statistic == pytest.approx(4.6584, abs=1e-3)
    zero = np.mean(res.replicates < 1e-6)
    assert 0.4 <= zero <= 0.8, zero
    assert res.p_value < 0.05
    assert res.p_value == (1 + res.exceed) / 121


def test_compare_cli_reports_p_boot():
    from click.testing import CliRunner

    from mixcli.cli import main

    f1, f2 = "y ~ x + (1 | g)", "y ~ x + (x || g)"
    args = ["compare", str(SLOPES), f1, f2, "--names", "A,B", "--bootstrap", "16", "--seed", "5"]
    out = CliRunner().invoke(main, args + ["--format", "json"])
    assert out.exit_code == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["bootstrap"] == {"n": 16, "seed": 5, "failed": 0}
    first, second = rec["models"]
    assert first["p_boot"] is None
    assert 1 / 17 <= second["p_boot"] <= 1
    again = json.loads(CliRunner().invoke(main, args + ["--format", "json", "--jobs", "1"]).stdout)
    assert again["models"][1]["p_boot"] == second["p_boot"]

    table = CliRunner().invoke(main, args).stdout
    assert "Pr(boot)" in table and "seed 5" in table
    csv_out = CliRunner().invoke(main, args + ["--format", "csv"]).stdout
    assert csv_out.splitlines()[0].endswith(",p_mixture,p_boot")

    plain = json.loads(CliRunner().invoke(main, ["compare", str(SLOPES), f1, f2, "--format", "json"]).stdout)
    assert plain["bootstrap"] is None and all(r["p_boot"] is None for r in plain["models"])
    bad = CliRunner().invoke(main, ["compare", str(SLOPES), f1, f2, "--seed", "3"])
    assert bad.exit_code == 2


# ---------------------------------------------------------------- GLMMs

GLMM_COUNTS = FIXTURES / "data" / "glmm_counts.csv"
GLMM_BINARY = FIXTURES / "data" / "glmm_binary.csv"


def _glmm(path, formula, fam):
    from mixcli.family import family
    from mixcli.glmm import GlmmModel

    return GlmmModel(model_frame(cached_table(path), formula, family=family(fam))).fit()


@pytest.mark.parametrize("path,formula,fam", [
    (GLMM_COUNTS, "ticks ~ cheight + (1 | location)", "poisson"),
    (GLMM_BINARY, "pass ~ ses + (1 | schoolid) + (1 | classid)", "binomial"),
])
def test_a_glmm_refit_of_the_observed_response_is_the_fit(path, formula, fam):
    """A replicate's refit starts from the estimate: on the data themselves it must return the
    fit's own −2 logLik (the optimum: not lower, beyond the optimiser's tolerance)."""
    m = _glmm(path, formula, fam)
    job = make_job(m, m, reml=False, seed=0)
    again = job.small.refit(m.data.y)
    assert again == pytest.approx(m.criterion, abs=1e-5)


def test_simulated_counts_have_the_models_moments():
    """Poisson, log link, (1 | g): E y* = exp(Xβ̂ + σ²/2) and Var y* = E y* + (E y*)² (e^{σ²} − 1),
    the lognormal-Poisson closed forms."""
    m = _glmm(GLMM_COUNTS, "ticks ~ cheight + (1 | location)", "poisson")
    job = make_job(m, m, reml=False, seed=0)
    s2 = m.varcorr[0].variance
    rng = np.random.default_rng(4)
    ys = np.array([simulate_response(job, rng) for _ in range(4000)])
    mean = np.exp(job.mean + s2 / 2)
    var = mean + mean**2 * np.expm1(s2)
    z = (ys.mean(axis=0) - mean) / np.sqrt(var / 4000)
    assert np.abs(z).max() < 5  # every row's mean, within 5 of its standard errors
    assert ys.var(axis=0).mean() == pytest.approx(var.mean(), rel=0.1)
    assert np.all(ys == np.round(ys)) and ys.min() >= 0


def test_glmm_bootstrap_is_reproducible_and_independent_of_the_number_of_processes():
    small = _glmm(GLMM_BINARY, "pass ~ ses + (1 | schoolid)", "binomial")
    big = _glmm(GLMM_BINARY, "pass ~ ses + (1 | schoolid) + (1 | classid)", "binomial")
    one = bootstrap_lrt(small, big, 16, seed=3, workers=1)
    two = bootstrap_lrt(small, big, 16, seed=3, workers=2)
    assert np.array_equal(one.replicates, two.replicates) and one.failed == 0
    assert one.statistic == pytest.approx(2 * (big.loglik - small.loglik))
    assert np.all(one.replicates >= 0)
    # binary draws: every y* is 0/1
    ys = simulate_response(make_job(small, big, reml=False, seed=3), np.random.default_rng(0))
    assert set(np.unique(ys)) <= {0.0, 1.0}


def test_compare_cli_bootstraps_glmms():
    from click.testing import CliRunner

    from mixcli.cli import main

    args = ["compare", str(GLMM_COUNTS), "ticks ~ cheight + (1 | location)",
            "ticks ~ cheight + (1 | location/brood)", "--family", "poisson", "--bootstrap", "16", "--seed", "5"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.stderr
    assert "Pr(boot)" in out.stdout and "refitted by ML (Laplace) (seed 5)" in out.stdout
