"""Independent replicates on a pool of worker processes, with results that depend only on the seed.

The parametric bootstrap (``bootstrap``) and the power simulation (``mixcli.power``) both run
N replicates of one job: a picklable ``job`` and a module-level ``task(job, i)`` that returns
replicate i's result (a number, or a row of numbers). Replicate i draws from its own generator
(``replicate_rng``: the child of ``numpy.random.SeedSequence(seed)`` with spawn key ``key + (i,)``),
so the results depend only on the seed and N — not on the number of worker processes or on
the order in which replicates finish.
"""

from __future__ import annotations

import os

import numpy as np

CHUNK = 8  # replicates per task sent to a worker


def replicate_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of one replicate: ``SeedSequence(seed, spawn_key=key)``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)))


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


_WORK = None  # (task, job) in a worker process


def _init_worker(task, job):
    import signal

    global _WORK
    _WORK = (task, job)
    # Ctrl-C goes to the whole process group: the parent stops the pool, workers stay quiet
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # one BLAS thread per process: the work is split across processes already
        from threadpoolctl import threadpool_limits  # type: ignore

        threadpool_limits(1)
    except Exception:  # noqa: BLE001 (optional)
        pass


def _run_chunk(indices):
    task, job = _WORK
    return [(i, task(job, i)) for i in indices]


def run_pool(task, job, n: int, width: int | None = None, workers: int | None = None, progress=None):
    """``task(job, i)`` for i = 0..n−1 on ``workers`` processes (default: the CPUs this process
    may use): (results, workers used). Results are (n,), or (n, width) for rows, NaN where a
    task returned NaN; ``progress(done, n)`` is called as chunks complete."""
    workers = default_workers() if workers is None else max(1, int(workers))
    workers = min(workers, max(1, n // CHUNK))
    out = np.full(n if width is None else (n, width), np.nan)
    chunks = [range(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)]
    done = 0
    if workers == 1:
        for idx in chunks:
            for i in idx:
                out[i] = task(job, i)
            done += len(idx)
            if progress is not None:
                progress(done, n)
    else:
        import multiprocessing as mp

        methods = mp.get_all_start_methods()
        ctx = mp.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(task, job)) as pool:
            for res in pool.imap_unordered(_run_chunk, chunks):
                for i, t in res:
                    out[i] = t
                done += len(res)
                if progress is not None:
                    progress(done, n)
    return out, workers
