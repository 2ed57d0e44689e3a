"""SAXS superlattice analysis: data-sample truth, synthetic lattices, the formulas by hand.

The hard cases (a steep form factor, a series, bcc and hexagonal lattices, a
missing first order) are in tests/test_superlattice_series.py."""

import math
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from conftest import stage_context

from dacpipe.core.errors import ConfigError, InputError
from dacpipe.run.store import write_part
from dacpipe.saxs.stage import run as superlattice_stage
from dacpipe.saxs.superlattice import (
    LATTICES,
    NO_MODEL_NOTE,
    SuperlatticeSettings,
    analyse_pattern,
    find_superlattice_peaks,
    index_peaks,
    lattice_constants_nm,
    scherrer_length_nm,
)
from dacpipe.synth import read_truth

ROOT = Path(__file__).resolve().parents[1]
RUN = "nc_saxs"


@pytest.fixture(scope="module")
def saxs(sample_results):
    """data-sample/nc_saxs integrated by the pipeline: q, I, I_errors, status, wavelength."""
    folder = sample_results[0].parent
    with h5py.File(folder / "results" / f"{RUN}.h5") as h5:
        group = h5[f"{RUN}/saxs"]
        return {"q": group["q"][()], "I": group["I"][()], "sigma": group["I_errors"][()],
                "status": list(group["status"].asstr()[()]), "wavelength_A": float(group.attrs["wavelength_A"]),
                "points": list(h5[f"{RUN}/points/point"].asstr()[()])}


@pytest.fixture(scope="module")
def truth():
    return read_truth(ROOT / "data-sample" / RUN / "truth.tsv")


@pytest.fixture(scope="module")
def results(saxs):
    # The generator drew the peaks with K = 0.94 and no instrumental width.
    settings = SuperlatticeSettings.from_config({"scherrer_k": 0.94})
    return [analyse_pattern(saxs["q"], saxs["I"][i], saxs["sigma"][i], saxs["wavelength_A"], settings)
            for i in range(len(saxs["I"]))]


# ----------------------------------------------------------------- data-sample


def test_spacing_within_one_percent_of_truth(results, truth):
    """d = 2 pi / q1 against d111: the issue asks for 1 %; measured -0.10 % to
    -0.01 %, within 1.3 standard errors. The errors (0.03-0.08 %) are mostly
    the Debye-Waller factor's: these patterns have no correlation hole, so
    only the lines' heights pin sigma_u (the Wilson tie), and the peaks'
    carrier tilts with it. (The generator of data-sample draws its lines
    symmetric and on P without the Debye-Waller factor; the fitted powder
    exponent goes to 0 and the Wilson tie puts the factor back, which the
    errors cover.)"""
    d_nm = np.array([r.d_A / 10 for r in results])
    deviation = np.abs(d_nm / truth["d111_nm"] - 1)
    assert deviation.max() < 0.01
    assert deviation.max() < 0.003  # what it does today; a regression shows here first
    d_err_nm = np.array([r.d_err_A / 10 for r in results])
    assert np.all((d_err_nm > 0) & (d_err_nm < 1e-3 * d_nm))
    assert np.all(np.abs(d_nm - truth["d111_nm"]) < 3 * d_err_nm)
    # p004's free 220 is noted (below); every other point says nothing.
    assert all(r.notes == () for i, r in enumerate(results) if i != 3)


def test_a_free_peak_its_lattice_does_not_put_there_is_noted(saxs, results):
    """p004's free 220 sits on the form factor's first zero, 1.4 % below its fcc
    line at 10 of its errors (the known defect below): its point says so, naming
    the peak and where the lattice fitted to the whole pattern puts it. Every
    other peak of data-sample lies within OFF_LINE_SIGMA of its line."""
    assert saxs["points"][3] == "p004"
    (note,) = results[3].notes
    assert note.startswith("peak 220 at q = 0.161") and "standard errors below its fcc line (0.163" in note
    pull = float(note.split(" is ")[1].split()[0])
    assert 8 <= pull <= 12


def test_fcc_on_every_point_with_its_lattice(results, truth):
    assert [r.order for r in results] == ["fcc"] * len(results)
    a = np.array([r.lattice_constant_nm for r in results])
    nn = np.array([r.nn_distance_nm for r in results])
    np.testing.assert_array_less(np.abs(a / truth["a_nm"] - 1), 0.003)
    np.testing.assert_array_less(np.abs(nn / truth["nn_distance_nm"] - 1), 0.003)
    for r in results:
        # 111 and 200 (at 1.155 q111, 2.2 FWHM away) are resolved, 220 and 311 found.
        labels = dict(zip(r.hkl, (p.q_A / r.first.q_A for p in r.peaks)))
        assert {"111", "200", "220", "311"} <= set(labels)
        assert labels["200"] == pytest.approx(math.sqrt(4 / 3), rel=0.003)


@pytest.mark.xfail(strict=True, reason="known defect (issue 11, item 7): at p004 the refinement from the lattice's "
                   "lines (widths on its width law) ends at reduced chi^2 2.13 against 1.97 for the survey's "
                   "free fit, which the F-test prefers; that fit puts 220 at 1.611 q111 (1.4 % low, 10 of "
                   "its errors; the refinement: 1.6317 +- 0.0009); the lattice fit's d is right, and the point notes "
                   "the peak (test_a_free_peak_its_lattice_does_not_put_there_is_noted)")
def test_every_free_peak_where_its_lattice_puts_it(results):
    for r in results:
        labels = dict(zip(r.hkl, (p.q_A / r.first.q_A for p in r.peaks)))
        assert labels["220"] == pytest.approx(math.sqrt(8 / 3), rel=0.01)


def test_scherrer_length_against_truth(results, truth):
    """Within 3 % of the domain size (K = 0.94 as drawn). The model averages
    each line over its pyFAI bin (1.53e-3 1/A, a box of rms 4.4e-4 1/A against
    the Gaussian's sigma of 2.8e-3 1/A at 0.2 GPa), which before it made the
    peaks 0.5-1.2 % broader; the statistical error is 0.3-0.6 %. Measured:
    -0.6 % to +0.5 %."""
    size = np.array([r.scherrer_nm for r in results])
    err = np.array([r.scherrer_err_nm for r in results])
    ratio = size / truth["domain_nm"]
    np.testing.assert_array_less(np.abs(ratio - 1), 0.03)
    np.testing.assert_array_less(size - truth["domain_nm"], 3 * err)
    assert np.all((err > 0) & (err < 0.02 * size))
    # The domains shrink with pressure, and the lengths follow.
    assert np.all(np.diff(size) < 0)


def test_without_sigma_the_noise_is_estimated(saxs, truth):
    result = analyse_pattern(saxs["q"], saxs["I"][0], None, saxs["wavelength_A"])
    assert result.d_A / 10 == pytest.approx(truth["d111_nm"][0], rel=0.003)
    assert result.order == "fcc"


def test_stage_on_data_sample_with_a_flat_pattern_and_a_missing_one(saxs, truth, tmp_path):
    q = saxs["q"]
    rng = np.random.default_rng(7)
    flat_expected = 3000.0 * (q / q[0]) ** -3 + 5.0
    flat = rng.poisson(flat_expected).astype(float)
    intensity = np.vstack([saxs["I"][0], flat, saxs["I"][1], saxs["I"][2]])
    sigma = np.vstack([saxs["sigma"][0], np.sqrt(flat_expected), saxs["sigma"][1], saxs["sigma"][2]])
    intensity[3] = np.nan  # what the integration leaves for a point without an image
    ids = ["p001", "flat", "p002", "gone"]
    warnings, done = [], []
    sheet = SimpleNamespace(point_ids=ids)
    status = np.array(["ok", "ok", "ok", "saxs: file not found"], dtype=object)
    upstream = {"saxs": ({"q": q, "I": intensity, "I_errors": sigma, "status": status},
                         {"wavelength_A": saxs["wavelength_A"]})}
    result = superlattice_stage(stage_context("superlattice", sheet, {"superlattice": {"scherrer_k": 0.94}}, upstream,
                                              warn=warnings.append, progress=lambda i, n: done.append((i, n))))
    assert result.stage == "superlattice"
    assert result.status[0] == result.status[2] == "ok"
    assert result.status[1] == "superlattice: no superlattice peak above the noise"
    assert result.status[3] == "superlattice: no SAXS pattern"
    assert warnings == ["test/flat: superlattice: no superlattice peak above the noise"]
    assert done[-1] == (8, 8)  # each point surveyed, then measured
    data = result.datasets
    assert list(data["order"]) == ["fcc", "", "fcc", ""]
    assert data["d_A"][0] / 10 == pytest.approx(truth["d111_nm"][0], rel=0.003)
    assert data["d_A"][2] / 10 == pytest.approx(truth["d111_nm"][1], rel=0.003)
    np.testing.assert_allclose(data["d_A"], 2 * np.pi / data["q1_A"])
    for key in ("q1_A", "d_A", "scherrer_nm", "lattice_constant_nm", "nn_distance_nm", "fwhm_q_A"):
        assert np.isnan(data[key][[1, 3]]).all() and np.isfinite(data[key][[0, 2]]).all(), key
    assert list(data["n_peaks"][[1, 3]]) == [0, 0] and data["n_peaks"][0] >= 4
    peaks_q = result.extra["saxs/peaks/q_A"]
    assert peaks_q.shape == (4, int(data["n_peaks"].max()))
    assert np.isnan(peaks_q[1]).all()
    np.testing.assert_allclose(result.extra["saxs/peaks/d_spacing_A"], 2 * np.pi / peaks_q)
    # q1 is the lattice's, fitted with all its lines: next to the observed 111, not equal to it.
    assert data["q1_A"][0] == pytest.approx(peaks_q[0][0], rel=0.003)
    assert list(result.extra["saxs/peaks/hkl"][0][:2]) == ["111", "200"]
    # The store writes it (strings, NaN padding, units from the names).
    write_part(tmp_path / "superlattice.h5", RUN, result)
    with h5py.File(tmp_path / "superlattice.h5") as h5:
        assert list(h5[f"{RUN}/superlattice/order"].asstr()[()]) == ["fcc", "", "fcc", ""]
        assert h5[f"{RUN}/superlattice/scherrer_nm"].attrs["units"] == "nm"
        assert h5[f"{RUN}/saxs/peaks/hkl"].shape == peaks_q.shape


# ------------------------------------------------------------- synthetic lattices


def _pattern(ratios, q1=0.08, fwhm=0.004, seed=0):
    """A SAXS pattern of a lattice with lines at q1 * ratios: a q^-4 envelope
    times 1 + Gaussian peaks (weaker with order), Poisson noise. No sphere's
    form factor: the model cannot describe it and the analysis falls back on
    the window fits, whose multiplicative model is exact here."""
    q = np.linspace(0.02, 0.35, 450)
    amplitudes = 3.0 / np.arange(1, len(ratios) + 1) ** 0.7
    s = 1 + sum(a * np.exp(-4 * math.log(2) * ((q - q1 * r) / fwhm) ** 2) for a, r in zip(amplitudes, ratios))
    expected = 2e5 * (q / 0.05) ** -4 * s + 20.0
    counts = np.random.default_rng(seed).poisson(expected).astype(float)
    return q, counts, np.sqrt(expected)


@pytest.mark.parametrize("order, ratios", [
    ("lamellar", [1, 2, 3]),
    ("bcc", [1, math.sqrt(2), math.sqrt(3), 2]),
    ("hexagonal", [1, math.sqrt(3), 2, math.sqrt(7)]),
    ("fcc", [1, math.sqrt(4 / 3), math.sqrt(8 / 3), math.sqrt(11 / 3), 2]),
])
def test_synthetic_patterns_classified(order, ratios):
    q, counts, sigma = _pattern(ratios)
    result = analyse_pattern(q, counts, sigma, 1.0)
    assert result.order == order
    assert result.q1_A == pytest.approx(0.08, rel=1e-3)
    assert result.first.q_A == pytest.approx(0.08, rel=1e-3)
    assert result.fwhm_q_A == pytest.approx(0.004, rel=0.05)
    assert len(result.peaks) == len(ratios)
    assert result.hypothesis.n_explained == len(ratios)
    # A power law is no sphere's form factor: the fallback says so in the status.
    assert result.model is None and NO_MODEL_NOTE in result.notes


def test_single_peak_has_no_order():
    """One peak fits every lattice: no order, no spacing, and the reason."""
    q, counts, sigma = _pattern([1])
    result = analyse_pattern(q, counts, sigma, 1.0)
    assert len(result.peaks) == 1
    assert result.order == "unknown" and result.hypothesis is None
    assert all(math.isnan(v) for v in (result.d_A, result.q1_A, result.lattice_constant_nm, result.nn_distance_nm))
    assert any(note.startswith("one peak, no lattice to index it by") for note in result.notes)


def test_too_few_points():
    with pytest.raises(InputError, match="usable points"):
        find_superlattice_peaks(np.linspace(0.01, 0.1, 10), np.ones(10))


@pytest.mark.parametrize("name", ["lamellar", "hexagonal", "bcc", "fcc"])
def test_index_exact_and_noisy_ratios(name):
    ratios = np.array([r for _, r in LATTICES[name][:5]])
    best = index_peaks(0.05 * ratios, lattices=["lamellar", "hexagonal", "bcc", "fcc"])[0]
    assert best.lattice == name and best.q1_A == pytest.approx(0.05, rel=1e-9)
    # 0.1 % scatter, as much as the position errors say (0.2 % floor): still that lattice and those lines.
    noisy = ratios * (1 + 0.001 * np.random.default_rng(1).standard_normal(ratios.size))
    best = index_peaks(0.05 * noisy, 5e-5 * noisy)[0]
    assert best.lattice == name
    assert best.hkl == tuple(label for label, _ in LATTICES[name][:5])
    assert best.q1_A == pytest.approx(0.05, rel=2e-3)


def test_index_edge_cases():
    # 1 : 2 is lamellar (bcc and hexagonal predict lines between that are not seen) ...
    assert index_peaks([0.1, 0.2])[0].lattice == "lamellar"
    # ... 1 : 1.155 only fcc explains, also without its higher lines.
    assert index_peaks([0.1, 0.11547])[0].lattice == "fcc"
    # fcc with 220 lost at a zero of the form factor, 222 merged into 311: one line missing.
    best = index_peaks([0.1, 0.11547, 0.1915])[0]
    assert best.lattice == "fcc" and best.missing == 1 and best.hkl == ("111", "200", "311")
    assert not index_peaks([0.1])[0].consistent
    assert not index_peaks([0.1, 0.1234, 0.1377, 0.1711])[0].consistent  # nothing fits
    # A stray peak costs one point; the lattice still wins.
    assert index_peaks([0.1, 0.1414, 0.1732, 0.2, 0.1275])[0].lattice == "bcc"
    # sc and bcc share 1 : sqrt 2 : sqrt 3 : 2 : sqrt 5 : sqrt 6; sqrt 7 tells them apart.
    six = 0.1 * np.sqrt([1, 2, 3, 4, 5, 6])
    assert index_peaks(six, lattices=["sc", "bcc"])[0].lattice == "sc"
    assert index_peaks(six, lattices=["bcc", "sc"])[0].lattice == "bcc"
    assert index_peaks(np.append(six, 0.1 * math.sqrt(7)), lattices=["sc", "bcc"])[0].lattice == "bcc"


# ------------------------------------------------------------------ the formulas


def test_scherrer_by_hand():
    q, fwhm, lam, k = 0.1, 0.01, 1.0332, 0.89
    theta = math.asin(q * lam / (4 * math.pi))
    b = 2 * (math.asin((q + fwhm / 2) * lam / (4 * math.pi)) - math.asin((q - fwhm / 2) * lam / (4 * math.pi)))
    expected_nm = k * lam / (b * math.cos(theta)) / 10
    size, err = scherrer_length_nm(q, fwhm, lam, k=k, fwhm_err_q_A=1e-4)
    assert size == pytest.approx(expected_nm, rel=1e-12)
    # In q: D = 2 pi K / FWHM_q, theta-independent (to first order in the width).
    assert size == pytest.approx(2 * math.pi * k / fwhm / 10, rel=1e-5)
    assert err == pytest.approx(size * 1e-4 / fwhm, rel=1e-4)
    # An XRD line at 2theta ~ 40 degrees: still the same to first order.
    assert scherrer_length_nm(2.0, 0.02, 0.7, k=k)[0] == pytest.approx(2 * math.pi * k / 0.02 / 10, rel=1e-3)
    # The instrument's width in quadrature: B_i = B / 2 gives D / sqrt(1 - 1/4).
    b_i_deg = math.degrees(b / 2)
    with_instrument = scherrer_length_nm(q, fwhm, lam, k=k, instrument_fwhm_deg=b_i_deg)[0]
    assert with_instrument == pytest.approx(expected_nm / math.sqrt(0.75), rel=1e-12)
    assert math.isnan(scherrer_length_nm(q, fwhm, lam, instrument_fwhm_deg=math.degrees(b))[0])
    assert math.isnan(scherrer_length_nm(q, float("nan"), lam)[0])


def test_lattice_constants():
    q1 = 0.09414
    d_nm = 2 * math.pi / q1 / 10
    a, a_err, nn = lattice_constants_nm("fcc", q1, 1e-5)
    assert a == pytest.approx(math.sqrt(3) * d_nm) and nn == pytest.approx(a / math.sqrt(2))
    assert a_err == pytest.approx(a * 1e-5 / q1)
    a, _, nn = lattice_constants_nm("bcc", q1)
    assert a == pytest.approx(math.sqrt(2) * d_nm) and nn == pytest.approx(a * math.sqrt(3) / 2)
    a, _, nn = lattice_constants_nm("hexagonal", q1)
    assert a == pytest.approx(2 * d_nm / math.sqrt(3)) and nn == pytest.approx(a)
    a, _, nn = lattice_constants_nm("lamellar", q1)
    assert a == pytest.approx(d_nm) and math.isnan(nn)
    assert all(math.isnan(v) for v in lattice_constants_nm("unknown", q1))


def test_settings_from_config():
    settings = SuperlatticeSettings.from_config({"scherrer_k": 0.94, "lattices": ["fcc", "bcc"], "q_min_A": None})
    assert settings.scherrer_k == 0.94 and settings.lattices == ("fcc", "bcc")
    assert SuperlatticeSettings.from_config(None) == SuperlatticeSettings.from_config({})
    with pytest.raises(ConfigError, match="scherer_k"):
        SuperlatticeSettings.from_config({"scherer_k": 0.9})
    with pytest.raises(ConfigError, match="hcp"):
        SuperlatticeSettings.from_config({"lattices": ["hcp"]})
