"""Phase library, d-spacings, structure factors and JCPDS / CIF readers."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import gemmi
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from dacpipe.core.errors import InputError
from dacpipe.io.phase_files import read_cif, read_jcpds
from dacpipe.xrd import structure as ph
from dacpipe.xrd.cells import d_spacing_A
from dacpipe.xrd.library import get_phase, library, phase_from_cif, phase_from_jcpds
from dacpipe.xrd.structure import Reflection, reflections

LIBRARY = library()

CU_KA1_A = 1.5406


def by_hkl(refl: list[Reflection]) -> dict[tuple[int, int, int], Reflection]:
    return {r.hkl: r for r in refl}


def hex_d(a, c, h, k, l):
    """Textbook hexagonal formula, independent of the metric-tensor code."""
    return 1.0 / math.sqrt(4.0 / 3.0 * (h * h + h * k + k * k) / a**2 + l * l / c**2)


def monoclinic_d(a, b, c, beta_deg, h, k, l):
    """Textbook monoclinic (b unique) formula."""
    be = math.radians(beta_deg)
    inv = (h * h / a**2 + k * k * math.sin(be) ** 2 / b**2 + l * l / c**2 - 2 * h * l * math.cos(be) / (a * c))
    return 1.0 / math.sqrt(inv / math.sin(be) ** 2)


# --------------------------------------------------------------------------
# d-spacings
# --------------------------------------------------------------------------


def test_cubic_d_spacing():
    assert d_spacing_A((6.46,) * 3 + (90.0,) * 3, (1, 1, 1)) == pytest.approx(6.46 / math.sqrt(3), rel=1e-14)
    d = d_spacing_A((4.0786,) * 3 + (90.0,) * 3, [(2, 0, 0), (2, 2, 0), (3, 1, 1)])
    np.testing.assert_allclose(d, 4.0786 / np.sqrt([4, 8, 11]), rtol=1e-14)


def test_hexagonal_d_spacing_wurtzite_cdse():
    a, c = 4.299, 7.010
    phase = LIBRARY["CdSe-wz"]
    assert phase.cell[:3] == (a, a, c)
    # by hand: d(100) = a sqrt(3)/2, d(002) = c/2, d(101) = 1/sqrt(4/(3a^2) + 1/c^2) = 3.28808 A
    assert d_spacing_A(phase.cell, (1, 0, 0)) == pytest.approx(a * math.sqrt(3) / 2, rel=1e-12)
    assert d_spacing_A(phase.cell, (0, 0, 2)) == pytest.approx(c / 2, rel=1e-12)
    assert d_spacing_A(phase.cell, (1, 0, 1)) == pytest.approx(3.28808, abs=1e-5)
    for hkl in [(1, 1, 0), (1, 0, 3), (2, 1, 2), (3, 0, 2)]:
        assert d_spacing_A(phase.cell, hkl) == pytest.approx(hex_d(a, c, *hkl), rel=1e-12)
    # the listed lines are exactly these d's, the strongest low-angle lines present
    lines = by_hkl(reflections(phase))
    for hkl in [(1, 0, 0), (0, 0, 2), (1, 0, 1), (1, 1, 0), (1, 0, 3)]:
        assert lines[hkl].d_A == pytest.approx(hex_d(a, c, *hkl), rel=1e-12)


def test_trigonal_cinnabar_d_spacing():
    cell = (4.38, 4.38, 9.40, 90.0, 90.0, 120.0)
    # by hand: d(003) = c/3 = 3.13333; d(102) = 1/sqrt(4/(3 * 4.38^2) + 4/9.4^2) = 2.95179 A
    assert d_spacing_A(cell, (0, 0, 3)) == pytest.approx(9.40 / 3, rel=1e-12)
    assert d_spacing_A(cell, (1, 0, 2)) == pytest.approx(2.95179, abs=1e-5)
    got = by_hkl(reflections(LIBRARY["HgTe-cinnabar"], cell=cell))
    for hkl in [(1, 0, 0), (1, 0, 1), (1, 0, 2), (0, 0, 3), (1, 1, 0), (1, 0, 4)]:
        assert got[hkl].d_A == pytest.approx(hex_d(4.38, 9.40, *hkl), rel=1e-12)


def test_monoclinic_jcpds_d_spacing(real_data):
    phase = phase_from_jcpds(read_jcpds(real_data / "dioptas" / "jcpds" / "FeGeO3_cpx.jcpds"))
    assert phase.system == "monoclinic"
    assert phase.cell == (9.79930, 9.14910, 5.19910, 90.0, 101.890, 90.0)
    a, b, c, _, beta, _ = phase.cell
    # the textbook formula, and the d's the file lists (5 decimals) for its own cell
    for line in phase.lines:
        hkl = (line.h, line.k, line.l)
        d = d_spacing_A(phase.cell, hkl)
        assert d == pytest.approx(monoclinic_d(a, b, c, beta, *hkl), rel=1e-12)
        assert d == pytest.approx(line.d0_A, abs=2e-4)
    # -2 2 1 and 2 2 1 differ through the 2hl cos(beta) term
    assert d_spacing_A(phase.cell, (-2, 2, 1)) == pytest.approx(2.97444, abs=5e-5)
    assert d_spacing_A(phase.cell, (2, 2, 1)) == pytest.approx(2.60981, abs=5e-5)


@settings(max_examples=60, deadline=None)
@given(a=st.floats(2.0, 20.0), b=st.floats(2.0, 20.0), c=st.floats(2.0, 20.0),
       al=st.floats(60.0, 120.0), be=st.floats(60.0, 120.0), ga=st.floats(60.0, 120.0),
       hkl=st.tuples(st.integers(-6, 6), st.integers(-6, 6), st.integers(-6, 6)).filter(any))
def test_triclinic_d_spacing_is_one_over_reciprocal_vector(a, b, c, al, be, ga, hkl):
    """d = 1/|h a* + k b* + l c*|, with a*, b*, c* from a Cartesian basis (gemmi's orthogonalization)."""
    cg = gemmi.UnitCell(a, b, c, al, be, ga)
    if not (cg.volume > 1e-3 * a * b * c):  # degenerate angle combinations
        return
    frac = np.array(cg.frac.mat.tolist())  # rows of the fractionalization matrix are a*, b*, c*
    g = np.array(hkl, float) @ frac
    assert d_spacing_A((a, b, c, al, be, ga), hkl) == pytest.approx(1.0 / np.linalg.norm(g), rel=1e-9)


# --------------------------------------------------------------------------
# structure factors, extinctions, intensities
# --------------------------------------------------------------------------


def test_cinnabar_00l_only_for_l_3n():
    phase = LIBRARY["HgTe-cinnabar"]
    F = ph.structure_factors(phase, [(0, 0, l) for l in range(1, 10)])
    F2 = np.abs(F) ** 2
    strong = F2.max()
    for l, f2 in zip(range(1, 10), F2):
        if l % 3:
            assert f2 < 1e-20 * strong, l  # 3_1 screw axis along c, from the structure itself
        else:
            assert f2 > 1e-3 * strong, l
    listed = [r.hkl for r in reflections(phase, d_min_A=0.9) if r.hkl[:2] == (0, 0)]
    assert listed and all(hkl[2] % 3 == 0 for hkl in listed)


def test_no_listed_reflection_is_systematically_absent_for_gemmi():
    """Absences come from |F| = 0; gemmi's reflection conditions are an independent check."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the phases without an EOS warn at P != P_ref
        for phase in LIBRARY.values():
            ops = gemmi.SpaceGroup(phase.space_group).operations()
            refl = reflections(phase, d_min_A=1.0)
            assert refl, phase.name
            assert not [r.hkl for r in refl if ops.is_systematically_absent(list(r.hkl))], phase.name


@pytest.mark.parametrize("name", ["HgTe-zb", "InP-zb", "ZnSe-zb", "HgTe-rs", "NaCl-B1", "Au", "Ne"])
def test_f_centred_extinctions(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refl = reflections(LIBRARY[name], d_min_A=0.7)
    assert all(len({v % 2 for v in r.hkl}) == 1 for r in refl)  # h, k, l all even or all odd
    F = ph.structure_factors(LIBRARY[name], [(1, 0, 0), (1, 1, 0), (2, 1, 0), (2, 1, 1)])
    assert np.all(np.abs(F) < 1e-10)


def test_zinc_blende_hgte_pattern():
    refl = reflections(LIBRARY["HgTe-zb"], wavelength_A=CU_KA1_A)
    lines = by_hkl(refl)
    # the known zinc-blende sequence: 111 strongest, then 220, then 311
    top3 = [r.hkl for r in sorted(refl, key=lambda r: -r.intensity)[:3]]
    assert top3 == [(1, 1, 1), (2, 2, 0), (3, 1, 1)]
    # 200 present but weak: its F is 4(f_Hg - f_Te), not zero, because Hg and Te differ
    assert 0.5 < lines[(2, 0, 0)].intensity < 15
    assert lines[(1, 1, 1)].multiplicity == 8 and lines[(2, 2, 0)].multiplicity == 12
    assert lines[(3, 1, 1)].multiplicity == 24 and lines[(2, 0, 0)].multiplicity == 6
    # in ZnSe f_Zn and f_Se nearly cancel: 200 almost vanishes, but is still there
    znse = by_hkl(reflections(LIBRARY["ZnSe-zb"], wavelength_A=CU_KA1_A))
    assert 0 < znse[(2, 0, 0)].intensity < 1


def test_rock_salt_patterns():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ["NaCl-B1", "HgTe-rs", "InP-rs", "CdSe-rs"]:
            refl = reflections(LIBRARY[name], wavelength_A=CU_KA1_A)
            assert max(refl, key=lambda r: r.intensity).hkl == (2, 0, 0), name
        # 111 goes with (f_A - f_B)^2: weak for Na/Cl and Hg/Te, strong for In/P
        nacl = by_hkl(reflections(LIBRARY["NaCl-B1"], wavelength_A=CU_KA1_A))
        inp = by_hkl(reflections(LIBRARY["InP-rs"], wavelength_A=CU_KA1_A))
    assert nacl[(1, 1, 1)].intensity < 15 and nacl[(2, 2, 0)].intensity > 40
    assert inp[(1, 1, 1)].intensity > 40


def test_gold_reproduces_the_jcpds_card(real_data):
    """Computed Au intensities (Cu K-alpha1) against the card in au_Anderson.jcpds (04-0784)."""
    card = {(l.h, l.k, l.l): l.I_rel for l in read_jcpds(real_data / "dioptas" / "jcpds" / "au_Anderson.jcpds").lines}
    calc = by_hkl(reflections(LIBRARY["Au"], wavelength_A=CU_KA1_A))
    for hkl in [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1), (2, 2, 2), (4, 0, 0), (3, 3, 1), (4, 2, 0)]:
        assert calc[hkl].intensity == pytest.approx(card[hkl], abs=4.0), hkl


def test_reflections_sorted_normalised_and_merged():
    refl = reflections(LIBRARY["Au"], d_min_A=0.5)
    d = [r.d_A for r in refl]
    assert d == sorted(d, reverse=True)
    assert max(r.intensity for r in refl) == pytest.approx(100.0)
    assert len({r.hkl for r in refl}) == len(refl)
    # 333 and 511 share d = a/sqrt(27) but are different families: two entries
    same = [r for r in refl if abs(r.d_A - 4.0786 / math.sqrt(27)) < 1e-9]
    assert sorted(r.hkl for r in same) == [(3, 3, 3), (5, 1, 1)]
    assert {r.hkl: r.multiplicity for r in same} == {(3, 3, 3): 8, (5, 1, 1): 24}
    # multiplicities count every hkl once: their sum is the number of allowed hkl in the sphere
    box = ph._hkl_box(LIBRARY["Au"].cell, 0.5)
    allowed = [h for h in box if len({v % 2 for v in h}) == 1 and d_spacing_A(LIBRARY["Au"].cell, h) >= 0.5]
    assert sum(r.multiplicity for r in refl) == len(allowed)


def test_hexagonal_families_and_representatives():
    lines = by_hkl(reflections(LIBRARY["CdSe-wz"]))
    assert {hkl: lines[hkl].multiplicity for hkl in [(1, 0, 0), (0, 0, 2), (1, 0, 1), (1, 1, 0)]} == {
        (1, 0, 0): 6, (0, 0, 2): 2, (1, 0, 1): 12, (1, 1, 0): 6}
    assert (0, 0, 1) not in lines  # 6_3 screw: 00l only for even l


def test_lorentz_polarization():
    tth = 30.0
    th = math.radians(tth / 2)
    unpol = (1 + math.cos(2 * th) ** 2) / (math.sin(th) ** 2 * math.cos(th))
    assert ph.lorentz_polarization(tth) == pytest.approx(unpol)
    # a whole ring averages the polarization away; one azimuth does not
    assert ph.lorentz_polarization(tth, 0.99) == pytest.approx(unpol)
    assert ph.lorentz_polarization(tth, 1.0, 0.0) == pytest.approx(2 * math.cos(2 * th) ** 2 / (
        math.sin(th) ** 2 * math.cos(th)))
    assert ph.lorentz_polarization(tth, 1.0, 90.0) == pytest.approx(2 / (math.sin(th) ** 2 * math.cos(th)))
    plain = by_hkl(reflections(LIBRARY["Au"], wavelength_A=0.4))
    vertical = by_hkl(reflections(LIBRARY["Au"], wavelength_A=0.4, polarization=1.0, azimuth_deg=90.0))
    horizontal = by_hkl(reflections(LIBRARY["Au"], wavelength_A=0.4, polarization=1.0, azimuth_deg=0.0))
    # relative to 111, high-angle lines lose less in the vertical than in the horizontal plane
    assert horizontal[(4, 2, 0)].intensity < plain[(4, 2, 0)].intensity < vertical[(4, 2, 0)].intensity
    # no wavelength: no LP, intensities are multiplicity x |F|^2
    nolp = by_hkl(reflections(LIBRARY["Au"]))
    F2 = np.abs(ph.structure_factors(LIBRARY["Au"], [(1, 1, 1), (2, 0, 0)])) ** 2
    ratio = nolp[(2, 0, 0)].intensity / nolp[(1, 1, 1)].intensity
    assert ratio == pytest.approx(6 * F2[1] / (8 * F2[0]), rel=1e-10)


def test_wavelength_limits_lines_to_backscattering():
    refl = reflections(LIBRARY["Au"], wavelength_A=CU_KA1_A, d_min_A=0.1)
    assert min(r.d_A for r in refl) >= CU_KA1_A / 2


# --------------------------------------------------------------------------
# library, cells and pressure
# --------------------------------------------------------------------------


def test_volume_per_formula_unit():
    zb = LIBRARY["HgTe-zb"]
    assert zb.cell[0] == 6.46 and zb.z_formula_units == 4
    assert zb.volume_fu_A3() == pytest.approx(6.46**3 / 4, rel=1e-12)
    assert zb.volume_fu_A3() == pytest.approx(67.4, abs=0.05)
    assert LIBRARY["CdSe-wz"].volume_fu_A3() == pytest.approx(math.sqrt(3) / 2 * 4.299**2 * 7.010 / 2, rel=1e-12)


def test_library_names_and_citations():
    assert set(LIBRARY) == {"HgTe-zb", "HgTe-cinnabar", "HgTe-rs", "HgTe-Cmcm", "InP-zb", "InP-rs", "ZnSe-zb", "CdSe-wz",
                            "CdSe-rs", "CsPbI3-gamma", "Au", "Pt", "NaCl-B1", "Ne"}
    for phase in LIBRARY.values():
        assert phase.reference and phase.eos_reference, phase.name
        assert gemmi.SpaceGroup(phase.space_group).crystal_system_str() == phase.system, phase.name
    # the pressure markers' EOS are the literature ones
    markers = {name: LIBRARY[name].eos for name in ["Au", "Pt", "NaCl-B1", "Ne"]}
    assert {n: (e.model, e.V0_A3, e.K0_GPa, e.Kp) for n, e in markers.items()} == {
        "Au": ("vinet", 67.850, 167.0, 6.00), "Pt": ("vinet", 60.38, 277.0, 5.08),
        "NaCl-B1": ("vinet", 179.44, 23.83, 5.09), "Ne": ("vinet", 88.967, 1.16, 8.23)}
    # their room-temperature EOS are confirmed; Pt's and Ne's thermal parameters have one source each
    assert not LIBRARY["NaCl-B1"].unconfirmed
    assert all("thermal" in note for name in ("Pt", "Ne") for note in LIBRARY[name].unconfirmed)


def test_library_stoichiometry_matches_z():
    """The atoms the space group generates make Z formula units: checks every Wyckoff position."""
    for phase in LIBRARY.values():
        elements = Counter(ph.unit_cell_atoms(phase)[0])
        formula = Counter()
        for el, n in __import__("re").findall(r"([A-Z][a-z]?)(\d*)", phase.formula):
            formula[el] += int(n or 1)
        assert {el: n / phase.z_formula_units for el, n in elements.items()} == dict(formula), phase.name


def test_library_eos_volumes_match_cells():
    from dacpipe.eos.models import volume_A3

    for phase in LIBRARY.values():
        if phase.eos is None:
            continue
        v_ref = float(volume_A3(phase.eos, phase.reference_pressure_GPa)) if phase.reference_pressure_GPa \
            else phase.eos.V0_A3
        assert v_ref == pytest.approx(phase.volume_A3, rel=2e-4), phase.name


def test_cell_at_pressure_is_isotropic_along_the_eos():
    from dacpipe.eos.models import volume_A3

    au = LIBRARY["Au"]
    assert au.cell_at(0.0) == au.cell
    cell = au.cell_at(30.0)
    ratio = (float(volume_A3(au.eos, 30.0)) / au.eos.V0_A3) ** (1 / 3)
    assert cell == pytest.approx((4.0786 * ratio,) * 3 + (90.0,) * 3, rel=1e-12)
    wz = LIBRARY["CdSe-wz"]
    c10 = wz.cell_at(2.0)
    assert c10[2] / c10[0] == pytest.approx(wz.cell[2] / wz.cell[0], rel=1e-12)  # axial ratio kept
    assert c10[5] == 120.0
    # a phase given at its reference pressure reproduces that cell there, and expands below it
    cin = LIBRARY["HgTe-cinnabar"]
    assert cin.cell_at(cin.reference_pressure_GPa) == cin.cell
    assert cin.cell_at(1.5)[0] > cin.cell[0] > cin.cell_at(6.0)[0]
    # lines move to smaller d under pressure
    assert by_hkl(reflections(au, pressure_GPa=30.0))[(1, 1, 1)].d_A == pytest.approx(4.0786 * ratio / math.sqrt(3))


def test_phase_without_eos_warns_and_keeps_its_cell():
    # Every library phase has an EOS now: a user's phase (a JCPDS file without K0) may not.
    rs = replace(LIBRARY["CdSe-rs"], eos=None)
    with pytest.warns(UserWarning, match="no equation of state"):
        assert rs.cell_at(10.0) == rs.cell


def test_hgte_high_pressure_phases_get_denser():
    # Each transition of the zb -> cinnabar -> rock-salt sequence lowers the volume per formula unit.
    zb, cin, rs = (LIBRARY[n] for n in ("HgTe-zb", "HgTe-cinnabar", "HgTe-rs"))
    assert zb.volume_fu_A3(zb.cell_at(3.0)) > cin.volume_fu_A3(cin.cell_at(3.0))
    assert cin.volume_fu_A3(cin.cell_at(8.7)) > rs.volume_fu_A3(rs.cell_at(8.7))


# --------------------------------------------------------------------------
# JCPDS
# --------------------------------------------------------------------------


def jcpds_files(root: Path) -> list[Path]:
    return sorted((root / "dioptas" / "jcpds").glob("*.jcpds"))


def test_every_dioptas_jcpds_file_loads(real_data):
    files = jcpds_files(real_data)
    assert len(files) >= 11
    for path in files:
        phase = phase_from_jcpds(read_jcpds(path))
        assert phase.name == path.stem and not phase.atoms
        refl = reflections(phase, pressure_GPa=5.0, d_min_A=0.5)
        assert len(refl) == len([l for l in phase.lines if d_spacing_A(phase.cell_at(5.0), (l.h, l.k, l.l)) >= 0.5])
        if refl:
            assert max(r.intensity for r in refl) == pytest.approx(100.0)


def test_au_jcpds_lines_at_10_GPa_match_independent_bm3(real_data):
    """Line positions at 10 GPa from au_Anderson.jcpds against BM3 solved here with brentq."""
    phase = get_phase(real_data / "dioptas" / "jcpds" / "au_Anderson.jcpds")
    K0, Kp, a0 = 166.65, 5.4823, 4.0786

    def bm3(v_over_v0):
        x = 1.0 / v_over_v0
        return 1.5 * K0 * (x ** (7 / 3) - x ** (5 / 3)) * (1 + 0.75 * (Kp - 4) * (x ** (2 / 3) - 1))

    ratio = brentq(lambda r: bm3(r) - 10.0, 0.7, 1.0, xtol=1e-15, rtol=1e-15)
    a10 = a0 * ratio ** (1 / 3)
    lines = reflections(phase, pressure_GPa=10.0, d_min_A=0.3)
    assert len(lines) == 13
    for r in lines:
        assert r.d_A == pytest.approx(a10 / math.sqrt(sum(v * v for v in r.hkl)), abs=1e-5)
    # and the intensities are the file's
    assert [r.intensity for r in lines][:4] == [100.0, 52.0, 32.0, 36.0]


def test_jcpds_keys_and_special_cases(real_data):
    folder = real_data / "dioptas" / "jcpds"
    # K0 = 0: the lines do not move
    fixed = phase_from_jcpds(read_jcpds(folder / "re_K0.jcpds"))
    assert fixed.eos is None
    assert [r.d_A for r in reflections(fixed, pressure_GPa=50.0)] == [r.d_A for r in reflections(fixed)]
    # nanana uses every key; d comes from the cell (a = 5.5128 A), not from the listed d's
    nanana = phase_from_jcpds(read_jcpds(folder / "nanana.jcpds"))
    assert nanana.cell == (5.5128, 5.5128, 5.5128, 90.0, 90.0, 90.0)
    assert (nanana.eos.model, nanana.eos.K0_GPa, nanana.eos.Kp) == ("bm3", 1.95, 7.07)
    assert nanana.eos.V0_A3 == pytest.approx(167.53930545715204, rel=1e-12)
    assert "Argon" in nanana.reference
    assert by_hkl(reflections(nanana))[(1, 1, 1)].d_A == pytest.approx(5.5128 / math.sqrt(3), rel=1e-12)
    # a file with no lines gives no reflections
    assert reflections(phase_from_jcpds(read_jcpds(folder / "au_mal_anders.jcpds"))) == []
    # hexagonal Re: 6/mmm multiplicities, file intensities kept
    re_lines = by_hkl(reflections(phase_from_jcpds(read_jcpds(folder / "re.jcpds"))))
    assert (re_lines[(1, 0, 1)].multiplicity, re_lines[(1, 0, 1)].intensity) == (12, 100.0)
    assert re_lines[(0, 0, 2)].d_A == pytest.approx(4.4574 / 2, rel=1e-12)


def test_old_jcpds_versions(tmp_path):
    v1 = tmp_path / "gold_v1.jcpds"
    v1.write_text("Gold, old format\n1 4.0786 166.65 5.4823 1.0\nd I h k l\n"
                  "2.3550 100. 1 1 1\n2.0390 52. 2 0 0\n")
    p1 = phase_from_jcpds(read_jcpds(v1))
    assert p1.cell == (4.0786, 4.0786, 4.0786, 90.0, 90.0, 90.0) and p1.eos.K0_GPa == 166.65
    assert [(l.h, l.k, l.l, l.I_rel) for l in p1.lines] == [(1, 1, 1, 100.0), (2, 0, 0, 52.0)]
    hex1 = tmp_path / "re_v1.jcpds"
    hex1.write_text("Re\n2 2.76 433.8 3.46 1.615\nlabels\n2.105 100 1 0 1\n")
    assert phase_from_jcpds(read_jcpds(hex1)).cell == pytest.approx((2.76, 2.76, 2.76 * 1.615, 90.0, 90.0, 120.0))
    v3 = tmp_path / "cpx_v3.jcpds"
    v3.write_text("3\nFeGeO3 monoclinic\n5 114.0 4.0\n9.7993 9.1491 5.1991 101.89\n0\nd I h k l\n"
                  "3.40164 33.4 0 2 1\n2.97444 94.1 -2 2 1\n")
    p3 = phase_from_jcpds(read_jcpds(v3))
    assert p3.system == "monoclinic" and p3.cell == (9.7993, 9.1491, 5.1991, 90.0, 101.89, 90.0)
    assert [r.hkl for r in reflections(p3)] == [(0, 2, 1), (-2, 2, 1)]
    bad = tmp_path / "bad.jcpds"
    bad.write_text("VERSION: 4\nK0: lots\n")
    with pytest.raises(InputError, match="bad.jcpds"):
        phase_from_jcpds(read_jcpds(bad))


# --------------------------------------------------------------------------
# CIF and get_phase
# --------------------------------------------------------------------------

NACL_CIF = """data_NaCl
_cell_length_a 5.64036
_cell_length_b 5.64036
_cell_length_c 5.64036
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_space_group_name_H-M_alt 'F m -3 m'
_cell_formula_units_Z 4
_chemical_formula_sum 'Cl Na'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_U_iso_or_equiv
Na1 Na 0 0 0 {u}
Cl1 Cl 0.5 0.5 0.5 {u}
"""

# zinc blende HgTe given by its symmetry operations only (no H-M symbol)
HGTE_CIF_HEAD = """data_HgTe
_cell_length_a 6.46
_cell_length_b 6.46
_cell_length_c 6.46
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_cell_formula_units_Z 4
_chemical_formula_sum 'Hg Te'
loop_
_space_group_symop_operation_xyz
"""

CDSE_CIF = """data_CdSe
_cell_length_a 4.299
_cell_length_b 4.299
_cell_length_c 7.010
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 120
_symmetry_space_group_name_H-M 'P 63 m c'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_B_iso_or_equiv
Cd1 Cd 0.3333 0.6667 0.0 0.5
Se1 Se 0.3333 0.6667 0.375 0.5
"""


def assert_same_lines(a: list[Reflection], b: list[Reflection], rel=1e-9, abs_i=1e-6):
    assert [r.hkl for r in a] == [r.hkl for r in b]
    assert [r.multiplicity for r in a] == [r.multiplicity for r in b]
    np.testing.assert_allclose([r.d_A for r in a], [r.d_A for r in b], rtol=rel)
    np.testing.assert_allclose([r.intensity for r in a], [r.intensity for r in b], atol=abs_i)


def test_cif_reproduces_library_nacl(tmp_path):
    path = tmp_path / "nacl.cif"
    path.write_text(NACL_CIF.format(u=0.5 / (8 * math.pi**2)))
    phase = phase_from_cif(read_cif(path))
    lib = LIBRARY["NaCl-B1"]
    assert (phase.space_group, phase.system, phase.z_formula_units, phase.formula) == ("F m -3 m", "cubic", 4, "ClNa")
    assert phase.cell == pytest.approx(lib.cell, rel=1e-4)
    assert phase.atoms[0].B_iso_A2 == pytest.approx(0.5)
    assert phase.eos is None
    assert_same_lines(reflections(phase, wavelength_A=0.4, cell=lib.cell),
                      reflections(lib, wavelength_A=0.4))


def test_cif_from_symmetry_operations_reproduces_zinc_blende(tmp_path):
    ops = "\n".join(f"'{op.triplet()}'" for op in gemmi.SpaceGroup("F -4 3 m").operations())
    atoms = ("loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n"
             "_atom_site_fract_z\nHg1 Hg 0 0 0\nTe1 Te 0.25 0.25 0.25\n")
    path = tmp_path / "hgte.cif"
    path.write_text(HGTE_CIF_HEAD + ops + "\n" + atoms)
    phase = get_phase(str(path))
    assert gemmi.SpaceGroup(phase.space_group).number == 216
    assert_same_lines(reflections(phase, wavelength_A=CU_KA1_A), reflections(LIBRARY["HgTe-zb"], wavelength_A=CU_KA1_A))


def test_cif_with_rounded_coordinates_reproduces_wurtzite(tmp_path):
    path = tmp_path / "cdse.cif"
    path.write_text(CDSE_CIF)
    phase = phase_from_cif(read_cif(path))
    assert len(ph.unit_cell_atoms(phase)[0]) == 4  # 0.3333 vs 1/3 does not double the atoms
    assert_same_lines(reflections(phase), reflections(LIBRARY["CdSe-wz"]), abs_i=0.05)


def test_get_phase(real_data):
    assert get_phase("Au") is LIBRARY["Au"]
    assert get_phase(real_data / "dioptas" / "jcpds" / "pt.jcpds").name == "pt"
    with pytest.raises(InputError, match="did you mean 'HgTe-zb'"):
        get_phase("HgTe-zn")


def test_replace_gives_a_cif_phase_an_eos(tmp_path):
    from dacpipe.eos.models import EosParams

    path = tmp_path / "nacl.cif"
    path.write_text(NACL_CIF.format(u=0.006))
    phase = replace(phase_from_cif(read_cif(path)), eos=EosParams(model="vinet", V0_A3=179.44, K0_GPa=23.83, Kp=5.09))
    assert phase.cell_at(10.0)[0] == pytest.approx(LIBRARY["NaCl-B1"].cell_at(10.0)[0], rel=1e-4)
