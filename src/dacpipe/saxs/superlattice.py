"""Superlattice order from SAXS patterns: peaks, spacing, coherence length, lattice type.

A film or powder of nanocrystals packed in a superlattice scatters as

    I(q) = P(q) S(q) + B(q)

(the decoupling approximation: Förster et al., J. Phys. Chem. B 109, 1347
(2005); Li, Senesi & Lee, Chem. Rev. 116, 11128 (2016)), with ``P`` the
form factor of one particle, which falls by decades over the pattern, ``S``
the structure factor, whose Bragg peaks sit on ``S = 1``, and ``B`` a weak
background. The superlattice peaks are therefore small bumps on a steep,
curved envelope, and they are *multiplied* by it: an additive fit over a
smooth background (what :func:`dacpipe.peaks.fit_peaks` does) pulls each peak
towards the side where ``P`` is larger. On the data-sample patterns (111 at
q = 0.094-0.104 1/A, ``P`` falling as ~q^-4 towards its first zero at 0.15
1/A) ``fit_peaks`` on ``I`` placed 111 0.4-0.8 % low, split it in two on two
of the six patterns, with reduced chi^2 of 11 to 3400 (measured when this
module was written). Here:

1. **Envelope** (detection). SNIP clipping (:func:`dacpipe.peaks.estimate_background`)
   of ``ln I`` with a half-window of :data:`ENVELOPE_FWHM` widths of the
   strongest peak (itself measured on a first envelope 5 % of the q range
   wide): in the logarithm the peaks are additive, ``ln I = ln P + ln S``,
   and the clipping removes them. ``r = I / envelope`` is the structure
   factor on a baseline near 1, where :func:`dacpipe.peaks.find_peaks` finds
   the candidates (curvature maxima: a shoulder one FWHM from a stronger
   peak too); their heights ``r - 1`` are read off the smoothed ratio.
2. **Window fits** (measurement). Each group of candidates closer than
   :data:`GROUP_FWHM` widths is fitted on the measured ``I`` in a window
   reaching :data:`WINDOW_FWHM` widths beyond its outer peaks, with the
   multiplicative model

       I(q) = exp(b0 + b1 u + b2 u^2 + b3 u^3) (1 + sum_k A_k g(q; q_k, w_k))

   where ``u`` is ``ln q`` scaled to [-1, 1] over the window (a power law with
   a curved exponent: the form factor between its zeros) and ``g`` a
   Gaussian (or pseudo-Voigt, Lorentzian) of height 1 and FWHM ``w_k``. The
   ``q_k`` are the peaks of ``S``, the lattice's, not those of the product.
   Peaks of the other groups enter each window as fixed factors. ``A_k`` is
   the peak's height relative to the envelope, ``S - 1`` at its top. Errors
   come from the weighted fit's covariance, scaled by its reduced chi^2 when
   above 1. A peak is kept when its fit converged inside its bounds, its
   amplitude is ``min_snr`` standard errors from zero, its height ``min_snr``
   noise sigma, its amplitude at least ``min_relative_amplitude`` of the
   strongest and its FWHM within :data:`WIDTH_RATIO` of the strongest's;
   otherwise the weakest offender of its group is dropped and the group
   fitted again (a wiggle of the envelope taken for a peak pulls its
   neighbours).
3. **First peak.** ``q1`` is the peak that stands highest above the
   envelope at detection: the first order of a superlattice is its strongest
   peak in ``S`` (the Lorentz factor and the disorder weaken the higher
   orders), and the height relative to the envelope, unlike the count, does
   not favour a low-q artefact.
4. **Order** from the ratios ``q_n / q1`` (:func:`classify_order`), the
   lattice constant and nearest-neighbour distance from ``q1``
   (:func:`lattice_constants_nm`) and the Scherrer coherence length from the
   FWHM of ``q1`` (:func:`scherrer_length_nm`).

A shoulder that shows no curvature maximum of its own is not resolved: on
the data-sample the fcc 222, 12 % of 111 and 1.2 FWHM above 311 at the
lowest pressure, merges into 311 (which moves by < 0.1 %).

Positions are those of the ``q`` given: pyFAI labels a bin with its centre,
while the mean q of the pixels that fall in a bin can lie a few percent of a
bin width away (see :mod:`dacpipe.peaks`): on the data-sample detector
(1.5e-3 1/A bins) that is below 1e-4 1/A, 0.1 % of q1.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import find_peaks as _scipy_find_peaks
from scipy.signal import peak_widths, savgol_filter

from ..core.errors import ConfigError, InputError
from ..io.config import validate_section
from ..xrd import peaks as _peaks

__all__ = ["LATTICES", "OrderMatch", "SaxsPeak", "SaxsPeaks", "SuperlatticeResult", "SuperlatticeSettings",
           "analyse_pattern", "classify_order", "find_superlattice_peaks", "lattice_constants_nm", "scherrer_length_nm"]

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
"""Score lost by a lattice for each line it predicts, inside the observed
range, where no peak is seen (an observed peak it leaves unexplained costs 1)."""

MIN_POINTS = 20
"""Fewer usable points cannot hold an envelope and a peak."""

PROFILES = ("gaussian", "pseudo-voigt", "lorentzian")

_LN2 = math.log(2.0)


def _lines(pairs: Sequence[tuple[str, float]]) -> tuple[tuple[str, float], ...]:
    """(label, q ratio to the first line) from (label, sqrt-argument or ratio) pairs."""
    first = pairs[0][1]
    return tuple((label, value / first) for label, value in pairs)


_S = math.sqrt
# Peak positions q_hkl / q_first of each lattice type, first lines only (the
# form factor and the disorder leave no more in a SAXS pattern). Cubic:
# q_hkl = 2 pi sqrt(h^2 + k^2 + l^2) / a with the reflection conditions of
# the lattice (fcc: h, k, l all odd or all even; bcc: h + k + l even);
# 2D hexagonal (columns): q_hk = 4 pi sqrt(h^2 + hk + k^2) / (sqrt(3) a);
# lamellar: q_00l = 2 pi l / d. As tabulated by Li, Senesi & Lee, Chem. Rev.
# 116, 11128 (2016), and Förster et al., J. Phys. Chem. B 109, 1347 (2005).
LATTICES: dict[str, tuple[tuple[str, float], ...]] = {
    "lamellar": _lines([(f"00{l}", float(l)) for l in range(1, 9)]),
    "hexagonal": _lines([("10", _S(1)), ("11", _S(3)), ("20", _S(4)), ("21", _S(7)), ("30", _S(9)),
                         ("22", _S(12)), ("31", _S(13)), ("40", _S(16))]),
    "sc": _lines([("100", _S(1)), ("110", _S(2)), ("111", _S(3)), ("200", _S(4)), ("210", _S(5)),
                  ("211", _S(6)), ("220", _S(8)), ("300", _S(9)), ("310", _S(10))]),
    "bcc": _lines([("110", _S(2)), ("200", _S(4)), ("211", _S(6)), ("220", _S(8)), ("310", _S(10)),
                   ("222", _S(12)), ("321", _S(14)), ("400", _S(16)), ("411", _S(18))]),
    "fcc": _lines([("111", _S(3)), ("200", _S(4)), ("220", _S(8)), ("311", _S(11)), ("222", _S(12)),
                   ("400", _S(16)), ("331", _S(19)), ("420", _S(20)), ("422", _S(24))]),
}
"""Lattice name -> ((label, q / q_first), ...). ``sc`` and ``bcc`` share their
first six ratios (1 : sqrt 2 : sqrt 3 : 2 : sqrt 5 : sqrt 6); they differ
first at sqrt 7, which a bcc has and a simple cubic lattice lacks."""

DEFAULT_LATTICES = ("lamellar", "hexagonal", "bcc", "fcc")


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
        Height relative to the envelope: ``S - 1`` at the top of the peak.
    snr : float
        Height above the envelope, in counts, over the noise there.
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
    """The superlattice peaks of one pattern.

    Attributes
    ----------
    peaks : tuple of SaxsPeak
        By increasing q.
    first : int
        Index in ``peaks`` of the first-order peak: the highest above the
        envelope at detection (the largest ``S - 1``), -1 when there is no peak.
        The first order of a superlattice is its strongest peak in ``S``
        (Lorentz factor and disorder weaken the higher orders).
    """

    peaks: tuple[SaxsPeak, ...]
    first: int


@dataclass(frozen=True)
class OrderMatch:
    """The lattice type that explains the peak positions best.

    Attributes
    ----------
    order : str
        A key of :data:`LATTICES`, or ``"unknown"`` (fewer than 2 peaks, or
        no lattice explains at least two peaks and twice as many as it
        leaves unexplained).
    hkl : tuple of str
        Per observed peak (in the order given), its line under ``order``;
        ``""`` where it has none (or the order is unknown).
    n_explained : int
        Observed peaks with a line of ``order`` within the tolerance.
    n_missing : int
        Lines of ``order`` inside the observed range with no peak.
    score : float
        ``n_explained - n_unexplained - MISSING_PENALTY * n_missing``.
    scores : dict
        The score of every lattice considered.
    """

    order: str
    hkl: tuple[str, ...]
    n_explained: int
    n_missing: int
    score: float
    scores: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SuperlatticeResult:
    """Everything :func:`analyse_pattern` measures on one SAXS pattern.

    Attributes
    ----------
    peaks : tuple of SaxsPeak
        The significant peaks, by increasing q.
    first : SaxsPeak
        The first-order peak (see :class:`SaxsPeaks`).
    d_A, d_err_A : float
        Spacing of the first order, ``2 pi / q1`` (angstrom), and its error.
    scherrer_nm, scherrer_err_nm : float
        Scherrer coherence length from the first peak's width (nm); NaN
        when the peak is not broader than the instrument.
    order : OrderMatch
        The lattice type, with the line of every peak.
    lattice_constant_nm, lattice_constant_err_nm, nn_distance_nm : float
        From ``q1`` and ``order`` (:func:`lattice_constants_nm`); NaN when
        the order gives none.
    """

    peaks: tuple[SaxsPeak, ...]
    first: SaxsPeak
    d_A: float
    d_err_A: float
    scherrer_nm: float
    scherrer_err_nm: float
    order: OrderMatch
    lattice_constant_nm: float
    lattice_constant_err_nm: float
    nn_distance_nm: float


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
        An observed ratio and a lattice's line match within this relative
        distance.
    lattices : tuple of str
        The lattice types considered (keys of :data:`LATTICES`); on a tie the
        first listed wins.
    profile : str
        Peak shape: ``gaussian``, ``pseudo-voigt`` (one eta per group) or
        ``lorentzian``.
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
    def from_config(cls, section: Mapping | None) -> "SuperlatticeSettings":
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


def classify_order(q_A: Sequence[float], q1_A: float, *, tolerance_rel: float = 0.02,
                   lattices: Sequence[str] = DEFAULT_LATTICES) -> OrderMatch:
    """The lattice type whose line ratios explain the observed peaks best.

    Each observed ratio ``q / q1`` is matched to the nearest line ratio of a
    lattice (:data:`LATTICES`, the first line being ``q1``) within
    ``tolerance_rel``; the lattice scores one per peak it explains, minus one
    per peak it leaves unexplained, minus :data:`MISSING_PENALTY` per line it
    predicts inside the observed range (up to the last peak) where no peak
    is seen. The missing lines weigh less than unexplained peaks because a
    line can vanish at a zero of the form factor (the fcc 220 of the
    data-sample sits near the first zero of its 6 nm spheres). Ratio tables:
    Li, Senesi & Lee, Chem. Rev. 116, 11128 (2016); Förster et al., J. Phys.
    Chem. B 109, 1347 (2005).

    Parameters
    ----------
    q_A : sequence of float
        Positions of all significant peaks (``q1`` among them).
    q1_A : float
        The first-order peak.
    tolerance_rel : float
        Relative tolerance of a match.
    lattices : sequence of str
        Lattice types considered; on equal scores the first listed wins.

    Returns
    -------
    OrderMatch
        ``order == "unknown"`` with fewer than 2 peaks, or when the best
        lattice explains fewer than 2 peaks or fewer than twice as many as
        it leaves unexplained.
    """
    q = np.asarray(q_A, dtype=float)
    if q.size < 2 or not (math.isfinite(q1_A) and q1_A > 0):
        return OrderMatch("unknown", ("",) * q.size, 0, 0, math.nan)
    obs = q / q1_A
    top = float(np.max(obs)) * (1.0 + tolerance_rel)
    best: OrderMatch | None = None
    scores = {}
    for name in lattices:
        labels = [label for label, _ in LATTICES[name]]
        ratios = np.array([r for _, r in LATTICES[name]])
        rel = np.abs(obs[:, None] / ratios[None, :] - 1.0)
        nearest = np.argmin(rel, axis=1)
        hit = rel[np.arange(obs.size), nearest] <= tolerance_rel
        hkl = tuple(labels[j] if ok else "" for j, ok in zip(nearest, hit))
        seen = set(nearest[hit].tolist())
        in_range = [j for j, r in enumerate(ratios) if r <= top]
        missing = sum(1 for j in in_range if j not in seen)
        explained = int(hit.sum())
        score = explained - (obs.size - explained) - MISSING_PENALTY * missing
        scores[name] = score
        if best is None or score > best.score:
            best = OrderMatch(name, hkl, explained, missing, score)
    assert best is not None
    unexplained = obs.size - best.n_explained
    if best.n_explained < 2 or best.n_explained < 2 * unexplained:
        return OrderMatch("unknown", ("",) * q.size, 0, 0, best.score, scores)
    return OrderMatch(best.order, best.hkl, best.n_explained, best.n_missing, best.score, scores)


# --------------------------------------------------------------------------
# Peaks
# --------------------------------------------------------------------------

_ETA0 = {"gaussian": 0.0, "lorentzian": 1.0, "pseudo-voigt": 0.3}


def _shape(x, c, w, eta):
    """Profile of height 1 and FWHM ``w`` at ``c``: eta Lorentzian + (1 - eta) Gaussian."""
    v2 = ((x - c) / w) ** 2
    return eta / (1.0 + 4.0 * v2) + (1.0 - eta) * np.exp(-4.0 * _LN2 * v2)


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


def _fit_group(x, y, s, group: list[_Cand], others: np.ndarray, profile: str, dx: float):
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

    def parts(p):
        b, eta, pk = unpack(p)
        c, w, a = pk[:, 0:1], pk[:, 1:2], pk[:, 2:3]
        v = (x[None, :] - c) / w
        lor = 1.0 / (1.0 + 4.0 * v * v)
        gau = np.exp(-4.0 * _LN2 * v * v)
        g = eta * lor + (1.0 - eta) * gau
        base = np.exp(b @ powers) * others  # envelope times the other groups
        return b, eta, c, w, a, v, lor, gau, g, base

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
        dg = 8.0 * v / w * (eta * lor * lor + (1.0 - eta) * _LN2 * gau)  # dg/dc; dg/dw = v dg/dc
        scale = base * inv_s
        J[:, j0::3] = (a * dg * scale).T
        J[:, j0 + 1::3] = (a * dg * v * scale).T
        J[:, j0 + 2::3] = (g * scale).T
        return J

    start = 1.0 + sum(g.a * _shape(x, g.c, g.w, eta0) for g in group)
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
        try:
            _, sv, vt = np.linalg.svd(jac(p)[:, free], full_matrices=False)
            if sv.size and sv[-1] > 1e-10 * sv[0]:
                err[free] = np.sqrt(np.diag((vt.T / sv**2) @ vt) * max(chi2, 1.0))
        except np.linalg.LinAlgError:
            pass
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


def _fit_all(q, y, s, cands: list[_Cand], profile: str, dx: float,
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
                others += g.a * _shape(x, g.c, g.w, g.eta)
        fit = _fit_group(x, y[m], s[m], group, others, profile, dx)
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
    """Noise of ``y`` when no sigma is given: the relative noise of ln y (MAD
    of second differences; smooth signal cancels) times y."""
    d2 = np.diff(np.log(y), 2)
    rel = float(np.median(np.abs(d2))) * 1.4826 / math.sqrt(6.0)
    return max(rel, 1e-6) * y


def _strongest_fwhm(q, r) -> float:
    """FWHM of the highest maximum of ``r`` (a first look, before any fit)."""
    smooth = savgol_filter(r, 5, 2) if len(r) > 7 else r
    idx, _ = _scipy_find_peaks(smooth)
    if not len(idx):
        return 0.05 * (q[-1] - q[0])
    top = idx[int(np.argmax(smooth[idx]))]
    width_pts = peak_widths(smooth, [top], rel_height=0.5)[0][0]
    return float(max(width_pts, 2.0) * np.median(np.diff(q)))


def find_superlattice_peaks(q_A, intensity, sigma=None, *, min_snr: float = 5.0,
                            min_relative_amplitude: float = 0.05, profile: str = "gaussian",
                            envelope_width_A: float | None = None, q_min_A: float | None = None,
                            q_max_A: float | None = None) -> SaxsPeaks:
    """The superlattice peaks of one SAXS pattern (see the module docstring).

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
        The peaks by increasing q, and which is the first order; no peaks
        when nothing stands out.

    Raises
    ------
    InputError
        Fewer than :data:`MIN_POINTS` usable points.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
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
    dx = float(np.median(np.diff(q)))
    none = SaxsPeaks((), -1)

    # 1. Envelope of ln I (SNIP); the candidates on I / envelope (dacpipe.peaks.find_peaks),
    #    their heights, and the strongest one's width, read off the smoothed ratio.
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

    # 2. Window fits on I.
    kept = _fit_all(q, y, s, cands, profile, dx, lambda g: accept(g.a, g.w, g.snr, g.a_err))
    if not kept:
        return none
    first = min(kept, key=lambda g: abs(g.c - strongest_q))
    if abs(first.c - strongest_q) > strongest_fwhm:
        raise InputError(f"the strongest peak, at q = {strongest_q:.4f} 1/A, could not be fitted")
    return SaxsPeaks(tuple(SaxsPeak(g.c, g.c_err, g.w, g.w_err, g.a, g.a_err, g.snr) for g in kept),
                     kept.index(first))


# --------------------------------------------------------------------------
# One pattern, and the stage
# --------------------------------------------------------------------------


def analyse_pattern(q_A, intensity, sigma, wavelength_A: float,
                    settings: SuperlatticeSettings | None = None) -> SuperlatticeResult:
    """Peaks, first-order spacing, Scherrer length and order of one SAXS pattern.

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
    found = find_superlattice_peaks(q_A, intensity, sigma, min_snr=settings.min_snr,
                                    min_relative_amplitude=settings.min_relative_amplitude,
                                    profile=settings.profile, envelope_width_A=settings.envelope_width_A,
                                    q_min_A=settings.q_min_A, q_max_A=settings.q_max_A)
    if not found.peaks:
        raise InputError("no superlattice peak above the noise")
    first = found.peaks[found.first]
    size, size_err = scherrer_length_nm(first.q_A, first.fwhm_q_A, wavelength_A, k=settings.scherrer_k,
                                        instrument_fwhm_deg=settings.instrument_fwhm_deg,
                                        fwhm_err_q_A=first.fwhm_err_q_A)
    order = classify_order([p.q_A for p in found.peaks], first.q_A, tolerance_rel=settings.tolerance_rel,
                           lattices=settings.lattices)
    a, a_err, nn = lattice_constants_nm(order.order, first.q_A, first.q_err_A)
    return SuperlatticeResult(peaks=found.peaks, first=first, d_A=first.d_spacing_A, d_err_A=first.d_spacing_err_A,
                              scherrer_nm=size, scherrer_err_nm=size_err, order=order, lattice_constant_nm=a,
                              lattice_constant_err_nm=a_err, nn_distance_nm=nn)


