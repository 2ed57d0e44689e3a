"""Indexing and EOS on data-sample, against the truth the images were made from."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from dacpipe.synth import read_truth

ROOT = Path(__file__).resolve().parents[1]
RUN = "hgte_thz"
PHASES = ("HgTe-zb", "HgTe-cinnabar", "HgTe-rs")


@pytest.fixture(scope="module")
def store(sample_results):
    return sample_results[0] / f"{RUN}.h5"


@pytest.fixture(scope="module")
def truth():
    return read_truth(ROOT / "data-sample" / RUN / "truth.tsv")


def test_phases_found_where_they_are(store, truth):
    with h5py.File(store) as h5:
        for phase in PHASES:
            present = h5[f"{RUN}/phases/{phase}/present"][()]
            expected = truth[f"{phase}/fraction"] > 0.05
            assert list(present) == list(expected), phase


def test_lattice_parameters_against_truth(store, truth):
    """Within 2e-4 relative wherever a phase is alone; where two coexist the
    minor one is determined less well, and must be within 3 of its own
    standard errors (which are then up to 1e-3 relative)."""
    with h5py.File(store) as h5:
        for phase, axes in (("HgTe-zb", "a"), ("HgTe-cinnabar", "ac"), ("HgTe-rs", "a")):
            present = h5[f"{RUN}/phases/{phase}/present"][()]
            alone = present & (truth[f"{phase}/fraction"] == 1.0)
            assert alone.sum() >= 2, phase
            for axis in axes:
                fitted = h5[f"{RUN}/phases/{phase}/{axis}_A"][()]
                error = h5[f"{RUN}/phases/{phase}/{axis}_err_A"][()]
                expected = truth[f"{phase}/{axis}_A"]
                np.testing.assert_array_less(np.abs(fitted / expected - 1)[alone], 2e-4, err_msg=f"{phase} {axis}")
                np.testing.assert_array_less(np.abs(fitted - expected)[present], 3 * error[present],
                                             err_msg=f"{phase} {axis}")


def test_phase_fractions_within_0_05(store, truth):
    """The issue's target for coexisting phases: fractions of formula units within 0.05."""
    with h5py.File(store) as h5:
        for phase in PHASES:
            fraction = h5[f"{RUN}/phases/{phase}/fraction"][()]
            np.testing.assert_array_less(np.abs(fraction - truth[f"{phase}/fraction"]), 0.05, err_msg=phase)


def test_transitions_within_one_pressure_step(store, truth):
    # The truth (data-sample/README.md): zb -> cinnabar from 2.4 to 3.6 GPa,
    # cinnabar -> rock salt from 7.8 to 9.6 GPa.
    expected = {("HgTe-zb", "HgTe-cinnabar"): (2.4, 3.6), ("HgTe-cinnabar", "HgTe-rs"): (7.8, 9.6)}
    step = np.max(np.diff(truth["pressure_GPa"]))
    with h5py.File(store) as h5:
        t = h5[f"{RUN}/transitions"]
        found = {(a, b): (onset, end) for a, b, onset, end in zip(
            t["from_phase"].asstr()[()], t["to_phase"].asstr()[()], t["onset_GPa"][()], t["end_GPa"][()])}
    assert set(found) == set(expected)
    for pair, (onset, end) in expected.items():
        assert abs(found[pair][0] - onset) < step and abs(found[pair][1] - end) < step


def test_zinc_blende_bulk_modulus(store):
    # The images were drawn with the library's HgTe-zb EOS: K0 = 42.3 GPa (BM3, K' = 4).
    with h5py.File(store) as h5:
        eos = h5[f"{RUN}/eos/HgTe-zb"]
        k0, k0_err = eos["K0_GPa"][()], eos["K0_err_GPa"][()]
        assert eos["n_points"][()] >= 6
    assert abs(k0 - 42.3) / 42.3 < 0.03
    assert abs(k0 - 42.3) < 2 * k0_err


def test_a_peak_no_phase_explains_is_reported(store, truth):
    """A gasket line added to the first pattern (pure zinc blende) is reported,
    left out of the fit, and the zinc blende lattice does not move."""
    from dacpipe.xrd.indexing import IndexingSettings, index_series
    from dacpipe.xrd.library import get_phase

    with h5py.File(store) as h5:
        q = h5[f"{RUN}/xrd/pixel_mean_q_A"][()]
        intensity = h5[f"{RUN}/xrd/I"][0].copy()
        sigma = h5[f"{RUN}/xrd/I_errors"][0]
        wavelength = h5[f"{RUN}/xrd"].attrs["wavelength_A"]
        a_first, a_err = h5[f"{RUN}/phases/HgTe-zb/a_A"][0], h5[f"{RUN}/phases/HgTe-zb/a_err_A"][0]
        chi2_first = h5[f"{RUN}/phases/reduced_chi2"][0]
    gasket_q = 2.95  # between zinc blende 220 (2.75) and 311 (3.23)
    intensity += 400 * np.exp(-0.5 * ((q - gasket_q) / 0.01) ** 2)
    results, _, _ = index_series(q, intensity[None], sigma[None], wavelength, truth["pressure_GPa"][:1],
                                 {"HgTe-zb": get_phase("HgTe-zb")},
                                 IndexingSettings.from_config({"phases": ["HgTe-zb"]}))
    result = results[0]
    assert any(abs(u - gasket_q) < 0.005 for u in result.unexplained_q_A)
    # Left out of the fit: the lattice stays within a tenth of its error, the
    # fit quality is that of the clean pattern.
    assert abs(result.phases["HgTe-zb"].cell[0] - a_first) < 0.1 * a_err
    assert result.reduced_chi2 < 1.2 * chi2_first


def test_scherrer_crystallite_sizes(store, truth):
    """Sizes per phase and point from the refined line widths. The images were
    drawn with K = 0.94 (data-sample/README.md), the store uses the config's
    0.89: rescaled, within 5 % of truth wherever the phase is present. The
    instrument (0.03 deg Gaussian) and the pixels widen the lines by 1-3 %,
    which the default config (instrument_fwhm_deg 0) does not take out."""
    with h5py.File(store) as h5:
        for phase in PHASES:
            present = h5[f"{RUN}/phases/{phase}/present"][()]
            size = h5[f"{RUN}/phases/{phase}/crystallite_nm"][()] * 0.94 / 0.89
            expected = truth[f"{phase}/crystallite_nm"]
            np.testing.assert_array_less(np.abs(size / expected - 1)[present], 0.05, err_msg=phase)
            assert np.all(np.isnan(size[~present]))


def test_scherrer_formula_by_hand():
    from dacpipe.xrd.indexing import scherrer_size_nm

    # 10 nm, K = 0.9, lambda = 0.4133 A, at 2theta = 10 deg: B = K lambda / (D cos theta).
    theta = np.radians(5.0)
    fwhm_2theta = 0.9 * 0.4133 / (100.0 * np.cos(theta))
    fwhm_q = 2 * np.pi / 0.4133 * np.cos(theta) * fwhm_2theta
    q = 4 * np.pi / 0.4133 * np.sin(theta)
    size, err = scherrer_size_nm(q, fwhm_q, 0.01 * fwhm_q, 0.4133, k=0.9)
    assert size == pytest.approx(10.0, rel=1e-12) and err == pytest.approx(0.1, rel=1e-9)
    # An instrument as wide as the line leaves nothing to measure.
    assert np.isnan(scherrer_size_nm(q, fwhm_q, 0.0, 0.4133, 0.9, np.degrees(fwhm_2theta))[0])


def test_the_stored_model_explains_every_pattern(store):
    """The stored model (phases + background) on the patterns: a reduced chi^2
    near 1 (2 allowed at the point whose diamond spot the integration let
    through, whose bins are left out of the fit), every present phase above
    its F-test's critical value, and its lines stored as integer hkl."""
    with h5py.File(store) as h5:
        g = h5[f"{RUN}/phases"]
        chi2 = g["reduced_chi2"][()]
        assert np.all(chi2 < 2.5), chi2
        assert np.median(chi2) < 1.2, chi2
        intensity, sigma = h5[f"{RUN}/xrd/I"][()], h5[f"{RUN}/xrd/I_errors"][()]
        calc = g["calc"][()]
        # The model is stored where it was fitted: from half the candidates' lowest line up.
        q, (q_lo, q_hi) = h5[f"{RUN}/xrd/q"][()], g.attrs["q_range_A"]
        fitted = (q >= q_lo) & (q <= q_hi)
        assert q_lo > q[0] and np.all(np.isnan(calc[:, ~fitted])) and np.all(np.isfinite(calc[:, fitted]))
        assert np.all(calc[:, fitted] >= g["background"][()][:, fitted] - 1e-3 * np.abs(calc[:, fitted]))
        ok = np.isfinite(sigma) & (sigma > 0) & fitted[None, :]
        residual = ((intensity - calc) / np.where(ok, sigma, 1))[ok]
        assert np.median(np.abs(residual)) < 1.0  # Gaussian: 0.67
        for phase in PHASES:
            present = g[f"{phase}/present"][()]
            assert np.all(g[f"{phase}/evidence_F"][()][present] > g[f"{phase}/critical_F"][()][present])
            assert g[f"{phase}/hkl_used"].dtype.kind == "i"
            assert np.all(np.isnan(g[f"{phase}/volume_fu_A3"][()][~present]))


def test_eos_reads_the_cells_and_the_transitions(store, truth):
    """The EOS stage gets each phase's cell edges and the series' transitions
    from the phases part: cinnabar's axial moduli, and at each transition the
    volume change, which matches the truth's at the coexistence points
    (volumes per formula unit of both phases at the same pressures)."""
    with h5py.File(store) as h5:
        eos = h5[f"{RUN}/eos"]
        assert {"a", "c"} <= set(eos["HgTe-cinnabar/axes"])
        assert "axes" not in eos["HgTe-zb"]       # cubic: one edge, M = 3 K
        for axis in ("a", "c"):
            m0, err = eos[f"HgTe-cinnabar/axes/{axis}/M0_GPa"][()], eos[f"HgTe-cinnabar/axes/{axis}/M0_err_GPa"][()]
            assert m0 > 0 and 0 < err < m0
        pairs = list(zip(eos["transitions/from_phase"].asstr()[()], eos["transitions/to_phase"].asstr()[()]))
        dv, dv_err = eos["transitions/delta_V_rel"][()], eos["transitions/delta_V_rel_err"][()]
    assert pairs == [("HgTe-zb", "HgTe-cinnabar"), ("HgTe-cinnabar", "HgTe-rs")]
    for (a, b), value, err in zip(pairs, dv, dv_err):
        both = (truth[f"{a}/fraction"] > 0) & (truth[f"{b}/fraction"] > 0)
        expected = (truth[f"{b}/volume_fu_A3"] / truth[f"{a}/volume_fu_A3"] - 1)[both]
        assert both.sum() >= 1, (a, b)
        # the onset lies in the coexistence range, across which V_B/V_A - 1 varies little
        assert expected.min() - 3 * err - 0.005 < value < expected.max() + 3 * err + 0.005, (a, b, value, expected)
