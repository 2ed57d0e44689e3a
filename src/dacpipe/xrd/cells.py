"""Unit cells: their geometry (metric tensor, volume, d-spacings) and their refinement
from indexed peak positions.

Given the peaks of one phase at one pressure point, each with its Miller
indices and its position q = 2 pi / d (1/angstrom) with a standard error,
:func:`refine_cell` returns the cell, its standard errors and covariance, and
the volume per formula unit, so phases with different Z compare directly.

Method
------
1/d^2 = h^T G* h is linear in the components of the reciprocal metric
tensor G* (Giacovazzo et al., *Fundamentals of Crystallography*, ch. 2), so
for each crystal system 1/d^2 is a linear combination of a few reciprocal
parameters p_j with known coefficients x_j(hkl)::

    cubic                  1/d^2 = (h^2 + k^2 + l^2) / a^2
    hexagonal, trigonal    1/d^2 = 4/3 (h^2 + hk + k^2) / a^2 + l^2 / c^2
    tetragonal             1/d^2 = (h^2 + k^2) / a^2 + l^2 / c^2
    orthorhombic           1/d^2 = h^2 / a^2 + k^2 / b^2 + l^2 / c^2
    monoclinic (b unique)  1/d^2 = h^2 a*^2 + k^2 b*^2 + l^2 c*^2 + 2 h l a* c* cos(beta*)

(trigonal cells in rhombohedral axes and triclinic cells work the same way).
That is the classical linear least squares of precision lattice constants
(M. U. Cohen, Rev. Sci. Instrum. 6, 68 (1935); Holland & Redfern,
Mineral. Mag. 61, 65 (1997)). Here:

1. A weighted linear fit of y = (q / 2 pi)^2 = 1/d^2, with
   sigma_y = 2 q sigma_q / (2 pi)^2, gives the p_j without any starting
   values: it cannot fall into a wrong minimum.
2. Gauss-Newton iterations on q itself, q = 2 pi sqrt(x . p), refine it to
   the weighted least-squares estimate in the measured quantity, whose
   errors are the Gaussian ones the peak fit reports; the linear estimate
   differs from it only at order sigma^2, so two or three steps converge.
3. The covariance of p, (J^T W J)^-1 at the solution, is carried to
   a, b, c, the angles and the volume by the exact Jacobian of the map
   G* -> G = G*^-1 (dG = -G dG* G; d ln V = -tr(G dG*) / 2), so the volume
   error includes the a-c (and every other) covariance.

Error convention
----------------
The covariance is multiplied by the reduced chi-square chi2_nu when
chi2_nu > 1: the input errors then underestimate the scatter (peak-fit
errors too small, strain, a misindexed line), and the scatter itself is the
better measure. It is never reduced when chi2_nu < 1, because with the few
degrees of freedom of a cell fit a small chi2_nu is a weak statistic and
shrinking the errors on it would be optimistic. With no degrees of freedom
(as many peaks as parameters) chi2_nu is NaN and the errors come from the
input sigma_q alone. This is dacpipe's one rule (:func:`dacpipe.core.lsq.covariance_scale`).

Refusals
--------
A set of reflections that cannot fix every free parameter (a hexagonal phase
with only 00l lines, a tetragonal one with only hk0 lines, an orthorhombic
one whose lines do not separate a from b) raises :class:`InputError` with
one line naming the system and what is missing; so does a set whose fit
gives no valid cell (a reciprocal metric that is not positive definite, the
sign of an inconsistent indexing). Parameters are never returned silently
wrong.

Units are in the names: ``_A`` angstrom, ``_A3`` cubic angstrom, ``_deg``
degrees; q is in 1/angstrom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..core.errors import InputError
from ..core.lsq import covariance_scale

Cell = tuple[float, float, float, float, float, float]


SYSTEMS = ("cubic", "hexagonal", "trigonal", "tetragonal", "orthorhombic", "monoclinic", "triclinic")


def metric_tensor(cell: Sequence[float]) -> np.ndarray:
    """Direct metric tensor G_ij = a_i . a_j (A^2) of a cell (a, b, c, alpha, beta, gamma)."""
    a, b, c, al, be, ga = (float(v) for v in cell)
    ca, cb, cg = (math.cos(math.radians(t)) for t in (al, be, ga))
    # cos(90 deg) is 6e-17, not 0; zero it so orthogonal cells stay exactly diagonal
    ca, cb, cg = (0.0 if abs(v) < 1e-15 else v for v in (ca, cb, cg))
    return np.array([[a * a, a * b * cg, a * c * cb], [a * b * cg, b * b, b * c * ca], [a * c * cb, b * c * ca, c * c]])


def cell_volume_A3(cell: Sequence[float]) -> float:
    """Cell volume sqrt(det G) in A^3."""
    det = float(np.linalg.det(metric_tensor(cell)))
    if det <= 0:
        raise ValueError(f"cell {tuple(cell)} has no volume")
    return math.sqrt(det)


def d_spacing_A(cell: Sequence[float], hkl) -> float | np.ndarray:
    """d-spacing of (hkl) in any cell, from the reciprocal metric tensor.

    1/d^2 = h^T G* h with G* = G^-1 (Giacovazzo et al., Fundamentals of
    Crystallography, ch. 2), valid for every crystal system.

    Parameters
    ----------
    cell : sequence of 6 floats
        a, b, c (A), alpha, beta, gamma (deg).
    hkl : (3,) or (N, 3) array_like of int
        Miller indices.

    Returns
    -------
    float for one hkl, ndarray of shape (N,) for several.
    """
    h = np.asarray(hkl, dtype=float)
    g_star = np.linalg.inv(metric_tensor(cell))
    q = np.einsum("...i,ij,...j->...", h, g_star, h)
    with np.errstate(divide="ignore"):
        d = 1.0 / np.sqrt(q)
    return float(d) if np.ndim(d) == 0 else d


def cell_axes(system: str) -> tuple[str, ...]:
    """The cell edges a crystal system leaves free, as stored per phase."""
    return {"cubic": ("a",), "hexagonal": ("a", "c"), "trigonal": ("a", "c"), "tetragonal": ("a", "c")}.get(
        system, ("a", "b", "c"))


__all__ = ["SYSTEMS", "CellFit", "IndexedPeak", "cell_volume_A3", "d_spacing_A", "metric_tensor", "q_calc_A",
           "refine_cell", "volume_fu_A3"]

TWO_PI = 2.0 * math.pi

# Singular values of the column-normalised design matrix below this fraction
# of the largest mark a parameter the reflections do not fix. Index products
# are small integers, so a real degeneracy gives ~1e-16 and a genuine but
# poorly conditioned set stays far above it.
RANK_REL_TOL = 1e-9
# Gauss-Newton stops when no parameter moves by more than this fraction of
# itself (or of the reciprocal metric's scale, for off-diagonal terms).
GN_REL_TOL = 1e-14
GN_MAX_ITER = 20
# Angles within this of 90 or 120 degrees in a start cell count as exactly
# that, when the cell is used to choose a setting.
ANGLE_TOL_DEG = 1e-3

_PARAMETER_ROW = {"a_A": 0, "b_A": 1, "c_A": 2, "alpha_deg": 3, "beta_deg": 4, "gamma_deg": 5}


# --------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexedPeak:
    """One observed peak with its Miller indices.

    Attributes
    ----------
    hkl : tuple of 3 int
        Miller indices in the setting of the cell to be refined.
    q_A : float
        Peak position q = 2 pi / d (1/angstrom).
    q_err_A : float
        Standard error of ``q_A`` (1/angstrom); must be positive.
    """

    hkl: tuple[int, int, int]
    q_A: float
    q_err_A: float

    def __post_init__(self):
        # Indices often arrive as numpy integers or a list; store plain ints so
        # the peak hashes and prints cleanly. Bad input is left as given and
        # reported by refine_cell, which can say which phase it concerns.
        try:
            hkl = tuple(int(v) for v in self.hkl)
        except (TypeError, ValueError):
            return
        if len(hkl) == 3 and all(h == v for h, v in zip(hkl, self.hkl)):
            object.__setattr__(self, "hkl", hkl)

    @classmethod
    def from_d(cls, hkl, d_A: float, d_err_A: float) -> "IndexedPeak":
        """A peak given by its d-spacing: q = 2 pi / d, sigma_q = 2 pi sigma_d / d^2."""
        d_A, d_err_A = float(d_A), float(d_err_A)
        if not d_A > 0:
            raise InputError(f"peak {tuple(hkl)}: d-spacing {d_A} A is not positive")
        return cls(hkl, TWO_PI / d_A, TWO_PI * d_err_A / d_A**2)

    @property
    def d_A(self) -> float:
        """d-spacing 2 pi / q (angstrom)."""
        return TWO_PI / self.q_A


@dataclass(frozen=True, eq=False)
class CellFit:
    """A refined cell with its errors.

    Attributes
    ----------
    system : str
        Crystal system fitted (one of :data:`dacpipe.xrd.cells.SYSTEMS`).
    cell : tuple of 6 float
        a, b, c (A), alpha, beta, gamma (deg); the parameters the system
        fixes (b = a, gamma = 120 ...) are set exactly.
    errors : dict
        Standard errors of the free parameters only, keyed as in
        ``parameter_names`` ("a_A", "c_A", "beta_deg", ...); scaled by
        sqrt(reduced_chi2) when that exceeds 1 (module docstring).
    covariance : ndarray, shape (n, n)
        Covariance of the free parameters, in the order of
        ``parameter_names``, with the same scaling.
    parameter_names : tuple of str
        The free parameters of the system.
    volume_A3, volume_err_A3 : float
        Cell volume and its standard error (covariances included).
    volume_fu_A3, volume_fu_err_A3 : float
        The same per formula unit; NaN when Z is unknown (Z <= 0).
    reduced_chi2 : float
        sum(((q_obs - q_calc) / sigma_q)^2) / (n_peaks - n_parameters); NaN
        with no degrees of freedom.
    n_peaks : int
        Number of peaks used.
    residuals_q_A : ndarray
        q_obs - q_calc per peak (1/A), in the order of the input.
    hkl : tuple of tuple
        Miller indices per peak, in the same order.
    error_scale : float
        Factor applied to the errors: sqrt(reduced_chi2) when > 1, else 1.
    residuals_two_theta_deg : ndarray or None
        2theta_obs - 2theta_calc per peak (deg) when a wavelength was given.
    setting : str
        Axes of the fit: "hexagonal axes" or "rhombohedral axes" for trigonal
        cells, "unique axis b" (or a, c) for monoclinic, else the system.
    """

    system: str
    cell: tuple[float, float, float, float, float, float]
    errors: dict[str, float]
    covariance: np.ndarray
    parameter_names: tuple[str, ...]
    volume_A3: float
    volume_err_A3: float
    volume_fu_A3: float
    volume_fu_err_A3: float
    reduced_chi2: float
    n_peaks: int
    residuals_q_A: np.ndarray
    hkl: tuple[tuple[int, int, int], ...]
    error_scale: float = 1.0
    residuals_two_theta_deg: np.ndarray | None = None
    setting: str = ""
    correlation: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self):
        if self.correlation is None:
            s = np.sqrt(np.diag(self.covariance))
            with np.errstate(invalid="ignore", divide="ignore"):
                object.__setattr__(self, "correlation", self.covariance / np.outer(s, s))

    @property
    def dof(self) -> int:
        """Degrees of freedom, n_peaks - number of free parameters."""
        return self.n_peaks - len(self.parameter_names)


# --------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------


def q_calc_A(cell: Sequence[float], hkl) -> float | np.ndarray:
    """q = 2 pi / d (1/angstrom) of (hkl) in ``cell`` (a, b, c, alpha, beta, gamma).

    Any crystal system (reciprocal metric tensor, :func:`dacpipe.xrd.cells.d_spacing_A`).
    A float for one hkl, an array for an (N, 3) array of them.
    """
    d = d_spacing_A(cell, hkl)
    return TWO_PI / d


def volume_fu_A3(cell: Sequence[float], z_formula_units: int) -> float:
    """Volume per formula unit V / Z (A^3) of ``cell``.

    Zinc blende and rock salt have Z = 4, wurtzite Z = 2, cinnabar Z = 3.
    """
    if z_formula_units <= 0:
        raise ValueError(f"formula units per cell must be positive, got Z = {z_formula_units}")
    return cell_volume_A3(cell) / z_formula_units


# --------------------------------------------------------------------------
# Settings: which reciprocal-metric components are free, per crystal system
# --------------------------------------------------------------------------


def _sym(i: int, j: int) -> np.ndarray:
    """Basis matrix of the (i, j) component of a symmetric 3x3 tensor."""
    e = np.zeros((3, 3))
    e[i, j] = e[j, i] = 1.0
    return e


@dataclass(frozen=True)
class _Setting:
    """How one crystal system (in one setting) parametrises G*.

    G* = sum_j p_j basis[j]; ``needs[j]`` says what kind of reflection fixes
    p_j, for the refusal message; ``lengths`` and ``angles`` rebuild the
    full cell from the fitted one (an int copies that length, a float is a
    fixed angle, a str copies that fitted angle).
    """

    label: str
    basis: tuple[np.ndarray, ...]
    needs: tuple[str, ...]
    free: tuple[str, ...]
    lengths: tuple[int, int, int]
    angles: tuple[float | str, float | str, float | str]


_HEX_E = np.array([[1.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.0]])  # a*^2 (h^2 + hk + k^2), gamma* = 60
_DIAG = tuple(_sym(i, i) for i in range(3))
_ANGLE_PAIRS = {"alpha": (1, 2), "beta": (0, 2), "gamma": (0, 1)}
_ANGLE_NEEDS = {"alpha": "k and l both != 0", "beta": "h and l both != 0", "gamma": "h and k both != 0"}
_LENGTH_NEEDS = ("h != 0 (to fix a)", "k != 0 (to fix b)", "l != 0 (to fix c)")

_CUBIC = _Setting("cubic", (np.eye(3),), ("any non-zero hkl",), ("a_A",), (0, 0, 0), (90.0, 90.0, 90.0))
_HEXAGONAL_AXES = _Setting(
    "hexagonal axes", (_HEX_E, _DIAG[2]), ("h or k != 0 (to fix a)", "l != 0 (to fix c)"), ("a_A", "c_A"),
    (0, 0, 2), (90.0, 90.0, 120.0))
_RHOMBOHEDRAL_AXES = _Setting(
    "rhombohedral axes", (np.eye(3), np.ones((3, 3)) - np.eye(3)),
    ("any non-zero hkl", "hk + kl + hl != 0 (to fix alpha)"), ("a_A", "alpha_deg"), (0, 0, 0),
    ("alpha", "alpha", "alpha"))
_TETRAGONAL = _Setting(
    "tetragonal", (_DIAG[0] + _DIAG[1], _DIAG[2]), ("h or k != 0 (to fix a)", "l != 0 (to fix c)"), ("a_A", "c_A"),
    (0, 0, 2), (90.0, 90.0, 90.0))
_ORTHORHOMBIC = _Setting("orthorhombic", _DIAG, _LENGTH_NEEDS, ("a_A", "b_A", "c_A"), (0, 1, 2), (90.0, 90.0, 90.0))
_TRICLINIC = _Setting(
    "triclinic", _DIAG + tuple(_sym(*_ANGLE_PAIRS[n]) for n in ("alpha", "beta", "gamma")),
    _LENGTH_NEEDS + tuple(f"{_ANGLE_NEEDS[n]} (to fix {n})" for n in ("alpha", "beta", "gamma")),
    ("a_A", "b_A", "c_A", "alpha_deg", "beta_deg", "gamma_deg"), (0, 1, 2), ("alpha", "beta", "gamma"))


def _monoclinic(unique: str) -> _Setting:
    angle = {"a": "alpha", "b": "beta", "c": "gamma"}[unique]
    angles = tuple(angle if name == angle else 90.0 for name in ("alpha", "beta", "gamma"))
    return _Setting(f"unique axis {unique}", _DIAG + (_sym(*_ANGLE_PAIRS[angle]),),
                    _LENGTH_NEEDS + (f"{_ANGLE_NEEDS[angle]} (to fix {angle})",),
                    ("a_A", "b_A", "c_A", f"{angle}_deg"), (0, 1, 2), angles)  # type: ignore[arg-type]


def _near(x: float, target: float) -> bool:
    return abs(float(x) - target) <= ANGLE_TOL_DEG


def _setting(system: str, start_cell) -> _Setting:
    """The parametrisation for ``system``; the start cell only picks the setting."""
    angles = None if start_cell is None else tuple(float(v) for v in start_cell[3:6])
    if system == "cubic":
        return _CUBIC
    if system == "tetragonal":
        return _TETRAGONAL
    if system == "orthorhombic":
        return _ORTHORHOMBIC
    if system == "triclinic":
        return _TRICLINIC
    if system in ("hexagonal", "trigonal"):
        if angles is None or (_near(angles[0], 90) and _near(angles[1], 90) and _near(angles[2], 120)):
            return _HEXAGONAL_AXES
        a, b, c = (float(v) for v in start_cell[:3])
        rhombohedral = (math.isclose(a, b, rel_tol=1e-6) and math.isclose(a, c, rel_tol=1e-6)
                        and _near(angles[1], angles[0]) and _near(angles[2], angles[0]) and not _near(angles[0], 90))
        if system == "trigonal" and rhombohedral:
            return _RHOMBOHEDRAL_AXES
        raise InputError(f"{system} cell: start cell {tuple(start_cell)} is in neither hexagonal axes "
                         f"(alpha = beta = 90, gamma = 120)"
                         + (" nor rhombohedral axes (a = b = c, alpha = beta = gamma)" if system == "trigonal" else ""))
    if system == "monoclinic":
        if angles is None:
            return _monoclinic("b")
        off = [axis for axis, t in zip("abc", angles) if not _near(t, 90)]
        if len(off) > 1:
            raise InputError(f"monoclinic cell: start cell {tuple(start_cell)} has more than one angle != 90 deg")
        return _monoclinic(off[0] if off else "b")
    raise InputError(f"crystal system {system!r} is not one of {', '.join(SYSTEMS)}")


# --------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------


def _check_peaks(peaks: Sequence[IndexedPeak], system: str, wavelength_A: float | None):
    """hkl (N, 3) float, q, sigma_q as arrays; InputError for anything unusable."""
    if len(peaks) == 0:
        raise InputError(f"{system} cell: no indexed peaks to refine it on")
    hkl, q, s = [], [], []
    for p in peaks:
        try:
            h = tuple(int(v) for v in p.hkl)
            ok = len(h) == 3 and all(float(v) == float(w) for v, w in zip(h, p.hkl))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"{system} cell: peak indices {p.hkl!r} are not three integers")
        if h == (0, 0, 0):
            raise InputError(f"{system} cell: a peak is indexed (0, 0, 0)")
        qi, si = float(p.q_A), float(p.q_err_A)
        if not (math.isfinite(qi) and qi > 0):
            raise InputError(f"{system} cell: peak {h} has position q = {qi} 1/A, not a positive number")
        if not (math.isfinite(si) and si > 0):
            raise InputError(f"{system} cell: peak {h} has q error {si} 1/A; a positive error is needed to weight it")
        if wavelength_A is not None and qi * wavelength_A / (4.0 * math.pi) >= 1.0:
            raise InputError(f"{system} cell: peak {h} at q = {qi:.4f} 1/A is beyond backscattering "
                             f"(4 pi / lambda = {4 * math.pi / wavelength_A:.4f} 1/A)")
        hkl.append(h)
        q.append(qi)
        s.append(si)
    return np.array(hkl, dtype=float), np.array(q), np.array(s)


def _hkl_text(hkl: np.ndarray, limit: int = 8) -> str:
    distinct = list(dict.fromkeys(tuple(int(v) for v in h) for h in hkl))
    text = ", ".join("(" + " ".join(str(v) for v in h) + ")" for h in distinct[:limit])
    return text + (f" and {len(distinct) - limit} more" if len(distinct) > limit else "")


def _where(system: str, setting: _Setting) -> str:
    """"trigonal cell (hexagonal axes)", "cubic cell": the start of every refusal."""
    shown = setting.label not in (system, "hexagonal axes") or system == "trigonal"
    return f"{system} cell ({setting.label})" if shown else f"{system} cell"


def _check_rank(x: np.ndarray, hkl: np.ndarray, system: str, setting: _Setting):
    """InputError unless the reflections fix every free parameter of the setting."""
    n_par = x.shape[1]
    names = ", ".join(n.split("_")[0] for n in setting.free)
    head = f"{_where(system, setting)}: reflections {_hkl_text(hkl)} do not fix its {n_par} parameter{'s' * (n_par > 1)} ({names})"
    norms = np.linalg.norm(x, axis=0)
    empty = norms == 0
    if empty.any():
        missing = "; ".join(setting.needs[j] for j in np.flatnonzero(empty))
        raise InputError(f"{head}: no reflection with {missing}")
    sv = np.linalg.svd(x / norms, compute_uv=False)
    rank = int(np.sum(sv > RANK_REL_TOL * sv[0]))
    if rank < n_par:
        # The null space of the normalised design matrix says which
        # parameters the reflections only fix in combination.
        null = np.linalg.svd(x / norms)[2][rank:]
        involved = [setting.free[j].split("_")[0] for j in range(n_par) if np.abs(null[:, j]).max() > 1e-6]
        distinct = len({tuple(row) for row in np.round(x, 9)})
        if distinct < n_par:
            raise InputError(f"{head}: only {distinct} independent reflection{'s' * (distinct > 1)}, "
                             f"{n_par} needed; {', '.join(involved)} not separated")
        raise InputError(f"{head}: their indices do not separate {', '.join(involved)}; reflections with "
                         f"independent index combinations are needed")


def _whitened_solve(j: np.ndarray, r: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Least-squares solution of j @ p = r weighted by 1 / sigma^2 (via lstsq, not normal equations)."""
    return np.linalg.lstsq(j / sigma[:, None], r / sigma, rcond=None)[0]


def _gstar(p: np.ndarray, setting: _Setting) -> np.ndarray:
    return sum(pj * e for pj, e in zip(p, setting.basis))


def _positive_definite(g: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(g)
    except np.linalg.LinAlgError:
        return False
    return True


def _direct_cell(gstar: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell (a, b, c, alpha, beta, gamma) from G*, with G = G*^-1 and the lengths."""
    g = np.linalg.inv(gstar)
    lengths = np.sqrt(np.diag(g))
    angles = np.zeros(3)
    for k, (i1, i2) in enumerate(_ANGLE_PAIRS.values()):
        cos = np.clip(g[i1, i2] / (lengths[i1] * lengths[i2]), -1.0, 1.0)
        angles[k] = math.degrees(math.acos(cos))
    return np.concatenate([lengths, angles]), g, lengths


def _direct_jacobian(gstar: np.ndarray, setting: _Setting) -> tuple[np.ndarray, np.ndarray, float]:
    """Cell (a, b, c, alpha, beta, gamma), volume, and d(cell, V)/dp (7 x n).

    From G = G*^-1: dG = -G E_j G for the basis matrix E_j of p_j; lengths
    sqrt(G_ii); cos(angle) = G_jk / (L_j L_k); d ln V = -tr(G E_j) / 2.
    """
    cell, g, lengths = _direct_cell(gstar)
    volume = 1.0 / math.sqrt(np.linalg.det(gstar))
    jac = np.zeros((7, len(setting.basis)))
    for jj, e in enumerate(setting.basis):
        dg = -g @ e @ g
        dl = np.diag(dg) / (2.0 * lengths)
        jac[:3, jj] = dl
        for k, (i1, i2) in enumerate(_ANGLE_PAIRS.values()):
            cos = g[i1, i2] / (lengths[i1] * lengths[i2])
            dcos = dg[i1, i2] / (lengths[i1] * lengths[i2]) - cos * (dl[i1] / lengths[i1] + dl[i2] / lengths[i2])
            sin = math.sqrt(max(1.0 - cos * cos, 1e-300))
            jac[3 + k, jj] = -math.degrees(dcos / sin)
        jac[6, jj] = -0.5 * volume * float(np.trace(g @ e))
    return cell, jac, volume


def _assemble_cell(cell: np.ndarray, setting: _Setting) -> tuple[float, ...]:
    """The full cell with the lengths and angles the system ties set exactly."""
    lengths = [float(cell[i]) for i in setting.lengths]
    angles = []
    for spec in setting.angles:
        if isinstance(spec, str):
            angles.append(float(cell[3 + ("alpha", "beta", "gamma").index(spec)]))
        else:
            angles.append(float(spec))
    return tuple(lengths + angles)


def refine_cell(peaks: Sequence[IndexedPeak], system: str, start_cell=None, z_formula_units: int = 0, *,
                wavelength_A: float | None = None) -> CellFit:
    """Least-squares lattice parameters of one phase from its indexed peaks.

    Weighted linear least squares of 1/d^2 in the reciprocal metric tensor
    (Cohen, Rev. Sci. Instrum. 6, 68 (1935)), refined by Gauss-Newton to the
    weighted least squares in q, errors propagated through the Jacobian of
    G* -> (a, b, c, angles, V); see the module docstring.

    Parameters
    ----------
    peaks : sequence of IndexedPeak
        Indexed peaks of one phase at one pressure (q with positive errors).
        Several peaks may carry the same hkl (repeated measurements).
    system : str
        Crystal system, one of :data:`dacpipe.xrd.cells.SYSTEMS`. Trigonal cells
        are fitted in hexagonal axes (the hexagonal formula) unless
        ``start_cell`` is in rhombohedral axes.
    start_cell : sequence of 6 float, optional
        a, b, c, alpha, beta, gamma. Only used to choose the setting (trigonal
        hexagonal or rhombohedral axes; the unique axis of a monoclinic cell,
        b by default): the linear fit needs no starting values, so the result
        does not depend on them.
    z_formula_units : int
        Formula units per cell for the volume per formula unit; <= 0
        (unknown, as for JCPDS phases) gives NaN there.
    wavelength_A : float, optional
        With a wavelength, peaks beyond backscattering are refused and the
        residuals are also given in 2theta (``residuals_two_theta_deg``).

    Returns
    -------
    CellFit

    Raises
    ------
    InputError
        No peaks, unusable peaks (q or its error not positive, hkl = 000),
        an unknown system, reflections that do not fix every free parameter
        (e.g. a hexagonal phase with only 00l lines), or a fit that gives no
        valid cell (an inconsistent indexing).
    """
    system = str(system).strip().lower()
    setting = _setting(system, start_cell)
    hkl, q, sigma_q = _check_peaks(peaks, system, wavelength_A)
    n, n_par = len(q), len(setting.basis)
    # Design matrix: x[i, j] = h_i^T E_j h_i, so 1/d_i^2 = x[i] . p.
    x = np.einsum("ni,jik,nk->nj", hkl, np.array(setting.basis), hkl)
    _check_rank(x, hkl, system, setting)

    # 1. Linear fit of y = 1/d^2 = (q / 2 pi)^2, sigma_y by first-order propagation.
    y = (q / TWO_PI) ** 2
    sigma_y = 2.0 * q * sigma_q / TWO_PI**2
    p = _whitened_solve(x, y, sigma_y)
    if not _positive_definite(_gstar(p, setting)):
        raise InputError(f"{_where(system, setting)}: reflections {_hkl_text(hkl)} give no valid cell (the fitted reciprocal metric "
                         f"is not positive definite): the indexing is inconsistent")

    # 2. Gauss-Newton on q = 2 pi sqrt(x . p); dq/dp = 2 pi^2 x / q.
    scale = float(np.max(np.abs(p[: min(3, n_par)])))
    for _ in range(GN_MAX_ITER):
        q_calc = TWO_PI * np.sqrt(x @ p)
        jac = (2.0 * math.pi**2 / q_calc)[:, None] * x
        step = _whitened_solve(jac, q - q_calc, sigma_q)
        p_new = p + step
        if not (np.all(x @ p_new > 0) and _positive_definite(_gstar(p_new, setting))):
            break  # keep the linear estimate rather than step out of valid cells
        p = p_new
        if np.max(np.abs(step)) <= GN_REL_TOL * scale:
            break
    q_calc = TWO_PI * np.sqrt(x @ p)
    jac = (2.0 * math.pi**2 / q_calc)[:, None] * x

    # 3. Covariance of p, its scaling, and propagation to the cell and volume.
    jw = jac / sigma_q[:, None]
    _, r = np.linalg.qr(jw)
    r_inv = np.linalg.inv(r)
    cov_p = r_inv @ r_inv.T
    resid = q - q_calc
    dof = n - n_par
    chi2 = float(np.sum((resid / sigma_q) ** 2))
    reduced_chi2 = chi2 / dof if dof > 0 else math.nan
    error_scale = math.sqrt(covariance_scale(reduced_chi2, sigma_given=True))
    cov_p = cov_p * error_scale**2

    cell_full, jac_direct, volume = _direct_jacobian(_gstar(p, setting), setting)
    rows = [_PARAMETER_ROW[name] for name in setting.free]
    j_free = jac_direct[rows]
    cov = j_free @ cov_p @ j_free.T
    cov = 0.5 * (cov + cov.T)
    volume_err = math.sqrt(max(float(jac_direct[6] @ cov_p @ jac_direct[6]), 0.0))
    errors = {name: math.sqrt(max(float(cov[i, i]), 0.0)) for i, name in enumerate(setting.free)}

    if z_formula_units and z_formula_units > 0:
        v_fu, v_fu_err = volume / z_formula_units, volume_err / z_formula_units
    else:
        v_fu = v_fu_err = math.nan

    resid_tth = None
    if wavelength_A is not None:
        # q_calc < q_obs * (1 + tiny) and q_obs is below backscattering, but
        # clip anyway so a calculated line just past 180 deg gives 180, not NaN.
        s_obs = np.clip(q * wavelength_A / (4 * math.pi), -1, 1)
        s_calc = np.clip(q_calc * wavelength_A / (4 * math.pi), -1, 1)
        resid_tth = np.degrees(2 * np.arcsin(s_obs)) - np.degrees(2 * np.arcsin(s_calc))

    return CellFit(
        system=system,
        cell=_assemble_cell(cell_full, setting),  # type: ignore[arg-type]
        errors=errors,
        covariance=cov,
        parameter_names=setting.free,
        volume_A3=float(volume),
        volume_err_A3=volume_err,
        volume_fu_A3=float(v_fu),
        volume_fu_err_A3=float(v_fu_err),
        reduced_chi2=float(reduced_chi2),
        n_peaks=n,
        residuals_q_A=resid,
        hkl=tuple(tuple(int(v) for v in h) for h in hkl),
        error_scale=error_scale,
        residuals_two_theta_deg=resid_tth,
        setting=setting.label,
    )


# --------------------------------------------------------------------------
# The reciprocal-metric parametrisation, for fits of whole patterns
# --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ReciprocalCell:
    """A cell as the few components ``p`` of its reciprocal metric G* that its
    crystal system leaves free (the parametrisation of :func:`refine_cell`):
    1/d^2 = x(hkl) . p with x linear in the indices, so q = 2 pi sqrt(x . p)
    and dq/dp = 2 pi^2 x / q for any system, rhombohedral and monoclinic
    included.

    Attributes
    ----------
    system : str
    setting : the parametrisation (hexagonal or rhombohedral axes, unique axis ...)
    p : ndarray
        The free components.
    """

    system: str
    setting: _Setting
    p: np.ndarray

    @classmethod
    def from_cell(cls, system: str, cell) -> "ReciprocalCell":
        """The parametrisation of ``cell`` (its setting chosen as :func:`refine_cell` does)."""
        setting = _setting(system, cell)
        gstar = np.linalg.inv(metric_tensor(cell))
        basis = np.array([e.ravel() for e in setting.basis]).T
        p = np.linalg.lstsq(basis, gstar.ravel(), rcond=None)[0]
        return cls(system, setting, p)

    def with_p(self, p) -> "ReciprocalCell":
        return ReciprocalCell(self.system, self.setting, np.asarray(p, dtype=float))

    def design(self, hkl) -> np.ndarray:
        """x[i, j] = h_i^T E_j h_i, so that 1/d_i^2 = x[i] . p."""
        h = np.asarray(hkl, dtype=float)
        return np.einsum("ni,jik,nk->nj", h, np.array(self.setting.basis), h)

    @property
    def free(self) -> tuple[str, ...]:
        """Names of the free cell parameters (``a_A``, ``c_A``, ``alpha_deg`` ...)."""
        return self.setting.free

    def cell(self) -> tuple[float, ...]:
        """a, b, c (A), alpha, beta, gamma (deg); computed once per instance (``p`` is
        not changed in place: :meth:`with_p` makes another)."""
        cell = self.__dict__.get("_cell")
        if cell is None:
            cell = _assemble_cell(_direct_cell(_gstar(self.p, self.setting))[0], self.setting)
            object.__setattr__(self, "_cell", cell)
        return cell

    def copy(self) -> "ReciprocalCell":
        """The same cell with a copy of ``p`` (and of the cell already computed)."""
        other = self.with_p(self.p.copy())
        if "_cell" in self.__dict__:
            object.__setattr__(other, "_cell", self.__dict__["_cell"])
        return other

    def cell_and_jacobian(self) -> tuple[tuple[float, ...], np.ndarray, float, np.ndarray]:
        """The cell, d(free parameters)/dp, the volume and dV/dp, for carrying a covariance of p."""
        cell_full, jac, volume = _direct_jacobian(_gstar(self.p, self.setting), self.setting)
        rows = [_PARAMETER_ROW[name] for name in self.setting.free]
        return _assemble_cell(cell_full, self.setting), jac[rows], float(volume), jac[6]

    def is_valid(self) -> bool:
        """Whether p is a real cell (G* positive definite)."""
        return _positive_definite(_gstar(self.p, self.setting))
