"""The errors mixcli reports to users.

Every problem a user can cause ends in one of these; the CLI prints its message
as one line on stderr and exits with its ``exit_code``. Anything else escaping
to the top level is a bug in mixcli.
"""

from __future__ import annotations


class MixcliError(Exception):
    """Base class: a problem with the user's input or model, not a bug."""

    exit_code = 1


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
