"""Penalised iteratively reweighted least squares and the Laplace deviance of a GLMM, on the blocked factor.

For η = o + Xβ + ZΛu, μ = g⁻¹(η) and y | u ~ family(μ) with prior weights w,
the conditional modes û at (θ, β) minimise the penalised deviance

    pdev(u) = Σᵢ devresid(yᵢ, μᵢ) + ‖u‖².

Each PIRLS iteration is one weighted penalised least-squares problem — the
linear mixed model's, with row weights W = w (dμ/dη)² / V(μ) and the working
response z = η − o + (y − μ) dη/dμ — solved on the same blocked Cholesky
(``ModelStructure.reweighted`` recomputes only the weighted sums, O(n)
bincounts; the nesting, crossing and θ layout are reused). A step that does
not lower pdev is halved. With ``beta`` given, β is fixed (the Xβ part moves
into the offset) and only u is updated (lme4's nAGQ ≥ 1 stage); without it,
β is updated with u (lme4's nAGQ = 0 stage).

At the modes, the Laplace approximation to −2 log L(θ, β) is

    −2 ℓ = family aic(y, μ̂) + ‖û‖² + log|L|²,

L the Cholesky factor of ΛᵀZᵀWZΛ + I at μ̂: what lme4 minimises and reports as
−2 logLik (its ``deviance()`` is a different number, Σ devresid at the modes).

NB1 (``Family.observed_information``) takes glmmTMB's approximation instead: pdev is
−2 Σ log f of the exact density (up to a μ-free constant) + ‖u‖², PIRLS's steps are Newton's,
W = w d²(−log f)/dη² and z − η = −(d(−log f)/dη)/W (where that W is not clearly positive a
step takes the quasi-likelihood weight w (dμ/dη)²/V(μ), as ``_newton_weights`` does), and L is
the factor at the observed W at the modes, the Hessian of the joint −log-likelihood in u.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..control import DEFAULT, Control
from ..family import EPS, LOGIT_THRESH
from .factor import Factorization, evaluate_working
from .structure import ModelStructure

# (PIRLS's tolerances and limits are settings of ``control.Control``: pirls_tol and friends)
CANONICAL = {"binomial": "logit", "poisson": "log"}
LOG_EPS = math.log(EPS)  # below it R's log link returns μ = ε
LOG_MAX = 700.0  # above it exp(η) is near overflow: the general path judges it
# Links under which pdev(u) is not convex: with μ = η², the Poisson deviance has a mode for
# each sign pattern of η (every other family-link pair here is log-concave in η).
MULTIMODAL = {"sqrt"}


@dataclass
class GlmmData:
    """What the GLMM's criterion needs besides the structure: the response y (proportions for
    binomial), prior weights w, the offset o, X (the user's columns) and the family; and
    ``aic_constant``, the part of the family's −2 log f that does not depend on μ."""

    st: ModelStructure
    x: np.ndarray
    y: np.ndarray
    wt: np.ndarray
    offset: np.ndarray
    family: object
    aic_constant: float = 0.0
    control: Control = DEFAULT  # PIRLS's tolerances and limits

    def __post_init__(self):
        self.aic_constant = self.family.aic_constant(self.y, self.wt)
        self.saturated = self.family.saturated(self.y)
        # 0/1 data: each deviance residual is −2 w log μ or −2 w log(1 − μ), one log
        self.binary = self.family.name == "binomial" and bool(np.all((self.y == 0) | (self.y == 1)))
        self._success = self.y == 1
        self.wy = self.wt * self.y  # the successes (binomial), the weighted counts (Poisson)
        self.unit_weights = bool(np.all(self.wt == 1.0))
        self.zero_offset = not bool(np.any(self.offset))
        link = self.family.link.name
        self.canonical = CANONICAL.get(self.family.name) == link
        # Σ devresid from η directly, without a log of μ: see ``point`` (the canonical links of
        # binomial and Poisson only)
        self.direct = link if self.canonical else None
        # The μ-free part of Σ devresid: 2 Σ w [y log y + (1 − y) log(1 − y)] (binomial),
        # 2 Σ w (y log y − y) (Poisson).
        poisson = self.family.name == "poisson"
        self.dev_constant = 2.0 * float(np.sum(self.wt * (self.saturated - self.y if poisson else self.saturated)))
        # With integer counts, −2 log L(μ) = Σ devresid(μ) + C, C = −2 log L at the saturated
        # model (the deviance is 2(ℓ_sat − ℓ(μ))): the Laplace deviance then reuses PIRLS's
        # Σ devresid instead of a second pass of logs. C is the family's aic constant (log
        # binomial coefficients, log y!) less the μ-free part above. (R's aic() rounds
        # non-integer counts: those keep the family's aic.)
        # (the families with a dispersion keep their own aic: NB2's and Gamma's saturated part
        # depends on it)
        integer = bool(np.all(self.wy == np.round(self.wy)) and np.all(self.wt == np.round(self.wt)))
        plain = self.family.name in CANONICAL
        self.saturated_m2ll = self.aic_constant - self.dev_constant if integer and plain else None

    def with_family(self, family) -> "GlmmData":
        """The same data with another family (NB2 at another dispersion k)."""
        from dataclasses import replace

        return replace(self, family=family)

    def dev_resids(self, mu: np.ndarray) -> np.ndarray:
        if self.binary:
            return -2.0 * self.wt * np.log(np.where(self._success, mu, 1.0 - mu))
        return self.family.dev_resids(self.y, mu, self.wt, self.saturated)

    def point(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """μ, dμ/dη and Σ devresid at η; the sum is +∞ where η or μ is outside the family's
        domain (or NaN).

        PIRLS evaluates this at every step it tries, so the canonical links take at most
        one pass of logs, not two: under the logit, with e = exp(η), log μ = η − log(1 + e)
        and log(1 − μ) = −log(1 + e), so Σ devresid = C + 2 Σ w log(1 + e) − 2 Σ w y η;
        under the log link log μ = η, so Σ devresid = C + 2 Σ w (μ − y η) (C: the μ-free
        part, ``dev_constant``). Both hold while no guard of R's links applies
        (|η| ≤ 36.04 for the logit, η ≥ log ε for the log), else the general formula is
        used.
        """
        link = self.family.link
        if self.direct is not None:
            lo, hi = float(np.min(eta)), float(np.max(eta))
            if self.direct == "logit" and -LOGIT_THRESH <= lo and hi <= LOGIT_THRESH:
                e = np.exp(eta)
                one_e = 1.0 + e
                mu = e / one_e
                mu_eta = np.maximum(mu / one_e, EPS)
                log1pe = np.log(one_e)
                dev = 2.0 * (float(np.sum(log1pe) if self.unit_weights else self.wt @ log1pe) - float(self.wy @ eta))
                return mu, mu_eta, _nan_as_inf(dev + self.dev_constant)
            if self.direct == "log" and LOG_EPS <= lo and hi <= LOG_MAX:
                mu = np.exp(eta)
                dev = 2.0 * (float(self.wt @ mu) - float(self.wy @ eta)) + self.dev_constant
                return mu, mu, _nan_as_inf(dev)
        mu, mu_eta = link.inverse(eta)
        if not (self.family.valid_eta(eta) and self.family.valid_mu(mu)):
            return mu, mu_eta, math.inf
        return mu, mu_eta, _nan_as_inf(float(np.sum(self.dev_resids(mu))))


def _nan_as_inf(value: float) -> float:
    """A deviance, or +∞ for NaN (PIRLS's step-halving then treats the point as outside)."""
    return math.inf if math.isnan(value) else value


@dataclass
class Modes:
    """The result of PIRLS at one (θ̃, β): spherical modes ``u`` (per term (k_t, q_t)), β
    (updated or as given), η, μ, the factor of the weighted system at μ, and the pieces of
    the Laplace deviance."""

    theta: np.ndarray
    u: list
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    factor: Factorization
    weights: np.ndarray  # the working weights W at μ
    pdev: float
    iterations: int
    converged: bool

    @property
    def usq(self) -> float:
        return _usq(self.u)

    @property
    def logdet(self) -> float:
        return self.factor.logdet_z


def random_part(st: ModelStructure, lam: list, u: list) -> np.ndarray:
    """Z Λ u per row (the structure's own columns, the engine's blocks Λ)."""
    out = None
    for i, (t, l, v) in enumerate(zip(st.terms, lam, u)):
        b = l @ v  # (k, q)
        if t.k == 1:
            part = b[0][t.codes]
            if not st.intercept_only[i]:
                part *= t.z[:, 0]
        else:
            part = np.einsum("nk,kn->n", t.z, b[:, t.codes])
        if out is None:
            out = part
        else:
            out += part
    return out


def zero_modes(st: ModelStructure) -> list:
    return [np.zeros((t.k, t.n_levels)) for t in st.terms]


def pirls(data: GlmmData, theta_w: np.ndarray, beta: np.ndarray | None, u0: list | None = None,
          beta0: np.ndarray | None = None) -> Modes:
    """The conditional modes at θ̃ (working) and β — or (u, β) jointly when ``beta`` is None,
    starting from ``beta0`` — by PIRLS from ``u0`` (default 0)."""
    theta_w = np.asarray(theta_w, dtype=float)
    with np.errstate(all="ignore"):
        modes = _pirls(data, theta_w, beta, u0, beta0)
        if u0 is not None and data.family.link.name in MULTIMODAL and not _same_region(data, modes, beta, beta0):
            # pdev has a mode per sign pattern of η: a warm start can keep PIRLS in a worse one
            # along a path of θ; the start from u = 0 is tried as well and the lower pdev kept
            fresh = _pirls(data, theta_w, beta, None, beta0)
            if fresh.pdev < modes.pdev:
                modes = fresh
        return modes


def _same_region(data: GlmmData, modes: Modes, beta, beta0) -> bool:
    """Whether the warm start's converged modes lie where the start from u = 0 would begin: η of
    the same sign, and not 0, on every row with y > 0. Within such a region pdev is convex (μ = η²:
    −2 log f is convex in η on either side of 0, and the barrier log η² separates the sides),
    so the modes found are that region's only minimum, the one the fresh start heads for (two
    PIRLS runs an evaluation instead of one, on a sqrt-link Poisson model)."""
    b = beta if beta is not None else beta0
    if not modes.converged or b is None:
        return False
    start = data.x @ np.asarray(b, dtype=float)
    if not data.zero_offset:
        start = start + data.offset
    pos = data.y > 0
    s0, s1 = np.sign(start[pos]), np.sign(modes.eta[pos])
    return bool(np.all(s0 != 0) and np.array_equal(s0, s1))


def _pirls(data: GlmmData, theta_w, beta, u0, beta0) -> Modes:
    st, fam = data.st, data.family
    link = fam.link
    lam = st.lambdas(theta_w)  # (the working θ̃'s own blocks)
    fixed = beta is not None
    u = [np.array(v, dtype=float) for v in u0] if u0 is not None else zero_modes(st)
    if fixed:
        b = np.asarray(beta, dtype=float)
    elif beta0 is not None:
        b = np.asarray(beta0, dtype=float)
    else:
        b = None
    if b is None:  # the first stage's very first start: the fixed effects' GLM fit, u = 0
        b = glm_start(data)
    xb = data.x @ b
    rp = random_part(st, lam, u)  # η = o + Xβ + rp
    eta = _eta(data, xb, rp)
    mu, mu_eta, dev = data.point(eta)
    if not math.isfinite(dev):  # a warm start outside the link's domain
        u = zero_modes(st)
        rp = np.zeros(st.n)
        eta = _eta(data, xb, rp)
        mu, mu_eta, dev = data.point(eta)
        if not math.isfinite(dev) and not fixed:
            b = glm_start(data)
            xb = data.x @ b
            eta = _eta(data, xb, rp)
            mu, mu_eta, dev = data.point(eta)
    pdev = dev + _usq(u)
    if not math.isfinite(pdev):
        # Still outside (μ = 0 from η = 0 under the sqrt link; μ ≤ 0 under the identity): the
        # first step's weights and working response come from the family's starting μ, as
        # glmer's do, and the step is taken whatever pdev was (it was not finite).
        mu = fam.mustart(data.y, data.wt)
        eta = link.linkfun(mu)
        mu_eta = link.mu_eta(eta)
        rp = eta - data.offset - xb
        pdev = math.inf
    c = data.control
    tol = c.pirls_tol if data.canonical else c.pirls_tol_noncanonical
    converged = False
    fac = None
    iterations = 0
    change = math.inf
    p = data.x.shape[1]
    xy = None
    if not fixed:  # [X, z], columns contiguous for the weighted sums
        xy = np.empty((st.n, p + 1), order="F")
        xy[:, :p] = data.x
    for iterations in range(1, c.pirls_max_iter + 1):
        # the working weights and response: W = w (dμ/dη)² / V(μ), which is w dμ/dη for the
        # canonical links (dμ/dη = V(μ) there), and z = η − o + (y − μ) dη/dμ
        r = (data.y - mu) / mu_eta
        if fam.observed_information:
            w, r, w_obs = _observed_weights(data, eta, mu, mu_eta)
        elif data.canonical:
            w = mu_eta if data.unit_weights else data.wt * mu_eta
        else:
            w = data.wt * mu_eta * mu_eta / fam.variance(mu)
            if tol <= change < c.pirls_newton_from and fam.name in SHORTCUT_FAMILIES:
                # (near the modes, Fisher's path having chosen them: Newton's steps; at the end
                # Fisher's weights, for log|L|)
                w, r = _newton_weights(data, eta, mu, mu_eta, w, r)
        if fixed:
            xy = (rp + r)[:, None]  # z − Xβ
        else:
            xy[:, p] = (eta if data.zero_offset else eta - data.offset) + r
        wst = st.reweighted(w, xy)
        if not np.all(np.isfinite(wst.xtx)):  # (any inf or NaN in the weights or z reaches Σ w z²)
            fac = None
            break
        fac = evaluate_working(wst, theta_w)
        if not fac.ok:
            break
        if change < tol:
            converged = True
            if fam.observed_information and w is not w_obs:
                # (a step took the quasi-likelihood weight on some row: the Laplace term needs the
                # observed information itself, which may still be positive definite overall)
                w = w_obs
                fac = evaluate_working(st.reweighted(w, xy), theta_w)
            break
        new_b = b if fixed else fac.fixef()
        new_u = fac.spherical_modes(new_b if not fixed else np.zeros(0))
        # step-halving on pdev, from the current point towards the PLS solution
        step = 1.0
        for _ in range(data.control.pirls_max_halvings):
            cand_u = [old + step * (nw - old) for old, nw in zip(u, new_u)]
            cand_b = b + step * (new_b - b) if not fixed else b
            cand_xb = data.x @ cand_b if not fixed else xb
            cand_rp = random_part(st, lam, cand_u)
            cand_eta = _eta(data, cand_xb, cand_rp)
            cand_mu, cand_mu_eta, cand_dev = data.point(cand_eta)
            cand = cand_dev + _usq(cand_u)
            if cand <= pdev * (1.0 + 1e-14):
                break
            step *= 0.5
        else:
            # no step lowered pdev: at the limit of rounding if the last change was already tiny
            converged = change < 1e-9
            break
        if not math.isfinite(cand):
            break
        change = abs(pdev - cand) / (abs(cand) + 0.1)
        u, b, xb, rp, eta, mu, mu_eta, pdev = cand_u, cand_b, cand_xb, cand_rp, cand_eta, cand_mu, cand_mu_eta, cand
    return Modes(np.asarray(theta_w, float), u, b, eta, mu, fac, w, pdev, iterations, converged)


# The families the speed shortcuts were measured on (binomial probit/cloglog, Poisson sqrt): PIRLS's
# Newton steps near the modes for non-canonical links, and the GLMM Hessian's one-level mixed
# differences (``GlmmModel.hessian``). With them Gamma's inverse link ended 4.6e-6 higher on
# sleepstudy (a flat likelihood), its SEs 1.5e-3 from a dense Hessian's, and penicillin's log-link
# SE moved 8e-4 from lme4's converged one: the families with a dispersion take the full path.
SHORTCUT_FAMILIES = ("binomial", "poisson")


def _newton_weights(data: GlmmData, eta, mu, mu_eta, w_fisher, r_fisher):
    """The observed information's weights and working residuals, for a step of Newton's method.

    With a non-canonical link the expected information (Fisher scoring, W = w (dμ/dη)²/V)
    differs from the observed one by −w (y − μ) d/dη[(dμ/dη)/V], and scoring converges only
    linearly: 14 iterations an evaluation on a sqrt-link Poisson model, where Newton's method
    needs 3-4. Its steps are taken only near the modes (``pirls_newton_from``): under the sqrt
    link pdev has a mode per sign pattern of η, and the one reached from afar stays the one
    Fisher scoring (glmer's) heads for. The modes are the same (the score s = w (y − μ)(dμ/dη)/V is zero there whatever
    the weights: the working residual is s/W); only the path changes. The derivative is taken by
    central differences of the family's own functions (it only steers the steps), and rows where
    the observed information is not clearly positive keep Fisher's weight (the step stays a
    descent direction; step-halving does the rest). The Laplace term still uses Fisher's weights,
    as lme4's does: the last factorisation of PIRLS is made with them."""
    fam, link = data.family, data.family.link
    h = 1e-4 * np.maximum(1.0, np.abs(eta))
    hi, lo = eta + h, eta - h
    g_hi = link.mu_eta(hi) / fam.variance(link.linkinv(hi))
    g_lo = link.mu_eta(lo) / fam.variance(link.linkinv(lo))
    w_obs = w_fisher - data.wt * (data.y - mu) * (g_hi - g_lo) / (2.0 * h)
    ok = np.isfinite(w_obs) & (w_obs > 1e-3 * w_fisher)
    if not ok.all():
        w_obs = np.where(ok, w_obs, w_fisher)
    # r = s / W: Fisher's r times W_F / W
    return w_obs, r_fisher * (w_fisher / w_obs)


def _observed_weights(data: GlmmData, eta, mu, mu_eta):
    """(W for the step, working residual, the observed W): W_obs = w d²(−log f)/dη² =
    w (l″ (dμ/dη)² + l′ d²μ/dη²), l′ and l″ the family's derivatives of −log f in μ, and the
    residual −w l′ (dμ/dη)/W; rows whose W_obs is not clearly positive step with the quasi-likelihood
    weight w (dμ/dη)²/V(μ) (a descent direction still; step-halving does the rest). At the modes
    the score is zero whatever the weights, so the modes are the exact density's."""
    fam = data.family
    d1, d2 = fam.nll_derivatives(data.y, mu)
    w_obs = data.wt * (d2 * mu_eta * mu_eta + d1 * fam.link.mu_eta2(eta))
    w_quasi = data.wt * mu_eta * mu_eta / fam.variance(mu)
    ok = np.isfinite(w_obs) & (w_obs > 1e-3 * w_quasi)
    w = w_obs if ok.all() else np.where(ok, w_obs, w_quasi)
    return w, -(data.wt * d1 * mu_eta) / w, w_obs


def _eta(data: GlmmData, xb: np.ndarray, rp: np.ndarray) -> np.ndarray:
    eta = xb + rp
    if not data.zero_offset:
        eta += data.offset
    return eta


def _usq(u: list) -> float:
    return float(sum(np.sum(v * v) for v in u))


def glm_start(data: GlmmData) -> np.ndarray:
    """β of the fixed effects alone (a GLM, by IRLS with step-halving), the first stage's start.

    Starts as R's glm() and glmer do: one weighted least-squares step from the family's
    starting μ (mustart, e.g. y + 0.1 for counts). The start matters beyond speed where the
    likelihood has several modes (the sqrt link: one per sign pattern of η), and glmer's is
    the one its users know. Where that step leaves the link's domain, the start is the
    intercept-only fit η = g(ȳ). Each later step that leaves the domain or raises the
    deviance is halved.
    """
    fam, link, x = data.family, data.family.link, data.x
    p = x.shape[1]
    if p == 0:
        return np.zeros(0)
    with np.errstate(all="ignore"):
        mu = fam.mustart(data.y, data.wt)
        eta = link.linkfun(mu)
        mu_eta = link.mu_eta(eta)
        sw = np.sqrt(data.wt * mu_eta * mu_eta / fam.variance(mu))
        z = (eta - data.offset) + (data.y - mu) / mu_eta
        b = _wls(x, sw, z)
        eta = data.offset + x @ b
        mu = link.linkinv(eta)
        if not (np.all(np.isfinite(b)) and fam.valid_eta(eta) and fam.valid_mu(mu)):
            ybar = float(np.sum(data.wt * data.y) / np.sum(data.wt))
            ones = np.all(x == 1.0, axis=0)
            b = np.zeros(p)
            level = link.linkfun(np.array([min(max(ybar, 1e-8), 1 - 1e-8) if fam.name == "binomial"
                                           else max(ybar, 1e-8)]))
            if ones.any():
                b[int(np.flatnonzero(ones)[0])] = float(level[0] - np.mean(data.offset))
            eta = data.offset + x @ b
            mu = link.linkinv(eta)
        dev = float(np.sum(fam.dev_resids(data.y, mu, data.wt)))
        for _ in range(data.control.pirls_max_iter):
            mu_eta = link.mu_eta(eta)
            w = data.wt * mu_eta * mu_eta / fam.variance(mu)
            z = (eta - data.offset) + (data.y - mu) / mu_eta
            new = _wls(x, np.sqrt(w), z)
            if not np.all(np.isfinite(new)):  # (weights or working response not finite: μ = 0)
                break
            step = 1.0
            for _ in range(data.control.pirls_max_halvings):
                cand = b + step * (new - b)
                c_eta = data.offset + x @ cand
                c_mu = link.linkinv(c_eta)
                c_dev = (float(np.sum(fam.dev_resids(data.y, c_mu, data.wt)))
                         if fam.valid_eta(c_eta) and fam.valid_mu(c_mu) else math.inf)
                if c_dev <= dev:
                    break
                step *= 0.5
            else:
                break
            change = abs(dev - c_dev) / (abs(c_dev) + 0.1)
            b, eta, mu, dev = cand, c_eta, c_mu, c_dev
            if change < 1e-10:
                break
    return b


def _wls(x: np.ndarray, sw: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Weighted least squares of z on x with √weights sw; NaN where they are not finite."""
    a, r = x * sw[:, None], z * sw
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(r))):
        return np.full(x.shape[1], math.nan)
    try:
        return np.linalg.lstsq(a, r, rcond=None)[0]
    except np.linalg.LinAlgError:  # (the SVD fails on columns beyond ~1e150)
        return np.full(x.shape[1], math.nan)


def laplace(data: GlmmData, modes: Modes) -> float:
    """The Laplace approximation to −2 log L at the modes (lme4's −2 logLik, nAGQ = 1)."""
    if modes.factor is None or not modes.factor.ok:
        return math.inf
    with np.errstate(divide="ignore", invalid="ignore"):  # (log 0 on a singular factor: inf)
        if data.saturated_m2ll is not None:  # = family aic + ‖û‖², from PIRLS's own sums
            value = data.saturated_m2ll + modes.pdev + modes.logdet
        else:
            aic = data.family.aic(data.y, modes.mu, data.wt, data.aic_constant)
            value = aic + modes.usq + modes.logdet
    return value if math.isfinite(value) else math.inf
