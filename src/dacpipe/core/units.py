"""Units: physical constants, the conversions every stage shares, and the unit a name declares.

Constants come from :mod:`scipy.constants` (CODATA 2018), never typed in.
Radial units of integrated patterns are pyFAI's (``q_A^-1``, ``q_nm^-1``,
``2th_deg``; :mod:`dacpipe.integration` asks pyFAI's unit registry for
them); here are the plain formulas the rest of dacpipe needs without
importing pyFAI.

Dataset names carry their unit as a suffix (``pressure_GPa``, ``d_A``,
``energy_eV``); :func:`units_from_name` reads it back for the store's
``@units`` attributes.
"""

from __future__ import annotations

import re

import numpy as np

# The constants of scipy.constants, computed on first use (module __getattr__):
# importing scipy.constants takes 0.1 s, paid otherwise by every job that
# only needs this module's names and conversions (the merges, the store,
# the figures). Each is its formula; the docstrings give the values.
_CONSTANTS = {
    "HC_EV_NM": lambda c: c.h * c.c / c.e * 1e9,
    "EV_PER_CM1": lambda c: c.h * c.c / c.e * 100.0,
    "BOLTZMANN_EV_PER_K": lambda c: c.k / c.e,
}
HC_EV_NM: float
"""h c in eV nm (1239.84198...): E = HC_EV_NM / lambda."""
EV_PER_CM1: float
"""Photon energy of one wavenumber, eV per cm^-1 (1.23984198e-4)."""
BOLTZMANN_EV_PER_K: float
"""Boltzmann's constant in eV per K (8.617333e-5)."""


def __getattr__(name: str) -> float:
    if name in _CONSTANTS:
        from scipy import constants

        value = _CONSTANTS[name](constants)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


NM_CM1 = 1e7
"""nm x cm^-1: a wavelength in nm is 1e7 / its wavenumber in cm^-1."""


def q_from_two_theta(two_theta_deg, wavelength_A: float):
    """q = 4 pi sin(theta) / lambda, in 1/angstrom."""
    return 4.0 * np.pi * np.sin(np.radians(two_theta_deg) / 2.0) / wavelength_A


def two_theta_from_q(q_A, wavelength_A: float):
    """The inverse of :func:`q_from_two_theta`, in degrees."""
    return np.degrees(2.0 * np.arcsin(np.clip(np.asarray(q_A) * wavelength_A / (4.0 * np.pi), -1.0, 1.0)))


def wavenumber_cm1(wavelength_nm):
    """Absolute wavenumber (cm^-1) of a wavelength (nm), and back: 1e7 / x."""
    return NM_CM1 / np.asarray(wavelength_nm, dtype=float)


# --- the unit a dataset's name declares --------------------------------------

# Longest suffix first: "_err_GPa" before "_GPa", "_per_GPa" before "_GPa".
_UNIT_SUFFIXES = {
    "_eV_per_GPa2": "eV/GPa^2", "_eV_per_GPa": "eV/GPa", "_per_GPa": "1/GPa", "_GPa": "GPa", "_nm": "nm",
    "_K": "K", "_cm1": "1/cm", "_A3": "angstrom^3", "_A": "angstrom", "_eV": "eV", "_deg": "degree",
}

# Axes whose names the contract fixes without a unit suffix.
_UNIT_NAMES = {"q": "1/angstrom", "two_theta": "degree"}

# q, q1, fwhm_q ... with _A or _err_A are in 1/angstrom, not angstrom.
_RECIPROCAL = re.compile(r"(^|_)q\d*(_err)?_A$")


def units_from_name(name: str) -> str | None:
    """The unit a dataset's name declares by its suffix, or None.

    >>> units_from_name("K0pp_per_GPa"), units_from_name("q1_err_A"), units_from_name("a_err_A")
    ('1/GPa', '1/angstrom', 'angstrom')
    """
    if name in _UNIT_NAMES:
        return _UNIT_NAMES[name]
    if _RECIPROCAL.search(name):
        return "1/angstrom"
    for suffix, unit in sorted(_UNIT_SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return unit
    return None
