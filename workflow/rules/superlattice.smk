# SAXS superlattice analysis: peaks, spacing, coherence length and order of
# every integrated SAXS pattern of a run, in one job.


rule superlattice:
    input:
        sheet=lambda w: config["runs"][w.run]["sheet"],
        parts=needed_parts("superlattice"),
    output:
        f"{RESULTS}/{{run}}/parts/superlattice.h5",
    params:
        cfg=lambda w: stage_json(w, "superlattice"),
    log:
        f"{RESULTS}/{{run}}/logs/superlattice.log",
    shell:
        "dacpipe --log {log:q} stage superlattice --run {wildcards.run:q} --out {output:q} --config-json {params.cfg:q}"
