"""Tests of dacpipe.io.poni: PONI versions, overrides, refusals, conventions."""

from __future__ import annotations

import io
import math

import numpy as np
import pyFAI
import pyFAI.detectors
import pytest
from pyFAI.integrator.azimuthal import AzimuthalIntegrator
from pyFAI.io.ponifile import PoniFile
from scipy.optimize import curve_fit

from dacpipe.core.errors import InputError
from dacpipe.io.poni import CONVENTIONS, Geometry, load_geometry
from dacpipe.io.images import read_image

PARAMS = dict(dist=0.2, poni1=0.08, poni2=0.07, rot1=0.01, rot2=-0.005, rot3=1e-4)
WAVELENGTH_M = 4.0e-11

# Written by hand the way old Dioptas wrote them: version 1, pixel sizes only.
V1_PIXELS_ONLY = """\
# Nota: C-Order, 1 refers to the Y axis, 2 to the X axis
# Calibration done at Fri Feb 27 13:52:42 2015
PixelSize1: 0.0001
PixelSize2: 0.0001
Distance: 0.1
Poni1: 0.0035
Poni2: 0.0095
Rot1: 0.0
Rot2: 0.0
Rot3: 0.0
SplineFile: None
Wavelength: 4e-11
"""


def _write_poni(path, version, detector=None, **params):
    """A PONI file written by pyFAI itself, in the given format version."""
    detector = detector or pyFAI.detectors.detector_factory("Pilatus1M")
    ai = AzimuthalIntegrator(detector=detector, wavelength=WAVELENGTH_M, **{**PARAMS, **params})
    poni = PoniFile(ai)
    poni.API_VERSION = version  # PoniFile.write() honours it: no config in 1, no orientation in 2
    buffer = io.StringIO()
    poni.write(buffer)
    path.write_text(buffer.getvalue())
    return path


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


# --- versions ---------------------------------------------------------------------

@pytest.mark.parametrize("version", [1, 2, 2.1, 3])
def test_every_poni_version_pyfai_writes(tmp_path, version):
    path = _write_poni(tmp_path / f"v{version}.poni", version)
    assert f"poni_version: {version}" in path.read_text()
    geometry = load_geometry(path)
    ai = geometry.integrator
    for name, value in PARAMS.items():
        assert getattr(ai, name) == pytest.approx(value), name
    assert geometry.wavelength_A == pytest.approx(0.4)
    assert ai.wavelength == pytest.approx(WAVELENGTH_M)
    assert type(ai.detector).__name__ == "Pilatus1M"
    assert geometry.detector_shape == (1043, 981)
    assert geometry.convention == "pyfai" and geometry.source == str(path)


def test_version_3_parallax_flag_is_kept(tmp_path):
    path = _write_poni(tmp_path / "v3.poni", 3)
    assert "Parallax: False" in path.read_text()
    assert load_geometry(path).integrator.parallax is None

    ai = AzimuthalIntegrator(detector=pyFAI.detectors.detector_factory("Pilatus1M"),
                             wavelength=WAVELENGTH_M, **PARAMS)
    ai.enable_parallax(sensor_material="Si", sensor_thickness=450e-6)
    buffer = io.StringIO()
    PoniFile(ai).write(buffer)
    with_parallax = tmp_path / "parallax.poni"
    with_parallax.write_text(buffer.getvalue())
    assert "Parallax: True" in buffer.getvalue() and '"sensor"' in buffer.getvalue()
    assert load_geometry(with_parallax).integrator.parallax is not None


def test_version_1_with_pixel_sizes_only(tmp_path):
    path = tmp_path / "old.poni"
    path.write_text(V1_PIXELS_ONLY)
    geometry = load_geometry(path)
    det = geometry.integrator.detector
    assert (det.pixel1, det.pixel2) == (1e-4, 1e-4)
    assert geometry.detector_shape is None  # must come from the images
    shaped = load_geometry(path, shape=(70, 190))
    assert shaped.detector_shape == (70, 190)
    assert shaped.integrator.detector.shape == (70, 190)
    assert shaped.integrator.detector.max_shape == (70, 190)
    result = shaped.integrator.integrate1d(np.ones((70, 190), np.float32), 50, unit="2th_deg")
    assert np.isfinite(result.intensity).any()


def test_concatenated_version_1_blocks_last_wins(tmp_path):
    first = V1_PIXELS_ONLY
    second = V1_PIXELS_ONLY.replace("Distance: 0.1", "Distance: 0.125").replace("Poni1: 0.0035", "Poni1: 0.004")
    path = tmp_path / "twice.poni"
    path.write_text(first + second)
    geometry = load_geometry(path)
    assert geometry.integrator.dist == 0.125 and geometry.integrator.poni1 == 0.004
    assert pyFAI.load(str(path)).dist == geometry.integrator.dist  # what pyFAI itself does


def test_wavelength_override(tmp_path):
    path = _write_poni(tmp_path / "g.poni", 2.1)
    geometry = load_geometry(path, wavelength_A=0.3344)
    assert geometry.wavelength_A == pytest.approx(0.3344)
    assert geometry.integrator.wavelength == pytest.approx(0.3344e-10)


def test_catalogue_detector_and_pixel_size_for_a_version_1_file(tmp_path):
    path = tmp_path / "old.poni"
    path.write_text(V1_PIXELS_ONLY.replace("0.0001\n", "0.000172\n"))
    geometry = load_geometry(path, detector="Pilatus1M")
    assert type(geometry.integrator.detector).__name__ == "Pilatus1M"
    assert geometry.detector_shape == (1043, 981)
    assert geometry.integrator.detector.mask is not None  # module gaps come with it

    no_pixels = tmp_path / "no_pixels.poni"
    no_pixels.write_text("\n".join(line for line in V1_PIXELS_ONLY.splitlines() if "PixelSize" not in line))
    with pytest.raises(InputError, match="no pixel size"):
        load_geometry(no_pixels)
    det = load_geometry(no_pixels, pixel_size_um=(75, 80)).integrator.detector
    assert (det.pixel1, det.pixel2) == pytest.approx((75e-6, 80e-6))


# --- refusals ----------------------------------------------------------------------

@pytest.mark.parametrize("key", ["Distance", "Poni1", "Rot3"])
def test_missing_key(tmp_path, key):
    path = tmp_path / "g.poni"
    path.write_text("\n".join(line for line in V1_PIXELS_ONLY.splitlines() if not line.startswith(key)))
    with pytest.raises(InputError, match=f"PONI file has no '{key}' key") as info:
        load_geometry(path)
    assert str(info.value) == f"{path}: PONI file has no '{key}' key"


def test_missing_detector_line_in_version_2(tmp_path):
    path = _write_poni(tmp_path / "g.poni", 2)
    _edit(path, "Detector: Pilatus1M\n", "")
    with pytest.raises(InputError, match="PONI file has no 'Detector' key"):
        load_geometry(path)


def test_no_wavelength(tmp_path):
    path = tmp_path / "g.poni"
    path.write_text(V1_PIXELS_ONLY.replace("Wavelength: 4e-11\n", ""))
    with pytest.raises(InputError, match="no 'Wavelength' key and no wavelength_A"):
        load_geometry(path)
    assert load_geometry(path, wavelength_A=0.4).wavelength_A == pytest.approx(0.4)


def test_wavelength_in_the_wrong_unit(tmp_path):
    path = tmp_path / "g.poni"
    path.write_text(V1_PIXELS_ONLY.replace("Wavelength: 4e-11", "Wavelength: 0.4"))
    with pytest.raises(InputError, match="not a plausible X-ray wavelength .PONI files give metres"):
        load_geometry(path)
    with pytest.raises(InputError, match="wavelength_A -1 A is not a plausible"):
        load_geometry(_write_poni(tmp_path / "ok.poni", 2), wavelength_A=-1)


@pytest.mark.parametrize("content, words", [
    (b"", "empty file"),
    (b"\x00\x01\x02\xff\xfe" * 50, "not a PONI file"),
    ("Distance: 0.1\nPoni1: abc\n".encode(), "not a number"),
    ("Distance: -0.1\nPoni1: 0\nPoni2: 0\nRot1: 0\nRot2: 0\nRot3: 0\nPixelSize1: 1e-4\nPixelSize2: 1e-4\n".encode(),
     "must be positive"),
])
def test_unreadable_poni(tmp_path, content, words):
    path = tmp_path / "g.poni"
    path.write_bytes(content)
    with pytest.raises(InputError, match=words) as info:
        load_geometry(path)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_geometry(tmp_path / "nope.poni")


def test_bad_detector_config_json(tmp_path):
    # pyFAI only logs this and builds a detector without pixel size
    path = _edit(_write_poni(tmp_path / "g.poni", 2), '{"pixel1"', "{pixel1")
    with pytest.raises(InputError, match="Detector_config is not valid JSON"):
        load_geometry(path)


def test_too_recent_version(tmp_path):
    path = _edit(_write_poni(tmp_path / "g.poni", 3), "poni_version: 3", "poni_version: 4")
    with pytest.raises(InputError, match="too recent"):
        load_geometry(path)


def test_detector_disagreements(tmp_path):
    path = _write_poni(tmp_path / "g.poni", 2.1)
    with pytest.raises(InputError, match="unknown detector 'NoSuchDetector'"):
        load_geometry(path, detector="NoSuchDetector")
    with pytest.raises(InputError, match="PONI file is for detector Pilatus1M, not Eiger4M"):
        load_geometry(path, detector="Eiger4M")
    with pytest.raises(InputError, match="PONI pixel size 172x172 um differs from pixel_size_um 75x75 um"):
        load_geometry(path, pixel_size_um=75)
    with pytest.raises(InputError, match="image is 981x1043 but the detector is 1043x981"):
        load_geometry(path, shape=(981, 1043))
    old = tmp_path / "old.poni"
    old.write_text(V1_PIXELS_ONLY)
    with pytest.raises(InputError, match="differs from detector Pilatus1M's 172x172 um"):
        load_geometry(old, detector="Pilatus1M")


def test_unknown_convention(tmp_path):
    with pytest.raises(InputError, match="unknown PONI convention 'dioptas'"):
        load_geometry(_write_poni(tmp_path / "g.poni", 2), convention="dioptas")


# --- conventions -----------------------------------------------------------------------

def test_orient(tmp_path):
    path = _write_poni(tmp_path / "g.poni", 2.1)
    image = np.arange(1043 * 981, dtype=np.float32).reshape(1043, 981)
    plain = load_geometry(path)
    assert plain.orient(image) is image and plain.orient_user_mask(image) is image
    # Orientation 2 (the default): pyFAI takes the raw frame, only a mask
    # drawn on Dioptas' flipped image is flipped back.
    legacy = load_geometry(path, convention="dioptas-legacy")
    assert not legacy.flips_images and int(legacy.integrator.detector.orientation) == 2
    assert legacy.orient(image) is image
    drawn = legacy.orient_user_mask(image)
    np.testing.assert_array_equal(drawn, image[::-1])
    assert drawn.flags.c_contiguous
    # Flipping the images instead: every image is flipped, the drawn mask is already in their frame.
    flipping = load_geometry(path, convention="dioptas-legacy", legacy_method="flip")
    assert flipping.flips_images and int(flipping.integrator.detector.orientation) == 3
    flipped = flipping.orient(image)
    np.testing.assert_array_equal(flipped, image[::-1])
    assert flipped.flags.c_contiguous
    assert flipping.orient_user_mask(image) is image
    for geometry in (legacy, flipping):
        with pytest.raises(InputError, match="image is 981x1043 but the detector is 1043x981"):
            geometry.orient(image.T)
        with pytest.raises(InputError, match="mask is 981x1043 but the detector is 1043x981"):
            geometry.orient_user_mask(image.T)
        with pytest.raises(InputError, match="not 2D"):
            geometry.orient(image[0])
    assert set(CONVENTIONS) == {"pyfai", "dioptas-legacy"}
    assert isinstance(legacy, Geometry)
    with pytest.raises(InputError, match="unknown legacy_method 'flipud'"):
        load_geometry(path, convention="dioptas-legacy", legacy_method="flipud")


def test_legacy_detector_mask(tmp_path):
    # The detector's gap mask is in the raw frame: it stays there with
    # orientation 2, and is flipped with the images otherwise. (The catalogue
    # Pilatus gaps are symmetric top to bottom: an uneven mask shows it.)
    path = _write_poni(tmp_path / "g.poni", 2.1)
    detector = pyFAI.detectors.detector_factory("Pilatus1M")
    raw_mask = detector.mask.copy()
    raw_mask[:5] = 1
    detector.mask = raw_mask
    legacy = load_geometry(path, convention="dioptas-legacy", detector=detector)
    np.testing.assert_array_equal(legacy.integrator.detector.mask, raw_mask)
    assert type(legacy.integrator.detector).__name__ == "Pilatus1M"
    flipping = load_geometry(path, convention="dioptas-legacy", detector=detector, legacy_method="flip")
    np.testing.assert_array_equal(flipping.integrator.detector.mask, np.flipud(raw_mask))
    np.testing.assert_array_equal(detector.mask, raw_mask)  # the caller's detector is left alone


def test_legacy_orientation_needs_a_shape(tmp_path):
    # pyFAI numbers orientation-2 rows from the detector shape and, without
    # one, silently does not flip them on the first image.
    path = tmp_path / "old.poni"
    path.write_text(V1_PIXELS_ONLY)
    with pytest.raises(InputError, match="no detector shape, which 'dioptas-legacy' needs"):
        load_geometry(path, convention="dioptas-legacy")
    assert load_geometry(path, convention="dioptas-legacy", legacy_method="flip").detector_shape is None
    calls = []

    def first_frame_shape():
        calls.append(1)
        return (70, 190)

    shaped = load_geometry(path, convention="dioptas-legacy", shape=first_frame_shape)
    assert shaped.detector_shape == (70, 190) and calls == [1]
    assert int(shaped.integrator.detector.orientation) == 2
    # A file that gives the shape: the callable (an image read) is not called.
    assert load_geometry(_write_poni(tmp_path / "g.poni", 2.1), shape=first_frame_shape).detector_shape == (1043, 981)
    assert calls == [1]


def test_legacy_flip_equals_pyfai_orientation_2(tmp_path):
    # Dioptas 0.7 converts its old PONI files by setting orientation 2. A
    # legacy file read either way must give every pixel the same 2theta and
    # chi as the converted file: directly with orientation 2, row-flipped
    # when the images are flipped.
    shape = (64, 48)
    det = pyFAI.detectors.Detector(pixel1=1e-4, pixel2=1e-4, max_shape=shape, orientation=2)
    v21 = _write_poni(tmp_path / "new.poni", 2.1, detector=det, dist=0.05, poni1=0.002, poni2=0.003)
    v1 = tmp_path / "old.poni"
    v1.write_text(V1_PIXELS_ONLY.replace("Distance: 0.1", "Distance: 0.05")
                  .replace("Poni1: 0.0035", "Poni1: 0.002").replace("Poni2: 0.0095", "Poni2: 0.003")
                  .replace("Rot1: 0.0", f"Rot1: {PARAMS['rot1']}").replace("Rot2: 0.0", f"Rot2: {PARAMS['rot2']}")
                  .replace("Rot3: 0.0", f"Rot3: {PARAMS['rot3']}"))
    new = load_geometry(v21)
    oriented = load_geometry(v1, convention="dioptas-legacy", shape=shape)
    flipping = load_geometry(v1, convention="dioptas-legacy", shape=shape, legacy_method="flip")
    with pytest.raises(InputError, match="orientation 2"):
        load_geometry(v21, convention="dioptas-legacy")
    for unit in ("2th_deg", "chi_deg"):
        a = new.integrator.center_array(shape, unit=unit)
        np.testing.assert_array_equal(oriented.integrator.center_array(shape, unit=unit), a, err_msg=unit)
        np.testing.assert_allclose(flipping.integrator.center_array(shape, unit=unit), np.flipud(a),
                                   atol=1e-9, err_msg=unit)


def test_legacy_flip_restores_a_sharp_ring(tmp_path):
    # A ring at 2theta = 7 deg drawn in the frame of a legacy PONI file; the
    # detector file holds it upside down. Read as dioptas-legacy, either way,
    # the ring integrates sharp at 7 deg; read as pyfai, it smears.
    path = tmp_path / "old.poni"
    path.write_text(V1_PIXELS_ONLY)
    shape = (200, 180)
    plain = load_geometry(path, shape=shape)
    tth = plain.integrator.center_array(shape, unit="2th_deg")  # the PONI file's frame
    ring = np.exp(-0.5 * ((tth - 7.0) / 0.1) ** 2).astype(np.float32)
    raw = np.flipud(ring)  # what the detector file holds
    kwargs = dict(npt=400, unit="2th_deg", radial_range=(2, 10), method=("bbox", "csr", "cython"))
    bad = plain.integrator.integrate1d(plain.orient(raw), **kwargs)
    for method in ("orientation", "flip"):
        legacy = load_geometry(path, convention="dioptas-legacy", shape=shape, legacy_method=method)
        good = legacy.integrator.integrate1d(legacy.orient(raw), **kwargs)
        assert good.radial[np.argmax(good.intensity)] == pytest.approx(7.0, abs=0.03), method
        assert good.intensity.max() > 3 * bad.intensity.max(), method


# --- real data ------------------------------------------------------------------------

@pytest.mark.realdata
def test_real_poni_files(real_data):
    folder = real_data / "dioptas"
    ceo2 = load_geometry(folder / "CeO2_Pilatus1M.poni")
    assert ceo2.wavelength_A == pytest.approx(0.4066)
    assert ceo2.integrator.detector.pixel1 == pytest.approx(172e-6)
    assert ceo2.detector_shape is None
    assert load_geometry(folder / "CeO2_Pilatus1M.poni", detector="Pilatus1M").detector_shape == (1043, 981)

    lab6 = load_geometry(folder / "LaB6_40keV_MarCCD.poni")  # two blocks: the second wins
    assert lab6.integrator.dist == pytest.approx(0.196711580484)
    assert lab6.integrator.poni1 == pytest.approx(0.0813975852141)
    assert lab6.wavelength_A == pytest.approx(0.31)

    oriented = load_geometry(folder / "LaB6_40keV_MarCCD_new_with_orientation.poni", shape=(2048, 2048))
    assert int(oriented.integrator.detector.orientation) == 2
    assert oriented.integrator.dist == lab6.integrator.dist  # the same calibration, converted
    assert oriented.detector_shape == (2048, 2048)

    lambda_geometry = load_geometry(folder / "lambda" / "L2.poni", shape=(1833, 1556))
    assert lambda_geometry.wavelength_A == pytest.approx(0.4836)
    assert lambda_geometry.integrator.detector.pixel1 == pytest.approx(55e-6)


def _pseudo_voigt(x, height, centre, fwhm, eta, offset, slope):
    u = (x - centre) / fwhm
    shape = eta / (1 + 4 * u**2) + (1 - eta) * np.exp(-4 * math.log(2) * u**2)
    return height * shape + offset + slope * (x - centre)


CEO2_A = 5.4116  # angstrom, NIST SRM 674b
CEO2_HKL = [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1), (2, 2, 2), (4, 0, 0)]


def _ceo2_two_theta_deg(wavelength_A):
    d = [CEO2_A / math.sqrt(h * h + k * k + l * l) for h, k, l in CEO2_HKL]
    return [math.degrees(2 * math.asin(wavelength_A / (2 * di))) for di in d]


def _fit_centre(x, y, guess, half_window=0.15):
    sel = np.abs(x - guess) < half_window
    xs, ys = x[sel], y[sel]
    p0 = [ys.max() - ys.min(), xs[np.argmax(ys)], 0.06, 0.5, ys.min(), 0.0]
    bounds = ([0, xs[0], 0.005, 0, -np.inf, -np.inf], [np.inf, xs[-1], 0.5, 1, np.inf, np.inf])
    popt, _ = curve_fit(_pseudo_voigt, xs, ys, p0=p0, bounds=bounds)
    return popt[1]


@pytest.mark.slow  # ~1.1 s on the real CeO2 frame
@pytest.mark.realdata
def test_real_ceo2_needs_the_dioptas_legacy_flip(real_data):
    folder = real_data / "dioptas"
    image = read_image(str(folder / "CeO2_Pilatus1M.tif"), expected_shape=(1043, 981))
    poni = folder / "CeO2_Pilatus1M.poni"
    kwargs = dict(npt=3000, unit="2th_deg", method=("bbox", "csr", "cython"),
                  polarization_factor=0.99, correctSolidAngle=True)

    legacy = load_geometry(poni, convention="dioptas-legacy", shape=image.shape)
    # Pilatus gaps and dead pixels are -1/-2 in the raw frame: orient the mask with the image
    # (with pyFAI orientation 2, the default, both stay as read)
    good = legacy.integrator.integrate1d(legacy.orient(image), mask=legacy.orient(image < 0), **kwargs)
    expected = _ceo2_two_theta_deg(legacy.wavelength_A)
    fitted = [_fit_centre(good.radial, good.intensity, e) for e in expected]
    for hkl, e, f in zip(CEO2_HKL, expected, fitted):
        assert abs(f - e) < 0.01, f"CeO2 {hkl}: fitted {f:.4f} deg, expected {e:.4f} deg"

    plain = load_geometry(poni, convention="pyfai", shape=image.shape)
    smeared = plain.integrator.integrate1d(plain.orient(image), mask=image < 0, **kwargs)
    ratio = good.intensity.max() / smeared.intensity.max()
    assert ratio > 3, f"strongest peak only {ratio:.1f}x higher with the flip"
