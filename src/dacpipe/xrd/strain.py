"""Differential stress from the lattice strain of each line against azimuth (Singh's lattice-strain theory).

Under a uniaxial stress component t (the differential stress, sigma_3 -
sigma_1) superposed on the hydrostatic pressure, the d-spacing of a line
measured with its diffraction vector at an angle psi to the load axis is

    d(psi) = d_P [1 + (1 - 3 cos^2 psi) Q(hkl)]

(Singh, Balasingh, Mao, Hemley, Shu, J. Appl. Phys. 83, 7567 (1998)), d_P
the d-spacing under the hydrostatic part alone. For a cubic phase
Q(hkl) = (t/3)[alpha/(2 G_R(hkl)) + (1 - alpha)/(2 G_V)], and averaged over
the lines t = 6 G <Q(hkl)> (G the aggregate shear modulus), so that
t/G = 6 <Q> is read from the pattern alone.

The angle psi comes from the geometry (Singh et al. 1998, section II):

* radial (the beam perpendicular to the load axis, the azimuth chi measured
  on the detector from the load axis's projection): cos psi = cos theta cos chi;
* axial (the beam along the load axis, the usual DAC): cos psi = sin theta,
  the same for every azimuth, so a cake of an axial pattern shows no
  ellipticity and Q cannot be separated from d_P (NaN with the reason).

In a run (:func:`strain_datasets`, called by the phase stage) each present
cubic phase's lines are fitted in every azimuthal sector of the stored cake
(:func:`dacpipe.xrd.peaks.fit_peaks`, the pseudo-Voigt of
:mod:`dacpipe.core.profiles`), d against 1 - 3 cos^2 psi gives each line's
Q and d_P (:func:`fit_strain_line`), and the lines' Q give t/G
(:func:`differential_stress`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from ..core.lsq import fit_straight_line, weighted_mean
from ..core.units import q_from_two_theta, two_theta_from_q
from ..io.config import validate_section
from .lines import predicted_lines
from .peaks import fit_peaks

GEOMETRIES = ("radial", "axial")

# Azimuthal sectors the cake's rows are averaged into before each line is fitted:
# 36 points on the d(chi) curve, whose cos^2 shape has two periods over the
# circle, and rows enough per sector (10 of pyFAI's default 360) that a
# nanocrystal line stands out of the noise. Averaging over a sector does not
# bias Q: each sector's 1 - 3 cos^2 psi is the mean over its rows (d is linear in it).
SECTOR_DEG = 10.0
# Lines closer than this many FWHM to another line (of any present phase) are
# not used: per sector their fitted positions trade off against each other.
RESOLVED_FWHM = 1.0


def strain_factor(two_theta_deg, chi_deg, geometry: str = "radial") -> np.ndarray:
    """1 - 3 cos^2 psi for each (2theta, chi), chi from the load axis (module docstring)."""
    theta = np.radians(np.asarray(two_theta_deg, dtype=float)) / 2.0
    chi = np.radians(np.asarray(chi_deg, dtype=float))
    if geometry == "radial":
        cos_psi = np.cos(theta) * np.cos(chi)
    elif geometry == "axial":
        cos_psi = np.sin(theta) * np.ones_like(chi)
    else:
        raise ValueError(f"unknown geometry {geometry!r}; expected one of {GEOMETRIES}")
    return 1.0 - 3.0 * cos_psi ** 2


@dataclass(frozen=True)
class LineStrain:
    """One line's fit of d against 1 - 3 cos^2 psi."""

    d_P_A: float
    d_P_err_A: float
    Q: float
    Q_err: float
    n_azimuths: int
    reason: str = ""          # why Q is NaN, else ""


def fit_strain_line(d_A, x, d_err_A=None) -> LineStrain:
    """Fit d = d_P + d_P Q x for one line, x = 1 - 3 cos^2 psi (Singh et al. 1998).

    A straight line in x: intercept d_P, slope d_P Q. With ``d_err_A`` the
    points are weighted by them and the errors scaled by the Birge ratio
    when the scatter exceeds them; without, the scatter about the line sets
    the errors (:func:`dacpipe.core.lsq.covariance_scale`). Q's error
    follows from the intercept's and slope's covariance to first order.
    """
    d = np.asarray(d_A, dtype=float)
    x = np.broadcast_to(np.asarray(x, dtype=float), d.shape)
    ok = np.isfinite(d) & np.isfinite(x)
    sigma = None
    if d_err_A is not None:
        sigma = np.broadcast_to(np.asarray(d_err_A, dtype=float), d.shape)
        ok &= np.isfinite(sigma) & (sigma > 0)
    n = int(ok.sum())
    if n < 3:
        return LineStrain(math.nan, math.nan, math.nan, math.nan, n, "fewer than 3 azimuths with the line")
    if np.ptp(x[ok]) < 1e-6:
        return LineStrain(float(np.mean(d[ok])), math.nan, math.nan, math.nan, n,
                          "psi does not vary with azimuth (axial geometry): Q not separable from d_P")
    line = fit_straight_line(x[ok], d[ok], None if sigma is None else sigma[ok])
    a, b = line.intercept, line.slope
    var_a, var_b, cov_ab = line.covariance[0, 0], line.covariance[1, 1], line.covariance[0, 1]
    q = b / a
    # dQ = db/a - b da/a^2
    q_var = var_b / a ** 2 + b ** 2 * var_a / a ** 4 - 2.0 * b * cov_ab / a ** 3
    return LineStrain(float(a), float(math.sqrt(var_a)), float(q), float(math.sqrt(max(q_var, 0.0))), n)


def fit_line_strain(d_A, two_theta_deg, chi_deg, geometry: str = "radial", d_err_A=None) -> LineStrain:
    """:func:`fit_strain_line` of d measured at (2theta, chi), chi from the load axis."""
    return fit_strain_line(d_A, strain_factor(two_theta_deg, chi_deg, geometry), d_err_A)


@dataclass(frozen=True)
class DifferentialStress:
    """The differential stress of a cubic phase from its lines' Q (Singh et al. 1998)."""

    mean_Q: float
    mean_Q_err: float
    t_over_G: float           # 6 <Q>
    t_over_G_err: float
    t_GPa: float              # 6 G <Q>; NaN without G
    t_err_GPa: float
    n_lines: int


def differential_stress(lines: list[LineStrain], shear_modulus_GPa: float = math.nan) -> DifferentialStress:
    """t/G = 6 <Q> over the lines with a finite Q, <Q> weighted by 1/sigma(Q)^2, and t = 6 G <Q>.

    Q(hkl) of a cubic phase varies with hkl through the elastic anisotropy
    (Singh et al. 1998); the weighted mean stands for the aggregate
    (alpha = 1), and its error is the larger of the propagated one and the
    lines' scatter about it (a spread beyond the errors is the anisotropy,
    not noise to average down).
    """
    used = [ln for ln in lines if math.isfinite(ln.Q) and math.isfinite(ln.Q_err) and ln.Q_err > 0]
    if not used:
        nan = math.nan
        return DifferentialStress(nan, nan, nan, nan, nan, nan, 0)
    mean, err = weighted_mean([ln.Q for ln in used], [ln.Q_err for ln in used])
    g = float(shear_modulus_GPa)
    return DifferentialStress(mean, err, 6.0 * mean, 6.0 * err, 6.0 * g * mean, 6.0 * abs(g) * err, len(used))


# --------------------------------------------------------------------------
# From a cake
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Sectors:
    """A cake's rows averaged into azimuthal sectors.

    Attributes
    ----------
    intensity : ndarray (S, n_radial)
        Mean of the sector's rows with data at each radial bin; NaN where none has.
    chi_deg : tuple of ndarray
        Per sector, the azimuths of its rows with data, measured from the load axis.
    """

    intensity: np.ndarray
    chi_deg: tuple

    def strain_factor(self, two_theta_deg, geometry: str = "radial") -> np.ndarray:
        """[S, L]: per sector, the mean of 1 - 3 cos^2 psi over its rows, at each line's 2theta [S, L]."""
        tth = np.asarray(two_theta_deg, dtype=float)
        out = np.full(tth.shape, np.nan)
        for s, chi in enumerate(self.chi_deg):
            if len(chi):
                out[s] = strain_factor(tth[s][:, None], chi[None, :], geometry).mean(axis=1)
        return out


def cake_sectors(cake, chi_deg, load_axis_chi_deg: float = 0.0, sector_deg: float = SECTOR_DEG,
                 columns=None) -> Sectors:
    """The rows of ``cake`` [n_chi, n_radial] averaged in sectors of ``sector_deg`` of azimuth.

    pyFAI's ``integrate2d`` leaves 0 in a bin no pixel falls into (module
    gaps, the beamstop, the detector's edge): such bins, and NaN, are no
    data. A row is one of its sector's when it has data over most of
    ``columns`` (a boolean mask of the radial bins that matter; all by
    default), so that a sector's 1 - 3 cos^2 psi is that of the rows whose
    intensity it holds. Sectors start at the load axis.
    """
    cake = np.asarray(cake, dtype=float)
    chi = np.asarray(chi_deg, dtype=float)
    data = np.where(np.isfinite(cake) & (cake != 0.0), cake, np.nan)
    columns = np.ones(cake.shape[1], bool) if columns is None else np.asarray(columns, bool)
    coverage = np.isfinite(data[:, columns]).mean(axis=1) if columns.any() else np.zeros(len(chi))
    relative = np.mod(chi - load_axis_chi_deg, 360.0)
    n_sectors = max(int(round(360.0 / sector_deg)), 1)
    index = np.minimum((relative / (360.0 / n_sectors)).astype(int), n_sectors - 1)
    intensity = np.full((n_sectors, cake.shape[1]), np.nan)
    members = []
    for s in range(n_sectors):
        rows = np.flatnonzero((index == s) & np.isfinite(chi) & (coverage > 0.5))
        members.append(relative[rows])
        if rows.size:
            block = data[rows]
            counts = np.isfinite(block).sum(axis=0)
            with np.errstate(invalid="ignore"):
                intensity[s] = np.where(counts > 0, np.nansum(block, axis=0) / np.maximum(counts, 1), np.nan)
    return Sectors(intensity, tuple(members))


def sector_positions(q_A, sectors: Sectors, positions_q_A, fwhm_q_A: float, min_snr: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """[S, P]: each position's fitted peak in each sector (q, 1/A) and its error; NaN where not found.

    All ``positions_q_A`` (the predicted lines of every present phase) are
    fitted together in each sector's pattern within 5 FWHM of the outermost
    (:func:`dacpipe.xrd.peaks.fit_peaks`), a peak allowed to move one FWHM;
    each fitted peak belongs to the position nearest to it.
    """
    q = np.asarray(q_A, dtype=float)
    pos = np.asarray(positions_q_A, dtype=float)
    out = np.full((len(sectors.intensity), pos.size), np.nan)
    err = np.full_like(out, np.nan)
    if not pos.size:
        return out, err
    window = (q >= pos.min() - 5 * fwhm_q_A) & (q <= pos.max() + 5 * fwhm_q_A)
    for s, row in enumerate(sectors.intensity):
        y = row[window]
        if np.count_nonzero(np.isfinite(y)) < 20:
            continue
        try:
            fit = fit_peaks(q[window], y, positions=pos, min_snr=min_snr, fwhm=fwhm_q_A, max_shift=fwhm_q_A)
        except InputError:
            continue
        for peak in fit.peaks:
            j = int(np.argmin(np.abs(pos - peak.position)))
            if not (math.isfinite(peak.position_err) and peak.position_err > 0):
                continue
            if math.isnan(out[s, j]) or abs(peak.position - pos[j]) < abs(out[s, j] - pos[j]):
                out[s, j], err[s, j] = peak.position, peak.position_err
    return out, err


@dataclass(frozen=True, eq=False)
class PhaseStrain:
    """One phase's lines against azimuth at one point, and its differential stress."""

    hkl: tuple                      # one (h, k, l) per line
    lines: tuple                    # LineStrain per line
    x: np.ndarray                   # [L, S] 1 - 3 cos^2 psi
    d_A: np.ndarray                 # [L, S]
    d_err_A: np.ndarray             # [L, S]
    stress: DifferentialStress


def phase_strain(hkl, q_fit_A, q_err_A, wavelength_A: float, sectors: Sectors,
                 geometry: str = "radial") -> PhaseStrain:
    """Q and d_P of each line from its fitted positions per sector ([S, L], 1/A), and t/G."""
    q_fit = np.asarray(q_fit_A, dtype=float).reshape(len(sectors.intensity), len(hkl))
    q_err = np.asarray(q_err_A, dtype=float).reshape(q_fit.shape)
    d = 2.0 * np.pi / q_fit
    d_err = 2.0 * np.pi * q_err / q_fit ** 2
    x = sectors.strain_factor(two_theta_from_q(q_fit, wavelength_A), geometry)
    lines = tuple(fit_strain_line(d[:, k], x[:, k], d_err[:, k]) for k in range(len(hkl)))
    return PhaseStrain(tuple(tuple(int(v) for v in h) for h in hkl), lines, x.T, d.T, d_err.T,
                       differential_stress(list(lines)))


def radial_q_A(radial, unit: str, wavelength_A: float) -> np.ndarray:
    """The cake's radial axis in q (1/A), from the integration's unit."""
    radial = np.asarray(radial, dtype=float)
    if unit == "2th_deg":
        return q_from_two_theta(radial, wavelength_A)
    if unit == "q_nm^-1":
        return radial / 10.0
    if unit == "q_A^-1":
        return radial
    raise ValueError(f"unknown radial unit {unit!r}")


def resolved_lines(lines_by_phase: dict, fwhm_by_phase: dict) -> dict:
    """Per phase, the (hkl, q) of its lines no line of another d (any phase) comes
    within :data:`RESOLVED_FWHM` of; lines of one phase at one q (cubic 333 and
    511) are one line, labelled by the strongest."""
    every = np.array([q for lines in lines_by_phase.values() for _, q in lines])
    out = {}
    for key, lines in lines_by_phase.items():
        fwhm = fwhm_by_phase[key]
        kept, seen = [], []
        for hkl, q in lines:
            if any(abs(q - s) <= 1e-6 * q for s in seen):
                continue
            seen.append(q)
            others = every[np.abs(every - q) > 1e-6 * q]
            if others.size and np.min(np.abs(others - q)) < RESOLVED_FWHM * fwhm:
                continue
            kept.append((hkl, q))
        out[key] = kept
    return out


# --------------------------------------------------------------------------
# The phase stage's part
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class StrainSettings:
    """The run's diffraction geometry (``xrd.geometry``, ``xrd.load_axis_chi_deg``) and whether it keeps a cake."""

    geometry: str
    load_axis_chi_deg: float
    cake: bool
    sector_deg: float = SECTOR_DEG

    @classmethod
    def from_config(cls, run: dict) -> "StrainSettings":
        if "xrd" not in run:
            return cls("axial", 0.0, False)
        section = validate_section("integration", run["xrd"])
        return cls(section["geometry"], float(section["load_axis_chi_deg"]), bool(section["cake"]["enabled"]))


AXIAL_REASON = ("axial geometry: psi is the same at every azimuth, so the lattice strain Q cannot be "
                "separated from d_P; t/G NaN (xrd.geometry: radial for a radial-geometry cell)")
NO_CAKE_REASON = "radial geometry but no cake: set xrd.cake.enabled for the lattice-strain analysis; t/G NaN"
CAKE_MISSING_REASON = "radial geometry but the integration's part holds no cake (patterns read from files?); t/G NaN"


HYDROSTATIC_COLUMNS = ("a_P_A", "a_P_err_A", "volume_P_fu_A3", "volume_P_fu_err_A3")


def hydrostatic_cell(strain: PhaseStrain, z_formula_units: int) -> tuple[float, float, float, float]:
    """A cubic phase's hydrostatic cell edge and volume per formula unit from its lines' d_P
    (Singh et al. 1998: d at 1 - 3 cos^2 psi = 0, what the lattice would be under the mean
    stress alone): a = d_P sqrt(h^2 + k^2 + l^2), weighted over the lines, its error scaled by
    sqrt(reduced chi^2) when the lines disagree. The cell of the azimuthal average is not it
    (d there is d_P [1 + Q (1 - 3/2 cos^2 theta)], ~0.5 Q low). NaN without a fitted line."""
    a, sa = [], []
    for hkl, line in zip(strain.hkl, strain.lines):
        if math.isfinite(line.d_P_A) and math.isfinite(line.d_P_err_A) and line.d_P_err_A > 0:
            m = math.sqrt(sum(h * h for h in hkl))
            a.append(line.d_P_A * m)
            sa.append(line.d_P_err_A * m)
    if not a:
        return (math.nan,) * 4
    mean, err = weighted_mean(a, sa)
    return mean, err, mean ** 3 / z_formula_units, 3.0 * mean ** 2 * err / z_formula_units


def _background_at(result, q_A: np.ndarray, in_range: np.ndarray) -> np.ndarray:
    """The whole-pattern fit's background at ``q_A`` within the fit range, 0 elsewhere."""
    out = np.zeros(q_A.shape)
    use = in_range & np.isfinite(q_A)
    if np.any(use):
        out[use] = result.fit.evaluate(q_A[use])[1]
    return out


def strain_datasets(xrd, results, names, keys, candidates, run: dict, wavelength_A: float,
                    q_range_A: tuple[float, float], min_intensity_percent: float, min_snr: float,
                    warn=lambda message: None) -> tuple[dict, dict]:
    """The phase stage's lattice-strain datasets and attributes (Singh et al. 1998).

    For every cubic phase (``names``, library names; ``keys`` their store
    names) at every point where it is present: per line of its refined cell
    (:func:`resolved_lines`) d against azimuth from the cake's sectors, Q,
    d_P, and t/G = 6 <Q>. ``xrd`` is the integration's part (``cake/I``,
    ``cake/chi_deg``, ``cake/radial`` where stored), ``results`` the
    indexing's :class:`~dacpipe.xrd.indexing.PointResult` per point (None
    without a pattern).

    Nothing (no datasets, no attributes) for a run in axial geometry without
    a cake; t/G NaN with the reason, said once in the attribute ``strain``,
    in axial geometry or without a cake (then also one warning).
    """
    settings = StrainSettings.from_config(run)
    if settings.geometry == "axial" and not settings.cake:
        return {}, {}
    cubic = [name for name in names if candidates[name].system == "cubic"]
    n = len(results)
    datasets = {}
    for name in cubic:
        for column in ("t_over_G", "t_over_G_err"):
            datasets[f"{keys[name]}/{column}"] = np.full(n, np.nan)
    attrs = {"strain_geometry": settings.geometry, "strain_load_axis_chi_deg": settings.load_axis_chi_deg}
    reason = ""
    if settings.geometry == "axial":
        reason = AXIAL_REASON
    elif not settings.cake:
        reason = NO_CAKE_REASON
    elif "cake/I" not in getattr(xrd, "datasets", xrd):
        reason = CAKE_MISSING_REASON
    if reason:
        if settings.geometry == "radial":
            warn(reason)
        attrs["strain"] = reason
        return datasets, attrs
    if "unit" not in xrd.attrs:
        raise InputError("the integration's part does not say its radial unit: cannot read the cake's q")
    for name in cubic:      # only where the analysis runs: the EOS takes these volumes where they are
        for column in HYDROSTATIC_COLUMNS:
            datasets[f"{keys[name]}/{column}"] = np.full(n, np.nan)
    q_A = radial_q_A(xrd["cake/radial"], str(xrd.attrs["unit"]), wavelength_A)
    chi = np.asarray(xrd["cake/chi_deg"], dtype=float)
    cake = xrd["cake/I"]
    in_range = (q_A >= q_range_A[0]) & (q_A <= q_range_A[1])
    per_point = [dict() for _ in range(n)]
    n_sectors = max(int(round(360.0 / settings.sector_deg)), 1)
    for i, result in enumerate(results):
        if result is None:
            continue
        lines, fwhm = {}, {}
        for name in names:             # every present phase's lines are fitted, the cubic ones analysed
            st = result.phases[name]
            if not st.present:
                continue
            predicted = [ln for ln in predicted_lines(candidates[name], st.cell, wavelength_A, q_range_A[1],
                                                      min_intensity_percent) if ln.q_A >= q_range_A[0]]
            predicted.sort(key=lambda ln: (round(ln.q_A, 9), -ln.intensity))
            lines[name] = [(ln.hkl, ln.q_A) for ln in predicted]
            width = st.fwhm_q_A[1]
            fwhm[name] = width if math.isfinite(width) and width > 0 else 0.01 * q_range_A[1]
        if not any(name in lines for name in cubic):
            continue
        resolved = resolved_lines(lines, fwhm)
        positions = np.array(sorted({q for ls in lines.values() for _, q in ls}))
        # The whole-pattern fit's background taken out of every row first: the anvils' Compton and the
        # medium's hump do not depend on azimuth, and the sectors' local fits cannot follow their curvature
        # under the low-angle lines (d_P of Au 111 came out 0.4 % low on a synthetic run without it).
        row = np.asarray(cake[i], dtype=float) - _background_at(result, q_A, in_range)[None, :]
        sectors = cake_sectors(row, chi, settings.load_axis_chi_deg, settings.sector_deg, in_range)
        typical = float(np.median([fwhm[name] for name in lines]))
        fitted, errors = sector_positions(q_A, sectors, positions, typical, min_snr)
        for name in cubic:
            if name not in resolved or not resolved[name]:
                continue
            columns = [int(np.argmin(np.abs(positions - q))) for _, q in resolved[name]]
            strain = phase_strain([h for h, _ in resolved[name]], fitted[:, columns], errors[:, columns],
                                  wavelength_A, sectors, settings.geometry)
            per_point[i][name] = strain
            datasets[f"{keys[name]}/t_over_G"][i] = strain.stress.t_over_G
            datasets[f"{keys[name]}/t_over_G_err"][i] = strain.stress.t_over_G_err
            hydrostatic = hydrostatic_cell(strain, candidates[name].z_formula_units)
            for column, value in zip(HYDROSTATIC_COLUMNS, hydrostatic):
                datasets[f"{keys[name]}/{column}"][i] = value
    for name in cubic:
        width = max([len(p[name].hkl) for p in per_point if name in p] + [1])
        base = f"{keys[name]}/strain"
        hkl = np.zeros((n, width, 3), dtype=np.int32)
        table = {c: np.full((n, width), np.nan) for c in ("Q", "Q_err", "d_P_A", "d_P_err_A")}
        curves = {c: np.full((n, width, n_sectors), np.nan) for c in ("x", "d_A", "d_err_A")}
        for i, point in enumerate(per_point):
            if name not in point:
                continue
            strain = point[name]
            for k, (h, line) in enumerate(zip(strain.hkl, strain.lines)):
                hkl[i, k] = h
                table["Q"][i, k], table["Q_err"][i, k] = line.Q, line.Q_err
                table["d_P_A"][i, k], table["d_P_err_A"][i, k] = line.d_P_A, line.d_P_err_A
            k = len(strain.hkl)
            curves["x"][i, :k], curves["d_A"][i, :k], curves["d_err_A"][i, :k] = strain.x, strain.d_A, strain.d_err_A
        datasets[f"{base}/hkl"] = hkl
        datasets.update({f"{base}/{c}": v for c, v in {**table, **curves}.items()})
    attrs["strain"] = (f"Singh et al., J. Appl. Phys. 83, 7567 (1998): each line of a cubic phase fitted in "
                       f"{n_sectors} azimuthal sectors of the cake, d = d_P [1 + (1 - 3 cos^2 psi) Q], "
                       f"cos psi = cos theta cos(chi - load axis); t/G = 6 <Q>")
    attrs["strain_sector_deg"] = settings.sector_deg
    return datasets, attrs
