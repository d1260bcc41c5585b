"""Diagnostic plots (mixcli.plot): valid files of the right size, and the numbers plotted
are those of m.ranef(), augment(m), R's qqnorm/qqline and the profile."""

from __future__ import annotations

import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES, ROOT

pytest.importorskip("matplotlib")

import mixcli  # noqa: E402
from mixcli.errors import UsageError  # noqa: E402
from mixcli.inference.predictions import augment  # noqa: E402
from mixcli.plot import KINDS, plot, profile_traces  # noqa: E402

FORMULA = "y ~ x + (x | g) + (1 | a)"
Z95 = 1.959963984540054  # qnorm(0.975)
Z90 = 1.6448536269514722  # qnorm(0.95)


@pytest.fixture(scope="module")
def m():
    return mixcli.fit(str(FIXTURES / "data" / "slopes.csv"), FORMULA)


@pytest.fixture(scope="module")
def drawn(m, tmp_path_factory):
    """Each kind drawn once as PNG: kind -> (PlotData, path)."""
    folder = tmp_path_factory.mktemp("plots")
    out = {}
    for kind in KINDS:
        path = folder / f"{kind}.png"
        out[kind] = (plot(m, kind, str(path)), path)
    return out


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def r_ppoints(n: int) -> np.ndarray:
    a = 3 / 8 if n <= 10 else 1 / 2
    return np.array([(i - a) / (n + 1 - 2 * a) for i in range(1, n + 1)])


def qnorm(p):
    from scipy.stats import norm

    return norm.ppf(p)


# ------------------------------------------------------------------ files
@pytest.mark.parametrize("kind", KINDS)
def test_png_of_each_kind(drawn, kind):
    data, path = drawn[kind]
    assert path.exists() and data.format == "png" and data.kind == kind
    assert png_size(path) == data.pixels == (round(data.width * 120), round(data.height * 120))
    assert FORMULA in data.title
    assert [f for f in os.listdir(path.parent) if f.startswith(".")] == []  # no temporary file left


def test_explicit_size(m, tmp_path):
    path = tmp_path / "r.png"
    data = plot(m, "resid", str(path), width=5, height=4)
    assert png_size(path) == (600, 480) == data.pixels


@pytest.mark.parametrize("ext, magic", [(".svg", b"<svg"), (".pdf", b"%PDF-"), (".PNG", b"\x89PNG")])
def test_other_formats(m, tmp_path, ext, magic):
    path = tmp_path / f"ranef{ext}"
    plot(m, "ranef", str(path))
    body = path.read_bytes()
    if ext == ".svg":
        assert body.lstrip().startswith(b"<?xml") and magic in body[:2000] and body.rstrip().endswith(b"</svg>")
    else:
        assert body.startswith(magic)
    if ext == ".pdf":
        assert body.rstrip().endswith(b"%%EOF")


# ------------------------------------------------------------------ the numbers plotted
@pytest.mark.parametrize("level, q", [(0.95, Z95), (0.90, Z90)])
def test_caterpillar_points_and_bars_are_ranef(m, tmp_path, level, q):
    data = plot(m, "ranef", str(tmp_path / "c.png"), level=level)
    assert data.z == pytest.approx(q, rel=1e-12)
    terms = m.ranef()
    expected = [(t, j) for t in terms for j in range(len(t.names))]
    assert [p.title for p in data.panels] == [f"{t.factor}: {t.names[j]}" for t, j in expected]
    for p, (t, j) in zip(data.panels, expected):
        order = [t.levels.index(lv) for lv in p.labels]
        assert sorted(order) == list(range(len(t.levels)))  # every level once
        first = t.values[order, 0]
        assert np.all(np.diff(first) >= 0)  # ordered by the factor's first term, as lattice
        np.testing.assert_allclose(p.x, t.values[order, j], rtol=0, atol=0)
        np.testing.assert_allclose(p.y, np.arange(len(t.levels)))
        np.testing.assert_allclose(p.lower, t.values[order, j] - q * t.sd[order, j], rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(p.upper, t.values[order, j] + q * t.sd[order, j], rtol=1e-14, atol=1e-14)


def test_resid_points_are_augment(m, drawn):
    a = augment(m)
    (p,) = drawn["resid"][0].panels
    np.testing.assert_array_equal(p.x, a[".fitted"])
    np.testing.assert_array_equal(p.y, a[".resid"])
    assert len(p.x) == m.nobs


def test_qq_is_qqnorm_and_qqline(m, drawn):
    panels = drawn["qq"][0].panels
    resid = augment(m)[".resid"]
    series = [("residuals", resid, None)] + [(f"{t.factor}: {name}", t.values[:, j], t.sd[:, j])
                                             for t in m.ranef() for j, name in enumerate(t.names)]
    assert [p.title for p in panels] == [s[0] for s in series]
    assert {len(v) for _, v, _ in series} >= {8, 30}  # both of ppoints' branches (n <= 10 and n > 10)
    for p, (_, values, sd) in zip(panels, series):
        n = len(values)
        np.testing.assert_allclose(p.x, qnorm(r_ppoints(n)), rtol=1e-13, atol=1e-13)
        order = np.argsort(values, kind="stable")
        np.testing.assert_array_equal(p.y, np.sort(values))
        # R's qqline: through (qnorm(.25), quantile(y, .25)) and (qnorm(.75), quantile(y, .75)), type 7
        y1, y3 = np.quantile(values, [0.25, 0.75])
        slope = (y3 - y1) / (qnorm(0.75) - qnorm(0.25))
        assert p.line == pytest.approx((y1 - slope * qnorm(0.25), slope), rel=1e-12, abs=1e-12)
        if sd is not None:
            np.testing.assert_allclose(p.upper - p.y, Z95 * sd[order], rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(p.y - p.lower, Z95 * sd[order], rtol=1e-12, atol=1e-14)


def test_glmm_plots_pearson_residuals_and_the_modes_qq(tmp_path):
    """A GLMM's resid plot is lme4's plot(m): Pearson residuals against the fitted means; its QQ
    plots are the conditional modes' only (0/1 residuals are not normal); its caterpillar plot
    is its ranef(); the profile of a nAGQ = 0 fit (no likelihood in β) is refused from the command
    line before fitting."""
    g = mixcli.fit(str(FIXTURES / "data" / "glmm_binary.csv"), "pass ~ ses + (1 | schoolid)", family="binomial")
    a = augment(g)
    (p,) = plot(g, "resid", str(tmp_path / "r.png")).panels
    np.testing.assert_array_equal(p.x, a[".fitted"])
    np.testing.assert_array_equal(p.y, a[".resid_pearson"])
    (q,) = plot(g, "qq", str(tmp_path / "q.png")).panels
    (t,) = g.ranef()
    assert q.title == "schoolid: (Intercept)"
    np.testing.assert_array_equal(q.y, np.sort(t.values[:, 0]))
    (c,) = plot(g, "ranef", str(tmp_path / "c.png")).panels
    np.testing.assert_array_equal(np.sort(c.x), np.sort(t.values[:, 0]))
    from conftest import run_cli

    out = run_cli("plot", str(FIXTURES / "data" / "glmm_binary.csv"), "pass ~ ses + (1 | schoolid)",
                  "--family", "binomial", "--nagq", "0", "--kind", "profile", "-o", str(tmp_path / "p.png"))
    assert out.returncode == 2 and "a --nagq 0 fit does not maximise" in out.stderr
    assert not (tmp_path / "p.png").exists()


def test_profile_traces(m, drawn):
    from mixcli.inference.profile import Profiler, profile_intervals

    panels = drawn["profile"][0].panels
    ivs = profile_intervals(m)
    assert [p.title for p in panels] == [iv.parameter for iv in ivs] == [
        "sd_(Intercept)|g", "cor_x.(Intercept)|g", "sd_x|g", "sd_(Intercept)|a", "sigma", "(Intercept)", "x"]
    for p, iv in zip(panels, ivs):
        assert p.interval == pytest.approx((iv.lower, iv.upper), rel=1e-9)
        assert np.all(np.diff(p.x) > 0)
        assert np.all(np.diff(p.y) > 0)  # every profile of this model is monotone
        i = int(np.flatnonzero(p.x == iv.estimate)[0])
        assert p.y[i] == 0.0
        assert p.x[0] < iv.lower and p.x[-1] > iv.upper  # drawn past both ends of the interval
        # ζ crosses ±z at the interval's ends (ζ is smooth: linear interpolation is close)
        assert np.interp(iv.lower, p.x, p.y) == pytest.approx(-Z95, abs=0.03)
        assert np.interp(iv.upper, p.x, p.y) == pytest.approx(Z95, abs=0.03)
    # a point of the trace is the profiled deviance there
    prof = Profiler(m)
    par = next(q for q in prof.params if q.name == "sd_x|g")
    p = panels[2]
    dev, _ = prof.deviance(par, float(p.x[1]))
    assert math.copysign(math.sqrt(max(dev - prof.base, 0.0)), p.x[1] - par.estimate) == pytest.approx(p.y[1], abs=1e-4)
    # the fixed effects' straight line is the Wald line, slope 1/SE (ML)
    assert panels[-1].line[1] == pytest.approx(1.0 / prof.se[1], rel=1e-12)


def test_profile_traces_for_some_parameters(m):
    (t,) = profile_traces(m, level=0.9, which=["sigma"])
    assert t.name == "sigma" and t.kind == "sigma" and t.level == 0.9
    assert np.interp(t.upper, t.values, t.zeta) == pytest.approx(Z90, abs=0.03)


# ------------------------------------------------------------------ errors: nothing written
@pytest.mark.parametrize("kind, name, words", [
    ("caterpillar", "x.png", ["unknown kind 'caterpillar'", "ranef, resid, qq, profile"]),
    ("ranef", "x.jpg", [".jpg", ".png, .svg or .pdf"]),
    ("ranef", "x", ["no extension", ".png, .svg or .pdf"]),
    ("ranef", "missing/x.png", ["does not exist", "mkdir -p"]),
])
def test_usage_errors_write_nothing(m, tmp_path, kind, name, words):
    with pytest.raises(UsageError) as err:
        plot(m, kind, str(tmp_path / name))
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg
    assert os.listdir(tmp_path) == []


def test_bad_level_and_folder_as_path(m, tmp_path):
    with pytest.raises(UsageError, match="level"):
        plot(m, "ranef", str(tmp_path / "x.png"), level=1.5)
    (tmp_path / "d.png").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        plot(m, "ranef", str(tmp_path / "d.png"))
    assert os.listdir(tmp_path) == ["d.png"]


def test_render_error_leaves_old_file(m, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "r.png"
    path.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise RuntimeError("render failed")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(RuntimeError):
        plot(m, "resid", str(path))
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["r.png"]


def test_matplotlib_is_not_imported_by_the_cli():
    code = "import sys, mixcli, mixcli.cli, mixcli.plot; assert 'matplotlib' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_emmeans_plot_draws_the_means_and_intervals(tmp_path):
    """plot(emmeans(...)): per --by level a panel of the specs' means with their intervals, the
    numbers those of the EmmeansResult (itself checked against R's emmeans in test_emmeans)."""
    from mixcli.inference.emmeans import emmeans
    from mixcli.plot import emmeans_plot

    fit = mixcli.fit(str(FIXTURES / "data" / "categorical.csv"), "y ~ recipe * sex + region + (1 | batch)")
    res = emmeans(fit, ["recipe"], by=["sex"], level=0.9)
    path = tmp_path / "emm.png"
    data = emmeans_plot(res, str(path))
    assert png_size(path) == data.pixels
    assert [p.title for p in data.panels] == ["sex = F", "sex = M"]
    for panel, sex in zip(data.panels, ["F", "M"]):
        rows = [r for r in res.means if r["sex"] == sex]
        assert panel.labels == [r["recipe"] for r in rows]
        np.testing.assert_array_equal(panel.x, [r["emmean"] for r in rows])
        np.testing.assert_array_equal(panel.lower, [r["lower.CL"] for r in rows])
        np.testing.assert_array_equal(panel.upper, [r["upper.CL"] for r in rows])
    # a GLMM's means on the response scale: asymptotic intervals, probabilities
    g = mixcli.fit(str(FIXTURES / "data" / "glmm_crossed.csv"), "r2 ~ btype + mode + (1 | subj) + (1 | item)",
                   family="binomial")
    res = emmeans(g, ["btype"], type="response")
    data = emmeans_plot(res, str(tmp_path / "glmm.svg"))
    np.testing.assert_array_equal(data.panels[0].x, [r["prob"] for r in res.means])
    np.testing.assert_array_equal(data.panels[0].upper, [r["asymp.UCL"] for r in res.means])
