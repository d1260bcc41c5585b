"""Fitted values, residuals and predictions against lme4 (fixtures/predict_reference.R)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixcli
from mixcli.errors import DataError, UsageError
from mixcli.inference.predictions import augment, predict
from mixcli.table import Table, TextColumn

from conftest import FIXTURES, cached_table, load_json

REF = {k: v for k, v in load_json(FIXTURES / "predict_reference.json").items() if not k.startswith("_")}


def _fit(ref):
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], weights=ref.get("weights"))
    assert m.criterion <= ref["criterion"] + 1e-6
    return m


@pytest.mark.parametrize("case", sorted(REF))
def test_augment_equals_fitted_and_residuals(case):
    ref = REF[case]
    a = augment(_fit(ref))
    # the estimates agree with lme4's to ~1e-6 relative (the optimum's precision), and so do these
    for ours, key in ((".fitted", "fitted"), (".resid", "resid"), (".resid_pearson", "resid_pearson"),
                      (".fixed", "fixed")):
        expected = np.array(ref[key], dtype=float)
        scale = np.abs(np.array(ref["fitted"])).max()
        np.testing.assert_allclose(a[ours], expected, rtol=1e-6, atol=1e-6 * scale, err_msg=ours)


GLMM_REF = {k: v for k, v in load_json(FIXTURES / "glmm_augment_reference.json").items() if not k.startswith("_")}


@pytest.mark.parametrize("case", sorted(GLMM_REF))
def test_glmm_augment_equals_glmers_fitted_and_residuals(case):
    """glmer's conventions: .fitted and .fixed on the response scale, .eta on the link scale,
    deviance residuals. glmer stops short of the optimum (its estimates are mixcli's to ~1e-3 of
    an SE), so the values agree to ~1e-3 of their spread; each convention differs by far more
    (the link scale from the response scale, Pearson from deviance residuals: O(0.1))."""
    ref = GLMM_REF[case]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family=ref["family"], link=ref["link"])
    assert m.loglik >= ref["loglik"] - 2e-3
    a = augment(m)
    for ours, key in ((".fitted", "fitted"), (".fixed", "fixed"), (".eta", "eta"), (".resid", "resid"),
                      (".resid_pearson", "resid_pearson")):
        expected = np.array(ref[key], dtype=float)
        spread = np.abs(expected).max()
        np.testing.assert_allclose(a[ours], expected, rtol=0, atol=3e-3 * spread, err_msg=ours)
    # and at mixcli's own estimates, exactly: the modes' μ, and R's deviance residuals from it
    data = m.data
    assert np.allclose(a[".fitted"], data.family.link.linkinv(a[".eta"]), rtol=1e-13, atol=0)
    np.testing.assert_allclose(a[".resid"] ** 2, data.family.dev_resids(data.y, a[".fitted"], data.wt),
                               rtol=1e-10, atol=1e-12)
    assert np.all(np.sign(a[".resid"]) == np.sign(data.y - a[".fitted"]))


@pytest.mark.parametrize("case", sorted(GLMM_REF))
def test_glmm_predict_new_rows_on_both_scales(case):
    """predict(m, newdata, allow.new.levels = TRUE) on the link scale (lme4's default) and the
    response scale, and re.form = NA; glmer's estimates are mixcli's to ~1e-3 of an SE (above)."""
    ref = GLMM_REF[case]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family=ref["family"], link=ref["link"])
    new = pd.DataFrame(ref["newdata"])
    link = m.predict(new)["predicted"].to_numpy()
    np.testing.assert_allclose(link, ref["predict_link"], rtol=0, atol=0.01)
    response = m.predict(new, type="response")["predicted"].to_numpy()
    np.testing.assert_allclose(response, ref["predict_response"], rtol=3e-3, atol=1e-4)
    np.testing.assert_allclose(response, m.data.family.link.linkinv(link), rtol=1e-14)
    population = m.predict(new, population=True)["predicted"].to_numpy()
    np.testing.assert_allclose(population, ref["predict_population"], rtol=0, atol=0.01)
    with pytest.raises(UsageError, match="link scale"):
        m.predict(new, se=True, type="response")


@pytest.mark.parametrize("case", sorted(REF))
def test_predict_new_rows_with_new_levels_and_population(case):
    ref = REF[case]
    m = _fit(ref)
    new = Table.from_mapping(pd.DataFrame(ref["newdata"]))
    p = predict(m, new)
    np.testing.assert_allclose(p.predicted, ref["predicted"], rtol=1e-6)
    pop = predict(m, new, population=True, se=True)
    np.testing.assert_allclose(pop.predicted, ref["predicted_population"], rtol=1e-6)
    assert pop.new_levels == {} and p.missing == 0
    assert sum(p.new_levels.values()) >= 1  # every case has a level the fit has not seen


def test_prediction_standard_error_is_the_fixed_parts():
    m = mixcli.fit(cached_table("categorical.csv"), "y ~ recipe * temp + (1 | batch)")
    new = Table.from_mapping(pd.DataFrame({"recipe": ["B"], "temp": [190.0], "batch": [1]}))
    p = predict(m, new, population=True, se=True)
    x = np.zeros(len(m.fixef))
    names = [f.term for f in m.fixef]
    for name, value in (("(Intercept)", 1), ("recipeB", 1), ("temp", 190), ("recipeB:temp", 190)):
        x[names.index(name)] = value
    assert p.se[0] == pytest.approx(np.sqrt(x @ m.vcov @ x), rel=1e-12)
    assert p.predicted[0] == pytest.approx(x @ np.array([f.estimate for f in m.fixef]), rel=1e-12)


def test_bad_new_data_is_named():
    m = mixcli.fit(cached_table("categorical.csv"), "y ~ recipe * temp + (1 | batch)")
    with pytest.raises(DataError, match="no column 'temp'"):
        predict(m, Table.from_mapping(pd.DataFrame({"recipe": ["A"], "batch": [1]})))
    with pytest.raises(DataError, match="'recipeZ' is a factor level the model was not fitted with"):
        predict(m, Table.from_mapping(pd.DataFrame({"recipe": ["Z"], "temp": [180.0], "batch": [1]})))


def test_cli_augment_and_predict_write_the_same_numbers(tmp_path):
    import csv
    import io
    import json

    from conftest import run_cli as run

    ref = REF["categorical"]
    data = str(FIXTURES / "data" / ref["csv"])
    out = run("fit", data, ref["formula"], "--augment")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0])[-4:] == [".fitted", ".fixed", ".resid", ".resid_pearson"]
    np.testing.assert_allclose([float(r[".fitted"]) for r in rows], ref["fitted"], rtol=1e-6)
    np.testing.assert_allclose([float(r["y"]) for r in rows],
                               np.array(ref["fitted"]) + np.array(ref["resid"]), rtol=1e-9)
    new = tmp_path / "new.csv"
    pd.DataFrame(ref["newdata"]).to_csv(new, index=False)
    out = run("predict", data, ref["formula"], "--newdata", str(new), "--format", "json")
    assert out.returncode == 0, out.stderr
    got = [json.loads(line)["predicted"] for line in out.stdout.splitlines()]
    np.testing.assert_allclose(got, ref["predicted"], rtol=1e-6)
    assert "1 row of --newdata had a batch level the fit has not seen" in out.stderr
    out = run("predict", data, ref["formula"], "--newdata", str(tmp_path / "nope.csv"))
    assert out.returncode == 1 and out.stdout == "" and out.stderr.count("\n") == 1


def test_tidy_glance_augment_predict_api():
    ref = REF["crossed"]
    m = _fit(ref)
    tidy = m.tidy()
    fixed = tidy[tidy.effect == "fixed"]
    assert list(fixed.term) == [f.term for f in m.fixef]
    np.testing.assert_allclose(fixed.estimate, [f.estimate for f in m.fixef])
    sds = tidy[(tidy.effect == "ran_pars") & tidy.term.str.startswith("sd__")]
    np.testing.assert_allclose(sds.estimate, [v.sd for v in m.varcorr])
    g = m.glance().iloc[0]
    assert g["nobs"] == m.nobs and g["REMLcrit"] == m.criterion and g["sigma"] == m.sigma
    a = m.augment()
    scale = np.abs(ref["fitted"]).max()
    np.testing.assert_allclose(a[".fitted"], ref["fitted"], rtol=1e-6, atol=1e-6 * scale)
    p = m.predict(pd.DataFrame(ref["newdata"]))
    np.testing.assert_allclose(p["predicted"], ref["predicted"], rtol=1e-6)
    assert str(m).startswith("Linear mixed model fit by REML")


def test_grouping_labels_may_be_text_in_new_data_where_the_fit_had_numbers():
    m = mixcli.fit(cached_table("slopes.csv"), "y ~ x + (1 | g)")
    as_numbers = predict(m, Table.from_mapping(pd.DataFrame({"x": [1.0], "g": [3]})))
    mixed = predict(m, Table.from_mapping(pd.DataFrame({"x": [1.0, 1.0], "g": ["3", "zz"]})))
    assert mixed.predicted[0] == as_numbers.predicted[0]  # "3" is level 3
    assert mixed.new_levels == {"g": 1}
    assert mixed.predicted[1] == pytest.approx(predict(m, Table.from_mapping(
        pd.DataFrame({"x": [1.0], "g": [3]})), population=True).predicted[0], rel=1e-12)


def test_glmm_tidy_glance_augment_api_and_cli(tmp_path):
    """The same verbs on a GLMM: z statistics and no residual row in tidy(), lme4's deviance()
    in glance(), glmer's columns from --augment, lme4's predict() from `mixcli predict`."""
    import csv
    import io

    from conftest import run_cli as run

    ref = GLMM_REF["binary"]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family="binomial")
    tidy = m.tidy()
    fixed = tidy[tidy.effect == "fixed"]
    np.testing.assert_allclose(fixed.statistic, [f.estimate / f.se for f in m.fixef], rtol=1e-12)
    assert fixed.df.isna().all()
    assert list(tidy[tidy.effect == "ran_pars"].group) == [v.group for v in m.varcorr]  # no "Residual"
    g = m.glance().iloc[0]
    assert g["deviance"] == m.deviance and g["logLik"] == m.loglik and g["sigma"] == 1.0
    assert g["icc_adjusted"] == m.variance_explained().icc_adjusted
    assert str(m).startswith("Generalized linear mixed model fit by maximum likelihood (Laplace")
    data = str(FIXTURES / "data" / ref["csv"])
    out = run("fit", data, ref["formula"], "--family", "binomial", "--augment")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0])[-5:] == [".fitted", ".fixed", ".eta", ".resid", ".resid_pearson"]
    np.testing.assert_allclose([float(r[".fitted"]) for r in rows], m.augment()[".fitted"], rtol=1e-12)
    new = tmp_path / "new.csv"
    pd.DataFrame(ref["newdata"]).to_csv(new, index=False)
    out = run("predict", data, ref["formula"], "--family", "binomial", "--newdata", str(new), "--type", "response")
    assert out.returncode == 0, out.stderr
    got = [float(r["predicted"]) for r in csv.DictReader(io.StringIO(out.stdout))]
    np.testing.assert_allclose(got, m.predict(pd.DataFrame(ref["newdata"]), type="response")["predicted"],
                               rtol=1e-12)
    assert "level the fit has not seen" in out.stderr


# -- new-data columns in the type the fit read them (issue 19) ---------------------------------

# k: labels that are digits except one ("3+", as mlmRev's livch), so the column is text; "02" and
# "2" are different levels
K_LABELS = ["1", "02", "2", "3+", "1", "02"]


def _with_digit_labels() -> Table:
    """slopes.csv with a text column k of digit labels, one per value of b (1..6)."""
    t = cached_table("slopes.csv")
    b = np.asarray(t.columns["b"], dtype=int)
    return Table({**t.columns, "k": TextColumn.from_values(np.array(K_LABELS, dtype=object)[b - 1])})


def test_numbers_for_a_text_factor_are_its_labels():
    m = mixcli.fit(_with_digit_labels(), "y ~ x + k + (1 | g)")
    numbers = predict(m, Table.from_mapping({"x": [0.5, 0.5, -1.0], "k": [1.0, 2.0, 1.0], "g": [1.0, 2.0, 99.0]}))
    text = predict(m, Table.from_mapping({"x": [0.5, 0.5, -1.0], "k": ["1", "2", "1"], "g": [1.0, 2.0, 99.0]}))
    np.testing.assert_array_equal(numbers.predicted, text.predicted)
    assert numbers.new_levels == text.new_levels == {"g": 1}
    # 2 is level "2" (as.character(2)), not "02": Xβ̂ + b̂ with the k2 coefficient
    coef = m.coef
    b_g2 = next(t for t in m.ranef() if t.factor == "g")
    b_g2 = float(b_g2.values[b_g2.levels.index("2"), 0])
    assert numbers.predicted[1] == pytest.approx(coef["(Intercept)"] + 0.5 * coef["x"] + coef["k2"] + b_g2,
                                                 rel=1e-12)
    with pytest.raises(DataError, match="'k5' is a factor level the model was not fitted with"):
        predict(m, Table.from_mapping({"x": [0.5], "k": [5.0], "g": [1.0]}))


def test_numbers_for_text_grouping_labels_are_its_labels():
    m = mixcli.fit(_with_digit_labels(), "y ~ x + (1 | k)")
    numbers = predict(m, Table.from_mapping({"x": [0.5, 0.5], "k": [2.0, 7.0]}))
    text = predict(m, Table.from_mapping({"x": [0.5, 0.5], "k": ["2", "7"]}))
    np.testing.assert_array_equal(numbers.predicted, text.predicted)
    assert numbers.new_levels == {"k": 1}  # 7 is no level of k
    population = predict(m, Table.from_mapping({"x": [0.5]}), population=True).predicted[0]
    assert numbers.predicted[1] == pytest.approx(population, rel=1e-12)


def test_text_in_new_data_where_the_fit_had_numbers_is_an_error_without_a_flag():
    m = mixcli.fit(cached_table("slopes.csv"), "y ~ x + (1 | g)")
    with pytest.raises(DataError, match=r"column 'x' holds numbers in the fitted data but text in the new rows "
                                        r"\('high' in new row 2\)") as err:
        predict(m, Table.from_mapping({"x": ["0.5", "high"], "g": [1.0, 1.0]}))
    assert "--" not in str(err.value)


def test_cli_reads_new_data_columns_as_the_data_had_them(tmp_path):
    """Digits (quoted or not) in a column that is text in DATA are labels, written as read:
    "02" stays "02", and the predictions are those of a NEW whose column was text anyway."""
    import csv
    import io

    from conftest import run_cli as run

    data = tmp_path / "data.csv"
    m_table = _with_digit_labels()
    frame = pd.DataFrame({n: (c.values() if isinstance(c, TextColumn) else np.asarray(c))
                          for n, c in m_table.columns.items()})
    frame.to_csv(data, index=False)
    rows = "x,k,g\n0.5,1,1\n0.5,02,2\n-1,2,3\n0.2,02,99\n"
    files = {"digits": rows, "quoted": rows.replace(",02,", ',"02",').replace(",1,1", ',"1",1'),
             "text": rows + "0,3+,4\n"}
    for formula in ("y ~ x + k + (1 | g)", "y ~ x + (1 | k)"):
        out = {}
        for name, text in files.items():
            (tmp_path / f"{name}.csv").write_text(text)
            res = run("predict", str(data), formula, "--newdata", str(tmp_path / f"{name}.csv"))
            assert res.returncode == 0, res.stderr
            out[name] = list(csv.DictReader(io.StringIO(res.stdout)))
        assert [r["k"] for r in out["digits"]] == ["1", "02", "2", "02"]  # as written
        for name in ("quoted", "text"):
            assert [r["predicted"] for r in out[name][:4]] == [r["predicted"] for r in out["digits"]]
        m = mixcli.fit(m_table, formula)
        expected = predict(m, Table.from_mapping({"x": [0.5, 0.5, -1.0, 0.2], "k": ["1", "02", "2", "02"],
                                                  "g": [1.0, 2.0, 3.0, 99.0]})).predicted
        np.testing.assert_allclose([float(r["predicted"]) for r in out["digits"]], expected, rtol=1e-12)
        # "02" is not "2", which the number 2 would have been
        as_two = predict(m, Table.from_mapping({"x": [0.5], "k": ["2"], "g": [2.0]})).predicted[0]
        assert abs(float(out["digits"][1]["predicted"]) - as_two) > 1e-3


# -- prediction intervals (fixtures/predict_interval_reference.R) -------------------------------

INTERVAL_REF = {k: v for k, v in load_json(FIXTURES / "predict_interval_reference.json").items()
                if not k.startswith("_")}
Z95 = 1.959963984540054  # R: qnorm(0.975)


def _labels(table: Table, group: str) -> list[str]:
    """Each row's level of a grouping factor as lme4 names it: "5", or "1:8" for school:district."""
    parts = []
    for name in group.split(":"):
        col = table.columns[name]
        parts.append(col.values() if isinstance(col, TextColumn) else
                     np.array([str(int(v)) if float(v).is_integer() else str(v) for v in col], dtype=object))
    return [":".join(str(p) for p in row) for row in zip(*parts)]


def _column(table: Table, name: str) -> np.ndarray:
    return np.ones(table.nrows) if name == "(Intercept)" else np.asarray(table.columns[name], dtype=float)


def _dense_interval_variance(m, new: Table, population: bool) -> np.ndarray:
    """v = x Var(β̂) xᵀ + σ̂² + Σ_terms z V zᵀ recomputed the obvious way at mixcli's estimates, from
    the user-facing VarCorr (varcorr, correlations) and σ̂ alone: with Σ the random effects'
    covariance, Var(β̂) = (Xᵀ Ω⁻¹ X)⁻¹ with Ω = ZΣZᵀ + σ̂²I, and the conditional covariance of b
    given y and β̂ the inverse of the posterior precision ZᵀZ/σ̂² + Σ⁻¹ (lme4's σ̂² Λ S Λᵀ, written
    without Λ). Numeric fixed effects only; every row of the data used."""
    table = m.frame.table
    assert m.nobs == table.nrows
    names = [f.term for f in m.fixef]
    X = np.column_stack([_column(table, n) for n in names])
    x_new = np.column_stack([_column(new, n) for n in names])
    zs, blocks, levels = [], [], []
    for term in m.ranef(cond_var=False):
        k = len(term.names)
        cov = np.zeros((k, k))
        for a, ta in enumerate(term.names):
            for b, tb in enumerate(term.names):
                sd = [next(v.sd for v in m.varcorr if v.group == term.group and v.term == t) for t in (ta, tb)]
                corr = 1.0 if a == b else next(c.corr for c in m.correlations if c.group == term.group
                                               and {c.term1, c.term2} == {ta, tb})
                cov[a, b] = sd[0] * sd[1] * corr
        index = {label: i for i, label in enumerate(term.levels)}
        rows = np.array([index[label] for label in _labels(table, term.factor)])
        z = np.zeros((table.nrows, len(term.levels) * k))
        for a, name in enumerate(term.names):
            z[np.arange(table.nrows), rows * k + a] = _column(table, name)
        zs.append(z)
        blocks.append(np.kron(np.eye(len(term.levels)), cov))
        levels.append((term, index, cov, k))
    Z = np.hstack(zs)
    sigma_b = np.zeros((Z.shape[1], Z.shape[1]))
    off = 0
    for b in blocks:
        sigma_b[off:off + len(b), off:off + len(b)] = b
        off += len(b)
    s2 = m.sigma**2
    omega = Z @ sigma_b @ Z.T + s2 * np.eye(table.nrows)
    var_beta = np.linalg.inv(X.T @ np.linalg.solve(omega, X))
    post = np.linalg.inv(Z.T @ Z / s2 + np.linalg.inv(sigma_b))
    v = np.einsum("ij,jk,ik->i", x_new, var_beta, x_new) + s2
    off = 0
    for term, index, cov, k in levels:
        labels = _labels(new, term.factor)
        for i in range(new.nrows):
            z = np.array([_column(new, name)[i] for name in term.names])
            seen = labels[i] in index and not population
            j = off + index[labels[i]] * k if seen else None
            v[i] += z @ (post[j:j + k, j:j + k] if seen else cov) @ z
        off += len(index) * k
    return v


@pytest.mark.parametrize("case", ["slopes", "crossed", "nested"])
@pytest.mark.parametrize("population", [False, True])
def test_prediction_interval_variance_is_the_dense_one(case, population):
    """At mixcli's own estimates the interval's variance is the obvious dense computation's."""
    ref = INTERVAL_REF[case]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"])
    new = Table.from_mapping(pd.DataFrame(ref["newdata"]))
    p = predict(m, new, population=population, interval="prediction")
    half = (p.upper - p.lower) / 2
    np.testing.assert_allclose((half / Z95) ** 2, _dense_interval_variance(m, new, population), rtol=1e-9)
    np.testing.assert_allclose((p.upper + p.lower) / 2, p.predicted, rtol=1e-13)
    assert p.predicted.tolist() == predict(m, new, population=population).predicted.tolist()


@pytest.mark.parametrize("case", sorted(INTERVAL_REF))
def test_prediction_interval_against_lme4(case):
    """The interval's ends as lme4 users compute them (vcov, sigma, VarCorr, ranef(condVar =
    TRUE)'s postVar), at levels 0.95 and 0.8, conditional and population. lme4's estimates are
    mixcli's to ~1e-6 relative (θ; σ̂ to ~1e-8), and v is smooth in them: v agrees to 2e-6
    relative, the ends to 1e-6 of their spread (at mixcli's own estimates the dense test above
    holds v to 1e-9)."""
    ref = INTERVAL_REF[case]
    m = _fit(ref)
    new = Table.from_mapping(pd.DataFrame(ref["newdata"]))
    s2 = ref["sigma"] ** 2
    for population, key, level, variance in (
            (False, "interval", 0.95, np.add(ref["var_fixed"], ref["var_random"]) + s2),
            (True, "interval_population", 0.95, np.add(ref["var_fixed"], ref["var_random_population"]) + s2),
            (False, "interval_80", 0.8, np.add(ref["var_fixed"], ref["var_random"]) + s2)):
        p = predict(m, new, population=population, interval="prediction", level=level)
        lower, upper = np.array(ref[key]["lower"]), np.array(ref[key]["upper"])
        scale = np.abs(np.concatenate([lower, upper])).max()
        np.testing.assert_allclose(p.lower, lower, rtol=0, atol=1e-6 * scale, err_msg=key)
        np.testing.assert_allclose(p.upper, upper, rtol=0, atol=1e-6 * scale, err_msg=key)
        z = 1.2815515655446004 if level == 0.8 else Z95  # R: qnorm(0.9), qnorm(0.975)
        np.testing.assert_allclose(((p.upper - p.lower) / (2 * z)) ** 2, variance, rtol=2e-6, err_msg=key)


def test_prediction_interval_refusals_and_missing_rows():
    m = mixcli.fit(cached_table("slopes.csv"), "y ~ x + (x | g)")
    new = Table.from_mapping({"x": [0.5, np.nan], "g": [1.0, 2.0]})
    p = predict(m, new, interval="prediction")
    assert np.isfinite(p.lower[0]) and np.isnan(p.lower[1]) and np.isnan(p.upper[1]) and p.missing == 1
    for kwargs, match in (({"interval": "confidence"}, "unknown interval 'confidence'"),
                          ({"interval": "prediction", "level": 95}, "between 0 and 1, not 95")):
        with pytest.raises(UsageError, match=match):
            predict(m, new, **kwargs)
    with pytest.raises(DataError, match="no column 'x'"):  # a population interval needs z = (1, x)
        mixcli.fit(cached_table("slopes.csv"), "y ~ 1 + (x | g)").predict(pd.DataFrame({"g": [1]}), population=True,
                                                                          interval="prediction")
    weighted = mixcli.fit(cached_table("glmm_counts.csv"), "log(ticks + 1) ~ cheight + (1 | location)",
                          weights="exposure")
    with pytest.raises(UsageError, match="prior weights") as err:
        weighted.predict(pd.DataFrame({"cheight": [0.0], "location": [1]}), interval="prediction")
    assert "--" not in str(err.value)
    ref = GLMM_REF["binary"]
    glmm = mixcli.fit(cached_table(ref["csv"]), ref["formula"], family="binomial")
    with pytest.raises(UsageError, match="GLMM does not have") as err:
        glmm.predict(pd.DataFrame(ref["newdata"]), interval="prediction")
    assert "--" not in str(err.value)


def test_cli_prediction_interval_columns(tmp_path):
    """`predict --interval prediction` appends lower and upper after predicted (and se), the
    library's numbers; --level sets the coverage."""
    import csv
    import io

    from conftest import run_cli as run

    ref = INTERVAL_REF["crossed"]
    data = str(FIXTURES / "data" / ref["csv"])
    new = tmp_path / "new.csv"
    pd.DataFrame(ref["newdata"]).to_csv(new, index=False)
    m = _fit(ref)
    for extra, level, key in (([], 0.95, "interval"), (["--level", "0.8"], 0.8, "interval_80")):
        out = run("predict", data, ref["formula"], "--newdata", str(new), "--se", "--interval", "prediction", *extra)
        assert out.returncode == 0, out.stderr
        rows = list(csv.DictReader(io.StringIO(out.stdout)))
        assert list(rows[0])[-4:] == ["predicted", "se", "lower", "upper"]
        assert "se is the standard error of the fixed part X*beta only" in out.stderr
        assert "lower and upper include it" in out.stderr
        p = predict(m, Table.from_mapping(pd.DataFrame(ref["newdata"])), interval="prediction", level=level)
        for name, values in (("lower", p.lower), ("upper", p.upper)):
            got = [float(r[name]) for r in rows]
            np.testing.assert_allclose(got, values, rtol=1e-14)
            np.testing.assert_allclose(got, ref[key][name], rtol=0, atol=1e-5)  # lme4's (see above)


def test_cli_says_what_se_is_next_to_a_conditional_prediction(tmp_path):
    """--se without --population: the same se column (the fixed part's, √(x Var(β̂) xᵀ)), and one
    note on stderr saying that is all it is; none next to a population prediction, where it is
    the prediction's own."""
    import csv
    import io

    from conftest import run_cli as run

    ref = INTERVAL_REF["slopes"]
    data = str(FIXTURES / "data" / ref["csv"])
    new = tmp_path / "new.csv"
    pd.DataFrame(ref["newdata"]).to_csv(new, index=False)
    note = "se is the standard error of the fixed part X*beta only"
    conditional = run("predict", data, ref["formula"], "--newdata", str(new), "--se")
    population = run("predict", data, ref["formula"], "--newdata", str(new), "--se", "--population")
    assert conditional.returncode == population.returncode == 0
    assert conditional.stderr.count(note) == 1 and "--interval prediction gives" in conditional.stderr
    assert note not in population.stderr
    se = [float(r["se"]) for r in csv.DictReader(io.StringIO(conditional.stdout))]
    assert se == [float(r["se"]) for r in csv.DictReader(io.StringIO(population.stdout))]
    np.testing.assert_allclose(np.square(se), ref["var_fixed"], rtol=2e-6)  # lme4's x vcov(m) x'
    assert conditional.stdout.splitlines()[0] == "x,g,predicted,se"
    glmm = GLMM_REF["binary"]
    pd.DataFrame(glmm["newdata"]).to_csv(new, index=False)
    out = run("predict", str(FIXTURES / "data" / glmm["csv"]), glmm["formula"], "--family", "binomial",
              "--newdata", str(new), "--se")
    assert out.returncode == 0 and note in out.stderr and "--interval" not in out.stderr  # none for a GLMM
