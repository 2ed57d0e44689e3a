"""The ``dacpipe`` command line: commands, shared options, progress display and the beamline watcher."""

from .commands import main

__all__ = ["main"]
