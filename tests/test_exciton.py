"""The first excitonic absorption peak (dacpipe.optical.exciton) against synthetic quantum-dot spectra of known centre."""

from __future__ import annotations

import numpy as np
import pytest

from dacpipe.core.errors import InputError
from dacpipe.optical.exciton import MIN_EXCITON_DEPTH, exciton_peak
from dacpipe.synth.optical import dac_baseline, edge_absorbance, qd_absorbance

ENERGY = np.linspace(1.6, 2.8, 500)
NOISE = 0.004  # the absorbance noise of data-sample's spectra


@pytest.mark.parametrize("centre", [1.95, 2.1, 2.3])
def test_noise_free_exciton_within_1p5_meV(centre):
    """A Gaussian first exciton (FWHM 80 meV) on a second transition, a
    continuum and the DAC baseline: the background's third derivative moves
    the true d2A/dE2 minimum by -0.55 meV (a fine-grid derivative of the
    same curve), the filter by 0.3 meV more; 1.5 meV bounds both."""
    fit = exciton_peak(ENERGY, qd_absorbance(ENERGY, centre))
    assert fit.energy_eV == pytest.approx(centre, abs=1.5e-3)
    # The window was set from the band: its lobe is 2 sigma = 0.85 FWHM = 68 meV.
    assert fit.lobe_width_eV == pytest.approx(0.85 * 0.08, rel=0.1)
    assert fit.window_eV == pytest.approx(fit.lobe_width_eV, rel=0.1)


def test_exciton_pull_on_noisy_spectra():
    """100 spectra with noise 0.004: the errors are the scatter. The pull
    (E - E_noise-free) / sigma has a standard deviation of 1.09 (measured);
    [0.8, 1.25] is 1 +/- 3 standard errors of a 100-sample standard
    deviation (0.07) with room for a 10 % error model. The mean is within
    1.5 meV of the true centre, as without noise."""
    clean = exciton_peak(ENERGY, qd_absorbance(ENERGY, 2.1)).energy_eV
    rng = np.random.default_rng(7)
    energies, errors = [], []
    for _ in range(100):
        fit = exciton_peak(ENERGY, qd_absorbance(ENERGY, 2.1) + rng.normal(0, NOISE, ENERGY.size))
        energies.append(fit.energy_eV)
        errors.append(fit.energy_err_eV)
    energies, errors = np.array(energies), np.array(errors)
    pull = (energies - clean) / errors
    assert 0.8 < np.std(pull) < 1.25
    assert abs(np.mean(pull)) < 3 * 1.1 / np.sqrt(pull.size)
    assert np.mean(energies) == pytest.approx(2.1, abs=1.5e-3)
    assert 0.5e-3 < np.median(errors) < 3e-3  # ~1.3 meV: a real error bar, not a token one


def test_a_straight_background_changes_nothing():
    """A straight line has no second derivative and no second differences:
    the same energy and error to rounding, however steep the line."""
    rng = np.random.default_rng(3)
    a = qd_absorbance(ENERGY, 2.1) + rng.normal(0, NOISE, ENERGY.size)
    plain = exciton_peak(ENERGY, a)
    tilted = exciton_peak(ENERGY, a + 0.7 - 1.3 * (ENERGY - 2.0))
    assert tilted.energy_eV == pytest.approx(plain.energy_eV, abs=1e-9)
    assert tilted.energy_err_eV == pytest.approx(plain.energy_err_eV, rel=1e-6)


def test_a_bare_edge_has_no_exciton():
    """data-sample's HgTe edge (square root with a 20 meV Urbach tail) has a
    deep d2A/dE2 minimum just above the gap but no peak or shoulder: refused
    with the reason, never reported as an exciton."""
    e = np.linspace(0.2, 1.6, 500)
    rng = np.random.default_rng(5)
    for _ in range(10):
        a = edge_absorbance(e, 0.8) + dac_baseline(e, 0.2, 0.05) + rng.normal(0, NOISE, e.size)
        with pytest.raises(InputError, match="no resolved exciton"):
            exciton_peak(e, a)


def test_noise_alone_has_no_exciton():
    """100 flat noisy spectra: none passes the depth threshold (the deepest
    noise minimum measured over all windows tried: 2.6 sigmas median, 4.1
    maximum, against MIN_EXCITON_DEPTH = 8)."""
    rng = np.random.default_rng(11)
    for _ in range(100):
        with pytest.raises(InputError, match="no exciton"):
            exciton_peak(ENERGY, 0.3 + rng.normal(0, NOISE, ENERGY.size))
    assert MIN_EXCITON_DEPTH >= 8


def test_the_first_of_two_excitons():
    """Two resolved bands: the lower one is the first exciton."""
    a = qd_absorbance(ENERGY, 2.0, 0.06) + qd_absorbance(ENERGY, 2.45, 0.06) - dac_baseline(ENERGY, 0.2, 0.05)
    assert exciton_peak(ENERGY, a).energy_eV == pytest.approx(2.0, abs=1.5e-3)


@pytest.mark.slow
def test_stage_exciton_beside_tauc(tmp_path):
    """Five quantum-dot spectra (files in nm) whose first exciton moves as
    2.00 + 0.020 P eV: with ``band_gap: both`` the optical stage stores each
    point's exciton (within 3 of its errors and the 1 meV bias above) and its E(P) (slope within 3
    of its standard errors of 20 meV/GPa) beside the Tauc group; with
    ``exciton`` alone there is no Tauc group; a bad value is a config error."""
    from dacpipe.core.errors import ConfigError
    from dacpipe.core.units import HC_EV_NM
    from dacpipe.io.sheet import read_sheet
    from dacpipe.optical import stage

    rng = np.random.default_rng(31)
    pressures = np.array([0.5, 1.5, 2.5, 3.5, 4.5])
    rows = ["point\tabsorption"]
    for k, p in enumerate(pressures):
        a = qd_absorbance(ENERGY, 2.0 + 0.02 * p) + rng.normal(0, NOISE, ENERGY.size)
        path = tmp_path / f"qd{k}.txt"
        path.write_text("".join(f"{HC_EV_NM / e:.4f}\t{v:.5f}\n" for e, v in zip(ENERGY[::-1], a[::-1])))
        rows.append(f"p{k}\t{path}")
    (tmp_path / "points.tsv").write_text("\n".join(rows) + "\n")
    sheet = read_sheet(tmp_path / "points.tsv")
    result = stage.optical_series(sheet, {"band_gap": "both"}, pressures, None)
    energy = result.datasets["exciton/energy_eV"]
    err = result.datasets["exciton/energy_err_eV"]
    assert np.all(err > 0) and np.all(np.abs(energy - (2.0 + 0.02 * pressures)) < 3 * err + 1e-3)
    assert "band_gap/band_gap_eV" in result.datasets and "urbach/urbach_energy_eV" in result.datasets
    alpha = float(result.extra["optical/exciton/fit/all/alpha_eV_per_GPa"])
    alpha_err = float(result.extra["optical/exciton/fit/all/alpha_err_eV_per_GPa"])
    assert abs(alpha - 0.020) < 3 * alpha_err + 2e-4  # + the 0.3 meV filter shift that drifts with the band
    only = stage.optical_series(sheet, {"band_gap": "exciton"}, pressures, None)
    assert not any(name.startswith("band_gap/") for name in only.datasets)
    np.testing.assert_array_equal(only.datasets["exciton/energy_eV"], energy)
    with pytest.raises(ConfigError):
        stage.settings({"band_gap": "peak"})
