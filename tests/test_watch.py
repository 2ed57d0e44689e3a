"""``dacpipe watch``: files landing in a run's folder keep its store current."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import h5py
import numpy as np
import yaml

from dacpipe.cli import watch as watch_module
from dacpipe.io.config import load_config
from dacpipe.synth import read_truth
from dacpipe.cli.watch import FileState, Watcher, is_ready, limited_sheet_text, observe, watch

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data-sample" / "hgte_thz"
RUN = "hgte_thz"
SETTLE = 0.2


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def point_files(point: str) -> list[Path]:
    """The files of one point of data-sample/hgte_thz, relative to the run's folder."""
    n = point[1:]
    names = [f"xrd/hgte_p{n}.cbf", f"ruby/hgte_p{n}_ruby_before.txt", f"ruby/hgte_p{n}_ruby_after.txt",
             f"optical/hgte_p{n}_abs.txt", f"optical/hgte_p{n}_pl.txt"]
    return [Path(name) for name in names if (SAMPLE / name).is_file()]


def land(folder: Path, point: str) -> None:
    for rel in point_files(point):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLE / rel, folder / rel)


def make_config(tmp: Path, data: Path, xrd: bool = False) -> dict:
    run = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["runs"][RUN]
    run["sheet"] = str(data / "points.tsv")
    for key in ("optical",) + (() if xrd else ("xrd", "phases", "eos")):
        run.pop(key, None)
    if xrd:
        run["xrd"]["poni"] = str(SAMPLE / "xrd.poni")
        run["xrd"]["mask"] = str(SAMPLE / "xrd.mask")
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump({"results_dir": str(tmp / "results"), "runs": {RUN: run}}))
    return load_config([path])


def expected_pressures() -> dict[str, float]:
    truth = read_truth(SAMPLE / "truth.tsv")
    mean = np.nanmean(np.vstack([truth["pressure_before_GPa"], truth["pressure_after_GPa"]]), axis=0)
    return dict(zip(truth["point"], mean))


def store_points(store: Path) -> tuple[list[str], np.ndarray]:
    with h5py.File(store) as h5:
        return list(h5[f"{RUN}/points/point"].asstr()[()]), h5[f"{RUN}/points/pressure_GPa"][()]


def test_file_state_settles():
    class Stat:
        def __init__(self, size, mtime):
            self.st_size, self.st_mtime_ns = size, mtime

    stats = {"a": Stat(10, 1)}
    states = observe({}, ["a", "b"], 0.0, stat=lambda p: stats[p] if p in stats else (_ for _ in ()).throw(OSError()))
    assert set(states) == {"a"} and not is_ready(states["a"], 0.1, 0.2) and is_ready(states["a"], 0.2, 0.2)
    stats["a"] = Stat(20, 2)  # still growing: the settle time starts again
    states = observe(states, ["a"], 0.3, stat=lambda p: stats[p])
    assert states["a"] == FileState(20, 2, 0.3) and not is_ready(states["a"], 0.4, 0.2)
    assert not is_ready(None, 10.0, 0.2)


def test_limited_sheet_keeps_points_and_makes_paths_absolute(tmp_path):
    text = "# c\npoint\txrd\tnote\np1\ta.cbf\tx\np2\t/abs/b.h5::/d@3\ty\np3\t\tz\n"
    out = limited_sheet_text(text, tmp_path, ["p2", "p3"])
    assert out == "point\txrd\tnote\np2\t/abs/b.h5::/d@3\ty\np3\t\tz\n"
    assert limited_sheet_text(text, tmp_path).splitlines()[1] == f"p1\t{tmp_path}/a.cbf\tx"


def test_points_appear_as_their_files_settle(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(SAMPLE / "points.tsv", data / "points.tsv")  # names all 14 points; files land later
    config = make_config(tmp_path, data)
    clock, lines = Clock(), []
    watcher = Watcher(config, RUN, data, settle=SETTLE, clock=clock, echo=lines.append)
    store = tmp_path / "results" / f"{RUN}.h5"
    truth = expected_pressures()

    for point in ("p001", "p002", "p003"):
        land(data, point)
    report = watcher.cycle()          # just landed: not read yet
    assert not report.updated and not store.exists() and report.waiting == 14
    clock.t = 0.3
    report = watcher.cycle()
    assert report.updated and report.points == 3 and report.waiting == 11
    ids, pressure = store_points(store)
    assert ids == ["p001", "p002", "p003"]
    assert np.allclose(pressure, [truth[p] for p in ids], atol=0.05)
    assert "3 points; p003: P = " in report.line

    mtime = store.stat().st_mtime_ns
    clock.t = 0.5
    report = watcher.cycle()          # nothing changed: the store is not rewritten
    assert not report.updated and report.points == 3 and store.stat().st_mtime_ns == mtime

    land(data, "p004")
    for rel in point_files("p005"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLE / rel, data / rel)
    growing = data / "ruby" / "hgte_p005_ruby_after.txt"
    content = (SAMPLE / "ruby" / "hgte_p005_ruby_after.txt").read_bytes()
    growing.write_bytes(content[: len(content) // 2])
    clock.t = 0.6
    assert not watcher.cycle().updated
    with growing.open("ab") as f:     # the spectrometer finishes writing
        f.write(content[len(content) // 2:])
    clock.t = 0.9
    report = watcher.cycle()          # p004 settled, p005's file changed since the last look
    assert report.updated and store_points(store)[0] == ["p001", "p002", "p003", "p004"]
    clock.t = 1.2
    report = watcher.cycle()
    assert report.updated and report.points == 5
    ids, pressure = store_points(store)
    assert ids == ["p001", "p002", "p003", "p004", "p005"]
    assert np.allclose(pressure, [truth[p] for p in ids], atol=0.05)
    assert len([line for line in lines if " points; " in line]) == 3


def test_bad_file_and_bad_sheet_do_not_stop_the_watcher(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    sheet = data / "points.tsv"
    rows = (SAMPLE / "points.tsv").read_text().splitlines()
    sheet.write_text("\n".join(rows[:3]) + "\n")
    for point in ("p001", "p002"):
        land(data, point)
    (data / "ruby" / "hgte_p002_ruby_after.txt").write_text("not a spectrum\n")
    config = make_config(tmp_path, data)
    clock, lines = Clock(), []
    watcher = Watcher(config, RUN, data, settle=0.0, clock=clock, echo=lines.append)
    report = watcher.cycle()
    assert report.updated and report.points == 2 and "p002" in report.line
    status = h5py.File(tmp_path / "results" / f"{RUN}.h5")[f"{RUN}/points/status"].asstr()[()]
    assert status[0] == "ok" and status[1] != "ok"

    sheet.write_text(sheet.read_text().replace("point\t", "pont\t"))  # the user mistypes while editing
    report = watcher.cycle()
    assert report.error and "no 'point' column" in report.error and str(sheet) in report.error and lines[-1].endswith(report.error)
    sheet.write_text("\n".join(rows[:4]) + "\n")                         # fixed, and a row appended
    land(data, "p003")
    report = watcher.cycle()
    assert report.error is None and report.updated and report.points == 3


def test_make_sheet_from_the_folder(tmp_path):
    data = tmp_path / "data"
    for point in ("p001", "p002"):
        land(data, point)
    config = make_config(tmp_path, data)   # its sheet, data/points.tsv, does not exist
    clock = Clock()
    watcher = Watcher(config, RUN, data, settle=0.0, clock=clock, echo=lambda line: None, make_sheet=True)
    report = watcher.cycle()
    assert report.updated and report.points == 2
    made = tmp_path / "results" / RUN / "watch" / "sheet.tsv"
    mtime = made.stat().st_mtime_ns
    assert not watcher.cycle().updated and made.stat().st_mtime_ns == mtime
    land(data, "p003")
    assert watcher.cycle().points == 3
    ids, pressure = store_points(tmp_path / "results" / f"{RUN}.h5")
    truth = expected_pressures()
    assert ids == ["p001", "p002", "p003"] and np.allclose(pressure, [truth[p] for p in ids], atol=0.05)


def test_phases_appear_with_xrd(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(SAMPLE / "points.tsv", data / "points.tsv")
    for point in ("p001", "p002", "p003"):
        land(data, point)
    config = make_config(tmp_path, data, xrd=True)
    watcher = Watcher(config, RUN, data, settle=0.0, clock=Clock(), echo=lambda line: None)
    report = watcher.cycle()
    assert report.updated and report.points == 3
    assert "phases: HgTe-zb" in report.line
    with h5py.File(tmp_path / "results" / f"{RUN}.h5") as h5:
        assert h5[f"{RUN}/phases/HgTe-zb/present"][()].tolist() == [True, True, True]


def test_cli_once_and_ctrl_c(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "points.tsv").write_text("\n".join((SAMPLE / "points.tsv").read_text().splitlines()[:2]) + "\n")
    land(data, "p001")
    config = tmp_path / "config.yaml"
    make_config(tmp_path, data)
    parser = argparse.ArgumentParser()
    watch_module.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["watch", str(data), "--configfile", str(config), "--settle", "0.05", "--once"])
    assert args.func(args) == 0
    assert "1 point; p001: P = 0.15 GPa" in capsys.readouterr().out

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(watch_module, "watch", interrupted)
    args = parser.parse_args(["watch", str(data), "--configfile", str(config), "--max-cycles", "1"])
    assert args.func(args) == 0
    assert "stopped watching" in capsys.readouterr().out


def test_watch_loop_counts_cycles():
    class Counting:
        settle, n = 0.0, 0

        def cycle(self):
            self.n += 1

    sleeps: list[float] = []
    counting = Counting()
    assert watch(counting, interval=2.0, max_cycles=3, sleep=sleeps.append) == 0
    assert counting.n == 3 and sleeps == [2.0, 2.0]


# ---------------------------------------------------------------- only what changed is computed

import dataclasses  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

import pytest  # noqa: E402

from dacpipe.integration import stage as integration_stage  # noqa: E402
from dacpipe.optical import stage as optical_stage  # noqa: E402
from dacpipe.pressure import stage as pressure_stage  # noqa: E402
from dacpipe.core.results import StageResult  # noqa: E402
from dacpipe.run import stages as stage_registry  # noqa: E402
from dacpipe.run.incremental import StageUpdate  # noqa: E402


def store_contents(path: Path) -> dict:
    """Every group's attributes and every dataset's values and attributes, by path."""
    out = {}
    with h5py.File(path) as h5:
        def visit(name, obj):
            value = None
            if isinstance(obj, h5py.Dataset):
                value = obj.asstr()[()] if obj.dtype.kind == "O" else obj[()]
            out[name] = (value, dict(obj.attrs))
        h5.visititems(visit)
    return out


def same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def assert_same_store(got: Path, want: Path) -> None:
    """Dataset by dataset and attribute by attribute, NaN equal to NaN."""
    a, b = store_contents(got), store_contents(want)
    assert sorted(a) == sorted(b)
    for name in a:
        (va, aa), (vb, ab) = a[name], b[name]
        assert (va is None) == (vb is None) and (va is None or same(va, vb)), name
        assert sorted(aa) == sorted(ab) and all(same(aa[k], ab[k]) for k in aa), name


@pytest.fixture
def counted(monkeypatch):
    """The points each stage function was called with, per call."""
    calls: dict[str, list[list[str]]] = {}

    def wrap(module, name, label):
        original = getattr(module, name)

        def counting(ctx, *args):
            calls.setdefault(label, []).append(list(ctx.sheet.point_ids))
            return original(ctx, *args)
        monkeypatch.setattr(module, name, counting)

    wrap(pressure_stage, "run", "pressure")
    wrap(integration_stage, "run", "xrd")
    wrap(optical_stage, "measure", "optical measure")
    wrap(optical_stage, "summarise", "optical summarise")
    return calls


def optical_config(tmp: Path, data: Path) -> dict:
    """Ruby, XRD and optical spectra, no indexing."""
    run = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["runs"][RUN]
    run["sheet"] = str(data / "points.tsv")
    for key in ("phases", "eos"):
        run.pop(key)
    run["xrd"]["poni"] = str(SAMPLE / "xrd.poni")
    run["xrd"]["mask"] = str(SAMPLE / "xrd.mask")
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump({"results_dir": str(tmp / "results"), "runs": {RUN: run}}))
    return load_config([path])


def full_recompute(watcher: Watcher, tmp: Path) -> Path:
    """The store of one run over all the ready points, beside the incremental one."""
    store = tmp / "results" / f"{RUN}.h5"
    incremental = store.with_name("incremental.h5")
    shutil.copyfile(store, incremental)
    watcher.run_state, watcher.last_signature = None, None
    assert watcher.cycle().updated
    assert {u.action for u in watcher.last_update.values()} == {"all"}
    return incremental


@pytest.mark.slow  # ~1.3 s: several watcher cycles
def test_a_new_point_costs_one_points_work(tmp_path, counted):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(SAMPLE / "points.tsv", data / "points.tsv")
    config = optical_config(tmp_path, data)
    watcher = Watcher(config, RUN, data, settle=0.0, clock=Clock(), echo=lambda line: None)
    for point in ("p001", "p002", "p003"):
        land(data, point)
    assert watcher.cycle().updated                   # the first update computes everything
    assert counted["pressure"] == [["p001", "p002", "p003"]] and counted["xrd"] == [["p001", "p002", "p003"]]
    assert {stage: u.action for stage, u in watcher.last_update.items()} == \
        {"pressure": "all", "xrd": "all", "optical": "all"}

    for new in (["p004"], ["p005", "p006"], ["p007"]):
        for point in new:
            land(data, point)
        report = watcher.cycle()
        assert report.updated and f"; {new[-1]}: P = " in report.line
        for stage in ("pressure", "xrd", "optical measure"):
            assert counted[stage][-1] == new, stage
        assert len(counted["optical summarise"][-1]) == int(new[-1][1:])   # E(P) refitted on all points
        assert watcher.last_update["xrd"].action == "points" and watcher.last_update["xrd"].computed == len(new)
        assert watcher.last_update["optical"].action == "series"
    assert len(counted["xrd"]) == 4

    # The store after these updates is the store of one run over the seven points.
    incremental = full_recompute(watcher, tmp_path)
    assert counted["xrd"][-1] == [f"p00{i}" for i in range(1, 8)]
    assert_same_store(incremental, tmp_path / "results" / f"{RUN}.h5")


@pytest.mark.slow  # several watch updates: 1 s
def test_a_rewritten_file_is_recomputed_and_a_touched_one_is_not(tmp_path, counted):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(SAMPLE / "points.tsv", data / "points.tsv")
    config = optical_config(tmp_path, data)
    watcher = Watcher(config, RUN, data, settle=0.0, clock=Clock(), echo=lambda line: None)
    for point in ("p001", "p002", "p003", "p004"):
        land(data, point)
    watcher.cycle()
    store = tmp_path / "results" / f"{RUN}.h5"
    truth = expected_pressures()

    # The ruby of p002 measured again, at p008's pressure: only p002 is recomputed.
    for side in ("before", "after"):
        shutil.copyfile(SAMPLE / "ruby" / f"hgte_p008_ruby_{side}.txt", data / "ruby" / f"hgte_p002_ruby_{side}.txt")
    report = watcher.cycle()
    assert report.updated and counted["pressure"][-1] == ["p002"] and counted["xrd"][-1] == ["p002"]
    ids, pressure = store_points(store)
    assert ids == ["p001", "p002", "p003", "p004"]
    assert pressure[1] == pytest.approx(truth["p008"], abs=0.05)
    assert pressure[[0, 2, 3]] == pytest.approx([truth[p] for p in ("p001", "p003", "p004")], abs=0.05)

    # Same content, new modification time (a copy of the folder): nothing to compute, the store left alone.
    mtime = store.stat().st_mtime_ns
    (data / "xrd" / "hgte_p003.cbf").touch()
    (data / "optical" / "hgte_p003_pl.txt").write_bytes((SAMPLE / "optical" / "hgte_p003_pl.txt").read_bytes())
    report = watcher.cycle()
    assert not report.updated and report.line is None and store.stat().st_mtime_ns == mtime
    assert len(counted["pressure"]) == 2 and {u.action for u in watcher.last_update.values()} == {"kept"}

    # A point dropped from the sheet, another's row edited (a temperature typed in):
    # the first leaves the store, the second is recomputed.
    rows = (data / "points.tsv").read_text().splitlines()
    rows = [r for r in rows if not r.startswith("p003\t")]
    rows = [r.replace("\t298\tstep 4", "\t310\tstep 4") if r.startswith("p004\t") else r for r in rows]
    (data / "points.tsv").write_text("\n".join(rows) + "\n")
    assert watcher.cycle().updated
    assert counted["pressure"][-1] == ["p004"] and store_points(store)[0] == ["p001", "p002", "p004"]
    with h5py.File(store) as h5:
        paths = list(h5[f"{RUN}/provenance/inputs/path"].asstr()[()])
    assert not any("hgte_p003" in path for path in paths)
    assert_same_store(full_recompute(watcher, tmp_path), store)


@pytest.mark.slow  # several watch updates: 1 s
def test_a_settings_change_recomputes_everything(tmp_path, counted):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(SAMPLE / "points.tsv", data / "points.tsv")
    config = optical_config(tmp_path, data)
    watcher = Watcher(config, RUN, data, settle=0.0, clock=Clock(), echo=lambda line: None)
    for point in ("p001", "p002", "p003"):
        land(data, point)
    watcher.cycle()
    store = tmp_path / "results" / f"{RUN}.h5"
    before = store_points(store)[1]

    watcher.config = copy_with(config, ("pressure", "scale"), "dewaele2008")
    report = watcher.cycle()                        # no file changed, the settings did
    assert report.updated
    assert {stage: (u.action, u.computed) for stage, u in watcher.last_update.items()} == \
        {"pressure": ("all", 3), "xrd": ("all", 3), "optical": ("all", 3)}
    assert counted["xrd"][-1] == ["p001", "p002", "p003"]
    assert np.all(store_points(store)[1] > before)  # Dewaele's scale reads higher than Mao's

    # A file the settings name (the PONI, edited by a new calibration) counts as a setting.
    poni = tmp_path / "xrd.poni"
    shutil.copyfile(SAMPLE / "xrd.poni", poni)
    watcher.config = copy_with(watcher.config, ("xrd", "poni"), str(poni))
    watcher.cycle()
    assert watcher.last_update["xrd"].action == "all"
    land(data, "p004")
    watcher.cycle()
    assert watcher.last_update["xrd"] .action == "points"
    poni.write_text(poni.read_text().replace("Distance: ", "Distance: 1"))
    watcher.cycle()
    assert watcher.last_update["xrd"].action == "all" and counted["xrd"][-1] == ["p001", "p002", "p003", "p004"]


def copy_with(config: dict, keys: tuple[str, str], value) -> dict:
    import copy
    out = copy.deepcopy(config)
    out["runs"][RUN][keys[0]][keys[1]] = value
    return out


def sequential_stage(calls: list) -> types.ModuleType:
    """A phase stage that walks the series as the real one does: each point's
    values depend on the points before it in its context (a running maximum
    of the pressure, a running count) and on its own pattern; its
    whole-series step (``finish``) sums up the joined series in
    ``transitions/``."""
    module = types.ModuleType("sequential_phases")

    def phases(ctx):
        calls.append(list(ctx.sheet.point_ids))
        xrd, pressure = ctx.upstream["xrd"], ctx.upstream["pressure"]["pressure_GPa"]
        n = len(ctx.sheet.points)
        assert len(pressure) == n and xrd["I"].shape[0] == n and len(xrd["status"]) == n
        present = np.asarray(xrd["status"]) == "ok"
        table = {"HgTe-zb/present": present, "HgTe-zb/fraction": np.where(present, 1.0, np.nan),
                 "HgTe-zb/volume_fu_A3": 70.0 * (1 - pressure / 100.0), "HgTe-zb/volume_fu_err_A3": np.full(n, 0.05),
                 "HgTe-zb/highest_GPa": np.fmax.accumulate(pressure), "HgTe-zb/count": np.arange(1, n + 1),
                 "HgTe-zb/strongest_q_A": xrd["q"][np.nanargmax(xrd["I"], axis=1)]}
        return StageResult(stage="phases", point_ids=ctx.sheet.point_ids, datasets=table,
                           attrs={"phases": ["HgTe-zb"]}, status=["ok"] * n)

    def finish(ctx, joined):
        pressure = ctx.upstream["pressure"]["pressure_GPa"]
        assert len(pressure) == len(joined.point_ids)
        return dataclasses.replace(joined, extra={"transitions/n_points": np.array([len(pressure)]),
                                                  "transitions/highest_GPa": np.array([np.nanmax(pressure)])})

    module.phases, module.finish = phases, finish
    return module


@pytest.mark.slow  # several watch updates: 2 s
def test_a_stage_walking_the_series_is_computed_again_from_the_chunk_that_changed(tmp_path, monkeypatch):
    """The phase identification restarts at every chunk (with its lead-in): an
    update computes again the chunks from the one holding the first new or
    changed point, splices them after the rows kept, redoes the whole-series
    step, and the store equals a full recompute's."""
    calls: list = []
    monkeypatch.setitem(sys.modules, "sequential_phases", sequential_stage(calls))
    monkeypatch.setitem(stage_registry.STAGES, "phases", "sequential_phases:phases")
    monkeypatch.setitem(stage_registry.FINISH, "phases", "sequential_phases:finish")
    monkeypatch.setitem(stage_registry.LEAD_IN_POINTS, "phases", 3)
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(SAMPLE / "points.tsv", data / "points.tsv")
    config = make_config(tmp_path, data, xrd=True)
    config["runs"][RUN]["chunk_points"] = 2      # chunks [p001 p002] [p003 p004] [p005]
    watcher = Watcher(config, RUN, data, settle=0.0, clock=Clock(), echo=lambda line: None)
    ids = [f"p00{i}" for i in range(1, 6)]
    for point in ids[:2]:
        land(data, point)
    watcher.cycle()
    assert calls == [ids[:2]]
    # appended: only the new chunk, with its lead-in (the points before, up to three)
    for new, lead_in in ((ids[2:4], ids[:2]), (ids[4:], ids[1:4])):
        calls.clear()
        for point in new:
            land(data, point)
        watcher.cycle()
        assert calls == [lead_in + new] and watcher.last_update["phases"] == StageUpdate("resumed", len(new))
    # The last point's spectra measured again: its chunk again. The first's: every chunk.
    for point, expected in (("p005", [ids[1:]]), ("p001", [ids[:2], ids[:4], ids[1:]])):
        calls.clear()
        for side in ("before", "after"):
            shutil.copyfile(SAMPLE / "ruby" / f"hgte_p009_ruby_{side}.txt",
                            data / "ruby" / f"hgte_{point}_ruby_{side}.txt")
        watcher.cycle()
        assert calls == expected
    with h5py.File(tmp_path / "results" / f"{RUN}.h5") as h5:
        assert h5[f"{RUN}/phases/HgTe-zb/count"][()].tolist() == [1, 2, 3, 4, 4]
        assert h5[f"{RUN}/transitions/n_points"][()].tolist() == [5]
    assert_same_store(full_recompute(watcher, tmp_path), tmp_path / "results" / f"{RUN}.h5")


@pytest.mark.slow  # the superlattice analysis of four SAXS patterns, three times: 15-25 s
def test_saxs_patterns_spliced_and_the_superlattice_analysis_redone(tmp_path):
    """The integrated SAXS patterns of new points spliced; the superlattice
    analysis, which lets an ambiguous point take its neighbours' indexing,
    redone on every point: the store equals a full recompute's."""
    saxs = ROOT / "data-sample" / "nc_saxs"
    run = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["runs"]["nc_saxs"]
    data = tmp_path / "data"
    data.mkdir()
    shutil.copyfile(saxs / "points.tsv", data / "points.tsv")
    run["sheet"] = str(data / "points.tsv")
    for key in ("poni", "mask", "dark", "flat"):
        run["saxs"][key] = str(ROOT / run["saxs"][key])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"results_dir": str(tmp_path / "results"),
                                                          "runs": {"nc_saxs": run}}))
    config = load_config([tmp_path / "config.yaml"])
    watcher = Watcher(config, "nc_saxs", data, settle=0.0, clock=Clock(), echo=lambda line: None)
    # two updates of two points each (each update analyses every pattern again: 6 s a point here)
    lines = (data / "points.tsv").read_text().splitlines()
    (data / "points.tsv").write_text("\n".join(lines[:1] + [l for l in lines[1:] if l.split("\t")[0] in
                                                            ("p001", "p002", "p003", "p004")]) + "\n")
    for points in (("p001", "p002"), ("p003", "p004")):
        for point in points:
            for rel in (f"saxs/nc_{point}.cbf", f"ruby/nc_{point}_ruby_before.txt"):
                (data / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(saxs / rel, data / rel)
        assert watcher.cycle().updated
    assert {stage: u.action for stage, u in watcher.last_update.items()} == \
        {"pressure": "points", "saxs": "points", "superlattice": "all"}
    assert watcher.last_update["saxs"].computed == 2 and watcher.last_update["superlattice"].computed == 4
    store = tmp_path / "results" / "nc_saxs.h5"
    incremental = store.with_name("incremental.h5")
    shutil.copyfile(store, incremental)
    watcher.run_state, watcher.last_signature = None, None
    watcher.cycle()
    with h5py.File(store) as h5:
        assert h5["nc_saxs/saxs/peaks/q_A"].shape[0] == 4 and h5["nc_saxs/superlattice/order"].asstr()[0] == "fcc"
    assert_same_store(incremental, store)
