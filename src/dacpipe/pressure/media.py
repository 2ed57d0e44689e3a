"""Pressure-transmitting media and the pressures to which they stay hydrostatic.

The table is data: ``media.yaml`` beside this module gives, per medium, its
hydrostatic and quasi-hydrostatic limits at room temperature with their
sources (Klotz et al., J. Phys. D 42, 075413 (2009); Angel et al., J. Appl.
Cryst. 40, 26 (2007)) and whether each number was checked against the paper.
A point above its medium's hydrostatic limit sees a deviatoric stress: the
ruby scale (calibrated hydrostatically) and the sample's lattice then read
differently, and the point is flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..io.package_yaml import read_package_yaml

REGIMES = ("hydrostatic", "quasi-hydrostatic", "non-hydrostatic", "unknown")
"""The values of ``pressure/medium_regime``: unknown where the run names no
medium or the point has no pressure."""

SOURCES = {
    "Klotz2009": "Klotz, Chervin, Munsch, Le Marchand, J. Phys. D 42, 075413 (2009)",
    "Angel2007": "Angel, Bujak, Zhao, Gatta, Jacobsen, J. Appl. Cryst. 40, 26 (2007)",
    "Besson1979": "Besson, Pinceaux, Rev. Sci. Instrum. 50, 541 (1979)",
}


@dataclass(frozen=True)
class Medium:
    """One pressure medium's limits (``media.yaml``)."""

    key: str                      # the config name (pressure.medium)
    name: str
    hydrostatic_GPa: float
    quasi_hydrostatic_GPa: float  # NaN where no limit is known
    sources: tuple[str, ...]      # full references
    confirmed: bool               # False: quoted, not checked against the paper
    note: str = ""


@lru_cache(maxsize=1)
def media() -> dict[str, Medium]:
    """Every medium of ``media.yaml`` by its config name, read once."""
    out = {}
    for key, entry in read_package_yaml(__package__, "media.yaml").items():
        quasi = entry.get("quasi_hydrostatic_GPa")
        out[key] = Medium(key=key, name=entry["name"], hydrostatic_GPa=float(entry["hydrostatic_GPa"]),
                          quasi_hydrostatic_GPa=math.nan if quasi is None else float(quasi),
                          sources=tuple(SOURCES[s] for s in entry.get("sources", ())),
                          confirmed=bool(entry["confirmed"]), note=" ".join(str(entry.get("note", "")).split()))
    return out


def get_medium(key: str) -> Medium:
    """The medium called ``key`` (a ``pressure.medium`` value)."""
    try:
        return media()[key]
    except KeyError:
        raise ValueError(f"unknown pressure medium {key!r}; known: {', '.join(media())}") from None


def medium_regime(pressure_GPa, medium: Medium | None) -> np.ndarray:
    """Per point, ``hydrostatic``, ``quasi-hydrostatic``, ``non-hydrostatic`` or ``unknown``.

    A pressure at or below the hydrostatic limit is hydrostatic; above it, up
    to the quasi-hydrostatic limit, quasi-hydrostatic; above that, or above
    the hydrostatic limit of a medium with no known quasi-hydrostatic limit,
    non-hydrostatic (the cautious reading). Unknown without a medium or a
    finite pressure.
    """
    p = np.atleast_1d(np.asarray(pressure_GPa, dtype=float))
    out = np.full(p.shape, "unknown", dtype=object)
    if medium is None:
        return out
    quasi = medium.quasi_hydrostatic_GPa if math.isfinite(medium.quasi_hydrostatic_GPa) else medium.hydrostatic_GPa
    finite = np.isfinite(p)
    out[finite & (p <= medium.hydrostatic_GPa)] = "hydrostatic"
    out[finite & (p > medium.hydrostatic_GPa) & (p <= quasi)] = "quasi-hydrostatic"
    out[finite & (p > max(quasi, medium.hydrostatic_GPa))] = "non-hydrostatic"
    return out


def regime_warning(pressure_GPa: float, regime: str, medium: Medium) -> str:
    """The status line of a point past its medium's hydrostatic limit, or ""."""
    if regime not in ("quasi-hydrostatic", "non-hydrostatic"):
        return ""
    checked = "" if medium.confirmed else ", limit not checked against the paper"
    return (f"pressure: {pressure_GPa:.2f} GPa is past the hydrostatic limit of {medium.name} "
            f"({medium.hydrostatic_GPa:g} GPa{checked}): {regime}, the ruby and the sample may see a "
            "deviatoric stress")


def medium_attrs(medium: Medium | None) -> dict:
    """The pressure group's attributes naming the medium and its limits with their sources."""
    if medium is None:
        return {"medium": "unknown"}
    return {"medium": medium.key, "medium_hydrostatic_limit_GPa": medium.hydrostatic_GPa,
            "medium_quasi_hydrostatic_limit_GPa": medium.quasi_hydrostatic_GPa,
            "medium_limit_sources": "; ".join(medium.sources) or "none (a definition)",
            "medium_limits_confirmed": medium.confirmed, "medium_note": medium.note}
