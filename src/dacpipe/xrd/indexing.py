"""Phases, lattices and fractions of every pattern of a series, point by point.

At each point, in measurement order:

1. every phase present at the previous point starts from its refined state
   there (cell, widths, eta), its cell moved to the new pressure by its
   EOS; a phase never seen starts from its library cell at that pressure;
2. the present phases are refined jointly on the whole pattern
   (:func:`dacpipe.xrd.pattern.fit_phases`: cells, a width law and a
   Lorentzian fraction per phase, fixed-structure intensities, a smooth
   background), on bins merged while the narrowest line keeps 5 of them
   (the model averaged over each merged bin: :meth:`Pattern.bin_mean`);
3. which phases are present is decided on the whole pattern
   (:mod:`dacpipe.xrd.identify`): a present phase whose removal costs less
   than the F-test's critical value at ``significance`` is dropped; an
   absent candidate found in the residual by a matched-filter scan is added
   and kept only if it passes the same test. No order of phases is assumed:
   a series may go up and down in pressure, and a phase may come back;
4. fractions of formula units from the refined scales (Hill & Howard,
   J. Appl. Cryst. 20, 467 (1987)): x_p = s_p Z_p V_p / sum_q s_q Z_q V_q,
   with errors from the fit's covariance; cells, volumes per formula unit,
   line widths (Scherrer sizes) with theirs. A phase below the detection
   limit ``fraction_threshold`` is absent even when the F-test keeps it;
5. peaks that no present phase explains are found in the residual and
   reported, and steps 1-4 are done again without their bins (a gasket
   line or a diamond spot would otherwise distort the background and the
   widths, and pull the lattices).

A run split into chunks of points (one job each) starts every chunk afresh
from the library, as at the first point: a chunk needs nothing from another.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d
from threadpoolctl import threadpool_limits

from ..core.errors import InputError
from ..io.config import validate_section
from .cells import ReciprocalCell
from .identify import CandidateTemplates, critical_f, f_statistic, phase_evidence, residual_peaks, scan_candidate
from .instrument import Caglioti, instrument_from_config
from .lines import line_set
from .pattern import FitResult, Pattern, PhaseState, background_basis, fit_phases, usable_pattern
from .size_strain import NAN_RESULT, WilliamsonHall, williamson_hall
from .structure import Phase, reflections

# Widths a phase starts from before any fit (FWHM in q): an 8 nm crystallite.
DEFAULT_FWHM_Q_A = 0.07
DEFAULT_ETA = 0.5
# Bins are merged while the narrowest line keeps this many of them across its FWHM
# (the model is the bin's mean, so widths do not depend on it: 5 and 8 give the
# same FWHM to 5e-4; the profile evaluations scale with the bins, 8 -> 5 takes
# a third off a 3000-bin pattern's identification).
BINS_PER_FWHM = 5
MAX_MERGE = 8
# Below this many bins across the narrowest FWHM the model is averaged over each bin
# at two Gauss-Legendre nodes (the second-difference mean of Pattern.bin_mean errs
# by 0.2 % of a line's height at 3.5 bins, 0.05 % at 5).
COARSE_BINS_PER_FWHM = 3.5
# A residual peak is reported when it is also this share of the model there (a 5 % misfit of a strong line is not a phase).
UNEXPLAINED_SHARE = 0.1
# A phase whose quick removal test passes by less than this factor is tested against a full refit without it.
REFIT_MARGIN = 30.0
# A peak no phase explains (a gasket line, a diamond spot the integration let
# through) is left out of the final fit over this many of the phases' FWHM on
# either side: it would otherwise pull the lattices and scale everyone's errors.
UNEXPLAINED_EXCLUDE_FWHM = 1.5
# Unexplained peaks are looked for from this share of the lowest line a candidate can have.
LOW_Q_MARGIN = 0.7
# The fits start at this share of the candidates' lowest line (fit_range).
FIT_LOW_Q_MARGIN = 0.5
# Residual trends broader than this many line widths are the background's misfit, not peaks:
# taken out before the search for unexplained peaks (at 1e6 counts per bin a 1 % misfit of a
# smooth background is 10 sigma).
UNEXPLAINED_HIGH_PASS_FWHM = 3.0
# Where phases coexist, the fit is repeated with the background's knots this much
# closer: the change of the fractions is their background-model error (below).
BACKGROUND_CHECK_SPACING = 0.7
# ... starting from the converged fit, with at most this many evaluations (one
# step): the fractions' total errors of 3 evaluations came out within 2e-5 (median;
# 3 % at most) of those of a check run to convergence on the synthetic HgTe and
# CdSe series, and 2 give the same fraction pulls (spread 0.97 / 0.94 against
# 0.95 / 0.93); the linear parameters alone (no step) leave them at 1.18 / 1.21.
BACKGROUND_CHECK_NFEV = 2
# An absent candidate tried at an earlier point (its pre-screen passed, the F-test or the
# detection limit then left it out) is tried again only once its pre-screen chi^2 gain has
# grown this much: the gain grows as the square of a phase's amount, so a nucleating phase
# is tried again by the time its fraction has grown 22 %. (Not the gain over the reduced
# chi^2: where the missing phase is most of the misfit, both grow with it.) On a dense series most coexistence
# points otherwise tried, and declined, the absent phase every time (measured: 5 trials in
# 60 cinnabar + rock-salt points of a 1,000-frame run, 30 % of their time).
DECLINED_GROWTH = 1.5
# A residual peak within this many FWHM of a fitted phase's line is that line,
# its intensity off the fixed structure's, unless it stands ON_LINE_EXCESS times
# the model there above it (a gasket line, a spot on a weak line).
ON_LINE_FWHM = 0.5
ON_LINE_EXCESS = 3.0
# A phase present at the previous point stays present down to this share of the detection
# limit: a phase near the limit would otherwise flicker in and out and make transitions of its own.
DETECTION_HYSTERESIS = 0.5


@dataclass(frozen=True)
class IndexingSettings:
    """The run's ``indexing`` section with its ``phases`` list (keys and defaults: ``config/schema.yaml``)."""

    phases: tuple[str, ...]
    search_rel: float
    significance: float
    tolerance_rel: float
    min_lines: int
    min_intensity_percent: float
    fraction_threshold: float
    min_snr: float
    scherrer_k: float
    instrument_fwhm_deg: float
    q_range_A: tuple | None
    background_knot_spacing_A: float | None
    instrument: dict | None = None          # the config's, as given (schema.yaml)
    caglioti: Caglioti | None = None        # the instrument resolved (with_instrument); None: instrument_fwhm_deg

    def with_instrument(self, wavelength_A: float) -> "IndexingSettings":
        """These settings with the instrument's width law resolved at the run's wavelength
        (:func:`dacpipe.xrd.instrument.instrument_from_config`)."""
        return replace(self, caglioti=instrument_from_config(self.instrument, wavelength_A,
                                                              self.instrument_fwhm_deg))

    @classmethod
    def from_config(cls, run: dict) -> "IndexingSettings":
        """From a run's ``phases`` and ``indexing`` section; what the section
        leaves out comes from the schema's defaults."""
        section = validate_section("indexing", run.get("indexing"))
        return cls(phases=tuple(run.get("phases", ())), **section)


def scherrer_size_nm(q_A: float, fwhm_q_A: float, fwhm_err_q_A: float, wavelength_A: float, k: float = 0.89,
                     instrument_fwhm_deg: float = 0.0) -> tuple[float, float]:
    """Crystallite size (nm) and its error from a line's FWHM in q.

    Scherrer (Nachr. Ges. Wiss. Göttingen 1918, 98), D = K lambda / (B cos
    theta) with B the FWHM in 2theta (radians); in q, since dq = (2 pi /
    lambda) cos theta d(2theta), this is D = 2 pi K / FWHM_q, the same for
    every line. An instrumental width (2theta, degrees, at this line) is
    taken out in quadrature, as for Gaussian profiles (Langford & Wilson,
    J. Appl. Cryst. 11, 102 (1978)). NaN when the line is not broader than
    the instrument.
    """
    if not (math.isfinite(fwhm_q_A) and fwhm_q_A > 0):
        return math.nan, math.nan
    cos_theta = math.sqrt(max(1 - (q_A * wavelength_A / (4 * math.pi)) ** 2, 0.0))
    instrument_q = 2 * math.pi / wavelength_A * cos_theta * math.radians(instrument_fwhm_deg)
    if fwhm_q_A <= instrument_q:
        return math.nan, math.nan
    sample_q = math.sqrt(fwhm_q_A**2 - instrument_q**2)
    size_A = 2 * math.pi * k / sample_q
    # dD/dFWHM = -D / sample_q * (FWHM / sample_q)
    return size_A / 10, size_A / 10 * fwhm_q_A / sample_q**2 * fwhm_err_q_A




# --------------------------------------------------------------------------
# One point
# --------------------------------------------------------------------------


@dataclass
class PhaseAtPoint:
    """What one phase gave at one point (NaN where it is absent)."""

    present: bool = False
    cell: tuple | None = None
    cell_errors: dict = field(default_factory=dict)
    volume_fu_A3: float = math.nan
    volume_fu_err_A3: float = math.nan
    fraction: float = 0.0
    fraction_err: float = math.nan     # statistical and background-model parts together
    fraction_background_err: float = math.nan   # the background-model part (coexisting phases only)
    scale: float = math.nan
    fwhm_q_A: tuple[float, float, float] = (math.nan, math.nan, math.nan)   # (q of the strongest line, FWHM, error)
    width_law: tuple[float, float] = (math.nan, math.nan)   # FWHM at the series' q_ref, and dFWHM/dq
    eta: float = math.nan
    evidence_F: float = math.nan       # F statistic of the phase (NaN when it was not tested)
    critical_F: float = math.nan
    hkl: tuple = ()                    # the lines of the model in the pattern's range
    size_strain: WilliamsonHall = NAN_RESULT   # Williamson-Hall size and microstrain (dacpipe.xrd.size_strain)


@dataclass
class PointResult:
    """One pattern's phases, fit quality and unexplained peaks."""

    phases: dict[str, PhaseAtPoint]
    reduced_chi2: float = math.nan
    unexplained_q_A: tuple[float, ...] = ()
    unexplained_snr: tuple[float, ...] = ()
    fit: FitResult | None = None


@dataclass
class SeriesState:
    """What a point hands the next: each phase's last refined state and the pressure it was refined at."""

    refined: dict[str, tuple[PhaseState, float]] = field(default_factory=dict)
    present: tuple[str, ...] = ()        # in the model (a phase below the detection limit too)
    reported: tuple[str, ...] = ()       # reported present
    search_q_min: float = 0.0            # unexplained peaks are looked for above this q
    search_q_min_for: tuple = ()         # the candidates and q_max it was found for
    fit_range_A: tuple[float, float] = (math.nan, math.nan)   # the q range the fits used (fit_range)
    # Per absent candidate: its pre-screen chi^2 gain at the last point where it was tried
    # and ended absent (_try_additions); the trials of this point.
    declined: dict[str, float] = field(default_factory=dict)
    trials: dict[str, float] = field(default_factory=dict)
    templates: dict[str, CandidateTemplates] = field(default_factory=dict)
    # Library cells by (phase, pressure): each point's seeds ask for the cells at its
    # pressure and at the last point's (an EOS inverted each time: a tenth of a
    # single-phase point's time)
    cells: dict[tuple[int, float], tuple] = field(default_factory=dict)


def _cell_at(phase: Phase, pressure_GPa: float, cache: dict | None = None) -> tuple:
    p = pressure_GPa if math.isfinite(pressure_GPa) else phase.reference_pressure_GPa
    # by the phase object, which the entry holds on to (so its id is not reused)
    key = (id(phase), float(p))
    if cache is not None and key in cache:
        return cache[key][1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cell = tuple(phase.cell_at(p))
    if cache is not None:
        if len(cache) > 64:     # a series walks on: the cells of points long past are not asked again
            cache.clear()
        cache[key] = (phase, cell)
    return cell


def seed_state(name: str, phase: Phase, state: SeriesState, pressure_GPa: float, q_max_A: float,
               wavelength_A: float) -> PhaseState:
    """Where a phase starts at a point: its last refined state moved along its EOS, or the library cell."""
    if name in state.refined:
        last, p_last = state.refined[name]
        seed = last.copy()
        if math.isfinite(pressure_GPa) and math.isfinite(p_last) and pressure_GPa != p_last:
            v_new, v_old = (float(np.prod(_cell_at(phase, p, state.cells)[:3])) for p in (pressure_GPa, p_last))
            # Every component of G* scales as 1/length^2 under isotropic compression.
            seed.rcell = seed.rcell.with_p(seed.rcell.p * (v_new / v_old) ** (-2.0 / 3.0))
        return seed
    lines = line_set(phase, q_max_A, wavelength_A)
    rcell = ReciprocalCell.from_cell(phase.system, _cell_at(phase, pressure_GPa, state.cells))
    return PhaseState(name, lines, rcell, DEFAULT_FWHM_Q_A, 0.0, DEFAULT_ETA)


def _merge_factor(pattern: Pattern, phases: Sequence[PhaseState]) -> int:
    if not phases:
        return 1
    dq = float(np.median(np.diff(pattern.q)))
    narrowest = min(max(p.w0, 1e-6) for p in phases)
    return int(np.clip(narrowest / (BINS_PER_FWHM * dq), 1, MAX_MERGE))


def _knot_spacing(pattern: Pattern, phases: Sequence[PhaseState], settings: IndexingSettings) -> float:
    """B-spline knots of the background: far wider than any line (five times the broadest FWHM)."""
    if settings.background_knot_spacing_A:
        return float(settings.background_knot_spacing_A)
    span = float(pattern.q[-1] - pattern.q[0])
    broadest = max([p.w0 for p in phases] + [0.0])
    return float(np.clip(max(span / 16.0, 5.0 * broadest), span / 40.0, span / 3.0))


def _fit(pattern: Pattern, phases: list[PhaseState], settings: IndexingSettings, refine: bool = True,
         max_nfev: int = 60, with_covariance: bool = True) -> FitResult:
    factor = _merge_factor(pattern, phases)
    merged = pattern.merged(factor)
    if phases and min(p.w0 for p in phases) < COARSE_BINS_PER_FWHM * float(np.median(np.diff(merged.q))):
        merged = merged.bin_averaged()
    spacing = _knot_spacing(pattern, phases, settings)
    # Kept with the point's pattern, not the merged one the fit keeps: the
    # point's other fits ask for the same basis; a finished point's results do not.
    basis = pattern.memo(("background", factor, spacing), lambda: _read_only(background_basis(merged.q, spacing)))
    fit = fit_phases(merged, phases, basis, refine=refine, max_nfev=max_nfev, with_covariance=with_covariance)
    fit.knot_spacing_A = spacing
    return fit


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _drop_insignificant(pattern: Pattern, fit: FitResult, settings: IndexingSettings) -> FitResult:
    """Remove, one at a time, the least significant phase while one fails the F-test.

    The quick test holds the other phases' lines where the fit with the
    phase put them; a phase that passes it by less than a factor
    :data:`REFIT_MARGIN` is tested again against a full refit without it,
    in which the others may move back onto what it was soaking up.
    """
    while fit.phases:
        tests = [(phase_evidence(fit, k), critical_f(p.n_theta + 1, fit.dof, settings.significance))
                 for k, p in enumerate(fit.phases)]
        ratios = [f / c if math.isfinite(f) else -math.inf for f, c in tests]
        worst = int(np.argmin(ratios))
        remaining = [p.copy() for k, p in enumerate(fit.phases) if k != worst]
        if ratios[worst] >= 1.0 and fit.scales[worst] > 0:
            if ratios[worst] >= REFIT_MARGIN:
                return fit
            # The same bins and background as the fit with the phase: the chi^2 compare.
            reduced = fit_phases(fit.pattern, remaining, fit.basis)
            reduced.knot_spacing_A = fit.knot_spacing_A
            evidence = f_statistic(fit.chi2, reduced.chi2, fit.phases[worst].n_theta + 1,
                                   fit.dof) / fit.serial_correlation
            if evidence >= tests[worst][1]:
                return fit
            fit = _fit(pattern, [p.copy() for p in reduced.phases], settings)
            continue
        fit = _fit(pattern, remaining, settings)
    return fit


def _try_additions(pattern: Pattern, fit: FitResult, candidates: dict[str, Phase], seeds: dict[str, PhaseState],
                   state: SeriesState, settings: IndexingSettings) -> FitResult:
    """Add absent candidates the residual calls for, best first, each kept only if it passes the F-test.

    Each candidate is tried once per pattern: one that passes on its own but is
    dropped again when the others are retested is not tried again (on a
    pattern the model cannot describe, a spot-ridden one, it would come and go
    for ever)."""
    tried: set[str] = set()
    while True:
        present = {p.name for p in fit.phases}
        absent = [n for n in candidates if n not in present and n not in tried]
        if not absent:
            return fit
        residual = fit.pattern.y - fit.model
        hits = []
        for name in absent:
            seed = seeds[name]
            templates = state.templates.get(name)
            if templates is None or not templates.fresh(seed) or len(templates.grid[0]) == 0 \
                    or templates.grid[0][0] > math.log(fit.pattern.q[0]) + 1e-9 \
                    or templates.grid[0][-1] < math.log(fit.pattern.q[-1]) - 1e-9:
                templates = CandidateTemplates(seed, fit.pattern, settings.search_rel)
                state.templates[name] = templates
            hit = scan_candidate(templates, seed, fit.pattern, residual, settings.search_rel)
            if hit is not None:
                hits.append((hit.delta_chi2, name, hit, templates))
        if not hits:
            return fit
        gain, name, hit, templates = max(hits, key=lambda h: h[0])
        seed = seeds[name]
        dp = seed.n_theta + 1
        # A pre-screen only: the residual still holds the candidate, so its chi^2 and
        # correlation are not the noise; the F-test after the fit with it decides.
        ratio = gain / max(fit.reduced_chi2, 1e-12) / (dp * critical_f(dp, fit.dof, settings.significance))
        if ratio < 1.0:
            return fit
        if gain < DECLINED_GROWTH * state.declined.get(name, 0.0):
            # Tried at an earlier point with as much evidence and found absent: nothing changed
            # that a new trial (a full fit with it, a third of a coexistence point's time) would see.
            tried.add(name)
            continue
        state.trials[name] = gain
        trial_phase = seed.copy()
        p = templates.seed_p * hit.factor**2   # q scales by k, G* by k^2
        if hit.axial != 1.0:
            p = p * np.array([1.0, hit.axial ** -2])
        trial_phase.rcell = trial_phase.rcell.with_p(p)
        trial_phase.w0, trial_phase.w1, trial_phase.eta = hit.fwhm_q_A, 0.0, DEFAULT_ETA
        # The present phases restart from their seeds: fitted without the candidate,
        # they may have moved their lines onto its lines.
        restart = [seeds[p_.name].copy() if p_.name in seeds else p_.copy() for p_ in fit.phases]
        trial = _fit(pattern, restart + [trial_phase], settings)
        k = len(trial.phases) - 1
        tried.add(name)
        if trial.scales[k] > 0 and phase_evidence(trial, k) >= critical_f(dp, trial.dof, settings.significance):
            fit = _drop_insignificant(pattern, trial, settings)


def index_pattern(pattern: Pattern, candidates: dict[str, Phase], state: SeriesState, pressure_GPa: float,
                  settings: IndexingSettings, markers: Sequence[str] = ()) -> PointResult:
    """Identify and refine the phases of one pattern (steps 1-5 of the module docstring);
    ``state`` is updated for the next point.

    Peaks no phase explains are reported and the whole identification is done
    again without their bins: a strong unexplained peak (a gasket line, a
    diamond spot) distorts the background and the widths of a first fit, and
    makes ripples look like further peaks.
    """
    q_max = float(pattern.q[-1])
    seeds = {name: seed_state(name, phase, state, pressure_GPa, q_max, pattern.wavelength_A)
             for name, phase in candidates.items()}
    fit, result, traces = _identify(pattern, candidates, seeds, state, settings, markers)
    used = pattern
    # Twice at most: the widths of the first fit, which the peaks distorted, set
    # the first windows; those of the clean fit the final ones.
    windows = None
    for _ in range(2):
        if not (result.unexplained_q_A and fit.phases):
            break
        half = UNEXPLAINED_EXCLUDE_FWHM * float(np.median([p.w0 for p in fit.phases]))
        keep = np.ones(len(pattern.q), dtype=bool)
        for q_u in result.unexplained_q_A:
            keep &= np.abs(pattern.q - q_u) > half
        if keep.sum() < len(pattern.q) // 2 or (windows is not None and np.array_equal(keep, windows)):
            break
        windows = keep
        used = pattern.subset(keep)
        fit, cleaned, traces = _identify(used, candidates, seeds, state, settings, markers)
        # The unexplained peaks are those of the whole pattern against the clean model.
        q_u, snr = _unexplained(pattern, fit, settings, traces, state.search_q_min)
        result = replace(cleaned, unexplained_q_A=q_u, unexplained_snr=snr)
    _background_model_error(used, fit, result, candidates, settings, markers)
    result = replace(result, reduced_chi2=_bin_reduced_chi2(pattern, fit, windows))
    state.present = tuple(p.name for p in fit.phases)
    state.reported = tuple(name for name, st in result.phases.items() if st.present)
    for name, gain in state.trials.items():
        if name not in state.reported:
            state.declined[name] = gain
    for name in state.reported:
        state.declined.pop(name, None)
    state.trials = {}
    for phase_state in fit.phases:
        state.refined[phase_state.name] = (phase_state.copy(), pressure_GPa)
    # The F-tests are done: a series' results keep what the store needs, not
    # each point's weighted design (its lines x bins work, ~0.1 MB a point).
    result.fit.design = None
    return result


def _bin_reduced_chi2(pattern: Pattern, fit: FitResult, keep: np.ndarray | None) -> float:
    """chi^2 per degree of freedom of the fit on the integrated bins it used (``keep``;
    all when None), not on the merged ones it was refined on: where the model
    misses the data's shape a merged bin's smaller error inflates its chi^2 by the
    merge factor, and the goodness of fit would follow an internal choice."""
    phases, background = fit.evaluate(pattern.q)
    resid = (pattern.y - phases - background) / pattern.sigma
    if keep is not None:
        resid = resid[keep]
    n_par = len(fit.pattern.q) - fit.dof
    dof = len(resid) - n_par
    return float(resid @ resid) / dof if dof > 0 else math.nan


def _background_model_error(pattern: Pattern, fit: FitResult, result: PointResult, candidates: dict[str, Phase],
                            settings: IndexingSettings, markers: Sequence[str]) -> None:
    """The background-model part of the fractions' errors, where sample phases coexist:
    the change of each fraction when the fit is repeated with the background's
    B-spline knots :data:`BACKGROUND_CHECK_SPACING` times closer, added in quadrature
    to the statistical error (``result`` updated in place).

    Broad lines share their tails with the background, and how much the spline
    takes depends on where its knots fall: a model choice the covariance does
    not see. On the synthetic series of tests/test_phase_series.py the
    statistical errors alone gave fraction pulls with a spread of 1.3 (HgTe,
    cinnabar + rock salt) and 1.6 (CdSe, 5 nm wurtzite + 4 nm rock salt);
    with this term 1.1 and 1.25 (the knots 1.4x wider: 0.9).
    """
    sample = [p.name for p in fit.phases if p.name not in markers and result.phases[p.name].present]
    if len(sample) < 2 or not math.isfinite(fit.knot_spacing_A):
        return
    closer = replace(settings, background_knot_spacing_A=BACKGROUND_CHECK_SPACING * fit.knot_spacing_A)
    check = _fit(pattern, [p.copy() for p in fit.phases], closer, max_nfev=BACKGROUND_CHECK_NFEV,
                 with_covariance=False)
    weights = _sample_weights(check, candidates, markers)
    total = sum(weights.values())
    for name in sample:
        out = result.phases[name]
        if name not in weights or not total > 0:
            continue
        out.fraction_background_err = abs(weights[name] / total - out.fraction)
        out.fraction_err = math.hypot(out.fraction_err, out.fraction_background_err)


def _identify(pattern: Pattern, candidates: dict[str, Phase], seeds: dict[str, PhaseState], state: SeriesState,
              settings: IndexingSettings, markers: Sequence[str]) -> tuple[FitResult, PointResult]:
    """The phases of one pattern: the present phases of the last point refitted,
    the insignificant dropped, the absent added where significant, the phases
    below the detection limit removed."""
    fit = _fit(pattern, [seeds[n].copy() for n in state.present if n in seeds], settings)
    fit = _drop_insignificant(pattern, fit, settings)
    fit = _try_additions(pattern, fit, candidates, seeds, state, settings)
    if fit.phases and fit.covariance is None:
        fit = _fit(pattern, fit.phases, settings)
    result = _summarise(fit, candidates, settings, markers, q_min=state.search_q_min)
    # Below the detection limit a phase is absent even when the F-test keeps it:
    # on patterns of 1e5-1e6 counts a few tenths of a per cent of a broad phase
    # soak up the small misfit of the others' line shapes (measured: 0.2 % rock
    # salt beside pure 5 nm wurtzite). The others are refitted without it; its
    # lines are not reported as unexplained. A phase present at the previous
    # point keeps counting down to half the limit.
    traces = []
    for phase_state in fit.phases:
        st = result.phases[phase_state.name]
        limit = settings.fraction_threshold * (DETECTION_HYSTERESIS if phase_state.name in state.reported else 1.0)
        if phase_state.name not in markers and math.isfinite(st.fraction) and st.fraction < limit:
            traces.append(phase_state)
    if traces:
        fit = _fit(pattern, [p.copy() for p in fit.phases if p not in traces], settings)
        result = _summarise(fit, candidates, settings, markers, traces, state.search_q_min)
    return fit, result, traces


def _summarise(fit: FitResult, candidates: dict[str, Phase], settings: IndexingSettings,
               markers: Sequence[str] = (), traces: Sequence[PhaseState] = (), q_min: float = 0.0) -> PointResult:
    """Cells, volumes, fractions, widths and their errors from a fit; the fractions
    are of the sample's formula units (``markers``, a pressure marker beside it, left out).
    ``traces``: phases below the detection limit, whose lines are not unexplained peaks;
    ``q_min``: where the search for unexplained peaks starts."""
    phases = {name: PhaseAtPoint() for name in candidates}
    cov = fit.covariance
    n_cov = 0 if cov is None else cov.shape[0]
    weights, weight_grads = {}, {}
    for k, phase_state in enumerate(fit.phases):
        name = phase_state.name
        phase = candidates[name]
        out = phases[name]
        out.present = True
        sl = fit.phase_slices[k]
        n_p = len(phase_state.rcell.p)
        cell, d_cell, volume, d_volume = phase_state.rcell.cell_and_jacobian()
        out.cell = cell
        if cov is not None:
            cov_p = cov[sl, sl][:n_p, :n_p]
            cell_cov = d_cell @ cov_p @ d_cell.T
            out.cell_errors = {name_: math.sqrt(max(cell_cov[i, i], 0.0))
                               for i, name_ in enumerate(phase_state.rcell.free)}
            volume_err = math.sqrt(max(float(d_volume @ cov_p @ d_volume), 0.0))
        else:
            out.cell_errors = {name_: math.nan for name_ in phase_state.rcell.free}
            volume_err = math.nan
        z = phase.z_formula_units
        if z > 0:
            out.volume_fu_A3, out.volume_fu_err_A3 = volume / z, volume_err / z
        out.scale = float(fit.scales[k])
        out.eta = phase_state.eta
        # Width at the phase's strongest line in range, for its crystallite size.
        q_l, area = phase_state.line_areas()
        inside = (q_l >= fit.pattern.q[0]) & (q_l <= fit.pattern.q[-1])
        q_strong = float(q_l[inside][np.argmax(area[inside])]) if inside.any() else fit.pattern.q_ref
        lever = q_strong - fit.pattern.q_ref
        width = phase_state.w0 + phase_state.w1 * lever
        width_err = math.nan
        if cov is not None:
            idx = [sl.start + n_p, sl.start + n_p + 1]
            g = np.array([1.0, lever])
            width_err = math.sqrt(max(float(g @ cov[np.ix_(idx, idx)] @ g), 0.0))
        out.fwhm_q_A = (q_strong, float(width), width_err)
        out.width_law = (phase_state.w0, phase_state.w1)
        out.hkl = tuple(tuple(int(v) for v in h) for h in phase_state.lines.hkl[inside])
        out.size_strain = _size_strain(fit, k, phase_state, q_l[inside], area[inside], settings)
        out.evidence_F = phase_evidence(fit, k)
        out.critical_F = critical_f(phase_state.n_theta + 1, fit.dof, settings.significance)
        if z > 0 and name not in markers:
            weights[name] = _phase_weight(out.scale, z, volume)
            if cov is not None:
                g = np.zeros(n_cov)
                g[fit.scale_index(k)] = z * volume
                g[sl.start:sl.start + n_p] = out.scale * z * d_volume
                weight_grads[name] = g
    total = sum(weights.values())
    for name, weight in weights.items():
        out = phases[name]
        out.fraction = weight / total if total > 0 else math.nan
        if cov is not None and total > 0 and len(weight_grads) == len(weights):
            grad = weight_grads[name] / total - weight * sum(weight_grads.values()) / total**2
            out.fraction_err = math.sqrt(max(float(grad @ cov @ grad), 0.0))
    for name, phase in candidates.items():
        if phases[name].present and (phase.z_formula_units <= 0 or name in markers):
            phases[name].fraction = math.nan
    q_u, snr = _unexplained(fit.pattern, fit, settings, traces, q_min)
    return PointResult(phases=phases, reduced_chi2=fit.reduced_chi2, unexplained_q_A=q_u, unexplained_snr=snr, fit=fit)


def _phase_weight(scale: float, z_formula_units: int, volume_A3: float) -> float:
    """A phase's formula units in the fit, up to one factor for all phases: its scale
    times Z V (Hill & Howard, J. Appl. Cryst. 20, 467 (1987), one molar mass)."""
    return scale * z_formula_units * volume_A3


def _sample_weights(fit: FitResult, candidates: dict[str, Phase], markers: Sequence[str] = ()) -> dict[str, float]:
    """:func:`_phase_weight` of each fitted sample phase (markers and phases without Z left out)."""
    out = {}
    for k, phase_state in enumerate(fit.phases):
        z = candidates[phase_state.name].z_formula_units
        if z > 0 and phase_state.name not in markers:
            out[phase_state.name] = _phase_weight(float(fit.scales[k]), z, phase_state.rcell.cell_and_jacobian()[2])
    return out


def _size_strain(fit: FitResult, k: int, phase_state: PhaseState, q_lines_A: np.ndarray, area: np.ndarray,
                 settings: IndexingSettings) -> WilliamsonHall:
    """Williamson-Hall size and microstrain of fitted phase ``k`` over its lines in the
    pattern at least ``min_intensity_percent`` of its strongest there, the instrument's
    width (``settings.caglioti``) taken out."""
    if not len(area) or not area.max() > 0:
        return NAN_RESULT
    strong = q_lines_A[area >= settings.min_intensity_percent / 100.0 * area.max()]
    cov = None
    if fit.covariance is not None:
        start = fit.phase_slices[k].start + len(phase_state.rcell.p)
        idx = [start, start + 1]   # w0, w1 (PhaseState.theta)
        cov = fit.covariance[np.ix_(idx, idx)]
    return williamson_hall(strong, phase_state.w0, phase_state.w1, fit.pattern.q_ref,
                           fit.pattern.wavelength_A, k=settings.scherrer_k, width_cov=cov,
                           instrument=settings.caglioti)


def _unexplained(pattern: Pattern, fit: FitResult, settings: IndexingSettings, traces: Sequence[PhaseState] = (),
                 q_min: float = 0.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The peaks of ``pattern`` (all its bins, also those the fit left out) that the
    fitted phases do not explain: residual peaks above ``min_snr`` (matched filter
    at the phases' median width) that stand at least :data:`UNEXPLAINED_SHARE`
    above the phases' model there, so that a small misfit of a strong line is
    not taken for a peak of its own."""
    phase_model, background = fit.evaluate(pattern.q)
    resid = pattern.y - phase_model - background
    widths = [p.w0 for p in fit.phases] or [DEFAULT_FWHM_Q_A]
    width = float(np.median(widths))
    # High-pass: the residual's trend over a few line widths is the background's misfit.
    dq = float(np.median(np.diff(pattern.q)))
    resid = resid - gaussian_filter1d(resid, UNEXPLAINED_HIGH_PASS_FWHM * width / dq / 2.3548, mode="nearest")
    q_u, snr = residual_peaks(pattern.q, resid, pattern.sigma, width, settings.min_snr)
    keep = []
    # The lines of a phase below the detection limit (those above a tenth of its
    # strongest) explain what they cover.
    trace_lines = []
    for t in traces:
        q_l, area = t.line_areas()
        if len(area):
            trace_lines.append((q_l[area >= 0.1 * area.max()], t.w0))
    # A peak on a line of a fitted phase, up to a few times the intensity the fixed
    # structure gives it there, is that line (texture, a Debye-Waller factor, grains):
    # explained. Measured on Pilatus frames of rock-salt HgTe: its 731/553 line at
    # 8.46 1/A, 0.8 % of the strongest in the model, stood out at 31 of 200 points.
    fitted_lines = []
    for p in fit.phases:
        q_l, area = p.line_areas()
        fitted_lines.append((q_l[area > 0], ON_LINE_FWHM * p.w0))
    for i, q in enumerate(q_u):
        if q < q_min or any(np.any(np.abs(lines - q) < w) for lines, w in trace_lines):
            continue
        j = int(np.argmin(np.abs(pattern.q - q)))
        window = slice(max(j - 2, 0), j + 3)
        model = float(np.mean(phase_model[window]))
        on_line = any(np.any(np.abs(lines - q) < w) for lines, w in fitted_lines)
        share = ON_LINE_EXCESS if on_line else UNEXPLAINED_SHARE
        if model <= 0 or float(np.mean(resid[window])) / model >= share:
            keep.append(i)
    return tuple(float(q_u[i]) for i in keep), tuple(float(snr[i]) for i in keep)


# --------------------------------------------------------------------------
# A series
# --------------------------------------------------------------------------


def fit_range(q_A: np.ndarray, settings: IndexingSettings, q_floor_A: float = 0.0) -> tuple[float, float]:
    """The q range (1/A) the fits use: the pattern's, within ``settings.q_range_A``;
    without a lower bound there, from ``q_floor_A`` up (the series' :func:`fit_q_min`).

    Below that floor no candidate has a line and no peak is reported: there lie
    the air scatter and the beamstop's edge, which the background only followed
    at a cost (on Pilatus 1M patterns from q = 0, each line profile evaluation
    took 3.5x longer and a single-phase point's fit twice as long as from the floor).
    """
    q = np.asarray(q_A, float)
    q = q[np.isfinite(q)]
    lo, hi = float(q.min()), float(q.max())
    user = settings.q_range_A or (None, None)
    return (max(lo, float(q_floor_A)) if user[0] is None else max(lo, float(user[0])),
            hi if user[1] is None else min(hi, float(user[1])))


def fit_q_min(search_q_min_A: float) -> float:
    """Where the fits start without ``indexing.q_range_A``: :data:`FIT_LOW_Q_MARGIN` of the
    candidates' lowest line (``search_q_min_A`` is :data:`LOW_Q_MARGIN` of it), leaving the
    background room below the lowest lines."""
    return search_q_min_A * FIT_LOW_Q_MARGIN / LOW_Q_MARGIN


def search_q_min(phases: dict[str, Phase], q_max_A: float) -> float:
    """Where the search for unexplained peaks starts: :data:`LOW_Q_MARGIN` times the
    lowest line any candidate has at its reference cell (compression only moves
    lines out). Below it lie the air scatter and the beamstop's edge, steeper than
    the smooth background follows: at 1e6 counts per bin their misfit would be
    taken for peaks (measured on Pilatus 1M frames: hundreds of false ones)."""
    lowest = [2.0 * math.pi / max(r.d_A for r in refl) for refl in
              ([r for r in reflections(phase, cell=phase.cell, d_min_A=2.0 * math.pi / q_max_A) if any(r.hkl)]
               for phase in phases.values()) if refl]
    return LOW_Q_MARGIN * min(lowest) if lowest else 0.0


def series_q_ref(q_range_A: tuple[float, float]) -> float:
    """The q about which every point's line widths vary: the middle of the fitted range."""
    return 0.5 * (q_range_A[0] + q_range_A[1])


def index_series(q_A: np.ndarray, intensity: np.ndarray, sigma: np.ndarray, wavelength_A: float,
                 pressure_GPa: np.ndarray, phases: dict[str, Phase], settings: IndexingSettings,
                 usable: Sequence[bool] | None = None, state: SeriesState | None = None,
                 markers: Sequence[str] = (), progress: Callable[[int, int], None] = lambda done, total: None
                 ) -> tuple[list[PointResult | None], list[str], SeriesState]:
    """Index every pattern in order; (results, reasons, final state). A point whose pattern
    is not usable gets None and its reason; ``state`` carries on a series from an earlier part."""
    state = state or SeriesState()
    # The fits solve many small least-squares problems (hundreds of rows, tens
    # of columns): a multi-threaded BLAS only spins on them (measured: QR of
    # 750 x 22 takes 0.47 ms on one thread, 48 ms on two busy cores).
    with threadpool_limits(limits=1, user_api="blas"):
        return _index_series(q_A, intensity, sigma, wavelength_A, pressure_GPa, phases, settings, usable, state,
                             markers, progress)


def _index_series(q_A, intensity, sigma, wavelength_A, pressure_GPa, phases, settings, usable, state, markers,
                  progress):
    results: list[PointResult | None] = []
    # The candidates' lowest lines: the same for every call of a series (a
    # watcher's updates, a caller going point by point), found once.
    q_max = fit_range(q_A, settings)[1]
    key = (tuple(phases), q_max)
    if state.search_q_min_for != key:
        state.search_q_min, state.search_q_min_for = search_q_min(phases, q_max), key
    q_range = state.fit_range_A = fit_range(q_A, settings, fit_q_min(state.search_q_min))
    q_ref = series_q_ref(q_range)
    reasons: list[str] = []
    n = len(intensity)
    for i in range(n):
        if usable is not None and not usable[i]:
            results.append(None)
            reasons.append("no XRD pattern")
            progress(i + 1, n)
            continue
        pattern = usable_pattern(q_A, intensity[i], sigma[i], wavelength_A, q_range, q_ref)
        if len(pattern.q) < 50:
            results.append(None)
            reasons.append(f"only {len(pattern.q)} usable bins in the XRD pattern")
            progress(i + 1, n)
            continue
        try:
            results.append(index_pattern(pattern, phases, state, float(pressure_GPa[i]), settings, markers))
            reasons.append("ok")
        except (InputError, np.linalg.LinAlgError, ValueError) as err:
            results.append(None)
            reasons.append(f"whole-pattern fit failed ({err})")
        progress(i + 1, n)
    return results, reasons, state
