"""Systematic pressure errors kept apart from the random ones (issue 14.3).

A scale's coefficient error shifts every pressure of a run the same way: the
EOS and E(P) fits are weighted by the random part only, and the systematic
part is carried to K0, K' and dE/dP as a separate term. Checked on synthetic
series whose truth is known.
"""

import math

import numpy as np
import pytest

from dacpipe.eos.fit import fit_eos, propagate_systematic
from dacpipe.eos.models import EosParams, pressure_GPa, volume_A3
from dacpipe.eos.stage import fit_phase_volumes
from dacpipe.optical.pressure_fit import fit_energy_vs_pressure, propagate_systematic_energy
from dacpipe.pressure.scales import PressureScale, _quadratic_in_relative_shift, get_scale
from dacpipe.pressure.stage import GaugeReading, combine

TRUE = EosParams("bm3", V0_A3=50.0, K0_GPa=60.0, Kp=4.5)
P_TRUE = np.linspace(0.5, 25.0, 14)
V_TRUE = np.asarray(volume_A3(TRUE, P_TRUE))
SIGMA_R1_NM = 0.01            # a fitted R1 position: ~0.027 GPa
SIGMA_V_REL = 2e-4


def shen(A=1870.0, B=5.63):
    """Ruby2020 with its coefficients moved (sigma_A = 10 GPa, sigma_B = 0.03)."""
    return PressureScale("shen2020-test", "ruby", "", "", 694.24, *_quadratic_in_relative_shift(A, B, 10.0, 0.03))


def measured_series(rng):
    """R1 positions of the true pressures with fit noise, and noisy volumes."""
    scale = get_scale("shen2020")
    r1 = scale.position_at(P_TRUE) + rng.normal(0.0, SIGMA_R1_NM, P_TRUE.size)
    v = V_TRUE * (1.0 + rng.normal(0.0, SIGMA_V_REL, P_TRUE.size))
    return r1, v


def test_stated_K0_systematic_matches_a_one_sigma_scale_change():
    rng = np.random.default_rng(3)
    r1, v = measured_series(rng)
    scale = get_scale("shen2020")
    p = scale.pressure_GPa(r1)
    sigma_random = np.abs(scale.slope_GPa_per_unit(r1)) * SIGMA_R1_NM
    sigma_v = V_TRUE * SIGMA_V_REL
    stated = propagate_systematic(p, v, scale.scale_terms_GPa(r1), sigma_P_GPa=sigma_random,
                                  sigma_V_A3=sigma_v, model="bm3")
    base = fit_eos(p, v, sigma_P_GPa=sigma_random, sigma_V_A3=sigma_v, model="bm3")
    # The K0 shift of re-reading the same spectra with A + sigma_A, and with
    # B + sigma_B, in quadrature (the coefficients' errors are independent).
    shifts = []
    for moved in (shen(A=1880.0), shen(B=5.66)):
        refit = fit_eos(moved.pressure_GPa(r1), v, sigma_P_GPa=sigma_random, sigma_V_A3=sigma_v, model="bm3")
        shifts.append((refit.params.K0_GPa - base.params.K0_GPa, refit.params.Kp - base.params.Kp))
    (dK0_A, dKp_A), (dK0_B, dKp_B) = shifts
    assert stated.errors["K0_GPa"] == pytest.approx(math.hypot(dK0_A, dK0_B), rel=0.10)
    assert stated.errors["Kp"] == pytest.approx(math.hypot(dKp_A, dKp_B), rel=0.10)
    # A scales every pressure by one factor: K0 moves with it, K' hardly (B moves K').
    assert abs(dKp_A) < 0.1 * abs(dKp_B)
    # A 0.5 % scale error is ~0.3 GPa on K0 here, beside a random error of the same order.
    assert 0.1 < stated.errors["K0_GPa"] < 1.0


def test_random_only_fit_has_honest_pulls():
    """Fitted with the random errors only, K0 and K' scatter by their stated
    errors over noise realisations (pull spread 0.7-1.5); the total error
    (random + scale, as if independent) would state errors too large."""
    rng = np.random.default_rng(11)
    scale = get_scale("shen2020")
    pulls, pulls_kp = [], []
    for _ in range(60):
        r1, v = measured_series(rng)
        p = scale.pressure_GPa(r1)
        sigma_random = np.abs(scale.slope_GPa_per_unit(r1)) * SIGMA_R1_NM
        fit = fit_eos(p, v, sigma_P_GPa=sigma_random, sigma_V_A3=V_TRUE * SIGMA_V_REL, model="bm3",
                      esd_scaling="never")
        pulls.append((fit.params.K0_GPa - TRUE.K0_GPa) / fit.errors["K0_GPa"])
        pulls_kp.append((fit.params.Kp - TRUE.Kp) / fit.errors["Kp"])
    assert 0.7 < np.std(pulls) < 1.5
    assert 0.7 < np.std(pulls_kp) < 1.5
    assert abs(np.mean(pulls)) < 0.5


def test_eos_stage_stores_the_systematic_terms_apart():
    rng = np.random.default_rng(5)
    r1, v = measured_series(rng)
    scale = get_scale("shen2020")
    p = scale.pressure_GPa(r1)
    sigma_random = np.abs(scale.slope_GPa_per_unit(r1)) * SIGMA_R1_NM
    terms = {"pressure_err_scale_A_GPa": scale.scale_terms_GPa(r1)["A"],
             "pressure_err_x0_GPa": np.abs(scale.x0_slope_GPa_per_unit(r1)) * 0.03,
             "pressure_err_temperature_GPa": np.full(p.size, np.nan)}
    ids = [f"p{i}" for i in range(p.size)]
    result = fit_phase_volumes(ids, p, sigma_random, {"X": (v, V_TRUE * SIGMA_V_REL)}, {"model": "bm3"},
                               systematic_GPa=terms)
    e = result.extra
    assert list(e["eos/X/systematic/sources"]) == list(terms)
    by_source = e["eos/X/systematic/K0_sys_err_GPa"]
    assert math.isnan(by_source[2])          # an unknown term is NaN, not 0
    assert float(e["eos/X/K0_sys_err_GPa"]) == pytest.approx(math.hypot(by_source[0], by_source[1]), rel=1e-9)
    # lambda0 0.03 nm is ~0.08 GPa at every pressure: mostly a V0 shift, some K0.
    assert by_source[1] > 0 and float(e["eos/X/Kp_sys_err"]) > 0
    # The random-only esd is not inflated by the systematic terms.
    assert float(e["eos/X/K0_err_GPa"]) < 3.0


def test_energy_slope_systematic_matches_a_scale_change():
    # E = 1.5 eV + 0.03 eV/GPa P - 4e-4 P^2, read at ruby pressures.
    rng = np.random.default_rng(2)
    scale = get_scale("shen2020")
    r1 = scale.position_at(P_TRUE) + rng.normal(0.0, SIGMA_R1_NM, P_TRUE.size)
    energy = 1.5 + 0.03 * P_TRUE - 4e-4 * P_TRUE**2 + rng.normal(0.0, 2e-3, P_TRUE.size)
    p = scale.pressure_GPa(r1)
    sigma_random = np.abs(scale.slope_GPa_per_unit(r1)) * SIGMA_R1_NM
    base = fit_energy_vs_pressure(p, energy, np.full(p.size, 2e-3), pressure_err_GPa=sigma_random)
    stated = propagate_systematic_energy(p, energy, np.full(p.size, 2e-3), scale.scale_terms_GPa(r1),
                                         model=base.model, pressure_err_GPa=sigma_random)
    shifts = []
    for moved in (shen(A=1880.0), shen(B=5.66)):
        refit = fit_energy_vs_pressure(moved.pressure_GPa(r1), energy, np.full(p.size, 2e-3),
                                       pressure_err_GPa=sigma_random)
        shifts.append(refit.alpha_eV_per_GPa - base.alpha_eV_per_GPa)
    assert stated.errors["alpha_eV_per_GPa"] == pytest.approx(math.hypot(*shifts), rel=0.10)


def test_point_pressure_splits_random_and_systematic():
    def reading(p, fit, scale, x0, temperature):
        return GaugeReading(fit=None, position=0.0, pressure_GPa=p, fit_err_GPa=fit, scale_err_GPa=scale,
                            x0_err_GPa=x0, temperature_err_GPa=temperature)

    point = combine([reading(10.0, 0.03, 0.05, 0.08, 0.02), reading(10.2, 0.04, 0.05, 0.08, 0.02)])
    drift_err = 0.2 / (2 * math.sqrt(3))
    assert point.random_err_GPa == pytest.approx(math.hypot(math.hypot(0.03, 0.04) / 2, drift_err))
    # Systematic terms are the same for both spectra: not divided by sqrt(2).
    assert point.sys_err_GPa == pytest.approx(math.sqrt(0.05**2 + 0.08**2 + 0.02**2))
    assert point.pressure_err_GPa == pytest.approx(math.hypot(point.random_err_GPa, point.sys_err_GPa))


def test_lambda0_error_through_the_scale():
    # Ruby2020 at 700 nm: dP/dl0 = -(A/l0)(1 + 2 B d)(l/l0) = -2.832 GPa/nm.
    scale = get_scale("shen2020")
    d = (700.0 - 694.24) / 694.24
    expected = -(1870.0 / 694.24) * (1 + 2 * 5.63 * d) * 700.0 / 694.24
    assert scale.x0_slope_GPa_per_unit(700.0, 694.24) == pytest.approx(expected, rel=1e-6)


def test_weighted_mean_widens_its_error_by_the_scatter_only():
    """core.lsq.weighted_mean: values within their errors keep the propagated error;
    values scattered beyond them get it times the Birge ratio sqrt(chi^2 / (n - 1))."""
    from dacpipe.core.lsq import weighted_mean

    mean, err = weighted_mean([1.0, 1.0, 1.0, 1.0], [0.1, 0.1, 0.2, 0.2])
    assert mean == pytest.approx(1.0) and err == pytest.approx(1.0 / math.sqrt(200.0 + 50.0))
    x = np.array([-0.3, 0.3, -0.3, 0.3])   # 3 errors off each: chi^2 / (n - 1) = 36 / 3
    mean, err = weighted_mean(x, np.full(4, 0.1))
    assert mean == pytest.approx(0.0, abs=1e-15) and err == pytest.approx(0.05 * math.sqrt(12.0))
    assert weighted_mean([2.0], [0.5]) == (2.0, 0.5)
