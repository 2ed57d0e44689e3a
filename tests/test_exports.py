"""Exports (dacpipe.io.exports, dacpipe.run.load.export_run): each file read back
by dacpipe's reader of that format and by an independent parser of the format
as the other tool documents it (Dioptas: numpy.loadtxt of '#'-commented
columns; GSAS-II's G2pwd_xye rules; Fit2D's four header lines; EosFit7c's
keywords; JCPDS v4 as the files Dioptas ships)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import h5py
import numpy as np
import pytest

from dacpipe.cli import main
from dacpipe.core.units import q_from_two_theta
from dacpipe.io import exports
from dacpipe.io.patterns import read_pattern
from dacpipe.io.phase_files import read_jcpds
from dacpipe.run.load import export_run

ROOT = Path(__file__).resolve().parents[1]
PONI = ROOT / "data-sample" / "hgte_thz" / "xrd.poni"
WAVELENGTH_A = 0.4133
V0_FU_A3, K0_GPA, KP = 67.39, 42.5, 3.5   # a BM3 HgTe-zb: a0 = (4 V0)^(1/3) = 6.4599 A


def make_store(path: Path, n: int = 4, npt: int = 60) -> Path:
    """A small store laid out as dacpipe writes it (README "The result store"):
    points, xrd patterns, one phase (HgTe-zb) with volumes, its EOS fit."""
    rng = np.random.default_rng(1)
    pressure = np.linspace(0.2, 3.0, n)
    tth = np.linspace(2.0, 18.0, npt)
    q = q_from_two_theta(tth, WAVELENGTH_A)
    intensity = 100 + 50 * rng.random((n, npt))
    intensity[2] = np.nan          # a point without a pattern
    volume = V0_FU_A3 * (1 - pressure / 60.0)
    with h5py.File(path, "w") as h5:
        h5.attrs["default"] = "mini"
        e = h5.create_group("mini")
        pts = e.create_group("points")
        pts["point"] = [f"p{i:03d}".encode() for i in range(1, n + 1)]
        pts.create_dataset("pressure_GPa", data=pressure).attrs["units"] = "GPa"
        pts.create_dataset("pressure_err_GPa", data=np.full(n, 0.05)).attrs["units"] = "GPa"
        pts.create_dataset("temperature_K", data=np.full(n, 298.0)).attrs["units"] = "K"
        pts["status"] = [b"ok"] * n
        xrd = e.create_group("xrd")
        xrd.attrs.update({"wavelength_A": WAVELENGTH_A, "poni": str(PONI), "poni_convention": "pyfai",
                          "polarization_factor": 0.99, "fixed_axes": ["q", "two_theta"]})
        xrd.create_dataset("q", data=q).attrs["units"] = "1/angstrom"
        xrd.create_dataset("two_theta", data=tth).attrs["units"] = "degree"
        xrd["I"] = intensity
        xrd["I_errors"] = np.sqrt(intensity)
        xrd["status"] = [b"ok"] * n
        ph = e.create_group("phases")
        ph.attrs["phases"] = ["HgTe-zb"]
        ph.attrs["phase_sources"] = ["HgTe-zb"]
        ph["calc"] = intensity * 0.99
        zb = ph.create_group("HgTe-zb")
        zb.create_dataset("a_A", data=(4 * volume) ** (1 / 3)).attrs["units"] = "angstrom"
        zb.create_dataset("volume_fu_A3", data=volume).attrs["units"] = "angstrom^3"
        zb.create_dataset("volume_fu_err_A3", data=np.full(n, 0.01)).attrs["units"] = "angstrom^3"
        zb["fraction"] = np.ones(n)
        zb["present"] = np.ones(n, dtype=bool)
        eos = e.create_group("eos/HgTe-zb")
        for key, value in {"V0_fu_A3": V0_FU_A3, "V0_fu_err_A3": 0.01, "K0_GPa": K0_GPA, "K0_err_GPa": 0.4,
                           "Kp": KP, "Kp_err": 0.3}.items():
            eos[key] = value
        eos["model"] = b"bm3"
        eos["points"] = [b"p001", b"p002", b"p004"]
    return path


@pytest.fixture
def store(tmp_path) -> Path:
    return make_store(tmp_path / "mini.h5")


def gsas_xye(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An independent reader of GSAS-II's .xye rules (G2pwd_xye): a '/* */'
    block, or lines starting with ', # or ! are comments; a '#' line holding
    'q' marks a Q file; then 2 or 3 columns; weight 1/esd^2."""
    x, y, w = [], [], []
    in_block, begin, q_file = False, True, False
    for line in path.read_text().splitlines():
        if begin:
            if in_block:
                in_block = "*/" not in line
                continue
            if line.strip().startswith("/*"):
                in_block = "*/" not in line
                continue
            if line[:1] in ("'", "#", "!"):
                q_file |= "q" in line
                continue
            begin = False
        values = [float(v) for v in line.replace(",", " ").split()]
        assert len(values) in (2, 3), line
        x.append(values[0])
        y.append(values[1])
        w.append(1 / values[2] ** 2)
    assert not q_file, "GSAS-II would read this file as Q data"
    return np.array(x), np.array(y), np.array(w)


def test_xy_reads_back_in_dioptas_and_dacpipe(tmp_path):
    tth = np.linspace(3.0, 20.0, 40)
    intensity = np.linspace(10.0, 50.0, 40)
    header = ["== pyFAI calibration ==", "Wavelength: 4.133e-11"]
    path = exports.write_xy(tmp_path / "a.xy", tth, intensity, header)
    # Dioptas: numpy.loadtxt, '#' lines skipped
    data = np.loadtxt(path, comments="#")
    np.testing.assert_allclose(data[:, 0], tth, rtol=1e-9)
    np.testing.assert_allclose(data[:, 1], intensity, rtol=1e-9)
    pattern = read_pattern(path)                 # the header says 2th_deg and gives the wavelength
    assert pattern.unit == "2th_deg" and pattern.header_wavelength_A == pytest.approx(0.4133, rel=1e-3)
    np.testing.assert_allclose(pattern.q_A, q_from_two_theta(tth, 0.4133), rtol=1e-6)


def test_chi_has_fit2d_header_and_reads_back(tmp_path):
    tth = np.linspace(3.0, 20.0, 30)
    intensity = np.arange(30.0) + 1
    intensity[5] = np.nan                        # left out, and the count says so
    path = exports.write_chi(tmp_path / "a.chi", tth, intensity, "run p001 at 1 GPa")
    lines = path.read_text().splitlines()
    assert lines[1] == "2-Theta Angle (Degrees)" and lines[2] == "Intensity"
    assert int(lines[3]) == 29 == len(lines) - 4
    assert any("2-theta" in line.lower() for line in lines[:4])   # what GSAS-II looks for
    pattern = read_pattern(path, wavelength_A=0.4133)
    np.testing.assert_allclose(pattern.intensity, np.delete(intensity, 5), rtol=1e-7)


def test_xye_reads_back_in_gsas_rules_and_dacpipe(tmp_path):
    tth = np.linspace(3.0, 20.0, 40)
    intensity = np.linspace(100.0, 500.0, 40)
    sigma = np.sqrt(intensity)
    sigma[0] = 0.0                               # no weight: left out
    path = exports.write_xye(tmp_path / "a.xye", tth, intensity, sigma,
                             ["equation of state run, q range", "wavelength 0.4133 A"])
    x, y, w = gsas_xye(path)
    np.testing.assert_allclose(x, tth[1:], rtol=1e-7)
    np.testing.assert_allclose(w, 1 / sigma[1:] ** 2, rtol=1e-6)
    pattern = read_pattern(path, unit="2th_deg", wavelength_A=0.4133)
    assert pattern.sigma_from_file
    np.testing.assert_allclose(pattern.sigma, sigma[1:], rtol=1e-6)


def test_eosfit_dat_keywords_and_rows(tmp_path):
    p = np.array([0.1, 1.0, np.nan, 2.0])
    path = exports.write_eosfit_dat(tmp_path / "a.dat", p, [0.01, 0.02, 0.03, np.nan], [60.0, 59.0, 58.0, 57.5],
                                    [0.01, 0.01, 0.01, 0.02], "HgTe zb", ["a comment"])
    keys, rows, in_data = {}, [], False
    for line in path.read_text().splitlines():   # EosFit7c: '#' comments, keywords, rows after DATA
        if not line.strip() or line.startswith("#"):
            continue
        if in_data:
            rows.append([float(v) for v in line.split()])
        else:
            key, _, value = line.partition(" ")
            keys[key.upper()] = value.strip()
            in_data = key.upper() == "DATA"
    assert keys["TITLE"] == "HgTe zb" and keys["PSCALE"] == "GPa"
    columns = keys["FORMAT"].split()[1:]
    assert columns == ["P", "SIGP", "V", "SIGV"]
    table = dict(zip(columns, np.array(rows).T))
    np.testing.assert_allclose(table["P"], [0.1, 1.0, 2.0])
    np.testing.assert_allclose(table["SIGP"], [0.01, 0.02, 0.0])      # NaN sigma: no error
    np.testing.assert_allclose(table["V"], [60.0, 59.0, 57.5])


def test_jcpds_layout_is_dioptas_own(tmp_path, real_data):
    """Keys in the order of Dioptas' au_Anderson.jcpds; read back by dacpipe's JCPDS reader."""
    lines = [exports.JcpdsLineOut(2.355, 100.0, (1, 1, 1)), exports.JcpdsLineOut(2.039, 52.0, (2, 0, 0))]
    path = exports.write_jcpds(tmp_path / "au.jcpds", "Gold", "cubic", (4.0786,) * 3 + (90.0,) * 3, 166.65,
                               5.4823, lines, alpha_T_per_K=4.26e-5)

    def keys(p):
        return [line.split(":")[0] for line in Path(p).read_text().splitlines() if line.strip()]

    reference = keys(real_data / "dioptas" / "jcpds" / "au_Anderson.jcpds")
    assert keys(path)[:7] == reference[:7] and set(keys(path)[7:]) == {"DIHKL"}
    ours, theirs = read_jcpds(path), read_jcpds(real_data / "dioptas" / "jcpds" / "au_Anderson.jcpds")
    assert ours.cell == pytest.approx(theirs.cell) and ours.K0_GPa == pytest.approx(theirs.K0_GPa)
    assert ours.Kp == pytest.approx(theirs.Kp)
    assert [(ln.h, ln.k, ln.l, ln.d0_A, ln.I_rel) for ln in ours.lines] == \
        [(ln.h, ln.k, ln.l, ln.d0_A, ln.I_rel) for ln in theirs.lines[:2]]


def test_jcpds_hexagonal_writes_a_and_c(tmp_path):
    path = exports.write_jcpds(tmp_path / "re.jcpds", "Re", "hexagonal", (2.76, 2.76, 4.4574, 90, 90, 120), 433.8,
                               3.46, [])
    record = read_jcpds(path)
    assert record.system == "hexagonal" and record.cell == pytest.approx((2.76, 2.76, 4.4574, 90, 90, 120))
    with pytest.raises(ValueError):
        exports.write_jcpds(tmp_path / "x.jcpds", "x", "cubic", (4,) * 3 + (90,) * 3, math.nan, 4, [])


def test_csv_header_has_units(tmp_path):
    path = exports.write_csv(tmp_path / "t.csv", {"point": np.array(["a", "b"]), "pressure_GPa": [1.0, np.nan],
                                                  "present": np.array([True, False])}, {"pressure_GPa": "GPa"})
    rows = list(csv.reader(path.open()))
    assert rows == [["point", "pressure_GPa [GPa]", "present"], ["a", "1.0", "true"], ["b", "", "false"]]


def test_export_run_every_format(store, tmp_path):
    out = tmp_path / "out"
    xy = export_run(store, "xy", out / "xy")
    assert [p.name for p in xy] == ["mini_p001.xy", "mini_p002.xy", "mini_p004.xy"]   # p003 has no pattern
    text = xy[0].read_text()
    assert text.startswith("# == pyFAI calibration ==") and "# Wavelength: 4.133e-11" in text
    pattern = read_pattern(xy[0])
    with h5py.File(store) as h5:
        np.testing.assert_allclose(pattern.q_A, h5["mini/xrd/q"][()], rtol=1e-6)
        np.testing.assert_allclose(pattern.intensity, h5["mini/xrd/I"][0], rtol=1e-8)

    xye = export_run(store, "xye", out / "xye")
    instprm = dict(line.split(":", 1) for line in xye[0].read_text().splitlines() if not line.startswith("#"))
    assert float(instprm["Lam"]) == pytest.approx(WAVELENGTH_A)
    assert float(instprm["Polariz."]) == pytest.approx((1 + 0.99) / 2)
    # W: one 172 um pixel at the PONI's distance as a box, variance (angle)^2/12 in centidegrees^2
    distance_m = next(float(line.split(":")[1]) for line in PONI.read_text().splitlines()
                      if line.startswith("Distance"))
    assert float(instprm["W"]) == pytest.approx((math.degrees(172e-6 / distance_m) * 100) ** 2 / 12, rel=1e-3)
    x, _, w = gsas_xye(xye[1])
    assert len(x) == 60 and np.all(w > 0)

    assert len(export_run(store, "chi", out / "chi")) == 3

    (dat,) = export_run(store, "eosfit", out / "eosfit")
    rows = np.loadtxt(dat, comments="#", skiprows=_data_start(dat), ndmin=2)
    np.testing.assert_allclose(rows[:, 0], np.linspace(0.2, 3.0, 4)[[0, 1, 3]], atol=5e-7)   # fitted points only

    (jc,) = export_run(store, "jcpds", out / "jcpds")
    record = read_jcpds(jc)
    assert record.system == "cubic" and record.K0_GPa == pytest.approx(K0_GPA) and record.Kp == pytest.approx(KP)
    assert record.cell[0] ** 3 / 4 == pytest.approx(V0_FU_A3, rel=1e-5)   # the fitted V0 of 4 formula units
    hkl = {(ln.h, ln.k, ln.l) for ln in record.lines}
    assert (1, 1, 1) in hkl and (2, 2, 0) in hkl and (1, 0, 0) not in hkl   # F-centred: 100 extinct
    for line in record.lines:
        assert line.d0_A == pytest.approx(record.cell[0] / math.sqrt(line.h ** 2 + line.k ** 2 + line.l ** 2),
                                          abs=1e-4)

    tables = {p.stem: p for p in export_run(store, "csv", out / "csv")}
    header = next(csv.reader(tables["mini_phases_HgTe-zb"].open()))
    assert header[0] == "point" and "volume_fu_A3 [angstrom^3]" in header


def _data_start(path: Path) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines()) if line.strip() == "DATA") + 1


def test_export_cli(store, tmp_path, capsys):
    assert main(["export", str(store), "--to", "csv", "--out", str(tmp_path / "csv")]) == 0
    assert (tmp_path / "csv" / "mini_points.csv").is_file()
    with h5py.File(store, "a") as h5:
        del h5["mini/eos"]
    assert main(["export", str(store), "--to", "eosfit", "--out", str(tmp_path / "e")]) == 2
    assert "no equation-of-state fit" in capsys.readouterr().err
