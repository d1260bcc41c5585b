"""Every setting a fit uses, in one record: tolerances, limits, restart rules and seeds.

lme4 gathers its settings in ``lmerControl``/``glmerControl`` and MixedModels.jl in an
``OptSummary``; mixcli's ``Control`` is that record. A fit takes one (``fitting.fit_frame(...,
control=)``, default ``DEFAULT``), hands it to every stage (the optimiser's ``OptSummary``, the
strategy of starts and restarts, the convergence check, PIRLS, the GLMM stages, the singular
test) and keeps it on its result, whose JSON reports it; refits of that model (bootstrap,
profile, compare's ML refits) use the same record. Nothing reads a module-level setting, so a
test or a user changes behaviour by passing a control::

    >>> from mixcli.control import DEFAULT
    >>> strict = DEFAULT.replace(max_eval=500, second_start=0)
    >>> mixcli.fit(d, "y ~ x + (1 | g)", control=strict)

Each field says where its value comes from (``Control.sources()``): lme4's or lmerTest's
default, or the measurement that chose it. Constants that define a method rather than tune a
fit (the difference steps of ``engine.derivatives``, rank and scale checks of the model frame)
stay with their code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


def _setting(default, source: str):
    return field(default=default, metadata={"source": source})


@dataclass(frozen=True)
class Control:
    """The settings of a fit (see the module docstring); ``Control.sources()`` says why each."""

    # ---------------------------------------------------------------- the optimiser (engine.optimize)
    ftol_abs: float = _setting(
        1e-10, "far tighter than lme4's nloptwrap (1e-8): the criterion must reach the best of lme4's "
        "optimisers to 1e-6 even on flat, near-singular surfaces")
    ftol_rel: float = _setting(
        1e-15, "on a million rows the criterion is ~1e7, where 1e-10 absolute is below rounding and BOBYQA "
        "wandered (129 evaluations instead of 95 on 900k rows); at 1e-14 a classroom fit stopped 3e-7 short, "
        "moving Satterthwaite's df by 0.15%")
    xtol_abs: float = _setting(1e-10, "with ftol_abs: θ̃ is unit-free and O(1)")
    max_eval: int = _setting(100_000, "evaluations over all of a fit's runs (the optimum cases need 25-725)")
    gradient_from: int = _setting(
        7, "covariance parameters from which L-BFGS with the analytic gradient replaces BOBYQA: a gradient "
        "costs 3-5 evaluations and L-BFGS needs 3-5x fewer of them, which wins from 7 parameters")
    near_boundary: float = _setting(
        1e-3, "diagonal θ̃ below this are tried at 0 after convergence (lme4's check.boundary uses 1e-5, which "
        "misses optima on the boundary like the classroom M15)")
    boundary_slack: float = _setting(
        1e-9, "a criterion change this small is optimiser noise (criteria ~1e4 reached to ~1e-10): within it "
        "the boundary (a singular fit) is preferred")
    edge_step: float = _setting(1e-5, "lme4's step off the boundary in restart_edge")
    ray_slack: float = _setting(
        1e-6, "relative: the criterion lower by more than this at 2θ̃ means no minimum in that direction "
        "(decreases_along_ray)")

    # ---------------------------------------------------------------- the fit's strategy (model.optimize)
    second_start: float = _setting(
        10.0, "a second start from this multiple of the first, when the first run ends on the boundary or a "
        "factor has few levels: found lme4 Nelder-Mead's better optimum on the random cases a150 and b5032 "
        "(0 turns second starts off)")
    few_levels: int = _setting(10, "grouping factors with fewer levels than this make a criterion prone to "
                                   "several local minima (the random optimum cases)")
    exact_fit: float = _setting(
        1e-10, "r² at the estimate below this share of the response's sum of squares about X's fit: the random "
        "effects reproduce y to 5 digits of its SD, and whether they reproduce it exactly (y in the span of X "
        "and Z: the likelihood has no maximum) is checked by least squares; real data stay above 1e-4")
    exact_fit_entries: int = _setting(
        4_000_000, "the largest n × (p + q) for that check's dense least squares (larger fits are not checked)")
    same_basin: float = _setting(
        1.0, "a second start is followed until its criterion is within this of the first minimum's (a deviance "
        "difference of 1); M16 ML: 43 evaluations instead of 138")
    descent_path: tuple = _setting(
        (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875), "fractions of the straight path from a second "
        "start to the first minimum where the criterion is looked at in one batch; falling at every step, the "
        "start is not run (classroom M16 ML: 8 points instead of 90 evaluations)")
    segment_probes: tuple = _setting(
        (0.25, 0.5, 0.75), "fractions of the segment between that point and the first minimum probed for a "
        "ridge between them")
    small_start: float = _setting(0.1, "a start this fraction of the first looks for a minimum near zero when "
                                       "no start reached one (a58, a211)")
    mirror_probe: float = _setting(1e-4, "how far into the interior a boundary mirror image is probed (θ̃ is "
                                         "unit-free, O(1))")
    mirror_step: float = _setting(
        0.1, "the least first trust region of a restart from a mirror image: the probed entry's own (7.5e-5) "
        "had BOBYQA crawl for 12,055 evaluations on the classroom M15 REML")
    polish_rounds: int = _setting(2, "rounds of a Newton step + a short run, when the convergence check finds "
                                     "the optimiser stopped short")

    # ---------------------------------------------------------------- warm start of large fits (model.warm_start)
    warm_start_rows: int = _setting(
        200_000, "fits of at least this many rows start from the optimum on a tenth of the outermost groups "
        "(900k rows: 124 full evaluations became 40 and 101 tenth-size ones)")
    warm_start_dense: int = _setting(500, "... or a crossed (dense) block at least this wide")
    warm_start_fraction: float = _setting(0.1, "the share of the sampled factor's levels")
    warm_xtol: float = _setting(
        1e-6, "θ̃ precision of a warm-started fit: the criterion is then within ~1e-9 relative of its minimum; "
        "on the 1M-row crossed model the last dozen of 27 evaluations (1.5 s each) moved θ̃ by 1e-6")
    seed: int = _setting(20261130, "the warm start's subsample: fixed, so the same data always give the same "
                                   "fit (the date the rule was written)")

    # ---------------------------------------------------------------- the convergence check (engine.curvature)
    newton_tol: float = _setting(
        1e-5, "a fit is called not converged when a Newton step from it would lower the criterion by more "
        "than this (absolute)")
    newton_rel: float = _setting(1e-10, "... plus this relative part, for criteria of 1e6 and more")
    negative_eigen: float = _setting(
        1e-6, "a Hessian eigenvalue below -this x the largest is a saddle: differences of the criterion carry "
        "~1e-7 relative noise, so near-zero ones are flat directions")
    on_bound: float = _setting(1e-10, "a diagonal θ̃ this close to 0 is on its bound")
    heavy_rows: int = _setting(
        200_000, "rows from which the check's differences take one Richardson level at a tenth of the steps "
        "(engine.curvature.check_differences): as accurate as two at the usual steps (898k rows: the Hessian "
        "within 6e-7 of three levels'), at half the points (0.12 s of a 1.9 s fit); and from which a warm-started "
        "fit takes Newton's steps (model.newton_descent; 898k rows: 0.95 s where BOBYQA and the check took 1.18)")
    heavy_dense: int = _setting(
        2000, "crossed random effects from which the same holds (seconds per evaluation there; one level at "
        "the usual steps left ~1e-4 relative truncation error, and a Newton point 1e-4 above BOBYQA's on "
        "the MovieLens shape), and from which a warm-started fit takes Newton's steps (model.newton_descent)")
    newton_iterations: int = _setting(
        8, "Newton steps from a warm start before BOBYQA takes over: a heavy crossed model's (model.newton_descent; "
        "the MovieLens shape needs 2, quadratic convergence from a tenth of the items' optimum) and a GLMM's second "
        "stage from the first's optimum (glmm; VerbAgg needs 2)")
    newton_descent_tol: float = _setting(
        1e-13, "relative: Newton's method stops where a step would lower the criterion by less than this "
        "(2.6e-7 on the MovieLens shape's 2.6e6), far below the check's newton_tol")
    batch_entries: int = _setting(
        500_000, "the check's points are factored in one batch when they have at most this many block entries "
        "together (M16 on the classroom data: 61 points, 220k entries, in ~5 evaluations' time), else point by "
        "point: batches of large models were slower and held several evaluations' memory (898k rows: 3.3 s "
        "and 452 MiB with batches of 2M entries, against 2.7 s and 321 MiB)")

    # ---------------------------------------------------------------- GLMMs (glmm, engine.pirls)
    pirls_tol: float = _setting(
        1e-10, "PIRLS's relative change of the penalised deviance at convergence (lme4: 1e-7); with the "
        "canonical links a step is Newton's, and the next change would be ~1e-20")
    pirls_tol_noncanonical: float = _setting(
        1e-14, "probit, cloglog, sqrt, identity: Fisher scoring converges linearly, and at 1e-10 the modes "
        "still moved log|L|² by 2e-5 (checked against Newton's method on dense matrices)")
    pirls_newton_from: float = _setting(
        1e-4, "non-canonical links: once PIRLS's relative change of pdev is below this, its steps are Newton's "
        "(observed information) instead of Fisher scoring's, which converges linearly (sqrt-link Poisson: 14 "
        "iterations an evaluation became ~6); above it Fisher's path chooses the mode, as glmer's does")
    pirls_max_iter: int = _setting(60, "PIRLS iterations per evaluation (none of the GLMM references needs half)")
    pirls_max_halvings: int = _setting(20, "step halvings per PIRLS iteration: a step shrunk 1e6 times")
    stage0_ftol_rel: float = _setting(
        1e-9, "the nAGQ=0 stage only gives the second its start; the criterion carries PIRLS's tolerance "
        "(1e-10 of the penalised deviance, 1e-5 absolute on 100k rows), so the LMM's 1e-10 would chase noise")
    stage0_ftol_abs: float = _setting(1e-6, "the nAGQ=0 stage (see stage0_ftol_rel)")
    stage0_xtol_abs: float = _setting(1e-4, "the nAGQ=0 stage (see stage0_ftol_rel)")
    stage1_ftol_rel: float = _setting(1e-12, "the (θ, β) stage: its estimate is known to 1e-6 of a standard error")
    stage1_ftol_abs: float = _setting(1e-8, "the (θ, β) stage (see stage1_ftol_rel); at 1e-6, with the Newton step at "
                                            "the end, the criteria were the same with 11% fewer evaluations, but the "
                                            "Hessian at the looser estimate moved SEs by 1.4e-4 between codings")
    stage1_xtol_abs: float = _setting(1e-6, "the (θ, β) stage (see stage1_ftol_rel)")
    step_beta: float = _setting(0.5, "the second stage's first trust region for β, in standard errors")
    hessian_step: float = _setting(0.05, "ζ's step in the GLMM Hessian's differences (ζ: β in units of its "
                                         "conditional covariance)")
    hessian_gradient_step: float = _setting(
        0.02, "ζ's step in the differences of the Laplace deviance's analytic gradient (canonical links: "
        "engine.laplace_gradient), one level, central: on 16 reference GLMMs and VerbAgg the SEs are within 1.3e-6 "
        "of two Richardson levels at 0.05 (one level at 0.05: 1.6e-5)")
    glmm_newton_tol: float = _setting(
        1e-7, "the (θ, β) stage by Newton's method (canonical links, Laplace) stops where gᵀH⁻¹g, twice what a "
        "step would lower the deviance, is below this: the standard errors' Hessian there is within 2.3e-5 "
        "(relative SE) of the optimum's on VerbAgg and 12 reference GLMMs (as BOBYQA's stopping point at "
        "stage1_ftol_abs), and the result's Newton step takes the estimate to the optimum")
    glmm_newton_precise: float = _setting(
        1e-2, "the GLMM Newton stage's Hessians are rough (forward differences in ζ: 17 evaluations on VerbAgg "
        "instead of 23) until the last decrement gᵀH⁻¹g is below this; from there quadratic convergence "
        "makes the next point the last (VerbAgg: 0.37, 1e-3, 5e-8), and its Hessian is the standard errors'; "
        "the result's Newton steps (any link) take the Hessian again where they land until gᵀH⁻¹g is below this")
    hessian_pair_tol: float = _setting(
        2e-5, "the Hessian's mixed differences take one Richardson level where its diagonal at steps h and h/2 "
        "agrees this well (relative) for both parameters: the truncation error is then as small, and VerbAgg's Hessian "
        "needs 115 evaluations instead of 145 (at 1e-4: 103, SEs within 4e-5 of the two-level ones, too close to "
        "the coding tests' 1e-4); flat likelihoods (a 5-row fit with a group SD of 25: 0.3% apart) keep both levels")
    separation: float = _setting(15.0, "a change of η this large on a unit-free link's scale (logit, probit, cloglog, "
                                       "log) — a coefficient's across its column's values, with its SE, or a term's "
                                       "random part or its SD on a row — means fitted probabilities of 0 or 1 "
                                       "(separation, a runaway group SD): e⁻¹⁵ = 3e-7")

    # ---------------------------------------------------------------- results
    singular_tol: float = _setting(1e-4, "lme4's isSingular(tol = 1e-4)")

    # ---------------------------------------------------------------- refits (inference.bootstrap, .profile)
    refit_ftol: float = _setting(
        1e-8, "a bootstrap refit's criterion tolerance: T* within ~1e-6 of a full-precision fit (classroom "
        "models), far below what moves a p-value, at half the evaluations")
    refit_xtol: float = _setting(1e-8, "a bootstrap refit's θ tolerance")
    refit_max_eval: int = _setting(20_000, "a bootstrap refit's evaluation limit")
    profile_ftol: float = _setting(1e-8, "a profile's inner fits: ζ² is a deviance difference, so ζ is good "
                                         "to ~1e-9")
    profile_xtol: float = _setting(1e-7, "a profile's inner fits")
    profile_max_eval: int = _setting(20_000, "a profile's inner fits")
    profile_zeta_tol: float = _setting(2e-6, "|ζ − target| at which an interval's end is accepted (~1e-6 "
                                             "standard errors)")
    profile_max_steps: int = _setting(80, "evaluations of ζ per end of an interval")

    def replace(self, **changes) -> "Control":
        """This control with some settings changed (an unknown name is an error, not ignored)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"Control has no setting {', '.join(unknown)}; settings: {', '.join(sorted(names))}")
        return dataclasses.replace(self, **changes)

    def with_text(self, name: str, text: str) -> "Control":
        """This control with one setting given as text (``"5"``, ``"1e-8"``, ``"0.25,0.5"``), converted
        to the setting's type; ValueError names the setting and what it takes."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        if name not in fields:
            import difflib

            plain = {n.replace("_", ""): n for n in fields}
            key = name.lower().replace("-", "").replace("_", "")
            close = [plain[k] for k in difflib.get_close_matches(key, plain, n=3, cutoff=0.75)]
            if close:
                raise ValueError(f"there is no setting {name!r}: did you mean {' or '.join(close)}?")
            raise ValueError(f"there is no setting {name!r}; the settings are {', '.join(fields)}")
        default = getattr(DEFAULT, name)
        try:
            if isinstance(default, tuple):
                value = tuple(float(v) for v in text.split(","))
            elif isinstance(default, int):
                value = int(text)
            else:
                value = float(text)
        except ValueError:
            kind = ("numbers separated by commas" if isinstance(default, tuple) else
                    "a whole number" if isinstance(default, int) else "a number")
            raise ValueError(f"{name} takes {kind}, not {text!r}") from None
        if (value < 0) if not isinstance(value, tuple) else any(v < 0 for v in value):
            raise ValueError(f"{name} cannot be negative ({text})")
        return self.replace(**{name: value})

    def as_dict(self) -> dict:
        """The settings as plain JSON values, in the record's order."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    def changes(self) -> dict:
        """The settings that differ from ``DEFAULT``."""
        return {k: v for k, v in self.as_dict().items() if v != DEFAULT.as_dict()[k]}

    @classmethod
    def sources(cls) -> dict[str, str]:
        """Where each default comes from."""
        return {f.name: f.metadata["source"] for f in dataclasses.fields(cls)}


DEFAULT = Control()
