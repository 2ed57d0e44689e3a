# Campaigns: the runs of one study side by side (config `campaigns:`). One job
# per campaign after its runs' stores writes results/campaigns/<name>.h5, and
# one job per figure draws from it and the stores it names. A job's
# parameters are the campaign's own settings and its runs' sheets only:
# editing one run reruns that run and its campaigns, nothing else.
from dacpipe.run.campaign_figures import CAMPAIGN_FIGURES

CAMPAIGNS = list(config.get("campaigns", {}))


wildcard_constraints:
    campaign="|".join(map(re.escape, CAMPAIGNS)) or "(?!)",


def campaign_stores(wildcards):
    return [f"{RESULTS}/{run}.h5" for run in config["campaigns"][wildcards.campaign]["runs"]]


def campaign_json(wildcards):
    """The campaign's settings, with its runs' sheets (what the config check needs) and nothing else of them."""
    spec = config["campaigns"][wildcards.campaign]
    runs = {run: {"sheet": config["runs"][run]["sheet"]} for run in spec["runs"]}
    return json.dumps({"results_dir": RESULTS, "runs": runs, "campaigns": {wildcards.campaign: spec}},
                      sort_keys=True)


def campaign_files():
    """Every campaign's file and figures (PNG and PDF), for rule all."""
    return [f"{RESULTS}/campaigns/{name}.h5" for name in CAMPAIGNS] + [
        f"{RESULTS}/campaigns/{name}/figures/{figure}.{ext}"
        for name in CAMPAIGNS for figure in CAMPAIGN_FIGURES for ext in ("png", "pdf")]


rule campaign:
    input:
        campaign_stores,
    output:
        f"{RESULTS}/campaigns/{{campaign}}.h5",
    params:
        cfg=campaign_json,
    log:
        f"{RESULTS}/campaigns/logs/{{campaign}}.log",
    shell:
        "dacpipe --log {log:q} campaign {wildcards.campaign:q} --stores {input:q} --out {output:q}"
        " --config-json {params.cfg:q}"


for _figure in CAMPAIGN_FIGURES:

    rule:
        name:
            f"figure_{_figure}"
        input:
            campaign=f"{RESULTS}/campaigns/{{campaign}}.h5",
            stores=campaign_stores,
        output:
            png=report(f"{RESULTS}/campaigns/{{campaign}}/figures/{_figure}.png", caption=f"../report/{_figure}.rst",
                       category="campaign {campaign}"),
            pdf=f"{RESULTS}/campaigns/{{campaign}}/figures/{_figure}.pdf",
        params:
            name=_figure,
        log:
            f"{RESULTS}/campaigns/logs/{{campaign}}/figure_{_figure}.log",
        shell:
            "dacpipe --log {log:q} campaign {wildcards.campaign:q} --figure {params.name:q}"
            " --campaign-file {input.campaign:q} --out {output.png:q}"
