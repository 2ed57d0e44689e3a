"""Find and fit the peaks of 1D diffraction patterns.

Everything here works on arrays: ``x`` (q in 1/angstrom for dacpipe, but any
increasing, about evenly sampled axis will do), ``y`` (intensity) and
optionally ``sigma`` (its standard errors). Positions, widths and areas come
back in the units of ``x`` and ``y``. Assigning peaks to phases is the
indexing stage's job. A pattern with no usable point raises
:class:`~dacpipe.core.errors.InputError`; one where nothing stands out of the
noise gives a :class:`PeakFit` without peaks.

How a pattern is fitted (:func:`fit_peaks`)
-------------------------------------------
1. Points whose x, intensity or sigma is NaN (unmeasured bins: beamstop,
   beyond the detector's corners) are left out; the filters below run on the
   remaining points as if they were contiguous.
2. A typical peak width is measured on the strongest peaks, because every
   later scale (smoothing windows, background window, grouping) is a
   multiple of it. Spikes (bins far above both neighbours, much narrower
   than a line: a diamond spot the integration's clipping missed) are left
   out too.
3. **Noise.** ``sigma`` when given; otherwise ``sigma^2 = alpha + beta * I``
   (read plus shot noise) fitted to the scatter about a local smoothing.
4. **Background.** SNIP peak clipping (:func:`estimate_background`) gives a
   first background; it follows the broad humps of a DAC pattern (anvil
   Compton, air, the amorphous pressure medium) while clipping every peak
   narrower than its window.
5. **Candidates** (:func:`find_peaks`) are the significant maxima of the
   curvature (a Savitzky-Golay second derivative), which resolves a shoulder
   one FWHM from a stronger line, plus maxima of the smoothed signal for peaks
   too weak to show a significant curvature.
6. **Groups.** Peaks closer than :data:`GROUP_FWHM` widths share a group and
   are fitted together; each group gets its own window (up to
   :data:`WINDOW_FWHM` widths beyond its outer peaks, never past the midpoint
   to the next group) and a linear correction to the background. The tails
   of all other peaks, from their latest fit, are subtracted from a window
   first: XRD lines of nanocrystals are nearly Lorentzian, and a strong line
   still adds a few percent of its height three widths away.
7. **Passes.** The groups are fitted one after the other (Gauss-Seidel); then
   the background is re-estimated as a Whittaker smoothing (Eilers, Anal.
   Chem. 75, 3631 (2003)) of the data minus all fitted peaks, which no longer
   cuts into Lorentzian wings or broad humps as SNIP does; lines still
   missing show up in the residual and are added (:func:`_add_missing`); and
   the groups are fitted again; :data:`PASSES` passes in all.
8. **Profile.** A pseudo-Voigt per peak (position, FWHM, area) with one
   Lorentzian fraction ``eta`` per group. Overlapping lines of one pattern
   have nearly the same shape (eta varies slowly with angle: Scherrer and
   strain broadening against a constant instrumental width), and a free eta
   per peak in an overlapping pair trades off against the areas. A group
   whose peaks are too weak to measure eta (signal-to-noise below
   :data:`FREE_ETA_SNR`) takes the eta of the strong groups instead,
   interpolated linearly in x.
9. **Errors** come from the covariance of the weighted fit of each group,
   multiplied by its reduced chi-square when that exceeds 1 (always, when
   the noise is estimated from the data rather than given). They are
   statistical: the background under a group is held at its smoothing apart
   from the fitted straight line, so area errors come out ~10-30 % small
   (positions and widths are honest; see tests/test_peaks.py).
10. **Dropping.** A peak whose width collapses to the lower bound or runs to
    the upper one, whose area goes to zero, whose position runs to its
    ``max_shift`` bound or is unconstrained (error > FWHM), that merges with
    a neighbour, or whose height falls below ``min_snr`` times the local
    noise, is removed and its group refitted: it is never returned with
    garbage.

Positions are those of the ``x`` given. pyFAI's integration without pixel
splitting (which sigma clipping needs) labels each bin with its centre, but
the pixel centres that fall in a bin are not spread evenly about it: on the
data-sample detector (400 bins) the mean q of a bin's pixels is off the bin
centre by 3 % of a bin rms, up to 12 %, between q = 0.6 and 4.6 1/A, and the
offsets near the zinc-blende 111 line (~1 % of a bin, all one way) move it by
-7.7e-5 of its q (3.6 standard errors). Passing the mean q of each bin's
pixels as ``x`` removes the shift (to 3e-7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import median_filter, minimum_filter1d
from scipy.optimize import least_squares, nnls

from ..core.baseline import snip, whittaker
from ..core.errors import InputError
from ..core.lsq import covariance, covariance_scale
from ..core.noise import difference_sigma, running_difference_sigma
from ..core.profiles import GAUSS_HEIGHT_FWHM, LORENTZ_HEIGHT_FWHM, area_derivatives, area_to_height, unit_parts

__all__ = ["PROFILES", "Peak", "PeakFit", "estimate_background", "find_peaks", "fit_peaks"]


def _signal():
    """scipy.signal, imported where a peak search first needs it: the
    identification imports this module (for an XRD marker) and would pay
    scipy.signal's 0.3 s at every job's start for nothing."""
    import scipy.signal

    return scipy.signal


PROFILES = ("pseudo-voigt", "gaussian", "lorentzian")

MIN_POINTS = 10
"""Fewer usable points than this cannot hold a peak and its background."""

GROUP_FWHM = 3.0
"""Peaks closer than this many (mean) FWHM are fitted together."""

WINDOW_FWHM = 3.0
"""A group's fit window reaches this many FWHM beyond its outer peaks."""

BACKGROUND_FWHM = 4.0
"""Default SNIP half-window, in typical FWHM: wide enough to clip a pair of
overlapping lines, narrow enough to follow the broad humps of a DAC pattern."""

SMOOTHER_FWHM = 10.0
"""Whittaker smoother of the peak-free residual: half-power period, in FWHM."""

FREE_ETA_SNR = 20.0
"""Below this signal-to-noise (strongest peak of a group) eta is not fitted."""

PASSES = 3

MISSING_SHARE = 0.1
"""A line found in the residual must be at least this share of the fitted
peaks at its place (see :func:`_add_missing`)."""

_MIN_HEIGHT_SIGMA = 2.0  # below this a fitted peak has collapsed into the noise
_CURVATURE_SIGMA = 4.0  # significance of a curvature maximum to be a candidate
_MERGE_FWHM = 0.3  # two peaks closer than this (in FWHM) are one
_MAX_REFITS = 6


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Peak:
    """One fitted peak.

    Attributes
    ----------
    position, position_err : float
        Centre and its standard error, in the unit of ``x``.
    fwhm, fwhm_err : float
        Full width at half maximum and its standard error (unit of ``x``).
    height : float
        Maximum of the profile above the background (unit of ``y``).
    area, area_err : float
        Integrated intensity and its standard error (``y`` times ``x``).
    eta : float
        Lorentzian fraction of the pseudo-Voigt (0 Gaussian, 1 Lorentzian);
        shared by the peaks of one group.
    snr : float
        ``height`` over the noise of the background under the peak.
    """

    position: float
    position_err: float
    fwhm: float
    fwhm_err: float
    height: float
    area: float
    area_err: float
    eta: float
    snr: float


@dataclass(frozen=True, eq=False)  # eq=False: == on arrays would be ambiguous
class PeakFit:
    """All peaks of one pattern and the fitted model.

    Attributes
    ----------
    peaks : tuple of Peak
        Sorted by position.
    background : ndarray
        The fitted background on ``x`` (interpolated where the data are NaN).
    model : ndarray
        ``background`` plus all peaks, on ``x``.
    reduced_chi2 : float
        Sum of squared normalised residuals over the usable points, per
        degree of freedom; against the noise estimated from the data when no
        ``sigma`` was given. NaN when there are no more points than parameters.
    """

    peaks: tuple[Peak, ...]
    background: np.ndarray
    model: np.ndarray
    reduced_chi2: float

    @property
    def positions(self) -> np.ndarray:
        """Peak positions as an array."""
        return np.array([p.position for p in self.peaks])


# --------------------------------------------------------------------------
# Profile
# --------------------------------------------------------------------------


def _profiles(t, c, w, a, eta):
    """(k, n) array: peak i with centre c[i], FWHM w[i], area a[i] on t; and the unit parts."""
    u, lor, gau = unit_parts(t[None, :], c[:, None], w[:, None])
    return (a / w)[:, None] * (eta * LORENTZ_HEIGHT_FWHM * lor + (1.0 - eta) * GAUSS_HEIGHT_FWHM * gau), u, lor, gau


def _sum_profiles(t, c, w, a, eta):
    """Sum of peaks (eta may be one number per peak) on t."""
    if len(c) == 0:
        return np.zeros_like(t)
    eta = np.broadcast_to(np.asarray(eta, dtype=float), np.shape(c))[:, None]
    return _profiles(t, np.asarray(c), np.asarray(w), np.asarray(a), eta)[0].sum(axis=0)


# --------------------------------------------------------------------------
# Input and scales
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Pattern:
    """The usable points of a pattern and the scales measured on them."""

    valid: np.ndarray  # bool over the full x
    x: np.ndarray  # usable points only, below likewise
    y: np.ndarray
    sigma: np.ndarray | None  # None: not given (yet)
    dx: float  # typical spacing
    estimated: bool = False  # sigma estimated from the data (see _with_noise)


def _prepare(x, y, sigma=None) -> _Pattern:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or y.shape != x.shape:
        raise InputError(f"x and y differ in shape ({x.shape} and {y.shape})")
    valid = np.isfinite(x) & np.isfinite(y)
    s = None
    if sigma is not None:
        s = np.asarray(sigma, dtype=float)
        if s.shape != x.shape:
            raise InputError(f"sigma and x differ in shape ({s.shape} and {x.shape})")
        # A zero sigma would give one point infinite weight; pyFAI writes NaN
        # for bins without counts anyway.
        valid &= np.isfinite(s) & (s > 0)
    n = int(valid.sum())
    if not np.any(np.isfinite(x) & np.isfinite(y)):
        raise InputError("no data in the pattern")
    if n == 0:
        raise InputError("no point of the pattern has a positive, finite sigma")
    if n < MIN_POINTS:
        raise InputError(f"only {n} points with data in the pattern (at least {MIN_POINTS} needed)")
    xv = x[valid]
    if np.any(np.diff(xv) <= 0):
        raise InputError("x is not strictly increasing")
    return _Pattern(valid=valid, x=xv, y=y[valid], sigma=None if s is None else s[valid],
                    dx=float(np.median(np.diff(xv))))


def _odd(n, lo=5, hi=None):
    n = max(int(round(n)), lo)
    n += 1 - n % 2
    if hi is not None and n > hi:
        n = hi - 1 + hi % 2
    return n


def _global_noise(y) -> float:
    """Noise sigma from the MAD of second differences (:func:`dacpipe.core.noise.difference_sigma`),
    never zero: the median ignores the large differences on peaks as long as
    peaks cover less than half the pattern."""
    return max(difference_sigma(y, 2), 1e-12 * max(float(np.max(np.abs(y))), 1e-300))


def _despike(p: _Pattern, fwhm_pts: float) -> _Pattern:
    """``p`` without its spikes: runs of points much narrower than a line.

    A diamond single-crystal spot that the integration's clipping missed
    (where a bin has few pixels) leaves one or two bins far above their
    neighbours. A spike is a run of at most a third of a FWHM of points,
    more than 8 sigma above a running median, whose outer neighbours stay
    below half its height above the local floor: the neighbours of the top of
    a sampled line (3 or more points per FWHM) are at more than half its
    height, however strong it is. With fewer points per FWHM lines and
    spikes look alike and nothing is removed.
    """
    if fwhm_pts < 3.0:
        return p
    y = p.y
    n = len(y)
    max_width = max(1, int(fwhm_pts // 3))
    median = median_filter(y, size=_odd(2 * max_width + 3), mode="mirror")
    noise = p.sigma if p.sigma is not None else _running_noise(p, min(_odd(10 * fwhm_pts, lo=21), n - 1 + n % 2))
    floor = minimum_filter1d(median, _odd(4 * fwhm_pts), mode="nearest")
    high = np.concatenate(([False], y - median > 8.0 * noise, [False]))
    edges = np.flatnonzero(np.diff(high.astype(np.int8)))
    spike = np.zeros(n, bool)
    for start, stop in zip(edges[::2], edges[1::2]):
        if stop - start > max_width:
            continue
        sides = [(i, j) for i, j in ((start - 1, start), (stop, stop - 1)) if 0 <= i < n]
        if all(y[i] - floor[j] < 0.5 * (y[j] - floor[j]) for i, j in sides):
            spike[start:stop] = True
    if not spike.any():
        return p
    valid = p.valid.copy()
    valid[np.flatnonzero(p.valid)[spike]] = False
    return _Pattern(valid=valid, x=p.x[~spike], y=y[~spike], sigma=None if p.sigma is None else p.sigma[~spike],
                    dx=p.dx, estimated=p.estimated)


def _with_noise(p: _Pattern, fwhm_pts: float) -> _Pattern:
    """``p`` with a sigma per point: the given one, or a model fitted to the data.

    The model is ``sigma^2 = alpha + beta * level`` (read noise plus shot
    noise; ``level`` the locally smoothed intensity), fitted to the squared
    residuals from a Savitzky-Golay smoothing over one FWHM. A constant noise
    (the background's) would do for finding peaks but not for their errors:
    on a strong line the shot noise is several times that of the background,
    and the position is learnt on its flanks (measured: errors 25-30 % too
    small with a constant noise, honest with this model).
    """
    if p.sigma is not None:
        return p
    y = p.y
    n = len(y)
    win = _odd(fwhm_pts, lo=7, hi=n)
    order = 4 if win >= 7 else 2
    level = _signal().savgol_filter(y, win, order, mode="interp")
    c0 = float(_signal().savgol_coeffs(win, order)[win // 2])
    r2 = (y - level) ** 2 / max(1.0 - c0, 0.1)  # the smoothing absorbs a share c0 of each point's noise
    # Robust start: medians of r2 in 8 bins of the level (median of chi-square(1) = 0.4549 x mean).
    edges = np.quantile(level, np.linspace(0.0, 1.0, 9))
    which = np.clip(np.searchsorted(edges, level, side="right") - 1, 0, 7)
    lev, var = [], []
    for k in range(8):
        sel = which == k
        if sel.sum() >= 5:
            lev.append(float(np.median(level[sel])))
            var.append(float(np.median(r2[sel])) / 0.4549)
    lev, var = np.array(lev), np.array(var)
    alpha, beta = float(np.median(var)), 0.0
    if len(lev) >= 2 and np.ptp(lev) > 0:
        b, a = np.polyfit(lev, var, 1)
        if b > 0 and a >= 0:
            alpha, beta = float(a), float(b)
        elif b > 0:  # no read noise: pure shot noise through the origin
            alpha, beta = 0.0, float(np.sum(var * lev) / np.sum(lev * lev))
    variance = alpha + beta * np.maximum(level, 0.0)
    floor = (0.1 * _global_noise(y)) ** 2
    sigma = np.sqrt(np.maximum(variance, floor))
    return _Pattern(valid=p.valid, x=p.x, y=p.y, sigma=sigma, dx=p.dx, estimated=True)


def _noise_curve(p: _Pattern, fwhm_pts: float) -> np.ndarray:
    """Noise of the background at each point: a running median over ~10 FWHM.

    A running median of ``sigma`` (given or modelled, :func:`_with_noise`):
    the median skips the larger shot noise on the peaks, so that the
    signal-to-noise is height over the noise of the background.
    """
    n = len(p.y)
    return _running_noise(p, min(_odd(10.0 * fwhm_pts, lo=21), n - 1 + n % 2))


def _typical_fwhm_points(p: _Pattern) -> float | None:
    """Median FWHM (in points) of the strongest peaks, or None if none stands out.

    The rough background is a running median over a tenth of the pattern
    (then over 8 widths once one is known): exact on a monotonic background,
    unbiased on noise, and barely raised by peaks covering less than half of
    the window. Peaks 8 noise sigma above it are strong (noise alone does not
    get there: a running minimum instead would put the noise 2-3 sigma above
    the background, and prominences over a long stretch of noise reach 8
    sigma); half of them, at most 10, give the median width.
    """
    y = p.y
    n = len(y)
    size = min(_odd(n / 10.0), n - 1 + n % 2)
    fwhm = None
    for _ in range(2):
        noise = _running_noise(p, size)
        signal = y - _running_median(y, size)
        idx, props = _signal().find_peaks(signal, height=8.0 * noise, prominence=4.0 * noise)
        widths = _signal().peak_widths(signal, idx, rel_height=0.5)[0] if len(idx) else np.zeros(0)
        line = widths >= 1.5  # narrower: a spike (a diamond-spot residue), not a line
        idx, widths, props = idx[line], widths[line], {"peak_heights": props["peak_heights"][line]}
        if len(idx) == 0:
            return fwhm
        top = np.argsort(props["peak_heights"] / noise[idx])[::-1][: max(1, min(10, (len(idx) + 1) // 2))]
        fwhm = float(np.clip(np.median(widths[top]), 1.0, n / 4.0))
        size = min(_odd(8.0 * fwhm, lo=21), n - 1 + n % 2)
    return fwhm


def _running_median(y, size: int) -> np.ndarray:
    """Running median; the ends are padded with the median of the end points,
    not with copies of the (noisy) last point."""
    m = max(3, size // 8)
    h = size // 2 + 1
    padded = np.concatenate((np.full(h, np.median(y[:m])), y, np.full(h, np.median(y[-m:]))))
    return median_filter(padded, size=size, mode="nearest")[h:-h]


def _running_noise(p: _Pattern, size: int) -> np.ndarray:
    """Noise at each point: running median of sigma, or of second differences.

    Mirrored at the ends: padding with copies of the last value would let one
    small difference there set the noise of the whole end window.
    """
    if p.sigma is not None:
        return median_filter(p.sigma, size=size, mode="mirror")
    noise = running_difference_sigma(p.y, size, order=2)
    floor = 0.1 * _global_noise(p.y)  # a run of identical values must not make the noise 0
    return np.maximum(noise, floor)


# --------------------------------------------------------------------------
# Background
# --------------------------------------------------------------------------


def estimate_background(x, y, *, width=None):
    """Smooth background under the peaks, by SNIP peak clipping.

    SNIP (Ryan et al., Nucl. Instrum. Methods B 34, 396 (1988); Morhac et
    al., Nucl. Instrum. Methods A 401, 113 (1997)) replaces each point by the
    mean of its neighbours ``k`` points away when that is lower, for ``k`` up
    to the half-window: a peak narrower than the window is cut away, while a
    background that curves upwards (the air and beam tail at low angle) is
    kept exactly and one that curves downwards (the amorphous hump of the
    pressure medium) is cut by only ``curvature * width^2 / 2``. Unlike
    asymmetric least squares it needs no stiffness parameter, only a width
    one can read off the pattern, and it is linear in ``y``, so arbitrary
    units and normalised patterns behave alike. The data are smoothed first
    (Savitzky-Golay over one FWHM) so that the clipping does not follow the
    low excursions of the noise.

    Parameters
    ----------
    x, y : array_like
        The pattern; ``x`` increasing and about evenly spaced. NaN points are
        left out and the background is interpolated there.
    width : float, optional
        SNIP half-window in the unit of ``x``: the half-width of the widest
        feature to treat as peaks. Default :data:`BACKGROUND_FWHM` times the
        typical FWHM of the strongest peaks (a tenth of the range when no
        peak stands out).

    Returns
    -------
    ndarray
        The background on ``x``.
    """
    p = _prepare(x, y)
    fwhm_pts = _typical_fwhm_points(p)
    bg = _snip_background(p, fwhm_pts, width)
    return _to_full(p, np.asarray(x, dtype=float), bg)


def _snip_background(p: _Pattern, fwhm_pts, width=None) -> np.ndarray:
    if width is None:
        half = BACKGROUND_FWHM * fwhm_pts if fwhm_pts else len(p.y) / 10.0
    else:
        half = float(width) / p.dx
    smooth = _signal().savgol_filter(p.y, _odd(fwhm_pts or 5, hi=len(p.y)), 2, mode="interp")
    return snip(smooth, max(1, int(round(half))))


def _to_full(p: _Pattern, x_full, values):
    """Values on the usable points, interpolated onto the full x (NaN x stays NaN)."""
    out = np.full(x_full.shape, np.nan)
    out[p.valid] = values
    missing = ~p.valid & np.isfinite(x_full)
    if missing.any():
        out[missing] = np.interp(x_full[missing], p.x, values)
    return out


# --------------------------------------------------------------------------
# Candidates
# --------------------------------------------------------------------------


def _candidates(p: _Pattern, bg, noise, fwhm_pts, threshold):
    """Indices of candidate peaks: curvature maxima, then smoothed maxima.

    The signal is smoothed over about one FWHM (Savitzky-Golay, order 2),
    which keeps ~90 % of a peak's height and halves the noise, so a noise
    excursion rarely reaches ``threshold`` sigma. The negative second
    derivative (same filter) has a maximum at every line, including a
    shoulder one FWHM from a stronger line where the smoothed signal has no
    maximum; it counts where it exceeds :data:`_CURVATURE_SIGMA` times its
    own noise (propagated through the filter). Maxima of the smoothed signal
    add the weak lines whose curvature is lost in the noise.
    """
    n = len(p.y)
    if n < 5:
        return np.array([], dtype=int)
    signal = p.y - bg
    win = _odd(fwhm_pts, hi=n)
    smooth = _signal().savgol_filter(signal, win, 2, mode="interp")
    point_noise = p.sigma if p.sigma is not None else noise
    tall = smooth >= threshold * noise
    distance = max(1.0, 0.5 * fwhm_pts)

    curv = -_signal().savgol_filter(signal, win, 2, deriv=2, mode="interp")
    coeffs = _signal().savgol_coeffs(win, 2, deriv=2)
    curv_noise = np.sqrt(np.convolve(point_noise**2, coeffs**2, mode="same"))
    found, _ = _signal().find_peaks(curv, height=_CURVATURE_SIGMA * curv_noise, distance=distance)
    found = found[tall[found]]

    maxima, _ = _signal().find_peaks(smooth, height=threshold * noise, prominence=point_noise, distance=distance)
    if len(found):
        near = np.min(np.abs(maxima[:, None] - found[None, :]), axis=1) < 0.5 * fwhm_pts
        maxima = maxima[~near]
    return np.sort(np.concatenate((found, maxima)).astype(int))


def find_peaks(x, y, sigma=None, *, min_snr=4.0, min_fwhm=None, fwhm=None):
    """Candidate peak positions of a pattern.

    The background (:func:`estimate_background`) is removed and the peaks
    are looked for as maxima of the curvature and of the smoothed signal
    (see :func:`_candidates`); each must stand ``min_snr`` times the local
    noise of the background above it (smoothed over one FWHM).

    Parameters
    ----------
    x, y : array_like
        The pattern (``x`` increasing, about evenly spaced; NaN points are
        left out).
    sigma : array_like, optional
        Standard errors of ``y``; the noise is estimated from the data when
        not given.
    min_snr : float
        Smallest height over noise to report.
    min_fwhm : float, optional
        Narrower features (in the unit of ``x``; e.g. a left-over spike) are
        not reported. Default: no limit.
    fwhm : float, optional
        Typical FWHM (unit of ``x``) when known; measured on the strongest
        peaks otherwise.

    Returns
    -------
    list of float
        Positions, increasing. Empty when nothing stands out.
    """
    p = _prepare(x, y, sigma)
    fwhm_pts = _fwhm_points(p, fwhm)
    if fwhm_pts is None:
        return []
    p = _with_noise(_despike(p, fwhm_pts), fwhm_pts)
    bg = _snip_background(p, fwhm_pts)
    noise = _noise_curve(p, fwhm_pts)
    idx = _candidates(p, bg, noise, fwhm_pts, min_snr)
    if min_fwhm is not None and len(idx):
        smooth = _signal().savgol_filter(p.y - bg, _odd(fwhm_pts, hi=len(p.y)), 2, mode="interp")
        widths = _signal().peak_widths(smooth, idx, rel_height=0.5)[0] * p.dx
        idx = idx[widths >= float(min_fwhm)]
    return [float(v) for v in p.x[idx]]


def _fwhm_points(p: _Pattern, fwhm) -> float | None:
    if fwhm is not None:
        if not (np.isfinite(fwhm) and fwhm > 0):
            raise ValueError(f"fwhm must be positive, not {fwhm!r}")
        return max(float(fwhm) / p.dx, 1.0)
    return _typical_fwhm_points(p)


# --------------------------------------------------------------------------
# Group fits
# --------------------------------------------------------------------------


@dataclass
class _GroupResult:
    c: np.ndarray
    w: np.ndarray
    a: np.ndarray
    eta: float
    c_err: np.ndarray
    w_err: np.ndarray
    a_err: np.ndarray
    eta_err: float  # NaN when eta was fixed or at a bound
    line: tuple[float, float, float, float]  # b0, b1, centre, half-width of the window
    at_bound: np.ndarray  # (k, 3) c, w, a at an active bound
    chi2: float
    n_points: int
    n_params: int


def _fit_group(t, r, s, c0, w0, a0, eta0, eta_free, c_lo, c_hi, w_lo, w_hi, scale_always):
    """Fit k pseudo-Voigts plus a straight line to r(t) with errors s."""
    k = len(c0)
    tm = 0.5 * (t[0] + t[-1])
    half = max(0.5 * (t[-1] - t[0]), 1e-300)
    u_line = (t - tm) / half
    j0 = 3 if eta_free else 2
    inv_s = 1.0 / s

    def unpack(q):
        eta = q[2] if eta_free else eta0
        pk = q[j0:].reshape(k, 3)
        return q[0], q[1], eta, pk[:, 0], pk[:, 1], pk[:, 2]

    def fun(q):
        b0, b1, eta, c, w, a = unpack(q)
        prof = _profiles(t, c, w, a, eta)[0]
        return (b0 + b1 * u_line + prof.sum(axis=0) - r) * inv_s

    def jac(q):
        b0, b1, eta, c, w, a = unpack(q)
        _, u, lor, gau = _profiles(t, c, w, a, eta)
        J = np.empty((len(t), len(q)))
        J[:, 0] = inv_s
        J[:, 1] = u_line * inv_s
        dc, dw, d_eta, da = area_derivatives(u, lor, gau, eta, w[:, None], a[:, None])
        if eta_free:
            J[:, 2] = d_eta.sum(axis=0) * inv_s
        J[:, j0::3] = (dc * inv_s).T
        J[:, j0 + 1::3] = (dw * inv_s).T
        J[:, j0 + 2::3] = (da * inv_s).T
        return J

    q0 = [0.0, 0.0] + ([float(np.clip(eta0, 0.02, 0.98))] if eta_free else [])
    lb = [-np.inf, -np.inf] + ([0.0] if eta_free else [])
    ub = [np.inf, np.inf] + ([1.0] if eta_free else [])
    for i in range(k):
        lb += [c_lo[i], w_lo, 0.0]
        ub += [c_hi[i], w_hi, np.inf]
        q0 += [float(np.clip(c0[i], c_lo[i] + 1e-9 * half, c_hi[i] - 1e-9 * half)),
               float(np.clip(w0[i], w_lo * 1.05, w_hi * 0.95)), max(float(a0[i]), 1e-12)]
    q0, lb, ub = np.array(q0), np.array(lb), np.array(ub)
    q0 = np.clip(q0, lb, ub)
    with np.errstate(all="ignore"):
        res = least_squares(fun, q0, jac=jac, bounds=(lb, ub), method="trf", x_scale="jac")
    q = res.x
    b0, b1, eta, c, w, a = unpack(q)
    n, m = len(t), len(q)
    chi2 = float(np.sum(res.fun**2)) / max(n - m, 1)

    # Parameters at an active bound are held, not fitted: the covariance of
    # the free ones. A peak with one at a bound is dropped by the caller.
    tol_w = 1e-3 * (w_hi - w_lo)
    pk_bound = np.zeros((k, 3), bool)
    pk_bound[:, 0] = (c - np.asarray(c_lo) < 1e-6 * half) | (np.asarray(c_hi) - c < 1e-6 * half)
    pk_bound[:, 1] = (w - w_lo < tol_w) | (w_hi - w < tol_w)
    pk_bound[:, 2] = a <= 1e-9 * max(float(np.max(a)), 1e-300)
    free = np.ones(m, bool)
    eta_at_bound = eta_free and (eta < 1e-3 or eta > 1.0 - 1e-3)
    if eta_at_bound:
        free[2] = False
    free[j0:] = ~pk_bound.ravel()
    err = np.full(m, np.nan)
    cov = covariance(jac(q)[:, free])
    if cov is not None:
        # scale_always: the noise was estimated from the pattern, not given.
        err[free] = np.sqrt(np.diag(cov) * covariance_scale(chi2, sigma_given=not scale_always))
    pe = err[j0:].reshape(k, 3)
    return _GroupResult(c=c, w=w, a=a, eta=float(eta), c_err=pe[:, 0], w_err=pe[:, 1], a_err=pe[:, 2],
                        eta_err=float(err[2]) if eta_free and not eta_at_bound else math.nan,
                        line=(float(b0), float(b1), tm, half), at_bound=pk_bound, chi2=chi2,
                        n_points=n, n_params=int(free.sum()))


def _groups(c, w):
    """Split sorted peaks into runs whose neighbours are closer than GROUP_FWHM widths."""
    if len(c) == 0:
        return []
    cuts = np.flatnonzero(np.diff(c) > GROUP_FWHM * 0.5 * (w[:-1] + w[1:])) + 1
    return np.split(np.arange(len(c)), cuts)


def _windows(x, c, w, groups):
    """[start, stop) point indices of each group's fit window."""
    out = []
    for g, idx in enumerate(groups):
        lo = c[idx[0]] - WINDOW_FWHM * w[idx[0]]
        hi = c[idx[-1]] + WINDOW_FWHM * w[idx[-1]]
        if g > 0:
            lo = max(lo, 0.5 * (c[groups[g - 1][-1]] + c[idx[0]]))
        if g + 1 < len(groups):
            hi = min(hi, 0.5 * (c[idx[-1]] + c[groups[g + 1][0]]))
        out.append((int(np.searchsorted(x, lo, "left")), int(np.searchsorted(x, hi, "right"))))
    return out


@dataclass
class _State:
    """The peaks as the passes see them (sorted by position)."""

    c: np.ndarray
    w: np.ndarray
    a: np.ndarray
    eta: np.ndarray
    origin: np.ndarray  # start positions: the centre of the max_shift bound

    def take(self, keep):
        return _State(self.c[keep], self.w[keep], self.a[keep], self.eta[keep], self.origin[keep])


def _start_areas(p, bg, c, w, eta):
    """Non-negative least-squares areas of peaks at fixed c, w: a start that
    shares the height of overlapping peaks out between them."""
    if len(c) == 0:
        return np.zeros(0)
    basis = _profiles(p.x, c, w, np.ones(len(c)), eta)[0]
    weight = 1.0 / (p.sigma if p.sigma is not None else np.ones_like(p.y))
    areas, _ = nnls((basis * weight).T, (p.y - bg) * weight, maxiter=50 * len(c))
    return areas


def fit_peaks(x, y, sigma=None, *, positions=None, min_snr=4.0, profile="pseudo-voigt", max_shift=None,
              fwhm=None, min_fwhm=None, max_fwhm=None) -> PeakFit:
    """Find and fit all peaks of a pattern (see the module docstring).

    Parameters
    ----------
    x, y : array_like
        The pattern: ``x`` increasing and about evenly spaced (q from pyFAI).
        Points where ``x``, ``y`` or ``sigma`` is NaN are left out.
    sigma : array_like, optional
        Standard errors of ``y``: weights ``1 / sigma^2``, and errors scaled
        by the reduced chi-square only when it exceeds 1. When not given the
        noise is estimated from the data (``sigma^2 = alpha + beta * I``,
        read plus shot noise) and the errors are always scaled by the
        reduced chi-square.
    positions : sequence of float, optional
        Start positions (e.g. lines predicted by the indexing stage): only
        these are fitted, no search. Positions outside the data are ignored;
        positions closer together than a third of a FWHM are fitted as one.
        Default: :func:`find_peaks` (at 0.75 ``min_snr``; the fit decides).
    min_snr : float
        Peaks whose fitted height is below ``min_snr`` times the noise of the
        background under them are dropped.
    profile : {"pseudo-voigt", "gaussian", "lorentzian"}
        Peak shape; the pseudo-Voigt has one eta per group of overlapping
        peaks.
    max_shift : float, optional
        Largest move of a peak from its start position (unit of ``x``); a
        peak that runs to this bound is dropped. Default: only the fit window.
    fwhm : float, optional
        Typical FWHM (unit of ``x``) when known; measured otherwise.
    min_fwhm, max_fwhm : float, optional
        Bounds of a fitted FWHM; a peak that runs to either is dropped.
        Default: one point spacing and 8 typical widths.

    Returns
    -------
    PeakFit

    Raises
    ------
    InputError
        The pattern has no (or too few) usable points.
    ValueError
        An unknown profile.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    x_full = np.asarray(x, dtype=float)
    p = _prepare(x, y, sigma)
    fwhm_pts = _fwhm_points(p, fwhm)
    if fwhm_pts is None and positions is not None:
        fwhm_pts = 5.0  # no peak to measure: a width to start from
    if fwhm_pts is None:  # nothing stands out of the noise
        return _empty_fit(p, x_full)
    p = _with_noise(_despike(p, fwhm_pts), fwhm_pts)
    bg0 = _snip_background(p, fwhm_pts)
    noise = _noise_curve(p, fwhm_pts)
    weight_sigma = p.sigma
    fwhm_x = fwhm_pts * p.dx
    w_lo = float(min_fwhm) if min_fwhm is not None else p.dx
    w_hi = float(max_fwhm) if max_fwhm is not None else 8.0 * fwhm_x
    eta_start = {"pseudo-voigt": 0.5, "gaussian": 0.0, "lorentzian": 1.0}[profile]

    # start values
    if positions is None:
        idx = _candidates(p, bg0, noise, fwhm_pts, 0.75 * min_snr)
        c = p.x[idx]
    else:
        c = np.sort(np.asarray(positions, dtype=float).ravel())
        c = c[np.isfinite(c) & (c > p.x[0]) & (c < p.x[-1])]
        if len(c):  # positions closer than a third of a width are one peak
            c = c[np.concatenate(([True], np.diff(c) > 0.3 * fwhm_x))]
    w = np.full(len(c), fwhm_x)
    a = _start_areas(p, bg0, c, w, eta_start)
    keep = a > 0
    state = _State(c[keep], w[keep], a[keep], np.full(int(keep.sum()), eta_start), c[keep].copy())

    bg = bg0
    lam = (SMOOTHER_FWHM * fwhm_pts / (2.0 * math.pi)) ** 4
    smoother_weight = 1.0 / weight_sigma**2
    smoother_weight = smoother_weight / np.median(smoother_weight)
    eta_ref = None
    results: list[tuple[np.ndarray, tuple[int, int], _GroupResult]] = []
    for n_pass in range(PASSES):
        results, state = _fit_pass(p, bg, weight_sigma, noise, state, eta_ref, profile, min_snr, max_shift,
                                   w_lo, w_hi)
        if n_pass + 1 < PASSES:
            eta_ref = _eta_reference(results) if profile == "pseudo-voigt" else None
            peaks_model = _sum_profiles(p.x, state.c, state.w, state.a, state.eta)
            bg = whittaker(p.y - peaks_model, smoother_weight, lam)
            if positions is None:
                state = _add_missing(p, bg, peaks_model, noise, state, fwhm_pts, min_snr, eta_ref, eta_start)
    return _assemble(p, x_full, bg, noise, weight_sigma, state, results)


def _add_missing(p, bg, peaks_model, noise, state, fwhm_pts, min_snr, eta_ref, eta_start):
    """Peaks that the fit so far misses: maxima of the smoothed residual.

    A weak line on the flank of a strong one bends the curvature too little
    to be a candidate at first, but once the strong line is fitted it stands
    out in the residual. A residual maximum counts when it is ``min_snr``
    times the noise high, and at least :data:`MISSING_SHARE` of the fitted
    peaks there (so that a small misfit of the profile of a very strong line
    is not taken for a line), and at least half a FWHM from every fitted peak
    (nearer, it is that peak's misfit).
    """
    resid = _signal().savgol_filter(p.y - bg - peaks_model, _odd(fwhm_pts, hi=len(p.y)), 2, mode="interp")
    idx, _ = _signal().find_peaks(resid, height=np.maximum(min_snr * noise, MISSING_SHARE * peaks_model),
                               distance=max(1.0, 0.5 * fwhm_pts))
    fwhm_x = fwhm_pts * p.dx
    if len(idx) and len(state.c):
        idx = idx[np.min(np.abs(p.x[idx, None] - state.c[None, :]), axis=1) > 0.5 * fwhm_x]
    if len(idx) == 0:
        return state
    c = p.x[idx]
    eta = np.array([eta_ref(v) if eta_ref is not None else eta_start for v in c]) if eta_start > 0 else \
        np.zeros(len(c))
    if eta_start == 1.0:
        eta[:] = 1.0
    a = resid[idx] * fwhm_x / area_to_height(eta)
    return _State(np.concatenate((state.c, c)), np.concatenate((state.w, np.full(len(c), fwhm_x))),
                  np.concatenate((state.a, a)), np.concatenate((state.eta, eta)),
                  np.concatenate((state.origin, c)))


def _fit_pass(p, bg, weight_sigma, noise, state, eta_ref, profile, min_snr, max_shift, w_lo, w_hi):
    """Fit every group once, in order, each against the latest fit of the others."""
    order = np.argsort(state.c)
    state = state.take(order)
    groups = _groups(state.c, state.w)
    windows = _windows(p.x, state.c, state.w, groups)
    results = []
    keep = np.ones(len(state.c), bool)
    scale_always = p.estimated
    for idx, (i0, i1) in zip(groups, windows):
        t, s = p.x[i0:i1], weight_sigma[i0:i1]
        if len(t) < 3 * len(idx) + 3:  # cannot hold its peaks: drop them
            keep[idx] = False
            continue
        active = idx.copy()
        for _ in range(_MAX_REFITS):
            others = keep.copy()
            others[idx] = False
            r = p.y[i0:i1] - bg[i0:i1] - _sum_profiles(t, state.c[others], state.w[others], state.a[others],
                                                       state.eta[others])
            snr_start = state.a[active] * area_to_height(state.eta[active]) / state.w[active] / np.interp(
                state.c[active], p.x, noise)
            if profile != "pseudo-voigt":
                eta_free, eta0 = False, state.eta[active[0]]
            elif eta_ref is not None and np.max(snr_start) < FREE_ETA_SNR:
                eta_free, eta0 = False, float(np.clip(eta_ref(np.mean(state.c[active])), 0.0, 1.0))
            else:
                eta_free, eta0 = True, float(np.mean(state.eta[active]))
            origin = state.origin[active]
            c_lo = np.full(len(active), t[0])
            c_hi = np.full(len(active), t[-1])
            if max_shift is not None:
                c_lo = np.maximum(c_lo, origin - max_shift)
                c_hi = np.minimum(c_hi, origin + max_shift)
            fit = _fit_group(t, r, s, state.c[active], state.w[active], state.a[active], eta0, eta_free,
                             c_lo, c_hi, w_lo, w_hi, scale_always)
            state.c[active], state.w[active], state.a[active], state.eta[active] = fit.c, fit.w, fit.a, fit.eta
            drop = _to_drop(fit, np.interp(fit.c, p.x, noise), min_snr)
            if not drop.any():
                break
            keep[active[drop]] = False
            active = active[~drop]
            if len(active) == 0:
                break
        if len(active):
            results.append((active, (i0, i1), fit))
    # indices in results refer to the sorted state before dropping: renumber
    new_index = np.cumsum(keep) - 1
    results = [(new_index[a], win, f) for a, win, f in results]
    return results, state.take(keep)


def _to_drop(fit: _GroupResult, noise, min_snr):
    """Which peaks of a group fit are garbage (see the module docstring)."""
    height = fit.a * area_to_height(fit.eta) / fit.w
    bad = fit.at_bound.any(axis=1)
    bad |= height < max(_MIN_HEIGHT_SIGMA, min_snr) * noise
    bad |= ~np.isfinite(fit.c_err) | (fit.c_err > fit.w)
    if bad.any():
        return bad
    # Two peaks on one line: drop the weaker, one pair at a time.
    close = np.flatnonzero(np.diff(fit.c) < _MERGE_FWHM * np.minimum(fit.w[:-1], fit.w[1:]))
    if len(close):
        i = int(close[0])
        bad[i if fit.a[i] < fit.a[i + 1] else i + 1] = True
    return bad


def _eta_reference(results):
    """eta(x) of the groups that measured it: a weighted straight line (or mean)."""
    xs, etas, errs = [], [], []
    for active, _, fit in results:
        if np.isfinite(fit.eta_err) and fit.eta_err < 0.2:
            xs.append(float(np.mean(fit.c)))
            etas.append(fit.eta)
            errs.append(max(fit.eta_err, 0.01))
    if not xs:
        return None
    xs, etas, wts = np.array(xs), np.array(etas), 1.0 / np.array(errs) ** 2
    if len(xs) >= 3 and np.ptp(xs) > 0:
        slope, intercept = np.polyfit(xs, etas, 1, w=np.sqrt(wts))
        lo, hi = xs.min(), xs.max()
        return lambda v: float(intercept + slope * np.clip(v, lo, hi))
    mean = float(np.average(etas, weights=wts))
    return lambda v: mean


def _assemble(p, x_full, bg, noise, weight_sigma, state, results) -> PeakFit:
    """PeakFit from the last pass: peaks, background with the window lines, chi-square."""
    peaks = []
    correction_x, correction_v = [], []
    n_params = 0
    for active, (i0, i1), fit in results:
        b0, b1, tm, half = fit.line
        t = p.x[i0:i1]
        correction_x.append(t)
        correction_v.append(b0 + b1 * (t - tm) / half)
        n_params += 2 + (0 if math.isnan(fit.eta_err) else 1)
        for j in range(len(fit.c)):
            height = float(fit.a[j] * area_to_height(fit.eta) / fit.w[j])
            peaks.append(Peak(position=float(fit.c[j]), position_err=float(fit.c_err[j]), fwhm=float(fit.w[j]),
                              fwhm_err=float(fit.w_err[j]), height=height, area=float(fit.a[j]),
                              area_err=float(fit.a_err[j]), eta=float(fit.eta),
                              snr=height / float(np.interp(fit.c[j], p.x, noise))))
            n_params += 3
    peaks.sort(key=lambda pk: pk.position)
    if correction_x:
        cx = np.concatenate(correction_x)
        order = np.argsort(cx, kind="stable")
        # inside windows the fitted line; between windows a straight bridge
        bg = bg + np.interp(p.x, cx[order], np.concatenate(correction_v)[order], left=0.0, right=0.0)
    c = np.array([pk.position for pk in peaks])
    w = np.array([pk.fwhm for pk in peaks])
    a = np.array([pk.area for pk in peaks])
    eta = np.array([pk.eta for pk in peaks])
    model = bg + _sum_profiles(p.x, c, w, a, eta)
    dof = len(p.y) - n_params
    chi2 = float(np.sum(((p.y - model) / weight_sigma) ** 2) / dof) if dof > 0 else math.nan
    background = _to_full(p, x_full, bg)
    finite = np.isfinite(x_full)
    full_model = np.full(x_full.shape, np.nan)
    full_model[finite] = background[finite] + _sum_profiles(x_full[finite], c, w, a, eta)
    return PeakFit(peaks=tuple(peaks), background=background, model=full_model, reduced_chi2=chi2)


def _empty_fit(p, x_full) -> PeakFit:
    """No peak: the background is a smoothing of the data (over a tenth of the range)."""
    noise = p.sigma if p.sigma is not None else np.full(len(p.y), _global_noise(p.y))
    noise = np.maximum(noise, 1e-150)  # noise-free data (all zeros): squares must not underflow
    weight = 1.0 / noise**2
    bg = whittaker(p.y, weight / np.median(weight), (len(p.y) / 10.0 / (2.0 * math.pi)) ** 4)
    chi2 = float(np.sum(((p.y - bg) / noise) ** 2) / max(len(p.y) - 1, 1))
    background = _to_full(p, x_full, bg)
    return PeakFit(peaks=(), background=background, model=background.copy(), reduced_chi2=chi2)
