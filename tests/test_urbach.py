"""The Urbach energy (dacpipe.optical.urbach) against synthetic tails of known E_U."""

from __future__ import annotations

import numpy as np
import pytest

from dacpipe.core.errors import InputError
from dacpipe.optical.tauc import absorption_inflection, tauc_gap
from dacpipe.optical.urbach import urbach_energy, urbach_range
from dacpipe.synth.optical import dac_baseline, edge_absorbance, urbach_edge_absorbance

ENERGY = np.linspace(0.2, 1.6, 500)
NOISE = 0.004


@pytest.mark.parametrize("e_u", [0.01, 0.02, 0.04])
def test_noise_free_tail_on_a_straight_baseline(e_u):
    """ln A - baseline = ln A_t + (E - Et)/E_U exactly below Eg: the fit
    returns E_U to 1e-6 (the optimiser's tolerance), and the baseline."""
    a = urbach_edge_absorbance(ENERGY, 0.8, e_u) + 0.25 + 0.05 * (ENERGY - 0.8)
    fit = urbach_energy(ENERGY, a, 0.8, 0.3)
    assert fit.urbach_energy_eV == pytest.approx(e_u, rel=1e-6)
    assert fit.baseline[1] == pytest.approx(0.05, abs=1e-6)


def test_urbach_pull_on_noisy_tails():
    """100 spectra (E_U = 20 meV, noise 0.004, the DAC baseline with its
    1/lambda^4 scattering that the straight baseline only approximates):
    pull standard deviation in [0.75, 1.3] (1 +/- 3 standard errors of a
    100-sample standard deviation, with room for the curved baseline), mean
    within 3 standard errors of the mean of the truth."""
    rng = np.random.default_rng(17)
    values, errors = [], []
    for _ in range(100):
        a = urbach_edge_absorbance(ENERGY, 0.8, 0.02) + dac_baseline(ENERGY, 0.2, 0.06) \
            + rng.normal(0, NOISE, ENERGY.size)
        fit = urbach_energy(ENERGY, a, 0.8, 0.3)
        values.append(fit.urbach_energy_eV)
        errors.append(fit.urbach_energy_err_eV)
    values, errors = np.array(values), np.array(errors)
    pull = (values - 0.02) / errors
    assert 0.75 < np.std(pull) < 1.3
    assert abs(np.mean(values) - 0.02) < 3 * np.std(values) / np.sqrt(values.size)
    assert 2e-4 < np.median(errors) < 2e-3


@pytest.mark.slow
def test_stage_range_below_the_tauc_gap():
    """The range the stage uses (15 edge widths below the Tauc gap, up to one
    below it) on 60 spectra per E_U: the mean within 3 standard errors of
    the truth (10 and 40 meV: a fifth and twice data-sample's tail)."""
    rng = np.random.default_rng(23)
    for e_u in (0.01, 0.04):
        values = []
        for _ in range(60):
            a = urbach_edge_absorbance(ENERGY, 0.8, e_u) + dac_baseline(ENERGY, 0.2, 0.06) \
                + rng.normal(0, NOISE, ENERGY.size)
            gap = tauc_gap(ENERGY, a).band_gap_eV
            lo, hi = urbach_range(gap, absorption_inflection(ENERGY, a).width_eV)
            try:
                values.append(urbach_energy(ENERGY, a, hi, hi - lo).urbach_energy_eV)
            except InputError as err:  # a weak 10 meV tail: refused now and then, with the reason
                assert "no Urbach tail" in str(err)
        assert len(values) >= 50
        assert abs(np.mean(values) - e_u) < 3 * np.std(values) / np.sqrt(len(values))


def test_hgte_tail_has_the_slope_of_alpha():
    """data-sample's edges put the Urbach form on alpha E (Tauc's product),
    so ln A falls with slope 1/E_U - 1/E: at E = 0.75 eV the E_U seen is
    1/(1/0.020 - 1/0.75) = 20.5 meV. 20 spectra: mean within 3 standard errors."""
    rng = np.random.default_rng(29)
    values = []
    for _ in range(20):
        a = edge_absorbance(ENERGY, 0.8) + dac_baseline(ENERGY, 0.2, 0.06) + rng.normal(0, NOISE, ENERGY.size)
        gap = tauc_gap(ENERGY, a).band_gap_eV
        lo, hi = urbach_range(gap, absorption_inflection(ENERGY, a).width_eV)
        values.append(urbach_energy(ENERGY, a, hi, hi - lo).urbach_energy_eV)
    assert abs(np.mean(values) - 1 / (1 / 0.020 - 1 / 0.75)) < 3 * np.std(values) / np.sqrt(len(values))


def test_no_tail_is_refused():
    """A flat noisy absorbance has no tail: NaN with a reason, not a number."""
    rng = np.random.default_rng(2)
    with pytest.raises(InputError, match="Urbach"):
        urbach_energy(ENERGY, 0.3 + 0.01 * ENERGY + rng.normal(0, NOISE, ENERGY.size), 0.8, 0.3)
