"""Split a formula string into tokens, the way R's lexer would for the subset we accept.

Every token keeps its 0-based ``start``/``end`` offsets in the formula so that any
later error can point at the offending text.

Token kinds:

``name``   a variable: an R syntactic name (``ses``, ``my.var``, ``x_2``) or a
           backtick-quoted one (`` `math score` ``); ``value`` is the column name
           without backticks, ``quoted`` says whether backticks were used.
``num``    a decimal number (``2``, ``.5``, ``1e-3``); ``value`` is the float.
``str``    a quoted string: R would accept it, we reject it in the parser.
``op``     ``~ + - * / ^ : | || %in% ( ) , =`` (``**`` is read as ``^``, as R does; ``=``
           only names a function's argument, as in ``ns(x, df = 3)``).
``bool``   ``TRUE`` or ``FALSE`` (``value`` is the bool): a function's argument only.
``dot``    a lone ``.``, R's "all other columns"; the parser rejects it.
``end``    end of the formula.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormulaError

# R's reserved words: never column names unless backtick-quoted.
RESERVED = frozenset(
    "if else repeat while function for in next break TRUE FALSE NULL Inf NaN NA "
    "NA_integer_ NA_real_ NA_character_ NA_complex_".split()
)

_SIMPLE_OPS = {"~", "+", "-", "*", "/", "^", ":", "(", ")", ","}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str  # the source text of the token
    start: int
    end: int
    value: object = None
    quoted: bool = False

    def describe(self) -> str:
        """How an error message names this token."""
        if self.kind == "end":
            return "end of formula"
        if self.kind == "str":
            return f"string {self.text}"
        return f"'{self.text}'"


def _is_name_start(ch: str) -> bool:
    return ch.isalpha() or ch == "."


def _is_name_char(ch: str) -> bool:
    return ch.isalnum() or ch in "._"


def _scan_number(text: str, i: int) -> int:
    """End offset of the decimal number starting at ``i`` (digits or '.' then digit)."""
    n = len(text)
    j = i
    while j < n and text[j].isdigit() and text[j].isascii():
        j += 1
    if j < n and text[j] == ".":
        j += 1
        while j < n and text[j].isdigit() and text[j].isascii():
            j += 1
    if j < n and text[j] in "eE":
        k = j + 1
        if k < n and text[k] in "+-":
            k += 1
        if k < n and text[k].isdigit() and text[k].isascii():
            while k < n and text[k].isdigit() and text[k].isascii():
                k += 1
            j = k
        else:
            raise FormulaError("malformed number", text, i)
    return j


def tokenize(text: str) -> list[Token]:
    """Tokens of ``text``, ending with an ``end`` token. Raises FormulaError."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        start = i
        if ch.isdigit() and ch.isascii() or (ch == "." and i + 1 < n and text[i + 1].isdigit()):
            j = _scan_number(text, i)
            tokens.append(Token("num", text[i:j], i, j, float(text[i:j])))
            i = j
            continue
        if _is_name_start(ch):
            j = i + 1
            while j < n and _is_name_char(text[j]):
                j += 1
            word = text[i:j]
            if word == ".":
                tokens.append(Token("dot", word, i, j))
            elif word in ("TRUE", "FALSE"):
                tokens.append(Token("bool", word, i, j, word == "TRUE"))
            elif word in RESERVED:
                raise FormulaError(
                    f"'{word}' is a reserved word in R; quote a column of that name as `{word}`",
                    text,
                    i,
                )
            else:
                tokens.append(Token("name", word, i, j, word))
            i = j
            continue
        if ch == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise FormulaError("unclosed '`'", text, i)
            if j == i + 1:
                raise FormulaError("empty name ``", text, i)
            tokens.append(Token("name", text[i : j + 1], i, j + 1, text[i + 1 : j], quoted=True))
            i = j + 1
            continue
        if ch in "\"'":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise FormulaError(f"unclosed string: no closing {ch}", text, i)
            tokens.append(Token("str", text[i : j + 1], i, j + 1, text[i + 1 : j]))
            i = j + 1
            continue
        if ch == "|":
            if text.startswith("||", i):
                tokens.append(Token("op", "||", i, i + 2))
                i += 2
            else:
                tokens.append(Token("op", "|", i, i + 1))
                i += 1
            continue
        if ch == "*" and text.startswith("**", i):
            tokens.append(Token("op", "^", i, i + 2))
            i += 2
            continue
        if ch == "%":
            j = text.find("%", i + 1)
            if j < 0:
                raise FormulaError("unclosed '%'", text, i)
            op = text[i : j + 1]
            if op != "%in%":
                raise FormulaError(f"operator '{op}' is not supported", text, i)
            tokens.append(Token("op", op, i, j + 1))
            i = j + 1
            continue
        if ch in "<>!" or text.startswith("==", i):
            op = text[i:i + 2] if text[i + 1:i + 2] == "=" else ch
            raise FormulaError(f"comparisons ('{op}') are not supported in a formula; compute the condition as a "
                               "column of the data (TRUE/FALSE, or 0/1) and use that", text, i)
        if ch == "=":
            tokens.append(Token("op", "=", i, i + 1))
            i += 1
            continue
        if ch in _SIMPLE_OPS:
            tokens.append(Token("op", ch, i, i + 1))
            i += 1
            continue
        raise FormulaError(f"unexpected '{ch}'", text, start)
    tokens.append(Token("end", "", n, n))
    return tokens
