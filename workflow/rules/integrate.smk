# Integration: every XRD (or SAXS) frame of a run to a 1D pattern, in one job
# that builds pyFAI's integrator once and reuses it for every frame.


rule integrate:
    input:
        sheet=lambda w: config["runs"][w.run]["sheet"],
        calibration=integration_files,
        frames=lambda w: sheet_files(w, [w.kind]),
    output:
        f"{RESULTS}/{{run}}/parts/{{kind}}.h5",
    wildcard_constraints:
        kind="xrd|saxs",
    params:
        cfg=lambda w: stage_json(w, w.kind),
    threads: 2
    log:
        f"{RESULTS}/{{run}}/logs/{{kind}}.log",
    shell:
        "OMP_NUM_THREADS={threads} dacpipe --log {log} stage {wildcards.kind} --run {wildcards.run} --out {output} --config-json {params.cfg:q}"
