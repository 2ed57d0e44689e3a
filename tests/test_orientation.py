"""dioptas-legacy by pyFAI detector orientation 2 against the flip of every frame.

PONI files of Dioptas < 0.7 refer to the image flipped upside down. dacpipe
used to flip every frame (and dark, flat, detector mask) before pyFAI saw
it; it now gives the detector pyFAI orientation 2 instead and hands pyFAI the
raw frames, where that gives the same patterns. The reference here is that
old flip, done independently of the code under test: the same PONI file read
as ``pyfai`` (orientation 3), fed flipped frames, flipped dark and flat, a
detector whose gap mask is flipped, and the user mask as drawn.

"The same" is bit-identical where the orientation is used: pyFAI sums the
same float64 terms in another order (rows of a bin bottom to top), and the
float32 result does not show the difference. The tolerance allows 2 float32
ulps anyway (rtol 2.4e-7), as a different summation order may round a sum
the other way. Where the result depends on the pixel order (pyFAI's
single-pass azimuthal variance: sigma clipping, median filter, azimuthal
errors; full splitting) the frames are still flipped, and the patterns are
those of the old code exactly. The spot search (the default rejection) does
not depend on the order: it masks the same pixels either way up.
"""

from __future__ import annotations

import json

import numpy as np
import pyFAI.detectors
import pytest

from dacpipe.integration.integrator import FrameIntegrator, IntegrationSettings, pixel_order_matters
from dacpipe.io.images import read_image
from dacpipe.io.poni import load_geometry
from dacpipe.synth.detector import DetectorGeometry, beamstop_mask, write_edf, write_mask_tiff

RTOL = 2 * np.finfo(np.float32).eps  # 2 float32 ulps: see the module notes

# A small tilted Pilatus-like detector, beam off centre: the rings are not
# symmetric top to bottom, so integrating the wrong way up smears them.
GEOMETRY = DetectorGeometry(shape=(120, 150), pixel_m=172e-6, distance_m=0.06, poni1_m=0.0080, poni2_m=0.0142,
                            rot1_rad=0.012, rot2_rad=-0.008, rot3_rad=0.0, wavelength_A=0.4133)
RINGS_DEG = (5.0, 8.0, 11.0, 14.0)
# Rows -1 in every frame (a module gap written by the detector), raw frame.
DUMMY_ROWS = slice(70, 74)

SETTINGS = {  # name: changes to the section; what the integrator must do
    "none-bbox": ({"rejection": {"method": "none"}, "cake": {"enabled": True, "npt_azimuthal": 36}}, "orientation"),
    "none-no-split": ({"rejection": {"method": "none"}, "method": ["no", "csr", "cython"]}, "orientation"),
    "none-histogram": ({"rejection": {"method": "none"}, "method": ["bbox", "histogram", "cython"]}, "orientation"),
    "spots": ({}, "orientation"),  # the default: spots found in the image, masked, plain integration
    "spots-full-split": ({"method": ["full", "csr", "cython"]}, "flip"),
    "sigma-clip": ({"rejection": {"method": "sigma-clip"}}, "flip"),
    "median": ({"rejection": {"method": "median"}}, "flip"),
    "azimuthal-errors": ({"rejection": {"method": "none"}, "error_model": "azimuthal"}, "flip"),
    "full-split": ({"rejection": {"method": "none"}, "method": ["full", "csr", "cython"]}, "flip"),
}


def _poni_text(detector_file) -> str:
    """The PONI file of GEOMETRY, its detector a NeXus detector file (which carries a gap mask)."""
    config = {"filename": str(detector_file), "orientation": 3}
    return "\n".join(line if not line.startswith("Detector") else
                     "Detector: NexusDetector" if line.startswith("Detector:") else
                     f"Detector_config: {json.dumps(config)}"
                     for line in GEOMETRY.poni_text().splitlines()) + "\n"


def _save_detector(path, mask) -> None:
    detector = pyFAI.detectors.Detector(pixel1=GEOMETRY.pixel_m, pixel2=GEOMETRY.pixel_m, max_shape=GEOMETRY.shape)
    detector.mask = mask.astype(np.int8)
    detector.save(str(path))


def _poni_frame_image(rng) -> np.ndarray:
    """Counts as the PONI file sees them (Dioptas' flipped view): rings and two anvil spots."""
    ai = GEOMETRY.integrator()
    tth = np.linspace(0, 25, 5000)
    pattern = 40 + sum(800 * np.exp(-0.5 * ((tth - c) / 0.1) ** 2) for c in RINGS_DEG)
    image = ai.calcfrom1d(tth, pattern, shape=GEOMETRY.shape, dim1_unit="2th_deg",
                          correctSolidAngle=True, polarization_factor=0.99)
    rows, cols = np.indices(GEOMETRY.shape)
    for r, c in ((30, 40), (95, 120)):
        image = image + 40000 * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / 3.0)
    return rng.poisson(image).astype(np.float32)


@pytest.fixture(scope="module")
def legacy_run(tmp_path_factory):
    """A legacy PONI file and its run's files, with the same files flipped for the reference."""
    folder = tmp_path_factory.mktemp("legacy")
    rng = np.random.default_rng(7)
    shape = GEOMETRY.shape
    gaps = np.zeros(shape, bool)  # the detector's own mask, raw frame, uneven top to bottom
    gaps[18:23, :] = True
    gaps[5:9, 100:140] = True
    _save_detector(folder / "detector.h5", gaps)
    _save_detector(folder / "detector_flipped.h5", np.flipud(gaps))
    (folder / "legacy.poni").write_text(_poni_text(folder / "detector.h5"))
    (folder / "reference.poni").write_text(_poni_text(folder / "detector_flipped.h5"))
    # Drawn in Dioptas < 0.7, on the flipped image: the beamstop and a stroke near the top.
    drawn = beamstop_mask(shape, GEOMETRY.beam_center_px(), 6.0, 215.0, 2.0)
    drawn[2:5, 10:60] = True
    write_mask_tiff(folder / "user.mask", drawn)
    dark = rng.normal(3.0, 0.5, shape).astype(np.float32)  # raw frame, as the detector wrote them
    flat = rng.uniform(0.8, 1.2, shape).astype(np.float32)
    flat[10, 20] = 0.0  # a dead pixel of the flat field: left out, not divided by
    write_edf(folder / "dark.edf", dark)
    write_edf(folder / "flat.edf", flat)
    write_edf(folder / "dark_flipped.edf", np.flipud(dark))
    write_edf(folder / "flat_flipped.edf", np.flipud(flat))
    frames = []
    for _ in range(2):
        raw = np.flipud(_poni_frame_image(rng))  # the file holds the image upside down
        raw[DUMMY_ROWS] = -1
        frames.append(raw)
    return folder, frames


def _settings(folder, poni, convention, flipped_files, **changes) -> IntegrationSettings:
    suffix = "_flipped" if flipped_files else ""
    section = {"poni": str(folder / poni), "poni_convention": convention, "unit": "2th_deg", "npt": 400,
               "mask": str(folder / "user.mask"), "dark": str(folder / f"dark{suffix}.edf"),
               "flat": str(folder / f"flat{suffix}.edf"), **changes}
    return IntegrationSettings.from_config(section)


def _assert_same_pattern(new, old, exact: bool, what: str) -> None:
    for name in ("radial", "intensity", "sigma", "cake", "chi_deg", "spot_pixels", "spot_blobs"):
        a, b = getattr(new, name), getattr(old, name)
        if b is None:
            assert a is None, f"{what}: {name}"
        elif exact:
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: {name}")
        else:
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=0, equal_nan=True, err_msg=f"{what}: {name}")


@pytest.mark.parametrize("name", list(SETTINGS))
def test_legacy_patterns_equal_the_flip_of_every_frame(legacy_run, name):
    folder, frames = legacy_run
    changes, expected_method = SETTINGS[name]
    legacy = FrameIntegrator(_settings(folder, "legacy.poni", "dioptas-legacy", False, **changes))
    reference = FrameIntegrator(_settings(folder, "reference.poni", "pyfai", True, **changes))
    assert pixel_order_matters(legacy.settings) == (expected_method == "flip")
    assert legacy.geometry.flips_images == (expected_method == "flip")
    orientation = int(legacy.geometry.integrator.detector.orientation)
    assert orientation == (3 if expected_method == "flip" else 2)
    # What pyFAI masks in every frame is the same pixels, each in its frame.
    flip = np.flipud if expected_method == "orientation" else (lambda a: a)
    np.testing.assert_array_equal(flip(legacy.static_mask), reference.static_mask)
    for i, raw in enumerate(frames):
        new = legacy.integrate(raw, normalization_factor=1.5)
        old = reference.integrate(np.flipud(raw), normalization_factor=1.5)
        assert np.isfinite(new.intensity).sum() > 300
        if legacy.settings.rejection == "spots":  # the two anvil spots found, the same pixels either way up
            assert new.spot_blobs == 2 and new.spot_pixels > 20
        _assert_same_pattern(new, old, exact=expected_method == "flip", what=f"{name}, frame {i}")


def test_legacy_patterns_are_the_sharp_ones(legacy_run):
    # The comparison above is between patterns worth having: read the right
    # way up, the rings are sharp; read as a plain pyFAI file, they smear.
    folder, frames = legacy_run
    changes = {"rejection": {"method": "none"}}
    legacy = FrameIntegrator(_settings(folder, "legacy.poni", "dioptas-legacy", False, **changes))
    plain = FrameIntegrator(_settings(folder, "legacy.poni", "pyfai", False, **changes))
    good, bad = legacy.integrate(frames[0]), plain.integrate(frames[0])
    heights = []
    for ring in RINGS_DEG:
        window = np.abs(good.radial - ring) < 0.5
        assert good.radial[window][np.nanargmax(good.intensity[window])] == pytest.approx(ring, abs=0.05)
        heights.append((np.nanmax(good.intensity[window]), np.nanmax(bad.intensity[window])))
    good_sum, bad_sum = np.sum(heights, axis=0)
    assert good_sum > 2 * bad_sum  # measured 3.4x


# --- the real CeO2 Pilatus image ----------------------------------------------------------

@pytest.fixture(scope="module")
def ceo2(real_data):
    folder = real_data / "dioptas"
    image = read_image(folder / "CeO2_Pilatus1M.tif", expected_shape=(1043, 981))
    return folder / "CeO2_Pilatus1M.poni", image


@pytest.mark.realdata
@pytest.mark.slow  # 1M pixels: ~1 s per sparse matrix
@pytest.mark.parametrize("name", ["none-bbox", "spots", "sigma-clip"])
def test_real_ceo2_legacy_equals_the_flip(ceo2, name):
    poni, image = ceo2
    changes, expected_method = SETTINGS[name]
    changes = {k: v for k, v in changes.items() if k != "cake"}

    def settings(convention):
        return IntegrationSettings.from_config({"poni": str(poni), "poni_convention": convention,
                                                "unit": "2th_deg", "npt": 3000, **changes})

    legacy = FrameIntegrator(settings("dioptas-legacy"), shape=image.shape)
    reference = FrameIntegrator(settings("pyfai"), shape=image.shape)
    assert legacy.geometry.flips_images == (expected_method == "flip")
    new, old = legacy.integrate(image), reference.integrate(np.flipud(image))
    _assert_same_pattern(new, old, exact=expected_method == "flip", what=name)
    # ... and that is the sharp pattern: the strongest CeO2 line is ~7x
    # higher than when the PONI file is taken the wrong way up.
    smeared = reference.integrate(image)
    assert np.nanmax(new.intensity) > 3 * np.nanmax(smeared.intensity)


@pytest.mark.realdata
@pytest.mark.slow
def test_real_ceo2_sigma_clip_depends_on_pixel_order(ceo2):
    # Why sigma clipping keeps the flip: pyFAI's cython CSR engine computes a
    # bin's azimuthal variance in one pass that depends on the order of its
    # pixels, which orientation 2 reverses row by row (pyFAI 2026.9: 3.2 % in
    # a 7-pixel bin; the clip then keeps another pixel in 6 of 3000 bins, up
    # to 1.1 %). If this fails, pyFAI no longer depends on the order and
    # pixel_order_matters() can stop sending sigma clipping to the flip.
    poni, image = ceo2
    kwargs = dict(npt=3000, unit="2th_deg", method=("no", "csr", "cython"), polarization_factor=0.99,
                  correctSolidAngle=True, error_model="azimuthal", thres=4, max_iter=5, mask=None)
    oriented = load_geometry(poni, convention="dioptas-legacy", shape=image.shape)
    flipping = load_geometry(poni, convention="dioptas-legacy", shape=image.shape, legacy_method="flip")
    a = oriented.integrator.sigma_clip_ng(oriented.orient(image), dummy=-1e6, delta_dummy=1e6 - 0.5, **kwargs)
    b = flipping.integrator.sigma_clip_ng(flipping.orient(image), dummy=-1e6, delta_dummy=1e6 - 0.5, **kwargs)
    np.testing.assert_array_equal(a.radial, b.radial)
    differ = np.flatnonzero(a.intensity != b.intensity)
    assert 0 < differ.size < 30  # a few bins, each by one pixel kept or clipped
    relative = np.abs(a.intensity[differ] - b.intensity[differ]) / np.abs(b.intensity[differ])
    assert relative.max() < 0.05
