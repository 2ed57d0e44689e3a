"""Figures drawn from the store: each one is written, and what it plots is what the store holds."""

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from dacpipe.core.errors import InputError
from dacpipe.io.config import load_config
from dacpipe.run.config import run_config
from dacpipe.run.figures import FIGURES, STYLES, draw_figure, figures_for, pyplot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stores(sample_results):
    """The data-sample stores and figures, with each run's validated settings."""
    results, config = sample_results
    loaded = load_config([config])
    return results, {run_id: run_config(loaded, run_id) for run_id in loaded["runs"]}


def _resolve(entry, spec: str) -> np.ndarray:
    """The store data a gid names: ``path``, ``path[i]``, ``path[i,k]``, ``...×factor``, ``...+offset``,
    ``a÷b`` and ``a÷b+offset`` (the offset added to the quotient)."""
    if "÷" in spec:
        top, bottom = spec.split("÷")
        bottom, _, offset = bottom.partition("+")
        return _resolve(entry, top) / _resolve(entry, bottom) + (float(offset) if offset else 0.0)
    path, index, factor, offset = re.fullmatch(r"([^\[+×]+)(?:\[(\d+(?:,\d+)*)\])?(?:×((?:[^+e]|e\+?)+))?(?:\+(.+))?",
                                               spec).groups()
    data = np.asarray(entry[path][()], dtype=float)
    if index is not None:
        data = data[tuple(int(i) for i in index.split(","))]
    if factor is not None:
        data = data * float(factor)
    return data + (float(offset) if offset else 0.0)


def test_every_figure_of_every_run_is_written(stores):
    results, runs = stores
    expected = {run_id: figures_for(run) for run_id, run in runs.items()}
    assert {"fractions", "band_gap", "spectra_stack", "lattice", "ruby_scale"} <= set(expected["hgte_thz"])
    assert {"ruby_gallery", "saxs_distance", "saxs_stack", "ruby_scale"} <= set(expected["nc_saxs"])
    assert "lattice" in expected["cdse_nc"] and "ruby_scale" not in expected["cdse_nc"]  # gold gauge: no line
    assert "lattice_strain" in expected["au_radial"]   # the radial-geometry run: Singh's t/G
    for run_id, names in expected.items():
        for name in names:
            for ext in ("png", "pdf"):
                path = results / run_id / "figures" / f"{name}.{ext}"
                assert path.stat().st_size > 5000, path


def test_plotted_numbers_are_the_stored_numbers(stores):
    results, runs = stores
    plt = pyplot()
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
    plt = pyplot()
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


def test_one_command_draws_several_figures(stores, tmp_path, capsys):
    """The workflow's one figures job per run: `dacpipe figure A B --out-dir D` writes D/A.png, D/A.pdf, ...;
    several figures with one --out are refused in one line."""
    from dacpipe.cli import main

    results, _ = stores
    store = str(results / "hgte_thz.h5")
    assert main(["figure", "fractions", "lattice", "--store", store, "--out-dir", str(tmp_path / "d"), "--jobs", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["fractions.pdf", "fractions.png", "lattice.pdf",
                                                                   "lattice.png"]
    capsys.readouterr()
    assert main(["figure", "fractions", "lattice", "--store", store, "--out", str(tmp_path / "f.png")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out-dir" in err[0] and not (tmp_path / "f.png").exists()
    # A figure the store has no data for: one line naming it; the others drawn all the same.
    assert main(["figure", "saxs_stack", "fractions", "--store", store, "--out-dir", str(tmp_path / "e"),
                 "--jobs", "2"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "figure saxs_stack" in err[0] and (tmp_path / "e" / "fractions.pdf").exists()


def test_a_thousand_points_make_a_readable_figure():
    """Waterfall and gallery show at most 30 points, spread over the run, first and last included."""
    from dacpipe.run.figures import MAX_PANELS, _spread

    shown = _spread(1000)
    assert len(shown) == MAX_PANELS and shown[0] == 0 and shown[-1] == 999
    assert _spread(14) == list(range(14)) and _spread(0) == []


def test_a_dense_series_has_bars_without_caps_rasterized_in_the_pdf(tmp_path):
    """Beyond DENSE_POINTS a series' caps would merge into a band and every marker
    would be a path of the PDF: no caps, and the series drawn as an image there;
    a short series keeps its caps and stays vector."""
    from dacpipe.run.figures import DENSE_POINTS, errorbar

    plt = pyplot()
    fig, ax = plt.subplots()
    for n, dense in ((DENSE_POINTS, False), (5 * DENSE_POINTS, True)):
        x = np.linspace(0, 10, n)
        container = errorbar(ax, x, x, xerr=0.1 + 0 * x, yerr=0.2 + 0 * x, marker="o")
        assert (len(container.lines[1]) == 0) == dense           # caps
        assert container.lines[0].get_rasterized() == dense
        assert all(bars.get_rasterized() == dense for bars in container.lines[2])
    fig.savefig(tmp_path / "dense.pdf")
    plt.close(fig)
    assert b"/Subtype /Image" in (tmp_path / "dense.pdf").read_bytes()


def test_a_dense_series_has_the_bars_matplotlib_would_draw():
    """A dense series' bars are built from plain arrays (matplotlib's own
    errorbar takes 3x as long over masked ones): the same segments (a bar
    with a non-finite end left out), colour, width and axis limits, and a
    legend entry with a bar."""
    from dacpipe.run.figures import DENSE_POINTS, errorbar

    plt = pyplot()
    rng = np.random.default_rng(3)
    n = 5 * DENSE_POINTS
    x, y = np.linspace(0, 10, n), np.sin(np.linspace(0, 10, n))
    y[7] = np.nan
    yerr = np.abs(rng.normal(0.1, 0.05, n))
    yerr[5] = np.nan
    drawn = []
    for ours in (False, True):
        fig, ax = plt.subplots()
        kw = dict(xerr=0.05, yerr=np.vstack([yerr, 2 * yerr]), marker="o", label="a")
        c = errorbar(ax, x, y, **kw) if ours else ax.errorbar(x, y, capsize=0, linestyle="none", **kw)
        fig.canvas.draw()
        plain = [[np.ma.filled(np.ma.asarray(s, dtype=float), np.nan) for s in bars.get_segments()]
                 for bars in c.lines[2]]
        segments = [np.array([s for s in bars if s.shape == (2, 2) and np.isfinite(s).all()]) for bars in plain]
        drawn.append((segments, ax.get_xlim(), ax.get_ylim(), [b.get_color().tolist() for b in c.lines[2]],
                      [float(b.get_linewidth()[0]) for b in c.lines[2]], [b.get_zorder() for b in c.lines[2]],
                      [h.get_label() for h in ax.get_legend_handles_labels()[0]], type(c).__name__))
        plt.close(fig)
    (ref, *rest), (new, *rest_new) = drawn
    assert [len(s) for s in new] == [n - 1, n - 2]          # the NaN point, and the NaN error
    assert all(np.allclose(a, b) for a, b in zip(ref, new))
    assert rest == rest_new


def test_points_left_out_of_the_eos_fit_are_ringed(tmp_path):
    """The compression figure rings exactly the points in eos/<phase>/excluded_points."""
    plt = pyplot()
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
        plt = pyplot()
        fig = FIGURES["eos_ellipse"](entry, plt)
        tagged = [a for a in fig.axes[0].get_lines() if a.get_gid()]
        assert len(tagged) == 3
        for artist in tagged:
            y_spec, x_spec = artist.get_gid().split("|")
            np.testing.assert_array_equal(artist.get_ydata(), _resolve(entry, y_spec))
            np.testing.assert_array_equal(artist.get_xdata(), _resolve(entry, x_spec))
        plt.close(fig)


# --- the figures of the seeds' studies, from stores built here (fast) --------

def _new_store(path, n=3, pressure=(0.5, 2.0, 4.0)):
    h5 = h5py.File(path, "w")
    h5.attrs["default"] = "r"
    entry = h5.create_group("r")
    entry["points/point"] = np.array([f"p{i}" for i in range(n)], dtype=object)
    entry["points/pressure_GPa"] = np.array(pressure, dtype=float)
    entry["points/pressure_err_GPa"] = np.full(n, 0.05)
    entry["points/temperature_K"] = np.full(n, 298.0)
    return h5, entry


def _tagged(fig):
    return [a for ax in fig.axes for a in ax.get_lines() if a.get_gid() and "|" in a.get_gid()]


def _assert_drawn_as_stored(fig, entry):
    for artist in _tagged(fig):
        y_spec, x_spec = artist.get_gid().split("|")
        np.testing.assert_array_equal(np.asarray(artist.get_ydata(), float), _resolve(entry, y_spec), err_msg=y_spec)
        np.testing.assert_array_equal(np.asarray(artist.get_xdata(), float), _resolve(entry, x_spec), err_msg=x_spec)


def test_band_gap_draws_the_gaps_the_urbach_energies_and_the_deformation_potential(tmp_path):
    h5, entry = _new_store(tmp_path / "g.h5")
    pressure = entry["points/pressure_GPa"][()]
    entry["optical/band_gap/pressure_GPa"] = pressure
    entry["optical/band_gap/band_gap_eV"] = 0.9 + 0.03 * pressure
    entry["optical/band_gap/band_gap_err_eV"] = np.full(3, 0.002)
    fit = entry.create_group("optical/band_gap/fit/zb")
    for name, value in {"pressure_min_GPa": 0.0, "pressure_max_GPa": 3.0, "E0_eV": 0.9,
                        "alpha_eV_per_GPa": 0.03, "beta_eV_per_GPa2": 0.0}.items():
        fit[name] = value
    entry["optical/band_gap/deformation/zb/dEg_dlnV_eV"] = -1.26
    entry["optical/urbach/pressure_GPa"] = pressure
    entry["optical/urbach/urbach_energy_eV"] = np.array([0.020, 0.021, np.nan])
    entry["optical/urbach/urbach_energy_err_eV"] = np.full(3, 0.001)
    plt = pyplot()
    fig = FIGURES["band_gap"](entry, plt)
    assert [ax.get_ylabel() for ax in fig.axes] == ["energy (eV)", "Urbach (meV)"]
    _assert_drawn_as_stored(fig, entry)
    labels = [l.get_label() for l in fig.axes[0].get_lines()]
    assert "zb: +30 meV/GPa, dEg/dlnV -1.26 eV" in labels
    plt.close(fig)
    del entry["optical/urbach"]   # no Urbach energy: one panel
    assert len(FIGURES["band_gap"](entry, plt).axes) == 1
    h5.close()


def test_spectra_stack_draws_each_stored_spectrum_on_its_own_axis(tmp_path):
    """Three points; the second has no absorption spectrum (a NaN row), the
    spectra have different lengths (NaN-padded). Each drawn line is its row,
    the PL scaled to its maximum (peak at 1 + offset), coloured by pressure."""
    h5, entry = _new_store(tmp_path / "s.h5")
    energy = np.full((3, 5), np.nan)
    energy[0, :5], energy[2, :4] = np.linspace(1.0, 2.0, 5), np.linspace(1.2, 1.8, 4)
    absorbance = np.where(np.isfinite(energy), 0.3 * energy, np.nan)
    entry["optical/spectra/absorption_energy_eV"], entry["optical/spectra/absorbance"] = energy, absorbance
    pl_energy = np.tile(np.linspace(1.5, 1.9, 6), (3, 1))
    pl = np.array([[1, 3, 8, 3, 1, 0], [2, 6, 40, 6, 2, 1], [0, 1, 2, 4, 1, 0]], dtype=float)
    entry["optical/spectra/pl_energy_eV"], entry["optical/spectra/pl_intensity"] = pl_energy, pl
    plt = pyplot()
    fig = FIGURES["spectra_stack"](entry, plt)
    lines = _tagged(fig)
    assert len(lines) == 2 + 3  # the point without an absorption spectrum is not drawn
    _assert_drawn_as_stored(fig, entry)
    pl_lines = [l for l in lines if "pl_intensity" in l.get_gid()]
    offsets = [float(l.get_gid().split("|")[0].rsplit("+", 1)[1]) for l in pl_lines]
    for line, offset in zip(pl_lines, offsets):
        assert np.nanmax(line.get_ydata()) == pytest.approx(1.0 + offset, abs=1e-12)
    # colour by pressure: the lowest and highest pressures at the ends of the colour map
    cmap = plt.get_cmap("viridis")
    assert pl_lines[0].get_color() == cmap(0.0) and pl_lines[-1].get_color() == cmap(1.0)
    assert any(ax.get_ylabel() == "pressure (GPa)" for ax in fig.axes)  # the colour bar
    plt.close(fig)
    h5.close()


def test_lattice_draws_a_c_and_c_over_a_with_their_errors(tmp_path):
    """A cubic phase (a only) and a hexagonal one (a, c): three panels; c/a
    is c ÷ a, its error (c/a) sqrt((s_c/c)^2 + (s_a/a)^2) = 1.625 x sqrt(1e-6 + 4e-6)."""
    h5, entry = _new_store(tmp_path / "l.h5")
    entry.create_group("phases").attrs["phases"] = ["cub", "hex"]
    entry["phases/cub/a_A"], entry["phases/cub/a_err_A"] = np.array([5.0, 4.9, np.nan]), np.full(3, 0.01)
    entry["phases/hex/a_A"], entry["phases/hex/a_err_A"] = np.array([np.nan, 4.0, 3.9]), np.array([0, 0.004, 0.004])
    entry["phases/hex/c_A"], entry["phases/hex/c_err_A"] = np.array([np.nan, 6.5, 6.3]), np.array([0, 0.013, 0.013])
    plt = pyplot()
    fig = FIGURES["lattice"](entry, plt)
    assert [ax.get_ylabel() for ax in fig.axes] == ["a (Å)", "c (Å)", "c / a"]
    _assert_drawn_as_stored(fig, entry)
    ratio = next(l for l in _tagged(fig) if "÷" in l.get_gid())
    np.testing.assert_array_equal(ratio.get_ydata()[1:], [6.5 / 4.0, 6.3 / 3.9])
    bars = fig.axes[2].collections[-1].get_segments()  # the y error bars of c/a, one per point
    half = [(seg[1][1] - seg[0][1]) / 2 for seg in bars if len(seg) and np.isfinite(seg).all()]
    assert half[0] == pytest.approx(1.625 * np.sqrt(1e-6 + 4e-6), rel=1e-9)
    plt.close(fig)
    # a run of cubic phases only: one panel
    del entry["phases/hex"]
    entry["phases"].attrs["phases"] = ["cub"]
    fig = FIGURES["lattice"](entry, plt)
    assert len(fig.axes) == 1
    plt.close(fig)
    # with Williamson-Hall sizes and microstrain: two panels more, Scherrer beside WH
    for name, values in {"crystallite_nm": [8.4, 8.3, np.nan], "crystallite_err_nm": [0.1, 0.1, np.nan],
                         "crystallite_wh_nm": [9.0, 8.9, np.nan], "crystallite_wh_err_nm": [0.2, 0.2, np.nan],
                         "microstrain": [1e-4, 2e-4, np.nan], "microstrain_err": [5e-5, 5e-5, np.nan]}.items():
        entry[f"phases/cub/{name}"] = np.array(values)
    fig = FIGURES["lattice"](entry, plt)
    assert [ax.get_ylabel() for ax in fig.axes] == ["a (Å)", "crystallite (nm)", "microstrain"]
    _assert_drawn_as_stored(fig, entry)
    assert {l.get_gid().split("|")[0] for l in _tagged(fig)} >= {"phases/cub/crystallite_nm",
                                                                 "phases/cub/crystallite_wh_nm",
                                                                 "phases/cub/microstrain"}
    plt.close(fig)
    h5.close()


def test_saxs_stack_marks_the_stored_superlattice_peaks(tmp_path):
    h5, entry = _new_store(tmp_path / "x.h5")
    q = np.linspace(0.02, 0.3, 300)
    q1 = np.array([0.094, 0.098, 0.102])
    intensity = np.array([1e3 * np.exp(-q / 0.05) + 50 * np.exp(-0.5 * ((q - p) / 0.004) ** 2) + 1 for p in q1])
    entry["saxs/q"], entry["saxs/I"] = q, intensity
    peaks = np.full((3, 2), np.nan)
    peaks[:, 0] = q1
    peaks[1, 1] = q1[1] * 2 / np.sqrt(3)
    entry["saxs/peaks/q_A"] = peaks
    entry["saxs/peaks/hkl"] = np.array([["111", ""], ["111", "200"], ["111", ""]], dtype=object)
    plt = pyplot()
    fig = FIGURES["saxs_stack"](entry, plt)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    _assert_drawn_as_stored(fig, entry)
    factors = [float(l.get_gid().split("×")[1].split("|")[0]) for l in _tagged(fig)]
    assert factors == [1.0, 10.0, 100.0]
    marks = {a.get_gid(): a for a in ax.get_lines() if a.get_gid() and a.get_gid().startswith("saxs/peaks")}
    assert set(marks) == {"saxs/peaks/q_A[0]", "saxs/peaks/q_A[1]", "saxs/peaks/q_A[2]"}
    np.testing.assert_array_equal(marks["saxs/peaks/q_A[1]"].get_xdata(), peaks[1])
    np.testing.assert_array_equal(marks["saxs/peaks/q_A[2]"].get_xdata(), [q1[2]])
    assert [t.get_text() for t in ax.texts] == ["111"]  # indexed on the top pattern
    plt.close(fig)
    h5.close()


def _ruby_store(path, gauge="ruby"):
    """Ruby before/after at P -+ 0.1 GPa of the point's pressure (a drift of 0.2
    GPa), the last point at 80 K: its R1 carries the thermal shift the stage removed."""
    from dacpipe.pressure.scales import get_scale, ruby_thermal_shift_nm

    scale = get_scale("mao1986-hydrostatic")
    h5, entry = _new_store(path)
    entry["points/temperature_K"][2] = 80.0
    pressure = entry["points/pressure_GPa"][()]
    group = entry["pressure"] if "pressure" in entry else entry.create_group("pressure")
    group.attrs.update({"gauge": gauge, "scale": scale.name, "x0": 694.24, "reference_temperature_K": 298.0,
                        "temperature_correction": "datchi2007"})
    thermal = ruby_thermal_shift_nm(entry["points/temperature_K"][()]) - ruby_thermal_shift_nm(298.0)
    for side, sign in (("before", -1.0), ("after", 1.0)):
        group[f"{side}/R1_nm"] = scale.position_at(pressure + sign * 0.1, 694.24) + thermal
        group[f"{side}/R1_err_nm"] = np.full(3, 0.002)
    return h5, entry, scale


def test_ruby_scale_draws_r1_on_the_run_scale_with_the_drift_below(tmp_path):
    h5, entry, scale = _ruby_store(tmp_path / "r.h5")
    plt = pyplot()
    fig = FIGURES["ruby_scale"](entry, plt)
    top, below = fig.axes
    _assert_drawn_as_stored(fig, entry)
    (curve,) = [l for l in top.get_lines() if l.get_gid() == "scale:mao1986-hydrostatic"]
    np.testing.assert_allclose(curve.get_ydata(), scale.position_at(curve.get_xdata(), 694.24), rtol=0, atol=1e-12)
    pressure = entry["points/pressure_GPa"][()]
    slope = 1.0 / scale.slope_GPa_per_unit(scale.position_at(pressure, 694.24), 694.24)   # nm per GPa
    for side, sign in (("before", -1.0), ("after", 1.0)):
        (residual,) = [l for l in below.get_lines() if l.get_gid() == f"residual:pressure/{side}/R1_nm"]
        # the drift of -+0.1 GPa in nm, the 80 K point's thermal shift taken out as the stage did
        np.testing.assert_allclose(residual.get_ydata(), sign * 0.1 * slope, rtol=2e-3)
    plt.close(fig)
    h5.close()


def test_ruby_scale_of_a_gauge_without_a_line_is_one_line(tmp_path):
    h5, _, _ = _ruby_store(tmp_path / "m.h5", gauge="xrd-marker")
    h5.close()
    with pytest.raises(InputError, match=r"m\.h5: figure ruby_scale: the xrd-marker gauge reads no line position"):
        draw_figure("ruby_scale", tmp_path / "m.h5", tmp_path / "m.png")


def test_hydrostaticity_draws_what_the_run_measured_with_the_medium_limits(tmp_path):
    h5, entry, _ = _ruby_store(tmp_path / "h.h5")
    group = entry["pressure"]
    group["R1_width_ratio"] = np.array([1.0, 1.2, 1.7])
    group["R1_R2_splitting_change_cm1"] = np.array([0.0, 0.1, np.nan])
    group.attrs.update({"medium": "Ne", "medium_hydrostatic_limit_GPa": 4.0,
                        "medium_quasi_hydrostatic_limit_GPa": np.nan})
    plt = pyplot()
    fig = FIGURES["hydrostaticity"](entry, plt)
    _assert_drawn_as_stored(fig, entry)
    # two panels: no gradient measured (no gauge at a second place)
    assert len(fig.axes) == 2
    assert {line.get_gid() for ax in fig.axes for line in ax.get_lines()} >= {"medium:hydrostatic limit"}
    assert [l.get_ydata()[0] for l in fig.axes[0].get_lines() if l.get_label().startswith("broadening")] == [1.5]
    assert "Ne" in fig.axes[0].get_title()
    plt.close(fig)
    group["pressure_gradient_GPa"] = np.array([0.01, 0.05, 0.2])
    group.attrs["medium_hydrostatic_limit_GPa"] = 15.0   # beyond the run's pressures: not drawn
    fig = FIGURES["hydrostaticity"](entry, plt)
    assert len(fig.axes) == 3
    _assert_drawn_as_stored(fig, entry)
    assert not [l for ax in fig.axes for l in ax.get_lines() if (l.get_gid() or "").startswith("medium:")]
    plt.close(fig)
    h5.close()


def test_figures_for_lists_the_new_figures_only_where_the_run_has_their_data(tmp_path):
    def names(**run):
        return set(figures_for({"pressure": {"gauge": "ruby"}, **run}))

    # hydrostaticity: ruby's width and splitting; other gauges only a gradient, from a second spectrum
    two = tmp_path / "two.tsv"
    two.write_text("point\truby\truby_2\np1\ta.txt\tb.txt\n")
    assert "hydrostaticity" not in names(pressure={"gauge": "sm-srb4o7"})
    assert "hydrostaticity" in names(pressure={"gauge": "sm-srb4o7"}, sheet=str(two))
    assert "hydrostaticity" not in names(pressure={"gauge": "diamond-raman"}, sheet=str(tmp_path / "missing.tsv"))

    assert {"ruby_scale", "hydrostaticity"} <= names() and not {"lattice", "saxs_stack", "spectra_stack"} & names()
    assert "ruby_scale" in names(pressure={"gauge": "sm-srb4o7"})
    assert "ruby_scale" in names(pressure={"gauge": "diamond-raman"})
    assert "ruby_scale" not in names(pressure={"gauge": "xrd-marker"}) | names(pressure={"gauge": "sheet"})
    assert "lattice" in names(xrd={}, phases=["CdSe-wz"]) and "lattice" not in names(xrd={}, phases=[])
    assert "saxs_stack" in names(saxs={}) and "spectra_stack" in names(optical={})


def _every_kind_store(path):
    """A store with what each new figure (and fractions) needs."""
    h5, entry, _ = _ruby_store(path)
    entry.create_group("phases").attrs["phases"] = ["cub"]
    entry["phases/cub/a_A"], entry["phases/cub/a_err_A"] = np.array([5.0, 4.9, 4.8]), np.full(3, 0.01)
    entry["phases/cub/fraction"] = np.ones(3)
    entry["saxs/q"], entry["saxs/I"] = np.linspace(0.02, 0.3, 50), np.ones((3, 50))
    entry["optical/spectra/pl_energy_eV"] = np.tile(np.linspace(1.5, 1.9, 6), (3, 1))
    entry["optical/spectra/pl_intensity"] = np.ones((3, 6))
    return h5, entry


@pytest.mark.parametrize("width, inches", [("single-column", 3.35), ("double-column", 7.0), ("screen", None)])
def test_a_journal_width_is_the_width_of_every_figure(tmp_path, width, inches):
    """At a column width every figure is that wide; on screen each keeps its own size."""
    from dacpipe.run.figures import STYLES

    h5, entry = _every_kind_store(tmp_path / "w.h5")
    plt = pyplot()
    for name in ("spectra_stack", "lattice", "saxs_stack", "ruby_scale", "fractions"):
        fig = FIGURES[name](entry, plt, STYLES[width])
        own = {"spectra_stack": 4.0, "saxs_stack": 5.5}.get(name, 6.0)  # PL only here: one panel of 3.2 in + bar
        assert fig.get_size_inches()[0] == pytest.approx(inches or own), name
        plt.close(fig)
    h5.close()


@pytest.mark.slow  # a PNG at 600 dpi and a PDF: about a second
def test_a_saved_journal_figure_is_exactly_the_column_wide(tmp_path):
    """Saved at single-column width: the PNG is 600 dpi x 3.35 in, the PDF page
    3.35 in (72 pt per inch), not cropped to its content."""
    h5, _ = _every_kind_store(tmp_path / "w.h5")
    h5.close()
    png, pdf = draw_figure("lattice", tmp_path / "w.h5", tmp_path / "w.png", width="single-column")
    assert pyplot().imread(png).shape[1] == round(3.35 * 600)
    box = re.search(rb"/MediaBox \[ *0 0 ([\d.]+) ([\d.]+) *\]", pdf.read_bytes())
    assert float(box.group(1)) == pytest.approx(72 * 3.35, abs=0.01)


def test_the_pdf_is_cropped_where_the_png_is(tmp_path):
    """At screen width both files are cropped to the figure's content: the PDF
    takes the PNG's crop and layout, so its page is the PNG's size in inches
    (within a point: 1 pt is 0.35 mm)."""
    h5, _ = _every_kind_store(tmp_path / "s.h5")
    h5.close()
    png, pdf = draw_figure("lattice", tmp_path / "s.h5", tmp_path / "s.png")
    height_px, width_px = pyplot().imread(png).shape[:2]
    dpi = STYLES["screen"].dpi
    box = re.search(rb"/MediaBox \[ *0 0 ([\d.]+) ([\d.]+) *\]", pdf.read_bytes())
    assert float(box.group(1)) == pytest.approx(72 * width_px / dpi, abs=1.0)
    assert float(box.group(2)) == pytest.approx(72 * height_px / dpi, abs=1.0)


def test_figure_width_is_a_checked_config_key():
    from dacpipe.core.errors import ConfigError
    from dacpipe.io.config import validate_config

    config = validate_config({"runs": {"r": {"sheet": "points.tsv"}}})
    assert config["figures"] == {"width": "screen"}
    with pytest.raises(ConfigError, match="figures.width = 'single' is not allowed .did you mean 'single-column'"):
        validate_config({"runs": {"r": {"sheet": "points.tsv"}}, "figures": {"width": "single"}})
    with pytest.raises(InputError, match="figure width 'a4'"):
        draw_figure("lattice", "none.h5", "none.png", width="a4")


def test_optical_stage_keeps_each_spectrum_as_read():
    """optical/spectra/ holds each point's absorbance and PL per eV as read,
    on its own axis: also for a metallic point that has no edge and no PL
    peak (the stack shows them), NaN for a point without the spectrum."""
    from dataclasses import replace

    from dacpipe.io.sheet import Sheet, read_sheet
    from dacpipe.optical.spectra import read_optical
    from dacpipe.optical.stage import measure_points

    full = read_sheet(ROOT / "data-sample" / "hgte_thz" / "points.tsv")
    first, metal = full.points[0], full.points[-1]
    no_absorption = replace(full.points[1], files={k: v for k, v in full.points[1].files.items() if k != "absorption"})
    sheet = Sheet(full.path, full.columns, (first, no_absorption, metal))
    result = measure_points(sheet, {})
    d = result.datasets
    assert np.isfinite(d["band_gap/band_gap_eV"][0]) and np.isnan(d["band_gap/band_gap_eV"][2])
    for i, point in ((0, first), (2, metal)):
        absorbance = read_optical(point.files["absorption"], "nm")
        pl = read_optical(point.files["pl"], "nm", density=True)
        n, m = absorbance.energy_eV.size, pl.energy_eV.size
        np.testing.assert_array_equal(d["spectra/absorption_energy_eV"][i, :n], absorbance.energy_eV)
        np.testing.assert_array_equal(d["spectra/absorbance"][i, :n], absorbance.values)
        np.testing.assert_array_equal(d["spectra/pl_energy_eV"][i, :m], pl.energy_eV)
        np.testing.assert_array_equal(d["spectra/pl_intensity"][i, :m], pl.values)
    assert np.isnan(d["spectra/absorbance"][1]).all() and np.isfinite(d["spectra/pl_intensity"][1]).any()
