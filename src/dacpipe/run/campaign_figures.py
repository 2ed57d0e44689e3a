"""The figures of a campaign, drawn from its file and the run stores it names.

Each figure reads ``<results>/campaigns/<name>.h5`` (:mod:`dacpipe.run.campaign`)
and, for per-point data, the stores it lists, after checking that each store
is still the one the campaign was written from (its SHA-256): a figure never
mixes a campaign's table with a store rewritten since.

:data:`CAMPAIGN_FIGURES` names them; the Snakemake report's captions are in
``workflow/report/campaign_<name>.rst``. Plotted series carry their source as
the artist's ``gid`` (``"<run>:<path in its store>"`` or
``"campaign:<table>/<column>"``), as the run figures do. Their size and
lettering follow the config's ``figures.width`` as the run figures' do
(:data:`dacpipe.run.figures.STYLES`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import InputError
from ..io.refs import file_record
from .campaign import Campaign, read_campaign
from .figures import STYLES, FigureStyle, errorbar, figure_style, pyplot, save_figure
from .store import open_result

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:grey")


def _new(plt, style: FigureStyle):
    """A 6 x 4 in figure on screen, or at the style's column width with the same aspect ratio."""
    return plt.subplots(figsize=style.size(6.0, 4.0), layout="constrained")


def _colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def _x_axis(ax, campaign: Campaign) -> Callable[[str], float]:
    """Where each run sits on the x axis: its value of ``by`` when numbers, else
    its position, labelled with the text values (direction, composition)."""
    numeric = all(isinstance(v, float) for v in campaign.values)
    if numeric:
        ax.set_xlabel(campaign.by)
        return lambda run: float(campaign.value_of(run))
    ax.set_xticks(range(len(campaign.values)), [str(v) for v in campaign.values])
    ax.set_xlabel(campaign.by)
    return lambda run: float(campaign.run_ids.index(run))


def _nothing(ax, text: str) -> None:
    """A figure with no data to show says why (the workflow draws every campaign figure)."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center")


def _label(campaign: Campaign, run: str) -> str:
    return f"{run} ({campaign.by} = {campaign.value_of(run):g})" if isinstance(campaign.value_of(run), float) \
        else f"{run} ({campaign.by} = {campaign.value_of(run)})"


def _entries(campaign: Campaign):
    """Open each run's store, checked against the checksum the campaign recorded."""
    for summary in campaign.runs:
        record = file_record(summary.store)
        if record.sha256 != summary.store_sha256:
            what = "is missing" if record.size < 0 else "changed since the campaign was written"
            raise InputError(f"the store of run {summary.run} ({summary.store}) {what}; "
                             f"write the campaign {campaign.name} again (dacpipe campaign {campaign.name})")
        yield summary, open_result(summary.store, summary.run)


def compared_phase(campaign: Campaign) -> str | None:
    """The phase whose compression the figure compares: the one with an EOS in
    the most runs (ties: the first met, in run order)."""
    table = campaign.table("phases")
    fitted = [p for p, k in zip(table["phase"], table["K0_GPa"]) if math.isfinite(k)]
    return max(dict.fromkeys(fitted), key=fitted.count) if fitted else None


def compression(campaign: Campaign, plt, style: FigureStyle = STYLES['screen']):
    """V/V0 of one phase (:func:`compared_phase`) from every run, with each run's EOS fit."""
    from ..eos.models import EosParams, pressure_GPa

    fig, ax = _new(plt, style)
    phase = compared_phase(campaign)
    if phase is None:  # a campaign of SAXS or optical runs: the figure says so, the workflow goes on
        _nothing(ax, "no equation of state in these runs")
        return fig
    for k, (summary, h5) in enumerate(_entries(campaign)):
        with h5:
            entry = h5[summary.run]
            eos = entry.get(f"eos/{phase}")
            if eos is None or "K0_GPa" not in eos:
                continue
            model = eos["model"].asstr()[()] if eos["model"].dtype.kind == "O" else eos["model"][()].decode()
            k0pp = float(eos["K0pp_per_GPa"][()]) if "K0pp_per_GPa" in eos else None
            params = EosParams(model, float(eos["V0_fu_A3"][()]), float(eos["K0_GPa"][()]), float(eos["Kp"][()]),
                               k0pp)
            v = entry[f"phases/{phase}/volume_fu_A3"][()] / params.V0_A3
            v_err = entry[f"phases/{phase}/volume_fu_err_A3"][()] / params.V0_A3
            p, p_err = entry["points/pressure_GPa"][()], entry["points/pressure_err_GPa"][()]
        container = errorbar(ax, p, v, xerr=p_err, yerr=v_err, marker="o", color=_colour(k), mfc="none",
                             label=_label(campaign, summary.run))
        container.lines[0].set_gid(f"{summary.run}:phases/{phase}/volume_fu_A3÷eos/{phase}/V0_fu_A3"
                                   f"|points/pressure_GPa")
        grid = np.linspace(np.nanmin(v) * 0.995, 1.0, 200) if np.isfinite(v).any() else np.linspace(0.9, 1, 50)
        (curve,) = ax.plot(pressure_GPa(params, grid * params.V0_A3), grid, color=_colour(k),
                           label=f"{model}: K0 = {params.K0_GPa:.1f} GPa, K' = {params.Kp:.2f}")
        curve.set_gid(f"{summary.run}:eos/{phase}")
    ax.set_title(f"{campaign.name}: {phase}")
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("V / V0")
    ax.legend(fontsize=style.small_pt)
    return fig


def transitions(campaign: Campaign, plt, style: FigureStyle = STYLES['screen']):
    """Onset (filled) and end (open) pressure of each transition against the
    campaign's ``by``, with their bracket uncertainties."""
    fig, ax = _new(plt, style)
    x_of = _x_axis(ax, campaign)
    table = campaign.table("transitions")
    kinds = list(dict.fromkeys(f"{a or '?'} → {b or '?'} ({d})" for a, b, d in
                               zip(table["from_phase"], table["to_phase"], table["direction"])))
    for k, kind in enumerate(kinds):
        rows = [i for i, (a, b, d) in enumerate(zip(table["from_phase"], table["to_phase"], table["direction"]))
                if f"{a or '?'} → {b or '?'} ({d})" == kind]
        rows.sort(key=lambda i: x_of(table["run"][i]))  # the line joins the runs in the order of ``by``
        x = np.array([x_of(table["run"][i]) for i in rows])
        for column, fill, word in (("onset", _colour(k), "onset"), ("end", "none", "end")):
            y = table[f"{column}_GPa"][rows]
            container = ax.errorbar(x, y, yerr=table[f"{column}_err_GPa"][rows], fmt="o-" if column == "onset" else "s--",
                                    color=_colour(k), mfc=fill, capsize=3, label=f"{kind}: {word}")
            container.lines[0].set_gid(f"campaign:transitions/{column}_GPa|{kind}")
    if not kinds:
        _nothing(ax, "no transition in these runs")
    ax.set_ylabel("transition pressure (GPa)")
    ax.legend(fontsize=style.small_pt)
    return fig


def dEg_dP(campaign: Campaign, plt, style: FigureStyle = STYLES['screen']):
    """Pressure coefficient of the band gap per phase against the campaign's ``by``."""
    fig, ax = _new(plt, style)
    x_of = _x_axis(ax, campaign)
    table = campaign.table("phases")
    for k, phase in enumerate(dict.fromkeys(table["phase"])):
        rows = [i for i, p in enumerate(table["phase"]) if p == phase and math.isfinite(table["dEg_dP_eV_per_GPa"][i])]
        if not rows:
            continue
        rows.sort(key=lambda i: x_of(table["run"][i]))
        x = np.array([x_of(table["run"][i]) for i in rows])
        y = 1000.0 * table["dEg_dP_eV_per_GPa"][rows]
        container = ax.errorbar(x, y, yerr=1000.0 * table["dEg_dP_err_eV_per_GPa"][rows], fmt="o-",
                                color=_colour(k), capsize=3, label=phase)
        container.lines[0].set_gid(f"campaign:phases/dEg_dP_eV_per_GPa|{phase}")
    if not np.isfinite(table["dEg_dP_eV_per_GPa"]).any():
        _nothing(ax, "no E(P) fit of the band gap in these runs")
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.set_ylabel("dEg/dP (meV/GPa)")
    ax.legend(fontsize=style.small_pt)
    return fig


def band_gap(campaign: Campaign, plt, style: FigureStyle = STYLES['screen']):
    """The band gap against pressure of every run, with its E(P) fits."""
    fig, ax = _new(plt, style)
    shown = 0
    for k, (summary, h5) in enumerate(_entries(campaign)):
        with h5:
            entry = h5[summary.run]
            if "optical/band_gap/band_gap_eV" not in entry:
                continue
            shown += 1
            base = entry["optical/band_gap"]
            p, gap, err = base["pressure_GPa"][()], base["band_gap_eV"][()], base["band_gap_err_eV"][()]
            fits = {}
            for phase, fit in (base["fit"].items() if "fit" in base else ()):
                beta = float(fit["beta_eV_per_GPa2"][()]) if "beta_eV_per_GPa2" in fit else 0.0
                fits[phase] = (float(fit["pressure_min_GPa"][()]), float(fit["pressure_max_GPa"][()]),
                               float(fit["E0_eV"][()]), float(fit["alpha_eV_per_GPa"][()]),
                               beta if math.isfinite(beta) else 0.0)
        container = errorbar(ax, p, gap, yerr=err, marker="o", color=_colour(k), mfc="none",
                             label=_label(campaign, summary.run))
        container.lines[0].set_gid(f"{summary.run}:optical/band_gap/band_gap_eV|optical/band_gap/pressure_GPa")
        for phase, (lo, hi, e0, alpha, beta) in fits.items():
            grid = np.linspace(lo, hi, 50)
            (line,) = ax.plot(grid, e0 + alpha * grid + beta * grid**2, color=_colour(k))
            line.set_gid(f"{summary.run}:optical/band_gap/fit/{phase}")
    if not shown:
        _nothing(ax, "no band gap in these runs")
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("band gap (eV)")
    ax.legend(fontsize=style.small_pt)
    return fig


CAMPAIGN_FIGURES: dict[str, Callable] = {
    "campaign_compression": compression,
    "campaign_transitions": transitions,
    "campaign_dEg_dP": dEg_dP,
    "campaign_band_gap": band_gap,
}


def draw_campaign_figure(name: str, campaign_file: str | Path, out_png: str | Path, width: str = "screen"
                         ) -> list[Path]:
    """Draw campaign figure ``name`` into ``out_png`` and the PDF beside it.

    A figure the campaign's runs have no data for says so on its axes.

    Parameters
    ----------
    width : str
        A :data:`dacpipe.run.figures.STYLES` name (config ``figures.width``).

    Raises
    ------
    InputError
        A store the campaign names changed since it was written, or is missing.
    """
    style = figure_style(width)
    plt = pyplot()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(style.rc()):
        fig = CAMPAIGN_FIGURES[name](read_campaign(campaign_file), plt, style)
        return save_figure(fig, out_png, style, plt)


def draw_campaign_figures(campaign_file: str | Path, folder: str | Path, width: str = "screen") -> list[Path]:
    """Every campaign figure into ``folder`` (``<name>.png`` and ``.pdf``)."""
    return [path for name in CAMPAIGN_FIGURES
            for path in draw_campaign_figure(name, campaign_file, Path(folder) / f"{name}.png", width)]
