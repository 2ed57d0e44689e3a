# Integration: the XRD (or SAXS) frames of a run to 1D patterns, one job per
# chunk of frames (run.chunk_points), never one per frame; each job builds
# pyFAI's integrator once and reuses it for every frame of its chunk.


rule integrate:
    input:
        sheet=lambda w: config["runs"][w.run]["sheet"],
        calibration=integration_files,
        # the frames, and the patterns integrated elsewhere that replace them (sheet column pattern)
        frames=lambda w: sheet_files(w, [w.kind] + (["pattern"] if w.kind == "xrd" else []), chunk_of(w, w.kind)),
    output:
        f"{RESULTS}/{{run}}/parts/{{kind}}/chunk{{chunk}}.h5",
    wildcard_constraints:
        kind="xrd|saxs",
    params:
        cfg=lambda w: stage_json(w, w.kind),
        chunk=lambda w: int(w.chunk),
    threads: integration_threads
    log:
        f"{RESULTS}/{{run}}/logs/{{kind}}/chunk{{chunk}}.log",
    shell:
        "OMP_NUM_THREADS={threads} dacpipe --log {log:q} stage {wildcards.kind:q} --run {wildcards.run:q}"
        " --chunk {params.chunk:q} --out {output:q} --config-json {params.cfg:q}"
