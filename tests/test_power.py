"""mixcli power against oracles: the noncentral t of a balanced cluster-randomised design, the
full fit path on individual replicates, R's simulation loop (fixtures/power_reference.R), and
the exact binomial interval.

In a balanced cluster-randomised design (J clusters of m rows, treatment on half the clusters,
random intercepts) the REML fit's Satterthwaite t test of the treatment is the t test on the
cluster means with J − 2 df, so its power is that of a noncentral t with
ncp = δ / √(4 v / J), v = σ_u² + σ²/m (two levels) or σ_s² + σ_c²/k + σ²/(k m) (classes in
schools, treatment by school). Simulated power must be within 3 Monte Carlo SEs of it.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from scipy import stats

from mixcli.errors import MixcliError, UsageError
from mixcli.power_analysis import (
    _setup,
    clopper_pearson,
    find_target,
    pilot_parameters,
    power,
    resize_along,
    resize_within,
)

from conftest import CLASSROOM, FIXTURES, ROOT, need

SIM = ROOT / "mixcli" / "data" / "classroom_sim.csv"
M17 = "mathscore ~ ses + (ses | schoolid) + (1 | classid)"


def exact_power(J: int, v: float, delta: float, alpha: float = 0.05) -> float:
    df = J - 2
    ncp = delta / math.sqrt(4.0 * v / J)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def within_mc(row, expected: float, k: float = 3.0):
    se = math.sqrt(expected * (1 - expected) / row.nsim)
    assert abs(row.power - expected) <= k * se, (row.size, row.power, expected, se)


@pytest.mark.parametrize("J0, m, icc, delta, sizes", [
    (10, 10, 0.2, 0.5, [10, 20]),
    (8, 20, 0.3, 0.8, [8, 16, 24]),
    (12, 4, 0.5, 1.0, [6, 12]),  # fewer levels than the pilot: a subset
])
def test_two_level_cluster_randomised_matches_the_noncentral_t(J0, m, icc, delta, sizes):
    res = power(None, "y ~ treat + (1 | cluster)", "treat", design=f"cluster={J0}, n={m}, treat=half/cluster",
                fixef={"treat": delta}, sd={"cluster": icc**0.5}, sigma=(1 - icc) ** 0.5, along="cluster",
                sizes=sizes, nsim=1000, seed=11)
    assert [r.size for r in res.rows] == sizes and [r.rows for r in res.rows] == [s * m for s in sizes]
    for row in res.rows:
        assert row.failed == 0
        within_mc(row, exact_power(row.size, icc + (1 - icc) / m, delta))


@pytest.mark.parametrize("J, k, m, sds, delta", [
    (10, 3, 8, (0.4, 0.3, 1.0), 0.6),
    (16, 2, 10, (0.3, 0.2, 0.9), 0.4),
])
def test_three_level_treatment_by_school_matches_the_noncentral_t(J, k, m, sds, delta):
    s_s, s_c, s = sds
    res = power(None, "y ~ treat + (1 | school) + (1 | class)", "treat",
                design=f"school={J}, class={k}/school, n={m}, treat=half/school", fixef={"treat": delta},
                sd={"school": s_s, "class": s_c}, sigma=s, along="school", sizes=[J, 2 * J], nsim=800, seed=12)
    for row in res.rows:
        within_mc(row, exact_power(row.size, s_s**2 + s_c**2 / k + s**2 / (k * m), delta))


def test_kenward_roger_in_a_balanced_design_is_the_same_exact_t():
    """Kenward–Roger's df are J − 2 here too (the adjusted covariance equals the unadjusted one)."""
    res = power(None, "y ~ treat + (1 | cluster)", "treat", design="cluster=10, n=6, treat=half/cluster",
                method="kr", fixef={"treat": 0.8}, sd={"cluster": 0.6}, sigma=1.0, nsim=600, seed=4)
    assert res.method == "kr" and res.rows[0].failed == 0
    within_mc(res.rows[0], exact_power(10, 0.36 + 1 / 6, 0.8))


@pytest.mark.parametrize("design, formula, sds", [
    ("cluster=14, n=8, treat=half/cluster", "y ~ treat + (1 | cluster)", {"cluster": 0.6}),
    ("school=12, class=3/school, n=6, treat=half/school", "y ~ treat + (1 | school) + (1 | class)",
     {"school": 0.5, "class": 0.4}),
])
def test_without_an_effect_the_rejection_rate_is_alpha(design, formula, sds):
    """δ = 0: J − 2 df give a test of level alpha (too many df would reject too often)."""
    res = power(None, formula, "treat", design=design, sd=sds, sigma=1.0, nsim=1500, seed=13)
    within_mc(res.rows[0], 0.05)


def _classroom_setup(test, method="satterthwaite", **changes):
    from mixcli.fitting import fit_frame
    from mixcli.frame import model_frame
    from mixcli.io import read_table
    from mixcli.power_analysis import change_parameters

    table = read_table(str(SIM))
    frame = model_frame(table, changes.pop("formula", M17))
    pilot = fit_frame(frame)
    params = change_parameters(pilot_parameters(pilot), **changes)
    target = find_target(frame, test)
    return frame, _setup(frame, params, target, method, 1, 0.05, 5, 0, table, "treatment")


def _simulated(job, i):
    from mixcli.inference.bootstrap import simulate_response
    from mixcli.inference.pool import replicate_rng

    return simulate_response(job.sim, replicate_rng(job.seed, job.key, i))


def test_each_replicate_tests_what_mixcli_fit_prints():
    """The fast path (refit from the true θ̃ on the shared structure, one contest) gives the p-value
    of the full fit's Satterthwaite t test, replicate by replicate."""
    from mixcli.fitting import fit_frame

    frame, job = _classroom_setup("ses", fixef={"ses": 3.0})
    for i in range(6):
        y = _simulated(job, i)
        p_fast, singular = job.test(y, exact=True)
        m = fit_frame(replace(frame, y=y)).add_satterthwaite()
        f = m.fixef[1]
        assert f.term == "ses"
        assert p_fast == pytest.approx(f.p, rel=1e-5)
        assert singular == m.singular
        # without exact, the df are computed only when |t| could be significant: the same decision
        p_quick, _ = job.test(y)
        assert (p_quick < 0.05) == (f.p < 0.05) and p_quick <= f.p + 1e-9


def test_a_multi_column_term_gets_the_anova_f_test():
    from mixcli.fitting import fit_frame
    from mixcli.inference.anova import anova_table

    formula = "mathscore ~ ses * classid2 + (1 | schoolid)"
    frame, job = _classroom_setup("ses:classid2", formula=formula)
    for i in range(2):
        y = _simulated(job, i)
        p_fast, _ = job.test(y, exact=True)
        m = fit_frame(replace(frame, y=y))
        row = next(r for r in anova_table(m).rows if r.term == "ses:classid2")
        assert p_fast == pytest.approx(row.p, rel=1e-5)


def test_likelihood_ratio_of_a_fixed_term_is_that_of_two_ml_fits():
    from mixcli.fitting import fit_frame
    from mixcli.frame import model_frame
    from mixcli.inference.distributions import chi2_sf
    from mixcli.io import read_table

    frame, job = _classroom_setup("ses", method="lrt", fixef={"ses": 3.0})
    small = model_frame(read_table(str(SIM)), "mathscore ~ 1 + (ses | schoolid) + (1 | classid)")
    for i in range(2):
        y = _simulated(job, i)
        p_fast, _ = job.test(y)
        big = fit_frame(replace(frame, y=y), reml=False)
        lo = fit_frame(replace(small, y=y), reml=False)
        assert p_fast == pytest.approx(chi2_sf(2 * (big.loglik - lo.loglik), 1), rel=1e-4)


def test_random_term_likelihood_ratio_uses_the_boundary_mixture():
    from mixcli.fitting import fit_frame
    from mixcli.frame import model_frame
    from mixcli.inference.distributions import chi2_sf
    from mixcli.io import read_table

    frame, job = _classroom_setup("(1 | classid)", method="lrt")
    small = model_frame(read_table(str(SIM)), "mathscore ~ ses + (ses | schoolid)")
    y = _simulated(job, 0)
    p_fast, _ = job.test(y)
    stat = 2 * (fit_frame(replace(frame, y=y)).loglik - fit_frame(replace(small, y=y)).loglik)
    assert p_fast == pytest.approx(0.5 * chi2_sf(stat, 1) + 0.5 * (stat <= 0), rel=1e-4)


def test_the_result_does_not_depend_on_the_number_of_workers():
    a = power(str_table(), M17, "ses", fixef={"ses": 3.0}, nsim=24, seed=3, workers=1)
    b = power(str_table(), M17, "ses", fixef={"ses": 3.0}, nsim=24, seed=3, workers=2)
    assert a.records() == b.records()
    c = power(str_table(), M17, "ses", fixef={"ses": 3.0}, nsim=24, seed=4, workers=2)
    assert c.records() != a.records()


def str_table():
    from mixcli.io import read_table

    return read_table(str(SIM))


def test_agrees_with_r_simulation_loop():
    """fixtures/power_reference.R: simr's procedure with lme4 and lmerTest on the classroom data,
    simulating from lme4's pilot fit (whose optimum is a hair off mixcli's: the parameters are
    passed as R had them)."""
    ref = json.loads((FIXTURES / "power_reference.json").read_text())["ses4"]
    from mixcli.io import read_table

    th, s = ref["theta"], ref["sigma"]  # lme4's order: (1 | classid), then (ses | schoolid)
    slope = math.hypot(th[2], th[3])
    res = power(read_table(str(need(CLASSROOM))), M17, "ses", fixef=ref["fixef"], sigma=s,
                sd={"classid": s * th[0], "schoolid": s * th[1], "schoolid|ses": s * slope},
                cor={"schoolid|(Intercept),ses": th[2] / slope}, nsim=600, seed=21)
    row = res.rows[0]
    assert row.failed == 0
    p_r = ref["rejected"] / ref["nsim"]
    se = math.sqrt(p_r * (1 - p_r) / ref["nsim"] + row.power * (1 - row.power) / row.nsim)
    assert abs(row.power - p_r) <= 3 * se, (row.power, p_r, se)
    # singular refits are as frequent as in R (the same boundary rule, lme4's isSingular)
    q = ref["singular"] / ref["nsim"]
    assert abs(row.singular / row.nsim - q) <= 3 * math.sqrt(2 * q * (1 - q) / ref["nsim"])


def test_clopper_pearson_is_the_exact_binomial_interval():
    for x, n in ((0, 10), (3, 10), (10, 10), (412, 1000)):
        ci = stats.binomtest(x, n).proportion_ci(0.95, method="exact")
        assert clopper_pearson(x, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_resizing_along_and_within():
    from mixcli.frame import model_frame

    table = str_table()
    frame = model_frame(table, M17)
    schools = frame.ngroups["schoolid"]
    classes = frame.ngroups["classid"]
    bigger = model_frame(resize_along(table, "schoolid", 2 * schools + 3, ["schoolid", "classid"]), M17)
    # copied schools bring their classes under new labels: classes stay nested in schools
    assert bigger.ngroups["schoolid"] == 2 * schools + 3
    assert bigger.ngroups["classid"] > 2 * classes
    assert bigger.n > 2 * frame.n
    smaller = model_frame(resize_along(table, "schoolid", 10, ["schoolid", "classid"]), M17)
    assert smaller.ngroups["schoolid"] == 10
    per = model_frame(resize_within(table, "classid", 7), M17)
    assert per.n == 7 * classes and per.ngroups["classid"] == classes


@pytest.mark.parametrize("kwargs, message", [
    ({"test": "sex"}, "test='sex': not a term of the model"),
    ({"sd": {"school": 3.0}}, "sd=school=3.0: no random-effects group 'school' in the model"),
    ({"fixef": {"SES": 3.0}}, "fixef=SES=3.0: no fixed effect 'SES'"),
    ({"nsim": 0}, "nsim=0: the number of simulations must be a whole number of at least 1"),
    ({"alpha": 1.5}, "alpha=1.5: the significance level must be between 0 and 1"),
    ({"along": "schoolid", "sizes": [0]}, "sizes=0: each size must be a whole number of at least 1"),
    ({"along": "schoolid", "sizes": [1]}, "sizes=1: the model cannot be fitted with 1 level of schoolid"),
    ({"along": "ses", "sizes": [10]}, "along=ses: not a grouping column of the model"),
    ({"method": "wald"}, "method=wald is for GLMMs"),
])
def test_bad_input_is_one_line(kwargs, message):
    args = {"test": "ses", "nsim": 8, "seed": 1, **kwargs}
    with pytest.raises(MixcliError) as err:
        power(str_table(), M17, args.pop("test"), **args)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("design, message", [
    ("school=40, class=4/schol, n=25", "'class=4/schol' is nested in 'schol', which is not defined before it"),
    ("school=forty", "the number of levels or rows must be a whole number"),
    ("school=40; n=25", "cannot read 'school=40; n=25'"),
])
def test_a_design_that_does_not_parse(design, message):
    with pytest.raises(UsageError) as err:
        power(None, "y ~ 1 + (1 | school)", "(1 | school)", design=design, sd={"school": 1.0}, sigma=1.0, nsim=8)
    assert message in str(err.value)


def test_glmm_wald_and_lrt_run_and_agree_roughly():
    """A binomial design: Wald z and the likelihood ratio of the same simulations reject about as often."""
    common = dict(design="school=30, n=20, x=normal", fixef={"(Intercept)": -0.3, "x": 0.35},
                  sd={"school": 0.6}, family="binomial", nsim=80, seed=2)
    wald = power(None, "pass ~ x + (1 | school)", "x", **common)
    lrt = power(None, "pass ~ x + (1 | school)", "x", method="lrt", **common)
    assert wald.rows[0].failed == 0 and lrt.rows[0].failed == 0
    assert wald.statistic == "z" and lrt.statistic == "chisq"
    # the same responses: the two tests disagree on few of them
    assert abs(wald.rows[0].rejected - lrt.rows[0].rejected) <= 8
    assert 0.4 < wald.rows[0].power < 1.0


def test_mixcli_power_returns_a_data_frame():
    import mixcli

    df = mixcli.power(str(SIM), "mathscore ~ ses + (1 | schoolid)", "ses", fixef={"ses": 2.0}, along="schoolid",
                      sizes=[20, 40], nsim=16, seed=1)
    assert list(df["size"]) == [20, 40]
    assert {"size", "power", "lower", "upper", "nsim", "failed", "singular"} <= set(df.columns)
    assert df.attrs["test"] == "ses"
