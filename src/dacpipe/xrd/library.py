"""The phase library, and phases from JCPDS and CIF files.

The library is data: ``library.yaml`` beside this module lists every phase
dacpipe knows by name (``HgTe-zb``, ``HgTe-cinnabar``, ``HgTe-rs``,
``InP-zb``, ``InP-rs``, ``ZnSe-zb``, ``CdSe-wz``, ``CdSe-rs``,
``CsPbI3-gamma`` and the pressure markers ``Au``, ``Pt``, ``NaCl-B1``,
``Ne``), each with the sources of its structure and EOS and the numbers that
could not be checked against them (``unconfirmed``). :func:`get_phase`
gives a library phase by name, or reads a ``.jcpds`` or ``.cif`` file.
"""

from __future__ import annotations

import difflib
import functools
import re
from pathlib import Path
from typing import Iterable

import numpy as np

from ..core.errors import InputError
from ..eos.models import EosParams, ThermalParams, volume_A3
from ..io.package_yaml import read_package_yaml
from ..io.phase_files import CifStructure, JcpdsFile, Site, read_cif, read_jcpds
from .cells import cell_volume_A3
from .structure import Phase


def _eos_from_entry(entry: dict, cell, reference_pressure_GPa: float) -> EosParams | None:
    """The entry's EOS; a null V0 is the P = 0 volume implied by the cell at its reference pressure."""
    eos = entry.get("eos")
    if eos is None:
        return None
    model, v0, k0, kp = eos["model"], eos["V0_A3"], float(eos["K0_GPa"]), float(eos["Kp"])
    if v0 is None:
        v0 = cell_volume_A3(cell)
        if reference_pressure_GPa:
            # every EOS here is V0 times a function of P, so V0 = V_ref / V(P_ref) for V0 = 1
            unit = EosParams(model=model, V0_A3=1.0, K0_GPa=k0, Kp=kp)
            v0 = v0 / float(np.asarray(volume_A3(unit, reference_pressure_GPa), dtype=float))
    return EosParams(model=model, V0_A3=float(v0), K0_GPa=k0, Kp=kp)


def _phase_from_entry(entry: dict) -> Phase:
    cell = tuple(float(v) for v in entry["cell"])
    p_ref = float(entry.get("reference_pressure_GPa", 0.0))
    sites = tuple(Site(str(s[0]), *(float(v) for v in s[1:])) for s in entry["sites"])
    return Phase(name=entry["name"], formula=entry["formula"], system=entry["system"],
                 space_group=entry["space_group"], cell=cell, atoms=sites,
                 z_formula_units=int(entry["z_formula_units"]), eos=_eos_from_entry(entry, cell, p_ref),
                 eos_reference=entry["eos_reference"], reference=entry["reference"],
                 reference_pressure_GPa=p_ref, unconfirmed=tuple(entry.get("unconfirmed", ())))


@functools.lru_cache(maxsize=1)
def _entries() -> tuple[dict, ...]:
    return tuple(read_package_yaml(__package__, "library.yaml"))


@functools.lru_cache(maxsize=1)
def library() -> dict[str, Phase]:
    """Every library phase by name, read once from ``library.yaml``."""
    return {entry["name"]: _phase_from_entry(entry) for entry in _entries()}


@functools.lru_cache(maxsize=1)
def thermal_library() -> dict[str, ThermalParams]:
    """The library phases with a thermal EOS (a ``thermal`` block: Au, Pt, Ne of
    Fei et al. 2007), by name: what a marker's pressure at a temperature needs
    (:func:`dacpipe.eos.models.pressure_at_temperature_GPa`)."""
    out = {}
    for entry in _entries():
        block = entry.get("thermal")
        if block:
            out[entry["name"]] = ThermalParams(
                theta0_K=float(block["theta0_K"]), gamma0=float(block["gamma0"]), q=float(block["q"]),
                atoms_per_cell=int(block["atoms_per_cell"]), reference_K=float(block.get("reference_K", 300.0)),
                reference=str(block["reference"]))
    return out


def library_names() -> list[str]:
    """Names of the built-in phases."""
    return list(library())


def phase_from_jcpds(record: JcpdsFile) -> Phase:
    """A JCPDS file's phase: its lines with fixed intensities, moving along its BM3 EOS (none when K0 = 0)."""
    name = Path(record.source).name
    if record.K0_GPa > 0:
        eos = EosParams(model="bm3", V0_A3=cell_volume_A3(record.cell), K0_GPa=record.K0_GPa, Kp=record.Kp)
        eos_ref = (f"JCPDS file {name}: BM3, K0 = {record.K0_GPa:g} GPa, K' = {record.Kp:g}, "
                   f"V0 from the cell ({record.comment})")
    else:
        eos = None
        eos_ref = f"JCPDS file {name}: K0 = 0, the lines do not move with pressure"
    return Phase(name=record.name, formula="", system=record.system, space_group="", cell=record.cell, atoms=(),
                 z_formula_units=0, eos=eos, eos_reference=eos_ref, reference=f"JCPDS file {name}: {record.comment}",
                 lines=record.lines)


def phase_from_cif(record: CifStructure) -> Phase:
    """A CIF's structure as a phase without an EOS (give it one with ``dataclasses.replace``)."""
    return Phase(name=record.name, formula=record.formula, system=record.system, space_group=record.space_group,
                 cell=record.cell, atoms=record.sites, z_formula_units=record.z_formula_units, eos=None,
                 eos_reference="none: a CIF has no EOS", reference=record.source)


def get_phase(name_or_path: str | Path) -> Phase:
    """A library phase by name, or a phase read from a ``.jcpds`` or ``.cif`` file.

    Raises
    ------
    InputError
        Neither a library name nor a readable phase file (with the closest name).
    """
    lib = library()
    key = str(name_or_path)
    if key in lib:
        return lib[key]
    suffix = Path(key).suffix.lower()
    if suffix == ".jcpds":
        return phase_from_jcpds(read_jcpds(key))
    if suffix == ".cif":
        return phase_from_cif(read_cif(key))
    close = difflib.get_close_matches(key, lib, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise InputError(f"unknown phase {key!r}: not in the library ({', '.join(lib)}) and not a .jcpds or .cif "
                     f"file{hint}")


def phase_key(name: str) -> str:
    """The name a phase goes by in the store: a library name as it is, a file
    path as its file name (``/data/au.jcpds`` -> ``au.jcpds``), with any
    character HDF5 would read as a group separator replaced."""
    return re.sub(r"[/\\]", "_", Path(str(name)).name if ("/" in str(name) or "\\" in str(name)) else str(name))


def phases_table(names: Iterable[str] | None = None) -> str:
    """A plain-text table of library phases: name, space group, cell, Z, EOS, unconfirmed values."""
    lib = library()
    rows = []
    for name in names or lib:
        p = lib[name]
        eos = "-" if p.eos is None else f"{p.eos.model} V0={p.eos.V0_A3:.3f} K0={p.eos.K0_GPa:g} K'={p.eos.Kp:g}"
        a, b, c = p.cell[:3]
        rows.append(f"{p.name:14s} {p.space_group:10s} a={a:.4f} b={b:.4f} c={c:.4f} "
                    f"P_ref={p.reference_pressure_GPa:g} Z={p.z_formula_units} {eos} "
                    f"unconfirmed={','.join(p.unconfirmed) or '-'}")
    return "\n".join(rows)
