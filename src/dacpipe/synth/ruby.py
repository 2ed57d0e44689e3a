"""Synthetic ruby fluorescence spectra, and the ruby gauge of a pressure series.

The spectra are made with a physical model that is *not* the fit model:
each ruby line is a true Voigt profile (Lorentzian emission broadened by a
Gaussian instrument function) on a CCD bias plus a broad sloping
fluorescence background from the anvils, with Poisson and read noise and the
occasional cosmic-ray spike. Positions come from the chosen pressure scale,
so the truth written beside the data is the pressure itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import voigt_profile

from ..pressure.scales import get_scale

R1_R2_SPLITTING_CM1 = 29.4  # ambient R1-R2 splitting of ruby; nearly constant in energy


def r2_from_r1_nm(r1_nm: float, splitting_cm1: float = R1_R2_SPLITTING_CM1) -> float:
    """R2 lies ``splitting_cm1`` above R1 in wavenumber, i.e. at shorter wavelength."""
    return 1.0 / (1.0 / r1_nm + splitting_cm1 * 1e-7)


def ruby_spectrum(r1_nm: float, rng: np.random.Generator, *, window_nm: tuple[float, float] = (670.0, 730.0),
                  n_pixels: int = 1340, lorentz_fwhm_nm: float = 0.35, instrument_sigma_nm: float = 0.06,
                  r1_height: float = 12000.0, r2_ratio: float = 0.6, bias: float = 600.0,
                  read_noise: float = 6.0, spike_probability: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """One ruby fluorescence spectrum as a CCD spectrometer records it.

    Returns wavelengths (nm, increasing) and counts (integers as floats).
    """
    x = np.linspace(*window_nm, n_pixels)
    gamma = lorentz_fwhm_nm / 2.0  # voigt_profile takes the Lorentzian half width

    def line(center):
        shape = voigt_profile(x - center, instrument_sigma_nm, gamma)
        return shape / voigt_profile(0.0, instrument_sigma_nm, gamma)

    r2 = r2_from_r1_nm(r1_nm)
    centre = 0.5 * (window_nm[0] + window_nm[1])
    fluorescence = 0.04 * r1_height * np.exp(-(((x - centre - 25.0) / 45.0) ** 2)) + 0.5 * (x - centre)
    signal = bias + fluorescence + r1_height * line(r1_nm) + r2_ratio * r1_height * line(r2)
    counts = rng.poisson(np.clip(signal, 0, None)).astype(float) + rng.normal(0.0, read_noise, n_pixels)
    if rng.random() < spike_probability:
        where = rng.integers(0, n_pixels)
        counts[where] += rng.uniform(2000.0, 8000.0)
    return x, np.round(counts)


@dataclass(frozen=True)
class RubyPoint:
    """The ruby part of one pressure point.

    ``pressure_after_GPa`` is the true pressure after the exposure even when
    its spectrum was not written (a lost spectrum does not stop the cell from
    creeping); ``files`` maps ``before``/``after`` to the spectra written,
    relative to the run folder.
    """

    point: str
    pressure_before_GPa: float
    pressure_after_GPa: float
    files: dict[str, str]

    @property
    def exposure_pressure_GPa(self) -> float:
        """Sample pressure during the exposure: the mean of before and after, rounded to 1e-6 GPa.

        The rounding makes the value written in truth.tsv (6 decimals) the
        exact value the images were made with.
        """
        return round(0.5 * (self.pressure_before_GPa + self.pressure_after_GPa), 6)


def write_spectrum(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    """A two-column spectrum file as the spectrometer software writes it."""
    lines = ["wavelength_nm\tcounts"] + [f"{a:.4f}\t{b:.0f}" for a, b in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")


def write_ruby_series(folder: Path, prefix: str, pressures_GPa, rng: np.random.Generator, *,
                      creep_GPa: float = 0.12, sides: tuple[str, ...] = ("before", "after"),
                      lost: frozenset[tuple[str, str]] = frozenset(),
                      scale_name: str = "mao1986-hydrostatic", lambda0_nm: float = 694.24) -> list[RubyPoint]:
    """Ruby spectra before (and after) each exposure of a pressure series.

    Parameters
    ----------
    folder : Path
        Run folder; spectra go to ``folder/ruby/<prefix>_<point>_ruby_<side>.txt``.
    prefix : str
        File-name prefix of the run.
    pressures_GPa : sequence of float
        Pressure before each exposure; points are named p001, p002, ...
    rng : numpy.random.Generator
        Drawn in a fixed order per point: the creep, then per side written
        the R1 height and the spectrum's noise.
    creep_GPa : float
        The pressure after the exposure is the pressure before plus
        U(0, creep_GPa): the cell relaxes while the image is taken.
    sides : tuple of str
        Which spectra are taken at every point.
    lost : set of (point, side)
        Spectra that were not recorded (a shutter fault), as real runs have.
    scale_name, lambda0_nm
        Pressure scale and ambient R1 that turn pressures into R1 positions.
    """
    scale = get_scale(scale_name, "ruby")
    (folder / "ruby").mkdir(parents=True, exist_ok=True)
    out = []
    for i, p_before in enumerate(pressures_GPa, start=1):
        point = f"p{i:03d}"
        p_after = p_before + rng.uniform(0.0, creep_GPa)
        files = {}
        for side, p in (("before", p_before), ("after", p_after)):
            if side not in sides or (point, side) in lost:
                continue
            r1 = float(scale.position_at(p, lambda0_nm))
            x, y = ruby_spectrum(r1, rng, lorentz_fwhm_nm=0.35 + 0.02 * p,
                                 r1_height=rng.uniform(6000.0, 20000.0))
            name = f"ruby/{prefix}_{point}_ruby_{side}.txt"
            write_spectrum(folder / name, x, y)
            files[side] = name
        out.append(RubyPoint(point, float(p_before), float(p_after), files))
    return out


def thermally_shifted_r1_nm(pressure_GPa: float, temperature_K: float, *, scale_name: str = "mao1986-hydrostatic",
                            lambda0_nm: float = 694.24, reference_K: float = 298.0) -> float:
    """R1 of a ruby at ``pressure_GPa`` and ``temperature_K``, ``lambda0_nm`` measured at ``reference_K``.

    The pressure shift of the scale plus the thermal shift of Datchi et al.,
    High Press. Res. 27, 447 (2007) (:func:`dacpipe.pressure.scales.ruby_thermal_shift_nm`)
    between ``reference_K`` and ``temperature_K``: the exact inverse of
    :func:`dacpipe.pressure.scales.temperature_corrected_position`, so a
    pipeline that corrects for temperature reads ``pressure_GPa`` back and one
    that does not is off by the thermal shift (about -0.88 nm, -2.4 GPa, at 80 K).
    The pressure dependence of the thermal shift is neglected, as the paper
    does below ~100 GPa.
    """
    from ..pressure.scales import ruby_thermal_shift_nm

    r1 = float(get_scale(scale_name, "ruby").position_at(pressure_GPa, lambda0_nm))
    return r1 + float(ruby_thermal_shift_nm(temperature_K) - ruby_thermal_shift_nm(reference_K))


def ruby_lorentz_fwhm_nm(temperature_K: float) -> float:
    """Lorentzian FWHM of R1 at ``temperature_K`` (nm): 0.08 + 0.27 (T / 298 K)^2.

    A choice with the right trend: the homogeneous width of R1 comes from
    phonon (Raman) processes and falls steeply on cooling, to about a third
    of the room-temperature width near 80 K (0.10 nm here) where strain
    broadening in the cell is what is left; 0.35 nm at 298 K, the width of
    the room-temperature runs of data-sample.
    """
    return 0.08 + 0.27 * (float(temperature_K) / 298.0) ** 2


def thermally_shifted_sm_nm(pressure_GPa: float, temperature_K: float, *, scale_name: str = "datchi1997",
                            lambda0_nm: float | None = None, reference_K: float = 298.0) -> float:
    """The Sm:SrB4O7 0-0 line at ``pressure_GPa`` and ``temperature_K``, ``lambda0_nm`` measured at ``reference_K``.

    The pressure shift of the scale (Datchi et al., J. Appl. Phys. 81, 3333
    (1997), or Rashchenko et al., J. Appl. Phys. 117, 145902 (2015)) plus the
    line's thermal shift (:func:`dacpipe.pressure.scales.sm_srb4o7_thermal_shift_nm`,
    after Datchi et al., High Press. Res. 27, 447 (2007)) between
    ``reference_K`` and ``temperature_K``: the exact inverse of
    :func:`dacpipe.pressure.scales.temperature_corrected_position`, as
    :func:`thermally_shifted_r1_nm` is for ruby. ``lambda0_nm`` None: the
    scale's own ambient line. The pressure dependence of the thermal shift
    is neglected, as the paper does below ~100 GPa.
    """
    from ..pressure.scales import sm_srb4o7_thermal_shift_nm

    line = float(get_scale(scale_name, "sm-srb4o7").position_at(pressure_GPa, lambda0_nm))
    return line + float(sm_srb4o7_thermal_shift_nm(temperature_K) - sm_srb4o7_thermal_shift_nm(reference_K))


def sm_lorentz_fwhm_nm(temperature_K: float) -> float:
    """Lorentzian FWHM of the Sm:SrB4O7 0-0 line at ``temperature_K`` (nm): 0.05 + 0.10 (T / 298 K)^2.

    A choice with the right trend, not a published law: the 0-0 line is
    narrower than ruby's R1 at room temperature (0.15 nm here against
    0.35 nm) and broadens on heating by phonon processes, to 0.6 nm at
    700 K, where it is still one well-separated line (its use as a gauge
    at high temperature; Datchi et al. 1997).
    """
    return 0.05 + 0.10 * (float(temperature_K) / 298.0) ** 2


def sm_srb4o7_spectrum(line_nm: float, rng: np.random.Generator, *, window_nm: tuple[float, float] = (680.0, 692.0),
                       n_pixels: int = 268, lorentz_fwhm_nm: float = 0.15, instrument_sigma_nm: float = 0.06,
                       height: float = 12000.0, bias: float = 600.0, read_noise: float = 6.0,
                       spike_probability: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """One Sm:SrB4O7 fluorescence spectrum around its 0-0 line, as a CCD spectrometer records it.

    The physical model of :func:`ruby_spectrum` with one line: a true Voigt
    profile (Lorentzian emission, Gaussian instrument) on a CCD bias and the
    anvils' broad sloping fluorescence, Poisson and read noise, an
    occasional cosmic-ray spike. The same pixel pitch as the ruby spectra
    (0.045 nm) over a narrower window, 680-692 nm: the 0-0 line is all the
    gauge reads, and the fit's window (+-5 FWHM, at least +-1.5 nm) stays
    inside it for lines at 684-689 nm up to 0.7 nm wide (~0-15 GPa, to 750 K).
    The weaker 5D0-7F1 lines further to the red are left out (the fit takes
    the strongest line in a window of +-5 FWHM). Returns wavelengths (nm,
    increasing) and counts (integers as floats).
    """
    x = np.linspace(*window_nm, n_pixels)
    gamma = lorentz_fwhm_nm / 2.0
    shape = voigt_profile(x - line_nm, instrument_sigma_nm, gamma) / voigt_profile(0.0, instrument_sigma_nm, gamma)
    centre = 0.5 * (window_nm[0] + window_nm[1])
    fluorescence = 0.04 * height * np.exp(-(((x - centre - 25.0) / 45.0) ** 2)) + 0.5 * (x - centre)
    signal = bias + fluorescence + height * shape
    counts = rng.poisson(np.clip(signal, 0, None)).astype(float) + rng.normal(0.0, read_noise, n_pixels)
    if rng.random() < spike_probability:
        counts[rng.integers(0, n_pixels)] += rng.uniform(2000.0, 8000.0)
    return x, np.round(counts)
