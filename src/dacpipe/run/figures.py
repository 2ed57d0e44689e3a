"""The figures of a run, drawn from its result store alone.

Every figure reads ``results/<run>.h5`` and nothing else, so that a paper's
figures can be regenerated from the store that holds the numbers. Each
plotted series carries the store paths of its data as the artist's ``gid``
(``"<y path>|<x path>"``, relative to the run's entry; ``path[i]`` is row i,
``+offset`` an offset added for display, ``a÷b`` a ratio), so that tests,
and anyone auditing a figure, can check that what is drawn is what is
stored.

:data:`FIGURES` names them (the Snakemake report's captions are in
``workflow/report/<name>.rst``); :func:`figures_for` says which apply to a
run's config.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import InputError
from .store import StoreError, open_result, os_reason

# A figure shows at most this many points, spread evenly over the run: a
# waterfall or gallery of a thousand points would be a poster nobody reads
# (and minutes of rendering).
MAX_PANELS = 30

PHASE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: a cluster node has no display
    import matplotlib.pyplot as plt

    return plt


def _tag(artist, y_path: str, x_path: str) -> None:
    artist.set_gid(f"{y_path}|{x_path}")


def _errorbar(ax, entry, x_path, y_path, xerr_path=None, yerr_path=None, **style):
    """An errorbar series straight from the store, tagged with its paths."""
    x, y = entry[x_path][()], entry[y_path][()]
    xerr = entry[xerr_path][()] if xerr_path and xerr_path in entry else None
    yerr = entry[yerr_path][()] if yerr_path and yerr_path in entry else None
    container = ax.errorbar(x, y, xerr=xerr, yerr=yerr, linestyle="none", capsize=2, **style)
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


def waterfall(entry, plt):
    """XRD patterns stacked by pressure (up to :data:`MAX_PANELS` of them), with
    tick marks of the phases found at each point."""
    from ..xrd.lines import predicted_lines
    from ..xrd.library import get_phase

    q, intensity = entry["xrd/q"][()], entry["xrd/I"][()]
    pressure = entry["points/pressure_GPa"][()]
    peak = np.nanmax(intensity, axis=1)
    step = 0.6 * float(np.nanmedian(peak)) if np.isfinite(peak).any() else 1.0
    wavelength = float(entry["xrd"].attrs["wavelength_A"])
    shown = _spread(len(pressure))
    fig, ax = plt.subplots(figsize=(6.5, 1.5 + 0.45 * len(shown)))
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
        ax.text(q[0], offset + 0.12 * step, label, fontsize=7, ha="left")
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
        ax.legend(fontsize=7, loc="upper left")
    ax.set_xlabel("q (1/Å)")
    ax.set_ylabel("intensity + offset")
    ax.set_yticks([])
    return fig


def fractions(entry, plt):
    """Phase fractions against pressure, with each transition's range shaded."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, name in enumerate(_phases(entry)):
        x, y = entry["points/pressure_GPa"][()], entry[f"phases/{name}/fraction"][()]
        (line,) = ax.plot(x, y, "o-", color=_colour(k), label=name)
        _tag(line, f"phases/{name}/fraction", "points/pressure_GPa")
    if "transitions" in entry:
        t = entry["transitions"]
        for a, b, onset, end in zip(t["from_phase"].asstr()[()], t["to_phase"].asstr()[()], t["onset_GPa"][()],
                                    t["end_GPa"][()]):
            ax.axvspan(onset, end, color="grey", alpha=0.15)
            ax.text(0.5 * (onset + end), 1.04, f"{a} → {b}", fontsize=6, ha="center")
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("fraction of formula units")
    ax.set_ylim(-0.05, 1.12)
    ax.legend(fontsize=7)
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


def compression(entry, plt):
    """V/V0 against pressure per phase, with error bars and the fitted EOS."""
    from ..eos.models import pressure_GPa

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, name in enumerate(_phases(entry)):
        if f"eos/{name}" not in entry:
            continue
        params = _eos_params(entry[f"eos/{name}"])
        v = entry[f"phases/{name}/volume_fu_A3"][()] / params.V0_A3
        v_err = entry[f"phases/{name}/volume_fu_err_A3"][()] / params.V0_A3
        p, p_err = entry["points/pressure_GPa"][()], entry["points/pressure_err_GPa"][()]
        container = ax.errorbar(p, v, xerr=p_err, yerr=v_err, fmt="o", color=_colour(k), capsize=2, label=name)
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
    ax.legend(fontsize=7)
    return fig


def f_f(entry, plt):
    """Normalised stress F against Eulerian strain f per phase, with its straight line."""
    fig, ax = plt.subplots(figsize=(6, 4))
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
    ax.legend(fontsize=7)
    return fig


def eos_ellipse(entry, plt):
    """K0-K' joint confidence ellipses (68.3 and 95.4 %) of each phase's EOS
    fit (``eos/<phase>/ellipse/``), with the fitted pair."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, name in enumerate(_phases(entry)):
        base = f"eos/{name}/ellipse"
        if base not in entry:
            continue
        for level, style in (("68", "-"), ("95", "--")):
            (line,) = ax.plot(entry[f"{base}/K0_{level}_GPa"][()], entry[f"{base}/Kp_{level}"][()], style,
                              color=_colour(k), label=f"{name} {level} %")
            _tag(line, f"{base}/Kp_{level}", f"{base}/K0_{level}_GPa")
        (centre,) = ax.plot([float(entry[f"eos/{name}/K0_GPa"][()])], [float(entry[f"eos/{name}/Kp"][()])], "+",
                            color=_colour(k))
        _tag(centre, f"eos/{name}/Kp", f"eos/{name}/K0_GPa")
    ax.set_xlabel("K0 (GPa)")
    ax.set_ylabel("K'")
    ax.legend(fontsize=7)
    return fig


def band_gap(entry, plt):
    """Band gap and PL energy against pressure, per phase, with the E(P) fits."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, marker in (("band_gap", "o"), ("pl_peak", "s")):
        base = f"optical/{kind}"
        if base not in entry:
            continue
        value = "band_gap_eV" if kind == "band_gap" else "energy_eV"
        error = "band_gap_err_eV" if kind == "band_gap" else "energy_err_eV"
        _errorbar(ax, entry, f"{base}/pressure_GPa", f"{base}/{value}", None, f"{base}/{error}", marker=marker,
                  color="black" if kind == "band_gap" else "grey", mfc="none", label=kind.replace("_", " "))
        fits = entry.get(f"{base}/fit")
        for k, phase in enumerate(fits or ()):
            fit = fits[phase]
            lo, hi = float(fit["pressure_min_GPa"][()]), float(fit["pressure_max_GPa"][()])
            grid = np.linspace(lo, hi, 50)
            beta = float(fit["beta_eV_per_GPa2"][()]) if "beta_eV_per_GPa2" in fit else 0.0
            beta = beta if math.isfinite(beta) else 0.0
            curve = float(fit["E0_eV"][()]) + float(fit["alpha_eV_per_GPa"][()]) * grid + beta * grid**2
            (line,) = ax.plot(grid, curve, color=_colour(k),
                              label=f"{phase}: {1000 * float(fit['alpha_eV_per_GPa'][()]):+.0f} meV/GPa")
            line.set_gid(f"{base}/fit/{phase}")
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("energy (eV)")
    ax.legend(fontsize=7)
    return fig


def ruby_gallery(entry, plt):
    """Each gauge spectrum's fitted window with its model, one panel per point
    (up to :data:`MAX_PANELS` points spread over the run)."""
    sides = [s for s in ("before", "after") if f"pressure/{s}/fit_x_nm" in entry]
    shown = _spread(len(entry["points/point"]))
    cols = min(len(shown), 5)
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 1.9 * rows), squeeze=False)
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
        ax.set_title(f"{points[i]}: {entry['points/pressure_GPa'][i]:.2f} GPa", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    fig.supxlabel("wavelength (nm); blue before, red after, black fit", fontsize=8)
    fig.tight_layout()
    return fig


def saxs_distance(entry, plt):
    """Superlattice spacing d = 2 pi / q1 against pressure."""
    fig, ax = plt.subplots(figsize=(6, 4))
    _errorbar(ax, entry, "points/pressure_GPa", "superlattice/d_A", "points/pressure_err_GPa",
              "superlattice/d_err_A", marker="o", color="black")
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("superlattice spacing d = 2π/q₁ (Å)")
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
    "ruby_gallery": ruby_gallery,
    "saxs_distance": saxs_distance,
}


def figures_for(run: dict) -> list[str]:
    """The figures a run's config gives data for."""
    names = []
    if run["pressure"]["gauge"] in ("ruby", "sm-srb4o7"):
        names.append("ruby_gallery")
    if "xrd" in run:
        names.append("waterfall")
        if run.get("phases"):
            names += ["fractions", "compression", "f_f", "eos_ellipse"]
    if "saxs" in run:
        names.append("saxs_distance")
    if "optical" in run:
        names.append("band_gap")
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
    "ruby_gallery": ("pressure", "points/point", "points/pressure_GPa"),
    "saxs_distance": ("superlattice/d_A", "superlattice/d_err_A", "points/pressure_GPa"),
}


def draw_figure(name: str, store_path: str | Path, out_png: str | Path) -> list[Path]:
    """Draw figure ``name`` from a store into ``out_png`` and the PDF beside it.

    Raises
    ------
    InputError
        The store lacks what the figure shows (:data:`NEEDS`).
    """
    plt = _pyplot()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with open_result(store_path) as h5:  # a damaged store: one line saying how to rebuild it
        run_id = h5.attrs.get("default")
        if run_id is None or str(run_id) not in h5:
            raise StoreError(f"{store_path}: not a dacpipe store (no default run entry); delete it and run "
                             f"again to rebuild it")
        entry = h5[str(run_id)]
        missing = [path for path in NEEDS[name] if path not in entry]
        if missing:
            raise InputError(f"figure {name}: the store has no {', '.join(missing)}", str(store_path))
        fig = FIGURES[name](entry, plt)
    try:
        written = []
        for path in (out_png, out_png.with_suffix(".pdf")):
            try:
                fig.savefig(path, dpi=150, bbox_inches="tight")
            except OSError as exc:  # a full disk: one line, not matplotlib's traceback
                raise StoreError(f"{path}: cannot write the figure: {os_reason(exc)}") from None
            written.append(path)
        return written
    finally:
        plt.close(fig)
