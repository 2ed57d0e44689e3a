"""The optical stage: absorption edges and photoluminescence of every point, and E(P) per phase.

Spectra are read by :func:`dacpipe.spectra.read_xy` (plain text, CSV,
Ocean Optics, SPE, JCAMP-DX) and put on a photon-energy axis:
``E = hc / lambda`` with hc = 1239.84198 eV nm, or ``E = 1.239841984e-4 eV
x wavenumber (cm^-1)`` (CODATA 2018). Intensities that are densities per
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
:func:`dacpipe.bandgap.tauc_gap`, the emission peak from
:func:`dacpipe.bandgap.fit_pl_peak`; the pressure dependence of each is
fitted per structural phase (:func:`dacpipe.bandgap.fit_energy_vs_pressure`).
A spectrum that cannot be used (bad file, no edge, no peak) leaves NaN in
its point's values and its reason in the point's status, and the stage
goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import bandgap
from .config import validate_section
from .errors import ConfigError, InputError
from .sheet import Sheet
from .spectra import read_xy
from .store import StageResult

HC_EV_NM = 1239.84198
"""h c in eV nm (CODATA 2018: 1239.841984...)."""
EV_PER_CM1 = 1.239841984e-4
"""Photon energy of one wavenumber, eV per cm^-1."""
X_UNITS = ("nm", "eV", "cm-1")
QUANTITIES = ("absorbance", "transmission", "transmission_percent", "intensity")

_MIN_POINTS = bandgap.MIN_POINTS


@dataclass(frozen=True, eq=False)  # eq=False: == on arrays would be ambiguous
class OpticalSpectrum:
    """A spectrum on a photon-energy axis.

    Attributes
    ----------
    energy_eV : ndarray
        Strictly increasing.
    values : ndarray
        Absorbance, or intensity per eV (Jacobian applied).
    source : str
        The path(s) read.
    y_unit : str
        What the file declares its y to be (JCAMP-DX ``##YUNITS``), else ``""``.
    jacobian : ndarray or None
        The factor each value was multiplied by to become a density per eV
        (:func:`jacobian`); None when none was applied.
    """

    energy_eV: np.ndarray
    values: np.ndarray
    source: str
    y_unit: str = ""
    jacobian: np.ndarray | None = None


def photon_energy_eV(x, x_unit: str):
    """Photon energy (eV) of wavelengths (nm), wavenumbers (cm^-1) or energies (eV)."""
    x = np.asarray(x, dtype=float)
    if x_unit == "eV":
        return x.copy()
    if np.any(x <= 0):
        raise InputError(f"{x_unit} axis has a value <= 0 ({np.min(x):g}); it cannot be a photon energy")
    if x_unit == "nm":
        return HC_EV_NM / x
    if x_unit == "cm-1":
        return EV_PER_CM1 * x
    raise ValueError(f"x_unit must be one of {X_UNITS}, got {x_unit!r}")


def jacobian(x, x_unit: str):
    """``|dx/dE|`` at each ``x``: what a density per unit of x is multiplied by to be one per eV.

    ``lambda^2 / hc`` for nm (so that I(E) dE = I(lambda) d lambda), ``1 / 1.2398e-4``
    for cm^-1, 1 for eV.
    """
    x = np.asarray(x, dtype=float)
    if x_unit == "nm":
        return x**2 / HC_EV_NM
    if x_unit == "cm-1":
        return np.full_like(x, 1.0 / EV_PER_CM1)
    if x_unit == "eV":
        return np.ones_like(x)
    raise ValueError(f"x_unit must be one of {X_UNITS}, got {x_unit!r}")


def to_energy(x, y, x_unit: str, *, density: bool):
    """Put a spectrum on an increasing photon-energy axis.

    Parameters
    ----------
    x, y : array_like
        Axis (nm, eV or cm^-1) and values.
    x_unit : {"nm", "eV", "cm-1"}
    density : bool
        True for an intensity per unit of ``x`` (PL counts per nm): it is
        multiplied by ``|dx/dE|`` (``lambda^2 / hc`` for nm, ``1 / 1.2398e-4``
        for cm^-1), which conserves the integral. False for absorbance,
        transmission and other ratios, which are not densities.

    Returns
    -------
    energy_eV, values : ndarray
        Sorted by increasing energy.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    energy = photon_energy_eV(x, x_unit)
    if density:
        y = y * jacobian(x, x_unit)  # I(E) = I(lambda) |d lambda / dE| = I(lambda) lambda^2 / hc
    order = np.argsort(energy, kind="stable")
    return energy[order], y[order]


def read_optical(path, x_unit: str = "nm", *, density: bool = False,
                 energy_range_eV: Sequence[float] | None = None) -> OpticalSpectrum:
    """Read a spectrum file and put it on a photon-energy axis.

    A file that declares its axis (an SPE wavelength calibration, a
    JCAMP-DX ``##XUNITS``) is read in that unit; ``x_unit`` applies to the
    files that do not (plain text, CSV). Text axes in eV or cm^-1 may be
    descending (an instrument scanning in wavelength exports them so); a
    wavelength axis must increase, as for every dacpipe spectrum.

    Parameters
    ----------
    path : str or Path
    x_unit : {"nm", "eV", "cm-1"}
    density : bool
        Apply the Jacobian (see :func:`to_energy`).
    energy_range_eV : (float, float), optional
        Keep only this range.

    Raises
    ------
    InputError
        Unreadable file, fewer than 20 points, all values zero, or no point
        in ``energy_range_eV``; with the path.
    """
    if x_unit not in X_UNITS:
        raise ValueError(f"x_unit must be one of {X_UNITS}, got {x_unit!r}")
    path = Path(path)
    data = read_xy(path, allow_descending=x_unit != "nm")
    unit = data.x_unit or x_unit
    x = np.asarray(data.x, dtype=float)
    if unit == "um":
        x, unit = x * 1000.0, "nm"
    try:
        energy, values = to_energy(x, data.y, unit, density=density)
        factor = to_energy(x, jacobian(x, unit), unit, density=False)[1] if density else None
        if energy_range_eV is not None:
            lo, hi = (float(v) for v in energy_range_eV)
            keep = (energy >= lo) & (energy <= hi)
            energy, values = energy[keep], values[keep]
            factor = None if factor is None else factor[keep]
        if energy.size < _MIN_POINTS:
            where = "" if energy_range_eV is None else f" in {lo:g}-{hi:g} eV"
            raise InputError(f"only {energy.size} points{where}, need at least {_MIN_POINTS}")
        if not np.any(values != 0):
            raise InputError("all values are zero")
    except InputError as err:
        raise err.with_path(path) from None
    return OpticalSpectrum(energy, values, str(path), data.y_unit, factor)


def absorbance_from(sample: OpticalSpectrum, quantity: str,
                    reference: OpticalSpectrum | None = None) -> OpticalSpectrum:
    """Absorbance from what was measured.

    ``"absorbance"`` is kept; ``"transmission"`` (0-1) and
    ``"transmission_percent"`` give ``-log10 T``; ``"intensity"`` gives
    ``-log10(I / I0)`` with I0 the reference interpolated onto the sample's
    energies (points outside the reference's range are left out). Points
    where T or I/I0 is not positive (a saturated edge: no light through) are
    left out; more than half of them is an error.

    Raises
    ------
    InputError
        Quantity and file disagree (JCAMP-DX ``##YUNITS``), transmission
        above 1.5 (percent read as a fraction), or too few usable points.
    """
    if quantity not in QUANTITIES:
        raise ValueError(f"quantity must be one of {QUANTITIES}, got {quantity!r}")
    declared = sample.y_unit.upper()
    if quantity == "absorbance" and "TRANSMITTANCE" in declared:
        raise InputError(f"the file declares ##YUNITS={sample.y_unit} but optical.absorption.quantity "
                         "is absorbance", sample.source)
    if quantity.startswith("transmission") and "ABSORBANCE" in declared:
        raise InputError(f"the file declares ##YUNITS={sample.y_unit} but optical.absorption.quantity "
                         f"is {quantity}", sample.source)
    e, y = sample.energy_eV, sample.values
    if quantity == "absorbance":
        return sample
    if quantity == "intensity":
        if reference is None:
            raise ValueError("quantity 'intensity' needs a reference spectrum")
        inside = (e >= reference.energy_eV[0]) & (e <= reference.energy_eV[-1])
        if inside.sum() < _MIN_POINTS:
            raise InputError(f"the reference {reference.source} covers only {int(inside.sum())} of the "
                             "sample's points", sample.source)
        e, y = e[inside], y[inside]
        ratio = y / np.interp(e, reference.energy_eV, reference.values)
        what = "I/I0"
    else:
        ratio = y / 100.0 if quantity == "transmission_percent" else y
        if np.max(ratio) > 1.5:
            raise InputError(f"transmission up to {np.max(ratio):g} (> 1): percent read as a fraction? "
                             "set optical.absorption.quantity: transmission_percent", sample.source)
        what = "transmission"
    good = np.isfinite(ratio) & (ratio > 0)
    if good.sum() < max(_MIN_POINTS, ratio.size // 2):
        raise InputError(f"{what} is zero or negative at {int((~good).sum())} of {ratio.size} points",
                         sample.source)
    source = sample.source if reference is None else f"{sample.source} / {reference.source}"
    return OpticalSpectrum(e[good], -np.log10(ratio[good]), source, "ABSORBANCE")


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
_PL_FIELDS = ("energy_eV", "energy_err_eV", "fwhm_eV", "fwhm_err_eV", "area", "area_err", "amplitude",
              "eta", "snr", "window_lo_eV", "window_hi_eV")


def _gap_values(fit: bandgap.TaucFit) -> dict[str, float]:
    return {"band_gap_eV": fit.band_gap_eV, "band_gap_err_eV": fit.band_gap_err_eV,
            "band_gap_stat_err_eV": fit.band_gap_stat_err_eV, "window_spread_eV": fit.window_spread_eV,
            "zero_line_gap_eV": fit.zero_line_gap_eV, "inflection_eV": fit.inflection_eV,
            "window_lo_eV": fit.edge.window_eV[0], "window_hi_eV": fit.edge.window_eV[1],
            "baseline_lo_eV": fit.baseline.window_eV[0], "baseline_hi_eV": fit.baseline.window_eV[1],
            "tauc_edge_intercept": fit.edge.intercept, "tauc_edge_slope": fit.edge.slope,
            "tauc_edge_r_squared": fit.edge.r_squared, "tauc_baseline_intercept": fit.baseline.intercept,
            "tauc_baseline_slope": fit.baseline.slope,
            "absorbance_baseline_intercept": fit.absorbance_baseline[0],
            "absorbance_baseline_slope": fit.absorbance_baseline[1]}


def _pl_values(fit: bandgap.PeakFit) -> dict[str, float]:
    return {"energy_eV": fit.energy_eV, "energy_err_eV": fit.energy_err_eV, "fwhm_eV": fit.fwhm_eV,
            "fwhm_err_eV": fit.fwhm_err_eV, "area": fit.area, "area_err": fit.area_err,
            "amplitude": fit.amplitude, "eta": fit.eta, "snr": fit.snr,
            "window_lo_eV": fit.window_eV[0], "window_hi_eV": fit.window_eV[1]}


def _fit_extras(prefix: str, fit: bandgap.PressureFit, point_ids: list[str]) -> dict[str, np.ndarray]:
    values = {"E0_eV": fit.E0_eV, "E0_err_eV": fit.E0_err_eV, "alpha_eV_per_GPa": fit.alpha_eV_per_GPa,
              "alpha_err_eV_per_GPa": fit.alpha_err_eV_per_GPa, "beta_eV_per_GPa2": fit.beta_eV_per_GPa2,
              "beta_err_eV_per_GPa2": fit.beta_err_eV_per_GPa2, "covariance": fit.covariance,
              "model": fit.model, "n_points": np.int64(fit.n_points),
              "pressure_min_GPa": fit.pressure_min_GPa, "pressure_max_GPa": fit.pressure_max_GPa,
              "reduced_chi2": fit.reduced_chi2, "error_scale": fit.error_scale,
              "points": np.array(point_ids, dtype=object)}
    return {f"{prefix}/{name}": np.asarray(value) for name, value in values.items()}


def fit_phases(pressure_GPa, energy_eV, energy_err_eV, phases: Sequence[str], point_ids: Sequence[str], *,
               model: str = "auto", pressure_err_GPa=None,
               warn: Callable[[str], None] = lambda message: None, what: str = "band gap"
               ) -> dict[str, tuple[bandgap.PressureFit, list[str]]]:
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
            fit = bandgap.fit_energy_vs_pressure(p[member], E[member], s[member], model=model,
                                                 pressure_err_GPa=None if sp is None else sp[member])
        except InputError as err:
            warn(f"optical: {what} of phase {phase}: {err}")
            continue
        if model == "quadratic" and fit.model == "linear":
            warn(f"optical: {what} of phase {phase}: {fit.n_points} points, linear fit instead of quadratic")
        out[phase] = (fit, used)
    return out


def optical_stage(sheet: Sheet, optical_cfg: dict, pressure_GPa: np.ndarray,
                  phase_per_point: list[str] | None = None,
                  warn: Callable[[str], None] = lambda message: None,
                  progress: Callable[[int, int], None] = lambda done, total: None, *,
                  pressure_err_GPa: np.ndarray | None = None) -> StageResult:
    """Band gap and PL peak of every point, and their pressure dependence per phase.

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

    Returns
    -------
    StageResult
        Stage ``"optical"``: ``band_gap/...`` and ``pl_peak/...`` over the
        points, fits in ``extra`` under ``optical/<band_gap|pl_peak>/fit/<phase>/``.
    """
    cfg = settings(optical_cfg)
    n = len(sheet.points)
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
    ab_cfg, pl_cfg = cfg["absorption"], cfg["pl"]
    gap = {name: np.full(n, np.nan) for name in _GAP_FIELDS}
    pl = {name: np.full(n, np.nan) for name in _PL_FIELDS}
    status, inputs = [], []
    run = sheet.path.parent.name

    reference, reference_error = None, None
    if ab_cfg["quantity"] == "intensity" and any("absorption" in p.files for p in sheet.points):
        ref_path = str(ab_cfg["reference"])
        inputs.append(ref_path)
        try:
            reference = read_optical(ref_path, ab_cfg["x_unit"], energy_range_eV=ab_cfg["energy_range_eV"])
        except InputError as err:
            reference_error = f"absorption reference {err}"
            warn(f"{run}: optical: {reference_error}")

    def measure_gap(path):
        if reference_error:
            raise InputError(reference_error)
        sample = read_optical(path, ab_cfg["x_unit"], energy_range_eV=ab_cfg["energy_range_eV"])
        absorbance = absorbance_from(sample, ab_cfg["quantity"], reference)
        return _gap_values(bandgap.tauc_gap(absorbance.energy_eV, absorbance.values, transition=cfg["tauc"],
                                            min_r2=cfg["min_r2"], rule=cfg["tauc_window"],
                                            baseline=cfg["baseline"], smoothing_eV=cfg["smoothing_eV"]))

    def measure_pl(path):
        spectrum = read_optical(path, pl_cfg["x_unit"], density=True, energy_range_eV=pl_cfg["energy_range_eV"])
        return _pl_values(bandgap.fit_pl_peak(spectrum.energy_eV, spectrum.values, profile=pl_cfg["profile"],
                                              min_snr=pl_cfg["min_snr"], background_scale=spectrum.jacobian))

    for i, point in enumerate(sheet.points):
        reasons = []
        for column, measure, table in (("absorption", measure_gap, gap), ("pl", measure_pl, pl)):
            path = point.files.get(column)
            if path is None:
                continue
            inputs.append(path)
            try:
                for name, value in measure(path).items():
                    table[name][i] = value
            except InputError as err:
                err = err.with_path(path)
                reasons.append(f"optical: {err}")
                warn(f"{run}/{point.point}: optical: {err}")
        status.append("; ".join(reasons) if reasons else "ok")
        progress(i + 1, n)

    ids = sheet.point_ids
    extra: dict[str, np.ndarray] = {}
    for group, energy, error, what in (("band_gap", gap["band_gap_eV"], gap["band_gap_err_eV"], "band gap"),
                                       ("pl_peak", pl["energy_eV"], pl["energy_err_eV"], "PL peak")):
        fits = fit_phases(pressure, energy, error, phases, ids, model=cfg["fit_model"],
                          pressure_err_GPa=pressure_err_GPa, warn=warn, what=what)
        for phase, (fit, used) in fits.items():
            extra.update(_fit_extras(f"optical/{group}/fit/{phase}", fit, used))

    method = f"tauc-{cfg['tauc']}"
    datasets: dict[str, np.ndarray] = {"band_gap/pressure_GPa": pressure.copy(),
                                       "band_gap/phase": np.array(phases, dtype=object),
                                       "band_gap/method": np.array([method] * n, dtype=object)}
    datasets.update({f"band_gap/{name}": values for name, values in gap.items()})
    datasets.update({"pl_peak/pressure_GPa": pressure.copy(), "pl_peak/phase": np.array(phases, dtype=object),
                     "pl_peak/method": np.array([f"{pl_cfg['profile']} fit"] * n, dtype=object)})
    datasets.update({f"pl_peak/{name}": values for name, values in pl.items()})
    attrs = {"tauc": cfg["tauc"], "tauc_window": cfg["tauc_window"], "min_r2": float(cfg["min_r2"]),
             "baseline": cfg["baseline"], "smoothing_eV": float(cfg["smoothing_eV"]),
             "fit_model": cfg["fit_model"], "absorption_quantity": ab_cfg["quantity"],
             "absorption_x_unit": ab_cfg["x_unit"], "absorption_reference": ab_cfg["reference"] or "",
             "pl_x_unit": pl_cfg["x_unit"], "pl_profile": pl_cfg["profile"], "pl_min_snr": float(pl_cfg["min_snr"]),
             "tauc_units": f"(absorbance eV)^{bandgap.TRANSITIONS[cfg['tauc']]:g}; slopes per eV",
             "references": "Tauc, Grigorovici & Vancu, phys. stat. sol. 15, 627 (1966); "
                           "Makula, Pacia & Macyk, J. Phys. Chem. Lett. 9, 6814 (2018); "
                           "Zanatta, Sci. Rep. 9, 11225 (2019)"}
    return StageResult(stage="optical", point_ids=ids, datasets=datasets, extra=extra, attrs=attrs,
                       status=status, inputs=inputs)
