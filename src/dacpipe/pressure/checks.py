"""Is a gauge reading to be trusted? Checks that turn impossible numbers into
NaN with a reason, and doubtful ones into a warning beside the number.

Each check is a plain function on arrays and fit results. One that finds the
reading impossible raises :class:`~dacpipe.core.errors.InputError` (the
pressure stage then stores NaN and the reason); one that finds it doubtful
returns a one-line warning (the stage keeps the number and puts the warning
in the point's status).

* :func:`check_axis`: the spectrum's x axis must reach the gauge's lines; an
  axis in micrometres, eV or wavenumbers misses them by orders of magnitude
  and is refused with the unit it looks like.
* :func:`check_temperature`: the temperature must be inside the range the
  gauge (and its temperature correction) was measured over.
* :func:`check_pressure`: a pressure below -2 GPa is no pressure a cell holds;
  one above the scale's calibration data is extrapolated.
* :func:`check_misfit`: a fit that leaves structure of more than
  :data:`MISFIT_FRACTION` of the line height, significantly above the noise,
  hides a second line (two ruby grains at different pressures) or a shape the
  model does not describe: the position is uncertain.
* :func:`check_single_line_not_ruby`: a ruby doublet read as the single
  Sm:SrB4O7 line (~32 GPa at ambient pressure) is refused;
  :func:`check_ruby_splitting`: a "doublet" whose lines are not ruby's
  30 cm^-1 apart is flagged.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import uniform_filter1d

from ..core.errors import InputError
from ..core.units import HC_EV_NM, NM_CM1
from .fluorescence import R1_R2_SPLITTING_CM1, fit_ruby

MIN_PRESSURE_GPA = -2.0
"""Lowest pressure a reading may give. A cell is not under tension; at ambient
pressure a reading scatters by the spectrometer calibration (0.1-0.3 nm, i.e.
0.3-0.8 GPa for ruby) and by +-10 K of temperature (0.2 GPa). -2 GPa is
beyond both: a lower reading means a wrong axis, ``x0`` or gauge."""

MISFIT_CHI2 = 1.5
"""Reduced chi^2 above which a misfit is significant. The fits' noise model
(read plus shot noise, fitted to the residual's first differences,
:func:`dacpipe.pressure.shot_noise.variance_fit`) makes a right model give
1 +- sqrt(2/dof), <= 0.14 for the >= 100 points of a fit window, so 1.5 is
over 3.5 sigma; 40 synthetic ruby spectra (true Voigt lines fitted with
pseudo-Voigts, any pressure and signal) give at most 1.44. The limit alone
would flag good real spectra: at high signal a line shape a little off the
pseudo-Voigt gives 10-190 (the pRuby and RubyPressure test spectra), so a
point is flagged only if the misfit is also large (:data:`MISFIT_FRACTION`)."""

MISFIT_FRACTION = 0.12
"""Largest residual near the lines, averaged over a quarter of the line's
FWHM (noise averages down, structure on the scale of the line stays), as a
fraction of the line height, above which the fit is flagged. Good spectra
give <= 0.05 (real ones) and <= 0.08 (synthetic ones at the lowest signal,
where it is noise); two ruby grains 0.45-1 nm apart fitted as one doublet
give 0.15-0.8."""

MISFIT_REACH_FWHM = 1.5  # the residual is looked at within this many FWHM of each line

SPLITTING_TOLERANCE_CM1 = 6.0
"""How far the fitted R1-R2 splitting may be from ruby's 30 cm^-1 (29-32 cm^-1
up to 150 GPa; 3 sigma of the fit's soft constraint on it)."""

RUBY_PARTNER_RATIO = 0.15
"""Excess over a single-line fit, 30 cm^-1 above the line (where ruby's R2
lies), relative to the line's height, above which the spectrum is a ruby
doublet (R2 is 0.4-0.8 of R1; a Sm:SrB4O7 line leaves < 0.01 there)."""


def plausible_positions(scale, x0: float, max_GPa: float) -> tuple[float, float]:
    """Line positions of ``MIN_PRESSURE_GPA`` and ``max_GPa`` on ``scale``."""
    lo, hi = (float(scale.position_at(p, x0)) for p in (MIN_PRESSURE_GPA, max_GPa))
    return min(lo, hi), max(lo, hi)


def check_axis(x, window: tuple[float, float], unit: str, gauge: str) -> None:
    """Raise unless the x axis overlaps the gauge lines' ``window``.

    An axis written in another unit misses the lines by far: ruby in
    micrometres reads 0.69, in eV 1.79, in wavenumbers 14400. The message
    names the unit that would put the lines inside the axis, if one does.
    """
    x = np.asarray(x, dtype=float)
    first, last = float(x.min()), float(x.max())
    lo, hi = window
    if last >= lo and first <= hi:
        return
    guess = ""
    if unit == "nm":
        conversions = {"micrometres": (first * 1e3, last * 1e3),
                       "eV": tuple(sorted((HC_EV_NM / last, HC_EV_NM / first))) if first > 0 else None,
                       "wavenumbers (cm-1)": tuple(sorted((NM_CM1 / last, NM_CM1 / first))) if first > 0 else None}
        for name, span in conversions.items():
            if span is not None and span[1] >= lo and span[0] <= hi:
                guess = f"; it looks like {name}: convert it, or say so in the header"
                break
    raise InputError(f"x axis {first:.4g}-{last:.4g} does not reach the {gauge} lines "
                     f"({lo:.1f}-{hi:.1f} {unit}){guess}")


def check_temperature(temperature_K: float, gauge) -> str | None:
    """Raise when ``temperature_K`` is beyond what the gauge can read; a warning
    when it is outside the range its temperature behaviour was measured over."""
    if not math.isfinite(temperature_K):
        raise InputError("no valid temperature for the temperature correction")
    if temperature_K > gauge.max_temperature_K:
        raise InputError(f"temperature_K {temperature_K:g} is above the {gauge.max_temperature_K:g} K "
                         f"the {gauge.name} gauge is calibrated to ({gauge.temperature_reference})")
    lo, hi = gauge.temperature_range_K
    if not lo <= temperature_K <= hi:
        return (f"temperature_K {temperature_K:g} is outside {lo:g}-{hi:g} K, the range the {gauge.name} "
                f"gauge is calibrated over ({gauge.temperature_reference}): extrapolated")
    return None


def check_pressure(pressure_GPa: float, position: float, scale, unit: str) -> str | None:
    """Raise for a non-finite pressure or one below ``MIN_PRESSURE_GPA``; a
    warning for one above the scale's calibration data."""
    where = f"line at {position:.2f} {unit}"
    if not math.isfinite(pressure_GPa):
        raise InputError(f"the {scale.name} scale gives no pressure for the {where}")
    if pressure_GPa < MIN_PRESSURE_GPA:
        raise InputError(f"the {where} reads {pressure_GPa:.1f} GPa, below {MIN_PRESSURE_GPA:g} GPa: "
                         "wrong x axis, ambient position or gauge?")
    if pressure_GPa > scale.valid_to_GPa:
        return (f"{pressure_GPa:.1f} GPa is beyond the {scale.valid_to_GPa:g} GPa of the {scale.name} "
                "scale's calibration: extrapolated")
    return None


def misfit_fraction(x, y, fit, lines) -> float:
    """Largest |residual| within ``MISFIT_REACH_FWHM`` of the ``lines``
    ((centre, fwhm) pairs), averaged over a quarter FWHM of the narrowest,
    relative to the fit's strongest line height (see :data:`MISFIT_FRACTION`)."""
    lo, hi = fit.window_nm
    inside = (x >= lo) & (x <= hi)
    xw, yw = np.asarray(x)[inside], np.asarray(y)[inside]
    if len(xw) < 3:
        return math.nan
    step = (xw[-1] - xw[0]) / (len(xw) - 1)
    width = min(w for _, w in lines)
    smooth = uniform_filter1d(yw - fit.evaluate(xw), max(1, int(round(0.25 * width / step))), mode="nearest")
    near = np.zeros(len(xw), dtype=bool)
    for centre, fwhm in lines:
        near |= np.abs(xw - centre) < MISFIT_REACH_FWHM * fwhm
    height = max(getattr(fit, "r1_amplitude", None) or getattr(fit, "amplitude"), 1e-300)
    return float(np.max(np.abs(smooth[near])) / height) if near.any() else math.nan


def check_misfit(x, y, fit, lines, name: str) -> str | None:
    """A warning when the fit leaves large, significant structure near its lines."""
    fraction = misfit_fraction(x, y, fit, lines)
    if fit.reduced_chi2 > MISFIT_CHI2 and fraction > MISFIT_FRACTION:
        return (f"poor fit (reduced chi^2 {fit.reduced_chi2:.1f}, misfit {100 * fraction:.0f} % of the {name} "
                "height): a second line (two ruby grains, a pressure gradient) or a split line? "
                "The position is uncertain")
    return None


def check_ruby_splitting(x, y, fit) -> str | None:
    """A warning when the fitted doublet is not ruby's: R1-R2 far from 30 cm^-1
    (two rubies at different pressures fitted as one doublet, or another
    emitter's lines)."""
    splitting = NM_CM1 / fit.r2_nm - NM_CM1 / fit.r1_nm
    if abs(splitting - R1_R2_SPLITTING_CM1) > SPLITTING_TOLERANCE_CM1:
        return (f"the lines at {fit.r2_nm:.2f} and {fit.r1_nm:.2f} nm are {splitting:.0f} cm-1 apart, not ruby's "
                f"{R1_R2_SPLITTING_CM1:.0f} cm-1: two rubies at different pressures, or not a ruby spectrum? "
                "R1 is uncertain")
    return None


def check_single_line_not_ruby(x, y, fit) -> None:
    """Raise when a single-line (Sm:SrB4O7) spectrum is a ruby doublet.

    Two signs of ruby: a line 30 cm^-1 above the fitted one (R2 beside R1),
    left over by the single-line fit at more than :data:`RUBY_PARTNER_RATIO`
    of its height; or, where the lines merge into one band, a ruby doublet
    fit that explains the spectrum far better (reduced chi^2 under half).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    partner_nm = NM_CM1 / (NM_CM1 / fit.center_nm + R1_R2_SPLITTING_CM1)
    lo, hi = fit.window_nm
    inside = (x >= lo) & (x <= hi)
    xw = x[inside]
    excess = uniform_filter1d(y[inside] - fit.evaluate(xw), 5, mode="nearest")
    near = np.abs(xw - partner_nm) < 0.25
    ratio = float(excess[near].max() / fit.amplitude) if near.any() else 0.0
    reason = None
    if ratio > RUBY_PARTNER_RATIO:
        reason = (f"a second line at {partner_nm:.2f} nm, {100 * ratio:.0f} % as high as the one at "
                  f"{fit.center_nm:.2f} nm, as ruby's R2 beside R1")
    else:
        try:
            ruby = fit_ruby(x, y, profile=fit.profile)
        except InputError:
            ruby = None
        if (ruby is not None and ruby.r2_amplitude > 0.3 * ruby.r1_amplitude
                and ruby.reduced_chi2 < 0.5 * fit.reduced_chi2):
            reason = (f"a ruby R1/R2 doublet ({ruby.r1_nm:.2f}, {ruby.r2_nm:.2f} nm) fits it far better "
                      f"(reduced chi^2 {ruby.reduced_chi2:.1f} against {fit.reduced_chi2:.1f})")
    if reason:
        raise InputError(f"{reason}: a ruby spectrum read with gauge sm-srb4o7?")
