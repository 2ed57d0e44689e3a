"""Integrated patterns as input.

A point whose sheet row gives a ``pattern`` (a 1D pattern integrated
elsewhere: Dioptas, Fit2D, GSAS; read by :mod:`dacpipe.io.patterns`) is not
integrated: the XRD stage takes its pattern, and the phases and EOS stages
run on it unchanged. Points of the same run with images are integrated as
usual; a point with both uses the pattern.

One q axis per run
------------------
The store holds one q axis for all the points of a run (``xrd/q``). It is
the integration's when some points are integrated, else the first pattern's.
A pattern on another axis is resampled onto it by linear interpolation, its
errors propagated as for independent points
(sigma^2 = (1 - t)^2 sigma_i^2 + t^2 sigma_(i+1)^2), and NaN outside the
pattern's range; the point's ``warnings`` says it was resampled. Patterns
exported together (Dioptas' batch export, one geometry) share one axis and
are taken as they are.

What the store records
----------------------
``xrd/integration`` per point: ``"integrated"``, ``"skipped, pattern given"``
or ``""`` (nothing measured); ``@integration`` on the group: ``"integrated"``,
``"skipped, pattern given"`` or ``"mixed"``; ``xrd/warnings`` per point (a
resampled pattern, a header wavelength that disagrees with the run's). The
status stays ``"ok"`` for a usable pattern, so that the structural stage
uses it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, Sequence

import numpy as np

from ..core.errors import InputError
from ..core.results import StageContext, StageResult
from ..core.units import two_theta_from_q
from ..io.patterns import read_pattern
from ..io.poni import WAVELENGTH_RTOL
from ..io.refs import file_part, file_record

SKIPPED = "skipped, pattern given"
INTEGRATED = "integrated"
AXIS_RTOL = 1e-7  # two q axes closer than this (relative) are the same axis (text files round to ~1e-9)


def has_patterns(sheet) -> bool:
    """Whether any point of the sheet gives an integrated pattern."""
    return any("pattern" in p.files for p in sheet.points)


def run_with_patterns(ctx: StageContext, integrate_images: Callable[[StageContext], StageResult]) -> StageResult:
    """The XRD stage of a sheet with a ``pattern`` column.

    Parameters
    ----------
    ctx : StageContext
        The xrd stage's context.
    integrate_images : callable
        The image integration (:func:`dacpipe.integration.stage.run`), called
        on the points without a pattern when any of them has an image.

    Returns
    -------
    StageResult
        As the integration's: I, I_errors [N, npt] on one q axis, status,
        plus ``integration`` and ``warnings`` per point.
    """
    sheet, kind = ctx.sheet, ctx.stage
    section = ctx.run[kind]
    points = sheet.points
    n = len(points)
    given = [i for i, p in enumerate(points) if "pattern" in p.files]
    others = [i for i in range(n) if i not in set(given)]
    integration = [""] * n
    warnings = [""] * n
    status = ["ok"] * n

    images = None
    if any(kind in points[i].files for i in others):
        sub = replace(ctx, sheet=replace(sheet, points=tuple(points[i] for i in others)))
        images = integrate_images(sub)
    config_wavelength = section.get("wavelength_A")
    patterns: dict[int, object] = {}
    inputs: list = []
    for i in given:
        path = file_part(points[i].files["pattern"])
        try:
            patterns[i] = read_pattern(path, unit=section.get("pattern_unit", "auto"), wavelength_A=config_wavelength)
        except InputError as err:
            err = err.with_path(path)
            status[i] = f"{kind} skipped: {err}"
            ctx.warn_point(points[i].point, str(err))
        inputs.append(file_record(path))
        ctx.progress(len(inputs), len(given))

    if images is not None:
        q_A = np.asarray(images.axes["q"], dtype=float)
        wavelength_A = float(images.attrs["wavelength_A"])
        attrs = dict(images.attrs)
        axes = {k: v for k, v in images.axes.items()}
        npt = len(q_A)
    else:
        first = next((patterns[i] for i in given if i in patterns), None)
        q_A = first.q_A if first is not None else np.full(int(section.get("npt", 3000)), np.nan)
        wavelength_A = _run_wavelength(config_wavelength, [patterns[i] for i in given if i in patterns])
        npt = len(q_A)
        attrs = {"poni": "", "wavelength_A": wavelength_A, "unit": section.get("unit", "q_A^-1"), "npt": npt,
                 "method": "", "mask": ""}
        axes = {"q": q_A, "two_theta": two_theta_from_q(q_A, wavelength_A) if math.isfinite(wavelength_A)
                else np.full(npt, np.nan)}

    intensity = np.full((n, npt), np.nan)
    sigma = np.full((n, npt), np.nan)
    extra_datasets: dict[str, np.ndarray] = {}
    if images is not None:
        rows = np.array(others)
        intensity[rows] = images.datasets["I"]
        sigma[rows] = images.datasets["I_errors"]
        for j, i in enumerate(others):
            status[i] = images.status[j]
            if status[i] == "ok":
                integration[i] = INTEGRATED
        if "warnings" in images.datasets:
            for j, i in enumerate(others):
                warnings[i] = str(images.datasets["warnings"][j])
        for name, values in images.datasets.items():
            # per-point datasets of the integration (spot counts...): NaN / "" on pattern rows
            if name in ("I", "I_errors", "warnings") or name.startswith("cake/"):
                continue
            values = np.asarray(values)
            full = np.full((n, *values.shape[1:]), "" if values.dtype.kind in "OUS" else np.nan,
                           dtype=object if values.dtype.kind in "OUS" else float)
            full[rows] = values
            extra_datasets[name] = full
        for name, values in images.datasets.items():
            if name.startswith("cake/"):
                values = np.asarray(values)
                full = np.full((n, *values.shape[1:]), np.nan, dtype=values.dtype)
                full[rows] = values
                extra_datasets[name] = full
        inputs = list(images.inputs) + inputs
    else:
        for i in others:
            status[i] = f"{kind}: not measured"

    for i, pattern in patterns.items():
        notes = []
        if not math.isfinite(wavelength_A):
            status[i] = (f"{kind} skipped: {pattern.source}: no wavelength for the run (none in the pattern "
                         "headers); set xrd.wavelength_A")
            continue
        if math.isfinite(pattern.header_wavelength_A) and \
                abs(pattern.header_wavelength_A - wavelength_A) > WAVELENGTH_RTOL * wavelength_A:
            notes.append(f"header wavelength {pattern.header_wavelength_A:.6g} A differs from the run's "
                         f"{wavelength_A:.6g} A")
        if _same_axis(pattern.q_A, q_A):
            intensity[i], sigma[i] = pattern.intensity, pattern.sigma
        else:
            intensity[i], sigma[i] = resample(q_A, pattern.q_A, pattern.intensity, pattern.sigma)
            notes.append("pattern resampled onto the run's q axis")
        if not np.any(np.isfinite(intensity[i])):
            status[i] = f"{kind} skipped: {pattern.source}: the pattern does not overlap the run's q range"
            continue
        integration[i] = SKIPPED
        if notes:
            warnings[i] = "; ".join(filter(None, [warnings[i], *notes]))
            for note in notes:
                ctx.warn_point(points[i].point, f"{pattern.source}: {note}")

    kinds = {v for v in integration if v}
    attrs["integration"] = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "")
    attrs["patterns_given"] = len(patterns)
    datasets = {"I": intensity, "I_errors": sigma, **extra_datasets,
                "integration": np.array(integration, dtype=object), "warnings": np.array(warnings, dtype=object)}
    return StageResult(stage=kind, point_ids=sheet.point_ids, status=status, attrs=attrs, inputs=inputs,
                       datasets=datasets, axes=axes)


def resample(q_new: np.ndarray, q: np.ndarray, intensity: np.ndarray,
             sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A pattern linearly interpolated onto ``q_new``, errors propagated.

    Between points i and i+1 at fraction t, I = (1 - t) I_i + t I_(i+1) and,
    for independent errors, sigma^2 = (1 - t)^2 sigma_i^2 + t^2 sigma_(i+1)^2.
    NaN outside ``q``'s range.
    """
    q_new = np.asarray(q_new, dtype=float)
    out_i = np.full(q_new.shape, np.nan)
    out_s = np.full(q_new.shape, np.nan)
    inside = (q_new >= q[0]) & (q_new <= q[-1])
    k = np.clip(np.searchsorted(q, q_new[inside], side="right") - 1, 0, len(q) - 2)
    t = (q_new[inside] - q[k]) / (q[k + 1] - q[k])
    out_i[inside] = (1 - t) * intensity[k] + t * intensity[k + 1]
    out_s[inside] = np.sqrt(((1 - t) * sigma[k]) ** 2 + (t * sigma[k + 1]) ** 2)
    return out_i, out_s


def _same_axis(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=AXIS_RTOL, atol=0))


def _run_wavelength(config_wavelength, patterns: Sequence) -> float:
    """The config's wavelength, else the first pattern's that has one."""
    if config_wavelength is not None:
        return float(config_wavelength)
    for pattern in patterns:
        if math.isfinite(pattern.wavelength_A):
            return float(pattern.wavelength_A)
    return math.nan
