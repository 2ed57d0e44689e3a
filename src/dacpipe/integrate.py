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
the detector: pyFAI's sigma clipping along each ring (``sigma_clip_ng``;
Kieffer et al., J. Synchrotron Rad. 27, 558 (2020)) or its median filter
(``medfilt1d_ng``, the mean of a central percentile range per ring).

pyFAI silently falls back to another engine when a requested (split,
algorithm, implementation) combination does not exist; the method actually
used is read back from each result and a fall-back is reported once.
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
import math  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Callable, Iterable, Iterator, Sequence  # noqa: E402

import numpy as np  # noqa: E402

from .errors import InputError  # noqa: E402
from .geometry import Geometry, load_geometry  # noqa: E402
from .images import read_image, read_mask  # noqa: E402
from .provenance import FileRecord, file_record  # noqa: E402
from .sheet import Point, Sheet  # noqa: E402
from .store import StageResult  # noqa: E402

log = logging.getLogger("dacpipe")

REJECTIONS = ("sigma-clip", "median", "none")
# pyFAI skips pixels within DELTA_DUMMY of DUMMY, and NaN ones: with these,
# every value from -0.5 down to -2e6 (Pilatus gaps -1, dead pixels -2, and
# the like) is left out while 0 and small positive counts are kept, without
# a per-frame mask (exact in float32: 999999.5 is representable).
DUMMY = -1.0e6
DELTA_DUMMY = 1.0e6 - 0.5
UNITS = {"q_A^-1": "q_A^-1", "q_nm^-1": "q_nm^-1", "2th_deg": "2th_deg"}


@dataclass(frozen=True)
class IntegrationSettings:
    """The ``xrd`` or ``saxs`` section of a run's config, validated."""

    poni: str
    poni_convention: str = "pyfai"
    wavelength_A: float | None = None
    mask: str | None = None
    unit: str = "q_A^-1"
    npt: int = 3000
    method: tuple[str, str, str] = ("bbox", "csr", "cython")
    polarization_factor: float | None = 0.99
    solid_angle: bool = True
    error_model: str = "poisson"
    rejection: str = "sigma-clip"
    rejection_threshold: float = 4.0
    rejection_max_iter: int = 5
    median_percentile: tuple[float, float] = (10.0, 90.0)
    dark: str | None = None
    flat: str | None = None
    normalization: str = "none"   # "none" | "monitor" (the sheet's monitor column)
    cake_npt_azimuthal: int | None = None   # also keep the 2D cake, for texture checks

    @classmethod
    def from_config(cls, section: dict) -> "IntegrationSettings":
        rejection = section.get("rejection", {})
        return cls(
            poni=section["poni"], poni_convention=section["poni_convention"],
            wavelength_A=section["wavelength_A"], mask=section["mask"], unit=section["unit"],
            npt=int(section["npt"]), method=tuple(section["method"]),
            polarization_factor=section["polarization_factor"], solid_angle=section["solid_angle"],
            error_model=section["error_model"], rejection=rejection["method"],
            rejection_threshold=float(rejection["threshold"]), rejection_max_iter=int(rejection["max_iter"]),
            median_percentile=tuple(rejection["percentile"]), dark=section.get("dark"),
            flat=section.get("flat"), normalization=section.get("normalization", "none"),
            cake_npt_azimuthal=section.get("cake", {}).get("npt_azimuthal") if section.get("cake", {}).get(
                "enabled") else None)


@dataclass(frozen=True)
class Pattern:
    """One integrated frame."""

    radial: np.ndarray       # in the settings' unit
    intensity: np.ndarray
    sigma: np.ndarray
    method: str              # the pyFAI method actually used, as text
    cake: np.ndarray | None = None          # [azimuthal, radial], when asked for
    chi_deg: np.ndarray | None = None


def q_from_two_theta(two_theta_deg: np.ndarray, wavelength_A: float) -> np.ndarray:
    """q = 4 pi sin(theta) / lambda, in 1/angstrom."""
    return 4.0 * np.pi * np.sin(np.radians(two_theta_deg) / 2.0) / wavelength_A


def two_theta_from_q(q_A: np.ndarray, wavelength_A: float) -> np.ndarray:
    """The inverse of :func:`q_from_two_theta`, in degrees."""
    return np.degrees(2.0 * np.arcsin(np.clip(q_A * wavelength_A / (4.0 * np.pi), -1.0, 1.0)))


class FrameIntegrator:
    """Everything that does not change between the frames of a run, built once.

    Parameters
    ----------
    settings : IntegrationSettings
    shape : (int, int), optional
        Detector shape, when the PONI file's detector does not say it (old
        PONI files with pixel sizes only): taken from the first frame.
    """

    def __init__(self, settings: IntegrationSettings, shape: tuple[int, int] | None = None):
        self.settings = settings
        self.geometry: Geometry = load_geometry(settings.poni, convention=settings.poni_convention,
                                                wavelength_A=settings.wavelength_A, shape=shape)
        detector_shape = self.geometry.detector_shape
        # A user mask (Dioptas, pyFAI-calib) is drawn on the image as the
        # PONI file sees it: it is already oriented.
        self.user_mask = None if settings.mask is None else read_mask(settings.mask, detector_shape)
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
        self.static_mask = static
        self._reported_fallback = False

    def _calibration_frame(self, reference: str) -> np.ndarray:
        return self.geometry.orient(read_image(reference, self.geometry.detector_shape))

    @property
    def wavelength_A(self) -> float:
        return self.geometry.wavelength_A

    def integrate(self, raw_image: np.ndarray, normalization_factor: float = 1.0) -> Pattern:
        """Integrate one raw frame (as read from its file)."""
        s = self.settings
        image = self.geometry.orient(raw_image)
        ai = self.geometry.integrator
        common = dict(correctSolidAngle=s.solid_angle, polarization_factor=s.polarization_factor,
                      mask=self.static_mask, dummy=DUMMY, delta_dummy=DELTA_DUMMY, dark=self.dark, flat=self.flat,
                      unit=s.unit, normalization_factor=normalization_factor)
        if s.rejection == "sigma-clip":
            # Clipping works pixel by pixel, so no pixel splitting. The spread
            # it clips against is always measured along the ring: with a
            # Poisson model one spot thousands of counts high drags the mean
            # so far that pyFAI clips every pixel of its ring (measured: the
            # ring's intensity comes out 0).
            requested = ("no", s.method[1], s.method[2])
            result = ai.sigma_clip_ng(image, s.npt, method=requested, error_model="azimuthal",
                                      thres=s.rejection_threshold, max_iter=s.rejection_max_iter, **common)
        elif s.rejection == "median":
            requested = ("full", s.method[1], s.method[2])
            result = ai.medfilt1d_ng(image, s.npt, method=requested, error_model="azimuthal",
                                     percentile=s.median_percentile, **common)
        else:
            requested = s.method
            result = ai.integrate1d(image, s.npt, method=requested, error_model=s.error_model, **common)
        count = getattr(result, "count", None)
        if count is not None and not np.any(np.asarray(count) > 0):
            raise InputError("no usable pixel in the image (all negative, NaN or masked)")
        used = result.method
        used_triple = (used.split_lower, used.algo_lower, used.impl_lower) if used is not None else None
        if used_triple is not None and tuple(used_triple) != tuple(requested) and not self._reported_fallback:
            log.warning(f"pyFAI used method {used_triple} instead of {requested}")
            self._reported_fallback = True
        intensity = np.asarray(result.intensity)
        if s.rejection != "none" and s.error_model == "poisson":
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
            cake_result = ai.integrate2d(image, s.npt, s.cake_npt_azimuthal, method=s.method, **common)
            cake, chi = np.asarray(cake_result.intensity), np.asarray(cake_result.azimuthal)
        return Pattern(radial=np.asarray(result.radial), intensity=intensity,
                       sigma=np.asarray(sigma), method=str(used_triple), cake=cake, chi_deg=chi)


def _prefetch(references: Sequence[str | None], read: Callable[[str], np.ndarray]
              ) -> Iterator[tuple[int, np.ndarray | InputError | None, FileRecord | None]]:
    """Frames in order, each with its file's checksum, the next one read (and
    hashed, from the page cache) in a thread while the caller integrates this one."""
    hashed: set[str] = set()  # frames of one HDF5 stack share a file: hash it once

    def load(ref):
        if ref is None:
            return None, None
        path = ref.split("::", 1)[0]
        record = None if path in hashed else file_record(path)
        hashed.add(path)
        try:
            return read(ref), record
        except InputError as err:
            return err.with_path(ref.split("::", 1)[0]), record

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, references[0]) if references else None
        for i in range(len(references)):
            current, record = pending.result()
            pending = pool.submit(load, references[i + 1]) if i + 1 < len(references) else None
            yield i, current, record


def integration_stage(sheet: Sheet, section: dict, kind: str,
                      warn: Callable[[str], None] = lambda message: None,
                      progress: Callable[[int, int], None] = lambda done, total: None) -> StageResult:
    """Integrate the ``kind`` ("xrd" or "saxs") frame of every point of a sheet.

    Points without a frame, or whose frame cannot be used, get NaN rows and
    their reason in the status; the other points are integrated.
    """
    settings = IntegrationSettings.from_config(section)
    n = len(sheet.points)
    references = [p.files.get(kind) for p in sheet.points]
    integrator = FrameIntegrator(settings, shape=_first_shape(references))
    shape = integrator.geometry.detector_shape
    intensity = np.full((n, settings.npt), np.nan)
    sigma = np.full((n, settings.npt), np.nan)
    # The cake costs N x n_azimuthal x npt numbers: only when asked for.
    cake = None if not settings.cake_npt_azimuthal else \
        np.full((n, settings.cake_npt_azimuthal, settings.npt), np.nan, dtype=np.float32)
    chi = None
    radial = None
    status = ["ok"] * n
    methods = set()
    inputs: list[str | FileRecord] = [settings.poni] + [r for r in (settings.mask, settings.dark, settings.flat) if r]
    for i, frame, record in _prefetch(references, lambda ref: read_image(ref, shape)):
        if record is not None:
            inputs.append(record)
        point = sheet.points[i]
        if frame is None:
            status[i] = f"{kind}: not measured"
        else:
            try:
                if isinstance(frame, InputError):
                    raise frame
                pattern = integrator.integrate(frame, _normalization(point, settings))
            except InputError as err:
                err = err.with_path(references[i].split("::", 1)[0])
                status[i] = f"{kind} skipped: {err}"
                warn(f"{sheet.path.parent.name}/{point.point}: {err}")
            else:
                intensity[i], sigma[i] = pattern.intensity, pattern.sigma
                radial = pattern.radial if radial is None else radial
                if cake is not None:
                    cake[i], chi = pattern.cake, pattern.chi_deg
                methods.add(pattern.method)
        progress(i + 1, n)

    if radial is None:  # no frame could be integrated: axes from the geometry alone
        radial = _empty_radial(integrator, settings)
    q_A, two_theta = _axes(radial, settings.unit, integrator.wavelength_A)
    attrs = {"NX_class": "NXdata", "signal": "I", "axes": [".", "q"], "q_indices": 1,
             "two_theta_indices": 1, "poni": settings.poni, "poni_convention": settings.poni_convention,
             "wavelength_A": integrator.wavelength_A, "unit": settings.unit, "npt": settings.npt,
             "method": ", ".join(sorted(methods)), "rejection": settings.rejection,
             "polarization_factor": math.nan if settings.polarization_factor is None
             else settings.polarization_factor, "mask": settings.mask or ""}
    datasets = {"I": intensity, "I_errors": sigma}
    axes = {"q": q_A, "two_theta": two_theta}
    if cake is not None:
        datasets["cake/I"] = cake
        axes["cake/chi_deg"] = chi if chi is not None else np.full(settings.cake_npt_azimuthal, np.nan)
        axes["cake/radial"] = radial
    return StageResult(stage=kind, point_ids=sheet.point_ids, status=status, attrs=attrs, inputs=inputs,
                       datasets=datasets, axes=axes)


def _normalization(point: Point, settings: IntegrationSettings) -> float:
    if settings.normalization != "monitor":
        return 1.0
    if not (math.isfinite(point.monitor) and point.monitor > 0):
        raise InputError(f"normalization by monitor, but the sheet gives monitor {point.monitor!r}")
    return point.monitor


def _first_shape(references: Iterable[str | None]) -> tuple[int, int] | None:
    """The shape of the first readable frame, for PONI files that do not give one."""
    for ref in references:
        if ref is None:
            continue
        try:
            return read_image(ref).shape
        except InputError:
            continue
    return None


def _axes(radial: np.ndarray, unit: str, wavelength_A: float) -> tuple[np.ndarray, np.ndarray]:
    if unit == "2th_deg":
        return q_from_two_theta(radial, wavelength_A), radial
    q_A = radial / 10.0 if unit == "q_nm^-1" else radial
    return q_A, two_theta_from_q(q_A, wavelength_A)


def _empty_radial(integrator: FrameIntegrator, settings: IntegrationSettings) -> np.ndarray:
    shape = integrator.geometry.detector_shape
    if shape is None:
        return np.full(settings.npt, np.nan)
    result = integrator.geometry.integrator.integrate1d(np.zeros(shape, np.float32), settings.npt,
                                                        unit=settings.unit, method=settings.method)
    return np.asarray(result.radial)
