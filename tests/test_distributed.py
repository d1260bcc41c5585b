"""--engine dask: a dataset's fit from per-part sums on a Dask cluster equals the in-memory fit.

The oracle is mixcli's in-memory fit of the same rows (one CSV): the criterion to 1e-8
relative, the estimates, SEs, Satterthwaite df and variance components. The datasets are
small multi-part Parquet directories written here, with the rows shuffled across the parts
so that every factor's levels (grouping and fixed) appear in several parts, a factor level
that one part lacks, missing values and prior weights.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

from mixcli.distributed import fit_dataset  # noqa: E402
from mixcli.fitting import fit_frame  # noqa: E402
from mixcli.frame import model_frame  # noqa: E402
from mixcli.io import read_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIM = ROOT / "mixcli" / "data" / "classroom_sim.csv"


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """classroom_sim.csv with a crossed factor, a text factor (one level absent from the first
    part), a slope, weights and missing values; as one CSV and as 4 shuffled Parquet parts."""
    root = tmp_path_factory.mktemp("dataset")
    df = pd.read_csv(SIM)
    rng = np.random.default_rng(7)
    df["item"] = rng.integers(0, 20, len(df))
    df["grp"] = rng.choice(["a", "b", "c"], len(df))
    df["x2"] = rng.normal(size=len(df))
    df["w"] = rng.uniform(0.5, 2.0, len(df))
    df.loc[rng.random(len(df)) < 0.02, "ses"] = np.nan
    df.to_csv(root / "all.csv", index=False)
    parts = np.array_split(rng.permutation(len(df)), 4)
    (root / "ds").mkdir()
    for i, idx in enumerate(parts):
        part = df.iloc[np.sort(idx)]
        if i == 0:
            part = part[part["grp"] != "c"]  # a level this part lacks
        part.to_parquet(root / "ds" / f"part{i}.parquet")
    kept = pd.concat([pd.read_parquet(root / "ds" / f"part{i}.parquet") for i in range(4)])
    kept.to_csv(root / "kept.csv", index=False)
    return root


def assert_same_fit(a, b):
    assert b.criterion == pytest.approx(a.criterion, rel=1e-8)
    assert b.nobs == a.nobs and b.n_dropped == a.n_dropped
    assert [f.term for f in b.fixef] == [f.term for f in a.fixef]
    for x, y in zip(a.fixef, b.fixef):
        assert y.estimate == pytest.approx(x.estimate, rel=1e-5, abs=1e-6 * abs(a.fixef[0].estimate))
        assert y.se == pytest.approx(x.se, rel=1e-5)
        if x.df is not None:
            assert y.df == pytest.approx(x.df, rel=1e-4)
    scale = max(v.variance for v in a.varcorr)
    for x, y in zip(a.varcorr, b.varcorr):
        assert (y.group, y.term) == (x.group, x.term)
        assert y.variance == pytest.approx(x.variance, rel=1e-4, abs=1e-6 * scale)
    assert b.ngroups == a.ngroups


MODELS = [
    ("mathscore ~ ses + (ses | schoolid) + (1 | classid)", None),  # nested, a correlated slope
    ("mathscore ~ ses + grp + (1 | schoolid/classid)", "w"),  # nested by /, weights, a text factor
    ("mathscore ~ ses + grp + (1 | classid) + (x2 | item)", None),  # crossed with a slope
    ("mathscore ~ ses + (1 | classid) + (1 | item) + (0 + grp | schoolid)", None),  # factor slope
]


@pytest.mark.parametrize("formula,weights", MODELS)
def test_dask_fit_equals_in_memory(client, data, formula, weights):
    a = fit_frame(model_frame(read_table(str(data / "kept.csv")), formula, weights=weights)).add_satterthwaite()
    b = fit_dataset(str(data / "ds"), formula, weights=weights, client=client).add_satterthwaite()
    assert_same_fit(a, b)


def test_ml_and_ranef(client, data):
    formula = "mathscore ~ ses + (1 | schoolid) + (1 | classid)"
    a = fit_frame(model_frame(read_table(str(data / "kept.csv")), formula), reml=False)
    b = fit_dataset(str(data / "ds" / "*.parquet"), formula, reml=False, client=client)
    assert_same_fit(a, b)
    ra, rb = a.ranef(), b.ranef()
    for ta, tb in zip(ra, rb):
        assert ta.levels == tb.levels
        np.testing.assert_allclose(tb.values, ta.values, rtol=1e-4, atol=1e-6 * np.abs(ta.values).max())


def test_csv_glob(client, data, tmp_path):
    df = pd.read_csv(data / "kept.csv")
    for i, idx in enumerate(np.array_split(np.arange(len(df)), 3)):
        df.iloc[idx].to_csv(tmp_path / f"p{i}.csv", index=False)
    formula = "mathscore ~ ses + (1 | schoolid)"
    a = fit_frame(model_frame(read_table(str(data / "kept.csv")), formula))
    b = fit_dataset(str(tmp_path / "p*.csv"), formula, client=client)
    assert_same_fit(a, b)


def mixcli(*args, check=True):
    run = subprocess.run([sys.executable, "-m", "mixcli", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert run.returncode == 0, run.stderr
    return run


def test_cli_local_cluster_json(data):
    formula = "mathscore ~ ses + grp + (ses | schoolid) + (1 | classid)"
    mem = json.loads(mixcli("fit", str(data / "kept.csv"), formula, "--weights", "w", "--format", "json").stdout)
    run = mixcli("fit", str(data / "ds"), formula, "--weights", "w", "--format", "json", "--engine", "dask",
                 "--workers", "2")
    dsk = json.loads(run.stdout)
    assert "pass 3/3" in run.stderr
    a, b = (m[0] if isinstance(m, list) else m for m in (mem, dsk))
    assert b["nobs"] == a["nobs"]
    assert b["criterion"] == pytest.approx(a["criterion"], rel=1e-8)
    assert [f["df"] for f in b["fixef"]] == pytest.approx([f["df"] for f in a["fixef"]], rel=1e-4)


def test_cli_augment_writes_a_parquet_dataset(data, tmp_path):
    formula = "mathscore ~ ses + (1 | schoolid) + (1 | classid)"
    run = mixcli("fit", str(data / "ds"), formula, "--engine", "dask", "--workers", "2", "--augment", "-o",
                 str(tmp_path / "rows"))
    assert run.stdout == "" and "pass 4/4" in run.stderr
    got = pd.read_parquet(tmp_path / "rows")
    mem = pd.read_csv(io.StringIO(mixcli("fit", str(data / "kept.csv"), formula, "--augment").stdout))
    np.testing.assert_allclose(got[".fitted"], mem[".fitted"], rtol=1e-6)
    assert list(got.columns) == list(mem.columns)


def test_cli_separate_scheduler_and_workers(data, tmp_path):
    """A `dask scheduler` and two `dask worker` processes started apart, reached with --scheduler."""
    bindir = Path(sys.executable).parent
    dask = str(bindir / "dask")
    if not os.path.exists(dask):
        pytest.skip("the dask command is not installed")
    sfile = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([dask, "scheduler", "--port", "0", "--no-dashboard", "--scheduler-file", str(sfile)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(100):
            if sfile.exists() and sfile.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(sfile.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        formula = "mathscore ~ ses + (1 | item) + (1 | classid)"
        mem = json.loads(mixcli("fit", str(data / "kept.csv"), formula, "--format", "json").stdout)
        dsk = json.loads(mixcli("fit", str(data / "ds"), formula, "--format", "json", "--engine", "dask",
                                "--scheduler", address).stdout)
        a, b = (m[0] if isinstance(m, list) else m for m in (mem, dsk))
        assert b["criterion"] == pytest.approx(a["criterion"], rel=1e-8)
        assert [f["estimate"] for f in b["fixef"]] == pytest.approx([f["estimate"] for f in a["fixef"]], rel=1e-5)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_compare_on_the_cluster_equals_compare_in_memory(client, data):
    # lme4's anova(m1, m2) by ML: the same npar, logLik, chisq and p as the in-memory compare of the
    # rows the parts hold; models using other variables after rows were dropped are refused
    from mixcli.comparison import compare_models
    from mixcli.distributed import compare_dataset
    from mixcli.errors import DataError

    formulas = ["mathscore ~ ses + (1 | schoolid)", "mathscore ~ ses + (1 | schoolid) + (1 | classid)",
                "mathscore ~ ses + (ses | schoolid) + (1 | classid)"]
    a = compare_models(read_table(str(data / "kept.csv")), formulas)
    b = compare_dataset(str(data / "ds"), formulas, client=client)
    assert [r.name for r in b.rows] == [r.name for r in a.rows]
    for x, y in zip(a.rows, b.rows):
        assert y.npar == x.npar
        assert y.model.loglik == pytest.approx(x.model.loglik, rel=1e-9)
        if x.df:
            assert y.chisq == pytest.approx(x.chisq, rel=1e-5, abs=1e-7)
            assert y.p == pytest.approx(x.p, rel=1e-5)
            assert y.p_mixture == pytest.approx(x.p_mixture, rel=1e-5)
    # ses2: as many values missing as ses, in other rows: the same count of rows, not the same rows
    df = pd.read_csv(data / "kept.csv")
    df["ses2"] = np.roll(df["ses"].to_numpy(), 7)
    (data / "roll").mkdir(exist_ok=True)
    df.to_parquet(data / "roll" / "part0.parquet")
    with pytest.raises(DataError, match="different variables"):
        compare_dataset(str(data / "roll"), ["mathscore ~ ses + (1 | schoolid)", "mathscore ~ ses2 + (1 | schoolid)"],
                        client=client)


def test_augment_writes_the_rows_of_the_in_memory_augment(client, data, tmp_path):
    """fit --augment on the cluster: each part's rows used, every column, with .fitted, .fixed,
    .resid and .resid_pearson; read back in the parts' order they are the in-memory augment of
    the same rows (weights and a missing predictor included), nothing left beside the directory."""
    from mixcli.inference.predictions import augment

    formula = "mathscore ~ ses + grp + (ses | schoolid) + (1 | classid) + (1 | item)"
    out = tmp_path / "rows"
    fit_dataset(str(data / "ds"), formula, weights="w", client=client, augment=str(out))
    got = pd.read_parquet(out)
    assert sorted(os.listdir(out)) == [f"part.{i:05d}.parquet" for i in range(4)]
    assert os.listdir(tmp_path) == ["rows"]
    frame = model_frame(read_table(str(data / "kept.csv")), formula, weights="w", keep_data=True)
    m = fit_frame(frame, reml=True)
    want = augment(m)
    assert len(got) == m.nobs
    kept = pd.read_csv(data / "kept.csv").loc[frame.rows].reset_index(drop=True)
    np.testing.assert_array_equal(got["mathscore"], kept["mathscore"])
    assert list(got["grp"]) == list(kept["grp"])
    scale = float(np.std(want[".fitted"]))
    for name, v in want.items():
        np.testing.assert_allclose(got[name], v, rtol=0, atol=1e-5 * (scale if name != ".resid_pearson" else 1.0),
                                   err_msg=name)
    with pytest.raises(Exception, match="not empty"):
        fit_dataset(str(data / "ds"), formula, weights="w", client=client, augment=str(out))


@pytest.mark.parametrize("formula", [MODELS[0][0], MODELS[2][0]])
def test_kenward_roger_from_the_sums_equals_in_memory(client, data, formula):
    """pbkrtest's df and adjusted SEs need only ZᵀZ, ZᵀX and XᵀX: from a dataset's sums they are
    the in-memory fit's (nested with a correlated slope; crossed with a slope)."""
    from mixcli.inference.kenward_roger import kenward_roger

    m = fit_dataset(str(data / "ds"), formula, client=client)
    mem = fit_frame(model_frame(read_table(str(data / "kept.csv")), formula), reml=True)
    a, b = kenward_roger(mem).t_tests(), kenward_roger(m).t_tests()
    assert [x.term for x in a] == [y.term for y in b]
    for x, y in zip(a, b):
        assert y.df == pytest.approx(x.df, rel=1e-5)
        assert y.se == pytest.approx(x.se, rel=1e-5)
    weighted = fit_dataset(str(data / "ds"), formula, weights="w", client=client)
    with pytest.raises(ValueError, match="prior weights"):
        kenward_roger(weighted)


def test_a_failed_augment_pass_leaves_nothing_written(client, data, tmp_path, monkeypatch):
    """A part failing while the workers write (here: a worker's error on the third part) is one
    error line, and neither the directory nor its hidden partial twin is left behind."""
    import mixcli.partition as partition
    from mixcli.errors import DataError

    real = partition.augment_part

    def failing(pdf, index, *args):
        if index == 2:
            raise OSError("disk full")
        return real(pdf, index, *args)

    monkeypatch.setattr(partition, "augment_part", failing)  # (the LocalCluster's workers are threads here)
    with pytest.raises(DataError, match="failed while writing the augmented rows.*disk full.*nothing was written"):
        fit_dataset(str(data / "ds"), "mathscore ~ ses + (1 | schoolid)", client=client, augment=str(tmp_path / "rows"))
    assert os.listdir(tmp_path) == []
