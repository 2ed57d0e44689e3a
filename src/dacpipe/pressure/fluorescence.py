"""Fit the fluorescence lines of pressure gauges: the ruby R1/R2 doublet, the Sm:SrB4O7 0-0 line.

Everything here works on arrays (``x`` strictly increasing, ``y`` counts) and
returns a line position with an honest error; turning positions into pressure
is :mod:`dacpipe.pressure.scales`' job, reading files is :mod:`dacpipe.io.spectra`'s.
When a spectrum cannot give a trustworthy position the functions raise
:class:`~dacpipe.core.errors.InputError` with a short reason and no path (the
caller that read the file adds it). The diamond Raman edge is
:mod:`dacpipe.pressure.diamond`.

How a ruby spectrum is fitted
-----------------------------
1. Cosmic-ray spikes are flagged (:func:`despike`) and left out of the fit.
2. A smooth baseline (a morphological opening, 15 nm wide) is subtracted and
   the strongest peak of the lightly smoothed signal is R1 (R1 is always the
   stronger line of the doublet). Its width comes from the half-maximum
   crossing on the long-wavelength side, the side R2 cannot disturb. Nothing
   is hand-set, so any pressure (R1 694-760 nm) and any window works.
3. R2 is looked for ~30 cm^-1 above R1 in energy (1.45 nm at 0 GPa,
   1.7 nm at 150 GPa).
4. Two profiles over a linear background are fitted by Levenberg-Marquardt
   (MINPACK, :func:`scipy.optimize.leastsq`) with an analytic Jacobian, on
   the window ``R2 - 5 FWHM .. R1 + 5 FWHM``. Soft constraints on what a
   doublet looks like (width ratio, height ratio, splitting; each worth one
   data point) do nothing to resolved lines but keep lines that merge into
   one band (non-hydrostatic, high pressure) from trading height, width and
   position against each other.
5. Spikes hidden by a line show up in the fit residual, or, when a spike
   pulled a narrow line onto itself, when left out of a refit; they are
   masked and the fit repeated (:func:`_fit_window`).
6. Errors come from the covariance of the fit, with a noise variance that
   grows with the signal (shot noise); see
   :func:`dacpipe.pressure.shot_noise.shot_noise_covariance`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, median_filter, minimum_filter1d, uniform_filter1d

from ..core.errors import InputError
from ..core.lsq import levenberg_marquardt
from ..core.noise import difference_sigma, fast_median
from ..core.profiles import height_derivatives, pseudo_voigt_height, unit_parts
from .shot_noise import shot_noise_covariance, variance_fit
from .spikes import MIN_POINTS, as_spectrum, count_runs, flag_runs, spike_mask

PROFILES = ("pseudo-voigt", "lorentzian", "gaussian")

R1_R2_SPLITTING_CM1 = 30.0
"""R1-R2 splitting in energy; it stays within ~29-32 cm^-1 up to 150 GPa."""

R2_R1_HEIGHT_RATIO = 0.6
"""Typical height of R2 relative to R1 (0.4-0.8 in practice)."""

_MIN_R2_RATIO = 0.15  # below this, the "R2" found is not R2
# Soft constraints on a doublet (see _LineModel): ln(w2/w1), ln(a2/a1), splitting (cm^-1).
_DOUBLET_MEAN = np.array([0.0, math.log(R2_R1_HEIGHT_RATIO), R1_R2_SPLITTING_CM1])
_DOUBLET_SIGMA = np.array([0.3, 0.35, 2.0])
_BASELINE_SCALE_NM = 15.0  # wider than a merged R band (~4 nm FWHM), narrower than fluorescence humps
_WINDOW_FWHM = 5.0  # fit window reaches this many FWHM beyond the outer lines
_MIN_WINDOW_NM = 3.0
_MIN_HEIGHT_SIGMA = 5.0  # a line must stand this many noise sigmas above the baseline
_SPIKE_PASSES = 4
_SATURATION_RUN = 3
_SATURATION_TOLERANCE = 1e-3
# Full-scale readings of 12, 14, 15 (signed 16), 16, 18 and 20 bit ADCs.
_ADC_CEILINGS = (4095.0, 16383.0, 32767.0, 65535.0, 262143.0, 1048575.0)


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RubyFit:
    """Fitted ruby R1/R2 doublet.

    Attributes
    ----------
    r1_nm, r1_err_nm, r2_nm, r2_err_nm : float
        Line centres and their standard errors.
    r1_fwhm_nm, r2_fwhm_nm : float
        Full widths at half maximum.
    r1_amplitude, r2_amplitude : float
        Peak heights above the background, in the units of ``y``.
    eta : float
        Lorentzian fraction of the pseudo-Voigt (1 lorentzian, 0 gaussian).
    background : tuple of float
        Offset and slope (per nm) of the linear background at the window centre.
    window_nm : tuple of float
        First and last wavelength of the points that were fitted.
    reduced_chi2 : float
        Sum of squared residuals over the noise variance, per degree of
        freedom. The noise comes from the spectrum itself: first differences
        of the residual (which cancel any smooth misfit), with a variance
        growing linearly with the line signal (shot noise). Near 1 when the
        residual is only noise; well above 1 when the model misses structure.
    r_squared : float
        Coefficient of determination in the window.
    n_spikes : int
        Cosmic-ray spikes left out of the fit.
    profile : str
        One of :data:`PROFILES`.
    """

    r1_nm: float
    r1_err_nm: float
    r2_nm: float
    r2_err_nm: float
    r1_fwhm_nm: float
    r2_fwhm_nm: float
    r1_amplitude: float
    r2_amplitude: float
    eta: float
    background: tuple[float, float]
    window_nm: tuple[float, float]
    reduced_chi2: float
    r_squared: float
    n_spikes: int
    profile: str

    def evaluate(self, x):
        """The fitted model (both lines and the background) at ``x`` (nm)."""
        return _lines_and_background(x, (self.r1_nm, self.r2_nm), (self.r1_amplitude, self.r2_amplitude),
                                     (self.r1_fwhm_nm, self.r2_fwhm_nm), self.eta, self.background, self.window_nm)


@dataclass(frozen=True)
class SingleLineFit:
    """One fitted fluorescence line (e.g. the Sm:SrB4O7 0-0 line).

    Fields mean the same as in :class:`RubyFit`.
    """

    center_nm: float
    center_err_nm: float
    fwhm_nm: float
    amplitude: float
    eta: float
    background: tuple[float, float]
    window_nm: tuple[float, float]
    reduced_chi2: float
    r_squared: float
    n_spikes: int
    profile: str

    def evaluate(self, x):
        """The fitted model (line and background) at ``x`` (nm)."""
        return _lines_and_background(x, (self.center_nm,), (self.amplitude,), (self.fwhm_nm,), self.eta,
                                     self.background, self.window_nm)


def _lines_and_background(x, centres, heights, widths, eta, background, window_nm):
    """Pseudo-Voigt lines of a common eta over a straight background about the window's centre."""
    x = np.asarray(x, dtype=float)
    t = x - 0.5 * (window_nm[0] + window_nm[1])
    lines = sum(a * pseudo_voigt_height(x, c, w, eta) for c, a, w in zip(centres, heights, widths))
    return lines + background[0] + background[1] * t


# --------------------------------------------------------------------------
# Profiles and spikes
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Input checks and start values
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Peak:
    x: float
    height: float  # above the smooth baseline
    hwhm_right: float  # half width at half maximum on the high-x side


def _signal(x, y):
    """Lightly smoothed spectrum, and the same minus a smooth baseline.

    The 5-point median takes off any spike that despike() could not tell
    from the top of a narrow line, so that it cannot set the start values;
    lines >= 5 points wide keep their place and most of their height.
    """
    smooth = uniform_filter1d(median_filter(y, size=5, mode="mirror"), 3, mode="nearest")
    dx = (x[-1] - x[0]) / (len(x) - 1)
    size = int(np.clip(round(_BASELINE_SCALE_NM / dx), 3, 4 * len(x)))
    # Morphological opening: removes every peak narrower than `size` and
    # follows a background that curves more slowly. It cannot follow a
    # sloped background into the ends of the data, so the data are first
    # extended by straight lines.
    padded = _extend_linearly(smooth, size)
    baseline = maximum_filter1d(minimum_filter1d(padded, size, mode="nearest"), size, mode="nearest")
    return smooth, smooth - baseline[size:-size]


def _extend_linearly(v, k):
    """``v`` with ``k`` points added at each end, on the slope of its outer points."""
    m = max(min(k, len(v) // 4) // 2, 1)
    steps = np.arange(1, k + 1)
    left = v[:m].mean() - (v[m : 2 * m].mean() - v[:m].mean()) / m * steps[::-1]
    right = v[-m:].mean() + (v[-m:].mean() - v[-2 * m : -m].mean()) / m * steps
    return np.concatenate((left, v, right))


def _strongest_peak(x, signal, noise, name):
    """Locate the strongest peak; raise if there is none or it is cut by an edge."""
    i = int(np.argmax(signal))
    height = float(signal[i])
    if not height > _MIN_HEIGHT_SIGMA * noise:
        raise InputError("no peak above noise")
    half = 0.5 * height
    right = np.flatnonzero(signal[i:] < half)
    left = np.flatnonzero(signal[: i + 1] < half)
    if len(right) == 0 or len(left) == 0:
        raise InputError(f"{name} at {x[i]:.2f} nm is outside the spectrometer window")
    j = i + int(right[0])
    # Linear interpolation of the half-maximum crossing between j-1 and j.
    f = (signal[j - 1] - half) / (signal[j - 1] - signal[j])
    x_half = x[j - 1] + f * (x[j] - x[j - 1])
    return _Peak(x=float(x[i]), height=height, hwhm_right=float(x_half - x[i]))


def _flat_top(x, y, peak: _Peak, name):
    """The run of points that looks clipped at the top of the line, or None.

    Raises at once when two or more points of the line sit on an ADC ceiling.
    A run of >= 3 points within 0.1 % of the line maximum is only suspicious:
    a strong, finely sampled line has such a run by chance in ~1 % of spectra,
    so :func:`_confirm_saturation` decides.
    """
    reach = max(2.0 * peak.hwhm_right, 2.0 * (x[1] - x[0]))  # one FWHM either side
    i0, i1 = np.searchsorted(x, [peak.x - reach, peak.x + reach])
    region = y[i0:i1]
    if len(region) == 0:
        return None
    top = region.max()
    for ceiling in _ADC_CEILINGS:
        # Two points: a single one could be a saturated cosmic ray.
        n_at = int(np.count_nonzero(np.abs(region - ceiling) <= 0.5))
        if n_at >= 2 and top <= ceiling + 0.5:
            raise InputError(f"saturated: {name} has {n_at} points at the ADC ceiling ({ceiling:.0f} counts)")
    runs = flag_runs(region >= top - _SATURATION_TOLERANCE * abs(top))
    start, stop = max(runs, key=lambda r: r[1] - r[0])
    if stop - start < _SATURATION_RUN:
        return None
    return slice(int(i0 + start), int(i0 + stop))


def _confirm_saturation(x, y, spikes, flat, name, fit):
    """Fit with the flat run left out; raise if the line clearly rises above it.

    A clipped line's flanks predict a top far above the flat readings; a real
    top that is flat by chance sits within the noise of the prediction (or
    within 0.5 % of the line height, too little to move the centre).
    ``fit(mask)`` fits with the points in ``mask`` left out.
    """
    masked = spikes.copy()
    masked[flat] = True
    message = f"saturated: {name} has a flat top of {flat.stop - flat.start} points at the maximum count"
    try:
        sol = fit(masked)
    except InputError:
        raise InputError(message) from None
    c, w = sol.centres[0], sol.widths[0]
    near = (np.abs(x - c) < w) & ~masked
    scatter = np.std(y[near] - sol.evaluate(x[near])) if np.count_nonzero(near) > 3 else 0.0
    excess = np.mean(sol.evaluate(x[flat]) - y[flat])
    if excess > max(3.0 * scatter, 0.005 * sol.heights[0]):
        raise InputError(message)


def _window(x, lo, hi):
    """Indices of the fit window [lo, hi], widened to _MIN_WINDOW_NM, clipped to the data."""
    if hi - lo < _MIN_WINDOW_NM:
        mid = 0.5 * (lo + hi)
        lo, hi = mid - 0.5 * _MIN_WINDOW_NM, mid + 0.5 * _MIN_WINDOW_NM
    i0, i1 = np.searchsorted(x, [lo, hi])
    i1 = min(i1 + 1, len(x))
    if i1 - i0 < MIN_POINTS:
        raise InputError(f"fewer than {MIN_POINTS} points in the fit window ({i1 - i0})")
    return slice(int(i0), int(i1))


def _r2_from_r1(r1_nm, splitting_cm1=R1_R2_SPLITTING_CM1):
    return 1e7 / (1e7 / r1_nm + splitting_cm1)


# --------------------------------------------------------------------------
# Model and fit
# --------------------------------------------------------------------------


class _LineModel:
    """k profiles over a linear background, with its analytic Jacobian.

    Parameter vector: centres (k), heights (k), widths (k), then eta when it
    is free, then background offset and slope. ``t`` is the abscissa
    relative to ``x0`` (the window centre) and ``y`` is scaled to a peak
    height near 1, so all parameters are of order 1 and LM is well scaled.

    For a doublet (k = 2) with ``prior > 0`` the least-squares residual gets
    three more rows, ``prior * (g - mean) / sigma`` for g = ln(w2/w1),
    ln(a2/a1) and the splitting in cm^-1 (:data:`_DOUBLET_MEAN`,
    :data:`_DOUBLET_SIGMA`): soft constraints, each worth one data point when
    ``prior`` is the noise of the data.
    """

    def __init__(self, t, y, k, eta, eta_free, prior=0.0, x0=0.0):
        self.t, self.y, self.k = t, y, k
        self.eta, self.eta_free, self.prior = eta, eta_free, prior if k == 2 else 0.0
        self.x0 = x0
        self.n_par = 3 * k + int(eta_free) + 2
        self._cache = None

    def on(self, t, y):
        """The same model on other data."""
        return _LineModel(t, y, self.k, self.eta, self.eta_free, self.prior, self.x0)

    def pack(self, centres, heights, widths, eta, b0, b1):
        extra = [eta] if self.eta_free else []
        return np.array([*centres, *heights, *widths, *extra, b0, b1], dtype=float)

    def unpack(self, p):
        """centres, heights, widths (length k each), eta, offset, slope."""
        k = self.k
        return (
            p[:k],
            p[k : 2 * k],
            np.abs(p[2 * k : 3 * k]),  # the profile is even in w
            float(p[-3]) if self.eta_free else self.eta,
            p[-2],
            p[-1],
        )

    def _terms(self, t, p):
        # MINPACK asks for the residual and then the Jacobian at the same p.
        key = p.tobytes()
        if t is self.t and self._cache is not None and key == self._cache[0]:
            return self._cache[1]
        terms = self._compute_terms(t, p.copy())  # MINPACK reuses its buffer; terms hold views of p
        if t is self.t:
            self._cache = (key, terms)
        return terms

    def _compute_terms(self, t, p):
        c, a, w, eta, b0, b1 = self.unpack(p)
        u, lor, gau = unit_parts(t[:, None], c, w)
        return c, a, w, eta, b0, b1, u, lor, gau

    def evaluate(self, t, p):
        c, a, w, eta, b0, b1, u, lor, gau = self._terms(t, p)
        return (eta * lor + (1.0 - eta) * gau) @ a + b0 + b1 * t

    def misfit(self, p):
        """Model minus data."""
        return self.evaluate(self.t, p) - self.y

    def residual(self, p):
        """What LM minimises: the misfit, and the soft constraints if any."""
        if not self.prior:
            return self.misfit(p)
        return np.concatenate((self.misfit(p), self.prior * self.doublet_z(p)))

    def doublet_z(self, p):
        """How far the doublet is from the soft constraints' means, in sigmas."""
        return (self._doublet(p)[0] - _DOUBLET_MEAN) / _DOUBLET_SIGMA

    def _doublet(self, p):
        """ln(w2/w1), ln(a2/a1), splitting (cm^-1), and their gradients (rows)."""
        # LM may try a zero height or width: keep logs and divisors finite.
        c1, c2, a1, a2, w1, w2 = (float(v) if v else 1e-300 for v in p[:6])
        log = math.log
        values = np.array(
            [log(abs(w2)) - log(abs(w1)), log(abs(a2)) - log(abs(a1)), 1e7 / (c2 + self.x0) - 1e7 / (c1 + self.x0)]
        )
        grad = np.zeros((3, self.n_par))
        grad[0, 4:6] = (-1.0 / w1, 1.0 / w2)
        grad[1, 2:4] = (-1.0 / a1, 1.0 / a2)
        grad[2, 0:2] = (1e7 / (c1 + self.x0) ** 2, -1e7 / (c2 + self.x0) ** 2)
        return values, grad

    def jacobian(self, p):
        c, a, w, eta, b0, b1, u, lor, gau = self._terms(self.t, p)
        k = self.k
        d_center, d_fwhm, d_eta = height_derivatives(u, lor, gau, eta, w)
        jac = np.zeros((len(self.t) + 3 * bool(self.prior), self.n_par))
        n = len(self.t)
        jac[:n, :k] = d_center * a
        jac[:n, k : 2 * k] = eta * lor + (1.0 - eta) * gau
        jac[:n, 2 * k : 3 * k] = d_fwhm * a
        if self.eta_free:
            jac[:n, -3] = d_eta @ a
        jac[:n, -2] = 1.0
        jac[:n, -1] = self.t
        if self.prior:
            jac[n:] = self.prior * self._doublet(p)[1] / _DOUBLET_SIGMA[:, None]
        return jac

    def fit(self, p0):
        """(model, p) at the least-squares minimum from ``p0``.

        The model is a new one with eta fixed when eta left [0, 1].
        """
        p = levenberg_marquardt(self.residual, self.jacobian, p0, "fit did not converge")
        if self.eta_free and not 0.0 <= p[-3] <= 1.0:
            # eta outside [0, 1] is no line shape: refit with eta on the bound.
            fixed = _LineModel(self.t, self.y, self.k, float(np.clip(p[-3], 0, 1)), False, self.prior, self.x0)
            return fixed, fixed.fit(np.delete(p, -3))[1]
        return self, p


@dataclass(frozen=True)
class _Solution:
    centres: np.ndarray
    centre_errs: np.ndarray
    heights: np.ndarray
    height_errs: np.ndarray
    widths: np.ndarray
    eta: float
    background: tuple[float, float]
    window_nm: tuple[float, float]
    reduced_chi2: float
    r_squared: float
    n_spikes: int

    def evaluate(self, x):
        """The fitted model (lines and background) at ``x``."""
        return _lines_and_background(x, self.centres, self.heights, self.widths, self.eta, self.background,
                                     self.window_nm)


def _profile_eta(profile):
    """Start (or fixed) eta of a profile name; ValueError for an unknown name."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    return {"pseudo-voigt": 0.5, "lorentzian": 1.0, "gaussian": 0.0}[profile]


def _fit_window(x, y, spikes, sl, centres, heights, widths, profile):
    """Fit len(centres) lines to the points x[sl] that are not spikes.

    ``spikes`` is despike()'s mask of the whole spectrum; inside the window
    the fit has the last word on it. A doublet gets the soft constraints of
    :class:`_LineModel`, weighed with the noise on the lines.
    """
    xw, yw = x[sl], y[sl]
    xc = 0.5 * (xw[0] + xw[-1])
    tw = xw - xc
    scale = heights[0]
    yn = yw / scale

    # Background start: straight line through the medians of the window ends.
    m = max(3, len(xw) // 20)
    yl, yr = fast_median(yn[:m]), fast_median(yn[-m:])
    tl, tr = tw[: m].mean(), tw[-m:].mean()
    b1 = (yr - yl) / (tr - tl)
    b0 = yl - b1 * tl

    eta0 = _profile_eta(profile)
    keep = ~spikes[sl]
    # The soft constraints start weighed with the background noise.
    start = _LineModel(tw[keep], yn[keep], len(centres), eta0, profile == "pseudo-voigt", difference_sigma(yn, 1), xc)
    p0 = start.pack(np.asarray(centres) - xc, np.asarray(heights) / scale, widths, eta0, b0, b1)
    model, p, keep = _careful_fit(tw, yn, keep, start, p0)

    c, a, w, eta, b0, b1 = model.unpack(p)
    resid = model.misfit(p)
    lines = _lines_only(model, p, model.t)
    errs = np.sqrt(np.clip(np.diag(shot_noise_covariance(model.jacobian(p), resid, lines, model.prior**2)), 0.0, None))
    k = len(centres)
    ss_res = float(resid @ resid)
    ss_tot = float(np.sum((model.y - model.y.mean()) ** 2))
    n_spikes = spikes.copy()
    n_spikes[sl] = ~keep  # the fit's verdict inside the window
    return _Solution(
        centres=c + xc,
        centre_errs=errs[:k],
        heights=a * scale,
        height_errs=errs[k : 2 * k] * scale,
        widths=w,
        eta=float(eta),
        background=(float(b0 * scale), float(b1 * scale)),
        window_nm=(float(xw[0]), float(xw[-1])),
        reduced_chi2=float(np.sum((resid / _noise_of(model, p, model.t)[0]) ** 2)) / max(len(resid) - model.n_par, 1),
        r_squared=1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan,
        n_spikes=count_runs(n_spikes),
    )


def _careful_fit(t, y, keep, start, p0):
    """Fit, then review spikes and the constraints' weight until nothing changes.

    Returns (model, p, keep). Spikes on a line are hidden from despike() by
    the line, but most stand out in the residual, where the line is gone;
    one on a narrow line can pull the line onto itself and needs
    _line_spike(). After each refit, look again: a big spike can hide a
    smaller one.
    """
    model, p = start.fit(p0)
    readmit = ~keep  # despike()'s choices, open to review once
    weighed = start.prior == 0.0
    k = start.k
    for _ in range(_SPIKE_PASSES):
        sigma, line_noise = _noise_of(model, p, t, np.array([p[0] + 0.5 * abs(p[2 * k])]))
        if not weighed:
            # The soft constraints are worth one data point of the lines:
            # weigh them with the noise half-way up R1 (shot noise makes it
            # larger than on the background), now that the fit tells it.
            # They only matter once the lines are wider than their
            # splitting, so a resolved doublet skips the refit.
            weighed = True
            merged = np.max(np.abs(p[2 * k : 3 * k])) > abs(p[0] - p[1])
            if merged and abs(line_noise[0] / start.prior - 1.0) > 0.3:
                start = _LineModel(t[keep], y[keep], k, start.eta, start.eta_free, float(line_noise[0]), start.x0)
                # Go on from the first fit if it looks like a doublet; else
                # (merged lines gone astray) start afresh.
                plausible = model.eta_free and np.all(np.abs(model.doublet_z(p)) < 2.0)
                model, p = start.fit(p if plausible else p0)
                continue
        resid = y - model.evaluate(t, p)
        # despike() can take the top of an undersampled line (< 5 points)
        # for a spike; the fit tells: a real spike is far off the line.
        back = readmit & (np.abs(resid) < 4.0 * sigma)
        if back.any():
            keep |= back
            readmit[:] = False
            model, p = model.on(t[keep], y[keep]).fit(p)
            continue
        new = spike_mask(resid, sigma=sigma)[0] & keep
        if new.any():
            keep &= ~new
            model, p = model.on(t[keep], y[keep]).fit(p)
            continue
        found = _line_spike(t, y, keep, model, p, sigma, start, p0)
        if found is None:
            break
        model, p, keep = found
    return model, p, keep


def _noise_of(model, p, *ts):
    """Noise sigma at each array in ``ts``, from the variance model fitted to the residuals.

    Fitted to squared first differences of the residual (halved), not to
    squared residuals: a fit pulled out of shape by a spike leaves a smooth
    misfit that would inflate the noise and hide the spike; differences
    ignore it.
    """
    lines = _lines_only(model, p, model.t)
    d = np.diff(model.misfit(p))
    alpha, beta = variance_fit(0.5 * d * d, 0.5 * (lines[1:] + lines[:-1]))
    return [np.sqrt(alpha + beta * _lines_only(model, p, t)) + 1e-300 for t in ts]


def _lines_only(model, p, t):
    """The line part of the model (without background) at ``t``, >= 0 (noise grows with it)."""
    c, a, w, eta, b0, b1 = model.unpack(p)
    return np.maximum(model.evaluate(t, p) - (b0 + b1 * t), 0.0)


def _line_spike(t, y, keep, model, p, sigma, start, p0):
    """A spike on a line that pulled the fit: (model, p, keep) refitted without it, or None.

    A spike on a narrow line (5-8 points) can pull the fitted line towards
    itself until the residual no longer shows it clearly. Two kinds of point
    near each line are suspects: one more than 4 noise sigma (``sigma``) above the fit,
    and one that rises more than 20 % of the line height above the 5-point
    median (a line top is smooth: < 15 % for a line >= 5 points wide; the
    median ignores a 1-2 point spike). A suspect (with any suspect neighbour)
    is tested by leaving it out and refitting from the start values: it is
    a spike when it then lies > 8 noise sigma above the fitted line. A noisy
    point that only looked suspect stays in.
    """
    c, a, w, eta, b0, b1 = model.unpack(p)
    fitted = model.evaluate(t, p)
    filled = np.where(keep, y, fitted)  # spikes found already stay out of the median
    median5 = median_filter(filled, size=5, mode="mirror")
    lifted = filled - median5 > 0.2 * (median5 - b0 - b1 * t)
    high = (y - fitted) > 4.0 * sigma
    for centre, width in zip(c, w):
        near = keep & (np.abs(t - centre) < width)
        for flags in (lifted & near, high & near):
            if not flags.any():
                continue
            i = int(np.flatnonzero(flags)[np.argmax((y - median5)[flags])])
            out = [j for j in (i - 1, i, i + 1) if 0 <= j < len(t) and flags[j]]
            trial = keep.copy()
            trial[out] = False
            try:
                m2, p2 = start.on(t[trial], y[trial]).fit(p0)
            except InputError:
                continue
            if np.max((y[out] - m2.evaluate(t[out], p2)) / _noise_of(m2, p2, t[out])[0]) > 8.0:
                return m2, p2, trial
    return None


def _check_line(sol, i, name, noise, x):
    """Physical checks on fitted line i; raise InputError with the reason."""
    c, w, a = sol.centres[i], sol.widths[i], sol.heights[i]
    lo, hi = sol.window_nm
    if not lo <= c <= hi:
        if c < x[0] or c > x[-1]:
            raise InputError(f"{name} at {c:.2f} nm is outside the spectrometer window")
        raise InputError(f"fit did not converge ({name} ran out of the fit window to {c:.2f} nm)")
    _check_width(sol, i, name, x)
    if not (a > _MIN_HEIGHT_SIGMA * noise and a > _MIN_HEIGHT_SIGMA * sol.height_errs[i]):
        raise InputError(f"no peak above noise ({name} height {a:.3g}, noise {noise:.3g})")


def _check_width(sol, i, name, x):
    """A width between one point spacing (narrower falls between the points)
    and the whole window."""
    lo, hi = sol.window_nm
    w = sol.widths[i]
    spacing = (x[-1] - x[0]) / (len(x) - 1)
    if not spacing < w < hi - lo:
        raise InputError(f"fit gave an absurd {name} width ({w:.3g} nm)")


# --------------------------------------------------------------------------
# Public fitters
# --------------------------------------------------------------------------


def _prepare(x_nm, y):
    """Checked arrays, spike mask, noise sigma, smoothed spectrum and baseline-free signal."""
    x, y = as_spectrum(x_nm, y)
    spikes, median = spike_mask(y)
    y_clean = np.where(spikes, median, y)
    return (x, y, spikes, difference_sigma(y_clean, 1), *_signal(x, y_clean))


def fit_ruby(x_nm, y, *, profile: str = "pseudo-voigt") -> RubyFit:
    """Fit the ruby R1/R2 doublet.

    Parameters
    ----------
    x_nm : array_like
        Wavelengths, nm, strictly increasing. Any window that holds both
        lines works; no search range is needed.
    y : array_like
        Counts (any linear unit).
    profile : {"pseudo-voigt", "lorentzian", "gaussian"}
        Line shape of both lines; the pseudo-Voigt shares one eta.

    Returns
    -------
    RubyFit

    Raises
    ------
    InputError
        When the spectrum cannot give a trustworthy R1: too few points, no
        peak above noise, a saturated line, R1 or R2 outside the window, a fit
        that does not converge or gives unphysical lines.
    ValueError
        For an unknown ``profile``.
    """
    _profile_eta(profile)
    x, y, spikes, noise, smooth, signal = _prepare(x_nm, y)
    r1 = _strongest_peak(x, signal, noise, "R1")
    fwhm = 2.0 * r1.hwhm_right
    # A line cut by the long-wavelength end (the spectrum rises steeply into
    # it) means that the peak found is R2 and R1 lies beyond the window.
    end = x >= x[-1] - 3.0 * fwhm
    if smooth[-1] - smooth[end].min() > max(0.25 * r1.height, 8.0 * noise):
        raise InputError(f"R1 at {x[-1]:.2f} nm or beyond is outside the spectrometer window")
    flat = _flat_top(x, y, r1, "the R1 line")

    # R2: the expected position, or the local maximum near it when the
    # doublet is resolved (the splitting drifts a little with pressure).
    r2_x = _r2_from_r1(r1.x)
    split = r1.x - r2_x
    r2_height = R2_R1_HEIGHT_RATIO * r1.height
    near = np.flatnonzero((x > r1.x - 1.35 * split) & (x < r1.x - 0.65 * split))
    if len(near) >= 3:
        j = near[int(np.argmax(signal[near]))]
        if near[0] < j < near[-1] and signal[j] > 0.1 * r1.height:
            r2_x, r2_height = float(x[j]), float(signal[j])
    if r2_x - 0.5 * fwhm < x[0]:
        raise InputError(f"R2 at {r2_x:.2f} nm is outside the spectrometer window")

    sl = _window(x, r2_x - _WINDOW_FWHM * fwhm, r1.x + _WINDOW_FWHM * fwhm)

    def fit(mask):
        starts = ([r1.x, r2_x], [r1.height, r2_height], [fwhm, fwhm])
        return _fit_window(x, y, mask, sl, *starts, profile)

    if flat is not None:
        _confirm_saturation(x, y, spikes, flat, "the R1 line", fit)
    sol = fit(spikes)
    _check_line(sol, 0, "R1", noise, x)
    r1_nm, r2_nm = sol.centres
    # R2 is 0.4-0.8 times as high as R1 and ~1.5 nm shorter. Without it the
    # line taken for R1 may be R2, with R1 outside the window.
    if not (sol.window_nm[0] <= r2_nm < r1_nm and sol.heights[1] > _MIN_R2_RATIO * sol.heights[0]):
        raise InputError(f"no R2 line beside R1 at {r1_nm:.2f} nm (R1 outside the spectrometer window, "
                         "or a single line: not a ruby spectrum?)")
    _check_width(sol, 1, "R2", x)
    return RubyFit(
        r1_nm=float(r1_nm),
        r1_err_nm=float(sol.centre_errs[0]),
        r2_nm=float(r2_nm),
        r2_err_nm=float(sol.centre_errs[1]),
        r1_fwhm_nm=float(sol.widths[0]),
        r2_fwhm_nm=float(sol.widths[1]),
        r1_amplitude=float(sol.heights[0]),
        r2_amplitude=float(sol.heights[1]),
        eta=sol.eta,
        background=sol.background,
        window_nm=sol.window_nm,
        reduced_chi2=float(sol.reduced_chi2),
        r_squared=float(sol.r_squared),
        n_spikes=sol.n_spikes,
        profile=profile,
    )


def fit_single_line(x_nm, y, *, profile: str = "pseudo-voigt") -> SingleLineFit:
    """Fit the strongest single line (e.g. the Sm:SrB4O7 0-0 line).

    Same method, checks and errors as :func:`fit_ruby`, with one profile
    over a linear background in ``centre +- 5 FWHM`` (at least 3 nm).

    Parameters
    ----------
    x_nm : array_like
        Wavelengths, nm, strictly increasing.
    y : array_like
        Counts (any linear unit).
    profile : {"pseudo-voigt", "lorentzian", "gaussian"}
        Line shape.

    Returns
    -------
    SingleLineFit

    Raises
    ------
    InputError
        Too few points, no peak above noise, a saturated line, the line at
        the window edge, a fit that does not converge or is unphysical.
    ValueError
        For an unknown ``profile``.
    """
    _profile_eta(profile)
    x, y, spikes, noise, smooth, signal = _prepare(x_nm, y)
    peak = _strongest_peak(x, signal, noise, "the line")
    flat = _flat_top(x, y, peak, "the line")
    fwhm = 2.0 * peak.hwhm_right
    sl = _window(x, peak.x - _WINDOW_FWHM * fwhm, peak.x + _WINDOW_FWHM * fwhm)

    def fit(mask):
        return _fit_window(x, y, mask, sl, [peak.x], [peak.height], [fwhm], profile)

    if flat is not None:
        _confirm_saturation(x, y, spikes, flat, "the line", fit)
    sol = fit(spikes)
    _check_line(sol, 0, "the line", noise, x)
    return SingleLineFit(
        center_nm=float(sol.centres[0]),
        center_err_nm=float(sol.centre_errs[0]),
        fwhm_nm=float(sol.widths[0]),
        amplitude=float(sol.heights[0]),
        eta=sol.eta,
        background=sol.background,
        window_nm=sol.window_nm,
        reduced_chi2=float(sol.reduced_chi2),
        r_squared=float(sol.r_squared),
        n_spikes=sol.n_spikes,
        profile=profile,
    )


# --------------------------------------------------------------------------
# Diamond Raman edge
# --------------------------------------------------------------------------


