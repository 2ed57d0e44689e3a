"""The pipeline at scale: a 1,000-frame Pilatus-1M run with ruby spectra, through Snakemake.

Prints, for one run of K frames (Pilatus 1M, CBF) with a ruby spectrum
before and after each frame:

* the DAG build time (``snakemake -n``) and the no-op rerun time (after the
  full run), goals under 3 s each;
* the wall time of each stage run on its own through the CLI (pressure,
  integration, merge-free: one chunk of everything), for where time goes;
* frames per second of the whole workflow (sheet to store and figures)
  against a bare fabio + pyFAI loop on the same frames, goal >= 0.8;
* the integration stage's peak memory at K/4, K/2 and K frames, each in a
  fresh process, goal flat.

Run it on purpose, not in the test suite::

    python benchmarks/bench_scale.py --frames 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_integrate import (DETECTORS, METHOD, NPT, bare_loop, dacpipe_stage, make_frames,  # noqa: E402
                             make_project)

from dacpipe.synth.ruby import write_ruby_series  # noqa: E402



def write_run(folder: Path, poni: Path, frames: list[Path], chunk_points: int) -> Path:
    """Sheet (ruby before and after, one frame per point) and config of the run ``scale``."""
    pressures = np.linspace(0.1, 30.0, len(frames))
    ruby = write_ruby_series(folder, "scale", pressures, np.random.default_rng(1))
    rows = ["point\txrd\truby_before\truby_after"]
    for r, frame in zip(ruby, frames):
        rows.append(f"{r.point}\t{frame}\t{r.files['before']}\t{r.files.get('after', '')}")
    (folder / "points.tsv").write_text("\n".join(rows) + "\n")
    config = folder / "config.json"
    config.write_text(json.dumps({"results_dir": "results", "runs": {"scale": {
        "sheet": str(folder / "points.tsv"), "chunk_points": chunk_points,
        "pressure": {"gauge": "ruby", "scale": "mao1986-hydrostatic"},
        "xrd": {"poni": str(poni), "npt": NPT, "unit": "q_A^-1", "method": list(METHOD),
                "rejection": {"method": "none"}}}}}))
    return config


def timed(command: list[str], cwd: Path) -> float:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--chunk-points", type=int, default=500)
    args = parser.parse_args()
    k = args.frames
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "2", "--quiet"]
    dacpipe = [sys.executable, "-m", "dacpipe.cli"]
    with tempfile.TemporaryDirectory(prefix="dacpipe-scale-") as tmp:
        folder = Path(tmp)
        shape, suffix = DETECTORS["pilatus1m"]
        poni, frames = make_frames(folder, shape, suffix, k)
        config = write_run(folder, poni, frames, args.chunk_points)
        work = make_project(folder / "project", config)
        print(f"{os.cpu_count()} cores, {k} Pilatus-1M frames, {2 * k} ruby spectra, npt {NPT}, "
              f"method {METHOD}, chunk_points {args.chunk_points}")

        bare = bare_loop(poni, frames)
        dag = timed([*snakemake, "-n"], work)
        whole = timed(snakemake, work)
        noop = timed(snakemake, work)
        print(f"DAG build (snakemake -n)      {dag:7.2f} s   goal < 3")
        print(f"whole workflow                {whole:7.2f} s   {k / whole:6.1f} frames/s")
        print(f"no-op rerun                   {noop:7.2f} s   goal < 3")
        print(f"bare fabio + pyFAI loop       {k / bare:7.2f} s   {bare:6.1f} frames/s")
        print(f"workflow / bare               {k / whole / bare:7.2f}     goal >= 0.8")

        by_hand = folder / "by_hand"
        by_hand.mkdir()
        cfg = ["--configfile", str(config)]
        for stage in ("pressure", "xrd"):
            seconds = timed([*dacpipe, "stage", stage, "--run", "scale", *cfg], by_hand)
            print(f"stage {stage:<23} {seconds:7.2f} s   (one process, all points)")
        seconds = timed([*dacpipe, "assemble", "--run", "scale", *cfg], by_hand)
        print(f"store (assemble)              {seconds:7.2f} s")
        seconds = timed([*dacpipe, "figure", "waterfall", "--store", "results/scale.h5", "--out", "w.png"],
                        by_hand)
        print(f"figure waterfall              {seconds:7.2f} s")

        print("integration stage peak memory:", end="")
        for n in (k // 4, k // 2, k):
            result = dacpipe_stage(_bench_config(config, folder), n)
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
