"""Synthetic absorption and photoluminescence spectra of the HgTe series, from a known E(P).

The series goes through the phases of :func:`dacpipe.synth.xrd.phase_fractions`
(zinc blende up to 2.4-3.6 GPa, cinnabar, rock salt above 7.8-9.6 GPa); the
optical spectra of a point are those of its *dominant* phase (the highest
fraction; a tie goes to the lower-pressure phase).

Truth
-----
Band gap versus pressure, ``Eg(P) = E0 + alpha P + beta P^2`` (:data:`GAP_TRUTH`):

* zinc blende (quantum-confined nanocrystals): E0 = 0.80 eV, alpha =
  +0.030 eV/GPa, beta = -0.0008 eV/GPa^2 (the gap opens, as in bulk
  zinc-blende semiconductors);
* cinnabar: E0 = 1.517 eV, alpha = -0.139 eV/GPa, beta = 0 (a wider-gap
  semiconductor, 1.10 eV at 3 GPa, whose gap closes);
* rock salt: metallic, no gap (``band_gap_eV`` NaN).

``band_gap_eV`` is Eg of the edge below; ``pl_energy_eV`` is the centre of
the emission band in energy, Eg - :data:`STOKES_SHIFT_EV` (NaN for rock salt).

Absorption (absorbance, decadic)
--------------------------------
``A(E) = A_edge(E) + c + s (E / 1.6 eV)^4 + noise`` with

* a direct allowed edge in Tauc's form, ``A_edge(E) E = K sqrt(E - Eg)``
  above ``Et = Eg + E_U / 2``, continued below by an Urbach tail
  ``K sqrt(E_U / 2) exp((E - Et) / E_U)`` (E_U = :data:`URBACH_EV`). At Et
  the two branches have the same value and the same logarithmic slope
  1 / E_U, so the edge is smooth; above Et the Tauc plot (A E)^2 is exactly
  the line K^2 (E - Eg), whose zero is Eg. ``K`` gives ``A_edge = a_0`` at
  ``Eg + 0.3 eV`` with ``a_0`` drawn in 0.8-1.2 (the film thins under load);
* the DAC baseline: a constant ``c`` (reflection losses at the diamond and
  sample interfaces, 0.10-0.30) and Rayleigh-like scattering ``s (E/1.6)^4``
  (proportional to 1/lambda^4; s in 0.03-0.10);
* Gaussian noise of :data:`ABSORBANCE_NOISE` absorbance;
* rock salt: no edge, a flat absorbance 0.9 + the same baseline and noise.

The axis is a grid uniform in photon energy, 0.20-1.60 eV (an FTIR covers
the 0.3 eV gaps of cinnabar near 8.6 GPa, which a grating spectrometer would
miss), written as wavelength in nm, increasing, two columns.

Photoluminescence (counts per nm)
---------------------------------
A Gaussian band in energy, centre Eg - 30 meV, FWHM :data:`PL_FWHM_EV`,
over a constant dark level, with Poisson noise, written in counts *per nm*
on a grid uniform in wavelength (a grating spectrometer):
``I(lambda) = I(E) hc / lambda^2``. The maximum of ``I(lambda)`` is therefore
not at ``hc / E_PL``: reading PL without the Jacobian shifts the peak.
Rock salt: the dark level and its noise only.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..core.profiles import pseudo_voigt_height
from ..core.units import HC_EV_NM
from .xrd import phase_fractions

GAP_TRUTH = {  # phase -> (E0_eV, alpha_eV_per_GPa, beta_eV_per_GPa2); None = metallic
    "HgTe-zb": (0.80, 0.030, -0.0008),
    "HgTe-cinnabar": (1.10 + 0.139 * 3.0, -0.139, 0.0),
    "HgTe-rs": None,
}
URBACH_EV = 0.020
STOKES_SHIFT_EV = 0.030
PL_FWHM_EV = 0.090
ABSORBANCE_NOISE = 0.004
ABS_ENERGY_RANGE_EV = (0.20, 1.60)
ABS_POINTS = 500
PL_WAVELENGTH_RANGE_NM = (760.0, 6200.0)
PL_POINTS = 400
PL_PEAK_COUNTS_PER_NM = 3000.0  # at a 1 eV band; the counts per eV are the same for every point
PL_DARK_COUNTS = 40.0
_SCATTER_REFERENCE_EV = 1.6


def dominant_phase(pressure_GPa: float) -> str:
    """The phase with the highest fraction at ``pressure_GPa`` (ties: the earlier phase)."""
    fractions = phase_fractions(pressure_GPa)
    return max(fractions, key=fractions.get)


def true_gap_eV(phase: str, pressure_GPa: float) -> float:
    """``E0 + alpha P + beta P^2`` of ``phase``, NaN for the metallic rock salt."""
    truth = GAP_TRUTH[phase]
    if truth is None:
        return math.nan
    e0, alpha, beta = truth
    p = float(pressure_GPa)
    return e0 + alpha * p + beta * p * p


def edge_absorbance(energy_eV, gap_eV: float, amplitude: float = 1.0, urbach_eV: float = URBACH_EV):
    """Absorbance of a direct edge with an Urbach tail (module docstring), ``a_0 = amplitude``.

    ``urbach_eV = 0`` gives the bare square-root edge, zero below ``gap_eV``.
    """
    e = np.asarray(energy_eV, dtype=float)
    k = amplitude * (gap_eV + 0.3) / math.sqrt(0.3)
    if urbach_eV <= 0:
        return k * np.sqrt(np.clip(e - gap_eV, 0.0, None)) / e
    e_t = gap_eV + urbach_eV / 2.0
    above = k * np.sqrt(np.clip(e - gap_eV, 0.0, None))
    below = k * math.sqrt(urbach_eV / 2.0) * np.exp(np.minimum(e - e_t, 0.0) / urbach_eV)
    return np.where(e >= e_t, above, below) / e


def dac_baseline(energy_eV, offset: float, scatter: float):
    """Reflection losses plus 1/lambda^4 scattering: ``offset + scatter (E / 1.6 eV)^4``."""
    e = np.asarray(energy_eV, dtype=float)
    return offset + scatter * (e / _SCATTER_REFERENCE_EV) ** 4


def absorption_spectrum(phase: str, pressure_GPa: float, rng: np.random.Generator):
    """Wavelength (nm, increasing) and absorbance of one point (module docstring)."""
    energy = np.linspace(*ABS_ENERGY_RANGE_EV, ABS_POINTS)[::-1]  # so that the wavelength increases
    baseline = dac_baseline(energy, rng.uniform(0.10, 0.30), rng.uniform(0.03, 0.10))
    gap = true_gap_eV(phase, pressure_GPa)
    amplitude = rng.uniform(0.8, 1.2)
    signal = np.full_like(energy, 0.9) if math.isnan(gap) else edge_absorbance(energy, gap, amplitude)
    absorbance = signal + baseline + rng.normal(0.0, ABSORBANCE_NOISE, energy.size)
    return HC_EV_NM / energy, absorbance


def pl_spectrum(phase: str, pressure_GPa: float, rng: np.random.Generator):
    """Wavelength (nm, increasing) and counts per nm of one point (module docstring)."""
    wavelength = np.linspace(*PL_WAVELENGTH_RANGE_NM, PL_POINTS)
    energy = HC_EV_NM / wavelength
    gap = true_gap_eV(phase, pressure_GPa)
    per_nm = np.full_like(wavelength, PL_DARK_COUNTS)
    if not math.isnan(gap):
        sigma = PL_FWHM_EV / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        # Counts per eV, scaled so that a band at 1 eV peaks at PL_PEAK_COUNTS_PER_NM per nm.
        per_eV = PL_PEAK_COUNTS_PER_NM * HC_EV_NM * np.exp(-0.5 * ((energy - (gap - STOKES_SHIFT_EV)) / sigma) ** 2)
        per_nm = per_nm + per_eV * HC_EV_NM / wavelength**2  # I(lambda) = I(E) |dE/dlambda|
    return wavelength, rng.poisson(per_nm).astype(float)


def _write_two_columns(path: Path, header: str, x, y, y_format: str) -> None:
    lines = [header] + [f"{a:.3f}\t{b:{y_format}}" for a, b in zip(x, y)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_optical_series(folder: Path, points: list[str], pressures_GPa: list[float],
                         rng: np.random.Generator, prefix: str = "hgte"
                         ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, float]]]:
    """Write an absorption and a PL spectrum per point under ``folder/optical``.

    Parameters
    ----------
    folder : Path
        The run's folder (where ``points.tsv`` lives).
    points : list of str
        Point ids, e.g. ``"p001"``.
    pressures_GPa : list of float
        The true sample pressure of each point.
    rng : numpy.random.Generator
        Draws the baselines, amplitudes and noise, point by point in order.
    prefix : str
        File names are ``optical/<prefix>_<point>_abs.txt`` and ``..._pl.txt``.

    Returns
    -------
    files : dict
        Per point, ``{"absorption": relative path, "pl": relative path}``.
    truth : dict
        Per point, ``{"band_gap_eV", "pl_energy_eV", "optical_phase"}`` (module
        docstring; NaN for rock salt).
    """
    folder = Path(folder)
    (folder / "optical").mkdir(parents=True, exist_ok=True)
    files, truth = {}, {}
    for point, pressure in zip(points, pressures_GPa):
        phase = dominant_phase(pressure)
        gap = true_gap_eV(phase, pressure)
        names = {"absorption": f"optical/{prefix}_{point}_abs.txt", "pl": f"optical/{prefix}_{point}_pl.txt"}
        wavelength, absorbance = absorption_spectrum(phase, pressure, rng)
        _write_two_columns(folder / names["absorption"], "wavelength_nm\tabsorbance", wavelength, absorbance, ".5f")
        wavelength, counts = pl_spectrum(phase, pressure, rng)
        _write_two_columns(folder / names["pl"], "wavelength_nm\tcounts_per_nm", wavelength, counts, ".0f")
        files[point] = names
        truth[point] = {"band_gap_eV": gap, "pl_energy_eV": gap - STOKES_SHIFT_EV, "optical_phase": phase}
    return files, truth


# --------------------------------------------------------------------------
# Quantum-dot absorption: a first exciton on a rising background (tests)
# --------------------------------------------------------------------------


def qd_absorbance(energy_eV, exciton_eV: float, fwhm_eV: float = 0.08, amplitude: float = 0.15, *,
                  offset: float = 0.2, scatter: float = 0.05):
    """Noise-free absorbance of a quantum-dot film in a DAC, first exciton at ``exciton_eV``.

    A Gaussian first-exciton band (centre ``exciton_eV``, ``fwhm_eV``,
    height ``amplitude``) on a rising background: a second transition
    0.25 eV above it (Gaussian, FWHM 0.20 eV, twice the height), a
    continuum that rises smoothly 0.15 eV above it (``2 amplitude (1 +
    tanh((E - Ex - 0.15) / 0.1)) / 2``) and the DAC baseline
    (:func:`dac_baseline`). The first exciton is the lowest band, as in the
    spectra of Yu, Qu, Guo & Peng, Chem. Mater. 15, 2854 (2003).
    """
    e = np.asarray(energy_eV, dtype=float)
    sigma = fwhm_eV / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    sigma2 = 0.20 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    first = amplitude * np.exp(-0.5 * ((e - exciton_eV) / sigma) ** 2)
    second = 2.0 * amplitude * np.exp(-0.5 * ((e - exciton_eV - 0.25) / sigma2) ** 2)
    continuum = amplitude * (1.0 + np.tanh((e - exciton_eV - 0.15) / 0.1))
    return first + second + continuum + dac_baseline(e, offset, scatter)


def urbach_edge_absorbance(energy_eV, gap_eV: float, urbach_eV: float, amplitude: float = 1.0):
    """Absorbance of a direct edge whose tail follows Urbach's rule exactly (tests).

    ``A = k sqrt(E - Eg)`` above ``Et = Eg + E_U / 2`` and
    ``k sqrt(E_U / 2) exp((E - Et) / E_U)`` below (same value and logarithmic
    slope at Et), ``k`` giving ``A = amplitude`` at ``Eg + 0.3 eV``: ``ln A``
    has the slope 1 / E_U exactly below Et (Urbach, Phys. Rev. 92, 1324
    (1953)). :func:`edge_absorbance` divides the same shape by E (Tauc's
    ``alpha E``), which makes its logarithmic slope 1 / E_U - 1 / E.
    """
    return edge_absorbance(energy_eV, gap_eV, amplitude, urbach_eV) * np.asarray(energy_eV, dtype=float) \
        * 1.0 / (gap_eV + 0.3)


# --------------------------------------------------------------------------
# Quantum-dot film: a first exciton below the Tauc edge of its continuum (hgte_6nm)
# --------------------------------------------------------------------------

QD_EXCITON_FWHM_EV = 0.06
"""FWHM of the first-exciton band of data-sample's 6 nm HgTe dots: the size
distribution of the ensemble, sigma_d / d = 8 %, on a confinement energy
proportional to d^-2 of 0.15 eV (``HGTE_6NM_CONFINEMENT_EV`` of
:mod:`dacpipe.synth.runs`) gives sigma_E = 2 x 0.08 x 0.15 = 24 meV, a FWHM of
57 meV, rounded to 60 meV (about 6 % of the exciton energy, within the 5-10 %
of well-made nanocrystal ensembles)."""
QD_CONTINUUM_ABOVE_EXCITON_EV = 0.30
"""How far the Tauc edge of the dots' continuum of higher transitions lies above
their first exciton. A choice, of the order of the wide level spacing of HgTe
dots (light electron mass). It also keeps the band out of the Tauc
construction's sub-gap range (15 to 5 edge widths below the edge): on 30
noisy spectra per spacing the Tauc gap came back with a scatter of 1.7 meV at
0.30 eV, 2.2 meV at 0.25 eV, 3.6 meV at 0.20 eV, and 9 meV high at 0.15 eV; a
band on the edge (0-0.05 eV above the gap) made a quarter of the Tauc fits fail
and moved the second-derivative minimum by 1-6 meV (the square-root edge is
no smooth background)."""
QD_EXCITON_HEIGHT = 0.15
"""Height of the first-exciton band (absorbance) at the middle of its draw
(0.8-1.2 times this), against the continuum's ``a_0`` of 0.8-1.2 at Eg + 0.3 eV:
a band 37 noise sigmas high, whose steepest slope (3.6 per eV) stays below the
edge's (about 12 per eV), so the Tauc construction still takes the continuum's
edge as the edge."""


def qd_edge_absorbance(energy_eV, gap_eV: float, exciton_eV: float, height: float, amplitude: float = 1.0,
                       fwhm_eV: float = QD_EXCITON_FWHM_EV):
    """Absorbance of a quantum-dot film without its DAC baseline: a Gaussian
    first-exciton band (centre ``exciton_eV``, ``fwhm_eV``, ``height``) below
    the direct edge of the continuum of higher transitions,
    :func:`edge_absorbance` at ``gap_eV`` (its Tauc gap) with ``amplitude``.

    The first exciton is the lowest absorption band of the dots and the onset
    of the steep continuum lies above it (Yu, Qu, Guo & Peng, Chem. Mater.
    15, 2854 (2003)): a Tauc line drawn through the continuum reads its onset,
    not the exciton.
    """
    e = np.asarray(energy_eV, dtype=float)
    return edge_absorbance(e, gap_eV, amplitude) + height * pseudo_voigt_height(e, exciton_eV, fwhm_eV, 0.0)
