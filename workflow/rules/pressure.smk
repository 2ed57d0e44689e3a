# Pressure stage: the gauge spectra of a run fitted and converted, one job per
# chunk of points (run.chunk_points), never one per spectrum; or, with an XRD
# marker as the gauge, the marker's lattice in every integrated pattern.


rule pressure:
    input:
        sheet=lambda w: config["runs"][w.run]["sheet"],
        spectra=lambda w: sheet_files(w, ["ruby_before", "ruby", "ruby_after"], chunk_of(w, "pressure")),
        parts=needed_parts("pressure"),
    output:
        f"{RESULTS}/{{run}}/parts/pressure/chunk{{chunk}}.h5",
    params:
        cfg=lambda w: stage_json(w, "pressure"),
        chunk=lambda w: int(w.chunk),
    log:
        f"{RESULTS}/{{run}}/logs/pressure/chunk{{chunk}}.log",
    shell:
        "dacpipe --log {log:q} stage pressure --run {wildcards.run:q} --chunk {params.chunk:q} --out {output:q}"
        " --config-json {params.cfg:q}"
