"""Phase files: JCPDS (Dioptas, PeakPo) and CIF, read into plain records.

:func:`read_jcpds` and :func:`read_cif` read what the file says and nothing
more: a :class:`JcpdsFile` (cell, EOS coefficients, listed lines) or a
:class:`CifStructure` (space group, cell, asymmetric unit). Turning either
into a phase that predicts lines at a pressure is :mod:`dacpipe.xrd.library`'s
job. Every problem raises :class:`~dacpipe.core.errors.InputError` naming the file.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core.errors import InputError

Cell = tuple[float, float, float, float, float, float]


@dataclass(frozen=True)
class Site:
    """One site of the asymmetric unit.

    Attributes
    ----------
    element : str
        Element symbol (neutral atom scattering factor), e.g. ``"Hg"``.
    x, y, z : float
        Fractional coordinates.
    occupancy : float
        Site occupancy (1 for a fully occupied site).
    B_iso_A2 : float
        Isotropic displacement parameter B = 8 pi^2 <u^2> in A^2. The default
        0.5 A^2 is a generic room-temperature value for an inorganic solid
        where no refined value is at hand.
    """

    element: str
    x: float
    y: float
    z: float
    occupancy: float = 1.0
    B_iso_A2: float = 0.5


@dataclass(frozen=True)
class JcpdsLine:
    """One ``DIHKL`` line of a JCPDS file: ambient d, relative intensity, hkl."""

    d0_A: float
    I_rel: float
    h: int
    k: int
    l: int  # noqa: E741 - the Miller index is called l


@dataclass(frozen=True)
class JcpdsFile:
    """What a JCPDS file says.

    Attributes
    ----------
    name : str
        The file's stem.
    system : str
        Crystal system (trigonal covers rhombohedral cells).
    cell : tuple
        a, b, c (A), alpha, beta, gamma (deg), completed from the symmetry.
    K0_GPa, Kp : float
        Third-order Birch-Murnaghan coefficients; K0 = 0 means lines that do not move.
    lines : tuple of JcpdsLine
    comment : str
    source : str
        The file read.
    """

    name: str
    system: str
    cell: Cell
    K0_GPa: float
    Kp: float
    lines: tuple[JcpdsLine, ...]
    comment: str
    source: str


@dataclass(frozen=True)
class CifStructure:
    """What a CIF data block says about a crystal structure.

    ``space_group`` is gemmi's extended Hermann-Mauguin symbol; ``sites`` the
    asymmetric unit; ``z_formula_units`` is 0 when the file does not give it.
    """

    name: str
    formula: str
    system: str
    space_group: str
    cell: Cell
    sites: tuple[Site, ...]
    z_formula_units: int
    source: str


_JCPDS_SYSTEM_CODES = {1: "cubic", 2: "hexagonal", 3: "tetragonal", 4: "orthorhombic", 5: "monoclinic",
                       6: "triclinic"}


def _complete_cell(symmetry: str, a, b, c, al, be, ga) -> tuple[str, Cell]:
    """Fill in what a crystal system implies (Dioptas' compute_v0 rules)."""
    sym = symmetry.lower()
    if sym == "cubic":
        return "cubic", (a, a, a, 90.0, 90.0, 90.0)
    if sym == "tetragonal":
        return "tetragonal", (a, a, c, 90.0, 90.0, 90.0)
    if sym == "orthorhombic":
        return "orthorhombic", (a, b, c, 90.0, 90.0, 90.0)
    if sym in ("hexagonal", "trigonal"):
        return "hexagonal" if sym == "hexagonal" else "trigonal", (a, a, c, 90.0, 90.0, 120.0)
    if sym == "rhombohedral":
        return "trigonal", (a, a, a, al, al, al)
    if sym == "monoclinic":
        return "monoclinic", (a, b, c, 90.0, be, 90.0)
    if sym == "triclinic":
        return "triclinic", (a, b, c, al, be, ga)
    raise ValueError(f"unknown JCPDS symmetry {symmetry!r}")


def _jcpds_file(path: Path, comments: list[str], symmetry: str, cellpar: dict, k0: float, k0p: float,
                lines: list[JcpdsLine]) -> JcpdsFile:
    g = cellpar.get
    system, cell = _complete_cell(symmetry, g("a", 0.0), g("b", 0.0) or g("a", 0.0), g("c", 0.0) or g("a", 0.0),
                                  g("alpha", 0.0) or 90.0, g("beta", 0.0) or 90.0, g("gamma", 0.0) or 90.0)
    if cell[0] <= 0 or cell[1] <= 0 or cell[2] <= 0:
        raise InputError(f"JCPDS cell has a non-positive axis {cell[:3]}", path)
    comment = " / ".join(c for c in comments if c) or path.stem
    return JcpdsFile(name=path.stem, system=system, cell=cell, K0_GPa=float(k0), Kp=float(k0p), lines=tuple(lines),
                     comment=comment, source=str(path))


def _line_from_numbers(nums: Sequence[float], path: Path, lineno: int) -> JcpdsLine:
    if len(nums) < 5:
        raise InputError(f"line {lineno}: a reflection needs d, I, h, k, l", path)
    h, k, l = (int(round(v)) for v in nums[2:5])
    return JcpdsLine(d0_A=float(nums[0]), I_rel=float(nums[1]), h=h, k=k, l=l)


def _floats(text: str, path: Path, lineno: int) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise InputError(f"line {lineno}: expected numbers, got {text.strip()!r}", path) from None


def read_jcpds(path: str | Path) -> JcpdsFile:
    """Read a JCPDS phase file (the Dioptas / PeakPo format).

    Version 4 (``VERSION: 4`` first) is keyword driven: COMMENT, K0, K0P,
    DK0DT, DK0PDT, SYMMETRY, A, B, C, ALPHA, BETA, GAMMA, VOLUME, ALPHAT,
    DALPHADT, DIHKL (d, I, h, k, l). The cell completes itself from the
    symmetry as in Dioptas (``jcpds.compute_v0``, M. Rivers' format). The
    older fixed-layout files are read too: version 1 (first line a comment,
    then ``code a0 K0 K0' c/a``, a label line and ``d I h k l`` rows; code 1
    cubic, 2 hexagonal), and the numbered versions 2 and 3 of PeakPo (first
    line the version, then comment, ``code K0 K0'``, the cell, the thermal
    expansion, a label line and the rows; codes 1-6 cubic, hexagonal,
    tetragonal, orthorhombic, monoclinic, triclinic).

    K0 and K0P are the coefficients of a third-order Birch-Murnaghan EOS
    with V0 the cell's volume; K0 = 0 means lines that do not move. The temperature keys
    (DK0DT, DK0PDT, ALPHAT, DALPHADT) are read and not used: dacpipe
    computes room-temperature lines. VOLUME is not used either; V0 is
    recomputed from the cell, as Dioptas does.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read JCPDS file ({exc.strerror})", path) from None
    rows = text.splitlines()
    while rows and not rows[0].strip():
        rows.pop(0)
    if not rows:
        raise InputError("empty JCPDS file", path)
    first = rows[0].strip()
    try:
        if first.upper().startswith("VERSION"):
            return _read_jcpds_v4(path, rows)
        if re.fullmatch(r"\d+", first):
            return _read_jcpds_numbered(path, rows)
        return _read_jcpds_v1(path, rows)
    except InputError:
        raise
    except (ValueError, IndexError) as exc:
        raise InputError(f"not a readable JCPDS file ({exc})", path) from None


def _read_jcpds_v4(path: Path, rows: list[str]) -> JcpdsFile:
    comments: list[str] = []
    cellpar: dict[str, float] = {}
    symmetry = ""
    k0 = k0p = 0.0
    lines: list[JcpdsLine] = []
    numeric = {"K0": "k0", "K0P": "k0p", "A": "a", "B": "b", "C": "c", "ALPHA": "alpha", "BETA": "beta",
               "GAMMA": "gamma", "VOLUME": "volume", "DK0DT": "dk0dt", "DK0PDT": "dk0pdt", "ALPHAT": "alphat",
               "DALPHADT": "dalphadt"}
    for lineno, raw in enumerate(rows[1:], start=2):
        if not raw.strip():
            continue
        key, sep, value = raw.partition(":")
        if not sep:
            raise InputError(f"line {lineno}: expected 'KEY: value', got {raw.strip()!r}", path)
        key = key.strip().upper()
        value = value.strip()
        if key == "COMMENT":
            comments.append(value)
        elif key == "SYMMETRY":
            symmetry = value
        elif key == "DIHKL":
            lines.append(_line_from_numbers(_floats(value, path, lineno), path, lineno))
        elif key in numeric:
            nums = _floats(value, path, lineno)
            if not nums:
                raise InputError(f"line {lineno}: {key} has no value", path)
            if key == "K0":
                k0 = nums[0]
            elif key == "K0P":
                k0p = nums[0]
            else:
                cellpar[numeric[key]] = nums[0]
        # other keys (a later format's additions) are ignored, as Dioptas does
    if not symmetry:
        raise InputError("no SYMMETRY in JCPDS file", path)
    if "a" not in cellpar:
        raise InputError("no cell parameter A in JCPDS file", path)
    return _jcpds_file(path, comments, symmetry, cellpar, k0, k0p, lines)


def _read_jcpds_v1(path: Path, rows: list[str]) -> JcpdsFile:
    head = _floats(rows[1], path, 2)
    code, a0, k0, k0p, c_over_a = head[:5]
    symmetry = {1: "cubic", 2: "hexagonal"}.get(int(code))
    if symmetry is None:
        raise InputError(f"line 2: version-1 symmetry code {code:g} is not 1 (cubic) or 2 (hexagonal)", path)
    lines = [_line_from_numbers(_floats(r, path, i), path, i) for i, r in enumerate(rows[3:], start=4) if r.strip()]
    cellpar = {"a": a0, "c": a0 * c_over_a if symmetry == "hexagonal" else a0}
    return _jcpds_file(path, [rows[0].strip()], symmetry, cellpar, k0, k0p, lines)


def _read_jcpds_numbered(path: Path, rows: list[str]) -> JcpdsFile:
    head = _floats(rows[2], path, 3)
    code = int(head[0])
    symmetry = _JCPDS_SYSTEM_CODES.get(code)
    if symmetry is None:
        raise InputError(f"line 3: symmetry code {code} is not supported (1-6)", path)
    k0, k0p = head[1], head[2]
    c = _floats(rows[3], path, 4)
    cellpar = {"cubic": lambda: {"a": c[0]},
               "hexagonal": lambda: {"a": c[0], "c": c[1]},
               "tetragonal": lambda: {"a": c[0], "c": c[1]},
               "orthorhombic": lambda: {"a": c[0], "b": c[1], "c": c[2]},
               "monoclinic": lambda: {"a": c[0], "b": c[1], "c": c[2], "beta": c[3]},
               "triclinic": lambda: {"a": c[0], "b": c[1], "c": c[2], "alpha": c[3], "beta": c[4], "gamma": c[5]},
               }[symmetry]()
    lines = []
    for i, r in enumerate(rows[6:], start=7):
        nums = r.split()
        if len(nums) != 5:  # PeakPo stops at the first row that is not d I h k l
            break
        lines.append(_line_from_numbers(_floats(r, path, i), path, i))
    return _jcpds_file(path, [rows[1].strip()], symmetry, cellpar, k0, k0p, lines)


def read_cif(path: str | Path, *, block: str | None = None) -> CifStructure:
    """Read a crystal structure from a CIF file with gemmi.

    Cell, space group (from the H-M or Hall symbol or the listed symmetry
    operations, whichever gemmi finds), the asymmetric unit with occupancies
    and U_iso (B = 8 pi^2 U; sites with only anisotropic U get the mean of
    U11, U22, U33; sites with neither get the default B of :class:`Site`),
    Z (``_cell_formula_units_Z``, 0 if absent) and the formula
    (``_chemical_formula_sum``). A CIF has no equation of state.

    Parameters
    ----------
    path : str or Path
    block : str, optional
        Data block name; default the first block with atom sites.
    """
    import gemmi

    path = Path(path)
    try:
        doc = gemmi.cif.read(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputError(f"cannot read CIF ({exc})", path) from None
    blocks = [b for b in doc if block is None or b.name == block]
    blk = next((b for b in blocks if b.find_values("_atom_site_fract_x")), None)
    if blk is None:
        raise InputError("no data block with _atom_site_fract_x" + (f" named {block!r}" if block else ""), path)
    small = gemmi.make_small_structure_from_block(blk)
    sg = small.spacegroup  # gemmi sets it from the symmetry operations or the H-M / Hall symbol
    for source in ("S", "H", "1"):  # symops, Hall, H-M: ask explicitly if it did not
        if sg is not None:
            break
        try:
            small.determine_and_set_spacegroup(source)
        except (RuntimeError, ValueError):
            continue
        sg = small.spacegroup
    if sg is None:
        raise InputError("no space group (H-M, Hall or symmetry operations) in CIF", path)
    cell = (small.cell.a, small.cell.b, small.cell.c, small.cell.alpha, small.cell.beta, small.cell.gamma)
    atoms = []
    for site in small.sites:
        if site.u_iso > 0:
            b_iso = 8 * math.pi**2 * site.u_iso
        elif site.aniso.nonzero():
            b_iso = 8 * math.pi**2 * (site.aniso.u11 + site.aniso.u22 + site.aniso.u33) / 3.0
        else:
            b_iso = Site.__dataclass_fields__["B_iso_A2"].default
        atoms.append(Site(element=site.element.name, x=site.fract.x, y=site.fract.y, z=site.fract.z,
                          occupancy=site.occ, B_iso_A2=b_iso))
    z_value = blk.find_value("_cell_formula_units_Z")
    try:
        z = int(float(gemmi.cif.as_string(z_value))) if z_value else 0
    except ValueError:
        z = 0
    formula = blk.find_value("_chemical_formula_sum")
    formula = gemmi.cif.as_string(formula).replace(" ", "") if formula else ""
    return CifStructure(name=path.stem, formula=formula, system=sg.crystal_system_str(), space_group=sg.xhm(),
                        cell=cell, sites=tuple(atoms), z_formula_units=z,
                        source=f"CIF file {path.name}, data block {blk.name}")
