"""One writer per run: the lock that keeps two processes out of one run's files.

Two ``dacpipe run`` (or ``dacpipe watch``) processes on one results folder
would each write the run's parts and store, and the store could end with
the numbers of one config and the provenance of the other. Whatever writes
a run's parts and store as a whole -- ``dacpipe run`` (its stages, store and
figures), each update of ``dacpipe watch``, and the workflow's store job
(``dacpipe assemble``) -- holds ``<results>/<run>/.lock`` while it does, an
exclusive :func:`fcntl.flock` lock (released by the kernel when the process
dies, so a killed run leaves no stale lock). The Snakemake jobs of single
stages do not take it: they run in parallel, one per chunk, and Snakemake
keeps two workflows out of one folder itself.

A second process *waits* for the first, after one line naming it (its
process id, host, command and start), and then does its own work whole;
``--lock-wait SECONDS`` bounds the wait (0: stop at once, with one line).
The lock file holds the holder's line while held; it is left in place (an
empty file) when released, since removing a lock file races with the next
taker.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

from ..core.errors import DacpipeError

LOCK_NAME = ".lock"
LOCK_WAIT_HELP = ("while another process writes the run (dacpipe run, watch, or the workflow's store job), "
                  "wait at most this long (default: until it is done; 0: stop at once)")


class RunBusy(DacpipeError):
    """Another process holds the run's lock and the caller would not (or no longer) wait."""


def lock_path(config: dict, run_id: str) -> Path:
    """The run's lock file, ``<results>/<run>/.lock``."""
    return Path(config["results_dir"]) / run_id / LOCK_NAME


# Locks this process holds, by path, with how many times: a holder that calls
# code taking the same lock again (dacpipe run -> assemble) must not wait for itself.
_HELD: dict[str, int] = {}


def _holder_line() -> str:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    command = " ".join(command.split())
    if len(command) > 100:
        command = command[:97] + "..."
    return (f"process {os.getpid()} on {socket.gethostname()} ({command}), "
            f"since {datetime.now().isoformat(timespec='seconds')}")


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 400, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0] if text else "another process"


@contextmanager
def run_lock(path: str | Path, wait_s: float | None = None, say: Callable[[str], None] = print,
             poll_s: float = 0.2) -> Iterator[Path]:
    """Hold the run's lock ``path`` for the ``with`` block.

    Parameters
    ----------
    path : str or Path
        The lock file (:func:`lock_path`); its folder is made if needed.
    wait_s : float or None
        How long to wait for another holder: None, as long as it takes;
        0, not at all.
    say : callable
        Gets the one line said when the lock is taken by another process
        and this one waits.
    poll_s : float
        Seconds between tries while waiting (a wait with a limit cannot
        block in ``flock``).

    Raises
    ------
    RunBusy
        The lock is held by another process and ``wait_s`` ran out; one
        line naming the run's folder and the holder.
    """
    path = Path(path)
    key = os.path.abspath(path)
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: flock needs only reading
        fd = os.open(path, os.O_RDONLY)
    try:
        _acquire(fd, path, wait_s, say, poll_s)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (_holder_line() + "\n").encode(), 0)
        except OSError:  # read-only: the lock holds all the same
            pass
        _HELD[key] = 1
        try:
            yield path
        finally:
            del _HELD[key]
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, wait_s: float | None, say: Callable[[str], None], poll_s: float) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    folder, holder = path.parent, _read_holder(fd)
    if wait_s is not None and wait_s <= 0:
        raise RunBusy(f"{folder}: in use by {holder}; not started (--lock-wait 0; "
                      "give --lock-wait SECONDS to wait for it)")
    limit = "" if wait_s is None else f" (up to {wait_s:g} s)"
    say(f"{folder}: waiting{limit} for {holder} to finish with this run")
    if wait_s is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            continue
    raise RunBusy(f"{folder}: still in use by {_read_holder(fd)} after {wait_s:g} s (--lock-wait); not started")
