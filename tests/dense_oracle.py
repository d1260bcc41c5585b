"""The dense oracle: lme4's criteria recomputed with plain numpy linear algebra.

Z (n × q) and Λ are built explicitly and the penalised least-squares system is
solved with np.linalg, so every formula of Bates et al. (2015) is evaluated
the obvious way, with none of the engine's blocking, elimination or sums.
Used by the engine's tests and the fuzz tests.
"""

from __future__ import annotations

import numpy as np


def dense_pieces(frame, st, theta):
    n = frame.n
    blocks_z, blocks_l = [], []
    for term, lam in zip(frame.terms, st.lambdas(theta)):
        q, k = term.n_levels, term.k
        z = np.zeros((n, q * k))
        for a in range(k):
            z[np.arange(n), term.codes * k + a] = term.z[:, a]
        blocks_z.append(z)
        blocks_l.append(np.kron(np.eye(q), lam))
    z = np.hstack(blocks_z)
    size = sum(b.shape[0] for b in blocks_l)
    lam = np.zeros((size, size))
    off = 0
    for b in blocks_l:
        lam[off : off + b.shape[0], off : off + b.shape[0]] = b
        off += b.shape[0]
    return z @ lam


def dense_criterion(frame, st, theta, reml):
    X, y = frame.X, frame.y
    n, p = X.shape
    zl = dense_pieces(frame, st, theta)
    q = zl.shape[1]
    a = zl.T @ zl + np.eye(q)
    m = np.block([[a, zl.T @ X], [X.T @ zl, X.T @ X]])
    sol = np.linalg.solve(m, np.concatenate([zl.T @ y, X.T @ y]))
    u, beta = sol[:q], sol[q:]
    r2 = np.sum((y - zl @ u - X @ beta) ** 2) + np.sum(u**2)
    logdet_z = np.linalg.slogdet(a)[1]
    if not reml:
        return logdet_z + n * (1 + np.log(2 * np.pi * r2 / n)), beta, u
    schur = X.T @ X - X.T @ zl @ np.linalg.solve(a, zl.T @ X)
    logdet_x = np.linalg.slogdet(schur)[1]
    return logdet_z + logdet_x + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p))), beta, u
