"""Predicted powder lines of a phase with a given cell, as a corrected pattern shows them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .structure import Phase, reflections, structure_factors

@dataclass(frozen=True)
class PredictedLine:
    """A predicted line: position and intensity as a corrected pattern shows it."""

    hkl: tuple[int, int, int]
    q_A: float
    intensity: float   # m |F|^2 L per cell (absolute scale); relative for JCPDS phases
    f2m: float         # m |F|^2 alone (the file's intensity for JCPDS phases)


def predicted_lines(phase: Phase, cell, wavelength_A: float, q_max_A: float,
                    min_intensity_percent: float) -> list[PredictedLine]:
    """Lines of ``phase`` with ``cell`` up to ``q_max_A``, weaker ones dropped.

    The patterns are corrected for polarization and solid angle, so a line's
    area is m |F|^2 times the Lorentz factor L = 1 / (sin^2 theta cos theta)
    of a powder ring, with no polarization term.
    """
    d_min = max(2 * np.pi / q_max_A, wavelength_A / 2 * 1.0001)
    refl = reflections(phase, cell=cell, d_min_A=d_min)
    if not refl:
        return []
    hkl = [r.hkl for r in refl]
    if phase.atoms:
        f2 = np.abs(structure_factors(phase, hkl, cell=cell)) ** 2
        base = f2 * np.array([r.multiplicity for r in refl])
    else:  # JCPDS lines: the file's relative intensities
        base = np.array([r.intensity for r in refl], dtype=float)
    q = np.array([2 * np.pi / r.d_A for r in refl])
    sin_theta = np.clip(q * wavelength_A / (4 * np.pi), 1e-9, 1 - 1e-12)
    lorentz = 1.0 / (sin_theta**2 * np.sqrt(1 - sin_theta**2))
    intensity = base * lorentz
    keep = intensity >= intensity.max() * min_intensity_percent / 100.0
    return [PredictedLine(tuple(h), float(qq), float(i), float(b)) for h, qq, i, b, k in zip(hkl, q, intensity, base, keep)
            if k]
