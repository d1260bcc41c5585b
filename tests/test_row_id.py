"""``.row``: the rows' numbers, so that the overdispersion advice, an observation-level random
effect (1 | .row), can be followed without adding an ID column (glmm_counts.csv has one, chick,
numbered 1..n: the oracle is glmer's fit with (1 | chick), fixtures/glmm_reference.json)."""

from __future__ import annotations

import numpy as np
import pytest

from mixcli import fit
from mixcli.family import family
from mixcli.inference.predictions import predict
from mixcli.table import Table

from conftest import FIXTURES, cached_table, load_json, run_cli

REF = load_json(FIXTURES / "glmm_reference.json")["poisson_olre"]
COUNTS = FIXTURES / "data" / "glmm_counts.csv"


def test_row_id_is_an_observation_level_random_effect():
    data = cached_table(COUNTS)
    assert REF["formula"].endswith("(1 | chick)")
    m = fit(data, REF["formula"].replace("chick", ".row"), family=family("poisson"))
    assert m.ngroups[".row"] == m.nobs == 397
    # glmer's logLik with (1 | chick); mixcli reaches the same optimum (or a hair above it)
    assert m.loglik == pytest.approx(REF["loglik"], abs=2e-3)
    assert m.loglik >= REF["loglik"] - 1e-6
    by_chick = fit(data, REF["formula"], family=family("poisson"))
    assert m.criterion == pytest.approx(by_chick.criterion, abs=1e-8)


def test_a_column_named_row_in_the_data_is_used_as_it_is():
    cols = dict(cached_table(COUNTS).columns)
    cols[".row"] = cols["location"]
    m = fit(Table(cols), "ticks ~ cheight + (1 | .row)", family=family("poisson"))
    assert m.ngroups[".row"] == 60  # the data's column, not the row numbers


def test_new_rows_are_new_observations_with_effect_zero():
    data = cached_table(COUNTS)
    m = fit(data, "ticks ~ cheight + (1 | location) + (1 | .row)", family=family("poisson"))
    new = Table({"cheight": np.array([0.0, 10.0]), "location": np.array([1.0, 1.0])})
    pred = predict(m, new)
    population = predict(m, new, population=True)
    loc = next(t for t in m.ranef() if t.factor == "location")
    b1 = loc.values[loc.levels.index("1"), 0]
    np.testing.assert_allclose(pred.predicted, population.predicted + b1, rtol=1e-12)
    assert pred.new_levels == {".row": 2}


def test_the_overdispersion_note_names_it():
    out = run_cli("fit", str(COUNTS), "ticks ~ cheight + (1 | location)", "--family", "poisson")
    assert out.returncode == 0, out.stderr
    assert "+ (1 | .row)" in out.stdout + out.stderr
