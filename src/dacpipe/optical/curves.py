"""Checks and resampling shared by the optical fits (Tauc edges, PL bands, E(P) and E(T))."""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError

MIN_POINTS = 20
"""Fewer points than this cannot hold an edge, its baseline and a linear part."""


def checked_spectrum(energy_eV, values, what: str):
    """Finite float arrays sorted by energy, at least MIN_POINTS long."""
    e = np.asarray(energy_eV, dtype=float).ravel()
    y = np.asarray(values, dtype=float).ravel()
    if e.shape != y.shape:
        raise ValueError(f"energy and {what} have different lengths ({e.size}, {y.size})")
    keep = np.isfinite(e) & np.isfinite(y)
    e, y = e[keep], y[keep]
    if e.size < MIN_POINTS:
        raise InputError(f"only {e.size} finite points in the {what} spectrum, need at least {MIN_POINTS}")
    order = np.argsort(e, kind="stable")
    e, y = e[order], y[order]
    if np.any(np.diff(e) <= 0):
        raise InputError(f"repeated energies in the {what} spectrum")
    if not np.any(y != 0):
        raise InputError(f"all {what} values are zero")
    return e, y


def uniform_grid(e, y):
    """Resample onto a uniform energy grid (Savitzky-Golay needs one)."""
    grid = np.linspace(e[0], e[-1], e.size)
    return grid, np.interp(grid, e, y)


def odd_points(width_eV: float, step_eV: float, minimum: int, n: int) -> int:
    m = max(minimum, int(round(width_eV / step_eV)))
    return m + 1 - m % 2  # odd; callers check it against n


def parabola_vertex(x, y, i: int) -> float:
    """Vertex of the parabola through points i-1, i, i+1 (x uniform)."""
    if i <= 0 or i >= len(y) - 1:
        return float(x[i])
    denom = y[i - 1] - 2.0 * y[i] + y[i + 1]
    if denom >= 0:
        return float(x[i])
    shift = 0.5 * (y[i - 1] - y[i + 1]) / denom
    return float(x[i] + np.clip(shift, -1.0, 1.0) * (x[1] - x[0]))


def energy_series(x, energy_eV, energy_err_eV, *, against: str, unit: str, minimum: int, fit: str = "a fit",
                  positive: bool = False):
    """The points of an energy-against-x series a fit can use: (x, E, sigma_E, keep),
    float arrays of the finite points (x > 0 too with ``positive``) and the mask
    that chose them; sigma_E is NaN where no error was given.

    Raises
    ------
    InputError
        Fewer than ``minimum`` usable points (``against``: what x is, ``fit``: the fit
        that needs them), or all at one x (in ``unit``).
    """
    x = np.asarray(x, dtype=float).ravel()
    e = np.asarray(energy_eV, dtype=float).ravel()
    s = np.full(x.shape, np.nan) if energy_err_eV is None else np.asarray(energy_err_eV, dtype=float).ravel()
    keep = np.isfinite(x) & np.isfinite(e) & ((x > 0) if positive else True)
    x, e, s = x[keep], e[keep], s[keep]
    if x.size < minimum:
        raise InputError(f"{x.size} point(s) with an energy and a {against}; {fit} needs at least {minimum}")
    if np.ptp(x) <= 0:
        raise InputError(f"all {x.size} points are at {x[0]:g} {unit}")
    return x, e, s, keep
