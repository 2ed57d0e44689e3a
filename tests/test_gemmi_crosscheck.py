"""dacpipe's own crystallography against gemmi's, for every library phase with atoms.

dacpipe.xrd.structure takes only the space-group operations and the IT92
coefficients from gemmi and does the rest itself: the expansion of the
asymmetric unit (``unit_cell_atoms``), the structure factors
(``structure_factors``: IT92 f0, occupancy, exp(-B s^2), no anomalous
dispersion) and the powder lines (``reflections``: an hkl box, families
under the Laue group, extinctions from |F|^2). Here each is compared with
gemmi doing the same job its own way:

* sites: ``gemmi.SmallStructure.get_all_unit_cell_sites()`` (images closer
  than 0.4 A merged);
* structure factors: ``gemmi.StructureFactorCalculatorX`` on the small
  structure, with occupancies made crystallographic (gemmi sums every image
  of a site, dacpipe each distinct position once), U_iso = B / (8 pi^2),
  and no f' (gemmi's addends are zero unless set, as dacpipe leaves out
  anomalous dispersion);
* lines: gemmi's unique reflections (``gemmi.make_miller_array``, which
  leaves out the space group's systematic absences), with multiplicities
  counted independently by mapping every hkl of the sphere into gemmi's
  reciprocal asymmetric unit (``ReciprocalAsu.to_asu``, Friedel mates
  included), and structural extinctions (|F|^2 = 0 beyond the space group:
  wurtzite hkl with h - k = 3n, l odd) from gemmi's |F|^2.

Tolerances: gemmi evaluates the IT92 sums in single precision (its f0
differs from the same coefficients in double by up to 3e-7 relative,
checked below), so structure factors agree to 1e-6 of the largest |F|, and
relative intensities (0-100) to 1e-4; positions, d-spacings and
multiplicities are exact (1e-9).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import gemmi
import numpy as np
import pytest

from dacpipe.io.phase_files import Site
from dacpipe.xrd.cells import d_spacing_A
from dacpipe.xrd.library import library
from dacpipe.xrd.structure import (_hkl_box, atomic_form_factor, reflections, structure_factors,
                                   unit_cell_atoms)

PHASES = [p for p in library().values() if p.atoms]
D_MIN_A = 0.8  # dacpipe's default d_min: the lines the indexer and generator use
F_REL_TOL = 1e-6
INTENSITY_ABS_TOL = 1e-4  # on the 0-100 scale of Reflection.intensity
POSITION_TOL = 1e-9  # fractional


def small_structure(phase) -> gemmi.SmallStructure:
    """The phase as gemmi's small structure: its cell, space group and asymmetric unit."""
    st = gemmi.SmallStructure()
    st.name = phase.name
    st.cell = gemmi.UnitCell(*phase.cell)
    st.spacegroup_hm = phase.space_group
    for i, s in enumerate(phase.atoms):
        site = gemmi.SmallStructure.Site()
        site.label = f"{s.element}{i + 1}"
        site.type_symbol = s.element
        site.element = gemmi.Element(s.element)
        site.fract = gemmi.Fractional(s.x, s.y, s.z)
        site.occ = s.occupancy
        site.u_iso = s.B_iso_A2 / (8.0 * math.pi**2)  # gemmi's small structures carry U, dacpipe B = 8 pi^2 U
        st.add_site(site)
    # From the H-M symbol ("1": origin choice 1 where there are two; none of
    # the library's groups has two); this also sets up the cell's images.
    st.determine_and_set_spacegroup("1")
    assert st.spacegroup is not None and len(st.cell.images) > 0, phase.space_group
    return st


def periodic_distance(a, b) -> float:
    d = np.asarray(a, float) - np.asarray(b, float)
    return float(np.max(np.abs(d - np.round(d))))


@pytest.fixture(params=PHASES, ids=[p.name for p in PHASES])
def phase(request):
    return request.param


def test_the_library_has_phases_with_atoms_of_every_kind():
    # The comparison is only as good as its cases: centred and primitive,
    # centrosymmetric and not, special and general positions, several sites.
    groups = {p.space_group for p in PHASES}
    assert {"F -4 3 m", "F m -3 m", "P 31 2 1", "P 63 m c", "C m c m", "P n m a"} <= groups
    assert any(len(p.atoms) >= 4 for p in PHASES)


def test_the_space_group_is_gemmis(phase):
    st = small_structure(phase)
    assert st.spacegroup.xhm() == gemmi.find_spacegroup_by_name(phase.space_group).xhm()


def test_unit_cell_sites_are_gemmis(phase):
    st = small_structure(phase)
    theirs = st.get_all_unit_cell_sites()
    elements, xyz, occ, B = unit_cell_atoms(phase)
    assert Counter(elements) == Counter(s.element.name for s in theirs)
    unmatched = list(theirs)
    for el, p, o, b in zip(elements, xyz, occ, B):
        match = [s for s in unmatched if s.element.name == el
                 and periodic_distance(p, [s.fract.x, s.fract.y, s.fract.z]) < POSITION_TOL]
        assert len(match) == 1, (el, p)
        assert match[0].occ == o and match[0].u_iso * 8 * math.pi**2 == pytest.approx(b, rel=1e-12)
        unmatched.remove(match[0])
    assert not unmatched
    assert np.all((xyz >= 0) & (xyz < 1))


def test_unit_cell_sites_from_rounded_coordinates_match_gemmi():
    # A CIF's 1/3 written as 0.3333: the images of a special position land
    # ~1e-4 apart; both merge them (dacpipe within 2e-3 of the cell, onto
    # their mean; gemmi within 0.4 A, keeping the first).
    wz = library()["CdSe-wz"]
    rounded = type(wz)(**{**wz.__dict__, "name": "CdSe-wz-rounded",
                          "atoms": (Site("Cd", 0.3333, 0.6667, 0.0), Site("Se", 0.3333, 0.6667, 0.375))})
    theirs = small_structure(rounded).get_all_unit_cell_sites()
    elements, xyz, _, _ = unit_cell_atoms(rounded)
    assert Counter(elements) == Counter(s.element.name for s in theirs) == {"Cd": 2, "Se": 2}
    for el, p in zip(elements, xyz):
        assert min(periodic_distance(p, [s.fract.x, s.fract.y, s.fract.z]) for s in theirs
                   if s.element.name == el) < 1e-3
        # dacpipe's copy sits on the exact special position (1/3, 2/3 or 2/3, 1/3)
        assert periodic_distance(p[:2] * 3, np.round(p[:2] * 3)) < 1e-3


def test_form_factors_are_gemmis_it92():
    # dacpipe sums gemmi's IT92 coefficients in double precision; gemmi in single.
    s = np.linspace(0.0, 1.5, 16)
    for el in sorted({a.element for p in PHASES for a in p.atoms}):
        theirs = np.array([gemmi.Element(el).it92.calculate_sf(x * x) for x in s])
        # float32 has eps 6e-8; nine terms summed: a few 1e-7 (measured up to 3e-7, Cl).
        np.testing.assert_allclose(atomic_form_factor(el, s), theirs, rtol=1e-6, err_msg=el)


def test_structure_factors_are_gemmis(phase):
    st = small_structure(phase)
    st.change_occupancies_to_crystallographic()  # gemmi sums every image of a site
    calc = gemmi.StructureFactorCalculatorX(st.cell)
    hkl = _hkl_box(phase.cell, D_MIN_A)
    hkl = hkl[d_spacing_A(phase.cell, hkl) >= D_MIN_A]
    theirs = np.array([calc.calculate_sf_from_small_structure(st, [int(v) for v in h]) for h in hkl])
    ours = structure_factors(phase, hkl)
    # Complex values, so phases (origin, sign convention exp(+2 pi i h.x)) agree too.
    assert np.max(np.abs(ours - theirs)) <= F_REL_TOL * np.max(np.abs(theirs))


def test_lines_and_multiplicities_are_gemmis(phase):
    st = small_structure(phase)
    st.change_occupancies_to_crystallographic()
    sg, cell = st.spacegroup, st.cell
    ops, asu = sg.operations(), gemmi.ReciprocalAsu(sg)
    calc = gemmi.StructureFactorCalculatorX(cell)
    # Multiplicity: how many hkl of the d >= d_min sphere gemmi maps onto each
    # reflection of its asymmetric unit.
    sphere = _hkl_box(phase.cell, D_MIN_A)
    sphere = sphere[d_spacing_A(phase.cell, sphere) >= D_MIN_A]
    multiplicity = defaultdict(int)
    for h in sphere:
        multiplicity[tuple(asu.to_asu([int(v) for v in h], ops)[0])] += 1
    unique = [tuple(int(v) for v in h) for h in gemmi.make_miller_array(cell, sg, D_MIN_A)]
    assert set(unique) <= set(multiplicity)
    assert all(ops.is_systematically_absent(list(h)) for h in set(multiplicity) - set(unique))
    F2 = {h: abs(calc.calculate_sf_from_small_structure(st, list(h))) ** 2 for h in unique}
    strongest = max(F2.values())
    theirs = {h: (multiplicity[h], F2[h]) for h in unique if F2[h] > 1e-9 * strongest}

    ours = {}
    for r in reflections(phase, d_min_A=D_MIN_A, cell=phase.cell):
        key = tuple(asu.to_asu(list(r.hkl), ops)[0])
        assert key not in ours, (r.hkl, key)  # one entry per family
        ours[key] = r
    assert set(ours) == set(theirs)
    top = max(m * f2 for m, f2 in theirs.values())
    for key, (m, f2) in theirs.items():
        r = ours[key]
        assert r.multiplicity == m, (key, r.multiplicity, m)
        assert r.d_A == pytest.approx(cell.calculate_d(list(key)), rel=POSITION_TOL), key
        assert r.intensity == pytest.approx(100.0 * m * f2 / top, abs=INTENSITY_ABS_TOL), key


def test_wurtzite_structural_extinctions_are_gemmis():
    # Not space-group absences: P6_3mc allows hkl with h - k = 3n and l odd,
    # but Cd and Se on 2b (1/3, 2/3, z) cancel there. gemmi lists them and
    # its |F|^2 vanishes; dacpipe has no line there.
    wz = library()["CdSe-wz"]
    st = small_structure(wz)
    st.change_occupancies_to_crystallographic()
    calc = gemmi.StructureFactorCalculatorX(st.cell)
    unique = [tuple(int(v) for v in h) for h in gemmi.make_miller_array(st.cell, st.spacegroup, D_MIN_A)]
    extinct = [h for h in unique if abs(calc.calculate_sf_from_small_structure(st, list(h))) < 1e-4]
    assert extinct and all((h[0] - h[1]) % 3 == 0 and h[2] % 2 == 1 for h in extinct)
    lines = {tuple(gemmi.ReciprocalAsu(st.spacegroup).to_asu(list(r.hkl), st.spacegroup.operations())[0])
             for r in reflections(wz, d_min_A=D_MIN_A, cell=wz.cell)}
    assert not lines & set(extinct)
