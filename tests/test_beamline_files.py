"""The files beamlines write: Eiger/NeXus master files with external links,
frame ranges summed, invalid pixels, Lambda multi-module images stitched as
Dioptas does, and the wavelength and distance frame headers record."""

from __future__ import annotations

import math
import os

import fabio.cbfimage
import h5py
import numpy as np
import pytest

from dacpipe.core.errors import InputError
from dacpipe.io.images import (BeamHeader, frame_count, invalid_value, lambda_module_files, read_frame_file,
                               read_header, read_image, stitch_lambda)
from dacpipe.io.poni import beam_distance_m, check_header, load_geometry, poni_wavelength_A

FRAME_SHAPE = (64, 48)
GAP_COLUMN = 20          # a module gap: every frame holds 0xFFFFFFFF there
FLAGGED_PIXEL = (5, 7)   # flagged in detectorSpecific/pixel_mask only


def write_eiger(folder, frames: np.ndarray, per_file: int = 3, *, wavelength_A=0.4133, distance_m=0.2,
                name: str = "scan"):
    """An Eiger master file as DECTRIS' file writer lays it out: the frames in
    ``<name>_data_000001.h5``, ... (``/entry/data/data``), linked from the
    master's ``/entry/data/data_000001``, ... by relative external links; beam
    and detector metadata and the pixel mask in the master."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, start in enumerate(range(0, len(frames), per_file), start=1):
        with h5py.File(folder / f"{name}_data_{k:06d}.h5", "w") as h5:
            h5.create_dataset("entry/data/data", data=frames[start:start + per_file], chunks=(1, *FRAME_SHAPE))
    master = folder / f"{name}_master.h5"
    with h5py.File(master, "w") as h5:
        entry = h5.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        for k in range(1, math.ceil(len(frames) / per_file) + 1):
            data[f"data_{k:06d}"] = h5py.ExternalLink(f"{name}_data_{k:06d}.h5", "/entry/data/data")
        beam = h5.create_dataset("entry/instrument/beam/incident_wavelength", data=wavelength_A)
        beam.attrs["units"] = "angstrom"
        dist = h5.create_dataset("entry/instrument/detector/detector_distance", data=distance_m)
        dist.attrs["units"] = "m"
        mask = np.zeros(FRAME_SHAPE, np.uint32)
        mask[FLAGGED_PIXEL] = 8  # NeXus bit 3: over-responding
        h5.create_dataset("entry/instrument/detector/detectorSpecific/pixel_mask", data=mask)
    return master


@pytest.fixture
def eiger(tmp_path):
    rng = np.random.default_rng(7)
    frames = rng.poisson(40.0, (7, *FRAME_SHAPE)).astype(np.uint32)
    frames[:, :, GAP_COLUMN] = 0xFFFFFFFF
    frames[2, 10, 11] = 0xFFFFFFFF  # dead in frame 2 only
    return write_eiger(tmp_path / "beamtime", frames), frames


def test_eiger_master_frames_across_linked_files_from_another_folder(eiger, tmp_path, monkeypatch):
    master, frames = eiger
    monkeypatch.chdir(tmp_path)  # links resolve beside the master, not in the working folder
    assert frame_count(master) == 7
    assert frame_count(f"{master}::/entry/data") == 7
    for index in (0, 4, 6):  # file 1, file 2 (its second frame), file 3
        image = read_image(f"{master}@{index}")
        expected = frames[index].astype(np.float32)
        good = np.ones(FRAME_SHAPE, bool)
        good[:, GAP_COLUMN] = False
        good[FLAGGED_PIXEL] = False
        np.testing.assert_array_equal(image[good], expected[good])
        assert np.isnan(image[~good]).all()
    # one linked data file named directly
    direct = read_image(f"{master}::/entry/data/data_000002@1")
    np.testing.assert_array_equal(np.isnan(direct), np.isnan(read_image(f"{master}@4")))


def test_eiger_invalid_value_and_pixel_mask_become_nan(eiger):
    master, _ = eiger
    assert invalid_value(np.uint32) == 0xFFFFFFFF and invalid_value(np.uint16) == 0xFFFF
    assert invalid_value(np.int32) is None and invalid_value(np.uint8) is None and invalid_value(np.float32) is None
    image = read_image(f"{master}@2")
    assert np.isnan(image[:, GAP_COLUMN]).all() and np.isnan(image[10, 11]) and np.isnan(image[FLAGGED_PIXEL])
    assert np.isnan(image).sum() == FRAME_SHAPE[0] + 2
    # 16-bit Eiger data: 0xFFFF
    path = master.parent / "u16.h5"
    data = np.full(FRAME_SHAPE, 3, np.uint16)
    data[0, 0] = 0xFFFF
    with h5py.File(path, "w") as h5:
        h5["img"] = data
    image = read_image(f"{path}::/img")
    assert np.isnan(image[0, 0]) and np.nansum(image) == 3 * (data.size - 1)


def test_frame_range_is_summed_and_invalid_anywhere_is_invalid(eiger):
    master, frames = eiger
    summed = read_image(f"{master}::/entry/data@1:6")  # frames 1..5, across files 1 and 2
    expected = frames[1:6].astype(np.float64).sum(axis=0)
    good = np.isfinite(summed)
    assert good.sum() == summed.size - FRAME_SHAPE[0] - 2  # gap column, pixel dead in frame 2, flagged pixel
    np.testing.assert_allclose(summed[good], expected[good], rtol=0, atol=0)
    mean = read_image(f"{master}@1:6", combine="mean")
    np.testing.assert_allclose(mean[good], expected[good] / 5, rtol=1e-6)
    with pytest.raises(InputError, match=r"has 7 frames, frames 5:9 asked for"):
        read_image(f"{master}@5:9")
    with pytest.raises(InputError, match="range 3:3 is empty"):
        read_image(f"{master}@3:3")


def test_frame_range_of_a_multiframe_edf(tmp_path):
    from fabio.edfimage import EdfImage

    frames = [np.full((20, 30), v, np.float32) for v in (1.0, 2.0, 4.0)]
    edf = EdfImage(data=frames[0])
    for frame in frames[1:]:
        edf.append_frame(data=frame)
    path = tmp_path / "stack.edf"
    edf.write(str(path))
    assert np.all(read_image(f"{path}@1:3") == 6.0)
    assert np.all(read_image(f"{path}@0:3", combine="mean") == pytest.approx(7.0 / 3))
    with pytest.raises(InputError, match="frames 2:4 asked for"):
        read_image(f"{path}@2:4")


def test_eiger_missing_data_file_named(eiger):
    master, _ = eiger
    (master.parent / "scan_data_000002.h5").unlink()
    with pytest.raises(InputError, match=r"scan_master\.h5: /entry/data/data_000002 links to data file "
                                         r"scan_data_000002\.h5, which cannot be opened"):
        read_image(f"{master}@4")


def test_eiger_header_and_its_check_against_the_poni(eiger, tmp_path):
    master, _ = eiger
    header = read_header(master)
    assert header.wavelength_A == pytest.approx(0.4133) and header.distance_m == pytest.approx(0.2)
    assert "incident_wavelength" in header.source
    # units other than the defaults
    path = tmp_path / "nm.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("entry/instrument/beam/incident_wavelength", data=0.04133).attrs["units"] = "nm"
        h5.create_dataset("entry/instrument/detector/detector_distance", data=200.0).attrs["units"] = "mm"
        h5["entry/data/img"] = np.ones(FRAME_SHAPE, np.int32)
    header = read_header(path)
    assert header.wavelength_A == pytest.approx(0.4133) and header.distance_m == pytest.approx(0.2)
    # an unset Eiger wavelength (0) is no wavelength
    with h5py.File(path, "a") as h5:
        h5["entry/instrument/beam/incident_wavelength"][()] = 0.0
    assert math.isnan(read_header(path).wavelength_A)


def write_pilatus_cbf(path, data, header_lines):
    img = fabio.cbfimage.CbfImage(data=np.ascontiguousarray(data, dtype=np.int32))
    img.header["_array_data.header_convention"] = '"PILATUS_1.2"'
    img.header["_array_data.header_contents"] = "\n" + "\n".join(header_lines) + "\n"
    img.write(str(path))


def test_pilatus_cbf_header_read_from_the_same_bytes(tmp_path):
    path = tmp_path / "frame_00001.cbf"
    write_pilatus_cbf(path, np.arange(200).reshape(10, 20),
                      ["# Detector: PILATUS 1M, S/N 10-0125", "# Pixel_size 172e-6 m x 172e-6 m",
                       "# Exposure_time 1.000000 s", "# Wavelength 0.4066 A", "# Detector_distance 0.20000 m"])
    content = read_frame_file(path)
    assert read_header(path, content) == BeamHeader(0.4066, 0.2, "CBF header")
    assert read_header(path) == BeamHeader(0.4066, 0.2, "CBF header")
    bare = tmp_path / "bare.cbf"
    write_pilatus_cbf(bare, np.ones((10, 20)), ["# Detector: PILATUS 1M"])
    header = read_header(bare)
    assert math.isnan(header.wavelength_A) and math.isnan(header.distance_m)


def test_check_header_tolerances(real_data):
    poni = real_data / "dioptas" / "CeO2_Pilatus1M.poni"
    geometry = load_geometry(poni, shape=(1043, 981))
    assert poni_wavelength_A(poni) == pytest.approx(0.4066)
    along_beam = beam_distance_m(geometry)
    # the header's distance is along the beam: longer than the PONI's by 1 / (cos rot1 cos rot2)
    rot1, rot2 = geometry.integrator.rot1, geometry.integrator.rot2
    assert along_beam == pytest.approx(geometry.integrator.dist / (math.cos(rot1) * math.cos(rot2)), rel=1e-9)
    assert check_header(geometry, 0.4066 * (1 + 0.5e-4), along_beam * 1.009) == []
    assert check_header(geometry, math.nan, math.nan) == []
    problems = check_header(geometry, 0.4066 * (1 + 2e-4), along_beam * 1.02)
    assert len(problems) == 2
    assert problems[0].startswith("header wavelength 0.406681 A differs from the geometry's 0.4066 A by 0.0002")
    assert "header detector distance" in problems[1] and "by 0.02" in problems[1]


# --- Lambda ------------------------------------------------------------------

LAMBDA = "testasapo1_1009_00002_{}_part00000.nxs"


@pytest.mark.slow  # pyFAI builds two integration engines for a 2.9 Mpixel image (~2 s)
@pytest.mark.realdata
def test_lambda_modules_stitched_as_dioptas_stitches_them(real_data):
    """The three modules placed at their translations and flipped: the pattern
    pyFAI integrates with Dioptas' L2.poni is the one Dioptas stored in the
    processed file (correlation 0.9998 measured; unflipped: -0.08)."""
    import pyFAI

    folder = real_data / "dioptas" / "lambda"
    files = lambda_module_files(folder / LAMBDA.format("m2"))
    assert [f.name for f in files] == [LAMBDA.format(m) for m in ("m1", "m2", "m3")]
    modules, positions = [], []
    for f in files:
        with h5py.File(f, "r") as h5:
            modules.append(h5["/entry/instrument/detector/data"][0].astype(float))
            positions.append(tuple(h5["/entry/instrument/detector/translation/distance"][:2]))
    stitched = stitch_lambda(modules, positions)
    assert stitched.shape == (1833, 1556)  # the shape of Dioptas' mask for these images
    # module 1 sits at the bottom after the flip, module 3 (y = 1317) at the top, shifted 2 columns left
    np.testing.assert_array_equal(stitched[-516:, 2:], modules[0][::-1])
    np.testing.assert_array_equal(stitched[:516, :1554], modules[2][::-1])
    assert np.isnan(stitched[:516, 1554:]).all()  # beside module 3
    assert np.isnan(stitched[1833 - 660:1833 - 516]).all()  # between modules 1 (y 0-516) and 2 (y 660-1176)
    with h5py.File(folder / "testasapo1_1009_00002_proc.nxs", "r") as h5:
        dioptas = h5["processed/result/data"][0]
        two_theta = h5["processed/result/binning"][()]
    ai = pyFAI.load(str(folder / "L2.poni"))
    ai.detector.max_shape = ai.detector.shape = stitched.shape
    half = 0.5 * (two_theta[1] - two_theta[0])
    # Dioptas integrated the gaps as zeros, unmasked: so do we here
    ours = ai.integrate1d(np.nan_to_num(stitched), len(two_theta), unit="2th_deg", method=("bbox", "csr", "cython"),
                          radial_range=(two_theta[0] - half, two_theta[-1] + half), polarization_factor=None)
    np.testing.assert_allclose(ours.radial, two_theta, atol=1e-5)
    assert np.corrcoef(ours.intensity, dioptas)[0, 1] > 0.999
    unflipped = ai.integrate1d(np.nan_to_num(stitched[::-1]), len(two_theta), unit="2th_deg",
                               method=("bbox", "csr", "cython"),
                               radial_range=(two_theta[0] - half, two_theta[-1] + half), polarization_factor=None)
    assert np.corrcoef(unflipped.intensity, dioptas)[0, 1] < 0.5


@pytest.mark.realdata
def test_lambda_read_image_stitches_masks_and_sums(real_data):
    folder = real_data / "dioptas" / "lambda"
    any_module = folder / LAMBDA.format("m3")
    assert frame_count(any_module) == 10
    image = read_image(f"{any_module}@0")
    assert image.shape == (1833, 1556)
    flagged = 0
    for f in lambda_module_files(any_module):
        with h5py.File(f, "r") as h5:
            flagged += int(np.count_nonzero(h5["/entry/instrument/detector/pixel_mask"][()]))
    gaps = 1833 * 1556 - 3 * 516 * 1554
    assert np.isnan(image).sum() == gaps + flagged  # gaps and the modules' NeXus pixel masks
    total = read_image(f"{any_module}@0:10")
    each = sum(read_image(f"{any_module}@{k}").astype(np.float64) for k in range(10))
    np.testing.assert_array_equal(np.isnan(total), np.isnan(each))
    np.testing.assert_allclose(total[np.isfinite(total)], each[np.isfinite(each)], rtol=0, atol=0)


# --- in the integration stage ---------------------------------------------------

def _stage_files(tmp_path):
    """A 120x100 detector at 0.2 m (PONI without a wavelength), two Pilatus CBF
    frames whose headers give 0.4066 A and 0.2 m (the second 0.25 m), and a
    four-frame HDF5 stack of the same flat frame."""
    poni = tmp_path / "nowave.poni"
    poni.write_text("poni_version: 2\nDetector: Detector\n"
                    'Detector_config: {"pixel1": 0.000172, "pixel2": 0.000172, "max_shape": [120, 100]}\n'
                    "Distance: 0.2\nPoni1: 0.01\nPoni2: 0.0086\nRot1: 0\nRot2: 0\nRot3: 0\n")
    frame = np.full((120, 100), 100, np.int32)
    for k, distance in ((0, "0.20000"), (1, "0.25000")):
        write_pilatus_cbf(tmp_path / f"f{k}.cbf", frame, ["# Detector: PILATUS", "# Wavelength 0.4066 A",
                                                          f"# Detector_distance {distance} m"])
    with h5py.File(tmp_path / "stack.h5", "w") as h5:
        h5["entry/data/data"] = np.repeat(frame[None].astype(np.uint32), 4, axis=0)
    (tmp_path / "points.tsv").write_text("point\txrd\na\tf0.cbf\nb\tf1.cbf\nc\tstack.h5::/entry/data/data@0:4\n"
                                         "d\tstack.h5::/entry/data/data@2\n")
    return poni


def _integrate(tmp_path, poni, **extra):
    from conftest import stage_context
    from dacpipe.integration.stage import run as integrate
    from dacpipe.io.config import validate_config
    from dacpipe.io.sheet import read_sheet

    section = {"poni": str(poni), "npt": 50, "rejection": {"method": "none"}, "polarization_factor": None, **extra}
    run = validate_config({"runs": {"r": {"sheet": str(tmp_path / "points.tsv"), "xrd": section}}})["runs"]["r"]
    warnings = []
    result = integrate(stage_context("xrd", read_sheet(tmp_path / "points.tsv"), run, warn=warnings.append))
    return result, warnings


def test_stage_takes_the_header_wavelength_and_checks_every_frame(tmp_path):
    poni = _stage_files(tmp_path)
    result, warnings = _integrate(tmp_path, poni)
    assert result.status == ["ok"] * 4
    assert result.attrs["wavelength_A"] == pytest.approx(0.4066)
    assert result.attrs["wavelength_source"] == f"header of {tmp_path / 'f0.cbf'}"
    notes = list(result.datasets["warnings"])
    assert notes[0] == "" and notes[2] == notes[3] == ""  # the HDF5 stack has no header: nothing to compare
    assert notes[1].startswith("header detector distance 250 mm differs from the PONI's 200 mm (along the beam) "
                               "by 0.25")
    assert any("f1.cbf: header detector distance" in w for w in warnings)
    # a config wavelength wins, and a header that disagrees with it is reported
    result, _ = _integrate(tmp_path, poni, wavelength_A=0.41)
    assert result.attrs["wavelength_source"] == "config"
    assert result.datasets["warnings"][0].startswith("header wavelength 0.4066 A differs from the geometry's 0.41 A")


def test_stage_frames_sum_or_mean(tmp_path):
    """Four equal frames: the sum's pattern is 4x one frame's with 2x its Poisson
    error; the mean's is one frame's with half its error (sqrt(4 N) / 4)."""
    poni = _stage_files(tmp_path)
    summed, _ = _integrate(tmp_path, poni, wavelength_A=0.4066)
    mean, _ = _integrate(tmp_path, poni, wavelength_A=0.4066, frames="mean")
    one_i, one_s = summed.datasets["I"][3], summed.datasets["I_errors"][3]
    good = np.isfinite(one_i)
    assert good.sum() > 30
    np.testing.assert_allclose(summed.datasets["I"][2][good], 4 * one_i[good], rtol=1e-5)
    np.testing.assert_allclose(summed.datasets["I_errors"][2][good], 2 * one_s[good], rtol=1e-5)
    np.testing.assert_allclose(mean.datasets["I"][2][good], one_i[good], rtol=1e-5)
    np.testing.assert_allclose(mean.datasets["I_errors"][2][good], one_s[good] / 2, rtol=1e-5)
    np.testing.assert_allclose(mean.datasets["I"][3][good], one_i[good], rtol=1e-6)  # one frame: unchanged
    assert mean.attrs["frames"] == "mean"
