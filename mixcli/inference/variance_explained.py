"""ICC and Nakagawa's R² of a mixed model, as the R package ``performance`` computes them.

``performance::icc()`` and ``r2_nakagawa()`` (0.10, through ``insight::get_variance``) split
the variance of the response into three parts:

* fixed:    σ²_f = var(Xβ̂), the sample variance (denominator n − 1) of the fixed part;
* random:   σ²_r = Σ_terms mean_i(z_iᵀ Σ_t z_i) (Johnson 2014), with Σ_t the term's
            covariance matrix and z_i the row of the *fixed* design matrix X for the term's
            effects — an effect that is not also a fixed-effect column (a random slope
            without its fixed slope) is left out, as performance does (and warns);
            for random intercepts this is the sum of the intercept variances;
* residual: σ² (σ̂² of the fit); for a binomial GLMM the distribution-specific variance
            of the latent scale instead, a constant of the link: π²/3 (logit), 1 (probit),
            π²/6 (cloglog) (Nakagawa, Johnson & Schielzeth 2017; insight's var.distribution).

Then ICC adjusted = σ²_r / (σ²_r + σ²), unadjusted = σ²_r / (σ²_f + σ²_r + σ²),
marginal R² = σ²_f / total, conditional R² = (σ²_f + σ²_r) / total.

For a count GLMM with the log link the distribution-specific variance is the lognormal
approximation log(1 + V(μ)/μ²), V the family's variance function at μ = exp(β₀) of the *null
model* — the response on the random terms alone, offsets kept (insight's ``null_model()``),
refitted with the fit's family, nAGQ and settings: log(1 + 1/μ) for Poisson; for nbinom2
log(1 + 1/μ + 1/k) with the fit's k, the null model refitted with k held there (insight's
``null_model`` re-evaluates glmer.nb's stored ``glmer(family = negative.binomial(theta = k))``
call). insight warns below μ = 6, and so does mixcli. The sqrt link's is 0.25, without a refit.
That refit is made only when asked (``needs_refit``). For a Gamma GLMM (inverse, identity or log
link) it is σ² (insight applies Gamma()'s variance function V(μ) = μ² to lme4's sigma()), no
refit; its random variances, like VarCorr()'s, are σ²ΛΛᵀ. Other links (a count family's
identity link) performance refuses with a warning ("Model link ... is not yet supported"): so
does mixcli (``unsupported``: no number, one line, warned when the decomposition is asked for).
In a GLMM, a random-effects term with one level per row (an
observation-level random effect, ``(1 | .row)``) models overdispersion: performance counts its
variance as residual ("dispersion"), not random, and so does mixcli.

performance returns NA (with a warning) for singular fits; mixcli reports the numbers,
which are well defined (a zero variance contributes zero), and says the fit is singular.
For models whose random terms are all intercepts, ``partition`` is the share of the
variance at each level (school, class, residual), excluding the fixed part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# The latent-scale variance of a binomial GLMM's response, by link (insight's var.distribution)
DISTRIBUTION_VARIANCE = {"logit": math.pi ** 2 / 3.0, "probit": 1.0, "cloglog": math.pi ** 2 / 6.0}
# ... of a count GLMM's (Poisson, nbinom2; nbinom1 with the log link), by link: the log link's is log(1 + V(μ)/μ²), μ from
# the null model (None here)
COUNT_LINKS = {"log": None, "sqrt": 0.25}
# the links of a Gamma GLMM insight computes (its distribution variance is σ² under each)
GAMMA_LINKS = ("inverse", "identity", "log")


@dataclass
class VarianceExplained:
    fixed: float  # σ²_f
    random: float  # σ²_r
    residual: float  # σ²
    icc_adjusted: float
    icc_unadjusted: float
    r2_marginal: float
    r2_conditional: float
    # (group, variance, share of random + residual) per intercept-only term, then "Residual";
    # empty when some term has random slopes (their variance depends on the covariate)
    partition: list[tuple[str, float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dispersion: float = 0.0  # (a GLMM's) observation-level terms' variance, part of ``residual``
    null_mean: float | None = None  # (count GLMMs, log link) μ = exp(β₀) of the null model

    def as_dict(self) -> dict:
        return {
            "icc": {"adjusted": self.icc_adjusted, "unadjusted": self.icc_unadjusted},
            "r2": {"marginal": self.r2_marginal, "conditional": self.r2_conditional},
            "variance": {"fixed": self.fixed, "random": self.random, "residual": self.residual},
        }


def needs_refit(m) -> bool:
    """Whether the decomposition of ``m`` costs a refit (of the null model: a Poisson, nbinom2 or
    nbinom1 GLMM with the log link)."""
    return m.is_glmm and m.family in ("poisson", "nbinom2", "nbinom1") and m.link == "log"


def unsupported(m) -> str | None:
    """Why performance computes no ICC or R² for ``m`` (a link insight does not support for its
    family: it warns and returns NA), or None."""
    if not m.is_glmm:
        return None
    links = {"binomial": tuple(DISTRIBUTION_VARIANCE), "poisson": tuple(COUNT_LINKS),
             "nbinom2": tuple(COUNT_LINKS), "nbinom1": ("log",), "Gamma": GAMMA_LINKS}.get(m.family, ())
    if m.link in links:
        return None
    if m.family == "nbinom1":  # (glmmTMB's family: checked against performance with the log link only)
        return (f"no ICC or R² for an nbinom1 GLMM with the {m.link} link: mixcli computes them with the log "
                "link, where they are checked against performance's")
    return (f"no ICC or R² for a {m.family} GLMM with the {m.link} link: its distribution-specific variance is "
            f"defined for the {' and '.join(links) if len(links) < 3 else ', '.join(links)} links only "
            "(performance and insight give NA)")


def variance_explained(m) -> VarianceExplained | None:
    """The decomposition for a fitted ``LmmResult`` or ``GlmmResult`` (None for a link
    performance does not support, ``unsupported``, and for a count GLMM with the log link whose
    data are not kept: its null model cannot be refitted)."""
    glmm = m.is_glmm
    if unsupported(m) is not None:
        return None
    null_mean = None
    if needs_refit(m):
        null_mean = _null_model_mean(m)
        if null_mean is None:
            return None
    frame = m.frame
    X = np.asarray(frame.X)
    beta = np.array([f.estimate for f in m.fixef])
    # a dataset fitted from its sums (``distributed.py``) has X's moments instead of its rows:
    # (n, Σx, XᵀX), enough for the variance of Xβ and the mean of zᵀΣz
    moments = getattr(frame, "x_moments", None)
    if moments is None:
        fitted_fixed = X @ beta
        fixed = float(np.var(fitted_fixed, ddof=1)) if len(fitted_fixed) > 1 else 0.0
        n = X.shape[0]
    else:
        n, sums, xtx = moments
        fixed = float((beta @ xtx @ beta - (sums @ beta) ** 2 / n) / (n - 1)) if n > 1 else 0.0
        second = np.block([[np.array([[float(n)]]), sums[None, :]], [sums[:, None], xtx]]) / n  # E[(1, x)(1, x)ᵀ]
    columns = {name: j for j, name in enumerate(frame.fixef_names)}
    sigma2 = float(m.sigma) ** 2  # (1 for a GLMM: Λ is then the random effects' own scale)
    scale = sigma2  # what Λ is relative to
    by_level = getattr(m, "dispformula", None)
    if by_level is not None and frame.dispersion is not None:  # the residual variance: its mean over the rows
        gf = frame.dispersion
        sigma2 = float(np.mean(by_level.sd[gf.to_r[gf.codes]] ** 2))
    random = dispersion = 0.0
    missing: list[str] = []
    partition_rows = []
    intercepts_only = True
    for term, lam in zip(frame.terms, m.structure.lambdas(m.theta)):
        cov = scale * (lam @ lam.T)
        before = random
        if term.structure and moments is None:
            # (a structured term's effects are its own columns, occasions or levels, rarely fixed
            # effects: the mean of zᵀΣz over its rows, Nakagawa's random variance)
            random += float(np.einsum("ij,jk,ik->", term.z, cov, term.z)) / n
            intercepts_only = False
            partition_rows.append((term.group, float(cov[0, 0])))
            continue
        keep = [i for i, name in enumerate(term.names) if name in columns or name == "(Intercept)"]
        missing.extend(name for name in term.names if name not in columns and name != "(Intercept)")
        if keep and moments is not None:
            idx = [0 if term.names[i] == "(Intercept)" and "(Intercept)" not in columns
                   else 1 + columns[term.names[i]] for i in keep]
            random += float(np.sum(cov[np.ix_(keep, keep)] * second[np.ix_(idx, idx)]))
        elif keep:
            z = np.column_stack([np.ones(n) if term.names[i] == "(Intercept)" and "(Intercept)" not in columns
                                 else X[:, columns[term.names[i]]] for i in keep])
            sub = cov[np.ix_(keep, keep)]
            random += float(np.einsum("ij,jk,ik->", z, sub, z)) / n
        if glmm and frame.factors[term.factor].n_levels == frame.n:  # observation-level: overdispersion
            dispersion += random - before
            random = before
        if term.names != ["(Intercept)"]:
            intercepts_only = False
        partition_rows.append((term.group, float(cov[0, 0])))
    notes = []
    if glmm and m.family == "binomial":
        sigma2 = DISTRIBUTION_VARIANCE[m.link] + dispersion
    elif glmm and null_mean is not None:
        # log(1 + V(μ)/μ²), V the fit's variance function (Poisson's μ, nbinom2's μ + μ²/k,
        # nbinom1's μ(1 + φ), with the full model's k or φ as insight takes them)
        mu = np.array([null_mean])
        sigma2 = math.log1p(float(m.data.family.variance(mu)[0]) / null_mean ** 2) + dispersion
        if null_mean < 6:
            notes.append(f"the null model's mean count is {null_mean:.1f}, too close to zero for the lognormal "
                         "approximation of the distribution variance: the ICC and R² may be unreliable "
                         "(performance warns the same)")
    elif glmm and m.family == "Gamma":
        sigma2 = float(m.sigma) ** 2 + dispersion  # (Gamma's V(μ) = μ² at μ = σ, as insight)
    elif glmm:
        sigma2 = COUNT_LINKS[m.link] + dispersion
    total = fixed + random + sigma2
    if missing:
        notes.append(f"random slopes not among the fixed effects ({', '.join(dict.fromkeys(missing))}) are left out "
                     "of the random variance, as performance does; add them as fixed effects")
    partition = []
    if intercepts_only and not glmm:
        level_total = sum(v for _, v in partition_rows) + sigma2
        partition = [(g, v, v / level_total) for g, v in partition_rows] + [("Residual", sigma2, sigma2 / level_total)]
    return VarianceExplained(
        fixed=fixed, random=random, residual=sigma2,
        icc_adjusted=random / (random + sigma2), icc_unadjusted=random / total,
        r2_marginal=fixed / total, r2_conditional=(fixed + random) / total,
        partition=partition, notes=notes, dispersion=dispersion, null_mean=null_mean,
    )


def _null_model_mean(m) -> float | None:
    """exp(β₀) of the null model (``Formula.null_model``) refitted to the fit's data with its family
    (nbinom2's k held at the fit's, as insight re-evaluates glmer.nb's call; nbinom1's φ estimated
    again, as insight refits a glmmTMB model), nAGQ, prior weights (on the rows the fit used) and settings, by
    the fit's ``fitter`` (fitting.fit_frame); None without the data (a saved fit)."""
    from ..frame import model_frame

    frame = m.frame
    if frame.table is None or m.fitter is None:
        return None
    weights = None
    if frame.weights is not None:
        weights = np.full(frame.table.nrows, np.nan)
        weights[frame.rows] = frame.weights
    family = frame.family
    if family.name == "nbinom2":
        family = family.with_dispersion(m.dispersion, fixed=True)
    null_frame = model_frame(frame.table, frame.formula.null_model(), family=family, weights=weights,
                             contrasts=frame.contrasts)
    null = m.fitter(null_frame, nagq=m.nagq, control=m.control)
    return math.exp(null.fixef[0].estimate)
