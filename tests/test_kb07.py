"""kb07's maximal model (72 covariance parameters, crossed subjects × items): mixcli reaches the
best criterion any lme4 optimizer reaches (fixtures/kb07_reference.R on ../shared/data/kb07.csv)."""

from __future__ import annotations

import pytest

import mixcli

from conftest import FIXTURES, SHARED, cached_table, load_json, need

KB07 = "RTtrunc ~ 1 + S + P + C + SP + SC + PC + SPC + (1 + S + P + C + SP + SC + PC + SPC | subj) + " \
       "(1 + S + P + C + SP + SC + PC + SPC | item)"


@pytest.mark.parametrize("method", ["ML", "REML"])
def test_kb07_maximal_at_least_as_low_as_lme4s_best(method):
    ref = load_json(FIXTURES / "kb07_reference.json")[method]
    m = mixcli.fit(cached_table(need(SHARED / "data" / "kb07.csv")), KB07, reml=method == "REML")
    assert m.criterion <= ref["best"] + 1e-6 * abs(ref["best"]), (m.criterion, ref["best"])
    assert m.converged
