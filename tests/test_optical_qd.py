"""Nanocrystal optics and the E(P) model choice: the F-test of the quadratic term."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dacpipe.optical.pressure_fit import F_TEST_LEVEL, fit_energy_vs_pressure

P8 = np.linspace(0.5, 8.0, 8)


def test_f_test_statistic_is_the_textbook_one():
    """F from numpy's weighted polyfit residuals equals the stored F; the
    critical value is F(1, 5) at 5 % = 6.61 (tables)."""
    rng = np.random.default_rng(3)
    E = 1.5 - 0.03 * P8 + 0.001 * P8**2 + rng.normal(0, 0.002, P8.size)
    fit = fit_energy_vs_pressure(P8, E, np.full(P8.size, 0.002))
    chi = [np.sum(((E - np.polyval(np.polyfit(P8, E, k), P8)) / 0.002) ** 2) for k in (1, 2)]
    assert fit.F_quadratic == pytest.approx((chi[0] - chi[1]) / (chi[1] / 5), rel=1e-6)
    assert fit.F_critical == pytest.approx(6.6079, rel=1e-4)
    assert fit.model == ("quadratic" if fit.F_quadratic > fit.F_critical else "linear")


def test_f_test_keeps_a_real_curvature():
    """beta P^2 = 64 meV at 8 GPa against 2 meV noise: quadratic; fewer than 4 points: no test, linear."""
    rng = np.random.default_rng(11)
    curved = fit_energy_vs_pressure(P8, 1.5 - 0.03 * P8 + 0.001 * P8**2 + rng.normal(0, 0.002, 8),
                                    np.full(8, 0.002))
    assert curved.model == "quadratic" and curved.F_quadratic > curved.F_critical
    three = fit_energy_vs_pressure(P8[:3], 1.5 - 0.03 * P8[:3], np.full(3, 0.002))
    assert three.model == "linear" and math.isnan(three.F_quadratic)


@pytest.mark.slow
def test_f_test_false_alarms_at_its_level():
    """A straight line with noise: the quadratic is kept in 5 % of 200 series
    (false alarms at the test's level; 3 binomial sigma = 4.6 %)."""
    rng = np.random.default_rng(11)
    n, kept = 200, 0
    for _ in range(n):
        E = 1.5 - 0.03 * P8 + rng.normal(0, 0.002, 8)
        kept += fit_energy_vs_pressure(P8, E, np.full(8, 0.002)).model == "quadratic"
    assert abs(kept / n - F_TEST_LEVEL) < 3 * math.sqrt(F_TEST_LEVEL * (1 - F_TEST_LEVEL) / n)


def test_dark_spectrum_is_subtracted_from_sample_and_reference():
    """I = T I0' + D, I0 = I0' + D with a dark D of 10 % of the lamp: with the
    dark, A = -log10 T exactly (to rounding); without it the edge is flattened
    (A at T = 0.01 reads 1.10 instead of 2)."""
    from dacpipe.optical.spectra import OpticalSpectrum, absorbance_from

    e = np.linspace(1.5, 2.5, 200)
    T = 10 ** -(2.0 / (1.0 + np.exp(-(e - 2.0) / 0.05)))
    lamp, D = 1000.0 + 200.0 * e, 100.0 + 5.0 * e
    sample = OpticalSpectrum(e, T * lamp + D, "I.txt", "")
    ref = OpticalSpectrum(e, lamp + D, "I0.txt", "")
    dark = OpticalSpectrum(e, D, "dark.txt", "")
    with_dark = absorbance_from(sample, "intensity", ref, dark)
    np.testing.assert_allclose(with_dark.values, -np.log10(T), atol=1e-12)
    without = absorbance_from(sample, "intensity", ref)
    assert without.values[-1] < 1.2 and with_dark.values[-1] > 1.98


def test_deformation_potential_of_a_linear_gap():
    """Eg = 1.5 + 0.08 P on an EOS of K0 = 50 GPa: a_V(0) = -K0 alpha = -4.0 eV;
    at 5 GPa -K(5) alpha with K(5) of the BM3; errors: alpha's 1 % and K0's
    2 % add in quadrature at P = 0 (2.24 %)."""
    from dacpipe.eos.models import EosParams, bulk_modulus_GPa, volume_A3
    from dacpipe.optical.deformation import deformation_potential_eV

    P = np.linspace(0.5, 6.0, 6)
    fit = fit_energy_vs_pressure(P, 1.5 + 0.08 * P, np.full(6, 1e-3), model="linear")
    eos = EosParams("bm3", 60.0, 50.0, 4.5)
    cov = np.diag([0.0, 1.0, 0.0])  # sigma K0 = 1 GPa = 2 %
    aV, err = deformation_potential_eV(fit, (eos, cov, ("V0_A3", "K0_GPa", "Kp")), 0.0)
    assert aV == pytest.approx(-4.0, rel=1e-6)
    expected = math.hypot(50.0 * fit.alpha_err_eV_per_GPa, 0.08 * 1.0)
    assert err == pytest.approx(expected, rel=1e-4)
    aV5, _ = deformation_potential_eV(fit, (eos, cov, ("V0_A3", "K0_GPa", "Kp")), 5.0)
    assert aV5 == pytest.approx(-float(bulk_modulus_GPa(eos, volume_A3(eos, 5.0))) * 0.08, rel=1e-6)


def test_an_eos_that_does_not_reach_the_pressure_gives_nan_and_says_why():
    """A poor EOS fit (K' = -3: K falls to 0 below 1.4 GPa) has no volume at the
    phases' mean pressure: NaN there with the reason and one warning, never a crash
    (found: `dacpipe run` of hgte_thz without spot rejection stopped on it)."""
    from dacpipe.eos.models import EosParams
    from dacpipe.optical.stage import _deformation_extras

    P = np.linspace(0.5, 3.0, 6)
    fit = fit_energy_vs_pressure(P, 1.5 + 0.08 * P, np.full(6, 1e-3), model="linear")
    eos = (EosParams("bm3", 67.42, 49.46, -3.02), np.eye(3) * 1e-4, ("V0_A3", "K0_GPa", "Kp"))
    warnings = []
    out = _deformation_extras("g", fit, eos, 2.0, warnings.append, "band gap", "HgTe-zb")
    assert float(out["g/dEg_dlnV_P0_eV"]) == pytest.approx(-49.46 * 0.08, rel=1e-6)
    assert math.isnan(float(out["g/dEg_dlnV_eV"])) and math.isnan(float(out["g/bulk_modulus_GPa"]))
    assert "stable branch" in str(out["g/reason"].item()) and len(warnings) == 1 and "2.00 GPa" in warnings[0]


def test_stage_deformation_potential_from_the_eos_stage():
    """The optical stage's wiring: the EOS stage's own output for a BM3 phase
    (K0 = 50 GPa, K' = 4.5, volumes exact) read back as the optical stage's
    upstream, and Eg = 1.5 + 0.08 P: dEg/dlnV at P = 0 is -K0 alpha = -4.0 eV
    (the fitted K0 is exact to 1e-6 on exact volumes), at the mean pressure
    -K(P) alpha; a phase without an EOS fit gets NaN and the reason."""
    from dacpipe.core.results import StageResult, Upstream
    from dacpipe.eos.models import EosParams, bulk_modulus_GPa, volume_A3
    from dacpipe.eos.stage import fit_phase_volumes
    from dacpipe.optical import stage

    ids = [f"p{i:03d}" for i in range(10)]
    P = np.linspace(0.5, 8.0, 10)
    truth = EosParams("bm3", 60.0, 50.0, 4.5)
    V = np.array([volume_A3(truth, p) for p in P])
    eos = fit_phase_volumes(ids, P, np.full(10, 0.02), {"A": (V, np.full(10, 0.01))}, {"model": "bm3"})
    upstream = Upstream({key[len("eos/"):]: value for key, value in eos.extra.items()}, eos.attrs)
    fits = stage.eos_fits(upstream)
    assert set(fits) == {"A"} and fits["A"][0].K0_GPa == pytest.approx(50.0, rel=1e-6)

    cfg = stage.settings({})
    n = len(ids)
    datasets = {f"band_gap/{name}": np.full(n, np.nan) for name in stage._GAP_FIELDS}
    datasets.update({f"pl_peak/{name}": np.full(n, np.nan) for name in stage._PL_FIELDS})
    datasets["band_gap/band_gap_eV"] = 1.5 + 0.08 * P
    datasets["band_gap/band_gap_err_eV"] = np.full(n, 1e-3)
    measured = StageResult(stage="optical", point_ids=ids, datasets=datasets, status=["ok"] * n)
    phases = ["A"] * 6 + ["B"] * 4
    messages = []
    result = stage.fit_series(measured, cfg, P, phases, messages.append, eos_fits=fits)
    a = {key.rsplit("/", 1)[1]: value for key, value in result.extra.items()
         if key.startswith("optical/band_gap/deformation/A/")}
    assert float(a["dEg_dlnV_P0_eV"]) == pytest.approx(-4.0, rel=1e-5)
    # The two fits' errors in quadrature: K0 sigma_alpha and alpha sigma_K0.
    alpha_err = float(result.extra["optical/band_gap/fit/A/alpha_err_eV_per_GPa"])
    k0_err = float(eos.extra["eos/A/K0_err_GPa"])
    assert k0_err > 0 and alpha_err > 0
    assert float(a["dEg_dlnV_P0_err_eV"]) == pytest.approx(math.hypot(50.0 * alpha_err, 0.08 * k0_err), rel=1e-3)
    mean_p = float(np.mean(P[:6]))
    assert float(a["pressure_mean_GPa"]) == pytest.approx(mean_p)
    assert float(a["dEg_dlnV_eV"]) == pytest.approx(-float(bulk_modulus_GPa(truth, volume_A3(truth, mean_p))) * 0.08,
                                                    rel=1e-5)
    assert str(a["reason"]) == "" and str(a["eos_model"]) == "bm3"
    b = {key.rsplit("/", 1)[1]: value for key, value in result.extra.items()
         if key.startswith("optical/band_gap/deformation/B/")}
    assert np.isnan(float(b["dEg_dlnV_P0_eV"])) and "no EOS fit of phase B" in str(b["reason"])
    assert any("no deformation potential" in m for m in messages)


def test_optical_reads_the_eos_and_the_eos_reads_no_optics():
    """The DAG: optical after eos when the run is indexed, never the other way round."""
    from dacpipe.run.stages import needs, optional_reads

    run = {"pressure": {"gauge": "ruby"}, "xrd": {}, "phases": ["HgTe-zb"], "optical": {}}
    assert "eos" in needs("optical", run) and "optical" not in needs("eos", run)
    assert "HgTe-zb/K0_GPa" in optional_reads("optical", "eos", ["HgTe-zb"])
    assert needs("optical", {"pressure": {"gauge": "ruby"}, "optical": {}}) == ("pressure",)


def test_a_fitted_eos_that_was_not_read_is_named():
    """The EOS stage fitted a phase but the optical stage's upstream lacks its
    parameters: the reason says so, not "no EOS fit"."""
    from dacpipe.core.results import Upstream
    from dacpipe.optical import stage

    fits = stage.eos_fits(Upstream({}, {"phases_fitted": ["A"]}))
    assert "did not reach the optical stage" in fits["A"]
    assert stage.eos_fits(None) == {}
