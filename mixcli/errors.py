"""The errors mixcli reports to users, and how a message names one of the user's options.

Every problem a user can cause ends in one of these; the CLI prints its message
as one line on stderr and exits with its ``exit_code``. Anything else escaping
to the top level is a bug in mixcli.

The library speaks Python: a message that points at an option names it by the
argument a Python caller passes (``nagq``, ``nagq=1``). It is written with
``option("nagq", 1)``, a marker that ``render`` turns into that text; the command
line installs its own spelling (``use_option_style``: ``--nagq 1``), so that its
users read the flags they typed. Notes drawn from the data go through ``render``
the same way.
"""

from __future__ import annotations

import re
from typing import Callable

_MARK = "\x1f"  # (a control character no message or data label contains)
_OPTION = re.compile(f"{_MARK}([^{_MARK}]*){_MARK}")


def option(name: str, value=None) -> str:
    """A reference to the library argument ``name`` (given ``value``) inside a message."""
    return f"{_MARK}{name}{_MARK}" if value is None else f"{_MARK}{name}={value}{_MARK}"


def python_style(name: str, value: str | None) -> str:
    return name if value is None else f"{name}={value}"


_style: Callable[[str, str | None], str] = python_style


def use_option_style(style: Callable[[str, str | None], str]) -> Callable[[str, str | None], str]:
    """How ``render`` spells an option from now on (the command line's flags, for the duration of
    a command; default Python's). Returns the style it replaces, to be put back."""
    global _style
    previous, _style = _style, style
    return previous


def render(text: str) -> str:
    """``text`` with its option markers spelled in the current style."""
    if _MARK not in text:
        return text

    def spell(match: re.Match) -> str:
        name, eq, value = match.group(1).partition("=")
        return _style(name, value if eq else None)

    return _OPTION.sub(spell, text)


class MixcliError(Exception):
    """Base class: a problem with the user's input or model, not a bug."""

    exit_code = 1

    def __str__(self) -> str:
        return render(super().__str__())


class UsageError(MixcliError):
    """Bad command-line usage or a malformed formula (exit code 2)."""

    exit_code = 2


class FormulaError(UsageError):
    """A formula that cannot be parsed or does not fit the data's columns.

    ``position`` is the 0-based offset in ``formula`` of the offending text, or
    None when the problem has no single place (an empty right-hand side, say).
    The message reads ``<what> at column <position+1> in formula: <formula>``,
    followed by ``; <hint>`` when there is a fix to suggest.
    """

    def __init__(self, message: str, formula: str = "", position: int | None = None, hint: str = ""):
        self.reason = message
        self.formula = formula
        self.position = position
        self.hint = hint
        text = message
        if position is not None:
            text += f" at column {position + 1}"
        if formula:
            text += f": {formula}" if text.endswith(" in formula") else f" in formula: {formula}"
        if hint:
            text += f"; {hint}"
        super().__init__(text)


class DataError(MixcliError):
    """The data cannot be read, or cannot support the requested model (exit 1)."""


class FitError(MixcliError):
    """The model could not be fitted at all (exit 1)."""
