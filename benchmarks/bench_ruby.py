"""Benchmark of dacpipe.ruby.fit_ruby: spectra per second on one core.

Generates N realistic synthetic ruby spectra (default 1000) and times
``fit_ruby`` on each of them. Each spectrum: 1340 points over a 100 nm window
placed at random around R1; pressure uniform in 0-100 GPa (R1 from Mao et al.
1986); true Voigt lines of FWHM 0.5-1 nm (7-13 points), R1 1000-30000 counts,
R2 0.5-0.7 times as high; a sloped, curved background of 100-2000 counts;
Poisson noise; 0-3 cosmic-ray spikes.

One core: the script sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
MKL_NUM_THREADS to 1 before numpy is imported, so BLAS cannot spread over
cores. To pin the Python process itself to one core as well, run it under
``taskset``::

    taskset -c 0 python benchmarks/bench_ruby.py --n 1000

It prints spectra per second, the median time per fit, the largest
|R1 - truth| and how many fits lie within 4 reported sigmas of the truth.
The goal is >= 200 spectra per second.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.special import voigt_profile  # noqa: E402

from dacpipe.core.errors import InputError
from dacpipe.pressure.fluorescence import fit_ruby

GOAL_PER_S = 200.0


def mao_r1_nm(pressure_gpa):
    """R1 at a pressure, Mao et al. 1986 (quasi-hydrostatic)."""
    return 694.24 * (1.0 + 7.665 * pressure_gpa / 1904.0) ** (1.0 / 7.665)


def voigt_line(x, center, fwhm, lorentz_share):
    """True Voigt line of unit height and (very nearly) the given FWHM."""
    f_l = lorentz_share * fwhm
    f_g = math.sqrt((fwhm - 0.5346 * f_l) ** 2 - 0.2166 * f_l**2)
    sigma, gamma = f_g / (2.0 * math.sqrt(2.0 * math.log(2.0))), f_l / 2.0
    return voigt_profile(x - center, sigma, gamma) / voigt_profile(0.0, sigma, gamma)


def make_spectra(n, seed=0):
    """n tuples (x, y, true R1) of synthetic ruby spectra."""
    rng = np.random.default_rng(seed)
    spectra = []
    for _ in range(n):
        r1 = mao_r1_nm(rng.uniform(0.0, 100.0))
        r2 = 1e7 / (1e7 / r1 + rng.uniform(29.0, 32.0))
        start = r1 - rng.uniform(10.0, 90.0)  # R1 anywhere but the outer 10 nm
        x = np.linspace(start, start + 100.0, 1340)
        fwhm = rng.uniform(0.5, 1.0)
        share = rng.uniform(0.2, 0.8)
        height = 10 ** rng.uniform(3.0, 4.5)
        u = (x - x.mean()) / 50.0
        expected = rng.uniform(100.0, 2000.0) * (1.0 + rng.uniform(-0.3, 0.3) * u + rng.uniform(-0.2, 0.2) * u**2)
        expected += height * voigt_line(x, r1, fwhm, share)
        expected += rng.uniform(0.5, 0.7) * height * voigt_line(x, r2, fwhm * rng.uniform(1.0, 1.2), share)
        y = rng.poisson(expected).astype(float)
        for _ in range(rng.integers(0, 4)):
            y[rng.integers(0, x.size)] += rng.uniform(0.1, 3.0) * height
        spectra.append((x, y, r1))
    return spectra


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of spectra (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the spectra")
    args = parser.parse_args(argv)

    spectra = make_spectra(args.n, args.seed)
    fit_ruby(*spectra[0][:2])  # warm up (imports, caches)

    times, deviations, sigmas, failures = [], [], [], []
    start = time.perf_counter()
    for x, y, r1 in spectra:
        t0 = time.perf_counter()
        try:
            fit = fit_ruby(x, y)
        except InputError as error:
            failures.append(str(error))
            continue
        finally:
            times.append(time.perf_counter() - t0)
        deviations.append(fit.r1_nm - r1)
        sigmas.append(fit.r1_err_nm)
    total = time.perf_counter() - start

    deviations, sigmas = np.abs(deviations), np.asarray(sigmas)
    rate = len(spectra) / total
    print(f"spectra:             {len(spectra)} (1340 points over 100 nm, 0-100 GPa)")
    print(f"spectra per second:  {rate:.0f}  (goal >= {GOAL_PER_S:.0f}: {'met' if rate >= GOAL_PER_S else 'NOT met'})")
    print(f"median time per fit: {1e3 * np.median(times):.2f} ms")
    if len(deviations):
        print(f"max |R1 - truth|:    {deviations.max():.4f} nm (median {np.median(deviations):.4f} nm)")
        print(f"within 4 sigma:      {np.mean(deviations < 4 * sigmas):.1%} (median sigma {np.median(sigmas):.4f} nm)")
    print(f"refused (InputError): {len(failures)}" + (f", e.g. {failures[0]}" if failures else ""))
    return 0 if rate >= GOAL_PER_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
