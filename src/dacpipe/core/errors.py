"""The exceptions dacpipe raises for bad input.

Every message is one line that names what was wrong and where, because a
user reading a log of a hundred pressure points must find the bad one at once.
The pipeline catches :class:`InputError` per point, writes its text into the
point's ``status`` in the result store, and goes on with the other points.
"""

from __future__ import annotations

from pathlib import Path


class DacpipeError(Exception):
    """Base class of every error dacpipe raises on purpose."""


class InputError(DacpipeError):
    """One input (a file, or a spectrum inside it) cannot be used.

    Parameters
    ----------
    reason : str
        What is wrong, in a few words ("empty file", "no peak above noise").
    path : str or Path, optional
        The file concerned. Functions that work on arrays raise without a path;
        the caller that read the file adds it with :meth:`with_path`.
    """

    def __init__(self, reason: str, path: str | Path | None = None):
        self.reason = " ".join(str(reason).split())  # always one line
        self.path = None if path is None else str(path)
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason

    def with_path(self, path: str | Path) -> "InputError":
        """The same error, attributed to ``path`` (kept if already set)."""
        return self if self.path else type(self)(self.reason, path)


class ConfigError(DacpipeError):
    """The configuration does not follow ``config/schema.yaml``."""


class SheetError(DacpipeError):
    """The sample sheet as a whole cannot be used (bad header, repeated ids)."""
