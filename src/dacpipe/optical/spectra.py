"""Optical spectra on a photon-energy axis: reading, unit conversion, absorbance.

Files are read by :func:`dacpipe.io.spectra.read_xy`; here the axis becomes
photon energy (E = hc / lambda, or hc times the wavenumber, constants from
:mod:`dacpipe.core.units`), intensities per unit of the measured axis become
intensities per eV (the Jacobian), and an absorption measurement of any kind
becomes absorbance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.errors import InputError
from ..core.units import EV_PER_CM1, HC_EV_NM
from ..io.spectra import read_xy
from .curves import MIN_POINTS

X_UNITS = ("nm", "eV", "cm-1")


QUANTITIES = ("absorbance", "transmission", "transmission_percent", "intensity")


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
        if energy.size < MIN_POINTS:
            where = "" if energy_range_eV is None else f" in {lo:g}-{hi:g} eV"
            raise InputError(f"only {energy.size} points{where}, need at least {MIN_POINTS}")
        if not np.any(values != 0):
            raise InputError("all values are zero")
    except InputError as err:
        raise err.with_path(path) from None
    return OpticalSpectrum(energy, values, str(path), data.y_unit, factor)


def absorbance_from(sample: OpticalSpectrum, quantity: str,
                    reference: OpticalSpectrum | None = None,
                    dark: OpticalSpectrum | None = None) -> OpticalSpectrum:
    """Absorbance from what was measured.

    ``"absorbance"`` is kept; ``"transmission"`` (0-1) and
    ``"transmission_percent"`` give ``-log10 T``; ``"intensity"`` gives
    ``-log10(I / I0)`` with I0 the reference interpolated onto the sample's
    energies (points outside the reference's range are left out). Points
    where T or I/I0 is not positive (a saturated edge: no light through) are
    left out; more than half of them is an error. With a ``dark`` spectrum
    (detector counts without light, interpolated onto the sample's
    energies), ``"intensity"`` gives -log10[(I - dark) / (I0 - dark)]: a
    dark offset left in I and I0 flattens the edge where I is small.

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
        if inside.sum() < MIN_POINTS:
            raise InputError(f"the reference {reference.source} covers only {int(inside.sum())} of the "
                             "sample's points", sample.source)
        e, y = e[inside], y[inside]
        i0 = np.interp(e, reference.energy_eV, reference.values)
        if dark is not None:
            offset = np.interp(e, dark.energy_eV, dark.values)
            y, i0 = y - offset, i0 - offset
        ratio = y / i0
        what = "I/I0"
    else:
        ratio = y / 100.0 if quantity == "transmission_percent" else y
        if np.max(ratio) > 1.5:
            raise InputError(f"transmission up to {np.max(ratio):g} (> 1): percent read as a fraction? "
                             "set optical.absorption.quantity: transmission_percent", sample.source)
        what = "transmission"
    good = np.isfinite(ratio) & (ratio > 0)
    if good.sum() < max(MIN_POINTS, ratio.size // 2):
        raise InputError(f"{what} is zero or negative at {int((~good).sum())} of {ratio.size} points",
                         sample.source)
    source = sample.source if reference is None else f"{sample.source} / {reference.source}"
    return OpticalSpectrum(e[good], -np.log10(ratio[good]), source, "ABSORBANCE")
