"""Predicted powder lines of a phase with a given cell, as a corrected pattern shows them."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

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


# Compression moves lines out in q: the families are listed down to this
# fraction of the shortest d a pattern reaches, so that a line entering the
# range at high pressure is already on the list.
_COMPRESSION_MARGIN = 1.3


@dataclass(frozen=True, eq=False)
class LineSet:
    """The lines of one phase for whole-pattern fits: its reflection families,
    found once, with positions and intensities for any cell.

    Attributes
    ----------
    phase : Phase
    hkl : ndarray (L, 3)
        A representative of each family.
    multiplicity : ndarray (L,)
    file_intensity : ndarray (L,) or None
        For a JCPDS phase, the file's intensities (they hold multiplicity and
        |F|^2 already); None for a phase with atoms.
    """

    phase: Phase
    hkl: np.ndarray
    multiplicity: np.ndarray
    file_intensity: np.ndarray | None
    _cache: dict = field(default_factory=dict, repr=False)

    def base_intensity(self, cell) -> np.ndarray:
        """m |F|^2 of each family in ``cell`` (the form factors fall with 1/d), or the file's intensities.

        Computed at the cell rounded to 1e-3 (|F|^2 changes by less than that between
        cells so close) and cached by it: the value depends on the rounded cell
        alone, never on which cell of the neighbourhood was asked for first, so
        results do not depend on what a process computed before.
        """
        if self.file_intensity is not None:
            return self.file_intensity
        if not len(self.hkl):
            return np.zeros(0)
        key = tuple(round(math.log(v), 3) for v in cell[:3]) + tuple(round(v, 2) for v in cell[3:])
        if key not in self._cache:
            if len(self._cache) > 256:
                self._cache.clear()
            rounded = tuple(math.exp(v) for v in key[:3]) + key[3:]
            self._cache[key] = self.multiplicity * np.abs(structure_factors(self.phase, self.hkl, cell=rounded)) ** 2
        return self._cache[key]


@functools.lru_cache(maxsize=64)
def line_set(phase: Phase, q_max_A: float, wavelength_A: float) -> LineSet:
    """The families of ``phase`` that may show up to ``q_max_A`` under compression.

    Listed at the phase's reference cell down to d = 2 pi / (1.3 q_max), or
    half the wavelength (backscattering). JCPDS lines listed with hkl = 000
    cannot move with a refined cell and are left out.
    """
    d_min = max(2 * np.pi / (q_max_A * _COMPRESSION_MARGIN), wavelength_A / 2 * 1.0001)
    refl = [r for r in reflections(phase, cell=phase.cell, d_min_A=d_min) if any(r.hkl)]
    hkl = np.array([r.hkl for r in refl], dtype=int).reshape(-1, 3)
    multiplicity = np.array([r.multiplicity for r in refl], dtype=float)
    file_intensity = None if phase.atoms else np.array([r.intensity for r in refl], dtype=float)
    return LineSet(phase, hkl, multiplicity, file_intensity)
