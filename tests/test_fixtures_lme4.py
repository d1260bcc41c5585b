"""The project's own reference cases: simulated data sets fitted by lme4 (fixtures/lme4_reference.R)."""

from __future__ import annotations

import pytest

import mixcli

from conftest import FIXTURES, cached_table, load_json
from lme4_checks import assert_matches_lme4

REF = {k: v for k, v in load_json(FIXTURES / "lme4_reference.json").items() if not k.startswith("_")}
CASES = [(mid, method) for mid in sorted(REF) for method in ("REML", "ML") if REF[mid].get(method)]


@pytest.mark.parametrize("mid,method", CASES)
def test_matches_lme4(mid, method):
    ref = REF[mid]
    m = mixcli.fit(cached_table(ref["csv"]), ref["formula"], reml=method == "REML")
    assert_matches_lme4(m, ref[method], mid)
    assert m.n_dropped == ref.get("n_dropped", m.n_dropped)
    if any("rank deficient" in msg for msg in ref.get("messages", [])):
        assert any("rank deficient so dropping" in msg for msg in m.messages)
