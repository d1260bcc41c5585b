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


if __name__ == "__main__":  # pragma: no cover
    main()
