"""Unique identifiers for nested groups: ``mixcli nest DATA schoolid:classid2``.

Data sets often number lower-level units *within* higher-level ones: class 1,
2, 3 in every school. A model that is given such a column bare, ``(1 | classid2)``,
pools every "class 1" of every school into one group. ``nest`` appends, for each
``outer:inner`` spec, a column whose value ``<outer>:<inner>`` identifies each
combination uniquely (``7:2`` = class 2 of school 7), and ``check`` says whether
that is needed at all.

The file is edited as raw bytes, not parsed and rewritten: every original
column, value, quote, line ending and the row order are kept byte for byte, and
the new field is appended at the end of each record (quoted only if it must be).
The reader (``mixcli.io``) locates the header and the two fields of every
record, and the output is spliced together from zero-copy slices of the input,
with no Python loop over rows; files pyarrow cannot map one record to one
line-range (stray quotes inside unquoted fields, bare carriage returns, ragged
rows) are read record by record (``io.records``), which gives the same bytes and
exact line numbers in errors. Missing values are ``read_table``'s: an empty
field or ``NA``; if either part is missing the new field is empty.

Output goes through ``output.AtomicOutput``: to ``-o FILE`` only once
everything succeeded (an error or an interrupt leaves no partial output and
never touches the input).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import BinaryIO, Sequence

from .errors import DataError, UsageError, option
from .io import (
    NULL_VALUES,
    Header,
    binary_columns,
    decode_text,
    describe_sep,
    display_name,
    line_body,
    read_bytes,
    read_header,
    records,
    resolve_sep,
)
from .output import AtomicOutput

MISSING = frozenset(v.encode() for v in NULL_VALUES)
_QUOTE = b'"'


@dataclass(frozen=True)
class NestSpec:
    """One ``outer:inner`` request: the two columns and the name of the new one."""

    outer: str
    inner: str
    name: str

    @property
    def text(self) -> str:
        return f"{self.outer}:{self.inner}"


@dataclass(frozen=True)
class NestStats:
    """What one spec found in the data."""

    spec: NestSpec
    rows: int  # data rows
    missing: int  # rows whose outer or inner value is missing (new field left empty)
    groups: int  # distinct (outer, inner) combinations
    outer_groups: int  # distinct outer values among them
    inner_labels: int  # distinct inner values among them
    reused_labels: int  # inner values found under more than one outer value
    most_reused: tuple[str, int] | None  # an inner label under the most outer groups, and how many
    ambiguous: str | None = None  # an identifier two different combinations would share (values contain ':')

    @property
    def redundant(self) -> bool:
        """The inner column is already a unique ID across the outer one: nesting changes nothing."""
        return self.groups > 0 and self.reused_labels == 0


# ---------------------------------------------------------------- specs


def _split_points(text: str) -> list[tuple[str, str]]:
    """Every way of reading ``text`` as OUTER:INNER (column names may themselves contain ':')."""
    return [(text[:k], text[k + 1:]) for k, ch in enumerate(text) if ch == ":" and 0 < k < len(text) - 1]


def check_specs(specs: Sequence[str], names: Sequence[str] = ()) -> None:
    """Syntax checks that need no data: UsageError for a malformed spec or a wrong number of --name."""
    if not specs:
        raise UsageError("give at least one OUTER:INNER spec, e.g. schoolid:classid2")
    for text in specs:
        splits = _split_points(text)
        if not splits:
            raise UsageError(f"malformed spec {text!r}: expected OUTER:INNER, e.g. schoolid:classid2")
        if len(splits) == 1 and splits[0][0] == splits[0][1]:
            raise UsageError(f"spec {text!r} names the same column twice; expected OUTER:INNER, two different columns")
    if names and len(names) != len(specs):
        raise UsageError(f"give {option('names')} once per spec ({len(specs)} spec{'s' if len(specs) != 1 else ''}, "
                         f"{len(names)} {option('names')})")
    for new in names:
        if not new or any(ch in new for ch in "\r\n"):
            raise UsageError(f"{option('names')} {new!r} is not a usable column name")


def resolve_specs(specs: Sequence[str], names: Sequence[str], columns: Sequence[str], source: str) -> list[NestSpec]:
    """Match each spec to the data's columns; UsageError for unknown or clashing names."""
    check_specs(specs, names)
    known = set(columns)
    resolved: list[NestSpec] = []
    for k, text in enumerate(specs):
        splits = _split_points(text)
        matches = [(o, i) for o, i in splits if o in known and i in known]
        if len(matches) > 1:
            options = " or ".join(f"{o!r} then {i!r}" for o, i in matches)
            raise UsageError(f"spec {text!r} is ambiguous: {options}")
        if not matches:
            outer, inner = splits[0]
            missing = outer if outer not in known else inner
            if len(splits) > 1:
                raise UsageError(f"spec {text!r} does not split into two columns of {source}{_suggest(missing, columns)}")
            raise UsageError(f"no column {missing!r} in {source}{_suggest(missing, columns)}")
        outer, inner = matches[0]
        if outer == inner:
            raise UsageError(f"spec {text!r} names the same column twice; expected OUTER:INNER, two different columns")
        new = names[k] if names else f"{outer}_{inner}"
        if new in known:
            raise UsageError(f"column {new!r} already exists in {source}; choose another name with {option('names')}")
        if any(new == r.name for r in resolved):
            raise UsageError(f"two specs would both create column {new!r}; give each its own {option('names')}")
        resolved.append(NestSpec(outer, inner, new))
    return resolved


def _suggest(wanted: str, columns: Sequence[str]) -> str:
    import difflib

    lower = {c.lower(): c for c in columns}
    if wanted.lower() in lower:
        return f"; did you mean {lower[wanted.lower()]!r}?"
    close = difflib.get_close_matches(wanted, list(columns), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    shown = ", ".join(columns[:12]) + (", ..." if len(columns) > 12 else "")
    return f" (columns: {shown})"


# ---------------------------------------------------------------- the pass


def nest(
    source: str,
    specs: Sequence[str],
    names: Sequence[str] = (),
    output: str | None = None,
    *,
    sep: str | None = None,
    check: bool = False,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> list[NestStats]:
    """Append one nested-ID column per ``outer:inner`` spec to the delimited file ``source``.

    ``source`` is a path or ``-`` (``stdin``, default ``sys.stdin.buffer``).
    ``output`` is a path, or ``None``/``-`` for ``stdout`` (default
    ``sys.stdout.buffer``); with ``check=True`` nothing is written. Returns the
    statistics of each spec, in order. Raises ``UsageError`` (bad spec, unknown
    column, name clash) or ``DataError`` (unreadable or malformed data) before
    anything is written.
    """
    check_specs(specs, names)
    name = display_name(source)
    sep = resolve_sep(source, sep)
    if ord(sep) > 127:
        raise UsageError(f"nest needs a one-byte (ASCII) separator, got {sep!r}")
    sepb = sep.encode("ascii")
    data = read_bytes(source, stdin)
    header = read_header(data, sep, name)
    resolved = resolve_specs(specs, names, header.columns, name)
    for spec in resolved:
        for col in (spec.outer, spec.inner):
            if header.columns.count(col) > 1:
                raise DataError(f"{name}: column {col!r} appears more than once in the header")
    positions = [(header.columns.index(s.outer), header.columns.index(s.inner)) for s in resolved]
    try:
        new_names = b"".join(sepb + _quote(s.name.encode(header.encoding), sepb) for s in resolved)
    except UnicodeEncodeError:
        raise UsageError(f"a new column name cannot be written in the file's encoding ({header.encoding})") from None

    scan = _scan_arrow(data, header, sep, positions, not check)
    if scan is None:
        scan = _scan_python(data, header, sep, positions, not check, name)
    pieces, pairs, missing, rows = scan
    if rows == 0:
        raise DataError(f"{name}: has a header but no data rows")
    stats = _stats(resolved, pairs, missing, rows, header.encoding)
    if check:
        return stats
    for st in stats:
        if st.ambiguous:
            raise DataError(f"{name}: the identifiers for {st.spec.text} would be ambiguous: values contain ':' "
                            f"so different combinations both give {st.ambiguous!r}")
    raw = data[header.start:header.end]
    body = line_body(raw)
    with AtomicOutput(output, stdout) as target:
        target.write(data[: header.start])
        target.write(body + new_names + raw[len(body):])
        for piece in pieces:
            target.write(piece)
        target.commit()
    return stats


def _quote(value: bytes, sepb: bytes) -> bytes:
    if sepb in value or _QUOTE in value or b"\n" in value or b"\r" in value:
        return _QUOTE + value.replace(_QUOTE, _QUOTE + _QUOTE) + _QUOTE
    return value


def _ragged(name: str, line: int, got: int, want: int, sep: str) -> DataError:
    return DataError(f"{name}: line {line} has {got} field{'s' if got != 1 else ''} but the header has {want} "
                     f"(separator {describe_sep(sep)}; check the separator and quoting)")


def _scan_arrow(data: bytes, header: Header, sep: str, positions, write: bool):
    """The data records, vectorised with pyarrow; None when the file needs the line-by-line path.

    Applies when pyarrow parses the file cleanly into as many records as there
    are non-blank lines (line breaks inside quotes don't count) and there are no
    bare carriage returns. The output is
    assembled without a Python loop: the data is cut, zero-copy, at the end of
    every record's content, and each piece is joined with that record's new fields.
    Returns (pieces to write, distinct pairs per spec, missing counts, rows).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if data.find(b"\r", header.end) >= 0 and data.count(b"\r", header.end) != data.count(b"\r\n", header.end):
        return None
    has_quotes = data.find(_QUOTE, header.end) >= 0
    sepb = sep.encode("ascii")
    ncols = len(header.columns)
    buf = pa.py_buffer(data).slice(header.end)
    size = len(buf)
    raw = np.frombuffer(buf, dtype=np.uint8)
    newlines = np.flatnonzero(raw == 10)
    if has_quotes:
        # A line break ends a record unless it is inside quotes, i.e. after an odd number of quotes.
        # (A stray quote inside an unquoted field breaks this count; then the record count below
        # disagrees with pyarrow's and the line-by-line path takes over.)
        quotes_before = np.searchsorted(np.flatnonzero(raw == 34), newlines)
        newlines = newlines[(quotes_before & 1) == 0]
    # Where each record's content ends (before \r\n or \n), and where each record starts.
    ends = newlines - ((newlines > 0) & (raw[np.maximum(newlines - 1, 0)] == 13))
    starts = np.concatenate(([0], newlines + 1))
    if size and data[-1:] != b"\n":
        ends = np.append(ends, size)  # last line without a line ending
    starts = starts[: len(ends)]
    blank = ends == starts
    nrecords = int(len(ends) - blank.sum())
    if nrecords == 0:
        return [data[header.end:]], [set() for _ in positions], [0] * len(positions), 0

    wanted = sorted({i for pair in positions for i in pair})
    columns = binary_columns(buf, sep, ncols, wanted, has_quotes)
    if columns is None or len(columns[wanted[0]]) != nrecords:
        return None  # ragged rows, a stray quote, a whitespace-only line: record by record

    # (pa.scalar and pa.array would import pandas: constants are built from buffers)
    colon = _repeat(b":", nrecords)
    nothing = _repeat(b"", nrecords)
    fields = [nothing]
    pairs: list[set] = []
    missing: list[int] = []
    for o, i in positions:
        joined = pc.binary_join_element_wise(columns[o], columns[i], colon)
        if has_quotes and write:
            joined = _quote_where_needed(joined, sep, nrecords)
        missing.append(joined.null_count)
        fields.append(pc.coalesce(joined, nothing))
        pairs.append(_distinct_pairs(columns[o], columns[i]))
    if not write:
        return [], pairs, missing, nrecords
    extra = pc.binary_join_element_wise(*fields, _repeat(sepb, nrecords))
    # One entry per line: the record's new fields, or nothing for a blank line.
    extra = pa.concat_arrays([extra, _repeat(b"", 1)]).cast(pa.large_binary())
    which = np.where(blank, nrecords, np.cumsum(~blank) - 1).astype(np.int64)
    per_line = extra.take(pa.Array.from_buffers(pa.int64(), len(which), [None, pa.py_buffer(which)]))
    cuts = np.concatenate(([0], ends)).astype(np.int64)
    pieces = pa.Array.from_buffers(pa.large_binary(), len(ends), [None, pa.py_buffer(cuts), buf])
    joined = pc.binary_join_element_wise(pieces, per_line, _repeat(b"", len(ends), large=True))
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)
    first, last = int(offsets[joined.offset]), int(offsets[joined.offset + len(joined)])
    body = joined.buffers()[2].slice(first, last - first)
    return [body, data[header.end + int(ends[-1]):]], pairs, missing, nrecords


def _quote_where_needed(values, sep: str, n: int):
    """CSV-quote the values that contain the separator, a quote or a line break (vectorised ``_quote``)."""
    import pyarrow.compute as pc

    special = "\\" + sep if sep in "]\\^-[" else sep
    needs = pc.match_substring_regex(values, f'[{special}"\\r\\n]')
    if not pc.any(needs).as_py():
        return values
    quote = _repeat(_QUOTE, n)
    wrapped = pc.binary_join_element_wise(quote, pc.replace_substring(values, '"', '""'), quote, _repeat(b"", n))
    return pc.if_else(needs, wrapped, values)


def _repeat(value: bytes, n: int, large: bool = False):
    """A pyarrow binary array of ``n`` copies of ``value``, built from buffers."""
    import numpy as np
    import pyarrow as pa

    dtype = np.int64 if large else np.int32
    offsets = np.arange(n + 1, dtype=dtype) * len(value)
    kind = pa.large_binary() if large else pa.binary()
    return pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), pa.py_buffer(value * n)])


def _distinct_pairs(outer, inner) -> set:
    """Distinct (outer, inner) byte pairs among rows where both are present, via dictionary codes."""
    import numpy as np

    o_codes, o_labels = _codes(outer)
    i_codes, i_labels = _codes(inner)
    both = (o_codes >= 0) & (i_codes >= 0)
    width = max(len(i_labels), 1)
    keys = o_codes[both].astype(np.int64) * width + i_codes[both]
    span = len(o_labels) * width
    if span <= 8 * len(keys) + (1 << 20):  # a table of every possible pair is cheaper than hashing
        seen = np.zeros(span, dtype=bool)
        seen[keys] = True
        keys = np.flatnonzero(seen)
    else:
        keys = np.unique(keys)
    return {(o_labels[k // width], i_labels[k % width]) for k in keys.tolist()}


def _codes(array):
    import numpy as np

    encoded = array.dictionary_encode()
    indices = encoded.indices
    codes = np.frombuffer(indices.buffers()[1], dtype=np.int32, count=len(indices), offset=indices.offset * 4).copy()
    if indices.null_count:
        valid = np.unpackbits(np.frombuffer(indices.buffers()[0], dtype=np.uint8), bitorder="little")
        codes[~valid[indices.offset: indices.offset + len(indices)].astype(bool)] = -1
    return codes, encoded.dictionary.to_pylist()


def _scan_python(data: bytes, header: Header, sep: str, positions, write: bool, name: str):
    """The data records one by one (``io.records``), for files the vectorised path cannot take."""
    sepb = sep.encode("ascii")
    ncols = len(header.columns)
    pairs: list[set] = [set() for _ in positions]
    missing = [0] * len(positions)
    out: list[bytes] = []
    rows = 0
    quoted = data.find(_QUOTE, header.end) >= 0
    for line_no, line, body, fields in records(data, header, sep, name):
        if fields is None:  # blank line: readers skip it, so do we
            out.append(line)
            continue
        if len(fields) != ncols:
            raise _ragged(name, line_no, len(fields), ncols, sep)
        rows += 1
        extra = b""
        for k, (o, i) in enumerate(positions):
            outer = fields[o]
            inner = fields[i]
            if outer in MISSING or inner in MISSING:
                missing[k] += 1
                extra += sepb
            else:
                pairs[k].add((outer, inner))
                extra += sepb + (_quote(outer + b":" + inner, sepb) if quoted else outer + b":" + inner)
        if write:
            out.append(body + extra + line[len(body):])
    if not write:
        out = []
    return [b"".join(out)], pairs, missing, rows


def _stats(specs: list[NestSpec], pairs: list[set], missing: list[int], rows: int, encoding: str) -> list[NestStats]:
    def show(raw: bytes) -> str:
        return raw.decode("utf-8", "replace") if encoding == "utf-8" else decode_text(raw)[0]

    result = []
    for spec, found, miss in zip(specs, pairs, missing):
        per_inner = Counter(inner for _, inner in found)
        reused = {label: n for label, n in per_inner.items() if n > 1}
        most = max(reused.items(), key=lambda item: (item[1], item[0])) if reused else None
        ambiguous = None
        if len({o + b":" + i for o, i in found}) < len(found):
            seen: set[bytes] = set()
            for o, i in sorted(found):
                key = o + b":" + i
                if key in seen:
                    ambiguous = show(key)
                    break
                seen.add(key)
        result.append(NestStats(
            spec=spec,
            rows=rows,
            missing=miss,
            groups=len(found),
            outer_groups=len({o for o, _ in found}),
            inner_labels=len(per_inner),
            reused_labels=len(reused),
            most_reused=(show(most[0]), most[1]) if most else None,
            ambiguous=ambiguous,
        ))
    return result


# ---------------------------------------------------------------- reports


def summary_lines(stats: Sequence[NestStats]) -> list[str]:
    """What ``mixcli nest`` says on stderr after writing the data."""
    lines = []
    for st in stats:
        s = st.spec
        line = f"nest: {s.name}: {st.groups} groups from {s.text}"
        if st.missing:
            line += f" ({st.missing} row{'s' if st.missing != 1 else ''} missing {s.outer} or {s.inner}: left empty)"
        lines.append(line)
        if st.redundant:
            lines.append(f"nest: warning: {s.text} is redundant: every {s.inner} value occurs under a single {s.outer}, "
                         f"so {s.inner} already identifies these {st.groups} groups")
    return lines


def check_report(stats: Sequence[NestStats], source: str = "DATA") -> str:
    """The ``--check`` report: is each inner column already a unique ID across its outer one?"""
    blocks = []
    for st in stats:
        s = st.spec
        lines = [f"{s.text}  ({st.rows} rows, {st.outer_groups} {s.outer} groups, {st.groups} {s.outer}:{s.inner} groups)"]
        if st.groups == 0:
            lines.append(f"  no row has both {s.outer} and {s.inner}: nothing to check")
        elif st.redundant:
            lines += [
                f"  {s.inner}: {st.inner_labels} distinct labels, none reused in more than one {s.outer} group.",
                f"  {s.inner} is already a unique ID across {s.outer}: nesting is redundant.",
                f"  (1 | {s.inner}) and (1 | {s.outer}/{s.inner}) give the same {s.inner} groups; no new column is needed.",
            ]
        else:
            label, count = st.most_reused
            lines += [
                f"  {s.inner}: {st.inner_labels} distinct labels, {st.reused_labels} of them reused in more than one "
                f"{s.outer} group (e.g. {label!r} occurs in {count}).",
                f"  {s.inner} is NOT a unique ID: it numbers units within each {s.outer}.",
                f"  Passing it bare as (1 | {s.inner}) is wrong: it pools different units that share a label "
                f"into {st.inner_labels} groups instead of {st.groups}.",
                f"  Use (1 | {s.outer}/{s.inner}), or add the nested column {s.name} with:",
                f"    mixcli nest {source} {s.text}",
            ]
        if st.missing:
            lines.append(f"  {st.missing} row{'s' if st.missing != 1 else ''} missing {s.outer} or {s.inner}.")
        if st.ambiguous:
            lines.append(f"  Warning: values contain ':' so {st.ambiguous!r} would name two different groups; "
                         f"nest refuses to write such identifiers.")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
