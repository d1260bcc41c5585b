"""GLMM profile-likelihood intervals against lme4 1.1-31's confint(glmer_fit) (method "profile").

The reference (fixtures/glmm_profile_reference.R → .json): each model fitted by three optimizers
under tight settings, the best kept, then ``confint(profile(m))``, and lme4's profile tables (ζ at
each of its points). lme4 inverts ζ with a spline through ~15 points; mixcli finds each end
exactly (``inference.profile``). Where lme4's interval is off — its spline bent by inner fits that
stopped short near the estimate — the test checks mixcli's ζ at lme4's own points instead: the
same, or lower (a better optimum), never higher.
"""

from __future__ import annotations

import math

import pytest

import mixcli
from mixcli.errors import UsageError
from mixcli.inference.profile import GlmmProfiler, profile_intervals, profiler

from conftest import FIXTURES, cached_table, load_json

REFERENCE = FIXTURES / "glmm_profile_reference.json"
RTOL = 1e-3
Z95 = 1.959963984540054


def _case(cid):
    return load_json(REFERENCE)["cases"][cid]


_fits: dict = {}


def _fit(cid):
    if cid not in _fits:
        c = _case(cid)
        _fits[cid] = mixcli.fit(cached_table(c["csv"]), c["formula"], family=c["family"], nagq=c["nAGQ"])
    return _fits[cid]


def _close(ours, theirs):
    """1e-3 relative, or 1e-6 absolute for an end at zero (an SD's bound)."""
    return abs(ours - theirs) <= RTOL * max(abs(theirs), 1e-3)


def _zeta(prof, par, x):
    dev, _ = prof.deviance(par, x)
    return math.copysign(math.sqrt(max(dev - prof.base, 0.0)), x - par.estimate)


# (model, parameters profiled here: None for all). Every end lme4 computes reliably is compared:
# a binomial model with a random intercept (Laplace and AGQ with 9 nodes), a Poisson model with
# two intercepts, one of whose intervals reaches the bound 0, a random slope with its
# correlation, crossed factors, and nested intercepts (binary and counts).
CASES = [("cbpp", None), ("cbpp_agq9", None), ("grouseticks", None),
         ("counts_slope", ["sd_wing|location", "cor_wing.(Intercept)|location", "wing"]),
         ("crossed", ["sd_(Intercept)|item"]),
         ("binary_nested", ["sd_(Intercept)|classid", "sexM"]),
         ("counts_nested", ["sd_(Intercept)|location", "factor(year)97"])]
# lme4's ends that its spline puts off the profile (checked at lme4's points below)
UNRELIABLE = {("counts_slope", "cor_wing.(Intercept)|location", "upper")}


@pytest.mark.parametrize("cid, which", CASES, ids=[c for c, _ in CASES])
def test_intervals_match_confint(cid, which):
    ref = _case(cid)
    m = _fit(cid)
    assert m.criterion <= -2.0 * ref["loglik"] + 1e-6  # at lme4's optimum or below
    ivs = profile_intervals(m, which=which)
    rows = [r for r in ref["confint"] if which is None or r["parameter"] in which]
    assert [iv.parameter for iv in ivs] == [r["parameter"] for r in rows]
    for iv, r in zip(ivs, rows):
        for end in ("lower", "upper"):
            if (cid, iv.parameter, end) in UNRELIABLE:
                continue
            assert _close(getattr(iv, end), r[end]), (iv.parameter, end, getattr(iv, end), r[end])


def test_an_interval_that_reaches_the_bound():
    """grouseticks' LOCATION SD (0.57) has ζ above −1.96 all the way down to 0: the lower end is
    the bound, as lme4 reports it (confint.thpr: the spline gives NA there → the bound)."""
    m = _fit("grouseticks")
    prof = profiler(m)
    par = next(p for p in prof.params if p.name == "sd_(Intercept)|LOCATION")
    iv = prof.interval(par)
    assert iv.estimate > 0.5 and iv.lower == 0.0 and iv.lower_at_bound and not iv.upper_at_bound
    assert -Z95 < _zeta(prof, par, 0.0) < -1.0


@pytest.mark.parametrize("cid, parameter", [("counts_slope", "cor_wing.(Intercept)|location"),
                                            ("crossed", "I(anger - 25)"), ("binary_nested", "(Intercept)")])
def test_profile_at_lme4s_points(cid, parameter):
    """ζ at lme4's own profile points (0.3 < |ζ| < 2.5): never above lme4's, equal where lme4's
    inner fit reached the optimum. lme4's inner fits (each started from the last, profile()'s
    "prev") stop short over stretches of a profile near the estimate, even with bobyqa at rhoend
    1e-10: on the crossed model's fixed effects its ends are off by up to 1% (anger's lower end),
    on binary_nested's intercept by 2e-3 (upper end), on counts_slope's correlation by 1.4e-3
    (upper end), each through the spline bent by those points."""
    ref = _case(cid)
    m = _fit(cid)
    prof = profiler(m)
    par = next(p for p in prof.params if p.name == parameter)
    table = next(t for t in ref["profile"] if t["parameter"] == parameter)
    base_gap = -2.0 * ref["loglik"] - prof.base  # lme4's base deviance above mixcli's
    points = [(z, x) for z, x in zip(table["zeta"], table["value"]) if z is not None and 0.3 < abs(z) < 2.5]
    agree = 0
    for z, x in points:
        ours = _zeta(prof, par, x)
        # lme4's ζ² on mixcli's base: its deviance there, minus mixcli's minimum
        theirs = math.copysign(math.sqrt(max(z * z + base_gap, 0.0)), z)
        assert abs(ours) <= abs(theirs) + 1e-4, (x, ours, theirs)
        agree += abs(ours - theirs) < 1e-3
    assert agree >= (len(points) // 2 if cid != "crossed" else 1), (agree, len(points))
    # the interval's ends are where mixcli's ζ crosses ±1.96
    iv = prof.interval(par)
    assert _zeta(prof, par, iv.lower) == pytest.approx(-Z95, abs=1e-4)
    assert _zeta(prof, par, iv.upper) == pytest.approx(Z95, abs=1e-4)


def test_add_confint_and_the_profile_plot(tmp_path):
    """fit(...).add_confint(method="profile") fills the fixed effects' ends and the SDs' intervals;
    the profile plot's traces end at the same intervals."""
    from mixcli.plot import profile_traces

    m = _fit("cbpp")
    ref = {r["parameter"]: r for r in _case("cbpp")["confint"]}
    m.add_confint(method="profile")
    assert m.ci_method == "profile" and [iv.parameter for iv in m.intervals] == ["sd_(Intercept)|herd"]
    for f in m.fixef:
        assert _close(f.lower, ref[f.term]["lower"]) and _close(f.upper, ref[f.term]["upper"])
    (t,) = profile_traces(m, which=["sd_(Intercept)|herd"])
    assert (t.lower, t.upper) == pytest.approx((m.intervals[0].lower, m.intervals[0].upper), rel=1e-9)
    assert all(b > a for a, b in zip(t.zeta, t.zeta[1:]))


def test_a_nagq0_fit_is_not_profiled():
    c = _case("cbpp")
    m = mixcli.fit(cached_table(c["csv"]), c["formula"], family="binomial", nagq=0)
    with pytest.raises(UsageError, match="nagq=0 fit does not maximise"):
        GlmmProfiler(m)
