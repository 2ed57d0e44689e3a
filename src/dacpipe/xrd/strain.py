"""Differential stress from the lattice strain of each line against azimuth (Singh's lattice-strain theory).

Under a uniaxial stress component t (the differential stress, sigma_3 -
sigma_1) superposed on the hydrostatic pressure, the d-spacing of a line
measured with its diffraction vector at an angle psi to the load axis is

    d(psi) = d_P [1 + (1 - 3 cos^2 psi) Q(hkl)]

(Singh, Balasingh, Mao, Hemley, Shu, J. Appl. Phys. 83, 7567 (1998)), d_P the d-spacing under the hydrostatic part alone. For a cubic
phase, averaged over the lines, Q(hkl) = (t/3)[alpha/(2 G_R(hkl)) + (1 - alpha)/(2 G_V)]
averaged over the lines gives t = 6 G <Q(hkl)> (Reuss-Voigt weight alpha = 1,
G the aggregate shear modulus), so t/G
= 6 <Q> is read from the pattern alone.

The angle psi comes from the geometry (Singh et al. 1998, section II):

* radial (the beam perpendicular to the load axis, the azimuth chi measured
  on the detector from the load direction): cos psi = cos theta cos chi;
* axial (the beam along the load axis, the usual DAC): cos psi = sin theta,
  the same for every azimuth, so a cake of an axial pattern shows no
  ellipticity and Q cannot be separated from d_P (NaN with the reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.lsq import fit_straight_line

GEOMETRIES = ("radial", "axial")


def strain_factor(two_theta_deg, chi_deg, geometry: str = "radial") -> np.ndarray:
    """1 - 3 cos^2 psi for each (2theta, chi) (module docstring)."""
    theta = np.radians(np.asarray(two_theta_deg, dtype=float)) / 2.0
    chi = np.radians(np.asarray(chi_deg, dtype=float))
    if geometry == "radial":
        cos_psi = np.cos(theta) * np.cos(chi)
    elif geometry == "axial":
        cos_psi = np.sin(theta) * np.ones_like(chi)
    else:
        raise ValueError(f"unknown geometry {geometry!r}; expected one of {GEOMETRIES}")
    return 1.0 - 3.0 * cos_psi ** 2


@dataclass(frozen=True)
class LineStrain:
    """One line's fit of d against 1 - 3 cos^2 psi."""

    d_P_A: float
    d_P_err_A: float
    Q: float
    Q_err: float
    n_azimuths: int
    reason: str = ""          # why Q is NaN, else ""


def fit_line_strain(d_A, two_theta_deg, chi_deg, geometry: str = "radial") -> LineStrain:
    """Fit d(chi) = d_P + d_P Q (1 - 3 cos^2 psi) for one line (Singh et al. 1998).

    A straight line in x = 1 - 3 cos^2 psi: intercept d_P, slope d_P Q. The
    d-spacings carry no error of their own here (peak centroids of cake rows),
    so the scatter about the line sets the errors (:func:`dacpipe.core.lsq.covariance_scale`);
    Q's error follows from the intercept's and slope's covariance to first order.
    """
    d = np.asarray(d_A, dtype=float)
    x = strain_factor(two_theta_deg, chi_deg, geometry)
    x = np.broadcast_to(x, d.shape)
    ok = np.isfinite(d) & np.isfinite(x)
    n = int(ok.sum())
    if n < 3:
        return LineStrain(math.nan, math.nan, math.nan, math.nan, n, "fewer than 3 azimuths with the line")
    if np.ptp(x[ok]) < 1e-6:
        return LineStrain(float(np.mean(d[ok])), math.nan, math.nan, math.nan, n,
                          "psi does not vary with azimuth (axial geometry): Q not separable from d_P")
    line = fit_straight_line(x[ok], d[ok])
    a, b = line.intercept, line.slope
    var_a, var_b, cov_ab = line.covariance[0, 0], line.covariance[1, 1], line.covariance[0, 1]
    q = b / a
    # dQ = db/a - b da/a^2
    q_var = var_b / a ** 2 + b ** 2 * var_a / a ** 4 - 2.0 * b * cov_ab / a ** 3
    return LineStrain(float(a), float(math.sqrt(var_a)), float(q), float(math.sqrt(max(q_var, 0.0))), n)


def ring_positions(cake, radial, expected, half_width) -> np.ndarray:
    """Per azimuth row of ``cake`` [n_chi, n_radial], the centroid of the line near ``expected``.

    Within ``expected +- half_width`` (same unit as ``radial``) a straight
    background through the mean of the first and last three bins is
    removed and the remainder's centroid taken; NaN for a row without
    signal there (masked, gaps). ``half_width`` should hold the line's
    wings (a few FWHM) and no other line.
    """
    cake = np.asarray(cake, dtype=float)
    radial = np.asarray(radial, dtype=float)
    inside = np.flatnonzero(np.abs(radial - expected) <= half_width)
    out = np.full(cake.shape[0], np.nan)
    if inside.size < 7:
        return out
    r = radial[inside]
    for k, row in enumerate(cake[:, inside]):
        if not np.all(np.isfinite(row)):
            continue
        left, right = row[:3].mean(), row[-3:].mean()
        background = left + (right - left) * (r - r[:3].mean()) / (r[-3:].mean() - r[:3].mean())
        # Not clipped at zero: clipping the noise of the wings would pull every
        # centroid towards the window's centre (the unstrained position) and bias Q low.
        signal = row - background
        if signal.sum() > 0:
            out[k] = float(np.sum(signal * r) / signal.sum())
    return out


@dataclass(frozen=True)
class DifferentialStress:
    """The differential stress of a cubic phase from its lines' Q (Singh et al. 1998)."""

    mean_Q: float
    mean_Q_err: float
    t_over_G: float           # 6 <Q>
    t_over_G_err: float
    t_GPa: float              # 6 G <Q>; NaN without G
    t_err_GPa: float
    n_lines: int


def differential_stress(lines: list[LineStrain], shear_modulus_GPa: float = math.nan) -> DifferentialStress:
    """t/G = 6 <Q> over the lines with a finite Q, <Q> weighted by 1/sigma(Q)^2, and t = 6 G <Q>.

    Q(hkl) of a cubic phase varies with hkl through the elastic anisotropy
    (Singh et al. 1998); the weighted mean stands for the aggregate
    (alpha = 1), and its error is the larger of the propagated one and the
    lines' scatter about it (a spread beyond the errors is the anisotropy,
    not noise to average down).
    """
    used = [ln for ln in lines if math.isfinite(ln.Q) and math.isfinite(ln.Q_err) and ln.Q_err > 0]
    if not used:
        nan = math.nan
        return DifferentialStress(nan, nan, nan, nan, nan, nan, 0)
    q = np.array([ln.Q for ln in used])
    w = 1.0 / np.array([ln.Q_err for ln in used]) ** 2
    mean = float(np.sum(w * q) / np.sum(w))
    err = float(1.0 / math.sqrt(np.sum(w)))
    if len(used) > 1:
        chi2 = float(np.sum(w * (q - mean) ** 2) / (len(used) - 1))
        err *= math.sqrt(max(1.0, chi2))
    g = float(shear_modulus_GPa)
    return DifferentialStress(mean, err, 6.0 * mean, 6.0 * err, 6.0 * g * mean, 6.0 * abs(g) * err, len(used))
