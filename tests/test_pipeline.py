"""The pressure stage end to end on data-sample, against the truth beside it."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import ROOT, RUN, absolute_config, status_as_expected
from dacpipe.cli import main
from dacpipe.run.store import read_points
from dacpipe.synth import read_truth

@pytest.fixture(scope="module")
def results(sample_results):
    """data-sample processed with the default config, by `dacpipe run` (once per session)."""
    return sample_results[0]


@pytest.fixture(scope="module")
def store(results):
    return results / f"{RUN}.h5"


def test_pressures_match_truth(store):
    truth = read_truth(ROOT / "data-sample" / RUN / "truth.tsv")
    with h5py.File(store) as h5:
        before = h5[f"{RUN}/pressure/before/pressure_GPa"][()]
        after = h5[f"{RUN}/pressure/after/pressure_GPa"][()]
        mean = h5[f"{RUN}/points/pressure_GPa"][()]
    assert np.max(np.abs(before - truth["pressure_before_GPa"])) < 0.02
    has_after = ~np.isnan(truth["pressure_after_GPa"])
    assert np.max(np.abs(after[has_after] - truth["pressure_after_GPa"][has_after])) < 0.02
    assert np.all(np.isnan(after[~has_after]))
    expected = np.nanmean(np.vstack([truth["pressure_before_GPa"], truth["pressure_after_GPa"]]), axis=0)
    assert np.max(np.abs(mean - expected)) < 0.02


def test_uncertainty_parts(store):
    """The random part (fit, drift) and the systematic part (the ambient line
    position, the temperature; Mao 1986 publishes no coefficient errors), the
    total of both."""
    with h5py.File(store) as h5:
        g = h5[f"{RUN}/pressure"]
        fit, scale = g["pressure_err_fit_GPa"][()], g["pressure_err_scale_GPa"][()]
        drift, drift_err, total = g["pressure_drift_GPa"][()], g["pressure_err_drift_GPa"][()], g["pressure_err_GPa"][()]
        random, systematic = g["pressure_random_err_GPa"][()], g["pressure_sys_err_GPa"][()]
        x0_err, t_err = g["pressure_err_x0_GPa"][()], g["pressure_err_temperature_GPa"][()]
        assert g.attrs["scale"] == "mao1986-hydrostatic"
    assert np.all(np.isnan(scale))
    assert np.all((fit > 0) & (fit < 0.01))
    both = ~np.isnan(drift)
    np.testing.assert_allclose(drift_err[both], np.abs(drift[both]) / (2 * np.sqrt(3)))
    np.testing.assert_allclose(random[both], np.hypot(fit[both], drift_err[both]))
    np.testing.assert_allclose(random[~both], fit[~both])
    np.testing.assert_allclose(systematic, np.hypot(x0_err, t_err))
    np.testing.assert_allclose(total, np.hypot(random, systematic))


def test_points_status_and_provenance(store):
    points = read_points(store, RUN)
    truth = read_truth(ROOT / "data-sample" / RUN / "truth.tsv")
    for i, status in enumerate(points["status"]):
        assert status_as_expected(truth, i, status), status
    with h5py.File(store) as h5:
        prov = h5[f"{RUN}/provenance"]
        paths = list(prov["inputs/path"].asstr()[()])
        assert sum("_ruby_" in p for p in paths) == 27  # 14 before + 13 after
        assert sum("/optical/" in p for p in paths) == 28  # absorption and PL at every point
        assert sum(p.endswith(".cbf") for p in paths) == 14 and any(p.endswith("xrd.poni") for p in paths)
        assert all(len(s) == 64 for s in prov["inputs/sha256"].asstr()[()])
        assert "mao1986-hydrostatic" in prov["config"].asstr()[()]
        assert '"pyFAI"' in prov["versions"].asstr()[()]


def bad_run(tmp_path):
    """A copy of data-sample's run with one spectrum broken per kind of damage."""
    folder = tmp_path / RUN
    shutil.copytree(ROOT / "data-sample" / RUN, folder)
    good = (folder / "ruby" / "hgte_p001_ruby_before.txt").read_text().splitlines()
    rows = [l.split("\t") for l in good[1:]]
    damage = {
        "p002": b"",                                                           # empty file
        "p003": "\n".join(r[0] for r in rows).encode(),                        # one column
        "p004": "\n".join(f"{r[0]}\tnan" for r in rows).encode(),              # NaNs
        "p005": "\n".join(f"{r[0]}\t{600 + (i % 7)}" for i, r in enumerate(rows)).encode(),  # no peak
        "p007": "\n".join(f"{r[0]}\t{min(int(r[1]), 4000)}" for r in rows).encode(),          # saturated
        "p008": "\n".join("\t".join(r) for r in reversed(rows)).encode(),     # descending axis
        "p009": bytes(range(256)) * 20,                                        # binary
    }
    for point, content in damage.items():
        (folder / "ruby" / f"hgte_{point}_ruby_before.txt").write_bytes(content)
    (folder / "ruby" / "hgte_p010_ruby_before.txt").unlink()                 # missing file
    return folder


def test_bad_spectra_are_marked_and_others_complete(tmp_path, capsys):
    folder = bad_run(tmp_path)
    results = tmp_path / "results"
    code = main(["run", "--configfile", str(absolute_config(tmp_path, results)), "--runs", RUN,
                 "--set", f"runs.{RUN}.sheet={folder / 'points.tsv'}"])
    assert code == 0
    messages = [l for l in capsys.readouterr().err.splitlines() if "skipped" not in l and "/p0" in l]
    points = read_points(results / f"{RUN}.h5", RUN)
    status = dict(zip(points["point"], points["status"]))
    expected = {"p002": "empty", "p003": "one column", "p004": "non-finite", "p005": "no peak",
                "p007": "saturated", "p008": "descending", "p009": "binary", "p010": "not found"}
    for point, word in expected.items():
        assert word in status[point], status[point]
        assert f"hgte_{point}_ruby_before.txt" in status[point]
        line = [m for m in messages if f"/{point}:" in m]
        assert len(line) == 1 and word in line[0] and f"hgte_{point}_ruby_before.txt" in line[0]
    # The damaged points keep the pressure of their "after" spectrum; the rest are untouched.
    truth = read_truth(folder / "truth.tsv")
    pressure = dict(zip(points["point"], points["pressure_GPa"]))
    for i, point in enumerate(truth["point"]):
        if point in expected:
            assert abs(pressure[point] - truth["pressure_after_GPa"][i]) < 0.02
        else:
            assert status_as_expected(truth, i, status[point]), status[point]


def centroid(x, y, near, half_width):
    """Centre of a peak above the straight line joining the window's edges
    (the SAXS peaks sit on a steeply falling form factor)."""
    window = (x > near - half_width) & (x < near + half_width) & np.isfinite(y)
    xs, ys = x[window], y[window]
    baseline = ys[0] + (ys[-1] - ys[0]) * (xs - xs[0]) / (xs[-1] - xs[0])
    excess = np.clip(ys - baseline, 0, None)
    return float(np.sum(xs * excess) / np.sum(excess))


def test_xrd_patterns_put_the_rings_where_the_truth_lattice_does(store):
    truth = read_truth(ROOT / "data-sample" / RUN / "truth.tsv")
    with h5py.File(store) as h5:
        xrd = h5[f"{RUN}/xrd"]
        two_theta, intensity = xrd["two_theta"][()], xrd["I"][()]
        wavelength = xrd.attrs["wavelength_A"]
    a = truth["HgTe-zb/a_A"][0]
    for hkl in [(1, 1, 1), (2, 2, 0), (3, 1, 1)]:
        d = a / np.sqrt(sum(i * i for i in hkl))
        expected = np.degrees(2 * np.arcsin(wavelength / (2 * d)))
        # 400 bins over ~19 deg: 0.05 deg per bin; the centroid of a ring 8 bins wide
        # is good to a few thousandths of a degree.
        assert centroid(two_theta, intensity[0], expected, 0.25) == pytest.approx(expected, abs=0.01)


def test_diamond_spots_are_rejected_in_the_store(tmp_path, store):
    """A spot lying on no ring makes a spurious peak without rejection, none with it."""
    spots = read_truth(ROOT / "data-sample" / RUN / "truth_spots.tsv")
    point = "p003"
    row = np.flatnonzero(spots["point"] == point)[np.argmax(spots["two_theta_deg"][spots["point"] == point])]
    spot_deg = spots["two_theta_deg"][row]
    plain_results = tmp_path / "plain"
    config = absolute_config(tmp_path, plain_results)
    assert main(["run", "--configfile", str(config), "--runs", RUN,
                 "--set", f"runs.{RUN}.xrd.rejection.method=none"]) == 0
    index = list(read_points(store, RUN)["point"]).index(point)
    with h5py.File(store) as clipped, h5py.File(plain_results / f"{RUN}.h5") as plain:
        tth = clipped[f"{RUN}/xrd/two_theta"][()]
        near = np.abs(tth - spot_deg) < 0.15
        around = (np.abs(tth - spot_deg) > 0.3) & (np.abs(tth - spot_deg) < 0.6)
        with_rejection = clipped[f"{RUN}/xrd/I"][index]
        without = plain[f"{RUN}/xrd/I"][index]
    excess_plain = np.nanmax(without[near]) - np.nanmedian(without[around])
    excess_clipped = np.nanmax(with_rejection[near]) - np.nanmedian(with_rejection[around])
    assert excess_plain > 5 * max(excess_clipped, 1.0)


def test_saxs_first_superlattice_peak(results):
    truth = read_truth(ROOT / "data-sample" / "nc_saxs" / "truth.tsv")
    with h5py.File(results / "nc_saxs.h5") as h5:
        q, intensity = h5["nc_saxs/saxs/q"][()], h5["nc_saxs/saxs/I"][()]
    for i, q111_nm in enumerate(truth["q111_inv_nm"]):
        expected = q111_nm / 10.0
        assert centroid(q, intensity[i], expected, 0.01) == pytest.approx(expected, rel=0.01)
