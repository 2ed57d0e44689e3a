"""Synthetic SAXS images of a nanocrystal superlattice shrinking under pressure.

The sample: HgTe nanocrystals (spheres, 6.0 nm core diameter at 0 GPa,
8 % Gaussian polydispersity in radius) capped with ligands and packed in an
fcc superlattice. The superlattice is soft: its lattice constant shrinks
linearly by :data:`STRAIN_PER_GPA` per GPa from :data:`A0_NM`, while the cores
shrink only as bulk zinc-blende HgTe does (the library EOS). The coherent
superlattice domains shrink as the packing gets disordered.

The profile (:func:`saxs_profile`, the azimuthal average after dark, flat,
solid-angle and polarization correction)::

    I(q) = K P(q) S(q) + B(q)

* ``P(q)``: the sphere form factor ``[3 (sin x - x cos x) / x^3]^2``,
  ``x = q R``, averaged over the radius distribution with volume-squared
  weights, normalised to P(0) = 1;
* ``S(q) = 1 + A sum_hkl (m_hkl / 8) (q_111 / q_hkl)^2 exp(-(q u)^2) G(q - q_hkl)``
  over the fcc reflections 111, 200, 220, 311, 222 (q_hkl = 2 pi
  sqrt(h^2 + k^2 + l^2) / a), with multiplicities m, the powder Lorentz
  factor 1/q^2, a Debye-Waller factor for the disorder of the packing
  (u = :data:`DISORDER_NM`) and G a Gaussian of height 1 whose FWHM is the
  Scherrer width in q, ``2 pi K / L`` (K = 0.94, L the domain size);
* ``B(q)``: a constant and parasitic scattering from slits and windows
  falling as q^-3;
* ``K`` = :data:`FORWARD_COUNTS`, constant over the run.

The image is ``flat * Poisson(signal) + dark``-like: ``counts =
Poisson(flat * calcfrom1d(I)) + dark offset + read noise``, with the flat
(pixel response, ~1 +- 3 %) and a dark frame written beside the run, so that
pyFAI's ``(I - dark) / flat`` correction gives back ``I``.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from .detector import DetectorGeometry, beamstop_mask, cached_integrator, write_edf, write_mask_tiff, write_poni
from .xrd import phase_cell

# ---------------------------------------------------------------- the sample

A0_NM = 11.6  # superlattice lattice constant at 0 GPa
STRAIN_PER_GPA = 0.017  # linear: a = a0 (1 - 0.017 P)
CORE_DIAMETER0_NM = 6.0
POLYDISPERSITY = 0.08  # sigma_R / R of a Gaussian radius distribution
DOMAIN0_NM = 90.0  # coherent superlattice domain size at 0 GPa ...
DOMAIN_LOSS_PER_GPA = 0.06  # ... shrinking linearly by 6 % of it per GPa
DISORDER_NM = 0.5  # rms displacement of the nanocrystals from their lattice sites
STRUCTURE_AMPLITUDE = 4.0  # S - 1 at the top of the 111 peak, before Debye-Waller
SCHERRER_K = 0.94
FCC_REFLECTIONS = ((1, 1, 1, 8), (2, 0, 0, 6), (2, 2, 0, 12), (3, 1, 1, 24), (2, 2, 2, 8))  # h, k, l, m
FORWARD_COUNTS = 3000.0

# ---------------------------------------------------------------- the beamline

# 12.0 keV. The detector is close for SAXS (0.45 m, not the 2-3 m of a
# SAXS beamline): on 192 pixels of 172 um it has to reach the 222 reflection
# of an 11-12 nm superlattice, q ~ 2 1/nm; at 3 m it would stop at 0.5 1/nm,
# below the first peak.
SAXS_GEOMETRY = DetectorGeometry(shape=(192, 192), pixel_m=172e-6, distance_m=0.4521, poni1_m=0.015742,
                                 poni2_m=0.017453, rot1_rad=0.0, rot2_rad=0.0, rot3_rad=0.0, wavelength_A=1.0332)
POLARIZATION_FACTOR = 0.99
BEAMSTOP_RADIUS_PX = 8.0
BEAMSTOP_ARM_ANGLE_DEG = 90.0  # the arm goes up, to row 0
BEAMSTOP_ARM_HALF_WIDTH_PX = 2.5
BEAMSTOP_TRANSMISSION = 0.01
MASK_MARGIN_PX = 2.0
DARK_OFFSET_COUNTS = 10.0
DARK_NOISE_COUNTS = 1.5
FLAT_RMS = 0.03
_GRID_STEP_INV_NM = 1e-4

SAXS_PRESSURES_GPA = (0.2, 1.3, 2.5, 3.6, 4.8, 6.0)


def lattice_constant_nm(pressure_GPa: float) -> float:
    """Superlattice lattice constant a (nm) at ``pressure_GPa``."""
    return A0_NM * (1.0 - STRAIN_PER_GPA * float(pressure_GPa))


def core_diameter_nm(pressure_GPa: float) -> float:
    """Nanocrystal core diameter (nm): bulk zinc-blende HgTe compression (library EOS)."""
    ratio = phase_cell("HgTe-zb", pressure_GPa)[0] / phase_cell("HgTe-zb", 0.0)[0]
    return CORE_DIAMETER0_NM * ratio


def domain_nm(pressure_GPa: float) -> float:
    """Coherent superlattice domain size (nm)."""
    return DOMAIN0_NM * (1.0 - DOMAIN_LOSS_PER_GPA * float(pressure_GPa))


def superlattice_truth(pressure_GPa: float) -> dict[str, float]:
    """Truth columns of the superlattice at ``pressure_GPa``."""
    a = lattice_constant_nm(pressure_GPa)
    return {"a_nm": a, "d111_nm": a / math.sqrt(3.0), "q111_inv_nm": 2.0 * math.pi * math.sqrt(3.0) / a,
            "nn_distance_nm": a / math.sqrt(2.0), "domain_nm": domain_nm(pressure_GPa),
            "core_diameter_nm": core_diameter_nm(pressure_GPa), "polydispersity": POLYDISPERSITY}


def sphere_form_factor(q_inv_nm, diameter_nm: float, polydispersity: float = POLYDISPERSITY) -> np.ndarray:
    """Polydisperse sphere form factor P(q), P(0) = 1.

    Gaussian number distribution of radii (relative sigma ``polydispersity``,
    cut at +-4 sigma), each sphere weighted by its volume squared.
    """
    q = np.asarray(q_inv_nm, dtype=float)
    r0 = 0.5 * diameter_nm
    radii = r0 * (1.0 + polydispersity * np.linspace(-4.0, 4.0, 81))
    weights = np.exp(-0.5 * np.linspace(-4.0, 4.0, 81) ** 2) * radii**6
    x = np.outer(q, radii)
    with np.errstate(invalid="ignore", divide="ignore"):
        amp = np.where(x > 1e-6, 3.0 * (np.sin(x) - x * np.cos(x)) / np.where(x > 1e-6, x, 1.0) ** 3,
                       1.0 - x**2 / 10.0)
    return (amp**2 @ weights) / weights.sum()


def structure_factor(q_inv_nm, pressure_GPa: float) -> np.ndarray:
    """S(q) of the fcc superlattice at ``pressure_GPa`` (see the module notes)."""
    q = np.asarray(q_inv_nm, dtype=float)
    a = lattice_constant_nm(pressure_GPa)
    sigma_q = 2.0 * math.pi * SCHERRER_K / domain_nm(pressure_GPa) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    q111 = 2.0 * math.pi * math.sqrt(3.0) / a
    out = np.ones_like(q)
    for h, k, l, m in FCC_REFLECTIONS:  # noqa: E741 - Miller index
        qh = 2.0 * math.pi * math.sqrt(h * h + k * k + l * l) / a
        amp = STRUCTURE_AMPLITUDE * (m / 8.0) * (q111 / qh) ** 2 * math.exp(-((qh * DISORDER_NM) ** 2))
        out = out + amp * np.exp(-0.5 * ((q - qh) / sigma_q) ** 2)
    return out


def saxs_background(q_inv_nm) -> np.ndarray:
    q = np.asarray(q_inv_nm, dtype=float)
    return 3.0 + 0.4 * np.maximum(q, 0.05) ** -3


def saxs_profile(q_inv_nm, pressure_GPa: float, *, background: bool = True) -> np.ndarray:
    """Noise-free corrected SAXS profile I(q) (counts) at ``pressure_GPa``, q in 1/nm.

    What ``integrate1d(..., unit="q_nm^-1", dark=dark, flat=flat,
    correctSolidAngle=True, polarization_factor=0.99)`` gives for a frame
    without noise.
    """
    q = np.asarray(q_inv_nm, dtype=float)
    out = FORWARD_COUNTS * sphere_form_factor(q, core_diameter_nm(pressure_GPa)) * structure_factor(q, pressure_GPa)
    return out + saxs_background(q) if background else out


# ---------------------------------------------------------------- the detector


def user_mask(geometry: DetectorGeometry = SAXS_GEOMETRY, margin_px: float = MASK_MARGIN_PX) -> np.ndarray:
    """Beamstop disc and arm (the shadow grown by ``margin_px``)."""
    return beamstop_mask(geometry.shape, geometry.beam_center_px(), BEAMSTOP_RADIUS_PX + margin_px,
                         BEAMSTOP_ARM_ANGLE_DEG, BEAMSTOP_ARM_HALF_WIDTH_PX + margin_px)


@functools.lru_cache(maxsize=1)
def _q_max(geometry: DetectorGeometry = SAXS_GEOMETRY) -> float:
    return float(cached_integrator(geometry).center_array(geometry.shape, unit="q_nm^-1", scale=True).max())


def detector_response(rng: np.random.Generator, shape=SAXS_GEOMETRY.shape) -> tuple[np.ndarray, np.ndarray]:
    """The flat (float32, ~1) and the dark frame (uint16) written beside the run."""
    flat = np.clip(1.0 + FLAT_RMS * rng.standard_normal(shape), 0.85, 1.15).astype(np.float32)
    dark = dark_frame(rng, shape).astype(np.uint16)
    return flat, dark


def dark_frame(rng: np.random.Generator, shape=SAXS_GEOMETRY.shape) -> np.ndarray:
    """A frame without beam: the offset plus read noise, rounded to counts."""
    return np.round(DARK_OFFSET_COUNTS + DARK_NOISE_COUNTS * rng.standard_normal(shape))


def saxs_frame(pressure_GPa: float, flat: np.ndarray, rng: np.random.Generator,
               geometry: DetectorGeometry = SAXS_GEOMETRY) -> np.ndarray:
    """One SAXS frame (int32) at ``pressure_GPa`` through the detector's ``flat``."""
    ai = cached_integrator(geometry)
    grid = np.arange(0.0, _q_max(geometry) + 0.2, _GRID_STEP_INV_NM)
    expected = ai.calcfrom1d(grid, saxs_profile(grid, pressure_GPa), shape=geometry.shape, dim1_unit="q_nm^-1",
                             correctSolidAngle=True, polarization_factor=POLARIZATION_FACTOR)
    shadow = user_mask(geometry, margin_px=0.0)
    expected[shadow] *= BEAMSTOP_TRANSMISSION
    counts = rng.poisson(expected * flat) + dark_frame(rng, geometry.shape)
    return counts.astype(np.int32)


def write_saxs_detector(folder: Path, rng: np.random.Generator,
                        geometry: DetectorGeometry = SAXS_GEOMETRY) -> tuple[dict[str, str], np.ndarray]:
    """PONI, mask, flat and dark of the SAXS detector; returns the names and the flat."""
    write_poni(folder / "saxs.poni", geometry)
    write_mask_tiff(folder / "saxs.mask", user_mask(geometry))
    flat, dark = detector_response(rng, geometry.shape)
    write_edf(folder / "saxs_flat.edf", flat)
    write_edf(folder / "saxs_dark.edf", dark)
    names = {"poni": "saxs.poni", "mask": "saxs.mask", "flat": "saxs_flat.edf", "dark": "saxs_dark.edf"}
    return names, flat
