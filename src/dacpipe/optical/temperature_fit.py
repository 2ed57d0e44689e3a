"""Temperature dependence of an energy (band gap, PL peak): Varshni and Bose-Einstein fits, lmfit models.

A run whose points differ in temperature at (nearly) one pressure is a
temperature series (``optical.series: temperature``); its band gap (and PL
peak) against ``temperature_K`` is fitted with both forms:

* Varshni, Physica 34, 149 (1967), eq. 1:
  ``E(T) = E0 - alpha T^2 / (T + beta)``;
* Bose-Einstein (one effective phonon), Vina, Logothetidis & Cardona, Phys.
  Rev. B 30, 1979 (1984), eq. 4, written with E0 the gap at T = 0:
  ``E(T) = E0 - 2 a_B / (exp(theta/T) - 1)``.

The amplitudes alpha and a_B may be negative: lead-halide perovskites such
as CsPbI3 open their gap on heating (dE/dT > 0), which both forms describe
with the sign of the amplitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lmfit
import numpy as np

from ..core.lsq import covariance_scale
from .curves import energy_series


def varshni_eV(temperature_K, E0_eV, alpha_eV_per_K, beta_K):
    """Varshni (1967) eq. 1: E0 - alpha T^2 / (T + beta)."""
    t = np.asarray(temperature_K, dtype=float)
    return E0_eV - alpha_eV_per_K * t**2 / (t + beta_K)


def bose_einstein_eV(temperature_K, E0_eV, aB_eV, theta_K):
    """Vina, Logothetidis & Cardona (1984) eq. 4 with E0 = E_B - a_B: E0 - 2 a_B / (exp(theta/T) - 1)."""
    t = np.asarray(temperature_K, dtype=float)
    with np.errstate(over="ignore", divide="ignore"):
        return E0_eV - 2.0 * aB_eV / np.expm1(theta_K / np.maximum(t, 1e-9))


MODELS = {"varshni": (varshni_eV, ("E0_eV", "alpha_eV_per_K", "beta_K")),
          "bose_einstein": (bose_einstein_eV, ("E0_eV", "aB_eV", "theta_K"))}


@dataclass(frozen=True, eq=False)
class TemperatureFit:
    """One model fitted to E(T).

    Attributes
    ----------
    model : str
        ``"varshni"`` or ``"bose_einstein"``.
    values, errors : dict[str, float]
        Parameters (names of :data:`MODELS`) and standard errors.
    covariance : ndarray
        Of the parameters, in that order (scaled as ``error_scale``).
    n_points : int
    temperature_min_K, temperature_max_K : float
    reduced_chi2 : float
        NaN without point errors.
    error_scale : float
        sqrt of :func:`dacpipe.core.lsq.covariance_scale` (the Birge ratio when above 1).
    dEdT_eV_per_K : float
        The slope at the highest temperature fitted (room temperature for a cooling series).
    """

    model: str
    values: dict
    errors: dict
    covariance: np.ndarray
    n_points: int
    temperature_min_K: float
    temperature_max_K: float
    reduced_chi2: float
    error_scale: float
    dEdT_eV_per_K: float

    def energy_eV(self, temperature_K):
        """The fitted E at ``temperature_K``."""
        return MODELS[self.model][0](temperature_K, *self.values.values())


def fit_energy_vs_temperature(temperature_K, energy_eV, energy_err_eV=None, *, model: str = "varshni"
                              ) -> TemperatureFit:
    """Weighted least squares of E(T) with the ``model``'s form (module docstring).

    An :class:`lmfit.Model` (Levenberg-Marquardt), started from a straight
    line's slope: beta and theta at 200 K (a typical Debye-like scale),
    alpha and a_B from the slope at the top of the range. beta, theta > 0.
    Needs 4 points (3 parameters and one degree of freedom).

    Raises
    ------
    InputError
        Fewer than 4 usable points, or all at one temperature.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {tuple(MODELS)}, got {model!r}")
    t, E, s, _ = energy_series(temperature_K, energy_eV, energy_err_eV, against="temperature", unit="K",
                               minimum=4, fit="an E(T) fit", positive=True)
    weighted = bool(np.all(np.isfinite(s) & (s > 0)))
    func, names = MODELS[model]
    slope = np.polyfit(t, E, 1)[0]
    scale_K = 200.0
    t_top = float(t.max())
    lm = lmfit.Model(func, independent_vars=["temperature_K"])
    if model == "varshni":
        # dE/dT at T: -alpha T (T + 2 beta) / (T + beta)^2
        alpha = -slope * (t_top + scale_K) ** 2 / (t_top * (t_top + 2 * scale_K))
        params = lm.make_params(E0_eV=float(E[np.argmin(t)]), alpha_eV_per_K=alpha, beta_K=scale_K)
        params["beta_K"].min = 1e-3
    else:
        # dE/dT -> -2 a_B / theta at T >> theta
        params = lm.make_params(E0_eV=float(E[np.argmin(t)]), aB_eV=-slope * scale_K / 2, theta_K=scale_K)
        params["theta_K"].min = 1e-3
    result = lm.fit(E, params, temperature_K=t, weights=1.0 / s if weighted else None, scale_covar=False)
    k = len(names)
    dof = t.size - k
    chi2 = float(np.sum(result.residual**2) / dof)
    scale = covariance_scale(chi2, weighted)
    cov = (np.asarray(result.covar, dtype=float) * scale if result.covar is not None
           else np.full((k, k), np.nan))
    values = {name: float(result.params[name].value) for name in names}
    errors = {name: float(math.sqrt(cov[i, i])) if cov[i, i] >= 0 else math.nan for i, name in enumerate(names)}
    h = 0.5
    dEdT = float((func(t_top + h, *values.values()) - func(t_top - h, *values.values())) / (2 * h))
    return TemperatureFit(model=model, values=values, errors=errors, covariance=cov, n_points=int(t.size),
                          temperature_min_K=float(t.min()), temperature_max_K=t_top,
                          reduced_chi2=chi2 if weighted else math.nan, error_scale=float(math.sqrt(scale)),
                          dEdT_eV_per_K=dEdT)
