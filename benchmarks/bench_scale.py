"""The pipeline at scale: a 1,000-frame Pilatus-1M run with ruby spectra, through Snakemake.

Prints, for one run of K frames (Pilatus 1M, CBF) with a ruby spectrum
before and after each frame. With ``--phases`` (the default) the frames are
the powder patterns of an HgTe nanocrystal series through zinc blende ->
cinnabar -> rock salt (the recipe of
:func:`dacpipe.synth.powder.hgte_coexistence_series`, K points from 0.3 to
14 GPa at the ruby's exposure pressures), each spread over the Pilatus-1M
geometry with pyFAI's ``calcfrom1d`` (solid angle, polarization 0.99),
Poisson noise and the module gaps at -1, every frame distinct; the run names
the three HgTe phases, so the ``index`` (phases) and ``eos`` jobs run too
(issue 11 item 5). ``--no-phases`` gives the plain ring frames of
bench_integrate (eight templates copied) and the integration-only workflow.

* the DAG build time (``snakemake -n``) and the no-op rerun time (after the
  full run), goals under 3 s each;
* the wall time of each stage run on its own through the CLI (pressure,
  integration, merge-free: one chunk of everything), for where time goes;
* the wall time of the whole workflow (sheet to store and figures, from
  Snakemake's start) against a bare fabio + pyFAI program on the same frames
  (from its start: interpreter, imports, integrator set-up, the loop), run
  before and after the workflow, goal >= 0.8 without indexing, >= 0.5 with
  it (issue 11); and against the bare loop alone, its set-up left out;
* each workflow job's own wall time (Snakemake's metadata: start and end of
  the job that made each output), the index job's per frame;
* with ``--phases``, the phases found along the series against its truth:
  presence per phase (missed / spurious points), fraction errors, the
  transitions the stage reports;
* the integration stage's peak memory at K/4, K/2 and K frames, each in a
  fresh process, goal flat (``--no-extras`` skips it and the by-hand stage
  runs).

Run it on purpose, not in the test suite::

    python benchmarks/bench_scale.py --frames 1000
"""

from __future__ import annotations

import argparse
import base64
import compileall
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import fabio
import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_integrate import (
    DETECTORS,
    METHOD,
    NPT,
    bare_program,
    dacpipe_stage,
    make_frames,
    make_project,
)

from dacpipe.synth.detector import (
    PILATUS_DUMMY,
    DetectorGeometry,
    cached_integrator,
    write_poni,
)
from dacpipe.synth.powder import PointTruth, Series, expected_pattern
from dacpipe.synth.ruby import write_ruby_series
from dacpipe.synth.xrd import q_of_two_theta

PACKAGE_DIR = Path(sys.modules["dacpipe"].__file__).parent   # dacpipe's own modules

HGTE = ("HgTe-zb", "HgTe-cinnabar", "HgTe-rs")
# hgte_coexistence_series's recipe: sizes, zinc blende -> cinnabar between 2.4 and 3.6 GPa,
# cinnabar -> rock salt between 8.0 and 12.5 GPa (long coexistence)
SIZES_NM = {"HgTe-zb": 9.0, "HgTe-cinnabar": 7.0, "HgTe-rs": 6.0}
# Pilatus 1M (1043 x 981, 172 um) 200 mm behind the sample at 30 keV, beam off centre as in bench_integrate
PILATUS_1M = DetectorGeometry(shape=(1043, 981), pixel_m=172e-6, distance_m=0.2, poni1_m=1043 * 172e-6 / 2.1,
                              poni2_m=981 * 172e-6 / 1.9, rot1_rad=0.0, rot2_rad=0.0, rot3_rad=0.0,
                              wavelength_A=0.4133)
POLARIZATION = 0.99
GRID_STEP_DEG = 0.005   # calcfrom1d's interpolation grid: >= 50 steps across the narrowest line (0.25 deg)


def _ramp(p: float, start: float, end: float) -> float:
    return float(np.clip((p - start) / (end - start), 0.0, 1.0))


def hgte_series(pressures_GPa) -> Series:
    """hgte_coexistence_series's truth at the given pressures."""
    points = []
    for p in pressures_GPa:
        zb = 1.0 - _ramp(p, 2.4, 3.6)
        rs = _ramp(p, 8.0, 12.5)
        points.append(PointTruth(float(p), {"HgTe-zb": zb, "HgTe-cinnabar": 1.0 - zb - rs, "HgTe-rs": rs},
                                 SIZES_NM))
    return Series("scale", HGTE, None, tuple(points), wavelength_A=PILATUS_1M.wavelength_A, npt=NPT)


def gap_mask(shape: tuple[int, int]) -> np.ndarray:
    """A Pilatus 1M's module gaps: 2 x 5 modules of 487 x 195 pixels, 7-pixel and 17-pixel gaps."""
    gaps = np.zeros(shape, dtype=bool)
    gaps[:, 487:494] = True
    for k in range(1, 5):
        gaps[k * 212 - 17:k * 212, :] = True
    return gaps


def make_powder_frames(folder: Path, series: Series) -> tuple[Path, list[Path], float]:
    """A PONI file and one distinct CBF frame per point of ``series``; seconds taken."""
    start = time.perf_counter()
    geometry = PILATUS_1M
    poni = folder / "xrd.poni"
    write_poni(poni, geometry)
    ai = cached_integrator(geometry)
    tth_max = float(ai.center_array(geometry.shape, unit="2th_deg", scale=True).max())
    grid = np.arange(0.0, tth_max + 0.5, GRID_STEP_DEG)
    q_grid = q_of_two_theta(grid, geometry.wavelength_A)
    gaps = gap_mask(geometry.shape)
    scale = series.scale()
    rng = np.random.default_rng(7)
    frames = []
    for i, truth in enumerate(series.points):
        pattern = expected_pattern(q_grid, geometry.wavelength_A, truth, scale=scale)
        expected = ai.calcfrom1d(grid, pattern, shape=geometry.shape, dim1_unit="2th_deg", correctSolidAngle=True,
                                 polarization_factor=POLARIZATION)
        counts = rng.poisson(np.maximum(expected, 0.0)).astype(np.int32)
        counts[gaps] = PILATUS_DUMMY
        path = folder / f"frame_{i:05d}.cbf"
        fabio.cbfimage.CbfImage(data=counts).write(str(path))
        frames.append(path)
    return poni, frames, time.perf_counter() - start


def write_run(folder: Path, poni: Path, frames: list[Path], chunk_points: int, ruby, phases: bool) -> Path:
    """Sheet (ruby before and after, one frame per point) and config of the run ``scale``;
    with ``phases`` the run names the HgTe phases (index and EOS jobs)."""
    rows = ["point\txrd\truby_before\truby_after"]
    for r, frame in zip(ruby, frames):
        rows.append(f"{r.point}\t{frame}\t{r.files['before']}\t{r.files.get('after', '')}")
    (folder / "points.tsv").write_text("\n".join(rows) + "\n")
    config = folder / "config.json"
    run = {"sheet": str(folder / "points.tsv"), "chunk_points": chunk_points,
           "pressure": {"gauge": "ruby", "scale": "mao1986-hydrostatic"},
           "xrd": {"poni": str(poni), "npt": NPT, "unit": "q_A^-1", "method": list(METHOD),
                   "polarization_factor": POLARIZATION, "rejection": {"method": "none"}}}
    if phases:
        run["phases"] = list(HGTE)
        run["eos"] = {"model": "bm3"}
    config.write_text(json.dumps({"results_dir": "results", "runs": {"scale": run}}))
    return config


def index_cpu(project: Path, series: Series) -> None:
    """The index stage's own work in one process, serially as its job does: CPU seconds per frame
    (wall time on a shared machine counts other processes too)."""
    out = project / "index_serial.json"
    subprocess.run([sys.executable, "-c", INDEX_CHUNK_SCRIPT, str(project / "results" / "scale" / "parts"), "0",
                    str(len(series.points)), str(out), json.dumps(list(series.sample_phases))], check=True)
    r = json.loads(out.read_text())
    print(f"index serially, one process: wall {r['seconds']:.1f} s, CPU {r['cpu']:.1f} s "
          f"({r['cpu'] / len(series.points):.3f} s per frame)")


def job_times(project: Path) -> dict[str, float]:
    """Wall seconds of each job of the last run, by output (Snakemake's metadata)."""
    out = {}
    for path in (project / ".snakemake" / "metadata").iterdir():
        try:
            meta = json.loads(path.read_text())
        except (ValueError, OSError):
            continue
        start, end = meta.get("starttime"), meta.get("endtime")
        if start is None or end is None:
            continue
        output = base64.b64decode(path.name.replace("@", "/")).decode() if not meta.get("output") else meta["output"]
        out[str(output)] = float(end) - float(start)
    return out


def check_phases(store: Path, series: Series) -> None:
    """The phases the stage found along the series against its truth."""
    truth = series.fractions()
    p_true = series.pressure_GPa
    with h5py.File(store, "r") as h5:
        group = _find_group(h5, "phases")
        p_meas = np.asarray(h5[_find_dataset(h5, "pressure_GPa")])
        status = [s.decode() if isinstance(s, bytes) else str(s) for s in group.get("status", [])] \
            if "status" in group else []
        print(f"pressure (ruby) vs truth: median |error| {np.nanmedian(np.abs(p_meas - p_true)):.3f} GPa")
        if status:
            failed = [s for s in status if s != "ok"]
            print(f"phases status: {len(status) - len(failed)} ok, {len(failed)} not" +
                  (f" (first: {failed[0]})" if failed else ""))
        for name in series.sample_phases:
            present = np.asarray(group[f"{name}/present"], bool)
            fraction = np.nan_to_num(np.asarray(group[f"{name}/fraction"], float))
            x = truth[name]
            missed = (x >= 0.05) & ~present
            spurious = (x == 0) & present
            weak = (x > 0) & (x < 0.05)
            err = fraction - x
            where = np.flatnonzero(present)
            span = f"{p_true[where[0]]:.2f}-{p_true[where[-1]]:.2f} GPa" if len(where) else "never"
            true_where = np.flatnonzero(x > 0)
            true_span = f"{p_true[true_where[0]]:.2f}-{p_true[true_where[-1]]:.2f} GPa"
            print(f"  {name:<14} found {present.sum():4d} points ({span}), truth {len(true_where):4d} ({true_span}); "
                  f"missed at x >= 5 %: {missed.sum()}, spurious at x = 0: {spurious.sum()}, "
                  f"found of {weak.sum()} with 0 < x < 5 %: {(present & weak).sum()}; "
                  f"fraction error RMS {np.sqrt(np.mean(err**2)):.3f}, max |err| {np.max(np.abs(err)):.3f}")
        if "peaks/unexplained_q_A" in group:
            q = np.asarray(group["peaks/unexplained_q_A"], float)
            rows = np.isfinite(q).any(axis=1)
            qs = q[np.isfinite(q)]
            print(f"  unexplained peaks: {len(qs)} at {rows.sum()} points; q < 1 1/A (below every HgTe line): "
                  f"{(qs < 1.0).sum()}, q >= 1: {(qs >= 1.0).sum()}"
                  + (f" (at q = {', '.join(f'{v:.3f}' for v in np.sort(qs[qs >= 1.0])[:8])} ...)"
                     if (qs >= 1.0).any() else ""))
        if "transitions" in group.parent:
            tr = group.parent["transitions"]
            columns = list(tr)
            n = len(tr[columns[0]]) if columns else 0
            print(f"  transitions reported: {n} (truth: zb -> cinnabar 2.4-3.6 GPa, cinnabar -> rs 8.0-12.5 GPa)")
            for i in range(min(n, 12)):
                row = []
                for c in columns:
                    v = tr[c][i]
                    v = v.decode() if isinstance(v, bytes) else v
                    row.append(f"{c}={v:.2f}" if isinstance(v, (float, np.floating)) else f"{c}={v}")
                print("    " + ", ".join(row))


INDEX_CHUNK_SCRIPT = textwrap.dedent("""
    import json, sys, time
    import h5py, numpy as np
    from dacpipe.xrd.indexing import IndexingSettings, index_series
    from dacpipe.xrd.library import get_phase
    from dacpipe.xrd.stage import sampled_q
    parts, first, end, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    names = json.loads(sys.argv[5])
    with h5py.File(parts + "/xrd.h5") as h:
        g = h["scale/xrd"]
        xrd = {k: g[k][()] for k in ("q", "pixel_mean_q_A")}
        q = sampled_q(xrd)
        intensity, sigma = g["I"][first:end], g["I_errors"][first:end]
        wavelength = float(g.attrs["wavelength_A"])
    with h5py.File(parts + "/pressure.h5") as h:
        pressure = h["scale/pressure/pressure_GPa"][first:end]
    settings = IndexingSettings.from_config({"phases": names})
    start, cpu = time.perf_counter(), time.process_time()
    results, reasons, _ = index_series(q, intensity, sigma, wavelength, pressure, {n: get_phase(n) for n in names},
                                       settings)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    present = {n: [bool(r is not None and r.phases[n].present) for r in results] for n in names}
    fraction = {n: [float(r.phases[n].fraction) if r is not None and r.phases[n].present else 0.0 for r in results]
                for n in names}
    json.dump({"seconds": seconds, "cpu": cpu, "present": present, "fraction": fraction}, open(out, "w"))
""")


def chunked_index(project: Path, series: Series, n_chunks: int) -> None:
    """The index stage's own work (index_series on the workflow's xrd and pressure parts) split
    into ``n_chunks`` chunks run at once, one process each, every chunk starting afresh from the
    library: wall time, and the phases found against the one serial job's and the truth."""
    parts = project / "results" / "scale" / "parts"
    k = len(series.points)
    bounds = np.linspace(0, k, n_chunks + 1).astype(int)
    names = list(series.sample_phases)
    start = time.perf_counter()
    procs = []
    for c in range(n_chunks):
        out = project / f"index_chunk{c}.json"
        procs.append((out, subprocess.Popen([sys.executable, "-c", INDEX_CHUNK_SCRIPT, str(parts), str(bounds[c]),
                                             str(bounds[c + 1]), str(out), json.dumps(names)])))
    for _, proc in procs:
        if proc.wait() != 0:
            raise RuntimeError("an index chunk failed")
    wall = time.perf_counter() - start
    chunks = [json.loads(out.read_text()) for out, _ in procs]
    per_chunk = ", ".join(f"{c['seconds']:.1f}" for c in chunks)
    cpu = sum(c["cpu"] for c in chunks)
    print(f"index in {n_chunks} chunks at once: wall {wall:.1f} s (with start-up and reading), "
          f"index_series per chunk {per_chunk} s "
          f"({sum(c['seconds'] for c in chunks) / k:.3f} s per frame), CPU {cpu:.1f} s ({cpu / k:.3f} s per frame; "
          f"the rest of the wall time is other processes' load)")
    truth = series.fractions()
    with h5py.File(project / "results" / "scale.h5", "r") as h5:
        group = _find_group(h5, "phases")
        for name in names:
            present = np.concatenate([c["present"][name] for c in chunks])
            fraction = np.concatenate([c["fraction"][name] for c in chunks])
            serial = np.asarray(group[f"{name}/present"], bool)
            serial_fraction = np.nan_to_num(np.asarray(group[f"{name}/fraction"], float))
            x = truth[name]
            print(f"  {name:<14} presence differs from the serial job at {(present != serial).sum()} points "
                  f"(chunk starts: {[int(b) for b in bounds[1:-1]]}), max |fraction - serial| "
                  f"{np.max(np.abs(fraction - serial_fraction)):.4f}; missed at x >= 5 %: "
                  f"{((x >= 0.05) & ~present).sum()}, spurious at x = 0: {((x == 0) & present).sum()}")


def _find_group(h5, name: str):
    found = []
    h5.visititems(lambda key, obj: found.append(key) if isinstance(obj, h5py.Group) and key.split("/")[-1] == name
                  else None)
    if not found:
        raise KeyError(f"no group {name!r} in the store")
    return h5[min(found, key=len)]


def _find_dataset(h5, name: str) -> str:
    found = []
    h5.visititems(lambda key, obj: found.append(key) if isinstance(obj, h5py.Dataset) and key.split("/")[-1] == name
                  else None)
    return min(found, key=len)


def timed(command: list[str], cwd: Path) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--chunk-points", type=int, default=500)
    parser.add_argument("--phases", action=argparse.BooleanOptionalAction, default=True,
                        help="frames of an HgTe series through its transitions, the run naming the three "
                             "phases (index and EOS jobs); --no-phases: bench_integrate's ring frames")
    parser.add_argument("--extras", action=argparse.BooleanOptionalAction, default=True,
                        help="also the stages by hand and the integration stage's peak memory")
    parser.add_argument("--index-chunks", type=int, default=2, metavar="N",
                        help="with --phases, also the index stage's work redone serially in one process and "
                             "split into N chunks run at once, CPU and wall time (0: not)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR (kept) instead of a temporary folder")
    args = parser.parse_args()
    k = args.frames
    # dacpipe's bytecode, as an installed package has it (pip compiles a wheel's
    # modules; an editable install writes it at the first import, unless
    # PYTHONDONTWRITEBYTECODE is set, as on some sandboxes): else every job
    # compiles the modules it imports again, ~65 ms of each job's start.
    compileall.compile_dir(PACKAGE_DIR, quiet=1)
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "2", "--quiet"]
    dacpipe = [sys.executable, "-m", "dacpipe"]
    with tempfile.TemporaryDirectory(prefix="dacpipe-scale-") as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        # ruby first: the frames show the sample at the exposure pressure (before and after's mean)
        ruby = write_ruby_series(folder, "scale", np.linspace(0.3, 14.0, k), np.random.default_rng(1))
        series = None
        if args.phases:
            series = hgte_series([r.exposure_pressure_GPa for r in ruby])
            poni, frames, made = make_powder_frames(folder, series)
            what = "HgTe series frames (zb -> cinnabar -> rs, 0.3-14 GPa)"
        else:
            start = time.perf_counter()
            shape, suffix = DETECTORS["pilatus1m"]
            poni, frames = make_frames(folder, shape, suffix, k)
            made = time.perf_counter() - start
            what = "ring frames"
        config = write_run(folder, poni, frames, args.chunk_points, ruby, args.phases)
        work = make_project(folder / "project", config)
        print(f"{os.cpu_count()} cores, {k} Pilatus-1M {what}, {2 * k} ruby spectra, npt {NPT}, "
              f"method {METHOD}, chunk_points {args.chunk_points}, phases {list(HGTE) if args.phases else None}")
        print(f"load average at start {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; "
              f"frames made in {made:.0f} s")

        # The bare loop (the workflow's method, rejection none) as a program, before and
        # after the workflow: a shared machine drifts by several per cent in a few minutes.
        before = bare_program(poni, frames)
        dag = timed([*snakemake, "-n"], work)
        whole = timed(snakemake, work)
        jobs = job_times(work)
        noop = timed(snakemake, work)
        after = bare_program(poni, frames)
        bare = 0.5 * (before["wall_s"] + after["wall_s"])
        loop = 0.5 * (k / before["loop_fps"] + k / after["loop_fps"])
        goal = 0.5 if args.phases else 0.8
        print(f"DAG build (snakemake -n)      {dag:7.2f} s   goal < 3")
        print(f"whole workflow                {whole:7.2f} s   {k / whole:6.1f} frames/s")
        print(f"no-op rerun                   {noop:7.2f} s   goal < 3")
        print(f"bare fabio + pyFAI program    {before['wall_s']:7.2f} s before, {after['wall_s']:.2f} s after the workflow "
              f"(of which start, imports, integrator {before['setup_s']:.1f} / {after['setup_s']:.1f} s)")
        print(f"workflow / bare (wall times)  {bare / whole:7.2f}     goal >= {goal}: the mean bare program against "
              f"the workflow, both from their start")
        print(f"workflow / bare loop alone    {loop / whole:7.2f}     the bare side without its start and set-up "
              f"({loop:.2f} s; the workflow pays its own)")
        print("jobs (Snakemake metadata, wall s):")
        for output, seconds in sorted(jobs.items(), key=lambda item: -item[1]):
            # the identification runs in chunks (parts/phases/chunkNNNN.h5), joined in parts/phases.h5
            extra = f"   {seconds / k:.3f} s per frame of the run" if "/parts/phases/" in output else ""
            print(f"  {seconds:8.2f}  {output}{extra}")
        print(f"load average at end {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
        log = work / "results" / "scale" / "logs" / "phases.log"
        if log.exists():
            lines = log.read_text().splitlines()
            print(f"phases.log ({len(lines)} lines), last: {lines[-3:] if lines else []}")
        if series is not None:
            check_phases(work / "results" / "scale.h5", series)
            if args.index_chunks:
                index_cpu(work, series)
                chunked_index(work, series, args.index_chunks)
        if not args.extras:
            return

        by_hand = folder / "by_hand"
        by_hand.mkdir()
        cfg = ["--configfile", str(config)]
        for stage in ("pressure", "xrd", *(("phases", "eos") if args.phases else ())):
            seconds = timed([*dacpipe, "stage", stage, "--run", "scale", *cfg], by_hand)
            print(f"stage {stage:<23} {seconds:7.2f} s   (one process, all points)")
        seconds = timed([*dacpipe, "assemble", "--run", "scale", *cfg], by_hand)
        print(f"store (assemble)              {seconds:7.2f} s")
        seconds = timed([*dacpipe, "figure", "waterfall", "--store", "results/scale.h5", "--out", "w.png"],
                        by_hand)
        print(f"figure waterfall              {seconds:7.2f} s")

        print("integration stage peak memory:", end="")
        for n in (k // 4, k // 2, k):
            result = dacpipe_stage(_bench_config(config, folder), max(n, 1))
            print(f"  {n} frames {result['peak_MB']:.0f} MB", end="", flush=True)
        print()


def _bench_config(config: Path, folder: Path) -> Path:
    """The run under the name bench_integrate's stage script reads."""
    data = json.loads(config.read_text())
    data["runs"] = {"bench": data["runs"]["scale"]}
    out = folder / "bench_config.json"
    out.write_text(json.dumps(data))
    return out


if __name__ == "__main__":
    main()
