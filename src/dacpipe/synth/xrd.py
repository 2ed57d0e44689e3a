"""Synthetic powder XRD images of the HgTe nanocrystal pressure series.

The model, from the sample outwards
-----------------------------------
1. **Phases.** HgTe goes zinc blende -> cinnabar -> rock salt on compression,
   with two coexistence ranges (:data:`TRANSITIONS`): the zinc-blende
   fraction is 1 up to 2.4 GPa and falls linearly to 0 at 3.6 GPa while
   cinnabar takes its place; cinnabar gives way to rock salt linearly between
   7.8 and 9.6 GPa. Each present phase has the cell of the phase library at
   the exposure pressure (:meth:`dacpipe.xrd.structure.Phase.cell_at`).
2. **Powder pattern** (:func:`hgte_pattern`), the azimuthal average of the
   image once solid angle and polarization are corrected::

       I(2th) = B(2th) + S * sum_phases x_p / (Z_p V_p) * sum_hkl m |F_hkl|^2 L(th_hkl) PV(2th - 2th_hkl)

   ``x_p`` is the phase fraction (see below), ``Z_p`` the formula units per
   cell, ``V_p`` the cell volume (A^3), ``m |F|^2`` the multiplicity times the
   squared structure factor of the library (IT92 form factors, B = 0.5 A^2),
   ``L = 1 / (sin^2 th cos th)`` the powder Lorentz factor of a ring,
   ``PV`` a unit-area pseudo-Voigt in degrees and ``S`` one constant
   (:func:`intensity_scale`) for the whole run: constant beam, exposure and
   sample. No polarization factor is in ``I``: pyFAI puts it in the image
   (step 3), and integration with ``polarization_factor=0.99`` takes it out.
3. **Image.** ``AzimuthalIntegrator.calcfrom1d`` spreads ``I`` over the
   detector, multiplying by pyFAI's solid angle (1 at the PONI) and its
   polarization factor for a horizontally polarized beam (0.99).
   calcfrom1d samples the profile at pixel centres (linear interpolation on a
   0.002 deg grid; it does not average over the pixel area).
4. **Diamond spots**: 3 to 8 single-crystal reflections of the anvils per
   frame, 2D Gaussians (sigma 1-1.5 px), each 20-100 times the brightest
   powder intensity within 1 deg of it; some sit on a strong ring, some just
   beside one (2-4 FWHM away), some anywhere. They are listed in
   ``truth_spots.tsv``.
5. **Beamstop** shadow (2 % transmission), then Poisson counting noise, then
   the module-gap rows set to -1 as a Pilatus writes them.

Phase fraction
--------------
``x_p`` is the fraction of HgTe formula units in phase p (a mole fraction;
the phases have one composition, so it is also the mass fraction). A
Rietveld-type fit with line intensities ``s_p m |F|^2 L`` recovers it as
``x_p = s_p Z_p V_p / sum_q s_q Z_q V_q`` (Hill & Howard, J. Appl. Cryst. 20,
467 (1987), with one molar mass). The volume fraction follows as
``x_p v_p / sum_q x_q v_q`` with ``v`` the volume per formula unit.

Peak widths
-----------
Scherrer size broadening ``H_L = K lambda / (D cos th)`` (K = 0.94, D the
crystallite size of the phase, :data:`CRYSTALLITE_NM`) is the Lorentzian
part and a constant instrumental width :data:`INSTRUMENT_FWHM_DEG` the
Gaussian part, combined into a pseudo-Voigt with the Thompson-Cox-Hastings
formulas (J. Appl. Cryst. 20, 79 (1987)).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..xrd.structure import Phase, reflections, structure_factors
from ..xrd.cells import cell_volume_A3
from ..xrd.library import get_phase
from ..core.profiles import pseudo_voigt_area, tch_fwhm_eta
from .detector import (PILATUS_DUMMY, DetectorGeometry, beamstop_mask, cached_integrator, write_mask_tiff,
                       write_poni)

# ---------------------------------------------------------------- the sample

PHASES = ("HgTe-zb", "HgTe-cinnabar", "HgTe-rs")
# (from, to, onset_GPa, end_GPa): the "from" fraction falls linearly from 1 at
# onset to 0 at end and the "to" phase takes its place.
TRANSITIONS = (("HgTe-zb", "HgTe-cinnabar", 2.4, 3.6), ("HgTe-cinnabar", "HgTe-rs", 7.8, 9.6))
# Nanocrystals: the high-pressure phases nucleate as smaller domains.
CRYSTALLITE_NM = {"HgTe-zb": 9.0, "HgTe-cinnabar": 7.0, "HgTe-rs": 6.0,
                  # Pressure markers: fine powders (sputtered gold is ~20 nm).
                  # A pixel of the small detector spans ~0.1 deg: the lines of
                  # a micron powder would fall in one bin, which no profile
                  # fit can place.
                  "Au": 20.0, "Pt": 20.0, "NaCl-B1": 20.0, "Ne": 20.0}
# A marker's amount, in formula units per formula unit of HgTe: a small
# chip of gold beside the sample still gives lines as strong as the sample's.
MARKER_AMOUNT = 0.3
SCHERRER_K = 0.94
INSTRUMENT_FWHM_DEG = 0.03

# ---------------------------------------------------------------- the beamline

# A 30.0 keV beam on a small Pilatus-like detector ~100 mm behind the sample,
# beam a few pixels off the middle and a slightly tilted detector.
XRD_GEOMETRY = DetectorGeometry(shape=(256, 256), pixel_m=172e-6, distance_m=0.09962, poni1_m=0.01983,
                                poni2_m=0.02391, rot1_rad=0.0087, rot2_rad=-0.0061, rot3_rad=0.0,
                                wavelength_A=0.4133)
POLARIZATION_FACTOR = 0.99
GAP_ROWS = (170, 177)  # [first, last) rows of the horizontal gap between two detector modules
BEAMSTOP_RADIUS_PX = 11.0  # shadow
BEAMSTOP_ARM_ANGLE_DEG = 215.0  # the arm leaves towards the lower left
BEAMSTOP_ARM_HALF_WIDTH_PX = 3.5
BEAMSTOP_TRANSMISSION = 0.02
# The user mask is drawn generously round the shadow, as one does in Dioptas.
MASK_MARGIN_PX = 2.5

# Height (counts) of the zinc-blende 111 line of pure zinc blende at 0 GPa:
# fixes S, so that the rings have a few hundred to a few thousand counts.
REFERENCE_PEAK_COUNTS = 2000.0
# The model's 2theta range: wider than the detector's so that the tails of
# lines just beyond the corners are included.
MODEL_TWO_THETA_MAX_DEG = 24.0
# calcfrom1d interpolates linearly on this grid: with peaks >= 0.25 deg wide the
# interpolation error is below 1e-4 of the peak height.
_GRID_STEP_DEG = 0.002


# ---------------------------------------------------------------- phases and lines


@functools.lru_cache(maxsize=None)
def _phase(name: str) -> Phase:
    return get_phase(name)


def phase_fractions(pressure_GPa: float) -> dict[str, float]:
    """Fraction of HgTe formula units in each phase at ``pressure_GPa`` (:data:`TRANSITIONS`)."""
    p = float(pressure_GPa)
    (_, _, zb_on, zb_end), (_, _, rs_on, rs_end) = TRANSITIONS
    zb = float(np.clip((zb_end - p) / (zb_end - zb_on), 0.0, 1.0))
    rs = float(np.clip((p - rs_on) / (rs_end - rs_on), 0.0, 1.0))
    return {"HgTe-zb": zb, "HgTe-cinnabar": 1.0 - zb - rs, "HgTe-rs": rs}


def phase_cell(name: str, pressure_GPa: float) -> tuple[float, ...]:
    """The library cell of phase ``name`` at ``pressure_GPa``.

    The library has no EOS for rock-salt HgTe and warns that its cell stays
    at the 8 GPa value; that is the cell the images are made with, so the
    warning is silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return tuple(float(v) for v in _phase(name).cell_at(float(pressure_GPa)))


@dataclass(frozen=True)
class Lines:
    """Powder lines of one phase in one cell, for the pattern model."""

    hkl: np.ndarray  # (n, 3)
    two_theta_deg: np.ndarray  # (n,)
    weight: np.ndarray  # m |F|^2 L / (Z V): area per unit phase fraction, before the scale S
    fwhm_deg: np.ndarray
    eta: np.ndarray  # Lorentzian share of the pseudo-Voigt


def powder_line_weights(phase: Phase, cell: tuple[float, ...], wavelength_A: float, two_theta_max_deg: float
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """hkl, Bragg angle theta (radians) and area per formula unit m |F|^2 L / (Z V) of
    each line of ``phase`` in ``cell`` up to ``two_theta_max_deg``, with the powder
    Lorentz factor L = 1 / (sin^2 theta cos theta) (polarization divided out)."""
    d_min = wavelength_A / (2.0 * math.sin(math.radians(two_theta_max_deg / 2.0)))
    refl = reflections(phase, cell=cell, d_min_A=d_min)
    hkl = np.array([r.hkl for r in refl])
    mult = np.array([r.multiplicity for r in refl], dtype=float)
    f2 = np.abs(structure_factors(phase, hkl, cell=cell)) ** 2
    d = np.array([r.d_A for r in refl])
    theta = np.arcsin(wavelength_A / (2.0 * d))
    lorentz = 1.0 / (np.sin(theta) ** 2 * np.cos(theta))
    return hkl, theta, mult * f2 * lorentz / (phase.z_formula_units * cell_volume_A3(cell))


@functools.lru_cache(maxsize=512)
def phase_lines(name: str, cell: tuple[float, ...], wavelength_A: float = XRD_GEOMETRY.wavelength_A) -> Lines:
    """The lines of ``name`` in ``cell`` up to :data:`MODEL_TWO_THETA_MAX_DEG`.

    Families that share a d (cinnabar 101 and 011) stay separate lines at
    the same angle; the pattern sums them.
    """
    hkl, theta, weight = powder_line_weights(_phase(name), cell, wavelength_A, MODEL_TWO_THETA_MAX_DEG)
    fwhm, eta = tch_fwhm_eta(np.degrees(SCHERRER_K * wavelength_A / (CRYSTALLITE_NM[name] * 10.0 * np.cos(theta))),
                     INSTRUMENT_FWHM_DEG)
    return Lines(hkl=hkl, two_theta_deg=np.degrees(2.0 * theta), weight=weight, fwhm_deg=fwhm, eta=eta)


@functools.lru_cache(maxsize=1)
def intensity_scale() -> float:
    """S: the zb 111 line of pure zinc blende at 0 GPa peaks at :data:`REFERENCE_PEAK_COUNTS`."""
    lines = phase_lines("HgTe-zb", phase_cell("HgTe-zb", 0.0))
    i111 = int(np.flatnonzero((np.abs(lines.hkl) == 1).all(axis=1))[0])
    height = lines.weight[i111] * pseudo_voigt_area(0.0, 0.0, lines.fwhm_deg[i111], lines.eta[i111])
    return REFERENCE_PEAK_COUNTS / float(height)


def background_counts(two_theta_deg, pressure_GPa: float) -> np.ndarray:
    """Smooth background of the corrected pattern (counts).

    A constant plus a slow rise (Compton scattering of the anvils), a decay
    at low angle (air and the beam's tails) and an amorphous hump of the
    pressure medium that moves out as the medium densifies.
    """
    t = np.asarray(two_theta_deg, dtype=float)
    hump_center_deg = 8.5 + 0.1 * float(pressure_GPa)
    return 40.0 + 5.0 * t + 350.0 * np.exp(-t / 2.0) + 150.0 * np.exp(-0.5 * ((t - hump_center_deg) / 3.0) ** 2)


def hgte_pattern(two_theta_deg, pressure_GPa: float, *, background: bool = True,
                 phases: tuple[str, ...] = PHASES, marker: str | None = None,
                 marker_amount: float = MARKER_AMOUNT) -> np.ndarray:
    """Noise-free powder pattern of the HgTe sample at ``pressure_GPa`` (counts).

    This is what ``integrate1d(..., unit="2th_deg", correctSolidAngle=True,
    polarization_factor=0.99)`` of a data-sample image gives without noise,
    diamond spots or beamstop: the counts of a pixel at the PONI with
    solid angle and polarization divided out.

    Parameters
    ----------
    two_theta_deg : array_like
        Scattering angles (degrees).
    pressure_GPa : float
        Sample pressure during the exposure (truth.tsv ``pressure_GPa``).
    background : bool
        Include :func:`background_counts`.
    phases : tuple of str
        Phases to include (default all; a phase with fraction 0 adds nothing).
    marker : str, optional
        A pressure marker of the library (Au, Pt, NaCl-B1, Ne) beside the
        sample, with its library cell at ``pressure_GPa``.
    marker_amount : float
        The marker's formula units per formula unit of HgTe.
    """
    t = np.asarray(two_theta_deg, dtype=float)
    flat = t.ravel()
    out = background_counts(flat, pressure_GPa) if background else np.zeros_like(flat)
    scale = intensity_scale()
    amounts = {name: f for name, f in phase_fractions(pressure_GPa).items() if name in phases}
    if marker is not None:
        amounts[marker] = marker_amount
    for name, fraction in amounts.items():
        if fraction <= 0.0:
            continue
        lines = phase_lines(name, phase_cell(name, pressure_GPa))
        for i in range(0, len(lines.weight), 16):  # blocks of lines: vectorised, memory bounded
            sl = slice(i, i + 16)
            profiles = pseudo_voigt_area(flat[None, :], lines.two_theta_deg[sl, None], lines.fwhm_deg[sl, None],
                                    lines.eta[sl, None])
            out = out + scale * fraction * (lines.weight[sl] @ profiles)
    return out.reshape(t.shape)


def phase_truth(pressure_GPa: float) -> dict[str, float]:
    """Truth columns of the phases at ``pressure_GPa``: ``<phase>/fraction``, ``/a_A``, ``/c_A``, ...

    Lattice parameters, volume and crystallite size of an absent phase are NaN.
    """
    out = {}
    for name, fraction in phase_fractions(pressure_GPa).items():
        present = fraction > 0.0
        cell = phase_cell(name, pressure_GPa)
        out[f"{name}/fraction"] = fraction
        out[f"{name}/a_A"] = cell[0] if present else math.nan
        if _phase(name).system in ("hexagonal", "trigonal"):
            out[f"{name}/c_A"] = cell[2] if present else math.nan
        out[f"{name}/volume_fu_A3"] = _phase(name).volume_fu_A3(cell) if present else math.nan
        out[f"{name}/crystallite_nm"] = CRYSTALLITE_NM[name] if present else math.nan
    return out


# ---------------------------------------------------------------- the detector


def gap_rows(shape: tuple[int, int] = XRD_GEOMETRY.shape) -> np.ndarray:
    """Boolean image, True on the module-gap rows."""
    gap = np.zeros(shape, dtype=bool)
    gap[GAP_ROWS[0]:GAP_ROWS[1], :] = True
    return gap


def beamstop_shadow(geometry: DetectorGeometry = XRD_GEOMETRY, margin_px: float = 0.0) -> np.ndarray:
    """Pixels behind the beamstop (its disc and arm), grown by ``margin_px``."""
    return beamstop_mask(geometry.shape, geometry.beam_center_px(), BEAMSTOP_RADIUS_PX + margin_px,
                         BEAMSTOP_ARM_ANGLE_DEG, BEAMSTOP_ARM_HALF_WIDTH_PX + margin_px)


def user_mask(geometry: DetectorGeometry = XRD_GEOMETRY) -> np.ndarray:
    """The mask written beside the images: the beamstop shadow with a margin.

    The module gap is not in it: its pixels are -1 in every frame, which a
    reader handles as Pilatus dummies (``dummy=-1``), as for a real Pilatus.
    """
    return beamstop_shadow(geometry, MASK_MARGIN_PX)


@dataclass(frozen=True)
class Spot:
    """One diamond (anvil) reflection on a frame.

    ``row``, ``col`` are array-index coordinates of its centre (integers at
    pixel centres); the spot adds ``peak_counts * exp(-r^2 / (2 sigma_px^2))``
    counts before the noise. ``local_counts`` is the powder pattern
    (:func:`hgte_pattern`, background included) at the spot's 2theta and
    ``ring_counts`` its maximum within 1 deg: ``peak_counts`` is 20 to 100
    times ``ring_counts``.
    """

    row: float
    col: float
    sigma_px: float
    peak_counts: float
    two_theta_deg: float
    local_counts: float
    ring_counts: float


_SPOT_KINDS = ("on_ring", "beside_ring", "anywhere")
_SPOT_KIND_P = (0.4, 0.3, 0.3)
_SPOT_CLEARANCE_PX = 6.0  # from the mask, the gap and the edges: the whole spot is on live pixels
_SPOT_SEPARATION_PX = 12.0


def _place_spots(pressure_GPa: float, tth_deg: np.ndarray, allowed: np.ndarray, ai,
                 rng: np.random.Generator) -> list[Spot]:
    """Draw the diamond spots of one frame."""
    # strong lines within the detector's reach: the ones a spot can sit on or beside
    tth_max = float(tth_deg[allowed].max())
    candidates = []
    scale = intensity_scale()
    for name, fraction in phase_fractions(pressure_GPa).items():
        if fraction <= 0.0:
            continue
        lines = phase_lines(name, phase_cell(name, pressure_GPa))
        for center, w, fwhm, eta in zip(lines.two_theta_deg, lines.weight, lines.fwhm_deg, lines.eta):
            height = scale * fraction * w * pseudo_voigt_area(0.0, 0.0, fwhm, eta)
            if 3.0 < center < tth_max - 0.5:
                candidates.append((float(center), float(fwhm), float(height)))
    top = max(c[2] for c in candidates)
    strong = [c for c in candidates if c[2] >= 0.15 * top]

    n_spots = int(rng.integers(3, 9))
    spots: list[Spot] = []
    pixel_deg = math.degrees(XRD_GEOMETRY.pixel_m / XRD_GEOMETRY.distance_m)
    while len(spots) < n_spots:
        kind = _SPOT_KINDS[int(rng.choice(3, p=_SPOT_KIND_P))]
        ok = allowed.copy()
        for s in spots:  # keep spots apart so that each is seen on its own
            rr, cc = np.ogrid[:ok.shape[0], :ok.shape[1]]
            ok &= (rr - s.row) ** 2 + (cc - s.col) ** 2 > _SPOT_SEPARATION_PX**2
        if kind == "anywhere":
            where = np.flatnonzero(ok)
        else:
            center, fwhm, _ = strong[int(rng.integers(len(strong)))]
            sign = 1.0 if rng.random() < 0.5 else -1.0
            offset = rng.uniform(0.0, 0.3) if kind == "on_ring" else rng.uniform(2.0, 4.0)
            target = center + sign * offset * fwhm
            where = np.flatnonzero(ok & (np.abs(tth_deg - target) < 0.5 * pixel_deg))
        if len(where) == 0:
            continue  # that ring does not cross the free part of the detector: draw again
        k = int(where[rng.integers(len(where))])
        # rounded to what truth_spots.tsv holds: the frame is drawn from the written values
        row = round(k // ok.shape[1] + rng.uniform(-0.5, 0.5), 3)
        col = round(k % ok.shape[1] + rng.uniform(-0.5, 0.5), 3)
        sigma = round(rng.uniform(1.0, 1.5), 3)
        factor = rng.uniform(20.0, 100.0)
        tth = float(np.degrees(ai.tth(np.array([row]), np.array([col]))[0]))
        local = float(hgte_pattern(np.array([tth]), pressure_GPa)[0])
        ring = float(hgte_pattern(np.linspace(tth - 1.0, tth + 1.0, 2001), pressure_GPa).max())
        spots.append(Spot(row=row, col=col, sigma_px=sigma,
                          peak_counts=float(round(factor * ring)), two_theta_deg=tth, local_counts=local,
                          ring_counts=ring))
    return spots


def _spot_image(shape, spots: list[Spot]) -> np.ndarray:
    rows, cols = np.indices(shape, dtype=float)
    out = np.zeros(shape)
    for s in spots:
        out += s.peak_counts * np.exp(-((rows - s.row) ** 2 + (cols - s.col) ** 2) / (2.0 * s.sigma_px**2))
    return out


def xrd_frame(pressure_GPa: float, rng: np.random.Generator, geometry: DetectorGeometry = XRD_GEOMETRY,
              marker: str | None = None) -> tuple[np.ndarray, list[Spot], np.ndarray]:
    """One detector frame of the sample at ``pressure_GPa`` (with ``marker``
    beside it, see :func:`hgte_pattern`).

    Returns
    -------
    counts : (rows, cols) int32
        The frame as the detector writes it (gap rows = -1).
    spots : list of Spot
    expected : (rows, cols) float
        The noise-free powder image (pattern x solid angle x polarization,
        no spots, no beamstop), for checks.
    """
    ai = cached_integrator(geometry)
    tth_deg = ai.center_array(geometry.shape, unit="2th_deg", scale=True)
    grid = np.arange(0.0, float(tth_deg.max()) + 0.5, _GRID_STEP_DEG)
    expected = ai.calcfrom1d(grid, hgte_pattern(grid, pressure_GPa, marker=marker), shape=geometry.shape,
                             dim1_unit="2th_deg", correctSolidAngle=True, polarization_factor=POLARIZATION_FACTOR)

    blocked = user_mask(geometry) | gap_rows(geometry.shape)
    blocked[:1, :] = blocked[-1:, :] = True
    blocked[:, :1] = blocked[:, -1:] = True
    allowed = ndimage.distance_transform_edt(~blocked) > _SPOT_CLEARANCE_PX
    spots = _place_spots(pressure_GPa, tth_deg, allowed, ai, rng)

    signal = expected + _spot_image(geometry.shape, spots)
    signal[beamstop_shadow(geometry)] *= BEAMSTOP_TRANSMISSION
    counts = rng.poisson(signal).astype(np.int32)
    counts[gap_rows(geometry.shape)] = PILATUS_DUMMY
    return counts, spots, expected


def q_of_two_theta(two_theta_deg, wavelength_A: float = XRD_GEOMETRY.wavelength_A):
    """q (1/A) of 2theta (degrees)."""
    return 4.0 * np.pi * np.sin(np.radians(np.asarray(two_theta_deg, dtype=float)) / 2.0) / wavelength_A


def frame_from_pattern(pattern, rng: np.random.Generator, geometry: DetectorGeometry = XRD_GEOMETRY) -> np.ndarray:
    """A detector frame of a powder pattern ``pattern(two_theta_deg) -> counts``: spread over
    the detector with solid angle and polarization, the beamstop's shadow, Poisson noise,
    the module gap at -1. No diamond spots."""
    ai = cached_integrator(geometry)
    tth_deg = ai.center_array(geometry.shape, unit="2th_deg", scale=True)
    grid = np.arange(0.0, float(tth_deg.max()) + 0.5, _GRID_STEP_DEG)
    expected = ai.calcfrom1d(grid, pattern(grid), shape=geometry.shape, dim1_unit="2th_deg",
                             correctSolidAngle=True, polarization_factor=POLARIZATION_FACTOR)
    expected[beamstop_shadow(geometry)] *= BEAMSTOP_TRANSMISSION
    counts = rng.poisson(np.maximum(expected, 0.0)).astype(np.int32)
    counts[gap_rows(geometry.shape)] = PILATUS_DUMMY
    return counts


def write_xrd_geometry(folder: Path, geometry: DetectorGeometry = XRD_GEOMETRY) -> dict[str, str]:
    """The PONI file and the beamstop mask of the run; returns their names (relative to ``folder``)."""
    write_poni(folder / "xrd.poni", geometry)
    write_mask_tiff(folder / "xrd.mask", user_mask(geometry))
    return {"poni": "xrd.poni", "mask": "xrd.mask"}
