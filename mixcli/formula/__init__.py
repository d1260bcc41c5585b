"""Model formulas in lme4's syntax: ``y ~ x + (x | g)``.

    >>> from mixcli.formula import parse_formula
    >>> f = parse_formula("mathscore ~ ses + (ses | schoolid) + (1 | classid)")
    >>> [term_label(t) for t in f.terms], [r.label for r in f.random]
    (['ses'], ['ses | schoolid', '1 | classid'])

Pipeline: ``tokens`` (lexer) -> ``parser`` (syntax tree with R's precedence) ->
``terms`` (R's expansion of a right-hand side into terms) and ``random``
(lme4's findbars with ``||`` and ``/`` expanded) -> ``Formula``.
``evaluate`` computes expressions over a Table (it imports numpy, so it is not
imported here: this package must stay light for ``mixcli --help``).
"""

from __future__ import annotations

from .collation import r_sort_key
from .exprs import FUNCTIONS, BinOp, Call, Expr, Num, Paren, Term, UnaryOp, Var, term_label
from .formula import Formula, parse_formula
from .random import RandomTerm
from .terms import Occurrence

__all__ = [
    "FUNCTIONS",
    "BinOp",
    "Call",
    "Expr",
    "Formula",
    "Num",
    "Occurrence",
    "Paren",
    "RandomTerm",
    "Term",
    "UnaryOp",
    "Var",
    "parse_formula",
    "r_sort_key",
    "term_label",
]
