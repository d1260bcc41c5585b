"""Kenward–Roger (mixcli.inference.kenward_roger) against pbkrtest 0.5-2 / lmerTest 3.1-3
(fixtures/kr_reference.R), a dense transcription of pbkrtest's algorithm, and closed forms."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

import mixcli
from mixcli.inference.kenward_roger import _parameters, f_sf, kenward_roger, kr_cost

from conftest import FIXTURES, cached_table, load_json

VCOV_RTOL = 1e-6  # the brief's tolerances
DF_RTOL = 1e-4
P_RTOL = 1e-3

REF = load_json(FIXTURES / "kr_reference.json") if (FIXTURES / "kr_reference.json").exists() else {}
MODELS = [k for k in REF if not k.startswith("_")]


def _fit(key):
    r = REF[key]
    return mixcli.fit(cached_table(r["csv"]), r["formula"])


def _at_r_estimates(m, r):
    """The fit with lme4's θ, σ, β̂ and Var(β̂) put in: KR's arithmetic alone, without the
    (tiny) differences between two optimisers' optima."""
    out = copy.copy(m)
    out.theta = np.array(r["theta"], dtype=float)
    out.sigma = float(r["sigma"])
    out.vcov = np.array(r["vcov"], dtype=float)
    out.fixef = [dataclasses.replace(f, estimate=r["coefficients"][f.term]["Estimate"]) for f in m.fixef]
    return out


def _rel(a, b):
    return abs(a - b) / abs(b)


def _check_against(kr, r, vcov_rtol, df_rtol=DF_RTOL, p_rtol=P_RTOL):
    ref_adj = np.array(r["vcov_adj"])
    scale = np.sqrt(np.outer(np.diag(ref_adj), np.diag(ref_adj)))  # entries relative to their SDs
    assert np.max(np.abs(kr.vcov_adj - ref_adj) / scale) <= vcov_rtol
    np.testing.assert_allclose(np.diag(kr.vcov_adj), np.diag(ref_adj), rtol=vcov_rtol)
    tests = kr.t_tests()
    assert [t.term for t in tests] == list(r["coefficients"])
    for t in tests:
        c = r["coefficients"][t.term]
        assert _rel(t.se, c["Std. Error"]) <= vcov_rtol, t
        assert _rel(t.df, c["df"]) <= df_rtol, (t, c)
        assert _rel(t.t, c["t value"]) <= df_rtol, (t, c)
        assert _rel(t.p, c["Pr(>|t|)"]) <= p_rtol, (t, c)
    for term, a in r["anova"].items():
        f = kr.f_test(np.array(a["L"]))
        assert f.numdf == a["NumDF"]
        assert _rel(f.dendf, a["DenDF"]) <= df_rtol, (term, f, a)
        assert _rel(f.F, a["F value"]) <= df_rtol, (term, f, a)
        assert _rel(f.F_unscaled, a["F_unscaled"]) <= df_rtol, (term, f, a)
        assert _rel(f.scale, a["F_scaling"]) <= 1e-8, (term, f, a)
        assert _rel(f.p, a["Pr(>F)"]) <= p_rtol, (term, f, a)


@pytest.mark.parametrize("key", MODELS)
def test_equals_pbkrtest_at_lme4_estimates(key):
    """At lme4's estimates the only difference left is rounding: far inside the tolerances."""
    r = REF[key]
    kr = kenward_roger(_at_r_estimates(_fit(key), r))
    _check_against(kr, r, vcov_rtol=1e-8, df_rtol=1e-8, p_rtol=1e-7)


@pytest.mark.parametrize("key", MODELS)
def test_matches_lmertest_on_mixcli_fit(key):
    """On mixcli's own fit: Φ_A is as close to pbkrtest's as Φ is to lme4's (optima agree to
    ~1e-11 in the criterion, so θ to ~1e-6 where the criterion is flat), df/t/p/F within the
    brief's tolerances."""
    r = REF[key]
    m = _fit(key)
    ref_vcov = np.array(r["vcov"])
    sd = np.sqrt(np.diag(ref_vcov))
    fit_gap = float(np.max(np.abs(m.vcov - ref_vcov) / np.outer(sd, sd)))
    _check_against(kenward_roger(m), r, vcov_rtol=max(VCOV_RTOL, 2.0 * fit_gap))


def test_multi_df_f_test_present():
    """The evidence includes a multi-df F test (recipe, 2 df), with its scale factor ≠ 1."""
    a = REF["categorical"]["anova"]["recipe"]
    assert a["NumDF"] == 2 and a["F_scaling"] != 1.0
    f = kenward_roger(_fit("categorical")).f_test(np.array(a["L"]))
    assert f.numdf == 2
    assert _rel(f.dendf, a["DenDF"]) <= DF_RTOL and _rel(f.F, a["F value"]) <= DF_RTOL


# ---------------------------------------------------------------------------------------------
# a dense transcription of pbkrtest's vcovAdj_internal (n × n), for designs the fixtures lack


def _dense_pbkrtest(m):
    """pbkrtest's .get_SigmaG + vcovAdj_internal, literally: Σ, Gᵢ, Σ⁻¹ dense n × n."""
    terms, n = m.frame.terms, m.frame.n
    X = m.frame.X
    lams = m.structure.lambdas(np.asarray(m.theta))
    s2 = m.sigma**2
    G, phi_par = [], []
    for pairs in _parameters(terms):
        Gi = np.zeros((n, n))
        for (t, a), (u, b) in pairs:
            za = np.zeros((n, terms[t].n_levels))
            za[np.arange(n), terms[t].codes] = terms[t].z[:, a]
            zb = np.zeros((n, terms[u].n_levels))
            zb[np.arange(n), terms[u].codes] = terms[u].z[:, b]
            Gi += za @ zb.T
        (t, a), (_, b) = pairs[0]
        phi_par.append(s2 * (lams[t] @ lams[t].T)[a, b])
        G.append(Gi)
    G.append(np.eye(n))
    phi_par.append(s2)
    Sigma = sum(f * g for f, g in zip(phi_par, G))
    Si = np.linalg.inv(Sigma)
    Phi = np.linalg.inv(X.T @ Si @ X)
    g = len(G)
    TT = Si @ X
    HH = [Gi @ Si for Gi in G]
    OO = [h @ X for h in HH]
    P = [-(o.T @ TT) for o in OO]
    Q = {(i, j): OO[i].T @ Si @ OO[j] for i in range(g) for j in range(i, g)}
    info = np.zeros((g, g))
    for i in range(g):
        for j in range(i, g):
            info[i, j] = info[j, i] = (np.sum(HH[i].T * HH[j]) - 2 * np.sum(Phi * Q[i, j])
                                       + np.sum((Phi @ P[i]) * (P[j] @ Phi)))
    W = 2 * np.linalg.inv(info)
    U = sum(W[i, j] * (Q[i, j] - P[i] @ Phi @ P[j]) for i in range(g) for j in range(i + 1, g))
    U = U + U.T + sum(W[i, i] * (Q[i, i] - P[i] @ Phi @ P[i]) for i in range(g))
    return Phi, Phi + 2 * Phi @ U @ Phi, info


@pytest.mark.parametrize("csv,formula,rows", [
    ("slopes.csv", "y ~ x + z + (x + z | g)", None),  # 3 × 3 covariance: 6 parameters + σ²
    ("crossed.csv", "rt ~ cond * freq + (1 + cond | subj) + (1 | item)", 320),  # crossed, correlated
    ("nested3.csv", "y ~ x + (x | district) + (1 | district:school)", 400),  # nested, several blocks
])
def test_equals_dense_pbkrtest(csv, formula, rows):
    df = pd.read_csv(FIXTURES / "data" / csv)
    if rows:
        df = df.iloc[:rows]
    m = mixcli.fit(df, formula)
    phi, phi_a, info = _dense_pbkrtest(m)
    kr = kenward_roger(m)
    np.testing.assert_allclose(kr.xtvx, np.linalg.inv(phi), rtol=1e-9)
    np.testing.assert_allclose(kr.information, info, rtol=1e-8, atol=1e-12 * np.abs(info).max())
    sd = np.sqrt(np.diag(phi_a))
    assert np.max(np.abs(kr.vcov_adj - phi_a) / np.outer(sd, sd)) < 1e-8


def test_blocks_give_the_same_answer_as_one_block(monkeypatch):
    """Packing components into blocks is only a way of skipping zeros."""
    import mixcli.inference.kenward_roger as krm

    m = mixcli.fit(cached_table("nested3.csv"), "y ~ x + (1 | district) + (1 | district:school)")
    monkeypatch.setattr(krm, "BLOCK_Q", 1)  # every district (a component) a block of its own
    small = krm.kenward_roger(m)
    monkeypatch.setattr(krm, "BLOCK_Q", 10**9)
    whole = krm.kenward_roger(m)
    assert small.cost.n_blocks == m.ngroups["district"] and whole.cost.n_blocks == 1
    assert small.cost.largest_block < whole.cost.largest_block == sum(m.ngroups.values())
    np.testing.assert_allclose(small.vcov_adj, whole.vcov_adj, rtol=1e-10)
    np.testing.assert_allclose(small.W, whole.W, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# closed forms: a balanced one-way design


def _balanced(a=12, n=5, seed=3):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(a), n)
    treat = (np.arange(a) % 2)[g]
    y = 10 + 1.5 * treat + rng.normal(scale=2.0, size=a)[g] + rng.normal(size=a * n)
    return pd.DataFrame({"y": y, "treat": treat.astype(float), "g": [f"g{i:02d}" for i in g]}), a, n


def test_balanced_one_way_intercept_df_is_groups_minus_one():
    data, a, n = _balanced()
    m = mixcli.fit(data, "y ~ 1 + (1 | g)")
    kr = kenward_roger(m)
    (t,) = kr.t_tests()
    assert t.df == pytest.approx(a - 1, rel=1e-9)
    # the classical answer: ȳ over √(MS_between/(a n)) on a − 1 df, and no adjustment of Φ
    means = data.groupby("g")["y"].mean().to_numpy()
    ms_between = n * np.var(means, ddof=1)
    assert t.se == pytest.approx(math.sqrt(ms_between / (a * n)), rel=1e-6)
    np.testing.assert_allclose(kr.vcov_adj, kr.vcov, rtol=1e-9)
    f = kr.f_test([[1.0]])
    assert f.dendf == pytest.approx(a - 1, rel=1e-9) and f.scale == pytest.approx(1.0, rel=1e-9)


def test_balanced_between_group_contrast_is_the_two_sample_t_test_of_group_means():
    data, a, n = _balanced()
    m = mixcli.fit(data, "y ~ treat + (1 | g)")
    t_int, t_treat = kenward_roger(m).t_tests()
    means = data.groupby("g")["y"].mean()
    arm = data.groupby("g")["treat"].first()
    m1, m0 = means[arm == 1], means[arm == 0]
    pooled = (np.sum((m1 - m1.mean()) ** 2) + np.sum((m0 - m0.mean()) ** 2)) / (a - 2)
    t_classic = (m1.mean() - m0.mean()) / math.sqrt(pooled * (1 / len(m1) + 1 / len(m0)))
    assert t_treat.df == pytest.approx(a - 2, rel=1e-9)
    assert t_treat.t == pytest.approx(t_classic, rel=1e-6)
    from scipy import stats

    assert t_treat.p == pytest.approx(2 * stats.t.sf(abs(t_classic), a - 2), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# refusals, cost, the F tail


def test_ml_fit_refused():
    m = mixcli.fit(cached_table("slopes.csv"), "y ~ x + (x | g)", reml=False)
    with pytest.raises(ValueError, match="Kenward-Roger needs a REML fit"):
        kenward_roger(m)


def test_cost_estimate_and_refusal():
    m = _fit("crossed") if "crossed" in REF else mixcli.fit(cached_table("crossed.csv"),
                                                            "rt ~ cond + freq + (1 | subj) + (1 | item)")
    cost = kr_cost(m)
    assert cost.n == m.nobs and cost.n_blocks == 1  # crossed: one component
    assert cost.largest_block == sum(m.ngroups.values())
    assert cost.refusal() is None
    assert "Kenward-Roger" in cost.describe()
    why = cost.refusal(max_bytes=1e3)
    assert why and "Satterthwaite" in why and "memory" in why
    with pytest.raises(ValueError, match="Satterthwaite"):
        kenward_roger(m, max_bytes=1e3)


@pytest.mark.parametrize("f,d1,d2", [(1.2, 2, 434.6), (26.7, 1, 431.0), (0.3, 5, 3.5), (250.0, 3, 12.0)])
def test_f_tail(f, d1, d2):
    from scipy import stats

    assert f_sf(f, d1, d2) == pytest.approx(stats.f.sf(f, d1, d2), rel=1e-10)


def test_prior_weights_refused():
    """pbkrtest's residual covariance is σ²I whatever the weights: nothing to agree with."""
    data, _, _ = _balanced()
    data["w"] = 1.0 + (np.arange(len(data)) % 3)
    m = mixcli.fit(data, "y ~ treat + (1 | g)", weights="w")
    with pytest.raises(ValueError, match="prior weights"):
        kenward_roger(m)
