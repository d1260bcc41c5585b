"""Response distributions and link functions of generalized linear mixed models, as R defines them.

``family("binomial", "probit")`` gives a ``Family``: the link (η = g(μ) and its
inverse, dμ/dη), the variance function V(μ), the deviance residuals and the
family's −2 log-likelihood (R's ``family()$aic``, the Laplace deviance's first
term), each computed as R's ``binomial()`` and ``poisson()`` compute them —
including their guards, so that fits agree with glmer's digit for digit:

* logit: μ = 1/(1 + e^−η) with η beyond ±36.04 (−log ε) taken as ε or 1 − ε,
  dμ/dη = max(e^η/(1 + e^η)², ε);
* probit: η clipped to ±8.13 (−Φ⁻¹(ε)), dμ/dη = max(φ(η), ε);
* cloglog: μ = 1 − exp(−e^η) kept in [ε, 1 − ε], dμ/dη = max(e^(η − e^η), ε);
* log: μ = max(e^η, ε); sqrt: μ = η²; identity: μ = η; inverse: μ = 1/η.

Binomial responses are proportions y with prior weights w = trials (so the
successes are w·y); for 0/1 data every weight is 1.

Two families have a dispersion:

* ``nbinom2`` (alias ``negbin``), the negative binomial of glmer.nb and glmmTMB:
  V(μ) = μ + μ²/k, its deviance, aic and starting μ those of MASS's
  ``negative.binomial(theta = k)``, which glmer.nb fits at each k. k is a
  parameter of the fit (``Family.with_dispersion``), estimated with θ and β
  (``glmm.GlmmModel``).
* ``nbinom1``, glmmTMB's NB1: V(μ) = μ(1 + φ), the negative binomial of size μ/φ and
  probability 1/(1 + φ). Not an exponential family in μ (the size moves with μ), so its
  −2 log f is the exact density's (``log_density``), its deviance 2(log f(y | y) − log f(y | μ)),
  and PIRLS steers by the observed information of −log f in η (``nll_derivatives``): the
  conditional modes and the Laplace term glmmTMB computes (``observed_information``). φ is
  estimated with θ and β, as NB2's k (``with_dispersion``; ``k`` holds φ).
* ``Gamma``: V(μ) = μ², R's ``Gamma()``: the deviance −2 w (log(y/μ) − (y − μ)/μ)
  and its aic, with the dispersion taken as Σ devresid / Σ w at each μ and 2
  added (R's ``Gamma()$aic``, which glmer's Laplace deviance uses); the scale
  is not a parameter of glmer's criterion, it is reported after the fit
  (lme4's ``sigma()``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import UsageError, option

EPS = float(np.finfo(float).eps)
LOGIT_THRESH = -math.log(EPS)  # 36.04
_PROBIT_THRESH = 8.125890664701906  # −qnorm(ε)


@dataclass(frozen=True)
class Link:
    name: str
    linkfun: Callable[[np.ndarray], np.ndarray]  # η = g(μ)
    linkinv: Callable[[np.ndarray], np.ndarray]  # μ = g⁻¹(η)
    mu_eta: Callable[[np.ndarray], np.ndarray]  # dμ/dη
    both: Callable[[np.ndarray], tuple] | None = None  # (μ, dμ/dη) in one pass, where cheaper
    mu_eta2: Callable[[np.ndarray], np.ndarray] | None = None  # d²μ/dη² (the links of nbinom1's observed information)

    def inverse(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(μ, dμ/dη) at η: PIRLS needs both at every point it accepts."""
        if self.both is not None:
            return self.both(eta)
        return self.linkinv(eta), self.mu_eta(eta)


def _logit_inv(eta):
    e = np.exp(np.clip(eta, -LOGIT_THRESH, LOGIT_THRESH))
    mu = e / (1.0 + e)
    return np.where(eta < -LOGIT_THRESH, EPS, np.where(eta > LOGIT_THRESH, 1.0 / (1.0 + EPS), mu))


def _logit_mu_eta(eta):
    e = np.exp(np.clip(eta, -LOGIT_THRESH, LOGIT_THRESH))
    out = e / (1.0 + e) ** 2
    return np.where(np.abs(eta) > LOGIT_THRESH, EPS, np.maximum(out, EPS))


def _logit_both(eta):
    """μ and dμ/dη from one exponential: μ = e/(1 + e), dμ/dη = μ/(1 + e) (= e/(1 + e)², R's
    formula, without its second exp), with R's guards."""
    e = np.exp(np.clip(eta, -LOGIT_THRESH, LOGIT_THRESH))
    one_e = 1.0 + e
    mu = e / one_e
    far = np.abs(eta) > LOGIT_THRESH
    if far.any():
        return (np.where(eta < -LOGIT_THRESH, EPS, np.where(eta > LOGIT_THRESH, 1.0 / (1.0 + EPS), mu)),
                np.where(far, EPS, np.maximum(mu / one_e, EPS)))
    return mu, np.maximum(mu / one_e, EPS)


def _probit_inv(eta):
    from scipy.special import ndtr  # (only probit models pay scipy's import)

    return ndtr(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH))


def _probit_mu_eta(eta):
    return np.maximum(np.exp(-0.5 * eta * eta) / math.sqrt(2.0 * math.pi), EPS)


def _probit_fun(mu):
    from scipy.special import ndtri

    return ndtri(mu)


def _cloglog_inv(eta):
    return np.clip(-np.expm1(-np.exp(np.minimum(eta, 700.0))), EPS, 1.0 - EPS)


def _cloglog_mu_eta(eta):
    eta = np.minimum(eta, 700.0)
    return np.maximum(np.exp(eta - np.exp(eta)), EPS)


LINKS: dict[str, Link] = {
    "logit": Link("logit", lambda mu: np.log(mu / (1.0 - mu)), _logit_inv, _logit_mu_eta, _logit_both),
    "probit": Link("probit", _probit_fun, _probit_inv, _probit_mu_eta),
    "cloglog": Link("cloglog", lambda mu: np.log(-np.log1p(-mu)), _cloglog_inv, _cloglog_mu_eta),
    "log": Link("log", np.log, lambda eta: np.maximum(np.exp(eta), EPS), lambda eta: np.maximum(np.exp(eta), EPS),
                mu_eta2=lambda eta: np.maximum(np.exp(eta), EPS)),
    "sqrt": Link("sqrt", np.sqrt, lambda eta: eta * eta, lambda eta: 2.0 * eta, mu_eta2=lambda eta: np.full_like(eta, 2.0)),
    "identity": Link("identity", lambda mu: mu, lambda eta: eta, lambda eta: np.ones_like(eta),
                     mu_eta2=np.zeros_like),
    "inverse": Link("inverse", lambda mu: 1.0 / mu, lambda eta: 1.0 / eta, lambda eta: -1.0 / (eta * eta)),
}


def _ylogy(y, mu):
    """y·log(y/μ), 0 where y = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)


def _lgamma(x: np.ndarray) -> np.ndarray:
    """log Γ(x) elementwise, through the distinct values (counts repeat: few of them)."""
    values, index = np.unique(np.asarray(x, dtype=float), return_inverse=True)
    return np.array([math.lgamma(v) for v in values])[index.ravel()]


# The dispersion parameter (nbinom2's k, nbinom1's φ) as the optimisers see it (the fit's second
# stage, the bootstrap's refits, the profiles): its logarithm, unbounded.
DISPERSION_STEP = 0.25  # the first step in log k
MAX_LOG_DISPERSION = 30.0  # |log k| beyond: no dispersion left to estimate (k = e³⁰: Poisson)


@dataclass(frozen=True)
class Family:
    """A GLM family with its link (see the module docstring); ``k`` is the negative binomial's
    dispersion, NB2's k or NB1's φ (None for the families without one in the likelihood), held at
    its value by a fit with ``k_fixed`` (glmer's ``negative.binomial(theta = k)``, as insight's null
    model refits a glmer.nb fit) instead of estimated."""

    name: str
    link: Link
    k: float | None = None
    k_fixed: bool = False

    # -- the distribution -----------------------------------------------------------
    def variance(self, mu: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return mu * (1.0 - mu)
        if self.name == "nbinom2":
            return mu + mu * mu / self.k
        if self.name == "nbinom1":
            return mu * (1.0 + self.k)
        if self.name == "Gamma":
            return mu * mu
        return mu

    @property
    def free_dispersion(self) -> bool:
        """Whether the likelihood has a dispersion the fit estimates with θ and β (NB2's k, NB1's φ),
        unless held (``k_fixed``)."""
        return self.name in ("nbinom2", "nbinom1") and not self.k_fixed

    @property
    def dispersion_symbol(self) -> str:
        return "φ" if self.name == "nbinom1" else "k"

    @property
    def observed_information(self) -> bool:
        """Whether the fit's criterion is glmmTMB's Laplace approximation (the exact log density, the
        observed information of −log f in u, φ in the standard errors: NB1, which glmer lacks)
        rather than glmer's (the family's aic, the expected information, k held in the SEs)."""
        return self.name == "nbinom1"

    def log_density(self, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """NB1's log f(y | μ) without −log y!: size s = μ/φ, probability 1/(1 + φ),
        log Γ(y + s) − log Γ(s) − s log(1 + φ) + y log(φ/(1 + φ)) (−s log(1 + φ) where y = 0)."""
        from scipy.special import gammaln

        phi = self.k
        s = mu / phi
        l1p = math.log1p(phi)
        pos = y > 0
        gam = np.where(pos, gammaln(y + s) - gammaln(np.where(pos, s, 1.0)), 0.0)
        return gam - s * l1p + y * (math.log(phi) - l1p)

    def saturated_mean(self, y: np.ndarray) -> np.ndarray:
        """NB1's μ maximising f(y | μ) for each y > 0 (0 for y = 0), which is not y: the root in s = μ/φ of
        ψ(y + s) − ψ(s) = log(1 + φ), decreasing and convex in s, by Newton's method from s = y/φ, left
        of it (the steps rise to the root without passing it); for each distinct y once."""
        from scipy.special import digamma, polygamma

        values, index = np.unique(np.asarray(y, dtype=float), return_inverse=True)
        pos = values > 0
        v = values[pos]
        s = v / self.k
        target = math.log1p(self.k)
        for _ in range(100):
            step = (digamma(v + s) - digamma(s) - target) / (polygamma(1, v + s) - polygamma(1, s))
            s = s - step  # (g/g′ < 0 left of the root)
            if np.all(np.abs(step) <= 1e-13 * s):
                break
        out = np.zeros(len(values))
        out[pos] = self.k * s
        return out[index.ravel()]

    def nll_derivatives(self, y: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """NB1's d(−log f)/dμ and d²(−log f)/dμ² per row (unweighted): −(ψ(y + s) − ψ(s) − log(1 + φ))/φ
        and −(ψ′(y + s) − ψ′(s))/φ², s = μ/φ (the ψ terms vanish where y = 0)."""
        from scipy.special import digamma, polygamma

        phi = self.k
        s = mu / phi
        pos = y > 0
        sp = np.where(pos, s, 1.0)
        d1 = -(np.where(pos, digamma(y + s) - digamma(sp), 0.0) - math.log1p(phi)) / phi
        d2 = -np.where(pos, polygamma(1, y + s) - polygamma(1, sp), 0.0) / (phi * phi)
        return d1, d2

    @property
    def has_scale(self) -> bool:
        """lme4's ``useSc``: a residual scale reported beside the random effects (Gamma)."""
        return self.name == "Gamma"

    def with_dispersion(self, k: float, fixed: bool = False) -> "Family":
        """The family at dispersion ``k``; with ``fixed``, held there by a fit."""
        from dataclasses import replace

        return replace(self, k=float(k), k_fixed=fixed)

    def saturated(self, y: np.ndarray) -> np.ndarray:
        """The μ-free part of the deviance residuals: y log y (+ (1 − y) log(1 − y)), 0 log 0 = 0;
        y log max(1, y) − (y + k) log(y + k) for NB2 (MASS's), −log y for Gamma."""
        if self.name == "Gamma":
            return -np.log(y)
        if self.name == "nbinom1":
            return self.log_density(y, self.saturated_mean(y))
        if self.name == "nbinom2":
            return _ylogy(y, np.ones_like(y)) - (y + self.k) * np.log(y + self.k)
        out = _ylogy(y, np.ones_like(y))
        if self.name == "binomial":
            out = out + _ylogy(1.0 - y, np.ones_like(y))
        return out

    def dev_resids(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray, sat: np.ndarray | None = None) -> np.ndarray:
        """Squared deviance residuals (R's ``family()$dev.resids``); ``sat`` = ``saturated(y)``,
        computed once per response on the hot path."""
        if sat is None:
            sat = self.saturated(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.name == "binomial":
                return 2.0 * wt * (sat - y * np.log(mu) - (1.0 - y) * np.log1p(-mu))
            if self.name == "nbinom2":
                return 2.0 * wt * (sat - y * np.log(mu) + (y + self.k) * np.log(mu + self.k))
            if self.name == "nbinom1":
                return 2.0 * wt * (np.where(y > 0, sat, 0.0) - self.log_density(y, mu))
            if self.name == "Gamma":
                return 2.0 * wt * (sat + np.log(mu) + y / mu - 1.0)
            return 2.0 * wt * (sat - y * np.log(mu) + mu - y)

    def aic_constant(self, y: np.ndarray, wt: np.ndarray) -> float:
        """The part of −2 log f that does not depend on μ (binomial coefficients, log y!; for NB2
        log y! + log Γ(k) − log Γ(k + y) − k log k; Gamma's depends on μ through its dispersion: 0)."""
        if self.name == "binomial":
            m = np.where(wt > 0, wt, 0.0)
            s = np.round(m * y)
            m = np.round(m)
            keep = m > 0
            logc = _lgamma(m[keep] + 1) - _lgamma(s[keep] + 1) - _lgamma(m[keep] - s[keep] + 1)
            return float(-2.0 * np.sum(logc))
        if self.name == "nbinom2":
            k = self.k
            term = _lgamma(y + 1.0) - k * math.log(k) + math.lgamma(k) - _lgamma(k + y)
            return float(2.0 * np.sum(wt * term))
        if self.name == "Gamma":
            return 0.0
        return float(2.0 * np.sum(wt * _lgamma(y + 1.0)))  # (Poisson, NB1: log y!)

    def aic(self, y: np.ndarray, mu: np.ndarray, wt: np.ndarray, constant: float) -> float:
        """−2 Σ log f(y | μ) (R's ``family()$aic``), given ``aic_constant(y, wt)``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.name == "binomial":
                s = np.round(wt * y)
                f = np.round(wt) - s
                # (0·log 0 = 0: μ is kept inside (0, 1) by the links)
                return float(-2.0 * (s @ np.log(mu) + f @ np.log1p(-mu))) + constant
            if self.name == "nbinom2":
                return float(2.0 * (wt @ ((y + self.k) * np.log(mu + self.k) - y * np.log(mu)))) + constant
            if self.name == "nbinom1":
                return float(-2.0 * (wt @ self.log_density(y, mu))) + constant
            if self.name == "Gamma":
                # R's Gamma()$aic: dispersion d = Σ devresid / Σ w, shape 1/d, scale μd, plus 2
                d = float(np.sum(self.dev_resids(y, mu, wt))) / float(np.sum(wt))
                if not (d > 0 and math.isfinite(d)):  # (μ = y everywhere, or μ outside (0, ∞))
                    return math.inf
                a = 1.0 / d
                logf = -math.lgamma(a) - a * np.log(mu * d) + (a - 1.0) * np.log(y) - y / (mu * d)
                return float(-2.0 * (wt @ logf)) + 2.0
            return float(-2.0 * (wt @ (y * np.log(mu) - mu))) + constant

    def mustart(self, y: np.ndarray, wt: np.ndarray) -> np.ndarray:
        """R's ``family()$initialize`` starting values of μ."""
        if self.name == "binomial":
            return (wt * y + 0.5) / (wt + 1.0)
        if self.name in ("nbinom2", "nbinom1"):
            return y + (y == 0) / 6.0
        if self.name == "Gamma":
            return np.array(y, dtype=float)
        return y + 0.1

    def valid_mu(self, mu: np.ndarray) -> bool:
        if self.name == "binomial":
            return bool(np.all((mu > 0) & (mu < 1)))  # (NaN fails both)
        return bool(np.all((mu > 0) & (mu < np.inf)))

    def valid_eta(self, eta: np.ndarray) -> bool:
        # (R's sqrt link declares η > 0 valid, but μ = η² is a valid mean either way and glmer's
        # PIRLS does not check it: glmer's fits have negative η; the identity link's μ = η > 0
        # is valid_mu's to check; the inverse link's η = 0 is R's one invalid value)
        if self.link.name == "inverse":
            return bool(np.all(np.isfinite(eta) & (eta != 0)))
        return bool(np.all(np.isfinite(eta)))

    @property
    def display_name(self) -> str:
        """The family as lme4 prints it: glmer.nb's ``Negative Binomial(7.4169)`` (k rounded to 4
        decimals, MASS's label), else the name."""
        if self.name == "nbinom2" and self.k is not None:
            return f"Negative Binomial({round(self.k, 4):.7g})"
        return self.name

    @property
    def label(self) -> str:
        return f"{self.display_name}  ( {self.link.name} )"


#: The families mixcli fits, each with its links (the first is the default).
LINKS_OF = {"binomial": ("logit", "probit", "cloglog"), "poisson": ("log", "sqrt", "identity"),
            "nbinom2": ("log", "sqrt", "identity"), "nbinom1": ("log", "sqrt", "identity"),
            "Gamma": ("inverse", "log", "identity")}
#: Other spellings of the names (``negbin`` as glmer.nb's users say; R's ``Gamma`` in any case)
ALIASES = {"negbin": "nbinom2", "gamma": "Gamma"}
#: The families with counts as responses
COUNT_FAMILIES = ("poisson", "nbinom2", "nbinom1")


def family(name: str, link: str | None = None) -> Family:
    """The family ``name`` with ``link`` (default: glmer's: the canonical one, inverse for Gamma);
    UsageError otherwise."""
    name = ALIASES.get(name.lower(), name.lower())
    if name not in LINKS_OF:
        raise UsageError(f"unknown family '{name}'; use binomial, poisson, nbinom2 (negbin), nbinom1 or Gamma "
                         "(or gaussian for a linear mixed model)")
    links = LINKS_OF[name]
    link = links[0] if link is None else link.lower()
    if link not in links:
        raise UsageError(f"{option('link', link)} does not belong to the {name} family; use one of: {', '.join(links)}")
    return Family(name, LINKS[link])
