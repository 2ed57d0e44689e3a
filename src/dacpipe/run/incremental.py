"""Updating a run for the points that changed only: what ``dacpipe watch`` does at each update.

A full run computes every stage on every point; at the beamline a new
point should cost one point's work. :func:`update_run` compares the run's
points with those of the last update (:class:`RunState`: each point's sheet
row and the checksums of its files, and the run's settings) and updates
each stage's part by the kind of stage:

per point (:data:`PER_POINT`)
    A point's row depends only on its own files, its rows of the stages
    before, and the settings: the stage is run on the points that are new,
    changed, or whose upstream rows were recomputed, and their rows are
    spliced into the previous part by point id
    (:func:`~dacpipe.run.store.splice_results`).
in two steps (:data:`TWO_STEPS`)
    A per-point step whose rows depend on each point's own files (kept in
    ``<work>/parts/<stage>.h5`` and spliced likewise), then a cheap
    whole-series step over all points (the optical E(P) fits).
in chunks that walk the series (:data:`~dacpipe.run.stages.LEAD_IN_POINTS`)
    The phase identification carries its state from point to point, but
    restarts at every chunk of ``chunk_points`` points (with a lead-in):
    the chunks from the one holding the first new or changed point on are
    computed again, their rows spliced after the rows kept, and the
    whole-series step (the transitions) redone. The same chunks as a full
    run's: the same numbers.
whole series (every other stage: EOS, the superlattice analysis)
    Rerun on all points when anything it reads changed.

A stage whose inputs did not change keeps its part. Everything is
recomputed on the first update, when the run's settings change (the
config, a file it names such as the PONI, the sheet's columns), when a
part is not the one the last update wrote (another process rewrote it) and
when two parts cannot be spliced (other axes or attributes).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from ..core.results import StageContext, StageResult
from ..io.refs import file_part, file_record
from ..io.sheet import Sheet, read_sheet
from .config import run_config
from .layout import part_path, store_path
from .runner import assemble_run, compute_chunk, finish_stage, run_stage, stage_context, stamped
from .stages import LEAD_IN_POINTS, chunks, needs, stage_function, stages_for
from .store import SpliceError, read_result, splice_results, write_part

log = logging.getLogger("dacpipe")

# Stages whose row of a point depends only on that point's own files, its
# rows of the stages before and the settings. (A pressure read from an XRD
# marker too: the marker is fitted in each pattern on its own.) Not the
# superlattice analysis: a pattern whose indexing is ambiguous takes the one
# that continues its neighbours (dacpipe.saxs.stage), so a new point may
# change another's; it is redone on every point when a pattern changed.
PER_POINT = frozenset({"pressure", "xrd", "saxs"})
# Stages in two steps: (per-point step, whole-series step), functions of the
# stage's module; the first is ``f(ctx) -> StageResult`` and reads no other
# stage, the second ``g(ctx, measured: StageResult) -> StageResult``.
TWO_STEPS = {"optical": ("measure", "summarise")}


@dataclass(frozen=True)
class StageUpdate:
    """What an update did to one stage.

    ``action`` is ``"all"`` (computed on every point), ``"points"`` (on
    ``computed`` points, spliced), ``"resumed"`` (a stage in chunks that
    walk the series: its last chunks, ``computed`` points), ``"series"`` (a two-step stage: its
    per-point step on ``computed`` points, its whole-series step on all) or
    ``"kept"`` (nothing it reads changed).
    """

    action: str
    computed: int


@dataclass
class RunState:
    """What the last update was computed from, to tell what changed since.

    Attributes
    ----------
    settings : str
        :func:`settings_key` of the run.
    points : dict
        Point id -> :func:`point_key`, in sheet order.
    files : dict
        Point id -> the files its row names (for the inputs to drop when it goes).
    parts : dict
        Part file -> (size, mtime_ns) as the update left it.
    """

    settings: str
    points: dict[str, tuple]
    files: dict[str, frozenset[str]]
    parts: dict[str, tuple[int, int]] = field(default_factory=dict)


def settings_key(run: dict, columns: Iterable[str]) -> str:
    """What every point's result depends on besides its own row: the run's
    settings (its sheet's name aside), the size and modification time of
    the files they name (PONI, mask, dark, reference spectrum, phase files),
    and the sheet's columns."""
    settings = {key: value for key, value in run.items() if key != "sheet"}
    named = {}
    for value in _strings(settings):
        try:
            st = os.stat(value)
        except (OSError, ValueError):
            continue
        named[os.path.abspath(value)] = [st.st_size, st.st_mtime_ns]
    return yaml.safe_dump({"settings": settings, "files": named, "columns": sorted(columns)}, sort_keys=True)


def _strings(value) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def point_files(sheet: Sheet) -> dict[str, tuple[str, ...]]:
    """Point id -> the files its row names (without ``::/dataset`` or ``@N``), sorted."""
    return {p.point: tuple(sorted({file_part(ref) for ref in p.files.values()})) for p in sheet.points}


def point_key(point, files: Iterable[str], checksums: Mapping[str, str]) -> tuple:
    """A point's row (every cell, as read) and the checksums of its ``files``:
    equal keys, equal results. ``repr``, because a row's NaN never equals itself."""
    return repr(point), tuple((path, checksums[path]) for path in files)


def file_checksums(files: Iterable[str], known: Mapping[str, str] | None = None) -> dict[str, str]:
    """SHA-256 of ``files``; those in ``known`` are not read again."""
    known = dict(known or {})
    for path in files:
        if path not in known:
            known[path] = file_record(path).sha256
    return known


def update_run(config: dict, run_id: str, state: RunState | None, work: str | Path,
               checksums: Mapping[str, str] | None = None, sheet: Sheet | None = None
               ) -> tuple[RunState, dict[str, StageUpdate], Path | None]:
    """Bring a run's parts and store up to date with its sheet, computing
    only what changed since ``state`` (module docstring).

    Parameters
    ----------
    config : dict
        The validated config; the run's sheet is the one to bring the store up to.
    run_id : str
        The run.
    state : RunState or None
        What the last update returned; None computes everything.
    work : str or Path
        A folder of the caller's for intermediate parts (``parts/<stage>.h5``
        of the per-point steps of two-step stages).
    checksums : mapping, optional
        SHA-256 by path of the files the sheet names, as the caller knows
        them (``dacpipe watch`` hashes a file once per change); the others
        are read.
    sheet : Sheet, optional
        The run's sheet, when the caller has just read it.

    Returns
    -------
    state : RunState
        For the next update.
    done : dict
        Stage -> :class:`StageUpdate`.
    store : Path or None
        The store, rewritten; None when nothing changed and it was left alone.
    """
    run = run_config(config, run_id)
    sheet = read_sheet(run["sheet"]) if sheet is None else sheet
    ids = sheet.point_ids
    named = point_files(sheet)
    sums = file_checksums((f for files in named.values() for f in files), checksums)
    keys = {p.point: point_key(p, named[p.point], sums) for p in sheet.points}
    files = {point: frozenset(paths) for point, paths in named.items()}
    settings = settings_key(run, sheet.columns)
    fresh = state is None or state.settings != settings
    old_ids = [] if fresh else list(state.points)
    changed: set[str] | None = None if fresh else {p for p in ids if state.points.get(p) != keys[p]}
    # Files that only points now gone or changed named: their records leave the parts' inputs.
    named_now = set().union(*files.values()) if files else set()
    stale = set() if fresh else \
        {f for p in old_ids if p not in keys or p in changed for f in state.files[p]} - named_now
    updater = _Updater(config, run_id, run, sheet, Path(work), state, changed, old_ids == ids, sorted(stale))
    done = {stage: updater.update(stage) for stage in stages_for(run)}
    new_state = RunState(settings, keys, files)
    nothing = not fresh and old_ids == ids and all(u.action == "kept" for u in done.values())
    store = None
    if not (nothing and store_path(config, run_id).is_file()):
        store = assemble_run(config, run_id)
    for path in updater.written:
        st = os.stat(path)
        new_state.parts[str(path)] = (st.st_size, st.st_mtime_ns)
    return new_state, done, store


class _Updater:
    """One update of one run, stage by stage (:func:`update_run`)."""

    def __init__(self, config, run_id, run, sheet, work, state, changed, same_points, stale):
        self.config, self.run_id, self.run, self.sheet, self.work = config, run_id, run, sheet, work
        self.state, self.changed, self.same_points, self.stale = state, changed, same_points, stale
        self.ids = sheet.point_ids
        # Per stage, the points whose rows were recomputed; None: possibly all of them.
        self.dirty: dict[str, set[str] | None] = {}
        self.written: list[Path] = []

    def intact(self, path: Path) -> bool:
        """The part is the one the last update left."""
        if self.state is None or self.changed is None:
            return False
        try:
            st = os.stat(path)
        except OSError:
            return False
        return self.state.parts.get(str(path)) == (st.st_size, st.st_mtime_ns)

    def above(self, stage: str) -> set[str] | None:
        """The points whose rows changed in the stages ``stage`` reads."""
        out: set[str] = set()
        for needed in needs(stage, self.run):
            if self.dirty[needed] is None:
                return None
            out |= self.dirty[needed]
        return out

    def points(self, chosen: Iterable[str]) -> Sheet:
        """The sheet with only the points ``chosen``, in sheet order."""
        chosen = set(chosen)
        return dataclasses.replace(self.sheet, points=tuple(p for p in self.sheet.points if p.point in chosen))

    def update(self, stage: str) -> StageUpdate:
        part = part_path(self.config, self.run_id, stage)
        function = stage_function(stage, self.run)
        module = importlib.import_module(function.__module__)
        if stage in TWO_STEPS:
            return self.two_steps(stage, part, *(getattr(module, name) for name in TWO_STEPS[stage]))
        intact, above = self.intact(part), self.above(stage)
        todo = None if not intact or above is None else self.changed | above
        if todo is not None and not todo and self.same_points:
            self.dirty[stage] = set()
            return self.keep(part)
        if stage in PER_POINT and todo is not None:
            try:
                return self.per_point(stage, part, function, todo)
            except SpliceError as err:
                log.info(f"{self.run_id}: {err}; {stage} recomputed on every point")
        elif stage in LEAD_IN_POINTS and todo is not None:
            first = self.first_changed(todo)
            ranges = chunks(stage, self.run, len(self.ids))
            start = max([f for f, _ in ranges if f <= first], default=0)
            if 0 < start < len(self.ids):
                try:
                    return self.resume(stage, part, [r for r in ranges if r[0] >= start])
                except SpliceError as err:
                    log.info(f"{self.run_id}: {err}; {stage} recomputed on every point")
        return self.everything(stage, part)

    def keep(self, part: Path) -> StageUpdate:
        self.written.append(part)
        return StageUpdate("kept", 0)

    def everything(self, stage: str, part: Path) -> StageUpdate:
        run_stage(self.config, self.run_id, stage)
        self.dirty[stage] = None
        self.written.append(part)
        return StageUpdate("all", len(self.ids))

    def per_point(self, stage: str, part: Path, function, todo: set[str]) -> StageUpdate:
        sub = self.points(todo)
        new = None
        if sub.points:
            ctx = stage_context(self.config, self.run_id, stage, sub, points=sub.point_ids)
            new = function(ctx)
        old = read_result(part, self.run_id)
        spliced = splice_results(old, new, self.ids, drop_inputs=self.stale)
        # a whole-series step (the R1 widths against the run's low-pressure one) over the spliced rows
        write_part(part, self.run_id, finish_stage(self.config, self.run_id, stage, spliced))
        self.dirty[stage] = set(sub.point_ids)
        self.written.append(part)
        return StageUpdate("points", len(sub.points))

    def first_changed(self, todo: set[str]) -> int:
        """How many of the first points are unchanged and where they were."""
        old = list(self.state.points)
        first = 0
        while (first < min(len(self.ids), len(old)) and self.ids[first] == old[first]
               and self.ids[first] not in todo):
            first += 1
        return first

    def resume(self, stage: str, part: Path, ranges: list[tuple[int, int]]) -> StageUpdate:
        """A stage in chunks that walk the series, computed again on the chunks
        ``ranges`` (the last ones), spliced after the rows of the points before,
        and finished on the whole series."""
        old = read_result(part, self.run_id)
        new = None
        for first, end in ranges:
            chunk = compute_chunk(self.config, self.run_id, stage, self.sheet, first, end)
            new = chunk if new is None else splice_results(new, chunk, [*new.point_ids, *chunk.point_ids],
                                                           extras_over_points=False)
        joined = splice_results(old, new, self.ids, extras_over_points=False, drop_inputs=self.stale)
        write_part(part, self.run_id, finish_stage(self.config, self.run_id, stage, joined))
        self.dirty[stage] = set(new.point_ids)
        self.written.append(part)
        return StageUpdate("resumed", len(new.point_ids))

    def two_steps(self, stage: str, part: Path, measure, summarise) -> StageUpdate:
        measured_part = self.work / "parts" / f"{stage}.h5"
        intact = self.intact(part) and self.intact(measured_part)
        above = self.above(stage)
        todo = None if not intact else set(self.changed)
        measured: StageResult | None = None
        computed = 0
        if todo is not None and (todo or not self.same_points):
            sub = self.points(todo)
            new = measure(self.bare_context(stage, sub)) if sub.points else None
            computed = len(sub.points)
            try:
                measured = splice_results(read_result(measured_part, self.run_id), new, self.ids,
                                          drop_inputs=self.stale)
            except SpliceError as err:
                log.info(f"{self.run_id}: {err}; {stage} measured on every point")
                todo = None
        if todo is None:
            measured = measure(self.bare_context(stage, self.sheet))
            computed = len(self.ids)
        if measured is None and above is not None and not above and self.same_points:
            self.dirty[stage] = set()
            self.written.append(measured_part)
            return self.keep(part)
        if measured is None:
            measured = read_result(measured_part, self.run_id)
        else:
            write_part(measured_part, self.run_id, measured)
        ctx = stage_context(self.config, self.run_id, stage, self.sheet)
        write_part(part, self.run_id, stamped(summarise(ctx, measured), self.config, self.run_id, stage))
        self.dirty[stage] = None
        self.written += [measured_part, part]
        return StageUpdate("all" if todo is None else "series", computed)

    def bare_context(self, stage: str, sheet: Sheet) -> StageContext:
        """The context of a per-point step, which reads no other stage."""
        return StageContext(run_id=self.run_id, stage=stage, sheet=sheet, run=self.run, warn=log.warning)
