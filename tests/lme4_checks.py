"""Comparing a mixcli fit with an lme4 reference record (schema of ../shared/reference)."""

from __future__ import annotations

CRITERION_TOL = 1e-6  # ours must be at least as low as lme4's best, to this


def assert_matches_lme4(m, ref, label="", singular=None):
    """Criterion at least as low, fixed effects within 1% of their SE, SDs within 0.2%,
    names, counts and the singular flag identical."""
    where = f"{label} {m.method}"
    assert m.criterion <= ref["criterion"] + CRITERION_TOL, f"{where}: {m.criterion} > {ref['criterion']}"
    assert [f.term for f in m.fixef] == list(ref["fixef"]), where
    for f in m.fixef:
        assert abs(f.estimate - ref["fixef"][f.term]) <= 0.01 * ref["se"][f.term], (where, f.term)
        assert abs(f.se - ref["se"][f.term]) <= 0.002 * ref["se"][f.term], (where, f.term)
    sds = [v for v in ref["varcorr"] if v["var2"] is None]
    assert [(v.group, v.term) for v in m.varcorr] == [(v["grp"], v["var1"]) for v in sds], where
    sigma = ref["sigma"]
    for ours, theirs in zip(m.varcorr, sds):
        # relative 0.2%, or on the scale of theta's singularity tolerance for SDs at zero
        tol = max(0.002 * theirs["sdcor"], 1e-4 * sigma)
        assert abs(ours.sd - theirs["sdcor"]) <= tol, (where, ours.group, ours.term, ours.sd, theirs["sdcor"])
    assert m.singular == (ref["singular"] if singular is None else singular), where
    assert m.nobs == ref["nobs"] and m.npar == ref["npar"], where
    assert m.ngroups == ref["ngroups"], where
    assert abs(m.loglik - ref["loglik"]) <= CRITERION_TOL / 2 + 1e-9 or m.loglik > ref["loglik"], where
    assert abs(m.aic - ref["aic"]) <= 1e-3 and abs(m.bic - ref["bic"]) <= 1e-3, where
