"""Equations of state: formulas, inversion, effective-variance fits, F-f plot.

Reference numbers:

* Quartz (Angel et al. 1997), BM3 fitted with both sigmas (effective
  variance), as published with EosFit7: V0 = 112.981(2) A^3,
  K0 = 37.13(9) GPa, K' = 5.99(5), chi2_w ~ 0.95; Vinet K0 = 37.03(9),
  K' = 6.10(4) (``../shared/real-data/README.md``).
* The same data through the effective-variance solver of Quantas
  (gfulian/quantas, docs/source/_downloads/tutorials/eos/quartz_pv_comparison.csv):
  BM3 112.980884(1993), 37.125926(91051), 5.988260(45302), chi2_w 0.952062;
  Vinet 112.980947(1993), 37.025430(87377), 6.103146(41066), chi2_w 0.902934.
  Both list the first point at P = 0.000 GPa; our copy of the file has
  0.001 GPa there, see test_quartz_file_first_point_shifts_V0.
"""

from __future__ import annotations

import decimal
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dacpipe.eos.models import (MODELS, EosParams, bulk_modulus_GPa, eulerian_strain, implied_K0pp_per_GPa,
                                pressure_derivatives, pressure_GPa, volume_A3)
from dacpipe.eos.ff import f_F
from dacpipe.eos.fit import fit_eos

# Gold, Anderson et al. (1989) as in Dioptas's au_Anderson.jcpds: a = 4.0786 A, Z = 4.
AU_V0 = 4.0786**3  # 67.847 A^3 per cell (67.85 rounded)
AU_K0, AU_KP = 166.65, 5.4823


def _numeric_rows(path) -> np.ndarray:
    """The lines of an EosFit-style data file that are all numbers (headers skipped)."""
    rows = []
    for line in path.read_text().splitlines():
        tokens = line.split()
        try:
            rows.append([float(t) for t in tokens])
        except ValueError:
            continue
    return np.array([r for r in rows if r])


def _quartz(real_data):
    d = _numeric_rows(real_data / "eos" / "PV_quartz_Angel1997.dat")
    assert d.shape == (22, 4)
    P, V, sP, sV = d.T  # header: P(GPa) V(A^3) sigmaP sigmaV
    return P.copy(), V, sP, sV


def _topaz(real_data):
    d = _numeric_rows(real_data / "eos" / "PV_topaz_Gatta2014.dat")
    assert d.shape == (25, 10)
    return d[:, 0], d[:, 2], d[:, 1], d[:, 3]  # header: P sigmaP V sigmaV a ...


def _gold(model: str) -> EosParams:
    if model == "bm2":
        return EosParams("bm2", AU_V0, AU_K0)
    if model == "bm4":
        return EosParams("bm4", AU_V0, AU_K0, AU_KP, -0.045)
    return EosParams(model, AU_V0, AU_K0, AU_KP)


# --------------------------------------------------------------------------
# Formulas
# --------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_zero_pressure_at_V0_and_K_is_K0(model):
    p = _gold(model)
    assert pressure_GPa(p, AU_V0) == pytest.approx(0.0, abs=1e-12)
    assert bulk_modulus_GPa(p, AU_V0) == pytest.approx(AU_K0, rel=1e-12)


@pytest.mark.parametrize("model", MODELS)
def test_bulk_modulus_is_minus_V_dP_dV(model):
    p = _gold(model)
    V = AU_V0 * np.array([1.05, 0.9, 0.75, 0.6])
    h = 1e-6 * V
    numeric = -V * (pressure_GPa(p, V + h) - pressure_GPa(p, V - h)) / (2 * h)
    np.testing.assert_allclose(bulk_modulus_GPa(p, V), numeric, rtol=1e-7)


@pytest.mark.parametrize("model", ["bm3", "bm4", "vinet", "murnaghan"])
def test_K_prime_at_zero_pressure_is_Kp(model):
    # K' = dK/dP at P = 0, from K(V) and P(V) on either side of V0.
    p = _gold(model)
    V = AU_V0 * np.array([1 + 1e-5, 1 - 1e-5])
    dK = np.diff(bulk_modulus_GPa(p, V))[0]
    dP = np.diff(pressure_GPa(p, V))[0]
    assert dK / dP == pytest.approx(AU_KP, rel=1e-5)


@pytest.mark.parametrize("params", [_gold("bm2"), _gold("bm3"), _gold("bm4"), EosParams("bm4", AU_V0, AU_K0, AU_KP),
                                    _gold("vinet"), _gold("murnaghan"), EosParams("murnaghan", AU_V0, AU_K0, 0.3)],
                         ids=["bm2", "bm3", "bm4", "bm4-implied", "vinet", "murnaghan", "murnaghan-small-Kp"])
def test_pressure_derivatives_against_central_differences(params):
    # The Jacobian of fit_eos. Central differences with h = 1e-5 |x| have a
    # truncation error ~h^2 (d3P/dx3) / 6 ~ 1e-10 relative and a rounding
    # error ~1e-16 P / h ~ 1e-11 relative here; 1e-7 is far above both.
    V = AU_V0 * np.array([1.05, 0.95, 0.8, 0.6])
    d = pressure_derivatives(params, V)
    for name in ("V0_A3", "K0_GPa", "Kp", "K0pp_per_GPa"):
        value = getattr(params, name)
        if value is None:
            np.testing.assert_array_equal(d[name], 0.0)  # K'' is not a parameter of this model
            continue
        if params.model == "bm2" and name == "Kp":
            continue  # bm2 refuses any K' but 4
        h = 1e-5 * abs(value)
        up = pressure_GPa(EosParams(**{**params.__dict__, name: value + h}), V)
        down = pressure_GPa(EosParams(**{**params.__dict__, name: value - h}), V)
        np.testing.assert_allclose(d[name], (up - down) / (2 * h), rtol=1e-7, err_msg=name)
    # dP/dV0 = K(V)/V0: P depends on V0 only through V/V0.
    np.testing.assert_allclose(d["V0_A3"], bulk_modulus_GPa(params, V) / AU_V0, rtol=1e-14)


def test_murnaghan_Kp_derivative_near_Kp_zero():
    # For K' L -> 0 (L = ln V0/V) the closed form cancels and a series takes
    # over at |K' L| = 1e-3: the limit is K0 L^2 / 2, and the two branches
    # meet there within their 1e-10 relative error (series truncation,
    # (K'L)^3/30, and the closed form's cancellation, ~1e-16/(K'L)^2).
    V = np.array([80.0])
    L = math.log(100.0 / 80.0)
    at_zero = pressure_derivatives(EosParams("murnaghan", 100.0, 50.0, 0.0), V)["Kp"][0]
    assert at_zero == pytest.approx(50.0 * L * L / 2, rel=1e-15)
    below = pressure_derivatives(EosParams("murnaghan", 100.0, 50.0, 0.999e-3 / L), V)["Kp"][0]
    above = pressure_derivatives(EosParams("murnaghan", 100.0, 50.0, 1.001e-3 / L), V)["Kp"][0]
    # Between them the value moves by dK' times d2P/dK'2 = K0 L^3 (1/3 + K'L/4 + ...);
    # a jump between the branches of 1e-10 of the value would be 1e-4 of that move.
    move = 50.0 * L**3 * (1 / 3 + 1e-3 / 4) * 0.002e-3 / L
    assert above - below == pytest.approx(move, rel=1e-3)


def test_bm4_with_implied_K0pp_is_bm3_and_bm2_is_bm3_with_Kp_4():
    V = AU_V0 * np.linspace(0.55, 1.1, 12)
    bm3 = EosParams("bm3", AU_V0, AU_K0, AU_KP)
    np.testing.assert_allclose(pressure_GPa(EosParams("bm4", AU_V0, AU_K0, AU_KP), V), pressure_GPa(bm3, V),
                               rtol=1e-14, atol=1e-12)
    K0pp = implied_K0pp_per_GPa(AU_K0, AU_KP)
    np.testing.assert_allclose(pressure_GPa(EosParams("bm4", AU_V0, AU_K0, AU_KP, K0pp), V),
                               pressure_GPa(bm3, V), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pressure_GPa(EosParams("bm2", AU_V0, AU_K0), V),
                               pressure_GPa(EosParams("bm3", AU_V0, AU_K0, 4.0), V), rtol=1e-14, atol=1e-12)
    # Anderson (1995): K'' = -[(3-K')(4-K') + 35/9]/K0; for K' = 4 that is -35/(9 K0).
    assert implied_K0pp_per_GPa(160.0, 4.0) == pytest.approx(-35.0 / 9.0 / 160.0)


def test_bm3_by_hand():
    # V/V0 = 0.8: f = (1.25^(2/3) - 1)/2 = 0.0801987, (1+2f)^(5/2) = 1.450505;
    # P = 3*166.65*f*1.450505*(1 + 1.5*1.4823*f) = 58.158*1.178317 = 68.529 GPa.
    p = EosParams("bm3", AU_V0, AU_K0, AU_KP)
    assert pressure_GPa(p, 0.8 * AU_V0) == pytest.approx(68.529, abs=2e-3)
    # Vinet, x = 0.8^(1/3) = 0.928318: 3*166.65*(1-x)/x^2 * exp(1.5*4.4823*(1-x))
    # = 41.586 * 1.61925 = 67.34 GPa.
    assert pressure_GPa(EosParams("vinet", AU_V0, AU_K0, AU_KP), 0.8 * AU_V0) == pytest.approx(67.34, abs=0.01)
    # Murnaghan: 166.65/5.4823 * (1.25^5.4823 - 1) = 30.3977 * 2.39853 = 72.91 GPa.
    assert pressure_GPa(EosParams("murnaghan", AU_V0, AU_K0, AU_KP), 0.8 * AU_V0) == pytest.approx(72.91, abs=0.01)


def test_scalar_in_scalar_out_array_in_array_out():
    p = _gold("bm3")
    assert isinstance(pressure_GPa(p, 60.0), float)
    assert isinstance(volume_A3(p, 10.0), float)
    assert volume_A3(p, np.array([[1.0, 2.0]])).shape == (1, 2)
    assert np.isnan(volume_A3(p, np.array([np.nan, 1.0]))[0])


# --------------------------------------------------------------------------
# Inversion
# --------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_round_trip_P_V_P(model):
    p = _gold(model)
    P = np.concatenate([[-2.0, -1.0, -1e-6, 0.0, 1e-9], np.linspace(0.5, 300.0, 120)])
    V = volume_A3(p, P)
    assert np.all(np.diff(V) < 0)
    np.testing.assert_allclose(pressure_GPa(p, V), P, rtol=0, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(["bm3", "vinet", "murnaghan"]),
       K0=st.floats(5.0, 500.0), Kp=st.floats(4.0, 8.0), P=st.floats(-0.5, 200.0))
def test_round_trip_any_parameters(model, K0, Kp, P):
    # K' >= 4 keeps BM3 monotonic under compression; below 4 it has a pressure
    # maximum (K0 = 5, K' = 3.5 tops out below 59 GPa), see the next-but-one test.
    # In tension each model has a spinodal minimum: at K' = 8, -0.084 K0 (BM3),
    # -0.089 K0 (Vinet), -0.125 K0 (Murnaghan), higher for smaller K'; so at
    # most -0.08 K0 (hypothesis found K0 = 5, K' = 7, P = -0.5 beyond BM3's -0.497).
    P = max(P, -0.08 * K0)
    p = EosParams(model, 100.0, K0, Kp)
    assert pressure_GPa(p, volume_A3(p, P)) == pytest.approx(P, abs=1e-9)


def test_gold_at_10_GPa_against_independent_high_precision_bisection():
    # Independent solution: with u = (V0/V)^(1/3), BM3 is a polynomial,
    # P = 3/2 K0 (u^7 - u^5) [1 + 3/4 (K'-4)(u^2 - 1)], bisected in 60-digit decimals.
    ctx = decimal.Context(prec=60)
    D = ctx.create_decimal
    K0, Kp, target = D(repr(AU_K0)), D(repr(AU_KP)), D(10)

    def P_of_u(u):
        return D("1.5") * K0 * (u**7 - u**5) * (1 + D("0.75") * (Kp - 4) * (u * u - 1))

    lo, hi = D(1), D("1.2")
    with decimal.localcontext(ctx):
        for _ in range(180):
            mid = (lo + hi) / 2
            if P_of_u(mid) < target:
                lo = mid
            else:
                hi = mid
        V_exact = D(repr(AU_V0)) / ((lo + hi) / 2) ** 3
    V = volume_A3(EosParams("bm3", AU_V0, AU_K0, AU_KP), 10.0)
    assert abs(V - float(V_exact)) / float(V_exact) < 1e-9
    assert V == pytest.approx(64.4075, abs=1e-4)  # for the record: dV/V0 = -5.07 %


def test_inversion_beyond_the_reachable_pressure_is_refused():
    # Murnaghan in tension never goes below -K0/K'.
    p = EosParams("murnaghan", 100.0, 50.0, 5.0)
    with pytest.raises(ValueError, match="beyond"):
        volume_A3(p, -11.0)
    # BM3 with a small K' has a pressure maximum under compression.
    with pytest.raises(ValueError, match="maximum"):
        volume_A3(EosParams("bm3", 100.0, 50.0, 1.0), 1e4)


# --------------------------------------------------------------------------
# Fits: real data
# --------------------------------------------------------------------------


@pytest.mark.realdata
def test_quartz_bm3_reproduces_eosfit7(real_data):
    P, V, sP, sV = _quartz(real_data)
    P[0] = 0.0  # as in the published EosFit7/Quantas input, see the module docstring
    fit = fit_eos(P, V, sigma_P_GPa=sP, sigma_V_A3=sV, model="bm3")
    published = {"V0_A3": (112.981, 0.002), "K0_GPa": (37.13, 0.09), "Kp": (5.99, 0.05)}
    for name, (value, esd) in published.items():
        assert abs(getattr(fit.params, name) - value) <= esd, name
        assert fit.errors[name] == pytest.approx(esd, rel=0.3), name
    assert fit.reduced_chi2 == pytest.approx(0.95, abs=0.01)
    assert fit.esd_scale == 1.0  # chi2_w < 1: unscaled, as EosFit7 (see fit_eos docstring)
    # Quantas (independent implementation of the same method) to its 6 decimals.
    assert fit.params.V0_A3 == pytest.approx(112.980884, abs=2e-6)
    assert fit.params.K0_GPa == pytest.approx(37.125926, abs=2e-5)
    assert fit.params.Kp == pytest.approx(5.988260, abs=2e-5)
    assert [fit.errors[k] for k in ("V0_A3", "K0_GPa", "Kp")] == pytest.approx(
        [0.001993, 0.091051, 0.045302], rel=1e-3)
    assert fit.reduced_chi2 == pytest.approx(0.952062, abs=1e-5)
    assert fit.n_points == 22 and fit.pressure_range_GPa == (0.0, 8.905)
    assert fit.parameter_names == ("V0_A3", "K0_GPa", "Kp") and fit.fixed == ()


@pytest.mark.realdata
def test_quartz_vinet_reproduces_eosfit7(real_data):
    P, V, sP, sV = _quartz(real_data)
    P[0] = 0.0
    fit = fit_eos(P, V, sigma_P_GPa=sP, sigma_V_A3=sV, model="vinet")
    for name, (value, esd) in {"K0_GPa": (37.03, 0.09), "Kp": (6.10, 0.04)}.items():
        assert abs(getattr(fit.params, name) - value) <= esd, name
        assert fit.errors[name] == pytest.approx(esd, rel=0.3), name
    assert fit.params.K0_GPa == pytest.approx(37.025430, abs=2e-5)
    assert fit.params.Kp == pytest.approx(6.103146, abs=2e-5)
    assert fit.reduced_chi2 == pytest.approx(0.902934, abs=1e-5)


@pytest.mark.realdata
def test_quartz_file_first_point_shifts_V0(real_data):
    # Our copy lists the first point at 0.001 GPa (10 bar), not 0.000: its tiny
    # sigma_P (1e-6 GPa) pins it, so V0 moves up by P V0 / K0 = 0.003 A^3,
    # 1.5 published esds; K0 and K' are unaffected within their esds.
    P, V, sP, sV = _quartz(real_data)
    assert P[0] == 0.001
    fit = fit_eos(P, V, sigma_P_GPa=sP, sigma_V_A3=sV, model="bm3")
    assert fit.params.V0_A3 - 112.981 == pytest.approx(0.001 * 112.981 / 37.1, abs=5e-4)
    assert abs(fit.params.K0_GPa - 37.13) <= 0.09
    assert abs(fit.params.Kp - 5.99) <= 0.05


@pytest.mark.realdata
def test_quartz_bm2_is_rejected_by_chi2_and_F_f_slope(real_data):
    P, V, sP, sV = _quartz(real_data)
    P[0] = 0.0
    bm2 = fit_eos(P, V, sigma_P_GPa=sP, sigma_V_A3=sV, model="bm2")
    assert bm2.fixed == ("Kp",) and math.isnan(bm2.errors["Kp"]) and bm2.params.Kp == 4.0
    assert bm2.reduced_chi2 > 100  # Quantas: 128.27
    assert bm2.esd_scale == pytest.approx(math.sqrt(bm2.reduced_chi2))  # inflated since chi2_w > 1
    ff = f_F(P, V, 112.981, sP, sV)
    assert not ff.included[0]  # f = 0 at the first point
    # Slope 3 K0 (K'-4)/2 = 110 GPa for K0 = 37.1, K' = 5.99: far from 0.
    assert ff.intercept_GPa == pytest.approx(37.1, abs=0.5)
    assert ff.slope_GPa == pytest.approx(1.5 * 37.13 * (5.99 - 4), rel=0.1)
    assert ff.slope_GPa / ff.slope_err > 10


@pytest.mark.realdata
def test_topaz_fit_converges_with_sensible_values(real_data):
    P, V, sP, sV = _topaz(real_data)
    fit = fit_eos(P, V, sigma_P_GPa=sP, sigma_V_A3=sV, model="bm3")
    assert fit.iterations < 50
    assert fit.params.V0_A3 == pytest.approx(345.46, abs=0.2)  # measured at 1 bar: 345.46(2)
    assert 150 < fit.params.K0_GPa < 175
    assert 2.0 < fit.params.Kp < 4.5
    # The two data sets (sigma_V 0.02-0.04 to 9 GPa, 0.2 above) scatter well beyond
    # their sigmas together (chi2_w ~ 18.5, so esds are inflated by sqrt(chi2_w)) ...
    assert 5 < fit.reduced_chi2 < 40
    assert fit.esd_scale > 2
    # ... while the low-pressure set alone is consistent with its sigmas.
    low = sV < 0.1
    alone = fit_eos(P[low], V[low], sigma_P_GPa=sP[low], sigma_V_A3=sV[low], model="bm3")
    assert alone.reduced_chi2 < 1.5
    assert abs(alone.params.K0_GPa - fit.params.K0_GPa) < 2 * math.hypot(alone.errors["K0_GPa"], fit.errors["K0_GPa"])


# --------------------------------------------------------------------------
# Fits: synthetic data
# --------------------------------------------------------------------------

TRUE = {
    "bm2": EosParams("bm2", 100.0, 120.0),
    "bm3": EosParams("bm3", 100.0, 120.0, 4.6),
    "bm4": EosParams("bm4", 100.0, 120.0, 5.2, -0.08),
    "vinet": EosParams("vinet", 100.0, 120.0, 4.6),
    "murnaghan": EosParams("murnaghan", 100.0, 120.0, 4.6),
}


def _values(p: EosParams) -> dict[str, float]:
    out = {"V0_A3": p.V0_A3, "K0_GPa": p.K0_GPa, "Kp": p.Kp}
    if p.model == "bm4":
        out["K0pp_per_GPa"] = p.K0pp_per_GPa
    return out


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("weighted", [False, True])
def test_exact_data_recovered_exactly(model, weighted):
    true = TRUE[model]
    P = np.linspace(0.0, 60.0, 16)
    V = volume_A3(true, P)
    sig = {"sigma_P_GPa": 0.05, "sigma_V_A3": 0.01} if weighted else {}
    fit = fit_eos(P, V, model=model, **sig)
    for name, value in _values(true).items():
        assert getattr(fit.params, name) == pytest.approx(value, rel=1e-6), name
    assert fit.reduced_chi2 < 1e-12


@pytest.mark.parametrize("model", ["bm3", "bm4", "vinet", "murnaghan"])
def test_noisy_data_recovered_within_2_sigma(model):
    true = TRUE[model]
    rng = np.random.default_rng(20240611)
    P_true = np.linspace(0.5, 60.0, 25)
    sP, sV = np.full(25, 0.05), np.full(25, 0.02)
    V_obs = volume_A3(true, P_true) + rng.normal(0.0, sV)
    P_obs = P_true + rng.normal(0.0, sP)
    fit = fit_eos(P_obs, V_obs, sigma_P_GPa=sP, sigma_V_A3=sV, model=model)
    for name, value in _values(true).items():
        assert abs(getattr(fit.params, name) - value) < 2 * fit.errors[name], name
    assert 0.4 < fit.reduced_chi2 < 1.8


def test_esds_match_the_scatter_of_repeated_fits():
    # With the sigmas that made the noise, the unscaled esds must equal the
    # scatter of the fitted values over many data sets (within sampling error).
    true = TRUE["bm3"]
    rng = np.random.default_rng(7)
    P_true = np.linspace(0.0, 30.0, 15)
    V_true = volume_A3(true, P_true)
    sP, sV = 0.03, 0.03
    fits = [fit_eos(P_true + rng.normal(0, sP, 15), V_true + rng.normal(0, sV, 15),
                    sigma_P_GPa=sP, sigma_V_A3=sV, model="bm3", esd_scaling="never") for _ in range(60)]
    for name in ("V0_A3", "K0_GPa", "Kp"):
        scatter = np.std([getattr(f.params, name) for f in fits], ddof=1)
        esd = np.median([f.errors[name] for f in fits])
        assert scatter == pytest.approx(esd, rel=0.3), name
    assert np.mean([f.reduced_chi2 for f in fits]) == pytest.approx(1.0, abs=0.15)


def test_fixed_V0_and_fixed_Kp():
    true = TRUE["bm3"]
    P = np.linspace(1.0, 40.0, 10)
    V = volume_A3(true, P)
    fit = fit_eos(P, V, model="bm3", V0_A3=100.0, fix=("V0_A3",))
    assert fit.fixed == ("V0_A3",) and fit.parameter_names == ("K0_GPa", "Kp")
    assert math.isnan(fit.errors["V0_A3"]) and fit.params.V0_A3 == 100.0
    assert fit.params.K0_GPa == pytest.approx(120.0, rel=1e-7)
    assert fit.covariance.shape == (2, 2)
    fit = fit_eos(P, V, model="bm3", Kp=4.6)
    assert fit.fixed == ("Kp",) and fit.params.Kp == 4.6 and math.isnan(fit.errors["Kp"])
    assert fit.params.K0_GPa == pytest.approx(120.0, rel=1e-7)
    # fix=("Kp",) without a value fixes K' = 4: a BM3 fit that is a BM2 fit.
    a = fit_eos(P, V, model="bm3", fix=("Kp",))
    b = fit_eos(P, V, model="bm2")
    assert a.params.Kp == 4.0 and a.params.K0_GPa == pytest.approx(b.params.K0_GPa, rel=1e-9)
    # bm4 with K'' fixed at its implied value is bm3.
    c = fit_eos(P, V, model="bm4", fix=("K0pp_per_GPa",))
    assert c.params.K0_GPa == pytest.approx(120.0, rel=1e-7) and c.params.Kp == pytest.approx(4.6, rel=1e-7)


def test_F_f_on_bm3_data_gives_K0_and_Kp():
    true = TRUE["bm3"]
    P = np.linspace(0.0, 40.0, 21)
    V = volume_A3(true, P)
    exact = f_F(P, V, 100.0)
    assert not exact.included[0] and np.isnan(exact.F_GPa[0])
    assert exact.intercept_GPa == pytest.approx(120.0, rel=1e-9)
    assert exact.slope_GPa == pytest.approx(1.5 * 120.0 * 0.6, rel=1e-8)
    np.testing.assert_allclose(exact.f, eulerian_strain(V, 100.0))
    # With noise in P and V, propagated errors and a weighted line.
    rng = np.random.default_rng(11)
    sP, sV = 0.05, 0.02
    noisy = f_F(P + rng.normal(0, sP, 21), V + rng.normal(0, sV, 21), 100.0, sP, sV)
    assert abs(noisy.intercept_GPa - 120.0) < 2 * noisy.intercept_err
    assert abs(noisy.slope_GPa - 108.0) < 2 * noisy.slope_err
    assert np.all(noisy.sigma_F_GPa[noisy.included] > 0)
    # sigma_f = eta^(-5/3) sigma_eta / 3 with sigma_eta = sigma_V / V0 (V0 exact here).
    np.testing.assert_allclose(noisy.sigma_f, (noisy.f * 2 + 1) ** 2.5 * sV / 100.0 / 3, rtol=1e-12)


def test_F_f_sigma_by_hand():
    # Heinz & Jeanloz (1984) / Angel (2000) at V/V0 = 0.9, P = 15 GPa, sigma_P = 0.05, sigma_V = 0.02, V0 = 100:
    # eta = 0.9, sigma_eta = 0.9*0.02/90 = 2e-4, eta^(-2/3) = 1.072766, f = 0.036383,
    # F = 15/(3 f (1+2f)^2.5) = 15/0.130102 = 115.294;
    # sigma' = (7*1.072766 - 5)*2e-4/(3*(-0.072766)*0.9) = -2.5544e-3,
    # sigma_F = F sqrt((0.05/15)^2 + sigma'^2) = 115.294 * 4.1996e-3 = 0.4842.
    r = f_F([15.0, 20.0], [90.0, 85.0], 100.0, 0.05, 0.02)
    assert r.F_GPa[0] == pytest.approx(115.294, abs=1e-3)
    assert r.sigma_F_GPa[0] == pytest.approx(0.4842, abs=2e-4)
    assert r.sigma_f[0] == pytest.approx(0.9 ** (-5 / 3) * 2e-4 / 3, rel=1e-12)


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------


def test_too_few_points():
    with pytest.raises(ValueError, match="need at least 4"):
        fit_eos([1.0, 2.0, 3.0], [99.0, 98.0, 97.0], model="bm3")
    with pytest.raises(ValueError, match="need at least 5"):
        fit_eos([1.0, 2.0, 3.0, 4.0], [99.0, 98.0, 97.0, 96.0], model="bm4")
    fit_eos([1.0, 2.0, 3.0], [99.0, 98.1, 97.3], model="bm3", Kp=4.0)  # 2 free: enough


@pytest.mark.parametrize("bad", [0.0, -98.0])
def test_non_positive_volume(bad):
    with pytest.raises(ValueError, match="positive"):
        fit_eos([1.0, 2.0, 3.0, 4.0, 5.0], [99.0, bad, 97.0, 96.0, 95.0])
    with pytest.raises(ValueError, match="positive"):
        pressure_GPa(_gold("bm3"), [60.0, bad])
    with pytest.raises(ValueError, match="positive"):
        f_F([1.0, 2.0], [99.0, bad], 100.0)


def test_other_bad_input():
    P, V = [1.0, 2.0, 3.0, 4.0, 5.0], [99.0, 98.0, 97.0, 96.0, 95.0]
    with pytest.raises(ValueError, match="4 volumes"):
        fit_eos(P, V[:4])
    with pytest.raises(ValueError, match="unknown EOS model"):
        fit_eos(P, V, model="bm5")
    with pytest.raises(ValueError, match="V0_A3=..."):
        fit_eos(P, V, fix=("V0_A3",))
    with pytest.raises(ValueError, match="cannot fix"):
        fit_eos(P, V, fix=("K0pp_per_GPa",))
    with pytest.raises(ValueError, match="infinite weight"):
        fit_eos(P, V, sigma_P_GPa=0.0, sigma_V_A3=[0.1, 0.1, 0.0, 0.1, 0.1])
    with pytest.raises(ValueError, match="finite"):
        fit_eos([1.0, np.nan, 3.0, 4.0, 5.0], V)
    with pytest.raises(ValueError, match="bm2 implies"):
        EosParams("bm2", 100.0, 100.0, 5.0)
    with pytest.raises(ValueError, match="bm4"):
        EosParams("bm3", 100.0, 100.0, 5.0, -0.05)
    with pytest.raises(ValueError, match="K0_GPa"):
        EosParams("vinet", 100.0, 0.0)


def test_eos_stage_fixes_V0_and_Kp_per_phase():
    """The config's eos.phases.<phase> fixes V0 or K' for that phase only; a
    phase with too few points is left out with a message, not fitted."""
    from dacpipe.eos.stage import fit_phase_volumes

    true = TRUE["bm3"]
    P = np.linspace(0.5, 12.0, 8)
    V = volume_A3(true, P)
    volumes = {"A": (V, np.full(8, 0.01)), "B": (V, np.full(8, 0.01)), "C": (np.where(P < 3, V, np.nan),
                                                                           np.full(8, 0.01))}
    section = {"model": "bm3", "phases": {"A": {"V0_fu_A3": 100.0}, "B": {"model": "vinet", "Kp": 4.6}}}
    messages = []
    result = fit_phase_volumes([f"p{i}" for i in range(8)], P, np.full(8, 0.01), volumes, section, warn=messages.append)
    x = result.extra
    assert x["eos/A/V0_fu_A3"] == 100.0 and math.isnan(x["eos/A/V0_fu_err_A3"])
    assert float(x["eos/A/K0_GPa"]) == pytest.approx(120.0, rel=1e-6)
    assert list(x["eos/A/parameter_names"]) == ["K0_GPa", "Kp"]
    assert str(x["eos/B/model"]) == "vinet" and float(x["eos/B/Kp"]) == 4.6 and math.isnan(x["eos/B/Kp_err"])
    assert "eos/C/K0_GPa" not in x and messages == ["eos C: 2 points with a pressure and a volume, a bm3 fit needs 4"]
