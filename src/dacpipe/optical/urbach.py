"""The Urbach energy: the width of the exponential absorption tail below a band gap.

Urbach, Phys. Rev. 92, 1324 (1953): below the gap of a crystal the absorption
coefficient falls exponentially, ``alpha(E) = alpha0 exp((E - E0) / E_U)``,
i.e. ``ln alpha = ln alpha0 + (E - E0) / E_U``; E_U, the Urbach energy,
measures the disorder (static and thermal) that smears the edge, and in
nanocrystals the size and shape dispersion as well.

How it is fitted (:func:`urbach_energy`)
----------------------------------------
In a DAC the measured absorbance is ``A = alpha d / ln 10`` plus the cell's
baseline (reflection losses and scattering, :mod:`dacpipe.optical.tauc`),
and the tail runs down into that baseline and the noise. Taking the
logarithm of the baseline-subtracted absorbance would amplify the noise
where the tail is weak and bias it (E[ln(x + n)] < ln x); the tail and a
straight baseline are therefore fitted together, in absorbance, where the
noise is additive and the same at every point:

    A(E) = b0 + b1 (E - Et) + A_t exp((E - Et) / E_U),

over ``[Et - span, Et]`` (Et the top of the range: the band gap), by
Levenberg-Marquardt (:func:`~dacpipe.core.lsq.levenberg_marquardt`) in
(b0, b1, ln A_t, 1 / E_U). ln alpha0 + (E - E0)/E_U is the same curve
(alpha0 exp(-E0/E_U) = A_t exp(-Et/E_U) ln 10 / d; d is unknown in a DAC,
which changes alpha0 and not E_U). The covariance is (J^T J)^-1 times the
reduced chi-square (:func:`~dacpipe.core.lsq.covariance_scale`, no errors
given), and sigma(E_U) = sigma(1/E_U) E_U^2.

The range used by the optical stage (:func:`urbach_range`): from
:data:`URBACH_SPAN_W` = 15 edge widths ``w`` (the half width of the dA/dE
peak, :func:`~dacpipe.optical.tauc.absorption_inflection`) below the band
gap found (the Tauc gap; the edge's inflection when there is none; for
quantum dots with a resolved first exciton, the low-energy inflection of
that band, E_x - sigma, with w = sigma, half its d2A/dE2 lobe), as far
down as the sub-gap baseline of the Tauc construction reaches, so that the
straight baseline is pinned by points where the tail has died out, up to
:data:`URBACH_TOP_W` = 1 w below it, so that the square-root edge above the
tail stays out of the fit. A tail that
does not decay inside the range (E_U above a third of it) cannot be told
from the baseline, and is not reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from ..core.lsq import covariance, covariance_scale, levenberg_marquardt
from .curves import checked_spectrum
from .tauc import BASELINE_RANGE_W

URBACH_SPAN_W = BASELINE_RANGE_W[0]
"""The fit reaches this many edge widths below the gap (Tauc's baseline reach)."""
URBACH_TOP_W = 1.0
"""... and stops this many edge widths below it: where an exponential tail
turns into the edge is not known, and the Tauc gap of a spectrum that does not
follow Tauc's law exactly may lie above it."""
MIN_POINTS = 12
MAX_SPAN_FRACTION = 1.0 / 3.0
"""E_U must be below this fraction of the range: the tail decays by e^3 inside it."""
MIN_TAIL_SIGNIFICANCE = 5.0
"""The tail's amplitude at the top of the range, in its standard errors."""


@dataclass(frozen=True)
class UrbachFit:
    """An Urbach tail fitted with a straight baseline.

    Attributes
    ----------
    urbach_energy_eV, urbach_energy_err_eV : float
        E_U and its standard error.
    top_eV : float
        Et, the top of the range (the band gap used).
    amplitude : float
        A_t, the tail's absorbance above the baseline at Et.
    amplitude_err : float
    baseline : tuple of float
        (b0, b1 per eV) of the straight baseline about Et.
    window_eV : tuple of float
        First and last energy fitted.
    n_points : int
    reduced_chi2 : float
        Residual variance per degree of freedom (absorbance squared).
    """

    urbach_energy_eV: float
    urbach_energy_err_eV: float
    top_eV: float
    amplitude: float
    amplitude_err: float
    baseline: tuple[float, float]
    window_eV: tuple[float, float]
    n_points: int
    reduced_chi2: float


def urbach_range(gap_eV: float, width_eV: float) -> tuple[float, float]:
    """[gap - URBACH_SPAN_W w, gap - URBACH_TOP_W w], w the edge's width
    (:attr:`~dacpipe.optical.tauc.Edge.width_eV`; module docstring)."""
    return gap_eV - URBACH_SPAN_W * width_eV, gap_eV - URBACH_TOP_W * width_eV


def urbach_energy(energy_eV, absorbance, top_eV: float, span_eV: float) -> UrbachFit:
    """Fit ``b0 + b1 (E - Et) + A_t exp((E - Et)/E_U)`` over ``[top_eV - span_eV, top_eV]``.

    Parameters
    ----------
    energy_eV, absorbance : array_like
        The spectrum (decadic absorbance, any scale).
    top_eV : float
        Et: the top of the range, the band gap.
    span_eV : float
        How far below Et the range reaches.

    Returns
    -------
    UrbachFit

    Raises
    ------
    InputError
        Too few points in the range, a fit that does not converge, a tail
        that does not rise towards the gap (E_U <= 0), one that does not
        decay inside the range, or one not significant above the noise.
    """
    if not (math.isfinite(top_eV) and math.isfinite(span_eV) and span_eV > 0):
        raise ValueError(f"need a finite top and a positive span, got {top_eV}, {span_eV}")
    e, a = checked_spectrum(energy_eV, absorbance, "absorbance")
    inside = (e >= top_eV - span_eV) & (e <= top_eV)
    n = int(inside.sum())
    if n < MIN_POINTS:
        raise InputError(f"only {n} points in the Urbach range {top_eV - span_eV:.3f}-{top_eV:.3f} eV, "
                         f"need {MIN_POINTS}")
    x, y = e[inside] - top_eV, a[inside]
    # Start: the baseline from the lower half, the tail from the log of what lies above it at the top.
    low = x <= np.median(x)
    b1, b0 = np.polyfit(x[low], y[low], 1)
    excess = y - (b0 + b1 * x)
    top = x >= x[-1] - span_eV / 6.0
    a_top = max(float(np.mean(excess[top])), 1e-6)
    p0 = np.array([b0, b1, math.log(a_top), 10.0 / span_eV])  # E_U a tenth of the range

    def model(p):
        return p[0] + p[1] * x + np.exp(p[2] + p[3] * x)

    def residual(p):
        return model(p) - y

    def jacobian(p):
        tail = np.exp(p[2] + p[3] * x)
        return np.column_stack([np.ones_like(x), x, tail, x * tail])

    p = levenberg_marquardt(residual, jacobian, p0, "the Urbach fit did not converge")
    dof = n - 4
    chi2 = float(np.sum(residual(p) ** 2)) / dof
    unscaled = covariance(jacobian(p))
    if unscaled is None:
        raise InputError("the Urbach tail is not determined by the data (its fit is degenerate)")
    cov = unscaled * covariance_scale(chi2, sigma_given=False)
    inverse, inverse_err = float(p[3]), math.sqrt(max(float(cov[3, 3]), 0.0))
    if not inverse > 0:
        raise InputError(f"no Urbach tail below {top_eV:.3f} eV: the absorbance does not rise exponentially "
                         "towards the gap")
    e_u = 1.0 / inverse
    if e_u > MAX_SPAN_FRACTION * span_eV:
        raise InputError(f"no Urbach tail below {top_eV:.3f} eV: E_U {1000 * e_u:.0f} meV does not decay "
                         f"inside the {1000 * span_eV:.0f} meV range")
    amplitude = math.exp(p[2])
    amplitude_err = amplitude * math.sqrt(max(float(cov[2, 2]), 0.0))
    if not amplitude >= MIN_TAIL_SIGNIFICANCE * amplitude_err:
        raise InputError(f"no Urbach tail below {top_eV:.3f} eV: its amplitude is "
                         f"{amplitude / amplitude_err:.1f} standard errors, need {MIN_TAIL_SIGNIFICANCE:g}")
    return UrbachFit(urbach_energy_eV=e_u, urbach_energy_err_eV=inverse_err * e_u**2, top_eV=float(top_eV),
                     amplitude=amplitude, amplitude_err=amplitude_err, baseline=(float(p[0]), float(p[1])),
                     window_eV=(float(e[inside][0]), float(e[inside][-1])), n_points=n, reduced_chi2=chi2)
