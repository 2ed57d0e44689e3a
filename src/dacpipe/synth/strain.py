"""A radial-geometry cake of a cubic nanocrystal powder under non-hydrostatic stress, from known truth.

What the integration stage stores with ``cake.enabled`` (I per chi row and
radial bin, the mean of the bin's pixels with solid angle and polarization
divided out) for one point, and the azimuthal average it integrates to,
generated straight in (chi, q): each line's d-spacing follows Singh's
lattice-strain equation

    d(psi) = d_P [1 + (1 - 3 cos^2 psi) Q],   cos psi = cos theta cos(chi - chi_load)

(Singh, Balasingh, Mao, Hemley, Shu, J. Appl. Phys. 83, 7567 (1998)) with
one Q for every line, so that the truth is t/G = 6 Q. Line areas, Voigt
profiles (Scherrer Lorentzian, instrument and microstrain Gaussian) and the
DAC background are those of :mod:`dacpipe.synth.powder`; Poisson counts
over the pixels of each (chi, q) bin, a ring's pixels shared evenly between
the chi rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import voigt_profile

from ..xrd.library import get_phase
from ..xrd.strain import strain_factor
from .detector import DetectorGeometry, cached_integrator
from .powder import PEAK_COUNTS, PointTruth, _widths, background, line_heights, pixels_per_bin
from .xrd import powder_line_weights


@dataclass(frozen=True, eq=False)
class StrainedCake:
    """One point's cake [n_chi, npt] and its azimuthal average, with the truth behind them."""

    q_A: np.ndarray
    chi_deg: np.ndarray
    cake: np.ndarray            # mean counts per pixel of each (chi, q) bin
    intensity: np.ndarray       # azimuthal average [npt]
    sigma: np.ndarray           # its Poisson error
    Q: float
    t_over_G: float             # 6 Q (Singh et al. 1998)


def strained_counts(name: str, truth: PointTruth, two_theta_deg, chi_deg, wavelength_A: float, Q: float, *,
                    load_axis_chi_deg: float = 0.0, peak_counts: float = PEAK_COUNTS,
                    geometry: str = "radial") -> np.ndarray:
    """Noise-free counts per pixel of phase ``name`` (amount 1) at ``truth``, lattice strain ``Q`` on every
    line, at each (2theta, chi) of the broadcast of ``two_theta_deg`` and ``chi_deg``: the DAC background
    plus Voigt lines whose centres follow Singh's d(psi). ``peak_counts`` is the strongest line's height
    in the unstrained azimuthal average."""
    two_theta = np.asarray(two_theta_deg, dtype=float)
    chi = np.asarray(chi_deg, dtype=float)
    two_theta, chi = np.broadcast_arrays(two_theta, chi)
    _, theta, weight = powder_line_weights(get_phase(name), truth.cell(name), wavelength_A,
                                           float(two_theta.max()) + 3.0)
    gamma, sigma = _widths(name, theta, truth, wavelength_A, 5e-4, 0.02)
    scale = peak_counts / float(np.max(line_heights(name, truth, wavelength_A)))
    d_p = wavelength_A / (2.0 * np.sin(theta))
    out = background(two_theta, truth.pressure_GPa)
    for k in range(theta.size):
        x = strain_factor(np.degrees(2.0 * theta[k]), chi - load_axis_chi_deg, geometry)
        centre = np.degrees(2.0 * np.arcsin(wavelength_A / (2.0 * d_p[k] * (1.0 + Q * x))))
        out = out + scale * weight[k] * voigt_profile(two_theta - centre, sigma[k], gamma[k])
    return out


def strained_cake(name: str, truth: PointTruth, q_A, chi_deg, wavelength_A: float, Q: float,
                  rng: np.random.Generator, *, load_axis_chi_deg: float = 0.0, peak_counts: float = PEAK_COUNTS,
                  geometry: str = "radial") -> StrainedCake:
    """The cake of phase ``name`` (amount 1) at ``truth`` with lattice strain ``Q`` on every line
    (:func:`strained_counts` on the (chi, q) grid, Poisson counts over each bin's pixels).

    ``peak_counts`` sets the strongest line's height in counts per pixel of
    the unstrained azimuthal average (:data:`dacpipe.synth.powder.PEAK_COUNTS`
    by default, as the synthetic series).
    """
    q = np.asarray(q_A, dtype=float)
    chi = np.asarray(chi_deg, dtype=float)
    two_theta = np.degrees(2.0 * np.arcsin(np.clip(q * wavelength_A / (4 * np.pi), 0, 1)))
    expected = strained_counts(name, truth, two_theta[None, :], chi[:, None], wavelength_A, Q,
                               load_axis_chi_deg=load_axis_chi_deg, peak_counts=peak_counts, geometry=geometry)
    pixels = pixels_per_bin(q, wavelength_A)
    per_row = np.maximum(pixels / chi.size, 1.0)
    counts = rng.poisson(expected * per_row[None, :]).astype(float)
    total = counts.sum(axis=0)
    all_pixels = per_row * chi.size
    return StrainedCake(q_A=q, chi_deg=chi, cake=counts / per_row[None, :], intensity=total / all_pixels,
                        sigma=np.sqrt(np.maximum(total, 1.0)) / all_pixels, Q=float(Q), t_over_G=6.0 * float(Q))


def strained_frame(name: str, truth: PointTruth, geometry: DetectorGeometry, Q: float, rng: np.random.Generator, *,
                   load_axis_chi_deg: float = 0.0, peak_counts: float = PEAK_COUNTS,
                   polarization_factor: float = 0.99) -> np.ndarray:
    """A detector frame (int32 counts) of phase ``name`` in radial geometry: :func:`strained_counts` at
    every pixel's centre (pyFAI's 2theta and chi for ``geometry``, so chi is the azimuth the cake is
    integrated on), times pyFAI's solid angle and polarization (which the integration divides out),
    with Poisson noise. No beamstop: the caller shades what its setup hides."""
    ai = cached_integrator(geometry)
    two_theta = ai.center_array(geometry.shape, unit="2th_deg", scale=True)
    chi = ai.center_array(geometry.shape, unit="chi_deg", scale=True)
    expected = strained_counts(name, truth, two_theta, chi, geometry.wavelength_A, Q,
                               load_axis_chi_deg=load_axis_chi_deg, peak_counts=peak_counts)
    expected *= ai.solidAngleArray(geometry.shape) * ai.polarization(geometry.shape, factor=polarization_factor)
    return rng.poisson(np.maximum(expected, 0.0)).astype(np.int32)
