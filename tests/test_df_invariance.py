"""Satterthwaite's and Kenward–Roger's df are properties of the model, not of where a predictor's
zero is or of its units: shifting or rescaling a random slope's predictor is a reparameterisation.

The unshifted models' df equal lmerTest's and pbkrtest's (test_satterthwaite, test_kenward_roger);
here the shifted and rescaled fits must give the same df. Before the derivatives were taken in
the unit-free θ̃ (``engine.curvature``) and Kenward–Roger in the standardised columns' covariance
entries, these shifts moved the Satterthwaite df of the slope from 28.4 to 419 (slopes.csv, +1000),
14.3 to 1,879 (nested3.csv, +300), and Kenward–Roger's from 40.4 to 7.7e9 (crossed.csv, +300), or
made it fail (a math domain error).
"""

from __future__ import annotations

import numpy as np
import pytest

import mixcli
from mixcli.inference.kenward_roger import kenward_roger

from conftest import cached_table

CASES = [
    ("slopes.csv", "y ~ {x} + z + (1 + {x} | g)", "x"),  # one grouping factor, plus a fixed covariate
    ("nested3.csv", "y ~ {x} + (1 + {x} | district) + (1 | district:school)", "x"),  # two, nested
    ("crossed.csv", "rt ~ cond + {x} + (1 + {x} | subj) + (1 | item)", "freq"),  # two, crossed
]
_FITS: dict = {}


def _fit(csv, formula):
    if (csv, formula) not in _FITS:
        m = mixcli.fit(cached_table(csv), formula).add_satterthwaite()
        _FITS[csv, formula] = (m, [t.df for t in kenward_roger(m).t_tests()])
    return _FITS[csv, formula]


@pytest.mark.parametrize("csv,template,x", CASES)
@pytest.mark.parametrize("change,scale", [("I({x} + 100)", 1), ("I({x} + 1000)", 1), ("I({x} * 1000)", 1000),
                                          ("I(({x} - 300) / 1000)", 1e-3)])
def test_df_do_not_move_with_the_origin_or_units(csv, template, x, change, scale):
    base, base_kr = _fit(csv, template.format(x=x))
    moved, moved_kr = _fit(csv, template.format(x=change.format(x=x)))
    # the REML criterion's log|R_X|² moves by 2 log|scale| (a shift leaves it alone)
    assert moved.criterion == pytest.approx(base.criterion + 2 * np.log(scale), abs=1e-7)
    # every coefficient but the intercept (whose meaning the shift changes)
    slopes = range(1, len(base.fixef))
    np.testing.assert_allclose([moved.fixef[i].df for i in slopes], [base.fixef[i].df for i in slopes], rtol=1e-4)
    np.testing.assert_allclose([moved_kr[i] for i in slopes], [base_kr[i] for i in slopes], rtol=1e-4)
    np.testing.assert_allclose([moved.fixef[i].t for i in slopes], [base.fixef[i].t for i in slopes], rtol=2e-5)


@pytest.mark.parametrize("ddf", ["satterthwaite", "kr"])
def test_anova_dendf_does_not_move_either(ddf):
    from mixcli.inference.anova import anova_result

    csv, template, x = CASES[0]
    base, _ = _fit(csv, template.format(x=x))
    moved, _ = _fit(csv, template.format(x=f"I({x} + 1000)"))
    a, b = anova_result(base, ddf=ddf).table, anova_result(moved, ddf=ddf).table
    assert len(a.rows) == 2
    np.testing.assert_allclose([r.dendf for r in b.rows], [r.dendf for r in a.rows], rtol=1e-4)
    np.testing.assert_allclose([r.F for r in b.rows], [r.F for r in a.rows], rtol=2e-5)
