"""``dacpipe watch`` at the beamline: what one new point costs as the run grows.

For runs of N Pilatus-1M frames (CBF, npt 3000) with a ruby spectrum before
and after each, the watcher is brought up to date on N points, then points
are appended one at a time; prints, for each N:

* the first update (every stage on the N points, as every update did
  before updates became incremental);
* an update that adds one point (median of ``--appends``), and what each
  stage did in it;
* of that, the pressure and integration stages run by hand on that one
  point (their fixed costs: the integrator's set-up, pyFAI's sparse matrix
  for a 1M detector, is built at each update), the rewrite of their parts
  with the point spliced in (read back and written again: every pattern is
  copied, so it grows with N) and the store rewrite (``assemble_run``,
  which copies every pattern too);
* a full recompute of the N + appends points, for comparison.

Goal (issue 10): the incremental update does not grow with N beyond the
whole-series fits and the store rewrite.

Run it on purpose, not in the test suite::

    python benchmarks/bench_watch.py --points 50 200
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_integrate import DETECTORS, make_frames  # noqa: E402
from bench_scale import write_run  # noqa: E402

from dacpipe.cli.watch import Watcher  # noqa: E402
from dacpipe.io.config import load_config  # noqa: E402
from dacpipe.io.sheet import read_sheet  # noqa: E402
from dacpipe.run.config import run_config  # noqa: E402
from dacpipe.run.runner import assemble_run, stage_context  # noqa: E402
from dacpipe.run.layout import part_path  # noqa: E402
from dacpipe.run.stages import stage_function  # noqa: E402
from dacpipe.run.store import read_result, splice_results, write_part  # noqa: E402


def watcher_for(folder: Path, n_points: int, appends: int) -> tuple[Watcher, list[str]]:
    """A run of ``n_points + appends`` frames with ruby spectra whose sheet names
    the first ``n_points``; the rows to append one by one."""
    shape, suffix = DETECTORS["pilatus1m"]
    poni, frames = make_frames(folder, shape, suffix, n_points + appends)
    config_file = write_run(folder, poni, frames, chunk_points=500)
    data = json.loads(config_file.read_text())
    data["results_dir"] = str(folder / "results")
    config_file.write_text(json.dumps(data))
    rows = (folder / "points.tsv").read_text().splitlines()
    (folder / "points.tsv").write_text("\n".join(rows[:1 + n_points]) + "\n")
    config = load_config([config_file])
    watcher = Watcher(config, "scale", folder, settle=0.0, echo=lambda line: None)
    return watcher, rows[1 + n_points:]


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def measure(n_points: int, appends: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="dacpipe-watch-") as tmp:
        folder = Path(tmp)
        watcher, later = watcher_for(folder, n_points, appends)
        out = {"first": timed(lambda: _cycle(watcher))}
        sheet = folder / "points.tsv"
        each, actions = [], None
        for row in later:
            with sheet.open("a") as f:
                f.write(row + "\n")
            each.append(timed(lambda: _cycle(watcher)))
            actions = {stage: f"{u.action} {u.computed}" for stage, u in watcher.last_update.items()}
        out["append"] = statistics.median(each)
        out["actions"] = actions
        config = copy.deepcopy(watcher.config)
        config["runs"]["scale"]["sheet"] = str(watcher.points_file)
        out["store"] = timed(lambda: assemble_run(config, "scale"))
        sheet = read_sheet(watcher.points_file)
        last = dataclasses.replace(sheet, points=sheet.points[-1:])
        run = run_config(config, "scale")
        out["one point"] = sum(timed(lambda: stage_function(stage, run)(stage_context(config, "scale", stage, last,
                                                                                      points=last.point_ids)))
                               for stage in ("pressure", "xrd"))

        def rewrite(stage):
            part = part_path(config, "scale", stage)
            write_part(folder / "rewritten.h5", "scale",
                       splice_results(read_result(part, "scale"), None, sheet.point_ids))
        out["parts"] = sum(timed(lambda: rewrite(stage)) for stage in ("pressure", "xrd"))
        watcher.run_state, watcher.last_signature = None, None
        out["full"] = timed(lambda: _cycle(watcher))
        return out


def _cycle(watcher: Watcher) -> None:
    report = watcher.cycle()
    if not report.updated:
        raise RuntimeError(f"no update: {report}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--appends", type=int, default=3, help="points appended one by one (median reported)")
    args = parser.parse_args()
    logging.getLogger("dacpipe").setLevel(logging.ERROR)
    print(f"{os.cpu_count()} cores; Pilatus 1M frames (CBF), npt 3000, a ruby spectrum before and after each; "
          f"stages pressure, xrd; seconds")
    print(f"{'N':>5} {'first update (N)':>17} {'add one point':>14} {'of which: stages on it':>23} "
          f"{'parts':>6} {'store':>6} {'full recompute (N+' + str(args.appends) + ')':>22}   "
          "stages in the one-point update")
    for n in args.points:
        r = measure(n, args.appends)
        stages = ", ".join(f"{stage} {what}" for stage, what in r["actions"].items())
        print(f"{n:5d} {r['first']:17.2f} {r['append']:14.2f} {r['one point']:23.2f} {r['parts']:6.2f} "
              f"{r['store']:6.2f} "
              f"{r['full']:22.2f}   {stages}", flush=True)


if __name__ == "__main__":
    main()
