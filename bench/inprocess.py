"""Warm, in-process time of one mixcli's classroom compare (M14, M17, M16 by ML), for ``run.py``'s
``inprocess`` job: the snapshot of one commit's ``mixcli/`` is put first on sys.path, the compare
is run 3 times to warm up and then ``reps`` times; the median (and the fastest) are printed as JSON.

    python bench/inprocess.py SNAPSHOT_DIR CLASSROOM_CSV REPS

run.py runs it for the committed HEAD and for 43697ea (the code before the round that made small
fits twice as slow: issue 20's reference), alternating the two, so that both see the same machine.
The data are read with pandas and passed as a DataFrame, which both versions' ``api.compare`` take.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # (as the command line sets it)


def main() -> int:
    snapshot, csv, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.path.insert(0, snapshot)
    import pandas as pd

    import mixcli.api

    if not mixcli.__file__.startswith(os.path.abspath(snapshot)):
        raise SystemExit(f"{snapshot}: imported {mixcli.__file__} instead")
    formulas = ["mathscore ~ ses + (ses | schoolid)", "mathscore ~ ses + (ses | schoolid) + (1 | classid)",
                "mathscore ~ ses + (ses | schoolid) + (ses || classid)"]
    data = pd.read_csv(csv)
    for _ in range(3):
        mixcli.api.compare(data, formulas)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        mixcli.api.compare(data, formulas)
        times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"median": times[len(times) // 2], "fastest": times[0], "reps": reps, "mixcli": mixcli.__file__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
