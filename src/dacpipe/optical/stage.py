"""The optical stage: absorption edges and photoluminescence of every point, and E(P) per phase.

Spectra are read by :func:`dacpipe.io.spectra.read_xy` (plain text, CSV,
Ocean Optics, SPE, JCAMP-DX) and put on a photon-energy axis
(:mod:`dacpipe.optical.spectra`): ``E = hc / lambda``, or ``E = hc x
wavenumber (cm^-1)`` (CODATA 2018). Intensities that are densities per
unit of the axis (PL counts per nm) are multiplied by the Jacobian
``|d lambda / dE| = lambda^2 / hc`` so that the area of a band is the same
in both axes and its maximum lies where the emission per unit energy
peaks; without it a band at 0.4 eV would move by a few meV and change
shape. Absorbance is not a density (it is a ratio of two intensities at
the same wavelength) and is never Jacobian-scaled.

Absorption is configured as absorbance, as transmission (A = -log10 T,
fraction or percent) or as the sample intensity with a reference spectrum
I0 named in the config (A = -log10(I / I0), the reference interpolated
onto the sample's energies). The gap of each point comes from
:func:`dacpipe.optical.tauc.tauc_gap`, the emission peak from
:func:`dacpipe.optical.pl.fit_pl_peak`; the pressure dependence of each is
fitted per structural phase (:func:`dacpipe.optical.pressure_fit.fit_energy_vs_pressure`).
A spectrum that cannot be used (bad file, no edge, no peak) leaves NaN in
its point's values and its reason in the point's status, and the stage
goes on.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..core.errors import ConfigError, InputError
from ..core.results import StageContext, StageResult, Upstream
from ..eos.models import EosParams
from ..io.config import validate_section
from ..io.sheet import Sheet
from ..pressure.budget import random_and_systematic
from .deformation import bulk_modulus_at_pressure, deformation_potential_eV
from .exciton import ExcitonFit, exciton_peak
from .pl import EmissionFit, fit_pl_peak
from .pressure_fit import PressureFit, fit_energy_vs_pressure, propagate_systematic_energy
from .temperature_fit import MODELS as TEMPERATURE_MODELS
from .temperature_fit import TemperatureFit, fit_energy_vs_temperature
from .spectra import absorbance_from, read_optical
from .tauc import TRANSITIONS, TaucFit, absorption_inflection, tauc_gap
from .urbach import UrbachFit, urbach_energy, urbach_range


def settings(optical_cfg: dict | None) -> dict:
    """The ``optical`` section checked against the config schema, every default filled in.

    Raises
    ------
    ConfigError
        An unknown value for a choice, or ``quantity: intensity`` without a reference.
    """
    cfg = validate_section("optical", optical_cfg)
    if cfg["absorption"]["quantity"] == "intensity" and not cfg["absorption"]["reference"]:
        raise ConfigError("optical.absorption.quantity is intensity but optical.absorption.reference is null")
    return cfg


# --------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------

_GAP_FIELDS = ("band_gap_eV", "band_gap_err_eV", "band_gap_stat_err_eV", "window_spread_eV",
               "zero_line_gap_eV", "inflection_eV", "window_lo_eV", "window_hi_eV", "baseline_lo_eV",
               "baseline_hi_eV", "tauc_edge_intercept", "tauc_edge_slope", "tauc_edge_r_squared",
               "tauc_baseline_intercept", "tauc_baseline_slope", "absorbance_baseline_intercept",
               "absorbance_baseline_slope")
_EXCITON_FIELDS = ("energy_eV", "energy_err_eV", "sg_energy_eV", "depth_sigma", "lobe_width_eV", "window_eV")
_URBACH_FIELDS = ("urbach_energy_eV", "urbach_energy_err_eV", "top_eV", "amplitude", "amplitude_err",
                  "baseline_intercept", "baseline_slope", "window_lo_eV", "window_hi_eV", "reduced_chi2")
_PL_FIELDS = ("energy_eV", "energy_err_eV", "fwhm_eV", "fwhm_err_eV", "area", "area_err", "amplitude",
              "eta", "snr", "window_lo_eV", "window_hi_eV")


def _gap_values(fit: TaucFit) -> dict[str, float]:
    return {"band_gap_eV": fit.band_gap_eV, "band_gap_err_eV": fit.band_gap_err_eV,
            "band_gap_stat_err_eV": fit.band_gap_stat_err_eV, "window_spread_eV": fit.window_spread_eV,
            "zero_line_gap_eV": fit.zero_line_gap_eV, "inflection_eV": fit.inflection_eV,
            "window_lo_eV": fit.edge.window[0], "window_hi_eV": fit.edge.window[1],
            "baseline_lo_eV": fit.baseline.window[0], "baseline_hi_eV": fit.baseline.window[1],
            "tauc_edge_intercept": fit.edge.intercept, "tauc_edge_slope": fit.edge.slope,
            "tauc_edge_r_squared": fit.edge.r_squared, "tauc_baseline_intercept": fit.baseline.intercept,
            "tauc_baseline_slope": fit.baseline.slope,
            "absorbance_baseline_intercept": fit.absorbance_baseline[0],
            "absorbance_baseline_slope": fit.absorbance_baseline[1]}


def _exciton_values(fit: ExcitonFit) -> dict[str, float]:
    return {name: getattr(fit, name) for name in _EXCITON_FIELDS}


def _urbach_values(fit: UrbachFit) -> dict[str, float]:
    return {"urbach_energy_eV": fit.urbach_energy_eV, "urbach_energy_err_eV": fit.urbach_energy_err_eV,
            "top_eV": fit.top_eV, "amplitude": fit.amplitude, "amplitude_err": fit.amplitude_err,
            "baseline_intercept": fit.baseline[0], "baseline_slope": fit.baseline[1],
            "window_lo_eV": fit.window_eV[0], "window_hi_eV": fit.window_eV[1], "reduced_chi2": fit.reduced_chi2}


def gap_methods(cfg: dict) -> tuple[str, ...]:
    """The band-gap methods ``optical.band_gap`` asks for: ``("tauc",)``, ``("exciton",)`` or both."""
    return {"tauc": ("tauc",), "exciton": ("exciton",), "both": ("tauc", "exciton")}[cfg["band_gap"]]


def absorption_values(energy_eV, absorbance, cfg: dict) -> tuple[dict[str, dict[str, float]], list[str]]:
    """The band gap(s) and the Urbach tail of one absorbance spectrum.

    The methods of ``optical.band_gap`` (:func:`gap_methods`): Tauc
    (:func:`~dacpipe.optical.tauc.tauc_gap`, group ``band_gap``) and the
    first excitonic absorption peak (:func:`~dacpipe.optical.exciton.exciton_peak`,
    group ``exciton``); then the Urbach energy
    (:func:`~dacpipe.optical.urbach.urbach_energy`, group ``urbach``) over
    :func:`~dacpipe.optical.urbach.urbach_range` below the first exciton
    where one was found, else below the Tauc gap (the edge's inflection
    without one). Each is independent: one that finds
    nothing leaves its group out of the values and says why in the
    returned reasons, and the others go on.
    """
    values: dict[str, dict[str, float]] = {}
    reasons: list[str] = []
    methods = gap_methods(cfg)
    gap = math.nan
    if "tauc" in methods:
        try:
            values["band_gap"] = _gap_values(tauc_gap(energy_eV, absorbance, transition=cfg["tauc"],
                                                      min_r2=cfg["min_r2"], rule=cfg["tauc_window"],
                                                      baseline=cfg["baseline"], smoothing_eV=cfg["smoothing_eV"]))
            gap = values["band_gap"]["band_gap_eV"]
        except InputError as err:
            reasons.append(str(err))
    if "exciton" in methods:
        try:
            values["exciton"] = _exciton_values(exciton_peak(energy_eV, absorbance, smoothing_eV=cfg["smoothing_eV"]))
        except InputError as err:
            reasons.append(f"exciton: {err}")
    if "exciton" in values:  # a quantum dot's gap: the tail lies below its first band's low-energy inflection
        half_lobe = 0.5 * values["exciton"]["lobe_width_eV"]
        lo, hi = urbach_range(values["exciton"]["energy_eV"] - half_lobe, half_lobe)
    else:
        try:
            edge = absorption_inflection(energy_eV, absorbance, smoothing_eV=cfg["smoothing_eV"])
        except InputError:
            return values, reasons  # no edge: Tauc has said so; a tail needs an edge above it
        lo, hi = urbach_range(gap if math.isfinite(gap) else edge.energy_eV, edge.width_eV)
    try:
        values["urbach"] = _urbach_values(urbach_energy(energy_eV, absorbance, hi, hi - lo))
    except InputError as err:
        reasons.append(f"Urbach: {err}")
    return values, reasons


def _pl_values(fit: EmissionFit) -> dict[str, float]:
    return {"energy_eV": fit.energy_eV, "energy_err_eV": fit.energy_err_eV, "fwhm_eV": fit.fwhm_eV,
            "fwhm_err_eV": fit.fwhm_err_eV, "area": fit.area, "area_err": fit.area_err,
            "amplitude": fit.amplitude, "eta": fit.eta, "snr": fit.snr,
            "window_lo_eV": fit.window_eV[0], "window_hi_eV": fit.window_eV[1]}


def _fit_extras(prefix: str, fit: PressureFit, point_ids: list[str]) -> dict[str, np.ndarray]:
    values = {"E0_eV": fit.E0_eV, "E0_err_eV": fit.E0_err_eV, "alpha_eV_per_GPa": fit.alpha_eV_per_GPa,
              "alpha_err_eV_per_GPa": fit.alpha_err_eV_per_GPa, "beta_eV_per_GPa2": fit.beta_eV_per_GPa2,
              "beta_err_eV_per_GPa2": fit.beta_err_eV_per_GPa2, "covariance": fit.covariance,
              "model": fit.model, "n_points": np.int64(fit.n_points),
              "pressure_min_GPa": fit.pressure_min_GPa, "pressure_max_GPa": fit.pressure_max_GPa,
              "reduced_chi2": fit.reduced_chi2, "error_scale": fit.error_scale,
              "F_quadratic": fit.F_quadratic, "F_critical": fit.F_critical,
              "points": np.array(point_ids, dtype=object)}
    return {f"{prefix}/{name}": np.asarray(value) for name, value in values.items()}


def fit_phases(pressure_GPa, energy_eV, energy_err_eV, phases: Sequence[str], point_ids: Sequence[str], *,
               model: str = "auto", pressure_err_GPa=None,
               warn: Callable[[str], None] = lambda message: None, what: str = "band gap"
               ) -> dict[str, tuple[PressureFit, list[str]]]:
    """E(P) per phase label; points with an empty label or a NaN are left out.

    A phase with fewer than 2 usable points gets no fit and a ``warn`` message.
    Returns ``{phase: (fit, point ids used)}``.
    """
    p = np.asarray(pressure_GPa, dtype=float)
    E = np.asarray(energy_eV, dtype=float)
    s = np.asarray(energy_err_eV, dtype=float)
    sp = None if pressure_err_GPa is None else np.asarray(pressure_err_GPa, dtype=float)
    labels = np.asarray(list(phases), dtype=object)
    out = {}
    for phase in dict.fromkeys(label for label in phases if label):
        member = (labels == phase) & np.isfinite(p) & np.isfinite(E)
        used = [point_ids[i] for i in np.flatnonzero(member)]
        if member.sum() < 2:
            warn(f"optical: {what} of phase {phase}: {int(member.sum())} point(s) with a value and a "
                 "pressure, no E(P) fit (needs 2)")
            continue
        try:
            fit = fit_energy_vs_pressure(p[member], E[member], s[member], model=model,
                                                 pressure_err_GPa=None if sp is None else sp[member])
        except InputError as err:
            warn(f"optical: {what} of phase {phase}: {err}")
            continue
        if model == "quadratic" and fit.model == "linear":
            warn(f"optical: {what} of phase {phase}: {fit.n_points} points, linear fit instead of quadratic")
        out[phase] = (fit, used)
    return out


# The stage runs in two steps, so that ``dacpipe watch`` (dacpipe.run.incremental)
# can measure only the points whose spectra are new and refit the series:
# :func:`measure`, whose rows depend only on each point's own spectra and the
# settings, and :func:`summarise`, the E(P) fits over all points (cheap).

def run(ctx: StageContext) -> StageResult:
    """The optical stage of a run: :func:`measure` its sheet's spectra, then :func:`summarise`."""
    return summarise(ctx, measure(ctx))


def measure(ctx: StageContext) -> StageResult:
    """The per-point step: band gap and PL peak of each point of ``ctx.sheet``
    (:func:`measure_points`), from its own spectra only; reads no upstream."""
    return measure_points(ctx.sheet, ctx.run["optical"], ctx.warn, ctx.progress, run_id=ctx.run_id)


def summarise(ctx: StageContext, measured: StageResult) -> StageResult:
    """The whole-series step: ``measured`` (every point of the sheet) with the
    points' pressures (``upstream["pressure"]``) and, when the run is indexed,
    each point's dominant phase (``upstream["phases"]``), fitted per phase
    (:func:`fit_series`), with each phase's EOS (``upstream["eos"]``) for
    the deformation potentials."""
    pressure = ctx.upstream["pressure"]
    phases = ctx.upstream.get("phases")
    random_err, systematic = random_and_systematic(pressure)
    return fit_series(measured, ctx.run["optical"], pressure["pressure_GPa"],
                      None if phases is None else dominant_phases(phases), ctx.warn,
                      pressure_err_GPa=random_err, systematic_GPa=systematic,
                      temperature_K=np.array([p.temperature_K for p in ctx.sheet.points], dtype=float),
                      eos_fits=eos_fits(ctx.upstream.get("eos")))


def eos_fits(eos: Upstream | None) -> dict[str, tuple]:
    """Phase -> ``(EosParams, covariance, parameter_names)`` of each phase the
    EOS stage fitted (``upstream["eos"]``: ``<phase>/model``, ``V0_fu_A3``,
    ``K0_GPa``, ``Kp``, ``K0pp_per_GPa``, ``covariance``, ``parameter_names``);
    empty without an EOS stage. A phase the EOS stage fitted whose
    parameters are not in ``eos`` maps to the reason instead."""
    if eos is None:
        return {}
    out: dict[str, tuple | str] = {}
    for phase in (str(name) for name in eos.attrs.get("phases_fitted", [])):
        if f"{phase}/K0_GPa" not in eos.datasets:
            out[phase] = (f"the EOS stage fitted phase {phase} but its parameters did not reach the optical "
                          "stage (run.stages.optional_reads)")
            continue
        model = str(np.asarray(eos[f"{phase}/model"]).item())
        k0pp = eos.datasets.get(f"{phase}/K0pp_per_GPa")
        params = EosParams(model, float(eos[f"{phase}/V0_fu_A3"]), float(eos[f"{phase}/K0_GPa"]),
                           float(eos[f"{phase}/Kp"]),
                           float(k0pp) if model == "bm4" and k0pp is not None else None)
        names = tuple(str(name) for name in np.atleast_1d(eos[f"{phase}/parameter_names"]))
        out[phase] = (params, np.asarray(eos[f"{phase}/covariance"], dtype=float), names)
    return out


def _deformation_extras(prefix: str, fit: PressureFit, eos: tuple | str | None, mean_pressure_GPa: float,
                        warn: Callable[[str], None], what: str, phase: str) -> dict[str, np.ndarray]:
    """``<prefix>/``: dEg/dlnV = -K(P) dEg/dP (:func:`~dacpipe.optical.deformation.deformation_potential_eV`)
    at P = 0 (``_P0``, where E0 and K0 are defined) and at the mean pressure of
    the phase's points (where both fits have data: a high-pressure phase's
    P = 0 is an extrapolation of both), with K(P) and the EOS model; NaN and
    ``reason`` when the phase has no EOS fit (``eos`` None, or the reason)."""
    values = {"dEg_dlnV_P0_eV": math.nan, "dEg_dlnV_P0_err_eV": math.nan, "bulk_modulus_P0_GPa": math.nan,
              "pressure_mean_GPa": mean_pressure_GPa, "dEg_dlnV_eV": math.nan, "dEg_dlnV_err_eV": math.nan,
              "bulk_modulus_GPa": math.nan}
    reason, model = "", ""
    if eos is None or isinstance(eos, str):
        reason = eos or f"no EOS fit of phase {phase} in the run (no phases, or its EOS fit failed)"
        warn(f"optical: {what} of phase {phase}: no deformation potential: {reason}")
    else:
        model = eos[0].model
        for tag, p in (("_P0", 0.0), ("", mean_pressure_GPa)):
            try:
                values[f"dEg_dlnV{tag}_eV"], values[f"dEg_dlnV{tag}_err_eV"] = deformation_potential_eV(fit, eos, p)
                values[f"bulk_modulus{tag}_GPa"] = bulk_modulus_at_pressure(*eos, p)[0]
            except ValueError as err:   # an EOS that does not reach P (K' < 0 from a poor fit): NaN, said
                reason = str(err)
                warn(f"optical: {what} of phase {phase}: no deformation potential at {p:.2f} GPa: {err}")
    out = {f"{prefix}/{name}": np.asarray(float(value)) for name, value in values.items()}
    out[f"{prefix}/eos_model"] = np.array(model, dtype=object)
    out[f"{prefix}/reason"] = np.array(reason, dtype=object)
    return out


def dominant_phases(phases: Upstream) -> list[str]:
    """Per point, the present phase with the largest fraction ("" where none is)."""
    names = [str(name) for name in phases.attrs["phases"]]
    fraction = np.array([np.where(phases[f"{name}/present"], phases[f"{name}/fraction"], -1.0) for name in names])
    best = np.argmax(fraction, axis=0)
    return [names[k] if fraction[k, i] >= 0 else "" for i, k in enumerate(best)]


def optical_series(sheet: Sheet, optical_cfg: dict, pressure_GPa: np.ndarray,
                   phase_per_point: list[str] | None = None,
                   warn: Callable[[str], None] = lambda message: None,
                   progress: Callable[[int, int], None] = lambda done, total: None, *,
                   pressure_err_GPa: np.ndarray | None = None, run_id: str = "") -> StageResult:
    """Band gap and PL peak of every point, and their pressure dependence per phase.

    :func:`measure_points` then :func:`fit_series`.

    Parameters
    ----------
    sheet : Sheet
        The run's sample sheet; its ``absorption`` and ``pl`` columns.
    optical_cfg : dict
        The run's ``optical`` section (the schema's defaults fill what is missing).
    pressure_GPa : ndarray
        The pressure of each point, sheet order (NaN where unknown).
    phase_per_point : list of str, optional
        The dominant structural phase of each point ("" where unknown: left
        out of the fits). None: every point in one group, "all".
    warn : callable
        Called with a one-line message for every spectrum or fit skipped.
    progress : callable
        Called with (points done, points in all) after each point.
    pressure_err_GPa : ndarray, optional
        Pressure errors, propagated into the E(P) fits through their slope.
    run_id : str
        The run's name, for messages (default: the sheet's folder).

    Returns
    -------
    StageResult
        Stage ``"optical"``: ``band_gap/...`` and ``pl_peak/...`` over the
        points, fits in ``extra`` under ``optical/<band_gap|pl_peak>/fit/<phase>/``.
    """
    measured = measure_points(sheet, optical_cfg, warn, progress, run_id=run_id)
    return fit_series(measured, optical_cfg, pressure_GPa, phase_per_point, warn, pressure_err_GPa=pressure_err_GPa)


def _attrs(cfg: dict) -> dict[str, object]:
    """The settings a result was computed with, as the group's attributes."""
    ab_cfg, pl_cfg = cfg["absorption"], cfg["pl"]
    return {"tauc": cfg["tauc"], "band_gap": cfg["band_gap"], "tauc_window": cfg["tauc_window"], "min_r2": float(cfg["min_r2"]),
            "baseline": cfg["baseline"], "smoothing_eV": float(cfg["smoothing_eV"]),
            "fit_model": cfg["fit_model"], "series": cfg["series"], "absorption_quantity": ab_cfg["quantity"],
            "absorption_x_unit": ab_cfg["x_unit"], "absorption_reference": ab_cfg["reference"] or "",
            "absorption_dark": ab_cfg.get("dark") or "",
            "pl_x_unit": pl_cfg["x_unit"], "pl_profile": pl_cfg["profile"], "pl_min_snr": float(pl_cfg["min_snr"]),
            "tauc_units": f"(absorbance eV)^{TRANSITIONS[cfg['tauc']]:g}; slopes per eV",
            "references": "Tauc, Grigorovici & Vancu, phys. stat. sol. 15, 627 (1966); "
                          "Makula, Pacia & Macyk, J. Phys. Chem. Lett. 9, 6814 (2018); "
                          "Zanatta, Sci. Rep. 9, 11225 (2019); "
                          "first exciton: Yu, Qu, Guo & Peng, Chem. Mater. 15, 2854 (2003); "
                          "Urbach, Phys. Rev. 92, 1324 (1953); "
                          "deformation potential: Wei & Zunger, Phys. Rev. B 60, 5404 (1999)"}


def measure_points(sheet: Sheet, optical_cfg: dict, warn: Callable[[str], None] = lambda message: None,
                   progress: Callable[[int, int], None] = lambda done, total: None, *,
                   run_id: str = "") -> StageResult:
    """Band gap (:func:`~dacpipe.optical.tauc.tauc_gap`) and PL peak
    (:func:`~dacpipe.optical.pl.fit_pl_peak`) of every point of ``sheet``.

    A point's values depend on its own spectra and the settings only (and
    the absorption reference the settings name), never on the other points.

    Parameters
    ----------
    sheet : Sheet
        The sheet, or some of its points; their ``absorption`` and ``pl`` columns.
    optical_cfg : dict
        The run's ``optical`` section.
    warn, progress : callable
        As for :func:`optical_series`.
    run_id : str
        The run's name, for messages (default: the sheet's folder).

    Returns
    -------
    StageResult
        Stage ``"optical"``: ``band_gap/<value>`` and ``pl_peak/<value>``
        over the points (NaN where a spectrum is absent or gave none), the
        status of each point (the reasons a spectrum was skipped), the
        spectra read as inputs, and each spectrum as read, on its own
        energy axis (``spectra/``, :data:`SPECTRA`, for the figures).
    """
    cfg = settings(optical_cfg)
    n = len(sheet.points)
    ab_cfg, pl_cfg = cfg["absorption"], cfg["pl"]
    gap = {name: np.full(n, np.nan) for name in _GAP_FIELDS}
    pl = {name: np.full(n, np.nan) for name in _PL_FIELDS}
    # The exciton and Urbach groups, filled by measure_gap beside the Tauc values it returns.
    methods = gap_methods(cfg)
    absorption = {"urbach": {name: np.full(n, np.nan) for name in _URBACH_FIELDS}}
    if "exciton" in methods:
        absorption["exciton"] = {name: np.full(n, np.nan) for name in _EXCITON_FIELDS}
    status, inputs = [], []
    run = run_id or sheet.path.parent.name

    reference, reference_error = None, None
    if ab_cfg["quantity"] == "intensity" and any("absorption" in p.files for p in sheet.points):
        ref_path = str(ab_cfg["reference"])
        inputs.append(ref_path)
        try:
            reference = read_optical(ref_path, ab_cfg["x_unit"], energy_range_eV=ab_cfg["energy_range_eV"])
        except InputError as err:
            reference_error = f"absorption reference {err}"
            warn(f"{run}: optical: {reference_error}")

    dark = None
    if reference is not None and ab_cfg.get("dark"):
        inputs.append(str(ab_cfg["dark"]))
        try:
            dark = read_optical(str(ab_cfg["dark"]), ab_cfg["x_unit"], energy_range_eV=ab_cfg["energy_range_eV"])
        except InputError as err:
            reference_error = f"absorption dark spectrum {err}"
            warn(f"{run}: optical: {reference_error}")

    def measure_gap(path):
        if reference_error:
            raise InputError(reference_error)
        sample = read_optical(path, ab_cfg["x_unit"], energy_range_eV=ab_cfg["energy_range_eV"])
        absorbance = absorbance_from(sample, ab_cfg["quantity"], reference, dark)
        read["absorption"] = (absorbance.energy_eV, absorbance.values)  # kept even when no edge is found
        values, partial = absorption_values(absorbance.energy_eV, absorbance.values, cfg)
        # i, point and reasons are those of the point the loop below is measuring.
        for group, fields in values.items():
            for name, value in ({} if group == "band_gap" else fields).items():
                absorption[group][name][i] = value
        for why in partial:
            err = InputError(why).with_path(path)
            reasons.append(f"optical: {err}")
            warn(f"{run}/{point.point}: optical: {err}")
        return values.get("band_gap", {})

    def measure_pl(path):
        spectrum = read_optical(path, pl_cfg["x_unit"], density=True, energy_range_eV=pl_cfg["energy_range_eV"])
        read["pl"] = (spectrum.energy_eV, spectrum.values)
        return _pl_values(fit_pl_peak(spectrum.energy_eV, spectrum.values, profile=pl_cfg["profile"],
                                              min_snr=pl_cfg["min_snr"], background_scale=spectrum.jacobian))

    # Each spectrum as read (absorbance; PL per eV), for the figures, which are drawn from the store alone.
    read: dict[str, tuple] = {}
    shown: dict[str, list] = {"absorption": [None] * n, "pl": [None] * n}
    for i, point in enumerate(sheet.points):
        reasons = []
        for column, measure_one, table in (("absorption", measure_gap, gap), ("pl", measure_pl, pl)):
            path = point.files.get(column)
            if path is None:
                continue
            inputs.append(path)
            try:
                for name, value in measure_one(path).items():
                    table[name][i] = value
            except InputError as err:
                err = err.with_path(path)
                reasons.append(f"optical: {err}")
                warn(f"{run}/{point.point}: optical: {err}")
            shown[column][i] = read.pop(column, None)
        status.append("; ".join(reasons) if reasons else "ok")
        progress(i + 1, n)

    datasets = {f"band_gap/{name}": values for name, values in gap.items()}
    datasets.update({f"pl_peak/{name}": values for name, values in pl.items()})
    datasets.update(_padded_spectra(shown))
    datasets.update({f"{group}/{name}": values for group, table in absorption.items() for name, values in table.items()})
    if "tauc" not in methods:
        datasets = {name: values for name, values in datasets.items() if not name.startswith("band_gap/")}
    return StageResult(stage="optical", point_ids=sheet.point_ids, datasets=datasets, attrs=_attrs(cfg),
                       status=status, inputs=inputs)


# Store names of the spectra kept per point: (energy axis, values) per sheet column.
# The PL is a density per eV (the Jacobian of a wavelength axis applied), in the
# file's counts: no unit suffix, which would read as eV.
SPECTRA = {"absorption": ("spectra/absorption_energy_eV", "spectra/absorbance"),
           "pl": ("spectra/pl_energy_eV", "spectra/pl_intensity")}


def _padded_spectra(shown: dict[str, list]) -> dict[str, np.ndarray]:
    """``spectra/<axis>`` and ``spectra/<values>`` [N, longest spectrum] of each
    column (:data:`SPECTRA`), each row on its own spectrum's energy axis,
    NaN-padded; a column no point has a spectrum for gives none."""
    out = {}
    for column, rows in shown.items():
        width = max((len(row[0]) for row in rows if row is not None), default=0)
        if width == 0:
            continue
        axis, values = (np.full((len(rows), width), np.nan) for _ in range(2))
        for i, row in enumerate(rows):
            if row is not None:
                axis[i, :len(row[0])], values[i, :len(row[1])] = row
        out.update(dict(zip(SPECTRA[column], (axis, values))))
    return out


def _systematic_extras(prefix: str, fit: PressureFit, member: np.ndarray, p, E, s, sp, systematic: dict
                       ) -> dict[str, np.ndarray]:
    """``<prefix>/<coefficient>_sys_err`` from the pressure terms common to all points, and ``systematic/``."""
    shifts = {name: np.asarray(v, float)[member] for name, v in systematic.items()}
    result = propagate_systematic_energy(p[member], E[member], s[member], shifts, model=fit.model,
                                         pressure_err_GPa=None if sp is None else sp[member])
    names = {"E0_eV": "E0_sys_err_eV", "alpha_eV_per_GPa": "alpha_sys_err_eV_per_GPa",
             "beta_eV_per_GPa2": "beta_sys_err_eV_per_GPa2"}
    out = {f"{prefix}/{store}": np.asarray(result.errors.get(name, np.nan) if result.by_source else np.nan)
           for name, store in names.items()}
    sources = list(result.by_source)
    out[f"{prefix}/systematic/sources"] = np.array(sources, dtype=object)
    out[f"{prefix}/systematic/alpha_sys_err_eV_per_GPa"] = np.array(
        [result.by_source[src].get("alpha_eV_per_GPa", np.nan) for src in sources], dtype=float)
    return out


def _temperature_extras(prefix: str, fit: TemperatureFit, point_ids: list[str]) -> dict[str, np.ndarray]:
    out = {f"{prefix}/{name}": np.asarray(value) for name, value in fit.values.items()}
    out.update({f"{prefix}/{name}_err": np.asarray(value) for name, value in fit.errors.items()})
    out.update({f"{prefix}/covariance": fit.covariance, f"{prefix}/n_points": np.int64(fit.n_points),
                f"{prefix}/temperature_min_K": np.asarray(fit.temperature_min_K),
                f"{prefix}/temperature_max_K": np.asarray(fit.temperature_max_K),
                f"{prefix}/reduced_chi2": np.asarray(fit.reduced_chi2),
                f"{prefix}/dEdT_eV_per_K": np.asarray(fit.dEdT_eV_per_K),
                f"{prefix}/points": np.array(point_ids, dtype=object)})
    return out


def fit_series(measured: StageResult, optical_cfg: dict, pressure_GPa: np.ndarray,
               phase_per_point: list[str] | None = None,
               warn: Callable[[str], None] = lambda message: None, *,
               pressure_err_GPa: np.ndarray | None = None, systematic_GPa: dict | None = None,
               temperature_K: np.ndarray | None = None, eos_fits: dict | None = None) -> StageResult:
    """The optical group of a run from the values of its points: each
    point's pressure and phase beside them, and E(P) per phase (:func:`fit_phases`).

    Parameters
    ----------
    measured : StageResult
        :func:`measure_points` over every point of the run, in sheet order
        (possibly spliced from several calls).
    optical_cfg : dict
        The run's ``optical`` section.
    pressure_GPa, phase_per_point, warn, pressure_err_GPa
        As for :func:`optical_series`; ``pressure_err_GPa`` the random part
        of the pressure errors (the fits' weights).
    systematic_GPa : dict, optional
        Source -> [N] 1-sigma shift of every point's pressure, common to all
        points (:func:`~dacpipe.pressure.budget.random_and_systematic`): carried to E0, dE/dP and beta
        (:func:`~dacpipe.optical.pressure_fit.propagate_systematic_energy`)
        as ``E0_sys_err_eV``, ``alpha_sys_err_eV_per_GPa``,
        ``beta_sys_err_eV_per_GPa2`` beside each fit, with each source's
        dE/dP share under ``systematic/``.
    temperature_K : ndarray, optional
        Each point's temperature: with ``series: temperature``, E(T) per phase
        with each model of :mod:`~dacpipe.optical.temperature_fit` under
        ``optical/<group>/temperature_fit/<phase>/<model>/``.
    eos_fits : dict, optional
        Phase -> ``(EosParams, covariance, parameter_names)`` of the EOS
        stage (:func:`eos_fits`): each band gap's (Tauc, exciton) volume
        deformation potential per phase under
        ``optical/<group>/deformation/<phase>/`` (:func:`_deformation_extras`);
        a phase without one gets NaN and the reason.

    Returns
    -------
    StageResult
        As :func:`optical_series`; status and inputs those of ``measured``.
    """
    cfg = settings(optical_cfg)
    ids = list(measured.point_ids)
    n = len(ids)
    pressure = np.asarray(pressure_GPa, dtype=float).ravel()
    if pressure.shape != (n,):
        raise ValueError(f"pressure_GPa has {pressure.size} values for {n} points")
    if phase_per_point is None:
        phases = ["all"] * n
    else:
        if len(phase_per_point) != n:
            raise ValueError(f"phase_per_point has {len(phase_per_point)} labels for {n} points")
        # "/" would open a group in the store.
        phases = [str(label or "").replace("/", "_") for label in phase_per_point]
    pl = {name: np.asarray(measured.datasets[f"pl_peak/{name}"], dtype=float) for name in _PL_FIELDS}
    methods = gap_methods(cfg)
    # A group not measured (no Tauc with band_gap: exciton; a part measured before
    # the exciton and Urbach groups existed): NaN, as for a spectrum that gave none.
    gap = {name: np.asarray(measured.datasets.get(f"band_gap/{name}", np.full(n, np.nan)), dtype=float)
           for name in _GAP_FIELDS}
    exciton = {name: np.asarray(measured.datasets.get(f"exciton/{name}", np.full(n, np.nan)), dtype=float)
               for name in _EXCITON_FIELDS}
    urbach = {name: np.asarray(measured.datasets.get(f"urbach/{name}", np.full(n, np.nan)), dtype=float)
              for name in _URBACH_FIELDS}
    eos = {str(phase).replace("/", "_"): fit for phase, fit in (eos_fits or {}).items()}
    series = [("pl_peak", pl["energy_eV"], pl["energy_err_eV"], "PL peak")]
    if "exciton" in methods:
        series.insert(0, ("exciton", exciton["energy_eV"], exciton["energy_err_eV"], "exciton"))
    if "tauc" in methods:
        series.insert(0, ("band_gap", gap["band_gap_eV"], gap["band_gap_err_eV"], "band gap"))

    extra: dict[str, np.ndarray] = {}
    for group, energy, error, what in series:
        fits = fit_phases(pressure, energy, error, phases, ids, model=cfg["fit_model"],
                          pressure_err_GPa=pressure_err_GPa, warn=warn, what=what)
        labels = np.array(phases, dtype=object)
        sp = None if pressure_err_GPa is None else np.asarray(pressure_err_GPa, dtype=float)
        for phase, (fit, used) in fits.items():
            extra.update(_fit_extras(f"optical/{group}/fit/{phase}", fit, used))
            if group != "pl_peak":  # a band gap: its volume deformation potential with the phase's EOS
                member = (labels == phase) & np.isfinite(pressure) & np.isfinite(energy)
                extra.update(_deformation_extras(f"optical/{group}/deformation/{phase}", fit, eos.get(phase),
                                                 float(np.mean(pressure[member])), warn, what, phase))
            if systematic_GPa:
                member = (labels == phase) & np.isfinite(pressure) & np.isfinite(energy)
                extra.update(_systematic_extras(f"optical/{group}/fit/{phase}", fit, member, pressure, energy,
                                                np.asarray(error, float), sp, systematic_GPa))
        if cfg["series"] == "temperature" and temperature_K is not None:
            t = np.asarray(temperature_K, dtype=float)
            for phase in dict.fromkeys(label for label in phases if label):
                member = (labels == phase) & np.isfinite(t) & np.isfinite(energy)
                for model in TEMPERATURE_MODELS:
                    try:
                        tfit = fit_energy_vs_temperature(t[member], energy[member], np.asarray(error)[member],
                                                         model=model)
                    except InputError as err:
                        warn(f"optical: {what} of phase {phase}: no {model} E(T) fit: {err}")
                        break
                    extra.update(_temperature_extras(f"optical/{group}/temperature_fit/{phase}/{model}", tfit,
                                                     [ids[i] for i in np.flatnonzero(member)]))

    method = f"tauc-{cfg['tauc']}"
    datasets: dict[str, np.ndarray] = {}
    if "tauc" in methods:
        datasets.update({"band_gap/pressure_GPa": pressure.copy(), "band_gap/phase": np.array(phases, dtype=object),
                         "band_gap/method": np.array([method] * n, dtype=object)})
        datasets.update({f"band_gap/{name}": values for name, values in gap.items()})
    if "exciton" in methods:
        datasets.update({"exciton/pressure_GPa": pressure.copy(), "exciton/phase": np.array(phases, dtype=object),
                         "exciton/method": np.array(["second-derivative minimum"] * n, dtype=object)})
        datasets.update({f"exciton/{name}": values for name, values in exciton.items()})
    datasets.update({"urbach/pressure_GPa": pressure.copy(), "urbach/phase": np.array(phases, dtype=object)})
    datasets.update({f"urbach/{name}": values for name, values in urbach.items()})
    datasets.update({"pl_peak/pressure_GPa": pressure.copy(), "pl_peak/phase": np.array(phases, dtype=object),
                     "pl_peak/method": np.array([f"{cfg['pl']['profile']} fit"] * n, dtype=object)})
    datasets.update({f"pl_peak/{name}": values for name, values in pl.items()})
    datasets.update({name: values for name, values in measured.datasets.items() if name.startswith("spectra/")})
    return StageResult(stage="optical", point_ids=ids, datasets=datasets, extra=extra, attrs=_attrs(cfg),
                       status=list(measured.status), inputs=list(measured.inputs))
