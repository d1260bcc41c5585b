"""The live progress line: only after a delay, throttled, on stderr, erased when done."""

from __future__ import annotations

import io

from mixcli.progress import FitProgress


class FakeTTY(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_silent_when_not_a_terminal_unless_asked():
    stream = FakeTTY(False)
    meter = FitProgress(stream=stream)
    meter.DELAY = meter.INTERVAL = 0.0
    meter.start("fitting")
    meter(10, 123.0)
    assert stream.getvalue() == ""
    forced = FitProgress(enabled=True, stream=stream)
    forced.DELAY = forced.INTERVAL = 0.0
    forced.start("fitting")
    forced(10, 123.456789)
    assert stream.getvalue() == "fitting: 10 evaluations, criterion 123.456789\n"


def test_terminal_line_is_redrawn_and_erased():
    stream = FakeTTY(True)
    meter = FitProgress(stream=stream)
    meter.DELAY = meter.INTERVAL = 0.0
    meter.start("fitting model 1/2")
    meter(5, 10.0)
    meter(6, 9.0)
    meter.done()
    text = stream.getvalue()
    assert text.count("\r\x1b[2K") == 3 and text.endswith("\r\x1b[2K")
    assert "fitting model 1/2: 6 evaluations, criterion 9.000000" in text


def test_nothing_before_the_delay():
    stream = FakeTTY(True)
    meter = FitProgress(stream=stream)
    meter.start("fitting")
    meter(1, 1.0)  # well within the default half second
    meter.done()
    assert stream.getvalue() == ""
