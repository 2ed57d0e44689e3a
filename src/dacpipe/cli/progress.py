"""Progress of a long stage: a bar on a terminal, a line per tenth in a log."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress display on a terminal; sparse lines in a log."""

    def __init__(self, label: str, stream=None):
        # sys.stderr looked up now, not when the module was imported: it may
        # have been replaced since (pytest's capture, a redirected console).
        self.label, self.stream = label, stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.start
        text = f"{self.label}: {done}/{total} points, {elapsed:.1f} s"
        if self.tty:
            width = 24
            filled = int(width * done / max(total, 1))
            end = "\n" if done == total else ""
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                              f"{done}/{total} points, {elapsed:.1f} s{end}")
            self.stream.flush()
        elif (tenth := 10 * done // max(total, 1)) > self.last_tenth:
            self.last_tenth = tenth
            print(text, file=self.stream, flush=True)
