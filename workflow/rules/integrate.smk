# Integration: the XRD (or SAXS) frames of a run to 1D patterns, one job per
# chunk of frames (run.chunk_points), never one per frame; each job builds
# pyFAI's integrator once and reuses it for every frame of its chunk.


# Integration first among the jobs ready at once (the gauge fits, the merges of
# chunks): the longest jobs of a run; a merge that took a core between two
# integration chunks made the second start, and the identification wait, 1 s later.
# The gauge fits come next (rules/pressure.smk), then the merges.
rule integrate:
    priority: 2
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
