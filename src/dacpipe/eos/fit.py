"""Fits of pressure-volume data to an equation of state.

:func:`fit_eos` weights errors in both P and V by the effective-variance
method of EosFit7 (Angel, Gonzalez-Platas & Alvaro, Z. Kristallogr. 229, 405
(2014)): each point's weight is 1 / (sigma_P^2 + (dP/dV)^2 sigma_V^2), with
dP/dV from the current fit, re-evaluated until the parameters settle.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

from ..core.lsq import ESD_SCALINGS, covariance_scale
from .models import MODELS, PARAMETER_NAMES, EosParams, _bulk_modulus, _pressure, implied_K0pp_per_GPa

@dataclass(frozen=True)
class EosFit:
    """Result of :func:`fit_eos`.

    Attributes
    ----------
    params : EosParams
        Fitted (and fixed) values.
    errors : dict[str, float]
        Standard errors of the model's parameters, keyed by
        :data:`PARAMETER_NAMES` (``K0pp_per_GPa`` for bm4 only); NaN for a
        fixed parameter.
    covariance : ndarray
        Covariance matrix of the free parameters, in the order of
        ``parameter_names``, with the same scaling as ``errors``.
    parameter_names : tuple of str
        The free parameters.
    reduced_chi2 : float
        chi2_w = sum w_i (P_obs - P_calc)^2 / (n - p) with the final weights;
        with unit weights it is the residual variance in GPa^2.
    n_points : int
    pressure_range_GPa : tuple of float
        (min, max) of the observed pressures.
    fixed : tuple of str
        Parameters held fixed (``Kp`` for bm2).
    weighted : bool
        Whether sigmas were given (effective-variance weights) or not (unit weights).
    esd_scale : float
        The factor applied to the esds from the unscaled covariance
        (1 or sqrt(chi2_w), see ``esd_scaling`` in :func:`fit_eos`).
    iterations : int
        Effective-variance cycles done (weights re-evaluated).
    residuals_GPa : ndarray
        P_obs - P_calc(V_obs).
    """

    params: EosParams
    errors: dict[str, float]
    covariance: np.ndarray
    parameter_names: tuple[str, ...]
    reduced_chi2: float
    n_points: int
    pressure_range_GPa: tuple[float, float]
    fixed: tuple[str, ...]
    weighted: bool = False
    esd_scale: float = 1.0
    iterations: int = 0
    residuals_GPa: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)


def _model_parameters(model: str) -> tuple[str, ...]:
    return PARAMETER_NAMES if model == "bm4" else PARAMETER_NAMES[:3]


def _make_params(model: str, values: dict[str, float]) -> EosParams:
    K0pp = values.get("K0pp_per_GPa") if model == "bm4" else None
    return EosParams(model, float(values["V0_A3"]), float(values["K0_GPa"]),
                     4.0 if model == "bm2" else float(values["Kp"]),
                     None if K0pp is None else float(K0pp))


def _check_sigma(sigma, n: int, name: str) -> np.ndarray:
    if sigma is None:
        return np.zeros(n)
    s = np.broadcast_to(np.asarray(sigma, dtype=float), (n,)).copy()
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"{name} must be finite and >= 0")
    return s


def _starting_values(P: np.ndarray, V: np.ndarray, V0_start: float | None) -> tuple[float, float]:
    """Rough V0 and K0 from the data, only to start the least squares."""
    # Mean modulus over the range from the slope of P against -ln V; a K' of
    # ~4 makes the modulus at P = 0 smaller than that by ~4 <P>.
    if np.ptp(V) > 0 and np.ptp(P) > 0:
        K_mean = -np.polyfit(np.log(V), P, 1)[0]
    else:
        K_mean = 100.0
    if not np.isfinite(K_mean) or K_mean <= 0:
        K_mean = 100.0
    K0 = K_mean - 4.0 * float(np.mean(P))
    if K0 < 0.2 * K_mean:
        K0 = 0.5 * K_mean
    if V0_start is None:
        i = int(np.argmin(P))
        V0_start = float(V[i] * math.exp(P[i] / K0))
    return float(V0_start), float(K0)


def fit_eos(pressure_GPa, volume_A3, *, sigma_P_GPa=None, sigma_V_A3=None, model: str = "bm3",
            V0_A3: float | None = None, fix=(), Kp: float | None = None,
            K0pp_per_GPa: float | None = None, esd_scaling: str = "inflate",
            max_iter: int = 50, tol: float = 1e-8) -> EosFit:
    """Fit an isothermal EOS to P-V data, weighting errors in both P and V.

    The misfit is in pressure, P_obs - P(V_obs), each point weighted by its
    effective variance (Orear 1982, Am. J. Phys. 50, 912), as EosFit7 does
    (Angel, Gonzalez-Platas & Alvaro 2014, Z. Kristallogr. 229, 405;
    Angel 2000, Rev. Mineral. Geochem. 41, 35):

        w_i = 1 / [sigma_P_i^2 + (dP/dV at V_i)^2 sigma_V_i^2],
        dP/dV = -K(V)/V.

    The weights depend on the parameters, so the fit is iterated: weights
    from the current parameters, a weighted Gauss-Newton (trust-region)
    least squares with those weights fixed, and again, until no parameter
    changes by more than ``tol`` relative. Without sigmas all weights are 1.
    On the quartz data of Angel et al. (1997) this reproduces, to 6 digits
    in values and 4 in esds, the effective-variance fits published with
    Quantas (gfulian/quantas), and EosFit7's to within their esds.

    Parameters
    ----------
    pressure_GPa, volume_A3 : array_like
        Observations, same length; volumes > 0.
    sigma_P_GPa, sigma_V_A3 : array_like or float, optional
        Standard uncertainties (either or both; a missing one counts as 0).
        A point with both zero is refused (infinite weight).
    model : str
        One of :data:`MODELS`.
    V0_A3 : float, optional
        Starting value of V0, or its fixed value with ``fix=("V0_A3",)``.
    fix : iterable of str
        Parameters to hold fixed: ``"V0_A3"`` (needs ``V0_A3``), ``"Kp"``
        (at ``Kp``, or 4 if ``Kp`` is None), ``"K0pp_per_GPa"`` (bm4: at
        ``K0pp_per_GPa``, or at the implied value if None, which is BM3).
    Kp : float, optional
        Fixes K' at this value (the usual "BM3 with K' fixed" fit). bm2
        always fixes K' = 4.
    K0pp_per_GPa : float, optional
        bm4 only: fixes K'' at this value.
    esd_scaling : {"inflate", "never", "always"}
        How the esds of a *weighted* fit relate to the covariance
        C = (J^T W J)^-1. ``"inflate"`` (default): C as it is when
        chi2_w <= 1, C * chi2_w when chi2_w > 1. ``"never"``: C as it is.
        ``"always"``: C * chi2_w. With chi2_w < 1 the default reproduces
        EosFit7: for the quartz data of Angel et al. (1997) the unscaled
        esds give K' = 5.988(45), published 5.99(5), while scaling by
        sqrt(0.95) would give 5.988(44), i.e. 5.99(4); likewise the
        Marquardt routine of CrysFML (CFML_Optimization_LSQ, the library
        that EosFit7c is built on) returns sqrt(diag(C)) unscaled. Whether
        EosFit7 inflates when chi2_w > 1 could not be checked here.
        Inflating when chi2_w > 1 is our conservative choice (the esds
        must not claim more precision than the scatter allows; Angel 2000
        discusses chi2_w >> 1 as a sign of underestimated sigmas or a wrong
        model). Unit-weight fits are always scaled by the residual
        variance, the only estimate of the data's error there is.
    max_iter : int
        Maximum effective-variance cycles.
    tol : float
        Convergence: relative change of every free parameter below ``tol``.

    Returns
    -------
    EosFit

    Raises
    ------
    ValueError
        Bad input: unequal lengths, non-finite values, volumes <= 0, fewer
        points than free parameters + 1, an unknown model or parameter name,
        ``fix=("V0_A3",)`` without ``V0_A3``.

    Warns
    -----
    RuntimeWarning
        If the weights have not converged after ``max_iter`` cycles.
    """
    if model not in MODELS:
        raise ValueError(f"unknown EOS model {model!r}; expected one of {', '.join(MODELS)}")
    if esd_scaling not in ESD_SCALINGS:
        raise ValueError(f"esd_scaling must be one of {ESD_SCALINGS}, got {esd_scaling!r}")
    P = np.asarray(pressure_GPa, dtype=float).ravel()
    V = np.asarray(volume_A3, dtype=float).ravel()
    n = P.size
    if V.size != n:
        raise ValueError(f"fit_eos: {n} pressures but {V.size} volumes")
    if not (np.all(np.isfinite(P)) and np.all(np.isfinite(V))):
        raise ValueError("fit_eos: pressures and volumes must be finite numbers")
    if np.any(V <= 0):
        raise ValueError(f"fit_eos: volumes must be positive, got {V[V <= 0][:3].tolist()}")
    sP = _check_sigma(sigma_P_GPa, n, "sigma_P_GPa")
    sV = _check_sigma(sigma_V_A3, n, "sigma_V_A3")
    weighted = sigma_P_GPa is not None or sigma_V_A3 is not None
    if weighted and np.any((sP == 0) & (sV == 0)):
        raise ValueError("fit_eos: a point has sigma_P = sigma_V = 0 (infinite weight); give it an uncertainty")

    names = _model_parameters(model)
    fix = tuple(fix) if not isinstance(fix, str) else (fix,)
    unknown = [f for f in fix if f not in names]
    if unknown:
        raise ValueError(f"fit_eos: cannot fix {unknown} for {model}; its parameters are {names}")
    if "K0_GPa" in fix:
        raise ValueError("fit_eos: K0_GPa cannot be fixed")
    if model == "bm2" and Kp is not None and Kp != 4.0:
        raise ValueError(f"fit_eos: bm2 implies K' = 4, got Kp = {Kp}")
    if K0pp_per_GPa is not None and model != "bm4":
        raise ValueError("fit_eos: K0pp_per_GPa is a parameter of bm4 only")
    fixed = set(fix)
    if Kp is not None or model == "bm2":
        fixed.add("Kp")
    if K0pp_per_GPa is not None:
        fixed.add("K0pp_per_GPa")
    if "V0_A3" in fixed and V0_A3 is None:
        raise ValueError("fit_eos: fix=('V0_A3',) needs the value: pass V0_A3=...")
    if V0_A3 is not None and not (np.isfinite(V0_A3) and V0_A3 > 0):
        raise ValueError(f"fit_eos: V0_A3 must be positive, got {V0_A3}")

    free = tuple(nm for nm in names if nm not in fixed)
    if n < len(free) + 1:
        raise ValueError(
            f"fit_eos: {n} points for {len(free)} free parameters ({', '.join(free)}) of {model}; "
            f"need at least {len(free) + 1} (one degree of freedom)")

    V0_start, K0_start = _starting_values(P, V, V0_A3)
    values = {"V0_A3": V0_start, "K0_GPa": K0_start, "Kp": 4.0 if Kp is None else float(Kp)}
    if model == "bm4":
        values["K0pp_per_GPa"] = (implied_K0pp_per_GPa(K0_start, values["Kp"])
                                  if K0pp_per_GPa is None else float(K0pp_per_GPa))
    fixed_values = {k: values[k] for k in fixed}

    def unpack(x: np.ndarray) -> EosParams:
        vals = dict(fixed_values)
        vals.update(zip(free, x))
        if model == "bm4" and "K0pp_per_GPa" in fixed and K0pp_per_GPa is None:
            # "fixed at the implied value" follows K0 and K' as they refine.
            vals["K0pp_per_GPa"] = implied_K0pp_per_GPa(vals["K0_GPa"], vals["Kp"])
        return _make_params(model, vals)

    def model_P(x: np.ndarray) -> np.ndarray:
        return _pressure(unpack(x), V)

    def jacobian_P(x: np.ndarray) -> np.ndarray:
        # Central differences: the step h ~ 1e-6 |x| leaves a truncation
        # error ~1e-12 relative, far below any esd.
        J = np.empty((n, x.size))
        for j in range(x.size):
            h = 1e-6 * max(abs(x[j]), 1e-3)
            xp, xm = x.copy(), x.copy()
            xp[j] += h
            xm[j] -= h
            J[:, j] = (model_P(xp) - model_P(xm)) / (2 * h)
        return J

    def weights(x: np.ndarray) -> np.ndarray:
        if not weighted:
            return np.ones(n)
        p = unpack(x)
        dPdV = -_bulk_modulus(p, V) / V
        return 1.0 / (sP**2 + dPdV**2 * sV**2)

    # V0 and K0 stay positive (the EOS is undefined otherwise); K', K'' are free.
    lower = np.array([1e-12 if nm in ("V0_A3", "K0_GPa") else -np.inf for nm in free])

    def solve(x0: np.ndarray, w: np.ndarray) -> np.ndarray:
        sw = np.sqrt(w)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            res = least_squares(
                lambda x: sw * (P - model_P(x)),
                x0, jac=lambda x: -sw[:, None] * jacobian_P(x),
                bounds=(lower, np.inf), method="trf", x_scale="jac",
                ftol=1e-15, xtol=1e-15, gtol=1e-15, max_nfev=2000)
        return res.x

    x = np.array([values[nm] for nm in free], dtype=float)
    # An unweighted fit first: it brings the crude start close enough for
    # the weights (which depend on K(V)) to mean something.
    x = solve(x, np.ones(n))
    iterations, change = 0, math.inf
    converged = not weighted
    if weighted:
        for iterations in range(1, max_iter + 1):
            x_new = solve(x, weights(x))
            change = np.max(np.abs(x_new - x) / np.maximum(np.abs(x_new), 1e-12))
            x = x_new
            if change <= tol:
                converged = True
                break
    if not converged:
        warnings.warn(f"fit_eos: effective-variance weights not converged after {max_iter} cycles "
                      f"(last relative change {change:.2g})", RuntimeWarning, stacklevel=2)

    params = unpack(x)
    w = weights(x)
    resid = P - model_P(x)
    dof = n - len(free)
    chi2 = float(np.sum(w * resid**2) / dof)
    J = jacobian_P(x) * np.sqrt(w)[:, None]
    try:
        cov = np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        cov = np.full((len(free), len(free)), np.nan)
    scale2 = covariance_scale(chi2, weighted, esd_scaling)
    cov = cov * scale2
    errors = {nm: math.nan for nm in names}
    errors.update({nm: float(math.sqrt(cov[i, i])) if cov[i, i] >= 0 else math.nan
                   for i, nm in enumerate(free)})
    return EosFit(
        params=params, errors=errors, covariance=cov, parameter_names=free,
        reduced_chi2=chi2, n_points=n, pressure_range_GPa=(float(P.min()), float(P.max())),
        fixed=tuple(nm for nm in names if nm in fixed), weighted=weighted,
        esd_scale=float(math.sqrt(scale2)), iterations=iterations, residuals_GPa=resid)
