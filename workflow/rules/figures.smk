# Figures: one rule per figure, each drawn from the run's result store alone
# (never from parts or other intermediate files), as PNG and PDF. The PNGs go
# into `snakemake --report`, with the captions in workflow/report/. Their size
# and lettering follow `figures.width` (a journal column, or screen): a
# parameter of each job, so that changing it redraws the figures and nothing else.
from dacpipe.run.figures import FIGURES, figures_for


def figure_files(run_id):
    """The figures (PNG and PDF) a run's config gives data for."""
    return [f"{RESULTS}/{run_id}/figures/{name}.{ext}" for name in figures_for(_run(run_id)) for ext in ("png", "pdf")]


for _figure in FIGURES:

    rule:
        name:
            f"figure_{_figure}"
        input:
            f"{RESULTS}/{{run}}.h5",
        output:
            png=report(f"{RESULTS}/{{run}}/figures/{_figure}.png", caption=f"../report/{_figure}.rst",
                       category="{run}"),
            pdf=f"{RESULTS}/{{run}}/figures/{_figure}.pdf",
        params:
            name=_figure,
            # screen is `dacpipe figure`'s default: its command line stays the plain one
            width="" if config["figures"]["width"] == "screen" else f"--width {config['figures']['width']}",
        log:
            f"{RESULTS}/{{run}}/logs/figure_{_figure}.log",
        shell:
            "dacpipe --log {log:q} figure {params.name:q} --store {input:q} --out {output.png:q} {params.width}"
