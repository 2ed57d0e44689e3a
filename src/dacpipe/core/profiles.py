"""Line profiles: the one pseudo-Voigt family every fit in dacpipe uses.

A pseudo-Voigt is ``eta * Lorentzian + (1 - eta) * Gaussian`` of one common
FWHM (Wertheim et al., Rev. Sci. Instrum. 45, 1369 (1974); Thompson, Cox &
Hastings, J. Appl. Cryst. 20, 79 (1987) for its use in powder diffraction).
It comes normalised two ways, by name:

* :func:`pseudo_voigt_height`: value 1 at the centre (fluorescence lines,
  SAXS peaks, PL bands: fits that report a height);
* :func:`pseudo_voigt_area`: integral ``area`` (diffraction lines, whose
  area is the integrated intensity).

:func:`area_to_height` converts between them; :func:`unit_parts` gives the
Lorentzian and Gaussian parts and :func:`height_derivatives` /
:func:`area_derivatives` their analytic derivatives, for the Jacobians of
the least-squares fits.
"""

from __future__ import annotations

import math

import numpy as np

FOUR_LN2 = 4.0 * math.log(2.0)
GAUSS_HEIGHT_FWHM = math.sqrt(FOUR_LN2 / math.pi)
"""height x FWHM of a unit-area Gaussian (0.939...)."""
LORENTZ_HEIGHT_FWHM = 2.0 / math.pi
"""height x FWHM of a unit-area Lorentzian (0.637...)."""


GAUSS_REACH_FWHM = 5.0
"""Beyond this many FWHM from its centre the Gaussian part is taken as 0: it is
exp(-4 ln2 x 25) = 3e-31 of its height there, nothing any sum of lines can see."""


def unit_parts(x, center, fwhm):
    """``u = (x - center) / fwhm``, and the unit-height Lorentzian and Gaussian at ``u``.

    Broadcasts: centre and FWHM may be arrays over lines (``x[None, :]``
    against ``center[:, None]`` gives one row per line). The Gaussian is
    evaluated only within :data:`GAUSS_REACH_FWHM` of each centre: on a
    whole pattern most of a line's row is far from it, and the exponential
    was most of a whole-pattern fit's time (15x less on 160 lines x 1000 bins).
    """
    x = np.asarray(x, dtype=float)
    # In place wherever the formula allows, the same numbers bit for bit: on
    # lines x bins each fresh temporary is a pass over memory the caches do not
    # hold (alone, 3.5 ms -> 1.0 ms for 246 lines x 1,400 bins; in a whole
    # identification job, where the matrix products dominate, no change seen).
    u = np.asarray(np.subtract(x, center), dtype=float)
    u /= fwhm
    u2 = np.square(u)
    lorentz = np.multiply(u2, 4.0)
    lorentz += 1.0
    np.reciprocal(lorentz, out=lorentz)
    gauss = np.zeros_like(u2)
    near = u2 < GAUSS_REACH_FWHM**2
    gauss[near] = np.exp(u2[near] * -FOUR_LN2)
    # NaN where u is (a NaN abscissa, centre or width), found on the inputs, not on lines x bins
    if not (np.isfinite(x).all() and np.isfinite(center).all() and np.isfinite(fwhm).all()):
        gauss[np.isnan(u2)] = np.nan
    return u, lorentz, gauss


def pseudo_voigt_height(x, center, fwhm, eta):
    """Pseudo-Voigt of height 1 at ``center`` (0.5 at ``center +- fwhm / 2``).

    Parameters
    ----------
    x : array_like
    center, fwhm : float or array_like
        Centre and full width at half maximum (both parts share it).
    eta : float or array_like
        Lorentzian fraction, 0 (Gaussian) to 1 (Lorentzian).
    """
    u2 = ((np.asarray(x, dtype=float) - center) / fwhm) ** 2
    return eta / (1.0 + 4.0 * u2) + (1.0 - eta) * np.exp(-FOUR_LN2 * u2)


def pseudo_voigt_area(x, center, fwhm, eta, area=1.0):
    """Pseudo-Voigt whose integral over x is ``area``.

    Its height is ``area * area_to_height(eta) / fwhm``.
    """
    u = (np.asarray(x, dtype=float) - center) / fwhm
    gauss = GAUSS_HEIGHT_FWHM / fwhm * np.exp(-FOUR_LN2 * u**2)
    lorentz = 2.0 / (math.pi * fwhm) / (1.0 + 4.0 * u**2)
    return area * (eta * lorentz + (1.0 - eta) * gauss)


def area_to_height(eta):
    """height x FWHM / area of a pseudo-Voigt of Lorentzian fraction ``eta``."""
    return eta * LORENTZ_HEIGHT_FWHM + (1.0 - eta) * GAUSS_HEIGHT_FWHM


def height_derivatives(u, lorentz, gauss, eta, fwhm):
    """Derivatives of the unit-height profile with respect to centre, FWHM and eta.

    ``u``, ``lorentz``, ``gauss`` as :func:`unit_parts` gives them. The
    profile f(u) = eta L + (1 - eta) G has df/du = -u D with
    D = 8 eta L^2 + 2 (4 ln 2)(1 - eta) G, and du/dc = -1/w, du/dw = -u/w.

    Returns
    -------
    d_center, d_fwhm, d_eta : ndarray
    """
    d = eta * 8.0 * lorentz * lorentz + (1.0 - eta) * 2.0 * FOUR_LN2 * gauss
    return d * u / fwhm, d * u * u / fwhm, lorentz - gauss


def area_derivatives(u, lorentz, gauss, eta, fwhm, area):
    """Derivatives of the area-normalised profile with respect to centre, FWHM, eta and area.

    f = (area / w) s(u), s = eta kL L + (1 - eta) kG G with kL, kG the
    height x FWHM of the unit-area parts; ds/du = -u D,
    D = 8 eta kL L^2 + 2 (4 ln 2)(1 - eta) kG G.

    Returns
    -------
    d_center, d_fwhm, d_eta, d_area : ndarray
    """
    shape = eta * LORENTZ_HEIGHT_FWHM * lorentz + (1.0 - eta) * GAUSS_HEIGHT_FWHM * gauss
    d = 8.0 * eta * LORENTZ_HEIGHT_FWHM * lorentz * lorentz + 2.0 * FOUR_LN2 * (1.0 - eta) * GAUSS_HEIGHT_FWHM * gauss
    aw = area / fwhm
    return (aw / fwhm * u * d, -aw / fwhm * (shape - u * u * d),
            aw * (LORENTZ_HEIGHT_FWHM * lorentz - GAUSS_HEIGHT_FWHM * gauss), shape / fwhm)


def area_derivative_basis(u, lorentz, gauss) -> tuple[np.ndarray, ...]:
    """The six arrays every derivative of area-normalised pseudo-Voigts is a per-line
    combination of: L, G, u L^2, u G, u^2 L^2, u^2 G (``u``, ``lorentz``, ``gauss`` as
    :func:`unit_parts` gives them, one row per line).

    A sum over lines of their derivatives (a Jacobian row of a whole-pattern
    fit) is then six matrix products of per-line weights
    (:func:`area_derivative_weights`) with these arrays, instead of some twenty
    elementwise passes over lines x bins (:func:`area_derivatives`).
    """
    u_l2 = np.multiply(lorentz, lorentz)
    u_l2 *= u
    u_g = np.multiply(u, gauss)
    return lorentz, gauss, u_l2, u_g, u * u_l2, u * u_g


def area_derivative_weights(eta, fwhm, area, d_center, d_fwhm, d_area, d_eta) -> tuple[np.ndarray, ...]:
    """Weights on :func:`area_derivative_basis`'s arrays giving, for each row r,
    sum_l [d_center[r, l] df_l/dcenter + d_fwhm[r, l] df_l/dfwhm + d_area[r, l] df_l/darea
    + d_eta[r, l] df_l/deta] (f_l the area-normalised line l of :func:`area_derivatives`).

    ``eta`` is shared by the lines; ``fwhm`` and ``area`` are per line (L,);
    the four multipliers are (rows, L) (zeros where a row does not depend on
    that parameter). From f = (A/w) s(u), s = eta kL L + (1 - eta) kG G:
    df/dc = (A/w^2) u D, df/dw = -(A/w^2)(s - u^2 D), df/deta = (A/w)(kL L - kG G),
    df/dA = s/w, with D = 8 eta kL L^2 + 8 ln2 (1 - eta) kG G (the derivatives of
    :func:`area_derivatives`, regrouped by basis array).
    """
    kl, kg = eta * LORENTZ_HEIGHT_FWHM, (1.0 - eta) * GAUSS_HEIGHT_FWHM
    aw2 = area / fwhm**2
    aw = area / fwhm
    inv_w = 1.0 / fwhm
    on_l = (-d_fwhm * aw2 + d_area * inv_w) * kl + d_eta * aw * LORENTZ_HEIGHT_FWHM
    on_g = (-d_fwhm * aw2 + d_area * inv_w) * kg - d_eta * aw * GAUSS_HEIGHT_FWHM
    centre_w, fwhm_w = d_center * aw2, d_fwhm * aw2
    return (on_l, on_g, centre_w * (8.0 * kl), centre_w * (2.0 * FOUR_LN2 * kg),
            fwhm_w * (8.0 * kl), fwhm_w * (2.0 * FOUR_LN2 * kg))


# Thompson, Cox & Hastings, J. Appl. Cryst. 20, 79 (1987): H^5 as a polynomial in
# G and L (eq. 3, coefficients of G^5, G^4 L, ..., L^5) and eta(r), r = L / H (eq. 4,
# coefficients of r^3, r^2, r).
TCH_H5 = (1.0, 2.69269, 2.42843, 4.47163, 0.07842, 1.0)
TCH_ETA = (0.11116, -0.47719, 1.36603)


def tch_fwhm_eta(fwhm_lorentz, fwhm_gauss):
    """FWHM and eta of the pseudo-Voigt closest to a Voigt of the given widths.

    Thompson, Cox & Hastings, J. Appl. Cryst. 20, 79 (1987), eqs. 3-4.
    """
    hl, hg = np.asarray(fwhm_lorentz, dtype=float), np.asarray(fwhm_gauss, dtype=float)
    h = sum(c * hg ** (5 - k) * hl**k for k, c in enumerate(TCH_H5)) ** 0.2
    r = hl / h
    return h, np.polyval([*TCH_ETA, 0.0], r)


def voigt_parts(fwhm, eta) -> tuple[np.ndarray, np.ndarray]:
    """Lorentzian and Gaussian FWHM of the Voigt a pseudo-Voigt (FWHM, eta) stands for.

    The inverse of :func:`tch_fwhm_eta`: r = L / H from eta (eq. 4, monotonic
    on [0, 1]), then g = G / H from H(G, L) = H (eq. 3, homogeneous of degree
    1, so g depends on r only).
    """
    e = min(max(float(eta), 0.0), 1.0)
    roots = np.roots([*TCH_ETA, -e])
    r = float(min((x.real for x in roots if abs(x.imag) < 1e-9 and -1e-9 <= x.real <= 1 + 1e-9),
                  key=lambda x: abs(x - e)))
    r = min(max(r, 0.0), 1.0)
    coeffs = [c * r**k for k, c in enumerate(TCH_H5)]
    coeffs[-1] -= 1.0
    g_roots = np.roots(coeffs)
    g = float(max((x.real for x in g_roots if abs(x.imag) < 1e-9 and -1e-9 <= x.real <= 1 + 1e-9), default=0.0))
    h = np.asarray(fwhm, dtype=float)
    return r * h, max(g, 0.0) * h
