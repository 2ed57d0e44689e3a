"""A run's store for notebooks (:func:`load`) and for other tools (:func:`export_run`).

:func:`load` gives the store as labelled arrays: xarray Datasets with
dimensions ``point`` and ``q`` (the patterns) or ``point`` and ``phase``
(the per-phase results), coordinates ``pressure`` and ``phase``, units as
attributes; and the per-point tables as pandas DataFrames. xarray and pandas
are the ``notebook`` extra (``pip install dacpipe[notebook]``), imported
only when :func:`load` is called.

:func:`export_run` writes the store in the formats other tools read
(:mod:`dacpipe.io.exports`): ``dacpipe export RUN --to FORMAT``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from ..core.errors import InputError
from .store import open_result

EXPORT_FORMATS = ("xy", "chi", "xye", "eosfit", "jcpds", "csv")
# Groups that are not tables over points (fit results, file lists, the series' transitions).
_NOT_TABLES = ("eos", "provenance", "transitions")


# --------------------------------------------------------------------------
# Reading the store
# --------------------------------------------------------------------------


def _decode(dset: h5py.Dataset) -> np.ndarray:
    return dset.asstr()[()] if dset.dtype.kind == "O" else dset[()]


def _entry_name(h5: h5py.File, run: str | None) -> str:
    if run is not None:
        return run
    default = h5.attrs.get("default")
    if default is None:
        names = list(h5)
        if len(names) != 1:
            raise InputError(f"the store holds runs {', '.join(names)}; name one", h5.filename)
        return names[0]
    return default.decode() if isinstance(default, bytes) else str(default)


def per_point_tables(entry: h5py.Group) -> dict[str, tuple[dict[str, np.ndarray], dict[str, str]]]:
    """Every group's one-dimensional datasets over the run's points, as tables.

    Returns
    -------
    dict
        Table name (the group's path with ``/`` as ``_``: ``points``,
        ``pressure_before``, ``phases_HgTe-zb``, ``optical_band_gap``) to
        (columns, units); columns start with ``point``. Axes (``@fixed_axes``)
        and arrays of other lengths are left out.
    """
    point_ids = _decode(entry["points/point"])
    n = len(point_ids)
    tables: dict[str, tuple[dict[str, np.ndarray], dict[str, str]]] = {}

    def visit(group: h5py.Group, prefix: str) -> None:
        fixed = {str(a) for a in np.atleast_1d(group.attrs.get("fixed_axes", []))}
        columns: dict[str, np.ndarray] = {}
        units: dict[str, str] = {}
        for name, member in group.items():
            if isinstance(member, h5py.Group):
                visit(member, f"{prefix}_{name}" if prefix else name)
            elif member.ndim == 1 and member.shape[0] == n and name not in fixed and name != "point":
                columns[name] = _decode(member)
                unit = member.attrs.get("units")
                if unit is not None:
                    units[name] = unit.decode() if isinstance(unit, bytes) else str(unit)
        if columns:
            tables[prefix] = ({"point": point_ids, **columns}, units)

    for name, member in entry.items():
        if isinstance(member, h5py.Group) and name not in _NOT_TABLES:
            visit(member, name)
    return tables


@dataclass
class RunData:
    """A run's store as labelled arrays and tables (what :func:`load` returns).

    Attributes
    ----------
    run : str
    points : pandas.DataFrame
        The ``points`` table, indexed by point: pressure_GPa, pressure_err_GPa,
        temperature_K, status, note.
    xrd, saxs : xarray.Dataset or None
        ``I`` and ``I_errors`` over (point, q); coordinates q (1/A),
        two_theta (deg, over q), pressure (GPa, over point). ``xrd`` also
        holds the fitted ``calc`` and ``background`` where the phase stage ran.
    phases : xarray.Dataset or None
        Every per-phase quantity (fraction, a_A, volume_fu_A3, crystallite_nm
        ...) over (point, phase), NaN where a phase lacks it.
    eos : pandas.DataFrame or None
        One row per fitted phase: model, V0_fu_A3, K0_GPa, Kp with errors,
        reduced_chi2, n_points.
    transitions : pandas.DataFrame or None
    tables : dict of pandas.DataFrame
        Every per-point table (:func:`per_point_tables`), indexed by point;
        each column's unit in ``df.attrs["units"]``.
    attrs : dict
        The store's file and run attributes.
    """

    run: str
    points: Any
    xrd: Any = None
    saxs: Any = None
    phases: Any = None
    eos: Any = None
    transitions: Any = None
    tables: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)


def _attrs(obj) -> dict:
    out = {}
    for key, value in obj.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.ndarray) and value.dtype.kind == "O":
            value = [v.decode() if isinstance(v, bytes) else str(v) for v in value]
        out[key] = value
    return out


def _units(dset: h5py.Dataset) -> dict:
    unit = dset.attrs.get("units")
    return {} if unit is None else {"units": unit.decode() if isinstance(unit, bytes) else str(unit)}


def load(path: str | Path, run: str | None = None) -> RunData:
    """A run's result store as xarray Datasets and pandas DataFrames.

    Parameters
    ----------
    path : str or Path
        ``results/<run>.h5``.
    run : str, optional
        The run's entry (default: the store's ``@default``).

    Returns
    -------
    RunData

    Raises
    ------
    ImportError
        xarray or pandas missing: ``pip install dacpipe[notebook]``.
    StoreError
        The store is missing or damaged (one line naming it).
    """
    try:
        import pandas as pd
        import xarray as xr
    except ImportError as exc:
        raise ImportError(f"dacpipe.load needs xarray and pandas ({exc}); "
                          "install them with: pip install 'dacpipe[notebook]'") from None

    with open_result(path) as h5:
        run = _entry_name(h5, run)
        if run not in h5:
            raise InputError(f"the store holds no run {run!r} (it has {', '.join(h5)})", path)
        entry = h5[run]
        tables = {}
        for name, (columns, units) in per_point_tables(entry).items():
            frame = pd.DataFrame(columns).set_index("point")
            frame.attrs["units"] = units
            tables[name] = frame
        points = tables["points"]
        pressure = points["pressure_GPa"].to_numpy(dtype=float)
        point_ids = points.index.to_numpy()
        coords_point = {"point": point_ids, "pressure": ("point", pressure, {"units": "GPa"})}

        def patterns(name: str):
            if name not in entry or "I" not in entry[name]:
                return None
            group = entry[name]
            q = group["q"][()]
            coords = {**coords_point, "q": ("q", q, {"units": "1/angstrom"})}
            if "two_theta" in group:
                coords["two_theta"] = ("q", group["two_theta"][()], {"units": "degree"})
            variables = {"I": (("point", "q"), group["I"][()], _units(group["I"]))}
            if "I_errors" in group:
                variables["I_errors"] = (("point", "q"), group["I_errors"][()], _units(group["I_errors"]))
            if name == "xrd" and "phases" in entry:
                for model in ("calc", "background"):
                    if model in entry["phases"] and entry["phases"][model].shape == group["I"].shape:
                        variables[model] = (("point", "q"), entry["phases"][model][()])
            attrs = {k: v for k, v in _attrs(group).items() if k not in ("NX_class", "signal", "axes")}
            return xr.Dataset(variables, coords=coords, attrs=attrs)

        phases = None
        if "phases" in entry:
            names = [str(p) for p in np.atleast_1d(_attrs(entry["phases"]).get("phases", []))]
            names = [p for p in names if p in entry["phases"]]
            if names:
                quantities = {}
                for phase in names:
                    for key, dset in entry["phases"][phase].items():
                        if isinstance(dset, h5py.Dataset) and dset.ndim == 1 and dset.dtype.kind in "fiub":
                            quantities.setdefault(key, _units(dset))
                variables = {}
                for key, unit in quantities.items():
                    stack = np.full((len(point_ids), len(names)), np.nan)
                    for j, phase in enumerate(names):
                        if key in entry["phases"][phase]:
                            stack[:, j] = entry["phases"][phase][key][()].astype(float)
                    variables[key] = (("point", "phase"), stack, unit)
                phases = xr.Dataset(variables, coords={**coords_point, "phase": names})

        eos = None
        if "eos" in entry:
            rows = []
            for phase, group in entry["eos"].items():
                if not isinstance(group, h5py.Group) or "K0_GPa" not in group:
                    continue
                row = {"phase": phase}
                for key, dset in group.items():
                    if isinstance(dset, h5py.Dataset) and dset.ndim == 0:
                        value = _decode(dset)
                        row[key] = value.decode() if isinstance(value, bytes) else value
                rows.append(row)
            eos = pd.DataFrame(rows).set_index("phase") if rows else None

        transitions = None
        if "transitions" in entry and len(entry["transitions"]):
            transitions = pd.DataFrame({k: _decode(v) for k, v in entry["transitions"].items()
                                        if isinstance(v, h5py.Dataset) and v.ndim == 1})
        return RunData(run=run, points=points, xrd=patterns("xrd"), saxs=patterns("saxs"), phases=phases,
                       eos=eos, transitions=transitions, tables=tables,
                       attrs={**_attrs(h5), **_attrs(entry)})


# --------------------------------------------------------------------------
# Exports
# --------------------------------------------------------------------------


def pyfai_header(poni_path: str | Path, convention: str, wavelength_A: float, polarization_factor) -> list[str]:
    """The calibration block Dioptas writes at the top of an ``.xy`` file.

    Dioptas takes it from pyFAI: pixel size, PONI and distance in metres,
    the three rotations, then the same geometry in Fit2D's terms, the
    wavelength in metres, the polarization and normalization factors.
    """
    from ..io.poni import load_geometry

    ai = load_geometry(poni_path, convention=convention, wavelength_A=wavelength_A).integrator
    fit2d = ai.getFit2D()
    pol = "None" if polarization_factor is None or not math.isfinite(float(polarization_factor)) \
        else f"{float(polarization_factor):g}"
    return ["== pyFAI calibration ==", "SplineFile: None",
            f"PixelSize: {ai.pixel1:.3e}, {ai.pixel2:.3e} m",
            f"PONI: {ai.poni1:.3e}, {ai.poni2:.3e} m",
            f"Distance Sample to Detector: {ai.dist} m",
            f"Rotations: {ai.rot1:.6f} {ai.rot2:.6f} {ai.rot3:.6f} rad", "",
            "== Fit2d calibration ==",
            f"Distance Sample-beamCenter: {fit2d['directDist']:.3f} mm",
            f"Center: x={fit2d['centerX']:.3f}, y={fit2d['centerY']:.3f} pix",
            f"Tilt: {fit2d['tilt']:.3f} deg  TiltPlanRot: {fit2d['tiltPlanRotation']:.3f} deg", "",
            f"Wavelength: {wavelength_A * 1e-10:.3e}", f"Polarization factor: {pol}",
            "Normalization factor: None"]


def instrument_parameters(poni_path: str | Path, convention: str, wavelength_A: float,
                          polarization_factor) -> tuple[Any, list[str]]:
    """GSAS-II instrument parameters the PONI implies, and comments saying where each comes from.

    * ``Lam``: the store's wavelength; ``Zero`` 0, because the PONI
      calibration already puts 2theta where the geometry says.
    * ``Polariz.``: pyFAI's polarization factor P (-1..1, 0 unpolarized)
      as GSAS-II's horizontal fraction (1 + P) / 2 (0.5 unpolarized).
    * ``W``: the variance of one pixel's angular width at the beam centre,
      (p / D)^2 / 12 (a box of width p / D radians, in centidegrees^2); U = V = 0
      and X = Y = 0. That is the detector's resolution limit only: the beam's
      size and divergence, which a PONI does not hold, add to it, and the
      sample's own broadening (size, strain) is GSAS-II's to refine, so these
      are starting values to refine, not a calibrated profile.
    """
    from ..io.exports import InstrumentParameters
    from ..io.poni import load_geometry

    ai = load_geometry(poni_path, convention=convention, wavelength_A=wavelength_A).integrator
    pixel_m = math.sqrt(ai.pixel1 * ai.pixel2)
    width_centideg = math.degrees(pixel_m / ai.dist) * 100.0
    p = 0.0 if polarization_factor is None or not math.isfinite(float(polarization_factor)) \
        else float(polarization_factor)
    params = InstrumentParameters(wavelength_A=wavelength_A, polarization=(1.0 + p) / 2.0, zero_deg=0.0,
                                  W=width_centideg ** 2 / 12.0)
    comments = [f"from {Path(poni_path).name}: pixel {pixel_m * 1e6:.1f} um at {ai.dist * 1e3:.2f} mm; "
                f"W = (pixel angle)^2/12, U = V = X = Y = 0: the detector's limit, refine them",
                f"Polariz. = (1 + P)/2 for pyFAI polarization factor P = {p:g}"]
    return params, comments


def _store_from(run_or_store: str | Path, config: dict | None) -> tuple[Path, str | None]:
    path = Path(run_or_store)
    if path.suffix == ".h5" or path.is_file():
        return path, None
    if config is None:
        raise InputError(f"{run_or_store!r} is neither a store (.h5) nor a run of a config (give --configfile)")
    from .config import run_config
    from .layout import store_path

    run_config(config, str(run_or_store))
    return store_path(config, str(run_or_store)), str(run_or_store)


def export_run(run_or_store: str | Path, fmt: str, out_dir: str | Path | None = None, *,
               config: dict | None = None, say: Callable[[str], None] = lambda message: None) -> list[Path]:
    """Write a run's store in one format other tools read.

    Parameters
    ----------
    run_or_store : str or Path
        The store (``results/<run>.h5``), or a run name of ``config``.
    fmt : {"xy", "chi", "xye", "eosfit", "jcpds", "csv"}
        ``xy``, ``chi``, ``xye``: one file per point with a pattern
        (2theta in degrees; ``xye`` adds ``<run>.instprm``). ``eosfit``: one
        ``.dat`` per phase with an EOS fit, its fitted points. ``jcpds``: one
        file per fitted phase, its cell at P = 0 with the fitted EOS. ``csv``:
        every per-point table.
    out_dir : str or Path, optional
        Default ``<store folder>/<run>/export/<fmt>``.
    say : callable
        Told what was left out and why.

    Returns
    -------
    list of Path
        The files written.
    """
    from ..io import exports

    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    store, run = _store_from(run_or_store, config)
    written: list[Path] = []
    with open_result(store, run) as h5:
        run = _entry_name(h5, run)
        entry = h5[run]
        out = Path(out_dir) if out_dir is not None else store.parent / run / "export" / fmt
        point_ids = [str(p) for p in _decode(entry["points/point"])]
        pressure = entry["points/pressure_GPa"][()]
        pressure_err = entry["points/pressure_err_GPa"][()]

        if fmt == "csv":
            for name, (columns, units) in per_point_tables(entry).items():
                written.append(exports.write_csv(out / f"{run}_{name}.csv", columns, units))
            return written

        if fmt in ("xy", "chi", "xye"):
            if "xrd" not in entry or "I" not in entry["xrd"]:
                raise InputError(f"run {run} has no integrated XRD patterns to export", store)
            xrd = entry["xrd"]
            attrs = _attrs(xrd)
            wavelength_A = float(attrs["wavelength_A"])
            tth = xrd["two_theta"][()]
            intensity, sigma = xrd["I"][()], xrd["I_errors"][()]
            poni, convention = attrs.get("poni", ""), attrs.get("poni_convention", "pyfai")
            polarization = attrs.get("polarization_factor")
            header: list[str] = [f"Wavelength: {wavelength_A * 1e-10:.3e}"]
            if fmt in ("xy", "xye"):
                try:
                    if fmt == "xy":
                        header = pyfai_header(poni, convention, wavelength_A, polarization)
                    else:
                        params, comments = instrument_parameters(poni, convention, wavelength_A, polarization)
                        written.append(exports.write_instprm(out / f"{run}.instprm", params, comments))
                except (InputError, OSError, ValueError) as exc:
                    say(f"{run}: no geometry from the PONI file {poni or '(none)'} ({exc}); "
                        + ("the .xy header holds the wavelength only" if fmt == "xy" else "no .instprm written"))
            for i, point in enumerate(point_ids):
                if not np.any(np.isfinite(intensity[i])):
                    say(f"{run}/{point}: no pattern to export")
                    continue
                title = f"{run} {point} at {pressure[i]:.3f} GPa"
                target = out / f"{run}_{point}.{fmt}"
                if fmt == "xy":
                    written.append(exports.write_xy(target, tth, intensity[i], header))
                elif fmt == "chi":
                    written.append(exports.write_chi(target, tth, intensity[i], title))
                else:
                    written.append(exports.write_xye(target, tth, intensity[i], sigma[i],
                                                     [title, f"wavelength {wavelength_A:.6f} A"]))
            return written

        fitted = _fitted_phases(entry)
        if not fitted:
            raise InputError(f"run {run} has no equation-of-state fit to export", store)
        for phase in fitted:
            eos = entry["eos"][phase]
            if fmt == "eosfit":
                written.append(_write_eosfit(exports, out, run, phase, entry, point_ids, pressure, pressure_err))
            else:
                path = _write_jcpds(exports, out, run, phase, entry, eos, say)
                if path is not None:
                    written.append(path)
    return written


def _fitted_phases(entry: h5py.Group) -> list[str]:
    if "eos" not in entry:
        return []
    return [name for name, group in entry["eos"].items()
            if isinstance(group, h5py.Group) and "K0_GPa" in group and math.isfinite(float(group["K0_GPa"][()]))]


def _write_eosfit(exports, out: Path, run: str, phase: str, entry, point_ids, pressure, pressure_err) -> Path:
    """The phase's P-V points the store's fit used (all points with a volume when it lists none)."""
    group = entry["phases"][phase]
    volume, volume_err = group["volume_fu_A3"][()], group["volume_fu_err_A3"][()]
    eos = entry["eos"][phase]
    used = {str(p) for p in _decode(eos["points"])} if "points" in eos else set(point_ids)
    rows = np.array([p in used for p in point_ids])
    model = _decode(eos["model"]) if "model" in eos else ""
    comments = [f"dacpipe export of run {run}, phase {phase}: V per formula unit (A^3)",
                f"points: {', '.join(p for p, r in zip(point_ids, rows) if r)}",
                f"dacpipe's fit: {model} V0 = {float(eos['V0_fu_A3'][()]):.4f}({float(eos['V0_fu_err_A3'][()]):.4f})"
                f" A^3, K0 = {float(eos['K0_GPa'][()]):.3f}({float(eos['K0_err_GPa'][()]):.3f}) GPa, "
                f"K' = {float(eos['Kp'][()]):.3f}({float(eos['Kp_err'][()]):.3f})"]
    return exports.write_eosfit_dat(out / f"{run}_{phase}.dat", pressure[rows], pressure_err[rows], volume[rows],
                                    volume_err[rows], f"{run} {phase}", comments)


def _write_jcpds(exports, out: Path, run: str, phase: str, entry, eos, say) -> Path | None:
    """The phase at P = 0: the fitted V0, the axial ratios and angles refined at the lowest pressure
    where the phase was seen (the library's where a parameter was not refined), its lines."""
    from ..xrd.cells import cell_volume_A3
    from ..xrd.library import get_phase
    from ..xrd.structure import reflections

    attrs = _attrs(entry["phases"])
    names = [str(p) for p in np.atleast_1d(attrs.get("phases", []))]
    sources = [str(p) for p in np.atleast_1d(attrs.get("phase_sources", names))]
    source = dict(zip(names, sources)).get(phase, phase)
    try:
        definition = get_phase(source)
    except InputError as exc:
        say(f"{run}: {phase}: no JCPDS file: its definition cannot be read ({exc})")
        return None
    group = entry["phases"][phase]
    cell = list(definition.cell)
    a = group["a_A"][()] if "a_A" in group else np.full(1, np.nan)
    seen = np.flatnonzero(np.isfinite(a))
    if len(seen):
        lowest = seen[np.argmin(entry["points/pressure_GPa"][()][seen])]
        for k, key in enumerate(("a_A", "b_A", "c_A", "alpha_deg", "beta_deg", "gamma_deg")):
            if key in group and np.isfinite(group[key][lowest]):
                cell[k] = float(group[key][lowest])
        # a refined cell of a system with b = a or c = a gives only a: keep the symmetry's ties
        if "b_A" not in group and definition.system not in ("orthorhombic", "monoclinic", "triclinic"):
            cell[1] = cell[0]
        if "c_A" not in group and definition.system in ("cubic", "rhombohedral"):
            cell[2] = cell[0]
    z = definition.z_formula_units or 1
    v0_cell = float(eos["V0_fu_A3"][()]) * z
    scale = (v0_cell / cell_volume_A3(cell)) ** (1.0 / 3.0)
    cell0 = [cell[0] * scale, cell[1] * scale, cell[2] * scale, *cell[3:]]
    # Lines over the run's q range with the run's Lorentz-polarization factor, as its patterns show them.
    has_xrd = "xrd" in entry and "q" in entry["xrd"]
    q_max = float(np.nanmax(entry["xrd"]["q"][()])) if has_xrd else 2 * np.pi / 0.8
    wavelength_A = float(entry["xrd"].attrs["wavelength_A"]) if has_xrd and "wavelength_A" in entry["xrd"].attrs \
        else None
    lines = [exports.JcpdsLineOut(r.d_A, r.intensity, r.hkl)
             for r in reflections(definition, cell=cell0, d_min_A=2 * np.pi / q_max, wavelength_A=wavelength_A)
             if r.intensity >= 0.5]
    model = _decode(eos["model"]) if "model" in eos else "bm3"
    comment = (f"{phase} from dacpipe run {run}: {model} fit V0 = {float(eos['V0_fu_A3'][()]):.4f} A^3/fu "
               f"(Z = {z}), K0 = {float(eos['K0_GPa'][()]):.3f}({float(eos['K0_err_GPa'][()]):.3f}) GPa, "
               f"K' = {float(eos['Kp'][()]):.3f}({float(eos['Kp_err'][()]):.3f})"
               + ("" if model == "bm3" or model == "bm2" else "; JCPDS readers use these as BM3"))
    system = "rhombohedral" if definition.system == "trigonal" and abs(cell0[5] - 120.0) > 1e-6 else definition.system
    return exports.write_jcpds(out / f"{run}_{phase}.jcpds", comment, system, cell0, float(eos["K0_GPa"][()]),
                               float(eos["Kp"][()]), lines)
