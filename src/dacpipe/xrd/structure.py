"""Crystalline phases and their predicted powder reflections.

A :class:`Phase` is a crystal structure (space group, cell, asymmetric unit)
plus an equation of state, or, for phases read from JCPDS files, a list of
lines with fixed relative intensities. :func:`reflections` gives, for a phase
at a pressure, the d-spacings and relative intensities of its powder lines:
what the synthetic-image generator draws and what the indexer matches.

What comes from where
---------------------
* Symmetry: the space-group operations come from gemmi (``gemmi.SpaceGroup``),
  never from a hand-written table. The atoms of the cell are the images of
  the asymmetric unit under every operation, duplicates removed.
* Scattering factors: the IT92 four-Gaussian fits of the neutral atoms
  (International Tables for Crystallography Vol. C, Table 6.1.1.4), as
  shipped by gemmi (``gemmi.Element(symbol).it92``). Anomalous dispersion
  (f', f'') is left out: it changes relative intensities by a few percent at
  the energies used for DAC work (20-40 keV), far less than texture and
  grain statistics of a compressed powder do.
* Systematic absences are not listed anywhere: a reflection is absent when
  its structure factor, summed over the atoms of the cell, is zero.
* Compression: the cell at pressure P is the reference cell scaled
  isotropically by ``(V(P) / V(P_ref))**(1/3)``, V from the phase's EOS
  (:mod:`dacpipe.eos`). Axial ratios do not change with pressure; for the
  non-cubic phases here (wurtzite, cinnabar, orthorhombic perovskite) that is
  an approximation that a fit of the measured cell replaces (pass ``cell=``
  to :func:`reflections`).

The phases dacpipe knows by name are :mod:`dacpipe.xrd.library`; phases read
from JCPDS and CIF files come through :mod:`dacpipe.io.phase_files`.

Units are in the names: ``_A`` angstrom, ``_A3`` cubic angstrom, ``_GPa``.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import gemmi
import numpy as np

from ..eos.models import EosParams
from ..eos.models import volume_A3 as eos_volume_A3
from ..io.phase_files import JcpdsLine, Site
from .cells import SYSTEMS, Cell, cell_volume_A3, d_spacing_A


# Relative tolerance on d below which two reflections count as one line.
D_REL_TOL = 1e-6
# |F|^2 below this fraction of the strongest |F|^2 is a zero of the structure
# factor (a systematic or structural extinction), not a weak line: exact
# cancellations leave ~1e-30 of rounding, weak real lines (zinc blende 200 of
# HgTe) are ~1e-2.
EXTINCTION_REL = 1e-9
# Fractional-coordinate distance below which two images of one site are the
# same atom. CIF files round 1/3 to 0.3333, so images land ~1e-4 apart.
SAME_POSITION_FRAC = 2e-3


# --------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reflection:
    """One powder line.

    Attributes
    ----------
    hkl : tuple of int
        Representative indices of the family (the member with the fewest
        negative indices, then the largest h, k, l).
    d_A : float
        d-spacing at the requested pressure (or of the given cell).
    multiplicity : int
        Number of symmetry-equivalent hkl (Friedel pairs included) in the
        family; for JCPDS lines, the multiplicity in the holohedral Laue group
        of the crystal system, since a JCPDS file has no space group.
    intensity : float
        Relative intensity, strongest line of the list = 100.
    """

    hkl: tuple[int, int, int]
    d_A: float
    multiplicity: int
    intensity: float

    def two_theta_deg(self, wavelength_A: float) -> float:
        """Bragg angle 2 theta (degrees) of this line for ``wavelength_A``."""
        return math.degrees(2.0 * math.asin(wavelength_A / (2.0 * self.d_A)))


@dataclass(frozen=True)
class Phase:
    """A crystalline phase: structure, cell and equation of state.

    Attributes
    ----------
    name : str
        Library name, e.g. ``"HgTe-zb"``, or the file stem for a phase read
        from a file.
    formula : str
        Chemical formula of one formula unit ("" when a JCPDS file gives none).
    system : str
        Crystal system: one of :data:`SYSTEMS`.
    space_group : str
        Hermann-Mauguin symbol as gemmi reads it (``"F -4 3 m"``,
        ``"P 31 2 1"``); "" for JCPDS phases, which have none.
    cell : tuple
        a, b, c (A), alpha, beta, gamma (deg) at ``reference_pressure_GPa``
        (ambient for every phase stable at ambient).
    atoms : tuple of Site
        Asymmetric unit; empty for JCPDS phases, which list lines instead.
    z_formula_units : int
        Formula units per cell (0 = unknown, as for JCPDS phases).
    eos : EosParams or None
        Equation of state with V0 per CELL (A^3, the volume at P = 0). None:
        the lines do not move with pressure (JCPDS K0 = 0, or no published
        EOS; a library phase without an EOS warns when asked for P != P_ref).
    eos_reference : str
        Where the EOS comes from.
    reference : str
        Where the structure (cell, positions) comes from.
    lines : tuple of JcpdsLine
        For JCPDS phases: the listed lines (d0, I, hkl).
    reference_pressure_GPa : float
        Pressure at which ``cell`` was measured. 0 for phases stable at
        ambient; a high-pressure phase (rock salt, cinnabar) is given at a
        pressure where it was observed, and its EOS V0 is the P = 0 volume
        that EOS implies.
    unconfirmed : tuple of str
        Parameters whose values could not be checked against the cited
        source when the library was written (e.g. ``("c", "K0_GPa")``).
        Empty means every number was checked. Use such values as starting
        points for a fit, not as truth.
    """

    name: str
    formula: str
    system: str
    space_group: str
    cell: Cell
    atoms: tuple[Site, ...]
    z_formula_units: int
    eos: EosParams | None
    eos_reference: str
    reference: str
    lines: tuple[JcpdsLine, ...] = ()
    reference_pressure_GPa: float = 0.0
    unconfirmed: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if self.system not in SYSTEMS:
            raise ValueError(f"phase {self.name}: crystal system {self.system!r} is not one of {SYSTEMS}")
        if len(self.cell) != 6:
            raise ValueError(f"phase {self.name}: cell must be (a, b, c, alpha, beta, gamma)")

    def cell_at(self, pressure_GPa: float) -> Cell:
        """The cell at ``pressure_GPa``, scaled isotropically along the EOS.

        a, b, c are multiplied by ``(V(P) / V(P_ref))**(1/3)`` and the angles
        are kept. The ratio, rather than V(P) itself, is applied so that a
        cell whose volume differs slightly from the EOS V0 (e.g. a JCPDS a0
        with a V0 from another paper) keeps its own ambient value.

        Without an EOS the cell does not move: that is what K0 = 0 means in a
        JCPDS file. A phase with atoms but no EOS warns, because then the
        lines staying put is a lack of data, not a choice.
        """
        pressure_GPa = float(pressure_GPa)
        if self.eos is None:
            if self.atoms and pressure_GPa != self.reference_pressure_GPa:
                warnings.warn(
                    f"phase {self.name} has no equation of state: its cell is kept at its "
                    f"{self.reference_pressure_GPa:g} GPa value for {pressure_GPa:g} GPa",
                    stacklevel=2,
                )
            return tuple(float(v) for v in self.cell)  # type: ignore[return-value]
        if pressure_GPa == self.reference_pressure_GPa:
            return tuple(float(v) for v in self.cell)  # type: ignore[return-value]
        v = float(np.asarray(eos_volume_A3(self.eos, pressure_GPa), dtype=float))
        if self.reference_pressure_GPa == 0.0:
            v_ref = float(self.eos.V0_A3)
        else:
            v_ref = float(np.asarray(eos_volume_A3(self.eos, self.reference_pressure_GPa), dtype=float))
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"phase {self.name}: the EOS gives no volume at {pressure_GPa:g} GPa")
        s = (v / v_ref) ** (1.0 / 3.0)
        a, b, c, al, be, ga = self.cell
        return (a * s, b * s, c * s, float(al), float(be), float(ga))

    def volume_fu_A3(self, cell: Sequence[float] | None = None) -> float:
        """Volume per formula unit (A^3) of ``cell`` (default: the phase's cell)."""
        if self.z_formula_units <= 0:
            raise ValueError(f"phase {self.name}: formula units per cell unknown (Z = {self.z_formula_units})")
        return cell_volume_A3(self.cell if cell is None else cell) / self.z_formula_units

    @property
    def volume_A3(self) -> float:
        """Volume of the reference cell (A^3)."""
        return cell_volume_A3(self.cell)


# --------------------------------------------------------------------------
# Symmetry and structure factors (gemmi)
# --------------------------------------------------------------------------


def _space_group(name: str):
    sg = gemmi.find_spacegroup_by_name(name)
    if sg is None:
        raise ValueError(f"space group {name!r} is not known to gemmi")
    return sg


# Holohedral Laue groups, for multiplicities of JCPDS lines (no space group given).
_HOLOHEDRY = {
    "cubic": "P m -3 m",
    "hexagonal": "P 6/m m m",
    "trigonal": "P -3 m 1",
    "rhombohedral": "R -3 m:R",
    "tetragonal": "P 4/m m m",
    "orthorhombic": "P m m m",
    "monoclinic": "P 1 2/m 1",
    "triclinic": "P -1",
}


@functools.lru_cache(maxsize=64)
def _laue_rotations_cached(space_group: str) -> tuple:
    sg = _space_group(space_group)
    rots = {tuple(map(tuple, (np.array(op.rot) // gemmi.Op.DEN).tolist())) for op in sg.operations().sym_ops}
    rots |= {tuple(tuple(-v for v in row) for row in r) for r in rots}
    return tuple(sorted(rots))


def _laue_rotations(space_group: str) -> np.ndarray:
    """Distinct rotation matrices of the Laue group (point group + inversion), (M, 3, 3) ints.

    Powder lines merge a reflection with all its images under the point group
    and with its Friedel mate, so the rotations of the space group plus their
    negatives are what matters; translations and centring do not.
    """
    return np.array(_laue_rotations_cached(space_group), dtype=int)


def _orbits(hkl: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each hkl: code of its family, its representative hkl, and the family size."""
    images = np.einsum("ni,mij->nmj", hkl, rotations)  # h' = h R, as gemmi's Op.apply_to_hkl
    big = int(np.abs(images).max()) + 1
    width = 2 * big + 1
    codes = ((images[..., 0] + big) * width + (images[..., 1] + big)) * width + (images[..., 2] + big)
    # representative: fewest negative indices first, then lexicographically largest
    n_nonneg = (images >= 0).sum(axis=2)
    score = n_nonneg * width**3 + codes
    best = np.argmax(score, axis=1)
    rep = images[np.arange(len(hkl)), best]
    family = codes[np.arange(len(hkl)), best]
    srt = np.sort(codes, axis=1)
    multiplicity = 1 + (np.diff(srt, axis=1) != 0).sum(axis=1)
    return family, rep, multiplicity


@functools.lru_cache(maxsize=128)
def unit_cell_atoms(phase: Phase) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """All atoms of the cell: the asymmetric unit under every space-group operation
    (cached per phase: the whole-pattern fits ask for structure factors at every point).

    Images of one site that coincide (special positions) are kept once;
    different sites on one position (mixed occupancy) are all kept.

    Returns
    -------
    elements : list of str
    xyz : (n, 3) fractional coordinates in [0, 1)
    occupancy : (n,)
    B_iso_A2 : (n,)
    """
    if not phase.atoms:
        return [], np.zeros((0, 3)), np.zeros(0), np.zeros(0)
    sg = _space_group(phase.space_group)
    ops = list(sg.operations())  # symmetry x centring operations
    elements, xyz, occ, biso = [], [], [], []
    for site in phase.atoms:
        clusters: list[list[np.ndarray]] = []
        for op in ops:
            p = np.mod(np.array(op.apply_to_xyz([site.x, site.y, site.z])), 1.0)
            for members in clusters:
                delta = p - members[0]
                delta -= np.round(delta)  # nearest periodic image
                if np.all(np.abs(delta) < SAME_POSITION_FRAC):
                    members.append(members[0] + delta)
                    break
            else:
                clusters.append([p])
        for members in clusters:
            # The mean of the images that coincide is the site moved exactly onto
            # its special position: a CIF's 0.3333 for 1/3 would otherwise leave
            # weak spurious lines where the space group forbids them.
            p = np.mod(np.mean(members, axis=0), 1.0)
            elements.append(site.element)
            xyz.append(np.where(p > 1.0 - 1e-12, 0.0, p))
            occ.append(site.occupancy)
            biso.append(site.B_iso_A2)
    return elements, np.array(xyz), np.array(occ, dtype=float), np.array(biso, dtype=float)


def _it92(element: str) -> tuple[np.ndarray, np.ndarray, float]:
    el = gemmi.Element(element)
    if el.atomic_number == 0:
        raise ValueError(f"unknown element {element!r}")
    coef = el.it92
    return np.array(coef.a, dtype=float), np.array(coef.b, dtype=float), float(coef.c)


def atomic_form_factor(element: str, s_inv_A) -> np.ndarray:
    """IT92 X-ray form factor f0(s) of a neutral atom, s = sin(theta)/lambda = 1/(2d) in 1/A.

    f0 = c + sum_i a_i exp(-b_i s^2), coefficients from gemmi's copy of
    International Tables Vol. C Table 6.1.1.4 (valid to s = 2 1/A).
    """
    a, b, c = _it92(element)
    s2 = np.asarray(s_inv_A, dtype=float) ** 2
    return c + np.sum(a[:, None] * np.exp(-np.outer(b, np.ravel(s2))), axis=0).reshape(np.shape(s2))


def structure_factors(phase: Phase, hkl, *, cell: Sequence[float] | None = None) -> np.ndarray:
    """Complex structure factors F(hkl) of a phase with atoms.

    F = sum_j occ_j f0_j(s) exp(-B_j s^2) exp(2 pi i (h x_j + k y_j + l z_j)),
    over all atoms of the cell (:func:`unit_cell_atoms`), s = 1/(2d).

    Parameters
    ----------
    phase : Phase
        Must have atoms.
    hkl : (3,) or (N, 3) array_like of int
    cell : optional
        Cell for s (default: the phase's reference cell). Only the
        form-factor and Debye-Waller falloff depend on it.
    """
    if not phase.atoms:
        raise ValueError(f"phase {phase.name} lists lines, not atoms: it has no structure factors")
    h = np.atleast_2d(np.asarray(hkl, dtype=float))
    s = 0.5 / d_spacing_A(phase.cell if cell is None else cell, h)
    s = np.atleast_1d(s)
    elements, xyz, occ, biso = unit_cell_atoms(phase)
    phases = np.exp(2j * np.pi * (h @ xyz.T))  # (N, n_atoms)
    f = np.zeros((len(h), len(elements)))
    cache: dict[str, np.ndarray] = {}
    for j, el in enumerate(elements):
        if el not in cache:
            cache[el] = atomic_form_factor(el, s)
        f[:, j] = occ[j] * cache[el] * np.exp(-biso[j] * s**2)
    F = np.sum(f * phases, axis=1)
    return F if np.ndim(hkl) > 1 else F[0]


def lorentz_polarization(two_theta_deg, polarization: float = 0.0, azimuth_deg: float | None = None):
    """Lorentz-polarization factor of a powder line.

    LP = (1 + cos^2 2th - p cos(2 chi) sin^2 2th) / (sin^2 th cos th).

    With p = 0 this is the standard powder LP of an unpolarized beam
    (International Tables Vol. C, 6.2.5). p is the linear polarization
    factor in pyFAI's convention (1 = fully polarized, electric field along
    chi = 0, the horizontal for a synchrotron), chi the azimuth on the ring.
    Averaged over the whole ring (``azimuth_deg=None``) the cos 2chi term
    vanishes: a fully integrated ring carries the unpolarized LP whatever
    the beam polarization, so p only matters for one azimuth (a cake or a
    partial ring).
    """
    tth = np.radians(np.asarray(two_theta_deg, dtype=float))
    th = tth / 2.0
    pol = 1.0 + np.cos(tth) ** 2
    if azimuth_deg is not None and polarization:
        pol = pol - polarization * math.cos(2.0 * math.radians(azimuth_deg)) * np.sin(tth) ** 2
    return pol / (np.sin(th) ** 2 * np.cos(th))


# --------------------------------------------------------------------------
# Reflections
# --------------------------------------------------------------------------


def _hkl_box(cell: Sequence[float], d_min_A: float) -> np.ndarray:
    # |h| = |g . a| <= |g| |a| <= a / d_min, and likewise for k, l
    hmax, kmax, lmax = (int(math.floor(x / d_min_A)) for x in cell[:3])
    h, k, l = np.meshgrid(np.arange(-hmax, hmax + 1), np.arange(-kmax, kmax + 1), np.arange(-lmax, lmax + 1),
                          indexing="ij")
    hkl = np.stack([h.ravel(), k.ravel(), l.ravel()], axis=1)
    return hkl[np.any(hkl != 0, axis=1)]


def _split_by_d(d: np.ndarray) -> list[np.ndarray]:
    """Indices of ``d`` grouped into runs whose neighbours agree to D_REL_TOL."""
    order = np.argsort(d)
    groups, current = [], [order[0]]
    for i, j in zip(order[:-1], order[1:]):
        if d[j] - d[i] <= D_REL_TOL * d[j]:
            current.append(j)
        else:
            groups.append(np.array(current))
            current = [j]
    groups.append(np.array(current))
    return groups


def reflections(phase: Phase, *, pressure_GPa: float = 0.0, wavelength_A: float | None = None,
                d_min_A: float = 0.8, cell: Sequence[float] | None = None, polarization: float = 0.0,
                azimuth_deg: float | None = None) -> list[Reflection]:
    """Powder lines of a phase, sorted by d descending, strongest = 100.

    Parameters
    ----------
    phase : Phase
    pressure_GPa : float
        Pressure for :meth:`Phase.cell_at` (ignored when ``cell`` is given).
    wavelength_A : float, optional
        With a wavelength, intensities include the Lorentz-polarization
        factor (:func:`lorentz_polarization`) and lines with d < lambda/2
        (beyond backscattering) are dropped. Without one, no LP.
    d_min_A : float
        Smallest d kept.
    cell : optional
        Use this cell (e.g. a fitted one) instead of the phase's cell at
        ``pressure_GPa``.
    polarization, azimuth_deg : float
        Beam polarization factor and ring azimuth for the LP factor; see
        :func:`lorentz_polarization`. The default (0, whole ring) is the
        standard unpolarized powder LP.

    Returns
    -------
    list of Reflection

    Notes
    -----
    Phases with atoms: every hkl with d >= d_min is generated, grouped into
    families under the Laue group (space-group rotations and Friedel pairs),
    and a family is one line with intensity
    ``|F|^2 * multiplicity [* LP]``. Families that are not
    symmetry-equivalent but have the same d (333 and 511 in a cubic cell;
    hk0 and kh0 in a tetragonal 4/m cell) stay separate entries with their
    own hkl and multiplicity, so an indexer sees every assignment; a pattern
    generator sums them where it draws them. Symmetry-equivalent hkl whose d
    differ by more than 1e-6 (only with a ``cell`` that breaks the symmetry)
    are split too. Lines whose |F|^2 vanishes (below 1e-9 of the strongest)
    are extinct and left out.

    JCPDS phases: the file's lines, with d recomputed from hkl in the cell
    at pressure (as Dioptas does: the listed d0 is not used when the cell
    is known) and the file's intensities unchanged; those already contain
    the multiplicity and LP of the measurement they come from, so no LP is
    applied. A line listed with hkl = 000 keeps its d0, scaled by the cube
    root of the volume ratio.
    """
    if d_min_A <= 0:
        raise ValueError("d_min_A must be positive")
    use_cell = tuple(float(v) for v in (phase.cell_at(pressure_GPa) if cell is None else cell))
    d_floor = d_min_A if wavelength_A is None else max(d_min_A, wavelength_A / 2.0)
    if not phase.atoms:
        return _jcpds_reflections(phase, use_cell, d_floor)

    hkl = _hkl_box(use_cell, d_floor)
    d = d_spacing_A(use_cell, hkl)
    keep = d >= d_floor * (1 - 1e-12)
    hkl, d = hkl[keep], d[keep]
    if len(hkl) == 0:
        return []
    family, rep, mult = _orbits(hkl, _laue_rotations(phase.space_group))
    F2 = np.abs(structure_factors(phase, hkl, cell=use_cell)) ** 2
    lp = None
    if wavelength_A is not None:
        tth = np.degrees(2.0 * np.arcsin(np.clip(wavelength_A / (2.0 * d), -1.0, 1.0)))
        lp = lorentz_polarization(tth, polarization, azimuth_deg)

    out = []
    order = np.argsort(family, kind="stable")
    bounds = np.flatnonzero(np.diff(family[order])) + 1
    for members in np.split(order, bounds):
        for grp in _split_by_d(d[members]):
            idx = members[grp]
            i0 = idx[0]
            # each member counts once: the sum over members is multiplicity x |F|^2
            intensity = float(np.sum(F2[idx] * (lp[idx] if lp is not None else 1.0)))
            out.append((tuple(int(v) for v in rep[i0]), float(np.mean(d[idx])), len(idx), intensity,
                        float(np.max(F2[idx]))))
    f2_max = max(o[4] for o in out)
    out = [o for o in out if o[4] > EXTINCTION_REL * f2_max]
    return _normalised(out)


def _normalised(rows) -> list[Reflection]:
    top = max((r[3] for r in rows), default=0.0)
    rows = sorted(rows, key=lambda r: (-r[1], tuple(-v for v in r[0])))
    return [Reflection(hkl=r[0], d_A=r[1], multiplicity=int(r[2]), intensity=100.0 * r[3] / top if top > 0 else 0.0)
            for r in rows]


def _jcpds_reflections(phase: Phase, cell: Cell, d_floor: float) -> list[Reflection]:
    if not phase.lines:
        return []
    system = "rhombohedral" if phase.system == "trigonal" and abs(cell[5] - 120.0) > 1e-6 else phase.system
    rotations = _laue_rotations(_HOLOHEDRY[system])
    scale = (cell_volume_A3(cell) / cell_volume_A3(phase.cell)) ** (1.0 / 3.0)
    rows = []
    for line in phase.lines:
        hkl = np.array([[line.h, line.k, line.l]])
        if not hkl.any():
            d = line.d0_A * scale
            mult = 1
        else:
            d = float(d_spacing_A(cell, hkl[0]))
            mult = int(_orbits(hkl, rotations)[2][0])
        if d >= d_floor * (1 - 1e-12):
            rows.append(((line.h, line.k, line.l), d, mult, float(line.I_rel)))
    return _normalised(rows)


# --------------------------------------------------------------------------
# JCPDS files
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# CIF files (gemmi)
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# The library
# --------------------------------------------------------------------------


