"""The volume deformation potential of a band gap, a_V = dEg/dlnV, per phase from its EOS.

dEg/dlnV = (dEg/dP) (dP/dlnV) = -K(P) dEg/dP, with dEg/dP = alpha + 2 beta P
from the E(P) fit (:mod:`dacpipe.optical.pressure_fit`) and K(P) the bulk
modulus of the same phase's EOS at that pressure (Wei & Zunger, Phys. Rev.
B 60, 5404 (1999), on absolute deformation potentials of semiconductors).
"""

from __future__ import annotations

import math

import numpy as np

from ..eos.models import EosParams, bulk_modulus_GPa, volume_A3
from .pressure_fit import PressureFit


def bulk_modulus_at_pressure(params: EosParams, covariance, parameter_names, pressure_GPa: float
                             ) -> tuple[float, float]:
    """K(P) of an EOS fit and its standard error: central differences of K(V(P))
    in each free parameter (steps 1e-6 relative), propagated through the
    fit's covariance (first order)."""
    names = list(parameter_names)

    def K(p: EosParams) -> float:
        return float(bulk_modulus_GPa(p, volume_A3(p, float(pressure_GPa))))

    values = {n: getattr(params, n) for n in ("V0_A3", "K0_GPa", "Kp", "K0pp_per_GPa")}
    g = []
    for name in names:
        h = 1e-6 * abs(values[name]) or 1e-9
        up = EosParams(params.model, **{**values, name: values[name] + h})
        down = EosParams(params.model, **{**values, name: values[name] - h})
        g.append((K(up) - K(down)) / (2 * h))
    g = np.array(g)
    var = float(g @ np.asarray(covariance, dtype=float) @ g) if names else 0.0
    return K(params), math.sqrt(var) if var >= 0 else math.nan


def deformation_potential_eV(fit: PressureFit, eos: tuple, pressure_GPa: float = 0.0) -> tuple[float, float]:
    """a_V = dEg/dlnV = -K(P) (alpha + 2 beta P) at ``pressure_GPa``, and its error.

    ``eos`` is ``(EosParams, covariance, parameter_names)`` of the phase's
    fit. The two fits are of different data (volumes, energies), so their
    errors add in quadrature: sigma^2 = (K sigma_slope)^2 + (slope sigma_K)^2,
    sigma_slope^2 = var alpha + 4 P cov(alpha, beta) + 4 P^2 var beta.
    """
    beta = 0.0 if fit.model == "linear" else fit.beta_eV_per_GPa2
    slope = fit.alpha_eV_per_GPa + 2.0 * beta * pressure_GPa
    C = fit.covariance
    var_slope = C[1, 1] + (0.0 if fit.model == "linear" else 4 * pressure_GPa * C[1, 2] + 4 * pressure_GPa**2 * C[2, 2])
    K, sK = bulk_modulus_at_pressure(*eos, pressure_GPa)
    return -K * slope, math.hypot(K * math.sqrt(max(var_slope, 0.0)), slope * sK)
