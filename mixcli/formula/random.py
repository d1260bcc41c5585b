"""Random-effects terms ``(lhs | group)``, expanded the way lme4's ``findbars()`` does.

* ``(lhs || g)`` becomes ``(1 | g)`` (when lhs has an intercept) followed by
  ``(0 + t | g)`` for each term t of lhs (lme4's ``expandDoubleVerts``);
* then ``(lhs | a/b)`` becomes ``(lhs | b:a)`` followed by ``(lhs | a)``, and
  ``a/b/c`` gives ``c:(b:a)``, ``b:a``, ``a`` (lme4's ``expandSlash``: innermost
  grouping first, each nested interaction written with the new factor first).

Repeated terms are kept, as lme4 keeps them (``(1|g) + (1|g)`` fits two
variance components for g).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import FormulaError
from .exprs import Term, Var, quote_name, term_label
from .parser import Node, deparse
from .terms import Occurrence, TermEncoder, is_bar


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term after expansion: model matrix ``intercept`` + ``terms``
    (like a fixed part), varying by the levels of the interaction of ``group``.

    ``span`` is where the parenthesised term that produced it sits in the formula.
    ``lhs_label`` and ``group_label`` are the two sides as lme4 deparses them; they
    are filled in by the parser and derived from the fields otherwise.
    """

    intercept: bool
    terms: tuple[Term, ...]
    group: tuple[str, ...]
    span: tuple[int, int] = field(default=(0, 0), compare=False)
    lhs_label: str = field(default="", compare=False)
    group_label: str = field(default="", compare=False)
    #: Made by expanding ``(lhs || group)``: lme4 splits it into uncorrelated terms.
    double_bar: bool = field(default=False, compare=False)
    #: glmmTMB's covariance structure: "" (lme4's, also written ``us(...)``), ``diag``, ``cs``, ``ar1``.
    structure: str = ""

    @property
    def group_name(self) -> str:
        """The grouping columns joined by ``:``, e.g. ``classid2:schoolid``."""
        return ":".join(self.group)

    @property
    def lme4_group_name(self) -> str:
        """The grouping factor's name as lme4 prints it: ``c:(b:a)`` for ``(1 | a/b/c)``,
        a lone column name without backticks."""
        if len(self.group) == 1:
            factor_call = self.group_label.startswith(("factor(", "as.factor("))
            return self.group_label if factor_call else self.group[0]
        return self.group_label or ":".join(quote_name(g) for g in self.group)

    @property
    def lhs_text(self) -> str:
        """The left-hand side as lme4 deparses it: ``ses``, ``0 + x``, ``1``."""
        if self.lhs_label:
            return self.lhs_label
        labels = [term_label(t) for t in self.terms]
        if not self.intercept:
            return " + ".join(["0"] + labels)
        return " + ".join(labels) if labels else "1"

    @property
    def group_text(self) -> str:
        """The grouping side as lme4 deparses it: ``schoolid``, ``b:a``."""
        return self.group_label or ":".join(quote_name(g) for g in self.group)

    @property
    def label(self) -> str:
        """The term as lme4 deparses it: ``ses | schoolid``, ``0 + x | g``, ``1 | b:a``."""
        return f"{self.lhs_text} | {self.group_text}"

    @property
    def written(self) -> str:
        """The term as written in a formula: ``(x | g)``, or ``diag(x | g)`` with a structure."""
        return f"{self.structure}({self.label})" if self.structure else f"({self.label})"

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class _Group:
    """A grouping interaction: column names, and its label as R deparses it."""

    names: tuple[str, ...]
    label: str


def _interaction(outer: _Group, inner: _Group) -> _Group:
    # R deparses `:`(outer, inner) with parentheses around an inner interaction
    inner_label = inner.label if len(inner.names) == 1 else f"({inner.label})"
    return _Group(outer.names + inner.names, f"{outer.label}:{inner_label}")


class RandomExpander:
    """Collects the random-effects terms of a formula, in findbars() order."""

    def __init__(self, text: str, occurrences: list[Occurrence], frame: dict | None = None):
        self.text = text
        self.occurrences = occurrences
        self.frame = frame if frame is not None else {}
        self.terms: list[RandomTerm] = []

    def error(self, message: str, pos: int | None) -> FormulaError:
        return FormulaError(message, self.text, pos)

    def __call__(self, paren: Node) -> None:
        """Expand ``(lhs | g)``, or a structured term ``diag(lhs | g)`` (a call node)."""
        bar = paren.args[0]
        lhs_node, group_node = bar.args
        span = (paren.start, paren.end)
        structure = paren.value if paren.kind == "call" and paren.value != "us" else ""
        if paren.kind == "call" and bar.op == "||":
            raise self.error(f"{paren.value}() takes a term with one bar, as in {paren.value}(x | g)", bar.op_pos)
        encoder = TermEncoder(self.text, self.occurrences, on_random=None, bar=bar, frame=self.frame)
        lhs_terms = encoder.finish(encoder.encode(lhs_node, top=False))
        intercept = encoder.intercept
        groups = self._groups(group_node)
        if not intercept and not lhs_terms:
            raise self.error(
                f"random-effects term ({deparse(bar)}) has no intercept and no slopes", paren.start
            )
        if bar.op == "||":
            # lme4's expandDoubleVerts; (1 || g) is taken as (1 | g)
            parts: list[tuple[bool, tuple[Term, ...], str]] = []
            if intercept:
                parts.append((True, (), "1"))
            for t in lhs_terms:
                parts.append((False, (t,), f"0 + {term_label(t)}"))
        else:
            parts = [(intercept, lhs_terms, deparse(lhs_node))]
        for has_intercept, terms, lhs_label in parts:
            for g in groups:
                self.terms.append(
                    RandomTerm(has_intercept, terms, g.names, span, lhs_label=lhs_label, group_label=g.label,
                               double_bar=bar.op == "||", structure=structure)
                )

    # -- grouping side ---------------------------------------------------------
    def _groups(self, node: Node) -> list[_Group]:
        """The grouping factors of ``a:b``, ``a/b``, ``a/b/c``: lme4's expandSlash."""
        tree = self._slash_tree(node)
        if isinstance(tree, _Group):
            return [tree]
        return _flatten(_make_interaction(tree))

    def _slash_tree(self, node: Node):
        """A _Group for a name or an interaction of names; [left, right] for a/b."""
        if node.kind == "binary" and node.op == "/":
            left, right = node.args
            if left.kind == "binary" and left.op == ":":
                # lme4's expandSlash turns (1 | a:b/c) into nonsense (a:`:`); refuse it
                inner = self._interaction_names(left)
                outer = self._interaction_names(right)
                both = _interaction(outer, inner)
                raise self.error(
                    f"lme4 misreads nesting within an interaction; write the terms out: "
                    f"(... | {inner.label}) + (... | {both.label.replace('(', '').replace(')', '')})",
                    node.op_pos,
                )
            return [self._slash_tree(left), self._slash_tree(right)]
        return self._interaction_names(node)

    def _interaction_names(self, node: Node) -> _Group:
        if node.kind == "name":
            self.occurrences.append(Occurrence(node.value, node.start, "group"))
            self.frame.setdefault(Var(node.value), node.start)
            return _Group((node.value,), quote_name(node.value))
        if node.kind == "paren" and node.args[0].kind == "binary" and node.args[0].op == ":":
            # lme4 writes (1 | a/b/c)'s innermost term as (1 | c:(b:a)); read its own output back
            inner = self._interaction_names(node.args[0])
            return _Group(inner.names, f"({inner.label})" if len(inner.names) > 1 else inner.label)
        if node.kind == "binary" and node.op == ":":
            left = self._interaction_names(node.args[0])
            right = self._interaction_names(node.args[1])
            return _Group(left.names + right.names, f"{left.label}:{right.label}")
        if (node.kind == "call" and node.value in ("factor", "as.factor") and len(node.args) == 1
                and node.args[0].kind == "name"):
            # A grouping factor is a factor anyway; lme4 users write (1 | factor(year)) for numeric codes.
            arg = node.args[0]
            self.occurrences.append(Occurrence(arg.value, arg.start, "group"))
            self.frame.setdefault(Var(arg.value), arg.start)
            return _Group((arg.value,), f"{node.value}({quote_name(arg.value)})")
        if is_bar(node) or (node.kind == "paren" and is_bar(node.args[0])):
            inner = node if is_bar(node) else node.args[0]
            raise self.error("random-effects term inside another random-effects term", inner.op_pos)
        if node.kind == "binary" and node.op == "/":
            raise self.error("'/' cannot be used here", node.op_pos)
        raise self.error("the grouping factor must be column names joined by ':' or '/'", node.start)


def _make_interaction(tree):
    """lme4's makeInteraction: [left, right] -> [right:inner(left), expansion(left)]."""
    if isinstance(tree, _Group):
        return tree
    left, right = tree
    if not isinstance(right, _Group):  # pragma: no cover - '/' is left-associative
        raise AssertionError("unexpected nesting on the right of '/'")
    expanded_left = _make_interaction(left)
    innermost = expanded_left[0] if isinstance(expanded_left, list) else expanded_left
    return [_interaction(right, innermost), expanded_left]


def _flatten(items) -> list[_Group]:
    if isinstance(items, _Group):
        return [items]
    out: list[_Group] = []
    for item in items:
        out.extend(_flatten(item))
    return out
