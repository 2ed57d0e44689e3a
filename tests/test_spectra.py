"""Tests of dacpipe.spectra: real files, synthetic SPE files and bad input."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dacpipe.core.errors import InputError
from dacpipe.io.spectra import SpeFile, Spectrum, nm_to_raman_shift, raman_shift_to_nm, read_spe, read_spectrum

RUBY_R1_TRAX_NM = 694.32  # T-Rax's fitted R1 for Ruby.spe, rows 11-24, columns 82-752


# ---------------------------------------------------------------- helpers

def assert_input_error(excinfo, path, *words):
    """Exactly InputError, one line, naming the file and the reason."""
    err = excinfo.value
    assert type(err) is InputError
    message = str(err)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word.lower() in message.lower(), message


def good_table(n=20, sep="\t"):
    return "".join(f"{690 + 0.1 * i:.2f}{sep}{100 + i}\n" for i in range(n))


def make_spe(path, data, *, version=2.2, coeffs=None, unit=4, laser_nm=0.0,
             wavelengths=None, sensor_x=0, binning=1, stride_extra=0, tag="Wavelength"):
    """Write a small SPE file: a WinSpec 2.x header, or 3.x with an XML footer."""
    data = np.asarray(data, dtype=np.uint16)
    frames, height, width = data.shape
    header = bytearray(4100)
    struct.pack_into("<H", header, 42, width)
    struct.pack_into("<H", header, 656, height)
    struct.pack_into("<h", header, 108, 3)
    struct.pack_into("<i", header, 1446, frames)
    struct.pack_into("<f", header, 1992, version)
    struct.pack_into("<H", header, 4098, 0x5555)
    if coeffs is not None:
        header[3098], header[3100], header[3101] = 1, unit, len(coeffs) - 1
        struct.pack_into("<6d", header, 3263, *(list(coeffs) + [0.0] * (6 - len(coeffs))))
        struct.pack_into("<d", header, 3311, laser_nm)
    padding = b"\x00" * stride_extra
    body = b"".join(frame.tobytes() + padding for frame in data)
    footer = b""
    if version >= 3:
        size = width * height * 2
        stride = size + stride_extra
        if tag == "Wavelength":
            values = ",".join(repr(float(w)) for w in wavelengths)
        else:
            values = " ".join(f"{float(w)!r},0.01" for w in wavelengths)
        footer = (
            '<SpeFormat version="3.0" xmlns="http://www.princetoninstruments.com/spe/2009">'
            f'<DataFormat><DataBlock type="Frame" count="{frames}" size="{size}" stride="{stride}">'
            f'<DataBlock type="Region" count="1" width="{width}" height="{height}" calibrations="2,3"/>'
            '</DataBlock></DataFormat><Calibrations><WavelengthMapping id="1">'
            f'<{tag} xml:space="preserve">{values}</{tag}></WavelengthMapping>'
            f'<SensorMapping id="3" x="{sensor_x}" y="0" width="{width * binning}" '
            f'height="{height}" xBinning="{binning}" yBinning="1"/></Calibrations></SpeFormat>'
        ).encode()
        struct.pack_into("<Q", header, 678, 4100 + len(body))
    path.write_bytes(bytes(header) + body + footer)
    return path


def ramp_frame(height=6, width=15):
    """A frame whose column c of row r holds 10*r + c, with a line at column 7."""
    frame = 10 * np.arange(height)[:, None] + np.arange(width)[None, :]
    frame[:, 7] += 500
    return frame[None].astype(np.uint16)


# ---------------------------------------------------------------- real files

@pytest.mark.realdata
def test_ruby_spe_rows_and_columns_give_r1(real_data):
    path = real_data / "ruby" / "Ruby.spe"
    spectrum = read_spectrum(path, rows=(11, 24), columns=(82, 752))
    assert isinstance(spectrum, Spectrum)
    assert spectrum.x_unit == "nm"
    assert len(spectrum.x) == len(spectrum.y) == 671
    assert 600 < spectrum.x[0] < spectrum.x[-1] < 800
    assert np.all(np.diff(spectrum.x) > 0)
    assert abs(spectrum.x[np.argmax(spectrum.y)] - RUBY_R1_TRAX_NM) < 0.1
    assert spectrum.source == f"{path} rows 11-24 columns 82-752"


@pytest.mark.realdata
def test_read_spe_version_3_ruby(real_data):
    spe = read_spe(real_data / "ruby" / "Ruby.spe")
    assert isinstance(spe, SpeFile)
    assert spe.version == 3.0
    assert spe.data.shape == (1, 100, 1340)
    assert spe.data.dtype == np.uint16
    assert spe.wavelength_nm.shape == (1340,)
    assert spe.wavelength_nm[0] == pytest.approx(685.648, abs=1e-3)
    assert spe.wavelength_nm[-1] == pytest.approx(713.457, abs=1e-3)
    assert "WavelengthMapping" in spe.calibration


@pytest.mark.realdata
def test_read_spe_version_2_xrd_image(real_data):
    path = real_data / "dioptas" / "spe" / "CeO2_PI_CCD_Mo.SPE"
    spe = read_spe(path)
    assert spe.version == pytest.approx(2.2)
    assert spe.data.shape == (1, 1042, 1042)
    assert spe.wavelength_nm is None  # its x calibration is the identity in pixels
    fabio = pytest.importorskip("fabio")
    np.testing.assert_array_equal(spe.data[0], fabio.open(str(path)).data)
    with pytest.raises(InputError) as excinfo:
        read_spectrum(path)
    assert_input_error(excinfo, path, "no wavelength calibration")


@pytest.mark.realdata
@pytest.mark.parametrize("name, first_nm, last_nm, r1_nm", [
    ("test_data1.txt", 680.10, 779.48, 694.80),  # plain two columns
    ("test_data2.txt", 669.64, 769.23, 695.39),  # SpectraSuite header and end marker
])
def test_ocean_optics_and_plain_text(real_data, name, first_nm, last_nm, r1_nm):
    spectrum = read_spectrum(real_data / "ruby" / name)
    assert len(spectrum.x) == 3648
    assert spectrum.x[0] == pytest.approx(first_nm)
    assert spectrum.x[-1] == pytest.approx(last_nm)
    assert spectrum.x[np.argmax(spectrum.y)] == pytest.approx(r1_nm, abs=0.05)


@pytest.mark.realdata
def test_raman_shift_file_to_nm_and_kept_as_shift(real_data):
    path = real_data / "ruby" / "rubis.txt"
    in_nm = read_spectrum(path, x_unit="raman_shift_cm-1", laser_nm=568.189)
    assert in_nm.x_unit == "nm"
    assert len(in_nm.x) == 1015
    assert in_nm.x[0] == pytest.approx(687.944, abs=1e-3)
    assert in_nm.x[-1] == pytest.approx(701.014, abs=1e-3)
    assert np.all(np.diff(in_nm.x) > 0)
    assert in_nm.x[np.argmax(in_nm.y)] == pytest.approx(694.57, abs=0.05)
    shift = read_spectrum(path, x_unit="cm-1")
    assert shift.x_unit == "cm-1"
    assert shift.x[0] == pytest.approx(3063.7136)
    np.testing.assert_allclose(nm_to_raman_shift(in_nm.x, 568.189), shift.x, atol=1e-8)
    with pytest.raises(InputError) as excinfo:
        read_spectrum(path, x_unit="raman_shift_cm-1")
    assert_input_error(excinfo, path, "laser_nm")


@pytest.mark.realdata
@pytest.mark.parametrize("keep_bytes, word", [(200_000, "truncated"), (272_100 + 500, "XML footer")])
def test_truncated_real_spe(real_data, tmp_path, keep_bytes, word):
    path = tmp_path / "cut.spe"
    path.write_bytes((real_data / "ruby" / "Ruby.spe").read_bytes()[:keep_bytes])
    with pytest.raises(InputError) as excinfo:
        read_spectrum(path)
    assert_input_error(excinfo, path, word)


@pytest.mark.realdata
def test_spe_detected_by_content_without_extension(real_data, tmp_path):
    path = tmp_path / "ruby_frame.dat"
    shutil.copyfile(real_data / "ruby" / "Ruby.spe", path)
    assert len(read_spectrum(path).x) == 1340


# ---------------------------------------------------------------- synthetic SPE

def test_spe_v2_polynomial_uses_pixels_from_one(tmp_path):
    path = make_spe(tmp_path / "a.spe", ramp_frame(), coeffs=[600.0, 0.5, 0.001])
    spe = read_spe(path)
    pixel = np.arange(1, 16)
    np.testing.assert_allclose(spe.wavelength_nm, 600 + 0.5 * pixel + 0.001 * pixel**2)
    spectrum = read_spectrum(path, rows=(1, 3), columns=(2, 12))
    np.testing.assert_allclose(spectrum.x, spe.wavelength_nm[2:13])
    np.testing.assert_allclose(spectrum.y, ramp_frame()[0, 1:4, 2:13].sum(axis=0))
    assert spectrum.source == f"{path} rows 1-3 columns 2-12"
    assert read_spectrum(path).source == f"{path} rows 0-5"


def test_spe_row_sum_does_not_wrap_around(tmp_path):
    frame = np.full((1, 4, 12), 60_000, dtype=np.uint16)
    path = make_spe(tmp_path / "bright.spe", frame, coeffs=[500.0, 1.0])
    np.testing.assert_array_equal(read_spectrum(path).y, 240_000.0)


def test_spe_v2_raman_shift_calibration_and_cm1_output(tmp_path):
    path = make_spe(tmp_path / "r.spe", ramp_frame(), coeffs=[1300.0, 5.0], unit=6, laser_nm=532.0)
    spectrum = read_spectrum(path)
    np.testing.assert_allclose(spectrum.x, raman_shift_to_nm(1300 + 5.0 * np.arange(1, 16), 532.0))
    shift = read_spectrum(path, x_unit="cm-1", laser_nm=532.0)
    np.testing.assert_allclose(shift.x, 1300 + 5.0 * np.arange(1, 16))
    with pytest.raises(InputError) as excinfo:
        read_spectrum(path, x_unit="cm-1")
    assert_input_error(excinfo, path, "laser_nm")


def test_spe_v3_region_of_interest_and_binning(tmp_path):
    sensor_nm = 500 + 0.1 * np.arange(40)
    path = make_spe(tmp_path / "roi.spe", ramp_frame(width=15), version=3.0,
                    wavelengths=sensor_nm, sensor_x=5)
    np.testing.assert_allclose(read_spe(path).wavelength_nm, sensor_nm[5:20])
    path = make_spe(tmp_path / "bin.spe", ramp_frame(width=10), version=3.0,
                    wavelengths=sensor_nm, sensor_x=4, binning=2)
    np.testing.assert_allclose(read_spe(path).wavelength_nm, sensor_nm[4:24].reshape(10, 2).mean(1))


def test_spe_v3_wavelength_error_list_and_frame_stride(tmp_path):
    frames = np.concatenate([ramp_frame(), ramp_frame() + 1])
    wavelengths = 600 + 0.2 * np.arange(15)
    path = make_spe(tmp_path / "err.spe", frames, version=3.0, wavelengths=wavelengths,
                    tag="WavelengthError", stride_extra=16)
    spe = read_spe(path)
    np.testing.assert_allclose(spe.wavelength_nm, wavelengths)
    np.testing.assert_array_equal(spe.data, frames)  # metadata between frames skipped
    assert spe.n_frames == 2
    assert read_spectrum(path).source.endswith("frame 1 of 2")


def test_spe_v3_calibration_length_mismatch(tmp_path):
    path = make_spe(tmp_path / "m.spe", ramp_frame(), version=3.0, wavelengths=np.arange(500.0, 508.0))
    with pytest.raises(InputError) as excinfo:
        read_spe(path)
    assert_input_error(excinfo, path, "8 values for 15")


@pytest.mark.parametrize("cut", [100, 4100, 4100 + 30])
def test_truncated_synthetic_spe(tmp_path, cut):
    whole = make_spe(tmp_path / "whole.spe", ramp_frame(), coeffs=[600.0, 0.5]).read_bytes()
    path = tmp_path / "cut.spe"
    path.write_bytes(whole[:cut])
    with pytest.raises(InputError) as excinfo:
        read_spectrum(path)
    assert_input_error(excinfo, path, "truncated SPE file", f"{cut} bytes")


def test_spe_problems(tmp_path):
    path = make_spe(tmp_path / "nocal.spe", ramp_frame())
    with pytest.raises(InputError) as excinfo:
        read_spectrum(path)
    assert_input_error(excinfo, path, "no wavelength calibration")
    path = make_spe(tmp_path / "cal.spe", ramp_frame(), coeffs=[600.0, 0.5])
    with pytest.raises(InputError) as excinfo:
        read_spectrum(path, rows=(2, 6))
    assert_input_error(excinfo, path, "rows 2-6 outside")
    raw = bytearray(path.read_bytes())
    struct.pack_into("<h", raw, 108, 42)
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError) as excinfo:
        read_spe(path)
    assert_input_error(excinfo, path, "data type code 42")


def test_reversed_spe_calibration_is_flagged(tmp_path):
    path = make_spe(tmp_path / "rev.spe", ramp_frame(), coeffs=[700.0, -0.5])
    with pytest.raises(InputError) as excinfo:
        read_spectrum(path)
    assert_input_error(excinfo, path, "descending")


# ---------------------------------------------------------------- text formats

def test_plain_text_result_is_float64_and_read_only(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text(good_table(sep="  "))
    spectrum = read_spectrum(path)
    assert spectrum.x.dtype == spectrum.y.dtype == np.float64
    assert spectrum.source == str(path)
    with pytest.raises(ValueError):
        spectrum.y[0] = 1.0


def test_comma_separated_with_text_header(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text('"Wavelength (nm)","Intensity (a.u.)"\n# exported\n' + good_table(sep=","))
    spectrum = read_spectrum(path)
    assert len(spectrum.x) == 20
    assert spectrum.x[3] == pytest.approx(690.3)
    assert spectrum.y[3] == 103


@pytest.mark.parametrize("decimal", [".", ","])
def test_semicolon_separated(tmp_path, decimal):
    path = tmp_path / "s.csv"
    path.write_text("Wavelength;Counts\n" + good_table(sep=";").replace(".", decimal))
    spectrum = read_spectrum(path)
    assert len(spectrum.x) == 20
    assert spectrum.x[-1] == pytest.approx(691.9)


def test_ocean_optics_begin_marker_with_cp1252_header(tmp_path):
    path = tmp_path / "oo.txt"
    header = ("Data from USB4000.txt Node\n\nIntegration Time (\xb5sec): 100000\n"
              "Number of Pixels in Spectrum: 20\n>>>>>Begin Spectral Data<<<<<\n")
    path.write_bytes((header + good_table().replace(".", ",")).encode("cp1252"))
    spectrum = read_spectrum(path)
    assert len(spectrum.x) == 20
    assert spectrum.x[1] == pytest.approx(690.1)


def test_ocean_optics_stops_at_end_marker(tmp_path):
    path = tmp_path / "oo.txt"
    path.write_text("SpectraSuite Data File\n1 2 3\n>>>>>Begin Processed Spectral Data<<<<<\n"
                    + good_table() + ">>>>>End Processed Spectral Data<<<<<\nfooter 1 2\n")
    assert len(read_spectrum(path).x) == 20


def test_raman_shift_conversion_helpers():
    assert raman_shift_to_nm(0.0, 532.0) == pytest.approx(532.0)
    assert raman_shift_to_nm(1332.0, 532.0) == pytest.approx(1e7 / (1e7 / 532.0 - 1332.0))
    shift = np.linspace(-500, 4000, 11)
    np.testing.assert_allclose(nm_to_raman_shift(raman_shift_to_nm(shift, 568.189), 568.189), shift)
    with pytest.raises(InputError, match="beyond"):
        raman_shift_to_nm(20_000.0, 532.0)
    with pytest.raises(InputError, match="laser_nm"):
        raman_shift_to_nm(100.0, 0.0)


# ---------------------------------------------------------------- bad input

BAD_TEXT = {
    "empty": (b"", ["empty file"]),
    "blank": (b"\n  \n\t\n", ["empty file"]),
    "header_only": (b"Wavelength\tIntensity\n# nothing measured\n", ["no numeric data"]),
    "one_column": (b"".join(b"%d\n" % i for i in range(20)), ["only one column"]),
    "nan": (good_table().replace("104", "nan").replace("107", "NaN").replace("109", "inf").encode(),
            ["3 non-finite", "intensity", "line 5"]),
    "binary": (bytes(range(256)) * 4, ["binary file"]),
    "undecodable": (b"690.0\t1\n\x81\x8d\x8f\x90\x9d\n", ["binary file"]),
    "descending": ("".join(f"{700 - i}\t{i}\n" for i in range(20)).encode(), ["descending", "700", "681"]),
    "unsorted": (good_table().replace("690.50", "689.00").encode(), ["not strictly increasing", "line 6", "689 after 690.4"]),
    "repeated_x": (good_table().replace("690.50", "690.40").encode(), ["not strictly increasing", "line 6"]),
    # blank lines are skipped, and the message still names the file's line
    "unsorted_after_blanks": (("\n" + good_table(3) + "\n\n" + "".join(good_table().splitlines(True)[3:]))
                              .replace("690.50", "689.00").encode(), ["not strictly increasing", "line 9", "689 after 690.4"]),
    "few_points": (good_table(n=5).encode(), ["only 5 data points"]),
    "text_in_data": ((good_table(5) + "oops\n" + good_table(10)).encode(), ["line 6", "oops"]),
    "ragged": ((good_table(5) + "691 5 7\n").encode(), ["line 6 has 3 column"]),
}


@pytest.mark.parametrize("name", sorted(BAD_TEXT))
def test_bad_text_files(tmp_path, name):
    content, words = BAD_TEXT[name]
    path = tmp_path / f"{name}.txt"
    path.write_bytes(content)
    with pytest.raises(InputError) as excinfo:
        read_spectrum(path)
    assert_input_error(excinfo, path, *words)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError) as excinfo:
        read_spectrum(tmp_path / "nope.txt")
    assert_input_error(excinfo, tmp_path / "nope.txt", "file not found")
    with pytest.raises(InputError) as excinfo:
        read_spe(tmp_path / "nope.spe")
    assert_input_error(excinfo, tmp_path / "nope.spe", "file not found")
    with pytest.raises(InputError) as excinfo:
        read_spectrum(tmp_path)
    assert_input_error(excinfo, tmp_path, "directory")


def test_caller_mistakes(tmp_path):
    path = tmp_path / "s.txt"
    path.write_text(good_table())
    # rows/columns select part of an SPE frame; a text spectrum is read whole.
    assert len(read_spectrum(path, rows=(0, 3)).x) == len(read_spectrum(path).x)
    with pytest.raises(InputError) as excinfo:
        read_spectrum(path, x_unit="raman_shift_cm-1", laser_nm=20_000.0)  # 500 cm-1: a 690 cm-1 shift is impossible
    assert_input_error(excinfo, path, "beyond")
    with pytest.raises(ValueError):
        read_spectrum(path, x_unit="angstrom")


# ---------------------------------------------------------------- never a raw traceback

def check_outcome(path, **kwargs):
    """A valid Spectrum, or an InputError of one line; nothing else."""
    try:
        spectrum = read_spectrum(path, **kwargs)
    except InputError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return
    assert np.all(np.isfinite(spectrum.x)) and np.all(np.isfinite(spectrum.y))
    assert spectrum.x.size >= 10 and np.all(np.diff(spectrum.x) > 0)


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(content=st.binary(max_size=600), suffix=st.sampled_from([".txt", ".csv", ".spe"]))
def test_random_bytes(tmp_path_factory, content, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"random{suffix}"
    path.write_bytes(content)
    check_outcome(path)


VALID_TEXT = ("Wavelength (nm);Counts\n" + good_table(30, sep=";")).encode()


@FUZZ
@given(cut=st.integers(0, len(VALID_TEXT)),
       edits=st.lists(st.tuples(st.integers(0, len(VALID_TEXT) - 1), st.binary(min_size=1, max_size=1)),
                      max_size=3))
def test_truncated_or_damaged_text(tmp_path_factory, cut, edits):
    raw = bytearray(VALID_TEXT)
    for position, byte in edits:
        raw[position:position + 1] = byte
    path = tmp_path_factory.mktemp("fuzz") / "cut.txt"
    path.write_bytes(bytes(raw[:cut]))
    check_outcome(path)
    check_outcome(path, x_unit="raman_shift_cm-1", laser_nm=532.0)


@FUZZ
@given(data=st.data(), version=st.sampled_from([2.2, 3.0]))
def test_truncated_or_damaged_spe(tmp_path_factory, data, version):
    folder = tmp_path_factory.mktemp("fuzz")
    raw = bytearray(make_spe(folder / "ok.spe", ramp_frame(), version=version, coeffs=[600.0, 0.5],
                             wavelengths=600 + 0.5 * np.arange(15)).read_bytes())
    for _ in range(data.draw(st.integers(0, 4))):
        # Damage the fields the reader trusts: header words, the data and the footer.
        position = data.draw(st.sampled_from([42, 43, 108, 656, 678, 679, 683, 1446, 1449, 1992, 1995,
                                              3098, 3100, 3101, 3263, 3270, 4100, len(raw) - 40]))
        raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    path = folder / "damaged.spe"
    path.write_bytes(bytes(raw[:cut]))
    check_outcome(path, rows=(0, 2))


def test_a_plain_table_is_read_at_once_as_line_by_line(tmp_path, monkeypatch):
    """The plain-table path (numbers and white space only) gives the line-by-line
    parser's numbers bit for bit, and leaves what it cannot read to that parser,
    whose messages name the line."""
    import dacpipe.io.spectra as spectra

    rng = np.random.default_rng(3)
    x = np.linspace(670.0, 730.0, 1340)
    y = rng.poisson(500, x.size) * 1.000001
    body = "\n".join(f"{a:.4f}\t{b:.6e}" for a, b in zip(x, y))
    path = tmp_path / "ruby.txt"
    path.write_text("wavelength_nm\tcounts\n" + body + "\n\n")
    fast = spectra.read_spectrum(path)
    monkeypatch.setattr(spectra, "_plain_block", lambda lines, first: None)
    slow = spectra.read_spectrum(path)
    monkeypatch.undo()
    assert np.array_equal(fast.x, slow.x) and np.array_equal(fast.y, slow.y)
    np.testing.assert_allclose(fast.x, np.round(x, 4))
    for bad, message in (("700.0\t1.0\t2.0", r"line 5 has 3 column\(s\), line 2 has 2"),
                         ("700.0.1\t2.0", "non-numeric text at line 5")):
        lines = body.splitlines()
        lines[3] = bad
        path.write_text("wavelength_nm\tcounts\n" + "\n".join(lines) + "\n")
        with pytest.raises(InputError, match=message):
            spectra.read_spectrum(path)
