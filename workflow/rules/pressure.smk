# Pressure stage: the gauge spectra of a run fitted and converted, one job per
# chunk of points (run.chunk_points), never one per spectrum; or, with an XRD
# marker as the gauge, the marker's lattice in every integrated pattern.


# Before the merges among the jobs ready at once (after integration,
# rules/integrate.smk): the identification waits for the last gauge-fit chunk
# and its merge; the merge of the integration chunks it also waits for takes
# a core freed by the first gauge-fit chunk instead (0.4 s sooner at 1,000 frames).
rule pressure:
    priority: 1
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
