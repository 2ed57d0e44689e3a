"""Phase transitions of a series, in either direction, from the phases found at each point.

A series is walked in measurement order, whatever its pressures do. A
transition from A to B starts where B appears (absent at the previous point
with a pattern, present here) while A is present, and ends where A is gone;
its direction is "up" when the pressure rose across it, "down" when it fell
(a reverse transition on decompression, after a hysteresis, is found like a
forward one). A phase that appears with none leaving (a second phase
nucleating) gives a transition from "" and one that vanishes with none
arriving a transition to "" ; a transition still under way at the last point
has no end (NaN).

Onset and end pressures: over the points where both phases coexist, B's
share of the two, x_B / (x_A + x_B), is fitted by a straight line in
pressure; its crossings of 0 and 1 are the onset and end, each kept within
the pressures of the points either side of where the presence changed
(with one coexistence point or none, the midpoints of those bounds).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..core.results import StageContext, StageResult

COLUMNS = ("from_phase", "to_phase", "onset_GPa", "end_GPa", "direction", "onset_point", "end_point")


def find_transitions(names: list[str], present: dict[str, np.ndarray], fraction: dict[str, np.ndarray],
                     pressure_GPa: np.ndarray, point_ids: list[str], usable: np.ndarray | None = None
                     ) -> dict[str, np.ndarray]:
    """The transitions of a series (module docstring), as columns for ``transitions/``.

    Parameters
    ----------
    names : list of str
        The phases, as in ``present`` and ``fraction``.
    present, fraction : dict of name -> array [N]
    pressure_GPa : array [N]
    point_ids : list of str
        For ``onset_point`` (the first point with B) and ``end_point`` (the first without A).
    usable : bool array [N], optional
        Points with a pattern; the others are skipped.
    """
    p = np.asarray(pressure_GPa, dtype=float)
    n = len(p)
    valid = np.flatnonzero(np.ones(n, bool) if usable is None else np.asarray(usable, bool))
    rows = []
    for pos in range(1, len(valid)):
        j, prev = valid[pos], valid[pos - 1]
        appeared = [b for b in names if present[b][j] and not present[b][prev]]
        vanished = [a for a in names if present[a][prev] and not present[a][j]]
        for b in appeared:
            # the phases present before that leave while b stays
            leaving = []
            for a in names:
                if a == b or not present[a][prev]:
                    continue
                end_pos = next((q for q in range(pos, len(valid)) if not present[a][valid[q]]), None)
                if end_pos is not None and not all(present[b][valid[q]] for q in range(pos, end_pos + 1)):
                    continue  # b left again before a did: not a's replacement
                leaving.append((a, end_pos))
            if not leaving:
                rows.append(_row("", b, valid, pos, None, p, point_ids, fraction))
            for a, end_pos in leaving:
                rows.append(_row(a, b, valid, pos, end_pos, p, point_ids, fraction))
        for a in vanished:
            replaced = any(a == row["from_phase"] and row["end_pos"] == pos for row in rows)
            if not replaced and not any(present[b][j] and not present[b][prev] for b in names):
                rows.append(_row(a, "", valid, pos, pos, p, point_ids, fraction))
    out = {key: [row[key] for row in rows] for key in COLUMNS}
    return {key: np.array(values, dtype=float if key.endswith("_GPa") else object) for key, values in out.items()}


def _row(a: str, b: str, valid, start_pos: int, end_pos: int | None, p, point_ids, fraction) -> dict:
    """One transition: a -> b appearing at valid[start_pos], a gone at valid[end_pos] (None: not yet)."""
    j, prev = valid[start_pos], valid[start_pos - 1]
    onset_bounds = (p[prev], p[j])
    if end_pos is None:
        end_bounds = None
        coexist = valid[start_pos:]
    else:
        end_bounds = (p[valid[end_pos - 1]], p[valid[end_pos]])
        coexist = valid[start_pos:end_pos]
    onset = float(np.mean(onset_bounds))
    end = float(np.mean(end_bounds)) if end_bounds is not None else math.nan
    if a and b and len(coexist) >= 2:
        xa, xb = fraction[a][coexist], fraction[b][coexist]
        share = xb / (xa + xb)
        pp = p[coexist]
        ok = np.isfinite(share) & np.isfinite(pp)
        if ok.sum() >= 2 and np.ptp(pp[ok]) > 0:
            slope, intercept = np.polyfit(pp[ok], share[ok], 1)
            if slope != 0:
                onset = float(np.clip(-intercept / slope, min(onset_bounds), max(onset_bounds)))
                if end_bounds is not None:
                    end = float(np.clip((1 - intercept) / slope, min(end_bounds), max(end_bounds)))
    last = valid[end_pos] if end_pos is not None else valid[-1]
    rising = p[last] > p[prev] if np.isfinite(p[last]) and np.isfinite(p[prev]) else True
    return {"from_phase": a, "to_phase": b, "onset_GPa": onset, "end_GPa": end,
            "direction": "up" if rising else "down", "onset_point": point_ids[j],
            "end_point": point_ids[valid[end_pos]] if end_pos is not None else "", "end_pos": end_pos}


# The phase stage's step over the whole series, after its chunks are joined: here, not
# in xrd/stage.py, so that the join's job does not import the fitting code (0.55 s).


def finish_phases(ctx: StageContext, result: StageResult) -> StageResult:
    """``result`` with the transitions of its series (``transitions/``,
    :func:`~dacpipe.xrd.transitions.find_transitions`) from the phases found
    at its points and their pressures (``ctx.upstream["pressure"]``): the
    step that spans the chunks the phase stage is computed in
    (:data:`dacpipe.run.stages.LEAD_IN_POINTS`). The markers are left out."""
    markers = set(result.attrs["markers"])
    sample = [key for key in result.attrs["phases"] if key not in markers]
    pressure_GPa = np.asarray(ctx.upstream["pressure"]["pressure_GPa"], dtype=float)
    present = {key: np.asarray(result.datasets[f"{key}/present"], bool) for key in sample}
    fraction = {key: np.nan_to_num(np.asarray(result.datasets[f"{key}/fraction"], float)) for key in sample}
    # a point was fitted where it has a reduced chi^2; the others had no pattern to fit
    fitted = np.isfinite(np.asarray(result.datasets["reduced_chi2"], float))
    transitions = find_transitions(sample, present, fraction, pressure_GPa, list(result.point_ids), usable=fitted)
    warning = no_phase_warning(present, fitted, ctx.upstream.get("xrd"))
    if warning:
        ctx.warn(f"{ctx.run_id}: {warning}")
    extra = {k: v for k, v in result.extra.items() if not k.startswith("transitions/")}
    extra.update({f"transitions/{k}": v for k, v in transitions.items()})
    return dataclasses.replace(result, extra=extra)


# Share of the fitted patterns without any configured phase above which the
# run is suspected of a wrong wavelength or geometry (every line shifted)
# rather than of points beyond the phases listed.
NO_PHASE_WARN_SHARE = 0.5
NO_PHASE_MIN_POINTS = 3


def no_phase_warning(present: dict[str, np.ndarray], fitted: np.ndarray, xrd=None) -> str:
    """The warning of a run where no configured phase explains most patterns, or "".

    A wrong wavelength in the PONI (or a wrong distance) scales every line's
    q, so that no phase's lines meet the measured ones at any point: the
    fits then keep no phase. Phases simply not listed would leave some
    points explained. Judged on the points fitted (those with a pattern),
    at least :data:`NO_PHASE_MIN_POINTS` of them.
    """
    fitted = np.asarray(fitted, bool)
    n_fitted = int(fitted.sum())
    if n_fitted < NO_PHASE_MIN_POINTS:
        return ""
    any_present = np.zeros(len(fitted), bool)
    for flags in present.values():
        any_present |= np.asarray(flags, bool)
    empty = int(np.count_nonzero(fitted & ~any_present))
    if empty <= NO_PHASE_WARN_SHARE * n_fitted:
        return ""
    wavelength = ""
    if xrd is not None and "wavelength_A" in xrd.attrs:
        wavelength = f" ({float(xrd.attrs['wavelength_A']):.5g} A)"
    return (f"phases: no configured phase explains {empty} of {n_fitted} patterns: check the wavelength"
            f"{wavelength} and the detector distance of the PONI file, then the phase list")
