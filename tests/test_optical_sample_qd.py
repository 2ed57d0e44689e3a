"""The first exciton of data-sample's 6 nm HgTe dots (hgte_6nm, optical.band_gap: both), through the
whole pipeline, against the truth."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from dacpipe.synth import read_truth

ROOT = Path(__file__).resolve().parents[1]
RUN = "hgte_6nm"

# The d2A/dE2 minimum of a band on a curved background sits off its centre by
# -B''' sigma^4 / (3 a) (dacpipe.optical.exciton); over 600 noisy spectra per
# case (tests/test_exciton.py) its mean stays within 1 meV of the noise-free
# answer. On 30 noisy copies of hgte_6nm's spectra the mean offset was -0.1 meV.
BIAS_EV = 0.001
# The pull's spread is 0.9-1.2 (tests/test_exciton.py; 0.95 on those 30 copies):
# 4 sigma fails a right answer about once in 10^4 points.
PULL_BOUND = 4.0


@pytest.fixture(scope="module")
def store(sample_results):
    results, _ = sample_results
    with h5py.File(results / f"{RUN}.h5") as h5:
        g = h5[f"{RUN}/optical"]
        data = {name: g[name][()] for name in ("exciton/energy_eV", "exciton/energy_err_eV",
                                                "band_gap/band_gap_eV", "band_gap/band_gap_err_eV")}
        data["point"] = list(h5[f"{RUN}/points/point"].asstr()[()])
        data["status"] = list(h5[f"{RUN}/points/status"].asstr()[()])
    return data


@pytest.fixture(scope="module")
def truth():
    return read_truth(ROOT / "data-sample" / RUN / "truth.tsv")


@pytest.mark.slow
def test_exciton_energy_within_its_error_of_the_truth(store, truth):
    """Every point of the run has an exciton in the truth (0.66-0.75 eV, the
    band 0.30 eV below the Tauc edge of the continuum) and the store's
    ``optical/exciton/energy_eV`` is within 4 of its standard errors plus the
    1 meV bias bound of the second-derivative minimum."""
    assert store["point"] == list(truth["point"])
    expected = truth["exciton_eV"]
    has = np.isfinite(expected)
    assert has.sum() == 5
    measured, err = store["exciton/energy_eV"], store["exciton/energy_err_eV"]
    assert np.all(np.isfinite(measured[has])) and np.all((err[has] > 0) & (err[has] < 0.003))
    off = np.abs(measured - expected)[has]
    np.testing.assert_array_less(off, PULL_BOUND * err[has] + BIAS_EV)
    # the Tauc gap of the same spectra (the continuum's onset) is still there for the campaign
    gap = truth["band_gap_eV"]
    np.testing.assert_array_less(np.abs(store["band_gap/band_gap_eV"] - gap)[has], 0.005)


@pytest.mark.slow
def test_exciton_warnings_only_where_the_truth_has_none(store, truth):
    """A point's status names the exciton exactly when its truth has none (an
    empty ``exciton_eV``; every hgte_6nm point has one, so no status names it),
    and such a point's energy is NaN."""
    has = np.isfinite(truth["exciton_eV"])
    warned = np.array(["exciton" in status for status in store["status"]])
    np.testing.assert_array_equal(warned, ~has)
    assert np.all(np.isnan(store["exciton/energy_eV"][~has]))
