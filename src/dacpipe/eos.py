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

Units throughout: volumes in A^3 (any volume unit works, V/V0 is all that
matters), pressures and moduli in GPa, K'' in 1/GPa.

:func:`fit_eos` fits V(P) data with errors in both P and V by the
effective-variance method of EosFit7; :func:`f_F` gives the normalised
stress against Eulerian strain (F-f) plot that checks the order of a
Birch-Murnaghan EOS (Angel 2000).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq, least_squares

__all__ = [
    "MODELS", "EosParams", "EosFit", "FfResult",
    "pressure_GPa", "volume_A3", "bulk_modulus_GPa", "implied_K0pp_per_GPa",
    "fit_eos", "f_F", "eulerian_strain",
]

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


def _pressure(p: EosParams, v: np.ndarray) -> np.ndarray:
    if p.model in ("bm2", "bm3", "bm4"):
        a, b = _bm_coefficients(p)
        f = eulerian_strain(v, p.V0_A3)
        return 3.0 * p.K0_GPa * f * (1.0 + 2.0 * f) ** 2.5 * (1.0 + a * f + b * f * f)
    if p.model == "vinet":
        x = (v / p.V0_A3) ** (1.0 / 3.0)
        eta = 1.5 * (p.Kp - 1.0)
        return 3.0 * p.K0_GPa * (1.0 - x) / (x * x) * np.exp(eta * (1.0 - x))
    # Murnaghan: P = (K0/K') [(V0/V)^K' - 1]; K' -> 0 is the limit K0 ln(V0/V).
    if abs(p.Kp) < 1e-12:
        return p.K0_GPa * np.log(p.V0_A3 / v)
    return p.K0_GPa / p.Kp * ((p.V0_A3 / v) ** p.Kp - 1.0)


def _bulk_modulus(p: EosParams, v: np.ndarray) -> np.ndarray:
    if p.model in ("bm2", "bm3", "bm4"):
        # K = -V dP/dV = (1+2f)/3 dP/df, since df/dV = -(1+2f)/(3V); with
        # g = 1 + a f + b f^2 this gives K0 (1+2f)^(5/2) [(1+7f) g + f(1+2f) g'].
        a, b = _bm_coefficients(p)
        f = eulerian_strain(v, p.V0_A3)
        g = 1.0 + a * f + b * f * f
        dg = a + 2.0 * b * f
        return p.K0_GPa * (1.0 + 2.0 * f) ** 2.5 * ((1.0 + 7.0 * f) * g + f * (1.0 + 2.0 * f) * dg)
    if p.model == "vinet":
        # K = K0 x^-2 [2 - x + eta x (1 - x)] exp[eta (1 - x)] (Vinet et al. 1987).
        x = (v / p.V0_A3) ** (1.0 / 3.0)
        eta = 1.5 * (p.Kp - 1.0)
        return p.K0_GPa / (x * x) * (2.0 - x + eta * x * (1.0 - x)) * np.exp(eta * (1.0 - x))
    # Murnaghan: K = K0 + K' P = K0 (V0/V)^K'.
    return p.K0_GPa * (p.V0_A3 / v) ** p.Kp


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
# Fitting
# ---------------------------------------------------------------------------


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
    if esd_scaling not in ("inflate", "never", "always"):
        raise ValueError(f"esd_scaling must be 'inflate', 'never' or 'always', got {esd_scaling!r}")
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
    if not weighted or esd_scaling == "always" or (esd_scaling == "inflate" and chi2 > 1.0):
        scale2 = chi2
    else:
        scale2 = 1.0
    cov = cov * scale2
    errors = {nm: math.nan for nm in names}
    errors.update({nm: float(math.sqrt(cov[i, i])) if cov[i, i] >= 0 else math.nan
                   for i, nm in enumerate(free)})
    return EosFit(
        params=params, errors=errors, covariance=cov, parameter_names=free,
        reduced_chi2=chi2, n_points=n, pressure_range_GPa=(float(P.min()), float(P.max())),
        fixed=tuple(nm for nm in names if nm in fixed), weighted=weighted,
        esd_scale=float(math.sqrt(scale2)), iterations=iterations, residuals_GPa=resid)


# ---------------------------------------------------------------------------
# F-f plot
# ---------------------------------------------------------------------------


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
    if not weighted or esd_scaling == "always" or (esd_scaling == "inflate" and chi2 > 1.0):
        cov = cov * chi2
    return FfResult(f=f, F_GPa=F, sigma_f=sigma_f, sigma_F_GPa=sigma_F,
                    intercept_GPa=float(coef[0]), slope_GPa=float(coef[1]),
                    intercept_err=float(math.sqrt(cov[0, 0])), slope_err=float(math.sqrt(cov[1, 1])),
                    included=included, reduced_chi2=chi2)


# --------------------------------------------------------------------------
# The EOS stage: one fit per phase over the points where it was refined
# --------------------------------------------------------------------------


def eos_stage(point_ids, pressure_GPa, pressure_err_GPa, phase_volumes: dict[str, tuple], section: dict,
              warn=lambda message: None):
    """Fit each phase's volume per formula unit against pressure.

    Parameters
    ----------
    point_ids : sequence of str
    pressure_GPa, pressure_err_GPa : array [N]
        The points' pressures and uncertainties (the pressure stage).
    phase_volumes : dict
        Phase name -> (volume_fu_A3 [N], volume_fu_err_A3 [N]), NaN where the
        phase was not refined (the indexing stage).
    section : dict
        The run's ``eos`` config: ``model``, and ``phases: {name: {model,
        V0_fu_A3, Kp}}`` to choose another model for one phase or fix its V0
        or K' (each optional).

    Returns
    -------
    StageResult
        Group ``eos`` with one subgroup per phase fitted (``extra``):
        parameters with ``_err``, covariance, reduced chi^2, pressure range and
        the F-f points with their line. A phase with too few points is left
        out with a message.
    """
    from .errors import InputError
    from .store import StageResult

    P, sP = np.asarray(pressure_GPa, float), np.asarray(pressure_err_GPa, float)
    extra: dict[str, np.ndarray] = {}
    fitted = []
    for name, (V, sV) in phase_volumes.items():
        own = section.get("phases", {}).get(name, {})
        model = own.get("model", section["model"])
        V0_fixed, Kp_fixed = own.get("V0_fu_A3"), own.get("Kp")
        fix = ("V0_A3",) if V0_fixed is not None else ()
        use = np.isfinite(P) & np.isfinite(V) & np.isfinite(sV) & (sV > 0)
        n_free = len(_model_parameters(model)) - len(fix) - (Kp_fixed is not None)
        if use.sum() < n_free + 1:
            warn(f"eos {name}: {use.sum()} points with a pressure and a volume, a {model} fit needs {n_free + 1}")
            continue
        # A point without a pressure error still carries its volume error.
        sigma_P = np.where(np.isfinite(sP[use]) & (sP[use] > 0), sP[use], 1e-6)
        try:
            fit = fit_eos(P[use], V[use], sigma_P_GPa=sigma_P, sigma_V_A3=sV[use], model=model, V0_A3=V0_fixed,
                          fix=fix, Kp=Kp_fixed)
        except (ValueError, InputError) as err:
            warn(f"eos {name}: {model} fit failed: {err}")
            continue
        base = f"eos/{name}"
        extra[f"{base}/model"] = np.array(model, dtype=object)
        params = {"V0_fu_A3": fit.params.V0_A3, "K0_GPa": fit.params.K0_GPa, "Kp": fit.params.Kp}
        errors = {"V0_fu_A3": fit.errors.get("V0_A3", np.nan), "K0_GPa": fit.errors.get("K0_GPa", np.nan),
                  "Kp": fit.errors.get("Kp", np.nan)}
        if model == "bm4":
            params["K0pp_per_GPa"] = fit.params.K0pp_per_GPa
            errors["K0pp_per_GPa"] = fit.errors.get("K0pp_per_GPa", np.nan)
        err_names = {"V0_fu_A3": "V0_fu_err_A3", "K0_GPa": "K0_err_GPa", "Kp": "Kp_err",
                     "K0pp_per_GPa": "K0pp_err_per_GPa"}
        for key, value in params.items():
            extra[f"{base}/{key}"] = np.array(value, dtype=float)
            extra[f"{base}/{err_names[key]}"] = np.array(errors[key], dtype=float)
        extra[f"{base}/covariance"] = np.asarray(fit.covariance, dtype=float)
        extra[f"{base}/parameter_names"] = np.array(fit.parameter_names, dtype=object)
        extra[f"{base}/reduced_chi2"] = np.array(fit.reduced_chi2)
        extra[f"{base}/n_points"] = np.array(fit.n_points)
        extra[f"{base}/pressure_min_GPa"] = np.array(fit.pressure_range_GPa[0])
        extra[f"{base}/pressure_max_GPa"] = np.array(fit.pressure_range_GPa[1])
        extra[f"{base}/points"] = np.array([pid for pid, u in zip(point_ids, use) if u], dtype=object)
        ff = f_F(P[use], V[use], fit.params.V0_A3, sigma_P, sV[use])
        extra[f"{base}/ff/f"] = ff.f
        extra[f"{base}/ff/F_GPa"] = ff.F_GPa
        extra[f"{base}/ff/f_err"] = ff.sigma_f
        extra[f"{base}/ff/F_err_GPa"] = ff.sigma_F_GPa
        extra[f"{base}/ff/intercept_GPa"] = np.array(ff.intercept_GPa)
        extra[f"{base}/ff/slope_GPa"] = np.array(ff.slope_GPa)
        fitted.append(name)
    return StageResult(stage="eos", point_ids=list(point_ids), status=["ok"] * len(point_ids),
                       attrs={"phases_fitted": fitted, "model": section["model"]}, extra=extra)
