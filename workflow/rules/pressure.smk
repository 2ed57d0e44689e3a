# Pressure stage: every gauge spectrum of a run, fitted and converted, in one
# job; or, with an XRD marker as the gauge, the marker's lattice in every
# integrated pattern.


rule pressure:
    input:
        sheet=lambda w: config["runs"][w.run]["sheet"],
        spectra=lambda w: sheet_files(w, ["ruby_before", "ruby", "ruby_after"]),
        parts=needed_parts("pressure"),
    output:
        f"{RESULTS}/{{run}}/parts/pressure.h5",
    params:
        cfg=lambda w: stage_json(w, "pressure"),
    log:
        f"{RESULTS}/{{run}}/logs/pressure.log",
    shell:
        "dacpipe --log {log} stage pressure --run {wildcards.run} --out {output} --config-json {params.cfg:q}"
