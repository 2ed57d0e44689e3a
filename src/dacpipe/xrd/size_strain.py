"""Crystallite size and microstrain apart: Williamson-Hall on a phase's width law.

The whole-pattern fit (:mod:`dacpipe.xrd.pattern`) gives each phase a
pseudo-Voigt of Lorentzian fraction eta and a FWHM linear in q,
W(q) = w0 + w1 (q - q_ref), with the covariance of (w0, w1). At each
of the phase's lines in the pattern:

1. the instrument's FWHM (Caglioti's law in 2theta, :mod:`dacpipe.xrd.instrument`)
   is moved to q, FWHM_q = FWHM_2theta (rad) 2 pi cos(theta) / lambda;
2. the instrument is taken out under Williamson & Hall's own assumption,
   a Lorentzian (Cauchy) sample broadening, whose size and strain widths
   add: the instrument's pseudo-Voigt (Caglioti FWHM, the calibrant's eta)
   is split into the Lorentzian and Gaussian FWHM L_i, G_i of the Voigt it
   stands for, and the sample's FWHM is the L_s whose Voigt with it,
   Lorentzian L_s + L_i and Gaussian G_i, has the observed FWHM (Thompson,
   Cox & Hastings, J. Appl. Cryst. 20, 79 (1987), eqs. 3-4, for both steps).
   For a Lorentzian instrument this is the linear rule L_s = W - W_i; for a
   Gaussian one it lies between the linear and the quadrature rule of
   Langford & Wilson (J. Appl. Cryst. 11, 102 (1978)). It does not split
   the observed line by its fitted eta: near eta = 1 the Gaussian part that
   split gives is ill-determined (measured on synthetic 20 nm lines at eta
   0.96: it fell below the instrument's, and the errors of D scattered
   twofold from seed to seed);
3. Williamson & Hall (Acta Metall. 1, 22 (1953)), beta cos(theta) = K lambda / D
   + 4 epsilon sin(theta), which in q (dq = 2 pi cos(theta) / lambda d(2theta),
   as in Ungár's reviews, e.g. J. Appl. Cryst. 34, 298 (2001)) reads

       FWHM_q = 2 pi K / D + 2 epsilon q,

   is fitted as a straight line over the lines (unweighted: the widths of
   all lines come from the same two parameters), giving the crystallite
   size D and the microstrain epsilon (the "apparent strain" of WH, whose
   FWHM in 2theta is 4 epsilon tan(theta)).

Errors: D and epsilon are functions of (w0, w1) and of the
instrument's (U, V, W); their covariances (the fit's, the calibrant fit's)
are propagated through the Jacobian of that function, by central
differences. Without an instrument the widths are the sample's plus the
instrument's, and D, epsilon are those of the whole line:
2 pi K / D = w0 - w1 q_ref and epsilon = w1 / 2 exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.profiles import tch_fwhm_eta, voigt_parts
from .instrument import Caglioti

# Relative step of the central differences of the error propagation (the function is smooth on this scale).
_STEP_REL = 1e-5
# Halvings of the sample's width interval: 2^-60 of it, below float precision.
_BISECTIONS = 60


@dataclass(frozen=True)
class WilliamsonHall:
    """Crystallite size and microstrain of one phase at one point.

    Attributes
    ----------
    size_nm, size_err_nm : float
        Crystallite size D (nm) and its standard error; NaN when the
        intercept 2 pi K / D is not positive (no size broadening resolved).
    microstrain, microstrain_err : float
        epsilon (dimensionless) and its standard error.
    q_A : tuple of float
        The lines used (1/A).
    sample_fwhm_q_A : tuple of float
        The sample's FWHM at them (1/A), instrument taken out.
    instrument : str
        Where the instrument's width came from ("" when none was taken out:
        the widths are then the sample's and the instrument's together).
    """

    size_nm: float
    size_err_nm: float
    microstrain: float
    microstrain_err: float
    q_A: tuple = ()
    sample_fwhm_q_A: tuple = ()
    instrument: str = ""


NAN_RESULT = WilliamsonHall(math.nan, math.nan, math.nan, math.nan)


def sample_fwhm_q(fwhm_q_A, q_A, wavelength_A: float, instrument: Caglioti | None,
                  instrument_params: np.ndarray | None = None) -> np.ndarray:
    """The sample's (Lorentzian) FWHM in q (1/A) at lines ``q_A`` of observed FWHM
    ``fwhm_q_A``, the instrument taken out (module docstring); NaN where the line is
    not broader than the instrument. ``instrument_params``: (U, V, W) in place of
    the instrument's own (error propagation)."""
    h = np.asarray(fwhm_q_A, dtype=float)
    if instrument is None:
        return h
    q = np.asarray(q_A, dtype=float)
    sin_theta = np.clip(q * wavelength_A / (4.0 * math.pi), 0.0, 1.0)
    tan_theta = sin_theta / np.sqrt(1.0 - sin_theta**2)
    params = instrument.parameters if instrument_params is None else np.asarray(instrument_params, float)
    h2_deg = params[0] * tan_theta**2 + params[1] * tan_theta + params[2]
    h_inst = np.radians(np.sqrt(np.maximum(h2_deg, 0.0))) * 2.0 * math.pi * np.sqrt(1.0 - sin_theta**2) / wavelength_A
    lor_i, gau_i = voigt_parts(h_inst, instrument.eta)
    # TCH's H grows monotonically with the Lorentzian part: bisection on [0, h], to float precision.
    lo, hi = np.zeros_like(h), np.where(np.isfinite(h), h, 0.0)
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        too_wide = tch_fwhm_eta(mid + lor_i, gau_i)[0] > h
        hi, lo = np.where(too_wide, mid, hi), np.where(too_wide, lo, mid)
    narrow = ~(tch_fwhm_eta(lor_i, gau_i)[0] < h)
    return np.where(narrow | ~np.isfinite(h2_deg) | (h2_deg <= 0), np.nan, 0.5 * (lo + hi))


def _line(q_A: np.ndarray, fwhm_q_A: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of the unweighted straight line through (q, FWHM_q)."""
    slope, intercept = np.polyfit(q_A, fwhm_q_A, 1)
    return float(intercept), float(slope)


def williamson_hall(q_lines_A, w0: float, w1: float, q_ref_A: float, wavelength_A: float, *,
                    k: float = 0.89, width_cov: np.ndarray | None = None,
                    instrument: Caglioti | None = None) -> WilliamsonHall:
    """Crystallite size and microstrain from a phase's width law (module docstring).

    Parameters
    ----------
    q_lines_A : array_like
        The phase's lines in the pattern (1/A); at least two distinct ones.
    w0, w1 : float
        FWHM at ``q_ref_A`` (1/A) and its slope dFWHM/dq.
    q_ref_A, wavelength_A : float
    k : float
        Scherrer constant of D (0.89 by default; 0.94 for the FWHM of cubes,
        Langford & Wilson 1978).
    width_cov : ndarray, optional
        2 x 2 covariance of (w0, w1); errors are NaN without it.
    instrument : Caglioti, optional
        The instrument's width; its covariance is propagated too.

    Returns
    -------
    WilliamsonHall
        NaN (size and strain) when fewer than two distinct lines are broader
        than the instrument or the width law is not finite; NaN size when the
        intercept 2 pi K / D is not positive.
    """
    q = np.unique(np.round(np.asarray(q_lines_A, dtype=float), 6))
    q = q[np.isfinite(q)]
    if not all(math.isfinite(v) for v in (w0, w1, q_ref_A, wavelength_A)):
        return NAN_RESULT
    n_inst = 0 if instrument is None else 3
    theta0 = np.array([w0, w1, *(instrument.parameters if n_inst else ())], dtype=float)

    def sample(theta: np.ndarray) -> np.ndarray:
        return sample_fwhm_q(theta[0] + theta[1] * (q - q_ref_A), q, wavelength_A, instrument,
                             theta[2:] if n_inst else None)

    widths = sample(theta0)
    q = q[np.isfinite(widths)]
    if len(q) < 2:
        return NAN_RESULT

    def intercept_slope(theta: np.ndarray) -> np.ndarray:
        return np.array(_line(q, sample(theta)))

    intercept, slope = intercept_slope(theta0)
    cov = np.full((len(theta0), len(theta0)), np.nan)
    if width_cov is not None:
        cov = np.zeros_like(cov)
        cov[:2, :2] = width_cov
        if n_inst:
            cov[2:, 2:] = instrument.covariance
    # Central differences, each step on its parameter's own scale (its error, else its size).
    jac = np.zeros((2, len(theta0)))
    for j in range(len(theta0)):
        err = math.sqrt(cov[j, j]) if math.isfinite(cov[j, j]) and cov[j, j] > 0 else 0.0
        step = max(_STEP_REL * abs(theta0[j]), 1e-3 * err, 1e-12)
        up, down = theta0.copy(), theta0.copy()
        up[j] += step
        down[j] -= step
        jac[:, j] = (intercept_slope(up) - intercept_slope(down)) / (2.0 * step)
    c = jac @ cov @ jac.T
    size_nm, size_err_nm = math.nan, math.nan
    if intercept > 0:
        size_nm = 2.0 * math.pi * k / intercept / 10.0
        size_err_nm = size_nm / intercept * math.sqrt(max(c[0, 0], 0.0)) if math.isfinite(c[0, 0]) else math.nan
    strain_err = 0.5 * math.sqrt(max(c[1, 1], 0.0)) if math.isfinite(c[1, 1]) else math.nan
    return WilliamsonHall(float(size_nm), float(size_err_nm), 0.5 * slope, float(strain_err),
                          tuple(float(v) for v in q), tuple(float(v) for v in sample(theta0)),
                          "" if instrument is None else instrument.source)
