"""The library API: mixcli.fit on pandas data frames and plain mappings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixcli

from conftest import FIXTURES, load_json
from lme4_checks import assert_matches_lme4

REF = load_json(FIXTURES / "lme4_reference.json")


@pytest.mark.parametrize("mid", ["categorical_1", "missing_2", "crossed_2"])
def test_fit_on_a_pandas_data_frame_matches_lme4(mid):
    ref = REF[mid]
    df = pd.read_csv(FIXTURES / "data" / ref["csv"])
    m = mixcli.fit(df, ref["formula"])
    assert_matches_lme4(m, ref["REML"], mid)
    ml = mixcli.fit(df, ref["formula"], reml=False)
    assert_matches_lme4(ml, ref["ML"], mid)


def test_categorical_dtype_and_mappings_give_the_same_fit():
    ref = REF["categorical_1"]
    df = pd.read_csv(FIXTURES / "data" / ref["csv"])
    base = mixcli.fit(df, ref["formula"])
    df["batch"] = df["batch"].astype("category")
    df["recipe"] = df["recipe"].astype("category")
    as_category = mixcli.fit(df, ref["formula"])
    as_dict = mixcli.fit({c: df[c].to_numpy() for c in df.columns}, ref["formula"])
    for other in (as_category, as_dict):
        assert other.criterion == pytest.approx(base.criterion, abs=1e-9)
        assert [f.term for f in other.fixef] == [f.term for f in base.fixef]


def test_result_object_exposes_lme4s_accessors():
    ref = REF["nested3_2"]
    m = mixcli.fit(pd.read_csv(FIXTURES / "data" / ref["csv"]), ref["formula"])
    assert set(m.coef) == set(ref["REML"]["fixef"])
    assert m.vcov.shape == (2, 2) and np.allclose(np.sqrt(np.diag(m.vcov)), [f.se for f in m.fixef])
    assert m.theta_names == ref["theta_names"]
    assert m.method == "REML" and m.loglik == pytest.approx(-m.criterion / 2)
    ranef = {r.group: r for r in m.ranef()}
    assert set(ranef) == {v["grp"] for v in ref["REML"]["varcorr"] if v["grp"] != "Residual"}
