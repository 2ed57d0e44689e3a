"""Load a PONI geometry file into a ready pyFAI integrator.

pyFAI reads the PONI file (every version it has written: 1, 2, 2.1 and 3) and
builds the detector; this module checks what pyFAI lets pass silently and adds
the one convention pyFAI cannot know about.

What pyFAI lets pass, and this module refuses:

* a missing ``Distance``/``Poni1``/.../``Rot3`` key (pyFAI keeps its default,
  e.g. a 1 m distance from nowhere);
* no wavelength (pyFAI integrates in 2theta only once one is set);
* a ``Detector_config`` that is not valid JSON (pyFAI logs it and builds a
  detector without pixel size);
* detector, pixel size and image shape given twice and in disagreement.

Concatenated version-1 blocks (Dioptas and pyFAI-calib append to an existing
file) are read the way pyFAI reads them: key by key, the last value wins.

Conventions
-----------
``"pyfai"``
    The PONI file refers to the image as fabio reads it.
``"dioptas-legacy"``
    The PONI file was written by Dioptas before 0.7, which flipped every image
    upside down when it loaded it; the file refers to that flipped image.
    Two ways to honour it (``legacy_method``):

    ``"orientation"`` (default)
        What Dioptas 0.7 does when it converts such a file: the detector gets
        pyFAI orientation 2 (row 0 at the bottom), and pyFAI integrates the
        raw frames as the detector wrote them. Raw-frame arrays (dark, flat,
        the detector's own gap mask, masks computed from a frame) stay as
        they are; only a mask *drawn* in Dioptas < 0.7, on the flipped image,
        is flipped, once (:meth:`Geometry.orient_user_mask`).
    ``"flip"``
        The way Dioptas < 0.7 itself worked: pyFAI keeps orientation 3 and
        every image is flipped before integration (:meth:`Geometry.orient`
        makes a flipped copy), the detector's gap mask with them.

    Both give every pixel the same 2theta and chi. They differ only in the
    order in which pyFAI visits the pixels of a bin (orientation 2 lists the
    rows of a bin bottom to top), which is invisible in plain sums (bit-
    identical patterns with ``no`` or ``bbox`` splitting and Poisson errors)
    but not in pyFAI's single-pass per-bin variance, which depends on that
    order: sigma clipping, the median filter and the azimuthal error model
    then give (slightly) different results. The integration stage chooses;
    see :mod:`dacpipe.integration.integrator`.

    A file that already sets an orientation is refused under this
    convention, as the flip would then be applied twice.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyFAI.detectors
from pyFAI.integrator.azimuthal import AzimuthalIntegrator
from pyFAI.io.ponifile import PoniFile

from ..core.errors import InputError

CONVENTIONS = ("pyfai", "dioptas-legacy")
LEGACY_METHODS = ("orientation", "flip")

# PoniFile attribute -> the key as pyFAI writes it, for messages.
_REQUIRED_KEYS = {"dist": "Distance", "poni1": "Poni1", "poni2": "Poni2",
                  "rot1": "Rot1", "rot2": "Rot2", "rot3": "Rot3"}
# X-ray wavelengths in use span ~0.1 to ~20 A; outside 0.01-100 A the number
# is in the wrong unit (a PONI file stores metres: 4.066e-11, not 0.4066).
_WAVELENGTH_RANGE_A = (0.01, 100.0)
_PIXEL_RTOL = 1e-3  # relative disagreement tolerated between two pixel sizes
_MAX_MESSAGE = 160
_DEFAULT_ORIENTATION = 3  # pyFAI's native orientation; the only one pre-0.7 Dioptas knew
_LEGACY_ORIENTATION = 2  # row 0 at the bottom: the image Dioptas < 0.7 showed, as pyFAI describes it


@dataclass(frozen=True, eq=False)  # eq=False: integrators do not compare by value
class Geometry:
    """A PONI geometry, ready to integrate images with.

    Attributes
    ----------
    integrator : pyFAI.integrator.azimuthal.AzimuthalIntegrator
        Geometry, detector and wavelength set. Feed it images that went
        through :meth:`orient` (a no-op, without a copy, unless
        :attr:`flips_images`).
    convention : str
        One of :data:`CONVENTIONS`.
    wavelength_A : float
        The wavelength the integrator uses, in angstrom (from the PONI file or
        the override).
    detector_shape : tuple of int or None
        (rows, columns) of the raw image the detector expects. None only when
        neither the PONI file, the detector catalogue nor ``shape=`` told; pass
        ``shape=`` to :func:`load_geometry` (from the first image read) to have
        every image checked.
    source : str
        The PONI file read.
    flips_images : bool
        True for ``"dioptas-legacy"`` with ``legacy_method="flip"``: every
        image must be flipped (:meth:`orient`) before pyFAI sees it.
    """

    integrator: AzimuthalIntegrator
    convention: str
    wavelength_A: float
    detector_shape: tuple[int, int] | None
    source: str
    flips_images: bool = False

    def orient(self, image: np.ndarray) -> np.ndarray:
        """Bring a raw image (or a mask computed from one) into the frame pyFAI integrates.

        Parameters
        ----------
        image : ndarray
            2D, as read from the detector file (rows, columns).

        Returns
        -------
        ndarray
            ``np.flipud(image)`` (contiguous) when :attr:`flips_images`,
            ``image`` itself otherwise (pyFAI's detector orientation, if any,
            describes the raw frame).

        Raises
        ------
        InputError
            (without a path: the caller adds it) for an array that is not 2D
            or not of :attr:`detector_shape`.

        Notes
        -----
        Masks made on the raw image (``image < 0``, detector gap masks, masks
        from pyFAI-calib) go through here. A mask drawn in Dioptas before
        0.7 was drawn on the flipped image: use :meth:`orient_user_mask`.
        """
        self._check_shape(image, "image")
        if self.flips_images:
            return np.ascontiguousarray(np.flipud(image))
        return image

    def orient_user_mask(self, mask: np.ndarray) -> np.ndarray:
        """Bring a mask drawn on the image as the PONI file sees it into the frame pyFAI integrates.

        Under ``"dioptas-legacy"`` that is the flipped image Dioptas < 0.7
        showed: with pyFAI orientation 2 the mask is flipped back to the raw
        frame (once, when it is read); when the images are flipped instead
        (:attr:`flips_images`) it is already in their frame. Under
        ``"pyfai"`` it is the raw image: unchanged.

        Raises
        ------
        InputError
            As :meth:`orient`.
        """
        self._check_shape(mask, "mask")
        if self.convention == "dioptas-legacy" and not self.flips_images:
            return np.ascontiguousarray(np.flipud(mask))
        return mask

    def _check_shape(self, image, what: str) -> None:
        shape = np.shape(image)
        if len(shape) != 2:
            raise InputError(f"{what} has shape {_fmt(shape)}, not 2D")
        if self.detector_shape is not None and tuple(shape) != tuple(self.detector_shape):
            raise InputError(f"{what} is {_fmt(shape)} but the detector is {_fmt(self.detector_shape)}")


def load_geometry(poni_path: str | os.PathLike, *, convention: str = "pyfai",
                  wavelength_A: float | None = None,
                  detector: str | pyFAI.detectors.Detector | None = None,
                  pixel_size_um: float | tuple[float, float] | None = None,
                  shape: tuple[int, int] | Callable[[], tuple[int, int] | None] | None = None,
                  legacy_method: str = "orientation") -> Geometry:
    """Read a PONI file into a :class:`Geometry`.

    Parameters
    ----------
    poni_path : str or Path
        PONI file of any version pyFAI writes (1, 2, 2.1, 3).
    convention : {"pyfai", "dioptas-legacy"}
        Which image frame the file refers to; see the module notes.
    wavelength_A : float, optional
        Overrides the file's wavelength (e.g. the energy changed after the
        calibration); required when the file has none.
    detector : str or pyFAI Detector, optional
        A name from pyFAI's catalogue (``"Pilatus1M"``) to use instead of the
        file's generic detector, which adds its shape and gap mask. Its pixel
        size must agree with the file's; a file that names another catalogue
        detector is refused.
    pixel_size_um : float or (float, float), optional
        Pixel size (rows, columns) for old files that give none; must agree
        with the file when it gives one.
    shape : (int, int) or callable, optional
        (rows, columns) of the raw images, for detectors whose file gives no
        shape (version 1, or ``"max_shape": null``); checked against it
        otherwise. A callable returning it (or None) is called only when
        the file and detector give no shape, so that a caller reads an
        image for it only then.
    legacy_method : {"orientation", "flip"}
        How ``"dioptas-legacy"`` is honoured; see the module notes. Ignored
        under ``"pyfai"``.

    Returns
    -------
    Geometry

    Raises
    ------
    InputError
        Missing or unreadable file, a missing key, no usable wavelength or
        pixel size, an unknown detector, disagreeing detector information, an
        unknown convention; under ``"dioptas-legacy"`` with pyFAI
        orientation 2, no detector shape (pyFAI needs it to number the rows
        from the bottom and, without it, silently does not).
    """
    path = Path(poni_path)
    if convention not in CONVENTIONS:
        raise InputError(f"unknown PONI convention {convention!r}; use one of {', '.join(CONVENTIONS)}", path)
    if legacy_method not in LEGACY_METHODS:
        raise InputError(f"unknown legacy_method {legacy_method!r}; use one of {', '.join(LEGACY_METHODS)}", path)
    poni = _read_poni(path)

    det = poni.detector if poni.detector is not None else pyFAI.detectors.Detector()
    orientation = int(getattr(det, "orientation", _DEFAULT_ORIENTATION) or _DEFAULT_ORIENTATION)
    if convention == "dioptas-legacy" and orientation != _DEFAULT_ORIENTATION:
        raise InputError(f"PONI file sets detector orientation {orientation}, which already describes "
                         "how the image is oriented; 'dioptas-legacy' would flip it a second time "
                         "(use convention 'pyfai')", path)
    if detector is not None:
        det = _catalogue_detector(detector, det, orientation, path)
    det = _apply_pixel_size(det, pixel_size_um, path)
    if not (_positive(det.pixel1) and _positive(det.pixel2)):
        raise InputError("PONI file gives no pixel size (no PixelSize1/PixelSize2 or Detector_config); "
                         "pass pixel_size_um or a detector name", path)
    if callable(shape):
        shape = shape() if det.shape is None else None
    _apply_shape(det, shape, path)
    flips_images = convention == "dioptas-legacy" and legacy_method == "flip"
    if flips_images:
        if det.mask is not None:
            # The detector's own mask (module gaps) is in the raw frame, the
            # images pyFAI will see are flipped: flip the mask with them.
            det.mask = np.ascontiguousarray(np.flipud(det.mask))
    elif convention == "dioptas-legacy":
        det = _legacy_orientation(det, path)

    wavelength_m = _wavelength_m(poni, wavelength_A, path)
    integrator = AzimuthalIntegrator(dist=poni.dist, poni1=poni.poni1, poni2=poni.poni2,
                                     rot1=poni.rot1, rot2=poni.rot2, rot3=poni.rot3,
                                     detector=det, wavelength=wavelength_m)
    if poni.parallax:
        # after the wavelength: the sensor's absorption length depends on it
        try:
            integrator.enable_parallax()
        except Exception as exc:
            raise InputError(f"PONI file asks for parallax correction, which pyFAI cannot set up "
                             f"({_describe(exc)})", path) from None
    det_shape = tuple(int(n) for n in det.shape) if det.shape is not None else None
    return Geometry(integrator=integrator, convention=convention,
                    wavelength_A=wavelength_m * 1e10, detector_shape=det_shape,
                    source=str(path), flips_images=flips_images)


def _read_poni(path: Path) -> PoniFile:
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a directory, not a file", path)
    if path.stat().st_size == 0:
        raise InputError("empty file", path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("not a PONI file (not text)", path) from None
    except OSError as exc:
        raise InputError(f"cannot read file ({_describe(exc)})", path) from None
    if "\x00" in text:
        raise InputError("not a PONI file (binary content)", path)
    _check_detector_config(text, path)
    try:
        poni = PoniFile(str(path))
    except KeyError as exc:  # version >= 2 without its Detector line
        key = str(exc.args[0]) if exc.args else "?"
        raise InputError(f"PONI file has no {key.capitalize()!r} key", path) from None
    except ValueError as exc:
        raise InputError(f"PONI file has a value that is not a number ({_describe(exc)})", path) from None
    except Exception as exc:  # unknown detector, unsupported orientation, too recent a version
        raise InputError(f"pyFAI cannot read this PONI file ({_describe(exc)})", path) from None
    for attribute, key in _REQUIRED_KEYS.items():
        value = getattr(poni, attribute)
        if value is None:
            raise InputError(f"PONI file has no {key!r} key", path)
        if not math.isfinite(value):
            raise InputError(f"PONI file has {key} = {value}", path)
    if poni.dist <= 0:
        raise InputError(f"PONI file has Distance = {poni.dist} m; it must be positive", path)
    return poni


def _check_detector_config(text: str, path: Path) -> None:
    """Refuse a Detector_config that is not JSON: pyFAI only logs it and goes on."""
    config = None
    for line in text.splitlines():  # the last one wins, as in pyFAI
        key, sep, value = line.partition(":")
        if sep and not line.lstrip().startswith("#") and key.strip().lower() == "detector_config":
            config = value.strip()
    if config is None:
        return
    try:
        json.loads(config)
    except ValueError:
        raise InputError(f"PONI Detector_config is not valid JSON: {config[:80]}", path) from None


def _catalogue_detector(detector, poni_det, orientation: int, path: Path):
    """The requested catalogue detector, checked against the file's."""
    if isinstance(detector, pyFAI.detectors.Detector):
        new = copy.deepcopy(detector)  # shape and mask get set on it: leave the caller's alone
    else:
        name = str(detector)
        # Checked first: pyFAI logs its whole catalogue at ERROR level before raising.
        known = (hasattr(pyFAI.detectors, name) or os.path.isfile(name)
                 or name.lower() in pyFAI.detectors.ALL_DETECTORS
                 or name.lower().replace(" ", "_") in pyFAI.detectors.ALL_DETECTORS)
        if not known:
            raise InputError(f"unknown detector {name!r} (not in pyFAI's detector catalogue)", path)
        try:
            # keep the file's orientation: the geometry was refined with it
            new = pyFAI.detectors.detector_factory(name, {"orientation": orientation})
        except Exception as exc:
            raise InputError(f"pyFAI cannot build detector {name!r} ({_describe(exc)})", path) from None
    poni_class = type(poni_det).__name__
    if poni_class != "Detector" and poni_class != type(new).__name__:
        raise InputError(f"PONI file is for detector {poni_class}, not {type(new).__name__}", path)
    if _positive(poni_det.pixel1) and _positive(poni_det.pixel2):
        if not _same_pixels((poni_det.pixel1, poni_det.pixel2), (new.pixel1, new.pixel2)):
            raise InputError(f"PONI pixel size {_fmt_um(poni_det.pixel1, poni_det.pixel2)} differs from "
                             f"detector {type(new).__name__}'s {_fmt_um(new.pixel1, new.pixel2)}", path)
    if poni_det.shape is not None and new.shape is not None and tuple(poni_det.shape) != tuple(new.shape):
        raise InputError(f"PONI file gives detector shape {_fmt(poni_det.shape)}, "
                         f"{type(new).__name__} is {_fmt(new.shape)}", path)
    return new


def _legacy_orientation(det, path: Path):
    """``det`` with pyFAI orientation 2, built the way pyFAI builds the detector
    of a PONI file that sets it (Dioptas 0.7's conversion of a legacy file)."""
    if det.shape is None:
        raise InputError("PONI file gives no detector shape, which 'dioptas-legacy' needs (pyFAI numbers "
                         "the rows from the bottom by it); pass the image shape", path)
    # The keys pyFAI's factory passes on to the class (it drops the others
    # with an ERROR log: a NexusDetector's own get_config has three of them).
    accepted = {name.lower() for name in inspect.getfullargspec(type(det)).args} | {"binning"}
    config = {key: value for key, value in det.get_config().items() if key.lower() in accepted}
    config["orientation"] = _LEGACY_ORIENTATION
    try:
        new = pyFAI.detectors.detector_factory(type(det).__name__, config)
    except Exception as exc:
        raise InputError(f"pyFAI cannot set orientation {_LEGACY_ORIENTATION} on detector "
                         f"{type(det).__name__} ({_describe(exc)})", path) from None
    # _apply_shape set max_shape, which get_config carries; binning it does not
    if new.shape is None or tuple(new.shape) != tuple(det.shape) or not _same_pixels((new.pixel1, new.pixel2), (det.pixel1, det.pixel2)):
        raise InputError(f"pyFAI rebuilt detector {type(det).__name__} with orientation {_LEGACY_ORIENTATION} "
                         f"as {_fmt(new.shape or ())}, {_fmt_um(new.pixel1, new.pixel2)}, not {_fmt(det.shape)}, "
                         f"{_fmt_um(det.pixel1, det.pixel2)}", path)
    if det.mask is not None:
        # The gap mask is in the raw frame, as are the images pyFAI will see:
        # carried over as it is (get_config does not hold a mask set by hand).
        new.mask = np.array(det.mask)
    return new


def _apply_pixel_size(det, pixel_size_um, path: Path):
    if pixel_size_um is None:
        return det
    sizes = np.broadcast_to(np.asarray(pixel_size_um, dtype=float), (2,))
    if not all(_positive(s) for s in sizes):
        raise InputError(f"pixel_size_um {pixel_size_um} must be positive", path)
    pixel_m = (float(sizes[0]) * 1e-6, float(sizes[1]) * 1e-6)
    if _positive(det.pixel1) and _positive(det.pixel2):
        if not _same_pixels((det.pixel1, det.pixel2), pixel_m):
            raise InputError(f"PONI pixel size {_fmt_um(det.pixel1, det.pixel2)} differs from "
                             f"pixel_size_um {_fmt_um(*pixel_m)}", path)
        return det
    det.pixel1, det.pixel2 = pixel_m
    return det


def _apply_shape(det, shape, path: Path) -> None:
    if shape is None:
        return
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise InputError(f"shape {shape!r} is not (rows, columns)", path) from None
    if len(shape) != 2 or min(shape) < 1:
        raise InputError(f"shape {shape!r} is not (rows, columns)", path)
    if det.shape is not None:
        if tuple(det.shape) != shape:
            raise InputError(f"image is {_fmt(shape)} but the detector is {_fmt(det.shape)}", path)
        return
    # Both: pyFAI computes pixel positions (and orientation flips) from
    # max_shape/shape; a detector with neither takes the first image's shape.
    det.max_shape = shape
    det.shape = shape


def _wavelength_m(poni: PoniFile, wavelength_A, path: Path) -> float:
    if wavelength_A is not None:
        value_A, origin = float(wavelength_A), "wavelength_A"
    elif poni.wavelength is not None:
        value_A, origin = float(poni.wavelength) * 1e10, "PONI Wavelength"
    else:
        raise InputError("PONI file has no 'Wavelength' key and no wavelength_A was given", path)
    low, high = _WAVELENGTH_RANGE_A
    if not (math.isfinite(value_A) and low <= value_A <= high):
        hint = " (PONI files give metres)" if origin != "wavelength_A" else ""
        raise InputError(f"{origin} {value_A:g} A is not a plausible X-ray wavelength{hint}", path)
    return value_A * 1e-10


# --- the PONI file against a frame's header ---------------------------------

WAVELENGTH_RTOL = 1e-4
"""Relative disagreement of PONI and header wavelengths that is reported: a
beamline's monochromator is known to ~1e-4 (Si(111) bandwidth 1.3e-4), and
an error of 1e-4 in the wavelength is one of 1e-4 in every lattice
parameter, a third of a typical refined standard error's worth of volume."""
DISTANCE_RTOL = 0.01
"""Relative disagreement of PONI and header distances that is reported: a
header's distance is the motor position (often off by the sample's and the
sensor's few mm), the PONI's a calibration; beyond 1 % one of the two
belongs to another setup."""


def poni_wavelength_A(poni_path: str | os.PathLike) -> float | None:
    """The wavelength a PONI file gives (angstrom), None when it gives none.

    Raises
    ------
    InputError
        As :func:`load_geometry` for a file that cannot be read.
    """
    poni = _read_poni(Path(poni_path))
    return None if poni.wavelength is None else float(poni.wavelength) * 1e10


def beam_distance_m(geometry: Geometry) -> float:
    """Sample to detector along the beam, to where the beam meets the detector
    (pyFAI's Fit2D ``directDist``): what a frame header's detector distance
    means, unlike the PONI's ``Distance`` (to the detector plane, along its
    normal), which is shorter by cos(rot1) cos(rot2)."""
    return float(geometry.integrator.getFit2D()["directDist"]) * 1e-3


def check_header(geometry: Geometry, wavelength_A: float, distance_m: float, *,
                 wavelength_rtol: float = WAVELENGTH_RTOL, distance_rtol: float = DISTANCE_RTOL) -> list[str]:
    """Where a frame header disagrees with the geometry, one line each.

    Parameters
    ----------
    geometry : Geometry
    wavelength_A, distance_m : float
        What the header says (NaN: not said, not compared).
    wavelength_rtol, distance_rtol : float
        Relative disagreements tolerated (:data:`WAVELENGTH_RTOL`,
        :data:`DISTANCE_RTOL`).

    Returns
    -------
    list of str
        Empty when they agree; the geometry's values are the ones used.
    """
    found = []
    if math.isfinite(wavelength_A):
        used = geometry.wavelength_A
        if abs(wavelength_A - used) > wavelength_rtol * used:
            found.append(f"header wavelength {wavelength_A:.6g} A differs from the geometry's {used:.6g} A "
                         f"by {abs(wavelength_A / used - 1):.2g} (relative; tolerance {wavelength_rtol:g}); "
                         "the geometry's is used")
    if math.isfinite(distance_m):
        used = beam_distance_m(geometry)
        if abs(distance_m - used) > distance_rtol * used:
            found.append(f"header detector distance {distance_m * 1e3:.5g} mm differs from the PONI's "
                         f"{used * 1e3:.5g} mm (along the beam) by {abs(distance_m / used - 1):.2g} (relative; "
                         f"tolerance {distance_rtol:g}); the PONI's is used")
    return found


def _positive(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


def _same_pixels(a, b) -> bool:
    return all(math.isclose(float(x), float(y), rel_tol=_PIXEL_RTOL) for x, y in zip(a, b))


def _fmt(shape) -> str:
    return "x".join(str(int(n)) for n in shape)


def _fmt_um(pixel1_m, pixel2_m) -> str:
    return f"{float(pixel1_m) * 1e6:g}x{float(pixel2_m) * 1e6:g} um"


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."
