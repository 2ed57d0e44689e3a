"""Integrated patterns as input: the readers (Dioptas .xy, Fit2D .chi, GSAS .xye/.dat),
the sheet's ``pattern`` column through the XRD stage, and the phases stage on them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dacpipe.core.errors import ConfigError, InputError
from dacpipe.core.results import Upstream
from dacpipe.core.units import q_from_two_theta, two_theta_from_q
from dacpipe.integration.from_patterns import INTEGRATED, SKIPPED, resample
from dacpipe.integration.stage import run as integrate
from dacpipe.io.config import validate_config
from dacpipe.io.patterns import read_pattern
from dacpipe.io.sheet import make_sheet, read_sheet
from dacpipe.synth.powder import PEAK_COUNTS, PointTruth, integrated_pattern, line_heights

from conftest import stage_context

WAVELENGTH_A = 0.4133


def smooth(x):
    return 1000.0 + 400.0 * np.exp(-0.5 * ((x - 12.0) / 0.4) ** 2)


def write_columns(path, header_lines, *columns):
    body = "\n".join(" ".join(f"{v:.9e}" for v in row) for row in zip(*columns))
    path.write_text("".join(f"{line}\n" for line in header_lines) + body + "\n")
    return path


# --- readers -------------------------------------------------------------------

@pytest.mark.realdata
def test_real_dioptas_xy(real_data):
    path = real_data / "dioptas" / "map" / "Fe3O4C_M1_map_1_P1_E1_001.xy"
    pattern = read_pattern(path)
    raw = np.loadtxt(path)
    assert pattern.unit == "2th_deg" and not pattern.sigma_from_file
    assert pattern.wavelength_A == pytest.approx(0.3344) and pattern.header_wavelength_A == pytest.approx(0.3344)
    np.testing.assert_allclose(pattern.q_A, q_from_two_theta(raw[:, 0], 0.3344), rtol=1e-12)
    np.testing.assert_array_equal(pattern.intensity, raw[:, 1])
    # the config's wavelength overrides the header's
    assert read_pattern(path, wavelength_A=0.3).q_A[-1] == pytest.approx(q_from_two_theta(raw[-1, 0], 0.3))


def test_fit2d_chi_in_2theta_and_q(tmp_path):
    tth = np.linspace(2.0, 20.0, 200)
    chi = write_columns(tmp_path / "p.chi", ["p.tif: Azimuthal integration", "2-Theta Angle (Degrees)",
                                              "Intensity", "       200"], tth, smooth(tth))
    pattern = read_pattern(chi, wavelength_A=WAVELENGTH_A)
    assert pattern.unit == "2th_deg" and pattern.q_A == pytest.approx(q_from_two_theta(tth, WAVELENGTH_A))
    q_nm = np.linspace(5.0, 50.0, 200)
    chi_q = write_columns(tmp_path / "q.chi", ["q.tif", "Q (nm-1)", "Intensity", "200"], q_nm, smooth(q_nm))
    pattern = read_pattern(chi_q)  # q needs no wavelength
    assert pattern.unit == "q_nm^-1" and pattern.q_A == pytest.approx(q_nm / 10.0)
    assert math.isnan(pattern.wavelength_A)
    bad = write_columns(tmp_path / "bad.chi", ["t", "2-Theta Angle (Degrees)", "Intensity", "150"], tth, smooth(tth))
    with pytest.raises(InputError, match=r"bad\.chi: Fit2D header announces 150 points, the file has 200"):
        read_pattern(bad, wavelength_A=WAVELENGTH_A)


def test_gsas_xye_three_columns_and_header_units(tmp_path):
    tth = np.linspace(3.0, 25.0, 300)
    xye = write_columns(tmp_path / "p.xye", ["/* GSAS-II export", "   of p.tif */"], tth, smooth(tth),
                        np.full(tth.size, 2.5))
    with pytest.raises(InputError, match=r"p\.xye: the header does not say whether the x column is 2theta or q"):
        read_pattern(xye, wavelength_A=WAVELENGTH_A)
    pattern = read_pattern(xye, unit="2th_deg", wavelength_A=WAVELENGTH_A)
    assert pattern.sigma_from_file and np.all(pattern.sigma == 2.5)
    # a q axis in 1/A named in a pyFAI-style column line; a header in angstrom
    q = np.linspace(0.5, 6.0, 300)
    dat = write_columns(tmp_path / "q.dat", ["# Wavelength: 0.4066 A", "# q_A^-1  I  sigma"], q, smooth(q),
                        np.ones(q.size))
    pattern = read_pattern(dat)
    assert pattern.unit == "q_A^-1" and pattern.q_A == pytest.approx(q) and pattern.header_wavelength_A == 0.4066
    with pytest.raises(InputError, match="xrd.pattern_unit is 2th_deg but the file's header says q_A"):
        read_pattern(dat, unit="2th_deg")


@pytest.mark.parametrize("line, expected", [
    ("# Wavelength: 3.344e-11", 0.3344),           # pyFAI: metres, no unit
    ("# Wavelength: 4.133e-11 m", 0.4133),
    ("# wavelength = 0.04133 nm", 0.4133),
    ("# Wavelength 0.4133 A", 0.4133),
    ("# Wavelength [A]: 0.4133", 0.4133),
])
def test_header_wavelength_units(tmp_path, line, expected):
    tth = np.linspace(2.0, 20.0, 50)
    path = write_columns(tmp_path / "w.xy", [line, "# 2th_deg I"], tth, smooth(tth))
    assert read_pattern(path).header_wavelength_A == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"\x89HDF\r\n\x1a\n\x00\x00", "binary content"),
    (b"# 2th_deg I\n1 2 3 4\n2 3 4 5\n", "line 2 has 4 columns"),
    (b"# 2th_deg I\n" + b"".join(f"{x} 5\n".encode() for x in [1, 2, 3, 2, 5, 6, 7, 8, 9, 10, 11]),
     "not strictly increasing"),
    (b"# 2th_deg I\n1 2\n2 3\n", "2 data rows; a pattern needs at least 10"),
    (b"# 2th_deg I\n" + b"".join(f"{x} 5\n".encode() for x in range(1, 12)) + b"12 five\n", "line 13 is not numbers"),
    (b"# 2th_deg I\n" + b"".join(f"{x} 5\n".encode() for x in range(1, 12)), "neither its header nor xrd.wavelength_A"),
    (b"# q_A^-1 I s\n" + b"".join(f"{x} 5 -1\n".encode() for x in range(1, 12)), "negative values"),
])
def test_ill_formed_patterns_one_line(tmp_path, content, reason):
    path = tmp_path / "bad.xy"
    path.write_bytes(content)
    with pytest.raises(InputError, match=reason) as info:
        read_pattern(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    with pytest.raises(InputError, match="file not found"):
        read_pattern(tmp_path / "missing.xy")


def test_estimated_errors_pull(tmp_path):
    """Two-column files: the per-point error estimated from the scatter matches
    the noise put in (Gaussian, 5 counts on a smooth pattern with a peak) to 10 %."""
    rng = np.random.default_rng(3)
    tth = np.linspace(2.0, 20.0, 2000)
    path = write_columns(tmp_path / "n.xy", ["# 2th_deg I"], tth, smooth(tth) + rng.normal(0, 5.0, tth.size))
    pattern = read_pattern(path, wavelength_A=WAVELENGTH_A)
    assert np.nanmedian(pattern.sigma) == pytest.approx(5.0, rel=0.1)
    pulls = (pattern.intensity - smooth(tth)) / pattern.sigma
    assert np.nanstd(pulls) == pytest.approx(1.0, abs=0.1)


def test_resample_propagates_independent_errors():
    q = np.linspace(1.0, 2.0, 11)
    intensity, sigma = 3.0 * q + 1.0, np.full(11, 2.0)
    q_new = np.array([0.5, 1.05, 1.5, 1.96, 2.5])
    new_i, new_s = resample(q_new, q, intensity, sigma)
    np.testing.assert_allclose(new_i[1:4], 3.0 * q_new[1:4] + 1.0)
    assert np.isnan(new_i[[0, 4]]).all() and np.isnan(new_s[[0, 4]]).all()
    assert new_s[1] == pytest.approx(2.0 / math.sqrt(2.0))  # halfway: sqrt(0.25 + 0.25) sigma
    assert new_s[2] == pytest.approx(2.0)                   # on a point
    assert new_s[3] == pytest.approx(2.0 * math.sqrt(0.4**2 + 0.6**2))


# --- the sheet's pattern column through the stages ----------------------------

PHASE = "InP-zb"
PRESSURES_GPA = (1.0, 3.0, 5.0)


def write_series(folder, *, extra_rows=(), other_grid=True):
    """Dioptas-style .xy exports (pyFAI header, 2theta, wavelength in metres)
    of InP zinc blende at known pressures; the middle one with a third
    (error) column and (``other_grid``) on another 2theta grid."""
    rng = np.random.default_rng(12)
    rows = ["point\tpattern\tpressure_GPa"]
    first = PointTruth(PRESSURES_GPA[0], {PHASE: 1.0}, {PHASE: 25.0})
    scale = PEAK_COUNTS / float(np.max(line_heights(PHASE, first, WAVELENGTH_A)))  # as synth.powder.Series
    for k, pressure in enumerate(PRESSURES_GPA):
        tth = np.linspace(2.9, 24.1, 1500) if k == 1 and other_grid else np.linspace(3.0, 24.0, 1400)
        q = q_from_two_theta(tth, WAVELENGTH_A)
        truth = PointTruth(pressure, {PHASE: 1.0}, {PHASE: 25.0})
        intensity, sigma = integrated_pattern(q, WAVELENGTH_A, truth, rng, scale=scale)
        header = ["# == pyFAI calibration ==", f"# Wavelength: {WAVELENGTH_A * 1e-10:.4e}", "#", "# 2th_deg\t I"]
        columns = (tth, intensity, sigma) if k == 1 else (tth, intensity)
        write_columns(folder / f"p{k}.xy", header, *columns)
        rows.append(f"p{k}\tp{k}.xy\t{pressure}")
    rows.extend(extra_rows)
    (folder / "points.tsv").write_text("\n".join(rows) + "\n")
    return read_sheet(folder / "points.tsv")


def pattern_run(folder, **xrd):
    """The run of the sheet in ``folder``, validated: no PONI file (nothing to integrate)."""
    config = {"runs": {"r": {"sheet": str(folder / "points.tsv"), "phases": [PHASE], "pressure": {"gauge": "sheet"},
                             "xrd": xrd}}}
    return validate_config(config)["runs"]["r"]


def test_patterns_need_no_poni(tmp_path):
    """A sheet of patterns needs only the wavelength: a config without poni
    is accepted and the XRD stage records what it records for patterns, the
    wavelength from the headers or, given, from the config; one image without
    a pattern makes the geometry required again, in one line."""
    sheet = write_series(tmp_path, extra_rows=["p4\t\t7"])    # a point without XRD does not count
    run = pattern_run(tmp_path)
    assert "poni" not in run["xrd"]
    result = integrate(stage_context("xrd", sheet, run))
    assert result.status[:3] == ["ok"] * 3 and result.status[3] == "xrd: not measured"
    assert result.attrs["poni"] == "" and result.attrs["integration"] == SKIPPED
    assert result.attrs["wavelength_A"] == pytest.approx(WAVELENGTH_A)     # the headers' (4.133e-11 m)
    np.testing.assert_allclose(result.axes["two_theta"], np.linspace(3.0, 24.0, 1400), rtol=1e-9)
    given = integrate(stage_context("xrd", sheet, pattern_run(tmp_path, wavelength_A=0.4)))
    assert given.attrs["wavelength_A"] == 0.4
    # the config's wavelength converts the headers' 2theta: q changes by the ratio of the sines
    np.testing.assert_allclose(given.axes["q"], q_from_two_theta(np.linspace(3.0, 24.0, 1400), 0.4), rtol=1e-9)

    write_series(tmp_path, extra_rows=["p5\t\t8"])
    (tmp_path / "points.tsv").write_text((tmp_path / "points.tsv").read_text().replace("p5\t\t8", "p5\t\t8\timage.tif")
                                         .replace("point\tpattern\tpressure_GPa", "point\tpattern\tpressure_GPa\txrd"))
    with pytest.raises(ConfigError, match=r"^config: runs\.r\.xrd: needs 'poni' or 'calibrant_image' \(or, with no "
                                          r"image to integrate, a pattern column in the sheet\)$"):
        pattern_run(tmp_path)
    with pytest.raises(ConfigError, match=r"runs\.r\.xrd: needs 'poni'"):       # no sheet to tell
        validate_config({"runs": {"r": {"sheet": str(tmp_path / "missing.tsv"), "xrd": {}}}})
    with pytest.raises(ConfigError, match=r"^config: integration needs 'poni'"):  # integrating without one
        integrate(stage_context("xrd", read_sheet(tmp_path / "points.tsv"), {"xrd": {}}))


def test_sheet_pattern_column_and_make_sheet(tmp_path):
    sheet = write_series(tmp_path)
    assert [p.files["pattern"] for p in sheet.points] == [str(tmp_path / f"p{k}.xy") for k in range(3)]
    (tmp_path / "new").mkdir()
    for k in (1, 2):
        (tmp_path / "new" / f"scan_{k:03d}.xy").write_text("x")
        (tmp_path / "new" / f"scan_{k:03d}.tif").write_text("x")
    text = make_sheet(tmp_path / "new")
    assert "point\txrd\tpattern" in text and "p001\tscan_001.tif\tscan_001.xy" in text


def test_xrd_stage_takes_the_patterns(tmp_path):
    sheet = write_series(tmp_path, extra_rows=["p3\tbroken.xy\t6", "p4\t\t7"])
    (tmp_path / "broken.xy").write_text("# 2th_deg I\n1 2\n2 3\n")
    warnings = []
    result = integrate(stage_context("xrd", sheet, pattern_run(tmp_path), warn=warnings.append))
    assert result.status[:3] == ["ok"] * 3
    assert result.status[3] == f"xrd skipped: {tmp_path / 'broken.xy'}: 2 data rows; a pattern needs at least 10"
    assert result.status[4] == "xrd: not measured"
    assert list(result.datasets["integration"]) == [SKIPPED] * 3 + ["", ""]
    assert result.attrs["integration"] == SKIPPED and result.attrs["wavelength_A"] == pytest.approx(WAVELENGTH_A)
    # the run's axis is the first pattern's; the second was resampled onto it
    tth = np.linspace(3.0, 24.0, 1400)
    np.testing.assert_allclose(result.axes["two_theta"], tth, rtol=1e-9)
    assert result.datasets["warnings"][1] == "pattern resampled onto the run's q axis"
    assert result.datasets["warnings"][0] == result.datasets["warnings"][2] == ""
    assert np.all(np.isfinite(result.datasets["I_errors"][:3]))
    assert np.all(np.isnan(result.datasets["I"][3:]))
    assert any("broken.xy" in w for w in warnings)


@pytest.mark.slow  # whole-pattern fits of three patterns (~2 s)
def test_phases_stage_refines_the_lattice_from_given_patterns(tmp_path):
    """The phases stage runs unchanged on patterns integrated elsewhere: InP's
    cell at each pressure comes back within 4 standard errors and 2e-4,
    the pattern on another 2theta grid (resampled, with its own error
    column) included."""
    from dacpipe.xrd.stage import phases

    sheet = write_series(tmp_path)
    run = pattern_run(tmp_path)
    xrd = integrate(stage_context("xrd", sheet, run))
    upstream = {"xrd": Upstream({"q": xrd.axes["q"], "I": xrd.datasets["I"], "I_errors": xrd.datasets["I_errors"],
                                 "status": np.array(xrd.status, dtype=object)}, xrd.attrs),
                "pressure": Upstream({"pressure_GPa": np.array(PRESSURES_GPA)})}
    result = phases(stage_context("phases", sheet, run, upstream=upstream))
    assert result.status == ["ok"] * 3
    key = next(k for k in result.datasets if k.endswith("/a_A"))
    a, a_err = result.datasets[key], result.datasets[key.replace("a_A", "a_err_A")]
    for k, pressure in enumerate(PRESSURES_GPA):
        truth = PointTruth(pressure, {PHASE: 1.0}, {PHASE: 25.0}).cell(PHASE)[0]
        assert abs(a[k] - truth) < max(4 * a_err[k], 1e-5 * truth), (k, a[k], truth, a_err[k])
        assert abs(a[k] / truth - 1) < 2e-4
