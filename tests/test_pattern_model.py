"""The points a whole-pattern fit uses (dacpipe.xrd.pattern.Pattern): merging bins."""

from __future__ import annotations

import numpy as np
import pytest

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
    for pattern in (flat, flat.bin_averaged(), flat.merged(3)):
        _, jac = phase_column(pattern, state, jacobian=True)
        theta = state.theta()
        for j in range(len(theta)):
            h = 1e-6 * max(abs(theta[j]), 1e-2)
            plus, minus = state.copy(), state.copy()
            plus.set_theta(np.where(np.arange(len(theta)) == j, theta + h, theta))
            minus.set_theta(np.where(np.arange(len(theta)) == j, theta - h, theta))
            numeric = (phase_column(pattern, plus)[0] - phase_column(pattern, minus)[0]) / (2 * h)
            np.testing.assert_allclose(jac[j], numeric, atol=1e-6 * np.abs(numeric).max())


def _rock_salt(w0: float):
    from dacpipe.xrd.cells import ReciprocalCell
    from dacpipe.xrd.library import get_phase
    from dacpipe.xrd.lines import line_set
    from dacpipe.xrd.pattern import PhaseState

    phase = get_phase("HgTe-rs")
    rcell = ReciprocalCell.from_cell(phase.system, phase.cell_at(10.0))
    return PhaseState("HgTe-rs", line_set(phase, 6.0, 0.4), rcell, w0, 0.0, 0.5)


def test_merged_model_is_the_mean_over_each_merged_bin():
    """Lines 5 merged bins per FWHM (6 fine bins each): the model of a merged bin
    is the mean of the fine bins' model, to 1e-3 of the strongest line's height;
    the value at the merged bin's centre misses it by 0.9 %."""
    from dacpipe.xrd.pattern import phase_column

    state = _rock_salt(0.06)
    q = np.arange(1.5, 6.0, 0.002)
    fine = Pattern(q, np.zeros_like(q), np.ones_like(q), 0.4)
    merged = fine.merged(6)
    fine_model = phase_column(fine, state)[0]
    n = len(q) // 6 * 6
    truth = fine_model[:n].reshape(-1, 6).mean(axis=1)
    model = phase_column(merged, state)[0][: n // 6]
    height = truth.max()
    assert np.max(np.abs(model - truth)) < 1e-3 * height
    centre = Pattern(merged.q, merged.y, merged.sigma, 0.4)     # the same points, taken at their centres
    assert np.max(np.abs(phase_column(centre, state)[0][: n // 6] - truth)) > 5e-3 * height


def test_fitted_width_and_reduced_chi2_do_not_depend_on_the_merging(monkeypatch):
    """A rock-salt pattern (true Voigt lines, which the pseudo-Voigt
    misses by a little), identified with the bins merged to 5 and to 8 per FWHM:
    the same FWHM to 5e-4 (measured 5e-5) and the same reduced chi^2 to 5 %
    (9.9), because the model is each merged bin's mean and chi^2 is taken on the
    bins as integrated. With the centre values and the merged bins' chi^2 the
    widths moved by 2.2e-3 and chi^2 was 33 against 20."""
    import dacpipe.xrd.indexing as indexing
    from dacpipe.synth.powder import PointTruth, integrated_pattern
    from dacpipe.xrd.library import get_phase

    q = np.linspace(1.0, 7.0, 3000)
    truth = PointTruth(10.0, {"HgTe-rs": 1.0}, {"HgTe-rs": 9.0})
    intensity, sigma = integrated_pattern(q, 0.4133, truth, np.random.default_rng(7))
    settings = indexing.IndexingSettings.from_config({"phases": ["HgTe-rs"]})
    found = {}
    for bins in (5, 8):
        monkeypatch.setattr(indexing, "BINS_PER_FWHM", bins)
        results, _, _ = indexing.index_series(q, intensity[None], sigma[None], 0.4133, np.array([10.0]),
                                              {"HgTe-rs": get_phase("HgTe-rs")}, settings)
        found[bins] = (results[0].phases["HgTe-rs"].fwhm_q_A[1], results[0].reduced_chi2)
    assert found[5][0] == pytest.approx(found[8][0], rel=5e-4)
    assert found[5][1] == pytest.approx(found[8][1], rel=0.05)
    assert found[5][1] > 1.5     # the misfit is there to see


def test_lines_at_the_same_d_are_one_line_of_the_model(monkeypatch):
    """HgTe cinnabar (P3_121): hkl and khl lie at the same d for every cell, as do
    333 and 511 of zinc blende. The model sums them into one line (425 -> 246 and
    64 -> 45 to 8.6 1/A) and, every line kept, is the sum over the lines one by one."""
    import dacpipe.xrd.pattern as pattern_module
    from dacpipe.xrd.cells import ReciprocalCell
    from dacpipe.xrd.library import get_phase
    from dacpipe.xrd.lines import line_set
    from dacpipe.xrd.pattern import PhaseState, phase_column

    monkeypatch.setattr(pattern_module, "MODEL_MIN_SHARE", 0.0)
    q = np.linspace(0.8, 8.5, 700)
    flat = Pattern(q, np.zeros_like(q), np.ones_like(q), 0.4133)
    for name, n_lines, n_distinct in (("HgTe-cinnabar", 425, 246), ("HgTe-zb", 64, 45)):
        phase = get_phase(name)
        lines = line_set(phase, 8.6, 0.4133)
        state = PhaseState(name, lines, ReciprocalCell.from_cell(phase.system, phase.cell_at(5.0)), 0.08, 0.002, 0.5)
        design, base = state.model_lines()
        assert (len(state.design), len(design)) == (n_lines, n_distinct)
        assert base.sum() == pytest.approx(state.base.sum(), rel=1e-12)
        one_by_one = PhaseState(name, lines, state.rcell, 0.08, 0.002, 0.5,
                                coincident=(np.arange(n_lines), np.arange(n_lines)))
        for jacobian in (False, True):
            grouped, rows = phase_column(flat, state, jacobian=jacobian)
            single, single_rows = phase_column(flat, one_by_one, jacobian=jacobian)
            np.testing.assert_allclose(grouped, single, rtol=1e-12, atol=1e-12 * single.max())
            if jacobian:
                np.testing.assert_allclose(rows, single_rows, rtol=1e-10, atol=1e-10 * np.abs(single_rows).max())


def test_a_fit_tests_a_phase_on_its_own_columns_as_on_recomputed_lines():
    """chi^2 without a phase (the F-test's) from the columns the fit kept equals
    the one from the lines computed again where the fit left them, for each
    phase of a rock-salt + cinnabar fit; a series' results drop those columns."""
    import dataclasses

    import dacpipe.xrd.indexing as indexing
    from dacpipe.synth.powder import PointTruth, integrated_pattern
    from dacpipe.xrd.library import get_phase
    from dacpipe.xrd.pattern import background_basis, chi2_without, fit_phases, usable_pattern

    q = np.linspace(1.0, 7.0, 2000)
    truth = PointTruth(10.0, {"HgTe-rs": 0.6, "HgTe-cinnabar": 0.4}, {"HgTe-rs": 8.0, "HgTe-cinnabar": 8.0})
    intensity, sigma = integrated_pattern(q, 0.4133, truth, np.random.default_rng(3))
    pattern = usable_pattern(q, intensity, sigma, 0.4133)
    state = indexing.SeriesState()
    phases = [indexing.seed_state(name, get_phase(name), state, 10.0, 7.0, 0.4133)
              for name in ("HgTe-rs", "HgTe-cinnabar")]
    for p in phases:
        p.w0 = 0.06
    fit = fit_phases(pattern, phases, background_basis(pattern.q, 0.5))
    assert fit.design is not None and fit.design.shape[1] == 2 + fit.basis.shape[1]
    recomputed = dataclasses.replace(fit, design=None)
    for k in range(2):
        assert chi2_without(fit, k) == pytest.approx(chi2_without(recomputed, k), rel=1e-12)
        assert chi2_without(fit, k) > 10 * fit.chi2     # each phase is there to see
    results, _, _ = indexing.index_series(q, intensity[None], sigma[None], 0.4133, np.array([10.0]),
                                          {n: get_phase(n) for n in ("HgTe-rs", "HgTe-cinnabar")},
                                          indexing.IndexingSettings.from_config({"phases": ["HgTe-rs",
                                                                                             "HgTe-cinnabar"]}))
    assert results[0].fit.design is None and results[0].phases["HgTe-cinnabar"].present
