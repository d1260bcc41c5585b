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


def dense_laplace(frame, st, theta, beta, family, wt, offset, iterations=100):
    """The Laplace approximation to −2 log L of a GLMM at lme4's θ and β, the obvious way: Newton's
    method on the penalised deviance in u with dense matrices, then aic + ‖û‖² + log det(ΛᵀZᵀWZΛ + I)
    with W at the mode."""
    zl = dense_pieces(frame, st, theta)
    y = frame.y
    fixed = offset + frame.X @ beta
    q = zl.shape[1]
    u = np.zeros(q)
    link = family.link

    def pdev(v):
        mu = link.linkinv(fixed + zl @ v)
        return float(np.sum(family.dev_resids(y, mu, wt)) + v @ v)

    current = pdev(u)
    for _ in range(iterations):
        eta = fixed + zl @ u
        mu = link.linkinv(eta)
        d = link.mu_eta(eta)
        w = wt * d * d / family.variance(mu)
        grad = zl.T @ (wt * (y - mu) * d / family.variance(mu)) - u
        step = np.linalg.solve(zl.T @ (zl * w[:, None]) + np.eye(q), grad)
        t = 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            while t > 1e-10 and not pdev(u + t * step) <= current:  # (a NaN is no descent)
                t /= 2
            new = pdev(u + t * step)
        if not new <= current:
            break
        u = u + t * step
        if abs(current - new) < 1e-14 * (abs(new) + 1):
            current = new
            break
        current = new
    eta = fixed + zl @ u
    mu = link.linkinv(eta)
    d = link.mu_eta(eta)
    w = wt * d * d / family.variance(mu)
    logdet = np.linalg.slogdet(zl.T @ (zl * w[:, None]) + np.eye(q))[1]
    return family.aic(y, mu, wt, family.aic_constant(y, wt)) + u @ u + logdet
