"""Superlattice order from SAXS patterns: peaks, lattice, spacing, coherence length.

A powder of nanocrystals packed in a superlattice scatters, in the
decoupling approximation (Kotlarchyk & Chen, J. Chem. Phys. 79, 2461
(1983)) with the lattice factor of Förster et al., J. Phys. Chem. B 109,
1347 (2005), as

    I(q) = K [P(q) - gamma G(q) C(q) + G(q) C(q) Z(q)] + b,   C = (1 - nu) Pc + nu P

* ``P = <F^2> / <F^2>(0)``: the form factor of the particles, which falls by
  decades over the pattern, and ``Pc = <F>^2 / <F^2>(0)`` its coherent part
  (the two differ by the polydispersity; ``Pc`` has zeros, ``P`` minima);
  the Bragg peaks ride on ``Pc`` when every domain holds all sizes (``nu``
  = 0, the decoupling approximation), on ``P`` when each domain holds one
  size (``nu`` = 1, the local monodisperse approximation of Pedersen, J.
  Appl. Cryst. 27, 595 (1994)), ``nu`` fitted;
* ``G = exp(-q^2 sigma_u^2)``: the Debye-Waller factor of the particles'
  displacements about their sites; ``gamma``: how much of ``G C`` is
  missing between the Bragg peaks (1 for a lattice: the correlation hole
  below the first order, ``S = 1 - G C / P``; 0 where the peaks sit on
  ``S = 1``);
* ``Z = sum_k A_k (q_k / q)^n g(q; q_k, w_k)``: the Bragg peaks of the
  lattice factor, ``g`` a profile of height 1 (Gaussian, Lorentzian or
  pseudo-Voigt) and ``(q_k / q)^n`` the powder average of a broadened
  reciprocal-lattice point (n = 1 for a 3D lattice, 1/2 for columns, 0 for
  lamellae);
* the spheres are homogeneous, with a Gaussian distribution of radii.

The peaks are small bumps on a steep, curved envelope, and what they ride on
is not the envelope between them: the Bragg term is ``K G C Z``, the
envelope ``K (P - gamma G C) + b``. Below the first order of a lattice
``gamma G C`` is nearly ``P`` and the envelope is a deep, steeply rising
correlation hole, while ``C`` keeps falling: a peak fitted as a factor on
the envelope (``envelope x (1 + Gaussian)``, what this module did before)
comes out 0.5-1.2 % low in q on such patterns (the fcc series of
:mod:`dacpipe.synth.superlattice_series`, 83 -> 65 A), and a peak fitted as
symmetric in ``S`` another 0.2 % low (the ``1 / q`` of the powder average).
The measurement therefore fits the model above to the whole pattern.

1. **Detection.** SNIP clipping (:func:`dacpipe.xrd.peaks.estimate_background`)
   of ``ln I`` with a half-window of :data:`ENVELOPE_FWHM` widths of the
   strongest peak gives an envelope; on ``r = I / envelope``
   :func:`dacpipe.xrd.peaks.find_peaks` finds the candidates. Each group of
   candidates closer than :data:`GROUP_FWHM` widths is fitted in a window
   (:data:`WINDOW_FWHM` widths beyond its outer peaks) as
   ``exp(cubic in ln q) (1 + sum_k A_k g_k)``; a peak is kept when its fit
   converged inside its bounds, its amplitude is ``min_snr`` standard errors
   from zero and ``min_snr`` noise sigma high, at least
   ``min_relative_amplitude`` of the strongest, and its FWHM within
   :data:`WIDTH_RATIO` of the strongest's (a broader bump is the envelope).
2. **Form factor and free peaks** (:func:`fit_pattern_model`). The model is
   fitted to the whole pattern with every detected peak free (position,
   width, height): the radius from a grid search (where the form factor's
   minima and slope match), everything else by least squares. These
   positions are what the lattice is indexed on first.
2b. **Refinement from the lattice** (:func:`_refine_free`). That free fit
   can stop in a local minimum (weak lines and blends it never picked up
   pull the strong ones; phantom peaks). The best indexing's lattice is
   fitted (step 4), and a free fit is started from its lines (positions,
   the widths of its width law, held; its particles and ``sigma_u``); the
   peaks it pins (height :data:`LINE_SIGMA` standard errors from zero, or
   a line the detection saw) replace the survey's when this fit is no
   worse by an F-test (:func:`_refinement_holds`), and are indexed again.
   An ambiguous indexing is refined from its rival too, the lower chi^2
   kept. The peaks reported (and stored) are these.
3. **Indexing** (:func:`index_peaks`). For every lattice type and every
   assignment of the observed peaks to its lines (generated from each
   peak being each of the first lines, then every peak assigned to the
   nearest line), one first-order position ``q1`` is fitted to all assigned
   peaks; the assignment scores +1 per peak explained, -1 per peak left
   unexplained, -:data:`MISSING_PENALTY` per line that should have been seen
   and was not (weighted by how visible the model predicts it), and -1/9 per
   unit of chi^2 above its degrees of freedom (a peak 3 sigma off costs as
   much as an unexplained one). The first order is whatever makes the
   observed ratios consistent; it need not be the strongest peak, or be
   observed at all. Along a series (:mod:`dacpipe.saxs.stage`) a point whose
   best lattice is ambiguous takes the assignment that continues its
   neighbours.
4. **Lattice fit** (:func:`fit_lattice`). The model is fitted again with
   every line of the chosen lattice in the pattern at ``q1 x`` its ratio
   (a Pawley fit: heights free; Pawley, J. Appl. Cryst. 14, 357 (1981)),
   widths ``w_a + w_b (q / q1)^2`` (Scherrer plus paracrystalline
   broadening; Hosemann & Bagchi, *Direct Analysis of Diffraction by
   Matter*, 1962), unassigned peaks free. ``q1`` and its error come from
   this fit; ``d = 2 pi / q1``; the Scherrer length from the first-order
   width.

Each bin is modelled as the mean of the model over the bin (Simpson's rule,
weighted by q, the density of the pixels of a ring): pyFAI labels a bin with
its centre, and a model taken at the centre puts every line 1e-5 of its q
low on a 1e-3 1/A grid (measured).

When the model cannot be fitted (no convergence, the radius at its bounds),
the window positions are used, and ``q1`` is the weighted fit of the lattice
to them, with a note that they may be biased (up to ~1 % under a correlation
hole).
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy.linalg import get_lapack_funcs
from scipy.linalg import lstsq as scipy_lstsq
from scipy.optimize import least_squares, lsq_linear, nnls
from scipy.signal import find_peaks as _scipy_find_peaks
from scipy.signal import peak_widths, savgol_coeffs, savgol_filter
from scipy.stats import f as f_distribution
from scipy.stats import theilslopes
from threadpoolctl import threadpool_limits

from ..core.errors import ConfigError, InputError
from ..core.lsq import covariance, covariance_scale
from ..core.noise import difference_sigma
from ..core.profiles import height_derivatives, pseudo_voigt_height, unit_parts
from ..io.config import validate_section
from ..xrd import peaks as _peaks

__all__ = ["LATTICES", "LatticeFit", "LatticeHypothesis", "ParticleModel", "PatternSurvey", "SaxsPeak", "SaxsPeaks",
           "SuperlatticeResult", "SuperlatticeSettings", "ambiguity_note", "analyse_pattern", "assess",
           "carried_hypotheses", "find_superlattice_peaks",
           "fit_lattice", "fit_pattern_model", "index_peaks", "lattice_constants_nm", "lattice_lines",
           "measure_pattern", "scherrer_length_nm", "sphere_form_factors", "survey_pattern"]

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

ENVELOPE_FWHM = 1.5
"""SNIP half-window of the envelope of ``ln I``, in FWHM of the strongest
peak: wider windows cut into the curvature of the form factor and leave
broad humps in ``I / envelope`` (measured on data-sample: 1.5 leaves the
fewest)."""

WINDOW_FWHM = 3.0
"""A group's fit window reaches this many FWHM beyond its outer peaks."""

GROUP_FWHM = 3.0
"""Peaks closer than this many FWHM (the wider of the two) are fitted together."""

WIDTH_RATIO = (0.5, 2.5)
"""Candidates narrower or wider than these multiples of the strongest peak's
FWHM are not superlattice peaks: wider ones are features of the envelope
(form-factor maxima), narrower ones noise at the pattern's edge (the
domains that give the first order give the higher ones, no narrower)."""

ENVELOPE_DEGREE = 3
"""Degree of the polynomial in ln q of the window's log-envelope."""

MISSING_PENALTY = 0.5
"""Score lost by a lattice for each line it predicts where no peak is seen,
when nothing tells how visible the line should be (an unexplained peak
costs 1): a line can vanish at a zero of the form factor or merge into a
stronger neighbour."""

MODEL_MISSING_PENALTY = 1.0
"""The same, times the line's visibility, when the pattern model predicts
it: a line the model says stands many sigma high and that is not there is
as strong evidence against the lattice as a peak it cannot explain."""

CHI2_PENALTY = 1.0 / 9.0
"""Score lost per unit of the assignment's chi^2 above its degrees of
freedom: a peak 3 standard errors off its line costs as much as a peak left
unexplained."""

POSITION_FLOOR = 0.002
"""Relative error added in quadrature to every peak position in the
indexing: what the model does not describe (a line near a zero of the form
factor, an unresolved neighbour) moves a free peak by up to 0.2 % on the
hard synthetic series, far more than its statistical error."""

WINDOW_POSITION_FLOOR = 0.01
"""The same for positions from the window fits alone (no model): up to 1 %
off under a correlation hole."""

OFF_LINE_SIGMA = 5.0
"""A reported peak farther than this many standard errors (its own and q1's)
from its line of the fitted lattice gets a note: its free position is not
where the lattice that fits the whole pattern puts it, and its error does
not say so. On data-sample and the synthetic series the pulls stay within
2.7 but for data-sample's p004, where a free 220 on the form factor's zero
sits 1.4 % low at 9.8 standard errors, and a 531 at 5.9 of the series
without its first order."""

MATCH_SIGMA = 3.0
"""A peak is assigned to a line only within this many of its position errors
(:data:`POSITION_FLOOR` included)."""

WILSON_SCATTER = 0.5
"""How far (in ln) a line's height may stray from the powder law of its
lattice times the Debye-Waller factor (texture, the form factor's model near
its zeros, a pair of lines shared out): the lines' heights pin sigma_u^2
(:func:`_wilson_row`) only to this precision."""

AMBIGUITY_MARGIN = 1.0
"""A point's best assignment is ambiguous when another (another lattice, or
another first order) scores less than this below it: one peak's worth."""

VISIBLE_SNR = (4.0, 20.0)
"""A line the model predicts below the first of these multiples of
``min_snr`` may go unseen (weight 0 when missing), above the second it must
be seen (weight 1), linearly between. Weak lines among strong ones are found
less readily than their signal-to-noise ratio says: on the hard synthetic
series lines predicted at 6-8 times ``min_snr`` were missed."""

MIN_POINTS = 20
"""Fewer usable points cannot hold an envelope and a peak."""

PROFILES = ("gaussian", "pseudo-voigt", "lorentzian")

_ETA0 = {"gaussian": 0.0, "lorentzian": 1.0, "pseudo-voigt": 0.3}

_MAX_RATIO = 8.0  # lines tabulated up to this multiple of the first order's q
_FIRST_LINES = 8  # an observed peak may be any of this many first lines of a lattice


def _cubic_shells(allowed: Callable[[int, int, int], bool]) -> list[tuple[str, int, int]]:
    """(label, h^2 + k^2 + l^2, multiplicity) of the shells of a cubic lattice's reflections."""
    shells: dict[int, list] = {}
    n = int(math.ceil(_MAX_RATIO * 2)) + 1
    for h, k, l in itertools.product(range(-n, n + 1), repeat=3):
        s2 = h * h + k * k + l * l
        if s2 == 0 or not allowed(h, k, l):
            continue
        entry = shells.setdefault(s2, [set(), 0])
        entry[0].add(tuple(sorted((abs(h), abs(k), abs(l)), reverse=True)))
        entry[1] += 1
    first = min(shells)
    out = []
    for s2 in sorted(shells):
        if s2 > first * _MAX_RATIO**2:
            break
        labels, m = shells[s2]
        out.append(("/".join("".join(map(str, t)) for t in sorted(labels, reverse=True)), s2, m))
    return out


def _hexagonal_shells() -> list[tuple[str, int, int]]:
    """(label, h^2 + hk + k^2, multiplicity) of a 2D hexagonal lattice."""
    shells: dict[int, list] = {}
    n = int(math.ceil(_MAX_RATIO * 2)) + 1
    for h, k in itertools.product(range(-n, n + 1), repeat=2):
        s2 = h * h + h * k + k * k
        if s2 == 0:
            continue
        entry = shells.setdefault(s2, [set(), 0])
        if h >= 0 and k >= 0:
            entry[0].add((h, k))
        entry[1] += 1
    out = []
    for s2 in sorted(shells):
        if s2 > _MAX_RATIO**2:
            break
        labels, m = shells[s2]
        out.append(("/".join(f"{h}{k}" for h, k in sorted(labels, reverse=True) if h >= k), s2, m))
    return out


@dataclass(frozen=True)
class _Lines:
    """The powder lines of a lattice type: labels, q / q_first, multiplicities, dimension."""

    labels: tuple[str, ...]
    ratios: np.ndarray
    multiplicity: np.ndarray
    dimension: int

    @property
    def powder_exponent(self) -> float:
        """n of the ``(q_k / q)^n`` of the powder average: (dimension - 1) / 2."""
        return 0.5 * (self.dimension - 1)


def _make_lines(shells, dimension) -> _Lines:
    first = shells[0][1]
    return _Lines(tuple(label for label, _, _ in shells), np.array([math.sqrt(s2 / first) for _, s2, _ in shells]),
                  np.array([float(m) for _, _, m in shells]), dimension)


# q_hkl = 2 pi sqrt(h^2 + k^2 + l^2) / a with the reflection conditions of the
# lattice (fcc: h, k, l unmixed; bcc: h + k + l even); 2D hexagonal (columns):
# q_hk = 4 pi sqrt(h^2 + hk + k^2) / (sqrt(3) a); lamellar: q_00l = 2 pi l / d.
# Li, Senesi & Lee, Chem. Rev. 116, 11128 (2016); Förster et al. (2005).
_LINE_TABLES: dict[str, _Lines] = {
    "lamellar": _make_lines([(f"00{l}", l * l, 2) for l in range(1, int(_MAX_RATIO) + 1)], 1),
    "hexagonal": _make_lines(_hexagonal_shells(), 2),
    "sc": _make_lines(_cubic_shells(lambda h, k, l: True), 3),
    "bcc": _make_lines(_cubic_shells(lambda h, k, l: (h + k + l) % 2 == 0), 3),
    "fcc": _make_lines(_cubic_shells(lambda h, k, l: len({h % 2, k % 2, l % 2}) == 1), 3),
}

LATTICES: dict[str, tuple[tuple[str, float], ...]] = {
    name: tuple(zip(table.labels, (float(r) for r in table.ratios))) for name, table in _LINE_TABLES.items()}
"""Lattice name -> ((label, q / q_first), ...), up to 8 times the first
order. ``sc`` and ``bcc`` share their first six ratios (1 : sqrt 2 : sqrt 3
: 2 : sqrt 5 : sqrt 6); they differ first at sqrt 7, which a bcc has and a
simple cubic lattice lacks."""

DEFAULT_LATTICES = ("lamellar", "hexagonal", "bcc", "fcc")


def lattice_lines(lattice: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, int]:
    """Labels, ratios q / q_first, multiplicities and dimension of a lattice's powder lines."""
    table = _LINE_TABLES[lattice]
    return table.labels, table.ratios.copy(), table.multiplicity.copy(), table.dimension


# --------------------------------------------------------------------------
# Results and settings
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class SaxsPeak:
    """One superlattice peak, a peak of the structure factor.

    Attributes
    ----------
    q_A, q_err_A : float
        Position and its standard error (1/angstrom).
    fwhm_q_A, fwhm_err_q_A : float
        Full width at half maximum in q and its standard error (1/angstrom).
    amplitude, amplitude_err : float
        Height above the smooth part of the pattern relative to it, at the
        top of the peak (``S - 1`` for peaks on a flat ``S = 1``); the error
        from the window fits, NaN from the model (see :func:`_as_peak`).
    snr : float
        Height above the smooth part, in counts, over the noise there.
    """

    q_A: float
    q_err_A: float
    fwhm_q_A: float
    fwhm_err_q_A: float
    amplitude: float
    amplitude_err: float
    snr: float

    @property
    def d_spacing_A(self) -> float:
        """Bragg spacing ``2 pi / q`` (angstrom)."""
        return 2.0 * math.pi / self.q_A

    @property
    def d_spacing_err_A(self) -> float:
        """Standard error of the spacing, ``2 pi sigma_q / q^2`` (angstrom)."""
        return 2.0 * math.pi * self.q_err_A / self.q_A**2


@dataclass(frozen=True)
class SaxsPeaks:
    """The superlattice peaks of one pattern, from the window fits.

    Attributes
    ----------
    peaks : tuple of SaxsPeak
        By increasing q.
    strongest : int
        Index in ``peaks`` of the peak highest above the envelope at
        detection; -1 when there is no peak. It need not be the first order.
    """

    peaks: tuple[SaxsPeak, ...]
    strongest: int


@dataclass(frozen=True)
class ParticleModel:
    """The smooth part of a pattern and what its Bragg peaks ride on (see the module docstring).

    Attributes
    ----------
    scale : float
        ``K``, the intensity of ``P`` at q = 0.
    radius_A, polydispersity : float
        Mean radius (angstrom) and relative standard deviation of the
        Gaussian distribution of radii.
    displacement_A : float
        ``sigma_u`` of the Debye-Waller factor (angstrom).
    hole : float
        ``gamma``: 1 for the correlation hole of a lattice, 0 for peaks on
        ``S = 1``.
    monodisperse_fraction : float
        ``nu``: the peaks ride on ``C = (1 - nu) Pc + nu P``; 0 is the
        decoupling approximation (every domain holds all sizes; Kotlarchyk &
        Chen 1983), 1 the local monodisperse approximation (each domain one
        size; Pedersen, J. Appl. Cryst. 27, 595 (1994)).
    background : float
        The flat ``b``.
    powder_exponent : float
        ``n`` of the lines' ``(q_k / q)^n`` (see the module docstring).
    reduced_chi2 : float
        Of the fit the model comes from.
    """

    scale: float
    radius_A: float
    polydispersity: float
    displacement_A: float
    hole: float
    monodisperse_fraction: float
    background: float
    powder_exponent: float
    reduced_chi2: float

    def _parts(self, q_A, debye_waller: bool = True):
        q = np.asarray(q_A, dtype=float)
        form, coherent = sphere_form_factors(q, self.radius_A, self.polydispersity)
        nu = self.monodisperse_fraction
        dw = np.exp(-(q * self.displacement_A) ** 2) if debye_waller else 1.0
        return form, dw * ((1.0 - nu) * coherent + nu * form)

    def coherent(self, q_A, debye_waller: bool = True) -> np.ndarray:
        """``K G C``: what a Bragg peak of height 1 in Z adds at its top (``K C``
        without the Debye-Waller factor)."""
        return self.scale * self._parts(q_A, debye_waller)[1]

    def smooth(self, q_A) -> np.ndarray:
        """``K (P - gamma G C) + b``: the pattern without its Bragg peaks."""
        form, carrier = self._parts(q_A)
        return self.scale * (form - self.hole * carrier) + self.background


@dataclass(frozen=True)
class LatticeHypothesis:
    """One indexing of the observed peaks: a lattice, its first order and the line of every peak.

    Attributes
    ----------
    lattice : str
        A key of :data:`LATTICES`.
    q1_A, q1_err_A : float
        First-order position (1/angstrom) fitted to the assigned peaks, and
        its error (from the positions' errors with :data:`POSITION_FLOOR`).
    lines : tuple of int
        Per observed peak (by increasing q), the index of its line in the
        lattice's table, -1 when it has none.
    hkl : tuple of str
        The same as labels, ``""`` for none.
    n_explained, n_unexplained : int
    missing : float
        Lines that should have been seen and were not, each weighted by its
        predicted visibility (0 to 1).
    chi2 : float
        Of the assigned positions about ``q1`` times their ratios.
    score : float
        The credit of the explained peaks (1 each, less the chance of a line
        of this lattice in its window) ``- n_unexplained - penalty missing -
        CHI2_PENALTY max(0, chi2 - dof)``.
    blends : tuple of int
        Per peak, the other line of the unresolved pair it is (-1: none);
        such a peak is explained but not in the fit of ``q1``.
    """

    lattice: str
    q1_A: float
    q1_err_A: float
    lines: tuple[int, ...]
    hkl: tuple[str, ...]
    n_explained: int
    n_unexplained: int
    missing: float
    chi2: float
    score: float
    blends: tuple[int, ...] = ()

    @property
    def consistent(self) -> bool:
        """At least two peaks explained, twice as many as left unexplained, and more evidence
        for than against (a positive score: a dense lattice explains any few peaks by chance, and
        pays for it in lines it predicts unseen)."""
        return self.n_explained >= 2 and self.n_explained >= 2 * self.n_unexplained and self.score > 0

    @property
    def d_A(self) -> float:
        """First-order spacing ``2 pi / q1`` (angstrom)."""
        return 2.0 * math.pi / self.q1_A


@dataclass(frozen=True, eq=False)
class PatternSurvey:
    """What one pattern shows before its lattice is chosen (:func:`survey_pattern`).

    Attributes
    ----------
    q_A, intensity, sigma : ndarray
        The usable points analysed; ``sigma`` estimated when not given.
    sigma_given : bool
    peaks : tuple of SaxsPeak
        The observed peaks, by increasing q: from the model fit when there
        is one, else from the window fits.
    model : ParticleModel or None
        The smooth part, None when the model could not be fitted.
    hypotheses : tuple of LatticeHypothesis
        Every indexing considered, best first.
    notes : tuple of str
        Warnings for the point's status.
    """

    q_A: np.ndarray
    intensity: np.ndarray
    sigma: np.ndarray
    sigma_given: bool
    peaks: tuple[SaxsPeak, ...]
    model: ParticleModel | None
    hypotheses: tuple[LatticeHypothesis, ...]
    notes: tuple[str, ...] = ()
    free_parameters: np.ndarray | None = None

    @property
    def best(self) -> LatticeHypothesis | None:
        """The best consistent hypothesis, None when none is consistent."""
        good = [h for h in self.hypotheses if h.consistent]
        return good[0] if good else None


@dataclass(frozen=True, eq=False)
class SuperlatticeResult:
    """Everything :func:`analyse_pattern` measures on one SAXS pattern.

    Attributes
    ----------
    peaks : tuple of SaxsPeak
        The observed peaks, by increasing q.
    hkl : tuple of str
        Per peak, its line under ``order`` (``""``: none).
    order : str
        The lattice type, ``"unknown"`` when no lattice explains the peaks.
    hypothesis : LatticeHypothesis or None
        The indexing chosen.
    hypotheses : tuple of LatticeHypothesis
        All considered, best first.
    q1_A, q1_err_A, d_A, d_err_A : float
        First-order position and spacing ``2 pi / q1`` from the lattice fit,
        with errors; NaN when the order is unknown.
    fwhm_q_A, fwhm_q_err_A : float
        FWHM of the first-order line (from the lattice fit).
    scherrer_nm, scherrer_err_nm : float
        Scherrer coherence length from it; NaN when the line is not broader
        than the instrument.
    lattice_constant_nm, lattice_constant_err_nm, nn_distance_nm : float
        From ``q1`` and ``order`` (:func:`lattice_constants_nm`).
    model : ParticleModel or None
    notes : tuple of str
        Warnings for the point's status (empty: nothing to report).
    """

    peaks: tuple[SaxsPeak, ...]
    hkl: tuple[str, ...]
    order: str
    hypothesis: LatticeHypothesis | None
    hypotheses: tuple[LatticeHypothesis, ...]
    q1_A: float
    q1_err_A: float
    d_A: float
    d_err_A: float
    fwhm_q_A: float
    fwhm_q_err_A: float
    scherrer_nm: float
    scherrer_err_nm: float
    lattice_constant_nm: float
    lattice_constant_err_nm: float
    nn_distance_nm: float
    model: ParticleModel | None = None
    notes: tuple[str, ...] = ()

    @property
    def first(self) -> SaxsPeak | None:
        """The observed peak indexed as the first order; None when it was not observed."""
        if self.hypothesis is None:
            return None
        for peak, line in zip(self.peaks, self.hypothesis.lines):
            if line == 0:
                return peak
        return None


@dataclass(frozen=True)
class SuperlatticeSettings:
    """The ``superlattice:`` section of a run (see config/schema.yaml).

    Attributes
    ----------
    scherrer_k : float
        Scherrer constant K (0.89: Gaussian-shaped line, spherical domains,
        FWHM; Langford & Wilson, J. Appl. Cryst. 11, 102 (1978)).
    instrument_fwhm_deg : float
        Instrumental FWHM in 2theta (degrees) at the first peak, taken out
        in quadrature.
    min_snr : float
        Peaks lower than this many noise sigma are not kept.
    min_relative_amplitude : float
        Peaks whose amplitude is below this share of the strongest are not
        kept (the envelope's wiggles stand many sigma above the noise on a
        well-exposed pattern, but are small against the Bragg peaks).
    tolerance_rel : float
        An observed peak matches a lattice's line within this relative
        distance.
    lattices : tuple of str
        The lattice types considered (keys of :data:`LATTICES`); on a tie the
        first listed wins.
    profile : str
        Peak shape: ``gaussian``, ``pseudo-voigt`` (one eta per group, one
        for the whole pattern in the model fits) or ``lorentzian``.
    envelope_width_A : float or None
        SNIP half-window of the envelope (1/angstrom); None = ENVELOPE_FWHM
        times the FWHM of the strongest peak.
    q_min_A, q_max_A : float or None
        Only this q range is analysed (beamstop edge, noisy corners).
    """

    scherrer_k: float
    instrument_fwhm_deg: float
    min_snr: float
    min_relative_amplitude: float
    tolerance_rel: float
    lattices: tuple[str, ...]
    profile: str
    envelope_width_A: float | None
    q_min_A: float | None
    q_max_A: float | None

    def __post_init__(self):
        unknown = [name for name in self.lattices if name not in LATTICES]
        if unknown:
            raise ConfigError(f"superlattice.lattices: unknown {', '.join(unknown)} (known: {', '.join(LATTICES)})")
        if self.profile not in PROFILES:
            raise ConfigError(f"superlattice.profile: {self.profile!r} is not one of {', '.join(PROFILES)}")

    @classmethod
    def from_config(cls, section: Mapping | None) -> SuperlatticeSettings:
        """Settings from a run's ``superlattice`` section; what it leaves out
        comes from the schema's defaults."""
        section = validate_section("superlattice", dict(section or {}))
        return cls(**{**section, "lattices": tuple(section["lattices"])})


# --------------------------------------------------------------------------
# Formulas
# --------------------------------------------------------------------------


def scherrer_length_nm(q_A: float, fwhm_q_A: float, wavelength_A: float, *, k: float = 0.89,
                       instrument_fwhm_deg: float = 0.0, fwhm_err_q_A: float = math.nan) -> tuple[float, float]:
    """Scherrer coherence length (nm) of a peak, and its standard error.

    ``D = K lambda / (B cos theta)`` (Scherrer, Nachr. Ges. Wiss. Göttingen
    1918, 98; Patterson, Phys. Rev. 56, 978 (1939)) with ``B`` the FWHM in
    2theta (radians): the edges ``q +- FWHM_q / 2`` are converted to 2theta
    exactly, ``2 theta = 2 asin(q lambda / 4 pi)``. An instrumental width
    ``B_i`` is taken out in quadrature, ``B^2 - B_i^2``, as for Gaussian
    profiles (Langford & Wilson, J. Appl. Cryst. 11, 102 (1978)).

    Since ``dq = (2 pi / lambda) cos theta d(2 theta)``, to first order in the
    width ``D = 2 pi K / FWHM_q``, independent of theta and lambda; for SAXS
    widths the two differ by less than 1e-5 relative.

    Parameters
    ----------
    q_A, fwhm_q_A : float
        Peak position and FWHM in q (1/angstrom).
    wavelength_A : float
        X-ray wavelength (angstrom).
    k : float
        Scherrer constant.
    instrument_fwhm_deg : float
        Instrumental FWHM in 2theta (degrees) at this peak.
    fwhm_err_q_A : float
        Standard error of ``fwhm_q_A``, propagated linearly.

    Returns
    -------
    (float, float)
        ``D`` and its standard error (nm); NaN when the width is not finite,
        not positive, or not larger than the instrument's.
    """
    if not (math.isfinite(fwhm_q_A) and fwhm_q_A > 0 and math.isfinite(q_A) and q_A > 0):
        return math.nan, math.nan
    scale = wavelength_A / (4.0 * math.pi)
    lo, hi = (q_A - 0.5 * fwhm_q_A) * scale, (q_A + 0.5 * fwhm_q_A) * scale
    if lo < 0 or hi >= 1 or q_A * scale >= 1:
        return math.nan, math.nan
    b = 2.0 * (math.asin(hi) - math.asin(lo))
    b_i = math.radians(instrument_fwhm_deg)
    if b <= b_i:
        return math.nan, math.nan
    b_s = math.sqrt(b * b - b_i * b_i)
    cos_theta = math.cos(math.asin(q_A * scale))
    size_A = k * wavelength_A / (b_s * cos_theta)
    # dB/dFWHM_q: half the slope of 2theta(q) at either edge, summed.
    db = 0.5 * 2.0 * scale * (1.0 / math.sqrt(1 - hi * hi) + 1.0 / math.sqrt(1 - lo * lo))
    err_A = size_A * b / (b_s * b_s) * db * fwhm_err_q_A
    return size_A / 10.0, err_A / 10.0


def lattice_constants_nm(order: str, q1_A: float, q1_err_A: float = math.nan) -> tuple[float, float, float]:
    """Lattice constant, its error and nearest-neighbour distance (nm) from the first peak.

    With ``d1 = 2 pi / q1`` the spacing of the first line: fcc (111):
    ``a = sqrt(3) d1``, nearest neighbours ``a / sqrt(2)``; bcc (110):
    ``a = sqrt(2) d1``, ``a sqrt(3) / 2``; simple cubic (100): ``a = d1``,
    ``a``; 2D hexagonal (10): ``a = 2 d1 / sqrt(3)``, ``a`` (the distance
    between columns); lamellar: the period ``d1``, nearest neighbours NaN
    (not defined by the stacking). NaN for ``"unknown"``.
    """
    if not (math.isfinite(q1_A) and q1_A > 0):
        return math.nan, math.nan, math.nan
    d1_nm = 2.0 * math.pi / q1_A / 10.0
    factors = {"fcc": (math.sqrt(3.0), 1.0 / math.sqrt(2.0)), "bcc": (math.sqrt(2.0), math.sqrt(3.0) / 2.0),
               "sc": (1.0, 1.0), "hexagonal": (2.0 / math.sqrt(3.0), 1.0), "lamellar": (1.0, math.nan)}
    if order not in factors:
        return math.nan, math.nan, math.nan
    to_a, to_nn = factors[order]
    a = to_a * d1_nm
    return a, a * q1_err_A / q1_A, a * to_nn


def _sphere_amplitude(x: np.ndarray, sin: np.ndarray | None = None, cos: np.ndarray | None = None,
                      slope: bool = False):
    """``f = 3 (sin x - x cos x) / x^3``, 1 at x = 0 (its series ``1 - x^2 / 10`` below x = 1e-2,
    where the difference loses digits); with ``slope``, also ``f' = 3 sin x / x^2 - 3 f / x``
    (series ``-x / 5 + x^3 / 70``). ``sin`` and ``cos`` of ``x`` may be given."""
    sin = np.sin(x) if sin is None else sin
    cos = np.cos(x) if cos is None else cos
    small = x < 1e-2
    if small.any():
        safe = np.where(small, 1.0, x)
        f = np.where(small, 1.0 - x * x / 10.0, 3.0 * (sin - safe * cos) / safe**3)
        if not slope:
            return f
        return f, np.where(small, x * (x * x / 70.0 - 0.2), 3.0 * (sin / safe - f) / safe)
    f = 3.0 * (sin - x * cos) / (x * x * x)
    if not slope:
        return f
    return f, 3.0 * (sin / x - f) / x


@functools.lru_cache(maxsize=64)
def _gauss_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """n equally spaced nodes over +-4 standard deviations and their normalised Gaussian weights."""
    z = np.linspace(-4.0, 4.0, n)
    weights = np.exp(-0.5 * z * z)
    weights /= weights.sum()
    z.flags.writeable = weights.flags.writeable = False
    return z, weights


def _size_nodes(q: np.ndarray, radius_A: float, polydispersity: float):
    """Nodes z (in standard deviations), weights and relative radii of the size average."""
    qmax = float(np.max(q)) if q.size else 0.0
    n = max(41, int(math.ceil(8.0 * qmax * radius_A * polydispersity / 0.15)) | 1)
    z, weights = _gauss_nodes(n)
    return z, weights, 1.0 + polydispersity * z


def _sin_cos(q: np.ndarray, radius_A: float, polydispersity: float, z: np.ndarray, rel: np.ndarray):
    """``x = q r`` on the nodes of the size average, and its sine and cosine.

    The nodes are equally spaced in r, so along each row x is an arithmetic
    progression: ``exp(i x)`` is its first term times powers of one complex
    step (a running product; rounding grows by ~1e-16 per node, 1e-14 over
    the longest rows), four times cheaper than the sine and cosine of every
    node (the model and its grid search take thousands of size averages).
    """
    x = np.multiply.outer(q, radius_A * rel)
    if z.size < 2 or not np.all(rel > 0):
        return np.abs(x), np.sin(np.abs(x)), np.cos(np.abs(x))
    phase = np.empty(x.shape, dtype=complex)
    phase[:, 0] = np.exp(1j * x[:, 0])
    phase[:, 1:] = np.exp(1j * (q * (radius_A * polydispersity * (z[1] - z[0]))))[:, None]
    np.cumprod(phase, axis=1, out=phase)
    return x, phase.imag, phase.real


def _sphere_averages(q_A, radius_A: float, polydispersity: float, derivatives: bool = False):
    """``P``, ``Pc`` (see :func:`sphere_form_factors`) and, with ``derivatives``, their
    derivatives by the radius and by the polydispersity (analytic: the amplitude's
    ``f'(x)`` on the same nodes, the node count held)."""
    q = np.abs(np.asarray(q_A, dtype=float))
    shape = q.shape
    q = q.reshape(-1)
    z, weights, rel = _size_nodes(q, radius_A, polydispersity)
    x, sin, cos = _sin_cos(q, radius_A, polydispersity, z, rel)
    volume = rel**3
    norm = float((volume * volume) @ weights)
    if not derivatives:
        amp = _sphere_amplitude(x, sin, cos) * volume
        mean_f = amp @ weights
        return ((amp * amp) @ weights / norm).reshape(shape), (mean_f * mean_f / norm).reshape(shape)
    f, slope = _sphere_amplitude(x, sin, cos, slope=True)
    amp = f * volume
    mean_f = amp @ weights
    form = (amp * amp) @ weights / norm
    coherent = mean_f * mean_f / norm
    # amp = f(q r) rel^3 with r = R rel, rel = 1 + p z: d amp / dR = f' x rel^3 / R,
    # d amp / dp = z rel^2 (f' x + 3 f); the norm <rel^6> depends on p alone.
    fx = slope * x
    by_radius = fx * (volume / radius_A)
    by_poly = (fx + 3.0 * f) * (rel * rel * z)
    d_norm = float((6.0 * volume * rel * rel * z) @ weights)
    d_form_r = 2.0 * (amp * by_radius) @ weights / norm
    d_coherent_r = 2.0 * mean_f * (by_radius @ weights) / norm
    d_form_p = (2.0 * (amp * by_poly) @ weights - form * d_norm) / norm
    d_coherent_p = (2.0 * mean_f * (by_poly @ weights) - coherent * d_norm) / norm
    return tuple(v.reshape(shape) for v in (form, coherent, d_form_r, d_coherent_r, d_form_p, d_coherent_p))


def sphere_form_factors(q_A, radius_A: float, polydispersity: float) -> tuple[np.ndarray, np.ndarray]:
    """Form factor ``P = <F^2>/<F^2>(0)`` and its coherent part ``Pc = <F>^2/<F^2>(0)``.

    Homogeneous spheres, ``F = V 3 (sin x - x cos x) / x^3`` with ``x = q r``
    (Rayleigh 1911; Guinier & Fournet, *Small-Angle Scattering of X-rays*,
    1955), averaged over a Gaussian number distribution of radii of
    relative standard deviation ``polydispersity`` (cut at +-4 sigma; at
    least 41 nodes, one per 0.15 rad of ``q r`` across the distribution).
    ``Pc / P`` is the ``beta`` of the decoupling approximation (Kotlarchyk
    & Chen, J. Chem. Phys. 79, 2461 (1983)): 1 for equal spheres.
    """
    return _sphere_averages(q_A, radius_A, polydispersity)


# --------------------------------------------------------------------------
# Detection: window fits on the envelope
# --------------------------------------------------------------------------


@dataclass
class _Cand:
    """A peak being fitted: centre, FWHM, amplitude; errors, eta and snr once fitted."""

    c: float
    w: float
    a: float
    eta: float = 0.0
    c_err: float = math.nan
    w_err: float = math.nan
    a_err: float = math.nan
    snr: float = math.nan


def _fit_group(x, y, s, group: list[_Cand], others: np.ndarray, profile: str, dx: float, sigma_given: bool):
    """Fit one group in its window.

    The model is ``exp(poly(u)) (1 + sum_k a_k g_k(x)) others``, ``u`` the
    window's ln q scaled to [-1, 1], ``others`` the fixed factor of the other
    groups' peaks. Returns the fitted candidates in the order of ``group``
    and per peak whether it failed (a parameter at its bound, an amplitude
    not determined, a position error larger than the width), or None when
    the window is too short for the model.
    """
    k = len(group)
    eta_free = profile == "pseudo-voigt"
    eta0 = _ETA0[profile]
    lnq = np.log(x)
    mid, half = 0.5 * (lnq[0] + lnq[-1]), max(0.5 * (lnq[-1] - lnq[0]), 1e-12)
    u = (lnq - mid) / half
    degree = min(ENVELOPE_DEGREE, len(x) - 3 * k - (1 if eta_free else 0) - 5)
    if degree < 1:
        return None
    nb = degree + 1
    j0 = nb + (1 if eta_free else 0)
    powers = u[None, :] ** np.arange(nb)[:, None]
    inv_s = 1.0 / s

    def unpack(p):
        return p[:nb], (p[nb] if eta_free else eta0), p[j0:].reshape(k, 3)

    last: dict = {}

    def parts(p):
        # least_squares asks for the Jacobian where it has just evaluated the residual: kept once.
        key = p.tobytes()
        if last.get("key") != key:
            b, eta, pk = unpack(p)
            c, w, a = pk[:, 0:1], pk[:, 1:2], pk[:, 2:3]
            v, lor, gau = unit_parts(x[None, :], c, w)
            g = eta * lor + (1.0 - eta) * gau
            base = np.exp(b @ powers) * others  # envelope times the other groups
            last.update(key=key, value=(b, eta, c, w, a, v, lor, gau, g, base))
        return last["value"]

    def fun(p):
        *_, a, _v, _l, _g, g, base = parts(p)
        return (base * (1.0 + (a * g).sum(axis=0)) - y) * inv_s

    def jac(p):
        _b, eta, c, w, a, v, lor, gau, g, base = parts(p)
        m = base * (1.0 + (a * g).sum(axis=0))
        J = np.empty((len(x), len(p)))
        J[:, :nb] = (m * inv_s)[:, None] * powers.T
        if eta_free:
            J[:, nb] = base * (a * (lor - gau)).sum(axis=0) * inv_s
        dg_dc, dg_dw, _ = height_derivatives(v, lor, gau, eta, w)
        scale = base * inv_s
        J[:, j0::3] = (a * dg_dc * scale).T
        J[:, j0 + 1::3] = (a * dg_dw * scale).T
        J[:, j0 + 2::3] = (g * scale).T
        return J

    start = 1.0 + sum(g.a * pseudo_voigt_height(x, g.c, g.w, eta0) for g in group)
    b0 = np.polyfit(u, np.log(np.clip(y / (start * others), 1e-300, None)), degree)[::-1]
    p0 = list(b0) + ([eta0] if eta_free else [])
    lb = [-np.inf] * nb + ([0.0] if eta_free else [])
    ub = [np.inf] * nb + ([1.0] if eta_free else [])
    for g in group:
        wl, wh = max(0.25 * g.w, 0.5 * dx), 4.0 * g.w
        lb += [g.c - 0.75 * g.w, wl, 0.0]
        ub += [g.c + 0.75 * g.w, wh, np.inf]
        p0 += [g.c, float(np.clip(g.w, wl * 1.01, wh * 0.99)), max(g.a, 1e-6)]
    p0, lb, ub = np.array(p0), np.array(lb), np.array(ub)
    with np.errstate(all="ignore"):
        res = least_squares(fun, np.clip(p0, lb, ub), jac=jac, bounds=(lb, ub), x_scale="jac", method="trf",
                            max_nfev=200)
    p = res.x
    b, eta, pk = unpack(p)
    chi2 = float(np.sum(res.fun**2)) / max(len(x) - len(p), 1)
    span = ub - lb
    at_bound = np.isfinite(span) & ((p - lb < 1e-6 * span) | (ub - p < 1e-6 * span))
    at_bound[j0 + 2::3] |= pk[:, 2] <= 0
    err = np.full(len(p), np.nan)
    free = ~at_bound
    with np.errstate(all="ignore"):
        cov = covariance(jac(p)[:, free], rcond=1e-10)
    if cov is not None:
        err[free] = np.sqrt(np.diag(cov) * covariance_scale(chi2, sigma_given))
    envelope = np.exp(b @ powers[:nb]) * others
    fitted, failed = [], []
    for i, (c, w, a) in enumerate(pk):
        ce, we, ae = err[j0 + 3 * i: j0 + 3 * i + 3]
        bad = bool(np.any(at_bound[j0 + 3 * i: j0 + 3 * i + 3])) or not (np.isfinite(ce) and ce < w and ae < a)
        at = int(np.clip(np.searchsorted(x, c), 0, len(x) - 1))
        fitted.append(_Cand(float(c), float(w), float(a), float(eta), float(ce), float(we), float(ae),
                            float(a * envelope[at] / s[at])))
        failed.append(bad)
    return fitted, failed


def _groups(cands: list[_Cand]) -> list[list[_Cand]]:
    """Runs of candidates whose neighbours are closer than GROUP_FWHM widths."""
    groups: list[list[_Cand]] = []
    for g in sorted(cands, key=lambda g: g.c):
        if groups and g.c - groups[-1][-1].c < GROUP_FWHM * max(g.w, groups[-1][-1].w):
            groups[-1].append(g)
        else:
            groups.append([g])
    return groups


def _fit_all(q, y, s, cands: list[_Cand], profile: str, dx: float, sigma_given: bool,
             accept: Callable[[_Cand], bool]) -> list[_Cand]:
    """Window fits of all groups (see the module docstring).

    A group with a peak that fails (:func:`_fit_group`) or is not accepted
    (too weak, too narrow or too wide) loses the weakest such peak (by the
    amplitude it started from: a wiggle of the envelope rather than a Bragg
    peak), and the rest is grouped and fitted again: a wrong peak in a
    window pulls its neighbours. A group whose window is too short for the
    model is dropped. The other groups' peaks enter each window as fixed
    factors, at their latest values.
    """
    current = {id(g): g for g in cands}  # latest values of every peak, for the other groups' factors
    work = _groups(cands)
    kept: list[_Cand] = []
    while work:
        group = work.pop(0)
        m = (q >= group[0].c - WINDOW_FWHM * group[0].w) & (q <= group[-1].c + WINDOW_FWHM * group[-1].w)
        x = q[m]
        own = {id(g) for g in group}
        others = np.ones_like(x)
        for key, g in current.items():
            if key not in own:
                others += g.a * pseudo_voigt_height(x, g.c, g.w, g.eta)
        fit = _fit_group(x, y[m], s[m], group, others, profile, dx, sigma_given)
        if fit is None:
            for g in group:
                current.pop(id(g), None)
            continue
        fitted, failed = fit
        failed = [bad or not accept(g) for g, bad in zip(fitted, failed)]
        if not any(failed):
            for old, new in zip(group, fitted):
                current.pop(id(old), None)
                current[id(new)] = new
            kept.extend(fitted)
            continue
        worst = min((i for i, bad in enumerate(failed) if bad), key=lambda i: group[i].a)
        current.pop(id(group[worst]), None)
        work = _groups(group[:worst] + group[worst + 1:]) + work
    return sorted(kept, key=lambda g: g.c)


def _noise_sigma(y) -> np.ndarray:
    """Noise of ``y`` when no sigma is given: the relative noise of ln y
    (:func:`dacpipe.core.noise.difference_sigma` of ln y, second differences,
    which cancel the smooth form factor) times y: photon noise is relative."""
    rel = difference_sigma(np.log(y), order=2)
    return max(rel if math.isfinite(rel) else 0.0, 1e-6) * y


def _strongest_fwhm(q, r) -> float:
    """FWHM of the highest maximum of ``r`` (a first look, before any fit)."""
    smooth = savgol_filter(r, 5, 2) if len(r) > 7 else r
    idx, _ = _scipy_find_peaks(smooth)
    if not len(idx):
        return 0.05 * (q[-1] - q[0])
    top = idx[int(np.argmax(smooth[idx]))]
    width_pts = peak_widths(smooth, [top], rel_height=0.5)[0][0]
    return float(max(width_pts, 2.0) * np.median(np.diff(q)))



@dataclass(frozen=True)
class _Pattern:
    q: np.ndarray
    y: np.ndarray
    s: np.ndarray
    given: bool


def _usable(q_A, intensity, sigma, q_min_A, q_max_A) -> _Pattern:
    """The finite, positive, in-range points; sigma estimated when not given."""
    q = np.asarray(q_A, dtype=float)
    y = np.asarray(intensity, dtype=float)
    if q.shape != y.shape or q.ndim != 1:
        raise InputError(f"q and intensity differ in shape ({q.shape} and {y.shape})")
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(q) & np.isfinite(y) & (y > 0)
        if q_min_A is not None:
            ok &= q >= q_min_A
        if q_max_A is not None:
            ok &= q <= q_max_A
        if sigma is not None:
            s_all = np.asarray(sigma, dtype=float)
            if s_all.shape != q.shape:
                raise InputError(f"sigma and q differ in shape ({s_all.shape} and {q.shape})")
            ok &= np.isfinite(s_all) & (s_all > 0)
    n = int(ok.sum())
    if n < MIN_POINTS:
        raise InputError(f"only {n} usable points in the SAXS pattern (at least {MIN_POINTS} needed)")
    q, y = q[ok], y[ok]
    if np.any(np.diff(q) <= 0):
        raise InputError("q is not strictly increasing")
    s = s_all[ok] if sigma is not None else _noise_sigma(y)
    return _Pattern(q, y, s, sigma is not None)


def find_superlattice_peaks(q_A, intensity, sigma=None, *, min_snr: float = 5.0,
                            min_relative_amplitude: float = 0.05, profile: str = "gaussian",
                            envelope_width_A: float | None = None, q_min_A: float | None = None,
                            q_max_A: float | None = None) -> SaxsPeaks:
    """The superlattice peaks of one SAXS pattern, from the window fits (step 1 of the module docstring).

    Parameters
    ----------
    q_A, intensity : array_like
        The pattern, q (1/angstrom) increasing. Points that are NaN or not
        positive are left out.
    sigma : array_like, optional
        Standard errors of ``intensity``; estimated from the scatter of
        ``ln I`` when not given.
    min_snr, min_relative_amplitude, profile, envelope_width_A, q_min_A, q_max_A
        See :class:`SuperlatticeSettings`.

    Returns
    -------
    SaxsPeaks
        The peaks by increasing q, and which is the strongest; no peaks when
        nothing stands out. Their positions are those of the envelope model
        (see the module docstring for its bias).

    Raises
    ------
    InputError
        Fewer than :data:`MIN_POINTS` usable points.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
    pattern = _usable(q_A, intensity, sigma, q_min_A, q_max_A)
    return _window_peaks(pattern, min_snr=min_snr, min_relative_amplitude=min_relative_amplitude,
                         profile=profile, envelope_width_A=envelope_width_A)


def _window_peaks(pattern: _Pattern, *, min_snr: float, min_relative_amplitude: float, profile: str,
                  envelope_width_A: float | None) -> SaxsPeaks:
    q, y, s = pattern.q, pattern.y, pattern.s
    dx = float(np.median(np.diff(q)))
    none = SaxsPeaks((), -1)

    # The envelope of ln I (SNIP); the candidates on I / envelope (dacpipe.xrd.peaks.find_peaks),
    # their heights, and the strongest one's width, read off the smoothed ratio.
    if envelope_width_A is None:
        first_look = np.exp(_peaks.estimate_background(q, np.log(y), width=0.05 * (q[-1] - q[0])))
        envelope_width_A = ENVELOPE_FWHM * _strongest_fwhm(q, y / first_look)
    envelope = np.exp(_peaks.estimate_background(q, np.log(y), width=envelope_width_A))
    r = y / envelope
    positions = _peaks.find_peaks(q, r, s / envelope, min_snr=min_snr)
    if not positions:
        return none
    smooth = savgol_filter(r, 5, 2) if len(r) > 7 else r
    idx = np.clip(np.searchsorted(q, positions), 1, len(q) - 2)
    idx = np.unique([i + int(np.argmax(smooth[i - 1:i + 2])) - 1 for i in idx])  # onto the maximum nearby
    heights = smooth[idx] - 1.0
    top = int(np.argmax(heights))
    strongest_height, strongest_q = float(heights[top]), float(q[idx[top]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's PeakPropertyWarning at a shoulder
        strongest_fwhm = float(max(peak_widths(smooth, [idx[top]], rel_height=0.5)[0][0], 2.0) * dx)

    def accept(height, fwhm, snr=math.inf, height_err=0.0):
        return (height >= min_relative_amplitude * strongest_height and snr >= min_snr
                and height >= min_snr * height_err
                and WIDTH_RATIO[0] * strongest_fwhm <= fwhm <= WIDTH_RATIO[1] * strongest_fwhm)

    # Every candidate starts at the strongest peak's width: a shoulder has none of its own.
    cands = [_Cand(float(q[i]), strongest_fwhm, float(h), _ETA0[profile]) for i, h in zip(idx, heights)
             if h >= min_relative_amplitude * strongest_height]
    kept = _fit_all(q, y, s, cands, profile, dx, pattern.given, lambda g: accept(g.a, g.w, g.snr, g.a_err))
    if not kept:
        return none
    strongest = min(kept, key=lambda g: abs(g.c - strongest_q))
    if abs(strongest.c - strongest_q) > strongest_fwhm:
        raise InputError(f"the strongest peak, at q = {strongest_q:.4f} 1/A, could not be fitted")
    return SaxsPeaks(tuple(SaxsPeak(g.c, g.c_err, g.w, g.w_err, g.a, g.a_err, g.snr) for g in kept),
                     kept.index(strongest))


# --------------------------------------------------------------------------
# The pattern model
# --------------------------------------------------------------------------

_NG = 8  # global parameters: ln K, R, polydispersity, sigma_u^2, gamma, nu, b, n


class _PatternModel:
    """``I = K [P - gamma G C + G C Z] + b``, ``C = (1 - nu) Pc + nu P``, averaged over each bin, with its Jacobian.

    Parameters, in order: ``ln K, R, p, sigma_u^2, gamma, nu, b`` (the
    variance, not sigma_u: G depends on it linearly in the exponent, so its
    derivative does not vanish at 0 and the covariance sees how it moves the
    peaks), then ``eta``
    when it is free, then either ``(q_k, w_k, A_k)`` per free peak, or (a
    lattice) ``q1, w1, w_b``, one ``A_j`` per line at ``q1 ratio_j`` with
    FWHM ``w1 + w_b (ratio_j^2 - 1)``, then ``(q_k, w_k, A_k)`` per free peak.
    The bin average is Simpson's rule over the bin, each node weighted by
    its q (the pixels of a ring).
    """

    def __init__(self, q, eta: float, eta_free: bool, n_free: int, ratios=None, bin_average: bool = True,
                 exponent_free: bool = True):
        self.q = q
        self.n = len(q)
        index = np.arange(self.n)
        if bin_average:
            edges = np.concatenate(([q[0] - 0.5 * (q[1] - q[0])], 0.5 * (q[1:] + q[:-1]),
                                    [q[-1] + 0.5 * (q[-1] - q[-2])]))
            lo, hi = edges[:-1], edges[1:]
            self.sub = np.concatenate((lo, 0.5 * (lo + hi), hi))
            nodes = np.array([1.0, 4.0, 1.0])[:, None] * self.sub.reshape(3, -1)
            self.weights = nodes / nodes.sum(axis=0)
            # Neighbouring bins share their edges: the size average (most of the time) on 2n + 1 points only.
            self.unique = np.concatenate((edges, 0.5 * (lo + hi)))
            self.take = np.concatenate((index, self.n + 1 + index, index + 1))
        else:  # at the bin centres (the free-peak fit, which need not be exact to 1e-5)
            self.sub = self.unique = np.asarray(q, dtype=float)
            self.weights = np.ones((1, self.n))
            self.take = index
        self._cache: dict[tuple[float, float], tuple[np.ndarray, ...]] = {}
        self._parts_cache: dict[tuple, tuple[np.ndarray, ...]] = {}
        self.eta0 = float(eta)
        self.eta_free = bool(eta_free)
        self.exponent_free = bool(exponent_free)
        self.n_free = int(n_free)
        self.ratios = None if ratios is None else np.asarray(ratios, dtype=float)
        self.j0 = _NG + (1 if eta_free else 0)
        self.n_lines = 0 if self.ratios is None else len(self.ratios)
        self.free0 = self.j0 + (0 if self.ratios is None else 3 + self.n_lines)
        self.n_params = self.free0 + 3 * self.n_free
        self.wilson: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (lines, weights, law)

    def spheres(self, radius: float, poly: float) -> tuple[np.ndarray, np.ndarray]:
        """P and Pc on the sub-nodes (the last few kept: the fit asks for the same ones again)."""
        return self.sphere_derivatives(radius, poly)[:2]

    def sphere_derivatives(self, radius: float, poly: float) -> tuple[np.ndarray, ...]:
        """P, Pc and their derivatives by R and by the polydispersity on the sub-nodes
        (:func:`_sphere_averages`; computed together: most points the fit evaluates it
        also differentiates, and the derivatives share the sines and cosines)."""
        key = (float(radius), float(poly))
        if key not in self._cache:
            if len(self._cache) >= 6:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = tuple(v[self.take] for v in _sphere_averages(self.unique, radius, poly, True))
        return self._cache[key]

    def average(self, values):
        """Bin averages of values on the sub-nodes (last axis)."""
        v = values.reshape(values.shape[:-1] + (len(self.weights), self.n))
        return (v * self.weights).sum(axis=-2)

    def profiles(self, p):
        """Centres, FWHMs, heights of every line and free peak, and eta."""
        eta = float(p[_NG]) if self.eta_free else self.eta0
        free = p[self.free0:].reshape(-1, 3)
        if self.ratios is None:
            return free[:, 0], free[:, 1], free[:, 2], eta
        q1, w1, wb = p[self.j0:self.j0 + 3]
        amps = p[self.j0 + 3:self.free0]
        return (np.concatenate((q1 * self.ratios, free[:, 0])),
                np.concatenate((w1 + wb * (self.ratios**2 - 1.0), free[:, 1])),
                np.concatenate((amps, free[:, 2])), eta)

    def parts(self, p):
        """Sub-node arrays: P, C, G, the peak terms h (rows) and their profile parts.

        All but the heights depend on the nonlinear parameters alone, and the fits ask for them
        at the same ones again (the residual, then the Jacobian; the variable projection's
        linear solve, then the model at its coefficients): the last two are kept.
        """
        _, radius, poly, u2, _, nu, _, exponent = p[:_NG]
        c, w, a, eta = self.profiles(p)
        key = (float(radius), float(poly), float(u2), float(nu), float(exponent), float(eta), c.tobytes(),
               w.tobytes())
        kept = self._parts_cache.get(key)
        if kept is None:
            x = self.sub
            form, coherent = self.spheres(radius, poly)
            coherent = (1.0 - nu) * coherent + nu * form
            dw = np.exp(-x * x * u2)
            u, lor, gau = unit_parts(x[None, :], c[:, None], w[:, None])
            powder = (c[:, None] / x[None, :]) ** exponent
            h = powder * (eta * lor + (1.0 - eta) * gau)
            kept = (form, coherent, dw, u, lor, gau, powder, h)
            if len(self._parts_cache) >= 2:
                self._parts_cache.pop(next(iter(self._parts_cache)))
            self._parts_cache[key] = kept
        form, coherent, dw, u, lor, gau, powder, h = kept
        return form, coherent, dw, c, w, a, eta, u, lor, gau, powder, h

    def __call__(self, p):
        lnk, _, _, _, gamma, _, b, _ = p[:_NG]
        form, coherent, dw, *_, a, _eta, _u, _l, _g, _pw, h = self.parts(p)
        return self.average(math.exp(lnk) * (form - gamma * dw * coherent + dw * coherent * (a @ h)) + b)

    def jacobian(self, p, linear: bool = True):
        """Derivatives of the bin averages by every parameter (bins x parameters); with
        ``linear`` False only the columns of :meth:`nonlinear` are filled (the variable
        projection's Jacobian needs no more), the others left undefined."""
        lnk, radius, poly, _, gamma, nu, _, exponent = p[:_NG]
        k = math.exp(lnk)
        form, coherent, dw, c, w, a, eta, u, lor, gau, powder, h = self.parts(p)
        z = a @ h
        x = self.sub
        J = np.empty((self.n, self.n_params))
        if linear:
            J[:, 0] = self.average(k * (form - gamma * dw * coherent + dw * coherent * z))
        # The radius and the polydispersity: analytic derivatives of the size average.
        derivatives = self.sphere_derivatives(radius, poly)[2:]
        for col, (d_form, d_pure) in ((1, derivatives[:2]), (2, derivatives[2:])):
            d_coherent = (1.0 - nu) * d_pure + nu * d_form
            J[:, col] = self.average(k * (d_form + dw * d_coherent * (z - gamma)))
        J[:, 3] = self.average(k * coherent * (z - gamma) * (-x * x * dw))
        if linear:
            J[:, 4] = self.average(-k * dw * coherent)
            J[:, 6] = 1.0
        pure = self.spheres(radius, poly)
        J[:, 5] = self.average(k * dw * (pure[0] - pure[1]) * (z - gamma))
        scale = k * dw * coherent
        d_c, d_w, d_eta = height_derivatives(u, lor, gau, eta, w[:, None])
        by_a = scale * h if linear else None
        by_c = scale * a[:, None] * (powder * d_c + exponent / c[:, None] * h)
        if linear or self.exponent_free:
            J[:, 7] = self.average(scale * (a[:, None] * h * np.log(c[:, None] / x[None, :])).sum(axis=0))
        by_w = scale * a[:, None] * powder * d_w
        if self.eta_free:
            J[:, _NG] = self.average(scale * (a[:, None] * powder * d_eta).sum(axis=0))
        m = self.n_lines
        if self.ratios is not None:
            r = self.ratios[:, None]
            J[:, self.j0] = self.average((by_c[:m] * r).sum(axis=0))
            J[:, self.j0 + 1] = self.average(by_w[:m].sum(axis=0))
            J[:, self.j0 + 2] = self.average((by_w[:m] * (r * r - 1.0)).sum(axis=0))
            if linear:
                J[:, self.j0 + 3:self.free0] = self.average(by_a[:m]).T
        J[:, self.free0::3] = self.average(by_c[m:]).T
        J[:, self.free0 + 1::3] = self.average(by_w[m:]).T
        if linear:
            J[:, self.free0 + 2::3] = self.average(by_a[m:]).T
        return J

    def set_wilson(self, p, y, s, law, min_snr: float) -> None:
        """Tie sigma_u^2 to how the lines' heights fall with q (see :func:`_wilson_row`).

        The lines used are those standing ``min_snr`` sigma high at ``p``
        (the heights of the linear start), weighted ``1 / (tau^2 + 1 /
        snr^2)`` with tau = :data:`WILSON_SCATTER`; fewer than three such
        lines at distinct q: no tie.
        """
        if self.ratios is None:
            return
        _, coherent, dw, *_, h = self.parts(p)
        k = math.exp(p[0])
        heights = p[self.j0 + 3:self.free0]
        norms = np.sqrt(np.sum((self.average(dw * coherent * h[:self.n_lines]) / s) ** 2, axis=1))
        snr = k * heights * norms
        lines = np.flatnonzero(snr >= min_snr)
        if lines.size < 3 or np.ptp(self.ratios[lines]) < 0.1:
            self.wilson = None
            return
        weights = 1.0 / (WILSON_SCATTER**2 + 1.0 / snr[lines] ** 2)
        self.wilson = (lines, weights, np.asarray(law, dtype=float)[lines])

    def prior(self, p) -> np.ndarray:
        """The Wilson pseudo-residual (empty without a tie): the weighted trend of
        ``ln(A w / law)`` against ratio^2, in units of its standard error."""
        if self.wilson is None:
            return np.zeros(0)
        return np.array([_wilson_row(self, p)[0]])

    def prior_jacobian(self, p) -> np.ndarray:
        """Its derivatives by every parameter (rows x parameters)."""
        if self.wilson is None:
            return np.zeros((0, self.n_params))
        return _wilson_row(self, p)[1][None, :]

    def nonlinear(self) -> np.ndarray:
        """Indices of the parameters the model is not linear in (the rest: ``K``, ``gamma``,
        ``b`` and the heights, see :meth:`design`)."""
        index = [1, 2, 3, 5] + ([7] if self.exponent_free else []) + ([_NG] if self.eta_free else [])
        if self.ratios is not None:
            index += [self.j0, self.j0 + 1, self.j0 + 2]
        for k in range(self.n_free):
            index += [self.free0 + 3 * k, self.free0 + 3 * k + 1]
        return np.array(index)

    def design(self, p) -> np.ndarray:
        """The model as a linear combination, bins x columns, at the nonlinear parameters of p.

        ``I = K1 P + K2 (P - G C) + b+ - b- + sum_k c_k G C h_k``, every
        coefficient non-negative: ``K = K1 + K2``, ``gamma = K2 / K`` (so
        0 <= gamma <= 1), ``b = b+ - b-``, ``A_k = c_k / K``.
        """
        form, coherent, dw, *_, h = self.parts(p)
        carrier = dw * coherent
        ones = np.ones(self.n)
        return np.vstack((self.average(form), self.average(form - carrier), ones, -ones,
                          self.average(carrier * h))).T

    def with_linear(self, p, coef) -> np.ndarray:
        """p with ``K``, ``gamma``, ``b`` and the heights from the coefficients of :meth:`design`."""
        p = np.array(p, dtype=float)
        k = max(float(coef[0] + coef[1]), 1e-300)
        p[0] = math.log(k)
        p[4] = float(coef[1]) / k
        p[6] = float(coef[2] - coef[3])
        heights = np.asarray(coef[4:], dtype=float) / k
        m = self.n_lines
        if self.ratios is not None:
            p[self.j0 + 3:self.free0] = heights[:m]
        p[self.free0 + 2::3] = heights[m:]
        return p

    def linear_start(self, p, y, s):
        """``K``, ``gamma``, ``b`` and the heights at the other parameters of ``p``, by bounded
        linear least squares (``K P``, ``-K gamma G C``, ``b``, ``K A_k G C h_k``: all but ``b``
        non-negative; ``gamma`` then clipped to [0, 1]); returns the new p and chi^2."""
        p = np.array(p, dtype=float)
        form, coherent, dw, *_, h = self.parts(p)
        columns = np.vstack((self.average(form)[None, :], -self.average(dw * coherent)[None, :], np.ones((1, self.n)),
                             self.average(dw * coherent * h)))
        design = columns.T / s[:, None]
        lower = np.zeros(len(columns))
        lower[2] = -np.inf
        res = lsq_linear(design, y / s, bounds=(lower, np.inf))
        k = max(float(res.x[0]), 1e-12 * float(np.max(y)))
        p[0] = math.log(k)
        p[4] = float(np.clip(res.x[1] / k, 0.0, 1.0))
        p[6] = res.x[2]
        heights = res.x[3:] / k
        m = self.n_lines
        if self.ratios is not None:
            p[self.j0 + 3:self.free0] = heights[:m]
        p[self.free0 + 2::3] = heights[m:]
        return p, float(np.sum(res.fun**2))


@dataclass(frozen=True, eq=False)
class _ModelFit:
    model: _PatternModel
    p: np.ndarray
    err: np.ndarray
    cov: np.ndarray | None
    free: np.ndarray
    at_bound: np.ndarray
    reduced_chi2: float

    def particle(self) -> ParticleModel:
        lnk, radius, poly, u2, gamma, nu, b, exponent = self.p[:_NG]
        return ParticleModel(math.exp(lnk), float(radius), float(poly), math.sqrt(max(u2, 0.0)), float(gamma), float(nu),
                             float(b), float(exponent),
                             self.reduced_chi2)


def _wilson_row(model: _PatternModel, p) -> tuple[float, np.ndarray, float]:
    """The Wilson tie of sigma_u^2: pseudo-residual, its derivatives, and its derivative by
    sigma_u^2 through the heights.

    The Debye-Waller factor that multiplies the Bragg peaks also takes height
    from line to line: with sigma_u^2 right, the lines' heights in Z (the
    factor divided out), times their widths over the powder law ``m /
    ratio^(d - 1)``, show no trend with q^2 (Wilson, Nature 150, 152 (1942),
    for atoms in a crystal; the same for particles in a superlattice). The
    pseudo-residual is that trend over its standard error, weights ``v = 1 /
    (tau^2 + 1 / snr^2)``: ``sum v (x - x_bar)(y - y_bar) / sqrt(sum v (x -
    x_bar)^2)``, ``x = ratio^2``, ``y = ln(A w / law)``. Without it sigma_u
    is free where the pattern has no correlation hole, and it moves every
    line in proportion to its q (the peaks' carrier ``G`` tilts across
    them): a change of scale, q1 undetermined to ``2 sigma_u^2 sigma_peak^2``
    (measured on data-sample: sigma_u running to 19 A, q1 0.9 % high).
    """
    lines, weights, law = model.wilson
    j = model.j0
    w1, wb = p[j + 1], p[j + 2]
    ratios = model.ratios[lines]
    x = ratios**2
    widths = w1 + wb * (x - 1.0)
    heights = np.maximum(p[j + 3 + lines], 1e-300)
    y = np.log(heights * widths / law)
    xm = float(np.sum(weights * x) / np.sum(weights))
    ym = float(np.sum(weights * y) / np.sum(weights))
    sxx = float(np.sum(weights * (x - xm) ** 2))
    g = weights * (x - xm) / math.sqrt(sxx)  # d residual / d y_j
    value = float(np.sum(g * (y - ym)))
    row = np.zeros(model.n_params)
    row[j + 3 + lines] = g / heights
    row[j + 1] = float(np.sum(g / widths))
    row[j + 2] = float(np.sum(g * (x - 1.0) / widths))
    q1 = p[j]
    return value, row, float(q1 * q1 * np.sum(g * x))


def _least_squares(model: _PatternModel, y, s, p0, lower, upper, sigma_given: bool, max_nfev: int = 300,
                   held: Sequence[int] = ()) -> _ModelFit:
    """Weighted least squares of the pattern model (and its Wilson tie, :meth:`_PatternModel.prior`);
    errors by the one rule (:func:`covariance_scale`), the parameters ``held`` left out of the
    covariance (the errors are then conditional on them)."""
    inv = 1.0 / s
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    span = np.where(np.isfinite(upper - lower), upper - lower, 1.0)
    p0 = np.clip(np.asarray(p0, dtype=float), lower + 1e-7 * span, upper - 1e-7 * span)

    def residual(p):
        return np.concatenate(((model(p) - y) * inv, model.prior(p)))

    def jacobian(p):
        return np.vstack((model.jacobian(p) * inv[:, None], model.prior_jacobian(p)))

    with np.errstate(all="ignore"):
        res = least_squares(residual, p0, jac=jacobian, bounds=(lower, upper), x_scale="jac", method="trf",
                            max_nfev=max_nfev)
    p = res.x
    dof = max(len(y) - len(p), 1)
    chi2 = float(np.sum(res.fun[:len(y)] ** 2)) / dof
    weighted = jacobian(p)
    norms = np.sqrt(np.sum(weighted**2, axis=0))
    # At a bound: within 1e-6 of the range from it; for a range open on one side (the heights),
    # so close that moving onto the bound changes the fit by less than 1e-3 sigma.
    finite = np.isfinite(upper - lower)
    near_lower = np.where(finite, p - lower < 1e-6 * span, norms * (p - lower) < 1e-3) & np.isfinite(lower)
    near_upper = np.where(finite, upper - p < 1e-6 * span, norms * (upper - p) < 1e-3) & np.isfinite(upper)
    at_bound = near_lower | near_upper
    at_bound[list(held)] = True
    # A parameter the data do not see at all (the height of a line on a zero of the form factor)
    # is left out like one at its bound; the rest are scaled to unit columns first, so that a line
    # the data barely see does not make the others' covariance look singular.
    free = ~at_bound & (norms > 0)
    err = np.full(len(p), np.nan)
    with np.errstate(all="ignore"):
        cov = covariance(weighted[:, free] / norms[free], rcond=1e-12)
    if cov is not None:
        cov = cov / np.outer(norms[free], norms[free]) * covariance_scale(chi2, sigma_given)
        err[free] = np.sqrt(np.diag(cov))
    return _ModelFit(model, p, err, cov, free, at_bound, chi2)


def _varpro(model: _PatternModel, y, s, p0, lower, upper, sigma_given: bool, max_nfev: int = 200,
            held: Sequence[int] = ()) -> _ModelFit:
    """The pattern model fitted by variable projection, then polished with every parameter.

    For given nonlinear parameters (sizes, sigma_u^2, nu, positions, widths)
    the model is linear in ``K``, ``gamma K``, ``b`` and the heights
    (:meth:`_PatternModel.design`); these are solved exactly, non-negative
    (Lawson-Hanson NNLS), at every step, and least squares runs over the
    nonlinear parameters alone (Golub & Pereyra, SIAM J. Numer. Anal. 10,
    413 (1973)). Fitted together, the heights, ``K`` and ``gamma`` are so
    correlated that the full fit crawls along their valley for thousands of
    steps or stops in it (measured on the synthetic series: 2000
    evaluations, or q1 off by 5e-4 of itself). The Jacobian is Kaufman's.
    A short fit of all parameters from the solution gives the covariance
    (:func:`_least_squares`).
    """
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    index = model.nonlinear()
    lo, hi = lower[index], upper[index]
    span = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    p0 = np.asarray(p0, dtype=float)
    theta0 = np.clip(p0[index], lo + 1e-7 * span, hi - 1e-7 * span)
    inv = 1.0 / s
    target = y * inv

    def solve(theta):
        p = p0.copy()
        p[index] = theta
        design = model.design(p) * inv[:, None]
        coef, _ = nnls(design, target, maxiter=20 * design.shape[1])
        return p, coef, design

    cache: dict = {}

    def solved(theta):
        key = theta.tobytes()
        if cache.get("key") != key:
            cache.update(key=key, value=solve(theta))
        return cache["value"]

    def residual(theta):
        p, coef, design = solved(theta)
        return np.concatenate((design @ coef - target, model.prior(model.with_linear(p, coef))))

    def jacobian(theta):
        # Kaufman's approximation (BIT 15, 49 (1975)): the model's own derivatives by the
        # nonlinear parameters, the linear coefficients held, projected off the span of the
        # columns in use.
        p, coef, design = solved(theta)
        full_p = model.with_linear(p, coef)
        full = model.jacobian(full_p, linear=False)[:, index] * inv[:, None]
        basis, _ = np.linalg.qr(design[:, coef > 0])
        rows = [full - basis @ (basis.T @ full)]
        if model.wilson is not None:
            # The heights follow sigma_u^2: a line's height comes out exp(q^2 d sigma_u^2) higher
            # when the Debye-Waller factor takes that much more away.
            row = np.zeros(len(index))
            row[np.flatnonzero(index == 3)] = _wilson_row(model, full_p)[2]
            rows.append(row[None, :])
        return np.vstack(rows)

    # Starting values scanned before the descent, the linear parameters solved at each: a lattice's
    # q1 (a start 0.5 % off, from poorly placed free peaks, lands the high orders between lines and
    # the fit in a local minimum: measured), then nu (peaks on Pc or on P decides how the lines near
    # a zero of the form factor are carried, and a fit started on the wrong side stays there).
    scans = []
    if model.ratios is not None:
        scans.append((model.j0, theta0[np.flatnonzero(index == model.j0)[0]] * (1.0 + 0.001 * np.arange(-10, 11))))
    scans.append((5, np.array([0.0, 0.5, 1.0])))
    for parameter, values in scans:
        where = np.flatnonzero(index == parameter)
        if not where.size:
            continue
        k = where[0]
        trials = []
        for value in values:
            theta = theta0.copy()
            theta[k] = np.clip(value, lo[k] + 1e-7 * span[k], hi[k] - 1e-7 * span[k])
            trials.append((float(np.sum(residual(theta) ** 2)), theta))
        theta0 = min(trials, key=lambda t: t[0])[1]
    with np.errstate(all="ignore"):
        res = least_squares(residual, theta0, jac=jacobian, bounds=(lo, hi), x_scale="jac", method="trf",
                            max_nfev=max_nfev)
    p, coef, _ = solve(res.x)
    return _least_squares(model, y, s, model.with_linear(p, coef), lower, upper, sigma_given, max_nfev=40, held=held)


def _global_bounds(q_low: float, max_exponent: float = 1.0):
    """Bounds of the global parameters for a pattern whose lowest peak is at ``q_low``.

    The radius between 3 % and 100 % of the spacing ``2 pi / q_low`` (cores
    touch at half the nearest-neighbour distance, itself at most ~1.3
    first-order spacings; the first order may lie below the lowest peak
    seen); the polydispersity below 0.24 (no radius below 4 % of the mean at
    -4 sigma); sigma_u below 12 % of the spacing (Lindemann: a lattice melts
    when the rms displacement reaches ~10-15 % of the nearest-neighbour
    distance, 6-9 % per direction, and the nearest neighbours are at most
    ~1.3 spacings apart)."""
    spacing = 2.0 * math.pi / q_low
    lower = [-np.inf, 0.03 * spacing, 0.005, 0.0, 0.0, 0.0, -np.inf]
    lower = lower + [0.0]
    upper = [np.inf, 1.0 * spacing, 0.24, (0.12 * spacing) ** 2, 1.0, 1.0, np.inf, max_exponent]
    return lower, upper


GRID_DISPLACEMENTS = (0.0, 0.02, 0.04, 0.07)
"""sigma_u of the start's grid search, in spacings ``2 pi / q_low``."""


class _Gelsy:
    """``scipy.linalg.lstsq(a, b, lapack_driver="gelsy", check_finite=False)[0]`` for many designs
    of one shape, with LAPACK's workspace size asked for once (the same call, the same
    numbers; the grid search solves hundreds of small designs, and scipy's checks and
    workspace query were a fifth of each)."""

    def __init__(self, m: int, n: int):
        self.m, self.n = m, n
        probe = (np.zeros((1, 1)), np.zeros(1))
        self.solve, lwork = get_lapack_funcs(("gelsy", "gelsy_lwork"), probe)
        self.cond = float(np.finfo(float).eps)
        work, info = lwork(m, n, 1, self.cond)
        self.lwork = int(work) if info == 0 else None

    def __call__(self, a, b) -> np.ndarray:
        if self.lwork is None or a.shape != (self.m, self.n) or self.m < self.n:
            return scipy_lstsq(a, b, lapack_driver="gelsy", check_finite=False)[0]
        _, x, _, _, info = self.solve(a, b, np.zeros((self.n, 1), dtype=np.int32), self.cond, self.lwork,
                                      False, False)
        if info < 0:
            raise ValueError(f"illegal value in argument {-info} of LAPACK's gelsy")
        return x[:self.n]


def _radius_grid_start(pattern: _Pattern, centres, widths, exponent: float, eta: float, near: float | None = None):
    """Start values (R, polydispersity, gamma, sigma_u, nu) of the model, from a grid search.

    For each radius (6 % steps over the bounds of :func:`_global_bounds`,
    then 1.5 % steps about the best), polydispersity (0.05 to 0.16, then
    0.03 to 0.2) and sigma_u (two of :data:`GRID_DISPLACEMENTS`, then all), a linear
    least-squares fit of ``P``, the correlation holes ``-G Pc`` and ``-G P``
    (``nu`` = 0 and 1), a constant, and for every peak ``G Pc`` times its
    profile and the profile's derivatives by position and width (the window
    positions and widths may be off by a fraction of a width) and ``G P``
    times its profile; the least chi^2 wins, and ``gamma`` and ``nu`` are
    read off the coefficients of the holes. Linear, so the grid takes a
    fraction of a second; the model at the bin centres (a start needs no
    more). ``near``: a radius known to a few percent (-20 %, +25 % searched).
    """
    q, y, s = pattern.q, pattern.y, pattern.s
    q_low = float(np.min(centres))
    spacing = 2.0 * math.pi / q_low
    lower, upper = _global_bounds(q_low)
    if near is not None:  # a radius known to a few percent: search about it only
        lower[1], upper[1] = max(lower[1], 0.8 * near), min(upper[1], 1.25 * near)
    u, lor, gau = unit_parts(q[None, :], centres[:, None], widths[:, None])
    d_c, d_w, _ = height_derivatives(u, lor, gau, eta, widths[:, None])
    powder = (centres[:, None] / q[None, :]) ** exponent
    shapes = np.vstack((powder * (eta * lor + (1.0 - eta) * gau), powder * d_c, powder * d_w))
    waller = [np.exp(-(q * f * spacing) ** 2) for f in GRID_DISPLACEMENTS]
    target = y / s
    gelsy = _Gelsy(len(q), 4 + 4 * len(centres))

    def best_at(radius, poly, best, displacements=(0, 1, 2, 3)):
        form, coherent = sphere_form_factors(q, radius, poly)
        for k in displacements:
            f, dw = GRID_DISPLACEMENTS[k], waller[k]
            design = np.column_stack((form, -dw * coherent, -dw * form, np.ones_like(q), (dw * coherent * shapes).T,
                                      (dw * form * shapes[:len(centres)]).T)) / s[:, None]
            # QR with column pivoting (gelsy): the same solution as the SVD, several times faster on
            # these tall, narrow designs, and the grid solves hundreds of them.
            coef = gelsy(design, target)
            if not coef[0] > 0:
                continue
            chi2 = float(np.sum((design @ coef - target) ** 2))
            if chi2 < best[0]:
                best = (chi2, (float(radius), poly, f * spacing, coef))
        return best

    best = (math.inf, None)
    for radius in np.exp(np.arange(math.log(lower[1]), math.log(upper[1]) + 0.03, 0.06)):
        for poly in (0.05, 0.10, 0.16):
            best = best_at(radius, poly, best, (1, 3))
    if best[1] is None:
        return None
    centre = best[1][0]
    for radius in centre * np.exp(np.arange(-0.06, 0.0601, 0.015)):
        for poly in (0.03, 0.06, 0.09, 0.12, 0.16, 0.20):
            best = best_at(radius, poly, best)
    radius, poly, su, coef = best[1]
    k, hole_c, hole_p = coef[0], max(coef[1], 0.0), max(coef[2], 0.0)
    gamma = float(np.clip((hole_c + hole_p) / k, 0.0, 1.0))
    nu = float(hole_p / (hole_c + hole_p)) if hole_c + hole_p > 0 else 0.5
    return float(np.clip(radius, lower[1] * 1.01, upper[1] * 0.99)), poly, gamma, su, nu


def fit_pattern_model(q_A, intensity, sigma, peaks: Sequence[SaxsPeak], *, profile: str = "gaussian",
                      exponent: float = 1.0, min_snr: float = 5.0) -> tuple[ParticleModel, tuple[SaxsPeak, ...],
                                                                             np.ndarray] | None:
    """The pattern model with every peak free (step 2 of the module docstring).

    Parameters
    ----------
    q_A, intensity, sigma : array_like
        The usable points (``sigma`` None: estimated from ``ln I``).
    peaks : sequence of SaxsPeak
        Starting peaks (the window fits).
    profile : str
        See :class:`SuperlatticeSettings`.
    exponent : float
        ``n`` of the powder factor ``(q_k / q)^n``; 1 (a 3D lattice) before the
        lattice is known.
    min_snr : float
        Peaks are added where the residual shows one this many sigma high
        (:func:`_missed_peaks`, :data:`MISSED_ROUNDS` rounds).

    Returns
    -------
    (ParticleModel, tuple of SaxsPeak, ndarray) or None
        The model, the peaks with the model's positions, widths and errors
        (``amplitude``: height above the smooth part relative to it), and
        the fitted parameters; None when there is no peak or the fit fails
        (no convergence, the radius at a bound). Peaks that collapse (height
        or width at a bound, position at the edge of its range) are dropped
        and the rest fitted again.
    """
    pattern = _usable(q_A, intensity, sigma, None, None)
    peaks = list(peaks)
    if not peaks:
        return None
    eta = _ETA0[profile]
    start = _radius_grid_start(pattern, np.array([pk.q_A for pk in peaks]), np.array([pk.fwhm_q_A for pk in peaks]),
                               exponent, eta)
    if start is None:
        return None
    radius, poly, gamma, su, nu = start
    glob = [0.0, radius, poly, su * su, gamma, nu, 0.0, exponent] + ([eta] if profile == "pseudo-voigt" else [])
    best, rounds, final = None, 0, False
    for _ in range(2 * MISSED_ROUNDS + 5):
        fit = _fit_free(pattern, peaks, profile, exponent, glob, FREE_FIT_EVALUATIONS[1 if final else 0])
        if fit is None:
            break
        j = fit.model.free0
        collapsed = [i for i in range(len(peaks)) if np.any(fit.at_bound[j + 3 * i:j + 3 * i + 3])]
        # The peaks that hold start where they ended; the collapsed ones are dropped.
        peaks = [SaxsPeak(float(fit.p[j + 3 * i]), math.nan, float(fit.p[j + 3 * i + 1]), math.nan, 0.0, math.nan, 0.0)
                 for i in range(len(peaks)) if i not in collapsed]
        glob = list(fit.p[:j])
        if collapsed:
            if not peaks:
                break
            continue
        best = fit
        if final:
            break
        missed = _missed_peaks(fit, pattern, min_snr) if rounds < MISSED_ROUNDS else []
        if missed:
            rounds += 1
            peaks += missed
        else:
            final = True  # once more, to convergence, from where it ended
    if best is None:
        return None
    return best.particle(), _model_peaks(best, pattern), best.p


MISSED_ROUNDS = 2
"""Rounds of peaks added where the free fit leaves a peak-shaped residual
(lines the envelope's detection missed: shoulders, weak high orders)."""


def _missed_peaks(fit: _ModelFit, pattern: _Pattern, min_snr: float) -> list[SaxsPeak]:
    """Peaks in the residual of a free fit: maxima of the residual (in sigma) smoothed over
    one FWHM (Savitzky-Golay, quadratic) that stand ``min_snr`` times the smoothed noise
    high, half a width or more from every fitted peak, as wide as a peak (:data:`WIDTH_RATIO`
    of the median fitted width). They start at that width with no height."""
    j = fit.model.free0
    centres = fit.p[j::3]
    widths = fit.p[j + 1::3]
    width = float(np.median(widths))
    q = pattern.q
    dx = float(np.median(np.diff(q)))
    window = max(5, int(round(width / dx)) | 1)
    if window >= len(q):
        return []
    residual = (pattern.y - fit.model(fit.p)) / pattern.s
    smooth = savgol_filter(residual, window, 2)
    gain = float(np.sqrt(np.sum(savgol_coeffs(window, 2) ** 2)))
    idx, _ = _scipy_find_peaks(smooth, height=min_snr * gain, distance=max(1, int(0.5 * width / dx)))
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spans = peak_widths(smooth, idx, rel_height=0.5)[0] * dx if len(idx) else []
    for i, span in zip(idx, spans):
        c = float(q[i])
        if np.min(np.abs(centres - c) / widths) < 0.5:
            continue
        if not WIDTH_RATIO[0] * width <= span <= WIDTH_RATIO[1] * width:
            continue
        out.append(SaxsPeak(c, math.nan, width, math.nan, 0.0, math.nan, 0.0))
    return out


FREE_FIT_EVALUATIONS = (80, 300)
"""The free-peak fit only has to place the peaks for the indexing (to
:data:`POSITION_FLOOR`) and find the radius: it stops after the first of
these many evaluations while peaks are still being added, after the second
at the end."""


def _fit_free(pattern: _Pattern, peaks: Sequence[SaxsPeak], profile: str, exponent: float,
              glob: Sequence[float], evaluations: int, bin_average: bool = False,
              hold_displacement: bool = False, hold_widths: bool = False) -> _ModelFit | None:
    centres = np.array([pk.q_A for pk in peaks])
    widths = np.array([pk.fwhm_q_A for pk in peaks])
    eta = _ETA0[profile]
    lower, upper = _global_bounds(float(centres.min()), exponent)
    lower[7] = exponent - 1e-9 * max(exponent, 1.0)  # the free fit places peaks for the indexing: n held
    if hold_displacement:  # sigma_u^2 as given (from a lattice fit's Wilson tie)
        lower[3], upper[3] = float(glob[3]) - 1e-9 * max(float(glob[3]), 1.0), float(glob[3])
    model = _PatternModel(pattern.q, eta, profile == "pseudo-voigt", len(peaks), bin_average=bin_average,
                          exponent_free=False)
    p0 = list(glob)
    lo, hi = list(lower), list(upper)
    p0[1] = float(np.clip(p0[1], lo[1] * 1.001, hi[1] * 0.999))
    if model.eta_free:
        lo.append(0.0)
        hi.append(1.0)
    for c, w in zip(centres, widths):
        p0 += [c, w, 0.0]
        lo += [c - 0.75 * w, w * (1.0 - 1e-9) if hold_widths else 0.25 * w, 0.0]
        hi += [c + 0.75 * w, w if hold_widths else 4.0 * w, np.inf]
    p0, _ = model.linear_start(np.array(p0), pattern.y, pattern.s)
    try:
        # Errors conditional on sigma_u^2 (and n): without a correlation hole it moves all the peaks
        # in proportion to their q, which changes no ratio, and the indexing needs no more.
        fit = _varpro(model, pattern.y, pattern.s, p0, lo, hi, pattern.given, max_nfev=evaluations,
                      held=(3, 7))
    except (ValueError, np.linalg.LinAlgError):
        return None
    if fit.at_bound[1] or not np.all(np.isfinite(fit.p)):
        return None
    return fit


def _model_peaks(fit: _ModelFit, pattern: _Pattern, which: Sequence[int] | None = None) -> tuple[SaxsPeak, ...]:
    """The free peaks of a model fit (all, or those ``which``) as SaxsPeak (height relative to the
    smooth part at the top)."""
    particle = fit.particle()
    out = []
    j = fit.model.free0
    for i in range(fit.model.n_free) if which is None else which:
        c, w, a = fit.p[j + 3 * i:j + 3 * i + 3]
        ce, we, ae = fit.err[j + 3 * i:j + 3 * i + 3]
        out.append(_as_peak(particle, pattern, float(c), float(ce), float(w), float(we), float(a), float(ae)))
    return tuple(sorted(out, key=lambda pk: pk.q_A))


def _as_peak(particle: ParticleModel, pattern: _Pattern, c, ce, w, we, a, ae) -> SaxsPeak:
    coherent = float(particle.coherent([c])[0])
    smooth = max(float(particle.smooth([c])[0]), 1e-300)
    noise = float(np.interp(c, pattern.q, pattern.s))
    # The height's own error is not that of A alone (A trades off against K and the hole); the
    # snr, height in counts over the noise, is what tells a peak.
    return SaxsPeak(c, ce, w, we, a * coherent / smooth, math.nan, a * coherent / noise)


@dataclass(frozen=True, eq=False)
class LatticeFit:
    """The pattern model with a lattice's lines (:func:`fit_lattice`).

    Attributes
    ----------
    lattice : str
    q1_A, q1_err_A : float
        First-order position and its standard error (1/angstrom).
    fwhm_q_A, fwhm_q_err_A : float
        FWHM of the first-order line, ``w1``.
    heights : ndarray
        Height of each line of the lattice inside the pattern (in Z).
    labels : tuple of str
        Their labels.
    model : ParticleModel
    reduced_chi2 : float
    fit : optional
        The fit itself (parameters, errors), for the survey's refinement of
        the free peaks from the lattice's lines (:func:`_refine_free`).
    """

    lattice: str
    q1_A: float
    q1_err_A: float
    fwhm_q_A: float
    fwhm_q_err_A: float
    heights: np.ndarray
    labels: tuple[str, ...]
    model: ParticleModel
    reduced_chi2: float
    fit: _ModelFit | None = field(default=None, repr=False, compare=False)


def fit_lattice(survey: PatternSurvey, hypothesis: LatticeHypothesis, *, profile: str = "gaussian",
                tolerance_rel: float = 0.02, min_snr: float = 5.0) -> LatticeFit | None:
    """The pattern model with the lines of ``hypothesis``'s lattice (step 4 of the module docstring).

    Every line of the lattice whose centre lies in the pattern (or within
    two widths of its ends) is at ``q1`` times its ratio, with its own
    height (at least 0) and the FWHM ``w1 + w_b (ratio^2 - 1)``; the peaks the
    hypothesis leaves unassigned stay free. ``q1`` may move by
    ``tolerance_rel``. Starts from the survey's free model fit.

    Returns
    -------
    LatticeFit or None
        None when the survey has no model or the fit fails.
    """
    if survey.free_parameters is None or survey.model is None:
        return None
    pattern = _Pattern(survey.q_A, survey.intensity, survey.sigma, survey.sigma_given)
    labels, ratios, mult, dimension = lattice_lines(hypothesis.lattice)
    q1 = hypothesis.q1_A
    blends = hypothesis.blends or (-1,) * len(hypothesis.lines)
    assigned = [(pk, line) for pk, line, b in zip(survey.peaks, hypothesis.lines, blends) if line >= 0 and b < 0]
    strays = [pk for pk, line in zip(survey.peaks, hypothesis.lines) if line < 0]
    if not assigned:
        return None
    w10, wb0 = _width_law([pk.fwhm_q_A for pk, _ in assigned], [ratios[line] for _, line in assigned])
    line_widths = w10 + wb0 * (ratios**2 - 1.0)
    # Lines whose top lies in the pattern or within one FWHM of its ends: the tail of one just outside
    # is in the data (6 % of its height one FWHM out), one further out has a height the data do not fix.
    inside = (q1 * ratios >= pattern.q[0] - line_widths) & (q1 * ratios <= pattern.q[-1] + line_widths)
    keep = np.flatnonzero(inside)
    if keep.size == 0:
        return None
    eta = _ETA0[profile]
    exponent = 0.5 * (dimension - 1)
    model = _PatternModel(pattern.q, eta, profile == "pseudo-voigt", len(strays), ratios[keep])
    lower, upper = _global_bounds(min([q1] + [pk.q_A for pk in survey.peaks]), exponent)
    lo, hi = list(lower), list(upper)
    if model.eta_free:
        lo.append(0.0)
        hi.append(1.0)
    lo += [q1 * (1.0 - tolerance_rel), 0.2 * w10, 0.0] + [0.0] * len(keep)
    hi += [q1 * (1.0 + tolerance_rel), 5.0 * w10, 5.0 * w10] + [np.inf] * len(keep)
    tail = [q1, w10, wb0] + [0.0] * len(keep)
    for pk in strays:
        tail += [pk.q_A, pk.fwhm_q_A, 0.0]
        lo += [pk.q_A - 0.75 * pk.fwhm_q_A, 0.25 * pk.fwhm_q_A, 0.0]
        hi += [pk.q_A + 0.75 * pk.fwhm_q_A, 4.0 * pk.fwhm_q_A, np.inf]
    # Two starts, the better fit kept: the free fit's particles (sigma_u from the heights, a
    # Wilson plot), and a grid search on the radius with the lattice's lines. The model has
    # local minima where sigma_u, gamma and nu trade off (measured: one start alone left q1
    # 0.15-0.2 % off on 2 of 13 points of a series without a correlation hole).
    free = survey.free_parameters
    first = list(free[:_NG]) + ([free[_NG]] if model.eta_free else [])
    first[3] = _wilson_variance(survey, assigned, ratios, mult, dimension, first[3], upper[3])
    first[7] = min(first[7], exponent)
    starts = [first]
    fit = None
    for attempt in range(2):
        if attempt == 1:
            centres = np.concatenate((q1 * ratios[keep], [pk.q_A for pk in strays]))
            widths = np.concatenate((line_widths[keep], [pk.fwhm_q_A for pk in strays]))
            grid = _radius_grid_start(pattern, centres, widths, exponent, eta, near=float(free[1]))
            if grid is None:
                break
            starts.append([0.0, grid[0], grid[1], grid[3] ** 2, grid[2], grid[4], 0.0, first[7]]
                          + ([free[_NG]] if model.eta_free else []))
        p0 = np.array(starts[-1] + tail, dtype=float)
        span = np.array(hi) - np.array(lo)
        finite = np.isfinite(span)
        p0[finite] = np.clip(p0[finite], np.array(lo)[finite] + 1e-6 * span[finite],
                             np.array(hi)[finite] - 1e-6 * span[finite])
        p0, _ = model.linear_start(p0, pattern.y, pattern.s)
        model.set_wilson(p0, pattern.y, pattern.s, (mult / ratios ** (dimension - 1))[keep], min_snr)
        try:
            trial = _varpro(model, pattern.y, pattern.s, p0, lo, hi, pattern.given)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if fit is None or trial.reduced_chi2 < fit.reduced_chi2:
            fit = trial
    if fit is None:
        return None
    j = model.j0
    if fit.at_bound[1] or fit.at_bound[j] or not math.isfinite(fit.err[j]):
        return None
    return LatticeFit(hypothesis.lattice, float(fit.p[j]), float(fit.err[j]), float(fit.p[j + 1]), float(fit.err[j + 1]),
                      fit.p[j + 3:j + 3 + len(keep)].copy(), tuple(labels[i] for i in keep), fit.particle(),
                      fit.reduced_chi2, fit)


def _wilson_variance(survey: PatternSurvey, assigned, ratios, mult, dimension: int, u2_free: float,
                     u2_max: float) -> float:
    """A start for ``sigma_u^2`` from how the assigned peaks' heights fall with q (a Wilson plot).

    The height in Z of line j is its powder weight ``m / ratio^(d - 1)``
    over its width, times the Debye-Waller factor the model did not already
    take out: ``ln(Z w ratio^(d - 1) / m) = c - sigma^2 q^2``, a straight
    line in q^2 (Wilson, Nature 150, 152 (1942), for atoms in a crystal; the
    same for particles in a superlattice), fitted by Theil-Sen (Sen, J. Am.
    Stat. Assoc. 63, 1379 (1968)). Its slope adds to the free fit's
    ``sigma_u^2``. The free fit rarely finds ``sigma_u`` itself when the
    pattern has no correlation hole (the heights are free, so only the slope
    of the peaks' carrier tells), and a fit started at ``sigma_u`` = 0 crawls
    along a flat valley; this start is the lattice's own evidence. Returns
    ``u2_free`` with fewer than three peaks or no spread in q.
    """
    if len(assigned) < 3 or survey.model is None:
        return u2_free
    model = survey.model
    q = np.array([pk.q_A for pk, _ in assigned])
    if np.ptp(q * q) <= 0:
        return u2_free
    z = np.array([pk.amplitude * float(model.smooth([pk.q_A])[0]) / max(float(model.coherent([pk.q_A])[0]), 1e-300)
                  for pk, _ in assigned])
    law = np.array([mult[line] / ratios[line] ** (dimension - 1) for _, line in assigned])
    widths = np.array([pk.fwhm_q_A for pk, _ in assigned])
    good = z > 0
    if good.sum() < 3:
        return u2_free
    # Theil-Sen (the median of the pairwise slopes): an unresolved pair taken for one line, twice
    # as high as its law, must not tilt the line.
    slope = float(theilslopes(np.log(z[good] * widths[good] / law[good]), q[good] ** 2)[0])
    return float(np.clip(u2_free - slope, 0.0, 0.9 * u2_max))


def _width_law(widths, ratios) -> tuple[float, float]:
    """``w1, w_b`` of ``w = w1 + w_b (ratio^2 - 1)`` through the assigned peaks' widths.

    Theil-Sen (a free peak that took in a blend, or the envelope, comes out
    several times too wide, and must not tilt the line); w_b >= 0 and w1 >
    0, else the median width alone.
    """
    widths = np.asarray(widths, dtype=float)
    x = np.asarray(ratios, dtype=float) ** 2 - 1.0
    if widths.size >= 3 and np.ptp(x) > 0.1:
        slope = float(theilslopes(widths, x)[0])
        intercept = float(np.median(widths - slope * x))
        if slope > 0 and intercept > 0.3 * float(np.median(widths)):
            return intercept, slope
    return float(np.median(widths)), 0.0


# --------------------------------------------------------------------------
# Indexing
# --------------------------------------------------------------------------

Visibility = Callable[[str, float, Mapping[int, int]], np.ndarray]
"""(lattice, q1, {line: observed peak}) -> how visible each of the lattice's lines should be, 0 to 1."""


def index_peaks(q_A: Sequence[float], q_err_A: Sequence[float] | None = None, *,
                lattices: Sequence[str] = DEFAULT_LATTICES, tolerance_rel: float = 0.02,
                q_range_A: tuple[float, float] | None = None, widths_A: Sequence[float] | None = None,
                floor: float = POSITION_FLOOR, visibility: Visibility | None = None,
                prior: tuple[str, float, float] | None = None) -> tuple[LatticeHypothesis, ...]:
    """Every indexing of the observed peaks by the lattices, best first (step 3 of the module docstring).

    For each lattice, each observed peak is tried as each of the first
    :data:`_FIRST_LINES` lines; from that first guess of ``q1`` every peak
    is assigned to its nearest line (within ``tolerance_rel``; a line takes
    at most one peak, the closest), ``q1`` is refitted to all assigned peaks
    (weights ``1 / (sigma^2 + (floor q)^2)``), and the assignment repeated
    until it holds. Lines of the lattice that fall in the pattern with no
    peak on them (not within one FWHM of an observed peak, not within one
    FWHM of the pattern's ends) are missing; each costs
    ``MISSING_PENALTY`` times its visibility.

    Parameters
    ----------
    q_A, q_err_A : sequence of float
        Observed positions and their standard errors (1/angstrom); errors
        default to 0 (the floor alone).
    lattices : sequence of str
        Lattice types tried; on equal scores the first listed wins.
    tolerance_rel : float
        A peak matches a line within this relative distance.
    q_range_A : (float, float), optional
        The q range of the pattern (default: from 0); lines outside it are
        not missing. Without ``visibility``, missing lines are counted only up
        to the last observed peak (what the peaks show).
    widths_A : sequence of float, optional
        FWHM of the observed peaks (default: 2 % of their q).
    floor : float
        Relative systematic error of a position (:data:`POSITION_FLOOR`).
    visibility : callable, optional
        Predicted visibility of each line (see :data:`Visibility`); default 1.
    prior : (str, float, float), optional
        (lattice, q1, relative tolerance): only first orders within the
        tolerance of this ``q1`` are tried, with this lattice (carrying a
        series' order to a point that cannot decide alone).

    Returns
    -------
    tuple of LatticeHypothesis
        Sorted by score (then the order of ``lattices``, then chi^2);
        distinct assignments only.
    """
    q = np.asarray(q_A, dtype=float)
    n = q.size
    if n == 0:
        return ()
    q_err = np.zeros(n) if q_err_A is None else np.nan_to_num(np.asarray(q_err_A, dtype=float), nan=0.0)
    widths = 0.02 * q if widths_A is None else np.asarray(widths_A, dtype=float)
    weights = 1.0 / (q_err**2 + (floor * q) ** 2)
    if q_range_A is None:  # a pattern measured from well below its peaks
        q_range_A = (0.0, float(q.max()) * (1.0 + tolerance_rel))
    median_width = float(np.median(widths))
    edge_lo = q_range_A[0] + median_width
    edge_hi = q_range_A[1] - median_width
    if visibility is None:
        edge_hi = min(edge_hi, float(q.max()) * (1.0 + tolerance_rel))
    names = [prior[0]] if prior is not None else list(lattices)
    found: dict[tuple, LatticeHypothesis] = {}
    for name in names:
        labels, ratios, _, _ = lattice_lines(name)
        starts = {float(q[i] / ratios[j]) for i in range(n) for j in range(min(_FIRST_LINES, len(ratios)))}
        if prior is not None:
            starts = {s for s in starts if abs(s / prior[1] - 1.0) <= prior[2]}
        memo: dict = {}
        for q1 in sorted(starts):
            hypothesis = _assign(name, labels, ratios, q, weights, widths, q1, tolerance_rel, edge_lo, edge_hi,
                                 visibility, memo, median_width)
            if hypothesis is not None:
                key = (name, hypothesis.lines)
                if key not in found or hypothesis.score > found[key].score:
                    found[key] = hypothesis
    order = {name: i for i, name in enumerate(names)}
    return tuple(sorted(found.values(), key=lambda h: (-h.score, order[h.lattice], h.chi2)))


def _assign(name, labels, ratios, q, weights, widths, q1, tolerance_rel, edge_lo, edge_hi,
            visibility, memo: dict | None = None, median_width: float | None = None) -> LatticeHypothesis | None:
    """The assignment that ``q1`` leads to, refined until it holds (see :func:`index_peaks`).

    What follows the refinement (``q1``, the credit, the missing lines and their visibility)
    depends on the final assignment alone; ``memo`` keeps it per assignment, since most of
    the starting guesses of ``q1`` end in the same few.
    """
    n = q.size
    lines = None
    # A peak matches a line within tolerance_rel, and within MATCH_SIGMA of its error (floor
    # included): one further off is not that line's peak, whatever the tolerance allows.
    window = np.minimum(tolerance_rel, MATCH_SIGMA / np.sqrt(weights) / q)
    start = None  # the first round's assignment, on which the rest depends alone
    for round_ in range(5):
        predicted = q1 * ratios
        nearest = np.argmin(np.abs(q[:, None] / predicted[None, :] - 1.0), axis=1)
        off = np.abs(q / predicted[nearest] - 1.0)
        assigned = np.where(off <= window, nearest, -1)
        for line in set(assigned[assigned >= 0].tolist()):  # one peak per line: the closest
            claim = np.flatnonzero(assigned == line)
            if claim.size > 1:
                keep = claim[np.argmin(off[claim])]
                assigned[claim[claim != keep]] = -1
        blend = _blends(q, widths, window, predicted, assigned)
        direct = (assigned >= 0) & (blend < 0)
        if not np.any(direct):
            if memo is not None and start is not None:
                memo[start] = None
            return None
        r = ratios[assigned[direct]]
        w = weights[direct]
        q1 = float(np.sum(w * r * q[direct]) / np.sum(w * r * r))
        new = tuple(int(v) for v in assigned), tuple(int(v) for v in blend)
        if round_ == 0:
            start = ("from", new)
            if memo is not None and start in memo:
                return memo[start]
        if new == lines:
            break
        lines = new
    if memo is not None and lines in memo:
        memo[start] = memo[lines]
        return memo[lines]
    assigned, blend = np.array(lines[0]), np.array(lines[1])
    direct = (assigned >= 0) & (blend < 0)
    explained = assigned >= 0
    r = ratios[assigned[direct]]
    w = weights[direct]
    q1_err = float(1.0 / math.sqrt(np.sum(w * r * r)))
    chi2 = float(np.sum(w * (q[direct] - q1 * r) ** 2))
    predicted = q1 * ratios
    # Credit per explained peak: 1 less the chance that a line of this lattice falls in its
    # window anyway (line density about the peak times the window; Smith & Snyder, J. Appl.
    # Cryst. 12, 60 (1979), weigh the lines found against those possible in the same spirit).
    # A dense lattice (a cell twice too large) explains every peak, and gets little for it.
    credit = 0.0
    peaks = np.flatnonzero(explained)
    near = np.sum(np.abs(predicted[None, :] - q[peaks, None]) <= 2.0 * widths[peaks, None], axis=1) / (
        4.0 * widths[peaks])
    span = 2.0 * window[peaks] * q[peaks]
    pair = blend[peaks] >= 0
    span[pair] += np.abs(predicted[blend[peaks][pair]] - predicted[assigned[peaks][pair]])
    for chance in near * span:
        credit += 1.0 - min(1.0, chance)
    seen = set(assigned[explained].tolist()) | set(blend[blend >= 0].tolist())
    # A line within one FWHM of a line that has its peak is merged into it, not missing.
    on = np.array(sorted(seen))
    if median_width is None:
        median_width = float(np.median(widths))
    hidden = np.min(np.abs(predicted[:, None] - predicted[on][None, :]) / median_width, axis=1) < 1.0
    open_line = (edge_lo <= predicted) & (predicted <= edge_hi) & ~hidden
    open_line[on] = False
    candidates = np.flatnonzero(open_line).tolist()
    if candidates and visibility is not None:
        seen_map = {int(line): int(i) for i, line in enumerate(assigned) if line >= 0 and blend[i] < 0}
        weight = np.clip(visibility(name, q1, seen_map), 0.0, 1.0)
        missing = float(sum(weight[j] for j in candidates))
    else:
        missing = float(len(candidates))
    penalty = MODEL_MISSING_PENALTY if visibility is not None else MISSING_PENALTY
    n_explained = int(explained.sum())
    n_unexplained = int(n - n_explained)
    score = credit - n_unexplained - penalty * missing - CHI2_PENALTY * max(0.0, chi2 - (int(direct.sum()) - 1))
    hkl = tuple("" if v < 0 else labels[v] if b < 0 else f"{labels[min(v, b)]}+{labels[max(v, b)]}"
                for v, b in zip(assigned, blend))
    hypothesis = LatticeHypothesis(name, q1, q1_err, tuple(int(v) for v in assigned), hkl, n_explained,
                                   n_unexplained, missing, chi2, score, tuple(int(b) for b in blend))
    if memo is not None:
        memo[lines] = memo[start] = hypothesis
    return hypothesis


def _blends(q, widths, window, predicted, assigned) -> np.ndarray:
    """Per peak, the second line of the pair it is a blend of (-1: none), for peaks left unassigned.

    A peak lying between two neighbouring lines closer than its FWHM (from
    ``window`` below the lower to ``window`` above the upper), both without a
    peak of their own, is the two unresolved; its position is their
    intensity-weighted mean, unknown, so it explains them but does not
    enter the fit of ``q1``. The peak takes the nearer line in ``assigned``.
    """
    blend = np.full(q.size, -1)
    taken = set(assigned[assigned >= 0].tolist())
    for i in np.flatnonzero(assigned < 0):
        j = int(np.searchsorted(predicted, q[i])) - 1
        for lo in (j - 1, j, j + 1):
            hi = lo + 1
            if lo < 0 or hi >= predicted.size or lo in taken or hi in taken:
                continue
            if predicted[hi] - predicted[lo] >= widths[i]:
                continue
            if predicted[lo] * (1.0 - window[i]) <= q[i] <= predicted[hi] * (1.0 + window[i]):
                near = lo if abs(q[i] - predicted[lo]) <= abs(q[i] - predicted[hi]) else hi
                assigned[i] = near
                blend[i] = hi if near == lo else lo
                taken |= {lo, hi}
                break
    return blend


def _model_visibility(model: ParticleModel, pattern: _Pattern, peaks: Sequence[SaxsPeak], *,
                      min_snr: float) -> Visibility:
    """How visible each line of a lattice should be, by the pattern model.

    A line's height in Z follows the powder law of the lattice: its area is
    proportional to ``m / ratio^(d - 1)`` (multiplicity over the shell's
    area; Förster et al. 2005), its height to that over its FWHM (the width
    law of the assigned peaks). The scale is the median over the assigned
    peaks; the Debye-Waller factor and the coherent form factor are the
    model's. The predicted height is then compared with the detection
    threshold (``min_snr`` times the noise), see :data:`VISIBLE_SNR`. (A share of the strongest peak is no
    test here: under a correlation hole the first orders stand tens of times
    higher above the envelope than the rest.)
    """
    z_heights = np.array([pk.amplitude * float(model.smooth([pk.q_A])[0]) / max(float(model.coherent([pk.q_A])[0]),
                                                                                1e-300) for pk in peaks])

    width_laws: dict = {}  # per lattice and assignment: the indexing asks for the same ones many times

    def visibility(lattice: str, q1: float, seen: Mapping[int, int]) -> np.ndarray:
        _, ratios, mult, dim = lattice_lines(lattice)
        law = mult / ratios ** (dim - 1)
        assigned = list(seen.items())
        key = (lattice, tuple(assigned))
        if key not in width_laws:
            width_laws[key] = _width_law([peaks[i].fwhm_q_A for _, i in assigned], [ratios[j] for j, _ in assigned])
        w1, wb = width_laws[key]
        widths = w1 + wb * (ratios**2 - 1.0)
        scale = float(np.median([z_heights[i] * widths[j] / law[j] for j, i in assigned]))
        q_lines = q1 * ratios
        height = scale * law / widths * model.coherent(q_lines)
        noise = np.interp(q_lines, pattern.q, pattern.s)
        ratio = height / noise / min_snr
        return np.clip((ratio - VISIBLE_SNR[0]) / (VISIBLE_SNR[1] - VISIBLE_SNR[0]), 0.0, 1.0)

    return visibility


# --------------------------------------------------------------------------
# One pattern
# --------------------------------------------------------------------------

NO_MODEL_NOTE = ("form-factor model could not be fitted: peak positions from the envelope fits, which a "
                 "correlation hole biases by up to ~1 %")


def survey_pattern(q_A, intensity, sigma=None, settings: SuperlatticeSettings | None = None) -> PatternSurvey:
    """Peaks, model and every indexing of one pattern (steps 1-3 of the module docstring).

    Raises
    ------
    InputError
        Too few usable points, or no superlattice peak above the noise.
    """
    settings = settings if settings is not None else SuperlatticeSettings.from_config({})
    pattern = _usable(q_A, intensity, sigma, settings.q_min_A, settings.q_max_A)
    # Every significant peak starts the model: under a correlation hole the low orders stand tens of
    # times higher above the envelope than the high ones, which a share of the strongest would lose.
    window = _window_peaks(pattern, min_snr=settings.min_snr, min_relative_amplitude=0.0,
                           profile=settings.profile, envelope_width_A=settings.envelope_width_A)
    if not window.peaks:
        raise InputError("no superlattice peak above the noise")
    fitted = fit_pattern_model(pattern.q, pattern.y, pattern.s if pattern.given else None, window.peaks,
                               profile=settings.profile, min_snr=settings.min_snr)
    notes: list[str] = []
    if fitted is None:
        peaks = _significant(window.peaks, settings)
        notes.append(NO_MODEL_NOTE)
        return PatternSurvey(pattern.q, pattern.y, pattern.s, pattern.given, tuple(peaks), None,
                             _index(pattern, peaks, None, settings), tuple(notes))
    model, peaks, params = fitted
    peaks = _significant(peaks, settings, model)
    hypotheses = _index(pattern, peaks, model, settings)
    survey = PatternSurvey(pattern.q, pattern.y, pattern.s, pattern.given, tuple(peaks), model, hypotheses,
                           tuple(notes), params)
    # From the best indexing, and from its rival when the best does not stand on its own (a line set
    # started from the wrong lattice keeps that lattice's lines: measured on the series without 111,
    # bcc refined from bcc); the deeper minimum wins.
    best, rival, confident = assess(hypotheses, settings.tolerance_rel)
    trials = [_refine_free(survey, h, settings) for h in ([best] if confident else [best, rival]) if h is not None]
    trials = [t for t in trials if t is not None]
    if not trials:
        return survey
    model, peaks, params = min(trials, key=lambda t: t[0].reduced_chi2)
    peaks = _significant(peaks, settings, model)
    return PatternSurvey(pattern.q, pattern.y, pattern.s, pattern.given, tuple(peaks), model,
                         _index(pattern, peaks, model, settings), tuple(notes), params)


def _index(pattern: _Pattern, peaks: Sequence[SaxsPeak], model: ParticleModel | None,
           settings: SuperlatticeSettings) -> tuple[LatticeHypothesis, ...]:
    """Every indexing of the peaks (step 3), with the model's visibilities when there is a model."""
    visibility = None if model is None else _model_visibility(model, pattern, peaks, min_snr=settings.min_snr)
    return index_peaks([pk.q_A for pk in peaks], _matching_errors(peaks, model), lattices=settings.lattices,
                       tolerance_rel=settings.tolerance_rel, q_range_A=(float(pattern.q[0]), float(pattern.q[-1])),
                       widths_A=[pk.fwhm_q_A for pk in peaks],
                       floor=POSITION_FLOOR if model is not None else WINDOW_POSITION_FLOOR, visibility=visibility)


REFINE_LEVEL = 0.01
"""The refinement (widths on the lattice's width law) is rejected when the survey's free fit (every
width free) is better at this significance level (F-test, :func:`_refinement_holds`)."""


def _refinement_holds(refined: _ModelFit, survey: PatternSurvey, n_peaks: int) -> bool:
    """Whether the refinement from the lattice describes the pattern as well as the survey's free fit.

    The refinement ties every width to the lattice's width law (and holds
    ``sigma_u``): fewer parameters. It holds when its chi^2 is no higher, or
    when the survey's extra parameters do not lower chi^2 significantly: the
    F-test of nested least-squares models (e.g. Bevington & Robinson, *Data
    Reduction and Error Analysis*, 3rd ed., 2003, sec. 11.4) at
    :data:`REFINE_LEVEL` (the two fits are not strictly nested, their peaks
    started in different places; the test weighs the parameter counts).
    """
    n = refined.model.n
    k_refined = len(refined.p) - n_peaks - 2  # widths, sigma_u^2 and n held
    k_survey = len(survey.free_parameters) - 1  # n held
    chi2_refined = refined.reduced_chi2 * max(n - len(refined.p), 1)
    chi2_survey = survey.model.reduced_chi2 * max(n - len(survey.free_parameters), 1)
    if chi2_refined <= chi2_survey:
        return True
    extra, dof = k_survey - k_refined, n - k_survey
    if extra <= 0 or dof <= 0:
        return False
    ratio = (chi2_refined - chi2_survey) / extra / (chi2_survey / dof)
    return bool(ratio < f_distribution.ppf(1.0 - REFINE_LEVEL, extra, dof))


LINE_SIGMA = 3.0
"""A free peak refined from a lattice line is kept when its height stands this many standard errors
from zero (its marginal error, with every other parameter free: two peaks of a blend share the
height, and each alone then stands low). Lower than ``min_snr``: the line's position is given by the
lattice, not searched for over the pattern, so there is no look-elsewhere effect to guard against.
Measured on the S = 1 series' last point: 331 and 420 (2.6 % apart) at 47 each, on their lines to
0.01 %; the survey's phantom at 1.22 q1 at 1.5, 440 at the pattern's edge at 0.8."""


def _refine_free(survey: PatternSurvey, hypothesis: LatticeHypothesis, settings: SuperlatticeSettings):
    """The free peaks again, started from the lines of an indexing's lattice (step 2b).

    The free fit from the window peaks can stop in a local minimum (the fcc
    series on ``S = 1``: reduced chi^2 15.9 against 0.92 for the lattice fit
    of the same pattern, phantom peaks, 331 and 420 taken as one, 111 0.3 %
    and 220 0.2 % high, 10-50 of their errors): it places each peak where the
    residual of the others leaves room, and weak lines and blends it never
    picked up pull the strong ones. The lattice fit (every line of the
    lattice at once, :func:`fit_lattice`) finds the other minimum. Each of
    its lines with a height (and lines just outside the pattern, and its
    unassigned peaks) then starts a free peak at its position, with the
    lattice fit's particles; its width (the lattice's width law: Scherrer
    plus paracrystalline) and ``sigma_u`` (pinned by the Wilson tie) are
    held: free, ``sigma_u`` shifts every peak in proportion to its q
    (measured +0.2 %), and free widths let weak lines wander onto their
    neighbours (measured: 533 onto 620, a width collapsing to a quarter).
    The fit averages the model over each bin, as the lattice fit does (the
    held widths cannot absorb the bin's width). A peak whose position or
    height ends at a bound is not reported; nor is a line the detection did
    not see, or a peak the indexing left unassigned, whose height is not
    :data:`LINE_SIGMA` standard errors from zero (the data do not tell it
    from its neighbours: the second line of a blend, or a phantom the lines
    explain). A line the detection saw is reported with its refined position
    and error, however poorly the fit pins it. The refinement replaces the
    survey's fit when it holds (:func:`_refinement_holds`).

    Returns
    -------
    (ParticleModel, tuple of SaxsPeak, ndarray) or None
        As :func:`fit_pattern_model` (the model's ``reduced_chi2`` that of
        the refined fit); None when a fit fails or the refinement is no
        better.
    """
    best = hypothesis
    if survey.model is None:
        return None
    lattice = fit_lattice(survey, best, profile=settings.profile, tolerance_rel=settings.tolerance_rel,
                          min_snr=settings.min_snr)
    if lattice is None or lattice.fit is None:
        return None
    fit = lattice.fit
    model = fit.model
    centres, widths, heights, _ = model.profiles(fit.p)
    height_index = np.concatenate((np.arange(model.j0 + 3, model.free0), np.arange(model.free0 + 2, model.n_params, 3)))
    # Every line the lattice fit gives a height (not at its bound of 0) starts a peak; the free fit's
    # own errors decide which the data hold (the lattice fit's heights share their errors with the
    # Wilson tie and the carrier, and say little about a line on its own).
    significant = ~fit.at_bound[height_index] & (heights > 0)
    pattern = _Pattern(survey.q_A, survey.intensity, survey.sigma, survey.sigma_given)
    # Lines just outside the pattern too: their tails are in the data (without them, the last line
    # inside runs to the edge to stand in for them: measured).
    peaks = [SaxsPeak(float(c), math.nan, float(w), math.nan, 0.0, math.nan, 0.0)
             for c, w, ok in zip(centres, widths, significant) if ok]
    all_labels = lattice_lines(best.lattice)[0]
    detected = {all_labels[line] for line in best.lines if line >= 0}
    seen = [k < len(lattice.labels) and lattice.labels[k] in detected
            for k, ok in enumerate(significant) if ok]
    if not peaks:
        return None
    exponent = float(fit.p[7])
    glob = list(fit.p[:_NG]) + ([float(fit.p[_NG])] if model.eta_free else [])
    free = _fit_free(pattern, peaks, settings.profile, exponent, glob, FREE_FIT_EVALUATIONS[1],
                     bin_average=True, hold_displacement=True, hold_widths=True)
    if free is None or not _refinement_holds(free, survey, len(peaks)):
        return None
    # Reported: the peaks that hold (no parameter at a bound), the lines the detection saw, and the
    # others (lines it missed, its unassigned peaks) when their height stands LINE_SIGMA standard
    # errors from zero. The others stay in the model that placed the rest (refitted without them,
    # the fit wanders into another minimum: measured, reduced chi^2 1.5 -> 14 on the S = 1 series).
    j = free.model.free0
    with np.errstate(invalid="ignore", divide="ignore"):
        z = free.p[j + 2::3] / free.err[j + 2::3]
    hold = [i for i in range(len(peaks)) if not (free.at_bound[j + 3 * i] or free.at_bound[j + 3 * i + 2])
            and (seen[i] or (np.isfinite(z[i]) and z[i] >= LINE_SIGMA)) and pattern.q[0] < free.p[j + 3 * i] < pattern.q[-1]]
    if not hold:
        return None
    reported = _model_peaks(free, pattern, hold)
    return free.particle(), reported, free.p


def _significant(peaks: Sequence[SaxsPeak], settings: SuperlatticeSettings,
                 model: ParticleModel | None = None) -> tuple[SaxsPeak, ...]:
    """The peaks that count: ``min_snr`` sigma high and at least ``min_relative_amplitude`` of
    the strongest (the window fits also asked their amplitude to be ``min_snr`` standard
    errors from zero; a model peak's height in counts is what its snr measures).

    With a model the share is of the peaks' heights over ``K C``, the
    particles' coherent scattering: the structure factor's own peaks with
    their Debye-Waller factor (the amplitude above the smooth part, which a
    correlation hole inflates tens of times at the first orders, is no fair
    measure; nor the height in Z, which a free fit's poorly determined
    sigma_u inflates at high q).
    """
    if not peaks:
        return ()
    if model is not None:
        heights = np.array([pk.amplitude * float(model.smooth([pk.q_A])[0])
                            / max(float(model.coherent([pk.q_A], debye_waller=False)[0]), 1e-300) for pk in peaks])
    else:
        heights = np.array([pk.amplitude for pk in peaks])
    top = float(np.max(heights))
    return tuple(pk for pk, h in zip(peaks, heights)
                 if pk.snr >= settings.min_snr and h >= settings.min_relative_amplitude * top)


def _matching_errors(peaks: Sequence[SaxsPeak], model: ParticleModel | None) -> list[float]:
    """Position errors for the indexing: the statistical one and, with a model, what the carrier's
    slope makes of a width.

    A peak rides on ``K G C``; a carrier whose log-slope is ``k`` across the
    peak moves its top by ``k sigma^2`` (sigma = FWHM / 2.355), and the model
    has it right only so far: near a zero of ``Pc`` the slope runs away and a
    line's position is worth little (data-sample: 220 beside the first zero,
    1.4 % off in the free fit). That shift counts as a standard error.
    """
    out = []
    for pk in peaks:
        err = pk.q_err_A if math.isfinite(pk.q_err_A) else 0.0
        if model is not None:
            step = 0.05 * pk.fwhm_q_A
            lo, hi = model.coherent([pk.q_A - step, pk.q_A + step])
            if lo > 0 and hi > 0:
                slope = math.log(hi / lo) / (2.0 * step)
                err = math.hypot(err, slope * (pk.fwhm_q_A / 2.3548) ** 2)
        out.append(err)
    return out


def carried_hypotheses(survey: PatternSurvey, lattice: str, q1_A: float, tolerance: float,
                       settings: SuperlatticeSettings | None = None) -> tuple[LatticeHypothesis, ...]:
    """The indexings of a survey's peaks by ``lattice`` with a first order within ``tolerance`` of ``q1_A``.

    For a point of a series that cannot decide alone (one peak, or two
    lattices as good): its neighbours predict the lattice and about where
    the first order lies.
    """
    settings = settings if settings is not None else SuperlatticeSettings.from_config({})
    pattern = _Pattern(survey.q_A, survey.intensity, survey.sigma, survey.sigma_given)
    visibility = None
    if survey.model is not None:
        visibility = _model_visibility(survey.model, pattern, survey.peaks, min_snr=settings.min_snr)
    return index_peaks([pk.q_A for pk in survey.peaks], _matching_errors(survey.peaks, survey.model),
                       tolerance_rel=settings.tolerance_rel, q_range_A=(float(survey.q_A[0]), float(survey.q_A[-1])),
                       widths_A=[pk.fwhm_q_A for pk in survey.peaks],
                       floor=POSITION_FLOOR if survey.model is not None else WINDOW_POSITION_FLOOR,
                       visibility=visibility, prior=(lattice, q1_A, tolerance))


def _off_line_notes(peaks: Sequence[SaxsPeak], hypothesis: LatticeHypothesis, q1_A: float,
                   q1_err_A: float) -> list[str]:
    """A note for each assigned peak more than :data:`OFF_LINE_SIGMA` standard errors
    (its position's and q1's times the line's ratio, in quadrature) from its line
    at ``q1_A`` of the hypothesis' lattice; blends are left out (their position is
    the pair's)."""
    _, ratios, _, _ = lattice_lines(hypothesis.lattice)
    blends = hypothesis.blends or (-1,) * len(hypothesis.lines)
    notes = []
    for peak, label, line, blend in zip(peaks, hypothesis.hkl, hypothesis.lines, blends):
        if line < 0 or blend >= 0:
            continue
        expected = q1_A * float(ratios[line])
        error = math.hypot(peak.q_err_A, float(ratios[line]) * q1_err_A)
        pull = (peak.q_A - expected) / error if error > 0 else math.nan
        if abs(pull) > OFF_LINE_SIGMA:
            notes.append(f"peak {label} at q = {peak.q_A:.4f} 1/A is {abs(pull):.0f} standard errors "
                         f"{'below' if pull < 0 else 'above'} its {hypothesis.lattice} line ({expected:.4f} 1/A): "
                         f"its position is not trusted; q1 and d come from the whole pattern")
    return notes


def measure_pattern(survey: PatternSurvey, hypothesis: LatticeHypothesis | None, wavelength_A: float,
                    settings: SuperlatticeSettings | None = None, notes: Sequence[str] = ()) -> SuperlatticeResult:
    """First order, spacing, Scherrer length and lattice constants of one pattern under ``hypothesis``.

    ``q1`` comes from :func:`fit_lattice`; without a model (or when that fit
    fails) from the hypothesis' weighted fit of the positions, with a note.
    ``hypothesis`` None (no lattice explains the peaks): every number NaN,
    order ``"unknown"``, and the reason among the notes.
    """
    settings = settings if settings is not None else SuperlatticeSettings.from_config({})
    notes = list(survey.notes) + [n for n in notes if n not in survey.notes]
    nan = math.nan
    if hypothesis is None:
        where = ", ".join(f"{pk.q_A:.4f}" for pk in survey.peaks)
        reason = ("one peak, no lattice to index it by" if len(survey.peaks) == 1
                  else "no lattice explains the peaks")
        notes.append(f"{reason} (q = {where} 1/A)")
        return SuperlatticeResult(survey.peaks, ("",) * len(survey.peaks), "unknown", None, survey.hypotheses,
                                  nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, survey.model, tuple(notes))
    fitted = fit_lattice(survey, hypothesis, profile=settings.profile, tolerance_rel=settings.tolerance_rel,
                         min_snr=settings.min_snr)
    model = survey.model
    observed_first = 0 in hypothesis.lines
    if fitted is not None:
        q1, q1_err, fwhm, fwhm_err, model = fitted.q1_A, fitted.q1_err_A, fitted.fwhm_q_A, fitted.fwhm_q_err_A, fitted.model
        if not observed_first:
            notes.append("first order not observed: its width, and the Scherrer length, from the other lines' widths")
        notes.extend(_off_line_notes(survey.peaks, hypothesis, q1, q1_err))
    else:
        if survey.model is not None:
            notes.append("lattice fit failed: q1 from the peak positions")
        q1, q1_err = hypothesis.q1_A, hypothesis.q1_err_A
        blends = hypothesis.blends or (-1,) * len(hypothesis.lines)
        assigned = sorted(((line, i) for i, (line, b) in enumerate(zip(hypothesis.lines, blends)) if line >= 0 and b < 0))
        if assigned:
            line, lowest = assigned[0]
            fwhm, fwhm_err = survey.peaks[lowest].fwhm_q_A, survey.peaks[lowest].fwhm_err_q_A
            if line != 0:
                notes.append(f"first order not observed: Scherrer length from {hypothesis.hkl[lowest]}")
        else:
            fwhm = fwhm_err = nan
    size, size_err = scherrer_length_nm(q1, fwhm, wavelength_A, k=settings.scherrer_k,
                                        instrument_fwhm_deg=settings.instrument_fwhm_deg, fwhm_err_q_A=fwhm_err)
    if not math.isfinite(size):
        notes.append("first peak not broader than the instrument: no Scherrer length")
    a, a_err, nn = lattice_constants_nm(hypothesis.lattice, q1, q1_err)
    d = 2.0 * math.pi / q1
    return SuperlatticeResult(survey.peaks, hypothesis.hkl, hypothesis.lattice, hypothesis, survey.hypotheses,
                              q1, q1_err, d, 2.0 * math.pi * q1_err / q1**2, fwhm, fwhm_err, size, size_err,
                              a, a_err, nn, model, tuple(notes))


def analyse_pattern(q_A, intensity, sigma, wavelength_A: float,
                    settings: SuperlatticeSettings | None = None) -> SuperlatticeResult:
    """Peaks, lattice, first-order spacing and Scherrer length of one SAXS pattern on its own.

    The best consistent indexing is taken (:func:`survey_pattern`,
    :func:`measure_pattern`); a series is better served by
    :func:`dacpipe.saxs.stage.run`, which carries the order from point to
    point where one point cannot decide.

    Parameters
    ----------
    q_A, intensity, sigma : array_like
        The integrated pattern (q in 1/angstrom); ``sigma`` may be None.
    wavelength_A : float
        X-ray wavelength (angstrom), for the Scherrer length in 2theta.
    settings : SuperlatticeSettings, optional
        Default: the schema's defaults.

    Returns
    -------
    SuperlatticeResult

    Raises
    ------
    InputError
        Too few usable points, or no superlattice peak above the noise.
    """
    settings = settings if settings is not None else SuperlatticeSettings.from_config({})
    # One BLAS thread, as in the stage (:func:`dacpipe.saxs.stage.run`): the fits solve small least
    # squares, which a second thread only slows on a loaded machine (measured: the steep-form-factor
    # and missing-first-order tests of tests/test_superlattice_series.py, five patterns, 190 s with
    # the default threads at a load of ~4 on 2 cores, 12.5 s with one at ~2), and the results then
    # do not depend on the machine's core count.
    with threadpool_limits(limits=1, user_api="blas"):
        survey = survey_pattern(q_A, intensity, sigma, settings)
        best, rival, confident = assess(survey.hypotheses, settings.tolerance_rel)
        notes = [] if best is None or confident else [ambiguity_note(best, rival)]
        return measure_pattern(survey, best, wavelength_A, settings, notes)


CONFIDENT_SCORE = 1.0
"""A point's best indexing stands on its own when it scores at least this (net
evidence of one peak) and :data:`AMBIGUITY_MARGIN` above every rival."""


def assess(hypotheses: Sequence[LatticeHypothesis], tolerance_rel: float = 0.02
           ) -> tuple[LatticeHypothesis | None, LatticeHypothesis | None, bool]:
    """The best consistent indexing, its strongest rival, and whether the best stands on its own.

    A rival is a consistent indexing by another lattice or with a first order
    more than ``tolerance_rel`` away. The best stands on its own
    (confident) when it scores at least :data:`CONFIDENT_SCORE` and
    :data:`AMBIGUITY_MARGIN` more than the rival.
    """
    good = [h for h in hypotheses if h.consistent]
    if not good:
        return None, None, False
    best = good[0]
    rivals = [h for h in good[1:] if h.lattice != best.lattice or abs(h.q1_A / best.q1_A - 1.0) > tolerance_rel]
    rival = rivals[0] if rivals else None
    confident = best.score >= CONFIDENT_SCORE and (rival is None or best.score - rival.score >= AMBIGUITY_MARGIN)
    return best, rival, confident


def ambiguity_note(best: LatticeHypothesis, rival: LatticeHypothesis | None) -> str:
    """The warning of a point whose indexing does not stand on its own."""
    if rival is None:
        return f"order uncertain: {best.lattice} with d1 = {best.d_A:.2f} A scores only {best.score:.1f}"
    return (f"order ambiguous: {best.lattice} with d1 = {best.d_A:.2f} A (score {best.score:.1f}) against "
            f"{rival.lattice} with d1 = {rival.d_A:.2f} A ({rival.score:.1f})")
