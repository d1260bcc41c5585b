"""A fitted model for people and for scripts: ``summary(lmer)``-style table, JSON lines, tidy CSV.

* ``table_renderables(m, source)`` — rich renderables: numbers formatted the way
  lme4 prints them (4 significant digits for variance components, aligned
  decimals for fixed effects); everything shown is computed by the fit;
* ``render_json(models)`` — one object per model per line, with a fixed set of
  keys scripts rely on;
* ``render_csv(models)`` — one row per model and coefficient: formula, method,
  term, estimate, se, t, df, p (Satterthwaite; empty with ``--ddf none``), and
  lower, upper when confidence intervals were asked for.
"""

from __future__ import annotations

import csv
import io
import json
import math

from .numbers import aligned, format_p_coef, stars
from .numbers import json_number as num


def _variance_records(m) -> dict:
    """``icc`` and ``r2`` (performance's icc() and r2_nakagawa()); null where not computed
    (a Poisson or nbinom2 GLMM's with the log link, which costs a refit, unless asked for: ``fit --r2``;
    a count family's identity link, which performance does not support)."""
    ve = m.variance_explained(refit=False)
    if ve is None:
        return {"icc": None, "r2": None}
    return {"icc": {"adjusted": num(ve.icc_adjusted), "unadjusted": num(ve.icc_unadjusted)},
            "r2": {"marginal": num(ve.r2_marginal), "conditional": num(ve.r2_conditional)}}


def glmm_record(m) -> dict:
    """The JSON object of one GLMM fit: as a linear mixed model's, with ``family``, ``link``,
    ``nagq``, ``deviance`` (lme4's deviance(), Σ deviance residuals) and ``df_resid``; each fixed
    effect has ``z`` and ``p`` (no df); ``varcorr`` has no residual (but Gamma's, as glmer's); no
    sigma; ``icc`` and ``r2`` on the latent scale (null for Poisson and nbinom2 unless asked for: ``fit --r2``);
    ``dispersion`` is nbinom2's k, nbinom1's φ or Gamma's scale (lme4's sigma()), null for binomial and Poisson."""
    ci = m.ci_method is not None
    rec = {
        "formula": m.formula,
        "family": m.family,
        "link": m.link,
        "dispersion": num(m.dispersion),
        "nagq": m.nagq,
        "method": m.method,
        "nobs": m.nobs,
        "ngroups": dict(m.ngroups),
        "fixef": [_glmm_fixef_record(f, ci) for f in m.fixef],
        **_covariance_records(m),
        "theta": [num(t) for t in m.theta],
        "criterion": num(m.criterion),
        "loglik": num(m.loglik),
        "aic": num(m.aic),
        "bic": num(m.bic),
        "deviance": num(m.deviance),
        "df_resid": m.df_resid,
        "npar": m.npar,
        "overdispersion": num(m.overdispersion),
        "singular": m.singular,
        "converged": m.converged,
        "warnings": m.notes(),
    }
    rec.update(_variance_records(m))
    rec.update(_vcov_records(m))
    rec.update(_ci_record(m))
    rec["control"] = m.control.as_dict()
    return rec


def _covariance_records(m) -> dict:
    """``varcorr`` (per term its variances and SDs, then the residual for an LMM) and
    ``correlations``, as in lme4's ``as.data.frame(VarCorr(m))``."""
    out = {
        "varcorr": [{"group": v.group, "term": v.term, "variance": num(v.variance), "sd": num(v.sd)}
                    for v in m.varcorr],
        "correlations": [{"group": c.group, "term1": c.term1, "term2": c.term2, "corr": num(c.corr)}
                         for c in m.correlations],
    }
    structured = [t for t in m.frame.terms if getattr(t, "structure", "")]
    if structured:
        # glmmTMB's summary of a structured term: its SDs and (ar1, cs) the one correlation
        out["structures"] = []
        for t in structured:
            sds = [v.sd for v in m.varcorr if v.group == t.group]
            rho = next((c.corr for c in m.correlations if c.group == t.group), None) if t.structure != "diag" else None
            out["structures"].append({"group": t.group, "structure": t.structure, "terms": list(t.names),
                                      "sd": [num(v) for v in (sds[:1] if t.structure == "ar1" else sds)],
                                      "rho": None if rho is None else num(rho)})
    return out


def _vcov_records(m) -> dict:
    """``vcov``: Var(β̂) named as R's vcov(m) (row name → column name → value), and the
    correlation of the fixed effects (summary()'s "Correlation of Fixed Effects")."""
    import numpy as np

    names = [f.term for f in m.fixef]
    v = np.asarray(m.vcov, dtype=float)
    sd = np.sqrt(np.diag(v))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = v / np.outer(sd, sd)
    return {
        "vcov": {a: {b: num(v[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)},
        "fixef_correlation": {a: {b: num(corr[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)},
    }


def _glmm_fixef_record(f, ci: bool) -> dict:
    rec = {"term": f.term, "estimate": num(f.estimate), "se": num(f.se), "z": num(f.t), "p": num(f.p)}
    if ci:
        rec["lower"], rec["upper"] = num(f.lower), num(f.upper)
    return rec


def _dispersion_record(m) -> dict:
    """With a dispformula, ``dispformula``: its factor and each level's residual SD (σ times the
    level's ratio δ; ``sigma`` is the first level's). (A GLMM's ``dispersion`` is its family's.)"""
    d = getattr(m, "dispformula", None)
    if d is None:
        return {}
    return {"dispformula": {"formula": d.formula, "factor": d.factor, "levels": list(d.levels),
                           "sd": [num(v) for v in d.sd], "ratio": [num(v) for v in d.ratio]}}


def dispersion_line(m) -> str | None:
    """The residual SD of each level of a dispformula's factor, for the summary."""
    d = getattr(m, "dispformula", None)
    if d is None:
        return None
    return f"Residual SD by {d.factor} (dispformula {d.formula}): " + ", ".join(
        f"{level} {sd:.4f}" for level, sd in zip(d.levels, d.sd))


def fit_record(m) -> dict:
    """The JSON object of one fit (keys and their order are part of mixcli's interface).

    Each fixed effect has ``df`` and ``p`` (Satterthwaite; null with ``--ddf none``) and, when
    intervals were asked for, ``lower``/``upper``; the object then also has ``ci`` with the
    method, level and (profile) the intervals of the variance parameters. ``control`` holds the
    settings the fit used (``control.Control``: tolerances, limits, restart rules, seeds)."""
    rec = {
        "formula": m.formula,
        "method": m.method,
        "nobs": m.nobs,
        "ngroups": dict(m.ngroups),
        "fixef": [_fixef_record(f, m.ci_method is not None) for f in m.fixef],
        **_covariance_records(m),
        "theta": [num(t) for t in m.theta],
        "sigma": num(m.sigma),
        **_dispersion_record(m),
        "criterion": num(m.criterion),
        "loglik": num(m.loglik),
        "aic": num(m.aic),
        "bic": num(m.bic),
        "npar": m.npar,
        "singular": m.singular,
        "converged": m.converged,
        "warnings": m.notes(),
    }
    rec.update(_variance_records(m))
    rec.update(_vcov_records(m))
    rec.update(_ci_record(m))
    rec["control"] = m.control.as_dict()
    return rec


def _ci_record(m) -> dict:
    """``ci``: the method, level and the variance parameters' intervals (the fixed effects'
    are in ``fixef``), with the bootstrap's nsim, seed and failed refits."""
    if m.ci_method is None:
        return {}
    own = m.parameter_estimates()
    rec = {
        "method": m.ci_method,
        "level": m.ci_level,
        "criterion": ci_criterion(m),
        "intervals": [
            {"parameter": iv.parameter, "kind": iv.kind, "group": iv.group, "term": iv.term1, "term2": iv.term2,
             "estimate": num(own.get((iv.kind, iv.group, iv.term1, iv.term2))), "lower": num(iv.lower),
             "upper": num(iv.upper), "ci_estimate": num(iv.estimate)}
            for iv in m.intervals
        ],
    }
    if m.ci_method == "bootstrap":
        rec["bootstrap"] = dict(m.bootstrap)
    return {"ci": rec}


def _fixef_record(f, ci: bool) -> dict:
    rec = {"term": f.term, "estimate": num(f.estimate), "se": num(f.se), "t": num(f.t), "df": num(f.df), "p": num(f.p)}
    if ci:
        rec["lower"], rec["upper"] = num(f.lower), num(f.upper)
    return rec


def render_json(models) -> str:
    return "".join(json.dumps(glmm_record(m) if m.is_glmm else fit_record(m), allow_nan=False) + "\n"
                   for m in models)


TABLES = ("fixef", "varcorr", "intervals", "tidy")


def render_csv(models, table: str = "fixef") -> str:
    """One CSV table of every model: ``fixef`` (the coefficient table), ``varcorr`` (variances,
    SDs and correlations), ``intervals`` (every confidence interval computed, with its method)
    or ``tidy`` (broom.mixed's tidy(): fixed effects and random-effect parameters together)."""
    if table == "varcorr":
        return _varcorr_csv(models)
    if table == "intervals":
        return _intervals_csv(models)
    if table == "tidy":
        return _tidy_csv(models)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    ci = any(m.ci_method is not None for m in models)
    if models and models[0].is_glmm:  # (one invocation fits one family)
        w.writerow(["formula", "method", "family", "link", "term", "estimate", "se", "z", "p"]
                   + (["lower", "upper"] if ci else []))
        for m in models:
            for f in m.fixef:
                row = [m.formula, m.method, m.family, m.link, f.term, repr(f.estimate), repr(f.se), _cell(f.t),
                       _cell(f.p)]
                if ci:
                    row += [_cell(f.lower), _cell(f.upper)]
                w.writerow(row)
        return buf.getvalue()
    w.writerow(["formula", "method", "term", "estimate", "se", "t", "df", "p"] + (["lower", "upper"] if ci else []))
    for m in models:
        for f in m.fixef:
            row = [m.formula, m.method, f.term, repr(f.estimate), repr(f.se), repr(f.t), _cell(f.df), _cell(f.p)]
            if ci:
                row += [_cell(f.lower), _cell(f.upper)]
            w.writerow(row)
    return buf.getvalue()


def _varcorr_csv(models) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["formula", "method", "group", "term", "term2", "variance", "sd", "corr"])
    for m in models:
        for v in m.varcorr:
            w.writerow([m.formula, m.method, v.group, v.term or "", "", repr(v.variance), repr(v.sd), ""])
        for c in m.correlations:
            w.writerow([m.formula, m.method, c.group, c.term1, c.term2, "", "", _cell(c.corr)])
    return buf.getvalue()


def ci_criterion(m) -> str | None:
    """What the intervals were computed from: lme4 profiles the ML deviance whatever the fit's
    method; Wald and bootstrap intervals come from the fit's own criterion."""
    if m.ci_method is None:
        return None
    return "ML" if m.ci_method == "profile" else m.method


def _intervals_csv(models) -> str:
    """Every interval with the estimate of the row's ``method`` (the fit's own) and, in
    ``ci_estimate``, the one the interval is centred on (the ML estimate for a profile of a REML
    fit), computed by ``ci_criterion``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["formula", "method", "ci_method", "level", "parameter", "kind", "group", "term", "term2", "estimate",
                "lower", "upper", "ci_criterion", "ci_estimate"])
    for m in models:
        crit = ci_criterion(m)
        for f in m.fixef:
            w.writerow([m.formula, m.method, m.ci_method, m.ci_level, f.term, "fixef", "", f.term, "",
                        repr(f.estimate), _cell(f.lower), _cell(f.upper), crit, _cell(f.ci_estimate)])
        own = m.parameter_estimates()
        for iv in m.intervals:
            est = own.get((iv.kind, iv.group, iv.term1, iv.term2))
            w.writerow([m.formula, m.method, m.ci_method, m.ci_level, iv.parameter, iv.kind, iv.group or "",
                        iv.term1 or "", iv.term2 or "", _cell(est), _cell(iv.lower), _cell(iv.upper), crit,
                        _cell(iv.estimate)])
    return buf.getvalue()


def _tidy_csv(models) -> str:
    buf = io.StringIO()
    for i, m in enumerate(models):
        frame = m.tidy()
        frame.insert(0, "method", m.method)
        frame.insert(0, "formula", m.formula)
        frame.to_csv(buf, index=False, header=(i == 0), lineterminator="\n", float_format=None, na_rep="")
    return buf.getvalue()


def _cell(x) -> str:
    return "" if x is None else repr(float(x))


def table_renderables(m, source: str | None = None):
    """A list of rich renderables for one fit."""
    from rich.table import Table
    from rich.text import Text

    glmm = m.is_glmm
    out = []
    title = Text()
    if glmm:
        how = {0: "(nAGQ = 0: the first stage only)", 1: "(Laplace Approximation)"}.get(
            m.nagq, f"(Adaptive Gauss-Hermite Quadrature, nAGQ = {m.nagq})")
        title.append(f"Generalized linear mixed model fit by maximum likelihood {how}", style="bold")
    else:
        title.append(f"Linear mixed model fit by {'REML' if m.reml else 'maximum likelihood'}", style="bold")
    out.append(title)
    if glmm:
        out.append(Text(f" Family: {m.family_label or m.family}  ( {m.link} )"))
    out.append(Text(f"Formula: {m.formula}"))
    if source:
        dropped = f", {m.n_dropped} rows dropped for missing values" if m.n_dropped else ""
        out.append(Text(f"   Data: {source} ({m.nobs} observations{dropped})"))
    out.append(Text(""))
    if not glmm and m.reml:
        out.append(Text(f"REML criterion at convergence: {m.criterion:.4f}"))
    ic = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    last = ("df.resid", str(m.df_resid)) if glmm else ("npar", str(m.npar))
    for col in ("AIC", "BIC", "logLik", "deviance" if not (glmm or m.reml) else "-2*log(L)", last[0]):
        ic.add_column(col, justify="right", header_style="bold")
    ic.add_row(f"{m.aic:.4f}", f"{m.bic:.4f}", f"{m.loglik:.4f}", f"{m.criterion:.4f}", last[1])
    out.append(ic)
    if glmm:
        out.append(Text(f"deviance (Σ deviance residuals at the conditional modes, lme4's deviance()): "
                        f"{m.deviance:.4f}"))
    out.append(Text(""))

    out.append(Text("Random effects:", style="bold"))
    re = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    re.add_column("Groups", header_style="bold")
    re.add_column("Name", header_style="bold")
    re.add_column("Variance", justify="right", header_style="bold")
    re.add_column("Std.Dev.", justify="right", header_style="bold")
    max_k = max((sum(1 for v in m.varcorr if v.group == g) for g in {v.group for v in m.varcorr}), default=1)
    if max_k > 1:
        re.add_column("Corr", header_style="bold", justify="left")
    corr = {(c.group, c.term2, c.term1): c.corr for c in m.correlations}
    variances = aligned([v.variance for v in m.varcorr], 5)
    sds = aligned([v.sd for v in m.varcorr], 5)
    # glmmTMB's way with structured terms: ar1's one SD and "ρ (ar1)", cs's SDs and "ρ (cs)"
    structures = {t.group: t.structure for t in m.frame.terms if t.structure in ("ar1", "cs")}
    last_group = None
    for v, var_text, sd_text in zip(m.varcorr, variances, sds):
        group = v.group if v.group != last_group else ""
        last_group = v.group
        row = [group, v.term or "", var_text, sd_text]
        kind = structures.get(v.group)
        if kind is not None:
            if kind == "ar1" and not group:
                continue
            if max_k > 1:
                c = next((c.corr for c in m.correlations if c.group == v.group), math.nan) if group else None
                row.append("" if c is None else ("NaN" if c != c else f"{c:5.2f} ({kind})"))
            re.add_row(*row)
            continue
        if max_k > 1:
            terms = [w.term for w in m.varcorr if w.group == v.group]
            idx = terms.index(v.term) if v.term in terms else 0
            cells = []
            for other in terms[:idx]:
                c = corr.get((v.group, v.term, other))
                cells.append("" if c is None else ("NaN" if c != c else f"{c:5.2f}"))
            row.append(" ".join(cells))
        re.add_row(*row)
    out.append(re)
    groups = "; ".join(f"{name}, {count}" for name, count in m.ngroups.items())
    out.append(Text(f"Number of obs: {m.nobs}, groups:  {groups}"))
    if glmm and m.family in ("nbinom2", "nbinom1"):  # (glmmTMB's line; Gamma's scale is the Residual row)
        out.append(Text(f"Dispersion parameter for {m.family} family (): {m.dispersion:.3g}"))
    if dispersion_line(m) is not None:
        out.append(Text(dispersion_line(m)))
    ve = m.variance_explained(refit=False)
    if ve is not None:
        # performance's icc() and r2_nakagawa()
        latent = ""
        if glmm:
            latent = f"; latent scale, distribution variance {ve.residual - ve.dispersion:.4g}"
            if ve.dispersion:
                latent += f" + observation-level {ve.dispersion:.4g}"
            if ve.null_mean is not None:
                latent += f" (null model's mean {ve.null_mean:.4g})"
        out.append(Text(f"ICC {ve.icc_adjusted:.4f} (adjusted), {ve.icc_unadjusted:.4f} (unadjusted); "
                        f"R² {ve.r2_marginal:.4f} (marginal), {ve.r2_conditional:.4f} (conditional){latent}"))
        if ve.partition:
            shares = ", ".join(f"{g} {share:.1%}" for g, _, share in ve.partition)
            out.append(Text(f"Variance by level: {shares}"))
    out.append(Text(""))

    out.append(Text("Fixed effects:", style="bold"))
    fe = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    fe.add_column("", header_style="bold")
    has_df = any(f.df is not None for f in m.fixef)
    has_p = has_df or glmm
    has_ci = m.ci_method is not None
    stat, tail = ("z value", "Pr(>|z|)") if glmm else ("t value", "Pr(>|t|)")
    cols = ["Estimate", "Std. Error"] + (["df"] if has_df else []) + [stat] + ([tail] if has_p else [])
    if has_ci:
        cols += [_percent((1 - m.ci_level) / 2), _percent((1 + m.ci_level) / 2)]
    for col in cols:
        fe.add_column(col, justify="right", header_style="bold")
    if has_p:
        fe.add_column("", justify="left")
    # Estimates and standard errors share their decimals, as in R's printCoefmat.
    both = aligned([f.estimate for f in m.fixef] + [f.se for f in m.fixef], 4)
    est, se = both[: len(m.fixef)], both[len(m.fixef) :]
    tv = [f"{f.t:.2f}" for f in m.fixef]
    bounds = aligned([b for f in m.fixef for b in (f.lower, f.upper)], 4) if has_ci else []
    for i, (f, a, b, c) in enumerate(zip(m.fixef, est, se, tv)):
        row = [f.term, a, b]
        if has_df:
            row.append("" if f.df is None else f"{f.df:.2f}")
        row.append(c)
        if has_p:
            row.append(format_p_coef(f.p))
        if has_ci:
            row += bounds[2 * i : 2 * i + 2]
        if has_p:
            row.append(stars(f.p))
        fe.add_row(*row)
    out.append(fe)
    if has_p:
        out.append(Text("---"))
        out.append(Text("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"))
    if has_df:
        out.append(Text(f"t tests use {m.ddf}'s method for the degrees of freedom (as lmerTest)"))
    if has_ci:
        what = {"Wald": "Wald (normal quantile)", "profile": "profile likelihood"}.get(m.ci_method)
        if m.ci_method == "bootstrap":
            b = m.bootstrap
            what = (f"parametric bootstrap percentiles, {b['nsim']} refits by {m.method} (seed {b['seed']}"
                    + (f"; {b['failed']} failed, left out" if b["failed"] else "") + ")")
        out.append(Text(f"{m.ci_level:.0%} confidence intervals: {what}"))
    if m.intervals:
        out.append(Text(""))
        kind = "Bootstrap" if m.ci_method == "bootstrap" else "Profile"
        out.append(Text(f"{kind} confidence intervals of the variance parameters ({m.ci_level:.0%}):", style="bold"))
        vt = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
        vt.add_column("", header_style="bold")
        vt.add_column(_percent((1 - m.ci_level) / 2), justify="right", header_style="bold")
        vt.add_column(_percent((1 + m.ci_level) / 2), justify="right", header_style="bold")
        vals = aligned([b for iv in m.intervals for b in (iv.lower, iv.upper)], 4)
        for i, iv in enumerate(m.intervals):
            vt.add_row(iv.parameter, vals[2 * i], vals[2 * i + 1])
        out.append(vt)
        if m.reml and m.ci_method == "profile":
            out.append(Text("(profiles of the ML deviance, as lme4's confint(method = \"profile\") also for REML fits)"))
    notes = m.notes()
    if notes:
        out.append(Text(""))
        for line in notes:
            out.append(Text(line, style="yellow"))
    return out


def _percent(q: float) -> str:
    """R's column names for confidence bounds: '2.5 %', '97.5 %'."""
    return f"{100 * q:.3g} %"
