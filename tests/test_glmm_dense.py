"""The GLMM criterion on the blocked factor against a dense recomputation, at random (θ, β).

PIRLS on the engine (weighted sums, the blocked Cholesky, step-halving) and the Laplace
deviance must equal Newton's method with dense matrices (``dense_oracle.dense_laplace``) on
every structure: nested chains, crossed terms, a vector-valued term, binomial counts with
cbind(), Poisson with an offset, every link.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from mixcli.engine.agq import agq_deviance
from mixcli.engine.pirls import laplace, pirls
from mixcli.family import family
from mixcli.frame import model_frame
from mixcli.glmm import GlmmModel

from conftest import FIXTURES, cached_table
from dense_oracle import dense_laplace

CASES = [
    ("glmm_binary.csv", "pass ~ ses + (1 | schoolid) + (1 | classid)", "binomial", "logit"),  # nested chain
    ("glmm_binary.csv", "pass ~ ses + (ses | schoolid)", "binomial", "probit"),  # a vector term
    ("glmm_binary.csv", "pass ~ ses + sex + (1 | schoolid)", "binomial", "cloglog"),
    ("glmm_crossed.csv", "r2 ~ anger + mode + (1 | subj) + (1 | item)", "binomial", "logit"),  # crossed
    ("glmm_crossed.csv", "r2 ~ mode + (1 | subj) + (mode | item)", "binomial", "logit"),  # a crossed vector term
    ("glmm_binomial.csv", "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)", "binomial", "logit"),
    ("glmm_counts.csv", "ticks ~ cheight + offset(log(exposure)) + (1 | location/brood)", "poisson", "log"),
    ("glmm_counts.csv", "ticks ~ factor(year) + (1 | location)", "poisson", "sqrt"),
]


@pytest.mark.parametrize("csv,formula,fam,link", CASES)
def test_laplace_matches_dense_newton(csv, formula, fam, link):
    frame = model_frame(cached_table(FIXTURES / "data" / csv), formula, family=family(fam, link))
    model = GlmmModel(frame)
    st, data = model.structure, model.data
    start = pirls(data, st.theta_start, None)  # the first stage's β at θ = 1: a sensible β
    rng = np.random.default_rng(zlib.crc32(formula.encode()))
    for _ in range(2):
        theta = st.theta_start * rng.uniform(0.3, 1.5, size=st.n_theta)
        beta = start.beta + 0.1 * rng.normal(size=len(start.beta))
        ours = laplace(data, pirls(data, st.to_working(theta), beta))
        dense = dense_laplace(frame, st, theta, beta, data.family, data.wt, data.offset)
        assert ours == pytest.approx(dense, rel=1e-9, abs=1e-7)


POINT_CASES = [
    ("glmm_binary.csv", "pass ~ ses + (1 | schoolid)", "binomial", "logit"),  # 0/1 data
    ("glmm_binomial.csv", "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)", "binomial", "logit"),
    ("glmm_binomial.csv", "cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)", "binomial", "probit"),
    ("glmm_counts.csv", "ticks ~ cheight + offset(log(exposure)) + (1 | location)", "poisson", "log"),
    ("glmm_counts.csv", "ticks ~ cheight + (1 | location)", "poisson", "sqrt"),
]


@pytest.mark.parametrize("csv,formula,fam,link", POINT_CASES)
def test_deviance_at_eta_equals_the_sum_of_rs_deviance_residuals(csv, formula, fam, link):
    """``GlmmData.point`` takes shortcuts (log μ = η under the log link; one log for the logit);
    each must equal R's dev.resids summed, including beyond the links' guards (|η| > 36), and
    the general path (probit, sqrt) too."""
    frame = model_frame(cached_table(FIXTURES / "data" / csv), formula, family=family(fam, link))
    data = GlmmModel(frame).data
    rng = np.random.default_rng(7)
    for spread in (0.5, 3.0, 40.0):
        eta = rng.normal(scale=spread, size=frame.n)
        if link == "sqrt":
            eta = np.abs(eta) + 0.1
        mu, mu_eta, dev = data.point(eta)
        fam_ = data.family
        assert np.array_equal(mu, fam_.link.linkinv(eta)) or np.allclose(mu, fam_.link.linkinv(eta), rtol=1e-15)
        np.testing.assert_allclose(mu_eta, fam_.link.mu_eta(eta), rtol=1e-13)
        expected = float(np.sum(fam_.dev_resids(data.y, fam_.link.linkinv(eta), data.wt)))
        assert dev == pytest.approx(expected, rel=1e-12, abs=1e-9)
    assert data.point(np.full(frame.n, np.nan))[2] == np.inf


def test_one_quadrature_point_is_the_laplace_approximation_for_binary_data():
    frame = model_frame(cached_table(FIXTURES / "data" / "glmm_binary.csv"), "pass ~ ses + (1 | schoolid)",
                        family=family("binomial"))
    data = GlmmModel(frame).data
    modes = pirls(data, np.array([0.8]), np.array([-0.3, 0.6]))
    # 0/1 data: the deviance residuals are −2 log f, so nAGQ = 1 through the quadrature is Laplace exactly
    assert agq_deviance(data, modes, 1) == pytest.approx(laplace(data, modes), rel=1e-12)
    # and more nodes converge
    values = [agq_deviance(data, modes, n) for n in (5, 9, 15, 25)]
    assert abs(values[-1] - values[-2]) < 1e-6 < abs(values[0] - laplace(data, modes))
