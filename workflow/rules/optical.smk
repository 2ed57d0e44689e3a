# Band gap and photoluminescence: every optical spectrum of a run, and the
# E(P) fits per structural phase, in one job.


rule optical:
    input:
        sheet=lambda w: config["runs"][w.run]["sheet"],
        spectra=lambda w: sheet_files(w, ["absorption", "pl"]),
        reference=lambda w: [r for r in [config["runs"][w.run]["optical"]["absorption"]["reference"]] if r],
        parts=needed_parts("optical"),
    output:
        f"{RESULTS}/{{run}}/parts/optical.h5",
    params:
        cfg=lambda w: stage_json(w, "optical"),
    log:
        f"{RESULTS}/{{run}}/logs/optical.log",
    shell:
        "dacpipe --log {log:q} stage optical --run {wildcards.run:q} --out {output:q} --config-json {params.cfg:q}"
