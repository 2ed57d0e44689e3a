"""The high-frequency edge of a diamond anvil's first-order Raman band, the diamond-edge pressure gauge.

Akahama & Kawamura, J. Appl. Phys. 100, 043516 (2006): under load the Raman
band of the anvil tip broadens towards high frequency, and its edge (the
minimum of dI/dnu) moves with the stress at the culet. Arrays in, the edge
position with its error out; :mod:`dacpipe.pressure.scales` turns it into
pressure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erfc

from ..core.errors import InputError
from ..core.lsq import levenberg_marquardt
from ..core.noise import MAD_TO_SIGMA, difference_sigma, fast_median
from .shot_noise import shot_noise_covariance
from .spikes import as_spectrum, count_runs, flag_runs, spike_mask

_MIN_HEIGHT_SIGMA = 5.0  # an edge must drop this many noise sigmas


@dataclass(frozen=True)
class EdgeFit:
    """High-frequency edge of the first-order Raman band of a diamond anvil.

    Attributes
    ----------
    edge_cm1 : float
        Position of the minimum of dI/dnu (Akahama & Kawamura 2006).
    edge_err_cm1 : float
        Its standard error: the statistical error of the edge position from a
        local erf-step fit, combined with the difference between that fit and
        the derivative minimum (how much the answer depends on the method).
    edge_width_cm1 : float
        FWHM of the dip of dI/dnu, i.e. how sharp the edge is.
    step_height : float
        Drop of intensity across the edge, in the units of ``y``.
    n_spikes : int
        Cosmic-ray spikes replaced before the derivative was taken.
    """

    edge_cm1: float
    edge_err_cm1: float
    edge_width_cm1: float
    step_height: float
    n_spikes: int


def diamond_edge(shift_cm1, y) -> EdgeFit:
    """High-frequency edge of the first-order Raman band of a diamond anvil.

    The edge is the position of the minimum of the first derivative on the
    high-frequency side of the band (Akahama & Kawamura 2006, J. Appl. Phys.
    100, 043516). The derivative is a Savitzky-Golay derivative whose window
    is matched to the sharpness of the edge (found in a first pass), and its
    minimum is refined to a fraction of a point with a parabola. Of the
    significant negative-slope dips (the unstressed 1332 cm^-1 line of the
    anvil body makes one), the edge is the highest-frequency one across which
    the intensity drops by more than 10 noise sigma.

    Parameters
    ----------
    shift_cm1 : array_like
        Raman shift, cm^-1, strictly increasing.
    y : array_like
        Counts.

    Returns
    -------
    EdgeFit

    Raises
    ------
    InputError
        Too few points, no edge above noise, or an edge at the window border.
    """
    x, y = as_spectrum(shift_cm1, y)
    spikes, median = spike_mask(y)
    y_clean = np.where(spikes, median, y)
    noise = difference_sigma(y_clean, 1)
    dx = np.gradient(x)

    # First pass, light smoothing: which dip is the edge, and how wide it is.
    i, (lo, hi) = _find_edge(x, y_clean, _derivative(y_clean, 7) / dx, noise)
    # Second pass: a window about as wide as the dip averages the noise
    # without moving the minimum of a (nearly) symmetric dip.
    n_dip = hi - lo
    window = min(int(np.clip(n_dip, 5, 101)) | 1, len(x) - 1 + len(x) % 2)
    deriv = _derivative(y_clean, window) / dx
    a, b = max(lo - n_dip, 0), min(hi + n_dip, len(x))
    i = a + int(np.argmin(deriv[a:b]))
    lo, hi = _dip_extent(deriv, i)
    if lo == 0 or hi == len(x):
        raise InputError(f"diamond edge at {x[i]:.1f} cm-1 is outside the spectrometer window")
    width_cm1 = float(x[hi - 1] - x[lo] + dx[i])

    # Parabola through the bottom of the dip.
    h = max(1, (hi - lo) // 4)
    core = slice(max(i - h, 0), min(i + h + 1, len(x)))
    edge = float(x[i])
    if core.stop - core.start >= 3:
        c2, c1, _ = np.polyfit(x[core] - x[i], deriv[core], 2)
        if c2 > 0 and abs(c1 / (2 * c2)) <= x[core][-1] - x[core][0]:
            edge = float(x[i] - c1 / (2 * c2))

    fit_edge, fit_err, step = _erf_edge_fit(x, y_clean, edge, width_cm1, noise)
    return EdgeFit(
        edge_cm1=edge,
        edge_err_cm1=float(math.hypot(fit_err, edge - fit_edge)),
        edge_width_cm1=width_cm1,
        step_height=step,
        n_spikes=count_runs(spikes),
    )


def _derivative(y, window: int) -> np.ndarray:
    """The Savitzky-Golay (quadratic) first derivative per sample."""
    # imported here: scipy.signal costs 0.7 s, and every job validating a config
    # with a fluorescence gauge imports this module for the gauge registry
    from scipy.signal import savgol_filter

    return savgol_filter(y, window, 2, deriv=1)


def _dip_extent(deriv, i):
    """(start, stop) of the contiguous points around i where deriv <= deriv[i] / 2."""
    above = deriv > 0.5 * deriv[i]
    left = np.flatnonzero(above[:i])
    right = np.flatnonzero(above[i:])
    return (int(left[-1]) + 1 if len(left) else 0), (i + int(right[0]) if len(right) else len(deriv))


def _find_edge(x, y, deriv, noise):
    """Index and dip extent of the highest-frequency significant falling edge."""
    deriv_sigma = fast_median(np.abs(deriv - fast_median(deriv))) * MAD_TO_SIGMA
    for start, stop in reversed(flag_runs(deriv < -6.0 * deriv_sigma)):
        i = start + int(np.argmin(deriv[start:stop]))
        lo, hi = _dip_extent(deriv, i)
        w = max(hi - lo, 3)
        before = y[max(i - 4 * w, 0) : max(i - w, 0)]
        cut = i + w >= len(y)  # the fall runs into the end of the data
        after = y[i:] if cut else y[i + w : i + 4 * w]
        if len(before) and fast_median(before) - fast_median(after) > 10.0 * noise:
            if cut:
                raise InputError(f"diamond edge at {x[i]:.1f} cm-1 is outside the spectrometer window")
            return i, (lo, hi)
    raise InputError("no diamond edge above noise")


def _erf_edge_fit(x, y, edge, width_cm1, noise):
    """Fit a linear background plus an erf step near the edge.

    For an erf step the minimum of the derivative is the step centre, so this
    gives a second estimate of the edge and, from its covariance, the
    statistical error. Returns (centre, its error, step height).
    """
    step_x = float(np.median(np.diff(x)))
    sigma = max(width_cm1, 3 * step_x) / (2 * math.sqrt(2 * math.log(2)))
    sel = np.abs(x - edge) <= max(8 * sigma, 10 * step_x)
    t, yy = x[sel] - edge, y[sel]
    if len(t) < 8:
        raise InputError(f"fewer than 8 points across the diamond edge ({len(t)})")
    before, after = yy[t < -2 * sigma], yy[t > 2 * sigma]
    top = fast_median(before) if len(before) else yy[0]
    bottom = fast_median(after) if len(after) else yy[-1]
    scale = max(abs(top - bottom), noise, 1e-300)
    yn = yy / scale
    root2 = math.sqrt(2.0)
    root2pi = math.sqrt(2.0 * math.pi)

    def resid(p):
        x0, s, amp, b0, b1 = p
        return b0 + b1 * t + 0.5 * amp * erfc((t - x0) / (root2 * s)) - yn

    def jac(p):
        x0, s, amp, b0, b1 = p
        g = np.exp(-0.5 * ((t - x0) / s) ** 2)
        columns = (
            amp * g / (root2pi * s),
            amp * g * (t - x0) / (root2pi * s * s),
            0.5 * erfc((t - x0) / (root2 * s)),
            np.ones_like(t),
            t,
        )
        return np.column_stack(columns)

    p0 = np.array([0.0, sigma, (top - bottom) / scale, bottom / scale, 0.0])
    p = levenberg_marquardt(resid, jac, p0, "diamond edge fit did not converge")
    x0, s, amp = p[:3]
    if abs(x0) > 4 * sigma:
        raise InputError("diamond edge fit did not converge")
    jacobian = jac(p)
    step_part = np.abs(amp * jacobian[:, 2])
    err = np.sqrt(np.clip(np.diag(shot_noise_covariance(jacobian, resid(p), step_part)), 0.0, None))
    step = float(amp * scale)
    if not (step > _MIN_HEIGHT_SIGMA * noise and abs(amp) > _MIN_HEIGHT_SIGMA * err[2]):
        raise InputError("no diamond edge above noise")
    return float(edge + x0), float(err[0]), step
