"""The pressure stage: gauge spectra of every point to pressure with an honest error.

For each point the gauge spectra taken before and after the exposure are
read, fitted, corrected for temperature and converted with the configured
scale. The point's pressure is the mean of the two; its uncertainty has a
random part, independent from point to point,

* the fit: the standard error of the line position through dP/dx,
* the drift: the pressure moved from P_before to P_after during the
  exposure; taken as a rectangular distribution over that interval, its
  standard uncertainty is |P_after - P_before| / (2 sqrt 3) (GUM, JCGM
  100:2008, section 4.3.7),

and a systematic part, the same error for every point of the run (fully
correlated between points, and between before and after, so never averaged
down):

* the scale: the published uncertainty of the scale's coefficients,
* the ambient position: sigma(x0) through dP/dx0 (``pressure.x0_err``, or
  the gauge's spread of published values),
* the temperature: ``pressure.temperature_err_K`` through the slope of the
  line's thermal shift and dP/dx (gauges corrected for temperature only).

``pressure_random_err_GPa`` and ``pressure_sys_err_GPa`` are the two parts
(each in quadrature), ``pressure_err_GPa`` their quadrature sum (for
display). Fits over the run (EOS, E(P)) weight the points by the random part
only and carry each systematic term to their parameters separately
(:mod:`dacpipe.eos.stage`, :mod:`dacpipe.optical.stage`): a scale error
shifts every point the same way and is no scatter to average.

A spectrum that cannot be used leaves NaN in its columns and its reason in
the point's status; the point keeps the pressure of its other spectrum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core.errors import InputError
from ..core.results import StageContext, StageResult
from ..io.refs import file_record
from ..io.sheet import Sheet
from ..io.spectra import nm_to_raman_shift, read_spectrum
from .checks import check_axis, check_misfit, check_pressure, check_temperature, plausible_positions
from .gauges import Gauge, get_gauge
from .hydrostatic import pressure_gradient, r1_r2_splitting_cm1
from .media import get_medium, medium_attrs, medium_regime, regime_warning
from .scales import PressureScale, get_scale, temperature_corrected_position, thermal_slope_nm_per_K

SYSTEMATIC_TERMS = ("pressure_err_x0_GPa", "pressure_err_temperature_GPa")
"""The pressure group's systematic terms besides the scale's, each a 1-sigma
shift of every point in the same direction (one source each). With one
``pressure_err_scale_<coefficient>_GPa`` per coefficient of the scale, they
are listed in the group's ``@systematic_terms``: what the EOS and E(P)
stages propagate to their parameters."""

@dataclass(frozen=True)
class GaugeSettings:
    """Everything needed to turn one gauge spectrum into a pressure."""

    gauge: Gauge
    scale: PressureScale
    x0: float                      # ambient position (nm, or cm^-1 for diamond)
    x0_err: float                  # its standard uncertainty (same unit)
    temperature_err_K: float       # standard uncertainty of each point's temperature
    reference_temperature_K: float
    temperature_correction: str
    profile: str
    x_unit: str
    laser_nm: float | None
    rows: tuple[int, int] | None
    columns: tuple[int, int] | None

    @classmethod
    def from_config(cls, pressure_cfg: dict) -> "GaugeSettings":
        gauge = get_gauge(pressure_cfg["gauge"])
        scale = get_scale(pressure_cfg["scale"], gauge.name)
        x0 = pressure_cfg[gauge.x0_key]
        spectrum = pressure_cfg["spectrum"]
        as_range = lambda r: None if r is None else (int(r[0]), int(r[1]))  # noqa: E731
        x0_err = pressure_cfg.get("x0_err")
        return cls(gauge=gauge, scale=scale, x0=scale.x0_default if x0 is None else float(x0),
                   x0_err=gauge.x0_err_default if x0_err is None else float(x0_err),
                   temperature_err_K=float(pressure_cfg.get("temperature_err_K", 1.0)),
                   reference_temperature_K=float(pressure_cfg["reference_temperature_K"]),
                   temperature_correction=pressure_cfg["temperature_correction"],
                   profile=pressure_cfg["profile"], x_unit=spectrum["x_unit"], laser_nm=spectrum["laser_nm"],
                   rows=as_range(spectrum["rows"]), columns=as_range(spectrum["columns"]))


@dataclass(frozen=True)
class GaugeReading:
    """One gauge spectrum, fitted and converted."""

    fit: object                # RubyFit, SingleLineFit or EdgeFit
    position: float            # temperature-corrected position the scale reads
    pressure_GPa: float
    fit_err_GPa: float         # from the position's standard error
    scale_err_GPa: float       # from the scale's coefficients (NaN if unpublished)
    warnings: tuple[str, ...] = ()  # doubts about the number (dacpipe.pressure.checks)
    x0_err_GPa: float = 0.0    # from sigma(x0), systematic
    temperature_err_GPa: float = 0.0  # from sigma(T) through the thermal shift, systematic
    scale_terms_GPa: dict = None  # coefficient -> |dP| of its 1-sigma change, systematic


def read_gauge_spectrum(path: str, settings: GaugeSettings):
    """Read a gauge spectrum with the axis its fit needs (nm, or cm^-1 for diamond)."""
    if settings.gauge.axis == "cm-1":
        if settings.x_unit == "raman_shift_cm-1":
            return read_spectrum(path, x_unit="cm-1", rows=settings.rows, columns=settings.columns)
        if settings.laser_nm is None:
            raise InputError("diamond-raman spectra in nm need pressure.spectrum.laser_nm", path)
        spec = read_spectrum(path, x_unit="nm", rows=settings.rows, columns=settings.columns)
        # Shift decreases as wavelength decreases; the fits want increasing x.
        shift = nm_to_raman_shift(spec.x, settings.laser_nm)
        return type(spec)(x=shift, y=spec.y, x_unit="cm-1", source=spec.source, notes=spec.notes)
    return read_spectrum(path, x_unit=settings.x_unit, laser_nm=settings.laser_nm,
                         rows=settings.rows, columns=settings.columns)


def measure(x: np.ndarray, y: np.ndarray, temperature_K: float, settings: GaugeSettings) -> GaugeReading:
    """Fit one gauge spectrum and convert it to pressure (arrays in, no I/O).

    Raises InputError when the reading would be impossible (an axis that
    misses the gauge's lines, a temperature beyond the gauge, another
    gauge's spectrum, a pressure below -2 GPa, no finite error); doubts (a
    temperature or pressure outside the calibration, a doublet not ruby's,
    a large misfit) go to ``warnings`` (:mod:`dacpipe.pressure.checks`).
    """
    gauge, scale = settings.gauge, settings.scale
    unit = "cm-1" if gauge.axis == "cm-1" else "nm"
    check_axis(x, plausible_positions(scale, settings.x0, gauge.max_GPa), unit, gauge.name)
    warnings = [check_temperature(temperature_K, gauge)]
    fit = gauge.fit(x, y, settings.profile)
    if gauge.signature is not None:
        warnings.append(gauge.signature(x, y, fit))
    pos_name, err_name = gauge.position
    raw, raw_err = getattr(fit, pos_name), getattr(fit, err_name)
    method = settings.temperature_correction if gauge.thermal_shift else "none"
    position = float(temperature_corrected_position(raw, temperature_K, settings.reference_temperature_K, method,
                                                    gauge=gauge.name))
    pressure = float(scale.pressure_GPa(position, settings.x0))
    warnings.append(check_pressure(pressure, raw, scale, unit))
    fit_err = float(abs(scale.slope_GPa_per_unit(position, settings.x0)) * raw_err)
    if not math.isfinite(fit_err):
        raise InputError(f"no finite error for the line at {raw:.2f} {unit}")
    if gauge.lines is not None:
        warnings.append(check_misfit(x, y, fit, gauge.lines(fit), "R1" if gauge.name == "ruby" else "line"))
    slope = float(abs(scale.slope_GPa_per_unit(position, settings.x0)))
    x0_err = float(abs(scale.x0_slope_GPa_per_unit(position, settings.x0)) * settings.x0_err)
    # A corrected line moves by (d shift/dT) sigma_T when T is off by sigma_T.
    temperature_err = (slope * abs(thermal_slope_nm_per_K(temperature_K, gauge.name)) * settings.temperature_err_K
                       if method != "none" else 0.0)
    return GaugeReading(fit=fit, position=position, pressure_GPa=pressure, fit_err_GPa=fit_err,
                        scale_err_GPa=float(scale.scale_sigma_GPa(position, settings.x0)),
                        warnings=tuple(w for w in warnings if w), x0_err_GPa=x0_err,
                        temperature_err_GPa=float(temperature_err),
                        scale_terms_GPa={k: float(v) for k, v in scale.scale_terms_GPa(position, settings.x0).items()})


@dataclass(frozen=True)
class PointPressure:
    """A point's pressure and the parts of its uncertainty (module docstring)."""

    pressure_GPa: float
    pressure_err_GPa: float    # total: random and systematic in quadrature
    fit_err_GPa: float
    scale_err_GPa: float
    drift_GPa: float           # P_after - P_before (NaN with one spectrum)
    drift_err_GPa: float
    x0_err_GPa: float = math.nan
    temperature_err_GPa: float = math.nan
    random_err_GPa: float = math.nan   # fit and drift
    sys_err_GPa: float = math.nan      # scale, x0 and temperature
    scale_terms_GPa: dict = None       # coefficient -> its systematic term

    @classmethod
    def none(cls) -> "PointPressure":
        """No pressure: every number NaN."""
        return cls(*(math.nan,) * 10)


def combine(readings: Sequence[GaugeReading]) -> PointPressure:
    """Mean pressure of the usable readings of a point, with its uncertainty (module docstring)."""
    if not readings:
        return PointPressure.none()
    p = np.array([r.pressure_GPa for r in readings])
    fit_err = float(np.sqrt(np.sum(np.array([r.fit_err_GPa for r in readings]) ** 2)) / len(readings))
    # The systematic terms are the same for both spectra (same coefficients,
    # same x0, same thermometer): averaged, not divided by sqrt(2).
    scale_err = float(np.mean([r.scale_err_GPa for r in readings]))
    x0_err = float(np.mean([r.x0_err_GPa for r in readings]))
    temperature_err = float(np.mean([r.temperature_err_GPa for r in readings]))
    if len(readings) >= 2:
        drift = float(p[-1] - p[0])
        drift_err = abs(drift) / (2.0 * math.sqrt(3.0))
    else:
        drift, drift_err = math.nan, math.nan
    random_err = float(np.sqrt(np.nansum(np.array([fit_err, drift_err]) ** 2)))
    sys_err = float(np.sqrt(np.nansum(np.array([scale_err, x0_err, temperature_err]) ** 2)))
    total = math.hypot(random_err, sys_err)
    terms = {name: float(np.mean([(r.scale_terms_GPa or {}).get(name, math.nan) for r in readings]))
             for name in (readings[0].scale_terms_GPa or {})}
    return PointPressure(float(p.mean()), total, fit_err, scale_err, drift, drift_err, x0_err, temperature_err,
                         random_err, sys_err, terms)


def point_pressure(readings: Sequence[GaugeReading], reasons: Sequence[str],
                   warnings: Sequence[str] = ()) -> tuple[PointPressure, str]:
    """A point's pressure and status from its readings: the one place that
    holds the rule that a NaN pressure has NaN errors and is never "ok".

    ``reasons`` are the spectra skipped, ``warnings`` the doubts about the
    numbers kept; both go into the status.
    """
    result = combine(readings)
    reasons = list(reasons)
    if not math.isfinite(result.pressure_GPa):
        result = PointPressure.none()
        if not reasons:
            reasons.append("pressure: no gauge spectrum gave a pressure")
    return result, "; ".join([*reasons, *warnings]) or "ok"


def same_file(a: str, b: str, records: dict | None = None) -> bool:
    """Whether two references name the same content (same path, or same SHA-256).

    ``records``: path -> :class:`~dacpipe.io.refs.FileRecord` already made;
    the records made here are added to it, so that the part's provenance
    does not hash the files again."""
    if a == b:
        return True
    records = {} if records is None else records
    for path in (a, b):
        if path not in records:
            records[path] = file_record(path)
    ra, rb = records[a], records[b]
    return bool(ra.sha256) and ra.sha256 == rb.sha256


def _sheet_pressure(sheet: Sheet) -> StageResult:
    """``gauge: sheet``: pressures typed by hand, carried over with their errors."""
    status = ["ok" if math.isfinite(p.pressure_GPa) else "pressure: no pressure_GPa in the sheet"
              for p in sheet.points]
    pressure = np.array([p.pressure_GPa for p in sheet.points])
    # An error typed beside no pressure is no error of anything.
    error = np.where(np.isfinite(pressure), [p.pressure_err_GPa for p in sheet.points], np.nan)
    return StageResult(
        stage="pressure", point_ids=sheet.point_ids, attrs={"gauge": "sheet"}, status=status,
        datasets={"pressure_GPa": pressure, "pressure_err_GPa": error},
        inputs=[str(sheet.path)])


def _padded_windows(side: str, windows: list) -> dict[str, np.ndarray]:
    """``<side>/fit_x_nm``, ``fit_counts``, ``fit_model_counts`` [N, longest window], NaN-padded."""
    width = max((len(w[0]) for w in windows if w is not None), default=0)
    if width == 0:
        return {}
    out = {f"{side}/{name}": np.full((len(windows), width), np.nan)
           for name in ("fit_x_nm", "fit_counts", "fit_model_counts")}
    for i, window in enumerate(windows):
        if window is not None:
            for name, values in zip(("fit_x_nm", "fit_counts", "fit_model_counts"), window):
                out[f"{side}/{name}"][i, :len(values)] = values
    return out


def run(ctx: StageContext) -> StageResult:
    """The pressure stage over every point of the sheet, from the run's
    validated ``pressure`` section (its ``scale`` filled in); a skipped
    spectrum is one line through ``ctx.warn`` and its point's status."""
    sheet, pressure_cfg = ctx.sheet, ctx.run["pressure"]
    if pressure_cfg["gauge"] == "sheet":
        return _sheet_pressure(sheet)
    settings = GaugeSettings.from_config(pressure_cfg)
    columns = sheet.ruby_columns()
    sides = {"ruby_before": "before", "ruby": "before", "ruby_after": "after"}
    fields = settings.gauge.fields
    n = len(sheet.points)
    table = {f"{sides[c]}/{name}": np.full(n, np.nan) for c in columns for name in [*fields, "pressure_GPa"]}
    side_status = {sides[c]: ["not measured"] * n for c in columns}
    combined = {name: np.full(n, np.nan) for name in
                ("pressure_GPa", "pressure_err_GPa", "pressure_err_fit_GPa", "pressure_err_scale_GPa",
                 "pressure_drift_GPa", "pressure_err_drift_GPa", "pressure_err_x0_GPa",
                 "pressure_err_temperature_GPa", "pressure_random_err_GPa", "pressure_sys_err_GPa")}
    # One systematic term per coefficient of the scale (none if unpublished).
    scale_terms = {f"pressure_err_scale_{c}_GPa": np.full(n, np.nan)
                   for c in settings.scale.scale_terms_GPa(settings.x0 + 1.0, settings.x0)}
    status, inputs = [], []
    # The fitted part of each spectrum with its model, for the gallery of fits
    # (figures are drawn from the store alone).
    windows = {side: [None] * n for side in side_status}
    positions = sheet.gauge_position_columns()
    for column in positions:
        table.update({f"{column}/{name}": np.full(n, np.nan) for name in [*fields, "pressure_GPa"]})
        side_status[column] = ["not measured"] * n
        windows[column] = [None] * n
    gradient = {name: np.full(n, np.nan) for name in
                ("pressure_gradient_GPa", "pressure_gradient_std_GPa", "pressure_err_gradient_GPa")}

    for i, point in enumerate(sheet.points):
        readings, reasons, warnings = [], [], []
        twin = [point.files.get(c) for c in ("ruby_before", "ruby_after")]
        records: dict = {}   # the spectra hashed for the comparison: the provenance's records too
        repeated = None not in twin and same_file(*twin, records=records)
        if repeated:
            # One spectrum named twice is one measurement: no drift, and its
            # fit error is not divided by sqrt(2).
            message = f"pressure: ruby_before and ruby_after are the same file ({twin[1]}): one measurement, no drift"
            warnings.append(message)
            ctx.warn_point(point.point, message)
        for column in columns:
            side = sides[column]
            path = point.files.get(column)
            if path is None:
                continue
            inputs.append(records.get(path, path))
            if repeated and column == "ruby_after":
                side_status[side][i] = "same file as ruby_before"
                continue
            spectrum, reading, side_status[side][i], said = _read_gauge(path, column, point, settings, ctx)
            if reading is None:
                reasons += said
                continue
            readings.append(reading)
            warnings += said
            for name, attr in fields.items():
                table[f"{side}/{name}"][i] = getattr(reading.fit, attr)
            table[f"{side}/pressure_GPa"][i] = reading.pressure_GPa
            if hasattr(reading.fit, "evaluate"):
                lo, hi = reading.fit.window_nm
                inside = (spectrum.x >= lo) & (spectrum.x <= hi)
                windows[side][i] = (spectrum.x[inside], spectrum.y[inside], reading.fit.evaluate(spectrum.x[inside]))
        if not readings and not reasons:
            reasons.append("pressure: no gauge spectrum for this point")
        if positions:
            # The first reading stands for the ruby by the sample at the time
            # the other places were measured (with ruby / ruby_before).
            others = _position_readings(point, positions, settings, table, side_status, i, ctx, reasons, warnings)
            spread = pressure_gradient([readings[0].pressure_GPa] + others if readings else others)
            gradient["pressure_gradient_GPa"][i], gradient["pressure_gradient_std_GPa"][i] = spread.range_GPa, \
                spread.std_GPa
            gradient["pressure_err_gradient_GPa"][i] = spread.err_GPa
        result, point_status = point_pressure(readings, reasons, warnings)
        for name, value in zip(combined, (result.pressure_GPa, result.pressure_err_GPa, result.fit_err_GPa,
                                          result.scale_err_GPa, result.drift_GPa, result.drift_err_GPa,
                                          result.x0_err_GPa, result.temperature_err_GPa, result.random_err_GPa,
                                          result.sys_err_GPa)):
            combined[name][i] = value
        for coefficient, value in (result.scale_terms_GPa or {}).items():
            scale_terms[f"pressure_err_scale_{coefficient}_GPa"][i] = value
        status.append(point_status)
        ctx.progress(i + 1, n)

    _add_gradient(combined, gradient["pressure_err_gradient_GPa"])
    hydro_datasets, hydro_attrs = _hydrostaticity(pressure_cfg.get("medium"), settings, combined["pressure_GPa"],
                                                  table, sheet, status)
    datasets = {**combined, **scale_terms, **table, **hydro_datasets}
    if positions:
        datasets.update(gradient)
    for side, values in side_status.items():
        datasets[f"{side}/status"] = values
        datasets.update(_padded_windows(side, windows[side]))
    attrs = {"gauge": settings.gauge.name, "scale": settings.scale.name, "scale_formula": settings.scale.formula,
             "scale_reference": settings.scale.reference, "x0": settings.x0,
             "x0_units": "1/cm" if settings.gauge.axis == "cm-1" else "nm", "x0_err": settings.x0_err,
             "temperature_err_K": settings.temperature_err_K,
             "systematic_terms": [*scale_terms, *SYSTEMATIC_TERMS],
             "reference_temperature_K": settings.reference_temperature_K,
             "temperature_correction": settings.temperature_correction, "profile": settings.profile,
             **hydro_attrs}
    if positions:
        attrs["gauge_position_columns"] = list(positions)
    return StageResult(stage="pressure", point_ids=sheet.point_ids, datasets=datasets, attrs=attrs,
                       status=status, inputs=inputs)


def _position_readings(point, positions, settings: GaugeSettings, table: dict, side_status: dict, i: int,
                       ctx: StageContext, reasons: list, warnings: list) -> list[float]:
    """The pressures of the point's extra gauge columns (``ruby_2`` ...), each
    fitted like the main spectra and stored under its column's name; a
    spectrum that cannot be read is NaN with its reason in ``<column>/status``
    and a warning of the point (it never takes the point's pressure away)."""
    out = []
    for column in positions:
        path = point.files.get(column)
        if path is None:
            continue
        _, reading, side_status[column][i], said = _read_gauge(path, column, point, settings, ctx)
        warnings += said
        if reading is None:
            continue
        for name, attr in settings.gauge.fields.items():
            table[f"{column}/{name}"][i] = getattr(reading.fit, attr)
        table[f"{column}/pressure_GPa"][i] = reading.pressure_GPa
        out.append(reading.pressure_GPa)
    return out


def _read_gauge(path: str, column: str, point, settings: GaugeSettings, ctx: StageContext):
    """One gauge spectrum of a point, read and fitted.

    Returns
    -------
    spectrum, reading
        None both when the spectrum could not be read or fitted.
    status : str
        That spectrum's own status: ``"ok"``, its doubts, or why it was skipped.
    said : list of str
        The lines it adds to the point's status (the skip, or each doubt),
        each also said on the console.
    """
    try:
        spectrum = read_gauge_spectrum(path, settings)
        reading = measure(spectrum.x, spectrum.y, point.temperature_K, settings)
    except InputError as err:
        err = err.with_path(path)
        ctx.warn_point(point.point, str(err))
        return None, None, err.reason, [f"{column} skipped: {err}"]
    doubts = [*spectrum.notes, *reading.warnings]
    for doubt in doubts:
        ctx.warn_point(point.point, f"{path}: {doubt}")
    return spectrum, reading, "; ".join(doubts) or "ok", [f"{column} warning: {path}: {doubt}" for doubt in doubts]


def _add_gradient(combined: dict, gradient_err_GPa: np.ndarray) -> None:
    """Add the gradient's standard uncertainty to each point's random error (and the total) in place:
    where the sample sits in the chamber's spread differs from point to point."""
    err = np.nan_to_num(gradient_err_GPa)
    has = np.isfinite(combined["pressure_random_err_GPa"]) & (err > 0)
    random = np.hypot(combined["pressure_random_err_GPa"], err)
    combined["pressure_random_err_GPa"] = np.where(has, random, combined["pressure_random_err_GPa"])
    total = np.hypot(random, np.nan_to_num(combined["pressure_sys_err_GPa"]))
    combined["pressure_err_GPa"] = np.where(has, total, combined["pressure_err_GPa"])
    combined["pressure_err_gradient_GPa"] = np.where(np.isfinite(combined["pressure_GPa"]), gradient_err_GPa, np.nan)


def _finite_mean(rows) -> np.ndarray:
    """Column means over the finite values of ``rows`` (NaN where none is finite)."""
    stack = np.asarray(rows, dtype=float)
    finite = np.isfinite(stack)
    count = finite.sum(axis=0)
    total = np.where(finite, stack, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _hydrostaticity(medium_key, settings: GaugeSettings, pressure_GPa: np.ndarray, table: dict, sheet: Sheet,
                    status: list) -> tuple[dict, dict]:
    """The point's hydrostaticity (:mod:`dacpipe.pressure.media`,
    :mod:`dacpipe.pressure.hydrostatic`): the medium's regime at its pressure
    (a point past its medium's hydrostatic limit gets a warning in its status,
    modified in place) and, for ruby, its R1 width and R1-R2 splitting, which
    :func:`~dacpipe.pressure.hydrostatic.finish_pressure` compares with the run's low-pressure ones. All
    per point: the same whatever the chunks."""
    medium = get_medium(medium_key) if medium_key else None
    regime = medium_regime(pressure_GPa, medium)
    datasets = {"medium_regime": np.array(regime, dtype=object)}
    attrs = medium_attrs(medium)
    for i, value in enumerate(regime):
        message = regime_warning(pressure_GPa[i], value, medium) if medium else ""
        if message:
            status[i] = message if status[i] == "ok" else f"{status[i]}; {message}"
    if settings.gauge.name != "ruby":
        return datasets, attrs
    sides = [s for s in ("before", "after") if f"{s}/R1_fwhm_nm" in table]
    mean = {name: _finite_mean([table[f"{s}/{name}"] for s in sides]) for name in ("R1_fwhm_nm", "R1_nm", "R2_nm")}
    datasets.update({"R1_fwhm_nm": mean["R1_fwhm_nm"],
                     "R1_R2_splitting_cm1": r1_r2_splitting_cm1(mean["R1_nm"], mean["R2_nm"])})
    return datasets, attrs
