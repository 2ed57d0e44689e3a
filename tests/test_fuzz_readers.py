"""Property tests: the readers given random bytes and cut real files from data-sample.

Each reader either returns a valid result (finite, of the right shape, and for
a cut file the same values as the whole file) or raises a
:class:`~dacpipe.errors.DacpipeError` with a one-line message. No other
exception escapes, and nothing comes back silently wrong (a cut image is never
returned zero-padded to the full shape).

fabio loops forever on some damaged CBF headers; dacpipe guards that, and
image reads here run under a timeout so that a new hang fails the test
instead of stopping the suite.
"""

import math
import os
import threading
from pathlib import Path

import fabio
import fabio.edfimage
import fabio.tifimage
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dacpipe.core.errors import DacpipeError, SheetError
from dacpipe.io.poni import load_geometry
from dacpipe.io.images import read_image
from dacpipe.io.sheet import read_sheet
from dacpipe.io.spectra import MIN_POINTS, read_spectrum, read_xy

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data-sample" / "hgte_thz"
SHAPE = (256, 256)
READ_TIMEOUT_S = 20.0
# DACPIPE_FUZZ_EXAMPLES=1000 for a longer search than the suite's.
FAST = settings(max_examples=int(os.environ.get("DACPIPE_FUZZ_EXAMPLES", 60)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def one_line(err: BaseException) -> None:
    text = str(err)
    assert text and "\n" not in text, repr(text)


def call_with_timeout(function, *args, timeout=READ_TIMEOUT_S, **kwargs):
    """``function(*args)``, its exception re-raised; fails the test if it runs past ``timeout`` (a hang)."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)  # a hung read cannot block the exit
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{function.__name__}{args} did not return within {timeout} s (a reader hang)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# --- images ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_images(work):
    """data-sample's first XRD frame as its CBF, and written as EDF and TIFF: (data, {suffix: bytes})."""
    cbf = SAMPLE / "xrd" / "hgte_p001.cbf"
    data = fabio.open(str(cbf)).data.astype(np.int32)
    fabio.edfimage.EdfImage(data=data).write(str(work / "good.edf"))
    fabio.tifimage.TifImage(data=data).write(str(work / "good.tif"))
    raw = {".cbf": cbf.read_bytes(), ".edf": (work / "good.edf").read_bytes(),
           ".tif": (work / "good.tif").read_bytes()}
    assert data.shape == SHAPE
    return data.astype(np.float32), raw


def check_image(path: Path, whole: np.ndarray | None):
    """read_image's result, or its DacpipeError; a returned cut image must equal ``whole``."""
    try:
        image = call_with_timeout(read_image, str(path), expected_shape=SHAPE)
    except DacpipeError as err:
        one_line(err)
        assert str(path) in str(err)
        return
    assert image.shape == SHAPE and image.dtype == np.float32 and np.isfinite(image).any()
    if whole is not None:
        np.testing.assert_array_equal(image, whole)


@FAST
@given(suffix=st.sampled_from([".cbf", ".edf", ".tif"]), cut=st.floats(0, 1, exclude_max=True))
def test_cut_real_image(work, real_images, suffix, cut):
    data, raw = real_images
    content = raw[suffix][: int(cut * len(raw[suffix]))]
    path = work / f"cut{suffix}"
    path.write_bytes(content)
    check_image(path, data)


@FAST
@given(suffix=st.sampled_from([".cbf", ".edf", ".tif"]), at=st.floats(0, 1, exclude_max=True))
def test_cut_in_the_header(work, real_images, suffix, at):
    """Cuts in the first kilobyte, where the headers are (fabio's CBF hang lives here)."""
    data, raw = real_images
    path = work / f"head{suffix}"
    path.write_bytes(raw[suffix][: int(at * 1100)])
    check_image(path, data)


@FAST
@given(suffix=st.sampled_from([".cbf", ".edf", ".tif", ".tiff", ".h5", ".mccd", ".img"]),
       prefix=st.sampled_from([b"", b"###CBF: VERSION 1.5\r\n", b"{\nHeaderID = EH:000001:000000:000000 ;\n",
                               b"II*\x00", b"MM\x00*", b"\x89HDF\r\n\x1a\n"]),
       junk=st.binary(max_size=2000))
def test_random_bytes_as_image(work, suffix, prefix, junk):
    path = work / f"junk{suffix}"
    path.write_bytes(prefix + junk)
    check_image(path, None)


# --- spectra ------------------------------------------------------------------------

RUBY = (SAMPLE / "ruby" / "hgte_p001_ruby_before.txt").read_bytes()
ABSORPTION = (SAMPLE / "optical" / "hgte_p001_abs.txt").read_bytes()


def check_spectrum(path: Path):
    """read_spectrum and read_xy: a valid spectrum or a one-line DacpipeError naming the file."""
    results = []
    for reader in (read_spectrum, read_xy):
        try:
            result = reader(path)
        except DacpipeError as err:
            one_line(err)
            assert str(path) in str(err)
            results.append(None)
            continue
        x, y = result.x, result.y
        assert x.shape == y.shape and x.ndim == 1 and x.size >= MIN_POINTS
        assert np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.diff(x) > 0)
        results.append(result)
    return results


@FAST
@given(content=st.binary(max_size=3000), suffix=st.sampled_from([".txt", ".csv", ".dat", ".spe", ".jdx", ""]))
def test_random_bytes_as_spectrum(work, content, suffix):
    path = work / f"junk{suffix or '_nosuffix'}"
    path.write_bytes(content)
    check_spectrum(path)


@FAST
@given(text=st.text(alphabet=st.sampled_from(list("0123456789.,;:-+eE \t\nabcnaNinf#>")), max_size=600))
def test_random_number_text_as_spectrum(work, text):
    path = work / "numbers.txt"
    path.write_text(text)
    check_spectrum(path)


@FAST
@given(source=st.sampled_from(["ruby", "absorption"]), cut=st.floats(0, 1))
def test_cut_real_spectrum(work, source, cut):
    """A cut text spectrum reads as its first rows (a prefix of the whole), or is refused."""
    whole = RUBY if source == "ruby" else ABSORPTION
    path = work / f"cut_{source}.txt"
    path.write_bytes(whole[: int(cut * len(whole))])
    full_path = work / f"whole_{source}.txt"
    full_path.write_bytes(whole)
    full = read_xy(full_path)
    for result in check_spectrum(path):
        if result is None:
            continue
        n = result.x.size
        np.testing.assert_array_equal(result.x[:-1], full.x[: n - 1])
        np.testing.assert_array_equal(result.y[:-1], full.y[: n - 1])
        # The last row may be cut inside a number: nothing in a text file tells a cut
        # last line from a file without a final newline, so its y is not checked.
        assert result.x[-1] <= full.x[n - 1] or math.isclose(result.x[-1], full.x[n - 1])


# --- PONI ------------------------------------------------------------------------------

PONI = (SAMPLE / "xrd.poni").read_text()
PONI_KEYS = ["poni_version", "Detector", "Detector_config", "Distance", "Poni1", "Poni2",
             "Rot1", "Rot2", "Rot3", "Wavelength", "PixelSize1", "PixelSize2", "SplineFile"]


@pytest.fixture(scope="module")
def reference_geometry():
    return load_geometry(SAMPLE / "xrd.poni")


def check_poni(path: Path):
    try:
        geometry = load_geometry(path)
    except DacpipeError as err:
        one_line(err)
        assert str(path) in str(err)
        return None
    ai = geometry.integrator
    for value in (ai.dist, ai.poni1, ai.poni2, ai.rot1, ai.rot2, ai.rot3, geometry.wavelength_A):
        assert math.isfinite(value)
    assert ai.dist > 0 and 0.01 <= geometry.wavelength_A <= 100
    return geometry


@FAST
@given(cut=st.integers(0, len(PONI)))
def test_cut_real_poni(work, reference_geometry, cut):
    """A cut PONI file is refused, or reads as the whole one (only comments or a newline were cut)."""
    path = work / "cut.poni"
    path.write_text(PONI[:cut])
    geometry = check_poni(path)
    if geometry is not None:
        ref, ai = reference_geometry.integrator, geometry.integrator
        assert (ai.dist, ai.poni1, ai.poni2, ai.rot1, ai.rot2, ai.rot3) == \
               (ref.dist, ref.poni1, ref.poni2, ref.rot1, ref.rot2, ref.rot3)
        assert geometry.wavelength_A == reference_geometry.wavelength_A
        assert geometry.detector_shape == reference_geometry.detector_shape


@FAST
@given(lines=st.lists(st.tuples(st.sampled_from(PONI_KEYS),
                                st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                                          st.text(max_size=30),
                                          st.sampled_from(["", "{", "{}", "null", "Pilatus1M", "[1, 2]",
                                                          '{"pixel1": 0.0001, "pixel2": 0.0001}',
                                                          '{"pixel1": -1, "pixel2": "a", "max_shape": [0, -3]}',
                                                          '{"orientation": 7}', "1", "2.1", "4", "99"]))),
                      max_size=14))
def test_random_poni_lines(work, lines):
    path = work / "random.poni"
    path.write_text("".join(f"{key}: {value}\n" for key, value in lines))
    check_poni(path)


@FAST
@given(content=st.binary(max_size=800))
def test_random_bytes_as_poni(work, content):
    path = work / "junk.poni"
    path.write_bytes(content)
    check_poni(path)


# --- sample sheet ---------------------------------------------------------------------------

SHEET_WORDS = ["point", "xrd", "ruby_before", "ruby_after", "ruby", "absorption", "pl", "temperature_K",
               "pressure_GPa", "monitor", "note", "p001", "p002", "a.txt", "x.h5::/d@3", "nan", "inf",
               "-3", "298", "1e400", "abc", "#", '"', '""', "", " "]


@FAST
@given(rows=st.lists(st.lists(st.one_of(st.sampled_from(SHEET_WORDS), st.text(max_size=8)), max_size=8),
                     max_size=8),
       newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_random_sheet(work, rows, newline):
    path = work / "points.tsv"
    path.write_text(newline.join("\t".join(row) for row in rows), encoding="utf-8", newline="")
    check_sheet(path)


@FAST
@given(content=st.binary(max_size=600))
def test_random_bytes_as_sheet(work, content):
    path = work / "junk.tsv"
    path.write_bytes(content)
    check_sheet(path)


def check_sheet(path: Path):
    try:
        sheet = read_sheet(path)
    except SheetError as err:
        one_line(err)
        assert str(path) in str(err)
        return
    ids = sheet.point_ids
    assert ids and all(ids) and len(set(ids)) == len(ids)
    for point in sheet.points:
        for problem in point.problems:
            assert "\n" not in problem
        for name in ("pressure_GPa", "pressure_err_GPa", "monitor"):
            value = getattr(point, name)
            assert math.isnan(value) or math.isfinite(value)
        assert math.isnan(point.temperature_K) or (math.isfinite(point.temperature_K) and point.temperature_K > 0)
        if math.isnan(point.temperature_K):  # never silently: the bad cell is a problem of the point
            assert any(p.startswith("temperature_K ") for p in point.problems)
