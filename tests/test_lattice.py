"""Lattice refinement from indexed peaks: recovery, honest errors, refusals."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dacpipe.core.errors import InputError
from dacpipe.xrd.cells import CellFit, IndexedPeak, q_calc_A, refine_cell, volume_fu_A3
from dacpipe.xrd.cells import cell_volume_A3, d_spacing_A
from dacpipe.xrd.library import get_phase
from dacpipe.xrd.structure import reflections

SIGMA_Q = 2e-4  # 1/A, a typical peak-position error of a synchrotron DAC pattern
N_REALISATIONS = 50

RUTILE_LIKE = (4.59, 4.59, 2.96, 90.0, 90.0, 90.0)  # made-up tetragonal cell, TiO2-like
ORTHO = (5.21, 7.43, 6.08, 90.0, 90.0, 90.0)  # made-up orthorhombic cell


def _truth(name: str, pressure_GPa: float):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CsPbI3 has no EOS and says so
        phase = get_phase(name)
        return phase, phase.cell_at(pressure_GPa)


def _library_case(name: str, pressure_GPa: float, n_lines: int):
    phase, cell = _truth(name, pressure_GPa)
    hkl = [r.hkl for r in reflections(phase, cell=cell, d_min_A=1.0)[:n_lines]]
    return phase.system, cell, hkl, phase.z_formula_units


def _all_hkl(cell, n_lines: int, hmax: int = 3):
    """The n_lines largest-d reflections of a primitive cell (no absences), one per d."""
    rng = range(-hmax, hmax + 1)
    hkl = [(h, k, l) for h in rng for k in rng for l in rng if (h, k, l) != (0, 0, 0)]
    d = d_spacing_A(cell, hkl)
    chosen, seen = [], []
    for i in np.argsort(-d):
        if not any(abs(d[i] - s) < 1e-6 for s in seen):
            chosen.append(hkl[i])
            seen.append(d[i])
        if len(chosen) == n_lines:
            break
    return chosen


CASES = {
    "cubic HgTe-zb 2 GPa": lambda: _library_case("HgTe-zb", 2.0, 10),
    "hexagonal CdSe-wz 1 GPa": lambda: _library_case("CdSe-wz", 1.0, 12),
    "trigonal HgTe-cinnabar 5 GPa": lambda: _library_case("HgTe-cinnabar", 5.0, 12),
    "tetragonal rutile-like": lambda: ("tetragonal", RUTILE_LIKE, _all_hkl(RUTILE_LIKE, 10), 2),
    "orthorhombic CsPbI3-gamma": lambda: _library_case("CsPbI3-gamma", 0.0, 14),
    "orthorhombic made-up": lambda: ("orthorhombic", ORTHO, _all_hkl(ORTHO, 12), 4),
}


def _peaks(cell, hkl, sigma=SIGMA_Q, rng=None, stated_sigma=None):
    q = q_calc_A(cell, hkl)
    if rng is not None:
        q = q + sigma * rng.standard_normal(len(hkl))
    stated = sigma if stated_sigma is None else stated_sigma
    return [IndexedPeak(h, float(qi), stated) for h, qi in zip(hkl, q)]


def _truth_values(cell, z):
    a, b, c, al, be, ga = cell
    return {"a_A": a, "b_A": b, "c_A": c, "alpha_deg": al, "beta_deg": be, "gamma_deg": ga,
            "volume_fu_A3": cell_volume_A3(cell) / z}


def _fit_values(fit: CellFit):
    a, b, c, al, be, ga = fit.cell
    values = {"a_A": a, "b_A": b, "c_A": c, "alpha_deg": al, "beta_deg": be, "gamma_deg": ga}
    out = {k: (values[k], fit.errors[k]) for k in fit.parameter_names}
    out["volume_fu_A3"] = (fit.volume_fu_A3, fit.volume_fu_err_A3)
    return out


# --------------------------------------------------------------------------
# Recovery against known truth
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_noise_free_peaks_give_the_truth_cell_exactly(case):
    system, cell, hkl, z = CASES[case]()
    fit = refine_cell(_peaks(cell, hkl), system, cell, z)
    np.testing.assert_allclose(fit.cell, cell, rtol=1e-10)
    assert fit.volume_fu_A3 == pytest.approx(cell_volume_A3(cell) / z, rel=1e-10)
    assert np.max(np.abs(fit.residuals_q_A)) < 1e-12
    assert fit.n_peaks == len(hkl) and fit.hkl == tuple(tuple(h) for h in hkl)
    assert fit.reduced_chi2 < 1e-12 and fit.error_scale == 1.0


def test_volume_per_formula_unit_of_each_structure_type():
    _, zb = _truth("HgTe-zb", 2.0)
    fit = refine_cell(_peaks(zb, [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1)]), "cubic", zb, 4)
    assert fit.volume_fu_A3 == pytest.approx(zb[0] ** 3 / 4, rel=1e-12)

    _, cin = _truth("HgTe-cinnabar", 5.0)
    fit = refine_cell(_peaks(cin, [(1, 0, 0), (1, 0, 1), (0, 0, 3), (1, 0, 2), (1, 1, 0)]), "trigonal", cin, 3)
    assert fit.volume_fu_A3 == pytest.approx(math.sqrt(3) / 2 * cin[0] ** 2 * cin[2] / 3, rel=1e-12)

    _, wz = _truth("CdSe-wz", 1.0)
    fit = refine_cell(_peaks(wz, [(1, 0, 0), (0, 0, 2), (1, 0, 1), (1, 0, 2)]), "hexagonal", wz, 2)
    assert fit.volume_fu_A3 == pytest.approx(math.sqrt(3) / 2 * wz[0] ** 2 * wz[2] / 2, rel=1e-12)
    assert volume_fu_A3(wz, 2) == pytest.approx(fit.volume_fu_A3, rel=1e-12)
    # Z unknown (a JCPDS phase): the cell is still refined, the per-f.u. volume is NaN
    fit = refine_cell(_peaks(wz, [(1, 0, 0), (0, 0, 2), (1, 0, 1)]), "hexagonal", wz, 0)
    assert math.isnan(fit.volume_fu_A3) and math.isfinite(fit.volume_A3)
    with pytest.raises(ValueError):
        volume_fu_A3(wz, 0)


@pytest.mark.parametrize("case", list(CASES))
def test_noisy_peaks_recover_the_cell_within_three_sigma(case):
    system, cell, hkl, z = CASES[case]()
    rng = np.random.default_rng(20240611)
    fit = refine_cell(_peaks(cell, hkl, rng=rng), system, cell, z)
    truth = _truth_values(cell, z)
    for name, (value, err) in _fit_values(fit).items():
        assert 0 < err < 1e-3 * abs(truth[name]), name
        assert abs(value - truth[name]) < 3 * err, (name, value, truth[name], err)


@pytest.mark.parametrize("case", list(CASES))
def test_reported_errors_match_the_scatter_over_realisations(case):
    """Over 50 noisy realisations, rms(fit - truth) / mean(reported error) is
    within 0.7-1.4 for every free parameter and the volume per formula unit
    (the sampling error of an rms over 50 draws is ~10%)."""
    system, cell, hkl, z = CASES[case]()
    truth = _truth_values(cell, z)
    rng = np.random.default_rng(7)
    dev, err = {}, {}
    for _ in range(N_REALISATIONS):
        fit = refine_cell(_peaks(cell, hkl, rng=rng), system, cell, z)
        for name, (value, e) in _fit_values(fit).items():
            dev.setdefault(name, []).append(value - truth[name])
            err.setdefault(name, []).append(e)
    for name in dev:
        ratio = math.sqrt(np.mean(np.square(dev[name]))) / np.mean(err[name])
        assert 0.7 < ratio < 1.4, (name, ratio)


def test_volume_error_matches_monte_carlo_and_needs_the_a_c_covariance():
    """A wurtzite set where a and c are strongly anticorrelated (only h0l
    lines): the reported V/Z error agrees with the scatter of 1000 Monte
    Carlo fits within 10%, and the same propagation without the a-c
    covariance would be ~40% too large."""
    _, cell = _truth("CdSe-wz", 1.0)
    hkl = [(1, 0, 1), (1, 0, 2), (1, 0, 3)]
    exact = refine_cell(_peaks(cell, hkl), "hexagonal", cell, 2)
    a, c = exact.cell[0], exact.cell[2]
    assert exact.correlation[0, 1] < -0.5
    rng = np.random.default_rng(3)
    volumes = [refine_cell(_peaks(cell, hkl, rng=rng), "hexagonal", cell, 2).volume_fu_A3 for _ in range(1000)]
    mc = float(np.std(volumes, ddof=1))
    assert exact.volume_fu_err_A3 == pytest.approx(mc, rel=0.10)
    # V/Z = sqrt(3)/4 a^2 c: the same Jacobian, covariance dropped
    grad = np.array([math.sqrt(3) / 2 * a * c, math.sqrt(3) / 4 * a * a])
    naive = math.sqrt(float(grad**2 @ np.diag(exact.covariance)))
    with_cov = math.sqrt(float(grad @ exact.covariance @ grad))
    assert with_cov == pytest.approx(exact.volume_fu_err_A3, rel=1e-6)
    assert naive > 1.2 * mc


# --------------------------------------------------------------------------
# Error convention
# --------------------------------------------------------------------------


def test_single_cubic_peak_fits_with_errors_from_the_input_sigma():
    _, cell = _truth("HgTe-zb", 2.0)
    peak = _peaks(cell, [(1, 1, 1)])[0]
    fit = refine_cell([peak], "cubic", cell, 4)
    assert fit.cell[0] == pytest.approx(cell[0], rel=1e-12)
    assert fit.cell[:3] == (fit.cell[0],) * 3 and fit.cell[3:] == (90.0, 90.0, 90.0)
    assert math.isnan(fit.reduced_chi2) and fit.dof == 0 and fit.error_scale == 1.0
    # a = 2 pi sqrt(3) / q, so sigma_a = a sigma_q / q
    assert fit.errors == {"a_A": pytest.approx(cell[0] * SIGMA_Q / peak.q_A, rel=1e-10)}
    assert fit.volume_err_A3 == pytest.approx(3 * fit.cell[0] ** 2 * fit.errors["a_A"], rel=1e-10)
    assert fit.volume_fu_err_A3 == pytest.approx(fit.volume_err_A3 / 4, rel=1e-12)


def test_errors_are_scaled_by_sqrt_chi2_only_above_one():
    system, cell, hkl, z = CASES["hexagonal CdSe-wz 1 GPa"]()
    rng = np.random.default_rng(11)
    q_noisy = _peaks(cell, hkl, rng=rng)
    # errors stated 5x too small: chi2_nu ~ 25, the errors follow the scatter
    small = refine_cell([IndexedPeak(p.hkl, p.q_A, SIGMA_Q / 5) for p in q_noisy], system, cell, z)
    assert small.reduced_chi2 > 4
    assert small.error_scale == pytest.approx(math.sqrt(small.reduced_chi2))
    # stated errors that give chi2_nu = 1 exactly: the same fit, the same errors, unscaled
    matched = refine_cell([IndexedPeak(p.hkl, p.q_A, SIGMA_Q / 5 * small.error_scale) for p in q_noisy],
                          system, cell, z)
    assert matched.reduced_chi2 == pytest.approx(1.0)
    np.testing.assert_allclose(matched.cell, small.cell, rtol=1e-12)
    for name in small.errors:
        assert small.errors[name] == pytest.approx(matched.errors[name], rel=1e-8)
    assert small.volume_fu_err_A3 == pytest.approx(matched.volume_fu_err_A3, rel=1e-8)
    # errors stated 5x too large: chi2_nu ~ 1/25, never scaled down
    large = refine_cell([IndexedPeak(p.hkl, p.q_A, SIGMA_Q * 5) for p in q_noisy], system, cell, z)
    assert large.reduced_chi2 < 1 and large.error_scale == 1.0
    assert large.errors["a_A"] == pytest.approx(25 * small.errors["a_A"] / small.error_scale, rel=1e-6)


def test_covariance_and_correlation_are_consistent():
    system, cell, hkl, z = CASES["orthorhombic made-up"]()
    fit = refine_cell(_peaks(cell, hkl, rng=np.random.default_rng(5)), system, cell, z)
    assert fit.covariance.shape == (3, 3) and fit.parameter_names == ("a_A", "b_A", "c_A")
    np.testing.assert_allclose(np.sqrt(np.diag(fit.covariance)), [fit.errors[n] for n in fit.parameter_names])
    np.testing.assert_allclose(np.diag(fit.correlation), 1.0)
    assert np.all(np.linalg.eigvalsh(fit.covariance) > 0)


# --------------------------------------------------------------------------
# Residuals, conversions, settings
# --------------------------------------------------------------------------


def test_residuals_are_observed_minus_calculated_in_q_and_two_theta():
    system, cell, hkl, z = CASES["trigonal HgTe-cinnabar 5 GPa"]()
    peaks = _peaks(cell, hkl, rng=np.random.default_rng(2))
    wavelength = 0.4133
    fit = refine_cell(peaks, system, cell, z, wavelength_A=wavelength)
    q_obs = np.array([p.q_A for p in peaks])
    q_fit = q_calc_A(fit.cell, hkl)
    np.testing.assert_allclose(fit.residuals_q_A, q_obs - q_fit, atol=1e-13)
    tth = lambda q: np.degrees(2 * np.arcsin(q * wavelength / (4 * np.pi)))  # noqa: E731
    np.testing.assert_allclose(fit.residuals_two_theta_deg, tth(q_obs) - tth(q_fit), atol=1e-11)
    assert refine_cell(peaks, system, cell, z).residuals_two_theta_deg is None


def test_q_calc_and_from_d_agree_with_the_phase_library():
    _, cell = _truth("CdSe-wz", 1.0)
    hkl = [(1, 0, 0), (0, 0, 2), (1, 0, 3)]
    np.testing.assert_allclose(q_calc_A(cell, hkl), 2 * np.pi / d_spacing_A(cell, hkl), rtol=1e-14)
    assert q_calc_A(cell, (1, 0, 1)) == pytest.approx(2 * np.pi / d_spacing_A(cell, (1, 0, 1)))
    d, d_err = 3.2, 4e-4
    peak = IndexedPeak.from_d((1, 0, 1), d, d_err)
    assert peak.q_A == pytest.approx(2 * np.pi / d) and peak.d_A == pytest.approx(d)
    assert peak.q_err_A == pytest.approx(2 * np.pi * d_err / d**2)
    assert IndexedPeak(np.array([1, 1, 1]), 1.0, 1e-4).hkl == (1, 1, 1)


def test_the_start_cell_only_picks_the_setting():
    system, cell, hkl, z = CASES["hexagonal CdSe-wz 1 GPa"]()
    peaks = _peaks(cell, hkl, rng=np.random.default_rng(4))
    far = (cell[0] * 1.1, cell[1] * 1.1, cell[2] * 0.9, 90.0, 90.0, 120.0)
    a = refine_cell(peaks, system, cell, z)
    b = refine_cell(peaks, system, far, z)
    assert a.cell == b.cell and a.errors == b.errors


def test_trigonal_in_rhombohedral_axes_monoclinic_and_triclinic():
    rhomb = (5.3, 5.3, 5.3, 72.5, 72.5, 72.5)
    fit = refine_cell(_peaks(rhomb, _all_hkl(rhomb, 8)), "trigonal", rhomb, 2)
    assert fit.setting == "rhombohedral axes" and fit.parameter_names == ("a_A", "alpha_deg")
    np.testing.assert_allclose(fit.cell, rhomb, rtol=1e-10)

    for mono, angle in (((5.1, 6.2, 7.3, 90.0, 103.5, 90.0), "beta_deg"),
                        ((5.1, 6.2, 7.3, 90.0, 90.0, 112.0), "gamma_deg")):
        hkl = _all_hkl(mono, 14)
        fit = refine_cell(_peaks(mono, hkl), "monoclinic", mono, 2)
        assert fit.parameter_names == ("a_A", "b_A", "c_A", angle)
        np.testing.assert_allclose(fit.cell, mono, rtol=1e-10)
        noisy = refine_cell(_peaks(mono, hkl, rng=np.random.default_rng(9)), "monoclinic", mono, 2)
        assert abs(noisy.cell[4 if angle == "beta_deg" else 5] - mono[4 if angle == "beta_deg" else 5]) \
            < 3 * noisy.errors[angle]

    tri = (5.1, 6.2, 7.3, 81.0, 97.0, 104.0)
    fit = refine_cell(_peaks(tri, _all_hkl(tri, 16)), "triclinic", tri, 1)
    np.testing.assert_allclose(fit.cell, tri, rtol=1e-10)
    assert len(fit.errors) == 6


@settings(max_examples=30, deadline=None)
@given(a=st.floats(2.5, 12.0), c_over_a=st.floats(0.5, 3.0), hexagonal=st.booleans())
def test_any_uniaxial_cell_is_recovered_exactly(a, c_over_a, hexagonal):
    cell = (a, a, a * c_over_a, 90.0, 90.0, 120.0 if hexagonal else 90.0)
    hkl = [(1, 0, 0), (0, 0, 1), (1, 0, 1), (1, 1, 0), (1, 1, 2), (2, 0, 1)]
    fit = refine_cell(_peaks(cell, hkl), "hexagonal" if hexagonal else "tetragonal", cell, 1)
    np.testing.assert_allclose(fit.cell, cell, rtol=1e-10)


# --------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------


@pytest.mark.parametrize("system, cell, hkl, words", [
    ("hexagonal", (4.3, 4.3, 7.0, 90, 90, 120), [(0, 0, 2), (0, 0, 4), (0, 0, 6)], ["hexagonal", "h or k != 0", "a"]),
    ("hexagonal", (4.3, 4.3, 7.0, 90, 90, 120), [(1, 0, 0), (1, 1, 0), (2, 0, 0)], ["hexagonal", "l != 0", "c"]),
    ("trigonal", (4.4, 4.4, 10.2, 90, 90, 120), [(0, 0, 3), (0, 0, 6)], ["trigonal", "h or k != 0"]),
    ("tetragonal", RUTILE_LIKE, [(1, 1, 0), (2, 0, 0), (2, 1, 0), (2, 2, 0)], ["tetragonal", "l != 0", "c"]),
    ("orthorhombic", ORTHO, [(1, 1, 0), (2, 2, 0), (0, 0, 1), (0, 0, 2)], ["orthorhombic", "separate a, b"]),
    ("orthorhombic", ORTHO, [(1, 1, 1), (1, 0, 1)], ["orthorhombic", "only 2 independent", "3 needed"]),
    ("hexagonal", (4.3, 4.3, 7.0, 90, 90, 120), [(1, 0, 1), (0, 1, 1), (1, -1, 1)], ["only 1 independent"]),
    ("monoclinic", (5.1, 6.2, 7.3, 90, 103.5, 90), [(1, 0, 0), (0, 1, 0), (0, 0, 1), (2, 1, 0), (0, 1, 2)],
     ["monoclinic", "h and l both != 0", "beta"]),
])
def test_reflections_that_do_not_fix_the_cell_are_refused(system, cell, hkl, words):
    with pytest.raises(InputError) as info:
        refine_cell(_peaks(cell, hkl), system, cell, 2)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_inconsistent_indexing_is_refused():
    # 101 observed below 100 in q: 1/c^2 would have to be negative
    peaks = [IndexedPeak((1, 0, 0), 1.50, 1e-4), IndexedPeak((1, 0, 1), 1.40, 1e-4),
             IndexedPeak((2, 0, 0), 3.00, 1e-4)]
    with pytest.raises(InputError, match="tetragonal cell.*no valid cell"):
        refine_cell(peaks, "tetragonal", RUTILE_LIKE, 2)


@pytest.mark.parametrize("peaks, system, match", [
    ([], "cubic", "no indexed peaks"),
    ([IndexedPeak((1, 1, 1), 1.7, 0.0)], "cubic", "positive error"),
    ([IndexedPeak((1, 1, 1), 1.7, math.nan)], "cubic", "positive error"),
    ([IndexedPeak((1, 1, 1), math.nan, 1e-4)], "cubic", "not a positive number"),
    ([IndexedPeak((1, 1, 1), -1.7, 1e-4)], "cubic", "not a positive number"),
    ([IndexedPeak((0, 0, 0), 1.7, 1e-4)], "cubic", r"\(0, 0, 0\)"),
    ([IndexedPeak((1, 1), 1.7, 1e-4)], "cubic", "three integers"),
    ([IndexedPeak((1, 1, 1), 1.7, 1e-4)], "hexagonal-ish", "not one of"),
])
def test_unusable_input_is_refused(peaks, system, match):
    with pytest.raises(InputError, match=match):
        refine_cell(peaks, system, (6.0, 6.0, 6.0, 90, 90, 90), 4)


def test_peak_beyond_backscattering_and_a_wrong_setting_are_refused():
    with pytest.raises(InputError, match="backscattering"):
        refine_cell([IndexedPeak((4, 4, 4), 32.0, 1e-4)], "cubic", (6.0,) * 3 + (90.0,) * 3, 4, wavelength_A=0.4)
    with pytest.raises(InputError, match="hexagonal axes"):
        refine_cell([IndexedPeak((1, 0, 0), 1.7, 1e-4)], "hexagonal", (4.3, 4.3, 7.0, 90, 90, 90), 2)
