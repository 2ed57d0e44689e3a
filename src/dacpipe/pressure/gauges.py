"""The gauges a run may read its pressure from, in one registry.

A :class:`Gauge` says everything the pressure stage needs to know about one
kind of gauge spectrum: how to fit it, which fitted number a scale reads,
which numbers go to the store, its default scale and the config key of its
ambient position. :data:`GAUGES` holds ruby (R1/R2 doublet), Sm:SrB4O7 (the
0-0 line) and the diamond Raman edge; a new gauge is one more entry, not a
branch in every function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


# The fitting code is imported when a spectrum is fitted, not with the registry:
# every job that validates a run's config reads the registry (a gauge's default
# scale and axis), and the fits bring scipy.optimize, .ndimage and .signal.


def _fit_ruby(x, y, profile):
    from .fluorescence import fit_ruby

    return fit_ruby(x, y, profile=profile)


def _fit_single_line(x, y, profile):
    from .fluorescence import fit_single_line

    return fit_single_line(x, y, profile=profile)


def _diamond_edge(x, y, profile):
    from .diamond import diamond_edge

    return diamond_edge(x, y)


def _ruby_signature(*args):
    from .checks import check_ruby_splitting

    return check_ruby_splitting(*args)


def _single_line_signature(*args):
    from .checks import check_single_line_not_ruby

    return check_single_line_not_ruby(*args)


@dataclass(frozen=True)
class Gauge:
    """One kind of gauge spectrum.

    Attributes
    ----------
    name : str
        Its config name (``pressure.gauge``).
    default_scale : str
        The scale used when the config names none.
    x0_key : str
        Config key of the ambient position, ideally measured on the day.
    axis : str
        ``"nm"`` (fluorescence, read as wavelength) or ``"cm-1"`` (a Raman shift).
    fit : callable
        ``fit(x, y, profile) -> fit result``.
    position : (str, str)
        Attributes of the fit result: the position the scale reads, and its error.
    fields : dict
        Store name -> attribute of the fit result, kept per spectrum.
    thermal_shift : bool
        Whether the line moves enough with temperature to correct it
        (:func:`dacpipe.pressure.scales.temperature_corrected_position`).
    max_GPa : float
        Highest pressure the gauge is read at in practice: with -2 GPa, it
        bounds the window where its lines can be (:func:`dacpipe.pressure.checks.check_axis`).
    temperature_range_K : (float, float)
        Where its temperature behaviour was measured; outside, a warning.
    max_temperature_K : float
        Above this no reading is given (NaN with the reason).
    temperature_reference : str
        The papers behind the two above.
    lines : callable or None
        ``lines(fit) -> [(centre, fwhm), ...]``: the fitted lines whose
        misfit is checked (:func:`dacpipe.pressure.checks.check_misfit`);
        None for a gauge that fits no lines.
    signature : callable or None
        ``signature(x, y, fit)`` raises InputError when the spectrum is
        certainly not this gauge's (another gauge's spectrum read with this
        one), or returns a warning when it may not be (else None).
    x0_err_default : float
        Standard uncertainty of the ambient position when the config gives
        none (``pressure.x0_err``): the spread of the published ambient
        positions, since an ``x0`` not measured on the day is one of them.
    """

    name: str
    default_scale: str
    x0_key: str
    axis: str
    fit: Callable
    position: tuple[str, str]
    fields: dict[str, str]
    thermal_shift: bool
    max_GPa: float
    temperature_range_K: tuple[float, float]
    max_temperature_K: float
    temperature_reference: str
    lines: Callable | None = None
    signature: Callable | None = None
    x0_err_default: float = 0.0


GAUGES: dict[str, Gauge] = {g.name: g for g in (
    Gauge("ruby", "shen2020", "lambda0_nm", "nm", _fit_ruby,
          ("r1_nm", "r1_err_nm"),
          {"R1_nm": "r1_nm", "R1_err_nm": "r1_err_nm", "R2_nm": "r2_nm", "R2_err_nm": "r2_err_nm",
           "R1_fwhm_nm": "r1_fwhm_nm", "R2_fwhm_nm": "r2_fwhm_nm", "R1_amplitude": "r1_amplitude",
           "R2_amplitude": "r2_amplitude", "eta": "eta", "reduced_chi2": "reduced_chi2",
           "r_squared": "r_squared", "n_spikes": "n_spikes"},
          thermal_shift=True,
          # Ruby is read to ~200 GPa at best (its lines fade into the anvils'
          # fluorescence above ~150 GPa). Datchi et al. (2007) give the
          # thermal shift from ~10 K (flat below 50 K, their eq. 3) to 900 K,
          # above which the R lines broaden into one weak band.
          max_GPa=200.0, temperature_range_K=(10.0, 900.0), max_temperature_K=900.0,
          temperature_reference="Datchi et al. 2007, eqs. 2-4",
          lines=lambda f: [(f.r1_nm, f.r1_fwhm_nm), (f.r2_nm, f.r2_fwhm_nm)],
          signature=_ruby_signature,
          # Published ambient R1: 694.22 (Mao 1986), 694.24, 694.25 nm (Shen 2020).
          x0_err_default=0.03),
    # The Sm:SrB4O7 0-0 line moves little with temperature (-1e-4 nm/K near
    # room temperature, Datchi et al. 1997), but +0.8 nm by 800 K (Datchi
    # et al. 2007): corrected like ruby (scales.sm_srb4o7_thermal_shift_nm).
    Gauge("sm-srb4o7", "datchi1997", "lambda0_nm", "nm",
          _fit_single_line, ("center_nm", "center_err_nm"),
          {"line_nm": "center_nm", "line_err_nm": "center_err_nm", "line_fwhm_nm": "fwhm_nm",
           "amplitude": "amplitude", "reduced_chi2": "reduced_chi2", "r_squared": "r_squared",
           "n_spikes": "n_spikes"},
          thermal_shift=True,
          # Calibrated to 124 GPa; its temperature dependence measured to
          # 900 K (Datchi et al. 1997, 2007).
          max_GPa=200.0, temperature_range_K=(0.0, 900.0), max_temperature_K=900.0,
          temperature_reference="Datchi et al. 1997, 2007",
          lines=lambda f: [(f.center_nm, f.fwhm_nm)], signature=_single_line_signature,
          # Ambient 0-0 line: 685.41 nm (Datchi 1997), 685.51 nm (Rashchenko 2015).
          x0_err_default=0.1),
    # The diamond edge scale is a 300 K scale.
    Gauge("diamond-raman", "akahama2006", "nu0_cm1", "cm-1", _diamond_edge,
          ("edge_cm1", "edge_err_cm1"), {"edge_cm1": "edge_cm1", "edge_err_cm1": "edge_err_cm1"},
          thermal_shift=False,
          # Akahama & Kawamura calibrated the edge at room temperature and
          # to 410 GPa; it is not corrected for temperature, so a reading
          # away from room temperature is flagged.
          max_GPa=500.0, temperature_range_K=(273.0, 323.0), max_temperature_K=math.inf,
          temperature_reference="Akahama & Kawamura 2006, at room temperature",
          # A judgement, not a published spread: anvils' ambient edges differ
          # by a few cm^-1 from Akahama & Kawamura's 1334; measure nu0 on the day.
          x0_err_default=2.0),
)}


def get_gauge(name: str) -> Gauge:
    """The gauge called ``name``."""
    try:
        return GAUGES[name]
    except KeyError:
        raise ValueError(f"unknown gauge {name!r}; known: {', '.join(GAUGES)}") from None
