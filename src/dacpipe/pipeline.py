"""Where each run's files go, and the stages run in order for one run.

The Snakemake rules and ``dacpipe run`` both go through these functions, so
a run gives the same store whichever way it was started.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np
import yaml

from .config import run_config
from .errors import ConfigError
from .sheet import read_sheet
from .store import StageResult, assemble, write_part

log = logging.getLogger("dacpipe")


# Each stage imports its module when it runs: a Snakemake job starts a fresh
# process, and the pressure and store jobs should not pay pyFAI's second of
# import time. A stage gets the part files of the stages before it.
def _pressure(sheet, run, warn, progress, parts) -> StageResult:
    if run["pressure"]["gauge"] == "xrd-marker":
        from .indexing import IndexingSettings
        from .marker import marker_stage

        xrd, xrd_attrs = read_part(parts["xrd"], "xrd", ("q", "I", "I_errors", "status"))
        return marker_stage(sheet.point_ids, xrd["q"], xrd["I"], xrd["I_errors"], float(xrd_attrs["wavelength_A"]),
                            run["pressure"], IndexingSettings.from_config(run), xrd_status=xrd["status"],
                            warn=warn, progress=progress)
    from .pressure import pressure_stage

    return pressure_stage(sheet, run["pressure"], warn, progress)


def _integration(kind: str) -> Callable[..., StageResult]:
    def stage(sheet, run, warn, progress, parts) -> StageResult:
        from .integrate import integration_stage

        return integration_stage(sheet, run[kind], kind, warn, progress)

    return stage


def _phases(sheet, run, warn, progress, parts) -> StageResult:
    from .indexing import IndexingSettings, index_series

    xrd, xrd_attrs = read_part(parts["xrd"], "xrd", ("q", "I", "I_errors", "status"))
    pressure, _ = read_part(parts["pressure"], "pressure", ("pressure_GPa",))
    return index_series(sheet.point_ids, xrd["q"], xrd["I"], xrd["I_errors"], float(xrd_attrs["wavelength_A"]),
                        pressure["pressure_GPa"], IndexingSettings.from_config(run), xrd_status=xrd["status"],
                        warn=warn, progress=progress)


def _eos(sheet, run, warn, progress, parts) -> StageResult:
    from .eos import eos_stage

    pressure, _ = read_part(parts["pressure"], "pressure", ("pressure_GPa", "pressure_err_GPa"))
    names = [f"{p}/{k}" for p in run["phases"] for k in ("volume_fu_A3", "volume_fu_err_A3")]
    found, _ = read_part(parts["phases"], "phases", names)
    volumes = {p: (found[f"{p}/volume_fu_A3"], found[f"{p}/volume_fu_err_A3"]) for p in run["phases"]}
    return eos_stage(sheet.point_ids, pressure["pressure_GPa"], pressure["pressure_err_GPa"], volumes, run["eos"],
                     warn=warn)


def _superlattice(sheet, run, warn, progress, parts) -> StageResult:
    from .superlattice import superlattice_stage

    saxs, attrs = read_part(parts["saxs"], "saxs", ("q", "I", "I_errors", "status"))
    return superlattice_stage(sheet.point_ids, saxs["q"], saxs["I"], saxs["I_errors"], float(attrs["wavelength_A"]),
                              run["superlattice"], saxs_status=saxs["status"], warn=warn, progress=progress)


def _optical(sheet, run, warn, progress, parts) -> StageResult:
    from .optical import optical_stage

    pressure, _ = read_part(parts["pressure"], "pressure", ("pressure_GPa", "pressure_err_GPa"))
    phase_per_point = dominant_phases(parts["phases"], run["phases"]) if "phases" in parts else None
    return optical_stage(sheet, run["optical"], pressure["pressure_GPa"], phase_per_point, warn, progress,
                         pressure_err_GPa=pressure["pressure_err_GPa"])


def dominant_phases(phases_part: str | Path, names: Sequence[str]) -> list[str]:
    """Per point, the present phase with the largest fraction ("" where none is)."""
    keys = [f"{name}/{k}" for name in names for k in ("fraction", "present")]
    table, _ = read_part(phases_part, "phases", keys)
    fraction = np.array([np.where(table[f"{name}/present"], table[f"{name}/fraction"], -1.0) for name in names])
    best = np.argmax(fraction, axis=0)
    return [names[k] if fraction[k, i] >= 0 else "" for i, k in enumerate(best)]


# Stage name -> function(sheet, run_cfg, warn, progress, parts) -> StageResult.
STAGES: dict[str, Callable[..., StageResult]] = {
    "pressure": _pressure,
    "xrd": _integration("xrd"),
    "saxs": _integration("saxs"),
    "phases": _phases,
    "eos": _eos,
    "superlattice": _superlattice,
    "optical": _optical,
}


# Stages that work point by point, and so can be split into chunks of
# points, one job each, merged afterwards. A pressure read from an XRD
# marker takes the whole XRD part, so it is one chunk.
CHUNKED = ("pressure", "xrd", "saxs")


def needs(stage: str, run: dict) -> tuple[str, ...]:
    """The stages whose parts ``stage`` reads besides the sheet: a pressure
    read from an XRD marker comes after the integration."""
    if stage == "pressure":
        return ("xrd",) if run["pressure"]["gauge"] == "xrd-marker" else ()
    if stage == "optical":
        return ("pressure", "phases") if "xrd" in run and run.get("phases") else ("pressure",)
    return {"phases": ("xrd", "pressure"), "eos": ("phases", "pressure"), "superlattice": ("saxs",)}.get(stage, ())


def config_sections(stage: str, run: dict) -> tuple[str, ...]:
    """The run's config sections a stage reads: its job's parameters, so that
    editing any other section does not rerun it."""
    # A stage whose inputs depend on whether the run has XRD gets the xrd
    # section too, so that its job sees the inputs the workflow gave it; it
    # reads the XRD part (or the indexing's) anyway, so no rerun is added.
    # A chunked stage gets chunk_points, which decides its jobs' points.
    if stage == "pressure":
        if run["pressure"]["gauge"] == "xrd-marker":
            return ("pressure", "indexing", "xrd")
        return ("pressure", "chunk_points")
    if stage in CHUNKED:
        return (stage, "chunk_points")
    if stage == "optical":
        return ("optical", "phases", "xrd") if "xrd" in run else ("optical", "phases")
    return {"phases": ("phases", "indexing"), "eos": ("phases", "eos")}.get(stage, (stage,))


def stages_for(run: dict) -> list[str]:
    """The stages a run's config asks for, in order: pressure always, the
    integration stages when their section is present, indexing and EOS when
    an XRD run names phases, the superlattice analysis of SAXS patterns,
    band gaps and PL when the run has an optical section."""
    stages = [s for s in ("xrd", "saxs") if s in run]
    stages.insert(len(stages) if run["pressure"]["gauge"] == "xrd-marker" else 0, "pressure")
    if "xrd" in run and run.get("phases"):
        stages += ["phases", "eos"]
    if "saxs" in run:
        stages.append("superlattice")
    if "optical" in run:
        stages.append("optical")
    return stages


def chunks(stage: str, run: dict, n_points: int) -> list[tuple[int, int]]:
    """[first, end) point ranges of the jobs of ``stage``: one range unless the stage is chunked."""
    if stage not in CHUNKED or (stage == "pressure" and run["pressure"]["gauge"] == "xrd-marker"):
        return [(0, n_points)]
    size = int(run["chunk_points"])
    return [(start, min(start + size, n_points)) for start in range(0, max(n_points, 1), size)]


def read_part(path: str | Path, stage: str, names: Sequence[str]) -> tuple[dict[str, np.ndarray], dict]:
    """Datasets of one stage's group in a part file (strings decoded), and its attributes."""
    with h5py.File(path, "r") as h5:
        group = h5[next(iter(h5))][stage]
        out = {name: (group[name].asstr()[()] if group[name].dtype.kind == "O" else group[name][()])
               for name in names}
        return out, dict(group.attrs)


def store_path(config: dict, run_id: str) -> Path:
    return Path(config["results_dir"]) / f"{run_id}.h5"


def figure_path(config: dict, run_id: str, name: str) -> Path:
    """Where a run's figure goes (PNG; the PDF beside it)."""
    return Path(config["results_dir"]) / run_id / "figures" / f"{name}.png"


def chunk_path(config: dict, run_id: str, stage: str, chunk: int) -> Path:
    return Path(config["results_dir"]) / run_id / "parts" / stage / f"chunk{chunk:04d}.h5"


def part_path(config: dict, run_id: str, stage: str) -> Path:
    return Path(config["results_dir"]) / run_id / "parts" / f"{stage}.h5"


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
    parts = {needed: part_path(config, run_id, needed) for needed in needs(stage, run)}
    result = STAGES[stage](sheet, run, log.warning, progress, parts)
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
