"""Read 1D powder patterns integrated elsewhere (the sheet's ``pattern`` column).

Formats, told apart by the file itself:

Dioptas / pyFAI ``.xy`` (also ``.dat``)
    ``#`` comment lines (pyFAI's calibration block, ``# Wavelength: 3.344e-11``
    in metres, and a last comment naming the columns: ``# 2th_deg I`` or
    ``# q_nm^-1 I``), then two or three columns.
Fit2D ``.chi``
    Four header lines: a title, the x-axis label (``2-Theta Angle (Degrees)``,
    ``Q (nm-1)``...), the y-axis label and the number of points; then the
    columns.
GSAS / GSAS-II ``.xye``, and plain ``.dat`` / ``.txt``
    Two (x, I) or three (x, I, sigma) columns, optionally after title or
    comment lines (``#``, or a ``/* ... */`` block).

What the x column is
--------------------
The header decides when it says (a column label or axis label naming
2theta, q in 1/nm or q in 1/A; the last header line that names one wins).
A file whose header says nothing takes the config's ``xrd.pattern_unit``;
with ``auto`` (the default) it is refused rather than guessed, because a
2theta axis read as q (or the reverse) gives plausible-looking, wrong
lattices. A config unit that contradicts the header is refused as well.

Wavelength
----------
Needed to turn 2theta into q (and to give the run its two_theta axis). The
config's ``xrd.wavelength_A`` wins when given (it also overrides PONI files);
else the header's ``Wavelength`` (pyFAI writes metres, ``3.344e-11``: a bare
value below 1e-6 is taken as metres, otherwise as angstrom unless a unit
follows). :attr:`IntegratedPattern.header_wavelength_A` keeps the header's
value for the check against the run's.

Errors
------
A third column is the standard error of I. Without one, the error of each
point is estimated from the pattern's own point-to-point scatter
(:func:`dacpipe.core.noise.running_difference_sigma`, second differences over
a running window); patterns integrated with pixel splitting have bins that
share pixels, whose scatter understates the noise, and the structural fits
scale their errors by the reduced chi^2 anyway.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.noise import running_difference_sigma
from ..core.units import q_from_two_theta

PATTERN_UNITS = ("auto", "2th_deg", "q_A^-1", "q_nm^-1")
MIN_POINTS = 10
NOISE_WINDOW = 31  # points of the running median of the estimated errors
_WAVELENGTH_RANGE_A = (0.01, 100.0)

# Labels of the x axis, checked in this order on each header line.
_UNIT_LABELS = (
    ("2th_rad", re.compile(r"2th_rad|2[-_ ]?theta.{0,12}\(?rad", re.I)),
    ("2th_deg", re.compile(r"2th|2[-_ ]?theta|two[-_ ]?theta|2\u03b8|\btth\b", re.I)),
    ("q_nm^-1", re.compile(r"\bq\b.{0,12}(nm\^?-1|1/nm|nm-1|inv(erse)?[ _]?nm)|q_nm", re.I)),
    ("q_A^-1", re.compile(r"\bq\b.{0,12}(a\^?-1|1/a\b|\u00c5\^?-1|1/\u00c5|inv(erse)?[ _]?a(ngstrom)?)|q_a", re.I)),
)
_WAVELENGTH = re.compile(r"wave[-_ ]?length\s*(?:\[\s*(?P<unit1>[a-z\u00c5]+)\s*\])?\s*[:=]?\s*"
                         r"(?P<value>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*(?P<unit2>[a-z\u00c5]+)?", re.I)
_TO_ANGSTROM = {"a": 1.0, "\u00e5": 1.0, "angstrom": 1.0, "angstroms": 1.0, "nm": 10.0, "m": 1e10}


@dataclass(frozen=True, eq=False)
class IntegratedPattern:
    """One 1D pattern as read from its file, on a q axis.

    Attributes
    ----------
    q_A : ndarray
        Scattering vector (1/angstrom), increasing.
    intensity, sigma : ndarray
        I and its standard error per point (NaN where unknown).
    unit : str
        What the file's x column was: ``"2th_deg"``, ``"2th_rad"``,
        ``"q_A^-1"`` or ``"q_nm^-1"``.
    wavelength_A : float
        The wavelength used (config's, else the header's); NaN for a q file
        with neither.
    header_wavelength_A : float
        The header's wavelength, NaN when it gives none.
    sigma_from_file : bool
        True when the file has an error column; False when the errors were
        estimated from the scatter.
    source : str
        The file read.
    """

    q_A: np.ndarray
    intensity: np.ndarray
    sigma: np.ndarray
    unit: str
    wavelength_A: float
    header_wavelength_A: float
    sigma_from_file: bool
    source: str


def read_pattern(path: str | os.PathLike, *, unit: str = "auto",
                 wavelength_A: float | None = None) -> IntegratedPattern:
    """Read a Dioptas/pyFAI ``.xy``, Fit2D ``.chi`` or GSAS-style ``.xye``/``.dat`` pattern.

    Parameters
    ----------
    path : str or Path
    unit : {"auto", "2th_deg", "q_A^-1", "q_nm^-1"}
        The x column's unit for a file whose header does not say (config
        ``xrd.pattern_unit``); ``"auto"`` refuses such a file.
    wavelength_A : float, optional
        Overrides the header's wavelength (config ``xrd.wavelength_A``).

    Returns
    -------
    IntegratedPattern

    Raises
    ------
    InputError
        One line naming the file and the reason: missing, empty or binary
        file; no numeric rows or fewer than :data:`MIN_POINTS`; rows with
        other than 2 or 3 columns; an x column that is not finite or not
        monotonic; negative errors; a Fit2D point count that disagrees; an
        unknown x unit; a 2theta pattern without a wavelength.
    """
    path = Path(path)
    if unit not in PATTERN_UNITS:
        raise InputError(f"unknown pattern unit {unit!r}; use one of {', '.join(PATTERN_UNITS)}", path)
    text = _read_text(path)
    lines = text.splitlines()
    fit2d = path.suffix.lower() == ".chi"
    if fit2d:
        header, declared = _fit2d_header(lines, path), _fit2d_count(lines, path)
        start = 4
    else:
        header, declared = _split_header(lines), None
        start = len(header)
    rows = _numeric_rows(lines, start, path)
    if declared is not None and declared != len(rows):
        raise InputError(f"Fit2D header announces {declared} points, the file has {len(rows)}", path)
    if len(rows) < MIN_POINTS:
        raise InputError(f"{len(rows)} data rows; a pattern needs at least {MIN_POINTS}", path)
    data = np.array(rows, dtype=float)
    x, intensity = data[:, 0], data[:, 1]
    sigma = data[:, 2] if data.shape[1] == 3 else None
    if not np.all(np.isfinite(x)):
        raise InputError("the x column has values that are not finite numbers", path)
    step = np.diff(x)
    if np.all(step < 0):  # written high to low: turn it round
        x, intensity = x[::-1], intensity[::-1]
        sigma = None if sigma is None else sigma[::-1]
    elif not np.all(step > 0):
        raise InputError("the x column is not strictly increasing (or decreasing)", path)
    if sigma is not None and np.any(sigma < 0):
        raise InputError("the error column has negative values", path)

    file_unit = _unit_from_header(header)
    if file_unit is None:
        if unit == "auto":
            raise InputError("the header does not say whether the x column is 2theta or q (1/nm or 1/A); "
                             "set xrd.pattern_unit", path)
        file_unit = unit
    elif unit != "auto" and unit != file_unit:
        raise InputError(f"xrd.pattern_unit is {unit} but the file's header says {file_unit}", path)

    header_wavelength = _wavelength_from_header(header)
    used = float(wavelength_A) if wavelength_A is not None else header_wavelength
    if file_unit.startswith("2th"):
        if not math.isfinite(used):
            raise InputError("the pattern is in 2theta and neither its header nor xrd.wavelength_A gives "
                             "the wavelength", path)
        two_theta_deg = np.degrees(x) if file_unit == "2th_rad" else x
        if two_theta_deg[0] < 0 or two_theta_deg[-1] >= 180:
            raise InputError(f"2theta from {two_theta_deg[0]:g} to {two_theta_deg[-1]:g} deg is not a "
                             "diffraction angle (is the x column q?)", path)
        q_A = q_from_two_theta(two_theta_deg, used)
    else:
        q_A = x / 10.0 if file_unit == "q_nm^-1" else x
        if q_A[0] < 0:
            raise InputError("the q column has negative values", path)
    if sigma is None:
        finite = np.isfinite(intensity)
        sigma = np.full_like(intensity, np.nan)
        if finite.sum() > NOISE_WINDOW:
            sigma[finite] = running_difference_sigma(intensity[finite], NOISE_WINDOW)
        sigma[sigma <= 0] = np.nan  # a flat stretch says nothing about the noise
    return IntegratedPattern(q_A=np.ascontiguousarray(q_A), intensity=np.ascontiguousarray(intensity),
                             sigma=np.ascontiguousarray(sigma), unit=file_unit, wavelength_A=used,
                             header_wavelength_A=header_wavelength, sigma_from_file=data.shape[1] == 3,
                             source=str(path))


def _read_text(path: Path) -> str:
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a directory, not a file", path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file ({type(exc).__name__}: {exc.strerror or exc})", path) from None
    if not raw.strip():
        raise InputError("empty file", path)
    if b"\x00" in raw[:4096]:
        raise InputError("not a text pattern (binary content)", path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _fit2d_header(lines: list[str], path: Path) -> list[str]:
    """Fit2D .chi: title, x label, y label, number of points, then data."""
    if len(lines) < 5:
        raise InputError("a Fit2D .chi file has 4 header lines before its data; this one is too short", path)
    return lines[:3]


def _fit2d_count(lines: list[str], path: Path) -> int:
    try:
        return int(lines[3].split()[0])
    except (ValueError, IndexError):
        raise InputError(f"Fit2D .chi line 4 should be the number of points, not {lines[3].strip()[:40]!r}",
                         path) from None


def _split_header(lines: list[str]) -> list[str]:
    """The lines before the first row of numbers (comments, titles, ``/* */`` blocks)."""
    header = []
    in_block = False
    for line in lines:
        stripped = line.strip()
        if in_block:
            header.append(line)
            in_block = "*/" not in stripped
            continue
        if stripped.startswith("/*"):
            header.append(line)
            in_block = "*/" not in stripped[2:]
            continue
        if not stripped or stripped.startswith(("#", "!", ";", "%")) or _numbers(stripped) is None:
            header.append(line)
            continue
        break
    return header


def _numbers(line: str) -> list[float] | None:
    cells = line.replace(",", " ").split()
    try:
        return [float(c) for c in cells] if cells else None
    except ValueError:
        return None


def _numeric_rows(lines: list[str], start: int, path: Path) -> list[list[float]]:
    """Rows of numbers from ``lines[start:]``; comment lines among them are skipped."""
    rows = []
    width = None
    for number, line in enumerate(lines[start:], start=start + 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "!", ";", "%")):
            continue
        values = _numbers(stripped)
        if values is None:
            raise InputError(f"line {number} is not numbers: {stripped[:40]!r}", path)
        if len(values) not in (2, 3):
            raise InputError(f"line {number} has {len(values)} columns; a pattern has 2 (x, I) or 3 (x, I, sigma)",
                             path)
        if width is None:
            width = len(values)
        elif len(values) != width:
            raise InputError(f"line {number} has {len(values)} columns, the lines before it {width}", path)
        rows.append(values)
    if not rows:
        raise InputError("no rows of numbers in the file", path)
    return rows


def _unit_from_header(header: list[str]) -> str | None:
    for line in reversed(header):
        if _WAVELENGTH.search(line):
            continue  # "Wavelength: 0.41 A" names no axis
        for name, label in _UNIT_LABELS:
            if label.search(line):
                return name
    return None


def _wavelength_from_header(header: list[str]) -> float:
    """The header's wavelength in angstrom, NaN when none (or an implausible one)."""
    value_A = math.nan
    for line in header:  # the last one wins, as in concatenated PONI blocks
        match = _WAVELENGTH.search(line)
        if not match:
            continue
        value = float(match["value"])
        unit = (match["unit1"] or match["unit2"] or "").lower()
        if unit in _TO_ANGSTROM:
            value_A = value * _TO_ANGSTROM[unit]
        else:  # a bare number: pyFAI writes metres
            value_A = value * 1e10 if value < 1e-6 else value
    low, high = _WAVELENGTH_RANGE_A
    return value_A if math.isfinite(value_A) and low <= value_A <= high else math.nan
