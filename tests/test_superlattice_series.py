"""The superlattice analysis on independent hard cases (issue 11, item 7).

The patterns come from :mod:`dacpipe.synth.superlattice_series`: an fcc
superlattice of 60 A spheres whose nearest-neighbour distance goes from 83 to
65 A over 13 points, so that the form factor falls by decades across the
lines and its zeros sweep over 220, 311 and 200; a correlation hole below the
first order; paracrystalline and Debye-Waller disorder; Poisson counts in
bins of 1e-3 1/A (2e-3 in the fast tests). The truth is the lattice's: q1 the
first line of the reciprocal lattice, not the maximum of any peak.

Tolerances: d within 0.1 % (the issue) and within 3 standard errors; the
pulls of a series spread (standard deviation) between 0.7 and 1.5. The fast
tests take three points of a series; the whole series run through the stage
is marked slow (about a minute each).
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import stage_context

from dacpipe.saxs import superlattice as sl
from dacpipe.saxs.stage import CARRY_TOLERANCE, choose_along_series, predicted_q1
from dacpipe.saxs.stage import run as superlattice_stage
from dacpipe.synth.superlattice_series import lattice_shells, series, sphere_averages

COARSE = {"bin_A": 2e-3}  # half the bins: a fast test's patterns
POINTS = (0, 6, 12)  # first, middle, last of a series


@pytest.fixture(scope="module")
def coarse():
    """The issue's 13-point fcc series in bins of 2e-3 1/A, drawn once for the tests that share it."""
    return series(**COARSE)


def _first_observed(result):
    return [p for p, label in zip(result.peaks, result.hkl) if label.split("+")[0] == sl.LATTICES[result.order][0][0]]


# ---------------------------------------------------------------- the generator


def test_generator_lines_against_the_analysis_tables():
    """Two independent enumerations of the reciprocal lattices agree: the
    generator's shells (with their multiplicities) and the analysis' tables."""
    fcc = lattice_shells("fcc", 100.0, 0.3)
    assert [(label, m) for label, _, m in fcc[:6]] == [("111", 8), ("200", 6), ("220", 12), ("311", 24), ("222", 8),
                                                        ("400", 6)]
    assert fcc[0][1] == pytest.approx(2 * math.pi * math.sqrt(3) / 100.0, rel=1e-12)
    bcc = lattice_shells("bcc", 100.0, 0.2)
    assert [(label, m) for label, _, m in bcc[:4]] == [("110", 12), ("200", 6), ("211", 24), ("220", 12)]
    hexagonal = lattice_shells("hexagonal", 100.0, 0.4)
    assert [(label, m) for label, _, m in hexagonal[:4]] == [("10", 6), ("11", 6), ("20", 6), ("21", 12)]
    assert hexagonal[0][1] == pytest.approx(4 * math.pi / (math.sqrt(3) * 100.0), rel=1e-12)
    for name in ("fcc", "bcc", "hexagonal"):
        shells = lattice_shells(name, 100.0, 1.0)[:10]
        labels, ratios, mult, _ = sl.lattice_lines(name)
        np.testing.assert_allclose(ratios[:10], [g / shells[0][1] for _, g, _ in shells], rtol=1e-12)
        np.testing.assert_array_equal(mult[:10], [m for _, _, m in shells])


def test_series_truth_and_steepness():
    s = series(noise=False, **COARSE)
    nn = s.truth("nn_distance_A")
    np.testing.assert_allclose(nn, np.linspace(83.0, 65.0, 13))
    np.testing.assert_allclose(s.truth("q1_A"), 2 * math.pi * math.sqrt(3) / (math.sqrt(2) * nn), rtol=1e-12)
    np.testing.assert_allclose(s.truth("d1_A") * s.truth("q1_A"), 2 * math.pi)
    # Steep: between 111 and 311 the particles' form factor falls to its first minimum (which the
    # polydispersity keeps from zero), 1.9 decades below 111 at the first point, 1.4 at the last ...
    for point in (s.points[0], s.points[12]):
        form, _ = sphere_averages(np.linspace(point.q1_A, point.q1_A * math.sqrt(11 / 3), 200),
                                  point.core_diameter_A, 0.07)
        assert form.min() / form[0] < 0.05
    # ... and its first zero sweeps from the 220 line to between 111 and 200.
    zero_A = 4.4934 / (0.5 * s.truth("core_diameter_A"))
    assert abs(zero_A[0] / (s.points[0].q1_A * math.sqrt(8 / 3)) - 1) < 0.03
    assert s.points[12].q1_A < zero_A[12] < s.points[12].q1_A * math.sqrt(8 / 3)


def test_sphere_form_factors_against_the_formula_and_the_generator():
    """P(0) = 1; equal spheres give [3 (sin x - x cos x) / x^3]^2 with its
    first zero at x = 4.4934; Pc <= P; and the generator's independent size
    average (161 nodes) agrees with the analysis' (41 and more)."""
    q = np.linspace(1e-4, 0.4, 400)
    form, coherent = sl.sphere_form_factors(q, 30.0, 1e-6)
    x = q * 30.0
    np.testing.assert_allclose(form, (3 * (np.sin(x) - x * np.cos(x)) / x**3) ** 2, rtol=1e-5, atol=1e-12)
    assert sl.sphere_form_factors([4.493409 / 30.0], 30.0, 1e-6)[0][0] < 1e-10
    form, coherent = sl.sphere_form_factors(q, 30.0, 0.07)
    assert form[0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(coherent <= form * (1 + 1e-12))
    generator_form, beta = sphere_averages(q, 60.0, 0.07)
    np.testing.assert_allclose(form, generator_form, rtol=2e-3, atol=1e-9)
    np.testing.assert_allclose(coherent, generator_form * beta, rtol=2e-3, atol=1e-9)


# ------------------------------------------------------------- single patterns


def test_envelope_fits_are_biased_under_the_correlation_hole(coarse):
    """What the window fits (the peaks of S as factors on the envelope, the
    analysis before the model) do here: 111 comes out 0.4-1.3 % low, the
    Bragg term rides on G C, not on the envelope of the correlation hole. The
    model fit (next test) brings it within 0.01 %."""
    s = coarse
    for i in POINTS:
        point = s.points[i]
        found = sl.find_superlattice_peaks(point.q_A, point.intensity, point.sigma, min_relative_amplitude=0.0)
        q111 = min(found.peaks, key=lambda p: abs(p.q_A - point.q1_A)).q_A
        assert -0.02 < q111 / point.q1_A - 1 < -0.003


@pytest.mark.slow  # a 13-point superlattice series: 8 s
def test_steep_form_factor_q1_within_a_tenth_of_a_percent(coarse):
    s = coarse
    for i in POINTS:
        point = s.points[i]
        result = sl.analyse_pattern(point.q_A, point.intensity, point.sigma, 1.0)
        assert result.order == "fcc", i
        assert abs(result.d_A / point.d1_A - 1) < 1e-3
        assert abs(result.d_A - point.d1_A) < 3 * result.d_err_A
        assert result.notes == ()
        # 111 is the observed peak at q111, 200 the next: nothing else taken as the first order.
        first = _first_observed(result)
        assert len(first) == 1 and first[0].q_A == pytest.approx(point.q1_A, rel=3e-3)
        assert result.hkl[result.peaks.index(first[0]) + 1] == "200"
        # The lattice's other lines are where it says: a, nearest neighbours.
        assert result.lattice_constant_nm * 10 == pytest.approx(point.a_A, rel=1e-3)
        assert result.nn_distance_nm * 10 == pytest.approx(point.nn_distance_A, rel=1e-3)
        # The model found the particles: radius within 2 %, a correlation hole.
        assert result.model.radius_A == pytest.approx(0.5 * point.core_diameter_A, rel=0.02)
        assert result.model.hole > 0.9


@pytest.mark.slow  # three superlattice analyses: 5 s
def test_missing_first_order():
    """No 111 at all (a zero of the particles' amplitude there, say): the
    lattice and q1 from the other lines, and the status says the first order
    was not seen."""
    s = series(line_weights={"111": 0.0}, **COARSE)
    for i in (0, 12):
        point = s.points[i]
        result = sl.analyse_pattern(point.q_A, point.intensity, point.sigma, 1.0)
        assert result.order == "fcc"
        assert result.first is None and "111" not in result.hkl
        assert abs(result.d_A / point.d1_A - 1) < 1e-3
        assert abs(result.d_A - point.d1_A) < 3 * result.d_err_A
        assert any(note.startswith("first order not observed") for note in result.notes)


@pytest.mark.slow  # ~1.4 s
def test_no_lattice_gives_nan_and_the_reason():
    """Peaks at 1 : 1.09 : 1.31 : 1.47 on the form factor of 50 A spheres: no
    lattice type explains them, so no spacing, and the status says why."""
    q = np.arange(0.02, 0.35, 1e-3)
    form, _ = sphere_averages(q, 50.0, 0.07)
    s = 1 + sum(3.0 / (1 + k) * np.exp(-4 * math.log(2) * ((q - 0.08 * r) / 0.006) ** 2)
                for k, r in enumerate((1, 1.09, 1.31, 1.47)))
    pixels = 300.0
    counts = np.random.default_rng(3).poisson((1e5 * form * s + 2.0) * pixels).astype(float)
    result = sl.analyse_pattern(q, counts / pixels, np.sqrt(np.maximum(counts, 1)) / pixels, 1.0)
    assert len(result.peaks) == 4 and result.model is not None
    assert result.order == "unknown" and result.hypothesis is None
    assert math.isnan(result.d_A) and math.isnan(result.q1_A) and math.isnan(result.nn_distance_nm)
    assert any(note.startswith("no lattice explains the peaks") for note in result.notes)


def test_indexing_prefers_no_cell_twice_too_large():
    """fcc lines fit an fcc cell twice as large (222, 400, 440, ...) and a bcc
    one sqrt(3/2) as large: both leave their own low lines unseen, and their
    dense lines match any peak by chance; the true cell wins by a margin."""
    ratios = np.array([r for _, r in sl.LATTICES["fcc"][:8]])
    ranked = sl.index_peaks(0.1 * ratios, 2e-5 * ratios)
    best, rival, confident = sl.assess(ranked)
    assert (best.lattice, round(best.q1_A, 6)) == ("fcc", 0.1) and confident
    doubled = [h for h in ranked if h.lattice == "fcc" and abs(h.q1_A - 0.05) < 1e-4]
    assert doubled and doubled[0].score < best.score - 3


def test_blend_of_two_lines_explains_its_peak():
    """331 and 420 (2.4 % apart) unresolved: one peak between them is both."""
    ratios = np.array([1, math.sqrt(4 / 3), math.sqrt(8 / 3), math.sqrt(11 / 3), 0.5 * (math.sqrt(19 / 3) +
                                                                                        math.sqrt(20 / 3))])
    best = sl.index_peaks(0.1 * ratios, widths_A=np.full(5, 0.008))[0]
    assert best.lattice == "fcc" and best.hkl[-1] == "331+420" and best.n_unexplained == 0
    assert best.q1_A == pytest.approx(0.1, rel=1e-9)  # the blend is not in the fit of q1


# ----------------------------------------------------------------- the series


def _fcc_hypotheses(q1, lines):
    return sl.index_peaks(q1 * np.array([sl.LATTICES["fcc"][j][1] for j in lines]), lattices=["fcc", "bcc"])


def test_predicted_q1_by_hand():
    anchors = [(0, 0.100), (1, 0.101), (4, 0.104)]
    assert predicted_q1(anchors, 2) == pytest.approx(0.102)
    assert predicted_q1(anchors, 6) == pytest.approx(0.106)  # extrapolated from the two nearest, 1 and 4
    assert predicted_q1([(0, 0.100), (1, 0.101)], 3) == pytest.approx(0.103)  # extrapolated
    assert predicted_q1([(5, 0.2)], 1) == 0.2
    assert predicted_q1([], 1) is None


def test_choose_along_series_carries_the_order():
    """Five points of a compressing fcc lattice. Point 2 shows 200 and 220
    only (1 : sqrt 2, which a bcc 110 and 200 explain as well), point 4 one
    peak: both take fcc and the first order that continues their
    neighbours'; the anchors keep theirs."""
    q1 = 0.10 * (1 + 0.01 * np.arange(5))
    ranked = [_fcc_hypotheses(q1[0], [0, 1, 2, 3]), _fcc_hypotheses(q1[1], [0, 1, 2, 3, 4]),
              _fcc_hypotheses(q1[2], [1, 2]), _fcc_hypotheses(q1[3], [0, 1, 3]), _fcc_hypotheses(q1[4], [0])]
    assert not sl.assess(ranked[2])[2] and sl.assess(ranked[2])[0].lattice in ("fcc", "bcc")
    assert sl.assess(ranked[4])[0] is None  # one peak: consistent with nothing

    def carry(i, lattice, q):
        peaks = [q1[4] * sl.LATTICES["fcc"][0][1]] if i == 4 else [q1[i] * sl.LATTICES["fcc"][j][1] for j in (1, 2)]
        return sl.index_peaks(peaks, lattices=[lattice], prior=(lattice, q, CARRY_TOLERANCE))

    choices = choose_along_series(ranked, carry=carry)
    assert [c.hypothesis.lattice for c in choices] == ["fcc"] * 5
    np.testing.assert_allclose([c.hypothesis.q1_A for c in choices], q1, rtol=1e-9)
    assert [c.note is None for c in choices] == [True, True, False, True, False]
    assert "order from the neighbouring points" in choices[4].note
    assert choices[2].hypothesis.hkl == ("200", "220")
    # Without anchors nothing can be carried: the point keeps its own best, with the warning.
    alone = choose_along_series([ranked[2]])
    assert alone[0].hypothesis is sl.assess(ranked[2])[0] and alone[0].note.startswith("order ambiguous")
    assert choose_along_series([ranked[4]])[0].hypothesis is None


def _run_series(s):
    q = s.points[0].q_A
    ids = [f"p{i:02d}" for i in range(len(s.points))]
    upstream = {"saxs": ({"q": q, "I": np.vstack([p.intensity for p in s.points]),
                          "I_errors": np.vstack([p.sigma for p in s.points]),
                          "status": np.array(["ok"] * len(ids), dtype=object)}, {"wavelength_A": 1.0})}
    return superlattice_stage(stage_context("superlattice", SimpleNamespace(point_ids=ids), {"superlattice": {}},
                                            upstream))


def _check_series(result, s, lattice):
    data = result.datasets
    truth = s.truth("d1_A")
    assert list(data["order"]) == [lattice] * len(truth)
    deviation = data["d_A"] / truth - 1
    pulls = (data["d_A"] - truth) / data["d_err_A"]
    assert np.all(np.abs(deviation) < 1e-3), deviation
    assert np.all(np.abs(pulls) < 3), pulls
    first = sl.LATTICES[lattice][0][0]
    for i, q1 in enumerate(s.truth("q1_A")):
        labels = list(result.extra["saxs/peaks/hkl"][i])
        taken = [result.extra["saxs/peaks/q_A"][i][j] for j, label in enumerate(labels) if label.split("+")[0] == first]
        assert all(abs(q / q1 - 1) < 3e-3 for q in taken)  # nothing else taken as the first order
    return pulls


@pytest.mark.slow
def test_fcc_series_through_the_stage(coarse):
    """The 13 points of the issue's series, and 7 of the same lattice with its
    peaks on S = 1 (no correlation hole, lines on P: the local monodisperse
    approximation), both in bins of 2e-3 1/A (the model averages each bin):
    fcc everywhere, d within 0.1 % and 3 sigma, status ok, the pulls of the
    20 points spread 0.7-1.5."""
    pulls = []
    for s in (coarse, series(decoupling=False, n_points=7, **COARSE)):
        result = _run_series(s)
        pulls.append(_check_series(result, s, "fcc"))
        assert result.status == ["ok"] * len(s.points), result.status
    spread = float(np.std(np.concatenate(pulls)))
    assert 0.7 < spread < 1.5, spread


@pytest.mark.slow
@pytest.mark.parametrize("lattice", ["bcc", "hexagonal"])
def test_bcc_and_hexagonal_series_through_the_stage(lattice):
    """The classifier on other lattices (a bcc whose 200 line meets the form
    factor's zero looks hexagonal on its own; its neighbours decide), on 7
    points of each series."""
    s = series(lattice=lattice, n_points=7, **COARSE)
    _check_series(_run_series(s), s, lattice)


@pytest.mark.slow
def test_missing_first_order_series_through_the_stage():
    """No 111 anywhere (7 points of the series, 3 % apart in spacing): a bcc
    cell sqrt(4/3) smaller explains the even lines about as well on some
    points alone; the series decides fcc."""
    s = series(line_weights={"111": 0.0}, n_points=7, **COARSE)
    result = _run_series(s)
    _check_series(result, s, "fcc")
    assert all("first order not observed" in status for status in result.status)
