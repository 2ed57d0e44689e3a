# Calibration: a run whose xrd section names calibrant_image instead of a
# PONI file refines its detector geometry on that image first (dacpipe
# calibrate, one job per run); its integration jobs read the PONI it writes.


rule calibrate:
    input:
        image=lambda w: file_part(_run(w.run)["xrd"]["calibrant_image"]),
        mask=lambda w: [file_part(m) for m in [_run(w.run)["xrd"]["mask"]] if m and os.path.isfile(file_part(m))],
    output:
        f"{RESULTS}/{{run}}/calibration.poni",
    params:
        cfg=lambda w: stage_json(w, "xrd"),
    log:
        f"{RESULTS}/{{run}}/logs/calibrate.log",
    shell:
        "dacpipe --log {log:q} calibrate --run {wildcards.run:q} --config-json {params.cfg:q} -o {output:q}"
