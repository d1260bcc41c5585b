"""A GLMM's Var(β̂) (lme4's vcov(m): 2H⁻¹ of the deviance in (θ, β)) is exact up to the Laplace
approximation and does not move with a predictor's origin or units.

Two oracles:

* glmer's vcov at glmer's own estimate, with glmer's PIRLS converged
  (fixtures/glmm_vcov_reference.R: summary(m)'s standard errors come from a deviance function
  whose PIRLS stops at 1e-7, and are off by up to ~1%): mixcli's Hessian evaluated at the same
  (θ, β) gives the same standard errors to 1e-3 relative;
* invariance: shifting a predictor, I(x + 1000), or rescaling it, I(x / 1000), is a linear
  reparameterisation of β, so the slope's standard error must not change (and the estimate,
  being the same model's optimum, must not either) — the intercept's changes as the algebra says:
  Var(b₀') = Var(b₀) − 2c Cov(b₀, b₁) + c² Var(b₁) for x' = x + c.

Before the Hessian was taken in whitened coordinates (``GlmmModel.vcov``), YEAR = 95…97 gave a
standard error 8.5 times too small on grouseticks, and I(age + 1000) one 4 times too small.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixcli import fit
from mixcli.family import family
from mixcli.frame import model_frame
from mixcli.glmm import GlmmModel

from conftest import FIXTURES, cached_table, load_json

REF = load_json(FIXTURES / "glmm_reference.json")
VCOV = load_json(FIXTURES / "glmm_vcov_reference.json")
# glmer's Hessian at an optimum mixcli's PIRLS reproduces (the sqrt link has a mode per sign
# pattern of η), where R's own differences with steps 1e-3 and 1e-4 agree
HESSIAN_CASES = [k for k, v in VCOV.items() if not k.startswith("_") and v["steps_agree"] and k != "poisson_sqrt"]


def _values(x):
    return np.array(list(x.values()) if isinstance(x, dict) else x, dtype=float)


def _model(r, formula=None):
    frame = model_frame(cached_table(FIXTURES / "data" / r["csv"]), formula or r["formula"],
                        family=family(r["family"], r["link"]), weights=r["weights"])
    return GlmmModel(frame)


@pytest.mark.parametrize("case", HESSIAN_CASES)
def test_vcov_at_glmers_estimate_is_glmers(case):
    r = REF[case]
    model = _model(r)
    theta_w = model.structure.to_working(_values(r["theta"]))
    v = model.vcov(theta_w, _values(r["beta"]), r["nAGQ"])
    np.testing.assert_allclose(np.sqrt(np.diag(v)), _values(VCOV[case]["se"]), rtol=1e-3)


# (case, predictor, the slope's name in the shifted fit): binomial logit, probit, cbind, Poisson
SHIFTED = [
    ("binary_3", "ses", "pass ~ {x} + (1 | schoolid)"),
    ("binary_probit", "ses", "pass ~ {x} + (1 | schoolid)"),
    ("binary_1", "ses", "pass ~ {x} + sex + (1 | schoolid) + (1 | classid)"),
    ("binomial_1", "period", "cbind(incidence, size - incidence) ~ {x} + (1 | herd)"),
    ("poisson_2", "cheight", "ticks ~ factor(year) + {x} + (1 | location)"),
    ("poisson_slope", "wing", "ticks ~ factor(year) + cheight + {x} + (1 + wing | location)"),
]


@pytest.mark.parametrize("case,x,template", SHIFTED)
def test_slopes_and_their_se_do_not_move_with_the_origin_or_units(case, x, template):
    r = REF[case]
    fam = family(r["family"], r["link"])
    data = cached_table(FIXTURES / "data" / r["csv"])
    base = fit(data, template.format(x=x), family=fam, nagq=r["nAGQ"])
    shifted = fit(data, template.format(x=f"I({x} + 1000)"), family=fam, nagq=r["nAGQ"])
    scaled = fit(data, template.format(x=f"I({x} / 1000)"), family=fam, nagq=r["nAGQ"])
    i = [f.term for f in base.fixef].index(x)
    assert shifted.criterion == pytest.approx(base.criterion, abs=1e-6)
    b, s = base.fixef[i], shifted.fixef[i]
    assert s.estimate == pytest.approx(b.estimate, abs=1e-4 * b.se)
    assert s.se == pytest.approx(b.se, rel=1e-4)
    assert scaled.fixef[i].se == pytest.approx(1000 * b.se, rel=1e-4)
    # the other slopes too, and the intercept as the algebra of the shift says
    others = [j for j in range(1, len(base.fixef)) if j != i]
    np.testing.assert_allclose([shifted.fixef[j].se for j in others], [base.fixef[j].se for j in others], rtol=1e-4)
    v = base.vcov
    se0 = np.sqrt(v[0, 0] - 2000 * v[0, i] + 1e6 * v[i, i])
    assert shifted.fixef[0].se == pytest.approx(se0, rel=1e-4)


def test_bootstrap_refits_search_in_the_same_whitened_coordinates():
    """The bootstrap's refits start from the fit's Var(β̂) factor: a shifted predictor's bootstrap
    replicate finds the same optimum as the unshifted one's."""
    from mixcli.inference.bootstrap import _glmm_spec

    r = REF["binary_3"]
    fam = family(r["family"], r["link"])
    data = cached_table(FIXTURES / "data" / r["csv"])
    base = fit(data, "pass ~ ses + (1 | schoolid)", family=fam)
    shifted = fit(data, "pass ~ I(ses + 1000) + (1 | schoolid)", family=fam)
    rng = np.random.default_rng(3)
    y = (rng.random(base.nobs) < base.modes.mu).astype(float)
    _, f0 = _glmm_spec(base).fit(y)
    _, f1 = _glmm_spec(shifted).fit(y)
    assert f1 == pytest.approx(f0, abs=1e-5)


def test_groups_whose_outcomes_are_all_alike_are_named():
    """Three groups all 1, three all 0: the group SD runs away (the likelihood keeps rising), so
    the estimates sit anywhere on a ridge; the fit says so instead of printing them plainly."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(6), 8)
    data = {"y": (g < 3).astype(float), "x": rng.normal(size=48), "g": [f"g{i}" for i in g]}
    m = fit(data, "y ~ x + (1 | g)", family="binomial")
    assert m.theta[0] > 15
    assert any("the SD of g runs away" in w for w in m.warnings)
    # one outcome flipped in two of the groups: a large but finite SD, and no such warning
    data["y"][[0, 30]] = 1 - data["y"][[0, 30]]
    ok = fit(data, "y ~ x + (1 | g)", family="binomial")
    assert 1 < ok.theta[0] < 15 and not any("runs away" in w for w in ok.warnings)


def test_fitted_probabilities_of_0_or_1_are_said_as_glm_says_them():
    """33 rows, two groups: one group and x together predict some outcomes with certainty
    (μ = 1 − 2e-16, |η| = 37) though no coefficient passes 15. x's estimate, 10.7 with an SE of
    21, moves η by 51 across x's range (−2.7 to 2.1), and its SE by 103: the estimate runs away
    and is named. With the measures of η off (``separation``), glm.fit's rule (μ within 10ε of 0
    or 1) still says it. (Found by the origin fuzz property: the slope's SE, 21, moved with the coding.)"""
    import io

    import pandas as pd

    from mixcli.control import Control

    from catalogue import _QUASI  # (the same rows as the catalogue's case)

    data = pd.read_csv(io.StringIO(_QUASI))
    m = fit(data, "b ~ x + (1 | g)", family="binomial")
    x = m.fixef[1]
    assert x.term == "x" and abs(x.estimate) < 15 and np.max(m.modes.mu) > 1 - 10 * np.finfo(float).eps
    assert np.ptp(data["x"]) * abs(x.estimate) > 15 and np.ptp(data["x"]) * x.se > 15
    assert [w for w in m.warnings if "fitted probabilities" in w] == [
        "fitted probabilities numerically 0 or 1: the estimate for x runs away (it moves η by more than 15 on the "
        "link scale across the data, with a standard error as large), a sign of complete separation; drop or recode it"]
    off = fit(data, "b ~ x + (1 | g)", family="binomial", control=Control(separation=1e9))
    assert any(w.startswith("fitted probabilities numerically 0 or 1 occurred (as glm() warns)") for w in off.warnings)


def _strong_slope(scale: float) -> dict:
    """400 rows, 20 groups, a well-determined slope of 1 per SD of x, x in units of ``scale``."""
    rng = np.random.default_rng(1)
    g = rng.integers(0, 20, 400)
    x = rng.normal(size=400)
    eta = -0.5 + x + 0.7 * rng.normal(size=20)[g]
    y = (rng.random(400) < 1 / (1 + np.exp(-eta))).astype(float)
    return {"y": y, "x": x * scale, "g": [f"g{i}" for i in g]}


@pytest.mark.parametrize("scale", [1.0, 0.01, 1e-4])
def test_degeneracy_warnings_do_not_move_with_a_predictors_units(scale):
    """x in other units is the same model: the slope is 1/scale times larger, its z the same, and
    no warning appears. |β| > 15 called a slope of 101 (SE 15, x in units of 0.01) a sign of
    complete separation; the rules now measure η, the slope times x's spread."""
    base = fit(_strong_slope(1.0), "y ~ x + (1 | g)", family="binomial")
    m = fit(_strong_slope(scale), "y ~ x + (1 | g)", family="binomial")
    assert m.fixef[1].estimate * scale == pytest.approx(base.fixef[1].estimate, rel=1e-5)
    assert m.fixef[1].t == pytest.approx(base.fixef[1].t, rel=1e-4)
    assert m.warnings == base.warnings == []


def test_link_scale_limits_only_under_unit_free_links():
    """Under the sqrt link η is √μ in the counts' own units: a group SD of ~20 on that scale (groups'
    counts from a few to ~4,000) is no sign of a runaway SD, and is not called one (the limit of 15
    on η called it one); the same counts under the log link have an SD of 2.6 and no warning either."""
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(12), 10)
    root = 30.0 + 20.0 * rng.normal(size=12)[g]
    k = rng.poisson(np.maximum(root, 1.0) ** 2).astype(float)
    data = {"k": k, "g": [f"g{i}" for i in g]}
    sqrt = fit(data, "k ~ 1 + (1 | g)", family="poisson", link="sqrt")
    assert sqrt.varcorr[0].sd > 15 and sqrt.warnings == []
    log = fit(data, "k ~ 1 + (1 | g)", family="poisson")
    assert log.varcorr[0].sd < 5 and log.warnings == []


def test_a_runaway_sd_is_named_where_the_modes_stay_below_the_limit():
    """Eight rows (one dropped), b ~ x + (1 | g) + (1 | h): the SDs run to 63 and 60 on the logit
    scale while every mode's part of η stays below 15 (14.9, 13.6). The measure takes each row's SD
    of the term's part, ‖z̃ᵢΛ̃‖, as well; the fit warns (here first of x, which runs away with them).
    Found by the origin fuzz property: the slope's SE moved 4% with I(x + 1000), the Laplace
    deviance being flat to PIRLS's precision there."""
    from mixcli.glmm import _random_parts

    data = {"b": [1.0, 1, 1, 1, 0, 0, 0, 0], "x": [0.1, -0.2, 0.1, 0.5, -1.2, 0.6, -0.9, -1.0],
            "g": ["g1", "g3", "g3", "g3", None, "g4", "g3", "g4"],
            "h": ["h0", "h2", "h1", "h1", "h1", "h3", "h3", "h2"]}
    m = fit(data, "b ~ x + (1 | g) + (1 | h)", family="binomial")
    st = m.structure
    modes = [np.max(np.abs(np.einsum("ik,ik->i", t.z, (lam @ u).T[t.codes])))
             for t, lam, u in zip(st.terms, st.lambdas(m.modes.theta), m.modes.u)]
    assert max(modes) < 15 and m.theta[0] > 50
    measured = [float(np.max(part)) for part in _random_parts(st, m.modes)]
    assert measured == pytest.approx(list(m.theta), rel=1e-6)  # (one intercept per row: the SD is θ)
    assert m.warnings and "runs away" in m.warnings[0]


def test_a_random_effect_per_observation_of_a_0_1_response_is_said_to_be_unidentified():
    """b ~ x + (1 | g) with every level of g one row: a per-observation random effect on a 0/1
    response only rescales η (probit: Φ(η/√(1 + σ²))), a ridge of equal likelihood in (θ, β). A fuzz
    case on 3 rows: the slope's SE moved 0.2% with I(x + 100) and nothing was said. The same term on
    counts (an observation-level random effect for overdispersion) is identified: no such warning."""
    rng = np.random.default_rng(8)
    n = 40
    x = rng.normal(size=n)
    data = {"b": (rng.random(n) < 0.4 + 0.2 * (x > 0)).astype(float), "x": x, "g": [f"o{i}" for i in range(n)],
            "k": rng.poisson(3.0, size=n).astype(float)}
    m = fit(data, "b ~ x + (1 | g)", family="binomial", link="probit")
    assert any(w.startswith("every level of g has a single observation") for w in m.warnings)
    counts = fit(data, "k ~ x + (1 | g)", family="poisson")
    assert not any("single observation" in w for w in counts.warnings)
    trials = fit({**data, "k": np.minimum(data["k"], 5)}, "cbind(k, 5 - k) ~ x + (1 | g)", family="binomial")
    assert not any("single observation" in w for w in trials.warnings)
