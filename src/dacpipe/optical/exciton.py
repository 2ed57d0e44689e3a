"""The first excitonic absorption peak of quantum dots, from the second derivative of the absorbance.

The absorbance of a quantum-dot film rises in steps: each confined
exciton transition is a band, the first (lowest energy) one the band gap of
the dots (Yu, Qu, Guo & Peng, Chem. Mater. 15, 2854 (2003), who tabulate
the size and extinction of CdTe, CdSe and CdS dots against the position of
this first excitonic absorption peak). On a rising background (the higher
transitions, scattering, the DAC's reflection losses) the maximum of the
absorbance moves with the slope under it, and a shoulder has no maximum at
all; the minimum of the second derivative d2A/dE2 does neither: a straight
background has none, and a curved one moves it by -B''' sigma^4 / (3 a)
(B''' the background's third derivative, a and sigma the band's height and
Gaussian width), well under 1 meV for the DAC baselines of
:mod:`dacpipe.synth.optical`.

How it is found (:func:`exciton_peak`)
--------------------------------------
1. **Second derivative.** A Savitzky-Golay filter (cubic, Savitzky & Golay,
   Anal. Chem. 36, 1627 (1964)) on a uniform energy grid. Its window starts
   at ``smoothing_eV`` and doubles (up to a sixth of the spectrum) until a
   band is found (step 2); it is then set to the width of the band's own
   negative lobe of d2A/dE2 (between its zero crossings: 2 sigma of a
   Gaussian band, 0.85 FWHM) and the search repeated until the window no
   longer changes (at most :data:`MAX_WINDOW_ITERATIONS` times): wide
   enough to average the noise, narrow enough not to flatten the band.
2. **Significance.** The noise of the filtered derivative is the spectrum's
   point-to-point noise (:func:`~dacpipe.core.noise.difference_sigma`)
   through the filter's coefficients (white noise: sigma ||c||). A band is
   a local minimum at least :data:`MIN_EXCITON_DEPTH` of those sigmas below
   zero, *and* resolved: d2A/dE2 must turn positive, by
   :data:`MIN_RESOLVED_SIGMA` sigmas, within :data:`RESOLVED_SPAN_LOBES`
   lobe widths above it (dA/dE has a minimum there: the absorbance has a
   peak or a shoulder). A bare absorption edge (a square root with an
   Urbach tail, the bulk-like HgTe of :mod:`dacpipe.synth.optical`) is
   concave all the way up and has no such turn: it has no exciton, and
   its d2A/dE2 minimum, just above the gap, is not reported as one. The
   first exciton is the lowest-energy band that passes both.
3. **Energy and error.** A parabola fitted by least squares to the
   filtered d2A/dE2 over E_min +/- :data:`VERTEX_REACH_LOBES` lobe widths;
   its vertex is the exciton energy, refitted about the vertex until it
   lies among the points fitted (from the middle of the lobe if the
   minimum of a noisy, flat-bottomed lobe leads it astray). The filtered
   values are linear in the spectrum and correlated from point to point,
   so the error is not the fit's residual scatter: the spectrum's noise is
   carried through the filter and the fit to the parabola's coefficients
   (their covariance sigma^2 M M^T, M = (X^T X)^-1 X^T C, C the filter) and
   through the vertex -p1 / (2 p2) to first order. On 600 synthetic spectra
   per case (tests/test_exciton.py) the pull has a standard deviation of
   0.9-1.2 and the mean lies within 1 meV of the noise-free answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import argrelmin, savgol_coeffs, savgol_filter

from ..core.errors import InputError
from ..core.noise import difference_sigma
from .curves import checked_spectrum, odd_points, parabola_vertex, uniform_grid

MIN_EXCITON_DEPTH = 8.0
"""Depth of a d2A/dE2 minimum in sigmas of the filtered noise. On 300
noise-only 500-point spectra none passed; the deepest noise minimum (at the
widest window tried) reached 2.7 (median) to 4.2 (maximum) sigmas."""
MIN_RESOLVED_SIGMA = 3.0
"""How far, in the same sigmas, d2A/dE2 must rise above zero above the minimum
(one-sided; the minimum is already significant)."""
RESOLVED_SPAN_LOBES = 1.5
"""A Gaussian band's positive lobe peaks 0.87 lobe widths above its centre."""
MAX_WINDOW_ITERATIONS = 4
VERTEX_REACH_LOBES = 0.35
"""The parabola through the minimum spans +/- this many lobe widths (+/- 0.7 sigma of a Gaussian,
where its d2A/dE2 is still within 30 % of a parabola); 0.25 gave pulls of 1.3 on weak bands
(a flat parabola), 0.5 a bias of 0.4 sigma."""


@dataclass(frozen=True)
class ExcitonFit:
    """The first excitonic absorption peak of a spectrum.

    Attributes
    ----------
    energy_eV, energy_err_eV : float
        Minimum of d2A/dE2 (a Newton step on d3A/dE3) and its standard error.
    sg_energy_eV : float
        The minimum of the Savitzky-Golay second derivative (parabola-refined
        on the grid), for comparison.
    depth_sigma : float
        -d2A/dE2 at the minimum over the noise of the filtered derivative.
    lobe_width_eV : float
        Width of the negative lobe of d2A/dE2 (2 sigma of a Gaussian band).
    window_eV : float
        Savitzky-Golay window used (the last iteration).
    noise : float
        Point-to-point noise of the absorbance.
    """

    energy_eV: float
    energy_err_eV: float
    sg_energy_eV: float
    depth_sigma: float
    lobe_width_eV: float
    window_eV: float
    noise: float


def second_derivative(grid, values, points: int) -> tuple[np.ndarray, float]:
    """Savitzky-Golay d2y/dE2 (cubic, ``points`` wide) on a uniform grid, and
    the factor ||c|| that turns the noise of ``values`` into its noise."""
    step = float(grid[1] - grid[0])
    d2 = savgol_filter(values, points, 3, deriv=2, delta=step)
    gain = float(np.sqrt(np.sum(savgol_coeffs(points, 3, deriv=2, delta=step) ** 2)))
    return d2, gain


def _lobe(grid, d2, i: int) -> tuple[float, float]:
    """The zero crossings of ``d2`` either side of its negative minimum at ``i`` (linear interpolation)."""
    lo = i
    while lo > 0 and d2[lo] < 0:
        lo -= 1
    hi = i
    while hi < d2.size - 1 and d2[hi] < 0:
        hi += 1

    def cross(j, k):  # d2[j] and d2[k] straddle zero (or the grid ended)
        if d2[j] == d2[k] or np.sign(d2[j]) == np.sign(d2[k]):
            return float(grid[j])
        return float(grid[j] + (grid[k] - grid[j]) * d2[j] / (d2[j] - d2[k]))

    return cross(lo, lo + 1) if lo < i else float(grid[0]), cross(hi - 1, hi) if hi > i else float(grid[-1])


def _first_band(grid, d2, sigma_d2: float, min_depth: float):
    """Index, depth (sigmas) and lobe (lo, hi) of the lowest-energy resolved band, or a reason."""
    step = grid[1] - grid[0]
    minima = argrelmin(d2, order=1)[0]
    deepest = 0.0
    unresolved = None
    for i in minima:
        depth = -d2[i] / sigma_d2
        deepest = max(deepest, depth)
        if depth < min_depth:
            continue
        lo, hi = _lobe(grid, d2, i)
        above = (grid > grid[i]) & (grid <= grid[i] + RESOLVED_SPAN_LOBES * max(hi - lo, step))
        rise = float(d2[above].max()) / sigma_d2 if above.any() else -math.inf
        if rise >= MIN_RESOLVED_SIGMA:
            return int(i), float(depth), (lo, hi)
        if unresolved is None:
            unresolved = (float(grid[i]), rise)
    if unresolved is not None:
        return None, (f"no resolved exciton: the second derivative's minimum at {unresolved[0]:.3f} eV does not "
                      f"turn positive above it ({unresolved[1]:.1f} sigmas, need {MIN_RESOLVED_SIGMA:g}): "
                      "an edge without a peak or shoulder"), None
    return None, (f"no exciton: the deepest second-derivative minimum is {deepest:.1f} noise sigmas, "
                  f"need {min_depth:g}"), None


def _vertex_of_minimum(grid, values, points: int, i: int, half_width_eV: float, sigma: float
                       ) -> tuple[float, float]:
    """The vertex of a parabola fitted by least squares to the Savitzky-Golay d2A/dE2 (cubic,
    ``points`` wide) over ``grid[i] +/- half_width_eV``, and its standard error.

    The filtered values are linear in the spectrum, d2 = C A, so the parabola's coefficients
    are p = M A with M = (X^T X)^-1 X^T C, and with white noise of sigma on A their
    covariance is sigma^2 M M^T (the filtered values are correlated from point to point:
    a residual-scaled covariance would count each point as independent). The vertex
    -p1 / (2 p2) takes it by its gradient (first order).
    """
    step = float(grid[1] - grid[0])
    reach = max(round(half_width_eV / step), 2)
    half = points // 2
    rows = np.arange(max(i - reach, half), min(i + reach, grid.size - 1 - half) + 1)
    coeffs = savgol_coeffs(points, 3, deriv=2, delta=step, use="dot")
    C = np.zeros((rows.size, grid.size))
    for r, j in enumerate(rows):
        C[r, j - half:j + half + 1] = coeffs
    x = (grid[rows] - grid[i]) / step
    X = np.vander(x, 3, increasing=True)
    M = np.linalg.pinv(X) @ C
    p = M @ values
    if not p[2] > 0:
        raise InputError(f"the second derivative near {grid[i]:.3f} eV is not curved like a minimum")
    vertex = -p[1] / (2.0 * p[2])
    grad = np.array([0.0, -1.0 / (2.0 * p[2]), p[1] / (2.0 * p[2] ** 2)])
    cov = sigma**2 * (M @ M.T)
    return float(grid[i] + step * vertex), float(step * math.sqrt(max(float(grad @ cov @ grad), 0.0)))


def _place_vertex(grid, values, points: int, i: int, reach: float, sigma: float, lobe) -> tuple[float, float] | None:
    """:func:`_vertex_of_minimum` from grid point ``i``, recentred on the vertex (at most 3 times)
    until the vertex lies among the points fitted; None if it does not, or leaves the lobe."""
    step = float(grid[1] - grid[0])
    for _ in range(3):
        try:
            energy, err = _vertex_of_minimum(grid, values, points, i, reach, sigma)
        except InputError:
            return None
        if not lobe[0] < energy < lobe[1]:
            return None
        if abs(energy - float(grid[i])) <= reach:
            return energy, err
        i = int(np.clip(np.rint((energy - grid[0]) / step), 0, grid.size - 1))
    return None


def exciton_peak(energy_eV, absorbance, *, smoothing_eV: float = 0.03,
                 min_depth: float = MIN_EXCITON_DEPTH) -> ExcitonFit:
    """The first excitonic absorption peak: the lowest-energy resolved minimum of d2A/dE2.

    Parameters
    ----------
    energy_eV, absorbance : array_like
        The spectrum (any order, any spacing; resampled to a uniform grid
        for the filter, the measured points for the final fit).
    smoothing_eV : float
        The first Savitzky-Golay window (at least 7 points); later ones are
        the band's own lobe width (module docstring).
    min_depth : float
        Required depth of the minimum, in sigmas of the filtered noise.

    Returns
    -------
    ExcitonFit

    Raises
    ------
    InputError
        "no exciton" (no minimum deep enough), "no resolved exciton" (an
        edge without a peak or shoulder), or too few points across the band.
    """
    e, a = checked_spectrum(energy_eV, absorbance, "absorbance")
    grid, a_u = uniform_grid(e, a)
    step = float(grid[1] - grid[0])
    sigma = difference_sigma(a, 2)
    largest = grid.size - 1 if grid.size % 2 == 0 else grid.size - 2  # odd, shorter than the grid

    def search(points):
        d2, gain = second_derivative(grid, a_u, points)
        # An exactly noise-free spectrum still needs a scale: 1e-9 of its range.
        sigma_d2 = max(sigma * gain, 1e-9 * float(np.ptp(a_u)) * gain, np.finfo(float).tiny)
        half = points // 2
        d2[:half] = 0.0  # the filter's end points are extrapolations
        d2[-half:] = 0.0
        return d2, _first_band(grid, d2, sigma_d2, min_depth)

    # Windows double from smoothing_eV up to a sixth of the spectrum until a band is found...
    points = odd_points(smoothing_eV, step, 7, grid.size)
    if points > largest:
        raise InputError(f"the spectrum ({grid.size} points) is shorter than the smoothing window")
    while True:
        d2, (i, depth_or_reason, lobe) = search(points)
        wider = odd_points(2.0 * points * step, step, 7, grid.size)
        if i is not None or wider > min(largest, grid.size // 6):
            break
        points = wider
    if i is None:
        raise InputError(depth_or_reason)
    # ... then the window is the band's own lobe width, until it settles.
    for _ in range(MAX_WINDOW_ITERATIONS):
        new_points = min(odd_points(lobe[1] - lobe[0], step, 7, grid.size), largest)
        if new_points == points:
            break
        found = search(new_points)
        if found[1][0] is None:
            break  # keep the last window that resolved the band
        points, (d2, (i, depth_or_reason, lobe)) = new_points, found
    depth = depth_or_reason
    sg_energy = parabola_vertex(grid, d2, i)
    reach = VERTEX_REACH_LOBES * (lobe[1] - lobe[0])
    placed = _place_vertex(grid, a_u, points, i, reach, sigma, lobe)
    if placed is None:  # a noisy, flat-bottomed minimum: start again from the middle of the lobe
        middle = int(np.clip(np.rint((0.5 * (lobe[0] + lobe[1]) - grid[0]) / step), 0, grid.size - 1))
        placed = _place_vertex(grid, a_u, points, middle, reach, sigma, lobe)
    if placed is None:
        raise InputError(f"the exciton's second-derivative minimum near {sg_energy:.3f} eV cannot be placed "
                         "by a parabola inside its lobe")
    energy, err = placed
    return ExcitonFit(energy_eV=energy, energy_err_eV=err, sg_energy_eV=float(sg_energy),
                      depth_sigma=float(depth), lobe_width_eV=float(lobe[1] - lobe[0]),
                      window_eV=float(points * step), noise=float(sigma))
