"""Read a data file (CSV, TSV, Parquet; a path or ``-`` for stdin) into a ``Table``.

This is mixcli's one reader of delimited text. ``read_table`` uses pyarrow's
multithreaded CSV reader: numeric columns (integer or floating) become float64
arrays with NaN for missing values, every other column becomes a
dictionary-encoded ``TextColumn``. Nothing loops over rows in Python.
``mixcli nest``, which edits files byte for byte instead of reading them into
a table, asks this module for the pieces it needs: the header record
(``read_header``), chosen columns as raw bytes (``binary_columns``) and, for
files pyarrow cannot map one record to one line range, the records one by one
(``records``) — with the same missing values, separators and errors.

Decisions, so that every command sees the same data:

* Missing values are empty fields and ``NA`` (quoted or not), nothing else:
  ``NULL``, ``N/A``, ``.`` are text. ``NaN``/``inf`` in a numeric column parse
  as floats (NaN is then missing).
* No dates, times, timestamps or booleans are inferred: such columns are text.
  A column with any non-numeric entry is text.
* Encoding: UTF-8, with or without a byte-order mark. A file that is not valid
  UTF-8 is decoded as Windows-1252 (the encoding Excel writes on Western
  systems; bytes it leaves undefined are read as Latin-1), and a ``DataWarning``
  says so. That decoding is one-to-one, so distinct labels stay distinct and
  groups are never merged by the fallback. UTF-16 files are refused with a hint.
* The separator is ``sep`` if given, else by extension: ``.tsv``/``.tab`` tab,
  anything else comma. A header that parses as one column but contains ``;``,
  tab, ``,`` or ``|`` is reported as a probable wrong separator.

Every problem with the input ends in one ``DataError`` (exit code 1) naming the
file; a bad ``sep`` is a ``UsageError``.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from .errors import DataError, UsageError, option

if TYPE_CHECKING:  # pragma: no cover
    from .table import Table

# numpy, pyarrow and the table module are imported where they are needed: importing this
# module stays free, for commands (nest) that may never build a table.

NULL_VALUES = ("", "NA")  # the only spellings of a missing value, for every command

_TAB_EXTENSIONS = (".tsv", ".tab")
_COMPRESSED_EXTENSIONS = (".gz",)
_ALTERNATIVE_SEPS = (";", "\t", ",", "|")
# A strptime format that matches nothing: turns off pyarrow's timestamp inference.
_NO_TIMESTAMPS = "%Q!mixcli"


class DataWarning(UserWarning):
    """Something about the data that the user should know but that does not stop the read."""


def describe_sep(sep: str) -> str:
    """How to write ``sep`` on a command line: ``','``, ``'\\t'``."""
    return {"\t": "'\\t'"}.get(sep, repr(sep))


def resolve_sep(source: str, sep: str | None = None) -> str:
    """The one-character field separator for ``source``: ``sep`` if given, else by extension.

    ``sep`` may be written ``\\t`` or ``tab`` for a tab.
    """
    if sep is not None:
        sep = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(sep, sep)
        if len(sep) != 1:
            raise UsageError(f"{option('sep')} must be a single character, got {sep!r}")
        if sep in "\"\r\n":
            raise UsageError(f"{option('sep')} cannot be {sep!r}")
        return sep
    lower = source.lower()
    for ext in _COMPRESSED_EXTENSIONS:
        if lower.endswith(ext):
            lower = lower[: -len(ext)]
    return "\t" if lower.endswith(_TAB_EXTENSIONS) else ","


def display_name(source: str) -> str:
    return "<stdin>" if source == "-" else source


def read_bytes(source: str, stdin=None) -> bytes:
    """The whole content of ``source`` (``-`` = standard input), or a DataError saying why not."""
    if source == "-":
        stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", sys.stdin)
        if _isatty(stream):
            raise DataError("DATA is - (standard input) but nothing is piped in; use: mixcli ... - < data.csv")
        data = stream.read()
        return data.encode("utf-8") if isinstance(data, str) else data
    try:
        with open(source, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise DataError(open_error_message(source, err)) from None


def open_error_message(source: str, err: OSError) -> str:
    """One line saying why ``source`` could not be opened."""
    if isinstance(err, FileNotFoundError):
        message = f"{source}: no such file"
        hint = _similar_file(source)
        return f"{message}; did you mean {hint}?" if hint else message
    if isinstance(err, IsADirectoryError) or os.path.isdir(source):
        return f"{source}: is a directory, not a data file"
    if isinstance(err, PermissionError):
        return f"{source}: permission denied (the file is not readable)"
    return f"{source}: cannot read the file: {err.strerror or err}"


def _similar_file(source: str) -> str | None:
    import difflib

    folder, base = os.path.split(source)
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return None
    close = difflib.get_close_matches(base, names, n=1, cutoff=0.85)
    return os.path.join(folder, close[0]) if close else None


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def check_text_start(head: bytes, name: str) -> None:
    """Refuse input whose first bytes show it is not a delimited text file."""
    if not head:
        raise DataError(f"{name}: the file is empty")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_utf16(head):
        raise DataError(f"{name}: the file is UTF-16 encoded; save it as UTF-8 (CSV UTF-8 in Excel)")
    if head.startswith(b"PK\x03\x04"):
        raise DataError(f"{name}: this is a ZIP archive (an Excel .xlsx workbook?), not a CSV file; export it as CSV")
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise DataError(f"{name}: this is an old Excel/Office file, not a CSV file; export it as CSV")
    if head.startswith(b"\x1f\x8b"):
        raise DataError(f"{name}: the file is gzip-compressed; decompress it first (gunzip)")
    if head.startswith(b"PAR1"):
        raise DataError(f"{name}: this is a Parquet file; give it a .parquet extension")
    if b"\x00" in head:
        raise DataError(f"{name}: does not look like a text file (it contains binary data)")


def _looks_utf16(head: bytes) -> bool:
    """UTF-16 without a byte-order mark: ASCII text with a zero byte in every other position."""
    sample = head[:4096]
    half = len(sample) // 2
    return half >= 2 and max(sample[0::2].count(0), sample[1::2].count(0)) > 0.8 * half


def check_header_sep(header_fields: list[str], header_text: str, sep: str, name: str) -> None:
    """Refuse a header that parsed as one column but looks delimited by another separator."""
    if len(header_fields) != 1:
        return
    for alt in _ALTERNATIVE_SEPS:
        if alt != sep and alt in header_text:
            shown = header_text if len(header_text) <= 60 else header_text[:57] + "..."
            raise DataError(
                f"{name}: found a single column {shown!r} using separator {describe_sep(sep)}, "
                f"but the header contains {describe_sep(alt)}; try {option('sep', describe_sep(alt))}"
            )


def _first_line(data: bytes) -> bytes:
    end = data.find(b"\n")
    line = data if end < 0 else data[:end]
    if line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    return line.rstrip(b"\r")


def _parse_fields(text: str, sep: str) -> list[str]:
    import csv

    try:
        return next(csv.reader([text], delimiter=sep, quotechar='"'), [])
    except csv.Error:
        return text.split(sep)


def _latin1_for_undefined(err: UnicodeDecodeError):
    return err.object[err.start:err.end].decode("latin-1"), err.end


def decode_legacy(raw: bytes) -> str:
    """Decode non-UTF-8 bytes as Windows-1252, its five undefined bytes as Latin-1 (one-to-one)."""
    import codecs

    try:
        codecs.lookup_error("mixcli.latin1")
    except LookupError:
        codecs.register_error("mixcli.latin1", _latin1_for_undefined)
    return raw.decode("cp1252", errors="mixcli.latin1")


def decode_text(raw: bytes) -> tuple[str, str]:
    """(text, encoding) of ``raw``: UTF-8 if valid, else the legacy decoding."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return decode_legacy(raw), "cp1252"


_BLANK = re.compile(rb"(?:\xef\xbb\xbf)?\s*")


def read_table(source: str, sep: str | None = None, text_columns=(), columns=None) -> "Table":
    """Read ``source`` (a path, or ``-`` for standard input) into a ``Table``.

    CSV/TSV by default; ``.parquet`` files (or Parquet data on stdin) with pyarrow.
    ``sep`` overrides the separator chosen from the extension. The columns named in
    ``text_columns`` (those the file has) are text whatever they hold: a field is kept as
    written ("02" stays "02"); Parquet numbers become labels as R's as.character() writes
    them. Raises ``DataError`` for any unreadable or malformed input and ``UsageError`` for
    a bad ``sep``.

    ``columns``: the names a caller will use, if it knows them: a CSV's other columns are then
    split but not converted (898k rows, 4 of 7 columns: 0.2 s of 0.4). Every row is still
    checked for its number of fields. All columns are read when one named is not in the header
    (its error then offers the file's names), when the header repeats a name, or when the
    file has an unclosed quote (the check for it looks at every text column).
    """
    name = display_name(source)
    sep = resolve_sep(source, sep)
    data = read_bytes(source)
    if data.startswith(b"PAR1") or source.lower().endswith((".parquet", ".pq")):
        return _read_parquet(data, name, text_columns)
    if data.startswith(b"\x1f\x8b"):
        import gzip
        import zlib

        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{name}: cannot decompress the gzip file: {err}") from None
    check_text_start(data[:65536], name)
    if _BLANK.fullmatch(data):  # fails at the first non-blank byte: no copy of the data
        raise DataError(f"{name}: the file contains no data (only blank lines)")
    header = _first_line(data)
    header_text = decode_text(header)[0]
    fields = _parse_fields(header_text, sep)
    check_header_sep(fields, header_text, sep, name)
    import pyarrow

    include = _projection(fields, columns, data)
    table = _read_csv_arrow(data, sep, name, text_columns, include)
    del data
    # pyarrow's mimalloc pool keeps what it freed (~2x the file size) for
    # reuse; mixcli is done with arrow now, so hand it back before fitting.
    pyarrow.default_memory_pool().release_unused()
    return table


def _projection(header: list[str], columns, data: bytes) -> list[str] | None:
    """The header's names to convert (``read_table``'s ``columns``), or None for all of them."""
    if columns is None:
        return None
    names = [h.lstrip("\ufeff") for h in header]
    wanted = list(dict.fromkeys(columns))
    if len(set(names)) < len(names) or not set(wanted) <= set(names) or data.count(b'"') % 2:
        return None
    return [n for n in names if n in set(wanted)]


# ---------------------------------------------------------------- pyarrow


THREADED_FROM = 4 << 20  # bytes of CSV from which pyarrow parses blocks on its threads


def _arrow_csv(data: bytes, sep: str, text_columns=(), include=None):
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # (pyarrow's thread pool, once started, can abort the process at exit, "terminate called without
    # an active exception", apache/arrow#34314: seen once in the error catalogue's runs; a small file
    # is read on this thread, where threads save nothing)
    read = pacsv.ReadOptions(use_threads=len(data) >= THREADED_FROM)
    parse = pacsv.ParseOptions(delimiter=sep, quote_char='"', double_quote=True,
                               newlines_in_values=b'"' in data, ignore_empty_lines=True)
    # Text arrives dictionary-encoded by the reader itself (codes and labels are what a Table
    # keeps): encoding it afterwards imports pyarrow.compute, 30 ms of every command's start-up.
    text = pa.dictionary(pa.int32(), pa.string())
    convert = pacsv.ConvertOptions(
        null_values=list(NULL_VALUES),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        true_values=[],
        false_values=[],
        timestamp_parsers=[_NO_TIMESTAMPS],
        column_types={col: text for col in text_columns},
        include_columns=include or [],
        auto_dict_encode=True,
        auto_dict_max_cardinality=2**31 - 1,
    )
    return pacsv.read_csv(pa.BufferReader(data), read_options=read, parse_options=parse, convert_options=convert)


def _read_csv_arrow(data: bytes, sep: str, name: str, text_columns=(), include=None) -> "Table":
    import warnings

    import pyarrow as pa
    import pyarrow.types as pat

    try:
        try:
            table = _arrow_csv(data, sep, text_columns, include)
        except pa.ArrowKeyError:  # (a name the csv module read differently from pyarrow: read them all)
            include = None
            table = _arrow_csv(data, sep, text_columns)
        table.column_names  # decoded lazily: a header that is not UTF-8 fails here, not in read_csv
    except UnicodeDecodeError:  # the header itself is not UTF-8
        table = None
    except pa.ArrowInvalid as err:
        raise DataError(_explain_arrow_error(err, data, sep, name)) from None
    if table is None or any(pat.is_binary(t) or pat.is_large_binary(t) for t in map(_values_type, table.schema.types)):
        # Not UTF-8: decode it all the legacy way and read the UTF-8 re-encoding.
        data = decode_legacy(data).encode("utf-8")
        warnings.warn(f"{name}: not valid UTF-8; read as Windows-1252 (Latin-1)", DataWarning, stacklevel=3)
        try:
            table = _arrow_csv(data, sep, text_columns, include)
        except pa.ArrowInvalid as err:
            raise DataError(_explain_arrow_error(err, data, sep, name)) from None
    _check_names(table.column_names, name)
    if table.num_rows == 0:
        raise DataError(f"{name}: has a header but no data rows")
    # Dates and times pyarrow recognised: re-read those columns as their original text.
    temporal = [f.name for f in table.schema if pat.is_temporal(_values_type(f.type))]
    if temporal:
        table = _arrow_csv(data, sep, list(dict.fromkeys([*text_columns, *temporal])), include)
    _check_unterminated_quote(table, data, name)
    return _arrow_to_table(table, name, text_columns)


def _values_type(typ):
    """The type of a column's values (a dictionary-encoded column's dictionary)."""
    import pyarrow.types as pat

    return typ.value_type if pat.is_dictionary(typ) else typ


def _check_names(names: list[str], name: str) -> None:
    seen: set[str] = set()
    dupes: list[str] = []
    for col in names:
        if col in seen and col not in dupes:
            dupes.append(col)
        seen.add(col)
    if dupes:
        listed = ", ".join(repr(d) for d in dupes)
        raise DataError(f"{name}: duplicate column name{'s' if len(dupes) > 1 else ''} {listed} in the header")


def _explain_arrow_error(err: Exception, data: bytes, sep: str, name: str) -> str:
    text = str(err)
    if "Empty CSV file" in text:
        return f"{name}: the file is empty"
    found = re.search(r"Expected (\d+) columns, got (\d+)", text)
    if found:
        expected, got = int(found.group(1)), int(found.group(2))
        line, fields = _find_ragged_line(data, sep, expected)
        where = f"line {line}" if line else "a row"
        got = fields if line else got
        return (f"{name}: {where} has {got} field{'s' if got != 1 else ''} but the header has {expected} "
                f"(separator {describe_sep(sep)}; check the separator and quoting)")
    return f"{name}: cannot parse the file as delimited text: {text.splitlines()[0] if text else err}"


def _find_ragged_line(data: bytes, sep: str, expected: int) -> tuple[int | None, int]:
    """Physical line number and field count of the first record with the wrong number of fields."""
    import csv
    import io

    stream = io.TextIOWrapper(io.BytesIO(data), encoding="latin-1", newline="")
    reader = csv.reader(stream, delimiter=sep, quotechar='"')
    try:
        first = True
        for record in reader:
            if first:
                first = False
                continue
            if record and len(record) != expected:
                return reader.line_num, len(record)
    except csv.Error:
        return reader.line_num or None, 0
    return None, 0


def _check_unterminated_quote(table, data: bytes, name: str) -> None:
    """An unclosed quote makes pyarrow swallow the rest of the file into one field: refuse it."""
    import pyarrow.types as pat

    if b'"' not in data or data.count(b'"') % 2 == 0 or table.num_rows == 0:
        return
    last = table.num_rows - 1
    for field, column in zip(table.schema, table.columns):
        if pat.is_string(_values_type(field.type)) or pat.is_large_string(_values_type(field.type)):
            value = column[last].as_py()
            if value is not None and "\n" in value:
                line = data.count(b"\n") - value.count("\n") + 1
                raise DataError(f"{name}: a quoted field in column {field.name!r} starting on line {line} "
                                f"is never closed (it runs to the end of the file)")


def _arrow_to_table(table, name: str, text_columns=()) -> "Table":
    import pyarrow as pa
    import pyarrow.types as pat

    from .table import Table

    columns: dict[str, object] = {}
    for field, column in zip(table.schema, table.columns):
        typ = field.type
        if pat.is_dictionary(typ) and (pat.is_string(typ.value_type) or pat.is_large_string(typ.value_type)):
            columns[field.name] = _arrow_text(column)
            continue
        if pat.is_dictionary(typ):
            column = column.cast(typ.value_type)
            typ = typ.value_type
        if pat.is_integer(typ) or pat.is_floating(typ) or pat.is_decimal(typ) or pat.is_boolean(typ) or pat.is_null(typ):
            columns[field.name] = _arrow_numeric(column)
            if field.name in text_columns:  # (a CSV's are read as text; a Parquet file's come typed)
                from .formula.evaluate import number_labels

                columns[field.name] = number_labels(columns[field.name])
        elif pat.is_string(typ) or pat.is_large_string(typ):
            columns[field.name] = _arrow_text(column)
        elif pat.is_temporal(typ) or pat.is_binary(typ) or pat.is_large_binary(typ):
            columns[field.name] = _arrow_text(column.cast(pa.string()))
        else:
            raise DataError(f"{name}: column {field.name!r} has type {typ}, which mixcli cannot use")
    return Table(columns=columns, source=name, nrows=table.num_rows)


def _valid_mask(chunk):
    """Boolean numpy mask of non-null entries of an arrow array, from its validity bitmap."""
    import numpy as np

    bitmap = chunk.buffers()[0]
    if chunk.null_count == 0 or bitmap is None:
        return None
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return bits[chunk.offset: chunk.offset + len(chunk)].astype(bool)


def _arrow_numeric(column):
    """float64 numpy array, NaN where missing. Reads buffers directly (Array.to_numpy imports pandas)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.types as pat

    parts = []
    for chunk in column.chunks:
        n = len(chunk)
        if pat.is_null(chunk.type) or chunk.null_count == n:
            parts.append(np.full(n, np.nan))
            continue
        if chunk.type == pa.float64():
            dtype = np.float64
        elif chunk.type == pa.int64():
            dtype = np.int64
        else:
            chunk = chunk.cast(pa.float64())
            dtype = np.float64
        values = np.frombuffer(chunk.buffers()[1], dtype=dtype, count=n, offset=chunk.offset * 8)
        values = values.astype(np.float64)  # always a fresh, writable copy
        valid = _valid_mask(chunk)
        if valid is not None:
            values[~valid] = np.nan
        parts.append(values)
    if not parts:
        return np.empty(0, dtype=np.float64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _arrow_text(column):
    """TextColumn from a string column via pyarrow's dictionary encoding (shared dictionary across chunks)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.types as pat

    from .table import TextColumn

    if pat.is_dictionary(column.type):
        # (one dictionary for every chunk, each chunk's codes translated to it: no pyarrow.compute)
        encoded = pa.table({"c": column}).unify_dictionaries().column(0)
    else:
        encoded = column.dictionary_encode()
    codes = []
    labels: list = []
    for chunk in encoded.chunks:
        indices = chunk.indices
        n = len(indices)
        values = np.frombuffer(indices.buffers()[1], dtype=np.int32, count=n, offset=indices.offset * 4).copy()
        valid = _valid_mask(indices) if indices.null_count else None
        if indices.null_count == n:
            values[:] = -1
        elif valid is not None:
            values[~valid] = -1
        codes.append(values)
        if len(chunk.dictionary) > len(labels):
            labels = chunk.dictionary.to_pylist()
    codes_arr = np.concatenate(codes) if len(codes) != 1 else codes[0]
    label_arr = np.empty(len(labels), dtype=object)
    label_arr[:] = labels
    return TextColumn(codes=codes_arr, labels=label_arr)


def _read_parquet(data: bytes, name: str, text_columns=()) -> "Table":
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{name}: not a readable Parquet file: {str(err).splitlines()[0]}") from None
    _check_names(table.column_names, name)
    if table.num_rows == 0:
        raise DataError(f"{name}: the Parquet file has no rows")
    return _arrow_to_table(table, name, text_columns)


# ---------------------------------------------------------------- records, for byte-exact editing


@dataclass
class Header:
    """The header record of a delimited file, located in its bytes."""

    start: int  # byte offset of the header record (after any blank lines)
    end: int  # byte offset just past its line ending
    line: int  # physical line number of its last line
    columns: list[str]
    encoding: str  # "utf-8", or "cp1252" for the legacy decoding


def line_body(line: bytes) -> bytes:
    """``line`` without its line ending (CRLF, LF, or none on a last line)."""
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith(b"\n"):
        return line[:-1]
    return line


class _Feed:
    """Physical lines for the csv module, decoded as Latin-1 (byte-exact), keeping the raw bytes read."""

    __slots__ = ("lines", "raw", "number", "ran_out")

    def __init__(self, lines: Iterator[bytes], number: int = 0):
        self.lines = lines
        self.raw: list[bytes] = []
        self.number = number
        self.ran_out = False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        try:
            line = next(self.lines)
        except StopIteration:
            self.ran_out = True
            raise
        self.number += 1
        self.raw.append(line)
        return line.decode("latin-1")


def _csv_reader(lines, sep: str):
    import csv

    return csv.reader(lines, delimiter=sep, quotechar='"', doublequote=True, strict=False)


def _bare_cr(name: str, line: int) -> DataError:
    return DataError(f"{name}: line {line}: a carriage return not followed by a newline (old Mac line "
                     "endings?); convert the line endings to \\n or \\r\\n first")


def _next_record(reader, feed: _Feed, name: str) -> tuple[int, bytes, list[str]] | None:
    """(first line number, raw bytes, fields) of the next record, None at the end."""
    import csv

    start = feed.number + 1
    try:
        fields = next(reader)
    except StopIteration:
        return None
    except csv.Error as err:
        if "new-line character" in str(err):
            raise _bare_cr(name, feed.number) from None
        raise DataError(f"{name}: cannot parse the record on line {start}: {err}") from None
    if feed.ran_out:
        raise DataError(f"{name}: a quoted field starting on line {start} is never closed (it runs to the end of the file)")
    raw = feed.raw[0] if len(feed.raw) == 1 else b"".join(feed.raw)
    feed.raw.clear()
    return start, raw, fields


def read_header(data: bytes, sep: str, name: str) -> Header:
    """The first non-blank record of ``data``, its place and its column names (decoded as
    ``read_table`` decodes them); DataError for data that is not delimited text."""
    import io

    check_text_start(data[:65536], name)
    feed = _Feed(iter(io.BytesIO(data)))
    reader = _csv_reader(feed, sep)
    offset = 0
    while True:
        record = _next_record(reader, feed, name)
        if record is None:
            raise DataError(f"{name}: the file contains only blank lines")
        line_no, raw, fields = record
        if fields:
            break
        offset += len(raw)
    body = line_body(raw)
    if b"\r" in body and not any("\r" in f for f in fields):
        raise _bare_cr(name, line_no)
    raw_fields = [f.encode("latin-1") for f in fields]
    if raw_fields[0].startswith(b"\xef\xbb\xbf"):
        raw_fields[0] = raw_fields[0][3:]
    text, encoding = decode_text(b"\x00".join(raw_fields))
    columns = text.split("\x00")
    check_header_sep(columns, decode_text(body.removeprefix(b"\xef\xbb\xbf"))[0], sep, name)
    return Header(start=offset, end=offset + len(raw), line=feed.number, columns=columns, encoding=encoding)


def records(data: bytes, header: Header, sep: str, name: str) -> Iterator[tuple[int, bytes, bytes, list[bytes] | None]]:
    """The data records after ``header``, one by one: (line number, raw bytes, raw bytes without
    the line ending, fields as raw bytes — None for a blank line). ``bytes.split`` when the data
    has no quotes, else the csv module; exact line numbers in every error."""
    import io

    stream = io.BytesIO(data)
    stream.seek(header.end)
    sepb = sep.encode("latin-1")
    if data.find(b'"', header.end) < 0:
        for line_no, line in enumerate(stream, header.line + 1):
            body = line_body(line)
            if not body:
                yield line_no, line, body, None
                continue
            if b"\r" in body:
                raise _bare_cr(name, line_no)
            yield line_no, line, body, body.split(sepb)
        return
    feed = _Feed(iter(stream), header.line)
    reader = _csv_reader(feed, sep)
    while (record := _next_record(reader, feed, name)) is not None:
        line_no, line, text = record
        yield line_no, line, line_body(line), ([f.encode("latin-1") for f in text] if text else None)


def binary_columns(buf, sep: str, ncols: int, wanted: list[int], quoted: bool):
    """Columns ``wanted`` (indices) of headerless delimited data ``buf`` (a pyarrow buffer) as
    pyarrow binary arrays, missing values as nulls; None if pyarrow cannot parse the data
    (ragged rows and the like: the caller then reads ``records`` one by one)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{i}" for i in range(ncols)]
    try:
        table = pacsv.read_csv(
            pa.BufferReader(buf),
            read_options=pacsv.ReadOptions(use_threads=True, column_names=names),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=quoted, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=[names[i] for i in wanted],
                column_types={names[i]: pa.binary() for i in wanted},
                null_values=list(NULL_VALUES), strings_can_be_null=True, quoted_strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    return {i: table.column(names[i]).combine_chunks() for i in wanted}


def csv_to_tsv(text: str) -> str:
    """The CSV ``text`` mixcli writes, re-delimited by tabs (``--format tsv``): quoting is kept
    only where a field holds a tab, a quote or a line break."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerows(csv.reader(io.StringIO(text)))
    return out.getvalue()
