"""The EOS, PL-band and E(P) fits before and after they moved to lmfit: time per fit and agreement.

Times, on one core, ``fit_eos`` (dacpipe.eos.fit), ``fit_pl_peak``
(dacpipe.optical.pl) and ``fit_energy_vs_pressure``
(dacpipe.optical.pressure_fit) as they are in the working tree ("after")
against the same functions at an earlier commit ("before", ``--before``,
by default the last commit with the hand-written scipy fits), loaded from
git without touching the checkout. Each case is fitted ``--repeat`` times
and the median per fit is printed, with the largest difference between the
two versions' values in units of the after-version's standard error.

Cases:

* EOS: the quartz data of Angel et al. (1997) (``../shared/real-data``,
  skipped when absent), BM3 and Vinet with both sigmas; a synthetic BM3
  series (25 points to 60 GPa, sigma_P 0.05 GPa, sigma_V 0.02 A^3) with V0
  free and fixed; a BM4 fit of it.
* PL: synthetic HgTe bands (:func:`dacpipe.synth.optical.pl_spectrum`,
  400 points, Poisson noise, the wavelength-to-energy Jacobian as the
  background scale) at 0.5, 4.0 and 8.6 GPa, Gaussian; a noisy Lorentzian
  band fitted with a pseudo-Voigt.
* E(P): a 10-point quadratic with energy and pressure errors, and a 3-point line.
* The EOS stage's fit with outliers excluded
  (``fit_eos_excluding_outliers``, after only: it is new): a 12-point BM3
  series without and with a phantom point (volume 5 % low).

One core: OMP/BLAS threads are set to 1 before numpy is imported; run under
``taskset -c 0`` to pin the process too::

    taskset -c 0 python benchmarks/bench_fits.py --repeat 50
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from dacpipe.eos import fit as eos_fit_after  # noqa: E402
from dacpipe.eos.models import EosParams, volume_A3  # noqa: E402
from dacpipe.optical import pl as pl_after  # noqa: E402
from dacpipe.optical import pressure_fit as pfit_after  # noqa: E402
from dacpipe.synth import optical as synth  # noqa: E402
from revisions import module_at  # noqa: E402  (beside this script)

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT.parent / "shared" / "real-data"
# The last commit whose fit_eos, fit_pl_peak and fit_energy_vs_pressure were
# written on scipy's least_squares / curve_fit / normal equations.
BEFORE = "33f9130"


def median_time(fn, repeat: int) -> float:
    """Median wall time of one call, in ms (one warm-up call first)."""
    return median_times([fn], repeat)[0]


def median_times(fns, repeat: int) -> list[float]:
    """Median wall time of one call of each function, in ms, the calls
    interleaved (a, b, a, b, ...) so that other load on the machine weighs
    on each alike; one warm-up call each first."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, t in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [1e3 * float(np.median(t)) for t in times]


def _quartz():
    rows = []
    for line in (REAL_DATA / "eos" / "PV_quartz_Angel1997.dat").read_text().splitlines():
        try:
            rows.append([float(t) for t in line.split()])
        except ValueError:
            continue
    P, V, sP, sV = np.array([r for r in rows if r]).T
    P[0] = 0.0  # as in the published EosFit7 input (tests/test_eos.py)
    return P, V, sP, sV


def eos_cases():
    cases = []
    if (REAL_DATA / "eos" / "PV_quartz_Angel1997.dat").is_file():
        P, V, sP, sV = _quartz()
        for model in ("bm3", "vinet"):
            cases.append((f"quartz {model} (22 pts)", (P, V), dict(sigma_P_GPa=sP, sigma_V_A3=sV, model=model)))
    else:
        print(f"(quartz skipped: {REAL_DATA} absent)")
    rng = np.random.default_rng(1)
    true = EosParams("bm3", 100.0, 120.0, 4.6)
    P_true = np.linspace(0.5, 60.0, 25)
    sP, sV = np.full(25, 0.05), np.full(25, 0.02)
    V = volume_A3(true, P_true) + rng.normal(0, sV)
    P = P_true + rng.normal(0, sP)
    sig = dict(sigma_P_GPa=sP, sigma_V_A3=sV)
    cases.append(("synthetic bm3 (25 pts)", (P, V), dict(sig, model="bm3")))
    cases.append(("synthetic bm3, V0 fixed", (P, V), dict(sig, model="bm3", V0_A3=100.0, fix=("V0_A3",))))
    cases.append(("synthetic bm4", (P, V), dict(sig, model="bm4")))
    cases.append(("synthetic bm3 unweighted", (P, V), dict(model="bm3")))
    return cases


def pl_cases():
    cases = []
    rng = np.random.default_rng(2)
    for pressure in (0.5, 4.0, 8.6):
        wavelength, counts = synth.pl_spectrum(synth.dominant_phase(pressure), pressure, rng)
        jac = wavelength**2 / synth.HC_EV_NM
        cases.append((f"HgTe band at {pressure} GPa, gaussian", (synth.HC_EV_NM / wavelength, counts * jac),
                      dict(background_scale=jac)))
    energy = np.linspace(0.6, 1.2, 300)
    band = 500.0 / (1 + 4 * ((energy - 0.9) / 0.05) ** 2) + 20 + 10 * (energy - 0.9)
    cases.append(("Lorentzian band, pseudo-voigt", (energy, band + rng.normal(0, 2.0, energy.size)),
                  dict(profile="pseudo-voigt")))
    return cases


def eos_values(fit):
    names = fit.parameter_names
    return (np.array([getattr(fit.params, n) for n in names]), np.array([fit.errors[n] for n in names]))


def pl_values(fit):
    return (np.array([fit.energy_eV, fit.fwhm_eV, fit.area]), np.array([fit.energy_err_eV, fit.fwhm_err_eV,
                                                                        fit.area_err]))


def ep_values(fit):
    return (np.array([fit.E0_eV, fit.alpha_eV_per_GPa, fit.beta_eV_per_GPa2]),
            np.array([fit.E0_err_eV, fit.alpha_err_eV_per_GPa, fit.beta_err_eV_per_GPa2]))


def compare(title, cases, before_fn, after_fn, values, repeat):
    print(f"\n{title}")
    print(f"  {'case':34s} {'before ms':>10s} {'after ms':>10s} {'after/before':>13s} "
          f"{'max |dvalue|/esd':>17s} {'max |desd|/esd':>15s}")
    for label, args, kwargs in cases:
        t_before, t_after = median_times([lambda: before_fn(*args, **kwargs), lambda: after_fn(*args, **kwargs)],
                                         repeat)
        (vb, eb), (va, ea) = values(before_fn(*args, **kwargs)), values(after_fn(*args, **kwargs))
        dv = float(np.nanmax(np.abs(va - vb) / ea))
        de = float(np.nanmax(np.abs(ea - eb) / ea))
        print(f"  {label:34s} {t_before:10.2f} {t_after:10.2f} {t_after / t_before:13.2f} {dv:17.2e} {de:15.2e}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE, help=f"git revision of the 'before' code (default {BEFORE})")
    parser.add_argument("--repeat", type=int, default=30, help="fits per case and version (median taken)")
    args = parser.parse_args(argv)
    eos_before = module_at(args.before, "src/dacpipe/eos/fit.py", "dacpipe.eos")
    pl_before = module_at(args.before, "src/dacpipe/optical/pl.py", "dacpipe.optical")
    pfit_before = module_at(args.before, "src/dacpipe/optical/pressure_fit.py", "dacpipe.optical")
    print(f"before: {args.before}; after: working tree; median of {args.repeat} fits per case, one thread")
    compare("fit_eos", eos_cases(), eos_before.fit_eos, eos_fit_after.fit_eos, eos_values, args.repeat)
    compare("fit_pl_peak", pl_cases(), pl_before.fit_pl_peak, pl_after.fit_pl_peak, pl_values, args.repeat)
    rng = np.random.default_rng(3)
    p = np.linspace(0.5, 9.0, 10)
    e = 1.5 - 0.139 * p + 0.002 * p**2 + rng.normal(0, 0.004, 10)
    ep = [("quadratic, 10 pts, sigma_E and sigma_P", (p, e, np.full(10, 0.004)),
           dict(pressure_err_GPa=np.full(10, 0.05))),
          ("linear, 3 pts", (p[:3], e[:3], np.full(3, 0.004)), {})]
    compare("fit_energy_vs_pressure", ep, pfit_before.fit_energy_vs_pressure, pfit_after.fit_energy_vs_pressure,
            ep_values, args.repeat)
    robust_timings(args.repeat)
    return 0


def robust_timings(repeat: int):
    from dacpipe.eos.fit import fit_eos_excluding_outliers

    print("\nfit_eos_excluding_outliers (new; after only)")
    rng = np.random.default_rng(4)
    true = EosParams("bm3", 67.4, 42.3, 5.0)
    P_true = np.linspace(0.3, 8.0, 12)
    V = volume_A3(true, P_true) + rng.normal(0, 0.03, 12)
    P = P_true + rng.normal(0, 0.05, 12)
    phantom = V.copy()
    phantom[5] *= 0.95
    for label, volumes in (("12 pts, clean", V), ("12 pts, one phantom (-5 % V)", phantom)):
        fn = lambda: fit_eos_excluding_outliers(P, volumes, sigma_P_GPa=0.05, sigma_V_A3=0.03)  # noqa: E731
        print(f"  {label:34s} {median_time(fn, repeat):10.2f} ms   excluded {fn().excluded}")


if __name__ == "__main__":
    sys.exit(main())
