"""The points a whole-pattern fit uses (dacpipe.xrd.pattern.Pattern): merging bins."""

from __future__ import annotations

import numpy as np

from dacpipe.xrd.pattern import Pattern


def _pattern(q):
    rng = np.random.default_rng(3)
    y = 100.0 + 10.0 * np.sin(q)
    sigma = rng.uniform(1.0, 3.0, len(q))
    return Pattern(np.asarray(q, float), y, sigma, 0.4)


def test_merged_groups_neighbours_and_keeps_the_last_short_group():
    q = np.linspace(1.0, 1.9, 10)
    p = _pattern(q)
    m = p.merged(3)
    assert len(m.q) == 4
    np.testing.assert_allclose(m.q[:3], q[:9].reshape(3, 3).mean(axis=1))
    np.testing.assert_allclose(m.y[0], p.y[:3].mean())
    # the error of a mean of independent bins
    np.testing.assert_allclose(m.sigma[1], np.sqrt((p.sigma[3:6] ** 2).sum()) / 3)
    np.testing.assert_allclose([m.q[3], m.y[3], m.sigma[3]], [q[9], p.y[9], p.sigma[9]])
    assert m.q_ref == p.q_ref


def test_merged_never_spans_a_gap():
    # a detector gap (or a masked peak left out) between 1.45 and 1.60
    q = np.r_[np.arange(1.0, 1.45, 0.01), np.arange(1.60, 2.0, 0.01)]
    m = _pattern(q).merged(4)
    assert not np.any((m.q > 1.445) & (m.q < 1.595))
    # every merged point is the mean of bins on one side only
    left = np.arange(1.0, 1.45, 0.01)
    n_left = -(-len(left) // 4)
    np.testing.assert_allclose(m.q[n_left - 1], left[4 * (n_left - 1):].mean())
    np.testing.assert_allclose(m.q[n_left], np.arange(1.60, 1.635, 0.01).mean())
    assert len(m.q) == n_left + -(-(len(q) - len(left)) // 4)


def test_merged_by_one_is_the_pattern():
    p = _pattern(np.linspace(1, 2, 7))
    assert p.merged(1) is p


def test_jacobian_rows_as_basis_products_equal_the_elementwise_derivatives():
    """core.profiles.area_derivative_weights x area_derivative_basis is a regrouping
    of area_derivatives: the same numbers to rounding, for any row multipliers."""
    from dacpipe.core.profiles import (area_derivative_basis, area_derivative_weights, area_derivatives,
                                       unit_parts)

    rng = np.random.default_rng(5)
    x = np.linspace(0.2, 0.6, 400)
    centre, fwhm = rng.uniform(0.25, 0.55, 7), rng.uniform(0.004, 0.03, 7)
    area, eta = rng.uniform(0.5, 2.0, 7), 0.37
    u, lor, gau = unit_parts(x[None, :], centre[:, None], fwhm[:, None])
    dc, dw, de, da = area_derivatives(u, lor, gau, eta, fwhm[:, None], area[:, None])
    mult = [rng.normal(size=(4, 7)) for _ in range(4)]
    expected = sum(m @ d for m, d in zip(mult, (dc, dw, da, de)))
    got = sum(w @ b for w, b in zip(area_derivative_weights(eta, fwhm, area, *mult), area_derivative_basis(u, lor, gau)))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


def test_unit_parts_nan_where_an_input_is_nan():
    """The Gaussian part is NaN exactly where u is (a NaN abscissa, centre or width), 0 beyond
    its reach, its value within it."""
    from dacpipe.core.profiles import FOUR_LN2, GAUSS_REACH_FWHM, unit_parts

    x = np.array([0.0, 0.1, np.nan, 0.3, 5.0])
    centre, fwhm = np.array([0.1, np.nan]), np.array([0.2, 0.2])
    u, lor, gau = unit_parts(x[None, :], centre[:, None], fwhm[:, None])
    assert np.array_equal(np.isnan(gau), np.isnan(u)) and np.isnan(gau[1]).all() and np.isnan(gau[0, 2])
    assert gau[0, 4] == 0.0 and abs(u[0, 4]) > GAUSS_REACH_FWHM
    np.testing.assert_allclose(gau[0, [0, 1, 3]], np.exp(-FOUR_LN2 * u[0, [0, 1, 3]] ** 2))
    _, _, finite = unit_parts(x[None, [0, 1, 3]], centre[:1, None], fwhm[:1, None])
    assert np.isfinite(finite).all()


def test_phase_column_jacobian_against_central_differences():
    from dacpipe.xrd.cells import ReciprocalCell
    from dacpipe.xrd.library import get_phase
    from dacpipe.xrd.lines import line_set
    from dacpipe.xrd.pattern import PhaseState, phase_column

    phase = get_phase("HgTe-cinnabar")
    rcell = ReciprocalCell.from_cell(phase.system, phase.cell_at(3.0))
    state = PhaseState("HgTe-cinnabar", line_set(phase, 6.0, 0.4), rcell, 0.05, 0.004, 0.4)
    q = np.linspace(1.5, 6.0, 900)
    flat = Pattern(q, np.zeros_like(q), np.ones_like(q), 0.4)
    for pattern in (flat, flat.bin_averaged()):
        _, jac = phase_column(pattern, state, jacobian=True)
        theta = state.theta()
        for j in range(len(theta)):
            h = 1e-6 * max(abs(theta[j]), 1e-2)
            plus, minus = state.copy(), state.copy()
            plus.set_theta(np.where(np.arange(len(theta)) == j, theta + h, theta))
            minus.set_theta(np.where(np.arange(len(theta)) == j, theta - h, theta))
            numeric = (phase_column(pattern, plus)[0] - phase_column(pattern, minus)[0]) / (2 * h)
            np.testing.assert_allclose(jac[j], numeric, atol=1e-6 * np.abs(numeric).max())
