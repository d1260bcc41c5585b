"""A fitted linear mixed model: estimates, variance components and diagnostics, as lme4 reports them.

Numbers follow lme4's definitions:

* σ̂² = r²/(n − p) for REML, r²/n for ML; Var(β̂) = σ̂² (R_XᵀR_X)⁻¹;
* each term's covariance is σ̂² Λ Λᵀ (variances, SDs, correlations);
* logLik = −criterion/2 (the REML log-likelihood for a REML fit, as lme4),
  npar = p + len(θ) + 1, AIC = criterion + 2·npar, BIC = criterion + log(n)·npar;
* singular (``isSingular``): some diagonal θ below 1e-4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .engine.factor import Factorization, evaluate
from .engine.optimize import OptSummary
from .engine.structure import ModelStructure, lower_indices, sd_cor
from .frame import ModelFrame
from .singular import is_singular, singular_fit_warnings


@dataclass
class FixedEffect:
    term: str
    estimate: float
    se: float
    t: float
    df: float | None = None  # denominator df of the t test (Satterthwaite), once computed
    p: float | None = None  # Pr(>|t|) with those df
    lower: float | None = None  # confidence bounds, when asked for (see LmmResult.ci_method)
    upper: float | None = None
    # the estimate the interval is centred on: ``estimate`` for Wald and bootstrap intervals, the
    # ML estimate for a profile (lme4 profiles the ML deviance, also for a REML fit)
    ci_estimate: float | None = None


@dataclass
class VarComp:
    group: str  # "Residual" for the residual
    term: str | None
    variance: float
    sd: float


@dataclass
class Correlation:
    group: str
    term1: str
    term2: str
    corr: float


@dataclass
class RanefTerm:
    """Conditional modes of one random-effects term: ``values[level, effect]``."""

    group: str
    factor: str
    names: list[str]
    levels: list[str]
    values: np.ndarray
    sd: np.ndarray | None = None  # conditional SDs, same shape as values

    def records(self):
        """Tidy rows (factor, level, term, estimate, sd), term by term then level by level."""
        for j, name in enumerate(self.names):
            for i, level in enumerate(self.levels):
                sd = None if self.sd is None else float(self.sd[i, j])
                yield self.factor, level, name, float(self.values[i, j]), sd


class FitStatistics:
    """What LMM and GLMM results derive alike from ``criterion`` (−2 logLik, or the REML
    criterion), ``npar``, ``nobs``, ``messages`` and ``n_dropped``; and the tidy API
    (broom.mixed's verbs, the summary as ``str``)."""

    @property
    def loglik(self) -> float:
        return -self.criterion / 2.0

    @property
    def control(self):
        """The settings the fit used (``control.Control``); its refits use them too."""
        return self.optsummary.control

    @property
    def aic(self) -> float:
        return self.criterion + 2.0 * self.npar

    @property
    def bic(self) -> float:
        return self.criterion + math.log(self.nobs) * self.npar

    def variance_explained(self, refit: bool = True):
        """ICC (adjusted, unadjusted), Nakagawa's R² (marginal, conditional) and the share of
        variance per level, as the R package performance (``inference.variance_explained``).
        A Poisson or nbinom2 GLMM's (log link) costs a refit of the null model: with
        ``refit=False`` it is None until a call has made it. Asked for (``refit=True``), a link
        performance refuses (None) and the refit's notes (a null model's mean too close to zero)
        are warned, as performance warns them."""
        if "_variance_explained" not in self.__dict__:
            from .inference.variance_explained import needs_refit, unsupported, variance_explained

            asked = needs_refit(self)
            if not refit and asked:
                return None
            ve = variance_explained(self)
            self.__dict__["_variance_explained"] = ve
            if refit:
                import warnings

                reason = unsupported(self)
                for line in ([reason] if reason else []) + (ve.notes if ve is not None and asked else []):
                    warnings.warn(line, stacklevel=2)
        return self.__dict__["_variance_explained"]

    def data_notes(self) -> list[str]:
        """The notes about the data: the frame's messages, then the rows dropped (an option a
        note names is spelled as the caller passes it: ``errors.render``)."""
        from .errors import render

        out = [render(msg) for msg in self.messages]
        if self.n_dropped:
            out.append(f"{self.n_dropped} row{'s' if self.n_dropped != 1 else ''} with missing values dropped")
        return out

    is_glmm: ClassVar[bool] = False  # (GlmmResult says True)

    def ranef(self, cond_var: bool = True) -> list[RanefTerm]:
        """Conditional modes b = Λû of every term, levels as lme4 orders them, and (with
        ``cond_var``) their conditional SDs given the data and β̂, as lme4's
        ``ranef(condVar = TRUE)``: the square roots of diag(σ² Λ S Λᵀ) (σ = 1 for a GLMM, S from
        L at the modes). The fits supply ``conditional_modes``, ``_user_lambdas`` (Λ for the
        user's columns) and ``_conditional_covariances`` (S per term)."""
        modes = self.conditional_modes()
        lams = self._user_lambdas()
        covs = self._conditional_covariances() if cond_var else [None] * len(modes)
        out = []
        for term, b, cov, lam in zip(self.frame.terms, modes, covs, lams):
            gf = self.frame.factors[term.factor]
            to_r = term.levels_to_r  # the engine numbers levels by first appearance
            values = np.empty_like(b)
            values[to_r] = b
            sd = None
            if cov is not None:
                # diag(Λ S Λᵀ) per level: Σ_ab Λ_ia S_ab Λ_ib
                var = np.einsum("ia,abm,ib->mi", lam, cov, lam) * self.sigma**2
                sd = np.empty_like(var)
                sd[to_r] = np.sqrt(np.maximum(var, 0.0))
            out.append(RanefTerm(term.group, term.factor, list(term.names), gf.labels(), values, sd))
        return out


    # -- a tidy API for analysts (broom.mixed's verbs), as pandas DataFrames ------------------

    def parameter_estimates(self) -> dict:
        """The fit's own estimate of every parameter confint() reports, keyed as its intervals are:
        (kind, grouping factor, term1, term2) → SD, correlation, σ or coefficient."""
        from .inference.profile import model_parameters

        theta = np.asarray(self.theta, dtype=float)
        lams = self.structure.lambdas(theta)
        beta = [f.estimate for f in self.fixef]
        names = [f.term for f in self.fixef]
        # a structured term's own parameters (its profile's) beside the SDs and correlations of its Λ
        # (the bootstrap's)
        params = model_parameters(self.frame.terms, lams, float(self.sigma), names, beta)
        if getattr(self.structure, "structured", False):
            params += model_parameters(self.frame.terms, lams, float(self.sigma), names, beta,
                                       [theta[sl] for sl in self.structure.theta_slices])
        return {(p.kind, p.group, p.term1, p.term2): p.estimate for p in params
                if not (self.is_glmm and p.kind == "sigma")}

    def tidy(self):
        """One row per parameter, as broom.mixed's ``tidy()``: effect ("fixed" or "ran_pars"),
        group, term, estimate, std.error, statistic, df, p.value (and conf.low/conf.high when
        intervals were computed); random-effect parameters as SDs (``sd__(Intercept)``),
        correlations (``cor__(Intercept).ses``) and the residual SD (group "Residual")."""
        import pandas as pd

        rows = []
        for f in self.fixef:
            rows.append({"effect": "fixed", "group": None, "term": f.term, "estimate": f.estimate,
                         "std.error": f.se, "statistic": f.t, "df": f.df, "p.value": f.p,
                         "conf.low": f.lower, "conf.high": f.upper})
        corr = {}
        for c in self.correlations:
            corr.setdefault(c.group, []).append(c)
        # the intervals of the variance parameters (profile or bootstrap), by what they describe
        factor = {t.group: t.factor for t in self.frame.terms}
        bounds = {(iv.kind, iv.group, iv.term1, iv.term2): (iv.lower, iv.upper) for iv in self.intervals}

        def ran_par(group, term, estimate, key):
            lo, hi = bounds.get(key, (None, None))
            rows.append({"effect": "ran_pars", "group": group, "term": term, "estimate": estimate,
                         "conf.low": lo, "conf.high": hi})

        for v in self.varcorr:
            if v.group == "Residual":
                continue
            ran_par(v.group, f"sd__{v.term}", v.sd, ("sd", factor.get(v.group), v.term, None))
            for c in [c for c in corr.get(v.group, []) if c.term2 == v.term]:
                ran_par(c.group, f"cor__{c.term1}.{c.term2}", c.corr, ("cor", factor.get(c.group), c.term1, c.term2))
        if not self.is_glmm or any(v.group == "Residual" for v in self.varcorr):
            # (a GLMM has no residual variance parameter, but Gamma's scale, lme4's sigma())
            ran_par("Residual", "sd__Observation", self.sigma, ("sigma", None, None, None))
        d = getattr(self, "dispformula", None)
        if d is not None:  # (a dispformula: the residual SD of each level, glmmTMB's dispersion model)
            for level, sd in zip(d.levels, d.sd):
                ran_par(f"Residual ({d.factor})", f"sd__{level}", float(sd), ("dispersion", d.factor, level, None))
        out = pd.DataFrame(rows, columns=["effect", "group", "term", "estimate", "std.error", "statistic", "df",
                                          "p.value", "conf.low", "conf.high"])
        if self.ci_method is None:
            out = out.drop(columns=["conf.low", "conf.high"])
        return out

    def glance(self):
        """One row, as broom.mixed's ``glance()``: nobs, sigma, logLik, AIC, BIC, REMLcrit or
        deviance (a GLMM's: lme4's ``deviance()``, Σ deviance residuals), df.residual, and the
        ICC and R² (performance's; a Poisson GLMM's refits its null model)."""
        import pandas as pd

        ve = self.variance_explained()
        shares = {key: None if ve is None else getattr(ve, key)
                  for key in ("icc_adjusted", "r2_marginal", "r2_conditional")}
        return pd.DataFrame([{
            "nobs": self.nobs, "sigma": self.sigma, "logLik": self.loglik, "AIC": self.aic, "BIC": self.bic,
            ("REMLcrit" if self.reml else "deviance"): self.deviance, "df.residual": self.nobs - self.npar,
            **shares,
        }])

    def augment(self):
        """The rows used with ``.fitted``, ``.fixed``, ``.resid``, ``.resid_pearson`` (and a
        GLMM's ``.eta``) appended (broom.mixed's ``augment()``; lme4's ``fitted()``,
        ``residuals()``: see ``inference.predictions.augment``)."""

        from .inference.predictions import augment

        data = self._data_frame(self.frame.table, self.frame.rows)
        for name, values in augment(self).items():
            data[name] = values
        return data

    def save(self, path: str, cond_var: bool = False) -> None:
        """Write this fit to ``path`` without its rows, for ``mixcli.load`` (``mixcli.saved``:
        the file's layout); ``cond_var`` also keeps the random effects' conditional variances
        (prediction intervals at fitted levels, the ranef plot's intervals)."""
        from .saved import save

        save(self, path, cond_var=cond_var)

    def predict(self, newdata, population: bool = False, se: bool = False, type: str = "link",
                interval: str | None = None, level: float = 0.95):
        """lme4's ``predict(m, newdata, allow.new.levels = TRUE)`` (``re.form = NA`` with
        ``population``; for a GLMM ``type = "response"`` for μ instead of η): ``newdata``'s
        columns with ``predicted`` (and ``se``, the fixed part's standard error, the link
        scale's; and with ``interval="prediction"`` a linear mixed model's prediction interval
        for a new observation, ``lower`` and ``upper``, of coverage ``level``: see
        ``inference.predictions`` for the recipe and what it leaves out) appended."""
        from .inference.predictions import predict
        from .table import Table

        new = Table.from_mapping(newdata)
        p = predict(self, new, population=population, se=se, type=type, interval=interval, level=level)
        out = self._data_frame(new, np.ones(new.nrows, dtype=bool))
        out["predicted"] = p.predicted
        if se:
            out["se"] = p.se
        if interval is not None:
            out["lower"], out["upper"] = p.lower, p.upper
        return out

    @staticmethod
    def _data_frame(table, rows):
        import pandas as pd

        from .errors import UsageError, option
        from .table import TextColumn

        if table is None:
            raise UsageError(f"this fit does not hold its data (its model frame was made with "
                             f"{option('keep_data', False)}): make the frame with {option('keep_data', True)}")
        cols = {}
        for name in table.names:
            col = table.columns[name]
            cols[name] = (col.values()[rows] if isinstance(col, TextColumn) else np.asarray(col)[rows])
        return pd.DataFrame(cols)

    def __str__(self) -> str:
        """The summary table, as ``mixcli fit`` prints it."""
        import io

        from rich.console import Console

        from .render.fit import table_renderables

        buf = io.StringIO()
        console = Console(file=buf, width=120, no_color=True, highlight=False, soft_wrap=True)
        for r in table_renderables(self):
            console.print(r)
        return buf.getvalue()


@dataclass
class LmmResult(FitStatistics):
    """A fitted linear mixed model, as ``summary(lmer(...))`` reports it.

    * ``formula``, ``reml`` (REML or ML), ``nobs`` rows used, ``n_dropped`` rows
      dropped for missing values, ``ngroups`` (levels per grouping factor, lme4's order);
    * ``fixef`` (one ``FixedEffect`` per coefficient: estimate, se, t, and once
      computed df, p, lower, upper), ``vcov`` Var(β̂);
    * ``theta`` (lme4's θ) and ``theta_names`` (lme4's names), ``sigma`` σ̂,
      ``varcorr`` (``VarComp`` rows: each term's variances and SDs, then the
      residual), ``correlations``;
    * ``criterion`` (REML criterion or ML deviance), ``npar``; ``loglik``, ``aic``,
      ``bic``, ``deviance`` are derived from them;
    * ``singular``, ``converged``, ``warnings`` (about the fit) and ``messages``
      (about the data: dropped columns, scales), ``notes()`` for both;
    * ``optsummary`` — the optimiser's ``OptSummary``;
    * ``frame``, ``structure``, ``factorization`` — the model frame, θ-free
      structure and the factor at θ̂ (criterion-only until ``full_factorization``
      is asked for), for inference (ranef, Satterthwaite, profiles, bootstrap);
    * ``curvature`` — derivatives of the criterion at θ̂ (``engine.curvature``), from the
      fit's convergence check; Satterthwaite's df reuse them;
    * ``ddf``, ``ci_method``, ``ci_level``, ``intervals`` — filled in by
      ``add_satterthwaite`` and ``add_confint``;
    * ``dispformula`` — with a dispformula, the residual SD of each level of its factor
      (``Dispersion``; ``sigma`` is then the first level's).
    """

    formula: str
    reml: bool
    nobs: int
    n_dropped: int
    ngroups: dict[str, int]
    fixef: list[FixedEffect]
    vcov: np.ndarray
    theta: np.ndarray
    theta_names: list[str]
    sigma: float
    varcorr: list[VarComp]
    correlations: list[Correlation]
    criterion: float
    npar: int
    singular: bool
    converged: bool
    warnings: list[str]
    messages: list[str]
    optsummary: OptSummary
    frame: ModelFrame = field(repr=False)
    structure: ModelStructure = field(repr=False)
    factorization: Factorization = field(repr=False)
    curvature: object = field(default=None, repr=False)  # engine.curvature.Curvature at θ̂, from the fit's check
    ddf: str | None = None  # "Satterthwaite" once FixedEffect.df and .p are filled in
    ci_method: str | None = None  # "Wald" or "profile" once FixedEffect.lower/.upper are filled in
    ci_level: float | None = None
    intervals: list = field(default_factory=list, repr=False)  # profile CIs of SDs, correlations, σ
    bootstrap: dict | None = None  # nsim, seed, failed of bootstrap intervals (ci_method "bootstrap")
    dispformula: "Dispersion | None" = None  # the residual SD per level of a factor (a dispformula)

    def add_satterthwaite(self) -> "LmmResult":
        """Fill in Satterthwaite df and p-values of the fixed effects (lmerTest's t tests)."""
        from .inference import add_satterthwaite

        return add_satterthwaite(self)

    def add_confint(self, level: float = 0.95, method: str = "wald", progress=None, nsim: int = 500,
                    seed: int | None = None) -> "LmmResult":
        """Fill in confidence intervals: ``wald`` (fixed effects), ``profile`` or ``boot`` (fixed
        effects and variance parameters, lme4's ``confint(method = "profile" / "boot")``)."""
        from .inference import add_confint

        return add_confint(self, level, method, progress, nsim=nsim, seed=seed)

    @property
    def method(self) -> str:
        return "REML" if self.reml else "ML"

    @property
    def deviance(self) -> float:
        """−2 logLik (the REML criterion for a REML fit)."""
        return self.criterion

    def notes(self) -> list[str]:
        """What the user should know about this fit, data notes first, then warnings."""
        return self.data_notes() + list(self.warnings)

    @property
    def coef(self) -> dict[str, float]:
        return {f.term: f.estimate for f in self.fixef}

    def conditional_modes(self) -> list[np.ndarray]:
        """b̂ = Λû per term in the user's columns, as (levels in the engine's order, k) arrays."""
        return self.full_factorization().modes(np.array([f.estimate for f in self.fixef]))

    def full_factorization(self) -> Factorization:
        """The factor at θ̂ with every block (the fit keeps the criterion-only one, which may
        have eliminated a term in closed form): for conditional modes and variances."""
        if not self.factorization.full:
            self.factorization = evaluate(self.structure, self.factorization.user_theta, full=True)
        return self.factorization

    def _user_lambdas(self) -> list[np.ndarray]:
        return self.full_factorization().user_lam

    def _conditional_covariances(self) -> list[np.ndarray]:
        return self.full_factorization().conditional_covariances()


@dataclass
class Dispersion:
    """A residual SD per level of a factor (glmmTMB's ``dispformula = ~ f``, nlme's
    ``varIdent(~ 1 | f)``): Var(εᵢ) = (σ δ_f(i))², δ of the first level 1."""

    formula: str  # "~ f"
    factor: str
    levels: list[str]
    ratio: np.ndarray  # δ per level (1 for the first)
    sd: np.ndarray  # σ δ per level


def build_result(frame: ModelFrame, st: ModelStructure, fac: Factorization, opt: OptSummary, reml: bool,
                 curvature=None, problems: list[str] | None = None) -> LmmResult:
    """The fitted model at the factor's θ; ``problems`` (from the convergence check, with its
    ``curvature``) mark it not converged."""
    n, p = st.n, st.p
    dof = n - p if reml else n
    sigma = math.sqrt(fac.pwrss / dof)
    beta = fac.fixef()
    vcov = sigma**2 * fac.rx_inverse()
    se = np.sqrt(np.diag(vcov))
    fixef = [
        FixedEffect(name, float(b), float(s), float(b / s) if s > 0 else math.nan)
        for name, b, s in zip(frame.fixef_names, beta, se)
    ]
    user_lam = fac.user_lam
    varcorr, correlations = variance_components(frame, user_lam, sigma)
    theta = fac.user_theta  # lme4's θ (the optimiser's θ̃ is in opt)
    singular = (is_singular(theta, st.theta_is_diag, opt.control.singular_tol)
                or st.structure_at_bound(theta, opt.control.singular_tol))
    warnings = list(opt.warnings) + list(problems or [])
    converged = opt.converged and not problems
    if converged and not (math.isfinite(sigma) and sigma > 0 and math.isfinite(opt.fmin)):
        converged = False
        warnings.append(
            "the fit broke down numerically (the residual standard deviation is "
            f"{sigma:.3g}); rescale the predictors, especially random-slope variables, or simplify the model"
        )
    if singular:
        warnings.extend(singular_fit_warnings(frame, user_lam, varcorr, correlations, opt.control.singular_tol))
    return LmmResult(
        formula=frame.formula.text,
        reml=reml,
        nobs=n,
        n_dropped=frame.n_dropped,
        ngroups=frame.ngroups,
        fixef=fixef,
        vcov=vcov,
        theta=theta,
        theta_names=theta_names(frame),
        sigma=sigma,
        varcorr=varcorr,
        correlations=correlations,
        criterion=_criterion(fac, opt, reml),
        npar=p + st.n_theta + 1,
        singular=singular,
        converged=converged,
        warnings=warnings,
        messages=list(frame.messages),
        optsummary=opt,
        frame=frame,
        structure=st,
        factorization=fac,
        curvature=curvature,
    )


def _criterion(fac: Factorization, opt: OptSummary, reml: bool) -> float:
    """The criterion at the reported θ (the optimiser's value at its θ̃ agrees to rounding);
    the optimiser's if that is not finite (a fit that broke down says so elsewhere)."""
    value = fac.criterion(reml)
    return float(value) if math.isfinite(value) else float(opt.fmin)


def variance_components(frame: ModelFrame, lams: list[np.ndarray], sigma: float):
    """VarCorr: per term its variances/SDs and correlations, then the residual (lme4's order)."""
    varcorr: list[VarComp] = []
    correlations: list[Correlation] = []
    for term, lam in zip(frame.terms, lams):
        sds, cor = sd_cor(lam, sigma)
        for name, s in zip(term.names, sds):
            varcorr.append(VarComp(term.group, name, float(s * s), float(s)))
        k = len(term.names)
        for j in range(k):
            for i in range(j + 1, k):
                correlations.append(Correlation(term.group, term.names[j], term.names[i], float(cor[i, j])))
    varcorr.append(VarComp("Residual", None, sigma**2, sigma))
    return varcorr, correlations


def theta_names(frame: ModelFrame) -> list[str]:
    """lme4's names for θ: ``classid.(Intercept)``, ``schoolid.ses.(Intercept)``, ``schoolid.ses``."""
    out = []
    for term in frame.terms:
        if term.structure:
            from .engine.covstruct import param_names

            out.extend(param_names(term.structure, term.group, term.names))
            continue
        rows, cols = lower_indices(term.k)
        for i, j in zip(rows, cols):
            if i == j:
                out.append(f"{term.group}.{term.names[i]}")
            else:
                out.append(f"{term.group}.{term.names[i]}.{term.names[j]}")
    return out
