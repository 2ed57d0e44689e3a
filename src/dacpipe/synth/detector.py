"""Detectors of the synthetic runs: geometry, beamstop masks and file writers.

Everything here writes files that must come out byte for byte the same on
every run (``tests/test_synth.py``), so each writer is checked for what it
puts in a header besides the data:

* PONI: pyFAI's ``PoniFile.write`` adds ``# Calibration done on <date>``,
  and its detector JSON may change between pyFAI versions. The file is
  written here instead, in the PONI 2.1 layout pyFAI writes (and reads).
* CBF: fabio's byte-offset writer is deterministic for a given file name
  (the CIF block is ``data_<stem>``), but its first line carries the fabio
  version. That line is replaced by a fixed one, so a fabio upgrade does not
  change data-sample. Readers only look for the ``###CBF`` magic.
* TIFF (Dioptas ``.mask``): fabio's ``TifImage.write`` stamps the current
  time; ``TiffIO.writeImage`` is called directly with a fixed date.
* EDF: fabio writes only the data description (no date, no version).

Pixel coordinates used in this package are array indices: ``(row, col)``
with integers at pixel centres, the convention of ``AzimuthalIntegrator.tth
(row, col)`` and ``center_array``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Pilatus frames mark pixels that carry no data (module gaps) with -1.
PILATUS_DUMMY = -1
_CBF_FIRST_LINE = b"###CBF: VERSION 1.5, written by dacpipe.synth with fabio's byte-offset writer"
_TIFF_SOFTWARE = "dacpipe.synth"
_TIFF_DATE = "2026:01:01 00:00:00"  # fixed on purpose: a date would change every regeneration


@dataclass(frozen=True)
class DetectorGeometry:
    """A flat detector and its pose, in pyFAI's PONI parameters.

    Attributes
    ----------
    shape : (int, int)
        Image shape (rows, columns).
    pixel_m : float
        Square pixel size (m).
    distance_m, poni1_m, poni2_m : float
        Sample-detector distance and point of normal incidence (m), pyFAI
        convention (poni1 along rows, poni2 along columns, from the corner
        of the first pixel).
    rot1_rad, rot2_rad, rot3_rad : float
        pyFAI detector rotations.
    wavelength_A : float
        X-ray wavelength (angstrom).
    """

    shape: tuple[int, int]
    pixel_m: float
    distance_m: float
    poni1_m: float
    poni2_m: float
    rot1_rad: float
    rot2_rad: float
    rot3_rad: float
    wavelength_A: float

    def integrator(self):
        """A new pyFAI ``AzimuthalIntegrator`` with this geometry."""
        from pyFAI.detectors import Detector
        from pyFAI.integrator.azimuthal import AzimuthalIntegrator

        det = Detector(pixel1=self.pixel_m, pixel2=self.pixel_m, max_shape=self.shape)
        return AzimuthalIntegrator(dist=self.distance_m, poni1=self.poni1_m, poni2=self.poni2_m,
                                   rot1=self.rot1_rad, rot2=self.rot2_rad, rot3=self.rot3_rad,
                                   detector=det, wavelength=self.wavelength_A * 1e-10)

    def beam_center_px(self) -> tuple[float, float]:
        """Where the direct beam hits the detector, (row, col) in array-index coordinates.

        pyFAI's Fit2D centre counts pixel corners from 0, so the centre of
        pixel ``i`` is at ``i + 0.5`` there.
        """
        fit2d = cached_integrator(self).getFit2D()
        return fit2d["centerY"] - 0.5, fit2d["centerX"] - 0.5

    def poni_text(self) -> str:
        """The geometry as a PONI file (version 2.1, the layout pyFAI writes)."""
        config = {"pixel1": self.pixel_m, "pixel2": self.pixel_m, "max_shape": list(self.shape), "orientation": 3}
        lines = [
            "# Nota: C-Order, 1 refers to the Y axis, 2 to the X axis",
            "# Geometry of the synthetic images of dacpipe.synth (written without a date, on purpose)",
            "poni_version: 2.1",
            "Detector: Detector",
            f"Detector_config: {json.dumps(config)}",
            f"Distance: {self.distance_m!r}",
            f"Poni1: {self.poni1_m!r}",
            f"Poni2: {self.poni2_m!r}",
            f"Rot1: {self.rot1_rad!r}",
            f"Rot2: {self.rot2_rad!r}",
            f"Rot3: {self.rot3_rad!r}",
            f"Wavelength: {self.wavelength_A * 1e-10!r}",
            "",
        ]
        return "\n".join(lines)


@functools.lru_cache(maxsize=8)
def cached_integrator(geometry: DetectorGeometry):
    """One integrator per geometry for the generator, which only reads from it.

    pyFAI keeps the 2theta, solid-angle and polarization arrays it computed
    on the integrator, so reusing it saves recomputing them for every frame.
    """
    return geometry.integrator()


def beamstop_mask(shape: tuple[int, int], center_rc: tuple[float, float], radius_px: float,
                  arm_angle_deg: float, arm_half_width_px: float) -> np.ndarray:
    """Pixels behind a beamstop: a disc round the beam plus its arm to the edge.

    Parameters
    ----------
    shape : (int, int)
    center_rc : (float, float)
        Disc centre (row, col), array-index coordinates.
    radius_px : float
        Disc radius (pixels).
    arm_angle_deg : float
        Direction of the arm from the centre, degrees counter-clockwise from
        the +col axis (as seen with row 0 at the top, +row pointing down).
    arm_half_width_px : float
        Half width of the arm (pixels); the arm runs from the centre to
        beyond the image edge.

    Returns
    -------
    bool ndarray, True behind the beamstop.
    """
    rows, cols = np.indices(shape, dtype=float)
    dr, dc = rows - center_rc[0], cols - center_rc[1]
    disc = dr**2 + dc**2 <= radius_px**2
    ux, uy = np.cos(np.radians(arm_angle_deg)), -np.sin(np.radians(arm_angle_deg))  # (col, row) unit vector
    along = dc * ux + dr * uy
    across = -dc * uy + dr * ux
    arm = (along >= 0) & (np.abs(across) <= arm_half_width_px)
    return disc | arm


def write_poni(path: Path, geometry: DetectorGeometry) -> None:
    path.write_text(geometry.poni_text())


def write_cbf(path: Path, data: np.ndarray) -> None:
    """A Pilatus-style CBF (int32, byte-offset compressed) with a version-free first line."""
    from fabio.cbfimage import CbfImage

    CbfImage(data=np.ascontiguousarray(data, dtype=np.int32)).write(str(path))
    raw = path.read_bytes()
    first, rest = raw.split(b"\n", 1)
    if not first.startswith(b"###CBF"):  # pragma: no cover - a fabio change we must notice
        raise RuntimeError(f"fabio wrote an unexpected CBF header: {first[:60]!r}")
    path.write_bytes(_CBF_FIRST_LINE + b"\n" + rest)


def write_mask_tiff(path: Path, mask: np.ndarray) -> None:
    """A Dioptas-style ``.mask``: uint8 TIFF, 1 = masked, with a fixed date tag."""
    from fabio.TiffIO import TiffIO

    if path.exists():  # TiffIO in "w" mode appends to an existing file's directory chain otherwise
        path.unlink()
    tiff = TiffIO(str(path), mode="w")
    try:
        tiff.writeImage(np.ascontiguousarray(mask, dtype=np.uint8), software=_TIFF_SOFTWARE, date=_TIFF_DATE)
    finally:
        tiff.close()


def write_edf(path: Path, data: np.ndarray) -> None:
    from fabio.edfimage import EdfImage

    EdfImage(data=np.ascontiguousarray(data)).write(str(path))
