"""Independent series of SAXS patterns of nanocrystal superlattices, from known truth.

These are the hard cases of the superlattice analysis (:mod:`dacpipe.saxs`),
built independently of ``data-sample/`` (whose patterns come from
:mod:`.saxs`): spherical nanocrystals whose cores are nearly as large as
their spacing, so that the form factor falls by decades across the Bragg
peaks and its minima sweep over them as the ligand shells are squeezed.

The pattern (azimuthally averaged, corrected, on a 1D q axis in 1/angstrom)
is the decoupling approximation of Kotlarchyk & Chen, J. Chem. Phys. 79,
2461 (1983), with the lattice factor of Förster et al., J. Phys. Chem. B
109, 1347 (2005)::

    I(q) = K P(q) S(q) + B

* ``P(q) = <F^2>(q) / <F^2>(0)``: polydisperse homogeneous spheres,
  ``F = V 3 (sin x - x cos x) / x^3``, ``x = q R``, a Gaussian number
  distribution of radii;
* ``S(q) = 1 + beta(q) G(q) (Z0(q) - 1)``: ``beta = <F>^2 / <F^2>`` (the
  polydispersity takes the coherent part out of the Bragg peaks, and
  removes them near the zeros of ``<F>``), ``G = exp(-q^2 sigma_u^2)`` the
  Debye-Waller factor of the nanocrystals' rms displacement ``sigma_u``
  (what it takes from the peaks becomes diffuse scattering: between peaks
  ``S = 1 - beta G``, the correlation hole below the first order);
* ``Z0(q)``: the powder average of the reciprocal lattice,
  ``(2 pi)^d rho / (omega_d) sum_s m_s L_s(q) / (q G_s)^((d-1)/2)`` over
  the shells ``s`` of reciprocal-lattice vectors of length ``G_s`` and
  multiplicity ``m_s`` (``d = 3`` for fcc and bcc, 2 for the hexagonal
  lattice of columns; ``rho`` the number density, ``omega_d`` = 4 pi or 2
  pi), which averages to 1 at large q. ``L_s`` is a peak of unit area,
  Gaussian by default, whose FWHM combines the domain size and the
  paracrystalline disorder (Hosemann & Bagchi, *Direct Analysis of
  Diffraction by Matter*, 1962):
  ``FWHM_s = 2 pi K / L + pi^2 g^2 G_s^2 / G_1``;
* ``B``: a flat background (fluorescence, parasitic scattering).

Each bin of the pattern is the mean of ``I`` over the bin, with the weight
of the pixels of a ring (proportional to q), labelled by the bin centre, as
pyFAI labels it; the counts are Poisson draws of the bin's pixels' summed
expectation, and the errors those of the counts drawn (pyFAI's Poisson
error model).

The truth of a point: the first-order position ``q1_A`` (the lattice's,
``G_1``), its spacing ``d1_A = 2 pi / q1_A``, the lattice constant, the
nearest-neighbour distance, the lattice type, and the line of every
reflection in the pattern.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SaxsSeries", "SeriesPoint", "lattice_shells", "series", "superlattice_pattern"]

# The lattices: (dimension, particles per conventional cell, reflection rule,
# nearest-neighbour distance / a, q of the first line * a / 2 pi).
_LATTICES = {
    "fcc": (3, 4, lambda h, k, l: len({h % 2, k % 2, l % 2}) == 1, 1.0 / math.sqrt(2.0), math.sqrt(3.0)),
    "bcc": (3, 2, lambda h, k, l: (h + k + l) % 2 == 0, math.sqrt(3.0) / 2.0, math.sqrt(2.0)),
    "sc": (3, 1, lambda h, k, l: True, 1.0, 1.0),
    "hexagonal": (2, 1, None, 1.0, 2.0 / math.sqrt(3.0)),
}

SCHERRER_K = 0.94
"""Scherrer constant of the domains (cubes/spheres, FWHM)."""


def lattice_shells(lattice: str, a_A: float, q_max_A: float) -> list[tuple[str, float, int]]:
    """The shells of reciprocal-lattice vectors up to ``q_max_A``: (hkl label, |G| in 1/A, multiplicity).

    Cubic: ``|G| = 2 pi sqrt(h^2 + k^2 + l^2) / a`` with the lattice's
    reflection conditions (fcc: h, k, l unmixed; bcc: h + k + l even); 2D
    hexagonal (``a`` the distance between columns): ``|G| = 4 pi
    sqrt(h^2 + hk + k^2) / (sqrt 3 a)``. The label is the shell's
    representative with h >= k >= l >= 0.
    """
    dim = _LATTICES[lattice][0]
    n = int(math.ceil(q_max_A * a_A / (2.0 * math.pi) * (2.0 if dim == 2 else 1.0))) + 1
    shells: dict[int, list] = {}
    if dim == 3:
        rule = _LATTICES[lattice][2]
        for h, k, l in itertools.product(range(-n, n + 1), repeat=3):
            s2 = h * h + k * k + l * l
            if s2 == 0 or not rule(h, k, l):
                continue
            g = 2.0 * math.pi * math.sqrt(s2) / a_A
            if g <= q_max_A:
                entry = shells.setdefault(s2, [g, 0, tuple(sorted((abs(h), abs(k), abs(l)), reverse=True))])
                entry[1] += 1
    else:
        for h, k in itertools.product(range(-n, n + 1), repeat=2):
            s2 = h * h + h * k + k * k
            if s2 == 0:
                continue
            g = 4.0 * math.pi * math.sqrt(s2) / (math.sqrt(3.0) * a_A)
            if g <= q_max_A:
                rep = (h, k) if h >= 0 and k >= 0 else None
                entry = shells.setdefault(s2, [g, 0, None])
                entry[1] += 1
                if rep is not None and (entry[2] is None or rep > entry[2]):
                    entry[2] = rep
    out = []
    for s2 in sorted(shells):
        g, m, rep = shells[s2]
        out.append(("".join(str(i) for i in rep), g, m))
    return out


def _sphere_amplitude(x: np.ndarray) -> np.ndarray:
    """``3 (sin x - x cos x) / x^3``, 1 at x = 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        safe = np.where(x > 1e-4, x, 1.0)
        return np.where(x > 1e-4, 3.0 * (np.sin(safe) - safe * np.cos(safe)) / safe**3, 1.0 - x * x / 10.0)


def sphere_averages(q_A, diameter_A: float, polydispersity: float) -> tuple[np.ndarray, np.ndarray]:
    """``P(q) = <F^2>/<F^2>(0)`` and ``beta(q) = <F>^2/<F^2>`` of polydisperse spheres.

    Gaussian number distribution of radii, relative sigma ``polydispersity``,
    cut at +-4 sigma; ``F = V f(qR)`` (Kotlarchyk & Chen 1983).
    """
    q = np.asarray(q_A, dtype=float)
    z = np.linspace(-4.0, 4.0, 161)
    radii = 0.5 * diameter_A * (1.0 + polydispersity * z)
    weights = np.exp(-0.5 * z * z)
    weights /= weights.sum()
    volume = radii**3
    amp = _sphere_amplitude(np.outer(q, radii)) * volume
    mean_f = amp @ weights
    mean_f2 = (amp * amp) @ weights
    p = mean_f2 / float((volume * volume) @ weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(mean_f2 > 0, mean_f * mean_f / mean_f2, 0.0)
    return p, beta


@dataclass(frozen=True)
class SeriesPoint:
    """One pattern of a series and its truth.

    Attributes
    ----------
    q_A, intensity, sigma : ndarray
        Bin centres (1/angstrom), the mean counts per pixel of each bin and
        their Poisson standard errors.
    lattice : str
        ``fcc``, ``bcc``, ``sc`` or ``hexagonal``.
    a_A, nn_distance_A : float
        Lattice constant and nearest-neighbour distance (angstrom).
    q1_A, d1_A : float
        First-order line of the lattice, ``G_1``, and its spacing ``2 pi / G_1``.
    core_diameter_A, domain_A : float
    lines : tuple of (str, float, float)
        (hkl, q in 1/angstrom, S - 1 at the line) for every line in the q range.
    """

    q_A: np.ndarray
    intensity: np.ndarray
    sigma: np.ndarray
    lattice: str
    a_A: float
    nn_distance_A: float
    q1_A: float
    d1_A: float
    core_diameter_A: float
    domain_A: float
    lines: tuple = ()


@dataclass(frozen=True)
class SaxsSeries:
    """A series of patterns, by increasing pressure (points in measurement order)."""

    points: tuple[SeriesPoint, ...]
    settings: dict = field(default_factory=dict)

    def truth(self, name: str) -> np.ndarray:
        return np.array([getattr(p, name) for p in self.points])


def superlattice_pattern(q_edges_A, *, lattice: str, nn_distance_A: float, core_diameter_A: float,
                         polydispersity: float = 0.07, domain_A: float = 600.0, paracrystal_g: float = 0.02,
                         displacement_A: float = 3.0, forward_counts: float = 2.0e6, background: float = 0.5,
                         peak_eta: float = 0.0, line_weights: dict | None = None, decoupling: bool = True,
                         powder_factor: bool = True, subsamples: int = 9) -> tuple[np.ndarray, np.ndarray, dict]:
    """Noise-free expected pattern, mean over each bin, and its truth.

    Parameters
    ----------
    q_edges_A : array_like
        Bin edges (1/angstrom); the pattern has ``len - 1`` bins.
    lattice : str
        ``fcc``, ``bcc``, ``sc`` or ``hexagonal`` (2D, of columns).
    nn_distance_A, core_diameter_A, polydispersity, domain_A, paracrystal_g, displacement_A
        Nearest-neighbour distance, mean core diameter, relative sigma of the
        radii, domain size, paracrystalline g, rms displacement (one
        Cartesian component) of the particles about their sites.
    forward_counts, background : float
        ``K`` (counts per pixel at q = 0 of ``K P``) and the flat ``B``.
    peak_eta : float
        Lorentzian fraction of the lines (0: Gaussian).
    line_weights : dict, optional
        hkl label -> factor on that line's intensity (a line weakened by a
        zero of a core-shell particle's amplitude, say).
    decoupling : bool
        False: ``S = 1 + G Z0`` (peaks on a flat 1, no correlation hole), the
        simplest model, for separating the effects.
    powder_factor : bool
        False: the ``1 / (q G_s)`` of the powder average taken at ``q = G_s``
        (symmetric lines), also for separating the effects.
    subsamples : int
        Points per bin of the bin average.

    Returns
    -------
    (ndarray, ndarray, dict)
        Bin centres, the mean ``I`` over each bin, and the truth (see
        :class:`SeriesPoint`; ``lines`` with each line's ``S - 1`` at its top).
    """
    edges = np.asarray(q_edges_A, dtype=float)
    dim, per_cell, _, nn_over_a, _ = _LATTICES[lattice]
    a = nn_distance_A / nn_over_a
    shells = lattice_shells(lattice, a, float(edges[-1]) * 1.3)
    rho = per_cell / a**dim if dim == 3 else 2.0 / (math.sqrt(3.0) * a * a)
    omega = 4.0 * math.pi if dim == 3 else 2.0 * math.pi
    q1 = shells[0][1]
    weights = line_weights or {}
    # Sub-samples of each bin, weighted by the ring's pixel density (proportional to q).
    t = (np.arange(subsamples) + 0.5) / subsamples
    fine = edges[:-1, None] + np.diff(edges)[:, None] * t[None, :]
    qf = fine.ravel()

    def structure(q):
        z0 = np.zeros_like(q)
        for label, g, m in shells:
            w = 2.0 * math.pi * SCHERRER_K / domain_A + math.pi**2 * paracrystal_g**2 * g * g / q1
            u = (q - g) / w
            shape = eta_shape(u, w)
            qq = q if powder_factor else g
            z0 += weights.get(label, 1.0) * m * shape / (qq * g) ** ((dim - 1) / 2.0)
        z0 *= (2.0 * math.pi) ** dim * rho / omega
        dw = np.exp(-(q * displacement_A) ** 2)
        return z0, dw

    def eta_shape(u, w):
        gauss = math.sqrt(4.0 * math.log(2.0) / math.pi) / w * np.exp(-4.0 * math.log(2.0) * u * u)
        lorentz = 2.0 / (math.pi * w) / (1.0 + 4.0 * u * u)
        return peak_eta * lorentz + (1.0 - peak_eta) * gauss

    p, beta = sphere_averages(qf, core_diameter_A, polydispersity)
    z0, dw = structure(qf)
    s = 1.0 + beta * dw * (z0 - 1.0) if decoupling else 1.0 + dw * z0
    i_fine = forward_counts * p * s + background
    mean = (i_fine.reshape(fine.shape) * fine).sum(axis=1) / fine.sum(axis=1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    lines = []
    for label, g, _m in shells:
        if edges[0] <= g <= edges[-1]:
            _, beta_g = sphere_averages(np.array([g]), core_diameter_A, polydispersity)
            z_g, dw_g = structure(np.array([g]))
            s_g = (1.0 + beta_g * dw_g * (z_g - 1.0)) if decoupling else 1.0 + dw_g * z_g
            base = (1.0 - beta_g * dw_g) if decoupling else np.ones(1)
            lines.append((label, float(g), float(s_g[0] / max(base[0], 1e-12) - 1.0)))
    truth = {"lattice": lattice, "a_A": a, "nn_distance_A": nn_distance_A, "q1_A": q1, "d1_A": 2.0 * math.pi / q1,
             "core_diameter_A": core_diameter_A, "domain_A": domain_A, "lines": tuple(lines)}
    return centres, mean, truth


def series(lattice: str = "fcc", *, n_points: int = 13, nn_start_A: float = 83.0, nn_end_A: float = 65.0,
           core_start_A: float = 60.0, core_strain: float = 0.03, domain_start_A: float = 600.0,
           domain_end_A: float = 420.0, polydispersity: float = 0.07, paracrystal_g: float = 0.02,
           displacement_A: float = 3.0, q_min_A: float = 0.02, q_max_A: float = 0.40, bin_A: float = 1.0e-3,
           pixels_per_bin_at_q1: float = 400.0, forward_counts: float = 1.0e5, background: float = 2.0,
           peak_eta: float = 0.0, line_weights: dict | None = None, decoupling: bool = True,
           powder_factor: bool = True, noise: bool = True, seed: int = 0) -> SaxsSeries:
    """A compression series: the superlattice shrinks, the cores barely.

    The nearest-neighbour distance goes linearly from ``nn_start_A`` to
    ``nn_end_A`` over ``n_points`` (the ligand shells are squeezed), the
    cores shrink by ``core_strain`` in all (bulk-like), the domains from
    ``domain_start_A`` to ``domain_end_A``. The bins are ``bin_A`` wide from
    ``q_min_A`` to ``q_max_A``; a bin at q holds ``pixels_per_bin_at_q1 * q
    / 0.1`` pixels (a full ring), and its counts are Poisson draws of their
    summed expectation (``default_rng([seed, point])``).

    With the defaults (fcc, 83 -> 65 A, 60 A cores): the form factor falls
    by about 4 decades from the first order to the 311 line, its first zero
    sweeps from the 220 line (first point) to between 111 and 200 (last
    point), its second from above 222 to the 311 line.

    Returns
    -------
    SaxsSeries
    """
    edges = np.arange(q_min_A, q_max_A + 0.5 * bin_A, bin_A)
    nn = np.linspace(nn_start_A, nn_end_A, n_points)
    cores = core_start_A * (1.0 - core_strain * np.linspace(0.0, 1.0, n_points))
    domains = np.linspace(domain_start_A, domain_end_A, n_points)
    settings = dict(lattice=lattice, polydispersity=polydispersity, paracrystal_g=paracrystal_g,
                    displacement_A=displacement_A, bin_A=bin_A, q_min_A=q_min_A, q_max_A=q_max_A,
                    pixels_per_bin_at_q1=pixels_per_bin_at_q1, forward_counts=forward_counts,
                    background=background, peak_eta=peak_eta, decoupling=decoupling,
                    powder_factor=powder_factor, seed=seed)
    points = []
    for i in range(n_points):
        centres, expected, truth = superlattice_pattern(
            edges, lattice=lattice, nn_distance_A=float(nn[i]), core_diameter_A=float(cores[i]),
            polydispersity=polydispersity, domain_A=float(domains[i]), paracrystal_g=paracrystal_g,
            displacement_A=displacement_A, forward_counts=forward_counts, background=background,
            peak_eta=peak_eta, line_weights=line_weights, decoupling=decoupling, powder_factor=powder_factor)
        pixels = pixels_per_bin_at_q1 * centres / 0.1
        if noise:
            counts = np.random.default_rng([seed, i]).poisson(expected * pixels).astype(float)
            intensity = counts / pixels
            sigma = np.sqrt(np.maximum(counts, 1.0)) / pixels
        else:
            intensity = expected
            sigma = np.sqrt(expected * pixels) / pixels
        points.append(SeriesPoint(q_A=centres, intensity=intensity, sigma=sigma, **truth))
    return SaxsSeries(tuple(points), settings)
