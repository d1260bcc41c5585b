"""ICC and Nakagawa's R² against the R package performance (fixtures/icc_reference.R)."""

from __future__ import annotations

import math

import pytest

import mixcli
from mixcli.inference.variance_explained import variance_explained

from conftest import FIXTURES, cached_table, load_json

REF = {k: v for k, v in load_json(FIXTURES / "icc_reference.json").items() if not k.startswith("_")}
KEYS = {"var_fixed": "fixed", "var_random": "random", "var_residual": "residual",
        "icc_adjusted": "icc_adjusted", "icc_unadjusted": "icc_unadjusted",
        "r2_marginal": "r2_marginal", "r2_conditional": "r2_conditional"}


@pytest.mark.parametrize("mid", sorted(REF))
def test_matches_performance(mid):
    ref = REF[mid]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"])
    assert m.criterion <= ref["criterion"] + 1e-6
    v = variance_explained(m)
    checked = 0
    for key, attr in KEYS.items():
        if ref["singular"] and key in ("var_random", "r2_marginal", "icc_adjusted", "icc_unadjusted",
                                        "r2_conditional"):
            # performance gives NA for the random variance of a singular fit, and then a marginal
            # R² of fixed / (fixed + residual); mixcli keeps the (estimated) random variance.
            continue
        assert getattr(v, attr) == pytest.approx(ref[key], rel=1e-4, abs=1e-10), key
        checked += 1
    assert checked >= 2


def test_random_intercepts_partition_the_variance_by_level():
    m = mixcli.fit(cached_table("nested3.csv"), "y ~ x + (1 | district/school)")
    v = variance_explained(m)
    names = [g for g, _, _ in v.partition]
    assert names == ["school:district", "district", "Residual"]
    assert math.fsum(s for _, _, s in v.partition) == pytest.approx(1.0, abs=1e-12)
    # closed form: each share is that level's variance over the sum of the variance components
    variances = {(c.group): c.variance for c in m.varcorr}
    total = sum(variances.values())
    for g, var, share in v.partition:
        assert var == pytest.approx(variances[g], rel=1e-12)
        assert share == pytest.approx(variances[g] / total, rel=1e-12)
    # ICC adjusted = the random levels' share
    assert v.icc_adjusted == pytest.approx(1 - v.partition[-1][2], rel=1e-12)


def test_slopes_missing_from_the_fixed_part_are_named():
    v = variance_explained(mixcli.fit(cached_table("slopes.csv"), "y ~ x + (1 | g) + (0 + z | g)"))
    assert any("(z)" in n for n in v.notes)
