"""The optimum does not depend on the units of a covariate.

Rescaling a covariate x by c (x in metres instead of millimetres) gives the
same model: the ML deviance is unchanged, the REML criterion changes by the
constant 2·log|c| for each fixed-effect column scaled (log|R_X|²), and every
estimate maps back exactly (the slope and its SD times c, correlations and σ
unchanged). mixcli optimises in unit-free parameters, so it finds the same
optimum whatever c is; lme4's θ depends on the units, and its optimisers
stop short on slopes of scale 1e4 or 1e-4.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mixcli
from mixcli.table import Table

from conftest import FIXTURES, cached_table

BASE = cached_table(FIXTURES / "data" / "slopes.csv")
FORMULA = "y ~ x + z + (x + z | g)"


def _fit(scale: float, reml: bool):
    columns = dict(BASE.columns)
    columns["x"] = np.asarray(BASE["x"]) * scale
    return mixcli.fit(Table(columns), FORMULA, reml=reml)


REFERENCE = {reml: _fit(1.0, reml) for reml in (True, False)}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(min_value=-4, max_value=4), reml=st.booleans())
def test_rescaling_a_covariate_by_a_power_of_ten(k, reml):
    c = 10.0**k
    ref, m = REFERENCE[reml], _fit(c, reml)
    shift = 2.0 * math.log(c) if reml else 0.0  # log|R_X|² with one column of X scaled by c
    assert m.converged
    assert m.criterion - shift == pytest.approx(ref.criterion, abs=1e-7)
    coef, coef_ref = m.coef, ref.coef
    assert coef["x"] * c == pytest.approx(coef_ref["x"], rel=1e-6)
    for name in ("(Intercept)", "z"):
        assert coef[name] == pytest.approx(coef_ref[name], rel=1e-6, abs=1e-9)
    sd = {v.term: v.sd for v in m.varcorr if v.group == "g"}
    sd_ref = {v.term: v.sd for v in ref.varcorr if v.group == "g"}
    np.testing.assert_allclose(sd["x"] * c, sd_ref["x"], rtol=1e-5)
    np.testing.assert_allclose([sd["(Intercept)"], sd["z"], m.sigma], [sd_ref["(Intercept)"], sd_ref["z"], ref.sigma],
                               rtol=1e-5)
    np.testing.assert_allclose([r.corr for r in m.correlations], [r.corr for r in ref.correlations], atol=1e-5)
