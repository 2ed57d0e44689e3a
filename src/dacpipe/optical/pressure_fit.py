"""Pressure dependence of an energy (band gap, PL peak): E(P) = E0 + alpha P (+ beta P^2), an lmfit model."""

from __future__ import annotations

import math
from dataclasses import dataclass

import lmfit
import numpy as np

from scipy.stats import f as f_distribution

from ..core.lsq import SystematicErrors, covariance_scale, propagate_common_shifts
from .curves import energy_series

MODELS = ("auto", "quadratic", "linear")

_NAMES = ("E0_eV", "alpha_eV_per_GPa", "beta_eV_per_GPa2")

F_TEST_LEVEL = 0.05
"""Significance level of the F-test that keeps the quadratic term of an
``auto`` E(P) fit: the term is kept when a linear law would leave a drop in
chi^2 this improbable."""


def _energy(pressure_GPa, E0_eV, alpha_eV_per_GPa, beta_eV_per_GPa2):
    return E0_eV + alpha_eV_per_GPa * pressure_GPa + beta_eV_per_GPa2 * pressure_GPa**2


# E(P) as an lmfit model; the linear fit holds beta at 0.
_MODEL = lmfit.Model(_energy, independent_vars=["pressure_GPa"])


def _jacobian(params, data, weights, pressure_GPa):
    """d residual / d (E0, alpha[, beta]) for lmfit's leastsq: the residual is (E - model) w."""
    k = 3 if params["beta_eV_per_GPa2"].vary else 2
    return -weights[:, None] * np.vander(pressure_GPa, k, increasing=True)


@dataclass(frozen=True, eq=False)
class PressureFit:
    """``E(P) = E0 + alpha P + beta P^2`` (beta NaN for the linear model).

    Attributes
    ----------
    model : str
        ``"quadratic"`` or ``"linear"``.
    E0_eV, alpha_eV_per_GPa, beta_eV_per_GPa2 : float
        Coefficients; alpha is dE/dP at zero pressure.
    E0_err_eV, alpha_err_eV_per_GPa, beta_err_eV_per_GPa2 : float
        Standard errors.
    covariance : ndarray
        3x3 covariance of (E0, alpha, beta); the beta row and column are NaN
        for the linear model.
    n_points : int
    pressure_min_GPa, pressure_max_GPa : float
    reduced_chi2 : float
        NaN when there are no degrees of freedom or no point errors.
    error_scale : float
        Factor applied to the covariance: the Birge ratio sqrt(chi2_red)
        when above 1 (the scatter says the point errors are too small), else 1.
    F_quadratic, F_critical : float
        The ``auto`` model's F-test of the quadratic term and the F(1, n-3)
        value it had to exceed (:data:`F_TEST_LEVEL`); NaN when no test was
        made (a model asked for, fewer than 4 points).
    """

    model: str
    E0_eV: float
    E0_err_eV: float
    alpha_eV_per_GPa: float
    alpha_err_eV_per_GPa: float
    beta_eV_per_GPa2: float
    beta_err_eV_per_GPa2: float
    covariance: np.ndarray
    n_points: int
    pressure_min_GPa: float
    pressure_max_GPa: float
    reduced_chi2: float
    error_scale: float
    F_quadratic: float = math.nan
    F_critical: float = math.nan

    def energy_eV(self, pressure_GPa):
        """The fitted E at ``pressure_GPa``."""
        p = np.asarray(pressure_GPa, dtype=float)
        beta = 0.0 if self.model == "linear" else self.beta_eV_per_GPa2
        return self.E0_eV + self.alpha_eV_per_GPa * p + beta * p * p


def fit_energy_vs_pressure(pressure_GPa, energy_eV, energy_err_eV=None, *, model: str = "auto",
                           pressure_err_GPa=None) -> PressureFit:
    """Weighted least squares of ``E(P) = E0 + alpha P (+ beta P^2)``.

    An :class:`lmfit.Model` of E(P) (beta held at 0 for the line), fitted
    by lmfit's Levenberg-Marquardt with the exact Jacobian (the Vandermonde
    matrix) from the unweighted polynomial; the problem being linear, the
    solution is that of the normal equations (the closed form this replaced
    agrees to 1e-12 of an esd, benchmarks/bench_fits.py).

    Parameters
    ----------
    pressure_GPa, energy_eV : array_like
        Points; non-finite pairs are left out.
    energy_err_eV : array_like, optional
        Standard errors of E. Without them (or when any is not a positive
        number) the fit is unweighted and its errors come from the scatter.
    model : {"auto", "quadratic", "linear"}
        ``"auto"``: with >= 4 points, the line and the parabola are both
        fitted and the quadratic kept when F = (chi2_lin - chi2_quad) /
        (chi2_quad / (n - 3)) exceeds the F(1, n - 3) critical value at
        :data:`F_TEST_LEVEL` (the extra-term F-test, Bevington & Robinson,
        *Data Reduction and Error Analysis*, 11.4; chi^2 weighted by the
        points' errors, or the plain residual sums without them: the ratio
        is the same); linear with 2-3 points. ``"quadratic"`` with fewer
        than 4 points falls back to linear.
    pressure_err_GPa : array_like, optional
        Pressure errors, turned into energy errors through the fitted slope
        (effective variance, Orear, Am. J. Phys. 50, 912 (1982); two passes).

    Returns
    -------
    PressureFit
        The covariance is ``(X^T W X)^-1`` times max(1, chi2_red) (Birge
        ratio squared): the errors never claim more than the points' own
        errors allow, and grow when the scatter exceeds them. With 2 points
        and a line there is no scatter to judge; the errors are the points'.

    Raises
    ------
    InputError
        Fewer than 2 usable points, or all at one pressure.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    p, E, s, keep = energy_series(pressure_GPa, energy_eV, energy_err_eV, against="pressure", unit="GPa", minimum=2)
    sp = np.zeros(keep.shape) if pressure_err_GPa is None else np.asarray(pressure_err_GPa, dtype=float).ravel()
    sp = np.where(np.isfinite(sp[keep]), sp[keep], 0.0)
    n = p.size
    weighted = bool(np.all(np.isfinite(s) & (s > 0)))
    F_value, F_crit = math.nan, math.nan
    if n < 4 or model == "linear":
        chosen = "linear"
    elif model == "quadratic":
        chosen = "quadratic"
    else:
        linear, quadratic = (_weighted_fit(p, E, s, sp, k, weighted) for k in (2, 3))
        # chi^2 of the line at rounding level (points exactly on a line): nothing for beta to explain.
        w = 1.0 / s**2 if weighted else np.ones(n)
        floor = 1e-20 * float(np.sum(w * (E - np.average(E, weights=w)) ** 2))
        F_value, F_crit = _f_test(linear[2] if linear[2] > floor else 0.0, quadratic[2], n)
        chosen = "quadratic" if F_value > F_crit else "linear"
    k = 3 if chosen == "quadratic" else 2
    coef, cov, chi2_sum = _weighted_fit(p, E, s, sp, k, weighted)
    dof = n - k
    chi2 = float(chi2_sum / dof) if dof > 0 else math.nan
    # No errors and no scatter (2 points, a line): the errors are unknown.
    scale = covariance_scale(chi2, weighted) if dof > 0 else (1.0 if weighted else math.nan)
    if not weighted:
        chi2 = math.nan
    cov = cov * scale
    full = np.full((3, 3), np.nan)
    full[:k, :k] = cov
    err = np.sqrt(np.diag(full))
    beta = float(coef[2]) if k == 3 else math.nan
    return PressureFit(model=chosen, E0_eV=float(coef[0]), E0_err_eV=float(err[0]),
                       alpha_eV_per_GPa=float(coef[1]), alpha_err_eV_per_GPa=float(err[1]),
                       beta_eV_per_GPa2=beta, beta_err_eV_per_GPa2=float(err[2]), covariance=full,
                       n_points=n, pressure_min_GPa=float(p.min()), pressure_max_GPa=float(p.max()),
                       reduced_chi2=chi2, error_scale=float(math.sqrt(scale)) if np.isfinite(scale) else math.nan,
                       F_quadratic=F_value, F_critical=F_crit)


def _f_test(chi2_linear: float, chi2_quadratic: float, n: int) -> tuple[float, float]:
    """F = (chi2_lin - chi2_quad) / (chi2_quad / (n - 3)) and the F(1, n - 3)
    critical value at :data:`F_TEST_LEVEL` (Bevington & Robinson, *Data
    Reduction and Error Analysis*, 3rd ed., 11.4: the extra-term F-test).
    A quadratic that fits exactly (chi2_quad = 0) with a linear that does
    not gives F = inf."""
    crit = float(f_distribution.ppf(1.0 - F_TEST_LEVEL, 1, n - 3))
    drop = max(chi2_linear - chi2_quadratic, 0.0)
    if chi2_quadratic <= 0:
        return (math.inf if drop > 0 else 0.0), crit
    return float(drop / (chi2_quadratic / (n - 3))), crit


def _weighted_fit(p, E, s, sp, k: int, weighted: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """One polynomial fit of degree k - 1: coefficients, unscaled covariance
    (X^T W X)^-1, and chi^2 (the weighted sum of squared residuals; the
    plain sum without weights)."""
    n = p.size
    sigma2 = s**2 if weighted else np.ones(n)
    # Start at the unweighted polynomial: the problem is linear in the
    # parameters, so the first Gauss-Newton step lands on the solution.
    start = np.polynomial.polynomial.polyfit(p, E, k - 1)
    params = _MODEL.make_params(E0_eV=start[0], alpha_eV_per_GPa=start[1],
                                beta_eV_per_GPa2=start[2] if k == 3 else 0.0)
    params["beta_eV_per_GPa2"].vary = k == 3
    slope = np.zeros(n)
    for _ in range(2 if weighted and np.any(sp > 0) else 1):
        var = sigma2 + (slope * sp) ** 2 if weighted else sigma2
        result = _MODEL.fit(E, params, pressure_GPa=p, weights=1.0 / np.sqrt(var), scale_covar=False,
                            fit_kws={"Dfun": _jacobian})
        params = result.params
        slope = params["alpha_eV_per_GPa"].value + 2.0 * params["beta_eV_per_GPa2"].value * p
    coef = np.array([params[name].value for name in _NAMES[:k]])
    cov = (np.asarray(result.covar, dtype=float) if result.covar is not None else np.full((k, k), np.nan))
    return coef, cov, float(np.sum(result.residual**2))


def propagate_systematic_energy(pressure_GPa, energy_eV, energy_err_eV, shifts_GPa: dict, *, model: str,
                                pressure_err_GPa=None) -> SystematicErrors:
    """dE/dP's (and E0's, beta's) systematic errors from pressure errors common to all points.

    As for the EOS (:func:`dacpipe.core.lsq.propagate_common_shifts`): each
    source k shifts every point's pressure by its 1-sigma s_ik in the same direction; the
    fit (``model`` as chosen for the reported fit, weighted by the random
    pressure errors ``pressure_err_GPa``) is repeated with P + s_k and
    P - s_k, and half the difference of each coefficient is that source's
    term; the sources add in quadrature. A scale that reads every pressure
    0.5 % high makes dE/dP 0.5 % low whatever the scatter: no number of
    points averages it down.
    """
    def refit(p):
        fit = fit_energy_vs_pressure(p, energy_eV, energy_err_eV, model=model, pressure_err_GPa=pressure_err_GPa)
        return {name: getattr(fit, name) for name in (_NAMES if fit.model == "quadratic" else _NAMES[:2])}

    return propagate_common_shifts(pressure_GPa, shifts_GPa, refit)
