"""Noise of a measured curve, estimated from the curve itself.

Every fit that is given no standard errors needs the noise, and every
"is this peak real" test compares a height with it. All of dacpipe's
estimates are one idea: differences of order k cancel a smooth signal (a
straight line exactly for k = 2), the variance of the k-th difference of
white noise of variance s^2 is C(2k, k) s^2 (2 s^2 for k = 1, 6 s^2 for
k = 2), and a median ignores the few large differences on the flanks of
lines and spikes (Rousseeuw & Croux, J. Am. Stat. Assoc. 88, 1273 (1993)
for the MAD as a scale estimate).

* :func:`difference_sigma`: one number for the whole curve;
* :func:`running_difference_sigma`: a value per point, from a running
  median (photon noise grows with the signal);
* :func:`block_difference_sigma`: a value per point, from medians over
  consecutive blocks (cheaper; used to find cosmic-ray spikes).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import median_filter
from scipy.special import comb

MAD_TO_SIGMA = 1.482602218505602
"""sigma / MAD of a normal distribution, 1 / Phi^-1(3/4)."""

MEAN_ABS_TO_SIGMA = math.sqrt(math.pi / 2.0)
"""sigma / mean |x - mean| of a normal distribution."""


def fast_median(a) -> float:
    """Median of a 1-D array (the upper one for an even length): ``np.median``'s
    overhead is most of the cost for the short arrays of a spectrum fit."""
    a = np.asarray(a)
    k = len(a) // 2
    return float(np.partition(a, k)[k])


def _difference_scale(order: int) -> float:
    """Standard deviation of the order-k difference of unit white noise."""
    return math.sqrt(float(comb(2 * order, order)))


def difference_sigma(values, order: int = 2) -> float:
    """Noise standard deviation of ``values`` from the MAD of its k-th differences.

    Quantised or noise-free data (most differences equal) have a MAD of
    zero; the mean absolute deviation then stands in, so that not every
    wiggle of a smooth curve counts as signal. NaN for fewer than
    ``order + 1`` values.
    """
    d = np.diff(np.asarray(values, dtype=float), order)
    if d.size == 0:
        return math.nan
    mad = fast_median(np.abs(d - fast_median(d)))
    if mad > 0:
        return mad * MAD_TO_SIGMA / _difference_scale(order)
    return float(np.mean(np.abs(d - d.mean()))) * MEAN_ABS_TO_SIGMA / _difference_scale(order)


def running_difference_sigma(values, size: int, order: int = 2) -> np.ndarray:
    """Noise of each point: running median (``size`` points, mirrored at the
    ends) of |k-th differences|, as a standard deviation.

    The ends are mirrored rather than padded with copies of the last value,
    which would let one small difference set the noise of a whole end window.
    """
    y = np.asarray(values, dtype=float)
    d = np.abs(np.diff(y, order))
    before = order // 2
    d = np.concatenate((np.repeat(d[:1], before), d, np.repeat(d[-1:], order - before)))
    return median_filter(d, size=min(size, y.size), mode="mirror") * MAD_TO_SIGMA / _difference_scale(order)


def block_difference_sigma(values, block: int = 32, order: int = 1) -> np.ndarray:
    """Noise of each point from the median |k-th difference| of its block of ``block`` points.

    A spike touches only ``order + 1`` of the differences of a block, so the
    block's median ignores it. The last few points get the last block's value.
    """
    y = np.asarray(values, dtype=float)
    d = np.abs(np.diff(y, order))
    n_blocks = max(len(d) // block, 1)
    size = max(len(d) // n_blocks, 1)
    medians = np.median(d[: n_blocks * size].reshape(n_blocks, size), axis=1)
    return medians[np.minimum(np.arange(len(y)) // size, n_blocks - 1)] * MAD_TO_SIGMA / _difference_scale(order)
