"""The F-f plot: normalised stress against Eulerian strain, the check of a Birch-Murnaghan fit's order.

Birch, J. Geophys. Res. 83, 1257 (1978); Angel, Rev. Mineral. Geochem. 41,
35 (2000): for BM3 the points lie on F = K0 + 3 K0 (K' - 4) f / 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..core.lsq import covariance_scale
from .fit import _check_sigma
from .models import eulerian_strain

@dataclass(frozen=True)
class FfResult:
    """Normalised stress F against Eulerian strain f, and its straight-line fit.

    Arrays have one entry per input point; excluded points (|f| < f_min)
    have NaN F and sigma_F. For BM3 the line F = F0 + F1 f has F0 = K0 and
    F1 = 3 K0 (K' - 4) / 2; a horizontal line means BM2 suffices, a curved
    one that BM4 is needed (Angel 2000).
    """

    f: np.ndarray
    F_GPa: np.ndarray
    sigma_f: np.ndarray
    sigma_F_GPa: np.ndarray
    intercept_GPa: float
    slope_GPa: float
    intercept_err: float
    slope_err: float
    included: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool), repr=False)
    reduced_chi2: float = math.nan


def f_F(pressure_GPa, volume_A3, V0_A3: float, sigma_P=None, sigma_V=None, *,
        sigma_V0_A3: float = 0.0, f_min: float = 1e-5, esd_scaling: str = "inflate") -> FfResult:
    """F-f plot: normalised stress against Eulerian strain, with a line fit.

    f = [(V0/V)^(2/3) - 1] / 2 and F = P / [3 f (1+2f)^(5/2)] (Birch 1978,
    J. Geophys. Res. 83, 1257). Uncertainties as Heinz & Jeanloz (1984,
    J. Appl. Phys. 55, 885) and Angel (2000), as coded in CrysFML's
    FfCal_Dat_Esd, with eta = V/V0,
    sigma_eta = eta sqrt[(sigma_V/V)^2 + (sigma_V0/V0)^2]:

        sigma_f = eta^(-5/3) sigma_eta / 3
        sigma'  = (7 eta^(-2/3) - 5) sigma_eta / [3 (1 - eta^(-2/3)) eta]
        sigma_F = F sqrt[(sigma_P/P)^2 + sigma'^2]

    (sigma' carries the volume error into F; sigma_f and sigma_F are thus
    strongly correlated, which is why the line fit weights by sigma_F only.)

    The line F = F0 + F1 f is fitted by least squares with weights
    1/sigma_F^2 when sigmas are given (esds as ``esd_scaling`` in
    :func:`fit_eos`), unweighted otherwise (esds scaled by the residual
    variance). Points with |f| < ``f_min`` are left out: F is 0/0 at f = 0
    and meaningless when the strain is below the precision of a volume
    (1e-5 in f is 3e-5 in V/V0).

    Returns
    -------
    FfResult

    Raises
    ------
    ValueError
        Unequal lengths, volumes <= 0, V0 <= 0, or fewer than 2 usable points.
    """
    P = np.asarray(pressure_GPa, dtype=float).ravel()
    V = np.asarray(volume_A3, dtype=float).ravel()
    if P.size != V.size:
        raise ValueError(f"f_F: {P.size} pressures but {V.size} volumes")
    if np.any(~(V > 0)):
        raise ValueError("f_F: volumes must be positive numbers")
    if not (np.isfinite(V0_A3) and V0_A3 > 0):
        raise ValueError(f"f_F: V0_A3 must be positive, got {V0_A3}")
    n = P.size
    sP = _check_sigma(sigma_P, n, "sigma_P")
    sV = _check_sigma(sigma_V, n, "sigma_V")
    weighted = sigma_P is not None or sigma_V is not None

    f = eulerian_strain(V, V0_A3)
    included = np.isfinite(P) & (np.abs(f) >= f_min)
    F = np.full(n, np.nan)
    F[included] = P[included] / (3.0 * f[included] * (1.0 + 2.0 * f[included]) ** 2.5)

    eta = V / V0_A3
    sigma_eta = eta * np.sqrt((sV / V) ** 2 + (sigma_V0_A3 / V0_A3) ** 2)
    sigma_f = eta ** (-5.0 / 3.0) * sigma_eta / 3.0
    sigma_F = np.full(n, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(P != 0, sP / np.abs(P), 0.0)
        sigma_prime = (7.0 * eta ** (-2.0 / 3.0) - 5.0) * sigma_eta / (3.0 * (1.0 - eta ** (-2.0 / 3.0)) * eta)
        sigma_F[included] = np.abs(F[included]) * np.hypot(e[included], sigma_prime[included])

    m = int(included.sum())
    if m < 2:
        raise ValueError(f"f_F: {m} point(s) with |f| >= {f_min}; a line needs at least 2")
    x, y = f[included], F[included]
    if weighted:
        if np.any(sigma_F[included] <= 0):
            raise ValueError("f_F: a point has sigma_F = 0 (both sigma_P and sigma_V zero)")
        w = 1.0 / sigma_F[included] ** 2
    else:
        w = np.ones(m)
    A = np.column_stack([np.ones(m), x])
    normal = A.T @ (w[:, None] * A)
    cov = np.linalg.inv(normal)
    coef = cov @ (A.T @ (w * y))
    resid = y - A @ coef
    dof = m - 2
    chi2 = float(np.sum(w * resid**2) / dof) if dof > 0 else math.nan
    cov = cov * (covariance_scale(chi2, weighted, esd_scaling) if dof > 0 else (1.0 if weighted else math.nan))
    return FfResult(f=f, F_GPa=F, sigma_f=sigma_f, sigma_F_GPa=sigma_F,
                    intercept_GPa=float(coef[0]), slope_GPa=float(coef[1]),
                    intercept_err=float(math.sqrt(cov[0, 0])), slope_err=float(math.sqrt(cov[1, 1])),
                    included=included, reduced_chi2=chi2)
