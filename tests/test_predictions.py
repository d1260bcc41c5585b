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
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], weights=ref["weights"])
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
    m2 = mixcli.fit(cached_table("categorical.csv"), "y ~ poly(temp, 2) + (1 | batch)")
    with pytest.raises(UsageError, match="poly"):
        predict(m2, Table.from_mapping(pd.DataFrame({"temp": [180.0], "batch": [1]})))


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
