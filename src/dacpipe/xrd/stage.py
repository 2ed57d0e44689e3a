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
from .indexing import IndexingSettings, index_series, scherrer_size_nm, series_q_ref
from .library import get_phase, phase_key
from .marker import DEFAULT_MAX_PRESSURE_GPA, STABLE_TO_GPA, check_marker, read_marker
from .peaks import fit_peaks
from .strain import strain_datasets


def hkl_array(hkl_lists, width: int | None = None) -> np.ndarray:
    """Per point, the Miller indices used, as an int array [N, width, 3] padded with (0, 0, 0)
    (never a reflection): unambiguous where a string like "1011" is not."""
    width = max((len(h) for h in hkl_lists), default=0) if width is None else width
    out = np.zeros((len(hkl_lists), max(width, 1), 3), dtype=np.int32)
    for i, hkls in enumerate(hkl_lists):
        for j, h in enumerate(hkls[:width]):
            out[i, j] = h
    return out


# A reduced chi^2 (on the bins as integrated) above this flags the point: patterns
# the library phases describe fit at 1-2 (data-sample 0.9-1.2; 1,000 Pilatus 1M
# frames at 3000 bins 1.1-2.5, 9 where a phase starts to show), up to ~10 where
# the counts are so high that the profiles' approximations show or the rings are
# strained (au_radial's azimuthal average, 1.3-8.5); frames integrated without
# spot rejection reach hundreds and more.
POOR_FIT_CHI2 = 50.0


def sampled_q(xrd) -> np.ndarray:
    """Where each bin of the integrated patterns samples the pattern (1/A): the mean
    of its pixels' centres where the integration stage stored it
    (:meth:`dacpipe.integration.integrator.FrameIntegrator.pixel_mean_radial`),
    else the bin centre."""
    q_A = np.asarray(xrd["q"], dtype=float)
    try:
        pixel_mean = np.asarray(xrd["pixel_mean_q_A"], dtype=float)
    except KeyError:
        return q_A
    return np.where(np.isfinite(pixel_mean), pixel_mean, q_A)


def phases(ctx: StageContext) -> StageResult:
    """Identify and refine the phases of every pattern in measurement order
    (:mod:`dacpipe.xrd.indexing`) as the ``phases`` group; the runner adds
    the series' ``transitions/`` (:func:`dacpipe.xrd.transitions.finish_phases`).

    A run gauged by an XRD marker has the marker fitted with the sample
    (its lines are then explained, not taken for a phase's), stored beside
    the phases but left out of the fractions of the sample.
    """
    xrd = ctx.upstream["xrd"]
    q_A, intensity, sigma = sampled_q(xrd), xrd["I"], xrd["I_errors"]
    wavelength_A = float(xrd.attrs["wavelength_A"])
    pressure_GPa = np.asarray(ctx.upstream["pressure"]["pressure_GPa"], dtype=float)
    settings = IndexingSettings.from_config(ctx.run).with_instrument(wavelength_A)
    point_ids = list(ctx.sheet.point_ids)
    names = list(settings.phases)
    markers = []
    marker = ctx.run["pressure"].get("marker") if ctx.run["pressure"]["gauge"] == "xrd-marker" else None
    if marker and marker not in names:
        names.append(marker)
        markers.append(marker)
    candidates = {name: get_phase(name) for name in names}
    keys = {name: phase_key(name) for name in names}
    usable = np.array([s == "ok" for s in xrd["status"]])
    results, reasons, state = index_series(q_A, intensity, sigma, wavelength_A, pressure_GPa, candidates, settings,
                                           usable=usable, markers=tuple(markers), progress=ctx.progress)
    n = len(point_ids)
    q_range = state.fit_range_A
    table = _phase_table(names, keys, candidates, results, settings, wavelength_A)
    status = []
    for i, (result, reason) in enumerate(zip(results, reasons)):
        if result is None:
            status.append(f"phases: {reason}")
            if reason != "no XRD pattern":
                ctx.warn_point(point_ids[i], f"phases: {reason}")
            continue
        if result.reduced_chi2 > POOR_FIT_CHI2:
            message = (f"phases: poor fit (reduced chi^2 {result.reduced_chi2:.0f}): the phases' model leaves "
                       f"much unexplained (diamond spots, a phase not listed?); cells and fractions uncertain")
            status.append(message)
            ctx.warn_point(point_ids[i], message)
        else:
            status.append("ok")
        if result.unexplained_q_A:
            shown = ", ".join(f"{q:.4f}" for q in result.unexplained_q_A[:5])
            ctx.warn_point(point_ids[i], f"{len(result.unexplained_q_A)} peaks no configured phase explains, "
                                         f"q = {shown} 1/A")
    width = max([len(r.unexplained_q_A) for r in results if r is not None] + [1])
    unexplained = {name: np.full((n, width), np.nan) for name in ("unexplained_q_A", "unexplained_snr")}
    calc = np.full((n, len(q_A)), np.nan, dtype=np.float32)
    background = np.full((n, len(q_A)), np.nan, dtype=np.float32)
    for i, result in enumerate(results):
        if result is None:
            continue
        k = len(result.unexplained_q_A)
        unexplained["unexplained_q_A"][i, :k] = result.unexplained_q_A
        unexplained["unexplained_snr"][i, :k] = result.unexplained_snr
        # the model where it was fitted (the background's spline is flat beyond its span)
        finite = np.isfinite(q_A) & (q_A >= q_range[0]) & (q_A <= q_range[1])
        phase_part, background_part = result.fit.evaluate(np.asarray(q_A, float)[finite])
        calc[i, finite] = phase_part + background_part
        background[i, finite] = background_part
    datasets = {**table, **{f"peaks/{k}": v for k, v in unexplained.items()}, "calc": calc, "background": background,
                "reduced_chi2": np.array([r.reduced_chi2 if r else np.nan for r in results]),
                "serial_correlation": np.array([r.fit.serial_correlation if r else np.nan for r in results])}
    attrs = {"phases": [keys[n_] for n_ in names], "phase_sources": names, "markers": [keys[m] for m in markers],
             "q_ref_A": series_q_ref(q_range), "q_range_A": np.array(q_range), "significance": settings.significance,
             "search_rel": settings.search_rel, "method": "whole-pattern fit (fixed-structure intensities, "
             "pseudo-Voigt in 2theta, B-spline background), phases kept by an F-test"}
    attrs.update(instrument_attrs(settings))
    # Differential stress of the cubic phases from the cake of a radial-geometry run (Singh et al. 1998)
    strain, strain_attrs = strain_datasets(xrd, results, names, keys, candidates, ctx.run, wavelength_A, q_range,
                                           settings.min_intensity_percent, settings.min_snr,
                                           warn=lambda message: ctx.warn(f"{ctx.run_id}: phases: {message}"))
    datasets.update(strain)
    attrs.update(strain_attrs)
    # the transitions, over the whole series: finish_phases, which the runner applies
    return StageResult(stage="phases", point_ids=point_ids, datasets=datasets, status=status, attrs=attrs)


# Williamson-Hall crystallite size and microstrain per phase (dacpipe.xrd.size_strain), beside Scherrer's size.
WH_COLUMNS = ("crystallite_wh_nm", "crystallite_wh_err_nm", "microstrain", "microstrain_err")


def instrument_attrs(settings: IndexingSettings) -> dict:
    """The phases group's record of the instrument width taken out of the Williamson-Hall widths."""
    c = settings.caglioti
    if c is None:
        return {"size_strain_instrument": "none: the widths are the sample's and the instrument's together",
                "size_strain_k": float(settings.scherrer_k)}
    return {"size_strain_instrument": c.source, "size_strain_k": float(settings.scherrer_k),
            "instrument_caglioti_deg2": c.parameters, "instrument_caglioti_covariance_deg4": c.covariance,
            "instrument_eta": float(c.eta), "instrument_reduced_chi2": float(c.reduced_chi2),
            **({"instrument_lines_two_theta_deg": np.array(c.line_two_theta_deg),
                "instrument_lines_fwhm_deg": np.array(c.line_fwhm_deg),
                "instrument_lines_fwhm_err_deg": np.array(c.line_fwhm_err_deg)} if c.line_two_theta_deg else {})}


def _phase_table(names, keys, candidates, results, settings: IndexingSettings, wavelength_A: float) -> dict:
    """Per phase and point: presence, fraction, cell, volume, width, size, evidence; NaN where absent."""
    n = len(results)
    table: dict[str, np.ndarray] = {}
    for name in names:
        phase, key = candidates[name], keys[name]
        axes = cell_axes(phase.system)
        if phase.system == "trigonal" and abs(phase.cell[5] - 120.0) > 1e-6:
            axes = ("a", "alpha")
        columns = ["fraction", "fraction_err", "fraction_background_err", "volume_fu_A3", "volume_fu_err_A3", "crystallite_nm",
                   "crystallite_err_nm", "fwhm_q_A", "fwhm_q_err_A", "width_q_A", "width_slope", "eta", "evidence_F",
                   "critical_F", "n_lines", *WH_COLUMNS,
                   *[f"{a}_{'deg' if a in ('alpha', 'beta', 'gamma') else 'A'}" for a in axes],
                   *[f"{a}_err_{'deg' if a in ('alpha', 'beta', 'gamma') else 'A'}" for a in axes]]
        for column in columns:
            table[f"{key}/{column}"] = np.full(n, np.nan)
        table[f"{key}/present"] = np.zeros(n, dtype=bool)
        used: list = [()] * n
        for i, result in enumerate(results):
            if result is None:
                continue
            st = result.phases[name]
            table[f"{key}/fraction"][i] = st.fraction if st.present else 0.0
            if not st.present:
                continue
            table[f"{key}/present"][i] = True
            table[f"{key}/fraction_err"][i] = st.fraction_err
            table[f"{key}/fraction_background_err"][i] = st.fraction_background_err
            for label, value in zip(("a", "b", "c"), st.cell[:3]):
                if f"{key}/{label}_A" in table:
                    table[f"{key}/{label}_A"][i] = value
                    table[f"{key}/{label}_err_A"][i] = st.cell_errors.get(f"{label}_A", math.nan)
            for label, value in zip(("alpha", "beta", "gamma"), st.cell[3:]):
                if f"{key}/{label}_deg" in table:
                    table[f"{key}/{label}_deg"][i] = value
                    table[f"{key}/{label}_err_deg"][i] = st.cell_errors.get(f"{label}_deg", math.nan)
            table[f"{key}/volume_fu_A3"][i] = st.volume_fu_A3
            table[f"{key}/volume_fu_err_A3"][i] = st.volume_fu_err_A3
            q_strong, fwhm, fwhm_err = st.fwhm_q_A
            table[f"{key}/fwhm_q_A"][i], table[f"{key}/fwhm_q_err_A"][i] = fwhm, fwhm_err
            size = scherrer_size_nm(q_strong, fwhm, fwhm_err, wavelength_A, settings.scherrer_k,
                                    settings.instrument_fwhm_deg)
            table[f"{key}/crystallite_nm"][i], table[f"{key}/crystallite_err_nm"][i] = size
            table[f"{key}/width_q_A"][i], table[f"{key}/width_slope"][i] = st.width_law
            wh = st.size_strain
            for column, value in zip(WH_COLUMNS, (wh.size_nm, wh.size_err_nm, wh.microstrain, wh.microstrain_err)):
                table[f"{key}/{column}"][i] = value
            table[f"{key}/eta"][i] = st.eta
            table[f"{key}/evidence_F"][i], table[f"{key}/critical_F"][i] = st.evidence_F, st.critical_F
            table[f"{key}/n_lines"][i] = len(st.hkl)
            used[i] = st.hkl
        table[f"{key}/hkl_used"] = hkl_array(used)
    return table


def marker_pressure(ctx: StageContext) -> StageResult:
    """The pressure stage of a run gauged by an XRD marker (:mod:`dacpipe.xrd.marker`), as the ``pressure`` group.

    Points without a pattern are skipped with the integration's reason.
    """
    xrd = ctx.upstream["xrd"]
    q_A, intensity, sigma = sampled_q(xrd), xrd["I"], xrd["I_errors"]
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
    # The marker's thermal EOS at the points' temperatures where the sheet gives them;
    # else at its reference, 300 K (not at the sheet's default of 298 K, a room
    # temperature nobody measured: 2 K are 0.014 GPa on gold).
    heated = "temperature_K" in ctx.sheet.columns
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
            reading = read_marker(fitted.peaks, float(q_A[ok].max()), wavelength_A, phase, settings, max_pressure,
                                  temperature_K=ctx.sheet.points[i].temperature_K if heated else None)
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
