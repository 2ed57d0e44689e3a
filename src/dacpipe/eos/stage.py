"""The EOS stage: one fit per phase over the points where its volume was refined."""

from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from ..core.results import StageContext, StageResult
from .ff import f_F
from .fit import _model_parameters, fit_eos


def run(ctx: StageContext) -> StageResult:
    """The EOS stage of a run: :func:`fit_phase_volumes` on the points'
    pressures (``upstream["pressure"]``) and each phase's volumes
    (``upstream["phases"]``)."""
    pressure, phases = ctx.upstream["pressure"], ctx.upstream["phases"]
    volumes = {name: (phases[f"{name}/volume_fu_A3"], phases[f"{name}/volume_fu_err_A3"])
               for name in (str(n) for n in phases.attrs["phases"])}
    return fit_phase_volumes(ctx.sheet.point_ids, pressure["pressure_GPa"], pressure["pressure_err_GPa"], volumes,
                             ctx.run["eos"], warn=lambda message: ctx.warn(f"{ctx.run_id}: {message}"))


def fit_phase_volumes(point_ids, pressure_GPa, pressure_err_GPa, phase_volumes: dict[str, tuple], section: dict,
                      warn=lambda message: None) -> StageResult:
    """Fit each phase's volume per formula unit against pressure.

    Parameters
    ----------
    point_ids : sequence of str
    pressure_GPa, pressure_err_GPa : array [N]
        The points' pressures and uncertainties (the pressure stage).
    phase_volumes : dict
        Phase name -> (volume_fu_A3 [N], volume_fu_err_A3 [N]), NaN where the
        phase was not refined (the indexing stage).
    section : dict
        The run's ``eos`` config: ``model``, and ``phases: {name: {model,
        V0_fu_A3, Kp}}`` to choose another model for one phase or fix its V0
        or K' (each optional).

    Returns
    -------
    StageResult
        Group ``eos`` with one subgroup per phase fitted (``extra``):
        parameters with ``_err``, covariance, reduced chi^2, pressure range and
        the F-f points with their line. A phase with too few points is left
        out with a message.
    """
    P, sP = np.asarray(pressure_GPa, float), np.asarray(pressure_err_GPa, float)
    extra: dict[str, np.ndarray] = {}
    fitted = []
    for name, (V, sV) in phase_volumes.items():
        own = section.get("phases", {}).get(name, {})
        model = own.get("model", section["model"])
        V0_fixed, Kp_fixed = own.get("V0_fu_A3"), own.get("Kp")
        fix = ("V0_A3",) if V0_fixed is not None else ()
        use = np.isfinite(P) & np.isfinite(V) & np.isfinite(sV) & (sV > 0)
        n_free = len(_model_parameters(model)) - len(fix) - (Kp_fixed is not None)
        if use.sum() < n_free + 1:
            warn(f"eos {name}: {use.sum()} points with a pressure and a volume, a {model} fit needs {n_free + 1}")
            continue
        # A point without a pressure error still carries its volume error.
        sigma_P = np.where(np.isfinite(sP[use]) & (sP[use] > 0), sP[use], 1e-6)
        try:
            fit = fit_eos(P[use], V[use], sigma_P_GPa=sigma_P, sigma_V_A3=sV[use], model=model, V0_A3=V0_fixed,
                          fix=fix, Kp=Kp_fixed)
        except (ValueError, InputError) as err:
            warn(f"eos {name}: {model} fit failed: {err}")
            continue
        base = f"eos/{name}"
        extra[f"{base}/model"] = np.array(model, dtype=object)
        params = {"V0_fu_A3": fit.params.V0_A3, "K0_GPa": fit.params.K0_GPa, "Kp": fit.params.Kp}
        errors = {"V0_fu_A3": fit.errors.get("V0_A3", np.nan), "K0_GPa": fit.errors.get("K0_GPa", np.nan),
                  "Kp": fit.errors.get("Kp", np.nan)}
        if model == "bm4":
            params["K0pp_per_GPa"] = fit.params.K0pp_per_GPa
            errors["K0pp_per_GPa"] = fit.errors.get("K0pp_per_GPa", np.nan)
        err_names = {"V0_fu_A3": "V0_fu_err_A3", "K0_GPa": "K0_err_GPa", "Kp": "Kp_err",
                     "K0pp_per_GPa": "K0pp_err_per_GPa"}
        for key, value in params.items():
            extra[f"{base}/{key}"] = np.array(value, dtype=float)
            extra[f"{base}/{err_names[key]}"] = np.array(errors[key], dtype=float)
        extra[f"{base}/covariance"] = np.asarray(fit.covariance, dtype=float)
        extra[f"{base}/parameter_names"] = np.array(fit.parameter_names, dtype=object)
        extra[f"{base}/reduced_chi2"] = np.array(fit.reduced_chi2)
        extra[f"{base}/n_points"] = np.array(fit.n_points)
        extra[f"{base}/pressure_min_GPa"] = np.array(fit.pressure_range_GPa[0])
        extra[f"{base}/pressure_max_GPa"] = np.array(fit.pressure_range_GPa[1])
        extra[f"{base}/points"] = np.array([pid for pid, u in zip(point_ids, use) if u], dtype=object)
        ff = f_F(P[use], V[use], fit.params.V0_A3, sigma_P, sV[use])
        extra[f"{base}/ff/f"] = ff.f
        extra[f"{base}/ff/F_GPa"] = ff.F_GPa
        extra[f"{base}/ff/f_err"] = ff.sigma_f
        extra[f"{base}/ff/F_err_GPa"] = ff.sigma_F_GPa
        extra[f"{base}/ff/intercept_GPa"] = np.array(ff.intercept_GPa)
        extra[f"{base}/ff/slope_GPa"] = np.array(ff.slope_GPa)
        fitted.append(name)
    return StageResult(stage="eos", point_ids=list(point_ids), status=["ok"] * len(point_ids),
                       attrs={"phases_fitted": fitted, "model": section["model"]}, extra=extra)
