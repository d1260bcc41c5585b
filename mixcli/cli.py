"""The ``mixcli`` command line: parse options, call the library, hand results to a renderer.

Heavy imports (numpy, the engine, rich) happen inside the commands so that
``mixcli --help`` starts instantly. Results go to stdout; warnings, progress
and errors go to stderr. Exit codes: 0 success, 1 data or fit error,
2 usage or formula error, 130 interrupted.
"""

from __future__ import annotations

import sys

import click

from .errors import MixcliError


class _Group(click.Group):
    """Turns mixcli's own errors into one line on stderr and the right exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MixcliError as err:
            click.echo(f"mixcli: error: {err}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("mixcli: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mixcli")
def main():
    """Fit and compare linear mixed-effects models written as lme4 formulas.

    \b
    Examples:
      mixcli fit data.csv "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
      mixcli compare data.csv "y ~ x + (1 | g)" "y ~ x + (x | g)"
      mixcli nest data.csv schoolid:classid2 > with_ids.csv

    DATA is a CSV/TSV path, or - for standard input.
    """


@main.command()
@click.option("--schools", "n_schools", type=click.IntRange(min=1), default=107, show_default=True,
              help="Number of schools (each has 1-9 classes of 1-10 children, about 11 rows per school).")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed; the same seed gives the same file.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to FILE (atomically) instead of standard output.")
def simulate(n_schools, seed, output):
    """Write simulated classroom data (children in classes in schools) as CSV.

    Columns: mathscore, ses, classid (unique across schools), schoolid,
    classid2 (class number within its school). The data follow
    mathscore ~ ses + (ses | schoolid) + (1 | classid) with parameters close
    to lme4's fit to the real classroom study.

    \b
    Examples:
      mixcli simulate > classroom.csv
      mixcli simulate --schools 50000 --seed 7 -o big.csv
      mixcli simulate | mixcli fit - "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
    """
    import os
    import tempfile

    from .errors import DataError
    from .simulate import simulate_classroom, write_csv

    columns = simulate_classroom(n_schools=n_schools, seed=seed)
    if output is None:
        write_csv(columns, getattr(sys.stdout, "buffer", sys.stdout))
        return
    target = os.path.abspath(output)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mixcli-", suffix=".tmp", dir=os.path.dirname(target))
    except OSError as err:
        raise DataError(f"cannot write {output}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "wb") as fh:
            write_csv(columns, fh)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise DataError(f"cannot write {output}: {err.strerror or err}") from err
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
