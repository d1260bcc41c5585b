"""Random GLMMs against glmer: the small-GLMM benchmark (``make bench BENCH_ARGS=--glmm``).

    make bench BENCH_ARGS=--glmm                          # 48 models, seed 1, writes bench/GLMM_RESULTS.md
    .venv/bin/python bench/run.py --glmm --count 96 --seed 2 --reps 3 --no-write

``random_glmms(seed, count)`` draws models the way users meet them: a binary, a binomial
(``cbind(s, m - s)``) or a Poisson response (log or sqrt link), 30 to 4,000 rows (log-uniform,
so most have a few hundred), fixed effects ``x + z`` (a covariate and a two-level factor), and
random effects on one factor, on a factor and a factor nested in it, or on two crossed factors,
with random intercepts or intercepts and slopes. Each model is fitted by glmer in one R process
(its in-process time, ``glmm_random.R``) and by ``mixcli fit`` as a whole process; the target is
mixcli's whole-process time at most glmer's in-process time + 1 s, at a criterion at or below
glmer's.

Grouping levels are written as text (``g07``, ``b2``) so that R reads them as factors and
``g:b`` is an interaction, not a sequence.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
R_SCRIPT = BENCH / "glmm_random.R"
SLACK = 1.0  # seconds: mixcli's whole process may take glmer's in-process time plus this

# random-effects structures: formula part and whether it needs the nested (b in g) or crossed (a, b) factors
STRUCTURES = [
    ("(1 | g)", "one"),
    ("(x | g)", "one"),
    ("(1 | g) + (1 | g:b)", "nested"),
    ("(x | g) + (1 | g:b)", "nested"),
    ("(1 | a) + (1 | b)", "crossed"),
    ("(x | a) + (1 | b)", "crossed"),
]
RESPONSES = [("binary", "binomial", "logit"), ("binomial", "binomial", "logit"), ("poisson", "poisson", "log"),
             ("poisson-sqrt", "poisson", "sqrt")]


@dataclass
class GlmmCase:
    name: str
    formula: str
    family: str
    link: str
    columns: dict  # column name → values, for the CSV

    @property
    def rows(self) -> int:
        return len(self.columns["y"]) if "y" in self.columns else len(self.columns["s"])


def random_glmms(seed: int, count: int, min_rows: int = 30, max_rows: int = 4000) -> list[GlmmCase]:
    """``count`` models, the same ones for the same seed (and numpy)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        kind, fam, link = RESPONSES[i % len(RESPONSES)]
        re_part, layout = STRUCTURES[(i // len(RESPONSES)) % len(STRUCTURES)]
        n = int(round(np.exp(rng.uniform(np.log(min_rows), np.log(max_rows)))))
        cols = _design(rng, n, layout)
        x, z = cols["x"], cols["z"]
        eta_u = _random_part(rng, cols, re_part)
        if kind == "poisson-sqrt":  # η = √μ: kept positive as glmer's start assumes
            eta = rng.uniform(1.5, 3.0) + 0.3 * x + 0.4 * (z == "B") + 0.5 * eta_u
            mu = np.maximum(eta, 0.05) ** 2
        elif kind == "poisson":
            eta = rng.uniform(-0.5, 1.5) + 0.3 * x + 0.4 * (z == "B") + eta_u
            mu = np.exp(eta)
        else:
            eta = rng.uniform(-1.0, 1.0) + 0.5 * x - 0.5 * (z == "B") + eta_u
            mu = 1.0 / (1.0 + np.exp(-eta))
        if kind == "binomial":
            m = rng.integers(1, 16, size=n)
            cols["s"] = rng.binomial(m, mu)
            cols["m"] = m
            lhs = "cbind(s, m - s)"
        elif kind == "binary":
            cols["y"] = (rng.random(n) < mu).astype(int)
            lhs = "y"
        else:
            cols["y"] = rng.poisson(mu)
            lhs = "y"
        formula = f"{lhs} ~ x + z + {re_part}"
        out.append(GlmmCase(f"g{i + 1:03d}", formula, fam, link, cols))
    return out


def _design(rng, n: int, layout: str) -> dict:
    import numpy as np

    x = np.round(rng.normal(0.0, 1.0, n), 3)
    z = np.where(rng.random(n) < 0.5, "A", "B")
    cols = {"x": x, "z": z}
    if layout == "crossed":
        na = int(rng.integers(5, max(6, min(60, n // 4))))
        nb = int(rng.integers(4, max(5, min(30, n // 6))))
        cols["a"] = np.array([f"a{v:02d}" for v in rng.integers(0, na, n)])
        cols["b"] = np.array([f"b{v:02d}" for v in rng.integers(0, nb, n)])
        return cols
    ng = int(rng.integers(4, max(5, min(80, n // 5))))
    g = rng.integers(0, ng, n)
    cols["g"] = np.array([f"g{v:02d}" for v in g])
    if layout == "nested":
        per = int(rng.integers(2, 6))
        cols["b"] = np.array([f"b{v}" for v in rng.integers(0, per, n)])
    return cols


def _random_part(rng, cols: dict, re_part: str):
    """Z b per row for the structure's terms, SDs drawn per model."""
    import numpy as np

    n = len(cols["x"])
    out = np.zeros(n)
    for term in re_part.split(" + "):
        inside = term.strip("() ")
        lhs, factor = [s.strip() for s in inside.split("|")]
        if factor == "g:b":
            codes = np.unique(np.char.add(cols["g"].astype(str), cols["b"].astype(str)), return_inverse=True)[1]
        else:
            codes = np.unique(cols[factor], return_inverse=True)[1]
        q = int(codes.max()) + 1
        out += rng.uniform(0.2, 1.0) * rng.standard_normal(q)[codes]
        if lhs == "x":
            out += rng.uniform(0.05, 0.5) * rng.standard_normal(q)[codes] * cols["x"]
    return out


def write_case(case: GlmmCase, path) -> None:
    from mixcli.simulate import write_csv

    write_csv(case.columns, path)


# ---------------------------------------------------------------------------
# The benchmark


def write_models(seed: int, count: int, folder: Path) -> tuple[list[GlmmCase], Path]:
    """The models' CSV files and the manifest glmm_random.R reads (name, csv, formula, family, link)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = random_glmms(seed, count)
    manifest = folder / "manifest.tsv"
    with open(manifest, "w") as fh:
        for c in cases:
            path = folder / f"{c.name}.csv"
            write_case(c, path)
            fh.write(f"{c.name}\t{path}\t{c.formula}\t{c.family}\t{c.link}\n")
    return cases, manifest


def glmer_runs(manifest: Path) -> dict:
    """name → (criterion or None, evaluations, in-process wall seconds, in-process CPU seconds) from one
    R process."""
    out = subprocess.run(["Rscript", str(R_SCRIPT), str(manifest)], capture_output=True, text=True, check=True).stdout
    res = {}
    for line in out.splitlines():
        if line.startswith("BENCH\tglmm\t"):
            _, _, name, crit, feval, secs, cpu = line.split("\t")
            res[name] = (None if crit == "NA" else float(crit), None if feval == "NA" else int(feval), float(secs),
                         float(cpu))
    return res


def mixcli_run(mixcli: str, case: GlmmCase, path: Path) -> tuple[float, float, float | None]:
    """(whole-process wall seconds, its CPU seconds, criterion) of ``mixcli fit`` on one model."""
    import os

    cmd = [mixcli, "fit", "--format", "json", "--family", case.family, "--link", case.link, str(path), case.formula]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # (reaped here: keep Popen from waiting)
    cpu = usage.ru_utime + usage.ru_stime
    if proc.returncode != 0:
        return wall, cpu, None
    line = next((ln for ln in stdout.splitlines() if ln.startswith("{")), None)
    return wall, cpu, (json.loads(line)["criterion"] if line else None)


def details(manifest: Path) -> dict:
    """name → mixcli's optimiser evaluations (one untimed in-process fit of each model)."""
    from mixcli.family import family
    from mixcli.fitting import fit_frame
    from mixcli.frame import model_frame
    from mixcli.io import read_table

    out = {}
    for line in manifest.read_text().splitlines():
        name, csv, formula, fam, link = line.split("\t")
        try:
            r = fit_frame(model_frame(read_table(csv), formula, family=family(fam, link)))
            out[name] = int(r.optsummary.evaluations)
        except Exception:  # (a model mixcli refuses is reported as such in the table)
            out[name] = None
    return out


def main(argv: list[str], mixcli: str, source: str = "") -> int:
    ap = argparse.ArgumentParser(prog="bench/run.py --glmm", description="random GLMMs: mixcli against glmer")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=48)
    ap.add_argument("--reps", type=int, default=2, help="whole-process runs of mixcli per model (median); glmer's "
                                                        "in-process time is the median of as many R runs")
    ap.add_argument("--worktree", action="store_true", help="(bench/run.py's: time the working tree)")
    ap.add_argument("--no-write", action="store_true", help="print the table, do not write bench/GLMM_RESULTS.md")
    args = ap.parse_args(argv)
    folder = BENCH / "data" / f"glmm-random-{args.seed}-{args.count}"
    cases, manifest = write_models(args.seed, args.count, folder)
    print(f"{len(cases)} models in {folder.relative_to(ROOT)}", flush=True)
    r_runs, mix_runs = [], {c.name: [] for c in cases}
    crit = {}
    for rep in range(args.reps):  # alternating: a whole R pass, then every model through mixcli
        print(f"  glmer pass {rep + 1}", flush=True)
        r_runs.append(glmer_runs(manifest))
        print(f"  mixcli pass {rep + 1}", flush=True)
        for c in cases:
            wall, cpu, value = mixcli_run(mixcli, c, folder / f"{c.name}.csv")
            mix_runs[c.name].append((wall, cpu))
            crit[c.name] = value
    evals = json.loads(subprocess.run([sys.executable, __file__, "details", str(manifest)], capture_output=True,
                                      text=True, check=True, cwd=ROOT).stdout)
    lines = ["| model | rows | family (link) | formula | mixcli whole s (CPU) | glmer in-process s (CPU) "
             "| excess over glmer + 1 s: wall, CPU | mixcli − glmer criterion | evals mixcli / glmer |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    over = {"wall": 0, "CPU": 0}
    worst = {"wall": -float("inf"), "CPU": -float("inf")}
    higher = []
    for c in cases:
        mix = statistics.median(w for w, _ in mix_runs[c.name])
        mix_cpu = statistics.median(u for _, u in mix_runs[c.name])
        rc, rf, _, _ = r_runs[0][c.name]
        rs = statistics.median(r[c.name][2] for r in r_runs)
        rs_cpu = statistics.median(r[c.name][3] for r in r_runs)
        excess = {"wall": mix - (rs + SLACK), "CPU": mix_cpu - (rs_cpu + SLACK)}
        for k, v in excess.items():
            worst[k] = max(worst[k], v)
            over[k] += v > 0
        if crit[c.name] is None or rc is None:
            diff = "–"
        else:
            d = crit[c.name] - rc
            diff = f"{d:+.2e}"
            if d > 1e-8 * max(1.0, abs(rc)):  # (above glmer's beyond rounding)
                higher.append(c.name)
        flag = " ⚠" if excess["wall"] > 0 or excess["CPU"] > 0 else ""
        lines.append(f"| {c.name} | {c.rows:,} | {c.family} ({c.link}) | `{c.formula}` | {mix:.2f} ({mix_cpu:.2f}) "
                     f"| {rs:.2f} ({rs_cpu:.2f}) | {excess['wall']:+.2f}, {excess['CPU']:+.2f}{flag} | {diff} "
                     f"| {evals.get(c.name)} / {rf} |")
    summary = [f"mixcli: {source}." if source else "",
               f"Models: {len(cases)} (seed {args.seed}); mixcli: median of {args.reps} whole-process run(s) per model; "
               f"glmer: median in-process time over {args.reps} R pass(es). CPU = user + system time of the process "
               "(mixcli) or of the fit (glmer): other load on a shared machine moves it far less than wall time.",
               f"Over glmer's in-process time + {SLACK:g} s: {over['wall']} of {len(cases)} by wall time (worst "
               f"{worst['wall']:+.2f} s), {over['CPU']} by CPU time (worst {worst['CPU']:+.2f} s).",
               f"Criterion above glmer's (beyond 1e-8 relative): {', '.join(higher) if higher else 'none'}."]
    text = "\n".join(["# Random GLMMs: mixcli's whole process against glmer in-process", "",
                       "Generated by `make bench BENCH_ARGS=--glmm` (bench/glmm_random.py); the machine is shared, "
                       "so timings carry its load.", "", *summary, "", *lines]) + "\n"
    if not args.no_write:
        (BENCH / "GLMM_RESULTS.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["details"]:
    print(json.dumps(details(Path(sys.argv[2]))))
