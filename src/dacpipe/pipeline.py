"""Where each run's files go, and the stages run in order for one run.

The Snakemake rules and ``dacpipe run`` both go through these functions, so
a run gives the same store whichever way it was started.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import yaml

from .config import run_config
from .sheet import read_sheet
from .store import StageResult, assemble, write_part

log = logging.getLogger("dacpipe")


# Each stage imports its module when it runs: a Snakemake job starts a fresh
# process, and the pressure and store jobs should not pay pyFAI's second of
# import time.
def _pressure(sheet, run, warn, progress) -> StageResult:
    from .pressure import pressure_stage

    return pressure_stage(sheet, run["pressure"], warn, progress)


def _integration(kind: str) -> Callable[..., StageResult]:
    def stage(sheet, run, warn, progress) -> StageResult:
        from .integrate import integration_stage

        return integration_stage(sheet, run[kind], kind, warn, progress)

    return stage


# Stage name -> function(sheet, run_cfg, warn, progress) -> StageResult.
STAGES: dict[str, Callable[..., StageResult]] = {
    "pressure": _pressure,
    "xrd": _integration("xrd"),
    "saxs": _integration("saxs"),
}


def stages_for(run: dict) -> list[str]:
    """The stages a run's config asks for, in order: pressure always, the
    integration stages when their section is present."""
    return ["pressure"] + [s for s in ("xrd", "saxs") if s in run]


def store_path(config: dict, run_id: str) -> Path:
    return Path(config["results_dir"]) / f"{run_id}.h5"


def part_path(config: dict, run_id: str, stage: str) -> Path:
    return Path(config["results_dir"]) / run_id / "parts" / f"{stage}.h5"


def run_config_yaml(config: dict, run_id: str) -> str:
    """The settings that made a run's store, as stored in its provenance."""
    return yaml.safe_dump({"results_dir": config["results_dir"], "runs": {run_id: run_config(config, run_id)}},
                          sort_keys=False)


def run_stage(config: dict, run_id: str, stage: str, out: str | Path | None = None,
              progress: Callable[[int, int], None] = lambda done, total: None) -> Path:
    """Run one stage of one run and write its part file."""
    run = run_config(config, run_id)
    sheet = read_sheet(run["sheet"])
    result = STAGES[stage](sheet, run, log.warning, progress)
    out = Path(out) if out else part_path(config, run_id, stage)
    write_part(out, run_id, result)
    return out


def assemble_run(config: dict, run_id: str, parts: list[str | Path] | None = None,
                 out: str | Path | None = None) -> Path:
    """Merge a run's parts into its store."""
    run = run_config(config, run_id)
    sheet = read_sheet(run["sheet"])
    parts = parts if parts is not None else [part_path(config, run_id, s) for s in stages_for(run)]
    out = Path(out) if out else store_path(config, run_id)
    assemble(out, run_id, sheet, parts, run_config_yaml(config, run_id))
    return out
