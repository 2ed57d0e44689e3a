"""The store: layout, units, status merging, atomic writes."""

import h5py
import numpy as np
import pytest

from dacpipe.io.sheet import read_sheet
from dacpipe.core.results import StageResult
from dacpipe.run.store import assemble, atomic_h5, combine_status, write_part
from dacpipe.core.units import units_from_name


def test_units_from_name():
    assert units_from_name("pressure_err_GPa") == "GPa"
    assert units_from_name("R1_nm") == "nm"
    assert units_from_name("edge_cm1") == "1/cm"
    assert units_from_name("reduced_chi2") is None


def test_combine_status():
    assert combine_status(["ok", "a"], ["ok", "ok"], ["b", "c"]) == ["b", "a; c"]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.h5"
    with atomic_h5(target) as h5:
        h5["a"] = 1
    with pytest.raises(RuntimeError):
        with atomic_h5(target) as h5:
            h5["b"] = 2
            raise RuntimeError("killed half way")
    with h5py.File(target) as h5:  # the previous file, untouched
        assert list(h5) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["x.h5"]


def test_assemble_points_status_and_provenance(tmp_path):
    (tmp_path / "s1.txt").write_text("1 2\n")
    sheet_path = tmp_path / "points.tsv"
    sheet_path.write_text("point\truby\ttemperature_K\tnote\na\ts1.txt\t300\thello\nb\t\tbad\t\n")
    sheet = read_sheet(sheet_path)
    result = StageResult(stage="pressure", point_ids=["a", "b"],
                         datasets={"pressure_GPa": np.array([1.5, np.nan]),
                                   "pressure_err_GPa": np.array([0.1, np.nan]),
                                   "before/R1_nm": np.array([694.7, np.nan])},
                         attrs={"scale": "shen2020"}, status=["ok", "ruby skipped: x"],
                         inputs=[str(tmp_path / "s1.txt")])
    write_part(tmp_path / "part.h5", "run", result)
    assemble(tmp_path / "run.h5", "run", sheet, [tmp_path / "part.h5"], "runs: {}\n")
    with h5py.File(tmp_path / "run.h5") as h5:
        assert h5.attrs["default"] == "run" and h5["run"].attrs["NX_class"] == "NXentry"
        points = h5["run/points"]
        assert list(points["point"].asstr()[()]) == ["a", "b"]
        assert points["pressure_GPa"][0] == 1.5 and np.isnan(points["pressure_GPa"][1])
        assert points["pressure_GPa"].attrs["units"] == "GPa"
        status = list(points["status"].asstr()[()])
        assert status[0] == "ok" and "temperature_K 'bad'" in status[1] and "ruby skipped: x" in status[1]
        assert h5["run/pressure"].attrs["scale"] == "shen2020"
        assert h5["run/pressure/before/R1_nm"].attrs["units"] == "nm"
        paths = list(h5["run/provenance/inputs/path"].asstr()[()])
        assert str(sheet_path) in paths and str(tmp_path / "s1.txt") in paths
        sizes = dict(zip(paths, h5["run/provenance/inputs/size"][()]))
        assert sizes[str(tmp_path / "s1.txt")] == 4
        assert len(h5["run/provenance/inputs/sha256"].asstr()[0]) == 64


def test_assemble_refuses_a_stale_part(tmp_path):
    sheet_path = tmp_path / "points.tsv"
    sheet_path.write_text("point\nx\ny\n")
    result = StageResult(stage="pressure", point_ids=["x"], datasets={}, status=["ok"])
    write_part(tmp_path / "part.h5", "run", result)
    with pytest.raises(ValueError, match="computed for points"):
        assemble(tmp_path / "run.h5", "run", read_sheet(sheet_path), [tmp_path / "part.h5"], "")


def test_a_stage_adds_to_another_stages_group(tmp_path):
    """The SAXS analysis writes saxs/peaks/ beside the integration's saxs/ patterns;
    a dataset written by two stages is refused."""
    sheet_path = tmp_path / "points.tsv"
    sheet_path.write_text("point\nx\ny\n")
    sheet = read_sheet(sheet_path)
    patterns = StageResult(stage="saxs", point_ids=["x", "y"], datasets={"I": np.ones((2, 3))},
                           attrs={"signal": "I"}, status=["ok", "ok"])
    analysis = StageResult(stage="superlattice", point_ids=["x", "y"], datasets={"d_A": np.array([80.0, 79.0])},
                           extra={"saxs/peaks/d_spacing_A": np.array([[80.0, 46.2], [79.0, np.nan]])},
                           status=["ok", "superlattice: no peak"])
    write_part(tmp_path / "saxs.h5", "run", patterns)
    write_part(tmp_path / "superlattice.h5", "run", analysis)
    assemble(tmp_path / "run.h5", "run", sheet, [tmp_path / "saxs.h5", tmp_path / "superlattice.h5"], "")
    with h5py.File(tmp_path / "run.h5") as h5:
        assert h5["run/saxs/I"].shape == (2, 3) and h5["run/saxs"].attrs["signal"] == "I"
        assert h5["run/saxs/peaks/d_spacing_A"][0, 1] == 46.2
        assert list(h5["run/points/status"].asstr()[()]) == ["ok", "superlattice: no peak"]
    clash = StageResult(stage="other", point_ids=["x", "y"], extra={"saxs/I": np.zeros((2, 3))}, status=["ok"] * 2)
    write_part(tmp_path / "clash.h5", "run", clash)
    with pytest.raises(ValueError, match="written by two stages"):
        assemble(tmp_path / "run2.h5", "run", sheet, [tmp_path / "saxs.h5", tmp_path / "clash.h5"], "")


def test_reciprocal_lengths_are_not_angstrom():
    for name in ("q_A", "q_err_A", "q1_A", "fwhm_q_A", "fwhm_q_err_A", "unexplained_q_A"):
        assert units_from_name(name) == "1/angstrom", name
    for name in ("a_A", "d_A", "d_spacing_A", "a_err_A"):
        assert units_from_name(name) == "angstrom", name


# ---------------------------------------------------------------- splicing rows of recomputed points

from dacpipe.io.refs import FileRecord  # noqa: E402
from dacpipe.run.store import SpliceError, read_result, splice_part, splice_results  # noqa: E402


def _patterns(ids, rows, widths, status=None, q=(1.0, 2.0, 3.0), method="csr"):
    """A result with a pattern per point, a fitted window of each width and a label."""
    n = len(ids)
    window = np.full((n, max(widths)), np.nan)
    labels = np.full((n, max(widths)), "", dtype=object)
    for i, w in enumerate(widths):
        window[i, :w] = rows[i]
        labels[i, :w] = f"{ids[i]}"
    return StageResult(stage="xrd", point_ids=list(ids),
                       datasets={"I": np.array([[r, r, r] for r in rows], dtype=float), "window/x": window,
                                 "window/label": labels, "n": np.array(widths), "ok": np.array(widths) > 1},
                       axes={"q": np.array(q)}, attrs={"method": method, "npt": 3},
                       extra={"saxs/peaks/q_A": np.array([[r] for r in rows], dtype=float)},
                       status=status or ["ok"] * n, inputs=[FileRecord(f"/d/{p}", "0" * 64, 1) for p in ids])


def test_a_part_reads_back_as_its_result(tmp_path):
    result = _patterns(["a", "b"], [1.0, 2.0], [1, 3])
    result.extra["xrd/fit/E0_eV"] = np.array(0.8)   # an extra inside the stage's own group, as the optical fits are
    write_part(tmp_path / "p.h5", "run", result)
    back = read_result(tmp_path / "p.h5", "run")
    assert back.stage == "xrd" and back.point_ids == ["a", "b"] and back.status == ["ok", "ok"]
    assert set(back.datasets) == set(result.datasets) and set(back.axes) == {"q"}
    np.testing.assert_array_equal(back.datasets["window/x"], result.datasets["window/x"])
    assert back.datasets["window/label"].tolist() == result.datasets["window/label"].tolist()
    assert back.attrs["method"] == "csr" and back.attrs["signal"] == "I" and back.attrs["axes"] == [".", "q"]
    assert float(back.extra["xrd/fit/E0_eV"]) == 0.8 and "saxs/peaks/q_A" in back.extra
    assert "fit/E0_eV" not in back.datasets
    assert back.inputs == result.inputs
    write_part(tmp_path / "again.h5", "run", back)          # and writes again as it was
    again = read_result(tmp_path / "again.h5", "run")
    assert again.attrs == back.attrs and set(again.extra) == set(back.extra)


def test_splice_replaces_and_adds_rows_by_point_in_sheet_order(tmp_path):
    old = _patterns(["a", "b", "c"], [1.0, 2.0, 3.0], [1, 4, 2])
    new = _patterns(["d", "b"], [40.0, 20.0], [2, 1])   # b recomputed (its window now 1 wide), d new
    out = splice_results(old, new, ["a", "b", "c", "d"])
    np.testing.assert_array_equal(out.datasets["I"][:, 0], [1.0, 20.0, 3.0, 40.0])
    # b's window was the widest: the columns no point fills any more are gone, as one run would size them.
    assert out.datasets["window/x"].shape == (4, 2)
    np.testing.assert_array_equal(out.datasets["window/x"],
                                  [[1.0, np.nan], [20.0, np.nan], [3.0, 3.0], [40.0, 40.0]])
    assert out.datasets["window/label"].tolist() == [["a", ""], ["b", ""], ["c", "c"], ["d", "d"]]
    assert out.datasets["n"].tolist() == [1, 1, 2, 2] and out.datasets["ok"].tolist() == [False, False, True, True]
    np.testing.assert_array_equal(out.extra["saxs/peaks/q_A"][:, 0], [1.0, 20.0, 3.0, 40.0])
    assert [r.path for r in out.inputs] == ["/d/a", "/d/b", "/d/c", "/d/d"]
    # Equal to computing all four at once.
    whole = _patterns(["a", "b", "c", "d"], [1.0, 20.0, 3.0, 40.0], [1, 1, 2, 2])
    for name, values in whole.datasets.items():
        assert out.datasets[name].tolist() == values.tolist() or np.array_equal(out.datasets[name], values,
                                                                                  equal_nan=True), name
    # Removed and reordered points: no new rows at all; the files only a removed point named leave the inputs.
    out = splice_results(old, None, ["c", "a"], drop_inputs=["/d/b"])
    np.testing.assert_array_equal(out.datasets["I"][:, 0], [3.0, 1.0])
    assert [r.path for r in out.inputs] == ["/d/a", "/d/c"]
    with pytest.raises(ValueError, match="point e is in neither"):
        splice_results(old, new, ["a", "e"])


def test_splice_checks_axes_and_attributes(tmp_path):
    old = _patterns(["a", "b"], [1.0, 2.0], [1, 1])
    with pytest.raises(SpliceError, match="axis q"):
        splice_results(old, _patterns(["c"], [3.0], [1], q=(1.0, 2.0, 3.5)), ["a", "b", "c"])
    with pytest.raises(SpliceError, match="attribute method"):
        splice_results(old, _patterns(["c"], [3.0], [1], method="lut"), ["a", "b", "c"])
    # New points none of which gave a pattern (an unreadable frame): their axes
    # and attributes, from the geometry alone, do not count.
    bad = _patterns(["c"], [np.nan], [1], status=["xrd skipped: x"], q=(0.9, 2.0, 3.0), method="")
    out = splice_results(old, bad, ["a", "b", "c"])
    assert out.axes["q"].tolist() == [1.0, 2.0, 3.0] and out.attrs["method"] == "csr"
    assert out.status == ["ok", "ok", "xrd skipped: x"]
    # And the other way round: the previous points gave none.
    out = splice_results(bad, old, ["c", "a", "b"])
    assert out.axes["q"].tolist() == [1.0, 2.0, 3.0] and out.attrs["method"] == "csr"


def test_splice_part_whole_series_extras_come_from_the_new_part(tmp_path):
    old = StageResult(stage="phases", point_ids=["a", "b"], datasets={"x": np.array([1.0, 2.0])},
                      extra={"transitions/onset_GPa": np.array([5.0])}, status=["ok", "ok"])
    new = StageResult(stage="phases", point_ids=["c"], datasets={"x": np.array([3.0])},
                      extra={"transitions/onset_GPa": np.array([5.0, 9.0])}, status=["ok"])
    write_part(tmp_path / "old.h5", "run", old)
    write_part(tmp_path / "new.h5", "run", new)
    splice_part(tmp_path / "old.h5", tmp_path / "new.h5", tmp_path / "old.h5", "run", ["a", "b", "c"],
                extras_over_points=False)
    with h5py.File(tmp_path / "old.h5") as h5:
        assert h5["run/phases/x"][()].tolist() == [1.0, 2.0, 3.0]
        assert h5["run/transitions/onset_GPa"][()].tolist() == [5.0, 9.0]
        assert list(h5["run/point_ids"].asstr()[()]) == ["a", "b", "c"]


def test_a_stages_warnings_join_the_points_status(tmp_path):
    """A per-point warning of a stage (the integration's: a mask that leaves few
    pixels) is in the point's status in the store; the stage's own status stays
    ok, so the stages after it use the point."""
    sheet_path = tmp_path / "points.tsv"
    sheet_path.write_text("point\na\nb\n")
    result = StageResult(stage="xrd", point_ids=["a", "b"], status=["ok", "ok"],
                         datasets={"I": np.ones((2, 3)), "warnings": np.array(["", "few pixels"], dtype=object)},
                         axes={"q": np.arange(3.0)})
    write_part(tmp_path / "xrd.h5", "run", result)
    assemble(tmp_path / "run.h5", "run", read_sheet(sheet_path), [tmp_path / "xrd.h5"], "runs: {}\n")
    with h5py.File(tmp_path / "run.h5") as h5:
        assert list(h5["run/points/status"].asstr()[()]) == ["ok", "xrd warning: few pixels"]
        assert list(h5["run/xrd/status"].asstr()[()]) == ["ok", "ok"]
