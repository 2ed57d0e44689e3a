"""Calibration from a calibrant image, without a click (issue 12 item 2).

Truth: synthetic calibrant images of known geometry (tilted detector, beam
off the middle, one near the edge), and the real CeO2 Pilatus image of
the Dioptas test suite against the PONI file Dioptas refined on it.
Tolerances are the issue's: distance within 0.1 %, beam centre within 0.5
pixel (measured: 5e-7 to 5e-5 and 0.01 px on the synthetic images, 1.3e-4
and 0.15 px on the real one).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dacpipe.cli.commands import main
from dacpipe.core.errors import ConfigError, InputError
from dacpipe.core.profiles import pseudo_voigt_area
from dacpipe.integration.calibrate import (
    beam_center,
    calibrate,
    detector_for_image,
    guess_beam_center,
    guess_distance,
    load_calibrant,
)
from dacpipe.io.config import validate_config
from dacpipe.io.poni import load_geometry
from dacpipe.run.config import run_config
from dacpipe.synth.detector import DetectorGeometry
from dacpipe.synth.xrd import frame_from_pattern

ROOT = Path(__file__).resolve().parents[1]
DIOPTAS = ROOT.parent / "shared" / "real-data" / "dioptas"
CEO2_IMAGE = DIOPTAS / "CeO2_Pilatus1M.tif"
CEO2_PONI = DIOPTAS / "CeO2_Pilatus1M.poni"
CEO2_WAVELENGTH_A = 0.4066  # the shared README and the PONI file

# Tilted detectors (0.85 and 1.45 deg), the beam off the middle; in the
# second one 118 px from the top edge, with the beamstop arm across the image.
CEO2_GEOMETRY = DetectorGeometry(shape=(400, 480), pixel_m=172e-6, distance_m=0.1503, poni1_m=0.0352,
                                 poni2_m=0.0468, rot1_rad=0.012, rot2_rad=-0.009, rot3_rad=0.0,
                                 wavelength_A=0.4066)
LAB6_GEOMETRY = DetectorGeometry(shape=(400, 400), pixel_m=172e-6, distance_m=0.2107, poni1_m=0.0172,
                                 poni2_m=0.0498, rot1_rad=-0.02, rot2_rad=0.015, rot3_rad=0.0,
                                 wavelength_A=0.3344)


def calibrant_image(name: str, geometry: DetectorGeometry, seed: int = 1) -> np.ndarray:
    """A calibrant's powder rings on the synthetic detector (dacpipe.synth: solid
    angle, polarization, beamstop shadow, Poisson noise, module gap at -1).

    Lines of 0.08 deg FWHM (pseudo-Voigt, eta 0.3), heights varying from line
    to line as a calibrant's do, over a smooth background.
    """
    lines_deg = np.degrees([t for t in load_calibrant(name, geometry.wavelength_A).get_2th() if t is not None])
    fwhm = 0.08

    def pattern(two_theta_deg):
        y = 40.0 + 30.0 * np.exp(-two_theta_deg / 10.0)
        for j, center in enumerate(lines_deg):
            height = 400.0 / (1.0 + 0.1 * j) * (0.5 + 0.5 * ((7 * j) % 5) / 4.0)
            y = y + height * fwhm * pseudo_voigt_area(two_theta_deg, center, fwhm, 0.3)
        return y

    return frame_from_pattern(pattern, np.random.default_rng(seed), geometry).astype(np.float64)


@pytest.fixture(scope="module")
def ceo2_image():
    return calibrant_image("CeO2", CEO2_GEOMETRY)


# ---------------------------------------------------------------- first guess (fast)


def test_beam_centre_from_point_symmetry(ceo2_image):
    valid = ceo2_image >= 0
    row, col = guess_beam_center(np.where(valid, ceo2_image, 0.0), valid)
    truth = CEO2_GEOMETRY.beam_center_px()
    # The ellipses' centre, not the beam: within ~tilt x radius of it.
    assert abs(row - truth[0]) < 1.5 and abs(col - truth[1]) < 1.5


def test_distance_guess_is_not_fooled_by_half_the_distance():
    """hkl -> 2h 2k 2l: a cubic calibrant's rings at D are also rings at about
    D/2; the guess must keep the distance that predicts no absent ring."""
    calibrant = load_calibrant("CeO2", 0.4066)
    two_theta = np.array([t for t in calibrant.get_2th() if t is not None])
    pixel_m, distance_m = 172e-6, 0.2
    radii = distance_m * np.tan(two_theta) / pixel_m
    radii = radii[(radii > 50) & (radii < 500)]
    radii = radii[np.r_[True, np.diff(radii) > 4]]  # rings closer than the peak finder separates are one
    found, lines = guess_distance(radii, np.full(radii.size, 50.0), two_theta, pixel_m, (50.0, 500.0))
    assert found == pytest.approx(distance_m, rel=1e-9)
    assert lines[0] == 0


def test_distance_guess_needs_two_rings():
    with pytest.raises(InputError, match="need at least 2"):
        guess_distance(np.array([100.0]), np.array([20.0]), np.radians([5.0, 8.0]), 172e-6, (0.0, 500.0))


def test_flat_noise_is_refused():
    noise = np.random.default_rng(0).poisson(100.0, (200, 200)).astype(float)
    with pytest.raises(InputError):
        calibrate(noise, load_calibrant("CeO2", 0.4066), detector_for_image(noise.shape, pixel_size_um=172))


# ---------------------------------------------------------------- inputs (fast)


def test_unknown_calibrant_and_wavelength_in_metres():
    with pytest.raises(InputError, match="did you mean 'CeO2'"):
        load_calibrant("CeO3", 0.4066)
    with pytest.raises(InputError, match="not a plausible X-ray wavelength"):
        load_calibrant("CeO2", 4.066e-11)


def test_detector_from_shape_and_header():
    pilatus = detector_for_image((1043, 981), "Pilatus1M")
    assert type(pilatus).__name__ == "Pilatus1M"
    # Pilatus1M and PilatusCdTe1M share shape and pixel: no name is guessed
    generic = detector_for_image((1043, 981))
    assert type(generic).__name__ == "Detector" and generic.pixel1 == pytest.approx(172e-6)
    assert tuple(generic.max_shape) == (1043, 981)
    with pytest.raises(InputError, match="Pilatus1M is 1043x981, the image 400x400"):
        detector_for_image((400, 400), "Pilatus1M")
    with pytest.raises(InputError, match="cannot tell the detector"):
        detector_for_image((123, 457))
    assert detector_for_image((123, 457), header_pixel_m=75e-6).pixel2 == pytest.approx(75e-6)
    with pytest.raises(InputError, match="differs from detector Pilatus1M"):
        detector_for_image((1043, 981), "Pilatus1M", pixel_size_um=75)


# ---------------------------------------------------------------- synthetic truth (slow)


def _check_against(calibration, geometry: DetectorGeometry):
    assert calibration.distance_m == pytest.approx(geometry.distance_m, rel=1e-3)
    truth = geometry.beam_center_px()
    assert abs(calibration.beam_center_px[0] - truth[0]) < 0.5
    assert abs(calibration.beam_center_px[1] - truth[1]) < 0.5
    # Tilts: measured within 4e-4 rad of the truth on both images.
    assert calibration.integrator.rot1 == pytest.approx(geometry.rot1_rad, abs=1e-3)
    assert calibration.integrator.rot2 == pytest.approx(geometry.rot2_rad, abs=1e-3)
    assert calibration.rings[0].index == 0 and len(calibration.rings) >= 5
    assert calibration.rms_px < 0.2


@pytest.mark.slow
def test_synthetic_ceo2_tilted_off_centre(ceo2_image):
    calibration = calibrate(ceo2_image, load_calibrant("CeO2", CEO2_GEOMETRY.wavelength_A),
                            detector_for_image(ceo2_image.shape, pixel_size_um=172), calibrant_name="CeO2")
    _check_against(calibration, CEO2_GEOMETRY)


@pytest.mark.slow
def test_synthetic_lab6_beam_near_the_edge(tmp_path):
    """The beam 118 px from the edge and the beamstop arm across the image
    (whose edges are point-symmetric about its own middle): through the CLI,
    the PONI it writes read back by dacpipe.io.poni."""
    import fabio.edfimage

    image = calibrant_image("LaB6", LAB6_GEOMETRY)
    edf = tmp_path / "lab6.edf"
    fabio.edfimage.EdfImage(data=image.astype(np.float32)).write(str(edf))
    out = tmp_path / "lab6.poni"
    assert main(["calibrate", str(edf), "--calibrant", "LaB6", "--wavelength", "0.3344", "--pixel-size", "172",
                 "-o", str(out)]) == 0
    geometry = load_geometry(out)
    assert geometry.wavelength_A == pytest.approx(0.3344)
    assert geometry.integrator.dist == pytest.approx(LAB6_GEOMETRY.distance_m, rel=1e-3)
    truth = LAB6_GEOMETRY.beam_center_px()
    centre = beam_center(geometry.integrator)
    assert abs(centre[0] - truth[0]) < 0.5 and abs(centre[1] - truth[1]) < 0.5
    assert "# rings_used: 1 2 3" in out.read_text()


@pytest.mark.slow
def test_same_image_same_geometry_and_the_random_state_left_alone():
    """pyFAI's peak picker draws from numpy's global random state: the
    calibration seeds it (two runs, one PONI) and puts the caller's back."""
    from dacpipe.synth.xrd import XRD_GEOMETRY

    image = calibrant_image("CeO2", XRD_GEOMETRY)
    np.random.seed(7)
    expected = np.random.random()
    results = []
    for seed in (7, 8):  # the caller's state must not matter either
        np.random.seed(seed)
        calibration = calibrate(image, load_calibrant("CeO2", XRD_GEOMETRY.wavelength_A),
                                detector_for_image(image.shape, pixel_size_um=172))
        if seed == 7:
            assert np.random.random() == expected
        ai = calibration.integrator
        results.append((ai.dist, ai.poni1, ai.poni2, ai.rot1, ai.rot2, calibration.n_points))
    assert results[0] == results[1]
    assert results[0][0] == pytest.approx(XRD_GEOMETRY.distance_m, rel=1e-3)


@pytest.mark.slow
def test_wrong_calibrant_is_refused_not_fitted(ceo2_image):
    """LaB6 rings looked for on a CeO2 image: the refinement finds a geometry
    (0.68 px rms, a 232 mm 'distance' for 150 mm), which must not pass."""
    with pytest.raises(InputError, match="the rings do not fit LaB6"):
        calibrate(ceo2_image, load_calibrant("LaB6", 0.4066), detector_for_image(ceo2_image.shape, pixel_size_um=172),
                  calibrant_name="LaB6")


# ---------------------------------------------------------------- the real CeO2 image (slow)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_ceo2_pilatus_against_dioptas_poni(tmp_path, capsys):
    if not (CEO2_IMAGE.exists() and CEO2_PONI.exists()):
        pytest.skip(f"real data not found: {CEO2_IMAGE}")
    out = tmp_path / "ceo2.poni"
    assert main(["calibrate", str(CEO2_IMAGE), "--calibrant", "CeO2", "--wavelength", str(CEO2_WAVELENGTH_A),
                 "--detector", "Pilatus1M", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "residual rms" in printed and "ring   d (A)" in printed and f"wrote {out}" in printed
    mine = load_geometry(out)
    # Dioptas < 0.7 wrote it for the image flipped upside down.
    theirs = load_geometry(CEO2_PONI, convention="dioptas-legacy", detector="Pilatus1M")
    assert mine.integrator.dist == pytest.approx(theirs.integrator.dist, rel=1e-3)
    c_mine, c_theirs = beam_center(mine.integrator), beam_center(theirs.integrator)
    assert abs(c_mine[0] - c_theirs[0]) < 0.5 and abs(c_mine[1] - c_theirs[1]) < 0.5
    # The same tilt (1.08 deg in Dioptas' file)
    tilt = math.degrees(math.acos(math.cos(mine.integrator.rot1) * math.cos(mine.integrator.rot2)))
    assert tilt == pytest.approx(1.083, abs=0.05)


# ---------------------------------------------------------------- config and workflow


def _config(xrd: dict) -> dict:
    return validate_config({"results_dir": "res", "runs": {"r": {"sheet": "s.tsv", "xrd": xrd}}})


def test_config_calibrant_image_instead_of_poni():
    xrd = {"calibrant_image": "ceo2.tif", "calibrant": "CeO2", "wavelength_A": 0.4066}
    run = run_config(_config(xrd), "r")
    assert run["xrd"]["poni"] == os.path.join("res", "r", "calibration.poni")
    # a job's --config-json holds the filled section: accepted again as it is
    again = json.loads(json.dumps({"results_dir": "res", "runs": {"r": run}}))
    assert run_config(validate_config(again), "r")["xrd"]["poni"] == run["xrd"]["poni"]


@pytest.mark.parametrize("xrd, message", [
    ({}, "runs.r.xrd: needs 'poni' or 'calibrant_image'"),
    ({"calibrant_image": "a.tif", "wavelength_A": 0.4}, "xrd.calibrant is required with calibrant_image"),
    ({"calibrant_image": "a.tif", "calibrant": "CeO2"}, "xrd.wavelength_A is required with calibrant_image"),
    ({"calibrant_image": "a.tif", "calibrant": "CeO2", "wavelength_A": 0.4, "poni": "x.poni"},
     "give poni or calibrant_image, not both"),
    ({"calibrant_image": "a.tif", "calibrant": "CeO2", "wavelength_A": 0.4, "poni_convention": "dioptas-legacy"},
     "convention 'pyfai'"),
])
def test_config_calibration_errors(xrd, message):
    with pytest.raises(ConfigError, match=message):
        run_config(_config(xrd), "r")


def test_cli_needs_image_calibrant_and_wavelength(capsys):
    assert main(["calibrate", "x.tif", "-o", "x.poni"]) == 2
    assert "needs --calibrant, --wavelength" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.workflow
def test_workflow_calibrates_before_integrating(tmp_path, ceo2_image):
    """Dry run: one calibrate job per run, whose PONI file the integration
    waits for; the job's command is the one test_calibrate_as_a_run_says runs."""
    import fabio.edfimage

    shutil.copy(ROOT / "Snakefile", tmp_path)
    for folder in ("workflow", "config"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    fabio.edfimage.EdfImage(data=ceo2_image.astype(np.float32)).write(str(tmp_path / "ceo2.edf"))
    (tmp_path / "frame.edf").write_bytes((tmp_path / "ceo2.edf").read_bytes())
    (tmp_path / "points.tsv").write_text("point\txrd\tpressure_GPa\np1\tframe.edf\t1.0\n")
    (tmp_path / "config" / "config.yaml").write_text(
        "runs:\n  cal:\n    sheet: points.tsv\n    pressure: {gauge: sheet}\n"
        "    xrd: {calibrant_image: ceo2.edf, calibrant: CeO2, wavelength_A: 0.4066, npt: 300}\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "results/cal/parts/xrd/chunk0000.h5",
                          "-n", "-p"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert text.count("rule calibrate:") == 1 and text.count("rule integrate:") == 1
    assert text.index("rule calibrate:") < text.index("rule integrate:")
    assert "calibrate --run cal --config-json" in text and "-o results/cal/calibration.poni" in text


@pytest.mark.slow
def test_calibrate_as_a_run_says(tmp_path, ceo2_image, capsys):
    """``dacpipe calibrate --run RUN --config-json`` (the workflow's job), and
    the run's integration settings then name the PONI file it wrote."""
    import fabio.edfimage

    from dacpipe.integration.integrator import IntegrationSettings

    fabio.edfimage.EdfImage(data=ceo2_image.astype(np.float32)).write(str(tmp_path / "ceo2.edf"))
    config = _config({"calibrant_image": str(tmp_path / "ceo2.edf"), "calibrant": "CeO2", "wavelength_A": 0.4066,
                      "calibrant_pixel_size_um": 172})
    config["results_dir"] = str(tmp_path / "results")
    run = run_config(config, "r")
    cfg = json.dumps({"results_dir": config["results_dir"], "runs": {"r": run}})
    assert main(["calibrate", "--run", "r", "--config-json", cfg]) == 0
    poni = tmp_path / "results" / "r" / "calibration.poni"
    assert f"wrote {poni}" in capsys.readouterr().out
    assert IntegrationSettings.from_config(run["xrd"]).poni == str(poni)
    assert load_geometry(poni).integrator.dist == pytest.approx(CEO2_GEOMETRY.distance_m, rel=1e-3)
