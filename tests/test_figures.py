"""Figures drawn from the store: each one is written, and what it plots is what the store holds."""

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from dacpipe.io.config import load_config
from dacpipe.run.config import run_config
from dacpipe.run.figures import FIGURES, _pyplot, draw_figure, figures_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stores(sample_results):
    """The data-sample stores and figures, with each run's validated settings."""
    results, config = sample_results
    loaded = load_config([config])
    return results, {run_id: run_config(loaded, run_id) for run_id in loaded["runs"]}


def _resolve(entry, spec: str) -> np.ndarray:
    """The store data a gid names: ``path``, ``path[i]``, ``...+offset``, ``a÷b``."""
    if "÷" in spec:
        top, bottom = spec.split("÷")
        return _resolve(entry, top) / _resolve(entry, bottom)
    path, index, offset = re.fullmatch(r"([^\[+]+)(?:\[(\d+)\])?(?:\+(.+))?", spec).groups()
    data = np.asarray(entry[path][()], dtype=float)
    if index is not None:
        data = data[int(index)]
    return data + (float(offset) if offset else 0.0)


def test_every_figure_of_every_run_is_written(stores):
    results, runs = stores
    expected = {run_id: figures_for(run) for run_id, run in runs.items()}
    assert {"fractions", "band_gap"} <= set(expected["hgte_thz"])
    assert {"ruby_gallery", "saxs_distance"} <= set(expected["nc_saxs"])
    for run_id, names in expected.items():
        for name in names:
            for ext in ("png", "pdf"):
                path = results / run_id / "figures" / f"{name}.{ext}"
                assert path.stat().st_size > 5000, path


def test_plotted_numbers_are_the_stored_numbers(stores):
    results, runs = stores
    plt = _pyplot()
    for run_id, run in runs.items():
        with h5py.File(results / f"{run_id}.h5") as h5:
            entry = h5[run_id]
            for name in figures_for(run):
                fig = FIGURES[name](entry, plt)
                tagged = [a for ax in fig.axes for a in ax.get_lines() if a.get_gid() and "|" in a.get_gid()]
                assert tagged, f"{run_id} {name}: no series tagged with its store paths"
                for artist in tagged:
                    y_spec, x_spec = artist.get_gid().split("|")
                    np.testing.assert_array_equal(np.asarray(artist.get_ydata(), float), _resolve(entry, y_spec),
                                                  err_msg=f"{name}: {y_spec}")
                    np.testing.assert_array_equal(np.asarray(artist.get_xdata(), float), _resolve(entry, x_spec),
                                                  err_msg=f"{name}: {x_spec}")
                plt.close(fig)


def test_eos_curve_passes_through_its_own_parameters(stores):
    """The compression figure's EOS curve is the stored fit: V/V0 = 1 at P = 0."""
    results, _ = stores
    plt = _pyplot()
    with h5py.File(results / "hgte_thz.h5") as h5:
        fig = FIGURES["compression"](h5["hgte_thz"], plt)
        curve = [a for a in fig.axes[0].get_lines() if a.get_gid() == "eos/HgTe-zb"][0]
        at_one = np.argmax(curve.get_ydata())
        assert curve.get_ydata()[at_one] == 1.0 and abs(curve.get_xdata()[at_one]) < 1e-9
        plt.close(fig)


def test_figure_command_writes_png_and_pdf(stores, tmp_path):
    results, _ = stores
    written = draw_figure("fractions", results / "hgte_thz.h5", tmp_path / "f.png")
    assert [p.suffix for p in written] == [".png", ".pdf"] and all(p.stat().st_size > 5000 for p in written)


def test_a_thousand_points_make_a_readable_figure():
    """Waterfall and gallery show at most 30 points, spread over the run, first and last included."""
    from dacpipe.run.figures import MAX_PANELS, _spread

    shown = _spread(1000)
    assert len(shown) == MAX_PANELS and shown[0] == 0 and shown[-1] == 999
    assert _spread(14) == list(range(14)) and _spread(0) == []


def test_points_left_out_of_the_eos_fit_are_ringed(tmp_path):
    """The compression figure rings exactly the points in eos/<phase>/excluded_points."""
    plt = _pyplot()
    with h5py.File(tmp_path / "store.h5", "w") as h5:
        entry = h5.create_group("run")
        entry["points/point"] = np.array(["p1", "p2", "p3", "p4"], dtype=object)
        entry["points/pressure_GPa"] = np.array([0.5, 1.0, 1.5, 2.0])
        entry["points/pressure_err_GPa"] = np.full(4, 0.05)
        phases = entry.create_group("phases")
        phases.attrs["phases"] = ["X"]
        phases["X/volume_fu_A3"] = np.array([60.0, 59.2, 57.0, 57.7])
        phases["X/volume_fu_err_A3"] = np.full(4, 0.02)
        eos = entry.create_group("eos/X")
        eos["model"], eos["V0_fu_A3"], eos["K0_GPa"], eos["Kp"] = "bm3", 60.5, 45.0, 4.5
        eos["excluded_points"] = np.array(["p3"], dtype=object)
        fig = FIGURES["compression"](entry, plt)
        (ring,) = [a for a in fig.axes[0].get_lines() if a.get_gid() == "eos/X/excluded_points"]
        np.testing.assert_array_equal(ring.get_xdata(), [1.5])
        np.testing.assert_array_equal(ring.get_ydata(), [57.0 / 60.5])
        plt.close(fig)


def test_eos_ellipse_draws_the_stored_ellipses(tmp_path):
    """The K0-K' figure plots eos/<phase>/ellipse/ as stored (a store built here, no run)."""
    from dacpipe.eos.report import k0_kp_ellipses
    from dacpipe.eos.models import EosParams

    curves = k0_kp_ellipses(EosParams("bm3", 60.0, 100.0, 4.5), np.array([[4.0, -0.8], [-0.8, 0.25]]),
                            ("K0_GPa", "Kp"))
    with h5py.File(tmp_path / "s.h5", "w") as h5:
        entry = h5.create_group("r")
        entry.create_group("phases/X").attrs["dummy"] = 1
        entry["phases"].attrs["phases"] = ["X"]
        entry["eos/X/K0_GPa"], entry["eos/X/Kp"] = 100.0, 4.5
        for name, values in curves.items():
            entry[f"eos/X/ellipse/{name}"] = values
        plt = _pyplot()
        fig = FIGURES["eos_ellipse"](entry, plt)
        tagged = [a for a in fig.axes[0].get_lines() if a.get_gid()]
        assert len(tagged) == 3
        for artist in tagged:
            y_spec, x_spec = artist.get_gid().split("|")
            np.testing.assert_array_equal(artist.get_ydata(), _resolve(entry, y_spec))
            np.testing.assert_array_equal(artist.get_xdata(), _resolve(entry, x_spec))
        plt.close(fig)
