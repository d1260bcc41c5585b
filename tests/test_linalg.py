"""The engine's kernels on stacks of small blocks, against numpy one block at a time."""

from __future__ import annotations

import numpy as np
import pytest

from mixcli.engine import linalg


def stack(rng, r, c, m):
    """An entry-major (r, c, m) stack and the same blocks as (m, r, c)."""
    blocks = rng.normal(size=(m, r, c))
    return np.ascontiguousarray(blocks.transpose(1, 2, 0)), blocks


def lower_stack(rng, k, m):
    a = np.tril(rng.normal(size=(m, k, k)))
    a[:, np.arange(k), np.arange(k)] = np.abs(a[:, np.arange(k), np.arange(k)]) + 0.5
    return np.ascontiguousarray(a.transpose(1, 2, 0)), a


def blocks_of(s):
    return s.transpose(2, 0, 1)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_cholesky_of_each_block(k):
    rng = np.random.default_rng(k)
    _, g = stack(rng, k, k + 2, 50)
    spd = g @ g.transpose(0, 2, 1) + 0.1 * np.eye(k)
    out = linalg.chol_blocks(np.ascontiguousarray(spd.transpose(1, 2, 0)))
    np.testing.assert_allclose(blocks_of(out), np.linalg.cholesky(spd), rtol=1e-12, atol=1e-12)


def test_cholesky_of_an_indefinite_block_gives_nan_not_an_error():
    a = np.array([[1.0, 2.0], [2.0, 1.0]])[:, :, None]
    with np.errstate(invalid="ignore"):
        out = linalg.chol_blocks(a)
    assert np.isnan(out[1, 1, 0])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_triangular_solves(k):
    rng = np.random.default_rng(10 + k)
    l, lb = lower_stack(rng, k, 40)
    b, bb = stack(rng, k, 3, 40)
    np.testing.assert_allclose(blocks_of(linalg.solve_lower(l, b)), np.linalg.solve(lb, bb), rtol=1e-10)
    np.testing.assert_allclose(blocks_of(linalg.solve_lower_t(l, b)), np.linalg.solve(lb.transpose(0, 2, 1), bb),
                               rtol=1e-10)
    y, yb = stack(rng, 3, k, 40)
    np.testing.assert_allclose(blocks_of(linalg.right_solve_lower_t(y, l)),
                               yb @ np.linalg.inv(lb.transpose(0, 2, 1)), rtol=1e-10)
    np.testing.assert_allclose(blocks_of(linalg.inv_lower(l)), np.linalg.inv(lb), rtol=1e-10, atol=1e-14)
    assert linalg.logdet_blocks(l) == pytest.approx(np.sum(np.linalg.slogdet(lb @ lb.transpose(0, 2, 1))[1]))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_products_and_lambda_sandwiches(k):
    rng = np.random.default_rng(20 + k)
    a, ab = stack(rng, k, k, 30)
    b, bb = stack(rng, k, 2, 30)
    c, cb = stack(rng, 2, k, 30)
    np.testing.assert_allclose(blocks_of(linalg.matmul(a, b)), ab @ bb, rtol=1e-12)
    np.testing.assert_allclose(blocks_of(linalg.matmul_t(c, a)), cb @ ab.transpose(0, 2, 1), rtol=1e-12)
    lam = np.tril(rng.normal(size=(k, k)))
    lam2 = np.tril(rng.normal(size=(k, k)))
    np.testing.assert_allclose(blocks_of(linalg.left_lambda(lam, b)), lam.T @ bb, rtol=1e-12)
    np.testing.assert_allclose(blocks_of(linalg.right_lambda(c, lam)), cb @ lam, rtol=1e-12)
    np.testing.assert_allclose(blocks_of(linalg.sandwich(lam, a)), lam.T @ ab @ lam, rtol=1e-12)
    np.testing.assert_allclose(blocks_of(linalg.sandwich(lam, a, lam2)), lam.T @ ab @ lam2, rtol=1e-12)
    eye = linalg.add_identity(np.zeros((k, k, 5)))
    np.testing.assert_array_equal(blocks_of(eye), np.broadcast_to(np.eye(k), (5, k, k)))


def test_grouped_cross_and_segments():
    rng = np.random.default_rng(3)
    n, q = 500, 37
    codes = rng.integers(0, q, size=n)
    left, right = rng.normal(size=(n, 2)), rng.normal(size=(n, 3))
    got = linalg.grouped_cross(codes, q, left, right)
    want = np.zeros((2, 3, q))
    for i, c in enumerate(codes):
        want[:, :, c] += np.outer(left[i], right[i])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

    target = rng.integers(0, 9, size=q)
    seg = linalg.Segments(target, 9)
    values = rng.normal(size=(2, 3, q))
    summed = np.zeros((2, 3, 9))
    for j, t in enumerate(target):
        summed[:, :, t] += values[:, :, j]
    np.testing.assert_allclose(seg.sum(values), summed, rtol=1e-12, atol=1e-12)
    w, products = rng.normal(size=q), rng.normal(size=(q, 4))
    weighted = np.zeros((4, 9))
    for j, t in enumerate(target):
        weighted[:, t] += w[j] * products[j]
    np.testing.assert_allclose(seg.weighted(w, products), weighted, rtol=1e-12, atol=1e-12)
    identity = linalg.Segments(np.arange(q), q)
    assert identity.identity and identity.sum(values) is values


@pytest.mark.parametrize("kernel", ["scipy's kernel", "the public product"])
def test_segment_sums_by_the_sparse_product_equal_the_bincounts(monkeypatch, kernel):
    """Many rows (a batch's) and many sources go through the indicator's sparse product: the same
    sums in the same order as the bincounts (bit for bit with scipy's kernel), for plain sums,
    weighted ones, a batch of weights, and weights of 1."""
    rng = np.random.default_rng(5)
    q, groups = 40, 7
    target = rng.integers(0, groups, size=q)
    target[:groups] = np.arange(groups)
    values = rng.normal(size=(3, 2, 5, q))
    products, w, wb = rng.normal(size=(q, 4)), rng.normal(size=q), rng.normal(size=(6, q))

    def everything(seg):
        return [seg.sum(values), seg.weighted(w, products), seg.weighted(wb, products), seg.weighted(None, products)]

    by_bincount = everything(linalg.Segments(target, groups))
    monkeypatch.setattr(linalg.Segments, "SPARSE_FROM", 0)
    if kernel == "the public product":
        monkeypatch.setattr(linalg, "_MATVECS", [None, None])
    seg = linalg.Segments(target, groups)
    for got, want in zip(everything(seg), by_bincount):
        assert got.shape == want.shape
        if kernel == "scipy's kernel":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    assert hasattr(seg, "_csr")
