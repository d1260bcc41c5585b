"""read_table: CSV/TSV/Parquet into a Table, and one clear DataError for every bad input."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from mixcli.errors import DataError, UsageError
from mixcli.io import DataWarning, read_table, resolve_sep
from mixcli.table import TextColumn


def write(tmp_path, name, content: bytes | str):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return str(path)


def text_values(column):
    assert isinstance(column, TextColumn)
    return list(column.values())


def error_of(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_table(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ reading


def test_numeric_and_text_columns(tmp_path):
    path = write(tmp_path, "d.csv", "y,x,g\n1,0.5,a\n2,,b\n3.5,NA,a\nNA,2,\n")
    table = read_table(path)
    assert table.names == ["y", "x", "g"]
    assert table.nrows == 4
    assert table.source == path
    y = table["y"]
    assert y.dtype == np.float64 and y.flags.writeable
    np.testing.assert_array_equal(y, [1.0, 2.0, 3.5, np.nan])
    np.testing.assert_array_equal(table["x"], [0.5, np.nan, np.nan, 2.0])
    assert text_values(table["g"]) == ["a", "b", "a", None]
    assert table["g"].codes.tolist()[3] == -1
    assert sorted(table["g"].labels.tolist()) == ["a", "b"]


def test_integer_column_becomes_float(tmp_path):
    table = read_table(write(tmp_path, "d.csv", "n\n1\n2\n99999999999\n"))
    assert table["n"].dtype == np.float64
    assert table["n"].tolist() == [1.0, 2.0, 99999999999.0]


def test_numeric_looking_column_with_text_is_text(tmp_path):
    table = read_table(write(tmp_path, "d.csv", "a,b\n1,2\n3,x\n5,\n"))
    assert isinstance(table["b"], TextColumn)
    assert text_values(table["b"]) == ["2", "x", None]


def test_late_text_entry_in_large_file_makes_column_text(tmp_path):
    n = 300_000  # several pyarrow blocks
    body = "".join(f"{i},{i % 7}\n" for i in range(n))
    path = write(tmp_path, "d.csv", "i,g\n" + body + f"{n},seven\n")
    table = read_table(path)
    assert table.nrows == n + 1
    g = table["g"]
    assert isinstance(g, TextColumn)
    # one dictionary for the whole column, whatever the chunking
    assert sorted(g.labels.tolist()) == sorted([str(k) for k in range(7)] + ["seven"])
    values = g.labels[g.codes]
    assert values[0] == "0" and values[8] == "1" and values[-1] == "seven"
    assert np.array_equal(table["i"], np.arange(n + 1, dtype=float))


def test_large_text_column_with_missing_values(tmp_path):
    n = 250_000
    rows = [("" if i % 10 == 0 else f"s{i % 13}") for i in range(n)]
    lines = [f'{i},"{r}"' if i % 2 else f"{i},{r}" for i, r in enumerate(rows)]
    path = write(tmp_path, "d.csv", "i,g\n" + "\n".join(lines) + "\n")
    g = read_table(path)["g"]
    got = g.values()
    expected = [None if r == "" else r for r in rows]
    assert list(got) == expected
    assert g.codes.dtype.kind == "i"


def test_no_date_time_or_bool_inference(tmp_path):
    path = write(tmp_path, "d.csv", "d,t,b,ts\n2020-01-01,10:12,TRUE,2020-01-01 10:00\n2020-01-02,11:30,false,2021-05-05T00:00\n")
    table = read_table(path)
    assert text_values(table["d"]) == ["2020-01-01", "2020-01-02"]
    assert text_values(table["t"]) == ["10:12", "11:30"]
    assert text_values(table["b"]) == ["TRUE", "false"]
    assert text_values(table["ts"]) == ["2020-01-01 10:00", "2021-05-05T00:00"]


def test_only_empty_and_NA_are_missing(tmp_path):
    table = read_table(write(tmp_path, "d.csv", 'g\nNULL\nN/A\n""\n"NA"\nna\n'))
    assert text_values(table["g"]) == ["NULL", "N/A", None, None, "na"]


def test_all_missing_column_is_numeric_nan(tmp_path):
    table = read_table(write(tmp_path, "d.csv", "a,b\n1,\n2,NA\n"))
    assert np.isnan(table["b"]).all()


def test_bom_and_column_names_kept_exactly(tmp_path):
    path = write(tmp_path, "d.csv", b"\xef\xbb\xbfmath score,ses.z,\xc3\xa9cole\n1,2,a\n")
    table = read_table(path)
    assert table.names == ["math score", "ses.z", "école"]


def test_quoted_fields_commas_newlines_and_crlf(tmp_path):
    path = write(tmp_path, "d.csv", b'a,b\r\n"1","x,y"\r\n2,"two\r\nlines"\r\n3,"say ""hi"""\r\n')
    table = read_table(path)
    assert table["a"].tolist() == [1.0, 2.0, 3.0]
    assert text_values(table["b"]) == ["x,y", "two\r\nlines", 'say "hi"']


def test_blank_lines_are_skipped(tmp_path):
    table = read_table(write(tmp_path, "d.csv", "a,b\n1,2\n\n3,4\n\n"))
    assert table["a"].tolist() == [1.0, 3.0]


def test_separator_by_extension_and_option(tmp_path):
    assert read_table(write(tmp_path, "d.tsv", "a\tb\n1\t2\n")).names == ["a", "b"]
    assert read_table(write(tmp_path, "d.tab", "a\tb\n1\t2\n")).names == ["a", "b"]
    assert read_table(write(tmp_path, "d.txt", "a;b\n1;2\n"), sep=";").names == ["a", "b"]
    assert read_table(write(tmp_path, "e.txt", "a\tb\n1\t2\n"), sep="\\t").names == ["a", "b"]
    assert read_table(write(tmp_path, "f.csv", "a|b\n1|2\n"), sep="|")["b"].tolist() == [2.0]
    assert resolve_sep("x.TSV") == "\t"
    assert resolve_sep("x.tsv.gz") == "\t"
    assert resolve_sep("x.dat") == ","
    assert resolve_sep("-") == ","


@pytest.mark.parametrize("sep", ["ab", "", '"', "\n"])
def test_bad_separator_is_usage_error(tmp_path, sep):
    with pytest.raises(UsageError):
        read_table(write(tmp_path, "d.csv", "a\n1\n"), sep=sep)


def test_single_column_file(tmp_path):
    table = read_table(write(tmp_path, "d.csv", "y\n1\n2\n"))
    assert table["y"].tolist() == [1.0, 2.0]


def test_stdin(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"a,g\n1,x\n2,y\n")))
    table = read_table("-")
    assert table.source == "<stdin>"
    assert text_values(table["g"]) == ["x", "y"]


def test_gzip(tmp_path):
    path = write(tmp_path, "d.csv.gz", gzip.compress(b"a,b\n1,2\n"))
    assert read_table(path)["b"].tolist() == [2.0]


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    data = pa.table({
        "y": pa.array([1.5, None, 3.0]),
        "n": pa.array([1, 2, None], type=pa.int32()),
        "g": pa.array(["a", None, "a"]).dictionary_encode(),
        "flag": pa.array([True, False, None]),
    })
    path = str(tmp_path / "d.parquet")
    pq.write_table(data, path)
    table = read_table(path)
    np.testing.assert_array_equal(table["y"], [1.5, np.nan, 3.0])
    np.testing.assert_array_equal(table["n"], [1.0, 2.0, np.nan])
    assert text_values(table["g"]) == ["a", None, "a"]
    np.testing.assert_array_equal(table["flag"], [1.0, 0.0, np.nan])


def test_text_columns_keep_each_field_as_written(tmp_path):
    """Named columns are text whatever they hold (quoted or not): "02" stays "02"; the others
    are typed as usual, and a name the file lacks is no error."""
    path = write(tmp_path, "d.csv", 'k,n,when\n02,1,2024-01-02\n"2",2,2024-01-03\nNA,3,\n')
    table = read_table(path, text_columns=["k", "absent"])
    assert text_values(table["k"]) == ["02", "2", None]
    np.testing.assert_array_equal(table["n"], [1.0, 2.0, 3.0])
    assert text_values(table["when"]) == ["2024-01-02", "2024-01-03", None]  # dates stay text as before
    assert not isinstance(read_table(path)["k"], TextColumn)


def test_text_columns_of_a_parquet_file_are_labels_as_r_writes_numbers(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = str(tmp_path / "d.parquet")
    # R: as.character(c(2, 0.5, NA, 1e15, 2, -Inf)) is "2" "0.5" NA "1e+15" "2" "-Inf"
    pq.write_table(pa.table({"k": pa.array([2.0, 0.5, None, 1e15, 2.0, -np.inf]),
                             "n": pa.array([1, 2, 3, 4, 5, 6])}), path)
    table = read_table(path, text_columns=["k", "n"])
    assert text_values(table["k"]) == ["2", "0.5", None, "1e+15", "2", "-Inf"]
    assert text_values(table["n"]) == ["1", "2", "3", "4", "5", "6"]


def test_not_utf8_falls_back_to_windows_1252(tmp_path):
    path = write(tmp_path, "d.csv", "école,x\ncafé,1\nnaïve,2\n€uro,3\n".encode("cp1252") + b"\x81,4\n")
    with pytest.warns(DataWarning, match="not valid UTF-8"):
        table = read_table(path)
    assert table.names == ["école", "x"]
    assert text_values(table["école"]) == ["café", "naïve", "€uro", "\x81"]


def test_utf8_file_gives_no_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_table(write(tmp_path, "d.csv", "g\ncafé\n"))


def test_importing_io_does_not_import_heavy_modules():
    code = "import sys, mixcli.io; print(sorted(m for m in ('numpy', 'pandas', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_reading_text_columns_does_not_import_pyarrow_compute(tmp_path):
    # (text arrives dictionary-encoded from the CSV reader; pyarrow.compute cost 30 ms of start-up)
    path = write(tmp_path, "d.csv", "g,x,h\nb,1,u\na,2,\nb,3,v\n")
    code = ("import sys; from mixcli.io import read_table; t = read_table(sys.argv[1], text_columns=['x']); "
            "print('pyarrow.compute' in sys.modules, t['g'].labels.tolist(), t['g'].codes.tolist(), "
            "t['x'].labels.tolist(), t['h'].codes.tolist())")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "['b',", "'a']", "[0,", "1,", "0]", "['1',", "'2',", "'3']", "[0,", "-1,", "1]"]


# ------------------------------------------------------------------ errors


def test_missing_file(tmp_path):
    message = error_of(str(tmp_path / "nope.csv"))
    assert "nope.csv" in message and "no such file" in message


def test_missing_file_suggests_similar(tmp_path):
    write(tmp_path, "classroom.csv", "a\n1\n")
    assert "did you mean" in error_of(str(tmp_path / "clasroom.csv"))


def test_directory(tmp_path):
    assert "is a directory" in error_of(str(tmp_path))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_unreadable(tmp_path):
    path = write(tmp_path, "d.csv", "a\n1\n")
    os.chmod(path, 0)
    assert "permission denied" in error_of(path)


def test_empty_file(tmp_path):
    assert "empty" in error_of(write(tmp_path, "d.csv", ""))


def test_blank_lines_only(tmp_path):
    assert "no data" in error_of(write(tmp_path, "d.csv", "\n \r\n\n"))


def test_header_only(tmp_path):
    assert "no data rows" in error_of(write(tmp_path, "d.csv", "a,b\n"))


@pytest.mark.parametrize("content, line, fields", [
    ("a,b\n1,2\n3,4\n5,6,7\n8,9\n", 4, 3),
    ("a,b\n1,2\n3\n", 3, 1),
    ('a,b\n1,"x\ny"\n2,3,4\n', 4, 3),
])
def test_ragged_rows_name_the_line(tmp_path, content, line, fields):
    message = error_of(write(tmp_path, "d.csv", content))
    assert f"line {line} has {fields} field" in message and "header has 2" in message


def test_binary_file(tmp_path):
    assert "binary" in error_of(write(tmp_path, "d.csv", b"a,b\n\x00\x01\x02,3\n"))


@pytest.mark.parametrize("content, hint", [
    (b"PK\x03\x04\x14\x00", "xlsx"),
    ("a,b\n1,2\n".encode("utf-16"), "UTF-16"),
    ("a,b\n1,2\n".encode("utf-16-le"), "UTF-16"),
])
def test_recognisable_non_csv(tmp_path, content, hint):
    assert hint in error_of(write(tmp_path, "d.csv", content))


# (the library names its argument, sep=';'; the command line's catalogue checks --sep ';')
@pytest.mark.parametrize("content, suggestion", [
    ("a;b;c\n1;2;3\n", "sep=';'"),
    ("a;b\n1,5;2,5\n", "sep=';'"),
    ("a\tb\n1\t2\n", "sep='\\t'"),
])
def test_wrong_separator_suggests_one(tmp_path, content, suggestion):
    assert suggestion in error_of(write(tmp_path, "d.csv", content))


def test_wrong_separator_comma_in_tsv(tmp_path):
    assert "sep=','" in error_of(write(tmp_path, "d.tsv", "a,b\n1,2\n"))


def test_duplicate_column_names(tmp_path):
    message = error_of(write(tmp_path, "d.csv", "a,b,a,b,c\n1,2,3,4,5\n"))
    assert "'a', 'b'" in message and "duplicate" in message


def test_unterminated_quote(tmp_path):
    message = error_of(write(tmp_path, "d.csv", 'a,b\n1,2\n3,"oops\n4,5\n6,7\n'))
    assert "never closed" in message and "line 3" in message


def test_bad_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    assert "Parquet" in error_of(write(tmp_path, "d.parquet", b"PAR1 not really"))


def test_bad_gzip(tmp_path):
    assert "gzip" in error_of(write(tmp_path, "d.csv.gz", b"\x1f\x8b\x08broken"))


def test_permission_error_message(tmp_path, monkeypatch):
    path = write(tmp_path, "d.csv", "a\n1\n")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr("mixcli.io.open", refuse, raising=False)  # works even as root
    assert "permission denied" in error_of(path)


# ---------------------------------------------------------------- reading only the columns used

PROJECTED = "y,junk,g,x\n1.5,a,u,2\n2.5,b,v,3\n,c,u,4\n"


def test_only_the_named_columns_are_read_and_they_equal_a_full_reads(tmp_path):
    p = write(tmp_path, "d.csv", PROJECTED)
    full, part = read_table(str(p)), read_table(str(p), columns=["x", "y", "g", "y"])
    assert part.names == ["y", "g", "x"]  # (the file's order)
    for name in part.names:
        a, b = full[name], part[name]
        assert type(a) is type(b)
        if isinstance(a, TextColumn):
            assert text_values(a) == text_values(b)
        else:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("text, columns", [
    (PROJECTED, ["y", "missing"]),  # a name not in the header: its error offers the file's names
    ("y,g,g\n1,a,b\n2,c,d\n", ["y"]),  # a repeated name is refused as before
    ('y,note,g\n1,"open,u\n2,x,v\n', ["y", "g"]),  # an unclosed quote in a column not used
])
def test_every_column_is_read_when_a_projection_could_hide_a_problem(tmp_path, text, columns):
    p = write(tmp_path, "d.csv", text)
    try:
        full = read_table(str(p))
    except DataError as err:
        with pytest.raises(DataError) as again:
            read_table(str(p), columns=columns)
        assert str(again.value) == str(err)
        return
    assert read_table(str(p), columns=columns).names == full.names


def test_a_ragged_row_in_a_column_not_used_is_still_found(tmp_path):
    p = write(tmp_path, "d.csv", "y,junk,g\n1,a,u\n2,b\n3,c,v\n")
    with pytest.raises(DataError) as full:
        read_table(str(p))
    with pytest.raises(DataError) as part:
        read_table(str(p), columns=["y", "g"])
    assert str(part.value) == str(full.value)
