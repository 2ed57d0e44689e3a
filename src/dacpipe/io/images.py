"""Read 2D detector frames and masks, and refuse damaged files loudly.

Image formats are fabio's business (TIFF, EDF, CBF, MarCCD, SPE, Fit2D masks
and the rest); HDF5 and NeXus stacks are read with h5py. This module adds what
neither does: checks that turn every damaged file into an
:class:`~dacpipe.core.errors.InputError`. Which frame of which file to read is
a reference (``"scan.h5::/entry/data/data@7"``), parsed by
:mod:`dacpipe.io.refs`; HDF5 without a dataset path gives the NeXus default
signal when it is a detector image, otherwise the only dataset that looks
like one.

Why the extra checks: fabio does not always fail on a damaged file. A
truncated TIFF comes back with ``data=None``, a truncated EDF as an array
zero-padded to the size its header announces (indistinguishable from real
dark pixels), a truncated CBF as a bare ``AssertionError`` -- or, cut inside
its header, as an endless loop -- a CBF with damaged data bytes as an image
and a logged checksum error, a truncated SPE as a numpy ``ValueError``. Every
reader here compares what the header promises with what the file holds
(EDF, CBF size and MD5, SPE), and every returned frame is 2D, numeric, of
the expected shape when one is given, and has at least one finite pixel.

Beamline files:

* a range of frames (``"scan.h5::/entry/data/data@0:10"``, see
  :mod:`dacpipe.io.refs`) is read frame by frame and summed in float64 (a
  pixel invalid in any frame is invalid in the sum); ``combine="mean"``
  divides by the number of frames;
* Eiger/NeXus master files: the frames live in ``data_000001.h5``, ...
  linked from ``/entry/data/data_000001``, ... (HDF5 external links, which
  HDF5 resolves relative to the master file's folder); the links of
  ``/entry/data`` are read as one stack, numbered across the files, when
  the reference names ``/entry/data`` or no dataset;
* invalid pixels: in unsigned 16- and 32-bit data the value with all bits
  set (0xFFFF, 0xFFFFFFFF) is what Eiger writes into gaps and dead pixels
  (and what a saturated 16-bit counter reads), never a count, so it becomes
  NaN; so do the pixels flagged (non-zero) in the file's NeXus
  ``pixel_mask`` (``/entry/instrument/detector/detectorSpecific/pixel_mask``
  of an Eiger master file, ``/entry/instrument/detector/pixel_mask`` of
  NXdetector files such as the Lambda's), when it has the frame's shape;
* X-Spectrum Lambda multi-module files (``name_m1.nxs``, ``name_m2.nxs``,
  ... one per module): any module's file named without a dataset path
  stands for the whole detector (``::/entry/instrument/detector/data``
  reads that module alone);
  the modules are placed at their ``translation/distance`` (x, y in
  pixels) and the result is flipped upside down, as Dioptas stitches them
  (its ``LambdaImage``), so that the PONI files Dioptas calibrated on such
  images apply unchanged; the gaps between modules are NaN (Dioptas fills
  them with 0, which it integrates unless masked);
* :func:`read_header` reads the wavelength and detector distance a frame
  file records (Pilatus mini-CBF header, Eiger/NeXus), for a check against
  the PONI file (:func:`dacpipe.io.poni.check_header`).

A CBF frame is read from disk once: its bytes are checked (binary section
present, size and MD5 against the MIME header) and decoded by fabio from
memory. :func:`read_frame_file` hands those bytes to a caller that also
checksums the file for provenance, so that the file is not opened again.
"""

from __future__ import annotations

import base64
import bz2
import functools
import gzip
import hashlib
import io
import math
import os
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import fabio
import fabio.cbfimage
import fabio.edfimage
import h5py
import numpy as np

from ..core.errors import InputError
from .refs import FileRef, parse_reference

try:  # registers the HDF5 compression filters of Eiger/Lambda files (bitshuffle, LZ4, ...)
    import hdf5plugin  # noqa: F401
except ImportError:  # pragma: no cover - without it, compressed datasets raise a clear InputError
    hdf5plugin = None

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".nexus", ".cxi")
# The largest area detectors have ~2e7 pixels; a header that asks for more
# than 2**28 is damaged, and reading it would only exhaust memory.
MAX_FRAME_PIXELS = 2**28
# Dataset names that hold calibration arrays next to the image, never the image.
_NOT_IMAGE_WORDS = ("mask", "flat", "dark", "background", "bkg", "gain", "pedestal", "calib")
# NXdata axis units of an already integrated pattern (2theta, q, chi), not of pixels.
_INTEGRATED_UNITS = re.compile(r"deg|rad|theta|2th|chi|\bq\b|a\^-1|nm\^-1|1/a|1/nm|angstrom\^-1", re.I)
_MAX_REASON = 160  # characters of a library's own message kept in a reason
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_DECOMPRESSORS = {".gz": gzip.decompress, ".bz2": bz2.decompress}
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open}


COMBINE = ("sum", "mean")


def read_image(reference: str | os.PathLike | FileRef,
               expected_shape: tuple[int, int] | None = None, *,
               content: bytes | None = None, combine: str = "sum") -> np.ndarray:
    """Read one detector frame (or the sum of a range of frames) as a 2D float32 array.

    Parameters
    ----------
    reference : str, Path or FileRef
        See :func:`parse_reference`.
    expected_shape : (int, int), optional
        (rows, columns) of the detector; a frame of another shape is refused.
    content : bytes, optional
        What :func:`read_frame_file` returned for the same reference (the
        file's bytes): the frame is checked and decoded from them, without
        opening the file again.
    combine : {"sum", "mean"}
        What a range of frames (``@0:10``) becomes: their sum (counts, whose
        Poisson variance is the sum itself) or their mean.

    Returns
    -------
    ndarray
        float32, 2D, C-contiguous, a copy owned by the caller. Integer
        counts above 2**24 lose their last digits in float32, far below the
        counting noise of such pixels. Invalid pixels (all bits set in
        unsigned data, flagged in the file's pixel mask, Lambda module
        gaps) are NaN.

    Raises
    ------
    InputError
        Missing, empty, truncated or unreadable file; missing dataset; frame
        out of range or not named in a multi-frame file; not a 2D numeric
        frame; wrong shape; no finite pixel.
    """
    if combine not in COMBINE:
        raise ValueError(f"combine must be one of {COMBINE}, not {combine!r}")
    ref = parse_reference(reference)
    path = ref.path
    ranged = ref.stop is not None
    total, count = None, 0
    for data, bad in _frames(ref, content):
        if data.dtype.kind not in "biuf":
            raise InputError(f"image data has type {data.dtype}, not numbers", path)
        _check_shape(data.shape, expected_shape, "image", path)
        if total is not None and data.shape != total.shape:
            raise InputError(f"frames of {ref} differ in shape ({_fmt(total.shape)}, {_fmt(data.shape)})", path)
        # A copy (never a view into a file buffer); float64 while summing a range.
        frame = _valid_float(data, bad, np.float64 if ranged else np.float32)
        total = frame if total is None else np.add(total, frame, out=total)  # NaN in any frame stays NaN
        count += 1
    if combine == "mean" and count > 1:
        total /= count
    image = np.ascontiguousarray(total, dtype=np.float32)
    if not np.isfinite(image).any():
        raise InputError("image has no finite pixel value (all NaN, infinite or flagged invalid)", path)
    return image


def invalid_value(dtype) -> int | None:
    """The value that marks an invalid pixel in data of ``dtype``: all bits set
    (2**bits - 1) for unsigned 16-, 32- and 64-bit integers, None otherwise.

    Eiger detectors write it into module gaps and dead pixels (0xFFFFFFFF in
    32-bit images, 0xFFFF in 16-bit ones); for a 16-bit counter it is also
    the saturated value, which is no measurement either. Signed detectors
    (Pilatus, Lambda) flag pixels with negative values, which the
    integration leaves out anyway.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "u" and dtype.itemsize >= 2:
        return int(np.iinfo(dtype).max)
    return None


def _valid_float(data: np.ndarray, bad: np.ndarray | None, dtype) -> np.ndarray:
    """``data`` as floats, NaN where it holds the invalid value or ``bad`` is set."""
    out = np.array(data, dtype=dtype, order="C")
    marker = invalid_value(data.dtype)
    if marker is not None:
        out[data == marker] = np.nan
    if bad is not None:
        out[bad] = np.nan
    return out


def read_mask(path: str | os.PathLike | FileRef,
              shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask file; True marks a pixel to leave out.

    Parameters
    ----------
    path : str, Path or FileRef
        A Dioptas ``.mask`` (TIFF), EDF, NumPy ``.npy``, Fit2D ``.msk`` or any
        image fabio reads; HDF5 references (``file.nxs::/entry/mask``) work as
        in :func:`read_image`. Non-zero (and NaN) values are masked.
    shape : (int, int), optional
        (rows, columns) of the detector; a mask of another shape is refused.

    Returns
    -------
    ndarray
        bool, 2D.

    Raises
    ------
    InputError
        As :func:`read_image`, and for a mask of the wrong shape.
    """
    ref = parse_reference(path)
    if ref.stop is not None:
        raise InputError(f"a mask is one frame, not a range ({ref})", ref.path)
    if ref.dataset is None and ref.path.suffix.lower() == ".npy":
        data = _read_npy(ref)
    else:
        data = _read_frame(ref)
    if data.dtype.kind not in "biuf":
        raise InputError(f"mask data has type {data.dtype}, not numbers", ref.path)
    _check_shape(data.shape, shape, "mask", ref.path)
    # != 0 on the native dtype: a float32 cast first would turn 1e-50 into 0.
    # NaN != 0 is True, so NaN pixels count as masked.
    return np.ascontiguousarray(data != 0)


def read_frame_file(reference: str | os.PathLike | FileRef) -> bytes | None:
    """The bytes of the file behind ``reference`` when :func:`read_image` can
    decode the frame from them, else None (and nothing is read).

    That is a CBF named ``.cbf``, ``.cbf.gz`` or ``.cbf.bz2`` (one frame per
    file, small enough to hold). Pass the bytes to ``read_image(...,
    content=)`` and to :func:`dacpipe.io.refs.file_record` (``content=``) to
    read the file once for both. HDF5 stacks and other formats, which may
    hold many frames, are left to their readers.

    Raises
    ------
    InputError
        Missing, empty or unreadable file.
    """
    ref = parse_reference(reference)
    if ref.dataset is not None or not _cbf_by_name(ref.path):
        return None
    _check_file(ref.path)
    return _read_bytes(ref.path)


def frame_count(reference: str | os.PathLike | FileRef) -> int:
    """Number of frames in a file or HDF5 dataset (1 for a plain image).

    A frame index in ``reference`` is ignored.

    Raises
    ------
    InputError
        The file or dataset cannot be opened.
    """
    ref = parse_reference(reference)
    _check_file(ref.path)
    if _is_hdf5(ref):
        with _open_hdf5(ref.path) as h5:
            if _lambda_module(h5, ref):
                return len(_lambda_stacks(ref)[0][1])
            return len(_find_stack(h5, ref))
    with _open_fabio(ref.path) as img:
        return int(img.nframes)


# --- what a frame file says about the beam and the detector ----------------

@dataclass(frozen=True)
class BeamHeader:
    """Wavelength and detector distance as a frame file's header records them.

    Attributes
    ----------
    wavelength_A : float
        NaN when the file gives none or an implausible one (Eiger files
        hold 0 when the beamline did not set it; see
        :data:`HEADER_WAVELENGTH_RANGE_A`).
    distance_m : float
        Sample to detector along the beam (to the beam centre), NaN when
        not given.
    source : str
        Where the values were read ("CBF header", "NeXus /entry/...").
    """

    wavelength_A: float = math.nan
    distance_m: float = math.nan
    source: str = ""


HEADER_WAVELENGTH_RANGE_A = (0.01, 100.0)  # as the PONI reader's plausible range
_CBF_WAVELENGTH = re.compile(rb"^#\s*Wavelength\s+([-+0-9.eE]+)\s*(A|nm)?", re.M)
_CBF_DISTANCE = re.compile(rb"^#\s*Detector_distance\s+([-+0-9.eE]+)\s*(m|mm)?", re.M)
_NEXUS_WAVELENGTH = ("/entry/instrument/beam/incident_wavelength", "/entry/instrument/monochromator/wavelength")
_NEXUS_DISTANCE = ("/entry/instrument/detector/detector_distance", "/entry/instrument/detector/distance")
_LENGTH_TO_A = {"a": 1.0, "angstrom": 1.0, "angstroms": 1.0, "\u00e5": 1.0, "nm": 10.0, "m": 1e10}
_LENGTH_TO_M = {"m": 1.0, "meter": 1.0, "metre": 1.0, "mm": 1e-3, "cm": 1e-2}


def read_header(reference: str | os.PathLike | FileRef, content: bytes | None = None) -> BeamHeader:
    """The wavelength and detector distance a frame file records, NaN where it
    records none.

    Read from the Pilatus mini-CBF header (``# Wavelength 0.4066 A``,
    ``# Detector_distance 0.20000 m``) and from Eiger/NeXus files
    (``/entry/instrument/beam/incident_wavelength``, in angstrom unless its
    ``@units`` say otherwise; ``/entry/instrument/detector/detector_distance``,
    in metres unless ``@units``). Other formats give NaN. ``content``: the
    file's bytes, when :func:`read_frame_file` took them (a CBF is read once).

    Raises
    ------
    InputError
        The file cannot be read.
    """
    ref = parse_reference(reference)
    path = ref.path
    if content is None and _cbf_by_name(path):
        _check_file(path)
        content = _read_bytes(path)
    if content is not None and not _has_hdf5_signature(content):
        cbf = _cbf_content(path, content)
        return _cbf_header(cbf) if cbf is not None else BeamHeader()
    _check_file(path)
    if not _is_hdf5(ref):
        return BeamHeader()
    with _open_hdf5(path) as h5:
        wavelength = _nexus_length(h5, _NEXUS_WAVELENGTH, _LENGTH_TO_A, "angstrom")
        distance = _nexus_length(h5, _NEXUS_DISTANCE, _LENGTH_TO_M, "m")
    names = [n for (n, v) in (wavelength, distance) if n]
    return BeamHeader(_plausible_wavelength(wavelength[1]), _positive_or_nan(distance[1]),
                      "NeXus " + ", ".join(names) if names else "")


def _cbf_header(content: bytes) -> BeamHeader:
    end = content.find(fabio.cbfimage.CbfImage.STARTER)
    head = content[:end if end >= 0 else len(content)]
    wavelength = distance = math.nan
    match = _CBF_WAVELENGTH.search(head)
    if match:
        wavelength = _float(match[1]) * (10.0 if match[2] == b"nm" else 1.0)
    match = _CBF_DISTANCE.search(head)
    if match:
        distance = _float(match[1]) * (1e-3 if match[2] == b"mm" else 1.0)
    found = not (math.isnan(wavelength) and math.isnan(distance))
    return BeamHeader(_plausible_wavelength(wavelength), _positive_or_nan(distance), "CBF header" if found else "")


def _nexus_length(h5: h5py.File, names, factors: dict, default_unit: str) -> tuple[str, float]:
    for name in names:
        try:
            obj = h5.get(name)
            if not isinstance(obj, h5py.Dataset) or obj.dtype.kind not in "iuf" or obj.size != 1:
                continue
            value = float(np.asarray(obj[()]).reshape(-1)[0])
            unit = (_attr_text(obj.attrs.get("units")) or default_unit).strip().lower()
        except Exception:
            continue
        if unit in factors:
            return name, value * factors[unit]
    return "", math.nan


def _float(text: bytes) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _plausible_wavelength(value_A: float) -> float:
    low, high = HEADER_WAVELENGTH_RANGE_A
    return value_A if math.isfinite(value_A) and low <= value_A <= high else math.nan


def _positive_or_nan(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else math.nan


# --- reading -------------------------------------------------------------

def _read_frame(ref: FileRef, raw: bytes | None = None) -> np.ndarray:
    """The one frame ``ref`` names, in the file's own dtype, squeezed to 2D
    (a mask, a calibration frame: no invalid-pixel handling)."""
    data, _ = next(_frames(ref, raw))
    return data


def _frames(ref: FileRef, raw: bytes | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Each frame ``ref`` names (one, or each of a range), in the file's own
    dtype, squeezed to 2D, with the file's bad-pixel mask (True = bad) or
    None; ``raw``: the file's bytes, when the caller has read them."""
    _check_file(ref.path)
    if raw is not None and not _has_hdf5_signature(raw):
        if ref.dataset is not None:
            raise InputError(f"not an HDF5 file, but an HDF5 dataset ({ref.dataset}) was asked for", ref.path)
        if ref.stop is not None:
            raise InputError(f"CBF file has 1 frames, frames {ref.frame}:{ref.stop} asked for", ref.path)
        yield _checked_2d(_read_fabio(ref, raw), ref), None
    elif _is_hdf5(ref):
        for data, bad in _read_hdf5(ref):
            yield _checked_2d(data, ref), bad
    elif ref.stop is None:
        yield _checked_2d(_read_fabio(ref), ref), None
    else:
        for index in ref.frames:
            yield _checked_2d(_read_fabio(ref.single(index), range_of=ref), ref), None


def _checked_2d(data, ref: FileRef) -> np.ndarray:
    if data is None:
        raise InputError("no data in file", ref.path)
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[0] == 1:  # a one-frame stack is an image
        data = data[0]
    if data.ndim != 2:
        raise InputError(f"data has shape {_fmt(data.shape)}, not a 2D image", ref.path)
    if data.size == 0:
        raise InputError(f"image is empty (shape {_fmt(data.shape)})", ref.path)
    return data


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a directory, not a file", path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read file ({_describe(exc)})", path) from None
    if size == 0:
        raise InputError("empty file", path)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file ({_describe(exc)})", path) from None


def _has_hdf5_signature(raw: bytes) -> bool:
    """The HDF5 signature where the format puts it: at byte 0, 512, 1024, 2048, ..."""
    offset = 0
    while offset + len(_HDF5_SIGNATURE) <= len(raw):
        if raw.startswith(_HDF5_SIGNATURE, offset):
            return True
        offset = 512 if offset == 0 else 2 * offset
    return False


def _is_hdf5(ref: FileRef) -> bool:
    """Whether ``ref`` is to be read with h5py; refuses '::' on non-HDF5 files."""
    try:
        signature = h5py.is_hdf5(str(ref.path))
    except Exception:  # unreadable file: let the reader report it
        signature = False
    if signature:
        return True
    if ref.dataset is not None:
        raise InputError(f"not an HDF5 file, but an HDF5 dataset ({ref.dataset}) was asked for", ref.path)
    if ref.path.suffix.lower() in HDF5_SUFFIXES:
        # fabio would only say "could not identify"; the real cause is damage
        raise InputError("not a valid HDF5 file (no HDF5 signature; truncated or damaged?)", ref.path)
    return False


# --- fabio formats ---------------------------------------------------------

def _open_fabio(path: Path):
    """fabio.open, with every failure turned into an InputError."""
    content = _cbf_content(path)
    if content is not None:
        _check_cbf_binary(content, path)
    return _fabio_open(path)


def _fabio_open(path: Path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's "Corrupt EXIF" and the like: we check ourselves
            return fabio.open(str(path))
    except InputError:
        raise
    except Exception as exc:
        message = str(exc).lower()
        if "could not identify" in message or "not a valid" in message:
            reason = "not an image format fabio can read"
        else:
            kind = path.suffix.lstrip(".").upper() or "image"
            reason = f"truncated or damaged {kind} file (fabio: {_describe(exc)})"
        raise InputError(reason, path) from None


def _suffixes(path: Path) -> list[str]:
    return [s.lower() for s in path.suffixes[-2:]]


def _cbf_by_name(path: Path) -> bool:
    return ".cbf" in _suffixes(path)


def _cbf_content(path: Path, raw: bytes | None = None) -> bytes | None:
    """The (decompressed) bytes of a file fabio will read as CBF, else None.

    ``raw``: the file's bytes, when already read. A file named ``.cbf`` is
    read whole at once; another is first peeked at for the ``###CBF`` magic.
    """
    suffixes = _suffixes(path)
    last = suffixes[-1] if suffixes else ""
    try:
        if raw is None and ".cbf" not in suffixes:
            with _OPENERS.get(last, open)(path, "rb") as stream:
                if not stream.read(16).startswith(b"###CBF"):
                    return None
        if raw is None:
            raw = _read_bytes(path)
        content = _DECOMPRESSORS[last](raw) if last in _DECOMPRESSORS else raw
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise InputError(f"truncated or damaged compressed file ({_describe(exc)})", path) from None
    if not (".cbf" in suffixes or content.startswith(b"###CBF")):
        return None
    return content


def _check_cbf_binary(content: bytes, path: Path) -> None:
    """Refuse a CBF file whose binary section never starts.

    fabio (2026.6) loops forever on such a file: it reads past the end of the
    file waiting for the 4-byte binary start marker. A CBF cut inside its
    header is exactly that file.
    """
    if fabio.cbfimage.CbfImage.STARTER not in content:
        if not content.startswith(b"###CBF"):
            raise InputError("not a CBF file (neither a CBF header nor a binary section)", path)
        raise InputError("truncated CBF: the binary data section never starts", path)


def _check_cbf_complete(header, content: bytes, path: Path) -> None:
    """Size and MD5 of the CBF binary section against its MIME header.

    fabio decodes what is there and only logs a checksum mismatch.
    """
    try:
        binary_size = int(header["X-Binary-Size"])
    except (KeyError, ValueError, TypeError):
        return
    start = content.find(fabio.cbfimage.CbfImage.STARTER) + len(fabio.cbfimage.CbfImage.STARTER)
    blob = content[start:start + binary_size]
    if len(blob) < binary_size:
        raise InputError(f"truncated CBF: header says the binary section has {binary_size} bytes, "
                         f"the file holds {len(blob)}", path)
    expected_md5 = str(header.get("Content-MD5", "")).strip()
    if expected_md5:
        actual = base64.b64encode(hashlib.md5(blob).digest()).decode("ascii")
        if actual != expected_md5:
            raise InputError("damaged CBF: the binary data do not match their Content-MD5 checksum", path)


def _read_cbf(ref: FileRef, content: bytes) -> np.ndarray:
    """A CBF frame from the file's (decompressed) bytes: checked, then decoded by fabio in memory."""
    path = ref.path
    _check_cbf_binary(content, path)  # before fabio, which would loop forever
    _choose_frame(1, ref, "CBF file has 1 frames")  # fabio reads one image per CBF file
    img = fabio.cbfimage.CbfImage()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # check_MD5=False: fabio would only log a mismatch; it is checked below, once
            img.read(io.BytesIO(content), check_MD5=False)
    except Exception as exc:
        raise InputError(f"truncated or damaged CBF file (fabio: {_describe(exc)})", path) from None
    if img.data is None:
        raise InputError("truncated CBF: fabio returned no data", path)
    _check_cbf_complete(img.header, content, path)
    return img.data


def _read_fabio(ref: FileRef, raw: bytes | None = None, range_of: FileRef | None = None) -> np.ndarray:
    """One frame; ``range_of``: the range ``ref`` is a frame of, checked against the file's frames."""
    path = ref.path
    content = _cbf_content(path, raw)
    if content is not None:
        if range_of is not None:
            raise InputError(f"CBF file has 1 frames, frames {range_of.frame}:{range_of.stop} asked for", path)
        return _read_cbf(ref, content)
    with _fabio_open(path) as img:
        nframes = int(img.nframes)
        if range_of is not None:
            _choose_frames(nframes, range_of, f"{_kind(img)} file has {nframes} frames")
        index = _choose_frame(nframes, ref, f"{_kind(img)} file has {nframes} frames")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _check_complete_before_read(img, index, path)
                data = img.data if nframes == 1 else img.get_frame(index).data
                if data is not None:
                    data = np.array(data)  # detach from fabio's file buffer before close
                _check_complete_after_read(img, data, path)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"truncated or damaged {_kind(img)} file (fabio: {_describe(exc)})", path) from None
    return data


def _check_complete_before_read(img, index: int, path: Path) -> None:
    """Compare the bytes a header promises with the file, before reading data.

    Done before the data are touched so that a damaged header asking for an
    absurd size fails here, not in a huge allocation.
    """
    if isinstance(img, fabio.edfimage.EdfImage):
        _check_edf_frame(img.get_frame(index), path)


def _check_edf_frame(frame, path: Path) -> None:
    header = {str(k).upper(): str(v) for k, v in frame.header.items()}
    shape = tuple(int(n) for n in frame.shape)
    count = int(np.prod(shape, dtype=np.int64))
    if count > MAX_FRAME_PIXELS:
        raise InputError(f"EDF header declares an implausible {_fmt(shape)} image", path)
    try:
        itemsize = np.dtype(fabio.edfimage.DATA_TYPES[header.get("DATATYPE", "UnsignedShort")]).itemsize
    except (KeyError, TypeError):
        raise InputError(f"EDF header has unknown DataType {header.get('DATATYPE')!r}", path) from None
    need_data = count * itemsize
    compression = header.get("COMPRESSION", "NONE").strip().upper()
    compressed = not (compression in ("", "NONE") or compression.startswith("NO"))
    wrapped = path.suffix.lower() in (".gz", ".bz2")  # on-disk size says nothing about the content
    external = "EDF_BINARYFILENAME" in header
    if not (compressed or wrapped or external):
        size = path.stat().st_size
        need = int(frame.start) + need_data
        if need > size:
            raise InputError(f"truncated EDF: header says the data end at byte {need}, the file has {size}", path)
        if frame.blobsize is not None and int(frame.blobsize) < need_data:
            raise InputError(f"damaged EDF: header Size {frame.blobsize} is smaller than the {need_data} "
                             f"bytes a {_fmt(shape)} {header.get('DATATYPE')} image needs", path)
    if getattr(frame, "incomplete_data", False):  # fabio's own flag (a short read of the blob)
        raise InputError("truncated EDF: the data block ends early", path)


def _check_complete_after_read(img, data, path: Path) -> None:
    kind = _kind(img)
    if data is None:
        # fabio's TIFF readers return data=None when the strips run past the
        # end of the file, and also for a file that is no TIFF at all
        with open(path, "rb") as stream:
            magic = stream.read(4)
        if "TIFF" in kind and magic not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            raise InputError(f"not a {kind} file (no TIFF signature)", path)
        raise InputError(f"truncated {kind}: fabio returned no data", path)
    if type(img).__name__ == "SpeImage":
        try:
            header = img.header
            need = 4100 + int(header["num_frames"]) * int(header["x_dim"]) * int(header["y_dim"]) * data.dtype.itemsize
        except (KeyError, ValueError, TypeError):
            return
        size = path.stat().st_size
        if need > size:
            raise InputError(f"truncated SPE: header says the data end at byte {need}, the file has {size}", path)


def _read_npy(ref: FileRef) -> np.ndarray:
    _check_file(ref.path)
    if ref.frame not in (None, 0):
        raise InputError(f".npy file has 1 array, frame {ref.frame} asked for", ref.path)
    try:
        data = np.load(ref.path, allow_pickle=False)  # never unpickle a file we were handed
    except Exception as exc:
        raise InputError(f"not a readable .npy array ({_describe(exc)})", ref.path) from None
    if not isinstance(data, np.ndarray):
        raise InputError(".npy file holds no array", ref.path)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise InputError(f"data has shape {_fmt(data.shape)}, not a 2D image", ref.path)
    return data


# --- HDF5 / NeXus ------------------------------------------------------------

def _open_hdf5(path: Path) -> h5py.File:
    """Open an HDF5 file for reading, once its links are known to stay in its
    folder (:func:`hdf5_linked_files` raises otherwise)."""
    hdf5_linked_files(path)
    try:
        return h5py.File(path, "r")
    except Exception as exc:
        raise InputError(f"truncated or damaged HDF5 file (h5py: {_describe(exc)})", path) from None


# --- files an HDF5 file makes HDF5 read: links, virtual datasets, external storage ---

def input_files(reference: str | os.PathLike | FileRef) -> list[Path]:
    """Every file reading ``reference`` reads: its own file, and for an HDF5
    file the files its external links, virtual datasets and external raw
    storage point at (:func:`hdf5_linked_files`), so that provenance
    checksums them and a workflow reruns when one of them changes.

    Never raises: a file that cannot be read is listed alone, and its reader
    says why.
    """
    path = parse_reference(reference).path
    try:
        if not path.is_file() or not h5py.is_hdf5(str(path)):
            return [path]
        return [path, *hdf5_linked_files(path)]
    except (InputError, OSError):
        return [path]


def hdf5_linked_files(path: str | os.PathLike) -> list[Path]:
    """The other files HDF5 reads when ``path`` is read, found without reading them.

    External links (an Eiger master file's ``/entry/data/data_000001``),
    the sources of virtual datasets and the files of external raw storage,
    followed into the HDF5 files they name (at most :data:`_MAX_LINK_DEPTH`
    files deep). Each is resolved where HDF5 opens it: external links and
    virtual sources relative to the linking file's folder first (then as
    written); external raw storage relative to the current folder, as HDF5
    does by default.

    Returns
    -------
    list of Path
        The linked files, absolute, each once, in the order found.

    Raises
    ------
    InputError
        A link leaves the folder of ``path`` (or of the file linking to it):
        ``/entry/data/data_000001 -> /etc/passwd`` would be read wherever it
        points, while provenance checksummed the wrapper alone. Copy the
        target beside the file to read it.
    """
    path = Path(path).absolute()
    try:
        stat = path.stat()
    except OSError:
        return []
    return list(_linked_files_cached(str(path), stat.st_mtime_ns, stat.st_size, _links_outside_allowed))


_MAX_LINK_DEPTH = 4
# Whether links may leave the file's folder: the run's config says
# (``hdf5_links_outside``, set by the integration stage for its process:
# :func:`allow_links_outside`); the targets are then still read through the
# same walk, checksummed and recorded.
_links_outside_allowed = False


def allow_links_outside(allowed: bool) -> None:
    """Let HDF5 links, virtual datasets and external storage point outside the
    file's folder (a run's ``hdf5_links_outside``), or refuse them again."""
    global _links_outside_allowed
    _links_outside_allowed = bool(allowed)


@functools.lru_cache(maxsize=256)
def _linked_files_cached(path: str, mtime_ns: int, size: int, outside_allowed: bool = False) -> tuple[Path, ...]:
    """:func:`hdf5_linked_files` of one version of a file (every frame of a
    stack is read through the same master: its links are walked once)."""
    found: dict[Path, None] = {}
    pending = [(Path(path), 0)]
    seen = {Path(path)}
    while pending:
        current, depth = pending.pop(0)
        for kind, name, target, is_hdf5 in _links_of_file(current):
            # The HDF5 link is judged, not the filesystem's symlinks (a data
            # folder linked into a processing folder is the user's choice).
            folder = Path(os.path.normpath(current.parent.absolute()))
            real = Path(os.path.normpath(target))
            if not outside_allowed and folder != real.parent and folder not in real.parents:
                raise InputError(f"{name} is {kind} to {target}, outside the file's folder {current.parent}: "
                                 f"refused (copy that file beside it to read it, or set "
                                 f"hdf5_links_outside: true in the run's config)", current)
            if real in seen:
                continue
            seen.add(real)
            found[real] = None
            if is_hdf5 and depth + 1 < _MAX_LINK_DEPTH and real.is_file():
                try:
                    if h5py.is_hdf5(str(real)):
                        pending.append((real, depth + 1))
                except Exception:
                    pass
    return tuple(found)


def _links_of_file(path: Path) -> list[tuple[str, str, Path, bool]]:
    """(kind, object name, target path, whether the target is an HDF5 file) of
    every link of ``path`` to another file; a file h5py cannot open has none
    (its reader reports it)."""
    out = []
    try:
        h5 = h5py.File(path, "r")
    except Exception:
        return out
    with h5:
        def visit(name, link):
            if isinstance(link, h5py.ExternalLink):
                out.append(("an external link", f"/{name}", _hdf5_target(link.filename, path), True))
            elif isinstance(link, h5py.HardLink):
                try:
                    obj = h5[name]
                except Exception:
                    return
                if not isinstance(obj, h5py.Dataset):
                    return
                if obj.is_virtual:
                    for source in obj.virtual_sources():
                        if source.file_name != ".":
                            out.append(("a virtual dataset whose source is", f"/{name}",
                                        _hdf5_target(source.file_name, path), True))
                for file_name, _offset, _size in (obj.external or ()):
                    file_name = file_name.decode() if isinstance(file_name, bytes) else str(file_name)
                    out.append(("external raw storage in", f"/{name}", Path(file_name).absolute(), False))

        h5.visititems_links(visit)
    return out


def _hdf5_target(name: str, linking: Path) -> Path:
    """Where HDF5 opens the file an external link or virtual source names:
    relative to the linking file's folder when it is there, else as written
    (an absolute path, or relative to the current folder)."""
    written = Path(name)
    beside = linking.parent / (written.name if written.is_absolute() else written)
    if not written.is_absolute():
        # beside the linking file first; a file missing from both places is
        # counted beside it (nothing is read: its reader says it is missing)
        return (written.absolute() if not beside.exists() and written.exists() else beside.absolute())
    if not written.exists() and beside.exists():
        return beside.absolute()  # HDF5 tries an absolute name's base name beside the linking file too
    return written


class _Stack:
    """The frames of one HDF5 dataset, or of an Eiger master file's linked
    data files (``/entry/data/data_000001``, ...) numbered across them."""

    def __init__(self, name: str, parts: list[h5py.Dataset], path: Path):
        self.name, self.parts, self.path = name, parts, path
        self.counts = [_hdf5_frames(d, d.name, path) for d in parts]
        shapes = {tuple(d.shape[-2:]) for d in parts}
        if len(shapes) > 1:
            raise InputError(f"the data files of {name} hold frames of different shapes", path)
        dtypes = {d.dtype for d in parts}
        self.dtype = parts[0].dtype if len(dtypes) == 1 else np.result_type(*dtypes)
        self.frame_shape = tuple(parts[0].shape[-2:])

    def __len__(self) -> int:
        return sum(self.counts)

    def frame(self, index: int) -> np.ndarray:
        for dset, count in zip(self.parts, self.counts):
            if index < count:
                try:
                    return dset[index] if dset.ndim == 3 else dset[()]
                except Exception as exc:  # missing compression filter, truncated chunk
                    raise InputError(f"cannot read HDF5 dataset {dset.name} (h5py: {_describe(exc)})",
                                     self.path) from None
            index -= count
        raise IndexError(index)  # _choose_frame checked the index


def _read_hdf5(ref: FileRef) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    path = ref.path
    with _open_hdf5(path) as h5:
        if _lambda_module(h5, ref):
            yield from _read_lambda(ref)
            return
        stack = _find_stack(h5, ref)
        name, nframes = stack.name, len(stack)
        if stack.dtype.kind not in "biuf":
            raise InputError(f"HDF5 dataset {name} has type {stack.dtype}, not numbers", path)
        if int(np.prod(stack.frame_shape, dtype=np.int64)) > MAX_FRAME_PIXELS:
            raise InputError(f"HDF5 dataset {name} has implausible frames of {_fmt(stack.frame_shape)}", path)
        indices = _choose_frames(nframes, ref, f"HDF5 dataset {name} has {nframes} frames", name)
        bad = _pixel_mask(h5, stack.frame_shape)
        for index in indices:
            yield stack.frame(index), bad


def _pixel_mask(h5: h5py.File, frame_shape) -> np.ndarray | None:
    """The file's NeXus pixel mask (True = flagged) when it has the frames' shape.

    NeXus NXdetector ``pixel_mask``: 0 is a good pixel, set bits say why one
    is not (gap, dead, under- or over-responding, noisy); Eiger master files
    keep it under ``detectorSpecific``.
    """
    for name in _PIXEL_MASKS:
        try:
            obj = h5.get(name)
        except Exception:
            continue
        if not isinstance(obj, h5py.Dataset) or obj.dtype.kind not in "biu":
            continue
        shape = tuple(obj.shape)
        if shape[-2:] != tuple(frame_shape) or int(np.prod(shape[:-2], dtype=np.int64)) != 1:
            continue
        try:
            return np.asarray(obj[()]).reshape(frame_shape) != 0
        except Exception:
            continue
    return None


_PIXEL_MASKS = ("/entry/instrument/detector/detectorSpecific/pixel_mask", "/entry/instrument/detector/pixel_mask")
_EIGER_DATA = re.compile(r"^data_\d+$")


def _hdf5_frames(dset: h5py.Dataset, name: str, path: Path) -> int:
    if dset.ndim == 2:
        return 1
    if dset.ndim == 3:
        return int(dset.shape[0])
    raise InputError(f"HDF5 dataset {name} has shape {_fmt(dset.shape)}, not an image or a stack of images", path)


def _eiger_stack(group: h5py.Group, path: Path) -> _Stack | None:
    """The ``data_NNNNNN`` members of an Eiger master file's ``/entry/data`` as one
    stack; a link to a data file that is missing is named in the error."""
    names = sorted(n for n in group.keys() if _EIGER_DATA.match(n))
    if not names:
        return None
    parts = []
    for name in names:
        try:
            obj = group[name]
        except Exception as exc:
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise InputError(f"{group.name}/{name} links to data file {link.filename}, which cannot be "
                                 f"opened (missing beside the master file?)", path) from None
            raise InputError(f"cannot open HDF5 object {group.name}/{name} (h5py: {_describe(exc)})", path) from None
        if isinstance(obj, h5py.Dataset):
            parts.append(obj)
    return _Stack(group.name, parts, path) if parts else None


def _find_stack(h5: h5py.File, ref: FileRef) -> _Stack:
    """The stack ``ref`` names, or the one image dataset (or Eiger stack) of the file."""
    path = ref.path
    if ref.dataset is not None:
        try:
            obj = h5.get(ref.dataset)
        except Exception as exc:  # broken external or soft link
            link = _link_of(h5, ref.dataset)
            if isinstance(link, h5py.ExternalLink):
                raise InputError(f"{ref.dataset} links to data file {link.filename}, which cannot be "
                                 f"opened (missing beside the master file?)", path) from None
            raise InputError(f"cannot open HDF5 object {ref.dataset} (h5py: {_describe(exc)})", path) from None
        if obj is None:
            raise InputError(f"HDF5 file has no dataset {ref.dataset}", path)
        if isinstance(obj, h5py.Group):
            signal = _nxdata_signal(obj)
            if signal is not None:
                return _Stack(signal.name, [signal], path)
            stack = _eiger_stack(obj, path)
            if stack is None:
                raise InputError(f"HDF5 object {ref.dataset} is a group, not a dataset", path)
            return stack
        if not isinstance(obj, h5py.Dataset):
            raise InputError(f"HDF5 object {ref.dataset} is not a dataset", path)
        return _Stack(obj.name, [obj], path)
    name, dset = _find_dataset(h5, ref)
    if dset is None:
        return _eiger_stack(h5[name], path)
    return _Stack(name, [dset], path)


# --- X-Spectrum Lambda multi-module files ----------------------------------

_LAMBDA_DATA = "/entry/instrument/detector/data"
_LAMBDA_POSITION = "/entry/instrument/detector/translation/distance"
_LAMBDA_NAME = re.compile(r"^(?P<head>.+_m)\d(?P<tail>(_part\d+)?\.nxs)$")


def _lambda_module(h5: h5py.File, ref: FileRef) -> bool:
    """Whether ``ref`` names a Lambda module file (NXdetector description
    "Lambda", with the module's position) without a dataset: the whole
    detector is then read; ``::/entry/instrument/detector/data`` reads that
    module alone."""
    if ref.dataset is not None:
        return False
    try:
        description = h5.get("/entry/instrument/detector/description")
        if not isinstance(description, h5py.Dataset) or _LAMBDA_POSITION not in h5 or _LAMBDA_DATA not in h5:
            return False
        return _attr_text(np.asarray(description[()])).strip() == "Lambda"
    except Exception:
        return False


def lambda_module_files(path: str | os.PathLike) -> list[Path]:
    """The module files of the Lambda image ``path`` belongs to: ``<name>_m1<_partN>.nxs``,
    ``_m2``, ... that exist beside it, in module order (``path`` alone when its
    name does not follow that pattern)."""
    path = Path(path)
    match = _LAMBDA_NAME.match(path.name)
    if not match:
        return [path]
    found = [path.with_name(f"{match['head']}{k}{match['tail']}") for k in range(1, 10)]
    return [f for f in found if f.is_file()]


def stitch_lambda(modules: list[np.ndarray], positions_xy: list[tuple[int, int]]) -> np.ndarray:
    """Place Lambda module frames on one image, as Dioptas does.

    Parameters
    ----------
    modules : list of 2D arrays
        One frame per module (rows, columns), as its file holds it.
    positions_xy : list of (int, int)
        Each module's ``translation/distance`` x (columns) and y (rows), in pixels.

    Returns
    -------
    ndarray
        float64; x positions are shifted so that the smallest is 0, y
        positions so that the first module's is 0 (Dioptas' ``LambdaImage``);
        the image is as large as the modules reach, pixels no module covers
        are NaN, and the rows are flipped (Dioptas shows, and calibrates on,
        the image upside down: its PONI files refer to this orientation).
    """
    xy = np.array([[int(round(x)), int(round(y))] for x, y in positions_xy], dtype=np.int64)
    xy[:, 0] -= xy[:, 0].min()
    xy[:, 1] -= xy[0, 1]
    if xy[:, 1].min() < 0:
        raise InputError("Lambda module positions put a module above the first one, "
                         "which Dioptas' stitching does not allow")
    rows = max(int(y) + m.shape[0] for (x, y), m in zip(xy, modules))
    cols = max(int(x) + m.shape[1] for (x, y), m in zip(xy, modules))
    image = np.full((rows, cols), np.nan)
    for (x, y), module in zip(xy, modules):
        image[y:y + module.shape[0], x:x + module.shape[1]] = module
    return image[::-1]


def _lambda_stacks(ref: FileRef) -> list[tuple[tuple[int, int], list[int]]]:
    """Per module file: its (x, y) position and [frames] (for frame_count)."""
    out = []
    for file in lambda_module_files(ref.path):
        with _open_hdf5(file) as h5:
            out.append((_lambda_position(h5, file), [0] * _hdf5_frames(h5[_LAMBDA_DATA], _LAMBDA_DATA, file)))
    return out


def _lambda_position(h5: h5py.File, path: Path) -> tuple[int, int]:
    try:
        position = np.ravel(np.asarray(h5[_LAMBDA_POSITION][()], dtype=float))
    except Exception as exc:
        raise InputError(f"Lambda module position {_LAMBDA_POSITION} unreadable (h5py: {_describe(exc)})",
                         path) from None
    if position.size < 2 or not np.all(np.isfinite(position[:2])):
        raise InputError(f"Lambda module position {_LAMBDA_POSITION} is {position.tolist()}, not (x, y, z)", path)
    return int(round(position[0])), int(round(position[1]))


def _read_lambda(ref: FileRef) -> Iterator[tuple[np.ndarray, None]]:
    """The stitched frames of a Lambda image (the modules' pixel masks applied)."""
    files = lambda_module_files(ref.path)
    handles = [_open_hdf5(f) for f in files]
    try:
        positions, stacks, masks = [], [], []
        for file, h5 in zip(files, handles):
            if not _lambda_module(h5, FileRef(file)):
                raise InputError("not a Lambda module file like its neighbours", file)
            positions.append(_lambda_position(h5, file))
            stack = _Stack(_LAMBDA_DATA, [h5[_LAMBDA_DATA]], file)
            stacks.append(stack)
            masks.append(_pixel_mask(h5, stack.frame_shape))
        counts = {len(s) for s in stacks}
        if len(counts) > 1:
            listed = ", ".join(f"{f.name}: {len(s)}" for f, s in zip(files, stacks))
            raise InputError(f"Lambda modules hold different numbers of frames ({listed})", ref.path)
        nframes = counts.pop()
        indices = _choose_frames(nframes, ref, f"Lambda image has {nframes} frames")
        for index in indices:
            modules = []
            for stack, bad in zip(stacks, masks):
                module = _valid_float(stack.frame(index), bad, np.float64)
                modules.append(module)
            yield stitch_lambda(modules, positions), None
    finally:
        for h5 in handles:
            h5.close()


def _link_of(h5: h5py.File, name: str):
    try:
        return h5.get(name, getlink=True)
    except Exception:
        return None


def _find_dataset(h5: h5py.File, ref: FileRef) -> tuple[str, h5py.Dataset | None]:
    """The one image dataset of a file named without a dataset path; (group
    name, None) for an Eiger master file's ``/entry/data`` links."""
    path = ref.path
    rejected = None
    default = _nexus_default_signal(h5)
    if default is not None:
        if _is_image_dataset(default) and not _looks_integrated(default):
            return default.name, default
        rejected = default.name
    data = h5.get("/entry/data")
    if isinstance(data, h5py.Group) and any(_EIGER_DATA.match(n) for n in data.keys()):
        # External links, which visititems below does not follow.
        return data.name, None
    candidates = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.name != rejected and _is_image_dataset(obj):
            base = name.rsplit("/", 1)[-1].lower()
            if not any(word in base for word in _NOT_IMAGE_WORDS):
                candidates.append(obj.name)

    h5.visititems(visit)
    hint = f"name one as {path.name}::/path/to/dataset"
    if len(candidates) == 1:
        return candidates[0], h5[candidates[0]]
    if not candidates:
        note = f" (its NeXus default {rejected} is not a detector image)" if rejected else ""
        raise InputError(f"no image dataset found in HDF5 file{note}; {hint}", path)
    listed = ", ".join(candidates[:4]) + (", ..." if len(candidates) > 4 else "")
    raise InputError(f"{len(candidates)} HDF5 datasets could be the image ({listed}); {hint}", path)


def _is_image_dataset(dset: h5py.Dataset) -> bool:
    # bool arrays are masks; tiny last dimensions are tables such as (n, 2) positions
    return (dset.ndim in (2, 3) and dset.dtype.kind in "iuf"
            and min(dset.shape[-2:]) >= 16)


def _nexus_default_signal(h5: h5py.File):
    """Follow the NeXus ``default`` attributes from the root to an NXdata signal."""
    group = h5
    for _ in range(4):  # root -> NXentry -> (NXsubentry) -> NXdata
        signal = _nxdata_signal(group)
        if signal is not None:
            return signal
        name = _attr_text(group.attrs.get("default"))
        if not name or not isinstance(group.get(name), h5py.Group):
            return None
        group = group[name]
    return None


def _nxdata_signal(group: h5py.Group):
    if _attr_text(group.attrs.get("NX_class")) != "NXdata":
        return None
    name = _attr_text(group.attrs.get("signal"))
    if name and isinstance(group.get(name), h5py.Dataset):
        return group[name]
    for name, obj in group.items():  # NeXus before 2014 marked the signal on the dataset
        if isinstance(obj, h5py.Dataset) and _attr_text(obj.attrs.get("signal")) in ("1", "True", "true"):
            return obj
    return None


def _looks_integrated(signal: h5py.Dataset) -> bool:
    """True for an NXdata signal of already integrated patterns (50 x 4038 in 2theta)."""
    interpretation = _attr_text(signal.attrs.get("interpretation"))
    if interpretation in ("spectrum", "scalar"):
        return True
    if interpretation == "image":
        return False
    group = signal.parent
    axes = group.attrs.get("axes")
    if axes is None:
        return False
    axes = [_attr_text(a) for a in np.atleast_1d(axes)]
    if len(axes) != signal.ndim or axes[-1] in ("", "."):
        return False
    axis = group.get(axes[-1])
    if not isinstance(axis, h5py.Dataset):
        return False
    labels = " ".join(_attr_text(axis.attrs.get(key)) for key in ("units", "unit", "long_name"))
    return bool(_INTEGRATED_UNITS.search(labels))


def _attr_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# --- shared checks -------------------------------------------------------------

def _choose_frame(nframes: int, ref: FileRef, what: str, dataset: str | None = None) -> int:
    """The 0-based frame to read; a stack without an index is refused, not guessed."""
    if nframes < 1:
        raise InputError(f"{what}, nothing to read", ref.path)
    if ref.frame is None:
        if nframes == 1:
            return 0
        example = f"{ref.path.name}::{dataset}@N" if dataset else f"{ref.path.name}@N"
        raise InputError(f"{what}; name one as {example}", ref.path)
    if ref.frame >= nframes:
        raise InputError(f"{what}, frame {ref.frame} asked for", ref.path)
    return ref.frame


def _choose_frames(nframes: int, ref: FileRef, what: str, dataset: str | None = None) -> range:
    """The 0-based frames to read: one (as :func:`_choose_frame`) or a range."""
    if ref.stop is None:
        index = _choose_frame(nframes, ref, what, dataset)
        return range(index, index + 1)
    if ref.stop > nframes:
        raise InputError(f"{what}, frames {ref.frame}:{ref.stop} asked for (the stop is not included)", ref.path)
    return ref.frames


def _check_shape(shape, expected, what: str, path: Path) -> None:
    if expected is None:
        return
    expected = tuple(int(n) for n in expected)
    if tuple(shape) != expected:
        # rows and columns swapped: written by a program that stores images
        # the other way round; integrating it would put every ring elsewhere
        hint = " (transposed: rows and columns swapped)" if tuple(shape) == expected[::-1] else ""
        raise InputError(f"{what} is {_fmt(shape)} but the detector is {_fmt(expected)}{hint}", path)


def _kind(img) -> str:
    """A short format name for messages: 'TIFF', 'EDF', 'CBF', ..."""
    name = type(img).__name__
    return {"TifImage": "TIFF", "PilatusImage": "Pilatus TIFF", "MarccdImage": "MarCCD TIFF",
            "EdfImage": "EDF", "CbfImage": "CBF", "SpeImage": "SPE",
            "Fit2dMaskImage": "Fit2D mask"}.get(name, name.removesuffix("Image") or "image")


def _fmt(shape) -> str:
    return "x".join(str(int(n)) for n in shape) or "scalar"


def _describe(exc: BaseException) -> str:
    """``ExcType: message`` on one line, cut short: a reason, not a traceback."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."
