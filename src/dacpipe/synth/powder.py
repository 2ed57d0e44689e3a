"""Integrated powder patterns of nanocrystal pressure series, from known truth.

What the structural stage sees after pyFAI: I(q) per bin, the mean of the
bin's pixels with solid angle and polarization divided out, and its Poisson
error. Generated here straight in 1D, at any number of bins, so that tests
can run full-size (3000-bin) series in milliseconds:

* lines from the library structures (:func:`dacpipe.synth.xrd.phase_lines`'s
  recipe: m |F|^2 with IT92 form factors, the powder Lorentz factor, a
  fraction of formula units x_p weighted by 1 / (Z_p V_p));
* profiles as true Voigt functions in 2theta (:func:`scipy.special.voigt_profile`),
  Lorentzian from the crystallite size (Scherrer, K = 0.94) and Gaussian from
  the instrument and microstrain (4 eps tan(theta)): not the pseudo-Voigt
  in q with a width linear in q that the fits use, so the fit's model is
  tested, not copied;
* a DAC background: the anvils' Compton scattering rising with angle, the
  pressure medium's amorphous hump, air and beam tails at low angle;
* Poisson counts over the pixels of each bin (a ring's pixels grow with
  its radius), as pyFAI averages them.

:class:`Series` holds a run's truth point by point (phases, fractions,
cells, sizes, marker) in measurement order, so series may go up and down in
pressure with hysteresis.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.special import voigt_profile

from ..xrd.library import get_phase
from .xrd import powder_line_weights

SCHERRER_K = 0.94
INSTRUMENT_FWHM_DEG = 0.02
PEAK_COUNTS = 3000.0


@dataclass(frozen=True)
class PointTruth:
    """What one point of a series holds: pressure, and per phase its amount and crystallite size."""

    pressure_GPa: float
    amounts: dict[str, float]          # formula units per formula unit of sample (markers may add more)
    crystallite_nm: dict[str, float]
    cells: dict[str, tuple] = field(default_factory=dict)   # default: library cell at the pressure

    def cell(self, name: str) -> tuple:
        if name in self.cells:
            return self.cells[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return tuple(float(v) for v in get_phase(name).cell_at(self.pressure_GPa))

    def sample_fractions(self, sample_phases) -> dict[str, float]:
        total = sum(self.amounts.get(p, 0.0) for p in sample_phases)
        return {p: self.amounts.get(p, 0.0) / total for p in sample_phases}


def _lines(name: str, cell: tuple, wavelength_A: float, two_theta_max_deg: float):
    _, theta, weight = powder_line_weights(get_phase(name), cell, wavelength_A, two_theta_max_deg)
    return theta, weight


def background(two_theta_deg, pressure_GPa: float, level: float = 1.0):
    """Counts of the DAC background at 2theta: Compton of the anvils, the medium's hump, air at low angle."""
    t = np.asarray(two_theta_deg, dtype=float)
    hump = 8.0 + 0.12 * pressure_GPa
    return level * (30.0 + 4.0 * t + 300.0 * np.exp(-t / 1.8) + 120.0 * np.exp(-0.5 * ((t - hump) / 2.5) ** 2))


def line_heights(name: str, truth: PointTruth, wavelength_A: float, two_theta_max_deg: float = 60.0,
                 microstrain: float = 5e-4, instrument_fwhm_deg: float = INSTRUMENT_FWHM_DEG) -> np.ndarray:
    """Peak heights (before the run's scale) of phase ``name``'s lines at unit amount."""
    theta, weight = _lines(name, truth.cell(name), wavelength_A, two_theta_max_deg)
    gamma, sigma = _widths(name, theta, truth, wavelength_A, microstrain, instrument_fwhm_deg)
    return weight * voigt_profile(0.0, sigma, gamma)


def _widths(name, theta, truth, wavelength_A, microstrain, instrument_fwhm_deg):
    """Lorentzian half width (Scherrer) and Gaussian sigma (instrument, microstrain) in degrees 2theta."""
    gamma = np.degrees(SCHERRER_K * wavelength_A / (truth.crystallite_nm[name] * 10.0 * np.cos(theta))) / 2.0
    strain_fwhm = np.degrees(4.0 * microstrain * np.tan(theta))
    sigma_instrument = instrument_fwhm_deg / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    return gamma, np.sqrt(sigma_instrument**2 + (strain_fwhm / 2.3548) ** 2)


def expected_pattern(q_A, wavelength_A: float, truth: PointTruth, *, scale: float = 1.0,
                     microstrain: float = 5e-4, instrument_fwhm_deg: float = INSTRUMENT_FWHM_DEG,
                     background_level: float = 1.0) -> np.ndarray:
    """Noise-free counts per pixel of the corrected pattern at ``q_A``."""
    q = np.asarray(q_A, dtype=float)
    two_theta = np.degrees(2.0 * np.arcsin(np.clip(q * wavelength_A / (4 * np.pi), 0, 1)))
    out = background(two_theta, truth.pressure_GPa, background_level)
    tth_max = float(two_theta.max()) + 3.0
    for name, amount in truth.amounts.items():
        if amount <= 0:
            continue
        theta, weight = _lines(name, truth.cell(name), wavelength_A, tth_max)
        gamma, sigma = _widths(name, theta, truth, wavelength_A, microstrain, instrument_fwhm_deg)
        centre = np.degrees(2.0 * theta)
        for i in range(0, len(weight), 32):
            sl = slice(i, i + 32)
            profile = voigt_profile(two_theta[None, :] - centre[sl, None], sigma[sl, None], gamma[sl, None])
            out = out + scale * amount * (weight[sl] @ profile)
    return out


def pixels_per_bin(q_A, wavelength_A: float, *, distance_mm: float = 200.0, pixel_mm: float = 0.172,
                   coverage: float = 0.75) -> np.ndarray:
    """Pixels that fall into each q bin of a flat detector: a ring of radius r and
    width dr holds 2 pi r dr / pixel^2 of them, times the share of the ring on
    the detector (gaps, edges, beamstop)."""
    q = np.asarray(q_A, dtype=float)
    two_theta = 2.0 * np.arcsin(np.clip(q * wavelength_A / (4 * np.pi), 0, 1))
    radius = distance_mm * np.tan(two_theta)
    edges = np.concatenate([[q[0] - 0.5 * (q[1] - q[0])], 0.5 * (q[1:] + q[:-1]), [q[-1] + 0.5 * (q[-1] - q[-2])]])
    r_edges = distance_mm * np.tan(2.0 * np.arcsin(np.clip(edges * wavelength_A / (4 * np.pi), 0, 1)))
    return np.maximum(coverage * 2.0 * np.pi * radius * np.diff(r_edges) / pixel_mm**2, 1.0)


def integrated_pattern(q_A, wavelength_A: float, truth: PointTruth, rng: np.random.Generator, **kwargs):
    """I and its Poisson error per bin, as a pyFAI integration of a noisy frame gives them."""
    expected = expected_pattern(q_A, wavelength_A, truth, **kwargs)
    pixels = pixels_per_bin(q_A, wavelength_A)
    counts = rng.poisson(expected * pixels).astype(float)
    intensity = counts / pixels
    sigma = np.sqrt(np.maximum(counts, 1.0)) / pixels
    return intensity, sigma


@dataclass(frozen=True)
class Series:
    """A run's truth in measurement order, and its patterns."""

    name: str
    sample_phases: tuple[str, ...]
    marker: str | None
    points: tuple[PointTruth, ...]
    wavelength_A: float = 0.4133
    q_range_A: tuple[float, float] = (0.8, 6.5)
    npt: int = 3000

    @property
    def q_A(self) -> np.ndarray:
        return np.linspace(*self.q_range_A, self.npt)

    @property
    def pressure_GPa(self) -> np.ndarray:
        return np.array([p.pressure_GPa for p in self.points])

    def scale(self) -> float:
        """The run's one intensity scale: the strongest line of the first point's
        main sample phase peaks at :data:`PEAK_COUNTS` counts per pixel."""
        first = self.points[0]
        name = max(self.sample_phases, key=lambda p: first.amounts.get(p, 0.0))
        return PEAK_COUNTS / float(np.max(line_heights(name, first, self.wavelength_A)) * first.amounts[name])

    def patterns(self, seed: int, **kwargs) -> tuple[np.ndarray, np.ndarray]:
        """[N, npt] intensities and errors, one noise realisation per ``seed``."""
        rng = np.random.default_rng(seed)
        kwargs.setdefault("scale", self.scale())
        rows = [integrated_pattern(self.q_A, self.wavelength_A, p, rng, **kwargs) for p in self.points]
        return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])

    def fractions(self) -> dict[str, np.ndarray]:
        """The sample phases' fractions of formula units per point (the marker excluded)."""
        rows = [p.sample_fractions(self.sample_phases) for p in self.points]
        return {name: np.array([r[name] for r in rows]) for name in self.sample_phases}

    def volume_fu_A3(self, name: str) -> np.ndarray:
        """Truth volume per formula unit of ``name`` per point (NaN where absent)."""
        phase = get_phase(name)
        return np.array([phase.volume_fu_A3(p.cell(name)) if p.amounts.get(name, 0) > 0 else math.nan
                         for p in self.points])


def _ramp(p: float, start: float, end: float) -> float:
    """0 below ``start``, 1 above ``end``, linear between (``start > end`` ramps the other way)."""
    return float(np.clip((p - start) / (end - start), 0.0, 1.0))


def hgte_coexistence_series(npt: int = 3000) -> Series:
    """HgTe zinc blende -> cinnabar -> rock salt, 25 points to 14 GPa, with a
    long cinnabar + rock-salt coexistence (8 to 12.5 GPa) and 6-10 nm crystallites."""
    pressures = np.round(np.linspace(0.3, 14.0, 25), 3)
    sizes = {"HgTe-zb": 9.0, "HgTe-cinnabar": 7.0, "HgTe-rs": 6.0}
    points = []
    for p in pressures:
        zb = 1.0 - _ramp(p, 2.4, 3.6)
        rs = _ramp(p, 8.0, 12.5)
        points.append(PointTruth(float(p), {"HgTe-zb": zb, "HgTe-cinnabar": 1.0 - zb - rs, "HgTe-rs": rs}, sizes))
    return Series("hgte_coexistence", ("HgTe-zb", "HgTe-cinnabar", "HgTe-rs"), None, tuple(points), npt=npt)


def cdse_round_trip_series(npt: int = 3000, marker: str | None = "Au") -> Series:
    """CdSe nanocrystals (5 nm wurtzite, 4 nm rock salt), compressed to 7 GPa and
    released, with hysteresis: wurtzite -> rock salt between 2.6 and 4.2 GPa up,
    rock salt -> wurtzite between 1.6 and 0.4 GPa down; 20 nm gold beside them."""
    up = [0.2, 0.9, 1.7, 2.4, 3.0, 3.5, 4.1, 4.8, 5.9, 7.0]
    down = [6.1, 4.9, 3.8, 2.7, 1.9, 1.3, 0.8, 0.3]
    sizes = {"CdSe-wz": 5.0, "CdSe-rs": 4.0, "Au": 20.0}
    points = []
    for p in up:
        rs = _ramp(p, 2.6, 4.2)
        amounts = {"CdSe-wz": 1.0 - rs, "CdSe-rs": rs}
        if marker:
            amounts[marker] = 0.15
        points.append(PointTruth(p, amounts, sizes))
    for p in down:
        wz = _ramp(p, 1.6, 0.4)
        amounts = {"CdSe-wz": wz, "CdSe-rs": 1.0 - wz}
        if marker:
            amounts[marker] = 0.15
        points.append(PointTruth(p, amounts, sizes))
    return Series("cdse_round_trip", ("CdSe-wz", "CdSe-rs"), marker, tuple(points), npt=npt,
                  q_range_A=(1.0, 6.0))


# ---------------------------------------------------------------- size, strain and the instrument

def caglioti_fwhm_deg(two_theta_deg, caglioti_deg2) -> np.ndarray:
    """FWHM (deg) of Caglioti's law, FWHM^2 = U tan^2 theta + V tan theta + W
    (Caglioti, Paoletti & Ricci, Nucl. Instrum. 3, 223 (1958))."""
    u, v, w = caglioti_deg2
    t = np.tan(np.radians(np.asarray(two_theta_deg, dtype=float)) / 2.0)
    return np.sqrt(u * t * t + v * t + w)


def calibrant_pattern(two_theta_deg, wavelength_A: float, d_spacings_A, caglioti_deg2, rng: np.random.Generator, *,
                      peak_counts: float = 20000.0, background_counts: float = 200.0):
    """A calibrant's 1D pattern in 2theta (I, sigma): Gaussian lines of the
    instrument's Caglioti width only (micrometre crystallites, no strain), heights
    varying from line to line as a calibrant's do, over a smooth background, Poisson counts."""
    t = np.asarray(two_theta_deg, dtype=float)
    s = wavelength_A / (2.0 * np.asarray(d_spacings_A, dtype=float))
    centres = np.degrees(2.0 * np.arcsin(s[s < 1.0]))
    centres = centres[(centres > t[0] - 1.0) & (centres < t[-1] + 1.0)]
    fwhm = caglioti_fwhm_deg(centres, caglioti_deg2)
    expected = background_counts * (1.0 + np.exp(-t / 8.0))
    for j, (c, h) in enumerate(zip(centres, fwhm)):
        height = peak_counts / (1.0 + 0.05 * j) * (0.4 + 0.3 * ((7 * j) % 3))
        expected = expected + height * np.exp(-4.0 * math.log(2.0) * ((t - c) / h) ** 2)
    counts = rng.poisson(expected).astype(float)
    return counts, np.sqrt(np.maximum(counts, 1.0))


def size_strain_pattern(q_A, wavelength_A: float, truth: PointTruth, rng: np.random.Generator, *, microstrain: float,
                        caglioti_deg2, k: float = SCHERRER_K, peak_counts: float = PEAK_COUNTS):
    """A sample's integrated pattern (I, sigma per bin) whose broadening is
    Williamson & Hall's (Acta Metall. 1, 22 (1953)) exactly: a Lorentzian of FWHM
    2 pi k / D + 2 epsilon q in q (size and strain both Cauchy, so their widths
    add), convolved with the instrument's Gaussian of Caglioti's width in 2theta.
    True Voigt profiles in 2theta, the DAC background and Poisson counts as
    :func:`integrated_pattern`; the strongest line peaks near ``peak_counts``."""
    q = np.asarray(q_A, dtype=float)
    two_theta = np.degrees(2.0 * np.arcsin(np.clip(q * wavelength_A / (4 * np.pi), 0, 1)))
    tth_max = float(two_theta.max()) + 3.0
    parts = []
    for name, amount in truth.amounts.items():
        if amount <= 0:
            continue
        theta, weight = _lines(name, truth.cell(name), wavelength_A, tth_max)
        q_line = 4.0 * np.pi * np.sin(theta) / wavelength_A
        lorentz_q = 2.0 * np.pi * k / (truth.crystallite_nm[name] * 10.0) + 2.0 * microstrain * q_line
        gamma = np.degrees(lorentz_q * wavelength_A / (2.0 * np.pi * np.cos(theta))) / 2.0
        sigma = caglioti_fwhm_deg(np.degrees(2.0 * theta), caglioti_deg2) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        profile = voigt_profile(two_theta[None, :] - np.degrees(2.0 * theta)[:, None], sigma[:, None], gamma[:, None])
        parts.append(amount * (weight @ profile))
    lines = np.sum(parts, axis=0) if parts else np.zeros_like(q)
    expected = background(two_theta, truth.pressure_GPa) + peak_counts * lines / max(float(lines.max()), 1e-300)
    pixels = pixels_per_bin(q, wavelength_A)
    counts = rng.poisson(expected * pixels).astype(float)
    return counts / pixels, np.sqrt(np.maximum(counts, 1.0)) / pixels
