"""A batch of θ factored at once (``Factorization`` of a 2-D θ) gives what each θ gives alone.

The convergence check and Satterthwaite's differences evaluate 2n(n+1) points in one batch;
their criteria and R_X must be those of the one-at-a-time factor to rounding, whatever the
path (a scalar first term eliminated or not, the working or the user's θ, failed factors).
"""

from __future__ import annotations

import numpy as np
import pytest

from mixcli.engine.derivatives import gradient_hessian
from mixcli.engine.factor import evaluate, evaluate_working
from mixcli.frame import model_frame
from mixcli.io import read_table
from mixcli.model import build_structure
from mixcli.simulate import example_path

FORMULAS = [
    "mathscore ~ ses + (ses | schoolid)",
    "mathscore ~ ses + (ses | schoolid) + (1 | classid)",
    "mathscore ~ ses + (ses | schoolid) + (ses || classid)",
    "mathscore ~ ses + (1 | schoolid) + (ses | classid)",
    "mathscore ~ 1 + (1 | classid) + (1 | schoolid)",
]


@pytest.fixture(scope="module")
def table():
    return read_table(str(example_path()))


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("working", [False, True])
def test_a_batch_factors_as_its_members_do(table, formula, full, working):
    st = build_structure(model_frame(table, formula))
    rng = np.random.default_rng(7)
    thetas = np.abs(rng.normal(size=(6, st.n_theta)))
    thetas[0] = st.theta_start
    thetas[1, st.theta_is_diag] = 0.0  # a singular point
    factor = evaluate_working if working else evaluate
    batch = factor(st, thetas, full=full)
    for reml in (True, False):
        alone = np.array([factor(st, th, full=full).criterion(reml) for th in thetas])
        np.testing.assert_allclose(batch.criteria(reml), alone, rtol=1e-13)
    v = np.array([factor(st, th, full=full).rx_inverse() for th in thetas])
    np.testing.assert_allclose(batch.rx_inverse(), v, rtol=1e-11)


def test_a_failed_member_is_infinite_and_spares_the_others(table):
    st = build_structure(model_frame(table, FORMULAS[1]))
    thetas = np.array([st.theta_start, np.full(st.n_theta, np.nan), 2 * st.theta_start])
    crit = evaluate_working(st, thetas, full=False).criteria(True)
    assert np.isinf(crit[1]) and np.all(np.isfinite(crit[[0, 2]]))
    assert crit[2] == pytest.approx(evaluate_working(st, thetas[2], full=False).criterion(True), rel=1e-13)


def test_derivatives_from_a_batch_equal_those_point_by_point():
    def f(x):
        return np.array([np.sin(x[0]) * np.exp(x[1]) + x[2] ** 3, x[0] * x[1] * x[2]])

    x = np.array([0.3, -0.2, 1.1])
    one = gradient_hessian(f, x)
    many = gradient_hessian(f, x, many=lambda pts: np.array([f(p) for p in pts]))
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)
    # and they are derivatives: the exact gradient and Hessian of the first component
    g = [np.cos(0.3) * np.exp(-0.2), np.sin(0.3) * np.exp(-0.2), 3 * 1.1**2]
    np.testing.assert_allclose(one[1][0], g, rtol=1e-9)
    assert one[2][0, 2, 2] == pytest.approx(6 * 1.1, rel=1e-9)
    assert one[2][0, 0, 1] == pytest.approx(np.cos(0.3) * np.exp(-0.2), rel=1e-8)


def test_mixed_differences_take_one_level_only_for_parameters_whose_diagonal_agrees():
    # x0 and x1 enter as a cubic polynomial (their second differences at h and h/2 agree to
    # rounding), x2 through a sine: the pair (x1, x0) takes one level, (x2, x0) and (x2, x1) both.
    # The points evaluated say which; every derivative stays the full extrapolation's.
    def f(x):
        return np.array([x[0] ** 2 + x[0] * x[1] + x[1] ** 3 + np.sin(x[2]) * (x[0] + x[1])])

    x = np.array([0.3, -0.2, 1.1])
    counted = []

    def many(pts):
        counted.append(len(pts))
        return np.array([f(p) for p in pts])

    full = gradient_hessian(f, x)
    adaptive = gradient_hessian(f, x, many=many, pair_tol=1e-9)
    # 1 + 2·(3·2 diagonal + 3 pairs at the first level), then the two pairs with x2 at h/2: 2·2
    assert counted == [1 + 2 * (6 + 3), 2 * 2]
    np.testing.assert_allclose(adaptive[2], full[2], rtol=1e-9, atol=1e-9)
    everything = gradient_hessian(f, x, many=many, pair_tol=0.0)  # (nothing agrees to 0: both levels)
    assert counted[-1] == 2 * 3 and np.allclose(everything[2], full[2], rtol=1e-12, atol=1e-12)


def test_a_large_eliminated_term_computed_by_distinct_counts_equals_the_per_level_sums():
    # 24,000 classes of 1-10 children: log|D0| and the weights go by the ten distinct counts
    from mixcli.engine.factor import criterion_working
    from mixcli.simulate import simulate_classroom
    from mixcli.table import Table

    frame = model_frame(Table.from_mapping(simulate_classroom(n_schools=8000, seed=3)),
                        "mathscore ~ ses + (ses | schoolid) + (1 | classid)")
    st = build_structure(frame)
    theta = np.array([0.3, 0.5, 0.1, 0.2])
    grouped = criterion_working(st, theta, True)
    elim = st.elimination(None)
    assert elim.distinct is not None and len(elim.distinct[0]) <= 10
    elim.distinct, elim._last = None, None
    assert criterion_working(st, theta, True) == pytest.approx(grouped, rel=1e-13)
