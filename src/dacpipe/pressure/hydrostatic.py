"""Signs of a non-hydrostatic stress in the gauge spectra of a run.

Two signs are read from the ruby spectra themselves:

* the R1 width: under hydrostatic pressure the R lines stay nearly as sharp
  as at ambient; a deviatoric stress, and a pressure gradient across the
  ruby, broaden them (Forman et al., Science 176, 284 (1972), who first
  tied the broadening to non-hydrostatic conditions; Syassen, High Press.
  Res. 28, 75 (2008)). Each point's R1 FWHM is compared with the run's own
  width at its lowest pressures (same ruby, same spectrometer, so the
  instrument's part cancels), and a width above :data:`BROADENING_FACTOR`
  times that is flagged;
* the R1-R2 splitting, about 29 cm^-1 at ambient (Syassen 2008) and nearly
  constant under hydrostatic pressure; a uniaxial stress changes it. It is
  stored, with its change from the run's low-pressure splitting, for the
  reader to judge (the doublet fit keeps a soft prior on the splitting,
  :mod:`dacpipe.pressure.fluorescence`, so a change is damped, and no flag
  is drawn from it).

And from rubies at several places of the chamber (extra gauge columns of the
sheet, :meth:`dacpipe.io.sheet.Sheet.gauge_position_columns`): their pressure
spread, the gradient over the chamber.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core.results import StageContext, StageResult
from ..core.units import NM_CM1

BROADENING_FACTOR = 1.5
"""An R1 FWHM this many times the run's low-pressure width is flagged. A
judgement, not a published threshold: fit scatter of the width of a clean
ruby line is a few per cent, the thermal broadening between 290 and 310 K
about 5 %, while a ruby losing hydrostaticity broadens by tens of per cent
to several times (Forman 1972; Syassen 2008, section on non-hydrostatic
stress)."""

REFERENCE_WINDOW_GPA = 1.0
"""The run's reference width is the median R1 FWHM of the points within this
of its lowest pressure (hydrostatic in every liquid or gas medium)."""

SAME_TEMPERATURE_K = 20.0
"""Only points within this of the reference points' temperature are compared:
the R lines broaden strongly with temperature (Datchi et al. 2007), which is
not a stress."""


@dataclass(frozen=True)
class LineShape:
    """Per point: R1 width against the run's low-pressure width, and the R1-R2 splitting."""

    width_ratio: np.ndarray          # R1 FWHM / reference FWHM (NaN where not compared)
    reference_fwhm_nm: float
    broadened: np.ndarray            # bool: width_ratio > BROADENING_FACTOR
    splitting_cm1: np.ndarray        # R1-R2 splitting
    splitting_change_cm1: np.ndarray  # minus the reference points' median splitting


def r1_r2_splitting_cm1(r1_nm, r2_nm) -> np.ndarray:
    """R1-R2 splitting in wavenumbers (R2 lies at the higher energy)."""
    return NM_CM1 / np.asarray(r2_nm, dtype=float) - NM_CM1 / np.asarray(r1_nm, dtype=float)


def line_shape(r1_fwhm_nm, splitting_cm1, pressure_GPa, temperature_K) -> LineShape:
    """Compare each point's R1 width and R1-R2 splitting with the run's low-pressure ones (module docstring).

    Parameters
    ----------
    r1_fwhm_nm, splitting_cm1, pressure_GPa, temperature_K : array_like
        Per point (the splitting from :func:`r1_r2_splitting_cm1`); NaN where
        a point has no reading.

    Returns
    -------
    LineShape
        All NaN (and nothing flagged) when no point has a width and a pressure.
    """
    fwhm = np.asarray(r1_fwhm_nm, dtype=float)
    p = np.asarray(pressure_GPa, dtype=float)
    t = np.asarray(temperature_K, dtype=float)
    splitting = np.asarray(splitting_cm1, dtype=float)
    usable = np.isfinite(fwhm) & np.isfinite(p) & (fwhm > 0)
    nan = np.full(fwhm.shape, np.nan)
    if not usable.any():
        return LineShape(nan, math.nan, np.zeros(fwhm.shape, bool), splitting, nan.copy())
    lowest = int(np.flatnonzero(usable)[np.argmin(p[usable])])
    same_t = np.abs(t - t[lowest]) <= SAME_TEMPERATURE_K
    reference = usable & same_t & (p <= p[lowest] + REFERENCE_WINDOW_GPA)
    reference_fwhm = float(np.median(fwhm[reference]))
    ratio = np.where(usable & same_t, fwhm / reference_fwhm, np.nan)
    finite_split = reference & np.isfinite(splitting)
    change = splitting - float(np.median(splitting[finite_split])) if finite_split.any() else nan.copy()
    return LineShape(ratio, reference_fwhm, np.nan_to_num(ratio) > BROADENING_FACTOR, splitting, change)


BROADENING_TAIL = "non-hydrostatic broadening?"


def broadening_warning(fwhm_nm: float, ratio: float, reference_fwhm_nm: float) -> str:
    """The status line of a broadened R1 (it ends with :data:`BROADENING_TAIL`)."""
    return (f"pressure: R1 {fwhm_nm:.2f} nm wide, {ratio:.1f} x the run's low-pressure width "
            f"({reference_fwhm_nm:.2f} nm): {BROADENING_TAIL}")


@dataclass(frozen=True)
class Gradient:
    """The pressure spread of the rubies at different places of one point."""

    range_GPa: float   # max - min
    std_GPa: float     # sample standard deviation (ddof 1)
    err_GPa: float     # the standard uncertainty it adds to the point's pressure
    n: int             # readings used


def pressure_gradient(pressures_GPa: Sequence[float]) -> Gradient:
    """The gradient over the chamber from the pressures read at several places.

    The sample sits somewhere in that spread, not known where: taken as a
    rectangular distribution over [min, max], the standard uncertainty it
    adds is (max - min) / (2 sqrt 3) (GUM, JCGM 100:2008, 4.3.7), as for the
    drift of the pressure stage. NaN with fewer than two finite pressures.
    """
    p = np.asarray([x for x in pressures_GPa if math.isfinite(x)], dtype=float)
    if p.size < 2:
        return Gradient(math.nan, math.nan, math.nan, int(p.size))
    spread = float(p.max() - p.min())
    return Gradient(spread, float(np.std(p, ddof=1)), spread / (2.0 * math.sqrt(3.0)), int(p.size))


def _without_broadening(status: str) -> str:
    """A point's status without the broadening warning :func:`finish_pressure` adds."""
    kept = [part for part in status.split("; ") if not part.endswith(BROADENING_TAIL)]
    return "; ".join(kept) or "ok"


def finish_pressure(ctx: StageContext, result: StageResult) -> StageResult:
    """``result`` (the joined pressure part) with each point's R1 width and
    R1-R2 splitting compared with the run's low-pressure ones
    (:func:`line_shape`): ``R1_width_ratio``,
    ``R1_R2_splitting_change_cm1``, ``@R1_reference_fwhm_nm``, and a
    broadened R1 flagged in its point's status. The step that spans the
    chunks (the reference is the run's), run by the workflow's merge job
    (:data:`dacpipe.run.stages.FINISH`), which imports this light module and
    not the stage's fitting code; unchanged without ruby widths."""
    d = result.datasets
    if "R1_fwhm_nm" not in d:
        return result
    by_id = {p.point: p.temperature_K for p in ctx.sheet.points}
    temperature = np.array([by_id.get(i, math.nan) for i in result.point_ids], dtype=float)
    r1 = np.asarray(d["R1_fwhm_nm"], dtype=float)
    splitting = np.asarray(d["R1_R2_splitting_cm1"], dtype=float)
    shape = line_shape(r1, splitting, np.asarray(d["pressure_GPa"], dtype=float), temperature)
    # Applied again to a spliced series (dacpipe watch), it first takes back what it
    # said before: the reference may have moved.
    status = [_without_broadening(s) for s in result.status]
    for i in np.flatnonzero(shape.broadened):
        message = broadening_warning(r1[i], shape.width_ratio[i], shape.reference_fwhm_nm)
        status[i] = message if status[i] == "ok" else f"{status[i]}; {message}"
        ctx.warn_point(result.point_ids[i], message)
    datasets = {**d, "R1_width_ratio": shape.width_ratio, "R1_R2_splitting_change_cm1": shape.splitting_change_cm1}
    attrs = {**result.attrs, "R1_reference_fwhm_nm": shape.reference_fwhm_nm}
    return dataclasses.replace(result, datasets=datasets, attrs=attrs, status=status)
