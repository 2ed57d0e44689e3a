"""The superlattice stage: every SAXS pattern's superlattice peaks, spacing and order."""

from __future__ import annotations

import math

import numpy as np

from ..core.errors import InputError
from ..core.results import StageContext, StageResult
from .superlattice import SaxsPeak, SuperlatticeSettings, analyse_pattern

_FLOAT_KEYS = ("q1_A", "q1_err_A", "d_A", "d_err_A", "fwhm_q_A", "fwhm_q_err_A", "scherrer_nm", "scherrer_err_nm",
               "lattice_constant_nm", "lattice_constant_err_nm", "nn_distance_nm")


def run(ctx: StageContext) -> StageResult:
    """The ``superlattice`` group of a run: every SAXS pattern analysed (:func:`analyse_pattern`).

    Reads ``upstream["saxs"]`` (q, I, I_errors, status, ``@wavelength_A``)
    and the run's ``superlattice`` section. Points whose integration failed
    are skipped with ``"superlattice: no SAXS pattern"``.

    Returns
    -------
    StageResult
        stage ``superlattice``; datasets over points: ``q1_A, q1_err_A, d_A,
        d_err_A, fwhm_q_A, fwhm_q_err_A, scherrer_nm, scherrer_err_nm, order,
        lattice_constant_nm, lattice_constant_err_nm, nn_distance_nm,
        n_peaks``; extra ``saxs/peaks/{q_A, q_err_A, d_spacing_A, fwhm_q_A,
        amplitude, hkl}`` ``[N, max peaks]``, NaN (or "") padded.
    """
    saxs = ctx.upstream["saxs"]
    q_A, intensity, sigma = saxs["q"], saxs["I"], saxs["I_errors"]
    wavelength_A = float(saxs.attrs["wavelength_A"])
    saxs_status = saxs["status"]
    settings = SuperlatticeSettings.from_config(ctx.run.get("superlattice"))
    point_ids = ctx.sheet.point_ids
    n = len(point_ids)
    intensity = np.asarray(intensity, dtype=float).reshape(n, -1)
    sigma_rows = None if sigma is None else np.asarray(sigma, dtype=float).reshape(n, -1)
    table = {key: np.full(n, np.nan) for key in _FLOAT_KEYS}
    table["order"] = np.array([""] * n, dtype=object)
    table["n_peaks"] = np.zeros(n, dtype=np.int64)
    status = ["ok"] * n
    per_point: list[tuple[tuple[SaxsPeak, ...], tuple[str, ...]]] = []
    for i in range(n):
        reason = None
        found: tuple[SaxsPeak, ...] = ()
        hkl: tuple[str, ...] = ()
        if saxs_status[i] != "ok":
            reason = "no SAXS pattern"
        else:
            try:
                result = analyse_pattern(q_A, intensity[i], None if sigma_rows is None else sigma_rows[i],
                                         wavelength_A, settings)
            except InputError as err:
                reason = str(err)
            except np.linalg.LinAlgError as err:  # a degenerate window; never stop the run for one point
                reason = f"peak fit failed ({err})"
            else:
                found, hkl = result.peaks, result.order.hkl
                first = result.first
                values = (first.q_A, first.q_err_A, result.d_A, result.d_err_A, first.fwhm_q_A, first.fwhm_err_q_A,
                          result.scherrer_nm, result.scherrer_err_nm, result.lattice_constant_nm,
                          result.lattice_constant_err_nm, result.nn_distance_nm)
                for key, value in zip(_FLOAT_KEYS, values):
                    table[key][i] = value
                table["order"][i] = result.order.order
                table["n_peaks"][i] = len(found)
                if not math.isfinite(result.scherrer_nm):
                    reason = "first peak not broader than the instrument: no Scherrer length"
        if reason is not None:
            status[i] = f"superlattice: {reason}"
            if reason != "no SAXS pattern":
                ctx.warn_point(point_ids[i], status[i])
        per_point.append((found, hkl))
        ctx.progress(i + 1, n)

    width = max([len(f) for f, _ in per_point] + [1])
    extra = {name: np.full((n, width), np.nan) for name in ("q_A", "q_err_A", "d_spacing_A", "fwhm_q_A", "amplitude")}
    extra["hkl"] = np.full((n, width), "", dtype=object)
    for i, (found, hkl) in enumerate(per_point):
        for j, peak in enumerate(found):
            extra["q_A"][i, j] = peak.q_A
            extra["q_err_A"][i, j] = peak.q_err_A
            extra["d_spacing_A"][i, j] = peak.d_spacing_A
            extra["fwhm_q_A"][i, j] = peak.fwhm_q_A
            extra["amplitude"][i, j] = peak.amplitude
            extra["hkl"][i, j] = hkl[j] if j < len(hkl) else ""
    attrs = {"scherrer_k": float(settings.scherrer_k), "instrument_fwhm_deg": float(settings.instrument_fwhm_deg),
             "tolerance_rel": float(settings.tolerance_rel), "lattices": list(settings.lattices),
             "profile": settings.profile, "min_snr": float(settings.min_snr),
             "min_relative_amplitude": float(settings.min_relative_amplitude)}
    return StageResult(stage="superlattice", point_ids=list(point_ids), datasets=table, status=status, attrs=attrs,
                       extra={f"saxs/peaks/{k}": v for k, v in extra.items()})
