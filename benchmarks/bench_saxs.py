"""SAXS superlattice analysis: seconds per pattern, now and at an earlier commit, and how far the results moved.

Times :func:`dacpipe.saxs.superlattice.analyse_pattern` (survey: window
fits, form-factor model, free peaks, indexing, refinement from the lattice;
then the lattice fit) on

* the data-sample patterns (``data-sample/nc_saxs``, 6 points), read from
  a result store given with ``--store`` (``results/nc_saxs.h5``), or
  integrated here by ``dacpipe run --runs nc_saxs`` in a temporary folder;
* points of the synthetic fcc series of
  :mod:`dacpipe.synth.superlattice_series` (bins of 2e-3 1/A, as the tests;
  ``--points``, default the first, middle and last of 13), and of its
  variant on ``S = 1`` (no correlation hole);

as the working tree has it ("after") and, with ``--before REV``, as commit
``REV`` had it ("before"; the module is loaded from git without touching
the checkout), the calls interleaved so that other load on the machine
weighs on both alike. Prints the median wall and CPU seconds per pattern,
and per pattern how far ``q1`` and the Scherrer length moved between the
two versions in units of their standard errors.

One core: OMP/BLAS threads are set to 1 before numpy is imported (the
analysis runs on one BLAS thread anyway)::

    python benchmarks/bench_saxs.py --before 3173ed9 --repeat 3
    python benchmarks/bench_saxs.py --store results/nc_saxs.h5 --points 0 3 6 9 12
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from dacpipe.saxs import superlattice as after  # noqa: E402
from dacpipe.synth.superlattice_series import series  # noqa: E402
from revisions import module_at  # noqa: E402  (beside this script)

ROOT = Path(__file__).resolve().parents[1]
RUN = "nc_saxs"


def sample_patterns(store: Path | None) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float, dict]]:
    """(name, q, I, sigma, wavelength, settings) of every data-sample SAXS point."""
    if store is None:
        folder = Path(tempfile.mkdtemp(prefix="bench_saxs_"))
        text = (ROOT / "config" / "config.yaml").read_text().replace("data-sample/", f"{ROOT}/data-sample/")
        config = folder / "config.yaml"
        config.write_text(text.replace("results_dir: results", f"results_dir: {folder / 'results'}"))
        print(f"integrating data-sample/{RUN} (dacpipe run --runs {RUN}) in {folder} ...", flush=True)
        subprocess.run([sys.executable, "-c", "import sys; from dacpipe.cli import main; sys.exit(main(sys.argv[1:]))",
                        "run", "--configfile", str(config), "--runs", RUN], check=True, capture_output=True)
        store = folder / "results" / f"{RUN}.h5"
    with h5py.File(store) as h5:
        group = h5[f"{RUN}/saxs"]
        q, intensity, sigma = group["q"][()], group["I"][()], group["I_errors"][()]
        wavelength = float(group.attrs["wavelength_A"])
    settings = {"scherrer_k": 0.94}  # as tests/test_superlattice.py: the generator's K
    return [(f"sample p{i + 1:03d}", q, intensity[i], sigma[i], wavelength, settings) for i in range(len(intensity))]


def synthetic_patterns(points) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float, dict]]:
    out = []
    for label, options in (("fcc", {}), ("fcc S=1", {"decoupling": False, "n_points": 7})):
        s = series(bin_A=2e-3, **options)
        for i in points:
            if i < len(s.points):
                p = s.points[i]
                out.append((f"{label} {i:02d}", p.q_A, p.intensity, p.sigma, 1.0, {}))
    return out


def timed(module, pattern):
    """(wall s, CPU s, result) of one analysis."""
    _, q, intensity, sigma, wavelength, settings = pattern
    config = module.SuperlatticeSettings.from_config(settings)
    wall, cpu = time.perf_counter(), time.process_time()
    result = module.analyse_pattern(q, intensity, sigma, wavelength, config)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def moved(new, old) -> str:
    """How far q1 and the Scherrer length moved, in units of the new errors."""
    if new.order != old.order:
        return f"order {old.order} -> {new.order}"
    if not (math.isfinite(new.q1_A) and math.isfinite(old.q1_A)):
        return "no q1 in either" if not (math.isfinite(new.q1_A) or math.isfinite(old.q1_A)) else "q1 lost/gained"
    dq = (new.q1_A - old.q1_A) / new.q1_err_A
    ds = (new.scherrer_nm - old.scherrer_nm) / new.scherrer_err_nm if math.isfinite(new.scherrer_err_nm) else math.nan
    de = new.q1_err_A / old.q1_err_A - 1.0
    return f"dq1 {dq:+.3f} sigma, q1_err {de:+.1%}, dScherrer {ds:+.3f} sigma, peaks {len(old.peaks)}->{len(new.peaks)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, help=f"a result store holding {RUN}/saxs (default: integrate here)")
    parser.add_argument("--before", metavar="REV", help="also time src/dacpipe/saxs/superlattice.py at this commit")
    parser.add_argument("--points", type=int, nargs="+", default=[0, 6, 12], help="synthetic series points")
    parser.add_argument("--repeat", type=int, default=1, help="analyses of each pattern per version")
    parser.add_argument("--no-sample", action="store_true", help="synthetic patterns only")
    args = parser.parse_args()

    versions = {"after": after}
    if args.before:
        versions = {"before": module_at(args.before, "src/dacpipe/saxs/superlattice.py", "dacpipe.saxs"), **versions}
    patterns = ([] if args.no_sample else sample_patterns(args.store)) + synthetic_patterns(args.points)
    times = {name: {"sample": [], "synthetic": []} for name in versions}
    cpu = {name: {"sample": [], "synthetic": []} for name in versions}
    print(f"{'pattern':<14}" + "".join(f"{name + ' wall/cpu s':>22}" for name in versions) + "  change")
    for pattern in patterns:
        kind = "sample" if pattern[0].startswith("sample") else "synthetic"
        row, results = {}, {}
        for _ in range(args.repeat):
            for name, module in versions.items():  # interleaved
                wall, used, result = timed(module, pattern)
                row.setdefault(name, []).append((wall, used))
                results[name] = result
        line = f"{pattern[0]:<14}"
        for name in versions:
            wall = statistics.median(w for w, _ in row[name])
            used = statistics.median(c for _, c in row[name])
            times[name][kind].append(wall)
            cpu[name][kind].append(used)
            line += f"{wall:>14.2f} /{used:>6.2f}"
        if "before" in results:
            line += "  " + moved(results["after"], results["before"])
        else:
            r = results["after"]
            line += f"  {r.order} q1 {r.q1_A:.6f} +- {r.q1_err_A:.2e}"
        print(line, flush=True)
    print("\nmedian seconds per pattern (wall / CPU), one BLAS thread:")
    for kind in ("sample", "synthetic"):
        cells = [f"{name} {statistics.median(times[name][kind]):.2f} / {statistics.median(cpu[name][kind]):.2f}"
                 for name in versions if times[name][kind]]
        if cells:
            print(f"  {kind:<10} " + "   ".join(cells))
    if "before" in versions:
        for kind in ("sample", "synthetic"):
            if times["after"][kind]:
                ratio = statistics.median(np.array(cpu["before"][kind]) / np.array(cpu["after"][kind]))
                print(f"  {kind:<10} speed-up (median of per-pattern CPU ratios): {ratio:.1f}x")


if __name__ == "__main__":
    main()
