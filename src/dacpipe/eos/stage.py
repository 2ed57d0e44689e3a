"""The EOS stage: one fit per phase over the points where its volume was refined, outliers excluded."""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from ..core.results import StageContext, StageResult
from ..pressure.budget import random_and_systematic
from .ff import f_F
from .report import (fit_axial_eos, k0_kp_ellipses, volume_change_from_eos, volume_change_from_points)
from .fit import (OUTLIER_LIMIT_SIGMA, EosFit, _model_parameters, fit_eos_excluding_outliers, fit_warnings,
                  propagate_systematic)

# Store names of the parameters and their errors.
_STORE_NAMES = {"V0_A3": ("V0_fu_A3", "V0_fu_err_A3"), "K0_GPa": ("K0_GPa", "K0_err_GPa"), "Kp": ("Kp", "Kp_err"),
                "K0pp_per_GPa": ("K0pp_per_GPa", "K0pp_err_per_GPa")}
# Store names of the parameters' systematic errors.
_SYS_NAMES = {"V0_A3": "V0_fu_sys_err_A3", "K0_GPa": "K0_sys_err_GPa", "Kp": "Kp_sys_err",
              "K0pp_per_GPa": "K0pp_sys_err_per_GPa"}


def run(ctx: StageContext) -> StageResult:
    """The EOS stage of a run: :func:`fit_phase_volumes` on the points'
    pressures (``upstream["pressure"]``), weighted by their random errors,
    with the systematic terms carried separately, and each phase's volumes
    (``upstream["phases"]``)."""
    pressure, phases = ctx.upstream["pressure"], ctx.upstream["phases"]
    names = [str(n) for n in phases.attrs["phases"]]
    # In radial geometry a cubic phase's hydrostatic volume (Singh's d_P) where the phase stage gave
    # one: the cell of the azimuthal average is compressed by the differential stress too.
    hydrostatic = [name for name in names if f"{name}/volume_P_fu_A3" in phases.datasets]
    volumes = {name: (phases[f"{name}/volume_P_fu_A3"], phases[f"{name}/volume_P_fu_err_A3"]) if name in hydrostatic
               else (phases[f"{name}/volume_fu_A3"], phases[f"{name}/volume_fu_err_A3"]) for name in names}
    random_err, systematic = random_and_systematic(pressure)
    result = fit_phase_volumes(ctx.sheet.point_ids, pressure["pressure_GPa"], random_err, volumes,
                               ctx.run["eos"], warn=lambda message: ctx.warn(f"{ctx.run_id}: {message}"),
                               systematic_GPa=systematic, phase_edges=phase_edges(phases),
                               transitions=transitions_of(phases))
    if hydrostatic:
        result.attrs["hydrostatic_volumes"] = hydrostatic
    return result


def phase_edges(phases) -> dict[str, dict[str, tuple]]:
    """Per phase with more than one free cell edge (hexagonal, trigonal,
    tetragonal and lower), edge name -> (edge_A [N], edge_err_A [N]) from
    the phases group's ``<phase>/<a|b|c>_A`` and ``_err_A``, where the
    upstream holds them; a cubic phase (one edge: M = 3K) is left out."""
    out = {}
    for name in (str(n) for n in phases.attrs["phases"]):
        edges = {e: (phases[f"{name}/{e}_A"], phases[f"{name}/{e}_err_A"]) for e in ("a", "b", "c")
                 if f"{name}/{e}_A" in phases.datasets and f"{name}/{e}_err_A" in phases.datasets}
        if len(edges) > 1:
            out[name] = edges
    return out


def transitions_of(phases) -> dict[str, np.ndarray] | None:
    """The ``transitions/`` columns (:mod:`dacpipe.xrd.transitions`) where the upstream holds them, else None."""
    if "transitions/from_phase" not in phases.datasets:
        return None
    return {k.split("/", 1)[1]: np.asarray(v) for k, v in phases.datasets.items() if k.startswith("transitions/")}


def _axes_datasets(base: str, name: str, edges: dict, P, sP, use, kept, model: str, warn) -> dict:
    """``<base>/axes/<edge>/...``: each edge's linearised EOS over the points of the volume fit
    (``P``, ``sP`` those points'; ``use`` then ``kept`` select them from the series)."""
    out = {}
    for axis, (edge, edge_err) in edges.items():
        a, sa = np.asarray(edge, float)[use][kept], np.asarray(edge_err, float)[use][kept]
        ok = np.isfinite(a) & np.isfinite(sa) & (sa > 0)
        try:
            fit = fit_axial_eos(P[ok], a[ok], sigma_P_GPa=sP[ok], sigma_edge_A=sa[ok], axis=axis, model=model)
        except ValueError as err:
            warn(f"eos {name}: no axial modulus of {axis}: {err}")
            continue
        for field in ("a0_A", "a0_err_A", "M0_GPa", "M0_err_GPa", "Mp", "Mp_err", "beta0_per_GPa",
                      "reduced_chi2", "n_points"):
            out[f"{base}/axes/{axis}/{field}"] = np.array(getattr(fit, field))
    return out


def _transition_datasets(transitions: dict, fits: dict, phase_volumes: dict) -> dict[str, np.ndarray]:
    """``eos/transitions/``: Delta V/V of each transition between two phases
    (:func:`~dacpipe.eos.report.volume_change_from_eos` at the onset when both
    were fitted, else :func:`~dacpipe.eos.report.volume_change_from_points`)."""
    rows = []
    for a, b, onset in zip(transitions["from_phase"], transitions["to_phase"], transitions["onset_GPa"]):
        a, b, onset = str(a), str(b), float(onset)
        if not a or not b or a not in phase_volumes or b not in phase_volumes:
            continue
        change = None
        if a in fits and b in fits and np.isfinite(onset):
            try:
                change = volume_change_from_eos(onset, fits[a], fits[b])
            except ValueError:  # onset beyond a fit's stable branch
                change = None
        if change is None:
            change = volume_change_from_points(*phase_volumes[a], *phase_volumes[b])
        rows.append((a, b, onset, change))
    if not rows:
        return {}
    base = "eos/transitions"
    return {f"{base}/from_phase": np.array([r[0] for r in rows], dtype=object),
            f"{base}/to_phase": np.array([r[1] for r in rows], dtype=object),
            f"{base}/onset_GPa": np.array([r[2] for r in rows]),
            f"{base}/delta_V_rel": np.array([r[3].delta_V_rel for r in rows]),
            f"{base}/delta_V_rel_err": np.array([r[3].delta_V_rel_err for r in rows]),
            f"{base}/V_from_fu_A3": np.array([r[3].V_from_A3 for r in rows]),
            f"{base}/V_to_fu_A3": np.array([r[3].V_to_A3 for r in rows]),
            f"{base}/method": np.array([r[3].method for r in rows], dtype=object)}


def _fit_datasets(base: str, fit: EosFit, model: str, point_ids) -> dict[str, np.ndarray]:
    """The parameters of one fit with their errors, covariance, chi^2, points fitted and pressure range."""
    out = {}
    names = ("V0_A3", "K0_GPa", "Kp") + (("K0pp_per_GPa",) if model == "bm4" else ())
    for name in names:
        value_name, err_name = _STORE_NAMES[name]
        out[f"{base}/{value_name}"] = np.array(getattr(fit.params, name), dtype=float)
        out[f"{base}/{err_name}"] = np.array(fit.errors.get(name, np.nan), dtype=float)
    out[f"{base}/covariance"] = np.asarray(fit.covariance, dtype=float)
    out[f"{base}/parameter_names"] = np.array(fit.parameter_names, dtype=object)
    out[f"{base}/reduced_chi2"] = np.array(fit.reduced_chi2)
    out[f"{base}/n_points"] = np.array(fit.n_points)
    out[f"{base}/pressure_min_GPa"] = np.array(fit.pressure_range_GPa[0])
    out[f"{base}/pressure_max_GPa"] = np.array(fit.pressure_range_GPa[1])
    out[f"{base}/points"] = np.array(list(point_ids), dtype=object)
    return out


def _finite_or_zero(value: float) -> float:
    return float(value) if np.isfinite(value) else 0.0


def _systematic_datasets(base: str, model: str, P, V, sigma_P, sigma_V, shifts: dict, options: dict
                         ) -> dict[str, np.ndarray]:
    """``<base>/<param>_sys_err`` and ``<base>/systematic/...`` (see :func:`fit_phase_volumes`)."""
    names = ("V0_A3", "K0_GPa", "Kp") + (("K0pp_per_GPa",) if model == "bm4" else ())
    result = propagate_systematic(P, V, shifts, sigma_P_GPa=sigma_P, sigma_V_A3=sigma_V, **options)
    out = {f"{base}/{_SYS_NAMES[nm]}": np.array(result.errors.get(nm, np.nan) if result.by_source else np.nan)
           for nm in names}
    sources = list(result.by_source)
    out[f"{base}/systematic/sources"] = np.array(sources, dtype=object)
    for nm in names:
        out[f"{base}/systematic/{_SYS_NAMES[nm]}"] = np.array(
            [result.by_source[src].get(nm, np.nan) for src in sources], dtype=float)
    return out


def fit_phase_volumes(point_ids, pressure_GPa, pressure_err_GPa, phase_volumes: dict[str, tuple], section: dict,
                      warn=lambda message: None, *, limit_sigma: float = OUTLIER_LIMIT_SIGMA,
                      systematic_GPa: dict | None = None, phase_edges: dict | None = None,
                      transitions: dict | None = None) -> StageResult:
    """Fit each phase's volume per formula unit against pressure, excluding outliers.

    Per phase, :func:`~dacpipe.eos.fit.fit_eos_excluding_outliers`: the
    points more than ``limit_sigma`` studentized residuals off the fit (a
    phantom volume of a phase that is absent, a misindexed line) are
    excluded one by one and listed with the reason; the fit of all points
    is kept beside it. A fit with chi2_w above 3, a K' outside [2, 12] or an
    undetermined error gets a warning, in the store and through ``warn``.

    Parameters
    ----------
    point_ids : sequence of str
    pressure_GPa, pressure_err_GPa : array [N]
        The points' pressures and their random uncertainties (the pressure
        stage's ``pressure_random_err_GPa``): the fit's weights.
    phase_volumes : dict
        Phase name -> (volume_fu_A3 [N], volume_fu_err_A3 [N]), NaN where the
        phase was not refined (the indexing stage).
    section : dict
        The run's ``eos`` config: ``model``, and ``phases: {name: {model,
        V0_fu_A3, Kp}}`` to choose another model for one phase or fix its V0
        or K' (each optional).
    warn : callable
        Takes one line per problem.
    limit_sigma : float
        :data:`~dacpipe.eos.fit.OUTLIER_LIMIT_SIGMA`.
    systematic_GPa : dict, optional
        Source name -> [N] 1-sigma shift of every point's pressure, the same
        error for all points (:func:`~dacpipe.pressure.budget.random_and_systematic`): carried to the
        parameters of the fit of the kept points by
        :func:`~dacpipe.eos.fit.propagate_systematic` and stored as
        ``K0_sys_err_GPa``, ``Kp_sys_err``, ``V0_fu_sys_err_A3`` (and
        ``K0pp_sys_err_per_GPa``; NaN for a fixed parameter or no terms),
        with each source's share under ``systematic/`` (``sources``, and per
        parameter an array over the sources).
    phase_edges : dict, optional
        Phase -> {edge: (edge_A [N], edge_err_A [N])} (:func:`phase_edges`):
        each edge's linearised EOS (:func:`~dacpipe.eos.report.fit_axial_eos`,
        the phase's model, over the points its volume fit kept) under
        ``axes/<edge>/`` (``M0_GPa``, ``M0_err_GPa``, ``Mp``, ``Mp_err``,
        ``a0_A``, ``a0_err_A``, ``beta0_per_GPa``, ``reduced_chi2``, ``n_points``).
    transitions : dict, optional
        The ``transitions/`` columns of the phases stage: Delta V/V of each
        transition between two phases at its onset under ``eos/transitions/``
        (``from_phase``, ``to_phase``, ``onset_GPa``, ``delta_V_rel``,
        ``delta_V_rel_err``, ``V_from_fu_A3``, ``V_to_fu_A3``, ``method``).

    Returns
    -------
    StageResult
        Group ``eos`` with one subgroup per phase fitted (``extra``):
        parameters with ``_err``, covariance, reduced chi^2, pressure range,
        ``points`` (the ids fitted), the F-f points of those with their
        line (``ff/``); ``excluded_points`` and ``excluded_reasons`` (the
        outliers, and points with a volume but no pressure or no volume
        error); ``warnings`` (one string, "" when none); ``all_points/``:
        the same parameters and ``warnings`` for the fit of every point;
        ``ellipse/``: the K0-K' joint confidence ellipses at 68.3 and 95.4 %
        (``K0_68_GPa``, ``Kp_68``, ``K0_95_GPa``, ``Kp_95``; none when K' is
        fixed). The group's
        ``@warnings`` lists every phase's warnings, ``@outlier_limit_sigma``
        the limit. A phase with too few points is left out with a message.
    """
    P, sP = np.asarray(pressure_GPa, float), np.asarray(pressure_err_GPa, float)
    ids = np.array(list(point_ids), dtype=object)
    extra: dict[str, np.ndarray] = {}
    fitted, all_warnings = [], []
    fits: dict[str, tuple] = {}
    for name, (V, sV) in phase_volumes.items():
        V, sV = np.asarray(V, float), np.asarray(sV, float)
        own = section.get("phases", {}).get(name, {})
        model = own.get("model", section["model"])
        V0_fixed, Kp_fixed = own.get("V0_fu_A3"), own.get("Kp")
        fix = ("V0_A3",) if V0_fixed is not None else ()
        use = np.isfinite(P) & np.isfinite(V) & np.isfinite(sV) & (sV > 0)
        # A volume that cannot enter the fit is an excluded point too, with its reason.
        unusable = [(str(ids[i]), "no pressure" if not np.isfinite(P[i]) else
                     f"volume without an error (volume_fu_err_A3 = {sV[i]:g})")
                    for i in np.flatnonzero(np.isfinite(V) & ~use)]
        n_free = len(_model_parameters(model)) - len(fix) - (Kp_fixed is not None)
        if use.sum() < n_free + 1:
            warn(f"eos {name}: {use.sum()} points with a pressure and a volume, a {model} fit needs {n_free + 1}")
            continue
        # A point without a pressure error still carries its volume error.
        sigma_P = np.where(np.isfinite(sP[use]) & (sP[use] > 0), sP[use], 1e-6)
        try:
            robust = fit_eos_excluding_outliers(P[use], V[use], sigma_P_GPa=sigma_P, sigma_V_A3=sV[use], model=model,
                                                V0_A3=V0_fixed, fix=fix, Kp=Kp_fixed, limit_sigma=limit_sigma)
        except (ValueError, InputError) as err:
            warn(f"eos {name}: {model} fit failed: {err}")
            continue
        fit, kept = robust.fit, robust.kept
        used_ids = ids[use]
        base = f"eos/{name}"
        extra[f"{base}/model"] = np.array(model, dtype=object)
        extra.update(_fit_datasets(base, fit, model, used_ids[kept]))
        extra.update(_fit_datasets(f"{base}/all_points", robust.fit_all, model, used_ids))
        extra[f"{base}/all_points/warnings"] = np.array("; ".join(fit_warnings(robust.fit_all)), dtype=object)
        outliers = [(str(used_ids[i]), reason) for i, reason in zip(robust.excluded, robust.reasons)]
        excluded = outliers + unusable
        extra[f"{base}/excluded_points"] = np.array([pid for pid, _ in excluded], dtype=object)
        extra[f"{base}/excluded_reasons"] = np.array([reason for _, reason in excluded], dtype=object)
        extra[f"{base}/warnings"] = np.array("; ".join(robust.warnings), dtype=object)
        if outliers:
            warn(f"eos {name}: excluded " + "; ".join(f"{pid} ({reason})" for pid, reason in outliers))
        for message in robust.warnings:
            warn(f"eos {name}: {message}")
            all_warnings.append(f"{name}: {message}")
        extra.update(_systematic_datasets(base, model, P[use][kept], V[use][kept], sigma_P[kept], sV[use][kept],
                                          {k: np.asarray(v, float)[use][kept] for k, v in (systematic_GPa or {}).items()},
                                          dict(model=model, V0_A3=V0_fixed if V0_fixed is not None else fit.params.V0_A3,
                                               fix=fix, Kp=Kp_fixed)))
        fitted.append(name)
        fits[name] = (fit.params, fit.covariance, fit.parameter_names)
        extra.update({f"{base}/ellipse/{k}": v
                      for k, v in k0_kp_ellipses(fit.params, fit.covariance, fit.parameter_names).items()})
        if phase_edges and name in phase_edges:
            extra.update(_axes_datasets(base, name, phase_edges[name], P[use][kept], sigma_P[kept], use, kept,
                                        model, warn))
        try:
            # The F-f error bars carry sigma(V0) of the fit (Angel 2000).
            ff = f_F(P[use][kept], V[use][kept], fit.params.V0_A3, sigma_P[kept], sV[use][kept],
                     sigma_V0_A3=_finite_or_zero(fit.errors.get("V0_A3", np.nan)))
        except ValueError as err:  # fewer than 2 points strained enough for F
            warn(f"eos {name}: no F-f plot: {err}")
            continue
        extra[f"{base}/ff/f"] = ff.f
        extra[f"{base}/ff/F_GPa"] = ff.F_GPa
        extra[f"{base}/ff/f_err"] = ff.sigma_f
        extra[f"{base}/ff/F_err_GPa"] = ff.sigma_F_GPa
        extra[f"{base}/ff/intercept_GPa"] = np.array(ff.intercept_GPa)
        extra[f"{base}/ff/slope_GPa"] = np.array(ff.slope_GPa)
    if transitions:
        extra.update(_transition_datasets(transitions, fits, phase_volumes))
    return StageResult(stage="eos", point_ids=list(point_ids), status=["ok"] * len(point_ids),
                       attrs={"phases_fitted": fitted, "model": section["model"], "warnings": all_warnings,
                              "outlier_limit_sigma": float(limit_sigma)}, extra=extra)
