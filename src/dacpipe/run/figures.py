"""The figures of a run, drawn from its result store alone.

Every figure reads ``results/<run>.h5`` and nothing else, so that a paper's
figures can be regenerated from the store that holds the numbers. Each
plotted series carries the store paths of its data as the artist's ``gid``
(``"<y path>|<x path>"``, relative to the run's entry; ``path[i]`` is row i,
``×factor`` a factor and ``+offset`` an offset applied for display, in that
order, ``a÷b`` a ratio), so that tests, and anyone auditing a figure, can
check that what is drawn is what is stored. Series computed from stored
numbers (a scale curve, residuals, peak markers) carry a gid without ``|``.

:data:`FIGURES` names them (the Snakemake report's captions are in
``workflow/report/<name>.rst``); :func:`figures_for` says which apply to a
run's config. :data:`STYLES` sizes them: on screen, or at a journal's
column width (config ``figures.width``).
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.errors import DacpipeError, InputError
from .store import StoreError, open_result, os_reason

# A figure shows at most this many points, spread evenly over the run: a
# waterfall or gallery of a thousand points would be a poster nobody reads
# (and minutes of rendering).
MAX_PANELS = 30
# Beyond this many points a series' error bars lose their caps and are rasterized in PDFs (errorbar).
DENSE_POINTS = 200

PHASE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")


@dataclass(frozen=True)
class FigureStyle:
    """How big a figure is drawn, and its lettering (config ``figures.width``).

    Attributes
    ----------
    name : str
        ``screen``, ``single-column`` or ``double-column``.
    width_in : float or None
        Width of the saved figure (inches), exactly: the file is saved
        without cropping, so that it goes into a journal's column at 100 %.
        None (screen): each figure's own width, cropped to its content.
    font_pt, small_pt, tiny_pt : float
        Axis labels and tick labels; legends and annotations; dense
        annotations (tick labels of galleries, transition names).
    dpi : int
        Resolution of the PNG (the PDF is vector).
    gallery_columns : int
        Panels per row of a gallery (the ruby fits).
    marker_pt : float
        Size of the data points' markers.
    """

    name: str
    width_in: float | None
    font_pt: float
    small_pt: float
    tiny_pt: float
    dpi: int
    gallery_columns: int
    marker_pt: float = 6.0

    def size(self, width_in: float, height_in: float) -> tuple[float, float]:
        """A figure drawn at ``width_in`` x ``height_in`` on screen, at this
        style's width with the same aspect ratio."""
        if self.width_in is None:
            return width_in, height_in
        return self.width_in, height_in * self.width_in / width_in

    def rc(self) -> dict:
        """Matplotlib settings for what a figure does not size itself (axis and tick labels)."""
        return {"font.size": self.font_pt, "axes.labelsize": self.font_pt, "axes.titlesize": self.font_pt,
                "xtick.labelsize": self.font_pt, "ytick.labelsize": self.font_pt,
                "legend.fontsize": self.small_pt, "lines.markersize": self.marker_pt, "figure.dpi": 100}


# Column widths of the journals the field publishes in: single column 3.35 in
# (8.5 cm; ACS 3.25 in / 8.25 cm, APS 8.6 cm), double column 7.0 in (17.8 cm,
# ACS and APS): ACS, "Preparing graphics for ACS journals" (author guidelines);
# APS, Physical Review "Information for authors: figures". Lettering at the
# printed size: 8 pt labels, no text below 6 pt (ACS asks 4.5 pt at least;
# Elsevier 7 pt, 6 pt for sub- and superscripts). Line art at 600 dpi (ACS).
STYLES: dict[str, FigureStyle] = {s.name: s for s in (
    FigureStyle("screen", None, 10.0, 7.0, 6.0, 150, 5, 6.0),
    FigureStyle("single-column", 3.35, 8.0, 7.0, 6.0, 600, 3, 3.5),
    FigureStyle("double-column", 7.0, 9.0, 8.0, 7.0, 600, 5, 4.5),
)}


def _new(plt, style: FigureStyle, width_in: float, height_in: float, **subplots):
    """``plt.subplots`` at the style's size, laid out to fit inside it (constrained layout)."""
    return plt.subplots(figsize=style.size(width_in, height_in), layout="constrained", **subplots)


def _pressure_colours(plt, pressure_GPa):
    """A colour map over the run's pressures: (colour of a pressure, mappable for the colour bar).
    A point without a pressure is grey."""
    import matplotlib as mpl

    finite = np.asarray(pressure_GPa, dtype=float)[np.isfinite(pressure_GPa)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    norm = mpl.colors.Normalize(lo, hi if hi > lo else lo + 1.0)
    cmap = plt.get_cmap("viridis")

    def colour(p):
        return cmap(norm(p)) if math.isfinite(p) else "grey"

    return colour, mpl.cm.ScalarMappable(norm=norm, cmap=cmap)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")  # files only: a cluster node has no display
    import matplotlib.pyplot as plt

    return plt


def _tag(artist, y_path: str, x_path: str) -> None:
    artist.set_gid(f"{y_path}|{x_path}")


def errorbar(ax, x, y, xerr=None, yerr=None, **style):
    """``ax.errorbar`` of a series, points only, capped error bars while they can be
    told apart. Beyond :data:`DENSE_POINTS` points (a beamline run of hundreds of
    frames) the bars lose their caps, which would merge into a band, and the
    series is rasterized in vector files: a PDF otherwise holds every marker and
    cap as a path (1,000 points: 3 s to write a lattice figure, most of the
    workflow's figures job). A dense series' bars are built by :func:`_dense_bars`."""
    from matplotlib.container import ErrorbarContainer

    style.setdefault("linestyle", "none")
    if np.size(x) <= DENSE_POINTS:
        return ax.errorbar(x, y, xerr=xerr, yerr=yerr, capsize=2, **style)
    label = style.pop("label", None)
    container = ax.errorbar(x, y, **style)      # the points alone
    data = container.lines[0]
    data.set_rasterized(True)
    bars = tuple(_dense_bars(ax, x, y, err, along_x, data, style)
                 for err, along_x in ((xerr, True), (yerr, False)) if err is not None)
    ax.containers.remove(container)
    container = ErrorbarContainer((data, (), bars), has_xerr=xerr is not None, has_yerr=yerr is not None,
                                  label=label)
    ax.add_container(container)
    return container


def _dense_bars(ax, x, y, err, along_x: bool, data, style: dict):
    """The error bars of a dense series as one LineCollection of plain segments,
    as ``ax.errorbar`` draws them (the points' colour, ``lines.linewidth``,
    z-order 2, under the points' 2.1), rasterized: the same segments, colour,
    width and axis limits. ``ax.errorbar`` builds its bars from masked arrays,
    one masked row per point: 25 ms per 1,000-point series with x and y
    errors against 9 ms (a lattice figure has 14). Bars with a non-finite end
    are left out, as ``ax.errorbar`` leaves them undrawn."""
    import matplotlib as mpl
    from matplotlib.collections import LineCollection

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    err = np.broadcast_to(np.asarray(err, dtype=float), (2, len(x)) if np.ndim(err) == 2 else (len(x),))
    low, high = (err[0], err[1]) if err.ndim == 2 else (err, err)
    centre, across = (x, y) if along_x else (y, x)
    ends = np.stack([centre - low, centre + high], axis=1)           # (points, 2)
    pairs = np.stack([ends, np.stack([across, across], axis=1)], axis=2)
    segments = pairs if along_x else pairs[:, :, ::-1]               # (points, 2 ends, x y)
    segments = segments[np.isfinite(segments).all(axis=(1, 2))]
    bars = LineCollection(segments, colors=[data.get_color()], rasterized=True,
                          linewidths=style.get("elinewidth", mpl.rcParams["lines.linewidth"]),
                          zorder=style.get("zorder", 2), alpha=style.get("alpha"))
    ax.add_collection(bars, autolim=True)
    return bars


def _errorbar(ax, entry, x_path, y_path, xerr_path=None, yerr_path=None, **style):
    """An errorbar series straight from the store, tagged with its paths."""
    x, y = entry[x_path][()], entry[y_path][()]
    xerr = entry[xerr_path][()] if xerr_path and xerr_path in entry else None
    yerr = entry[yerr_path][()] if yerr_path and yerr_path in entry else None
    container = errorbar(ax, x, y, xerr=xerr, yerr=yerr, **style)
    _tag(container.lines[0], y_path, x_path)
    return container


def _phases(entry) -> list[str]:
    """The run's phases in the order of its config (the order the series goes through them)."""
    group = entry.get("phases")
    if group is None:
        return []
    listed = [str(name) for name in group.attrs.get("phases", [])]
    return [name for name in listed if name in group] or [n for n in group if n != "peaks"]


def _spread(n: int, most: int = MAX_PANELS) -> list[int]:
    """Up to ``most`` point indices spread evenly over ``n``, first and last included."""
    return sorted(set(np.linspace(0, n - 1, min(n, most)).round().astype(int).tolist())) if n else []


def _colour(i: int) -> str:
    return PHASE_COLOURS[i % len(PHASE_COLOURS)]


def waterfall(entry, plt, style: FigureStyle | None = None):
    """XRD patterns stacked by pressure (up to :data:`MAX_PANELS` of them), with
    tick marks of the phases found at each point."""
    style = style or STYLES["screen"]
    from ..xrd.lines import predicted_lines
    from ..xrd.library import get_phase

    q, intensity = entry["xrd/q"][()], entry["xrd/I"][()]
    pressure = entry["points/pressure_GPa"][()]
    peak = np.nanmax(intensity, axis=1)
    step = 0.6 * float(np.nanmedian(peak)) if np.isfinite(peak).any() else 1.0
    wavelength = float(entry["xrd"].attrs["wavelength_A"])
    shown = _spread(len(pressure))
    fig, ax = _new(plt, style, 6.5, 1.5 + 0.45 * len(shown))
    phases = _phases(entry)
    # A phase read from a file goes by its file name in the store; its lines come from the file.
    group = entry.get("phases")
    sources = dict(zip((str(n) for n in group.attrs.get("phases", [])),
                       (str(s) for s in group.attrs.get("phase_sources", [])))) if group is not None else {}
    for row, i in enumerate(shown):
        offset = row * step
        (line,) = ax.plot(q, intensity[i] + offset, color="black", linewidth=0.7)
        line.set_gid(f"xrd/I[{i}]+{offset!r}|xrd/q")
        label = f"{pressure[i]:.2f} GPa" if math.isfinite(pressure[i]) else "P unknown"
        ax.text(q[0], offset + 0.12 * step, label, fontsize=style.small_pt, ha="left")
        for k, name in enumerate(phases):
            group = entry[f"phases/{name}"]
            if not group["present"][i]:
                continue
            phase = get_phase(sources.get(name, name))
            a = group["a_A"][i]
            b = group["b_A"][i] if "b_A" in group else a
            c = group["c_A"][i] if "c_A" in group else (a if phase.system == "cubic" else phase.cell[2])
            lines = predicted_lines(phase, (a, b, c, *phase.cell[3:]), wavelength, float(np.nanmax(q)), 2.0)
            ticks = [l.q_A for l in lines]
            ax.plot(ticks, np.full(len(ticks), offset - 0.08 * step - 0.06 * step * k), "|", color=_colour(k),
                    markersize=5)
    for k, name in enumerate(phases):
        ax.plot([], [], "|", color=_colour(k), label=name)
    if phases:
        ax.legend(fontsize=style.small_pt, loc="upper left")
    ax.set_xlabel("q (1/Å)")
    ax.set_ylabel("intensity + offset")
    ax.set_yticks([])
    return fig


def fractions(entry, plt, style: FigureStyle | None = None):
    """Phase fractions against pressure, with each transition's range shaded."""
    style = style or STYLES["screen"]
    fig, ax = _new(plt, style, 6, 4)
    for k, name in enumerate(_phases(entry)):
        x, y = entry["points/pressure_GPa"][()], entry[f"phases/{name}/fraction"][()]
        (line,) = ax.plot(x, y, "o-", color=_colour(k), label=name)
        _tag(line, f"phases/{name}/fraction", "points/pressure_GPa")
    if "transitions" in entry:
        t = entry["transitions"]
        for a, b, onset, end in zip(t["from_phase"].asstr()[()], t["to_phase"].asstr()[()], t["onset_GPa"][()],
                                    t["end_GPa"][()]):
            ax.axvspan(onset, end, color="grey", alpha=0.15)
            ax.text(0.5 * (onset + end), 1.04, f"{a} → {b}", fontsize=style.tiny_pt, ha="center")
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("fraction of formula units")
    ax.set_ylim(-0.05, 1.12)
    ax.legend(fontsize=style.small_pt)
    return fig


def _eos_params(group):
    from ..eos.models import EosParams

    model = group["model"].asstr()[()] if group["model"].dtype.kind == "O" else group["model"][()].decode()
    k0pp = float(group["K0pp_per_GPa"][()]) if "K0pp_per_GPa" in group else None
    return EosParams(model, float(group["V0_fu_A3"][()]), float(group["K0_GPa"][()]),
                     float(group["Kp"][()]), k0pp)


def _excluded(entry, name: str) -> np.ndarray:
    """Per point, whether the EOS fit of ``name`` left it out (its ``excluded_points``)."""
    points = entry["points/point"].asstr()[()]
    path = f"eos/{name}/excluded_points"
    excluded = set(entry[path].asstr()[()]) if path in entry else set()
    return np.array([p in excluded for p in points], dtype=bool)


def compression(entry, plt, style: FigureStyle | None = None):
    """V/V0 against pressure per phase, with error bars and the fitted EOS."""
    style = style or STYLES["screen"]
    from ..eos.models import pressure_GPa

    fig, ax = _new(plt, style, 6, 4)
    for k, name in enumerate(_phases(entry)):
        if f"eos/{name}" not in entry:
            continue
        params = _eos_params(entry[f"eos/{name}"])
        v = entry[f"phases/{name}/volume_fu_A3"][()] / params.V0_A3
        v_err = entry[f"phases/{name}/volume_fu_err_A3"][()] / params.V0_A3
        p, p_err = entry["points/pressure_GPa"][()], entry["points/pressure_err_GPa"][()]
        container = errorbar(ax, p, v, xerr=p_err, yerr=v_err, marker="o", color=_colour(k), label=name)
        container.lines[0].set_gid(f"phases/{name}/volume_fu_A3÷eos/{name}/V0_fu_A3|points/pressure_GPa")
        # The points the robust fit left out (eos/<phase>/excluded_points), ringed: a reader
        # sees which volumes the curve does not answer for.
        out = _excluded(entry, name)
        if out.any():
            (ring,) = ax.plot(p[out], v[out], "o", markersize=11, markerfacecolor="none", markeredgecolor="k",
                              label=f"{name}: left out of the fit")
            ring.set_gid(f"eos/{name}/excluded_points")
        grid = np.linspace(np.nanmin(v) * 0.995, 1.0, 200)
        (curve,) = ax.plot(pressure_GPa(params, grid * params.V0_A3), grid, color=_colour(k),
                           label=f"{params.model}: K0 = {params.K0_GPa:.1f} GPa, K' = {params.Kp:.2f}")
        curve.set_gid(f"eos/{name}")
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("V / V0")
    ax.legend(fontsize=style.small_pt)
    return fig


def f_f(entry, plt, style: FigureStyle | None = None):
    """Normalised stress F against Eulerian strain f per phase, with its straight line."""
    style = style or STYLES["screen"]
    fig, ax = _new(plt, style, 6, 4)
    for k, name in enumerate(_phases(entry)):
        if f"eos/{name}/ff" not in entry:
            continue
        base = f"eos/{name}/ff"
        _errorbar(ax, entry, f"{base}/f", f"{base}/F_GPa", f"{base}/f_err", f"{base}/F_err_GPa", marker="o",
                  color=_colour(k), label=name)
        f = entry[f"{base}/f"][()]
        grid = np.linspace(0.0, float(np.nanmax(f)) * 1.05, 50)
        ax.plot(grid, float(entry[f"{base}/intercept_GPa"][()]) + float(entry[f"{base}/slope_GPa"][()]) * grid,
                color=_colour(k))
    ax.set_xlabel("Eulerian strain f")
    ax.set_ylabel("normalised stress F (GPa)")
    ax.legend(fontsize=style.small_pt)
    return fig


def eos_ellipse(entry, plt, style: FigureStyle | None = None):
    """K0-K' joint confidence ellipses (68.3 and 95.4 %) of each phase's EOS
    fit (``eos/<phase>/ellipse/``), with the fitted pair."""
    style = style or STYLES["screen"]
    fig, ax = _new(plt, style, 6, 4)
    for k, name in enumerate(_phases(entry)):
        base = f"eos/{name}/ellipse"
        if base not in entry:
            continue
        for level, dash in (("68", "-"), ("95", "--")):
            (line,) = ax.plot(entry[f"{base}/K0_{level}_GPa"][()], entry[f"{base}/Kp_{level}"][()], dash,
                              color=_colour(k), label=f"{name} {level} %")
            _tag(line, f"{base}/Kp_{level}", f"{base}/K0_{level}_GPa")
        (centre,) = ax.plot([float(entry[f"eos/{name}/K0_GPa"][()])], [float(entry[f"eos/{name}/Kp"][()])], "+",
                            color=_colour(k))
        _tag(centre, f"eos/{name}/Kp", f"eos/{name}/K0_GPa")
    ax.set_xlabel("K0 (GPa)")
    ax.set_ylabel("K'")
    ax.legend(fontsize=style.small_pt)
    return fig


def band_gap(entry, plt, style: FigureStyle | None = None):
    """Band gap (Tauc), first exciton (where found) and PL energy against
    pressure, per phase, with the E(P) fits (the exciton's dashed) and each
    phase's dE/dP and deformation potential dEg/dlnV at its mean pressure in
    the legend; below, where fitted, the Urbach energy."""
    style = style or STYLES["screen"]
    urbach = "optical/urbach/urbach_energy_eV"
    if urbach in entry and np.isfinite(entry[urbach][()]).any():
        fig, (ax, below) = _new(plt, style, 6, 5.5, nrows=2, sharex=True, height_ratios=[3, 1.3])
        container = errorbar(below, entry["optical/urbach/pressure_GPa"][()], 1000.0 * entry[urbach][()],
                             yerr=1000.0 * entry["optical/urbach/urbach_energy_err_eV"][()],
                             marker="D", mfc="none", color="tab:green")
        container.lines[0].set_gid(f"{urbach}×1000|optical/urbach/pressure_GPa")
        below.set_ylabel("Urbach (meV)")
        below.set_xlabel("pressure (GPa)")
    else:
        fig, ax = _new(plt, style, 6, 4)
        ax.set_xlabel("pressure (GPa)")
    for kind, marker in (("band_gap", "o"), ("exciton", "^"), ("pl_peak", "s")):
        base = f"optical/{kind}"
        if base not in entry:
            continue
        value = "band_gap_eV" if kind == "band_gap" else "energy_eV"
        error = "band_gap_err_eV" if kind == "band_gap" else "energy_err_eV"
        if kind != "band_gap" and not np.isfinite(entry[f"{base}/{value}"][()]).any():
            continue  # no resolved exciton, no PL at any point (their reasons are in the points' status)
        _errorbar(ax, entry, f"{base}/pressure_GPa", f"{base}/{value}", None, f"{base}/{error}", marker=marker,
                  color={"band_gap": "black", "exciton": "tab:blue"}.get(kind, "grey"), mfc="none",
                  label={"band_gap": "band gap (Tauc)", "exciton": "first exciton"}.get(kind, kind.replace("_", " ")))
        fits = entry.get(f"{base}/fit")
        for k, phase in enumerate(fits or ()):
            fit = fits[phase]
            lo, hi = float(fit["pressure_min_GPa"][()]), float(fit["pressure_max_GPa"][()])
            grid = np.linspace(lo, hi, 50)
            beta = float(fit["beta_eV_per_GPa2"][()]) if "beta_eV_per_GPa2" in fit else 0.0
            beta = beta if math.isfinite(beta) else 0.0
            curve = float(fit["E0_eV"][()]) + float(fit["alpha_eV_per_GPa"][()]) * grid + beta * grid**2
            label = (f"{phase}{' exciton' if kind == 'exciton' else ''}: "
                     f"{1000 * float(fit['alpha_eV_per_GPa'][()]):+.0f} meV/GPa")
            potential = f"{base}/deformation/{phase}/dEg_dlnV_eV"
            if potential in entry and math.isfinite(float(entry[potential][()])):
                label += f", dEg/dlnV {float(entry[potential][()]):+.2f} eV"
            (line,) = ax.plot(grid, curve, color=_colour(k), linestyle="--" if kind == "exciton" else "-",
                              label=label)
            line.set_gid(f"{base}/fit/{phase}")
    ax.set_ylabel("energy (eV)")
    ax.legend(fontsize=style.small_pt)
    return fig


# Legend names and units of the E(T) parameters (dacpipe.optical.temperature_fit.MODELS), shown x factor.
_TEMPERATURE_PARAMETERS = {
    "varshni": ("Varshni", (("E0_eV", "E0", 1.0, "eV", 4), ("alpha_eV_per_K", "α", 1000.0, "meV/K", 3),
                            ("beta_K", "β", 1.0, "K", 0))),
    "bose_einstein": ("Bose-Einstein", (("E0_eV", "E0", 1.0, "eV", 4), ("aB_eV", "a_B", 1000.0, "meV", 1),
                                        ("theta_K", "Θ", 1.0, "K", 0))),
}


def band_gap_temperature(entry, plt, style: FigureStyle | None = None):
    """Band gap (Tauc), first exciton (where found) and PL peak energy against
    the points' temperature, with each phase's Varshni (solid) and
    Bose-Einstein (dashed) E(T) fits and their parameters (value ± standard
    error) in the legend; below, each point's pressure, to show how near one
    pressure the series stayed."""
    from ..optical.temperature_fit import MODELS

    style = style or STYLES["screen"]
    fig, (ax, below) = _new(plt, style, 6.5, 7.0, nrows=2, sharex=True, height_ratios=[3, 1.1])
    temperature = "points/temperature_K"
    for kind, marker, colour, label in (("band_gap", "o", "black", "band gap (Tauc)"),
                                        ("exciton", "^", "tab:blue", "first exciton"),
                                        ("pl_peak", "s", "grey", "PL peak")):
        base = f"optical/{kind}"
        value, error = ("band_gap_eV", "band_gap_err_eV") if kind == "band_gap" else ("energy_eV", "energy_err_eV")
        if f"{base}/{value}" not in entry or not np.isfinite(entry[f"{base}/{value}"][()]).any():
            continue  # not measured, or nothing found (the reasons are in the points' status)
        _errorbar(ax, entry, temperature, f"{base}/{value}", None, f"{base}/{error}", marker=marker, color=colour,
                  mfc="none", label=label)
        fits = entry.get(f"{base}/temperature_fit")
        for k, phase in enumerate(fits or ()):
            for model, linestyle in (("varshni", "-"), ("bose_einstein", "--")):
                if model not in fits[phase]:
                    continue
                fit = fits[phase][model]
                func, names = MODELS[model]
                grid = np.linspace(float(fit["temperature_min_K"][()]), float(fit["temperature_max_K"][()]), 100)
                curve = func(grid, *(float(fit[name][()]) for name in names))
                title, shown = _TEMPERATURE_PARAMETERS[model]
                terms = ", ".join(f"{symbol} {float(fit[name][()]) * factor:.{digits}f}"
                                  f"±{float(fit[f'{name}_err'][()]) * factor:.{digits}f}"
                                  + (f" {unit}" if unit else "") for name, symbol, factor, unit, digits in shown)
                where = "" if phase == "all" else f" {phase}"
                (line,) = ax.plot(grid, curve, color=colour if k == 0 else _colour(k), linestyle=linestyle,
                                  linewidth=1.0, label=f"{label.split(' (')[0]}{where}, {title}:\n{terms}")
                line.set_gid(f"{base}/temperature_fit/{phase}/{model}")
    ax.set_ylabel("energy (eV)")
    # Below the panels: the fits' parameters make long entries, which inside the axes would hide the data.
    narrow = style.width_in is not None and style.width_in < 4.0
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=1 if narrow else 2,
               fontsize=style.tiny_pt)
    _errorbar(below, entry, temperature, "points/pressure_GPa", None, "points/pressure_err_GPa", marker="D",
              color="tab:red", mfc="none")
    below.set_ylabel("P (GPa)")
    below.set_xlabel("temperature (K)")
    return fig


def ruby_gallery(entry, plt, style: FigureStyle | None = None):
    """Each gauge spectrum's fitted window with its model, one panel per point
    (up to :data:`MAX_PANELS` points spread over the run)."""
    from matplotlib.ticker import MaxNLocator

    style = style or STYLES["screen"]
    sides = [s for s in ("before", "after") if f"pressure/{s}/fit_x_nm" in entry]
    shown = _spread(len(entry["points/point"]))
    cols = min(len(shown), style.gallery_columns)
    rows = math.ceil(len(shown) / cols)
    fig, axes = _new(plt, style, 2.2 * cols, 1.9 * rows, nrows=rows, ncols=cols, squeeze=False)
    points = entry["points/point"].asstr()[()]
    for k, ax in enumerate(axes.flat):
        if k >= len(shown):
            ax.axis("off")
            continue
        i = shown[k]
        for side, colour in zip(sides, ("tab:blue", "tab:red")):
            base = f"pressure/{side}"
            x = entry[f"{base}/fit_x_nm"][i]
            (data,) = ax.plot(x, entry[f"{base}/fit_counts"][i], ".", color=colour, markersize=2)
            data.set_gid(f"{base}/fit_counts[{i}]|{base}/fit_x_nm[{i}]")
            ax.plot(x, entry[f"{base}/fit_model_counts"][i], "-", color="black", linewidth=0.8)
        ax.set_title(f"{points[i]}: {entry['points/pressure_GPa'][i]:.2f} GPa", fontsize=style.small_pt)
        ax.tick_params(labelsize=style.tiny_pt)
        # Three round wavelengths per small panel, not seven: readable at a journal
        # column's width, and a third less of the gallery's drawing time (text layout).
        ax.xaxis.set_major_locator(MaxNLocator(nbins=3, steps=[1, 2, 5, 10]))
        ax.set_yticks([])
    fig.supxlabel("wavelength (nm); blue before, red after, black fit", fontsize=style.font_pt)
    return fig


def saxs_distance(entry, plt, style: FigureStyle | None = None):
    """Superlattice spacing d = 2 pi / q1 against pressure."""
    style = style or STYLES["screen"]
    fig, ax = _new(plt, style, 6, 4)
    _errorbar(ax, entry, "points/pressure_GPa", "superlattice/d_A", "points/pressure_err_GPa",
              "superlattice/d_err_A", marker="o", color="black")
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("superlattice spacing d = 2π/q₁ (Å)")
    return fig


def _stack_rows(values: np.ndarray) -> list[int]:
    """The rows of a stack worth showing: those with data, up to :data:`MAX_PANELS` spread over the run."""
    rows = [i for i in range(values.shape[0]) if np.isfinite(values[i]).any()]
    return [rows[k] for k in _spread(len(rows))]


# The spectra the optical stage keeps per point (optical/spectra/, each row on
# its own energy axis): axis, values, y label, whether each is scaled to its maximum.
_SPECTRA = (("absorption_energy_eV", "absorbance", "absorbance + offset", False),
            ("pl_energy_eV", "pl_intensity", "PL / its maximum + offset", True))


def spectra_stack(entry, plt, style: FigureStyle | None = None):
    """Absorption and PL spectra of the points (up to :data:`MAX_PANELS` of
    each, spread over the run), offset in measurement order and coloured by
    pressure; each PL spectrum scaled to its maximum, the absorbance as measured."""
    style = style or STYLES["screen"]
    base = "optical/spectra"
    kinds = [k for k in _SPECTRA if f"{base}/{k[1]}" in entry]
    pressure = entry["points/pressure_GPa"][()]
    colour, mappable = _pressure_colours(plt, pressure)
    fig, axes = _new(plt, style, 3.2 * len(kinds) + 0.8, 5.0, ncols=len(kinds), squeeze=False)
    for ax, (axis_name, values_name, ylabel, scaled) in zip(axes.flat, kinds):
        energy, values = entry[f"{base}/{axis_name}"][()], entry[f"{base}/{values_name}"][()]
        shown = _stack_rows(values)
        if scaled:
            step = 0.7
        else:
            # 0.6 of a typical spectrum's range: readable whatever the sample's absorbance
            spans = [np.nanmax(values[i]) - np.nanmin(values[i]) for i in shown]
            step = 0.6 * float(np.median(spans)) if spans and np.median(spans) > 0 else 1.0
        for row, i in enumerate(shown):
            offset = row * step
            peak = float(np.nanmax(values[i]))
            factor = 1.0 / peak if scaled and peak > 0 else 1.0
            (line,) = ax.plot(energy[i], values[i] * factor + offset, color=colour(pressure[i]), linewidth=0.8)
            scale = f"×{factor!r}" if factor != 1.0 else ""
            line.set_gid(f"{base}/{values_name}[{i}]{scale}+{offset!r}|{base}/{axis_name}[{i}]")
        ax.set_xlabel("photon energy (eV)")
        ax.set_ylabel(ylabel)
        ax.set_yticks([])
    fig.colorbar(mappable, ax=list(axes.flat), label="pressure (GPa)")
    return fig


def lattice(entry, plt, style: FigureStyle | None = None):
    """Lattice parameters a (and b) of every phase against pressure, and c and
    c/a of the phases that have a c axis, with pressure and lattice error bars;
    below, where the store has them, each phase's crystallite size (Scherrer
    at its strongest line, open, and Williamson-Hall, filled) and microstrain
    (:mod:`dacpipe.xrd.size_strain`).

    The error of c/a is ``(c/a) sqrt((s_c/c)^2 + (s_a/a)^2)``: a and c taken
    as independent (the refinement's a-c covariance is not in the store), so
    it is an upper bound when they are positively correlated.
    """
    style = style or STYLES["screen"]
    phases = [n for n in _phases(entry) if np.isfinite(entry[f"phases/{n}/a_A"][()]).any()]
    with_c = [n for n in phases if f"phases/{n}/c_A" in entry and np.isfinite(entry[f"phases/{n}/c_A"][()]).any()]
    sized = [n for n in phases if f"phases/{n}/crystallite_wh_nm" in entry
             and np.isfinite(entry[f"phases/{n}/crystallite_wh_nm"][()]).any()]
    panels = ["a"] + (["c", "c/a"] if with_c else []) + (["size", "strain"] if sized else [])
    fig, axes = _new(plt, style, 6, 1.2 + 2.4 * len(panels), nrows=len(panels), sharex=True, squeeze=False)
    axes = dict(zip(panels, axes[:, 0]))
    order = _phases(entry)
    p, p_err = "points/pressure_GPa", "points/pressure_err_GPa"
    for name in phases:
        k, g = order.index(name), f"phases/{name}"
        _errorbar(axes["a"], entry, p, f"{g}/a_A", p_err, f"{g}/a_err_A", marker="o", color=_colour(k),
                  label=f"{name} a")
        if f"{g}/b_A" in entry:
            _errorbar(axes["a"], entry, p, f"{g}/b_A", p_err, f"{g}/b_err_A", marker="s", mfc="none",
                      color=_colour(k), label=f"{name} b")
        if name in sized:
            if f"{g}/crystallite_nm" in entry:
                _errorbar(axes["size"], entry, p, f"{g}/crystallite_nm", p_err, f"{g}/crystallite_err_nm",
                          marker="o", mfc="none", color=_colour(k), label=f"{name} Scherrer")
            _errorbar(axes["size"], entry, p, f"{g}/crystallite_wh_nm", p_err, f"{g}/crystallite_wh_err_nm",
                      marker="o", color=_colour(k), label=f"{name} Williamson-Hall")
            _errorbar(axes["strain"], entry, p, f"{g}/microstrain", p_err, f"{g}/microstrain_err",
                      marker="o", color=_colour(k), label=name)
        if name not in with_c:
            continue
        _errorbar(axes["c"], entry, p, f"{g}/c_A", p_err, f"{g}/c_err_A", marker="o", color=_colour(k), label=name)
        a, a_err = entry[f"{g}/a_A"][()], entry[f"{g}/a_err_A"][()]
        c, c_err = entry[f"{g}/c_A"][()], entry[f"{g}/c_err_A"][()]
        ratio = c / a
        container = errorbar(axes["c/a"], entry[p][()], ratio, xerr=entry[p_err][()],
                             yerr=ratio * np.hypot(c_err / c, a_err / a), marker="o", color=_colour(k), label=name)
        container.lines[0].set_gid(f"{g}/c_A÷{g}/a_A|{p}")
    axes["a"].set_ylabel("a (Å)" if not any(f"phases/{n}/b_A" in entry for n in phases) else "a, b (Å)")
    if with_c:
        axes["c"].set_ylabel("c (Å)")
        axes["c/a"].set_ylabel("c / a")
    if sized:
        axes["size"].set_ylabel("crystallite (nm)")
        axes["strain"].set_ylabel("microstrain")
        axes["strain"].axhline(0.0, color="black", linewidth=0.6)
    for ax in axes.values():
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=style.small_pt)
    axes[panels[-1]].set_xlabel("pressure (GPa)")
    return fig


def saxs_stack(entry, plt, style: FigureStyle | None = None):
    """SAXS patterns (up to :data:`MAX_PANELS`, spread over the run) on a log
    scale, each multiplied by 10^row (10^(row/2) beyond 12 patterns) to
    stack them, coloured by pressure,
    with the superlattice peaks the superlattice stage kept marked (indexed
    on the top pattern)."""
    style = style or STYLES["screen"]
    q, intensity = entry["saxs/q"][()], entry["saxs/I"][()]
    pressure = entry["points/pressure_GPa"][()]
    peaks_path = "saxs/peaks/q_A" if "saxs/peaks/q_A" in entry else (
        "superlattice/q1_A" if "superlattice/q1_A" in entry else None)
    peaks = None if peaks_path is None else entry[peaks_path][()].reshape(len(pressure), -1)
    hkl = entry["saxs/peaks/hkl"].asstr()[()] if "saxs/peaks/hkl" in entry else None
    colour, mappable = _pressure_colours(plt, pressure)
    shown = _stack_rows(intensity)
    fig, ax = _new(plt, style, 5.5, 1.5 + 0.4 * len(shown))
    ax.set_yscale("log")
    decades = 1.0 if len(shown) <= 12 else 0.5
    for row, i in enumerate(shown):
        factor = 10.0 ** (decades * row)
        (line,) = ax.plot(q, intensity[i] * factor, color=colour(pressure[i]), linewidth=0.8)
        line.set_gid(f"saxs/I[{i}]×{factor!r}|saxs/q")
        if peaks is None:
            continue
        at = np.isfinite(peaks[i])
        if not at.any():
            continue
        # A marker just above the curve at each peak (interpolated: the peak need not sit on a bin).
        (marks,) = ax.plot(peaks[i][at], 1.6 * factor * np.interp(peaks[i][at], q, intensity[i]), "|",
                           color="black", markersize=5)
        marks.set_gid(f"{peaks_path}[{i}]")
        if row == len(shown) - 1 and hkl is not None:
            for x, label in zip(peaks[i][at], hkl[i][at]):
                ax.text(x, 2.6 * factor * np.interp(x, q, intensity[i]), label, fontsize=style.tiny_pt,
                        ha="center")
    ax.set_xlabel("q (1/Å)")
    ax.set_ylabel(f"intensity × 10^({decades:g} row)")
    fig.colorbar(mappable, ax=ax, label="pressure (GPa)")
    return fig


def ruby_scale(entry, plt, style: FigureStyle | None = None):
    """The gauge line's position (ruby R1, Sm:SrB4O7 0-0 line, diamond edge)
    of each spectrum against the point's pressure, with the run's scale
    curve at its ambient position x0 (away from the scale's temperature, the
    line as measured faint and moved to that temperature in colour), and
    below, each position (moved to the reference temperature as the pressure
    stage did) minus the curve at the point's pressure: the before/after
    drift and the fit error bars, which the main panel is too coarse to show.

    Raises
    ------
    InputError
        The run's gauge reads no line position (``sheet``, ``xrd-marker``).
    """
    from ..pressure.gauges import GAUGES
    from ..pressure.scales import get_scale, temperature_corrected_position

    style = style or STYLES["screen"]
    attrs = entry["pressure"].attrs
    gauge = GAUGES.get(str(attrs.get("gauge", "sheet")))
    if gauge is None:
        raise InputError(f"figure ruby_scale: the {attrs.get('gauge', 'sheet')} gauge reads no line position "
                         "against pressure")
    scale, x0 = get_scale(str(attrs["scale"])), float(attrs["x0"])
    store_name = {attr: name for name, attr in gauge.fields.items()}
    position, error = (store_name[attr] for attr in gauge.position)
    unit = "nm" if gauge.axis == "nm" else "cm⁻¹"
    sides = [side for side in ("before", "after") if f"pressure/{side}/{position}" in entry]
    p, p_err = "points/pressure_GPa", "points/pressure_err_GPa"
    pressure = entry[p][()]
    fig, (ax, below) = _new(plt, style, 6, 5.5, nrows=2, sharex=True, height_ratios=[3, 1.4])
    finite = pressure[np.isfinite(pressure)]
    top = float(finite.max()) if finite.size else 1.0
    grid = np.linspace(min(0.0, float(finite.min()) if finite.size else 0.0), 1.05 * top, 200)
    (curve,) = ax.plot(grid, scale.position_at(grid, x0), color="black", linewidth=0.8,
                       label=f"{scale.name}, x0 = {x0:g} {unit}")
    curve.set_gid(f"scale:{scale.name}")
    method = str(attrs.get("temperature_correction", "none")) if gauge.thermal_shift else "none"
    reference_K = float(attrs.get("reference_temperature_K", 298.0))
    temperature = entry["points/temperature_K"][()]
    # Away from the scale's temperature the line as measured is off the curve by its thermal
    # shift: shown faint, and beside it the line moved to the reference temperature, as the
    # pressure stage reads it.
    heated = method != "none" and bool(np.any(np.abs(temperature - reference_K) > 0.5))
    for side, marker, colour in zip(sides, ("o", "s"), ("tab:blue", "tab:red")):
        y, y_err = f"pressure/{side}/{position}", f"pressure/{side}/{error}"
        corrected = np.asarray(temperature_corrected_position(entry[y][()], temperature, reference_K, method,
                                                              gauge=gauge.name), dtype=float)
        errors = entry[y_err][()] if y_err in entry else None
        if heated:
            _errorbar(ax, entry, p, y, p_err, y_err, marker=marker, mfc="none", color="0.65",
                      label=f"{side}, as measured")
            moved = errorbar(ax, pressure, corrected, yerr=errors, marker=marker, mfc="none", color=colour,
                             label=f"{side}, at {reference_K:g} K")
            moved.lines[0].set_gid(f"corrected:{y}")
        else:
            _errorbar(ax, entry, p, y, p_err, y_err, marker=marker, mfc="none", color=colour, label=side)
        residual = corrected - scale.position_at(pressure, x0)
        container = errorbar(below, pressure, residual, yerr=errors, marker=marker, mfc="none", color=colour)
        container.lines[0].set_gid(f"residual:{y}")
    below.axhline(0.0, color="black", linewidth=0.8)
    line = position.split("_")[0]
    ax.set_ylabel(f"{line} ({unit})")
    below.set_ylabel(f"{line} − scale ({unit})")
    below.set_xlabel("pressure (GPa)")
    ax.legend(fontsize=style.small_pt, loc="upper left")  # the line rises to the right: that corner is empty
    return fig


def hydrostaticity(entry, plt, style: FigureStyle | None = None):
    """Signs of a non-hydrostatic stress against pressure, each where the run
    measured it: the R1 width over the run's low-pressure width with the
    flag's threshold, the change of the R1-R2 splitting, and the pressure
    gradient over the chamber from gauges at several places; the medium's
    hydrostatic and quasi-hydrostatic limits as vertical lines where they
    fall in the run's range (Klotz et al., J. Phys. D 42, 075413 (2009);
    Syassen, High Press. Res. 28, 75 (2008); :mod:`dacpipe.pressure.hydrostatic`)."""
    from ..pressure.hydrostatic import BROADENING_FACTOR

    style = style or STYLES["screen"]
    attrs = entry["pressure"].attrs
    candidates = [("pressure/R1_width_ratio", None, "R1 width / low-P width"),
                  ("pressure/R1_R2_splitting_change_cm1", None, "R1−R2 splitting\nchange (cm⁻¹)"),
                  # the gradient is the gauges' range: its own error is their fits', not drawn
                  ("pressure/pressure_gradient_GPa", None, "gradient (GPa)")]
    panels = [c for c in candidates if c[0] in entry and np.isfinite(entry[c[0]][()]).any()]
    fig, axes = _new(plt, style, 6, 1.2 + 1.6 * max(len(panels), 1), nrows=max(len(panels), 1), sharex=True)
    axes = np.atleast_1d(axes)
    pressure = entry["points/pressure_GPa"][()]
    top = float(np.nanmax(pressure)) if np.isfinite(pressure).any() else 1.0
    medium = attrs.get("medium")
    limits = [(float(attrs.get(key, np.nan)), label, ls) for key, label, ls in
              (("medium_hydrostatic_limit_GPa", "hydrostatic limit", "--"),
               ("medium_quasi_hydrostatic_limit_GPa", "quasi-hydrostatic limit", ":"))]
    for ax, (y, y_err, label) in zip(axes, panels):
        _errorbar(ax, entry, "points/pressure_GPa", y, "points/pressure_err_GPa", y_err, marker="o", mfc="none",
                  color="tab:blue")
        ax.set_ylabel(label)
        for limit, name, ls in limits:
            if np.isfinite(limit) and 0.0 < limit <= 1.1 * top:
                ax.axvline(limit, color="tab:red", linestyle=ls, linewidth=0.8, label=name, gid=f"medium:{name}")
    if panels and panels[0][0] == "pressure/R1_width_ratio":
        axes[0].axhline(BROADENING_FACTOR, color="black", linewidth=0.8, linestyle="--",
                        label=f"broadening flag ({BROADENING_FACTOR:g}x)")
    if not panels:
        axes[0].text(0.5, 0.5, "no line width, splitting or gradient measured", ha="center", va="center",
                     transform=axes[0].transAxes)
    stated = ", ".join(f"{name} {limit:g} GPa" for limit, name, _ in limits if np.isfinite(limit))
    axes[0].set_title(f"medium: {medium} ({stated})" if medium else "medium not named (pressure.medium)",
                      fontsize=style.small_pt + 1)
    if any(ax.get_legend_handles_labels()[0] for ax in axes[:1]):
        axes[0].legend(fontsize=style.small_pt, loc="upper left")
    axes[-1].set_xlabel("pressure (GPa)")
    return fig


def lattice_strain(entry, plt, style: FigureStyle | None = None):
    """Singh's lattice strain of the cubic phases of a radial-geometry run: each
    line's d/d_P - 1 against 1 - 3 cos^2 psi at the point where t/G stands out
    most (slope Q), and t/G = 6 <Q> against pressure (Singh et al., J. Appl.
    Phys. 83, 7567 (1998); :mod:`dacpipe.xrd.strain`)."""
    style = style or STYLES["screen"]
    small = style.small_pt
    fig, (left, right) = _new(plt, style, 10.0, 4.0, ncols=2)
    strained = [name for name in _phases(entry) if f"phases/{name}/t_over_G" in entry]
    shown = None
    for k, name in enumerate(strained):
        base = f"phases/{name}"
        _errorbar(right, entry, "points/pressure_GPa", f"{base}/t_over_G", "points/pressure_err_GPa",
                  f"{base}/t_over_G_err", marker="o", color=_colour(k), label=name)
        t, err = entry[f"{base}/t_over_G"][()], entry[f"{base}/t_over_G_err"][()]
        with np.errstate(invalid="ignore", divide="ignore"):
            significance = np.where(np.isfinite(t) & (err > 0), np.abs(t) / err, -1.0)
        if shown is None and f"{base}/strain/x" in entry and significance.max() >= 0:
            shown = (name, int(np.argmax(significance)))
    if shown is not None:
        name, i = shown
        base = f"phases/{name}/strain"
        hkl, x, d = entry[f"{base}/hkl"][i], entry[f"{base}/x"][i], entry[f"{base}/d_A"][i]
        d_p, q = entry[f"{base}/d_P_A"][i], entry[f"{base}/Q"][i]
        for k in range(len(hkl)):
            if not (any(hkl[k]) and np.isfinite(q[k])):
                continue
            colour = _colour(k)
            (points,) = left.plot(x[k], d[k] / d_p[k] - 1.0, "o", color=colour, markersize=3,
                                  label="".join(str(int(v)) for v in hkl[k]) + f": Q = {q[k]:.2e}")
            points.set_gid(f"{base}/d_A[{i},{k}]÷{base}/d_P_A[{i},{k}]+-1|{base}/x[{i},{k}]")
            grid = np.array([np.nanmin(x[k]), np.nanmax(x[k])])
            left.plot(grid, q[k] * grid, "-", color=colour, linewidth=0.8)
        point = entry["points/point"].asstr()[i] if "points/point" in entry else str(i)
        left.set_title(f"{name}, {point}: t/G = {entry[f'phases/{name}/t_over_G'][i]:.4g} "
                       f"± {entry[f'phases/{name}/t_over_G_err'][i]:.2g}", fontsize=small)
        left.legend(fontsize=small)
    else:
        phases_group = entry.get("phases")
        note = str(phases_group.attrs.get("strain", "")) if phases_group is not None else ""
        left.text(0.5, 0.5, note or "no lattice strain in the store (no cubic phase)", ha="center", va="center",
                  wrap=True, fontsize=small, transform=left.transAxes)
    left.axhline(0.0, color="grey", linewidth=0.5)
    left.set_xlabel("1 − 3 cos²ψ")
    left.set_ylabel("d / d_P − 1")
    right.axhline(0.0, color="grey", linewidth=0.5)
    right.set_xlabel("pressure (GPa)")
    right.set_ylabel("t / G = 6 ⟨Q⟩")
    if strained:
        right.legend(fontsize=small)
    return fig


# Name -> drawing function(entry, pyplot) -> Figure. The captions of the
# Snakemake report are workflow/report/<name>.rst.
FIGURES: dict[str, Callable] = {
    "waterfall": waterfall,
    "fractions": fractions,
    "compression": compression,
    "f_f": f_f,
    "eos_ellipse": eos_ellipse,
    "band_gap": band_gap,
    "band_gap_temperature": band_gap_temperature,
    "ruby_gallery": ruby_gallery,
    "saxs_distance": saxs_distance,
    "lattice_strain": lattice_strain,
    "spectra_stack": spectra_stack,
    "lattice": lattice,
    "saxs_stack": saxs_stack,
    "ruby_scale": ruby_scale,
    "hydrostaticity": hydrostaticity,
}


def _gauge_positions(sheet_path) -> bool:
    """Whether a sheet names gauge spectra at other places (``ruby_2`` ...); False if it cannot be read
    (the run's jobs then say why)."""
    if sheet_path is None:
        return False
    try:
        return _has_gauge_positions(str(sheet_path), os.stat(sheet_path).st_mtime_ns)
    except (DacpipeError, OSError):
        return False


@functools.lru_cache(maxsize=64)
def _has_gauge_positions(sheet_path: str, mtime_ns: int) -> bool:
    """The sheet read once per version however often figures_for asks (the workflow, twice per run)."""
    from ..io.sheet import read_sheet

    return bool(read_sheet(sheet_path).gauge_position_columns())


def figures_for(run: dict) -> list[str]:
    """The figures a run's config gives data for."""
    names = []
    if run["pressure"]["gauge"] in ("ruby", "sm-srb4o7"):
        names.append("ruby_gallery")
    if run["pressure"]["gauge"] in ("ruby", "sm-srb4o7", "diamond-raman"):  # a line position against pressure
        names.append("ruby_scale")
    # R1's width and splitting (ruby), or a gradient over the chamber (a second gauge spectrum, any gauge)
    if run["pressure"]["gauge"] == "ruby" or (run["pressure"]["gauge"] in ("sm-srb4o7", "diamond-raman")
                                              and _gauge_positions(run.get("sheet"))):
        names.append("hydrostaticity")
    if "xrd" in run:
        names.append("waterfall")
        if run.get("phases"):
            names += ["fractions", "compression", "f_f", "eos_ellipse", "lattice"]
    if "xrd" in run and run.get("phases") and run["xrd"].get("geometry") == "radial" \
            and run["xrd"].get("cake", {}).get("enabled"):
        names.append("lattice_strain")      # Singh's t/G needs a radial-geometry cake
    if "saxs" in run:
        names += ["saxs_distance", "saxs_stack"]
    if "optical" in run:
        names += ["band_gap", "spectra_stack"]
        if (run["optical"] or {}).get("series") == "temperature":
            names.append("band_gap_temperature")   # E(T) fits of a temperature series
    return names


# What each figure needs in the store (paths in the run's entry); a store
# without them gets one line naming what is missing. Any other error while
# drawing is a bug and is not dressed up as missing data.
NEEDS: dict[str, tuple[str, ...]] = {
    "waterfall": ("xrd/q", "xrd/I", "points/pressure_GPa"),
    "fractions": ("phases", "points/pressure_GPa"),
    "compression": ("phases", "eos", "points/pressure_GPa", "points/pressure_err_GPa"),
    "f_f": ("eos",),
    "eos_ellipse": ("eos",),
    "band_gap": ("optical",),
    "band_gap_temperature": ("optical", "points/temperature_K", "points/pressure_GPa", "points/pressure_err_GPa"),
    "ruby_gallery": ("pressure", "points/point", "points/pressure_GPa"),
    "saxs_distance": ("superlattice/d_A", "superlattice/d_err_A", "points/pressure_GPa"),
    "lattice_strain": ("phases", "points/pressure_GPa", "points/pressure_err_GPa"),
    "spectra_stack": ("optical/spectra", "points/pressure_GPa"),
    "lattice": ("phases", "points/pressure_GPa", "points/pressure_err_GPa"),
    "saxs_stack": ("saxs/q", "saxs/I", "points/pressure_GPa"),
    "ruby_scale": ("pressure", "points/pressure_GPa", "points/pressure_err_GPa", "points/temperature_K"),
    "hydrostaticity": ("pressure", "points/pressure_GPa", "points/pressure_err_GPa"),
}


def draw_figure(name: str, store_path: str | Path, out_png: str | Path, width: str = "screen") -> list[Path]:
    """Draw figure ``name`` from a store into ``out_png`` and the PDF beside it.

    Parameters
    ----------
    width : str
        A :data:`STYLES` name (config ``figures.width``): ``screen``, or a
        journal column (``single-column``, ``double-column``), whose files
        are exactly that wide.

    Raises
    ------
    InputError
        The store lacks what the figure shows (:data:`NEEDS`), or the run
        has nothing the figure can show (a gauge without a line position).
    """
    style = figure_style(width)
    plt = pyplot()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    # The style's lettering holds while the figure is drawn and saved (tick labels are made at saving).
    with plt.rc_context(style.rc()):
        with open_result(store_path) as h5:  # a damaged store: one line saying how to rebuild it
            run_id = h5.attrs.get("default")
            if run_id is None or str(run_id) not in h5:
                raise StoreError(f"{store_path}: not a dacpipe store (no default run entry); delete it and run "
                                 f"again to rebuild it")
            entry = h5[str(run_id)]
            missing = [path for path in NEEDS[name] if path not in entry]
            if missing:
                raise InputError(f"figure {name}: the store has no {', '.join(missing)}", str(store_path))
            try:
                fig = FIGURES[name](entry, plt, style)
            except InputError as err:
                raise err.with_path(str(store_path)) from None
        return save_figure(fig, out_png, style, plt)


# Figures by drawing time on a 1,000-point run (CPU for PNG and PDF: ruby_gallery 1.6 s, waterfall 1.1,
# lattice 1.0, ruby_scale 0.5 ... eos_ellipse 0.2 s); others after them.
SLOW_FIRST = ("ruby_gallery", "waterfall", "lattice", "ruby_scale", "spectra_stack", "saxs_stack", "compression",
              "hydrostaticity", "f_f", "fractions")


def _draw_one(job: tuple) -> tuple[list[Path], str]:
    """:func:`draw_figure` in a worker: the files written, or the error's one line."""
    try:
        return draw_figure(*job), ""
    except DacpipeError as err:
        return [], str(err)


def draw_figures(names: Sequence[str], store_path: str | Path, folder: str | Path, width: str = "screen",
                 jobs: int = 1) -> list[Path]:
    """Draw the figures ``names`` from a store into ``folder`` (``<name>.png`` and ``.pdf``),
    ``jobs`` at a time in forked processes (the figures of a 1,000-point run take
    0.2-1.6 s each). The first figure that cannot be drawn raises its error, after
    the others are done."""
    # the slowest first (measured on a 1,000-point run), so that no worker is left with one at the end
    order = sorted(names, key=lambda name: SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST))
    todo = [(name, store_path, Path(folder) / f"{name}.png", width) for name in order]
    if jobs > 1 and len(todo) > 1 and "fork" in multiprocessing.get_all_start_methods():
        # forked: the workers share the parent's imported matplotlib and dacpipe
        with multiprocessing.get_context("fork").Pool(min(jobs, len(todo))) as pool:
            done = pool.map(_draw_one, todo, chunksize=1)
    else:
        done = [_draw_one(job) for job in todo]
    failed = [message for _, message in done if message]
    if failed:
        more = f" (and {len(failed) - 1} more figures)" if len(failed) > 1 else ""
        raise DacpipeError(failed[0] + more)   # the worker's error, as its one line
    return [path for paths, _ in done for path in paths]


def figure_style(width: str) -> "FigureStyle":
    """The :data:`STYLES` entry of a config's ``figures.width``."""
    if width not in STYLES:
        raise InputError(f"figure width {width!r} is not one of {', '.join(STYLES)}")
    return STYLES[width]


def save_figure(fig, out_png: Path, style: "FigureStyle", plt) -> list[Path]:
    """Write ``fig`` as ``out_png`` and the PDF beside it, and close it; the files written.

    The PDF is the PNG's figure: the layout the PNG's drawing computed and its
    crop (the same size in inches; within 1 pt of its own). Laid out, drawn
    unseen and measured again before it is drawn, it took 0.2 s more of the
    CPU of a 1,000-point run's nine figures (5.8 s).
    """
    try:
        written = []
        # A journal width is the file's width: not cropped (the layout keeps everything inside).
        crop = "tight" if style.width_in is None else None
        for path in (out_png, out_png.with_suffix(".pdf")):
            try:
                fig.savefig(path, dpi=style.dpi, bbox_inches=crop)
            except OSError as exc:  # a full disk: one line, not matplotlib's traceback
                raise StoreError(f"{path}: cannot write the figure: {os_reason(exc)}") from None
            written.append(path)
            if crop == "tight":
                crop = fig.get_tightbbox().padded(plt.rcParams["savefig.pad_inches"])
            # No layout engine: the axes stay where the last one put them, and
            # matplotlib has nothing to lay out before the next drawing.
            fig.set_layout_engine(None)
        return written
    finally:
        plt.close(fig)
