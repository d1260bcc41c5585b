"""ICC and Nakagawa's R² against the R package performance (fixtures/icc_reference.R and
fixtures/poisson_icc_reference.R)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import mixcli
from mixcli.inference.variance_explained import variance_explained

from conftest import FIXTURES, cached_table, load_json, run_cli

REF = {k: v for k, v in load_json(FIXTURES / "icc_reference.json").items() if not k.startswith("_")}
KEYS = {"var_fixed": "fixed", "var_random": "random", "var_residual": "residual",
        "icc_adjusted": "icc_adjusted", "icc_unadjusted": "icc_unadjusted",
        "r2_marginal": "r2_marginal", "r2_conditional": "r2_conditional"}


LMMS = sorted(k for k, v in REF.items() if "family" not in v)
GLMMS = sorted(k for k, v in REF.items() if "family" in v)


@pytest.mark.parametrize("mid", LMMS)
def test_matches_performance(mid):
    ref = REF[mid]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"])
    assert m.criterion <= ref["criterion"] + 1e-6
    _check(variance_explained(m), ref, rel=1e-4)


# glmer stops short of the optimum (mixcli's log-likelihood is above its by 3e-4 to 1.5e-3 here,
# except under cloglog, where glmer's own logLik is evaluated off its modes: test_glmm_lme4), so
# the variances, each fit's own estimates, agree to 0.1-0.4%; performance's conventions (which
# variances, the latent residual) are checked at 1%, the formula on mixcli's estimates exactly.
GLMM_REL = 1e-2


@pytest.mark.parametrize("mid", GLMMS)
def test_binomial_glmms_match_performance(mid):
    """The same decomposition on the latent scale: the residual is the link's distribution
    variance (π²/3, 1, π²/6)."""
    ref = REF[mid]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family=ref["family"], link=ref["link"])
    assert m.loglik >= ref["loglik"] - 2e-3
    v = variance_explained(m)
    assert v.residual == pytest.approx(ref["var_residual"], rel=1e-14)
    assert v.partition == []
    _check(v, ref, rel=GLMM_REL)
    # closed forms at mixcli's estimates: random intercepts add their variances; Xβ's sample variance
    assert v.random == pytest.approx(sum(c.variance for c in m.varcorr), rel=1e-12)
    eta_fixed = np.asarray(m.frame.X) @ np.array([f.estimate for f in m.fixef])
    assert v.fixed == pytest.approx(float(np.var(eta_fixed, ddof=1)), rel=1e-12)
    total = v.fixed + v.random + v.residual
    assert (v.icc_adjusted, v.icc_unadjusted, v.r2_marginal, v.r2_conditional) == pytest.approx(
        (v.random / (v.random + v.residual), v.random / total, v.fixed / total, (v.fixed + v.random) / total),
        rel=1e-12)


POISSON = {k: v for k, v in load_json(FIXTURES / "poisson_icc_reference.json").items() if not k.startswith("_")}
# the sqrt link: mixcli's optimum is 22 above glmer's in logLik (another mode of PIRLS, see
# test_glmm_lme4's DIFFERENT_OPTIMUM), so only its conventions are compared
SAME_OPTIMUM = sorted(k for k in POISSON if POISSON[k]["link"] != "sqrt")


@pytest.mark.parametrize("mid", SAME_OPTIMUM)
def test_poisson_and_overdispersed_glmms_match_performance(mid):
    """performance 0.10.2 (fixtures/poisson_icc_reference.R): a Poisson GLMM's distribution
    variance is log(1 + 1/μ), μ = exp(β₀) of the null model refitted (offset kept); an
    observation-level term's variance is residual ("dispersion"), also for a binomial model."""
    ref = POISSON[mid]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family=ref["family"], link=ref["link"])
    assert m.loglik >= ref["loglik"] - 1e-6
    v = variance_explained(m)
    _check(v, ref, rel=2e-4)
    assert v.dispersion == pytest.approx(ref["var_dispersion"], rel=2e-4, abs=1e-12)
    if ref["family"] == "poisson":
        assert v.null_mean == pytest.approx(math.exp(ref["null_intercept"]), rel=2e-5)
        assert v.residual - v.dispersion == pytest.approx(ref["var_distribution"], rel=2e-5)
        assert any("too close to zero" in n for n in v.notes) == any("too close to zero" in n for n in ref["messages"])
    else:
        assert v.residual - v.dispersion == pytest.approx(ref["var_distribution"], rel=1e-14)


def test_the_sqrt_link_needs_no_refit():
    ref = POISSON["counts_sqrt"]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family="poisson", link="sqrt")
    v = m.variance_explained(refit=False)
    assert v is not None and v.null_mean is None and v.residual == ref["var_residual"] == 0.25


def test_a_poisson_decomposition_is_computed_when_asked():
    """The fit's summary does not refit the null model (variance_explained(refit=False) is None,
    the JSON's icc null) unless asked: a Python call, or fit --r2."""
    from mixcli.render.fit import glmm_record

    ref = POISSON["counts_offset"]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family="poisson")
    assert m.variance_explained(refit=False) is None and glmm_record(m)["icc"] is None
    with pytest.warns(UserWarning, match="too close to zero"):  # (μ = 1.7, as performance warns)
        v = m.variance_explained()
    assert m.variance_explained(refit=False) is v
    assert glmm_record(m)["icc"]["adjusted"] == pytest.approx(ref["icc_adjusted"], rel=2e-4)
    args = ["fit", str(FIXTURES / "data" / ref["csv"]), ref["formula"], "--family", "poisson", "--format", "json"]
    asked = json.loads(run_cli(*args, "--r2").stdout)
    assert asked["r2"]["conditional"] == pytest.approx(ref["r2_conditional"], rel=2e-4)
    assert json.loads(run_cli(*args).stdout)["r2"] is None


def _check(v, ref, rel):
    checked = 0
    for key, attr in KEYS.items():
        if ref["singular"] and key in ("var_random", "r2_marginal", "icc_adjusted", "icc_unadjusted",
                                        "r2_conditional"):
            # performance gives NA for the random variance of a singular fit, and then a marginal
            # R² of fixed / (fixed + residual); mixcli keeps the (estimated) random variance.
            continue
        assert getattr(v, attr) == pytest.approx(ref[key], rel=rel, abs=1e-10), key
        checked += 1
    assert checked >= 2


def test_random_intercepts_partition_the_variance_by_level():
    m = mixcli.fit(cached_table("nested3.csv"), "y ~ x + (1 | district/school)")
    v = variance_explained(m)
    names = [g for g, _, _ in v.partition]
    assert names == ["school:district", "district", "Residual"]
    assert math.fsum(s for _, _, s in v.partition) == pytest.approx(1.0, abs=1e-12)
    # closed form: each share is that level's variance over the sum of the variance components
    variances = {(c.group): c.variance for c in m.varcorr}
    total = sum(variances.values())
    for g, var, share in v.partition:
        assert var == pytest.approx(variances[g], rel=1e-12)
        assert share == pytest.approx(variances[g] / total, rel=1e-12)
    # ICC adjusted = the random levels' share
    assert v.icc_adjusted == pytest.approx(1 - v.partition[-1][2], rel=1e-12)


def test_slopes_missing_from_the_fixed_part_are_named():
    v = variance_explained(mixcli.fit(cached_table("slopes.csv"), "y ~ x + (1 | g) + (0 + z | g)"))
    assert any("(z)" in n for n in v.notes)


NBG = {k: v for k, v in load_json(FIXTURES / "nbinom_gamma_icc_reference.json").items() if not k.startswith("_")}
NBG_FITTED = sorted(k for k, v in NBG.items() if "icc_adjusted" in v and v.get("csv") and v["icc_adjusted"] is not None)


@pytest.mark.parametrize("mid", NBG_FITTED)
def test_nbinom2_and_gamma_glmms_match_performance(mid):
    """performance 0.10.2 (fixtures/nbinom_gamma_icc_reference.R): nbinom2 (log link): log(1 + 1/μ
    + 1/k), μ = exp(β₀) of the null model refitted with k held at the fit's; Gamma: σ² (lme4's
    sigma()), whatever the link, and the random variances σ²ΛΛᵀ as VarCorr() reports them.

    Tolerances: mixcli's log-likelihood is within 4e-6 of glmer's or above it (by up to 1.2e-5;
    test_glmm_families allows 5e-5), and over such flat optima the variance estimates, each fit's own, move by up to 1.6e-4
    (relative); the ICC and R² are ratios of them, compared at 2e-4. The variances are compared at
    5e-4: performance's null model for grouseticks stopped with max|grad| = 5e-3 (its μ 7e-4 from
    mixcli's; mixcli's null model's likelihood is asserted below). performance's
    conventions are checked exactly on mixcli's own estimates."""
    ref = NBG[mid]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family=ref["family"], link=ref["link"])
    assert m.loglik >= ref["loglik"] - 1e-5
    v = variance_explained(m)
    for key in ("icc_adjusted", "icc_unadjusted", "r2_marginal", "r2_conditional"):
        assert getattr(v, key) == pytest.approx(ref[key], rel=2e-4, abs=1e-12), key
    for key in ("var_fixed", "var_random", "var_residual"):
        assert getattr(v, KEYS[key]) == pytest.approx(ref[key], rel=5e-4, abs=1e-12), key
    assert v.dispersion == ref["var_dispersion"] == 0
    if ref["family"] == "nbinom2":
        k = m.dispersion
        assert k == pytest.approx(ref["dispersion"], rel=1e-4)
        assert v.residual == pytest.approx(math.log1p(1 / v.null_mean + 1 / k), rel=1e-12)
        # the null model: the response on the random terms (offset kept), k held at the fit's
        from mixcli.family import family

        null = mixcli.fit(cached_table(ref["csv"]), m.frame.formula.null_model(),
                          family=family("nbinom2").with_dispersion(k, fixed=True))
        assert null.dispersion is None and null.npar == 1 + len(null.theta)
        assert math.exp(null.fixef[0].estimate) == pytest.approx(v.null_mean, rel=1e-12)
        # (at glmer.nb's k, mixcli's null model is as good as insight's, to the optimisers' 1e-5)
        at_r = mixcli.fit(cached_table(ref["csv"]), m.frame.formula.null_model(),
                          family=family("nbinom2").with_dispersion(ref["dispersion"], fixed=True))
        assert at_r.loglik >= ref["null_loglik"] - 1e-5
        assert v.null_mean == pytest.approx(math.exp(ref["null_intercept"]), rel=1e-3)
        assert any("too close to zero" in n for n in v.notes) == any("too close to zero" in n for n in ref["messages"])
    else:
        assert m.sigma == pytest.approx(ref["sigma"], rel=1e-4)
        assert v.residual == m.sigma ** 2 and v.null_mean is None and v.notes == []
        if "Days |" not in ref["formula"]:  # (random intercepts: the sum of VarCorr()'s σ²-scaled variances)
            assert v.random == pytest.approx(sum(c.variance for c in m.varcorr if c.group != "Residual"), rel=1e-12)


NB1 = load_json(FIXTURES / "nbinom1_icc_reference.json")["cases"]


@pytest.mark.parametrize("mid", sorted(NB1))
def test_nbinom1_glmms_match_performance(mid):
    """performance 0.10.2 on glmmTMB 1.1.5's nbinom1 (fixtures/nbinom1_icc_reference.R): log(1 + (1 +
    φ)/μ) with the full model's φ (its sigma()) and μ = exp(β₀) of the null model, which insight
    refits with glmmTMB, φ estimated again (the reference's var_distribution is that to 1e-15, and
    not the same with the null model's φ). mixcli's fits agree with glmmTMB's to 7e-5 (φ, the SDs;
    test_glmm_families), so the ratios are compared at 2e-4 as for nbinom2 and Gamma."""
    ref = NB1[mid]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family="nbinom1")
    assert m.loglik >= ref["loglik"] - 1e-5
    assert m.variance_explained(refit=False) is None  # (a refit: only when asked)
    v = variance_explained(m)
    for key in ("icc_adjusted", "icc_unadjusted", "r2_marginal", "r2_conditional"):
        assert getattr(v, key) == pytest.approx(ref[key], rel=2e-4, abs=1e-12), key
    for key in ("var_fixed", "var_random", "var_residual"):
        assert getattr(v, KEYS[key]) == pytest.approx(ref[key], rel=5e-4, abs=1e-12), key
    assert v.residual == pytest.approx(math.log1p((1 + m.dispersion) / v.null_mean), rel=1e-12)
    assert v.null_mean == pytest.approx(math.exp(ref["null_intercept"]), rel=1e-3)
    assert any("too close to zero" in n for n in v.notes) == any("too close to zero" in n for n in ref["messages"])


def test_only_the_log_link_of_a_count_glmm_refits():
    """nbinom2 (log) waits to be asked, as Poisson does; Gamma (any link) and nbinom2's sqrt link
    (0.25, insight's constant) need no refit and are computed with the summary."""
    ref = NBG["epil_nbinom2"]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family="nbinom2")
    assert m.variance_explained(refit=False) is None
    with pytest.warns(UserWarning, match="too close to zero"):
        v = m.variance_explained()
    assert v.icc_adjusted == pytest.approx(ref["icc_adjusted"], rel=2e-4)
    sqrt = mixcli.fit(cached_table("epil.csv"), "y ~ lbase + trt + (1 | subject)", family="nbinom2", link="sqrt")
    assert sqrt.variance_explained(refit=False).residual == 0.25
    ref = NBG["sleepstudy1_gamma_log"]
    g = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family="Gamma", link="log")
    assert g.variance_explained(refit=False).r2_conditional == pytest.approx(ref["r2_conditional"], rel=2e-4)


def test_a_link_performance_refuses_gives_no_number():
    """insight's .badlink: a count family's identity link has no distribution variance; performance
    warns and returns NA, mixcli warns when asked and returns None (the JSON's icc null)."""
    from mixcli.inference.variance_explained import unsupported
    from mixcli.render.fit import glmm_record

    ref = NBG["refused_nbinom2_identity"]
    assert ref["icc_adjusted"] is None and any("not yet supported" in s for s in ref["messages"])
    m = mixcli.fit(cached_table("cbpp.csv"), "incidence ~ 1 + (1 | herd)", family="nbinom2", link="identity")
    assert "identity link" in unsupported(m)
    with pytest.warns(UserWarning, match="no ICC or R² for a nbinom2 GLMM with the identity link"):
        assert m.variance_explained() is None
    assert glmm_record(m)["icc"] is None
    args = ["fit", str(FIXTURES / "data" / "cbpp.csv"), "incidence ~ 1 + (1 | herd)", "--family", "nbinom2",
            "--link", "identity", "--format", "json"]
    out = run_cli(*args, "--r2")
    assert json.loads(out.stdout)["r2"] is None
    assert out.stderr.count("no ICC or R²") == 1
