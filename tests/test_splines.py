"""poly(), bs() and ns() against R's own bases (fixtures/splines_reference.json, written by R 4.2.2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mixcli.formula import splines

REFERENCE = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "splines_reference.json").read_text())
FUNCTIONS = {"poly": splines.poly, "bs": splines.bs, "ns": splines.ns}


def _x(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _call(fn: str, x: np.ndarray, args: dict):
    args = dict(args)
    if fn == "poly":
        return splines.poly(x, args.pop("degree"), **args)
    return FUNCTIONS[fn](x, **args)


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda c: f"{c['input']}:{c['call']}")
def test_basis_equals_r(case):
    x = _x(REFERENCE["inputs"][case["input"]]["x"])
    expected = np.array([[np.nan if v is None else v for v in row] for row in case["basis"]], dtype=float)
    got = _call(case["fn"], x, case["args"])
    assert got.shape == expected.shape
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    # Bases are O(1) (raw powers excepted, hence rtol); R's and ours differ only in the order of
    # floating-point operations.
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("case", REFERENCE["conditions"], ids=lambda c: c["call"])
def test_what_r_refuses_or_warns_about_is_an_error(case):
    with pytest.raises(ValueError):
        _call(case["fn"], _x(case["x"]), case["args"])


def test_poly_columns_are_orthonormal_and_orthogonal_to_the_constant():
    # A closed-form property that does not depend on R: the columns are an orthonormal basis of the
    # centred powers, so Z'Z = I and 1'Z = 0.
    x = np.random.default_rng(3).normal(size=200) * 50 + 1e4
    z = splines.poly(x, 4)
    np.testing.assert_allclose(z.T @ z, np.eye(4), atol=1e-10)
    np.testing.assert_allclose(z.sum(axis=0), 0, atol=1e-9)

