# Pressure stage: the gauge spectra of a run fitted and converted, one job per
# chunk of points (run.chunk_points), never one per spectrum; or, with an XRD
# marker as the gauge, the marker's lattice in every integrated pattern.


rule pressure:
    input:
        sheet=lambda w: config["runs"][w.run]["sheet"],
        # the gauge spectra, also of the rubies at other places (ruby_2 ... ruby_9)
        spectra=lambda w: sheet_files(w, ["ruby_before", "ruby", "ruby_after", *(f"ruby_{k}" for k in range(2, 10))],
                                      chunk_of(w, "pressure")),
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
