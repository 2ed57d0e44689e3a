"""A point's pressure error, split: the random part a fit weights by, and the systematic terms common to a run.

The pressure stage (:mod:`dacpipe.pressure.stage`) stores both: the random
part ``pressure_random_err_GPa`` (fit, drift, gradient) and, named by the
group's ``@systematic_terms``, one 1-sigma shift per point for each source
that moves every point of the run the same way (each scale coefficient,
the ambient line position, the temperature). The fits of pressure series
(the EOS, E(P)) weight by the first and carry the second to their
parameters (:func:`dacpipe.core.lsq.propagate_common_shifts`).
"""

from __future__ import annotations

import numpy as np


def random_and_systematic(pressure) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The random error of each point and the systematic terms of a pressure group.

    Parameters
    ----------
    pressure : dacpipe.core.results.Upstream
        The pressure stage's datasets and attributes. A group without the
        split (pressures typed in the sheet, read from an XRD marker) gives
        its ``pressure_err_GPa`` as the random error, and no terms.
    """
    names = pressure.datasets
    if "pressure_random_err_GPa" in names:
        terms = [str(t) for t in pressure.attrs.get("systematic_terms", ())]
        return (np.asarray(pressure["pressure_random_err_GPa"], float),
                {name: np.asarray(pressure[name], float) for name in terms if name in names})
    return np.asarray(pressure["pressure_err_GPa"], float), {}
