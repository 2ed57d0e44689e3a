"""The phase stage in chunks (issue 11 item 5): the workflow's chunk jobs and
their join give what ``dacpipe run`` gives, and the chunks find what the one
walk over the series finds.

The parts the stage reads (integrated patterns, pressures) are written from
a synthetic HgTe series (:func:`dacpipe.synth.powder.hgte_coexistence_series`:
zinc blende -> cinnabar -> rock salt, a long coexistence), so the run needs
no frames.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml

from dacpipe.core.results import StageResult
from dacpipe.io.config import load_config
from dacpipe.run.layout import part_path
from dacpipe.run.runner import merge_stage, run_stage
from dacpipe.run.stages import chunks
from dacpipe.run.store import read_result, write_part
from dacpipe.synth.powder import hgte_coexistence_series

RUN = "chunked"


def _project(tmp: Path, chunk_points: int) -> dict:
    series = hgte_coexistence_series(npt=1500)
    ids = [f"p{i:02d}" for i in range(len(series.points))]
    (tmp / "points.tsv").write_text("point\n" + "".join(f"{p}\n" for p in ids))
    (tmp / "xrd.poni").write_text("")
    run = {"sheet": str(tmp / "points.tsv"), "chunk_points": chunk_points, "phases": list(series.sample_phases),
           "pressure": {"gauge": "ruby"}, "xrd": {"poni": str(tmp / "xrd.poni")}}
    path = tmp / f"config{chunk_points}.yaml"
    path.write_text(yaml.safe_dump({"results_dir": str(tmp / f"results{chunk_points}"), "runs": {RUN: run}}))
    config = load_config([path])
    intensity, sigma = series.patterns(seed=5)
    n = len(ids)
    write_part(part_path(config, RUN, "xrd"), RUN, StageResult(
        stage="xrd", point_ids=ids, datasets={"I": intensity, "I_errors": sigma}, axes={"q": series.q_A, "pixel_mean_q_A": series.q_A},
        attrs={"wavelength_A": series.wavelength_A}, status=["ok"] * n))
    write_part(part_path(config, RUN, "pressure"), RUN, StageResult(
        stage="pressure", point_ids=ids, datasets={"pressure_GPa": series.pressure_GPa,
                                                    "pressure_err_GPa": np.full(n, 0.05)}, status=["ok"] * n))
    return config


def _same(a: StageResult, b: StageResult, rtol: float = 0.0) -> None:
    assert a.point_ids == b.point_ids and a.status == b.status
    assert sorted(a.datasets) == sorted(b.datasets) and sorted(a.extra) == sorted(b.extra)
    for name in a.datasets:
        x, y = np.asarray(a.datasets[name]), np.asarray(b.datasets[name])
        if x.dtype.kind in "fc":
            np.testing.assert_allclose(x, y, rtol=rtol, atol=0, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)
    for name in a.extra:
        assert list(np.ravel(a.extra[name])) == list(np.ravel(b.extra[name])), name


@pytest.mark.slow  # three passes over a 25-point series: ~6 s
def test_chunk_jobs_and_their_join_give_what_the_run_gives(tmp_path):
    whole = _project(tmp_path, chunk_points=100)
    split = _project(tmp_path, chunk_points=7)
    assert len(chunks("phases", split["runs"][RUN], 25)) == 4

    # dacpipe run: the stage computed chunk by chunk in one process, then the transitions
    in_process = read_result(run_stage(split, RUN, "phases"), RUN)
    # the workflow: one job per chunk, then the join (merge + transitions)
    jobs = [run_stage(split, RUN, "phases", out=tmp_path / f"chunk{k}.h5", chunk=k) for k in range(4)]
    joined = read_result(merge_stage(split, RUN, "phases", jobs, tmp_path / "joined.h5"), RUN)
    _same(in_process, joined)

    # against one walk over the whole series: the same phases at every point, the
    # same transitions; volumes and fractions within 1.5 of their errors (each
    # fit places the background's knots and merges bins by its starting widths,
    # the previous point's: measured up to 0.4 sigma in volume and 1.1 sigma in
    # fraction where cinnabar and rock salt overlap, with errors of 7e-4)
    one_walk = read_result(run_stage(whole, RUN, "phases"), RUN)
    assert in_process.status == one_walk.status
    for key in one_walk.attrs["phases"]:
        np.testing.assert_array_equal(in_process.datasets[f"{key}/present"], one_walk.datasets[f"{key}/present"])
        for name in ("volume_fu_A3", "fraction"):
            a, b = in_process.datasets[f"{key}/{name}"], one_walk.datasets[f"{key}/{name}"]
            err = one_walk.datasets[f"{key}/{name.replace('_A3', '')}_err{'_A3' if '_A3' in name else ''}"]
            known = np.isfinite(err)
            assert np.all(np.abs(a - b)[known] <= 1.5 * err[known]), (key, name)
            np.testing.assert_array_equal(a[~known], b[~known])
    for name in ("transitions/from_phase", "transitions/to_phase", "transitions/direction",
                 "transitions/onset_point", "transitions/end_point"):
        assert list(in_process.extra[name]) == list(one_walk.extra[name])
    assert len(one_walk.extra["transitions/from_phase"]) == 2
