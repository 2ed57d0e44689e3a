"""Isothermal equations of state: P(V), V(P), K(V), and fits of P-V data.

The models are those of EosFit7 (Angel, Gonzalez-Platas & Alvaro 2014,
Z. Kristallogr. 229, 405), with the parameter conventions of Angel (2000,
Rev. Mineral. Geochem. 41, 35):

============  ===========================================================
``bm2``       Birch-Murnaghan, 2nd order (K' = 4 implied)
``bm3``       Birch-Murnaghan, 3rd order (K'' implied)
``bm4``       Birch-Murnaghan, 4th order (K'' refined or given)
``vinet``     Vinet et al. (1987), J. Geophys. Res. 92, 9319
``murnaghan`` Murnaghan (1944), Proc. Natl. Acad. Sci. 30, 244
============  ===========================================================

One class per family (:class:`BirchMurnaghan`, :class:`Vinet`,
:class:`Murnaghan`) computes P(V) and K(V); :data:`EOS_CLASSES` names them,
and :class:`EosParams` carries a model name and its parameters. Units
throughout: volumes in A^3 (any volume unit works, V/V0 is all that
matters), pressures and moduli in GPa, K'' in 1/GPa.

Fits of P-V data are :mod:`dacpipe.eos.fit`; the F-f check is :mod:`dacpipe.eos.ff`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["MODELS", "EOS_CLASSES", "EosParams", "pressure_GPa", "volume_A3", "bulk_modulus_GPa",
           "pressure_derivatives", "implied_K0pp_per_GPa", "eulerian_strain"]

MODELS = ("bm2", "bm3", "bm4", "vinet", "murnaghan")

# Names of the parameters as they appear in EosFit.errors, EosFit.fixed and
# the ``fix`` argument of fit_eos: the field names of EosParams.
PARAMETER_NAMES = ("V0_A3", "K0_GPa", "Kp", "K0pp_per_GPa")

_EPS = np.finfo(float).eps


# ---------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EosParams:
    """The parameters of one isothermal EOS.

    Attributes
    ----------
    model : str
        One of :data:`MODELS`.
    V0_A3 : float
        Volume at zero pressure (A^3, per cell or per formula unit: the
        caller's choice, used consistently).
    K0_GPa : float
        Isothermal bulk modulus at zero pressure.
    Kp : float
        K' = dK/dP at zero pressure. ``bm2`` implies 4 and refuses any other
        value, so that a mistyped model never silently ignores a K'.
    K0pp_per_GPa : float or None
        K'' = d2K/dP2 at zero pressure, used by ``bm4`` only. None for
        ``bm4`` means the value implied by the 3rd-order truncation
        (:func:`implied_K0pp_per_GPa`), which makes ``bm4`` identical to
        ``bm3``. Other models imply their own K'' and refuse a value here.
    """

    model: str
    V0_A3: float
    K0_GPa: float
    Kp: float = 4.0
    K0pp_per_GPa: float | None = None

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown EOS model {self.model!r}; expected one of {', '.join(MODELS)}")
        if not (np.isfinite(self.V0_A3) and self.V0_A3 > 0):
            raise ValueError(f"V0_A3 must be a positive number, got {self.V0_A3!r}")
        if not (np.isfinite(self.K0_GPa) and self.K0_GPa > 0):
            raise ValueError(f"K0_GPa must be a positive number, got {self.K0_GPa!r}")
        if not np.isfinite(self.Kp):
            raise ValueError(f"Kp must be finite, got {self.Kp!r}")
        if self.model == "bm2" and self.Kp != 4.0:
            raise ValueError(f"bm2 implies K' = 4, got Kp = {self.Kp}; use model 'bm3' to set K'")
        if self.K0pp_per_GPa is not None and self.model != "bm4":
            raise ValueError(f"K0pp_per_GPa is only a parameter of bm4, not of {self.model}")

    @property
    def K0pp_effective_per_GPa(self) -> float:
        """K'' used by the model: the given bm4 value, else the implied one (BM only)."""
        if self.model == "bm4" and self.K0pp_per_GPa is not None:
            return float(self.K0pp_per_GPa)
        if self.model in ("bm2", "bm3", "bm4"):
            return implied_K0pp_per_GPa(self.K0_GPa, 4.0 if self.model == "bm2" else self.Kp)
        return math.nan


def implied_K0pp_per_GPa(K0_GPa: float, Kp: float) -> float:
    """K'' implied by truncating the Birch-Murnaghan EOS at 3rd order.

    K'' = -[(3 - K')(4 - K') + 35/9] / K0 (Anderson 1995, *Equations of State
    of Solids for Geophysics and Ceramic Science*, Oxford UP; Holzapfel's
    form as quoted by Angel 2000). With it the f^2 term of the 4th-order EOS
    vanishes, so bm4 with this K'' is bm3.
    """
    return -((3.0 - Kp) * (4.0 - Kp) + 35.0 / 9.0) / K0_GPa


def eulerian_strain(volume_A3, V0_A3: float):
    """Eulerian finite strain f = [(V0/V)^(2/3) - 1] / 2 (Birch 1947)."""
    return 0.5 * ((V0_A3 / np.asarray(volume_A3, dtype=float)) ** (2.0 / 3.0) - 1.0)


def _as_volume_array(volume_A3) -> np.ndarray:
    v = np.asarray(volume_A3, dtype=float)
    bad = np.isfinite(v) & (v <= 0)
    if np.any(bad):
        raise ValueError(f"volumes must be positive, got {v[bad].ravel()[:3].tolist()}")
    return v


def _bm_coefficients(p: EosParams) -> tuple[float, float]:
    """a, b of P = 3 K0 f (1+2f)^(5/2) (1 + a f + b f^2) (Angel 2000)."""
    Kp = 4.0 if p.model == "bm2" else p.Kp
    a = 1.5 * (Kp - 4.0)
    if p.model == "bm4" and p.K0pp_per_GPa is not None:
        b = 1.5 * (p.K0_GPa * p.K0pp_per_GPa + (Kp - 4.0) * (Kp - 3.0) + 35.0 / 9.0)
    else:
        # bm2, bm3 and bm4 with the implied K'': the bracket is then exactly zero.
        b = 0.0
    return a, b


class BirchMurnaghan:
    """Birch-Murnaghan (Birch 1947, Phys. Rev. 71, 809), f = [(V0/V)^(2/3) - 1]/2:
    P = 3 K0 f (1+2f)^(5/2) {1 + 3/2 (K'-4) f + 3/2 [K0 K'' + (K'-4)(K'-3) + 35/9] f^2}.

    The order is the ``model`` of the parameters: ``bm2`` sets K' = 4,
    ``bm3`` uses the implied K'' (the f^2 term vanishes), ``bm4`` uses
    ``K0pp_per_GPa`` (implied when None).
    """

    @staticmethod
    def pressure(p: EosParams, v: np.ndarray) -> np.ndarray:
        a, b = _bm_coefficients(p)
        f = eulerian_strain(v, p.V0_A3)
        return 3.0 * p.K0_GPa * f * (1.0 + 2.0 * f) ** 2.5 * (1.0 + a * f + b * f * f)

    @staticmethod
    def bulk_modulus(p: EosParams, v: np.ndarray) -> np.ndarray:
        # K = -V dP/dV = (1+2f)/3 dP/df, since df/dV = -(1+2f)/(3V); with
        # g = 1 + a f + b f^2 this gives K0 (1+2f)^(5/2) [(1+7f) g + f(1+2f) g'].
        a, b = _bm_coefficients(p)
        f = eulerian_strain(v, p.V0_A3)
        g = 1.0 + a * f + b * f * f
        dg = a + 2.0 * b * f
        return p.K0_GPa * (1.0 + 2.0 * f) ** 2.5 * ((1.0 + 7.0 * f) * g + f * (1.0 + 2.0 * f) * dg)

    @staticmethod
    def parameter_derivatives(p: EosParams, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # With S = 3 f (1+2f)^(5/2), P = K0 S g and g = 1 + a f + b f^2:
        # a = 3/2 (K'-4) gives dg/dK' = 3/2 f; b (bm4 with a given K'' only)
        # = 3/2 [K0 K'' + (K'-4)(K'-3) + 35/9] adds 3/2 (2K'-7) f^2 to
        # dg/dK', 3/2 K'' f^2 to dg/dK0 and 3/2 K0 f^2 to dg/dK''.
        a, b = _bm_coefficients(p)
        f = eulerian_strain(v, p.V0_A3)
        S = 3.0 * f * (1.0 + 2.0 * f) ** 2.5
        g = 1.0 + a * f + b * f * f
        if p.model == "bm4" and p.K0pp_per_GPa is not None:
            f2 = 1.5 * f * f
            return (S * (g + p.K0_GPa * p.K0pp_per_GPa * f2), p.K0_GPa * S * (1.5 * f + (2.0 * p.Kp - 7.0) * f2),
                    p.K0_GPa * S * p.K0_GPa * f2)
        return S * g, p.K0_GPa * S * 1.5 * f, np.zeros_like(f)


class Vinet:
    """Vinet et al. (1987), J. Geophys. Res. 92, 9319, x = (V/V0)^(1/3):
    P = 3 K0 (1-x) x^-2 exp[3/2 (K'-1)(1-x)]."""

    @staticmethod
    def pressure(p: EosParams, v: np.ndarray) -> np.ndarray:
        x = (v / p.V0_A3) ** (1.0 / 3.0)
        eta = 1.5 * (p.Kp - 1.0)
        return 3.0 * p.K0_GPa * (1.0 - x) / (x * x) * np.exp(eta * (1.0 - x))

    @staticmethod
    def bulk_modulus(p: EosParams, v: np.ndarray) -> np.ndarray:
        # K = K0 x^-2 [2 - x + eta x (1 - x)] exp[eta (1 - x)] (Vinet et al. 1987).
        x = (v / p.V0_A3) ** (1.0 / 3.0)
        eta = 1.5 * (p.Kp - 1.0)
        return p.K0_GPa / (x * x) * (2.0 - x + eta * x * (1.0 - x)) * np.exp(eta * (1.0 - x))

    @staticmethod
    def parameter_derivatives(p: EosParams, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # P is linear in K0; K' enters only through exp[3/2 (K'-1)(1-x)].
        x = (v / p.V0_A3) ** (1.0 / 3.0)
        P = Vinet.pressure(p, v)
        return P / p.K0_GPa, P * 1.5 * (1.0 - x), np.zeros_like(x)


class Murnaghan:
    """Murnaghan (1944), Proc. Natl. Acad. Sci. 30, 244: P = K0/K' [(V0/V)^K' - 1],
    K = K0 (V0/V)^K' = K0 + K' P."""

    @staticmethod
    def pressure(p: EosParams, v: np.ndarray) -> np.ndarray:
        # K' -> 0 is the limit K0 ln(V0/V).
        if abs(p.Kp) < 1e-12:
            return p.K0_GPa * np.log(p.V0_A3 / v)
        return p.K0_GPa / p.Kp * ((p.V0_A3 / v) ** p.Kp - 1.0)

    @staticmethod
    def bulk_modulus(p: EosParams, v: np.ndarray) -> np.ndarray:
        return p.K0_GPa * (p.V0_A3 / v) ** p.Kp

    @staticmethod
    def parameter_derivatives(p: EosParams, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # With L = ln(V0/V), P = K0 (e^(K'L) - 1)/K' and
        # dP/dK' = K0 [L e^(K'L)/K' - (e^(K'L) - 1)/K'^2]. That difference
        # cancels as K'L -> 0, where its series K0 L^2 [1/2 + K'L/3 + (K'L)^2/8]
        # is used instead (next term (K'L)^3/30: below 1e-10 relative for |K'L| < 1e-3).
        L = np.log(p.V0_A3 / v)
        kl = p.Kp * L
        small = np.abs(kl) < 1e-3
        with np.errstate(divide="ignore", invalid="ignore"):
            exact = p.K0_GPa * (L * np.exp(kl) / p.Kp - np.expm1(kl) / p.Kp**2)
        series = p.K0_GPa * L * L * (0.5 + kl / 3.0 + kl * kl / 8.0)
        P = Murnaghan.pressure(p, v)
        return P / p.K0_GPa, np.where(small, series, exact), np.zeros_like(L)


# Model name (EosParams.model, the config's eos.model) -> the class that computes it.
EOS_CLASSES = {"bm2": BirchMurnaghan, "bm3": BirchMurnaghan, "bm4": BirchMurnaghan, "vinet": Vinet,
               "murnaghan": Murnaghan}


def _pressure(p: EosParams, v: np.ndarray) -> np.ndarray:
    return EOS_CLASSES[p.model].pressure(p, v)


def _bulk_modulus(p: EosParams, v: np.ndarray) -> np.ndarray:
    return EOS_CLASSES[p.model].bulk_modulus(p, v)


def pressure_derivatives(params: EosParams, volume_A3) -> dict[str, np.ndarray]:
    """Partial derivatives of P(V) with respect to the EOS parameters, at fixed V.

    The Jacobian of a fit in pressure (:func:`dacpipe.eos.fit.fit_eos`),
    differentiated by hand from the formulas of :func:`pressure_GPa`
    (Angel 2000, Rev. Mineral. Geochem. 41, 35; Vinet et al. 1987;
    Murnaghan 1944). Every model depends on V0 only through V/V0, so
    dP/dV0 = -(V/V0) dP/dV = K(V)/V0 for all of them.

    Parameters
    ----------
    params : EosParams
    volume_A3 : array_like
        Volumes, > 0.

    Returns
    -------
    dict of str to ndarray
        Keyed by :data:`PARAMETER_NAMES`: ``V0_A3`` (GPa/A^3), ``K0_GPa``
        (dimensionless), ``Kp`` (GPa) and ``K0pp_per_GPa`` (GPa^2; zero
        unless the model is bm4 with a given K''). bm3, and bm4 without a
        K'', have no f^2 term whatever K' and K0 are (the implied K'' follows
        them), so their derivatives are those of the 3rd-order form.
    """
    v = _as_volume_array(volume_A3)
    with np.errstate(invalid="ignore"):
        d_K0, d_Kp, d_K0pp = EOS_CLASSES[params.model].parameter_derivatives(params, v)
        d_V0 = _bulk_modulus(params, v) / params.V0_A3
    return {"V0_A3": d_V0, "K0_GPa": d_K0, "Kp": d_Kp, "K0pp_per_GPa": d_K0pp}


def _scalar_or_array(result: np.ndarray, like):
    return float(result) if np.ndim(like) == 0 else result


def pressure_GPa(params: EosParams, volume_A3):
    """Pressure at ``volume_A3`` (scalar or array).

    Formulas as in Angel (2000, Rev. Mineral. Geochem. 41, 35) and EosFit7:

    * Birch-Murnaghan (Birch 1947, Phys. Rev. 71, 809), with
      f = [(V0/V)^(2/3) - 1]/2:
      P = 3 K0 f (1+2f)^(5/2) {1 + 3/2 (K'-4) f
      + 3/2 [K0 K'' + (K'-4)(K'-3) + 35/9] f^2};
      ``bm2`` sets K' = 4, ``bm3`` uses the implied K'' (the f^2 term
      vanishes), ``bm4`` uses ``K0pp_per_GPa`` (implied when None).
    * Vinet (Vinet et al. 1987, J. Geophys. Res. 92, 9319), x = (V/V0)^(1/3):
      P = 3 K0 (1-x) x^-2 exp[3/2 (K'-1)(1-x)].
    * Murnaghan (1944, Proc. Natl. Acad. Sci. 30, 244):
      P = K0/K' [(V0/V)^K' - 1].

    Parameters
    ----------
    params : EosParams
    volume_A3 : float or array_like
        Volumes, > 0 (NaN propagates).

    Returns
    -------
    float or ndarray
        P in GPa, a float for a scalar input.

    Raises
    ------
    ValueError
        For a zero or negative volume.
    """
    v = _as_volume_array(volume_A3)
    with np.errstate(invalid="ignore"):
        return _scalar_or_array(_pressure(params, v), volume_A3)


def bulk_modulus_GPa(params: EosParams, volume_A3):
    """Isothermal bulk modulus K = -V dP/dV at ``volume_A3``.

    Analytic derivatives of the formulas in :func:`pressure_GPa`
    (Angel 2000; Vinet et al. 1987; for Murnaghan K = K0 (V0/V)^K').
    """
    v = _as_volume_array(volume_A3)
    with np.errstate(invalid="ignore"):
        return _scalar_or_array(_bulk_modulus(params, v), volume_A3)


# ---------------------------------------------------------------------------
# Inversion V(P)
# ---------------------------------------------------------------------------

# Geometric steps used to walk out from V0 to a bracket. 0.8 per step in
# compression reaches V0/1000 (far beyond any EOS's validity) in 31 steps;
# 1.1 per step in expansion reaches 100 V0 in 48 steps.
_COMPRESS_STEP, _COMPRESS_STEPS = 0.8, 40
_EXPAND_STEP, _EXPAND_STEPS = 1.1, 60


def _volume_scalar(p: EosParams, target: float) -> float:
    if not np.isfinite(target):
        return math.nan
    V0 = p.V0_A3

    def excess(v: float) -> float:
        return float(_pressure(p, np.float64(v))) - target

    if target == 0.0:
        return V0
    # P(V) decreases monotonically wherever K > 0. Step away from V0 (where
    # P = 0) until P passes the target, checking that K stays positive: a
    # negative K means we walked past a pressure maximum (BM3 with K' < 4
    # under strong compression) or past the spinodal minimum in expansion,
    # and the target lies beyond what the EOS can reach on its stable branch.
    near, step, steps = V0, (_COMPRESS_STEP if target > 0 else _EXPAND_STEP), \
        (_COMPRESS_STEPS if target > 0 else _EXPAND_STEPS)
    for _ in range(steps):
        far = near * step
        with np.errstate(invalid="ignore", over="ignore"):
            k_far = float(_bulk_modulus(p, np.float64(far)))
            e_far = excess(far)
        if not (np.isfinite(k_far) and k_far > 0 and np.isfinite(e_far)):
            break
        if (e_far >= 0) if target > 0 else (e_far <= 0):
            lo, hi = (far, near) if target > 0 else (near, far)
            # scipy.optimize here, not at import: the figures job and the
            # library's cells need this module, not scipy's optimizers (0.2 s).
            from scipy.optimize import brentq

            # rtol at 4 eps: brentq then stops within a few ulp of the root,
            # so P(V(P)) returns P to ~K*1e-15 GPa (1e-12 GPa at 1 TPa).
            return brentq(excess, lo, hi, xtol=1e-300, rtol=4 * _EPS, maxiter=500)
        near = far
    kind = "maximum pressure" if target > 0 else "minimum (spinodal) pressure"
    raise ValueError(
        f"P = {target} GPa is beyond the {kind} that the {p.model} EOS "
        f"(V0 = {V0}, K0 = {p.K0_GPa}, K' = {p.Kp}) reaches on its stable branch (K > 0)")


def volume_A3(params: EosParams, pressure_GPa):
    """Volume at ``pressure_GPa``: the exact inverse of :func:`pressure_GPa`.

    Each pressure is solved by Brent's method (``scipy.optimize.brentq``) on
    a bracket found by walking geometrically out from V0 (where P = 0) until
    P(V) passes the target while K(V) stays positive, so that the bracket
    holds exactly one root on the mechanically stable branch. The root is
    found to a few ulp in V, so P(V(P)) returns P to ~1e-12 GPa. (A simplex
    minimisation, as in Dioptas, stops ~0.006 GPa off at 1 GPa for gold.)

    Parameters
    ----------
    params : EosParams
    pressure_GPa : float or array_like
        Pressures (NaN gives NaN).

    Returns
    -------
    float or ndarray
        V in the units of ``params.V0_A3``.

    Raises
    ------
    ValueError
        If a pressure lies beyond the EOS's maximum (compression) or spinodal
        minimum (tension) on the branch where K > 0.
    """
    p_arr = np.asarray(pressure_GPa, dtype=float)
    out = np.array([_volume_scalar(params, float(t)) for t in p_arr.ravel()]).reshape(p_arr.shape)
    return _scalar_or_array(out, pressure_GPa)



# ---------------------------------------------------------------------------
# Thermal pressure: Mie-Grueneisen-Debye
# ---------------------------------------------------------------------------

K_B_J_PER_K = 1.380649e-23  # Boltzmann constant (SI, exact since 2019)


@dataclass(frozen=True)
class ThermalParams:
    """Mie-Grueneisen-Debye parameters of a material (one row of Fei et al. 2007, Table 1).

    Attributes
    ----------
    theta0_K : float
        Debye temperature at V0.
    gamma0 : float
        Grueneisen parameter at V0.
    q : float
        Its volume exponent: gamma = gamma0 (V/V0)^q.
    atoms_per_cell : int
        Atoms in the cell whose volume the EOS uses (Au, Pt, Ne fcc: 4).
    reference_K : float
        Temperature of the isotherm the EOS gives (Fei et al.: 300 K).
    reference : str
        The paper.
    """

    theta0_K: float
    gamma0: float
    q: float
    atoms_per_cell: int
    reference_K: float = 300.0
    reference: str = ""


def debye_function_3(x: float) -> float:
    """D3(x) = (3/x^3) integral_0^x t^3 / (e^t - 1) dt (scipy.integrate.quad); D3(0) = 1.

    The thermal energy of a Debye solid of N atoms is E = 3 N k T D3(theta/T)
    (e.g. Anderson, *Equations of State of Solids for Geophysics and Ceramic
    Science*, 1995, ch. 5).
    """
    from scipy.integrate import quad

    if x <= 0.0:
        return 1.0
    integral, _ = quad(lambda t: t**3 / math.expm1(t) if t > 0 else 0.0, 0.0, x)
    return 3.0 * integral / x**3


def thermal_pressure_GPa(thermal: ThermalParams, eos: EosParams, volume_A3: float, temperature_K: float) -> float:
    """Mie-Grueneisen-Debye thermal pressure P_th(V, T) = gamma(V) E_th(V, T) / V, in GPa.

    Fei, Ricolleau, Frank, Mysen, Zhang & Prakapenka, Proc. Natl. Acad. Sci.
    104, 9182 (2007), eqs. 2-4: gamma = gamma0 (V/V0)^q, theta = theta0
    exp[(gamma0 - gamma)/q], E_th = 9 N k T (T/theta)^3 int_0^{theta/T}
    x^3/(e^x - 1) dx (= 3 N k T D3(theta/T)), N the atoms in the volume V
    (A^3 per cell) and V0 that of ``eos``.
    """
    eta = volume_A3 / eos.V0_A3
    gamma = thermal.gamma0 * eta**thermal.q
    theta = thermal.theta0_K * math.exp((thermal.gamma0 - gamma) / thermal.q)
    if temperature_K <= 0.0:
        return 0.0
    energy_J = 3.0 * thermal.atoms_per_cell * K_B_J_PER_K * temperature_K * debye_function_3(theta / temperature_K)
    return gamma * energy_J / (volume_A3 * 1e-30) * 1e-9


def pressure_at_temperature_GPa(eos: EosParams, thermal: ThermalParams, volume_A3: float,
                                temperature_K: float) -> float:
    """P(V, T) = P_ref(V) + P_th(V, T) - P_th(V, T_ref) (Fei et al. 2007, eq. 1):
    the isotherm of ``eos`` at ``thermal.reference_K`` plus the thermal pressure
    gained from there to ``temperature_K`` at the same volume."""
    return (float(pressure_GPa(eos, volume_A3))
            + thermal_pressure_GPa(thermal, eos, volume_A3, temperature_K)
            - thermal_pressure_GPa(thermal, eos, volume_A3, thermal.reference_K))
