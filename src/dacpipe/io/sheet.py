"""The sample sheet (``points.tsv``): one row per pressure point.

Columns are those of the contract (``shared/spec/contract.md`` section 1),
plus ``pressure_err_GPa`` beside ``pressure_GPa`` and ``monitor`` (beam
monitor counts, to normalize SAXS frames), and ``pattern``: a 1D pattern
integrated elsewhere (``.xy``, ``.chi``, ``.xye``, ``.dat``; read by
:mod:`dacpipe.io.patterns`), which the XRD stage takes instead of
integrating the point's image. Lines starting with ``#``
are comments (``dacpipe sheet`` lists the files it could not pair there).
Paths are relative to the sheet's own folder.

Problems of the sheet as a whole (no ``point`` column, an unknown column, a
repeated point id) raise :class:`~dacpipe.core.errors.SheetError`; problems of one
cell (a number that is not a number) are kept on the point, so that the
point is marked in the store and the others go on.
"""

from __future__ import annotations

import csv
import difflib
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..core.errors import InputError, SheetError
from .refs import parse_reference, resolve

FILE_COLUMNS = ("xrd", "saxs", "ruby_before", "ruby_after", "ruby", "absorption", "pl", "pattern")
NUMBER_COLUMNS = ("pressure_GPa", "pressure_err_GPa", "temperature_K", "monitor")
COLUMNS = ("point", *FILE_COLUMNS, *NUMBER_COLUMNS, "note")
DEFAULT_TEMPERATURE_K = 298.0

GAUGE_POSITION_COLUMN = re.compile(r"ruby_[2-9]")
"""Extra gauge columns ``ruby_2`` ... ``ruby_9``: the same gauge at other places
of the chamber (more ruby balls), measured with the point's ``ruby`` or
``ruby_before`` spectrum. Their pressures' spread is the point's pressure
gradient (:mod:`dacpipe.pressure.hydrostatic`); the point's pressure stays
that of its ``ruby``/``ruby_before``/``ruby_after`` columns (the ruby by the sample)."""


def is_gauge_position_column(name: str) -> bool:
    """Whether ``name`` is an extra gauge column (:data:`GAUGE_POSITION_COLUMN`)."""
    return GAUGE_POSITION_COLUMN.fullmatch(name) is not None


@dataclass(frozen=True)
class Point:
    """One pressure point of a run.

    ``files`` maps a file column to the path named in the sheet (resolved
    against the sheet's folder; an HDF5 ``file.h5::/path@N`` reference keeps
    its suffix) and is absent for empty cells. ``problems`` lists cells that
    could not be read, as one-line reasons, and sheet-wide warnings (an image
    another point names too: :func:`shared_image_warnings`).
    """

    point: str
    files: dict[str, str] = field(default_factory=dict)
    pressure_GPa: float = math.nan
    pressure_err_GPa: float = math.nan
    temperature_K: float = DEFAULT_TEMPERATURE_K
    monitor: float = math.nan      # beam monitor counts of the exposure, for SAXS normalization
    note: str = ""
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sheet:
    path: Path
    columns: tuple[str, ...]
    points: tuple[Point, ...]

    @property
    def point_ids(self) -> list[str]:
        return [p.point for p in self.points]

    def ruby_columns(self) -> tuple[str, ...]:
        """The gauge-spectrum columns present, in measurement order."""
        return tuple(c for c in ("ruby_before", "ruby", "ruby_after") if c in self.columns)

    def gauge_position_columns(self) -> tuple[str, ...]:
        """The extra gauge columns present (``ruby_2``, ``ruby_3``, ...), in number order."""
        return tuple(sorted(c for c in self.columns if is_gauge_position_column(c)))


def tsv_rows(text: str) -> list[tuple[int, list[str]]]:
    """The rows of tab-separated text as (line number, stripped cells), comments
    (``#``) and blank lines left out: the one reader of sheets, their limited
    copies under ``dacpipe watch`` and the synthetic truth tables."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append((number, [c.strip() for c in next(csv.reader([line], delimiter="\t"))]))
    return rows


def read_sheet(path: str | Path) -> Sheet:
    """Read and check a sample sheet.

    Raises
    ------
    SheetError
        For a missing or empty sheet, a missing ``point`` column, an unknown
        column (with the closest known name), or a repeated point id.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SheetError(f"{path}: sample sheet not found") from None
    except IsADirectoryError:
        raise SheetError(f"{path}: is a folder, not a sample sheet (name the .tsv file; "
                         f"`dacpipe sheet FOLDER` writes a first one)") from None
    except OSError as exc:  # permission denied, an I/O error
        raise SheetError(f"{path}: cannot read the sample sheet ({(exc.strerror or str(exc)).lower()})") from None
    except UnicodeDecodeError:
        raise SheetError(f"{path}: not a text file (a sample sheet is tab-separated text)") from None
    rows = tsv_rows(text)
    if not rows:
        raise SheetError(f"{path}: empty sample sheet (expected a header row with a 'point' column)")
    (header_line_no, header), body = rows[0], rows[1:]
    header_line = text.splitlines()[header_line_no - 1]
    if "point" not in header:
        hint = " (columns must be separated by tabs)" if "\t" not in header_line else ""
        raise SheetError(f"{path}: line {header_line_no}: no 'point' column in the header{hint}")
    for name in header:
        if name not in COLUMNS and not is_gauge_position_column(name):
            close = difflib.get_close_matches(name, COLUMNS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SheetError(f"{path}: unknown column {name!r}{hint}; known columns: {', '.join(COLUMNS)}")
    repeated = {h for h in header if header.count(h) > 1}
    if repeated:
        raise SheetError(f"{path}: column {sorted(repeated)[0]!r} appears twice in the header")
    if "ruby" in header and ("ruby_before" in header or "ruby_after" in header):
        raise SheetError(f"{path}: use either a 'ruby' column or 'ruby_before'/'ruby_after', not both")

    folder = path.parent
    points: list[Point] = []
    first_row: dict[str, int] = {}
    for line_no, cells in body:
        if len(cells) > len(header):
            raise SheetError(f"{path}: line {line_no}: {len(cells)} cells but {len(header)} columns in the header")
        row = dict(zip(header, cells + [""] * (len(header) - len(cells))))
        point_id = row["point"]
        if not point_id:
            raise SheetError(f"{path}: line {line_no}: empty point id")
        if point_id in first_row:
            raise SheetError(f"{path}: line {line_no}: point {point_id!r} repeats line {first_row[point_id]}")
        first_row[point_id] = line_no
        points.append(_point_from_row(row, folder))
    if not points:
        raise SheetError(f"{path}: the sample sheet has a header but no points")
    return Sheet(path=path, columns=tuple(header), points=shared_image_warnings(points))


IMAGE_COLUMNS = ("xrd", "saxs")


def shared_image_warnings(points) -> tuple[Point, ...]:
    """The points, each image that another point names too (same file, same
    dataset and frame or frame range) added to both points' ``problems`` as a warning.

    One exposure cannot be two pressure points: a copied sheet line whose
    image was not updated would give the same pattern twice at two
    pressures. Files are compared by their absolute path (no file is opened:
    comparing contents would mean reading every image of a run here).
    """
    users: dict[tuple, list[tuple[int, str]]] = defaultdict(list)
    for i, point in enumerate(points):
        for column in IMAGE_COLUMNS:
            reference = point.files.get(column)
            if reference:
                try:
                    ref = parse_reference(reference)
                except InputError:
                    continue  # the reader reports it with the point
                users[(os.path.abspath(ref.path), ref.dataset, ref.frame, ref.stop)].append((i, column))
    extra: dict[int, list[str]] = defaultdict(list)
    for named in users.values():
        if len({i for i, _ in named}) < 2:
            continue
        for i, column in named:
            others = ", ".join(sorted({points[j].point for j, _ in named if j != i}))
            extra[i].append(f"warning: the {column} image {points[i].files[column]} is used by point {others} too")
    return tuple(replace(p, problems=(*p.problems, *extra[i])) if i in extra else p for i, p in enumerate(points))


def _point_from_row(row: dict[str, str], folder: Path) -> Point:
    problems = []
    numbers = {}
    for name in NUMBER_COLUMNS:
        text = row.get(name, "")
        default = DEFAULT_TEMPERATURE_K if name == "temperature_K" else math.nan
        if not text:
            numbers[name] = default
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or (name == "temperature_K" and value <= 0):
            problems.append(f"{name} {text!r} is not a valid number")
            value = math.nan
        numbers[name] = value
    files = {name: resolve(folder, row[name]) for name in FILE_COLUMNS if row.get(name)}
    files.update({name: resolve(folder, text) for name, text in row.items()
                  if text and is_gauge_position_column(name)})
    return Point(point=row["point"], files=files, note=row.get("note", ""), problems=tuple(problems), **numbers)


# --- writing a first sheet for a folder -----------------------------------

_KIND_WORDS = {
    "saxs": ("saxs",),
    "ruby": ("ruby", "rubis", "rub"),
    "absorption": ("absorption", "absorbance", "abs", "transmission", "trans"),
    "pl": ("pl", "photoluminescence", "emission"),
}
_BEFORE_WORDS = ("before", "pre", "start")
_AFTER_WORDS = ("after", "post", "end")
_IMAGE_SUFFIXES = {".tif", ".tiff", ".edf", ".cbf", ".h5", ".hdf5", ".nxs", ".img", ".mccd", ".mar3450",
                   ".mar2300", ".sfrm", ".gfrm", ".ge2", ".ge5", ".raw", ".npy", ".spe"}
_SPECTRUM_SUFFIXES = {".txt", ".dat", ".csv", ".asc", ".spe", ".jdx", ".dx"}
# Integrated 1D patterns by their usual suffixes (Dioptas/pyFAI, Fit2D, GSAS);
# a .dat pattern is too like a spectrum to be told by name.
_PATTERN_SUFFIXES = {".xy", ".chi", ".xye"}


def _words(stem: str) -> list[str]:
    return [w for w in re.split(r"[^a-z]+", stem.lower()) if w]


def _classify(path: Path) -> str | None:
    """The sheet column a file most likely belongs to, or None."""
    words = set(_words(path.stem))
    suffix = path.suffix.lower()
    if words & set(_KIND_WORDS["ruby"]) and suffix in _SPECTRUM_SUFFIXES:
        if words & set(_BEFORE_WORDS):
            return "ruby_before"
        if words & set(_AFTER_WORDS):
            return "ruby_after"
        return "ruby"
    for kind in ("absorption", "pl"):
        if words & set(_KIND_WORDS[kind]) and suffix in _SPECTRUM_SUFFIXES:
            return kind
    if suffix in _IMAGE_SUFFIXES:
        return "saxs" if words & set(_KIND_WORDS["saxs"]) else "xrd"
    if suffix in _PATTERN_SUFFIXES:
        return "pattern"
    return None


def _number(path: Path) -> int | None:
    """The point number in a file name: its last run of digits."""
    found = re.findall(r"\d+", path.stem)
    return int(found[-1]) if found else None


def make_sheet(folder: str | Path) -> str:
    """A first sample sheet for ``folder``, pairing files on the number in their names.

    Each file is classified by its name and suffix (ruby spectra by a word
    like ``ruby``, with ``before``/``after``; SAXS images by ``saxs``; other
    images as XRD; absorption and PL spectra by ``abs``/``pl``) and grouped
    by the last number in its name. The result is for the user to review:
    files that could not be placed are listed as ``#`` comments at the top,
    and two ruby spectra of one point without before/after words are taken
    in name order. Nothing here runs inside the pipeline.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SheetError(f"{folder}: not a folder")
    by_point: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    unplaced: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if path.name in ("points.tsv", "truth.tsv") or path.name.startswith("."):
            continue
        kind, number = _classify(path), _number(path)
        if kind is None or number is None:
            unplaced.append(rel)
            continue
        by_point[number][kind].append(rel)

    rows = []
    for number in sorted(by_point):
        kinds = by_point[number]
        row = {"point": f"p{number:03d}"}
        rubies = kinds.pop("ruby", [])
        for column in ("ruby_before", "ruby_after"):
            if not kinds.get(column) and rubies:
                kinds[column] = [rubies.pop(0)]
        unplaced.extend(rubies)
        for column, files in kinds.items():
            row[column] = files[0]
            unplaced.extend(files[1:])
        rows.append(row)
    columns = ["point"] + [c for c in FILE_COLUMNS if any(c in r for r in rows)] + ["temperature_K", "note"]
    lines = [f"# first sheet for {folder}, written by `dacpipe sheet`: review it before use"]
    lines += [f"# not placed: {name}" for name in sorted(unplaced)]
    lines.append("\t".join(columns))
    for row in rows:
        row.setdefault("temperature_K", f"{DEFAULT_TEMPERATURE_K:g}")
        lines.append("\t".join(row.get(c, "") for c in columns))
    return "\n".join(lines) + "\n"
