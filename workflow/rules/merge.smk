# The chunks of a per-point stage joined into the run's part, in point order:
# what the later stages and the store read.


rule merge:
    input:
        lambda w: chunk_parts(w.run, w.stage),
    output:
        f"{RESULTS}/{{run}}/parts/{{stage}}.h5",
    wildcard_constraints:
        stage="pressure|xrd|saxs",
    log:
        f"{RESULTS}/{{run}}/logs/{{stage}}.log",
    shell:
        "dacpipe --log {log:q} merge --run {wildcards.run:q} --parts {input:q} --out {output:q}"
