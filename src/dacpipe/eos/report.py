"""What an EOS paper reports beside V0, K0 and K': axial moduli, K0-K' confidence
ellipses, and the volume change at a phase transition.

* Axial (linear) moduli: EosFit7's "linearised" EOS (Angel, Gonzalez-Platas
  & Alvaro, Z. Kristallogr. 229, 405 (2014)): the cube of a cell edge, a^3,
  is fitted against P with the same EOS model as a volume; the linear
  modulus M = -a dP/da is three times the "bulk modulus" of a^3, M0 = 3 K0
  and M' = 3 K'.
* Confidence ellipses of (K0, K'): the boundary of the joint region at
  Delta chi^2 = 2.30 (68.3 %) and 6.18 (95.4 %) for two parameters of a
  linearised least squares (Angel, Rev. Mineral. Geochem. 41, 35 (2000);
  Press et al., *Numerical Recipes*, 15.6).
* Delta V/V at a transition A -> B: both phases' volumes per formula unit
  at the onset pressure from their EOS fits, (V_B - V_A)/V_A, or, without
  both fits, the mean ratio at the points where both were refined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2, norm

from ..core.lsq import weighted_mean
from .fit import fit_eos
from .models import EosParams, _bulk_modulus, pressure_derivatives
from .models import volume_A3 as eos_volume_A3

# Joint confidence levels of the ellipses: those of 1 and 2 sigma of a normal
# variable, 68.27 % and 95.45 %, i.e. Delta chi^2 = 2.296 and 6.180 for two
# parameters (the 2.30 and 6.18 of Angel 2000).
ELLIPSE_LEVELS = (float(norm.cdf(1.0) - norm.cdf(-1.0)), float(norm.cdf(2.0) - norm.cdf(-2.0)))


@dataclass(frozen=True)
class AxialFit:
    """The linearised EOS of one cell edge (:func:`fit_axial_eos`).

    Attributes
    ----------
    axis : str
        ``"a"``, ``"b"`` or ``"c"``.
    model : str
    a0_A, a0_err_A : float
        The edge at zero pressure.
    M0_GPa, M0_err_GPa : float
        Linear modulus at zero pressure, 3 K0(a^3).
    Mp, Mp_err : float
        Its pressure derivative, 3 K'(a^3) (NaN error when K' was fixed).
    beta0_per_GPa : float
        Linear compressibility at zero pressure, 1/M0.
    reduced_chi2 : float
    n_points : int
    """

    axis: str
    model: str
    a0_A: float
    a0_err_A: float
    M0_GPa: float
    M0_err_GPa: float
    Mp: float
    Mp_err: float
    beta0_per_GPa: float
    reduced_chi2: float
    n_points: int


def fit_axial_eos(pressure_GPa, edge_A, *, sigma_P_GPa=None, sigma_edge_A=None, axis: str = "a",
                  model: str = "bm3", **fit_options) -> AxialFit:
    """Linear modulus of a cell edge from its compression, as EosFit7 does.

    The cube of the edge, x = a^3, is fitted by :func:`~dacpipe.eos.fit.fit_eos`
    with ``model`` exactly as a volume (effective-variance weights, sigma_x =
    3 a^2 sigma_a). Since x = a^3, K(x) = -x dP/dx = -(a/3) dP/da = M/3: the
    linear modulus and its derivative are M0 = 3 K0(x), M' = 3 K'(x)
    (Angel, Gonzalez-Platas & Alvaro, Z. Kristallogr. 229, 405 (2014)),
    with errors three times those of K0 and K'; a0 = x0^(1/3),
    sigma(a0) = sigma(x0) / (3 a0^2).

    Parameters
    ----------
    pressure_GPa, edge_A : array_like
    sigma_P_GPa, sigma_edge_A : array_like, optional
    axis : str
        The edge's name, for the result.
    model : str
        As :func:`~dacpipe.eos.fit.fit_eos`.
    **fit_options
        ``Kp``, ``fix``, ``esd_scaling`` ... of :func:`~dacpipe.eos.fit.fit_eos`
        (a fixed K' is that of a^3, i.e. M'/3).
    """
    a = np.asarray(edge_A, dtype=float)
    sx = None if sigma_edge_A is None else 3.0 * a**2 * np.asarray(sigma_edge_A, dtype=float)
    fit = fit_eos(pressure_GPa, a**3, sigma_P_GPa=sigma_P_GPa, sigma_V_A3=sx, model=model, **fit_options)
    a0 = fit.params.V0_A3 ** (1.0 / 3.0)
    return AxialFit(axis=axis, model=model, a0_A=float(a0),
                    a0_err_A=float(fit.errors.get("V0_A3", math.nan) / (3.0 * a0**2)),
                    M0_GPa=3.0 * fit.params.K0_GPa, M0_err_GPa=3.0 * fit.errors.get("K0_GPa", math.nan),
                    Mp=3.0 * fit.params.Kp, Mp_err=3.0 * fit.errors.get("Kp", math.nan),
                    beta0_per_GPa=1.0 / (3.0 * fit.params.K0_GPa), reduced_chi2=float(fit.reduced_chi2),
                    n_points=int(fit.n_points))


def confidence_ellipse(center, covariance, level: float, n_points: int = 181) -> np.ndarray:
    """The boundary of the joint confidence region of two parameters, [n_points, 2].

    For a least squares linear near its minimum, the region holding the true
    pair with probability ``level`` is (x - x_hat)^T C^-1 (x - x_hat) <=
    Delta chi^2, Delta chi^2 the ``level`` quantile of chi^2 with two degrees
    of freedom (2.30 at 68.3 %, 6.18 at 95.4 %: Angel 2000, Rev. Mineral.
    Geochem. 41, 35; Press et al., *Numerical Recipes*, 15.6). With C = L L^T
    (Cholesky), its boundary is x_hat + sqrt(Delta chi^2) L (cos t, sin t).
    The first and last points coincide (a closed curve).

    Raises
    ------
    ValueError
        A covariance that is not finite and positive definite.
    """
    c = np.asarray(covariance, dtype=float)
    if c.shape != (2, 2) or not np.all(np.isfinite(c)):
        raise ValueError("the covariance of two parameters must be a finite 2x2 matrix")
    try:
        L = np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        raise ValueError("the covariance is not positive definite (a parameter fixed or undetermined)") from None
    t = np.linspace(0.0, 2.0 * np.pi, n_points)
    scale = math.sqrt(float(chi2.ppf(level, 2)))
    return np.asarray(center, dtype=float)[None, :] + scale * (np.column_stack([np.cos(t), np.sin(t)]) @ L.T)


def k0_kp_ellipses(params: EosParams, covariance, parameter_names) -> dict[str, np.ndarray]:
    """The (K0, K') ellipses of a fit at :data:`ELLIPSE_LEVELS`, as ``{"K0_68_GPa", "Kp_68", ...}``.

    Empty when K' was not refined (bm2, K' fixed) or the covariance is singular.
    """
    names = list(parameter_names)
    if "K0_GPa" not in names or "Kp" not in names:
        return {}
    idx = [names.index("K0_GPa"), names.index("Kp")]
    sub = np.asarray(covariance, dtype=float)[np.ix_(idx, idx)]
    out = {}
    for level in ELLIPSE_LEVELS:
        try:
            pts = confidence_ellipse((params.K0_GPa, params.Kp), sub, level)
        except ValueError:
            return {}
        tag = f"{100 * level:.0f}"
        out[f"K0_{tag}_GPa"], out[f"Kp_{tag}"] = pts[:, 0], pts[:, 1]
    return out


def volume_at_pressure(params: EosParams, covariance, parameter_names, pressure_GPa: float
                       ) -> tuple[float, float]:
    """V(P) of a fitted EOS and its standard error from the fit's covariance.

    At fixed P, dV/dtheta = -(dP/dtheta)/(dP/dV) = (dP/dtheta) V / K(V)
    (implicit function; dP/dtheta from :func:`~dacpipe.eos.models.pressure_derivatives`),
    and var V = g^T C g over the free parameters (first order). A bm4 fit
    with the implied K'' is bm3 (the derivatives of bm3 are used).
    """
    V = float(eos_volume_A3(params, float(pressure_GPa)))
    names = list(parameter_names)
    p = params
    if params.model == "bm4" and "K0pp_per_GPa" not in names:
        p = EosParams("bm3", params.V0_A3, params.K0_GPa, params.Kp)
    d = pressure_derivatives(p, np.array([V]))
    K = float(_bulk_modulus(p, np.array([V]))[0])
    g = np.array([float(d[nm][0]) * V / K for nm in names])
    var = float(g @ np.asarray(covariance, dtype=float) @ g)
    return V, math.sqrt(var) if var >= 0 else math.nan


@dataclass(frozen=True)
class VolumeChange:
    """Delta V/V = (V_B - V_A)/V_A at a transition, with how it was found."""

    delta_V_rel: float
    delta_V_rel_err: float
    V_from_A3: float
    V_to_A3: float
    method: str


def volume_change_from_eos(pressure_GPa: float, from_fit: tuple, to_fit: tuple) -> VolumeChange:
    """Delta V/V at ``pressure_GPa`` from the EOS fits of both phases.

    Each fit is ``(EosParams, covariance, parameter_names)``. The fits are
    of different points, so their errors add: with r = V_B/V_A,
    sigma(r) = r sqrt[(sigma_B/V_B)^2 + (sigma_A/V_A)^2]. The onset
    pressure's own uncertainty is not included (``transitions/`` carries none).
    """
    VA, sA = volume_at_pressure(*from_fit, pressure_GPa)
    VB, sB = volume_at_pressure(*to_fit, pressure_GPa)
    r = VB / VA
    return VolumeChange(r - 1.0, r * math.hypot(sA / VA, sB / VB), VA, VB, "eos")


def volume_change_from_points(V_from_A3, V_from_err_A3, V_to_A3, V_to_err_A3) -> VolumeChange:
    """Delta V/V from the points where both phases were refined (coexistence).

    The weighted mean of r_i = V_B,i / V_A,i (weights 1/sigma_ri^2,
    sigma_ri = r_i sqrt[(sA/VA)^2 + (sB/VB)^2]), its error the larger of the
    weighted mean's and the scatter's (Birge ratio when above 1), minus 1.
    NaN without a coexistence point.
    """
    VA, sA, VB, sB = (np.asarray(v, dtype=float) for v in (V_from_A3, V_from_err_A3, V_to_A3, V_to_err_A3))
    ok = np.isfinite(VA) & np.isfinite(VB) & np.isfinite(sA) & np.isfinite(sB) & (sA > 0) & (sB > 0)
    if not ok.any():
        return VolumeChange(math.nan, math.nan, math.nan, math.nan, "no coexistence point")
    r = VB[ok] / VA[ok]
    sr = r * np.hypot(sA[ok] / VA[ok], sB[ok] / VB[ok])
    mean, err = weighted_mean(r, sr)
    return VolumeChange(mean - 1.0, err, float(np.mean(VA[ok])), float(np.mean(VB[ok])), "coexistence points")
