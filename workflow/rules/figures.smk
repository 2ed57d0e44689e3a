# Figures: one job per run draws all its figures, each from the run's result
# store alone (never from parts or other intermediate files), as PNG and PDF:
# a job per figure paid the CLI's start-up and matplotlib's import (~1 s) for
# a figure drawn in ~0.3 s; its figures are drawn as many at a time as it has
# threads. The PNGs go into `snakemake --report`, with the
# captions in workflow/report/. Their size and lettering follow
# `figures.width` (a journal column, or screen): a parameter of each job, so
# that changing it redraws the figures and nothing else.

# A rule per run, as each run has its own figures (its outputs): named after the run.
for _run_id in RUNS:
    _names = figures_for(_run(_run_id))
    if not _names:
        continue

    rule:
        name:
            run_rule_name("figures", _run_id)
        input:
            f"{RESULTS}/{_run_id}.h5",
        output:
            [report(f"{RESULTS}/{_run_id}/figures/{name}.png", caption=f"../report/{name}.rst", category=_run_id)
             for name in _names],
            [f"{RESULTS}/{_run_id}/figures/{name}.pdf" for name in _names],
        params:
            names=_names,
            folder=lambda w, output: os.path.dirname(output[0]),
            width=FIGURE_WIDTH,
        threads: figure_threads(len(_names))
        log:
            f"{RESULTS}/{_run_id}/logs/figures.log",
        shell:
            "dacpipe --log {log:q} figure {params.names:q} --store {input:q} --out-dir {params.folder:q}"
            " --jobs {threads} {params.width}"
