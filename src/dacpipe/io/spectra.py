"""Read 1D optical spectra (ruby, Sm:SrB4O7, diamond Raman) from files.

Four formats are recognised, from the content first and the extension second:

* Princeton Instruments SPE, versions 2.x (WinSpec, calibration polynomial in
  the 4100-byte binary header) and 3.x (LightField, calibration as a list of
  wavelengths in the XML footer);
* Ocean Optics SpectraSuite/OceanView text: header lines up to
  ``>>>>>Begin ... Data<<<<<``, data up to ``>>>>>End`` when present;
* plain text with two or more columns separated by whitespace, tabs, commas
  or semicolons (CSV with or without a header row); non-numeric header lines
  at the top are skipped, the first column is x and the second y;
* JCAMP-DX 4.24/5 single spectra (McDonald & Wilks, Appl. Spectrosc. 42, 151
  (1988)): ``##XYDATA=(X++(Y..Y))`` in uncompressed AFFN (or PAC, signs as
  separators) form with ``##XFACTOR``/``##YFACTOR`` and
  ``##FIRSTX``/``##LASTX``/``##NPOINTS``, and ``##XYPOINTS`` or
  ``##PEAKTABLE=(XY..XY)``. The compressed ASDF forms (SQZ, DIF, DUP) are
  refused with a one-line message, not guessed at. A JCAMP-DX axis stored in
  descending order (usual for wavenumbers) is reversed: the file declares its
  own order through FIRSTX and LASTX, so that is not a guess either.

Every problem with a file raises :class:`~dacpipe.core.errors.InputError` with a
one-line reason and the path. A spectrum that is returned has finite values
and a strictly increasing x axis; a descending axis is reported, never
silently re-sorted, because a reversed calibration usually means the wrong
file or a wrong export setting.
"""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core import units
from ..core.errors import InputError

MIN_POINTS = 10
X_UNITS = ("nm", "raman_shift_cm-1", "cm-1")
MAX_TEXT_BYTES = 64 * 1024 * 1024  # a text spectrum is kB to a few MB; more is the wrong file

_SPE_HEADER_BYTES = 4100
# WinSpec datatype codes (SPE 3.0 spec adds 5, 6 and 8).
_SPE_DTYPES = {0: "<f4", 1: "<i4", 2: "<i2", 3: "<u2", 5: "<f8", 6: "u1", 8: "<u4"}
_SPE_UNITS = {0: "pixel", 1: "pixel", 2: "data", 3: "user units", 4: "nm", 5: "cm-1", 6: "Raman shift"}
_FIELD_SPLIT = re.compile(r"[\s,;]+")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, eq=False)  # eq=False: == on arrays would be ambiguous
class Spectrum:
    """One 1D spectrum, ready for peak fitting.

    Attributes
    ----------
    x : ndarray
        float64, strictly increasing; wavelength in nm or Raman shift in cm^-1.
    y : ndarray
        float64 intensities, same length as ``x``, all finite.
    x_unit : str
        ``"nm"`` or ``"cm-1"`` (Raman shift).
    source : str
        The path read, plus the SPE rows/columns summed (``" rows 11-24"``).
    notes : tuple of str
        What was done to the file's axis that a user should know (an axis
        the header declares in micrometres, eV or wavenumbers, converted
        to nm); empty when it was read as written.
    """

    x: np.ndarray
    y: np.ndarray
    x_unit: str
    source: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class SpeFile:
    """The content of a Princeton SPE file that dacpipe uses.

    Attributes
    ----------
    data : ndarray
        Pixel values, shape ``(frames_read, rows, columns)``, the file's dtype.
    wavelength_nm : ndarray or None
        Wavelength of each column, or None when the file has no usable
        wavelength calibration.
    version : float
        ``file_header_ver`` from the header, e.g. 2.2 or 3.0.
    n_frames : int
        Frames in the file (``data`` may hold fewer, see ``max_frames``).
    calibration : str
        Where ``wavelength_nm`` came from, or why it is None.
    """

    data: np.ndarray
    wavelength_nm: np.ndarray | None
    version: float
    n_frames: int
    calibration: str


def raman_shift_to_nm(shift_cm1, laser_nm: float):
    """Absolute wavelength (nm) of a Raman shift (cm^-1) from a laser line.

    ``lambda_nm = 1e7 / (1e7 / laser_nm - shift_cm1)``; Stokes shifts are
    positive and give wavelengths above the laser line.

    Raises
    ------
    InputError
        If ``laser_nm`` is not positive, or a shift reaches the laser's own
        wavenumber (no wavelength corresponds to it).
    """
    laser_cm1 = 1e7 / _check_laser(laser_nm)
    shift = np.asarray(shift_cm1, dtype=float)
    absolute_cm1 = laser_cm1 - shift
    if np.any(absolute_cm1 <= 0):
        raise InputError(f"Raman shift up to {np.max(shift):g} cm-1 is beyond the "
                         f"{laser_nm:g} nm laser line ({laser_cm1:.1f} cm-1)")
    return 1e7 / absolute_cm1


def nm_to_raman_shift(wavelength_nm, laser_nm: float):
    """Raman shift (cm^-1) of an absolute wavelength (nm) from a laser line.

    The inverse of :func:`raman_shift_to_nm`: ``1e7/laser_nm - 1e7/wavelength_nm``.
    """
    wavelength = np.asarray(wavelength_nm, dtype=float)
    if np.any(wavelength <= 0):
        raise InputError(f"wavelength {np.min(wavelength):g} nm is not positive")
    return 1e7 / _check_laser(laser_nm) - 1e7 / wavelength


def _check_laser(laser_nm) -> float:
    if laser_nm is None or not np.isfinite(laser_nm) or laser_nm <= 0:
        raise InputError(f"laser_nm must be a positive wavelength in nm, got {laser_nm!r}")
    return float(laser_nm)


def read_spectrum(path, *, x_unit: str = "nm", laser_nm: float | None = None,
                  rows: tuple[int, int] | None = None,
                  columns: tuple[int, int] | None = None) -> Spectrum:
    """Read one spectrum from a SPE, Ocean Optics, plain-text/CSV or JCAMP-DX file.

    Parameters
    ----------
    path : str or Path
        The file.
    x_unit : {"nm", "raman_shift_cm-1", "cm-1"}
        What the caller wants, and for text files what their x column holds.
        ``"nm"``: x is a wavelength in nm. ``"raman_shift_cm-1"``: a text
        file's x is a Raman shift from ``laser_nm``, returned converted to nm.
        ``"cm-1"``: return a Raman shift (text x is taken as one; an SPE
        wavelength axis is converted with ``laser_nm``). SPE calibrations
        are wavelengths, so for SPE files ``"raman_shift_cm-1"`` is the same
        as ``"nm"``. A JCAMP-DX file that declares ``##XUNITS`` must agree
        (micrometres are converted to nm); one that does not is read like text.
    laser_nm : float, optional
        Laser wavelength, required for the conversions above.
    rows, columns : (int, int), optional
        SPE only (ignored for text spectra): inclusive 0-based row range to sum and column range to keep
        (default: all) in the first frame.

    Returns
    -------
    Spectrum
        ``x_unit`` is ``"nm"`` or ``"cm-1"``; x is strictly increasing.

    Raises
    ------
    InputError
        For any problem with the file, with a one-line reason and the path.
    ValueError
        If ``x_unit`` is not one of the names above (a programming error).
    """
    if x_unit not in X_UNITS:
        raise ValueError(f"x_unit must be one of {X_UNITS}, got {x_unit!r}")
    path = Path(path)
    notes: tuple[str, ...] = ()
    try:
        if path.suffix.lower() == ".spe" or _looks_like_spe(_read_bytes(path, _SPE_HEADER_BYTES)):
            x, y, labels, source = _spectrum_from_spe(path, rows, columns)
            _validate(x, y, "wavelength", labels)
            if x_unit == "cm-1":
                x = nm_to_raman_shift(x, _needs_laser(laser_nm, x_unit))
        else:
            # rows/columns select part of a 2D CCD frame; a run may mix SPE
            # frames with 1D text spectra, where they have nothing to select.
            if _looks_like_jcamp(path):
                x, y, labels, declared, _ = _read_jcamp(path)
                x = _jcamp_axis_as(x, declared, "nm" if x_unit == "nm" else "cm-1")
                if declared == "um" and x_unit == "nm":
                    notes = ("x axis in micrometres (##XUNITS), converted to nm",)
            else:
                x, y, labels, header = _read_text(path, with_header=True)
                x, y, labels, notes = _header_axis_as(x, y, labels, _header_x_unit(header), x_unit)
            source = str(path)
            _validate(x, y, "wavelength" if x_unit == "nm" else "Raman shift", labels)
            if x_unit == "raman_shift_cm-1":
                # Increasing shift gives increasing wavelength: x stays increasing.
                x = raman_shift_to_nm(x, _needs_laser(laser_nm, x_unit))
    except InputError as err:
        raise err.with_path(path) from None
    out_unit = "cm-1" if x_unit == "cm-1" else "nm"
    return Spectrum(_frozen(x), _frozen(y), out_unit, source, notes)


def _needs_laser(laser_nm, x_unit: str) -> float:
    if laser_nm is None:
        raise InputError(f"x_unit {x_unit!r} needs laser_nm (the laser wavelength in nm)")
    return _check_laser(laser_nm)


def _frozen(values) -> np.ndarray:
    array = np.array(values, dtype=np.float64)  # a copy the caller cannot alias
    array.setflags(write=False)
    return array


def _validate(x: np.ndarray, y: np.ndarray, axis: str, labels) -> None:
    """Raise InputError unless x, y are finite, long enough and x increases."""
    for name, values in (("x", x), ("intensity", y)):
        bad = ~np.isfinite(values)
        if bad.any():
            raise InputError(f"{int(bad.sum())} non-finite values (NaN/inf) in the {name} "
                             f"column, first at {labels[int(np.argmax(bad))]}")
    if x.size < MIN_POINTS:
        raise InputError(f"only {x.size} data points, need at least {MIN_POINTS}")
    step = np.diff(x)
    if np.all(step < 0):
        raise InputError(f"{axis} axis is descending (first {x[0]:g}, last {x[-1]:g}); "
                         "dacpipe expects increasing x")
    bad_steps = np.flatnonzero(step <= 0)
    if bad_steps.size:
        i = int(bad_steps[0])
        raise InputError(f"{axis} axis is not strictly increasing at {labels[i + 1]} "
                         f"({x[i + 1]:g} after {x[i]:g} at {labels[i]})")


# ---------------------------------------------------------------- file access

def _read_bytes(path: Path, limit: int | None = None, offset: int = 0) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read() if limit is None else handle.read(limit)
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except IsADirectoryError:
        raise InputError("is a directory, not a spectrum file", path) from None
    except OSError as err:
        raise InputError(f"cannot read file ({err.strerror or err})", path) from None


def _file_size(path: Path) -> int:
    _read_bytes(path, 0)  # same error messages as a read
    return path.stat().st_size


# ---------------------------------------------------------------- text files

def _read_text(path: Path, with_header: bool = False):
    """x, y and line labels from an Ocean Optics or plain-text file (and,
    with ``with_header``, the last header line above a plain table: its
    column names, or "")."""
    if _file_size(path) > MAX_TEXT_BYTES:
        raise InputError(f"file is larger than {MAX_TEXT_BYTES // 2**20} MiB, not a text spectrum")
    text = _decode(_read_bytes(path))
    if not text.strip():
        raise InputError("empty file")
    lines = text.splitlines()
    begin = next((i for i, line in enumerate(lines)
                  if ">>>>>Begin" in line and "Data<<<<<" in line), None)
    if begin is None:
        table = _parse_table(lines, 0, header_allowed=True)
        # Data lines are labelled "line N"; the header is what comes before the first.
        first = int(table[2][0].split()[-1]) - 1
        header = next((line for line in reversed(lines[:first]) if line.strip()), "")
    else:
        end = next((i for i in range(begin + 1, len(lines)) if ">>>>>End" in lines[i]), len(lines))
        table, header = _parse_table(lines[begin + 1:end], begin + 1, header_allowed=False), ""
    return (*table, header) if with_header else table


# Units a column name declares, as spectrometer software and people write them.
_HEADER_UNITS = (
    ("raman_shift_cm-1", re.compile(r"raman|shift", re.IGNORECASE)),
    ("cm-1", re.compile(r"cm-1|cm\^-1|cm\^\{-1\}|cm⁻¹|1/cm|wave ?numbers?", re.IGNORECASE)),
    ("um", re.compile(r"(?<![a-z])(um|µm|μm|microns?|micromet(er|re)s?)(?![a-z])", re.IGNORECASE)),
    ("eV", re.compile(r"(?<![a-z])(ev|electron ?volts?)(?![a-z])", re.IGNORECASE)),
    ("nm", re.compile(r"(?<![a-z])(nm|nanomet(er|re)s?)(?![a-z])", re.IGNORECASE)),
)


def _header_x_unit(header: str) -> str | None:
    """The unit the first column's name declares (``"nm"``, ``"um"``, ``"eV"``,
    ``"cm-1"`` for absolute wavenumbers, ``"raman_shift_cm-1"``), or None."""
    fields = [f for f in re.split(r"[\t,;]", header) if f.strip()]
    if not fields:
        return None
    name = fields[0] if len(fields) > 1 else header
    if len(fields) == 1:  # whitespace-separated names: the first word or bracketed group
        name = re.split(r"\s+(?![(\[])", header.strip(), maxsplit=1)[0]
    found = [unit for unit, pattern in _HEADER_UNITS if pattern.search(name)]
    if "cm-1" in found:
        return "raman_shift_cm-1" if "raman_shift_cm-1" in found else "cm-1"
    return next((u for u in found if u not in ("raman_shift_cm-1", "cm-1")), None)


def _header_axis_as(x, y, labels, declared: str | None, wanted: str):
    """A text file's axis in the unit the caller reads it in, when its header
    declares another: micrometres, eV and absolute wavenumbers become nm with a
    note; a declared unit that cannot be converted without a guess is refused."""
    if declared is None or wanted != "nm" and declared in ("raman_shift_cm-1", "cm-1"):
        return x, y, labels, ()
    if wanted == "nm":
        if declared == "nm":
            return x, y, labels, ()
        if declared == "um":
            return x * 1000.0, y, labels, ("x axis in micrometres (header), converted to nm",)
        if declared in ("eV", "cm-1") and np.all(x > 0):
            # E = hc / lambda and lambda = 1e7 / wavenumber reverse the order;
            # an energy column exported from a wavelength scan descends already.
            nm = (units.HC_EV_NM if declared == "eV" else units.NM_CM1) / x
            name = "eV" if declared == "eV" else "wavenumbers (cm-1)"
            note = (f"x axis in {name} (header), converted to nm",)
            if nm[0] > nm[-1]:
                return nm[::-1], y[::-1], labels[::-1], note
            return nm, y, labels, note
        if declared == "raman_shift_cm-1":
            raise InputError("the header says the x axis is a Raman shift (cm-1); "
                             "set pressure.spectrum.x_unit: raman_shift_cm-1 and laser_nm")
    raise InputError(f"the header says the x axis is in {declared}, not the {wanted} asked for "
                     "(pressure.spectrum.x_unit)")


def _decode(raw: bytes) -> str:
    if b"\x00" in raw:
        raise InputError("binary file, not a text spectrum (contains NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:  # Windows spectrometer software writes headers with µs and °C in cp1252
            text = raw.decode("cp1252")
        except UnicodeDecodeError:
            raise InputError("binary file, not a text spectrum (undecodable bytes)") from None
    if _CONTROL_CHARS.search(text):
        raise InputError("binary file, not a text spectrum (control characters)")
    return text


# A plain numeric table: digits, signs, points, exponents and white space, nothing else.
_PLAIN_BLOCK = re.compile(r"[0-9eE+\-. \t\r\n]*")


def _fields(line: str) -> list[str]:
    line = line.strip().strip(",;").strip()
    if not line:
        return []
    if "," in line and "." not in line and ("\t" in line or ";" in line):
        line = line.replace(",", ".")  # decimal commas from European-locale exports
    return [field.strip("\"'") for field in _FIELD_SPLIT.split(line)]


class _LineLabels(Sequence):
    """The labels "line N" of a table's rows, made when a message asks for one:
    a spectrometer's 1,340 rows would otherwise cost as many strings per file."""

    def __init__(self, numbers: np.ndarray):
        self._numbers = numbers

    def __len__(self) -> int:
        return len(self._numbers)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return _LineLabels(self._numbers[index])
        return f"line {int(self._numbers[index])}"


def _plain_block(lines: list[str], first_number: int):
    """``lines`` parsed at once when they are a plain table (numbers, spaces and
    tabs only, the same number of columns on every line, at least two): x, y and
    the row labels; None otherwise, for the line-by-line parser and its messages.
    A spectrometer's 1,340-line file: 0.4 ms with numpy's C reader (of which
    the numbers' conversion is most) against 6 ms line by line."""
    if not _PLAIN_BLOCK.fullmatch("\n".join(lines)):
        return None
    try:
        # blank lines skipped; a row of another width is a ValueError, as is "1.2.3" or "--4"
        table = np.loadtxt(lines, dtype=float, ndmin=2)
    except ValueError:  # the line-by-line parser names the line
        return None
    if table.shape[0] == 0 or table.shape[1] < 2:
        return None
    numbers = np.arange(first_number, first_number + len(lines))
    if len(table) != len(lines):   # blank lines: the rows are the others
        numbers = numbers[[bool(line.strip()) for line in lines]]
    return table[:, 0], table[:, 1], _LineLabels(numbers)


def _parse_table(lines: list[str], first_index: int, header_allowed: bool):
    """Numeric rows of a table; x is column 0 and y column 1."""
    rows, line_numbers, header_lines = [], [], 0
    for index, line in enumerate(lines):
        number = first_index + index + 1
        fields = _fields(line)
        if not fields:
            continue
        try:
            values = [float(field) for field in fields]
        except ValueError:
            if rows or not header_allowed:
                raise InputError(f"non-numeric text at line {number}: {line.strip()[:40]!r}") from None
            header_lines += 1
            continue
        if not rows:    # the first numeric row: the rest at once where it is a plain table
            fast = _plain_block(lines[index:], number)
            if fast is not None:
                return fast
        if rows and len(values) != len(rows[0]):
            raise InputError(f"line {number} has {len(values)} column(s), "
                             f"line {line_numbers[0]} has {len(rows[0])}")
        rows.append(values)
        line_numbers.append(number)
    if not rows:
        raise InputError(f"no numeric data (only {header_lines} header line(s))")
    if len(rows[0]) < 2:
        raise InputError(f"only one column ({len(rows)} numeric row(s)); "
                         "expected x and intensity columns")
    table = np.array(rows, dtype=float)
    labels = [f"line {n}" for n in line_numbers]
    return table[:, 0], table[:, 1], labels


# ---------------------------------------------------------------- SPE files

def _looks_like_spe(head: bytes) -> bool:
    # WinSpec and LightField write 0x5555 as the header's last value (byte 4098).
    return len(head) >= _SPE_HEADER_BYTES and struct.unpack_from("<H", head, 4098)[0] == 0x5555


def read_spe(path, *, max_frames: int | None = None) -> SpeFile:
    """Read a Princeton Instruments SPE file (version 2.x or 3.x).

    Parameters
    ----------
    path : str or Path
        The file.
    max_frames : int, optional
        Read at most this many frames (all by default).

    Returns
    -------
    SpeFile

    Raises
    ------
    InputError
        Missing, empty or truncated file, impossible header, unreadable footer.
    """
    path = Path(path)
    try:
        return _read_spe(path, max_frames)
    except InputError as err:
        raise err.with_path(path) from None


def _read_spe(path: Path, max_frames: int | None) -> SpeFile:
    size = _file_size(path)
    if size == 0:
        raise InputError("empty file")
    if size < _SPE_HEADER_BYTES:
        raise InputError(f"truncated SPE file: {size} bytes, shorter than the "
                         f"{_SPE_HEADER_BYTES}-byte header")
    header = _read_bytes(path, _SPE_HEADER_BYTES)
    width = struct.unpack_from("<H", header, 42)[0]
    height = struct.unpack_from("<H", header, 656)[0]
    type_code = struct.unpack_from("<h", header, 108)[0]
    n_frames = struct.unpack_from("<i", header, 1446)[0]
    version = round(float(struct.unpack_from("<f", header, 1992)[0]), 3)
    xml_offset = struct.unpack_from("<Q", header, 678)[0]
    if type_code not in _SPE_DTYPES:
        raise InputError(f"not a valid SPE header: unknown data type code {type_code}")
    dtype = np.dtype(_SPE_DTYPES[type_code])
    stride = width * height * dtype.itemsize
    xml_root = None
    if version >= 3 and xml_offset:
        if xml_offset > size:
            raise InputError(f"truncated SPE file: {size} bytes, header says the "
                             f"XML footer starts at byte {xml_offset}")
        xml_root = _parse_xml(_read_bytes(path, offset=xml_offset))
        width, height, stride = _xml_layout(xml_root, width, height, stride, dtype.itemsize)
    if width == 0 or height == 0 or n_frames < 1 or not np.isfinite(version):
        raise InputError(f"not a valid SPE header: {n_frames} frames of {height}x{width} pixels")
    expected = _SPE_HEADER_BYTES + n_frames * stride
    if size < expected:
        raise InputError(f"truncated SPE file: {size} bytes, header says {expected} "
                         f"({n_frames} frames of {height}x{width} {dtype.name})")
    if xml_root is not None and expected > xml_offset:
        raise InputError(f"not a valid SPE file: data ({expected} bytes) overlaps "
                         f"the XML footer at byte {xml_offset}")
    n_read = n_frames if max_frames is None else max(1, min(n_frames, max_frames))
    frames = []
    with open(path, "rb") as handle:
        for k in range(n_read):
            handle.seek(_SPE_HEADER_BYTES + k * stride)
            frame = np.frombuffer(handle.read(width * height * dtype.itemsize), dtype)
            frames.append(frame.reshape(height, width))
    data = np.stack(frames).astype(dtype.newbyteorder("="))
    if xml_root is not None:
        wavelength, calibration = _xml_calibration(xml_root, width)
    else:
        wavelength, calibration = _header_calibration(header, width)
    return SpeFile(data, wavelength, version, n_frames, calibration)


def _header_calibration(header: bytes, width: int):
    """Wavelengths from the WinSpec x-calibration polynomial, or None and why."""
    valid, unit, order = header[3098], header[3100], header[3101]
    if not valid or not 1 <= order <= 5:
        return None, "none (no valid calibration polynomial in the header)"
    coefficients = struct.unpack_from("<6d", header, 3263)[: order + 1]
    pixel = np.arange(1, width + 1, dtype=float)  # WinSpec numbers pixels from 1
    values = np.polynomial.polynomial.polyval(pixel, coefficients)
    if unit == 4:
        return values, f"header polynomial of order {order} (nm)"
    laser_nm = struct.unpack_from("<d", header, 3311)[0]
    if unit == 6 and laser_nm > 0:
        return raman_shift_to_nm(values, laser_nm), \
            f"header polynomial of order {order} (Raman shift from {laser_nm:g} nm)"
    return None, f"none (header polynomial is in {_SPE_UNITS.get(unit, f'unit code {unit}')})"


def _parse_xml(raw: bytes) -> ET.Element:
    try:
        return ET.fromstring(raw.rstrip(b"\x00 \t\r\n"))
    except (ET.ParseError, LookupError, ValueError) as err:  # LookupError: unknown encoding
        raise InputError(f"unreadable SPE XML footer ({err}); truncated file?") from None


def _children(element, name: str) -> list:
    return [child for child in element if child.tag.rsplit("}", 1)[-1] == name]


def _int_attribute(element, name: str, default: int) -> int:
    text = element.get(name)
    try:
        return default if text is None else int(text)
    except ValueError:
        raise InputError(f"SPE XML footer has {name}={text!r}, not an integer") from None


def _xml_layout(root, width: int, height: int, stride: int, itemsize: int):
    """First region's width and height and the frame stride from the footer."""
    frame = next((b for fmt in _children(root, "DataFormat") for b in _children(fmt, "DataBlock")
                  if b.get("type") == "Frame"), None)
    if frame is None:
        return width, height, stride
    # Frames may carry metadata (time stamps) after the pixels: stride > size.
    stride = _int_attribute(frame, "stride", stride)
    region = next((b for b in _children(frame, "DataBlock") if b.get("type") == "Region"), None)
    if region is not None:
        width = _int_attribute(region, "width", width)
        height = _int_attribute(region, "height", height)
    if width * height * itemsize > stride:
        raise InputError(f"not a valid SPE file: a {height}x{width} region does not fit "
                         f"the {stride}-byte frame stride")
    return width, height, stride


def _xml_calibration(root, width: int):
    """Wavelengths of the data columns from the LightField footer."""
    calibrations = next(iter(_children(root, "Calibrations")), None)
    if calibrations is None or not _children(calibrations, "WavelengthMapping"):
        return None, "none (no WavelengthMapping in the XML footer)"
    mapping = _children(calibrations, "WavelengthMapping")[0]
    try:
        if _children(mapping, "Wavelength"):
            text = _children(mapping, "Wavelength")[0].text or ""
            wavelength = np.array([float(v) for v in text.split(",") if v.strip()])
        elif _children(mapping, "WavelengthError"):
            # "wavelength,error wavelength,error ..." pairs
            text = _children(mapping, "WavelengthError")[0].text or ""
            wavelength = np.array([float(pair.split(",")[0]) for pair in text.split()])
        else:
            return None, "none (empty WavelengthMapping in the XML footer)"
    except ValueError:
        raise InputError("SPE XML footer has a non-numeric wavelength list") from None
    source = f"XML WavelengthMapping ({wavelength.size} values)"
    if wavelength.size == width:
        return wavelength, source
    # The list covers the whole sensor; a region of interest reads a part of it.
    sensor = _children(calibrations, "SensorMapping")
    if sensor:
        first = _int_attribute(sensor[0], "x", 0)
        binning = max(1, _int_attribute(sensor[0], "xBinning", 1))
        part = wavelength[first:first + _int_attribute(sensor[0], "width", width * binning)]
        if part.size == width * binning:
            return part.reshape(width, binning).mean(axis=1), f"{source}, sensor region x={first}"
    raise InputError(f"SPE wavelength calibration has {wavelength.size} values "
                     f"for {width} data columns")


def _span(selection, n: int, what: str) -> tuple[int, int]:
    if selection is None:
        return 0, n - 1
    first, last = (int(v) for v in selection)
    if not 0 <= first <= last < n:
        raise InputError(f"{what} {first}-{last} outside the frame's {n} {what} (0-{n - 1})")
    return first, last


def _spectrum_from_spe(path: Path, rows, columns):
    spe = _read_spe(path, max_frames=1)
    if spe.wavelength_nm is None:
        raise InputError(f"SPE file has no wavelength calibration: {spe.calibration}")
    frame = spe.data[0]
    r0, r1 = _span(rows, frame.shape[0], "rows")
    c0, c1 = _span(columns, frame.shape[1], "columns")
    # Sum in float64: a uint16 sum over rows would wrap around silently.
    y = frame[r0:r1 + 1, c0:c1 + 1].astype(np.float64).sum(axis=0)
    x = spe.wavelength_nm[c0:c1 + 1]
    source = f"{path} rows {r0}-{r1}"
    if columns is not None:
        source += f" columns {c0}-{c1}"
    if spe.n_frames > 1:
        source += f" frame 1 of {spe.n_frames}"
    return x, y, [f"column {c}" for c in range(c0, c1 + 1)], source


# ---------------------------------------------------------------- any x-y file, as written

@dataclass(frozen=True, eq=False)
class XYData:
    """The two columns of a spectrum file, without unit conversion.

    Attributes
    ----------
    x, y : ndarray
        float64, read-only, finite; ``x`` strictly increasing.
    x_unit : str or None
        The unit the file itself declares: ``"nm"`` for an SPE calibration,
        ``"nm"``, ``"um"``, ``"cm-1"`` or ``"eV"`` from a JCAMP-DX ``##XUNITS``;
        None when the file does not say (plain text, CSV).
    y_unit : str
        JCAMP-DX ``##YUNITS`` as written (``"ABSORBANCE"``, ``"TRANSMITTANCE"``),
        else ``""``.
    source : str
        The path read.
    """

    x: np.ndarray
    y: np.ndarray
    x_unit: str | None
    y_unit: str
    source: str


def read_xy(path, *, allow_descending: bool = False) -> XYData:
    """Read x and y of a SPE (first frame, all rows), text, CSV or JCAMP-DX file.

    Parameters
    ----------
    path : str or Path
        The file.
    allow_descending : bool
        Reverse a text column that decreases throughout, instead of refusing
        it. Meant for axes in energy or wavenumber, which come out descending
        when an instrument that scans in wavelength exports them; a wavelength
        axis should stay refused (see the module docstring).

    Returns
    -------
    XYData

    Raises
    ------
    InputError
        For any problem with the file, with a one-line reason and the path.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".spe" or _looks_like_spe(_read_bytes(path, _SPE_HEADER_BYTES)):
            x, y, labels, source = _spectrum_from_spe(path, None, None)
            _validate(x, y, "wavelength", labels)
            return XYData(_frozen(x), _frozen(y), "nm", "", source)
        if _looks_like_jcamp(path):
            x, y, labels, x_unit, y_unit = _read_jcamp(path)
        else:
            (x, y, labels), x_unit, y_unit = _read_text(path), None, ""
            if allow_descending and x.size > 1 and np.all(np.diff(x) < 0):
                x, y, labels = x[::-1], y[::-1], labels[::-1]
        _validate(x, y, "x", labels)
    except InputError as err:
        raise err.with_path(path) from None
    return XYData(_frozen(x), _frozen(y), x_unit, y_unit, str(path))


# ---------------------------------------------------------------- JCAMP-DX files

JCAMP_SUFFIXES = (".jdx", ".dx", ".jcamp", ".jcm")
# ##XUNITS as instruments write them -> dacpipe's names.
_JCAMP_X_UNITS = {"NANOMETERS": "nm", "NANOMETER": "nm", "NM": "nm", "MICROMETERS": "um",
                  "MICROMETER": "um", "MICRONS": "um", "UM": "um", "1/CM": "cm-1", "CM-1": "cm-1",
                  "CM^-1": "cm-1", "WAVENUMBERS": "cm-1", "EV": "eV", "ELECTRONVOLTS": "eV"}
_JCAMP_MARKER = re.compile(rb"^\s*##\s*JCAMP", re.MULTILINE | re.IGNORECASE)
_JCAMP_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
# Characters of the compressed forms: SQZ @A-I a-i, DIF %J-R j-r, DUP S-Z s.
_ASDF_CHARS = re.compile(r"[@%A-Za-s]")
_JCAMP_TABLES = ("XYDATA", "XYPOINTS", "PEAKTABLE")


def _looks_like_jcamp(path: Path) -> bool:
    if path.suffix.lower() in JCAMP_SUFFIXES:
        return True
    return bool(_JCAMP_MARKER.search(_read_bytes(path, 4096)))


def _jcamp_label(label: str) -> str:
    # JCAMP-DX labels ignore case, spaces, dashes, slashes and underscores.
    return re.sub(r"[\s\-/_]", "", label).upper()


def _jcamp_records(text: str):
    """Labelled data records: {label: (value, line number, [(line number, continuation)])}."""
    records: dict[str, tuple[str, int, list]] = {}
    current = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("$$", 1)[0].strip()  # $$ starts a comment
        if line.startswith("##"):
            label, sep, value = line[2:].partition("=")
            if not sep:
                raise InputError(f"JCAMP-DX line {number}: label without '=': {line[:40]!r}")
            key = _jcamp_label(label)
            if key == "END":
                if any(t in records for t in _JCAMP_TABLES):
                    break  # one spectrum per file: what follows is not read
                current = None
                continue
            if key in records and key in _JCAMP_TABLES:
                raise InputError(f"JCAMP-DX line {number}: a second ##{label.strip()} table; "
                                 "export one spectrum per file")
            current = records.setdefault(key, (value.strip(), number, []))
        elif line and current is not None:
            current[2].append((number, line))
        elif line:
            raise InputError(f"JCAMP-DX line {number}: data before the first ##label: {line[:40]!r}")
    return records


def _jcamp_float(records, key: str, default=None):
    if key not in records:
        return default
    value, number, _ = records[key]
    try:
        return float(value.replace(",", ".") if value.count(",") == 1 and "." not in value else value)
    except ValueError:
        raise InputError(f"JCAMP-DX line {number}: ##{key}={value[:30]!r} is not a number") from None


def _jcamp_values(line: str, number: int) -> list[float]:
    """Numbers of one uncompressed (AFFN, or PAC with signs as separators) data line."""
    values = []
    for token in re.split(r"[\s,;]+", line):
        if not token:
            continue
        if token == "?":  # JCAMP-DX's missing value; _validate reports it
            values.append(np.nan)
            continue
        numbers = _JCAMP_NUMBER.findall(token)
        if "".join(numbers) != token:
            if _ASDF_CHARS.search(_JCAMP_NUMBER.sub("", token)):
                raise InputError(f"compressed JCAMP-DX data (ASDF: SQZ/DIF/DUP) at line {number} is not "
                                 "supported; export the spectrum as uncompressed AFFN")
            raise InputError(f"JCAMP-DX line {number}: non-numeric data {token[:30]!r}")
        values.extend(float(n) for n in numbers)
    return values


def _read_jcamp(path: Path):
    """x, y, labels, declared x unit (or None) and ##YUNITS of a JCAMP-DX file."""
    if _file_size(path) > MAX_TEXT_BYTES:
        raise InputError(f"file is larger than {MAX_TEXT_BYTES // 2**20} MiB, not a JCAMP-DX spectrum")
    text = _decode(_read_bytes(path))
    if not text.strip():
        raise InputError("empty file")
    records = _jcamp_records(text)
    for key, what in (("BLOCKS", "compound JCAMP-DX file (##BLOCKS)"),
                      ("NTUPLES", "multi-dimensional JCAMP-DX file (##NTUPLES)")):
        if key in records:
            raise InputError(f"{what} is not supported; export one spectrum per file")
    x_factor = _jcamp_float(records, "XFACTOR", 1.0)
    y_factor = _jcamp_float(records, "YFACTOR", 1.0)
    if "XYDATA" in records:
        x, y, labels = _jcamp_xydata(records, x_factor, y_factor)
    else:
        key = next((k for k in ("XYPOINTS", "PEAKTABLE") if k in records), None)
        if key is None:
            raise InputError("no ##XYDATA, ##XYPOINTS or ##PEAKTABLE in the JCAMP-DX file")
        x, y, labels = _jcamp_pairs(records, key, x_factor, y_factor)
    if x.size > 1 and np.all(np.diff(x) < 0):
        x, y, labels = x[::-1], y[::-1], labels[::-1]
    x_units = records.get("XUNITS", ("",))[0].strip().upper()
    y_units = records.get("YUNITS", ("",))[0].strip().upper()
    return x, y, labels, _JCAMP_X_UNITS.get(x_units.replace(" ", "")), y_units


def _jcamp_xydata(records, x_factor: float, y_factor: float):
    form, first_line, lines = records["XYDATA"]
    if form.replace(" ", "").upper() != "(X++(Y..Y))":
        raise InputError(f"JCAMP-DX line {first_line}: ##XYDATA={form[:20]} is not supported "
                         "(only (X++(Y..Y)))")
    first_x = _jcamp_float(records, "FIRSTX")
    last_x = _jcamp_float(records, "LASTX")
    if first_x is None or last_x is None:
        raise InputError("JCAMP-DX ##XYDATA needs ##FIRSTX and ##LASTX")
    line_x, y, labels = [], [], []
    for number, line in lines:
        values = _jcamp_values(line, number)
        if len(values) < 2:
            raise InputError(f"JCAMP-DX line {number}: an X value without Y values")
        line_x.append((number, values[0] * x_factor, len(y)))
        y.extend(values[1:])
        labels.extend(f"JCAMP-DX line {number}" for _ in values[1:])
    n_points = _jcamp_float(records, "NPOINTS")
    if n_points is not None and int(n_points) != len(y):
        raise InputError(f"JCAMP-DX ##NPOINTS={int(n_points)} but ##XYDATA holds {len(y)} values")
    if len(y) < 2:
        raise InputError(f"only {len(y)} data points, need at least {MIN_POINTS}")
    x = np.linspace(first_x, last_x, len(y))
    # The X at the start of each line is a check of the abscissa (x factor applied).
    step = abs(x[1] - x[0])
    for number, value, index in line_x:
        if not abs(value - x[index]) <= 0.5 * step + 1e-9 * abs(x[index]):
            raise InputError(f"JCAMP-DX line {number}: X={value:g} does not match FIRSTX/LASTX/NPOINTS "
                             f"(expected {x[index]:g}); check ##XFACTOR")
    return x, np.array(y, dtype=float) * y_factor, labels


def _jcamp_pairs(records, key: str, x_factor: float, y_factor: float):
    form, first_line, lines = records[key]
    compact = form.replace(" ", "").upper()
    width = {"(XY..XY)": 2, "(XYW..XYW)": 3, "(XYM..XYM)": 3}.get(compact)
    if width is None:
        raise InputError(f"JCAMP-DX line {first_line}: ##{key}={form[:20]} is not supported (only (XY..XY))")
    values, labels = [], []
    for number, line in lines:
        found = _jcamp_values(line, number)
        values.extend(found)
        labels.extend(f"JCAMP-DX line {number}" for _ in found)
    if len(values) % width:
        raise InputError(f"JCAMP-DX ##{key} has {len(values)} values, not groups of {width}")
    table = np.array(values, dtype=float).reshape(-1, width)
    return table[:, 0] * x_factor, table[:, 1] * y_factor, labels[::width]


def _jcamp_axis_as(x: np.ndarray, declared: str | None, wanted: str) -> np.ndarray:
    """The axis in the unit a caller expects ("nm" or "cm-1"), when the file declared one."""
    if declared is None or declared == wanted:
        return x
    if declared == "um" and wanted == "nm":
        return x * 1000.0
    raise InputError(f"JCAMP-DX ##XUNITS is {declared}, not {'a wavelength in nm' if wanted == 'nm' else 'cm-1'}")
