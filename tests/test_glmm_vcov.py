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
    (μ = 1 − 2e-16, |η| = 37) though no coefficient passes 15: glm.fit's rule (μ within 10ε of 0
    or 1) names it. (Found by the origin fuzz property: the slope's SE, 21, moved with the coding.)"""
    import io

    import pandas as pd

    from catalogue import _QUASI  # (the same rows as the catalogue's case)

    m = fit(pd.read_csv(io.StringIO(_QUASI)), "b ~ x + (1 | g)", family="binomial")
    assert max(abs(f.estimate) for f in m.fixef) < 15 and np.max(m.modes.mu) > 1 - 10 * np.finfo(float).eps
    assert any(w.startswith("fitted probabilities numerically 0 or 1 occurred (as glm() warns)") for w in m.warnings)
