"""Bad input at every stage, end to end: one line naming the file and the reason,
the point's status in the store saying the same, and every other point complete.

Several points are damaged in one run of data-sample's hgte_thz (a run takes
seconds): one run for images, one for spectra and the sheet. Problems of the
run as a whole (PONI, mask, repeated point, config) stop the run with one
line and write no store.

Ruby spectra that are empty, one-column, NaN, without a peak, saturated,
descending, binary or missing are covered by
``test_pipeline.py::test_bad_spectra_are_marked_and_others_complete`` and not
repeated here.
"""

import shutil
from pathlib import Path

import fabio
import fabio.cbfimage
import fabio.edfimage
import fabio.tifimage
import h5py
import numpy as np
import pytest

from dacpipe.cli import main
from dacpipe.run.store import read_points
from dacpipe.synth import read_truth
from conftest import ROOT, RUN, absolute_config, status_as_expected

BINARY = bytes(range(256)) * 20


def copy_run(folder: Path) -> Path:
    run = folder / RUN
    shutil.copytree(ROOT / "data-sample" / RUN, run)
    return run


def edit_sheet(run: Path, replacements: dict[str, str], name: str = "points.tsv") -> Path:
    text = (run / "points.tsv").read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = run / name
    path.write_text(text)
    return path


def run_pipeline(folder: Path, sheet: Path) -> tuple[int, list[str], dict]:
    """`dacpipe run` on the one run; its exit code, its log lines and the store's points."""
    log = folder / "run.log"
    code = main(["--log", str(log), "run", "--configfile", str(absolute_config(folder, folder / "results")),
                 "--runs", RUN, "--set", f"runs.{RUN}.sheet={sheet}"])
    store = folder / "results" / f"{RUN}.h5"
    return code, log.read_text().splitlines(), (read_points(store, RUN) if store.exists() else None)


def with_y(path: Path, y: str) -> bytes:
    """``path``'s x column (header dropped) with every y set to ``y``."""
    xs = [line.split("\t")[0] for line in path.read_text().splitlines()[1:]]
    return "\n".join(f"{x}\t{y}" for x in xs).encode()


def check_marked(run_result, point: str, file_name: str, reason: str) -> None:
    """(a) one log line for the point names the file and the reason; (b) its status says it."""
    _, lines, points = run_result
    status = dict(zip(points["point"], points["status"]))[point]
    assert file_name in status and reason in status, status
    mine = [line for line in lines if f"{RUN}/{point}:" in line and file_name in line]
    assert len(mine) == 1, mine
    assert reason in mine[0] and "\n" not in mine[0] and "Traceback" not in mine[0]


# --- images ------------------------------------------------------------------------

IMAGE_CASES = {
    # point: (file named in the message, reason)
    "p002": ("p002.tif", "truncated TIFF: fabio returned no data"),
    "p003": ("p003.edf", "truncated EDF: header says the data end at byte"),
    "p004": ("hgte_p004.cbf", "truncated or damaged CBF file"),
    "p005": ("stack.h5", "HDF5 dataset /data has 2 frames, frame 99 asked for"),
    "p006": ("p006.edf", "image is 128x256 but the detector is 256x256"),
    "p007": ("missing.cbf", "file not found"),
    "p009": ("hgte_p009.cbf", "truncated CBF: the binary data section never starts"),
    "p010": ("hgte_p010.cbf", "damaged CBF: the binary data do not match their Content-MD5 checksum"),
}


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_images")
    run = copy_run(folder)
    xrd = run / "xrd"
    frame = fabio.open(str(xrd / "hgte_p002.cbf")).data.astype(np.int32)
    fabio.tifimage.TifImage(data=frame).write(str(xrd / "p002.tif"))
    fabio.edfimage.EdfImage(data=frame).write(str(xrd / "p003.edf"))
    for name in ("p002.tif", "p003.edf", "hgte_p004.cbf"):  # truncated to two thirds
        raw = (xrd / name).read_bytes()
        (xrd / name).write_bytes(raw[: len(raw) * 2 // 3])
    with h5py.File(xrd / "stack.h5", "w") as h5:  # two frames: @99 is missing, @1 is fine
        h5["/data"] = np.stack([frame, frame])
    fabio.edfimage.EdfImage(data=frame[:128]).write(str(xrd / "p006.edf"))  # half the detector
    starter = fabio.cbfimage.CbfImage.STARTER
    raw = (xrd / "hgte_p009.cbf").read_bytes()
    (xrd / "hgte_p009.cbf").write_bytes(raw[: raw.index(starter)])  # cut in its header
    raw = bytearray((xrd / "hgte_p010.cbf").read_bytes())
    raw[raw.index(starter) + 200] ^= 0x01  # one flipped bit in the data
    (xrd / "hgte_p010.cbf").write_bytes(bytes(raw))
    sheet = edit_sheet(run, {"xrd/hgte_p002.cbf": "xrd/p002.tif", "xrd/hgte_p003.cbf": "xrd/p003.edf",
                             "xrd/hgte_p005.cbf": "xrd/stack.h5::/data@99", "xrd/hgte_p006.cbf": "xrd/p006.edf",
                             "xrd/hgte_p007.cbf": "xrd/missing.cbf", "xrd/hgte_p008.cbf": "xrd/stack.h5::/data@1"},
                       name="bad_images.tsv")
    result = run_pipeline(folder, sheet)
    assert result[0] == 0
    return (*result, folder)


@pytest.mark.parametrize("point", sorted(IMAGE_CASES))
def test_bad_image_is_marked(image_run, point):
    file_name, reason = IMAGE_CASES[point]
    check_marked(image_run[:3], point, file_name, reason)
    assert dict(zip(image_run[2]["point"], image_run[2]["status"]))[point].startswith("xrd skipped: ")


def test_bad_images_leave_the_other_points_complete(image_run):
    _, _, points, folder = image_run
    truth = read_truth(ROOT / "data-sample" / RUN / "truth.tsv")
    with h5py.File(folder / "results" / f"{RUN}.h5") as h5:
        intensity = h5[f"{RUN}/xrd/I"][()]
    # The pressure stage reads no image: every point has its pressure.
    assert np.all(np.isfinite(points["pressure_GPa"]))
    for i, (point, status) in enumerate(zip(points["point"], points["status"])):
        if point in IMAGE_CASES:
            assert np.all(np.isnan(intensity[i]))  # NaN, never a pattern of zeros
        else:  # p008 read frame 1 of an HDF5 stack
            assert np.all(np.isfinite(intensity[i])), point
            assert status_as_expected(truth, i, status), status


# --- spectra (optical and gauge) and sheet cells ---------------------------------------

SPECTRUM_CASES = {
    "p002": ("hgte_p002_abs.txt", "optical: ", "binary file, not a text spectrum (contains NUL bytes)"),
    "p003": ("hgte_p003_abs.txt", "optical: ", "empty file"),
    "p004": ("hgte_p004_abs.txt", "optical: ", "all values are zero"),
    "p005": ("hgte_p005_abs.txt", "optical: ", "non-finite values (NaN/inf) in the intensity column"),
    "p006": ("hgte_p006_pl.txt", "optical: ", "binary file, not a text spectrum (contains NUL bytes)"),
    "p007": ("hgte_p007_pl.txt", "optical: ", "empty file"),
    "p008": ("hgte_p008_pl.txt", "optical: ", "all values are zero"),
    "p009": ("hgte_p009_pl.txt", "optical: ", "non-finite values (NaN/inf) in the intensity column"),
    "p010": ("hgte_p010_ruby_before.txt", "ruby_before skipped: ", "no peak above noise"),
    "p011": ("hgte_p011_abs.txt", "optical: ", "file not found"),
}


@pytest.fixture(scope="module")
def spectrum_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_spectra")
    run = copy_run(folder)
    optical, ruby = run / "optical", run / "ruby"
    damage = {
        optical / "hgte_p002_abs.txt": BINARY,
        optical / "hgte_p003_abs.txt": b"",
        optical / "hgte_p004_abs.txt": with_y(optical / "hgte_p004_abs.txt", "0"),
        optical / "hgte_p005_abs.txt": with_y(optical / "hgte_p005_abs.txt", "nan"),
        optical / "hgte_p006_pl.txt": BINARY,
        optical / "hgte_p007_pl.txt": b"",
        optical / "hgte_p008_pl.txt": with_y(optical / "hgte_p008_pl.txt", "0"),
        optical / "hgte_p009_pl.txt": with_y(optical / "hgte_p009_pl.txt", "nan"),
        ruby / "hgte_p010_ruby_before.txt": with_y(ruby / "hgte_p010_ruby_before.txt", "0"),
    }
    for path, content in damage.items():
        path.write_bytes(content)
    (optical / "hgte_p011_abs.txt").unlink()
    sheet = edit_sheet(run, {"298\tstep 12": "abc\tstep 12"}, name="bad_spectra.tsv")  # a bad number
    result = run_pipeline(folder, sheet)
    assert result[0] == 0
    return (*result, folder)


@pytest.mark.parametrize("point", sorted(SPECTRUM_CASES))
def test_bad_spectrum_is_marked(spectrum_run, point):
    file_name, prefix, reason = SPECTRUM_CASES[point]
    check_marked(spectrum_run[:3], point, file_name, reason)
    status = dict(zip(spectrum_run[2]["point"], spectrum_run[2]["status"]))[point]
    assert status.startswith(prefix) and status.count(";") == 0, status


def test_bad_number_in_the_sheet_is_marked(spectrum_run):
    _, lines, points, _ = spectrum_run
    status = dict(zip(points["point"], points["status"]))["p012"]
    assert status.startswith("temperature_K 'abc' is not a valid number; "), status
    # The ruby fits need the temperature: both are refused, each with one line naming its file.
    for side in ("before", "after"):
        assert f"ruby_{side} skipped: " in status
        mine = [line for line in lines if f"{RUN}/p012:" in line and f"hgte_p012_ruby_{side}.txt" in line]
        assert len(mine) == 1 and "no valid temperature" in mine[0]
    assert np.isnan(dict(zip(points["point"], points["pressure_GPa"]))["p012"])


def test_bad_spectra_leave_the_other_points_complete(spectrum_run):
    _, _, points, _ = spectrum_run
    truth = read_truth(ROOT / "data-sample" / RUN / "truth.tsv")
    pressure = dict(zip(points["point"], points["pressure_GPa"]))
    for i, (point, status) in enumerate(zip(points["point"], points["status"])):
        if point == "p012":
            continue
        if point == "p010":  # the "after" spectrum still gives the pressure
            assert abs(pressure[point] - truth["pressure_after_GPa"][i]) < 0.02
        else:  # the mean of before and after, as on the intact run
            expected = np.nanmean([truth["pressure_before_GPa"][i], truth["pressure_after_GPa"][i]])
            assert abs(pressure[point] - expected) < 0.02
        if point not in SPECTRUM_CASES:
            assert status_as_expected(truth, i, status), status


def test_bad_optical_spectrum_keeps_the_other_one(spectrum_run):
    """A damaged absorption spectrum leaves the point's PL peak, and the reverse."""
    with h5py.File(spectrum_run[3] / "results" / f"{RUN}.h5") as h5:
        gap = h5[f"{RUN}/optical/band_gap/band_gap_eV"][()]
        pl = h5[f"{RUN}/optical/pl_peak/energy_eV"][()]
    ids = list(spectrum_run[2]["point"])
    for point in ("p002", "p003", "p004", "p005", "p011"):
        i = ids.index(point)
        assert np.isnan(gap[i]) and np.isfinite(pl[i]), point
    for point in ("p006", "p007", "p008", "p009"):
        i = ids.index(point)
        assert np.isnan(pl[i]) and np.isfinite(gap[i]), point
    for point in ("p001", "p010"):
        i = ids.index(point)
        assert np.isfinite(gap[i]) and np.isfinite(pl[i]), point


# --- problems of the run as a whole ------------------------------------------------------

@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A three-point copy of the run (the stages before a run-level failure stay short)."""
    folder = tmp_path_factory.mktemp("run_level")
    run = copy_run(folder)
    lines = (run / "points.tsv").read_text().splitlines()
    (run / "small.tsv").write_text("\n".join(lines[:4]) + "\n")
    (run / "repeated.tsv").write_text("\n".join(lines[:4] + [lines[2]]) + "\n")
    poni = (run / "xrd.poni").read_text().splitlines()
    (run / "no_rot2.poni").write_text("\n".join(l for l in poni if not l.startswith("Rot2:")) + "\n")
    np.save(run / "small_mask.npy", np.zeros((128, 256), bool))
    return folder, run


def run_stops(small_run, capsys, *settings, sheet="small.tsv", code=1) -> tuple[str, Path]:
    """Run with ``settings``; the one error line and the results folder, after
    checking the exit code and that no store was written."""
    folder, run = small_run
    results = folder / f"results_{len(list(folder.glob('results_*')))}"
    args = ["run", "--configfile", str(absolute_config(folder, results)), "--runs", RUN,
            "--set", f"runs.{RUN}.sheet={run / sheet}"]
    for setting in settings:
        args += ["--set", setting]
    assert main(args) == code
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dacpipe: ")
              and "points, " not in line and "wrote" not in line]
    assert len(errors) == 1, errors
    assert not (results / f"{RUN}.h5").exists()
    return errors[0], results


def test_poni_missing_a_key_stops_the_run(small_run, capsys):
    poni = small_run[1] / "no_rot2.poni"
    line, _ = run_stops(small_run, capsys, f"runs.{RUN}.xrd.poni={poni}")
    assert line == f"dacpipe: {RUN}: {poni}: PONI file has no 'Rot2' key"


def test_mask_of_the_wrong_shape_stops_the_run(small_run, capsys):
    mask = small_run[1] / "small_mask.npy"
    line, _ = run_stops(small_run, capsys, f"runs.{RUN}.xrd.mask={mask}")
    assert line == f"dacpipe: {RUN}: {mask}: mask is 128x256 but the detector is 256x256"


def test_repeated_point_stops_the_run(small_run, capsys):
    line, results = run_stops(small_run, capsys, sheet="repeated.tsv")
    assert line == f"dacpipe: {RUN}: {small_run[1] / 'repeated.tsv'}: line 5: point 'p002' repeats line 3"
    assert not (results / RUN / "parts").exists()  # stopped before the first stage


@pytest.mark.parametrize("setting, words", [
    (f"runs.{RUN}.xrd.npt=many", ["runs.hgte_thz.xrd.npt = 'many' has the wrong type; expected integer"]),
    (f"runs.{RUN}.xrd.rejection.threshold=[4]", ["runs.hgte_thz.xrd.rejection.threshold = [4] has the wrong type"]),
    (f"runs.{RUN}.pressure.scale=mao1968", ["runs.hgte_thz.pressure.scale = 'mao1968' is not allowed",
                                             "mao1986-hydrostatic"]),
    (f"runs.{RUN}.optical.tauc=direkt", ["runs.hgte_thz.optical.tauc = 'direkt' is not allowed",
                                         "did you mean 'direct'?"]),
])
def test_bad_config_stops_before_any_work(small_run, capsys, setting, words):
    """test_config.py checks validate_config; here the command's exit code and its one line."""
    line, results = run_stops(small_run, capsys, setting, code=2)
    assert line.startswith(f"dacpipe: {small_run[0] / 'config.yaml'}: config: ")
    for word in words:
        assert word in line, line
    assert not (results / RUN / "parts").exists()


# --- images that would integrate to plausible wrong patterns (issue 13 item 3) ------------

def _trust_run(folder: Path, rows: list[tuple[str, str]], mask: Path | None = None):
    """The xrd stage on a Pilatus 300k PONI (its module gaps in pyFAI's detector mask): the part read back."""
    import pyFAI

    from dacpipe.io.config import load_config
    from dacpipe.run.runner import run_stage
    from dacpipe.run.store import read_result

    poni = folder / "p300k.poni"
    if not poni.exists():
        pyFAI.load({"detector": "Pilatus300k", "dist": 0.15, "poni1": 0.06, "poni2": 0.045,
                    "wavelength": 4e-11}).save(str(poni))
    sheet = folder / f"trust_{len(list(folder.glob('trust_*.tsv')))}.tsv"
    sheet.write_text("point\txrd\tpressure_GPa\n" + "".join(f"{p}\t{f}\t1.0\n" for p, f in rows))
    mask_line = f", mask: {mask}" if mask else ""
    config = folder / "trust.yaml"
    config.write_text(f"results_dir: {folder / 'results'}\nruns:\n  t:\n    sheet: {sheet}\n"
                      f"    pressure: {{gauge: sheet}}\n"
                      f"    xrd: {{poni: {poni}, npt: 300, rejection: {{method: none}}{mask_line}}}\n")
    return read_result(run_stage(load_config([config]), "t", "xrd"), "t")


@pytest.fixture(scope="module")
def pilatus_frame():
    """A ring pattern on a Pilatus 300k, uint16, its gaps at 65535 (what a
    signed -1 wraps to), 30 dead pixels outside the gaps at 65535 too."""
    import pyFAI

    detector = pyFAI.detector_factory("Pilatus300k")
    rows, cols = np.indices(detector.shape)
    radius = np.hypot(rows - 350.0, cols - 260.0)
    rng = np.random.default_rng(7)
    image = rng.poisson(50 + 400 * np.exp(-0.5 * ((radius - 150) / 3) ** 2)
                        + 250 * np.exp(-0.5 * ((radius - 230) / 3) ** 2)).astype(np.uint16)
    gaps = detector.mask.astype(bool)
    dead = np.zeros_like(gaps)
    free = np.flatnonzero(~gaps)
    dead.ravel()[rng.choice(free, 30, replace=False)] = True
    return image, gaps, dead


def test_a_uint16_tiff_with_wrapped_gaps_integrates_as_if_masked(tmp_path, pilatus_frame):
    """65535 in the gaps and dead pixels is no count: the pattern equals that of
    the same frame with those pixels masked (a 65535 ring pixel would be ~100x its neighbours)."""
    image, gaps, dead = pilatus_frame
    wrapped = image.copy()
    wrapped[gaps | dead] = 65535
    fabio.tifimage.TifImage(data=wrapped).write(str(tmp_path / "wrapped.tif"))
    clean = image.copy()
    clean[gaps | dead] = 0
    fabio.tifimage.TifImage(data=clean).write(str(tmp_path / "clean.tif"))
    np.save(tmp_path / "dead.npy", dead)
    got = _trust_run(tmp_path, [("w", str(tmp_path / "wrapped.tif"))])
    want = _trust_run(tmp_path, [("c", str(tmp_path / "clean.tif"))], mask=tmp_path / "dead.npy")
    assert got.status == ["ok"] and want.status == ["ok"]
    finite = np.isfinite(want.datasets["I"][0])
    assert finite.sum() > 250
    np.testing.assert_allclose(got.datasets["I"][0][finite], want.datasets["I"][0][finite], rtol=1e-5)


def test_transposed_and_all_zero_frames_are_refused(tmp_path, pilatus_frame):
    image, gaps, _ = pilatus_frame
    fabio.tifimage.TifImage(data=np.ascontiguousarray(image.T)).write(str(tmp_path / "transposed.tif"))
    fabio.tifimage.TifImage(data=np.zeros_like(image)).write(str(tmp_path / "zero.tif"))
    dark_gaps = np.zeros(image.shape, np.int32)
    dark_gaps[gaps] = -1  # a Pilatus frame with no counts: gaps -1, the rest 0
    fabio.tifimage.TifImage(data=dark_gaps).write(str(tmp_path / "dark.tif"))
    result = _trust_run(tmp_path, [("t", str(tmp_path / "transposed.tif")), ("z", str(tmp_path / "zero.tif")),
                                   ("d", str(tmp_path / "dark.tif"))])
    transposed, zero, dark = result.status
    assert transposed == (f"xrd skipped: {tmp_path / 'transposed.tif'}: image is 487x619 but the detector is "
                          f"619x487 (transposed: rows and columns swapped)")
    for status, name in ((zero, "zero.tif"), (dark, "dark.tif")):
        assert status == (f"xrd skipped: {tmp_path / name}: no usable pixel in the image: every pixel is zero, "
                          f"negative or invalid (no counts)")
    assert np.all(np.isnan(result.datasets["I"]))


def test_a_mask_that_leaves_almost_nothing(tmp_path, pilatus_frame):
    """Below 1 % of the pixels left: refused, naming the fraction; below 10 %:
    integrated, each pattern's warnings saying how little was left."""
    from dacpipe.core.errors import InputError

    image, gaps, _ = pilatus_frame
    fabio.tifimage.TifImage(data=image).write(str(tmp_path / "frame.tif"))
    keep = np.zeros(image.shape, bool)
    keep[300:400, 200:320] = True  # 12000 of 301453 pixels: 4 % (a few in the gaps)
    np.save(tmp_path / "few.npy", ~keep)
    result = _trust_run(tmp_path, [("f", str(tmp_path / "frame.tif"))], mask=tmp_path / "few.npy")
    left = 100 * np.count_nonzero(keep & ~gaps) / keep.size
    assert result.status == ["ok"]
    assert result.datasets["warnings"][0] == f"the mask and the detector's gaps leave only {left:.2g} % of the pixels"
    nearly = np.ones(image.shape, bool)
    nearly[340:360, 250:270] = False  # 400 pixels: 0.13 %
    np.save(tmp_path / "nearly.npy", nearly)
    with pytest.raises(InputError, match=r"nearly\.npy: the mask and the detector's gaps leave 0\.13 % of the "
                                         r"pixels \(fewer than 1 %\)"):
        _trust_run(tmp_path, [("f", str(tmp_path / "frame.tif"))], mask=tmp_path / "nearly.npy")


def _phases_result(present_a, present_b):
    from dacpipe.core.results import StageResult

    n = len(present_a)
    datasets = {"A/present": np.array(present_a, bool), "B/present": np.array(present_b, bool),
                "A/fraction": np.where(present_a, 1.0, 0.0), "B/fraction": np.where(present_b, 1.0, 0.0),
                "reduced_chi2": np.array([1.2] * (n - 1) + [np.nan])}  # the last point had no pattern
    return StageResult(stage="phases", point_ids=[f"p{i}" for i in range(n)], datasets=datasets,
                       status=["ok"] * n, attrs={"phases": ["A", "B"], "markers": []})


@pytest.mark.parametrize("present_a, present_b, warned", [
    # 4 of 5 fitted patterns explained by no phase: the wavelength or geometry is suspect
    ([1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], True),
    # half explained (a transition to a phase not listed is possible): no warning
    ([1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], False),
    ([1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 1], False),
])
def test_a_run_whose_patterns_no_phase_explains_warns_once(present_a, present_b, warned):
    from conftest import stage_context

    from dacpipe.core.results import Upstream
    from dacpipe.io.sheet import Point, Sheet
    from dacpipe.xrd.transitions import finish_phases

    result = _phases_result(present_a, present_b)
    sheet = Sheet(path=Path("points.tsv"), columns=("point",), points=tuple(Point(p) for p in result.point_ids))
    messages = []
    ctx = stage_context("phases", sheet, {}, run_id="r", warn=messages.append,
                        upstream={"pressure": {"pressure_GPa": np.arange(6.0)},
                                  "xrd": Upstream({}, {"wavelength_A": 0.4133})})
    finish_phases(ctx, result)
    if warned:
        assert messages == ["r: phases: no configured phase explains 4 of 5 patterns: check the wavelength "
                            "(0.4133 A) and the detector distance of the PONI file, then the phase list"]
    else:
        assert messages == []
