"""The blocked criterion against a dense recomputation with plain numpy linear algebra.

For random θ the dense path builds Z (n × q) and Λ explicitly, solves the
penalised least-squares system with np.linalg and evaluates lme4's formulas
for d(θ) and d_R(θ) (Bates et al. 2015). Structures covered: a three-level
nested chain, vector-valued nested terms, x || g (two terms on one factor),
crossed factors (dense tail), and a mix of nested and crossed terms.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from mixcli.engine.factor import evaluate
from mixcli.engine.structure import ModelStructure
from mixcli.frame import model_frame
from mixcli.io import read_table

from conftest import FIXTURES
from dense_oracle import dense_criterion, dense_pieces

CASES = [
    ("nested3.csv", "y ~ x + (1 | district/school/class)"),
    ("nested3.csv", "y ~ x + (x | district) + (1 | district:school)"),
    ("classroom_sim.csv", "mathscore ~ ses + (ses | schoolid) + (ses | classid)"),
    ("classroom_sim.csv", "mathscore ~ ses + (ses | schoolid) + (ses || classid)"),
    ("crossed.csv", "rt ~ cond * freq + (1 + freq | subj) + (1 | item)"),
    ("crossed.csv", "rt ~ cond + (1 + cond | subj) + (1 + freq | item)"),  # a vector-valued crossed term
    ("slopes.csv", "y ~ x + (1 | a) + (1 | b) + (1 | a:b)"),
    ("slopes.csv", "y ~ x + z + (x + z | g)"),
    ("categorical.csv", "y ~ 0 + recipe + (1 | batch)"),
]


@pytest.mark.parametrize("csv,formula", CASES)
def test_blocked_criterion_matches_dense(csv, formula):
    frame = model_frame(read_table(str(FIXTURES / "data" / csv)), formula)
    st = ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))
    rng = np.random.default_rng(zlib.crc32(formula.encode()))
    for _ in range(3):
        theta = st.theta_start + rng.normal(scale=0.6, size=st.n_theta)
        theta = np.where(st.theta_is_diag, np.abs(theta), theta)
        fac = evaluate(st, theta)
        for reml in (True, False):
            expected, beta, u = dense_criterion(frame, st, theta, reml)
            assert fac.criterion(reml) == pytest.approx(expected, rel=1e-8)
        got_beta = fac.fixef()
        np.testing.assert_allclose(got_beta, beta, rtol=1e-7, atol=1e-9)
        got_u = np.concatenate([m.T.ravel() for m in fac.spherical_modes(got_beta)])
        np.testing.assert_allclose(got_u, u, rtol=1e-6, atol=1e-8)


def test_structures_covered():
    """The cases exercise a pure chain, a dense tail, and chain + tail together."""
    kinds = set()
    for csv, formula in CASES:
        frame = model_frame(read_table(str(FIXTURES / "data" / csv)), formula)
        st = ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))
        kinds.add((st.n_chain, len(st.dense)))
    assert (3, 0) in kinds  # three nested levels, all block-diagonal
    assert any(d > 0 for _, d in kinds)  # crossed
    assert any(c > 1 and d > 0 for c, d in kinds) or any(c >= 1 and d >= 2 for c, d in kinds)


def test_nested_blocks_scale_with_levels_not_their_product():
    """Per-evaluation storage of a nested model: one block per level, never q_inner × q_outer."""
    from mixcli.simulate import simulate_classroom
    from mixcli.table import Table

    data = Table.from_mapping(simulate_classroom(n_schools=2000, seed=3))
    frame = model_frame(data, "mathscore ~ ses + (ses | schoolid) + (1 | classid)")
    st = ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))
    assert st.n_chain == 2 and not st.dense
    fac = evaluate(st, st.theta_start)
    q_class, q_school = (t.n_levels for t in frame.terms)
    stored = sum(a.size for a in fac.lss) + sum(a.size for a in fac.l.values()) + sum(a.size for a in fac.w)
    assert stored <= 20 * (q_class + q_school)
    assert q_class * q_school > 100 * stored


@pytest.mark.parametrize("csv,formula", CASES)
def test_conditional_covariances_match_dense_inverse(csv, formula):
    """Selected inversion gives the diagonal blocks of (ΛᵀZᵀZΛ + I)⁻¹ exactly."""
    frame = model_frame(read_table(str(FIXTURES / "data" / csv)), formula)
    st = ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))
    rng = np.random.default_rng(7)
    theta = st.theta_start + rng.normal(scale=0.5, size=st.n_theta)
    theta = np.where(st.theta_is_diag, np.abs(theta), theta)
    zl = dense_pieces(frame, st, theta)
    inverse = np.linalg.inv(zl.T @ zl + np.eye(zl.shape[1]))
    got = evaluate(st, theta).conditional_covariances()
    off = 0
    for term, blocks in zip(frame.terms, got):
        q, k = term.n_levels, term.k
        dense = inverse[off : off + q * k, off : off + q * k].reshape(q, k, q, k)
        expected = np.einsum("iaib->abi", dense)
        np.testing.assert_allclose(blocks, expected, rtol=1e-8, atol=1e-12)
        off += q * k


@pytest.mark.parametrize("csv,formula,block", [
    ("classroom_sim.csv", "mathscore ~ ses + (ses | schoolid) + (1 | classid)", (1, 1)),
    ("nested3.csv", "y ~ x + (1 | district/school/class)", (1, 1)),
    ("crossed.csv", "rt ~ cond + (1 | subj) + (1 | item)", (1, 1)),
    # a first term of two effects, alone or ahead of a chain; the two halves of (x || g)
    ("classroom_sim.csv", "mathscore ~ ses + (ses | schoolid)", (1, 2)),
    ("nested3.csv", "y ~ x + (x | district:school) + (1 | district)", (1, 2)),
    ("slopes.csv", "y ~ x + (x || g)", (2, 2)),
    ("classroom_sim.csv", "mathscore ~ ses + (ses | schoolid) + (ses || classid)", (2, 2)),
    # three effects on the first factor: only its scalar first term is eliminated
    ("slopes.csv", "y ~ x + (1 | g) + (0 + x + z | g)", (1, 1)),
])
def test_eliminating_the_first_block_gives_the_dense_criterion(csv, formula, block):
    from mixcli.engine.eliminate import eliminable, first_block

    frame = model_frame(read_table(str(FIXTURES / "data" / csv)), formula)
    st = ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))
    assert eliminable(st) and first_block(st) == block
    rng = np.random.default_rng(11)
    thetas = []
    for _ in range(3):
        theta = st.theta_start + rng.normal(scale=0.6, size=st.n_theta)
        theta = np.where(st.theta_is_diag, np.abs(theta), theta)
        thetas.append(theta)
        for reml in (True, False):
            fast = evaluate(st, theta, full=False)
            assert fast.logdet0 > 0  # the elimination path was taken
            assert fast.criterion(reml) == pytest.approx(dense_criterion(frame, st, theta, reml)[0], rel=1e-10)
            assert fast.criterion(reml) == pytest.approx(evaluate(st, theta).criterion(reml), rel=1e-12)
    if not st.dense:  # a batch takes the same path, member by member
        batch = evaluate(st, np.array(thetas), full=False).criteria(True)
        alone = [evaluate(st, t, full=False).criterion(True) for t in thetas]
        np.testing.assert_allclose(batch, alone, rtol=1e-13)


@pytest.mark.parametrize("formula", ["mathscore ~ ses + (ses | schoolid) + (1 | classid)",
                                     "mathscore ~ ses + (ses | schoolid) + (ses || classid)"])
def test_the_eliminations_sums_are_the_same_without_scipys_kernels(monkeypatch, formula):
    """The eliminated block's weighted sums go through one θ-free sparse product (scipy's CSR kernels,
    ``FirstBlockElimination._product``), one point or a batch; without the kernels, through the
    weighted products and bincounts. The same sums in the same order: the criteria agree to rounding."""
    from mixcli.engine import linalg

    frame = model_frame(read_table(str(FIXTURES / "data" / "classroom_sim.csv")), formula)
    rng = np.random.default_rng(5)

    def criteria(st):
        thetas = [np.abs(st.theta_start + rng.normal(scale=0.3, size=st.n_theta)) for _ in range(3)]
        return ([evaluate(st, t, full=False).criterion(True) for t in thetas],
                evaluate(st, np.array(thetas), full=False).criteria(True))

    st = ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))
    one, batch = criteria(st)
    assert linalg.csr_matvec() is not None and any(p is not None for p in st.elimination(None)._products.values())
    monkeypatch.setattr(linalg, "_MATVECS", [None, None])
    rng = np.random.default_rng(5)
    bare = ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))
    one_bare, batch_bare = criteria(bare)
    assert all(p is None for p in bare.elimination(None)._products.values())
    np.testing.assert_allclose(one, one_bare, rtol=1e-13)
    np.testing.assert_allclose(batch, batch_bare, rtol=1e-13)
    np.testing.assert_allclose(batch, one, rtol=1e-13)


def test_the_two_effect_elimination_stays_accurate_where_theta_is_large():
    """An unbounded likelihood takes θ to 1e4 (y ~ (x | g) with 2 groups of 3 rows: a fuzz case), where
    the random effects take up nearly all of y and r² is a difference of nearly equal sums: the
    criterion-only factor is then taken block by block (Factorization._well_reduced; the block's
    adjugate had given the criterion 1.07 below the dense one). At a moderate θ the block is
    eliminated, and agrees as closely."""
    from mixcli.table import Table, TextColumn

    table = Table(columns={"y": np.array([1.0, 0, 1, 2, 2, 0]), "x": np.array([0.0, -1, 0, 1, 1, -1]),
                           "g": TextColumn(codes=np.array([1, 1, 1, 0, 0, 0]), labels=np.array(["g0", "g1"], dtype=object),
                                           levels_fixed=False)}, source="<data>", nrows=6)
    frame = model_frame(table, "y ~ (x | g)")
    st = ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))
    for theta, eliminated in (([0.0, 1015.93011325, 11755.44348847], False), ([3.0, 200.0, 1500.0], False),
                              ([50.0, -20.0, 3000.0], False), ([0.8, 0.3, 0.5], True)):
        fast = evaluate(st, np.array(theta), full=False)
        assert (fast.logdet0 > 0) == eliminated
        for reml in (True, False):
            expected = dense_criterion(frame, st, np.array(theta), reml)[0]
            assert fast.criterion(reml) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("csv,formula", [
    ("classroom_sim.csv", "mathscore ~ ses + (ses | schoolid) + (1 | classid)"),
    ("crossed.csv", "rt ~ cond + (1 | subj) + (1 | item)"),
    ("nested3.csv", "y ~ x + (x | district) + (1 | district:school)"),
    ("classroom_sim.csv", "mathscore ~ ses + (ses | schoolid) + (ses || classid)"),
])
def test_with_response_equals_a_structure_built_from_scratch(csv, formula):
    frame = model_frame(read_table(str(FIXTURES / "data" / csv)), formula)
    st = ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))
    theta = st.theta_start * 0.7
    evaluate(st, theta, full=False)  # builds any cached elimination, which must follow the response
    y2 = frame.y[::-1].copy() * 1.5 + 3.0
    fresh = ModelStructure(frame.terms, np.column_stack([frame.X, y2]))
    derived = st.with_response(y2)
    for full in (True, False):
        a, b = evaluate(derived, theta, full=full), evaluate(fresh, theta, full=full)
        assert a.criterion(True) == pytest.approx(b.criterion(True), rel=1e-12)
        np.testing.assert_allclose(a.fixef(), b.fixef(), rtol=1e-10)
    # and the original is untouched
    assert evaluate(st, theta).criterion(True) == pytest.approx(
        evaluate(ModelStructure(frame.terms, np.column_stack([frame.X, frame.y])), theta).criterion(True), rel=1e-12)


def test_centring_the_response_keeps_criterion_and_estimates():
    """Sums use y − Xb internally; β̂, u and the criterion are those of the dense oracle on y."""
    frame = model_frame(read_table(str(FIXTURES / "data" / "classroom_sim.csv")),
                        "mathscore ~ ses + (ses | schoolid) + (1 | classid)")
    st = ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))
    assert abs(st.beta_shift[0]) > 100  # mathscore is centred far from 0
    theta = st.theta_start * 0.5
    expected, beta, u = dense_criterion(frame, st, theta, True)
    fac = evaluate(st, theta)
    assert fac.criterion(True) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(fac.fixef(), beta, rtol=1e-10)
    got_u = np.concatenate([m.T.ravel() for m in fac.spherical_modes()])
    np.testing.assert_allclose(got_u, u, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kernel", ["scipy's kernel", "the public product"])
def test_sparse_grouped_sums_agree_with_bincounts(monkeypatch, kernel):
    """Large models group through a CSR indicator product (scipy's kernel, loaded without scipy.sparse,
    or scipy.sparse's public product where the kernel is not usable); force it on a small one."""
    from mixcli.engine import linalg

    frame = model_frame(read_table(str(FIXTURES / "data" / "nested3.csv")), "y ~ x + (1 | district/school/class)")
    theta = np.array([0.4, 0.7, 1.3])
    expected = evaluate(ModelStructure(frame.terms, np.column_stack([frame.X, frame.y])), theta, full=False)
    monkeypatch.setattr(linalg.Segments, "SPARSE_FROM", 0)
    if kernel == "the public product":
        monkeypatch.setattr(linalg, "_MATVECS", [None, None])
    else:
        assert linalg.csr_matvecs() is not None
    st = ModelStructure(frame.terms, np.column_stack([frame.X, frame.y]))
    got = evaluate(st, theta, full=False)
    assert any(hasattr(seg, "_csr") for seg in st.segments.values())
    for reml in (True, False):
        assert got.criterion(reml) == pytest.approx(expected.criterion(reml), rel=1e-12)


def test_warm_start_from_a_subsample_reaches_the_same_optimum():
    """Large fits start from a tenth of the outermost groups; the optimum must not move."""
    import mixcli.model as api
    from mixcli.control import DEFAULT
    from mixcli.simulate import simulate_classroom
    from mixcli.table import Table

    data = Table.from_mapping(simulate_classroom(n_schools=3000, seed=4))
    frame = model_frame(data, "mathscore ~ ses + (ses | schoolid) + (1 | classid)")
    cold = api.Model(frame, DEFAULT.replace(warm_start_rows=10**12)).fit()
    warm = api.Model(frame, DEFAULT.replace(warm_start_rows=1000)).fit()
    assert "subsample" in warm.optsummary.stages[0] and "subsample" not in cold.optsummary.stages[0]
    assert warm.criterion == pytest.approx(cold.criterion, abs=1e-6)
    np.testing.assert_allclose(warm.theta, cold.theta, rtol=1e-4, atol=1e-6)
    assert warm.optsummary.evaluations < cold.optsummary.evaluations


def test_newton_from_a_subsample_reaches_bobyqas_optimum_on_a_crossed_model():
    """Heavy crossed models (a dense block of ``heavy_dense`` random effects and more, started from a
    subsample's optimum) take Newton steps with the check's own derivatives instead of BOBYQA
    (model.newton_descent); forced here on a small crossed design, the optimum, its standard errors
    and Satterthwaite's df must be those of the plain fit (BOBYQA, two Richardson levels)."""
    from mixcli.control import DEFAULT
    from mixcli.table import Table

    rng = np.random.default_rng(11)
    users, items = 600, 400
    user = np.repeat(np.arange(users), 60)
    item = rng.integers(0, items, len(user))
    y = 3.5 + 0.4 * rng.standard_normal(users)[user] + 0.6 * rng.standard_normal(items)[item] + rng.standard_normal(len(user))
    frame = model_frame(Table.from_mapping({"y": y, "user": user, "item": item}), "y ~ 1 + (1 | user) + (1 | item)")
    _newton_is_the_plain_fit(frame, DEFAULT.replace(warm_start_dense=100, heavy_dense=100))


def _newton_is_the_plain_fit(frame, control):
    """Newton's path (forced by ``control``) ends where the plain fit does: the criterion, θ, the SEs, the df."""
    import mixcli.model as api

    plain = api.Model(frame).fit()
    newton = api.Model(frame, control).fit()
    stages = newton.optsummary.stages
    assert any(s.startswith("newton from a subsample's optimum (") and "stopped" not in s for s in stages), stages
    assert not any("bobyqa" in s for s in stages) and not any("newton" in s for s in plain.optsummary.stages)
    assert newton.converged and not newton.warnings
    assert newton.criterion <= plain.criterion + 1e-9 * abs(plain.criterion)
    np.testing.assert_allclose(newton.theta, plain.theta, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose([f.se for f in newton.fixef], [f.se for f in plain.fixef], rtol=1e-6)
    df_newton = [f.df for f in newton.add_satterthwaite().fixef]
    df_plain = [f.df for f in plain.add_satterthwaite().fixef]
    np.testing.assert_allclose(df_newton, df_plain, rtol=1e-3)


def test_newton_from_a_subsample_reaches_bobyqas_optimum_on_a_nested_model():
    """Models of ``heavy_rows`` rows and more take the same Newton steps from the subsample's optimum;
    forced here on 33k rows of the classroom design: the plain fit's optimum, standard errors and df."""
    from mixcli.control import DEFAULT
    from mixcli.simulate import simulate_classroom
    from mixcli.table import Table

    data = Table.from_mapping(simulate_classroom(n_schools=3000, seed=4))
    frame = model_frame(data, "mathscore ~ ses + (ses | schoolid) + (1 | classid)")
    _newton_is_the_plain_fit(frame, DEFAULT.replace(warm_start_rows=1000, heavy_rows=1000))


def test_newton_hands_over_to_bobyqa_near_the_boundary():
    """With no user variance simulated (θ̂ ≈ 0.03), a Newton step reaches θ = 0, where its steps do
    not apply: BOBYQA takes over from Newton's best point and reaches the plain fit's optimum."""
    import mixcli.model as api
    from mixcli.control import DEFAULT
    from mixcli.table import Table

    rng = np.random.default_rng(12)
    user = np.repeat(np.arange(600), 60)
    item = rng.integers(0, 400, len(user))
    y = 3.5 + 0.6 * rng.standard_normal(400)[item] + rng.standard_normal(len(user))
    frame = model_frame(Table.from_mapping({"y": y, "user": user, "item": item}), "y ~ 1 + (1 | user) + (1 | item)")
    plain = api.Model(frame).fit()
    newton = api.Model(frame, DEFAULT.replace(warm_start_dense=100, heavy_dense=100)).fit()
    assert any("stopped at" in s and "bobyqa from there" in s for s in newton.optsummary.stages), newton.optsummary.stages
    assert newton.criterion <= plain.criterion + 1e-9 * abs(plain.criterion)
    np.testing.assert_allclose(newton.theta, plain.theta, rtol=1e-4, atol=1e-6)
