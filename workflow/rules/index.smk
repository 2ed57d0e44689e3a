# Indexing and equation of state: from a run's XRD patterns to phases,
# lattices, transitions, and one EOS fit per phase. Two jobs per run, so that
# changing only the EOS model reruns only the EOS job (and the store).


rule index:
    input:
        sheet=lambda w: config["runs"][w.run]["sheet"],
        parts=needed_parts("phases"),
    output:
        f"{RESULTS}/{{run}}/parts/phases.h5",
    params:
        cfg=lambda w: stage_json(w, "phases"),
    log:
        f"{RESULTS}/{{run}}/logs/phases.log",
    shell:
        "dacpipe --log {log} stage phases --run {wildcards.run} --out {output} --config-json {params.cfg:q}"


rule eos:
    input:
        sheet=lambda w: config["runs"][w.run]["sheet"],
        parts=needed_parts("eos"),
    output:
        f"{RESULTS}/{{run}}/parts/eos.h5",
    params:
        cfg=lambda w: stage_json(w, "eos"),
    log:
        f"{RESULTS}/{{run}}/logs/eos.log",
    shell:
        "dacpipe --log {log} stage eos --run {wildcards.run} --out {output} --config-json {params.cfg:q}"
