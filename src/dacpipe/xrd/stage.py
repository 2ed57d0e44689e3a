"""The structural stages: phases, lattices and fractions of every pattern, and pressure from an XRD marker.

Both take the integrated patterns of the run (``upstream["xrd"]``: q, I,
I_errors, status, ``@wavelength_A``); the phase stage also the points'
pressures, which seed each phase's lattice.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.errors import InputError
from ..core.results import StageContext, StageResult
from .cells import cell_axes
from .indexing import IndexingSettings, find_transitions, index_point, peak_table, scherrer_size_nm, seed_cell
from .library import get_phase, phase_key
from .marker import DEFAULT_MAX_PRESSURE_GPA, STABLE_TO_GPA, check_marker, read_marker
from .peaks import fit_peaks


def hkl_array(hkl_lists, width: int | None = None) -> np.ndarray:
    """Per point, the Miller indices used, as an int array [N, width, 3] padded with (0, 0, 0)
    (never a reflection): unambiguous where a string like "1011" is not."""
    width = max((len(h) for h in hkl_lists), default=0) if width is None else width
    out = np.zeros((len(hkl_lists), max(width, 1), 3), dtype=np.int32)
    for i, hkls in enumerate(hkl_lists):
        for j, h in enumerate(hkls[:width]):
            out[i, j] = h
    return out


def phases(ctx: StageContext) -> StageResult:
    """Index every pattern of the run in measurement order (:mod:`dacpipe.xrd.indexing`)
    and summarise it as the ``phases`` group, with ``transitions/``."""
    xrd = ctx.upstream["xrd"]
    q_A, intensity, sigma = xrd["q"], xrd["I"], xrd["I_errors"]
    wavelength_A = float(xrd.attrs["wavelength_A"])
    pressure_GPa = ctx.upstream["pressure"]["pressure_GPa"]
    settings = IndexingSettings.from_config(ctx.run)
    point_ids = ctx.sheet.point_ids
    phase_list = {name: get_phase(name) for name in settings.phases}
    keys = {name: phase_key(name) for name in phase_list}
    n = len(point_ids)
    seeds: dict[str, tuple] = {}
    refined: dict[str, tuple[tuple, float]] = {}   # phase -> (last refined cell, its pressure)
    table: dict[str, np.ndarray] = {}
    used: dict[str, list] = {name: [()] * n for name in phase_list}
    for name, phase in phase_list.items():
        axes = cell_axes(phase.system)
        for key in ("fraction", "volume_fu_A3", "volume_fu_err_A3", "reduced_chi2", "n_peaks", "crystallite_nm",
                    "crystallite_err_nm", *[f"{p}_A" for p in axes], *[f"{p}_err_A" for p in axes]):
            table[f"{keys[name]}/{key}"] = np.full(n, np.nan)
        table[f"{keys[name]}/present"] = np.zeros(n, dtype=bool)
    point_peaks, unexplained = [], []
    status = ["ok"] * n
    for i in range(n):
        if xrd["status"][i] != "ok":
            status[i] = "phases: no XRD pattern"
            point_peaks.append(())
            unexplained.append(())
            ctx.progress(i + 1, n)
            continue
        for name, phase in phase_list.items():
            seeds[name] = seed_cell(phase, refined.get(name), pressure_GPa[i])
        try:
            result = index_point(q_A, intensity[i], sigma[i], wavelength_A, phase_list, seeds, settings)
        except InputError as err:
            status[i] = f"phases: {err}"
            point_peaks.append(())
            unexplained.append(())
            ctx.progress(i + 1, n)
            continue
        point_peaks.append(result.peak_fit.peaks if result.peak_fit else ())
        unexplained.append(result.unexplained_q_A)
        if result.unexplained_q_A:
            shown = ", ".join(f"{q:.4f}" for q in result.unexplained_q_A[:5])
            ctx.warn_point(point_ids[i], f"{len(result.unexplained_q_A)} peaks no configured phase explains, "
                                         f"q = {shown} 1/A")
        for name, st in result.phases.items():
            key = keys[name]
            table[f"{key}/fraction"][i] = result.fractions.get(name, math.nan)
            if not st.present or st.cell is None:
                continue
            if math.isfinite(pressure_GPa[i]):
                refined[name] = (st.cell, float(pressure_GPa[i]))
            table[f"{key}/present"][i] = True
            for label, value in zip(("a", "b", "c"), st.cell[:3]):
                if f"{key}/{label}_A" in table:
                    table[f"{key}/{label}_A"][i] = value
                    table[f"{key}/{label}_err_A"][i] = st.cell_errors.get(f"{label}_A", math.nan)
            table[f"{key}/volume_fu_A3"][i] = st.volume_fu_A3
            table[f"{key}/volume_fu_err_A3"][i] = st.volume_fu_err_A3
            table[f"{key}/reduced_chi2"][i] = st.reduced_chi2
            table[f"{key}/n_peaks"][i] = len(st.used_hkl)
            size = scherrer_size_nm(*st.fwhm_q_A, wavelength_A, settings.scherrer_k, settings.instrument_fwhm_deg)
            table[f"{key}/crystallite_nm"][i], table[f"{key}/crystallite_err_nm"][i] = size
            used[name][i] = st.used_hkl
        ctx.progress(i + 1, n)

    for name in phase_list:
        table[f"{keys[name]}/hkl_used"] = hkl_array(used[name])
    width = max((len(p) for p in point_peaks), default=0)
    peaks = peak_table(point_peaks, unexplained, max(width, 1))
    transitions = find_transitions([keys[n] for n in settings.phases], table, pressure_GPa,
                                   settings.fraction_threshold)
    return StageResult(stage="phases", point_ids=list(point_ids), datasets={**table, **peaks},
                       status=status, attrs={"phases": [keys[n] for n in settings.phases],
                                             "phase_sources": list(settings.phases)},
                       extra={f"transitions/{k}": v for k, v in transitions.items()})


def marker_pressure(ctx: StageContext) -> StageResult:
    """The pressure stage of a run gauged by an XRD marker (:mod:`dacpipe.xrd.marker`), as the ``pressure`` group.

    Points without a pattern are skipped with the integration's reason.
    """
    xrd = ctx.upstream["xrd"]
    q_A, intensity, sigma = xrd["q"], xrd["I"], xrd["I_errors"]
    wavelength_A = float(xrd.attrs["wavelength_A"])
    pressure_cfg = ctx.run["pressure"]
    settings = IndexingSettings.from_config(ctx.run)
    point_ids = ctx.sheet.point_ids
    phase = get_phase(pressure_cfg["marker"])
    check_marker(phase)
    max_pressure = pressure_cfg["max_pressure_GPa"]
    if max_pressure is None:
        max_pressure = STABLE_TO_GPA.get(phase.name, DEFAULT_MAX_PRESSURE_GPA)
    n = len(point_ids)
    axes = cell_axes(phase.system)
    table = {name: np.full(n, np.nan) for name in ("pressure_GPa", "pressure_err_GPa")}
    marker = {name: np.full(n, np.nan) for name in
              (*[f"{a}_A" for a in axes], *[f"{a}_err_A" for a in axes], "volume_A3", "volume_err_A3",
               "reduced_chi2", "n_lines")}
    hkl_used: list = [()] * n
    status = ["ok"] * n
    finite_q = np.isfinite(q_A)
    for i in range(n):
        if xrd["status"][i] != "ok":
            status[i] = "pressure: no XRD pattern for the marker"
            ctx.progress(i + 1, n)
            continue
        try:
            ok = finite_q & np.isfinite(intensity[i])
            if ok.sum() < 10:
                raise InputError("no XRD pattern for the marker")
            fitted = fit_peaks(q_A[ok], intensity[i][ok], sigma[i][ok], min_snr=settings.min_snr)
            reading = read_marker(fitted.peaks, float(q_A[ok].max()), wavelength_A, phase, settings, max_pressure)
        except InputError as err:
            status[i] = f"pressure: {err}"
            ctx.warn_point(point_ids[i], str(err))
            ctx.progress(i + 1, n)
            continue
        table["pressure_GPa"][i], table["pressure_err_GPa"][i] = reading.pressure_GPa, reading.pressure_err_GPa
        for a, value in zip("abc", reading.cell[:3]):
            if a in axes:
                marker[f"{a}_A"][i] = value
                marker[f"{a}_err_A"][i] = reading.cell_errors.get(f"{a}_A", math.nan)
        marker["volume_A3"][i], marker["volume_err_A3"][i] = reading.volume_A3, reading.volume_err_A3
        marker["reduced_chi2"][i], marker["n_lines"][i] = reading.reduced_chi2, len(reading.hkl_used)
        hkl_used[i] = reading.hkl_used
        ctx.progress(i + 1, n)

    eos = phase.eos
    attrs = {"gauge": "xrd-marker", "marker": phase.name, "marker_eos_model": eos.model,
             "marker_V0_A3": eos.V0_A3, "marker_K0_GPa": eos.K0_GPa,
             "marker_Kp": eos.Kp, "marker_eos_reference": phase.eos_reference,
             "max_pressure_GPa": max_pressure}
    datasets = {**table, **{f"marker/{k}": v for k, v in marker.items()}, "marker/hkl_used": hkl_array(hkl_used)}
    return StageResult(stage="pressure", point_ids=list(point_ids), datasets=datasets, attrs=attrs, status=status)
