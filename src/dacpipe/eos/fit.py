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

from ..core.lsq import ESD_SCALINGS, SystematicErrors, covariance_scale, propagate_common_shifts
from .models import (MODELS, PARAMETER_NAMES, EosParams, _bulk_modulus, _pressure, implied_K0pp_per_GPa,
                     pressure_derivatives)
from .models import volume_A3 as eos_volume_A3

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
    weights_per_GPa2 : ndarray
        The final weights: 1 / effective variance, or 1 without sigmas.
    leverage : ndarray
        Diagonal of the hat matrix of the final weighted fit, 0 to 1 (the
        parameters' count in all): how strongly each point fixes its own fit.
    converged : bool
        False when the least squares or the effective-variance cycles
        stopped without converging: the values are then not a minimum.
    K0pp_implied : bool
        bm4 with K'' held at the value K0 and K' imply (then bm3).
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
    weights_per_GPa2: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    leverage: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    converged: bool = True
    K0pp_implied: bool = False

    @property
    def normalised_residuals(self) -> np.ndarray:
        """Studentized residuals r_i sqrt(w_i) / sqrt(1 - h_i) (Cook & Weisberg,
        *Residuals and Influence in Regression*, 1982): each residual in units
        of its own expected spread, which a point of high leverage (h -> 1,
        the end of a pressure range) makes smaller than its sigma. NaN where
        h_i >= 1 (the point alone fixes a parameter: nothing to judge it by).
        Without sigmas the unit is GPa, not sigma.
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            one_minus_h = 1.0 - self.leverage
            return np.where(one_minus_h > 1e-12,
                            self.residuals_GPa * np.sqrt(self.weights_per_GPa2) / np.sqrt(one_minus_h), np.nan)


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


LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan")

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
           w: np.ndarray, loss: str = "linear", f_scale: float = 1.0) -> lmfit.minimizer.MinimizerResult:
    """One weighted least squares with the weights held fixed (lmfit, trust-region-reflective).

    scale_covar=False: the covariance comes back as (J^T W J)^-1, and
    :func:`~dacpipe.core.lsq.covariance_scale` decides any scaling. With
    the analytic Jacobian a fit that has a minimum takes 3-20 evaluations
    (the quartz and synthetic fits of tests/test_eos.py); 100 per parameter
    is the budget, beyond which the parameters are running down a valley
    (K0 -> 0 with K' -> 1e5 under a gross outlier took 2000 evaluations
    per cycle, seconds per fit, to nowhere).
    """
    derivative_model = "bm3" if model == "bm4" and params["K0pp_per_GPa"].expr else model
    sqrt_w = np.sqrt(w)
    minimizer = lmfit.Minimizer(_residual, params, fcn_args=(model, P, V, sqrt_w), scale_covar=False,
                                nan_policy="propagate")
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return minimizer.minimize(
            method="least_squares", max_nfev=100 * (len(free) + 1), loss=loss, f_scale=f_scale,
            jac=lambda pars, *args: _jacobian(pars, *args, free=free, derivative_model=derivative_model),
            x_scale="jac", ftol=1e-15, xtol=1e-15, gtol=1e-15)


def fit_eos(pressure_GPa, volume_A3, *, sigma_P_GPa=None, sigma_V_A3=None, model: str = "bm3",
            V0_A3: float | None = None, fix=(), Kp: float | None = None,
            K0pp_per_GPa: float | None = None, esd_scaling: str = "inflate",
            max_iter: int = 50, tol: float = 1e-8, loss: str = "linear", f_scale: float = 1.0) -> EosFit:
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
    loss : {"linear", "soft_l1", "huber", "cauchy", "arctan"}
        ``"linear"``: least squares. The others are the robust losses of
        :func:`scipy.optimize.least_squares` (Triggs et al., *Bundle
        adjustment*, 2000), on the normalised residuals with the scale
        ``f_scale`` (in sigmas), which bound the pull of a gross outlier;
        they need sigmas, start from the effective-variance weights at the
        starting values (not from an unweighted fit, which an outlier can
        drag anywhere), and their esds are not those of least squares: use
        them to find outliers (:func:`fit_eos_excluding_outliers`), then fit
        the rest by least squares.
    f_scale : float
        Scale of a robust ``loss``: residuals beyond ~``f_scale`` sigmas
        weigh less and less.

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
        If the weights have not converged after ``max_iter`` cycles, or a
        least squares stopped without converging (``EosFit.converged`` is
        then False).
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
    if loss not in LOSSES:
        raise ValueError(f"fit_eos: loss must be one of {LOSSES}, got {loss!r}")
    if loss != "linear" and not weighted:
        raise ValueError(f"fit_eos: a robust loss ({loss}) needs sigmas: its scale is in sigmas")
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

    if loss == "linear":
        # An unweighted fit first: it brings the crude start close enough
        # for the weights (which depend on K(V)) to mean something.
        w = np.ones(n)
        result = _solve(params, model, free, P, V, w)
    else:
        # Robust: the weights at the starting values, not an unweighted fit
        # that the outliers would drag.
        result = None
    iterations, change = 0, math.inf
    converged = not weighted and result.success
    if weighted and (result is None or result.success):
        for iterations in range(1, max_iter + 1):
            start = params if result is None else result.params
            x = _free_values(start, free)
            w = _effective_weights(_eos_params(model, start), V, sP, sV)
            result = _solve(start, model, free, P, V, w, loss, f_scale)
            if not result.success:
                break
            x_new = _free_values(result.params, free)
            change = float(np.max(np.abs(x_new - x) / np.maximum(np.abs(x_new), 1e-12)))
            if change <= tol:
                converged = True
                break
    if not result.success:
        warnings.warn(f"fit_eos: the least squares did not converge ({result.message})", RuntimeWarning,
                      stacklevel=2)
    elif not converged:
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
    # Leverage h_i = diag of the hat matrix J (J^T W J)^-1 J^T W: how much
    # point i pulls the fit towards itself (Cook & Weisberg 1982).
    Jw = _jacobian(result.params, model, P, V, np.sqrt(w), free=free,
                   derivative_model="bm3" if implied_K0pp else model)
    leverage = np.sum((Jw @ cov) * Jw, axis=1)
    scale2 = covariance_scale(chi2, weighted, esd_scaling)
    cov = cov * scale2
    errors = {nm: math.nan for nm in names}
    errors.update({nm: float(math.sqrt(cov[i, i])) if cov[i, i] >= 0 else math.nan
                   for i, nm in enumerate(free)})
    return EosFit(
        params=params, errors=errors, covariance=cov, parameter_names=free,
        reduced_chi2=chi2, n_points=n, pressure_range_GPa=(float(P.min()), float(P.max())),
        fixed=tuple(nm for nm in names if nm in fixed), weighted=weighted,
        esd_scale=float(math.sqrt(scale2)), iterations=iterations, residuals_GPa=resid, weights_per_GPa2=w,
        leverage=leverage, converged=bool(converged), K0pp_implied=implied_K0pp)


# --------------------------------------------------------------------------
# Outliers and the checks of a fit
# --------------------------------------------------------------------------

OUTLIER_LIMIT_SIGMA = 4.0
"""A point whose studentized residual exceeds this many sigmas is excluded.

With Gaussian errors one good point goes beyond 4 sigma with probability
6.3e-5, so a 30-point series loses a good point in 0.2 % of runs; a phantom
(the volume of a phase that is absent, or of a misindexed line) stands far
beyond it: 5 % of volume is 2-6 GPa at K0 = 40-120 GPa, against
sigma_P ~ 0.05-0.2 GPa and K sigma_V / V ~ 0.05-0.2 GPa, i.e. 10-100 sigma.
(Measured on synthetic series, tests/test_eos_robust.py.)"""

MAX_EXCLUDED_FRACTION = 0.2
"""At most this fraction of the points (and at least one) is excluded: the
fit of the rest must still be the fit of the data. More points beyond the
limit mean a wrong model or errors too small for all points, which a
warning says instead."""

MAX_QUIET_EXCLUSIONS = 2
"""More excluded points than this get a warning. A phantom comes from a
phase identified where it is absent or a line misindexed, near a transition:
one or two per phase. More look like a systematic disagreement within the
series (part of it on another pressure scale or medium): on the topaz data
of Gatta et al. (2014), two data sets that disagree beyond their errors
(chi2_w = 18.5), five points of the high-pressure set are 5.7-11 sigma off
the fit of the rest."""

MAX_REDUCED_CHI2 = 3.0
"""Above this chi2_w the errors or the model are wrong: for a right model
and right sigmas, chi2_w > 3 happens with probability 1 % at 5 degrees of
freedom and 0.1 % at 10 (the chi-square distribution)."""

KP_RANGE = (2.0, 12.0)
"""K' of solids lies near 4 (3-8 for nearly all; Angel 2000, Rev. Mineral.
Geochem. 41, 35). Outside 2-12 a fitted K' is the trade-off with K0 of a
short pressure range, or a bad point, not a property of the material."""


@dataclass(frozen=True)
class RobustEosFit:
    """Result of :func:`fit_eos_excluding_outliers`.

    Attributes
    ----------
    fit : EosFit
        The fit of the points kept.
    fit_all : EosFit
        The fit of all points, for comparison.
    kept : ndarray of bool
        Per input point: in ``fit``.
    excluded : tuple of int
        Indices of the excluded points, in the order they were excluded.
    reasons : tuple of str
        Why, one per excluded point: its deviation from ``fit`` (the fit
        of the others) in sigmas, in pressure and in volume.
    warnings : tuple of str
        What makes ``fit`` doubtful (:func:`fit_warnings`), and points
        beyond the limit that were not excluded.
    limit_sigma : float
    """

    fit: EosFit
    fit_all: EosFit
    kept: np.ndarray
    excluded: tuple[int, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    limit_sigma: float


def _noise_scale(z: np.ndarray, weighted: bool) -> float:
    """The spread of normalised residuals, robustly: 1.4826 x median |z| (the
    MAD of a normal distribution, Rousseeuw & Croux, J. Am. Stat. Assoc. 88,
    1273 (1993)), which one or two outliers do not move. With sigmas it only
    ever enlarges them (errors too small for every point are no reason to
    exclude the points at 2-3 true sigmas); without sigmas it is the unit."""
    z = np.abs(z[np.isfinite(z)])
    mad = 1.482602218505602 * float(np.median(z)) if z.size else math.nan
    if weighted:
        return max(1.0, mad) if math.isfinite(mad) else 1.0
    return mad if mad > 0 else math.nan


def fit_warnings(fit: EosFit, *, max_reduced_chi2: float = MAX_REDUCED_CHI2,
                 Kp_range: tuple[float, float] = KP_RANGE) -> list[str]:
    """What makes an EOS fit doubtful, one sentence each (none: an empty list).

    * chi2_w above ``max_reduced_chi2`` (:data:`MAX_REDUCED_CHI2`), weighted fits only;
    * a refined K' outside ``Kp_range`` (:data:`KP_RANGE`);
    * a fit that did not converge;
    * a parameter whose error is NaN (singular covariance).
    """
    out = []
    if fit.weighted and fit.reduced_chi2 > max_reduced_chi2:
        out.append(f"reduced chi^2 = {fit.reduced_chi2:.3g} > {max_reduced_chi2:g}: the points scatter beyond "
                   f"their errors (errors too small, or a model that misses the curvature: see the F-f plot)")
    if "Kp" in fit.parameter_names and not Kp_range[0] <= fit.params.Kp <= Kp_range[1]:
        out.append(f"K' = {fit.params.Kp:.3g} is outside [{Kp_range[0]:g}, {Kp_range[1]:g}]: traded against K0 "
                   f"over too short a pressure range, or pulled by bad points; consider fixing K'")
    if not fit.converged:
        out.append("the least squares did not converge: the values are not a minimum of chi^2")
    undetermined = [nm for nm in fit.parameter_names if not math.isfinite(fit.errors[nm])]
    if undetermined:
        out.append(f"errors of {', '.join(undetermined)} undetermined (singular covariance)")
    return out


CAUCHY_SCALE_SIGMA = 2.385
"""Scale of the Cauchy loss of the robust first fit, in sigmas: 95 % of
least squares' efficiency on normal errors (Holland & Welsch, Commun. Stat.
Theory Methods 6, 813 (1977)), while a point at 50 sigma pulls 1000x less
than in least squares."""


def _deviation_sigmas(fit: EosFit, P: np.ndarray, V: np.ndarray, sP: np.ndarray, sV: np.ndarray) -> np.ndarray:
    """|P - P_fit(V)| of points that are *not* in ``fit``, in units of their expected spread.

    The spread is sqrt(sigma_eff^2 + var P_fit(V)), the point's effective
    sigma and the fit's uncertainty there (the unscaled covariance): for a
    point just excluded this is its studentized residual in the fit that
    held it (linear approximation), so a point is judged the same way in
    and out of the fit.
    """
    p = fit.params
    r = P - _pressure(p, V)
    var_point = sP**2 + (_bulk_modulus(p, V) / V) ** 2 * sV**2
    # bm4 with the implied K'' is bm3 identically (see _jacobian).
    d = pressure_derivatives(EosParams("bm3", p.V0_A3, p.K0_GPa, p.Kp) if fit.K0pp_implied else p, V)
    J = np.column_stack([d[nm] for nm in fit.parameter_names])
    cov = fit.covariance / fit.esd_scale**2 if fit.esd_scale > 0 else fit.covariance
    var_fit = np.sum((J @ cov) * J, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(r) / np.sqrt(var_point + np.maximum(var_fit, 0.0))


def _reason(fit: EosFit, P: float, V: float, z: float) -> str:
    """Why a point is out, in words: sigmas, pressure and volume."""
    p = fit.params
    r = P - float(_pressure(p, np.array([V]))[0])
    text = f"{z:.1f} sigma off the fit of the other points: P - P_fit(V) = {r:+.3g} GPa"
    try:
        V_fit = float(eos_volume_A3(p, P))
        text += f", V = {V:.4g} A^3 where the fit has {V_fit:.4g} at {P:.3g} GPa ({100 * (V / V_fit - 1):+.1f} %)"
    except ValueError:
        pass
    return text


def fit_eos_excluding_outliers(pressure_GPa, volume_A3, *, sigma_P_GPa, sigma_V_A3,
                               limit_sigma: float = OUTLIER_LIMIT_SIGMA,
                               max_excluded_fraction: float = MAX_EXCLUDED_FRACTION, **fit_options) -> RobustEosFit:
    """:func:`fit_eos` on the points that are not outliers, and on all points for comparison.

    1. A robust fit of all points (Cauchy loss, scale
       :data:`CAUCHY_SCALE_SIGMA` sigmas, widened by the robust spread of
       its residuals when the errors are too small for all points): an
       outlier cannot drag it, as it drags least squares (a volume 5 % off
       took a BM3 least-squares fit to K0 -> 0, K' -> 1e5). The points more
       than ``limit_sigma`` off it, worst first, are the candidates, at most
       ``max_excluded_fraction`` of the points (at least one), leaving at
       least free parameters + 2.
    2. Least squares on the rest; then, one point at a time, the kept point
       of largest studentized residual (:attr:`EosFit.normalised_residuals`)
       beyond the limit is excluded, or an excluded point back within it
       (:func:`_deviation_sigmas`) is taken back, until neither happens.

    Residuals are in sigmas divided by their robust spread when that exceeds
    1 (:func:`_noise_scale`): errors too small for every point make them all
    large, which is a warning about the errors (chi2_w), not a reason to
    drop points.

    Parameters
    ----------
    pressure_GPa, volume_A3, sigma_P_GPa, sigma_V_A3
        As :func:`fit_eos`; the sigmas are needed (outliers are judged
        against them).
    limit_sigma : float
        :data:`OUTLIER_LIMIT_SIGMA`.
    max_excluded_fraction : float
        :data:`MAX_EXCLUDED_FRACTION`.
    **fit_options
        ``model``, ``V0_A3``, ``fix``, ``Kp``, ``K0pp_per_GPa``,
        ``esd_scaling`` for :func:`fit_eos`.

    Returns
    -------
    RobustEosFit

    Raises
    ------
    ValueError
        As :func:`fit_eos`, for the fit of all points; no sigmas.
    """
    if sigma_P_GPa is None and sigma_V_A3 is None:
        raise ValueError("fit_eos_excluding_outliers: outliers are judged against the points' sigmas; give them")
    P = np.asarray(pressure_GPa, dtype=float).ravel()
    V = np.asarray(volume_A3, dtype=float).ravel()
    n = P.size
    sP = _check_sigma(sigma_P_GPa, n, "sigma_P_GPa")
    sV = _check_sigma(sigma_V_A3, n, "sigma_V_A3")

    def fit_on(mask: np.ndarray, **extra) -> EosFit:
        # A fit that does not converge says so in EosFit.converged, which
        # fit_warnings turns into a warning of the result: no console noise
        # for the fit of all points, which an outlier often drags astray.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fit_eos(P[mask], V[mask], sigma_P_GPa=sP[mask], sigma_V_A3=sV[mask], **fit_options, **extra)

    every = np.ones(n, dtype=bool)
    fit_all = fit_on(every)
    max_excluded = max(1, int(max_excluded_fraction * n))
    min_kept = len(fit_all.parameter_names) + 2
    notes: list[str] = []

    # 1. Candidates from a robust fit (its numbers are not kept).
    robust = fit_on(every, loss="cauchy", f_scale=CAUCHY_SCALE_SIGMA)
    z = np.abs(robust.residuals_GPa) * np.sqrt(robust.weights_per_GPa2)
    spread = _noise_scale(z, weighted=True)
    if spread > 1.5:
        # Errors too small for every point: a Cauchy scale in stated sigmas
        # would treat the good points as outliers too.
        robust = fit_on(every, loss="cauchy", f_scale=CAUCHY_SCALE_SIGMA * spread)
        z = np.abs(robust.residuals_GPa) * np.sqrt(robust.weights_per_GPa2)
        spread = _noise_scale(z, weighted=True)
    z = z / spread
    order = [int(i) for i in np.argsort(-z) if z[i] > limit_sigma]
    room = min(max_excluded, n - min_kept)
    capped = len(order) > room
    if capped:
        notes.append(f"{len(order) - max(room, 0)} more point(s) beyond {limit_sigma:g} sigma of a robust fit kept: "
                     f"excluding more than {max(room, 0)} of {n} would leave the fit to too few points")
    excluded = order[:max(room, 0)]
    kept = every.copy()
    kept[excluded] = False

    # 2. Least squares on the rest; points out or back in one at a time.
    fit = fit_all if kept.all() else fit_on(kept)
    for _ in range(2 * n):
        z_in = np.abs(fit.normalised_residuals)
        spread = _noise_scale(z_in, weighted=True)
        z_in = z_in / spread
        out = ~kept
        z_out = _deviation_sigmas(fit, P[out], V[out], sP[out], sV[out]) / spread
        # Back in only while the rest is clean: with outliers left in (the
        # cap was reached) the fit is dragged, and so is any judgement on it.
        if not capped and np.any(z_out <= limit_sigma):
            back = int(np.flatnonzero(out)[int(np.argmin(z_out))])
            kept[back] = True
            excluded.remove(back)
        elif np.nanmax(z_in, initial=0.0) > limit_sigma:
            if len(excluded) >= max_excluded or kept.sum() - 1 < min_kept:
                capped = True
                notes.append(f"{int(np.sum(z_in > limit_sigma))} point(s) beyond {limit_sigma:g} sigma kept: "
                             f"excluding more than {len(excluded)} of {n} would leave the fit to too few points")
                break
            worst = int(np.flatnonzero(kept)[int(np.nanargmax(z_in))])
            kept[worst] = False
            excluded.append(worst)
        else:
            break
        fit = fit_all if kept.all() else fit_on(kept)
    if len(excluded) > MAX_QUIET_EXCLUSIONS:
        notes.append(f"{len(excluded)} of {n} points excluded: more than {MAX_QUIET_EXCLUSIONS} look like a "
                     f"systematic disagreement within the series rather than stray points; compare with the fit "
                     f"of all points")
    spread = _noise_scale(fit.normalised_residuals, weighted=True)
    out = np.array(excluded, dtype=int)
    z_out = _deviation_sigmas(fit, P[out], V[out], sP[out], sV[out]) / spread
    reasons = tuple(_reason(fit, P[i], V[i], float(zi)) for i, zi in zip(out, z_out))
    return RobustEosFit(fit=fit, fit_all=fit_all, kept=kept, excluded=tuple(excluded), reasons=reasons,
                        warnings=tuple(fit_warnings(fit) + notes), limit_sigma=float(limit_sigma))


# --------------------------------------------------------------------------
# Systematic pressure errors: a shift of every point, not scatter
# --------------------------------------------------------------------------


def propagate_systematic(pressure_GPa, volume_A3, shifts_GPa: dict, *, sigma_P_GPa, sigma_V_A3,
                         **fit_options) -> SystematicErrors:
    """The EOS parameters' systematic errors from pressure errors that are the
    same for every point: each source's 1-sigma shift of every pressure, one
    way then the other, through the same fit
    (:func:`dacpipe.core.lsq.propagate_common_shifts`, after Angel, Rev.
    Mineral. Geochem. 41, 35 (2000)).

    Parameters
    ----------
    pressure_GPa, volume_A3 : array_like
        The points fitted.
    shifts_GPa : dict[str, array_like]
        Source name -> 1-sigma shift of each point's pressure (GPa, >= 0,
        same direction for every point). A source NaN at every point is
        unknown: NaN in ``by_source``, left out of ``errors``; NaN at some
        points is taken as 0 there.
    sigma_P_GPa, sigma_V_A3
        The random errors the fit is weighted with.
    **fit_options
        As :func:`fit_eos` (model, fix, V0_A3, Kp ...): the same fit as the
        one whose parameters are reported.
    """
    def refit(P):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = fit_eos(P, volume_A3, sigma_P_GPa=sigma_P_GPa, sigma_V_A3=sigma_V_A3, **fit_options)
        return {name: float(getattr(fit.params, name)) for name in fit.parameter_names}

    return propagate_common_shifts(pressure_GPa, shifts_GPa, refit)
