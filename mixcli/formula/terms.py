"""Give a syntax tree its meaning: expressions, and R's expansion of a model
right-hand side into terms.

``TermEncoder`` follows R's ``terms.formula`` (``EncodeVars`` in R's model.c):
every term is a set of variables, kept as a bit mask over the variables in order
of first appearance; the operators combine lists of terms:

    a + b       terms of a, then those of b (repeats dropped)
    a - b       terms of a that are not terms of b; ``- 1`` drops the intercept
    a:b         every term of a joined with every term of b
    a*b         a + b + a:b
    a/b         a + (all variables of a joined with each term of b)
    a %in% b    each term of a joined with all variables of b
    (a+b)^n     all interactions up to order n
    0, 1        remove / add the intercept (``- 0`` adds it back)

and the result is sorted by degree, stably. A term's variables are listed in
order of first appearance in the formula, which gives labels like ``b:a``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import FormulaError
from .exprs import ANY_ARGUMENT, FUNCTIONS, OPTIONS, BinOp, Call, Expr, Num, Paren, Term, UnaryOp, Var
from .parser import Node, deparse

_ARITHMETIC = {"+", "-", "*", "/", "^"}


@dataclass(frozen=True)
class Occurrence:
    """Where a data column is named in the formula, and in what role:
    ``response``, ``value`` (inside a function or arithmetic: must be numeric),
    ``term`` (a bare model term: numeric or a factor), ``group`` (grouping factor)."""

    name: str
    position: int
    role: str


#: glmmTMB's covariance structures of a random-effects term; ``us`` is lme4's (unstructured).
STRUCTURES = ("us", "diag", "cs", "ar1")


def is_bar(node: Node) -> bool:
    return node.kind == "binary" and node.op in ("|", "||")


def _supported() -> str:
    return ", ".join(sorted(FUNCTIONS, key=str.lower))


def to_expr(node: Node, text: str, context: str, occurrences: list[Occurrence] | None = None, role="value") -> Expr:
    """Convert a value expression (response, function argument) to an ``Expr``.

    ``context`` names where we are, for error messages ("the response", "log()").
    """
    k = node.kind
    if k in ("bool", "named"):
        raise _option_misplaced(node, text)
    if k == "name":
        if occurrences is not None:
            occurrences.append(Occurrence(node.value, node.start, role))
        return Var(node.value)
    if k == "num":
        return Num(float(node.value))
    if k == "paren":
        return Paren(to_expr(node.args[0], text, context, occurrences, role))
    if k == "unary":
        if node.op == "~":
            raise FormulaError(f"'~' cannot be used inside {context}", text, node.op_pos)
        return UnaryOp(node.op, to_expr(node.args[0], text, context, occurrences, role))
    if k == "call":
        return call_expr(node, text, occurrences, response=role == "response" and context == "the response")
    # binary
    if node.op not in _ARITHMETIC:
        if node.op == "~":
            raise FormulaError("unexpected '~'", text, node.op_pos)
        raise FormulaError(f"'{node.op}' cannot be used inside {context}", text, node.op_pos)
    left = to_expr(node.args[0], text, context, occurrences, role)
    right = to_expr(node.args[1], text, context, occurrences, role)
    return BinOp(node.op, left, right)


def _option_misplaced(node: Node, text: str) -> FormulaError:
    what = node.text if node.kind == "bool" else f"'{node.value} ='"
    return FormulaError(f"{what} can only give an option of poly(), ns(), bs() or C(), as in "
                        "poly(x, 2, raw = TRUE)", text, node.start)


def call_expr(node: Node, text: str, occurrences: list[Occurrence] | None, response: bool = False) -> Call:
    func = node.value
    if func not in FUNCTIONS:
        raise FormulaError(f"unknown function '{func}'; supported: {_supported()}", text, node.op_pos)
    if func == "cbind" and not response:
        raise FormulaError("cbind() belongs in the response, as in cbind(successes, failures) ~ x + (1 | g)",
                           text, node.op_pos)
    if func in OPTIONS:
        return _call_with_options(node, text, occurrences)
    nargs = FUNCTIONS[func]
    if any(a.kind == "named" for a in node.args):
        named = next(a for a in node.args if a.kind == "named")
        raise FormulaError(f"{func}() takes no named arguments ('{named.value} =')", text, named.op_pos)
    if len(node.args) != nargs:
        raise FormulaError(
            f"{func}() takes {'one argument' if nargs == 1 else f'{nargs} arguments'}, got {len(node.args)}",
            text,
            node.op_pos,
        )
    role = "term" if func in ANY_ARGUMENT else "value"
    args = tuple(to_expr(a, text, f"{func}()", occurrences, role) for a in node.args)
    return Call(func, args)


# C()'s contrasts, by the names R accepts (the function or its short name)
CONTRASTS = {"treatment": "treatment", "contr.treatment": "treatment", "sum": "sum", "contr.sum": "sum",
             "helmert": "helmert", "contr.helmert": "helmert"}
_EXAMPLES = {"poly": "poly(x, 2) or poly(x, 2, raw = TRUE)", "ns": "ns(x, df = 3)", "bs": "bs(x, df = 4)",
             "C": "C(f, sum)"}


def _call_with_options(node: Node, text: str, occurrences: list[Occurrence] | None) -> Call:
    """poly(), ns(), bs() and C(): the data argument, then options matched as R matches them
    (by name, else by position), each checked here so that a wrong one is named in the formula."""
    func = node.value
    positional, allowed = OPTIONS[func]
    example = _EXAMPLES[func]
    data = [a for a in node.args if a.kind != "named"]
    if not data or node.args[0].kind == "named":
        raise FormulaError(f"{func}() needs a variable first, as in {example}", text, node.op_pos)
    values: dict[str, Node] = {}
    for i, a in enumerate(data[1:]):
        if i >= len(positional):
            raise FormulaError(f"{func}() takes at most {len(positional) + 1} unnamed arguments; "
                               f"name the others, as in {example}", text, a.start)
        values[positional[i]] = a
    for a in node.args:
        if a.kind != "named":
            continue
        if a.value not in allowed:
            hint = " (knots are placed at quantiles: give df)" if a.value in ("knots", "Boundary.knots") else ""
            raise FormulaError(f"{func}() has no option '{a.value}' here{hint}; supported: "
                               f"{', '.join(sorted(allowed))}", text, a.op_pos)
        if a.value in values:
            raise FormulaError(f"{func}(): '{a.value}' is given twice", text, a.op_pos)
        values[a.value] = a.args[0]
    options = []
    for name, value in values.items():
        options.append((name, _option_value(func, name, value, text, example)))
    resolved = dict(options)
    if func == "poly" and "degree" not in resolved:
        raise FormulaError(f"poly() needs a degree, as in {example}", text, node.op_pos)
    if func in ("ns", "bs") and "df" not in resolved:
        raise FormulaError(f"{func}() needs its degrees of freedom, as in {example}", text, node.op_pos)
    if func == "C" and "contr" not in resolved:
        raise FormulaError(f"C() needs the contrasts, as in {example} (sum, helmert or treatment)", text,
                           node.op_pos)
    if func == "bs" and resolved["df"] < resolved.get("degree", 3):
        raise FormulaError(f"bs(): df = {resolved['df']} is less than the degree ({resolved.get('degree', 3)}); "
                           f"give df of at least the degree", text, node.op_pos)
    role = "term" if func in ANY_ARGUMENT else "value"
    arg = to_expr(data[0], text, f"{func}()", occurrences, role)
    return Call(func, (arg,), label=deparse(node), options=tuple(sorted(options)))


def _option_value(func: str, name: str, node: Node, text: str, example: str):
    if name in ("raw", "intercept"):
        if node.kind == "bool":
            return bool(node.value)
        if node.kind == "name" and node.value in ("T", "F"):
            return node.value == "T"
        raise FormulaError(f"{func}(): {name} must be TRUE or FALSE", text, node.start)
    if name == "contr":
        key = node.value if node.kind in ("name", "str") else None
        if key not in CONTRASTS:
            raise FormulaError(f"C(): unknown contrasts '{deparse(node) if node.kind != 'str' else node.value}'; "
                               "use sum, helmert or treatment, as in C(f, sum)", text, node.start)
        return CONTRASTS[key]
    # degree, df: a whole number of at least 1
    if node.kind != "num" or node.value != int(node.value) or node.value < 1:
        shown = deparse(node) if node.kind != "str" else node.text
        raise FormulaError(f"{func}(): {name} must be a whole number of at least 1, not {shown}; "
                           f"as in {example}", text, node.start)
    return int(node.value)


def _trim(terms: list[int]) -> list[int]:
    """Drop empty and repeated terms, keeping first occurrences (R's TrimRepeats)."""
    out: list[int] = []
    seen: set[int] = set()
    for t in terms:
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    return out


def _interact(left: list[int], right: list[int]) -> list[int]:
    return _trim([a | b for a in left for b in right])


def _union(terms: list[int]) -> int:
    out = 0
    for t in terms:
        out |= t
    return out


class TermEncoder:
    """Expands one model right-hand side (the fixed part, or a random term's
    left-hand side) into R's terms.

    ``on_random(paren_node)`` is called for each parenthesised bar that is added to
    the model (``+ (x | g)``); it is None where bars are not allowed. ``bar`` is
    the enclosing bar when encoding a bar's left-hand side (for the nested-bar error).
    ``frame`` collects every variable met, removed ones included, with its position:
    the variables R's ``model.frame`` evaluates.
    """

    def __init__(
        self,
        text: str,
        occurrences: list[Occurrence],
        on_random: Callable[[Node], None] | None = None,
        bar: Node | None = None,
        frame: dict[Expr, int] | None = None,
    ):
        self.text = text
        self.occurrences = occurrences
        self.on_random = on_random
        self.bar = bar
        self.variables: list[Expr] = []
        self._index: dict[Expr, int] = {}
        self.positions: dict[Expr, int] = {}  # first place each variable is a term
        # every variable of the whole formula -> first position (R's model frame)
        self.frame: dict[Expr, int] = frame if frame is not None else {}
        self.intercept = True
        self._parity = True
        self.offsets: list[Expr] = []  # offset(...) terms: added to the linear predictor, not model terms

    # -- variables -------------------------------------------------------------
    def register(self, expr: Expr, position: int | None = None) -> int:
        """The bit of ``expr``, adding it to the variables in order of first appearance."""
        if position is not None:
            self.positions.setdefault(expr, position)
            self.frame.setdefault(expr, position)
        if expr not in self._index:
            self._index[expr] = len(self.variables)
            self.variables.append(expr)
        return 1 << self._index[expr]

    def term(self, bits: int) -> Term:
        return tuple(v for i, v in enumerate(self.variables) if bits >> i & 1)

    def finish(self, bits: list[int]) -> tuple[Term, ...]:
        """Sort by degree (stable) and convert masks to tuples of expressions."""
        ordered = sorted(_trim(bits), key=lambda t: bin(t).count("1"))
        return tuple(self.term(t) for t in ordered)

    # -- errors ----------------------------------------------------------------
    def error(self, message: str, pos: int | None) -> FormulaError:
        return FormulaError(message, self.text, pos)

    def _bar_error(self, bar: Node) -> FormulaError:
        if self.bar is not None:
            return self.error("random-effects term inside another random-effects term", bar.op_pos)
        return self.error(f"'{bar.op}' must be inside parentheses, as in (1 {bar.op} group)", bar.op_pos)

    # -- encoding --------------------------------------------------------------
    def encode(self, node: Node, top: bool = True, additive: bool = True) -> list[int]:
        """Terms of ``node`` as bit masks.

        ``top``: reached from the root through ``+`` (and the left of ``-``) only,
        where a random-effects term may be added. ``additive``: reached through
        ``+``/``-``/parentheses only, where ``0`` and ``1`` set the intercept.
        """
        k = node.kind
        if k == "paren":
            inner = node.args[0]
            if is_bar(inner):
                if self.bar is not None or self.on_random is None:
                    raise self._bar_error(inner)
                if not top:
                    raise self.error(
                        "a random-effects term can only be added to the model with '+'", node.start
                    )
                self.on_random(node)
                return []
            return self.encode(inner, top, additive)
        if k == "name":
            self.occurrences.append(Occurrence(node.value, node.start, "term"))
            return [self.register(Var(node.value), node.start)]
        if k == "call" and node.value in STRUCTURES and len(node.args) == 1 and is_bar(node.args[0]):
            # glmmTMB's structured covariances: diag(x | g), cs(x | g), ar1(0 + factor(t) | id), us(x | g)
            if self.bar is not None or self.on_random is None:
                raise self._bar_error(node.args[0])
            if not top:
                raise self.error("a random-effects term can only be added to the model with '+'", node.start)
            self.on_random(node)
            return []
        if k == "call":
            expr = call_expr(node, self.text, self.occurrences)
            if expr.func == "offset":
                if not (top and additive) or self.on_random is None or not self._parity:
                    raise self.error("offset() can only be added to the fixed part of the model, as in "
                                     "y ~ x + offset(log(exposure)) + (1 | g)", node.start)
                self.offsets.append(expr.args[0])
                self.frame.setdefault(expr.args[0], node.start)
                return []
            return [self.register(expr, node.start)]
        if k == "num":
            return self._number(node, additive)
        if k in ("bool", "named"):
            raise _option_misplaced(node, self.text)
        if k == "unary":
            if node.op == "~":
                raise self.error("unexpected '~'", node.op_pos)
            if node.op == "+":
                return self.encode(node.args[0], False, additive)
            # unary minus removes its terms from nothing: only its effect on the
            # intercept remains (R: y ~ -1 + x has no intercept; y ~ -x + z is y ~ z)
            self._parity = not self._parity
            self.encode(node.args[0], False, additive)
            self._parity = not self._parity
            return []
        return self._binary(node, top, additive)

    def _number(self, node: Node, additive: bool) -> list[int]:
        value, text = node.value, node.text
        if value not in (0.0, 1.0):
            raise self.error(
                f"number {text} cannot be a model term; write arithmetic inside I(), as in I(x * {text})",
                node.start,
            )
        if not additive:
            raise self.error(f"{text} can only be added or removed (+ {text}, - {text})", node.start)
        # 1 adds the intercept and 0 removes it; under a minus it is the other way round.
        self.intercept = (value == 1.0) == self._parity
        return []

    def _binary(self, node: Node, top: bool, additive: bool) -> list[int]:
        op = node.op
        left_node, right_node = node.args
        if op in ("|", "||"):
            raise self._bar_error(node)
        if op == "~":
            raise self.error("unexpected '~'", node.op_pos)
        if op == "+":
            return _trim(self.encode(left_node, top, additive) + self.encode(right_node, top, additive))
        if op == "-":
            left = self.encode(left_node, top, True)
            self._parity = not self._parity
            right = self.encode(right_node, False, True)
            self._parity = not self._parity
            return [t for t in left if t not in set(right)]
        if op == "^":
            left = self.encode(left_node, False, False)
            return self._power(left, right_node)
        left = self.encode(left_node, False, False)
        right = self.encode(right_node, False, False)
        if op == ":":
            return _interact(left, right)
        if not left and op in ("*", "/"):
            # R 4.2's CrossTerms/NestTerms append to the left list in place, so
            # an empty left side makes the whole product empty: (a - a) * b is empty
            return []
        if op == "*":
            return _trim(left + right + _interact(left, right))
        if op == "/":
            return _trim(left + _interact([_union(left)], right))
        if op == "%in%":
            return _interact(left, [_union(right)])
        raise self.error(f"unexpected '{op}'", node.op_pos)  # pragma: no cover

    def _power(self, left: list[int], exponent: Node) -> list[int]:
        # R truncates the exponent to an integer and wants at least 2.
        if exponent.kind != "num" or int(exponent.value) < 2:
            raise self.error("the power in (a + b)^n must be a whole number of at least 2", exponent.start)
        result = left
        for _ in range(int(exponent.value) - 1):
            result = _trim([a | b for a in left for b in result])
        return result
