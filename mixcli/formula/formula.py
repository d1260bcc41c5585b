"""``parse_formula``: a model formula string to a ``Formula``, as R and lme4 read it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import FormulaError
from .exprs import Expr, Term, term_label
from .parser import Node, parse_syntax, walk
from .random import RandomExpander, RandomTerm
from .terms import Occurrence, TermEncoder, to_expr


@dataclass(frozen=True)
class Formula:
    """A parsed mixed-model formula.

    ``terms`` are the fixed-effects terms of lme4's ``nobars()`` formula in the
    order of R's ``terms()`` (intercept excluded, see ``intercept``); ``random``
    the random-effects terms in the order of lme4's ``findbars()``.
    """

    text: str
    response: Expr
    intercept: bool
    terms: tuple[Term, ...]
    random: tuple[RandomTerm, ...]
    occurrences: tuple[Occurrence, ...] = field(default=(), compare=False, repr=False)
    #: Expressions of the ``offset(...)`` terms, summed into the linear predictor.
    offsets: tuple[Expr, ...] = field(default=(), compare=False)
    #: The variables R's model.frame evaluates for lme4 (those of subbars(f)): the
    #: response, every variable of the fixed part (removed terms' too), of the
    #: random terms' left-hand sides, and the grouping columns; in order of appearance.
    frame_variables: tuple[Expr, ...] = field(default=(), compare=False, repr=False)
    #: Offset of the '~' in ``text``.
    tilde: int = field(default=-1, compare=False, repr=False)

    def variables(self) -> list[str]:
        """Every data column the formula names (response, fixed part, random
        left-hand sides, grouping factors), once each, in order of appearance."""
        out: list[str] = []
        for occ in sorted(self.occurrences, key=lambda o: o.position):
            if occ.name not in out:
                out.append(occ.name)
        return out

    def position_of(self, name: str) -> int | None:
        """0-based offset of the first place the formula names column ``name``."""
        positions = [o.position for o in self.occurrences if o.name == name]
        return min(positions) if positions else None

    @property
    def term_labels(self) -> list[str]:
        """R's ``attr(terms(nobars(f)), "term.labels")``."""
        return [term_label(t) for t in self.terms]

    def __str__(self) -> str:
        return self.text

    # -- editing: the formula written back, as R's update() would, or as the user wrote it -------

    @property
    def response_text(self) -> str:
        """The response as the user wrote it."""
        return self.text[: self.tilde].strip()

    def fixed_text(self) -> str:
        """The fixed part as R's ``terms()`` writes it: term labels, then offsets; ``0 +`` first
        without an intercept, ``1`` if nothing else is left."""
        labels = self.term_labels + [f"offset({term_label((o,))})" for o in self.offsets]
        if not self.intercept:
            return " + ".join(["0"] + labels)
        return " + ".join(labels) if labels else "1"

    def random_texts(self) -> list[str]:
        """Each random-effects term, parenthesised as lme4's ``findbars()`` deparses it."""
        return [rt.written for rt in self.random]

    def rewrite(self, fixed: str | None = None, random: list[str] | None = None) -> str:
        """``response ~ fixed + random terms`` with either part replaced (default: this formula's),
        as R's ``update()`` writes it; like R, one copy of a repeated random term is kept
        ((x || g) reduced by x is (1 | g), once)."""
        fixed = self.fixed_text() if fixed is None else fixed
        bars = self.random_texts() if random is None else random
        return f"{self.response_text} ~ " + " + ".join([fixed] + list(dict.fromkeys(bars)))

    def null_model(self) -> str:
        """The response on the random terms alone, offsets kept: the null model of insight's
        ``null_model()`` (``update(m, y ~ (random terms), offset = ...)``)."""
        return self.rewrite(" + ".join(["1"] + [f"offset({term_label((o,))})" for o in self.offsets]))

    def without_fixed(self, label: str) -> str:
        """The formula without the fixed-effect term ``label`` (R's ``update(f, . ~ . - label)``)."""
        labels = [lab for lab in self.term_labels if lab != label]
        fixed = labels if self.intercept else ["0"] + labels
        fixed += [f"offset({term_label((o,))})" for o in self.offsets]
        return self.rewrite(" + ".join(fixed or ["1"]))

    def with_random_rewritten(self, replacements: dict[tuple[int, int], str]) -> str:
        """The user's text with the random terms written at each span (``RandomTerm.span``) replaced
        by the given text, or removed with the ``+`` that joined them where the text is empty;
        everything else stays as the user wrote it."""
        text = self.text
        for (start, end), new in sorted(replacements.items(), reverse=True):
            if new:
                text = text[:start] + new + text[end:]
                continue
            head = text[:start].rstrip()
            if head.endswith("+"):
                text = head[:-1].rstrip() + text[end:]
            else:
                tail = text[end:].lstrip()
                text = text[:start] + (tail[1:].lstrip() if tail.startswith("+") else text[end:])
        return text


def parse_formula(text: str) -> Formula:
    """Parse ``text`` (``"y ~ x + (x | g)"``); raises FormulaError with the position
    of the offending text."""
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be a string, not {type(text).__name__}")
    if "~" not in text:
        if not text.strip():
            raise FormulaError("empty formula", text)
        raise FormulaError("no '~' in formula", text, hint="write the response, then '~', then the terms, "
                           "as in y ~ x + (1 | g)")
    root = parse_syntax(text)
    if not (root.kind == "binary" and root.op == "~"):
        tilde = _first_tilde(root)
        if tilde is not None and tilde.kind == "unary" and tilde.start == root.start:
            raise FormulaError("missing response before '~'", text, None)
        raise FormulaError(
            "'~' must separate the response from the terms, as in y ~ x",
            text,
            tilde.op_pos if tilde is not None else None,
        )
    lhs, rhs = root.args
    if _first_tilde(lhs) is not None:
        raise FormulaError("unexpected '~'", text, root.op_pos)
    occurrences: list[Occurrence] = []
    response = to_expr(lhs, text, "the response", occurrences, role="response")
    if not response.columns():
        raise FormulaError("the response must be a column of the data", text, lhs.start)

    frame: dict[Expr, int] = {response: lhs.start}
    expander = RandomExpander(text, occurrences, frame)
    encoder = TermEncoder(text, occurrences, on_random=expander, frame=frame)
    encoder.register(response)  # R's variable list starts with the response: bit 1
    bits = encoder.encode(rhs)
    if any(t & 1 for t in bits):
        raise FormulaError(
            f"the response {response.label} also appears on the right-hand side",
            text,
            encoder.positions.get(response),
        )
    return Formula(
        text=text,
        response=response,
        intercept=encoder.intercept,
        terms=encoder.finish(bits),
        random=tuple(expander.terms),
        offsets=tuple(encoder.offsets),
        occurrences=tuple(occurrences),
        frame_variables=tuple(sorted(frame, key=frame.__getitem__)),
        tilde=root.op_pos,
    )


def _first_tilde(node: Node) -> Node | None:
    for n in walk(node):
        if n.kind in ("binary", "unary") and n.op == "~":
            return n
    return None
