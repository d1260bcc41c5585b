"""Untimed companion of bench/run.py: mixcli's evaluation counts through the Python API.

``mixcli fit --format json`` and ``mixcli compare --format json`` do not report
how many times the criterion was evaluated, so bench/run.py runs this script
once per job (outside the timed runs) and reads one JSON object per model:

    python bench/mixcli_details.py fit DATA FORMULA            # REML (fit-ml: ML)
    python bench/mixcli_details.py glmm-binomial DATA FORMULA  # glmer's Laplace fit (glmm-poisson)
    python bench/mixcli_details.py compare DATA NAME=FORMULA ...

``compare`` reports the ML fits that ``mixcli compare`` makes and, for
reference, REML fits of the same formulas (lme4's anova() starts from REML
fits; mixcli compare does not need them).
"""

from __future__ import annotations

import json
import sys
import time


def _record(name: str, result, seconds: float) -> dict:
    opt = result.optsummary
    return {
        "name": name,
        "method": result.method,
        "criterion": result.criterion,
        "evaluations": int(opt.evaluations),
        "stages": list(opt.stages),
        "converged": bool(result.converged),
        "singular": bool(result.singular),
        "seconds": seconds,
        "nobs": int(result.nobs),
    }


def main(argv: list[str]) -> int:
    mode, path, *specs = argv
    from mixcli.fitting import fit_frame
    from mixcli.frame import model_frame
    from mixcli.io import read_table

    table = read_table(path)
    if mode.startswith("glmm-"):
        from mixcli.family import family

        frame = model_frame(table, specs[0], family=family(mode[5:]))
        t0 = time.perf_counter()
        result = fit_frame(frame)
        print(json.dumps(_record("fit", result, time.perf_counter() - t0)), flush=True)
        return 0
    if mode in ("fit", "fit-ml"):
        named = [("fit", specs[0])]
        methods = (mode == "fit",)
    elif mode == "compare":
        named = [tuple(s.split("=", 1)) for s in specs]
        methods = (True, False)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    for reml in methods:
        for name, formula in named:
            frame = model_frame(table, formula)
            t0 = time.perf_counter()
            result = fit_frame(frame, reml=reml)
            print(json.dumps(_record(name, result, time.perf_counter() - t0)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
