"""Band gaps and PL of data-sample's HgTe series, through the whole pipeline, against the truth."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from dacpipe.synth import read_truth
from dacpipe.synth.optical import GAP_TRUTH, STOKES_SHIFT_EV

ROOT = Path(__file__).resolve().parents[1]
RUN = "hgte_thz"


@pytest.fixture(scope="module")
def optical(sample_results):
    results, _ = sample_results
    with h5py.File(results / f"{RUN}.h5") as h5:
        g = h5[f"{RUN}/optical"]
        data = {name: g[name][()] for name in ("band_gap/band_gap_eV", "band_gap/band_gap_err_eV",
                                                "pl_peak/energy_eV")}
        data["phase"] = list(g["band_gap/phase"].asstr()[()])
        data["status"] = list(h5[f"{RUN}/points/status"].asstr()[()])
        for kind in ("band_gap", "pl_peak"):
            for phase in g[f"{kind}/fit"]:
                fit = g[f"{kind}/fit/{phase}"]
                data[(kind, phase)] = {name: fit[name][()] for name in fit if name != "points"}
    return data


@pytest.fixture(scope="module")
def truth():
    return read_truth(ROOT / "data-sample" / RUN / "truth.tsv")


def test_band_gaps_and_pl_within_10_meV(optical, truth):
    """The issue's bound. The Tauc gaps come back within ~1 meV: the edge is
    sampled every ~3 meV with absorbance noise 0.004."""
    gap = truth["band_gap_eV"]
    has_gap = np.isfinite(gap)
    assert has_gap.sum() >= 10
    np.testing.assert_array_less(np.abs(optical["band_gap/band_gap_eV"] - gap)[has_gap], 0.010)
    np.testing.assert_array_less(np.abs(optical["pl_peak/energy_eV"] - truth["pl_energy_eV"])[has_gap], 0.010)
    assert np.all(optical["band_gap/band_gap_err_eV"][has_gap] < 0.010)


def test_metallic_points_are_nan_with_a_reason(optical, truth):
    metallic = ~np.isfinite(truth["band_gap_eV"])
    assert metallic.sum() >= 2
    assert np.all(np.isnan(optical["band_gap/band_gap_eV"][metallic]))
    for i in np.flatnonzero(metallic):
        assert "no absorption edge in the spectrum" in optical["status"][i]
        assert "no emission peak above noise" in optical["status"][i]


def test_gap_versus_pressure_per_phase_within_errors(optical):
    """Fitted per phase, with the phase of each point from the diffraction
    stage: each coefficient within 3 of its standard errors of the truth the
    spectra were drawn from (zinc blende opening at +30 meV/GPa, cinnabar
    closing at -139 meV/GPa)."""
    for phase in ("HgTe-zb", "HgTe-cinnabar"):
        E0, alpha, beta = GAP_TRUTH[phase]
        for kind, shift in (("band_gap", 0.0), ("pl_peak", STOKES_SHIFT_EV)):
            fit = optical[(kind, phase)]
            assert abs(fit["E0_eV"] - (E0 - shift)) < 3 * fit["E0_err_eV"], (kind, phase)
            assert abs(fit["alpha_eV_per_GPa"] - alpha) < 3 * fit["alpha_err_eV_per_GPa"], (kind, phase)
            if np.isfinite(fit["beta_err_eV_per_GPa2"]):
                assert abs(fit["beta_eV_per_GPa2"] - beta) < 3 * fit["beta_err_eV_per_GPa2"], (kind, phase)
    zb = optical[("band_gap", "HgTe-zb")]
    assert abs(zb["alpha_eV_per_GPa"] - 0.030) < 0.005
    assert abs(optical[("band_gap", "HgTe-cinnabar")]["alpha_eV_per_GPa"] + 0.139) < 0.005
