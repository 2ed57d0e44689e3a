"""Pressure from an XRD marker: gold, platinum, NaCl-B1 or neon beside the sample.

``pressure: {gauge: xrd-marker, marker: Au}`` reads each point's pressure
from the marker's lattice in the same diffraction pattern, instead of from a
ruby spectrum:

1. the pattern's peaks are fitted (:mod:`dacpipe.xrd.peaks`);
2. the marker's lines at its reference cell are scaled by a common factor k
   on q, scanned from slightly below 1 to the compression its EOS gives at
   ``max_pressure_GPa``: the k that puts the most observed intensity under
   predicted lines (:func:`dacpipe.xrd.indexing.best_scale`) finds the marker
   without any prior pressure;
3. its lines are matched to peaks within ``tolerance_rel`` and the cell is
   refined on the peaks only one marker line explains, twice, re-matching
   with the refined cell (:func:`dacpipe.xrd.cells.refine_cell`); a line
   that disagrees with the others (a marker line on the flank of a sample
   line) is dropped while at least ``min_lines`` remain;
4. the refined volume gives the pressure through the marker's EOS, and the
   volume's standard error gives the pressure's: sigma_P = K(V) / V * sigma_V
   (K = -V dP/dV). At a point's temperature the pressure is that of the
   marker's thermal EOS, P(V, T) = P_300(V) + P_th(V, T) - P_th(V, 300 K)
   with the Mie-Grueneisen-Debye P_th of Fei et al. (2007) (Au, Pt, Ne:
   ``thermal`` in library.yaml); a marker without one is read only within
   :data:`ISOTHERMAL_TOLERANCE_K` of its isotherm (NaN with the reason
   beyond: gold 100 K hotter is 0.7 GPa higher at the same volume).

A marker's EOS is that of the library (Au and Pt: Fei et al., PNAS 104,
9182 (2007); NaCl-B1: Dorogokupets & Dewaele, High Pressure Res. 27, 431
(2007); Ne: Fei et al. 2007) or of its JCPDS/CIF file. The EOS coefficients'
own uncertainties are not propagated: the library keeps no covariance for
them, and they are systematic across the run.

Only the marker is matched here, so a sample line that falls within the
tolerance of a marker line and is the only peak there would be taken for
it: pick a marker whose strong lines avoid the sample's (the usual practice
in a DAC) and check ``pressure/marker/hkl_used`` in the store. A marker of
the sample's own lattice type (NaCl-B1 beside a rock-salt sample, any fcc
marker beside a rock-salt or fcc sample) has lines in the same ratios as the
sample's: when the sample's lattice lies within the scanned compression the
scan cannot tell them apart, so lower ``max_pressure_GPa`` to exclude it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core.errors import InputError
from ..eos.models import bulk_modulus_GPa
from ..eos.models import pressure_GPa as eos_pressure_GPa
from ..eos.models import volume_A3 as eos_volume_A3
from ..eos.models import pressure_at_temperature_GPa
from . import cells as lattice
from .cells import cell_volume_A3
from .library import thermal_library
from .indexing import IndexingSettings
from .lines import PredictedLine, predicted_lines
from .peaks import Peak
from .structure import Phase

# The scan of step 2 starts this far below the reference cell's q, for a
# reference cell a little off the sample's (a JCPDS a0, a temperature).
BELOW_REFERENCE_REL = 0.005
# Where a marker's EOS stops being that of the phase: NaCl B1 turns to B2 at
# ~30 GPa (Bassett et al., J. Appl. Phys. 39, 319 (1968); Heinz & Jeanloz,
# Phys. Rev. B 30, 6045 (1984)). The scan of step 2 stops there unless the
# config says otherwise; for the others it stops at DEFAULT_MAX_PRESSURE_GPA.
STABLE_TO_GPA = {"NaCl-B1": 30.0}
DEFAULT_MAX_PRESSURE_GPA = 200.0
# Step 3 drops the worst line while the refinement's reduced chi^2 is above
# this (a 2-sigma disagreement of one line among a few), keeping min_lines.
OUTLIER_REDUCED_CHI2 = 4.0
# A marker without a thermal EOS is read within this of its isotherm's 300 K
# (gold: 7 MPa/K, 0.07 GPa over 10 K, about a marker reading's own error).
ISOTHERMAL_TOLERANCE_K = 10.0
ISOTHERM_K = 300.0


@dataclass(frozen=True)
class MarkerReading:
    """The marker's refined lattice at one point and the pressure it gives."""

    pressure_GPa: float
    pressure_err_GPa: float
    cell: tuple
    cell_errors: dict              # "a_A", "c_A" ... as refine_cell names them
    volume_A3: float               # per cell
    volume_err_A3: float
    reduced_chi2: float
    hkl_used: tuple


def _eos_volume_ratio(phase: Phase) -> float:
    """V_EOS / V_cell at the reference pressure, so that a cell whose volume
    differs slightly from the EOS V0 reads the EOS by its compression (as
    :meth:`dacpipe.xrd.structure.Phase.cell_at` moves it)."""
    if phase.reference_pressure_GPa == 0.0:
        v_ref = phase.eos.V0_A3
    else:
        v_ref = float(eos_volume_A3(phase.eos, phase.reference_pressure_GPa))
    return v_ref / cell_volume_A3(phase.cell)


def check_marker(phase: Phase) -> None:
    """A marker needs an EOS: a phase whose lines do not move cannot gauge pressure."""
    if phase.eos is None:
        raise InputError(f"marker {phase.name} has no equation of state (a JCPDS K0 of 0 means lines that "
                         "do not move), so it cannot give a pressure")


def marker_pressure_GPa(phase: Phase, volume_A3: float, volume_err_A3: float,
                        temperature_K: float | None = None) -> tuple[float, float]:
    """Pressure and its standard error from a marker's cell volume (A^3, per cell).

    ``temperature_K`` None: the EOS isotherm. Otherwise the marker's thermal
    EOS (:func:`dacpipe.eos.models.pressure_at_temperature_GPa`, Fei et al.
    2007); a marker without one raises InputError beyond
    :data:`ISOTHERMAL_TOLERANCE_K` of 300 K. The error is K(V)/V sigma_V of
    the isotherm (the thermal term changes K by < 2 % below 1000 K).
    """
    check_marker(phase)
    ratio = _eos_volume_ratio(phase)
    v, v_err = volume_A3 * ratio, volume_err_A3 * ratio
    error = float(bulk_modulus_GPa(phase.eos, v) / v * v_err)
    thermal = thermal_library().get(phase.name)
    if temperature_K is None:
        return float(eos_pressure_GPa(phase.eos, v)), error
    if thermal is None:
        if abs(temperature_K - ISOTHERM_K) > ISOTHERMAL_TOLERANCE_K:
            raise InputError(f"marker {phase.name} has no thermal EOS: its {ISOTHERM_K:g} K isotherm cannot give "
                             f"the pressure at {temperature_K:g} K (use Au, Pt or Ne)")
        return float(eos_pressure_GPa(phase.eos, v)), error
    return pressure_at_temperature_GPa(phase.eos, thermal, v, temperature_K), error


def read_marker(found: Sequence[Peak], q_max_A: float, wavelength_A: float, phase: Phase,
                settings: IndexingSettings, max_pressure_GPa: float,
                temperature_K: float | None = None) -> MarkerReading:
    """Find the marker's lines among fitted peaks and turn its lattice into a pressure.

    Parameters
    ----------
    found : sequence of Peak
        The pattern's fitted peaks (positions in q, 1/A).
    q_max_A : float
        The highest q the pattern covers: lines beyond it are not looked for.
    wavelength_A : float
    phase : Phase
        The marker, with an EOS.
    settings : IndexingSettings
        Its ``tolerance_rel``, ``min_lines`` and ``min_intensity_percent``
        apply as for the sample's phases.
    max_pressure_GPa : float
        The highest pressure the scan of step 2 considers.
    temperature_K : float, optional
        The point's temperature, for the marker's thermal EOS
        (:func:`marker_pressure_GPa`); None reads the isotherm.

    Raises
    ------
    InputError
        When fewer than ``min_lines`` marker lines, or less than half of its
        predicted intensity, are found.
    """
    check_marker(phase)
    # Lines beyond q_max at the reference cell can still land in range at the lowest k.
    lines = predicted_lines(phase, phase.cell, wavelength_A, q_max_A / (1 - BELOW_REFERENCE_REL),
                            settings.min_intensity_percent)
    compressed = phase.cell_at(max_pressure_GPa)
    k_max = (cell_volume_A3(phase.cell) / cell_volume_A3(compressed)) ** (1 / 3)
    peak_q = np.array([p.position for p in found])
    # Every peak counts alike: a marker's lines (neon's above all) are often
    # far weaker than the sample's, and weighting by the observed areas
    # would let one strong marker line sitting on a strong sample peak beat
    # all the marker's lines sitting on its own weak peaks.
    factor = best_scale(peak_q, np.ones(len(found)), lines, 0.0, settings.tolerance_rel,
                        factor_range=(1 - BELOW_REFERENCE_REL, k_max * (1 + BELOW_REFERENCE_REL)))
    cell = tuple(phase.cell)
    cell = (cell[0] / factor, cell[1] / factor, cell[2] / factor, *cell[3:])
    lines = predicted_lines(phase, cell, wavelength_A, q_max_A, settings.min_intensity_percent)
    for _ in range(2):
        matched = match(peak_q, lines, 1.0, settings.tolerance_rel)
        n_found = len({i for ids in matched.values() for i in ids})
        total = sum(l.intensity for l in lines)
        share = sum(lines[i].intensity for ids in matched.values() for i in ids) / total if total else 0.0
        if n_found < settings.min_lines or share < 0.5:
            raise InputError(f"marker {phase.name}: {n_found} of its lines found ({100 * share:.0f}% of its "
                             f"intensity), needs {settings.min_lines} and half")
        indexed = [lattice.IndexedPeak(lines[ids[0]].hkl, found[j].position, found[j].position_err)
                   for j, ids in matched.items() if len(ids) == 1]
        fit = lattice.refine_cell(indexed, phase.system, cell, phase.z_formula_units)
        # A marker line on the flank of a sample line is pulled by it: while
        # the lines disagree beyond the noise, the one furthest off goes.
        while fit.reduced_chi2 > OUTLIER_REDUCED_CHI2 and len(indexed) > settings.min_lines:
            worst = int(np.argmax(np.abs(fit.residuals_q_A) / [p.q_err_A for p in indexed]))
            indexed.pop(worst)
            fit = lattice.refine_cell(indexed, phase.system, cell, phase.z_formula_units)
        cell = fit.cell
        lines = predicted_lines(phase, cell, wavelength_A, q_max_A, settings.min_intensity_percent)
    pressure, pressure_err = marker_pressure_GPa(phase, fit.volume_A3, fit.volume_err_A3, temperature_K)
    if pressure > max_pressure_GPa * (1 + BELOW_REFERENCE_REL):
        raise InputError(f"marker {phase.name}: refined to {pressure:.1f} GPa, beyond max_pressure_GPa")
    return MarkerReading(pressure, pressure_err, tuple(cell), dict(fit.errors), fit.volume_A3, fit.volume_err_A3,
                         fit.reduced_chi2, fit.hkl)


def best_scale(peak_q: np.ndarray, peak_weight: np.ndarray, lines: Sequence[PredictedLine], search_rel: float,
               tolerance_rel: float, *, factor_range: tuple[float, float] | None = None) -> float:
    """The factor k on predicted q that puts the most observed intensity under predicted lines.

    Scored by the predicted intensity of the lines that find a peak within
    the tolerance, times that peak's weight (its area share): a scale that
    lands weak lines on strong peaks, or strong lines on noise, scores low.
    k runs over 1 +- ``search_rel``, or over ``factor_range`` when given, in
    steps of a third of the tolerance; ties go to the k nearest 1.
    """
    if not len(peak_q) or not lines:
        return 1.0
    line_q = np.array([l.q_A for l in lines])
    line_i = np.array([l.intensity for l in lines]) / max(l.intensity for l in lines)
    lo, hi = factor_range if factor_range is not None else (1.0 - search_rel, 1.0 + search_rel)
    half = (hi - lo) / 2
    steps = int(np.ceil(half / (tolerance_rel / 3)))
    factors = (lo + hi) / 2 + np.linspace(-half, half, 2 * steps + 1)
    order = np.argsort(peak_q)
    pq, pw = peak_q[order], peak_weight[order]
    best, best_score = 1.0, -1.0
    for k in factors:
        target = k * line_q
        j = np.clip(np.searchsorted(pq, target), 1, len(pq) - 1)
        left, right = pq[j - 1], pq[j]
        nearest = np.where(np.abs(left - target) < np.abs(right - target), j - 1, j)
        close = np.abs(pq[nearest] - target) <= tolerance_rel * target
        score = float(np.sum(line_i[close] * np.sqrt(pw[nearest[close]])))
        if score > best_score + 1e-12 or (abs(score - best_score) <= 1e-12 and abs(k - 1) < abs(best - 1)):
            best, best_score = float(k), score
    return best


def match(peak_q: np.ndarray, lines: Sequence[PredictedLine], factor: float, tolerance_rel: float) -> dict[int, list[int]]:
    """Peak index -> indices of the lines (scaled by ``factor``) it lies under."""
    out: dict[int, list[int]] = {}
    if not len(peak_q):
        return out
    for i, line in enumerate(lines):
        target = factor * line.q_A
        j = int(np.argmin(np.abs(peak_q - target)))
        if abs(peak_q[j] - target) <= tolerance_rel * target:
            out.setdefault(j, []).append(i)
    return out
