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
import yaml

from ..core.errors import ConfigError
from ..core.results import StageContext, Upstream
from ..io.sheet import read_sheet
from .config import run_config
from .layout import part_path, store_path
from .stages import chunks, needs, reads, stage_function, stages_for
from .store import assemble, write_part

log = logging.getLogger("dacpipe")


def read_part(path: str | Path, stage: str, names: Sequence[str] | None = None) -> Upstream:
    """Datasets of one stage's group in a part file (strings decoded), and its
    attributes; ``names`` None reads none, only the attributes."""
    with h5py.File(path, "r") as h5:
        group = h5[next(iter(h5))][stage]
        data = {name: (group[name].asstr()[()] if group[name].dtype.kind == "O" else group[name][()])
                for name in names or ()}
        return Upstream(data, dict(group.attrs))


def upstream(config: dict, run_id: str, stage: str, run: dict) -> dict[str, Upstream]:
    """What ``stage`` reads of the parts of the stages before it."""
    out = {}
    for needed in needs(stage, run):
        path = part_path(config, run_id, needed)
        phase_names = [str(p) for p in read_part(path, needed).attrs.get("phases", [])]
        out[needed] = read_part(path, needed, reads(stage, needed, phase_names))
    return out


def run_config_yaml(config: dict, run_id: str) -> str:
    """The settings that made a run's store, as stored in its provenance."""
    return yaml.safe_dump({"results_dir": config["results_dir"], "runs": {run_id: run_config(config, run_id)}},
                          sort_keys=False)


def run_stage(config: dict, run_id: str, stage: str, out: str | Path | None = None,
              progress: Callable[[int, int], None] = lambda done, total: None, chunk: int | None = None) -> Path:
    """Run one stage of one run (or one chunk of its points) and write its part file."""
    run = run_config(config, run_id)
    sheet = read_sheet(run["sheet"])
    if chunk is not None:
        ranges = chunks(stage, run, len(sheet.points))
        if not 0 <= chunk < len(ranges):
            raise ConfigError(f"{run_id}: {stage} has {len(ranges)} chunks, not a chunk {chunk}")
        first, end = ranges[chunk]
        sheet = dataclasses.replace(sheet, points=sheet.points[first:end])
    ctx = StageContext(run_id=run_id, stage=stage, sheet=sheet, run=run,
                       upstream=upstream(config, run_id, stage, run), warn=log.warning, progress=progress)
    result = stage_function(stage, run)(ctx)
    out = Path(out) if out else part_path(config, run_id, stage)
    write_part(out, run_id, result)
    return out


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
    assemble(out, run_id, sheet, parts, run_config_yaml(config, run_id))
    return out
