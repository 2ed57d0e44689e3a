"""Whole-pattern refinement: every phase's lines at once, on the whole pattern.

The model of an integrated (solid-angle and polarization corrected) pattern
in q is

    y(q) = sum_p s_p sum_l A_pl PV(q; q_pl, W_pl, eta_p) + sum_k b_k B_k(q)

* q_pl = 2 pi sqrt(x_l . p_p): the line positions of phase p from the free
  components p_p of its reciprocal metric (:class:`dacpipe.xrd.cells.ReciprocalCell`),
  so every crystal system, rhombohedral and monoclinic included, is one code;
* A_pl = m |F|^2 (4 pi / lambda)^2 / q_pl^2: the fixed-structure (Rietveld)
  intensity with the Lorentz factor of a powder ring, as an area in q
  (Rietveld, J. Appl. Cryst. 2, 65 (1969); no atomic parameters refined);
* PV: the area-normalised pseudo-Voigt of :mod:`dacpipe.core.profiles`, with
  a FWHM linear in q per phase, W = w0 + w1 (q - q_ref) (Scherrer broadening
  is constant in q, microstrain grows with it), and one Lorentzian fraction
  eta per phase: the line widths are free per phase, so a 3-10 nm phase is
  fitted as what it is;
* B_k: cubic B-splines (knots far wider than any line) for the background
  of a DAC pattern (anvil Compton, medium, air).

The scales s_p and the background coefficients b_k enter linearly: for any
set of nonlinear parameters (cells, widths, eta) they are solved exactly
(variable projection, Golub & Pereyra, SIAM J. Numer. Anal. 10, 413
(1973)), and the nonlinear parameters are refined by least squares on the
projected residual with Kaufman's Jacobian (BIT 15, 49 (1975)), built from
the analytic derivatives of the profiles. The parameter covariance is the
inverse of J^T W J over all parameters, linear ones included, scaled by
dacpipe's one rule (:func:`dacpipe.core.lsq.covariance_scale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.interpolate import BSpline
from scipy.optimize import least_squares

from ..core.lsq import covariance_scale, serial_correlation_factor
from ..core.profiles import (GAUSS_HEIGHT_FWHM, LORENTZ_HEIGHT_FWHM, area_derivative_basis, area_derivative_weights,
                             unit_parts)
from .cells import ReciprocalCell
from .lines import LineSet

# Lines weaker than this share of a phase's strongest line are left out of the model.
MODEL_MIN_SHARE = 1e-3
# A line counts when its centre lies within this many FWHM of the data: its tails still fall inside.
LINE_REACH_FWHM = 6.0
# Bounds of a FWHM in q: a tenth of a bin (below, the line falls between bins) to 0.6 1/A (1 nm crystallites).
MAX_FWHM_Q_A = 0.6
# How far (relative) a cell may move in one refinement: further is another minimum, found by the scan.
MAX_CELL_STEP_REL = 0.08
# Neighbouring points farther apart than this many median steps have a gap between them.
GAP_STEPS = 1.5


@dataclass
class PhaseState:
    """One phase's parameters in a whole-pattern fit.

    ``base`` is m |F|^2 of each line at ``base_cell`` (the form factors change
    with the cell by less than 1e-3 per per cent of compression; it is
    recomputed when the cell moves by more than 0.5 %).
    """

    name: str
    lines: LineSet
    rcell: ReciprocalCell
    w0: float                   # FWHM at q_ref (1/A)
    w1: float                   # dFWHM/dq
    eta: float
    base: np.ndarray = field(default=None)   # type: ignore[assignment]
    base_cell: tuple = ()
    design: np.ndarray = field(default=None, repr=False)   # type: ignore[assignment]
    # The lines at the same d for every cell of the system: first line of each, and each line's group
    coincident: tuple[np.ndarray, np.ndarray] = field(default=None, repr=False)   # type: ignore[assignment]

    def __post_init__(self):
        if self.design is None:
            self.design = self.rcell.design(self.lines.hkl)
        if self.coincident is None:
            # rounded: hkl and khl sum the same terms in another order
            _, first, group = np.unique(np.round(self.design, 9), axis=0, return_index=True, return_inverse=True)
            self.coincident = (first, np.asarray(group).reshape(-1))
        self.refresh_intensities()

    def refresh_intensities(self, force: bool = False) -> None:
        cell = self.rcell.cell()
        if force or self.base is None or not self.base_cell or \
                max(abs(a / b - 1.0) for a, b in zip(cell[:3], self.base_cell[:3])) > 5e-3:
            self.base = self.lines.base_intensity(cell)
            self.base_cell = cell

    @property
    def n_theta(self) -> int:
        return len(self.rcell.p) + 3

    def theta(self) -> np.ndarray:
        return np.concatenate([self.rcell.p, [self.w0, self.w1, self.eta]])

    def set_theta(self, theta) -> None:
        k = len(self.rcell.p)
        self.rcell = self.rcell.with_p(theta[:k])
        self.w0, self.w1, self.eta = (float(v) for v in theta[k:k + 3])

    def copy(self) -> "PhaseState":
        return replace(self, rcell=self.rcell.copy())

    def q_lines(self) -> np.ndarray:
        return _q_of(self.design, self.rcell.p)

    def model_lines(self) -> tuple[np.ndarray, np.ndarray]:
        """Design rows and m |F|^2 of the lines as a pattern shows them: lines at the
        same d for every cell of the system (hkl and khl of a trigonal phase, 333
        and 511 of a cubic one) are one line, their intensities summed. Exact, and
        the model's work: HgTe cinnabar's 425 lines to 8.6 1/A are 246."""
        first, group = self.coincident
        return self.design[first], np.bincount(group, weights=self.base, minlength=len(first))

    def line_areas(self) -> tuple[np.ndarray, np.ndarray]:
        """q of each line and its relative area in q at unit scale, m |F|^2 / q^2
        (the powder Lorentz factor; see :func:`phase_column`)."""
        q_l = self.q_lines()
        return q_l, self.base / q_l**2


def _q_of(design: np.ndarray, p: np.ndarray) -> np.ndarray:
    """q = 2 pi / d of lines with these rows of the reciprocal metric's design (1/d^2 = x . p)."""
    return 2.0 * np.pi * np.sqrt(np.clip(design @ p, 1e-12, None))


@dataclass(frozen=True, eq=False)
class Pattern:
    """The points of a pattern a fit uses: q (1/A), intensity, its standard error."""

    q: np.ndarray
    y: np.ndarray
    sigma: np.ndarray
    wavelength_A: float

    @property
    def two_theta(self) -> np.ndarray:
        """2theta (radians) where the model is evaluated: (n,) at the bin centres, or
        (n, 2) at the two Gauss-Legendre nodes of each bin (:meth:`bin_averaged`)."""
        value = self.__dict__.get("_two_theta")
        if value is None:
            q = self.q
            if self.__dict__.get("_nodes"):
                # A bin's width from its nearer neighbour: beside bins left out
                # (a masked peak) the farther one is a gap, not a bin.
                step = np.diff(self.q)
                half = 0.5 * np.minimum(np.r_[step[:1], step], np.r_[step, step[-1:]])
                q = self.q[:, None] + np.array([-1.0, 1.0])[None, :] * half[:, None] / math.sqrt(3.0)
            value = 2.0 * np.arcsin(np.clip(q * self.wavelength_A / (4.0 * np.pi), 0.0, 1.0))
            object.__setattr__(self, "_two_theta", value)
        return value

    def bin_averaged(self) -> "Pattern":
        """The same points, with the model averaged over each bin (2-point Gauss-Legendre,
        exact for a cubic) instead of taken at its centre: for lines only a few bins wide,
        whose curvature within a bin would otherwise bias their widths and areas."""
        other = self.__dict__.get("_averaged")
        if other is None:
            other = Pattern(self.q, self.y, self.sigma, self.wavelength_A)
            object.__setattr__(other, "_nodes", True)
            other = _with_q_ref(other, self.q_ref)
            object.__setattr__(self, "_averaged", other)   # kept: its nodes' 2theta are computed once
        return other

    def memo(self, key, make):
        """``make()``, computed once per ``key`` for these points: work that the fits
        of one pattern share (a background basis), dropped with the pattern."""
        kept = self.__dict__.setdefault("_memo", {})
        if key not in kept:
            kept[key] = make()
        return kept[key]

    @property
    def q_ref(self) -> float:
        """The q about which line widths vary linearly: the middle of the pattern."""
        fixed = self.__dict__.get("_q_ref")
        return float(0.5 * (self.q[0] + self.q[-1])) if fixed is None else fixed

    def subset(self, keep: np.ndarray) -> "Pattern":
        """The points where ``keep`` is true, with the same q_ref."""
        return _with_q_ref(Pattern(self.q[keep], self.y[keep], self.sigma[keep], self.wavelength_A), self.q_ref)

    def merged(self, factor: int) -> "Pattern":
        """Every ``factor`` neighbouring bins as one (means; errors of the mean): a
        line of N bins' FWHM is still sampled by N / factor points.

        Kept per factor: the fits of one point (with and without a phase, again
        without unexplained peaks) ask for the same ones, and each keeps its
        2theta and stencil.
        """
        if factor <= 1 or len(self.q) < 2:
            return self
        kept = self.__dict__.setdefault("_merged", {})
        if factor not in kept:
            kept[factor] = self._merge(factor)
        return kept[factor]

    def _merge(self, factor: int) -> "Pattern":
        # Bins are merged only within a run of neighbours: across a gap (a
        # detector gap, a masked peak left out) the mean of the model at the
        # bins is not the model at their mean q. Each run is cut into groups of
        # ``factor`` from its start; a run's last, shorter group is merged too.
        step = np.diff(self.q)
        gap = step > GAP_STEPS * float(np.median(step))
        run_start = np.r_[0, np.flatnonzero(gap) + 1]
        run_id = np.cumsum(np.r_[False, gap])
        position = np.arange(len(self.q)) - run_start[run_id]
        starts = np.flatnonzero((position % factor) == 0)
        counts = np.diff(np.r_[starts, len(self.q)])
        q = np.add.reduceat(self.q, starts) / counts
        y = np.add.reduceat(self.y, starts) / counts
        sigma = np.sqrt(np.add.reduceat(self.sigma**2, starts)) / counts
        merged = _with_q_ref(Pattern(q, y, sigma, self.wavelength_A), self.q_ref)
        object.__setattr__(merged, "_bin_mean", True)
        return merged

    def bin_mean(self, values: np.ndarray) -> np.ndarray:
        """``values`` (the model at the bin centres, along the last axis) as their means
        over each bin, when the bins are merged ones.

        A merged bin is the mean of ``factor`` bins: over its width h the model
        f averages to f + h^2/24 f'' + O(h^4). f'' is the second difference of
        the neighbours (on a uniform grid (f_-1 + 22 f_0 + f_1) / 24, the
        fourth-order relation of point values and cell averages of finite-volume
        schemes), taken at the nearest bin with a neighbour on both sides at
        the end of a run. At 5 bins per FWHM the centre values made the 9 nm
        lines of a synthetic HgTe series 1.8 % broad (0.5 % at 8); the mean
        errs by 0.05 % of a Gaussian line's height. Bins the integration made
        are not corrected: their width, like the pixels', is part of the
        instrument function the calibrant measured.
        """
        if not self.__dict__.get("_bin_mean") or len(self.q) < 3:
            return values
        stencil = self.__dict__.get("_stencil")
        if stencil is None:
            step = np.diff(self.q)
            even = np.abs(step - float(np.median(step))) <= 0.25 * float(np.median(step))
            inner = np.r_[False, even[:-1] & even[1:], False]     # a neighbour one bin away on each side
            centre = np.arange(len(self.q))
            # an end of a run takes the curvature of its inner neighbour
            centre = np.where(inner, centre, np.where(np.r_[inner[1:], False], centre + 1,
                                                      np.where(np.r_[False, inner[:-1]], centre - 1, -1)))
            weight = np.where(centre >= 0, 1.0 / 24.0, 0.0)
            centre = np.clip(centre, 1, len(self.q) - 2)
            stencil = (centre, weight)
            object.__setattr__(self, "_stencil", stencil)
        centre, weight = stencil
        second = values[..., centre - 1] - 2.0 * values[..., centre] + values[..., centre + 1]
        return values + weight * second


def _with_q_ref(pattern: Pattern, q_ref: float) -> Pattern:
    object.__setattr__(pattern, "_q_ref", float(q_ref))
    return pattern


def usable_pattern(q_A, intensity, sigma, wavelength_A: float, q_range_A=None, q_ref_A: float | None = None) -> Pattern:
    """The finite points with a positive error (within ``q_range_A`` when given), sorted by q;
    ``q_ref_A`` fixes the q about which line widths vary (default: the middle of the points),
    so that the widths of a series mean the same at every point."""
    q_A, intensity, sigma = (np.asarray(a, dtype=float) for a in (q_A, intensity, sigma))
    ok = np.isfinite(q_A) & np.isfinite(intensity) & np.isfinite(sigma) & (sigma > 0)
    if q_range_A is not None:
        lo, hi = q_range_A
        ok &= (q_A >= (lo if lo is not None else -np.inf)) & (q_A <= (hi if hi is not None else np.inf))
    order = np.argsort(q_A[ok])
    pattern = Pattern(q_A[ok][order], intensity[ok][order], sigma[ok][order], float(wavelength_A))
    return pattern if q_ref_A is None else _with_q_ref(pattern, q_ref_A)


def background_basis(q: np.ndarray, spacing_A: float, span: tuple[float, float] | None = None) -> np.ndarray:
    """Cubic B-splines on uniform knots about ``spacing_A`` apart over ``span`` (default
    q's range), as columns (n, k); points outside the span take its end values."""
    lo, hi = span if span is not None else (float(q[0]), float(q[-1]))
    n_intervals = max(int(math.ceil((hi - lo) / spacing_A)), 1)
    inner = np.linspace(lo, hi, n_intervals + 1)
    knots = np.concatenate([[lo] * 3, inner, [hi] * 3])
    return BSpline.design_matrix(np.clip(q, lo, hi), knots, 3).toarray()


def phase_column(pattern: Pattern, phase: PhaseState, *, jacobian: bool = False):
    """The phase's lines at unit scale on the pattern, and optionally their
    derivatives with respect to the phase's nonlinear parameters (rows: p..., w0, w1, eta).

    Each line is symmetric in 2theta (the convention of Rietveld codes: the
    instrument broadens in angle), its FWHM in 2theta W_q dT/dq and its area
    in 2theta A_q dT/dq, with T = 2theta (radians), dT/dq = lambda / (2 pi cos theta).
    """
    wavelength = pattern.wavelength_A
    q = pattern.q
    design, base = phase.model_lines()
    q_l = _q_of(design, phase.rcell.p)
    q_ref = pattern.q_ref
    width_q = np.clip(phase.w0 + phase.w1 * (q_l - q_ref), 1e-5, None)
    area_q = base * (4.0 * np.pi / wavelength) ** 2 / q_l**2
    reach = LINE_REACH_FWHM * width_q
    keep = (q_l + reach > q[0]) & (q_l - reach < q[-1]) & (area_q > 0) & (q_l * wavelength < 4.0 * np.pi * 0.999)
    if keep.any():
        keep &= area_q >= MODEL_MIN_SHARE * area_q[keep].max()
    q_l, width_q, area_q = q_l[keep], width_q[keep], area_q[keep]
    sin_theta = q_l * wavelength / (4.0 * np.pi)
    cos_theta = np.sqrt(1.0 - sin_theta**2)
    centre = 2.0 * np.arcsin(sin_theta)                      # T_l
    dT_dq = wavelength / (2.0 * np.pi * cos_theta)           # J_l
    width = width_q * dT_dq
    area = area_q * dT_dq
    two_theta = pattern.two_theta
    nodes = two_theta.ndim == 2
    # (lines, bins) arrays; with two nodes per bin, (lines, 2 x bins), averaged at the end.
    u, lor, gau = unit_parts(two_theta.reshape(-1)[None, :], centre[:, None], width[:, None])
    # Sums over lines as matrix products (BLAS) of per-line weights with the
    # profile's parts: fewer passes over lines x bins than elementwise sums.
    aw = area / width
    column = (aw * (phase.eta * LORENTZ_HEIGHT_FWHM)) @ lor + (aw * ((1.0 - phase.eta) * GAUSS_HEIGHT_FWHM)) @ gau
    column = column.reshape(-1, 2).mean(axis=1) if nodes else pattern.bin_mean(column)
    if not jacobian:
        return column, None
    # A line moves with q_l: its centre, its width (through w1 and dT/dq) and its area follow.
    dJ_dq = dT_dq * sin_theta / cos_theta * dT_dq / 2.0
    dwidth_dq = phase.w1 * dT_dq + width_q * dJ_dq
    darea_dq = -2.0 * area_q / q_l * dT_dq + area_q * dJ_dq
    dq_dp = 2.0 * np.pi**2 * design[keep] / q_l[:, None]          # (L, n_p)
    # Rows: each cell parameter p (through q_l), w0, w1, eta; what each row
    # takes of each line's centre, width, area and eta derivatives.
    n_p, n_l = dq_dp.shape[1], len(q_l)
    zeros = np.zeros((n_p + 3, n_l))
    d_center, d_width, d_area, d_eta = zeros.copy(), zeros.copy(), zeros.copy(), zeros
    d_center[:n_p] = (dq_dp * dT_dq[:, None]).T
    d_width[:n_p] = (dq_dp * dwidth_dq[:, None]).T
    d_area[:n_p] = (dq_dp * darea_dq[:, None]).T
    d_width[n_p] = dT_dq
    d_width[n_p + 1] = (q_l - q_ref) * dT_dq
    d_eta[n_p + 2] = 1.0
    weights = area_derivative_weights(phase.eta, width, area, d_center, d_width, d_area, d_eta)
    rows = sum(w @ b for w, b in zip(weights, area_derivative_basis(u, lor, gau)))
    rows = rows.reshape(len(rows), -1, 2).mean(axis=2) if nodes else pattern.bin_mean(rows)
    return column, rows


@dataclass
class FitResult:
    """A whole-pattern fit at one point.

    ``covariance`` is over ``[theta of each phase..., scales..., background...]``
    in that order; ``phase_slices`` locates each phase's theta in it.
    """

    phases: list[PhaseState]
    scales: np.ndarray
    background: np.ndarray          # coefficients
    chi2: float
    dof: int
    covariance: np.ndarray | None
    phase_slices: list[slice]
    pattern: Pattern
    basis: np.ndarray
    model: np.ndarray               # phases + background on pattern.q
    phase_model: np.ndarray         # phases only
    serial_correlation: float = 1.0  # Berar-Lelann factor of the residuals (core.lsq.serial_correlation_factor)
    knot_spacing_A: float = math.nan  # of the background's B-splines
    # phase columns, then basis, over sigma (the F-tests'; a series drops it when its point is done)
    design: np.ndarray | None = field(default=None, repr=False)
    _evaluated: tuple | None = field(default=None, repr=False)   # the last evaluate(): q, phases, background

    @property
    def reduced_chi2(self) -> float:
        return self.chi2 / self.dof if self.dof > 0 else math.nan

    def evaluate(self, q_A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fitted phases and background on another q grid (the unmerged pattern's),
        the background rebuilt on the knots the fit used (the last grid's kept: the
        identification's goodness of fit and the stored model ask for the same one)."""
        q_A = np.asarray(q_A, float)
        last = self._evaluated
        if last is not None and last[0].shape == q_A.shape and np.array_equal(last[0], q_A):
            return last[1], last[2]
        other = Pattern(q_A, np.zeros(len(q_A)), np.ones(len(q_A)), self.pattern.wavelength_A)
        # the same q_ref as the fit, so that the width law means the same
        other = _with_q_ref(other, self.pattern.q_ref)
        if self.pattern.__dict__.get("_nodes"):
            # lines a few bins wide were fitted as bin means: so they are shown and judged
            other = other.bin_averaged()
        phases = sum((s * phase_column(other, p)[0] for s, p in zip(self.scales, self.phases)),
                     np.zeros(len(q_A)))
        span = (float(self.pattern.q[0]), float(self.pattern.q[-1]))
        background = background_basis(other.q, self.knot_spacing_A, span) @ self.background
        # kept as they were asked and computed: the grid copied, the arrays read-only, so
        # that no caller's later change to either can make the next answer a stale one
        for array in (phases, background):
            array.setflags(write=False)
        self._evaluated = (q_A.copy(), phases, background)
        return phases, background

    def scale_index(self, k: int) -> int:
        return sum(p.n_theta for p in self.phases) + k


class _Projected:
    """Residual and Kaufman Jacobian of the variable-projection problem, for one set of phases."""

    def __init__(self, pattern: Pattern, phases: list[PhaseState], basis: np.ndarray):
        self.pattern, self.phases, self.basis = pattern, phases, basis
        self.inv_sigma = 1.0 / pattern.sigma
        self.yw = pattern.y * self.inv_sigma
        self.bw = basis * self.inv_sigma[:, None]
        self.sizes = [p.n_theta for p in phases]
        self._key = None

    def _evaluate(self, theta, jacobian: bool = False):
        key = theta.tobytes()
        if key == self._key and (self._cache[4] is not None or not jacobian):
            return self._cache
        offset = 0
        columns, jacs = [], []
        for phase, size in zip(self.phases, self.sizes):
            phase.set_theta(theta[offset:offset + size])
            offset += size
            column, jac = phase_column(self.pattern, phase, jacobian=jacobian)
            columns.append(column * self.inv_sigma)
            jacs.append(None if jac is None else jac * self.inv_sigma[None, :])
        design = np.column_stack(columns + [self.bw]) if columns else self.bw
        q_mat, r_mat = np.linalg.qr(design)
        coef = np.linalg.lstsq(r_mat, q_mat.T @ self.yw, rcond=None)[0]
        resid = self.yw - design @ coef
        self._key, self._cache = key, (design, q_mat, coef, resid, jacs if jacobian else None)
        return self._cache

    def residual(self, theta):
        # With the derivatives: least_squares asks for the Jacobian at nearly every
        # point it evaluates (each accepted step), and the lines x bins arrays the
        # residual needs are most of what the derivatives need too.
        return self._evaluate(theta, jacobian=True)[3]

    def jacobian(self, theta):
        design, q_mat, coef, resid, jacs = self._evaluate(theta, jacobian=True)
        blocks = [(coef[k] * jac).T for k, jac in enumerate(jacs)]   # d(model)/d(theta) at fixed linear coefs
        d_model = np.hstack(blocks) if blocks else np.zeros((len(resid), 0))
        # Kaufman: the residual's derivative is minus the part of d(model) outside the span of the design.
        return -(d_model - q_mat @ (q_mat.T @ d_model))


def _bounds(phases: list[PhaseState], pattern: Pattern) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = [], []
    bin_width = float(np.median(np.diff(pattern.q))) if len(pattern.q) > 1 else 1e-3
    for phase in phases:
        p = phase.rcell.p
        span = MAX_CELL_STEP_REL * 2.0 * np.maximum(np.abs(p), 0.1 * np.max(np.abs(p)))
        lo += list(p - span)
        hi += list(p + span)
        lo += [0.1 * bin_width, -0.2, 0.0]
        hi += [MAX_FWHM_Q_A, 0.2, 1.0]
    return np.array(lo), np.array(hi)


def fit_phases(pattern: Pattern, phases: list[PhaseState], basis: np.ndarray, *, refine: bool = True,
               max_nfev: int = 60, with_covariance: bool = True) -> FitResult:
    """Refine ``phases`` (their cells, widths and eta) jointly with their scales and the background.

    The ``phases`` states are updated in place to the refined values. With
    ``refine=False`` only the linear parameters are solved (the nonlinear ones
    held): the cheap fit that the identification's removal tests need.
    ``with_covariance=False`` leaves out the covariance (an SVD of the whole
    Jacobian) where only the values are wanted.
    """
    for phase in phases:
        phase.refresh_intensities()
    problem = _Projected(pattern, phases, basis)
    theta0 = np.concatenate([p.theta() for p in phases]) if phases else np.zeros(0)
    if refine and len(theta0):
        lo, hi = _bounds(phases, pattern)
        theta0 = np.clip(theta0, lo + 1e-12 * np.abs(lo), hi - 1e-12 * np.abs(hi))
        with np.errstate(all="ignore"):
            solution = least_squares(problem.residual, theta0, jac=problem.jacobian, bounds=(lo, hi),
                                     method="trf", x_scale="jac", max_nfev=max_nfev, xtol=1e-8, ftol=1e-8)
        theta = solution.x
        refreshed = False
        for phase in phases:
            base = phase.base
            phase.refresh_intensities()
            refreshed |= phase.base is not base
        if refreshed:
            problem = _Projected(pattern, phases, basis)
        # else the problem keeps its last evaluation, residual and derivatives:
        # the solution's, unless least_squares last tried a step it rejected
    else:
        theta = theta0
    design, q_mat, coef, resid, jacs = problem._evaluate(theta, jacobian=refine and with_covariance)
    n_phase = len(phases)
    chi2 = float(resid @ resid)
    n_par = len(theta) + design.shape[1]
    dof = len(resid) - n_par
    correlation = serial_correlation_factor(resid)
    covariance = None
    if refine and with_covariance:
        blocks = [(coef[k] * jac).T for k, jac in enumerate(jacs)]
        full = np.hstack(blocks + [design])
        try:
            _, sv, vt = np.linalg.svd(full, full_matrices=False)
            if sv[-1] > 1e-13 * sv[0]:
                covariance = (vt.T / sv**2) @ vt * covariance_scale(chi2 / max(dof, 1), sigma_given=True,
                                                                     serial_correlation=correlation)
        except np.linalg.LinAlgError:
            covariance = None
    slices, offset = [], 0
    for phase in phases:
        slices.append(slice(offset, offset + phase.n_theta))
        offset += phase.n_theta
    scales = coef[:n_phase]
    background = coef[n_phase:]
    sigma = pattern.sigma
    phase_model = (design[:, :n_phase] @ scales) * sigma if n_phase else np.zeros_like(pattern.y)
    model = design @ coef * sigma
    return FitResult(phases=phases, scales=scales, background=background, chi2=chi2, dof=dof,
                     covariance=covariance, phase_slices=slices, pattern=pattern, basis=basis, model=model,
                     phase_model=phase_model, serial_correlation=correlation, design=design)


def chi2_without(fit: FitResult, k: int) -> float:
    """chi^2 of the same fit with phase k left out, the others' nonlinear parameters held
    and every linear parameter (scales, background) solved again (on the fit's own
    columns while it keeps its design)."""
    pattern, inv_sigma = fit.pattern, 1.0 / fit.pattern.sigma
    if fit.design is not None:
        # the fit's own columns: the phases' lines where it left them
        design = fit.design[:, [i for i in range(fit.design.shape[1]) if i != k]]
    else:
        columns = [phase_column(pattern, p)[0] * inv_sigma for i, p in enumerate(fit.phases) if i != k]
        design = np.column_stack(columns + [fit.basis * inv_sigma[:, None]])
    yw = pattern.y * inv_sigma
    coef = np.linalg.lstsq(design, yw, rcond=None)[0]
    resid = yw - design @ coef
    return float(resid @ resid)
