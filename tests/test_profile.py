"""Profile-likelihood confidence intervals against lme4 1.1-31's confint(method = "profile").

Two kinds of reference (fixtures/lme4_reference.R and fixtures/lme4_profiles.R):

* lme4's intervals, matched to 1e-3 wherever lme4 computes them reliably;
* lme4's profile tables (ζ at each of its profile points), where its intervals
  are not reliable: lme4 interpolates ζ with a spline through a coarse grid
  (a few percent off where the profile bends near an SD of zero), its inner
  optimiser sometimes stops short, and for a correlation of exactly ±1 whose
  second SD is the larger its pivoted Cholesky (``safe_chol``) builds a
  different covariance. There mixcli's profile must agree with lme4's at its
  own points, or be lower (a better optimum), never higher.
"""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

import mixcli
from mixcli.inference.profile import Profiler, _sdcor_chol, profile_intervals

from conftest import CLASSROOM, FIXTURES, cached_table, load_json

INFERENCE = FIXTURES / "lme4_inference.json"
CLASSROOM_INFERENCE = FIXTURES / "classroom_inference.json"
PROFILES = FIXTURES / "lme4_profiles.json"
RTOL = 1e-3



def _ref(mid):
    path = CLASSROOM_INFERENCE if mid.startswith("M") else INFERENCE
    return load_json(path)["models"][mid]


def _data(ref):
    return CLASSROOM if ref["csv"] == "classroom.csv" else FIXTURES / "data" / ref["csv"]


def _close(ours, theirs, scale):
    """1e-3 relative, or 1e-3 of the parameter's scale for ends at or near zero."""
    return abs(ours - theirs) <= RTOL * max(abs(theirs), 1e-3 * scale)


# Models whose every lme4 interval is reliable (no profile warnings, a grid fine enough for
# the spline): random intercepts, (x || g), a correlated slope, crossed factors, a boundary
# fit (its SD's interval starts at 0), missing rows, several fixed effects.
CLEAN = ["nested3_3", "categorical_2", "categorical_5", "slopes_1", "slopes_2", "missing_2", "transforms_1",
         "singular_1", "M20"]


@pytest.mark.parametrize("mid", CLEAN)
def test_intervals_match_lme4(mid):
    ref = _ref(mid)
    m = mixcli.fit(cached_table(_data(ref)), ref["formula"])
    ivs = profile_intervals(m)
    assert [iv.parameter for iv in ivs] == [r["parameter"] for r in ref["confint"]]
    scale = m.sigma
    for iv, r in zip(ivs, ref["confint"]):
        assert _close(iv.lower, r["lower"], scale), (iv.parameter, iv.lower, r["lower"])
        assert _close(iv.upper, r["upper"], scale), (iv.parameter, iv.upper, r["upper"])


def test_crossed_factors_dense_path():
    ref = _ref("crossed_1")
    m = mixcli.fit(cached_table(_data(ref)), ref["formula"])
    which = ["sd_(Intercept)|item", "condb"]
    ivs = profile_intervals(m, which=which)
    refs = {r["parameter"]: r for r in ref["confint"]}
    assert [iv.parameter for iv in ivs] == which
    for iv in ivs:
        r = refs[iv.parameter]
        assert _close(iv.lower, r["lower"], m.sigma) and _close(iv.upper, r["upper"], m.sigma), iv


def test_classroom_m17():
    """Every interval of the issue's model; lme4's own are reliable for all but three ends
    (their profiles are checked point by point in test_profile_at_lme4s_points)."""
    ref = _ref("M17")
    m = mixcli.fit(cached_table(CLASSROOM), ref["formula"]).add_confint(method="profile")
    assert m.ci_method == "profile" and m.ci_level == 0.95
    ours = {iv.parameter: (iv.lower, iv.upper) for iv in m.intervals}
    ours.update({f.term: (f.lower, f.upper) for f in m.fixef})
    unreliable = {("sd_(Intercept)|classid", 0), ("cor_ses.(Intercept)|schoolid", 0), ("sd_ses|schoolid", 0),
                  ("sd_ses|schoolid", 1)}
    checked = 0
    for r in ref["confint"]:
        for end, key in enumerate(("lower", "upper")):
            if (r["parameter"], end) in unreliable:
                continue
            assert _close(ours[r["parameter"]][end], r[key], m.sigma), (r["parameter"], key)
            checked += 1
    assert checked == 10
    assert ours["cor_ses.(Intercept)|schoolid"][1] == 1.0  # ζ stays below 1.96 up to the bound


def _profile_cases():
    if not PROFILES.exists():
        return []
    return [pytest.param(cid, id=cid) for cid in load_json(PROFILES)["cases"]]


@pytest.mark.parametrize("cid", _profile_cases())
def test_profile_at_lme4s_points(cid):
    case = load_json(PROFILES)["cases"][cid]
    data = CLASSROOM if case["csv"] == "classroom.csv" else FIXTURES / "data" / case["csv"]
    m = mixcli.fit(cached_table(data), case["formula"])
    prof = Profiler(m)
    par = next(p for p in prof.params if p.name == case["parameter"])
    cors = [k for k in case["rows"][0] if k.startswith("cor_")]
    points = [(z, x, row) for z, x, row in zip(case["zeta"], case["value"], case["rows"])
              if z is not None and x is not None
              and not any(abs(row[c]) == 1.0 for c in cors)]  # lme4's pivoted safe_chol: not that model
    points = points[:: max(1, len(points) // 20)]  # a long table: every few points suffice
    agree = 0
    for z, x, _ in points:
        dev, _ = prof.deviance(par, x)
        ours = math.copysign(math.sqrt(max(dev - prof.base, 0.0)), x - par.estimate)
        assert abs(ours) <= abs(z) + 1e-5, (x, ours, z)  # never a worse optimum than lme4's
        agree += abs(ours - z) < 1e-4
    assert agree > 0.5 * len(points), (agree, len(points))  # the same profile, bar lme4's stops short
    # and the interval's ends are where ζ crosses ±1.96 (up to the inner optimiser's precision)
    iv = prof.interval(par)
    z = 1.959963984540054
    for end, target in ((iv.lower, -z), (iv.upper, z)):
        if end in (par.lower_bound, par.upper_bound):
            continue
        dev, _ = prof.deviance(par, end)
        assert math.copysign(math.sqrt(max(dev - prof.base, 0.0)), end - par.estimate) == pytest.approx(target, abs=1e-4)


def test_reml_fit_is_profiled_on_the_ml_deviance():
    """lme4's profile() refits a REML fit by ML first: same intervals from either fit."""
    t = cached_table(FIXTURES / "data" / "categorical.csv")
    a = profile_intervals(mixcli.fit(t, "y ~ recipe + (1 | batch)"))
    b = profile_intervals(mixcli.fit(t, "y ~ recipe + (1 | batch)", reml=False))
    for x, y in zip(a, b):
        assert x.lower == pytest.approx(y.lower, rel=1e-5) and x.upper == pytest.approx(y.upper, rel=1e-5)


@pytest.mark.parametrize("sd1,sd2,cor", [(2.0, 3.0, 1.0), (3.0, 2.0, -1.0), (0.0, 2.0, 0.3), (2.0, 0.0, 0.5),
                                         (1.5, 2.5, 0.4)])
def test_covariance_from_sds_and_correlation(sd1, sd2, cor):
    """Singular covariances (a correlation of ±1, an SD of 0) keep the covariance they describe,
    whichever SD is larger (where lme4's pivoted safe_chol does not)."""
    from mixcli.engine.structure import lower_indices

    rows, cols = lower_indices(2)
    chol = _sdcor_chol(np.array([sd1, cor, sd2]), 2, rows, cols)
    c = cor if sd1 > 0 and sd2 > 0 else 0.0
    want = np.array([[sd1**2, c * sd1 * sd2], [c * sd1 * sd2, sd2**2]])
    np.testing.assert_allclose(chol @ chol.T, want, atol=1e-12)
    assert chol[0, 1] == 0.0


def test_inconsistent_correlations_are_rejected():
    from mixcli.engine.structure import lower_indices

    rows, cols = lower_indices(3)
    # θ order: sd1, cor21, cor31, sd2, cor32, sd3; cor21 = cor31 = 0.9 but cor32 = -0.9: not PSD
    assert _sdcor_chol(np.array([1.0, 0.9, 0.9, 1.0, -0.9, 1.0]), 3, rows, cols) is None


def _cli(*args):
    from click.testing import CliRunner

    from mixcli.cli import main

    res = CliRunner().invoke(main, list(args))
    return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)


def test_cli_profile_and_wald_intervals():
    data = str(FIXTURES / "data" / "categorical.csv")
    ref = _ref("categorical_5")
    out = _cli("fit", data, ref["formula"], "--ci", "profile", "--format", "json")
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["ci"]["method"] == "profile" and rec["ci"]["level"] == 0.95
    want = {r["parameter"]: r for r in ref["confint"]}
    got = [(iv["parameter"], iv["lower"], iv["upper"]) for iv in rec["ci"]["intervals"]]
    got += [(f["term"], f["lower"], f["upper"]) for f in rec["fixef"]]
    assert sorted(p for p, _, _ in got) == sorted(want)
    for p, lo, hi in got:
        assert lo == pytest.approx(want[p]["lower"], rel=RTOL) and hi == pytest.approx(want[p]["upper"], rel=RTOL)

    out = _cli("fit", data, ref["formula"], "--ci", "0.9", "--format", "csv")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header == "formula,method,term,estimate,se,t,df,p,lower,upper"
    for line in rows:
        cells = line.rsplit(",", 9)[1:]
        est, se, lo, hi = float(cells[2]), float(cells[3]), float(cells[7]), float(cells[8])
        assert lo == pytest.approx(est - 1.6448536269514722 * se, rel=1e-12)
        assert hi == pytest.approx(est + 1.6448536269514722 * se, rel=1e-12)

    out = _cli("fit", data, ref["formula"], "--ci", "profile")
    assert out.returncode == 0, out.stderr
    for piece in ("2.5 %", "97.5 %", "Profile confidence intervals of the variance parameters (95%):",
                  "sd_(Intercept)|batch", "sigma"):
        assert piece in out.stdout

    out = _cli("fit", data, ref["formula"], "--ci", "1.5")
    assert out.returncode == 2 and "not between 0 and 1" in out.stderr
