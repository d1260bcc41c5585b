"""Parse formula tokens into a syntax tree, with R's operator precedence.

The tree is purely syntactic (``Node``), with the source span of every node, and
keeps the user's parentheses: R keeps them too (``(`` is a call in R's parse
tree), and they show in labels such as ``log((x))``. ``terms.py`` and
``random.py`` give the tree its meaning.

Precedence, lowest first, as in R's ``?Syntax``:

    ~               left
    | ||            left
    + -             left (binary)
    * /             left
    %in%            left
    :               left
    + -             unary
    ^               right (its right operand may start with a unary minus: x^-1)
    f(...)          calls of a name
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormulaError
from .exprs import format_number, quote_name
from .tokens import Token, tokenize


@dataclass(frozen=True)
class Node:
    """A syntax-tree node.

    kind: ``name`` (``value`` = column name), ``num`` (``value`` = float),
    ``bool`` (``value`` = True/False), ``call`` (``value`` = function name,
    ``args``), ``named`` (a named argument of a call: ``value`` = the name,
    ``args`` = (its value,)), ``unary`` / ``binary`` (``op``, ``args``),
    ``paren`` (``args`` = (inner,)).
    ``start``/``end`` span the node's source; ``op_pos`` is where its operator
    (or function name, or opening parenthesis) is.
    """

    kind: str
    start: int
    end: int
    op: str = ""
    args: tuple["Node", ...] = ()
    value: object = None
    quoted: bool = False
    op_pos: int = 0
    text: str = ""  # source text for leaves


@dataclass(frozen=True)
class OpInfo:
    left_bp: int
    right_bp: int  # binding power passed to the right operand


# Binary operators: a higher binding power binds tighter. Left-associative
# operators parse their right operand at left_bp + 1, right-associative at left_bp.
BINARY: dict[str, OpInfo] = {
    "~": OpInfo(10, 11),
    "|": OpInfo(20, 21),
    "||": OpInfo(20, 21),
    "+": OpInfo(30, 31),
    "-": OpInfo(30, 31),
    "*": OpInfo(40, 41),
    "/": OpInfo(40, 41),
    "%in%": OpInfo(50, 51),
    ":": OpInfo(60, 61),
    "^": OpInfo(80, 80),
}
# Prefix operators and the binding power of their operand.
PREFIX: dict[str, int] = {"+": 70, "-": 70, "~": 11}


class Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens: list[Token] = tokenize(text)
        self.i = 0

    # -- helpers -------------------------------------------------------------
    def peek(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def error(self, message: str, pos: int | None) -> FormulaError:
        return FormulaError(message, self.text, pos)

    def unexpected(self, tok: Token) -> FormulaError:
        if tok.kind == "end":
            prev = self.tokens[self.i - 1] if self.i > 0 else None
            if prev is not None and prev.kind == "op":
                if prev.text == "~":
                    return self.error("empty right-hand side: nothing after '~'", None)
                if prev.text == "(":
                    return self.error("unclosed '('", prev.start)
                if prev.text != ")":
                    return self.error(f"missing term after '{prev.text}'", prev.start)
            return self.error("unexpected end of formula", tok.start)
        return self.error(f"unexpected {tok.describe()}", tok.start)

    # -- grammar -------------------------------------------------------------
    def parse(self) -> Node:
        node = self.expression(0)
        tok = self.peek()
        if tok.kind != "end":
            raise self.unexpected(tok)
        return node

    def expression(self, min_bp: int) -> Node:
        left = self.prefix()
        while True:
            tok = self.peek()
            if tok.kind != "op" or tok.text not in BINARY:
                return left
            info = BINARY[tok.text]
            if info.left_bp < min_bp:
                return left
            self.advance()
            right = self.expression(info.right_bp)
            left = Node("binary", left.start, right.end, tok.text, (left, right), op_pos=tok.start)

    def prefix(self) -> Node:
        tok = self.advance()
        if tok.kind == "op" and tok.text in PREFIX:
            operand = self.expression(PREFIX[tok.text])
            return Node("unary", tok.start, operand.end, tok.text, (operand,), op_pos=tok.start)
        if tok.kind == "op" and tok.text == "(":
            inner = self.expression(0)
            close = self.peek()
            if close.kind == "op" and close.text == ")":
                self.advance()
                return Node("paren", tok.start, close.end, "(", (inner,), op_pos=tok.start)
            if close.kind == "end":
                raise self.error("unclosed '('", tok.start)
            raise self.unexpected(close)
        if tok.kind == "num":
            return Node("num", tok.start, tok.end, value=tok.value, op_pos=tok.start, text=tok.text)
        if tok.kind == "bool":
            return Node("bool", tok.start, tok.end, value=tok.value, op_pos=tok.start, text=tok.text)
        if tok.kind == "name":
            nxt = self.peek()
            if nxt.kind == "op" and nxt.text == "(":
                return self.call(tok)
            return Node(
                "name", tok.start, tok.end, value=tok.value, quoted=tok.quoted, op_pos=tok.start, text=tok.text
            )
        if tok.kind == "dot":
            raise self.error(
                "'.' (all other columns) is not supported; name the variables", tok.start
            )
        if tok.kind == "end" and self.i == 0:
            raise self.error("empty formula", None)
        # roll back so that unexpected() sees the right previous token
        if tok.kind == "end":
            raise self.unexpected(tok)
        raise self.error(f"unexpected {tok.describe()}{self._missing_operand(tok)}", tok.start)

    def _missing_operand(self, tok: Token) -> str:
        """Why ``tok`` cannot start a term: the operand an operator lacks, for the message."""
        prev = self.tokens[self.i - 2] if self.i >= 2 else None
        if tok.kind == "op" and tok.text in BINARY:
            return ": it needs a term on each side"
        if tok.kind == "op" and tok.text in (")", ",") and prev is not None and prev.kind == "op":
            if prev.text == "(":
                return ": empty parentheses"
            return f": '{prev.text}' needs a term after it"
        return ""

    def call(self, name: Token) -> Node:
        open_tok = self.advance()  # "("
        args: list[Node] = []
        close = self.peek()
        if not (close.kind == "op" and close.text == ")"):
            while True:
                first, second = self.peek(), self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
                if first.kind == "name" and second is not None and second.kind == "op" and second.text == "=":
                    self.advance()
                    self.advance()
                    value = self.expression(0)
                    args.append(Node("named", first.start, value.end, value=first.value, args=(value,),
                                     op_pos=first.start, text=first.text))
                else:
                    args.append(self.expression(0))
                sep = self.peek()
                if sep.kind == "op" and sep.text == ",":
                    self.advance()
                    continue
                break
        close = self.peek()
        if close.kind == "op" and close.text == ")":
            self.advance()
        elif close.kind == "end":
            raise self.error("unclosed '('", open_tok.start)
        else:
            raise self.unexpected(close)
        return Node(
            "call", name.start, close.end, value=name.value, args=tuple(args), op_pos=name.start, text=name.text
        )


def parse_syntax(text: str) -> Node:
    """The syntax tree of ``text`` (the whole formula, ``~`` included)."""
    return Parser(text).parse()


def walk(node: Node):
    """All nodes of the tree, parents before children, left to right."""
    yield node
    for child in node.args:
        yield from walk(child)


def deparse(node: Node) -> str:
    """``node`` as R's ``deparse()`` prints it: spaces around ``+ - * ~ | || %in%``,
    none around ``/ ^ :``, names backticked when not syntactic, numbers in R's format,
    the user's parentheses kept."""
    k = node.kind
    if k == "name":
        return quote_name(node.value)
    if k == "num":
        return format_number(node.value)
    if k == "bool":
        return "TRUE" if node.value else "FALSE"
    if k == "named":
        return f"{quote_name(node.value)} = {deparse(node.args[0])}"
    if k == "paren":
        return f"({deparse(node.args[0])})"
    if k == "unary":
        return f"{node.op}{deparse(node.args[0])}"
    if k == "call":
        return f"{quote_name(node.value)}({', '.join(deparse(a) for a in node.args)})"
    left, right = node.args
    sep = f" {node.op} " if node.op in ("+", "-", "*", "~", "|", "||", "%in%") else node.op
    return f"{deparse(left)}{sep}{deparse(right)}"
