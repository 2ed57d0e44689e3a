"""Stores and parts get the mode the umask gives any new file, as the figures beside them do.

A store built in a temporary file (``mkstemp``, mode 0600) and renamed kept
0600 whatever the umask, so a beamline group could not read the results
while it could read the figures: the temporary now gets ``0666 & ~umask``.
"""

import os
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest

from dacpipe.core.results import StageResult
from dacpipe.run.store import atomic_h5, current_umask, write_part

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o002, 0o664), (0o022, 0o644), (0o077, 0o600)])
def test_parts_and_files_get_the_umask_mode(tmp_path, mask, expected):
    result = StageResult(stage="pressure", point_ids=["p1"], datasets={"pressure_GPa": [1.0]}, status=["ok"])
    with umask(mask):
        assert current_umask() == mask
        write_part(tmp_path / "parts" / "pressure.h5", "r", result)
        with atomic_h5(tmp_path / "r.h5") as h5:
            h5["x"] = 1
        # a file replaced keeps the new mode too
        write_part(tmp_path / "parts" / "pressure.h5", "r", result)
    assert mode(tmp_path / "parts" / "pressure.h5") == expected
    assert mode(tmp_path / "r.h5") == expected


def test_reading_the_umask_leaves_it_alone():
    with umask(0o027):
        assert current_umask() == 0o027
        assert current_umask() == 0o027


@pytest.mark.slow
@pytest.mark.parametrize("mask, expected", [(0o002, 0o664), (0o022, 0o644)])
def test_dacpipe_run_writes_store_parts_and_figures_with_one_mode(tmp_path, mask, expected):
    """Two ruby points of data-sample, with their gallery figure: every file of the run alike."""
    from dacpipe.cli import main

    ruby = ROOT / "data-sample" / "hgte_thz" / "ruby"
    (tmp_path / "points.tsv").write_text(
        "point\truby\n" + "".join(f"p{i}\t{ruby / f'hgte_p00{i}_ruby_before.txt'}\n" for i in (1, 2)))
    (tmp_path / "config.yaml").write_text(
        f"results_dir: {tmp_path / 'results'}\nruns:\n  r:\n    sheet: {tmp_path / 'points.tsv'}\n"
        "    pressure: {gauge: ruby}\n")
    with umask(mask):
        assert main(["run", "--configfile", str(tmp_path / "config.yaml"), "--figures"]) == 0
    results = tmp_path / "results"
    written = [results / "r.h5", results / "r" / "parts" / "pressure.h5",
               *sorted((results / "r" / "figures").glob("*.p*"))]
    assert len(written) == 8   # the ruby gallery, scale and hydrostaticity figures, as PNG and PDF
    assert {path.name: mode(path) for path in written} == {path.name: expected for path in written}
