"""Parameter errors of a fit whose noise grows with the signal (read plus shot noise)."""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from ..core.noise import fast_median

def shot_noise_covariance(jac, resid, signal, prior_variance=0.0):
    """Parameter covariance, for noise whose variance grows with the signal.

    With uniform noise this is the usual ``(J^T J)^-1 * s^2`` (s^2 the
    residual variance). Shot noise is larger on a line than on the
    background, and the centre is learnt on the line flanks, so that formula
    would understate the error there. Instead the noise variance is modelled
    as ``alpha + beta * signal`` (read noise plus shot noise; ``signal`` is
    the line part of the fitted model), fitted to the squared residuals, and
    used in the sandwich ``(J^T J)^-1 J^T V J (J^T J)^-1``. Two numbers
    fitted to all residuals give a far steadier error than the squared
    residuals point by point would. Each squared residual is divided by
    ``1 - leverage`` first: the fit follows the noise of the few points of a
    narrow line, so their residuals understate it. Rows of ``jac`` beyond
    ``len(resid)`` belong to a soft constraint and count with
    ``prior_variance``.
    """
    singular = InputError("fit did not converge (singular covariance)")
    with np.errstate(all="ignore"):
        try:
            inv = np.linalg.inv(jac.T @ jac)
        except np.linalg.LinAlgError:
            raise singular from None
        n = len(resid)
        data = jac[:n]
        leverage = np.einsum("ij,jk,ik->i", data, inv, data)
        alpha, beta = variance_fit(resid * resid / np.clip(1.0 - leverage, 0.05, None), signal)
        meat = (data * (alpha + beta * signal)[:, None]).T @ data
        for row in jac[n:]:  # rows of a soft constraint, with the variance they were weighted for
            meat += prior_variance * np.outer(row, row)
        covariance = inv @ meat @ inv
    if not np.all(np.isfinite(covariance)):
        raise singular
    return covariance


def variance_fit(r2, signal):
    """(alpha, beta) >= 0 of ``alpha + beta * signal`` fitted to squared residuals ``r2``.

    Spikes not found yet must not inflate the noise of every point, so the
    start is robust: medians of ``r2`` where the signal is low (alpha) and
    high (beta); a least-squares refit then uses the points within 4 sigma.
    """
    to_mean = 1.0 / 0.4549  # median of chi-square with 1 degree of freedom
    top = signal.max()
    low, high = signal <= 0.1 * top, signal > 0.3 * top
    alpha = fast_median(r2[low]) * to_mean if low.any() else 0.0
    beta = 0.0
    if top > 0 and high.any():
        beta = max(0.0, fast_median((r2[high] * to_mean - alpha) / signal[high]))
    use = r2 <= 16.0 * (alpha + beta * signal)
    # Straight-line least squares in closed form (np.linalg.lstsq costs more
    # than the rest). The 4-sigma cut removes ~0.006 % of a normal sample.
    s, v = signal[use], r2[use]
    n, s_mean = len(s), s.mean() if len(s) else 0.0
    spread = float(np.sum((s - s_mean) ** 2)) if n > 2 else 0.0
    if spread > 0:
        b = float(np.sum((s - s_mean) * v)) / spread
        a = float(v.mean()) - b * s_mean
        if a >= 0 and b >= 0:
            alpha, beta = a, b
    return float(alpha), float(beta)
