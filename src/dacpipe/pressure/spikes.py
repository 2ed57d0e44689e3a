"""Checks of gauge spectra and their cosmic-ray spikes.

:func:`as_spectrum` refuses arrays no fit can use; :func:`spike_mask` finds
the spikes a CCD records from cosmic rays (one to three points far above
their neighbours), which every gauge fit leaves out.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import median_filter, minimum_filter1d, uniform_filter1d

from ..core.errors import InputError
from ..core.noise import MAD_TO_SIGMA, block_difference_sigma, fast_median

MIN_POINTS = 20
"""Fewer points than this cannot constrain a line and its background."""


def despike(y, *, width: int = 7, threshold: float = 8.0, max_width: int = 3):
    """Replace cosmic-ray spikes by the running median.

    A spike is a run of at most ``max_width`` points that stands more than
    ``threshold`` local noise sigmas above a running median of ``width``
    points, and whose two outer neighbours stay below half the height (above
    the local floor) of the run's end next to them. That last test is what
    spares real lines: the neighbours of the top of a line at least 5 points
    wide are at more than 70 % of its height, however strong it is, whereas
    a spike rises from the background within one point. The neighbours of a
    spike that are still > 3 sigma high (its faint wings) go with it.

    A spike on top of a line is left alone here (the line shields it);
    :func:`fit_ruby` and :func:`fit_single_line` find it against the fitted line.
    The local noise is the median of first differences in blocks of 32
    points (never below that of the whole spectrum).

    Parameters
    ----------
    y : array_like
        Spectrum.
    width : int
        Running-median window, points (odd).
    threshold : float
        Height above the running median, in local noise sigmas.
    max_width : int
        Widest spike, points.

    Returns
    -------
    y_clean : ndarray
        Copy of ``y`` with spike points replaced by the running median.
    n_spikes : int
        Number of spikes (runs of points) replaced.
    """
    y = np.asarray(y, dtype=float)
    mask, median = spike_mask(y, width=width, threshold=threshold, max_width=max_width)
    y_clean = y.copy()
    y_clean[mask] = median[mask]
    return y_clean, count_runs(mask)


def spike_mask(y, *, width=7, threshold=8.0, max_width=3, sigma=None):
    """Points that belong to spikes (see :func:`despike`), and the running median.

    ``sigma``, the noise of each point, is estimated from ``y`` when not given.
    """
    n = len(y)
    median = median_filter(y, size=width, mode="mirror")
    if n < 5:
        return np.zeros(n, dtype=bool), median
    excess = y - median
    # Local noise from first differences: a spike touches only 2 of the 32
    # differences in a block, so their median ignores it. On a steep line
    # the differences are large, which only makes the test more cautious
    # there; _careful_fit() looks for spikes on lines again. The floor (noise
    # of the whole spectrum) keeps a chance run of small differences from
    # making the threshold tiny.
    if sigma is None:
        noise = fast_median(np.abs(np.diff(y))) * MAD_TO_SIGMA / math.sqrt(2.0) + 1e-12 * np.max(np.abs(y))
        sigma = np.maximum(block_difference_sigma(y, 32, order=1), noise)

    mask = np.zeros(n, dtype=bool)
    runs = flag_runs(excess > threshold * sigma)
    if not runs:
        return mask, median
    # Heights are measured from the local floor (lowest smoothed value within
    # +-12 points), under the line as well as under the spike.
    floor = minimum_filter1d(uniform_filter1d(y, 3, mode="nearest"), 25, mode="nearest")
    for start, stop in runs:
        if stop - start > max_width:
            continue  # too wide for a cosmic ray: a line, or something real
        top = start + int(np.argmax(excess[start:stop]))
        # Each outer neighbour against the end of the run next to it.
        sides = [(i, j) for i, j in ((start - 1, start), (stop, stop - 1)) if 0 <= i < n]
        if any(y[i] - floor[top] > 0.5 * (y[j] - floor[top]) for i, j in sides):
            continue  # shoulders more than half as high: the top of a narrow line
        mask[start:stop] = True
        for i, _ in sides:
            if excess[i] > 3.0 * sigma[i]:
                mask[i] = True  # the faint wing of the spike
    return mask, median


def flag_runs(flags):
    """(start, stop) of each run of True in a boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flags.astype(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def count_runs(flags) -> int:
    """Number of runs of True in a boolean array."""
    return len(flag_runs(flags))


def as_spectrum(x, y):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 1 or y.shape != x.shape:
        raise InputError(f"x and y differ in shape ({x.shape} and {y.shape})")
    if len(x) < MIN_POINTS:
        raise InputError(f"fewer than {MIN_POINTS} points ({len(x)})")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise InputError("spectrum has NaN or infinite values")
    if np.any(np.diff(x) <= 0):
        raise InputError("x is not strictly increasing")
    return x, y
