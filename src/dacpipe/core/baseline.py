"""Smooth backgrounds under peaks: SNIP clipping and the Whittaker smoother.

Both work on evenly sampled values (the caller leaves out unmeasured points
and interpolates back). :func:`snip` cuts every peak narrower than its
window; :func:`whittaker` smooths what remains once the fitted peaks are
subtracted.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solveh_banded


def snip(values, half_window: int) -> np.ndarray:
    """SNIP peak clipping with windows 1 .. ``half_window`` points.

    Ryan et al., Nucl. Instrum. Methods B 34, 396 (1988); Morhac et al.,
    Nucl. Instrum. Methods A 401, 113 (1997): each point is replaced by the
    mean of its neighbours ``k`` points away when that is lower, for ``k``
    up to the half-window. A background that curves upwards is kept exactly;
    one that curves downwards is cut by ``curvature * window^2 / 2``.
    """
    v = np.array(values, dtype=float)
    for k in range(1, min(half_window, (len(v) - 1) // 2) + 1):
        np.minimum(v[k:-k], 0.5 * (v[: -2 * k] + v[2 * k:]), out=v[k:-k])
    return v


def whittaker(values, weights, lam: float) -> np.ndarray:
    """Whittaker smoother: minimise sum w (y - z)^2 + lam sum (second difference of z)^2.

    Eilers, Anal. Chem. 75, 3631 (2003). The normal equations are a
    symmetric positive-definite pentadiagonal system, solved in O(n).
    """
    y = np.asarray(values, dtype=float)
    n = len(y)
    if n < 5:
        return np.full(n, float(np.average(y, weights=weights)))
    # D^T D for second differences, as upper banded storage (3 rows).
    main = np.full(n, 6.0)
    main[[0, -1]] = 1.0
    main[[1, -2]] = 5.0
    off1 = np.full(n - 1, -4.0)
    off1[[0, -1]] = -2.0
    off2 = np.ones(n - 2)
    ab = np.zeros((3, n))
    ab[0, 2:] = lam * off2
    ab[1, 1:] = lam * off1
    ab[2] = lam * main + weights
    return solveh_banded(ab, weights * y)
