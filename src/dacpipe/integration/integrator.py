"""The integration stage: 2D XRD or SAXS frames to calibrated 1D patterns.

pyFAI does the work; this module decides how to call it for a DAC run and
keeps it fast:

* one :class:`FrameIntegrator` per job: geometry, masks, dark and flat are
  read once, and pyFAI builds its sparse (CSR) matrix on the first frame and
  reuses it for every later one (it caches engines on the integrator);
* the next frame is read in a background thread while the current one is
  integrated (file reading and decompression release the GIL), and pyFAI's
  OpenMP engines use every core for the integration itself;
* patterns go into preallocated arrays, so memory does not grow with the
  number of frames beyond N x npt numbers.

Corrections: solid angle, polarization (``polarization_factor``, 0.99 for a
synchrotron's horizontally polarized beam), dark and flat (SAXS), Poisson
errors, the detector's gaps and negative/dummy pixels, a user mask, and the
rejection of the single-crystal Bragg spots that the diamond anvils throw on
the detector: by default (``spots``) they are found in the image as compact
blobs far above their ring and masked in that frame (:mod:`.spots`), and the
frame is integrated plainly, which keeps a grainy powder ring's intensity;
or pyFAI's sigma clipping along each ring (``sigma_clip_ng``; Kieffer et
al., J. Synchrotron Rad. 27, 558 (2020)) or its median filter
(``medfilt1d_ng``, the mean of a central percentile range per ring), which
also cut a grainy ring's bright grains (the 400 line of the real CeO2 image
40 % too weak against 111).

pyFAI silently falls back to another engine when a requested (split,
algorithm, implementation) combination does not exist; the method actually
used is read back from each result and a fall-back is reported once.

PONI files of Dioptas < 0.7 (``poni_convention: dioptas-legacy``) refer to
the image flipped upside down. When the result cannot depend on the order in
which pyFAI visits the pixels of a bin (rejection ``spots`` or ``none``,
Poisson errors, ``no`` or ``bbox`` splitting), the detector gets pyFAI orientation 2 and the
raw frames go to pyFAI untouched: the patterns are bit-identical to those of
flipped frames (tests/test_orientation.py), without a copy of every frame.
Otherwise every frame is flipped, because pyFAI's cython CSR engine
accumulates the azimuthal variance of a bin in one pass whose result depends
on the pixel order, which orientation 2 reverses row by row. Measured on the
real CeO2 Pilatus image (pyFAI 2026.9): the variance of a 7-pixel bin
changes by 3.2 % (862.2 vs 889.7; two-pass value 865.9), so sigma clipping
keeps a different pixel in 6 of 3000 bins (up to 1.1 %, 0.31 sigma); the
azimuthal error model changes sigma by up to 89 % in edge bins; full
splitting changes intensities by 2e-5 (float32 rounding of the pixel
corners, taken in the other order).
"""

from __future__ import annotations

import os

# pyFAI's OpenMP threads spin while they wait at the end of a parallel loop;
# with the frame reader running in a thread beside them on a small machine,
# spinning threads steal its core (measured on 2 cores: 28 -> 31.5 frames/s
# with passive waiting). Read by the OpenMP runtime when pyFAI first loads
# it, so set before pyFAI is imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

from ..core.errors import ConfigError, InputError  # noqa: E402
from ..io.config import validate_section  # noqa: E402
from ..io.images import read_image, read_mask  # noqa: E402
from ..io.poni import Geometry, load_geometry  # noqa: E402
from .spots import SpotFinder, SpotMask  # noqa: E402

log = logging.getLogger("dacpipe")

# pyFAI skips pixels within DELTA_DUMMY of DUMMY, and NaN ones: with these,
# every value from -0.5 down to -2e6 (Pilatus gaps -1, dead pixels -2, and
# the like) is left out while 0 and small positive counts are kept, without
# a per-frame mask (exact in float32: 999999.5 is representable).
DUMMY = -1.0e6
DELTA_DUMMY = 1.0e6 - 0.5
# Fraction of the detector's pixels the mask and gaps must leave: below 1 %
# (a mask drawn inverted) the run is refused; below 10 % every pattern says so.
MIN_UNMASKED_FRACTION = 0.01
WARN_UNMASKED_FRACTION = 0.10


@dataclass(frozen=True)
class IntegrationSettings:
    """The ``xrd`` or ``saxs`` section of a run's config (keys and defaults: ``config/schema.yaml``)."""

    poni: str
    poni_convention: str
    wavelength_A: float | None
    mask: str | None
    unit: str
    npt: int
    method: tuple[str, str, str]
    polarization_factor: float | None
    solid_angle: bool
    error_model: str
    rejection: str
    rejection_threshold: float
    rejection_max_iter: int
    median_percentile: tuple[float, float]
    spot_threshold: float
    spot_dilate_px: int
    spot_max_size_px: int
    spot_ring_blobs: int
    dark: str | None
    flat: str | None
    normalization: str                       # "none" | "monitor" (the sheet's monitor column)
    cake_npt_azimuthal: int | None           # also keep the 2D cake, for texture checks

    @classmethod
    def from_config(cls, section: dict) -> "IntegrationSettings":
        """From an ``xrd`` or ``saxs`` section; what it leaves out comes from the schema's defaults."""
        s = validate_section("integration", section)
        if not s.get("poni"):
            # The schema lets a run of given patterns go without (validate_config checks its sheet).
            raise ConfigError("config: integration needs 'poni' or 'calibrant_image' to integrate images "
                              "(only a run whose sheet gives a pattern for every image goes without)")
        rejection, cake = s["rejection"], s["cake"]
        return cls(
            poni=s["poni"], poni_convention=s["poni_convention"], wavelength_A=s["wavelength_A"], mask=s["mask"],
            unit=s["unit"], npt=int(s["npt"]), method=tuple(s["method"]), polarization_factor=s["polarization_factor"],
            solid_angle=s["solid_angle"], error_model=s["error_model"], rejection=rejection["method"],
            rejection_threshold=float(rejection["threshold"]), rejection_max_iter=int(rejection["max_iter"]),
            median_percentile=tuple(rejection["percentile"]), spot_threshold=float(rejection["spot_threshold"]),
            spot_dilate_px=int(rejection["spot_dilate_px"]), spot_max_size_px=int(rejection["spot_max_size_px"]),
            spot_ring_blobs=int(rejection["spot_ring_blobs"]), dark=s["dark"], flat=s["flat"],
            normalization=s["normalization"],
            cake_npt_azimuthal=int(cake["npt_azimuthal"]) if cake["enabled"] else None)


def pixel_order_matters(settings: IntegrationSettings) -> bool:
    """Whether pyFAI's result can depend on the order it visits the pixels of a bin.

    Sums (intensity, Poisson variance) do not, to float rounding that the
    float32 result hides (measured: bit-identical); pyFAI's single-pass
    azimuthal variance does, which sigma clipping and the median filter use
    internally; full and pseudo splitting compute pixel-corner fractions in
    float32 in an order that follows the pixels' (2e-5 relative). See the
    module notes for the numbers. The spot search (``spots``) does not: its
    ring levels come from a histogram, its blobs from pixel neighbours, both
    unchanged by turning the image upside down, and the frame is then
    integrated plainly.
    """
    split = str(settings.method[0]).lower()
    return settings.rejection in ("sigma-clip", "median") or settings.error_model == "azimuthal" \
        or split not in ("no", "bbox")


@dataclass(frozen=True)
class Pattern:
    """One integrated frame."""

    radial: np.ndarray       # in the settings' unit
    intensity: np.ndarray
    sigma: np.ndarray
    method: str              # the pyFAI method actually used, as text
    cake: np.ndarray | None = None          # [azimuthal, radial], when asked for
    chi_deg: np.ndarray | None = None
    spot_pixels: int | None = None          # pixels masked as spots (rejection "spots")
    spot_blobs: int | None = None           # spots found (rejection "spots")


@dataclass(frozen=True)
class PreparedFrame:
    """One frame ready for pyFAI (:meth:`FrameIntegrator.prepare`)."""

    raw: np.ndarray                 # as read from its file
    image: np.ndarray               # as pyFAI sees it (oriented, float32, C-contiguous)
    spots: SpotMask | None          # rejection "spots" only


class FrameIntegrator:
    """Everything that does not change between the frames of a run, built once.

    Parameters
    ----------
    settings : IntegrationSettings
    shape : (int, int) or callable, optional
        Detector shape, when the PONI file's detector does not say it (old
        PONI files with pixel sizes only). A callable returning it (from the
        first frame) is called only then.
    """

    def __init__(self, settings: IntegrationSettings,
                 shape: tuple[int, int] | Callable[[], tuple[int, int] | None] | None = None):
        self.settings = settings
        legacy_method = "flip" if pixel_order_matters(settings) else "orientation"
        self.geometry: Geometry = load_geometry(settings.poni, convention=settings.poni_convention,
                                                wavelength_A=settings.wavelength_A, shape=shape,
                                                legacy_method=legacy_method)
        detector_shape = self.geometry.detector_shape
        # A user mask (Dioptas, pyFAI-calib) is drawn on the image as the
        # PONI file sees it: orient_user_mask brings it to pyFAI's frame.
        self.user_mask = None if settings.mask is None else \
            self.geometry.orient_user_mask(read_mask(settings.mask, detector_shape))
        self.dark = None if settings.dark is None else self._calibration_frame(settings.dark)
        self.flat = None if settings.flat is None else self._calibration_frame(settings.flat)
        if self.flat is not None and np.any(self.flat[np.isfinite(self.flat)] <= 0):
            # pyFAI divides by the flat; a zero would make infinities.
            self.flat = np.where(self.flat > 0, self.flat, np.nan).astype(np.float32)
        # What is masked in every frame: the detector's gaps and the user
        # mask, passed as one unchanging array. Pixels bad in one frame only
        # (negative, NaN) are caught by pyFAI's dummy test instead: a new
        # mask array per frame would make pyFAI rebuild its sparse matrix.
        static = np.zeros(detector_shape, bool)
        if self.geometry.integrator.detector.mask is not None:
            static |= self.geometry.integrator.detector.mask.astype(bool)
        if self.user_mask is not None:
            static |= self.user_mask
        if static.all():
            raise InputError("the mask and the detector's gaps leave no pixel", settings.mask or settings.poni)
        # A mask that leaves almost nothing gives patterns of a few pixels per
        # bin that look like patterns: refused below MIN_UNMASKED_FRACTION,
        # a warning on every pattern below WARN_UNMASKED_FRACTION.
        unmasked = 1.0 - float(np.count_nonzero(static)) / static.size
        if unmasked < MIN_UNMASKED_FRACTION:
            raise InputError(f"the mask and the detector's gaps leave {100 * unmasked:.2g} % of the pixels "
                             f"(fewer than {100 * MIN_UNMASKED_FRACTION:g} %): a mask drawn inverted?",
                             settings.mask or settings.poni)
        self.mask_warning = "" if unmasked >= WARN_UNMASKED_FRACTION else (
            f"the mask and the detector's gaps leave only {100 * unmasked:.2g} % of the pixels")
        self.static_mask = static
        # pyFAI checksums a mask passed to integrate1d on every call (1 ms on a
        # Pilatus 1M); the detector's own mask is checksummed once, when set.
        # The static mask becomes the detector's, and every call passes none.
        self.geometry.integrator.detector.mask = static if static.any() else None
        self.spot_finder = self._spot_finder() if settings.rejection == "spots" else None
        self._reported_fallback = False
        self._method_used = None  # pyFAI's method object once the first frame told it: no parsing per frame

    def _spot_finder(self) -> SpotFinder:
        """The spot search, its radial bins and per-pixel normalization built once for every frame.

        Pixels are put on their ring's level by the corrections pyFAI will
        apply (solid angle, polarization, dark, flat), all in the layout of
        the frames pyFAI is given.
        """
        s = self.settings
        ai = self.geometry.integrator
        shape = self.geometry.detector_shape
        norm = np.ones(shape)
        if s.solid_angle:
            norm = norm * ai.solidAngleArray(shape)
        if s.polarization_factor is not None:
            norm = norm * ai.polarization(shape, factor=s.polarization_factor)
        if self.flat is not None:
            norm = norm * self.flat
        return SpotFinder(ai.center_array(shape, unit=s.unit, scale=True), self.static_mask, normalization=norm,
                          dark=self.dark, threshold=s.spot_threshold, dilate_px=s.spot_dilate_px,
                          max_size_px=s.spot_max_size_px, ring_blobs=s.spot_ring_blobs)

    def split(self) -> str:
        """The pixel splitting the frames are integrated with (sigma clipping
        works pixel by pixel, the median filter on fully split pixels). With
        the spot mask too each pixel goes whole to the bin of its centre: a
        bin is then the mean of its pixels, measured where they are
        (:meth:`pixel_mean_radial`), which the structural and SAXS models
        sample; bounding-box splitting smears every pixel over its footprint,
        which they do not model (measured on data-sample: SAXS spacings 0.25 %
        off, beyond 3 of their errors, and a gold-marker pressure 0.07 GPa
        off, against 0.003 with whole pixels)."""
        s = self.settings
        return {"sigma-clip": "no", "spots": "no", "median": "full"}.get(s.rejection, str(s.method[0]).lower())

    def pixel_mean_radial(self, raw_image: np.ndarray | None = None) -> np.ndarray:
        """Where each bin's value is measured: the mean radial position (settings' unit)
        of the unmasked pixel centres that fall in it, NaN for an empty bin; the
        pixels a frame ``raw_image`` flags (detector gaps written as negative
        values, NaN) left out as its integration leaves them out.

        Without pixel splitting a bin holds the mean of its pixels, each taken
        at its centre, so the pattern samples the profile at the mean of those
        centres, not at the bin's centre. When pixels are not much smaller than
        bins (0.1 deg pixels, 0.075 deg bins on a small detector) the two differ
        by up to half a bin from bin to bin, irregularly; a lattice refined at
        the bin centres is then off by several of its standard errors (measured
        on noise-free cinnabar: -2 sigma in a; at the pixel means: none).
        With splitting each pixel is spread over the bins it covers, and the
        bin centres are right: they are returned.
        """
        s = self.settings
        ai = self.geometry.integrator
        split = self.split()
        shape = self.geometry.detector_shape
        empty = np.zeros(shape, np.float32)
        if split != "no":
            return np.asarray(ai.integrate1d(empty, s.npt, unit=s.unit,
                                             method=(split, s.method[1], s.method[2])).radial)
        # pyFAI's own pixel positions, in the frame's orientation, as the signal:
        # the bin's mean of it is the mean position of its pixels.
        positions = ai.center_array(shape, unit=s.unit, scale=True).astype(np.float64)
        if raw_image is not None:
            # The frame's flagged pixels as pyFAI's dummy value, as its
            # integration takes them, not as a mask: a mask other than the
            # static one would make pyFAI rebuild the sparse matrix that the
            # frames are integrated with (twice: here and on the next frame).
            image = self.geometry.orient(raw_image)
            positions[~np.isfinite(image) | (np.abs(image - DUMMY) <= DELTA_DUMMY)] = DUMMY
        result = ai.integrate1d(positions, s.npt, unit=s.unit, method=("no", s.method[1], s.method[2]),
                                correctSolidAngle=False, polarization_factor=None, dummy=DUMMY,
                                delta_dummy=DELTA_DUMMY)
        count = np.asarray(getattr(result, "count", np.ones(s.npt)))
        return np.where(count > 0, np.asarray(result.intensity, dtype=float), np.nan)

    def _calibration_frame(self, reference: str) -> np.ndarray:
        return self.geometry.orient(read_image(reference, self.geometry.detector_shape))

    @property
    def wavelength_A(self) -> float:
        return self.geometry.wavelength_A

    def prepare(self, raw_image: np.ndarray) -> "PreparedFrame":
        """The frame as pyFAI gets it, and its spots (rejection ``spots``) as
        pyFAI's dummy value in a copy: the part of the work that the stage
        does in its reader thread, beside the integration of the previous
        frame (numpy releases the GIL in the whole-image passes)."""
        # NaN > 0 is False: gaps and flagged pixels are no counts either. A
        # few pixels across the frame usually answer; the whole frame otherwise.
        if not (np.any(np.ravel(raw_image)[::997] > 0) or np.any(raw_image > 0)):
            raise InputError("no usable pixel in the image: every pixel is zero, negative or invalid (no counts)")
        image = self.geometry.orient(raw_image)  # a flipped copy only under legacy_method "flip"
        # pyFAI works in float32 and converts integer frames itself: done here,
        # in the reader thread, that copy leaves the integration's thread
        # (a no-op for float32 frames).
        image = np.ascontiguousarray(image, dtype=np.float32)
        spots = None if self.spot_finder is None else self.spot_finder.find(image)
        return PreparedFrame(raw=raw_image, image=image, spots=spots)

    def integrate(self, frame: "np.ndarray | PreparedFrame", normalization_factor: float = 1.0) -> Pattern:
        """Integrate one raw frame (as read from its file), or one :meth:`prepare` made."""
        s = self.settings
        prepared = frame if isinstance(frame, PreparedFrame) else self.prepare(frame)
        image = prepared.image
        ai = self.geometry.integrator
        # No mask argument: the static mask is the detector's (see __init__).
        common = dict(correctSolidAngle=s.solid_angle, polarization_factor=s.polarization_factor,
                      dummy=DUMMY, delta_dummy=DELTA_DUMMY, dark=self.dark, flat=self.flat,
                      unit=s.unit, normalization_factor=normalization_factor)
        spots = prepared.spots
        requested = (self.split(), s.method[1], s.method[2])
        if s.rejection == "sigma-clip":
            # Clipping works pixel by pixel, so no pixel splitting. The spread
            # it clips against is always measured along the ring: with a
            # Poisson model one spot thousands of counts high drags the mean
            # so far that pyFAI clips every pixel of its ring (measured: the
            # ring's intensity comes out 0).
            result = ai.sigma_clip_ng(image, s.npt, method=requested, error_model="azimuthal",
                                      thres=s.rejection_threshold, max_iter=s.rejection_max_iter, **common)
        elif s.rejection == "median":
            result = ai.medfilt1d_ng(image, s.npt, method=requested, error_model="azimuthal",
                                     percentile=s.median_percentile, **common)
        elif spots is None or not spots.n_pixels:
            result = ai.integrate1d(image, s.npt, method=self._method_used or requested,
                                    error_model=s.error_model, **common)
        else:
            # The spots leave the sums as pyFAI's dummy value, written into the
            # frame for this call and put back after it (a few hundred pixels;
            # a copy of the frame would cost more): no new mask per frame,
            # which would make pyFAI rebuild its sparse matrix.
            if not image.flags.writeable:  # a caller's read-only frame
                image = image.copy()
            flat = image.reshape(-1)
            counts = flat[spots.indices]
            flat[spots.indices] = DUMMY
            try:
                result = ai.integrate1d(image, s.npt, method=self._method_used or requested,
                                        error_model=s.error_model, **common)
            finally:
                flat[spots.indices] = counts
        count = getattr(result, "count", None)
        if count is not None and not np.any(np.asarray(count) > 0):
            raise InputError("no usable pixel in the image (all negative, NaN or masked)")
        used = result.method
        used_triple = (used.split_lower, used.algo_lower, used.impl_lower) if used is not None else None
        if used_triple is not None and tuple(used_triple) != tuple(requested) and not self._reported_fallback:
            log.warning(f"pyFAI used method {used_triple} instead of {requested}")
            self._reported_fallback = True
        if used is not None and s.rejection in ("spots", "none") and tuple(used_triple) == tuple(requested):
            self._method_used = used
        intensity = np.asarray(result.intensity)
        if s.rejection in ("sigma-clip", "median") and s.error_model == "poisson":
            # Poisson error of the mean of the pixels kept: sqrt(sum of counts)
            # over the sum of normalizations, i.e. I / sqrt(sum of counts),
            # which is what integrate1d's "poisson" model gives.
            with np.errstate(divide="ignore", invalid="ignore"):
                sigma = np.where(result.sum_signal > 0, intensity / np.sqrt(result.sum_signal), np.nan)
        else:
            sigma = result.sigma if result.sigma is not None else np.full_like(intensity, np.nan)
        cake = chi = None
        if s.cake_npt_azimuthal:
            # Same corrections, no clipping: the cake is for seeing texture
            # and spots, which clipping would hide.
            # On the pattern's radial bins: left alone, pyFAI spans the 2D bins over the unmasked pixels'
            # range, which the 1D integration (clipping, spot dummies) need not share, and the cake
            # would sit a fraction of a bin off the radial axis it is stored with.
            radial = np.asarray(result.radial, dtype=float)
            half_bin = 0.5 * (radial[-1] - radial[0]) / max(radial.size - 1, 1)
            cake_result = ai.integrate2d(image, s.npt, s.cake_npt_azimuthal, method=s.method,
                                         radial_range=(radial[0] - half_bin, radial[-1] + half_bin), **common)
            if not np.allclose(cake_result.radial, radial, rtol=0.0, atol=1e-3 * half_bin):  # float32 edges
                raise RuntimeError("pyFAI's cake and pattern radial bins differ")  # pragma: no cover - pyFAI change
            cake, chi = np.asarray(cake_result.intensity), np.asarray(cake_result.azimuthal)
        return Pattern(radial=np.asarray(result.radial), intensity=intensity,
                       sigma=np.asarray(sigma), method=str(used_triple), cake=cake, chi_deg=chi,
                       spot_pixels=None if spots is None else spots.n_pixels,
                       spot_blobs=None if spots is None else spots.n_blobs)


