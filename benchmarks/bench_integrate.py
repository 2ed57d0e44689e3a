"""Integration speed: dacpipe's stage and workflow against a bare fabio + pyFAI loop.

For each detector size (Pilatus 1M, 1043 x 981, CBF; a 2048 x 2048 flat
panel, EDF) and K frames, prints frames per second of

(a) a bare loop: ``fabio.open(path).data`` then ``integrate1d`` with the same
    method as the stage (the configured one, but whole pixels under sigma
    clipping and the spot search, full splitting under the median filter),
    on an integrator built once (the fastest plain use of pyFAI);
(b) dacpipe's integration stage (``dacpipe.integration.stage.run``) on the
    same frames;
(c) the whole Snakemake workflow, sheet to result store, in a fresh folder
    (start-up, DAG, the pressure, integration and store jobs), and its fixed
    cost: the same workflow on a run of one frame;

and the peak memory of (b) at K/4 and K frames, each in a fresh process.
Goals (issue 3): (b) >= 0.9 (a); (c) >= 0.8 (a) at 200 frames; memory flat.
Issue 12: (b) >= 0.9 (a) with the default spot rejection (``spots``: each
frame searched for diamond spots, which are masked), which (a) does not do.

Each frame holds powder rings and four diamond spots (compact Gaussians 100x
the ring), so the spot search masks something in every frame. The machine
may be shared: ``--repeat N`` runs (a) and (b) N times, interleaved, and
prints each pair and the median ratios:

* b/a, wall clock: what a user sees. The stage reads, checksums and
  searches the next frame in a thread while pyFAI integrates this one, so
  it gains from a free core and loses when other processes take it;
* b/a after the first frame: the stage's set-up and first sparse matrix
  (taken from a one-frame run) left out, as the bare loop's timing leaves
  out its own first call, which does the same work (pyFAI's arrays and
  sparse matrix);
* a/b in CPU time per frame (all threads, the stage's reader included):
  the ratio on a machine with no core to spare, and the figure that a
  shared machine's load disturbs least; "steady" without the set-up of
  either side.

On a shared machine run it with ``OMP_NUM_THREADS=1``, so that pyFAI's
OpenMP threads in (a) and (b) do not depend on how many cores other
processes leave free.

Run it on purpose, not in the test suite::

    python benchmarks/bench_integrate.py --frames 200
    python benchmarks/bench_integrate.py --frames 200 --detectors pilatus1m --no-workflow --repeat 3
    OMP_NUM_THREADS=1 python benchmarks/bench_integrate.py --frames 200 --detectors pilatus1m --no-workflow --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import fabio
import numpy as np
from pyFAI.detectors import Detector
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

METHOD = ("bbox", "csr", "cython")
NPT = 3000
DETECTORS = {"pilatus1m": ((1043, 981), ".cbf"), "2048": ((2048, 2048), ".edf")}


def make_frames(folder: Path, shape: tuple[int, int], suffix: str, n_frames: int) -> tuple[Path, list[Path]]:
    """A PONI file and ``n_frames`` distinct noisy ring images."""
    detector = Detector(pixel1=172e-6, pixel2=172e-6, max_shape=shape)
    ai = AzimuthalIntegrator(dist=0.2, poni1=shape[0] * 172e-6 / 2.1, poni2=shape[1] * 172e-6 / 1.9,
                             detector=detector, wavelength=0.4e-10)
    poni = folder / "geometry.poni"
    ai.save(str(poni))
    tth = np.linspace(0, 40, 4000)
    profile = 20 + sum(500 * np.exp(-0.5 * ((tth - c) / 0.05) ** 2) for c in np.arange(3, 38, 2.7))
    base = ai.calcfrom1d(tth, profile, shape=shape, dim1_unit="2th_deg")
    rng = np.random.default_rng(0)
    rows, cols = np.indices(shape)
    # Eight distinct frames, copied: distinct files without hours of writing.
    templates = []
    for i in range(min(8, n_frames)):
        path = folder / f"template_{i}{suffix}"
        spots = sum(50000.0 * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * 1.3**2))
                    for r, c in rng.uniform(50, np.array(shape) - 50, size=(4, 2)))
        data = rng.poisson(base + spots).astype(np.int32)
        image = fabio.cbfimage.CbfImage(data=data) if suffix == ".cbf" else fabio.edfimage.EdfImage(data=data)
        image.write(str(path))
        templates.append(path)
    frames = []
    for i in range(n_frames):
        path = folder / f"frame_{i:05d}{suffix}"
        shutil.copyfile(templates[i % len(templates)], path)
        frames.append(path)
    return poni, frames


def stage_method(poni: Path, rejection: str) -> tuple[str, str, str]:
    """The pyFAI method dacpipe's stage integrates with under ``rejection``
    (sigma clipping and the spot search integrate whole pixels, the median
    filter fully split ones): the bare loop uses the same, like with like."""
    from dacpipe.integration.integrator import FrameIntegrator, IntegrationSettings

    settings = IntegrationSettings.from_config({"poni": str(poni), "unit": "q_A^-1", "npt": NPT,
                                                "method": list(METHOD), "rejection": {"method": rejection}})
    return (FrameIntegrator(settings).split(),) + METHOD[1:]


def bare_loop(poni: Path, frames: list[Path], method: tuple[str, str, str] = METHOD) -> dict:
    """Frames per second and CPU milliseconds per frame of fabio + pyFAI, nothing else
    (the set-up, the integrator and its first call, timed apart: ``setup_cpu_ms``)."""
    cpu = time.process_time()
    ai = AzimuthalIntegrator()
    ai.load(str(poni))
    ai.integrate1d(fabio.open(str(frames[0])).data, NPT, unit="q_A^-1", method=method,  # the CSR matrix
                   correctSolidAngle=True, polarization_factor=0.99, error_model="poisson")
    setup_cpu_ms = 1e3 * (time.process_time() - cpu)
    start, cpu = time.perf_counter(), time.process_time()
    for path in frames:
        data = fabio.open(str(path)).data
        ai.integrate1d(data, NPT, unit="q_A^-1", method=method, correctSolidAngle=True,
                       polarization_factor=0.99, error_model="poisson")
    return {"fps": len(frames) / (time.perf_counter() - start),
            "cpu_ms": 1e3 * (time.process_time() - cpu) / len(frames), "setup_cpu_ms": setup_cpu_ms}


# The bare loop as a program of its own, as a user would write and run it:
# the interpreter's start, fabio's and pyFAI's imports, the integrator's
# set-up and the loop. Argument: a file listing the PONI file, then the frames.
BARE_PROGRAM = textwrap.dedent("""
    import sys, time
    start = time.perf_counter()
    import fabio
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator
    poni, *frames = open(sys.argv[1]).read().split()
    method = tuple(sys.argv[2].split(","))
    ai = AzimuthalIntegrator()
    ai.load(poni)
    loop = None
    for path in frames:
        data = fabio.open(path).data
        ai.integrate1d(data, int(sys.argv[3]), unit="q_A^-1", method=method, correctSolidAngle=True,
                       polarization_factor=0.99, error_model="poisson")
        loop = time.perf_counter() if loop is None else loop   # after the first frame: the CSR matrix built
    end = time.perf_counter()
    print(start, loop, end, len(frames))
""")


def bare_program(poni: Path, frames: list[Path], method: tuple[str, str, str] = METHOD) -> dict:
    """Wall seconds of the bare loop run as a program (``BARE_PROGRAM``): ``wall_s``
    from the process's start to its end, as a workflow's wall time is counted;
    ``setup_s`` until the first frame is integrated (interpreter, imports,
    integrator, the CSR matrix); ``loop_fps`` of the frames after it."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(map(str, [poni, *frames])))
    try:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", BARE_PROGRAM, listing.name, ",".join(method), str(NPT)],
                             capture_output=True, text=True, check=True).stdout
        wall = time.perf_counter() - t0
    finally:
        os.unlink(listing.name)
    start, loop, end, n = out.split()
    start, loop, end = float(start), float(loop), float(end)
    return {"wall_s": wall, "setup_s": wall - (end - loop), "loop_fps": (int(n) - 1) / (end - loop)}


def write_run(folder: Path, poni: Path, frames: list[Path], rejection: str, poni_convention: str = "pyfai") -> Path:
    folder.mkdir(exist_ok=True)
    sheet = folder / "points.tsv"
    lines = ["point\txrd\tpressure_GPa"] + [f"p{i:05d}\t{f}\t{0.1 * i:.1f}" for i, f in enumerate(frames)]
    sheet.write_text("\n".join(lines) + "\n")
    config = folder / "config.json"
    config.write_text(json.dumps({"results_dir": str(folder / "results"), "runs": {"bench": {
        "sheet": str(sheet), "pressure": {"gauge": "sheet"},
        "xrd": {"poni": str(poni), "poni_convention": poni_convention, "npt": NPT, "unit": "q_A^-1",
                "method": list(METHOD), "rejection": {"method": rejection}}}}}))
    return config


STAGE_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    from dacpipe.core.results import StageContext
    from dacpipe.integration.stage import run as integration_stage
    from dacpipe.io.config import validate_config
    from dacpipe.io.sheet import read_sheet
    config = validate_config(json.load(open(sys.argv[1])))
    run = config["runs"]["bench"]
    sheet = read_sheet(run["sheet"])
    n = int(sys.argv[2])
    sheet = type(sheet)(sheet.path, sheet.columns, sheet.points[:n])
    start, cpu = time.perf_counter(), time.process_time()
    result = integration_stage(StageContext(run_id="bench", stage="xrd", sheet=sheet, run={"xrd": run["xrd"]}))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    spots = result.datasets.get("spot_pixels")
    print(json.dumps({"fps": n / elapsed, "cpu_ms": 1e3 * cpu / n,
                      "peak_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "spot_pixels": None if spots is None else float(spots.mean())}))
""")


def dacpipe_stage(config: Path, n_frames: int) -> dict:
    """Frames per second and peak memory of the stage, in a fresh process.

    The timing excludes the integrator set-up (read once per job), as the
    bare loop's does, but includes the first frame's matrix build.
    """
    out = subprocess.run([sys.executable, "-c", STAGE_SCRIPT, str(config), str(n_frames)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_project(project: Path, config: Path) -> Path:
    """A fresh project folder: the workflow with ``config`` as its config."""
    root = Path(__file__).resolve().parents[1]
    project.mkdir()
    shutil.copy(root / "Snakefile", project)
    shutil.copytree(root / "workflow", project / "workflow")
    (project / "config").mkdir()
    shutil.copy(root / "config" / "schema.yaml", project / "config")
    (project / "config" / "config.yaml").write_text(config.read_text())  # JSON is YAML
    return project


def workflow(config: Path, folder: Path, n_frames: int) -> float:
    """Seconds for the whole workflow, sheet to store, in a fresh project folder."""
    project = make_project(folder / f"project_{n_frames}", config)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--quiet", "all"], cwd=project,
                   check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    parser.add_argument("--rejection", default="spots", choices=["spots", "none", "sigma-clip", "median"],
                        help="dacpipe's spot rejection for (b) and (c), default the stage's default; (a) never "
                             "rejects, so 'none' compares like with like")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run (a) and (b) this many times, interleaved, and report the median ratio")
    parser.add_argument("--bare-split", default="stage", choices=["stage", "no", "bbox", "full"],
                        help="pixel splitting of (a): 'stage' = the one the stage uses (like with like)")
    parser.add_argument("--also-none", action="store_true",
                        help="in every repeat also run (b) with rejection none: the rejection's own cost")
    parser.add_argument("--poni-convention", default="pyfai", choices=["pyfai", "dioptas-legacy"],
                        help="for (b) and (c): dioptas-legacy measures the cost of honouring a Dioptas < 0.7 "
                             "PONI file (pyFAI orientation 2, or a flipped copy of every frame)")
    parser.add_argument("--no-workflow", action="store_true", help="skip (c), the Snakemake runs")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, {args.frames} frames, npt {NPT}, method {METHOD}, "
          f"dacpipe rejection {args.rejection}, PONI convention {args.poni_convention}")
    print("frames/s (wall clock); CPU ms per frame in brackets; spot px = mean pixels masked per frame")
    print(f"{'detector':<10} {'(a) bare':>16} {'(b) stage':>16} {'b/a':>5} {'spot px':>8} {'(c) workflow':>13} "
          f"{'c/a':>5} {'fixed s':>8} {'mem K/4':>8} {'mem K':>8}")
    for name in args.detectors:
        shape, suffix = DETECTORS[name]
        with tempfile.TemporaryDirectory(prefix="dacpipe-bench-") as tmp:
            folder = Path(tmp)
            poni, frames = make_frames(folder, shape, suffix, args.frames)
            config = write_run(folder, poni, frames, args.rejection, args.poni_convention)
            method = stage_method(poni, args.rejection)
            bare_method = method if args.bare_split == "stage" else (args.bare_split,) + METHOD[1:]
            print(f"{name}: the stage integrates with {method} under rejection {args.rejection}; "
                  f"(a) with {bare_method}", flush=True)
            plain = write_run(folder / "none", poni, frames, "none", args.poni_convention)
            small = dacpipe_stage(config, max(1, args.frames // 4))
            ratios, plain_ratios, steady_ratios, cpu_ratios, steady_cpu_ratios = [], [], [], [], []
            for repeat in range(args.repeat):  # interleaved: a load that comes and goes hits both
                bare = bare_loop(poni, frames, bare_method)
                full = dacpipe_stage(config, args.frames)
                ratios.append(full["fps"] / bare["fps"])
                # The stage's set-up (geometry, masks, the spot search's arrays,
                # pyFAI's first sparse matrix), which the bare loop's timing
                # leaves out: the stage on one frame; the frames after it.
                one = dacpipe_stage(config, 1)
                steady = (args.frames - 1) / (args.frames / full["fps"] - 1 / one["fps"])
                steady_ratios.append(steady / bare["fps"])
                # CPU: the one-frame run is the stage's set-up and first frame;
                # the bare loop's set-up is its first call.
                steady_cpu = (args.frames * full["cpu_ms"] - one["cpu_ms"]) / (args.frames - 1)
                cpu_ratios.append((bare["cpu_ms"] + bare["setup_cpu_ms"] / args.frames) / full["cpu_ms"])
                steady_cpu_ratios.append(bare["cpu_ms"] / steady_cpu)
                print(f"{name:<10} {'':16} {steady:6.1f} [{steady_cpu:5.1f} ms] {steady_ratios[-1]:5.2f}  after the "
                      f"first frame (set-up and first frame {1 / one['fps']:.2f} s, {one['cpu_ms'] / 1e3:.2f} s CPU; "
                      f"the bare loop's {bare['setup_cpu_ms'] / 1e3:.2f} s CPU); CPU a/b {cpu_ratios[-1]:.2f}, "
                      f"steady {steady_cpu_ratios[-1]:.2f}", flush=True)
                if args.also_none:
                    none = dacpipe_stage(plain, args.frames)
                    plain_ratios.append(none["fps"] / bare["fps"])
                    print(f"{name:<10} {'':16} {none['fps']:6.1f} [{none['cpu_ms']:5.1f} ms] "
                          f"{plain_ratios[-1]:5.2f}  rejection none", flush=True)
                a, b = bare["fps"], full["fps"]
                spot_px = float("nan") if full["spot_pixels"] is None else full["spot_pixels"]
                if repeat < args.repeat - 1:
                    print(f"{name:<10} {a:6.1f} [{bare['cpu_ms']:5.1f} ms] {b:6.1f} [{full['cpu_ms']:5.1f} ms] "
                          f"{b / a:5.2f} {spot_px:8.0f}", flush=True)
            if args.no_workflow:
                c = fixed = float("nan")
            else:
                c = args.frames / workflow(config, folder, args.frames)
                one = write_run(folder / "one", poni, frames[:1], args.rejection, args.poni_convention)
                fixed = workflow(one, folder / "one", 1)
            print(f"{name:<10} {a:6.1f} [{bare['cpu_ms']:5.1f} ms] {b:6.1f} [{full['cpu_ms']:5.1f} ms] "
                  f"{b / a:5.2f} {spot_px:8.0f} {c:13.1f} {c / a:5.2f} {fixed:8.1f} "
                  f"{small['peak_MB']:7.0f}M {full['peak_MB']:7.0f}M", flush=True)
            if args.repeat > 1:
                print(f"{name:<10} median b/a over {args.repeat} interleaved runs: {float(np.median(ratios)):.2f} "
                      f"(min {min(ratios):.2f}, max {max(ratios):.2f})", flush=True)
            if args.repeat > 1:
                print(f"{name:<10} after the first frame: median b/a {float(np.median(steady_ratios)):.2f} "
                      f"(min {min(steady_ratios):.2f}, max {max(steady_ratios):.2f})", flush=True)
            print(f"{name:<10} CPU time per frame: median a/b {float(np.median(cpu_ratios)):.2f} "
                  f"(min {min(cpu_ratios):.2f}, max {max(cpu_ratios):.2f}), both set-ups included; steady "
                  f"{float(np.median(steady_cpu_ratios)):.2f} (min {min(steady_cpu_ratios):.2f}, "
                  f"max {max(steady_cpu_ratios):.2f})", flush=True)
            if plain_ratios:
                print(f"{name:<10} with rejection none: median b/a {float(np.median(plain_ratios)):.2f} "
                      f"(min {min(plain_ratios):.2f}, max {max(plain_ratios):.2f})", flush=True)


if __name__ == "__main__":
    main()
