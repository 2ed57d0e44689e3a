"""data-sample's heated series ``au_hot`` against its truth (issue 14, item 2).

20 nm gold with a Sm:SrB4O7 chip heated from 300 to 750 K at ~6 GPa
(:func:`dacpipe.synth.runs.write_au_hot`): per point a Sm:SrB4O7 spectrum
whose 0-0 line carries the pressure (Rashchenko et al. 2015) and the thermal
shift from the 298 K of lambda0, and a frame of gold whose cell is that of
its thermal EOS (Fei et al. 2007) at the true pressure and temperature. Two
runs read the same sheet and files: ``au_hot`` (the temperature-corrected Sm
gauge) and ``au_hot_marker`` (gold through its thermal EOS); a store holds one
pressure group. The stores are those of the session fixture
``sample_results`` (the whole data-sample through ``dacpipe run``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from dacpipe.eos.models import pressure_GPa as isotherm_pressure_GPa
from dacpipe.pressure.scales import get_scale, temperature_corrected_position
from dacpipe.synth import read_truth
from dacpipe.synth.ruby import thermally_shifted_sm_nm
from dacpipe.synth.runs import (
    AU_HOT_REFERENCE_K,
    AU_HOT_SM_LAMBDA0_NM,
    AU_HOT_SM_SCALE,
    gold_cell_at,
)
from dacpipe.xrd.library import get_phase
from dacpipe.xrd.marker import marker_pressure_GPa

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "data-sample" / "au_hot"


@pytest.fixture(scope="module")
def truth():
    return read_truth(FOLDER / "truth.tsv")


def read_store(results: Path, run: str) -> dict:
    """The run's entry as a dict of arrays (path -> value) plus the pressure group's attributes."""
    out = {}
    with h5py.File(results / f"{run}.h5") as h5:
        entry = h5[run]
        entry.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        out["@pressure"] = dict(entry["pressure"].attrs)
    return out


@pytest.fixture(scope="module")
def sm_store(sample_results):
    return read_store(sample_results[0], "au_hot")


@pytest.fixture(scope="module")
def marker_store(sample_results):
    return read_store(sample_results[0], "au_hot_marker")


def test_the_truth_is_a_heated_run_at_nearly_constant_load(truth):
    """What the issue asks for: a few points from room temperature to several
    hundred K near one pressure (the cell gaining ~0.6 GPa on heating), and
    both gauges' truths made from the package's own laws."""
    t, p = truth["temperature_K"], truth["pressure_GPa"]
    np.testing.assert_array_equal(t, [300.0, 450.0, 600.0, 750.0])
    assert 5.5 < p.min() and p.max() < 7.0 and 0.3 < p[-1] - p[0] < 0.9
    for pressure, temperature, line, a_A in zip(p, t, truth["sm_line_nm"], truth["Au/a_A"]):
        assert thermally_shifted_sm_nm(pressure, temperature, scale_name=AU_HOT_SM_SCALE,
                                       lambda0_nm=AU_HOT_SM_LAMBDA0_NM) == pytest.approx(line, abs=1e-6)
        assert gold_cell_at(pressure, temperature)[0] == pytest.approx(a_A, abs=1e-6)


@pytest.mark.parametrize("temperature_K", [80.0, 298.0, 500.0, 750.0, 900.0])
def test_sm_line_generator_is_the_inverse_of_the_correction(temperature_K):
    """The synthetic line, corrected by the pipeline's own Datchi 2007 law, reads
    the pressure back to 1e-9 GPa on either scale."""
    for name, x0 in (("datchi1997", 685.41), ("rashchenko2015", 685.51)):
        line = thermally_shifted_sm_nm(6.3, temperature_K, scale_name=name, lambda0_nm=x0, reference_K=298.0)
        corrected = temperature_corrected_position(line, temperature_K, 298.0, gauge="sm-srb4o7")
        assert get_scale(name).pressure_GPa(corrected, x0) == pytest.approx(6.3, abs=1e-9)


@pytest.mark.parametrize("temperature_K", [300.0, 450.0, 750.0, 1200.0])
def test_gold_cell_reads_back_through_the_marker(temperature_K):
    """The truth's gold cell, read by the marker's thermal EOS, gives the
    pressure back to 1e-8 GPa (the root finding is to 1e-12 A^3); the cell at
    300 K is the library's ``cell_at``."""
    a = gold_cell_at(6.2, temperature_K)[0]
    assert marker_pressure_GPa(get_phase("Au"), a**3, 0.0, temperature_K)[0] == pytest.approx(6.2, abs=1e-8)
    if temperature_K == 300.0:
        assert a == pytest.approx(get_phase("Au").cell_at(6.2)[0], abs=1e-12)


def test_sm_pressures_at_every_temperature(sm_store, truth):
    """Each point's Sm:SrB4O7 pressure within 3 errors of the truth, on the
    Rashchenko 2015 scale, and the temperature correction is what brings the
    hot points back.

    Tolerance: 3 x hypot(fit error, temperature term), the errors the pipeline
    gives a point whose lambda0 is exact (the truth is drawn with the
    configured lambda0, so the 0.40 GPa lambda0 term, common to all points, is
    left out: with it the test could not see a 1 GPa mistake). The temperature
    term is the configured 2 K uncertainty of the thermocouple through the
    line's thermal slope (0.0004 GPa at 300 K, 0.021 GPa at 750 K), so at 750 K
    the tolerance is 0.065 GPa: the correction of +0.69 nm is checked to
    0.015 nm. Measured: -0.001 to +0.006 GPa; against the fit error alone
    (0.002-0.005 GPa) the pulls are -0.2, -0.1, +2.1, +0.4.

    Read without the correction (the raw line on the scale) the pressures
    would be -0.001, +0.35, +1.34 and +2.74 GPa off at 300, 450, 600 and
    750 K: asserted below to be more than 10 tolerances off at 600 K and above.
    """
    assert sm_store["@pressure"]["gauge"] == "sm-srb4o7"
    assert sm_store["@pressure"]["scale"] == "rashchenko2015"
    assert sm_store["@pressure"]["x0"] == AU_HOT_SM_LAMBDA0_NM
    assert sm_store["@pressure"]["reference_temperature_K"] == AU_HOT_REFERENCE_K
    assert all(s == b"ok" for s in sm_store["pressure/status"])
    np.testing.assert_array_equal(sm_store["points/temperature_K"], truth["temperature_K"])
    pressure = sm_store["pressure/pressure_GPa"]
    fit = sm_store["pressure/pressure_err_fit_GPa"]
    temperature_term = sm_store["pressure/pressure_err_temperature_GPa"]
    tolerance = 3.0 * np.hypot(fit, temperature_term)
    error = pressure - truth["pressure_GPa"]
    assert np.all(np.abs(error) < tolerance), (error, tolerance)
    # The temperature term grows with the line's thermal slope, as it should.
    assert np.all(np.diff(temperature_term) > 0) and 0.015 < temperature_term[-1] < 0.03
    uncorrected = get_scale(AU_HOT_SM_SCALE).pressure_GPa(sm_store["pressure/before/line_nm"],
                                                         AU_HOT_SM_LAMBDA0_NM) - truth["pressure_GPa"]
    hot = truth["temperature_K"] >= 600.0
    assert np.all(uncorrected[hot] > 10.0 * tolerance[hot]), uncorrected
    assert uncorrected[-1] == pytest.approx(2.74, abs=0.05)


def test_gold_marker_pressures_at_every_temperature(marker_store, truth):
    """Each point's gold-marker pressure within 3 errors of the truth through
    gold's thermal EOS at the sheet's temperature.

    Tolerance: 3 x the marker's error, K(V)/V sigma_V of the refined cell
    (0.005-0.009 GPa here): the truth's cell is made with the library's own
    EOS and thermal parameters, so their uncertainty (not in the error) does
    not enter. Measured: -0.006 to +0.003 GPa, pulls -0.9, -0.2, +0.4, 0.0.

    Read on the 300 K isotherm instead (an isothermal EOS), the same volumes
    would give -0.006, -1.09, -2.17 and -3.26 GPa off at 300, 450, 600 and
    750 K: gold's thermal pressure, asserted below to be more than 30
    tolerances at 600 K and above.
    """
    assert marker_store["@pressure"]["gauge"] == "xrd-marker"
    assert marker_store["@pressure"]["marker"] == "Au"
    assert all(s == b"ok" for s in marker_store["pressure/status"])
    pressure, sigma = marker_store["pressure/pressure_GPa"], marker_store["pressure/pressure_err_GPa"]
    assert np.all((sigma > 0.002) & (sigma < 0.02)), sigma
    error = pressure - truth["pressure_GPa"]
    assert np.all(np.abs(error) < 3.0 * sigma), (error, sigma)
    # The refined cell is the truth's, within 3 of its errors.
    cell_error = marker_store["pressure/marker/a_A"] - truth["Au/a_A"]
    assert np.all(np.abs(cell_error) < 3.0 * marker_store["pressure/marker/a_err_A"]), cell_error
    gold = get_phase("Au")
    isothermal = np.array([isotherm_pressure_GPa(gold.eos, gold.eos.V0_A3 * (a / gold.cell[0]) ** 3)
                           for a in marker_store["pressure/marker/a_A"]]) - truth["pressure_GPa"]
    hot = truth["temperature_K"] >= 600.0
    assert np.all(-isothermal[hot] > 30.0 * 3.0 * sigma[hot]), isothermal
    assert isothermal[-1] == pytest.approx(-3.26, abs=0.05)


def test_the_two_gauges_agree(sm_store, marker_store):
    """Sm:SrB4O7 and gold read the same points alike: within 3 x the
    hypot of their random errors (fit and temperature terms of the Sm, the
    marker's cell term), the two calibrations' truths being the package's
    own. Measured: gold -0.006 to -0.002 GPa from the Sm."""
    sm_sigma = np.hypot(sm_store["pressure/pressure_err_fit_GPa"], sm_store["pressure/pressure_err_temperature_GPa"])
    difference = marker_store["pressure/pressure_GPa"] - sm_store["pressure/pressure_GPa"]
    assert np.all(np.abs(difference) < 3.0 * np.hypot(sm_sigma, marker_store["pressure/pressure_err_GPa"]))


def test_sm_gradient_from_the_second_chip(sm_store, truth):
    """The second Sm chip (sheet column ``ruby_2``, near the gasket) reads its
    own pressure and the gradient over the chamber at every temperature.

    Tolerance: 4 sigma of the difference of two independent readings, each
    sigma its line-fit error through dP/dl of the scale (0.002-0.005 GPa);
    both chips sit on one scale at one temperature, so the lambda0 and
    temperature terms cancel in the spread. Truth 0.181-0.197 GPa; measured
    0.182-0.190 GPa, the largest miss -0.010 GPa at 600 K (2.5 sigma)."""
    assert list(sm_store["@pressure"]["gauge_position_columns"]) == ["ruby_2"]
    assert all(s == b"ok" for s in sm_store["pressure/ruby_2/status"])
    scale, x0 = get_scale(AU_HOT_SM_SCALE), AU_HOT_SM_LAMBDA0_NM

    def reading_err(group):
        return scale.slope_GPa_per_unit(sm_store[f"pressure/{group}/line_nm"], x0) * sm_store[
            f"pressure/{group}/line_err_nm"]

    err_2 = reading_err("ruby_2")
    sigma = np.hypot(reading_err("before"), err_2)
    assert np.all(sigma < 0.01), sigma
    expected = truth["pressure_sm_2_GPa"] - truth["pressure_GPa"]
    assert np.all(np.abs(sm_store["pressure/pressure_gradient_GPa"] - expected) < 4.0 * sigma)
    assert np.all(np.abs(sm_store["pressure/ruby_2/pressure_GPa"] - truth["pressure_sm_2_GPa"])
                  < 3.0 * np.hypot(err_2, sm_store["pressure/pressure_err_temperature_GPa"]))
