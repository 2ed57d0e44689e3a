"""Whole-pattern refinement of the phases present at one point (fixed-structure Rietveld)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.profiles import pseudo_voigt_area
from .cells import cell_volume_A3, q_calc_A
from .lines import predicted_lines
from .structure import Phase

# Lines too weak to be found one by one still shift their neighbours: the
# whole-pattern refinement draws every line above this share of the strongest.
WHOLE_PATTERN_MIN_PERCENT = 0.05


@dataclass(frozen=True)
class PatternFit:
    """A whole-pattern refinement of the phases found at one point."""

    cells: dict[str, tuple]
    cell_errors: dict[str, dict[str, float]]
    volume_fu: dict[str, tuple[float, float]]   # (V/Z, its error) per phase
    scales: dict[str, float]
    reduced_chi2: float
    fwhm_q: dict[str, tuple[float, float, float]]   # (q of the strongest line, FWHM there, its error)


_FREE_AXES = {"cubic": ("a",), "hexagonal": ("a", "c"), "trigonal": ("a", "c"), "tetragonal": ("a", "c"),
              "orthorhombic": ("a", "b", "c")}


def _cell_from(system: str, free: dict[str, float], angles) -> tuple:
    a = free["a"]
    b = free.get("b", a)
    c = free.get("c", a if system == "cubic" else free.get("c"))
    return (a, b, c, *angles)


def refine_pattern(q_A: np.ndarray, intensity: np.ndarray, sigma: np.ndarray, background: np.ndarray,
                   wavelength_A: float, phases: dict[str, Phase], cells: dict[str, tuple],
                   min_intensity_percent: float) -> PatternFit:
    """Rietveld-type refinement of cells, scales and line widths on the whole pattern.

    Peak by peak, the many overlapping lines of a low-symmetry phase (and
    the lines two coexisting phases share) bias positions; fitting the
    pattern as the sum of each phase's predicted lines removes that. Each
    phase has a cell (its free axes), a scale s (line area = s m |F|^2 L cos
    theta in q: the pattern is in q, dq/d2theta ~ cos theta), a pseudo-Voigt
    width linear in q (Scherrer broadening is constant in q) and a mixing
    eta; the background found with the peaks gets a free quadratic
    correction. Structures are fixed (Rietveld, J. Appl. Cryst. 2, 65 (1969),
    without atomic parameters). Errors from the Jacobian, scaled by the
    reduced chi^2 when it is above 1.
    """
    from scipy.optimize import least_squares

    ok = np.isfinite(intensity) & np.isfinite(sigma) & (sigma > 0) & np.isfinite(background)
    q, y, s, bg = q_A[ok], intensity[ok], sigma[ok], background[ok]
    q_mid = 0.5 * (q.min() + q.max())
    names = list(phases)
    layout, x0, lower, upper = [], [], [], []

    def add(key, value, lo, hi):
        layout.append(key)
        x0.append(value)
        lower.append(lo)
        upper.append(hi)

    for name in names:
        phase, cell = phases[name], cells[name]
        for axis, value in zip("abc", cell[:3]):
            if axis in _FREE_AXES.get(phase.system, ()):
                add((name, axis), value, value * 0.97, value * 1.03)
        guess_lines = predicted_lines(phase, cell, wavelength_A, q.max() * 1.05, min_intensity_percent)
        area_guess = max(float(np.trapezoid(np.clip(y - bg, 0, None), q)), 1e-9)
        predicted = sum(l.f2m * (4 * np.pi / (l.q_A * wavelength_A)) ** 2 for l in guess_lines) or 1.0
        add((name, "scale"), area_guess / predicted / len(names), 0.0, np.inf)
        add((name, "w0"), 0.02, 1e-4, 0.5)
        add((name, "w1"), 0.0, -0.1, 0.1)
        add((name, "eta"), 0.5, 0.0, 1.0)
    for k in range(3):
        add(("bg", k), 0.0, -np.inf, np.inf)
    x0 = np.array(x0)

    lines = {n: predicted_lines(phases[n], cells[n], wavelength_A, q.max() * 1.05, min_intensity_percent)
             for n in names}
    H = {n: np.array([l.hkl for l in lines[n]], dtype=float) for n in names}
    base = {n: np.array([l.f2m for l in lines[n]]) for n in names}

    def unpack(x):
        values = dict(zip(layout, x))
        out = {}
        for n in names:
            free = {axis: values[(n, axis)] for axis in _FREE_AXES.get(phases[n].system, ()) if (n, axis) in values}
            out[n] = (_cell_from(phases[n].system, free, cells[n][3:]), values[(n, "scale")], values[(n, "w0")],
                      values[(n, "w1")], values[(n, "eta")])
        return out, [values[("bg", k)] for k in range(3)]

    def model(x):
        parts, poly = unpack(x)
        t = (q - q_mid) / (q.max() - q.min())
        total = bg * (1 + poly[0] + poly[1] * t + poly[2] * t * t)
        for n, (cell, scale, w0, w1, eta) in parts.items():
            if not len(H[n]):
                continue
            line_q = q_calc_A(cell, H[n])
            sin_theta = np.clip(line_q * wavelength_A / (4 * np.pi), 1e-9, 1 - 1e-12)
            # m|F|^2 L in 2theta, times cos(theta) for the area in q: L cos = 1/sin^2.
            area = scale * base[n] / sin_theta**2
            fwhm = np.clip(w0 + w1 * (line_q - q_mid), 1e-4, None)
            total = total + pseudo_voigt_area(q[:, None], line_q[None, :], fwhm[None, :], eta, area[None, :]).sum(axis=1)
        return total

    fit = least_squares(lambda x: (model(x) - y) / s, x0, bounds=(lower, upper), x_scale="jac", max_nfev=200)
    dof = max(len(y) - len(x0), 1)
    chi2 = float(np.sum(fit.fun**2) / dof)
    J = fit.jac
    try:
        cov = np.linalg.pinv(J.T @ J) * max(chi2, 1.0)
    except np.linalg.LinAlgError:
        cov = np.full((len(x0), len(x0)), np.nan)
    errors = dict(zip(layout, np.sqrt(np.clip(np.diag(cov), 0, None))))
    parts, _ = unpack(fit.x)
    index = {key: i for i, key in enumerate(layout)}
    cells_out, cell_err, vols, scales, widths = {}, {}, {}, {}, {}
    for n, (cell, scale, *_rest) in parts.items():
        phase = phases[n]
        cells_out[n], scales[n] = cell, scale
        axes = [a for a in _FREE_AXES.get(phase.system, ()) if (n, a) in index]
        cell_err[n] = {f"{a}_A": float(errors[(n, a)]) for a in axes}
        # V/Z and its error through the axes' covariance (a-c correlation included).
        v = cell_volume_A3(cell) / phase.z_formula_units if phase.z_formula_units else math.nan
        grad = []
        for a in axes:
            h = 1e-6 * dict(zip("abc", cell[:3]))[a]
            free = {b: dict(zip("abc", cell[:3]))[b] for b in axes}
            free[a] += h
            grad.append((cell_volume_A3(_cell_from(phase.system, free, cell[3:])) - cell_volume_A3(cell)) / h)
        sub = cov[np.ix_([index[(n, a)] for a in axes], [index[(n, a)] for a in axes])]
        v_err = math.sqrt(max(float(np.array(grad) @ sub @ np.array(grad)), 0.0))
        vols[n] = (v, v_err / phase.z_formula_units if phase.z_formula_units else math.nan)
        # The line width at the phase's strongest line, for its Scherrer size.
        q_ref = lines[n][int(np.argmax([l.intensity for l in lines[n]]))].q_A if lines[n] else q_mid
        _, _, w0, w1, _ = parts[n]
        grad = np.array([1.0, q_ref - q_mid])
        ids = [index[(n, "w0")], index[(n, "w1")]]
        w_err = math.sqrt(max(float(grad @ cov[np.ix_(ids, ids)] @ grad), 0.0))
        widths[n] = (float(q_ref), float(w0 + w1 * (q_ref - q_mid)), w_err)
    return PatternFit(cells_out, cell_err, vols, scales, chi2, widths)
