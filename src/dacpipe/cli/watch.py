"""``dacpipe watch``: keep a run's store current while the experiment runs.

At the beamline, images and spectra land in the run's folder one by one.
The watcher polls the folder every ``interval`` seconds; a file is *ready*
once its size and modification time have not changed for ``settle`` seconds
(a file still being written is never read). A point is processed when every
file its sheet row names is ready; whenever the set of ready points, one of
their files or their sheet rows change, the run is brought up to date on
the ready points (a sheet limited to them, ``<results>/<run>/watch/points.tsv``)
by :func:`dacpipe.run.incremental.update_run`, which computes only the points
that are new or changed (a file's content, by checksum, or its sheet row) and
splices them into the stages' parts, refits the whole-series stages, and
recomputes everything when the run's settings change; the store is
reassembled, then one line is printed: time, points, and the latest point's
pressure and phases.

The sheet is the run's own (re-read each cycle: rows may be appended), or,
with ``make_sheet=True`` when the run's sheet does not exist yet, one made by
:func:`dacpipe.io.sheet.make_sheet` from the folder each cycle
(``<results>/<run>/watch/sheet.tsv``, written only when it changes).

A bad file is marked on its point by the stages, as in ``dacpipe run``; an
error of the run as a whole is printed as one line and the watcher goes on,
retrying only once something changes.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import h5py
import numpy as np

from ..core.errors import ConfigError, DacpipeError
from ..io.refs import file_part, file_record, resolve
from ..io.sheet import FILE_COLUMNS, is_gauge_position_column, make_sheet, read_sheet, tsv_rows
from ..run.config import run_config
from ..run.incremental import RunState, StageUpdate, point_files, settings_key, update_run
from ..run.layout import store_path
from ..run.lock import LOCK_WAIT_HELP, RunBusy, lock_path, run_lock
from .options import add_config_options, config_from_args

log = logging.getLogger("dacpipe")


# --- files that have stopped growing ----------------------------------------

@dataclass(frozen=True)
class FileState:
    """A file as last seen: its size and mtime, and since when (watcher clock) they have not changed."""

    size: int
    mtime_ns: int
    since: float


def observe(states: dict[str, FileState], paths: Iterable[str], now: float,
            stat: Callable[[str], os.stat_result] = os.stat) -> dict[str, FileState]:
    """The new states of ``paths``: a file absent now is left out; a file whose
    size or mtime differs from ``states`` starts its settle time again at ``now``."""
    out: dict[str, FileState] = {}
    for path in paths:
        try:
            st = stat(path)
        except OSError:
            continue
        old = states.get(path)
        if old is not None and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns):
            out[path] = old
        else:
            out[path] = FileState(st.st_size, st.st_mtime_ns, now)
    return out


def is_ready(state: FileState | None, now: float, settle: float) -> bool:
    """Present, and unchanged for at least ``settle`` seconds."""
    return state is not None and now - state.since >= settle


# --- sheets -------------------------------------------------------------------

def sheet_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows (cells stripped) of a sheet's text; comments and blank lines dropped."""
    rows = tsv_rows(text)
    if not rows:
        return [], []
    header = rows[0][1]
    return header, [dict(zip(header, cells + [""] * (len(header) - len(cells)))) for _, cells in rows[1:]]


def limited_sheet_text(text: str, folder: str | Path, keep: Iterable[str] | None = None) -> str:
    """The sheet ``text`` (whose relative paths are relative to ``folder``)
    with only the points in ``keep`` (all when None), in its order, and every
    file cell made absolute, so the sheet can be written anywhere."""
    folder = Path(os.path.abspath(folder))
    keep = None if keep is None else set(keep)
    header, rows = sheet_rows(text)
    lines = ["\t".join(header)]
    for row in rows:
        if keep is not None and row.get("point") not in keep:
            continue
        files = [c in FILE_COLUMNS or is_gauge_position_column(c) for c in header]
        cells = [(resolve(folder, row[c], absolute=True) if is_file and row[c] else row[c])
                 for c, is_file in zip(header, files)]
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


# --- the watcher ----------------------------------------------------------

@dataclass
class CycleReport:
    """What one cycle saw and did."""

    points: int = 0            # points in the store after this cycle (ready points)
    waiting: int = 0           # points of the sheet with a file absent or still changing
    updated: bool = False      # the store was rewritten
    line: str | None = None    # the line printed, if any
    error: str | None = None   # a run-level error, if any


@dataclass
class Watcher:
    """Watches one run; :meth:`cycle` does one pass. ``clock`` is injectable for tests."""

    config: dict
    run_id: str
    folder: Path
    settle: float = 2.0
    make_sheet: bool = False
    clock: Callable[[], float] = time.monotonic
    echo: Callable[[str], None] = lambda line: print(line, flush=True)
    states: dict[str, FileState] = field(default_factory=dict)
    last_signature: object = None
    last_message: str | None = None
    # What the last update was computed from (None: the next computes everything),
    # what it did per stage, and each file's SHA-256 with the size and mtime it was read at.
    run_state: RunState | None = None
    last_update: dict[str, StageUpdate] = field(default_factory=dict)
    checksums: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    # How long an update waits for another process writing the run (None: until it is done).
    lock_wait: float | None = None

    def __post_init__(self):
        self.folder = Path(self.folder)
        self.run = run_config(self.config, self.run_id)
        self.sheet_file = Path(self.run["sheet"])
        self.work = Path(self.config["results_dir"]) / self.run_id / "watch"
        self.points_file = self.work / "points.tsv"

    def _say(self, text: str, repeat: bool = False) -> None:
        """Print a status line, once until another is printed (unless ``repeat``)."""
        if repeat or text != self.last_message:
            self.echo(f"{time.strftime('%H:%M:%S')} {self.run_id}: {text}")
        self.last_message = text

    def current_sheet(self) -> tuple[str, Path, Path] | None:
        """The sheet to follow: its text, the folder its relative paths start
        from, and the file to read it from; None while there is none."""
        if self.sheet_file.is_file():
            text = self.sheet_file.read_text(encoding="utf-8-sig")
            header, _ = sheet_rows(text)
            if any(c in FILE_COLUMNS for c in header) or not self.make_sheet:
                return text, self.sheet_file.parent, self.sheet_file
        if not self.make_sheet:
            return None
        text = make_sheet(self.folder)
        results = Path(os.path.abspath(self.config["results_dir"]))
        # The store and the watcher's own files, when the results lie inside the folder, are not data.
        text = "".join(line for line in text.splitlines(keepends=True)
                       if not (line.startswith("# not placed: ")
                               and Path(os.path.abspath(self.folder / line[14:].strip())).is_relative_to(results)))
        made = limited_sheet_text(text, self.folder)
        _write_if_changed(self.work / "sheet.tsv", made)
        return made, self.folder, self.work / "sheet.tsv"

    def cycle(self) -> CycleReport:
        """One pass: look at the files, and update the store if the ready points changed."""
        report = CycleReport()
        try:
            found = self.current_sheet()
            if found is None:
                self._say(f"waiting for the sheet {self.sheet_file}")
                return report
            text, folder, sheet_file = found
            full = limited_sheet_text(text, folder)
            if not sheet_rows(full)[1]:
                self._say(f"waiting for the first point of {sheet_file}")
                return report
            sheet = read_sheet(sheet_file)     # the sheet's own checks, naming the user's file
        except DacpipeError as err:
            report.error = str(err)
            self._say(f"error: {err}")
            return report

        now = self.clock()
        def path(ref: str) -> str:
            return os.path.abspath(file_part(ref))

        paths = sorted({path(ref) for p in sheet.points for ref in p.files.values()})
        self.states = observe(self.states, paths, now)
        ready = [p for p in sheet.points
                 if all(is_ready(self.states.get(path(ref)), now, self.settle) for ref in p.files.values())]
        report.waiting = len(sheet.points) - len(ready)
        if not ready:
            self._say(f"waiting for files ({report.waiting} points named)")
            return report
        ids = [p.point for p in ready]
        limited = limited_sheet_text(full, folder, ids)
        files = sorted({path(ref) for p in ready for ref in p.files.values()})
        report.points = len(ready)
        try:
            # The settings too: a new config, or an edited PONI or mask, recomputes everything.
            settings = settings_key(run_config(self.config, self.run_id), ())
        except DacpipeError as err:
            report.error = str(err)
            self._say(f"error: {err}")
            return report
        signature = (limited, tuple((f, self.states[f].size, self.states[f].mtime_ns) for f in files), settings)
        if signature == self.last_signature:
            return report
        self.last_signature = signature    # a failed update is retried only once something changes
        try:
            line = self.update(limited, ids[-1])
        except (DacpipeError, OSError, ValueError) as err:
            report.error = " ".join(f"{type(err).__name__}: {err}".split())
            self._say(f"error: {report.error}", repeat=True)
            return report
        if line is not None:
            report.line, report.updated = line, True
            if report.waiting:
                report.line += f" ({report.waiting} waiting)"
            self._say(report.line, repeat=True)
        return report

    def update(self, limited_text: str, latest: str) -> str | None:
        """Bring the store up to date with the limited sheet, computing only
        what changed since the last update; the summary line, or None when
        nothing had changed (a file touched, not rewritten) and the store was
        left alone."""
        _write_if_changed(self.points_file, limited_text)
        config = copy.deepcopy(self.config)
        config["runs"][self.run_id]["sheet"] = str(self.points_file)
        sheet = read_sheet(self.points_file)
        state, self.run_state = self.run_state, None   # a failed update leaves parts half updated
        try:
            # One process at a time writes the run (dacpipe.run.lock): `dacpipe run` on it meanwhile waits.
            with run_lock(lock_path(self.config, self.run_id), wait_s=self.lock_wait,
                          say=lambda line: self._say(line, repeat=True)):
                state, self.last_update, out = update_run(config, self.run_id, state, self.work, sheet=sheet,
                                                          checksums=self.file_checksums(point_files(sheet).values()))
        except RunBusy:
            self.last_signature = None   # retried at the next cycle
            raise
        self.run_state = state
        return None if out is None else summary(out, self.run_id, latest)

    def file_checksums(self, files: Iterable[Iterable[str]]) -> dict[str, str]:
        """SHA-256 of the points' files, each read once per change of its size or mtime."""
        out = {}
        for path in {f for paths in files for f in paths}:
            seen = self.states.get(os.path.abspath(path))
            known = self.checksums.get(path)
            if seen is None or known is None or known[:2] != (seen.size, seen.mtime_ns):
                size, mtime = (seen.size, seen.mtime_ns) if seen else (-1, -1)
                known = (size, mtime, file_record(path).sha256)
                self.checksums[path] = known
            out[path] = known[2]
        return out


def summary(store: str | Path, run_id: str, point: str) -> str:
    """``N points; <point>: P = x.xx GPa; phases: a, b`` from the store."""
    with h5py.File(store, "r") as h5:
        entry = h5[run_id]
        ids = list(entry["points/point"].asstr()[()])
        i = ids.index(point) if point in ids else len(ids) - 1
        pressure = float(entry["points/pressure_GPa"][i])
        status = entry["points/status"].asstr()[i]
        text = f"{len(ids)} point{'s' if len(ids) != 1 else ''}; {ids[i]}: P = " + (f"{pressure:.2f} GPa" if np.isfinite(pressure) else "n/a")
        if "phases" in entry:
            present = [name for name, g in entry["phases"].items()
                       if isinstance(g, h5py.Group) and "present" in g and bool(g["present"][i])]
            text += f"; phases: {', '.join(present) or 'none'}"
        if status != "ok":
            text += f"; {status}"
    return text


class _OnlyOnce(logging.Filter):
    """Drops a warning already shown: the whole-series stages (EOS, E(P) fits)
    are rerun at every update and would repeat theirs, and a settings change
    reruns every point."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            return True
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def watch(watcher: Watcher, interval: float = 2.0, once: bool = False, max_cycles: int | None = None,
          sleep: Callable[[float], None] = time.sleep) -> int:
    """Cycle until interrupted (or ``max_cycles``). ``once``: look, wait ``settle``, process, stop."""
    only_once = _OnlyOnce()
    log.addFilter(only_once)
    try:
        if once:
            watcher.cycle()
            sleep(watcher.settle)
            watcher.cycle()
            return 0
        cycles = 0
        while True:
            watcher.cycle()
            cycles += 1
            if max_cycles is not None and cycles >= max_cycles:
                return 0
            sleep(interval)
    finally:
        log.removeFilter(only_once)


def choose_run(config: dict, folder: str | Path, run_id: str | None) -> str:
    """``run_id``, else the run whose sheet lies in ``folder``, else the config's only run."""
    if run_id:
        run_config(config, run_id)  # names the runs when there is no such run
        return run_id
    target = os.path.abspath(folder)
    matches = [r for r, run in config["runs"].items() if os.path.abspath(Path(run["sheet"]).parent) == target]
    if len(matches) == 1:
        return matches[0]
    if len(config["runs"]) == 1:
        return next(iter(config["runs"]))
    raise ConfigError(f"{folder}: say which run to watch with --run; runs: {', '.join(config['runs'])}")


def cmd_watch(args) -> int:
    folder = Path(args.folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder")
    config = config_from_args(args)
    run_id = choose_run(config, folder, args.run)
    watcher = Watcher(config, run_id, folder, settle=args.settle, make_sheet=args.make_sheet,
                      lock_wait=args.lock_wait)
    print(f"watching {folder} for run {run_id} (store {store_path(config, run_id)}); Ctrl-C to stop", flush=True)
    try:
        return watch(watcher, interval=args.interval, once=args.once, max_cycles=args.max_cycles)
    except KeyboardInterrupt:
        print(f"stopped watching {folder}; the store holds the last update", flush=True)
        return 0


def add_parser(sub) -> None:
    """Add ``dacpipe watch`` to the CLI's subparsers."""
    p = sub.add_parser("watch", help="keep a run's store current while files land in its folder (beamline)")
    p.add_argument("folder", help="the run's data folder")
    add_config_options(p)
    p.add_argument("--run", metavar="RUN", help="run of the config (default: the one whose sheet is in FOLDER)")
    p.add_argument("--interval", type=float, default=2.0, metavar="SECONDS", help="seconds between looks (default 2)")
    p.add_argument("--settle", type=float, default=2.0, metavar="SECONDS",
                   help="a file is read once unchanged for this long (default 2)")
    p.add_argument("--make-sheet", action="store_true",
                   help="without a sheet, make one from the folder each cycle (as `dacpipe sheet`)")
    p.add_argument("--once", action="store_true", help="one pass: look, wait --settle, process, stop")
    p.add_argument("--max-cycles", type=int, metavar="N", help="stop after N cycles (for tests)")
    p.add_argument("--lock-wait", type=float, metavar="SECONDS", help=LOCK_WAIT_HELP)
    p.set_defaults(func=cmd_watch)
