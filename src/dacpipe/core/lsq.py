"""Least-squares helpers, and the one rule dacpipe uses to scale parameter errors.

The rule (:func:`covariance_scale`)
-----------------------------------
The covariance of fitted parameters is ``(J^T W J)^-1`` (J the Jacobian of
the model, W the weights 1/sigma^2) multiplied by

* the reduced chi-square, when the errors of the data were *estimated*
  (no sigma given, unit weights): the scatter of the residuals is then the
  only measure of the noise;
* max(1, reduced chi-square) (the Birge ratio squared, Birge, Phys. Rev.
  40, 207 (1932)), when the errors were *given*: a reduced chi-square above
  1 says the given errors understate the scatter (a model that misses
  something, errors too small) and the scatter is the better measure; one
  below 1 over the few degrees of freedom of a small fit is weak evidence,
  and shrinking the errors on it would be optimistic.

Every fit in dacpipe that reports errors follows it (peaks, cells,
whole-pattern refinements, EOS, E(P), Tauc lines); the ruby fits, whose
noise grows with the signal, model that noise instead
(:mod:`dacpipe.pressure.fluorescence`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError

ESD_SCALINGS = ("inflate", "always", "never")


def covariance_scale(reduced_chi2: float, sigma_given: bool, rule: str = "inflate",
                     serial_correlation: float = 1.0) -> float:
    """The factor on ``(J^T W J)^-1`` (see the module docstring).

    ``rule`` may override the default for a caller that must reproduce
    another program: ``"always"`` multiplies by the reduced chi-square
    whatever it is, ``"never"`` keeps the given errors as they are. Without
    given errors the reduced chi-square is always applied.
    ``serial_correlation`` (>= 1, :func:`serial_correlation_factor`) multiplies
    it when the residuals of a densely sampled curve are correlated from
    point to point.
    """
    if rule not in ESD_SCALINGS:
        raise ValueError(f"unknown error scaling {rule!r}; expected one of {ESD_SCALINGS}")
    correlation = max(1.0, float(serial_correlation)) if math.isfinite(serial_correlation) else 1.0
    if not sigma_given or rule == "always":
        return float(reduced_chi2) * correlation
    if rule == "never" or not math.isfinite(reduced_chi2):
        return correlation
    return max(1.0, float(reduced_chi2)) * correlation


def weighted_mean(values, errors) -> tuple[float, float]:
    """The mean of ``values`` weighted by 1/``errors``^2, and its error: the propagated one,
    widened by the Birge ratio sqrt(chi^2 / (n - 1)) when the values scatter beyond their
    errors (:func:`covariance_scale` with given errors; Birge, Phys. Rev. 40, 207 (1932))."""
    x = np.asarray(values, dtype=float)
    w = 1.0 / np.asarray(errors, dtype=float) ** 2
    mean = float(np.sum(w * x) / np.sum(w))
    err = 1.0 / math.sqrt(float(np.sum(w)))
    if x.size > 1:
        err *= math.sqrt(covariance_scale(float(np.sum(w * (x - mean) ** 2)) / (x.size - 1), sigma_given=True))
    return mean, err


def serial_correlation_factor(weighted_residual: np.ndarray, max_lag: int = 200) -> float:
    """How much point-to-point correlation of the residuals inflates parameter variances.

    The residuals of a profile fit are not independent when the model misses
    something that spans many points (a line shape slightly off, a background
    bump): each point then says less than chi^2 counts it for, and the errors
    are too small (Berar & Lelann, J. Appl. Cryst. 24, 1 (1991)). The factor
    is the integrated autocorrelation time of the residuals,
    tau = 1 + 2 sum_k rho_k, the sum stopped at the first lag whose rho is
    not positive (Geyer's initial positive sequence, Stat. Sci. 7, 473 (1992));
    1 for white noise. It multiplies the covariance, and divides the
    evidence of a nested-model F-test.
    """
    r = np.asarray(weighted_residual, dtype=float)
    r = r - r.mean()
    variance = float(r @ r)
    if len(r) < 10 or variance <= 0:
        return 1.0
    tau = 1.0
    for lag in range(1, min(max_lag, len(r) // 4)):
        rho = float(r[:-lag] @ r[lag:]) / variance
        if rho <= 0:
            break
        tau += 2.0 * rho
    return tau


def covariance(weighted_jacobian: np.ndarray, rcond: float = 1e-12) -> np.ndarray | None:
    """``(J^T J)^-1`` of a Jacobian already divided by the data errors, by SVD.

    None when J is rank-deficient (a singular value below ``rcond`` times
    the largest): some parameter is not determined by the data.
    """
    try:
        _, sv, vt = np.linalg.svd(weighted_jacobian, full_matrices=False)
    except np.linalg.LinAlgError:
        return None
    if sv.size == 0 or not sv[-1] > rcond * sv[0]:
        return None
    return (vt.T / sv**2) @ vt


def levenberg_marquardt(fun, jac, p0, failure: str) -> np.ndarray:
    """MINPACK's Levenberg-Marquardt with an analytic Jacobian.

    ``leastsq`` rather than ``least_squares(method="lm")``: the same MINPACK
    code with half the Python overhead, which is most of the time of a fit
    as small as a ruby doublet. Parameters are scaled by the Jacobian's
    column norms.

    Raises
    ------
    InputError
        With the text ``failure`` when MINPACK gives up or returns a
        non-finite solution.
    """
    # Imported here: the covariance helpers above are all that the cells, the
    # figures and the store's readers need of this module, without scipy's
    # optimizers (0.16 s at every job's start).
    from scipy.optimize import leastsq

    try:
        # A wild trial step may overflow; LM then steps back, so stay quiet.
        with np.errstate(all="ignore"):
            p, _, _, _, status = leastsq(fun, p0, Dfun=jac, full_output=True)
    except (ValueError, ZeroDivisionError, OverflowError, np.linalg.LinAlgError):
        raise InputError(failure) from None
    if status not in (1, 2, 3, 4) or not np.all(np.isfinite(p)):
        raise InputError(failure)
    return p


@dataclass(frozen=True)
class StraightLine:
    """A straight line ``y = intercept + slope * x`` fitted by least squares.

    Attributes
    ----------
    intercept, slope : float
    covariance : ndarray
        2x2 covariance of (intercept, slope), scaled by :func:`covariance_scale`.
    window : tuple of float
        First and last x of the points fitted.
    n_points : int
    r_squared : float
        Coefficient of determination (unweighted).
    reduced_chi2 : float
        Weighted sum of squared residuals per degree of freedom; NaN with none.
    """

    intercept: float
    slope: float
    covariance: np.ndarray
    window: tuple[float, float]
    n_points: int
    r_squared: float
    reduced_chi2: float = math.nan

    def at(self, x):
        return self.intercept + self.slope * np.asarray(x, dtype=float)


def fit_straight_line(x, y, sigma=None, *, rule: str = "inflate") -> StraightLine:
    """Weighted least-squares straight line, in closed form, x centred for conditioning.

    Parameters
    ----------
    x, y : array_like
    sigma : array_like, optional
        Standard errors of ``y``; without them the scatter sets the errors.
    rule : str
        Error scaling, see :func:`covariance_scale`.

    Raises
    ------
    ValueError
        Fewer than 3 points (without sigma: a line with an error needs a
        degree of freedom) or 2 (with sigma), or no spread in x.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = x.size
    given = sigma is not None
    if n < (2 if given else 3):
        raise ValueError(f"a line with an error needs at least {2 if given else 3} points")
    w = np.ones(n) if not given else 1.0 / np.broadcast_to(np.asarray(sigma, dtype=float), (n,)) ** 2
    center = float(np.sum(w * x) / np.sum(w))
    u = x - center
    sxx = float(np.sum(w * u * u))
    if not sxx > 0:
        raise ValueError("a line needs at least two distinct x")
    mean = float(np.sum(w * y) / np.sum(w))
    slope = float(np.sum(w * u * (y - mean)) / sxx)
    residual = y - (mean + slope * u)
    dof = n - 2
    chi2 = float(np.sum(w * residual**2) / dof) if dof > 0 else math.nan
    scale = covariance_scale(chi2, given, rule) if dof > 0 else 1.0
    var_slope = scale / sxx
    var_mean = scale / float(np.sum(w))
    intercept = mean - slope * center
    cov = np.array([[var_mean + center**2 * var_slope, -center * var_slope],
                    [-center * var_slope, var_slope]])
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum((y - (intercept + slope * x)) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    return StraightLine(intercept, slope, cov, (float(x[0]), float(x[-1])), n, float(r2),
                        chi2 if given else math.nan)


# --------------------------------------------------------------------------
# Systematic errors: a shift common to every point, not scatter
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SystematicErrors:
    """What errors common to every point do to a fit's parameters.

    Attributes
    ----------
    errors : dict[str, float]
        Per parameter, the quadrature sum over the sources of its shift.
    by_source : dict[str, dict[str, float]]
        Source name -> parameter -> |shift| for a 1-sigma shift of that
        source (empty for a source unknown at every point, e.g. a pressure
        scale that publishes no coefficient errors; left out of ``errors``).
    """

    errors: dict[str, float]
    by_source: dict[str, dict[str, float]]


def propagate_common_shifts(x, shifts: dict, refit) -> SystematicErrors:
    """The parameters' systematic errors from errors that move every point of ``x`` together.

    A pressure scale's coefficient error (or an error of the ambient line
    position, or of the thermometer) moves every pressure of a run in the
    same direction: one error, fully correlated between points, which a fit
    weighting it as independent scatter would both mis-weight and average
    down (Angel, Rev. Mineral. Geochem. 41, 35 (2000), on pressure-scale
    errors in EOS fits). The fit is weighted by the random errors only, and
    each source k, with its 1-sigma shift s_ik of point i, is carried to the
    parameters by refitting with x_i + s_ik and x_i - s_ik:

        sigma_sys(p) = sqrt( sum_k [ (p(x + s_k) - p(x - s_k)) / 2 ]^2 ),

    the sources independent of each other (GUM, JCGM 100:2008, 5.2).

    Parameters
    ----------
    x : array_like
        The points' values the shifts move (pressures).
    shifts : dict[str, array_like]
        Source -> 1-sigma shift of each point (same direction for every
        point); NaN at every point: unknown; NaN at some: 0 there.
    refit : callable
        ``refit(x_shifted) -> dict`` of parameter name -> value: the same
        fit as the one whose parameters are reported.
    """
    x = np.asarray(x, dtype=float).ravel()
    by_source: dict[str, dict[str, float]] = {}
    total: dict[str, float] = {}
    for source, shift in shifts.items():
        s = np.asarray(shift, dtype=float).ravel()
        if not np.any(np.isfinite(s)):
            by_source[source] = {}
            continue
        s = np.where(np.isfinite(s), s, 0.0)
        up, down = refit(x + s), refit(x - s)
        by_source[source] = {name: abs(float(up[name]) - float(down[name])) / 2.0 for name in up}
        for name, value in by_source[source].items():
            total[name] = math.hypot(total.get(name, 0.0), value)
    return SystematicErrors(errors=total, by_source=by_source)
