"""Synthetic ruby fluorescence spectra and the ruby part of the ``hgte_thz`` run.

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

from ..scales import get_scale

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
class RubyPointTruth:
    point: str
    pressure_before_GPa: float
    pressure_after_GPa: float  # NaN when the point has no spectrum after
    temperature_K: float


# The HgTe nanocrystal series: compression in uneven steps, as at a beamline,
# through zinc blende (to ~2.5 GPa), cinnabar and rock salt (from ~8 GPa).
HGTE_PRESSURES_GPA = (0.15, 0.6, 1.1, 1.6, 2.1, 2.7, 3.4, 4.2, 5.1, 6.2, 7.4, 8.7, 10.1, 11.6)


def _write_spectrum(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    lines = ["wavelength_nm\tcounts"] + [f"{a:.4f}\t{b:.0f}" for a, b in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")


def write_hgte_run(folder: Path, rng: np.random.Generator, scale_name: str = "mao1986-hydrostatic",
                   lambda0_nm: float = 694.24) -> list[RubyPointTruth]:
    """Write the ``hgte_thz`` run: ruby spectra before and after each exposure, sheet and truth."""
    scale = get_scale(scale_name, "ruby")
    (folder / "ruby").mkdir(parents=True, exist_ok=True)
    truths, rows = [], []
    for i, p_before in enumerate(HGTE_PRESSURES_GPA, start=1):
        point = f"p{i:03d}"
        # Pressure creeps up while the cell relaxes during the exposure.
        p_after = p_before + rng.uniform(0.0, 0.12)
        # One point lost its "after" spectrum (a shutter fault), as real runs do.
        has_after = point != "p006"
        files = {}
        for side, p in (("before", p_before), ("after", p_after)):
            if side == "after" and not has_after:
                continue
            r1 = float(scale.position_at(p, lambda0_nm))
            x, y = ruby_spectrum(r1, rng, lorentz_fwhm_nm=0.35 + 0.02 * p,
                                 r1_height=rng.uniform(6000.0, 20000.0))
            name = f"ruby/hgte_{point}_ruby_{side}.txt"
            _write_spectrum(folder / name, x, y)
            files[side] = name
        truths.append(RubyPointTruth(point, p_before, p_after if has_after else np.nan, 298.0))
        rows.append([point, files["before"], files.get("after", ""), "298", f"step {i}"])

    sheet = ["\t".join(["point", "ruby_before", "ruby_after", "temperature_K", "note"])]
    sheet += ["\t".join(r) for r in rows]
    (folder / "points.tsv").write_text("\n".join(sheet) + "\n")

    truth = [f"# truth of the synthetic run: scale {scale_name}, lambda0_nm {lambda0_nm}",
             "\t".join(["point", "pressure_before_GPa", "pressure_after_GPa", "temperature_K"])]
    for t in truths:
        after = "" if np.isnan(t.pressure_after_GPa) else f"{t.pressure_after_GPa:.6f}"
        truth.append(f"{t.point}\t{t.pressure_before_GPa:.6f}\t{after}\t{t.temperature_K:g}")
    (folder / "truth.tsv").write_text("\n".join(truth) + "\n")
    return truths
