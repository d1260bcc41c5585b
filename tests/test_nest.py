"""mixcli nest: nested group IDs appended to a CSV, every other byte unchanged."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import mixcli.nest as nest_module
from mixcli.cli import main
from mixcli.errors import DataError, UsageError
from mixcli.io import read_table
from mixcli.nest import check_report, nest, summary_lines
from mixcli.output import AtomicOutput
from mixcli.table import TextColumn

# The real classroom data, read in place (its licence keeps it out of the repository).
from conftest import CLASSROOM  # noqa: E402  (../shared or $MIXCLI_SHARED)

needs_classroom = pytest.mark.skipif(not CLASSROOM.exists(), reason=f"{CLASSROOM} not available")


def run(*args, input: bytes | None = None):
    result = CliRunner().invoke(main, ["nest", *map(str, args)], input=input)
    return result.exit_code, result.stdout_bytes, result.stderr


def strip_last_field(output: bytes, sep: bytes = b",") -> bytes:
    """Remove the last field of every non-blank line (the new IDs contain no separator), keeping line endings."""
    lines = []
    for line in output.splitlines(keepends=True):
        body = line.rstrip(b"\r\n")
        lines.append(body[: body.rfind(sep)] + line[len(body):] if body else line)
    return b"".join(lines)


def write(tmp_path, name, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# ------------------------------------------------------------------ the classroom data


@needs_classroom
def test_classroom_groups_partition_rows_like_classid(tmp_path):
    code, out, err = run(CLASSROOM, "schoolid:classid2")
    assert code == 0, err
    assert "nest: schoolid_classid2: 312 groups from schoolid:classid2" in err
    table = read_table(str(write(tmp_path, "out.csv", out)))
    assert table.names == ["mathscore", "ses", "classid", "schoolid", "classid2", "schoolid_classid2"]
    ids = table["schoolid_classid2"]
    assert isinstance(ids, TextColumn)
    assert not ids.missing.any()
    assert len(np.unique(ids.codes)) == 312
    classid = table["classid"]
    # the same partition: each new ID has one classid and each classid one new ID
    pairs = {(int(g), float(c)) for g, c in zip(ids.codes, classid)}
    assert len(pairs) == 312
    assert len({g for g, _ in pairs}) == 312 and len({c for _, c in pairs}) == 312
    # the values are "<schoolid>:<classid2>" as written
    values = ids.values()
    school, class2 = table["schoolid"], table["classid2"]
    assert all(v == f"{int(s)}:{int(c)}" for v, s, c in zip(values, school, class2))


@needs_classroom
def test_classroom_every_other_byte_round_trips():
    code, out, _ = run(CLASSROOM, "schoolid:classid2")
    assert code == 0
    original = CLASSROOM.read_bytes()
    assert strip_last_field(out) == original
    assert out.count(b"\n") == original.count(b"\n")


@needs_classroom
def test_classroom_stdin_gives_the_same_output():
    _, from_file, _ = run(CLASSROOM, "schoolid:classid2")
    code, from_stdin, err = run("-", "schoolid:classid2", input=CLASSROOM.read_bytes())
    assert code == 0, err
    assert from_stdin == from_file
    assert "312 groups" in err


@needs_classroom
def test_classroom_check_report():
    code, out, err = run("--check", CLASSROOM, "schoolid:classid2", "schoolid:classid")
    assert code == 0, err
    report = out.decode()
    first, second = report.split("\n\n")
    assert "classid2" in first and "reused in more than one schoolid group" in first
    assert "NOT a unique ID" in first
    assert "(1 | classid2) is wrong" in first and "(1 | schoolid/classid2)" in first
    assert "312" in first
    assert "redundant" in second and "already a unique ID" in second
    assert "mathscore" not in report  # no data written


@needs_classroom
def test_classroom_redundant_spec_warns(tmp_path):
    code, out, err = run(CLASSROOM, "schoolid:classid2", "schoolid:classid")
    assert code == 0
    assert "warning: schoolid:classid is redundant" in err
    assert "warning: schoolid:classid2" not in err
    header = out.split(b"\n", 1)[0]
    assert header.endswith(b",schoolid_classid2,schoolid_classid")


@needs_classroom
def test_classroom_stats_api():
    stats = nest(str(CLASSROOM), ["schoolid:classid2", "schoolid:classid"], check=True)
    nested, redundant = stats
    assert (nested.groups, nested.outer_groups, nested.rows, nested.missing) == (312, 107, 1190, 0)
    assert nested.reused_labels > 0 and not nested.redundant
    assert nested.inner_labels == len(set(np.asarray(read_table(str(CLASSROOM))["classid2"]).tolist()))
    assert redundant.redundant and redundant.inner_labels == 312 and redundant.reused_labels == 0
    assert "redundant" in check_report(stats)
    assert summary_lines(stats)[0] == "nest: schoolid_classid2: 312 groups from schoolid:classid2"


# ------------------------------------------------------------------ -o


@needs_classroom
def test_output_onto_input_replaces_it_on_success(tmp_path):
    data = write(tmp_path, "classroom.csv", CLASSROOM.read_bytes())
    os.chmod(data, 0o640)
    _, expected, _ = run(data, "schoolid:classid2")
    code, out, err = run(data, "schoolid:classid2", "-o", data)
    assert code == 0, err
    assert out == b""
    assert data.read_bytes() == expected
    assert stat.S_IMODE(data.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classroom.csv"]


@pytest.mark.parametrize("content, args", [
    (b"a,b\n1,2\n3,4,5\n", ["a:b"]),  # ragged row
    (b"a,b\n1,2\n", ["a:c"]),  # unknown column
    (b"a,b\n1,2\n", ["a:b", "--name", "a"]),  # the new name exists
    (b"a,b\n1:2,3\n1,2:3\n", ["a:b"]),  # ambiguous identifiers
])
def test_output_onto_input_leaves_it_intact_on_failure(tmp_path, content, args):
    data = write(tmp_path, "d.csv", content)
    code, out, _ = run(data, *args, "-o", data)
    assert code in (1, 2)
    assert out == b""
    assert data.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["d.csv"]


def test_interrupt_while_writing_leaves_input_and_no_temp_file(tmp_path, monkeypatch):
    content = b"s,c\n" + b"".join(b"%d,%d\n" % (i // 3, i % 3) for i in range(3000))
    data = write(tmp_path, "d.csv", content)
    writes = []

    def interrupted_write(self, chunk):
        writes.append(len(chunk))
        if len(writes) == 2:
            raise KeyboardInterrupt
        self.handle.write(chunk)

    monkeypatch.setattr(AtomicOutput, "write", interrupted_write)
    code, out, err = run(data, "s:c", "-o", data)
    assert code == 130 and "interrupted" in err
    assert data.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir()] == ["d.csv"]


def test_output_to_new_file_and_bad_targets(tmp_path):
    data = write(tmp_path, "d.csv", "s,c\n1,1\n2,1\n")
    target = tmp_path / "out.csv"
    code, out, err = run(data, "s:c", "-o", target)
    assert code == 0 and out == b""
    assert target.read_bytes() == b"s,c,s_c\n1,1,1:1\n2,1,2:1\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    code, _, err = run(data, "s:c", "-o", tmp_path)
    assert code == 1 and "is a directory" in err
    code, _, err = run(data, "s:c", "-o", tmp_path / "no/such/dir/out.csv")
    assert code == 1 and "cannot write" in err


def test_check_with_output_is_usage_error(tmp_path):
    data = write(tmp_path, "d.csv", "s,c\n1,1\n")
    code, out, err = run("--check", data, "s:c", "-o", tmp_path / "x.csv")
    assert code == 2 and out == b""
    assert not (tmp_path / "x.csv").exists()


# ------------------------------------------------------------------ byte-exact editing


QUOTED_CRLF = (
    b'id,"school, name",class,note\r\n'
    b'1,"Hill, North",1,"said ""hi"", left"\r\n'
    b'2,"Hill, North",2,plain\r\n'
    b'3,South,1,"two\r\nlines"\r\n'
    b'4,"South",2,\r\n'
)


def test_quoted_fields_and_crlf_round_trip(tmp_path):
    data = write(tmp_path, "q.csv", QUOTED_CRLF)
    code, out, err = run(data, "school, name:class", "--name", "sc")
    assert code == 0, err
    assert out == (
        b'id,"school, name",class,note,sc\r\n'
        b'1,"Hill, North",1,"said ""hi"", left","Hill, North:1"\r\n'
        b'2,"Hill, North",2,plain,"Hill, North:2"\r\n'
        b'3,South,1,"two\r\nlines",South:1\r\n'
        b'4,"South",2,,South:2\r\n'
    )
    assert "4 groups" in err
    table = read_table(str(write(tmp_path, "out.csv", out)))
    assert list(table["sc"].values()) == ["Hill, North:1", "Hill, North:2", "South:1", "South:2"]
    assert list(table["note"].values()) == ['said "hi", left', "plain", "two\r\nlines", None]


def test_missing_values_leave_the_field_empty(tmp_path):
    data = write(tmp_path, "d.csv", 's,c,y\n1,1,5\n1,NA,6\n,2,7\n"",2,8\n"NA",1,9\n2,1,10\n')
    code, out, err = run(data, "s:c")
    assert code == 0
    assert out == b's,c,y,s_c\n1,1,5,1:1\n1,NA,6,\n,2,7,\n"",2,8,\n"NA",1,9,\n2,1,10,2:1\n'
    assert "2 groups" in err and "4 rows missing s or c" in err
    ids = read_table(str(write(tmp_path, "o.csv", out)))["s_c"]
    assert list(ids.values()) == ["1:1", None, None, None, None, "2:1"]


def test_values_are_kept_exactly_as_written(tmp_path):
    data = write(tmp_path, "d.csv", "s,c\n007,1.0\n7,1\n 7,x y\n")
    code, out, _ = run(data, "s:c")
    assert out == b"s,c,s_c\n007,1.0,007:1.0\n7,1,7:1\n 7,x y, 7:x y\n"


def test_blank_lines_last_line_without_newline_and_bom(tmp_path):
    content = b"\xef\xbb\xbfs,c\n\n1,1\n\n2,2"
    code, out, _ = run(write(tmp_path, "d.csv", content), "s:c")
    assert code == 0
    assert out == b"\xef\xbb\xbfs,c,s_c\n\n1,1,1:1\n\n2,2,2:2"


def test_non_utf8_bytes_are_kept(tmp_path):
    content = "école,c\ncafé,1\nnaïve,2\n".encode("cp1252")
    code, out, err = run(write(tmp_path, "d.csv", content), "école:c")
    assert code == 0, err
    assert out == "école,c,école_c\ncafé,1,café:1\nnaïve,2,naïve:2\n".encode("cp1252")


def test_tsv_and_sep_option(tmp_path):
    code, out, _ = run(write(tmp_path, "d.tsv", "s\tc\n1\t2\n"), "s:c")
    assert out == b"s\tc\ts_c\n1\t2\t1:2\n"
    code, out, _ = run(write(tmp_path, "d.txt", "s;c\n1;2\n"), "s:c", "--sep", ";")
    assert out == b"s;c;s_c\n1;2;1:2\n"
    code, out, err = run(write(tmp_path, "e.txt", "s;c\n1;2\n"), "s:c")
    assert code == 1 and "--sep ';'" in err and out == b""


def test_several_specs_and_names(tmp_path):
    data = write(tmp_path, "d.csv", "a,b,c\n1,1,1\n1,2,1\n2,1,2\n")
    code, out, err = run(data, "a:b", "b:c", "--name", "ab", "--name", "bc")
    assert code == 0, err
    assert out == b"a,b,c,ab,bc\n1,1,1,1:1,1:1\n1,2,1,1:2,2:1\n2,1,2,2:1,1:2\n"
    assert "nest: ab: 3 groups from a:b" in err and "nest: bc: 3 groups from b:c" in err


def test_column_names_with_colons(tmp_path):
    data = write(tmp_path, "d.csv", "a:x,b\n1,2\n")
    code, out, _ = run(data, "a:x:b")
    assert code == 0 and out == b"a:x,b,a:x_b\n1,2,1:2\n"


ODD_FILES = {
    "quoted.csv": QUOTED_CRLF,
    "stray_quote.csv": b'h,s,c\n5\'11",1,1\n6\'0",1,2\n"x",2,1\n',
    "needs_quoting.csv": b's,c\n"a,b",1\n"q""x",2\n"m\nn",3\n',
    "plain.csv": b"s,c,y\n1,1,2\n\n2,1,3\r\n",
}


@pytest.mark.parametrize("name", sorted(ODD_FILES))
def test_line_by_line_path_gives_the_same_bytes(tmp_path, monkeypatch, name):
    data = write(tmp_path, name, ODD_FILES[name])
    spec = "school, name:class" if name == "quoted.csv" else "s:c"
    code, fast, _ = run(data, spec)
    assert code == 0
    monkeypatch.setattr(nest_module, "_scan_arrow", lambda *args: None)
    code, slow, _ = run(data, spec)
    assert code == 0
    assert fast == slow
    assert read_table(str(write(tmp_path, "out.csv", fast))).nrows == read_table(str(data)).nrows


def test_stray_quote_in_unquoted_field(tmp_path):
    _, out, _ = run(write(tmp_path, "d.csv", ODD_FILES["stray_quote.csv"]), "s:c")
    assert out == b'h,s,c,s_c\n5\'11",1,1,1:1\n6\'0",1,2,1:2\n"x",2,1,2:1\n'


def test_new_values_are_quoted_when_needed(tmp_path):
    _, out, _ = run(write(tmp_path, "d.csv", ODD_FILES["needs_quoting.csv"]), "s:c")
    assert out == b's,c,s_c\n"a,b",1,"a,b:1"\n"q""x",2,"q""x:2"\n"m\nn",3,"m\nn:3"\n'


def test_large_file_fast_path_matches_line_by_line(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    n = 200_000
    s = rng.integers(1, 500, n)
    c = rng.integers(1, 6, n)
    rows = [f"{a},{b},{x:.3f}" for a, b, x in zip(s.tolist(), c.tolist(), rng.normal(size=n).tolist())]
    rows[10] = "NA,1,0"
    rows[500] = ""
    content = ("s,c,x\n" + "\n".join(rows) + "\n").encode()
    data = write(tmp_path, "big.csv", content)
    fast = nest(str(data), ["s:c"], output=str(tmp_path / "fast.csv"))
    monkeypatch.setattr(nest_module, "_scan_arrow", lambda *args: None)
    slow = nest(str(data), ["s:c"], output=str(tmp_path / "slow.csv"))
    assert (tmp_path / "fast.csv").read_bytes() == (tmp_path / "slow.csv").read_bytes()
    assert fast == slow
    assert fast[0].missing == 1 and fast[0].rows == n - 1
    assert fast[0].groups == len({(a, b) for k, (a, b) in enumerate(zip(s.tolist(), c.tolist())) if k not in (10, 500)})
    assert strip_last_field((tmp_path / "fast.csv").read_bytes()) == content


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("args, code, message", [
    (["s:cls"], 2, "no column 'cls'"),
    (["S:c"], 2, "did you mean 's'"),
    (["school:c"], 2, "no column 'school'"),
    (["sc"], 2, "malformed spec"),
    (["s:"], 2, "malformed spec"),
    (["s:s"], 2, "same column twice"),
    (["s:c", "--name", "y"], 2, "already exists"),
    (["s:c", "s:c"], 2, "both create column 's_c'"),
    (["s:c", "c:s", "--name", "x"], 2, "once per spec"),
    (["s:c", "--sep", "ab"], 2, "single character"),
])
def test_usage_errors(tmp_path, args, code, message):
    data = write(tmp_path, "d.csv", "s,c,y\n1,1,2\n")
    got, out, err = run(data, *args)
    assert got == code
    assert out == b""
    assert message in err
    assert err.startswith("mixcli: error: ") and err.count("\n") == 1


def test_unknown_column_suggests_closest(tmp_path):
    data = write(tmp_path, "d.csv", "schoolid,classid2\n1,1\n")
    _, _, err = run(data, "schoolid:clasid2")
    assert "did you mean 'classid2'?" in err


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"\n\n", "only blank lines"),
    (b"s,c\n", "no data rows"),
    (b"s,c\n1,2\n3,4\n5\n", "line 4 has 1 field but the header has 2"),
    (b"s,c\n1,2\n3,4,5\n", "line 3 has 3 fields"),
    (b's,c\n1,2\n3,"oops\n4,5\n', "starting on line 3 is never closed"),
    (b"s,c\r1,2\r", "carriage return"),
    (b"s,c\n1,2\r3,4\n", "line 2: a carriage return"),
    (b"s,c,s\n1,2,3\n", "appears more than once"),
    (b"PK\x03\x04xx", "xlsx"),
    (b"s,c\n\x00\x01,2\n", "binary"),
])
def test_data_errors(tmp_path, content, message):
    got, out, err = run(write(tmp_path, "d.csv", content), "s:c")
    assert got == 1, err
    assert out == b""
    assert message in err
    assert err.startswith("mixcli: error: ") and err.count("\n") == 1


def test_missing_file_and_directory(tmp_path):
    got, out, err = run(tmp_path / "nope.csv", "s:c")
    assert got == 1 and out == b"" and "no such file" in err
    got, out, err = run(tmp_path, "s:c")
    assert got == 1 and "is a directory" in err


def test_library_raises_typed_errors(tmp_path):
    data = write(tmp_path, "d.csv", "s,c\n1,2\n")
    with pytest.raises(UsageError):
        nest(str(data), ["s:x"], check=True)
    with pytest.raises(DataError):
        nest(str(write(tmp_path, "e.csv", "s,c\n")), ["s:c"], check=True)


def test_importing_nest_stays_light():
    import subprocess
    import sys

    code = "import sys, mixcli.nest; print(sorted(m for m in ('numpy', 'pandas', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
