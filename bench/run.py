"""Whole-process timing of mixcli next to Rscript + lme4 (and statsmodels when installed).

    make bench                          # full run, writes bench/RESULTS.md
    .venv/bin/python bench/run.py --quick          # one repetition per job
    .venv/bin/python bench/run.py --jobs compare-real,fit-medium --no-write
    make bench BENCH_ARGS=--glmm        # random small GLMMs against glmer (bench/glmm_random.py)

Each job runs the same data file through both tools as separate processes and
times the whole process, from spawn to exit: interpreter start-up, imports,
reading the CSV, fitting and printing. Runs alternate (mixcli, R, mixcli, R,
...) so drifts in machine load hit both alike; the table shows medians, the
ratio lme4/mixcli and each tool's peak resident memory (ru_maxrss of the child
from os.wait4, which covers the process and anything it waited for).

Evaluation counts and criteria come from the timed runs' output where the tools
print them (lme4: m@optinfo$feval), otherwise from one untimed run per job
(mixcli_details.py through mixcli's Python API; lme4_job.R compare-details for
the ML refits inside anova()). Criteria that differ by more than 1e-6 are
flagged.

Data go to bench/data/ (git-ignored) and are regenerated only when missing or
made with other settings; raw outputs of every run go to bench/out/.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / "data"
OUT = BENCH / "out"
VENV_BIN = ROOT / ".venv" / "bin"
R_SCRIPT = BENCH / "lme4_job.R"
DETAILS = BENCH / "mixcli_details.py"
# The shared reference data ($MIXCLI_SHARED, else ../shared beside the checkout), read in place, never copied.
SHARED = Path(os.environ.get("MIXCLI_SHARED") or ROOT.parent / "shared")
REAL_CLASSROOM = SHARED / "data" / "classroom.csv"

CRITERION_TOL = 1e-6  # absolute, on -2 log-likelihood scale

M14 = "mathscore ~ ses + (ses | schoolid)"
M17 = "mathscore ~ ses + (ses | schoolid) + (1 | classid)"
M16 = "mathscore ~ ses + (ses | schoolid) + (ses || classid)"
COMPARE = [("M14", M14), ("M17", M17), ("M16", M16)]
CROSSED = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"
RATINGS = "rating ~ 1 + (1 | user) + (1 | item)"
KB07 = SHARED / "data" / "kb07.csv"
_KB07_EFFECTS = "1 + S + P + C + SP + SC + PC + SPC"
KB07_FORMULA = f"RTtrunc ~ {_KB07_EFFECTS} + ({_KB07_EFFECTS} | subj) + ({_KB07_EFFECTS} | item)"

# The targets name data sizes in rows (89k, 898k); the simulator makes about
# 11.2 rows per school, so those sizes are 8,000 and 80,000 schools.
SMALL_SCHOOLS, MEDIUM_SCHOOLS, LARGE_SCHOOLS = 107, 8_000, 80_000
SEEDS = {"small": 1, "medium": 2, "large": 3, "crossed": 4, "ratings": 5, "glmm100k": 6, "glmm1m": 7, "verbagg": 8,
         "waves8": 9}
# Repeated measures (glmmTMB's target): each child tested at 8 waves, ~100k rows, an AR(1) over the waves
WAVES_SCHOOLS, WAVES = 1_130, 8
AR1_WAVES = "mathscore ~ ses + wave + ar1(0 + factor(wave) | pupil)"
# GLMMs (glmer's targets): a school/class logistic model on ~100k and ~1M rows, and lme4's VerbAgg (the real data:
# lme4 is GPL-2 and the data set public, so the fixtures carry a copy)
GLMM_SCHOOLS, GLMM_MILLION_SCHOOLS = 9_000, 89_500
GLMM_NESTED = "pass ~ ses + (1 | schoolid) + (1 | classid)"
VERBAGG = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
VERBAGG_CSV = ROOT / "fixtures" / "data" / "verbagg.csv"  # write.csv(lme4::VerbAgg), lme4 1.1-31


# ---------------------------------------------------------------------------
# Data


def _generated(name: str, settings: dict, label: str, simulate) -> Path:
    """``bench/data/<name>.csv``, simulated (``simulate()`` → columns) unless the file and its
    manifest (``settings`` and numpy's version: the simulators draw from numpy) are current."""
    import numpy as np

    path = DATA / f"{name}.csv"
    settings = {**settings, "numpy": np.__version__}
    if not _manifest_ok(path, settings):
        print(f"  generating {path.relative_to(ROOT)} ({label})", flush=True)
        _write_with_manifest(path, simulate(), settings)
    return path


def _manifest_ok(path: Path, settings: dict) -> bool:
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        return False
    try:
        return json.loads(meta.read_text()) == settings
    except (OSError, ValueError):
        return False


def _write_with_manifest(path: Path, columns: dict, settings: dict) -> None:
    from mixcli.simulate import write_csv

    tmp = path.with_suffix(".csv.tmp")
    write_csv(columns, tmp)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(settings))


def classroom_data(name: str, n_schools: int) -> Path:
    """The project's own simulator, seeded: ``bench/data/<name>.csv``."""
    from mixcli.simulate import simulate_classroom

    # (version 2: the simulator's pass/fail and count outcomes)
    return _generated(name, {"kind": "classroom", "schools": n_schools, "seed": SEEDS[name], "version": 2},
                      f"{n_schools:,} schools", lambda: simulate_classroom(n_schools, SEEDS[name]))


def waves_data() -> Path:
    """Repeated measures of the project's simulator (``simulate --waves``): ``bench/data/waves8.csv``."""
    from mixcli.simulate import simulate_classroom

    return _generated("waves8", {"kind": "waves", "schools": WAVES_SCHOOLS, "waves": WAVES, "seed": SEEDS["waves8"]},
                      f"{WAVES_SCHOOLS:,} schools × {WAVES} waves",
                      lambda: simulate_classroom(WAVES_SCHOOLS, SEEDS["waves8"], waves=WAVES))


def simulate_crossed(seed: int, n: int = 73_421, n_s: int = 2_972, n_d: int = 1_128, n_dept: int = 14):
    """An InstEval-like data set: students (s) rating instructors (d) in departments.

    InstEval has 73,421 ratings by 2,972 students of 1,128 instructors in 14
    departments; lme4's fit ``y ~ service + (1|s) + (1|d) + (1|dept)`` gives
    SDs of about 0.33 (s), 0.52 (d), 0.08 (dept) and 1.18 (residual). Here each
    student and each instructor gets at least one rating, the rest are drawn
    with skewed activity/popularity weights, so s and d are crossed (not
    nested) and unbalanced; each instructor belongs to one department, so dept
    is a small third factor crossed with s. The response is the rounded
    rating, clipped to 1..5.
    """
    import numpy as np

    rng = np.random.default_rng(seed)

    def members(k: int, shape: float) -> np.ndarray:
        weights = rng.gamma(shape, size=k)
        extra = rng.choice(k, size=n - k, p=weights / weights.sum())
        return rng.permutation(np.concatenate([np.arange(k), extra]))

    s = members(n_s, 1.5)
    d = members(n_d, 0.6)
    dept_of_d = rng.choice(n_dept, size=n_d, p=rng.dirichlet(np.full(n_dept, 3.0)))
    dept = dept_of_d[d]
    service = (rng.random(n) < 0.42).astype(np.int64)
    latent = (
        3.25
        - 0.07 * service
        + 0.33 * rng.standard_normal(n_s)[s]
        + 0.52 * rng.standard_normal(n_d)[d]
        + 0.08 * rng.standard_normal(n_dept)[dept]
        + 1.18 * rng.standard_normal(n)
    )
    y = np.clip(np.rint(latent), 1, 5).astype(np.int64)
    return {"y": y, "service": service, "s": s + 1, "d": d + 1, "dept": dept + 1}


def crossed_data() -> Path:
    return _generated("crossed", {"kind": "crossed", "seed": SEEDS["crossed"], "version": 1},
                      "InstEval-like, crossed", lambda: simulate_crossed(SEEDS["crossed"]))


def simulate_ratings(seed: int, n: int = 1_000_209, n_users: int = 6_040, n_items: int = 3_706):
    """The MovieLens 1M shape: 1,000,209 ratings (1..5) of 3,706 films by 6,040 users, each
    user with at least 20 ratings, skewed activity and popularity, no pair twice. For
    ``rating ~ 1 + (1 | user) + (1 | item)``: two crossed factors, a 3,706-wide dense block."""
    import numpy as np

    rng = np.random.default_rng(seed)
    activity = rng.gamma(0.8, size=n_users)
    counts = 20 + rng.multinomial(n - 20 * n_users, activity / activity.sum())
    counts = np.minimum(counts, n_items)
    popularity = rng.gamma(0.5, size=n_items)
    popularity /= popularity.sum()
    users, items = [], []
    for u, c in enumerate(counts):  # a generator of test data, not a hot path
        users.append(np.full(c, u))
        items.append(rng.choice(n_items, size=c, replace=False, p=popularity))
    user = np.concatenate(users)
    item = np.concatenate(items)
    order = rng.permutation(len(user))
    user, item = user[order], item[order]
    latent = (3.58 + 0.45 * rng.standard_normal(n_users)[user] + 0.50 * rng.standard_normal(n_items)[item]
              + 0.90 * rng.standard_normal(len(user)))
    rating = np.clip(np.rint(latent), 1, 5).astype(np.int64)
    return {"rating": rating, "user": user + 1, "item": item + 1}


def ratings_data() -> Path:
    return _generated("ratings", {"kind": "ratings", "seed": SEEDS["ratings"], "version": 1},
                      "MovieLens 1M shape, crossed", lambda: simulate_ratings(SEEDS["ratings"]))


def count_rows(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) - 1


# ---------------------------------------------------------------------------
# Which mixcli


def use_snapshot() -> str:
    """Time the committed HEAD: extract its mixcli/ into bench/out/ and put it first on PYTHONPATH.

    Other work goes on in the same checkout; a snapshot keeps half-saved edits
    out of the timings and makes the commit in the report the code that ran.
    The venv's console script and interpreter find the snapshot before the
    editable install (which sits at the end of sys.meta_path).
    """
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()
    dest = extract(commit)
    _put_first(dest)
    found = subprocess.run([str(VENV_BIN / "python"), "-c", "import mixcli; print(mixcli.__file__)"],
                           capture_output=True, text=True, cwd=OUT).stdout.strip()
    if not found.startswith(str(dest)):
        raise BenchError(f"the snapshot in {dest} is not the mixcli that runs ({found})")
    return f"committed HEAD {commit[:12]} (snapshot of mixcli/, uncommitted edits not included)"


def extract(commit: str) -> Path:
    """bench/out/mixcli-<commit>/mixcli: that commit's mixcli/ (once), byte-compiled."""
    import compileall
    import tarfile

    dest = OUT / f"mixcli-{commit[:12]}"
    if not (dest / "mixcli" / "__init__.py").exists():
        archive = subprocess.run(["git", "archive", "--format=tar", commit, "mixcli"], capture_output=True, cwd=ROOT, check=True)
        tmp = OUT / f".mixcli-{commit[:12]}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        os.replace(tmp, dest)
    compileall.compile_dir(str(dest / "mixcli"), quiet=1)
    return dest


def use_worktree() -> str:
    _put_first(ROOT)
    commit = _cmd_output(["git", "rev-parse", "--short=12", "HEAD"])
    dirty = _cmd_output(["git", "status", "--porcelain", "--", "mixcli"])
    return f"working tree at {commit}" + (" with uncommitted changes under mixcli/" if dirty else "")


def _put_first(path: Path) -> None:
    """``path`` first on sys.path here and on PYTHONPATH for every child process, its mixcli/
    byte-compiled (``COMPILED_NOTE``)."""
    import compileall

    compileall.compile_dir(str(path / "mixcli"), quiet=1)
    sys.path.insert(0, str(path))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(path), *filter(None, [os.environ.get("PYTHONPATH")])])


COMPILED_NOTE = ("mixcli's modules are byte-compiled before timing (compileall), as pip compiles an installed "
                 "package and R byte-compiles lme4 at install: where PYTHONDONTWRITEBYTECODE is set (as here), "
                 "every mixcli process would otherwise compile its ~20,000 lines again (~70 ms of a 0.33 s "
                 "classroom compare).")


# ---------------------------------------------------------------------------
# Running and timing one process


@dataclass
class Run:
    wall: float
    maxrss_kib: int
    user: float
    sys: float
    stdout: str
    stderr: str
    load: float = 0.0  # cores kept busy by other processes just before the run


class BenchError(RuntimeError):
    pass


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def background_load(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes, measured over ``seconds`` while we sleep."""
    b0, t0 = _cpu_times()
    time.sleep(seconds)
    b1, t1 = _cpu_times()
    return (os.cpu_count() or 1) * (b1 - b0) / max(t1 - t0, 1)


class Quiet:
    """Before each timed run, wait (up to ``max_wait`` s) until other processes use < ``limit`` cores.

    The machine is shared; a concurrent test suite or R session would slow
    whichever tool happens to run beside it. The load seen just before each run
    is recorded either way.
    """

    def __init__(self, limit: float, max_wait: float):
        self.limit, self.max_wait = limit, max_wait

    def wait(self) -> float:
        deadline = time.monotonic() + self.max_wait
        load = background_load()
        while load >= self.limit and time.monotonic() < deadline:
            print(f"    (waiting: other processes keep {load:.1f} cores busy)", flush=True)
            time.sleep(5)
            load = background_load()
        return load


def run_process(cmd: list[str], label: str) -> Run:
    """Spawn ``cmd``, wait with os.wait4, return wall time, peak RSS and output."""
    out_path, err_path = OUT / f"{label}.out", OUT / f"{label}.err"
    with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"{label}: {' '.join(cmd[:3])} ... exited with {proc.returncode}:\n{stderr[-2000:]}")
    return Run(wall, int(usage.ru_maxrss), usage.ru_utime, usage.ru_stime, stdout, stderr)


def run_steps(steps: list[list[str]], label: str) -> Run:
    """Several processes one after the other, counted as one run: times add, peak is the max."""
    try:
        runs = [run_process(cmd, f"{label}.{i}" if len(steps) > 1 else label) for i, cmd in enumerate(steps)]
    except BenchError as err:  # a half-saved file in a shared working tree: retry once
        print(f"    failed, retrying in 30 s: {str(err).splitlines()[-1][:200]}", flush=True)
        time.sleep(30)
        runs = [run_process(cmd, f"{label}.{i}" if len(steps) > 1 else label) for i, cmd in enumerate(steps)]
    return Run(
        wall=sum(r.wall for r in runs),
        maxrss_kib=max(r.maxrss_kib for r in runs),
        user=sum(r.user for r in runs),
        sys=sum(r.sys for r in runs),
        stdout="".join(r.stdout for r in runs),
        stderr="".join(r.stderr for r in runs),
    )


# ---------------------------------------------------------------------------
# Jobs


@dataclass
class Tool:
    name: str
    steps: list[list[str]]
    parse: object  # callable(stdout) -> {model: {"criterion", "method", "evaluations"?}}
    runs: list[Run] = field(default_factory=list)
    models: dict = field(default_factory=dict)
    # the time to record instead of the process's wall clock: an in-process measurement the child
    # prints (the ``inprocess`` job), callable(stdout) -> seconds
    clock: object = None

    @property
    def median(self) -> float:
        return statistics.median(r.wall for r in self.runs)

    @property
    def peak_mib(self) -> float:
        return max(r.maxrss_kib for r in self.runs) / 1024

    @property
    def cpu(self) -> float:
        return statistics.median(r.user + r.sys for r in self.runs)


@dataclass
class Job:
    name: str
    title: str
    data: Path
    reps: int
    mixcli: Tool
    lme4: Tool
    target: str = ""
    ratio_goal: float | None = None  # lme4 time / mixcli time must be at least this
    memory_goal: float | None = None  # mixcli peak / lme4 peak must be at most this
    seconds_goal: float | None = None  # mixcli median must be below this
    memory_mib_goal: float | None = None  # mixcli peak must be at most this many MiB
    extra: list[Tool] = field(default_factory=list)  # timed alone (statsmodels)
    details_mode: str | None = "fit"  # bench/mixcli_details.py's mode for the untimed evaluation counts
    rows: int = 0
    notes: list[str] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)  # per model: criteria and evaluations
    lme4_scale: float = 1.0  # lme4's time is a run of 1/lme4_scale of the work (power jobs' R loops)

    @property
    def ratio(self) -> float:
        return self.lme4.median * self.lme4_scale / self.mixcli.median

    def verdict(self) -> tuple[bool, str]:
        parts, ok = [], True
        if self.ratio_goal is not None:
            good = self.ratio >= self.ratio_goal
            ok &= good
            parts.append(f"time ratio {self.ratio:.{2 if self.ratio < 2 else 1}f} {'≥' if good else '<'} "
                         f"{self.ratio_goal:.3g}")
        if self.memory_goal is not None:
            share = self.mixcli.peak_mib / self.lme4.peak_mib
            good = share <= self.memory_goal
            ok &= good
            parts.append(f"memory {share:.2f} of lme4's {'≤' if good else '>'} {self.memory_goal:g}")
        if self.seconds_goal is not None:
            good = self.mixcli.median < self.seconds_goal
            ok &= good
            parts.append(f"{self.mixcli.median:.1f} s {'<' if good else '≥'} {self.seconds_goal:g} s")
        if self.memory_mib_goal is not None:
            good = self.mixcli.peak_mib <= self.memory_mib_goal
            ok &= good
            parts.append(f"peak {self.mixcli.peak_mib:.0f} MiB {'≤' if good else '>'} {self.memory_mib_goal:g}")
        return ok, "; ".join(parts)


def mixcli_cmd(*args: str) -> list[str]:
    return [str(VENV_BIN / "mixcli"), *args]


def rscript_cmd(*args: str) -> list[str]:
    return [shutil.which("Rscript") or "Rscript", str(R_SCRIPT), *args]


def parse_mixcli_fit(stdout: str) -> dict:
    out = {}
    for i, line in enumerate(l for l in stdout.splitlines() if l.startswith("{")):
        obj = json.loads(line)
        name = obj.get("_bench_name") or f"fit{i}"
        rec = {"criterion": obj["criterion"], "method": obj.get("method", "?"), "ddf": obj.get("ddf")}
        for key in ("evaluations", "feval", "n_evaluations"):
            if key in obj:
                rec["evaluations"] = obj[key]
        out[name] = rec
    return out


def parse_mixcli_compare(stdout: str) -> dict:
    out = {}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        obj = json.loads(line)
        for m in obj.get("models", []):
            rec = {"criterion": m["deviance"], "method": "ML"}
            for key in ("evaluations", "feval", "n_evaluations"):
                if key in m:
                    rec["evaluations"] = m[key]
            out[m["name"]] = rec
    return out


def parse_mixcli_fit_pair(names: list[str]):
    """Fallback compare (no `mixcli compare`): REML fits then ML fits, named in order."""

    def parse(stdout: str) -> dict:
        objs = [json.loads(l) for l in stdout.splitlines() if l.startswith("{")]
        out = {}
        for obj, name in zip(objs[len(names):], names):
            out[name] = {"criterion": obj["criterion"], "method": "ML"}
        return out

    return parse


def parse_r(stdout: str, kinds=("fit", "anova")) -> dict:
    out: dict = {}
    for line in stdout.splitlines():
        if not line.startswith("BENCH\t"):
            continue
        f = line.split("\t")
        if f[1] == "fit" and "fit" in kinds:
            out.setdefault(f"{f[2]}/{f[3]}", {}).update(criterion=float(f[4]), evaluations=int(f[5]), method=f[3])
        elif f[1] == "anova" and "anova" in kinds:
            out.setdefault(f"{f[2]}/anova", {}).update(criterion=float(f[4]), method="ML")
    return out


def has_compare() -> bool:
    proc = subprocess.run(mixcli_cmd("compare", "--help"), capture_output=True, cwd=ROOT)
    return proc.returncode == 0


def compare_job(name: str, title: str, data: Path, reps: int) -> Job:
    specs = [f"{n}={f}" for n, f in COMPARE]
    names = [n for n, _ in COMPARE]
    formulas = [f for _, f in COMPARE]
    if has_compare():
        mix = Tool(
            "mixcli",
            [mixcli_cmd("compare", "--format", "json", "--names", ",".join(names), str(data), *formulas)],
            parse_mixcli_compare,
        )
        note = "mixcli: one `mixcli compare` process (ML fits of the three models)."
    else:
        mix = Tool(
            "mixcli",
            [
                mixcli_cmd("fit", "--format", "json", str(data), *formulas),
                mixcli_cmd("fit", "--ml", "--format", "json", str(data), *formulas),
            ],
            parse_mixcli_fit_pair(names),
        )
        note = "mixcli: `mixcli compare` not available; timed as `mixcli fit` + `mixcli fit --ml` (two processes, times added)."
    r = Tool("lme4", [rscript_cmd("compare", str(data), *specs)], parse_r)
    job = Job(
        name,
        title,
        data,
        reps,
        mix,
        r,
        target="≤ 0.2 of lme4's time (issue 20)",
        ratio_goal=5.0,
    )
    job.notes.append(note)
    job.notes.append("lme4: REML fits of M14, M17, M16, then `anova(M14, M17, M16)`, which refits all three by ML.")
    return job


def fit_has_ddf() -> bool:
    proc = subprocess.run(mixcli_cmd("fit", "--help"), capture_output=True, text=True, cwd=ROOT)
    return "--ddf" in proc.stdout


def fit_job(name: str, title: str, data: Path, formula: str, reps: int, ddf_none: bool = False, ml: bool = False,
            family: str | None = None, **goals) -> Job:
    """``mixcli fit`` next to ``lmer`` (REML, or ML with ``ml``), or next to ``glmer`` with ``family``."""
    if family is not None:
        mix = Tool("mixcli", [mixcli_cmd("fit", "--format", "json", "--family", family, str(data), formula)],
                   parse_mixcli_fit)
        r = Tool("lme4", [rscript_cmd(f"glmer-{family}", str(data), formula)], parse_r)
        return Job(name, title, data, reps, mix, r, details_mode=f"glmm-{family}", **goals)
    method = ["--ml"] if ml else []
    mix = Tool("mixcli", [mixcli_cmd("fit", "--format", "json", *method, str(data), formula)], parse_mixcli_fit)
    r = Tool("lme4", [rscript_cmd("fit-ml" if ml else "fit", str(data), formula)], parse_r)
    job = Job(name, title, data, reps, mix, r, details_mode="fit-ml" if ml else "fit", **goals)
    if ddf_none:
        # mixcli fit adds Satterthwaite df and p-values by default (lmerTest's
        # t tests), which lme4's summary() does not compute: also time the
        # like-for-like fit, t values only.
        job.extra.append(Tool(
            "mixcli --ddf none",
            [mixcli_cmd("fit", "--format", "json", "--ddf", "none", *method, str(data), formula)],
            parse_mixcli_fit,
        ))
    return job


# ---------------------------------------------------------------------------
# statsmodels (optional)

STATSMODELS_CODE = r"""
import sys, warnings, json
import pandas as pd
import statsmodels
from statsmodels.regression.mixed_linear_model import MixedLM
d = pd.read_csv(sys.argv[1])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = MixedLM.from_formula("mathscore ~ ses", groups="schoolid", re_formula="~ses",
                                 vc_formula={"classid": "0 + C(classid)"}, data=d)
    result = model.fit(reml=True)
print(result.summary())
print("BENCHSM " + json.dumps({
    "criterion": -2.0 * float(result.llf),
    "converged": bool(result.converged),
    "statsmodels": statsmodels.__version__,
    "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught}),
}))
"""


def statsmodels_python(explicit: str | None) -> str | None:
    python = explicit or str(VENV_BIN / "python")
    proc = subprocess.run([python, "-c", "import statsmodels"], capture_output=True)
    return python if proc.returncode == 0 else None


def parse_statsmodels(stdout: str) -> dict:
    for line in stdout.splitlines():
        if line.startswith("BENCHSM "):
            obj = json.loads(line[8:])
            return {"M17/REML": {"criterion": obj["criterion"], "method": "REML", **obj}}
    return {}


# ---------------------------------------------------------------------------
# Details: criteria and evaluation counts


def _details_run(mode: str, job: Job, *args: str) -> list[dict]:
    cmd = [str(VENV_BIN / "python"), str(DETAILS), mode, str(job.data), *args]
    out = run_process(cmd, f"{job.name}-mixcli-details").stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def collect_details(job: Job, compare_mode: bool) -> None:
    """Fill job.details with one row per model: criteria and evaluations of both tools.

    Criteria come from the timed runs' output; evaluation counts from it where
    printed, else from one untimed run (mixcli_details.py; lme4_job.R
    compare-details for the ML refits inside anova()).
    """
    mix_out, r_out = job.mixcli.models, job.lme4.models

    def evals(rec: dict, fallback: dict):
        return rec.get("evaluations", fallback.get("evaluations"))

    if compare_mode:
        specs = [f"{n}={f}" for n, f in COMPARE]
        r_extra = parse_r(run_process(rscript_cmd("compare-details", str(job.data), *specs), f"{job.name}-lme4-details").stdout)
        mix_extra = {(d["name"], d["method"]): d for d in _details_run("compare", job, *specs)}
        for name, _ in COMPARE:
            # REML: lme4 fits these before anova(); mixcli compare does not need them,
            # so its REML criteria come from the untimed run.
            md = mix_extra.get((name, "REML"), {})
            job.details.append(dict(
                model=name, method="REML (lme4's lmer fits)", mixcli=md.get("criterion"),
                lme4=r_out.get(f"{name}/REML", {}).get("criterion"), mixcli_evals=md.get("evaluations"),
                lme4_evals=r_out.get(f"{name}/REML", {}).get("evaluations"), stages=md.get("stages", []),
            ))
            md = mix_extra.get((name, "ML"), {})
            mo = mix_out.get(name, {})
            job.details.append(dict(
                model=name, method="ML (the comparison)", mixcli=mo.get("criterion", md.get("criterion")),
                lme4=r_out.get(f"{name}/anova", {}).get("criterion"), mixcli_evals=evals(mo, md),
                lme4_evals=r_extra.get(f"{name}/ML", {}).get("evaluations"), stages=md.get("stages", []),
            ))
        return

    formula = job.mixcli.steps[0][-1]
    extra = _details_run(job.details_mode, job, formula)
    md = extra[0] if extra else {}
    mo = next(iter(mix_out.values()), {})
    r = next(iter(r_out.values()), {})
    job.details.append(dict(
        model=formula, method=r.get("method", mo.get("method", "?")), mixcli=mo.get("criterion"), lme4=r.get("criterion"),
        mixcli_evals=evals(mo, md), lme4_evals=r.get("evaluations"), stages=md.get("stages", []),
    ))
    for tool in job.extra:
        sm = tool.models.get("M17/REML")
        if sm:
            job.details.append(dict(
                model=f"{formula} — **{tool.name}** in the mixcli columns", method="REML",
                mixcli=sm["criterion"], lme4=r.get("criterion"), mixcli_evals=None,
                lme4_evals=r.get("evaluations"), stages=[], other=tool.name,
            ))


# ---------------------------------------------------------------------------
# Environment


def _cmd_output(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def environment(source: str) -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    py = _cmd_output(
        [
            str(VENV_BIN / "python"),
            "-c",
            "import sys, numpy, scipy; print(sys.version.split()[0], numpy.__version__, scipy.__version__)",
        ]
    ).split()
    r = _cmd_output(
        ["Rscript", "-e", 'cat(paste(R.version$major, R.version$minor, sep="."), as.character(packageVersion("lme4")), '
         'as.character(packageVersion("Matrix")), extSoftVersion()[["BLAS"]])']
    ).split(maxsplit=3)
    return {
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "uname -a": _cmd_output(["uname", "-a"]),
        "CPU": cpu,
        "cores": f"{os.cpu_count()} (usable by this process: {len(os.sched_getaffinity(0))})",
        "Python": py[0] if py else "?",
        "numpy": py[1] if len(py) > 1 else "?",
        "scipy": py[2] if len(py) > 2 else "?",
        "R": r[0] if r else "?",
        "lme4": r[1] if len(r) > 1 else "?",
        "Matrix (R)": r[2] if len(r) > 2 else "?",
        "R BLAS": r[3] if len(r) > 3 else "?",
        "mixcli": f"{_cmd_output(mixcli_cmd('--version'))}, {source}",
    }


# ---------------------------------------------------------------------------
# Report


def _fmt_s(x: float) -> str:
    if x < 0.1:  # (the in-process job's tens of milliseconds)
        return f"{x:.4f}"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _fmt_crit(x) -> str:
    return "–" if x is None else f"{x:.6f}"


def table_lines(jobs: list[Job]) -> list[str]:
    lines = [
        "| job | rows | mixcli median s | lme4 median s | lme4/mixcli | mixcli peak MiB | lme4 peak MiB "
        "| CPU s mixcli / lme4 | target | met? |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for j in jobs:
        ok, why = j.verdict()
        met = f"{'yes' if ok else '**no**'}: {why}" if why else "–"
        lines.append(
            f"| {j.title} | {j.rows:,} | {_fmt_s(j.mixcli.median)} | {_fmt_s(j.lme4.median * j.lme4_scale)}"
            f"{f' (×{j.lme4_scale:g})' if j.lme4_scale != 1 else ''} | {j.ratio:.{2 if j.ratio < 2 else 1}f} "
            f"| {j.mixcli.peak_mib:.0f} | {j.lme4.peak_mib:.0f} | {_fmt_s(j.mixcli.cpu)} / {_fmt_s(j.lme4.cpu)} "
            f"| {j.target or '–'} | {met} |"
        )
        for t in j.extra:
            ratio = j.lme4.median / t.median
            info = "–"
            if j.ratio_goal is not None and t.name.startswith("mixcli"):
                info = f"(for reference: time ratio {ratio:.1f} {'≥' if ratio >= j.ratio_goal else '<'} {j.ratio_goal:g})"
            elif j.seconds_goal is not None and t.name.startswith("mixcli"):
                info = f"(for reference: {t.median:.1f} s {'<' if t.median < j.seconds_goal else '≥'} {j.seconds_goal:g} s)"
            lines.append(
                f"| ↳ {t.name}, same data | {j.rows:,} | {_fmt_s(t.median)} | {_fmt_s(j.lme4.median)} "
                f"| {ratio:.1f} (lme4/{t.name}) | {t.peak_mib:.0f} | {j.lme4.peak_mib:.0f} "
                f"| {_fmt_s(t.cpu)} / {_fmt_s(j.lme4.cpu)} | – | {info} |"
            )
    return lines


def runs_lines(jobs: list[Job]) -> list[str]:
    lines = [
        "| job | tool | wall s of each run, in order | CPU s (user+sys), median | peak MiB | background load before each run (cores) |",
        "|---|---|---|---:|---:|---|",
    ]
    for j in jobs:
        for t in (j.mixcli, j.lme4, *j.extra):
            walls = ", ".join(_fmt_s(r.wall) for r in t.runs)
            loads = ", ".join(f"{r.load:.1f}" for r in t.runs)
            lines.append(f"| {j.name} | {t.name} | {walls} | {t.cpu:.2f} | {t.peak_mib:.0f} | {loads} |")
    return lines


def details_lines(jobs: list[Job]) -> tuple[list[str], list[str]]:
    lines = [
        "| job | model | fit | mixcli criterion | lme4 criterion | mixcli − lme4 | mixcli evals | lme4 evals |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    flags = []
    for j in jobs:
        for d in j.details:
            a, b = d["mixcli"], d["lme4"]
            if a is None or b is None:
                diff, flag = "–", ""
            else:
                delta = a - b
                flag = " ⚠" if abs(delta) > CRITERION_TOL else ""
                diff = f"{delta:+.2e}{flag}"
                if flag:
                    who = d.get("other", "mixcli")
                    better = f"{who} lower" if delta < 0 else "lme4 lower"
                    flags.append(f"{j.name} {d['model']} ({d['method']}): |Δ| = {abs(delta):.2e} > 1e-6 ({better})")
            me = "–" if d["mixcli_evals"] is None else str(d["mixcli_evals"])
            sub = [int(m) for st in d.get("stages", []) for m in re.findall(r"subsample.*?\((\d+) evaluations", st)]
            if sub:
                me += f" (+{sum(sub)} on a subsample)"
            le = "–" if d["lme4_evals"] is None else str(d["lme4_evals"])
            lines.append(
                f"| {j.name} | {d['model']} | {d['method']} | {_fmt_crit(a)} | {_fmt_crit(b)} | {diff} | {me} | {le} |"
            )
    return lines, flags


def stages_lines(jobs: list[Job]) -> list[str]:
    """mixcli's optimiser stages where there was more than one plain BOBYQA run."""
    out = []
    for j in jobs:
        for d in j.details:
            st = d.get("stages", [])
            if len(st) > 1 or any(not s.startswith("bobyqa from start") for s in st):
                out.append(f"- {j.name} {d['model']} ({d['method']}): " + "; ".join(st))
    return out


HEADER = """\
# mixcli benchmark: whole-process time and memory next to R + lme4

Generated by `bench/run.py`; this file is overwritten on every full run.

**Reproduce:** `make bench` (builds the venv if needed, then runs
`.venv/bin/python bench/run.py`). `--quick` does one repetition per job;
`--jobs NAME,...` runs a subset; `--no-write` leaves this file alone. Needs
`Rscript` with lme4 on the PATH. Data are generated (seeded) into
`bench/data/`, raw outputs land in `bench/out/` (both git-ignored). The real
classroom file is read in place from `../shared/data/classroom.csv` (or `$MIXCLI_SHARED`). The
mixcli timed is the committed HEAD (its `mixcli/` extracted into `bench/out/`
and put first on `PYTHONPATH`, so edits in progress in the checkout do not
leak in); `--worktree` times the working tree instead.

**What is timed:** each tool as a separate process, wall clock from spawn to
exit (interpreter start-up, imports, reading the CSV, fitting, printing), runs
alternating mixcli / R. Median of N runs; peak memory is the child's maximum
resident set size (`os.wait4`). Both tools read the same CSV files. The
machine is shared, so before each run the script waits (up to `--max-wait`
seconds) until other processes use less than `--idle-limit` cores, and
records the background load it saw; CPU time (user + sys) is shown too, as it
is less sensitive to other load than wall time.

**Targets:**

| job | target |
|---|---|
| classroom compare (M14, M17, M16) | mixcli ≤ 0.2 of lme4's whole-process time (ratio ≥ 5; issue 20) |
| fit M17, ~89k rows | ≤ 0.12 of lme4's time (ratio ≥ 8.33; issue 20) |
| fit M17, ~898k rows | ≤ 0.04 of lme4's time (ratio ≥ 25; issue 20) and peak memory ≤ half of lme4's |
| crossed, ~73k rows | "in seconds" (checked here as mixcli median < 10 s) |
| lme4's VerbAgg (real data, fixtures/data/verbagg.csv) | ≤ 0.15 of glmer's whole-process time (ratio ≥ 6.67) |
| random small GLMMs (`BENCH_ARGS=--glmm`, writes bench/GLMM_RESULTS.md) | whole process ≤ glmer's in-process time + 1 s |
| warm in-process classroom compare (`inprocess`) | ≤ 0.9 × 43697ea's time, the two alternated (issue 20) |

M14 = `mathscore ~ ses + (ses | schoolid)`, M17 = `mathscore ~ ses + (ses |
schoolid) + (1 | classid)`, M16 = `mathscore ~ ses + (ses | schoolid) + (ses ||
classid)`; crossed = `y ~ service + (1 | s) + (1 | d) + (1 | dept)`.
"""


# Issue 20's speed targets: the job, what is compared, the target, and the value when the issue was
# filed (measured as the issue states: the same data, both sides in one run; MovieLens by hand)
ISSUE20 = [
    ("inprocess", "warm in-process compare ×3: HEAD / 43697ea", 0.9, 2.1),
    ("compare-real", "classroom compare ×3, whole process: mixcli / lme4", 0.2, 0.31),
    ("fit-medium", "M17 on ~89k rows: mixcli / lme4", 0.12, 0.155),
    ("fit-large", "M17 on ~898k rows: mixcli / lme4", 0.04, 0.058),
]


def issue20_lines(jobs: list[Job]) -> list[str]:
    """Issue 20's targets: the share when it was filed and in this run (jobs not run: –)."""
    ran = {j.name: j for j in jobs}
    lines = ["| target | when filed | this run | met? |", "|---|---:|---:|---|"]
    for name, what, goal, before in ISSUE20:
        j = ran.get(name)
        now = f"{1 / j.ratio:.3f}" if j else "–"
        met = ("yes" if 1 / j.ratio <= goal else "no") if j else "not run"
        lines.append(f"| {what} ≤ {goal:g} | {before:g} | {now} | {met} |")
    lines.append("| MovieLens-1M shape (`ratings`): ≤ 15 s whole process within 1 GB | 39.5 s | "
                 + (f"{ran['ratings'].mixcli.median:.1f} s, {ran['ratings'].mixcli.peak_mib:.0f} MiB"
                    if "ratings" in ran else "– (timed by hand: lme4 takes ~30 min a run)") + " | "
                 + (("yes" if ran["ratings"].mixcli.median <= 15 and ran["ratings"].mixcli.peak_mib <= 1024 else "no")
                    if "ratings" in ran else "see the closing note") + " |")
    return lines


def write_report(path: Path, jobs: list[Job], env: dict, notes: list[str], args) -> str:
    details, flags = details_lines(jobs)
    parts = [HEADER, "## Machine and versions", ""]
    parts += [f"- **{k}:** {v}" for k, v in env.items()]
    parts += [f"- **repetitions:** {', '.join(f'{j.name} {len(j.mixcli.runs)}' for j in jobs)}", ""]
    parts += ["## Results (medians)", "", *table_lines(jobs), ""]
    parts += ["## Issue 20's speed targets, before and after", "",
              "Shares of the reference's time (lower is faster); \"when filed\" is the issue's own measurement.", "",
              *issue20_lines(jobs), ""]
    parts += ["## Criteria and optimiser evaluations", ""]
    parts += [
        "Criterion = −2 log-likelihood (ML) or the REML criterion. "
        f"Differences beyond {CRITERION_TOL:g} (absolute) are marked ⚠; a negative difference means "
        "mixcli found the lower (better) value.",
        "",
        *details,
        "",
    ]
    if flags:
        parts += ["Flagged:", "", *[f"- {f}" for f in flags], ""]
    else:
        parts += ["All criteria agree to 1e-6.", ""]
    stages = stages_lines(jobs)
    if stages:
        parts += ["mixcli's optimiser stages (from the untimed run) where it did more than one plain BOBYQA run:", "",
                  *stages, ""]
    parts += ["## Every run", "", *runs_lines(jobs), ""]
    parts += ["## Notes", "", *[f"- {n}" for n in notes]]
    for j in jobs:
        parts += [f"- {j.name}: {n}" for n in j.notes]
    text = "\n".join(parts).rstrip() + "\n"
    if path is not None:
        path.write_text(text)
    return text


def save_results(path: Path, jobs: list[Job], env: dict, notes: list[str]) -> None:
    """Everything the report is made of, so that `--render` can rewrite it without re-running."""

    def tool(t: Tool) -> dict:
        runs = [{k: v for k, v in vars(r).items() if k not in ("stdout", "stderr")} for r in t.runs]
        return {"name": t.name, "steps": t.steps, "models": t.models, "runs": runs}

    keys = ("name", "title", "reps", "target", "ratio_goal", "memory_goal", "seconds_goal", "rows", "notes", "details",
            "lme4_scale")
    data = {
        "env": env,
        "notes": notes,
        "jobs": [
            {**{k: getattr(j, k) for k in keys}, "data": str(j.data), "tools": [tool(t) for t in (j.mixcli, j.lme4, *j.extra)]}
            for j in jobs
        ],
    }
    path.write_text(json.dumps(data, indent=1))


def load_results(path: Path) -> tuple[list[Job], dict, list[str]]:
    data = json.loads(path.read_text())

    def tool(d: dict) -> Tool:
        runs = [Run(stdout="", stderr="", **r) for r in d["runs"]]
        return Tool(d["name"], d["steps"], None, runs=runs, models=d["models"])

    jobs = []
    for d in data["jobs"]:
        tools = [tool(t) for t in d.pop("tools")]
        d["data"] = Path(d["data"])
        jobs.append(Job(mixcli=tools[0], lme4=tools[1], extra=tools[2:], **d))
    return jobs, data["env"], data["notes"]


def lme4_warnings(job: Job) -> None:
    """lme4's convergence and singularity messages, once each, into the job's notes."""
    seen = []
    for run in job.lme4.runs:
        for line in run.stderr.splitlines():
            line = line.strip()
            if re.search(r"converge|singular|Hessian", line) and line not in seen:
                seen.append(line)
    if seen:
        job.notes.append("lme4 said: " + " | ".join(f"`{s}`" for s in seen))


# ---------------------------------------------------------------------------
# Power (mixcli power against an R loop doing what simr's powerSim does: bench/power_loop.R)

POWER_R = BENCH / "power_loop.R"
POWER_NSIM = 1000
CROSSED_POWER = "y ~ cond + (cond | subj) + (cond | item)"
CROSSED_DESIGN = "subj=24, item=16, n=2, cond=half"
CROSSED_SIZES = [12, 24, 36, 48, 60]
CROSSED_NSIM = 500
# the design's parameters for mixcli (SDs) and for R (lme4's θ = SD/σ, subj's term first: more levels)
CROSSED_PARAMS = ["--fixef", "cond=0.3", "--sd", "subj=0.5", "--sd", "subj|cond=0.2", "--sd", "item=0.4", "--sd",
                  "item|cond=0.2", "--sigma", "1"]
CROSSED_R_PARAMS = ["fixef:cond=0.3", "theta:0.5,0,0.2,0.4,0,0.2", "sigma:1"]


def _parse_nothing(stdout: str) -> dict:
    return {}


def power_m17_job(r_nsim: int) -> Job:
    """The seed's design (the real classroom data, M17), the slope of ses set to 4, 1,000 simulations."""
    mix = Tool("mixcli", [mixcli_cmd("power", str(REAL_CLASSROOM), M17, "--test", "ses", "--fixef", "ses=4", "--nsim",
                                     str(POWER_NSIM), "--seed", "1", "--format", "csv")], _parse_nothing)
    r = Tool("lme4", [[shutil.which("Rscript") or "Rscript", str(POWER_R), str(REAL_CLASSROOM), M17, "ses", str(r_nsim),
                       "1", "fixef:ses=4"]], _parse_nothing)
    job = Job("power-m17", "power: M17, test ses, 1,000 simulations", REAL_CLASSROOM, 1, mix, r,
              target="≤ 10 s, ≤ 0.05 of the R loop's time", ratio_goal=20.0, seconds_goal=10.0, details_mode=None,
              lme4_scale=POWER_NSIM / r_nsim)
    job.notes.append(f"lme4: bench/power_loop.R, simr's procedure as a loop (lme4's simulate, lmerTest::lmer refits) "
                     f"with {r_nsim} simulations; its whole-process time × {POWER_NSIM / r_nsim:g} (R's start-up and "
                     "pilot fit, ~2 s, are scaled too)")
    return job


# Issue 20's reference for small fits' per-fit cost: the code before the round that made them twice as slow
INPROCESS_BASE = "43697ea"
INPROCESS_REPS = 30


def inprocess_job(reps: int) -> Job:
    """Warm, in-process classroom compare ×3 (bench/inprocess.py: 3 warm-up compares, then the median
    of INPROCESS_REPS) of the committed HEAD against 43697ea's, the two alternated: the per-fit cost
    a power analysis or a bootstrap multiplies. In the table, 43697ea stands in the lme4 column."""
    script = str(BENCH / "inprocess.py")

    def clock(stdout: str) -> float:
        return float(json.loads(stdout.strip().splitlines()[-1])["median"])

    head = _cmd_output(["git", "rev-parse", "HEAD"])
    python = str(VENV_BIN / "python")
    mix = Tool("mixcli", [[python, script, str(extract(head)), str(REAL_CLASSROOM), str(INPROCESS_REPS)]],
               _parse_nothing, clock=clock)
    base = Tool(f"mixcli {INPROCESS_BASE}", [[python, script, str(extract(INPROCESS_BASE)), str(REAL_CLASSROOM),
                                             str(INPROCESS_REPS)]], _parse_nothing, clock=clock)
    job = Job("inprocess", f"warm in-process compare ×3 (real data) vs {INPROCESS_BASE}", REAL_CLASSROOM, reps, mix,
              base, target=f"≤ 0.9 × {INPROCESS_BASE}'s time", ratio_goal=1 / 0.9, details_mode=None)
    job.notes.append(f"the times are bench/inprocess.py's in-process medians of {INPROCESS_REPS} warm "
                     f"compares (M14, M17, M16 by ML, api.compare on a DataFrame), not whole processes; the lme4 "
                     f"column is mixcli at {INPROCESS_BASE} (extracted into bench/out/), run alternately with HEAD's "
                     "snapshot (always the committed HEAD, also with --worktree); the peak memory is the process's")
    return job


def power_crossed_data() -> Path:
    """The crossed design at its middle size (36 subjects), for the R loop (mixcli builds its own)."""
    def simulate(seed):
        from mixcli.power_analysis import design_table

        t = design_table(CROSSED_DESIGN.replace("subj=24", "subj=36"), "y", seed=seed)
        return {c: t[c] for c in t.names}
    return _generated("power_crossed", {"design": CROSSED_DESIGN, "subjects": 36, "seed": 9}, "crossed power design",
                      lambda: simulate(9))


def power_crossed_job(r_nsim: int) -> Job:
    """A 5-size power curve × 500 simulations on a crossed subjects × items design."""
    sizes = ",".join(str(s) for s in CROSSED_SIZES)
    mix = Tool("mixcli", [mixcli_cmd("power", CROSSED_POWER, "--design", CROSSED_DESIGN, "--test", "cond",
                                     *CROSSED_PARAMS, "--along", "subj", "--sizes", sizes, "--nsim", str(CROSSED_NSIM),
                                     "--seed", "1", "--format", "csv")], _parse_nothing)
    n_r = max(1, r_nsim // 10)
    r = Tool("lme4", [[shutil.which("Rscript") or "Rscript", str(POWER_R), str(power_crossed_data()), CROSSED_POWER,
                       "cond", str(n_r), "1", *CROSSED_R_PARAMS]], _parse_nothing)
    total = CROSSED_NSIM * len(CROSSED_SIZES)
    job = Job("power-crossed", f"power curve: crossed subjects × items, {len(CROSSED_SIZES)} sizes × {CROSSED_NSIM}",
              power_crossed_data(), 1, mix, r, target="≤ 60 s", seconds_goal=60.0, details_mode=None,
              lme4_scale=total / n_r)
    job.notes.append(f"lme4: bench/power_loop.R with {n_r} simulations at the middle size (36 subjects), time × "
                     f"{total / n_r:g}: a rough scale (sizes 12-60 subjects), for reference only; the target is mixcli's "
                     "time")
    return job


# ---------------------------------------------------------------------------
# Main


def main(argv=None) -> int:
    if argv is None and "--big" in sys.argv[1:] or argv is not None and "--big" in argv:
        # data larger than memory: fit --engine dask against the in-memory path (bench/big.py)
        import big

        rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--big"]
        return big.main(rest)
    if argv is None and "--glmm" in sys.argv[1:] or argv is not None and "--glmm" in argv:
        # random small GLMMs against glmer (bench/glmm_random.py)
        import glmm_random

        rest = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--glmm"]
        DATA.mkdir(exist_ok=True)
        OUT.mkdir(exist_ok=True)
        source = use_worktree() if "--worktree" in rest else use_snapshot()
        return glmm_random.main(rest, str(VENV_BIN / "mixcli"), source)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one repetition per job")
    ap.add_argument("--reps", type=int, default=5, help="repetitions for small and medium jobs (default 5)")
    ap.add_argument("--reps-large", type=int, default=3,
                    help="repetitions for the large and the crossed job (default 3)")
    ap.add_argument("--reps-slow", type=int, default=1,
                    help="repetitions for the MovieLens-shaped job, where lme4 takes ~30 minutes a run (default 1)")
    ap.add_argument("--jobs", help="comma-separated subset of: " + ", ".join(JOB_NAMES))
    ap.add_argument("--medium-schools", type=int, default=MEDIUM_SCHOOLS)
    ap.add_argument("--large-schools", type=int, default=LARGE_SCHOOLS)
    ap.add_argument("--statsmodels-python", help="interpreter with statsmodels (default: the project's venv)")
    ap.add_argument("--no-write", action="store_true", help="print the table, do not write bench/RESULTS.md")
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="only rewrite the report from a saved bench/out/results.json (no runs)")
    ap.add_argument("--worktree", action="store_true",
                    help="time the working tree's mixcli/ as it is (default: a snapshot of the committed HEAD)")
    ap.add_argument("--idle-limit", type=float, default=0.3,
                    help="before each run, wait while other processes keep this many cores busy (default 0.3)")
    ap.add_argument("--max-wait", type=float, default=30,
                    help="longest wait for the machine to quieten before a run, seconds (default 30)")
    ap.add_argument("--power-r-nsim", type=int, default=100,
                    help="simulations in the R loop of the power jobs, whose time is scaled to mixcli's number "
                         "(default 100; 1,000 lmerTest refits take minutes)")
    ap.add_argument("--data-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.render:
        jobs, env, notes = load_results(Path(args.render))
        text = write_report(None if args.no_write else BENCH / "RESULTS.md", jobs, env, notes, args)
        print(text[text.index("## Machine"):])
        return 0
    reps, reps_large = (1, 1) if args.quick else (args.reps, args.reps_large)
    wanted = set(args.jobs.split(",")) if args.jobs else set(JOB_NAMES)
    unknown = wanted - set(JOB_NAMES)
    if unknown:
        ap.error(f"unknown job(s): {', '.join(sorted(unknown))}")
    if not (VENV_BIN / "mixcli").exists():
        ap.error(f"{VENV_BIN / 'mixcli'} not found: run `make bench` (it builds the venv)")
    if shutil.which("Rscript") is None:
        ap.error("Rscript not found on PATH")
    DATA.mkdir(exist_ok=True)
    OUT.mkdir(exist_ok=True)
    source = use_snapshot() if not args.worktree else use_worktree()
    print(f"mixcli: {source}", flush=True)

    if not args.data_only:
        # Generate the data in a child: ru_maxrss of every timed process counts the memory of
        # the process it was forked from, so this one must stay small (a parent grown to 239 MiB
        # by a million simulated rows set a 239 MiB floor under every small job's peak).
        subprocess.run([sys.executable, __file__, "--data-only", *(sys.argv[1:] if argv is None else argv)],
                       check=True)
    print("data:", flush=True)
    jobs: list[Job] = []
    if "compare-real" in wanted:
        jobs.append(compare_job("compare-real", "classroom compare (real data)", REAL_CLASSROOM, reps))
    small = classroom_data("small", SMALL_SCHOOLS)
    if "compare-small" in wanted:
        jobs.append(compare_job("compare-small", f"classroom compare (simulated, {SMALL_SCHOOLS} schools)", small, reps))
    notes = [COMPILED_NOTE]
    ddf = fit_has_ddf()
    if "fit-small" in wanted:
        job = fit_job("fit-small", f"fit M17, {SMALL_SCHOOLS} schools", small, M17, reps, ddf_none=ddf)
        sm_python = statsmodels_python(args.statsmodels_python)
        if sm_python:
            job.extra.append(Tool("statsmodels", [[sm_python, "-c", STATSMODELS_CODE, str(small)]], parse_statsmodels))
        else:
            notes.append(
                "statsmodels: `import statsmodels` fails in the project's venv (it is not a dependency), "
                "so MixedLM was not timed; pass `--statsmodels-python` to use another interpreter."
            )
        jobs.append(job)
    if "fit-medium" in wanted:
        data = classroom_data("medium", args.medium_schools)
        jobs.append(fit_job("fit-medium", f"fit M17, {args.medium_schools:,} schools", data, M17, reps, ddf_none=ddf,
                            target="≤ 0.12 of lme4's time (issue 20)", ratio_goal=1 / 0.12))
    if "fit-large" in wanted:
        data = classroom_data("large", args.large_schools)
        jobs.append(fit_job("fit-large", f"fit M17, {args.large_schools:,} schools", data, M17, reps_large, ddf_none=ddf,
                            target="≤ 0.04 of lme4's time (issue 20), ≤ 1/2 its memory", ratio_goal=25.0,
                            memory_goal=0.5))
    if "crossed" in wanted:
        # Minutes per run for lme4: repeated as often as the large job.
        jobs.append(fit_job("crossed", "crossed s × d + dept (InstEval-like)", crossed_data(), CROSSED, reps_large, ddf_none=ddf,
                            target="in seconds", seconds_goal=10.0))
    if "kb07" in wanted and KB07.exists():
        # lme4 with its defaults (nloptwrap and the convergence check's Hessian): minutes per run
        jobs.append(fit_job("kb07", "kb07 maximal, ML (72 covariance parameters)", KB07, KB07_FORMULA, reps_large,
                            ddf_none=ddf, ml=True, target="≤ 1/10 of lme4's time", ratio_goal=10.0))
    elif "kb07" in wanted:
        notes.append(f"kb07: {KB07} not available (the shared data: ../shared or $MIXCLI_SHARED); job skipped")
    if "verbagg" in wanted:
        jobs.append(fit_job("verbagg", "GLMM: lme4's VerbAgg (crossed binary, real data)", VERBAGG_CSV, VERBAGG,
                            reps, family="binomial", target="≤ 0.15 of glmer's time", ratio_goal=1 / 0.15))
    if "glmm-100k" in wanted:
        data = classroom_data("glmm100k", GLMM_SCHOOLS)
        jobs.append(fit_job("glmm-100k", f"GLMM: pass/fail in classes in {GLMM_SCHOOLS:,} schools", data, GLMM_NESTED,
                            reps, family="binomial", target="≤ 1/10 of glmer's time", ratio_goal=10.0))
    if "glmm-1m" in wanted:
        data = classroom_data("glmm1m", GLMM_MILLION_SCHOOLS)
        jobs.append(fit_job("glmm-1m", f"GLMM: pass/fail in classes in {GLMM_MILLION_SCHOOLS:,} schools", data,
                            GLMM_NESTED, args.reps_slow, family="binomial", target="in seconds", seconds_goal=30.0))
    if "ratings" in wanted:
        # lme4 takes about half an hour per run here: one run of each tool, unless --reps-slow says more
        jobs.append(fit_job("ratings", "crossed user × item, MovieLens 1M shape", ratings_data(), RATINGS,
                            args.reps_slow, ddf_none=ddf, target="in seconds, ≤ 1 GB", memory_mib_goal=1024.0))
    if "ar1-100k" in wanted:
        # glmmTMB in the lme4 column: lme4 has no ar1 structure
        mix = Tool("mixcli", [mixcli_cmd("fit", "--format", "json", str(waves_data()), AR1_WAVES)], parse_mixcli_fit)
        tmb = Tool("glmmTMB", [rscript_cmd("glmmtmb-fit", str(waves_data()), AR1_WAVES)], parse_r)
        jobs.append(Job("ar1-100k", f"ar1 over {WAVES} waves, {WAVES_SCHOOLS:,} schools (vs glmmTMB)", waves_data(),
                        reps, mix, tmb, target="≤ 1/2 of glmmTMB's time", ratio_goal=2.0))
    if "power-m17" in wanted and REAL_CLASSROOM.exists():
        jobs.append(power_m17_job(args.power_r_nsim))
    elif "power-m17" in wanted:
        notes.append(f"power-m17: {REAL_CLASSROOM} not available; job skipped")
    if "power-crossed" in wanted:
        jobs.append(power_crossed_job(args.power_r_nsim))
    if "inprocess" in wanted and REAL_CLASSROOM.exists():
        jobs.append(inprocess_job(reps))
    elif "inprocess" in wanted:
        notes.append(f"inprocess: {REAL_CLASSROOM} not available; job skipped")
    for j in jobs:
        j.rows = count_rows(j.data)

    if args.data_only:
        return 0

    # Warm the page cache for both tools' code (the first R and Python start-ups
    # after boot read hundreds of MB); the data files were just written or read.
    quiet = Quiet(args.idle_limit, args.max_wait)
    print("warm-up...", flush=True)
    run_process(rscript_cmd("fit", str(small), M14), "warmup-lme4")
    run_process(mixcli_cmd("fit", "--format", "json", str(small), M14), "warmup-mixcli")

    for j in jobs:
        print(f"{j.name}: {j.rows:,} rows, {j.reps} run(s) each", flush=True)
        for i in range(j.reps):
            for tool in (j.mixcli, j.lme4, *j.extra):
                load = quiet.wait()
                run = run_steps(tool.steps, f"{j.name}-{tool.name.replace(' ', '_')}-{i + 1}")
                run.load = load
                if tool.clock is not None:
                    run.wall = tool.clock(run.stdout)
                tool.runs.append(run)
                tool.models = tool.parse(run.stdout)
                print(f"  {tool.name:12s} run {i + 1}: {run.wall:7.2f} s  {run.maxrss_kib / 1024:7.0f} MiB"
                      f"  (background {load:.1f} cores)", flush=True)
        for tool in (t for t in j.extra if t.name == "statsmodels"):
            for key, rec in tool.models.items():
                if rec.get("warnings"):
                    j.notes.append(f"{tool.name} {rec.get('statsmodels', '')} warnings: " + " | ".join(rec["warnings"]))
                j.notes.append(f"{tool.name}: converged = {rec.get('converged')}")
        if j.details_mode is not None:
            collect_details(j, compare_mode=j.name.startswith("compare"))
        lme4_warnings(j)

    exposed = any("evaluations" in m for j in jobs for m in j.mixcli.models.values())
    notes.insert(
        0,
        "mixcli evaluation counts: "
        + (
            "read from the JSON output."
            if exposed
            else "`--format json` does not expose them, so they come from one untimed run of "
            "`bench/mixcli_details.py` (the same fits through mixcli's Python API; OptSummary.evaluations)."
        ),
    )
    if any(m.get("ddf") not in (None, "none") for j in jobs for m in j.mixcli.models.values()):
        notes.append(
            "`mixcli fit` computes Satterthwaite df and p-values by default (lmerTest's t tests; its JSON "
            "has `\"ddf\": \"satterthwaite\"`), which lme4's `summary()` does not. The targets are judged on the "
            "default; the `↳ mixcli --ddf none` rows time the like-for-like fit (t values only). The mixcli "
            "evaluation counts are the optimiser's only, without the Satterthwaite derivatives' evaluations."
        )
    notes.append(
        "lme4 evaluation counts are `m@optinfo$feval`; for the ML refits inside `anova()` they come from an "
        "untimed `refitML()` run (`lme4_job.R compare-details`), which is what anova() calls."
    )
    notes.append(
        "The simulator makes about 11.2 rows per school, so the ~89k- and ~898k-row sizes named by the targets "
        f"are {MEDIUM_SCHOOLS:,} and {LARGE_SCHOOLS:,} schools (5,000 and 50,000 schools give ~56k and ~560k rows)."
    )
    notes.append(
        "lme4 reads the CSV with base R's `read.csv` and prints `summary(m)` (fit jobs) or the anova table; "
        "mixcli prints its JSON."
    )

    env = environment(source)
    save_results(OUT / "results.json", jobs, env, notes)
    text = write_report(None if args.no_write else BENCH / "RESULTS.md", jobs, env, notes, args)
    print()
    print(text[text.index("## Machine"):])
    return 0


JOB_NAMES = ["compare-real", "compare-small", "fit-small", "fit-medium", "fit-large", "crossed", "kb07", "verbagg",
             "glmm-100k", "glmm-1m", "ratings", "power-m17", "power-crossed", "ar1-100k", "inprocess"]

if __name__ == "__main__":
    sys.exit(main())
