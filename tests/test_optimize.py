"""The optimiser on its own: one NLopt driver, lme4's boundary care, and honest reporting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixcli.control import DEFAULT
from mixcli.engine.optimize import OptSummary, minimize_theta, run


def quadratic(centre, weights=None):
    centre = np.asarray(centre, float)
    weights = np.ones_like(centre) if weights is None else np.asarray(weights, float)
    return lambda x: float(np.sum(weights * (x - centre) ** 2))


def test_run_reaches_an_interior_minimum_and_counts_evaluations():
    s = OptSummary(start=[1.0, 1.0], lower=[0.0, -np.inf])
    x, f, status = run(s, quadratic([2.0, -3.0]))
    assert status == "ok" and f < 1e-12
    np.testing.assert_allclose(x, [2.0, -3.0], atol=1e-6)
    assert s.evaluations > 0 and s.status == "ok"


def test_settings_come_from_the_summarys_control_unless_given():
    control = DEFAULT.replace(max_eval=7, ftol_abs=1e-3)
    s = OptSummary(start=[1.0], lower=[0.0], control=control)
    assert s.max_eval == 7 and s.ftol_abs == 1e-3 and s.xtol_abs == DEFAULT.xtol_abs
    assert OptSummary(start=[1.0], lower=[0.0], max_eval=9, control=control).max_eval == 9
    assert OptSummary(start=[1.0], lower=[0.0]).max_eval == DEFAULT.max_eval == 100_000


def test_the_evaluation_limit_is_reported_as_not_converged():
    s = OptSummary(start=[1.0, 1.0, 1.0], lower=[0.0, 0.0, 0.0], max_eval=5)
    minimize_theta(quadratic([2.0, 3.0, 4.0]), s)
    assert s.max_eval == 5 and s.status in ("maxeval", "ok")
    assert not s.converged
    assert any("stopped after" in w and "evaluations without converging" in w for w in s.warnings)


def test_a_diagonal_parameter_near_zero_is_pinned_to_its_bound():
    # the minimum is on the boundary: BOBYQA stops a hair inside it, the check puts it on it
    s = OptSummary(start=[1.0, 1.0], lower=[0.0, 0.0])
    minimize_theta(lambda x: (x[0] - 2.0) ** 2 + x[1] ** 3, s)  # flat at 0: BOBYQA stops inside the boundary
    assert s.theta[1] == 0.0
    assert any("set to their bound" in line for line in s.stages)
    assert s.fmin == pytest.approx(0.0, abs=1e-9)


def test_a_pinned_parameter_stays_unless_leaving_the_boundary_clearly_helps():
    # the optimum is at 1e-4, only 1e-10 below the boundary's criterion: within the slack, the
    # boundary (a singular fit) is preferred; moving off it lowers the criterion, so the
    # optimiser is restarted from the edge, and its answer is not better by more than the slack
    s = OptSummary(start=[1.0, 1.0], lower=[0.0, 0.0])
    minimize_theta(quadratic([2.0, 1e-4], [1.0, 1e-2]), s)
    assert any("restart from the boundary" in line for line in s.stages)
    assert s.theta[1] == 0.0


def test_restart_from_the_edge_is_kept_when_it_is_clearly_better():
    s = OptSummary(start=[1.0, 1.0], lower=[0.0, 0.0])
    # a criterion that is flat on the first run's scale but prefers x1 = 5e-4 by far more than the slack
    fn = lambda x: (x[0] - 2.0) ** 2 + 1e3 * (x[1] - 5e-4) ** 2
    minimize_theta(fn, s)
    assert s.theta[1] == pytest.approx(5e-4, rel=1e-3)


def test_off_diagonal_parameters_are_never_pinned():
    s = OptSummary(start=[1.0, 0.0], lower=[0.0, -np.inf])
    minimize_theta(quadratic([2.0, 1e-5]), s)
    assert s.theta[1] != 0.0 and s.theta[1] == pytest.approx(1e-5, abs=1e-7)


def test_a_criterion_that_is_never_finite_is_not_a_fit():
    s = OptSummary(start=[1.0], lower=[0.0])
    minimize_theta(lambda x: math.nan, s)
    assert not s.converged and math.isnan(s.fmin) and s.nonfinite == s.evaluations > 0
    assert any("not finite at any" in w for w in s.warnings)


def test_infinite_values_steer_the_optimiser_away():
    s = OptSummary(start=[1.0], lower=[0.0])
    minimize_theta(lambda x: math.inf if x[0] > 3 else (x[0] - 2.5) ** 2, s)
    assert s.converged and s.theta[0] == pytest.approx(2.5, abs=1e-5)


def test_a_run_with_overrides_counts_against_one_limit():
    s = OptSummary(start=[1.0, 1.0], lower=[0.0, 0.0], max_eval=30)
    fn = quadratic([2.0, 3.0])
    run(s, fn)
    first = s.evaluations
    run(s, fn, x0=np.array([5.0, 5.0]), upper=np.array([np.inf, 5.0]), step=np.array([0.1, 0.1]))
    assert first < s.evaluations <= 30


def test_no_parameters():
    s = OptSummary(start=[], lower=[])
    x, f, status = run(s, lambda x: 4.0)
    assert len(x) == 0 and f == 4.0 and status == "ok"


# ------------------------------------------------------------------ the fit's strategy on real models

from conftest import SHARED, cached_table  # noqa: E402

CLASSROOM = SHARED / "data" / "classroom.csv"
needs_classroom = pytest.mark.skipif(not CLASSROOM.exists(), reason="needs ../shared/data/classroom.csv")


@needs_classroom
def test_a_second_start_heading_for_the_first_minimum_is_abandoned_early():
    # M16 ML ends on the boundary, so a second start is due from 10 × the start. The criterion
    # falls at every step of the straight path from there to the first minimum, so it is not
    # run (8 points in one batch). Without that look (descent_path=()) the start is run until
    # it comes within 1 of the first minimum with nothing between the two (the segment probes),
    # then abandoned. Both reach lme4's criterion (the reference JSON: 11880.9645075431).
    import mixcli
    from mixcli.control import DEFAULT

    formula = "mathscore ~ ses + (ses | schoolid) + (ses || classid)"
    m = mixcli.fit(cached_table(CLASSROOM), formula, reml=False)
    assert any("straight path" in s and "the same minimum (not run)" in s for s in m.optsummary.stages)
    run = mixcli.fit(cached_table(CLASSROOM), formula, reml=False, control=DEFAULT.replace(descent_path=()))
    stages = run.optsummary.stages
    assert any("(stopval)" in s for s in stages) and any("nothing between them: the same minimum" in s for s in stages)
    assert m.optsummary.evaluations < run.optsummary.evaluations - 30
    for fit in (m, run):
        assert fit.criterion == pytest.approx(11880.9645075431, rel=1e-11)


@needs_classroom
def test_the_restart_from_a_mirror_image_does_not_crawl():
    # M15 REML: the first run stops at 11879.416 on the boundary; the mirror image across it
    # leads to lme4's optimum 11874.894. Started with the probed entry's own trust region
    # (7.5e-5) BOBYQA took 12,055 evaluations to get there.
    import mixcli

    m = mixcli.fit(cached_table(CLASSROOM), "mathscore ~ ses + (ses | schoolid) + (ses | classid)")
    assert any("mirror image" in s for s in m.optsummary.stages)
    assert m.optsummary.evaluations < 1000
    assert m.criterion == pytest.approx(11874.8939657367, rel=1e-11)


def test_a_glmms_extra_starts_are_abandoned_when_they_head_for_the_first_minimum():
    # binomial (ses | schoolid) on the packaged data: the first stage ends on a boundary, so it
    # tries 0.1x and 10x the start; both come within 1 of the first minimum with nothing between
    # and are abandoned. The oracle: the same fit with every start run to its end (same_basin
    # = -inf never stops a run early) reaches the same Laplace deviance with more evaluations.
    import mixcli
    from mixcli.simulate import example_path

    formula = "pass ~ ses + (ses | schoolid)"
    m = mixcli.fit(str(example_path()), formula, family="binomial")
    full = mixcli.fit(str(example_path()), formula, family="binomial",
                      control=DEFAULT.replace(same_basin=-math.inf))
    assert sum("the same minimum" in s for s in m.optsummary.stages) == 2
    assert not any("the same minimum" in s for s in full.optsummary.stages)
    assert m.optsummary.evaluations < 180 < full.optsummary.evaluations
    assert m.criterion == pytest.approx(full.criterion, abs=2e-10)


def test_a_response_the_random_effects_reproduce_is_said_to_have_no_maximum():
    """A fuzz case: y exactly linear in x within 2 groups, y ~ (x | g) (an unbounded likelihood, θ →
    1e7). The convergence check's polish once reached a θ̃ whose criterion the optimiser saw as finite
    but the fit's evaluation at the user's θ could not compute (σ NaN, "broke down numerically"). r²
    at the estimate is below 1e-10 of y's sum of squares, and least squares finds y in the span of
    [X, Z]: the fit says the likelihood has no maximum, and reports the criterion and σ the
    optimiser's own path computes at its θ̃. With the check off, the polish runs on, and the numbers
    reported are still the optimiser's."""
    from mixcli.control import Control
    from mixcli.engine.factor import evaluate_working
    from mixcli.fitting import fit_frame
    from mixcli.frame import model_frame
    from mixcli.model import reproduces_response
    from mixcli.table import Table, TextColumn

    y = [0.6508599024381363, -1.2435356458843245, 3.139859902438136, 1.0774643541156756, 0.24885990243813613,
         0.5354643541156756, 0.09546435411567544, -0.5125356458843244, 1.973859902438136, 1.4898599024381363,
         2.6028599024381363, 2.8008599024381358, 3.059859902438136, 1.7008599024381361, 1.8324643541156755,
         1.8518599024381361, 2.548859902438136, 2.9708599024381357, 3.163859902438136, 1.3374643541156754,
         1.2738599024381363, -0.8025356458843245, 2.2374643541156756, 0.9358599024381362, 0.3058599024381363,
         0.24146435411567557, -0.3381400975618638, 3.047859902438136, 2.009859902438136, 0.7554643541156756,
         0.35085990243813625]
    x = [-1.164, -1.979, 1.325, 0.342, -1.566, -0.2, -0.64, -1.248, 0.159, -0.325, 0.788, 0.986, 1.245, -0.114, 1.097,
         0.037, 0.734, 1.156, 1.349, 0.602, -0.541, -1.538, 1.502, -0.879, -1.509, -0.494, -2.153, 1.233, 0.195, 0.02,
         -1.464]
    g = [1, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 0, 1]
    table = Table(columns={"y": np.array(y), "x": np.array(x),
                           "g": TextColumn(codes=np.array(g), labels=np.array(["g0", "g1"], dtype=object),
                                           levels_fixed=False)}, source="<data>", nrows=len(y))
    frame = model_frame(table, "y ~ (x | g)")
    assert reproduces_response(frame, 10**6)
    r = fit_frame(frame, reml=False)
    assert r.optsummary.unbounded and not r.converged
    assert any("so the likelihood has no maximum" in w for w in r.warnings)
    assert math.isfinite(r.criterion) and r.sigma > 0
    assert r.criterion == evaluate_working(r.structure, r.optsummary.theta, full=False).criterion(False)
    off = fit_frame(frame, reml=False, control=Control(exact_fit=0.0))
    assert not any("no maximum" in w for w in off.warnings) and off.warnings and not off.converged
    assert math.isfinite(off.criterion) and off.sigma > 0
    assert off.criterion == evaluate_working(off.structure, off.optsummary.theta, full=False).criterion(False)
    # y + noise is not reproduced: the check says so, and the fit has its ordinary optimum
    noisy = Table(columns={**table.columns, "y": np.array(y) + 0.3 * np.sin(np.arange(len(y)))}, source="<data>",
                  nrows=len(y))
    assert not reproduces_response(model_frame(noisy, "y ~ (x | g)"), 10**6)


def test_the_criterion_reported_is_the_one_the_optimiser_minimised():
    """A fuzz case: x ~ (0 + x | g) + (0 + x | g) on 9 rows, the response the random slopes' own
    column (θ runs to 1e5). Evaluated at the user's θ the criterion came out −40.26; the optimiser's
    path at its θ̃ and a dense recomputation at the reported θ both give −155.3 (r² is at the limit
    of double precision, where the two paths' rounding differs by 115). The fit reports the
    optimiser's, and says the likelihood has no maximum (it had said the optimiser stopped short)."""
    from mixcli.fitting import fit_frame
    from mixcli.frame import model_frame
    from mixcli.table import Table, TextColumn

    from dense_oracle import dense_criterion

    table = Table(columns={"x": np.array([0.0, 1, 1, -1, -1, -1, 0, -2, 0, -1]),
                           "g": TextColumn(codes=np.array([1, 1, 1, 0, 0, 0, 0, -1, 0, 1]),
                                           labels=np.array(["g0", "g1"], dtype=object), levels_fixed=False)},
                  source="<data>", nrows=10)
    frame = model_frame(table, "x ~ (0 + x | g) + (0 + x | g)")
    r = fit_frame(frame, reml=False)
    assert r.theta[0] > 1e4 and any("so the likelihood has no maximum" in w for w in r.warnings)
    assert r.criterion == pytest.approx(dense_criterion(frame, r.structure, r.theta, False)[0], abs=1e-2)
