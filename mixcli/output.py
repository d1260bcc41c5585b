"""Writing results: all or nothing.

``AtomicOutput(path)`` writes to a temporary file beside ``path`` and moves it
into place (``os.replace``) only on ``commit()``; leaving the ``with`` block
without committing (an error, Ctrl-C) deletes the temporary file and leaves
``path`` untouched — so ``-o`` may even name the command's own input. With no
path (or ``-``) it writes to standard output, where a closed pipe is the CLI's
to handle (it ends quietly, as a C tool killed by SIGPIPE would).

Every command that writes a file (``nest -o``, ``simulate -o``) goes through it.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import BinaryIO

from .errors import DataError


class AtomicOutput:
    """A binary destination: standard output, or a file replaced only on ``commit()``."""

    def __init__(self, output: str | None, stdout: BinaryIO | None = None):
        self.output = None if output in (None, "-") else output
        self.stdout = stdout
        self.tmp: str | None = None
        self.handle = None

    def __enter__(self):
        import tempfile

        if self.output is None:
            self.handle = self.stdout if self.stdout is not None else sys.stdout.buffer
            return self
        self.target = os.path.realpath(self.output)
        if os.path.isdir(self.target):
            raise DataError(f"{self.output}: is a directory; -o needs a file name")
        folder, base = os.path.split(self.target)
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=folder)
        except OSError as err:
            raise DataError(f"{self.output}: cannot write there: {err.strerror or err}") from None
        self.handle = os.fdopen(fd, "wb")
        return self

    def write(self, data) -> None:
        if self.output is None:
            self.handle.write(data)  # a broken pipe is the caller's to handle
            return
        try:
            self.handle.write(data)
        except OSError as err:
            raise DataError(f"{self.output}: cannot write: {err.strerror or err}") from None

    def flush(self) -> None:
        self.handle.flush()

    def commit(self) -> None:
        if self.output is None:
            self.handle.flush()
            return
        try:
            self.handle.flush()
            os.fchmod(self.handle.fileno(), _mode_for(self.target))
            os.fsync(self.handle.fileno())
            self.handle.close()
            os.replace(self.tmp, self.target)
        except OSError as err:
            raise DataError(f"{self.output}: cannot write: {err.strerror or err}") from None
        self.tmp = None

    def __exit__(self, *exc) -> None:
        if self.output is None:
            return
        if not self.handle.closed:
            self.handle.close()
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass


def _mode_for(target: str) -> int:
    """Permissions for the new file: those of the file it replaces, else the usual ones under the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
