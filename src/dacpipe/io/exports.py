"""Writers of the files other tools read: Dioptas, Fit2D, GSAS-II, EosFit7, PeakPo, spreadsheets.

One function per format, each taking plain arrays and numbers (no store, no
science): :mod:`dacpipe.run.load` gathers what a run's store holds and calls
them (``dacpipe export``). Every writer writes its file whole and returns its
path; rows whose values are not finite numbers are left out of the pattern
and P-V files (the tools that read them take "nan" for a number or stop).

Formats, as the other tool reads them:

Dioptas / pyFAI ``.xy``
    The header Dioptas writes (pyFAI's calibration block: pixel size, PONI,
    distance, rotations, the Fit2D geometry, ``Wavelength`` in metres,
    polarization and normalization factors), a ``#`` line naming the columns
    (``2th_deg I``), then two columns. Dioptas reads the columns with
    ``numpy.loadtxt`` (``#`` lines skipped).
Fit2D ``.chi``
    Four header lines: a title, the x-axis label (``2-Theta Angle
    (Degrees)``), the y-axis label (``Intensity``) and the number of points,
    then two columns. GSAS-II reads a ``.chi`` as 2theta when one of the
    first four lines says ``2-theta``.
GSAS-II ``.xye`` and ``.instprm``
    A ``/* ... */`` comment block, then 2theta (deg), I and its standard
    error (GSAS-II's ``G2pwd_xye`` reader weights each point by 1/esd^2). A
    ``/* */`` block rather than ``#`` lines because that reader takes a
    ``#`` line holding the letter q for the header of a Q file. The
    ``.instprm`` beside it is GSAS-II's instrument parameter file
    (``key:value`` lines: ``Type:PXC``, ``Lam``, ``Zero``, ``Polariz.``,
    ``U V W`` in centidegrees^2, ``X Y`` in centidegrees, ``SH/L``).
EosFit7 ``.dat``
    EosFit7c's data file (Angel, Alvaro & Gonzalez-Platas, Z. Kristallogr.
    229, 405 (2014)): ``TITLE``, ``PSCALE``, ``VSCALE``, ``FORMAT`` with the
    column keys ``P SIGP V SIGV``, then ``DATA`` and the rows; ``#`` lines
    are comments.
JCPDS version 4 (Dioptas, PeakPo)
    ``KEY: value`` lines exactly as the JCPDS files Dioptas ships: VERSION,
    COMMENT, K0, K0P, SYMMETRY, the cell (A, B, C, ALPHA, BETA, GAMMA as the
    symmetry needs), ALPHAT, then one ``DIHKL: d I h k l`` per line. K0 and
    K0P are read as third-order Birch-Murnaghan coefficients with V0 the
    cell's volume.
CSV
    One header row ``name [unit]`` (the unit from the store's ``@units``),
    then one row per point; empty cells where a value is NaN.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

# The keys of the cell a JCPDS v4 file gives for each crystal system (Dioptas'
# jcpds.compute_v0 completes the rest from the symmetry).
_JCPDS_CELL_KEYS = {
    "cubic": ("A",),
    "tetragonal": ("A", "C"),
    "hexagonal": ("A", "C"),
    "trigonal": ("A", "C"),
    "rhombohedral": ("A", "ALPHA"),
    "orthorhombic": ("A", "B", "C"),
    "monoclinic": ("A", "B", "C", "BETA"),
    "triclinic": ("A", "B", "C", "ALPHA", "BETA", "GAMMA"),
}
_CELL_INDEX = {"A": 0, "B": 1, "C": 2, "ALPHA": 3, "BETA": 4, "GAMMA": 5}


def _finite_rows(*columns: np.ndarray) -> np.ndarray:
    keep = np.ones(len(columns[0]), dtype=bool)
    for column in columns:
        keep &= np.isfinite(np.asarray(column, dtype=float))
    return keep


def _write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _clean_title(text: str) -> str:
    return " ".join(str(text).split())


def write_xy(path: str | os.PathLike, two_theta_deg, intensity, header_lines: Sequence[str] = ()) -> Path:
    """A Dioptas ``.xy`` pattern: ``#`` header, ``# 2th_deg I``, two columns.

    Parameters
    ----------
    two_theta_deg, intensity : array_like
        The pattern; rows where either is not finite are left out.
    header_lines : sequence of str
        Lines of the calibration block, without their ``#``
        (:func:`dacpipe.run.load.pyfai_header` gives Dioptas' own).
    """
    x, y = np.asarray(two_theta_deg, dtype=float), np.asarray(intensity, dtype=float)
    keep = _finite_rows(x, y)
    lines = [f"# {line}".rstrip() for line in header_lines]
    lines += ["#", "# 2th_deg\t I"]
    lines += [f"{a:.9E}  {b:.9E}" for a, b in zip(x[keep], y[keep])]
    return _write_text(path, "\n".join(lines) + "\n")


def write_chi(path: str | os.PathLike, two_theta_deg, intensity, title: str) -> Path:
    """A Fit2D ``.chi`` pattern: title, ``2-Theta Angle (Degrees)``, ``Intensity``, count, two columns."""
    x, y = np.asarray(two_theta_deg, dtype=float), np.asarray(intensity, dtype=float)
    keep = _finite_rows(x, y)
    lines = [_clean_title(title), "2-Theta Angle (Degrees)", "Intensity", f"{int(keep.sum()):>14d}"]
    lines += [f"  {a:.7E}  {b:.7E}" for a, b in zip(x[keep], y[keep])]
    return _write_text(path, "\n".join(lines) + "\n")


def write_xye(path: str | os.PathLike, two_theta_deg, intensity, sigma, comments: Sequence[str] = ()) -> Path:
    """A GSAS-II ``.xye`` pattern: a ``/* */`` comment block, then 2theta (deg), I, esd.

    Rows where any column is not finite, or whose esd is not positive (a
    weight GSAS-II cannot form), are left out.
    """
    x, y, s = (np.asarray(v, dtype=float) for v in (two_theta_deg, intensity, sigma))
    keep = _finite_rows(x, y, s) & (np.nan_to_num(s, nan=0.0) > 0)
    block = [_clean_title(c).replace("*/", "* /") for c in comments] + ["columns: 2theta (deg), I, esd(I)"]
    lines = ["/*", *block, "*/"]
    lines += [f"{a:.7f} {b:.7E} {c:.7E}" for a, b, c in zip(x[keep], y[keep], s[keep])]
    return _write_text(path, "\n".join(lines) + "\n")


@dataclass(frozen=True)
class InstrumentParameters:
    """GSAS-II constant-wavelength instrument parameters (``Type:PXC``).

    Attributes
    ----------
    wavelength_A : float
        ``Lam``.
    polarization : float
        ``Polariz.``: GSAS-II's fraction of the beam polarized in the
        horizontal plane (0.5 unpolarized, about 0.99 at a synchrotron).
    zero_deg : float
        ``Zero``, the 2theta zero shift (centidegrees in GSAS-II's file: the
        writer converts).
    U, V, W : float
        Gaussian variance coefficients, sigma^2 = U tan^2 theta + V tan theta + W
        (centidegrees^2).
    X, Y : float
        Lorentzian width coefficients (centidegrees).
    SH_L : float
        Axial divergence (finger, Thompson & Cox) as S/L + H/L.
    """

    wavelength_A: float
    polarization: float
    zero_deg: float = 0.0
    U: float = 0.0
    V: float = 0.0
    W: float = 0.0
    X: float = 0.0
    Y: float = 0.0
    SH_L: float = 0.002


def write_instprm(path: str | os.PathLike, params: InstrumentParameters, comments: Sequence[str] = ()) -> Path:
    """GSAS-II's ``.instprm`` file (``#`` comments, ``key:value`` lines)."""
    p = params
    lines = ["#GSAS-II instrument parameter file; do not add/delete items!"]
    lines += [f"# {_clean_title(c)}" for c in comments]
    lines += ["Type:PXC", "Bank:1.0", f"Lam:{p.wavelength_A:.6f}", f"Polariz.:{p.polarization:.4f}",
              "Azimuth:0.0", f"Zero:{p.zero_deg * 100.0:.4f}", f"U:{p.U:.6g}", f"V:{p.V:.6g}", f"W:{p.W:.6g}",
              f"X:{p.X:.6g}", f"Y:{p.Y:.6g}", "Z:0.0", f"SH/L:{p.SH_L:.6g}"]
    return _write_text(path, "\n".join(lines) + "\n")


def write_eosfit_dat(path: str | os.PathLike, pressure_GPa, pressure_err_GPa, volume_A3, volume_err_A3,
                     title: str, comments: Sequence[str] = ()) -> Path:
    """An EosFit7c P-V data file: TITLE, PSCALE GPa, VSCALE, FORMAT P SIGP V SIGV, DATA, rows.

    Rows where P or V is not finite are left out; a sigma that is not finite
    is written as 0 (EosFit7 then gives the point no error in that quantity).
    """
    p, sp, v, sv = (np.asarray(a, dtype=float) for a in (pressure_GPa, pressure_err_GPa, volume_A3, volume_err_A3))
    keep = _finite_rows(p, v)
    lines = [f"# {_clean_title(c)}" for c in comments]
    lines += [f"TITLE {_clean_title(title)}", "PSCALE GPa", "VSCALE A^3", "FORMAT 1 P SIGP V SIGV", "DATA"]
    for row in zip(p[keep], np.nan_to_num(sp[keep], nan=0.0), v[keep], np.nan_to_num(sv[keep], nan=0.0)):
        lines.append("  ".join(f"{value:.6f}" for value in row))
    return _write_text(path, "\n".join(lines) + "\n")


@dataclass(frozen=True)
class JcpdsLineOut:
    """One ``DIHKL`` line to write: d (A), relative intensity (strongest 100), hkl."""

    d_A: float
    intensity: float
    hkl: tuple[int, int, int]


def write_jcpds(path: str | os.PathLike, comment: str, symmetry: str, cell: Sequence[float], K0_GPa: float,
                Kp: float, lines: Sequence[JcpdsLineOut], alpha_T_per_K: float = 0.0) -> Path:
    """A JCPDS version-4 file, laid out as those Dioptas ships (``au_Anderson.jcpds``).

    Parameters
    ----------
    symmetry : str
        Crystal system (cubic, tetragonal, hexagonal, trigonal, rhombohedral,
        orthorhombic, monoclinic, triclinic); written upper-case.
    cell : sequence of 6 floats
        a, b, c (A), alpha, beta, gamma (deg) at P = 0; only the keys the
        symmetry needs are written.
    K0_GPa, Kp : float
        BM3 coefficients (JCPDS readers take them as such).
    """
    system = symmetry.lower()
    if system not in _JCPDS_CELL_KEYS:
        raise ValueError(f"unknown crystal system {symmetry!r} for a JCPDS file")
    if not (math.isfinite(K0_GPa) and math.isfinite(Kp)):
        raise ValueError(f"JCPDS EOS coefficients must be finite numbers (K0 {K0_GPa}, K' {Kp})")
    rows = ["VERSION: 4", f"COMMENT: {_clean_title(comment)}", f"K0:       {K0_GPa:.4f}", f"K0P:       {Kp:.4f}",
            f"SYMMETRY: {system.upper()}"]
    rows += [f"{key}:      {float(cell[_CELL_INDEX[key]]):.5f}" for key in _JCPDS_CELL_KEYS[system]]
    rows.append(f"ALPHAT:      {alpha_T_per_K:.6g}")
    for line in lines:
        h, k, l = line.hkl  # noqa: E741 - the Miller index is called l
        rows.append(f"DIHKL:   {line.d_A:.4f}   {line.intensity:5.1f}    {h:.2f}    {k:.2f}    {l:.2f}")
    return _write_text(path, "\n".join(rows) + "\n")


def write_csv(path: str | os.PathLike, columns: Mapping[str, np.ndarray], units: Mapping[str, str] | None = None
              ) -> Path:
    """A table as CSV: header ``name [unit]`` (``name`` alone without a unit), one row per point.

    Parameters
    ----------
    columns : mapping of name to 1-D array
        All of one length; NaN becomes an empty cell, booleans ``true``/``false``.
    units : mapping of name to unit, optional
    """
    units = units or {}
    names = list(columns)
    arrays = [np.asarray(columns[n]) for n in names]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths {sorted(lengths)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([f"{n} [{units[n]}]" if units.get(n) else n for n in names])
        for i in range(lengths.pop() if lengths else 0):
            writer.writerow([_cell(a[i]) for a in arrays])
    return path


def _cell(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(value) else repr(float(value))
    if isinstance(value, bytes):
        return value.decode()
    return str(value)
