"""The superlattice stage: every SAXS pattern's superlattice peaks, lattice, spacing and order.

The stage walks the series, because one pattern cannot always decide its
own order: two lattices may explain its peaks about as well (a bcc whose 200
line sits on a zero of the form factor looks hexagonal), or one peak alone
fits any lattice. Each pattern is surveyed on its own
(:func:`dacpipe.saxs.superlattice.survey_pattern`: peaks, form-factor
model, every indexing scored); the points whose best indexing stands on its
own (:func:`dacpipe.saxs.superlattice.assess`) anchor the series, and every
other point takes the indexing that continues its anchors: the anchors'
lattice, and the first order nearest the one they predict
(:func:`choose_along_series`). Then each point is measured under its
indexing (:func:`dacpipe.saxs.superlattice.measure_pattern`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from ..core.errors import InputError
from ..core.results import StageContext, StageResult
from .superlattice import (
    LatticeHypothesis,
    PatternSurvey,
    SaxsPeak,
    SuperlatticeResult,
    SuperlatticeSettings,
    ambiguity_note,
    assess,
    carried_hypotheses,
    measure_pattern,
    survey_pattern,
)

_FLOAT_KEYS = ("q1_A", "q1_err_A", "d_A", "d_err_A", "fwhm_q_A", "fwhm_q_err_A", "scherrer_nm", "scherrer_err_nm",
               "lattice_constant_nm", "lattice_constant_err_nm", "nn_distance_nm")

CARRY_TOLERANCE = 0.05
"""A point that cannot decide takes an indexing whose first order lies within
this relative distance of the one its anchors predict. The orders a lattice
confuses lie further apart (fcc 111 and 200: 15 %; bcc 110 and 200: 41 %),
and a superlattice compressed by a few percent between points stays within
it even when extrapolated from two anchors on one side."""


@dataclass(frozen=True)
class Choice:
    """The indexing a point of a series is measured under.

    Attributes
    ----------
    hypothesis : LatticeHypothesis or None
        None: no lattice explains the point's peaks, and its neighbours do
        not help.
    note : str or None
        Why the point's status is not simply "ok" (order from the neighbours,
        or ambiguous with no neighbour to decide).
    """

    hypothesis: LatticeHypothesis | None
    note: str | None = None


def predicted_q1(anchors: Sequence[tuple[int, float]], index: int) -> float | None:
    """First order predicted at point ``index`` from anchors (point, q1), in point order.

    Linear interpolation between the nearest anchors on either side; on one
    side only, linear extrapolation from the two nearest there (the series
    compresses steadily), or the nearest alone. None without anchors.
    """
    before = [(i, q) for i, q in anchors if i < index]
    after = [(i, q) for i, q in anchors if i > index]
    if before and after:
        (i0, q0), (i1, q1) = before[-1], after[0]
        return q0 + (q1 - q0) * (index - i0) / (i1 - i0)
    side = before[-2:] if before else after[:2]
    if not side:
        return None
    if len(side) == 1:
        return side[0][1]
    (i0, q0), (i1, q1) = side
    return q0 + (q1 - q0) * (index - i0) / (i1 - i0)


def choose_along_series(ranked: Sequence[Sequence[LatticeHypothesis] | None], *, tolerance_rel: float = 0.02,
                        carry: Callable[[int, str, float], Sequence[LatticeHypothesis]] | None = None,
                        carry_tolerance: float = CARRY_TOLERANCE) -> list[Choice]:
    """The indexing of every point of a series (see the module docstring).

    Parameters
    ----------
    ranked : sequence
        Per point, in measurement order, its indexings best first (None: the
        point has no pattern or no peak).
    tolerance_rel : float
        Indexings whose first orders differ by less are the same order.
    carry : callable, optional
        ``carry(point, lattice, q1)``: more indexings of that point with
        this lattice near this first order (for a point whose own list holds
        none: one peak, which alone is consistent with nothing).
    carry_tolerance : float
        See :data:`CARRY_TOLERANCE`.

    Returns
    -------
    list of Choice
        An anchor keeps its own best indexing. Any other point takes, among
        its indexings (and ``carry``'s) by the lattice of its nearest anchors
        with a first order within ``carry_tolerance`` of the predicted one,
        the best scored; failing that, its own best consistent indexing with
        a warning, or none.
    """
    n = len(ranked)
    assessed = [assess(r, tolerance_rel) if r else (None, None, False) for r in ranked]
    anchors = [(i, best.q1_A, best.lattice) for i, (best, _, confident) in enumerate(assessed) if confident]
    choices: list[Choice] = []
    for i in range(n):
        best, rival, confident = assessed[i]
        if confident:
            choices.append(Choice(best))
            continue
        if not ranked[i]:
            choices.append(Choice(None))
            continue
        q1 = predicted_q1([(j, q) for j, q, _ in anchors], i)
        lattices = {lat for j, _, lat in _nearest(anchors, i)}
        candidates: list[LatticeHypothesis] = []
        if q1 is not None:
            for lattice in sorted(lattices):
                found = [h for h in ranked[i] if h.lattice == lattice and h.n_explained >= 1]
                if carry is not None:
                    found += list(carry(i, lattice, q1))
                candidates += [h for h in found if abs(h.q1_A / q1 - 1.0) <= carry_tolerance]
        if candidates:
            chosen = max(candidates, key=lambda h: (h.score, -abs(h.q1_A / q1 - 1.0)))
            same = best is not None and chosen.lattice == best.lattice and abs(chosen.q1_A / best.q1_A - 1.0) <= \
                tolerance_rel
            note = None if same and best.score >= 0 else (
                f"order from the neighbouring points ({chosen.lattice}, d1 = {chosen.d_A:.2f} A near the "
                f"{2.0 * math.pi / q1:.2f} A they predict)")
            choices.append(Choice(chosen, note))
        elif best is not None:
            choices.append(Choice(best, ambiguity_note(best, rival)))
        else:
            choices.append(Choice(None))
    return choices


def _nearest(anchors, index):
    """The nearest anchor before and after ``index`` (either may be missing)."""
    before = [a for a in anchors if a[0] < index]
    after = [a for a in anchors if a[0] > index]
    return ([before[-1]] if before else []) + ([after[0]] if after else [])


def run(ctx: StageContext) -> StageResult:
    """The ``superlattice`` group of a run (see :func:`_run`), with one BLAS thread.

    The stage solves thousands of small least-squares problems (a few
    hundred bins by a few tens of columns); a second BLAS thread only adds
    its start-up and, on a loaded machine, waits for a core (measured: the
    survey of one pattern 2.0 s on one thread, 7.8 s on two with the other
    core busy). One thread also makes the results independent of the
    machine's core count.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _run(ctx)


def _run(ctx: StageContext) -> StageResult:
    """The ``superlattice`` group of a run: every SAXS pattern analysed along the series.

    Reads ``upstream["saxs"]`` (q, I, I_errors, status, ``@wavelength_A``)
    and the run's ``superlattice`` section. Points whose integration failed
    are skipped with ``"superlattice: no SAXS pattern"``; a point with no
    lattice gets NaN and the reason; warnings (an order from the
    neighbours, a first order not observed, a fit that fell back) are in
    the status.

    Returns
    -------
    StageResult
        stage ``superlattice``; datasets over points: ``q1_A, q1_err_A, d_A,
        d_err_A, fwhm_q_A, fwhm_q_err_A, scherrer_nm, scherrer_err_nm, order,
        lattice_constant_nm, lattice_constant_err_nm, nn_distance_nm,
        n_peaks``; extra ``saxs/peaks/{q_A, q_err_A, d_spacing_A, fwhm_q_A,
        amplitude, hkl}`` ``[N, max peaks]``, NaN (or "") padded.
    """
    saxs = ctx.upstream["saxs"]
    q_A, intensity, sigma = saxs["q"], saxs["I"], saxs["I_errors"]
    wavelength_A = float(saxs.attrs["wavelength_A"])
    saxs_status = saxs["status"]
    settings = SuperlatticeSettings.from_config(ctx.run.get("superlattice"))
    point_ids = ctx.sheet.point_ids
    n = len(point_ids)
    intensity = np.asarray(intensity, dtype=float).reshape(n, -1)
    sigma_rows = None if sigma is None else np.asarray(sigma, dtype=float).reshape(n, -1)

    # 1. Every pattern on its own (half the work; the measurement is the other half).
    surveys: list[PatternSurvey | None] = []
    reasons: list[str | None] = []
    for i in range(n):
        survey, reason = None, None
        if saxs_status[i] != "ok":
            reason = "no SAXS pattern"
        else:
            try:
                survey = survey_pattern(q_A, intensity[i], None if sigma_rows is None else sigma_rows[i], settings)
            except InputError as err:
                reason = str(err)
            except np.linalg.LinAlgError as err:  # a degenerate fit; never stop the run for one point
                reason = f"peak fit failed ({err})"
        surveys.append(survey)
        reasons.append(reason)
        ctx.progress(i + 1, 2 * n)

    # 2. The order along the series, 3. each point measured under it.
    choices = choose_along_series(
        [s.hypotheses if s is not None else None for s in surveys], tolerance_rel=settings.tolerance_rel,
        carry=lambda i, lattice, q1: carried_hypotheses(surveys[i], lattice, q1, CARRY_TOLERANCE, settings))
    table = {key: np.full(n, np.nan) for key in _FLOAT_KEYS}
    table["order"] = np.array([""] * n, dtype=object)
    table["n_peaks"] = np.zeros(n, dtype=np.int64)
    status = ["ok"] * n
    per_point: list[tuple[tuple[SaxsPeak, ...], tuple[str, ...]]] = []
    for i in range(n):
        notes: list[str] = []
        found: tuple[SaxsPeak, ...] = ()
        hkl: tuple[str, ...] = ()
        if surveys[i] is None:
            notes.append(reasons[i] or "no pattern")
        else:
            choice = choices[i]
            try:
                result = measure_pattern(surveys[i], choice.hypothesis, wavelength_A, settings,
                                         [choice.note] if choice.note else [])
            except np.linalg.LinAlgError as err:
                notes.append(f"peak fit failed ({err})")
            else:
                _fill(table, i, result)
                found, hkl = result.peaks, result.hkl
                notes.extend(result.notes)
        if notes:
            status[i] = "; ".join(f"superlattice: {note}" for note in notes)
            if notes != ["no SAXS pattern"]:
                ctx.warn_point(point_ids[i], status[i])
        per_point.append((found, hkl))
        ctx.progress(n + i + 1, 2 * n)

    width = max([len(f) for f, _ in per_point] + [1])
    extra = {name: np.full((n, width), np.nan) for name in ("q_A", "q_err_A", "d_spacing_A", "fwhm_q_A", "amplitude")}
    extra["hkl"] = np.full((n, width), "", dtype=object)
    for i, (found, hkl) in enumerate(per_point):
        for j, peak in enumerate(found):
            extra["q_A"][i, j] = peak.q_A
            extra["q_err_A"][i, j] = peak.q_err_A
            extra["d_spacing_A"][i, j] = peak.d_spacing_A
            extra["fwhm_q_A"][i, j] = peak.fwhm_q_A
            extra["amplitude"][i, j] = peak.amplitude
            extra["hkl"][i, j] = hkl[j] if j < len(hkl) else ""
    attrs = {"scherrer_k": float(settings.scherrer_k), "instrument_fwhm_deg": float(settings.instrument_fwhm_deg),
             "tolerance_rel": float(settings.tolerance_rel), "lattices": list(settings.lattices),
             "profile": settings.profile, "min_snr": float(settings.min_snr),
             "min_relative_amplitude": float(settings.min_relative_amplitude),
             "carry_tolerance": CARRY_TOLERANCE}
    return StageResult(stage="superlattice", point_ids=list(point_ids), datasets=table, status=status, attrs=attrs,
                       extra={f"saxs/peaks/{k}": v for k, v in extra.items()})


def _fill(table: dict, i: int, result: SuperlatticeResult) -> None:
    """Row ``i`` of the stage's table from one point's result."""
    values = (result.q1_A, result.q1_err_A, result.d_A, result.d_err_A, result.fwhm_q_A, result.fwhm_q_err_A,
              result.scherrer_nm, result.scherrer_err_nm, result.lattice_constant_nm, result.lattice_constant_err_nm,
              result.nn_distance_nm)
    for key, value in zip(_FLOAT_KEYS, values):
        table[key][i] = value
    table["order"][i] = result.order if result.hypothesis is not None else "unknown"
    table["n_peaks"][i] = len(result.peaks)
