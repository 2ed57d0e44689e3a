"""Temperature (issue 14.2): gauge thermal shifts, marker thermal EOS, E(T) fits."""

import math

import numpy as np
import pytest

from dacpipe.core.errors import InputError
from dacpipe.eos.models import (EosParams, ThermalParams, debye_function_3, pressure_at_temperature_GPa,
                                thermal_pressure_GPa)
from dacpipe.optical.temperature_fit import (bose_einstein_eV, fit_energy_vs_temperature, varshni_eV)
from dacpipe.pressure.gauges import GAUGES
from dacpipe.pressure.scales import (get_scale, ruby_thermal_shift_nm, sm_srb4o7_thermal_shift_nm,
                                     temperature_corrected_position, thermal_slope_nm_per_K)
from dacpipe.xrd.library import get_phase, thermal_library
from dacpipe.xrd.marker import marker_pressure_GPa

# --- ruby: Datchi et al. 2007, eqs. 2-4 -------------------------------------------------


@pytest.mark.parametrize("temperature_K, expected_nm", [
    # eq. 3: flat below 50 K
    (10.0, -0.887), (30.0, -0.887), (50.0, -0.887),
    # eq. 4, dT = -196: 6.64e-3 dT + 6.76e-6 dT^2 - 2.33e-8 dT^3 = -1.30144 + 0.25970 + 0.17544
    (100.0, -0.86630),
    # eq. 4, dT = -96: -0.63744 + 0.06230 + 0.02062
    (200.0, -0.55452),
    # eq. 2, dT = 504: 3.75984 - 0.76457 + 1.12148
    (800.0, 4.11675),
])
def test_ruby_shift_datchi2007(temperature_K, expected_nm):
    assert ruby_thermal_shift_nm(temperature_K) == pytest.approx(expected_nm, abs=2e-4)


def test_ruby_low_temperature_is_no_longer_the_turned_over_cubic():
    # Vos & Schouten's cubic (used before) relative to 296 K at 10 K is 0.07 nm
    # above Datchi's flat -0.887 nm: 0.2 GPa of ruby pressure at 10 K.
    def vos(t):
        dt = t - 300.0
        return 6.591e-3 * dt + 7.624e-6 * dt**2 - 1.733e-8 * dt**3
    old = vos(10.0) - vos(296.0)
    assert old - ruby_thermal_shift_nm(10.0) == pytest.approx(0.07, abs=0.01)
    # The gauge is read down to 10 K without a warning, and the slope there is 0.
    assert GAUGES["ruby"].temperature_range_K == (10.0, 900.0)
    assert thermal_slope_nm_per_K(20.0) == 0.0
    # eq. 2's derivative at 400 K: 7.46e-3 - 2 (3.01e-6) 104 + 3 (8.76e-9) 104^2 = 7.118e-3 nm/K
    assert thermal_slope_nm_per_K(400.0) == pytest.approx(7.118e-3, abs=1e-5)


def test_ruby_at_10K_and_ambient_pressure_reads_zero():
    cold = 694.24 + ruby_thermal_shift_nm(10.0) - ruby_thermal_shift_nm(298.0)
    corrected = temperature_corrected_position(cold, 10.0, 298.0)
    assert get_scale("shen2020").pressure_GPa(corrected, 694.24) == pytest.approx(0.0, abs=1e-9)


# --- Sm:SrB4O7 ----------------------------------------------------------------------------


def test_sm_shift_small_near_room_temperature_and_corrected():
    # Near room temperature the slope is Datchi 1997's ~-1e-4 nm/K (-8.7e-5).
    assert thermal_slope_nm_per_K(296.0, "sm-srb4o7") == pytest.approx(-8.7e-5, abs=1e-5)
    # At 600 K (dT = 304): -0.02645 + 0.42697 - 0.06687 = 0.33365 nm
    assert sm_srb4o7_thermal_shift_nm(600.0) == pytest.approx(0.33365, abs=2e-4)
    # Below 296 K only the linear term: 10 K -> +0.0249 nm.
    assert sm_srb4o7_thermal_shift_nm(10.0) == pytest.approx(0.024882, abs=1e-6)
    hot = 685.41 + sm_srb4o7_thermal_shift_nm(600.0) - sm_srb4o7_thermal_shift_nm(298.0)
    corrected = temperature_corrected_position(hot, 600.0, 298.0, gauge="sm-srb4o7")
    assert get_scale("datchi1997").pressure_GPa(corrected, 685.41) == pytest.approx(0.0, abs=1e-9)


def test_rashchenko2015_scale():
    # dl = 10 nm: 4.20 * 10 * (1 + 0.20) / (1 + 0.36) = 37.059 GPa
    scale = get_scale("rashchenko2015", "sm-srb4o7")
    assert scale.pressure_GPa(695.51) == pytest.approx(37.059, abs=1e-3)
    assert scale.x0_default == 685.51
    # Its initial slope, 4.20 GPa/nm, against Datchi 1997's 4.032.
    assert scale.slope_GPa_per_unit(685.51) == pytest.approx(4.20, rel=1e-6)


# --- marker thermal EOS: Fei et al. 2007 --------------------------------------------------


def test_debye_function_limits():
    assert debye_function_3(1e-6) == pytest.approx(1.0, abs=1e-6)
    # Large x: D3 -> pi^4 / (5 x^3)
    assert debye_function_3(50.0) == pytest.approx(math.pi**4 / (5 * 50.0**3), rel=1e-6)


def test_gold_thermal_pressure_coefficient_matches_its_expansion():
    """(dP/dT)_V = alpha K_T at V0, 300 K: gold's volume expansion 42.6e-6 /K
    (3 x 14.2e-6, Touloukian et al., Thermophysical Properties of Matter 12,
    1975) times K0 = 167 GPa is 7.11 MPa/K; the MGD model of Fei et al. 2007
    gives 7.14. Tolerance 2 %."""
    au = get_phase("Au")
    thermal = thermal_library()["Au"]
    dPdT = (pressure_at_temperature_GPa(au.eos, thermal, au.eos.V0_A3, 301.0)
            - pressure_at_temperature_GPa(au.eos, thermal, au.eos.V0_A3, 299.0)) / 2.0
    assert dPdT * 1e3 == pytest.approx(42.6e-6 * 167.0 * 1e3, rel=0.02)


def test_high_temperature_limit_is_dulong_petit():
    # T >> theta: P_th -> 3 N k T gamma / V (less the zero-point-free Debye
    # correction of order theta/T), so dP_th/dT -> 3 N k gamma / V.
    th = ThermalParams(theta0_K=170.0, gamma0=2.97, q=0.6, atoms_per_cell=4)
    eos = EosParams("vinet", 67.85, 167.0, 6.0)
    slope = (thermal_pressure_GPa(th, eos, 67.85, 5001.0) - thermal_pressure_GPa(th, eos, 67.85, 4999.0)) / 2
    expected = 3 * 4 * 1.380649e-23 * 2.97 / (67.85e-30) * 1e-9
    assert slope == pytest.approx(expected, rel=1e-4)


def test_marker_pressure_at_temperature():
    au = get_phase("Au")
    v = 64.0
    cold, err = marker_pressure_GPa(au, v, 0.01)
    at_300, _ = marker_pressure_GPa(au, v, 0.01, 300.0)
    hot, err_hot = marker_pressure_GPa(au, v, 0.01, 1000.0)
    assert at_300 == pytest.approx(cold, abs=1e-9)
    # ~7.5 MPa/K at this compression: 700 K hotter is ~5 GPa more at the same volume.
    assert 4.5 < hot - cold < 6.0 and err_hot == err
    # NaCl-B1 has no thermal block here: refused away from 300 K, read near it.
    nacl = get_phase("NaCl-B1")
    with pytest.raises(InputError, match="no thermal EOS"):
        marker_pressure_GPa(nacl, 170.0, 0.01, 500.0)
    assert math.isfinite(marker_pressure_GPa(nacl, 170.0, 0.01, 298.0)[0])
    assert set(thermal_library()) == {"Au", "Pt", "Ne"}


# --- band gap against temperature: Varshni and Bose-Einstein ------------------------------


def test_varshni_gaas_room_temperature_gap():
    # GaAs, Vurgaftman, Meyer & Ram-Mohan, J. Appl. Phys. 89, 5815 (2001),
    # Table III: Eg(0) = 1.519 eV, alpha = 0.5405 meV/K, beta = 204 K give
    # the 1.422 eV of GaAs at 300 K.
    assert varshni_eV(300.0, 1.519, 5.405e-4, 204.0) == pytest.approx(1.4225, abs=5e-4)


@pytest.mark.parametrize("model, truth, func", [
    ("varshni", (1.519, 5.405e-4, 204.0), varshni_eV),
    ("bose_einstein", (1.519, 0.057, 240.0), bose_einstein_eV),
])
def test_energy_vs_temperature_recovers_truth_with_honest_errors(model, truth, func):
    rng = np.random.default_rng(4)
    t = np.linspace(10.0, 300.0, 16)
    sigma = 1e-3
    pulls = []
    for _ in range(25):
        energy = func(t, *truth) + rng.normal(0.0, sigma, t.size)
        fit = fit_energy_vs_temperature(t, energy, np.full(t.size, sigma), model=model)
        pulls.append((fit.values["E0_eV"] - truth[0]) / fit.errors["E0_eV"])
        # The room-temperature gap and slope are what the data pin down best.
        assert fit.energy_eV(300.0) == pytest.approx(func(300.0, *truth), abs=4 * sigma)
    assert 0.5 < np.std(pulls) < 1.6


def test_a_gap_that_opens_on_heating_gives_negative_amplitudes():
    # A CsPbI3-like gap: +0.3 meV/K near room temperature.
    t = np.linspace(80.0, 400.0, 12)
    energy = 1.70 + 3e-4 * (t - 80.0)
    varshni = fit_energy_vs_temperature(t, energy, np.full(t.size, 1e-3), model="varshni")
    bose = fit_energy_vs_temperature(t, energy, np.full(t.size, 1e-3), model="bose_einstein")
    assert varshni.values["alpha_eV_per_K"] < 0 and bose.values["aB_eV"] < 0
    assert varshni.dEdT_eV_per_K == pytest.approx(3e-4, rel=0.1)
    assert bose.dEdT_eV_per_K == pytest.approx(3e-4, rel=0.1)


def test_too_few_points_for_an_energy_temperature_fit():
    with pytest.raises(InputError, match="at least 4"):
        fit_energy_vs_temperature([10.0, 100.0, 200.0], [1.5, 1.49, 1.47])
