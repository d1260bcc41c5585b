"""The ``mixcli`` command line: parse options, call the library, hand results to a renderer.

Heavy imports (numpy, the engine, rich) happen inside the commands so that
``mixcli --help`` starts instantly. Results go to stdout; warnings, progress
and errors go to stderr. Exit codes: 0 success, 1 data or fit error,
2 usage or formula error, 130 interrupted.
"""

from __future__ import annotations

import os
import re
import sys

# One BLAS thread unless the user says otherwise: mixcli's dense blocks are at
# most a few thousand wide, where a second OpenBLAS thread gains little, and
# OpenBLAS threads spin-wait: with any other process (or the bootstrap's worker
# processes) on the cores, a 1,144-wide Cholesky went from 0.06 s to 0.9 s.
# Must be set before numpy loads OpenBLAS.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import click  # noqa: E402

from .errors import MixcliError, use_option_style  # noqa: E402

# How the library's messages name an option (``errors.option``: the Python argument) for a
# command-line user: the flag, where it is not --name with the value after it.
_FLAGS = {
    "refit=False": "--no-refit", "refit=True": "leave out --no-refit", "method='wald'": "--ci LEVEL",
    "method='boot'": "--ci boot", "method='profile'": "--ci profile", "n": "--bootstrap", "names": "--name", "reml=False": "--ml",
}
_IDENTIFIER = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)'")


def _flag(name: str, value: str | None) -> str:
    if value is not None and f"{name}={value}" in _FLAGS:
        return _FLAGS[f"{name}={value}"]
    flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
    if value is None or value == "True":
        return flag
    quoted = _IDENTIFIER.fullmatch(value)  # type='response' is typed --type response
    return f"{flag} {quoted.group(1) if quoted else value}"


class _Group(click.Group):
    """Every way a command can end badly becomes one line on stderr and an exit code.

    mixcli's own errors print their message (exit 1 or 2); Ctrl-C prints
    ``mixcli: interrupted`` (exit 130); a closed output pipe ends quietly (141,
    as a C tool killed by SIGPIPE); Python warnings print as one
    ``mixcli: warning:`` line; anything else is a bug in mixcli and says so in
    one line (exit 1; set MIXCLI_DEBUG=1 for the traceback).
    """

    def invoke(self, ctx):
        import warnings

        # the library's messages name the flags this user types, for the length of the command
        previous = use_option_style(_flag)
        try:
            return self._invoke(ctx, warnings)
        finally:
            use_option_style(previous)

    def _invoke(self, ctx, warnings):
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                result = super().invoke(ctx)
            except MixcliError as err:
                notes = ctx.meta.pop(_DATA_NOTES, [])
                _error(str(err) + "".join(f" (note: {n})" for n in notes))
                ctx.exit(err.exit_code)
            except KeyboardInterrupt:
                click.echo("mixcli: interrupted", err=True)
                ctx.exit(130)
            except BrokenPipeError:
                _silence_stdout()
                ctx.exit(141)
            except click.exceptions.NoArgsIsHelpError:
                raise  # 'mixcli' alone: click prints the help
            except click.UsageError as err:  # bad options or arguments: one line too, not click's three
                where = err.ctx.command_path if err.ctx is not None else "mixcli"
                text = err.format_message().removesuffix(".")
                _error(f"{text[:1].lower()}{text[1:]} (see '{where} --help')")
                ctx.exit(err.exit_code)
            except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
                raise
            except MemoryError:
                _error("out of memory; try a smaller data set or a simpler model")
                ctx.exit(1)
            except Exception as err:
                if os.environ.get("MIXCLI_DEBUG"):
                    raise
                _error(f"internal error ({type(err).__name__}: {err}); this is a bug in mixcli, please report it "
                       "with the command that caused it (MIXCLI_DEBUG=1 shows the traceback)")
                ctx.exit(1)
            else:
                for note in ctx.meta.pop(_DATA_NOTES, []):
                    _warn(note)
                return result


# Where _read_data keeps the reader's warnings: printed after a successful command, or
# folded into the error line, so that a failing command still prints one line.
_DATA_NOTES = "mixcli.data_notes"


def _error(message: str):
    click.echo("mixcli: error: " + " ".join(message.split("\n")), err=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Python warnings (numpy's, a library's) as one ``mixcli: warning:`` line, not two lines of source."""
    _warn(" ".join(str(message).split("\n")))


def _silence_stdout():
    """After a broken pipe: point stdout at /dev/null so that the final flush cannot fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mixcli")
def main():
    """Fit and compare linear mixed-effects models written as lme4 formulas.

    \b
    Examples:
      mixcli fit data.csv "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
      mixcli compare data.csv "y ~ x + (1 | g)" "y ~ x + (x | g)"
      mixcli anova data.csv "y ~ a * b + (1 | g)"
      mixcli ranova data.csv "y ~ x + (x | g) + (1 | h)"
      mixcli reduce data.csv "y ~ x + (x | g) + (x | h)"
      mixcli plot data.csv "y ~ x + (x | g)" --kind ranef -o ranef.png
      mixcli nest data.csv schoolid:classid2 > with_ids.csv
      mixcli power data.csv "y ~ x + (1 | g)" --test x --fixef x=0.2 --along g --sizes 20,40

    DATA is a CSV/TSV path, or - for standard input.
    """


def _read_data(data: str, sep: str | None, text_columns=(), columns=None):
    """Read DATA into a Table (``text_columns`` read as text whatever they hold; only ``columns``
    if given, see ``io.read_table``). The reader's warnings (a legacy encoding, say) are kept for
    the end: one ``mixcli: warning:`` line each if the command succeeds, part of the error line
    if not."""
    import warnings

    from .io import read_table

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_table(data, sep=sep, text_columns=text_columns, columns=columns)
    notes = click.get_current_context().meta.setdefault(_DATA_NOTES, [])
    notes.extend(" ".join(str(w.message).split("\n")) for w in caught)
    return table


def _columns_used(formulas, weights, dispersion) -> list[str] | None:
    """The data columns the fits read (formulas, weights, the dispformula's factor); None when a
    formula does not parse (every column is then read, and the frame reports the formula)."""
    from .errors import MixcliError
    from .formula import parse_formula

    try:
        names = [n for f in formulas for n in parse_formula(f).variables()]
    except MixcliError:
        return None
    return names + [c for c in (weights, dispersion) if isinstance(c, str)]


def _warn(message: str):
    click.echo(f"mixcli: warning: {message}", err=True)


def _console():
    """A rich console on stdout: plain text when piped or when NO_COLOR is set."""
    from rich.console import Console

    tty = sys.stdout.isatty()
    return Console(
        file=sys.stdout,
        highlight=False,
        no_color=bool(os.environ.get("NO_COLOR")) or not tty,
        width=None if tty else 200,
        soft_wrap=not tty,
    )


_FORMAT = click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv", "tsv"]), default="table", show_default=True,
    help="table for people; json (one object per line), csv or tsv for scripts.",
)
_SEP = click.option("--sep", metavar="SEP", help="Field separator (default: tab for .tsv/.tab, else comma).")
_PROGRESS = click.option(
    "--progress/--no-progress", default=None,
    help="Live evaluation count on stderr during long fits (default: only when stderr is a terminal).",
)


_FAMILY = click.option(
    "--family", "family_name",
    type=click.Choice(["gaussian", "binomial", "poisson", "nbinom2", "negbin", "nbinom1", "Gamma"],
                      case_sensitive=False),
    default="gaussian", show_default=True,
    help="The response's distribution: gaussian (a linear mixed model, lmer), or binomial (0/1, yes/no, "
         "cbind(successes, failures), or proportions with --weights trials), poisson (counts), nbinom2 or "
         "negbin (overdispersed counts, glmer.nb's negative binomial: variance mu + mu^2/k, k estimated), "
         "nbinom1 (glmmTMB's NB1: variance mu(1 + phi), phi estimated) or Gamma (positive values) for a generalized linear mixed model (glmer).")
_LINK = click.option("--link", metavar="LINK",
                     help="Link function: logit (default), probit or cloglog for binomial; log (default), sqrt "
                          "or identity for poisson, nbinom2 and nbinom1; inverse (default), log or identity for Gamma.")
_NAGQ = click.option("--nagq", type=int, default=1, show_default=True, metavar="N",
                     help="GLMMs: 1 for the Laplace approximation (glmer's default), 0 for the faster first "
                          "stage only, up to 25 for adaptive Gauss-Hermite quadrature (one scalar random-"
                          "effects term only).")
def _lmm_only(why: str):
    """Hidden --family, --link and --nagq for a command of linear mixed models only: a GLMM asked
    for gets one line saying why and what to use instead (not click's "no such option")."""
    def refuse(ctx, param, value):
        if value is not None and not (param.name == "family_name" and value.lower() == "gaussian"):
            raise click.UsageError(f"{ctx.info_name} is for linear mixed models{why}; for a GLMM, test terms by "
                                   "comparing nested fits, as lme4's anova() of glmer fits does: mixcli compare "
                                   "DATA SMALLER LARGER --family binomial (or poisson)")
        return value

    def decorate(f):
        for flag, name in (("--nagq", "nagq"), ("--link", "link"), ("--family", "family_name")):
            f = click.option(flag, name, hidden=True, expose_value=False, callback=refuse)(f)
        return f
    return decorate


def _parse_control(ctx, param, values):
    """``--control NAME=VALUE`` (repeatable): the fit's settings (``control.Control``), kept in the
    command's context for every fit it makes (``_control``)."""
    from .control import DEFAULT

    control = DEFAULT
    for text in values:
        name, eq, value = text.partition("=")
        if not eq:
            raise click.BadParameter(f"{text!r} is not NAME=VALUE (e.g. max_eval=500)", ctx, param)
        try:
            control = control.with_text(name.strip(), value.strip())
        except ValueError as err:
            raise click.BadParameter(str(err), ctx, param) from None
    ctx.meta["mixcli.control"] = control
    return control


_CONTROL = click.option(
    "--control", multiple=True, metavar="NAME=VALUE", expose_value=False, callback=_parse_control,
    help="Change a setting of the fit, as lme4's lmerControl(): e.g. max_eval=500 (the optimiser's evaluation "
         "limit), ftol_abs=1e-8, second_start=0 (no second start). Repeatable. The settings, their defaults "
         "and where those come from: mixcli.control.Control in the Python library; a fit's JSON reports them.")


_ENGINE = click.option(
    "--engine", type=click.Choice(["memory", "dask"]), default="memory", show_default=True,
    help="dask: DATA is a Parquet file, a directory of Parquet files or a quoted glob of Parquet or CSV files, "
         "reduced to per-level sums on a Dask cluster, so that the rows never need to fit in memory (pip install "
         "'mixcli[dask]'; linear mixed models).")
_SCHEDULER = click.option("--scheduler", metavar="ADDRESS",
                          help="--engine dask: the running Dask scheduler to use, e.g. tcp://10.0.0.5:8786.")
_WORKERS = click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
                        help="--engine dask: start a cluster of N worker processes on this machine (default 2).")


def _control():
    """The settings ``--control`` gave this command (the defaults without it)."""
    from .control import DEFAULT

    return click.get_current_context().meta.get("mixcli.control", DEFAULT)


# --model FILE: a fit saved by fit --save, in place of DATA FORMULA (mixcli.saved)
_MODEL = click.option("--model", "model_path", metavar="FILE",
                      help="A fit saved with 'mixcli fit DATA FORMULA --save FILE': use it instead of fitting "
                           "DATA FORMULA again (give no DATA, FORMULA or fitting options then).")
_FIT_OPTIONS = {"ml": "--ml", "family_name": "--family", "link": "--link", "nagq": "--nagq", "weights": "--weights",
                "contrasts": "--contrasts", "control": "--control"}


def _saved_fit(path: str, *positional):
    """The saved fit of ``--model FILE`` (``_no_fit_inputs`` checked first)."""
    from .saved_fit import load

    _no_fit_inputs(*positional)
    return load(path)


def _no_fit_inputs(*positional):
    """With --model, the DATA and FORMULA it replaces must be absent, and the options of a fit
    too (the saved fit has its own: silently ignoring them would mislead)."""
    ctx = click.get_current_context()
    if any(p for p in positional):
        raise click.UsageError("--model replaces DATA and FORMULA: give either a saved fit or the data and formula")
    for name, flag in _FIT_OPTIONS.items():
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError(f"{flag} is an option of the fit, and the saved fit of --model was fitted "
                                   "already: leave it out")


def _need_data(data, formula):
    """Without --model, DATA and FORMULA are required (click's arguments are optional for --model's sake)."""
    for value, name in ((data, "DATA"), (formula, "FORMULA")):
        if not value:
            raise click.UsageError(f"missing argument '{name}' (or give a saved fit with --model FILE)")


_WEIGHTS = click.option("--weights", metavar="COLUMN",
                        help="Prior weights, as lmer's and glmer's weights =: for a linear mixed model the "
                             "residual variance of a row is sigma^2/weight; for a binomial proportion, the "
                             "number of trials.")
_CONTRASTS = click.option("--contrasts", type=click.Choice(["treatment", "sum", "helmert"], case_sensitive=False),
                          default="treatment", show_default=True,
                          help="Coding of every unordered factor (R's options(contrasts = ...)): treatment "
                               "(contr.treatment, coefficients against the first level), sum (contr.sum: "
                               "against the mean of the levels) or helmert. C(f, sum) in the formula sets one "
                               "factor's.")


class _CiSpec(click.ParamType):
    """``--ci``: LEVEL, wald[:LEVEL] or profile[:LEVEL] → (method, level)."""

    name = "ci"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value).strip().lower()
        method, _, level_text = text.partition(":")
        if method not in ("wald", "profile", "boot"):
            method, level_text = "wald", text
        try:
            level = float(level_text) if level_text else 0.95
        except ValueError:
            self.fail(f"{value!r} is not a level (like 0.95), wald[:LEVEL], profile[:LEVEL] or boot[:LEVEL]", param,
                      ctx)
        if not 0.0 < level < 1.0:
            self.fail(f"confidence level {level_text} is not between 0 and 1", param, ctx)
        return method, level


def _stack(*decorators):
    """Several click options as one decorator, in the order written (``@a @b @c``): the groups
    of options that many commands share."""
    def apply(f):
        for d in reversed(decorators):
            f = d(f)
        return f
    return apply


_GLMM_OPTIONS = _stack(_FAMILY, _LINK, _NAGQ)  # a GLMM's family, link and quadrature
_FIT_SETTINGS = _stack(_WEIGHTS, _CONTROL, _CONTRASTS)  # what else a fit is made with
_OUTPUT = _stack(_FORMAT, _SEP, _PROGRESS)  # how the data are read and the results written
_CLUSTER = _stack(_ENGINE, _SCHEDULER, _WORKERS)  # --engine dask and its cluster


@main.command("fit")
@click.argument("data", metavar="DATA")
@click.argument("formulas", nargs=-1, required=True, metavar="FORMULA...")
@click.option("--ml", is_flag=True, help="Maximum likelihood instead of REML.")
@click.option("--ddf", type=click.Choice(["satterthwaite", "kr", "none"], case_sensitive=False),
              default="satterthwaite", show_default=True,
              help="Denominator degrees of freedom for the fixed-effect t tests: Satterthwaite's, as "
                   "lmerTest (adds df and Pr(>|t|)); kr, Kenward-Roger's (pbkrtest: adjusted standard "
                   "errors too; REML fits); or none (t values only, as lme4).")
@click.option("--ci", "ci", type=_CiSpec(), default=None,
              metavar="LEVEL|wald[:LEVEL]|profile[:LEVEL]|boot[:LEVEL]",
              help="Confidence intervals. A level (0.95) or 'wald' gives Wald intervals for the fixed "
                   "effects (estimate ± z·SE, lme4's confint(method = \"Wald\")); 'profile' gives "
                   "profile-likelihood intervals for the fixed effects, the SDs, correlations and "
                   "sigma (lme4's confint(method = \"profile\"); for a GLMM glmer's default confint(), no "
                   "sigma; slower: seconds to a minute); 'boot' "
                   "parametric-bootstrap percentile intervals of the same (lme4's confint(method = "
                   "\"boot\"); --nsim refits on every core). Default level 0.95.")
@click.option("--ranef", is_flag=True,
              help="Print the conditional modes of the random effects with their conditional SDs "
                   "(lme4's ranef(condVar = TRUE)) instead of the summary.")
@click.option("--r2", is_flag=True,
              help="Also the ICC and Nakagawa's R² where they cost a refit: a Poisson, nbinom2 or nbinom1 GLMM's "
                   "(log link) distribution variance comes from its null model (nbinom2's k held), as "
                   "performance's icc() and r2_nakagawa() compute it (linear, binomial and Gamma models, "
                   "and the sqrt link, always show them; a count model's identity link has none: a warning).")
@_GLMM_OPTIONS
@_WEIGHTS
@click.option("--nsim", type=click.IntRange(min=1), default=None, metavar="N",
              help="--ci boot: the number of bootstrap refits (default 500, as lme4's confint).")
@click.option("--seed", type=click.IntRange(min=0), default=None, metavar="S",
              help="--ci boot: random seed; the same seed and N give the same intervals (default: a fresh "
                   "seed, reported).")
@click.option("--table", "table_name", type=click.Choice(["fixef", "varcorr", "intervals", "tidy"]),
              default="fixef", show_default=True,
              help="With --format csv, which table: the fixed effects, the variance components and "
                   "correlations, every confidence interval (needs --ci), or broom.mixed's tidy() of both.")
@click.option("--augment", is_flag=True,
              help="Instead of the summary, the rows used with .fitted (conditional on the random effects), "
                   ".fixed (population), .resid and .resid_pearson appended (broom.mixed's augment(); lme4's "
                   "fitted() and residuals()); CSV, or JSON lines with --format json. For a GLMM, glmer's: "
                   ".fitted and .fixed on the response scale (probabilities, rates), .eta the linear "
                   "predictor, .resid the deviance residuals.")
@click.option("-o", "--output", metavar="PATH",
              help="With --augment: write the rows to the file PATH instead of standard output; with --engine "
                   "dask, PATH is a new directory where the workers write them as a Parquet dataset, one part per "
                   "part of DATA.")
@click.option("--save", "save_path", metavar="FILE",
              help="Also write the fit (one formula) to FILE without its rows, for predict, emmeans, compare and "
                   "plot --model FILE: no refit (mixcli.saved describes the file).")
@click.option("--cond-var", is_flag=True,
              help="With --save: keep the random effects' conditional variances too (prediction intervals at "
                   "fitted levels, the ranef plot's intervals); k(k+1)/2 numbers per level, the largest part of a "
                   "big model's file.")
@click.option("--dispformula", metavar='"~ GROUP"',
              help="A residual SD per level of the factor GROUP (glmmTMB's dispformula, nlme's "
                   "weights = varIdent(~ 1 | GROUP)), estimated with the rest; linear mixed models.")
@_CONTROL
@_CONTRASTS
@_OUTPUT
@_CLUSTER
def fit_command(data, formulas, ml, ddf, ci, ranef, r2, nsim, seed, table_name, augment, family_name, link, nagq,
                weights, output, save_path, cond_var, dispformula, contrasts, fmt, sep, progress, engine, scheduler,
                workers):
    """Fit linear or generalized linear mixed models written as lme4 formulas.

    Prints fixed effects, variance components and warnings, like lme4's
    summary(lmer(FORMULA, DATA)), or with --family binomial or poisson
    summary(glmer(FORMULA, DATA, family)). Several formulas are fitted one
    after the other on the same data.

    \b
    Examples:
      mixcli fit classroom.csv "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
      mixcli fit --ml classroom.csv "mathscore ~ ses + (1 | schoolid/classid2)"
      mixcli fit classroom.csv "mathscore ~ ses + (1 | schoolid)" --format json | jq .sigma
      mixcli simulate | mixcli fit - "mathscore ~ ses + (1 | schoolid)" --format csv
      mixcli fit classroom.csv "mathscore ~ ses + (1 | classid)" --ranef --format csv
      mixcli fit classroom.csv "mathscore ~ ses + (1 | schoolid)" --ci 0.95 --ddf none
      mixcli fit classroom.csv "mathscore ~ ses + (ses | schoolid)" --ci profile
      mixcli fit classroom.csv "mathscore ~ ses + (ses | schoolid)" --ci boot --nsim 1000 --seed 1
      mixcli fit pupils.csv "pass ~ ses + (1 | schoolid/classid)" --family binomial
      mixcli fit herds.csv "cbind(sick, size - sick) ~ period + (1 | herd)" --family binomial --nagq 9
      mixcli fit ticks.csv "ticks ~ year + offset(log(days)) + (1 | location)" --family poisson
      mixcli fit ticks.csv "ticks ~ year + height + (1 | brood)" --family nbinom2
      mixcli fit ticks.csv "ticks ~ year + height + (1 | brood)" --family nbinom1
      mixcli fit rts.csv "rt ~ condition + (1 | subject)" --family Gamma --link log
      mixcli fit herds.csv "cbind(sick, size - sick) ~ period + (1 | herd)" --family binomial --ci profile
      mixcli fit ticks.csv "ticks ~ year + (1 | location)" --family poisson --r2
      mixcli fit cake.csv "angle ~ recipe * factor(temp) + (1 | replicate)" --contrasts sum
      mixcli fit growth.csv "height ~ poly(age, 2) + ns(dose, df = 3) + (1 | plant)" --weights w
      mixcli fit waves.csv "mathscore ~ ses + wave + ar1(0 + factor(wave) | pupil)"
      mixcli fit growth.csv "distance ~ age * sex + (1 | child)" --dispformula "~ sex"
      mixcli fit classroom.csv "mathscore ~ ses + (1 | schoolid)" --augment > rows.csv
      mixcli fit classroom.csv "mathscore ~ ses + (ses | schoolid)" --ml --save m.mixfit
      mixcli fit pupils/ "mathscore ~ ses + (1 | schoolid/classid)" --engine dask --workers 2
      mixcli fit 'pupils/*.parquet' "y ~ x + (x | g)" --engine dask --scheduler tcp://head:8786
      mixcli fit pupils/ "mathscore ~ ses + (1 | schoolid)" --engine dask --augment -o rows/
    """
    from .frame import model_frame
    from .progress import FitProgress

    given = click.get_current_context().get_parameter_source("ddf") is click.core.ParameterSource.COMMANDLINE
    fam = _family(family_name, link, nagq, ml, ddf if given else None, ci, weights)
    if (nsim is not None or seed is not None) and (ci is None or ci[0] != "boot"):
        raise click.UsageError("--nsim and --seed are options of --ci boot")
    if table_name != "fixef":
        if fmt not in ("csv", "tsv") or ranef or augment:
            raise click.UsageError("--table chooses the CSV table of a fit: use it with --format csv (or tsv)")
        if table_name == "intervals" and ci is None:
            raise click.UsageError("--table intervals needs --ci (wald, profile or boot)")
    if save_path is not None and len(formulas) > 1:
        raise click.UsageError("--save writes one fit: give one formula (and one --save per command)")
    if cond_var and save_path is None:
        raise click.UsageError("--cond-var is an option of --save: add --save FILE")
    if augment and (len(formulas) > 1 or ranef):
        raise click.UsageError("--augment takes one formula, without --ranef")
    if output is not None and not augment:
        raise click.UsageError("-o writes the rows of --augment: add --augment (the summary goes to standard output)")
    frames = []
    dispersion = None
    if dispformula is not None:
        from .frame import dispersion_factor

        dispersion = dispersion_factor(dispformula)
        if save_path is not None or engine == "dask" or scheduler or workers:
            raise click.UsageError("--dispformula: the fit is in memory and not saved, for now (leave out --save "
                                   "and --engine dask)")
    if engine == "dask" or scheduler or workers:
        if save_path is not None:
            raise click.UsageError("--save needs the fit's levels from the rows, which --engine dask does not "
                                   "bring to this machine: fit in memory to save, or leave out --save")
        if augment and output is None:
            raise click.UsageError("--augment with --engine dask writes the rows as a Parquet dataset, one part per "
                                   "part of DATA: give its new directory with -o DIR")
        results = _fit_dask(data, formulas, ml, ddf, ci, output if augment else None, fam, weights, contrasts,
                            progress, engine, scheduler, workers)
        if augment:
            for line in results[0].notes():
                _warn(line)
            return
        frames = None
    else:
        keep = augment or save_path is not None or r2  # (--r2: a null model refitted to the rows)
        table = _read_data(data, sep, columns=None if keep else _columns_used(formulas, weights, dispersion))
    # (without --augment or --save the fits need only their matrices: the file's other columns are freed)
    if frames is not None:
        frames = [model_frame(table, f, family=fam, weights=weights, contrasts=contrasts.lower(), keep_data=keep,
                              dispersion=dispersion)
                  for f in formulas]
        del table
    meter = FitProgress(progress)
    results = [] if frames is not None else results
    for i, frame in enumerate(frames or [], start=1):
        meter.start(f"fitting model {i}/{len(frames)}" if len(frames) > 1 else "fitting")
        m = _fit_model(frame, ml, fam, nagq, meter)
        meter.done()
        if not ranef and fam is None:
            _add_inference(m, ddf, ci, progress, i, len(frames), nsim, seed)
        elif ci is not None and fam is not None:
            _add_intervals(m, ci if not ranef else ("wald", ci[1]), progress, i, len(frames), nsim, seed)
        if r2:
            m.variance_explained()
        results.append(m)
    if save_path is not None:
        results[0].save(save_path, cond_var=cond_var)
    if augment:
        from .inference.predictions import augment as augment_columns
        from .render import rows as render

        m = results[0]
        extra = augment_columns(m)
        _write(fmt if fmt in ("json", "tsv") else "csv", lambda: render.render_json(m.frame.table, m.frame.rows, extra),
               lambda: render.render_csv(m.frame.table, m.frame.rows, extra), None, output)
        for line in m.notes():
            _warn(line)
        return
    if ranef:
        from .render import ranef as render

        if ci is not None and ci[0] != "wald":
            raise click.UsageError(f"--ranef --ci gives mode ± z × conditional SD; '{ci[0]}' intervals are "
                                   "for the parameters: give a level, e.g. --ci 0.95")
        level = None if ci is None else ci[1]
        _write(fmt, lambda: render.render_json(results, level), lambda: render.render_csv(results, level),
               lambda: [render.table_renderables(m, level) for m in results])
        notes = [line for m in results for line in m.notes()]
    else:
        from .render import fit as render

        source = "standard input" if data == "-" else data
        _write(fmt, lambda: render.render_json(results), lambda: render.render_csv(results, table_name),
               lambda: [render.table_renderables(m, source) for m in results])
        # JSON carries the notes in its "warnings" key and the table prints them under it
        notes = [line for m in results for line in m.notes()] if fmt in ("csv", "tsv") else []
        if fmt in ("csv", "tsv") and table_name == "fixef" and any(m.intervals for m in results):
            # nothing computed is dropped without a word: the variance parameters' intervals
            notes.append("this table has the fixed effects' intervals; those of the SDs, correlations and sigma "
                         "are in --table intervals (or --table tidy)")
    for line in notes:
        _warn(line)


def _fit_dask(data, formulas, ml, ddf, ci, augment, fam, weights, contrasts, progress, engine, scheduler, workers):
    """``fit --engine dask``: every formula on one cluster (``distributed.fit_dataset``), with the
    inference that needs only the sums; what needs the rows is refused first, in one line.
    ``augment``: the directory of the augmented rows (one formula)."""
    import time

    _dask_checks(engine, scheduler, workers, fam, "fit it")
    if ci is not None and ci[0] == "boot":
        raise click.UsageError("--ci boot refits simulated responses, which needs the rows; with --engine dask use "
                               "--ci profile or --ci wald")
    from .distributed import close, connect, fit_dataset
    from .progress import FitProgress

    start = time.monotonic()
    say = (lambda m: click.echo(f"mixcli: {m} [{time.monotonic() - start:.1f} s]", err=True)) \
        if progress is not False else None
    from .distributed import check_augment_target, check_dataset

    # (bad data or formulas end here, before a cluster starts)
    checked = [check_dataset(data, formula, weights) for formula in formulas]
    if augment is not None:
        check_augment_target(augment)
    client = connect(scheduler, workers)
    results = []
    try:
        for i, (formula, c) in enumerate(zip(formulas, checked), start=1):
            meter = FitProgress(progress)
            meter.start(f"fitting model {i}/{len(formulas)}" if len(formulas) > 1 else "fitting")
            m = fit_dataset(data, formula, reml=not ml, weights=weights, contrasts=contrasts.lower(), client=client,
                            progress=say, fit_progress=meter, control=_control(), checked=c, augment=augment)
            meter.done()
            _add_inference(m, ddf, ci, progress, i, len(formulas))
            results.append(m)
    finally:
        close(client)
    return results


def _dask_checks(engine, scheduler, workers, fam, instead: str):
    """What every --engine dask command refuses first, in one line, and that Dask is installed."""
    if engine != "dask":
        raise click.UsageError("--scheduler and --workers choose the cluster of --engine dask: add --engine dask")
    if scheduler and workers:
        raise click.UsageError("--scheduler joins a running cluster and --workers starts one: give one of them")
    if fam is not None:
        raise click.UsageError("--engine dask fits linear mixed models only: a GLMM's PIRLS needs a pass over the "
                               f"rows at every iteration; {instead} in memory (without --engine dask)")
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as err:
        raise click.UsageError(f"--engine dask needs Dask ({err.name} is not installed): "
                               "pip install 'mixcli[dask]'") from None


def _compare_dask(data, formulas, labels, refit, n_boot, fam, weights, contrasts, progress, engine, scheduler,
                  workers):
    """``compare --engine dask``: the formulas fitted on one cluster (``distributed.compare_dataset``);
    what needs the rows is refused first, in one line."""
    import time

    _dask_checks(engine, scheduler, workers, fam, "compare GLMMs")
    if n_boot is not None:
        raise click.UsageError("--bootstrap refits simulated responses, which needs the rows; with --engine dask "
                               "compare without it")
    from .distributed import compare_dataset
    from .progress import FitProgress

    start = time.monotonic()
    say = (lambda m: click.echo(f"mixcli: {m} [{time.monotonic() - start:.1f} s]", err=True)) \
        if progress is not False else None

    def meter(i, n):
        bar = FitProgress(progress)
        bar.start(f"fitting model {i}/{n}")
        return bar

    return compare_dataset(data, formulas, names=labels, refit=refit, weights=weights, contrasts=contrasts.lower(),
                           scheduler=scheduler, workers=workers, progress=say, fit_progress=meter,
                           control=_control(), announce=lambda message: click.echo(message, err=True))


def _family(name, link, nagq, ml, ddf, ci, weights):
    """The GLM family asked for (None for gaussian), after checking the options that go with it."""
    from .errors import UsageError
    from .family import family

    if name.lower() == "gaussian":
        if link not in (None, "identity"):
            raise UsageError(f"--link {link} does not belong to the gaussian family (a linear mixed model "
                             "uses the identity link); for a binomial or poisson response add --family")
        if nagq != 1:
            raise UsageError("--nagq is for generalized linear mixed models (--family binomial or poisson)")
        return None
    if ml:
        raise UsageError("--ml: a generalized linear mixed model is always fitted by maximum likelihood; leave it out")
    if ddf is not None:
        raise UsageError(f"--ddf {ddf}: a GLMM's fixed effects get Wald z tests (no degrees of freedom), as in "
                         "glmer's summary; leave it out")
    if ci is not None and ci[0] == "profile":
        from .inference.profile import check_profile

        check_profile(nagq, name)  # (before the fit: a nAGQ = 0 or Gamma fit's profile is refused)
    return family(name, link)


def _add_inference(m, ddf, ci, progress, i, n, nsim=None, seed=None):
    """Satterthwaite t tests and confidence intervals, as asked, on one fitted model."""
    if ddf.lower() == "satterthwaite":
        m.add_satterthwaite()
    elif ddf.lower() == "kr":
        from .errors import UsageError
        from .inference import add_kenward_roger

        try:
            add_kenward_roger(m)
        except ValueError as exc:
            raise UsageError(f"--ddf kr: {exc}") from None
    if ci is not None:
        _add_intervals(m, ci, progress, i, n, nsim, seed)


def _add_intervals(m, ci, progress, i, n, nsim=None, seed=None):
    """Confidence intervals (``ci`` = (method, level)) on one fitted model, with a progress bar
    for the slow methods."""
    method, level = ci
    if method == "profile":
        label = f"profiling model {i}/{n}" if n > 1 else "profiling"
        with _Bar(progress, label) as bar:
            m.add_confint(level, "profile", progress=bar.update)
    elif method == "boot":
        label = f"bootstrap model {i}/{n}" if n > 1 else "bootstrap"
        with _Bar(progress, label) as bar:
            m.add_confint(level, "boot", progress=lambda done, total: bar.update(done, total),
                          nsim=500 if nsim is None else nsim, seed=seed)
    else:
        m.add_confint(level, "wald")


class _Bar:
    """A rich progress bar on stderr, shown only when stderr is a terminal (or when asked), and
    removed when done, so pipelines and logs stay clean."""

    def __init__(self, enabled: bool | None, description: str):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.description = description
        self._bar = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=True, auto_refresh=False)  # no refresh thread: the bootstrap forks
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=None)
        return self

    def update(self, done: int, total: int, text: str | None = None):
        if self._bar is not None:
            desc = f"{self.description} {text}" if text else self.description
            self._bar.update(self._task, completed=done, total=total, description=desc)
            self._bar.refresh()

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False


def _write(fmt: str, as_json, as_csv, as_tables, output: str | None = None):
    """Results on stdout in the chosen format; ``as_tables`` gives one list of rich
    renderables per result, printed with a blank line between results. ``output``: a file the
    machine formats are written to instead (atomically)."""
    if fmt in ("json", "csv", "tsv"):
        if fmt == "json":
            text = as_json()
        else:
            from .io import csv_to_tsv

            text = as_csv() if fmt == "csv" else csv_to_tsv(as_csv())
        if output is None:
            sys.stdout.write(text)
            return
        from .output import AtomicOutput

        with AtomicOutput(output) as out:
            out.write(text.encode("utf-8"))
            out.commit()
    else:
        console = _console()
        for i, renderables in enumerate(as_tables()):
            if i:
                console.print()
            for r in renderables:
                console.print(r)


def _emit(fmt: str, render, result, data: str):
    """One result through its renderer module (``render_json``, ``render_csv``,
    ``table_renderables``, ``notes``); the machine formats put the notes on stderr."""
    source = "standard input" if data == "-" else data
    _write(fmt, lambda: render.render_json(result), lambda: render.render_csv(result),
           lambda: [render.table_renderables(result, source)])
    if fmt != "table":  # the table prints its notes under it
        for line in render.notes(result):
            _warn(line)


def _fit_one(table, formula, ml, weights, contrasts, progress, fam=None, nagq=1):
    """One mixed model (a GLMM with ``fam``), with the progress line on stderr."""
    from .frame import model_frame
    from .progress import FitProgress

    frame = model_frame(table, formula, family=fam, weights=weights, contrasts=contrasts.lower())
    bar = FitProgress(progress)
    bar.start("fitting")
    m = _fit_model(frame, ml, fam, nagq, bar)
    bar.done()
    return m


def _fit_model(frame, ml, fam, nagq, bar):
    """lmer's fit of ``frame`` (REML unless ``ml``), or glmer's with ``fam`` (``fitting.fit_frame``)."""
    from .fitting import fit_frame

    return fit_frame(frame, reml=not ml, nagq=nagq, progress=bar, control=_control())


@main.command("compare")
@click.argument("data", metavar="DATA", required=False)
@click.argument("formulas", nargs=-1, metavar="FORMULA FORMULA...")
@click.option("--model", "model_paths", multiple=True, metavar="FILE",
              help="A fit saved with 'mixcli fit DATA FORMULA --save FILE', instead of DATA and the formulas; "
                   "repeat for each model. ML fits (fit --ml), or REML fits of the same fixed effects with "
                   "--no-refit, of one data set.")
@click.option("--names", metavar="A,B,...", help="Comma-separated row labels (default m1, m2, ...).")
@click.option("--refit/--no-refit", default=True, show_default=True,
              help="Fit by ML for the test (lme4's anova(refit = TRUE)); --no-refit compares REML "
                   "fits, allowed only when the fixed effects are identical.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=1), default=None, metavar="N",
              help="Also a parametric-bootstrap p-value, Pr(boot), for each test: N responses simulated "
                   "from the smaller model, both models refitted (uses every CPU; a progress bar on a "
                   "terminal).")
@click.option("--seed", type=click.IntRange(min=0), default=None, metavar="S",
              help="Random seed of the bootstrap: the same seed and N give the same Pr(boot) "
                   "(default: a fresh seed, reported with the results).")
@click.option("--jobs", type=click.IntRange(min=1), default=None, metavar="J",
              help="Processes for the bootstrap (default: all available CPUs); results do not depend on it.")
@_GLMM_OPTIONS
@_FIT_SETTINGS
@_OUTPUT
@_CLUSTER
def compare_command(data, formulas, model_paths, names, refit, n_boot, seed, jobs, family_name, link, nagq, weights, contrasts,
                    fmt, sep, progress, engine, scheduler, workers):
    """Likelihood-ratio tests between models, like lme4's anova(m1, m2, ...).

    Models are fitted by maximum likelihood, sorted by number of parameters,
    and each is tested against the one above it. When the extra parameters
    are variance components, the boundary-corrected p-value (a 50:50 mixture
    of chi-squares) is shown too.

    \b
    Examples:
      mixcli compare classroom.csv "mathscore ~ ses + (ses | schoolid)" \\
          "mathscore ~ ses + (ses | schoolid) + (1 | classid)" --names M14,M17
      mixcli compare data.csv "y ~ x + (1 | g)" "y ~ x + (x | g)" --format json
      mixcli compare classroom.csv "mathscore ~ ses + (ses | schoolid)" \\
          "mathscore ~ ses + (ses | schoolid) + (1 | classid)" --bootstrap 1000 --seed 1
      mixcli compare pupils.csv "pass ~ ses + (1 | schoolid)" \\
          "pass ~ ses + (1 | schoolid/classid)" --family binomial
      mixcli compare --model small.mixfit --model large.mixfit     (fits saved by fit --ml --save)
      mixcli compare pupils/ "y ~ x + (1 | school)" "y ~ x + (1 | school/class)" --engine dask --workers 2
    """
    from .comparison import add_bootstrap, compare_models
    from .progress import FitProgress
    from .render import compare as render

    labels = [n.strip() for n in names.split(",")] if names else None
    if model_paths:
        from .comparison import compare_fits
        from .saved_fit import load

        if n_boot is not None:
            raise click.UsageError("--bootstrap refits the models to simulated responses, which needs the data: "
                                   "give DATA and the formulas instead of --model")
        _no_fit_inputs(data, *formulas)
        comp = compare_fits([load(path) for path in model_paths], names=labels, refit=refit)
        _emit(fmt, render, comp, "saved fits " + ", ".join(model_paths))
        return
    if not data:
        raise click.UsageError("missing argument 'DATA' (or give saved fits with --model FILE --model FILE)")
    if len(formulas) < 2:
        raise click.UsageError("compare needs at least two formulas")
    fam = _family(family_name, link, nagq, False, None, None, weights)
    if engine == "dask" or scheduler or workers:
        comp = _compare_dask(data, formulas, labels, refit, n_boot, fam, weights, contrasts, progress, engine,
                             scheduler, workers)
        _emit(fmt, render, comp, data)
        return
    table = _read_data(data, sep)
    comp = compare_models(table, formulas, names=labels, refit=refit, progress=FitProgress(progress),
                          announce=lambda message: click.echo(message, err=True), family=fam, nagq=nagq,
                          weights=weights, contrasts=contrasts.lower(), control=_control())
    if n_boot is not None:
        with _Bar(progress, "bootstrap") as bar:
            add_bootstrap(comp, n_boot, seed=seed, workers=jobs,
                          progress=lambda done, total, label: bar.update(done, total, label[len("bootstrap "):]))
    elif seed is not None or jobs is not None:
        raise click.UsageError("--seed and --jobs are options of --bootstrap")
    _emit(fmt, render, comp, data)


@main.command("anova")
@click.argument("data", metavar="DATA")
@click.argument("formula", metavar="FORMULA")
@click.option("--type", "kind", type=click.Choice(["3", "2", "1"]), default="3", show_default=True,
              help="Type III (each term adjusted for all others, marginal contrasts), II or I (sequential) tests.")
@click.option("--ddf", type=click.Choice(["satterthwaite", "kr", "none"], case_sensitive=False),
              default="satterthwaite", show_default=True,
              help="Denominator df: Satterthwaite's (lmerTest's default), Kenward-Roger's (pbkrtest, REML "
                   "only), or none (lme4's anova table: Sum Sq, Mean Sq, F only, sequential).")
@click.option("--ml", is_flag=True, help="Fit by maximum likelihood instead of REML.")
@_lmm_only(" (its F tests need a residual variance)")
@_FIT_SETTINGS
@_OUTPUT
def anova_command(data, formula, kind, ddf, ml, weights, contrasts, fmt, sep, progress):
    """F tests of each fixed-effect term, like lmerTest's anova(m, type = 3).

    For each term of the formula: NumDF, DenDF, F value and Pr(>F), from the
    hypothesis matrices lmerTest builds (type III contrasts do not depend on
    the coding of the factors) with Satterthwaite's or Kenward-Roger's
    denominator degrees of freedom.

    \b
    Examples:
      mixcli anova cake.csv "angle ~ recipe * temp + (1 | replicate)"
      mixcli anova cake.csv "angle ~ recipe * temp + (1 | replicate)" --type 1 --format json
      mixcli anova sleep.csv "Reaction ~ Days + (Days | Subject)" --ddf kr
    """
    from .inference.anova import anova_result
    from .render import anova as render

    m = _fit_one(_read_data(data, sep), formula, ml, weights, contrasts, progress)
    _emit(fmt, render, anova_result(m, int(kind), ddf.lower()), data)


def _se_note(glmm: bool, interval: str | None) -> str:
    """--se next to a conditional prediction: what it is, and where the rest of the uncertainty is."""
    note = ("se is the standard error of the fixed part X*beta only, not of the prediction with its random "
            "effects (the uncertainty of their conditional modes is not in it)")
    if glmm:
        return note
    if interval is not None:
        return note + "; lower and upper include it"
    return note + "; --interval prediction gives a prediction interval for a new observation"


@main.command("predict")
@click.argument("data", metavar="DATA", required=False)
@click.argument("formula", metavar="FORMULA", required=False)
@_MODEL
@click.option("--newdata", metavar="NEW", required=True,
              help="CSV/TSV (or Parquet) file of the rows to predict for (- for standard input).")
@click.option("--population", is_flag=True,
              help="The fixed part only (lme4's re.form = NA), instead of conditional on the random effects.")
@click.option("--se", is_flag=True, help="Also the standard error of the fixed part X*beta of each prediction "
                                         "(a GLMM's on the link scale): all of a --population prediction's, but "
                                         "without the random effects' uncertainty otherwise.")
@click.option("--type", "pred_type", type=click.Choice(["link", "response"]), default="link", show_default=True,
              help="For a GLMM, lme4's: the linear predictor η, or the response scale μ (probabilities, rates).")
@click.option("--interval", type=click.Choice(["prediction"]),
              help="Also 'lower' and 'upper': a prediction interval for a new observation of a linear mixed "
                   "model, predicted ± z·sqrt(x'Var(b)x + sigma^2 + z'Vz), V the conditional covariance of the "
                   "row's level (lme4's ranef(condVar = TRUE)), or the term's VarCorr covariance for a level "
                   "the fit has not seen and with --population. As the common lme4 recipe (Bolker's GLMM FAQ, "
                   "merTools), it ignores the covariance between the fixed effects' and the random effects' "
                   "estimates and the uncertainty in the variance parameters.")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Coverage of --interval.")
@click.option("--ml", is_flag=True, help="Fit by maximum likelihood instead of REML.")
@_GLMM_OPTIONS
@_FIT_SETTINGS
@click.option("--format", "fmt", type=click.Choice(["csv", "tsv", "json"]), default="csv", show_default=True,
              help="csv, tsv, or json (one object per row).")
@_SEP
@_PROGRESS
def predict_command(data, formula, model_path, newdata, population, se, pred_type, interval, level, ml, family_name,
                    link, nagq, weights, contrasts, fmt, sep, progress):
    """Predictions for new rows, like lme4's predict(m, newdata).

    Fits the model to DATA, then writes NEW's columns with 'predicted'
    appended: conditional on the fitted random effects, a level the fit has
    not seen getting 0 (lme4's allow.new.levels = TRUE; a note says how
    many rows), or the fixed part only with --population. --se adds the
    fixed part's standard error, --interval prediction a prediction
    interval for a new observation (linear mixed models).

    \b
    Examples:
      mixcli predict classroom.csv "mathscore ~ ses + (1 | schoolid)" --newdata new.csv
      mixcli predict classroom.csv "mathscore ~ ses + (1 | schoolid)" --newdata new.csv --population --se
      mixcli predict classroom.csv "mathscore ~ ses + (1 | schoolid)" --newdata new.csv --interval prediction
      mixcli predict pupils.csv "pass ~ ses + (1 | schoolid)" --family binomial --newdata new.csv --type response
      mixcli predict --model m.mixfit --newdata new.csv --se     (a fit saved by fit --save: no refit)
    """
    from .inference.predictions import check_interval, check_type

    level_given = click.get_current_context().get_parameter_source("level") is click.core.ParameterSource.COMMANDLINE
    if level_given and interval is None:  # (it would be ignored: no interval is computed without --interval)
        raise click.UsageError("--level sets the coverage of a prediction interval: add --interval prediction")
    if model_path is not None:
        return _predict_saved(_saved_fit(model_path, data, formula), newdata, population, se, pred_type, interval,
                              level, fmt, sep)
    _need_data(data, formula)
    if data == "-" and newdata == "-":
        raise click.UsageError("DATA and --newdata cannot both be standard input")
    fam = _family(family_name, link, nagq, ml, None, None, weights)
    check_type(pred_type, se, fam is not None)
    if interval is not None and fam is not None:
        raise click.UsageError("--interval prediction is for linear mixed models: a GLMM has no residual variance; "
                               "--se gives the standard error of the fixed part on the link scale")
    check_interval(interval, level, False, weights is not None)  # before the fit, not after
    from .table import TextColumn

    table = _read_data(data, sep)
    # a column that is text in DATA is text in NEW too, each field as written: digits are then
    # labels, not numbers, and a label such as "02" stays "02" (as a number it would be level "2")
    new = _read_data(newdata, sep, text_columns=[n for n, c in table.columns.items() if isinstance(c, TextColumn)])
    m = _fit_one(table, formula, ml, weights, contrasts, progress, fam, nagq)
    _write_predictions(m, new, population, se, pred_type, interval, level, fmt)


def _predict_saved(m, newdata, population, se, pred_type, interval, level, fmt, sep):
    """predict --model FILE: the saved fit's predictions (its text columns read as text in NEW)."""
    from .inference.predictions import check_interval, check_type

    check_type(pred_type, se, m.is_glmm)
    if interval is not None and m.is_glmm:
        raise click.UsageError("--interval prediction is for linear mixed models: a GLMM has no residual variance; "
                               "--se gives the standard error of the fixed part on the link scale")
    check_interval(interval, level, m.is_glmm, m.frame.weights is not None)
    text = [n for n, spec in m.header["columns"].items() if spec["text"]]
    _write_predictions(m, _read_data(newdata, sep, text_columns=text), population, se, pred_type, interval, level,
                       fmt)


def _write_predictions(m, new, population, se, pred_type, interval, level, fmt):
    """predict's rows and notes, for a fit or a saved fit."""
    import numpy as np

    from .inference.predictions import predict
    from .render import rows as render

    pred = predict(m, new, population=population, se=se, type=pred_type, interval=interval, level=level)
    extra = {"predicted": pred.predicted}
    if se:
        extra["se"] = pred.se
    if interval is not None:
        extra["lower"], extra["upper"] = pred.lower, pred.upper
    everything = np.ones(new.nrows, dtype=bool)
    _write(fmt, lambda: render.render_json(new, everything, extra), lambda: render.render_csv(new, everything, extra),
           None)
    if se and not population:
        _warn(_se_note(m.is_glmm, interval))
    for name, count in pred.new_levels.items():
        _warn(f"{count} row{'s' if count > 1 else ''} of --newdata had a {name} level the fit has not seen "
              "(or none): predicted with its random effects at 0, as lme4's allow.new.levels = TRUE")
    if pred.missing:
        _warn(f"{pred.missing} row{'s' if pred.missing > 1 else ''} of --newdata had a missing predictor: "
              "predicted NA")
    for line in m.notes():
        _warn(line)


def _parse_at(ctx, param, values):
    """``--at NAME=VALUE[,VALUE...]`` (repeatable) → {name: [values]} for emmeans's reference grid."""
    out = {}
    for text in values:
        name, eq, value = text.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise click.BadParameter(f"{text!r} is not NAME=VALUE (e.g. temp=200, or temp=180,220)", ctx, param)
        out[name.strip()] = [v.strip() for v in value.split(",") if v.strip()]
    return out


@main.command("emmeans")
@click.argument("data", metavar="DATA", required=False)
@click.argument("formula", metavar="FORMULA", required=False)
@_MODEL
@click.option("--specs", required=True, metavar="TERM",
              help="The factor(s) whose marginal means to estimate: A, or A:B for their combinations, or "
                   "'A | B' for A within each level of B.")
@click.option("--by", metavar="TERM", help="Means and contrasts within each level of this factor (A:B for several).")
@click.option("--at", multiple=True, metavar="NAME=VALUE", callback=_parse_at,
              help="Hold a covariate at VALUE instead of its mean, or keep only the listed levels of a factor; "
                   "VALUE,VALUE,... for several (averaged over unless in --specs). Repeatable.")
@click.option("--pairwise", is_flag=True, help="Shorthand for --contrast pairwise.")
@click.option("--contrast", "method", type=click.Choice(["pairwise", "revpairwise", "trt.vs.ctrl", "poly"]),
              help="Contrasts of the means: every pair (Tukey-adjusted by default), reversed pairs, each level "
                   "against the first (dunnettx), or orthogonal polynomials (unadjusted).")
@click.option("--adjust", type=click.Choice(["tukey", "holm", "bonferroni", "sidak", "dunnettx", "none"]),
              help="P-value adjustment of the contrasts (default: emmeans's for the contrast).")
@click.option("--ddf", type=click.Choice(["satterthwaite", "kr", "asymptotic"], case_sensitive=False),
              default="satterthwaite", show_default=True,
              help="df of each mean and contrast: Satterthwaite's (lmerTest), Kenward-Roger's (pbkrtest, with "
                   "its adjusted covariance; R emmeans's default, REML only) or none (z tests). GLMMs: asymptotic.")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Confidence level of the means' intervals.")
@click.option("--type", "emm_type", type=click.Choice(["link", "response"]), default="link", show_default=True,
              help="GLMMs: the link scale, or back-transformed (probabilities, rates; odds ratios for contrasts).")
@click.option("--joint", is_flag=True, help="Also emmeans's joint_tests: an F test of every model term on the grid.")
@click.option("--ml", is_flag=True, help="Fit by maximum likelihood instead of REML.")
@_GLMM_OPTIONS
@_FIT_SETTINGS
@_OUTPUT
def emmeans_command(data, formula, model_path, specs, by, at, pairwise, method, adjust, ddf, level, emm_type, joint, ml,
                    family_name, link, nagq, weights, contrasts, fmt, sep, progress):
    """Estimated marginal means and their contrasts, like R's emmeans(m, pairwise ~ A).

    The model's means of each level of --specs, averaged with equal weights
    over the other factors, numeric covariates at their means (emmeans's
    reference grid), with SE, df and confidence intervals; --pairwise or
    --contrast adds contrasts with adjusted p-values, --joint an F test of
    every term. Column names and notes are emmeans's.

    \b
    Examples:
      mixcli emmeans cake.csv "angle ~ recipe * temp + (1 | replicate)" --specs recipe --pairwise
      mixcli emmeans data.csv "y ~ A * B + (1 | g)" --specs A --by B --contrast trt.vs.ctrl --adjust holm
      mixcli emmeans data.csv "y ~ A * x + (1 | g)" --specs A --at x=10 --ddf kr --format json
      mixcli emmeans pupils.csv "pass ~ A + (1 | school)" --family binomial --specs A --type response --pairwise
      mixcli emmeans --model m.mixfit --specs A --pairwise     (a fit saved by fit --save: no refit)
    """
    from .inference.emmeans import emmeans, parse_specs
    from .render import emmeans as render

    if pairwise and method not in (None, "pairwise"):
        raise click.UsageError("--pairwise and --contrast are the same option; give one")
    if pairwise:
        method = "pairwise"
    if model_path is not None:
        m = _saved_fit(model_path, data, formula)
        glmm = m.is_glmm
    else:
        _need_data(data, formula)
        fam = _family(family_name, link, nagq, ml, None, None, weights)
        glmm = fam is not None
    if emm_type == "response" and not glmm:
        raise click.UsageError("--type response back-transforms a GLMM's means from its link scale; a linear mixed "
                               "model's means are already on the response scale: leave it out")
    if glmm and ddf.lower() == "kr":
        raise click.UsageError("--ddf kr is for linear mixed models; a GLMM's means have asymptotic (z) tests")
    spec_list, by_list = parse_specs(specs)
    if by:
        by_list += parse_specs(by)[0]
    if model_path is None:
        m = _fit_one(_read_data(data, sep), formula, ml, weights, contrasts, progress, fam, nagq)
    res = emmeans(m, spec_list, by=by_list, at=at, contrast=method, adjust=adjust, ddf=ddf.lower(), level=level,
                  type=emm_type, joint=joint)
    _emit(fmt, render, res, data if model_path is None else model_path)
    if fmt == "table":  # (_emit puts them on stderr for the other formats)
        for line in render.notes(res):
            _warn(line)
    for line in m.notes():
        _warn(line)


@main.command("plot")
@click.argument("data", metavar="DATA", required=False)
@click.argument("formula", metavar="FORMULA", required=False)
@_MODEL
@click.option("--kind", type=click.Choice(["ranef", "resid", "qq", "profile", "emmeans"]), required=True,
              help="ranef: caterpillar plot of the conditional modes with ±1.96 conditional SD (lattice's "
                   "dotplot(ranef(m, condVar = TRUE))); resid: residuals against fitted values; qq: normal QQ "
                   "plots of the residuals and of each term's conditional modes; profile: profile zeta plots "
                   "of every parameter (xyplot(profile(m)); slower); emmeans: the estimated marginal means of "
                   "--specs with their confidence intervals, one panel per --by level (plot(emmeans(...))).")
@click.option("--specs", metavar="TERM", help="--kind emmeans: the factor(s) whose means to draw (as mixcli emmeans).")
@click.option("--by", metavar="TERM", help="--kind emmeans: one panel per level of this factor (A:B for several).")
@click.option("--at", multiple=True, metavar="NAME=VALUE", callback=_parse_at,
              help="--kind emmeans: hold a covariate at VALUE, or keep the listed levels of a factor (as mixcli "
                   "emmeans). Repeatable.")
@click.option("-o", "--output", metavar="FILE", required=True, help="The image: .png, .svg or .pdf.")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Coverage of the intervals drawn.")
@click.option("--size", metavar="WxH", help="Figure size in inches, e.g. 8x6 (default: chosen from the panels).")
@click.option("--ml", is_flag=True, help="Fit by maximum likelihood instead of REML.")
@_GLMM_OPTIONS
@_FIT_SETTINGS
@_SEP
@_PROGRESS
def plot_command(data, formula, model_path, kind, specs, by, at, output, level, size, ml, family_name, link, nagq, weights, contrasts, sep,
                 progress):
    """Diagnostic plots of a fitted mixed model (a GLMM's: ranef, resid with Pearson residuals, qq of
    the conditional modes).

    \b
    Examples:
      mixcli plot classroom.csv "mathscore ~ ses + (ses | schoolid)" --kind ranef -o ranef.png
      mixcli plot classroom.csv "mathscore ~ ses + (1 | schoolid)" --kind resid -o resid.svg
      mixcli plot classroom.csv "mathscore ~ ses + (ses | schoolid)" --kind profile -o profile.pdf
      mixcli plot pupils.csv "pass ~ ses + (1 | schoolid)" --family binomial --kind ranef -o ranef.png
      mixcli plot --model m.mixfit --kind ranef -o ranef.png     (saved by fit --save --cond-var)
      mixcli plot cake.csv "angle ~ recipe * temp + (1 | replicate)" --kind emmeans --specs recipe -o emm.png
      mixcli plot --model m.mixfit --kind emmeans --specs A --by B -o emm.svg
    """
    from .plot import check_destination, plot

    width = height = None
    if size:
        try:
            width, height = (float(v) for v in size.lower().split("x"))
        except ValueError:
            raise click.UsageError(f"--size {size}: give width x height in inches, e.g. 8x6") from None
    if kind == "emmeans" and not specs:
        raise click.UsageError("--kind emmeans draws the means of --specs: add --specs FACTOR")
    if kind != "emmeans" and (specs or by or at):
        raise click.UsageError("--specs, --by and --at are options of --kind emmeans")
    if model_path is not None:
        if kind not in ("ranef", "emmeans"):
            raise click.UsageError(f"--kind {kind} needs the fit's rows, which a saved fit (--model) does not keep: "
                                   "give DATA FORMULA instead, or use --kind ranef")
        check_destination(kind, output)
        m = _saved_fit(model_path, data, formula)
        _draw(m, kind, output, level, width, height, specs, by, at)
        click.echo(f"wrote {output}", err=True)
        return
    _need_data(data, formula)
    fam = _family(family_name, link, nagq, ml, None, ("profile", level) if kind == "profile" else None, weights)
    check_destination(kind, output)  # before the fit: a bad path costs nothing
    m = _fit_one(_read_data(data, sep), formula, ml, weights, contrasts, progress, fam, nagq)
    if kind == "profile":
        with _Bar(progress, "profiling"):
            plot(m, kind, output, level=level, width=width, height=height)
    else:
        _draw(m, kind, output, level, width, height, specs, by, at)
    for line in m.notes():
        _warn(line)
    click.echo(f"wrote {output}", err=True)


def _draw(m, kind, output, level, width, height, specs, by, at):
    """One plot of a fit (or a saved fit): --kind emmeans through emmeans, the others from the fit."""
    from .plot import emmeans_plot, plot

    if kind != "emmeans":
        plot(m, kind, output, level=level, width=width, height=height)
        return
    from .inference.emmeans import emmeans, parse_specs

    spec_list, by_list = parse_specs(specs)
    if by:
        by_list += parse_specs(by)[0]
    res = emmeans(m, spec_list, by=by_list, at=at, level=level)
    emmeans_plot(res, output, width=width, height=height)
    for line in res.warnings:
        _warn(line)


@main.command("ranova")
@click.argument("data", metavar="DATA")
@click.argument("formula", metavar="FORMULA")
@click.option("--ml", is_flag=True, help="Fit every model by maximum likelihood instead of REML.")
@_lmm_only(", as lmerTest's ranova()")
@_FIT_SETTINGS
@_OUTPUT
def ranova_command(data, formula, ml, weights, contrasts, fmt, sep, progress):
    """Test each random-effects term by reducing it, like lmerTest's ranova(m).

    A term with random slopes loses each slope in turn ('ses in (ses | schoolid)'),
    an intercept-only term is removed ('(1 | classid)'); each reduced model is
    refitted (REML unless --ml) and compared with the full model by a
    likelihood-ratio test.

    \b
    Examples:
      mixcli ranova classroom.csv "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
      mixcli ranova classroom.csv "mathscore ~ ses + (1 | schoolid/classid2)" --format json
    """
    from .progress import FitProgress
    from .ranova import ranova
    from .render import ranova as render

    res = ranova(_read_data(data, sep), formula, reml=not ml, weights=weights, contrasts=contrasts.lower(),
                 progress=FitProgress(progress), control=_control())
    _emit(fmt, render, res, data)


@main.command("reduce")
@click.argument("data", metavar="DATA")
@click.argument("formula", metavar="FORMULA")
@click.option("--ml", is_flag=True, help="Fit every model by maximum likelihood instead of REML.")
@click.option("--fixed", is_flag=True,
              help="Then also eliminate fixed-effect terms by type III F tests (Satterthwaite), as lmerTest's step().")
@click.option("--alpha-random", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
              show_default=True, help="Drop a random-effects reduction whose ranova p-value is above this.")
@click.option("--alpha-fixed", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="With --fixed: drop a fixed term whose F-test p-value is above this.")
@_lmm_only(", as lmerTest's step()")
@_FIT_SETTINGS
@_OUTPUT
def reduce_command(data, formula, ml, fixed, alpha_random, alpha_fixed, weights, contrasts, fmt, sep, progress):
    """From a maximal model to the one the data support, step by step.

    While the fit is singular, take the simpler model mixcli proposes (a
    correlation at ±1 → '||', a zero standard deviation → drop that effect);
    then drop random effects by ranova (p > 0.1, as lmerTest's step); with
    --fixed, then fixed-effect terms by type III F tests (p > 0.05). Each step
    is printed with its reason and test, then the final model.

    \b
    Examples:
      mixcli reduce classroom.csv "mathscore ~ ses + (ses | schoolid) + (ses | classid)"
      mixcli reduce data.csv "y ~ a * b + (a | g)" --fixed --format json
    """
    from .progress import FitProgress
    from .reduce import reduce_model
    from .render import reduce as render

    table = _read_data(data, sep)
    red = reduce_model(table, formula, reml=not ml, fixed=fixed, alpha_random=alpha_random,
                       alpha_fixed=alpha_fixed, weights=weights, contrasts=contrasts.lower(),
                       progress=FitProgress(progress), control=_control())
    _emit(fmt, render, red, data)


@main.command()
@click.option("--schools", "n_schools", type=click.IntRange(min=1), default=107, show_default=True,
              help="Number of schools (each has 1-9 classes of 1-10 children, about 11 rows per school).")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed; the same seed gives the same file.")
@click.option("-o", "--output", type=click.Path(writable=True), default=None,
              help="Write to FILE (atomically) instead of standard output; with --format parquet, the "
                   "dataset's directory (new or empty).")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="parquet: a partitioned Parquet dataset in the directory -o DIR, written one partition at a "
                   "time (any size; for fit --engine dask).")
@click.option("--partitions", type=click.IntRange(min=1), default=None, metavar="K",
              help="--format parquet: the number of files (default 1 per ~million rows).")
@click.option("--class-size", type=click.FloatRange(min=1), default=None, metavar="N",
              help="Mean children per class (1 + Poisson(N - 1), e.g. 25 for whole classes); default: the "
                   "classroom study's 1-10 (mean 3.8).")
@click.option("--waves", type=click.IntRange(min=2), default=None, metavar="W",
              help="Repeated measures: each child tested W times, one row per child and wave, with columns "
                   "pupil and wave (scores growing over the waves, an AR(1) series per child).")
def simulate(n_schools, seed, output, fmt, partitions, class_size, waves):
    """Write simulated classroom data (children in classes in schools) as CSV.

    Columns: mathscore, ses, classid (unique across schools), schoolid,
    classid2 (class number within its school), pass (0/1) and absences (a
    count). mathscore follows mathscore ~ ses + (ses | schoolid) + (1 | classid)
    with parameters close to lme4's fit to the real classroom study; pass a
    logistic model with school and class intercepts, absences a Poisson one.

    \b
    Examples:
      mixcli simulate > classroom.csv
      mixcli simulate --schools 50000 --seed 7 -o big.csv
      mixcli simulate | mixcli fit - "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
      mixcli simulate | mixcli fit - "pass ~ ses + (1 | schoolid/classid)" --family binomial
      mixcli simulate --schools 500000 --format parquet --partitions 16 -o pupils/
      mixcli simulate --waves 4 | mixcli fit - "mathscore ~ ses + wave + ar1(0 + factor(wave) | pupil)"
    """
    from .output import AtomicOutput
    from .simulate import simulate_classroom, write_csv

    if fmt == "parquet":
        if waves is not None:
            raise click.UsageError("--waves writes CSV: leave out --format parquet")
        _simulate_parquet(n_schools, seed, output, partitions, class_size)
        return
    if partitions is not None:
        raise click.UsageError("--partitions splits a Parquet dataset: add --format parquet -o DIR")
    if output is not None and os.path.isdir(output):
        raise click.UsageError(f"-o {output}: is a directory; give a file name (or --format parquet for a dataset)")

    columns = simulate_classroom(n_schools=n_schools, seed=seed, class_size=class_size, waves=waves)
    with AtomicOutput(output) as target:
        write_csv(columns, target)
        target.commit()


def _simulate_parquet(n_schools, seed, output, partitions, class_size=None):
    """``simulate --format parquet``: the dataset written partition by partition, a line per file."""
    from .simulate import write_parquet_dataset

    if output is None:
        raise click.UsageError("--format parquet writes a directory of files: give it with -o DIR")
    k = partitions or max(1, round(n_schools * (11 if class_size is None else 2.95 * class_size) / 1e6))
    if k > n_schools:
        raise click.UsageError(f"--partitions {k} for {n_schools} schools: give at most one partition per school")
    tell = sys.stderr.isatty()
    try:
        rows = write_parquet_dataset(n_schools, seed, output, k, progress=(
            lambda i, total, rows: click.echo(f"mixcli: wrote part {i}/{total} ({rows} rows)", err=True))
            if tell else None, class_size=class_size)
    except FileExistsError as err:
        raise click.UsageError(f"-o {output}: {err}; give a new directory") from None
    except OSError as err:
        from .errors import DataError

        raise DataError(f"cannot write '{output}': {err.strerror or err}") from None
    if tell:
        click.echo(f"mixcli: {rows} rows in {k} files in {output}", err=True)


@main.command("nest")
@click.argument("data", metavar="DATA")
@click.argument("specs", nargs=-1, required=True, metavar="OUTER:INNER...")
@click.option("--name", "names", multiple=True, metavar="NAME",
              help="Name of the new column; give it once per spec, in order. Default: OUTER_INNER.")
@click.option("-o", "--output", metavar="FILE",
              help="Write to FILE instead of standard output. FILE may be DATA itself: it is "
                   "replaced only once the whole output is written.")
@click.option("--check", is_flag=True,
              help="Write no data; report whether each INNER column is already a unique ID across OUTER.")
@click.option("--sep", metavar="SEP",
              help="Field separator (default: tab for .tsv/.tab, else comma); '\\t' means tab.")
def nest_command(data, specs, names, output, check, sep):
    """Add a unique ID column for groups numbered within other groups.

    Classes numbered 1, 2, 3 within every school are different classes, but
    (1 | classid2) would pool all "class 1"s. For each OUTER:INNER spec this
    writes DATA with one new last column, OUTER_INNER, holding "<outer>:<inner>"
    as written in the file (7:2 = class 2 of school 7), empty where either is
    missing. Every original byte, quote, line ending and the row order are
    kept. The number of groups made goes to stderr.

    \b
    Examples:
      mixcli nest classroom.csv schoolid:classid2 > with_ids.csv
      mixcli nest classroom.csv schoolid:classid2 --name class -o classroom.csv
      mixcli nest --check classroom.csv schoolid:classid2 schoolid:classid
      mixcli nest - schoolid:classid2 < classroom.csv
    """
    from .errors import UsageError
    from .nest import check_report, nest, summary_lines

    if check and output is not None:
        raise UsageError("--check writes no data; leave out -o")
    stats = nest(data, specs, names, output, sep=sep, check=check)
    if check:
        click.echo(check_report(stats, data))
        return
    for line in summary_lines(stats):
        click.echo(line, err=True)


def _assignments(values, flag: str) -> dict:
    """NAME=VALUE options (--fixef ses=2, --sd "classid:schoolid=3") as a dict of the values as typed
    (checked to be numbers), so that messages quote them as the user wrote them."""
    out = {}
    for text in values:
        name, eq, value = text.rpartition("=")
        name = name.strip()
        try:
            number = float(value)
        except ValueError:
            number = None
        if not eq or not name or number is None:
            raise click.UsageError(f"{flag} {text}: give NAME=VALUE with a number, e.g. {flag} "
                                   f"{'ses=2' if flag == '--fixef' else 'schoolid=10'}")
        out[name] = value.strip()
    return out


def _sizes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()] or None
    except ValueError:
        raise click.UsageError(f"--sizes {text}: give whole numbers separated by commas, e.g. --sizes 10,20,40") from None


@main.command("power")
@click.argument("args", nargs=-1, required=True, metavar="DATA FORMULA")
@click.option("--test", "test", required=True, metavar="TERM",
              help="The term to test: a fixed-effect term as the anova table names it (ses, treat, x:z), or a "
                   "random-effects term as ranova names it ('(1 | classid)', 'ses in (ses | schoolid)').")
@click.option("--fixef", multiple=True, metavar="NAME=VALUE",
              help="Replace a fixed effect of the pilot fit (NAME as in the fixed-effects table); repeatable.")
@click.option("--sd", multiple=True, metavar="GROUP[|EFFECT]=VALUE",
              help="Replace a random effect's SD: GROUP as lme4 prints it (schoolid, classid:schoolid) for its "
                   "intercept, GROUP|EFFECT for another effect; repeatable.")
@click.option("--cor", multiple=True, metavar="GROUP|E1,E2=VALUE",
              help="Replace the correlation of two effects of one group; repeatable.")
@click.option("--sigma", type=float, default=None, metavar="VALUE", help="Replace the residual SD.")
@click.option("--along", metavar="GROUP",
              help="Vary the number of levels of the grouping column GROUP (--sizes): new levels copy existing "
                   "ones with their rows (simr's extend(along=)), fewer keep the first ones.")
@click.option("--within", metavar="GROUP",
              help="Vary the number of rows per level of GROUP (--sizes): rows copied in turn, or the first ones kept.")
@click.option("--sizes", metavar="N1,N2,...", help="The design sizes of the power curve, with --along or --within.")
@click.option("--design", metavar="SPEC",
              help="Build the data instead of reading a pilot: comma-separated items NAME=K (a grouping column "
                   "with K levels), NAME=K/OUTER (K per level of OUTER), n=K (rows per combination), "
                   "NAME=half/GROUP (0/1 on every other level of GROUP), NAME=normal[/GROUP]. Every SD (--sd) "
                   "and --sigma must be given; fixed effects not given are 0.")
@click.option("--method", type=click.Choice(["satterthwaite", "kr", "lrt", "wald"], case_sensitive=False),
              default=None,
              help="satterthwaite (default: lmerTest's t, or F for a term of several columns), kr "
                   "(Kenward-Roger), lrt (ML fits with and without the term); wald (default for a GLMM). A "
                   "random-effects term is always tested by the likelihood ratio with the boundary mixture.")
@click.option("--nsim", type=click.IntRange(min=1), default=1000, show_default=True, metavar="N",
              help="Simulations per size.")
@click.option("--seed", type=click.IntRange(min=0), default=None, metavar="S",
              help="Random seed: the same seed gives the same result on any number of CPUs (default: a fresh "
                   "seed, reported).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Significance level of the test.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, metavar="J",
              help="Processes (default: all available CPUs); results do not depend on it.")
@click.option("--plot", "plot_path", metavar="FILE",
              help="Also draw the power curve with its 95% band, the 80% line and alpha: .png, .svg or .pdf.")
@_GLMM_OPTIONS
@_CONTRASTS
@_OUTPUT
def power_command(args, test, fixef, sd, cor, sigma, along, within, sizes, design, method, nsim, seed, alpha, jobs,
                  plot_path, family_name, link, nagq, contrasts, fmt, sep, progress):
    """Power to detect a term, by simulation (like R's simr).

    Responses are simulated from the model (the pilot fit of FORMULA on DATA,
    with any parameter replaced), the model is refitted to each, TERM is
    tested, and the rejections are counted. Each size reports the power, its
    95% Clopper-Pearson interval, and how many refits failed (counted as not
    rejected) or were singular. With --design, give FORMULA only.

    \b
    Examples:
      mixcli power classroom.csv "mathscore ~ ses + (ses | schoolid) + (1 | classid)" \\
          --test ses --fixef ses=4 --nsim 1000 --seed 1
      mixcli power classroom.csv "mathscore ~ ses + (1 | schoolid)" --test ses --fixef ses=2 \\
          --along schoolid --sizes 20,40,80,160 --plot curve.png
      mixcli power "y ~ treat + (1 | school) + (1 | class)" --test treat \\
          --design "school=40, class=4/school, n=25, treat=half/school" \\
          --fixef treat=0.2 --sd school=0.3 --sd class=0.2 --sigma 0.9 --along school --sizes 20,40,60
      mixcli power classroom.csv "mathscore ~ ses + (1 | schoolid) + (1 | classid)" --test "(1 | classid)"
      mixcli power pupils.csv "pass ~ ses + (1 | schoolid)" --family binomial --test ses --fixef ses=0.3
    """
    from .errors import UsageError
    from .power_analysis import power

    if design is not None:
        if len(args) != 1:
            raise UsageError("--design builds the data: give FORMULA only, not DATA FORMULA")
        data, formula = None, args[0]
    elif len(args) != 2:
        raise UsageError("give DATA FORMULA (or FORMULA with --design)")
    else:
        data, formula = args
    if plot_path is not None:
        from .plot import POWER, check_destination

        check_destination(POWER, plot_path)  # before the simulations: a bad path costs nothing
    fam = _family(family_name, link, nagq, False, None, None, None)
    table = _read_data(data, sep) if data is not None else None
    with _Bar(progress, "simulating") as bar:
        res = power(table, formula, test, fixef=_assignments(fixef, "--fixef"), sd=_assignments(sd, "--sd"),
                    cor=_assignments(cor, "--cor"), sigma=sigma, along=along, within=within, sizes=_sizes(sizes),
                    design=design, method=method.lower() if method else None, family=fam, nagq=nagq, nsim=nsim,
                    seed=seed, alpha=alpha, contrasts=contrasts.lower(), workers=jobs, progress=bar.update)
    from .render import power as render

    _emit(fmt, render, res, data if data is not None else f"simulated design: {design}")
    if plot_path is not None:
        from .plot import power_curve

        power_curve(res, plot_path)
        click.echo(f"wrote {plot_path}", err=True)


def entry(**kwargs):
    """The ``mixcli`` command (and ``python -m mixcli``): ``main``, and after Ctrl-C an exit
    without the interpreter's teardown. pyarrow's worker threads may still be alive then, and
    tearing down its thread pool aborted the process now and then (exit -6, 'terminate called
    without an active exception': 2 runs in 40 under load). Everything that had to be undone
    (temporary files) was undone while the interrupt unwound; the streams are flushed."""
    try:
        main(**kwargs)
    except SystemExit as done:
        if done.code == 130:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(130)
        raise


if __name__ == "__main__":  # pragma: no cover
    entry()
