"""The classroom simulator, its CSV writer, the bundled example and `mixcli simulate`."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from click.testing import CliRunner

from mixcli.cli import main
from mixcli.simulate import example_path, simulate_classroom, write_csv


def _csv(columns) -> bytes:
    buf = io.BytesIO()
    write_csv(columns, buf)
    return buf.getvalue()


def test_bundled_example_regenerates_byte_for_byte():
    assert example_path().is_file()
    assert _csv(simulate_classroom()) == example_path().read_bytes()


def test_columns_and_types():
    d = simulate_classroom()
    assert list(d) == ["mathscore", "ses", "classid", "schoolid", "classid2", "pass", "absences"]
    n = len(d["mathscore"])
    assert all(len(v) == n for v in d.values())
    for name in ("mathscore", "classid", "schoolid", "classid2", "pass", "absences"):
        assert d[name].dtype == np.int64
    assert set(np.unique(d["pass"])) == {0, 1} and d["absences"].min() >= 0
    assert d["ses"].dtype == np.float64
    assert np.abs(d["ses"] * 100 - np.rint(d["ses"] * 100)).max() < 1e-9


def test_shape_like_the_classroom_data():
    d = simulate_classroom()
    n = len(d["mathscore"])
    assert 1_000 <= n <= 1_400  # real: 1,190 children
    n_classes = np.unique(d["classid"]).size
    assert 250 <= n_classes <= 370  # real: 312 classes
    np.testing.assert_array_equal(np.unique(d["schoolid"]), np.arange(1, 108))  # 107 schools
    # classid2 is reused across schools: it numbers classes 1..k within each school
    assert np.unique(d["classid2"]).size < n_classes
    assert d["classid2"].min() == 1
    assert np.unique(d["schoolid"][d["classid2"] == 1]).size == 107
    # classid runs 1..C
    np.testing.assert_array_equal(np.unique(d["classid"]), np.arange(1, n_classes + 1))
    # classes of 1..10 children, schools of 1..9 classes
    sizes = np.bincount(d["classid"])[1:]
    assert sizes.min() >= 1 and sizes.max() <= 10
    # ses and mathscore in the real data's ballpark
    assert -0.2 < d["ses"].mean() < 0.2 and 0.6 < d["ses"].std() < 0.9
    assert 500 < d["mathscore"].mean() < 545 and 30 < d["mathscore"].std() < 50


def test_classid_is_nested_in_schoolid_and_matches_classid2():
    d = simulate_classroom(n_schools=500, seed=3)
    pairs = np.unique(np.column_stack([d["classid"], d["schoolid"], d["classid2"]]), axis=0)
    # each classid belongs to exactly one (school, class-within-school)
    assert np.unique(pairs[:, 0]).size == len(pairs)
    assert len(np.unique(pairs[:, 1:], axis=0)) == len(pairs)
    # within each school, classid2 is 1..k without gaps
    for school in np.unique(pairs[:, 1])[:50]:
        k = pairs[pairs[:, 1] == school, 2]
        np.testing.assert_array_equal(np.sort(k), np.arange(1, k.size + 1))


def test_classid_does_not_reveal_the_school():
    d = simulate_classroom(n_schools=200, seed=5)
    first = np.unique(d["classid"], return_index=True)[1]
    # if classid were sequential in school order this correlation would be ~1
    assert abs(np.corrcoef(d["classid"][first], d["schoolid"][first])[0, 1]) < 0.3


def test_seed_and_parameters():
    a, b, c = simulate_classroom(seed=1), simulate_classroom(seed=1), simulate_classroom(seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["mathscore"][:50], c["mathscore"][:50])
    quiet = simulate_classroom(n_schools=2000, sd_resid=0.0, sd_class=0.0, sd_school=0.0, sd_school_ses=0.0)
    resid = quiet["mathscore"] - (523 + 11.2 * quiet["ses"])
    assert np.abs(resid).max() <= 0.5 + 1e-9
    with pytest.raises(TypeError, match="unknown parameter"):
        simulate_classroom(sd_pupil=3)
    with pytest.raises(ValueError):
        simulate_classroom(n_schools=0)


def test_random_effects_roughly_recovered():
    # School intercepts: class means of (mathscore - fixed part), averaged per school, vary with SD ~15.4.
    d = simulate_classroom(n_schools=20_000, seed=11, sd_school_ses=0.0, sd_class=0.0, sd_resid=0.0)
    r = d["mathscore"] - (523 + 11.2 * d["ses"])
    school_mean = np.bincount(d["schoolid"], weights=r)[1:] / np.bincount(d["schoolid"])[1:]
    assert abs(school_mean.std() - 15.4) < 0.5


def test_large_simulation_is_fast():
    simulate_classroom(n_schools=1000)  # warm up
    start = time.perf_counter()
    d = simulate_classroom(n_schools=50_000)
    elapsed = time.perf_counter() - start
    assert len(d["mathscore"]) > 500_000
    assert elapsed < 1.0
    start = time.perf_counter()
    _csv(d)
    assert time.perf_counter() - start < 3.0


def test_write_csv_plain_text_and_destinations(tmp_path):
    cols = {
        "i": np.array([1, -2, 30]),
        "f": np.array([0.5, -0.001, np.nan]),
        "t": np.array(["a", None, "b"], dtype=object),
    }
    expected = "i,f,t\n1,0.50,a\n-2,0.00,\n30,,b\n"
    assert _csv(cols).decode() == expected
    path = tmp_path / "x.csv"
    write_csv(cols, path)
    assert path.read_text() == expected
    write_csv(cols, str(path))
    assert path.read_text() == expected
    text = io.StringIO()
    write_csv(cols, text)
    assert text.getvalue() == expected
    with pytest.raises(ValueError):
        write_csv({"a": np.arange(2), "b": np.arange(3)}, io.BytesIO())


def test_cli_stdout_and_file(tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["simulate"])
    assert out.exit_code == 0, out.output
    assert out.stdout_bytes == example_path().read_bytes()
    target = tmp_path / "big.csv"
    out = runner.invoke(main, ["simulate", "--schools", "300", "--seed", "9", "-o", str(target)])
    assert out.exit_code == 0, out.output
    assert target.read_bytes() == _csv(simulate_classroom(n_schools=300, seed=9))
    assert [p.name for p in tmp_path.iterdir()] == ["big.csv"]  # no temp file left behind
    out = runner.invoke(main, ["simulate", "-o", str(tmp_path / "missing" / "x.csv")])
    assert out.exit_code == 1 and "cannot write" in out.output
    assert "Examples" in runner.invoke(main, ["simulate", "--help"]).output


def test_the_outcomes_follow_their_models():
    """Fitted to a large simulation, the GLMMs recover the generating parameters."""
    from mixcli import fit
    from mixcli.family import family

    d = simulate_classroom(n_schools=1500, seed=3)
    m = fit(d, "pass ~ ses + (1 | schoolid) + (1 | classid)", family=family("binomial"))
    assert m.coef["(Intercept)"] == pytest.approx(-0.4, abs=0.1) and m.coef["ses"] == pytest.approx(0.8, abs=0.1)
    sd = {v.group: v.sd for v in m.varcorr}
    # (with 1-10 children per class, binary data say little about the class SD: 0.31 here)
    assert sd["schoolid"] == pytest.approx(0.7, abs=0.1) and 0.15 < sd["classid"] < 0.65
    c = fit(d, "absences ~ ses + (1 | schoolid) + (1 | classid)", family=family("poisson"))
    assert c.coef["(Intercept)"] == pytest.approx(1.1, abs=0.05) and c.coef["ses"] == pytest.approx(-0.25, abs=0.05)
    sd = {v.group: v.sd for v in c.varcorr}
    assert sd["schoolid"] == pytest.approx(0.35, abs=0.05) and sd["classid"] == pytest.approx(0.2, abs=0.05)


def test_class_size_gives_larger_classes(tmp_path):
    cols = simulate_classroom(n_schools=2000, seed=3, class_size=25)
    classes, sizes = np.unique(cols["classid"], return_counts=True)
    # 1 + Poisson(24): mean 25, SD √24 ≈ 4.9; the classes per school keep the study's 1-9 (mean 2.95)
    assert abs(sizes.mean() - 25) < 0.3 and sizes.min() >= 1
    assert abs(len(classes) / 2000 - 2.95) < 0.1
    with pytest.raises(ValueError, match="class_size"):
        simulate_classroom(n_schools=5, class_size=0.5)
    out = CliRunner().invoke(main, ["simulate", "--schools", "40", "--class-size", "25", "--format", "parquet",
                                    "--partitions", "2", "-o", str(tmp_path / "d")])
    assert out.exit_code == 0, out.output
    import pyarrow.parquet as pq

    rows = sum(pq.read_table(f).num_rows for f in sorted((tmp_path / "d").glob("*.parquet")))
    assert 40 * 2.95 * 25 * 0.7 < rows < 40 * 2.95 * 25 * 1.3
