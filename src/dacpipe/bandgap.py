"""Band gaps from absorption edges, emission peaks, and their pressure dependence.

Everything here works on arrays in photon energy (eV, increasing); reading
files and converting wavelength axes is :mod:`dacpipe.optical`'s job. A
spectrum that cannot give a trustworthy number raises
:class:`~dacpipe.errors.InputError` with a short reason and no path.

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

Emission peaks (:func:`fit_pl_peak`) are fitted in energy with a Gaussian or
pseudo-Voigt over a background linear in the measured axis, weighted by the
local noise.
Pressure dependences (:func:`fit_energy_vs_pressure`) are weighted least
squares of ``E0 + alpha P (+ beta P^2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter
from scipy.optimize import curve_fit
from scipy.signal import find_peaks, savgol_coeffs, savgol_filter

from dacpipe.errors import InputError

TRANSITIONS = {"direct": 2.0, "indirect": 0.5}
"""Exponent of ``(A E)`` in the Tauc plot (1/r of Tauc et al. 1966)."""
RULES = ("best_r2", "steepest")
BASELINES = ("absorbance", "tauc", "none")
PROFILES = ("gaussian", "pseudo-voigt")
MODELS = ("auto", "quadratic", "linear")

MIN_POINTS = 20
"""Fewer points than this cannot hold an edge, its baseline and a linear part."""
MIN_EDGE_PROMINENCE = 12.0
"""Prominence of the edge in the filtered derivative, in noise sigmas. On
300 noise-only 500-point spectra the most prominent noise peak reached 5.5
(median) to 8.3 (maximum) sigmas; the synthetic HgTe edges stand at 30-40."""
MIN_PEAK_SNR = 12.0
"""Prominence of an emission band in the smoothed spectrum, in local noise
sigmas. On 300 noise-only synthetic PL spectra (400 points, Poisson counts
through the wavelength-to-energy Jacobian) the most prominent noise bump
reached 4.8 (median) to 9.0 (maximum); the synthetic HgTe bands stand at 28-270."""
MIN_LINE_POINTS = 6
WINDOW_WIDTHS_W = (3.0, 4.0, 6.0, 8.0)
WINDOW_START_SPAN_W = 3.0
BASELINE_RANGE_W = (15.0, 5.0)
MIN_BASELINE_POINTS = 8

_FOUR_LN2 = 4.0 * math.log(2.0)
_GAUSS_AREA = math.sqrt(math.pi / _FOUR_LN2)  # area of a unit-height Gaussian per unit FWHM
_MAD_TO_SIGMA = 1.4826


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # eq=False: == on arrays would be ambiguous
class Line:
    """A straight line ``y = intercept + slope * E`` fitted over a window.

    Attributes
    ----------
    intercept, slope : float
        Coefficients (Tauc-curve units, per eV for the slope).
    covariance : ndarray
        2x2 covariance of (intercept, slope).
    window_eV : tuple of float
        First and last energy of the points fitted.
    n_points : int
    r_squared : float
    """

    intercept: float
    slope: float
    covariance: np.ndarray
    window_eV: tuple[float, float]
    n_points: int
    r_squared: float

    def at(self, energy_eV):
        return self.intercept + self.slope * np.asarray(energy_eV, dtype=float)


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
    edge, baseline : Line
        The straight part of the edge and the sub-gap line, in Tauc units
        (eV^exponent, absorbance scale). ``edge.window_eV`` is the window chosen.
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
    edge: Line
    baseline: Line
    absorbance_baseline: tuple[float, float]
    baseline_mode: str
    rule: str
    n_windows: int
    n_accepted: int


@dataclass(frozen=True)
class PeakFit:
    """An emission band fitted in energy.

    Attributes
    ----------
    energy_eV, energy_err_eV : float
        Centre of the profile and its standard error.
    fwhm_eV, fwhm_err_eV : float
    area, area_err : float
        Integrated intensity over energy (units of the intensity times eV).
    amplitude : float
        Height above the background.
    eta : float
        Lorentzian fraction (0 for a Gaussian).
    background : tuple of float
        (value at the centre, slope per eV) of the background, in the
        intensity units at the peak (see ``background_scale``).
    window_eV : tuple of float
    snr : float
        Prominence of the band in the smoothed spectrum over its local noise.
    reduced_chi2 : float
        With the local noise estimate as the point errors.
    profile : str
    """

    energy_eV: float
    energy_err_eV: float
    fwhm_eV: float
    fwhm_err_eV: float
    area: float
    area_err: float
    amplitude: float
    eta: float
    background: tuple[float, float]
    window_eV: tuple[float, float]
    snr: float
    reduced_chi2: float
    profile: str


@dataclass(frozen=True, eq=False)
class PressureFit:
    """``E(P) = E0 + alpha P + beta P^2`` (beta NaN for the linear model).

    Attributes
    ----------
    model : str
        ``"quadratic"`` or ``"linear"``.
    E0_eV, alpha_eV_per_GPa, beta_eV_per_GPa2 : float
        Coefficients; alpha is dE/dP at zero pressure.
    E0_err_eV, alpha_err_eV_per_GPa, beta_err_eV_per_GPa2 : float
        Standard errors.
    covariance : ndarray
        3x3 covariance of (E0, alpha, beta); the beta row and column are NaN
        for the linear model.
    n_points : int
    pressure_min_GPa, pressure_max_GPa : float
    reduced_chi2 : float
        NaN when there are no degrees of freedom or no point errors.
    error_scale : float
        Factor applied to the covariance: the Birge ratio sqrt(chi2_red)
        when above 1 (the scatter says the point errors are too small), else 1.
    """

    model: str
    E0_eV: float
    E0_err_eV: float
    alpha_eV_per_GPa: float
    alpha_err_eV_per_GPa: float
    beta_eV_per_GPa2: float
    beta_err_eV_per_GPa2: float
    covariance: np.ndarray
    n_points: int
    pressure_min_GPa: float
    pressure_max_GPa: float
    reduced_chi2: float
    error_scale: float

    def energy_eV(self, pressure_GPa):
        """The fitted E at ``pressure_GPa``."""
        p = np.asarray(pressure_GPa, dtype=float)
        beta = 0.0 if self.model == "linear" else self.beta_eV_per_GPa2
        return self.E0_eV + self.alpha_eV_per_GPa * p + beta * p * p


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _checked(energy_eV, values, what: str):
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


def noise_sigma(values) -> float:
    """Robust point-to-point noise: MAD of second differences / sqrt(6).

    Second differences cancel any smooth signal (a line exactly, a curve to
    the extent it is sampled finely), and the MAD ignores spikes; for white
    noise of variance s^2 the second difference has variance 6 s^2.
    """
    d2 = np.diff(np.asarray(values, dtype=float), 2)
    if d2.size == 0:
        return math.nan
    return float(_MAD_TO_SIGMA * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6.0))


def _uniform(e, y):
    """Resample onto a uniform energy grid (Savitzky-Golay needs one)."""
    grid = np.linspace(e[0], e[-1], e.size)
    return grid, np.interp(grid, e, y)


def _odd_points(width_eV: float, step_eV: float, minimum: int, n: int) -> int:
    m = max(minimum, int(round(width_eV / step_eV)))
    return m + 1 - m % 2  # odd; callers check it against n


def _parabola_vertex(x, y, i: int) -> float:
    """Vertex of the parabola through points i-1, i, i+1 (x uniform)."""
    if i <= 0 or i >= len(y) - 1:
        return float(x[i])
    denom = y[i - 1] - 2.0 * y[i] + y[i + 1]
    if denom >= 0:
        return float(x[i])
    shift = 0.5 * (y[i - 1] - y[i + 1]) / denom
    return float(x[i] + np.clip(shift, -1.0, 1.0) * (x[1] - x[0]))


def fit_line(energy_eV, values) -> Line:
    """Least-squares straight line with its covariance scaled by the residual variance."""
    e = np.asarray(energy_eV, dtype=float)
    y = np.asarray(values, dtype=float)
    n = e.size
    if n < 3:
        raise ValueError("a line with an error needs at least 3 points")
    center = e.mean()  # centred for conditioning; converted back below
    x = e - center
    sxx = float(np.sum(x * x))
    slope = float(np.sum(x * (y - y.mean())) / sxx)
    mean = float(y.mean())
    residual = y - (mean + slope * x)
    ss_res = float(np.sum(residual**2))
    ss_tot = float(np.sum((y - mean) ** 2))
    s2 = ss_res / (n - 2)
    var_slope = s2 / sxx
    var_mean = s2 / n
    intercept = mean - slope * center
    cov = np.array([[var_mean + center**2 * var_slope, -center * var_slope],
                    [-center * var_slope, var_slope]])
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    return Line(intercept, slope, cov, (float(e[0]), float(e[-1])), n, float(r2))


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
    e, a = _checked(energy_eV, absorbance, "absorbance")
    grid, a_u = _uniform(e, a)
    step = grid[1] - grid[0]
    m = _odd_points(smoothing_eV, step, 7, grid.size)
    if m >= grid.size:
        raise InputError(f"the spectrum ({grid.size} points) is shorter than the smoothing window")
    deriv = savgol_filter(a_u, m, 3, deriv=1, delta=step)
    # The noise of the points as measured: interpolation onto the grid would
    # hide it where the measured points are sparser than the grid.
    sigma = noise_sigma(a)
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
    energy = _parabola_vertex(grid, deriv, i)
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
    e, a = _checked(energy_eV, absorbance, "absorbance")
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
    return Edge(float(e[k]), float(max(smoothing_eV, step)), significance, noise_sigma(a), "onset")


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
    e, a = _checked(energy_eV, absorbance, "absorbance")
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
        line = fit_line(e[base_mask], a[base_mask])
        a_line = (line.intercept, line.slope)
        a = a - line.at(e)
    y = tauc_transform(e, a, transition)
    if baseline == "none":
        base = Line(0.0, 0.0, np.zeros((2, 2)), (math.nan, math.nan), 0, math.nan)
    else:
        base = fit_line(e[base_mask], y[base_mask])

    candidates = []
    starts = np.flatnonzero((e >= e_edge) & (e <= e_edge + WINDOW_START_SPAN_W * w))
    for width in WINDOW_WIDTHS_W:
        for s in starts:
            stop = np.searchsorted(e, e[s] + width * w, side="right")
            if stop - s < MIN_LINE_POINTS or e[s] + width * w > e[-1]:
                continue
            candidates.append(fit_line(e[s:stop], y[s:stop]))
    accepted = [c for c in candidates if c.r_squared >= min_r2 and c.slope > 0]
    if not accepted:
        best = max((c.r_squared for c in candidates), default=math.nan)
        raise InputError(f"no straight part of the Tauc plot above the edge at {e_edge:.3f} eV "
                         f"({len(candidates)} windows, best R^2 {best:.4f} < {min_r2:g})")
    key = (lambda c: c.slope) if rule == "steepest" else (lambda c: c.r_squared)
    line = max(accepted, key=key)

    gap, stat_err = _intersection(line, base)
    if not (e[0] <= gap <= line.window_eV[1]):
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


def _intersection(edge: Line, base: Line) -> tuple[float, float]:
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


def _profile(e, center, fwhm, height, eta, bg0, bg1, scale=1.0):
    u2 = ((e - center) / fwhm) ** 2
    shape = eta / (1.0 + 4.0 * u2) + (1.0 - eta) * np.exp(-_FOUR_LN2 * u2)
    return (bg0 + bg1 * (e - center)) * scale + height * shape


def local_noise(values, width: int = 61) -> np.ndarray:
    """Noise of each point from the running median of |second differences|.

    Photon counting makes the noise grow with the signal, and the Jacobian
    of a wavelength-to-energy conversion multiplies it by lambda^2, so one
    number for the whole spectrum will not do.
    """
    y = np.asarray(values, dtype=float)
    d2 = np.abs(np.diff(y, 2))
    d2 = np.concatenate([d2[:1], d2, d2[-1:]])
    # median |N(0, 6 s^2)| = 0.6745 sqrt(6) s
    sigma = median_filter(d2, size=min(width, y.size), mode="mirror") * _MAD_TO_SIGMA / math.sqrt(6.0)
    floor = max(float(np.median(sigma)) * 1e-3, np.finfo(float).tiny)
    return np.maximum(sigma, floor)


def fit_pl_peak(energy_eV, intensity, *, profile: str = "gaussian", min_snr: float = MIN_PEAK_SNR,
                smoothing_points: int = 7, background_scale=None) -> PeakFit:
    """Fit the strongest emission band of a spectrum in energy.

    The band is the most significant maximum of the lightly smoothed
    spectrum (its prominence over the local noise of the smoothed curve);
    it is then fitted over +- 3 FWHM with a Gaussian or pseudo-Voigt
    (Thompson, Cox & Hastings, J. Appl. Cryst. 20, 79 (1987)) on a linear
    background, by least squares weighted with the local noise (first from
    second differences, :func:`local_noise`, then from the residual of that
    first fit); errors from the covariance scaled by the reduced chi^2.

    A dark level or stray light is flat per detector pixel, i.e. in the
    measured axis; through the wavelength-to-energy Jacobian it becomes
    steeply curved in energy (per eV ~ lambda^2, 5x across a band at
    0.3 eV), which a straight background cannot follow: the synthetic bands
    below 0.35 eV came out 3-4 meV low. With ``background_scale`` (the
    Jacobian applied to each point) the background is linear in the
    measured units, ``(b0 + b1 (E - Ec)) * scale``.

    Parameters
    ----------
    energy_eV, intensity : array_like
        Intensity per unit energy (see :func:`dacpipe.optical.to_energy` for
        the Jacobian).
    profile : {"gaussian", "pseudo-voigt"}
    min_snr : float
        Required prominence of the band, in noise sigmas of the smoothed
        spectrum (:data:`MIN_PEAK_SNR`).
    smoothing_points : int
        Savitzky-Golay window (quadratic, in points as measured) used to find
        the band, not to fit it. Points, not eV: a spectrometer's sampling is
        uniform in its own axis, and the noise estimate is per point.
    background_scale : array_like, optional
        Per point, the factor the intensity was multiplied by to become a
        density per eV (:func:`dacpipe.optical.jacobian`); None: 1.

    Raises
    ------
    InputError
        "no emission peak above noise", or a fit that does not converge.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    e, y = np.asarray(energy_eV, dtype=float).ravel(), np.asarray(intensity, dtype=float).ravel()
    scale = np.ones_like(e) if background_scale is None else np.asarray(background_scale, dtype=float).ravel()
    if not (e.shape == y.shape == scale.shape):
        raise ValueError("energy, intensity and background_scale have different lengths")
    keep = np.isfinite(e) & np.isfinite(y) & np.isfinite(scale)
    order = np.argsort(e[keep], kind="stable")
    scale = scale[keep][order]
    e, y = _checked(e[keep][order], y[keep][order], "emission")
    m = max(5, smoothing_points + 1 - smoothing_points % 2)
    smooth = savgol_filter(y, m, 2)
    noise = local_noise(y)
    sigma_s = noise * float(np.sqrt(np.sum(savgol_coeffs(m, 2) ** 2)))
    peaks, props = find_peaks(smooth, prominence=0.0)
    # The filter's and the noise estimate's last points are extrapolations:
    # a band must have a full window of points on either side.
    inside = (peaks >= m) & (peaks < y.size - m)
    peaks, prominence = peaks[inside], props["prominences"][inside]
    if peaks.size == 0:
        raise InputError("no emission peak above noise (no maximum inside the spectrum)")
    z = prominence / sigma_s[peaks]
    k = int(np.argmax(z))
    if z[k] < min_snr:
        raise InputError(f"no emission peak above noise (strongest band {z[k]:.1f} noise sigmas, "
                         f"need {min_snr:g})")
    i = int(peaks[k])
    center0, height0 = float(e[i]), float(prominence[k])
    level = smooth[i] - 0.5 * height0
    lo, hi = i, i
    while lo > 0 and smooth[lo] > level:
        lo -= 1
    while hi < y.size - 1 and smooth[hi] > level:
        hi += 1
    step = float(np.median(np.diff(e[max(lo - 1, 0):hi + 2])))
    fwhm0 = max(float(e[hi] - e[lo]), 3.0 * step)
    window = (e >= center0 - 3.0 * fwhm0) & (e <= center0 + 3.0 * fwhm0)
    if window.sum() < 10:
        raise InputError(f"emission band at {center0:.3f} eV has only {int(window.sum())} points")
    ew, yw, sw = e[window], y[window], noise[window]
    cw = scale[window] / scale[i]
    bg0 = float(smooth[i] - height0)
    p0 = [center0, fwhm0, height0, 0.5 if profile == "pseudo-voigt" else 0.0, bg0, 0.0]
    span = ew[-1] - ew[0]
    lower = [ew[0], 0.5 * step, 0.0, 0.0, -np.inf, -np.inf]
    upper = [ew[-1], 2.0 * span, np.inf, 1.0, np.inf, np.inf]
    if profile == "gaussian":
        model = lambda x, c, f, h, b0, b1: _profile(x, c, f, h, 0.0, b0, b1, cw)  # noqa: E731
        p0.pop(3), lower.pop(3), upper.pop(3)
    else:
        model = lambda x, c, f, h, eta, b0, b1: _profile(x, c, f, h, eta, b0, b1, cw)  # noqa: E731
    try:
        popt, pcov = curve_fit(model, ew, yw, p0=p0, sigma=sw, absolute_sigma=False,
                               bounds=(lower, upper), max_nfev=2000)
        # Second differences also see the band's own curvature where it is
        # sampled coarsely; the residual does not. Refit with the noise of
        # the residual (running MAD over 15 points), which follows the
        # photon noise across the band.
        residual = np.abs(yw - model(ew, *popt))
        sw = np.maximum(_MAD_TO_SIGMA * median_filter(residual, size=min(15, ew.size), mode="mirror"),
                        1e-3 * float(np.median(sw)))
        popt, pcov = curve_fit(model, ew, yw, p0=popt, sigma=sw, absolute_sigma=False,
                               bounds=(lower, upper), max_nfev=2000)
    except (RuntimeError, ValueError) as err:
        raise InputError(f"emission band fit did not converge ({err})") from None
    if profile == "gaussian":
        popt = np.insert(popt, 3, 0.0)
        pcov = np.insert(np.insert(pcov, 3, 0.0, axis=0), 3, 0.0, axis=1)
    if not np.all(np.isfinite(pcov)):
        raise InputError("emission band fit is undetermined (singular covariance)")
    center, fwhm, height, eta, b0, b1 = (float(v) for v in popt)
    residual = (yw - _profile(ew, *popt, cw)) / sw
    chi2 = float(np.sum(residual**2) / max(ew.size - (5 if profile == "gaussian" else 6), 1))
    shape_area = eta * math.pi / 2.0 + (1.0 - eta) * _GAUSS_AREA
    area = height * fwhm * shape_area
    # d area / d(center, fwhm, height, eta, bg0, bg1)
    grad = np.array([0.0, height * shape_area, fwhm * shape_area,
                     height * fwhm * (math.pi / 2.0 - _GAUSS_AREA), 0.0, 0.0])
    area_err = math.sqrt(max(float(grad @ pcov @ grad), 0.0))
    return PeakFit(energy_eV=center, energy_err_eV=float(math.sqrt(pcov[0, 0])), fwhm_eV=fwhm,
                   fwhm_err_eV=float(math.sqrt(pcov[1, 1])), area=float(area), area_err=area_err,
                   amplitude=height, eta=eta, background=(b0, b1), window_eV=(float(ew[0]), float(ew[-1])),
                   snr=float(z[k]), reduced_chi2=chi2, profile=profile)


# --------------------------------------------------------------------------
# Pressure dependence
# --------------------------------------------------------------------------


def fit_energy_vs_pressure(pressure_GPa, energy_eV, energy_err_eV=None, *, model: str = "auto",
                           pressure_err_GPa=None) -> PressureFit:
    """Weighted least squares of ``E(P) = E0 + alpha P (+ beta P^2)``.

    Parameters
    ----------
    pressure_GPa, energy_eV : array_like
        Points; non-finite pairs are left out.
    energy_err_eV : array_like, optional
        Standard errors of E. Without them (or when any is not a positive
        number) the fit is unweighted and its errors come from the scatter.
    model : {"auto", "quadratic", "linear"}
        ``"auto"``: quadratic with >= 4 points (one more than its three
        parameters, so the scatter is measured), linear with 2-3.
        ``"quadratic"`` with fewer than 4 points falls back to linear.
    pressure_err_GPa : array_like, optional
        Pressure errors, turned into energy errors through the fitted slope
        (effective variance, Orear, Am. J. Phys. 50, 912 (1982); two passes).

    Returns
    -------
    PressureFit
        The covariance is ``(X^T W X)^-1`` times max(1, chi2_red) (Birge
        ratio squared): the errors never claim more than the points' own
        errors allow, and grow when the scatter exceeds them. With 2 points
        and a line there is no scatter to judge; the errors are the points'.

    Raises
    ------
    InputError
        Fewer than 2 usable points, or all at one pressure.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    p = np.asarray(pressure_GPa, dtype=float).ravel()
    E = np.asarray(energy_eV, dtype=float).ravel()
    s = np.full(p.shape, np.nan) if energy_err_eV is None else np.asarray(energy_err_eV, dtype=float).ravel()
    sp = np.zeros(p.shape) if pressure_err_GPa is None else np.asarray(pressure_err_GPa, dtype=float).ravel()
    keep = np.isfinite(p) & np.isfinite(E)
    p, E, s, sp = p[keep], E[keep], s[keep], np.where(np.isfinite(sp[keep]), sp[keep], 0.0)
    n = p.size
    if n < 2:
        raise InputError(f"{n} point(s) with an energy and a pressure; a fit needs at least 2")
    if np.ptp(p) <= 0:
        raise InputError(f"all {n} points are at {p[0]:g} GPa")
    chosen = "quadratic" if (model in ("auto", "quadratic") and n >= 4) else "linear"
    k = 3 if chosen == "quadratic" else 2
    X = np.vander(p, k, increasing=True)
    weighted = bool(np.all(np.isfinite(s) & (s > 0)))
    sigma2 = s**2 if weighted else np.ones(n)
    coef = np.zeros(k)
    for _ in range(2 if weighted and np.any(sp > 0) else 1):
        slope = coef[1] + (2.0 * coef[2] * p if k == 3 else 0.0)
        var = sigma2 + (slope * sp) ** 2 if weighted else sigma2
        w = 1.0 / var
        normal = X.T @ (X * w[:, None])
        coef = np.linalg.solve(normal, X.T @ (w * E))
    cov = np.linalg.inv(normal)
    dof = n - k
    residual = E - X @ coef
    chi2 = float(np.sum(w * residual**2) / dof) if dof > 0 else math.nan
    if weighted:
        scale = max(1.0, chi2) if dof > 0 else 1.0
    else:
        scale = chi2 if dof > 0 else math.nan  # no errors and no scatter: unknown
        chi2 = math.nan
    cov = cov * scale
    full = np.full((3, 3), np.nan)
    full[:k, :k] = cov
    err = np.sqrt(np.diag(full))
    beta = float(coef[2]) if k == 3 else math.nan
    return PressureFit(model=chosen, E0_eV=float(coef[0]), E0_err_eV=float(err[0]),
                       alpha_eV_per_GPa=float(coef[1]), alpha_err_eV_per_GPa=float(err[1]),
                       beta_eV_per_GPa2=beta, beta_err_eV_per_GPa2=float(err[2]), covariance=full,
                       n_points=n, pressure_min_GPa=float(p.min()), pressure_max_GPa=float(p.max()),
                       reduced_chi2=chi2, error_scale=float(math.sqrt(scale)) if np.isfinite(scale) else math.nan)
