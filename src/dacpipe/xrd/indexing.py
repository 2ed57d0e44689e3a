"""The indexing stage: which phases each pattern holds, their lattices and fractions.

Point by point, in measurement order:

1. the peaks of the pattern are found and fitted (:mod:`dacpipe.peaks`);
2. each configured phase predicts its lines from its structure
   (:mod:`dacpipe.phases`), starting from its lattice at the previous point
   (or, the first time, from the library cell at the point's pressure); a
   scan of a common scale factor on q, within ``search_rel``, finds where the
   predicted lines meet the most observed intensity, since the seed can be
   off by a few per cent;
3. lines are matched to peaks within ``tolerance_rel`` of q; a phase is
   present when at least ``min_lines`` lines and half of its predicted
   intensity in the observed range are found;
4. the lattice of each present phase is refined on the peaks only it
   explains (:mod:`dacpipe.lattice`), twice, re-matching with the refined
   cell;
5. phase fractions come from refined intensities as in a Rietveld analysis
   (Hill & Howard, J. Appl. Cryst. 20, 467 (1987)): each phase's scale
   s = sum(observed areas) / sum(m |F|^2 L) over its own lines, and the
   fraction of formula units x = s Z V / sum(s Z V);
6. peaks no present phase explains are kept and reported: a gasket line, the
   pressure medium, or a new phase.

Transitions between consecutive configured phases get an onset and an end
pressure from the fraction of the new phase over the points where both are
present (a straight line through them, crossing 0 and 1), bounded by the
points on either side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..core.errors import InputError
from ..io.config import validate_section
from . import cells as lattice
from . import peaks
from .lines import PredictedLine, predicted_lines
from .pattern import WHOLE_PATTERN_MIN_PERCENT, refine_pattern
from .structure import Phase


@dataclass(frozen=True)
class IndexingSettings:
    """The run's ``indexing`` section with its ``phases`` list (keys and defaults: ``config/schema.yaml``)."""

    phases: tuple[str, ...]
    search_rel: float
    tolerance_rel: float
    min_lines: int
    min_intensity_percent: float
    fraction_threshold: float
    min_snr: float
    scherrer_k: float
    instrument_fwhm_deg: float

    @classmethod
    def from_config(cls, run: dict) -> "IndexingSettings":
        """From a run's ``phases`` and ``indexing`` section; what the section
        leaves out comes from the schema's defaults."""
        section = validate_section("indexing", run.get("indexing"))
        return cls(phases=tuple(run.get("phases", ())), **section)


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


@dataclass
class PhaseAtPoint:
    """What one phase gave at one point."""

    present: bool = False
    cell: tuple | None = None
    cell_errors: dict = field(default_factory=dict)
    volume_fu_A3: float = math.nan
    volume_fu_err_A3: float = math.nan
    reduced_chi2: float = math.nan
    scale: float = math.nan
    fwhm_q_A: tuple[float, float, float] = (math.nan, math.nan, math.nan)   # (q, FWHM, its error)
    used_hkl: tuple = ()
    reason: str = ""


@dataclass
class PointResult:
    peak_fit: peaks.PeakFit | None
    phases: dict[str, PhaseAtPoint] = field(default_factory=dict)
    fractions: dict[str, float] = field(default_factory=dict)
    unexplained_q_A: tuple[float, ...] = ()


def _area_2theta(peak: peaks.Peak, wavelength_A: float) -> float:
    """A peak's area as a 2theta pattern has it: the integrated pattern is in
    q, and dq/d(2theta) grows as cos(theta)."""
    sin_theta = min(peak.position * wavelength_A / (4 * np.pi), 1 - 1e-12)
    return peak.area / math.sqrt(1 - sin_theta**2)


def index_point(q_A: np.ndarray, intensity: np.ndarray, sigma: np.ndarray, wavelength_A: float,
                phases: dict[str, Phase], seeds: dict[str, tuple], settings: IndexingSettings) -> PointResult:
    """Index one pattern (steps 1 to 6 of the module docstring)."""
    finite = np.isfinite(intensity) & np.isfinite(q_A)
    if finite.sum() < 10:
        raise InputError("no XRD pattern at this point")
    q, y = q_A[finite], intensity[finite]
    s = sigma[finite] if sigma is not None else None
    fit = peaks.fit_peaks(q, y, s, min_snr=settings.min_snr)
    found = list(fit.peaks)
    if not found:
        return PointResult(peak_fit=fit, unexplained_q_A=())
    peak_q = np.array([p.position for p in found])
    areas = np.array([max(_area_2theta(p, wavelength_A), 0.0) for p in found])
    weight = areas / areas.sum() if areas.sum() > 0 else np.ones_like(areas)
    q_max = float(q.max())
    result = PointResult(peak_fit=fit)

    claimed: dict[int, list[tuple[str, int]]] = {}
    candidates: dict[str, tuple[list[PredictedLine], float, dict[int, list[int]]]] = {}
    for name, phase in phases.items():
        lines = predicted_lines(phase, seeds[name], wavelength_A, q_max * 1.02, settings.min_intensity_percent)
        factor = best_scale(peak_q, weight, lines, settings.search_rel, settings.tolerance_rel)
        matched = match(peak_q, lines, factor, settings.tolerance_rel)
        in_range = [i for i, l in enumerate(lines) if factor * l.q_A <= q_max]
        total = sum(lines[i].intensity for i in in_range)
        found_intensity = sum(lines[i].intensity for ids in matched.values() for i in ids)
        n_found = len({i for ids in matched.values() for i in ids})
        state = PhaseAtPoint()
        if n_found >= settings.min_lines and total > 0 and found_intensity >= 0.5 * total:
            state.present = True
            candidates[name] = (lines, factor, matched)
            for j in matched:
                claimed.setdefault(j, []).append((name, 0))
        else:
            state.reason = f"{n_found} lines found, {100 * found_intensity / total if total else 0:.0f}% of its intensity"
        result.phases[name] = state

    for name, (lines, factor, matched) in candidates.items():
        phase, state = phases[name], result.phases[name]
        cell = _scaled_cell(seeds[name], factor)
        for _ in range(2):
            own = {j: ids for j, ids in matched.items() if len(claimed.get(j, ())) == 1 and len(ids) == 1}
            indexed = [lattice.IndexedPeak(lines[ids[0]].hkl, found[j].position, found[j].position_err)
                       for j, ids in own.items()]
            try:
                cell_fit = lattice.refine_cell(indexed, phase.system, cell, phase.z_formula_units)
            except InputError as err:
                state.present, state.reason = False, str(err)
                break
            cell = cell_fit.cell
            lines = predicted_lines(phase, cell, wavelength_A, q_max * 1.02, settings.min_intensity_percent)
            matched = match(peak_q, lines, 1.0, settings.tolerance_rel)
            for j in list(claimed):
                claimed[j] = [c for c in claimed[j] if c[0] != name]
            for j in matched:
                claimed.setdefault(j, []).append((name, 0))
        else:
            own = {j: ids for j, ids in matched.items() if len(claimed.get(j, ())) == 1 and len(ids) == 1}
            predicted = sum(lines[ids[0]].intensity for ids in own.values())
            observed = sum(areas[j] for j in own)
            state.cell, state.cell_errors = cell, dict(cell_fit.errors)
            state.volume_fu_A3, state.volume_fu_err_A3 = cell_fit.volume_fu_A3, cell_fit.volume_fu_err_A3
            state.reduced_chi2 = cell_fit.reduced_chi2
            state.scale = observed / predicted if predicted > 0 and phase.atoms else math.nan
            state.used_hkl = tuple(lines[ids[0]].hkl for ids in own.values())

    # The peak-by-peak cells start a whole-pattern refinement of every phase
    # found, which sees overlapping lines as what they are.
    found_phases = {n: phases[n] for n, st in result.phases.items() if st.present and st.cell is not None}
    if found_phases:
        whole = refine_pattern(q, y, s if s is not None else np.sqrt(np.clip(y, 1, None)), fit.background,
                               wavelength_A, found_phases, {n: result.phases[n].cell for n in found_phases},
                               WHOLE_PATTERN_MIN_PERCENT)
        for n in found_phases:
            st = result.phases[n]
            st.cell, st.cell_errors, st.scale = whole.cells[n], whole.cell_errors[n], whole.scales[n]
            st.volume_fu_A3, st.volume_fu_err_A3 = whole.volume_fu[n]
            st.reduced_chi2 = whole.reduced_chi2
            st.fwhm_q_A = whole.fwhm_q[n]

    weights = {n: st.scale * phases[n].z_formula_units * _volume(st.cell)
               for n, st in result.phases.items() if st.present and math.isfinite(st.scale)}
    total_weight = sum(weights.values())
    for name, st in result.phases.items():
        if st.present and name in weights and total_weight > 0:
            result.fractions[name] = weights[name] / total_weight
        else:
            result.fractions[name] = 0.0 if not st.present else math.nan
    for name, st in result.phases.items():
        if st.present and result.fractions[name] < settings.fraction_threshold:
            st.present, st.reason = False, f"fraction {result.fractions[name]:.3f} below the threshold"
    # A peak is explained when any line of a present phase, however weak,
    # lies under it with the refined cell: within the tolerance of its
    # centre or within its half width, since the peak fit may have taken two
    # close lines (cinnabar 201 and 113) for one broad peak between them.
    explained = np.zeros(len(found), bool)
    half_width = np.array([p.fwhm / 2 for p in found])
    for name, st in result.phases.items():
        if st.present and st.cell is not None:
            lines = predicted_lines(phases[name], st.cell, wavelength_A, q_max * 1.02, WHOLE_PATTERN_MIN_PERCENT)
            line_q = np.array([l.q_A for l in lines])
            if len(line_q):
                distance = np.abs(peak_q[:, None] - line_q[None, :])
                explained |= (distance <= settings.tolerance_rel * peak_q[:, None] + half_width[:, None]).any(axis=1)
    result.unexplained_q_A = tuple(float(peak_q[j]) for j in range(len(found)) if not explained[j])
    return result


def _scaled_cell(cell, factor: float) -> tuple:
    """A cell whose q are all ``factor`` times those of ``cell``."""
    a, b, c, al, be, ga = cell
    return (a / factor, b / factor, c / factor, al, be, ga)


def _volume(cell) -> float:
    from .cells import cell_volume_A3

    return float(cell_volume_A3(cell))


def scherrer_size_nm(q_A: float, fwhm_q_A: float, fwhm_err_q_A: float, wavelength_A: float, k: float = 0.89,
                     instrument_fwhm_deg: float = 0.0) -> tuple[float, float]:
    """Crystallite size (nm) and its error from a line's FWHM in q.

    Scherrer (Nachr. Ges. Wiss. Göttingen 1918, 98), D = K lambda / (B cos
    theta) with B the FWHM in 2theta (radians); in q, since dq = (2 pi /
    lambda) cos theta d(2theta), this is D = 2 pi K / FWHM_q, the same for
    every line. An instrumental width (2theta, degrees, at this line) is
    taken out in quadrature, as for Gaussian profiles (Langford & Wilson,
    J. Appl. Cryst. 11, 102 (1978)). NaN when the line is not broader than
    the instrument.
    """
    if not (math.isfinite(fwhm_q_A) and fwhm_q_A > 0):
        return math.nan, math.nan
    cos_theta = math.sqrt(max(1 - (q_A * wavelength_A / (4 * math.pi)) ** 2, 0.0))
    instrument_q = 2 * math.pi / wavelength_A * cos_theta * math.radians(instrument_fwhm_deg)
    if fwhm_q_A <= instrument_q:
        return math.nan, math.nan
    sample_q = math.sqrt(fwhm_q_A**2 - instrument_q**2)
    size_A = 2 * math.pi * k / sample_q
    # dD/dFWHM = -D / sample_q * (FWHM / sample_q)
    return size_A / 10, size_A / 10 * fwhm_q_A / sample_q**2 * fwhm_err_q_A


def seed_cell(phase: Phase, last: tuple[tuple, float] | None, pressure_GPa: float) -> tuple:
    """Where to start looking for a phase's lines at a point: its last refined
    cell, moved to this pressure by the library's compression; or, before it
    was ever refined, the library cell at this pressure."""
    if not math.isfinite(pressure_GPa):
        return last[0] if last else _cell_at(phase, phase.reference_pressure_GPa)
    if last is None:
        return _cell_at(phase, pressure_GPa)
    cell, p_last = last
    ratio = (_volume(_cell_at(phase, pressure_GPa)) / _volume(_cell_at(phase, p_last))) ** (1 / 3)
    return (cell[0] * ratio, cell[1] * ratio, cell[2] * ratio, *cell[3:])


def _cell_at(phase: Phase, pressure_GPa: float) -> tuple:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tuple(phase.cell_at(pressure_GPa))


def peak_table(point_peaks, unexplained, width: int) -> dict[str, np.ndarray]:
    n = len(point_peaks)
    fields = {"q_A": "position", "q_err_A": "position_err", "fwhm_q_A": "fwhm", "fwhm_q_err_A": "fwhm_err",
              "area": "area", "area_err": "area_err", "eta": "eta", "snr": "snr"}
    out = {f"peaks/{k}": np.full((n, width), np.nan) for k in fields}
    out["peaks/unexplained_q_A"] = np.full((n, width), np.nan)
    for i, found in enumerate(point_peaks):
        for j, p in enumerate(found[:width]):
            for key, attr in fields.items():
                out[f"peaks/{key}"][i, j] = getattr(p, attr)
        for j, q in enumerate(unexplained[i][:width]):
            out["peaks/unexplained_q_A"][i, j] = q
    return out


def find_transitions(order: list[str], table: dict[str, np.ndarray], pressure_GPa: np.ndarray,
                     threshold: float) -> dict[str, np.ndarray]:
    """Onset and end pressure of each transition between consecutive phases.

    The fraction of the new phase over the points where both coexist is
    fitted with a straight line in pressure; its crossings of 0 and 1 are the
    onset and end, kept between the last point without the new phase and the
    first with it (and likewise for the end). With one coexistence point or
    none, the bounds' midpoints are used.
    """
    out = {"from_phase": [], "to_phase": [], "onset_GPa": [], "end_GPa": []}
    p = np.asarray(pressure_GPa, dtype=float)
    for old, new in zip(order, order[1:]):
        has_old, has_new = table[f"{old}/present"], table[f"{new}/present"]
        if not has_new.any() or not has_old.any():
            continue
        first_new = int(np.argmax(has_new))
        after = np.flatnonzero(~has_old & (np.arange(len(p)) >= first_new))
        last_old = int(after[0]) - 1 if len(after) else len(p) - 1
        onset_bounds = (p[first_new - 1] if first_new > 0 else p[first_new], p[first_new])
        end_bounds = (p[last_old], p[last_old + 1] if last_old + 1 < len(p) else p[last_old])
        both = has_old & has_new & np.isfinite(p)
        fraction = table[f"{new}/fraction"]
        onset, end = np.mean(onset_bounds), np.mean(end_bounds)
        if both.sum() >= 2 and np.all(np.isfinite(fraction[both])):
            slope, intercept = np.polyfit(p[both], fraction[both], 1)
            if slope > 0:
                onset = float(np.clip(-intercept / slope, *onset_bounds))
                end = float(np.clip((1 - intercept) / slope, *end_bounds))
        out["from_phase"].append(old)
        out["to_phase"].append(new)
        out["onset_GPa"].append(float(onset))
        out["end_GPa"].append(float(end))
    return {k: np.array(v, dtype=object if k.endswith("phase") else float) for k, v in out.items()}
