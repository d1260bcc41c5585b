"""The Laplace deviance's analytic gradient in β (``engine.laplace_gradient``) and what is built on it:
the GLMM Hessian's β rows from its differences, and the second stage by Newton's method.

Oracles: the deviance's own central differences (Richardson, two levels) for the gradient; A x = b
with A applied row by row (ZΛ, W, grouped sums: no factor) for ``Factorization.solve``; and the
same fit by BOBYQA (``newton_iterations=0``, the path every lme4 comparison was first made on) for
the Newton stage, whose criterion must be at least as low and whose standard errors must agree.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import mixcli
from mixcli.control import DEFAULT
from mixcli.engine import laplace_gradient, structure
from mixcli.engine.derivatives import jacobian
from mixcli.engine.linalg import grouped_cross
from mixcli.engine.pirls import laplace, pirls, random_part
from mixcli.family import family
from mixcli.frame import model_frame
from mixcli.glmm import GlmmModel

from conftest import FIXTURES, cached_table

CASES = [
    ("glmm_binary.csv", "pass ~ ses + (1 | schoolid) + (1 | classid)", "binomial"),  # nested chain
    ("glmm_binary.csv", "pass ~ ses + (ses | schoolid)", "binomial"),  # a vector term
    ("glmm_crossed.csv", "r2 ~ anger + mode + (1 | subj) + (1 | item)", "binomial"),  # crossed
    ("glmm_crossed.csv", "r2 ~ mode + (1 | subj) + (mode | item)", "binomial"),  # a crossed vector term
    ("glmm_binomial.csv", "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)", "binomial"),
    ("glmm_counts.csv", "ticks ~ cheight + offset(log(exposure)) + (1 | location/brood)", "poisson"),
]


def _model(csv, formula, fam, wide=True):
    frame = model_frame(cached_table(FIXTURES / "data" / csv), formula, family=family(fam))
    if wide:
        return GlmmModel(frame)
    limit = structure.WIDE_LIMIT
    structure.WIDE_LIMIT = 0  # (crossed blocks as sparse matrices, as on a large design)
    try:
        return GlmmModel(frame)
    finally:
        structure.WIDE_LIMIT = limit


def _point(model, formula):
    """A random (θ̃, β) near the first stage's β at θ = 1, and PIRLS's modes there."""
    st, data = model.structure, model.data
    start = pirls(data, st.theta_start, None)
    rng = np.random.default_rng(zlib.crc32(formula.encode()))
    theta_w = st.to_working(st.theta_start * rng.uniform(0.3, 1.5, size=st.n_theta))
    beta = start.beta + 0.1 * rng.normal(size=len(start.beta))
    return theta_w, beta


@pytest.mark.parametrize("wide", [True, False])
@pytest.mark.parametrize("csv,formula,fam", CASES)
def test_gradient_equals_the_deviances_differences(csv, formula, fam, wide):
    model = _model(csv, formula, fam, wide)
    data = model.data
    assert laplace_gradient.available(data, 1) and not laplace_gradient.available(data, 2)
    theta_w, beta = _point(model, formula)
    ours = laplace_gradient.beta_gradient(data, pirls(data, theta_w, beta))
    diff = jacobian(lambda b: np.array([laplace(data, pirls(data, theta_w, b))]), beta, levels=2,
                    steps=np.full(len(beta), 1e-2))[0]
    np.testing.assert_allclose(ours, diff, rtol=1e-6, atol=1e-6 * np.max(np.abs(diff)))


@pytest.mark.parametrize("wide", [True, False])
@pytest.mark.parametrize("csv,formula,fam", [CASES[0], CASES[3]])
def test_solve_inverts_the_weighted_system(csv, formula, fam, wide):
    """A = ΛᵀZᵀWZΛ + I applied to x without the factor (rows of ZΛ, W, grouped sums) gives back b."""
    model = _model(csv, formula, fam, wide)
    st, data = model.structure, model.data
    theta_w, beta = _point(model, formula)
    m = pirls(data, theta_w, beta)
    rng = np.random.default_rng(3)
    b = [rng.normal(size=(t.k, 1, t.n_levels)) for t in st.terms]
    x = m.factor.solve(b)
    lam = st.lambdas(theta_w)
    zx = random_part(st, lam, [v[:, 0, :] for v in x])  # ZΛx per row
    for i, (t, l, v) in enumerate(zip(st.terms, lam, x)):
        cols = st.term_columns(i)
        rows = np.full((st.n, 1), l[0, 0]) if cols is None else cols @ l  # the term's block of ZΛ's rows
        ax = grouped_cross(t.codes, t.n_levels, rows, (m.weights * zx)[:, None]) + v
        np.testing.assert_allclose(ax, b[i], rtol=1e-9, atol=1e-9)


VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
NEWTON_CASES = [
    ("glmm_binary.csv", "pass ~ ses + (1 | schoolid) + (1 | classid)", "binomial"),
    ("glmm_binomial.csv", "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)", "binomial"),
    ("glmm_counts.csv", "ticks ~ cheight + offset(log(exposure)) + (1 | location/brood)", "poisson"),
    ("glmm_crossed.csv", "r2 ~ anger + mode + (1 | subj) + (1 | item)", "binomial"),
    ("verbagg.csv", VERBAGG, "binomial"),
]


@pytest.mark.parametrize("csv,formula,fam", NEWTON_CASES)
def test_newtons_second_stage_reaches_bobyqas_optimum(csv, formula, fam):
    data = cached_table(FIXTURES / "data" / csv)
    newton = mixcli.fit(data, formula, family=fam)
    bobyqa = mixcli.fit(data, formula, family=fam, control=DEFAULT.replace(newton_iterations=0))
    assert any(s.startswith("newton from the first stage (") for s in newton.optsummary.stages)
    assert not any(s.startswith("newton") for s in bobyqa.optsummary.stages)
    assert newton.criterion <= bobyqa.criterion + 1e-9
    se = np.array([f.se for f in bobyqa.fixef])
    np.testing.assert_allclose([f.estimate for f in newton.fixef], [f.estimate for f in bobyqa.fixef],
                               rtol=0, atol=1e-4 * se.min())
    # (both Hessians at the optimum's precision: 1e-4 away in β's conditional SDs)
    np.testing.assert_allclose([f.se for f in newton.fixef], se, rtol=5e-5)
    np.testing.assert_allclose(newton.theta, bobyqa.theta, rtol=1e-4, atol=1e-6)


def test_newton_hands_over_to_bobyqa_where_it_stops_short():
    """One Newton step (``newton_iterations=1``) cannot meet the tolerance from nAGQ = 0's optimum:
    BOBYQA takes over from the point reached and ends at the same optimum."""
    data = cached_table(FIXTURES / "data" / "verbagg.csv")
    full = mixcli.fit(data, VERBAGG, family="binomial")
    short = mixcli.fit(data, VERBAGG, family="binomial", control=DEFAULT.replace(newton_iterations=1))
    assert any("bobyqa from there" in s for s in short.optsummary.stages)
    assert short.criterion == pytest.approx(full.criterion, abs=1e-8)
    np.testing.assert_allclose([f.se for f in short.fixef], [f.se for f in full.fixef], rtol=5e-5)


def test_a_variance_on_its_bound_leaves_the_second_stage_to_bobyqa():
    """θ = 0 after the first stage (a singular fit): Newton's method has no curvature to use there."""
    data = cached_table(FIXTURES / "data" / "glmm_binary.csv")
    g = mixcli.fit(data, "pass ~ ses + (ses || schoolid)", family="binomial")
    assert g.theta[1] == 0.0
    assert not any(s.startswith("newton") for s in g.optsummary.stages)
