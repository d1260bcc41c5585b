"""Expressions: the "variables" of a model formula, in R's sense.

A variable is a data column (``Var``), a supported function of an expression
(``Call``: ``log(x)``, ``scale(z)``, ``I(ses^2)``), or, inside such a call,
arithmetic (``BinOp``, ``UnaryOp``, ``Num``, ``Paren``). All are frozen and
hashable; two expressions are equal exactly when R would deparse them alike,
which is how R tells variables apart (``log(x)`` and ``log( x )`` are one
variable, ``log((x))`` is another).

Every expression has a ``label``: its text as R's ``deparse()`` prints it. Labels
become term labels and coefficient names (``I(ses^2)``, `` `math score` ``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .tokens import RESERVED

#: Functions a formula may use, with their number of data arguments (the basis and contrast
#: functions also take options: see OPTIONS).
FUNCTIONS: dict[str, int] = {
    "C": 1,
    "I": 1,
    "abs": 1,
    "as.factor": 1,
    "as.numeric": 1,
    "bs": 1,
    "cbind": 2,
    "exp": 1,
    "factor": 1,
    "log": 1,
    "log10": 1,
    "log2": 1,
    "ns": 1,
    "offset": 1,
    "poly": 1,
    "scale": 1,
    "sqrt": 1,
}
#: The options of the functions that take them: the names R's own functions give them, in
#: the order R matches them by position after the data argument (poly's degree is R's
#: ``...``, its raw only by name).
OPTIONS: dict[str, tuple[tuple[str, ...], frozenset]] = {
    "poly": (("degree",), frozenset({"degree", "raw"})),
    "ns": (("df",), frozenset({"df", "intercept"})),
    "bs": (("df",), frozenset({"df", "degree", "intercept"})),
    "C": (("contr",), frozenset({"contr"})),
}
#: Functions whose value is categorical (a factor, coded by contrasts in a model matrix).
CATEGORICAL = frozenset({"factor", "as.factor", "C"})
#: Functions whose value is a matrix: one model-matrix column per basis function.
MATRIX = frozenset({"poly", "ns", "bs"})
#: Functions whose argument may be a text column.
ANY_ARGUMENT = CATEGORICAL

# Operators R's deparse writes with spaces around them; the others (/ ^ :) without.
_SPACED = {"+", "-", "*", "~", "|", "||", "%in%"}


def is_syntactic(name: str) -> bool:
    """Whether R would print ``name`` without backticks (R's notion of a valid name)."""
    if not name or name in RESERVED or name == "..." or re.fullmatch(r"\.\.[0-9]+", name):
        return False
    first = name[0]
    if not (first.isalpha() or first == "."):
        return False
    if first == "." and len(name) > 1 and name[1].isdigit():
        return False
    return all(ch.isalnum() or ch in "._" for ch in name)


def quote_name(name: str) -> str:
    """``name`` as R deparses a symbol inside an expression: backticks if not syntactic."""
    return name if is_syntactic(name) else f"`{name}`"


def format_number(value: float) -> str:
    """A non-negative number as R's ``deparse()`` prints it (15 significant digits,
    fixed or scientific notation, whichever is narrower; ties go to fixed)."""
    if value == 0:
        return "0"
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Inf"
    sig15 = float(f"{value:.14e}")
    nsig = 15
    for digits in range(1, 16):
        if float(f"{value:.{digits - 1}e}") == sig15:
            nsig = digits
            break
    sci = f"{value:.{nsig - 1}e}"
    mantissa, exp_text = sci.split("e")
    e10 = int(exp_text)
    # sci: mantissa + "e" + sign + at least two exponent digits
    sci_text = f"{mantissa}e{'-' if e10 < 0 else '+'}{abs(e10):02d}"
    decimals = max(0, nsig - e10 - 1)
    left = max(1, e10 + 1)
    fixed_width = left + (decimals + 1 if decimals else 0)
    if fixed_width <= len(sci_text):
        return f"{value:.{decimals}f}"
    return sci_text


class Expr:
    """Base class of expressions (for isinstance checks and typing)."""

    __slots__ = ()
    label: str

    def __str__(self) -> str:
        return self.label

    def columns(self) -> list[str]:
        """Data columns the expression uses, in order of appearance."""
        out: list[str] = []
        _collect(self, out)
        return out


def _collect(expr: "Expr", out: list[str]) -> None:
    if isinstance(expr, Var):
        if expr.name not in out:
            out.append(expr.name)
    elif isinstance(expr, Call):
        for a in expr.args:
            _collect(a, out)
    elif isinstance(expr, BinOp):
        _collect(expr.left, out)
        _collect(expr.right, out)
    elif isinstance(expr, (UnaryOp, Paren)):
        _collect(expr.operand, out)


@dataclass(frozen=True)
class Var(Expr):
    """A data column, by its name (without backticks)."""

    name: str

    @property
    def label(self) -> str:
        return quote_name(self.name)


@dataclass(frozen=True)
class Num(Expr):
    value: float

    @property
    def label(self) -> str:
        return format_number(self.value)


@dataclass(frozen=True)
class UnaryOp(Expr):
    """Unary minus (``op == "-"``) or plus."""

    op: str
    operand: Expr

    @property
    def label(self) -> str:
        return f"{self.op}{self.operand.label}"


@dataclass(frozen=True)
class BinOp(Expr):
    """Arithmetic: ``op`` is one of ``+ - * / ^``."""

    op: str
    left: Expr
    right: Expr

    @property
    def label(self) -> str:
        sep = f" {self.op} " if self.op in _SPACED else self.op
        return f"{self.left.label}{sep}{self.right.label}"


@dataclass(frozen=True)
class Paren(Expr):
    """Parentheses the user wrote inside an expression; R keeps them in labels."""

    operand: Expr

    @property
    def label(self) -> str:
        return f"({self.operand.label})"


@dataclass(frozen=True)
class Call(Expr):
    """A call of a supported function; ``label`` is R's deparse, e.g. ``I(ses^2)`` or
    ``ns(x, df = 3)``. ``args`` are the data arguments; ``options`` the others, resolved by
    name (``(("df", 3),)``), as in R's matching of the call."""

    func: str
    args: tuple[Expr, ...]
    label: str = ""
    options: tuple[tuple[str, object], ...] = ()

    def option(self, name: str, default=None):
        return dict(self.options).get(name, default)

    def __post_init__(self):
        if not self.label:
            text = f"{self.func}({', '.join(a.label for a in self.args)})"
            object.__setattr__(self, "label", text)


# A term: an interaction of variables ("factors" in R's sense), ordered as R orders them.
Term = tuple[Expr, ...]


def term_label(term: Term) -> str:
    """R's term label: the variables' labels joined by ``:`` (``"recipe:temp"``)."""
    return ":".join(e.label for e in term)
