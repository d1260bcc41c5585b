"""Diagnostic plots of a fitted mixed model, as lme4 + lattice users draw them.

``plot(m, kind, path)`` draws one figure and writes it to ``path`` (its extension
picks the format: ``.png`` at 120 dpi, ``.svg`` or ``.pdf``), atomically through
:class:`mixcli.output.AtomicOutput`; it returns the numbers plotted
(:class:`PlotData`, panel by panel), so that they can be checked against
``m.ranef()`` and ``augment(m)``. The kinds:

* ``ranef`` — caterpillar plots, lattice's ``dotplot(ranef(m, condVar = TRUE))``:
  one panel per grouping factor and term, the conditional modes with bars of
  ± z·(conditional SD), z the normal quantile for ``level`` (1.96 for 95%). As
  lattice does, a factor's levels are ordered by the conditional mode of its
  first term (ties by the next), the same order in each of its panels; beyond
  60 levels the level names are left off (the axis is the rank) and the
  markers get thinner.
* ``resid`` — residuals (``.resid``) against fitted values (``.fitted``), with a
  line at zero; for a GLMM, as lme4's ``plot(m)``, the Pearson residuals against
  the fitted means μ̂.
* ``qq`` — normal QQ plots, ``qqnorm``/``qqline`` of the residuals and of each
  term's conditional modes (lattice's ``qqmath(ranef(m, condVar = TRUE))``, with
  its bars): theoretical quantiles ``qnorm(ppoints(n))`` against the sorted
  values, and R's ``qqline`` through the quartiles. A GLMM's residuals are not
  normal (0/1 data, counts), so its QQ plots are the conditional modes' only.
* ``emmeans`` (``emmeans_plot(result, path)``, of an ``EmmeansResult``) — the estimated
  marginal means with their confidence intervals, R's ``plot(emmeans(...))``: one panel per
  level of ``by``.
* ``profile`` — ζ plots, lme4's ``xyplot(profile(m))``: for each parameter
  (SDs and correlations of the random effects, σ, the fixed effects; lme4's
  names) the signed square root of the ML deviance change against its value,
  with lines at ζ = ±z, drop lines at the interval's ends, and the straight
  line a quadratic deviance (the Wald approximation) would give.

matplotlib is imported only here, inside functions (``mixcli --help`` never
loads it), and draws on its Agg canvas directly: no pyplot, no display, no
change to the caller's matplotlib backend.

``python -m mixcli.plot DATA FORMULA FOLDER`` writes the four PNGs (``make plots``).
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import UsageError
from .output import AtomicOutput

KINDS = ("ranef", "resid", "qq", "profile")
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
DPI = 120
LABEL_LIMIT = 60  # more levels than this: no level names on the axis


@dataclass
class Panel:
    """One panel's numbers, as plotted: point i is at (x[i], y[i]).

    * ranef: x = conditional modes, y = rank 0..n-1 (bottom to top), ``labels`` the
      level names in that order, ``lower``/``upper`` the bar ends (mode ∓ z·sd);
    * resid: x = fitted values, y = residuals, in the rows' order;
    * qq: x = qnorm(ppoints(n)), y = the sorted values, ``line`` = (intercept, slope) of
      qqline; for random effects ``lower``/``upper`` are the bar ends and ``labels`` the levels;
    * profile: x = parameter values, y = ζ, increasing in x; ``line`` = the Wald line through
      (estimate, 0); ``interval`` = the profile interval's ends.
    """

    title: str
    x: np.ndarray
    y: np.ndarray
    xlabel: str = ""
    ylabel: str = ""
    labels: list[str] | None = None
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    line: tuple[float, float] | None = None
    interval: tuple[float, float] | None = None


@dataclass
class PlotData:
    """What ``plot()`` drew and where: the figure's panels and its size."""

    kind: str
    path: str
    format: str
    title: str
    level: float
    z: float  # normal quantile for ``level`` (bars, ±z lines)
    width: float  # inches
    height: float
    dpi: int
    panels: list[Panel] = field(default_factory=list)

    @property
    def pixels(self) -> tuple[int, int]:
        """Width and height in pixels of a PNG."""
        return round(self.width * self.dpi), round(self.height * self.dpi)


@dataclass
class ZetaTrace:
    """A profile of one parameter: ζ at each value, increasing; lme4's name and kind."""

    name: str
    kind: str  # "sd", "cor", "sigma" or "fixef"
    estimate: float  # ML estimate
    values: np.ndarray
    zeta: np.ndarray
    lower: float  # the profile interval at ``level``
    upper: float
    level: float
    slope: float  # dζ/dψ at the estimate: the Wald (quadratic deviance) approximation's slope


# ----------------------------------------------------------------- entry point
def plot(m, kind: str, path: str, *, level: float = 0.95, width: float | None = None,
         height: float | None = None) -> PlotData:
    """Draw the ``kind`` plot of the fitted model ``m`` into ``path`` (.png, .svg or .pdf).

    ``width`` and ``height`` are in inches (a PNG has 120 pixels per inch); by default
    they suit the number of panels and levels. Raises UsageError, writing nothing, for
    an unknown kind or extension, a folder that does not exist, or a bad ``level``.
    """
    fmt = check_destination(kind, path)
    if not (isinstance(level, (int, float)) and 0.0 < level < 1.0):
        raise UsageError(f"plot: level {level!r} is not between 0 and 1; pass e.g. level=0.95")
    for name, v in (("width", width), ("height", height)):
        if v is not None and not (isinstance(v, (int, float)) and 0.5 <= v <= 100):
            raise UsageError(f"plot: {name} {v!r} is not a size in inches between 0.5 and 100; pass e.g. {name}=8")
    _matplotlib()
    from scipy.special import ndtri

    z = float(ndtri(0.5 + level / 2.0))
    panels, size, draw = _BUILDERS[kind](m, z, level)
    w = float(width) if width is not None else size[0]
    h = float(height) if height is not None else size[1]
    data = PlotData(kind, path, fmt, f"{_TITLES[kind]}: {m.formula}", level, z, w, h, DPI, panels)
    fig = _figure(w, h)
    draw(fig, data)
    fig.suptitle(data.title, fontsize=11)
    _write(fig, path, fmt)
    return data


def power_curve(result, path: str, width: float = 6.0, height: float = 4.0) -> None:
    """The power curve of a ``power_analysis.PowerResult``: power at each size with its 95%
    Clopper–Pearson band, the 80% line and alpha (simr's ``plot(powerCurve(...))``)."""
    fmt = check_destination(POWER, path)
    _matplotlib()
    recs = result.records()
    x = np.array([r["size"] for r in recs], dtype=float)
    y = np.array([r["power"] for r in recs])
    lo, hi = np.array([r["lower"] for r in recs]), np.array([r["upper"] for r in recs])
    fig = _figure(width, height)
    ax = fig.add_subplot(1, 1, 1)
    ax.fill_between(x, lo, hi, color="C0", alpha=0.2, linewidth=0, label="95% confidence interval")
    ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o-", color="C0", capsize=3, label="power")
    ax.axhline(0.8, color="0.3", linestyle="--", linewidth=1, label="80%")
    ax.axhline(result.alpha, color="C3", linestyle=":", linewidth=1, label=f"alpha = {result.alpha:g}")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel(result.size_of)
    ax.set_ylabel("power")
    ax.set_xticks(x)
    ax.grid(True, color="0.9")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"Power for {result.test} ({result.rows[0].nsim} simulations per size)", fontsize=10)
    _write(fig, path, fmt)


POWER = "power"  # check_destination's kind for power_curve


def emmeans_plot(result, path: str, width: float | None = None, height: float | None = None) -> PlotData:
    """The marginal means of an ``inference.emmeans.EmmeansResult`` with their confidence
    intervals, as R's ``plot(emmeans(...))``: one panel per level of ``by`` (their combination),
    the means of the ``specs`` levels on the x axis (the response scale's for ``type =
    "response"``), each with its interval; the numbers are the result's."""
    fmt = check_destination(EMMEANS, path)
    for name, v in (("width", width), ("height", height)):
        if v is not None and not (isinstance(v, (int, float)) and 0.5 <= v <= 100):
            raise UsageError(f"plot: {name} {v!r} is not a size in inches between 0.5 and 100; pass e.g. {name}=8")
    _matplotlib()
    first = result.means[0]
    est_name = next(k for k in first if k not in result.specs + result.by)  # emmean, prob, rate or response
    lo_name, hi_name = [k for k in first if k.endswith(("LCL", "lower.CL"))][0], \
        [k for k in first if k.endswith(("UCL", "upper.CL"))][0]
    groups: dict[tuple, list[dict]] = {}
    for row in result.means:
        groups.setdefault(tuple(row[b] for b in result.by), []).append(row)
    panels = []
    for key, rows in groups.items():
        title = ", ".join(f"{b} = {v}" for b, v in zip(result.by, key)) or ":".join(result.specs)
        panels.append(Panel(title, np.array([r[est_name] for r in rows], dtype=float),
                            np.arange(len(rows), dtype=float),
                            xlabel=f"{est_name} ({_pct(result.level)} CI)", ylabel=":".join(result.specs),
                            labels=[":".join(str(r[s]) for s in result.specs) for r in rows],
                            lower=np.array([r[lo_name] for r in rows], dtype=float),
                            upper=np.array([r[hi_name] for r in rows], dtype=float)))
    ncol, nrow = _grid(len(panels))
    most = max(len(p.x) for p in panels)
    w = float(width) if width is not None else min(3.2 + 3.3 * ncol, 16.0)
    h = float(height) if height is not None else min(max(2.6, 1.0 + 0.3 * most) * nrow, 12.0)
    data = PlotData(EMMEANS, path, fmt, f"Estimated marginal means: {result.formula}", result.level, math.nan,
                    w, h, DPI, panels)
    fig = _figure(w, h)
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax, p in zip(axes, panels):
        ax.hlines(p.y, p.lower, p.upper, color="C0", lw=4, alpha=0.35, zorder=2)
        ax.plot(p.x, p.y, "o", color="C0", ms=6, mew=0, zorder=3)
        ax.set_yticks(p.y)
        ax.set_yticklabels(p.labels, fontsize=8)
        ax.set_ylim(-0.5, len(p.y) - 0.5)
        ax.grid(axis="x", color="0.92", lw=0.6)
        ax.set_title(p.title, fontsize=10)
        ax.set_xlabel(p.xlabel, fontsize=9)
        ax.set_ylabel(p.ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(data.title, fontsize=11)
    _write(fig, path, fmt)
    return data


EMMEANS = "emmeans"  # check_destination's kind for emmeans_plot


def check_destination(kind: str, path: str) -> str:
    """The format for ``path``, or UsageError naming the problem and the fix."""
    if kind not in KINDS + (POWER, EMMEANS):
        raise UsageError(f"plot: unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        shown = ext or "no extension"
        raise UsageError(f"plot: cannot tell the format of {path} ({shown}); end the file name in .png, .svg or .pdf")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise UsageError(f"plot: folder {folder} does not exist for {path}; create it first (mkdir -p {folder})")
    if os.path.isdir(path):
        raise UsageError(f"plot: {path} is a folder; give a file name such as {os.path.join(path, kind + ext)}")
    return FORMATS[ext]


# ------------------------------------------------------------------ the data
def ppoints(n: int) -> np.ndarray:
    """R's ppoints(n): (i − a)/(n + 1 − 2a), a = 3/8 for n ≤ 10, else 1/2."""
    a = 0.375 if n <= 10 else 0.5
    return (np.arange(1, n + 1) - a) / (n + 1 - 2 * a)


def qqline(values: np.ndarray) -> tuple[float, float]:
    """R's qqline: (intercept, slope) of the line through the quartiles (type 7) vs qnorm(.25, .75)."""
    from scipy.special import ndtri

    y1, y3 = np.quantile(np.asarray(values, float), [0.25, 0.75])
    x1, x3 = ndtri(0.25), ndtri(0.75)
    slope = (y3 - y1) / (x3 - x1)
    return float(y1 - slope * x1), float(slope)


def ranef_groups(m) -> list[tuple[str, list[tuple[str, np.ndarray, np.ndarray]], list[str]]]:
    """lme4's ranef() list: per grouping factor, its columns (term name, modes, SDs) and levels.

    Terms with the same factor (``(x || g)``) are one data frame in lme4, as here.
    """
    out: dict[str, tuple[list, list[str]]] = {}
    for t in m.ranef(cond_var=True):
        cols, _ = out.setdefault(t.factor, ([], list(t.levels)))
        sd = t.sd if t.sd is not None else np.full_like(t.values, np.nan)
        for j, name in enumerate(t.names):
            cols.append((name, np.asarray(t.values[:, j], float), np.asarray(sd[:, j], float)))
    return [(factor, cols, levels) for factor, (cols, levels) in out.items()]


def ranef_order(cols) -> np.ndarray:
    """Levels in increasing order of the first column's modes, ties by the next (lattice's order)."""
    return np.lexsort([c[1] for c in reversed(cols)])


def profile_traces(m, level: float = 0.95, which=None, points: int = 6) -> list[ZetaTrace]:
    """ζ traces of every parameter (or those named in ``which``), lme4's order and names.

    For each parameter: the profile interval at ``level`` (``Profiler.interval``), then ζ at
    ``points`` values on each side of the estimate, from near it to 15% beyond the interval's
    end (not past the parameter's bound). Each ζ is from the lower of a warm-started and a
    cold-started inner optimisation, as the interval search checks its ends.
    """
    from .inference.profile import profiler

    prof = profiler(m)
    params = [p for p in prof.params if which is None or p.name in which]
    fractions = np.array([0.05, 0.25, 0.5, 0.75, 1.0, 1.15])
    if points != len(fractions):
        fractions = np.concatenate([[0.05], np.linspace(0.25, 1.15, max(points - 1, 1))])
    out = []
    for par in params:
        iv = prof.interval(par, level)
        est = par.estimate
        xs, zs = [est], [0.0]
        width = max(abs(iv.lower - est), abs(iv.upper - est))
        for end, bound in ((iv.lower, par.lower_bound), (iv.upper, par.upper_bound)):
            if end == est:
                continue
            start = None
            # a side too short to see (an SD estimated at ~0, its end the bound 0): its end only
            near = abs(end - est) < 1e-4 * width
            for f in ([1.0] if near else fractions):
                x = est + f * (end - est)
                if (end - est) * (x - bound) > 0:
                    x = bound
                dev, sol = prof.deviance(par, x, start)
                if start is not None:
                    cold, cold_sol = prof.deviance(par, x, None)
                    if cold < dev:
                        dev, sol = cold, cold_sol
                start = sol
                xs.append(x)
                zs.append(math.copysign(math.sqrt(max(dev - prof.base, 0.0)), x - est))
                if x == bound:
                    break
        xs, zs = np.array(xs), np.array(zs)
        order = np.argsort(xs, kind="stable")
        xs, zs = xs[order], zs[order]
        keep = np.concatenate([[True], np.diff(xs) > 0])
        xs, zs = xs[keep], zs[keep]
        i = int(np.searchsorted(xs, est))
        lo, hi = max(i - 1, 0), min(i + 1, len(xs) - 1)
        slope = (zs[hi] - zs[lo]) / (xs[hi] - xs[lo]) if xs[hi] > xs[lo] else math.nan
        if par.kind == "fixef" and prof.se[par.fixef_index] > 0:
            slope = 1.0 / float(prof.se[par.fixef_index])  # exactly the Wald line for a coefficient
        out.append(ZetaTrace(par.name, par.kind, float(est), xs, zs, iv.lower, iv.upper, level, float(slope)))
    return out


# ------------------------------------------------------------------ builders
def _build_ranef(m, z, level):
    groups = ranef_groups(m)
    panels = []
    for factor, cols, levels in groups:
        order = ranef_order(cols)
        names = [levels[i] for i in order]
        for name, vals, sd in cols:
            v, s = vals[order], sd[order]
            panels.append(Panel(f"{factor}: {name}", v, np.arange(len(v), dtype=float),
                                xlabel=f"conditional mode ± {z:.2f} SD ({_pct(level)})",
                                ylabel=(factor if len(v) <= LABEL_LIMIT
                                        else f"{factor} ({len(v):,} levels, ranked by {cols[0][0]})"),
                                labels=names, lower=v - z * s, upper=v + z * s))
    n = len(panels)
    most = max((len(p.x) for p in panels), default=1)
    width = min(max(2.2 + 3.3 * n, 6.5), 16.0)
    height = min(max(4.0, 1.3 + 0.16 * most), 12.0) if most <= LABEL_LIMIT else 6.5
    return panels, (width, height), _draw_ranef


def _build_resid(m, z, level):
    from .inference.predictions import augment

    a = augment(m)
    if m.is_glmm:
        p = Panel("Pearson residuals against fitted means", np.asarray(a[".fitted"], float),
                  np.asarray(a[".resid_pearson"], float), xlabel="fitted means", ylabel="Pearson residuals")
    else:
        p = Panel("residuals against fitted values", np.asarray(a[".fitted"], float), np.asarray(a[".resid"], float),
                  xlabel="fitted values", ylabel="residuals")
    return [p], (7.0, 5.0), _draw_resid


def _build_qq(m, z, level):
    from scipy.special import ndtri

    from .inference.predictions import augment

    panels = []
    if not m.is_glmm:
        resid = np.sort(np.asarray(augment(m)[".resid"], float))
        panels.append(Panel("residuals", ndtri(ppoints(len(resid))), resid, xlabel="standard normal quantiles",
                            ylabel="residuals", line=qqline(resid)))
    for factor, cols, levels in ranef_groups(m):
        for name, vals, sd in cols:
            order = np.argsort(vals, kind="stable")
            v, s = vals[order], sd[order]
            panels.append(Panel(f"{factor}: {name}", ndtri(ppoints(len(v))), v, xlabel="standard normal quantiles",
                                ylabel="conditional modes", labels=[levels[i] for i in order],
                                lower=v - z * s, upper=v + z * s, line=qqline(v)))
    ncol, nrow = _grid(len(panels))
    return panels, (min(1.0 + 3.6 * ncol, 16.0), min(1.0 + 3.3 * nrow, 14.0)), _draw_qq


def _build_profile(m, z, level):
    panels = []
    for t in profile_traces(m, level):
        panels.append(Panel(t.name, t.values, t.zeta, xlabel=_param_label(t), ylabel="ζ",
                            line=(-t.slope * t.estimate, t.slope) if math.isfinite(t.slope) else None,
                            interval=(t.lower, t.upper)))
    ncol, nrow = _grid(len(panels))
    return panels, (min(1.0 + 3.4 * ncol, 16.0), min(1.0 + 2.9 * nrow, 14.0)), _draw_profile


_BUILDERS = {"ranef": _build_ranef, "resid": _build_resid, "qq": _build_qq, "profile": _build_profile}
_TITLES = {"ranef": "Random effects", "resid": "Residuals", "qq": "Normal QQ plots", "profile": "Profile ζ"}


# ------------------------------------------------------------------ drawing
def _draw_ranef(fig, data: PlotData):
    panels = data.panels
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    prev_labels = None
    for ax, p in zip(axes, panels):
        n = len(p.x)
        ms, lw, grey = (5.0, 1.2, "0.3") if n <= LABEL_LIMIT else (3.0, 0.7, "0.62") if n <= 500 else (1.6, 0.3, "0.7")
        ax.axvline(0.0, color="0.45", lw=0.8, ls="--", zorder=4)
        ax.hlines(p.y, p.lower, p.upper, color=grey, lw=lw, zorder=2)
        ax.plot(p.x, p.y, "o", color="C0", ms=ms, mew=0, zorder=3)
        ax.set_ylim(-0.5 if n <= LABEL_LIMIT else -0.01 * n, n - 0.5 if n <= LABEL_LIMIT else 1.01 * n)
        same = prev_labels is not None and p.labels == prev_labels
        if n <= LABEL_LIMIT:
            ax.set_yticks(p.y)
            ax.set_yticklabels([] if same else p.labels, fontsize=8 if n <= 30 else 6.5)
            ax.grid(axis="y", color="0.92", lw=0.6)
        elif same:
            ax.set_yticklabels([])
        if not same:
            ax.set_ylabel(p.ylabel)
        ax.set_title(p.title, fontsize=10)
        ax.set_xlabel(p.xlabel, fontsize=9)
        ax.tick_params(labelsize=8)
        prev_labels = p.labels


def _draw_resid(fig, data: PlotData):
    ax = fig.subplots()
    p = data.panels[0]
    n = len(p.x)
    ms, alpha = (4.0, 0.8) if n <= 1000 else (2.0, 0.5) if n <= 20000 else (1.0, 0.3)
    ax.axhline(0.0, color="0.4", lw=1.0, ls="--", zorder=1)
    ax.plot(p.x, p.y, "o", ms=ms, mew=0, alpha=alpha, color="C0", zorder=2)
    ax.set_xlabel(p.xlabel)
    ax.set_ylabel(p.ylabel)
    ax.set_title(f"{p.title} ({n:,} rows)", fontsize=10)
    ax.grid(color="0.92", lw=0.6)


def _draw_qq(fig, data: PlotData):
    ncol, nrow = _grid(len(data.panels))
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    for ax, p in zip(axes, data.panels):
        n = len(p.x)
        ms = 4.0 if n <= 100 else 2.5 if n <= 5000 else 1.5
        bars = p.lower is not None and n <= 1000  # beyond, the bars are a grey cloud
        if bars:
            ax.vlines(p.x, p.lower, p.upper, color="0.7" if n <= 100 else "0.87", lw=0.9 if n <= 100 else 0.4,
                      zorder=1)
        ax.plot(p.x, p.y, "o", ms=ms, mew=0, color="C0", zorder=3)
        a, b = p.line
        xr = np.array([p.x.min(), p.x.max()]) if n else np.array([-1.0, 1.0])
        ax.plot(xr, a + b * xr, color="C3", lw=1.2, zorder=2)
        ax.set_title(f"{p.title} (± {data.z:.2f} SD)" if bars else p.title, fontsize=10)
        ax.set_xlabel(p.xlabel, fontsize=9)
        ax.set_ylabel(p.ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(color="0.92", lw=0.6)
    for ax in axes[len(data.panels):]:
        ax.set_visible(False)


def _draw_profile(fig, data: PlotData):
    ncol, nrow = _grid(len(data.panels))
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    z = data.z
    for ax, p in zip(axes, data.panels):
        for h in (-z, z):
            ax.axhline(h, color="0.55", lw=0.9, ls="--", zorder=1)
        ax.axhline(0.0, color="0.8", lw=0.8, zorder=1)
        for end in p.interval:  # up to the trace: short of ±z where the end is the parameter's bound
            ax.plot([end, end], [0.0, float(np.interp(end, p.x, p.y))], color="0.55", lw=0.9, zorder=1)
        if p.line is not None:
            a, b = p.line
            xr = np.array([p.x.min(), p.x.max()])
            ax.plot(xr, a + b * xr, color="C3", lw=1.0, ls=":", zorder=2)
        ax.plot(p.x, p.y, "-o", color="C0", ms=3.5, lw=1.4, zorder=3)
        ymax = max(z * 1.25, float(np.max(np.abs(p.y))) * 1.05 if len(p.y) else 0.0)
        ax.set_ylim(-ymax, ymax)
        ax.set_title(p.title, fontsize=10)
        ax.set_xlabel(p.xlabel, fontsize=9)
        ax.set_ylabel(p.ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes[len(data.panels):]:
        ax.set_visible(False)
    fig.supxlabel(f"dashed: ζ = ±{z:.2f} ({_pct(data.level)}); vertical: the profile interval's ends; "
                  "dotted: the straight line of a quadratic deviance (Wald)", fontsize=8, color="0.35")


# ------------------------------------------------------------------ helpers
def _matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("plot: matplotlib is not installed; install it with: pip install matplotlib") from None


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, without pyplot or a global backend switch
    fig.get_layout_engine().set(h_pad=0.06, w_pad=0.06)
    return fig


def _write(fig, path: str, fmt: str) -> None:
    """Render into memory, then write all or nothing."""
    buf = io.BytesIO()
    metadata = {"Date": None} if fmt in ("svg", "pdf") else None  # the same model, the same bytes
    fig.savefig(buf, format=fmt, dpi=DPI, metadata=metadata)
    with AtomicOutput(path) as out:
        out.write(buf.getvalue())
        out.commit()


def _grid(n: int) -> tuple[int, int]:
    ncol = 1 if n <= 1 else 2 if n <= 4 else 3
    return ncol, max(1, math.ceil(n / ncol))


def _pct(level: float) -> str:
    return f"{100 * level:g}%"


def _param_label(t: ZetaTrace) -> str:
    return {"sd": "standard deviation", "cor": "correlation", "sigma": "residual SD σ"}.get(t.kind, "coefficient")


def readme_plots(data, formula: str, folder: str) -> list[PlotData]:
    """The four plots of ``formula`` fitted to ``data``, as ``folder``/<kind>.png."""
    from .api import fit

    m = fit(data, formula)
    return [plot(m, kind, os.path.join(folder, f"{kind}.png")) for kind in KINDS]


def main(argv=None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m mixcli.plot DATA FORMULA FOLDER  (writes FOLDER/{ranef,resid,qq,profile}.png)",
              file=sys.stderr)
        return 2
    os.makedirs(args[2], exist_ok=True)
    for d in readme_plots(args[0], args[1], args[2]):
        print(d.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
