"""Campaigns: the runs of one study side by side (sizes, compression and release, temperatures).

A campaign (config ``campaigns: {<name>: {runs: [...], by: <label>, values:
[...]}}``) reads the result stores of its runs, once they are written, and
keeps per run the numbers a paper tabulates, in
``<results_dir>/campaigns/<name>.h5``:

``runs/``
    ``run``, ``value`` (of ``by``; numbers as float, else text), ``store``
    (path) and ``store_sha256``: the store each row was read from.
``transitions/``
    one row per transition of each run: ``run``, ``from_phase``,
    ``to_phase``, ``direction``, ``onset_GPa``, ``end_GPa`` with
    ``onset_err_GPa``, ``end_err_GPa`` (:func:`bracket_uncertainty_GPa`),
    ``onset_point``, ``end_point``.
``phases/``
    one row per phase of each run: ``run``, ``phase``, ``model``,
    ``V0_fu_A3``, ``K0_GPa``, ``Kp`` each with ``_err`` (the EOS fit),
    ``dEg_dP_eV_per_GPa`` with ``dEg_dP_err_eV_per_GPa`` (the optical stage's
    linear term alpha of Eg = E0 + alpha P + beta P^2), ``E0_eV``,
    ``crystallite_nm`` with ``crystallite_err_nm`` (:func:`median_with_error`
    over the points where the phase was sized).
``superlattice/``
    per run with SAXS: ``run``, ``pressure_GPa``, ``d_A``, ``d_err_A`` at the
    run's lowest pressure with a spacing.

A quantity a run does not have is NaN (or the row is absent), never made up.
The functions here read stores through h5py only at the edge
(:func:`summarize_store`); the rest is plain arithmetic on arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from .. import __version__
from ..core.errors import ConfigError, InputError
from ..io.refs import file_record
from .layout import store_path
from .store import atomic_h5, open_result, write_dataset

TRANSITION_COLUMNS = ("run", "from_phase", "to_phase", "direction", "onset_GPa", "onset_err_GPa", "end_GPa",
                      "end_err_GPa", "onset_point", "end_point")
PHASE_COLUMNS = ("run", "phase", "model", "V0_fu_A3", "V0_fu_err_A3", "K0_GPa", "K0_err_GPa", "Kp", "Kp_err",
                 "E0_eV", "dEg_dP_eV_per_GPa", "dEg_dP_err_eV_per_GPa", "crystallite_nm", "crystallite_err_nm")
SUPERLATTICE_COLUMNS = ("run", "pressure_GPa", "d_A", "d_err_A")
_TEXT = {"run", "from_phase", "to_phase", "direction", "onset_point", "end_point", "phase", "model"}


@dataclass
class RunSummary:
    """What a campaign keeps of one run's store (module docstring); rows as dicts of :data:`*_COLUMNS`."""

    run: str
    store: str
    store_sha256: str
    transitions: list[dict] = field(default_factory=list)
    phases: list[dict] = field(default_factory=list)
    superlattice: list[dict] = field(default_factory=list)


@dataclass
class Campaign:
    """A campaign's runs with their value of ``by``, and each run's summary."""

    name: str
    by: str
    values: list
    runs: list[RunSummary]

    @property
    def run_ids(self) -> list[str]:
        return [r.run for r in self.runs]

    def value_of(self, run: str):
        return self.values[self.run_ids.index(run)]

    def table(self, kind: str) -> dict[str, np.ndarray]:
        """The rows of ``kind`` ("transitions", "phases", "superlattice") of every run, as columns."""
        columns = {"transitions": TRANSITION_COLUMNS, "phases": PHASE_COLUMNS,
                   "superlattice": SUPERLATTICE_COLUMNS}[kind]
        rows = [row for summary in self.runs for row in getattr(summary, kind)]
        return {c: np.array([row[c] for row in rows], dtype=object if c in _TEXT else float) for c in columns}


# --------------------------------------------------------------------------
# The numbers
# --------------------------------------------------------------------------


def bracket_uncertainty_GPa(p_before_GPa: float, p_after_GPa: float, p_err_before_GPa: float = 0.0,
                            p_err_after_GPa: float = 0.0) -> float:
    """Standard uncertainty of a transition pressure known to lie between two points.

    A transition is seen between the last point without the change and the
    first with it; the pipeline's onset (or end) lies in that bracket
    (:mod:`dacpipe.xrd.transitions`). Read as a rectangular distribution
    over the bracket its standard uncertainty is half the width over sqrt(3)
    (GUM, JCGM 100:2008, 4.3.7), added in quadrature to the larger of the two
    points' own pressure errors.

    Returns
    -------
    float
        NaN when either pressure is not finite.
    """
    if not (math.isfinite(p_before_GPa) and math.isfinite(p_after_GPa)):
        return math.nan
    half = abs(p_after_GPa - p_before_GPa) / 2.0
    errors = [e for e in (p_err_before_GPa, p_err_after_GPa) if math.isfinite(e)]
    return math.hypot(half / math.sqrt(3.0), max(errors, default=0.0))


def median_with_error(values, errors=None) -> tuple[float, float]:
    """Median of the finite ``values`` and its standard error.

    The standard error of the median of n normal values of spread sigma is
    sqrt(pi/2) sigma / sqrt(n) (Kenney & Keeping, Mathematics of Statistics,
    1962, sec. 13.13); sigma is the larger of the values' sample standard
    deviation and the rms of their own ``errors``, so that a constant series
    still carries its measurement error. One value: its own error.

    Returns
    -------
    (float, float)
        (NaN, NaN) with no finite value.
    """
    v = np.asarray(values, dtype=float)
    e = np.full_like(v, np.nan) if errors is None else np.asarray(errors, dtype=float)
    ok = np.isfinite(v)
    v, e = v[ok], e[ok]
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), float(e[0])
    own = float(np.sqrt(np.nanmean(e**2))) if np.isfinite(e).any() else 0.0
    sigma = max(float(np.std(v, ddof=1)), own)
    return float(np.median(v)), math.sqrt(math.pi / 2.0) * sigma / math.sqrt(v.size)


def transition_rows(run: str, table: dict[str, np.ndarray], point_ids: Sequence[str], pressure_GPa,
                    pressure_err_GPa) -> list[dict]:
    """The transitions of a store's ``transitions/`` table with their uncertainties.

    The bracket of an onset is the point before ``onset_point`` (in
    measurement order) and ``onset_point``; of an end, the point before
    ``end_point`` and ``end_point`` (:func:`bracket_uncertainty_GPa`).
    """
    index = {p: i for i, p in enumerate(point_ids)}
    p = np.asarray(pressure_GPa, dtype=float)
    p_err = np.asarray(pressure_err_GPa, dtype=float)

    def error(point: str) -> float:
        i = index.get(point)
        if i is None or i == 0:
            return math.nan
        return bracket_uncertainty_GPa(p[i - 1], p[i], p_err[i - 1], p_err[i])

    rows = []
    for k in range(len(table.get("from_phase", []))):
        onset_point = str(table["onset_point"][k]) if "onset_point" in table else ""
        end_point = str(table["end_point"][k]) if "end_point" in table else ""
        end = float(table["end_GPa"][k]) if "end_GPa" in table else math.nan
        rows.append({"run": run, "from_phase": str(table["from_phase"][k]), "to_phase": str(table["to_phase"][k]),
                     "direction": str(table["direction"][k]) if "direction" in table else "",
                     "onset_GPa": float(table["onset_GPa"][k]), "onset_err_GPa": error(onset_point),
                     "end_GPa": end, "end_err_GPa": error(end_point) if math.isfinite(end) else math.nan,
                     "onset_point": onset_point, "end_point": end_point})
    return rows


def lowest_pressure_value(pressure_GPa, values, errors) -> tuple[float, float, float]:
    """(pressure, value, error) at the lowest pressure where the value is finite; NaNs without one."""
    p, v = np.asarray(pressure_GPa, dtype=float), np.asarray(values, dtype=float)
    e = np.asarray(errors, dtype=float)
    ok = np.flatnonzero(np.isfinite(p) & np.isfinite(v))
    if ok.size == 0:
        return math.nan, math.nan, math.nan
    i = ok[np.argmin(p[ok])]
    return float(p[i]), float(v[i]), float(e[i])


# --------------------------------------------------------------------------
# Reading a run's store (the edge)
# --------------------------------------------------------------------------


def _text(dset) -> np.ndarray:
    return dset.asstr()[()] if dset.dtype.kind == "O" else dset[()]


def _scalar(group, name: str) -> float:
    return float(group[name][()]) if group is not None and name in group else math.nan


def summarize_store(path: str | Path, run: str | None = None) -> RunSummary:
    """The campaign's summary of one run's store (module docstring).

    Raises
    ------
    StoreError
        The store is missing or unreadable (one line, saying how to rebuild it).
    """
    path = Path(path)
    record = file_record(path)
    with open_result(path, run) as h5:
        run = run or str(h5.attrs.get("default", next(iter(h5))))
        entry = h5[run]
        points = entry["points"]
        point_ids = list(_text(points["point"]))
        pressure, pressure_err = points["pressure_GPa"][()], points["pressure_err_GPa"][()]
        summary = RunSummary(run=run, store=str(path), store_sha256=record.sha256)
        if "transitions" in entry:
            table = {name: _text(d) for name, d in entry["transitions"].items() if isinstance(d, h5py.Dataset)}
            summary.transitions = transition_rows(run, table, point_ids, pressure, pressure_err)
        for phase in _run_phases(entry):
            eos = entry.get(f"eos/{phase}")
            eos = eos if isinstance(eos, h5py.Group) and "K0_GPa" in eos else None
            fit = entry.get(f"optical/band_gap/fit/{phase}")
            sized = entry.get(f"phases/{phase}")
            size, size_err = (median_with_error(sized["crystallite_nm"][()], sized["crystallite_err_nm"][()]
                                                if "crystallite_err_nm" in sized else None)
                              if sized is not None and "crystallite_nm" in sized else (math.nan, math.nan))
            summary.phases.append({
                "run": run, "phase": phase, "model": str(_text(eos["model"])) if eos is not None else "",
                "V0_fu_A3": _scalar(eos, "V0_fu_A3"), "V0_fu_err_A3": _scalar(eos, "V0_fu_err_A3"),
                "K0_GPa": _scalar(eos, "K0_GPa"), "K0_err_GPa": _scalar(eos, "K0_err_GPa"),
                "Kp": _scalar(eos, "Kp"), "Kp_err": _scalar(eos, "Kp_err"),
                "E0_eV": _scalar(fit, "E0_eV"), "dEg_dP_eV_per_GPa": _scalar(fit, "alpha_eV_per_GPa"),
                "dEg_dP_err_eV_per_GPa": _scalar(fit, "alpha_err_eV_per_GPa"),
                "crystallite_nm": size, "crystallite_err_nm": size_err})
        lattice = entry.get("superlattice")
        if lattice is not None and "d_A" in lattice:
            p, d, d_err = lowest_pressure_value(pressure, lattice["d_A"][()], lattice["d_err_A"][()]
                                                if "d_err_A" in lattice else np.full(len(pressure), np.nan))
            summary.superlattice.append({"run": run, "pressure_GPa": p, "d_A": d, "d_err_A": d_err})
    return summary


def _run_phases(entry: h5py.Group) -> list[str]:
    """The phases of a run in its config's order, then any others with an EOS or an E(P) fit."""
    names: list[str] = []
    group = entry.get("phases")
    if group is not None:
        names += [str(n) for n in group.attrs.get("phases", []) if str(n) in group]
    for extra in (entry.get("eos"), entry.get("optical/band_gap/fit")):
        if extra is not None:
            names += [n for n, g in extra.items() if isinstance(g, h5py.Group) and n not in names
                      and ("K0_GPa" in g or "alpha_eV_per_GPa" in g)]
    return list(dict.fromkeys(names))


# --------------------------------------------------------------------------
# The campaign file
# --------------------------------------------------------------------------


def campaign_path(config: dict, name: str) -> Path:
    """``<results_dir>/campaigns/<name>.h5``."""
    return Path(config["results_dir"]) / "campaigns" / f"{name}.h5"


def campaign_figure_path(config: dict, name: str, figure: str) -> Path:
    """Where a campaign's figure goes (PNG; the PDF beside it)."""
    return Path(config["results_dir"]) / "campaigns" / name / "figures" / f"{figure}.png"


def campaign_job_config(config: dict, name: str) -> dict:
    """What a campaign's job is given (the Snakemake rule's parameter): the
    campaign's settings and its runs' sheets, which the config check needs,
    and nothing else of them, so that editing a run's stage settings reruns
    the campaign through the run's store only, and editing another run not at all."""
    spec = campaign_spec(config, name)
    return {"results_dir": config["results_dir"],
            "runs": {run: {"sheet": config["runs"][run]["sheet"]} for run in spec["runs"]},
            "campaigns": {name: spec}}


def campaign_spec(config: dict, name: str) -> dict:
    """The campaign's validated settings (runs, by, values)."""
    campaigns = config.get("campaigns", {})
    if name not in campaigns:
        raise ConfigError(f"config: no campaign called {name!r}; campaigns: {', '.join(campaigns) or 'none'}")
    return campaigns[name]


def build_campaign(name: str, spec: dict, stores: Sequence[str | Path]) -> Campaign:
    """Read the stores of a campaign's runs (in the order of ``spec["runs"]``)."""
    if len(stores) != len(spec["runs"]):
        raise ConfigError(f"campaign {name}: {len(stores)} stores for {len(spec['runs'])} runs")
    return Campaign(name=name, by=spec["by"], values=list(spec["values"]),
                    runs=[summarize_store(path, run) for run, path in zip(spec["runs"], stores)])


def campaign_from_config(config: dict, name: str, stores: Sequence[str | Path] | None = None) -> Campaign:
    spec = campaign_spec(config, name)
    stores = stores or [store_path(config, run) for run in spec["runs"]]
    return build_campaign(name, spec, stores)


def _values_array(values: list) -> np.ndarray:
    """Numbers as float; any text makes them all text."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=float)
    return np.array([str(v) for v in values], dtype=object)


def write_campaign(path: str | Path, campaign: Campaign) -> Path:
    """Write ``campaign`` to ``path`` atomically (module docstring for the layout)."""
    path = Path(path)
    with atomic_h5(path) as h5:
        h5.attrs.update({"creator": "dacpipe", "dacpipe_version": __version__, "campaign": campaign.name,
                         "by": campaign.by, "file_time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        runs = h5.create_group("runs")
        runs.attrs["by"] = campaign.by
        write_dataset(runs, "run", np.array(campaign.run_ids, dtype=object))
        write_dataset(runs, "value", _values_array(campaign.values))
        write_dataset(runs, "store", np.array([r.store for r in campaign.runs], dtype=object))
        write_dataset(runs, "store_sha256", np.array([r.store_sha256 for r in campaign.runs], dtype=object))
        for kind in ("transitions", "phases", "superlattice"):
            group = h5.create_group(kind)
            for column, values in campaign.table(kind).items():
                if values.dtype == object:
                    group.create_dataset(column, data=[str(v) for v in values], dtype=h5py.string_dtype())
                else:
                    write_dataset(group, column, values)
    return path


def read_campaign(path: str | Path) -> Campaign:
    """A campaign file back as a :class:`Campaign`.

    Raises
    ------
    InputError
        The file is not a campaign file.
    """
    path = Path(path)
    try:
        h5 = h5py.File(path, "r")
    except OSError:
        raise InputError("not a readable campaign file; run `dacpipe campaign NAME` to write it", str(path)) from None
    with h5:
        if "runs" not in h5 or "campaign" not in h5.attrs:
            raise InputError("not a dacpipe campaign file (no runs/ table)", str(path))
        runs = h5["runs"]
        values = runs["value"]
        values = list(_text(values)) if values.dtype.kind == "O" else [float(v) for v in values[()]]
        summaries = [RunSummary(run=str(r), store=str(s), store_sha256=str(c))
                     for r, s, c in zip(_text(runs["run"]), _text(runs["store"]), _text(runs["store_sha256"]))]
        by_run = {s.run: s for s in summaries}
        for kind in ("transitions", "phases", "superlattice"):
            table = {name: _text(d) for name, d in h5[kind].items()}
            n = len(table.get("run", []))
            for k in range(n):
                row = {c: (str(v[k]) if c in _TEXT else float(v[k])) for c, v in table.items()}
                getattr(by_run[row["run"]], kind).append(row)
        return Campaign(name=str(h5.attrs["campaign"]), by=str(h5.attrs["by"]), values=values, runs=summaries)
