"""Detector geometry from a calibrant image, without a click.

What pyFAI-calib2 does with a user's clicks, done from the image alone:

1. **Beam centre** (:func:`guess_beam_center`). A powder pattern is
   centrosymmetric about the beam: ``I(c + u) = I(c - u)``. The
   self-convolution ``(I * I)(t) = sum_x I(x) I(t - x)`` is then largest at
   ``t = 2c``, for every ring at once, whatever the calibrant and the
   distance; one FFT gives it (the rings high-passed first, so that the
   smooth background and the detector's outline do not pull the maximum).
   A tilted detector makes the rings ellipses, still centrosymmetric about
   their own centres, which lie within a few pixels of the beam: close
   enough to start from. The centre must lie on the detector (the midpoint
   of two detector pixels is on the detector); otherwise pass it.
2. **Distance** (:func:`guess_distance`). The azimuthal average about that
   centre shows the rings as peaks at radii ``r_k``; a flat, untilted
   detector puts line ``j`` at ``r = D tan(2 theta_j)``. Each pairing of a
   strong peak with one of the first lines of the calibrant proposes a
   distance ``D``; the one kept explains most of the observed peaks while
   predicting fewest rings that are not there (a distance half the true one
   explains every ring of a cubic calibrant too, hkl -> 2h 2k 2l, but
   predicts four times as many). ``D`` is then the least-squares fit of
   ``r_k = D tan(2 theta_k)`` over the matched peaks.
3. **Refinement**, with pyFAI's own machinery, as ``pyFAI-recalib`` does it:
   :class:`pyFAI.goniometer.SingleGeometry` picks control points along each
   expected ring (:class:`pyFAI.massif.Massif`, the peak picker of
   pyFAI-calib), :class:`pyFAI.geometryRefinement.GeometryRefinement`
   refines them (``refine3``, SLSQP on ``sum (2theta_obs - 2theta_calc)^2``;
   Kieffer & Karkoulis, J. Phys.: Conf. Ser. 425, 202012 (2013)). First the
   distance and centre on the innermost rings, then the tilts; then the
   points are picked again on every ring the detector sees with the better
   geometry, points further than 5 robust sigma from their ring and rings
   that are not there (too few points, or scattered) are dropped, and the
   geometry is refined again. ``rot3`` stays 0: for a flat detector of
   square pixels, ``rot1`` and ``rot2`` already give the tilt any direction,
   and the rings do not determine ``rot3``.

The wavelength is the user's (the rings fix only ``lambda / D`` and the
detector's pixel size ties ``D`` to pixels); it is not refined.
"""

from __future__ import annotations

import os

# As in dacpipe.integration.integrator, before pyFAI is first imported:
# pyFAI's OpenMP threads spin while they wait, and the refinement calls its
# 2theta of a few thousand control points thousands of times. Measured on
# the loaded 2-core machine: 10 ms a call spinning, 0.17 ms passive.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import copy
import difflib
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize, signal

from ..core.errors import InputError
from ..io.images import read_image, read_mask
from ..io.refs import parse_reference

log = logging.getLogger("dacpipe")

# X-ray wavelengths in use span ~0.1 to ~20 A (as io.poni checks a PONI file's).
_WAVELENGTH_RANGE_A = (0.01, 100.0)
# High-pass of the centre search: rings are a few pixels wide; the background
# (air scatter, the detector's outline) varies over tens.
_HIGHPASS_PX = 15
# ... and pixels count as a ring's crest this many noise sigma above it.
_CREST_SIGMA = 2.0
# Maxima of the self-convolution tried as the centre.
_CENTER_CANDIDATES = 8
# ... among centres whose mirror overlap holds this share of the crest.
_MIN_OVERLAP = 0.05
# Radial profile: the baseline under the rings is the running minimum over
# this many pixels, smoothed (a ring is a few pixels wide, ring spacings >= 10).
_BASELINE_PX = 31
# A profile peak counts as a ring above this many noise sigma.
_RING_SNR = 5.0
# Distance hypotheses: the strongest observed peaks times the first lines.
_N_STRONG_PEAKS = 6
_N_FIRST_LINES = 12
# A predicted ring matches an observed peak within this share of its radius
# (an untilted model of a tilted detector, and a centre off by a pixel or two),
# and at least this many pixels.
_MATCH_REL, _MATCH_MIN_PX = 0.015, 2.0
# Rings whose radial profile has fewer valid pixels than this are not expected.
_MIN_RING_PIXELS = 50
# Control points: rings of the first refinement (distance, centre, then tilt).
_FIRST_RINGS = 4
# A point further than this many robust sigma from its ring is an outlier.
_OUTLIER_SIGMA = 5.0
# A ring is kept with at least this many points and a point scatter no more
# than this many times the median ring's.
_MIN_RING_POINTS = 8
_MAX_RING_SCATTER = 3.0
# Picking and refining rounds on all the rings.
_ROUNDS = 2
_MASSIF_SEED = 20260101
# Largest rms distance (pixels) of the control points from their rings that
# is a calibration. Measured: 0.06-0.08 px on synthetic CeO2 and LaB6
# images, 0.22 px on the real CeO2 Pilatus image; with the wrong calibrant
# (LaB6, Au) or a wavelength 25 % off (0.3 or 0.5 A for 0.4066): 2.5-3.9 px
# on the real image, 0.68-1.2 px on the synthetic one (sharper rings).
MAX_RMS_PX = 0.5


@dataclass(frozen=True)
class RingFit:
    """One calibrant line used in the refinement.

    Attributes
    ----------
    index : int
        0-based index of the line in the calibrant's list (pyFAI's ring number).
    d_A : float
        Its d-spacing (angstrom).
    two_theta_deg : float
        Its 2theta at the calibration's wavelength.
    n_points : int
        Control points kept on the ring.
    rms_px : float
        Root mean square distance of those points from the refined ring, in pixels.
    """

    index: int
    d_A: float
    two_theta_deg: float
    n_points: int
    rms_px: float


@dataclass(frozen=True, eq=False)  # eq=False: integrators do not compare by value
class Calibration:
    """A refined detector geometry and how well the rings fit it.

    Attributes
    ----------
    integrator : pyFAI AzimuthalIntegrator
        Refined geometry, the detector, the wavelength; the image frame is the
        raw image as read (PONI convention ``pyfai``).
    calibrant : str
        The calibrant's name (or file).
    detector : str
        The detector's name (pyFAI class) and pixel size.
    wavelength_A : float
    beam_center_px : (float, float)
        Where the direct beam hits the detector, (row, column), array-index
        coordinates (integers at pixel centres).
    initial_center_px : (float, float)
        The automatic (or given) starting centre, same coordinates.
    initial_distance_m : float
        The starting distance from the ring radii.
    rings : tuple of RingFit
        The lines used, innermost first.
    rms_deg : float
        Root mean square residual of all control points, 2theta degrees.
    rms_px : float
        The same, as distances from the rings in pixels.
    n_rejected : int
        Control points dropped as outliers, or with their ring.
    """

    integrator: object
    calibrant: str
    detector: str
    wavelength_A: float
    beam_center_px: tuple[float, float]
    initial_center_px: tuple[float, float]
    initial_distance_m: float
    rings: tuple[RingFit, ...]
    rms_deg: float
    rms_px: float
    n_rejected: int

    @property
    def distance_m(self) -> float:
        return float(self.integrator.dist)

    @property
    def n_points(self) -> int:
        return sum(r.n_points for r in self.rings)

    @property
    def tilt_deg(self) -> float:
        """Angle between the detector normal and the beam (Fit2D's tilt)."""
        return float(self.integrator.getFit2D()["tilt"])

    def poni_text(self, source: str | None = None) -> str:
        """The geometry as a PONI file (the version pyFAI writes), with the
        calibration's figures as comments."""
        from pyFAI.io.ponifile import PoniFile

        poni = PoniFile(self.integrator)
        extra = {"calibrated_by": "dacpipe calibrate",
                 "calibrant": self.calibrant,
                 "rings_used": " ".join(str(r.index + 1) for r in self.rings),
                 "control_points": str(self.n_points),
                 "rms_2theta_deg": f"{self.rms_deg:.6f}",
                 "rms_px": f"{self.rms_px:.4f}"}
        if source:
            extra = {"calibrant_image": source, **extra}
        poni.extra = extra
        out = io.StringIO()
        poni.write(out)
        return out.getvalue()

    def summary(self) -> str:
        """A few lines for a person: the geometry, the residual, the rings used."""
        row, col = self.beam_center_px
        ai = self.integrator
        lines = [
            f"calibrant {self.calibrant} at {self.wavelength_A:.5g} A, detector {self.detector}",
            (f"distance {self.distance_m * 1e3:.4f} mm (started from {self.initial_distance_m * 1e3:.2f}), "
             f"beam centre row {row:.2f} col {col:.2f} px (started from {self.initial_center_px[0]:.1f}, "
             f"{self.initial_center_px[1]:.1f})"),
            (f"poni1 {ai.poni1 * 1e3:.4f} mm, poni2 {ai.poni2 * 1e3:.4f} mm, rot1 {ai.rot1:.6f}, "
             f"rot2 {ai.rot2:.6f}, rot3 {ai.rot3:.6f} rad (tilt {self.tilt_deg:.3f} deg)"),
            (f"residual rms {self.rms_deg:.5f} deg 2theta = {self.rms_px:.3f} px, {self.n_points} control points "
             f"on {len(self.rings)} rings ({self.n_rejected} dropped)"),
            "ring   d (A)  2theta (deg)  points  rms (px)",
        ]
        lines += [f"{r.index + 1:4d} {r.d_A:7.4f} {r.two_theta_deg:13.4f} {r.n_points:7d} {r.rms_px:9.3f}"
                  for r in self.rings]
        return "\n".join(lines)


# ---------------------------------------------------------------- inputs


def load_calibrant(name: str, wavelength_A: float):
    """A pyFAI calibrant, by name (``CeO2``, ``LaB6``, ...) or ``.D`` file, at ``wavelength_A``.

    Raises
    ------
    InputError
        Unknown name or unreadable file; a wavelength outside 0.01-100 A;
        no line of the calibrant within reach of the wavelength.
    """
    from pyFAI.calibrant import CALIBRANT_FACTORY, Calibrant

    low, high = _WAVELENGTH_RANGE_A
    if not (math.isfinite(float(wavelength_A)) and low <= float(wavelength_A) <= high):
        raise InputError(f"wavelength {wavelength_A!r} A is not a plausible X-ray wavelength (angstrom, e.g. 0.4066)")
    if name in CALIBRANT_FACTORY:
        calibrant = CALIBRANT_FACTORY(name)
    elif os.path.isfile(name):
        try:
            calibrant = Calibrant(filename=name)
            calibrant.dspacing
        except Exception as exc:
            raise InputError(f"pyFAI cannot read this calibrant file ({_describe(exc)})", name) from None
    else:
        known = sorted(CALIBRANT_FACTORY.keys(), key=str.lower)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"unknown calibrant {name!r}{hint}: give one of pyFAI's ({', '.join(known[:12])}, ...) "
                         "or a .D file of d-spacings")
    calibrant.wavelength = float(wavelength_A) * 1e-10
    if not [t for t in calibrant.get_2th() if t is not None]:
        raise InputError(f"calibrant {name!r} has no line at wavelength {wavelength_A} A")
    return calibrant


def detector_for_image(shape: tuple[int, int], name: str | None = None,
                       pixel_size_um: float | None = None, header_pixel_m: float | None = None):
    """The pyFAI detector of a calibrant image.

    Parameters
    ----------
    shape : (int, int)
        The image's (rows, columns).
    name : str, optional
        A name from pyFAI's catalogue (``Pilatus1M``); its shape must be the
        image's.
    pixel_size_um : float, optional
        Square pixel size, for a detector not in the catalogue.
    header_pixel_m : float, optional
        The pixel size the image's header gives (Pilatus ``Pixel_size``).

    Returns
    -------
    pyFAI Detector
        The named one; else the one catalogue detector of the image's shape
        (and of the header's pixel size); else, when several catalogue
        detectors share the shape (Pilatus1M and PilatusCdTe1M) but not a
        name in the header, a generic detector of their common pixel size; else
        a generic detector of ``pixel_size_um`` or the header's.

    Raises
    ------
    InputError
        Unknown name, a shape or pixel size that disagrees, or no way to
        know the pixel size.
    """
    import pyFAI.detectors

    shape = tuple(int(n) for n in shape)
    if name is not None:
        if not (hasattr(pyFAI.detectors, name) or str(name).lower() in pyFAI.detectors.ALL_DETECTORS
                or str(name).lower().replace(" ", "_") in pyFAI.detectors.ALL_DETECTORS):
            raise InputError(f"unknown detector {name!r} (not in pyFAI's detector catalogue)")
        detector = pyFAI.detectors.detector_factory(name)
        if detector.max_shape is not None and tuple(detector.max_shape) != shape:
            raise InputError(f"detector {name} is {_fmt(detector.max_shape)}, the image {_fmt(shape)}")
        _check_pixel(detector, pixel_size_um, header_pixel_m, type(detector).__name__)
        return detector
    if pixel_size_um is not None:
        if not (math.isfinite(float(pixel_size_um)) and float(pixel_size_um) > 0):
            raise InputError(f"pixel size {pixel_size_um!r} um must be positive")
        pixel_m = float(pixel_size_um) / 1e6  # 172 / 1e6 is 0.000172; 172 * 1e-6 is not
        return pyFAI.detectors.Detector(pixel1=pixel_m, pixel2=pixel_m, max_shape=shape)
    classes = {cls for cls in pyFAI.detectors.ALL_DETECTORS.values()
               if tuple(getattr(cls, "MAX_SHAPE", ()) or ()) == shape}
    candidates = [pyFAI.detectors.detector_factory(cls.__name__) for cls in sorted(classes, key=lambda c: c.__name__)]
    if header_pixel_m is not None:
        candidates = [d for d in candidates if _same_pixel(d.pixel1, header_pixel_m) and
                      _same_pixel(d.pixel2, header_pixel_m)]
    if len(candidates) == 1:
        return candidates[0]
    pixels = {(round(d.pixel1 * 1e9), round(d.pixel2 * 1e9)) for d in candidates}
    if len(pixels) == 1:  # several detectors of this shape, one pixel size: no name is a guess
        det = candidates[0]
        return pyFAI.detectors.Detector(pixel1=det.pixel1, pixel2=det.pixel2, max_shape=shape)
    if header_pixel_m is not None:
        return pyFAI.detectors.Detector(pixel1=header_pixel_m, pixel2=header_pixel_m, max_shape=shape)
    names = ", ".join(type(d).__name__ for d in candidates)
    raise InputError(f"cannot tell the detector of a {_fmt(shape)} image "
                     + (f"(one of {names}); " if names else "(none in pyFAI's catalogue has this shape); ")
                     + "name it (--detector) or give the pixel size")


def _check_pixel(detector, pixel_size_um, header_pixel_m, name):
    for value_m, origin in ((None if pixel_size_um is None else float(pixel_size_um) / 1e6, "pixel size"),
                            (header_pixel_m, "the image header's pixel size")):
        if value_m is not None and not (_same_pixel(detector.pixel1, value_m) and _same_pixel(detector.pixel2, value_m)):
            raise InputError(f"{origin} {value_m * 1e6:g} um differs from detector {name}'s "
                             f"{detector.pixel1 * 1e6:g}x{detector.pixel2 * 1e6:g} um")


def header_pixel_size_m(path: str | os.PathLike) -> float | None:
    """The square pixel size a detector wrote in the image header (Pilatus
    ``Pixel_size: 172e-6 m x 172e-6 m``, in TIFF and CBF), or None."""
    import fabio

    try:
        with fabio.open(str(path)) as img:
            text = str(img.header.get("Pixel_size", ""))
    except Exception:  # not a fabio format (HDF5), or no header: the caller goes without
        return None
    parts = text.replace("m", " ").replace("x", " ").split()
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    if len(values) == 2 and _same_pixel(values[0], values[1]) and 1e-6 < values[0] < 1e-2:
        return values[0]
    return None


# ---------------------------------------------------------------- first guess


def guess_beam_center(image: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """Beam centre (row, col) of a powder image from its point symmetry.

    The self-convolution of a pattern symmetric about ``c`` peaks at ``2c``
    (module notes). The image is log-compressed (a strong ring must not
    outweigh all others), high-passed over :data:`_HIGHPASS_PX` pixels and
    clipped at 0, so that only the rings' crests enter; masked pixels are 0.
    The maximum is located to a fraction of a pixel by a parabola through
    its neighbours.

    Parameters
    ----------
    image : ndarray
        2D counts.
    valid : bool ndarray
        Pixels to use.

    Returns
    -------
    (float, float)
        Row and column, array-index coordinates.

    Raises
    ------
    InputError
        No structure in the image (a flat or empty frame).
    """
    x = np.where(valid, np.asarray(image, dtype=float), 0.0)
    x = np.log1p(np.maximum(x, 0.0))
    weight = ndimage.uniform_filter(valid.astype(float), _HIGHPASS_PX)
    smooth = ndimage.uniform_filter(x, _HIGHPASS_PX) / np.maximum(weight, 1e-9)  # mean of the valid pixels only
    high = np.where(valid, x - smooth, 0.0)
    # Only the crests, above the pixel noise, and clipped: a shadow's edge
    # (the beamstop arm at 2 % transmission) stands out far more than a ring
    # in the high-pass; clipped, every crest pixel counts the same.
    noise = _robust_sigma(high[valid])
    crest = np.where(valid, np.clip(high - _CREST_SIGMA * noise, 0.0, _CREST_SIGMA * noise), 0.0)
    if not np.any(crest > 0):
        raise InputError("calibrant image has no structure (flat or empty frame): no rings to calibrate on")
    # Normalised: the share of the crest within the overlap of the image and
    # its mirror about t/2 whose mirror image is crest too. Unnormalised, a
    # beam near the detector's edge (few pixels have a mirror partner) loses
    # to any long straight feature across the middle (a beamstop arm is
    # symmetric about its own midpoint).
    n0, n1 = crest.shape
    shape = (_fft_size(2 * n0), _fft_size(2 * n1))
    spectrum = np.fft.rfft2(crest, s=shape)
    conv = np.fft.irfft2(spectrum * spectrum, s=shape)[: 2 * n0 - 1, : 2 * n1 - 1]
    energy = np.fft.irfft2(np.fft.rfft2(crest ** 2, s=shape) * np.fft.rfft2(valid.astype(float), s=shape),
                           s=shape)[: 2 * n0 - 1, : 2 * n1 - 1]
    enough = energy > _MIN_OVERLAP * float(np.sum(crest ** 2))
    conv = np.where(enough, conv / np.where(enough, energy, 1.0), 0.0)
    # Other straight or symmetric features (a beamstop arm's edges) make
    # maxima of their own: of the highest few, the one about which the
    # rings are sharpest wins.
    peaks = np.flatnonzero((conv == ndimage.maximum_filter(conv, size=5)).ravel() & (conv.ravel() > 0))
    peaks = peaks[np.argsort(conv.ravel()[peaks])[::-1][:_CENTER_CANDIDATES]]
    best, best_score = None, -math.inf
    for k in peaks:
        k0, k1 = np.unravel_index(int(k), conv.shape)
        center = (_parabola_peak(conv, k0, k1, axis=0) / 2.0, _parabola_peak(conv, k0, k1, axis=1) / 2.0)
        score = ring_sharpness(high, valid, center)
        if score > best_score:
            best, best_score = center, score
    return best


def ring_sharpness(image: np.ndarray, valid: np.ndarray, center_rc: tuple[float, float]) -> float:
    """Share of the image's variance that the radius about ``center_rc`` explains.

    The correlation ratio eta^2 = sum_r n_r (mean_r - mean)^2 / sum (x - mean)^2
    over 1-pixel rings (Fisher's eta; Pearson, Proc. R. Soc. Lond. 76, 517
    (1905)): 1 when every ring is uniform, near 0 for a centre the rings
    are not round about.
    """
    counts, mean = radial_profile(image, valid, center_rc)
    values = np.asarray(image, dtype=float)[valid]
    total = float(np.sum((values - values.mean()) ** 2))
    if not total > 0:
        return 0.0
    used = counts > 0
    return float(np.sum(counts[used] * (mean[used] - values.mean()) ** 2) / total)


def radial_profile(image: np.ndarray, valid: np.ndarray, center_rc: tuple[float, float]
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Mean intensity of the valid pixels in 1-pixel rings about ``center_rc``.

    Returns
    -------
    counts : ndarray of int
        Valid pixels at each integer radius (0, 1, 2, ... pixels).
    mean : ndarray
        Their mean intensity (NaN where there are none).
    """
    rows, cols = np.indices(image.shape)
    radius = np.rint(np.hypot(rows - center_rc[0], cols - center_rc[1])).astype(np.int64)[valid]
    counts = np.bincount(radius)
    sums = np.bincount(radius, np.asarray(image, dtype=float)[valid], minlength=len(counts))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return counts, mean


def profile_rings(counts: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rings of a radial profile: peak radii (pixels) and their signal-to-noise.

    The baseline is the running minimum over :data:`_BASELINE_PX` pixels,
    smoothed; the noise the robust scatter of the point-to-point
    differences of what is left (Gaussian MAD factor 1.4826, over sqrt 2).
    Peaks must stand :data:`_RING_SNR` noise sigma proud, and lie where
    enough pixels (:data:`_MIN_RING_PIXELS`) make the mean.
    """
    usable = counts >= _MIN_RING_PIXELS
    if usable.sum() < 3 * _BASELINE_PX:
        return np.zeros(0), np.zeros(0)
    profile = np.where(usable, mean, np.nan)
    profile = np.where(np.isfinite(profile), profile, np.nanmedian(profile))
    baseline = ndimage.uniform_filter1d(ndimage.minimum_filter1d(profile, _BASELINE_PX), _BASELINE_PX)
    high = profile - baseline
    diffs = np.diff(high[usable])
    noise = 1.4826 * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2.0)
    if not noise > 0:
        noise = max(float(np.std(high[usable])), 1e-12)
    peaks, _ = signal.find_peaks(np.where(usable, high, 0.0), prominence=_RING_SNR * noise, distance=3)
    peaks = peaks[usable[peaks]]
    return peaks.astype(float), high[peaks] / noise


def guess_distance(ring_radii_px: np.ndarray, ring_snr: np.ndarray, two_theta_rad: np.ndarray,
                   pixel_m: float, radius_range_px: tuple[float, float]) -> tuple[float, np.ndarray]:
    """Sample-detector distance from ring radii, for an untilted detector.

    Every pairing of one of the :data:`_N_STRONG_PEAKS` strongest observed
    rings with one of the first :data:`_N_FIRST_LINES` calibrant lines
    gives a distance ``D = r pixel / tan(2 theta)``. Each is scored by
    ``(matched predicted rings / predicted rings) x (observed signal
    explained / observed signal)`` over the radii the detector covers,
    predicted rings closer than the matching tolerance counted once; the
    best is refined by least squares over its matches, ``D = sum r t /
    sum t^2`` with ``t = tan(2 theta) / pixel``, and matched again.

    Parameters
    ----------
    ring_radii_px, ring_snr : ndarray
        Observed ring radii (pixels) and their signal-to-noise.
    two_theta_rad : ndarray
        The calibrant's lines, ascending.
    pixel_m : float
    radius_range_px : (float, float)
        Radii the detector covers (valid pixels at that radius).

    Returns
    -------
    distance_m : float
    matched_lines : ndarray of int
        Indices (into ``two_theta_rad``) of the lines matched by observed rings.

    Raises
    ------
    InputError
        Fewer than two rings, or no distance explains them.
    """
    radii = np.asarray(ring_radii_px, dtype=float)
    weight = np.sqrt(np.maximum(np.asarray(ring_snr, dtype=float), 0.0))
    tan2t = np.tan(np.asarray(two_theta_rad, dtype=float)) / pixel_m  # predicted radius per metre of distance
    if radii.size < 2:
        raise InputError(f"found {radii.size} ring{'s' * (radii.size != 1)} in the calibrant image; "
                         "need at least 2 to tell the distance (wrong calibrant, or the beam off the detector?)")
    strong = np.argsort(weight)[::-1][:_N_STRONG_PEAKS]
    best = (-1.0, math.nan)
    for k in strong:
        for j in range(min(_N_FIRST_LINES, tan2t.size)):
            distance = radii[k] / tan2t[j]
            score = _distance_score(distance, radii, weight, tan2t, radius_range_px)[0]
            if score > best[0] + 1e-9:
                best = (score, distance)
    score, distance = best
    for _ in range(3):  # least squares over the matches, then match again with the better distance
        _, pairs = _distance_score(distance, radii, weight, tan2t, radius_range_px)
        if len(pairs) < 2:
            break
        r = radii[[p[0] for p in pairs]]
        t = tan2t[[p[1] for p in pairs]]
        distance = float(np.dot(r, t) / np.dot(t, t))
    if len(pairs) < 2 or not score > 0.25:
        raise InputError(f"the {radii.size} rings of the calibrant image do not match the calibrant's lines at "
                         "this wavelength and pixel size (best match explains too little); check the calibrant, "
                         "the wavelength (angstrom) and the detector")
    return distance, np.array(sorted({p[1] for p in pairs}), dtype=int)


def _distance_score(distance, radii, weight, tan2t, radius_range_px):
    """(score, matched (observed, line) pairs) of one distance hypothesis."""
    predicted = distance * tan2t
    inside = np.flatnonzero((predicted >= radius_range_px[0]) & (predicted <= radius_range_px[1]))
    if inside.size == 0 or not distance > 0:
        return 0.0, []
    groups: list[list[int]] = []  # predicted rings closer than the tolerance are one ring
    for j in inside:
        if groups and predicted[j] - predicted[groups[-1][-1]] < _tolerance(predicted[j]):
            groups[-1].append(j)
        else:
            groups.append([j])
    pairs, explained, matched_groups = [], np.zeros(radii.size, dtype=bool), 0
    for group in groups:
        centre = predicted[group].mean()
        near = np.flatnonzero(np.abs(radii - centre) <= _tolerance(centre))
        if near.size:
            k = near[np.argmax(weight[near])]
            matched_groups += 1
            explained[near] = True
            if len(group) == 1:  # a merged pair of lines gives no clean radius for the fit
                pairs.append((int(k), int(group[0])))
    observed = (radii >= radius_range_px[0]) & (radii <= radius_range_px[1])
    total = weight[observed].sum()
    if total <= 0:
        return 0.0, []
    return (matched_groups / len(groups)) * (weight[explained & observed].sum() / total), pairs


def _tolerance(radius_px):
    return max(_MATCH_MIN_PX, _MATCH_REL * radius_px)


# ---------------------------------------------------------------- refinement


def calibrate(image: np.ndarray, calibrant, detector, *, mask: np.ndarray | None = None,
              beam_center_px: tuple[float, float] | None = None, calibrant_name: str | None = None,
              max_rms_px: float = MAX_RMS_PX) -> Calibration:
    """Refine a detector geometry on a calibrant image, from an automatic first guess.

    Parameters
    ----------
    image : ndarray
        2D, as the detector wrote it (rows, columns).
    calibrant : pyFAI Calibrant
        With its wavelength set (:func:`load_calibrant`).
    detector : pyFAI Detector
        Of the image's shape (:func:`detector_for_image`); not modified.
    mask : bool ndarray, optional
        True on pixels to leave out (beamstop), in the image's frame.
        Negative and non-finite pixels (Pilatus gaps -1, bad pixels -2) and
        the detector's own mask are left out anyway.
    beam_center_px : (float, float), optional
        Starting centre (row, col), for an image whose beam misses the
        detector; found from the image otherwise.
    calibrant_name : str, optional
        For the result's label.
    max_rms_px : float
        The largest root mean square distance (pixels) of the control points
        from their rings that is accepted as a calibration.

    Returns
    -------
    Calibration

    Raises
    ------
    InputError
        No rings, rings that match no distance, a refinement that keeps
        fewer than two rings or leaves the points further than
        ``max_rms_px`` from them.
    """
    from pyFAI.goniometer import SingleGeometry

    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise InputError(f"calibrant image has shape {image.shape}, not 2D")
    detector = copy.deepcopy(detector)
    if detector.shape is None:
        detector.shape = detector.max_shape = image.shape
    if tuple(detector.shape) != image.shape:
        raise InputError(f"calibrant image is {_fmt(image.shape)} but detector {type(detector).__name__} "
                         f"is {_fmt(detector.shape)}")
    invalid = ~np.isfinite(image) | (image < 0)
    if detector.mask is not None:
        invalid |= np.asarray(detector.mask, dtype=bool)
    if mask is not None:
        if np.shape(mask) != image.shape:
            raise InputError(f"mask is {_fmt(np.shape(mask))} but the calibrant image {_fmt(image.shape)}")
        invalid |= np.asarray(mask, dtype=bool)
    valid = ~invalid
    if valid.sum() < 0.05 * image.size:
        raise InputError("calibrant image: fewer than 5 % of its pixels are valid (non-negative, unmasked)")
    clean = np.where(valid, image, 0.0)
    pixel_m = float(detector.pixel1)
    if not _same_pixel(detector.pixel1, detector.pixel2):
        raise InputError(f"detector pixels are not square ({detector.pixel1 * 1e6:g}x{detector.pixel2 * 1e6:g} um); "
                         "the automatic first guess assumes square pixels")
    two_theta = np.array([t for t in calibrant.get_2th() if t is not None], dtype=float)

    center = tuple(float(c) for c in beam_center_px) if beam_center_px is not None else guess_beam_center(clean, valid)
    counts, mean = radial_profile(clean, valid, center)
    radii, snr = profile_rings(counts, mean)
    covered = np.flatnonzero(counts >= _MIN_RING_PIXELS)
    radius_range = (float(covered.min()), float(covered.max())) if covered.size else (0.0, 0.0)
    distance, _ = guess_distance(radii, snr, two_theta, pixel_m, radius_range)
    log.debug(f"calibrate: first guess centre {center}, distance {distance * 1e3:.2f} mm, {radii.size} rings")

    detector.mask = invalid.astype(np.int8)
    # pyFAI: poni = (index + 0.5) x pixel for an untilted detector (pixel centres at index + 0.5)
    geometry = {"dist": distance, "poni1": (center[0] + 0.5) * pixel_m, "poni2": (center[1] + 0.5) * pixel_m,
                "rot1": 0.0, "rot2": 0.0, "rot3": 0.0, "detector": detector}
    single = SingleGeometry("calibrant", image=clean, calibrant=calibrant, detector=detector, geometry=geometry)
    refinement = single.geometry_refinement
    fixed = ["wavelength", "rot3"]

    points = _pick(single, _FIRST_RINGS)
    points, _ = _refine(refinement, points, fixed + ["rot1", "rot2"])
    points, _ = _refine(refinement, points, fixed)
    rejected = 0
    for _ in range(_ROUNDS):
        points = _pick(single, None)
        points, rejected = _refine(refinement, points, fixed)

    residual = _residuals_deg(refinement, points)
    px = residual / _gradient_deg_per_px(refinement, points)
    rings = []
    lines = np.asarray(calibrant.get_2th(), dtype=float)
    dspacing = calibrant.dspacing
    for index in np.unique(points[:, 2].astype(int)):
        on = points[:, 2].astype(int) == index
        rings.append(RingFit(index=int(index), d_A=float(dspacing[index]), two_theta_deg=math.degrees(lines[index]),
                             n_points=int(on.sum()), rms_px=float(np.sqrt(np.mean(px[on] ** 2)))))
    if len(rings) < 2:
        raise InputError(f"calibration kept {len(rings)} ring(s); need at least 2 (wrong calibrant or wavelength?)")
    rms_px = float(np.sqrt(np.mean(px ** 2)))
    if not rms_px <= max_rms_px:
        raise InputError(f"the rings do not fit {calibrant_name or 'the calibrant'} at {calibrant.wavelength * 1e10:g} A: "
                         f"control points {rms_px:.2f} px rms from their rings (a calibration that holds is a "
                         f"fraction of a pixel; limit {max_rms_px:g}); check the calibrant, the wavelength and the "
                         "detector")
    integrator = single.get_ai()
    return Calibration(
        integrator=integrator, calibrant=calibrant_name or str(calibrant.name if hasattr(calibrant, "name") else ""),
        detector=_detector_label(detector), wavelength_A=float(calibrant.wavelength) * 1e10,
        beam_center_px=beam_center(integrator), initial_center_px=(float(center[0]), float(center[1])),
        initial_distance_m=float(distance), rings=tuple(rings), rms_deg=float(np.sqrt(np.mean(residual ** 2))),
        rms_px=rms_px, n_rejected=int(rejected))


def _pick(single, max_rings) -> np.ndarray:
    """Control points (row, col, ring) along the rings the current geometry expects.

    pyFAI's Massif visits a ring's pixels in an order drawn from numpy's
    global random state: seeded here, so that an image gives the same PONI
    file every time (measured: unseeded, distances of two runs differed by
    6e-7), and the caller's random state put back.
    """
    state = np.random.get_state()
    np.random.seed(_MASSIF_SEED)
    try:
        control = single.extract_cp(max_rings=max_rings)
    finally:
        np.random.set_state(state)
    points = np.asarray(control.getList(), dtype=np.float64).reshape(-1, 3)
    if len(points) < 3:
        raise InputError("found no control points along the expected rings (wrong calibrant or wavelength?)")
    return points


def _refine(refinement, points: np.ndarray, fix: list[str]) -> tuple[np.ndarray, int]:
    """Refine on ``points``, drop outliers and absent rings, refine again.

    Returns the points kept and the number dropped.
    """
    n0 = len(points)
    refinement.data = points
    refinement.refine3(fix=fix)
    for _ in range(3):
        residual = _residuals_deg(refinement, points)
        keep = np.abs(residual) <= _OUTLIER_SIGMA * _robust_sigma(residual)
        rings = points[:, 2].astype(int)
        scatter = {}
        for ring in np.unique(rings):
            on = keep & (rings == ring)
            if on.sum() < _MIN_RING_POINTS:
                keep &= rings != ring
            else:
                scatter[ring] = _robust_sigma(residual[on])
        if scatter:
            typical = float(np.median(list(scatter.values())))
            for ring, value in scatter.items():
                if value > _MAX_RING_SCATTER * typical:
                    keep &= rings != ring
        if keep.all():
            break
        if keep.sum() < 3:
            raise InputError("calibration: no ring keeps enough control points (wrong calibrant or wavelength?)")
        points = points[keep]
        refinement.data = points
        refinement.refine3(fix=fix)
    return points, n0 - len(points)


def _residuals_deg(refinement, points: np.ndarray) -> np.ndarray:
    calc = refinement.tth(points[:, 0], points[:, 1])
    return np.degrees(calc - refinement.calc_2th(points[:, 2].astype(np.int32)))


def _gradient_deg_per_px(refinement, points: np.ndarray) -> np.ndarray:
    """|grad 2theta| at each point (degrees per pixel), to express residuals in pixels."""
    d1, d2 = points[:, 0], points[:, 1]
    g1 = refinement.tth(d1 + 0.5, d2) - refinement.tth(d1 - 0.5, d2)
    g2 = refinement.tth(d1, d2 + 0.5) - refinement.tth(d1, d2 - 0.5)
    return np.degrees(np.hypot(g1, g2))


def _robust_sigma(values: np.ndarray) -> float:
    """Gaussian-equivalent scatter from the median absolute deviation (x 1.4826)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return math.inf
    sigma = 1.4826 * float(np.median(np.abs(values - np.median(values))))
    return sigma if sigma > 0 else float(np.std(values)) or 1e-12


def beam_center(integrator) -> tuple[float, float]:
    """Where the direct beam hits the detector: (row, col), array-index coordinates.

    The point where 2theta is 0, found by minimising pyFAI's ``tth(d1, d2)``
    (which knows the detector's orientation, so that a PONI file of Dioptas
    < 0.7 read with orientation 2 gives the centre in the raw frame too).
    """
    fit2d = integrator.getFit2D()
    start = (fit2d["centerY"] - 0.5, fit2d["centerX"] - 0.5)
    shape = integrator.detector.shape
    if shape is not None and int(getattr(integrator.detector, "orientation", 3) or 3) != 3:
        tth = integrator.center_array(shape, unit="2th_deg")
        start = np.unravel_index(int(np.argmin(tth)), tth.shape)

    def two_theta(p):
        return float(integrator.tth(np.array([p[0]]), np.array([p[1]]))[0])

    result = optimize.minimize(two_theta, np.asarray(start, dtype=float), method="Nelder-Mead",
                               options={"xatol": 1e-5, "fatol": 1e-15, "maxiter": 2000})
    return float(result.x[0]), float(result.x[1])


# ---------------------------------------------------------------- files


def calibrate_file(image_path: str | os.PathLike, calibrant: str, wavelength_A: float, *,
                   detector: str | None = None, pixel_size_um: float | None = None,
                   mask_path: str | os.PathLike | None = None,
                   beam_center_px: tuple[float, float] | None = None,
                   max_rms_px: float = MAX_RMS_PX) -> Calibration:
    """:func:`calibrate` on an image file (any format :func:`dacpipe.io.images.read_image` reads).

    The detector is ``detector`` (a pyFAI catalogue name) when given, else
    the one of the image's shape and header pixel size
    (:func:`detector_for_image`).

    Raises
    ------
    InputError
        Naming the image file: unreadable image or mask, unknown calibrant or
        detector, or a calibration that fails (see :func:`calibrate`).
    """
    path = parse_reference(image_path).path
    image = read_image(image_path)
    try:
        cal = load_calibrant(calibrant, wavelength_A)
        det = detector_for_image(image.shape, detector, pixel_size_um, header_pixel_size_m(path))
        mask = read_mask(mask_path, image.shape) if mask_path else None
        return calibrate(image, cal, det, mask=mask, beam_center_px=beam_center_px, calibrant_name=str(calibrant),
                         max_rms_px=max_rms_px)
    except InputError as err:
        raise err.with_path(path) from None


def calibrate_section(section: dict, out: str | os.PathLike) -> Calibration:
    """Calibrate on an ``xrd`` config section's ``calibrant_image`` and write the PONI file ``out``.

    The section's ``calibrant``, ``wavelength_A``, ``calibrant_detector``,
    ``calibrant_pixel_size_um`` and ``mask`` (the beamstop, in the raw frame
    of the images) are used; keys and defaults: ``config/schema.yaml``.
    """
    calibration = calibrate_file(section["calibrant_image"], section["calibrant"], section["wavelength_A"],
                                 detector=section.get("calibrant_detector"),
                                 pixel_size_um=section.get("calibrant_pixel_size_um"),
                                 mask_path=section.get("mask"))
    write_poni(calibration, out, source=str(section["calibrant_image"]))
    return calibration


def write_poni(calibration: Calibration, path: str | os.PathLike, source: str | None = None) -> Path:
    """Write the calibration as a PONI file (replacing ``path`` whole: pyFAI's
    own ``save`` appends to an existing file)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(calibration.poni_text(source), encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------- helpers


def _fft_size(n: int) -> int:
    from scipy import fft

    return fft.next_fast_len(n)


def _parabola_peak(values: np.ndarray, k0: int, k1: int, axis: int) -> float:
    """Sub-sample position of the maximum at (k0, k1) along ``axis``."""
    k = (k0, k1)[axis]
    if k == 0 or k == values.shape[axis] - 1:
        return float(k)
    if axis == 0:
        a, b, c = values[k0 - 1, k1], values[k0, k1], values[k0 + 1, k1]
    else:
        a, b, c = values[k0, k1 - 1], values[k0, k1], values[k0, k1 + 1]
    denominator = a - 2 * b + c
    return float(k) if denominator >= 0 else float(k + 0.5 * (a - c) / denominator)


def _same_pixel(a, b) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-3)


def _detector_label(detector) -> str:
    return f"{type(detector).__name__} ({detector.pixel1 * 1e6:g}x{detector.pixel2 * 1e6:g} um)"


def _fmt(shape) -> str:
    return "x".join(str(int(n)) for n in shape)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
