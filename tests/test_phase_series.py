"""The structural stage on nanocrystal series generated from known truth
(:mod:`dacpipe.synth.powder`: true Voigt lines of 4-10 nm crystallites, a DAC
background, Poisson counts of the pixels in each of 3000 bins), against the
targets of issue 11: phases found where they hold >= 5 %, no phantom,
volumes within 1e-3 and 3 standard errors where a phase holds >= 20 %,
fractions within 0.05, honest errors (pull spread 0.7-1.5), transitions in
both directions.

The generator is not the fit's model: its lines are Voigt functions (the
fit uses pseudo-Voigts), its widths follow Scherrer and microstrain per line
with an instrument in 2theta, its intensities are the library structures'
with a Debye-Waller factor, its background is not a spline.
"""

import numpy as np
import pytest

from dacpipe.synth.powder import cdse_round_trip_series, hgte_coexistence_series
from dacpipe.xrd.indexing import IndexingSettings, index_series
from dacpipe.xrd.library import get_phase
from dacpipe.xrd.transitions import find_transitions


def _index(series, seed):
    names = list(series.sample_phases) + ([series.marker] if series.marker else [])
    intensity, sigma = series.patterns(seed)
    results, reasons, _ = index_series(series.q_A, intensity, sigma, series.wavelength_A, series.pressure_GPa,
                                       {n: get_phase(n) for n in names}, IndexingSettings.from_config({"phases": names}),
                                       markers=(series.marker,) if series.marker else ())
    assert all(r is not None for r in results), reasons
    return results


def _check_against_truth(series, results):
    """Presence, volumes and fractions against the truth; returns the volume pulls."""
    truth_fraction = series.fractions()
    pulls = []
    for name in series.sample_phases:
        truth_volume = series.volume_fu_A3(name)
        for i, result in enumerate(results):
            st, f_true = result.phases[name], truth_fraction[name][i]
            where = f"{name} at {series.pressure_GPa[i]} GPa"
            if f_true == 0:
                assert not st.present, f"phantom {where}: fraction {st.fraction:.3f}"
                assert st.cell is None or np.isnan(st.volume_fu_A3)
            if f_true >= 0.05:
                assert st.present, f"missed {where} (truth {f_true})"
            fraction = st.fraction if st.present else 0.0
            assert abs(fraction - f_true) < 0.05, where
            if st.present and f_true >= 0.2:
                deviation = st.volume_fu_A3 / truth_volume[i] - 1
                pull = (st.volume_fu_A3 - truth_volume[i]) / st.volume_fu_err_A3
                assert abs(deviation) < 1e-3, where
                pulls.append(pull)
    return np.array(pulls)


@pytest.mark.slow  # a 25-point series: 2 s (tests/test_phase_systems.py is the fast lane's)
def test_hgte_coexistence_series():
    """Zinc blende -> cinnabar -> rock salt with a long cinnabar + rock-salt
    coexistence (8-12.5 GPa): the case where the peak-matching stage put the
    cinnabar cell 1.5 % off, fractions 0.22 off and a zinc-blende phantom at 8.5 GPa."""
    series = hgte_coexistence_series()
    results = _index(series, seed=11)
    pulls = _check_against_truth(series, results)
    assert len(pulls) >= 25
    assert np.all(np.abs(pulls) < 3.5), pulls  # 1 in 2000 for a Gaussian, over ~40 pulls


@pytest.mark.slow  # ~1.1 s: 18 patterns indexed
def test_cdse_round_trip_finds_wurtzite_and_the_reverse_transition():
    """6 nm-class CdSe (5 nm wurtzite, whose 100/002/101 blend into one hump;
    4 nm rock salt) with 20 nm gold, compressed to 7 GPa and released: wurtzite
    found at every point it is in, the forward transition on compression and
    the reverse one on decompression, each with its direction."""
    series = cdse_round_trip_series()
    results = _index(series, seed=12)
    pulls = _check_against_truth(series, results)
    assert np.all(np.abs(pulls) < 4), pulls
    gold = [r.phases["Au"] for r in results]
    assert all(g.present and np.isnan(g.fraction) for g in gold)  # marker: fitted, left out of the fractions
    names = list(series.sample_phases)
    present = {n: np.array([r.phases[n].present for r in results]) for n in names}
    fraction = {n: np.array([r.phases[n].fraction if r.phases[n].present else 0.0 for r in results]) for n in names}
    ids = [f"p{i:02d}" for i in range(len(results))]
    t = find_transitions(names, present, fraction, series.pressure_GPa, ids)
    rows = set(zip(t["from_phase"], t["to_phase"], t["direction"]))
    assert rows == {("CdSe-wz", "CdSe-rs", "up"), ("CdSe-rs", "CdSe-wz", "down")}
    up = list(t["direction"]).index("up")
    down = list(t["direction"]).index("down")
    # Truth: up from 2.6 to 4.2 GPa, down from 1.6 to 0.4 GPa; the estimates lie
    # between the points that bracket them (steps of 0.5-0.7 GPa), from the
    # fractions' trend across the coexistence: within 0.15 GPa here.
    for row, onset, end in ((up, 2.6, 4.2), (down, 1.6, 0.4)):
        assert abs(t["onset_GPa"][row] - onset) < 0.15 and abs(t["end_GPa"][row] - end) < 0.15, row


def _fraction_pulls(series, results):
    """(fit - truth) / sigma of every fraction where sample phases coexist."""
    truth = series.fractions()
    pulls = []
    for name in series.sample_phases:
        for i, result in enumerate(results):
            st = result.phases[name]
            if st.present and 0 < truth[name][i] < 1:
                pulls.append((st.fraction - truth[name][i]) / st.fraction_err)
    return pulls


@pytest.mark.slow
def test_volume_and_fraction_errors_are_honest_over_noise_realisations():
    """Pull test: (fit - truth) / sigma of every volume where a phase holds
    >= 20 %, over three noise realisations of each series (~200 pulls): mean
    within 0.4 of 0 and spread between 0.7 and 1.5 (issue 11's target); the
    same for the fractions where phases coexist, per series (30 in CdSe, 60
    in HgTe), whose errors include the background model's part (statistical
    errors alone: spreads of 1.6 and 1.3)."""
    pulls = []
    for make in (hgte_coexistence_series, cdse_round_trip_series):
        series = make()
        fraction_pulls = []
        for seed in (21, 22, 23):
            results = _index(series, seed)
            pulls.append(_check_against_truth(series, results))
            fraction_pulls += _fraction_pulls(series, results)
        fraction_pulls = np.array(fraction_pulls)
        assert len(fraction_pulls) >= 30
        assert abs(fraction_pulls.mean()) < 0.5 and 0.7 < fraction_pulls.std() < 1.5, \
            (series.name, fraction_pulls.mean(), fraction_pulls.std())
    pulls = np.concatenate(pulls)
    assert len(pulls) > 150
    assert abs(pulls.mean()) < 0.4 and 0.7 < pulls.std() < 1.5, (pulls.mean(), pulls.std())
