# Shared by every rule: config validation, run names, paths, parameters.
import json
import os
import re

from snakemake.utils import validate

from dacpipe.config import run_config, validate_config
from dacpipe.errors import DacpipeError
from dacpipe.pipeline import config_sections, needs, stages_for
from dacpipe.sheet import read_sheet

# dacpipe's own check first: its messages name the key, the value and what
# was expected; then Snakemake's, on the same schema file.
try:
    validate_config(config)
except DacpipeError as err:
    raise WorkflowError(f"{' + '.join(map(str, workflow.configfiles))}: {err}")
validate(config, "../../config/schema.yaml")

RESULTS = config["results_dir"].rstrip("/")
RUNS = list(config["runs"])


wildcard_constraints:
    run="|".join(map(re.escape, RUNS)),


def _run(run_id):
    try:
        return run_config(config, run_id)
    except DacpipeError as err:
        raise WorkflowError(str(err))


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
    """Geometry, mask, dark and flat of an integration stage that exist."""
    section = config["runs"][wildcards.run][wildcards.kind]
    named = [section.get(key) for key in ("poni", "mask", "dark", "flat")]
    return [f.split("::", 1)[0] for f in named if f and os.path.isfile(f.split("::", 1)[0])]


def sheet_files(wildcards, columns):
    """The existing files a run's sheet names in ``columns``. Missing files
    are left to the job, which marks their points in the store; a sheet that
    cannot be read is left to the job too, which fails with its message."""
    sheet_path = config["runs"][wildcards.run]["sheet"]
    try:
        sheet = read_sheet(sheet_path)
    except DacpipeError:
        return []
    found = []
    for point in sheet.points:
        for column in columns:
            ref = point.files.get(column)
            if ref and os.path.isfile(ref.split("::", 1)[0]):
                found.append(ref.split("::", 1)[0])
    return sorted(set(found))
