"""Which phases a pattern holds, decided on the whole pattern.

A phase is present when the whole-pattern fit with it is significantly
better than the fit without it: an F-test of the nested models (Hamilton,
Acta Cryst. 18, 502 (1965) for the R-factor form of the same test),

    F = [(chi2_without - chi2_with) / dp] / [chi2_with / dof_with],

against the critical value of F(dp, dof_with) at ``significance`` (the
probability that an absent phase passes by chance), dp the parameters the
phase adds (its scale, free cell components, two widths and eta). Dividing
by the reduced chi^2 of the fuller model, and by the serial correlation of
its residuals (Berar & Lelann, J. Appl. Cryst. 24, 1 (1991):
:func:`dacpipe.core.lsq.serial_correlation_factor`), makes the test hold
on real data, whose model misfit raises every chi^2 and spans many points:
a phase of a few tenths of a per cent that only soaks up the misfit of
another phase's line shape is not evidence.

* **Removal.** Each present phase is tested by leaving it out (the other
  phases' lines held, every scale and the background solved again); the
  least significant one below the threshold goes, and the rest are refitted.
* **Addition.** Each absent candidate is looked for in the residual of the
  current fit with a matched filter (:func:`scan_candidate`): its lines,
  at the cell its EOS gives for the point's pressure, slid by a common
  factor k = 1 +- ``search_rel`` on q and drawn at a few crystallite sizes
  (and, for uniaxial cells, a few c/a), so that a seed a few per cent off
  and of unknown width is still found. In ln q a scale factor is a shift, so
  the whole scan is two FFT correlations per template. The best candidate,
  when its gain could pass the F-test, is added, the whole pattern refitted,
  and kept only if the F-test says so.

Peaks that no present phase explains are found in the final residual by a
matched filter of the typical line width and reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import fdtri

from .pattern import FitResult, Pattern, PhaseState, chi2_without, phase_column

# Crystallite sizes (nm) whose line widths the addition scan tries: nanocrystals to a fine powder.
SCAN_SIZES_NM = (3.0, 5.0, 8.0, 15.0, 40.0)
# Axial ratios the scan tries for hexagonal, trigonal and tetragonal cells (relative c/a).
SCAN_AXIAL_RATIOS = (0.98, 1.0, 1.02)
SCAN_ETA = 0.7
SCHERRER_K_SCAN = 0.9


def critical_f(dp: int, dof: int, significance: float) -> float:
    """The F value an added phase must beat (upper ``significance`` quantile of F(dp, dof)).

    scipy.special's quantile of the F distribution, the one scipy.stats.f.isf
    evaluates (the same numbers), without scipy.stats: its import was 0.26 s
    of every identification job's start, and each call 46 us instead of 2."""
    return float(fdtri(max(dp, 1), max(dof, 1), 1.0 - significance))


def f_statistic(chi2_with: float, chi2_without_: float, dp: int, dof_with: int) -> float:
    """The nested-model F statistic of one phase."""
    if dof_with <= 0 or chi2_with <= 0:
        return math.nan
    return ((chi2_without_ - chi2_with) / dp) / (chi2_with / dof_with)


def phase_evidence(fit: FitResult, k: int) -> float:
    """F statistic of phase k in ``fit`` (its lines held, linear parameters re-solved without it),
    divided by the serial correlation of the fit's residuals: a model misfit spanning
    many points makes each point count for less (Berar & Lelann 1991)."""
    return f_statistic(fit.chi2, chi2_without(fit, k), fit.phases[k].n_theta + 1, fit.dof) / fit.serial_correlation


@dataclass(frozen=True)
class ScanHit:
    """The best place a candidate's lines fit the residual."""

    factor: float          # k: q of every line of the templates' cell multiplied by it
    axial: float           # relative c/a (1 for cubic and uncoupled cells)
    fwhm_q_A: float        # template width
    delta_chi2: float      # chi^2 the candidate alone would remove (scale free, >= 0)


class CandidateTemplates:
    """A candidate's line templates on a ln q grid, built once and reused while its seed stays near."""

    def __init__(self, seed: PhaseState, pattern: Pattern, search_rel: float):
        self.seed_p = seed.rcell.p.copy()
        self.grid = _log_grid(pattern, search_rel)
        u, n_fft = self.grid
        self.n_fft = n_fft
        self.templates: list[tuple[float, float, np.ndarray, np.ndarray]] = []
        axials = SCAN_AXIAL_RATIOS if seed.rcell.system in ("hexagonal", "trigonal", "tetragonal") \
            and len(seed.rcell.p) == 2 else (1.0,)
        q = np.exp(u)
        fake = Pattern(q, np.zeros_like(q), np.ones_like(q), pattern.wavelength_A)
        min_width = 3.0 * float(np.median(np.diff(pattern.q)))
        for axial in axials:
            state = seed.copy()
            if axial != 1.0:
                state.rcell = state.rcell.with_p(state.rcell.p * np.array([1.0, axial ** -2]))
            state.refresh_intensities(force=True)
            for size in SCAN_SIZES_NM:
                state.w0, state.w1, state.eta = max(2 * np.pi * SCHERRER_K_SCAN / (10 * size), min_width), 0.0, SCAN_ETA
                g = phase_column(fake, state)[0]
                if not np.any(g > 0):
                    continue
                self.templates.append((axial, state.w0, np.fft.rfft(g, n_fft), np.fft.rfft(g * g, n_fft)))

    def fresh(self, seed: PhaseState, limit: float = 0.02) -> bool:
        """Whether the templates still describe ``seed``: its cell within ``limit`` (relative q)
        of theirs. The scan follows an isotropic move exactly; only the line widths and
        relative areas, which the scan does not resolve, drift with it."""
        return bool(np.all(np.abs(seed.rcell.p / self.seed_p - 1.0) < 2 * limit))


def _log_grid(pattern: Pattern, search_rel: float) -> tuple[np.ndarray, int]:
    """A uniform ln q grid over the pattern, as fine as a tenth of a bin, and its FFT length."""
    q = pattern.q
    du = float(np.median(np.diff(q))) / float(q[-1])
    lo, hi = math.log(q[0]), math.log(q[-1])
    n = int(math.ceil((hi - lo) / du)) + 1
    n_fft = 1 << int(math.ceil(math.log2(n + 2 * int(math.ceil(search_rel / du)) + 8)))
    return np.linspace(lo, hi, n), n_fft


def scan_candidate(templates: CandidateTemplates, seed: PhaseState, pattern: Pattern, residual: np.ndarray,
                   search_rel: float) -> ScanHit | None:
    """The factor, width and axial ratio at which the candidate's lines best fit the
    residual of the current model (unweighted ``residual`` on ``pattern.q``).

    For a template g, the best non-negative amplitude removes
    N^2 / D of chi^2, N = sum r g / sigma^2, D = sum g^2 / sigma^2; sums
    over bins become sums over the ln q grid with the bin density q / dq.
    """
    u, n_fft = templates.grid
    du = u[1] - u[0]
    q = np.exp(u)
    density = q * du / float(np.median(np.diff(pattern.q)))
    inv_var = np.interp(q, pattern.q, 1.0 / pattern.sigma**2)
    a = np.interp(q, pattern.q, residual) * inv_var * density
    b = inv_var * density
    fa, fb = np.fft.rfft(a, n_fft), np.fft.rfft(b, n_fft)
    # The seed may have moved since the templates were built: centre the window on it.
    centre = 0.5 * float(np.median(np.log(seed.rcell.p / templates.seed_p)))
    half = int(math.ceil(search_rel / du))
    shift0 = int(round(centre / du))
    shifts = np.arange(shift0 - half, shift0 + half + 1)
    best = None
    for axial, width, fg, fg2 in templates.templates:
        numerator = np.fft.irfft(fa * np.conj(fg), n_fft)[shifts % n_fft]
        denominator = np.fft.irfft(fb * np.conj(fg2), n_fft)[shifts % n_fft]
        gain = np.where((numerator > 0) & (denominator > 0), numerator**2 / np.maximum(denominator, 1e-300), 0.0)
        i = int(np.argmax(gain))
        if best is None or gain[i] > best.delta_chi2:
            best = ScanHit(math.exp(shifts[i] * du), axial, width, float(gain[i]))
    return best


def residual_peaks(q_A: np.ndarray, resid: np.ndarray, sigma: np.ndarray, fwhm_q_A: float,
                   min_snr: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions (q) and significances of the peaks of a residual ``resid`` on ``q_A``
    (errors ``sigma``): peaks no phase explains.

    A matched filter: the residual correlated with a Gaussian of the typical
    line width, over its noise, sqrt(sum sigma^2 g^2). Local maxima above
    ``min_snr`` count, one per line width.
    """
    dq = float(np.median(np.diff(q_A)))
    half = max(int(round(1.5 * fwhm_q_A / dq)), 1)
    x = np.arange(-half, half + 1) * dq
    g = np.exp(-4 * math.log(2) * (x / max(fwhm_q_A, dq)) ** 2)
    numerator = np.convolve(resid, g, mode="same")
    noise = np.sqrt(np.convolve(sigma**2, g * g, mode="same"))
    snr = numerator / noise
    peaks = []
    order = np.argsort(snr)[::-1]
    taken = np.zeros(len(snr), bool)
    for i in order:
        if snr[i] < min_snr:
            break
        if taken[max(i - half, 0):i + half + 1].any():
            continue
        if 0 < i < len(snr) - 1 and snr[i] >= snr[i - 1] and snr[i] >= snr[i + 1]:
            peaks.append(i)
            taken[max(i - half, 0):i + half + 1] = True
    peaks = sorted(peaks)
    return q_A[peaks], snr[peaks]
