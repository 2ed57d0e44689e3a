# Campaigns: the runs of one study side by side (config `campaigns:`). One job
# per campaign after its runs' stores writes results/campaigns/<name>.h5, and
# one job draws its figures from it and the stores it names. A job's
# parameters are the campaign's own settings and its runs' sheets only
# (dacpipe.run.campaign.campaign_job_config): editing one run reruns that run
# and its campaigns, nothing else.
from dacpipe.run.campaign import campaign_job_config
from dacpipe.run.campaign_figures import CAMPAIGN_FIGURES

CAMPAIGNS = list(config.get("campaigns", {}))
# Every campaign's file and figures (PNG and PDF), for rule all.
CAMPAIGN_FILES = [f"{RESULTS}/campaigns/{name}.h5" for name in CAMPAIGNS] + [
    f"{RESULTS}/campaigns/{name}/figures/{figure}.{ext}"
    for name in CAMPAIGNS
    for figure in CAMPAIGN_FIGURES
    for ext in ("png", "pdf")
]
CAMPAIGN_STORES = lambda w: [f"{RESULTS}/{run}.h5" for run in config["campaigns"][w.campaign]["runs"]]


wildcard_constraints:
    campaign="|".join(map(re.escape, CAMPAIGNS)) or "(?!)",


rule campaign:
    input:
        CAMPAIGN_STORES,
    output:
        f"{RESULTS}/campaigns/{{campaign}}.h5",
    params:
        cfg=lambda w: json.dumps({**campaign_job_config(config, w.campaign), "results_dir": RESULTS}, sort_keys=True),
    log:
        f"{RESULTS}/campaigns/logs/{{campaign}}.log",
    shell:
        "dacpipe --log {log:q} campaign {wildcards.campaign:q} --stores {input:q} --out {output:q}"
        " --config-json {params.cfg:q}"


rule campaign_figures:
    input:
        campaign=f"{RESULTS}/campaigns/{{campaign}}.h5",
        stores=CAMPAIGN_STORES,
    output:
        [report(f"{RESULTS}/campaigns/{{campaign}}/figures/{name}.png", caption=f"../report/{name}.rst",
                category="campaign {campaign}") for name in CAMPAIGN_FIGURES],
        [f"{RESULTS}/campaigns/{{campaign}}/figures/{name}.pdf" for name in CAMPAIGN_FIGURES],
    params:
        names=list(CAMPAIGN_FIGURES),
        folder=lambda w, output: os.path.dirname(output[0]),
        width=FIGURE_WIDTH,
    log:
        f"{RESULTS}/campaigns/logs/{{campaign}}/figures.log",
    shell:
        "dacpipe --log {log:q} campaign {wildcards.campaign:q} --figure {params.names:q}"
        " --campaign-file {input.campaign:q} --out-dir {params.folder:q} {params.width}"
