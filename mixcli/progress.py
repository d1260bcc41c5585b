"""A live status line on stderr for long fits: evaluations so far and the best criterion.

Shown only when stderr is a terminal (or when asked), only once a fit has
run for half a second, and refreshed at most ten times a second, so short
fits print nothing and pipelines stay clean.
"""

from __future__ import annotations

import sys
import time


class FitProgress:
    DELAY = 0.5
    INTERVAL = 0.1

    def __init__(self, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = ""
        self._start = 0.0
        self._last = 0.0
        self._shown = False

    def start(self, label: str):
        self.label = label
        self._start = time.monotonic()
        self._last = 0.0

    def __call__(self, evaluations: int, best: float):
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._start < self.DELAY or now - self._last < self.INTERVAL:
            return
        self._last = now
        self._shown = True
        line = f"{self.label}: {evaluations} evaluations, criterion {best:.6f}"
        self.stream.write("\r\x1b[2K" + line if self.stream.isatty() else line + "\n")
        self.stream.flush()

    def done(self):
        if self._shown and self.stream.isatty():
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
        self._shown = False
