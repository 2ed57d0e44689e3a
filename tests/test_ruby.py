"""Tests of dacpipe.ruby against synthetic spectra of known truth.

The generator below draws true Voigt lines (scipy.special.voigt_profile),
not the pseudo-Voigt the fitter uses, on a sloped and curved background, with
Poisson noise, so a test passes only if the fit copes with a model that is
not exactly right, as with real data.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.special import erf, erfc, voigt_profile

from dacpipe.core.errors import InputError
from dacpipe.core.profiles import pseudo_voigt_height as pseudo_voigt
from dacpipe.pressure.fluorescence import PROFILES, RubyFit, SingleLineFit, fit_ruby, fit_single_line
from dacpipe.pressure.diamond import EdgeFit, diamond_edge
from dacpipe.pressure.spikes import despike

# --------------------------------------------------------------------------
# Synthetic spectra
# --------------------------------------------------------------------------


def mao_r1_nm(pressure_gpa: float) -> float:
    """R1 at a pressure, Mao et al. 1986 (quasi-hydrostatic)."""
    return 694.24 * (1.0 + 7.665 * pressure_gpa / 1904.0) ** (1.0 / 7.665)


def voigt_line(x, center, fwhm, lorentz_share=0.5):
    """A true Voigt line of unit height and (very nearly) the given FWHM.

    The Lorentzian FWHM is ``lorentz_share * fwhm``; the Gaussian FWHM follows
    from Olivero & Longbothum's (1977) approximation of the Voigt FWHM.
    """
    f_l = lorentz_share * fwhm
    f_g = math.sqrt((fwhm - 0.5346 * f_l) ** 2 - 0.2166 * f_l**2)
    sigma, gamma = f_g / (2.0 * math.sqrt(2.0 * math.log(2.0))), f_l / 2.0
    return voigt_profile(x - center, sigma, gamma) / voigt_profile(0.0, sigma, gamma)


def ruby_spectrum(
    x,
    r1_nm,
    *,
    fwhm=0.6,
    height=10000.0,
    r2_ratio=0.6,
    split_cm1=30.0,
    fwhm2=None,
    background=500.0,
    spikes=(),
    seed=0,
):
    """Poisson counts of a ruby doublet on a sloped, curved background.

    ``spikes`` are (wavelength, counts) added to the nearest point after the
    noise, like cosmic rays. Returns (y, r2_nm).
    """
    rng = np.random.default_rng(seed)
    r2_nm = 1e7 / (1e7 / r1_nm + split_cm1)
    xm = 0.5 * (x[0] + x[-1])
    expected = background * (1.0 + 0.002 * (x - xm) + 1e-5 * (x - xm) ** 2)
    expected = expected + height * voigt_line(x, r1_nm, fwhm)
    expected = expected + r2_ratio * height * voigt_line(x, r2_nm, fwhm if fwhm2 is None else fwhm2)
    y = rng.poisson(expected).astype(float)
    for position, counts in spikes:
        y[np.argmin(np.abs(x - position))] += counts
    return y, r2_nm


def diamond_band(x, edge_cm1, *, sharpness_cm1=3.0, height=2000.0, with_1332=True):
    """Expected counts of a stressed anvil's Raman band: rises from 1330 cm^-1
    to an erf-shaped high-frequency edge, plus (optionally) the sharp
    unstressed 1332 cm^-1 line of the anvil body."""
    ramp = 0.4 + 0.6 * np.clip((x - 1330.0) / (edge_cm1 - 1330.0), 0.0, None)
    band = height * ramp * 0.5 * erfc((x - edge_cm1) / (math.sqrt(2.0) * sharpness_cm1))
    band = band * 0.5 * (1.0 + erf((x - 1330.0) / (math.sqrt(2.0) * 2.0)))
    if with_1332:
        band = band + 1.5 * height / (1.0 + 4.0 * ((x - 1332.5) / 3.0) ** 2)
    return 200.0 + 0.1 * (x - 1200.0) + band


X_1340 = np.linspace(650.0, 750.0, 1340)  # 0.075 nm per point: a 0.6 nm line is 8 points wide


# --------------------------------------------------------------------------
# Profile and despiking
# --------------------------------------------------------------------------


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_pseudo_voigt_has_unit_height_and_the_given_fwhm(eta):
    assert pseudo_voigt(700.0, 700.0, 0.8, eta) == pytest.approx(1.0)
    assert pseudo_voigt([699.6, 700.4], 700.0, 0.8, eta) == pytest.approx([0.5, 0.5])


def test_despike_spares_narrow_real_lines():
    """Lines 5-8 points wide, any height from 100 to 10^6 counts, any
    sub-point position, alone or as a doublet: nothing is touched."""
    rng = np.random.default_rng(1)
    x = np.arange(1000.0)
    for _ in range(300):
        fwhm = rng.uniform(5.0, 8.0)
        height = 10 ** rng.uniform(2, 6)
        center = rng.uniform(100, 900)
        eta = rng.uniform(0, 1)
        expected = 10 ** rng.uniform(1, 3) + height * pseudo_voigt(x, center, fwhm, eta)
        if rng.random() < 0.5:
            expected += 0.6 * height * pseudo_voigt(x, center - 3 * fwhm, fwhm, eta)
        y = rng.poisson(expected).astype(float)
        y_clean, n_spikes = despike(y)
        assert n_spikes == 0, (fwhm, height, eta)
        assert np.array_equal(y_clean, y)


def test_despike_removes_spikes_one_to_three_points_wide():
    rng = np.random.default_rng(2)
    y = rng.poisson(np.full(500, 300.0)).astype(float)
    clean = y.copy()
    y[100] += 5000  # one point
    y[250:252] += [3000, 2000]  # two points
    y[400:403] += [800, 4000, 900]  # three points
    y_clean, n_spikes = despike(y)
    assert n_spikes == 3
    # Replaced by the running median: back within the noise (sigma ~17).
    assert np.max(np.abs(y_clean - clean)) < 80


# --------------------------------------------------------------------------
# Ruby: accuracy against known truth
# --------------------------------------------------------------------------

WINDOWS = {
    "600-800nm": np.linspace(600.0, 800.0, 2048),  # 0.098 nm per point
    "680-780nm": np.linspace(680.0, 780.0, 1340),
    "690-710nm": np.linspace(690.0, 710.0, 1340),
}
# Mao 1986 puts R1 at 694.24, 704.64, 719.99 and 738.37 nm at 0, 30, 80 and
# 150 GPa; 760 nm is R1 at ~150 GPa on the steeper modern scales.
R1_VALUES = {"0GPa": mao_r1_nm(0), "30GPa": mao_r1_nm(30), "80GPa": mao_r1_nm(80), "150GPa": mao_r1_nm(150), "760nm": 760.0}
# Every (window, R1) with both lines at least 2 nm inside the window.
WINDOW_CASES = [
    (w, r) for w, x in WINDOWS.items() for r, r1 in R1_VALUES.items() if x[0] + 2 < r1 - 1.8 and r1 + 2 < x[-1]
]


@pytest.mark.parametrize("window, r1_name", WINDOW_CASES)
def test_r1_recovered_at_any_pressure_in_any_window(window, r1_name):
    x, r1 = WINDOWS[window], R1_VALUES[r1_name]
    y, r2 = ruby_spectrum(x, r1, height=20000.0, seed=3)
    fit = fit_ruby(x, y)
    assert isinstance(fit, RubyFit)
    # 20000 counts on a 0.6 nm line give a statistical error of ~0.001 nm;
    # the pseudo-Voigt vs Voigt mismatch shifts R1 by < 0.0005 nm. So the
    # truth must be within 4 reported sigmas and 0.005 nm.
    assert abs(fit.r1_nm - r1) < 4 * fit.r1_err_nm
    assert abs(fit.r1_nm - r1) < 0.005
    assert 0.0002 < fit.r1_err_nm < 0.003
    assert abs(fit.r2_nm - r2) < 4 * fit.r2_err_nm + 0.002
    assert fit.r1_fwhm_nm == pytest.approx(0.6, rel=0.05)
    assert fit.r2_amplitude / fit.r1_amplitude == pytest.approx(0.6, rel=0.05)
    assert fit.window_nm[0] < fit.r2_nm < fit.r1_nm < fit.window_nm[1]
    assert fit.n_spikes == 0
    assert fit.r_squared > 0.99
    assert fit.profile == "pseudo-voigt"


@pytest.mark.parametrize("r1", [mao_r1_nm(150), 760.0])
def test_merged_lines_at_high_pressure_give_r1_with_a_larger_error(r1):
    """Non-hydrostatic broadening: 2.5 nm lines 1.7 nm apart make one band."""
    x = np.linspace(700.0, 800.0, 1340)
    narrow = fit_ruby(x, ruby_spectrum(x, r1, seed=4)[0])
    fit = fit_ruby(x, ruby_spectrum(x, r1, fwhm=2.5, fwhm2=2.75, seed=4)[0])
    assert abs(fit.r1_nm - r1) < 4 * fit.r1_err_nm
    assert abs(fit.r1_nm - r1) < 0.08
    assert fit.r1_err_nm > 3 * narrow.r1_err_nm
    assert fit.r2_nm < fit.r1_nm


def test_reported_r1_error_is_honest():
    """Over 50 noise realisations the scatter of R1 matches the mean error."""
    r1 = mao_r1_nm(40)
    fits = [fit_ruby(X_1340, ruby_spectrum(X_1340, r1, fwhm=0.7, height=3000.0, seed=s)[0]) for s in range(50)]
    deviations = np.array([f.r1_nm - r1 for f in fits])
    errors = np.array([f.r1_err_nm for f in fits])
    # With 50 samples the scatter itself is known to ~10 %, hence 30 %.
    assert deviations.std() / errors.mean() == pytest.approx(1.0, abs=0.3)
    assert abs(deviations.mean()) < 3 * errors.mean() / math.sqrt(50)


def test_reduced_chi2_is_near_one_for_uniform_noise():
    rng = np.random.default_rng(5)
    r1 = mao_r1_nm(10)
    r2 = 1e7 / (1e7 / r1 + 30.0)
    clean = 100.0 + 3000.0 * pseudo_voigt(X_1340, r1, 0.6, 0.5) + 1800.0 * pseudo_voigt(X_1340, r2, 0.6, 0.5)
    fit = fit_ruby(X_1340, clean + rng.normal(0.0, 20.0, X_1340.size))
    assert fit.reduced_chi2 == pytest.approx(1.0, abs=0.35)
    assert fit.r1_nm == pytest.approx(r1, abs=4 * fit.r1_err_nm)


@pytest.mark.parametrize("profile", PROFILES)
def test_each_profile_runs(profile):
    r1 = mao_r1_nm(20)
    y, _ = ruby_spectrum(X_1340, r1, seed=6)
    fit = fit_ruby(X_1340, y, profile=profile)
    assert fit.profile == profile
    expected_eta = {"lorentzian": 1.0, "gaussian": 0.0}.get(profile)
    if expected_eta is None:
        assert 0.0 <= fit.eta <= 1.0
    else:
        assert fit.eta == expected_eta
    # A Lorentzian or Gaussian is the wrong shape for a Voigt line, which
    # costs a few thousandths of a nm.
    assert abs(fit.r1_nm - r1) < 0.01


def test_unknown_profile_is_a_value_error():
    with pytest.raises(ValueError, match="voigt"):
        fit_ruby(X_1340, ruby_spectrum(X_1340, 700.0)[0], profile="voigt")


# --------------------------------------------------------------------------
# Ruby: cosmic-ray spikes
# --------------------------------------------------------------------------

R1_SPIKED = mao_r1_nm(30)
SPIKE_CASES = {
    # name: spikes relative to R1, as (offset in FWHM, counts); R1 is 10000 counts high
    "on R1 top": [(0.0, 10000.0)],
    "on R1 top, small": [(0.05, 2500.0)],
    "on R1 flank": [(-0.6, 8000.0)],
    "on R1 far flank": [(0.9, 20000.0)],
    "on R2 top": [(-1.45 / 0.6, 6000.0)],
    "off the lines": [(-10.0, 3000.0), (12.0, 30000.0)],
    "everywhere": [(0.3, 5000.0), (-1.45 / 0.6 - 0.2, 4000.0), (-15.0, 20000.0), (20.0, 2000.0)],
}


@pytest.mark.parametrize("case", SPIKE_CASES)
def test_spikes_are_rejected_and_do_not_bias_r1(case):
    fwhm = 0.6
    spikes = [(R1_SPIKED + offset * fwhm, counts) for offset, counts in SPIKE_CASES[case]]
    clean_y, _ = ruby_spectrum(X_1340, R1_SPIKED, fwhm=fwhm, seed=7)
    spiked_y, _ = ruby_spectrum(X_1340, R1_SPIKED, fwhm=fwhm, seed=7, spikes=spikes)
    clean, spiked = fit_ruby(X_1340, clean_y), fit_ruby(X_1340, spiked_y)
    assert spiked.n_spikes == len(spikes)
    # Same noise, spikes left out: R1 moves by well under its error (the
    # points under the spikes are missing, nothing more).
    assert abs(spiked.r1_nm - clean.r1_nm) < 0.5 * clean.r1_err_nm
    assert abs(spiked.r1_nm - R1_SPIKED) < 4 * spiked.r1_err_nm


# --------------------------------------------------------------------------
# Ruby: spectra that cannot give R1
# --------------------------------------------------------------------------


def test_flat_noise_has_no_peak():
    rng = np.random.default_rng(8)
    with pytest.raises(InputError, match="no peak above noise"):
        fit_ruby(X_1340, rng.poisson(np.full(X_1340.size, 500.0)).astype(float))


def test_quantised_ripple_has_no_peak():
    """Most first differences equal (MAD of zero) must not make every wiggle a peak."""
    with pytest.raises(InputError, match="no peak above noise"):
        fit_ruby(X_1340, 600.0 + np.arange(X_1340.size) % 7)


def test_curved_background_alone_has_no_peak():
    rng = np.random.default_rng(9)
    background = 800.0 * (1 + 0.004 * (X_1340 - 700) + 1e-4 * (X_1340 - 700) ** 2)
    with pytest.raises(InputError, match="no peak above noise"):
        fit_ruby(X_1340, rng.poisson(background).astype(float))


def test_clipped_line_is_saturated():
    y, _ = ruby_spectrum(X_1340, 700.0, seed=10)
    with pytest.raises(InputError, match=r"saturated: the R1 line has a flat top of \d+ points"):
        fit_ruby(X_1340, np.minimum(y, 0.7 * y.max()))


def test_line_on_the_adc_ceiling_is_saturated():
    y, _ = ruby_spectrum(X_1340, 700.0, height=100000.0, seed=11)
    with pytest.raises(InputError, match="saturated.*ADC ceiling"):
        fit_ruby(X_1340, np.minimum(y, 65535.0))


def test_dark_subtracted_clipped_line_is_saturated():
    """After dark subtraction the clipped top is flat only to within the
    read noise of the dark (a few counts), not exactly."""
    y, _ = ruby_spectrum(X_1340, 700.0, height=100000.0, seed=12)
    dark = np.random.default_rng(13).normal(600.0, 3.0, X_1340.size)
    with pytest.raises(InputError, match="saturated: the R1 line has a flat top"):
        fit_ruby(X_1340, np.minimum(y, 65535.0) - dark)


def test_smooth_flat_top_is_not_saturation():
    """A broad line on a fine grid has 3+ top points within 0.1 % of each
    other without any noise; the flanks show it is not clipped."""
    x = np.linspace(680.0, 780.0, 3648)
    r1 = mao_r1_nm(50)
    r2 = 1e7 / (1e7 / r1 + 30.0)
    y = 500.0 + 20000.0 * pseudo_voigt(x, r1, 2.0, 0.5) + 12000.0 * pseudo_voigt(x, r2, 2.0, 0.5)
    top = y[np.argmax(y) - 1 : np.argmax(y) + 2]
    assert np.ptp(top) < 1e-3 * y.max()  # the premise
    assert fit_ruby(x, y).r1_nm == pytest.approx(r1, abs=1e-3)


@pytest.mark.parametrize("end_nm", [704.9, 704.64, 704.3, 703.9])
def test_r1_at_the_window_end_is_refused(end_nm):
    """R1 (704.64 nm) cut by the end of the data, or beyond it."""
    x = np.linspace(690.0, end_nm, 800)
    with pytest.raises(InputError, match="outside the spectrometer window"):
        fit_ruby(x, ruby_spectrum(x, R1_SPIKED, seed=14)[0])


def test_r2_cut_by_the_window_start_is_refused():
    x = np.linspace(703.6, 720.0, 800)
    with pytest.raises(InputError, match=r"R2 at [\d.]+ nm is outside the spectrometer window"):
        fit_ruby(x, ruby_spectrum(x, R1_SPIKED, seed=15)[0])


def test_fewer_than_20_points():
    with pytest.raises(InputError, match="fewer than 20 points"):
        fit_ruby(X_1340[:19], np.ones(19))


@pytest.mark.parametrize(
    "x, y, reason",
    [
        (X_1340[::-1], np.ones(1340), "not strictly increasing"),
        (X_1340, np.ones(1339), "differ in shape"),
        (X_1340, np.where(np.arange(1340) == 5, np.nan, 1.0), "NaN"),
    ],
)
def test_malformed_arrays(x, y, reason):
    with pytest.raises(InputError, match=reason):
        fit_ruby(x, y)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_lines=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
    level=st.floats(1.0, 1e5),
)
def test_any_spectrum_gives_a_fit_or_an_input_error(n_lines, seed, level):
    """Whatever comes in, the fitters answer a result or an InputError: the
    pipeline catches InputError per point and must never meet another one."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(600.0, 800.0, rng.integers(20, 3000)))
    x = x[np.concatenate(([True], np.diff(x) > 0))]
    expected = level * (1 + rng.uniform(-0.5, 0.5) * (x - 700) / 100)
    for _ in range(n_lines):
        expected = expected + level * rng.uniform(0, 20) * pseudo_voigt(x, rng.uniform(600, 800), rng.uniform(0.05, 5), 0.5)
    y = rng.poisson(np.clip(expected, 0, None)).astype(float)
    for function in (fit_ruby, fit_single_line, diamond_edge):
        try:
            fit = function(x, y)
        except InputError as error:
            assert "\n" not in str(error)
        else:
            assert all(math.isfinite(v) for v in vars(fit).values() if isinstance(v, float))


# --------------------------------------------------------------------------
# Sm:SrB4O7 0-0 line
# --------------------------------------------------------------------------


@pytest.mark.parametrize("center", [685.41, 686.3])
def test_sm_line_recovered(center):
    x = np.linspace(680.0, 700.0, 1340)  # 0.015 nm per point
    expected = 300.0 + 0.5 * (x - 690.0) + 8000.0 * pseudo_voigt(x, center, 0.25, 1.0)
    y = np.random.default_rng(16).poisson(expected).astype(float)
    fit = fit_single_line(x, y, profile="lorentzian")
    assert isinstance(fit, SingleLineFit)
    assert abs(fit.center_nm - center) < 4 * fit.center_err_nm
    assert abs(fit.center_nm - center) < 0.002
    assert fit.fwhm_nm == pytest.approx(0.25, rel=0.03)
    assert fit.amplitude == pytest.approx(8000.0, rel=0.03)
    assert fit.eta == 1.0


def test_sm_line_with_default_profile_and_no_line():
    x = np.linspace(680.0, 700.0, 1340)
    rng = np.random.default_rng(17)
    fit = fit_single_line(x, rng.poisson(300.0 + 5000.0 * pseudo_voigt(x, 685.41, 0.3, 0.7)).astype(float))
    assert fit.center_nm == pytest.approx(685.41, abs=4 * fit.center_err_nm)
    with pytest.raises(InputError, match="no peak above noise"):
        fit_single_line(x, rng.poisson(np.full(x.size, 300.0)).astype(float))


# --------------------------------------------------------------------------
# Diamond Raman edge
# --------------------------------------------------------------------------


def true_edge(edge_cm1, sharpness_cm1):
    """The minimum of dI/dnu of the noise-free band, on a fine grid."""
    x = np.linspace(1340.0, 1800.0, 460001)
    return x[np.argmin(np.gradient(diamond_band(x, edge_cm1, sharpness_cm1=sharpness_cm1), x))]


@pytest.mark.parametrize("edge_cm1, sharpness_cm1", [(1400.0, 2.0), (1480.0, 4.0), (1620.0, 6.0)])
def test_diamond_edge_recovered(edge_cm1, sharpness_cm1):
    x = np.linspace(1200.0, 1800.0, 1000)  # 0.6 cm^-1 per point
    rng = np.random.default_rng(18)
    y = rng.poisson(diamond_band(x, edge_cm1, sharpness_cm1=sharpness_cm1)).astype(float)
    y[700] += 5000  # a cosmic ray
    fit = diamond_edge(x, y)
    assert isinstance(fit, EdgeFit)
    truth = true_edge(edge_cm1, sharpness_cm1)
    assert abs(fit.edge_cm1 - truth) < 1.0
    assert abs(fit.edge_cm1 - truth) < 4 * fit.edge_err_cm1
    assert 0 < fit.edge_err_cm1 < 3.0
    assert fit.step_height == pytest.approx(2000.0, rel=0.15)
    assert fit.n_spikes == 1


def test_diamond_edge_without_the_1332_line():
    x = np.linspace(1250.0, 1700.0, 900)
    y = np.random.default_rng(19).poisson(diamond_band(x, 1500.0, with_1332=False)).astype(float)
    assert diamond_edge(x, y).edge_cm1 == pytest.approx(true_edge(1500.0, 3.0), abs=1.0)


def test_diamond_edge_at_the_window_end_is_refused():
    x = np.linspace(1250.0, 1501.0, 420)
    y = np.random.default_rng(21).poisson(diamond_band(x, 1500.0)).astype(float)
    with pytest.raises(InputError, match="outside the spectrometer window"):
        diamond_edge(x, y)


def test_diamond_edge_refuses_noise():
    x = np.linspace(1200.0, 1800.0, 1000)
    with pytest.raises(InputError, match="no diamond edge above noise"):
        diamond_edge(x, np.random.default_rng(20).poisson(np.full(x.size, 400.0)).astype(float))


# --------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_ruby_spectrum(real_data):
    path = real_data / "ruby" / "test_data1.txt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    data = np.loadtxt(path)
    fit = fit_ruby(data[:, 0], data[:, 1])
    assert 694.0 < fit.r1_nm < 696.0
    assert fit.r1_err_nm < 0.01
    assert fit.r2_nm == pytest.approx(fit.r1_nm - 1.45, abs=0.1)
