# dacpipe workflow: from a run's sample sheet to results/<run>.h5.
# The science is in the dacpipe package; each rule is a thin shell call of
# its CLI, one job per run and stage (or chunk of points): a shell job costs
# ~16 ms against ~1.35 s for a run: job, and a change to the package's code
# does not rerun every job as an edited script: file would (README, "The
# workflow").
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/pressure.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/integrate.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/superlattice.smk"
include: "workflow/rules/optical.smk"
include: "workflow/rules/store.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/campaign.smk"


# Defined here, after the includes: Snakemake resets the default target at
# every include, so a target rule inside an included file would not be it.
rule all:
    default_target: True
    input:
        expand(f"{RESULTS}/{{run}}.h5", run=RUNS),
        [path for run_id in RUNS for path in figure_files(run_id)],
        CAMPAIGN_FILES,
