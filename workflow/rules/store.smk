# The run's result store: every stage's part merged, with points and provenance.


rule store:
    input:
        sheet=lambda w: config["runs"][w.run]["sheet"],
        parts=parts,
    output:
        f"{RESULTS}/{{run}}.h5",
    params:
        cfg=run_json,
    log:
        f"{RESULTS}/{{run}}/logs/store.log",
    shell:
        "dacpipe --log {log:q} assemble --run {wildcards.run:q} --parts {input.parts:q} --out {output:q} --config-json {params.cfg:q}"
