"""One writer per run, and a store whose provenance is the config its numbers came from.

Two ``dacpipe run`` processes on one results folder each wrote the run's
parts and store: both exited 0 and the store could hold the pressures of one
config under the provenance of the other. Now a run's writer holds
``<results>/<run>/.lock`` (a second one waits, saying for whom, or stops
with ``--lock-wait``), and each part records the digest of the settings it
was computed with, which the store's assembly compares with the config it
writes as provenance.
"""

import fcntl
import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

from dacpipe.cli import main
from dacpipe.core.results import StageResult
from dacpipe.io.config import load_config, validate_config
from dacpipe.run.config import run_config
from dacpipe.run.lock import RunBusy, lock_path, run_lock
from dacpipe.run.provenance import SETTINGS_ATTR, settings_digest
from dacpipe.run.runner import assemble_run
from dacpipe.run.stages import config_sections, stages_for
from dacpipe.run.store import StoreError, merge_chunks, read_points, read_result, write_part
from conftest import absolute_config

import h5py

ROOT = Path(__file__).resolve().parents[1]
RUBY = ROOT / "data-sample" / "hgte_thz" / "ruby"


@contextmanager
def held_elsewhere(path: Path, line: str = "process 4242 on beamline (dacpipe run --configfile a.yaml)"):
    """The lock taken on another open file (as another process would), with its holder's line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, (line + "\n").encode(), 0)
    try:
        yield fd
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --------------------------------------------------------------------------- the lock

def test_a_held_lock_stops_at_once_with_one_line_naming_the_holder(tmp_path):
    path = tmp_path / "results" / "r" / ".lock"
    with held_elsewhere(path):
        with pytest.raises(RunBusy) as err:
            with run_lock(path, wait_s=0):
                pytest.fail("taken twice")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path.parent}: in use by process 4242 on beamline (dacpipe run")
    assert "--lock-wait" in message


def test_a_bounded_wait_says_for_whom_once_then_gives_up(tmp_path):
    path = tmp_path / ".lock"
    said = []
    with held_elsewhere(path):
        t0 = time.monotonic()
        with pytest.raises(RunBusy, match="still in use by process 4242 .* after 0.3 s"):
            with run_lock(path, wait_s=0.3, say=said.append, poll_s=0.05):
                pass
        assert time.monotonic() - t0 >= 0.3
    assert said == [f"{tmp_path}: waiting (up to 0.3 s) for process 4242 on beamline "
                    "(dacpipe run --configfile a.yaml) to finish with this run"]


def test_a_waiting_writer_goes_on_once_the_holder_is_done(tmp_path):
    path = tmp_path / ".lock"
    said = []
    with held_elsewhere(path) as fd:
        threading.Timer(0.2, lambda: fcntl.flock(fd, fcntl.LOCK_UN)).start()
        with run_lock(path, say=said.append):
            holder = path.read_text()
    assert len(said) == 1 and "waiting for process 4242" in said[0]
    assert holder.startswith(f"process {os.getpid()} on ")
    assert path.read_text() == ""      # released: the file stays, empty


def test_the_holder_may_take_its_own_lock_again(tmp_path):
    path = tmp_path / ".lock"
    with run_lock(path, wait_s=0):
        with run_lock(path, wait_s=0):     # dacpipe run -> assemble: no wait for itself
            pass
        with held_elsewhere(tmp_path / "other.lock"):
            pass
    with run_lock(path, wait_s=0):         # and released after the outer block
        pass


def _ruby_project(folder: Path, points: int = 3, scale: str = "shen2020", results: Path | None = None) -> Path:
    """A run ``r`` of ``points`` ruby spectra of data-sample, with ``scale``: its config file."""
    folder.mkdir(parents=True, exist_ok=True)
    sheet = folder / "points.tsv"
    rows = [f"p{i:02d}\t{RUBY / f'hgte_p{1 + i % 12:03d}_ruby_before.txt'}" for i in range(points)]
    sheet.write_text("point\truby\n" + "\n".join(rows) + "\n")
    config = folder / f"{scale}.yaml"
    config.write_text(yaml.safe_dump({"results_dir": str(results or folder / "results"),
                                      "runs": {"r": {"sheet": str(sheet), "pressure": {"gauge": "ruby",
                                                                                        "scale": scale}}}}))
    return config


def test_dacpipe_run_on_a_run_in_use_stops_with_one_line(tmp_path, capsys):
    config = _ruby_project(tmp_path)
    with held_elsewhere(tmp_path / "results" / "r" / ".lock"):
        code = main(["run", "--configfile", str(config), "--lock-wait", "0"])
    assert code == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"dacpipe: r: {tmp_path / 'results' / 'r'}: in use by process 4242 on beamline "
                     "(dacpipe run --configfile a.yaml); not started (--lock-wait 0; "
                     "give --lock-wait SECONDS to wait for it)"]
    assert not (tmp_path / "results" / "r.h5").exists()


# --------------------------------------------------------------------------- settings digests

def test_a_store_is_refused_from_parts_of_other_settings(tmp_path):
    """Parts of the shen2020 scale, assembled under a config saying mao1986: refused, one line;
    `dacpipe run` with that config rebuilds them, and the store says what made its numbers."""
    shen = _ruby_project(tmp_path, scale="shen2020")
    mao = _ruby_project(tmp_path, scale="mao1986-hydrostatic")
    assert main(["run", "--configfile", str(shen)]) == 0
    store = tmp_path / "results" / "r.h5"
    first = read_points(store, "r")["pressure_GPa"]
    with pytest.raises(StoreError) as err:
        assemble_run(load_config([mao]), "r")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'results' / 'r' / 'parts' / 'pressure.h5'}: ")
    assert "other settings of runs.r (pressure)" in message and "rebuild it" in message
    np.testing.assert_array_equal(read_points(store, "r")["pressure_GPa"], first)   # the store left alone

    assert main(["run", "--configfile", str(mao)]) == 0
    again = read_points(store, "r")["pressure_GPa"]
    assert np.all(np.abs(again - first) > 1e-4)     # other scale, other pressures
    with h5py.File(store) as h5:
        provenance = yaml.safe_load(h5["r/provenance/config"].asstr()[()])
        assert SETTINGS_ATTR not in h5["r/pressure"].attrs    # checked, not stored: the config is
        assert h5["r/pressure"].attrs["scale"] == "mao1986-hydrostatic"
    assert provenance["runs"]["r"]["pressure"]["scale"] == "mao1986-hydrostatic"
    part = read_result(tmp_path / "results" / "r" / "parts" / "pressure.h5", "r")
    assert part.attrs[SETTINGS_ATTR] == settings_digest(run_config(load_config([mao]), "r"), "pressure")


def test_chunks_of_other_settings_are_not_merged(tmp_path):
    def chunk(name, digest, point):
        path = tmp_path / name
        write_part(path, "r", StageResult(stage="pressure", point_ids=[point], datasets={"pressure_GPa": [1.0]},
                                          status=["ok"], attrs={SETTINGS_ATTR: digest}))
        return path

    a, b, c = chunk("a.h5", "1" * 64, "p1"), chunk("b.h5", "1" * 64, "p2"), chunk("c.h5", "2" * 64, "p3")
    merge_chunks([a, b], tmp_path / "ab.h5", "r")
    assert read_result(tmp_path / "ab.h5", "r").attrs[SETTINGS_ATTR] == "1" * 64
    with pytest.raises(StoreError, match="computed with different settings of pressure"):
        merge_chunks([a, c], tmp_path / "ac.h5", "r")


@pytest.mark.parametrize("extra", [{}, {"pressure": {"gauge": "xrd-marker", "marker": "Au"}}])
def test_a_jobs_settings_digest_is_the_whole_configs(tmp_path, extra):
    """A Snakemake job computes its part from only its stage's sections (common.smk's
    stage_json, through JSON); its digest must be the one the store job computes
    from the whole run, or every workflow store would be refused."""
    config = load_config([absolute_config(tmp_path, tmp_path / "results")])
    for run_id in config["runs"]:
        run = run_config(config, run_id)
        if extra and "xrd" in run:
            run = run_config(validate_config({"runs": {run_id: {**config["runs"][run_id], **extra}}}), run_id)
        for stage in stages_for(run):
            own = {"sheet": run["sheet"], **{key: run[key] for key in config_sections(stage, run)}}
            job = json.loads(json.dumps({"results_dir": "results", "runs": {run_id: own}}, sort_keys=True))
            assert settings_digest(run_config(validate_config(job), run_id), stage) == \
                settings_digest(run, stage), (run_id, stage)


# --------------------------------------------------------------------------- two processes at once

def _dacpipe(log: Path, *args) -> subprocess.Popen:
    """`dacpipe ARGS` in a new process, its messages into ``log``."""
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, "-c", "import sys; from dacpipe.cli import main; sys.exit(main())",
                                 *args], stdout=fh, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_two_runs_at_once_leave_a_store_whose_provenance_made_its_numbers(tmp_path):
    """Two `dacpipe run` with other scales on one results folder, started while the run is
    in use so that they overlap: each waits, saying for whom, both finish, and the store's
    pressures are those its provenance's scale gives (each scale run alone, elsewhere)."""
    results = tmp_path / "shared"
    configs = {scale: _ruby_project(tmp_path / scale, points=6, scale=scale, results=results)
               for scale in ("shen2020", "mao1986-hydrostatic")}
    expected = {}
    for scale in configs:
        alone = _ruby_project(tmp_path / f"alone-{scale}", points=6, scale=scale)
        assert main(["run", "--configfile", str(alone)]) == 0
        expected[scale] = read_points(tmp_path / f"alone-{scale}" / "results" / "r.h5", "r")["pressure_GPa"]
    assert np.all(np.abs(expected["shen2020"] - expected["mao1986-hydrostatic"]) > 1e-4)

    logs = {scale: tmp_path / f"{scale}.log" for scale in configs}
    with held_elsewhere(lock_path({"results_dir": str(results)}, "r")):
        procs = {scale: _dacpipe(logs[scale], "run", "--configfile", str(config)) for scale, config in configs.items()}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all("waiting for process 4242" in log.read_text()
                                                      for log in logs.values()):
            time.sleep(0.05)
    for scale, p in procs.items():
        p.wait(timeout=120)
        text = logs[scale].read_text()
        assert p.returncode == 0, text[-2000:]
        assert len([line for line in text.splitlines() if "waiting for process 4242" in line]) == 1, text[-2000:]
    with h5py.File(results / "r.h5") as h5:
        scale = yaml.safe_load(h5["r/provenance/config"].asstr()[()])["runs"]["r"]["pressure"]["scale"]
        assert h5["r/pressure"].attrs["scale"] == scale
    np.testing.assert_array_equal(read_points(results / "r.h5", "r")["pressure_GPa"], expected[scale])
