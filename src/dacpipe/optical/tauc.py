"""Band gaps from absorption edges (Tauc).

Everything here works on arrays in photon energy (eV, increasing); reading
files and converting wavelength axes is :mod:`dacpipe.optical.spectra`'s job. A
spectrum that cannot give a trustworthy number raises
:class:`~dacpipe.core.errors.InputError` with a short reason and no path.

How a Tauc gap is found (:func:`tauc_gap`)
------------------------------------------
Tauc, Grigorovici & Vancu, phys. stat. sol. 15, 627 (1966): near a gap Eg,
``(alpha h nu)^(1/r) = B (h nu - Eg)`` with r = 1/2 for direct allowed
transitions (plot ``(alpha E)^2``) and r = 2 for indirect ones (plot
``(alpha E)^(1/2)``). In a DAC the sample thickness is unknown, so alpha is
replaced by the absorbance A = alpha d / ln 10: the constant scales the
Tauc curve and leaves the intercept, Eg, unchanged. Zanatta, Sci. Rep. 9,
11225 (2019) shows how much the answer depends on which part of the curve is
called linear; every choice below is therefore a rule, and its outcome
(windows, both lines) is returned for audit.

1. **Edge.** A direct edge (A E ~ sqrt(E - Eg)) is concave above the gap and
   convex in its Urbach tail below: the edge is the most prominent maximum of
   dA/dE (Savitzky-Golay derivative on a uniform energy grid), its energy
   refined by a parabola through the three highest points
   (:func:`absorption_inflection`). The peak must stand
   :data:`MIN_EDGE_PROMINENCE` noise sigmas above its surroundings (noise
   propagated through the filter from the spectrum's own point-to-point
   scatter), else the spectrum has "no absorption edge" (a metal, an empty
   cell). ``w``, the half width at half maximum of that peak on its
   low-energy side, is the edge's own energy scale; the windows below are
   multiples of it, so nothing depends on the material's Urbach energy or
   the spectrometer's sampling. An indirect edge (A E ~ (E - Eg)^2) is convex
   on both sides and has no inflection, and a second derivative is too noisy
   to find its foot: the foot is the threshold of the best fit of
   ``a + b E + c (E - Ek)^2 / E`` to the absorbance (:func:`absorption_onset`),
   and ``w`` is the smoothing width.
2. **DAC baseline.** Reflection losses at the anvils and scattering add to
   the optical density (Beer-Lambert: optical densities of elements in
   series add), so with ``baseline="absorbance"`` (the default) a straight
   line fitted to A over ``[E_edge - 15 w, E_edge - 5 w]`` (below the Urbach
   tail) is subtracted from A *before* the Tauc transform. Squaring an
   absorbance that still holds a 0.2-0.3 offset bends the Tauc curve and,
   on the synthetic HgTe spectra, moves the gap down by 10-25 meV even with
   the baseline intersection below; subtracting it first leaves < 2 meV.
3. **Linear part of the edge.** Windows of widths 3, 4, 6 and 8 w start at
   every point from the edge energy up to 3 w above it (Tauc's law is that
   of parabolic bands, near the gap); each gets a straight
   line by least squares on the Tauc curve. Windows with R^2 >= ``min_r2``
   are accepted; of these, ``rule="best_r2"`` (default) keeps the
   straightest, ``rule="steepest"`` the one of highest slope (the steepest
   straight part of an edge that flattens towards saturation). On 60
   synthetic HgTe spectra (noise 0.004) the steepest rule came out
   +1.5 meV high on average, because among many noisy windows the steepest
   is the one whose noise tilted it up; the straightest: +0.2 meV, scatter
   0.3 meV. Both are bounded to the edge by the start span.
4. **Sub-gap baseline and intersection** (Makuła, Pacia & Macyk, J. Phys.
   Chem. Lett. 9, 6814 (2018)): a straight line fitted to the Tauc curve over
   the baseline range of step 2 (over the corrected absorbance, it is near
   zero unless something absorbs below the gap) and Eg is where the edge
   line crosses it, not where it crosses zero. ``baseline="tauc"`` skips
   step 2's subtraction (Makuła's recipe alone); ``baseline="none"`` is the
   textbook intersection with zero. The zero crossing is always returned
   too (``zero_line_gap_eV``).
5. **Error.** Both lines' covariances (least squares, scaled by their
   residual variance) propagated through ``Eg = (a0 - a1) / (b1 - b0)``
   (the lines use disjoint points, so they are independent), combined in
   quadrature with the standard deviation of the gaps of all accepted
   windows: a statistical error alone ignores that the answer depends on
   the window (Zanatta 2019).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import find_peaks, savgol_coeffs, savgol_filter

from ..core.errors import InputError
from ..core.lsq import StraightLine, fit_straight_line
from ..core.noise import difference_sigma
from .curves import checked_spectrum, odd_points, parabola_vertex, uniform_grid

TRANSITIONS = {"direct": 2.0, "indirect": 0.5}
"""Exponent of ``(A E)`` in the Tauc plot (1/r of Tauc et al. 1966)."""
RULES = ("best_r2", "steepest")
BASELINES = ("absorbance", "tauc", "none")

MIN_EDGE_PROMINENCE = 12.0
"""Prominence of the edge in the filtered derivative, in noise sigmas. On
300 noise-only 500-point spectra the most prominent noise peak reached 5.5
(median) to 8.3 (maximum) sigmas; the synthetic HgTe edges stand at 30-40."""
MIN_LINE_POINTS = 6
WINDOW_WIDTHS_W = (3.0, 4.0, 6.0, 8.0)
WINDOW_START_SPAN_W = 3.0
BASELINE_RANGE_W = (15.0, 5.0)
MIN_BASELINE_POINTS = 8


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    """Where an absorption edge is, before any Tauc line is drawn.

    Attributes
    ----------
    energy_eV : float
        The maximum of dA/dE, parabola-refined (``method="inflection"``), or
        the kink of a two-segment line through the Tauc curve (``"onset"``).
    width_eV : float
        The edge's energy scale ``w``: half width at half maximum of the
        dA/dE peak on its low-energy side, or the smoothing width.
    significance : float
        Prominence of the dA/dE peak in noise sigmas of the filtered
        derivative, or the kink's change of slope over its standard error.
    noise : float
        Point-to-point noise of the absorbance (robust, from second differences).
    method : str
        ``"inflection"`` or ``"onset"``.
    """

    energy_eV: float
    width_eV: float
    significance: float
    noise: float
    method: str


@dataclass(frozen=True, eq=False)
class TaucFit:
    """A band gap from a Tauc plot, with everything needed to redraw it.

    Attributes
    ----------
    band_gap_eV, band_gap_err_eV : float
        Intersection of the edge line with the sub-gap line, and its standard
        error: ``band_gap_stat_err_eV`` and ``window_spread_eV`` in quadrature.
    band_gap_stat_err_eV : float
        From both lines' covariances.
    window_spread_eV : float
        Standard deviation of the gaps given by every accepted window: how
        much the answer depends on the choice of window.
    zero_line_gap_eV : float
        Where the edge line crosses zero (the textbook Tauc gap), for comparison.
    inflection_eV : float
        Maximum of dA/dE (NaN when the absorbance has no inflection).
    transition : str
        ``"direct"`` or ``"indirect"``; the Tauc curve is ``(A E)^exponent``.
    exponent : float
    edge, baseline : StraightLine
        The straight part of the edge and the sub-gap line, in Tauc units
        (eV^exponent, absorbance scale). ``edge.window`` is the window chosen.
    absorbance_baseline : tuple of float
        (intercept, slope per eV) of the line subtracted from A before the
        transform; (0, 0) unless ``baseline="absorbance"``.
    baseline_mode : str
        One of :data:`BASELINES`.
    rule : str
        One of :data:`RULES`.
    n_windows, n_accepted : int
        Windows tried, and those with R^2 >= the threshold.
    """

    band_gap_eV: float
    band_gap_err_eV: float
    band_gap_stat_err_eV: float
    window_spread_eV: float
    zero_line_gap_eV: float
    inflection_eV: float
    transition: str
    exponent: float
    edge: StraightLine
    baseline: StraightLine
    absorbance_baseline: tuple[float, float]
    baseline_mode: str
    rule: str
    n_windows: int
    n_accepted: int


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def tauc_transform(energy_eV, absorbance, transition: str = "direct"):
    """The Tauc curve ``(A E)^k``, k = 2 (direct) or 1/2 (indirect).

    The power is applied to |A E| with A's sign kept, so that noise around
    zero absorbance stays noise around zero instead of being folded up.
    """
    if transition not in TRANSITIONS:
        raise ValueError(f"transition must be one of {tuple(TRANSITIONS)}, got {transition!r}")
    product = np.asarray(absorbance, dtype=float) * np.asarray(energy_eV, dtype=float)
    return np.sign(product) * np.abs(product) ** TRANSITIONS[transition]


# --------------------------------------------------------------------------
# Absorption edge
# --------------------------------------------------------------------------


def absorption_inflection(energy_eV, absorbance, *, smoothing_eV: float = 0.03,
                          min_prominence: float = MIN_EDGE_PROMINENCE) -> Edge:
    """Locate an absorption edge by the maximum of the smoothed dA/dE.

    Parameters
    ----------
    energy_eV, absorbance : array_like
        The spectrum (any order, any spacing; resampled to a uniform grid).
    smoothing_eV : float
        Savitzky-Golay window (cubic; Savitzky & Golay, Anal. Chem. 36, 1627
        (1964)), at least 7 points.
    min_prominence : float
        Required prominence of the peak, in sigmas of the filtered noise.

    Returns
    -------
    Edge

    Raises
    ------
    InputError
        "no absorption edge in the spectrum" when no peak is prominent enough.
    """
    e, a = checked_spectrum(energy_eV, absorbance, "absorbance")
    grid, a_u = uniform_grid(e, a)
    step = grid[1] - grid[0]
    m = odd_points(smoothing_eV, step, 7, grid.size)
    if m >= grid.size:
        raise InputError(f"the spectrum ({grid.size} points) is shorter than the smoothing window")
    deriv = savgol_filter(a_u, m, 3, deriv=1, delta=step)
    # The noise of the points as measured: interpolation onto the grid would
    # hide it where the measured points are sparser than the grid.
    sigma = difference_sigma(a, 2)
    # Noise of the filtered derivative: white noise through the filter's coefficients.
    gain = float(np.sqrt(np.sum(savgol_coeffs(m, 3, deriv=1, delta=step) ** 2)))
    # An exactly noise-free spectrum still needs a scale: 1e-9 of its range.
    sigma_d = max(sigma * gain, 1e-9 * float(np.ptp(a_u)) * gain, np.finfo(float).tiny)
    half = m // 2
    peaks, props = find_peaks(deriv, prominence=0.0)
    inside = (peaks >= half) & (peaks < grid.size - half)  # the filter's edge points are extrapolations
    peaks, prominence = peaks[inside], props["prominences"][inside]
    if peaks.size == 0 or prominence.max() < min_prominence * sigma_d:
        best = 0.0 if peaks.size == 0 else prominence.max() / sigma_d
        raise InputError(f"no absorption edge in the spectrum (strongest inflection "
                         f"{best:.1f} noise sigmas, need {min_prominence:g})")
    k = int(np.argmax(prominence))
    i = int(peaks[k])
    energy = parabola_vertex(grid, deriv, i)
    # Low-energy half width: first point below half the peak height above the local floor.
    floor = deriv[i] - prominence[k]
    level = floor + 0.5 * prominence[k]
    j = i
    while j > 0 and deriv[j] > level:
        j -= 1
    # Linear interpolation between the two points that straddle the level.
    crossing = grid[j] if deriv[j + 1] == deriv[j] else (
        grid[j] + step * (level - deriv[j]) / (deriv[j + 1] - deriv[j]))
    width = max(grid[i] - crossing, step)
    return Edge(float(energy), float(width), float(prominence[k] / sigma_d), float(sigma), "inflection")


def absorption_onset(energy_eV, absorbance, *, transition: str = "indirect", smoothing_eV: float = 0.03,
                     min_significance: float = MIN_EDGE_PROMINENCE) -> Edge:
    """Locate an absorption edge by fitting its onset: a threshold law over a sloping baseline.

    ``A(E) = a + b E + c max(E - Ek, 0)^p / E`` with Tauc's exponent
    (p = 1/2 direct, 2 indirect) is fitted for every ``Ek`` between the
    spectrum's first and last tenth (linear least squares in a, b, c at
    each), and the ``Ek`` of least squared residual is the onset. It is an
    edge when ``c`` stands ``min_significance`` standard errors above zero
    and the onset describes the spectrum better than a cubic polynomial
    (as many parameters, smooth): a metal's scattering background curves
    smoothly and is not an edge. Only a locator: the gap itself comes from
    the Tauc construction of :func:`tauc_gap`.

    Raises
    ------
    InputError
        "no absorption edge in the spectrum".
    """
    exponent = 1.0 / TRANSITIONS[transition]
    e, a = checked_spectrum(energy_eV, absorbance, "absorbance")
    n = e.size
    ones = np.ones(n)
    best = None
    for k in range(n // 10, n - n // 10):
        X = np.column_stack([ones, e, np.clip(e - e[k], 0.0, None) ** exponent / e])
        coef, *_ = np.linalg.lstsq(X, a, rcond=None)
        sse = float(np.sum((a - X @ coef) ** 2))
        if best is None or sse < best[0]:
            best = (sse, k, coef, X)
    sse, k, coef, X = best
    dof = n - 4  # Ek is a parameter too
    cov = np.linalg.pinv(X.T @ X) * sse / dof
    significance = float(coef[2] / math.sqrt(cov[2, 2])) if cov[2, 2] > 0 else math.inf
    cubic = np.vander(e - e.mean(), 4)
    sse_cubic = float(np.sum((a - cubic @ np.linalg.lstsq(cubic, a, rcond=None)[0]) ** 2))
    sharp = sse < sse_cubic
    if not (coef[2] > 0 and sharp and significance >= min_significance):
        why = f"{significance:.1f} standard errors" if sharp else "no better than a smooth curve"
        raise InputError(f"no absorption edge in the spectrum (no {transition} onset: {why})")
    step = (e[-1] - e[0]) / (n - 1)
    return Edge(float(e[k]), float(max(smoothing_eV, step)), significance, difference_sigma(a, 2), "onset")


def tauc_gap(energy_eV, absorbance, *, transition: str = "direct", min_r2: float = 0.995,
             rule: str = "best_r2", baseline: str = "absorbance", smoothing_eV: float = 0.03) -> TaucFit:
    """Band gap from a Tauc plot with an objective linear window (module docstring).

    Parameters
    ----------
    energy_eV, absorbance : array_like
        Photon energy and decadic absorbance (any scale: alpha d / ln 10).
    transition : {"direct", "indirect"}
        ``(A E)^2`` or ``(A E)^(1/2)``.
    min_r2 : float
        R^2 a window must reach to count as straight.
    rule : {"best_r2", "steepest"}
        Which accepted window is kept.
    baseline : {"absorbance", "tauc", "none"}
        Subtract a sub-gap absorbance line first and intersect with the
        sub-gap Tauc line (default); only the latter (Makuła et al. 2018);
        or intersect with zero.
    smoothing_eV : float
        Savitzky-Golay window used to locate the edge.

    Returns
    -------
    TaucFit

    Raises
    ------
    InputError
        No edge, no sub-gap region for the baseline, no straight window, or
        lines that do not cross below the edge.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    exponent = TRANSITIONS.get(transition)
    if exponent is None:
        raise ValueError(f"transition must be one of {tuple(TRANSITIONS)}, got {transition!r}")
    e, a = checked_spectrum(energy_eV, absorbance, "absorbance")
    if transition == "direct":
        edge = absorption_inflection(e, a, smoothing_eV=smoothing_eV)
        inflection = edge.energy_eV
    else:
        edge = absorption_onset(e, a, transition=transition, smoothing_eV=smoothing_eV)
        try:
            inflection = absorption_inflection(e, a, smoothing_eV=smoothing_eV).energy_eV
        except InputError:
            inflection = math.nan  # an indirect edge need not have one
    w = edge.width_eV
    e_edge = edge.energy_eV

    base_mask = (e >= e_edge - BASELINE_RANGE_W[0] * w) & (e <= e_edge - BASELINE_RANGE_W[1] * w)
    if base_mask.sum() < MIN_BASELINE_POINTS:
        raise InputError(f"no sub-gap region for a baseline: the edge at {e_edge:.3f} eV is too close to "
                         f"the start of the spectrum ({e[0]:.3f} eV)")
    a_line = (0.0, 0.0)
    if baseline == "absorbance":
        line = fit_straight_line(e[base_mask], a[base_mask])
        a_line = (line.intercept, line.slope)
        a = a - line.at(e)
    y = tauc_transform(e, a, transition)
    if baseline == "none":
        base = StraightLine(0.0, 0.0, np.zeros((2, 2)), (math.nan, math.nan), 0, math.nan)
    else:
        base = fit_straight_line(e[base_mask], y[base_mask])

    candidates = []
    starts = np.flatnonzero((e >= e_edge) & (e <= e_edge + WINDOW_START_SPAN_W * w))
    for width in WINDOW_WIDTHS_W:
        for s in starts:
            stop = np.searchsorted(e, e[s] + width * w, side="right")
            if stop - s < MIN_LINE_POINTS or e[s] + width * w > e[-1]:
                continue
            candidates.append(fit_straight_line(e[s:stop], y[s:stop]))
    accepted = [c for c in candidates if c.r_squared >= min_r2 and c.slope > 0]
    if not accepted:
        best = max((c.r_squared for c in candidates), default=math.nan)
        raise InputError(f"no straight part of the Tauc plot above the edge at {e_edge:.3f} eV "
                         f"({len(candidates)} windows, best R^2 {best:.4f} < {min_r2:g})")
    key = (lambda c: c.slope) if rule == "steepest" else (lambda c: c.r_squared)
    line = max(accepted, key=key)

    gap, stat_err = _intersection(line, base)
    if not (e[0] <= gap <= line.window[1]):
        raise InputError(f"the Tauc line does not cross the baseline inside the spectrum "
                         f"(at {gap:.3f} eV)")
    # How much the answer depends on the window (Zanatta 2019): the spread of
    # the gaps of all accepted windows, added in quadrature.
    gaps = [(base.intercept - c.intercept) / (c.slope - base.slope) for c in accepted if c.slope > base.slope]
    spread = float(np.std(gaps, ddof=1)) if len(gaps) > 1 else 0.0
    zero = -line.intercept / line.slope
    return TaucFit(band_gap_eV=gap, band_gap_err_eV=float(math.hypot(stat_err, spread)),
                   band_gap_stat_err_eV=stat_err, window_spread_eV=spread, zero_line_gap_eV=float(zero),
                   inflection_eV=float(inflection), transition=transition, exponent=exponent, edge=line,
                   baseline=base, absorbance_baseline=(float(a_line[0]), float(a_line[1])),
                   baseline_mode=baseline, rule=rule, n_windows=len(candidates), n_accepted=len(accepted))


def _intersection(edge: StraightLine, base: StraightLine) -> tuple[float, float]:
    """Crossing of two independent lines and its standard error (first-order propagation)."""
    d_slope = edge.slope - base.slope
    if d_slope <= 0:
        raise InputError("the Tauc line is not steeper than the sub-gap baseline")
    gap = (base.intercept - edge.intercept) / d_slope
    # d gap / d(intercept, slope) for each line.
    g_edge = np.array([-1.0, -gap]) / d_slope
    g_base = np.array([1.0, gap]) / d_slope
    var = g_edge @ edge.covariance @ g_edge + g_base @ base.covariance @ g_base
    return float(gap), float(math.sqrt(max(var, 0.0)))


# --------------------------------------------------------------------------
# Emission peak
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Pressure dependence
# --------------------------------------------------------------------------


