"""Shared paths and helpers for the test suite.

The real classroom data and lme4's results on it live outside the project
(``../shared``, licence): tests read them in place and skip if absent.
"""

from __future__ import annotations

import os

# As the command line does (mixcli/cli.py): one BLAS thread, set before numpy loads OpenBLAS. Two
# spin-waiting threads next to another busy process made kb07's dense blocks 30x slower.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"


def _shared() -> Path:
    """$MIXCLI_SHARED if set, else ``../shared`` next to the checkout (it may not exist: tests skip)."""
    return Path(os.environ.get("MIXCLI_SHARED") or ROOT.parent / "shared")


SHARED = _shared()
CLASSROOM = SHARED / "data" / "classroom.csv"
CLASSROOM_REF = SHARED / "reference" / "classroom_lme4.json"
CLASSROOM_ANOVA = SHARED / "reference" / "classroom_anova_M14_M17_M16.json"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available (the shared reference data: ../shared or $MIXCLI_SHARED)")
    return path


def load_json(path: Path):
    return json.loads(need(path).read_text())


_tables: dict = {}


def cached_table(path):
    """A data file read once per test session (a fixtures/data name, or any path)."""
    from mixcli.io import read_table

    path = Path(path)
    if not path.is_absolute():
        path = FIXTURES / "data" / path
    path = need(path)
    if path not in _tables:
        _tables[path] = read_table(str(path))
    return _tables[path]


@pytest.fixture(scope="session")
def classroom_table():
    from mixcli.io import read_table

    return read_table(str(need(CLASSROOM)))


def run_cli(*args, stdin=None):
    """``mixcli ARGS`` in a subprocess from the repository root (a CompletedProcess with text output)."""
    return subprocess.run(
        [sys.executable, "-m", "mixcli", *args], input=stdin, capture_output=True, text=True, cwd=ROOT
    )
