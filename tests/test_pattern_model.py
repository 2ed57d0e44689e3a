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
