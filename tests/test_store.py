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
