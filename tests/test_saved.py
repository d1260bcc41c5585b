"""Saved fits (mixcli.saved): the oracle is the live fit — a saved and reloaded fit must give its
predictions, marginal means, conditional modes and comparison table to the last digit; and every
file that is not a saved fit of this schema is one clear error, without running any code."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import mixcli
from mixcli.comparison import compare_fits, compare_models
from mixcli.errors import DataError, UsageError
from mixcli.inference.emmeans import emmeans
from mixcli.inference.predictions import predict
from mixcli.render.compare import records
from mixcli.saved import SCHEMA
from mixcli.simulate import example_path
from mixcli.table import Table

from conftest import FIXTURES, cached_table, run_cli


def _roundtrip(m, tmp_path, name="m.mixfit", cond_var=True):
    path = tmp_path / name
    m.save(str(path), cond_var=cond_var)
    return mixcli.load(str(path))


def _new_rows(table: Table, n: int, changes: dict) -> Table:
    """The first ``n`` rows of ``table``, some cells changed (unseen levels, missing values)."""
    cols = {}
    for name, col in table.columns.items():
        values = list(col.values()[:n]) if hasattr(col, "codes") else [float(v) for v in np.asarray(col)[:n]]
        for (row, column), value in changes.items():
            if column == name:
                values[row] = value
        cols[name] = values
    return Table.from_mapping(cols)


def _same_prediction(a, b):
    for field in ("predicted", "se", "lower", "upper"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)
    assert a.new_levels == b.new_levels and a.missing == b.missing


PREDICT_OPTIONS = [{}, {"se": True}, {"population": True, "se": True}, {"interval": "prediction"},
                   {"population": True, "interval": "prediction"}]


@pytest.mark.parametrize("csv, formula, changes", [
    # numeric grouping columns; an unseen school, an unseen class, a missing predictor
    (example_path(), "mathscore ~ ses + (ses | schoolid) + (1 | classid)",
     {(0, "schoolid"): 9999.0, (1, "classid"): 123456.0, (2, "ses"): float("nan")}),
    # an interaction grouping factor whose columns another term uses too; a district:school pair never fitted
    ("nested3.csv", "y ~ x + (1 | district/school)", {(0, "school"): 1.0, (0, "district"): 1.0, (3, "school"): 99.0}),
    # text grouping columns and a text factor among the fixed effects
    ("crossed.csv", "rt ~ cond * freq + (1 | subj) + (cond | item)", {(0, "subj"): "s999", (1, "item"): "i77"}),
])
def test_predictions_equal_the_live_fits(tmp_path, csv, formula, changes):
    table = cached_table(csv)
    m = mixcli.fit(table, formula)
    s = _roundtrip(m, tmp_path)
    new = _new_rows(table, 12, changes)
    for options in PREDICT_OPTIONS:
        _same_prediction(predict(m, new, **options), predict(s, new, **options))
    live, saved = m.ranef(), s.ranef()
    for a, b in zip(live, saved):
        assert a.levels == b.levels and a.names == b.names
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.sd, b.sd)


def test_glmm_predictions_equal_the_live_fits(tmp_path):
    table = cached_table("glmm_binary.csv")
    m = mixcli.fit(table, "pass ~ ses + sex + (1 | schoolid/classid)", family="binomial")
    s = _roundtrip(m, tmp_path, cond_var=False)
    new = _new_rows(table, 10, {(0, "classid"): 999.0})
    for options in [{}, {"se": True}, {"type": "response"}, {"population": True, "se": True}]:
        _same_prediction(predict(m, new, **options), predict(s, new, **options))


@pytest.mark.parametrize("csv, formula, family, options", [
    ("categorical.csv", "y ~ recipe * temp + (1 | batch)", None, {"specs": ["recipe"], "contrast": "pairwise"}),
    ("categorical.csv", "y ~ recipe * sex + region + (1 | batch)", None,
     {"specs": ["recipe"], "by": ["sex"], "contrast": "trt.vs.ctrl", "joint": True}),
    ("categorical.csv", "y ~ region + temp + (temp | batch)", None, {"specs": ["region"], "contrast": "poly"}),
    ("categorical.csv", "y ~ recipe * temp + (1 | batch)", None, {"specs": ["recipe"], "at": {"temp": [180, 220]}}),
    ("glmm_crossed.csv", "r2 ~ btype * mode + (1 | subj) + (1 | item)", "binomial",
     {"specs": ["btype"], "by": ["mode"], "contrast": "pairwise", "type": "response", "joint": True}),
    # stateful terms: their knots, coefficients and centring are kept in the file
    ("categorical.csv", "y ~ recipe * ns(temp, df = 2) + poly(temp, 2, raw = TRUE) + (scale(temp) | batch)", None,
     {"specs": ["recipe"], "contrast": "pairwise", "at": {"temp": [170, 200, 240]}}),
    # nested factors and an aliased column: the occurring cells and the null basis are kept
    ("nested_fixed.csv", "y ~ route + drug + weight + (1 | herd)", None, {"specs": ["route"], "contrast": "pairwise"}),
])
def test_emmeans_equal_the_live_fits(tmp_path, csv, formula, family, options):
    m = mixcli.fit(cached_table(csv), formula, family=family)
    s = _roundtrip(m, tmp_path, cond_var=False)
    a, b = emmeans(m, **options), emmeans(s, **options)
    assert a.means == b.means
    assert a.contrasts == b.contrasts and a.joint == b.joint
    assert (a.mean_notes, a.contrast_notes, a.joint_notes, a.warnings) == (
        b.mean_notes, b.contrast_notes, b.joint_notes, b.warnings)


def test_compare_tables_equal_the_live_comparisons(tmp_path):
    table = cached_table(example_path())
    formulas = ["mathscore ~ ses + (1 | schoolid)", "mathscore ~ ses + (ses | schoolid)",
                "mathscore ~ ses + (ses | schoolid) + (1 | classid)"]
    # a default comparison (by ML) from fits saved by ML, listed in another order
    saved = [_roundtrip(mixcli.fit(table, f, reml=False), tmp_path, f"ml{i}.mixfit", cond_var=False)
             for i, f in enumerate(formulas)]
    live = compare_models(table, formulas, names=["a", "b", "c"])
    assert records(compare_fits([saved[2], saved[0], saved[1]], names=["c", "a", "b"])) == records(live)
    # REML fits of the same fixed effects (refit=False)
    reml = [_roundtrip(mixcli.fit(table, f), tmp_path, f"reml{i}.mixfit", cond_var=False) for i, f in enumerate(formulas)]
    assert records(compare_fits(reml, refit=False)) == records(compare_models(table, formulas, refit=False))
    with pytest.raises(UsageError, match=r"REML fit; a comparison refits by ML"):
        compare_fits(reml)
    # GLMMs (maximum likelihood already)
    binary = cached_table("glmm_binary.csv")
    gforms = ["pass ~ ses + (1 | schoolid)", "pass ~ ses + (1 | schoolid/classid)"]
    from mixcli.family import family

    gsaved = [_roundtrip(mixcli.fit(binary, f, family="binomial"), tmp_path, f"g{i}.mixfit", cond_var=False)
              for i, f in enumerate(gforms)]
    assert records(compare_fits(gsaved)) == records(compare_models(binary, gforms, family=family("binomial")))


def test_compare_refuses_fits_of_other_data(tmp_path):
    table = cached_table(example_path())
    other = Table.from_mapping({name: (col.values() if hasattr(col, "codes") else np.asarray(col))[:800]
                                for name, col in table.columns.items()})
    a = _roundtrip(mixcli.fit(table, "mathscore ~ ses + (1 | schoolid)", reml=False), tmp_path, "a.mixfit", False)
    b = _roundtrip(mixcli.fit(other, "mathscore ~ ses + (ses | schoolid)", reml=False), tmp_path, "b.mixfit", False)
    with pytest.raises(DataError, match=r"b.mixfit \(m2\) is a fit of other data than .*a.mixfit \(m1\)"):
        compare_fits([a, b])


def test_bad_files_are_one_clear_error(tmp_path):
    m = mixcli.fit(cached_table("categorical.csv"), "y ~ recipe + (1 | batch)")
    good = tmp_path / "good.mixfit"
    m.save(str(good))
    # another schema version: the same file with its header's version changed
    with np.load(good, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(bytes(arrays["header"]).decode())
    header["schema"] = SCHEMA + 1
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    old = tmp_path / "old.mixfit"
    with open(old, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(DataError, match=rf"schema version {SCHEMA + 1}; this mixcli reads version {SCHEMA}"):
        mixcli.load(str(old))
    # not a saved fit: a CSV, an npz of other arrays, a zip of something else
    text = tmp_path / "data.csv"
    text.write_text("y,x\n1,2\n")
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "hello")
    for path in (text, other, archive):
        with pytest.raises(DataError, match="not a mixcli saved fit"):
            mixcli.load(str(path))
    # a file that would run code on loading (a pickled object array) is refused, not unpickled
    crafted = tmp_path / "crafted.mixfit"
    buf = io.BytesIO()
    np.savez(buf, header=np.array([{"format": "mixcli-fit"}], dtype=object))
    crafted.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="holds Python objects"):
        mixcli.load(str(crafted))


def test_what_a_saved_fit_cannot_do_says_so(tmp_path):
    table = cached_table("categorical.csv")
    s = _roundtrip(mixcli.fit(table, "y ~ recipe + (1 | batch)"), tmp_path, cond_var=False)
    with pytest.raises(UsageError, match="Kenward-Roger df need the fit's rows"):
        emmeans(s, ["recipe"], ddf="kr")
    with pytest.raises(UsageError, match="saved without the random effects' conditional variances"):
        predict(s, _new_rows(table, 3, {}), interval="prediction")
    # a population-level interval needs no conditional variances
    assert predict(s, _new_rows(table, 3, {}), population=True, interval="prediction").lower is not None


def test_the_file_grows_with_levels_not_rows(tmp_path):
    """No rows are kept: the same model on the data with every row twice (the same levels, twice
    the rows) saves to a file of the same size, give or take compression."""
    from mixcli.simulate import simulate_classroom

    data = simulate_classroom(300, 5)
    twice = {name: np.concatenate([np.asarray(v), np.asarray(v)]) for name, v in data.items()}
    sizes = []
    for i, d in enumerate((data, twice)):
        path = tmp_path / f"sim{i}.mixfit"
        mixcli.fit(d, "mathscore ~ ses + (ses | schoolid) + (1 | classid)").save(str(path), cond_var=True)
        sizes.append(path.stat().st_size)
    assert abs(sizes[1] - sizes[0]) <= 0.05 * sizes[0]


def test_cli_saved_fit_writes_what_the_refit_writes(tmp_path):
    data = str(example_path())
    formula = "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
    saved = str(tmp_path / "m.mixfit")
    new = tmp_path / "new.csv"
    new.write_text("ses,schoolid,classid\n0.5,1,1\n-1.2,9999,1\n0.1,2,31\n")
    assert run_cli("fit", data, formula, "--save", saved, "--cond-var", "--format", "json").returncode == 0
    refit = run_cli("predict", data, formula, "--newdata", str(new), "--se", "--interval", "prediction")
    loaded = run_cli("predict", "--model", saved, "--newdata", str(new), "--se", "--interval", "prediction")
    assert refit.returncode == loaded.returncode == 0
    assert loaded.stdout == refit.stdout and loaded.stderr == refit.stderr
    both = run_cli("predict", data, formula, "--model", saved, "--newdata", str(new))
    assert both.returncode == 2 and both.stderr.count("\n") == 1 and "--model replaces DATA and FORMULA" in both.stderr


def test_cli_plots_of_a_saved_fit(tmp_path):
    pytest.importorskip("matplotlib")
    data = str(FIXTURES / "data" / "categorical.csv")
    saved = str(tmp_path / "m.mixfit")
    assert run_cli("fit", data, "y ~ recipe * sex + (1 | batch)", "--save", saved, "--cond-var").returncode == 0
    for kind, extra in (("emmeans", ["--specs", "recipe", "--by", "sex"]), ("ranef", [])):
        out = tmp_path / f"{kind}.svg"
        done = run_cli("plot", "--model", saved, "--kind", kind, *extra, "-o", str(out))
        assert done.returncode == 0 and out.read_bytes().startswith(b"<?xml")
