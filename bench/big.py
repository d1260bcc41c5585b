"""Data larger than memory: `fit --engine dask` on a 2-worker LocalCluster against the in-memory fit.

    make bench BENCH_ARGS=--big                      # 5M, 20M and 50M rows, both shapes (not in CI; ~20 min)
    .venv/bin/python bench/big.py --rows 1000000,5000000 --class-size classroom
    .venv/bin/python bench/big.py --rows 50000000 --class-size 25 --no-memory

For each shape and size, a nested dataset of children in classes in schools is written
(the classroom study's 3.8 children per class, ~11 rows per school, so ~0.35 levels per
row; and classes of 25 (`simulate --class-size 25`, 2.95·25 rows per school, ~0.05 levels
per row), as register data of whole classes would be; --class-size chooses) with
`mixcli simulate --format parquet --partitions K` (K = 64 at 50M rows, scaled down for
fewer) into bench/data/, and the model mathscore ~ ses + (1 | schoolid/classid)
is fitted twice as whole processes: with --engine dask --workers 2, and in memory from one
Parquet file of the same rows (skipped with --no-memory or above --memory-up-to rows). The
time is the whole process's wall time, the CPU time that of the process and its children
(the workers: user + system, getrusage(RUSAGE_CHILDREN) here); the memory is the driver's
own peak RSS (getrusage(RUSAGE_SELF) in the process that runs the command: the workers are
not in it). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DATA = BENCH / "data"
FORMULA = "mathscore ~ ses + (1 | schoolid/classid)"
ROWS_PER_SCHOOL = 11.1
CLASSES_PER_SCHOOL = 2.95
# Runs mixcli's command line in this process, then reports this process's own peak memory.
WRAPPER = ("import resource, sys\nfrom mixcli.cli import main\n"
           "try:\n    main(sys.argv[1:], prog_name='mixcli', standalone_mode=False)\n"
           "finally:\n    sys.stderr.write(f'PEAK_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')\n")


def cpu_children() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def run(args: list[str]) -> tuple[float, float, float, dict]:
    start, cpu = time.monotonic(), cpu_children()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True)
    wall, cpu = time.monotonic() - start, cpu_children() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"failed: mixcli {' '.join(args)}\n{proc.stderr}")
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_KB")]
    return wall, cpu, int(peak[-1].split()[1]) / 1024**2, json.loads(proc.stdout)


def dataset(rows: int, class_size: float | None = None) -> tuple[Path, Path]:
    schools = int(rows / (ROWS_PER_SCHOOL if class_size is None else CLASSES_PER_SCHOOL * class_size))
    parts = max(2, min(64, round(64 * rows / 50e6)))
    name = f"big-{rows}" if class_size is None else f"big-{rows}-class{class_size:g}"
    directory = DATA / name
    if not directory.exists():
        size = [] if class_size is None else ["--class-size", f"{class_size:g}"]
        subprocess.run([sys.executable, "-m", "mixcli", "simulate", "--schools", str(schools), "--seed", "1",
                        *size, "--format", "parquet", "--partitions", str(parts), "-o", str(directory)], check=True)
    return directory, DATA / f"{name}.parquet"


def one_file(directory: Path, target: Path) -> None:
    """The same rows as one Parquet file, for the in-memory path (written once)."""
    if target.exists():
        return
    import pyarrow.parquet as pq

    files = sorted(directory.glob("*.parquet"))
    with pq.ParquetWriter(target, pq.read_schema(files[0])) as writer:
        for f in files:
            writer.write_table(pq.read_table(f))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="5000000,20000000,50000000")
    ap.add_argument("--memory-up-to", type=int, default=20_000_000,
                    help="fit in memory too up to this many rows (default 20M)")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--class-size", default="classroom,25", metavar="SHAPES",
                    help="comma-separated: 'classroom' (the study's 1-10 children per class) and/or N (simulate "
                         "--class-size N); default both")
    args = ap.parse_args(argv)
    DATA.mkdir(exist_ok=True)
    lines = ["| class size | rows | parts | groups (classes + schools) | dask: time | its CPU time | dask: driver "
             "peak | in memory: time | its CPU time | in memory: peak | criterion difference |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    shapes = [None if c.strip() == "classroom" else float(c) for c in args.class_size.split(",")]
    for class_size, rows in ((c, int(r)) for c in shapes for r in args.rows.split(",")):
        directory, single = dataset(rows, class_size)
        parts = len(list(directory.glob("*.parquet")))
        t_d, c_d, m_d, j_d = run(["fit", str(directory), FORMULA, "--engine", "dask", "--workers", "2", "--format",
                                  "json", "--no-progress", "--ddf", "none"])
        mem = "not run", "—", "not run", "—"
        if not args.no_memory and rows <= args.memory_up_to:
            one_file(directory, single)
            t_m, c_m, m_m, j_m = run(["fit", str(single), FORMULA, "--format", "json", "--ddf", "none"])
            diff = abs(j_d["criterion"] - j_m["criterion"]) / abs(j_m["criterion"])
            mem = f"{t_m:.1f} s", f"{c_m:.1f} s", f"{m_m:.2f} GB", f"{diff:.1e}"
        groups = " + ".join(f"{g:,}" for g in j_d["ngroups"].values())
        shape = "3.8 (study)" if class_size is None else f"{class_size:g}"
        lines.append(f"| {shape} | {j_d['nobs']:,} | {parts} | {groups} | {t_d:.1f} s | {c_d:.1f} s | {m_d:.2f} GB "
                     f"| {' | '.join(mem)} |")
        print(lines[-1], flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
