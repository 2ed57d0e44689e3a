"""Singh's lattice-strain theory: Q(hkl) and t/G from d against azimuth, on synthetic truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dacpipe.xrd.strain import (differential_stress, fit_line_strain, ring_positions, strain_factor)

WAVELENGTH_A = 0.4
A_CUBIC = 4.0
Q_TRUE = 0.002


def two_theta_deg(d_A):
    return np.degrees(2.0 * np.arcsin(WAVELENGTH_A / (2.0 * np.asarray(d_A))))


def d_of(two_theta):
    return WAVELENGTH_A / (2.0 * np.sin(np.radians(np.asarray(two_theta)) / 2.0))


def synthetic_cake(q_by_hkl: dict, rng, chi_deg, radial_deg):
    """A radial-geometry cake [chi, 2theta]: Gaussian rings whose d follows Singh's eq. with Q per line,
    on a flat background, Poisson counts."""
    counts = np.full((chi_deg.size, radial_deg.size), 100.0)
    for hkl, q in q_by_hkl.items():
        d_p = A_CUBIC / math.sqrt(sum(h * h for h in hkl))
        x = strain_factor(two_theta_deg(d_p), chi_deg, "radial")
        centre = two_theta_deg(d_p * (1.0 + x * q))
        counts += 1000.0 * np.exp(-0.5 * ((radial_deg[None, :] - centre[:, None]) / 0.03) ** 2)
    return rng.poisson(counts).astype(float)


def test_q_and_differential_stress_from_a_synthetic_cake():
    chi = np.arange(0.0, 360.0, 5.0)
    radial = np.linspace(5.0, 18.0, 6500)          # 0.002 deg bins
    lines = {(1, 1, 1): Q_TRUE, (2, 0, 0): Q_TRUE, (2, 2, 0): Q_TRUE}
    cake = synthetic_cake(lines, np.random.default_rng(3), chi, radial)
    fitted = []
    for hkl in lines:
        d_p = A_CUBIC / math.sqrt(sum(h * h for h in hkl))
        centres = ring_positions(cake, radial, two_theta_deg(d_p), 0.25)
        line = fit_line_strain(d_of(centres), centres, chi, "radial")
        assert line.n_azimuths == chi.size
        assert abs(line.d_P_A - d_p) < 4 * line.d_P_err_A
        assert abs(line.Q - Q_TRUE) < 4 * line.Q_err
        assert line.Q_err < 0.05 * Q_TRUE
        fitted.append(line)
    stress = differential_stress(fitted, shear_modulus_GPa=30.0)
    assert stress.n_lines == 3
    assert stress.t_over_G == pytest.approx(6 * Q_TRUE, abs=4 * stress.t_over_G_err)
    assert stress.t_GPa == pytest.approx(30.0 * stress.t_over_G)
    assert math.isnan(differential_stress(fitted).t_GPa)       # G unknown: t/G only
    assert differential_stress(fitted).t_over_G == stress.t_over_G


def test_q_error_bars_are_honest():
    """Pulls over noise realisations of d(chi) scatter with unit width."""
    rng = np.random.default_rng(11)
    chi = np.arange(0.0, 360.0, 10.0)
    d_p = 2.0
    tth = np.full(chi.size, two_theta_deg(d_p))
    truth = d_p * (1.0 + strain_factor(tth, chi) * Q_TRUE)
    pulls = []
    for _ in range(300):
        line = fit_line_strain(truth + rng.normal(0.0, 2e-4, chi.size), tth, chi)
        pulls.append((line.Q - Q_TRUE) / line.Q_err)
    pulls = np.array(pulls)
    # 300 pulls: the mean within ~4/sqrt(300) of 0, the width within ~10 % of 1
    assert abs(pulls.mean()) < 0.25
    assert 0.88 < pulls.std() < 1.12


def test_axial_geometry_cannot_separate_q():
    chi = np.arange(0.0, 360.0, 10.0)
    line = fit_line_strain(np.full(chi.size, 2.0), np.full(chi.size, 11.5), chi, "axial")
    assert math.isnan(line.Q) and "axial" in line.reason
    assert line.d_P_A == pytest.approx(2.0)


def test_strain_factor_limits():
    # radial geometry, small theta: along the load (chi 0) psi ~ 0, 1 - 3 = -2; across it (chi 90) +1
    assert strain_factor(0.0, [0.0, 90.0], "radial") == pytest.approx([-2.0, 1.0])
    # the magic angle: 1 - 3 cos^2 psi = 0 at cos psi = 1/sqrt(3)
    assert strain_factor(0.0, math.degrees(math.acos(1 / math.sqrt(3))), "radial") == pytest.approx(0.0, abs=1e-12)
