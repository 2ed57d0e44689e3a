# Indexing and equation of state: from a run's XRD patterns to phases,
# lattices, transitions, and one EOS fit per phase. The identification runs
# in chunks of run.chunk_points points, one job each (dacpipe.run.stages.
# LEAD_IN_POINTS), joined with the transitions; the EOS is a job of its own,
# so that changing only the EOS model reruns only the EOS job (and the store).


rule index:
    input:
        sheet=lambda w: config["runs"][w.run]["sheet"],
        parts=needed_parts("phases"),
        instrument=instrument_files,
    output:
        f"{RESULTS}/{{run}}/parts/phases/chunk{{chunk}}.h5",
    params:
        cfg=lambda w: stage_json(w, "phases"),
        chunk=lambda w: int(w.chunk),
    log:
        f"{RESULTS}/{{run}}/logs/phases/chunk{{chunk}}.log",
    shell:
        "dacpipe --log {log:q} stage phases --run {wildcards.run:q} --chunk {params.chunk:q} --out {output:q}"
        " --config-json {params.cfg:q}"


# The chunks joined in point order, and the transitions found on the whole
# series (they may span chunks).
rule join_phases:
    input:
        chunks=lambda w: chunk_parts(w.run, "phases"),
        parts=needed_parts("phases"),
    output:
        f"{RESULTS}/{{run}}/parts/phases.h5",
    params:
        cfg=lambda w: stage_json(w, "phases"),
    log:
        f"{RESULTS}/{{run}}/logs/phases.log",
    shell:
        "dacpipe --log {log:q} merge --run {wildcards.run:q} --stage phases --parts {input.chunks:q}"
        " --out {output:q} --config-json {params.cfg:q}"


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
        "dacpipe --log {log:q} stage eos --run {wildcards.run:q} --out {output:q} --config-json {params.cfg:q}"
