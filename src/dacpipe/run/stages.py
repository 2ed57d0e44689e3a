"""The stage registry: which stages a run has, what each reads, and where its code lives.

Every stage is a function ``stage(ctx: StageContext) -> StageResult`` in the
``stage.py`` of its domain package (:data:`STAGES`, imported only when the
stage runs: a Snakemake job is a fresh process, and the pressure and store
jobs should not pay pyFAI's second of import time). A stage reads the
sheet, its config sections (:func:`config_sections`, which are also its
Snakemake job's parameters) and named datasets of earlier stages' parts
(:func:`reads`).
"""

from __future__ import annotations

import importlib
from typing import Callable

from ..core.results import StageContext, StageResult
from ..xrd.transitions import COLUMNS as TRANSITION_COLUMNS

# Stage name -> "module:function" of its code.
STAGES: dict[str, str] = {
    "pressure": "dacpipe.pressure.stage:run",
    "xrd": "dacpipe.integration.stage:run",
    "saxs": "dacpipe.integration.stage:run",
    "phases": "dacpipe.xrd.stage:phases",
    "eos": "dacpipe.eos.stage:run",
    "superlattice": "dacpipe.saxs.stage:run",
    "optical": "dacpipe.optical.stage:run",
}
# A pressure read from an XRD marker is computed by the structural stage's code.
MARKER_PRESSURE = "dacpipe.xrd.stage:marker_pressure"

# Stages split into chunks of points (run.chunk_points), one job each, merged
# afterwards. The per-point stages give the same numbers whatever the
# chunks; a pressure read from an XRD marker takes the whole XRD part, so it
# is one chunk.
CHUNKED = ("pressure", "xrd", "saxs", "phases")
# The phase identification walks the series in order, carrying each phase's
# cell, line widths and presence from point to point; split, each chunk
# starts afresh from the library's cells, at the pressure of its first
# point, this many points before its own (those rows are dropped), so that
# its state at its first point is what the walk had (measured on the HgTe
# series of bench_scale: the same phases at every point). The chunks are
# part of the method: ``dacpipe run``, ``dacpipe watch`` and the workflow
# cut the series at the same points, so all three give the same numbers,
# and a 1,000-frame run's identification runs on as many cores as it has
# chunks instead of walking the series in one process.
LEAD_IN_POINTS: dict[str, int] = {"phases": 3}
# What spans the chunks, computed on the whole series once its rows are all
# there ("module:function", ``f(ctx, joined: StageResult) -> StageResult``):
# the phase transitions; the R1 widths against the run's low-pressure one.
# The runner applies it after a whole-series computation, the workflow's
# merge job after joining the chunks, dacpipe watch after each splice; a
# chunk job never does. It must give the same result applied again.
FINISH: dict[str, str] = {"phases": "dacpipe.xrd.transitions:finish_phases",
                          "pressure": "dacpipe.pressure.hydrostatic:finish_pressure"}

# What a stage reads of another's part: (stage, upstream) -> datasets of the
# upstream group (None: its per-phase datasets, named by the run's phases).
_PATTERN = ("q", "I", "I_errors", "status")
# The structural fits model each bin where its pixels sample the pattern.
_XRD_PATTERN = _PATTERN + ("pixel_mean_q_A",)
_READS: dict[tuple[str, str], tuple[str, ...] | None] = {
    ("pressure", "xrd"): _XRD_PATTERN,
    ("phases", "xrd"): _XRD_PATTERN,
    ("phases", "pressure"): ("pressure_GPa",),
    ("eos", "pressure"): ("pressure_GPa", "pressure_err_GPa"),
    ("eos", "phases"): None,
    ("superlattice", "saxs"): _PATTERN,
    ("optical", "pressure"): ("pressure_GPa", "pressure_err_GPa"),
    ("optical", "phases"): None,
    ("optical", "eos"): (),  # each fitted phase's parameters: optional_reads
}
_PER_PHASE = ("volume_fu_A3", "volume_fu_err_A3", "fraction", "present")
_EOS_FIT = ("model", "V0_fu_A3", "K0_GPa", "Kp", "K0pp_per_GPa", "covariance", "parameter_names")


def stage_function(stage: str, run: dict) -> Callable[[StageContext], StageResult]:
    """The code of ``stage`` for this run."""
    target = MARKER_PRESSURE if stage == "pressure" and run["pressure"]["gauge"] == "xrd-marker" else STAGES[stage]
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def finish_function(stage: str) -> Callable[[StageContext, StageResult], StageResult] | None:
    """The whole-series step of a chunked stage (:data:`FINISH`), or None."""
    if stage not in FINISH:
        return None
    module, name = FINISH[stage].split(":")
    return getattr(importlib.import_module(module), name)


def needs(stage: str, run: dict) -> tuple[str, ...]:
    """The stages whose parts ``stage`` reads besides the sheet: a pressure
    read from an XRD marker comes after the integration."""
    if stage == "pressure":
        return ("xrd",) if run["pressure"]["gauge"] == "xrd-marker" else ()
    if stage == "optical":  # the EOS for the deformation potentials; the EOS stage reads no optics
        return ("pressure", "phases", "eos") if "xrd" in run and run.get("phases") else ("pressure",)
    return {"phases": ("xrd", "pressure"), "eos": ("phases", "pressure"), "superlattice": ("saxs",)}.get(stage, ())


def reads(stage: str, upstream: str, phase_names: list[str]) -> tuple[str, ...]:
    """The datasets ``stage`` reads of ``upstream``'s group (``phase_names``:
    the phases group's own list of phases, for the per-phase datasets)."""
    names = _READS[(stage, upstream)]
    if names is None:
        return tuple(f"{phase}/{key}" for phase in phase_names for key in _PER_PHASE)
    return names


# The cake the phase stage reads for the lattice strain of a radial-geometry run (dacpipe.xrd.strain).
_CAKE = ("cake/I", "cake/chi_deg", "cake/radial")


def optional_reads(stage: str, upstream: str, phase_names: list[str], run: dict | None = None) -> tuple[str, ...]:
    """The datasets ``stage`` reads of ``upstream``'s part where they are there:
    the EOS stage takes each phase's cell edges (axial moduli of the phases
    with more than one), the hydrostatic volumes of a radial-geometry run
    and the series' transitions (the volume change at each), which lie
    beside the phases group in its part; the phase stage
    the cake (N x n_azimuthal x npt numbers: only for a radial-geometry run)."""
    if (stage, upstream) == ("phases", "xrd"):
        return _CAKE if ((run or {}).get("xrd") or {}).get("geometry", "axial") == "radial" else ()
    if (stage, upstream) == ("optical", "eos"):  # each fitted phase's EOS, for the deformation potentials
        return tuple(f"{phase}/{key}" for phase in phase_names for key in _EOS_FIT)
    if (stage, upstream) != ("eos", "phases"):
        return ()
    edges = tuple(f"{phase}/{edge}{tail}" for phase in phase_names for edge in ("a", "b", "c")
                  for tail in ("_A", "_err_A"))
    # a cubic phase's hydrostatic volume in radial geometry (dacpipe.xrd.strain.hydrostatic_cell)
    hydrostatic = tuple(f"{phase}/{key}" for phase in phase_names for key in ("volume_P_fu_A3", "volume_P_fu_err_A3"))
    return edges + hydrostatic + tuple(f"transitions/{column}" for column in TRANSITION_COLUMNS)


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
    if stage == "phases" and run["pressure"]["gauge"] == "xrd-marker":
        # The marker is fitted with the sample: the phases job must know it (and a
        # marker gauge is only valid with the xrd section).
        return ("phases", "indexing", "pressure", "xrd", "chunk_points")
    if stage == "phases":
        # xrd: the diffraction geometry and the cake of the lattice-strain analysis
        return ("phases", "indexing", "xrd", "chunk_points")
    if stage in CHUNKED:
        return (stage, "chunk_points")
    if stage == "optical":
        return ("optical", "phases", "xrd") if "xrd" in run else ("optical", "phases")
    return {"eos": ("phases", "eos")}.get(stage, (stage,))


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
    """[first, end) point ranges of the jobs of ``stage``: one range unless the stage is chunked
    (a chunk of a stage in :data:`LEAD_IN_POINTS` reads points before its ``first`` too)."""
    if stage not in CHUNKED or (stage == "pressure" and run["pressure"]["gauge"] == "xrd-marker"):
        return [(0, n_points)]
    size = int(run["chunk_points"])
    return [(start, min(start + size, n_points)) for start in range(0, max(n_points, 1), size)]
