"""Faults of the filesystem and of careless hands (issue 13 item 4): a writer
killed before its rename, a store or part replaced by garbage, a full disk,
a folder given as the sheet, an error in one run under Snakemake.

Each gives one line naming the file and the cause (and, for a damaged
result file, how to rebuild it); the previous store stays intact.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from dacpipe.cli import main
from dacpipe.core.errors import SheetError
from dacpipe.io.sheet import read_sheet
from dacpipe.run import store as store_module
from dacpipe.run.store import StoreError, atomic_h5, read_points, remove_stale_temporaries

RUN = "tiny"


def tiny_project(folder: Path, results: Path | None = None) -> Path:
    """A run whose pressures are typed in the sheet: one stage, a store in a fraction of a second."""
    (folder / "points.tsv").write_text("point\tpressure_GPa\tpressure_err_GPa\n"
                                       "p1\t1.0\t0.1\np2\t2.0\t0.1\np3\t3.5\t0.1\n")
    config = folder / "config.yaml"
    config.write_text(f"results_dir: {results or folder / 'results'}\n"
                      f"runs:\n  {RUN}:\n    sheet: {folder / 'points.tsv'}\n    pressure: {{gauge: sheet}}\n")
    return config


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("dacpipe: ")]


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


# --- a writer killed before its rename ------------------------------------------------

WRITER = """
import sys, time
import numpy as np
from dacpipe.run.store import atomic_h5
with atomic_h5(sys.argv[1]) as h5:
    h5["x"] = np.zeros(1000)
    print("writing", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow  # two Python processes started: ~2 s
def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    """kill -9 of a writer between mkstemp and rename leaves its temporary;
    the next write of the same target removes it, and leaves a live writer's alone."""
    target = tmp_path / "run.h5"
    killed = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    live = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert killed.stdout.readline().strip() == "writing"
        assert live.stdout.readline().strip() == "writing"
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=10)
        left = temporaries(tmp_path)
        assert len(left) == 2  # one per writer, each named with its process
        assert any(f".{killed.pid}." in p.name for p in left)
        with atomic_h5(target) as h5:
            h5["x"] = np.arange(3.0)
        kept = temporaries(tmp_path)
        assert [p for p in kept if f".{killed.pid}." in p.name] == []
        assert [p for p in kept if f".{live.pid}." in p.name] != []  # still being written: never touched
        with h5py.File(target) as h5:
            np.testing.assert_array_equal(h5["x"][()], [0.0, 1.0, 2.0])
    finally:
        for process in (killed, live):
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def test_temporaries_of_unknown_writers_are_removed_only_when_old(tmp_path):
    target = tmp_path / "run.h5"
    old = tmp_path / ".run.h5.ab12cd34.tmp"          # the naming before writers were named
    fresh = tmp_path / ".run.h5.ef56gh78.tmp"
    elsewhere = tmp_path / ".run.h5.othernode.4242.x1y2z3.tmp"   # another machine's writer
    other_target = tmp_path / ".run.h5.bak.h5.myhost.1.a1b2c3.tmp"  # a temporary of "run.h5.bak.h5"
    for path in (old, fresh, elsewhere, other_target):
        path.write_bytes(b"\0" * 100)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    removed = remove_stale_temporaries(target)
    assert removed == [old]
    assert fresh.exists() and elsewhere.exists() and other_target.exists()


# --- a store or part replaced by garbage --------------------------------------------------

def test_a_damaged_part_is_named_with_how_to_rebuild_it_and_dacpipe_run_rebuilds_it(tmp_path, capsys):
    config = tiny_project(tmp_path)
    assert main(["run", "--configfile", str(config)]) == 0
    part = tmp_path / "results" / RUN / "parts" / "pressure.h5"
    store = tmp_path / "results" / f"{RUN}.h5"
    expected = read_points(store, RUN)["pressure_GPa"]
    capsys.readouterr()
    part.write_bytes(os.urandom(5000))
    # What the Snakemake store job runs: one line, no traceback.
    assert main(["assemble", "--configfile", str(config), "--run", RUN]) == 2
    (line,) = error_lines(capsys)
    assert line.startswith(f"dacpipe: {part}: unreadable part, not a whole HDF5 file")
    assert "delete it and run again to rebuild it" in line
    np.testing.assert_array_equal(read_points(store, RUN)["pressure_GPa"], expected)  # the store untouched
    # dacpipe run writes every part again.
    assert main(["run", "--configfile", str(config)]) == 0
    with h5py.File(part) as h5:
        np.testing.assert_allclose(h5[f"{RUN}/pressure/pressure_GPa"][()], [1.0, 2.0, 3.5])


def test_a_damaged_store_gives_one_line_to_the_figure_job_and_dacpipe_run_rebuilds_it(tmp_path, capsys):
    config = tiny_project(tmp_path)
    assert main(["run", "--configfile", str(config)]) == 0
    store = tmp_path / "results" / f"{RUN}.h5"
    capsys.readouterr()
    store.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(3000))  # the signature, then garbage
    out = tmp_path / "fig" / "compression.png"
    assert main(["figure", "compression", "--store", str(store), "--out", str(out)]) == 2
    (line,) = error_lines(capsys)
    assert line.startswith(f"dacpipe: {store}: unreadable store") and "rebuild it" in line
    with pytest.raises(StoreError, match="unreadable store"):
        read_points(store, RUN)
    assert main(["run", "--configfile", str(config)]) == 0
    np.testing.assert_allclose(read_points(store, RUN)["pressure_GPa"], [1.0, 2.0, 3.5])


def test_a_part_of_another_run_is_named(tmp_path):
    config = tiny_project(tmp_path)
    assert main(["run", "--configfile", str(config)]) == 0
    part = tmp_path / "results" / RUN / "parts" / "pressure.h5"
    with pytest.raises(StoreError, match=r"holds no run 'other'.*rebuild it"):
        store_module.read_result(part, "other")


# --- a full disk ----------------------------------------------------------------------------

def test_a_full_disk_gives_one_line_and_keeps_the_previous_store(tmp_path, capsys, monkeypatch):
    config = tiny_project(tmp_path)
    assert main(["run", "--configfile", str(config)]) == 0
    store = tmp_path / "results" / f"{RUN}.h5"
    before = store.read_bytes()
    capsys.readouterr()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_module, "open", full, raising=False)  # the one write of atomic_h5
    assert main(["assemble", "--configfile", str(config), "--run", RUN]) == 2
    (line,) = error_lines(capsys)
    assert line == f"dacpipe: {store}: cannot write it: no space left on device (the previous file is kept)"
    assert store.read_bytes() == before
    assert temporaries(store.parent) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (needs root and mount); skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_a_really_full_disk_under_dacpipe_run_is_one_line_not_a_segfault(tmp_path, small_disk):
    """HDF5 writing to a full disk could not close the file and the process died
    of a segmentation fault (exit 139); now the store is built in memory and
    written by Python."""
    config = tiny_project(tmp_path, results=small_disk / "results")
    command = [str(Path(sys.executable).parent / "dacpipe"), "run", "--configfile", str(config)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    store = small_disk / "results" / f"{RUN}.h5"
    before = store.read_bytes()
    # Fill the disk to the last few kB.
    with open(small_disk / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1, (again.returncode, again.stderr[-2000:])
    errors = [line for line in again.stderr.splitlines() if line.startswith("dacpipe: ")]
    assert len(errors) == 1 and "no space left on device" in errors[0], again.stderr[-2000:]
    assert "Traceback" not in again.stderr
    assert store.read_bytes() == before
    assert temporaries(store.parent) == [] and temporaries(store.parent / RUN / "parts") == []


# --- a folder as the sheet; one failing run under Snakemake -----------------------------------

def test_a_folder_as_the_sheet_is_one_line(tmp_path, capsys):
    with pytest.raises(SheetError) as caught:
        read_sheet(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}: is a folder, not a sample sheet")
    config = tiny_project(tmp_path)
    assert main(["run", "--configfile", str(config), "--set", f"runs.{RUN}.sheet={tmp_path}"]) == 1
    (line,) = error_lines(capsys)
    assert line.startswith(f"dacpipe: {RUN}: {tmp_path}: is a folder, not a sample sheet")


def test_a_job_started_by_snakemake_says_how_to_finish_the_other_runs(tmp_path, capsys):
    """An empty sheet in one run fails its job; without --keep-going Snakemake
    stops every other run's jobs too, so the job's line says so."""
    import json

    from dacpipe.io.config import load_config

    config = tiny_project(tmp_path)
    (tmp_path / "points.tsv").write_text("")
    as_json = json.dumps(load_config([str(config)], []))
    assert main(["stage", "pressure", "--run", RUN, "--config-json", as_json]) == 2
    (line,) = error_lines(capsys)
    assert line.startswith(f"dacpipe: {tmp_path / 'points.tsv'}: empty sample sheet")
    assert "--keep-going" in line
    # dacpipe run goes on with the other runs by itself: no such advice.
    assert main(["run", "--configfile", str(config)]) == 1
    assert all("--keep-going" not in line for line in error_lines(capsys))
