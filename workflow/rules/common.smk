# Shared by every rule: config validation, run names, paths, parameters.
import functools
import json
import os
import re

from dacpipe.core.errors import DacpipeError
from dacpipe.io.config import validate_config
from dacpipe.io.refs import file_part
from dacpipe.io.sheet import read_sheet
from dacpipe.run.config import run_config
from dacpipe.run.figures import figures_for
from dacpipe.run.stages import chunks, config_sections, needs, stages_for
from dacpipe.run.workflow_hooks import cancel_rate_limit_timers

# dacpipe's check of config/schema.yaml, which fills in its defaults as
# Snakemake's validate() would (the same jsonschema recipe, tests/test_config.py),
# with messages that name the key, the value and what was expected. Snakemake's
# own pass over the same file was redundant and cost 0.15 s of every start.
try:
    validate_config(config)
except DacpipeError as err:
    raise WorkflowError(f"{' + '.join(map(str, workflow.configfiles))}: {err}")

RESULTS = config["results_dir"].rstrip("/")
RUNS = list(config["runs"])
# The figures' size option of the runs' and campaigns' figures jobs; screen is
# `dacpipe figure`'s default, so its command line stays the plain one.
FIGURE_WIDTH = "" if config["figures"]["width"] == "screen" else f"--width {config['figures']['width']}"


wildcard_constraints:
    run="|".join(map(re.escape, RUNS)),
    chunk=r"\d{4}",


def _run(run_id):
    try:
        return run_config(config, run_id)
    except DacpipeError as err:
        raise WorkflowError(str(err))


def run_rule_name(prefix, run_id):
    """A run's own rule name (its figures), from the run id with every
    character but letters, digits and _ made _."""
    return f"{prefix}_{re.sub('[^0-9A-Za-z_]', '_', run_id)}"


def figure_files(run_id):
    """The figures (PNG and PDF) a run's config gives data for."""
    return [f"{RESULTS}/{run_id}/figures/{name}.{ext}" for name in figures_for(_run(run_id)) for ext in ("png", "pdf")]


def run_json(wildcards):
    """The run's whole settings (for the store, whose provenance holds them)."""
    return json.dumps({"results_dir": RESULTS, "runs": {wildcards.run: _run(wildcards.run)}}, sort_keys=True)


def stage_json(wildcards, stage):
    """Only the config sections one stage of one run reads, as its job's
    parameter: editing another run, or another stage's section, does not
    rerun this job."""
    run = _run(wildcards.run)
    own = {"sheet": run["sheet"], **{key: run[key] for key in config_sections(stage, run)}}
    return json.dumps({"results_dir": RESULTS, "runs": {wildcards.run: own}}, sort_keys=True)


def needed_parts(stage):
    """Input function: the parts of other stages that ``stage`` reads for a run."""
    return lambda w: [f"{RESULTS}/{w.run}/parts/{s}.h5" for s in needs(stage, _run(w.run))]


def parts(wildcards):
    return [f"{RESULTS}/{wildcards.run}/parts/{stage}.h5" for stage in stages_for(_run(wildcards.run))]


def integration_files(wildcards):
    """Geometry, mask, dark and flat of an integration stage that exist; with
    calibrant_image, the PONI file the run's calibrate job writes."""
    section = config["runs"][wildcards.run][wildcards.kind]
    named = [section.get(key) for key in ("poni", "mask", "dark", "flat")]
    found = [file_part(f) for f in named if f and os.path.isfile(file_part(f))]
    if section.get("calibrant_image"):
        found.append(f"{RESULTS}/{wildcards.run}/calibration.poni")
    return found


def instrument_files(wildcards):
    """The calibrant pattern the phase stage fits the instrument's line width on
    (indexing.instrument.calibrant_pattern), when the run names one that exists."""
    instrument = (_run(wildcards.run).get("indexing") or {}).get("instrument") or {}
    path = instrument.get("calibrant_pattern")
    return [path] if path and os.path.isfile(path) else []


@functools.lru_cache(maxsize=None)
def _sheet(path, mtime_ns):
    """A sheet read once per DAG, however many jobs ask (10,000 rows take ~0.1 s)."""
    return read_sheet(path)


def _points(run_id):
    path = config["runs"][run_id]["sheet"]
    return _sheet(path, os.stat(path).st_mtime_ns).points


def chunk_of(wildcards, stage):
    """The [first, end) points of the job's chunk."""
    try:
        n = len(_points(wildcards.run))
    except (DacpipeError, OSError):
        n = 0
    ranges = chunks(stage, _run(wildcards.run), n)
    return ranges[int(wildcards.chunk)] if int(wildcards.chunk) < len(ranges) else (0, 0)


def chunk_parts(run_id, stage):
    """The chunk parts of a per-point stage, in point order. A sheet that
    cannot be read gives one chunk, whose job fails with the sheet's message."""
    try:
        n = len(_points(run_id))
    except (DacpipeError, OSError):
        n = 0
    return [f"{RESULTS}/{run_id}/parts/{stage}/chunk{k:04d}.h5" for k in range(len(chunks(stage, _run(run_id), n)))]


def local_cores():
    """The cores given with --cores; None on a cluster (--jobs), whose profile sets threads."""
    try:
        return int(workflow.cores)
    except WorkflowError:
        return None


def integration_threads(wildcards):
    """An integration job's threads (pyFAI's OpenMP): the cores shared among the
    run's chunks, at least one (2 on a cluster). Each core on a chunk of its own
    did 1.3x the frames of two cores on one chunk after the other (1,000 Pilatus
    1M frames, two chunks: 26 s against 35 s), the spot search and the reading
    being serial."""
    cores = local_cores()
    if cores is None:
        return 2
    return max(1, cores // max(len(chunk_parts(wildcards.run, wildcards.kind)), 1))


def figure_threads(n_figures):
    """A figures job's threads: one process per figure, at most the cores (one on a cluster)."""
    return lambda wildcards: min(n_figures, local_cores() or 1)


def sheet_files(wildcards, columns, span=None):
    """The existing files a run's sheet names in ``columns`` (for the points
    in ``span``, [first, end), when given). Missing files are left to the
    job, which marks their points in the store; a sheet that cannot be read
    is left to the job too, which fails with its message."""
    try:
        points = _points(wildcards.run)
    except (DacpipeError, OSError):
        return []
    if span is not None:
        points = points[span[0]:span[1]]
    found = []
    for point in points:
        for column in columns:
            ref = point.files.get(column)
            if ref and os.path.isfile(file_part(ref)):
                found.append(file_part(ref))
    # An HDF5 file's job reruns when a file it links to changes (an Eiger master's data files).
    linked = [f for f in set(found) if f.lower().endswith(HDF5_SUFFIXES)]
    if linked:
        from dacpipe.io.images import input_files

        found += [str(p) for f in linked for p in input_files(f)]
    return sorted(set(found))


HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")


# Snakemake's last rate-limit timer would keep the finished workflow's process
# alive for about a second (dacpipe.run.workflow_hooks).
onsuccess:
    cancel_rate_limit_timers()


onerror:
    cancel_rate_limit_timers()
