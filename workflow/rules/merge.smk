# The chunks of a per-point stage joined into the run's part, in point order:
# what the later stages and the store read. A stage with a whole-series step
# (the pressure stage's R1 widths against the run's low-pressure one:
# dacpipe.run.stages.FINISH) has it run here, on the joined series.


rule merge:
    input:
        chunks=lambda w: chunk_parts(w.run, w.stage),
        sheet=lambda w: config["runs"][w.run]["sheet"],
    output:
        f"{RESULTS}/{{run}}/parts/{{stage}}.h5",
    wildcard_constraints:
        stage="pressure|xrd|saxs",
    params:
        cfg=lambda w: stage_json(w, w.stage),
    log:
        f"{RESULTS}/{{run}}/logs/{{stage}}.log",
    shell:
        "dacpipe --log {log:q} merge --run {wildcards.run:q} --stage {wildcards.stage:q} --parts {input.chunks:q}"
        " --out {output:q} --config-json {params.cfg:q}"
