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
from ..core.units import BOLTZMANN_EV_PER_K, HC_EV_NM
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


# --------------------------------------------------------------------------
# CsPbI3 nanocrystals in a cryostat: E(T), raw intensities with a dark (cspbi3_t)
# --------------------------------------------------------------------------
#
# The band gap of lead-halide perovskites OPENS on heating (dEg/dT > 0, the
# opposite of most semiconductors: the antibonding Pb 6s - I 5p valence-band
# top moves down as the lattice expands, and electron-phonon coupling adds to
# it). The truth is the Bose-Einstein form of Vina, Logothetidis & Cardona,
# Phys. Rev. B 30, 1979 (1984), eq. 4, written with E0 the gap at 0 K,
# Eg(T) = E0 - 2 a_B / (exp(theta / T) - 1), with a negative a_B. The numbers
# are a choice, of the order reported for CsPbI3 nanocrystals: a gap of about
# 1.76 eV at room temperature (PL near 710 nm), a slope of +0.30 meV/K at
# 300 K (the order the issue asks for), an effective phonon of theta = 200 K
# (17 meV, of the order of the LO phonons of the lead-halide lattice); the gap at
# 80 K is 1.706 eV, 60 meV below room temperature.
CSPBI3_GAP_TRUTH = {"E0_eV": 1.700, "aB_eV": -0.031, "theta_K": 200.0}
CSPBI3_GAP_MODEL = "bose_einstein"
# PL: Stokes-shifted by 20 meV (a choice, of the order of the small Stokes
# shifts of ~10 nm CsPbI3 nanocrystals); FWHM from an inhomogeneous part and
# LO-phonon broadening, Gamma(T) = Gamma_0 + Gamma_LO / (exp(E_LO / kT) - 1)
# (Rudin, Reinecke & Segall, Phys. Rev. B 42, 11218 (1990)), with Gamma_0 =
# 40 meV, Gamma_LO = 60 meV, E_LO = 20 meV (choices: 44 meV at 80 K, 91 meV
# at 300 K).
CSPBI3_STOKES_SHIFT_EV = 0.020
CSPBI3_PL_WIDTH = {"gamma0_eV": 0.040, "gamma_lo_eV": 0.060, "e_lo_eV": 0.020}
# The grating spectrometer of the absorption: 720 pixels over 540-900 nm
# (2.30-1.38 eV), so that 0.3 eV below the 80 K gap (the Urbach and baseline
# ranges of the Tauc construction) and 0.45 eV above the 300 K gap are seen.
CSPBI3_ABS_WAVELENGTH_NM = (540.0, 900.0)
CSPBI3_ABS_PIXELS = 720
CSPBI3_PL_WAVELENGTH_NM = (640.0, 780.0)
CSPBI3_PL_PIXELS = 350
# Counts of the lamp (I0) at its top, and the CCD's dark level (bias plus
# dark current, no light) with its read noise. Without subtracting the dark,
# -log10(I / I0) reads the edge's top (1200-2300 counts through) 0.09-0.17 absorbance low.
CSPBI3_LAMP_PEAK_COUNTS = 50000.0
CSPBI3_DARK_COUNTS = 600.0
CSPBI3_READ_NOISE_COUNTS = 5.0


def cspbi3_gap_eV(temperature_K):
    """The truth's Eg(T) (Bose-Einstein form with :data:`CSPBI3_GAP_TRUTH`, eV)."""
    t = np.asarray(temperature_K, dtype=float)
    p = CSPBI3_GAP_TRUTH
    return p["E0_eV"] - 2.0 * p["aB_eV"] / np.expm1(p["theta_K"] / t)


def cspbi3_pl_fwhm_eV(temperature_K: float) -> float:
    """FWHM of the emission band at ``temperature_K`` (:data:`CSPBI3_PL_WIDTH`)."""
    w = CSPBI3_PL_WIDTH
    return w["gamma0_eV"] + w["gamma_lo_eV"] / math.expm1(w["e_lo_eV"] / (BOLTZMANN_EV_PER_K * temperature_K))


def lamp_counts(wavelength_nm):
    """Expected counts of the white-light reference (I0) per pixel: a 3000 K
    halogen lamp (Planck's law) times a grating-and-CCD efficiency falling off
    on both sides of 600 nm, :data:`CSPBI3_LAMP_PEAK_COUNTS` at its top (the
    efficiency's peak on the blue side keeps the light through the film's
    strong absorption above the gap at thousands of counts)."""
    lam = np.asarray(wavelength_nm, dtype=float)
    planck = 1.0 / (lam**5 * np.expm1(1.4388e7 / (lam * 3000.0)))  # c2 = hc/k = 1.4388e7 nm K
    shape = planck * np.exp(-(((lam - 600.0) / 300.0) ** 2))
    return CSPBI3_LAMP_PEAK_COUNTS * shape / shape.max()


def dark_counts(wavelength_nm):
    """Expected counts of the CCD without light: :data:`CSPBI3_DARK_COUNTS`
    of bias with a gentle slope of dark current across the chip (+-20 counts)."""
    lam = np.asarray(wavelength_nm, dtype=float)
    return CSPBI3_DARK_COUNTS + 20.0 * (lam - 720.0) / 180.0


def _ccd(expected, rng: np.random.Generator, wavelength_nm):
    """A CCD reading: Poisson photo-electrons of ``expected`` light, plus the dark level and read noise."""
    light = rng.poisson(np.clip(expected, 0.0, None)).astype(float)
    return light + dark_counts(wavelength_nm) + rng.normal(0.0, CSPBI3_READ_NOISE_COUNTS, np.size(wavelength_nm))


def emission_counts_per_nm(wavelength_nm, centre_eV: float, fwhm_eV: float, peak_per_nm: float,
                           dark: float, rng: np.random.Generator):
    """A Gaussian emission band in energy (centre, FWHM), written per nm with the
    Jacobian ``hc / lambda^2`` (as :func:`pl_spectrum`), over a dark level, Poisson
    noise; ``peak_per_nm`` is the band's height per nm at ``hc / centre``."""
    lam = np.asarray(wavelength_nm, dtype=float)
    energy = HC_EV_NM / lam
    sigma = fwhm_eV / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    jacobian = HC_EV_NM / lam**2
    at_centre = HC_EV_NM / (HC_EV_NM / centre_eV) ** 2
    per_nm = dark + peak_per_nm * np.exp(-0.5 * ((energy - centre_eV) / sigma) ** 2) * jacobian / at_centre
    return rng.poisson(per_nm).astype(float)


def _write_counts(path: Path, x, y) -> None:
    lines = ["wavelength_nm\tcounts"] + [f"{a:.2f}\t{b:.0f}" for a, b in zip(x, y)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_cspbi3_optical(folder: Path, points: list[str], temperatures_K: list[float], rng: np.random.Generator,
                         prefix: str = "cspbi3") -> tuple[dict, dict, dict[str, str]]:
    """The optical files of the CsPbI3 temperature series under ``folder/optical``.

    Absorption is measured as raw intensity on a CCD: one reference
    ``optical/<prefix>_I0.txt`` (the lamp through the cell beside the film),
    one dark ``optical/<prefix>_dark.txt`` (the shutter closed) for the run,
    and per point the light through the film, ``..._<point>_I.txt``:
    ``Poisson(I0 f 10^-A) + dark + read noise``, with ``A`` the absorbance of
    :func:`edge_absorbance` at :func:`cspbi3_gap_eV` (``a_0`` at Eg + 0.3 eV
    drawn in 0.6-0.8, a thin film) plus the DAC baseline of :func:`dac_baseline` (offset
    0.05-0.15: the reference is taken through the same anvils, so only the
    film's reflection differs; scattering 0.03-0.08), and ``f`` in 0.97-1.03
    the lamp's drift between reference and sample (a constant in absorbance).
    Each file is its own reading (own Poisson and read noise). So
    ``-log10[(I - dark) / (I0 - dark)]`` is ``A`` plus noise, and without the
    dark the absorbance is compressed where little light gets through.

    PL per point, ``..._<point>_pl.txt``: :func:`emission_counts_per_nm` at
    Eg - :data:`CSPBI3_STOKES_SHIFT_EV`, FWHM :func:`cspbi3_pl_fwhm_eV`, height
    3000 counts per nm over a dark of 40 counts.

    Returns
    -------
    files : dict
        Per point ``{"absorption": ..., "pl": ...}`` (relative paths).
    truth : dict
        Per point ``{"band_gap_eV", "pl_energy_eV"}``.
    shared : dict
        ``{"reference": ..., "dark": ...}`` (relative paths).
    """
    folder = Path(folder)
    (folder / "optical").mkdir(parents=True, exist_ok=True)
    lam = np.linspace(*CSPBI3_ABS_WAVELENGTH_NM, CSPBI3_ABS_PIXELS)
    energy = HC_EV_NM / lam
    i0 = lamp_counts(lam)
    shared = {"reference": f"optical/{prefix}_I0.txt", "dark": f"optical/{prefix}_dark.txt"}
    _write_counts(folder / shared["reference"], lam, _ccd(i0, rng, lam))
    _write_counts(folder / shared["dark"], lam, _ccd(np.zeros_like(lam), rng, lam))
    pl_lam = np.linspace(*CSPBI3_PL_WAVELENGTH_NM, CSPBI3_PL_PIXELS)
    files, truth = {}, {}
    for point, temperature in zip(points, temperatures_K):
        gap = float(cspbi3_gap_eV(temperature))
        absorbance = (edge_absorbance(energy, gap, rng.uniform(0.6, 0.8))
                      + dac_baseline(energy, rng.uniform(0.05, 0.15), rng.uniform(0.03, 0.08)))
        drift = rng.uniform(0.97, 1.03)
        names = {"absorption": f"optical/{prefix}_{point}_I.txt", "pl": f"optical/{prefix}_{point}_pl.txt"}
        _write_counts(folder / names["absorption"], lam, _ccd(i0 * drift * 10.0 ** (-absorbance), rng, lam))
        pl_energy = gap - CSPBI3_STOKES_SHIFT_EV
        counts = emission_counts_per_nm(pl_lam, pl_energy, cspbi3_pl_fwhm_eV(temperature), 3000.0, 40.0, rng)
        _write_two_columns(folder / names["pl"], "wavelength_nm\tcounts_per_nm", pl_lam, counts, ".0f")
        files[point] = names
        truth[point] = {"band_gap_eV": gap, "pl_energy_eV": pl_energy}
    return files, truth, shared
