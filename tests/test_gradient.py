"""The analytic gradient against central differences on every engine path, and the convergence
check built on the criterion's derivatives."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import mixcli
import mixcli.engine.structure as structure
from mixcli.engine.curvature import Curvature, check, curvature
from mixcli.engine.factor import criterion, criterion_working, evaluate, evaluate_working
from mixcli.engine.gradient import gradient
from mixcli.engine.structure import ModelStructure
from mixcli.frame import model_frame

from conftest import FIXTURES, cached_table

CASES = [
    ("nested3.csv", "y ~ x + (1 | district/school/class)"),  # scalar chain of three
    ("nested3.csv", "y ~ x + (x | district) + (1 | district:school)"),  # a vector term above a scalar one
    ("classroom_sim.csv", "mathscore ~ ses + (ses | schoolid) + (ses | classid)"),  # vector terms nested
    ("classroom_sim.csv", "mathscore ~ ses + (ses | schoolid) + (ses || classid)"),  # two terms on one factor
    ("crossed.csv", "rt ~ cond * freq + (1 + freq | subj) + (1 | item)"),  # crossed: a dense tail
    ("crossed.csv", "rt ~ cond + (1 + cond | subj) + (1 + freq | item)"),  # a vector-valued dense term
    ("slopes.csv", "y ~ x + (1 | a) + (1 | b) + (1 | a:b)"),  # a chain, then a crossed term
    ("slopes.csv", "y ~ x + z + (x + z | g)"),  # one three-effect term
    ("categorical.csv", "y ~ 0 + recipe + (1 | batch)"),  # no intercept in X
    ("missing.csv", "y ~ 1 + (1 | g)"),  # p = 1
]


def structures(csv, formula):
    """The model's structure with its crossed blocks kept dense and, if it has any, as sparse."""
    frame = model_frame(cached_table(FIXTURES / "data" / csv), formula)
    xy = np.column_stack([frame.X, frame.y])
    out = [ModelStructure(frame.terms, xy)]
    if out[0].dense:
        wide = structure.WIDE_LIMIT
        structure.WIDE_LIMIT = 0
        try:
            out.append(ModelStructure(frame.terms, xy))
        finally:
            structure.WIDE_LIMIT = wide
        assert not out[1].wide
    return out


def central(st, theta, reml, working, h=1e-5):
    g = np.zeros(len(theta))
    for i in range(len(theta)):
        step = h * max(1.0, abs(theta[i]))
        e = np.zeros(len(theta))
        e[i] = step
        crit = criterion_working if working else criterion
        g[i] = (crit(st, theta + e, reml) - crit(st, theta - e, reml)) / (2 * step)
    return g


@pytest.mark.parametrize("csv,formula", CASES)
def test_gradient_matches_central_differences(csv, formula):
    rng = np.random.default_rng(zlib.crc32(formula.encode()))
    for st in structures(csv, formula):
        theta = st.theta_start + rng.normal(scale=0.4, size=st.n_theta)
        theta[st.theta_is_diag] = np.abs(theta[st.theta_is_diag]) + 0.1
        on_bound = theta.copy()
        on_bound[np.flatnonzero(st.theta_is_diag)[-1]] = 0.0  # a variance on its boundary
        for th in (theta, on_bound):
            for reml in (True, False):
                for working in (True, False):
                    g = gradient((evaluate_working if working else evaluate)(st, th), reml)
                    got = g.working(st) if working else g.user(st)
                    want = central(st, th, reml, working)
                    scale = max(1.0, float(np.max(np.abs(want))))
                    np.testing.assert_allclose(got, want, atol=1e-6 * scale)
                    assert g.value == pytest.approx((criterion_working if working else criterion)(st, th, reml),
                                                    rel=1e-12)


def test_pieces_of_the_gradient_add_up():
    st = structures("crossed.csv", "rt ~ cond * freq + (1 + freq | subj) + (1 | item)")[0]
    th = st.theta_start * 0.7
    g = gradient(evaluate(st, th), reml=True)
    m = st.n - st.p
    for t in range(len(st.terms)):
        np.testing.assert_allclose(g.criterion[t], g.logdet[t] + (m / g.r2) * g.pwrss[t], rtol=1e-12)


def fitted(csv, formula, reml=True):
    return mixcli.fit(cached_table(FIXTURES / "data" / csv), formula, reml=reml)


def test_a_fit_passes_its_convergence_check():
    m = fitted("slopes.csv", "y ~ x + z + (x + z | g)")
    assert m.converged and m.curvature is not None
    assert check(m.curvature, m.structure, m.criterion) == []


def test_a_point_short_of_the_optimum_fails_the_check():
    m = fitted("slopes.csv", "y ~ x + z + (x + z | g)")
    st = m.structure
    off = m.theta * 1.02
    problems = check(curvature(st, st.to_working(off), True), st, criterion(st, off, True))
    assert len(problems) == 1 and "stopped short of the minimum" in problems[0]


def test_a_saddle_fails_the_check():
    st = fitted("missing.csv", "y ~ x + (1 | g)").structure
    saddle = Curvature(np.array([0.5]), True, 100, a_grad=np.zeros(1), a_hess=-np.ones((1, 1)), r2=1.0,
                       r2_grad=np.zeros(1), r2_hess=np.zeros((1, 1)), v=np.zeros(0), v_grad=np.zeros((0, 1)))
    problems = check(saddle, st, 10.0)
    assert any("negative eigenvalue" in p and "saddle point" in p for p in problems)


def test_a_variance_on_its_bound_may_have_an_inward_gradient_only():
    m = fitted("singular.csv", "y ~ x + (x | g)")
    assert m.singular and m.converged
    assert check(m.curvature, m.structure, m.criterion) == []


STRUCTURED = [
    ("orthodont.csv", "distance ~ age + Sex + ar1(0 + factor(age) | Subject)"),
    ("machines.csv", "score ~ Machine + cs(0 + Machine | Worker)"),
    ("sleepstudy.csv", "Reaction ~ Days + diag(Days | Subject)"),
    ("oxboys.csv", "height ~ age + (age | Subject) + ar1(0 + factor(Occasion) | Subject)"),  # with an lme4 term
]


@pytest.mark.parametrize("csv,formula", STRUCTURED)
def test_gradient_of_structured_terms_matches_central_differences(csv, formula):
    """The chain rule through ∂Λ/∂φ (SDs and a correlation inside its bounds) on both parameterisations."""
    rng = np.random.default_rng(zlib.crc32(formula.encode()))
    st = structures(csv, formula)[0]
    assert st.structured
    theta = np.where(st.theta_is_diag, rng.uniform(0.3, 2.0, st.n_theta), rng.normal(scale=0.4, size=st.n_theta))
    rho = np.isfinite(st.theta_upper)
    theta[rho] = rng.uniform(-0.2, 0.8, int(rho.sum()))
    for reml in (True, False):
        for working in (True, False):
            g = gradient((evaluate_working if working else evaluate)(st, theta), reml)
            got = g.working(st) if working else g.user(st)
            want = central(st, theta, reml, working)
            np.testing.assert_allclose(got, want, atol=1e-6 * max(1.0, float(np.max(np.abs(want)))))
