"""The gauges a run may read its pressure from, in one registry.

A :class:`Gauge` says everything the pressure stage needs to know about one
kind of gauge spectrum: how to fit it, which fitted number a scale reads,
which numbers go to the store, its default scale and the config key of its
ambient position. :data:`GAUGES` holds ruby (R1/R2 doublet), Sm:SrB4O7 (the
0-0 line) and the diamond Raman edge; a new gauge is one more entry, not a
branch in every function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .diamond import diamond_edge
from .fluorescence import fit_ruby, fit_single_line


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
    """

    name: str
    default_scale: str
    x0_key: str
    axis: str
    fit: Callable
    position: tuple[str, str]
    fields: dict[str, str]
    thermal_shift: bool


GAUGES: dict[str, Gauge] = {g.name: g for g in (
    Gauge("ruby", "shen2020", "lambda0_nm", "nm", lambda x, y, profile: fit_ruby(x, y, profile=profile),
          ("r1_nm", "r1_err_nm"),
          {"R1_nm": "r1_nm", "R1_err_nm": "r1_err_nm", "R2_nm": "r2_nm", "R2_err_nm": "r2_err_nm",
           "R1_fwhm_nm": "r1_fwhm_nm", "R2_fwhm_nm": "r2_fwhm_nm", "R1_amplitude": "r1_amplitude",
           "R2_amplitude": "r2_amplitude", "eta": "eta", "reduced_chi2": "reduced_chi2",
           "r_squared": "r_squared", "n_spikes": "n_spikes"},
          thermal_shift=True),
    # The Sm:SrB4O7 0-0 line moves by about -1e-4 nm/K (Datchi et al. 1997),
    # below any fit error over a few hundred kelvin.
    Gauge("sm-srb4o7", "datchi1997", "lambda0_nm", "nm",
          lambda x, y, profile: fit_single_line(x, y, profile=profile), ("center_nm", "center_err_nm"),
          {"line_nm": "center_nm", "line_err_nm": "center_err_nm", "line_fwhm_nm": "fwhm_nm",
           "amplitude": "amplitude", "reduced_chi2": "reduced_chi2", "r_squared": "r_squared",
           "n_spikes": "n_spikes"},
          thermal_shift=False),
    # The diamond edge scale is a 300 K scale.
    Gauge("diamond-raman", "akahama2006", "nu0_cm1", "cm-1", lambda x, y, profile: diamond_edge(x, y),
          ("edge_cm1", "edge_err_cm1"), {"edge_cm1": "edge_cm1", "edge_err_cm1": "edge_err_cm1"},
          thermal_shift=False),
)}


def get_gauge(name: str) -> Gauge:
    """The gauge called ``name``."""
    try:
        return GAUGES[name]
    except KeyError:
        raise ValueError(f"unknown gauge {name!r}; known: {', '.join(GAUGES)}") from None
