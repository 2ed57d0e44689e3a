"""The structural stage's speed: seconds per 3000-bin pattern, three candidate phases, one core.

Indexes the synthetic HgTe series of :func:`dacpipe.synth.powder.hgte_coexistence_series`
(25 points, zinc blende -> cinnabar -> rock salt with a long coexistence;
candidates HgTe-zb, HgTe-cinnabar, HgTe-rs) point by point as the stage does,
and prints the median and the 90th percentile of the time per pattern over
all points of ``--repeats`` noise realisations (goal: median <= 0.05 s), the
slowest point, and what 1,000 frames would take serially at the median.
The CdSe round trip (two candidates and a gold marker, 18 points) is timed
the same way.

BLAS runs on one thread (the stage limits it so); set OMP_NUM_THREADS=1 as
well to keep pyFAI and numpy's other pools out of it. Run on purpose::

    OMP_NUM_THREADS=1 python benchmarks/bench_index.py --repeats 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dacpipe.synth.powder import cdse_round_trip_series, hgte_coexistence_series
from dacpipe.xrd.indexing import IndexingSettings, SeriesState, index_series
from dacpipe.xrd.library import get_phase


def time_series(series, seed: int) -> np.ndarray:
    """Seconds per point of one noise realisation, indexed in order."""
    names = list(series.sample_phases) + ([series.marker] if series.marker else [])
    markers = (series.marker,) if series.marker else ()
    phases = {n: get_phase(n) for n in names}
    settings = IndexingSettings.from_config({"phases": names})
    intensity, sigma = series.patterns(seed)
    state = SeriesState()
    times = []
    for i in range(len(intensity)):
        start = time.perf_counter()
        results, reasons, state = index_series(series.q_A, intensity[i:i + 1], sigma[i:i + 1], series.wavelength_A,
                                               series.pressure_GPa[i:i + 1], phases, settings, state=state,
                                               markers=markers)
        times.append(time.perf_counter() - start)
        if results[0] is None:
            raise RuntimeError(f"point {i}: {reasons[0]}")
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="noise realisations per series")
    args = parser.parse_args()
    for label, make in (("HgTe, 3 candidates", hgte_coexistence_series), ("CdSe + Au, 2 + marker", cdse_round_trip_series)):
        series = make()
        time_series(series, 0)  # warm-up: imports, structure factors, line lists
        runs = [time_series(series, seed) for seed in range(1, args.repeats + 1)]
        t = np.concatenate(runs)
        slowest = int(np.argmax(np.max(runs, axis=0)))
        print(f"{label}: {series.npt} bins, {len(series.points)} points x {args.repeats}: "
              f"median {np.median(t):.3f} s per pattern, 90th percentile {np.percentile(t, 90):.3f} s, "
              f"slowest point {series.pressure_GPa[slowest]} GPa ({np.max(t):.3f} s); "
              f"1,000 frames serially at the median: {1000 * np.median(t):.0f} s")


if __name__ == "__main__":
    main()
