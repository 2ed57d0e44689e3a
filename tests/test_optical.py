"""Optical spectra on an energy axis, JCAMP-DX and CSV readers, and the optical stage end to end."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from dacpipe.core import units
from dacpipe.optical import spectra as optical_spectra
from dacpipe.optical import stage as optical_stage
from dacpipe.core.errors import ConfigError, InputError
from dacpipe.io.sheet import read_sheet
from dacpipe.io.spectra import read_spectrum, read_xy
from dacpipe.run.store import write_part
from dacpipe.synth import optical as synth

HC = units.HC_EV_NM


# ---------------------------------------------------------------- energy axis and Jacobian


def test_energy_conversions():
    assert optical_spectra.photon_energy_eV(1239.84198, "nm") == pytest.approx(1.0)
    assert optical_spectra.photon_energy_eV(8065.544, "cm-1") == pytest.approx(1.0, abs=1e-6)
    assert optical_spectra.photon_energy_eV(0.7, "eV") == 0.7
    with pytest.raises(InputError, match="<= 0"):
        optical_spectra.photon_energy_eV(np.array([0.0, 500.0]), "nm")


def test_jacobian_moves_the_peak_as_predicted_and_keeps_the_area():
    # A Gaussian band in energy (centre 0.4 eV, sigma 38 meV), written per nm
    # as a spectrometer records it: I(lambda) = I(E) hc / lambda^2.
    e0, sigma = 0.4, 0.09 / (2 * math.sqrt(2 * math.log(2)))
    wavelength = np.linspace(1800.0, 6000.0, 20001)
    energy = HC / wavelength
    per_eV_truth = np.exp(-0.5 * ((energy - e0) / sigma) ** 2)
    per_nm = per_eV_truth * HC / wavelength**2
    # Read naively, the maximum of I(lambda) is where I(E) E^2 peaks, at
    # E0 + 2 sigma^2 / E0 to first order: 7.3 meV too high here.
    naive = HC / wavelength[np.argmax(per_nm)]
    assert naive - e0 == pytest.approx(2 * sigma**2 / e0, rel=0.05)
    e, per_eV = optical_spectra.to_energy(wavelength, per_nm, "nm", density=True)
    assert np.all(np.diff(e) > 0)
    np.testing.assert_allclose(per_eV, per_eV_truth[::-1], rtol=1e-12, atol=1e-15)
    assert e[np.argmax(per_eV)] == pytest.approx(e0, abs=2e-4)  # grid step near the peak ~0.07 meV
    # Area conserved: integral over nm of I(lambda) = integral over eV of I(E).
    assert np.trapezoid(per_eV, e) == pytest.approx(np.trapezoid(per_nm, wavelength), rel=1e-6)
    assert np.trapezoid(per_eV, e) == pytest.approx(sigma * math.sqrt(2 * math.pi), rel=1e-6)
    # Absorbance is a ratio, not a density: only re-ordered.
    e2, a = optical_spectra.to_energy(wavelength, per_nm, "nm", density=False)
    np.testing.assert_array_equal(a, per_nm[::-1])
    # cm^-1: a constant factor, area conserved too.
    nu = np.linspace(2000.0, 6000.0, 4001)
    band = np.exp(-0.5 * ((nu - 4000.0) / 100.0) ** 2)
    e3, per_eV3 = optical_spectra.to_energy(nu, band, "cm-1", density=True)
    assert np.trapezoid(per_eV3, e3) == pytest.approx(np.trapezoid(band, nu), rel=1e-9)


# ---------------------------------------------------------------- readers

JCAMP_AFFN = """##TITLE= HgTe film in DAC, 2.1 GPa
##JCAMP-DX= 4.24
##DATA TYPE= UV/VIS SPECTRUM
##ORIGIN= dacpipe test
##OWNER= public domain
##XUNITS= NANOMETERS
##YUNITS= ABSORBANCE
##XFACTOR= 0.1
##YFACTOR= 0.001
##FIRSTX= 800.0
##LASTX= 823.0
##NPOINTS= 24
##FIRSTY= 0.1
$$ six values per line; X in units of 0.1 nm
##XYDATA= (X++(Y..Y))
8000 100 110 120 130 140 150
8060 160 170 180 190 200 210
8120 220 230 240 250 260 270
8180 280 290,300 310 320 330 $$ a comma is a separator too
##END=
"""


def test_jcamp_affn_with_factors(tmp_path):
    path = tmp_path / "film.jdx"
    path.write_text(JCAMP_AFFN)
    data = read_xy(path)
    np.testing.assert_allclose(data.x, 800.0 + np.arange(24))
    np.testing.assert_allclose(data.y, 0.1 + 0.01 * np.arange(24))
    assert data.x_unit == "nm" and data.y_unit == "ABSORBANCE"
    # read_spectrum recognises it by content as well as by extension.
    other = tmp_path / "film.txt"
    other.write_text(JCAMP_AFFN)
    np.testing.assert_allclose(read_spectrum(other).x, data.x)
    with pytest.raises(InputError, match="XUNITS is nm, not cm-1"):
        read_spectrum(path, x_unit="cm-1")


def test_jcamp_peak_table_and_descending_wavenumbers(tmp_path):
    path = tmp_path / "ir.dx"
    values = "; ".join(f"{6000 - 100 * i},{0.02 * i:.2f}" for i in range(12))
    path.write_text("##TITLE= ir\n##JCAMP-DX= 5.01\n##XUNITS= 1/CM\n##YUNITS= ABSORBANCE\n"
                    f"##PEAKTABLE= (XY..XY)\n{values}\n##END=\n")
    data = read_xy(path)
    # Stored 6000 -> 4900 cm-1, as IR files are; returned increasing.
    np.testing.assert_allclose(data.x, 4900 + 100 * np.arange(12))
    np.testing.assert_allclose(data.y, (0.02 * np.arange(12))[::-1])
    assert data.x_unit == "cm-1"
    with pytest.raises(InputError, match="only 12 points"):  # too few for an edge
        optical_spectra.read_optical(path, "nm")


def test_jcamp_declared_unit_wins_over_the_configured_one(tmp_path):
    path = tmp_path / "ir.jdx"
    lines = "\n".join(f"{6000 - 100 * i} {2 * i}" for i in range(30))
    path.write_text("##TITLE= ir\n##JCAMP-DX= 4.24\n##XUNITS= 1/CM\n##YUNITS= ABSORBANCE\n##YFACTOR= 0.01\n"
                    f"##FIRSTX= 6000\n##LASTX= 3100\n##NPOINTS= 30\n##XYDATA= (X++(Y..Y))\n{lines}\n##END=\n")
    spectrum = optical_spectra.read_optical(path, "nm")  # the config says nm, the file says 1/CM
    assert spectrum.energy_eV[0] == pytest.approx(3100 * units.EV_PER_CM1)
    assert spectrum.values[0] == pytest.approx(0.58)


@pytest.mark.parametrize("line, words", [
    ("8000@A1B2C3D4E5F6", "compressed JCAMP-DX data (ASDF"),   # SQZ
    ("8000 100J1J1J1", "compressed JCAMP-DX data (ASDF"),       # DIF
    ("8000 100S5", "compressed JCAMP-DX data (ASDF"),            # DUP
])
def test_compressed_jcamp_is_refused(tmp_path, line, words):
    path = tmp_path / "packed.jdx"
    path.write_text(JCAMP_AFFN.split("##XYDATA")[0] + "##XYDATA= (X++(Y..Y))\n" + line + "\n##END=\n")
    with pytest.raises(InputError) as excinfo:
        read_xy(path)
    assert words in str(excinfo.value) and str(path) in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


@pytest.mark.parametrize("edit, words", [
    (("##NPOINTS= 24", "##NPOINTS= 25"), "NPOINTS=25 but ##XYDATA holds 24"),
    (("##XFACTOR= 0.1", "##XFACTOR= 1"), "does not match FIRSTX"),
    (("##FIRSTX= 800.0\n", ""), "needs ##FIRSTX and ##LASTX"),
    (("(X++(Y..Y))", "(X++(R..R))"), "only (X++(Y..Y))"),
    (("##TITLE", "##BLOCKS= 2\n##TITLE"), "compound JCAMP-DX"),
])
def test_bad_jcamp(tmp_path, edit, words):
    path = tmp_path / "bad.jdx"
    path.write_text(JCAMP_AFFN.replace(*edit))
    with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        read_xy(path)


def test_csv_with_a_header_row(tmp_path):
    wavelength = np.round(np.linspace(900.0, 1500.0, 50), 2)  # as written below
    path = tmp_path / "abs.csv"
    path.write_text("wavelength_nm,absorbance\n" + "".join(f"{w:.2f},{0.5 + w / 1e4:.5f}\n" for w in wavelength))
    spectrum = optical_spectra.read_optical(path, "nm")
    np.testing.assert_allclose(spectrum.energy_eV, np.sort(HC / wavelength), rtol=1e-6)
    np.testing.assert_allclose(spectrum.values[0], 0.5 + 0.15, atol=1e-5)  # lowest energy = 1500 nm
    # Without a header too.
    bare = tmp_path / "bare.csv"
    bare.write_text("".join(f"{w:.2f},{0.5:.5f}\n" for w in wavelength))
    assert optical_spectra.read_optical(bare, "nm").energy_eV.size == 50


def test_descending_energy_text_is_accepted_but_not_wavelength(tmp_path):
    energy = np.linspace(1.6, 0.5, 40)  # as exported from a spectrometer scanning in nm
    path = tmp_path / "ev.txt"
    path.write_text("".join(f"{e:.4f}\t{e:.4f}\n" for e in energy))
    spectrum = optical_spectra.read_optical(path, "eV")
    assert np.all(np.diff(spectrum.energy_eV) > 0)
    np.testing.assert_allclose(spectrum.values, spectrum.energy_eV)
    with pytest.raises(InputError, match="descending"):
        optical_spectra.read_optical(path, "nm")


@pytest.mark.parametrize("content, words", [
    (b"", "empty file"),
    (b"wavelength_nm,absorbance\n" + b"".join(b"%d,nan\n" % (900 + i) for i in range(30)), "non-finite"),
    (b"".join(b"%d\t0\n" % (900 + i) for i in range(30)), "all values are zero"),
    (bytes(range(256)) * 8, "binary file"),
])
def test_bad_optical_files(tmp_path, content, words):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(InputError) as excinfo:
        optical_spectra.read_optical(path, "nm")
    assert words in excinfo.value.reason and excinfo.value.path == str(path)


def test_transmission_and_intensity_to_absorbance(tmp_path):
    energy = np.linspace(0.5, 1.5, 60)
    absorbance = 0.2 + 0.5 * energy
    sample = optical_spectra.OpticalSpectrum(energy, 10 ** -absorbance, "t.txt")
    np.testing.assert_allclose(optical_spectra.absorbance_from(sample, "transmission").values, absorbance)
    percent = optical_spectra.OpticalSpectrum(energy, 100 * 10 ** -absorbance, "t.txt")
    np.testing.assert_allclose(optical_spectra.absorbance_from(percent, "transmission_percent").values, absorbance)
    with pytest.raises(InputError, match="percent read as a fraction"):
        optical_spectra.absorbance_from(percent, "transmission")
    # Intensity over a reference sampled on another grid: I0 interpolated.
    fine = np.linspace(0.4, 1.6, 500)
    reference = optical_spectra.OpticalSpectrum(fine, 1000.0 + 100 * fine, "ref.txt")
    intensity = optical_spectra.OpticalSpectrum(energy, (1000.0 + 100 * energy) * 10 ** -absorbance, "i.txt")
    result = optical_spectra.absorbance_from(intensity, "intensity", reference)
    np.testing.assert_allclose(result.values, absorbance, atol=1e-9)
    # A saturated edge (no light through) loses its points, not the spectrum.
    dark = optical_spectra.OpticalSpectrum(energy, np.where(energy > 1.4, 0.0, 10 ** -absorbance), "t.txt")
    assert optical_spectra.absorbance_from(dark, "transmission").energy_eV.max() < 1.4
    declared = optical_spectra.OpticalSpectrum(energy, 10 ** -absorbance, "t.jdx", "TRANSMITTANCE")
    with pytest.raises(InputError, match="YUNITS=TRANSMITTANCE"):
        optical_spectra.absorbance_from(declared, "absorbance")


def test_settings_fill_defaults_and_refuse_unknown_choices():
    cfg = optical_stage.settings({"tauc": "indirect", "pl": {"profile": "pseudo-voigt"}})
    assert cfg["tauc"] == "indirect" and cfg["pl"]["profile"] == "pseudo-voigt"
    assert cfg["pl"]["x_unit"] == "nm" and cfg["absorption"]["quantity"] == "absorbance"
    with pytest.raises(ConfigError, match="optical.tauc"):
        optical_stage.settings({"tauc": "allowed"})
    with pytest.raises(ConfigError, match="reference is null"):
        optical_stage.settings({"absorption": {"quantity": "intensity"}})


# ---------------------------------------------------------------- the stage end to end

PRESSURES = list(np.linspace(0.5, 11.0, 14))
POINTS = [f"p{i + 1:03d}" for i in range(14)]


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hgte_optical")
    files, truth = synth.write_optical_series(folder, POINTS, PRESSURES, np.random.default_rng(7))
    rows = ["point\tabsorption\tpl"] + [f"{p}\t{files[p]['absorption']}\t{files[p]['pl']}" for p in POINTS]
    (folder / "points.tsv").write_text("\n".join(rows) + "\n")
    return folder, files, truth


def test_generator_files_are_small_and_named_as_promised(series):
    folder, files, truth = series
    assert files["p001"] == {"absorption": "optical/hgte_p001_abs.txt", "pl": "optical/hgte_p001_pl.txt"}
    for names in files.values():
        for name in names.values():
            assert 3_000 < (folder / name).stat().st_size < 12_000
    assert [truth[p]["optical_phase"] for p in POINTS].count("HgTe-rs") == 3
    assert math.isnan(truth["p014"]["band_gap_eV"])
    assert truth["p001"]["band_gap_eV"] == pytest.approx(0.80 + 0.030 * 0.5 - 0.0008 * 0.25)


def test_optical_stage_end_to_end(series, tmp_path):
    folder, files, truth = series
    sheet = read_sheet(folder / "points.tsv")
    phases = [truth[p]["optical_phase"] for p in POINTS]
    messages, ticks = [], []
    # fit_model quadratic: beta's truth is checked below (4 zinc-blende points
    # do not make the F-test of "auto" keep it: tests/test_optical_qd.py)
    result = optical_stage.optical_series(sheet, {"tauc": "direct", "fit_model": "quadratic"}, np.array(PRESSURES),
                                          phases, warn=messages.append,
                                          progress=lambda done, total: ticks.append(done))
    assert result.stage == "optical" and ticks[-1] == 14
    gap = result.datasets["band_gap/band_gap_eV"]
    pl = result.datasets["pl_peak/energy_eV"]
    for i, point in enumerate(POINTS):
        if phases[i] == "HgTe-rs":
            # Metallic: NaN with the reason, for both spectra.
            assert math.isnan(gap[i]) and math.isnan(pl[i])
            assert "no absorption edge in the spectrum" in result.status[i]
            assert "no emission peak above noise" in result.status[i]
            assert result.status[i].startswith(f"optical: {folder / files[point]['absorption']}: ")
        else:
            assert result.status[i] == "ok"
            assert abs(gap[i] - truth[point]["band_gap_eV"]) < 0.010  # brief's bound; measured < 1 meV
            assert abs(pl[i] - truth[point]["pl_energy_eV"]) < 0.005  # brief's bound; measured < 0.5 meV
    assert sum("no absorption edge" in m for m in messages) == 3
    assert len(result.inputs) == 28

    # E(P) per phase within 3 sigma of the truth (band gap and PL: PL = gap - 30 meV).
    for group, offset in (("band_gap", 0.0), ("pl_peak", -synth.STOKES_SHIFT_EV)):
        for phase in ("HgTe-zb", "HgTe-cinnabar"):
            e0, alpha, beta = synth.GAP_TRUTH[phase]
            prefix = f"optical/{group}/fit/{phase}"
            assert str(result.extra[f"{prefix}/model"]) == "quadratic"
            for name, true in (("E0", e0 + offset), ("alpha", alpha), ("beta", beta)):
                unit = {"E0": "eV", "alpha": "eV_per_GPa", "beta": "eV_per_GPa2"}[name]
                value = float(result.extra[f"{prefix}/{name}_{unit}"])
                error = float(result.extra[f"{prefix}/{name}_err_{unit}"])
                assert abs(value - true) < 3 * error, (group, phase, name, value, true, error)
        assert f"optical/{group}/fit/HgTe-rs/E0_eV" not in result.extra
    assert int(result.extra["optical/band_gap/fit/HgTe-zb/n_points"]) == 4
    assert list(result.extra["optical/band_gap/fit/HgTe-cinnabar/points"]) == POINTS[4:11]

    # The part file holds it all where the contract says.
    write_part(tmp_path / "optical.h5", "hgte", result)
    with h5py.File(tmp_path / "optical.h5", "r") as h5:
        group = h5["hgte/optical"]
        assert group["band_gap/band_gap_eV"].attrs["units"] == "eV"
        assert group["band_gap/phase"].asstr()[()][0] == "HgTe-zb"
        assert group["band_gap/method"].asstr()[()][0] == "tauc-direct"
        assert group["band_gap/fit/HgTe-cinnabar/covariance"].shape == (3, 3)
        assert group["pl_peak/fit/HgTe-zb/model"].asstr()[()] == "quadratic"
        assert group.attrs["tauc"] == "direct"


def test_optical_stage_one_group_missing_files_and_unknown_phase(series, tmp_path):
    folder, files, truth = series
    rows = ["point\tabsorption\tpl",
            f"a\t{folder / files['p001']['absorption']}\t",                    # no PL: not measured
            f"b\t{folder / files['p002']['absorption']}\t{folder / 'gone.txt'}",  # missing file
            f"c\t{folder / files['p003']['absorption']}\t{folder / files['p003']['pl']}"]
    (tmp_path / "points.tsv").write_text("\n".join(rows) + "\n")
    sheet = read_sheet(tmp_path / "points.tsv")
    result = optical_stage.optical_series(sheet, {}, np.array([0.5, 1.31, np.nan]), None)
    assert result.status[0] == "ok" and math.isnan(result.datasets["pl_peak/energy_eV"][0])
    assert result.status[1] == f"optical: {folder / 'gone.txt'}: file not found"
    assert list(result.datasets["band_gap/phase"]) == ["all"] * 3
    # The third point has no pressure: measured, but out of the fit.
    assert np.isfinite(result.datasets["band_gap/band_gap_eV"][2])
    assert int(result.extra["optical/band_gap/fit/all/n_points"]) == 2
    assert str(result.extra["optical/band_gap/fit/all/model"]) == "linear"
    # An unknown phase ("") is measured but not fitted; a phase of one point gets a warning.
    messages = []
    result = optical_stage.optical_series(sheet, {}, np.array([0.5, 1.31, 2.12]), ["", "HgTe-zb", "HgTe-zb"],
                                   warn=messages.append)
    assert int(result.extra["optical/band_gap/fit/HgTe-zb/n_points"]) == 2
    assert not any(key.startswith("optical/band_gap/fit//") for key in result.extra)
    assert any("PL peak of phase HgTe-zb: 1 point(s)" in m for m in messages)


def test_measured_in_pieces_and_fitted_once_is_the_stage_in_one_go(series, tmp_path):
    """The two steps dacpipe watch runs apart: the points measured a few at a time,
    spliced, then fitted, give what one call over all points gives."""
    import dataclasses

    from dacpipe.run.store import read_result, splice_results

    folder, files, truth = series
    sheet = read_sheet(folder / "points.tsv")
    phases = [truth[p]["optical_phase"] for p in POINTS]
    whole = optical_stage.optical_series(sheet, {}, np.array(PRESSURES), phases)
    measured = optical_stage.measure_points(dataclasses.replace(sheet, points=sheet.points[:9]), {})
    assert not measured.extra and "band_gap/pressure_GPa" not in measured.datasets  # no pressure needed
    write_part(tmp_path / "measured.h5", "hgte", measured)   # kept between updates as a part
    rest = optical_stage.measure_points(dataclasses.replace(sheet, points=sheet.points[9:]), {})
    spliced = splice_results(read_result(tmp_path / "measured.h5", "hgte"), rest, POINTS)
    result = optical_stage.fit_series(spliced, {}, np.array(PRESSURES), phases)
    assert result.status == whole.status and {r.path for r in result.inputs} == set(whole.inputs)
    assert sorted(result.datasets) == sorted(whole.datasets) and sorted(result.extra) == sorted(whole.extra)
    for table in ("datasets", "extra"):
        for name, values in getattr(whole, table).items():
            got = getattr(result, table)[name]
            assert np.asarray(got).tolist() == np.asarray(values).tolist() or \
                np.array_equal(got, values, equal_nan=True), name
    assert result.attrs == whole.attrs


# ---------------------------------------------------------------- never a raw traceback
_RAW_JCAMP = JCAMP_AFFN.encode()


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(0, len(_RAW_JCAMP)),
       edits=st.lists(st.tuples(st.integers(0, len(_RAW_JCAMP) - 1), st.binary(min_size=1, max_size=1)),
                      max_size=3))
def test_damaged_jcamp_gives_a_spectrum_or_one_line(tmp_path_factory, cut, edits):
    raw = bytearray(_RAW_JCAMP)
    for position, byte in edits:
        raw[position:position + 1] = byte
    path = tmp_path_factory.mktemp("fuzz") / "cut.jdx"
    path.write_bytes(bytes(raw[:cut]))
    try:
        data = read_xy(path)
    except InputError as err:
        assert "\n" not in str(err) and str(path) in str(err)
        return
    assert np.all(np.isfinite(data.y)) and np.all(np.diff(data.x) > 0) and data.x.size >= 10


def test_temperature_series_and_systematic_terms_in_the_optical_group():
    """series: temperature fits E(T) per phase with both models; the E(P)
    fits carry the pressure's systematic terms beside their random esds."""
    from dacpipe.core.results import StageResult
    from dacpipe.optical.temperature_fit import varshni_eV

    n = 8
    ids = [f"p{i}" for i in range(n)]
    t = np.linspace(20.0, 300.0, n)
    p = np.linspace(0.1, 0.3, n)            # about one pressure
    gap = varshni_eV(t, 1.519, 5.405e-4, 204.0)
    datasets = {f"band_gap/{name}": np.full(n, np.nan) for name in optical_stage._GAP_FIELDS}
    datasets.update({f"pl_peak/{name}": np.full(n, np.nan) for name in optical_stage._PL_FIELDS})
    datasets["band_gap/band_gap_eV"], datasets["band_gap/band_gap_err_eV"] = gap, np.full(n, 1e-3)
    measured = StageResult(stage="optical", point_ids=ids, datasets=datasets, status=["ok"] * n)
    terms = {"pressure_err_scale_A_GPa": 0.005 * p}
    result = optical_stage.fit_series(measured, {"series": "temperature"}, p, None,
                                      systematic_GPa=terms, temperature_K=t)
    base = "optical/band_gap/temperature_fit/all"
    assert float(result.extra[f"{base}/varshni/E0_eV"]) == pytest.approx(1.519, abs=1e-6)
    assert float(result.extra[f"{base}/varshni/beta_K"]) == pytest.approx(204.0, rel=1e-3)
    assert f"{base}/bose_einstein/theta_K" in result.extra
    # A 0.5 % scale error (P x 1.005) moves dE/dP by 0.5 % of it (weights without pressure errors: exact).
    alpha = float(result.extra["optical/band_gap/fit/all/alpha_eV_per_GPa"])
    sys_err = float(result.extra["optical/band_gap/fit/all/alpha_sys_err_eV_per_GPa"])
    assert sys_err == pytest.approx(abs(alpha) * 0.005, rel=0.05)
