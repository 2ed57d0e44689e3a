"""Running one stage of one run, and assembling a run's store: what ``dacpipe run``
and every Snakemake job go through, so that a run gives the same store
whichever way it was started.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np
import yaml

from ..core.errors import ConfigError
from ..core.results import StageContext, StageResult, Upstream
from ..io.sheet import Sheet, read_sheet
from .config import run_config
from .layout import part_path, store_path
from .provenance import SETTINGS_ATTR, settings_digest
from .stages import LEAD_IN_POINTS, chunks, finish_function, needs, optional_reads, reads, stage_function, stages_for
from .store import assemble, merge_chunks, open_result, read_result, splice_results, write_part

log = logging.getLogger("dacpipe")


def read_part(path: str | Path, stage: str, names: Sequence[str] | None = None,
              points: Sequence[str] | None = None, one_value_per_point: bool = False,
              optional: Sequence[str] = ()) -> Upstream:
    """Datasets of one stage's group in a part file (strings decoded), and its attributes.

    Parameters
    ----------
    path : str or Path
        The part file.
    stage : str
        Its stage's group.
    names : sequence of str, optional
        The datasets to read; None reads none, only the attributes.
    points : sequence of str, optional
        Only the rows of these points, in this order (the axes named in
        ``@fixed_axes`` whole): what a stage computing some points only reads.
    one_value_per_point : bool
        Leave out the datasets with more than one value per point (patterns)
        and the axes.
    optional : sequence of str
        Datasets read where the part has them, in the stage's group or beside
        it (``transitions/``, read whole: not over points).

    Raises
    ------
    ValueError
        A point of ``points`` is not in the part.
    """
    with open_result(path) as h5:  # a damaged part: one line saying how to rebuild it
        entry = h5[next(iter(h5))]
        group = entry[stage]
        fixed = {str(a.decode() if isinstance(a, bytes) else a) for a in group.attrs.get("fixed_axes", [])}
        rows = None
        if points is not None:
            index = {p: i for i, p in enumerate(entry["point_ids"].asstr()[()])}
            missing = [p for p in points if p not in index]
            if missing:
                raise ValueError(f"{path}: no point {missing[0]} in the part of {stage}")
            rows = np.array([index[p] for p in points], dtype=np.int64)
        data = {}
        for name in names or ():
            dset = group[name]
            if one_value_per_point and (name in fixed or dset.ndim != 1):
                continue
            data[name] = _read_rows(dset, None if name in fixed else rows)
        for name in optional:
            if name in group:
                dset = group[name]
                if not (one_value_per_point and (name in fixed or dset.ndim != 1)):
                    data[name] = _read_rows(dset, None if name in fixed else rows)
            elif name in entry and isinstance(entry[name], h5py.Dataset) and not one_value_per_point:
                data[name] = _read_rows(entry[name], None)
        return Upstream(data, dict(group.attrs))


def _read_rows(dset: h5py.Dataset, rows: np.ndarray | None) -> np.ndarray:
    """A dataset, or the rows ``rows`` of it (in that order), read without the other rows."""
    source = dset.asstr() if dset.dtype.kind == "O" else dset
    if rows is None:
        return source[()]
    if len(rows) == 0:
        return source[0:0]
    if np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
        return source[int(rows[0]):int(rows[0]) + len(rows)]
    order = np.argsort(rows)  # h5py reads scattered rows in increasing order only
    values = source[rows[order].tolist()]
    out = np.empty_like(values)
    out[order] = values
    return out


def upstream(config: dict, run_id: str, stage: str, run: dict, points: Sequence[str] | None = None,
             one_value_per_point: bool = False) -> dict[str, Upstream]:
    """What ``stage`` reads of the parts of the stages before it (the rows of
    ``points`` only, when given; see :func:`read_part`)."""
    out = {}
    for needed in needs(stage, run):
        path = part_path(config, run_id, needed)
        attrs = read_part(path, needed).attrs
        # the phases group names its phases; the EOS part the phases it fitted
        phase_names = [str(p) for p in attrs.get("phases", attrs.get("phases_fitted", []))]
        out[needed] = read_part(path, needed, reads(stage, needed, phase_names), points, one_value_per_point,
                                optional=optional_reads(stage, needed, phase_names, run))
    return out


def stage_context(config: dict, run_id: str, stage: str, sheet=None, *, points: Sequence[str] | None = None,
                  progress: Callable[[int, int], None] = lambda done, total: None) -> StageContext:
    """The context of ``stage``: the run's sheet (or ``sheet``, some of its
    points) and what the stage reads of the parts before it, for the points
    ``points`` only when given (the sheet's points must be those)."""
    run = run_config(config, run_id)
    sheet = read_sheet(run["sheet"]) if sheet is None else sheet
    return StageContext(run_id=run_id, stage=stage, sheet=sheet, run=run,
                        upstream=upstream(config, run_id, stage, run, points), warn=log.warning,
                        progress=progress)


def run_config_yaml(config: dict, run_id: str) -> str:
    """The settings that made a run's store, as stored in its provenance."""
    return yaml.safe_dump({"results_dir": config["results_dir"], "runs": {run_id: run_config(config, run_id)}},
                          sort_keys=False)


def run_stage(config: dict, run_id: str, stage: str, out: str | Path | None = None,
              progress: Callable[[int, int], None] = lambda done, total: None, chunk: int | None = None) -> Path:
    """Run one stage of one run (or one chunk of its points) and write its part file.

    A stage that walks the series (:data:`~dacpipe.run.stages.LEAD_IN_POINTS`)
    is computed chunk by chunk here too, then finished on the joined series,
    so that ``dacpipe run`` gives what the workflow's chunk jobs and merge do.
    """
    run = run_config(config, run_id)
    sheet = read_sheet(run["sheet"])
    ranges = chunks(stage, run, len(sheet.points))
    if chunk is not None:
        if not 0 <= chunk < len(ranges):
            raise ConfigError(f"{run_id}: {stage} has {len(ranges)} chunks, not a chunk {chunk}")
        result = compute_chunk(config, run_id, stage, sheet, *ranges[chunk], progress=progress)
    elif stage in LEAD_IN_POINTS and len(ranges) > 1:
        def chunk_progress(first):
            return lambda k, total: progress(first + k, len(sheet.points))
        joined = None
        for first, end in ranges:
            part = compute_chunk(config, run_id, stage, sheet, first, end, progress=chunk_progress(first))
            joined = part if joined is None else splice_results(joined, part, [*joined.point_ids, *part.point_ids],
                                                                extras_over_points=False)
        result = finish_stage(config, run_id, stage, joined)
    else:
        result = stage_function(stage, run)(stage_context(config, run_id, stage, sheet, progress=progress))
        result = finish_stage(config, run_id, stage, result)
    out = Path(out) if out else part_path(config, run_id, stage)
    write_part(out, run_id, stamped(result, config, run_id, stage))
    return out


def compute_chunk(config: dict, run_id: str, stage: str, sheet: Sheet, first: int, end: int,
                  progress: Callable[[int, int], None] = lambda done, total: None) -> StageResult:
    """``stage`` on the points [first, end) of ``sheet``: a stage that walks the
    series starts :data:`~dacpipe.run.stages.LEAD_IN_POINTS` points earlier,
    whose rows are then dropped."""
    run = run_config(config, run_id)
    lead = min(LEAD_IN_POINTS.get(stage, 0), first)
    points = sheet.points[first - lead:end]
    sub = dataclasses.replace(sheet, points=points)
    ids = [p.point for p in points]
    ctx = stage_context(config, run_id, stage, sub, points=ids if needs(stage, run) else None, progress=progress)
    result = stage_function(stage, run)(ctx)
    if lead:
        result = splice_results(result, None, ids[lead:], extras_over_points=False)
    return result


def finish_stage(config: dict, run_id: str, stage: str, joined: StageResult) -> StageResult:
    """The whole-series step of a chunked stage on its joined chunks (the phase
    transitions); the result unchanged for a stage without one."""
    finish = finish_function(stage)
    if finish is None:
        return joined
    run = run_config(config, run_id)
    # one value per point of the stages before (the pressures), not their patterns
    ctx = StageContext(run_id=run_id, stage=stage, sheet=read_sheet(run["sheet"]), run=run,
                       upstream=upstream(config, run_id, stage, run, joined.point_ids, one_value_per_point=True),
                       warn=log.warning)
    return stamped(finish(ctx, joined), config, run_id, stage)


def stamped(result: StageResult, config: dict, run_id: str, stage: str) -> StageResult:
    """``result`` with the digest of the settings it was computed with
    (:func:`~dacpipe.run.provenance.settings_digest`) in its attributes, which
    its part keeps and the store's assembly checks."""
    result.attrs[SETTINGS_ATTR] = settings_digest(run_config(config, run_id), stage)
    return result


def merge_stage(config: dict | None, run_id: str, stage: str, paths: Sequence[str | Path], out: str | Path) -> Path:
    """Join the chunk parts of ``stage`` into its part (:func:`~dacpipe.run.store.merge_chunks`),
    then run its whole-series step (which needs ``config``) if it has one."""
    merge_chunks(paths, out, run_id)
    if finish_function(stage) is not None:
        if config is None:
            raise ConfigError(f"{run_id}: joining the chunks of {stage} needs the run's config")
        write_part(out, run_id, finish_stage(config, run_id, stage, read_result(out, run_id)))
    return Path(out)


def assemble_run(config: dict, run_id: str, parts: list[str | Path] | None = None,
                 out: str | Path | None = None) -> Path:
    """Merge a run's parts into its store."""
    run = run_config(config, run_id)
    sheet = read_sheet(run["sheet"])
    # Cells that could not be read are in the points' status; say so once, naming the sheet.
    for point in sheet.points:
        for problem in point.problems:
            log.warning(f"{run_id}/{point.point}: {sheet.path}: {problem}")
    parts = parts if parts is not None else [part_path(config, run_id, s) for s in stages_for(run)]
    out = Path(out) if out else store_path(config, run_id)
    # The parts' settings must be the config written as the store's provenance.
    settings = {stage: settings_digest(run, stage) for stage in stages_for(run)}
    assemble(out, run_id, sheet, parts, run_config_yaml(config, run_id), settings=settings)
    return out
