"""What EOS papers report: axial moduli, K0-K' ellipses, Delta V/V at a transition.

Truths are synthetic: cell edges whose cubes follow a BM3 of known K0 and K'
(so the linear modulus is exactly 3 K0, Angel et al. 2014), volumes of two
phases on known EOS. The tolerances follow from the noise put in.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2

from dacpipe.core.results import StageContext, Upstream
from dacpipe.eos.fit import fit_eos
from dacpipe.eos.models import EosParams, volume_A3
from dacpipe.eos.report import (ELLIPSE_LEVELS, confidence_ellipse, fit_axial_eos, k0_kp_ellipses,
                                volume_at_pressure, volume_change_from_eos, volume_change_from_points)
from dacpipe.eos.stage import fit_phase_volumes, run

P_GRID = np.linspace(0.3, 12.0, 14)


def _edge(a0: float, M0: float, Mp: float, P) -> np.ndarray:
    """An edge whose cube follows BM3 with K0 = M0/3, K' = M'/3."""
    return volume_A3(EosParams("bm3", a0**3, M0 / 3.0, Mp / 3.0), np.asarray(P, float)) ** (1.0 / 3.0)


def test_delta_chi2_of_the_ellipses_is_angel_2000():
    """68.3 % and 95.4 % for two parameters: Delta chi^2 = 2.30 and 6.18 (Angel 2000, Table 2)."""
    assert chi2.ppf(ELLIPSE_LEVELS[0], 2) == pytest.approx(2.30, abs=0.005)
    assert chi2.ppf(ELLIPSE_LEVELS[1], 2) == pytest.approx(6.18, abs=0.005)


def test_axial_moduli_of_a_hexagonal_cell_are_recovered():
    """a stiff (M0 = 420 GPa, M' = 12), c soft (M0 = 180 GPa, M' = 18): the
    noise-free edges give them back to 1e-6; with 1e-4 A noise the errors
    cover the truth (pull within 3)."""
    truth = {"a": (3.25, 420.0, 12.0), "c": (5.21, 180.0, 18.0)}
    for axis, (a0, M0, Mp) in truth.items():
        edge = _edge(a0, M0, Mp, P_GRID)
        exact = fit_axial_eos(P_GRID, edge, axis=axis, model="bm3")
        assert exact.M0_GPa == pytest.approx(M0, rel=1e-6)
        assert exact.Mp == pytest.approx(Mp, rel=1e-5)
        assert exact.a0_A == pytest.approx(a0, rel=1e-9)
        assert exact.beta0_per_GPa == pytest.approx(1.0 / M0, rel=1e-6)
        rng = np.random.default_rng(7)
        noisy = fit_axial_eos(P_GRID, edge + rng.normal(0.0, 1e-4, P_GRID.size), sigma_P_GPa=1e-6,
                              sigma_edge_A=1e-4, axis=axis, model="bm3")
        assert abs(noisy.M0_GPa - M0) < 3 * noisy.M0_err_GPa
        assert abs(noisy.a0_A - a0) < 3 * noisy.a0_err_A


def test_axial_moduli_sum_to_the_bulk_modulus():
    """V = a^2 c sqrt(3)/2: beta_V = 2 beta_a + beta_c at P = 0, so 1/K0 =
    2/M0_a + 1/M0_c; the volume fit of the same points (up to 4.5 GPa) agrees
    to 0.5 % (BM3 of the volume is not exactly BM3 of the edges: the
    truncations differ, by 1.6 % over the whole 12 GPa)."""
    P = P_GRID[:6]
    a, c = _edge(3.25, 420.0, 12.0, P), _edge(5.21, 180.0, 18.0, P)
    V = math.sqrt(3) / 2 * a**2 * c
    K0 = fit_eos(P, V, model="bm3").params.K0_GPa
    Ma = fit_axial_eos(P, a).M0_GPa
    Mc = fit_axial_eos(P, c).M0_GPa
    assert 1.0 / K0 == pytest.approx(2.0 / Ma + 1.0 / Mc, rel=5e-3)


def test_ellipse_boundary_is_at_delta_chi2():
    """Every boundary point is at Mahalanobis distance^2 = Delta chi^2; its
    projection on each axis reaches sqrt(Delta chi^2 C_ii) (1.52 sigma at 68.3 %)."""
    C = np.array([[4.0, -0.9], [-0.9, 0.25]])  # K0 and K' anticorrelated, r = -0.9
    for level in ELLIPSE_LEVELS:
        pts = confidence_ellipse((150.0, 4.5), C, level, n_points=2001)
        d = pts - [150.0, 4.5]
        m2 = np.einsum("ij,jk,ik->i", d, np.linalg.inv(C), d)
        np.testing.assert_allclose(m2, chi2.ppf(level, 2), rtol=1e-12)
        half_width = math.sqrt(chi2.ppf(level, 2) * C[0, 0])
        assert d[:, 0].max() == pytest.approx(half_width, rel=1e-5)
        assert d[:, 1].min() == pytest.approx(-math.sqrt(chi2.ppf(level, 2) * C[1, 1]), rel=1e-5)


def test_ellipse_refused_for_a_singular_covariance():
    with pytest.raises(ValueError):
        confidence_ellipse((1.0, 1.0), [[1.0, 1.0], [1.0, 1.0]], 0.683)
    params = EosParams("bm2", 60.0, 100.0)
    assert k0_kp_ellipses(params, np.eye(2), ("V0_A3", "K0_GPa")) == {}


def test_ellipse_covers_the_truth_as_often_as_it_says():
    """150 noisy BM3 data sets: the 68.3 % ellipse holds the true (K0, K')
    in 68.3 +- 3.8 % of them (binomial sigma), the 95.4 % one in 95.4 +- 1.7 %;
    tolerances 3 sigma. K0's pull has unit spread (within 25 %, ~3.5 sigma of
    a standard deviation from 150 draws)."""
    truth = EosParams("bm3", 64.0, 100.0, 4.5)
    V = volume_A3(truth, P_GRID)
    rng = np.random.default_rng(2024)
    inside = np.zeros(2)
    pulls = []
    n = 150
    for _ in range(n):
        fit = fit_eos(P_GRID + rng.normal(0.0, 0.05, P_GRID.size), V, sigma_P_GPa=0.05, sigma_V_A3=1e-9,
                      model="bm3", esd_scaling="never")
        idx = [fit.parameter_names.index("K0_GPa"), fit.parameter_names.index("Kp")]
        C = fit.covariance[np.ix_(idx, idx)]
        d = np.array([fit.params.K0_GPa - truth.K0_GPa, fit.params.Kp - truth.Kp])
        m2 = d @ np.linalg.solve(C, d)
        inside += [m2 <= chi2.ppf(level, 2) for level in ELLIPSE_LEVELS]
        pulls.append(d[0] / math.sqrt(C[0, 0]))
        # the stored curves are those of the same covariance
        curves = k0_kp_ellipses(fit.params, fit.covariance, fit.parameter_names)
        assert set(curves) == {"K0_68_GPa", "Kp_68", "K0_95_GPa", "Kp_95"}
    share = inside / n
    assert abs(share[0] - 0.683) < 3 * math.sqrt(0.683 * 0.317 / n)
    assert abs(share[1] - 0.954) < 3 * math.sqrt(0.954 * 0.046 / n)
    assert 0.75 < np.std(pulls) < 1.25


def test_volume_at_pressure_error_matches_finite_differences():
    """sigma(V(P)) by the implicit-function gradient equals a central-difference
    propagation through the covariance to 1e-4."""
    truth = EosParams("vinet", 50.0, 80.0, 5.0)
    names = ("V0_A3", "K0_GPa", "Kp")
    C = np.array([[0.01, 0.02, -0.001], [0.02, 4.0, -0.5], [-0.001, -0.5, 0.09]])
    V, sV = volume_at_pressure(truth, C, names, 7.0)
    g = []
    for k, nm in enumerate(names):
        h = 1e-5 * getattr(truth, nm)
        up = EosParams("vinet", **{**{n: getattr(truth, n) for n in names}, nm: getattr(truth, nm) + h})
        down = EosParams("vinet", **{**{n: getattr(truth, n) for n in names}, nm: getattr(truth, nm) - h})
        g.append((volume_A3(up, 7.0) - volume_A3(down, 7.0)) / (2 * h))
    g = np.array(g)
    assert V == pytest.approx(volume_A3(truth, 7.0), rel=1e-12)
    assert sV == pytest.approx(math.sqrt(g @ C @ g), rel=1e-4)


def test_volume_change_at_a_transition_from_both_eos():
    """Zinc blende (V0 = 67.4, K0 = 42.1) -> cinnabar (V0 = 61.0, K0 = 40): at
    2 GPa the truth is V_B(2)/V_A(2) - 1; noise-free fits give it to 1e-7."""
    A, B = EosParams("bm3", 67.4, 42.1, 4.8), EosParams("bm3", 61.0, 40.0, 5.5)
    truth = volume_A3(B, 2.0) / volume_A3(A, 2.0) - 1.0
    fa = fit_eos(P_GRID[:5], volume_A3(A, P_GRID[:5]), model="bm3")
    fb = fit_eos(P_GRID[3:], volume_A3(B, P_GRID[3:]), model="bm3")
    change = volume_change_from_eos(2.0, (fa.params, fa.covariance, fa.parameter_names),
                                    (fb.params, fb.covariance, fb.parameter_names))
    assert change.delta_V_rel == pytest.approx(truth, abs=1e-7)
    assert change.method == "eos"


def test_volume_change_from_coexistence_points():
    """Two coexistence points with ratios 0.90 and 0.92, relative errors 1e-4 on
    every volume (so equal errors of the ratios): mean 0.91 - 1."""
    VA, VB = np.array([np.nan, 60.0, 50.0]), np.array([np.nan, 54.0, 46.0])
    change = volume_change_from_points(VA, 1e-4 * VA, VB, 1e-4 * VB)
    assert change.delta_V_rel == pytest.approx(-0.09, abs=1e-3)  # the ratios' errors differ by 0.9/0.92
    assert change.delta_V_rel_err > 0.009  # the scatter (0.01) dominates the tiny point errors
    assert math.isnan(volume_change_from_points([np.nan], [1.0], [1.0], [1.0]).delta_V_rel)


def test_eos_stage_stores_axes_ellipse_and_volume_change():
    """The stage with edges and transitions in its upstream: ``axes/``,
    ``ellipse/`` and ``eos/transitions/`` land where documented."""
    A, B = EosParams("bm3", 67.4, 42.1, 4.8), EosParams("bm3", 61.0, 40.0, 5.5)
    P = np.linspace(0.2, 10.0, 16)
    inA, inB = P < 3.5, P > 2.5
    VA = np.where(inA, volume_A3(A, P), np.nan)
    VB = np.where(inB, volume_A3(B, P), np.nan)
    # B hexagonal: a^2 c sqrt(3)/2 / Z = V_B with c/a held at 1.6 would make the axes isotropic; give c its own law
    a = np.where(inB, _edge(4.1, 150.0, 15.0, P), np.nan)
    c = np.where(inB, (VB * 2 * 2 / math.sqrt(3)) / a**2, np.nan)  # Z = 2
    ids = [f"p{i}" for i in range(P.size)]
    datasets = {"A/volume_fu_A3": VA, "A/volume_fu_err_A3": np.full(P.size, 0.01),
                "B/volume_fu_A3": VB, "B/volume_fu_err_A3": np.full(P.size, 0.01),
                "B/a_A": a, "B/a_err_A": np.full(P.size, 1e-4), "B/c_A": c, "B/c_err_A": np.full(P.size, 2e-4),
                "A/a_A": np.cbrt(VA * 4), "A/a_err_A": np.full(P.size, 1e-4),
                "transitions/from_phase": np.array(["A"], dtype=object),
                "transitions/to_phase": np.array(["B"], dtype=object),
                "transitions/onset_GPa": np.array([3.0])}
    phases = Upstream(datasets, {"phases": ["A", "B"]})
    pressure = Upstream({"pressure_GPa": P, "pressure_err_GPa": np.full(P.size, 0.02)})

    class Sheet:
        point_ids = ids

    ctx = StageContext("r", "eos", Sheet(), {"eos": {"model": "bm3"}}, {"pressure": pressure, "phases": phases})
    extra = run(ctx).extra
    assert "eos/A/axes/a/M0_GPa" not in extra  # cubic: one edge
    assert float(extra["eos/B/axes/a/M0_GPa"]) == pytest.approx(150.0, rel=0.02)
    assert float(extra["eos/B/axes/c/M0_GPa"]) > 0
    assert extra["eos/B/ellipse/K0_68_GPa"].shape == (181,)
    truth = volume_A3(B, 3.0) / volume_A3(A, 3.0) - 1.0
    dv, err = float(extra["eos/transitions/delta_V_rel"][0]), float(extra["eos/transitions/delta_V_rel_err"][0])
    assert abs(dv - truth) < max(3 * err, 1e-4)
    assert str(extra["eos/transitions/method"][0]) == "eos"
    # without edges or transitions in the upstream the stage is as before
    plain = fit_phase_volumes(ids, P, np.full(P.size, 0.02), {"A": (VA, np.full(P.size, 0.01))}, {"model": "bm3"})
    assert not any(k.startswith("eos/transitions") or "/axes/" in k for k in plain.extra)
