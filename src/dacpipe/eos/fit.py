"""Fits of pressure-volume data to an equation of state.

:func:`fit_eos` weights errors in both P and V by the effective-variance
method of EosFit7 (Angel, Gonzalez-Platas & Alvaro, Z. Kristallogr. 229, 405
(2014)): each point's weight is 1 / (sigma_P^2 + (dP/dV)^2 sigma_V^2), with
dP/dV from the current fit, re-evaluated until the parameters settle.
Each weighted least squares is an :mod:`lmfit` minimisation with the
analytic Jacobian of :func:`dacpipe.eos.models.pressure_derivatives`; the
esds follow :func:`dacpipe.core.lsq.covariance_scale`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import lmfit
import numpy as np

from ..core.lsq import ESD_SCALINGS, covariance_scale
from .models import (MODELS, PARAMETER_NAMES, EosParams, _bulk_modulus, _pressure, implied_K0pp_per_GPa,
                     pressure_derivatives)

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


# V0 and K0 must stay positive (the EOS is undefined otherwise); the bound
# is strict because least_squares' trust-region-reflective steps keep the
# parameters strictly inside.
_POSITIVE = 1e-12


def _parameters(model: str, fixed: set, *, V0: float, K0: float, Kp: float, K0pp: float | None,
                implied_K0pp: bool) -> lmfit.Parameters:
    """The lmfit parameters of a fit: fixed ones with vary=False, bm4's implied K'' as a constraint."""
    params = lmfit.Parameters(usersyms={"implied_K0pp_per_GPa": implied_K0pp_per_GPa})
    params.add("V0_A3", value=V0, min=_POSITIVE, vary="V0_A3" not in fixed)
    params.add("K0_GPa", value=K0, min=_POSITIVE)
    params.add("Kp", value=4.0 if model == "bm2" else Kp, vary="Kp" not in fixed)
    if model == "bm4":
        if implied_K0pp:
            # "Fixed at the implied value" follows K0 and K' as they refine:
            # bm4 is then bm3 (Anderson 1995).
            params.add("K0pp_per_GPa", expr="implied_K0pp_per_GPa(K0_GPa, Kp)")
        else:
            params.add("K0pp_per_GPa", value=implied_K0pp_per_GPa(K0, Kp) if K0pp is None else float(K0pp),
                       vary="K0pp_per_GPa" not in fixed)
    return params


def _eos_params(model: str, params: lmfit.Parameters) -> EosParams:
    values = params.valuesdict()
    return _make_params(model, values)


def _free_values(params: lmfit.Parameters, free: tuple[str, ...]) -> np.ndarray:
    return np.array([params[nm].value for nm in free], dtype=float)


def _effective_weights(p: EosParams, V: np.ndarray, sP: np.ndarray, sV: np.ndarray) -> np.ndarray:
    """w_i = 1 / [sigma_P^2 + (dP/dV)^2 sigma_V^2], dP/dV = -K(V)/V (Orear 1982)."""
    dPdV = -_bulk_modulus(p, V) / V
    return 1.0 / (sP**2 + dPdV**2 * sV**2)


def _residual(params: lmfit.Parameters, model: str, P: np.ndarray, V: np.ndarray, sqrt_w: np.ndarray):
    return sqrt_w * (P - _pressure(_eos_params(model, params), V))


def _jacobian(params: lmfit.Parameters, model: str, P: np.ndarray, V: np.ndarray, sqrt_w: np.ndarray, *,
              free: tuple[str, ...], derivative_model: str):
    # Analytic dP/d(parameter) (models.pressure_derivatives), columns in the
    # order of the free parameters, which is lmfit's var_names order.
    p = _eos_params(model, params)
    if derivative_model != model:
        # bm4 with the implied K'': the constraint makes it bm3 identically,
        # so the total derivatives are bm3's.
        p = EosParams(derivative_model, p.V0_A3, p.K0_GPa, p.Kp)
    d = pressure_derivatives(p, V)
    return -sqrt_w[:, None] * np.column_stack([d[nm] for nm in free])


def _solve(params: lmfit.Parameters, model: str, free: tuple[str, ...], P: np.ndarray, V: np.ndarray,
           w: np.ndarray) -> lmfit.minimizer.MinimizerResult:
    """One weighted least squares with the weights held fixed (lmfit, trust-region-reflective).

    scale_covar=False: the covariance comes back as (J^T W J)^-1, and
    :func:`~dacpipe.core.lsq.covariance_scale` decides any scaling.
    """
    derivative_model = "bm3" if model == "bm4" and params["K0pp_per_GPa"].expr else model
    sqrt_w = np.sqrt(w)
    minimizer = lmfit.Minimizer(_residual, params, fcn_args=(model, P, V, sqrt_w), scale_covar=False,
                                nan_policy="propagate")
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return minimizer.minimize(
            method="least_squares", max_nfev=2000,
            jac=lambda pars, *args: _jacobian(pars, *args, free=free, derivative_model=derivative_model),
            x_scale="jac", ftol=1e-15, xtol=1e-15, gtol=1e-15)


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
    from the current parameters, a weighted least squares with those
    weights fixed (lmfit's ``least_squares`` method, trust-region
    reflective, on :class:`lmfit.Parameters` with V0, K0 > 0, fixed
    parameters ``vary=False`` and bm4's implied K'' as a constraint; the
    analytic Jacobian of :func:`~dacpipe.eos.models.pressure_derivatives`),
    and again, until no parameter changes by more than ``tol`` relative.
    Without sigmas all weights are 1.
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
    implied_K0pp = model == "bm4" and "K0pp_per_GPa" in fixed and K0pp_per_GPa is None
    params = _parameters(model, fixed, V0=V0_start, K0=K0_start, Kp=4.0 if Kp is None else float(Kp),
                         K0pp=K0pp_per_GPa, implied_K0pp=implied_K0pp)

    # An unweighted fit first: it brings the crude start close enough for
    # the weights (which depend on K(V)) to mean something.
    result = _solve(params, model, free, P, V, np.ones(n))
    iterations, change = 0, math.inf
    converged = not weighted
    if weighted:
        for iterations in range(1, max_iter + 1):
            x = _free_values(result.params, free)
            result = _solve(result.params, model, free, P, V,
                            _effective_weights(_eos_params(model, result.params), V, sP, sV))
            x_new = _free_values(result.params, free)
            change = float(np.max(np.abs(x_new - x) / np.maximum(np.abs(x_new), 1e-12)))
            if change <= tol:
                converged = True
                break
    if not converged:
        warnings.warn(f"fit_eos: effective-variance weights not converged after {max_iter} cycles "
                      f"(last relative change {change:.2g})", RuntimeWarning, stacklevel=2)

    params = _eos_params(model, result.params)
    resid = P - _pressure(params, V)
    # lmfit's statistics are those of the last cycle: its residuals are
    # sqrt(w) (P_obs - P_calc) with the weights of that cycle, which the
    # convergence test has made equal to the final ones within ``tol``.
    chi2 = float(np.sum(result.residual**2) / result.nfree)
    cov = (np.asarray(result.covar, dtype=float) if result.covar is not None
           else np.full((len(free), len(free)), np.nan))
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
